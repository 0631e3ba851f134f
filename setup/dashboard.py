"""Write the Grafana dashboards in setup/grafana/ from one description:
    python3 setup/dashboard.py
    python3 setup/dashboard.py --out FILE --table PG_TABLE --schema PG_SCHEMA --tags TAGS --subject SUBJECT
dashboard.json for an archive without TAGS, dashboard-devices.json for TAGS=uid (a device variable,
one series per device); dashboard-child.json and dashboard-child-devices.json the same for a child's
nights (SUBJECT=child: the McGill score shown, paediatric colour bands). A test keeps the files in step
with this script. With --out, the one that fits the settings given, for that PG_SCHEMA.PG_TABLE (install.sh
writes it on the Pi).

Every panel's SQL is written for Grafana's PostgreSQL data source (macros $__timeFilter, $__timeFrom,
$__timeTo, $__interval_ms; the device variable as Grafana's SQL formatting quotes it, 'a','b') and runs
as the read-only role; tests/test_dashboard.py expands and runs each one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from loader.metrics import BY_COLUMN, MEAN_BANDS, METRICS, NADIR_BANDS, T90_BANDS, Metric  # noqa: E402

TABLE = "pox_five_second_mean"
DS = {"type": "grafana-postgresql-datasource", "uid": "${DS_INFLUX_ARCHIVE}"}
RANGE = "($__timeTo()::timestamptz - $__timeFrom()::timestamptz)"
# (table suffix, largest range it serves, its rows' width); every level is bucketed by $__interval (the range
# over the panel's width in pixels) where that is wider than its rows: a 7-day graph reads the 1-minute rollup
# and draws one point per pixel, not 10,080. In milliseconds ($__interval_ms): Grafana writes an interval of a
# year or more as 1y, which date_bin refuses (a year has no fixed length)
LEVELS = (("", "6 hours", "5 seconds"), ("_1m", "7 days", "1 minute"), ("_1h", "120 days", "1 hour"),
          ("_1d", None, "1 day"))


def level_bucket(rows: str) -> str:
    return f"greatest(make_interval(secs => $__interval_ms / 1000.0), interval '{rows}')"


# how a rollup's columns combine into a wider bucket: the mean weighted by <f>_n (windows with a value)
COMBINE = {"avg": "sum({f}_mean * {f}_n) / nullif(sum({f}_n), 0)", "min": "min({f}_min)", "max": "max({f}_max)"}
DEVICE = "uid"

# The session metrics' colour bands are declared with them (loader/metrics.py); the SpO2 graph's bands
# are the mean's: below 90 red, 90-94 yellow (the same yellow as every stat and table cell)
SPO2_BANDS = [("red", None), ("yellow", 90), ("transparent", 94)]
BPM = "suffix:bpm"  # Grafana puts the space before the suffix itself
DURATION = [{"id": "unit", "value": "dtdurations"}, {"id": "decimals", "value": 1}]  # 7 hours, 59 minutes
NIGHT_GAP_MS = 36 * 3600 * 1000  # the night-by-night lines break where nights are further apart than this


def to_the_minute(seconds: str) -> str:
    """A duration in seconds rounded to whole minutes (DURATION then shows hours and minutes)."""
    return f"round({seconds} / 60.0) * 60"


def steps(pairs: Sequence[Tuple[str, Optional[float]]]) -> dict:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in pairs]}


def bucket_case() -> str:
    cases = [f"WHEN {RANGE} <= interval '{top}' THEN {level_bucket(bucket)}" for _, top, bucket in LEVELS[:-1]]
    return "CASE " + " ".join(cases) + f" ELSE {level_bucket(LEVELS[-1][2])} END"


def series_sql(field: str, label: str, aggregates: Sequence[Tuple[str, str]], devices: bool) -> str:
    """A time series of `field` from the table that fits the range, with a row of NULLs after every gap
    longer than two buckets (Grafana draws a line across anything but a null). aggregates: (name, SQL
    function over the 5-second rows; COMBINE says how it reads a rollup)."""
    tag = f", {DEVICE}" if devices else ""
    where_device = f" AND {DEVICE} IN ($device)" if devices else ""
    branches = []
    for index, (suffix, top, bucket) in enumerate(LEVELS):
        low = LEVELS[index - 1][1] if index else None
        limits = ([f"{RANGE} > interval '{low}'"] if low else []) + ([f"{RANGE} <= interval '{top}'"] if top else [])
        cond = f"$__timeFilter(time){where_device} AND " + " AND ".join(limits)
        cols = ", ".join((f"{fn}({field})" if suffix == "" else COMBINE[fn].format(f=field)) + f" AS {name}"
                         for name, fn in aggregates)
        group = "1, 2" if devices else "1"
        branches.append(f"  SELECT date_bin({level_bucket(bucket)}, time, timestamptz '1970-01-01') AS time{tag},\n"
                        f"         {cols}\n    FROM {TABLE}{suffix}\n   WHERE {cond} GROUP BY {group}")
    names = [name for name, _ in aggregates]
    shown = ", ".join(f'{name} AS "{label} {name}"' for name in names)
    nulls = ", ".join("NULL" for _ in names)
    metric = f"{DEVICE} AS metric, " if devices else ""
    partition = f"PARTITION BY {DEVICE} " if devices else ""
    return (f"-- {label}: from the table that fits the dashboard's range (5-second rows up to 6 hours, the 1-minute\n"
            "-- rollup up to 7 days, hourly up to 120 days, daily beyond), in buckets of $__interval where that is\n"
            "-- wider (a point per pixel; a rollup's mean weighted by its windows); PostgreSQL skips the other\n"
            "-- branches at plan time, their conditions being constants once Grafana has filled in the range.\n"
            "-- After every gap longer than two buckets comes a row of NULLs: Grafana draws a line across anything\n"
            "-- but a null.\n"
            "-- Buckets by date_bin, not the time-group macro, whose form changes with the TimescaleDB switch.\n"
            + ("-- One series per device: the metric column names it.\n" if devices else "")
            + "WITH chosen AS (\n" + "\n  UNION ALL\n".join(branches) + "\n)\n"
            f"SELECT time, {metric}{shown} FROM chosen\nUNION ALL\n"
            f"SELECT time + {bucket_case()}{tag}, {nulls}\n"
            f"  FROM (SELECT time{tag}, lead(time) OVER ({partition}ORDER BY time) AS next FROM chosen) AS gaps\n"
            f" WHERE next > time + 2 * ({bucket_case()})\nORDER BY 1")


def summaries_sql(devices: bool) -> str:
    tag = f"r.{DEVICE}, " if devices else ""
    device_column = f'r.{DEVICE} AS "Device", ' if devices else ""
    return ("-- Last day, week, month and year (rolling, up to the end of the dashboard's range) from the hourly\n"
            "-- rollup (means weighted by the windows behind each hour). Time below the threshold: the windows\n"
            "-- whose mean is below ROLLUP_BELOW's spo2 threshold, times the window; both read from the rollup's\n"
            "-- column comments, which the loader keeps true (a changed setting recounts every bucket). Without\n"
            "-- spo2 in ROLLUP_BELOW this panel says column spo2_below does not exist, rather than show zero.\n"
            "WITH meaning AS (\n"
            "  SELECT max(col_description(a.attrelid, a.attnum)) FILTER (WHERE a.attname = 'windows')::float AS "
            "window_s,\n"
            "         max(col_description(a.attrelid, a.attnum)) FILTER (WHERE a.attname = 'spo2_below') AS threshold\n"
            "    FROM pg_attribute AS a\n"
            f"   WHERE a.attrelid = '{TABLE}_1h'::regclass AND a.attnum > 0 AND NOT a.attisdropped\n)\n"
            f"SELECT {device_column}p.period AS \"Period\",\n"
            "       round((sum(r.spo2_mean * r.spo2_n) / nullif(sum(r.spo2_n), 0))::numeric, 1) AS \"SpO2 mean\",\n"
            "       min(r.spo2_min) AS \"SpO2 lowest\",\n"
            "       'SpO2 < ' || m.threshold || ' %' AS \"Threshold\",\n"
            f"       {to_the_minute('m.window_s * coalesce(sum(r.spo2_below), 0)')} AS \"Time below threshold\",\n"
            "       round((sum(r.bpm_mean * r.bpm_n) / nullif(sum(r.bpm_n), 0))::numeric, 0) AS \"Pulse mean\",\n"
            "       min(r.bpm_min) AS \"Pulse min\", max(r.bpm_max) AS \"Pulse max\"\n"
            "  FROM (VALUES (1, 'Last day', interval '1 day'), (2, 'Last week', interval '7 days'),\n"
            "               (3, 'Last month', interval '30 days'), (4, 'Last year', interval '365 days')) "
            "AS p(ord, period, span)\n"
            "  CROSS JOIN meaning AS m\n"
            f"  {'JOIN' if devices else 'LEFT JOIN'} {TABLE}_1h AS r\n"
            "    ON r.time >= $__timeTo()::timestamptz - p.span AND r.time < $__timeTo()::timestamptz"
            + (f" AND r.{DEVICE} IN ($device)" if devices else "") + "\n"
            f" GROUP BY {tag}p.ord, p.period, m.threshold, m.window_s\n"
            f" ORDER BY {tag}p.ord")


def session_column(metric: Metric) -> str:
    """A sessions column as the Sessions table shows it: rounded to its decimals (a duration to the minute),
    titled."""
    if metric.grafana_unit == "dtdurations":
        return f'{to_the_minute(metric.column)} AS "{metric.title}"'
    if metric.kind.startswith("double precision"):
        return f'round({metric.column}::numeric, {metric.decimals}) AS "{metric.title}"'
    return f'{metric.column} AS "{metric.title}"'


def shown(subject: str) -> List[Metric]:
    """The metrics the Sessions table shows for SUBJECT's nights."""
    return [m for m in METRICS if m.decimals is not None and subject in m.subjects]


