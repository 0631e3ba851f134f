"""install.sh: ShellCheck, its steps called by sourcing it (pi-hole style), and — on a throwaway
Debian machine as root, as CI does with `tests/run --install` — the whole `--demo` install, twice."""

import ast
import glob
import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import time
import uuid

import psycopg2
import pytest

from tests.support.archive import archive_rows
from tests.support.readings import expected_means, feed_influxd, pulse_points
from tests.support.servers import InfluxdServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = "/opt/influx-archive"  # where install.sh deploys the code, venv and .env
SCRIPTS = ["install.sh", "tests/run", ".ci/run", "setup/command.sh", "tests/grafana/other-versions", "bench/run",
           "bench/validate", "bench/armhf"]
FULL = os.environ.get("INFLUX_ARCHIVE_INSTALL_TEST") == "1"
FAKE_CRONTAB = """#!/bin/sh
# a stand-in for crontab(1): -l -u USER prints $FAKE_DIR/USER; -u USER - stores standard input there
if [ "$1" = "-l" ]; then [ -f "$FAKE_DIR/$3" ] && exec cat "$FAKE_DIR/$3"; exit 1; fi
if [ "$1" = "-u" ] && [ "$3" = "-" ]; then cat > "$FAKE_DIR/$2"; exit 0; fi
exit 2
"""
DEMO_PIDFILE = "/var/run/influxdb/influxd.pid"  # install.sh's: the demo's server, started by init or directly
REFERENCE_LINE = "0 * * * * /usr/bin/python3 /home/pi/pg_loader/health_metrics_loader.py >> ~/cron.log 2>&1"


def sourced(snippet):
    """Run bash snippet after sourcing install.sh (main does not run)."""
    return subprocess.run(["bash", "-c", f"set -euo pipefail; . ./install.sh; {snippet}"], cwd=ROOT,
                          capture_output=True, text=True)


@pytest.mark.skipif(not shutil.which("shellcheck") and not os.environ.get("CI"),
                    reason="shellcheck not installed (tests/run installs it when run as root)")
