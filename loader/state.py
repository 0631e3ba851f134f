"""State kept in the archive's own database: the watermark, the run history, the run lock.

The watermark moves in the same transaction as the rows it covers, so after any crash the
database says exactly what is archived. The lock is a session advisory lock: it dies with the
process's connection, so a killed run never leaves a stale lock behind.
"""

import os

from psycopg2 import sql

SCHEMA_SQL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup", "schema.sql")

TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext(%(key)s))"
UNLOCK = "SELECT pg_advisory_unlock(hashtext(%(key)s))"
GET_WATERMARK = "SELECT extract(epoch FROM watermark)::bigint FROM influx_archive_state WHERE target = %(target)s"
ADVANCE_WATERMARK = """
INSERT INTO influx_archive_state (target, watermark) VALUES (%(target)s, to_timestamp(%(watermark)s))
ON CONFLICT (target) DO UPDATE
SET watermark = GREATEST(influx_archive_state.watermark, EXCLUDED.watermark), updated_at = now()
"""
ABANDON_RUNNING = """
UPDATE influx_archive_runs SET outcome = 'abandoned', finished_at = now(),
       error = 'the process ended without reporting (killed, power loss or lost connection)'
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
    chunks = %(chunks)s, rows_written = %(rows)s
WHERE id = %(id)s
"""
FINISH_RUN = """
UPDATE influx_archive_runs
SET finished_at = to_timestamp(%(finished)s), range_start = coalesce(range_start, to_timestamp(%(start)s)),
    range_end = coalesce(range_end, to_timestamp(%(end)s)), chunks = %(chunks)s, rows_written = %(rows)s,
    outcome = %(outcome)s, error = %(error)s
WHERE id = %(id)s
"""
LAST_RUN = """
SELECT command, extract(epoch FROM started_at), extract(epoch FROM finished_at), outcome, rows_written, error
FROM influx_archive_runs WHERE target = %(target)s AND outcome <> 'running'
ORDER BY started_at DESC, id DESC LIMIT 1
"""
RUNNING_NOW = "SELECT count(*) FROM influx_archive_runs WHERE target = %(target)s AND outcome = 'running'"


def set_search_path(cur, schema):
    cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))


PRIMARY_KEY_OF = """
SELECT a.attname
FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = %(table)s::regclass AND i.indisprimary
"""
DDL_LOCK = "SELECT pg_advisory_xact_lock(hashtext('influx-archive:ddl'))"


def ensure_schema(cur, schema):
    """Create the schema and the state tables if missing (setup/schema.sql, shared with install.sh).

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

    def __init__(self, schema, target):
        self.schema = schema
        self.target = target
        self.lock_key = f"influx-archive:{target}"

    def _q(self, cur, statement, **params):
        set_search_path(cur, self.schema)
        cur.execute(statement, dict(params, target=self.target))

    def try_lock(self, cur):
        cur.execute(TRY_LOCK, {"key": self.lock_key})
        return cur.fetchone()[0]

    def unlock(self, cur):
        cur.execute(UNLOCK, {"key": self.lock_key})

    def watermark(self, cur):
        self._q(cur, GET_WATERMARK)
        row = cur.fetchone()
        return int(row[0]) if row else None

    def advance(self, cur, watermark):
        """Move the watermark forward to `watermark` (never back)."""
        self._q(cur, ADVANCE_WATERMARK, watermark=watermark)

    def start_run(self, cur, command, started):
        """Record a run as started; a run still marked running can only be a dead one (we hold the lock)."""
        self._q(cur, ABANDON_RUNNING)
        self._q(cur, START_RUN, command=command, started=started)
        return cur.fetchone()[0]

    def progress(self, cur, run_id, start, end, chunks, rows):
        self._q(cur, PROGRESS_RUN, id=run_id, start=start, end=end, chunks=chunks, rows=rows)

    def finish_run(self, cur, run_id, finished, start, end, chunks, rows, outcome, error=None):
        self._q(cur, FINISH_RUN, id=run_id, finished=finished, start=start, end=end, chunks=chunks,
                rows=rows, outcome=outcome, error=error)

    def last_run(self, cur):
        self._q(cur, LAST_RUN)
        row = cur.fetchone()
        if not row:
            return None
        keys = ("command", "started", "finished", "outcome", "rows", "error")
        return dict(zip(keys, row))

    def running(self, cur):
        self._q(cur, RUNNING_NOW)
        return cur.fetchone()[0]
