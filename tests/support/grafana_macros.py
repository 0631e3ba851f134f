"""Grafana's PostgreSQL macros, expanded as its documentation describes (PostgreSQL query editor,
"Macros"), so the dashboard's SQL can run against a real PostgreSQL in tests.

  $__timeFilter(c)         c BETWEEN '<from>' AND '<to>'
  $__timeFrom(), $__timeTo() '<from>', '<to>'           (RFC 3339, UTC)
  $__timeGroup(c, i)       floor(extract(epoch from c)/<i seconds>)*<i seconds>, or with the data
                           source's TimescaleDB switch on time_bucket('<i seconds>s',c)
                           (pkg/tsdb/grafana-postgresql-datasource/macros.go)
  $__timeGroupAlias(c, i)  the same AS "time"
  $__interval              the panel interval: range / max data points, rounded to a nice step,
                           never below the panel's min interval, in the largest unit that divides it (1y)
  $__interval_ms           the same in milliseconds (replaced first, as Grafana does)
  ${var}, $var             dashboard variables
"""

import re
from datetime import datetime, timezone

NICE = [1, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
        604800, 2592000, 31536000]
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def interval_for(start, end, min_interval=5, max_points=1000):
    raw = max(min_interval, (end - start) / max_points)
    seconds = next(n for n in NICE if n >= raw)
    for unit in ("y", "w", "d", "h", "m"):
        if seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{seconds}s"


def seconds_of(text):
    text = text.strip().strip("'")
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|y)", text)
    return int(match.group(1)) * UNITS[match.group(2)]


def _time(epoch):
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand(sql, start, end, variables, min_interval=5, timescaledb=False, max_points=1000):
    """sql as Grafana sends it for a panel max_points wide (its Max data points)."""
    interval = interval_for(start, end, min_interval, max_points)
    text = sql.replace("$__interval_ms", str(seconds_of(interval) * 1000)).replace("$__interval", interval)
    for name, value in variables.items():
        text = text.replace("${" + name + "}", value)
        text = re.sub(r"\$" + name + r"\b", value, text)
    text = re.sub(r"\$__timeFilter\(([^)]+)\)",
                  lambda m: f"{m.group(1).strip()} BETWEEN '{_time(start)}' AND '{_time(end)}'", text)
    text = text.replace("$__timeFrom()", f"'{_time(start)}'").replace("$__timeTo()", f"'{_time(end)}'")

    def group(m, alias):
        column, step = (x.strip() for x in m.group(1).rsplit(",", 1))
        secs = seconds_of(step)
        if timescaledb:
            return f"time_bucket('{secs}s',{column})" + (' AS "time"' if alias else "")
        return f"floor(extract(epoch from {column})/{secs})*{secs}" + (' AS "time"' if alias else "")
    text = re.sub(r"\$__timeGroupAlias\(([^)]+)\)", lambda m: group(m, True), text)
    text = re.sub(r"\$__timeGroup\(([^)]+)\)", lambda m: group(m, False), text)
    if "$__" in text:
        raise ValueError("unexpanded macro in: " + text)
    return text