def test_shellcheck_is_clean():
    result = subprocess.run(["shellcheck", "-x", *SCRIPTS], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_sourcing_defines_steps_without_running_them():
    result = sourced("type main detect_system create_roles install_schedule >/dev/null; echo sourced")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "sourced\n" and result.stderr == ""


def test_the_pi_takes_the_loaders_runtime_from_apt_alone():
    """No pandas, numpy or SQLAlchemy on the card, and no pip step that would need PyPI."""
    listed = sourced('echo "${APT_PACKAGES[@]}"').stdout.split()
    assert {"python3-psycopg2", "python3-urllib3", "python3-dotenv"} <= set(listed)
    assert not {"python3-pandas", "python3-numpy", "python3-sqlalchemy"} & set(listed)
    with open(os.path.join(ROOT, "install.sh"), encoding="utf-8") as handle:
        assert "pip install" not in handle.read()
    with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as handle:
        runtime = {re.split(r"[<>=]", line)[0] for line in handle if line.strip() and not line.startswith("#")}
    assert runtime == {"psycopg2-binary", "urllib3", "python-dotenv"}
    assert _third_party_imports() == {"psycopg2", "urllib3", "dotenv"}  # what loader/ imports, and no more
    # the optional parts (install.sh --reports: apt's python3-matplotlib and apprise), imported only inside the
    # functions that draw a report or send a message: the hourly run without them never loads them
    assert _third_party_imports(inside_functions=True) == {"report.py": {"matplotlib"}, "morning.py": {"apprise"}}


def _third_party_imports(inside_functions=False):
    """Modules imported in loader/ that are neither the standard library nor loader's: those at a module's top
    level (a set), or, inside_functions, those imported in its functions only ({file: set})."""
    top, inside = set(), {}
    for path in glob.glob(os.path.join(ROOT, "loader", "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f)}
        for node in ast.walk(tree):
            names = set()
            if isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = {node.module.split(".")[0]}
            names = {n for n in names if n not in sys.stdlib_module_names and n != "loader"}
            if id(node) in nested:
                inside.setdefault(os.path.basename(path), set()).update(names - {"psycopg2", "urllib3", "dotenv"})
            else:
                top |= names
    return {k: v for k, v in inside.items() if v} if inside_functions else top


@pytest.mark.skipif(not FULL, reason="downloads from PyPI: runs with tests/run --install, as CI does")
def test_the_plain_pip_route_makes_a_small_venv_that_runs_the_loader(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
                    os.path.join(ROOT, "requirements.txt")], check=True, capture_output=True)
    site = glob.glob(str(venv / "lib/python3*/site-packages"))[0]
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(site) for f in files)
    assert size <= 40 * 1024 * 1024, size  # pip and setuptools themselves included
    ran = subprocess.run([str(venv / "bin/python"), "-m", "loader", "--env-file", os.devnull, "status"], cwd=ROOT,
                         capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert ran.returncode == 2 and "PG_URL or PG_CONNECT is required" in ran.stderr  # it ran, and said what it needs


def test_parse_args_accepts_options_and_refuses_bad_ones():
    good = sourced('parse_args --demo --lan 192.168.1.0/24 --language influxql --user pi --backup-dir /mnt/usb/ia '
                   '--restore /mnt/usb/ia/x.dump; echo "$DEMO $LAN_CIDR $LANGUAGE_OPT $SERVICE_USER $BACKUP_DIR_OPT '
                   '$RESTORE_FILE"')
    assert good.stdout.split() == ["1", "192.168.1.0/24", "influxql", "pi", "/mnt/usb/ia", "/mnt/usb/ia/x.dump"]
    usage = subprocess.run(["bash", "install.sh", "--help"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "--backup-dir DIR" in usage and "--restore FILE" in usage and "\n\nOptions:" in usage
    for bad in ("--lan 'x; rm -rf /'", "--language sql", "--frobnicate"):
        result = sourced(f"INSTALL_LOG=/dev/null; parse_args {bad}")
        assert result.returncode != 0 and "install.sh:" in result.stderr


def test_render_fills_every_placeholder_of_the_schedule_files():
    units = sorted("setup/systemd/" + name for name in os.listdir(os.path.join(ROOT, "setup/systemd")))
    assert len(units) == 6
    for template in ["crontab.txt", "setup/logrotate.conf", "setup/command.sh"] + units:
        result = sourced(f"SERVICE_USER=pi; render {template}")
        assert result.returncode == 0 and not re.search(r"@[A-Z_]+@", result.stdout), result.stdout
    cron = sourced("SERVICE_USER=pi; render crontab.txt").stdout
    assert 'MAILTO=""' in cron and "flock -n /run/lock/influx-archive.lock" in cron
    loader = f"{APP}/.venv/bin/python -m loader --env-file {APP}/.env run"
    assert f"cd {APP} && flock -n /run/lock/influx-archive.lock {loader}" in cron
    assert sum(1 for line in cron.splitlines() if line and line[0].isdigit()) == 3
    assert (f"LOG_FILE=/var/log/influx-archive/backup.log flock -n /run/lock/influx-archive-backup.lock "
            f"{APP}/.venv/bin/python -m loader --env-file {APP}/.env backup >> /var/log/influx-archive/backup.log "
            f"2>&1") in cron
    assert "restore --verify >> /var/log/influx-archive/backup.log" in cron
    listed = sourced('echo "${SYSTEMD_UNITS[@]}"').stdout.split()
    assert sorted("setup/systemd/" + unit for unit in listed) == units  # every template is installed


def test_the_installed_command_runs_the_loader_with_the_installed_settings_from_any_directory(tmp_path, pg_url,
                                                                                             standin):
    """/usr/local/bin/influx-archive as install.sh renders it (here for this user, over a copy of the code's
    place): run from / with none of the settings in the environment, it reads the installed .env."""
    app = tmp_path / "app"
    app.mkdir()
    os.symlink(os.path.join(ROOT, "loader"), app / "loader")
    (app / ".env").write_text(f"INFLUX_URL={standin.url}\nINFLUX_TOKEN=t\nINFLUX_ORG=o\nPG_URL={pg_url}\n")
    (app / ".env").chmod(0o600)
    venv = os.path.dirname(os.path.dirname(sys.executable))
    rendered = sourced(f"APP_DIR={app}; VENV={venv}; SERVICE_USER=$(id -un); render setup/command.sh")
    assert rendered.returncode == 0, rendered.stderr
    command = tmp_path / "influx-archive"
    command.write_text(rendered.stdout)
    command.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUX_", "PG_"))}
    status = subprocess.run([str(command), "status"], cwd="/", env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 2  # the installed archive is empty: a monitor pages
    assert "archive:     public.pox_five_second_mean" in status.stdout
    assert "verdict:     nothing archived yet" in status.stdout
    assert "nothing archived yet: run `influx-archive run` (`influx-archive check` first if it fails)" in status.stdout
    usage = subprocess.run([str(command), "--help"], cwd="/", env=env, capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0 and "backfill" in usage.stdout
    assert usage.stdout.startswith("usage: influx-archive [-h]")
    assert f"Settings come from {app}/.env and" in usage.stdout
    backup = subprocess.run([str(command), "backup"], cwd="/", env=env, capture_output=True, text=True, timeout=60)
    assert backup.returncode == 2 and f"set BACKUP_DIR in {app}/.env to a directory" in backup.stderr
    for said in (status.stdout, usage.stdout, backup.stderr):
        assert "python -m loader" not in said


@pytest.mark.parametrize("installed", [True, False])
def test_every_commands_help_names_the_command_and_settings_file_the_person_runs(monkeypatch, installed):
    """Through the installed command: `influx-archive` and /opt/influx-archive/.env in every usage line, example
    and exit code; on the hand route `python -m loader` and .env, never the installed command."""
    from loader import cli
    if installed:
        monkeypatch.setenv("INFLUX_ARCHIVE_COMMAND", "influx-archive")
        monkeypatch.setenv("INFLUX_ARCHIVE_ENV_FILE", "/opt/influx-archive/.env")
    else:
        monkeypatch.delenv("INFLUX_ARCHIVE_COMMAND", raising=False)
        monkeypatch.delenv("INFLUX_ARCHIVE_ENV_FILE", raising=False)
    parser = cli.build_parser()
    helps = {None: parser.format_help()}
    helps.update({name: sub.format_help() for name, sub in
                  next(a for a in parser._actions if a.dest == "command").choices.items()})  # noqa: SLF001
    assert set(helps) == {None, *cli.COMMANDS}
    for name, text in helps.items():
        usage = f"usage: {'influx-archive' if installed else 'python -m loader'}{' ' + name if name else ''} [-h]"
        assert text.startswith(usage), (name, text[:80])
        if installed:
            assert "python -m loader" not in text and not re.search(r"(?<![\w./])\.env(?![\w.])", text), name
        else:
            assert "`influx-archive " not in text and "  influx-archive " not in text, name
    if installed:
        assert "settings (/opt/influx-archive/.env, the environment) are missing or wrong" in helps["run"]
        assert "  influx-archive run\n\n" in helps["run"]  # the hand route's two examples read as one


def test_the_grafana_data_source_file_carries_the_port_postgresql_listens_on(tmp_path):
    """A Pi whose port 5432 was taken runs the archive's cluster on 5433: the provisioning file says so (and
    carries the Pi's CA certificate: tests/test_tls.py connects with it)."""
    (tmp_path / "setup").symlink_to(os.path.join(ROOT, "setup"))
    (tmp_path / "pg" / "influx-archive-tls").mkdir(parents=True)
    (tmp_path / "pg" / "influx-archive-tls" / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n")
    result = sourced(f'APP_DIR="{tmp_path}"; pg_port() {{ echo 5433; }}; pg_conf_dir() {{ echo "{tmp_path}/pg"; }}; '
                     f'grafana_datasource')
    assert result.returncode == 0, result.stderr
    written = (tmp_path / "grafana-datasource.yaml").read_text()
    with open(os.path.join(ROOT, "setup/grafana/datasource.yaml"), encoding="utf-8") as handle:
        template = handle.read()
    assert "url: ${INFLUX_ARCHIVE_HOST}:5432" in template and "        @CA_CERT@\n" in template
    assert written == template.replace("url: ${INFLUX_ARCHIVE_HOST}:5432", "url: ${INFLUX_ARCHIVE_HOST}:5433").replace(
        "        @CA_CERT@\n", "        -----BEGIN CERTIFICATE-----\n        MIIB\n")


def test_detect_system_on_this_machine_and_refusal_of_others(tmp_path):
    here = sourced("INSTALL_LOG=/dev/null; detect_system")
    if os.path.exists("/etc/debian_version") and here.returncode == 0:
        assert "ok: Debian" in here.stderr
    fake = tmp_path / "dpkg"
    fake.write_text("#!/bin/sh\necho i386\n")
    fake.chmod(0o755)
    result = sourced(f'INSTALL_LOG=/dev/null; PATH="{tmp_path}:$PATH"; detect_system')
    assert result.returncode != 0 and "architecture i386 is not supported" in result.stderr


def test_envfile_creates_0600_never_overwrites_and_keeps_secrets_out_of_argv(tmp_path):
    target = tmp_path / ".env"
    env = dict(os.environ, IA_SET_PG_URL="postgresql+psycopg2://u:p@h/d", IA_SET_INFLUX_TOKEN="t0k en")
    helper = [shutil.which("python3"), os.path.join(ROOT, "setup/envfile.py")]
    subprocess.run(helper + ["create", str(target), os.path.join(ROOT, ".env.example")], env=env, check=True)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    text = target.read_text()
    assert "PG_URL=postgresql+psycopg2://u:p@h/d\n" in text and 'INFLUX_TOKEN="t0k en"\n' in text
    again = subprocess.run(helper + ["create", str(target), os.path.join(ROOT, ".env.example")], env=env,
                           capture_output=True, text=True)
    assert again.returncode != 0 and "never overwritten" in again.stderr
    added = subprocess.run(helper + ["add-missing", str(target)], capture_output=True, text=True, check=True,
                           env=dict(os.environ, IA_SET_GRAFANA_PG_PASSWORD="g", IA_SET_PG_URL="other"))
    assert added.stdout.strip() == "GRAFANA_PG_PASSWORD"
    assert "PG_URL=postgresql+psycopg2://u:p@h/d\n" in target.read_text()  # existing line untouched
    got = subprocess.run(helper + ["get", str(target), "INFLUX_TOKEN"], capture_output=True, text=True)
    assert got.stdout == "t0k en\n"


# ------------------------------------------------------------------ the whole install (root, throwaway machine)

def _snapshot():
    paths = ["/etc/cron.d/influx-archive", os.path.join(APP, ".env"), "/etc/logrotate.d/influx-archive"]
    confs = subprocess.run("ls /etc/postgresql/*/main/pg_hba.conf /etc/postgresql/*/main/conf.d/*", shell=True,
                           capture_output=True, text=True).stdout.split()
    out = {}
    for path in paths + confs:
        with open(path, "rb") as f:
            out[path] = hashlib.sha256(f.read()).hexdigest()
    st = os.stat(os.path.join(APP, ".env"))
    out["env-mode-owner"] = (stat.S_IMODE(st.st_mode), st.st_uid)
    return out


def _venv_packages():
    """What the installed venv holds in its own site-packages (besides pip's own, which it does not install)."""
    site = glob.glob(os.path.join(APP, ".venv/lib/python3*/site-packages"))[0]
    return sorted(n for n in os.listdir(site) if n != "__pycache__")


def _env_value(key):
    return subprocess.run(["python3", os.path.join(ROOT, "setup/envfile.py"), "get", os.path.join(APP, ".env"), key],
                          capture_output=True, text=True, check=True).stdout.strip()


def _login_user_runs(*command):
    """The command run from / by a login user (as `pi` on a Pi) whom sudo lets act as the service user without
    a password (sudo asks for one on a Pi); the user and its sudoers line are removed after."""
    user, sudoers = "ia-login-test", "/etc/sudoers.d/ia-login-test"
    subprocess.run(["userdel", "--remove", user], capture_output=True)  # one an interrupted run left
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", user], check=True, capture_output=True)
    try:
        with open(sudoers, "w", encoding="utf-8") as handle:
            handle.write(f"{user} ALL=(influx-archive) NOPASSWD: ALL\n")
        os.chmod(sudoers, 0o440)
        return subprocess.run(["runuser", "-l", user, "-c", "cd / && " + " ".join(command)], capture_output=True,
                              text=True, timeout=120)
    finally:
        if os.path.exists(sudoers):
            os.remove(sudoers)
        subprocess.run(["userdel", "--remove", user], capture_output=True)


def _set_env(key, value):
    """Set KEY in the installed .env, as the person editing it would (envfile.py's set, mode and owner kept)."""
    subprocess.run(["python3", os.path.join(ROOT, "setup/envfile.py"), "set", os.path.join(APP, ".env"), key],
                   env={**os.environ, f"IA_SET_{key}": value}, check=True, capture_output=True)


@pytest.fixture(scope="module")
def backups(usb_drive):
    """--backup-dir on a mounted drive (a loop-mounted ext4 image), shared by the two install tests."""
    return os.path.join(usb_drive, "influx-archive-install-test")


@pytest.mark.skipif(not FULL, reason="changes the machine (apt, system PostgreSQL, /etc/cron.d): runs only with "
                                     "tests/run --install, as CI does on its throwaway machine")
def test_demo_install_fills_the_archive_and_a_second_run_changes_nothing(backups):
    shutil.rmtree(backups, ignore_errors=True)
    os.mkdir(backups)  # on a mounted drive, as --backup-dir wants
    first = subprocess.run(["./install.sh", "--demo", "--lan", "10.9.0.0/16", "--backup-dir", backups], cwd=ROOT,
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=1200)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "influx-archive is installed." in first.stderr and "verdict:     fresh" in first.stderr
    before = _snapshot()
    assert before["env-mode-owner"][0] == 0o600
    crons = [f for f in os.listdir("/etc/cron.d") if "influx" in f]
    assert crons == ["influx-archive"]

    status = subprocess.run(["runuser", "-u", "influx-archive", "--", os.path.join(APP, ".venv/bin/python"), "-m",
                             "loader", "--env-file", os.path.join(APP, ".env"), "status"], cwd=APP,
                            capture_output=True, text=True)
    assert status.returncode == 0, status.stdout + status.stderr
    for who in ([], ["/usr/sbin/runuser", "-u", "influx-archive", "--"]):  # root (sudo), and the service user
        command = subprocess.run([*who, "influx-archive", "status"], cwd="/", capture_output=True, text=True,
                                 env={"PATH": "/usr/local/bin:/usr/bin:/bin"})
        assert command.returncode == 0 and "verdict:     fresh" in command.stdout, command.stdout + command.stderr
    as_login_user = _login_user_runs("influx-archive", "status")
    assert as_login_user.returncode == 0 and "verdict:     fresh" in as_login_user.stdout, (
        as_login_user.stdout + as_login_user.stderr)

    assert _env_value("LOG_FILE") == "/var/log/influx-archive/loader.log"  # the file cron appends to, timed
    with open("/var/log/influx-archive/loader.log", encoding="utf-8") as log:
        logged = log.read().splitlines()
    assert any(" INFO run done: " in line for line in logged)  # install.sh's first load, kept there too
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} [A-Z]+ ", line) for line in logged), logged

    port = int(_env_value("PG_URL").rsplit(":", 1)[1].split("/")[0])
    with open(os.path.join(APP, "grafana-datasource.yaml"), encoding="utf-8") as handle:
        assert f"url: ${{INFLUX_ARCHIVE_HOST}}:{port}\n" in handle.read()
    loader = psycopg2.connect(_env_value("PG_URL").replace("+psycopg2", ""))
    cur = loader.cursor()
    cur.execute("SELECT count(*), count(DISTINCT time) FROM pox_five_second_mean")
    total, distinct = cur.fetchone()
    assert total == distinct > 40000  # three days of 5-second windows, less the gap
    cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    assert cur.fetchone()[0] is False
    loader.close()

    grafana = psycopg2.connect(host="127.0.0.1", port=port, dbname="influx_archive", user="grafana_reader",
                               password=_env_value("GRAFANA_PG_PASSWORD"))
    grafana.autocommit = True
    cur = grafana.cursor()
    cur.execute("SELECT count(*) FROM pox_five_second_mean")
    assert cur.fetchone()[0] == total
    cur.execute("SELECT sum(windows) FROM pox_five_second_mean_1d")  # rollups: created later, readable too
    assert cur.fetchone()[0] == total
    cur.execute("SET default_transaction_read_only = off")  # privileges refuse, not just the read-only default
    for statement in ("INSERT INTO pox_five_second_mean (time) VALUES (now())",
                      "UPDATE pox_five_second_mean SET spo2 = 0", "DELETE FROM pox_five_second_mean",
                      "CREATE TABLE grafana_was_here (x int)", "DROP TABLE pox_five_second_mean",
                      "TRUNCATE pox_five_second_mean"):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute(statement)
    grafana.close()

    assert _venv_packages() == []  # apt's packages only: nothing from PyPI
    # what an install by the previous version left in its venv (pip's influxdb-client and its reactivex)
    site = glob.glob(os.path.join(APP, ".venv/lib/python3*/site-packages"))[0]
    for name in ("influxdb_client", "influxdb_client-1.50.0.dist-info", "reactivex"):
        os.makedirs(os.path.join(site, name))
    second = subprocess.run(["./install.sh", "--demo", "--lan", "10.9.0.0/16", "--backup-dir", backups], cwd=ROOT,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=1200)
    assert second.returncode == 0, second.stderr[-3000:]
    assert _snapshot() == before
    assert _venv_packages() == [] and "made anew" in second.stderr  # nothing unused left behind
    loader = psycopg2.connect(_env_value("PG_URL").replace("+psycopg2", ""))
    cur = loader.cursor()
    cur.execute("SELECT count(*) FROM pox_five_second_mean")
    assert cur.fetchone()[0] >= total  # the archive is intact after the upgrade
    loader.close()
    hba = subprocess.run("cat /etc/postgresql/*/main/pg_hba.conf", shell=True, capture_output=True, text=True).stdout
    assert hba.count("hostssl    influx_archive    grafana_reader    10.9.0.0/16    scram-sha-256") == 1
    assert "host    influx_archive    grafana_reader" not in hba  # TLS only from the LAN
    _a_lan_connection_needs_tls_and_the_provisioning_file_verifies_it(port)


def _a_lan_connection_needs_tls_and_the_provisioning_file_verifies_it(port):
    """From 10.9.0.5 (an address of --lan 10.9.0.0/16, on this machine's loopback for the test): refused without
    TLS; the provisioning file's CA and sslmode connect, encrypted."""
    import yaml
    subprocess.run(["ip", "addr", "add", "10.9.0.5/32", "dev", "lo"], check=True, capture_output=True)
    try:
        plain = dict(host="10.9.0.5", port=port, dbname="influx_archive", user="grafana_reader",
                     password=_env_value("GRAFANA_PG_PASSWORD"), connect_timeout=10)
        with pytest.raises(psycopg2.OperationalError, match="no encryption"):
            psycopg2.connect(sslmode="disable", **plain)
        with open(os.path.join(APP, "grafana-datasource.yaml"), encoding="utf-8") as handle:
            [source] = yaml.safe_load(handle)["datasources"]
        ca = os.path.join(APP, ".ca-test.crt")
        with open(ca, "w", encoding="utf-8") as handle:
            handle.write(source["secureJsonData"]["tlsCACert"])
        try:
            conn = psycopg2.connect(sslmode=source["jsonData"]["sslmode"], sslrootcert=ca, **plain)
        finally:
            os.remove(ca)
        cur = conn.cursor()
        cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone()[0] is True
        conn.close()
    finally:
        subprocess.run(["ip", "addr", "del", "10.9.0.5/32", "dev", "lo"], capture_output=True)


def _cron_command(word):
    """The command of the installed cron line that runs `loader ... <word>`, as cron runs it."""
    with open("/etc/cron.d/influx-archive", encoding="utf-8") as handle:
        line = next(x for x in handle if x[:1].isdigit() and f" {word}" in x.split(">>")[0])
    fields = line.split(None, 6)
    return fields[5], fields[6].strip()


def _as_cron(word):
    user, command = _cron_command(word)
    return subprocess.run(["runuser", "-u", user, "--", "sh", "-c", command], cwd="/", capture_output=True, text=True,
                          timeout=600)


@pytest.mark.skipif(not FULL, reason="needs the demo install above (tests/run --install, as CI does)")
def test_the_scheduled_backup_restores_to_the_live_archive_and_a_new_pi_restores_it(backups):
    # a backup by hand with sudo, by the command and by the hand route, then the nightly ones as the service user
    by_hand = [["influx-archive", "backup"], [os.path.join(APP, ".venv/bin/python"), "-m", "loader", "--env-file",
                                              os.path.join(APP, ".env"), "backup"]]
    for command in by_hand:  # the hand route from the install's directory, as the README says
        done = subprocess.run(command, cwd=APP, capture_output=True, text=True, timeout=600,
                              env={"PATH": "/usr/local/bin:/usr/bin:/bin"})
        assert done.returncode == 0, done.stdout + done.stderr
    for word in ("backup", "--verify"):
        done = _as_cron(word)
        assert done.returncode == 0, done.stderr
    with open("/var/log/influx-archive/backup.log", encoding="utf-8") as log:
        text = log.read()
    assert "backup:  " + backups in text and text.rstrip().endswith("verdict:  restorable and identical")
    dumps = sorted(n for n in os.listdir(backups) if n.endswith(".dump"))
    owner = os.stat(os.path.join(APP, ".env")).st_uid
    assert dumps and {n: os.stat(os.path.join(backups, n)).st_uid for n in os.listdir(backups)} == {
        n: owner for n in os.listdir(backups)}  # the lock and every dump the service user's, whoever ran it
    dumps = dumps[-1:]

    url = _env_value("PG_URL").replace("+psycopg2", "")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    before = _tables(url)
    refused = subprocess.run(["./install.sh", "--demo", "--restore", os.path.join(backups, dumps[0])], cwd=ROOT,
                             capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=1200)
    assert refused.returncode != 0 and "already holds" in refused.stderr  # never over the live archive

    # a new Pi: the database is gone; install.sh makes an empty one, restores, then loads what is newer
    subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-p", str(port), "-Xqc",
                    "DROP DATABASE influx_archive WITH (FORCE)"], check=True, capture_output=True)
    again = subprocess.run(["./install.sh", "--demo", "--restore", os.path.join(backups, dumps[0])], cwd=ROOT,
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=1200)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "restored: " in again.stderr and "verdict:     fresh" in again.stderr
    after = _tables(url)
    for table, rows in before.items():
        assert rows and set(rows) <= set(after[table]), table  # every row of the dump is back
    # the first load after the restore continued from the restored watermark instead of reloading 30 days
    first_load = re.search(r"INFO run (\S+) \.\. (\S+) in (\d+) chunk", again.stderr)
    assert first_load and int(first_load.group(3)) <= 2, again.stderr[-2000:]
    grafana = psycopg2.connect(host="127.0.0.1", port=port, dbname="influx_archive", user="grafana_reader",
                               password=_env_value("GRAFANA_PG_PASSWORD"))
    cur = grafana.cursor()
    cur.execute("SELECT count(*) FROM pox_five_second_mean_1h")  # restored tables are readable by Grafana
    assert cur.fetchone()[0] > 0
    grafana.close()


@pytest.mark.skipif(not FULL, reason="needs the demo install above (tests/run --install, as CI does)")
def test_a_new_pi_restores_a_dump_of_a_pi_that_kept_devices_apart_and_loads_on_its_first_run(backups):
    """The old Pi had TAGS=uid (its archive in PG_TABLE=nights here); the new Pi's .env, as install.sh writes it,
    has no TAGS: the restore is refused before anything changes, naming TAGS=uid; set, it restores and loads."""
    url = _env_value("PG_URL").replace("+psycopg2", "")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    try:
        _set_env("PG_TABLE", "nights")
        _set_env("TAGS", "uid")
        ran = subprocess.run(["influx-archive", "run"], cwd="/", capture_output=True, text=True, timeout=600)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert _as_cron("backup").returncode == 0
        dump = os.path.join(backups, sorted(n for n in os.listdir(backups) if n.endswith(".dump"))[-1])
        kept = _tables(url, "nights")
        subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-p", str(port), "-Xqc",
                        "DROP DATABASE influx_archive WITH (FORCE)"], check=True, capture_output=True)
        _set_env("TAGS", "")  # the new Pi
        refused = subprocess.run(["./install.sh", "--demo", "--restore", dump], cwd=ROOT, capture_output=True,
                                 text=True, stdin=subprocess.DEVNULL, timeout=1200)
        assert refused.returncode != 0
        assert "(TAGS=uid), these settings TAGS empty" in refused.stderr and "set TAGS=uid" in refused.stderr
        _set_env("TAGS", "uid")
        restored = subprocess.run(["./install.sh", "--demo", "--restore", dump], cwd=ROOT, capture_output=True,
                                  text=True, stdin=subprocess.DEVNULL, timeout=1200)
        assert restored.returncode == 0, restored.stderr[-3000:]
        assert "restored: " in restored.stderr and "verdict:     fresh" in restored.stderr
        first_load = re.search(r"INFO run (\S+) \.\. (\S+) in (\d+) chunk", restored.stderr)
        assert first_load and int(first_load.group(3)) <= 2, restored.stderr[-2000:]
        after = _tables(url, "nights")
        for table, rows in kept.items():
            assert rows and set(rows) <= set(after[table]), table
    finally:
        _set_env("PG_TABLE", "pox_five_second_mean")
        _set_env("TAGS", "")


@pytest.mark.skipif(not FULL, reason="needs the demo install above (tests/run --install, as CI does)")
def test_the_demo_is_replaced_by_the_persons_influxdb_leaving_no_synthetic_row():
    """After --demo, install.sh with the person's InfluxDB: refused with what to add (it would keep loading the
    demo, silently, before); with --replace-demo, their readings alone are archived and the demo's InfluxDB stops.
    Theirs runs as the same user (Debian's influxdb) with its own config and port, and runs on."""
    theirs = InfluxdServer(user="influxdb")
    try:
        db = "their_" + uuid.uuid4().hex[:8]
        theirs.query(f'CREATE DATABASE "{db}"')
        points = pulse_points(int(time.time()) - 3 * 3600, 2 * 3600)
        feed_influxd(theirs, db, points)
        with open(DEMO_PIDFILE, encoding="utf-8") as handle:
            demo_pid = int(handle.read())
        assert _process_user(demo_pid) == _process_user(theirs.proc.pid) == "influxdb"
        args = ["./install.sh", "--influx-url", theirs.url, "--language", "influxql", "--bucket", db]
        refused = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                 timeout=1200)
        assert refused.returncode != 0
        assert (f"loads the demo's synthetic readings, and the options given differ (INFLUX_URL: given {theirs.url}, "
                f".env has http://127.0.0.1:8086; INFLUX_BUCKET: given {db}, .env has pulse_oximeter): to load "
                f"your InfluxDB instead, dropping the demo's rows, add --replace-demo") in refused.stderr
        moved = subprocess.run(args + ["--replace-demo"], cwd=ROOT, capture_output=True, text=True,
                               stdin=subprocess.DEVNULL, timeout=1200)
        assert moved.returncode == 0, moved.stderr[-3000:]
        assert "verdict:     fresh" in moved.stderr
        assert archive_rows(_env_value("PG_URL").replace("+psycopg2", "")) == expected_means(points)  # theirs alone
        assert not os.path.exists(f"/proc/{demo_pid}")  # the demo's InfluxDB (no auth) is stopped
        assert theirs.proc.poll() is None  # theirs runs on
        ran = subprocess.run(["influx-archive", "run"], cwd="/", capture_output=True, text=True, timeout=600)
        assert ran.returncode == 0, ran.stdout + ran.stderr
    finally:
        theirs.close()


def _process_user(pid):
    with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
        uid = next(int(line.split()[1]) for line in handle if line.startswith("Uid:"))
    return pwd.getpwuid(uid).pw_name


@pytest.mark.skipif(not FULL, reason="needs the demo install above (tests/run --install, as CI does)")
def test_uninstall_purge_leaves_no_process_file_or_role_of_ours_and_names_what_it_keeps(backups):
    """The last install test: after it the machine has no influx-archive, as before the first."""
    port = int(_env_value("PG_URL").rsplit(":", 1)[1].split("/")[0])
    purged = subprocess.run(["./install.sh", "--uninstall", "--purge"], cwd=ROOT, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=600)
    assert purged.returncode == 0, purged.stderr
    for path in (APP, "/usr/local/bin/influx-archive", "/etc/cron.d/influx-archive", "/var/log/influx-archive",
                 "/etc/logrotate.d/influx-archive"):
        assert not os.path.exists(path), path
    assert not glob.glob("/etc/postgresql/*/main/conf.d/influx-archive*") + glob.glob(
        "/etc/postgresql/*/main/influx-archive-tls")  # the drop-ins, the Pi's CA and certificate
    hba = subprocess.run("cat /etc/postgresql/*/main/pg_hba.conf", shell=True, capture_output=True, text=True).stdout
    assert "influx-archive" not in hba and "grafana_reader" not in hba  # the LAN line and its comment
    demo = subprocess.run(["pgrep", "-u", "influxdb", "-x", "influxd"], capture_output=True)
    assert demo.returncode == 1  # the demo's InfluxDB is stopped (the tests' own run as root)
    with open("/etc/default/influxdb", encoding="utf-8") as handle:
        assert "127.0.0.1:8086" not in handle.read()
    roles = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-p", str(port), "-XAtc",
                            "SELECT rolname FROM pg_roles WHERE rolname IN ('influx_archive', 'grafana_reader') UNION "
                            "ALL SELECT datname FROM pg_database WHERE datname = 'influx_archive'"],
                           capture_output=True, text=True, check=True)
    assert roles.stdout == ""
    assert subprocess.run(["id", "influx-archive"], capture_output=True).returncode == 1
    assert f"kept: {backups}: its dumps, the only copy of the archive now" in purged.stderr
    assert os.listdir(backups)  # the dumps stay


