"""Recording sessions (nights): what a person reads an overnight oximetry for, kept by the loader.

A session is a run of windows with an SpO2 mean, per device (the TAGS key), in which no two
consecutive windows are more than SESSION_GAP apart (end of one to start of the next), lasting at
least SESSION_MIN from its first window's start to its last window's end. Table <PG_TABLE>_sessions,
one row per session, keyed by the tags and `started`, with the columns of metrics.METRICS (each declared
once there: its type, unit, title and definition, which become the column's comment, docs/sessions.md
and the dashboard's Sessions table).

The definition the rows were computed with is the table's comment; a run that finds it different
(SESSION_GAP, SESSION_MIN, WINDOW, the fields, the threshold, the rule: the code and constants of this
module, oximetry.py, means.py and metrics.py) recomputes every session in its transaction. `refresh` recomputes
every session a written range can touch, in the caller's transaction, from the 5-second rows: a night
crossing a chunk boundary, late data, a backfill or a rebuild replace the sessions they touch and never
add a second one.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import logging
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from psycopg2 import sql

from . import means, metrics, oximetry
from .means import DROPS, Event, desaturations_with_lowest, held, stretches, time_below
from .metrics import LOWEST, METRICS, TIME_BELOW
from .pg import Cursor, Database, archive_span, by_key, columns_of, one, table_exists
from .seconds import SecondsTable
from .windows import rfc3339

Row = Tuple[int, float, Optional[float]]  # a window: (epoch start, SpO2 mean, pulse mean or None)
# (start, end) -> over those windows, ({column: the reading counts' correction}, {window start: lowest reading})
ReadCounts = Callable[[int, int], Tuple[Dict[str, float], Dict[int, float]]]
# (start, end) -> {"spo2": [reading or None per second], "pulse": [...] or None}, None where none are kept
ReadSeconds = Callable[[int, int], Optional[dict]]

log = logging.getLogger(__name__)

MAX_S = 86400  # a longer run (an oximeter worn around the clock) is cut every 24 h from its start
# a session is read from its 1 Hz readings (oximetry.py) where <PG_TABLE>_seconds holds at least this share
# of its recorded time (a night archived before the seconds were kept, or half before: by its means)
SECONDS_COVER = 0.8


def code_digest(texts: Iterable[str]) -> str:
    """A digest of Python sources that changes with their code and constants, not with their comments,
    docstrings or layout (their syntax trees, docstrings left out, without line numbers)."""
    digest = hashlib.sha256()
    for text in texts:
        tree = ast.parse(text)
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]  # a node with a body
        digest.update(ast.dump(tree).encode())
    return digest.hexdigest()[:12]


RULE_FILES = (metrics, means, oximetry, sys.modules[__name__])  # whose code and constants the rule is
SOURCE = re.compile(r" source=[0-9a-f]{12}$")  # a stored definition's last word: source_digest() then


@functools.lru_cache(maxsize=None)
def source_digest() -> str:
    """A digest of the rule's files byte for byte (a fraction of a millisecond, where rule() parses them: 44 ms
    here, about ten times that on a Pi 3B+, every hourly run): a stored definition written by these same
    files names this code's rule, so rule_for() reads it from there."""
    digest = hashlib.sha256()
    for module in RULE_FILES:
        digest.update(Path(module.__file__).read_bytes())  # type: ignore[arg-type]  # a file, not a namespace
    return digest.hexdigest()[:12]


def rule_for(found: Optional[str]) -> str:
    """rule() of this code, read from `found` (a stored definition) when these same files wrote it."""
    named = re.search(r" (rule-[0-9a-f]{12}) source=([0-9a-f]{12})$", found or "")
    return named.group(1) if named and named.group(2) == source_digest() else rule()


def same_rule(found: str, wanted: str) -> bool:
    """Whether two definitions differ at most in their source digest (the rule's files changed in their
    comments, docstrings or layout alone: the same numbers)."""
    return SOURCE.sub("", found) == SOURCE.sub("", wanted)


@functools.lru_cache(maxsize=None)
def rule() -> str:
    """The rule stored sessions were computed by, as their definition names it: the code and constants of
    metrics.py (the declared columns), oximetry.py, means.py and this module. A changed threshold, rule or declared
    column changes it, so the next run computes every stored session again; nothing is bumped by hand."""
    return "rule-" + code_digest(Path(m.__file__).read_text(encoding="utf-8")  # type: ignore[arg-type]  # files, as above
                                 for m in RULE_FILES)


