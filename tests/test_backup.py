"""Backups, restore, verify and the heartbeat, against the real test PostgreSQL with the loader's own role
(made by setup/roles.sql: not a superuser). BACKUP_DIR is a directory on a loop-mounted ext4 image (the
usb_drive fixture), a real mount other than the root filesystem and not in memory; tmp_path, on the
root filesystem, plays the unmounted drive."""

import http.server
import os
import pathlib
import shutil
import subprocess
import threading
import time
import uuid
from datetime import datetime, timezone

import psycopg2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FixedClock, _server_or_fail, cli, feed_standin, flux_env, make_config, pulse_points
from servers import LoopDrive
from loader.backup import backup
from loader.dumps import choose_kept, list_dumps
from loader.errors import BackupDamaged, BackupError
from loader.job import Job
from loader.restore import SCRATCH_MARK, restore, verify
from loader.status import status

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAY, HOUR = 86400, 3600
NOW = 1_790_000_000 - 1_790_000_000 % DAY + 3 * HOUR + 17 * 60  # 03:17 UTC, when install.sh's cron backs up
LOADER, GRAFANA = "ia_loader_t", "ia_grafana_t"


@pytest.fixture
def archive_url(pg_server):
    """A database made the way install.sh makes it (setup/roles.sql), as a URL for the loader role."""
    name = "ia_" + uuid.uuid4().hex[:10]
    script = (f"\\set loader_role {LOADER}\n\\set grafana_role {GRAFANA}\n\\set dbname {name}\n"
              f"\\set loader_pw secret-pw-1\n\\set grafana_pw secret-pw-2\n")
    with open(os.path.join(ROOT, "setup/roles.sql"), encoding="utf-8") as handle:
        script += handle.read()
    subprocess.run([os.path.join(pg_server.bindir, "psql"), "-X", "-q", "-h", "127.0.0.1", "-p", str(pg_server.port),
                    "-U", "postgres", "-d", "postgres"], input=script, text=True, check=True, capture_output=True)
    yield pg_server.url(name, user=LOADER, password="secret-pw-1")
    for db in (name, name + "_copy", name + "_verify"):
        superuser(pg_server, f'DROP DATABASE IF EXISTS "{db}"')


def superuser(pg_server, statement):
    conn = psycopg2.connect(pg_server.url())
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute(statement)
        return cur.fetchall() if cur.description else None
    finally:
        conn.close()


