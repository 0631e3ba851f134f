"""What InfluxDB answers becomes the right rows: the Flux source (stand-in) and the InfluxQL source
(real influxd 1.x) give identical rows, equal to means computed here independently."""

import math

import psycopg2
import pytest

from loader.errors import SourceRejected
from loader.job import Job
from loader.metrics import LOWEST_MARGIN
from tests.support.archive import archive_rows
from tests.support.harness import DAY, HOUR, FixedClock, make_config
from tests.support.influxdb3_standin import InfluxDB3StandIn, statement_count
from tests.support.readings import expected_means, feed_influxd, feed_standin, pulse_points

NOW = 1_790_000_000 - 1_790_000_000 % 86400 + 3 * 3600 + 17  # 2026-09-21T03:00:17Z: mid-window


def test_flux_and_influxql_give_identical_rows_equal_to_independent_means(pg_url, standin, influxd, influx_db):
    points = pulse_points(NOW - 3 * HOUR, 3 * HOUR, gap=(NOW - 2 * HOUR, NOW - 2 * HOUR + 600))
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
def test_a_window_whose_readings_of_one_field_are_all_refused_keeps_the_others_mean(pg_url, standin, influxd,
                                                                                    influx_db, language):
    """Two devices; device a's SpO2 reads 0 (finger off, refused by the default VALID_RANGES) for 20 s while its
    pulse goes on: those four windows keep their pulse mean and no SpO2, every other window both, through
    both sources (InfluxQL asks each ranged field apart and merges the answers, which then disagree on
    those windows)."""
    off = range(NOW - NOW % 5 - 1800, NOW - NOW % 5 - 1780)  # four whole windows
    points = [(m, tags, f, t, 0.0 if f == "spo2" and tags["uid"] == "a" and t in off else v)
              for m, tags, f, t, v in pulse_points(NOW - HOUR, HOUR, uids=("a", "b"))]
    if language == "flux":
        feed_standin(standin, points)
        cfg = make_config(pg_url, standin.url, TAGS="uid", INITIAL_LOOKBACK="2h")
    else:
        feed_influxd(influxd, influx_db, points)
        cfg = make_config(pg_url, influxd.url, language="influxql", bucket=influx_db, TAGS="uid",
                          INITIAL_LOOKBACK="2h")
    Job(cfg, clock=FixedClock(NOW)).run()
    rows = archive_rows(pg_url)
    assert rows == expected_means(points, tags=("uid",), valid_ranges=cfg.valid_ranges, start=0, end=NOW - NOW % 5)
    assert sorted(k for k, fields in rows.items() if "spo2" not in fields) == [(t, "a") for t in off[::5]]
    assert all("bpm" in fields for fields in rows.values())


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


@pytest.mark.parametrize("setting", [None, "none"])
def test_finger_off_zeros_are_dropped_by_default_and_averaged_only_with_valid_ranges_none(pg_url, standin, setting):
    points = pulse_points(NOW - HOUR, HOUR, finger_off_every=7)  # finger off: spo2 0, bpm 127 (a real pulse)
    feed_standin(standin, points)
    extra = {"VALID_RANGES": setting} if setting else {}
    outcome = Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="2h", **extra), clock=FixedClock(NOW)).run()
    rows = archive_rows(pg_url)
    if setting is None:  # the hand route's defaults and install.sh's alike: the oximeter's ranges
        assert rows == expected_means(points, valid_ranges={"spo2": (50, 100), "bpm": (20, 250)}, start=0,
                                      end=NOW - NOW % 5)
        assert set(outcome.dropped) == {"spo2"} and min(r["spo2"] for r in rows.values()) >= 90
    else:
        assert rows == expected_means(points, start=0, end=NOW - NOW % 5) and outcome.dropped == {}
        assert min(r["spo2"] for r in rows.values()) < 90  # the zeros drag the means down, as asked


def test_a_field_that_is_integer_in_one_shard_and_float_in_another(pg_url, standin, influxd, influx_db):
    """InfluxDB keeps one type per field per shard; across shards a field can change type. Flux then
    has two tables of different types that group() refuses to merge unless cast first."""
    early = [("spo2", {"uid": "a"}, "bpm", t, 60 + t % 7) for t in range(NOW - 9 * DAY, NOW - 9 * DAY + 600)]
    late = [("spo2", {"uid": "a"}, "bpm", t, 60.5 + t % 7) for t in range(NOW - HOUR, NOW)]
    feed_standin(standin, early + late)
    from tests.support.flux_standin import execute
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


