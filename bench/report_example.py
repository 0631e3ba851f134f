"""docs/night-report.png: the report of a constructed night (tests/support/readings.constructed_night: five
clusters of five 5-point dips, a 20-minute bathroom break, two minutes finger-off), loaded through the
loader into a throwaway PostgreSQL from the Flux stand-in and drawn by `report`, as a Pi would.

  .venv-test/bin/python -m bench.report_example [--out docs/night-report.png]
"""

import argparse
import os

from loader.job import Job
from loader.report import report
from tests.support.flux_standin import StandIn
from tests.support.harness import ORG, TOKEN, FixedClock, make_config
from tests.support.readings import constructed_night, feed_standin
from tests.support.servers import PostgresServer

START = 1_790_000_000 - 1_790_000_000 % 86400 - 2 * 3600  # 22:00 UTC
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "night-report.png"))
    args = parser.parse_args()
    server, standin = PostgresServer(), StandIn(token=TOKEN, org=ORG)
    try:
        feed_standin(standin, constructed_night("1", 5, START))
        config = make_config(server.new_database(), standin.url, TAGS="uid", INITIAL_LOOKBACK="2d")
        now = START + 8 * 3600
        Job(config, clock=FixedClock(now)).run()
        print("\n".join(report(config, now, out=args.out).lines()))
    finally:
        standin.close()
        server.close()


if __name__ == "__main__":
    main()
