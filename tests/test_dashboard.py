"""The Grafana dashboards (setup/grafana/, written by setup/dashboard.py): every panel's SQL expanded as
Grafana's PostgreSQL data source expands it (macros, $__interval from range and width, the device
variable as Grafana quotes it, the TimescaleDB switch on or off) and run on the real PostgreSQL as a
SELECT-only role, with TAGS empty and TAGS=uid with two devices, for 3 hours to 2 years and inside a gap."""

import datetime
import decimal
import json
import math
import os
import re
import subprocess
import sys
import uuid
from collections import defaultdict

import psycopg2
import pytest

from loader.job import Job
from setup import dashboard as generator
from tests.support import grafana_schema
from tests.support.archive import grant_reader
from tests.support.flux_standin import StandIn
from tests.support.grafana_macros import expand, interval_for, seconds_of
from tests.support.harness import DAY, HOUR, ORG, ROOT, TOKEN, FixedClock, make_config
from tests.support.readings import feed_standin, pulse_points, with_dips

NOW = 1_790_000_000 - 1_790_000_000 % DAY + 10 * HOUR + 17
BASE = "pox_five_second_mean"
RANGES = {"3 hours": 3 * HOUR, "3 days": 3 * DAY, "60 days": 60 * DAY, "2 years": 730 * DAY}
GAPS = ((NOW - 2 * DAY, NOW - 2 * DAY + 8 * HOUR), (NOW - 2 * HOUR, NOW - 2 * HOUR + 20 * 60))
KINDS = {"one series": ("dashboard.json", ()), "two devices": ("dashboard-devices.json", ("a", "b")),
         "a child's, one series": ("dashboard-child.json", ()),
         "a child's, two devices": ("dashboard-child-devices.json", ("a", "b"))}
ALL = {(): {}, ("a", "b"): {"device": "'a','b'"}}  # "All", as Grafana's SQL formatting quotes the values


def panels(name):
    return json.load(open(os.path.join(ROOT, "setup", "grafana", name)))["panels"]


LOADED = {}  # device tuple -> the database an adult's archive of it was loaded into, once per module


def adults_archive(pg_server, uids):
    """Three days of readings with two gaps (GAPS: the oximeter off for 8 hours, and for 20 minutes inside
    the last 3 hours), loaded once per set of devices; the URL of its database."""
    if uids in LOADED:
        return LOADED[uids]
    pg_url = pg_server.new_database()
    standin = StandIn(token=TOKEN, org=ORG)
    try:
        points = with_dips(pulse_points(NOW - 3 * DAY, 3 * DAY, uids=uids or ("a",), gap=GAPS[0]))
        # a reading at each window's start: the 5-second table has every row 1 Hz would give it, for a fifth
        # of the loading (the panels read that table and what is made of it, never the readings)
        feed_standin(standin, [p for p in points if not GAPS[1][0] <= p[3] < GAPS[1][1] and p[3] % 5 == 0])
        settings = {"TAGS": "uid"} if uids else {}
        Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="3d", **settings), clock=FixedClock(NOW)).run()
    finally:
        standin.close()
    LOADED[uids] = pg_url
    return pg_url


def copy_of(pg_server, pg_url):
    """(URL, name) of a new database made from pg_url's (CREATE DATABASE ... TEMPLATE)."""
    copy = "t_" + uuid.uuid4().hex[:12]
    conn = psycopg2.connect(pg_server.url())
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{copy}" TEMPLATE "{pg_url.rsplit("/", 1)[1]}"')
    conn.close()
    return pg_server.url(copy), copy


