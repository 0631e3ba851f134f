"""Absurd readings: refused at the door by the default ranges (counted, said in the log and status),
and never able to stop the archive, even where no range applies."""

import logging

import psycopg2

from loader.job import Job
from loader.status import status
from tests.support.archive import archive_rows
from tests.support.harness import HOUR, FixedClock, make_config
from tests.support.readings import expected_means, feed_standin, pulse_points, with_dips

NOW = 1_790_000_000 - 1_790_000_000 % 86400 + 9 * 3600 + 7 * 60  # 2026-09-21T09:07:00Z
GLITCHES = [("spo2", 1e300), ("spo2", 2147483647.0), ("bpm", 65535.0), ("spo2", 0.0), ("bpm", 0.0)]


def _max(pg_url, statement):
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        cur.execute(statement)
        return cur.fetchone()
    finally:
        conn.close()


def test_glitches_inside_a_night_are_refused_by_the_hand_routes_defaults_and_said(pg_url, standin, caplog):
    night = with_dips(pulse_points(NOW - 7 * HOUR, 7 * HOUR))  # a night with dips below 90
    glitches = [("spo2", {"uid": "a"}, f, NOW - 3 * HOUR + 61 * i, v) for i, (f, v) in enumerate(GLITCHES)]
    feed_standin(standin, night + glitches)
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="8h")  # no VALID_RANGES: the hand route's defaults
    caplog.set_level(logging.INFO, logger="loader")
    outcome = Job(cfg, clock=FixedClock(NOW)).run()
    assert outcome.dropped == {"spo2": 3, "bpm": 2}
    assert archive_rows(pg_url) == expected_means(night, start=0, end=NOW)
    assert "refused 3 spo2 reading(s) outside VALID_RANGES 50..100 between" in caplog.text
    assert "(values 0 to 1e+300)" in caplog.text  # the lowest and highest refused: what the device sent
    # nothing absurd in the rollups or the night's session
    top = _max(pg_url, "SELECT max(spo2_max), max(bpm_max), min(spo2_min), min(bpm_min) FROM pox_five_second_mean_1m")
    assert top[0] <= 100 and top[1] <= 250 and top[2] >= 50 and top[3] >= 20
    session = _max(pg_url, "SELECT spo2_mean, spo2_min, pulse_max, pulse_min FROM pox_five_second_mean_sessions")
    assert 90 < session[0] <= 100 and session[1] >= 50 and session[2] <= 250 and session[3] >= 20
    lines = status(cfg, NOW).lines()
    assert "refused:     the last hourly run refused bpm: 2 of" in "\n".join(lines)
    assert "spo2: 3 of 25203 reading(s) (values 0 to 1e+300)" in "\n".join(lines)


def test_a_reading_of_1e300_where_no_range_applies_never_stops_the_archive(pg_url, standin):
    points = pulse_points(NOW - 2 * HOUR, 2 * HOUR)
    absurd = [("spo2", {"uid": "a"}, "spo2", NOW - HOUR + 3, 1e300)]
    feed_standin(standin, points + absurd)
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="3h", VALID_RANGES="none")
    outcome = Job(cfg, clock=FixedClock(NOW)).run()  # avg() in the rollups overflowed here, every run after
    assert outcome.dropped == {}
    assert archive_rows(pg_url) == expected_means(points + absurd, start=0, end=NOW)
    want = expected_means(points + absurd, start=0, end=NOW)
    assert _max(pg_url, "SELECT max(spo2_max) FROM pox_five_second_mean_1d")[0] == max(v["spo2"] for v in want.values())
    assert Job(cfg, clock=FixedClock(NOW + HOUR)).run().chunks == 1  # and the next run too


def test_a_field_losing_most_of_its_readings_to_valid_ranges_is_worth_a_look_in_status(pg_url, standin):
    # a device reporting SpO2 as a fraction (0.95 for 95 %)
    points = [(m, t, f, s, v / 100 if f == "spo2" else v) for m, t, f, s, v in pulse_points(NOW - 2 * HOUR, 2 * HOUR)]
    feed_standin(standin, points)
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="3h")
    Job(cfg, clock=FixedClock(NOW)).run()
    result = status(cfg, NOW)
    assert result.exit_code == 1
    assert ("spo2: 7200 of the 7200 readings the last hourly run read were outside VALID_RANGES 50..100 "
            "(values 0.94 to 0.995): does the device report another unit" in result.verdict)