@dataclass
class Summary:
    started: int
    row: dict


def summarise(rows: Sequence[Row], window: int, run_started: int, below_rollup: Optional[float] = None,
              readings: Optional[ReadCounts] = None, seconds: Optional[ReadSeconds] = None) -> Summary:
    """One session's row, keyed by METRICS' columns, from its windows [(epoch start, spo2, pulse)], spo2
    never None. seconds(start, end): its 1 Hz readings ({"spo2": [...], "pulse": [...] or None}, None where
    none are kept), which it is read from (oximetry.read_night) where they cover SECONDS_COVER of it;
    otherwise readings(start, end): for the windows in [start, end), the reading counts' correction of
    T90/T88 (time_below) and the lowest readings kept ({window start: lowest}); None: by the means alone.
    below_rollup: ROLLUP_BELOW's SpO2 threshold (below_s), or None."""
    times, spo2, pulses = map(list, zip(*rows))
    pulse = [p for p in pulses if p is not None]
    runs = stretches(times, window)
    pulse_runs = runs if len(pulse) == len(times) else stretches([t for t, p in zip(times, pulses) if p is not None],
                                                                  window)
    start, end = times[0], times[-1] + window
    night = None
    kept = seconds(start, end) if seconds else None
    # read from the 1 Hz readings where they cover enough of the night: counted before reading the night
    # (recorded_s is exactly the seconds with a reading), so sparse ones cost a count, not a night's reading
    if kept is not None and len(kept["spo2"]) - kept["spo2"].count(None) >= SECONDS_COVER * len(rows) * window:
        night = oximetry.read_night(kept["spo2"], kept["pulse"])
    if night is not None:
        recorded, nadir, spent, artefacts = night.recorded_s, night.nadir, night.below, night.artefacts
        counts = {drop: len(night.events[drop]) for drop in DROPS}
        events = [Event(start + e.start, e.end - e.start, e.depth, e.area, e.level) for e in night.events[min(DROPS)]]
        events4 = night.events[4]
    else:
        recorded, nadir, artefacts = len(rows) * window, held(spo2, runs), None
        counted, lowest = readings(start, end) if readings else (None, None)
        spent = time_below(spo2, window, counted)
        found = {drop: desaturations_with_lowest(times, spo2, window, drop, lowest) for drop in DROPS}
        counts, events, events4 = {drop: len(e) for drop, e in found.items()}, found[min(DROPS)], found[4]
    hours = recorded / 3600
    row = {"run_started": run_started, "ended": end, "recorded_s": recorded,
           "spo2_mean": math.fsum(spo2) / len(spo2), "spo2_min": min(spo2), "nadir": nadir, **spent,
           "below_s": None if below_rollup is None else sum(map(float(below_rollup).__gt__, spo2)) * window,
           "desat3": counts[3], "desat4": counts[4], "odi3": counts[3] / hours, "odi4": counts[4] / hours,
           "hypoxic_burden": math.fsum(e.area for e in events) / 60 / hours,
           "artefacts": artefacts, "mcgill": oximetry.mcgill(events4),
           "desat_depth": math.fsum(e.depth for e in events) / len(events) if events else None,
           "desat_duration": math.fsum(e.duration for e in events) / len(events) if events else None,
           "pulse_mean": math.fsum(pulse) / len(pulse) if pulse else None,
           "pulse_min": held(pulse, pulse_runs) if pulse else None,
           "pulse_max": held(pulse, pulse_runs, lowest=False) if pulse else None}
    for m in METRICS:  # the shares of recorded time, as declared
        if m.share_of:
            row[m.column] = None if row[m.share_of] is None else 100.0 * row[m.share_of] / recorded
    return Summary(times[0], {m.column: row[m.column] for m in METRICS})  # a metric not computed: KeyError


