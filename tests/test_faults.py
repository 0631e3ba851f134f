"""Every fault and mistake, each made for real, ending with the archive equal to the source
(nothing lost, nothing twice) or a clear exit 2 -- never a quiet skip. InfluxDB side: server errors, 429,
hangs, cut or malformed bodies, wrong token, bucket, org or database, wrong names, no answer. PostgreSQL side:
down at start, restarted mid-run. The clock: before the watermark, not synchronised."""

import os
import pwd
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import pytest
from psycopg2 import sql

from loader.errors import ClockError, SinkRejected, SinkUnavailable, SourceQueryError, SourceRejected, SourceUnavailable
from loader.job import Job
from loader.pg import Database
from loader.sources.influxql import InfluxQLSource, influx_kind
from loader.windows import rfc3339
from tests.support.archive import archive_rows, count_rows, first_loaded, watermark
from tests.support.harness import DAY, HOUR, ROOT, FixedClock, cli, flux_env, make_config, now
from tests.support.influxdb3_standin import InfluxDB3StandIn
from tests.support.readings import expected_means, feed_influxd, feed_standin, line_protocol, pulse_points
from tests.support.servers import LoopDrive, free_port, server_or_skip
from tests.support.serving import serve, stop

NOW = 1_790_000_000 - 1_790_000_000 % 86400 + 3 * 3600 + 17  # 2026-09-21T03:00:17Z: mid-window
MEANS_HEADER = ("#datatype,string,long,dateTime:RFC3339,double,double\n#group,false,false,false,false,false\n"
                "#default,means,,,,\n,result,table,_time,bpm,spo2\n")


def assert_complete(pg_url, points):
    assert archive_rows(pg_url) == expected_means(points, start=0, end=NOW - NOW % 5)
    total, distinct = count_rows(pg_url)
    assert total == distinct


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


def test_a_response_hanging_past_the_timeout_is_retried(pg_url, standin):
    points = pulse_points(NOW - HOUR, HOUR)
    feed_standin(standin, points)
    standin.faults = [("hang", 4)]
    waits = []
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h", INFLUX_TIMEOUT="1s")
    Job(cfg, clock=FixedClock(NOW), sleep=waits.append).run()
    assert waits == [2]
    assert archive_rows(pg_url) == expected_means(points, start=0, end=NOW - NOW % 5)


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


def test_a_wrong_token_exits_2_without_retrying_and_the_fixed_token_loads_everything(pg_url, standin):
    points = pulse_points(NOW - HOUR, HOUR)
    feed_standin(standin, points)
    with pytest.raises(SourceRejected) as exc:
        Job(make_config(pg_url, standin.url, INFLUX_TOKEN="expired", INITIAL_LOOKBACK="1h"), clock=FixedClock(NOW),
            sleep=pytest.fail).run()
    assert exc.value.exit_code == 2 and "token" in str(exc.value)
    assert "expired" not in str(exc.value) + exc.value.hint and standin.queries == []  # refused before any query
    Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h"), clock=FixedClock(NOW)).run()
    assert_complete(pg_url, points)


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
    listing = "bpm (float), spo2 (float)"  # both sources name the types InfluxDB reports
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


@pytest.mark.parametrize("language", ["flux", "influxql"])
def test_every_name_another_setting_gives_is_proven_and_a_misspelt_one_is_exit_2_naming_what_influxdb_has(
        pg_url, standin, influxd, influx_db, language):
    bucket = feed(language, standin, influxd, influx_db, pulse_points(int(time.time()) - HOUR, HOUR))
    url = standin.url if language == "flux" else influxd.url
    clock = FixedClock(int(time.time()))
    misspelt = {"TAGS": "uidd", "VALID_RANGES": "bmp=20..250", "ROLLUP_BELOW": "sp02=90", "SESSION_SPO2": "sp02",
                "SESSION_PULSE": "bmp"}
    for key, value in misspelt.items():
        config = make_config(pg_url, url, language=language, bucket=bucket, INITIAL_LOOKBACK="2h", **{key: value})
        with pytest.raises(SourceRejected) as refused:
            Job(config, clock=clock).run()
        assert refused.value.exit_code == 2
        name = value.split("=")[0]
        assert f"{key} names '{name}', which measurement 'spo2' does not have" in str(refused.value), key
        assert ("its tags: uid" if key == "TAGS" else "its fields: bpm (float), spo2 (float)") in refused.value.hint
        assert archive_rows(pg_url) == {} and watermark(pg_url) is None


