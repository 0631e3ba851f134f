"""`restore` and `verify`: every row of every table comes back, never over a live archive without
--force, damage is found and nothing is left behind."""

import os
import subprocess

import psycopg2
import pytest

from loader import archive
from loader.backup import backup
from loader.errors import BackupDamaged, BackupError
from loader.job import Job
from loader.pg import Database
from loader.restore import SCRATCH_MARK, dumped_column_comments, dumped_fields, restore, sessions_kept_otherwise, verify
from tests.support.archive import LOADER, everything, superuser
from tests.support.harness import DAY, HOUR, FixedClock, cli, flux_env, load, make_config

NOW = 1_790_000_000 - 1_790_000_000 % DAY + 3 * HOUR + 17 * 60  # 03:17 UTC, when install.sh's cron backs up


def damage(path, how):
    data = open(path, "rb").read()
    if how == "truncated":
        data = data[: len(data) * 2 // 3]
    elif how == "corrupted":
        middle = len(data) // 2
        data = data[:middle] + bytes(b ^ 0x5A for b in data[middle:middle + 4096]) + data[middle + 4096:]
    else:
        data = b"this is not a pg_dump archive\n" * 100
    with open(path, "wb") as handle:
        handle.write(data)


def test_backup_drop_restore_gives_back_every_row_of_every_table(pg_server, archive_url, standin, backup_dir,
                                                                  monkeypatch):
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir)
    load(config, standin, NOW)
    before = everything(archive_url)
    assert before["pox_five_second_mean"] and before["pox_five_second_mean_1d"] and before["influx_archive_state"]

    launched, real_run = [], subprocess.run

    def recording_run(argv, **kwargs):
        env = kwargs.get("env") or {}
        launched.append((argv, env.get("PGPASSFILE") and open(env["PGPASSFILE"]).read()))
        return real_run(argv, **kwargs)
    monkeypatch.setattr("loader.pgtools.subprocess.run", recording_run)
    made = backup(config, FixedClock(NOW))
    dumped = [(argv, passfile) for argv, passfile in launched if argv[0].endswith("/pg_dump")]
    assert dumped and all("secret-pw-1" not in " ".join(argv) for argv, _ in launched)  # never on a command line
    assert dumped[0][1] == "*:*:*:*:secret-pw-1\n"  # but in a private passfile
    assert os.stat(made.dump.path).st_mode & 0o777 == 0o600
    assert os.path.basename(made.dump.path) == f"{archive_url.rsplit('/', 1)[1]}-2026-09-21T031700Z.dump"
    name = os.path.basename(made.dump.path)
    assert sorted(os.listdir(backup_dir)) == sorted([name, f".{name}.rows", ".influx-archive.lock"])
    with open(os.path.join(backup_dir, f".{name}.rows"), encoding="utf-8") as handle:
        assert int(handle.read()) == len(before["pox_five_second_mean"]) == made.dump.rows  # the rows it holds

    dbname = archive_url.rsplit("/", 1)[1]
    superuser(pg_server, f'DROP DATABASE "{dbname}"')  # the SD card died
    superuser(pg_server, f'CREATE DATABASE "{dbname}" OWNER {LOADER}')  # install.sh on the new Pi
    result = restore(config, made.dump.path)
    assert not result.created and result.database == dbname
    assert dict(result.tables)["public.pox_five_second_mean"] == len(before["pox_five_second_mean"])
    assert everything(archive_url) == before

    # the restored archive carries its watermark: the next run continues where the dump left off
    later = Job(config, clock=FixedClock(NOW + HOUR)).run()
    # the watermark less LATE_DATA from the start of its hour, not a fresh INITIAL_LOOKBACK
    assert later.start == NOW - NOW % HOUR - HOUR


