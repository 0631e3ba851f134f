"""Secrets and names: no token or password reaches argv, logs, errors or status; names from config
or data stay names in Flux, InfluxQL and SQL; TLS is verified and nothing turns it off."""

import os
import re
import subprocess
import sys
import time

import pytest

from loader import config as config_module
from loader.config import redact
from loader.errors import ConfigError, SourceRejected
from loader.job import Job
from loader.sources.batch import READINGS
from loader.sources.flux import build_query, flux_string
from loader.sources.influxql import build_statements, identifier, source_name
from tests.support.archive import archive_rows, watermark
from tests.support.flux_standin import Parser, StandIn
from tests.support.harness import HOUR, ROOT, TOKEN, FixedClock, cli, flux_env, make_config, now
from tests.support.readings import expected_means, feed_influxd, feed_standin, pulse_points

HOSTILE = {"bucket": 'bu"ck;et ü', "measurement": 'me"as;ure ü', "field": "fi'eld\"; DROP TABLE x; ü",
           "table": 'ta"ble; ü'}
NOW = 1_790_000_000 - 1_790_000_000 % 86400 + 3 * 3600 + 17
BASE = {"INFLUX_URL": "http://localhost:8086", "INFLUX_TOKEN": "tok-123456", "INFLUX_ORG": "o",
        "PG_URL": "postgresql://u:pw-secret@localhost/db"}
HOSTILE_STRINGS = ['a"b', "x\\\") |> drop(columns: [\"_value\"]) //", "${danger}", "semi;colon", "späce ünïcode",
                   "it's"]


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


def test_wrong_token_exits_2_with_one_line_and_no_secret(pg_url, standin):
    secret = "s3cr3t-token-that-must-not-leak"
    result = cli("run", env=flux_env(pg_url, standin, INFLUX_TOKEN=secret))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("influx-archive:")]
    assert len(errors) == 1 and "refused the token" in errors[0]
    assert secret not in result.stderr + result.stdout


