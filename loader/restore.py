"""`restore`: a dump back into a database, and `restore --verify`: proof that the newest dump restores.

restore reads the whole dump first (a truncated or corrupted file is reported before any database
is touched) and, restoring the archive the loader loads, refuses one kept with other PG_SCHEMA/PG_TABLE,
TAGS or WINDOW (the first run after would fail), or FIELDS or VALID_RANGES (the runs after would keep
otherwise than the archive was kept), naming them; then it restores it in one transaction
into a new or empty database, never over a live one without --force (which replaces the dump's tables
with `pg_restore --clean`). A restore that fails
changes nothing, and a database it created for the purpose is dropped again.

verify restores the newest dump of BACKUP_DIR into a scratch database, compares each archive table
(5-second means and rollups) with the live one, and drops the scratch database. The live archive has
moved on since the dump, so the comparison covers what the loader never rewrites after the dump: the
windows that ended before the dump's watermark less LATE_DATA.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from . import archive
from .config import Config
from .dumps import check_location, directory_lock, list_dumps, mark_restored
from .errors import BackupDamaged, BackupError
from .humanize import human_size
from .invocation import command, settings_file
from .pg import TABLE_COLUMNS, Connection, Cursor, Database, driver_errors, one
from .pgtools import PgTools, first_error
from .rollups import LEVELS
from .sessions import same_rule
from .sink import RANGE_PREFIX, range_text
from .windows import floor_to, format_duration, rfc3339

log = logging.getLogger(__name__)

SCRATCH_MARK = "influx-archive: scratch database of restore --verify, dropped after the check"

DATABASE_EXISTS = "SELECT 1 FROM pg_database WHERE datname = %(name)s"
DATABASE_COMMENT = "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %(name)s"
USER_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
ORDER BY 1, 2
"""
WATERMARK = "SELECT extract(epoch FROM watermark)::bigint FROM {} WHERE target = %(target)s"
# An order-independent checksum of rows: the sum of 60 bits of the md5 of each row's columns (those
# the dump has: a column added to the live table later is not a difference). Rows are rendered as
# text with the same settings on both sides (see _session).
TABLE_CHECKSUM = """
SELECT count(*), coalesce(sum(('x' || left(md5(ROW({columns})::text), 15))::bit(60)::bigint), 0)::text
FROM {table} AS t WHERE %(cutoff)s::timestamptz IS NULL OR t.time < %(cutoff)s::timestamptz
"""

DAMAGED_HINT = "the file is truncated or corrupted; restore an older dump from BACKUP_DIR or the remote copy"
CREATEDB_HINT = ("the role in PG_URL lacks CREATEDB: re-run install.sh (it grants it), or create the "
                 "database first: sudo -u postgres createdb -O {user} {name}")
# verify makes and drops its scratch database itself, so only the grant helps there
VERIFY_CREATEDB_HINT = ("the role in PG_URL lacks CREATEDB, which verify needs for its scratch database: "
                        "re-run install.sh (it grants it), or: "
                        "sudo -u postgres psql -c 'ALTER ROLE \"{user}\" CREATEDB'")


@dataclass
class RestoreResult:
    file: str
    database: str
    created: bool
    tables: list = field(default_factory=list)  # (schema.table, rows)
    seconds: float = 0.0
    notes: list = field(default_factory=list)  # what the person may want to know (sessions_kept_otherwise)

    def lines(self) -> List[str]:
        how = "a new database" if self.created else "an existing database"
        out = [f"restored: {self.file} into {how} {self.database} in {self.seconds:.1f}s"]
        width = max((len(name) for name, _ in self.tables), default=0)
        out += [f"  {name:<{width}}  {rows:>10} rows" for name, rows in self.tables]
        return out + self.notes


def read_whole(tools: PgTools, pg_restore: str, path: str) -> None:
    """Read every byte of the dump as a restore would (the SQL goes nowhere): damage shows here."""
    code, errors = tools.run([pg_restore, "--file", os.devnull, path])
    if code != 0:
        raise BackupDamaged(f"{path} cannot be restored: {first_error(errors)}", hint=DAMAGED_HINT)


def pg_dump_names(name: str) -> Tuple[str, ...]:
    """The ways pg_dump may write a name: bare when it is a plain lower-case identifier (unless a keyword,
    which it quotes), double-quoted otherwise."""
    quoted = '"' + name.replace('"', '""') + '"'
    return (name, quoted) if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else (quoted,)


