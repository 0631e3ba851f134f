"""Benchmark: a 1-year (--days) dashboard panel from the daily rollup versus the same aggregation over the
5-second table, both in one run on a throwaway PostgreSQL (target: at least 50x faster); then every
panel of the dashboard over the last week and over that year (target: each under 50 ms).

  .venv-test/bin/python -m bench.rollups [--days 365] [--repeat 7]     (--days 730: two years of archive)

Loads a year of 5-second rows (two fields; 6.3 million rows) with generate_series, builds the
rollups with the loader's own code, then times each query (median of --repeat, after a warm-up).
"""

import argparse
import json
import os
import statistics
import time

from loader import archive
from loader import config as config_module
from loader.pg import DDL_LOCK, Database
from setup.dashboard import LEVELS
from tests.support.grafana_macros import expand
from tests.support.servers import PostgresServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DAY = 86400
# The same result as the panel's daily branch, computed from the 5-second rows.
DIRECT = """
SELECT to_timestamp(floor(extract(epoch FROM time) / 86400) * 86400) AS time, avg(spo2) AS "SpO2 mean",
       min(spo2) AS "SpO2 min"
  FROM pox_five_second_mean WHERE time BETWEEN %(start)s AND %(end)s GROUP BY 1 ORDER BY 1
"""


def timed(cur, query, params, repeat):
    cur.execute(query, params)
    cur.fetchall()  # warm-up: caches filled the same way for both
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        cur.execute(query, params)
        rows = cur.fetchall()
        times.append(time.perf_counter() - started)
    return statistics.median(times), rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    hourly_days = int(LEVELS[-2][1].split()[0])  # the daily rollup serves the ranges longer than the hourly's
    if args.days <= hourly_days:
        parser.error(f"--days {args.days}: give more than {hourly_days}; over fewer days the SpO2 panel reads the "
                     "hourly rollup, and this compares the daily one with the 5-second table")
    server = PostgresServer()
    try:
        cfg = config_module.load(None, environ={"INFLUX_URL": "http://unused", "INFLUX_TOKEN": "x", "INFLUX_ORG": "o",
                                                "PG_URL": server.url()})
        end = int(time.time()) // DAY * DAY
        start = end - args.days * DAY
        db = Database(cfg)
        conn = db.connect()
        cur = conn.cursor()
        cur.execute(DDL_LOCK)
        table = archive.table(db, cfg, tags=(), announce=False)
        table.ensure(cur, ("bpm", "spo2"))
        began = time.perf_counter()
        cur.execute("INSERT INTO pox_five_second_mean (time, spo2, bpm) "
                    "SELECT to_timestamp(t), 96 + 2 * sin(t / 900.0) - CASE WHEN t %% 3600 < 120 THEN 8 ELSE 0 END, "
                    "72 + 15 * sin(t / 43200.0) FROM generate_series(%s::bigint, %s::bigint - 5, 5) AS t",
                    (start, end))
        rows = cur.rowcount
        conn.commit()
        loaded = time.perf_counter() - began
        began = time.perf_counter()
        rollups = archive.rollups(db, cfg)
        for lo in range(start, end, 30 * DAY):
            rollups.refresh(cur, table.fields, lo, min(lo + 30 * DAY, end))
            conn.commit()
        built = time.perf_counter() - began
        began = time.perf_counter()
        archive.sessions(db, cfg).ensure(cur, table.fields)  # new table: computes them all
        conn.commit()
        sessions_built = time.perf_counter() - began
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE")

        dashboard = json.load(open(os.path.join(ROOT, "setup/grafana/dashboard.json")))
        [spo2_panel] = [p for p in dashboard["panels"] if p["title"] == "SpO2"]
        panel_sql = expand(spo2_panel["targets"][0]["rawSql"], start, end, {})
        t_rollup, via_rollup = timed(cur, panel_sql, None, args.repeat)
        t_direct, via_direct = timed(cur, DIRECT, {"start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
                                                   "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end))},
                                     args.repeat)
        assert len(via_rollup) == len(via_direct) == args.days, (len(via_rollup), len(via_direct))
        worst = max(abs(a[1] - b[1]) for a, b in zip(via_rollup, via_direct))
        print(f"machine: {os.cpu_count()} cores; PostgreSQL {conn.server_version // 10000}; "
              f"{rows} five-second rows over {args.days} days "
              f"(loaded in {loaded:.1f} s, rollups built in {built:.1f} s)")
        print(f"{args.days}-day SpO2 panel, daily rollup (dashboard SQL): {t_rollup * 1000:8.2f} ms  "
              f"({len(via_rollup)} points)")
        print(f"same aggregation over the 5-second table:          {t_direct * 1000:8.2f} ms")
        print(f"ratio: {t_direct / t_rollup:.0f}x faster from the rollup (target >= 50x); "
              f"largest difference between the two daily means: {worst:.2e}")
        print(f"sessions of the whole archive computed in {sessions_built:.1f} s (from scratch, once; a run "
              "recomputes only the sessions it touches)")
        for days in (7, args.days):  # the last week (the 1-minute rollup) and the whole archive
            print(f"every panel of setup/grafana/dashboard.json over the last {days} days, 1,000 points wide "
                  "(target: each under 50 ms):")
            for panel in dashboard["panels"]:
                took, answer = timed(cur, expand(panel["targets"][0]["rawSql"], end - days * DAY, end, {}), None,
                                     args.repeat)
                print(f"  {panel['title']:<24} {took * 1000:8.2f} ms  ({len(answer)} rows)"
                      f"{'' if took < 0.05 else '   OVER 50 ms'}")
        conn.close()
    finally:
        server.close()


if __name__ == "__main__":
    main()