def test_restore_into_a_new_database_never_over_a_live_one_without_force(archive_url, standin, backup_dir):
    env = flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=backup_dir)
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir)
    load(config, standin, NOW)
    dump = backup(config, FixedClock(NOW)).dump.path
    copy = archive_url.rsplit("/", 1)[1] + "_copy"

    into_new = cli("restore", dump, "--into", copy, env=env)
    assert into_new.returncode == 0, into_new.stderr
    assert f"into a new database {copy}" in into_new.stdout and "public.pox_five_second_mean" in into_new.stdout
    assert everything(archive_url.rsplit("/", 1)[0] + "/" + copy) == everything(archive_url)

    over_live = cli("restore", dump, env=env)
    assert over_live.returncode == 2
    assert "already holds" in over_live.stderr and "--force" in over_live.stderr

    conn = psycopg2.connect(archive_url)  # a change after the dump, undone by restoring it with --force
    conn.cursor().execute("DELETE FROM pox_five_second_mean WHERE time < (SELECT min(time) + interval '1 hour' "
                          "FROM pox_five_second_mean)")
    conn.commit()
    conn.close()
    forced = cli("restore", dump, "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    assert everything(archive_url) == everything(archive_url.rsplit("/", 1)[0] + "/" + copy)
    assert "secret-pw-1" not in into_new.stdout + into_new.stderr + over_live.stderr + forced.stderr


@pytest.mark.parametrize("how", ["truncated", "corrupted", "not a dump"])
def test_a_damaged_dump_is_reported_by_restore_and_verify_and_nothing_is_left_behind(pg_server, archive_url,
                                                                                    standin, backup_dir, how):
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir)
    load(config, standin, NOW, hours=24, step=5)
    dump = backup(config, FixedClock(NOW)).dump.path
    damage(dump, how)
    copy = archive_url.rsplit("/", 1)[1] + "_copy"

    with pytest.raises(BackupDamaged, match="cannot be restored"):
        restore(config, dump, into=copy)
    with pytest.raises(BackupDamaged, match="cannot be restored"):
        verify(config)
    names = [r[0] for r in superuser(pg_server, "SELECT datname FROM pg_database")]
    assert copy not in names and copy.replace("_copy", "_verify") not in names

    env = flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=backup_dir)
    by_cli = cli("restore", "--verify", env=env)
    assert by_cli.returncode == 2
    assert "cannot be restored" in by_cli.stderr and "truncated or corrupted" in by_cli.stderr


def test_verify_passes_after_later_runs_and_catches_a_rewritten_old_row(pg_server, archive_url, standin, backup_dir):
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir)
    load(config, standin, NOW)
    backup(config, FixedClock(NOW))
    load(config, standin, NOW + 2 * HOUR, hours=2)  # the archive moves on after the dump

    conn = psycopg2.connect(archive_url)  # a field that appears later adds a column: not a difference
    conn.cursor().execute("ALTER TABLE pox_five_second_mean ADD COLUMN pi double precision")
    conn.commit()
    conn.close()
    result = verify(config)
    assert result.ok, "\n".join(result.lines())
    names = {c.name for c in result.checks}
    assert names == {"public.pox_five_second_mean", "public.pox_five_second_mean_1m",
                     "public.pox_five_second_mean_1h", "public.pox_five_second_mean_1d"}
    base = next(c for c in result.checks if c.name == "public.pox_five_second_mean")
    assert base.backup_rows > 0 and base.cutoff == NOW - NOW % 5 - HOUR
    scratch = archive_url.rsplit("/", 1)[1] + "_verify"
    assert scratch not in [r[0] for r in superuser(pg_server, "SELECT datname FROM pg_database")]

    conn = psycopg2.connect(archive_url)
    conn.cursor().execute("UPDATE pox_five_second_mean SET spo2 = spo2 + 1 WHERE time = "
                          "(SELECT min(time) FROM pox_five_second_mean)")
    conn.commit()
    conn.close()
    changed = verify(config)
    assert not changed.ok and "DIFFERS" in "\n".join(changed.lines())

    by_cli = cli("restore", "--verify", env=flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=backup_dir))
    assert by_cli.returncode == 2 and "does not restore to the live archive" in by_cli.stderr


