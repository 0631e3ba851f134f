"""Finished nights delivered after the hourly run (loader/morning.py): reports in REPORT_DIR and messages
through Apprise's ntfy URL to a local HTTP server standing in for ntfy."""

import json
import os
import shutil
import subprocess
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loader import morning
from loader.job import Job
from loader.status import status
from tests.support.harness import HOUR, ROOT, FixedClock, cli, flux_env, make_config
from tests.support.readings import feed_standin, regular_night
from tests.support.serving import serve, stop
from tests.test_report import T0

END = T0 + 3 * HOUR  # the 3-hour nights below end here

pytest.importorskip("apprise")
pytest.importorskip("matplotlib")
pytestmark = pytest.mark.skipif(not shutil.which("pdftotext"), reason="poppler-utils not installed (tests/run does)")


class Ntfy:
    """A stand-in for an ntfy server: records each publish (JSON, or a PUT/POST of an attachment with the
    message in the query); `down` answers 503."""

    def __init__(self):
        self.published, self.down = [], False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _take(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if outer.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                if self.headers.get("Content-Type") == "application/json":
                    message = json.loads(body)
                    outer.published.append({"message": message.get("message"), "title": message.get("title"),
                                            "attachment": None})
                else:
                    outer.published.append({"message": query.get("message"), "title": query.get("title"),
                                            "attachment": body, "filename": query.get("filename")})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"id": "1"}')

            do_POST = do_PUT = _take

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        serve(self.server)
        self.url = f"ntfy://127.0.0.1:{self.server.server_address[1]}/nights"

    def close(self):
        stop(self.server)


@pytest.fixture
def ntfy():
    server = Ntfy()
    yield server
    server.close()


def settings(pg_url, standin, ntfy, reports=None, **extra):
    """TAGS=uid, NOTIFY_URL to the stand-in, and REPORT_DIR where reports is given (drawing one costs a second)."""
    return make_config(pg_url, standin.url, **{"TAGS": "uid", "INITIAL_LOOKBACK": "1d", "NOTIFY_URL": ntfy.url,
                                               **({"REPORT_DIR": str(reports)} if reports else {}), **extra})


