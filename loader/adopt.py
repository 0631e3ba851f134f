"""Adopt a table written by the reference script (pandas to_sql, if_exists="append").

Such a table has no primary key, may hold duplicate windows (every re-run appended again), labels
each window by its end (Flux aggregateWindow's default timeSrc "_stop") and stores naive UTC
timestamps. Adoption, in one transaction: keep the old table as <name>_reference_backup, create the
archive table with its key, copy each window once with its label moved back to the window start,
as timestamptz, and build the rollups of those rows. The watermark is left unset, so the next run
re-reads the whole INITIAL_LOOKBACK and fills the hours the reference script lost while they are
still in InfluxDB.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg2 import sql

from . import archive
from .config import Config
from .errors import SinkRejected
from .pg import PRIMARY_KEY_OF, TABLE_COLUMNS, Database, one, table_exists
from .windows import format_duration

NUMERIC = {"double precision", "real", "bigint", "integer", "smallint", "numeric"}


@dataclass
class Adoption:
    table: str
    backup: str
    rows_before: int = 0
    duplicates: int = 0
    rows_after: int = 0
    shift: int = 0
    fields: tuple = ()
    done: bool = False
    already: bool = False

    def lines(self) -> list:
        if self.already:
            return [f"{self.table} already has the archive's key; nothing to adopt"]
        verb = "adopted" if self.done else "would adopt"
        return [f"{verb} {self.table}: {self.rows_before} rows, {self.duplicates} duplicate window(s) removed, "
                f"{self.rows_after} rows kept, labels moved {format_duration(self.shift)} back to window start, "
                f"fields {', '.join(self.fields)}",
                f"the original rows stay in {self.backup}" if self.done else
                f"the original rows would stay in {self.backup}; run again with --yes to do it"]


def adopt_reference(config: Config, apply: bool) -> Adoption:
    if config.tags:
        raise SinkRejected("adopt-reference works on the reference script's table, which has no tag columns; "
                           "unset TAGS for the adoption")
    db = Database(config)
    conn = db.connect()
    backup_name = f"{config.pg_table}_reference_backup"
    result = Adoption(table=db.target, backup=f"{config.pg_schema}.{backup_name}", shift=config.window)
    try:
        with db.errors():
            cur = conn.cursor()
            qualified = db.table.as_string(cur)
            if not table_exists(cur, qualified):
                raise SinkRejected(f"there is no table {db.target} to adopt (check PG_URL and PG_TABLE)")
            cur.execute(PRIMARY_KEY_OF, {"table": qualified})
            if sorted(r[0] for r in cur.fetchall()) == ["time"]:
                result.already = True
                return result
            cur.execute(TABLE_COLUMNS, {"table": qualified})
            columns = dict(cur.fetchall())
            time_type = columns.pop("time", None)
            if time_type not in ("timestamp without time zone", "timestamp with time zone"):
                raise SinkRejected(f"{db.target} has no timestamp column named time; it is not the reference table")
            result.fields = tuple(n for n, t in columns.items() if t in NUMERIC)
            ignored = sorted(set(columns) - set(result.fields))
            if ignored:
                raise SinkRejected(f"{db.target} has non-numeric column(s) {', '.join(ignored)}; adopt it by hand")
            cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(db.table))
            cur.execute(sql.SQL("SELECT count(*), count(DISTINCT time) FROM {}").format(db.table))
            result.rows_before, distinct = one(cur)
            result.duplicates = result.rows_before - distinct
            result.rows_after = distinct
            if not apply:
                return result
            backup = sql.Identifier(config.pg_schema, backup_name)
            if table_exists(cur, backup.as_string(cur)):
                raise SinkRejected(f"{result.backup} already exists; drop or rename it first")
            cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(db.table, sql.Identifier(backup_name)))
            table = archive.table(db, config, tags=(), checked=False)
            table.ensure(cur, result.fields)
            # naive timestamps from pandas are UTC; the label moves from window end to window start
            as_utc = sql.SQL("time AT TIME ZONE 'UTC'") if time_type == "timestamp without time zone" \
                else sql.SQL("time")
            cols = sql.SQL(", ").join(sql.Identifier(f) for f in result.fields)
            cur.execute(sql.SQL(
                "INSERT INTO {new} (time, {cols}) SELECT DISTINCT ON (start) start, {cols} FROM "
                "(SELECT {as_utc} - make_interval(secs => %(shift)s) AS start, {cols} FROM {old}) AS r "
                "ORDER BY start").format(new=db.table, cols=cols, as_utc=as_utc, old=backup),
                {"shift": config.window})
            result.rows_after = cur.rowcount
            first, end = table.span(cur)
            if first is not None and end is not None:
                archive.rollups(db, config, tags=()).refresh(cur, table.fields, first, end)
            conn.commit()
            result.done = True
            return result
    finally:
        conn.rollback()
        conn.close()
