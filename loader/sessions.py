"""Recording sessions (nights): what a person reads an overnight oximetry for, kept by the loader.

A session is a run of windows with an SpO2 mean, per device (the TAGS key), in which no two
consecutive windows are more than SESSION_GAP apart (end of one to start of the next), lasting at
least SESSION_MIN from its first window's start to its last window's end. Table <PG_TABLE>_sessions,
one row per session, keyed by the tags and `started`:

  started, ended        first window's start, last window's end
  recorded_s            windows with an SpO2 mean x WINDOW (the time the ODI is per hour of)
  spo2_mean, spo2_min   mean and lowest of the window means
  t90_s, t90_pct        time (and % of recorded_s) whose window mean is below 90 %
  below_s, below_pct    the same below ROLLUP_BELOW's SpO2 threshold (its value: the column comment);
                        NULL when ROLLUP_BELOW names no threshold for the SpO2 field
  desat3, desat4        desaturations of at least 3 / 4 points (DESATURATION below)
  odi3, odi4            those per hour of recorded_s
  pulse_mean, pulse_min, pulse_max   of the pulse field's window means in the session

The definition the rows were computed with is the table's comment; a run that finds it different
(SESSION_GAP, SESSION_MIN, WINDOW, the fields, the threshold, this module's rule) recomputes every
session in its transaction. `refresh` recomputes every session a written range can touch, in the
caller's transaction, from the 5-second rows: a night crossing a chunk boundary, late data, a
backfill or a rebuild replace the sessions they touch and never add a second one.
"""

import contextlib
import logging
import math
from collections import deque
from dataclasses import dataclass

from psycopg2 import sql

from .pg import archive_span, table_exists
from .windows import rfc3339

log = logging.getLogger(__name__)

# DESATURATION, the rule odi3/odi4 count (README "Sessions, T90 and ODI" says why each choice):
BASELINE_S = 120  # baseline: mean SpO2 of the windows in the 120 s before a window
BASELINE_MIN_S = 60  # ... with at least 60 s of them recorded, else no event can start there
EVENT_MIN_S = 10  # an event lasts at least 10 s: ceil(10 s / WINDOW) consecutive windows
DROPS = (3, 4)
T90 = 90.0
MAX_S = 86400  # a longer run (an oximeter worn around the clock) is cut every 24 h from its start
RULE = "desat-v1"  # changes when the rules above change, so stored sessions are recomputed

COLUMNS = (("run_started", "timestamptz NOT NULL"), ("ended", "timestamptz NOT NULL"),
           ("recorded_s", "integer NOT NULL"),
           ("spo2_mean", "double precision NOT NULL"), ("spo2_min", "double precision NOT NULL"),
           ("t90_s", "integer NOT NULL"), ("t90_pct", "double precision NOT NULL"),
           ("below_s", "integer"), ("below_pct", "double precision"),
           ("desat3", "integer NOT NULL"), ("desat4", "integer NOT NULL"),
           ("odi3", "double precision NOT NULL"), ("odi4", "double precision NOT NULL"),
           ("pulse_mean", "double precision"), ("pulse_min", "double precision"),
           ("pulse_max", "double precision"))


def desaturations(times, values, window, drops=DROPS):
    """{drop: how many desaturations of at least `drop` points the window means hold} (times ascending).

    An event starts at a window whose mean is at least `drop` below its baseline (the mean of the
    windows in the BASELINE_S before it, if they cover BASELINE_MIN_S); that level is then fixed. It
    lasts while the following windows, with none missing, stay at or below it, and counts when it
    spans EVENT_MIN_S. Detection resumes at the window that ends it."""
    need = max(1, math.ceil(EVENT_MIN_S / window))
    enough = math.ceil(BASELINE_MIN_S / window)  # windows of baseline needed
    shallowest = min(drops)
    recent_t, recent_v, running = deque(), deque(), 0.0
    events = {}  # drop -> [fixed level, windows so far, last window] of an event under way
    counts = dict.fromkeys(drops, 0)
    for t, v in zip(times, values):
        while recent_t and recent_t[0] < t - BASELINE_S:
            recent_t.popleft()
            running -= recent_v.popleft()
        if events:
            for drop, event in list(events.items()):
                if v <= event[0] and t == event[2] + window:
                    event[1], event[2] = event[1] + 1, t
                else:
                    counts[drop] += event[1] >= need
                    del events[drop]
        n = len(recent_v)
        # the running sum only shortlists: the baseline compared is summed exactly, so a long night's
        # rounding never decides an event
        if n >= enough and v <= running / n - shallowest + 1e-6 and len(events) < len(drops):
            baseline = math.fsum(recent_v) / n
            for drop in drops:
                if drop not in events and v <= baseline - drop:
                    events[drop] = [baseline - drop, 1, t]
        recent_t.append(t)
        recent_v.append(v)
        running += v
    for drop, event in events.items():
        counts[drop] += event[1] >= need
    return counts


