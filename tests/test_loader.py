"""The loader against real servers: PostgreSQL, influxd 1.x (InfluxQL) and the Flux stand-in."""

import math

import pytest

from conftest import (FixedClock, archive_rows, count_rows, expected_means, feed_influxd, feed_standin,
                      make_config, pulse_points, watermark)
from loader.errors import ClockError, SinkUnavailable, SourceQueryError, SourceRejected, SourceUnavailable
from loader.job import Job

NOW = 1_790_000_000 - 1_790_000_000 % 86400 + 3 * 3600 + 17  # 2026-09-21T03:00:17Z: mid-window
HOUR = 3600
DAY = 86400


def no_sleep(waits):
    return waits.append


def test_flux_and_influxql_give_identical_rows_equal_to_independent_means(pg_url, standin, influxd, influx_db):
    points = pulse_points(NOW - 3 * HOUR, 3 * HOUR, uids=("a", "b"), gap=(NOW - 2 * HOUR, NOW - 2 * HOUR + 600))
    feed_standin(standin, points)
    feed_influxd(influxd, influx_db, points)
    clock = FixedClock(NOW)
    flux = make_config(pg_url, standin.url, INITIAL_LOOKBACK="4h", CHUNK="1h", PG_TABLE="via_flux")
    influxql = make_config(pg_url, influxd.url, language="influxql", bucket=influx_db, INITIAL_LOOKBACK="4h",
                           CHUNK="1h", PG_TABLE="via_influxql")
    Job(flux, clock=clock).run()
    Job(influxql, clock=clock).run()

    via_flux = archive_rows(pg_url, "via_flux")
    via_influxql = archive_rows(pg_url, "via_influxql")
    end = NOW - NOW % 5  # the last complete window ends here; the current one is not loaded
    expected = expected_means(points, start=NOW - 4 * HOUR, end=end)
    assert via_flux == via_influxql  # same windows, same labels, same values to the last bit
    assert via_flux == expected
    # 2160 windows in 3 hours; the 10-minute gap starts and ends mid-window, so 119 are empty
    # and absent (not zero-filled), while the two it cuts keep the readings they have
    assert len(expected) == 2160 - 119
    assert not any(NOW - 2 * HOUR < k[0] < NOW - 2 * HOUR + 595 for k in via_flux)
    assert min(k[0] for k in via_flux) == NOW - 3 * HOUR - (NOW - 3 * HOUR) % 5  # labelled by window start


def test_key_tags_keep_series_apart_through_both_sources(pg_url, standin, influxd, influx_db):
    points = pulse_points(NOW - HOUR, HOUR, uids=("a", "b", "c d"))
    feed_standin(standin, points)
    feed_influxd(influxd, influx_db, points)
    clock = FixedClock(NOW)
    Job(make_config(pg_url, standin.url, TAGS="uid", PG_TABLE="f", INITIAL_LOOKBACK="2h"), clock=clock).run()
    Job(make_config(pg_url, influxd.url, language="influxql", bucket=influx_db, TAGS="uid", PG_TABLE="q",
                    INITIAL_LOOKBACK="2h"), clock=clock).run()
    expected = expected_means(points, tags=("uid",), start=0, end=NOW - NOW % 5)
    assert archive_rows(pg_url, "f") == expected
    assert archive_rows(pg_url, "q") == expected
    assert {k[1] for k in expected} == {"a", "b", "c d"}


@pytest.mark.parametrize("language", ["flux", "influxql"])
def test_valid_ranges_drop_finger_off_readings_before_averaging(pg_url, standin, influxd, influx_db, language,
                                                                caplog):
    points = pulse_points(NOW - HOUR, HOUR, finger_off_every=7)
    ranges = {"spo2": (50, 100), "bpm": (20, 120)}
    if language == "flux":
        feed_standin(standin, points)
        cfg = make_config(pg_url, standin.url, VALID_RANGES="spo2=50..100,bpm=20..120", INITIAL_LOOKBACK="2h")
    else:
        feed_influxd(influxd, influx_db, points)
        cfg = make_config(pg_url, influxd.url, language="influxql", bucket=influx_db,
                          VALID_RANGES="spo2=50..100,bpm=20..120", INITIAL_LOOKBACK="2h")
    caplog.set_level("INFO")
    outcome = Job(cfg, clock=FixedClock(NOW)).run()
    rows = archive_rows(pg_url)
    assert rows == expected_means(points, valid_ranges=ranges, start=0, end=NOW - NOW % 5)
    assert min(r["spo2"] for r in rows.values()) >= 50
    finger_off = sum(1 for t in range(NOW - HOUR, NOW - NOW % 5) if t % 7 == 0)
    assert outcome.dropped == {"spo2": finger_off, "bpm": finger_off}
    assert "outside VALID_RANGES" in caplog.text


