"""`check`: can we read InfluxDB and write PostgreSQL? Each problem said in words a user can act on."""

import psycopg2
from psycopg2 import sql

from .errors import LoaderError
from .sink import ArchiveTable, Database
from .sources import open_source
from .state import ensure_schema


def check_influx(config):
    """(ok, message) for the source."""
    source = open_source(config)
    try:
        fields = source.check()
    except LoaderError as exc:
        return False, f"InfluxDB: {exc}" + (f" ({exc.hint})" if exc.hint else "")
    finally:
        source.close()
    where = f"{config.influx_url}, bucket {config.bucket}, measurement {config.measurement}"
    if fields is not None and not fields:
        return False, f"InfluxDB: reachable ({where}) but the measurement has no numeric fields"
    extra = f", fields {', '.join(fields)}" if fields else ""
    return True, f"InfluxDB: {config.language} query accepted ({where}{extra})"


def check_postgres(config):
    """(ok, message): connect, create the state tables and the archive table, write a row, roll back."""
    db = Database(config)
    try:
        conn = db.connect()
    except LoaderError as exc:
        return False, f"PostgreSQL: {exc}" + (f" ({exc.hint})" if exc.hint else "")
    try:
        with db.errors():
            cur = conn.cursor()
            ensure_schema(cur, config.pg_schema)
            ArchiveTable(db, config.tags, announce=False).ensure(cur, config.fields)
            cur.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
                db.table, sql.SQL(", ").join(sql.Identifier(c) for c in ("time",) + config.tags),
                sql.SQL(", ").join([sql.SQL("to_timestamp(0)")] + [sql.Literal("")] * len(config.tags))))
    except LoaderError as exc:
        return False, f"PostgreSQL: {exc}" + (f" ({exc.hint})" if exc.hint else "")
    finally:
        try:
            conn.rollback()
        except psycopg2.Error:
            pass
        conn.close()
    return True, f"PostgreSQL: can create and write {db.target} at {config.describe_pg()}"
