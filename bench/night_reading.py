"""What reading nights from their 1 Hz readings costs the loader's own Python, without any server: the
steps the 1 Hz path adds to a chunk and to a session, timed one by one (process CPU, best of --repeat).

  .venv-test/bin/python -m bench.night_reading [--repeat 3]
  bench/armhf's BENCH=bench.night_reading: the same inside a Debian bookworm armhf root (qemu-user) and here

  parse     a day of the Flux answer's `seconds` tables (SpO2 and pulse, 86,400 lines each) into Batch.seconds
  encode    those seconds (put_second's hour rows) as bytes for <PG_TABLE>_seconds (no PostgreSQL)
  decode    an 8-hour night's rows back into lists, as Sessions.seconds reads them
  read      oximetry.read_night of that night (an apnoea night of bench/device_nights: many troughs)

Per 30 days of readings around the clock: parse, encode and decode 30 times, read 90 times (8 hours each).
"""

import argparse
import time

from bench.device_nights import night
from loader import oximetry
from loader.sources.batch import HOUR_S as HOUR
from loader.sources.batch import NO_READING, Batch
from loader.sources.flux import _seconds

DAY = 86400


def best(repeat, step):
    times = []
    for _ in range(repeat):
        started = time.process_time()
        step()
        times.append(time.process_time() - started)
    return min(times)


def flux_day(readings):
    """A day of the Flux answer's seconds tables as InfluxDB writes them: a row for each second with a reading."""
    header = ["", "result", "table", "_time", "_value", "_field", "uid"]
    lines = []
    for table, (name, column) in enumerate((("spo2", 1), ("bpm", 2))):
        for t, *values in readings:
            value = values[column - 1]
            if value is not None:
                lines.append(f",,{table},{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t))},{value},{name},demo")
    return header, "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each step; the fastest is printed")
    args = parser.parse_args()
    one = night("apnoea", 1, hours=24)
    day = [(t, s if s is not None and 50 <= s <= 100 else None, p if p is not None and 20 <= p <= 250 else None)
           for t, s, p in one["readings"]]
    header, data = flux_day(day)
    batch = Batch(tags=("uid",))

    def parse():
        batch.seconds.clear()
        _seconds(batch, header, data)

    def encode():  # put_second already made the hour rows: what is left is bytes for PostgreSQL
        return {(key, hour): bytes(row) for key, rows in batch.seconds.items() for hour, row in rows.items()}

    parse()
    hours = encode()
    start = day[0][0]

    def decode():
        out = {}
        for (key, hour), readings in hours.items():
            if start <= hour < start + 8 * HOUR:
                out.setdefault(key[1], []).extend(None if v == NO_READING else v for v in readings)
        return out

    spo2 = [s for _, s, _ in day[:8 * HOUR]]
    pulse = [p for _, _, p in day[:8 * HOUR]]
    figures = {"parse": best(args.repeat, parse), "encode": best(args.repeat, encode),
               "decode": best(args.repeat, decode), "read": best(args.repeat, lambda: oximetry.read_night(spo2, pulse))}
    print(f"1 Hz night reading, {time.strftime('%Y-%m-%d')}: process CPU, best of {args.repeat}")
    for name, seconds in figures.items():
        span = 'a day' if name in ('parse', 'encode') else 'an 8-hour night'
        print(f"  {name:<7} {seconds * 1000:8.1f} ms   ({span})")
    month = 30 * (figures["parse"] + figures["encode"] + figures["decode"]) + 90 * figures["read"]
    hourly = figures["parse"] / 24 + figures["encode"] / 24 + figures["decode"] + figures["read"]
    print(f"  30 days around the clock: {month:.2f} s; an hourly run (an hour parsed, the night so far read "
          f"again: at most 8 hours): {hourly * 1000:.0f} ms")


if __name__ == "__main__":
    main()
