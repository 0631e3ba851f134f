"""Rollups equal the aggregation computed directly from the 5-second table, after backfills, late
data and re-runs, and keep ROLLUP_BELOW's meaning through a change of it (the dashboard itself:
test_dashboard.py)."""

import json
import math
import os

import psycopg2

from loader.job import Job
from tests.support.grafana_macros import expand
from tests.support.harness import DAY, HOUR, ROOT, FixedClock, make_config
from tests.support.readings import feed_standin, pulse_points, with_dips

NOW = 1_790_000_000 - 1_790_000_000 % DAY + 10 * HOUR + 17
BASE = "pox_five_second_mean"


def direct(cur, width, fields=("bpm", "spo2"), below=90):
    cols = ", ".join(f"avg({f}), min({f}), max({f}), count({f})" for f in fields)
    bucket = f"to_timestamp(floor(extract(epoch FROM time) / {width}) * {width})"
    cur.execute(f"SELECT extract(epoch FROM {bucket})::bigint, "
                f"count(*), {cols}, count(*) FILTER (WHERE spo2 < {below}) FROM {BASE} GROUP BY 1 ORDER BY 1")
    return {r[0]: r[1:] for r in cur.fetchall()}


def rolled(cur, suffix, fields=("bpm", "spo2")):
    cols = ", ".join(f"{f}_mean, {f}_min, {f}_max, {f}_n" for f in fields)
    cur.execute(f"SELECT extract(epoch FROM time)::bigint, windows, {cols}, spo2_below FROM {BASE}_{suffix} "
                "ORDER BY 1")
    return {r[0]: r[1:] for r in cur.fetchall()}


def assert_same_buckets(got, want, suffix):
    """Bucket for bucket, counts exactly and means to 1e-12: PostgreSQL may sum in any order, and
    floating-point sums in another order differ in the last bits."""
    assert got.keys() == want.keys(), suffix
    for bucket in want:
        assert len(got[bucket]) == len(want[bucket])
        for w, g in zip(want[bucket], got[bucket]):
            if isinstance(w, float) or isinstance(g, float):
                assert math.isclose(w, g, rel_tol=1e-12), (suffix, bucket, w, g)
            else:
                assert w == g, (suffix, bucket, want[bucket], got[bucket])


def assert_equal_rollups(pg_url, below=90):
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    try:
        for suffix, width in (("1m", 60), ("1h", 3600), ("1d", 86400)):
            assert_same_buckets(rolled(cur, suffix), direct(cur, width, below=below), suffix)
    finally:
        conn.close()


def test_rollups_stay_equal_to_the_5_second_table_through_backfills_late_data_and_reruns(pg_url, standin):
    points = with_dips(pulse_points(NOW - 4 * DAY, 4 * DAY, gap=(NOW - 2 * DAY, NOW - 2 * DAY + 5000), step=5))
    points = [p for p in points if not (p[2] == "spo2" and NOW - 3000 <= p[3] < NOW - 2900)]  # they come late
    feed_standin(standin, points)
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1d", CHUNK="6h", LATE_DATA="2h")
    Job(cfg, clock=FixedClock(NOW - DAY)).run()
    assert_equal_rollups(pg_url)
    Job(cfg, clock=FixedClock(NOW)).backfill(NOW - 4 * DAY, NOW - 2 * DAY - 3 * HOUR)  # older, with a hole
    Job(cfg, clock=FixedClock(NOW)).run()
    assert_equal_rollups(pg_url)
    late = [("spo2", {"uid": "a"}, "spo2", t, 70.0) for t in range(NOW - 3000, NOW - 2900)]
    feed_standin(standin, late)
    Job(cfg, clock=FixedClock(NOW + HOUR)).run()
    Job(cfg, clock=FixedClock(NOW + HOUR)).run()
    assert_equal_rollups(pg_url)
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute(f"SELECT sum(windows), sum(spo2_below) FROM {BASE}_1d")
    windows, below = cur.fetchone()
    cur.execute(f"SELECT count(*), count(*) FILTER (WHERE spo2 < 90) FROM {BASE}")
    assert (windows, below) == cur.fetchone() and below > 0
    conn.close()


def test_rebuild_rollups_recomputes_them_from_the_5_second_table(pg_url, standin):
    feed_standin(standin, with_dips(pulse_points(NOW - 2 * DAY, 2 * DAY, step=5)))
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="2d")
    Job(cfg, clock=FixedClock(NOW)).run()
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    before = {s: rolled(cur, s) for s in ("1m", "1h", "1d")}
    cur.execute(f"TRUNCATE {BASE}_1m, {BASE}_1h, {BASE}_1d")
    conn.commit()
    outcome = Job(cfg, clock=FixedClock(NOW)).rebuild_rollups()
    assert outcome.chunks >= 2
    for suffix in ("1m", "1h", "1d"):
        assert_same_buckets(rolled(cur, suffix), before[suffix], suffix)
    conn.close()


def test_an_archive_made_before_rollups_gets_them_built_complete_on_the_next_run(pg_url, standin):
    feed_standin(standin, with_dips(pulse_points(NOW - 2 * DAY, 2 * DAY, step=5)))
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="2d")
    Job(cfg, clock=FixedClock(NOW - HOUR)).run()
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute(f"DROP TABLE {BASE}_1m, {BASE}_1h, {BASE}_1d")  # as installed by a version without rollups
    conn.commit()
    Job(cfg, clock=FixedClock(NOW)).run()  # writes only the last hour, yet every bucket is there
    conn.close()
    assert_equal_rollups(pg_url)