def test_a_fields_name_of_a_string_field_is_refused_with_its_type(pg_url, influxd, influx_db, standin):
    influxd.write(influx_db, [f'spo2,uid=a spo2=97.0,note="finger off" {int(time.time()) - 60}'])
    env = source_env("influxql", pg_url, standin, influxd, influx_db, FIELDS="spo2,note")
    refused = cli("run", env=env)
    assert refused.returncode == 2
    assert last_line(refused) == ("influx-archive: FIELDS names note, which is not numeric and has no mean (its "
                                  "fields: note (string), spo2 (float); FIELDS may name only numeric (float, "
                                  "integer, unsigned) fields)")


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


def test_a_backfill_of_a_range_influxdb_no_longer_has_says_so(pg_url, standin):
    feed_standin(standin, pulse_points(now() - HOUR, HOUR))
    old = now() - now() % HOUR - 40 * 86400
    result = cli("backfill", "--start", rfc3339(old), "--end", rfc3339(old + 2 * HOUR), env=flux_env(pg_url, standin))
    assert result.returncode == 0, result.stderr
    assert (f"InfluxDB has no spo2 readings between {rfc3339(old)} and {rfc3339(old + 2 * HOUR)}: there was nothing "
            "to load (the free plan keeps 30 days)") in result.stderr


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
        assert "Connection refused" in str(exc.value) and "sudo systemctl status postgresql" in exc.value.hint
    finally:
        pg_server.start()
    Job(cfg, clock=FixedClock(NOW)).run()
    assert_complete(pg_url, points)