@pytest.fixture
def backup_dir(usb_drive):
    path = os.path.join(usb_drive, "ia-backups-" + uuid.uuid4().hex[:8])
    os.mkdir(path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def load(config, standin, hours=6, now=NOW):
    feed_standin(standin, pulse_points(now - hours * HOUR, hours * HOUR, uids=("a", "b")))
    outcome = Job(config, clock=FixedClock(now)).run()
    assert outcome.rows > 0


def everything(url):
    """Every row of every table, in a stable order: what 'identical' means for a restore."""
    conn = psycopg2.connect(url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT schemaname, tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 2")
        tables = [t for _, t in cur.fetchall()]
        out = {}
        for table in tables:
            cur.execute(f'SELECT * FROM "{table}" ORDER BY 1, 2')
            out[table] = cur.fetchall()
        return out
    finally:
        conn.close()


def test_backup_drop_restore_gives_back_every_row_of_every_table(pg_server, archive_url, standin, backup_dir,
                                                                  monkeypatch):
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir)
    load(config, standin)
    before = everything(archive_url)
    assert before["pox_five_second_mean"] and before["pox_five_second_mean_1d"] and before["influx_archive_state"]

    launched, real_run = [], subprocess.run

    def recording_run(argv, **kwargs):
        env = kwargs.get("env") or {}
        launched.append((argv, env.get("PGPASSFILE") and open(env["PGPASSFILE"]).read()))
        return real_run(argv, **kwargs)
    monkeypatch.setattr("loader.pgtools.subprocess.run", recording_run)
    made = backup(config, FixedClock(NOW))
    dumped = [(argv, passfile) for argv, passfile in launched if argv[0].endswith("/pg_dump")]
    assert dumped and all("secret-pw-1" not in " ".join(argv) for argv, _ in launched)  # never on a command line
    assert dumped[0][1] == "*:*:*:*:secret-pw-1\n"  # but in a private passfile
    assert os.stat(made.dump.path).st_mode & 0o777 == 0o600
    assert os.path.basename(made.dump.path) == f"{archive_url.rsplit('/', 1)[1]}-2026-09-21T031700Z.dump"
    assert os.listdir(backup_dir) == [os.path.basename(made.dump.path), ".influx-archive.lock"] or \
        sorted(os.listdir(backup_dir)) == sorted([os.path.basename(made.dump.path), ".influx-archive.lock"])

    dbname = archive_url.rsplit("/", 1)[1]
    superuser(pg_server, f'DROP DATABASE "{dbname}"')  # the SD card died
    superuser(pg_server, f'CREATE DATABASE "{dbname}" OWNER {LOADER}')  # install.sh on the new Pi
    result = restore(config, made.dump.path)
    assert not result.created and result.database == dbname
    assert dict(result.tables)["public.pox_five_second_mean"] == len(before["pox_five_second_mean"])
    assert everything(archive_url) == before

    # the restored archive carries its watermark: the next run continues where the dump left off
    later = Job(config, clock=FixedClock(NOW + HOUR)).run()
    assert later.start == NOW - NOW % 5 - HOUR  # watermark less LATE_DATA, not a fresh INITIAL_LOOKBACK


def test_restore_into_a_new_database_never_over_a_live_one_without_force(archive_url, standin, backup_dir):
    env = flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=backup_dir)
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir)
    load(config, standin)
    dump = backup(config, FixedClock(NOW)).dump.path
    copy = archive_url.rsplit("/", 1)[1] + "_copy"

    into_new = cli("restore", dump, "--into", copy, env=env)
    assert into_new.returncode == 0, into_new.stderr
    assert f"into a new database {copy}" in into_new.stdout and "public.pox_five_second_mean" in into_new.stdout
    assert everything(archive_url.rsplit("/", 1)[0] + "/" + copy) == everything(archive_url)

    over_live = cli("restore", dump, env=env)
    assert over_live.returncode == 2
    assert "already holds" in over_live.stderr and "--force" in over_live.stderr

    conn = psycopg2.connect(archive_url)  # a change after the dump, undone by restoring it with --force
    conn.cursor().execute("DELETE FROM pox_five_second_mean WHERE time < (SELECT min(time) + interval '1 hour' "
                          "FROM pox_five_second_mean)")
    conn.commit()
    conn.close()
    forced = cli("restore", dump, "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    assert everything(archive_url) == everything(archive_url.rsplit("/", 1)[0] + "/" + copy)
    assert "secret-pw-1" not in into_new.stdout + into_new.stderr + over_live.stderr + forced.stderr


def damage(path, how):
    data = open(path, "rb").read()
    if how == "truncated":
        data = data[: len(data) * 2 // 3]
    elif how == "corrupted":
        middle = len(data) // 2
        data = data[:middle] + bytes(b ^ 0x5A for b in data[middle:middle + 4096]) + data[middle + 4096:]
    else:
        data = b"this is not a pg_dump archive\n" * 100
    with open(path, "wb") as handle:
        handle.write(data)


@pytest.mark.parametrize("how", ["truncated", "corrupted", "not a dump"])
def test_a_damaged_dump_is_reported_by_restore_and_verify_and_nothing_is_left_behind(pg_server, archive_url,
                                                                                    standin, backup_dir, how):
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir)
    load(config, standin, hours=24)
    dump = backup(config, FixedClock(NOW)).dump.path
    damage(dump, how)
    copy = archive_url.rsplit("/", 1)[1] + "_copy"

    with pytest.raises(BackupDamaged, match="cannot be restored"):
        restore(config, dump, into=copy)
    with pytest.raises(BackupDamaged, match="cannot be restored"):
        verify(config)
    names = [r[0] for r in superuser(pg_server, "SELECT datname FROM pg_database")]
    assert copy not in names and copy.replace("_copy", "_verify") not in names

    env = flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=backup_dir)
    by_cli = cli("restore", "--verify", env=env)
    assert by_cli.returncode == 2
    assert "cannot be restored" in by_cli.stderr and "truncated or corrupted" in by_cli.stderr


