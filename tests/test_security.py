"""TLS to InfluxDB is verified, a private CA can be configured, and nothing turns verification off."""

import os
import re
import subprocess

import pytest

from conftest import FixedClock, archive_rows, expected_means, feed_standin, make_config, pulse_points, watermark
from flux_standin import StandIn
from loader.errors import SourceRejected
from loader.job import Job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOW = 1_790_000_000 - 1_790_000_000 % 86400 + 3 * 3600 + 17


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A throwaway CA and a certificate for 127.0.0.1 signed by it (openssl)."""
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=influx-archive test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return d


@pytest.fixture
def tls_standin(tls_files):
    server = StandIn(token="test-token-5f1c9e", org="test-org",
                     tls=(str(tls_files / "server.pem"), str(tls_files / "server.key")))
    yield server
    server.close()


def test_an_untrusted_certificate_is_refused_with_exit_2_and_a_custom_ca_is_accepted(pg_url, tls_standin, tls_files):
    points = pulse_points(NOW - 3600, 3600)
    feed_standin(tls_standin, points)
    assert tls_standin.url.startswith("https://")
    untrusted = make_config(pg_url, tls_standin.url, INITIAL_LOOKBACK="1h")
    with pytest.raises(SourceRejected) as exc:
        Job(untrusted, clock=FixedClock(NOW), sleep=pytest.fail).run()
    assert exc.value.exit_code == 2 and "INFLUX_CA_FILE" in exc.value.hint
    assert watermark(pg_url) is None and tls_standin.queries == []

    trusted = make_config(pg_url, tls_standin.url, INITIAL_LOOKBACK="1h", INFLUX_CA_FILE=tls_files / "ca.pem")
    Job(trusted, clock=FixedClock(NOW)).run()
    assert archive_rows(pg_url) == expected_means(points, start=0, end=NOW - NOW % 5)


def test_nothing_in_the_code_turns_tls_verification_off():
    pattern = re.compile(r"verify\s*=\s*False|verify_ssl\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False"
                         r"|assert_hostname\s*=\s*False")
    offenders = []
    for folder, _, files in os.walk(os.path.join(ROOT, "loader")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                offenders += [f"{path}: {line.strip()}" for line in open(path, encoding="utf-8")
                              if pattern.search(line)]
    assert offenders == []