@pytest.mark.parametrize("language", ["flux", "influxql"])
def test_rerun_gives_no_duplicates_and_late_points_are_merged(pg_url, standin, influxd, influx_db, language):
    points = pulse_points(NOW - 2 * HOUR, 2 * HOUR)
    if language == "flux":
        feed = lambda p: feed_standin(standin, p)  # noqa: E731
        cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="3h", LATE_DATA="1h")
    else:
        feed = lambda p: feed_influxd(influxd, influx_db, p)  # noqa: E731
        cfg = make_config(pg_url, influxd.url, language="influxql", bucket=influx_db, INITIAL_LOOKBACK="3h",
                          LATE_DATA="1h")
    feed(points)
    clock = FixedClock(NOW)
    Job(cfg, clock=clock).run()
    first = archive_rows(pg_url)
    for _ in range(3):
        Job(cfg, clock=clock).run()
    assert archive_rows(pg_url) == first
    total, distinct = count_rows(pg_url)
    assert total == distinct == len(first)

    # a point arrives late for a window 20 minutes back, then an hour later the next run merges it
    late_t = NOW - 1200 - NOW % 5 + 2
    late = [("spo2", {"uid": "late"}, "spo2", late_t, 50.0)]
    feed(late)
    clock.value = NOW + HOUR
    Job(cfg, clock=clock).run()
    rows = archive_rows(pg_url)
    want = expected_means(points + late, start=0, end=NOW - NOW % 5)
    assert rows[(late_t - late_t % 5,)] == want[(late_t - late_t % 5,)]
    assert rows[(late_t - late_t % 5,)]["spo2"] != first[(late_t - late_t % 5,)]["spo2"]
    # one more row: the window that was still open at the first run (readings up to NOW) is complete now
    assert count_rows(pg_url) == (len(first) + 1, len(first) + 1)


def test_first_run_archives_initial_lookback_and_watermark_follows(pg_url, standin):
    feed_standin(standin, pulse_points(NOW - 3 * DAY, 3 * DAY))
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="2d", CHUNK="6h")
    outcome = Job(cfg, clock=FixedClock(NOW)).run()
    end = NOW - NOW % 5
    start = NOW - 2 * DAY - (NOW - 2 * DAY) % 5
    assert (outcome.start, outcome.end) == (start, end)
    assert outcome.chunks == 9  # chunk boundaries fall on multiples of 6h
    assert watermark(pg_url) == end
    assert len(archive_rows(pg_url)) == (end - start) // 5


def test_outage_source_500s_then_postgres_down_then_everything_is_filled(pg_server, pg_url, standin):
    points = pulse_points(NOW - 10 * HOUR, 10 * HOUR + 3 * HOUR)
    feed_standin(standin, points)
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="6h", CHUNK="1h", MAX_RETRIES=3)
    clock = FixedClock(NOW - 4 * HOUR)
    Job(cfg, clock=clock).run()
    mark = watermark(pg_url)

    # the cloud answers 500 for a while: the hourly run fails (exit 1), the watermark stays
    clock.value += HOUR
    standin.faults = [("status", 500, None)] * 3
    waits = []
    with pytest.raises(SourceUnavailable) as failed:
        Job(cfg, clock=clock, sleep=waits.append).run()
    assert failed.value.exit_code == 1
    assert waits == [2, 4]  # bounded backoff between the three attempts
    assert watermark(pg_url) == mark

    # then PostgreSQL is down for the next hour's run
    clock.value += HOUR
    pg_server.stop()
    try:
        with pytest.raises(SinkUnavailable) as down:
            Job(cfg, clock=clock).run()
        assert down.value.exit_code == 1
    finally:
        pg_server.start()

    # back to normal two hours later: one run fills every missing window
    clock.value += 2 * HOUR
    Job(cfg, clock=clock).run()
    assert watermark(pg_url) == clock.value - clock.value % 5
    assert archive_rows(pg_url) == expected_means(points, start=NOW - 10 * HOUR, end=clock.value - clock.value % 5)


