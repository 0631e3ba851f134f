"""The night comes to the person: after each hourly run, every finished night (nothing sent for SESSION_GAP
after its end) gets its report in REPORT_DIR, and a message through NOTIFY_URL where NOTIFY_WHEN chooses it.

- Reports (report.py's page) are written once per night and again, marked revised, when late readings
  change its numbers; kept as long as the dumps (BACKUP_KEEP_DAILY days, BACKUP_KEEP_WEEKLY weeks), then
  removed. At most REPORTS_PER_RUN a run, newest first (the first run after REPORT_DIR is set catches up).
- Messages: one per device per run at most, a line per night, through Apprise (ntfy, Telegram, e-mail,
  ...: one URL), the report attached where there is one. Never for a night that ended more than
  NOTIFY_HORIZON ago (a backfill, a first run); a message that failed is tried again on the next runs for
  RETRY_HORIZON. Each night is messaged once.
- What was delivered, from which numbers, and why the last try failed: state's influx_archive_nights.
  A failure never stops the archive: it is logged, `status` says it (exit 1), and the next run tries again.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import statistics
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import report
from .config import Config
from .errors import LoaderError
from .metrics import BY_COLUMN
from .pg import Database
from .redaction import redact
from .report import Night
from .state import ensure_schema, set_search_path

Send = Callable[[str, str, Optional[str]], None]  # (title, body, attachment): a message sent, or an exception
# (device, started) -> (digest, notified, error) as the state table keeps them
Known = Dict[Tuple[str, int], Tuple[Optional[str], bool, Optional[str]]]
Made = Tuple[Optional[str], Optional[str], Optional[str]]  # a night's report: (digest, path, error)

log = logging.getLogger(__name__)

DAY, WEEK = 86400, 7 * 86400
NOTIFY_HORIZON = DAY
RETRY_HORIZON = 3 * DAY
USUAL_HORIZON = 30 * DAY  # a device's usual recorded time: the median of its nights of the last 30 days
REPORTS_PER_RUN = 8
WORDS = {"green": "normal", "yellow": "mild", "orange": "moderate", "red": "severe"}  # the bands, in words
REPORT_NAME = re.compile(r"night-(\d{4}-\d\d-\d\d)-\d{4}(-.+)?\.pdf")

STATE = "SELECT device, extract(epoch FROM started)::bigint, report_digest, notified_at IS NOT NULL, " \
        "notify_error FROM influx_archive_nights WHERE target = %(target)s"
SAVE_REPORT = """
INSERT INTO influx_archive_nights (target, device, started, report_digest, report_path, report_error)
VALUES (%(target)s, %(device)s, to_timestamp(%(started)s), %(digest)s, %(path)s, %(error)s)
ON CONFLICT (target, device, started) DO UPDATE SET
    report_digest = coalesce(EXCLUDED.report_digest, influx_archive_nights.report_digest),
    report_path = coalesce(EXCLUDED.report_path, influx_archive_nights.report_path),
    report_error = EXCLUDED.report_error
"""
SAVE_MESSAGE = """
INSERT INTO influx_archive_nights (target, device, started, notified_at, notify_error)
VALUES (%(target)s, %(device)s, to_timestamp(%(started)s), CASE WHEN %(sent)s THEN now() END, %(error)s)
ON CONFLICT (target, device, started) DO UPDATE SET
    notified_at = coalesce(influx_archive_nights.notified_at, EXCLUDED.notified_at),
    notify_error = EXCLUDED.notify_error
