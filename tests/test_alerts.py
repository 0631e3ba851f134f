"""setup/grafana/alert-rules.yaml (setup/alerts.py): Grafana's alert rule fires for a device whose last finished
night is bad by the dashboard's bands, not for a good one. Its SQL is run as Grafana's PostgreSQL data source
runs it (as the read-only role) on nights loaded through the loader; the file is read as YAML, as Grafana's
provisioning reads it. (No published Grafana package carries the alert rules' provisioning types: @grafana/schema
has the dashboard's only, and @grafana/alerting 13.0.1, the one alerting package on npm, types contact points
and notification policies; the keys are those of Grafana's file provisioning documentation.)"""

import os
import subprocess
import sys
import time

import psycopg2
import yaml

from loader.job import Job
from setup import alerts
from tests.support.archive import grant_reader
from tests.support.harness import HOUR, ROOT, FixedClock, make_config
from tests.support.readings import feed_standin, regular_night


def test_the_rule_fires_for_a_bad_last_night_of_a_device_and_not_for_a_good_one(pg_server, standin, tmp_path):
    now = int(time.time())
    start = now - now % 60 - 4 * HOUR  # ended an hour ago: finished (45 minutes quiet), within the last day
    feed_standin(standin, regular_night("a", start, 3, dip_every=180) + regular_night("b", start, 3))  # a bad, b not
    pg_url = pg_server.new_database()
    Job(make_config(pg_url, standin.url, TAGS="uid", INITIAL_LOOKBACK="1d"), clock=FixedClock(now)).run()
    out = tmp_path / "alert-rules.yaml"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "setup", "alerts.py"), "--out", str(out), "--tags",
                           "uid"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    [group] = yaml.safe_load(out.read_text())["groups"]
    [rule] = group["rules"]
    assert rule["condition"] == "C" and [d["refId"] for d in rule["data"]] == ["A", "B", "C"]
    assert rule["data"][0]["datasourceUid"] == "influx-archive" and rule["data"][2]["model"]["type"] == "threshold"
    reader = psycopg2.connect(grant_reader(pg_url))
    cur = reader.cursor()
    cur.execute(rule["data"][0]["model"]["rawSql"])
    assert sorted(cur.fetchall()) == [("a", 1), ("b", 0)]  # one value per device: Grafana's alert instances
    reader.close()


def test_the_shipped_file_is_what_setup_alerts_py_writes_and_a_childs_bands_are_its_own():
    with open(os.path.join(ROOT, "setup", "grafana", "alert-rules.yaml"), encoding="utf-8") as handle:
        assert handle.read() == alerts.render()
    assert "odi4 >= 15 OR t90_pct >= 10" in alerts.rule_sql(False, "adult")  # the adult bands' orange and red
    assert "odi4 >= 4 OR t90_pct >= 10" in alerts.rule_sql(True, "child")  # a child's ODI4 band starts at 4/h
