"""The archive table: created, extended by a new field, refused when it does not fit."""

import pytest

from loader.job import Job
from tests.support.archive import archive_rows
from tests.support.harness import HOUR, FixedClock, make_config
from tests.support.readings import feed_standin, pulse_points

NOW = 1_790_000_000 - 1_790_000_000 % 86400 + 3 * 3600 + 17  # 2026-09-21T03:00:17Z: mid-window


def test_new_field_adds_a_column(pg_url, standin):
    feed_standin(standin, pulse_points(NOW - 2 * HOUR, HOUR))
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="2h", CHUNK="1h")
    Job(cfg, clock=FixedClock(NOW - HOUR)).run()
    extra = [("spo2", {"uid": "a"}, "pi", t, 2.5) for t in range(NOW - HOUR, NOW)]
    feed_standin(standin, pulse_points(NOW - HOUR, HOUR) + extra)
    Job(cfg, clock=FixedClock(NOW)).run()
    rows = archive_rows(pg_url)
    assert rows[(NOW - 1800 - NOW % 5,)]["pi"] == 2.5
    assert "pi" not in rows[(NOW - HOUR - 1800 - NOW % 5,)]


def test_a_table_without_our_key_is_refused_not_appended_to(pg_url, standin):
    import psycopg2
    conn = psycopg2.connect(pg_url)
    conn.cursor().execute("CREATE TABLE pox_five_second_mean (time timestamp, spo2 float8, bpm float8)")
    conn.commit()
    conn.close()
    feed_standin(standin, pulse_points(NOW - HOUR, HOUR))
    with pytest.raises(Exception) as exc:
        Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h"), clock=FixedClock(NOW)).run()
    assert exc.value.exit_code == 2
    assert "reference script" in str(exc.value)
