"""Rollups equal the aggregation computed directly from the 5-second table, after backfills, late
data and re-runs; the dashboard's SQL runs on real PostgreSQL as a SELECT-only role."""

import json
import math
import os
import re

import psycopg2
import pytest

from loader.job import Job
from tests.support.flux_standin import StandIn
from tests.support.grafana_macros import expand, interval_for, seconds_of
from tests.support.harness import DAY, HOUR, ORG, ROOT, TOKEN, FixedClock, make_config
from tests.support.readings import feed_standin, pulse_points

NOW = 1_790_000_000 - 1_790_000_000 % DAY + 10 * HOUR + 17
BASE = "pox_five_second_mean"
RANGES = {"3 hours": 3 * HOUR, "3 days": 3 * DAY, "60 days": 60 * DAY, "2 years": 730 * DAY}
GAPS = ((NOW - 2 * DAY, NOW - 2 * DAY + 8 * HOUR), (NOW - 2 * HOUR, NOW - 2 * HOUR + 20 * 60))


def with_dips(points):
    """Some SpO2 readings below 90, so the below-threshold counts have something to count."""
    return [(m, tags, f, t, 86.5 if f == "spo2" and t % 3600 < 300 else v) for m, tags, f, t, v in points]


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


@pytest.fixture(scope="module")
def loaded_with_reader(pg_server):
    """Three days of readings with two gaps (GAPS: the oximeter off for 8 hours, and for 20 minutes
    inside the last 3 hours), and a role that may only SELECT, like Grafana's. Loaded once for the
    module: the tests that use it only read."""
    pg_url = pg_server.new_database()
    standin = StandIn(token=TOKEN, org=ORG)
    try:
        points = with_dips(pulse_points(NOW - 3 * DAY, 3 * DAY, gap=GAPS[0]))
        feed_standin(standin, [p for p in points if not GAPS[1][0] <= p[3] < GAPS[1][1]])
        Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="3d"), clock=FixedClock(NOW)).run()
    finally:
        standin.close()
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana_test') THEN "
                "CREATE ROLE grafana_test LOGIN; END IF; END $$")
    cur.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO grafana_test")
    conn.close()
    return pg_url.replace("postgresql://postgres@", "postgresql://grafana_test@")


def test_rollups_stay_equal_to_the_5_second_table_through_backfills_late_data_and_reruns(pg_url, standin):
    points = with_dips(pulse_points(NOW - 4 * DAY, 4 * DAY, gap=(NOW - 2 * DAY, NOW - 2 * DAY + 5000)))
    feed_standin(standin, points)
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1d", CHUNK="6h", LATE_DATA="2h")
    Job(cfg, clock=FixedClock(NOW - DAY)).run()
    assert_equal_rollups(pg_url)
    Job(cfg, clock=FixedClock(NOW)).backfill(NOW - 4 * DAY, NOW - 2 * DAY - 3 * HOUR)  # older, with a hole
    Job(cfg, clock=FixedClock(NOW)).run()
    assert_equal_rollups(pg_url)
    late = [("spo2", {"uid": "late"}, "spo2", t, 70.0) for t in range(NOW - 3000, NOW - 2900)]
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
    feed_standin(standin, with_dips(pulse_points(NOW - 2 * DAY, 2 * DAY)))
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


def bucket_width(start, end):
    """The panels' bucket for a range: $__interval (never under 5 s) up to 6 hours, then the rollups'."""
    span = end - start
    if span <= 6 * HOUR:
        return max(5, seconds_of(interval_for(start, end)))
    return 60 if span <= 7 * DAY else HOUR if span <= 120 * DAY else DAY


@pytest.mark.parametrize("range_name", sorted(RANGES))
def test_every_dashboard_panel_runs_as_a_read_only_role(loaded_with_reader, range_name):
    """As Grafana expands it (macros, $__interval, the TimescaleDB switch on or off): no error, time
    ascending, no timestamp twice, and a gap longer than two buckets broken by a row of NULLs, the
    only thing Grafana does not draw a line across."""
    dashboard = json.load(open(os.path.join(ROOT, "setup/grafana/dashboard.json")))
    start, end = NOW - RANGES[range_name], NOW
    width = bucket_width(start, end)
    conn = psycopg2.connect(loaded_with_reader)
    cur = conn.cursor()
    for panel, timescaledb in [(p, mode) for p in dashboard["panels"] for mode in (False, True)]:
        for target in panel["targets"]:
            cur.execute(expand(target["rawSql"], start, end, {}, timescaledb=timescaledb))
            rows = cur.fetchall()
            names = [d[0] for d in cur.description]
            if target["format"] == "time_series":
                assert names[0] == "time", panel["title"]
                times = [r[0].timestamp() for r in rows]
                assert times == sorted(times) and len(set(times)) == len(times), (panel["title"], range_name)
                assert all(start - DAY <= t <= end for t in times)
                values = [r for r in rows if r[1] is not None]
                assert values, (panel["title"], range_name)
                for before, after in zip(rows, rows[1:]):
                    if before[1] is not None and after[1] is not None:  # drawn as one line: no gap between
                        assert after[0].timestamp() - before[0].timestamp() <= 2 * width, (panel["title"], before)
                breaks = [r[0].timestamp() for r in rows if r[1] is None]
                for gap_start, gap_end in GAPS:
                    if start <= gap_start and gap_end <= end and gap_end - gap_start > 2 * width:
                        assert any(gap_start - width <= t <= gap_end for t in breaks), (range_name, breaks)
            else:
                assert names[0] == "Period" and [r[0] for r in rows] == ["Last day", "Last week", "Last month",
                                                                       "Last year"]
                assert rows[0][3] == "SpO2 < 90 %" and rows[0][4].total_seconds() > 0  # the dips count
    conn.close()


