"""State kept in the archive's own database: the watermark, the run history, the run lock.

The watermark moves in the same transaction as the rows it covers, so after any crash the
database says exactly what is archived. The lock is a session advisory lock: it dies with the
process's connection, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

from psycopg2 import sql
from psycopg2.extras import execute_values

from .pg import DDL_LOCK, Cursor, one
from .windows import rfc3339

if TYPE_CHECKING:
    from .late import Counts

SCHEMA_SQL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.sql")

TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext(%(key)s))"
UNLOCK = "SELECT pg_advisory_unlock(hashtext(%(key)s))"
GET_WATERMARK = "SELECT extract(epoch FROM watermark)::bigint FROM influx_archive_state WHERE target = %(target)s"
ADVANCE_WATERMARK = """
INSERT INTO influx_archive_state (target, watermark) VALUES (%(target)s, to_timestamp(%(watermark)s))
ON CONFLICT (target) DO UPDATE
SET watermark = GREATEST(influx_archive_state.watermark, EXCLUDED.watermark), updated_at = now()
"""
ABANDONED_ERROR = "the process ended without reporting (killed, power loss or lost connection)"
ABANDON_RUNNING = """
UPDATE influx_archive_runs SET outcome = 'abandoned', finished_at = now(), error = %(error)s
WHERE target = %(target)s AND outcome = 'running'
"""
START_RUN = """
INSERT INTO influx_archive_runs (target, command, started_at)
VALUES (%(target)s, %(command)s, to_timestamp(%(started)s))
RETURNING id
"""
PROGRESS_RUN = """
UPDATE influx_archive_runs
SET range_start = to_timestamp(%(start)s), range_end = to_timestamp(%(end)s),
    chunks = %(chunks)s, rows_written = %(rows)s, refused = coalesce(%(refused)s::jsonb, refused)
WHERE id = %(id)s
"""
FINISH_RUN = """
UPDATE influx_archive_runs
SET finished_at = to_timestamp(%(finished)s), range_start = coalesce(range_start, to_timestamp(%(start)s)),
    range_end = coalesce(range_end, to_timestamp(%(end)s)), chunks = %(chunks)s, rows_written = %(rows)s,
    outcome = %(outcome)s, error = %(error)s, exit_code = %(exit_code)s
WHERE id = %(id)s
"""
RECORD_COUNTS = """
INSERT INTO influx_archive_counts (target, hour, series, field, readings) VALUES %s
ON CONFLICT (target, hour, series, field) DO UPDATE SET readings = EXCLUDED.readings
"""
GET_COUNTS = """
SELECT extract(epoch FROM hour)::bigint, series, field, readings FROM influx_archive_counts
WHERE target = %(target)s AND hour >= to_timestamp(%(lo)s) AND hour < to_timestamp(%(hi)s)
"""
CLEAR_BEHIND = """
DELETE FROM influx_archive_behind
WHERE target = %(target)s AND hour >= to_timestamp(%(lo)s) AND hour < to_timestamp(%(hi)s)
"""
RECORD_BEHIND = """
INSERT INTO influx_archive_behind (target, hour, series, field, in_influx, loaded, found_at) VALUES %s
ON CONFLICT (target, hour, series, field) DO UPDATE
SET in_influx = EXCLUDED.in_influx, loaded = EXCLUDED.loaded, found_at = EXCLUDED.found_at
"""
GET_BEHIND = """
SELECT extract(epoch FROM hour)::bigint, series, field, in_influx, loaded FROM influx_archive_behind
WHERE target = %(target)s ORDER BY hour, series, field
"""
# Where loading began: the earliest range a run or backfill committed a chunk of.
LOADED_FROM = """
SELECT extract(epoch FROM min(range_start))::bigint FROM influx_archive_runs
WHERE target = %(target)s AND command IN ('run', 'backfill') AND chunks > 0
"""
LATE_HOURS = "UPDATE influx_archive_runs SET late_hours = %(hours)s WHERE id = %(id)s"
# Runs in the order they started (id, not the clock: a Pi's clock can step back). A row still
# 'running' whose process no longer holds the run lock is a dead one. to_jsonb(r) reads exit_code
# also from a table made before that column existed (status changes nothing, not even the schema).
LAST_RUNS = """
SELECT r.id, r.command, extract(epoch FROM r.started_at), extract(epoch FROM r.finished_at),
       CASE WHEN r.outcome = 'running' AND NOT %(active)s THEN 'abandoned' ELSE r.outcome END,
       r.rows_written, r.error, (to_jsonb(r) ->> 'exit_code')::int, (to_jsonb(r) ->> 'late_hours')::int,
       to_jsonb(r) -> 'refused'
