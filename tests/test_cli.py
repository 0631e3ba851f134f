"""The command line as cron and a user meet it: real processes, exit codes, messages, secrets."""

import os
import random
import signal
import subprocess
import sys
import time

import psycopg2
import pytest

from conftest import (TOKEN, archive_rows, cli, expected_means, feed_influxd, feed_standin, flux_env, pulse_points,
                      watermark)
from loader.cli import COMMANDS
from loader.windows import chunks

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
    assert archive_rows(pg_url) == expected_means(points, start=0, end=watermark(pg_url))


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


def test_status_exit_codes_never_fresh_stale_failing(pg_url, standin):
    feed_standin(standin, pulse_points(now() - HOUR, HOUR))
    env = flux_env(pg_url, standin, INITIAL_LOOKBACK="1h", STALE_AFTER="2h")
    never = cli("status", env=env)
    assert never.returncode == 2 and "never" in never.stdout
    assert cli("run", env=env).returncode == 0
    fresh = cli("status", env=env)
    assert fresh.returncode == 0, fresh.stdout
    assert "fresh" in fresh.stdout and "watermark:" in fresh.stdout and "rows:" in fresh.stdout
    conn = psycopg2.connect(pg_url)  # the archive as it looks after three hours without a run
    conn.cursor().execute("UPDATE influx_archive_state SET watermark = watermark - interval '3 hours'")
    conn.commit()
    conn.close()
    stale = cli("status", env=env)
    assert stale.returncode == 1 and "stale" in stale.stdout and "lag 3h" in stale.stdout
    standin.faults = [("status", 500, None)] * 5
    failed = cli("run", env=dict(env, MAX_RETRIES="1"))
    assert failed.returncode == 1
    failing = cli("status", env=env)
    assert failing.returncode == 2 and "failing" in failing.stdout and "HTTP 500" in failing.stdout


def test_check_reports_both_sides(pg_url, standin, influxd, influx_db):
    feed_standin(standin, pulse_points(now() - 30, 30))
    ok = cli("check", env=flux_env(pg_url, standin))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("ok ") == 2

    bad = cli("check", env=flux_env(pg_url.rsplit("/", 1)[0] + "/no_such_db", standin, INFLUX_TOKEN="nope"))
    assert bad.returncode == 2
    assert "FAIL  InfluxDB: InfluxDB refused the token" in bad.stdout
    assert "FAIL  PostgreSQL" in bad.stdout and "no_such_db" in bad.stdout

    feed_influxd(influxd, influx_db, pulse_points(now() - 30, 30))
    env = flux_env(pg_url, standin, INFLUX_URL=influxd.url, INFLUX_QUERY_LANGUAGE="influxql",
                   INFLUX_BUCKET=influx_db, INFLUX_TOKEN="")
    good = cli("check", env=env)
    assert good.returncode == 0, good.stdout
    assert "fields bpm, spo2" in good.stdout
    unmapped = cli("check", env=dict(env, INFLUX_BUCKET="unmapped"))
    assert unmapped.returncode == 2 and "DBRP" in unmapped.stdout


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