def test_postgres_restarted_mid_run_fails_the_run_with_exit_1_and_the_next_run_completes(pg_server, pg_url, standin):
    end = now() - now() % 3600
    start = end - 6 * HOUR
    points = pulse_points(start, 6 * HOUR)
    feed_standin(standin, points)
    env = flux_env(pg_url, standin, CHUNK="1h")
    args = ["backfill", "--start", rfc3339(start), "--end", rfc3339(end)]
    standin.faults = [None, None, ("hang", 4)]  # the third chunk's answer is slow: PostgreSQL restarts meanwhile
    proc = subprocess.Popen([sys.executable, "-m", "loader", "--env-file", os.devnull, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while len(standin.queries) < 3 and time.time() < deadline:
        time.sleep(0.05)
    pg_server.stop()
    pg_server.start()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    errors = [line for line in err.splitlines() if line.startswith("influx-archive:")]
    assert len(errors) == 1 and "PostgreSQL" in errors[0] and "unavailable" in errors[0]
    rows = archive_rows(pg_url)
    assert {k[0] for k in rows} <= set(range(start, start + 2 * HOUR, 5))  # only whole, committed chunks
    assert cli(*args, env=env).returncode == 0
    assert archive_rows(pg_url) == expected_means(points, start=start, end=end)


def test_a_statement_timeout_cancelling_a_run_is_named_with_advice_that_lifts_it(pg_url, standin):
    """A statement_timeout set on the database (as some set one to keep dashboards from running away), and
    a run whose statement waits past it (another session holds the archive table): exit 1, one message
    saying PostgreSQL cancelled a statement and why, not that it is unavailable, and advice whose ALTER ROLE,
    run as given, lifts the timeout for the loader's role over the database's; the next run loads."""
    points = pulse_points(NOW - 3 * HOUR, 3 * HOUR)
    feed_standin(standin, points)
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="3h")
    clock = FixedClock(NOW - HOUR)
    Job(cfg, clock=clock).run()
    admin = psycopg2.connect(pg_url)
    admin.autocommit = True
    cur = admin.cursor()
    cur.execute("SELECT current_database(), current_user")
    database, user = cur.fetchone()
    cur.execute(f'ALTER DATABASE "{database}" SET statement_timeout = 300')
    holder = psycopg2.connect(pg_url)
    holder.cursor().execute("LOCK TABLE pox_five_second_mean IN ACCESS EXCLUSIVE MODE")
    clock.value = NOW
    try:
        with pytest.raises(SinkUnavailable) as cancelled:
            Job(cfg, clock=clock).run()
        holder.rollback()
        assert cancelled.value.exit_code == 1
        assert "cancelled a statement of this run: canceling statement due to statement timeout" in str(cancelled.value)
        assert "unavailable" not in str(cancelled.value)
        for statement in re.findall(r"-c '([^']*)'", cancelled.value.hint):
            cur.execute(statement)  # as the advice says, run as a superuser
        assert f'ALTER ROLE "{user}" SET statement_timeout = 0' in cancelled.value.hint
        check = psycopg2.connect(pg_url)
        show = check.cursor()
        show.execute("SHOW statement_timeout")
        assert show.fetchone() == ("0",)  # the role's setting wins over the database's 300 ms
        check.close()
        Job(cfg, clock=clock).run()
    finally:
        holder.close()
        cur.execute(f'ALTER DATABASE "{database}" RESET statement_timeout')
        cur.execute(f'ALTER ROLE "{user}" RESET statement_timeout')
        cur.execute(f'ALTER ROLE "{user}" RESET lock_timeout')
        admin.close()
    assert archive_rows(pg_url) == expected_means(points, start=0, end=NOW - NOW % 5)


def test_postgresql_out_of_disk_is_exit_2_with_advice_and_once_freed_the_next_run_loads_everything(pg_server,
                                                                                                   standin):
    """The drive holding PostgreSQL's data fills up (an SD card's classic end): the run exits 2 (a human must free
    space) saying PostgreSQL has no room left on its disk and where to look, not that it is unavailable; once
    space is freed, the next run loads every hour missed. The database lives in a tablespace on a small
    loop-mounted ext4 drive filled to its last 64 kB (PostgreSQL's WAL stays on its own disk, as it would
    not on a Pi, where the server may stop instead: then the message is that it is unavailable, which is
    true)."""
    drive = server_or_skip(lambda: LoopDrive(size_kb=24 * 1024), "a loop-mounted drive")
    name = "t_" + uuid.uuid4().hex[:12]
    admin = psycopg2.connect(pg_server.url())
    admin.autocommit = True
    cur = admin.cursor()
    try:
        location = os.path.join(drive.path, "pgdata")
        os.mkdir(location, 0o700)
        if pg_server.user:
            user = pwd.getpwnam(pg_server.user)
            os.chown(location, user.pw_uid, user.pw_gid)
        cur.execute(sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(
            sql.Identifier(name), sql.Literal(location)))
        cur.execute(f'CREATE DATABASE "{name}" TABLESPACE "{name}"')
        url = pg_server.url(name)
        points = pulse_points(NOW - 7 * HOUR, 7 * HOUR)
        feed_standin(standin, points)
        cfg = make_config(url, standin.url, INITIAL_LOOKBACK="1h")
        clock = FixedClock(NOW - 6 * HOUR)
        Job(cfg, clock=clock).run()
        filler = os.path.join(drive.path, "filler")
        stat = os.statvfs(drive.path)
        with open(filler, "wb") as handle:
            handle.truncate(stat.f_bavail * stat.f_frsize - 64 * 1024)
            os.posix_fallocate(handle.fileno(), 0, stat.f_bavail * stat.f_frsize - 64 * 1024)
        clock.value = NOW
        with pytest.raises(SinkRejected) as full:
            Job(cfg, clock=clock).run()
        assert full.value.exit_code == 2
        assert "has no room left on its disk" in str(full.value) and "No space left on device" in str(full.value)
        assert "unavailable" not in str(full.value) and "df -h /var/lib/postgresql" in full.value.hint
        os.remove(filler)
        check = psycopg2.connect(url)
        said = check.cursor()
        said.execute("SELECT outcome, exit_code FROM influx_archive_runs ORDER BY id DESC LIMIT 1")
        assert said.fetchone() == ("failed", 2)  # recorded for status, though the disk was full
        check.close()
        Job(cfg, clock=clock).run()
        assert archive_rows(url) == expected_means(points, start=NOW - 7 * HOUR, end=NOW - NOW % 5)
    finally:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'DROP TABLESPACE IF EXISTS "{name}"')
        admin.close()
        drive.close()