def test_a_leftover_scratch_database_is_dropped_but_a_foreign_one_is_left_alone(pg_server, archive_url, standin,
                                                                               backup_dir):
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir)
    load(config, standin, NOW, hours=1)
    backup(config, FixedClock(NOW))
    scratch = archive_url.rsplit("/", 1)[1] + "_verify"
    superuser(pg_server, f'CREATE DATABASE "{scratch}" OWNER {LOADER}')  # verify killed before it cleaned up
    superuser(pg_server, f"COMMENT ON DATABASE \"{scratch}\" IS '{SCRATCH_MARK}'")
    assert verify(config).ok
    superuser(pg_server, f'CREATE DATABASE "{scratch}"')  # someone else's database of that name
    with pytest.raises(BackupError, match="not influx-archive's scratch database"):
        verify(config)
    assert scratch in [r[0] for r in superuser(pg_server, "SELECT datname FROM pg_database")]


def test_verify_without_createdb_gives_advice_that_works_when_followed(pg_server, archive_url, standin, backup_dir):
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir)
    load(config, standin, NOW, hours=1)
    backup(config, FixedClock(NOW))
    superuser(pg_server, f'ALTER ROLE "{LOADER}" NOCREATEDB')
    try:
        refused = cli("restore", "--verify", env=flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=backup_dir))
        assert refused.returncode == 2
        advice = (f"sudo -u postgres psql -c 'ALTER ROLE \"{LOADER}\" CREATEDB'")
        assert refused.stderr.strip().endswith(advice + ")"), refused.stderr
        assert "createdb -O" not in refused.stderr  # a scratch database made by hand would be refused next
        superuser(pg_server, advice.split("-c ", 1)[1].strip("'"))  # what the advice runs, as postgres
        verified = cli("restore", "--verify", env=flux_env(archive_url, standin, TAGS="uid", BACKUP_DIR=backup_dir))
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        superuser(pg_server, f'ALTER ROLE "{LOADER}" CREATEDB')


