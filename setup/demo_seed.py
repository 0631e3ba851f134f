"""Seed a local InfluxDB 1.x with synthetic 1 Hz pulse-oximeter data (install.sh --demo). Stdlib only.

Realistic enough to look at in Grafana: SpO2 around 96-98 % with slow drifts and a few short dips,
pulse 55-110 bpm following a day/night rhythm, a one-hour gap every three days (the sensor off), and
finger-off readings (SpO2 0, pulse 127) now and then. Every value, and the gap, is a function of its
timestamp, so seeding again writes identical points: InfluxDB overwrites them, nothing is duplicated,
and an earlier seed's gap is never filled by a later one (the late-data comparison would load it).

  python3 setup/demo_seed.py --url http://127.0.0.1:8086 --db pulse_oximeter --days 3
"""

from __future__ import annotations

import argparse
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Iterator, List, Tuple


def reading(t: int) -> Tuple[float, float]:
    """(spo2, bpm) at epoch second t (lines() leaves out the gap's)."""
    day = (t % 86400) / 86400
    spo2 = 97.0 + 0.8 * math.sin(t / 911.0) + 0.3 * math.sin(t / 37.0)
    if (t // 3600) % 17 == 3 and (t % 3600) < 240:  # a short desaturation now and then
        spo2 -= 6.0 * math.sin(math.pi * (t % 3600) / 240)
    bpm = 72 + 18 * math.sin(2 * math.pi * (day - 0.3)) + 4 * math.sin(t / 53.0)
    if (t // 600) % 97 == 5:  # finger off: the sensor reports rubbish for ten minutes
        return 0.0, 127.0
    return round(min(spo2, 100.0), 1), round(bpm, 1)


GAP_EVERY, GAP_AT = 72 * 3600, 26 * 3600  # the sensor is off one hour in every 72, at the same hours


def in_gap(t: int) -> bool:
    return GAP_AT <= t % GAP_EVERY < GAP_AT + 3600


def lines(start: int, end: int, gap: bool = True) -> Iterator[str]:
    for t in range(start, end):
        if gap and in_gap(t):
            continue
        spo2, bpm = reading(t)
        yield f"spo2,uid=demo spo2={spo2},bpm={bpm} {t}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8086")
    parser.add_argument("--db", default="pulse_oximeter")
    parser.add_argument("--days", type=float, default=3)
    parser.add_argument("--batch", type=int, default=10000)
    args = parser.parse_args()
    end = int(time.time()) // 60 * 60
    start = end - int(args.days * 86400)
    query = urllib.parse.urlencode({"q": f'CREATE DATABASE "{args.db}"'}).encode()
    urllib.request.urlopen(f"{args.url}/query", data=query, timeout=30).read()
    url = f"{args.url}/write?" + urllib.parse.urlencode({"db": args.db, "precision": "s"})
    batch, written = [], 0
    for line in lines(start, end):
        batch.append(line)
        if len(batch) == args.batch:
            written += _post(url, batch)
            batch = []
    if batch:
        written += _post(url, batch)
    print(f"seeded {written} points ({args.days:g} days at 1 Hz, a one-hour gap every three days, some finger-off "
          f"readings) into {args.db}")


def _post(url: str, batch: List[str]) -> int:
    body = "\n".join(batch).encode()
    for attempt in range(5):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=60):
                return len(batch)
        except (urllib.error.URLError, OSError):
            if attempt == 4:
                raise
            time.sleep(1 + attempt)
    return 0


if __name__ == "__main__":
    main()