@pytest.fixture(scope="module", params=sorted(KINDS))
def archive(request, pg_server):
    """An adult's archive (adults_archive), or a child's: a copy of it (CREATE DATABASE ... TEMPLATE) whose
    sessions are computed again with SUBJECT=child (their definition changed: all of them, whatever the range
    rebuilt); and a role that may only SELECT, like Grafana's."""
    name, uids = KINDS[request.param]
    pg_url = adults_archive(pg_server, uids)
    if "child" in name:
        pg_url, _ = copy_of(pg_server, pg_url)
        settings = {"TAGS": "uid"} if uids else {}
        Job(make_config(pg_url, "http://127.0.0.1:9", INITIAL_LOOKBACK="3d", SUBJECT="child", **settings),
            clock=FixedClock(NOW)).rebuild_rollups(NOW - HOUR, NOW)  # every session (a new definition): the rest is the
        # adult's, rollups included, so only the last hour's are computed again
    return name, uids, grant_reader(pg_url)


def bucket_width(start, end):
    """The panels' bucket for a range: $__interval, never under the rows of the table that serves it (5-second
    rows up to 6 hours, then the rollups')."""
    span = end - start
    rows = 5 if span <= 6 * HOUR else 60 if span <= 7 * DAY else HOUR if span <= 120 * DAY else DAY
    return max(rows, seconds_of(interval_for(start, end)))


def series(rows, names):
    """Rows of a time-series answer by series: the metric column names it where there is one."""
    out = defaultdict(list)
    for row in rows:
        if names[1] == "metric":
            out[row[1]].append((row[0], *row[2:]))
        else:
            out[None].append(row)
    return out


def check_series(title, rows, names, start, end, width, devices, range_name, nightly=False):
    """nightly: a point per night (the sessions over months), drawn as one line on purpose."""
    found = series(rows, names)
    assert set(found) == (set(devices) if devices else {None}), (title, range_name, set(found))
    for key, points in found.items():
        times = [p[0].timestamp() for p in points]
        assert times == sorted(times) and len(set(times)) == len(times), (title, key, range_name)
        assert all(start - DAY <= t <= end for t in times)
        assert [p for p in points if p[1] is not None], (title, key, range_name)
        if nightly:
            continue
        for before, after in zip(points, points[1:]):
            if before[1] is not None and after[1] is not None:  # drawn as one line: no gap between
                assert after[0].timestamp() - before[0].timestamp() <= 2 * width, (title, key, before)
        breaks = [p[0].timestamp() for p in points if p[1] is None]
        # a point per bucket of $__interval (about a pixel), not per row of the table it reads
        assert len(points) - len(breaks) <= (end - start) / width + 1, (title, key, range_name, len(points))
        for gap_start, gap_end in GAPS:
            if start <= gap_start and gap_end <= end and gap_end - gap_start > 2 * width:
                assert any(gap_start - width <= t <= gap_end for t in breaks), (title, key, range_name, breaks)


def check_table(title, rows, names, devices):
    device = 1 if devices else 0
    if devices:
        assert names[0] == "Device" and {r[0] for r in rows} == set(devices), (title, rows)
    if title == "Summaries":
        for uid in devices or (None,):
            mine = [r for r in rows if not devices or r[0] == uid]
            column = {name: index for index, name in enumerate(names)}
            assert [r[column["Period"]] for r in mine] == ["Last day", "Last week", "Last month", "Last year"]
            day = mine[0]
            assert day[column["Threshold"]] == "SpO2 < 90 %" and day[column["Time below threshold"]] > 0  # the dips
    elif title == "Sessions":
        started = [r[device] for r in rows]
        assert rows and started == sorted(started, reverse=True)
        assert all(r[names.index("T90 %")] > 0 for r in rows)  # the dips are below 90
    else:  # a stat of the last session: one row per device
        assert len(rows) == (len(devices) or 1) and all(v is not None for r in rows for v in r), (title, rows)


