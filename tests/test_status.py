"""`status` tells the truth: freshness by the newest reading, the hourly run apart from other commands,
one failure a blip and FAILED_RUNS_ALERT in a row a page, interrupted and killed runs for what they
are, and one exit-code rule a monitor can page on. Real PostgreSQL, the Flux stand-in, fixed clocks."""

import psycopg2
import pytest

from loader.backup import backup
from loader.errors import SinkRejected, SourceRejected, SourceUnavailable
from loader.job import Job
from loader.status import status
from loader.windows import rfc3339
from tests.support.archive import archive_rows
from tests.support.harness import DAY, HOUR, FixedClock, cli, flux_env, load, make_config
from tests.support.readings import expected_means, feed_standin, pulse_points

NOW = 1_795_388_400  # 2026-11-22T08:00:00Z, on the hour
BACKUP_NOW = 1_790_000_000 - 1_790_000_000 % DAY + 3 * HOUR + 17 * 60  # 03:17 UTC, when install.sh's cron backs up
TARGET = "public.pox_five_second_mean"


def text(result):
    return "\n".join(result.lines())


def no_sleep(seconds):
    pass


def test_freshness_is_the_newest_reading_not_the_watermark(pg_url, standin):
    feed_standin(standin, pulse_points(NOW - 6 * HOUR, 2 * HOUR))  # the oximeter went quiet 4 hours ago
    config = make_config(pg_url, standin.url, INITIAL_LOOKBACK="6h", STALE_AFTER="2h")
    Job(config, clock=FixedClock(NOW)).run()
    result = status(config, NOW + 60)
    assert result.watermark == NOW  # the loader is current ...
    assert result.exit_code == 2  # ... but no reading has come for 4 hours: page
    assert f"newest data: {rfc3339(NOW - 4 * HOUR - 5)} (4h 1m ago), the window ending {rfc3339(NOW - 4 * HOUR)}" \
        in text(result)
    assert result.verdict.startswith("stale: no new reading for 4h 1m (STALE_AFTER 2h): is the oximeter recording")
    night_wearer = make_config(pg_url, standin.url, INITIAL_LOOKBACK="6h", STALE_AFTER="1d")
    assert status(night_wearer, NOW + 60).exit_code == 0


def test_each_device_is_judged_and_the_quiet_one_is_named_until_it_is_retired(pg_url, standin):
    """Two oximeters (TAGS=uid): ring "a" records on, ring "b" went quiet 1 h 50 min ago. The archive's
    newest reading is fresh, yet status pages naming b; retired, b is no longer expected."""
    feed_standin(standin, pulse_points(NOW - 3 * HOUR, 3 * HOUR, uids=("a",)))
    feed_standin(standin, pulse_points(NOW - 3 * HOUR, 3 * HOUR - 110 * 60, uids=("b",)))
    config = make_config(pg_url, standin.url, INITIAL_LOOKBACK="3h", STALE_AFTER="1h", TAGS="uid")
    Job(config, clock=FixedClock(NOW)).run()
    result = status(config, NOW)
    assert result.devices == {"uid=a": NOW - 5, "uid=b": NOW - 110 * 60 - 5}
    assert f"device:      uid=b, newest data {rfc3339(NOW - 110 * 60 - 5)} (1h 50m ago)" in text(result)
    assert result.exit_code == 2
    assert result.verdict == ("stale: device uid=b has no new reading for 1h 50m (STALE_AFTER 1h): is it recording "
                              "and uploading? One no longer used: add uid=b to RETIRED_DEVICES")
    retired = make_config(pg_url, standin.url, STALE_AFTER="1h", TAGS="uid", RETIRED_DEVICES="uid=b")
    assert status(retired, NOW).exit_code == 0
    assert status(retired, NOW + 2 * HOUR).verdict.startswith("stale: device uid=a has no new reading for 2h")
    everyone = make_config(pg_url, standin.url, STALE_AFTER="1h", TAGS="uid", RETIRED_DEVICES="uid=a;uid=b")
    assert status(everyone, NOW + 2 * HOUR).verdict.startswith("stale: no new reading for 2h")  # all retired:
    # the archive as a whole is judged