def test_verify_passes_after_later_runs_and_catches_a_rewritten_old_row(pg_server, archive_url, standin, backup_dir):
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir)
    load(config, standin)
    backup(config, FixedClock(NOW))
    load(config, standin, hours=2, now=NOW + 2 * HOUR)  # the archive moves on after the dump

    conn = psycopg2.connect(archive_url)  # a field that appears later adds a column: not a difference
    conn.cursor().execute("ALTER TABLE pox_five_second_mean ADD COLUMN pi double precision")
    conn.commit()
    conn.close()
    result = verify(config)
    assert result.ok, "\n".join(result.lines())
    names = {c.name for c in result.checks}
    assert names == {"public.pox_five_second_mean", "public.pox_five_second_mean_1m",
                     "public.pox_five_second_mean_1h", "public.pox_five_second_mean_1d"}
    base = next(c for c in result.checks if c.name == "public.pox_five_second_mean")
    assert base.backup_rows > 0 and base.cutoff == NOW - NOW % 5 - HOUR
    scratch = archive_url.rsplit("/", 1)[1] + "_verify"
    assert scratch not in [r[0] for r in superuser(pg_server, "SELECT datname FROM pg_database")]

    conn = psycopg2.connect(archive_url)
    conn.cursor().execute("UPDATE pox_five_second_mean SET spo2 = spo2 + 1 WHERE time = "
                          "(SELECT min(time) FROM pox_five_second_mean)")
    conn.commit()
    conn.close()
    changed = verify(config)
    assert not changed.ok and "DIFFERS" in "\n".join(changed.lines())

    by_cli = cli("restore", "--verify", env=flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=backup_dir))
    assert by_cli.returncode == 2 and "does not restore to the live archive" in by_cli.stderr


def test_a_leftover_scratch_database_is_dropped_but_a_foreign_one_is_left_alone(pg_server, archive_url, standin,
                                                                               backup_dir):
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir)
    load(config, standin, hours=1)
    backup(config, FixedClock(NOW))
    scratch = archive_url.rsplit("/", 1)[1] + "_verify"
    superuser(pg_server, f'CREATE DATABASE "{scratch}" OWNER {LOADER}')  # verify killed before it cleaned up
    superuser(pg_server, f"COMMENT ON DATABASE \"{scratch}\" IS '{SCRATCH_MARK}'")
    assert verify(config).ok
    superuser(pg_server, f'CREATE DATABASE "{scratch}"')  # someone else's database of that name
    with pytest.raises(BackupError, match="not influx-archive's scratch database"):
        verify(config)
    assert scratch in [r[0] for r in superuser(pg_server, "SELECT datname FROM pg_database")]


def test_rotation_keeps_exactly_the_configured_days_and_weeks_across_simulated_days(archive_url, standin,
                                                                                   backup_dir):
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir,
                         BACKUP_KEEP_DAILY=3, BACKUP_KEEP_WEEKLY=2)
    load(config, standin, hours=1)
    dbname = archive_url.rsplit("/", 1)[1]
    made = []
    for day in range(24):
        now = NOW + day * DAY
        backup(config, FixedClock(now))
        made.append(now)
        if day == 10:  # a manual backup in the evening: the newest of its day is the one kept
            backup(config, FixedClock(now + 15 * HOUR))
            made.append(now + 15 * HOUR)
            now += 15 * HOUR

        last_days = {datetime.fromtimestamp(now - k * DAY, timezone.utc).date() for k in range(3)}
        daily = {max(s for s in made if datetime.fromtimestamp(s, timezone.utc).date() == d)
                 for d in last_days if any(datetime.fromtimestamp(s, timezone.utc).date() == d for s in made)}
        weeks = sorted({datetime.fromtimestamp(s, timezone.utc).isocalendar()[:2] for s in made})[-2:]
        weekly = {max(s for s in made if datetime.fromtimestamp(s, timezone.utc).isocalendar()[:2] == w)
                  for w in weeks}
        kept = {d.stamp for d in list_dumps(backup_dir, dbname)}
        assert kept == daily | weekly, (day, sorted(kept), sorted(daily | weekly))
        made = sorted(kept)  # what rotation removed is gone for good
    assert len(kept) == 4  # three days, plus the newest of last week (this week's newest is today's)
    assert not [n for n in os.listdir(backup_dir) if n.endswith(".partial")]
    behind = backup(config, FixedClock(now - HOUR))  # a clock set back: the new dump is still kept
    assert os.path.exists(behind.dump.path) and behind.dump.path in behind.kept


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1_600_000_000, max_value=1_700_000_000), min_size=1, max_size=40, unique=True),
       st.integers(min_value=1, max_value=10), st.integers(min_value=0, max_value=6))
