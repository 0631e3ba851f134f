"""The command line as cron and a user meet it: real processes, help, exit codes, one-line messages,
the log, the heartbeat."""

import contextlib
import http.server
import os
import re
import subprocess
import sys
import time

import psycopg2
import pytest

from loader.cli import COMMANDS
from loader.windows import parse_time, rfc3339
from tests.support.archive import archive_rows, watermark
from tests.support.harness import HOUR, ROOT, cli, flux_env, now
from tests.support.readings import expected_means, feed_influxd, feed_standin, pulse_points
from tests.support.servers import LoopDrive, server_or_skip
from tests.support.serving import serve, stop


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
        serve(self.server)

    def close(self):
        stop(self.server)




def hold_run_lock(pg_url):
    """A connection holding the archive's run lock, as a run in another process does."""
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    conn.cursor().execute("SELECT pg_advisory_lock(hashtext('influx-archive:public.pox_five_second_mean'))")
    return conn


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help_with_an_example(command):
    result = cli(command, "--help", env={"PATH": os.environ["PATH"]})
    assert result.returncode == 0
    assert "example:" in result.stdout and "python -m loader" in result.stdout
    assert "exit codes:" in result.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_commands_help_lists_its_own_exit_codes(name):
    """What `COMMAND --help` says about exit codes is that command's own declaration, and no two commands
    share one text: a monitor or script reads the codes of the command it runs."""
    out = cli(name, "--help", env={"PATH": os.environ["PATH"]}).stdout
    section = out.split("exit codes:\n", 1)[1]
    said = {int(m.group(1)): " ".join(m.group(2).split()) for m in
            re.finditer(r"^  (\d)  (.*?)(?=^  \d  |\Z)", section, re.M | re.S)}
    assert said == {code: meaning for code, meaning in COMMANDS[name].exit_codes}
    others = [c.exit_codes for n, c in COMMANDS.items() if n != name]
    assert COMMANDS[name].exit_codes not in others


def test_global_options_work_after_the_command_too(tmp_path, pg_url):
    env_file = tmp_path / "archive.env"
    env_file.write_text(f"INFLUX_URL=http://127.0.0.1:1\nINFLUX_TOKEN=t0ken-value\nINFLUX_ORG=o\nPG_URL={pg_url}\n")
    env_file.chmod(0o600)
    result = cli("status", "--env-file", str(env_file), "-v", env={"PATH": os.environ["PATH"]})
    assert result.returncode == 2, result.stderr  # the archive in that file is empty: it was read
    assert "nothing archived yet" in result.stdout


def test_run_against_real_influxd_via_cli_fills_postgres(pg_url, influxd, influx_db):
    points = pulse_points(now() - 2 * HOUR, 2 * HOUR)
    feed_influxd(influxd, influx_db, points)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUX_", "PG_"))}
    env.update(INFLUX_URL=influxd.url, INFLUX_QUERY_LANGUAGE="influxql", INFLUX_BUCKET=influx_db,
               PG_URL=pg_url, INITIAL_LOOKBACK="3h", REQUIRE_CLOCK_SYNC="no")
    first = cli("run", env=env)
    assert first.returncode == 0, first.stderr
    assert "run done" in first.stderr
    mark = watermark(pg_url)
    rows = archive_rows(pg_url)
    assert rows == expected_means(points, start=0, end=mark)
    assert cli("run", env=env).returncode == 0
    again = archive_rows(pg_url)  # real time moves on: a window may have completed since
    assert again == expected_means(points, start=0, end=watermark(pg_url))
    assert {k: v for k, v in again.items() if k[0] < mark} == rows