def _tables(url, table="pox_five_second_mean"):
    """Rows no later run may change: 5-second windows older than LATE_DATA, days that ended before that."""
    conn = psycopg2.connect(url)
    try:
        cur = conn.cursor()
        out = {}
        for table, older in ((table, "2 hours"), (f"{table}_1d", "26 hours")):
            cur.execute(f"SELECT * FROM {table} WHERE time < now() - interval '{older}'")
            out[table] = cur.fetchall()
        return out
    finally:
        conn.close()


def test_the_reference_scripts_cron_line_is_reported_and_disabled_only_with_the_flag(tmp_path):
    (tmp_path / "crontab").write_text(FAKE_CRONTAB)
    (tmp_path / "crontab").chmod(0o755)
    user = open("/etc/passwd").readline().split(":")[0]
    table = tmp_path / user
    table.write_text(f"MAILTO=me\n{REFERENCE_LINE}\n")
    setup = f'INSTALL_LOG=/dev/null; export FAKE_DIR="{tmp_path}"; PATH="{tmp_path}:$PATH"; '
    report = sourced(setup + "ADOPT_REFERENCE=0; find_reference_cron")
    assert report.returncode == 0, report.stderr
    assert f"user {user}'s crontab still runs the reference script" in report.stderr
    assert table.read_text() == f"MAILTO=me\n{REFERENCE_LINE}\n"
    disable = sourced(setup + "ADOPT_REFERENCE=1; find_reference_cron")
    assert disable.returncode == 0 and "disabled the reference script's cron line" in disable.stderr
    assert table.read_text() == f"MAILTO=me\n# disabled by influx-archive: {REFERENCE_LINE}\n"
    again = sourced(setup + "ADOPT_REFERENCE=0; find_reference_cron")
    assert "still runs" not in again.stderr  # a disabled line is not reported again