@pytest.mark.parametrize("range_name", sorted(RANGES))
def test_every_panel_runs_as_a_read_only_role(archive, range_name):
    """As Grafana expands it (macros, $__interval, the TimescaleDB switch on or off): no error; a time
    series ascending, no timestamp twice within a series (one per device), and a gap longer than two
    buckets broken by a row of NULLs, the only thing Grafana does not draw a line across."""
    name, devices, url = archive
    start, end = NOW - RANGES[range_name], NOW
    width = bucket_width(start, end)
    conn = psycopg2.connect(url)
    cur = conn.cursor()
    for panel, timescaledb in [(p, mode) for p in panels(name) for mode in (False, True)]:
        [target] = panel["targets"]
        since = end - seconds_of(panel["timeFrom"]) if "timeFrom" in panel else start  # Grafana's relative time
        cur.execute(expand(target["rawSql"], since, end, ALL[devices], timescaledb=timescaledb))
        rows, names = cur.fetchall(), [d[0] for d in cur.description]
        if target["format"] == "time_series":
            assert names[0] == "time", panel["title"]
            check_series(panel["title"], rows, names, since, end, width, devices, range_name,
                         nightly="_sessions" in target["rawSql"])
        else:
            check_table(panel["title"], rows, names, devices)
    conn.close()


def test_a_panel_of_few_points_over_years_gets_buckets_of_a_year_not_an_error(archive):
    """A panel's Max data points set low (10 over two years): Grafana's $__interval becomes 1y, a stride
    PostgreSQL's date_bin refuses (months and years have no fixed length); the buckets come from
    $__interval_ms, a fixed length, so every series still draws its points."""
    name, devices, url = archive
    start, end = NOW - RANGES["2 years"], NOW
    conn = psycopg2.connect(url)
    cur = conn.cursor()
    for panel in panels(name):
        if panel["type"] == "timeseries":
            cur.execute(expand(panel["targets"][0]["rawSql"], start, end, ALL[devices], max_points=10))
            assert cur.fetchall(), panel["title"]
    conn.close()


def test_one_device_chosen_shows_that_device_only(archive):
    """With TAGS=uid; the dashboard for an archive without TAGS has no device to choose."""
    name, devices, url = archive
    if not devices:
        assert "$device" not in json.dumps(panels(name))
        return
    conn = psycopg2.connect(url)
    cur = conn.cursor()
    for panel in panels(name):
        cur.execute(expand(panel["targets"][0]["rawSql"], NOW - 3 * DAY, NOW, {"device": "'b'"}))
        rows, names = cur.fetchall(), [d[0] for d in cur.description]
        column = names.index("metric") if "metric" in names else names.index("Device")
        assert rows and {r[column] for r in rows} == {"b"}, panel["title"]
    conn.close()


def test_a_range_inside_a_gap_is_empty_not_an_error(archive):
    name, devices, url = archive
    conn = psycopg2.connect(url)
    cur = conn.cursor()
    for panel in panels(name):
        if panel["type"] == "timeseries":
            cur.execute(expand(panel["targets"][0]["rawSql"], GAPS[0][0] + HOUR, GAPS[0][0] + 4 * HOUR, ALL[devices]))
            assert cur.fetchall() == [], panel["title"]
    conn.close()


def test_each_series_reads_one_table_per_range(archive):
    """The branches not chosen for a range are never executed (constant conditions, pruned at plan time).
    (The nights' panels read the sessions table, a row per night, whatever the range.)"""
    name, devices, url = archive
    conn = psycopg2.connect(url)
    cur = conn.cursor()
    series_panels = [p for p in panels(name) if p["type"] == "timeseries"]
    for panel in [p for p in series_panels if "_sessions" not in p["targets"][0]["rawSql"]]:
        for range_name, expected in (("3 hours", BASE), ("3 days", BASE + "_1m"), ("60 days", BASE + "_1h"),
                                     ("2 years", BASE + "_1d")):
            cur.execute("EXPLAIN (ANALYZE, COSTS OFF) " + expand(panel["targets"][0]["rawSql"],
                                                                   NOW - RANGES[range_name], NOW, ALL[devices]))
            plan = "\n".join(r[0] for r in cur.fetchall())
            executed = {re.search(r" on (\S+)", line).group(1).removesuffix("_pkey") for line in plan.splitlines()
                        if "Scan" in line and " on " in line and "never executed" not in line
                        and "CTE Scan" not in line and "Subquery Scan" not in line}  # tables only
            assert executed == {expected}, (panel["title"], range_name, plan)
    conn.close()