def test_a_range_inside_a_gap_is_empty_not_an_error(loaded_with_reader):
    dashboard = json.load(open(os.path.join(ROOT, "setup/grafana/dashboard.json")))
    conn = psycopg2.connect(loaded_with_reader)
    cur = conn.cursor()
    for panel in dashboard["panels"][:2]:
        cur.execute(expand(panel["targets"][0]["rawSql"], GAPS[0][0] + HOUR, GAPS[0][0] + 4 * HOUR, {}))
        assert cur.fetchall() == []
    conn.close()


def test_dashboard_reads_one_table_per_range(loaded_with_reader):
    """The branches not chosen for a range are never executed (constant conditions, pruned at plan time)."""
    dashboard = json.load(open(os.path.join(ROOT, "setup/grafana/dashboard.json")))
    sql_text = dashboard["panels"][0]["targets"][0]["rawSql"]
    conn = psycopg2.connect(loaded_with_reader)
    cur = conn.cursor()
    for range_name, expected in (("3 hours", BASE), ("3 days", BASE + "_1m"), ("60 days", BASE + "_1h"),
                                 ("2 years", BASE + "_1d")):
        cur.execute("EXPLAIN (ANALYZE, COSTS OFF) " + expand(sql_text, NOW - RANGES[range_name], NOW,
                                                               {}))
        plan = "\n".join(r[0] for r in cur.fetchall())
        executed = {re.search(r" on (\S+)", line).group(1).removesuffix("_pkey") for line in plan.splitlines()
                    if "Scan" in line and " on " in line and "never executed" not in line
                    and "CTE Scan" not in line and "Subquery Scan" not in line}  # tables only
        assert executed == {expected}, (range_name, plan)
    conn.close()


def test_an_archive_made_before_rollups_gets_them_built_complete_on_the_next_run(pg_url, standin):
    feed_standin(standin, with_dips(pulse_points(NOW - 2 * DAY, 2 * DAY)))
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="2d")
    Job(cfg, clock=FixedClock(NOW - HOUR)).run()
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute(f"DROP TABLE {BASE}_1m, {BASE}_1h, {BASE}_1d")  # as installed by a version without rollups
    conn.commit()
    Job(cfg, clock=FixedClock(NOW)).run()  # writes only the last hour, yet every bucket is there
    conn.close()
    assert_equal_rollups(pg_url)


def test_the_dashboard_asks_on_import_for_its_data_source_and_names_no_other():
    """Import (the only way README installs it) shows a data-source choice from __inputs: the
    provisioned influx-archive or one added by hand under any name; no panel names a uid of its own."""
    dashboard = json.load(open(os.path.join(ROOT, "setup/grafana/dashboard.json")))
    [source] = dashboard["__inputs"]
    assert source["type"] == "datasource" and source["pluginId"] == "grafana-postgresql-datasource"
    wanted = {"type": "grafana-postgresql-datasource", "uid": "${" + source["name"] + "}"}
    for panel in dashboard["panels"]:
        assert panel["datasource"] == wanted, panel["title"]
        assert all(target["datasource"] == wanted for target in panel["targets"]), panel["title"]
    assert not [v for v in dashboard["templating"]["list"] if v["type"] == "textbox"]  # nothing a viewer types


def test_rollup_below_changed_mid_life_recounts_every_bucket_and_leaves_no_stale_column(pg_url, standin):
    """An archive whose rollups an older version made (spo2_below_90), then ROLLUP_BELOW=spo2=95:
    the next run recounts every bucket from the 5-second rows in its transaction; no NULL, no column
    of the old threshold, and the Summaries panel says the new threshold and the time below it."""
    feed_standin(standin, with_dips(pulse_points(NOW - 2 * DAY, 2 * DAY)))
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
    cur.execute(expand(dashboard["panels"][2]["targets"][0]["rawSql"], NOW - 3 * HOUR, NOW, {}))
    last_day = cur.fetchone()
    first_hour = -(-(NOW - DAY) // HOUR) * HOUR  # the hourly buckets that start within the last day
    cur.execute(f"SELECT count(*) FROM {BASE} WHERE spo2 < 95 AND time >= to_timestamp(%s)", (first_hour,))
    assert last_day[3] == "SpO2 < 95 %" and last_day[4].total_seconds() == 5 * cur.fetchone()[0] > 0
    Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="2d", ROLLUP_BELOW="bpm=70"), clock=FixedClock(NOW)).run()
    cur.execute("SELECT attname, col_description(attrelid, attnum) FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attname LIKE %s AND NOT attisdropped", (f"{BASE}_1h", "%below%"))
    assert cur.fetchall() == [("bpm_below", "70")]  # spo2 dropped from ROLLUP_BELOW: its column goes too
    cur.execute(f"SELECT sum(bpm_below) FROM {BASE}_1d")
    below = cur.fetchone()[0]
    cur.execute(f"SELECT count(*) FROM {BASE} WHERE bpm < 70")
    assert below == cur.fetchone()[0] > 0
    conn.close()
