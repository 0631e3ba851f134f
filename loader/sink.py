"""The PostgreSQL sink: the archive table's shape, and the one write path.

Every chunk is written the same way, whoever asks (run, backfill, tests, install.sh's first load):
COPY into a temporary table, then INSERT ... ON CONFLICT DO UPDATE into the archive, in the
caller's transaction, so the watermark can move in that same transaction.
"""

from __future__ import annotations

import io
import logging
from typing import List, Mapping, Optional, Sequence, Set, Tuple

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from .errors import SinkRejected, SourceQueryError
from .invocation import command
from .metrics import LOWEST, LOWEST_MARGIN, READING_COUNTS
from .pg import (
    DDL_LOCK,
    PRIMARY_KEY_OF,
    Cursor,
    Database,
    archive_span,
    by_key,
    columns_of,
    first_line,
    one,
    table_exists,
)
from .seconds import SecondsTable
from .sources.batch import Batch, Block
from .sources.literal import number
from .windows import format_duration, rfc3339

log = logging.getLogger(__name__)

STAGE = "influx_archive_stage"
RANGES = "influx_archive_ranges"  # schema.sql: each VALID_RANGES change, for `status`
RECORD_RANGE = ("INSERT INTO {} (target, field, range_was, range_now) VALUES (%(target)s, %(field)s, %(was)s, "
                "%(now)s) ON CONFLICT DO NOTHING")

NOT_OURS_HELP = ("PG_TABLE {table} exists with primary key ({found}) but influx-archive needs ({wanted}). "
                 "A table made by the reference script has no key: adopt it with `sudo ./install.sh "
                 "--adopt-reference` (or `{adopt}`), or set PG_TABLE to a new name (and TAGS "
                 "to match the table)")


WINDOW_CHANGED_HELP = ("set WINDOW back to {was}, or keep {now} windows in a new table: set PG_TABLE to a new name "
                       "(the {was} rows stay where they are)")

# The table's columns with their types and comments (pg.TABLE_COLUMNS and each column's comment, read in
# one query): each field column's comment records the VALID_RANGES its readings are refused by (a restore
# compares it with the new Pi's settings: restore.check_fits)
COLUMNS_WITH_COMMENTS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), col_description(a.attrelid, a.attnum)
FROM pg_attribute a
WHERE a.attrelid = %(table)s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
RANGE_PREFIX = "VALID_RANGES="


def range_text(valid_ranges: Mapping[str, Tuple[float, float]], field: str) -> str:
    """A field's range as VALID_RANGES writes it: 50..100, or none when its readings are all kept. Bounds as
    plain decimals (never an exponent), so the text reads back as the setting."""
    if field not in valid_ranges:
        return "none"
    return "..".join(plain_number(bound) for bound in valid_ranges[field])


def range_comment(valid_ranges: Mapping[str, Tuple[float, float]], field: str) -> str:
    """A field column's comment: VALID_RANGES=50..100 (VALID_RANGES=none)."""
    return RANGE_PREFIX + range_text(valid_ranges, field)


def plain_number(value: float) -> str:
    """50.0 as 50, 0.5 as 0.5, 1e-07 as 0.0000001: the form VALID_RANGES reads."""
    text = number(value)
    return text[:-2] if text.endswith(".0") else text


# The width of the rows, as a comment on the table; archives made before it was recorded have it on
# their 1-minute rollup's `windows` column (rollups.py)
TABLE_COMMENT = """
SELECT obj_description(to_regclass(%(table)s), 'pg_class'), col_description(to_regclass(%(rollup)s),
       (SELECT attnum FROM pg_attribute WHERE attrelid = to_regclass(%(rollup)s) AND attname = 'windows'))
"""