def dumped_table(schema_text: str, schema: str, table: str, statement: str) -> Optional[str]:
    """schema.table as the dump's schema writes it in `statement` ("CREATE TABLE {} (", "COMMENT ON TABLE {}
    IS "); None when it has no such statement."""
    return next((f"{s}.{t}" for s in pg_dump_names(schema) for t in pg_dump_names(table)
                 if statement.format(f"{s}.{t}") in schema_text), None)


def check_fits(config: Config, tools: PgTools, pg_restore: str, path: str) -> List[str]:
    """Refuse, before anything is changed, a dump whose archive the loader could not go on loading with
    these settings (the first run would fail on the table's key or width) or would go on keeping otherwise
    than it was kept: its PG_SCHEMA/PG_TABLE, TAGS (the key), WINDOW (the table's comment), FIELDS (a
    column the settings leave out) and VALID_RANGES (each field column's comment), read from the dump's
    schema. BackupError naming each setting to set."""
    with tempfile.NamedTemporaryFile("r", suffix=".sql", encoding="utf-8") as schema_sql:
        code, errors = tools.run([pg_restore, "--schema-only", "--file", schema_sql.name, path])
        if code != 0:
            raise BackupDamaged(f"{path} cannot be restored: {first_error(errors)}", hint=DAMAGED_HINT)
        text = schema_sql.read()
    want, problems = {}, []
    table = dumped_table(text, config.pg_schema, config.pg_table, "CREATE TABLE {} (")
    if table is None:
        table = f"{config.pg_schema}.{config.pg_table}"
        archives = sorted(set(re.findall(r"^COMMENT ON TABLE (\S+) IS 'WINDOW=", text, re.M)))
        found = ", ".join(archives) or "none of influx-archive's"
        if len(archives) != 1:  # none, or several to choose from: the rest is judged once one is named
            raise BackupError(f"{path} holds no table {table} (PG_SCHEMA.PG_TABLE); its archive tables: {found}; "
                              f"nothing was restored",
                              hint=f"set PG_SCHEMA and PG_TABLE to one of these in {settings_file()}" if archives else
                              "is it a dump made by `backup`?")
        problems.append(f"its archive is table {archives[0]}, not {table} (PG_SCHEMA.PG_TABLE)")
        table = archives[0]
        parts = re.fullmatch(r'("(?:[^"]|"")+"|[^.]+)\.(.+)', table)
        assert parts is not None  # pg_dump names every table schema-qualified
        schema, name = parts.groups()
        if _unquote(schema) != config.pg_schema:
            want["PG_SCHEMA"] = _unquote(schema)
        want["PG_TABLE"] = _unquote(name)
    key = re.search(rf"^ALTER TABLE ONLY {re.escape(table)}\s+ADD CONSTRAINT \S+ PRIMARY KEY \(([^)]*)\);", text, re.M)
    if key:
        tags = [c.strip().strip('"') for c in key.group(1).split(",") if c.strip().strip('"') != "time"]
        if tuple(tags) != tuple(config.tags):
            want["TAGS"] = ",".join(tags)
            problems.append(f"its archive keeps {'devices apart by ' + ', '.join(tags) if tags else 'one device'} "
                            f"(TAGS={','.join(tags)}), these settings "
                            f"{'TAGS=' + ','.join(config.tags) if config.tags else 'TAGS empty'}")
    comment = dumped_table_comment(text, table) or ""
    width = comment[len("WINDOW="):] if comment.startswith("WINDOW=") else None
    if width and width != format_duration(config.window):
        want["WINDOW"] = width
        problems.append(f"its rows are {width} wide, WINDOW is {format_duration(config.window)}")
    fields = dumped_fields(text, table)
    left_out = [f for f in fields if config.fields and f not in config.fields]
    if left_out:
        want["FIELDS"] = ",".join(list(config.fields) + left_out)
        problems.append(f"its archive keeps {', '.join(left_out)}, which FIELDS={','.join(config.fields)} leaves out")
    comments = dumped_column_comments(text, table)
    kept = {f: comments[f][len(RANGE_PREFIX):] for f in fields if comments.get(f, "").startswith(RANGE_PREFIX)}
    differ = {f: was for f, was in kept.items() if was != range_text(config.valid_ranges, f)}
    if differ:
        ranges = {f: was for f, was in kept.items() if was != "none"}
        ranges.update({f: range_text(config.valid_ranges, f) for f in config.valid_ranges if f not in kept})
        want["VALID_RANGES"] = ",".join(f"{f}={r}" for f, r in ranges.items()) or "none"
        problems.append("its readings were refused by other ranges: " + ", ".join(
            f"{f} {'kept every reading' if was == 'none' else 'outside ' + was}, here "
            f"{range_text(config.valid_ranges, f)}" for f, was in differ.items()))
    if problems:
        raise BackupError(f"{path} does not fit these settings: {'; '.join(problems)}; nothing was restored",
                          hint="set " + " and ".join(f"{k}={v}" for k, v in want.items())
                               + f" in {settings_file()} (the settings the archive was kept with), then restore again")
    return sessions_kept_otherwise(config, text)


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


