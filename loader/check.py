"""`check`: can we read InfluxDB and write PostgreSQL? Each problem said in words a user can act on."""

import psycopg2
from psycopg2 import sql

from . import archive, late
from .errors import LoaderError
from .pg import Database, table_exists
from .sources import open_source
from .sources.proof import prove_fields
from .state import State, ensure_schema, set_search_path
from .windows import format_duration, rfc3339


def _failed(side, exc):
    text = str(exc) if str(exc).startswith(side) else f"{side}: {exc}"
    return False, text + (f" ({exc.hint})" if exc.hint else "")


def check_influx(config, now):
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


def check_postgres(config):
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


def check_late(config, now):
    """(ok, message): InfluxDB's readings per hour and series over LATE_LOOKBACK against what the archive
    was loaded from; the hours behind are what the next run loads. Changes nothing."""
    if not config.late_lookback:
        return True, "late data: not compared (LATE_LOOKBACK is 0s)"
    db = Database(config)
    source = open_source(config)
    try:
        conn = db.connect()
        try:
            with db.errors():
                cur = conn.cursor()
                set_search_path(cur, config.pg_schema)
                if not table_exists(cur, "influx_archive_counts"):
                    return True, "late data: nothing loaded yet to compare"
                state = State(config.pg_schema, db.target)
                bounds = late.span(cur, state, archive.table(db, config), now, config.late_lookback)
                if bounds is None:
                    return True, "late data: nothing loaded yet to compare"
                prove_fields(config, source, bounds[0], now)
                behind = late.compare(late.influx_counts(source.counts, *bounds), state.counts(cur, *bounds))
        finally:
            conn.rollback()
            conn.close()
    except LoaderError as exc:
        return _failed("late data", exc)
    finally:
        source.close()
    where = f"{rfc3339(bounds[0])} .. {rfc3339(bounds[1])} (LATE_LOOKBACK {format_duration(config.late_lookback)})"
    if not behind:
        return True, f"late data: InfluxDB and the archive agree on every hour of {where}"
    return True, (f"late data: InfluxDB holds readings the archive lacks in {late.describe(behind, now)}; "
                  "the next `python -m loader run` loads them")