def test_check_reports_both_sides_and_then_the_late_data_comparison(pg_url, standin, influxd, influx_db):
    feed_standin(standin, pulse_points(now() - 30, 30))
    ok = cli("check", env=flux_env(pg_url, standin))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert [line[:6] for line in ok.stdout.splitlines()] == ["ok    "] * 4
    assert "ok    late data: nothing loaded yet to compare" in ok.stdout

    bad = cli("check", env=flux_env(pg_url.rsplit("/", 1)[0] + "/no_such_db", standin, INFLUX_TOKEN="nope"))
    assert bad.returncode == 2
    assert "FAIL  InfluxDB refused the token" in bad.stdout and "InfluxDB: InfluxDB" not in bad.stdout
    assert "FAIL  PostgreSQL" in bad.stdout and "no_such_db" in bad.stdout

    feed_influxd(influxd, influx_db, pulse_points(now() - 30, 30))
    env = flux_env(pg_url, standin, INFLUX_URL=influxd.url, INFLUX_QUERY_LANGUAGE="influxql",
                   INFLUX_BUCKET=influx_db, INFLUX_TOKEN="")
    good = cli("check", env=env)
    assert good.returncode == 0, good.stdout
    assert "fields bpm, spo2" in good.stdout
    unmapped = cli("check", env=dict(env, INFLUX_BUCKET="unmapped"))
    assert unmapped.returncode == 2, unmapped.stdout
    # a 1.x server has databases, not DBRP mappings: the advice names the ones it has
    assert "this InfluxDB 1.x server has no database unmapped; set INFLUX_BUCKET to one it has (" in unmapped.stdout
    assert influx_db in unmapped.stdout and "dbrp" not in unmapped.stdout.lower()


def test_a_typed_command_refused_by_the_lock_exits_1_but_the_cron_run_steps_aside_with_0(pg_url, standin):
    feed_standin(standin, pulse_points(now() - HOUR, HOUR))
    env = flux_env(pg_url, standin, INITIAL_LOOKBACK="1h")
    holder = hold_run_lock(pg_url)
    try:
        backfill = cli("backfill", "--start", "2026-11-01T00:00:00Z", "--end", "2026-11-02T00:00:00Z", env=env)
        assert backfill.returncode == 1
        assert backfill.stderr.strip() == ("influx-archive: another run, backfill or rebuild holds this archive's "
                                           "lock; nothing was loaded: run this backfill again when it has finished "
                                           "(`python -m loader status` shows it)")
        rebuild = cli("rebuild-rollups", env=env)
        assert rebuild.returncode == 1 and "nothing was rebuilt" in rebuild.stderr
        run = cli("run", env=env)
        assert run.returncode == 0 and run.stderr.strip() == (
            "influx-archive: another run, backfill or rebuild holds this archive's lock; this run did nothing (the "
            "next hourly run loads what is new)")
    finally:
        holder.close()
    assert archive_rows(pg_url) == {}  # nobody did anything behind the lock


def test_rebuild_rollups_refuses_a_range_out_of_order_and_an_empty_archive_is_one_line(pg_url, standin):
    env = flux_env(pg_url, standin)
    backwards = cli("rebuild-rollups", "--start", "2026-11-02T00:00:00Z", "--end", "2026-11-01T00:00:00Z", env=env)
    assert backwards.returncode == 2
    assert backwards.stderr.strip() == ("influx-archive: --start (2026-11-02T00:00:00Z) must be before --end "
                                        "(2026-11-01T00:00:00Z)")
    empty = cli("rebuild-rollups", env=env)
    assert empty.returncode == 0, empty.stderr
    assert "nothing to rebuild: the archive is empty" in empty.stderr and "Traceback" not in empty.stderr
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute("SELECT command, outcome FROM influx_archive_runs")
    assert cur.fetchall() == [("rebuild-rollups", "nothing to do")]  # nothing left 'running'
    conn.close()


def test_a_date_without_a_time_gets_advice_that_works_when_followed(pg_url, standin):
    env = flux_env(pg_url, standin)
    first = cli("backfill", "--start", "2026-11-22", "--end", "2026-11-23T00:00:00Z", env=env)
    assert first.returncode == 2
    advice = re.search(r"e\.g\. (\S+) \(midnight UTC\)", first.stderr).group(1)
    assert advice == "2026-11-22T00:00:00Z"
    assert parse_time(advice) == 1795305600