def session_columns(subject: str) -> str:
    return ", ".join(['started AS "Started"'] + [session_column(m) for m in shown(subject)])


def session_overrides(subject: str) -> List[dict]:
    """The Sessions table's units and colours, from the metrics' declarations."""
    out = []
    for m in shown(subject):
        props: List[Any] = DURATION if m.grafana_unit == "dtdurations" else (
            [{"id": "unit", "value": m.grafana_unit}] if m.grafana_unit else [])
        if m.bands_for(subject):
            props = props + [{"id": "thresholds", "value": steps(m.bands_for(subject))},
                             {"id": "custom.cellOptions", "value": {"type": "color-background", "mode": "basic"}}]
        if props:
            out.append(column(m.title, props))
    return out


def sessions_sql(devices: bool, subject: str) -> str:
    device_column = f'{DEVICE} AS "Device", ' if devices else ""
    return ("-- Every session (a night: readings without a gap longer than SESSION_GAP, at least SESSION_MIN\n"
            "-- long) overlapping the dashboard's range, newest first; kept by the loader (docs/sessions.md).\n"
            f"SELECT {device_column}{session_columns(subject)}\n"
            f"  FROM {TABLE}_sessions\n"
            " WHERE started < $__timeTo()::timestamptz AND ended > $__timeFrom()::timestamptz"
            + (f" AND {DEVICE} IN ($device)" if devices else "") + "\n ORDER BY started DESC")


