"""`check`: can we read InfluxDB and write PostgreSQL? Each problem said in words a user can act on."""

from __future__ import annotations

from typing import List, Tuple

import psycopg2
from psycopg2 import sql

from . import archive, late, readside
from .config import Config
from .errors import LoaderError
from .pg import Database, table_exists
from .sources import open_source
from .sources.proof import prove_fields
from .state import State, ensure_schema, set_search_path
from .windows import format_duration, plan_run, rfc3339

Check = Tuple[bool, str]  # (ok, what was found)


def _failed(side: str, exc: LoaderError) -> Check:
    text = str(exc) if str(exc).startswith(side) else f"{side}: {exc}"
    return False, text + (f" ({exc.hint})" if exc.hint else "")


def check_influx(config: Config, now: float) -> Check:
    """(ok, message) for the source: the same proof `run` makes before it loads anything (the
    measurement and every field in FIELDS have data in the last 30 days, or INITIAL_LOOKBACK)."""
    source = open_source(config)
    try:
        fields = prove_fields(config, source, None, now)
    except LoaderError as exc:
        return _failed("InfluxDB", exc)
    finally:
        source.close()
    where = f"{config.influx_url}, bucket {config.bucket}, measurement {config.measurement}"
    return True, f"InfluxDB: {config.language} queries answered ({where}, fields {', '.join(fields)})"


def check_postgres(config: Config) -> Check:
    """(ok, message): connect, create the state tables and the archive table, write a row, roll back."""
    db = Database(config)
    try:
        conn = db.connect()
    except LoaderError as exc:
        return _failed("PostgreSQL", exc)
    try:
        with db.errors():
            cur = conn.cursor()
            ensure_schema(cur, config.pg_schema)
            archive.table(db, config, announce=False).ensure(cur, config.fields)
            cur.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
                db.table, sql.SQL(", ").join(sql.Identifier(c) for c in ("time",) + config.tags),
                sql.SQL(", ").join([sql.SQL("to_timestamp(0)")] + [sql.Literal("")] * len(config.tags))))
    except LoaderError as exc:
        return _failed("PostgreSQL", exc)
    finally:
        try:
            conn.rollback()
        except psycopg2.Error:
            pass
        conn.close()
    return True, f"PostgreSQL: can create and write {db.target} at {config.describe_pg()}"


def check_next_run(config: Config, now: float) -> List[Check]:
    """[(ok, message)] of what the next `run` would read, judged as run judges it, changing nothing: the
    range it loads (readings of several series in an hour with TAGS empty: refused by the same
    late.refuse_merged), then InfluxDB's readings per hour and series over LATE_LOOKBACK against what the
    archive was loaded from: the hours it would load again, and how far back it looks."""
    db = Database(config)
    source = open_source(config)
    lookback = f"LATE_LOOKBACK {format_duration(config.late_lookback)}"
    try:
        conn = db.connect()
        try:
            with db.errors():
                cur = conn.cursor()
                set_search_path(cur, config.pg_schema)
                table = archive.table(db, config, announce=False)
                state = State(config.pg_schema, db.target)
                loaded = table_exists(cur, db.table.as_string(cur)) and table_exists(cur, "influx_archive_state")
                start, end = plan_run(config, state.watermark(cur) if loaded else None, now)
                prove_fields(config, source, start, now)
                late.refuse_merged(late.influx_counts(source.counts, start, end), config.tags)
                why = "from the watermark less LATE_DATA" if loaded else "INITIAL_LOOKBACK: a first load"
                first, _ = readside.span(cur, db)
                held = f"; the archive holds windows from {rfc3339(first)}" if first is not None else ""
                named = sorted(readside.devices(cur, db, config.tags)) if config.tags and first is not None else []
                held += f" of {', '.join(named)}" if named else ""
                reads = (True, f"next run: reads {rfc3339(start)} .. {rfc3339(end)} ({why}){held}")
                bounds = behind = None
                if config.late_lookback and loaded and table_exists(cur, "influx_archive_counts"):
                    bounds = late.span(cur, state, table, now, config.late_lookback)
                if bounds is not None:
                    influx = late.influx_counts(source.counts, *bounds)
                    late.refuse_merged(influx, config.tags)
                    behind = late.compare(influx, state.counts(cur, *bounds))
        finally:
            conn.rollback()
            conn.close()
    except LoaderError as exc:
        return [_failed("next run", exc)]
    finally:
        source.close()
    if not config.late_lookback:
        return [reads, (True, "late data: not compared (LATE_LOOKBACK is 0s): readings that arrive after their "
                              "hour was loaded are never looked for")]
    if bounds is None:
        return [reads, (True, f"late data: nothing loaded yet to compare; each run will look for readings up to "
                              f"{lookback} late")]
    where = (f"{rfc3339(bounds[0])} .. {rfc3339(bounds[1])} ({lookback}: readings that arrive later than that "
             f"after their hour are never looked for)")
    if not behind:
        return [reads, (True, f"late data: InfluxDB and the archive agree on every hour of {where}")]
    return [reads, (True, f"late data: InfluxDB holds readings the archive lacks in {late.describe(behind, now)}; "
                          f"the next run loads them ({lookback})")]
