"""`report`: a night on one page, to keep or to hand to a doctor (A4 PDF, or PNG for a phone).

A night is a session of the sessions table (sessions.py): its numbers are read from there, exactly as
the dashboard shows them, each coloured in the bands its Metric declares (an adult's or a child's,
SUBJECT). The traces come from the archive: the oximeter's own 1 Hz readings where they are kept
(<PG_TABLE>_seconds), else the 5-second means. The desaturations are marked as the sessions' rule finds
them (oximetry.read_night on the 1 Hz readings; on the means, means.desaturations_with_lowest), with
the artefacts it refused and the stretches without a reading. Times are the Pi's local time.

matplotlib draws it (Debian's python3-matplotlib on a Pi: `install.sh --reports`), imported only here,
and only when a report is made: the hourly run never loads it.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import zlib
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

from psycopg2 import sql

from . import __version__, archive, oximetry, readside
from .config import Config
from .errors import LoaderError
from .humanize import human_duration
from .invocation import command
from .means import desaturations_with_lowest
from .metrics import BY_COLUMN, METRICS, Metric
from .pg import Cursor, Database, table_exists
from .sessions import rule
from .sources.batch import series_key, series_tags

# Grafana's colours for the band names the Metrics declare, so the page reads like the dashboard
COLOURS = {"green": "#73BF69", "yellow": "#FADE2A", "orange": "#FF9830", "red": "#F2495C", "transparent": "#FFFFFF"}
# what the page lists, in this order (the sessions table's columns; a child's McGill score where kept)
SHOWN = ("odi4", "odi3", "t90_pct", "t88_pct", "nadir", "hypoxic_burden", "spo2_mean", "desat_depth",
         "artefacts", "mcgill", "pulse_mean", "pulse_min", "pulse_max", "recorded_s")
A4 = (8.27, 11.69)  # inches
TRACE_BUCKETS = 1600  # points a trace is drawn with, twice over (each run's lowest and highest)
NOON = 12 * 3600  # a night "of" a date began between that day's noon and the next day's


class ReportError(LoaderError):
    """No night to report, or a report that cannot be made (exit 2: the line says what to do)."""

    exit_code = 2


@dataclass
class Night:
    device: tuple  # its tag values (TAGS)
    label: str  # 'uid=a', '' with one device
    started: int
    row: dict  # the sessions table's row, by column
    times: list = field(default_factory=list)  # the traces' seconds (epoch)
    spo2: list = field(default_factory=list)  # a value or None for each
    pulse: list = field(default_factory=list)
    step: int = 1  # seconds between samples: 1 from the 1 Hz readings, WINDOW from the means
    events: list = field(default_factory=list)  # (start, end, depth) epoch seconds, the ≥3-point ones
    refused: list = field(default_factory=list)  # (start, end) of the artefacts refused

    @property
    def ended(self) -> int:
        return int(self.row["ended"].timestamp())

    def name(self, tz: Optional[datetime.tzinfo] = None) -> str:
        """night-2026-12-05-2214[-uid-a]: the date of the evening the night began, its start (local time: a
        nap that afternoon is another file), and the device."""
        began = datetime.datetime.fromtimestamp(self.started, tz).astimezone(tz)
        device = "-" + "-".join(self.label.replace("=", "-").split(",")) if self.label else ""
        return f"night-{self.evening(tz):%Y-%m-%d}-{began:%H%M}{device}"

    def evening(self, tz: Optional[datetime.tzinfo] = None) -> datetime.date:
        """The date of the evening the night began (local): one begun after midnight is the evening before's."""
        began = datetime.datetime.fromtimestamp(self.started, tz).astimezone(tz)
        return (began - datetime.timedelta(seconds=NOON)).date()

    @property
    def digest(self) -> str:
        """The night's numbers in short: a report or message made from other numbers is out of date."""
        values = [(c, None if v is None else str(v)) for c, v in sorted(self.row.items())]
        return hashlib.sha256(repr(values).encode()).hexdigest()[:16]