def test_a_deadlock_is_said_as_a_chunk_rolled_back_for_the_next_run(pg_url):
    """Two sessions each holding a row the other wants: PostgreSQL ends one with `deadlock detected`, which the
    loader says as a rolled-back chunk the next run loads (exit 1), not as PostgreSQL being unavailable."""
    db = Database(make_config(pg_url, "http://127.0.0.1:9"))
    setup = psycopg2.connect(pg_url)
    setup.autocommit = True
    setup.cursor().execute("CREATE TABLE deadlock_rows (id int PRIMARY KEY); INSERT INTO deadlock_rows VALUES (1), (2)")
    setup.close()
    first, second = psycopg2.connect(pg_url), psycopg2.connect(pg_url)
    first.cursor().execute("UPDATE deadlock_rows SET id = id WHERE id = 1")
    second.cursor().execute("UPDATE deadlock_rows SET id = id WHERE id = 2")
    outcomes = []

    def take(conn, row):
        try:
            with db.errors():
                conn.cursor().execute("UPDATE deadlock_rows SET id = id WHERE id = %s", (row,))
            outcomes.append(None)
        except SinkUnavailable as exc:
            outcomes.append(exc)
        conn.rollback()  # the survivor's lock goes with it

    other = threading.Thread(target=take, args=(second, 1))
    other.start()
    take(first, 2)
    other.join(timeout=30)
    first.close()
    second.close()
    [error] = [e for e in outcomes if e is not None]
    assert error.exit_code == 1 and "rolled this run's chunk back: deadlock detected" in str(error)
    assert "unavailable" not in str(error) and "next run" in error.hint


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


@pytest.mark.parametrize("status", [404, 500])
def test_a_database_influxdb_3_lacks_exits_2_at_once_with_its_own_advice(pg_url, influxd, status):
    """InfluxDB 3 says "Database x not found" (HTTP 404, or 500 from older versions: by meaning, not
    status, so never retried); the advice is its database name, not a DBRP mapping."""
    server = InfluxDB3StandIn(influxd, not_found_status=status)
    try:
        cfg = make_config(pg_url, server.url, language="influxql", bucket="sensors", INITIAL_LOOKBACK="1h")
        with pytest.raises(SourceRejected) as exc:
            Job(cfg, clock=FixedClock(NOW), sleep=pytest.fail).run()
    finally:
        server.close()
    assert exc.value.exit_code == 2 and "Database sensors not found" in str(exc.value)
    assert "influxdb3 show databases" in exc.value.hint and "dbrp create" not in exc.value.hint
    assert len(server.requests) == 1


@pytest.mark.parametrize("url, headers, message, kind", [
    ("http://127.0.0.1:8086", {"X-Influxdb-Version": "1.6.7"}, "database not found: x", "1.x"),
    ("http://pi.local:8086", {"X-Influxdb-Version": "v2.7.11"}, "database not found: x", "dbrp"),
    ("https://us-east-1-1.aws.cloud2.influxdata.com", {}, "database not found: x", "dbrp"),
    ("https://us-east-1-1.aws.cloud2.influxdata.com", {}, "Database x not found", "dbrp"),
    ("https://abc123.a.influxdb.io", {}, "database not found: x", "3"),
    ("http://127.0.0.1:8181", {}, "Database x not found", "3"),
])
def test_which_influxdb_answered_decides_the_advice_for_a_missing_database(url, headers, message, kind):
    assert influx_kind(url, headers, message) == kind


