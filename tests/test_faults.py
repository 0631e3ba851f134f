"""The fault matrix of issue #6, the cases not covered elsewhere: each fault injected for real, then a
normal run, ending with the archive equal to the source, no duplicates, and the documented exit code.
(The rest of the matrix lives beside the behaviour it tests; README.md lists every case and its test.)"""

import pytest

from conftest import (FixedClock, archive_rows, count_rows, expected_means, feed_standin, make_config, pulse_points,
                      watermark)
from loader.errors import ClockError, SinkUnavailable, SourceRejected, SourceUnavailable
from loader.job import Job

NOW = 1_790_000_000 - 1_790_000_000 % 86400 + 3 * 3600 + 17
HOUR = 3600


def assert_complete(pg_url, points):
    assert archive_rows(pg_url) == expected_means(points, start=0, end=NOW - NOW % 5)
    total, distinct = count_rows(pg_url)
    assert total == distinct


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_beyond_the_retries_exit_1_and_the_next_run_catches_up(pg_url, standin, status):
    points = pulse_points(NOW - 2 * HOUR, 2 * HOUR)
    feed_standin(standin, points)
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="2h", MAX_RETRIES=3)
    standin.faults = [("status", status, None)] * 3
    waits = []
    with pytest.raises(SourceUnavailable, match=f"HTTP {status}") as exc:
        Job(cfg, clock=FixedClock(NOW), sleep=waits.append).run()
    assert exc.value.exit_code == 1 and waits == [2, 4] and watermark(pg_url) is None
    Job(cfg, clock=FixedClock(NOW)).run()
    assert_complete(pg_url, points)


def test_a_wrong_token_exits_2_without_retrying_and_the_fixed_token_loads_everything(pg_url, standin):
    points = pulse_points(NOW - HOUR, HOUR)
    feed_standin(standin, points)
    with pytest.raises(SourceRejected) as exc:
        Job(make_config(pg_url, standin.url, INFLUX_TOKEN="expired", INITIAL_LOOKBACK="1h"), clock=FixedClock(NOW),
            sleep=pytest.fail).run()
    assert exc.value.exit_code == 2 and "token" in str(exc.value)
    Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h"), clock=FixedClock(NOW)).run()
    assert_complete(pg_url, points)


def test_postgres_down_at_start_exits_1_before_asking_influxdb_and_the_next_run_catches_up(pg_server, pg_url,
                                                                                           standin):
    points = pulse_points(NOW - HOUR, HOUR)
    feed_standin(standin, points)
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h")
    pg_server.stop()
    try:
        with pytest.raises(SinkUnavailable) as exc:
            Job(cfg, clock=FixedClock(NOW)).run()
        assert exc.value.exit_code == 1 and standin.queries == []
    finally:
        pg_server.start()
    Job(cfg, clock=FixedClock(NOW)).run()
    assert_complete(pg_url, points)


def test_a_clock_set_before_the_watermark_moves_nothing_and_the_right_clock_catches_up(pg_url, standin):
    points = pulse_points(NOW - 3 * HOUR, 3 * HOUR)
    feed_standin(standin, points)
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="3h")
    Job(cfg, clock=FixedClock(NOW - 2 * HOUR)).run()
    mark = watermark(pg_url)
    with pytest.raises(ClockError) as exc:
        Job(cfg, clock=FixedClock(NOW - 5 * 86400)).run()
    assert exc.value.exit_code == 1 and watermark(pg_url) == mark
    Job(cfg, clock=FixedClock(NOW)).run()
    assert_complete(pg_url, points)
