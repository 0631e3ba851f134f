"""PostgreSQL, the one way the loader reaches it: PG_URL as libpq reads it, connections whose driver
errors become SinkUnavailable (retry later) or SinkRejected (needs a human), one transaction per
chunk, and the catalog questions the other modules ask. pgtools runs pg_dump/pg_restore for the same
URL, with the parameters pg_params() reads and the same error translation; nothing else parses PG_URL.
"""

from __future__ import annotations

import contextlib
import getpass
import re
from typing import TYPE_CHECKING, ContextManager, Dict, Iterator, Optional, Sequence, Set, Tuple

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from .errors import LoaderError, SinkRejected, SinkUnavailable, SourceQueryError
from .redaction import redact

if TYPE_CHECKING:
    from .config import Config

TABLE_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a
WHERE a.attrelid = %(table)s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
TABLE_EXISTS = "SELECT to_regclass(%(table)s) IS NOT NULL"
COLUMNS_OF = """
SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%(table)s) AND attnum > 0 AND NOT attisdropped
"""
PRIMARY_KEY_OF = """
SELECT a.attname
FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = %(table)s::regclass AND i.indisprimary
"""
DDL_LOCK = "SELECT pg_advisory_xact_lock(hashtext('influx-archive:ddl'))"


def archive_span(cur: Cursor, table: sql.Composable) -> Tuple[Optional[int], Optional[int]]:
    """[first window start, last window start + 1) of an archive table (sql.Identifier), epoch seconds;
    (None, None) when it is empty."""
    cur.execute(sql.SQL("SELECT extract(epoch FROM min(time))::bigint, extract(epoch FROM max(time))::bigint "
                        "FROM {}").format(table))
    first, last = one(cur)
    return (None, None) if first is None else (first, last + 1)


def by_key(table: sql.Composable, columns: sql.Composable, outer: str, keys: Sequence[str]) -> sql.Composed:
    """A subquery for LATERAL: `columns` of the row of `table` (aliased a) whose key columns (`keys`: time
    and the key tags) equal those of the row `outer` names. OFFSET 0 keeps it a lookup by the primary key
    whatever the statistics of tables filled in this very transaction suggest to the planner (a join left
    to it became a nested loop over a whole table per row: 14 s for one day of two devices)."""
    match = sql.SQL(" AND ").join(sql.SQL("a.{c} = {o}.{c}").format(c=sql.Identifier(c), o=sql.Identifier(outer))
                                  for c in keys)
    return sql.SQL("(SELECT {} FROM {} a WHERE {} OFFSET 0)").format(columns, table, match)


def one(cur: Cursor) -> tuple:
    """The row a query that always answers one has answered (an aggregate, EXISTS, a catalog function)."""
    row = cur.fetchone()
    if row is None:
        raise AssertionError("a query that answers one row answered none")
    return row


def table_exists(cur: Cursor, qualified: str) -> bool:
    """Whether a table (a qualified, quoted name as sql.Identifier renders it) exists."""
    cur.execute(TABLE_EXISTS, {"table": qualified})
    return one(cur)[0]


def columns_of(cur: Cursor, qualified: str) -> Set[str]:
    """The columns of a table (as table_exists names it; none when it does not exist); a catalog read, no
    lock on the table (ALTER TABLE ... ADD COLUMN IF NOT EXISTS takes an exclusive one even when the column
    is there, and waits behind every reader, a nightly pg_dump among them)."""
    cur.execute(COLUMNS_OF, {"table": qualified})
    return {row[0] for row in cur.fetchall()}


# A statement PostgreSQL cancelled (a statement_timeout or lock_timeout of the role, the database or
# postgresql.conf; pg_cancel_backend): the run is retried by the next one, and this says how to lift them
CANCELLED_HINT = ("PostgreSQL applies a statement_timeout or lock_timeout to this role or database, or someone "
                  "cancelled it; the next run tries again. If it recurs, lift both for the loader's role: "
                  "sudo -u postgres psql -c 'ALTER ROLE \"{user}\" SET statement_timeout = 0' "
                  "-c 'ALTER ROLE \"{user}\" SET lock_timeout = 0'")
