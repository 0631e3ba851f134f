"""Faults and mistakes, each made for real, ending with the archive equal to the source (nothing
skipped, no duplicates), the documented exit code and the exact line a user reads: server errors, a
wrong token, PostgreSQL down, the clock, a misspelt measurement or field, and every way InfluxDB can
fail to answer. (Other fault cases live beside the behaviour they test; README.md lists them all.)"""

import re
import time

import psycopg2
import pytest

from conftest import (FixedClock, archive_rows, cli, count_rows, expected_means, feed_influxd, feed_standin,
                      first_loaded, flux_env, make_config, pulse_points, watermark)
from servers import free_port
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


# ------------------------------------------------------------------ never silently wrong (wrong names)

DAY = 86400


def source_env(language, pg_url, standin, influxd, influx_db, **extra):
    """The environment of a cron run against the Flux stand-in or the real influxd 1.x."""
    if language == "flux":
        return flux_env(pg_url, standin, **extra)
    return flux_env(pg_url, standin, INFLUX_URL=influxd.url, INFLUX_QUERY_LANGUAGE="influxql",
                    INFLUX_BUCKET=influx_db, INFLUX_TOKEN="", **extra)


def feed(language, standin, influxd, influx_db, points):
    if language == "flux":
        feed_standin(standin, points)
    else:
        feed_influxd(influxd, influx_db, points)
    return "pulse_oximeter" if language == "flux" else influx_db


def last_line(result):
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("language", ["flux", "influxql"])
def test_a_misspelt_measurement_loads_nothing_and_once_fixed_every_retained_day_is_loaded(
        pg_url, standin, influxd, influx_db, language):
    t = int(time.time())
    points = pulse_points(t - 25 * DAY, 600) + pulse_points(t - HOUR, 600)  # 25 days ago and today
    bucket = feed(language, standin, influxd, influx_db, points)
    env = source_env(language, pg_url, standin, influxd, influx_db, INITIAL_LOOKBACK="30d")
    wrong = cli("run", env=dict(env, INFLUX_MEASUREMENT="sp02"))
    assert wrong.returncode == 2, wrong.stderr
    assert re.fullmatch(rf"influx-archive: measurement 'sp02' has no data in bucket '{bucket}' between \S+Z and \S+Z; "
                        r"nothing was loaded \(check INFLUX_MEASUREMENT; measurements there: spo2\)", last_line(wrong))
    assert watermark(pg_url) is None and archive_rows(pg_url) == {}
    assert cli("status", env=env).returncode == 2  # nothing archived: a monitor pages
    fixed = cli("run", env=env)
    assert fixed.returncode == 0, fixed.stderr
    assert archive_rows(pg_url) == expected_means(points)  # the 25-day-old readings too: nothing was skipped


@pytest.mark.parametrize("language", ["flux", "influxql"])
def test_a_fields_name_the_measurement_lacks_is_refused_by_run_and_check_and_leaves_no_column(
        pg_url, standin, influxd, influx_db, language):
    points = pulse_points(int(time.time()) - HOUR, HOUR)
    bucket = feed(language, standin, influxd, influx_db, points)
    env = source_env(language, pg_url, standin, influxd, influx_db, INITIAL_LOOKBACK="2h", FIELDS="spo2,pulse")
    wrong = cli("run", env=env)
    assert wrong.returncode == 2, wrong.stderr
    listing = "bpm, spo2" if language == "flux" else "bpm (float), spo2 (float)"
    assert re.fullmatch(rf"influx-archive: FIELDS names pulse, which measurement 'spo2' does not have in bucket "
                        rf"'{bucket}' between \S+Z and \S+Z; nothing was loaded \(its fields: {re.escape(listing)}; "
                        r"correct FIELDS, or leave it empty for every numeric field\)", last_line(wrong))
    checked = cli("check", env=env)
    assert checked.returncode == 2 and "FAIL  InfluxDB: FIELDS names pulse, which measurement" in checked.stdout
    assert archive_rows(pg_url) == {} and watermark(pg_url) is None
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM information_schema.columns WHERE column_name = 'pulse'")
    assert cur.fetchone()[0] == 0  # no column of NULLs for a field that does not exist
    conn.close()
    fixed = cli("run", env=dict(env, FIELDS="spo2,bpm"))
    assert fixed.returncode == 0, fixed.stderr
    assert archive_rows(pg_url) == expected_means(points, start=first_loaded(pg_url), end=watermark(pg_url))


