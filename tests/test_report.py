"""`report`: a night on one page (loader/report.py), rendered for real with matplotlib and read back with
poppler's pdftotext and pdftoppm, as a person opening the PDF would."""

import os
import shutil
import subprocess

import pytest

from loader.job import Job
from loader.report import ReportError, report
from tests.support.archive import query
from tests.support.flux_standin import StandIn
from tests.support.harness import DAY, HOUR, ORG, TOKEN, FixedClock, cli, flux_env, make_config
from tests.support.readings import constructed_night, feed_standin

T0 = 1_790_000_000 - 1_790_000_000 % DAY - 2 * HOUR  # 22:00 UTC
END = T0 + 7 * HOUR
pytestmark = pytest.mark.skipif(not shutil.which("pdftotext"), reason="poppler-utils not installed (tests/run does)")


@pytest.fixture(scope="module")
def archive(pg_server):
    """Two devices' constructed nights, loaded once for the module (the reports only read them): (URL, stand-in)."""
    pg_url = pg_server.new_database()
    standin = StandIn(token=TOKEN, org=ORG)
    feed_standin(standin, constructed_night("a", 4, T0) + constructed_night("b", 1, T0))
    Job(make_config(pg_url, standin.url, TAGS="uid", INITIAL_LOOKBACK="1d"), clock=FixedClock(END + HOUR)).run()
    yield pg_url, standin
    standin.close()


@pytest.fixture
def nights(archive):
    return make_config(archive[0], archive[1].url, TAGS="uid", INITIAL_LOOKBACK="1d")


def pdf_text(path):
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


def test_a_pdf_report_holds_each_devices_night_as_the_sessions_table_holds_it(nights, archive, tmp_path):
    pg_url = archive[0]
    out = tmp_path / "nights.pdf"
    done = report(nights, END + HOUR, out=str(out))
    assert [night.label for _, night in done.written] == ["uid=a", "uid=b"]
    pages = pdf_text(out).split("\f")
    assert len([p for p in pages if p.strip()]) == 2
    rows = query(pg_url, "SELECT uid, odi4, t90_pct, nadir, desat4, recorded_s FROM pox_five_second_mean_sessions "
                         "ORDER BY uid")
    assert [r[0] for r in rows] == ["a", "b"] and rows[0][4] == 20 and rows[1][4] == 5  # every dip counted
    for page, (uid, odi4, t90, nadir, _, recorded) in zip(pages, rows):
        assert f"uid={uid}" in page and "Orientation, not a diagnosis" in page
        for title, value in (("ODI4", f"{odi4:.1f}"), ("T90 %", f"{t90:.1f}"), ("Nadir", f"{nadir:.1f}")):
            assert any(line.split()[:len(title.split())] == title.split() and value in line.split()
                       for line in page.splitlines()), (title, value, page)
        assert recorded == 7 * HOUR - 20 * 60 - 120 and "6h 38m recorded" in page  # less the break and finger-off
    png = tmp_path / "page"
    subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(out), str(png)], check=True)
    assert os.path.getsize(f"{png}-1.png") > 5000  # drawn, not blank


def test_a_png_is_one_nights_and_the_night_and_device_are_chosen(nights, tmp_path):
    with pytest.raises(ReportError, match="2 nights and one PNG: give --device"):
        report(nights, END + HOUR, out=str(tmp_path / "both.png"))
    one = report(nights, END + HOUR, out=str(tmp_path / "a.png"), device="uid=b", night="2026-09-20")
    [(path, night)] = one.written
    assert night.label == "uid=b" and open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ReportError, match="no night that began on the night of 2026-09-22"):
        report(nights, END + HOUR, night="2026-09-22", directory=str(tmp_path))
    with pytest.raises(ReportError, match="no night finished yet"):  # the night not yet SESSION_GAP quiet
        report(nights, END + 10 * 60, directory=str(tmp_path))
    mine = report(nights, END + HOUR, directory=str(tmp_path))  # one PDF per night, named by date and device
    assert sorted(os.path.basename(p) for p, _ in mine.written) == ["night-2026-09-20-2200-uid-a.pdf",
                                                                    "night-2026-09-20-2200-uid-b.pdf"]


def test_the_report_command_writes_the_file_it_is_given(archive, tmp_path):
    pg_url, standin = archive
    out = tmp_path / "night.pdf"
    done = cli("report", "--out", str(out), "--device", "uid=a", "--night", "2026-09-20",
               env=flux_env(pg_url, standin, TAGS="uid", TZ="Europe/Berlin"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"report:  {out} (uid=a of 2026-09-20, ODI4 ")
    assert "00:00 – 07:00 (CEST)" in pdf_text(out)  # the Pi's local time: 22:00 UTC is midnight in Berlin