def test_a_failed_run_leaves_an_error_line_with_its_traceback_in_the_log(tmp_path, pg_url, standin):
    log_file = tmp_path / "loader.log"
    result = cli("run", env=flux_env(pg_url, standin, INFLUX_TOKEN="s3cret-expired-token", LOG_FILE=log_file))
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    logged = log_file.read_text()
    assert f"ERROR {line}\nTraceback (most recent call last):" in logged
    assert "s3cret-expired-token" not in logged + result.stderr
    assert result.stderr.count("influx-archive: InfluxDB refused the token") == 1  # once on the terminal


def test_cron_writing_into_log_file_itself_gets_each_line_once_with_its_time(tmp_path, pg_url, standin):
    """install.sh's shape: LOG_FILE names the file cron appends the command's output to. Each line is there
    once, with a time and a level (a failure: its ERROR line and traceback, not a bare line besides)."""
    feed_standin(standin, pulse_points(now() - 2 * HOUR, HOUR))
    log_file = tmp_path / "loader.log"
    codes = []
    for token in ("test-token-5f1c9e", "s3cret-expired-token"):  # a run that loads, then one refused
        env = flux_env(pg_url, standin, INITIAL_LOOKBACK="3h", LOG_FILE=log_file, INFLUX_TOKEN=token)
        with open(log_file, "ab") as cron_redirect:
            codes.append(subprocess.run([sys.executable, "-m", "loader", "--env-file", os.devnull, "run"], cwd=ROOT,
                                        env=env, stdout=cron_redirect, stderr=subprocess.STDOUT).returncode)
    assert codes == [0, 2]
    lines = log_file.read_text().splitlines()
    stamped = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} (DEBUG|INFO|WARNING|ERROR) ")
    in_traceback = False
    for line in lines:  # a line without a time is only ever part of an error's traceback
        in_traceback = not stamped.match(line) and (in_traceback or line == "Traceback (most recent call last):")
        assert stamped.match(line) or in_traceback, line
    said = [line for line in lines if "influx-archive: InfluxDB refused the token" in line]
    assert len(said) == 1 and " ERROR influx-archive: InfluxDB refused the token" in said[0]
    assert lines[lines.index(said[0]) + 1] == "Traceback (most recent call last):"
    assert sum(" INFO run done: " in line for line in lines) == 1  # not twice, as two writers would write it
    assert "s3cret-expired-token" not in "\n".join(lines)


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


def closed_pipe():
    """The write end of a pipe whose reader has already left (`| head` that has read its lines)."""
    read, write = os.pipe()
    os.close(read)
    return write


# what a command needs given to do something (else it only says what is missing)
PIPED_ARGUMENTS = {"restore": ["--verify"],
                   "backfill": ["--start", "2026-11-01T00:00:00Z", "--end", "2026-11-01T01:00:00Z"]}


@pytest.mark.parametrize("argv", [
    ["--help"], ["status", "--help"],
    *([name, *PIPED_ARGUMENTS.get(name, [])] for name in COMMANDS),  # every command the CLI declares
], ids=lambda argv: " ".join(argv[:2]))
def test_every_command_piped_into_a_reader_that_leaves_early_keeps_its_exit_code_without_a_traceback(
        pg_url, standin, tmp_path, argv):
    """`status | head -1`, `check | grep -q ok`: the reader closes the pipe before the command writes. The exit
    code is the one the command gives with a reader that stays, and nothing but its own lines reaches stderr
    or LOG_FILE (no BrokenPipeError, no interpreter's exit 120)."""
    feed_standin(standin, pulse_points(now() - 2 * HOUR, HOUR))
    log_file = tmp_path / "loader.log"
    env = flux_env(pg_url, standin, INITIAL_LOOKBACK="3h", LOG_FILE=log_file)
    command = [sys.executable, "-m", "loader", "--env-file", os.devnull, *argv]
    stays = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert stays.stdout or stays.stderr  # something to write: the reader's leaving is met
    write = closed_pipe()
    try:
        leaves = subprocess.run(command, cwd=ROOT, env=env, stdout=write, stderr=subprocess.PIPE, text=True,
                                timeout=120)
        both = subprocess.run(command, cwd=ROOT, env=env, stdout=write, stderr=write, timeout=120)  # 2>&1 | head
    finally:
        os.close(write)
    assert leaves.returncode == both.returncode == stays.returncode
    assert "Traceback" not in leaves.stderr and "BrokenPipe" not in leaves.stderr
    log = log_file.read_text() if log_file.exists() else ""  # a failure's traceback is there by design: not ours
    assert "BrokenPipe" not in log and "Logging error" not in log


