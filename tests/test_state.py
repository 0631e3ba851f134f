"""State kept in PostgreSQL: the watermark (where the next run starts) and the run lock (one run at
a time)."""

import os
import subprocess
import sys
import time

import psycopg2
import pytest

from loader.errors import SourceRejected
from loader.job import Job
from loader.pg import Database
from loader.state import State
from tests.support.archive import archive_rows, first_loaded, watermark
from tests.support.harness import DAY, HOUR, ROOT, FixedClock, cli, flux_env, make_config, now
from tests.support.readings import expected_means, feed_standin, pulse_points

NOW = 1_790_000_000 - 1_790_000_000 % 86400 + 3 * 3600 + 17  # 2026-09-21T03:00:17Z: mid-window


def test_a_runs_table_of_the_first_version_gains_the_later_columns_and_keeps_its_rows(pg_url, standin):
    """influx_archive_runs as the first version made it (no exit_code, late_hours or refused): the next run
    adds the three columns (schema.sql adds each only where it is missing), keeps the old row and records
    its own readings refused (finger-off zeros) in the new column."""
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute("CREATE TABLE influx_archive_runs (id bigserial PRIMARY KEY, target text NOT NULL, command text NOT "
                "NULL, started_at timestamptz NOT NULL, finished_at timestamptz, range_start timestamptz, range_end "
                "timestamptz, chunks integer NOT NULL DEFAULT 0, rows_written bigint NOT NULL DEFAULT 0, outcome text "
                "NOT NULL DEFAULT 'running', error text)")
    cur.execute("INSERT INTO influx_archive_runs (target, command, started_at, outcome) "
                "VALUES ('public.pox_five_second_mean', 'run', now(), 'ok')")
    conn.commit()
    feed_standin(standin, pulse_points(NOW - HOUR, HOUR, finger_off_every=60))
    Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h"), clock=FixedClock(NOW)).run()
    cur.execute("SELECT command, outcome, exit_code, late_hours, refused -> 'spo2' -> 'refused' FROM "
                "influx_archive_runs ORDER BY id")
    assert cur.fetchall() == [("run", "ok", None, None, None), ("run", "ok", None, None, 60)]
    conn.close()


def test_first_run_archives_initial_lookback_and_watermark_follows(pg_url, standin):
    feed_standin(standin, pulse_points(NOW - 3 * DAY, 3 * DAY, step=5))
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="2d", CHUNK="6h")
    outcome = Job(cfg, clock=FixedClock(NOW)).run()
    end = NOW - NOW % 5
    start = NOW - 2 * DAY - (NOW - 2 * DAY) % HOUR  # from the start of its hour: every hour is read whole
    assert (outcome.start, outcome.end) == (start, end)
    assert outcome.chunks == 9  # chunk boundaries fall on multiples of 6h
    assert watermark(pg_url) == end
    assert len(archive_rows(pg_url)) == (end - start) // 5


def test_backfill_moves_watermark_only_when_contiguous(pg_url, standin):
    points = pulse_points(NOW - 5 * DAY, 5 * DAY, step=5)
    feed_standin(standin, points)
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1d")
    Job(cfg, clock=FixedClock(NOW - 3 * DAY)).run()
    mark = watermark(pg_url)
    # a range ahead of the watermark, with a hole before it: loaded, watermark stays
    Job(cfg, clock=FixedClock(NOW)).backfill(mark + DAY, mark + 2 * DAY)
    assert watermark(pg_url) == mark
    # a range that starts at or before the watermark: watermark follows it
    Job(cfg, clock=FixedClock(NOW)).backfill(mark - HOUR, mark + DAY)
    assert watermark(pg_url) == mark + DAY
    rows = archive_rows(pg_url)
    assert rows == expected_means(points, start=NOW - 4 * DAY - (NOW - 4 * DAY) % HOUR, end=mark + 2 * DAY)


def test_an_empty_result_moves_the_watermark_and_writes_nothing(pg_url, standin):
    # the measurement has data in the last 30 days, so an empty range is proved empty, not misspelt
    feed_standin(standin, pulse_points(NOW - 30 * DAY, 600))
    outcome = Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="2h"), clock=FixedClock(NOW)).run()
    assert outcome.rows == 0 and outcome.chunks == 1
    assert archive_rows(pg_url) == {} and watermark(pg_url) == NOW - NOW % 5


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
        assert "holds this archive's lock; this run did nothing" in result.stderr
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
    assert sum("holds this archive's lock" in r[1] for r in results) == 1
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute("SELECT count(*), count(DISTINCT time) FROM pox_five_second_mean")
    total, distinct = cur.fetchone()
    conn.close()
    assert total == distinct > 0
    assert archive_rows(pg_url) == expected_means(points, start=first_loaded(pg_url), end=watermark(pg_url))


def test_the_lock_check_finds_advisory_keys_of_either_sign(pg_url):
    """pg_locks splits a bigint key into two unsigned halves; hashtext() is negative half the time."""
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    cur = conn.cursor()
    signs = set()
    for n in range(12):
        target = f"public.table_{n}"
        cur.execute("SELECT hashtext(%s) < 0", (f"influx-archive:{target}",))
        signs.add(cur.fetchone()[0])
        holder = psycopg2.connect(pg_url)
        State("public", target).try_lock(holder.cursor())
        assert State("public", target).active(cur)
        assert not State("public", target + "_other").active(cur)
        State("public", target).unlock(holder.cursor())
        assert not State("public", target).active(cur)
        holder.close()
    conn.close()
    assert signs == {True, False}


class Lingering:
    """A connection whose close() leaves its session open, as a server under load ends a closed session's
    backend in its own time (its session locks with it)."""

    def __init__(self, conn, kept):
        self._conn = conn
        kept.append(conn)

    def close(self):
        pass

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_a_failed_run_releases_the_lock_itself_so_the_run_right_after_it_loads(pg_url, standin, monkeypatch):
    """A run that fails (a wrong token) and the corrected one started the moment it returns: the second is
    not "locked out" by the first's session, which the server had not yet ended (the tests under load found
    an empty archive after the retry: the lock was left to the connection's end)."""
    kept, connect = [], Database.connect
    monkeypatch.setattr(Database, "connect", lambda self, *a, **k: Lingering(connect(self, *a, **k), kept))
    points = pulse_points(NOW - HOUR, HOUR)
    feed_standin(standin, points)
    try:
        with pytest.raises(SourceRejected):
            Job(make_config(pg_url, standin.url, INFLUX_TOKEN="wrong", INITIAL_LOOKBACK="1h"),
                clock=FixedClock(NOW)).run()
        outcome = Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h"), clock=FixedClock(NOW)).run()
        assert not outcome.locked_out
        assert archive_rows(pg_url) == expected_means(points, start=0, end=NOW - NOW % 5)
    finally:
        for conn in kept:
            conn.close()
