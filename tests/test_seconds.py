"""The night's 1 Hz readings kept in <PG_TABLE>_seconds (loader/seconds.py): each second as the device sent
it through both sources, merged and never erased, and the sessions read from them (loader/oximetry.py)."""

import psycopg2
import pytest

from loader.job import Job
from loader.pg import Database
from loader.seconds import SecondsTable
from tests.support.flux_standin import StandIn
from tests.support.harness import DAY, HOUR, ORG, TOKEN, FixedClock, make_config
from tests.support.readings import feed_influxd, feed_standin

T0 = 1_790_000_000 - 1_790_000_000 % DAY - 2 * HOUR  # 22:00 UTC
NOW = T0 + 4 * HOUR + 17


def night(seconds, uid="a", start=T0, spo2=None, pulse=60):
    """1 Hz whole-percent readings of one device: 96 unless `spo2` says otherwise ({second: value})."""
    spo2 = spo2 or {}
    out = []
    for s in range(seconds):
        out.append(("spo2", {"uid": uid}, "spo2", start + s, float(spo2.get(s, 96))))
        out.append(("spo2", {"uid": uid}, "bpm", start + s, float(pulse(s) if callable(pulse) else pulse)))
    return out


def kept(pg_url, device, start, end, config):
    conn = psycopg2.connect(pg_url)
    try:
        return SecondsTable(Database(config), tuple(config.tags)).read(conn.cursor(), device, ["spo2", "bpm"],
                                                                       start, end)
    finally:
        conn.close()