def test_nan_and_infinite_values_are_refused_by_default_and_archived_as_averaged_with_valid_ranges_none(
        pg_url, standin):
    points = pulse_points(NOW - 600, 600)
    odd = [("spo2", {"uid": "a"}, "spo2", NOW - 300, float("nan")),
           ("spo2", {"uid": "a"}, "bpm", NOW - 200, float("inf")),
           ("spo2", {"uid": "a"}, "bpm", NOW - 100, float("-inf"))]
    feed_standin(standin, points + odd)
    outcome = Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h"), clock=FixedClock(NOW)).run()
    assert outcome.dropped == {"spo2": 1, "bpm": 2}  # outside the oximeter's ranges: refused and counted
    assert archive_rows(pg_url) == expected_means(points, start=0, end=NOW - NOW % 5)

    Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h", VALID_RANGES="none"), clock=FixedClock(NOW)).backfill(
        NOW - HOUR, NOW)
    rows = archive_rows(pg_url)
    w = lambda t: (t - t % 5,)  # noqa: E731
    assert math.isnan(rows[w(NOW - 300)]["spo2"])
    assert rows[w(NOW - 200)]["bpm"] == float("inf") and rows[w(NOW - 100)]["bpm"] == float("-inf")
    untouched = {k: v for k, v in rows.items() if k not in (w(NOW - 300), w(NOW - 200), w(NOW - 100))}
    want = expected_means(points, start=0, end=NOW - NOW % 5)
    assert untouched == {k: v for k, v in want.items() if k in untouched} and len(untouched) == len(want) - 3


@pytest.mark.parametrize("language", ["flux", "influxql"])
def test_valid_ranges_with_exponent_bounds_reach_both_dialects_as_plain_decimals(pg_url, standin, influxd, influx_db,
                                                                                language):
    """1e-7 and 1e22 are written 0.0000001 and 10000000000000000000000.0: InfluxDB 1.x refuses
    exponents (HTTP 400), InfluxDB 3's and Flux's grammars have none."""
    points = pulse_points(NOW - HOUR, HOUR, finger_off_every=7)
    setting = "spo2=1e-7..1e22,bpm=-1e22..1.2e2"
    ranges = {"spo2": (1e-7, 1e22), "bpm": (-1e22, 120.0)}
    if language == "flux":
        feed_standin(standin, points)
        cfg = make_config(pg_url, standin.url, VALID_RANGES=setting, INITIAL_LOOKBACK="2h")
    else:
        feed_influxd(influxd, influx_db, points)
        cfg = make_config(pg_url, influxd.url, language="influxql", bucket=influx_db, VALID_RANGES=setting,
                          INITIAL_LOOKBACK="2h")
    outcome = Job(cfg, clock=FixedClock(NOW)).run()
    assert archive_rows(pg_url) == expected_means(points, valid_ranges=ranges, start=0, end=NOW - NOW % 5)
    finger_off = sum(1 for t in range(NOW - HOUR, NOW - NOW % 5) if t % 7 == 0)
    assert outcome.dropped == {"spo2": finger_off, "bpm": finger_off}


@pytest.mark.parametrize("several", [False, True], ids=["one-statement-per-request", "several-accepted"])
def test_influxdb_3_gives_the_rows_influxdb_1_gives_with_ranges_and_devices(pg_url, influxd, influx_db, several):
    """Against InfluxDB 3's v1 API (the stand-in: Core <= 3.6 refuses several statements in one
    request, and GROUP BY tags arrive as columns, not as series tags) the archive equals the means
    computed here, and no request carries more than one statement."""
    points = pulse_points(NOW - 2 * HOUR, 2 * HOUR, uids=("a", "b"), finger_off_every=7)
    feed_influxd(influxd, influx_db, points)
    server = InfluxDB3StandIn(influxd, several_statements=several)
    try:
        cfg = make_config(pg_url, server.url, language="influxql", bucket=influx_db, INITIAL_LOOKBACK="3h",
                          CHUNK="1h", TAGS="uid", VALID_RANGES="spo2=50..100,bpm=20..120")
        outcome = Job(cfg, clock=FixedClock(NOW), sleep=pytest.fail).run()
    finally:
        server.close()
    ranges = {"spo2": (50, 100), "bpm": (20, 120)}
    assert archive_rows(pg_url) == expected_means(points, tags=("uid",), valid_ranges=ranges, start=0,
                                                  end=NOW - NOW % 5)
    assert outcome.dropped["spo2"] > 0
    assert server.requests and all(statement_count(q) == 1 for q in server.requests)


def test_influxdb_3_without_ranges_or_tags_loads_each_series_as_it_came(pg_url, influxdb3, influxd, influx_db):
    points = pulse_points(NOW - HOUR, HOUR)
    feed_influxd(influxd, influx_db, points)
    Job(make_config(pg_url, influxdb3.url, language="influxql", bucket=influx_db, INITIAL_LOOKBACK="2h"),
        clock=FixedClock(NOW)).run()
    assert archive_rows(pg_url) == expected_means(points, start=0, end=NOW - NOW % 5)