def night_of(text: str) -> Tuple[int, int]:
    """--night 2026-12-05: [noon of that day, noon of the next), local time, as epoch seconds."""
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise ReportError(f"--night {text} is not a date such as 2026-12-05") from None
    noon = datetime.datetime.combine(day, datetime.time(12)).astimezone()
    return int(noon.timestamp()), int((noon + datetime.timedelta(days=1)).timestamp())


def parse_device(text: str, tags: Sequence[str]) -> Tuple[str, ...]:
    pairs = series_tags(text)
    if not tags:
        raise ReportError("--device needs TAGS: this archive keeps one device")
    if set(pairs) != set(tags):
        raise ReportError(f"--device {text}: give it as {','.join(t + '=VALUE' for t in tags)}")
    return tuple(pairs[t] for t in tags)


def read_nights(config: Config, now: float, night: Optional[Tuple[int, int]] = None,
                device: Optional[Tuple[str, ...]] = None, since: Optional[float] = None,
                traces: bool = True) -> List[Night]:
    """The nights to report: the sessions that began in `night` ([start, end)); else every finished one
    (nothing sent for SESSION_GAP after its end) that ended at `since` or later; else each device's last
    finished one. device: its tag values. traces: with their traces, desaturations and artefacts."""
    with readside.session(config) as (db, cur):
        sessions = archive.sessions(db, config)
        if not config.session_spo2 or not table_exists(cur, sessions.table.as_string(cur)):
            if since is not None and config.session_spo2:  # the hourly run's look: no night yet, nothing to do
                return []
            kept = config.session_spo2 or "none"
            raise ReportError(f"{db.target} has no sessions to report (SESSION_SPO2={kept})",
                              hint=f"nights are kept from the next `{command('run')}` on")
        cur.execute(*_nights_query(cur, config, sessions.table, now, night, device, since))
        nights = []
        columns, n = [m.column for m in METRICS], len(config.tags)
        for found in cur.fetchall():
            values, started, rest = found[:n], found[n], found[n + 1:]
            nights.append(Night(tuple(values), series_key(dict(zip(config.tags, values))), started,
                                dict(zip(columns, rest))))
        for each in nights if traces else ():
            _traces(cur, db, config, each)
    if not nights and since is None:
        which = f"that began on the night of {datetime.datetime.fromtimestamp(night[0]):%Y-%m-%d}" if night \
            else "finished yet (a night is finished SESSION_GAP after its last reading)"
        raise ReportError(f"no night {which}{' for that device' if device else ''}",
                          hint=f"`{command('status')}` shows the newest data; --night DATE names another")
    return sorted(nights, key=lambda n: (n.started, n.label))


def _nights_query(cur: Cursor, config: Config, table: sql.Identifier, now: float, night: Optional[Tuple[int, int]],
                  device: Optional[Tuple[str, ...]], since: Optional[float]) -> Tuple[str, dict]:
    """(statement, parameters) of the sessions asked for: those that began in night, else the finished ones
    that ended since `since`, else each device's newest finished one."""
    tags = [sql.Identifier(t) for t in config.tags]
    where: list = []
    params: dict = {"gap": config.session_gap, "now": now}
    if device is not None:
        where += [sql.SQL("{} = %({})s").format(t, sql.SQL(f"tag{i}")) for i, t in enumerate(tags)]
        params.update({f"tag{i}": v for i, v in enumerate(device)})
    if night is not None:
        where.append(sql.SQL("started >= to_timestamp(%(lo)s) AND started < to_timestamp(%(hi)s)"))
        params.update(lo=night[0], hi=night[1])
    else:
        where.append(sql.SQL("ended + make_interval(secs => %(gap)s) <= to_timestamp(%(now)s)"))
        if since is not None:
            where.append(sql.SQL("ended >= to_timestamp(%(since)s)"))
            params["since"] = since
    newest = night is None and since is None
    keys = sql.SQL("").join(sql.SQL("{}, ").format(t) for t in tags)
    statement = sql.SQL("SELECT {distinct}{keys}extract(epoch FROM started)::bigint, {columns} FROM {table}{where} "
                        "ORDER BY {keys}started DESC{limit}").format(
        distinct=sql.SQL("DISTINCT ON ({}) ").format(sql.SQL(", ").join(tags)) if tags and newest else sql.SQL(""),
        keys=keys, columns=sql.SQL(", ").join(sql.Identifier(m.column) for m in METRICS), table=table,
        where=sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where),
        limit=sql.SQL(" LIMIT 1") if newest and not tags else sql.SQL(""))
    return statement.as_string(cur), params