def test_token_never_in_process_list_logs_or_status(tmp_path, pg_url, standin):
    feed_standin(standin, pulse_points(now() - 2 * HOUR, 2 * HOUR))
    log_file = tmp_path / "loader.log"
    standin.faults = [("hang", 3)]
    env = flux_env(pg_url, standin, INITIAL_LOOKBACK="2h", LOG_FILE=log_file)
    proc = subprocess.Popen([sys.executable, "-m", "loader", "--env-file", os.devnull, "-v", "run"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not standin.queries:  # the loader itself is running (not the fork before exec) once InfluxDB is asked
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
        argv = f.read()
    assert b"loader" in argv and TOKEN.encode() not in argv
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    status = cli("status", env=env)
    for text in (out, err, log_file.read_text(), status.stdout, status.stderr):
        assert TOKEN not in text


def test_secrets_do_not_show_in_repr_or_errors():
    cfg = config_module.load(None, environ=BASE)
    assert "tok-123456" not in repr(cfg) and "pw-secret" not in repr(cfg)
    assert cfg.describe_pg() == "postgresql://u@localhost/db"  # no password field at all
    assert redact("failed for tok-123456 with pw-secret", cfg.secrets()) == "failed for *** with ***"


def test_world_readable_env_file_is_refused(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in BASE.items()))
    env_file.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        config_module.load(str(env_file), environ={})


@pytest.mark.parametrize("url, said", [
    ("postgresql://u:Zq@Xw:Yv@127.0.0.1:5432/db", "the password (or user name) has a character that must be encoded"),
    ("postgresql://u:Zq/Xw@127.0.0.1:5432/db", "the password (or user name) has a character that must be encoded"),
    ("postgresql://u:ZqXwYv@127.0.0.1:54x2/db", "the port after the host name must be a number, such as 5432"),
    ("ZqXwYv-garbage", "PG_URL must start with postgresql://"),
])
def test_a_malformed_pg_url_exits_2_and_shows_no_part_of_it(url, said):
    env = {"PATH": os.environ["PATH"], "INFLUX_URL": "http://127.0.0.1:1", "INFLUX_TOKEN": "t0ken-value",
           "INFLUX_ORG": "o", "PG_URL": url}
    result = cli("run", env=env)
    assert result.returncode == 2
    assert said in result.stderr
    for fragment in ("Zq", "Xw", "Yv", "***"):
        assert fragment not in result.stderr + result.stdout


def test_credentials_in_influx_url_are_refused_without_showing_them():
    env = {"PATH": os.environ["PATH"], "INFLUX_URL": "http://admin:Zq9Xw@127.0.0.1:8086", "INFLUX_TOKEN": "t0ken",
           "INFLUX_ORG": "o", "PG_URL": "postgresql://u@127.0.0.1/db"}
    result = cli("run", env=env)
    assert result.returncode == 2
    assert "INFLUX_URL must not carry a user name or password" in result.stderr
    assert "Zq9Xw" not in result.stderr and "admin" not in result.stderr


@pytest.mark.parametrize("name", HOSTILE_STRINGS)
def test_flux_strings_are_escaped(name):
    program = Parser(f"x = from(bucket: {flux_string(name)})").program()
    assert program[0][2][2]["bucket"] == name  # parsed back as one literal, unchanged


@pytest.mark.parametrize("name", HOSTILE_STRINGS)
def test_hostile_names_stay_inside_literals_in_whole_queries(name):
    cfg = config_module.load(None, environ=dict(BASE, INFLUX_BUCKET=name, INFLUX_MEASUREMENT=name,
                                                FIELDS=name.replace(",", ""), TAGS="uid",
                                                VALID_RANGES=f"{name.replace(',', '')}=1..2"))
    program = Parser(build_query(cfg, 0, 3600)).program()
    # nothing injected: data, the readings kept, their means; the refused readings, their count, lowest and
    # highest
    assert [stmt[0] for stmt in program] == ["assign", "assign", "expr", "assign", "expr", "expr", "expr"]
    field = name.replace(",", "")
    program = Parser(build_query(cfg, 0, 3600, [field], skipped=[field])).program()
    assert [stmt[0] for stmt in program] == ["assign", "assign", "assign", "expr", "assign", "expr", "expr", "expr",
                                             "expr"]
    as_spo2 = config_module.load(None, environ=dict(BASE, INFLUX_BUCKET=name, INFLUX_MEASUREMENT=name, FIELDS=field,
                                                    TAGS="uid", SESSION_SPO2=field, SESSION_PULSE="none",
                                                    VALID_RANGES=f"{field}=1..2"))
    program = Parser(build_query(as_spo2, 0, 3600, [field])).program()  # and the readings per window, and per second
    assert [stmt[0] for stmt in program] == ["assign", "assign", "expr", *["expr"] * len(READINGS), "expr", "assign",
                                             "expr", "expr", "expr"]
    counted = [s for kind, _, s in build_statements(as_spo2, [field], 0, 3600) if kind in ("readings", "seconds")]
    assert len(counted) == len(READINGS) + 1 and all(s.count(identifier(field)) >= 2 for s in counted)
    text = identifier(name)
    assert text.startswith('"') and text.endswith('"') and '"' not in text[1:-1].replace('\\"', "")
    statements = build_statements(cfg, [name], 0, 3600)
    assert all(s.count(identifier(name)) >= 1 for _, _, s in statements)
    assert source_name(cfg) == identifier(name)


def test_hostile_names_in_bucket_measurement_field_and_table_inject_nothing(pg_url, standin, influxd):
    """Quotes, semicolons, spaces and unicode in every name from config or data: each stays one name
    in Flux, InfluxQL and SQL, and both sources still give identical rows."""
    points = [(HOSTILE["measurement"], {"uid": "a"}, f, t, v) for t in range(NOW - 600, NOW)
              for f, v in (("spo2", 96.5 + t % 3), (HOSTILE["field"], 1.25))]
    feed_standin(standin, points, bucket=HOSTILE["bucket"])
    influxd.query(f'CREATE DATABASE "{HOSTILE["bucket"].replace(chr(34), chr(92) + chr(34))}"')
    feed_influxd(influxd, HOSTILE["bucket"], points)
    common = dict(INITIAL_LOOKBACK="1h", INFLUX_MEASUREMENT=HOSTILE["measurement"],
                  VALID_RANGES=f"{HOSTILE['field']}=0..10")
    Job(make_config(pg_url, standin.url, bucket=HOSTILE["bucket"], PG_TABLE=HOSTILE["table"], **common),
        clock=FixedClock(NOW)).run()
    Job(make_config(pg_url, influxd.url, language="influxql", bucket=HOSTILE["bucket"], PG_TABLE="via_influxql",
                    **common), clock=FixedClock(NOW)).run()
    want = expected_means(points, start=0, end=NOW - NOW % 5)
    assert archive_rows(pg_url, HOSTILE["table"]) == want
    assert archive_rows(pg_url, "via_influxql") == want
    assert HOSTILE["field"] in next(iter(want.values()))


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
