"""`backup`: a consistent, compressed dump of the archive database in BACKUP_DIR, rotated, and
optionally copied off the Pi.

- Consistent: pg_dump reads one snapshot, so a dump taken while the hourly run writes is still whole.
- Compressed, version-matched: pg_dump's custom format (zlib) from the server's own major version.
- Atomic: written as .<name>.partial, read back with `pg_restore --list`, synced, then renamed; a dump
  under its final name is always complete, and a killed backup leaves only a .partial that the next
  backup removes.
- Somewhere else: BACKUP_DIR must be on another filesystem than / (unless BACKUP_REQUIRE_MOUNT=no):
  when a USB drive is not mounted its mount point is an empty directory on the SD card, and a backup
  written there dies with the card.
- Rotation: keep the newest dump of each of the BACKUP_KEEP_DAILY most recent days and of each of the
  BACKUP_KEEP_WEEKLY most recent ISO weeks; dumps are dated by the name the clock gave them.
"""

import contextlib
import fcntl
import getpass
import logging
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .clock import check_synchronized
from .errors import BackupError, LoaderError, RemoteCopyFailed
from .pgtools import PgTools, first_error
from .sink import Database

log = logging.getLogger(__name__)

STAMP = "%Y-%m-%dT%H%M%SZ"
LOCK_NAME = ".influx-archive.lock"
DATABASE_SIZE = "SELECT pg_database_size(current_database())"
NO_BACKUP_DIR_HELP = ("set BACKUP_DIR in .env to a directory on a USB drive or network mount; "
                      "README, section Backups, shows how")


@dataclass(frozen=True)
class Dump:
    path: str
    stamp: int  # epoch seconds, from the file name
    size: int


def dump_name(dbname, stamp):
    return f"{dbname}-{datetime.fromtimestamp(stamp, timezone.utc).strftime(STAMP)}.dump"


def list_dumps(directory, dbname):
    """The complete dumps of dbname in directory, newest first."""
    pattern = re.compile(re.escape(dbname) + r"-(\d{4}-\d\d-\d\dT\d{6}Z)\.dump")
    dumps = []
    for entry in os.scandir(directory):
        match = pattern.fullmatch(entry.name)
        if match and entry.is_file():
            stamp = int(datetime.strptime(match.group(1), STAMP).replace(tzinfo=timezone.utc).timestamp())
            dumps.append(Dump(entry.path, stamp, entry.stat().st_size))
    return sorted(dumps, key=lambda d: d.stamp, reverse=True)


def choose_kept(stamps, keep_daily, keep_weekly):
    """The stamps rotation keeps: the newest of each of the keep_daily most recent days that have a dump,
    and the newest of each of the keep_weekly most recent ISO weeks that have one (UTC)."""
    def day(stamp):
        return datetime.fromtimestamp(stamp, timezone.utc).date()

    def week(stamp):
        return day(stamp).isocalendar()[:2]

    kept = set()
    for period, count in ((day, keep_daily), (week, keep_weekly)):
        seen = set()
        for stamp in sorted(stamps, reverse=True):
            key = period(stamp)
            if key in seen:
                continue
            if len(seen) == count:
                break
            seen.add(key)
            kept.add(stamp)
    return kept


VOLATILE_FILESYSTEMS = ("tmpfs", "ramfs", "devtmpfs")


def filesystem_type(path):
    """The type of the filesystem holding path, from /proc/self/mountinfo (the longest mount point
    that contains it); '' where that cannot be read."""
    path = os.path.realpath(path)
    best, kind = "", ""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            for line in handle:
                fields = line.split()
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
                fstype = fields[fields.index("-") + 1]
                inside = path == point or path.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fstype
    except (OSError, ValueError, IndexError):
        return ""
    return kind


def check_location(config, for_writing=True):
    """BACKUP_DIR, refused unless it exists, is on a mounted drive (not the root filesystem, not
    memory) and, for writing, is writable by this user."""
    directory = config.backup_dir
    if not directory:
        raise BackupError("BACKUP_DIR is not set, so backups are off", hint=NO_BACKUP_DIR_HELP)
    if not os.path.isdir(directory):
        raise BackupError(f"BACKUP_DIR {directory} does not exist (is the drive mounted?)",
                          hint="mount the drive, or create the directory on it")
    if config.backup_require_mount and os.stat(directory).st_dev == os.stat("/").st_dev:
        raise BackupError(f"BACKUP_DIR {directory} is on the root filesystem (the SD card), not on a mounted "
                          f"drive: is the drive mounted?",
                          hint="mount it (README, Backups); to keep dumps on this disk anyway set "
                               "BACKUP_REQUIRE_MOUNT=no")
    kind = filesystem_type(directory)
    if config.backup_require_mount and kind in VOLATILE_FILESYSTEMS:
        raise BackupError(f"BACKUP_DIR {directory} is on {kind}, which lives in memory: a reboot deletes every dump",
                          hint="set BACKUP_DIR to a directory on a USB drive or network mount (README, Backups); "
                               "to keep dumps there anyway set BACKUP_REQUIRE_MOUNT=no")
    if for_writing and not os.access(directory, os.W_OK | os.X_OK):
        user = getpass.getuser()
        raise BackupError(f"BACKUP_DIR {directory} is not writable by user {user}",
                          hint=f"sudo chown {user}: {directory}")
    return directory


@contextlib.contextmanager
def directory_lock(directory):
    """One backup or verify per BACKUP_DIR at a time (rotation must not delete what another reads)."""
    path = os.path.join(directory, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LoaderError(f"another backup or verify is using {directory}; try again later") from None
        yield
    finally:
        os.close(fd)


def human_size(size):
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError


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
    db = Database(config)
    started = time.monotonic()
    with directory_lock(directory):
        with db.errors():
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
            _fsync(partial)
            os.replace(partial, final)
            _fsync(directory)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        dumps = list_dumps(directory, tools.dbname)
        kept_stamps = choose_kept([d.stamp for d in dumps], config.backup_keep_daily, config.backup_keep_weekly)
        kept_stamps.add(stamp)  # the dump just made, even if a clock set back dates it before older ones
        result = BackupResult(dump=next(d for d in dumps if d.path == final), seconds=0.0)
        for dump in dumps:
            if dump.stamp in kept_stamps:
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


def newest(config, dbname):
    """(newest dump or None, number of dumps) in BACKUP_DIR; raises BackupError where check_location does."""
    dumps = list_dumps(check_location(config, for_writing=False), dbname)
    return (dumps[0] if dumps else None), len(dumps)


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
