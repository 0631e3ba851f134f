"""The read side: facts about an archive that read-only commands share (`status`, `check`, `report`, and the
next one), read without the loader's run lock and changing nothing. Each runs on a cursor whose
search_path is the archive's schema (state.set_search_path).

- session: a cursor for such a read (rolled back, closed).
- devices: every device archived, with its newest window (status judges each; check names them).
- span: the archive's first window start and its last window start + 1 (a read-only command's default
  range).
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Optional, Sequence, Tuple

from psycopg2 import sql

from .config import Config
from .pg import TABLE_COLUMNS, Cursor, Database, archive_span, one, table_exists
from .sources.batch import series_key
from .state import set_search_path


@contextlib.contextmanager
def session(config: Config) -> Iterator[Tuple[Database, Cursor]]:
    """(db, cursor) for a read of the archive: on its schema, driver errors said as the loader says them,
    rolled back (a read changes nothing) and closed after."""
    db = Database(config)
    conn = db.connect()
    try:
        with db.errors():
            cur = conn.cursor()
            set_search_path(cur, config.pg_schema)
            yield db, cur
            conn.rollback()
    finally:
        conn.close()


def devices(cur: Cursor, db: Database, tags: Sequence[str]) -> Dict[str, int]:
    """{device: start of its newest window} of every device archived: each device's last day from the
    1-day rollup (small), then its newest window from that day on (the key's index); without the
    rollup, from the whole table. Nothing when the table lacks a tag's column."""
    def has_tags(table: sql.Identifier) -> bool:
        cur.execute(TABLE_COLUMNS, {"table": table.as_string(cur)})
        return set(tags) <= {name for name, _ in cur.fetchall()}

    if not has_tags(db.table):
        return {}  # TAGS set on a table made without them: the hourly run's error says so
    names = sql.SQL(", ").join(sql.Identifier(t) for t in tags)
    daily = db.companion("1d")
    source = daily if table_exists(cur, daily.as_string(cur)) and has_tags(daily) else db.table
    cur.execute(sql.SQL("SELECT {}, extract(epoch FROM max(time))::bigint FROM {} GROUP BY {}").format(
        names, source, names))
    found = {}
    for *values, day in cur.fetchall():
        where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(t)) for t in tags)
        cur.execute(sql.SQL("SELECT extract(epoch FROM max(time))::bigint FROM {} WHERE {} AND "
                            "time >= to_timestamp(%s)").format(db.table, where), [*values, day])
        found[series_key(dict(zip(tags, values))) or f"(readings without {', '.join(tags)})"] = one(cur)[0]
    return found


def span(cur: Cursor, db: Database) -> Tuple[Optional[int], Optional[int]]:
    """(first window start, last window start + 1) of the archive, epoch seconds; (None, None) when it is
    empty or absent."""
    if not table_exists(cur, db.table.as_string(cur)):
        return None, None
    return archive_span(cur, db.table)