@pytest.mark.parametrize("range_name", sorted(RANGES))
def test_each_graph_point_is_the_mean_of_the_windows_in_its_bucket(archive, range_name):
    """Whichever table serves the range, a point of the SpO2 graph is the mean of the 5-second windows in
    its bucket, and its lowest the lowest of them (a rollup's means combined by their windows)."""
    name, devices, url = archive
    start, end = NOW - RANGES[range_name], NOW
    width = bucket_width(start, end)
    [panel] = [p for p in panels(name) if p["title"] == "SpO2"]
    conn = psycopg2.connect(url)
    cur = conn.cursor()
    cur.execute(expand(panel["targets"][0]["rawSql"], start, end, ALL[devices]))
    names = [d[0] for d in cur.description]
    drawn = {(r[0], *((r[1],) if devices else ())): r[-2:] for r in cur.fetchall() if r[-1] is not None}
    tag = ", uid" if devices else ""
    cur.execute(f"SELECT date_bin(%s * interval '1 second', time, timestamptz '1970-01-01'){tag}, avg(spo2), "
                f"min(spo2) FROM {BASE} WHERE time >= to_timestamp(%s) AND time < to_timestamp(%s) AND spo2 IS NOT "
                f"NULL GROUP BY 1{', 2' if devices else ''}", (width, start - start % width, end))
    windows = {r[:-2]: r[-2:] for r in cur.fetchall()}
    conn.close()
    inside = {k: v for k, v in drawn.items() if start <= k[0].timestamp() and k[0].timestamp() + width <= end}
    assert inside and names[-2:] == ["SpO2 mean", "SpO2 lowest"]
    for key, (mean, lowest) in inside.items():
        assert math.isclose(mean, windows[key][0], rel_tol=1e-9) and lowest == windows[key][1], (key, range_name)


@pytest.mark.parametrize("name", sorted(generator.FILES))
def test_the_dashboard_asks_on_import_for_its_data_source_and_names_no_other(name):
    """Import (the only way README installs it) shows a data-source choice from __inputs: the
    provisioned influx-archive or one added by hand under any name; no panel names a uid of its own,
    and no variable takes typed text."""
    board = json.load(open(os.path.join(ROOT, "setup", "grafana", name)))
    [source] = board["__inputs"]
    assert source["type"] == "datasource" and source["pluginId"] == "grafana-postgresql-datasource"
    wanted = {"type": "grafana-postgresql-datasource", "uid": "${" + source["name"] + "}"}
    for panel in board["panels"]:
        assert panel["datasource"] == wanted, panel["title"]
        assert all(target["datasource"] == wanted for target in panel["targets"]), panel["title"]
    for variable in board["templating"]["list"]:
        assert variable["type"] == "query" and variable["datasource"] == wanted and variable["multi"]
    assert {p["type"] for p in board["panels"]} <= {r["id"] for r in board["__requires"]}


@pytest.mark.parametrize("name", sorted(generator.FILES))
def test_the_dashboard_files_are_what_setup_dashboard_py_writes(name):
    with open(os.path.join(ROOT, "setup", "grafana", name), encoding="utf-8") as handle:
        assert handle.read() == generator.render(generator.FILES[name]), "run: python3 setup/dashboard.py"


