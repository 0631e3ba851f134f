"""The load job: plan a time range, then for each chunk fetch → write → move the watermark → commit.

`run` (the hourly cron job) and `backfill` (a range the user names) share this one path; before a
range is loaded the source proves that the measurement and FIELDS exist there. Memory
is bounded by one chunk, whatever the range; a failure leaves every committed chunk in place and
the watermark just behind them, so the next run resumes there.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Tuple, Union

from . import archive, late
from .clock import Clock, SystemClock, check_synchronized
from .config import Config, redact
from .errors import EXIT_RETRY_LATER, LoaderError, SourceUnavailable
from .pg import Connection, Cursor, Database
from .rollups import Rollups
from .sessions import Sessions
from .sink import ArchiveTable
from .sources import open_source
from .sources.batch import Batch
from .sources.proof import prove_fields
from .state import State, ensure_schema
from .windows import chunks, format_duration, plan_backfill, plan_run, rfc3339, whole_hours

if TYPE_CHECKING:
    from .sources import Source

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    command: str
    start: Optional[int] = None
    end: Optional[int] = None
    chunks: int = 0
    rows: int = 0  # rows inserted or changed
    windows: int = 0  # windows the source answered (re-read unchanged ones included)
    dropped: dict = field(default_factory=dict)
    locked_out: bool = False  # another run holds the lock; nothing was done
    newest: Optional[int] = None  # start of the newest archived window after the run, epoch seconds
    late: list = field(default_factory=list)  # late.Behind entries the comparison found (and loaded)
    counted: dict = field(default_factory=dict)  # field -> readings InfluxDB held in the ranges read
    refused_seen: dict = field(default_factory=dict)  # field -> (lowest, highest) of the readings refused
    skipped: dict = field(default_factory=dict)  # field -> readings InfluxDB holds as text or booleans

    def span(self) -> Tuple[int, int]:
        """[start, end) of the range planned: set before any work is done on it."""
        assert self.start is not None and self.end is not None
        return self.start, self.end

    def refusals(self) -> Dict[str, dict]:
        """What the run kept out, per field, as the runs table records it (status reads it): readings
        refused by VALID_RANGES, of how many counted, their lowest and highest; readings skipped as
        not numbers."""
        found = {}
        for name in sorted(set(self.dropped) | set(self.skipped)):
            low, high = (_json_number(x) for x in self.refused_seen.get(name, (None, None)))
            found[name] = {"refused": self.dropped.get(name, 0), "counted": self.counted.get(name, 0),
                           "lowest": low, "highest": high, "skipped": self.skipped.get(name, 0)}
        return found

    @property
    def nothing_to_do(self) -> bool:
        return not self.locked_out and (self.start is None or self.end is None or self.start >= self.end)


def _json_number(value: Optional[float]) -> Union[None, float, str]:
    """A number as JSON holds it: NaN and the infinities (a glitch InfluxDB stored) as text."""
    return value if value is None or math.isfinite(value) else str(value)


class Background:
    """One call running in a daemon thread; result() waits for it and re-raises what it raised.
    (A daemon thread, unlike concurrent.futures' workers, never keeps a failed run's process alive
    until an abandoned request times out.)"""

    def __init__(self, function: Callable[..., Any], *args: Any) -> None:
        self._done = threading.Event()
        self._value: object = None
        self._error: Optional[BaseException] = None
        threading.Thread(target=self._call, args=(function, args), name="influx-archive-fetch", daemon=True).start()

    def _call(self, function: Callable[..., Any], args: tuple) -> None:
        try:
            self._value = function(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of result()
            self._error = exc
        finally:
            self._done.set()

    def result(self) -> Any:
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


@dataclass
class Work:
    """What one run, backfill or rebuild holds while it works: the connection and its cursor, the
    tables, the run-history row and the watermark as last read or moved."""

    conn: Connection
    cur: Cursor
    table: ArchiveTable
    rollups: Rollups
    sessions: Sessions
    state: State
    run_id: int
    outcome: Outcome
    watermark: Optional[int] = None
    source: Optional[Source] = None  # run and backfill: the source, its fields already proved


class Job:
    """One invocation of run, backfill or rebuild-rollups. Tests inject clock, sleep and progress."""

    def __init__(self, config: Config, clock: Optional[Clock] = None, sleep: Callable[[float], None] = time.sleep,
                 progress: Optional[Callable[..., None]] = None,
                 source_factory: Callable[[Config], Source] = open_source) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.sleep = sleep
        self.progress = progress
        self.source_factory = source_factory

    def run(self) -> Outcome:
        def plan(watermark: Optional[int], now: float) -> Tuple[int, int]:
            self._check_clock()
            return plan_run(self.config, watermark, now)
        return self._execute("run", plan, self._load_and_catch_up, load=True)

    def backfill(self, start: int, end: int) -> Outcome:
        def work(work: Work) -> None:
            self._load(work, chunks(*work.outcome.span(), self.config.chunk), always_advance=False)
        return self._execute("backfill", lambda watermark, now: plan_backfill(self.config, start, end, now),
                             work, load=True)

    def rebuild_rollups(self, start: Optional[int] = None, end: Optional[int] = None) -> Outcome:
        """Recompute the rollups and sessions of [start, end) (default: all archived rows) from the
        5-second table."""
        return self._execute("rebuild-rollups", lambda watermark, now: (start, end), self._rebuild)

    def _check_clock(self) -> None:
        check_synchronized(self.clock, self.config.require_clock_sync, "loading")

    def _execute(self, command: str, plan: Callable[[Optional[int], float], Tuple[Optional[int], Optional[int]]],
                 work: Callable[[Work], None], load: bool = False) -> Outcome:
        config = self.config
        outcome = Outcome(command)
        db = Database(config)
        state = State(config.pg_schema, db.target)
        conn = db.connect()
        cur = run_id = source = None
        locked = False
        try:
            with db.errors():
                cur = conn.cursor()
                if not state.try_lock(cur):
                    conn.commit()
                    outcome.locked_out = True
                    return outcome
                locked = True
                ensure_schema(cur, config.pg_schema)
                run_id = state.start_run(cur, command, self.clock.now())
                conn.commit()  # the run row stays whatever fails next, with its outcome (status reads it)
                watermark = state.watermark(cur)
                table = archive.table(db, config)
                table.check(cur)  # a table that does not fit is refused before InfluxDB is asked anything
                conn.commit()
            outcome.start, outcome.end = plan(watermark, self.clock.now())
            if load and not outcome.nothing_to_do:
                # an empty answer proves "no data" only once the measurement and fields are known to
                # exist; asked before any table is made, so a misspelt FIELDS leaves no column behind
                source = self.source_factory(config)
                self._retrying(prove_fields, config, source, outcome.start, self.clock.now())
            with db.errors():
                table.ensure(cur, config.fields)
                rollups = archive.rollups(db, config)
                rollups.ensure(cur, table.fields)
                sessions = archive.sessions(db, config)
                sessions.ensure(cur, table.fields)
                if outcome.start is None:  # rebuild-rollups of everything: the archive's own span
                    outcome.start, outcome.end = table.span(cur)
                conn.commit()
            if not outcome.nothing_to_do:
                work(Work(conn, cur, table, rollups, sessions, state, run_id, outcome, watermark, source))
            with db.errors():
                outcome.newest = table.newest(cur)
                result = "nothing to do" if outcome.nothing_to_do else "ok"
                state.finish_run(cur, run_id, self.clock.now(), outcome.start, outcome.end,
                                 outcome.chunks, outcome.rows, result)
                conn.commit()
            return outcome
        except BaseException as exc:
            self._record_end(conn, cur, state, run_id, outcome, exc)
            raise
        finally:
            if source is not None:
                source.close()
            if locked:
                self._unlock(conn, cur, state)
            conn.close()

    def _rebuild(self, work: Work) -> None:
        outcome = work.outcome
        pieces = chunks(*outcome.span(), self.config.chunk)
        for index, (lo, hi) in enumerate(pieces, 1):
            with work.table.db.transaction(work.conn):
                work.rollups.refresh(work.cur, work.table.fields, lo, hi)
                work.sessions.refresh(work.cur, work.table.fields, lo, hi)
                outcome.chunks += 1
                work.state.progress(work.cur, work.run_id, outcome.start, outcome.end, outcome.chunks,
                                    outcome.rows)
            if self.progress:
                self.progress(index, len(pieces), lo, hi, 0, 0)

    def _load_and_catch_up(self, work: Work) -> None:
        """The hourly run: what is new since the watermark, then the hours InfluxDB holds more readings
        of than the archive was made from (late.py)."""
        outcome = work.outcome
        self._load(work, chunks(*outcome.span(), self.config.chunk), always_advance=True)
        self._catch_up(work)

    def _catch_up(self, work: Work) -> None:
        """Compare InfluxDB's readings per hour, series and field over LATE_LOOKBACK (up to where this
        run began reading) with what the archive was made from; read every hour that is behind again."""
        config, cur, state, db = self.config, work.cur, work.state, work.table.db
        now = self.clock.now()
        with db.transaction(work.conn):  # read only; not left open while InfluxDB counts
            bounds = late.span(cur, state, work.table, now, config.late_lookback, upto=work.outcome.start)
        if bounds is None:
            return
        lo, hi = bounds
        source = work.source
        assert source is not None  # a run's work has its source
        influx = late.influx_counts(lambda a, b: self._retrying(source.counts, a, b), lo, hi)
        late.refuse_merged(influx, self.config.tags)
        with db.transaction(work.conn):
            behind = late.compare(influx, state.counts(cur, lo, hi))
            lost = [b for b in state.behind(cur) if b[0] < lo]
            if lost:
                log.warning("late data: %d hour(s) InfluxDB held readings of that were never loaded are now older "
                            "than LATE_LOOKBACK (%s); the oldest %s", len({b[0] for b in lost}),
                            format_duration(config.late_lookback), rfc3339(lost[0][0]))
            state.clear_behind(cur, 0, hi)
            state.record_behind(cur, [(b.hour, b.series, b.field, b.in_influx, b.loaded) for b in behind], now)
            state.late_hours(cur, work.run_id, len({b.hour for b in behind}))
        work.outcome.late = behind
        if not behind:
            log.debug("late data: InfluxDB and the archive agree on every hour from %s to %s", rfc3339(lo), rfc3339(hi))
            return
        log.info("late data: InfluxDB holds readings the archive lacks in %s; loading them", late.describe(behind, now))
        self._load(work, late.reload_pieces(behind, config.window, config.chunk), always_advance=False,
                   what="late data")

    def _load(self, work: Work, pieces: Sequence[Tuple[int, int]], always_advance: bool,
              what: Optional[str] = None) -> None:
        config, outcome, cur = self.config, work.outcome, work.cur
        table, db = work.table, work.table.db
        log.info("%s %s .. %s in %d chunk(s) of up to %s", what or outcome.command, rfc3339(pieces[0][0]),
                 rfc3339(pieces[-1][1]), len(pieces), format_duration(config.chunk))
        source = work.source
        assert source is not None  # a run's or backfill's work has its source
        # InfluxDB answers the next chunk while PostgreSQL writes this one: at most two chunks
        # are in memory, and requests still go out one at a time, in order
        upcoming: Optional[Background] = Background(self._retrying, source.fetch, *pieces[0])
        for index, (lo, hi) in enumerate(pieces, 1):
            batch = upcoming.result()  # type: ignore[union-attr]  # set for every piece but after the last
            late.refuse_merged(batch.counts, self.config.tags)
            upcoming = Background(self._retrying, source.fetch, *pieces[index]) if index < len(pieces) else None
            self._kept_out(batch, lo, hi, outcome)
            for (_, _, name), count in batch.counts.items():
                outcome.counted[name] = outcome.counted.get(name, 0) + count
            advance = always_advance or (work.watermark is not None and lo <= work.watermark)
            with db.transaction(work.conn):  # rows, rollups, sessions and watermark move together or not at all
                written = table.write(cur, batch)
                if written:
                    work.rollups.refresh(cur, table.fields, lo, hi)
                    work.sessions.refresh(cur, table.fields, lo, hi)
                work.state.record_counts(cur, late.whole_hours_of(batch.counts, lo, hi))
                work.state.clear_behind(cur, *whole_hours(lo, hi))
                if advance:
                    work.state.advance(cur, hi)
                    work.watermark = max(work.watermark or hi, hi)
                outcome.chunks += 1
                outcome.rows += written
                outcome.windows += batch.rows
                work.state.progress(cur, work.run_id, outcome.start, outcome.end, outcome.chunks,
                                    outcome.rows, outcome.refusals())
            log.debug("chunk %s .. %s: %d windows fetched, %d rows written", rfc3339(lo), rfc3339(hi),
                      batch.rows, written)
            if self.progress:
                self.progress(index, len(pieces), lo, hi, batch.rows, outcome.rows)

    def _kept_out(self, batch: Batch, lo: int, hi: int, outcome: Outcome) -> None:
        """The chunk's readings refused by VALID_RANGES and skipped as not numbers: added up in the
        outcome, named in the log with the field, the range, the values seen and the time span."""
        for name, count in batch.dropped.items():
            if count:
                outcome.dropped[name] = outcome.dropped.get(name, 0) + count
                low, high = self.config.valid_ranges[name]
                seen, values = batch.refused_seen.get(name, (None, None)), ""
                if None not in seen:
                    was = outcome.refused_seen.get(name, seen)
                    outcome.refused_seen[name] = (min(was[0], seen[0]), max(was[1], seen[1]))
                    values = f" (values {seen[0]:g} to {seen[1]:g})"
                log.info("refused %d %s reading(s) outside VALID_RANGES %g..%g between %s and %s%s", count, name,
                         low, high, rfc3339(lo), rfc3339(hi), values)
        for name, count in batch.skipped.items():
            if count:
                outcome.skipped[name] = outcome.skipped.get(name, 0) + count
                log.warning("skipped %d %s reading(s) between %s and %s that InfluxDB holds as text or booleans, "
                            "not numbers (no mean)", count, name, rfc3339(lo), rfc3339(hi))

    def _retrying(self, request: Callable[..., Any], *args: Any) -> Any:
        """request(*args) (a chunk's fetch, the proof of fields), waiting out 429s (Retry-After) and
        retrying 5xx and connection errors up to MAX_RETRIES attempts."""
        attempt = 0
        while True:
            try:
                return request(*args)
            except SourceUnavailable as exc:
                attempt += 1
                if attempt >= self.config.max_retries or not exc.retry:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else min(2 ** attempt,
                                                                                self.config.max_retry_wait)
                if wait > self.config.max_retry_wait:
                    raise SourceUnavailable(f"{exc}; it asks to wait {wait}s, longer than MAX_RETRY_WAIT "
                                            f"({format_duration(self.config.max_retry_wait)}); the next run "
                                            "will catch up") from None
                log.warning("%s; retrying in %ds (attempt %d of %d)", exc, wait, attempt + 1,
                            self.config.max_retries)
                self.sleep(wait)

    @staticmethod
    def _unlock(conn: Connection, cur: Optional[Cursor], state: State) -> None:
        """Release the run lock before the connection closes: the server ends a closed session's backend in
        its own time, and a run started right after (a person retrying a failed one, the next test) would
        find the lock still held and stop as "locked out". Best effort: a lost connection releases it too."""
        if cur is None:
            return
        try:
            conn.rollback()
            state.unlock(cur)
            conn.commit()
        except Exception:  # noqa: BLE001 - the connection may be the failure; closing it releases the lock
            log.debug("could not release the run lock before closing", exc_info=True)

    def _record_end(self, conn: Connection, cur: Optional[Cursor], state: State, run_id: Optional[int],
                    outcome: Outcome, exc: Optional[BaseException]) -> None:
        """Best effort: the run-history row says how the run ended (the database may be the failure).
        Ctrl-C is 'interrupted'; any other exception 'failed', with the exit code the CLI gives it."""
        if run_id is None or cur is None or conn.closed:
            return
        if isinstance(exc, KeyboardInterrupt):
            result, code, text = "interrupted", EXIT_RETRY_LATER, "interrupted (Ctrl-C or SIGINT)"
        elif isinstance(exc, LoaderError):
            result, code, text = "failed", exc.exit_code, str(exc)
        elif isinstance(exc, Exception):
            result, code, text = "failed", EXIT_RETRY_LATER, f"unexpected {type(exc).__name__}: {exc}"
        else:
            return  # SystemExit and the like: the row reads 'abandoned' once the lock is gone
        try:
            conn.rollback()
            state.finish_run(cur, run_id, self.clock.now(), outcome.start, outcome.end, outcome.chunks,
                             outcome.rows, result, redact(text, self.config.secrets())[:1000], code)
            conn.commit()
        except Exception:  # noqa: BLE001 - the original error is the one to report
            log.debug("could not record how the run ended", exc_info=True)