def sessions_of(rows: Iterable[Row], window: int, gap: int, minimum: int, below: Optional[float] = None,
                run_started: Optional[int] = None, last_end: Optional[int] = None,
                readings: Optional[ReadCounts] = None, seconds: Optional[ReadSeconds] = None) -> Iterator[Summary]:
    """The sessions in rows (ascending (epoch start, spo2, pulse), spo2 present; any iterable, read
    once, holding one session's rows at a time). A run of rows ends where the next starts more than
    `gap` after the previous one's end; runs shorter than `minimum` are not sessions; longer than
    MAX_S, they are cut every MAX_S from their start. run_started, last_end: the run that the rows
    may continue (its earlier sessions already kept): where it began and where its last window ended.
    readings, seconds: summarise's."""
    piece: list = []
    run_start, cut = run_started, None  # cut: where the run's next MAX_S begins
    limit = None if last_end is None else last_end + gap  # a window starting after this ends the run

    def finish(run_goes_on: bool) -> Optional[Summary]:
        if piece and run_start is not None and (run_goes_on or piece[-1][0] + window - run_start >= minimum):
            return summarise(piece, window, run_start, below, readings, seconds)
        return None

    append = piece.append
    for row in rows:  # a month of windows worn around the clock: kept to two comparisons a row
        t = row[0]
        if limit is not None and t > limit:  # a gap ends the run
            done = finish(False)
            if done:
                yield done
            piece, run_start, cut = [], None, None
            append = piece.append
        if run_start is None:
            run_start = t
        if cut is None or t >= cut:
            if piece:  # the run goes on into its next MAX_S
                done = finish(True)
                if done:
                    yield done
                piece = []
                append = piece.append
            cut = run_start + ((t - run_start) // MAX_S + 1) * MAX_S
        append(row)
        limit = t + window + gap
    done = finish(False)
    if done:
        yield done


class Sessions:
    """The sessions table of one archive table, kept by the loader in the caller's transactions."""

    def __init__(self, db: Database, tags: Sequence[str], spo2: str, pulse: str, gap: int, minimum: int, window: int,
                 below: Optional[float] = None, subject: str = "adult") -> None:
        self.db = db
        self.tags = tuple(tags)
        self.subject = subject
        self.spo2, self.pulse = spo2, pulse
        self.gap, self.minimum, self.window, self.below = gap, minimum, window, below
        self.kept_seconds = SecondsTable(db, self.tags)
        self._ready = False

    @property
    def table(self) -> sql.Identifier:
        return self.db.companion("sessions")

    def definition(self, found: Optional[str] = None) -> str:
        """What the sessions are computed with, as the table's comment keeps it; found: the stored one, whose
        rule digest is this code's where the same files wrote it (rule_for)."""
        below = "none" if self.below is None else f"{self.below:g}"
        return (f"SESSION_GAP={self.gap}s SESSION_MIN={self.minimum}s WINDOW={self.window}s "
                f"spo2={self.spo2} pulse={self.pulse or 'none'} below={below} SUBJECT={self.subject} "
                f"{rule_for(found)} source={source_digest()}")

    def enabled(self, fields: Sequence[str]) -> bool:
        return bool(self.spo2) and self.spo2 in fields

    def ensure(self, cur: Cursor, fields: Sequence[str]) -> None:
        """Create the table; one computed with another definition, or new beside archived rows, is
        computed again from every archived row here, in the caller's transaction."""
        if self._ready:
            return
        if not self.enabled(fields):
            if self.spo2 and fields:  # said once per run: the fields are known only once InfluxDB answered
                log.warning("no sessions are kept: the archive has no field %s (SESSION_SPO2); set SESSION_SPO2 "
                            "to the field holding SpO2, or to none to keep no sessions", self.spo2)
                self._ready = True
            return
        self._ready = True
        qualified = self.table.as_string(cur)
        found = None
        if table_exists(cur, qualified):
            cur.execute("SELECT obj_description(%s::regclass, 'pg_class')", (qualified,))
            found = one(cur)[0] or "an unrecorded definition"
        wanted = self.definition(found)
        if found is not None:
            if found == wanted:
                return
            if same_rule(found, wanted):  # the rule's files changed in their prose alone: the same numbers
                cur.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(self.table, sql.Literal(wanted)))
                return
            cur.execute(sql.SQL("DROP TABLE {}").format(self.table))
        columns: list = [sql.SQL("{} text NOT NULL").format(sql.Identifier(t)) for t in self.tags]
        columns.append(sql.SQL("started timestamptz NOT NULL"))
        columns += [sql.SQL("{} " + m.kind).format(sql.Identifier(m.column)) for m in METRICS]
        key = [sql.Identifier(t) for t in self.tags] + [sql.Identifier("started")]
        cur.execute(sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
            self.table, sql.SQL(", ").join(columns), sql.SQL(", ").join(key)))
        cur.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(self.table, sql.Literal(wanted)))
        for metric in METRICS:  # below_s: its threshold, which the dashboard reads
            if metric.column != "below_s":
                comment = f"{metric.definition} Unit: {metric.unit}." if metric.unit else metric.definition
            elif self.below is not None:
                comment = f"{self.below:g}"
            else:
                continue
            cur.execute(sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
                self.table, sql.Identifier(metric.column), sql.Literal(comment)))
        if archive_span(cur, self.db.table)[0] is not None:
            if found:
                log.info("the sessions were computed with %s, now %s: computing them again from every archived "
                         "row", found, wanted)
            else:
                log.info("computing the sessions of the rows already archived in %s", self.db.target)
            self._compute_all(cur, fields)

    def _compute_all(self, cur: Cursor, fields: Sequence[str]) -> None:
        """Every session of the (new, empty) table, from every archived row, read in time order a device
        at a time."""
        for device in self._devices(cur):
            where, params = self._device(device)
            readings, seconds = self.readings(cur, device), self.seconds(cur, device, fields)
            with self._rows(cur, fields, where, "", params) as rows:
                for summary in sessions_of(rows, self.window, self.gap, self.minimum, self.below, readings=readings,
                                           seconds=seconds):
                    self._insert(cur, device, summary)

    def refresh(self, cur: Cursor, fields: Sequence[str], start: int, end: int) -> None:
        """Recompute the sessions that rows written in [start, end) can change, per device: from the
        start of the 24-hour piece holding `start` of the run reaching it, to the end of the run
        reaching `end`. Earlier and later sessions stay as they are."""
        if not self.enabled(fields):
            return
        self.ensure(cur, fields)
        for device in self._devices(cur, start, end):
            where, params = self._device(device)
            run_started = self._run_start(cur, device, start)
            lo, last_end = start, None
            if run_started is not None:
                lo = run_started + (start - run_started) // MAX_S * MAX_S
                if lo > run_started:
                    params["lo"] = lo
                    cur.execute(sql.SQL("SELECT extract(epoch FROM max(time))::bigint FROM {} WHERE {} AND {} IS NOT "
                                        "NULL AND time < to_timestamp(%(lo)s)").format(
                        self.db.table, where, sql.Identifier(self.spo2)), params)
                    last_end = one(cur)[0] + self.window
                else:
                    run_started = None  # the run starts inside what is read: it is read whole
            params.update(lo=lo, hi=self._run_end(cur, device, end))
            cur.execute(sql.SQL("DELETE FROM {} WHERE {} AND started < to_timestamp(%(hi)s) "
                                "AND ended > to_timestamp(%(lo)s)").format(self.table, where), params)
            bounds = "AND time >= to_timestamp(%(lo)s) AND time < to_timestamp(%(hi)s)"
            readings, seconds = self.readings(cur, device), self.seconds(cur, device, fields)
            with self._rows(cur, fields, where, bounds, params) as rows:
                for summary in sessions_of(rows, self.window, self.gap, self.minimum, self.below,
                                           run_started, last_end, readings, seconds):
                    self._insert(cur, device, summary)

    @contextlib.contextmanager
    def _rows(self, cur: Cursor, fields: Sequence[str], where: sql.Composable, bounds: str,
              params: dict) -> Iterator[Cursor]:
        """(epoch, spo2, pulse) of a device's windows with SpO2 in time order, read from the server a part
        at a time (a run worn around the clock may hold months)."""
        spo2 = sql.Identifier(self.spo2)
        pulse = sql.Identifier(self.pulse) if self.pulse and self.pulse in fields else sql.SQL("NULL::float8")
        rows = cur.connection.cursor(name="influx_archive_session_rows")
        rows.itersize = 20000
        try:
            rows.execute(sql.SQL("SELECT extract(epoch FROM time)::bigint, {spo2}, {pulse} FROM {table} "
                                 "WHERE {where} AND {spo2} IS NOT NULL " + bounds + " ORDER BY time").format(
                spo2=spo2, pulse=pulse, table=self.db.table, where=where), params)
            yield rows
        finally:
            rows.close()

    def readings(self, cur: Cursor, device: Tuple[str, ...]) -> Optional[ReadCounts]:
        """summarise's `readings` for a device, from <PG_TABLE>_readings (batch.READINGS), for its windows in
        [start, end): (1) over the windows it has counts for (the windows holding a reading at a TIME_BELOW
        reading, which the sink keeps), {column: the sum of their shares of readings there (below 90; at or
        below 88) less what their means count}; every other window counts by its mean: its readings are all
        90 or more (the sink keeps no row), or it was archived before the counts were kept (an adopted
        table; a count declared later); (2) {window start:
        lowest reading} of the windows whose lowest the sink kept (more than LOWEST_MARGIN under the mean;
        none before it kept them). None when there is no readings table. Queries on the readings table's few
        rows per session, where a share read beside every window had cost a key lookup per window; the rows
        without a reading below 90 change no count (their mean is 90 or more), and are not looked up."""
        readings = self.db.companion("readings")
        kept = columns_of(cur, readings.as_string(cur))
        if not kept:
            return None
        # a count column declared after the table was made: its windows count by their means (added columns
        # are NULL in the rows before them, which sum() passes over)
        counted = [m for m in TIME_BELOW if m.count_column in kept]
        spo2 = sql.SQL("a.{}").format(sql.Identifier(self.spo2))
        sums: list = [sql.SQL("sum(r.{c}::float8 / r.n - ({m} " + compare + " {b})::int)").format(
            c=sql.Identifier(m.count_column), m=spo2, b=sql.Literal(bound))
            for m in counted for compare, bound in [m.reading or ("", 0.0)]] or [sql.SQL("NULL")]
        params = {f"tag{i}": v for i, v in enumerate(device)}
        device_of = sql.SQL("").join(sql.SQL("r.{} = %({})s AND ").format(sql.Identifier(t), sql.SQL(f"tag{i}"))
                                     for i, t in enumerate(self.tags))
        between = sql.SQL("r.time >= to_timestamp(%(lo)s) AND r.time < to_timestamp(%(hi)s)")
        mean = by_key(self.db.table, sql.Identifier(self.spo2), "r", ("time", *self.tags))  # each window's mean
        some = sql.SQL(" OR ").join(sql.SQL("r.{} > 0").format(sql.Identifier(m.count_column)) for m in counted)
        counts = sql.SQL("SELECT {sums} FROM {readings} r CROSS JOIN LATERAL {mean} a WHERE {device} ({some}) "
                         "AND a.{spo2} IS NOT NULL AND {between}").format(
            sums=sql.SQL(", ").join(sums), readings=readings, mean=mean, spo2=sql.Identifier(self.spo2),
            device=device_of, some=some if counted else sql.SQL("false"), between=between).as_string(cur)
        lows = sql.SQL("SELECT extract(epoch FROM r.time)::bigint, r.{lowest} FROM {readings} r WHERE {device} "
                       "r.{lowest} IS NOT NULL AND {between}").format(
            lowest=sql.Identifier(LOWEST), readings=readings, device=device_of, between=between).as_string(cur)

        def read(start: int, end: int) -> Tuple[Dict[str, float], Dict[int, float]]:
            bounds = dict(params, lo=start, hi=end)
            cur.execute(counts, bounds)
            sums = dict(zip((m.column for m in counted), one(cur)))
            lowest = {}
            if LOWEST in kept:
                cur.execute(lows, bounds)
                lowest = dict(cur.fetchall())
            return {column: total or 0.0 for column, total in sums.items()}, lowest
        return read

    def seconds(self, cur: Cursor, device: Tuple[str, ...], fields: Sequence[str]) -> Optional[ReadSeconds]:
        """summarise's `seconds` for a device: its SpO2 and pulse readings at 1 Hz from <PG_TABLE>_seconds;
        None when that table is missing (an archive from before it)."""
        if not self.kept_seconds.exists(cur):
            return None
        names = [self.spo2] + ([self.pulse] if self.pulse and self.pulse in fields else [])

        def read(start: int, end: int) -> Optional[dict]:
            found = self.kept_seconds.read(cur, device, names, start, end)
            if found is None:
                return None
            return {"spo2": found[self.spo2], "pulse": found[self.pulse] if len(names) > 1 else None}
        return read

    def _devices(self, cur: Cursor, start: Optional[int] = None, end: Optional[int] = None) -> List[Tuple[str, ...]]:
        if not self.tags:
            return [()]
        bounds = "" if start is None else " WHERE time >= to_timestamp(%(lo)s) AND time < to_timestamp(%(hi)s)"
        cur.execute(sql.SQL("SELECT DISTINCT {} FROM {}" + bounds).format(
            sql.SQL(", ").join(sql.Identifier(t) for t in self.tags), self.db.table), {"lo": start, "hi": end})
        return [tuple(r) for r in cur.fetchall()]

    def _device(self, device: Tuple[str, ...]) -> Tuple[sql.Composable, dict]:
        params = {f"tag{i}": v for i, v in enumerate(device)}
        where = sql.SQL(" AND ").join([sql.SQL("true")] + [
            sql.SQL("{} = %({})s").format(sql.Identifier(t), sql.SQL(f"tag{i}")) for i, t in enumerate(self.tags)])
        return where, params

    def _run_start(self, cur: Cursor, device: Tuple[str, ...], edge: int) -> Optional[int]:
        """Where the run of windows reaching `edge` (epoch seconds) from before began, or None when no
        window within SESSION_GAP before it. A kept session reaching it names its run's start; else the
        windows (a run too short to be kept) are read back a span at a time."""
        where, params = self._device(device)
        span = max(self.minimum, 2 * self.gap)
        began = None
        while True:
            params.update(lo=edge - self.gap, hi=edge)
            cur.execute(sql.SQL("SELECT extract(epoch FROM run_started)::bigint FROM {} WHERE {} AND "
                                "started < to_timestamp(%(hi)s) AND ended >= to_timestamp(%(lo)s) "
                                "ORDER BY started DESC LIMIT 1").format(self.table, where), params)
            kept = cur.fetchone()
            if kept:
                return kept[0]
            times = self._window_times(cur, where, params, edge - span, edge, newest_first=True)
            for t in times:
                if edge - (t + self.window) > self.gap:
                    return began
                edge = began = t
            if not times:
                return began

    def _run_end(self, cur: Cursor, device: Tuple[str, ...], edge: int) -> int:
        """Where the run of windows reaching `edge` from after ends (`edge` when none does): a kept
        session reaching it gives its run's end; else the windows are read on a span at a time."""
        where, params = self._device(device)
        span = max(self.minimum, 2 * self.gap)
        while True:
            params.update(lo=edge, hi=edge + self.gap)
            cur.execute(sql.SQL("SELECT extract(epoch FROM max(ended))::bigint FROM {table} WHERE {where} AND "
                                "run_started IN (SELECT run_started FROM {table} WHERE {where} AND "
                                "started <= to_timestamp(%(hi)s) AND ended > to_timestamp(%(lo)s))").format(
                table=self.table, where=where), params)
            kept = one(cur)[0]
            if kept is not None and kept > edge:
                edge = kept
            times = self._window_times(cur, where, params, edge, edge + span, newest_first=False)
            for t in times:
                if t - edge > self.gap:
                    return edge
                edge = t + self.window
            if not times:
                return edge

    def _window_times(self, cur: Cursor, where: sql.Composable, params: dict, lo: int, hi: int,
                      newest_first: bool) -> List[int]:
        """Starts (epoch seconds) of a device's windows with SpO2 in [lo, hi), in the order asked."""
        params.update(lo=lo, hi=hi)
        cur.execute(sql.SQL("SELECT extract(epoch FROM time)::bigint FROM {} WHERE {} AND {} IS NOT NULL "
                            "AND time >= to_timestamp(%(lo)s) AND time < to_timestamp(%(hi)s) ORDER BY time "
                            + ("DESC" if newest_first else "ASC")).format(
            self.db.table, where, sql.Identifier(self.spo2)), params)
        return [r[0] for r in cur.fetchall()]

    def _insert(self, cur: Cursor, device: Tuple[str, ...], summary: Summary) -> None:
        names = list(self.tags) + ["started"] + [m.column for m in METRICS]
        row = dict(summary.row, run_started=rfc3339(summary.row["run_started"]), ended=rfc3339(summary.row["ended"]))
        values = list(device) + [rfc3339(summary.started)] + [
            row[m.column] if self.subject in m.subjects else None for m in METRICS]
        cur.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            self.table, sql.SQL(", ").join(sql.Identifier(n) for n in names),
            sql.SQL(", ").join(sql.Placeholder() * len(names))), values)
