"""Nothing hides a field or a device: a field InfluxDB also holds as text in some shards keeps its
numeric readings and the run says what it skipped; a second device without TAGS is refused, loudly,
with advice that works when followed."""

import logging

import pytest

from loader.errors import SourceRejected
from loader.job import Job
from loader.retag import add_tags
from loader.status import status
from tests.support.archive import archive_rows
from tests.support.harness import HOUR, FixedClock, make_config
from tests.support.readings import expected_means, feed_influxd, feed_standin, pulse_points

NOW = 1_790_000_000 - 1_790_000_000 % 86400 + 9 * 3600 + 7 * 60  # 2026-09-21T09:07:00Z
START = NOW - NOW % HOUR - 4 * HOUR


def _source(language, standin, influxd, influx_db, pg_url):
    """(feed, settings -> config) for the Flux stand-in or the real influxd. On influxd the database's
    shards are an hour long, so an hour can hold a field as text while the hours around it hold it as
    float (InfluxDB keeps a field's type per shard; Cloud's are a day long)."""
    if language == "flux":
        return (lambda p: feed_standin(standin, p)), (lambda **settings: make_config(pg_url, standin.url, **settings))
    influxd.query(f'CREATE RETENTION POLICY "hourly" ON "{influx_db}" DURATION 0s REPLICATION 1 '
                  "SHARD DURATION 1h DEFAULT")
    return ((lambda p: feed_influxd(influxd, influx_db, p)),
            (lambda **settings: make_config(pg_url, influxd.url, language="influxql", bucket=influx_db, **settings)))


@pytest.mark.parametrize("language", ["flux", "influxql"])
def test_a_field_held_as_text_in_one_shard_keeps_its_numeric_readings_and_the_run_says_what_it_skipped(
        pg_url, standin, influxd, influx_db, language, caplog):
    feed, config = _source(language, standin, influxd, influx_db, pg_url)
    cfg = config(INITIAL_LOOKBACK="4h", CHUNK="1h")
    points = pulse_points(START, 4 * HOUR)
    # the second hour's pulse came as "--" (the device's no-reading text): its own shard holds bpm as a string
    texts = [(m, tags, f, t, "--" if f == "bpm" and START + HOUR <= t < START + 2 * HOUR else v)
             for m, tags, f, t, v in points]
    feed(texts)
    caplog.set_level(logging.INFO, logger="loader")
    outcome = Job(cfg, clock=FixedClock(NOW)).run()
    numeric = [p for p in texts if not isinstance(p[4], str)]
    assert archive_rows(pg_url) == expected_means(numeric, end=NOW - NOW % 5)  # bpm kept in the other hours
    assert outcome.skipped == {"bpm": 3600}
    assert "field bpm holds string readings in some of InfluxDB's shards" in caplog.text
    assert "skipped 3600 bpm reading(s) between" in caplog.text
    lines = "\n".join(status(cfg, NOW).lines())
    assert ("skipped:     the last hourly run skipped bpm: 3600 reading(s) that InfluxDB holds as text or "
            "booleans, not numbers") in lines
    # the next run reads the same hours (LATE_DATA) and the comparison finds nothing behind
    again = Job(cfg, clock=FixedClock(NOW + HOUR)).run()
    assert again.late == [] and archive_rows(pg_url) == expected_means(numeric, end=NOW - NOW % 5)


@pytest.mark.parametrize("language", ["flux", "influxql"])
def test_a_second_device_without_tags_is_refused_naming_the_tag_and_the_advice_works(
        pg_url, standin, influxd, influx_db, language):
    feed, config = _source(language, standin, influxd, influx_db, pg_url)
    cfg = config(INITIAL_LOOKBACK="4h")
    first = pulse_points(START, 4 * HOUR, uids=("a",))
    feed(first)
    Job(cfg, clock=FixedClock(NOW)).run()
    assert archive_rows(pg_url) == expected_means(first, end=NOW - NOW % 5)
    # a second oximeter's night reaches InfluxDB in hours already archived (a phone sync)
    second = pulse_points(START + HOUR, 2 * HOUR, uids=("b",))
    feed(second)
    with pytest.raises(SourceRejected) as refused:
        Job(cfg, clock=FixedClock(NOW + HOUR)).run()
    assert "InfluxDB holds readings of 2 series in the same hours (uid=a, uid=b; 2 hour(s) from" in str(refused.value)
    assert "set TAGS=uid" in refused.value.hint and "`python -m loader add-tags --yes`" in refused.value.hint
    assert archive_rows(pg_url) == expected_means(first, end=NOW - NOW % 5)  # nothing averaged in
    result = status(cfg, NOW + HOUR)
    assert result.exit_code == 2 and "2 series in the same hours" in "\n".join(result.lines())
    # the advice, followed: TAGS=uid, the archive keyed by it in place (every row kept), both nights whole
    apart = config(TAGS="uid", INITIAL_LOOKBACK="4h")
    assert add_tags(apart, apply=True).done
    Job(apart, clock=FixedClock(NOW + HOUR)).run()
    assert archive_rows(pg_url) == expected_means(first + second, tags=("uid",), end=NOW + HOUR - NOW % 5)
    assert status(apart, NOW + HOUR).exit_code == 0