def test_choose_kept_keeps_the_newest_of_each_recent_day_and_week(stamps, daily, weekly):
    kept = choose_kept(stamps, daily, weekly)
    day = lambda s: datetime.fromtimestamp(s, timezone.utc).date()  # noqa: E731
    assert max(stamps) in kept and kept <= set(stamps)
    assert len(kept) <= daily + weekly
    for s in kept:  # each kept dump is the newest of its day
        assert s == max(t for t in stamps if day(t) == day(s))
    days = sorted({day(s) for s in stamps}, reverse=True)
    assert {day(s) for s in kept} >= set(days[:daily])


def test_missing_unmounted_or_full_backup_dir_is_refused(archive_url, standin, tmp_path, backup_dir):
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=str(tmp_path / "usb"))
    load(config, standin, hours=24)
    with pytest.raises(BackupError, match="does not exist"):
        backup(config, FixedClock(NOW))
    os.mkdir(tmp_path / "usb")  # the empty mount point, on the root filesystem: the drive is not mounted
    with pytest.raises(BackupError, match="root filesystem"):
        backup(config, FixedClock(NOW))
    assert os.listdir(tmp_path / "usb") == []
    allowed = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=str(tmp_path / "usb"),
                          BACKUP_REQUIRE_MOUNT="no")
    assert backup(allowed, FixedClock(NOW)).dump.size > 0

    env = flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=str(tmp_path / "usb"))
    refused = cli("backup", env=env)
    assert refused.returncode == 2 and "is the drive mounted?" in refused.stderr
    unset = cli("backup", env=flux_env(archive_url, standin))
    assert unset.returncode == 2 and "BACKUP_DIR is not set" in unset.stderr


def test_a_backup_dir_short_of_space_is_refused_before_and_during_the_dump(archive_url, standin):
    drive = _server_or_fail(lambda: LoopDrive(size_kb=128))  # about 100 kB free
    small = pathlib.Path(drive.path)
    try:
        config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=str(small))
        load(config, standin, hours=48)
        with pytest.raises(BackupError, match="free; the dump needs about"):
            backup(config, FixedClock(NOW))  # the first dump asks for half the database's size
        dbname = archive_url.rsplit("/", 1)[1]
        (small / f"{dbname}-2026-09-20T031700Z.dump").write_bytes(b"x" * 1000)  # a small earlier dump
        with pytest.raises(BackupError, match="filled up during the dump"):
            backup(config, FixedClock(NOW))  # asks for 1.5 kB, needs far more: pg_dump hits ENOSPC
        assert sorted(os.listdir(small)) == [".influx-archive.lock", f"{dbname}-2026-09-20T031700Z.dump",
                                             "lost+found"]
    finally:
        drive.close()


def test_a_backup_dir_in_memory_is_refused_unless_allowed(archive_url, standin):
    in_memory = os.path.join("/dev/shm", "ia-backups-" + uuid.uuid4().hex[:8])  # tmpfs: gone at reboot
    os.mkdir(in_memory)
    try:
        config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=in_memory)
        load(config, standin, hours=1)
        refused = cli("backup", env=flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=in_memory))
        assert refused.returncode == 2
        assert refused.stderr.splitlines()[-1] == (
            f"influx-archive: BACKUP_DIR {in_memory} is on tmpfs, which lives in memory: a reboot deletes every "
            "dump (set BACKUP_DIR to a directory on a USB drive or network mount (README, Backups); to keep dumps "
            "there anyway set BACKUP_REQUIRE_MOUNT=no)")
        assert os.listdir(in_memory) == []
        allowed = cli("backup", env=flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=in_memory,
                                             BACKUP_REQUIRE_MOUNT="no"))
        assert allowed.returncode == 0, allowed.stderr
    finally:
        shutil.rmtree(in_memory, ignore_errors=True)


