"""Validate the night numbers against the injected truth and PhysioZoo's pobm, through the real loader.

  bench/validate          (installs what it needs, then runs this with the test venv)
  .venv-test/bin/python -m bench.validate_nights --pobm .venv-pobm/bin/python [--seed 1 | --seed 1,2,3,4]

Six synthetic 1 Hz nights with known events (bench/nights.py: clusters as in severe and moderate
apnoea, brief dips, artefacts with finger-off and dropouts, a bathroom break, a quiet night) go to the
Flux stand-in from tests/, a throwaway PostgreSQL, and one real hourly `run` of the loader (defaults:
5-second means, VALID_RANGES, SESSION_GAP); its sessions table is compared, per night, with the truth
and with pobm on the same 1 Hz readings (bench/pobm_reference.py, in pobm's own venv). Prints a table
and, per night, whether the targets of the night-numbers issue are met:

  ODI3/ODI4  within max(5/h, 30 %) of pobm's, and no further from the truth than pobm's
  T90        within max(0.5 points, 10 %) of T90 from the 1 Hz readings (percentage of recorded time)

and, per seed, how far ODI3 and ODI4 are from the truth summed over its nights, pobm's and ours.

Not a test: a measurement to read, dated, in docs/benchmarks.md.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import psycopg2

from bench.nights import nights
from loader import config as config_module
from loader.job import Job
from tests.support.flux_standin import Point, StandIn
from tests.support.harness import FixedClock
from tests.support.servers import PostgresServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN, ORG, BUCKET = "validate-token", "validate-org", "pulse_oximeter"
DAY = 86400


def load(night_list, pg_url, standin):
    """Feed every night to the stand-in and run the loader once over all of them; the sessions it kept."""
    points = []
    for n in night_list:
        for t, spo2, pulse in n["readings"]:
            if spo2 is not None:
                points.append(Point("spo2", {"uid": "validate"}, "spo2", t * 10**9, float(spo2)))
                points.append(Point("spo2", {"uid": "validate"}, "bpm", t * 10**9, float(pulse)))
    standin.store.add(BUCKET, points)
    first = night_list[0]["readings"][0][0]
    last = night_list[-1]["readings"][-1][0]
    now = last + 3600
    env = {"INFLUX_URL": standin.url, "INFLUX_TOKEN": TOKEN, "INFLUX_ORG": ORG, "INFLUX_BUCKET": BUCKET,
           "PG_URL": pg_url, "REQUIRE_CLOCK_SYNC": "no", "INITIAL_LOOKBACK": f"{(now - first) // DAY + 1}d"}
    Job(config_module.load(None, environ=env), clock=FixedClock(now)).run()
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT extract(epoch FROM started)::bigint, odi3, odi4, t90_pct, nadir, t88_pct, hypoxic_burden, "
                    "desat_depth, desat_duration, pulse_min, pulse_max FROM pox_five_second_mean_sessions ORDER BY 1")
        keys = ("started", "odi3", "odi4", "t90_pct", "nadir", "t88_pct", "hypoxic_burden", "desat_depth",
                "desat_duration", "pulse_min", "pulse_max")
        return [dict(zip(keys, row)) for row in cur.fetchall()]
    finally:
        conn.close()


def reference(night_list, python):
    payload = {n["kind"]: [r[1] for r in n["readings"]] for n in night_list}
    out = subprocess.run([python, os.path.join(ROOT, "bench/pobm_reference.py")], input=json.dumps(payload),
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"pobm failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def seeds(text):
    try:
        found = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give seeds as numbers, e.g. 1 or 1,2,3,4") from None
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pobm", required=True, help="the python of the venv holding pobm (bench/validate makes it)")
    parser.add_argument("--seed", type=seeds, default=[1], help="which synthetic nights: a seed, or several "
                        "(1,2,3,4), each its own six nights (default 1)")
    args = parser.parse_args()
    pg = PostgresServer()
    met = total = 0
    off = [0.0, 0.0]  # |ODI3 - truth| + |ODI4 - truth| summed over the nights: pobm's, ours
    try:
        for seed in args.seed:
            night_list = nights(seed)
            pobm = reference(night_list, args.pobm)
            standin = StandIn(token=TOKEN, org=ORG)
            try:
                conn = psycopg2.connect(pg.url())
                conn.autocommit = True
                conn.cursor().execute(f"CREATE DATABASE validate_{seed}")
                conn.close()
                sessions = load(night_list, pg.url(f"validate_{seed}"), standin)
            finally:
                standin.close()
            met_here, off_here = report(seed, night_list, pobm, sessions)
            met += met_here
            total += len(night_list)
            off = [a + b for a, b in zip(off, off_here)]
    finally:
        pg.close()
    if len(args.seed) > 1:
        print(f"seeds {','.join(map(str, args.seed))}: {met} of {total} nights meet every target; "
              f"ODI3 and ODI4 off the truth, summed: pobm {off[0]:.1f}/h, ours {off[1]:.1f}/h")
    sys.exit(0)


def report(seed, night_list, pobm, sessions):
    """Print one seed's table; how many of its nights meet every target, and (pobm's, ours) ODI3 and ODI4
    off the truth summed over the nights. "off pobm (nearer the truth)": a figure further from pobm's than
    the target allows, where pobm is the one further from the truth."""
    print(f"influx-archive night numbers, {time.strftime('%Y-%m-%d')}, seed {seed}: truth / pobm 1.2.0 on 1 Hz / "
          "this loader (5-second means and lowest readings; T90 from their reading counts)")
    print(f"{'night':<10} {'sessions':>8}  {'ODI3':>17}  {'ODI4':>17}  {'T90 % (1 Hz / ours)':>19}  {'nadir':>16}  "
          "HB %min/h  depth  dur s  verdict")
    missed = 0
    off = [0.0, 0.0]
    for n in night_list:
        start, end = n["readings"][0][0], n["readings"][-1][0]
        mine = [s for s in sessions if start <= s["started"] <= end]
        truth, ref = n["truth"], pobm[n["kind"]]
        ours = mine[0] if mine else None
        if ours is None:
            print(f"{n['kind']:<10} {0:>8}  no session")
            missed += 1
            continue
        t90_1hz = 100 * ref["t90_s"] / (ref["hours"] * 3600)
        problems = []
        for name in ("odi3", "odi4"):
            off[0] += abs(ref[name] - truth[name])
            off[1] += abs(ours[name] - truth[name])
            nearer = abs(ours[name] - truth[name]) < abs(ref[name] - truth[name])
            if abs(ours[name] - ref[name]) > max(5, 0.3 * ref[name]):
                problems.append(f"{name} off pobm" + (" (nearer the truth)" if nearer else ""))
            if abs(ours[name] - truth[name]) > abs(ref[name] - truth[name]) + 1e-9:
                problems.append(f"{name} further from truth than pobm")
        if abs(ours["t90_pct"] - t90_1hz) > max(0.5, 0.1 * t90_1hz):
            problems.append("T90 off 1 Hz")
        if len(mine) != 1:
            problems.append(f"{len(mine)} sessions")
        missed += bool(problems)
        print(f"{n['kind']:<10} {len(mine):>8}  {truth['odi3']:5.1f} {ref['odi3']:5.1f} {ours['odi3']:5.1f}  "
              f"{truth['odi4']:5.1f} {ref['odi4']:5.1f} {ours['odi4']:5.1f}  {t90_1hz:9.2f} {ours['t90_pct']:9.2f}  "
              f"{truth['nadir']:5.1f} {ref['nadir']:5.1f} {ours['nadir']:5.1f}  {ours['hypoxic_burden']:9.1f}  "
              f"{ours['desat_depth'] or 0:5.1f}  {ours['desat_duration'] or 0:5.1f}  "
              f"{'; '.join(problems) or 'met'}")
    print(f"{len(night_list) - missed} of {len(night_list)} nights meet every target; ODI3 and ODI4 off the truth, "
          f"summed: pobm {off[0]:.1f}/h, ours {off[1]:.1f}/h")
    return len(night_list) - missed, off


if __name__ == "__main__":
    main()
