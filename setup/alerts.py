"""Write the Grafana alert rule file from the sessions' declarations (loader/metrics.py's Metric bands):
    python3 setup/alerts.py                       setup/grafana/alert-rules.yaml (PG_TABLE's default, no TAGS)
    python3 setup/alerts.py --out FILE --table PG_TABLE --schema PG_SCHEMA --tags TAGS --subject SUBJECT
A rule "A night to look at" fires for a device whose last finished night (ended SESSION_GAP ago or more, within
the last day) has its ODI4 or T90 in the orange or red band, or recorded less than half its usual time: the
rule NOTIFY_WHEN=bad sends messages by (loader/morning.py). Grafana's alerting file provisioning format; its
SQL is run by tests/test_alerts.py as Grafana's PostgreSQL data source runs it, as the read-only role.
"""

from __future__ import annotations

import json
import os
import sys
from typing import List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from loader.metrics import BY_COLUMN  # noqa: E402
from setup.dashboard import DEVICE, TABLE, for_table, parse_settings  # noqa: E402

GAP = "45 minutes"  # SESSION_GAP's default: a night is finished once its device has been quiet this long


def lowest_alarm(column: str, subject: str) -> Optional[float]:
    """The lowest value of the column's orange or red band (None when it has neither)."""
    found = [v for colour, v in BY_COLUMN[column].bands_for(subject) if colour in ("orange", "red") and v is not None]
    return min(found) if found else None


def rule_sql(devices: bool, subject: str) -> str:
    device = f"{DEVICE}, " if devices else ""
    label = f"{DEVICE} AS device, " if devices else ""
    alarms = {c: lowest_alarm(c, subject) for c in ("odi4", "t90_pct")}
    tests = [f"{c} >= {v:g}" for c, v in alarms.items() if v is not None]
    usual = (f"recorded_s < 0.5 * (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY p.recorded_s) FROM "
             f"{TABLE}_sessions p WHERE {'p.' + DEVICE + ' = s.' + DEVICE + ' AND ' if devices else ''}"
             f"p.started < s.started AND p.started > s.started - interval '30 days' HAVING count(*) >= 3)")
    return (f"SELECT {label}CASE WHEN {' OR '.join(tests)} OR {usual} THEN 1 ELSE 0 END AS bad\n"
            f"  FROM (SELECT DISTINCT ON ({DEVICE if devices else 'true'}) * FROM {TABLE}_sessions\n"
            f"         WHERE ended > now() - interval '1 day' AND ended <= now() - interval '{GAP}'\n"
            f"         ORDER BY {device}started DESC) s")


def rules(devices: bool, subject: str) -> dict:
    bands = "a child's" if subject == "child" else "an adult's"
    return {"apiVersion": 1, "groups": [{
        "orgId": 1, "name": "influx-archive nights", "folder": "influx-archive", "interval": "1h",
        "rules": [{
            "uid": "influx-archive-bad-night" + ("-child" if subject == "child" else ""),
            "title": "A night to look at",
            "condition": "C",
            "data": [
                {"refId": "A", "relativeTimeRange": {"from": 86400, "to": 0}, "datasourceUid": "influx-archive",
                 "model": {"refId": "A", "format": "table", "rawQuery": True, "editorMode": "code",
                           "rawSql": rule_sql(devices, subject)}},
                {"refId": "B", "datasourceUid": "__expr__",
                 "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last"}},
                {"refId": "C", "datasourceUid": "__expr__",
                 "model": {"refId": "C", "type": "threshold", "expression": "B",
                           "conditions": [{"evaluator": {"type": "gt", "params": [0]}}]}}],
            "noDataState": "OK", "execErrState": "Error", "for": "0s",
            "annotations": {"summary": "Last night's ODI4 or T90 is in " + bands + " orange or red band, or it "
                                       "recorded less than half its usual time (a sensor that fell off?)",
                            "description": "The report of the night: influx-archive report (README, The morning "
                                           "report); the dashboard's Sessions table has its numbers."},
            "labels": {"service": "influx-archive"},
            "isPaused": False}]}]}


def render(devices: bool = False, subject: str = "adult", schema: str = "public", table: str = TABLE) -> str:
    made = rules(devices, subject)
    if (schema, table) != ("public", TABLE):
        made = for_table(made, schema, table)
    return "# Grafana alert rules (file provisioning), written by setup/alerts.py: edit that, not this.\n" \
           "# Copy to /etc/grafana/provisioning/alerting/ on the Grafana machine; the data source is the\n" \
           "# provisioned influx-archive one (setup/grafana/datasource.yaml). JSON is YAML: Grafana reads it.\n" \
           + json.dumps(made, indent=2) + "\n"


def main(argv: List[str]) -> int:
    args = parse_settings(argv, __doc__.split("\n")[0], "the rule file to write",
                          os.path.join(ROOT, "setup", "grafana", "alert-rules.yaml"))
    if args.other_tags:
        print(f"alerts.py: the rule names devices by {DEVICE}; TAGS={args.tags} is not that", file=sys.stderr)
        return 2
    with open(args.out, "w", encoding="utf-8") as handle:
        handle.write(render(args.devices, args.subject, args.schema, args.table))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