FROM influx_archive_runs r WHERE r.target = %(target)s
ORDER BY r.id DESC LIMIT %(limit)s
"""
# Is the run lock held? pg_locks shows a bigint advisory key as classid (high half) and objid (low
# half) with objsubid 1 (PostgreSQL docs, pg_locks). Asking, unlike trying the lock, never makes a
# run that starts at that moment step aside.
LOCK_HELD = """
SELECT EXISTS (SELECT 1 FROM pg_locks
               WHERE locktype = 'advisory' AND granted AND objsubid = 1
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND ((classid::bigint << 32) | objid::bigint) = hashtext(%(key)s)::bigint)
"""


# Finished nights whose report or message failed on its last try (morning.py writes the table)
NIGHT_FAILURES = """
SELECT device, extract(epoch FROM started)::bigint, report_error, notify_error FROM influx_archive_nights
WHERE target = %(target)s AND (report_error IS NOT NULL OR notify_error IS NOT NULL) ORDER BY started
"""


# VALID_RANGES changes, oldest first (the sink records them)
RANGE_CHANGES = """
SELECT field, extract(epoch FROM changed_at)::bigint, range_was, range_now FROM influx_archive_ranges
WHERE target = %(target)s ORDER BY changed_at, field
"""


def set_search_path(cur: Cursor, schema: str) -> None:
    cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))


def ensure_schema(cur: Cursor, schema: str) -> None:
    """Create the schema and the state tables if missing (schema.sql beside this module).

    Two sessions running CREATE ... IF NOT EXISTS at once can still collide in PostgreSQL's catalogs,
    so our DDL is serialised by a transaction-scoped advisory lock (released at commit).
    """
    cur.execute(DDL_LOCK)
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    set_search_path(cur, schema)
    with open(SCHEMA_SQL, encoding="utf-8") as handle:
        cur.execute(handle.read())


class State:
    """Watermark and run history of one archive table; every method runs on the given cursor."""

    def __init__(self, schema: str, target: str) -> None:
        self.schema = schema
        self.target = target
        self.lock_key = f"influx-archive:{target}"

    def _q(self, cur: Cursor, statement: str, **params: object) -> None:
        set_search_path(cur, self.schema)
        cur.execute(statement, dict(params, target=self.target))

    def try_lock(self, cur: Cursor) -> bool:
        cur.execute(TRY_LOCK, {"key": self.lock_key})
        return one(cur)[0]

    def unlock(self, cur: Cursor) -> None:
        cur.execute(UNLOCK, {"key": self.lock_key})

    def watermark(self, cur: Cursor) -> Optional[int]:
        self._q(cur, GET_WATERMARK)
        row = cur.fetchone()
        return int(row[0]) if row else None

    def advance(self, cur: Cursor, watermark: int) -> None:
        """Move the watermark forward to `watermark` (never back)."""
        self._q(cur, ADVANCE_WATERMARK, watermark=watermark)

    def record_counts(self, cur: Cursor, counts: Counts) -> None:
        """Keep {(hour, series, field): readings} as what the archive's rows of those hours hold."""
        if counts:
            set_search_path(cur, self.schema)
            execute_values(cur, RECORD_COUNTS, [(self.target, rfc3339(h), s, f, n) for (h, s, f), n in counts.items()],
                           template="(%s, %s::timestamptz, %s, %s, %s)")

    def counts(self, cur: Cursor, lo: int, hi: int) -> Counts:
        """{(hour, series, field): readings} kept for the hours in [lo, hi)."""
        self._q(cur, GET_COUNTS, lo=lo, hi=hi)
        return {(h, s, f): n for h, s, f, n in cur.fetchall()}

    def record_behind(self, cur: Cursor, behind: Sequence[Tuple[int, str, str, int, int]], found_at: float) -> None:
        """Keep what a comparison found behind: [(hour, series, field, in_influx, loaded)]."""
        set_search_path(cur, self.schema)
        execute_values(cur, RECORD_BEHIND, [(self.target, rfc3339(h), s, f, n, m, rfc3339(found_at))
                                            for h, s, f, n, m in behind],
                       template="(%s, %s::timestamptz, %s, %s, %s, %s, %s::timestamptz)")

    def clear_behind(self, cur: Cursor, lo: int, hi: int) -> None:
        """The hours in [lo, hi) are loaded (or compared equal): no longer behind."""
        self._q(cur, CLEAR_BEHIND, lo=lo, hi=hi)

    def behind(self, cur: Cursor) -> List[tuple]:
        """[(hour, series, field, in_influx, loaded)] still behind, oldest first."""
        self._q(cur, GET_BEHIND)
        return cur.fetchall()

    def loaded_from(self, cur: Cursor) -> Optional[int]:
        """Start of the earliest range a run or backfill committed a chunk of (None: none yet)."""
        self._q(cur, LOADED_FROM)
        return one(cur)[0]

    def late_hours(self, cur: Cursor, run_id: int, hours: int) -> None:
        self._q(cur, LATE_HOURS, id=run_id, hours=hours)

    def start_run(self, cur: Cursor, command: str, started: float) -> int:
        """Record a run as started; a run still marked running can only be a dead one (we hold the lock)."""
        self._q(cur, ABANDON_RUNNING, error=ABANDONED_ERROR)
        self._q(cur, START_RUN, command=command, started=started)
        return one(cur)[0]

    def progress(self, cur: Cursor, run_id: int, start: Optional[int], end: Optional[int], chunks: int, rows: int,
                 refused: Optional[dict] = None) -> None:
        """What the run has done so far; refused: Outcome.refusals()."""
        self._q(cur, PROGRESS_RUN, id=run_id, start=start, end=end, chunks=chunks, rows=rows,
                refused=json.dumps(refused) if refused else None)

    def finish_run(self, cur: Cursor, run_id: int, finished: float, start: Optional[int], end: Optional[int],
                   chunks: int, rows: int, outcome: str, error: Optional[str] = None,
                   exit_code: Optional[int] = None) -> None:
        self._q(cur, FINISH_RUN, id=run_id, finished=finished, start=start, end=end, chunks=chunks,
                rows=rows, outcome=outcome, error=error, exit_code=exit_code)

    def active(self, cur: Cursor) -> bool:
        """True while some process holds this archive's run lock (a run, backfill or rebuild)."""
        cur.execute(LOCK_HELD, {"key": self.lock_key})
        return one(cur)[0]

    def range_changes(self, cur: Cursor) -> List[tuple]:
        """[(field, epoch changed, range before, range after)] of this archive, oldest first."""
        self._q(cur, RANGE_CHANGES, target=self.target)
        return cur.fetchall()

    def night_failures(self, cur: Cursor) -> List[tuple]:
        """[(device, started, report error, message error)] of the nights whose last delivery failed."""
        self._q(cur, NIGHT_FAILURES, target=self.target)
        return cur.fetchall()

    def last_runs(self, cur: Cursor, active: bool, limit: int = 200) -> List[dict]:
        """The newest runs first, as dicts; a 'running' row reads 'abandoned' unless a process holds the
        run lock (active, as active() said)."""
        self._q(cur, LAST_RUNS, active=active, limit=limit)
        keys = ("id", "command", "started", "finished", "outcome", "rows", "error", "exit_code", "late_hours",
                "refused")
        runs = [dict(zip(keys, row)) for row in cur.fetchall()]
        for run in runs:
            if run["outcome"] == "abandoned" and not run["error"]:
                run["error"] = ABANDONED_ERROR
        return runs
