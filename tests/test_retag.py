"""`add-tags`: a one-device archive keyed by TAGS in place when a second oximeter arrives (loader/retag.py)."""

import psycopg2
import pytest

from loader.errors import SinkRejected, SourceRejected
from loader.job import Job
from loader.retag import add_tags
from tests.support.archive import archive_rows, query
from tests.support.harness import DAY, HOUR, FixedClock, make_config
from tests.support.readings import expected_means, feed_standin, pulse_points

T0 = 1_790_000_000 - 1_790_000_000 % DAY - 2 * HOUR  # 22:00 UTC: a night
NOW = T0 + 2 * HOUR + 7 * 60


def test_a_one_device_archive_becomes_a_two_device_one_in_place_with_every_row_kept(pg_url, standin):
    first = pulse_points(T0, 2 * HOUR, uids=("a",))
    feed_standin(standin, first)
    alone = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1d", LATE_LOOKBACK="7d")
    Job(alone, clock=FixedClock(NOW)).run()
    before = archive_rows(pg_url)
    assert before == expected_means(first)
    nights = query(pg_url, "SELECT count(*) FROM pox_five_second_mean_sessions")[0][0]
    seconds = query(pg_url, "SELECT count(*) FROM pox_five_second_mean_seconds")[0][0]
    assert nights == 1 and seconds == 4  # two fields, two hours

    second = pulse_points(T0, 2 * HOUR, uids=("b",))  # the second oximeter, its night uploaded in the morning
    feed_standin(standin, second)
    with pytest.raises(SourceRejected) as merged:
        Job(alone, clock=FixedClock(NOW + HOUR)).run()
    assert "set TAGS=uid in .env, then, when this archive already has rows, `python -m loader add-tags --yes` " \
           "keys them by it in place" in merged.value.hint
    apart = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1d", LATE_LOOKBACK="7d", TAGS="uid")
    with pytest.raises(SinkRejected) as keyed:  # TAGS=uid alone: the run says what to run
        Job(apart, clock=FixedClock(NOW + HOUR)).run()
    assert str(keyed.value) == "public.pox_five_second_mean keeps one device (key time), and TAGS=uid keeps devices " \
                               "apart"
    assert keyed.value.hint == ("key it by uid in place, every row kept: `python -m loader add-tags` (a dry run), "
                                "then `python -m loader add-tags --yes`")

    counted = add_tags(apart, apply=False)
    assert counted.rows == {"uid=a": len(before)} and not counted.done
    assert archive_rows(pg_url) == before  # the dry run changed nothing
    done = add_tags(apart, apply=True)
    assert done.done and done.rows == {"uid=a": len(before)}
    assert done.lines()[0] == (f"keyed public.pox_five_second_mean by uid in place: {len(before):,} rows, each given "
                               f"the device InfluxDB held for its hour (uid=a: {len(before):,})")
    assert archive_rows(pg_url) == {(t, "a"): row for (t,), row in before.items()}  # every row, given its device
    assert query(pg_url, "SELECT DISTINCT uid, count(*) OVER () FROM pox_five_second_mean_seconds") == [("a", 4)]
    assert query(pg_url, "SELECT uid FROM pox_five_second_mean_sessions") == [("a",)]
    assert add_tags(apart, apply=True).already

    Job(apart, clock=FixedClock(NOW + HOUR)).run()  # the other oximeter's night, loaded as late readings
    assert archive_rows(pg_url) == expected_means(first + second, tags=("uid",))
    assert query(pg_url, "SELECT uid FROM pox_five_second_mean_sessions ORDER BY uid") == [("a",), ("b",)]
    assert query(pg_url, "SELECT sum(windows)::int FROM pox_five_second_mean_1d") == [(len(before) * 2,)]


def test_rows_of_hours_no_count_names_take_the_only_device_or_the_one_given(pg_url, standin):
    points = pulse_points(T0, 3 * HOUR, uids=("a",))
    feed_standin(standin, points)
    alone = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1d")
    Job(alone, clock=FixedClock(T0 + 3 * HOUR + 7 * 60)).run()
    rows = len(archive_rows(pg_url))
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute("DELETE FROM influx_archive_counts WHERE hour < to_timestamp(%s)", (T0 + HOUR,))  # an older loader's
    conn.commit()
    apart = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1d", TAGS="uid")
    counted = add_tags(apart, apply=False)
    assert counted.unlabelled == 720 and counted.rows == {"uid=a": rows}
    assert "720 rows of hours loaded before devices were counted: given uid=a (the only device the counts name)" \
        in counted.lines()
    cur.execute("UPDATE influx_archive_counts SET series = 'uid=c' WHERE hour >= to_timestamp(%s)", (T0 + 2 * HOUR,))
    conn.commit()
    conn.close()
    with pytest.raises(SinkRejected) as unknown:  # two devices named: which one were the uncounted rows?
        add_tags(apart, apply=True)
    assert "720 rows of public.pox_five_second_mean are in hours no count names a device for" in str(unknown.value)
    assert unknown.value.hint == "give it: python -m loader add-tags --device uid=VALUE"
    assert archive_rows(pg_url) and all(len(key) == 1 for key in archive_rows(pg_url))  # nothing changed
    done = add_tags(apart, apply=True, device="uid=a")
    assert rows == 2160 and done.rows == {"uid=a": 1440, "uid=c": 720}  # the first hour given uid=a (--device)
    assert sorted({key[1] for key in archive_rows(pg_url)}) == ["a", "c"]