def test_retry_after_is_honoured_then_the_chunk_loads(pg_url, standin):
    feed_standin(standin, pulse_points(NOW - HOUR, HOUR))
    standin.faults = [("status", 429, 7), ("status", 503, None)]
    waits = []
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h")
    Job(cfg, clock=FixedClock(NOW), sleep=waits.append).run()
    assert waits == [7, 4]
    assert len(archive_rows(pg_url)) == HOUR // 5


def test_retry_after_longer_than_allowed_ends_the_run_without_waiting(pg_url, standin):
    feed_standin(standin, pulse_points(NOW - HOUR, HOUR))
    standin.faults = [("status", 429, 3600)]
    waits = []
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h", MAX_RETRY_WAIT="5m")
    with pytest.raises(SourceUnavailable, match="MAX_RETRY_WAIT"):
        Job(cfg, clock=FixedClock(NOW), sleep=waits.append).run()
    assert waits == []


def test_body_cut_mid_stream_commits_nothing_and_is_retried(pg_url, standin):
    points = pulse_points(NOW - 2 * HOUR, 2 * HOUR)
    feed_standin(standin, points)
    standin.faults = [("cut", 4000)]
    once = make_config(pg_url, standin.url, INITIAL_LOOKBACK="2h", CHUNK="1h", MAX_RETRIES=1)
    with pytest.raises(SourceUnavailable):
        Job(once, clock=FixedClock(NOW)).run()
    assert archive_rows(pg_url) == {}  # the rows before the cut were parsed but never written
    assert watermark(pg_url) is None

    standin.faults = [("cut", 4000)]
    waits = []
    retried = make_config(pg_url, standin.url, INITIAL_LOOKBACK="2h", CHUNK="1h", MAX_RETRIES=2)
    Job(retried, clock=FixedClock(NOW), sleep=waits.append).run()
    assert waits == [2]
    assert archive_rows(pg_url) == expected_means(points, start=0, end=NOW - NOW % 5)


def test_error_table_inside_http_200_commits_nothing(pg_url, standin):
    feed_standin(standin, pulse_points(NOW - 2 * HOUR, 2 * HOUR))
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="2h", CHUNK="1h")
    standin.faults = [None, ("error_table", "panic: runtime error: out of memory")]
    with pytest.raises(SourceQueryError, match="out of memory"):
        Job(cfg, clock=FixedClock(NOW)).run()
    first_chunk_end = NOW - 2 * HOUR - (NOW - 2 * HOUR) % HOUR + HOUR
    assert watermark(pg_url) == first_chunk_end  # the first chunk committed, the failed one did not
    assert max(k[0] for k in archive_rows(pg_url)) < first_chunk_end
    Job(cfg, clock=FixedClock(NOW)).run()  # the next run completes the archive
    assert archive_rows(pg_url) == expected_means(pulse_points(NOW - 2 * HOUR, 2 * HOUR), start=0,
                                                  end=NOW - NOW % 5)


def test_wrong_token_fails_at_once_with_exit_2(pg_url, standin):
    cfg = make_config(pg_url, standin.url, INFLUX_TOKEN="wrong-token", INITIAL_LOOKBACK="1h")
    with pytest.raises(SourceRejected) as exc:
        Job(cfg, clock=FixedClock(NOW), sleep=pytest.fail).run()
    assert exc.value.exit_code == 2
    assert "wrong-token" not in str(exc.value) + exc.value.hint
    assert len(standin.queries) == 0


def test_unknown_bucket_fails_with_exit_2_for_flux(pg_url, standin):
    points = pulse_points(NOW - HOUR, HOUR)
    feed_standin(standin, points)
    cfg = make_config(pg_url, standin.url, bucket="no_such_bucket", INITIAL_LOOKBACK="1h")
    with pytest.raises(SourceRejected, match="no_such_bucket") as exc:
        Job(cfg, clock=FixedClock(NOW), sleep=pytest.fail).run()
    assert exc.value.exit_code == 2 and "INFLUX_BUCKET" in exc.value.hint
    Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h"), clock=FixedClock(NOW)).run()  # bucket fixed
    assert archive_rows(pg_url) == expected_means(points, start=0, end=NOW - NOW % 5)


