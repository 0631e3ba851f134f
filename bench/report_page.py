"""What one night's report costs (loader/report.py's page, drawn by matplotlib), without any server: an
8-hour apnoea night of bench/device_nights read as the report reads it, then drawn to an A4 PDF and to a
PNG. Wall and process CPU of each, matplotlib's import included in the first (a cron run pays it once), and
the process's peak RSS. The hourly run without REPORT_DIR never imports matplotlib (printed too).

  .venv-test/bin/python -m bench.report_page
  bench/armhf's BENCH=bench.report_page: the same inside the Debian bookworm armhf root (qemu-user; it needs
  python3-matplotlib there: ARMHF_PACKAGES=python3-matplotlib) and here
"""

import datetime
import os
import resource
import sys
import tempfile
import time

from bench.device_nights import night
from loader import oximetry
from loader.report import Night, render


def timed(step):
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    return time.perf_counter() - wall, time.process_time() - cpu


def main():
    made = night("apnoea", 1, hours=8)
    readings = made["readings"]
    start = readings[0][0]
    spo2 = [s if s is not None and 50 <= s <= 100 else None for _, s, _ in readings]
    pulse = [p if p is not None and 20 <= p <= 250 else None for _, _, p in readings]
    reading = oximetry.read_night(spo2, pulse)
    row = {"ended": datetime.datetime.fromtimestamp(start + len(spo2), datetime.timezone.utc),
           "recorded_s": reading.recorded_s, "odi4": 3600 * len(reading.events[4]) / max(1, reading.recorded_s),
           "odi3": 3600 * len(reading.events[3]) / max(1, reading.recorded_s), "t90_pct": 100 * reading.below["t90_s"] /
           max(1, reading.recorded_s), "t88_pct": 100 * reading.below["t88_s"] / max(1, reading.recorded_s),
           "nadir": reading.nadir, "hypoxic_burden": 10.0, "spo2_mean": 94.0, "desat_depth": 5.0,
           "artefacts": reading.artefacts, "pulse_mean": 60.0, "pulse_min": 50.0, "pulse_max": 90.0}
    page = Night(("demo",), "uid=demo", start, row, list(range(start, start + len(spo2))), spo2, pulse, 1,
                 [(start + e.start, start + e.end, e.depth) for e in reading.events[3]],
                 [(start + a, start + b) for a, b in reading.refused])
    before = "matplotlib" in sys.modules
    with tempfile.TemporaryDirectory() as out:
        pdf = timed(lambda: render([page], os.path.join(out, "night.pdf"), "adult"))
        again = timed(lambda: render([page], os.path.join(out, "night2.pdf"), "adult"))
        png = timed(lambda: render([page], os.path.join(out, "night.png"), "adult"))
        size = os.path.getsize(os.path.join(out, "night.pdf"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"a night's report, {time.strftime('%Y-%m-%d')}: wall / process CPU")
    print(f"  first PDF (matplotlib imported)  {pdf[0]:6.2f} s / {pdf[1]:6.2f} s   ({size / 1024:.0f} kB)")
    print(f"  next PDF                         {again[0]:6.2f} s / {again[1]:6.2f} s")
    print(f"  PNG                              {png[0]:6.2f} s / {png[1]:6.2f} s")
    print(f"  peak RSS {rss:.0f} MB; matplotlib loaded before the first report: {before}")


if __name__ == "__main__":
    main()
