"""The load job: plan a time range, then for each chunk fetch → write → move the watermark → commit.

`run` (the hourly cron job) and `backfill` (a range the user names) share this one path. Memory
is bounded by one chunk, whatever the range; a failure leaves every committed chunk in place and
the watermark just behind them, so the next run resumes there.
"""

import logging
import threading
import time
from dataclasses import dataclass, field

from .clock import SystemClock, check_synchronized
from .config import redact
from .errors import ClockError, LoaderError, SourceUnavailable
from .rollups import Rollups
from .sink import ArchiveTable, Database
from .sources import open_source
from .state import State, ensure_schema
from .windows import chunks, floor_to, format_duration, rfc3339

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    command: str
    start: int = None
    end: int = None
    chunks: int = 0
    rows: int = 0
    dropped: dict = field(default_factory=dict)
    locked_out: bool = False  # another run holds the lock; nothing was done

    @property
    def nothing_to_do(self):
        return not self.locked_out and (self.start is None or self.start >= self.end)


def plan_run(config, watermark, now):
    """The range the cron job loads: from the watermark less LATE_DATA (first run: now less
    INITIAL_LOOKBACK) up to the end of the last complete window."""
    end = floor_to(now, config.window)
    if watermark is None:
        return floor_to(now - config.initial_lookback, config.window), end
    if now < watermark:
        raise ClockError(f"the system clock ({rfc3339(int(now))}) is earlier than the watermark "
                         f"({rfc3339(watermark)}); not loading until the clock is right",
                         hint="check `timedatectl`; a Pi without a real-time clock needs NTP after boot")
    return min(watermark - config.late_data, end), end


def plan_backfill(config, start, end, now):
    """Align a requested range to windows and stop it at the last complete window."""
    last_complete = floor_to(now, config.window)
    lo = floor_to(start, config.window)
    hi = min(floor_to(end, config.window), last_complete)
    if end > last_complete:
        log.info("backfill stops at %s, the end of the last complete window", rfc3339(last_complete))
    return lo, max(lo, hi)