@pytest.mark.parametrize("name", sorted(generator.FILES))
def test_the_panel_json_is_grafanas_schema_under_tsc_strict(name, tmp_path):
    """Each panel's options and custom field config typed as its panel plugin declares them in
    @grafana/schema, the variables and the dashboard model likewise, by TypeScript under --strict."""
    if not os.path.isdir(os.path.join(grafana_schema.NODE_MODULES, "typescript")):
        pytest.fail("Grafana's packages are missing: tests/run installs them (npm ci in tests/grafana)")
    board = json.load(open(os.path.join(ROOT, "setup", "grafana", name)))
    assert {p["type"] for p in board["panels"]} <= set(grafana_schema.PANEL_TYPES)
    code, said = grafana_schema.tsc(board, tmp_path)
    assert code == 0, said


def test_the_schema_check_reports_a_misspelt_key_a_wrong_enum_and_a_misplaced_option(tmp_path):
    """The check above can fail: keys and values Grafana would not read are each an error."""
    board = json.load(open(os.path.join(ROOT, "setup", "grafana", "dashboard.json")))
    stat = next(p for p in board["panels"] if p["type"] == "stat")
    series = next(p for p in board["panels"] if p["type"] == "timeseries")
    stat["options"]["reduceOptions"]["feilds"] = ""  # misspelt
    series["fieldConfig"]["defaults"]["custom"]["drawStyle"] = "lines"  # not one of line, bars, points
    stat["fieldConfig"]["defaults"]["custom"] = {"lineWidth": 2}  # a time series' option on a stat
    code, said = grafana_schema.tsc(board, tmp_path)
    assert code != 0
    assert "'\"feilds\"' does not exist" in said and "'\"lines\"' is not assignable" in said, said
    assert said.count("error TS") == 3, said  # and lineWidth's 2, which a stat's custom config cannot hold


def test_the_device_variable_lists_the_archived_devices(archive):
    name, devices, url = archive
    board = json.load(open(os.path.join(ROOT, "setup", "grafana", name)))
    conn = psycopg2.connect(url)
    cur = conn.cursor()
    for variable in board["templating"]["list"]:
        cur.execute(variable["query"])
        assert [r[0] for r in cur.fetchall()] == list(devices)
    conn.close()


GRAFANA = os.path.join(ROOT, "tests", "grafana")
DURATIONS = {"Recorded", "T88", "Time below threshold"}  # dtdurations columns