def test_a_restore_onto_settings_the_archive_was_not_kept_with_is_refused_naming_each_before_anything_changes(
        pg_server, archive_url, standin, backup_dir):
    """A new Pi whose .env lacks the old one's TAGS=uid (and has another WINDOW): restoring would succeed and
    every run after fail on the table's key; its FIELDS and VALID_RANGES would keep otherwise. Refused first,
    naming the settings, the new database untouched. With them set, it restores and the first run loads."""
    kept = {"TAGS": "uid", "VALID_RANGES": "spo2=60..100,bpm=20..250"}
    config = make_config(archive_url, standin.url, BACKUP_DIR=backup_dir, **kept)
    load(config, standin, NOW)
    made = backup(config, FixedClock(NOW))
    dbname = archive_url.rsplit("/", 1)[1]
    superuser(pg_server, f'DROP DATABASE "{dbname}"')
    superuser(pg_server, f'CREATE DATABASE "{dbname}" OWNER {LOADER}')
    new_pi = make_config(archive_url, standin.url, BACKUP_DIR=backup_dir, WINDOW="10s", FIELDS="spo2")
    with pytest.raises(BackupError) as refused:
        restore(new_pi, made.dump.path)
    assert str(refused.value) == (f"{made.dump.path} does not fit these settings: its archive keeps devices apart by "
                                  f"uid (TAGS=uid), these settings TAGS empty; its rows are 5s wide, WINDOW is 10s; "
                                  f"its archive keeps bpm, which FIELDS=spo2 leaves out; its readings were refused by "
                                  f"other ranges: spo2 outside 60..100, here 50..100; nothing was restored")
    assert refused.value.hint == ("set TAGS=uid and WINDOW=5s and FIELDS=spo2,bpm and "
                                  "VALID_RANGES=bpm=20..250,spo2=60..100 in .env (the settings the archive was kept "
                                  "with), then restore again")
    assert everything(archive_url) == {}  # nothing changed
    elsewhere = make_config(archive_url, standin.url, PG_TABLE="nights")  # and no TAGS: both named at once
    with pytest.raises(BackupError) as refused:
        restore(elsewhere, made.dump.path)
    assert str(refused.value) == (f"{made.dump.path} does not fit these settings: its archive is table "
                                  f"public.pox_five_second_mean, not public.nights (PG_SCHEMA.PG_TABLE); its archive "
                                  f"keeps devices apart by uid (TAGS=uid), these settings TAGS empty; its readings "
                                  f"were refused by other ranges: spo2 outside 60..100, here 50..100; nothing was "
                                  f"restored")
    assert refused.value.hint == ("set PG_TABLE=pox_five_second_mean and TAGS=uid and "
                                  "VALID_RANGES=bpm=20..250,spo2=60..100 in .env (the settings the archive was kept "
                                  "with), then restore again")
    # the sessions' settings do not stop it: said, with what would keep the dump's sessions as they are
    other_sessions = make_config(archive_url, standin.url, BACKUP_DIR=backup_dir, SESSION_GAP="30m",
                                 ROLLUP_BELOW="spo2=92", **kept)
    result = restore(other_sessions, made.dump.path)
    assert result.notes == [
        "note: the dump's sessions were computed with settings that differ: SESSION_GAP=45m, spo2=90 in "
        "ROLLUP_BELOW; the next run computes every session again with these settings (minutes for a year on a "
        "Pi); to keep them, set SESSION_GAP=45m and spo2=90 in ROLLUP_BELOW (.env) before it"]
    assert result.lines()[-1] == result.notes[0]
    outcome = Job(other_sessions, clock=FixedClock(NOW + HOUR)).run()  # the first load after it works
    assert outcome.chunks >= 1


def test_a_dumps_sessions_are_said_against_settings_that_keep_none_and_not_against_the_same():
    settings = make_config("postgresql://x@127.0.0.1/archive", "http://127.0.0.1:1")
    kept = archive.sessions(Database(settings), settings).definition()
    schema = f"COMMENT ON TABLE public.pox_five_second_mean_sessions IS '{kept}';\n"
    assert sessions_kept_otherwise(settings, schema) == []
    assert sessions_kept_otherwise(settings, "CREATE TABLE public.pox_five_second_mean (\n") == []  # no sessions
    none = make_config("postgresql://x@127.0.0.1/archive", "http://127.0.0.1:1", SESSION_SPO2="none")
    assert sessions_kept_otherwise(none, schema) == [
        "note: the dump holds sessions (nights), and SESSION_SPO2=none here keeps none: they stay as restored and "
        "no run updates them (set SESSION_SPO2 to the SpO2 field to keep them current)"]


def test_a_dumps_field_columns_and_their_ranges_are_read_whatever_their_names():
    schema = ('CREATE TABLE public."Pox" (\n    "time" timestamp with time zone NOT NULL,\n    uid text NOT NULL,\n'
              '    "Heart ""rate""" double precision,\n    spo2 double precision\n);\n\n'
              'COMMENT ON COLUMN public."Pox"."Heart ""rate""" IS \'VALID_RANGES=20..250\';\n'
              "COMMENT ON COLUMN public.\"Pox\".spo2 IS 'VALID_RANGES=none';\n")
    assert dumped_fields(schema, 'public."Pox"') == ['Heart "rate"', "spo2"]
    assert dumped_column_comments(schema, 'public."Pox"') == {'Heart "rate"': "VALID_RANGES=20..250",
                                                              "spo2": "VALID_RANGES=none"}
    assert dumped_fields(schema, "public.pox") == []