def test_uninstall_removes_the_schedule_and_venv_and_keeps_the_data(tmp_path):
    for name in ("cron", "logrotate", "command"):
        (tmp_path / name).write_text("x")
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    result = sourced(f'INSTALL_LOG=/dev/null; CRON_FILE="{tmp_path}/cron"; LOGROTATE_FILE="{tmp_path}/logrotate"; '
                     f'COMMAND_FILE="{tmp_path}/command"; VENV="{tmp_path}/venv"; has_systemd() {{ return 1; }}; '
                     f'uninstall')
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert "influx_archive and .env are kept" in result.stderr


def test_the_demos_influxd_is_stopped_by_its_pid_file_alone_and_only_its_own_server_counts_as_the_demo(tmp_path):
    """--replace-demo and --purge stop the demo's server by the pid file it was started with: another influxd
    (the person's own, same binary) and a pid that is no influxd run on."""
    demo, theirs = InfluxdServer(), InfluxdServer()
    other = subprocess.Popen(["sleep", "60"])
    try:
        pidfile = tmp_path / "influxd.pid"
        pidfile.write_text(f"{other.pid}\n")  # a stale pid file whose pid now belongs to another program
        assert sourced(f'stop_pidfile "{pidfile}"').returncode == 0
        assert other.poll() is None and not pidfile.exists()
        pidfile.write_text(f"{demo.proc.pid}\n")
        stopped = sourced(f'stop_pidfile "{pidfile}"')
        assert stopped.returncode == 0, stopped.stderr
        assert demo.proc.wait(30) is not None and theirs.proc.poll() is None and not pidfile.exists()
    finally:
        other.kill()
        other.wait()
        demo.close()
        theirs.close()
    for url, ours in (("http://127.0.0.1:8086", True), ("http://localhost:8086/", True),
                      ("http://127.0.0.1:8087", False), ("http://127.0.0.1", False),
                      ("https://eu-central-1-1.aws.cloud2.influxdata.com", False)):
        assert (sourced(f'is_demo_server "{url}"').returncode == 0) is ours, url