def load_traces(config: Config, nights: Sequence[Night]) -> None:
    """Read each night's traces (read_nights(traces=False) left them out)."""
    with readside.session(config) as (db, cur):
        for night in nights:
            _traces(cur, db, config, night)


def _traces(cur: Cursor, db: Database, config: Config, night: Night) -> None:
    """The night's SpO2 and pulse traces, its desaturations and refused artefacts: from the 1 Hz readings where
    kept, else from the 5-second means."""
    start, end = night.started, night.ended
    fields = [config.session_spo2] + ([config.session_pulse] if config.session_pulse else [])
    kept = archive.table(db, config).seconds
    found = kept.read(cur, night.device, fields, start, end) if kept.exists(cur) else None
    if found is not None:
        night.times = list(range(start, end))
        night.spo2 = found[config.session_spo2]
        night.pulse = found[config.session_pulse] if config.session_pulse else []
        reading = oximetry.read_night(night.spo2, night.pulse or None)
        night.events = [(start + e.start, start + e.end, e.depth) for e in reading.events[min(reading.events)]]
        night.refused = [(start + a, start + b) for a, b in reading.refused]
        return
    where = sql.SQL("").join(sql.SQL("{} = %s AND ").format(sql.Identifier(t)) for t in config.tags)
    pulse = sql.Identifier(config.session_pulse) if config.session_pulse else sql.SQL("NULL")
    cur.execute(sql.SQL("SELECT extract(epoch FROM time)::bigint, {}, {} FROM {} WHERE {} time >= to_timestamp(%s) "
                        "AND time < to_timestamp(%s) ORDER BY time").format(
        sql.Identifier(config.session_spo2), pulse, db.table, where), (*night.device, start, end))
    rows = cur.fetchall()
    night.step = config.window
    night.times = [r[0] for r in rows]
    night.spo2 = [r[1] for r in rows]
    night.pulse = [r[2] for r in rows] if config.session_pulse else []
    kept_rows = [(t, v) for t, v in zip(night.times, night.spo2) if v is not None]
    if kept_rows:
        times, values = map(list, zip(*kept_rows))
        night.events = [(e.start, e.start + e.duration, e.depth)
                        for e in desaturations_with_lowest(times, values, config.window, 3)]


def report_path(directory: str, night: Night) -> str:
    """Where a night's report goes in a directory: night-DATE-HHMM[-DEVICE].pdf."""
    return os.path.join(directory, night.name() + ".pdf")


def colour(metric: Metric, value: Optional[float], subject: str) -> Optional[str]:
    """The band colour name of value (the Metric's bands for this subject); None outside any."""
    bands = metric.bands_for(subject)
    if value is None or not bands:
        return None
    name = None
    for band, threshold in bands:
        if threshold is None or value >= threshold:
            name = band
    return name


def shown(metric: Metric, value: Optional[float]) -> str:
    """A value as the page (and the dashboard's table) shows it."""
    if value is None:
        return "-"
    if metric.column == "recorded_s":
        return human_duration(int(value))
    decimals = metric.decimals if metric.decimals is not None else 1
    return f"{value:.{decimals}f}"