class Background:
    """One call running in a daemon thread; result() waits for it and re-raises what it raised.
    (A daemon thread, unlike concurrent.futures' workers, never keeps a failed run's process alive
    until an abandoned request times out.)"""

    def __init__(self, function, *args):
        self._done = threading.Event()
        self._value = self._error = None
        threading.Thread(target=self._call, args=(function, args), name="influx-archive-fetch", daemon=True).start()

    def _call(self, function, args):
        try:
            self._value = function(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of result()
            self._error = exc
        finally:
            self._done.set()

    def result(self):
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


class Job:
    """One invocation of run or backfill. Tests inject clock, sleep and progress."""

    def __init__(self, config, clock=None, sleep=time.sleep, progress=None, source_factory=open_source):
        self.config = config
        self.clock = clock or SystemClock()
        self.sleep = sleep
        self.progress = progress
        self.source_factory = source_factory

    def run(self):
        def plan(watermark, now):
            self._check_clock()
            return plan_run(self.config, watermark, now)
        return self._execute("run", plan, self._load_chunks(always_advance=True))

    def backfill(self, start, end):
        return self._execute("backfill", lambda watermark, now: plan_backfill(self.config, start, end, now),
                             self._load_chunks(always_advance=False))

    def rebuild_rollups(self, start=None, end=None):
        """Recompute the rollups of [start, end) (default: all archived rows) from the 5-second table."""
        def plan(watermark, now):
            return start, end
        return self._execute("rebuild-rollups", plan, self._rebuild_chunks)

    def _check_clock(self):
        check_synchronized(self.clock, self.config.require_clock_sync, "loading")

    def _execute(self, command, plan, work):
        config = self.config
        outcome = Outcome(command)
        db = Database(config)
        state = State(config.pg_schema, db.target)
        conn = db.connect()
        cur = run_id = None
        try:
            with db.errors():
                cur = conn.cursor()
                if not state.try_lock(cur):
                    conn.commit()
                    outcome.locked_out = True
                    return outcome
                ensure_schema(cur, config.pg_schema)
                run_id = state.start_run(cur, command, self.clock.now())
                watermark = state.watermark(cur)
                conn.commit()
                # the archive and rollup tables are created or checked before InfluxDB is asked for anything
                table = ArchiveTable(db, config.tags)
                table.ensure(cur, config.fields)
                rollups = Rollups(db, config.tags, config.rollup_below)
                rollups.ensure(cur, table.fields)
                conn.commit()
            outcome.start, outcome.end = plan(watermark, self.clock.now())
            if outcome.start is None:  # rebuild-rollups of everything: the archive's own span
                outcome.start, outcome.end = table.span(cur)
                conn.commit()
            work(conn, cur, table, rollups, state, run_id, outcome, watermark)
            with db.errors():
                result = "nothing to do" if outcome.nothing_to_do else "ok"
                state.finish_run(cur, run_id, self.clock.now(), outcome.start, outcome.end,
                                 outcome.chunks, outcome.rows, result)
                conn.commit()
            return outcome
        except LoaderError as exc:
            self._record_failure(conn, cur, state, run_id, outcome, exc)
            raise
        finally:
            conn.close()

    def _load_chunks(self, always_advance):
        def work(conn, cur, table, rollups, state, run_id, outcome, watermark):
            self._load(conn, cur, table, rollups, state, run_id, outcome, watermark, always_advance)
        return work

    def _rebuild_chunks(self, conn, cur, table, rollups, state, run_id, outcome, watermark):
        pieces = chunks(outcome.start, outcome.end, self.config.chunk)
        for index, (lo, hi) in enumerate(pieces, 1):
            with table.db.transaction(conn):
                rollups.refresh(cur, table.fields, lo, hi)
                outcome.chunks += 1
                state.progress(cur, run_id, outcome.start, outcome.end, outcome.chunks, outcome.rows)
            if self.progress:
                self.progress(index, len(pieces), lo, hi, 0, 0)

    def _load(self, conn, cur, table, rollups, state, run_id, outcome, watermark, always_advance):
        config = self.config
        db = table.db
        pieces = chunks(outcome.start, outcome.end, config.chunk)
        if pieces:
            log.info("%s %s .. %s in %d chunk(s) of up to %s", outcome.command, rfc3339(outcome.start),
                     rfc3339(outcome.end), len(pieces), format_duration(config.chunk))
        source = self.source_factory(config)
        try:
            # InfluxDB answers the next chunk while PostgreSQL writes this one: at most two chunks
            # are in memory, and requests still go out one at a time, in order
            upcoming = Background(self._fetch, source, *pieces[0]) if pieces else None
            for index, (lo, hi) in enumerate(pieces, 1):
                batch = upcoming.result()
                upcoming = Background(self._fetch, source, *pieces[index]) if index < len(pieces) else None
                for name, count in batch.dropped.items():
                    if count:
                        outcome.dropped[name] = outcome.dropped.get(name, 0) + count
                        log.info("%s: dropped %d %s reading(s) outside VALID_RANGES", rfc3339(lo), count, name)
                advance = always_advance or (watermark is not None and lo <= watermark)
                with db.transaction(conn):  # rows, rollups and watermark move together or not at all
                    written = table.write(cur, batch)
                    if written:
                        rollups.refresh(cur, table.fields, lo, hi)
                    if advance:
                        state.advance(cur, hi)
                        watermark = max(watermark or hi, hi)
                    outcome.chunks += 1
                    outcome.rows += written
                    state.progress(cur, run_id, outcome.start, outcome.end, outcome.chunks, outcome.rows)
                log.debug("chunk %s .. %s: %d windows fetched, %d rows written", rfc3339(lo), rfc3339(hi),
                          batch.rows, written)
                if self.progress:
                    self.progress(index, len(pieces), lo, hi, batch.rows, outcome.rows)
        finally:
            source.close()

    def _fetch(self, source, lo, hi):
        """Fetch one chunk, waiting out 429s (Retry-After) and retrying 5xx/connection errors."""
        attempt = 0
        while True:
            try:
                return source.fetch(lo, hi)
            except SourceUnavailable as exc:
                attempt += 1
                if attempt >= self.config.max_retries:
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

    def _record_failure(self, conn, cur, state, run_id, outcome, exc):
        """Best effort: the run-history row says how it failed (the database may be the failure)."""
        if run_id is None or conn.closed:
            return
        try:
            conn.rollback()
            state.finish_run(cur, run_id, self.clock.now(), outcome.start, outcome.end, outcome.chunks,
                             outcome.rows, "failed", redact(str(exc), self.config.secrets())[:1000])
            conn.commit()
        except Exception:  # noqa: BLE001 - the original error is the one to report
            log.debug("could not record the failed run", exc_info=True)