def test_a_failed_step_shows_its_reason_on_the_screen_not_only_in_the_log(tmp_path):
    """PostgreSQL did not start: the console showed "==> configuring PostgreSQL" and exit 1, the reason only in
    install.log. Now the step and the log's last lines (the failed command's own words) are shown."""
    log = tmp_path / "install.log"
    fatal = 'FATAL:  could not create lock file "/run/postgresql/.s.PGSQL.5432.lock": No such file or directory'
    failed = sourced(f'INSTALL_LOG="{log}"; trap on_exit EXIT; PG_VERSION=15; pg_lsclusters() {{ :; }}; '
                     f'has_systemd() {{ return 1; }}; pg_ctlcluster() {{ echo \'{fatal}\'; return 1; }}; '
                     f'say "configuring PostgreSQL"; start_postgres 0')
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[1:] == [
        f'install.sh: "configuring PostgreSQL" failed (exit 1); the last lines of {log}:', f"    {fatal}"]
    pg_log = tmp_path / "postgresql-15-main.log"
    pg_log.write_text("LOG:  starting PostgreSQL 15\nFATAL:  data directory has wrong ownership\n")
    died = sourced(f'INSTALL_LOG="{log}"; trap on_exit EXIT; die_log "{pg_log}" "PostgreSQL 15/main did not start"')
    assert died.returncode == 1 and died.stderr.splitlines() == [
        f"install.sh: PostgreSQL 15/main did not start; the last lines of {pg_log}:",
        "    LOG:  starting PostgreSQL 15", "    FATAL:  data directory has wrong ownership"]  # said once