def test_a_wrong_pgpassword_in_the_environment_does_not_override_pg_urls_password(archive_url, standin,
                                                                                  backup_dir):
    """psql users often export PGPASSWORD; run uses PG_URL's password, and so must pg_dump and pg_restore."""
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir)
    load(config, standin, hours=1)
    env = flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=backup_dir, PGPASSWORD="not-the-password")
    made = cli("backup", env=env)
    assert made.returncode == 0, made.stderr
    verified = cli("restore", "--verify", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "restorable and identical" in verified.stdout


def test_remote_copy_with_rsync_and_its_failure_keeps_the_local_dump(archive_url, standin, backup_dir, tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir, BACKUP_REMOTE=f"{remote}/")
    load(config, standin, hours=1)
    made = backup(config, FixedClock(NOW))
    copied = remote / os.path.basename(made.dump.path)
    assert copied.read_bytes() == open(made.dump.path, "rb").read()

    env = flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=backup_dir,
                  BACKUP_REMOTE=str(tmp_path / "no" / "such" / "dir") + "/")
    failed = cli("backup", env=env)
    assert failed.returncode == 1, failed.stderr
    assert "but copying it to" in failed.stderr
    assert len(list_dumps(backup_dir, archive_url.rsplit("/", 1)[1])) == 2  # the local dumps stay


class Listener:
    """A local stand-in for healthchecks.io: records (path, body) of every ping."""

    def __init__(self):
        pings = self.pings = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                pings.append((self.path, body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ping/3f2a-check"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_heartbeat_pings_start_success_and_fail_and_a_dead_listener_breaks_nothing(archive_url, standin, backup_dir):
    feed_standin(standin, pulse_points(int(time.time()) - HOUR, HOUR))
    listener = Listener()
    try:
        env = flux_env(archive_url, standin, INITIAL_LOOKBACK="1h", HEALTHCHECK_URL=listener.url,
                      BACKUP_HEALTHCHECK_URL=listener.url + "-backup", BACKUP_DIR=backup_dir)
        assert cli("run", env=env).returncode == 0
        assert [p for p, _ in listener.pings] == ["/ping/3f2a-check/start", "/ping/3f2a-check"]

        listener.pings.clear()
        wrong = cli("run", env=dict(env, INFLUX_TOKEN="wrong-token-77"))
        assert wrong.returncode == 2
        assert [p for p, _ in listener.pings] == ["/ping/3f2a-check/start", "/ping/3f2a-check/fail"]
        body = listener.pings[1][1]
        assert "token" in body.lower() and "wrong-token-77" not in body and body.count("\n") <= 1

        listener.pings.clear()
        assert cli("backup", env=env).returncode == 0
        assert cli("restore", "--verify", env=env).returncode == 0
        assert "backup:      20" in cli("status", env=env).stdout  # status shows the dump and pings nothing
        assert [p for p, _ in listener.pings] == ["/ping/3f2a-check-backup/start", "/ping/3f2a-check-backup"] * 2
        listener.pings.clear()
        missing = cli("backup", env=dict(env, BACKUP_DIR=backup_dir + "-missing"))
        assert missing.returncode == 2
        assert [p for p, _ in listener.pings] == ["/ping/3f2a-check-backup/start", "/ping/3f2a-check-backup/fail"]
        assert "does not exist" in listener.pings[1][1]
    finally:
        listener.close()

    dead = cli("run", env=env)  # the listener is gone: connection refused
    assert dead.returncode == 0, dead.stderr
    assert "heartbeat ping/start to 127.0.0.1" in dead.stderr and "3f2a-check" not in dead.stderr


def test_status_shows_the_newest_backup_and_fails_when_it_is_too_old_or_the_drive_is_gone(archive_url, standin,
                                                                                          backup_dir):
    # only the backup decides here: data never goes stale and runs are not missed
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir, BACKUP_MAX_AGE="36h",
                         STALE_AFTER="1000d", FAILED_RUNS_ALERT="1000")
    never = status(config, NOW)  # before the first run, the backup line is there too
    assert never.exit_code == 2 and "no dump yet" in never.backup and "nothing archived yet" in never.verdict
    load(config, standin, hours=1)
    none_yet = status(config, NOW)
    assert none_yet.exit_code == 1 and "no backup yet" in none_yet.verdict
    made = backup(config, FixedClock(NOW))
    fresh = status(config, NOW + 5 * HOUR)
    text = "\n".join(fresh.lines())
    assert fresh.exit_code == 0, text
    assert "backup:      2026-09-21T03:17:00Z (5h 0m ago)" in text and "1 dump(s)" in text
    assert made.dump.size > 1000 and "kB" in text or "MB" in text
    old = status(config, NOW + 2 * DAY)
    assert old.exit_code == 2 and old.verdict.startswith("backup stale"), old.verdict  # two nightly dumps missed: page
    gone = status(make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir + "-unplugged",
                              STALE_AFTER="1000d"), NOW)
    assert gone.exit_code == 2 and "does not exist" in "\n".join(gone.lines())
    off = status(make_config(archive_url, standin.url, TAGS="uid", STALE_AFTER="1000d"), NOW)
    assert off.exit_code == 0 and "not configured" in "\n".join(off.lines())