def grafana_display(payload):
    """What Grafana's own display code (tests/grafana/display.cjs, @grafana/data) shows of each panel."""
    if not os.path.isdir(os.path.join(grafana_schema.NODE_MODULES, "@grafana", "data")):
        pytest.fail("Grafana's packages are missing: tests/run installs them (npm ci in tests/grafana)")
    out = subprocess.run(["node", os.path.join(GRAFANA, "display.cjs")], input=json.dumps(payload),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def frame_field(name, values):
    """A column of a query's answer as a data frame field, typed as Grafana's PostgreSQL data source
    types it: timestamptz a time (epoch ms), numbers numbers, the rest strings."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, datetime.datetime) for v in present):
        return {"name": name, "type": "time", "values": [v and v.timestamp() * 1000 for v in values]}
    if present and all(isinstance(v, (int, float, decimal.Decimal)) for v in present):
        return {"name": name, "type": "number", "values": [None if v is None else float(v) for v in values]}
    return {"name": name, "type": "string", "values": values}


def test_every_stat_and_table_cell_shows_its_value_in_grafanas_own_display_code(archive):
    """Each stat and table panel's answer (run as the read-only role) through @grafana/data's field
    display, as the Stat and Table panels show it: every stat a value (not "No data"), no doubled
    space, a night's duration in hours and minutes; one yellow for 90-94 % everywhere; no time series
    axis with a hard minimum that could hide a reading."""
    name, devices, url = archive
    conn = psycopg2.connect(url)
    cur = conn.cursor()
    payload = []
    for panel in panels(name):
        if panel["type"] == "timeseries":
            assert "min" not in panel["fieldConfig"]["defaults"], panel["title"]  # soft minimums only
            continue
        [target] = panel["targets"]
        cur.execute(expand(target["rawSql"], NOW - 3 * DAY, NOW, ALL[devices]))
        rows, names = cur.fetchall(), [d[0] for d in cur.description]
        payload.append({"title": panel["title"], "type": panel["type"], "fieldConfig": panel["fieldConfig"],
                        "options": panel.get("options", {}),
                        "fields": [frame_field(n, [r[i] for r in rows]) for i, n in enumerate(names)]})
    conn.close()
    shown = grafana_display(payload)
    for panel, sent in zip(shown["panels"], payload):
        assert panel["values"], panel["title"]
        nulls = {f["name"]: [v is None for v in f["values"]] for f in sent["fields"]}  # a table's cells, in order
        for value in panel["values"]:
            was_null = sent["type"] == "table" and nulls[value["name"]].pop(0)
            assert value["text"] not in ("No data", "") or was_null, (panel["title"], value)
            assert "  " not in value["text"], (panel["title"], value)
            if value["name"] in DURATIONS and re.search(r"hour|day", value["text"]):
                assert ", " in value["text"], (panel["title"], value)  # 7 hours, 59 minutes: not "7 hours"
    graph = next(p for p in panels(name) if p["title"] == "SpO2")
    band = {s["value"]: s["color"] for s in graph["fieldConfig"]["defaults"]["thresholds"]["steps"]}[90]
    stat_band = {s["value"]: s["color"] for s in next(p for p in panels(name) if p["title"] == "Mean SpO2")[
        "fieldConfig"]["defaults"]["thresholds"]["steps"]}[90]
    colours = grafana_display([{"title": "bands", "type": "table", "fieldConfig": {"defaults": {}, "overrides": []},
                                "options": {}, "fields": [], "colours": [band, stat_band]}])["colours"]
    assert colours[band] == colours[stat_band]  # the 90-94 % band: one colour on the graph and the stats


@pytest.mark.parametrize("name", sorted(generator.FILES))
def test_a_night_by_night_line_breaks_where_a_week_was_not_recorded_in_grafanas_own_display_code(name):
    """Each night-by-night panel through Grafana's own preparation of a time series (the Disconnect values
    option): nights 1-5, a week without recordings, nights 13-16 are two lines; without the option, one."""
    nights = [NOW + day * DAY for day in (*range(5), *range(12, 16))]
    for panel in (p for p in panels(name) if p["title"].endswith("night by night")):
        frame = [{"name": "time", "type": "time", "values": [t * 1000 for t in nights]},
                 {"name": panel["title"], "type": "number", "values": [4.0] * len(nights)}]
        joined = json.loads(json.dumps(panel["fieldConfig"]))
        del joined["defaults"]["custom"]["insertNulls"]
        shown = grafana_display([{"title": panel["title"], "type": "lines", "fieldConfig": config, "options": {},
                                  "fields": frame} for config in (panel["fieldConfig"], joined)])
        assert [p["values"][0]["text"] for p in shown["panels"]] == ["2", "1"], panel["title"]


@pytest.mark.parametrize("name", sorted(generator.FILES))
def test_durations_show_to_the_minute_in_grafanas_own_display_code(name, pg_url):
    """A night of 7 h 59 min 20 s and a T88 of 45 min 10 s, as the Sessions table's SQL rounds them and
    Grafana's display code shows them."""
    table = next(p for p in panels(name) if p["title"] == "Sessions")
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    recorded = generator.session_column(generator.BY_COLUMN["recorded_s"]).replace("recorded_s", "28760", 1)
    t88 = generator.session_column(generator.BY_COLUMN["t88_s"]).replace("t88_s", "2710", 1)
    cur.execute(f"SELECT {recorded}, {t88}")
    values = cur.fetchone()
    conn.close()
    shown = grafana_display([{"title": "Sessions", "type": "table", "fieldConfig": table["fieldConfig"], "options": {},
                              "fields": [frame_field(n, [v]) for n, v in zip(("Recorded", "T88"), values)]}])
    assert [v["text"] for v in shown["panels"][0]["values"]] == ["7 hours, 59 minutes", "45 minutes, 0 seconds"]