_SQL_STRING = r"'((?:[^']|'')*)'"  # a string literal as pg_dump writes it, '' for a quote in it


def _literal(text: str) -> str:
    return text.replace("''", "'")


def dumped_table_comment(schema_text: str, table: str) -> Optional[str]:
    """`table`'s comment in the dump's schema; None without one."""
    found = re.search(rf"^COMMENT ON TABLE {re.escape(table)} IS {_SQL_STRING};", schema_text, re.M)
    return _literal(found.group(1)) if found else None


def dumped_fields(schema_text: str, table: str) -> List[str]:
    """The field columns (double precision) of `table`'s CREATE TABLE in the dump's schema, in order."""
    body = re.search(rf"^CREATE TABLE {re.escape(table)} \(\n(.*?)\n\);", schema_text, re.M | re.S)
    return [_unquote(m.group(1)) for m in re.finditer(r'^\s+("(?:[^"]|"")+"|\S+) double precision,?$',
                                                      body.group(1) if body else "", re.M)]


def dumped_column_comments(schema_text: str, table: str) -> Dict[str, str]:
    """{column: comment} of `table`'s columns in the dump's schema."""
    statement = rf"""^COMMENT ON COLUMN {re.escape(table)}\.("(?:[^"]|"")+"|[^\s"]+) IS {_SQL_STRING};"""
    return {_unquote(m.group(1)): _literal(m.group(2)) for m in re.finditer(statement, schema_text, re.M)}


# the sessions table's comment (sessions.Sessions.definition) token -> the setting it comes from
_SESSION_SETTINGS = {"SESSION_GAP": "SESSION_GAP", "SESSION_MIN": "SESSION_MIN", "spo2": "SESSION_SPO2",
                     "pulse": "SESSION_PULSE", "below": "ROLLUP_BELOW"}


def sessions_kept_otherwise(config: Config, schema_text: str) -> List[str]:
    """Lines saying which session settings the dump's sessions were computed with that these settings
    change (from the sessions table's comment): no reason to refuse, the first run computes them again,
    but the person may want the old ones. [] when they agree or the dump has no sessions."""
    table = dumped_table(schema_text, config.pg_schema, config.pg_table + "_sessions", "COMMENT ON TABLE {} IS ")
    if table is None:
        return []
    kept = dumped_table_comment(schema_text, table)
    if kept and not config.session_spo2:
        return ["note: the dump holds sessions (nights), and SESSION_SPO2=none here keeps none: they stay as "
                "restored and no run updates them (set SESSION_SPO2 to the SpO2 field to keep them current)"]
    ours = archive.sessions(Database(config), config).definition(kept)
    if not kept or same_rule(kept, ours):
        return []
    theirs, now = (dict(token.split("=", 1) for token in text.split() if "=" in token)
                   for text in (kept, ours))
    changed = []
    for token, setting in _SESSION_SETTINGS.items():
        if token in theirs and theirs[token] != now.get(token):
            value = theirs[token]
            if token in ("SESSION_GAP", "SESSION_MIN") and value.endswith("s") and value[:-1].isdigit():
                value = format_duration(int(value[:-1]))
            if token == "below":  # ROLLUP_BELOW may hold other fields' thresholds: name the SpO2 one only
                changed.append(f"no {config.session_spo2} threshold in ROLLUP_BELOW" if value == "none"
                               else f"{config.session_spo2}={value} in ROLLUP_BELOW")
            else:
                changed.append(f"{setting}={value}")
    why = f"settings that differ: {', '.join(changed)}" if changed else "an older rule of this loader"
    keep = f"; to keep them, set {' and '.join(changed)} ({settings_file()}) before it" if changed else ""
    return [f"note: the dump's sessions were computed with {why}; the next run computes every session again "
            f"with these settings (minutes for a year on a Pi){keep}"]