class ArchiveTable:
    """The archive table: time + key tags as primary key, one double precision column per field."""

    def __init__(self, db: Database, tags: Sequence[str], announce: bool = True, window: Optional[int] = None,
                 valid_ranges: Optional[Mapping[str, Tuple[float, float]]] = None) -> None:
        self.db = db
        self.tags = tuple(tags)
        self.window = window  # WINDOW, seconds: rows of another width are refused (None: not checked)
        self.valid_ranges = valid_ranges  # VALID_RANGES, recorded on each field's column (None: not recorded)
        self.announce = announce  # False for `check`, whose changes are rolled back
        self._columns: Optional[set] = None  # field columns known to exist, cached for the process
        self.seconds = SecondsTable(db, self.tags)  # the session fields' 1 Hz readings

    @property
    def fields(self) -> List[str]:
        """The field columns the table has (after ensure)."""
        return sorted(self._columns or ())

    def span(self, cur: Cursor) -> Tuple[Optional[int], Optional[int]]:
        """[first window, last window + width) of the archived rows, as epoch seconds (None, None if empty)."""
        return archive_span(cur, self.db.table)

    def newest(self, cur: Cursor) -> Optional[int]:
        """Start of the newest archived window, epoch seconds (None if the table is empty or missing)."""
        if not table_exists(cur, self.db.table.as_string(cur)):
            return None
        cur.execute(sql.SQL("SELECT extract(epoch FROM max(time))::bigint FROM {}").format(self.db.table))
        return one(cur)[0]

    def _log(self, message: str, *args: object) -> None:
        if self.announce:
            log.info(message, *args)

    def check(self, cur: Cursor) -> None:
        """Refuse an existing table whose key or columns do not fit, before anything else is asked;
        creating a missing one waits for ensure(), so a failed run leaves nothing behind."""
        if table_exists(cur, self.db.table.as_string(cur)):
            self.ensure(cur, ())

    def ensure(self, cur: Cursor, fields: Sequence[str]) -> None:
        """Create the table if missing, check its key, add a column for every new field."""
        if self._columns is None:
            self._columns = self._create_or_check(cur, fields)
        new = [f for f in fields if f not in self._columns]
        for name in new:
            cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} double precision").format(
                self.db.table, sql.Identifier(name)))
            self._log("added column %s to %s for a new field", name, self.db.target)
            self._columns.add(name)
        if new and self.valid_ranges is not None:
            self._record_ranges(cur, {name: None for name in new})

    def _record_ranges(self, cur: Cursor, comments: Mapping[str, Optional[str]]) -> None:
        """Write each field column's VALID_RANGES comment where it differs from `comments` (column -> the
        comment it has); a range that changed is said: the windows loaded from now on keep it."""
        for name, was in sorted(comments.items()):
            now = range_comment(self.valid_ranges or {}, name)
            if was == now:
                continue
            if was is not None and was.startswith(RANGE_PREFIX):
                self._log("VALID_RANGES for %s changed from %s to %s: windows loaded from now on refuse readings "
                          "by the new range (those archived keep theirs)", name, was[len(RANGE_PREFIX):],
                          now[len(RANGE_PREFIX):])
                if self.announce and table_exists(cur, sql.Identifier(self.db.schema, RANGES).as_string(cur)):
                    cur.execute(sql.SQL(RECORD_RANGE).format(sql.Identifier(self.db.schema, RANGES)),
                                {"target": self.db.target, "field": name, "was": was[len(RANGE_PREFIX):],
                                 "now": now[len(RANGE_PREFIX):]})
            cur.execute(sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
                self.db.table, sql.Identifier(name), sql.Literal(now)))

    def _create_or_check(self, cur: Cursor, fields: Sequence[str]) -> Set[str]:
        """Create the table if missing and check its key, WINDOW and columns: its field columns."""
        cur.execute(DDL_LOCK)
        qualified = self.db.table.as_string(cur)
        if not table_exists(cur, qualified):
            key = [sql.Identifier("time")] + [sql.Identifier(t) for t in self.tags]
            columns = [sql.SQL("time timestamptz NOT NULL")] + [
                sql.SQL("{} text NOT NULL").format(sql.Identifier(t)) for t in self.tags] + [
                sql.SQL("{} double precision").format(sql.Identifier(f)) for f in fields]
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.db.schema)))
            cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))").format(
                self.db.table, sql.SQL(", ").join(columns), sql.SQL(", ").join(key)))
            self._log("created table %s (%s)", self.db.target, ", ".join(("time",) + self.tags + tuple(fields)))
        cur.execute(PRIMARY_KEY_OF, {"table": qualified})
        found = sorted(r[0] for r in cur.fetchall())
        wanted = sorted(("time",) + self.tags)
        if found == ["time"] and self.tags:
            raise SinkRejected(f"{self.db.target} keeps one device (key time), and TAGS={','.join(self.tags)} keeps "
                               f"devices apart", hint=f"key it by {', '.join(self.tags)} in place, every row kept: "
                                                      f"`{command('add-tags')}` (a dry run), then "
                                                      f"`{command('add-tags --yes')}`")
        if found != wanted:
            raise SinkRejected(NOT_OURS_HELP.format(adopt=command("adopt-reference"), table=self.db.target,
                                                    found=", ".join(found) or "none", wanted=", ".join(wanted)))
        self._check_window(cur, qualified)
        cur.execute(COLUMNS_WITH_COMMENTS, {"table": qualified})
        kinds = {n: (t, comment) for n, t, comment in cur.fetchall() if n not in wanted}
        bad = [n for n, (t, _) in kinds.items() if t != "double precision"]
        if bad:
            raise SinkRejected(f"{self.db.target} has column(s) {', '.join(bad)} that are not double precision")
        if self.valid_ranges is not None:
            self._record_ranges(cur, {n: comment for n, (_, comment) in kinds.items()})
        return set(kinds)

    def _check_window(self, cur: Cursor, qualified: str) -> None:
        """Refuse a WINDOW other than the width of the rows already there (recomputing sessions over
        5-second rows as if they were 10-second ones would double every night's recorded time)."""
        if self.window is None:
            return
        rollup = self.db.companion("1m").as_string(cur)
        cur.execute(TABLE_COMMENT, {"table": qualified, "rollup": rollup})
        comment, rollup_window = one(cur)
        was = comment[len("WINDOW="):] if comment and comment.startswith("WINDOW=") else None
        if was is None and rollup_window and archive_span(cur, self.db.table)[0] is not None:
            was = format_duration(int(float(rollup_window)))
        now = format_duration(self.window)
        if was is not None and was != now:
            raise SinkRejected(f"{self.db.target} holds rows {was} wide, but WINDOW is {now}",
                               hint=WINDOW_CHANGED_HELP.format(was=was, now=now))
        if comment != f"WINDOW={now}":
            cur.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(self.db.table, sql.Literal(f"WINDOW={now}")))

    def write(self, cur: Cursor, batch: Batch) -> int:
        """Write the batch; returns rows inserted or changed. Runs in the caller's transaction.

        Where the chunk's range of the archive is still empty (a backfill, a catch-up) the blocks are
        COPYed straight into it; otherwise through a temporary table and INSERT ... ON CONFLICT DO
        UPDATE. Either way PostgreSQL parses the values as COPY reads them; one it cannot parse is
        the source's fault and ends the chunk before anything is visible.
        """
        if not batch.rows:
            return 0
        self.ensure(cur, batch.fields)
        changed = self._write_means(cur, batch)
        if batch.readings:  # after the means: the lowest reading is kept by its distance from the window's mean
            self._write_readings(cur, batch)
        self.seconds.write(cur, batch.seconds)
        return changed

    def _write_means(self, cur: Cursor, batch: Batch) -> int:
        """The batch's window means into the archive table; rows inserted or changed."""
        cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE time >= %(lo)s AND time < %(hi)s)").format(
            self.db.table), {"lo": rfc3339(batch.start), "hi": rfc3339(batch.end)})
        if not one(cur)[0]:
            for block in batch.blocks:
                self._copy(cur, self.db.table, block)
            return batch.rows
        key = ["time", *self.tags]
        stage = sql.Identifier(STAGE)
        cur.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DROP").format(
            stage, self.db.table))
        for block in batch.blocks:
            self._copy(cur, stage, block)
        names = key + list(batch.fields)
        cols = sql.SQL(", ").join(sql.Identifier(n) for n in names)
        fields = [sql.Identifier(f) for f in batch.fields]
        target = sql.Identifier("t")
        # WHERE ... IS DISTINCT FROM: re-read windows that did not change are not rewritten
        # (no dead tuples, no WAL: the SD card thanks us).
        cur.execute(sql.SQL(
            "INSERT INTO {table} AS t ({cols}) SELECT {cols} FROM {stage} "
            "ON CONFLICT ({key}) DO UPDATE SET {updates} "
            "WHERE ({old}) IS DISTINCT FROM ({new})").format(
                table=self.db.table, cols=cols, stage=stage,
                key=sql.SQL(", ").join(sql.Identifier(k) for k in key),
                updates=sql.SQL(", ").join(sql.SQL("{} = EXCLUDED.{}").format(f, f) for f in fields),
                old=sql.SQL(", ").join(sql.SQL("{}.{}").format(target, f) for f in fields),
                new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(f) for f in fields)))
        changed = cur.rowcount
        cur.execute(sql.SQL("DROP TABLE {}").format(stage))
        return changed

    @property
    def readings_table(self) -> sql.Identifier:
        """<PG_TABLE>_readings: per window, the SpO2 readings' counts of metrics.READING_COUNTS (T90, T88) and
        their lowest (brief dips)."""
        return self.db.companion("readings")

    def _write_readings(self, cur: Cursor, batch: Batch) -> None:
        """The chunk's READINGS, replacing what [start, end) held, kept for the windows that hold a reading
        one of the counts counts (below 90, at or below 88) or whose lowest reading is more than LOWEST_MARGIN
        under their mean. Every other window's readings are all 90 or more, so its mean (90 or more) already
        says its T90 and T88 exactly (0), which
        is what the sessions' read falls back to where a window has no row, and its lowest reading cannot
        count a desaturation its mean does not (the rule in sessions.py). InfluxDB sends the readings of every
        window (n), their lowest, and the counts below 90 and at or below 88 for the windows that have some:
        all COPYed into a temporary table, then one row per window and key that holds either into the
        readings table (a few percent of the windows on most nights, where a row for each had doubled the
        archive's size on disk); the lowest is kept only where it is that far under the mean."""
        key = [sql.Identifier(c) for c in ("time", *self.tags)]
        n, *counts = [sql.Identifier(c) for c, _, _ in READING_COUNTS]
        lowest = sql.Identifier(LOWEST)
        columns = [sql.SQL("time timestamptz NOT NULL")] + [
            sql.SQL("{} text NOT NULL").format(sql.Identifier(t)) for t in self.tags]
        cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))").format(
            self.readings_table, sql.SQL(", ").join(columns + [
                sql.SQL("{} integer NOT NULL DEFAULT 0").format(c) for c in (n, *counts)]),
            sql.SQL(", ").join(key)))
        # a table made before a count (or the lowest reading) was declared: its rows have none, NULL, and the
        # sessions count them by their means
        kept = columns_of(cur, self.readings_table.as_string(cur))
        for column, kind in [(c, "integer") for c, _, _ in READING_COUNTS[1:]] + [(LOWEST, "double precision")]:
            if column not in kept:
                cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} " + kind).format(
                    self.readings_table, sql.Identifier(column)))
        cur.execute(sql.SQL("DELETE FROM {} WHERE time >= %(lo)s AND time < %(hi)s").format(self.readings_table),
                    {"lo": rfc3339(batch.start), "hi": rfc3339(batch.end)})
        stage = sql.Identifier(STAGE + "_readings")
        cur.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(stage, sql.SQL(", ").join(
            [sql.SQL("time timestamptz")] + [sql.SQL("{} text").format(sql.Identifier(t)) for t in self.tags]
            + [sql.SQL("{} integer").format(c) for c in (n, *counts)] + [sql.SQL("{} double precision").format(
                lowest)])))
        for block in batch.readings:
            self._copy(cur, stage, block)
        assert batch.readings_field is not None  # a source sets it with the readings
        mean = by_key(self.db.table, sql.SQL("a.{} AS mean").format(sql.Identifier(batch.readings_field)), "s",
                      ("time", *self.tags))  # each window's mean
        far = sql.SQL("s.{lowest} < a.mean - {margin}").format(lowest=lowest, margin=sql.Literal(LOWEST_MARGIN))
        cur.execute(sql.SQL(
            "INSERT INTO {table} ({key}, {counts}, {lowest}) "
            "SELECT {skey}, {scounts}, CASE WHEN {far} THEN s.{lowest} END FROM ("
            "SELECT {key}, {maxima}, min({lowest}) AS {lowest} FROM {stage} GROUP BY {key}) s "
            "LEFT JOIN LATERAL {mean} a ON true "
            "WHERE {some} OR {far}").format(
            table=self.readings_table, key=sql.SQL(", ").join(key), counts=sql.SQL(", ").join((n, *counts)),
            lowest=lowest, skey=sql.SQL(", ").join(sql.SQL("s.{}").format(k) for k in key),
            scounts=sql.SQL(", ").join(sql.SQL("s.{}").format(c) for c in (n, *counts)), far=far,
            maxima=sql.SQL(", ").join(sql.SQL("coalesce(max({c}), 0) AS {c}").format(c=c) for c in (n, *counts)),
            stage=stage, mean=mean, some=sql.SQL(" OR ").join(sql.SQL("s.{} > 0").format(c) for c in counts)))
        cur.execute(sql.SQL("DROP TABLE {}").format(stage))

    def _copy(self, cur: Cursor, table: sql.Composable, block: Block) -> None:
        options: sql.Composable = sql.SQL("FORMAT csv")
        tags = [t for t in self.tags if t in block.columns]
        if tags:  # an absent tag is '' (a key cannot be NULL); CSV would read '' as NULL
            options = sql.SQL("FORMAT csv, FORCE_NOT_NULL ({})").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in tags))
        statement = sql.SQL("COPY {} ({}) FROM STDIN WITH ({})").format(
            table, sql.SQL(", ").join(sql.Identifier(c) for c in block.columns), options).as_string(cur)
        try:
            cur.copy_expert(statement, io.StringIO(block.text), size=1 << 20)
        except (psycopg2.errors.DataError, psycopg2.errors.BadCopyFileFormat) as exc:
            raise SourceQueryError(f"InfluxDB sent a value PostgreSQL cannot read: {first_line(exc)}") from None
        except psycopg2.errors.UniqueViolation:
            raise SourceQueryError("the source returned two rows for one window and key; "
                                   "refusing to let one overwrite the other") from None