@pytest.fixture
def full_drive():
    """A tiny loop-mounted ext4 drive filled to the last block: where a log on a full card ends up."""
    drive = server_or_skip(lambda: LoopDrive(size_kb=1024))
    try:
        fd = os.open(os.path.join(drive.path, "filler"), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            for size in (4096, 1):  # blocks, then the last bytes: not even one short line fits
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * size)
        finally:
            os.close(fd)
        yield drive.path
    finally:
        drive.close()


def test_a_log_file_on_a_full_disk_keeps_the_runs_outcome_and_says_so_in_one_line(pg_url, standin, full_drive):
    points = pulse_points(now() - 2 * HOUR, HOUR)
    feed_standin(standin, points)
    log_file = os.path.join(full_drive, "loader.log")
    result = cli("run", env=flux_env(pg_url, standin, INITIAL_LOOKBACK="3h", LOG_FILE=log_file))
    assert result.returncode == 0, result.stderr  # loaded: not 120, not 1
    said = [line for line in result.stderr.splitlines() if "LOG_FILE" in line]
    assert said == [f"influx-archive: LOG_FILE {log_file} cannot be written (No space left on device); the rest of "
                    "this command's log goes to stderr only (free space there, or set LOG_FILE elsewhere)"]
    assert "Logging error" not in result.stderr and "Traceback" not in result.stderr
    assert archive_rows(pg_url) == expected_means(points)


def test_check_says_what_the_next_run_does_and_run_does_it(pg_url, standin):
    """`check` judges the next run by the run's own rule: a second device with TAGS empty fails both with the
    same words (check passed, the run refused, before); a new PG_TABLE passes both (check failed on the missing
    table, the run creates it)."""
    start = now() - now() % HOUR - 2 * HOUR
    feed_standin(standin, pulse_points(start, HOUR, uids=("a",)))
    env = flux_env(pg_url, standin, INITIAL_LOOKBACK="1d", LATE_LOOKBACK="1d")
    assert cli("run", env=env).returncode == 0
    feed_standin(standin, pulse_points(start, HOUR, uids=("b",)))  # a second oximeter, in hours already loaded
    checked, ran = cli("check", env=env), cli("run", env=env)
    assert checked.returncode == ran.returncode == 2, checked.stdout + ran.stderr
    said = "InfluxDB holds readings of 2 series in the same hours (uid=a, uid=b; 1 hour(s) from "
    assert f"FAIL  next run: {said}" in checked.stdout and said in ran.stderr
    for case in ({"PG_TABLE": "nights", "TAGS": "uid"}, {"TAGS": "uid", "PG_TABLE": "nights"}):
        checked = cli("check", env=dict(env, **case))
        assert checked.returncode == 0, checked.stdout
        assert "ok    next run: reads " in checked.stdout and "(INITIAL_LOOKBACK: a first load)" in checked.stdout
        assert "late data: nothing loaded yet to compare; each run will look for readings up to LATE_LOOKBACK 1d " \
               "late" in checked.stdout
    assert cli("run", env=dict(env, PG_TABLE="nights", TAGS="uid")).returncode == 0
    again = cli("check", env=dict(env, PG_TABLE="nights", TAGS="uid"))
    assert again.returncode == 0 and "(from the watermark less LATE_DATA); the archive holds windows from " \
        f"{rfc3339(start)} of uid=a, uid=b" in again.stdout  # the read side's span and devices
    assert "(LATE_LOOKBACK 1d: readings that arrive later than that after their hour are never looked for)" \
        in again.stdout
