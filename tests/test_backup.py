"""`backup`: pg_dump to BACKUP_DIR on a real (loop-mounted) drive, rotation, refusals, the remote
copy."""

import contextlib
import os
import pathlib
import shutil
import uuid
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loader.backup import backup
from loader.dumps import LOCK_NAME, RESTORED_NAME, Dump, choose_kept, list_dumps, protected, rows_path
from loader.errors import BackupError, LoaderError
from loader.job import Job
from loader.restore import restore
from tests.support.archive import create_archive_database, superuser
from tests.support.harness import DAY, HOUR, FixedClock, cli, flux_env, load, make_config
from tests.support.servers import LoopDrive, server_or_skip

NOW = 1_790_000_000 - 1_790_000_000 % DAY + 3 * HOUR + 17 * 60  # 03:17 UTC, when install.sh's cron backs up


def test_rotation_keeps_exactly_the_configured_days_and_weeks_across_simulated_days(archive_url, standin,
                                                                                   backup_dir):
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir,
                         BACKUP_KEEP_DAILY=3, BACKUP_KEEP_WEEKLY=2)
    load(config, standin, NOW, hours=1)
    dbname = archive_url.rsplit("/", 1)[1]
    made = []
    for day in range(24):
        now = NOW + day * DAY
        backup(config, FixedClock(now))
        made.append(now)
        if day == 10:  # a manual backup in the evening: the newest of its day is the one kept
            backup(config, FixedClock(now + 15 * HOUR))
            made.append(now + 15 * HOUR)
            now += 15 * HOUR

        last_days = {datetime.fromtimestamp(now - k * DAY, timezone.utc).date() for k in range(3)}
        daily = {max(s for s in made if datetime.fromtimestamp(s, timezone.utc).date() == d)
                 for d in last_days if any(datetime.fromtimestamp(s, timezone.utc).date() == d for s in made)}
        weeks = sorted({datetime.fromtimestamp(s, timezone.utc).isocalendar()[:2] for s in made})[-2:]
        weekly = {max(s for s in made if datetime.fromtimestamp(s, timezone.utc).isocalendar()[:2] == w)
                  for w in weeks}
        kept = {d.stamp for d in list_dumps(backup_dir, dbname)}
        assert kept == daily | weekly, (day, sorted(kept), sorted(daily | weekly))
        made = sorted(kept)  # what rotation removed is gone for good
    assert len(kept) == 4  # three days, plus the newest of last week (this week's newest is today's)
    assert not [n for n in os.listdir(backup_dir) if n.endswith(".partial")]
    behind = backup(config, FixedClock(now - HOUR))  # a clock set back: the new dump is still kept
    assert os.path.exists(behind.dump.path) and behind.dump.path in behind.kept


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1_600_000_000, max_value=1_700_000_000), min_size=1, max_size=40, unique=True),
       st.integers(min_value=1, max_value=10), st.integers(min_value=0, max_value=6))
def test_choose_kept_keeps_the_newest_of_each_recent_day_and_week(stamps, daily, weekly):
    kept = choose_kept(stamps, daily, weekly)
    day = lambda s: datetime.fromtimestamp(s, timezone.utc).date()  # noqa: E731
    assert max(stamps) in kept and kept <= set(stamps)
    assert len(kept) <= daily + weekly
    for s in kept:  # each kept dump is the newest of its day
        assert s == max(t for t in stamps if day(t) == day(s))
    days = sorted({day(s) for s in stamps}, reverse=True)
    assert {day(s) for s in kept} >= set(days[:daily])


def test_missing_unmounted_or_full_backup_dir_is_refused(archive_url, standin, tmp_path, backup_dir):
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=str(tmp_path / "usb"))
    load(config, standin, NOW, hours=24, step=5)
    with pytest.raises(BackupError, match="does not exist"):
        backup(config, FixedClock(NOW))
    os.mkdir(tmp_path / "usb")  # the empty mount point, on the root filesystem: the drive is not mounted
    with pytest.raises(BackupError, match="root filesystem"):
        backup(config, FixedClock(NOW))
    assert os.listdir(tmp_path / "usb") == []
    allowed = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=str(tmp_path / "usb"),
                          BACKUP_REQUIRE_MOUNT="no")
    assert backup(allowed, FixedClock(NOW)).dump.size > 0

    env = flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=str(tmp_path / "usb"))
    refused = cli("backup", env=env)
    assert refused.returncode == 2 and "is the drive mounted?" in refused.stderr
    unset = cli("backup", env=flux_env(archive_url, standin))
    assert unset.returncode == 2 and "BACKUP_DIR is not set" in unset.stderr


