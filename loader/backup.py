"""`backup`: a consistent, compressed dump of the archive database in BACKUP_DIR, rotated, and
optionally copied off the Pi.

- Consistent: pg_dump reads one snapshot, so a dump taken while the hourly run writes is still whole.
- Compressed, version-matched: pg_dump's custom format (zlib) from the server's own major version.
- Atomic: written as .<name>.partial, read back with `pg_restore --list`, synced, then renamed; a dump
  under its final name is always complete, and a killed backup leaves only a .partial that the next
  backup removes.
- Somewhere else, rotated: dumps.py says where a dump may go and which ones rotation keeps (and the
  dump last restored from BACKUP_DIR, for BACKUP_KEEP_DAILY days after the restore).
- Never the best copy lost: rotation keeps any dump larger than, or holding more rows than, all it keeps;
  it does not run at all while the last load failed or is still going (the archive may be partial); a dump
  of an archive smaller than the newest dump's says so.
- The service user's: run with sudo, what it writes in BACKUP_DIR still belongs to BACKUP_DIR's owner.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

from psycopg2 import sql

from .clock import Clock, check_synchronized
from .config import Config
from .dumps import (
    Dump,
    check_location,
    choose_kept,
    directory_lock,
    dump_name,
    give_to_directory_owner,
    list_dumps,
    protected,
    remove_dump,
    restored_from,
    rows_path,
    write_rows,
)
from .errors import BackupError, RemoteCopyFailed
from .humanize import human_size
from .invocation import command
from .pg import Cursor, Database, driver_errors, one, table_exists
from .pgtools import PgTools, first_error
from .state import State, set_search_path

log = logging.getLogger(__name__)

DATABASE_SIZE = "SELECT pg_database_size(current_database())"
EXPORT_SNAPSHOT = "SELECT pg_export_snapshot()"
LOADS = ("run", "backfill")


@dataclass
class BackupResult:
    dump: Dump
    seconds: float
    kept: list = field(default_factory=list)
    removed: list = field(default_factory=list)
    remote: str = ""
    smaller_than: Optional[Dump] = None  # the newest earlier dump, where this one holds less than it
    no_rotation: str = ""  # why rotation removed nothing, when it did not run
    protected: list = field(default_factory=list)  # dumps kept only because they hold more than the rest

    def lines(self) -> List[str]:
        rows = f", {self.dump.rows:,} rows" if self.dump.rows is not None else ""
        out = [f"backup:  {self.dump.path} ({human_size(self.dump.size)}{rows}, {self.seconds:.1f}s)"]
        if self.smaller_than is not None:
            other = self.smaller_than
            held = f"{other.rows:,} rows" if other.rows is not None else human_size(other.size)
            out.append(f"warning: this archive holds less than {other.name} ({held}): both are kept; if rows were "
                       f"lost, restore that one (README, Backups: restore)")
        if self.no_rotation:
            out.append(f"kept:    all {len(self.kept)} dump(s): no rotation, {self.no_rotation}")
        else:
            out.append(f"kept:    {len(self.kept)} dump(s) (BACKUP_KEEP_DAILY/BACKUP_KEEP_WEEKLY); "
                       f"removed {len(self.removed)}")
        out += [f"kept:    {d.name}: it holds more than every newer dump kept (remove it by hand once "
                f"not needed)" for d in self.protected]
        out += [f"removed: {os.path.basename(p)}" for p in self.removed]
        if self.remote:
            out.append(f"copied:  to {self.remote}")
        return out


def needed_space(dumps: Sequence[Dump], database_size: int) -> int:
    """Room to ask for before dumping: half again the last dump, or (first dump) half the database,
    whose indexes and free space a dump does not carry."""
    return int(dumps[0].size * 1.5) if dumps else database_size // 2


def backup(config: Config, clock: Clock) -> BackupResult:
    directory = check_location(config)
    check_synchronized(clock, config.require_clock_sync, "backing up")  # names and rotation go by the clock
    tools = PgTools(config)
    started = time.monotonic()
    with directory_lock(directory), driver_errors(config), _snapshot(tools, config) as (cur, snapshot):
        major = tools.server_major(cur)
        cur.execute(DATABASE_SIZE)
        database_size = one(cur)[0]
        rows, last_load = _archive_state(cur, config)
        pg_dump = tools.program("pg_dump", major)
        for entry in os.scandir(directory):  # left by a backup that was killed, or by a dump removed by hand
            if entry.name.startswith(f".{tools.dbname}-") and (
                    entry.name.endswith(".partial")
                    or (entry.name.endswith(".dump.rows") and not os.path.exists(
                        os.path.join(directory, entry.name[1:-len(".rows")])))):
                os.unlink(entry.path)
        dumps = list_dumps(directory, tools.dbname)
        need, free = needed_space(dumps, database_size), shutil.disk_usage(directory).free
        if free < need:
            raise BackupError(f"BACKUP_DIR {directory} has {human_size(free)} free; the dump needs about "
                              f"{human_size(need)}", hint="make room there, or lower BACKUP_KEEP_DAILY/_WEEKLY")
        stamp = int(clock.now())
        final = os.path.join(directory, dump_name(tools.dbname, stamp))
        partial = os.path.join(directory, f".{os.path.basename(final)}.partial")
        log.info("dumping database %s with %s to %s", tools.dbname, pg_dump, final)
        try:
            code, errors = tools.run([pg_dump, "--format=custom", "--no-owner", "--no-privileges",
                                      f"--snapshot={snapshot}", "--file", partial, "--dbname", tools.conninfo()])
            if code != 0:
                if "No space left on device" in errors:
                    raise BackupError(f"BACKUP_DIR {directory} filled up during the dump; no dump was kept",
                                      hint="make room there, or lower BACKUP_KEEP_DAILY/_WEEKLY")
                raise BackupError(f"pg_dump failed: {first_error(errors)}")
            code, errors = tools.run([tools.program("pg_restore", major), "--list", partial])
            if code != 0:
                raise BackupError(f"the new dump cannot be read back ({first_error(errors)}); no dump was kept",
                                  hint="check the drive (dmesg) and run backup again")
            os.chmod(partial, 0o600)  # health data: readable by the service user only, like .env
            give_to_directory_owner(partial, directory)
            _fsync(partial)
            if rows is not None:  # before the dump gets its name: a named dump never lacks its count
                write_rows(rows_path(final), rows)
                give_to_directory_owner(rows_path(final), directory)
            os.replace(partial, final)
            _fsync(directory)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        result = _rotate(config, clock, directory, tools.dbname, final, last_load)
        result.seconds = time.monotonic() - started
        log.info("backup written: %s (%s)", final, human_size(result.dump.size))
    if config.backup_remote:
        copy_to_remote(config, final)
        result.remote = config.backup_remote
    return result


@contextlib.contextmanager
def _snapshot(tools: PgTools, config: Config) -> Iterator[Tuple[Cursor, str]]:
    """A cursor in a repeatable-read transaction whose snapshot pg_dump shares (--snapshot): the rows counted
    are exactly the rows dumped. The transaction stays open until the dump is written."""
    conn = tools.connect()
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        cur = conn.cursor()
        cur.execute(EXPORT_SNAPSHOT)
        yield cur, one(cur)[0]
    finally:
        conn.close()


def _archive_state(cur: Cursor, config: Config) -> Tuple[Optional[int], Optional[str]]:
    """(PG_TABLE's rows, or None where it does not exist; the newest load's outcome, or None), as the dump
    sees them. A load still going reads 'running'; one whose process died, 'abandoned'."""
    db = Database(config)
    set_search_path(cur, config.pg_schema)
    rows = None
    if table_exists(cur, db.table.as_string(cur)):
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(db.table))
        rows = one(cur)[0]
    if not table_exists(cur, "influx_archive_runs"):
        return rows, None
    state = State(config.pg_schema, db.target)
    active = state.active(cur)
    loads = [r for r in state.last_runs(cur, active, limit=50) if r["command"] in LOADS]
    if not loads:
        return rows, None
    outcome = loads[0]["outcome"]
    return rows, ("running" if outcome == "running" and active else outcome)


def _rotate(config: Config, clock: Clock, directory: str, dbname: str, final: str,
            last_load: Optional[str]) -> BackupResult:
    """Remove what rotation does not keep, unless the last load failed or is still going; never a dump
    holding more than every dump kept."""
    dumps = list_dumps(directory, dbname)
    made = next(d for d in dumps if d.path == final)
    result = BackupResult(dump=made, seconds=0.0)
    earlier = [d for d in dumps if d.path != final]
    if earlier and _holds_less(made, earlier[0]):
        result.smaller_than = earlier[0]
        log.warning("the new dump %s holds less than %s", made.name, earlier[0].name)
    if last_load in ("failed", "abandoned", "interrupted", "running"):
        result.no_rotation = (f"the last load {'is still going' if last_load == 'running' else 'did not finish'} "
                              f"(`{command('status')}` says why), so the archive may be partial")
        result.kept = [d.path for d in dumps]
        return result
    kept_stamps = choose_kept([d.stamp for d in dumps], config.backup_keep_daily, config.backup_keep_weekly)
    kept_stamps.add(made.stamp)  # the dump just made, even if a clock set back dates it before older ones
    restored = restored_from(directory, clock.now(), config.backup_keep_daily)
    kept = [d for d in dumps if d.stamp in kept_stamps or d.name == restored]
    removable = [d for d in dumps if d not in kept]
    result.protected = protected(removable, kept)
    for dump in dumps:
        if dump in kept or dump in result.protected:
            result.kept.append(dump.path)
        else:
            remove_dump(dump)
            result.removed.append(dump.path)
            log.info("rotation removed %s", dump.path)
    return result


def _holds_less(made: Dump, other: Dump) -> bool:
    if made.rows is not None and other.rows is not None:
        return made.rows < other.rows
    return made.size < other.size


def copy_to_remote(config: Config, path: str) -> None:
    """rsync the dump to BACKUP_REMOTE over the user's own SSH setup (keys, known_hosts: not ours)."""
    rsync = shutil.which("rsync")
    if not rsync:
        raise RemoteCopyFailed(f"the dump is in {path}, but rsync is not installed to copy it to BACKUP_REMOTE",
                               hint="sudo apt-get install rsync")
    argv = [rsync, "--times", "--partial-dir=.rsync-partial", "--timeout=300",
            "-e", shlex.join(config.backup_remote_ssh), path, config.backup_remote]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=6 * 3600,
                              check=False)
        problem = first_error(done.stderr) if done.returncode else ""
    except (OSError, subprocess.TimeoutExpired) as exc:
        problem = str(exc)
    if problem:
        raise RemoteCopyFailed(f"the dump is in {path}, but copying it to {config.backup_remote} failed: {problem}",
                               hint="test it as this user: rsync -e '" + shlex.join(config.backup_remote_ssh)
                                    + f"' {path} {config.backup_remote}")
    log.info("copied %s to %s", os.path.basename(path), config.backup_remote)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