def test_unknown_org_fails_with_exit_2_for_flux(pg_url, standin):
    cfg = make_config(pg_url, standin.url, INFLUX_ORG="someone-else", INITIAL_LOOKBACK="1h")
    with pytest.raises(SourceRejected, match='organization name "someone-else" not found') as exc:
        Job(cfg, clock=FixedClock(NOW), sleep=pytest.fail).run()
    assert exc.value.exit_code == 2 and "INFLUX_ORG (someone-else)" in exc.value.hint


def test_missing_database_fails_with_exit_2_and_the_databases_an_influxdb_1_server_has(pg_url, influxd, influx_db):
    cfg = make_config(pg_url, influxd.url, language="influxql", bucket="not_mapped", INITIAL_LOOKBACK="1h")
    with pytest.raises(SourceRejected, match="database not found") as exc:
        Job(cfg, clock=FixedClock(NOW), sleep=pytest.fail).run()
    assert exc.value.hint.startswith("this InfluxDB 1.x server has no database not_mapped; set INFLUX_BUCKET to one "
                                     "it has (")
    assert influx_db in exc.value.hint and "dbrp" not in exc.value.hint.lower()  # 1.x has no DBRP mappings


def test_clock_before_watermark_does_not_move_it(pg_url, standin):
    feed_standin(standin, pulse_points(NOW - HOUR, HOUR))
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h")
    Job(cfg, clock=FixedClock(NOW)).run()
    mark = watermark(pg_url)
    with pytest.raises(ClockError):
        Job(cfg, clock=FixedClock(NOW - 5 * DAY)).run()  # a Pi booted with a stale fake-hwclock
    assert watermark(pg_url) == mark


def test_unsynchronised_clock_does_not_run(pg_url, standin):
    feed_standin(standin, pulse_points(NOW - HOUR, 2 * HOUR))
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h")
    with pytest.raises(ClockError, match="NTP"):
        Job(cfg, clock=FixedClock(NOW, synchronized=False)).run()
    assert watermark(pg_url) is None
    assert standin.queries == []
    # where it cannot tell (no systemd), auto goes ahead and yes refuses
    Job(cfg, clock=FixedClock(NOW, synchronized=None)).run()
    strict = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h", REQUIRE_CLOCK_SYNC="yes")
    with pytest.raises(ClockError):
        Job(strict, clock=FixedClock(NOW + HOUR, synchronized=None)).run()


def test_backfill_moves_watermark_only_when_contiguous(pg_url, standin):
    feed_standin(standin, pulse_points(NOW - 5 * DAY, 5 * DAY))
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1d")
    Job(cfg, clock=FixedClock(NOW - 3 * DAY)).run()
    mark = watermark(pg_url)
    # a range ahead of the watermark, with a hole before it: loaded, watermark stays
    Job(cfg, clock=FixedClock(NOW)).backfill(mark + DAY, mark + 2 * DAY)
    assert watermark(pg_url) == mark
    # a range that starts at or before the watermark: watermark follows it
    Job(cfg, clock=FixedClock(NOW)).backfill(mark - HOUR, mark + DAY)
    assert watermark(pg_url) == mark + DAY
    rows = archive_rows(pg_url)
    assert rows == expected_means(pulse_points(NOW - 5 * DAY, 5 * DAY), start=NOW - 4 * DAY - (NOW - 4 * DAY) % 5,
                                  end=mark + 2 * DAY)


def test_backfill_stops_at_the_last_complete_window(pg_url, standin):
    feed_standin(standin, pulse_points(NOW - HOUR, HOUR + 60))
    cfg = make_config(pg_url, standin.url)
    outcome = Job(cfg, clock=FixedClock(NOW)).backfill(NOW - HOUR, NOW + DAY)
    assert outcome.end == NOW - NOW % 5
    assert max(k[0] for k in archive_rows(pg_url)) == NOW - NOW % 5 - 5


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


def test_a_response_hanging_past_the_timeout_is_retried(pg_url, standin):
    points = pulse_points(NOW - HOUR, HOUR)
    feed_standin(standin, points)
    standin.faults = [("hang", 4)]
    waits = []
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h", INFLUX_TIMEOUT="1s")
    Job(cfg, clock=FixedClock(NOW), sleep=waits.append).run()
    assert waits == [2]
    assert archive_rows(pg_url) == expected_means(points, start=0, end=NOW - NOW % 5)