def test_several_statements_refused_by_influxdb_3_is_exit_2_not_a_transient_500(pg_url, influxdb3):
    """The loader sends one statement per request; were a refusal of several to come back, it is said
    for what it is (HTTP 500 there would otherwise be retried every hour, for ever)."""
    source = InfluxQLSource(make_config(pg_url, influxdb3.url, language="influxql", bucket="x"))
    with pytest.raises(SourceRejected, match="only one InfluxQl statement") as exc:
        source._query('SHOW DATABASES; SHOW MEASUREMENTS ON "x"')
    assert exc.value.exit_code == 2 and len(influxdb3.requests) == 1


def test_a_query_the_server_ended_for_its_time_limit_is_retried_and_advises_a_smaller_chunk(pg_url, standin):
    points = pulse_points(NOW - HOUR, HOUR)
    feed_standin(standin, points)
    standin.faults = [("status", 500, None, "query terminated: deadline exceeded after 90s")] * 2
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1h", MAX_RETRIES=2)
    with pytest.raises(SourceUnavailable) as exc:
        Job(cfg, clock=FixedClock(NOW), sleep=lambda seconds: None).run()
    assert exc.value.exit_code == 1 and "smaller CHUNK" in exc.value.hint
    Job(cfg, clock=FixedClock(NOW)).run()
    assert_complete(pg_url, points)


def test_data_in_another_retention_policy_is_named_in_the_advice_and_found_with_it(pg_url, influxd, influx_db,
                                                                                  standin):
    """A database whose readings sit in a retention policy other than its default (a `DURATION INF` one made
    to keep them): the default answers nothing, and the advice names INFLUX_RETENTION_POLICY."""
    influxd.query(f'CREATE RETENTION POLICY "forever" ON "{influx_db}" DURATION INF REPLICATION 1')
    points = pulse_points(int(time.time()) - HOUR, 600)
    request = urllib.request.Request(f"{influxd.url}/write?db={influx_db}&rp=forever&precision=s", method="POST",
                                     data="\n".join(line_protocol(points)).encode())
    urllib.request.urlopen(request, timeout=60).close()
    env = source_env("influxql", pg_url, standin, influxd, influx_db)
    refused = cli("run", env=env)
    assert refused.returncode == 2
    assert last_line(refused).endswith(
        f"(check INFLUX_BUCKET and INFLUX_MEASUREMENT, and that the device is writing; data kept in a retention "
        f"policy other than the database's default needs INFLUX_RETENTION_POLICY (`SHOW RETENTION POLICIES ON "
        f"\"{influx_db}\"` lists them))")
    loaded = cli("run", env=dict(env, INFLUX_RETENTION_POLICY="forever"))
    assert loaded.returncode == 0, loaded.stderr
    assert archive_rows(pg_url) == expected_means(points)


def test_credentials_refused_name_the_settings_in_use(pg_url, standin):
    """InfluxDB 1.x with auth answers 401 {"error": "authorization failed"}: with INFLUX_USERNAME set, the advice
    is about the user and password, not a token the person never set."""
    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self):
            body = b'{"error":"authorization failed"}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    serve(server)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with_user = cli("run", env=influxql_env(pg_url, standin, url, INFLUX_USERNAME="reader",
                                                INFLUX_PASSWORD="pw-not-shown"))
        with_token = cli("run", env=dict(influxql_env(pg_url, standin, url), INFLUX_TOKEN="tok-not-shown"))
    finally:
        stop(server)
    assert with_user.returncode == with_token.returncode == 2
    assert last_line(with_user) == ("influx-archive: InfluxDB refused the credentials (HTTP 401): authorization failed "
                                    "(check INFLUX_USERNAME and INFLUX_PASSWORD: a user of this InfluxDB 1.x server "
                                    "with READ on pulse_oximeter (`SHOW GRANTS FOR \"<user>\"` as an admin))")
    assert "(check that INFLUX_TOKEN is a current token" in last_line(with_token)
    assert "pw-not-shown" not in with_user.stderr and "tok-not-shown" not in with_token.stderr