@dataclass
class Summary:
    started: int
    row: dict


def summarise(rows, window, run_started, below=None):
    """One session's row from its windows [(epoch start, spo2, pulse)], spo2 never None."""
    times = [r[0] for r in rows]
    spo2 = [r[1] for r in rows]
    pulse = [r[2] for r in rows if r[2] is not None]
    recorded = len(rows) * window
    t90 = sum(v < T90 for v in spo2) * window
    events = desaturations(times, spo2, window)
    hours = recorded / 3600
    row = {"run_started": run_started, "ended": times[-1] + window, "recorded_s": recorded,
           "spo2_mean": math.fsum(spo2) / len(spo2), "spo2_min": min(spo2),
           "t90_s": t90, "t90_pct": 100.0 * t90 / recorded, "below_s": None, "below_pct": None,
           "desat3": events[3], "desat4": events[4], "odi3": events[3] / hours, "odi4": events[4] / hours,
           "pulse_mean": math.fsum(pulse) / len(pulse) if pulse else None,
           "pulse_min": min(pulse) if pulse else None, "pulse_max": max(pulse) if pulse else None}
    if below is not None:
        row["below_s"] = sum(v < below for v in spo2) * window
        row["below_pct"] = 100.0 * row["below_s"] / recorded
    return Summary(times[0], row)


def sessions_of(rows, window, gap, minimum, below=None, run_started=None, last_end=None):
    """The sessions in rows (ascending (epoch start, spo2, pulse), spo2 present; any iterable, read
    once, holding one session's rows at a time). A run of rows ends where the next starts more than
    `gap` after the previous one's end; runs shorter than `minimum` are not sessions; longer than
    MAX_S, they are cut every MAX_S from their start. run_started, last_end: the run that the rows
    may continue (its earlier sessions already kept): where it began and where its last window ended."""
    piece, run_start, index = [], run_started, None

    def finish(run_goes_on):
        if piece and (run_goes_on or piece[-1][0] + window - run_start >= minimum):
            return summarise(piece, window, run_start, below)
        return None

    for row in rows:
        t = row[0]
        if last_end is not None and t - last_end > gap:  # a gap ends the run
            done = finish(False)
            if done:
                yield done
            piece, run_start = [], None
        if run_start is None:
            run_start = t
        if piece and (t - run_start) // MAX_S != index:  # the run goes on into its next MAX_S
            done = finish(True)
            if done:
                yield done
            piece = []
        index = (t - run_start) // MAX_S
        piece.append(row)
        last_end = t + window
    done = finish(False)
    if done:
        yield done


