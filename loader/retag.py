"""`add-tags`: a one-device archive (TAGS empty, key `time`) keyed by TAGS in place, for a second oximeter.

Every hour the loader read, it kept how many readings of which series InfluxDB held (state's
influx_archive_counts, series as 'uid=a'); with TAGS empty a chunk holding two series was refused, so
each loaded hour names the one device its rows came from. That is the tag value each row is given: no
InfluxDB query is needed, and rows older than InfluxDB's retention get theirs too. Rows of hours loaded
before the counts were kept (an old or adopted archive) take the only device the counts name, or the one
given with --device.

In one transaction, under the run lock: the tables holding what was read (the archive table, its
_readings and _seconds) gain the tag columns, filled hour by hour, and their keys grow to include them;
the rollups and sessions, computed from those, are dropped and computed again per device. The table
keeps its name, every row, the watermark and the counts: the next run loads the other device's readings
InfluxDB still holds (late.py sees them as never loaded, LATE_LOOKBACK back).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from psycopg2 import sql

from . import archive
from .config import Config
from .errors import LoaderError, SinkRejected
from .invocation import command
from .pg import PRIMARY_KEY_OF, Cursor, Database, one, table_exists
from .rollups import LEVELS
from .sources.batch import series_tags
from .state import State, set_search_path

SERIES_OF_HOURS = """
SELECT extract(epoch FROM hour)::bigint, array_agg(DISTINCT series ORDER BY series)
FROM influx_archive_counts WHERE target = %(target)s AND readings > 0 GROUP BY hour ORDER BY hour
"""


@dataclass
class Retagging:
    table: str
    tags: tuple
    done: bool = False
    already: bool = False
    rows: dict = field(default_factory=dict)  # device ('uid=a') -> rows given it
    unlabelled: int = 0  # rows of hours the counts say nothing of (given the fallback device)
    fallback: str = ""
    seconds: float = 0.0

    def lines(self) -> List[str]:
        if self.already:
            return [f"{self.table} is already keyed by {', '.join(self.tags)}; nothing to do"]
        total = sum(self.rows.values())
        devices = "; ".join(f"{device}: {rows:,}" for device, rows in sorted(self.rows.items()))
        verb = "keyed" if self.done else "would key"
        out = [f"{verb} {self.table} by {', '.join(self.tags)} in place: {total:,} rows, each given the device "
               f"InfluxDB held for its hour ({devices})"]
        if self.unlabelled:
            out.append(f"{self.unlabelled:,} rows of hours loaded before devices were counted: {self.fallback}")
        if self.done:
            out += [f"rollups and sessions computed again per device ({self.seconds:.1f}s); the table keeps its "
                    f"name, rows and watermark",
                    f"next: `{command('run')}` loads the other device's readings InfluxDB still holds "
                    f"(LATE_LOOKBACK back)"]
        else:
            out.append(f"nothing changed yet: run `{command('add-tags --yes')}` to do it (one transaction; "
                       f"the hourly run waits)")
        return out


def parse_series(series: str, tags: Sequence[str]) -> Tuple[str, ...]:
    """'uid=a,zone=x' -> the values of tags, '' for a tag it lacks (as the loader stores an absent tag)."""
    pairs = series_tags(series)
    return tuple(pairs.get(t, "") for t in tags)


def add_tags(config: Config, apply: bool, device: Optional[str] = None) -> Retagging:
    """Key PG_TABLE by TAGS in place (apply) or say what that would do. device: 'uid=a', the device of rows
    whose hour no count names."""
    if not config.tags:
        raise SinkRejected("add-tags keys the archive by TAGS, and TAGS is empty",
                           hint="set TAGS to the tag that names each device (TAGS=uid) in .env, then run it again")
    db = Database(config)
    result = Retagging(table=db.target, tags=config.tags)
    conn = db.connect()
    state = State(config.pg_schema, db.target)
    locked = False
    try:
        with db.errors():
            cur = conn.cursor()
            set_search_path(cur, config.pg_schema)
            qualified = db.table.as_string(cur)
            if not table_exists(cur, qualified):
                raise SinkRejected(f"there is no table {db.target} to key by {', '.join(config.tags)} "
                                   f"(check PG_TABLE); a new table is made keyed by TAGS on the first run")
            cur.execute(PRIMARY_KEY_OF, {"table": qualified})
            key = sorted(r[0] for r in cur.fetchall())
            if key == sorted(("time", *config.tags)):
                result.already = True
                return result
            if key != ["time"]:
                raise SinkRejected(f"{db.target} is keyed by ({', '.join(key) or 'nothing'}); add-tags keys a "
                                   f"one-device archive (key time) by TAGS",
                                   hint="set TAGS to the table's tags (or empty) and PG_TABLE to a new name for "
                                        "another key")
            if apply:
                if not state.try_lock(cur):
                    raise LoaderError("a run, backfill or rebuild is working on this archive; try again when it "
                                      "has finished")
                locked = True
            cur.execute("SET LOCAL TimeZone = 'UTC'")  # date_trunc('hour', ...) on UTC hours, as the counts
            hours = _hours(cur, state)
            fallback = _fallback(hours, config.tags, device)
            _fill_mapping(cur, hours, config.tags)
            result.unlabelled, result.rows = _count(cur, db, config.tags, fallback)
            if result.unlabelled and fallback is None:
                named = sorted({s for s in hours.values()})
                raise SinkRejected(
                    f"{result.unlabelled:,} rows of {db.target} are in hours no count names a device for (loaded "
                    f"before devices were counted), and the counts name {len(named)} devices "
                    f"({', '.join(named[:5]) or 'none'}): which one are they?",
                    hint=f"give it: {command('add-tags --device ' + config.tags[0] + '=VALUE')}")
            if result.unlabelled:
                result.fallback = f"given {_series(config.tags, fallback or ())}" + (
                    " (--device)" if device else " (the only device the counts name)")
                label = _series(config.tags, fallback or ())
                result.rows[label] = result.rows.get(label, 0) + result.unlabelled
            if not apply:
                return result
            started = time.monotonic()
            _retag(cur, db, config, fallback or ("",) * len(config.tags))
            conn.commit()
            result.done = True
            result.seconds = time.monotonic() - started
            return result
    finally:
        if not conn.closed:
            conn.rollback()
            if locked:
                state.unlock(conn.cursor())
                conn.commit()
        conn.close()


def _series(tags: Sequence[str], values: Sequence[str]) -> str:
    return ",".join(f"{t}={v}" for t, v in zip(tags, values) if v) or "(no tags)"


def _hours(cur: Cursor, state: State) -> Dict[int, str]:
    """{hour: series} of every hour the loader read, from its counts; an hour naming two series (never
    loaded with TAGS empty: refused) is refused here too."""
    if not table_exists(cur, "influx_archive_counts"):
        return {}
    cur.execute(SERIES_OF_HOURS, {"target": state.target})
    hours = {}
    for hour, series in cur.fetchall():
        if len(series) > 1:
            raise SinkRejected(f"the counts name {len(series)} devices in one loaded hour ({', '.join(series)}); "
                               "its rows cannot be given one", hint="report it: this archive's counts are not ours")
        hours[hour] = series[0]
    return hours


def _fallback(hours: Dict[int, str], tags: Sequence[str], device: Optional[str]) -> Optional[Tuple[str, ...]]:
    if device:
        if not series_tags(device) or set(series_tags(device)) - set(tags):
            raise SinkRejected(f"--device {device}: give it as TAG=VALUE with TAGS' tags ({', '.join(tags)})")
        return parse_series(device, tags)
    named = set(hours.values())
    return parse_series(named.pop(), tags) if len(named) == 1 else None


def _fill_mapping(cur: Cursor, hours: Dict[int, str], tags: Sequence[str]) -> None:
    columns = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(t)) for t in tags)
    cur.execute(sql.SQL("CREATE TEMP TABLE ia_device_hours (hour timestamptz PRIMARY KEY, {}) ON COMMIT DROP")
                .format(columns))
    rows = [(hour, *parse_series(series, tags)) for hour, series in hours.items()]
    if rows:
        template = "(to_timestamp(%s), " + ", ".join(["%s"] * len(tags)) + ")"
        args = b",".join(cur.mogrify(template, row) for row in rows).decode()
        cur.execute("INSERT INTO ia_device_hours VALUES " + args)


def _count(cur: Cursor, db: Database, tags: Sequence[str],
           fallback: Optional[Tuple[str, ...]]) -> Tuple[int, Dict[str, int]]:
    """(rows in hours no count names, {device: rows}) of the archive table."""
    names = sql.SQL(", ").join(sql.SQL("m.{}").format(sql.Identifier(t)) for t in tags)
    cur.execute(sql.SQL("SELECT {names}, count(*) FROM {table} a LEFT JOIN ia_device_hours m "
                        "ON m.hour = date_trunc('hour', a.time) GROUP BY {names}").format(names=names, table=db.table))
    rows, unlabelled = {}, 0
    for *values, count in cur.fetchall():
        if values[0] is None:
            unlabelled += count
        else:
            rows[_series(tags, values)] = count
    return unlabelled, rows


def _retag(cur: Cursor, db: Database, config: Config, fallback: Tuple[str, ...]) -> None:
    tags = config.tags
    for table, hour in ((db.table, sql.SQL("date_trunc('hour', t.time)")),
                        (db.companion("readings"), sql.SQL("date_trunc('hour', t.time)")),
                        (db.companion("seconds"), sql.SQL("t.hour"))):
        if not table_exists(cur, table.as_string(cur)):
            continue
        cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
        for name, value in zip(tags, fallback):
            cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} text NOT NULL DEFAULT {}").format(
                table, sql.Identifier(name), sql.Literal(value)))
            cur.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT").format(table, sql.Identifier(name)))
        cur.execute(sql.SQL("UPDATE {table} t SET {sets} FROM ia_device_hours m WHERE m.hour = {hour}").format(
            table=table, hour=hour, sets=sql.SQL(", ").join(
                sql.SQL("{c} = m.{c}").format(c=sql.Identifier(t)) for t in tags)))
        cur.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
                    (table.as_string(cur),))
        (constraint,) = one(cur)
        key = ("time", *tags) if table != db.companion("seconds") else (*tags, "field", "hour")
        cur.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}, ADD PRIMARY KEY ({})").format(
            table, sql.Identifier(constraint), sql.SQL(", ").join(sql.Identifier(c) for c in key)))
    for suffix in [suffix for suffix, _ in LEVELS] + ["sessions"]:  # computed from the tables above: again
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(db.companion(suffix)))
    archived = archive.table(db, config)
    archived.ensure(cur, ())
    first, end = archived.span(cur)
    rollups, sessions = archive.rollups(db, config), archive.sessions(db, config)
    rollups.ensure(cur, archived.fields)
    sessions.ensure(cur, archived.fields)
    if first is not None and end is not None:
        rollups.refresh(cur, archived.fields, first, end)
        sessions.refresh(cur, archived.fields, first, end)
