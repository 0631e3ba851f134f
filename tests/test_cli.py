"""The command line as cron and a user meet it: real processes, exit codes, messages, secrets."""

import importlib.util
import os
import random
import re
import signal
import subprocess
import sys
import time

import psycopg2
import pytest

from conftest import (TOKEN, archive_rows, cli, expected_means, feed_influxd, feed_standin, first_loaded, flux_env,
                      pulse_points, watermark)
from loader.cli import COMMANDS
from loader.windows import chunks, parse_time, rfc3339

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOUR = 3600


def now():
    return int(time.time())


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help_with_an_example(command):
    result = cli(command, "--help", env={"PATH": os.environ["PATH"]})
    assert result.returncode == 0
    assert "example:" in result.stdout and "python -m loader" in result.stdout
    assert "exit codes:" in result.stdout


def test_config_problems_are_reported_together_with_exit_2(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("INFLUX_URL=ftp://x\nWINDOW=7x\nPG_URLL=postgresql://a@b/c\n")
    env_file.chmod(0o600)
    result = cli("--env-file", str(env_file), "run", env={"PATH": os.environ["PATH"]})
    assert result.returncode == 2
    for text in ("INFLUX_URL must start with http", "WINDOW", "PG_URL or PG_CONNECT is required",
                 "did you mean PG_URL", "INFLUX_TOKEN"):
        assert text in result.stderr
    assert "Traceback" not in result.stderr


def test_reference_dotenv_keys_work_unchanged(tmp_path, pg_url, standin):
    """The article's .env (CONNECTION, TOKEN, ORG, PG_CONNECT with postgresql://) runs as is."""
    feed_standin(standin, pulse_points(now() - HOUR, HOUR))
    env_file = tmp_path / ".env"
    env_file.write_text(f'TOKEN="{TOKEN}"\nORG="test-org"\nCONNECTION="{standin.url}"\nPG_CONNECT="{pg_url}"\n'
                        "INITIAL_LOOKBACK=1h\nREQUIRE_CLOCK_SYNC=no\n")
    env_file.chmod(0o600)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUX_", "PG_"))}
    result = cli("--env-file", str(env_file), "run", env=base)
    assert result.returncode == 0, result.stderr
    assert len(archive_rows(pg_url)) >= HOUR // 5 - 1


def test_environment_overrides_the_env_file(tmp_path, pg_url, standin):
    env_file = tmp_path / ".env"
    env_file.write_text(f"INFLUX_URL={standin.url}\nINFLUX_TOKEN=wrong\nINFLUX_ORG=o\nPG_URL={pg_url}\n")
    env_file.chmod(0o600)
    feed_standin(standin, pulse_points(now() - HOUR, HOUR))
    env = flux_env(pg_url, standin, INITIAL_LOOKBACK="1h")
    result = cli("--env-file", str(env_file), "run", env=env)
    assert result.returncode == 0, result.stderr


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
    time.sleep(1.5)
    with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
        assert TOKEN.encode() not in f.read()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    status = cli("status", env=env)
    for text in (out, err, log_file.read_text(), status.stdout, status.stderr):
        assert TOKEN not in text


def test_second_run_while_one_is_active_exits_0_at_once(pg_url, standin):
    feed_standin(standin, pulse_points(now() - HOUR, HOUR))
    env = flux_env(pg_url, standin, INITIAL_LOOKBACK="1h")
    assert cli("run", env=env).returncode == 0  # creates the state tables
    holder = psycopg2.connect(pg_url)
    holder.cursor().execute("SELECT pg_advisory_lock(hashtext('influx-archive:public.pox_five_second_mean'))")
    try:
        started = time.time()
        result = cli("run", env=env)
        assert result.returncode == 0
        assert "another run is active" in result.stderr
        assert time.time() - started < 10
    finally:
        holder.close()


def test_two_runs_started_together_one_loads_one_steps_aside(pg_url, standin):
    points = pulse_points(now() - 3 * HOUR, 3 * HOUR)
    feed_standin(standin, points)
    env = flux_env(pg_url, standin, INITIAL_LOOKBACK="3h", CHUNK="1h")
    cli("status", env=env)
    standin.faults = [("hang", 2)]
    procs = [subprocess.Popen([sys.executable, "-m", "loader", "--env-file", os.devnull, "run"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert [r[2] for r in results] == [0, 0], results
    assert sum("another run is active" in r[1] for r in results) == 1
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute("SELECT count(*), count(DISTINCT time) FROM pox_five_second_mean")
    total, distinct = cur.fetchone()
    conn.close()
    assert total == distinct > 0
    assert archive_rows(pg_url) == expected_means(points, start=first_loaded(pg_url), end=watermark(pg_url))


def test_kill_9_during_a_multi_chunk_backfill_leaves_no_partial_chunk(pg_url, standin):
    end = now() - now() % 600 - 600
    start = end - 6 * HOUR
    points = pulse_points(start, 6 * HOUR)
    feed_standin(standin, points)
    expected = expected_means(points, start=start, end=end)
    env = flux_env(pg_url, standin, CHUNK="10m")
    pieces = chunks(start, end, 600)
    rng = random.Random(20261122)
    args = ["backfill", "--start", str(_iso(start)), "--end", str(_iso(end))]
    interrupted = 0
    for attempt in range(20):
        proc = subprocess.Popen([sys.executable, "-m", "loader", "--env-file", os.devnull, *args], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.1, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rows = archive_rows(pg_url)
        for lo, hi in pieces:
            inside = {k: v for k, v in rows.items() if lo <= k[0] < hi}
            want = {k: v for k, v in expected.items() if lo <= k[0] < hi}
            assert inside in ({}, want), f"kill {attempt}: chunk {lo}..{hi} is partial"
        interrupted += 0 < len(rows) < len(expected)
    assert interrupted >= 1, "no kill landed in the middle of the backfill"
    result = cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert archive_rows(pg_url) == expected
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute("SELECT outcome, count(*) FROM influx_archive_runs GROUP BY 1")
    outcomes = dict(cur.fetchall())
    conn.close()
    # a run that finished before its kill time is simply "ok"; a killed one is marked abandoned
    assert outcomes.get("ok", 0) >= 1 and "running" not in outcomes and "failed" not in outcomes


def _iso(epoch):
    from loader.windows import rfc3339
    return rfc3339(epoch)


def test_check_reports_both_sides(pg_url, standin, influxd, influx_db):
    feed_standin(standin, pulse_points(now() - 30, 30))
    ok = cli("check", env=flux_env(pg_url, standin))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("ok ") == 2

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


def test_postgres_restarted_mid_run_fails_the_run_with_exit_1_and_the_next_run_completes(pg_server, pg_url, standin):
    end = now() - now() % 3600
    start = end - 6 * HOUR
    points = pulse_points(start, 6 * HOUR)
    feed_standin(standin, points)
    env = flux_env(pg_url, standin, CHUNK="1h")
    args = ["backfill", "--start", _iso(start), "--end", _iso(end)]
    standin.faults = [None, None, ("hang", 4)]  # the third chunk's answer is slow: PostgreSQL restarts meanwhile
    proc = subprocess.Popen([sys.executable, "-m", "loader", "--env-file", os.devnull, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while len(standin.queries) < 3 and time.time() < deadline:
        time.sleep(0.05)
    pg_server.stop()
    pg_server.start()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    errors = [line for line in err.splitlines() if line.startswith("influx-archive:")]
    assert len(errors) == 1 and "PostgreSQL" in errors[0] and "unavailable" in errors[0]
    rows = archive_rows(pg_url)
    assert {k[0] for k in rows} <= set(range(start, start + 2 * HOUR, 5))  # only whole, committed chunks
    assert cli(*args, env=env).returncode == 0
    assert archive_rows(pg_url) == expected_means(points, start=start, end=end)


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


def hold_run_lock(pg_url):
    """A connection holding the archive's run lock, as a run in another process does."""
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    conn.cursor().execute("SELECT pg_advisory_lock(hashtext('influx-archive:public.pox_five_second_mean'))")
    return conn


def test_a_typed_command_refused_by_the_lock_exits_1_but_the_cron_run_steps_aside_with_0(pg_url, standin):
    feed_standin(standin, pulse_points(now() - HOUR, HOUR))
    env = flux_env(pg_url, standin, INITIAL_LOOKBACK="1h")
    holder = hold_run_lock(pg_url)
    try:
        backfill = cli("backfill", "--start", "2026-11-01T00:00:00Z", "--end", "2026-11-02T00:00:00Z", env=env)
        assert backfill.returncode == 1
        assert backfill.stderr.strip() == ("influx-archive: another run is active for this archive; nothing was "
                                           "loaded: run this backfill again when it has finished (`python -m loader "
                                           "status` shows it)")
        rebuild = cli("rebuild-rollups", env=env)
        assert rebuild.returncode == 1 and "nothing was rebuilt" in rebuild.stderr
        run = cli("run", env=env)
        assert run.returncode == 0 and "another run is active" in run.stderr
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


def test_a_missing_env_file_is_said_and_only_that(tmp_path):
    named = cli("--env-file", str(tmp_path / "nonexistent" / ".env"), "run", env={"PATH": os.environ["PATH"]})
    assert named.returncode == 2
    assert named.stderr.splitlines()[1:] == [f"  - the settings file {tmp_path}/nonexistent/.env does not exist "
                                             "(--env-file); copy .env.example there and fill it in"]
    implicit = subprocess.run([sys.executable, "-m", "loader", "run"], cwd=tmp_path, capture_output=True, text=True,
                              env={"PATH": os.environ["PATH"], "PYTHONPATH": ROOT})
    assert implicit.returncode == 2
    assert implicit.stderr.splitlines()[1] == (f"  - there is no .env in {tmp_path}: run from the directory that "
                                               "holds it, pass --env-file PATH, or set the settings in the environment")


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


def test_settings_mistakes_are_each_said_once_in_the_users_words(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("influx_url=http://127.0.0.1:8086\nINFLUX_URL=http://127.0.0.1:8086\n"
                        "CONNECTION=http://10.0.0.9:8086\nINFLUX_TOKEN=t0ken-value\nINFLUX_ORG=o\n"
                        "PG_URL=postgresql://u@127.0.0.1/db\nCHUNK=0\n")
    env_file.chmod(0o600)
    result = cli("--env-file", str(env_file), "run", env={"PATH": os.environ["PATH"]})
    assert result.returncode == 2
    problems = result.stderr.splitlines()[1:]
    assert f"  - {env_file}: unknown key influx_url (did you mean INFLUX_URL?)" in problems
    assert f"  - {env_file} sets both INFLUX_URL and CONNECTION, to different values; keep one" in problems
    assert [p for p in problems if "CHUNK" in p] == ["  - CHUNK: '0' is not a duration such as 5s, 15m, 1h or 30d"]


def test_global_options_work_after_the_command_too(tmp_path, pg_url):
    env_file = tmp_path / "archive.env"
    env_file.write_text(f"INFLUX_URL=http://127.0.0.1:1\nINFLUX_TOKEN=t0ken-value\nINFLUX_ORG=o\nPG_URL={pg_url}\n")
    env_file.chmod(0o600)
    result = cli("status", "--env-file", str(env_file), "-v", env={"PATH": os.environ["PATH"]})
    assert result.returncode == 2, result.stderr  # the archive in that file is empty: it was read
    assert "nothing archived yet" in result.stdout


def test_a_failed_run_leaves_an_error_line_with_its_traceback_in_the_log(tmp_path, pg_url, standin):
    log_file = tmp_path / "loader.log"
    result = cli("run", env=flux_env(pg_url, standin, INFLUX_TOKEN="s3cret-expired-token", LOG_FILE=log_file))
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    logged = log_file.read_text()
    assert f"ERROR {line}\nTraceback (most recent call last):" in logged
    assert "s3cret-expired-token" not in logged + result.stderr
    assert result.stderr.count("influx-archive: InfluxDB refused the token") == 1  # once on the terminal


def test_ctrl_c_during_a_backfill_is_recorded_as_interrupted_and_a_rerun_completes_it(pg_url, standin):
    start = now() - now() % HOUR - 5 * HOUR
    points = pulse_points(start, 5 * HOUR)
    feed_standin(standin, points)
    env = flux_env(pg_url, standin, CHUNK="1h")
    standin.faults = [None, ("hang", 20)]  # the second chunk's answer is slow: Ctrl-C lands while waiting for it
    args = ["--start", rfc3339(start), "--end", rfc3339(start + 5 * HOUR)]
    # as at a terminal: a runner started in the background (CI, `cmd &`) passes SIGINT on as ignored,
    # and Python then installs no KeyboardInterrupt handler
    proc = subprocess.Popen([sys.executable, "-m", "loader", "--env-file", os.devnull, "backfill", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    cur = conn.cursor()
    deadline = time.monotonic() + 60
    while True:  # wait until the first chunk is committed
        cur.execute("SELECT to_regclass('influx_archive_runs') IS NOT NULL")
        if cur.fetchone()[0]:
            cur.execute("SELECT coalesce(max(chunks), 0) FROM influx_archive_runs")
            if cur.fetchone()[0] >= 1:
                break
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1] == "influx-archive: interrupted; what was committed is kept, nothing half-done"
    cur.execute("SELECT command, outcome, error, chunks FROM influx_archive_runs")
    assert cur.fetchall() == [("backfill", "interrupted", "interrupted (Ctrl-C or SIGINT)", 1)]
    conn.close()
    assert archive_rows(pg_url) == expected_means(points, start=start, end=start + HOUR)  # the whole first chunk
    status = cli("status", env=env)
    assert "running:" not in status.stdout and "abandoned" not in status.stdout
    again = cli("backfill", *args, env=env)
    assert again.returncode == 0, again.stderr
    assert archive_rows(pg_url) == expected_means(points)


def test_credentials_in_influx_url_are_refused_without_showing_them():
    env = {"PATH": os.environ["PATH"], "INFLUX_URL": "http://admin:Zq9Xw@127.0.0.1:8086", "INFLUX_TOKEN": "t0ken",
           "INFLUX_ORG": "o", "PG_URL": "postgresql://u@127.0.0.1/db"}
    result = cli("run", env=env)
    assert result.returncode == 2
    assert "INFLUX_URL must not carry a user name or password" in result.stderr
    assert "Zq9Xw" not in result.stderr and "admin" not in result.stderr


def test_a_backfill_of_a_range_influxdb_no_longer_has_says_so(pg_url, standin):
    feed_standin(standin, pulse_points(now() - HOUR, HOUR))
    old = now() - now() % HOUR - 40 * 86400
    result = cli("backfill", "--start", rfc3339(old), "--end", rfc3339(old + 2 * HOUR), env=flux_env(pg_url, standin))
    assert result.returncode == 0, result.stderr
    assert (f"InfluxDB has no spo2 readings between {rfc3339(old)} and {rfc3339(old + 2 * HOUR)}: there was nothing "
            "to load (the free plan keeps 30 days)") in result.stderr


def test_the_commands_table_and_reference_are_generated_from_the_cli_declarations():
    """README's table and docs/commands.md say what the code declares (setup/commands_doc.py rewrites them)."""
    spec = importlib.util.spec_from_file_location("commands_doc", os.path.join(ROOT, "setup", "commands_doc.py"))
    doc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(doc)
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    assert doc.readme_with_table(readme) == readme, "run: python3 setup/commands_doc.py"
    with open(os.path.join(ROOT, "docs", "commands.md"), encoding="utf-8") as handle:
        assert handle.read() == doc.commands_md(), "run: python3 setup/commands_doc.py"
    for name in COMMANDS:
        assert f"## {name}\n" in doc.commands_md()