class Sessions:
    """The sessions table of one archive table, kept by the loader in the caller's transactions."""

    def __init__(self, db, tags, spo2, pulse, gap, minimum, window, below=None):
        self.db = db
        self.tags = tuple(tags)
        self.spo2, self.pulse = spo2, pulse
        self.gap, self.minimum, self.window, self.below = gap, minimum, window, below
        self._ready = False

    @property
    def table(self):
        return sql.Identifier(self.db.schema, f"{self.db.table_name}_sessions")

    def definition(self):
        below = "none" if self.below is None else f"{self.below:g}"
        return (f"SESSION_GAP={self.gap}s SESSION_MIN={self.minimum}s WINDOW={self.window}s "
                f"spo2={self.spo2} pulse={self.pulse or 'none'} below={below} {RULE}")

    def enabled(self, fields):
        return bool(self.spo2) and self.spo2 in fields

    def ensure(self, cur, fields):
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
            found = cur.fetchone()[0] or "an unrecorded definition"
            if found == self.definition():
                return
            cur.execute(sql.SQL("DROP TABLE {}").format(self.table))
        columns = [sql.SQL("{} text NOT NULL").format(sql.Identifier(t)) for t in self.tags]
        columns.append(sql.SQL("started timestamptz NOT NULL"))
        columns += [sql.SQL("{} " + kind).format(sql.Identifier(n)) for n, kind in COLUMNS]
        key = [sql.Identifier(t) for t in self.tags] + [sql.Identifier("started")]
        cur.execute(sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
            self.table, sql.SQL(", ").join(columns), sql.SQL(", ").join(key)))
        cur.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(self.table, sql.Literal(self.definition())))
        if self.below is not None:
            cur.execute(sql.SQL("COMMENT ON COLUMN {}.below_s IS {}").format(
                self.table, sql.Literal(f"{self.below:g}")))
        if archive_span(cur, self.db.table)[0] is not None:
            if found:
                log.info("the sessions were computed with %s, now %s: computing them again from every archived "
                         "row", found, self.definition())
            else:
                log.info("computing the sessions of the rows already archived in %s", self.db.target)
            self._compute_all(cur, fields)

    def _compute_all(self, cur, fields):
        """Every session of the (new, empty) table, from every archived row, read in time order a device
        at a time."""
        for device in self._devices(cur):
            where, params = self._device(device)
            with self._rows(cur, fields, where, "", params) as rows:
                for summary in sessions_of(rows, self.window, self.gap, self.minimum, self.below):
                    self._insert(cur, device, summary)

    def refresh(self, cur, fields, start, end):
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
                    last_end = cur.fetchone()[0] + self.window
                else:
                    run_started = None  # the run starts inside what is read: it is read whole
            params.update(lo=lo, hi=self._run_end(cur, device, end))
            cur.execute(sql.SQL("DELETE FROM {} WHERE {} AND started < to_timestamp(%(hi)s) "
                                "AND ended > to_timestamp(%(lo)s)").format(self.table, where), params)
            bounds = "AND time >= to_timestamp(%(lo)s) AND time < to_timestamp(%(hi)s)"
            with self._rows(cur, fields, where, bounds, params) as rows:
                for summary in sessions_of(rows, self.window, self.gap, self.minimum, self.below,
                                           run_started, last_end):
                    self._insert(cur, device, summary)

    @contextlib.contextmanager
    def _rows(self, cur, fields, where, bounds, params):
        """(epoch, spo2, pulse) of a device's windows with SpO2 in time order, read from the server a
        part at a time (a run worn around the clock may hold months)."""
        pulse = sql.Identifier(self.pulse) if self.pulse and self.pulse in fields else sql.SQL("NULL::float8")
        rows = cur.connection.cursor(name="influx_archive_session_rows")
        rows.itersize = 20000
        try:
            rows.execute(sql.SQL("SELECT extract(epoch FROM time)::bigint, {spo2}, {pulse} FROM {table} "
                                 "WHERE {where} AND {spo2} IS NOT NULL " + bounds + " ORDER BY time").format(
                spo2=sql.Identifier(self.spo2), pulse=pulse, table=self.db.table, where=where), params)
            yield rows
        finally:
            rows.close()

    def _devices(self, cur, start=None, end=None):
        if not self.tags:
            return [()]
        bounds = "" if start is None else " WHERE time >= to_timestamp(%(lo)s) AND time < to_timestamp(%(hi)s)"
        cur.execute(sql.SQL("SELECT DISTINCT {} FROM {}" + bounds).format(
            sql.SQL(", ").join(sql.Identifier(t) for t in self.tags), self.db.table), {"lo": start, "hi": end})
        return [tuple(r) for r in cur.fetchall()]

    def _device(self, device):
        params = {f"tag{i}": v for i, v in enumerate(device)}
        where = sql.SQL(" AND ").join([sql.SQL("true")] + [
            sql.SQL("{} = %({})s").format(sql.Identifier(t), sql.SQL(f"tag{i}")) for i, t in enumerate(self.tags)])
        return where, params

    def _run_start(self, cur, device, edge):
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

    def _run_end(self, cur, device, edge):
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
            kept = cur.fetchone()[0]
            if kept is not None and kept > edge:
                edge = kept
            times = self._window_times(cur, where, params, edge, edge + span, newest_first=False)
            for t in times:
                if t - edge > self.gap:
                    return edge
                edge = t + self.window
            if not times:
                return edge

    def _window_times(self, cur, where, params, lo, hi, newest_first):
        """Starts (epoch seconds) of a device's windows with SpO2 in [lo, hi), in the order asked."""
        params.update(lo=lo, hi=hi)
        cur.execute(sql.SQL("SELECT extract(epoch FROM time)::bigint FROM {} WHERE {} AND {} IS NOT NULL "
                            "AND time >= to_timestamp(%(lo)s) AND time < to_timestamp(%(hi)s) ORDER BY time "
                            + ("DESC" if newest_first else "ASC")).format(
            self.db.table, where, sql.Identifier(self.spo2)), params)
        return [r[0] for r in cur.fetchall()]

    def _insert(self, cur, device, summary):
        names = list(self.tags) + ["started"] + [n for n, _ in COLUMNS]
        row = dict(summary.row, run_started=rfc3339(summary.row["run_started"]), ended=rfc3339(summary.row["ended"]))
        values = list(device) + [rfc3339(summary.started)] + [row[n] for n, _ in COLUMNS]
        cur.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            self.table, sql.SQL(", ").join(sql.Identifier(n) for n in names),
            sql.SQL(", ").join(sql.Placeholder() * len(names))), values)
