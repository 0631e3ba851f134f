"""TLS on the LAN (install.sh --lan): the Pi's own CA and server certificate, the hostssl line, PostgreSQL's
TLS settings and the Grafana provisioning file, each made by install.sh's own steps (sourced) and put to a
throwaway cluster that listens as the Pi's does. The LAN is 127.0.0.1/32 here, the only line in its
pg_hba.conf besides the superuser's socket: a plain connection from it is refused, the provisioning file's
settings connect and verify the server."""

import os
import subprocess

import psycopg2
import pytest
import yaml

from tests.support.servers import PostgresServer, server_or_skip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = 'DB_NAME=archive_tls; GRAFANA_ROLE=grafana_tls; LAN_CIDR=127.0.0.1/32; INSTALL_LOG=/dev/null'


def sourced(snippet):
    return subprocess.run(["bash", "-c", f"set -euo pipefail; . ./install.sh; {NAMES}; {snippet}"], cwd=ROOT,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def lan_server():
    if os.geteuid() != 0:
        pytest.skip("the certificate's key goes to the postgres user, as on the Pi: run as root (tests/run does)")
    server = server_or_skip(PostgresServer)
    tls = os.path.join(server.dir, "influx-archive-tls")  # where the postgres user may enter, as /etc/postgresql
    made = sourced(f'make_tls "{tls}"; tls_settings "{tls}" > "{server.data}/tls.conf"; '
                   f'printf "local all postgres trust\\n" > "{server.data}/pg_hba.conf"; '
                   f'set_lan_hba "{server.data}/pg_hba.conf"; set_lan_hba "{server.data}/pg_hba.conf" || true')
    assert made.returncode == 0, made.stderr
    with open(os.path.join(server.data, "postgresql.conf"), "a", encoding="utf-8") as conf:
        conf.write("include = 'tls.conf'\n")
    server.stop()
    server.start()
    conn = psycopg2.connect(host=server.dir, port=server.port, user="postgres", dbname="postgres")
    conn.autocommit = True
    conn.cursor().execute("CREATE ROLE grafana_tls LOGIN PASSWORD 'reader-pw'")
    conn.cursor().execute("CREATE DATABASE archive_tls")
    conn.close()
    yield server, tls
    server.close()


def test_a_plain_connection_from_the_lan_is_refused_and_the_provisioning_files_settings_connect(lan_server,
                                                                                               tmp_path):
    server, tls = lan_server
    with open(os.path.join(server.data, "pg_hba.conf"), encoding="utf-8") as hba:
        lines = [line for line in hba.read().splitlines() if line and not line.startswith("#")]
    assert lines == ["local all postgres trust",  # set_lan_hba run twice: the line once
                     "hostssl    archive_tls    grafana_tls    127.0.0.1/32    scram-sha-256"]
    plain = dict(host="127.0.0.1", port=server.port, dbname="archive_tls", user="grafana_tls", password="reader-pw")
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        psycopg2.connect(sslmode="disable", **plain)

    (tmp_path / "setup").symlink_to(os.path.join(ROOT, "setup"))
    written = sourced(f'APP_DIR="{tmp_path}"; pg_port() {{ echo {server.port}; }}; '
                      f'pg_conf_dir() {{ echo "{os.path.dirname(tls)}"; }}; grafana_datasource')
    assert written.returncode == 0, written.stderr
    [source] = yaml.safe_load((tmp_path / "grafana-datasource.yaml").read_text())["datasources"]
    assert source["jsonData"]["sslmode"] == "verify-ca"
    assert source["jsonData"]["tlsConfigurationMethod"] == "file-content"  # the CA as file content, as Grafana takes it
    ca = tmp_path / "ca-from-the-file.crt"
    ca.write_text(source["secureJsonData"]["tlsCACert"])
    conn = psycopg2.connect(sslmode=source["jsonData"]["sslmode"], sslrootcert=str(ca), **plain)
    cur = conn.cursor()
    cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    encrypted, version = cur.fetchone()
    conn.close()
    assert encrypted and version in ("TLSv1.2", "TLSv1.3")

    other = tmp_path / "another-pi"
    assert sourced(f'make_tls "{other}"').returncode == 0
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):  # verified, not just encrypted
        psycopg2.connect(sslmode="verify-ca", sslrootcert=str(other / "ca.crt"), **plain)


def test_make_tls_keeps_a_valid_ca_and_certificate_on_a_second_run_and_keys_are_private(lan_server):
    _, tls = lan_server
    before = {name: open(os.path.join(tls, name), "rb").read() for name in ("ca.crt", "server.crt")}
    assert sourced(f'make_tls "{tls}"').returncode == 0
    assert {name: open(os.path.join(tls, name), "rb").read() for name in before} == before  # Grafana's file holds
    for key in ("ca.key", "server.key"):
        assert os.stat(os.path.join(tls, key)).st_mode & 0o077 == 0
    assert sorted(os.listdir(tls)) == ["ca.crt", "ca.key", "server.crt", "server.key"]


def test_an_earlier_installs_plain_lan_line_is_replaced_by_the_tls_one(tmp_path):
    hba = tmp_path / "pg_hba.conf"
    hba.write_text("local all postgres peer\n# influx-archive: Grafana reads from the LAN (install.sh --lan)\n"
                   "host    archive_tls    grafana_tls    127.0.0.1/32    scram-sha-256\n"
                   "host all all ::1/128 scram-sha-256\n")
    assert sourced(f'set_lan_hba "{hba}"').returncode == 0  # changed
    assert hba.read_text() == (
        "local all postgres peer\nhost all all ::1/128 scram-sha-256\n"
        "# influx-archive: Grafana reads from the LAN, over TLS only (install.sh --lan)\n"
        "hostssl    archive_tls    grafana_tls    127.0.0.1/32    scram-sha-256\n")
    assert sourced(f'set_lan_hba "{hba}"').returncode == 1  # unchanged: PostgreSQL is not restarted for nothing