# Nothing answered at PG_URL: where to look (a server on this machine, or elsewhere)
DOWN_HINT_HERE = ("is PostgreSQL running? sudo systemctl status postgresql says, and its log says why it "
                  "stopped; a full disk stops it, which df -h /var/lib/postgresql shows. The next run catches up "
                  "once it answers")
DOWN_HINT_THERE = ("is PostgreSQL running at that host and port, and reachable from here through any firewall? The "
                   "next run catches up once it answers")
DISK_FULL_HINT = ("free space on the drive that holds PostgreSQL's data (df -h /var/lib/postgresql shows it); "
                  "the next run then loads every hour missed while InfluxDB still holds it (30 days on the free plan)")
PG_SCHEMES = re.compile(r"^postgres(?:ql)?(?:\+psycopg2)?://")
ENCODE_HELP = ("percent-encode it (@ as %40, : as %3A, / as %2F, # as %23, ? as %3F, % as %25); this prints "
               "the encoded form of what you type: python3 -c 'import getpass, urllib.parse; "
               "print(urllib.parse.quote(getpass.getpass(), safe=\"\"))'")


def libpq_url(url: str) -> str:
    """PG_URL as libpq reads it. SQLAlchemy-style URLs (postgresql+psycopg2://, as the reference
    script's PG_CONNECT may be) name a driver; libpq takes the same URL without it, query options
    (sslmode=...) and %-escapes included."""
    return PG_SCHEMES.sub("postgresql://", url)


def pg_userinfo(url: str) -> str:
    """The user:password part of a URL (everything before the host's @), or ''."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    return rest.rsplit("@", 1)[0] if "@" in rest else ""


def pg_password(url: str) -> str:
    userinfo = pg_userinfo(url or "")
    return userinfo.split(":", 1)[1] if ":" in userinfo else ""


def pg_url_problem(url: str) -> Optional[str]:
    """What is wrong with PG_URL's form, in words that never repeat any part of it; None when libpq can read it."""
    if not PG_SCHEMES.match(url):
        return ("PG_URL must start with postgresql://, as in postgresql://user:password@localhost:5432/dbname "
                "(the value is not shown: it holds the password)")
    rest = url.split("://", 1)[1]
    if rest.count("@") > 1 or any(c in pg_userinfo(url) for c in "/?#"):
        return "PG_URL: the password (or user name) has a character that must be encoded: " + ENCODE_HELP
    hosts = re.split(r"[/?]", rest.rsplit("@", 1)[-1], maxsplit=1)[0]
    for host in hosts.split(","):
        port = host.rsplit("]", 1)[-1].rpartition(":")[2] if ":" in host.rsplit("]", 1)[-1] else ""
        if port and not port.isdigit():
            return "PG_URL: the port after the host name must be a number, such as 5432"
    try:
        pg_params(url)
    except psycopg2.ProgrammingError:
        return ("PG_URL cannot be read by libpq: write it as postgresql://user:password@host:5432/dbname; a "
                "special character in the password must be encoded: " + ENCODE_HELP)
    return None


def pg_params(url: str) -> Dict[str, str]:
    """PG_URL as libpq's keyword parameters (host, port, user, password, dbname, ...)."""
    return psycopg2.extensions.parse_dsn(libpq_url(url))


def describe_pg_url(url: str) -> str:
    try:
        params = pg_params(url)
    except psycopg2.ProgrammingError:
        return "PG_URL"
    where = params.get("host", "local socket")
    if params.get("port"):
        where += f":{params['port']}"
    user = f"{params['user']}@" if params.get("user") else ""
    return f"postgresql://{user}{where}/{params.get('dbname', '')}"