def test_a_childs_dashboard_colours_odi_by_paediatric_bands_and_shows_the_mcgill_score():
    adult, child = panels("dashboard.json"), panels("dashboard-child.json")
    odi4 = {name: next(p for p in board if p["title"] == "ODI4 (last session)")["fieldConfig"]["defaults"]["thresholds"]
            for name, board in (("adult", adult), ("child", child))}
    assert [s["value"] for s in odi4["adult"]["steps"]] == [None, 5, 15, 30]
    assert [s["value"] for s in odi4["child"]["steps"]] == [None, 4]
    assert any(p["title"] == "McGill score" for p in child) and not any(p["title"] == "McGill score" for p in adult)
    assert sum(p["gridPos"]["w"] for p in child if p["type"] == "stat") == 24
    sessions = {name: next(p for p in board if p["title"] == "Sessions")["targets"][0]["rawSql"]
                for name, board in (("adult", adult), ("child", child))}
    assert '"McGill score"' in sessions["child"] and "mcgill" not in sessions["adult"]


def test_the_dashboard_the_pi_writes_reads_its_pg_schema_and_pg_table_and_shows_what_the_file_shows(pg_server,
                                                                                                   tmp_path):
    """A second oximeter's archive kept as PG_SCHEMA=Pi, PG_TABLE=Nights 2 (names SQL must quote): the dashboard
    setup/dashboard.py --out writes for those settings (as install.sh does on the Pi) gives every panel the rows
    the shipped file gives on the default names; nothing in it names the default table."""
    original = adults_archive(pg_server, ("a", "b"))
    _, copy = copy_of(pg_server, original)
    grant_reader(original)
    conn = psycopg2.connect(pg_server.url(copy))
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute('CREATE SCHEMA "Pi"')
    for suffix in ("", "_1m", "_1h", "_1d", "_sessions"):
        cur.execute(f'ALTER TABLE {BASE}{suffix} SET SCHEMA "Pi"')
        cur.execute(f'ALTER TABLE "Pi".{BASE}{suffix} RENAME TO "Nights 2{suffix}"')
    cur.execute('GRANT USAGE ON SCHEMA "Pi" TO grafana_test')
    cur.execute('GRANT SELECT ON ALL TABLES IN SCHEMA "Pi", public TO grafana_test')
    conn.close()
    out = tmp_path / "grafana-dashboard.json"
    written = subprocess.run([sys.executable, os.path.join(ROOT, "setup", "dashboard.py"), "--out", str(out),
                              "--schema", "Pi", "--table", "Nights 2", "--tags", "uid"], capture_output=True, text=True)
    assert written.returncode == 0, written.stderr
    assert BASE not in out.read_text()
    theirs = json.loads(out.read_text())["panels"]
    shipped = panels("dashboard-devices.json")
    assert [p["title"] for p in theirs] == [p["title"] for p in shipped]
    runs = {}
    for label, url, board in (("shipped", original, shipped), ("theirs", pg_server.url(copy), theirs)):
        conn = psycopg2.connect(url.replace("postgresql://postgres@", "postgresql://grafana_test@"))
        cur = conn.cursor()
        runs[label] = []
        for panel in board:
            cur.execute(expand(panel["targets"][0]["rawSql"], NOW - 3 * DAY, NOW, ALL[("a", "b")]))
            runs[label].append(cur.fetchall())
        conn.close()
    assert runs["theirs"] == runs["shipped"] and any(runs["shipped"])
    other = subprocess.run([sys.executable, os.path.join(ROOT, "setup", "dashboard.py"), "--out", str(out),
                            "--tags", "serial"], capture_output=True, text=True)
    assert other.returncode == 2 and "chooses by uid; TAGS=serial is not that" in other.stderr