def test_an_unexpected_error_is_one_line_an_error_with_traceback_in_the_log_exit_1_and_a_fail_ping(
        archive_url, standin, backup_dir, tmp_path, monkeypatch, capsys):
    """A dying USB drive raises OSError inside backup: no bare traceback, the heartbeat still hears /fail."""
    import errno

    import loader.backup
    from loader.cli import main

    def failing_drive(config, clock):
        raise OSError(errno.EIO, "Input/output error", os.path.join(backup_dir, "x.dump"))

    listener = Listener()
    log_file = tmp_path / "loader.log"
    try:
        for key, value in flux_env(archive_url, standin, BACKUP_DIR=backup_dir, LOG_FILE=log_file,
                                   BACKUP_HEALTHCHECK_URL=listener.url).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(loader.backup, "backup", failing_drive)
        code = main(["--env-file", os.devnull, "backup"])
        err = capsys.readouterr().err
    finally:
        listener.close()
    line = (f"influx-archive: unexpected OSError: [Errno 5] Input/output error: '{backup_dir}/x.dump' (the traceback "
            f"is in {log_file}; if it is not about the disk or the network, please report it)")
    assert code == 1 and err.strip() == line
    assert f"ERROR {line}\nTraceback (most recent call last):" in log_file.read_text()
    assert [path for path, _ in listener.pings] == ["/ping/3f2a-check/start", "/ping/3f2a-check/fail"]
    assert listener.pings[1][1] == line


def test_verify_without_createdb_gives_advice_that_works_when_followed(pg_server, archive_url, standin, backup_dir):
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir)
    load(config, standin, hours=1)
    backup(config, FixedClock(NOW))
    superuser(pg_server, f'ALTER ROLE "{LOADER}" NOCREATEDB')
    try:
        refused = cli("restore", "--verify", env=flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=backup_dir))
        assert refused.returncode == 2
        advice = (f"sudo -u postgres psql -c 'ALTER ROLE \"{LOADER}\" CREATEDB'")
        assert refused.stderr.strip().endswith(advice + ")"), refused.stderr
        assert "createdb -O" not in refused.stderr  # a scratch database made by hand would be refused next
        superuser(pg_server, advice.split("-c ", 1)[1].strip("'"))  # what the advice runs, as postgres
        verified = cli("restore", "--verify", env=flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=backup_dir))
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        superuser(pg_server, f'ALTER ROLE "{LOADER}" CREATEDB')