def driver_errors(config: Config) -> ContextManager[None]:
    """A context in which driver errors become typed errors, secrets removed (for code that borrows a
    connection, e.g. pgtools')."""
    return Database(config).errors()


class Database:
    """A connection factory for PG_URL; each connection is a plain psycopg2 connection."""

    def __init__(self, config: Config, connect_timeout: int = 10) -> None:
        self.config = config
        self._dsn = libpq_url(config.pg_url.reveal())
        self._connect_timeout = connect_timeout
        self.schema = config.pg_schema
        self.table_name = config.pg_table
        self.target = f"{config.pg_schema}.{config.pg_table}"

    def connect(self) -> Connection:
        with self.errors():
            return psycopg2.connect(self._dsn, connect_timeout=self._connect_timeout,
                                    application_name="influx-archive")

    @property
    def table(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table_name)

    def companion(self, suffix: str) -> sql.Identifier:
        """A table kept beside the archive table: <PG_TABLE>_<suffix> (the rollups, sessions, readings)."""
        return sql.Identifier(self.schema, f"{self.table_name}_{suffix}")

    @contextlib.contextmanager
    def transaction(self, conn: Connection) -> Iterator[None]:
        """One chunk, one transaction: committed when the block ends, rolled back on any error."""
        with self.errors():
            try:
                yield
                conn.commit()
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Turn driver errors into SinkUnavailable (retry later) or SinkRejected (needs a human)."""
        try:
            yield
        except Exception as exc:
            if not isinstance(exc, psycopg2.Error):
                raise
            raise self._translate(exc) from None

    def _translate(self, exc: psycopg2.Error) -> LoaderError:
        text = redact(first_line(exc), self.config.secrets())
        if isinstance(exc, psycopg2.errors.CardinalityViolation):
            return SourceQueryError("the source returned two rows for one window and key; "
                                    "refusing to let one overwrite the other")
        if isinstance(exc, (psycopg2.errors.QueryCanceled, psycopg2.errors.LockNotAvailable)):
            return SinkUnavailable(f"PostgreSQL at {self.config.describe_pg()} cancelled a statement of this run: "
                                   f"{text}", hint=CANCELLED_HINT.format(user=self._user()))
        if isinstance(exc, psycopg2.errors.DiskFull):
            return SinkRejected(f"PostgreSQL at {self.config.describe_pg()} has no room left on its disk: {text}",
                                hint=DISK_FULL_HINT)
        if isinstance(exc, psycopg2.errors.TransactionRollbackError):
            return SinkUnavailable(f"PostgreSQL at {self.config.describe_pg()} rolled this run's chunk back: {text}",
                                   hint="another session held what the chunk needed; the next run loads it")
        if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
            if "password authentication failed" in text or ("database" in text and "does not exist" in text):
                return SinkRejected(f"PostgreSQL at {self.config.describe_pg()}: {text}",
                                    hint="check PG_URL (user, password, database name)")
            hint = ""
            if text.startswith(("connection to server", "could not connect to server")):  # nothing answered
                hint = DOWN_HINT_HERE if self._here() else DOWN_HINT_THERE
            return SinkUnavailable(f"PostgreSQL at {self.config.describe_pg()} is unavailable: {text}", hint=hint)
        return SinkRejected(f"PostgreSQL: {text}")

    def _here(self) -> bool:
        """Whether PG_URL's server is on this machine (loopback or a local socket)."""
        try:
            host = pg_params(self.config.pg_url.reveal()).get("host") or ""
        except psycopg2.ProgrammingError:
            return False
        return all(h in ("", "localhost", "127.0.0.1", "::1") or h.startswith("/") for h in host.split(","))

    def _user(self) -> str:
        """The role PG_URL connects as (libpq's default without one: the user running the loader)."""
        try:
            return pg_params(self.config.pg_url.reveal()).get("user") or getpass.getuser()
        except psycopg2.ProgrammingError:
            return getpass.getuser()


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