def test_the_interactive_install_asks_for_the_bucket_and_demo_refuses_a_machine_that_loads_another_influxdb(
        tmp_path):
    env = tmp_path / ".env"
    asked = sourced(f'INSTALL_LOG=/dev/null; ENV_FILE="{env}"; APP_DIR=.; SERVICE_USER=$(id -un); '
                    f'pg_port() {{ echo 5432; }}; LOADER_PW=x GRAFANA_PW=y; '
                    f'ask() {{ echo "$2" >&2; case "$1" in url) printf -v url %s https://influx.example;; '
                    f'language) printf -v language %s influxql;; bucket) printf -v bucket %s oximeter_2;; esac; }}; '
                    f'write_env')
    assert asked.returncode == 0, asked.stderr
    assert "Bucket (InfluxQL: the database its DBRP mapping names)" in asked.stderr
    assert "INFLUX_BUCKET=oximeter_2\n" in env.read_text()
    refused = sourced(f'INSTALL_LOG=/dev/null; ENV_FILE="{env}"; DEMO=1; refuse_demo_on_real_install')
    assert refused.returncode == 1
    assert refused.stderr == (
        f"install.sh: --demo: this machine already archives https://influx.example ({env}); the demo's InfluxDB "
        f"(no auth) and its synthetic readings would never be loaded: run install.sh without --demo (it upgrades "
        f"and keeps the settings)\n")
    for ok in (f'ENV_FILE="{tmp_path}/none"; DEMO=1', f'ENV_FILE="{env}"; DEMO=0'):
        assert sourced(f"INSTALL_LOG=/dev/null; {ok}; refuse_demo_on_real_install").returncode == 0
    env.write_text("INFLUX_URL=http://127.0.0.1:8086\n")  # the demo's own: --demo again upgrades it
    assert sourced(f'INSTALL_LOG=/dev/null; ENV_FILE="{env}"; DEMO=1; refuse_demo_on_real_install').returncode == 0