def test_a_bad_night_is_messaged_once_with_its_report_and_a_good_one_is_not(pg_url, standin, ntfy, tmp_path):
    late = range(T0 + 2 * HOUR + 600, T0 + 2 * HOUR + 960)  # six minutes device a uploads later (a phone sync)
    feed_standin(standin, [p for p in regular_night("a", T0, 3, dip_every=1200) if p[3] not in late]
                 + regular_night("b", T0, 3))  # a: ODI4 ~3/h; b: none
    reports = tmp_path / "reports"
    reports.mkdir()
    config = settings(pg_url, standin, ntfy, reports, NOTIFY_WHEN="bad", SUBJECT="child")  # a child: ODI4 ≥4/h
    Job(config, clock=FixedClock(END + HOUR)).run()
    first = morning.deliver(config, END + HOUR)
    assert sorted(os.listdir(reports)) == ["night-2026-09-20-2200-uid-a.pdf", "night-2026-09-20-2200-uid-b.pdf"]
    assert first.failures == [] and len(ntfy.published) == 0  # ODI4 3.0/h: green for a child under 4/h
    feed_standin(standin, [(m, tags, f, t, 90.0 if f == "spo2" and (t - late[0]) % 300 < 20 else v)
                           for m, tags, f, t, v in regular_night("a", T0, 3) if t in late])
    # the late six minutes arrive: two more dips in the night's last hour, still under 4/h
    Job(config, clock=FixedClock(END + 2 * HOUR)).run()
    again = morning.deliver(config, END + 2 * HOUR)
    assert again.revised == [str(reports / "night-2026-09-20-2200-uid-a.pdf")]  # its numbers changed: remade
    text = subprocess.run(["pdftotext", str(reports / "night-2026-09-20-2200-uid-a.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    assert "revised" in text and "late readings changed this night" in text
    assert morning.deliver(config, END + 3 * HOUR).reports == []  # unchanged: nothing made again

    always = settings(pg_url, standin, ntfy, reports, NOTIFY_WHEN="always", SUBJECT="child")
    sent = morning.deliver(always, END + 3 * HOUR)
    assert len(ntfy.published) == 2 and len(sent.messages) == 2  # one message per device
    by_line = {p["message"]: p for p in ntfy.published}
    line_a = next(m for m in by_line if "(uid a)" in m)
    assert line_a.startswith("Night of 20 Sep (uid a): ODI4 ") and line_a.endswith(" 3 h 0 min recorded")
    assert by_line[line_a]["attachment"][:4] == b"%PDF" and by_line[line_a]["filename"].endswith("uid-a.pdf")
    assert morning.deliver(always, END + 4 * HOUR).messages == [] and len(ntfy.published) == 2  # once each


def test_with_notify_when_bad_only_the_bad_nights_device_gets_a_message(pg_url, standin, ntfy, tmp_path):
    feed_standin(standin, regular_night("a", T0, 3, dip_every=180) + regular_night("b", T0, 3))  # a: ODI4 20/h
    config = settings(pg_url, standin, ntfy)  # NOTIFY_WHEN=bad, the default; an adult
    now = T0 + 4 * HOUR
    Job(config, clock=FixedClock(now)).run()
    sent = morning.deliver(config, now)
    assert len(ntfy.published) == 1 and sent.messages == [ntfy.published[0]["message"]]
    assert ntfy.published[0]["message"] == ("Night of 20 Sep (uid a): ODI4 19.7/h moderate, T90 0.0 %, nadir 90 %, "
                                            "3 h 0 min recorded")  # 59 dips in 3 h: the adult bands' orange
    assert ntfy.published[0]["title"] == "influx-archive: a night to look at"
    assert morning.deliver(config, now + HOUR).messages == []  # sent once


def test_a_failed_message_is_tried_again_and_old_nights_are_never_messaged(pg_url, standin, ntfy, tmp_path):
    feed_standin(standin, regular_night("a", T0, 3, dip_every=900) + regular_night("a", T0 + 86400, 3))
    config = settings(pg_url, standin, ntfy, NOTIFY_WHEN="always", INITIAL_LOOKBACK="5d")
    loaded_late = END + 2 * 86400 + HOUR  # two nights loaded at once, days later (a first run, a backfill)
    Job(config, clock=FixedClock(loaded_late)).run()
    first = morning.deliver(config, loaded_late)
    assert first.messages == [] and ntfy.published == []  # nights that ended days ago: not messaged

    feed_standin(standin, regular_night("a", T0 + 2 * 86400, 3, dip_every=900))  # last night, messaged this morning
    ntfy.down = True
    now = END + 2 * 86400 + HOUR
    Job(config, clock=FixedClock(now)).run()
    failed = morning.deliver(config, now)
    assert failed.messages == [] and "the message for uid=a was not sent" in failed.failures[0]
    said = status(config, now)
    assert said.exit_code == 1 and "the message for uid=a was not sent" in said.verdict  # a look, not a page
    assert ntfy.url not in "\n".join(said.lines() + failed.failures)  # the URL (a token) is never shown
    ntfy.down = False
    retried = morning.deliver(config, now + HOUR)
    assert len(retried.messages) == 1 and len(ntfy.published) == 1
    assert ntfy.published[0]["message"].startswith("Night of 22 Sep (uid a): ODI4 ")
    assert "the message" not in status(config, now + HOUR).verdict


def test_a_full_report_dir_never_stops_the_archive_and_status_says_it(pg_url, standin, ntfy, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(full)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tiny tmpfs here (needs root)")
    try:
        with open(full / "filler", "wb") as handle:  # the drive is full
            try:
                handle.write(b"x" * 64 * 1024)
            except OSError:
                pass
        feed_standin(standin, regular_night("a", T0, 3, dip_every=900))
        config = make_config(pg_url, standin.url, TAGS="uid", INITIAL_LOOKBACK="1d", REPORT_DIR=str(full))
        outcome = Job(config, clock=FixedClock(END + HOUR)).run()
        assert outcome.rows > 0
        done = morning.deliver(config, END + HOUR)
        assert done.reports == [] and "could not be written to " + str(full) in done.failures[0]
        assert "No space left on device" in done.failures[0]
        said = status(config, END + HOUR)
        assert said.exit_code == 1 and "the report of the night of 2026-09-20 (uid=a) could not be written" in \
            said.verdict
        assert not [n for n in os.listdir(full) if n.endswith(".partial")]
    finally:
        subprocess.run(["umount", "-l", str(full)], capture_output=True)


def test_the_hourly_run_delivers_a_finished_night_and_reports_go_as_the_dumps_go(pg_url, standin, tmp_path):
    """Through the command line, as cron runs it: `run` loads, then writes the finished night's report. Reports
    of nights older than the dumps are kept (BACKUP_KEEP_DAILY days, BACKUP_KEEP_WEEKLY weeks) are removed;
    other files in REPORT_DIR are not ours and stay."""
    now = int(time.time())
    start = now - now % 60 - 5 * HOUR  # ended two hours ago: finished
    feed_standin(standin, regular_night("a", start, 3, dip_every=600))
    reports = tmp_path / "reports"
    reports.mkdir()
    old = reports / "night-2020-01-01-2200-uid-a.pdf"
    mine = reports / "notes.txt"
    for path in (old, mine):
        path.write_text("x")
    ran = cli("run", env=flux_env(pg_url, standin, TAGS="uid", INITIAL_LOOKBACK="1d", REPORT_DIR=reports,
                                  BACKUP_KEEP_DAILY=7, BACKUP_KEEP_WEEKLY=4))
    assert ran.returncode == 0, ran.stderr
    made = [n for n in os.listdir(reports) if n.startswith("night-") and n != old.name]
    assert len(made) == 1 and made[0].endswith("-uid-a.pdf"), os.listdir(reports)
    assert not old.exists() and mine.exists()  # 2020's report went with its dumps; not ours: kept
    assert f"report {reports / made[0]}" in ran.stderr


def test_install_proposes_reports_beside_the_dumps(tmp_path):
    """`install.sh --reports --backup-dir DIR`: REPORT_DIR=DIR/reports, made for the service user."""
    env = tmp_path / ".env"
    env.write_text("INFLUX_URL=http://127.0.0.1:8086\n")
    drive = tmp_path / "drive"
    drive.mkdir()
    done = subprocess.run(["bash", "-c", f'set -euo pipefail; . ./install.sh; INSTALL_LOG=/dev/null; '
                                         f'ENV_FILE="{env}"; APP_DIR=.; SERVICE_USER=$(id -un); REPORTS=1; '
                                         f'BACKUP_DIR_OPT="{drive}"; configure_backups'],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"REPORT_DIR={drive}/reports\n" in env.read_text() and (drive / "reports").is_dir()
