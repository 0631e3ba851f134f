"""<PG_TABLE>_seconds: the session fields' readings at 1 Hz, kept so every night can be read again from
what the oximeter sent (oximetry.py) after InfluxDB has let them go.

One row per device (the key tags), field and hour: `readings` holds 3600 bytes, second by second from the
hour's start, each the second's reading in whole units (batch.put_seconds: an oximeter sends whole percent
and whole bpm; the mean of two readings in one second is rounded), NO_READING where there is none: 3.6 kB
an hour per field before PostgreSQL compresses it (its size beside the 5-second table's: docs/benchmarks.md).

A chunk's seconds are merged into the rows they fall in: a second with a reading is written, one without
leaves what was there, so a re-read of a range InfluxDB no longer holds erases nothing.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from psycopg2 import sql
from psycopg2.extras import execute_values

from .pg import Cursor, Database, table_exists
from .sources.batch import HOUR_S as HOUR
from .sources.batch import NO_READING

Hour = Tuple[tuple, str, int]  # a row of the table: (tag values, field, hour start)


class SecondsTable:
    """The 1 Hz readings of the session fields, beside the archive table."""

    def __init__(self, db: Database, tags: Sequence[str]) -> None:
        self.db = db
        self.tags = tuple(tags)
        self._ready = False

    @property
    def table(self) -> sql.Identifier:
        return self.db.companion("seconds")

    def exists(self, cur: Cursor) -> bool:
        return table_exists(cur, self.table.as_string(cur))

    def ensure(self, cur: Cursor) -> None:
        if self._ready:
            return
        columns = [sql.SQL("{} text NOT NULL").format(sql.Identifier(t)) for t in self.tags] + [
            sql.SQL("field text NOT NULL"), sql.SQL("hour timestamptz NOT NULL"), sql.SQL("readings bytea NOT NULL")]
        key = [sql.Identifier(c) for c in (*self.tags, "field", "hour")]
        cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))").format(
            self.table, sql.SQL(", ").join(columns), sql.SQL(", ").join(key)))
        cur.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(self.table, sql.Literal(
            "The session fields' readings at 1 Hz: per hour, one byte a second in whole units, 255 for none")))
        self._ready = True

    def write(self, cur: Cursor, seconds: Dict[Tuple[tuple, str], Dict[int, bytearray]]) -> int:  # Batch.seconds
        """Merge Batch.seconds ({(tag values, field): {hour start: bytearray(3600)}}) into the table, in the
        caller's transaction: a second with a reading replaces what was kept, one without keeps it. Returns
        the hour rows written."""
        if not seconds:
            return 0
        self.ensure(cur)
        hours = {(device, name, hour): readings for (device, name), rows in seconds.items()
                 for hour, readings in rows.items()}
        stored = self._stored(cur, hours)
        rows = []
        for (device, name, hour), readings in hours.items():
            kept = stored.get((device, name, hour))
            if kept is not None and NO_READING in readings:
                readings = bytearray(new if new != NO_READING else old for new, old in zip(readings, kept))
            rows.append((*device, name, hour, bytes(readings)))
        names = [sql.Identifier(c) for c in (*self.tags, "field", "hour", "readings")]
        key = sql.SQL(", ").join(sql.Identifier(c) for c in (*self.tags, "field", "hour"))
        template = "(" + ", ".join(["%s"] * (len(self.tags) + 1) + ["to_timestamp(%s)", "%s"]) + ")"
        execute_values(cur, sql.SQL(
            "INSERT INTO {table} AS t ({names}) VALUES %s ON CONFLICT ({key}) DO UPDATE SET "
            "readings = EXCLUDED.readings WHERE t.readings IS DISTINCT FROM EXCLUDED.readings").format(
            table=self.table, names=sql.SQL(", ").join(names), key=key).as_string(cur), rows, template=template)
        return len(rows)

    def _stored(self, cur: Cursor, hours: Dict[Hour, bytearray]) -> Dict[Hour, bytes]:
        """{(tag values, field, hour): readings} already kept for the hours about to be written."""
        if not hours:
            return {}
        starts = [h for _, _, h in hours]
        cur.execute(sql.SQL("SELECT {tags} field, extract(epoch FROM hour)::bigint, readings FROM {table} "
                            "WHERE hour >= to_timestamp(%s) AND hour <= to_timestamp(%s) AND field = ANY(%s) "
                            "FOR UPDATE").format(
            tags=sql.SQL("").join(sql.SQL("{}, ").format(sql.Identifier(t)) for t in self.tags), table=self.table),
            (min(starts), max(starts), sorted({name for _, name, _ in hours})))
        n = len(self.tags)
        return {(tuple(row[:n]), row[n], row[n + 1]): bytes(row[n + 2]) for row in cur.fetchall()}

    def read(self, cur: Cursor, device: Sequence[str], fields: Sequence[str], start: int,
             end: int) -> Optional[Dict[str, List[Optional[float]]]]:
        """{field: [value or None for each second of [start, end)]} of a device; None when the table holds
        no reading of the first field there. The table exists (the caller asked exists())."""
        where = sql.SQL("").join(sql.SQL("{} = %s AND ").format(sql.Identifier(t)) for t in self.tags)
        cur.execute(sql.SQL("SELECT field, extract(epoch FROM hour)::bigint, readings FROM {} WHERE {} "
                            "field = ANY(%s) AND hour >= to_timestamp(%s) AND hour < to_timestamp(%s)").format(
            self.table, where), (*device, list(fields), start - start % HOUR, end))
        found: dict = {name: [None] * (end - start) for name in fields}
        seen = False
        for name, hour, readings in cur.fetchall():
            values = found[name]
            lo, hi = max(start, hour), min(end, hour + HOUR)
            if lo >= hi:
                continue
            part = bytes(readings[lo - hour:hi - hour])
            values[lo - start:hi - start] = [None if v == NO_READING else v for v in part]
            seen = seen or (name == fields[0] and part.count(NO_READING) < len(part))
        return found if seen else None