def test_rollup_below_changed_mid_life_recounts_every_bucket_and_leaves_no_stale_column(pg_url, standin):
    """An archive whose rollups an older version made (spo2_below_90), then ROLLUP_BELOW=spo2=95:
    the next run recounts every bucket from the 5-second rows in its transaction; no NULL, no column
    of the old threshold, and the Summaries panel says the new threshold and the time below it."""
    feed_standin(standin, with_dips(pulse_points(NOW - 2 * DAY, 2 * DAY, step=5)))
    Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="2d"), clock=FixedClock(NOW - HOUR)).run()
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    cur = conn.cursor()
    for suffix in ("1m", "1h", "1d"):  # as the previous version named and left it
        cur.execute(f"ALTER TABLE {BASE}_{suffix} RENAME COLUMN spo2_below TO spo2_below_90")
        cur.execute(f"COMMENT ON COLUMN {BASE}_{suffix}.windows IS NULL")
    Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="2d", ROLLUP_BELOW="spo2=95"), clock=FixedClock(NOW)).run()
    assert_equal_rollups(pg_url, below=95)
    for suffix in ("1m", "1h", "1d"):
        cur.execute("SELECT attname, col_description(attrelid, attnum) FROM pg_attribute WHERE attrelid = "
                    "%s::regclass AND attnum > 0 AND NOT attisdropped AND attname LIKE %s",
                    (f"{BASE}_{suffix}", "%below%"))
        assert cur.fetchall() == [("spo2_below", "95")]
        cur.execute(f"SELECT count(*) FROM {BASE}_{suffix} WHERE spo2_below IS NULL")
        assert cur.fetchone() == (0,)
    dashboard = json.load(open(os.path.join(ROOT, "setup/grafana/dashboard.json")))
    [summaries] = [p for p in dashboard["panels"] if p["title"] == "Summaries"]
    cur.execute(expand(summaries["targets"][0]["rawSql"], NOW - 3 * HOUR, NOW, {}))
    last_day = cur.fetchone()
    first_hour = -(-(NOW - DAY) // HOUR) * HOUR  # the hourly buckets that start within the last day
    cur.execute(f"SELECT count(*) FROM {BASE} WHERE spo2 < 95 AND time >= to_timestamp(%s)", (first_hour,))
    below = 5 * cur.fetchone()[0]  # the windows below, 5 s each; the panel shows them to the minute
    assert last_day[3] == "SpO2 < 95 %" and last_day[4] == round(below / 60) * 60 and below > 0
    Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="2d", ROLLUP_BELOW="bpm=70"), clock=FixedClock(NOW)).run()
    cur.execute("SELECT attname, col_description(attrelid, attnum) FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attname LIKE %s AND NOT attisdropped", (f"{BASE}_1h", "%below%"))
    assert cur.fetchall() == [("bpm_below", "70")]  # spo2 dropped from ROLLUP_BELOW: its column goes too
    cur.execute(f"SELECT sum(bpm_below) FROM {BASE}_1d")
    below = cur.fetchone()[0]
    cur.execute(f"SELECT count(*) FROM {BASE} WHERE bpm < 70")
    assert below == cur.fetchone()[0] > 0
    conn.close()


def test_a_field_that_appears_mid_life_counts_0_in_older_buckets_never_null(pg_url, standin):
    """bpm appears a day after spo2: the buckets from before it count 0 windows of bpm, as a rebuild would;
    an archive a version made with NULL there gets 0s and the column's NOT NULL on its next run."""
    spo2_only = [p for p in pulse_points(NOW - 2 * DAY, DAY, step=5) if p[2] == "spo2"]
    feed_standin(standin, spo2_only)
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="2d")
    Job(cfg, clock=FixedClock(NOW - DAY)).run()
    feed_standin(standin, pulse_points(NOW - DAY, DAY, step=5))  # now bpm too
    Job(cfg, clock=FixedClock(NOW)).run()
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    for suffix in ("1m", "1h", "1d"):
        cur.execute(f"SELECT count(*) FILTER (WHERE bpm_n IS NULL), count(*) FILTER (WHERE bpm_n = 0), "
                    f"count(*) FILTER (WHERE bpm_n > 0) FROM {BASE}_{suffix}")
        nulls, zeros, counted = cur.fetchone()
        assert nulls == 0 and zeros > 0 and counted > 0, suffix
    assert_equal_rollups(pg_url)
    # as a version before this one left it: bpm_n nullable, NULL in the buckets from before bpm
    cur.execute(f"ALTER TABLE {BASE}_1h ALTER COLUMN bpm_n DROP NOT NULL, ALTER COLUMN bpm_n DROP DEFAULT")
    cur.execute(f"UPDATE {BASE}_1h SET bpm_n = NULL WHERE bpm_n = 0")
    conn.commit()
    Job(cfg, clock=FixedClock(NOW + HOUR)).run()
    cur.execute(f"SELECT count(*) FILTER (WHERE bpm_n IS NULL), bool_and(a.attnotnull) FROM {BASE}_1h, pg_attribute a "
                f"WHERE a.attrelid = '{BASE}_1h'::regclass AND a.attname = 'bpm_n'")
    assert cur.fetchone() == (0, True)
    conn.close()
    assert_equal_rollups(pg_url)