def render(nights: Sequence[Night], path: str, subject: str, tz: Optional[datetime.tzinfo] = None,
           revised: bool = False) -> str:
    """Write the nights, one page each, to path: PDF (several pages) or PNG (one night), by its suffix;
    revised: the page says it replaces one made before late readings changed the night."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        matplotlib.rcParams["pdf.fonttype"] = 42  # TrueType: the PDF's text can be searched and copied
        from matplotlib import pyplot
        from matplotlib.backends.backend_pdf import PdfPages
    except ImportError:
        raise ReportError("reports need matplotlib, which is not installed",
                          hint="sudo ./install.sh --reports (Debian's python3-matplotlib), or apt-get install "
                               "python3-matplotlib") from None
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".pdf", ".png"):
        raise ReportError(f"--out {path}: a report is a .pdf or a .png")
    if suffix == ".png" and len(nights) > 1:
        raise ReportError(f"{len(nights)} nights and one PNG: give --device, or write a .pdf (a page each)")
    partial = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.partial")
    try:
        if suffix == ".pdf":
            with PdfPages(partial, metadata={"Title": "influx-archive night report", "Creator": "influx-archive"}
                          ) as pdf:
                for night in nights:
                    figure = _page(pyplot, night, subject, tz, revised)
                    pdf.savefig(figure)
                    pyplot.close(figure)
        else:
            figure = _page(pyplot, nights[0], subject, tz, revised)
            figure.savefig(partial, format="png", dpi=110)
            pyplot.close(figure)
        os.replace(partial, path)
    except (OSError, zlib.error) as exc:  # a full disk inside the PDF writer surfaces as zlib's error
        cause = exc if isinstance(exc, OSError) else exc.__context__
        reason = getattr(cause, "strerror", None) or str(cause or exc)
        raise ReportError(f"cannot write {path}: {reason}", hint="check the directory (df -h, its owner)") from None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return path


def _page(pyplot: Any, night: Night, subject: str, tz: Optional[datetime.tzinfo], revised: bool = False) -> Any:
    from matplotlib import dates
    figure = pyplot.figure(figsize=A4)
    began = datetime.datetime.fromtimestamp(night.started, tz).astimezone(tz)
    ended = datetime.datetime.fromtimestamp(night.ended, tz).astimezone(tz)
    zone = began.tzname() or ""
    title = f"Night of {night.evening(tz):%a %-d %b %Y}" + (
        f" — {night.label}" if night.label else "")
    figure.text(0.06, 0.965, title, fontsize=16, weight="bold")
    if revised:
        figure.text(0.94, 0.965, f"revised {datetime.datetime.now(tz):%Y-%m-%d %H:%M}: late readings changed "
                                 f"this night", fontsize=8, color="#C4162A", ha="right")
    figure.text(0.06, 0.945, f"{began:%H:%M} – {ended:%H:%M} ({zone}), "
                             f"{human_duration(int(night.row['recorded_s']))} recorded"
                             + ("" if night.step == 1 else f"; traces from {night.step}-second means"), fontsize=10)
    figure.text(0.06, 0.93, "Orientation, not a diagnosis: oximetry alone cannot tell apnoea from other causes.",
                fontsize=8.5, style="italic", color="#555555")

    spo2_axes = figure.add_axes((0.08, 0.66, 0.88, 0.25))
    spo2_axes.plot(*_drawn(night.times, night.spo2, tz), color="#1F60C4", linewidth=0.5)
    for level, style in ((90, "--"), (88, ":")):
        spo2_axes.axhline(level, color="#C4162A", linestyle=style, linewidth=0.8)
        spo2_axes.text(began, level, f" {level} %", va="bottom", fontsize=7, color="#C4162A")
    for start, end, depth in night.events:  # a flag above the trace for each (a night is too long for 20-s spans)
        hue = "#FF9830" if depth < 4 else "#F2495C"
        spo2_axes.axvspan(_at(start, tz), _at(end, tz), color=hue, alpha=0.35, linewidth=0)
        spo2_axes.plot([_at(start, tz)], [101.2], marker="v", markersize=4, color=hue, linestyle="none")
    for start, end in night.refused:
        spo2_axes.axvspan(_at(start, tz), _at(end, tz), color="#888888", alpha=0.5, linewidth=0)
        spo2_axes.plot([_at(start, tz)], [101.2], marker="x", markersize=4, color="#666666", linestyle="none")
    known = [v for v in night.spo2 if v is not None]
    low = min([80.0] + known)
    spo2_axes.set_ylim(max(50.0, low - 2), 102)
    spo2_axes.set_ylabel("SpO2 %")
    spo2_axes.set_title("SpO2: desaturations ≥3 points orange, ≥4 red (▼); artefacts refused grey (×); "
                        "gaps: no reading, or one outside VALID_RANGES", fontsize=8, loc="left")

    pulse_axes = figure.add_axes((0.08, 0.45, 0.88, 0.16), sharex=spo2_axes)
    if night.pulse:
        pulse_axes.plot(*_drawn(night.times, night.pulse, tz), color="#8F3BB8", linewidth=0.5)
    beats = [v for v in night.pulse if v is not None]
    if beats:
        pulse_axes.set_ylim(min(beats) - 5, max(beats) + 5)
    pulse_axes.set_ylabel("Pulse bpm")
    for axes in (spo2_axes, pulse_axes):
        axes.xaxis.set_major_formatter(dates.DateFormatter("%H:%M", tz=tz or began.tzinfo))
        axes.grid(True, linewidth=0.3, color="#DDDDDD")
        axes.tick_params(labelsize=8)

    rows = [(m, night.row.get(m.column)) for m in (BY_COLUMN[c] for c in SHOWN) if subject in m.subjects
            and (m.column != "artefacts" or night.row.get(m.column) is not None)]
    table = figure.add_axes((0.08, 0.06, 0.84, 0.34))
    table.axis("off")
    cells = [[m.title, shown(m, v), m.unit if m.column != "recorded_s" else ""] for m, v in rows]
    drawn = table.table(cellText=cells, colLabels=["", "this night", ""], colWidths=[0.45, 0.3, 0.25],
                        loc="upper left", cellLoc="left")
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(10)
    drawn.scale(1, 1.45)
    for i, (metric, value) in enumerate(rows, start=1):
        band = colour(metric, value, subject)
        if band:
            drawn[i, 1].set_facecolor(COLOURS[band])
        for j in range(3):
            drawn[i, j].set_edgecolor("#CCCCCC")
    bands = "a child's (SUBJECT=child)" if subject == "child" else "an adult's"
    made = datetime.datetime.now(tz)
    figure.text(0.06, 0.025, f"influx-archive {__version__} · {rule()} · colours: the dashboard's "
                             f"bands, {bands} · ODI per hour recorded · made {made:%Y-%m-%d %H:%M}",
                fontsize=7, color="#555555")
    return figure


def _drawn(times: Sequence[int], values: Sequence[Optional[float]], tz: Optional[datetime.tzinfo],
           buckets: int = TRACE_BUCKETS) -> Tuple[list, list]:
    """The points of a trace as the page draws it: in each of `buckets` runs of samples (a page is about 1,600
    dots wide), its lowest and highest in time order, so a 20-s dip keeps its depth however long the night;
    a run without a reading is a break in the line (NaN), as a finger-off stretch. (x as datetimes, y)"""
    n = len(values)
    step = max(1, -(-n // buckets))
    xs, ys = [], []
    for lo in range(0, n, step):
        run = [(i, v) for i, v in enumerate(values[lo:lo + step], lo) if v is not None]
        if not run:
            xs.append(_at(times[lo], tz))
            ys.append(float("nan"))
            continue
        low, high = min(run, key=lambda p: p[1]), max(run, key=lambda p: p[1])
        for i, v in sorted({low, high}):
            xs.append(_at(times[i], tz))
            ys.append(v)
    return xs, ys


def _at(epoch: float, tz: Optional[datetime.tzinfo]) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, tz).astimezone(tz)


@dataclass
class ReportResult:
    written: list = field(default_factory=list)  # (path, night)

    def lines(self) -> List[str]:
        return [f"report:  {path} ({night.label or 'the night'} of {night.evening():%Y-%m-%d}, "
                f"ODI4 {night.row['odi4']:.1f}/h, T90 {night.row['t90_pct']:.1f} %, nadir {night.row['nadir']:.0f} %)"
                for path, night in self.written]


def report(config: Config, now: float, out: Optional[str] = None, night: Optional[str] = None,
           device: Optional[str] = None, directory: str = ".") -> ReportResult:
    """Write the report(s) asked for; out: the file (PDF with a page per night, or a PNG of one), else one PDF
    per night named by date and device in `directory`."""
    nights = read_nights(config, now, night_of(night) if night else None,
                         parse_device(device, config.tags) if device else None)
    result = ReportResult()
    if out:
        render(nights, out, config.subject)
        result.written = [(out, n) for n in nights]
    else:
        for each in nights:
            path = report_path(directory, each)
            render([each], path, config.subject)
            result.written.append((path, each))
    return result