@pytest.mark.parametrize("language", ["flux", "influxql"])
def test_string_and_boolean_fields_are_left_out_by_both_sources_by_one_rule(pg_url, standin, influxd, influx_db,
                                                                           language):
    """FIELDS empty keeps the numeric fields (float, integer, unsigned) -- the types InfluxDB itself
    reports: SHOW FIELD KEYS, Flux's #datatype -- so a string or a boolean field is neither averaged
    as 0/1 nor a query failing every hour; FIELDS naming one is refused with its type."""
    points = pulse_points(NOW - HOUR, HOUR)
    points += [("spo2", {"uid": "a"}, "note", t, "finger off") for t in range(NOW - HOUR, NOW, 60)]
    points += [("spo2", {"uid": "a"}, "clip", t, t % 120 == 0) for t in range(NOW - HOUR, NOW, 60)]
    if language == "flux":
        feed_standin(standin, points)
        url, extra = standin.url, {}
    else:
        feed_influxd(influxd, influx_db, points)
        url, extra = influxd.url, {"language": "influxql", "bucket": influx_db}
    Job(make_config(pg_url, url, INITIAL_LOOKBACK="2h", **extra), clock=FixedClock(NOW)).run()
    numeric = [p for p in points if p[2] in ("spo2", "bpm")]
    assert archive_rows(pg_url) == expected_means(numeric, start=0, end=NOW - NOW % 5)
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'pox_five_second_mean'::regclass "
                    "AND attnum > 0 AND NOT attisdropped ORDER BY 1")
        assert [r[0] for r in cur.fetchall()] == ["bpm", "spo2", "time"]
    with pytest.raises(SourceRejected) as exc:
        Job(make_config(pg_url, url, INITIAL_LOOKBACK="2h", FIELDS="spo2,clip", PG_TABLE="other", **extra),
            clock=FixedClock(NOW)).run()
    assert exc.value.exit_code == 2 and "FIELDS names clip, which is not numeric" in str(exc.value)
    assert "clip (boolean)" in exc.value.hint and "note (string)" in exc.value.hint


LOWS = (87.5, 88.0, 89.75, 90.0, 93.25, 0.0, 96.5)  # either side of 88 and 90, and a finger-off 0 (refused)


def expected_readings(points, window=5, valid=(50, 100)):
    """{(window start, uid): (readings, below 90, at or below 88, lowest, mean)} of the SpO2 readings within
    range, counted here from the points themselves."""
    values = {}
    for _, tags, field, t, v in points:
        if field == "spo2" and valid[0] <= v <= valid[1]:
            values.setdefault((t - t % window, tags["uid"]), []).append(v)
    return {key: (len(vs), sum(v < 90 for v in vs), sum(v <= 88 for v in vs), min(vs), math.fsum(vs) / len(vs))
            for key, vs in values.items()}


def readings_rows(pg_url, table):
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT extract(epoch FROM time)::bigint, uid, n, below_90, atmost_88, lowest "
                    f"FROM {table}_readings")
        return {(t, uid): (n, below, atmost, lowest) for t, uid, n, below, atmost, lowest in cur.fetchall()}
    finally:
        conn.close()


def test_each_windows_readings_below_90_and_at_or_below_88_are_counted_exactly_through_both_sources(
        pg_url, standin, influxd, influx_db):
    """T90 and T88 come from the readings: per window and device, how many SpO2 readings within VALID_RANGES,
    how many below 90 and at or below 88, as InfluxDB counts them (Flux: the stand-in; InfluxQL: influxd),
    kept for the windows with a reading below 90 (the rest, all 90 or more, say it by their means); and
    their lowest, kept where it is more than LOWEST_MARGIN under the window's mean (brief dips)."""
    points = [(m, tags, f, t, LOWS[(t * 3 + len(tags["uid"])) % len(LOWS)] if f == "spo2" and t % 600 < 300
               else v) for m, tags, f, t, v in pulse_points(NOW - HOUR, HOUR, uids=("a", "bb"))]
    feed_standin(standin, points)
    feed_influxd(influxd, influx_db, points)
    clock = FixedClock(NOW)
    Job(make_config(pg_url, standin.url, TAGS="uid", PG_TABLE="f", INITIAL_LOOKBACK="2h", CHUNK="30m"),
        clock=clock).run()
    Job(make_config(pg_url, influxd.url, language="influxql", bucket=influx_db, TAGS="uid", PG_TABLE="q",
                    INITIAL_LOOKBACK="2h", CHUNK="30m"), clock=clock).run()
    counted = {k: v for k, v in expected_readings(points).items() if k[0] < NOW - NOW % 5}
    assert all(abs(mean - lowest - LOWEST_MARGIN) > 1e-6 for _, _, _, lowest, mean in counted.values())  # none a tie
    far = {k: lowest < mean - LOWEST_MARGIN for k, (_, _, _, lowest, mean) in counted.items()}
    expected = {k: (n, below, atmost, lowest if far[k] else None)
                for k, (n, below, atmost, lowest, _) in counted.items() if below > 0 or far[k]}
    assert readings_rows(pg_url, "f") == expected
    assert readings_rows(pg_url, "q") == expected
    assert {v[1] > v[2] > 0 for v in expected.values()} >= {True}  # windows with readings at 88 < v < 90 too
    assert {(v[1] > 0, v[3] is not None) for v in expected.values()} >= {(False, True)}  # kept for the lowest alone
    below = [k for k, v in expected.items() if v[1] > 0]  # none of the 5 minutes in 10 whose readings are all >= 90
    assert len(below) < len(counted) / 2 + 20