def last_session_sql(columns: str, devices: bool) -> str:
    """The newest session that ended by the end of the dashboard's range (per device)."""
    if devices:
        return (f"-- The last session of each chosen device ended by the end of the range.\n"
                f"SELECT DISTINCT ON ({DEVICE}) {DEVICE} AS \"Device\", {columns}\n  FROM {TABLE}_sessions\n"
                f" WHERE ended <= $__timeTo()::timestamptz AND {DEVICE} IN ($device)\n"
                f" ORDER BY {DEVICE}, started DESC")
    return (f"-- The last session ended by the end of the dashboard's range.\n"
            f"SELECT {columns}\n  FROM {TABLE}_sessions\n WHERE ended <= $__timeTo()::timestamptz\n"
            " ORDER BY started DESC LIMIT 1")


def nights_sql(metric: Metric, devices: bool) -> str:
    """Each session (night) that started in the range, at its start: one point per night and device."""
    device = f"{DEVICE} AS metric, " if devices else ""
    return (f"-- Each night (session) started in the range, at its start; kept by the loader (docs/sessions.md).\n"
            f"SELECT started AS time, {device}{session_column(metric)}\n"
            f"  FROM {TABLE}_sessions\n"
            " WHERE started >= $__timeFrom()::timestamptz AND started < $__timeTo()::timestamptz"
            + (f" AND {DEVICE} IN ($device)" if devices else "") + "\n ORDER BY started")


