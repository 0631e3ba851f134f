"""Fixtures: real PostgreSQL and influxd servers (one each per test session), a Flux stand-in per
test, a fresh database per test, and helpers to make data and configs."""

import os
import subprocess
import sys
import uuid

import psycopg2
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from flux_standin import Point, StandIn  # noqa: E402
from servers import InfluxdServer, LoopDrive, PostgresServer  # noqa: E402

from loader import config as config_module  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "test-token-5f1c9e"
ORG = "test-org"
BUCKET = "pulse_oximeter"


def _server_or_fail(cls):
    try:
        return cls()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            raise  # CI installs every server: a missing one is a failure, not a skip
        pytest.skip(f"{cls.__name__} unavailable here: {exc}")


@pytest.fixture(scope="session")
def pg_server():
    server = _server_or_fail(PostgresServer)
    yield server
    server.close()


@pytest.fixture
def pg_url(pg_server):
    """A fresh database per test on the session's cluster."""
    name = "t_" + uuid.uuid4().hex[:12]
    conn = psycopg2.connect(pg_server.url())
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    conn.close()
    yield pg_server.url(name)


@pytest.fixture(scope="session")
def influxd():
    server = _server_or_fail(InfluxdServer)
    yield server
    server.close()


@pytest.fixture
def influx_db(influxd):
    name = "db_" + uuid.uuid4().hex[:10]
    influxd.query(f'CREATE DATABASE "{name}"')
    return name


@pytest.fixture(scope="session")
def usb_drive():
    """A mounted ext4 drive (a loop device) for BACKUP_DIR: not the root filesystem, not memory."""
    drive = _server_or_fail(LoopDrive)
    yield drive.path
    drive.close()


@pytest.fixture
def standin():
    server = StandIn(token=TOKEN, org=ORG)
    yield server
    server.close()


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


def pulse_points(start, seconds, uids=("a",), gap=None, finger_off_every=0):
    """Synthetic 1 Hz readings as (measurement, tags, field, epoch seconds, value).

    Values are multiples of 0.25 so every sum is exact in binary floating point: means computed
    by InfluxDB, the stand-in and the test agree to the last bit.
    """
    out = []
    for uid_index, uid in enumerate(uids):
        for t in range(start, start + seconds):
            if gap and gap[0] <= t < gap[1]:
                continue
            k = t + 13 * uid_index
            spo2 = 94 + (k * 7 % 23) * 0.25
            bpm = 58 + (k * 11 % 61) * 0.5
            if finger_off_every and t % finger_off_every == 0:
                spo2, bpm = 0.0, 127.0
            out.append(("spo2", {"uid": uid}, "spo2", t, spo2))
            out.append(("spo2", {"uid": uid}, "bpm", t, bpm))
    return out


def feed_standin(standin, points, bucket=BUCKET):
    standin.store.add(bucket, [Point(m, tags, f, t * 10**9, v) for m, tags, f, t, v in points])


def line_protocol(points):
    """Line protocol, one line per (measurement, tags, time) with all its fields."""
    rows = {}
    for m, tags, f, t, v in points:
        key = (m, tuple(sorted(tags.items())), t)
        rows.setdefault(key, []).append((f, v))
    lines = []
    for (m, tags, t), fields in rows.items():
        tag_text = "".join(f",{_lp_escape(k, ',= ')}={_lp_escape(v, ',= ')}" for k, v in tags)
        field_text = ",".join(f"{_lp_escape(f, ',= ')}={float(v)!r}" for f, v in fields)
        lines.append(f"{_lp_escape(m, ', ')}{tag_text} {field_text} {t}")
    return lines


def _lp_escape(text, special):
    """Line-protocol escaping: a backslash before each special character."""
    for ch in special:
        text = text.replace(ch, "\\" + ch)
    return text


def feed_influxd(influxd, db, points):
    influxd.write(db, line_protocol(points))


def expected_means(points, window=5, tags=(), valid_ranges=None, start=None, end=None):
    """Window means computed here, independently of any database: {(window_start, *tags): {field: mean}}."""
    sums = {}
    for m, ptags, f, t, v in points:
        if start is not None and not (start <= t < end):
            continue
        if valid_ranges and f in valid_ranges and not (valid_ranges[f][0] <= v <= valid_ranges[f][1]):
            continue
        key = (t - t % window, *(ptags.get(tag, "") for tag in tags))
        acc = sums.setdefault(key, {}).setdefault(f, [0.0, 0])
        acc[0] += v
        acc[1] += 1
    return {k: {f: s / n for f, (s, n) in fields.items()} for k, fields in sums.items()}


def archive_rows(pg_url, table="pox_five_second_mean", schema="public"):
    """{(epoch window start, *tags): {field: value}} read back from PostgreSQL."""
    from psycopg2 import sql
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        name = sql.Identifier(schema, table)
        qualified = name.as_string(conn)
        cur.execute("SELECT to_regclass(%s)", (qualified,))
        if cur.fetchone()[0] is None:
            return {}
        cur.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                    "AND NOT attisdropped ORDER BY attnum", (qualified,))
        cols = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                    "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary", (qualified,))
        key_names = {r[0] for r in cur.fetchall()}
        key = [c for c in cols if c in key_names]
        fields = [c for c in cols if c not in key]
        selected = [sql.SQL("extract(epoch FROM time)::bigint")] + [sql.Identifier(c) for c in key[1:] + fields]
        cur.execute(sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(selected), name))
        out = {}
        for row in cur.fetchall():
            k = (row[0], *row[1:len(key)])
            out[k] = {f: v for f, v in zip(fields, row[len(key):]) if v is not None}
        return out
    finally:
        conn.close()


def count_rows(pg_url, table="pox_five_second_mean"):
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        cur.execute(f'SELECT count(*), count(DISTINCT time) FROM "{table}"')
        return cur.fetchone()
    finally:
        conn.close()


def first_loaded(pg_url):
    """Where the first run's range began (epoch seconds): a run floors its own clock, which may have
    crossed a window boundary since the test computed its times."""
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT extract(epoch FROM min(range_start))::bigint FROM influx_archive_runs")
        return cur.fetchone()[0]
    finally:
        conn.close()


def watermark(pg_url, table="public.pox_five_second_mean"):
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT extract(epoch FROM watermark)::bigint FROM influx_archive_state WHERE target = %s",
                    (table,))
        row = cur.fetchone()
        return row[0] if row else None
    finally:
        conn.close()