def test_the_pi_writes_the_dashboard_that_fits_its_settings(tmp_path):
    """install.sh writes grafana-dashboard.json for .env's PG_TABLE, TAGS and SUBJECT: a renamed table or a second
    oximeter needs no JSON edited by hand (tests/test_dashboard.py runs such a file's SQL)."""
    for item in ("setup", "loader"):
        (tmp_path / item).symlink_to(os.path.join(ROOT, item))
    env = tmp_path / ".env"
    env.write_text("PG_TABLE=nights\nTAGS=uid\nSUBJECT=child\n")
    venv = os.path.dirname(os.path.dirname(sys.executable))
    done = sourced(f'INSTALL_LOG=/dev/null; APP_DIR="{tmp_path}"; VENV="{venv}"; ENV_FILE="{env}"; '
                   f'SYSTEM_PYTHON="{sys.executable}"; grafana_dashboard')
    assert done.returncode == 0, done.stderr
    board = (tmp_path / "grafana-dashboard.json").read_text()
    assert '\\"nights_sessions\\"' in board and "pox_five_second_mean" not in board
    assert '"name": "device"' in board and "McGill" in board
    rules = (tmp_path / "grafana-alert-rules.yaml").read_text()
    assert "nights_sessions" in rules and "odi4 >= 4" in rules and "pox_five_second_mean" not in rules


def test_pip_install_of_the_package_gives_the_influx_archive_command(tmp_path):
    """pyproject.toml's package: `pip install .` into a fresh venv (from a copy of the tracked files, so the
    checkout gets no build directory), then `influx-archive --help` from it names itself."""
    source = tmp_path / "src"
    source.mkdir()
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "--null", "-T", "-", "-cf", str(tmp_path / "src.tar")], cwd=ROOT, input=files, check=True)
    subprocess.run(["tar", "-xf", str(tmp_path / "src.tar"), "-C", str(source)], check=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                                "--no-compile", str(source)],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    helped = subprocess.run([str(venv / "bin" / "influx-archive"), "--help"], cwd="/", capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin"})
    assert helped.returncode == 0 and helped.stdout.startswith("usage: influx-archive [-h]"), helped.stderr
    version = subprocess.run([str(venv / "bin" / "influx-archive"), "--version"], capture_output=True, text=True)
    assert version.stdout.strip().startswith("influx-archive ")
    bare = subprocess.run([str(venv / "bin" / "influx-archive"), "status"], cwd=tmp_path, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin"})
    assert bare.returncode == 2 and "python -m loader" not in bare.stderr  # no settings: said, in its own name
