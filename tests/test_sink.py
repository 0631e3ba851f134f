"""The archive table: created, extended by a new field, refused when it does not fit."""

import psycopg2
import pytest

from loader.errors import SinkRejected
from loader.job import Job
from loader.status import status
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


def test_a_changed_window_on_an_archive_of_another_width_is_refused_with_what_to_do(pg_url, standin):
    now = 1_790_000_000
    feed_standin(standin, pulse_points(now - 7200, 7200))
    Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="2h"), clock=FixedClock(now)).run()
    rows = archive_rows(pg_url)
    with pytest.raises(SinkRejected) as refused:
        Job(make_config(pg_url, standin.url, WINDOW="10s"), clock=FixedClock(now + 3600)).run()
    assert str(refused.value) == "public.pox_five_second_mean holds rows 5s wide, but WINDOW is 10s"
    assert refused.value.hint.startswith("set WINDOW back to 5s, or keep 10s windows in a new table")
    assert archive_rows(pg_url) == rows  # nothing changed
    # an archive made before the width was recorded: its rollups still tell
    conn = psycopg2.connect(pg_url)
    conn.cursor().execute("COMMENT ON TABLE pox_five_second_mean IS NULL")
    conn.commit()
    conn.close()
    with pytest.raises(SinkRejected):
        Job(make_config(pg_url, standin.url, WINDOW="10s"), clock=FixedClock(now + 3600)).run()
    Job(make_config(pg_url, standin.url), clock=FixedClock(now + 3600)).run()  # 5s again: loads


def column_comments(pg_url):
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT attname, col_description(attrelid, attnum) FROM pg_attribute "
                    "WHERE attrelid = 'pox_five_second_mean'::regclass AND attnum > 0 AND NOT attisdropped")
        return dict(cur.fetchall())
    finally:
        conn.close()


def test_each_field_column_records_the_valid_range_its_readings_were_refused_by(pg_url, standin, caplog):
    """The record a restore compares a new Pi's VALID_RANGES with (test_restore); a change is said."""
    now = 1_790_000_000
    feed_standin(standin, pulse_points(now - 7200, 7200)
                 + [("spo2", {"uid": "a"}, "pi", t, 2.5) for t in range(now - 3600, now, 5)])
    Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h", VALID_RANGES="spo2=60..100,bpm=20..250.5"),
        clock=FixedClock(now - 3600)).run()
    assert column_comments(pg_url) == {"time": None, "bpm": "VALID_RANGES=20..250.5", "spo2": "VALID_RANGES=60..100"}
    with caplog.at_level("INFO"):  # a new field's column gets its record too; a changed range is said
        Job(make_config(pg_url, standin.url, VALID_RANGES="spo2=0.0000001..100,bpm=20..250.5"),
            clock=FixedClock(now)).run()
    assert column_comments(pg_url) == {"time": None, "bpm": "VALID_RANGES=20..250.5",
                                       "spo2": "VALID_RANGES=0.0000001..100", "pi": "VALID_RANGES=none"}
    assert ("VALID_RANGES for spo2 changed from 60..100 to 0.0000001..100: windows loaded from now on refuse readings "
            "by the new range (those archived keep theirs)") in caplog.messages
    said = status(make_config(pg_url, standin.url, VALID_RANGES="spo2=0.0000001..100,bpm=20..250.5"), now)
    [line] = [line for line in said.lines() if line.startswith("ranges:")]  # status names it too, once
    assert line.startswith("ranges:      VALID_RANGES for spo2 changed from 60..100 to 0.0000001..100 at ")
    assert line.endswith(": windows archived before keep readings 60..100 let through (`python -m loader backfill "
                         "--start ... --end ...` over that time reads them again by 0.0000001..100 while InfluxDB "
                         "holds them)")
