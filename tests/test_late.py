"""Late data: readings that reach InfluxDB hours or days after the hour they belong to was archived
are found by comparing InfluxDB's counts per hour and series with the archive's, and loaded."""

import logging

import pytest

from loader.check import check_next_run
from loader.job import Job
from loader.status import status
from tests.support.archive import archive_rows
from tests.support.harness import DAY, HOUR, FixedClock, make_config
from tests.support.readings import expected_means, feed_influxd, feed_standin, pulse_points

START = 1_790_000_000 - 1_790_000_000 % DAY  # 2026-09-21T00:00:00Z, a midnight


def night(uid, day, minutes=30, at=2 * HOUR):
    """`minutes` of 1 Hz readings of one device from 02:00 of day `day`."""
    return pulse_points(START + day * DAY + at, minutes * 60, uids=(uid,))


def _source(language, standin, influxd, influx_db, pg_url, **settings):
    if language == "flux":
        return (lambda p: feed_standin(standin, p)), make_config(pg_url, standin.url, **settings)
    return ((lambda p: feed_influxd(influxd, influx_db, p)),
            make_config(pg_url, influxd.url, language="influxql", bucket=influx_db, **settings))


@pytest.mark.parametrize("language", ["flux", "influxql"])
def test_uploads_hours_and_days_late_and_a_new_device_in_archived_hours_all_reach_the_archive(
        pg_url, standin, influxd, influx_db, language, caplog):
    """Hourly runs over six simulated days: device a's nights arrive 9 h after they end (a phone sync),
    device b's 3 days after (a sensor buffering through an outage), device c writes into hours already
    archived 5 h after. At the end the archive is the exact 5-second means of everything InfluxDB holds."""
    feed, cfg = _source(language, standin, influxd, influx_db, pg_url, TAGS="uid", INITIAL_LOOKBACK="1d",
                        LATE_DATA="1h", CHUNK="1d")
    live = pulse_points(START - HOUR, HOUR, uids=("a",))  # something to prove the fields with before the first run
    uploads = [(START, live)]
    for day in range(3):
        a, b = night("a", day), night("b", day, at=3 * HOUR)
        uploads.append((START + day * DAY + 2 * HOUR + 1800 + 9 * HOUR, a))
        uploads.append((START + day * DAY + 3 * HOUR + 1800 + 3 * DAY, b))
    c = night("c", 1, minutes=20, at=5 * HOUR)
    uploads.append((START + DAY + 10 * HOUR, c))
    fed, caught, clock = [], [], FixedClock(START)
    caplog.set_level(logging.INFO, logger="loader")
    for hour in range(6 * 24 + 1):
        clock.value = START + hour * HOUR + 7 * 60  # cron's minute 7
        due = [points for at, points in uploads if at <= clock.value and not any(points is f for f in fed)]
        for points in due:
            feed(points)
            fed.append(points)
        outcome = Job(cfg, clock=clock).run()
        caught += outcome.late
    everything = [p for points in fed for p in points]
    assert len(fed) == len(uploads)
    assert archive_rows(pg_url) == expected_means(everything, tags=("uid",))
    # each late upload was found by the comparison (never by LATE_DATA alone), and the log says so
    assert {b.series for b in caught} == {"uid=a", "uid=b", "uid=c"}
    assert "late data: InfluxDB holds readings the archive lacks in" in caplog.text
    result = status(cfg, clock.value)
    assert not any("behind" in text for _, text in result.problems)


def test_readings_about_to_leave_influxdb_unloaded_page_naming_the_hours(pg_url, standin):
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="30d", MAX_RETRIES=2)
    now = START + 30 * DAY + 12 * HOUR + 7 * 60  # each run below reads one chunk
    feed_standin(standin, pulse_points(now - HOUR, HOUR))
    Job(cfg, clock=FixedClock(now)).run()
    # a buffered night, 26 days old, arrives; its reload fails (InfluxDB errors on it, past the retries)
    old = pulse_points(START + 4 * DAY + 2 * HOUR, 1200)
    feed_standin(standin, old)
    later = now + HOUR
    standin.faults = [None, ("status", 500, None), ("status", 500, None)]  # the run's own chunk, then the reload
    with pytest.raises(Exception):
        Job(cfg, clock=FixedClock(later), sleep=lambda s: None).run()
    result = status(cfg, later)
    assert result.exit_code == 2
    assert "2026-09-25T02:00:00Z" in result.verdict and "pass LATE_LOOKBACK" in result.verdict
    assert any("behind:" in line for line in result.lines())
    (ok, said), = check_next_run(cfg, later)[1:]  # `check` shows the comparison on demand
    assert ok and "late data: InfluxDB holds readings the archive lacks in 1 hour(s) (2026-09-25T02:00:00Z" in said
    # the next run loads them, and status no longer pages for them
    Job(cfg, clock=FixedClock(later + HOUR)).run()
    result = status(cfg, later + HOUR)
    assert result.exit_code == 0, result.verdict
    assert "late data: InfluxDB and the archive agree on every hour of" in check_next_run(cfg, later + HOUR)[1][1]
    rows = archive_rows(pg_url)
    want = expected_means(old)
    assert {k: rows[k] for k in want} == want


def test_late_lookback_0s_compares_nothing(pg_url, standin):
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1d", LATE_LOOKBACK="0s")
    now = START + DAY
    feed_standin(standin, pulse_points(now - 2 * HOUR, HOUR))
    Job(cfg, clock=FixedClock(now)).run()
    late = pulse_points(now - 10 * HOUR, 600)
    feed_standin(standin, late)
    outcome = Job(cfg, clock=FixedClock(now + HOUR)).run()
    assert outcome.late == []
    assert not set(expected_means(late)) & set(archive_rows(pg_url))