def test_one_failed_run_is_a_blip_and_failed_runs_alert_in_a_row_page_until_a_run_succeeds(pg_url, standin):
    points = pulse_points(NOW - 2 * HOUR, 6 * HOUR)  # readings keep coming until NOW + 4h
    feed_standin(standin, points)
    config = make_config(pg_url, standin.url, INITIAL_LOOKBACK="2h", MAX_RETRIES="1")
    Job(config, clock=FixedClock(NOW)).run()
    assert status(config, NOW + 60).exit_code == 0
    expected = {1: 1, 2: 1, 3: 2}
    for hour in (1, 2, 3):
        standin.faults = [("status", 500, None)]
        with pytest.raises(SourceUnavailable):
            Job(config, clock=FixedClock(NOW + hour * HOUR), sleep=no_sleep).run()
        result = status(config, NOW + hour * HOUR + 60)
        assert result.exit_code == expected[hour], text(result)
        assert f"failures:    {hour} hourly run(s) in a row" in text(result)
        assert f"last error:  {rfc3339(NOW + hour * HOUR)}: InfluxDB answered HTTP 500" in text(result)
        if hour == 1:
            assert result.verdict == ("the last hourly run failed; the next one should catch up (this pages after "
                                      "3 in a row, FAILED_RUNS_ALERT)")
    assert result.verdict == "failing: 3 hourly runs in a row failed (see last error)"
    Job(config, clock=FixedClock(NOW + 4 * HOUR)).run()
    healed = status(config, NOW + 4 * HOUR + 60)
    assert healed.exit_code == 0 and "failures:" not in text(healed) and healed.verdict == "fresh"
    assert archive_rows(pg_url) == expected_means(points, start=NOW - 2 * HOUR, end=NOW + 4 * HOUR)


def test_a_failure_that_needs_a_human_pages_at_once(pg_url, standin):
    feed_standin(standin, pulse_points(NOW - HOUR, 2 * HOUR))
    config = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h")
    Job(config, clock=FixedClock(NOW)).run()
    with pytest.raises(SourceRejected):
        Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h", INFLUX_TOKEN="revoked"),
            clock=FixedClock(NOW + HOUR)).run()
    result = status(config, NOW + HOUR + 60)
    assert result.exit_code == 2
    assert result.verdict == "failing: the last hourly run needs a human (see last error)"
    assert f"last error:  {rfc3339(NOW + HOUR)}: InfluxDB refused the token (HTTP 401)" in text(result)


def test_last_run_is_the_hourly_run_and_a_later_rebuild_is_shown_apart(pg_url, standin):
    feed_standin(standin, pulse_points(NOW - HOUR, 2 * HOUR))
    config = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h", MAX_RETRIES="1")
    Job(config, clock=FixedClock(NOW)).run()
    standin.faults = [("status", 503, None)]
    with pytest.raises(SourceUnavailable):
        Job(config, clock=FixedClock(NOW + HOUR), sleep=no_sleep).run()
    Job(config, clock=FixedClock(NOW + HOUR + 30)).rebuild_rollups()
    result = status(config, NOW + HOUR + 60)
    assert result.last_run["command"] == "run" and result.last_run["outcome"] == "failed"
    assert result.exit_code == 1  # the failed hourly run is not hidden by the rebuild that followed it
    assert f"last run:    started {rfc3339(NOW + HOUR)} (1m 0s ago): failed" in text(result)
    assert f"since then:  rebuild-rollups started {rfc3339(NOW + HOUR + 30)} (30s ago): ok" in text(result)


def test_an_interrupted_backfill_is_recorded_as_interrupted_not_killed_and_nothing_stays_running(pg_url, standin):
    points = pulse_points(NOW - 6 * HOUR, 6 * HOUR)
    feed_standin(standin, points)
    config = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h", CHUNK="1h")
    Job(config, clock=FixedClock(NOW)).run()

    def ctrl_c_after_the_first_chunk(index, *rest):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Job(config, clock=FixedClock(NOW + 60), progress=ctrl_c_after_the_first_chunk).backfill(NOW - 6 * HOUR, NOW)
    result = status(config, NOW + 120)
    assert not result.running and "running:" not in text(result)
    assert result.later["outcome"] == "interrupted" and result.later["error"] == "interrupted (Ctrl-C or SIGINT)"
    assert result.failures == 0 and result.exit_code == 0
    # the chunk committed before Ctrl-C is kept whole
    first_hour = {k: v for k, v in archive_rows(pg_url).items() if k[0] < NOW - 5 * HOUR}
    assert first_hour == expected_means(points, start=NOW - 6 * HOUR, end=NOW - 5 * HOUR)


def test_running_is_said_only_while_a_process_holds_the_run_lock(pg_url, pg_server, standin):
    feed_standin(standin, pulse_points(NOW - HOUR, HOUR))
    config = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h")
    Job(config, clock=FixedClock(NOW)).run()
    holder = psycopg2.connect(pg_url)  # another process, mid-backfill
    holder.autocommit = True
    cur = holder.cursor()
    cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"influx-archive:{TARGET}",))
    cur.execute("INSERT INTO influx_archive_runs (target, command, started_at) "
                "VALUES (%s, 'backfill', to_timestamp(%s))", (TARGET, NOW + 10))
    busy = status(config, NOW + 60)
    assert busy.running and "running:     yes" in text(busy)
    killer = psycopg2.connect(pg_url)  # the process dies; its lock goes with its backend, which this waits for
    killer.cursor().execute("SELECT pg_terminate_backend(%s, 10000)", (holder.get_backend_pid(),))
    killer.close()
    dead = status(config, NOW + 60)
    assert not dead.running and "running:" not in text(dead)
    assert dead.later["outcome"] == "abandoned"
    assert "the process ended without reporting (killed, power loss or lost connection)" in text(dead)