"""


class DeliveryError(LoaderError):
    """A report or message that could not be made or sent; recorded, tried again on the next run."""


@dataclass
class Delivered:
    reports: list = field(default_factory=list)  # paths written (revised ones too)
    revised: list = field(default_factory=list)
    removed: list = field(default_factory=list)  # reports older than the dumps are kept
    messages: list = field(default_factory=list)  # the lines sent
    failures: list = field(default_factory=list)  # one line each

    def lines(self) -> List[str]:
        return ([f"report:  {p}{' (revised)' if p in self.revised else ''}" for p in self.reports]
                + [f"removed: {os.path.basename(p)} (older than the dumps are kept)" for p in self.removed]
                + [f"message: {line}" for line in self.messages] + [f"failed:  {f}" for f in self.failures])


def wanted(config: Config) -> bool:
    return bool(config.report_dir or config.notify_url.reveal())


def keep_seconds(config: Config) -> int:
    return max(config.backup_keep_daily * DAY, config.backup_keep_weekly * WEEK)


def deliver(config: Config, now: float, send: Optional[Send] = None) -> Delivered:
    """Reports and messages for the finished nights (the module's rule); send(title, body, attachment) stands
    in for Apprise in tests. Failures are recorded per night, never raised; a Delivered says what was done."""
    done = Delivered()
    if not wanted(config):
        return done
    send = send or apprise_sender(config)
    horizon = max(keep_seconds(config) if config.report_dir else 0, USUAL_HORIZON, RETRY_HORIZON)
    try:
        nights = report.read_nights(config, now, since=now - horizon, traces=False)
    except LoaderError as exc:
        done.failures.append(f"no night could be read for reports or messages: {_text(exc)}")
        log.error("%s", done.failures[-1])
        return done
    db = Database(config)
    known = _state(db, config)
    reports, messages = {}, {}  # (device, started) -> (digest, path, error) / (sent, error)
    if config.report_dir:
        fresh = [n for n in nights if n.ended >= now - keep_seconds(config)
                 and known.get((n.label, n.started), (None,))[0] != n.digest]
        for night in sorted(fresh, key=lambda n: -n.started)[:REPORTS_PER_RUN]:
            reports[(night.label, night.started)] = _report(config, night, known, done)
        done.removed = _rotate(config.report_dir, now - keep_seconds(config))
    if config.notify_url.reveal():
        for device, pending in _to_message(config, nights, known, now).items():
            sent, error = _message(config, device, pending, reports, send, done)
            for night in pending:
                messages[(night.label, night.started)] = (sent, error)
    _save(db, config, reports, messages)
    return done


def _state(db: Database, config: Config) -> Known:
    conn = db.connect()
    try:
        with db.errors():
            cur = conn.cursor()
            ensure_schema(cur, config.pg_schema)
            cur.execute(STATE, {"target": db.target})
            found = {(device, started): (digest, notified, error) for device, started, digest, notified, error
                     in cur.fetchall()}
            conn.commit()
            return found
    finally:
        conn.close()


def _report(config: Config, night: Night, known: Known, done: Delivered) -> Made:
    """(digest, path, error) of the night's report, written to REPORT_DIR."""
    path = report.report_path(config.report_dir, night)
    revised = known.get((night.label, night.started), (None,))[0] is not None
    try:
        report.load_traces(config, [night])
        report.render([night], path, config.subject, revised=revised)
    except (LoaderError, OSError, ValueError, RuntimeError) as exc:
        error = f"the report of {_when(night)} could not be written to {config.report_dir}: {_text(exc)}"
        log.error("%s", error)
        done.failures.append(error)
        return None, None, error
    log.info("report %s%s", path, " (revised: late readings changed the night)" if revised else "")
    done.reports.append(path)
    if revised:
        done.revised.append(path)
    return night.digest, path, None


def _rotate(directory: str, before: float) -> List[str]:
    """Remove our reports (night-DATE-HHMM[-DEVICE].pdf) of nights before `before`: as the dumps go."""
    removed: list = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    cutoff = datetime.datetime.fromtimestamp(before).date()
    for entry in entries:
        match = REPORT_NAME.fullmatch(entry.name)
        if match and datetime.date.fromisoformat(match.group(1)) < cutoff - datetime.timedelta(days=1):
            try:
                os.unlink(entry.path)
                removed.append(entry.path)
            except OSError as exc:
                log.warning("could not remove the old report %s: %s", entry.path, exc.strerror)
    return removed


def _to_message(config: Config, nights: Sequence[Night], known: Known, now: float) -> Dict[str, List[Night]]:
    """{device: [nights]} to message now: finished within NOTIFY_HORIZON (or failed within RETRY_HORIZON),
    not messaged yet, and chosen by NOTIFY_WHEN."""
    out: dict = {}
    for night in nights:
        digest, notified, error = known.get((night.label, night.started), (None, False, None))
        if notified or night.ended < now - (RETRY_HORIZON if error else NOTIFY_HORIZON):
            continue
        if config.notify_when == "always" or bad(night, nights, config.subject):
            out.setdefault(night.label, []).append(night)
    return out


def bad(night: Night, nights: Sequence[Night], subject: str) -> bool:
    """ODI4 or T90 in its orange or red band, or less than half the device's usual recorded time."""
    row = night.row
    if any(report.colour(BY_COLUMN[c], row.get(c), subject) in ("orange", "red") for c in ("odi4", "t90_pct")):
        return True
    before = [n.row["recorded_s"] for n in nights if n.label == night.label and n.started < night.started]
    return len(before) >= 3 and row["recorded_s"] < statistics.median(before) / 2


def line(night: Night, subject: str, tz: Optional[datetime.tzinfo] = None) -> str:
    """Night of 5 Dec (uid 1): ODI4 17.2/h moderate, T90 3.1 %, nadir 81 %, 7 h 40 min recorded"""
    row = night.row
    device = f" ({night.label.replace('=', ' ').replace(',', ', ')})" if night.label else ""
    band = report.colour(BY_COLUMN["odi4"], row["odi4"], subject)
    hours, minutes = divmod(round(row["recorded_s"] / 60), 60)
    word = f" {WORDS[band]}" if band else ""
    return (f"Night of {night.evening(tz):%-d %b}{device}: ODI4 {row['odi4']:.1f}/h{word}, "
            f"T90 {row['t90_pct']:.1f} %, nadir {row['nadir']:.0f} %, {hours} h {minutes} min recorded")


def _message(config: Config, device: str, pending: Sequence[Night], reports: Dict[Tuple[str, int], Made],
             send: Send, done: Delivered) -> Tuple[bool, Optional[str]]:
    """Send one device's nights as one message; (sent, error)."""
    lines = [line(n, config.subject) for n in sorted(pending, key=lambda n: n.started)]
    paths = [reports.get((n.label, n.started), (None, None, None))[1] for n in pending]
    paths = [p for p in paths if p] or [p for p in (_existing(config, n) for n in pending) if p]
    title = "influx-archive: " + ("a night to look at" if config.notify_when == "bad" else "last night")
    try:
        send(title, "\n".join(lines), paths[-1] if paths else None)
    except (DeliveryError, OSError) as exc:
        error = f"the message for {device or 'the device'} was not sent: {_text(exc)}; the next run tries again"
        log.error("%s", redact(error, config.secrets()))
        done.failures.append(redact(error, config.secrets()))
        return False, redact(error, config.secrets())
    done.messages += lines
    log.info("message sent: %s", " | ".join(lines))
    return True, None


def _existing(config: Config, night: Night) -> Optional[str]:
    if not config.report_dir:
        return None
    path = report.report_path(config.report_dir, night)
    return path if os.path.exists(path) else None


def apprise_sender(config: Config) -> Send:
    """send(title, body, attachment) through Apprise to NOTIFY_URL; DeliveryError when it is not sent. The URL
    carries tokens: never logged (Apprise's own logging is quietened while it sends)."""
    def send(title: str, body: str, attachment: Optional[str]) -> None:
        try:
            import apprise
        except ImportError:
            raise DeliveryError("Apprise is not installed (sudo apt-get install apprise)") from None
        sender = apprise.Apprise()
        if not sender.add(config.notify_url.reveal()):
            raise DeliveryError("NOTIFY_URL is not a URL Apprise knows (its forms: https://appriseit.com/services/)")
        quiet = logging.getLogger("apprise")
        level, quiet.level = quiet.level, logging.CRITICAL + 1
        try:
            ok = sender.notify(title=title, body=body, attach=attachment)
        finally:
            quiet.setLevel(level)
        if not ok:
            raise DeliveryError("the notification service did not take it (down, or refused the URL's token)")
    return send


def _save(db: Database, config: Config, reports: Dict[Tuple[str, int], Made],
          messages: Dict[Tuple[str, int], Tuple[bool, Optional[str]]]) -> None:
    """Record what this run made and sent (and why not), each night's report and message apart."""
    if not reports and not messages:
        return
    conn = db.connect()
    try:
        with db.transaction(conn):
            cur = conn.cursor()
            set_search_path(cur, config.pg_schema)
            for (device, started), (digest, path, error) in reports.items():
                cur.execute(SAVE_REPORT, {"target": db.target, "device": device, "started": started,
                                          "digest": digest, "path": path, "error": error})
            for (device, started), (sent, error) in messages.items():
                cur.execute(SAVE_MESSAGE, {"target": db.target, "device": device, "started": started,
                                           "sent": sent, "error": error})
    finally:
        conn.close()


def _when(night: Night) -> str:
    return f"the night of {night.evening():%Y-%m-%d}" + (f" ({night.label})" if night.label else "")


def _text(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    hint = getattr(exc, "hint", "")
    return text + (f" ({hint})" if hint else "")