def _maintenance_connection(tools: PgTools) -> Connection:
    """A connection for CREATE/DROP DATABASE: PG_URL's database, or postgres when that one is gone."""
    for dbname in (None, "postgres", "template1"):
        try:
            return tools.connect(dbname, autocommit=True)
        except psycopg2.OperationalError as exc:
            if "does not exist" not in str(exc):
                raise
    raise psycopg2.OperationalError(f"database {tools.dbname} does not exist")


def _user_tables(cur: Cursor) -> List[tuple]:
    cur.execute(USER_TABLES)
    return cur.fetchall()


def _count_rows(tools: PgTools, dbname: str) -> List[Tuple[str, int]]:
    """[("schema.table", rows)] of a database's own tables."""
    conn = tools.connect(dbname)
    try:
        cur = conn.cursor()
        counts = []
        for schema, table in _user_tables(cur):
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table)))
            counts.append((f"{schema}.{table}", one(cur)[0]))
        return counts
    finally:
        conn.close()


def restore(config: Config, path: str, into: Optional[str] = None, force: bool = False,
            mark: Optional[str] = None) -> RestoreResult:
    """Restore the dump at path into database `into` (default: PG_URL's); returns a RestoreResult."""
    if not os.path.isfile(path):
        raise BackupError(f"{path}: no such file")
    tools = PgTools(config)
    target = into or tools.dbname
    started = time.monotonic()
    with driver_errors(config):
        maintenance = _maintenance_connection(tools)
    created = False
    try:
        with driver_errors(config):
            cur = maintenance.cursor()
            pg_restore = tools.program("pg_restore", tools.server_major(cur))
            read_whole(tools, pg_restore, path)
            notes = []
            if mark is None and target == tools.dbname:  # the archive the loader goes on loading
                notes = check_fits(config, tools, pg_restore, path)
            cur.execute(DATABASE_EXISTS, {"name": target})
            replace = False
            if cur.fetchone():
                conn = tools.connect(target)
                try:
                    tables = _user_tables(conn.cursor())
                finally:
                    conn.close()
                if tables and not force:
                    raise BackupError(
                        f"database {target} already holds {len(tables)} table(s), e.g. {'.'.join(tables[0])}; "
                        f"not restoring over it",
                        hint="restore into a new database with --into NAME, or replace its tables with --force")
                replace = bool(tables)
            else:
                try:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
                except psycopg2.errors.InsufficientPrivilege:
                    raise BackupError(f"cannot create database {target}",
                                      hint=(VERIFY_CREATEDB_HINT if mark else CREATEDB_HINT).format(
                                          name=target, user=tools.params.get("user", "<PG_URL's user>"))) from None
                created = True
                if mark:
                    cur.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(target),
                                                                               sql.Literal(mark)))
        argv = [pg_restore, "--dbname", tools.conninfo(target), "--no-owner", "--no-privileges",
                "--single-transaction", "--exit-on-error"]
        if replace:
            argv += ["--clean", "--if-exists"]
        code, errors = tools.run(argv + [path])
        if code != 0:
            raise BackupError(f"restoring {path} into {target} failed, nothing was changed: {first_error(errors)}")
        with driver_errors(config):
            counts = _count_rows(tools, target)
    except BaseException:
        if created:
            try:
                drop_database(maintenance, target)
            except psycopg2.Error as exc:  # the restore's own error is the one to report
                log.warning("could not drop database %s after the failed restore: %s", target, exc)
        raise
    finally:
        maintenance.close()
    directory, came_from = config.backup_dir, os.path.dirname(os.path.abspath(path))
    if mark is None and directory and os.path.isdir(directory) and os.path.samefile(came_from, directory):
        mark_restored(directory, path)  # rotation keeps it a while: the last copy of the Pi it came from
    return RestoreResult(path, target, created, counts, time.monotonic() - started, notes)


def drop_database(conn: Connection, name: str) -> None:
    conn.cursor().execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


@dataclass
class TableCheck:
    name: str
    cutoff: Optional[int]  # compared rows start before this (None: all rows)
    backup_rows: int
    live_rows: int
    same: bool


@dataclass
class VerifyResult:
    file: str
    size: int
    restored: Optional[RestoreResult] = None
    checks: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.same for c in self.checks)

    def lines(self) -> List[str]:
        out = [f"verify:   {self.file} ({human_size(self.size)})"]
        if self.restored:
            out += self.restored.lines()
        for c in self.checks:
            scope = f"before {rfc3339(c.cutoff)}" if c.cutoff is not None else "all rows"
            verdict = "identical to the live archive" if c.same else (
                f"DIFFERS from the live archive ({c.backup_rows} rows vs {c.live_rows} live)")
            out.append(f"  {c.name}: {c.backup_rows} rows {scope}, {verdict}")
        if not self.checks:
            out.append("  no archive table in the dump to compare")
        out.append("verdict:  " + ("restorable and identical" if self.ok else
                                   "NOT verified: the dump does not match the live archive"))
        return out


