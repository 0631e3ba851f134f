"""The job: chunks, reruns, late data, backfills, and runs cut short (kill -9, Ctrl-C) leaving the
archive whole."""

import os
import random
import signal
import subprocess
import sys
import time

import psycopg2
import pytest

from loader.job import Job
from loader.windows import chunks, rfc3339
from tests.support.archive import archive_rows, count_rows
from tests.support.harness import DAY, HOUR, ROOT, FixedClock, cli, flux_env, make_config, now
from tests.support.readings import expected_means, feed_influxd, feed_standin, pulse_points

NOW = 1_790_000_000 - 1_790_000_000 % 86400 + 3 * 3600 + 17  # 2026-09-21T03:00:17Z: mid-window


@pytest.mark.parametrize("language", ["flux", "influxql"])
def test_rerun_gives_no_duplicates_and_late_points_are_merged(pg_url, standin, influxd, influx_db, language):
    late_t = NOW - 1200 - NOW % 5 + 2  # the device's SpO2 of this second arrives late (below)
    points = [p for p in pulse_points(NOW - 2 * HOUR, 2 * HOUR) if (p[2], p[3]) != ("spo2", late_t)]
    if language == "flux":
        feed = lambda p: feed_standin(standin, p)  # noqa: E731
        cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="3h", LATE_DATA="1h")
    else:
        feed = lambda p: feed_influxd(influxd, influx_db, p)  # noqa: E731
        cfg = make_config(pg_url, influxd.url, language="influxql", bucket=influx_db, INITIAL_LOOKBACK="3h",
                          LATE_DATA="1h")
    feed(points)
    clock = FixedClock(NOW)
    Job(cfg, clock=clock).run()
    first = archive_rows(pg_url)
    for _ in range(3):
        Job(cfg, clock=clock).run()
    assert archive_rows(pg_url) == first
    total, distinct = count_rows(pg_url)
    assert total == distinct == len(first)

    # a point arrives late for a window 20 minutes back, then an hour later the next run merges it
    late = [("spo2", {"uid": "a"}, "spo2", late_t, 50.0)]
    feed(late)
    clock.value = NOW + HOUR
    Job(cfg, clock=clock).run()
    rows = archive_rows(pg_url)
    want = expected_means(points + late, start=0, end=NOW - NOW % 5)
    assert rows[(late_t - late_t % 5,)] == want[(late_t - late_t % 5,)]
    assert rows[(late_t - late_t % 5,)]["spo2"] != first[(late_t - late_t % 5,)]["spo2"]
    # one more row: the window that was still open at the first run (readings up to NOW) is complete now
    assert count_rows(pg_url) == (len(first) + 1, len(first) + 1)


def test_an_hourly_run_waits_for_no_dump_that_holds_every_table(pg_url, standin, monkeypatch):
    """pg_dump holds ACCESS SHARE on every table it dumps for the whole dump (minutes on a Pi, and the nightly
    backup may still run at the next hour's run). The run takes no lock that waits for it: no ALTER TABLE
    where the columns are there already (the runs table's later columns, the readings table's lowest). With
    the run's lock_timeout at 2 s and every table held as pg_dump holds it, the second hour loads and the run
    ends ok."""
    points = pulse_points(NOW - 2 * HOUR, 2 * HOUR)
    feed_standin(standin, points)
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="3h")
    Job(cfg, clock=FixedClock(NOW - HOUR)).run()
    dump = psycopg2.connect(pg_url)
    cur = dump.cursor()
    cur.execute("SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = 'public'")
    tables = [name for (name,) in cur.fetchall()]
    assert {"public.influx_archive_runs", "public.pox_five_second_mean_readings"} <= set(tables)
    for name in tables:
        cur.execute(f"LOCK TABLE {name} IN ACCESS SHARE MODE")
    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=2s")
    try:
        Job(cfg, clock=FixedClock(NOW)).run()
    finally:
        dump.rollback()
        dump.close()
    assert archive_rows(pg_url) == expected_means(points, start=0, end=NOW - NOW % 5)
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute("SELECT outcome FROM influx_archive_runs ORDER BY id")
    assert cur.fetchall() == [("ok",), ("ok",)]
    conn.close()


def test_backfill_stops_at_the_last_complete_window(pg_url, standin):
    feed_standin(standin, pulse_points(NOW - HOUR, HOUR + 60))
    cfg = make_config(pg_url, standin.url)
    outcome = Job(cfg, clock=FixedClock(NOW)).backfill(NOW - HOUR, NOW + DAY)
    assert outcome.end == NOW - NOW % 5
    assert max(k[0] for k in archive_rows(pg_url)) == NOW - NOW % 5 - 5


def test_kill_9_during_a_multi_chunk_backfill_leaves_no_partial_chunk(pg_url, standin):
    """SIGKILL while a 36-chunk backfill starts, then once it has committed 1, 4, 7 ... 19 chunks, each time a
    random few milliseconds later (anywhere in the next chunk's work): every chunk of the archive is whole or
    absent after each kill, and a rerun completes it. The kills wait for the commits they follow, not for a
    time that a slower or faster machine would make land before the first chunk or after the last."""
    end = now() - now() % 600 - 600
    start = end - 6 * HOUR
    points = pulse_points(start, 6 * HOUR)
    feed_standin(standin, points)
    expected = expected_means(points, start=start, end=end)
    env = flux_env(pg_url, standin, CHUNK="10m")
    pieces = chunks(start, end, 600)
    rng = random.Random(20261122)
    args = ["backfill", "--start", rfc3339(start), "--end", rfc3339(end)]
    watch = psycopg2.connect(pg_url)
    watch.autocommit = True
    cur = watch.cursor()
    interrupted = 0
    for after in (0, *range(1, 20, 3)):  # committed chunks to kill after (36 in all: the kill lands before the end)
        cur.execute("SELECT to_regclass('influx_archive_runs') IS NOT NULL")
        newer_than = 0
        if cur.fetchone()[0]:
            cur.execute("SELECT coalesce(max(id), 0) FROM influx_archive_runs")
            newer_than = cur.fetchone()[0]
        proc = subprocess.Popen([sys.executable, "-m", "loader", "--env-file", os.devnull, *args], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while after:  # until this run has committed `after` chunks
            cur.execute("SELECT to_regclass('influx_archive_runs') IS NOT NULL")
            if cur.fetchone()[0]:
                cur.execute("SELECT coalesce(max(chunks), 0) FROM influx_archive_runs WHERE id > %s", (newer_than,))
                if cur.fetchone()[0] >= after:
                    break
            assert proc.poll() is None, f"the backfill ended (exit {proc.returncode}) before {after} chunks"
            assert time.monotonic() < deadline, f"no {after} chunks committed in 60 s"
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.03))  # not a wait: where in the next chunk's work the kill lands
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rows = archive_rows(pg_url)
        for lo, hi in pieces:
            inside = {k: v for k, v in rows.items() if lo <= k[0] < hi}
            want = {k: v for k, v in expected.items() if lo <= k[0] < hi}
            assert inside in ({}, want), f"kill after {after} chunks: chunk {lo}..{hi} is partial"
        interrupted += 0 < len(rows) < len(expected)
    watch.close()
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