def test_a_field_that_is_integer_in_one_shard_and_float_in_another(pg_url, standin, influxd, influx_db):
    """InfluxDB keeps one type per field per shard; across shards a field can change type. Flux then
    has two tables of different types that group() refuses to merge unless cast first."""
    early = [("spo2", {"uid": "a"}, "bpm", t, 60 + t % 7) for t in range(NOW - 9 * DAY, NOW - 9 * DAY + 600)]
    late = [("spo2", {"uid": "a"}, "bpm", t, 60.5 + t % 7) for t in range(NOW - HOUR, NOW)]
    feed_standin(standin, early + late)
    from flux_standin import execute
    raw = 'from(bucket: "pulse_oximeter") |> range(start: 2026-01-01T00:00:00Z, stop: 2027-01-01T00:00:00Z)'
    with pytest.raises(Exception, match="schema collision"):
        execute(raw + ' |> group(columns: ["_field"])', standin.store)
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="10d", PG_TABLE="f")
    Job(cfg, clock=FixedClock(NOW)).run()
    assert archive_rows(pg_url, "f") == expected_means(early + late, start=0, end=NOW - NOW % 5)

    lines = [f"spo2,uid=a bpm={60 + t % 7}i {t}" for _, _, _, t, _ in early] + \
            [f"spo2,uid=a bpm={60.5 + t % 7} {t}" for _, _, _, t, _ in late]
    influxd.write(influx_db, lines)
    cfg = make_config(pg_url, influxd.url, language="influxql", bucket=influx_db, INITIAL_LOOKBACK="10d",
                      PG_TABLE="q")
    Job(cfg, clock=FixedClock(NOW)).run()
    assert archive_rows(pg_url, "q") == archive_rows(pg_url, "f")


HOSTILE = {"bucket": 'bu"ck;et ü', "measurement": 'me"as;ure ü', "field": "fi'eld\"; DROP TABLE x; ü",
           "table": 'ta"ble; ü'}


def test_hostile_names_in_bucket_measurement_field_and_table_inject_nothing(pg_url, standin, influxd):
    """Quotes, semicolons, spaces and unicode in every name from config or data: each stays one name
    in Flux, InfluxQL and SQL, and both sources still give identical rows."""
    points = [(HOSTILE["measurement"], {"uid": "a"}, f, t, v) for t in range(NOW - 600, NOW)
              for f, v in (("spo2", 96.5 + t % 3), (HOSTILE["field"], 1.25))]
    feed_standin(standin, points, bucket=HOSTILE["bucket"])
    influxd.query(f'CREATE DATABASE "{HOSTILE["bucket"].replace(chr(34), chr(92) + chr(34))}"')
    feed_influxd(influxd, HOSTILE["bucket"], points)
    common = dict(INITIAL_LOOKBACK="1h", INFLUX_MEASUREMENT=HOSTILE["measurement"],
                  VALID_RANGES=f"{HOSTILE['field']}=0..10")
    Job(make_config(pg_url, standin.url, bucket=HOSTILE["bucket"], PG_TABLE=HOSTILE["table"], **common),
        clock=FixedClock(NOW)).run()
    Job(make_config(pg_url, influxd.url, language="influxql", bucket=HOSTILE["bucket"], PG_TABLE="via_influxql",
                    **common), clock=FixedClock(NOW)).run()
    want = expected_means(points, start=0, end=NOW - NOW % 5)
    assert archive_rows(pg_url, HOSTILE["table"]) == want
    assert archive_rows(pg_url, "via_influxql") == want
    assert HOSTILE["field"] in next(iter(want.values()))


MEANS_HEADER = ("#datatype,string,long,dateTime:RFC3339,double,double\n#group,false,false,false,false,false\n"
                "#default,means,,,,\n,result,table,_time,bpm,spo2\n")