def verify(config: Config, path: Optional[str] = None) -> VerifyResult:
    """Restore a dump (default: the newest in BACKUP_DIR) into a scratch database, compare, drop it."""
    tools = PgTools(config)
    if path is None:
        directory = check_location(config, for_writing=False)
        dumps = list_dumps(directory, tools.dbname)
        if not dumps:
            raise BackupError(f"no dump of {tools.dbname} in {directory} to verify",
                              hint=f"make one: {command('backup')}")
        path = dumps[0].path
    else:
        directory = os.path.dirname(os.path.abspath(path))
    scratch = f"{tools.dbname[:56]}_verify"
    result = VerifyResult(path, os.path.getsize(path) if os.path.isfile(path) else 0)
    lock = directory_lock(directory) if os.access(directory, os.W_OK) else contextlib.nullcontext()
    with lock:
        with driver_errors(config):
            maintenance = _maintenance_connection(tools)
        scratch_is_ours = False
        try:
            with driver_errors(config):
                _drop_leftover_scratch(maintenance, scratch)
            scratch_is_ours = True
            result.restored = restore(config, path, into=scratch, mark=SCRATCH_MARK)
            present = {name for name, _ in result.restored.tables}
            with driver_errors(config):
                result.checks = _compare(config, tools, scratch, present)
        finally:
            if scratch_is_ours:
                with driver_errors(config):
                    drop_database(maintenance, scratch)
            maintenance.close()
    return result


def _drop_leftover_scratch(conn: Connection, name: str) -> None:
    cur = conn.cursor()
    cur.execute(DATABASE_COMMENT, {"name": name})
    row = cur.fetchone()
    if row is None:
        return
    if row[0] != SCRATCH_MARK:
        raise BackupError(f"database {name} exists and is not influx-archive's scratch database; not touching it",
                          hint=f"rename or drop it yourself; verify restores into {name}")
    drop_database(conn, name)  # a verify killed before it could clean up


def _session(conn: Connection) -> Cursor:
    # rows are compared as text: render them the same way in both databases
    cur = conn.cursor()
    cur.execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 1")
    return cur


def _compare(config: Config, tools: PgTools, scratch: str, present: Set[str]) -> List[TableCheck]:
    """Counts and checksums of each archive table (present: the restored "schema.table" names),
    restored vs live, over the rows both must share."""
    schema, base = config.pg_schema, config.pg_table
    tables = [(base, config.window)] + [(f"{base}_{suffix}", width) for suffix, width in LEVELS]
    restored, live = tools.connect(scratch, autocommit=True), tools.connect(autocommit=True)
    try:
        restored_cur, live_cur = _session(restored), _session(live)
        watermark = None
        if f"{schema}.influx_archive_state" in present:
            restored_cur.execute(sql.SQL(WATERMARK).format(sql.Identifier(schema, "influx_archive_state")),
                                 {"target": f"{schema}.{base}"})
            row = restored_cur.fetchone()
            watermark = row[0] if row else None
        checks = []
        for table, width in tables:
            name = f"{schema}.{table}"
            if name not in present:
                continue
            cutoff = floor_to(watermark - config.late_data, width) if watermark is not None else None
            args = {"cutoff": rfc3339(cutoff) if cutoff is not None else None}
            restored_cur.execute(TABLE_COLUMNS, {"table": sql.Identifier(schema, table).as_string(restored_cur)})
            columns = [sql.SQL("t.{}").format(sql.Identifier(c)) for c, _ in restored_cur.fetchall()]
            statement = sql.SQL(TABLE_CHECKSUM).format(table=sql.Identifier(schema, table),
                                                       columns=sql.SQL(", ").join(columns))
            restored_cur.execute(statement, args)
            backup_rows, backup_sum = one(restored_cur)
            try:
                live_cur.execute(statement, args)
                live_rows, live_sum = one(live_cur)
            except (psycopg2.errors.UndefinedTable, psycopg2.errors.UndefinedColumn):
                live_rows, live_sum = 0, None
            checks.append(TableCheck(name, cutoff, backup_rows, live_rows,
                                     backup_rows == live_rows and backup_sum == live_sum))
        return checks
    finally:
        restored.close()
        live.close()
