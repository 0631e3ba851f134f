"""Rollups: 1-minute, 1-hour and 1-day tables kept exactly current by the loader itself.

What TimescaleDB's continuous aggregates do, in plain PostgreSQL (TimescaleDB is not packaged for
a 32-bit Pi). Tables <PG_TABLE>_1m, <PG_TABLE>_1h, <PG_TABLE>_1d: bucket start `time`, the key
tags, `windows` (5-second rows behind the bucket), and per field <f>_mean, <f>_min, <f>_max,
<f>_n (5-second windows with a value) and, for fields named in ROLLUP_BELOW, <f>_below (windows whose
mean is below the threshold); counts are 0, never NULL, in buckets from before their field appeared.
Each level is computed from the one below it with the mean weighted by <f>_n, so a rollup of a rollup
equals the rollup of the 5-second rows.

What the counts mean is written beside them, for the dashboard to read and label: the comment on
`windows` is the window in seconds (WINDOW), the comment on <f>_below its threshold. A ROLLUP_BELOW
or WINDOW that no longer matches them makes the loader recount every bucket from the 5-second rows
in the same transaction (no NULL, no count of an old threshold), and a field dropped from
ROLLUP_BELOW loses its column; columns an older version named <f>_below_<x> are dropped.

`refresh` recomputes exactly the buckets a written range touched, inside the caller's transaction:
a rollup is never ahead of or behind the rows it summarises.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple

from psycopg2 import sql

from .pg import Cursor, Database, archive_span
from .windows import ceil_to, floor_to

log = logging.getLogger(__name__)

LEVELS = (("1m", 60), ("1h", 3600), ("1d", 86400))


COMMENTS = """
SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a
WHERE a.attrelid = to_regclass(%(table)s) AND a.attnum > 0 AND NOT a.attisdropped
"""
NULLABLE = """
SELECT a.attname FROM pg_attribute a
WHERE a.attrelid = to_regclass(%(table)s) AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attnotnull
"""
COUNT = "integer NOT NULL DEFAULT 0"  # a count column: a bucket from before its field appeared counts 0, not NULL


def below_column(field: str) -> str:
    return f"{field}_below"


def number_text(value: float) -> str:
    """A threshold or window as the comment holds it: 90, 88.5."""
    return f"{float(value):g}"


class Rollups:
    def __init__(self, db: Database, tags: Sequence[str], below: Optional[Dict[str, float]] = None,
                 window: int = 5) -> None:
        self.db = db
        self.tags = tuple(tags)
        self.below = dict(below or {})  # field -> threshold
        self.window = window
        self._fields: Optional[Sequence[str]] = None

    def table(self, suffix: str) -> sql.Identifier:
        return self.db.companion(suffix)

    def names(self) -> List[str]:
        return [f"{self.db.schema}.{self.db.table_name}_{suffix}" for suffix, _ in LEVELS]

    def _field_columns(self, field: str) -> List[Tuple[str, str]]:
        cols = [(f"{field}_mean", "double precision"), (f"{field}_min", "double precision"),
                (f"{field}_max", "double precision"), (f"{field}_n", COUNT)]
        if field in self.below:
            cols.append((below_column(field), COUNT))
        return cols

    def ensure(self, cur: Cursor, fields: Sequence[str]) -> None:
        """Create the rollup tables and add columns for new fields (the caller holds the DDL lock).

        Rollups created over an archive that already has rows (one made before rollups existed), or a
        new ROLLUP_BELOW column, are built from those rows here, in the caller's transaction: they
        appear complete or not at all.
        """
        fields = sorted(fields)
        if self._fields == fields:
            return
        key = [sql.Identifier("time")] + [sql.Identifier(t) for t in self.tags]
        incomplete, recount = False, ""
        for suffix, _ in LEVELS:
            table = self.table(suffix)
            cur.execute(COMMENTS, {"table": table.as_string(cur)})
            existing = dict(cur.fetchall())
            incomplete = incomplete or not existing
            columns = [sql.SQL("time timestamptz NOT NULL")] + [
                sql.SQL("{} text NOT NULL").format(sql.Identifier(t)) for t in self.tags] + [
                sql.SQL("windows integer NOT NULL")]
            cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))").format(
                table, sql.SQL(", ").join(columns), sql.SQL(", ").join(key)))
            wanted = {below_column(f): number_text(t) for f, t in self.below.items() if f in fields}
            for name in existing:
                if self._stale(name, fields, wanted):
                    cur.execute(sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(table, sql.Identifier(name)))
            cur.execute(NULLABLE, {"table": table.as_string(cur)})
            nullable = {name for (name,) in cur.fetchall()}
            for field in fields:
                for name, kind in self._field_columns(field):
                    if name not in existing:
                        incomplete = incomplete or (bool(existing) and name in wanted)
                        cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} " + kind).format(
                            table, sql.Identifier(name)))
                    elif kind == COUNT and name in nullable:  # made by a version that left older buckets NULL
                        cur.execute(sql.SQL("UPDATE {t} SET {c} = 0 WHERE {c} IS NULL; ALTER TABLE {t} ALTER COLUMN "
                                            "{c} SET DEFAULT 0, ALTER COLUMN {c} SET NOT NULL").format(
                            t=table, c=sql.Identifier(name)))
            for name, meaning in list(wanted.items()) + [("windows", number_text(self.window))]:
                if existing.get(name) != meaning:
                    if existing and name in existing and not recount:
                        recount = f"{name} counted {existing.get(name) or 'an unrecorded setting'}, now {meaning}"
                    incomplete = incomplete or bool(recount)
                    cur.execute(sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
                        table, sql.Identifier(name), sql.Literal(meaning)))
        self._fields = fields
        if incomplete:
            first, end = archive_span(cur, self.db.table)
            if first is not None and end is not None:
                if recount:
                    log.info("ROLLUP_BELOW or WINDOW changed (%s): recounting the rollups of every archived row",
                             recount)
                else:
                    log.info("building the rollups of the %s rows already archived", self.db.target)
                self.refresh(cur, fields, first, end)

    @staticmethod
    def _stale(name: str, fields: Sequence[str], wanted: Dict[str, str]) -> bool:
        """A below-count column nothing configures any more: <f>_below of a field dropped from
        ROLLUP_BELOW, or <f>_below_<x>, the name older versions gave it."""
        for field in fields:
            if name == below_column(field) and name not in wanted:
                return True
            rest = name[len(field) + len("_below_"):] if name.startswith(field + "_below_") else None
            if rest and rest not in ("mean", "min", "max", "n", "below"):
                return True
        return False

    def refresh(self, cur: Cursor, fields: Sequence[str], start: int, end: int) -> None:
        """Recompute every bucket of every level that overlaps [start, end)."""
        fields = sorted(fields)
        self.ensure(cur, fields)
        source = self.db.table
        for level, (suffix, width) in enumerate(LEVELS):
            lo, hi = floor_to(start, width), ceil_to(end, width)
            target = self.table(suffix)
            cur.execute(sql.SQL("DELETE FROM {} WHERE time >= to_timestamp(%(lo)s) AND time < to_timestamp(%(hi)s)")
                        .format(target), {"lo": lo, "hi": hi})
            if fields:
                cur.execute(self._aggregate(level, source, target, fields), {"lo": lo, "hi": hi, "width": width})
            source = target

    def _aggregate(self, level: int, source: sql.Identifier, target: sql.Identifier,
                   fields: Sequence[str]) -> sql.Composed:
        # date_bin (PostgreSQL 14+): epoch-aligned buckets in timestamp arithmetic; extract(epoch) would
        # go through numeric for every row, which made this the slowest statement of a backfill
        bucket = sql.SQL("date_bin(make_interval(secs => %(width)s), time, timestamptz 'epoch')")
        tags = [sql.Identifier(t) for t in self.tags]
        out_cols = [sql.Identifier("time")] + tags + [sql.Identifier("windows")]
        exprs: list = [bucket] + tags
        if level == 0:  # from the 5-second rows
            exprs.append(sql.SQL("count(*)"))
            for f in fields:
                v = sql.Identifier(f)
                # sum / count, not avg(): avg(double precision) also sums the squares, which overflows
                # ("value out of range") at a reading of 1e155 and would stop the archive for good
                exprs += [sql.SQL("sum({}) / nullif(count({}), 0)").format(v, v), sql.SQL("min({})").format(v),
                          sql.SQL("max({})").format(v),
                          sql.SQL("count({})").format(v)]
                if f in self.below:
                    exprs.append(sql.SQL("count(*) FILTER (WHERE {} < {})").format(v, sql.Literal(self.below[f])))
        else:  # from the level below: weighted means, sums of counts
            exprs.append(sql.SQL("sum(windows)"))
            for f in fields:
                mean, lo, hi, n = (sql.Identifier(f"{f}_{x}") for x in ("mean", "min", "max", "n"))
                exprs += [sql.SQL("sum({} * {}) / nullif(sum({}), 0)").format(mean, n, n),
                          sql.SQL("min({})").format(lo), sql.SQL("max({})").format(hi),
                          sql.SQL("coalesce(sum({}), 0)").format(n)]
                if f in self.below:
                    exprs.append(sql.SQL("coalesce(sum({}), 0)").format(sql.Identifier(below_column(f))))
        for f in fields:
            out_cols += [sql.Identifier(name) for name, _ in self._field_columns(f)]
        group = sql.SQL(", ").join([sql.SQL("1")] + [sql.SQL(str(i + 2)) for i in range(len(tags))])
        return sql.SQL("INSERT INTO {target} ({cols}) SELECT {exprs} FROM {source} "
                       "WHERE time >= to_timestamp(%(lo)s) AND time < to_timestamp(%(hi)s) GROUP BY {group}").format(
            target=target, cols=sql.SQL(", ").join(out_cols), exprs=sql.SQL(", ").join(exprs), source=source,
            group=group)