def test_a_fields_name_of_a_string_field_is_refused_with_its_type(pg_url, influxd, influx_db, standin):
    influxd.write(influx_db, [f'spo2,uid=a spo2=97.0,note="finger off" {int(time.time()) - 60}'])
    env = source_env("influxql", pg_url, standin, influxd, influx_db, FIELDS="spo2,note")
    refused = cli("run", env=env)
    assert refused.returncode == 2
    assert last_line(refused) == ("influx-archive: FIELDS names note, which is not numeric and has no mean (its "
                                  "fields: note (string), spo2 (float); FIELDS may name only float and integer "
                                  "fields)")


# ------------------------------------------------------------------ never silently wrong (no answer)

def influxql_env(pg_url, standin, url, **extra):
    return flux_env(pg_url, standin, INFLUX_URL=url, INFLUX_QUERY_LANGUAGE="influxql", INFLUX_TOKEN="",
                    MAX_RETRIES="1", **extra)


def no_answer_case(case, pg_server):
    """(INFLUX_URL, the line the user reads) for each way InfluxDB can fail to answer that a later run fixes."""
    if case == "nothing listening":
        where = f"127.0.0.1:{free_port()}"
        return f"http://{where}", (f"nothing is listening at {where} (connection refused) (is InfluxDB running "
                                   "there, and is INFLUX_URL's port right? The next run catches up once it answers)")
    if case == "host not found":
        return "http://no-such-host.invalid:8086", (
            "host no-such-host.invalid not found (DNS) (check the spelling of INFLUX_URL; if no-such-host.invalid "
            "is right, this machine's network or DNS is down and the next run catches up)")
    where = f"127.0.0.1:{pg_server.port}"  # PostgreSQL's port: it closes an HTTP request without a word
    return f"http://{where}", (f"{where} closed the connection without an HTTP answer (is INFLUX_URL's port "
                               "InfluxDB's (8086 by default; 5432 is PostgreSQL's)? If it is, InfluxDB was "
                               "restarting and the next run catches up)")


@pytest.mark.parametrize("case", ["nothing listening", "host not found", "PostgreSQL's port"])
def test_influxdb_not_answering_is_said_in_the_users_words_with_exit_1(pg_url, pg_server, standin, case):
    url, said = no_answer_case(case, pg_server)
    result = cli("run", env=influxql_env(pg_url, standin, url))
    assert result.returncode == 1
    assert last_line(result) == "influx-archive: " + said


def test_a_host_that_does_not_resolve_is_not_retried_within_the_run(pg_url):
    waits = []
    config = make_config(pg_url, "http://no-such-host.invalid:8086", language="influxql", MAX_RETRIES="5")
    with pytest.raises(SourceUnavailable, match="not found"):
        Job(config, clock=FixedClock(NOW), sleep=waits.append).run()
    assert waits == []  # no 30 s of backoff for a name that does not exist


def test_https_to_a_plain_http_server_says_to_use_http_not_to_set_a_ca(pg_url, standin):
    plain = standin.url.replace("http://", "")
    result = cli("run", env=flux_env(pg_url, standin, INFLUX_URL=f"https://{plain}"))
    assert result.returncode == 2
    assert last_line(result) == (f"influx-archive: {plain} does not speak TLS (INFLUX_URL says https://; this server "
                                 f"wants http://{plain})")


@pytest.mark.parametrize("path", ["/query", "/api/v2/query", "/api/v2/"])
def test_an_influx_url_with_the_api_path_is_refused_with_the_base_url(pg_url, standin, path):
    result = cli("run", env=flux_env(pg_url, standin, INFLUX_URL="http://192.0.2.7:8086" + path))
    assert result.returncode == 2
    assert ("  - INFLUX_URL is the server's base URL, without the API path: set it to http://192.0.2.7:8086"
            in result.stderr.splitlines())