def test_a_complete_backfill_into_an_empty_archive_is_not_never_run(pg_url, standin):
    feed_standin(standin, pulse_points(NOW - 6 * HOUR, 6 * HOUR))
    config = make_config(pg_url, standin.url)
    Job(config, clock=FixedClock(NOW)).backfill(NOW - 6 * HOUR, NOW)
    result = status(config, NOW + 60)
    assert result.exit_code == 1, text(result)
    assert result.verdict == "the hourly run has not run yet: cron runs it, or `python -m loader run`"
    assert result.rows == 6 * HOUR // 5


def test_no_hourly_run_for_failed_runs_alert_hours_pages(pg_url, standin):
    feed_standin(standin, pulse_points(NOW - HOUR, HOUR))
    config = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h")
    Job(config, clock=FixedClock(NOW)).run()
    assert status(config, NOW + 3 * HOUR).exit_code == 0
    late = status(config, NOW + 3 * HOUR + 61)
    assert late.exit_code == 2
    assert late.verdict.startswith("no hourly run started for 3h 1m: is cron running?")


def test_status_exit_codes_from_the_command_line(pg_url, pg_server, standin):
    env = flux_env(pg_url, standin)
    never = cli("status", env=env)
    assert never.returncode == 2, never.stdout + never.stderr
    assert never.stdout.splitlines()[-1] == ("verdict:     nothing archived yet: run `python -m loader run` "
                                             "(`python -m loader check` first if it fails)")
    down = cli("status", env=flux_env(pg_server.url("no_such_db").replace(str(pg_server.port), "1"), standin))
    assert down.returncode == 2  # a monitor that cannot see the archive must not stay quiet
    assert down.stderr.startswith("influx-archive: PostgreSQL at postgresql://postgres@127.0.0.1:1/no_such_db is "
                                  "unavailable")


def test_status_shows_the_newest_backup_and_fails_when_it_is_too_old_or_the_drive_is_gone(archive_url, standin,
                                                                                          backup_dir):
    # only the backup decides here: data never goes stale and runs are not missed
    config = make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir, BACKUP_MAX_AGE="36h",
                         STALE_AFTER="1000d", FAILED_RUNS_ALERT="1000")
    never = status(config, BACKUP_NOW)  # before the first run, the backup line is there too
    assert never.exit_code == 2 and "no dump yet" in never.backup and "nothing archived yet" in never.verdict
    load(config, standin, BACKUP_NOW, hours=1)
    none_yet = status(config, BACKUP_NOW)
    assert none_yet.exit_code == 1 and "no backup yet" in none_yet.verdict
    made = backup(config, FixedClock(BACKUP_NOW))
    fresh = status(config, BACKUP_NOW + 5 * HOUR)
    text = "\n".join(fresh.lines())
    assert fresh.exit_code == 0, text
    assert "backup:      2026-09-21T03:17:00Z (5h 0m ago)" in text and "1 dump(s)" in text
    assert made.dump.size > 1000 and "kB" in text or "MB" in text
    old = status(config, BACKUP_NOW + 2 * DAY)
    assert old.exit_code == 2 and old.verdict.startswith("backup stale"), old.verdict  # two nightly dumps missed: page
    gone = status(make_config(archive_url, standin.url, TAGS="uid", BACKUP_DIR=backup_dir + "-unplugged",
                              STALE_AFTER="1000d"), BACKUP_NOW)
    assert gone.exit_code == 2 and "does not exist" in "\n".join(gone.lines())
    off = status(make_config(archive_url, standin.url, TAGS="uid", STALE_AFTER="1000d"), BACKUP_NOW)
    assert off.exit_code == 0 and "not configured" in "\n".join(off.lines())


def test_a_run_failing_on_the_tables_key_leaves_its_row_and_status_pages_with_its_error(pg_url, standin):
    """TAGS added to an archive made without it: the table's key does not fit. The run row is kept
    (it was rolled back with the failed transaction before), so status names the failure at once."""
    start = 1_790_000_000
    feed_standin(standin, pulse_points(start - 3600, 3600))
    Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="2h"), clock=FixedClock(start)).run()
    tagged = make_config(pg_url, standin.url, INITIAL_LOOKBACK="2h", TAGS="uid")
    with pytest.raises(SinkRejected):
        Job(tagged, clock=FixedClock(start + 3600)).run()
    result = status(tagged, start + 3600 + 60)
    assert result.exit_code == 2
    assert result.last_run["outcome"] == "failed" and "keeps one device (key time), and TAGS=uid" in \
        result.last_run["error"]
    assert "the last hourly run needs a human" in result.verdict
