"""How a test drives the loader: a fixed clock, the CLI as a process, a config or a cron environment
pointing at the test's servers, and a few hours loaded."""

import os
import subprocess
import sys
import time

from loader import config as config_module
from loader.job import Job
from tests.support.readings import BUCKET, feed_standin, pulse_points

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN = "test-token-5f1c9e"
ORG = "test-org"
HOUR, DAY = 3600, 86400


class FixedClock:
    """An injectable clock: the test sets now and whether NTP is synchronised."""

    def __init__(self, now, synchronized=True):
        self.value = now
        self.sync = synchronized

    def now(self):
        return self.value

    def synchronized(self):
        return self.sync


def cli(*args, env=None, timeout=120):
    if "--env-file" not in args:  # never the checkout's own .env (install.sh may have written one)
        args = ("--env-file", os.devnull) + args
    return subprocess.run([sys.executable, "-m", "loader", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def flux_env(pg_url, standin, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUX_", "PG_", "BACKUP_", "HEALTHCHECK_"))}
    env.update(INFLUX_URL=standin.url, INFLUX_TOKEN=TOKEN, INFLUX_ORG=ORG, PG_URL=pg_url,
               REQUIRE_CLOCK_SYNC="no")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def make_config(pg_url, source_url, language="flux", bucket=BUCKET, **extra):
    env = {"INFLUX_URL": source_url, "INFLUX_QUERY_LANGUAGE": language, "INFLUX_BUCKET": bucket,
           "PG_URL": pg_url, "REQUIRE_CLOCK_SYNC": "auto"}
    if language == "flux":
        env.update(INFLUX_TOKEN=TOKEN, INFLUX_ORG=ORG)
    env.update({k: str(v) for k, v in extra.items()})
    return config_module.load(env_file=None, environ=env)


def load(config, standin, now, hours=6, step=1):
    """Feed `hours` of two devices' readings ending at `now` to the stand-in (step: pulse_points') and run
    the job once."""
    feed_standin(standin, pulse_points(now - hours * HOUR, hours * HOUR, uids=("a", "b"), step=step))
    outcome = Job(config, clock=FixedClock(now)).run()
    assert outcome.rows > 0


def now():
    """The real clock, whole seconds: for tests that run the CLI, which reads the system clock."""
    return int(time.time())