NIGHTS = ("odi4", "t90_pct", "nadir", "hypoxic_burden")  # the nights-over-months panels, left to right
NIGHTS_RANGE = "1y"  # they show the last year whatever the dashboard's range: the record the archive is for


def nights_panels(devices: bool, subject: str, first_id: int, y: int) -> List[dict]:
    panels = []
    width = 24 // len(NIGHTS)
    for index, column in enumerate(NIGHTS):
        m = BY_COLUMN[column]
        bands = m.bands_for(subject)
        # a line from night to night, broken where no night was recorded for NIGHT_GAP_MS (Grafana's
        # "Disconnect values": it inserts a null there, and draws no line across a null)
        custom = {"drawStyle": "line", "showPoints": "always", "pointSize": 5, "spanNulls": False,
                  "insertNulls": NIGHT_GAP_MS}
        if bands:
            custom["thresholdsStyle"] = {"mode": "area"}
        defaults = {"unit": m.grafana_unit, "decimals": m.decimals, "custom": custom}
        if bands:
            defaults["thresholds"] = steps(bands)
        panels.append({
            "id": first_id + index, "type": "timeseries", "title": f"{m.title}, night by night",
            "datasource": DS, "timeFrom": NIGHTS_RANGE,
            "gridPos": {"h": 8, "w": width, "x": width * index, "y": y},
            "description": f"{m.definition} One point per night over the last year"
                           + (", one line per device" if devices else "")
                           + "; the line breaks where no night was recorded for 36 hours.",
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "targets": target(nights_sql(m, devices), "time_series")})
    return panels


def target(sql: str, fmt: str) -> List[dict]:
    return [{"refId": "A", "datasource": DS, "format": fmt, "rawQuery": True, "editorMode": "code", "rawSql": sql}]


def stat(pid: int, title: str, sql: str, x: int, w: int, unit: Optional[str],
         thresholds: Sequence[Tuple[str, Optional[float]]], description: str, decimals: Optional[int] = None,
         fields: str = "") -> dict:
    """A stat of the last session; fields: which columns it shows ("": the numeric ones; a time needs
    its name, as a /regex/)."""
    defaults: dict = {"unit": unit, "thresholds": steps(thresholds), "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {"id": pid, "type": "stat", "title": title, "description": description, "datasource": DS,
            "gridPos": {"h": 4, "w": w, "x": x, "y": 0},
            "options": {"reduceOptions": {"values": True, "calcs": ["lastNotNull"], "fields": fields},
                        "colorMode": "background", "graphMode": "none", "textMode": "value_and_name",
                        "justifyMode": "center"},
            "fieldConfig": {"defaults": defaults, "overrides": []}, "targets": target(sql, "table")}


def column(name: str, props: Sequence[Any]) -> dict:
    return {"matcher": {"id": "byName", "options": name}, "properties": props}


ODI4_SAYS = {"adult": "Under 5 normal, 5-15 mild, 15-30 moderate, 30 and over severe (the AASM's bands).",
             "child": "From 4/h obstructive sleep apnoea is likely in a typically developing child (Selby et al., "
                      "Arch Dis Child 2024: specificity 92 %)."}


def last_session_stats(devices: bool, subject: str) -> List[dict]:
    """The stats of the last session, left to right: (title, SQL columns, width, unit, bands, description,
    decimals, fields); a child's nights add the McGill score and narrow three stats to make room."""
    narrow = 3 if subject == "child" else 4
    stats: list = [
        ("ODI4 (last session)", 'round(odi4::numeric, 1) AS "ODI4"', 4, "none", BY_COLUMN["odi4"].bands_for(subject),
         "Desaturations of at least 4 points per hour of recorded time (docs/sessions.md). " + ODI4_SAYS[subject], 1),
        ("T90 (last session)", 't90_pct AS "T90"', narrow, "percent", T90_BANDS,
         "Share of recorded time with SpO2 read below 90 %.", 1),
        ("Nadir", 'nadir AS "Nadir"', narrow, "percent", NADIR_BANDS,
         "Lowest SpO2 reading of the last session held for 3 s, motion artefacts refused.", 1),
        ("Mean SpO2", 'spo2_mean AS "Mean"', narrow, "percent", MEAN_BANDS, "Mean SpO2 of the last session.", 1)]
    if subject == "child":
        m = BY_COLUMN["mcgill"]
        stats.append(("McGill score", 'mcgill AS "McGill"', 3, m.grafana_unit, m.bands_for(subject), m.definition, 0))
    stats += [
        ("Pulse range", 'pulse_min AS "Min", pulse_max AS "Max"', 4, BPM, [("blue", None)],
         "Lowest and highest pulse of the last session held for 10 s.", 0),
        ("Last session ended", 'ended AS "Ended"', 4, "dateTimeFromNow", [("text", None)],
         "When the last session's last reading was taken.", None, "/^Ended$/")]
    out, x = [], 0
    for pid, (title, columns, width, unit, bands, description, decimals, *fields) in enumerate(stats, 1):
        out.append(stat(pid, title, last_session_sql(columns, devices), x, width, unit, bands, description, decimals,
                        *fields))
        x += width
    return out


