"""BACKUP_DIR and the dumps in it: where dumps may go, their names, listing, the rotation rule and the
directory lock. `backup`, `restore` and `status` share this model; none of them imports another.

- Somewhere else: BACKUP_DIR must be on another filesystem than / (unless BACKUP_REQUIRE_MOUNT=no):
  when a USB drive is not mounted its mount point is an empty directory on the SD card, and a backup
  written there dies with the card. tmpfs is refused too: a reboot empties it.
- Rotation: keep the newest dump of each of the BACKUP_KEEP_DAILY most recent days and of each of the
  BACKUP_KEEP_WEEKLY most recent ISO weeks; dumps are dated by the name the clock gave them. It never
  removes a dump that is larger than, or holds more archive rows than, every dump it keeps (a reinstall's
  small first archive must not cost the day's full dump): see `protected`.
- Rows: each dump's count of PG_TABLE rows, read in the dump's own snapshot, is kept beside it in
  .<dump name>.rows (a dump made by an older version has none; its size still counts).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Iterator, List, Optional, Sequence, Set, Tuple

from .errors import BackupError, LoaderError
from .invocation import settings_file

if TYPE_CHECKING:
    from .config import Config

STAMP = "%Y-%m-%dT%H%M%SZ"
LOCK_NAME = ".influx-archive.lock"
NO_BACKUP_DIR_HELP = ("set BACKUP_DIR in {settings} to a directory on a USB drive or network mount; "
                      "README, section Backups, shows how")


@dataclass(frozen=True)
class Dump:
    path: str
    stamp: int  # epoch seconds, from the file name
    size: int
    rows: Optional[int] = None  # PG_TABLE's rows in it (its .rows file), None where unknown

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def rows_path(path: str) -> str:
    """Where the row count of the dump at path is kept: a hidden file beside it."""
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.rows")


def write_rows(path: str, rows: Optional[int]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"{rows}\n")


def _read_rows(path: str) -> Optional[int]:
    try:
        with open(rows_path(path), encoding="utf-8") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def remove_dump(dump: Dump) -> None:
    os.unlink(dump.path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(rows_path(dump.path))


def protected(removable: Sequence[Dump], kept: Sequence[Dump]) -> List[Dump]:
    """The dumps of removable that rotation keeps anyway: each larger than every dump in kept, or holding
    more rows than every one of them whose rows are known."""
    largest = max((d.size for d in kept), default=-1)
    most = max((d.rows for d in kept if d.rows is not None), default=-1)
    return [d for d in removable if d.size > largest or (d.rows is not None and d.rows > most)]


def dump_name(dbname: str, stamp: float) -> str:
    return f"{dbname}-{datetime.fromtimestamp(stamp, timezone.utc).strftime(STAMP)}.dump"


def list_dumps(directory: str, dbname: str) -> List[Dump]:
    """The complete dumps of dbname in directory, newest first."""
    pattern = re.compile(re.escape(dbname) + r"-(\d{4}-\d\d-\d\dT\d{6}Z)\.dump")
    dumps = []
    for entry in os.scandir(directory):
        match = pattern.fullmatch(entry.name)
        if match and entry.is_file():
            stamp = int(datetime.strptime(match.group(1), STAMP).replace(tzinfo=timezone.utc).timestamp())
            dumps.append(Dump(entry.path, stamp, entry.stat().st_size, _read_rows(entry.path)))
    return sorted(dumps, key=lambda d: d.stamp, reverse=True)


def choose_kept(stamps: Sequence[int], keep_daily: int, keep_weekly: int) -> Set[int]:
    """The stamps rotation keeps: the newest of each of the keep_daily most recent days that have a dump,
    and the newest of each of the keep_weekly most recent ISO weeks that have one (UTC)."""
    def day(stamp: int) -> date:
        return datetime.fromtimestamp(stamp, timezone.utc).date()

    def week(stamp: int) -> Tuple[int, int]:
        return day(stamp).isocalendar()[:2]

    kept = set()
    for period, count in ((day, keep_daily), (week, keep_weekly)):
        seen: set = set()
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


RESTORED_NAME = ".influx-archive.restored"  # names the dump of BACKUP_DIR that `restore` last restored


def mark_restored(directory: str, path: str) -> None:
    """Record that the dump at path, in BACKUP_DIR, was restored (its file's time is the restore's)."""
    marker = os.path.join(directory, RESTORED_NAME)
    with open(marker, "w", encoding="utf-8") as handle:
        handle.write(os.path.basename(path) + "\n")
    give_to_directory_owner(marker, directory)


def restored_from(directory: str, now: float, keep_daily: int) -> Optional[str]:
    """The name of the dump last restored from BACKUP_DIR if that was less than keep_daily days ago (rotation
    keeps it so long, whatever else that day made), else None."""
    marker = os.path.join(directory, RESTORED_NAME)
    try:
        if now - os.stat(marker).st_mtime >= keep_daily * 86400:
            return None
        with open(marker, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def filesystem_type(path: str) -> str:
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


def check_location(config: Config, for_writing: bool = True) -> str:
    """BACKUP_DIR, refused unless it exists, is on a mounted drive (not the root filesystem, not
    memory) and, for writing, is writable by this user."""
    directory = config.backup_dir
    if not directory:
        raise BackupError("BACKUP_DIR is not set, so backups are off",
                          hint=NO_BACKUP_DIR_HELP.format(settings=settings_file()))
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
        user = _me()
        raise BackupError(f"BACKUP_DIR {directory} is not writable by user {user}",
                          hint=f"sudo chown {user}: {directory}")
    return directory


def give_to_directory_owner(path: str, directory: str) -> None:
    """A file made in BACKUP_DIR by root (`sudo ... backup`) becomes its owner's (the service user's, as
    install.sh makes it), so the nightly backup, rotation and verify can use it; others' files stay."""
    if os.geteuid() != 0:
        return
    owner = os.stat(directory)
    made = os.stat(path)
    if (made.st_uid, made.st_gid) != (owner.st_uid, owner.st_gid):
        os.chown(path, owner.st_uid, owner.st_gid)


@contextlib.contextmanager
def directory_lock(directory: str) -> Iterator[None]:
    """One backup or verify per BACKUP_DIR at a time (rotation must not delete what another reads). The
    lock file holds nothing: readable by all, it is locked through a read-only descriptor whoever runs."""
    path = os.path.join(directory, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except PermissionError:
        owner = _owner(path)
        raise BackupError(f"{path} belongs to {owner} and user {_me()} cannot open it (left by a "
                          f"backup run with sudo by an older version)",
                          hint=f"sudo chown {_me()}: {path}") from None
    give_to_directory_owner(path, directory)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LoaderError(f"another backup or verify is using {directory}; try again later") from None
        yield
    finally:
        os.close(fd)


def _me() -> str:
    """This process's user name, as the system knows it (not $USER, which sudo and cron may leave)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _owner(path: str) -> str:
    try:
        return pwd.getpwuid(os.stat(path).st_uid).pw_name
    except (KeyError, OSError):
        return "another user"


def newest(config: Config, dbname: str) -> Tuple[Optional[Dump], int]:
    """(newest dump or None, number of dumps) in BACKUP_DIR; raises BackupError where check_location does."""
    dumps = list_dumps(check_location(config, for_writing=False), dbname)
    return (dumps[0] if dumps else None), len(dumps)