@pytest.mark.parametrize("body, message", [
    (MEANS_HEADER + ",,0,2026-09-21T02:00:00Z,61.5,97\n,,0,2026-09-21T02:00:05Z,sixty,97\n", "cannot read"),
    (MEANS_HEADER + ",,0,2026-09-21T02:00:00Z,61.5,97\nnot,a,flux,row\n", "without result and table cells"),
    (MEANS_HEADER + "2026-09-21T02:00:00Z,61.5\n", "without result and table cells"),
    ("<html><body>502 Bad Gateway</body></html>", "unexpected table"),
])
def test_a_malformed_body_commits_nothing_and_the_next_run_loads_everything(pg_url, standin, body, message):
    points = pulse_points(NOW - 2 * HOUR, 2 * HOUR)
    feed_standin(standin, points)
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="2h", CHUNK="1h")
    standin.faults = [("body", body)]
    with pytest.raises(SourceQueryError, match=message) as exc:
        Job(cfg, clock=FixedClock(NOW)).run()
    assert exc.value.exit_code == 1
    assert archive_rows(pg_url) == {} and watermark(pg_url) is None
    Job(cfg, clock=FixedClock(NOW)).run()
    assert archive_rows(pg_url) == expected_means(points, start=0, end=NOW - NOW % 5)


@pytest.mark.parametrize("language", ["flux", "influxql"])
def test_a_tag_and_a_field_with_the_same_name_never_mix(pg_url, standin, influxd, influx_db, language):
    """With TAGS=uid, a field also called uid is left out: its values must not become key values."""
    points = pulse_points(NOW - HOUR, HOUR, uids=("a", "b"))
    clash = [("spo2", {"uid": "a"}, "uid", t, 7.0) for t in range(NOW - HOUR, NOW)]
    if language == "flux":
        feed_standin(standin, points + clash)
        cfg = make_config(pg_url, standin.url, TAGS="uid", INITIAL_LOOKBACK="2h")
    else:
        feed_influxd(influxd, influx_db, points + clash)
        cfg = make_config(pg_url, influxd.url, language="influxql", bucket=influx_db, TAGS="uid",
                          INITIAL_LOOKBACK="2h")
    Job(cfg, clock=FixedClock(NOW)).run()
    rows = archive_rows(pg_url)
    assert {k[1] for k in rows} == {"a", "b"}
    assert rows == expected_means(points, tags=("uid",), start=0, end=NOW - NOW % 5)


def test_nan_and_infinite_values_are_archived_as_the_source_averages_them(pg_url, standin):
    points = pulse_points(NOW - 600, 600)
    odd = [("spo2", {"uid": "a"}, "spo2", NOW - 300, float("nan")),
           ("spo2", {"uid": "a"}, "bpm", NOW - 200, float("inf")),
           ("spo2", {"uid": "a"}, "bpm", NOW - 100, float("-inf"))]
    feed_standin(standin, points + odd)
    Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h"), clock=FixedClock(NOW)).run()
    rows = archive_rows(pg_url)
    w = lambda t: (t - t % 5,)  # noqa: E731
    assert math.isnan(rows[w(NOW - 300)]["spo2"])
    assert rows[w(NOW - 200)]["bpm"] == float("inf") and rows[w(NOW - 100)]["bpm"] == float("-inf")
    untouched = {k: v for k, v in rows.items() if k not in (w(NOW - 300), w(NOW - 200), w(NOW - 100))}
    want = expected_means(points, start=0, end=NOW - NOW % 5)
    assert untouched == {k: v for k, v in want.items() if k in untouched} and len(untouched) == len(want) - 3


def test_an_empty_result_moves_the_watermark_and_writes_nothing(pg_url, standin):
    # the measurement has data in the last 30 days, so an empty range is proved empty, not misspelt
    feed_standin(standin, pulse_points(NOW - 30 * DAY, 600))
    outcome = Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="2h"), clock=FixedClock(NOW)).run()
    assert outcome.rows == 0 and outcome.chunks == 1
    assert archive_rows(pg_url) == {} and watermark(pg_url) == NOW - NOW % 5


def test_finger_off_readings_count_in_the_mean_when_no_range_is_set(pg_url, standin):
    points = pulse_points(NOW - HOUR, HOUR, finger_off_every=7)
    feed_standin(standin, points)
    outcome = Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="2h"), clock=FixedClock(NOW)).run()
    rows = archive_rows(pg_url)
    assert rows == expected_means(points, start=0, end=NOW - NOW % 5) and outcome.dropped == {}
    assert min(r["spo2"] for r in rows.values()) < 90  # the zeros drag the means down, as asked