def dashboard(devices: bool, subject: str = "adult") -> dict:
    first = len(last_session_stats(devices, subject)) + 1
    panels = [
        *last_session_stats(devices, subject),
        {"id": first, "type": "timeseries", "title": "SpO2", "datasource": DS, "interval": "5s",
         "gridPos": {"h": 9, "w": 24, "x": 0, "y": 4},
         "description": "Mean and lowest SpO2 per bucket. Red below 90 %, yellow 90-94 %; a break where no "
                        "readings were taken. The axis starts at 70 % unless a reading is lower.",
         "fieldConfig": {"defaults": {"unit": "percent", "max": 100, "decimals": 1,
                                      "thresholds": steps(SPO2_BANDS),
                                      "custom": {"spanNulls": False, "axisSoftMin": 70,
                                                 "thresholdsStyle": {"mode": "line+area"}}},
                         "overrides": []},
         "targets": target(series_sql("spo2", "SpO2", (("mean", "avg"), ("lowest", "min")), devices),
                           "time_series")},
        {"id": first + 1, "type": "timeseries", "title": "Pulse", "datasource": DS, "interval": "5s",
         "gridPos": {"h": 9, "w": 24, "x": 0, "y": 13},
         "description": "Mean, lowest and highest pulse per bucket; a break where no readings were taken.",
         "fieldConfig": {"defaults": {"unit": BPM, "decimals": 0, "custom": {"spanNulls": False}},
                         "overrides": []},
         "targets": target(series_sql("bpm", "Pulse", (("mean", "avg"), ("min", "min"), ("max", "max")), devices),
                           "time_series")},
        {"id": first + 2, "type": "table", "title": "Sessions", "datasource": DS,
         "gridPos": {"h": 9, "w": 24, "x": 0, "y": 22},
         "description": "Recording sessions overlapping the range, newest first; click a header to sort.",
         "fieldConfig": {"defaults": {}, "overrides": session_overrides(subject)},
         "targets": target(sessions_sql(devices, subject), "table")},
        {"id": first + 3, "type": "table", "title": "Summaries", "datasource": DS,
         "gridPos": {"h": 7, "w": 24, "x": 0, "y": 31},
         "description": "Rolling periods ending at the end of the range, from the hourly rollup.",
         "fieldConfig": {"defaults": {}, "overrides": [
             column("Time below threshold", DURATION),
             column("SpO2 mean", [{"id": "unit", "value": "percent"}]),
             column("SpO2 lowest", [{"id": "unit", "value": "percent"}]),
             column("Pulse mean", [{"id": "unit", "value": BPM}]),
             column("Pulse min", [{"id": "unit", "value": BPM}]),
             column("Pulse max", [{"id": "unit", "value": BPM}])]},
         "targets": target(summaries_sql(devices), "table")},
        *nights_panels(devices, subject, first + 4, 38),
    ]
    variables = []
    if devices:
        variables.append({
            "name": "device", "label": "Device", "type": "query", "datasource": DS, "multi": True,
            "includeAll": True, "refresh": 2, "sort": 1,
            "definition": f"SELECT DISTINCT {DEVICE} FROM {TABLE}_1d ORDER BY 1",
            "query": f"SELECT DISTINCT {DEVICE} FROM {TABLE}_1d ORDER BY 1",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}})
    return {
        "__inputs": [{"name": "DS_INFLUX_ARCHIVE", "label": "influx-archive PostgreSQL",
                      "description": "The archive's PostgreSQL data source (read-only role): the provisioned "
                                     "influx-archive, or one added by hand under any name",
                      "type": "datasource", "pluginId": "grafana-postgresql-datasource", "pluginName": "PostgreSQL"}],
        "__requires": [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.3.0"},
                       {"type": "datasource", "id": "grafana-postgresql-datasource", "name": "PostgreSQL",
                        "version": "1.0.0"},
                       {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
                       {"type": "panel", "id": "table", "name": "Table", "version": ""},
                       {"type": "panel", "id": "stat", "name": "Stat", "version": ""}],
        "uid": "influx-archive" + ("-child" if subject == "child" else "") + ("-devices" if devices else ""),
        "title": "Pulse oximeter archive" + (", a child's nights" if subject == "child" else "")
                 + (" (devices)" if devices else ""),
        "schemaVersion": 39, "version": 1, "editable": True, "timezone": "browser", "refresh": "",
        "tags": ["influx-archive"], "time": {"from": "now-7d", "to": "now"},
        "templating": {"list": variables}, "panels": panels}


FILES = {"dashboard.json": (False, "adult"), "dashboard-devices.json": (True, "adult"),
         "dashboard-child.json": (False, "child"), "dashboard-child-devices.json": (True, "child")}


def render(kind: Tuple[bool, str]) -> str:
    devices, subject = kind
    return json.dumps(dashboard(devices, subject), indent=2) + "\n"


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def for_table(board: dict, schema: str, table: str) -> dict:
    """The dashboard for another PG_SCHEMA/PG_TABLE: every relation its SQL names (the table and its
    rollups and sessions) renamed, quoted as SQL wants it, so nobody edits the JSON by hand."""
    names = re.compile(rf"\b{TABLE}(_1m|_1h|_1d|_sessions)?\b")

    def relation(match: re.Match) -> str:
        name = quoted(table + (match.group(1) or ""))
        return name if schema == "public" else f"{quoted(schema)}.{name}"

    def regclass(match: re.Match) -> str:  # inside a string literal: its quotes doubled
        named = names.match(match.group(1))
        assert named is not None  # the pattern below finds only names it matches
        return "'" + relation(named).replace("'", "''") + "'::regclass"

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return names.sub(relation, re.sub(rf"'({TABLE}_\w+)'::regclass", regclass, value))
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    return walk(board)


def parse_settings(argv: Sequence[str], description: str, out_help: str,
                   out_default: Optional[str] = None) -> argparse.Namespace:
    """The settings a Pi's Grafana file is written for (--out, --schema, --table, --tags, --subject), here and in
    setup/alerts.py: the arguments, with .devices (TAGS=uid: a device choice) and .other_tags (TAGS naming
    another tag, which the SQL does not key by: the caller refuses it)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=out_default, help=out_help)
    parser.add_argument("--schema", default="public", help="PG_SCHEMA")
    parser.add_argument("--table", default=TABLE, help="PG_TABLE")
    parser.add_argument("--tags", default="", help="TAGS (empty: one series; uid: a device choice)")
    parser.add_argument("--subject", default="adult", choices=("adult", "child"), help="SUBJECT")
    args = parser.parse_args(argv)
    tags = [t for t in args.tags.split(",") if t.strip()]
    args.devices, args.other_tags = bool(tags), bool(tags) and tags != [DEVICE]
    args.schema, args.table = args.schema or "public", args.table or TABLE
    return args


def main(argv: Sequence[str]) -> int:
    """No arguments: the files of setup/grafana. --out FILE with the settings: the one dashboard that fits
    them, for the Pi to hand to Grafana (install.sh writes /opt/influx-archive/grafana-dashboard.json)."""
    args = parse_settings(argv, __doc__.split("\n")[0], "write the dashboard for these settings to this file")
    if not args.out:
        for name, kind in FILES.items():
            with open(os.path.join(ROOT, "setup", "grafana", name), "w", encoding="utf-8") as handle:
                handle.write(render(kind))
        return 0
    if args.other_tags:
        print(f"dashboard.py: the devices dashboard chooses by {DEVICE}; TAGS={args.tags} is not that: its SQL "
              f"needs {DEVICE} replaced by hand", file=sys.stderr)
        return 2
    board = for_table(dashboard(args.devices, args.subject), args.schema, args.table)
    with open(args.out, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(board, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
