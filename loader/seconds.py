"""<PG_TABLE>_seconds: the session fields' readings at 1 Hz, kept so every night can be read again from
what the oximeter sent (oximetry.py) after InfluxDB has let them go.

One row per device (the key tags), field and hour: `readings` holds 3600 bytes, second by second from the
hour's start, each the second's reading in whole units (an oximeter sends whole percent and whole bpm;
the mean of two readings in one second is rounded), NONE where there is none. About 7 kB an hour per field
before PostgreSQL compresses it: a few percent of the 5-second table's size for the same hours.

A chunk's seconds are merged into the rows they fall in: a second with a reading is written, one without
leaves what was there, so a re-read of a range InfluxDB no longer holds erases nothing.
"""

import math

from psycopg2 import sql
from psycopg2.extras import execute_values

from .pg import table_exists

NONE = 255  # no reading that second
TOP = 254  # the highest value kept: a pulse above it is kept as 254
HOUR = 3600
BLANK = bytes([NONE]) * HOUR


class SecondsTable:
    """The 1 Hz readings of the session fields, beside the archive table."""

    def __init__(self, db, tags):
        self.db = db
        self.tags = tuple(tags)
        self._ready = False

    @property
    def table(self):
        return self.db.companion("seconds")

    def exists(self, cur):
        return table_exists(cur, self.table.as_string(cur))

    def ensure(self, cur):
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

    def write(self, cur, seconds):
        """Merge {(tag values, field): {epoch second: value}} into the table, in the caller's transaction;
        returns the hour rows written."""
        if not seconds:
            return 0
        self.ensure(cur)
        hours = {}
        for (device, name), values in seconds.items():
            for t, value in values.items():
                if not math.isfinite(value):  # VALID_RANGES=none keeps NaN and infinities: not a reading
                    continue
                row = hours.get((device, name, t - t % HOUR))
                if row is None:
                    row = hours[(device, name, t - t % HOUR)] = {}
                row[t % HOUR] = min(TOP, max(0, int(value + 0.5)))  # half up, as oximetry.whole
        stored = self._stored(cur, hours)
        rows = []
        for (device, name, hour), values in hours.items():
            readings = bytearray(stored.get((device, name, hour), BLANK))
            for at, value in values.items():
                readings[at] = value
            rows.append((*device, name, hour, bytes(readings)))
        names = [sql.Identifier(c) for c in (*self.tags, "field", "hour", "readings")]
        key = sql.SQL(", ").join(sql.Identifier(c) for c in (*self.tags, "field", "hour"))
        template = "(" + ", ".join(["%s"] * (len(self.tags) + 1) + ["to_timestamp(%s)", "%s"]) + ")"
        execute_values(cur, sql.SQL(
            "INSERT INTO {table} AS t ({names}) VALUES %s ON CONFLICT ({key}) DO UPDATE SET "
            "readings = EXCLUDED.readings WHERE t.readings IS DISTINCT FROM EXCLUDED.readings").format(
            table=self.table, names=sql.SQL(", ").join(names), key=key).as_string(cur), rows, template=template)
        return len(rows)

    def _stored(self, cur, hours):
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

    def read(self, cur, device, fields, start, end):
        """{field: [value or None for each second of [start, end)]} of a device; None when the table holds
        no reading of the first field there."""
        if not self.exists(cur):
            return None
        where = sql.SQL("").join(sql.SQL("{} = %s AND ").format(sql.Identifier(t)) for t in self.tags)
        cur.execute(sql.SQL("SELECT field, extract(epoch FROM hour)::bigint, readings FROM {} WHERE {} "
                            "field = ANY(%s) AND hour >= to_timestamp(%s) AND hour < to_timestamp(%s)").format(
            self.table, where), (*device, list(fields), start - start % HOUR, end))
        found = {name: [None] * (end - start) for name in fields}
        seen = False
        for name, hour, readings in cur.fetchall():
            values = found[name]
            lo, hi = max(start, hour), min(end, hour + HOUR)
            if lo >= hi:
                continue
            part = bytes(readings[lo - hour:hi - hour])
            values[lo - start:hi - start] = [None if v == NONE else v for v in part]
            seen = seen or (name == fields[0] and part.count(NONE) < len(part))
        return found if seen else None