def test_a_backup_dir_short_of_space_is_refused_before_and_during_the_dump(archive_url, standin):
    drive = server_or_skip(lambda: LoopDrive(size_kb=128))  # about 100 kB free
    small = pathlib.Path(drive.path)
    try:
        config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=str(small))
        load(config, standin, NOW, hours=48, step=5)
        with pytest.raises(BackupError, match="free; the dump needs about"):
            backup(config, FixedClock(NOW))  # the first dump asks for half the database's size
        dbname = archive_url.rsplit("/", 1)[1]
        (small / f"{dbname}-2026-09-20T031700Z.dump").write_bytes(b"x" * 1000)  # a small earlier dump
        with pytest.raises(BackupError, match="filled up during the dump"):
            backup(config, FixedClock(NOW))  # asks for 1.5 kB, needs far more: pg_dump hits ENOSPC
        assert sorted(os.listdir(small)) == [".influx-archive.lock", f"{dbname}-2026-09-20T031700Z.dump",
                                             "lost+found"]
    finally:
        drive.close()


def test_a_backup_dir_in_memory_is_refused_unless_allowed(archive_url, standin):
    in_memory = os.path.join("/dev/shm", "ia-backups-" + uuid.uuid4().hex[:8])  # tmpfs: gone at reboot
    os.mkdir(in_memory)
    try:
        config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=in_memory)
        load(config, standin, NOW, hours=1)
        refused = cli("backup", env=flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=in_memory))
        assert refused.returncode == 2
        assert refused.stderr.splitlines()[-1] == (
            f"influx-archive: BACKUP_DIR {in_memory} is on tmpfs, which lives in memory: a reboot deletes every "
            "dump (set BACKUP_DIR to a directory on a USB drive or network mount (README, Backups); to keep dumps "
            "there anyway set BACKUP_REQUIRE_MOUNT=no)")
        assert os.listdir(in_memory) == []
        allowed = cli("backup", env=flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=in_memory,
                                             BACKUP_REQUIRE_MOUNT="no"))
        assert allowed.returncode == 0, allowed.stderr
    finally:
        shutil.rmtree(in_memory, ignore_errors=True)


def test_a_wrong_pgpassword_in_the_environment_does_not_override_pg_urls_password(archive_url, standin,
                                                                                  backup_dir):
    """psql users often export PGPASSWORD; run uses PG_URL's password, and so must pg_dump and pg_restore."""
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir)
    load(config, standin, NOW, hours=1)
    env = flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=backup_dir, PGPASSWORD="not-the-password")
    made = cli("backup", env=env)
    assert made.returncode == 0, made.stderr
    verified = cli("restore", "--verify", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "restorable and identical" in verified.stdout


def test_remote_copy_with_rsync_and_its_failure_keeps_the_local_dump(archive_url, standin, backup_dir, tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir, BACKUP_REMOTE=f"{remote}/")
    load(config, standin, NOW, hours=1)
    made = backup(config, FixedClock(NOW))
    copied = remote / os.path.basename(made.dump.path)
    assert copied.read_bytes() == open(made.dump.path, "rb").read()

    env = flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=backup_dir,
                  BACKUP_REMOTE=str(tmp_path / "no" / "such" / "dir") + "/")
    failed = cli("backup", env=env)
    assert failed.returncode == 1, failed.stderr
    assert "but copying it to" in failed.stderr
    assert len(list_dumps(backup_dir, archive_url.rsplit("/", 1)[1])) == 2  # the local dumps stay


@contextlib.contextmanager
def as_user(uid, gid):
    """This process as another user for a while (root can switch back): the nightly backup run by the
    service user, in process."""
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_a_backup_run_with_sudo_leaves_backup_dir_to_the_service_user(archive_url, standin, backup_dir):
    """`sudo ... backup` once (root), then the nightly backup as the service user that owns BACKUP_DIR:
    the lock and the dump root made are the service user's, the nightly backup and its rotation work."""
    if os.geteuid() != 0:
        pytest.skip("switching users needs root")
    service = (65534, 65534)  # nobody: a user that is not root, owning BACKUP_DIR as install.sh makes it
    os.chown(backup_dir, *service)
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir, BACKUP_KEEP_DAILY=1,
                         BACKUP_KEEP_WEEKLY=0)
    load(config, standin, NOW, hours=1)
    by_root = backup(config, FixedClock(NOW - HOUR))
    for name in (by_root.dump.path, os.path.join(backup_dir, LOCK_NAME)):
        assert (os.stat(name).st_uid, os.stat(name).st_gid) == service, name
    with as_user(*service):
        nightly = backup(config, FixedClock(NOW))
    assert nightly.removed == [by_root.dump.path]  # rotation (one day kept) removed root's dump of the same day
    assert os.stat(nightly.dump.path).st_uid == service[0]


