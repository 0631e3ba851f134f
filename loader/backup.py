"""`backup`: a consistent, compressed dump of the archive database in BACKUP_DIR, rotated, and
optionally copied off the Pi.

- Consistent: pg_dump reads one snapshot, so a dump taken while the hourly run writes is still whole.
- Compressed, version-matched: pg_dump's custom format (zlib) from the server's own major version.
- Atomic: written as .<name>.partial, read back with `pg_restore --list`, synced, then renamed; a dump
  under its final name is always complete, and a killed backup leaves only a .partial that the next
  backup removes.
- Somewhere else, rotated: dumps.py says where a dump may go and which ones rotation keeps (and the
  dump last restored from BACKUP_DIR, for BACKUP_KEEP_DAILY days after the restore).
- The service user's: run with sudo, what it writes in BACKUP_DIR still belongs to BACKUP_DIR's owner.
"""

import logging
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field

from .clock import check_synchronized
from .dumps import (
    Dump,
    check_location,
    choose_kept,
    directory_lock,
    dump_name,
    give_to_directory_owner,
    list_dumps,
    restored_from,
)
from .errors import BackupError, RemoteCopyFailed
from .humanize import human_size
from .pg import driver_errors
from .pgtools import PgTools, first_error

log = logging.getLogger(__name__)

DATABASE_SIZE = "SELECT pg_database_size(current_database())"


@dataclass
class BackupResult:
    dump: Dump
    seconds: float
    kept: list = field(default_factory=list)
    removed: list = field(default_factory=list)
    remote: str = ""

    def lines(self):
        out = [f"backup:  {self.dump.path} ({human_size(self.dump.size)}, {self.seconds:.1f}s)",
               f"kept:    {len(self.kept)} dump(s) (BACKUP_KEEP_DAILY/BACKUP_KEEP_WEEKLY); removed {len(self.removed)}"]
        out += [f"removed: {os.path.basename(p)}" for p in self.removed]
        if self.remote:
            out.append(f"copied:  to {self.remote}")
        return out


def needed_space(dumps, database_size):
    """Room to ask for before dumping: half again the last dump, or (first dump) half the database,
    whose indexes and free space a dump does not carry."""
    return int(dumps[0].size * 1.5) if dumps else database_size // 2


def backup(config, clock):
    directory = check_location(config)
    check_synchronized(clock, config.require_clock_sync, "backing up")  # names and rotation go by the clock
    tools = PgTools(config)
    started = time.monotonic()
    with directory_lock(directory):
        with driver_errors(config):
            conn = tools.connect()
            try:
                cur = conn.cursor()
                major = tools.server_major(cur)
                cur.execute(DATABASE_SIZE)
                database_size = cur.fetchone()[0]
            finally:
                conn.close()
        pg_dump = tools.program("pg_dump", major)
        for entry in os.scandir(directory):  # left by a backup that was killed
            if entry.name.startswith(f".{tools.dbname}-") and entry.name.endswith(".partial"):
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
                                      "--file", partial, "--dbname", tools.conninfo()])
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
            os.replace(partial, final)
            _fsync(directory)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        dumps = list_dumps(directory, tools.dbname)
        kept_stamps = choose_kept([d.stamp for d in dumps], config.backup_keep_daily, config.backup_keep_weekly)
        kept_stamps.add(stamp)  # the dump just made, even if a clock set back dates it before older ones
        restored = restored_from(directory, clock.now(), config.backup_keep_daily)
        result = BackupResult(dump=next(d for d in dumps if d.path == final), seconds=0.0)
        for dump in dumps:
            if dump.stamp in kept_stamps or os.path.basename(dump.path) == restored:
                result.kept.append(dump.path)
            else:
                os.unlink(dump.path)
                result.removed.append(dump.path)
                log.info("rotation removed %s", dump.path)
        result.seconds = time.monotonic() - started
        log.info("backup written: %s (%s)", final, human_size(result.dump.size))
    if config.backup_remote:
        copy_to_remote(config, final)
        result.remote = config.backup_remote
    return result


def copy_to_remote(config, path):
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


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