def sessions(pg_url, table="pox_five_second_mean"):
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        names = ("uid", "desat3", "desat4", "artefacts", "nadir", "recorded_s", "mcgill")
        cur.execute(f"SELECT {', '.join(names)} FROM {table}_sessions ORDER BY 1, started")
        return [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        conn.close()


def test_both_sources_keep_each_second_as_the_device_sent_it(pg_url, standin, influxd, influx_db):
    dips = {s: 91 for s in range(600, 630)}
    dips.update({s: 127 for s in range(900, 905)})  # "no reading": refused by VALID_RANGES
    points = night(2 * HOUR, "a", spo2=dips) + night(2 * HOUR, "c, d", pulse=lambda s: 70 + s % 3)
    points = [p for p in points if not (p[1]["uid"] == "a" and T0 + 1200 <= p[3] < T0 + 1260)]  # a minute unsent
    feed_standin(standin, points)
    feed_influxd(influxd, influx_db, points)
    clock = FixedClock(NOW)
    flux = make_config(pg_url, standin.url, TAGS="uid", PG_TABLE="via_flux", INITIAL_LOOKBACK="6h", CHUNK="1h")
    influxql = make_config(pg_url, influxd.url, language="influxql", bucket=influx_db, TAGS="uid",
                           PG_TABLE="via_influxql", INITIAL_LOOKBACK="6h", CHUNK="1h")
    Job(flux, clock=clock).run()
    Job(influxql, clock=clock).run()
    for config in (flux, influxql):
        a = kept(pg_url, ("a",), T0, T0 + 2 * HOUR, config)
        assert a["spo2"][600:630] == [91] * 30 and a["spo2"][599] == 96
        assert a["spo2"][900:905] == [None] * 5 and a["spo2"][1200:1260] == [None] * 60
        assert a["bpm"][900:905] == [60] * 5  # the pulse of those seconds was a valid reading
        other = kept(pg_url, ("c, d",), T0, T0 + 2 * HOUR, config)
        assert other["bpm"][:6] == [70, 71, 72, 70, 71, 72] and other["spo2"] == [96] * (2 * HOUR)
        assert kept(pg_url, ("a",), T0 - HOUR, T0, config) is None  # before the first reading: none kept


def test_a_range_influxdb_no_longer_holds_is_read_again_without_erasing_its_seconds(pg_url, standin):
    feed_standin(standin, night(2 * HOUR))
    config = make_config(pg_url, standin.url, TAGS="uid", INITIAL_LOOKBACK="6h")
    Job(config, clock=FixedClock(NOW)).run()
    before = kept(pg_url, ("a",), T0, T0 + 2 * HOUR, config)
    expired = StandIn(token=TOKEN, org=ORG)  # the same InfluxDB once retention let most of the night go
    try:
        feed_standin(expired, night(600, start=T0 + HOUR, spo2={s: 93 for s in range(600)}))  # ten minutes left
        config = make_config(pg_url, expired.url, TAGS="uid", INITIAL_LOOKBACK="6h")
        Job(config, clock=FixedClock(NOW)).backfill(T0 - HOUR, NOW - NOW % HOUR)
    finally:
        expired.close()
    after = kept(pg_url, ("a",), T0, T0 + 2 * HOUR, config)
    assert after["spo2"][:HOUR] == before["spo2"][:HOUR] and after["spo2"][HOUR + 600:] == before["spo2"][HOUR + 600:]
    assert after["spo2"][HOUR:HOUR + 600] == [93] * 600  # what InfluxDB still held was written


def test_a_night_through_the_loader_counts_its_dips_refuses_its_artefacts_and_reads_late_readings(pg_url, standin):
    spo2, pulse = {}, {}
    for k in range(12):  # two hours: a 20-s dip of 4 points every 10 minutes ...
        spo2.update({600 * k + 100 + i: v for i, v in enumerate([95, 94, 93] + [92] * 14 + [93, 94, 95])})
        for i in range(6):  # ... and a motion artefact 5 minutes later: 10 points low, the pulse corrupted
            spo2[600 * k + 400 + i] = 86
            pulse[600 * k + 400 + i] = 110
    first = night(HOUR, spo2=spo2, pulse=lambda s: pulse.get(s, 60))
    feed_standin(standin, first)
    config = make_config(pg_url, standin.url, TAGS="uid", INITIAL_LOOKBACK="6h")
    Job(config, clock=FixedClock(T0 + HOUR + 600)).run()
    [row] = sessions(pg_url)
    assert (row["desat3"], row["desat4"], row["artefacts"], row["nadir"]) == (6, 6, 6, 92.0)
    assert row["recorded_s"] == HOUR

    later = night(2 * HOUR, spo2=spo2, pulse=lambda s: pulse.get(s, 60))[2 * HOUR:]  # the second hour, uploaded late
    feed_standin(standin, later)
    Job(config, clock=FixedClock(T0 + 5 * HOUR)).run()
    [row] = sessions(pg_url)
    assert (row["desat3"], row["desat4"], row["artefacts"], row["recorded_s"]) == (12, 12, 12, 2 * HOUR)


def test_an_archive_without_its_seconds_reads_its_nights_from_the_means(pg_url, standin):
    feed_standin(standin, night(2 * HOUR, spo2={s: 91 for s in range(600, 630)}))
    config = make_config(pg_url, standin.url, TAGS="uid", INITIAL_LOOKBACK="6h")
    Job(config, clock=FixedClock(NOW)).run()
    assert sessions(pg_url)[0]["artefacts"] == 0
    conn = psycopg2.connect(pg_url)
    with conn, conn.cursor() as cur:
        cur.execute("DROP TABLE pox_five_second_mean_seconds")
    conn.close()
    Job(config, clock=FixedClock(NOW)).rebuild_rollups()
    [row] = sessions(pg_url)
    assert row["artefacts"] is None and (row["desat3"], row["desat4"]) == (1, 1)  # by the means: the same dip


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_value_that_is_not_a_number_is_no_reading_of_its_second(pg_url, standin, value):
    points = night(HOUR)
    points[2 * 100] = points[2 * 100][:4] + (value,)  # second 100's SpO2
    feed_standin(standin, points)
    config = make_config(pg_url, standin.url, TAGS="uid", INITIAL_LOOKBACK="6h", VALID_RANGES="none")
    Job(config, clock=FixedClock(NOW)).run()
    assert kept(pg_url, ("a",), T0 + 99, T0 + 102, config)["spo2"] == [96, None, 96]