def test_a_backup_dir_lock_an_older_version_left_to_root_is_one_line_saying_what_to_run(archive_url, standin,
                                                                                        backup_dir):
    if os.geteuid() != 0:
        pytest.skip("switching users needs root")
    os.chown(backup_dir, 65534, 65534)
    lock = os.path.join(backup_dir, LOCK_NAME)
    with open(lock, "w"):
        pass
    os.chmod(lock, 0o600)  # as root made it before: unreadable to the service user
    config = make_config(archive_url, standin.url, BACKUP_DIR=backup_dir)
    with as_user(65534, 65534), pytest.raises(BackupError) as exc:
        backup(config, FixedClock(NOW))
    assert str(exc.value) == (f"{lock} belongs to root and user nobody cannot open it (left by a backup run with "
                              "sudo by an older version)")
    assert exc.value.hint == f"sudo chown nobody: {lock}"


def test_the_dump_a_restore_came_from_outlives_the_next_backup_of_its_day(archive_url, standin, backup_dir, pg_url):
    """A new Pi restored from this morning's dump: its first backup the same day would rotate that dump away
    (one per day is kept); it stays BACKUP_KEEP_DAILY days after the restore."""
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir, BACKUP_KEEP_DAILY=2,
                         BACKUP_KEEP_WEEKLY=0)
    load(config, standin, NOW, hours=1)
    morning = backup(config, FixedClock(NOW))
    restore(config, morning.dump.path, into="ia_restored_" + uuid.uuid4().hex[:8])
    evening = backup(config, FixedClock(NOW + 15 * HOUR))
    assert morning.dump.path in evening.kept and not evening.removed
    unmarked = make_config(archive_url, standin.url, BACKUP_DIR=backup_dir, BACKUP_KEEP_DAILY=2, BACKUP_KEEP_WEEKLY=0)
    os.unlink(os.path.join(backup_dir, RESTORED_NAME))  # without the restore, the day keeps its newest only
    assert backup(unmarked, FixedClock(NOW + 16 * HOUR)).removed == [evening.dump.path, morning.dump.path]


def test_a_reinstall_whose_first_load_fails_keeps_the_days_full_dump(archive_url, standin, backup_dir, pg_server):
    """As seen on a Pi: the archive purged, installed again the same day, its first load failing (exit 2) after a
    few hours; the install's backup rotated away the morning's dump of the whole archive. Now: no rotation after
    a failed load, the small dump says so, and once loads succeed again rotation still keeps the large dump (it
    holds more rows than every dump kept) while the small one goes."""
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir, BACKUP_KEEP_DAILY=1,
                         BACKUP_KEEP_WEEKLY=0)
    load(config, standin, NOW, hours=8, step=5)
    full = backup(config, FixedClock(NOW)).dump
    assert full.rows == 8 * 720 * 2 and os.path.exists(full.path)  # two devices' 5-second windows

    name = archive_url.rsplit("/", 1)[1]  # --uninstall --purge, then install.sh again: the same database, empty
    superuser(pg_server, f'DROP DATABASE "{name}" WITH (FORCE)')
    assert create_archive_database(pg_server, name) == archive_url
    standin.store = type(standin.store)()
    load(config, standin, NOW + 2 * HOUR, hours=1, step=5)
    standin.faults = [("status", 401, None)]
    with pytest.raises(LoaderError):
        Job(config, clock=FixedClock(NOW + 3 * HOUR)).run()

    after_failure = backup(config, FixedClock(NOW + 3 * HOUR))
    small = after_failure.dump
    assert small.rows < full.rows and small.size < full.size
    assert after_failure.removed == [] and os.path.exists(full.path)
    assert after_failure.smaller_than == full
    lines = after_failure.lines()
    assert f"warning: this archive holds less than {full.name} ({full.rows:,} rows): both are kept; if rows were " \
           f"lost, restore that one (README, Backups: restore)" in lines
    assert "kept:    all 2 dump(s): no rotation, the last load did not finish (`python -m loader status` says why), " \
           "so the archive may be partial" in lines

    load(config, standin, NOW + 4 * HOUR, hours=1, step=5)  # loads succeed again; the archive is still smaller
    later = backup(config, FixedClock(NOW + 4 * HOUR))
    assert later.removed == [small.path] and not os.path.exists(rows_path(small.path))
    assert later.protected == [full] and os.path.exists(full.path)
    assert f"kept:    {full.name}: it holds more than every newer dump kept (remove it by hand once not needed)" \
           in later.lines()
    assert {d.path for d in list_dumps(backup_dir, name)} == {full.path, later.dump.path}


def test_rotation_keeps_an_older_dump_larger_than_all_it_keeps_when_rows_are_unknown():
    """Dumps of an older version have no row count: their size decides."""
    old_large = Dump("/b/db-1.dump", 1, 500_000)
    kept = [Dump("/b/db-3.dump", 3, 40_000, 5_520)]
    old_small = Dump("/b/db-2.dump", 2, 30_000)
    assert protected([old_large, old_small], kept) == [old_large]
    counted = Dump("/b/db-0.dump", 0, 20_000, 124_000)  # smaller on disk, more rows: kept too
    assert protected([counted], kept) == [counted]
    assert protected([Dump("/b/db-0.dump", 0, 40_000, 5_520)], kept) == []  # the same archive: not protected
