"""Benchmark the loader against the reference method and against the limit, in one run.

  bench/run                      (installs what it needs, then runs this with the test venv)
  .venv-test/bin/python -m bench.run [--days 30] [--long-days 90] [--repeat 3]

Same data, same servers for every method: a throwaway PostgreSQL, the Flux stand-in from tests/
serving synthetic 1 Hz pulse-oximeter readings (generated per query, responses cached so repeated
runs measure the client, not the stand-in), and a real influxd 1.x for the InfluxQL figures.
Each method runs as its own process under GNU time (wall, user+sys CPU, peak RSS), into a fresh
database (the PostgreSQL server's CPU for it printed beside: ClusterCpu), --repeat times after one
unmeasured warm-up; the medians are printed, then the ratios against its targets. Where the stand-in
computed an answer while a method waited (an uncached query: the hourly runs' ranges move with the
clock), its computing time is printed and the wall ratios use the wall less it: InfluxDB answers from
storage, the stand-in in Python.

Methods
  reference    bench/reference_loader.py: the article's script (query_data_frame, then to_sql)
  loader       python -m loader backfill / run (Flux through the stand-in, InfluxQL through influxd)
  limit        the loader's Flux query for the whole range fetched by curl as plain CSV and loaded
               by psql \\copy: what moving the bytes costs, with no processing at all; "keyed" is the
               same into a table with the archive's primary key (time), which the archive needs
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import psycopg2

from bench import today
from loader import config as config_module
from loader import late
from loader.sources import open_source
from loader.sources.flux import build_query
from loader.windows import rfc3339
from setup.demo_seed import lines as demo_lines
from setup.demo_seed import reading
from tests.support.flux_standin import StandIn, SyntheticStore
from tests.support.servers import InfluxdServer, PostgresServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TOKEN = "bench-token"
ORG = "bench-org"
DAY = 86400
PYTHON = sys.executable
# The reference runs with the packages of its time, as Debian bookworm ships them (see bench/run).
REFERENCE_PYTHON = os.path.join(ROOT, ".venv-bench-ref/bin/python")


def measure(argv, env, cwd=ROOT):
    """Run argv under GNU time; return (wall s, cpu s, peak RSS MB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        proc = subprocess.run(["/usr/bin/time", "-o", out.name, "-f", "%e %U %S %M", *argv], env=env, cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"benchmark step failed: {' '.join(argv[:4])}...\n{proc.stderr[-2000:]}")
        wall, user, system, rss_kb = out.read().split()[-4:]
    return float(wall), float(user) + float(system), int(rss_kb) / 1024


class ClusterCpu:
    """CPU seconds a PostgreSQL cluster spends, to report the server's work beside each method's own: its
    postmaster's and its ended children's (backends, reaped into the postmaster's cutime/cstime), plus its
    living processes'. Read before a method, then after its backends have ended (settled)."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, data_dir):
        with open(os.path.join(data_dir, "postmaster.pid"), encoding="utf-8") as pid_file:
            self.pid = int(pid_file.readline())

    @staticmethod
    def _stat(pid):
        """(ppid, utime + stime, cutime + cstime) in ticks; None when the process is gone."""
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            return None
        return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])

    def children(self):
        found = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = self._stat(int(entry))
                if stat and stat[0] == self.pid:
                    found[int(entry)] = stat[1]
        return found

    def total(self):
        """Seconds so far: the living children's first, then the postmaster's with what it has reaped (a child
        reaped in between would be counted twice; settle() first leaves only the cluster's own processes)."""
        living = sum(self.children().values())
        _, own, reaped = self._stat(self.pid)
        return (living + own + reaped) / self.TICK

    def settle(self, resident, timeout=30.0):
        """Wait until the cluster's children are those in `resident` again (the method's backends reaped)."""
        deadline = time.monotonic() + timeout
        while set(self.children()) - set(resident) and time.monotonic() < deadline:
            time.sleep(0.02)


class Bench:
    def __init__(self, args):
        self.args = args
        self.pg = PostgresServer()
        store = SyntheticStore()
        self.now = int(time.time())
        self.end = self.now - self.now % DAY  # backfills end at today's midnight UTC
        first = self.end - (max(args.days, args.long_days) + 1) * DAY
        for field, index in (("spo2", 0), ("bpm", 1)):
            store.add_series("pulse_oximeter", "spo2", {"uid": "demo"}, field, first, self.now + 3600,
                             lambda t, i=index: reading(t)[i])
        self.standin = StandIn(token=TOKEN, org=ORG, store=store, cache=True)
        self.pg_cpu = ClusterCpu(self.pg.data)
        self.influxd = None
        if not args.skip_influxql:
            self.influxd = InfluxdServer()
            self.influxd.query('CREATE DATABASE "pulse_oximeter"')
            started = time.time()
            batch = []
            for line in demo_lines(self.end - args.days * DAY, self.end, gap=False):
                batch.append(line)
                if len(batch) == 20000:
                    self.influxd.write("pulse_oximeter", batch, batch=20000)
                    batch = []
            if batch:
                self.influxd.write("pulse_oximeter", batch)
            print(f"(influxd seeded with {args.days} days in {time.time() - started:.0f} s)", file=sys.stderr)
        self.results = {}

    def close(self):
        self.standin.close()
        if self.influxd:
            self.influxd.close()
        self.pg.close()

    def database(self):
        name = "b_" + uuid.uuid4().hex[:10]
        conn = psycopg2.connect(self.pg.url())
        conn.autocommit = True
        conn.cursor().execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.pg.url(name)

    def base_env(self):
        return {k: v for k, v in os.environ.items() if not k.startswith(("INFLUX_", "PG_"))} | {
            "PYTHONDONTWRITEBYTECODE": "1"}

    def loader_env(self, pg_url, language="flux"):
        env = self.base_env() | {"PG_URL": pg_url, "REQUIRE_CLOCK_SYNC": "no", "INFLUX_QUERY_LANGUAGE": language}
        if language == "flux":
            env |= {"INFLUX_URL": self.standin.url, "INFLUX_TOKEN": TOKEN, "INFLUX_ORG": ORG}
        else:
            env |= {"INFLUX_URL": self.influxd.url}
        return env

    def run(self, name, prepare):
        """prepare() -> (argv, env) for a fresh database; one warm-up, then --repeat measured runs."""
        if self.args.only and not any(name.startswith(p.strip()) for p in self.args.only.split(",")):
            return
        samples = []
        for attempt in range(self.args.repeat + 1):
            argv, env = prepare()
            busy = self.standin.busy
            resident = self.pg_cpu.children()
            self.pg_cpu.settle(resident)
            server = self.pg_cpu.total()
            wall, cpu, rss = measure(argv, env)
            self.pg_cpu.settle(resident)
            server = self.pg_cpu.total() - server
            if attempt:  # the client's wall: less the time the Flux stand-in spent computing answers it waited for
                samples.append((wall, cpu, rss, wall - (self.standin.busy - busy), server))
        med = tuple(statistics.median(s[i] for s in samples) for i in range(5))
        self.results[name] = med
        cpus = [s[1] for s in samples]
        spread = f"   (cpu {min(cpus):.2f}..{max(cpus):.2f})" if len(samples) > 1 else ""
        standin = f"   (wall less the stand-in's computing {med[3]:.2f} s)" if med[0] - med[3] >= 0.01 else ""
        print(f"  {name:<28} wall {med[0]:7.2f} s   cpu {med[1]:7.2f} s   PostgreSQL cpu {med[4]:6.2f} s   "
              f"peak RSS {med[2]:6.0f} MB{spread}{standin}", flush=True)

    # -- methods
    def reference(self, days):
        def prepare():
            env_file = tempfile.NamedTemporaryFile("w", suffix=".env", delete=False)
            pg = self.database()  # postgresql://, as the article's .env: SQLAlchemy 1.4 maps it to psycopg2
            env_file.write(f"TOKEN={TOKEN}\nORG={ORG}\nCONNECTION={self.standin.url}\nPG_CONNECT={pg}\n")
            env_file.close()
            env = self.base_env() | {"BENCH_ENV": env_file.name}
            if days:
                env |= {"BENCH_START": rfc3339(self.end - days * DAY), "BENCH_STOP": rfc3339(self.end)}
                self.warm_reference(env["BENCH_START"], env["BENCH_STOP"])
            return [REFERENCE_PYTHON, os.path.join(ROOT, "bench/reference_loader.py")], env
        return prepare

    def warm_reference(self, start, stop):
        """The reference's query, character for character as bench/reference_loader.py builds it."""
        query = ('from(bucket: "pulse_oximeter") '
                 "|> range(start: " + start + ", stop: " + stop + ") "
                 '|> filter(fn: (r) => r._measurement == "spo2") '
                 "|> aggregateWindow(every: 5s, fn: mean, createEmpty: false)"
                 '|> drop(columns: ["_start","_stop","_measurement","uid"])'
                 '|> pivot(rowKey:["_time"], columnKey: ["_field"], valueColumn: "_value")')
        if query not in self.standin.cache:
            self.standin.warm(query)

    def backfill(self, days, language="flux"):
        def prepare():
            env = self.loader_env(self.database(), language)
            return [PYTHON, "-m", "loader", "--env-file", os.devnull, "backfill", "--start",
                    rfc3339(self.end - days * DAY), "--end", rfc3339(self.end)], env
        return prepare

    def hourly_run(self, lookback="3h", late_lookback=None):
        """An hourly run on an archive made by a first run of INITIAL_LOOKBACK: with 30d, the steady state
        of a Pi, whose every run also compares InfluxDB's counts of 30 days with the archive's (late.py);
        late_lookback="0s" leaves the comparison out (its cost is the difference)."""
        def prepare():
            env = self.loader_env(self.database()) | {"INITIAL_LOOKBACK": lookback}
            if late_lookback:
                env["LATE_LOOKBACK"] = late_lookback
            subprocess.run([PYTHON, "-m", "loader", "--env-file", os.devnull, "run"], env=env, cwd=ROOT, check=True,
                           capture_output=True)  # the archive is current: the measured run is an hourly one
            conn = psycopg2.connect(env["PG_URL"])
            conn.cursor().execute("UPDATE influx_archive_state SET watermark = watermark - interval '1 hour'")
            conn.commit()
            conn.close()
            return [PYTHON, "-m", "loader", "--env-file", os.devnull, "run"], env
        return prepare

    def comparison_bytes(self, days, language="flux"):
        """Bytes of InfluxDB's answers to the comparison's count requests over `days` (late.influx_counts,
        a week per request), through the loader's own source."""
        env = {"INFLUX_QUERY_LANGUAGE": language, "PG_URL": self.pg.url(), "FIELDS": "spo2,bpm"}
        if language == "flux":
            env |= {"INFLUX_URL": self.standin.url, "INFLUX_TOKEN": TOKEN, "INFLUX_ORG": ORG}
        else:
            env |= {"INFLUX_URL": self.influxd.url, "INFLUX_BUCKET": "pulse_oximeter"}
        source = open_source(config_module.load(None, environ=env))
        seen = []
        request = source._http.request

        def counting(*args, **kwargs):
            response = request(*args, **kwargs)
            seen.append(len(response.data))
            return response
        source._http.request = counting
        try:
            late.influx_counts(source.counts, self.end - days * DAY, self.end)
        finally:
            source.close()
        return sum(seen), len(seen)

    def limit(self, days, keyed=False):
        # the means alone, as the reference asks them: no range filter, no table of refused counts and no
        # reading counts (SESSION_SPO2=none)
        cfg = config_module.load(None, environ={"INFLUX_URL": self.standin.url, "INFLUX_TOKEN": TOKEN,
                                                "INFLUX_ORG": ORG, "PG_URL": self.pg.url(), "VALID_RANGES": "none",
                                                "SESSION_SPO2": "none"})
        body = json.dumps({"query": build_query(cfg, self.end - days * DAY, self.end), "type": "flux",
                           "dialect": {"header": True, "annotations": [], "delimiter": ","}})
        if json.loads(body)["query"] not in self.standin.cache:
            self.standin.warm(json.loads(body)["query"], annotations=False)
        query_file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        query_file.write(body)
        query_file.close()

        def prepare():
            pg = self.database()
            conn = psycopg2.connect(pg)
            conn.cursor().execute("CREATE TABLE stage (blank text, result text, tbl int, time timestamptz, "
                                  "bpm double precision, spo2 double precision"
                                  + (", PRIMARY KEY (time))" if keyed else ")"))
            conn.commit()
            conn.close()
            pipeline = (f"curl -sf -X POST '{self.standin.url}/api/v2/query?org={ORG}' "
                        f"-H 'Authorization: Token {TOKEN}' -H 'Content-Type: application/json' "
                        f"--data-binary @{query_file.name} "
                        f"| grep -v '^$' | psql -q '{pg}' -c '\\copy stage FROM STDIN WITH (FORMAT csv, HEADER)'")
            return ["sh", "-c", pipeline], self.base_env()
        return prepare


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="the long backfill (default 30 days)")
    parser.add_argument("--long-days", type=int, default=90, help="the memory-flatness backfill (default 90)")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per method (default 3)")
    parser.add_argument("--skip-influxql", action="store_true", help="no influxd figures")
    parser.add_argument("--only", default="", help="comma-separated name prefixes of the methods to run "
                                                   "(for working on one; the ratios need them all)")
    parser.add_argument("--markdown", action="store_true",
                        help="also rewrite this benchmark's table under 'Today' in docs/benchmarks.md")
    args = parser.parse_args()
    bench = Bench(args)
    d, ld = args.days, args.long_days
    try:
        print(f"influx-archive benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
              f"Python {sys.version.split()[0]}; medians of {args.repeat} runs after a warm-up")
        bench.run(f"reference {d}d", bench.reference(d))
        bench.run(f"loader flux backfill {d}d", bench.backfill(d))
        bench.run(f"limit curl|psql {d}d", bench.limit(d))
        bench.run(f"limit curl|psql keyed {d}d", bench.limit(d, keyed=True))
        bench.run(f"loader flux backfill {ld}d", bench.backfill(ld))
        if not args.skip_influxql:
            bench.run(f"loader influxql backfill {d}d", bench.backfill(d, "influxql"))
        bench.run("reference 1h", bench.reference(0))
        bench.run("loader run (hourly)", bench.hourly_run())
        bench.run("loader run (hourly, 30d)", bench.hourly_run("30d"))
        bench.run("loader run (hourly, 30d, LATE_LOOKBACK=0s)", bench.hourly_run("30d", "0s"))
        comparison = {"flux": bench.comparison_bytes(d)}
        if not args.skip_influxql:
            comparison["influxql"] = bench.comparison_bytes(d, "influxql")
    finally:
        bench.close()
    r = bench.results
    if "loader run (hourly, 30d)" in r and "loader run (hourly, 30d, LATE_LOOKBACK=0s)" in r:
        with_it, without = r["loader run (hourly, 30d)"], r["loader run (hourly, 30d, LATE_LOOKBACK=0s)"]
        print(f"\nthe late-data comparison of {d} days, per hourly run, per day compared:")
        wall, cpu = (with_it[3] - without[3]) / d * 1000, (with_it[1] - without[1]) / d * 1000
        print(f"  wall {wall:6.1f} ms   cpu {cpu:6.1f} ms   (the difference between the two hourly runs on a "
              f"{d}-day archive, / {d})")
        for language, (size, requests) in comparison.items():
            print(f"  {language:<9} {size / d / 1024:6.1f} kB asked of InfluxDB per day ({size / 1024:.0f} kB in "
                  f"{requests} request(s); the free plan allows 300 MB per 5 minutes)")
    if args.only:
        return
    checks = [
        (f"{d}-day Flux backfill CPU vs reference", r[f"loader flux backfill {d}d"][1] / r[f"reference {d}d"][1],
         0.06),  # with sessions and rollups (#19, #20)
        (f"{d}-day backfill wall vs limit", r[f"loader flux backfill {d}d"][0] / r[f"limit curl|psql {d}d"][0], 1.3),
        (f"{d}-day backfill peak RSS (MB)", r[f"loader flux backfill {d}d"][2], 120),
        (f"{ld}-day vs {d}-day peak RSS",
         r[f"loader flux backfill {ld}d"][2] / r[f"loader flux backfill {d}d"][2], 1.1),
        # the client's wall (index 3): the stand-in computes answers in Python, InfluxDB does not
        ("hourly run wall vs reference 1h", r["loader run (hourly)"][3] / r["reference 1h"][3], 1.0),
        ("hourly run on a 30-day archive, wall", r["loader run (hourly, 30d)"][3] / r["reference 1h"][3], 1.0),
        ("hourly run peak RSS vs reference 1h", r["loader run (hourly)"][2] / r["reference 1h"][2], 1.0),
    ]
    # information beside the targets (which rate the loader's process alone): the PostgreSQL server's CPU
    # for the same work, the archive's rollups, sessions' reads and keys included, and the reference's inserts
    flux, reference = r[f"loader flux backfill {d}d"], r[f"reference {d}d"]
    both = (flux[1] + flux[4]) / (reference[1] + reference[4])
    print(f"\n{d}-day Flux backfill with PostgreSQL's CPU: loader {flux[1]:.2f} + server {flux[4]:.2f} s against the "
          f"reference's {reference[1]:.2f} + {reference[4]:.2f} s: {both:.3f}x")
    if f"loader influxql backfill {d}d" in r:
        checks.insert(1, (f"{d}-day InfluxQL backfill CPU vs reference",
                          r[f"loader influxql backfill {d}d"][1] / r[f"reference {d}d"][1], 0.1))
    print("\nratios (target):")
    for label, value, target in checks:
        print(f"  {label:<40} {value:8.3f}  (<= {target:g})  {'met' if value <= target else 'MISSED'}")
    keyed = r[f"loader flux backfill {d}d"][0] / r[f"limit curl|psql keyed {d}d"][0]
    print(f"  {d}-day backfill wall vs the limit into a table with the archive's primary key: {keyed:.2f}x "
          "(information, not a target)")
    reference, loader = r[f"reference {d}d"], r[f"loader flux backfill {d}d"]
    print(f"  {'reference ' + str(d) + 'd / loader CPU':<40} {reference[1] / loader[1]:8.1f}x")
    print(f"  {'reference ' + str(d) + 'd / loader peak RSS':<40} {reference[2] / loader[2]:8.1f}x")
    if args.markdown:
        today.write("bench/run", markdown(r, checks, d, args.repeat))


def markdown(r, checks, d, repeat):
    """The Today table: each ratio against its target, then the figures they are made of."""
    rows = [(label, f"{value:.0f}" if "(MB)" in label else f"{value:.3f}", f"≤ {target:g}",
             "met" if value <= target else "**missed**")
            for label, value, target in checks]
    for name in (f"reference {d}d", f"loader flux backfill {d}d", f"loader influxql backfill {d}d", "reference 1h",
                 "loader run (hourly)", "loader run (hourly, 30d)"):
        if name in r:
            wall, cpu, rss, _, server = r[name]
            rows.append((name, f"wall {wall:.2f} s, CPU {cpu:.2f} s (PostgreSQL {server:.2f} s), peak RSS {rss:.0f} MB",
                         "", "information"))
    keyed = r[f"loader flux backfill {d}d"][0] / r[f"limit curl|psql keyed {d}d"][0]
    rows.append((f"{d}-day backfill wall vs the limit with the archive's primary key", f"{keyed:.2f}", "",
                 "information"))
    return today.table(f"`bench/run`: {d}-day backfill and the hourly run against the reference",
                       ("measure", "figure", "target", ""), rows,
                       f"Medians of {repeat} runs after a warm-up, {os.cpu_count()} cores, Python "
                       f"{sys.version.split()[0]}; every ratio against the reference in the same run.")


if __name__ == "__main__":
    main()
