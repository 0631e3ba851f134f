"""`status`: is the archive healthy? The newest data, the last hourly run, failures in a row, the
newest backup, and one exit code a monitor can page on.

The rule is status_rules.RULES, declared once: the code judges by it (each problem names its rule, whose exit
code it takes), `status --help` lists it, and setup/commands_doc.py writes the tables in README and
docs/operations.md from it (a test keeps them in step). 2 pages, 1 is worth a look, 0 is healthy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from psycopg2 import sql

from . import archive, late, readside
from .config import Config
from .dumps import newest
from .errors import EXIT_NEEDS_HUMAN, EXIT_OK, BackupError
from .humanize import human_duration, human_size
from .invocation import command
from .pg import one, table_exists
from .pgtools import database_name
from .state import State
from .status_rules import problem
from .windows import format_duration, rfc3339

RUN_EVERY = 3600  # the schedule install.sh and crontab.txt give `run`

SUCCESS = ("ok", "nothing to do")
FAILURE = ("failed", "abandoned")


@dataclass
class Status:
    target: str
    now: int
    watermark: Optional[int] = None
    newest: Optional[int] = None  # start of the newest archived window
    window: int = 5
    last_run: Optional[dict] = None  # the newest hourly `run` that has ended
    failures: int = 0  # hourly runs failed in a row, newest first
    later: Optional[dict] = None  # a backfill or rebuild newer than last_run
    running: bool = False
    rows: Optional[int] = None
    behind: list = field(default_factory=list)  # late.Behind: InfluxDB holds readings the archive lacks
    ranges: list = field(default_factory=list)  # (field, epoch changed, range before, range after), oldest first
    undelivered: list = field(default_factory=list)  # (device, started, report error, message error)
    devices: dict = field(default_factory=dict)  # with TAGS: device (as series_key names it) -> its newest window
    backup: str = "not configured (set BACKUP_DIR; README, Backups)"
    problems: list = field(default_factory=list)  # (exit code, text)

    @property
    def exit_code(self) -> int:
        return max([EXIT_OK] + [code for code, _ in self.problems])

    @property
    def verdict(self) -> str:
        if not self.problems:
            return "fresh"
        worst = sorted(self.problems, key=lambda p: -p[0])
        return "; ".join(text for _, text in worst)

    def _ago(self, epoch: float) -> str:
        return f"{rfc3339(int(epoch))} ({human_duration(max(0, self.now - int(epoch)))} ago)"

    def lines(self) -> List[str]:
        out = [f"archive:     {self.target}"]
        if self.newest is None:
            out.append("newest data: none archived yet")
        else:
            ending = rfc3339(self.newest + self.window)
            out.append(f"newest data: {self._ago(self.newest)}, the window ending {ending}")
        for device, last in sorted(self.devices.items()):
            out.append(f"device:      {device}, newest data {self._ago(last)}")
        out.append("loaded to:   " + (self._ago(self.watermark) + " (the watermark)" if self.watermark is not None
                                      else "none (the hourly run has not loaded yet)"))
        out.append("last run:    " + (_describe(self.last_run, self._ago) if self.last_run else
                                      f"none yet (cron runs `{command('run')}` hourly)"))
        if self.failures:
            out.append(f"failures:    {self.failures} hourly run(s) in a row")
        if self.last_run and self.last_run["error"] and self.last_run["outcome"] not in SUCCESS:
            at = self.last_run["finished"] or self.last_run["started"]
            out.append(f"last error:  {rfc3339(int(at))}: {self.last_run['error']}")
        if self.later:
            out.append(f"since then:  {self.later['command']} {_describe(self.later, self._ago)}")
            if self.later["error"]:
                out.append(f"its error:   {self.later['error']}")
        if self.last_run and self.last_run.get("late_hours"):
            out.append(f"late data:   the last hourly run found {self.last_run['late_hours']} hour(s) in which "
                       "InfluxDB held readings the archive lacked" + (", and loaded them" if not self.behind else ""))
        if self.behind:
            out.append(f"behind:      {late.describe(self.behind, self.now)}")
        kept_out = refusals(self.last_run)
        refused = {name: r for name, r in kept_out.items() if r["refused"]}
        if refused:
            out.append("refused:     the last hourly run refused " + ", ".join(
                f"{name}: {r['refused']} of {r['counted'] or '?'} reading(s){_values(r)}"
                for name, r in refused.items()) + " (outside VALID_RANGES)")
        skipped = {name: r["skipped"] for name, r in kept_out.items() if r["skipped"]}
        if skipped:
            out.append("skipped:     the last hourly run skipped " + ", ".join(
                f"{name}: {n} reading(s)" for name, n in skipped.items())
                + " that InfluxDB holds as text or booleans, not numbers")
        for name, at, was, now in self.ranges:
            again = command("backfill --start ... --end ...")
            out.append(f"ranges:      VALID_RANGES for {name} changed from {was} to {now} at {rfc3339(at)}: windows "
                       f"archived before keep readings {was} let through (`{again}` over that time reads them again "
                       f"by {now} while InfluxDB holds them)")
        if self.running:
            out.append("running:     yes, a run, backfill or rebuild holds the lock now")
        if self.rows is not None:
            out.append(f"rows:        {self.rows}")
        out.append(f"backup:      {self.backup}")
        out.append(f"verdict:     {self.verdict}")
        return out


def _describe(run: dict, ago: Callable[[float], str]) -> str:
    took = f", took {human_duration(run['finished'] - run['started'])}" if run["finished"] else ""
    return f"started {ago(run['started'])}: {run['outcome']}, {run['rows']} row(s) written{took}"


def status(config: Config, now: float) -> Status:
    result = Status(target=f"{config.pg_schema}.{config.pg_table}", now=int(now), window=config.window)
    _read_state(config, result)
    _judge(config, result)
    if config.backup_dir:
        _backup_status(config, now, result)
    return result


def _read_state(config: Config, result: Status) -> None:
    """Fill result from the archive and its state tables (read only: status changes nothing)."""
    with readside.session(config) as (db, cur):
        result.newest = archive.table(db, config).newest(cur)
        if result.newest is not None:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(db.table))
            result.rows = one(cur)[0]
            if config.tags:
                result.devices = readside.devices(cur, db, config.tags)
        if table_exists(cur, "influx_archive_state"):
            state = State(config.pg_schema, db.target)
            result.watermark = state.watermark(cur)
            result.running = state.active(cur)
            _read_runs(state.last_runs(cur, result.running), result)
            if table_exists(cur, "influx_archive_behind"):
                result.behind = [late.Behind(*row) for row in state.behind(cur)]
            if table_exists(cur, "influx_archive_nights"):
                result.undelivered = state.night_failures(cur)
            if table_exists(cur, "influx_archive_ranges"):
                result.ranges = state.range_changes(cur)


def _read_runs(runs: List[dict], result: Status) -> None:
    hourly = [r for r in runs if r["command"] == "run" and r["outcome"] != "running"]
    result.last_run = hourly[0] if hourly else None
    for run in hourly:
        if run["outcome"] in SUCCESS:
            break
        if run["outcome"] in FAILURE:  # an interrupted (Ctrl-C'd) run is neither
            result.failures += 1
    newer = [r for r in runs if r["command"] != "run" and r["outcome"] != "running"
             and (result.last_run is None or r["id"] > result.last_run["id"])]
    result.later = newer[0] if newer else None


def _judge(config: Config, result: Status) -> None:
    """The rule in this module's docstring, as problems with their exit codes."""
    add = result.problems.append
    alert = config.failed_runs_alert
    if result.newest is None:
        add(problem("nothing", f"nothing archived yet: run `{command('run')}` "
                               f"(`{command('check')}` first if it fails)"))
    else:
        _judge_fresh(config, result)
    _judge_behind(config, result)
    _judge_refused(config, result)
    for device, started, report_error, notify_error in result.undelivered[-3:]:  # a look: the archive is whole
        add(problem("undelivered", report_error or notify_error))
    run = result.last_run
    if run is None:
        if result.newest is not None:
            add(problem("not-run", f"the hourly run has not run yet: cron runs it, or `{command('run')}`"))
        return
    if run["outcome"] in FAILURE and run["exit_code"] == EXIT_NEEDS_HUMAN:
        add(problem("needs-human", "failing: the last hourly run needs a human (see last error)"))
    elif result.failures >= alert:
        add(problem("failing", f"failing: {result.failures} hourly runs in a row failed (see last error)"))
    elif result.failures:
        add(problem("failed-once", f"the last hourly run failed; the next one should catch up (this pages after "
                               f"{alert} in a row, FAILED_RUNS_ALERT)"))
    if not result.running and result.now - run["started"] > alert * RUN_EVERY:
        add(problem("no-runs", f"no hourly run started for {human_duration(result.now - run['started'])}: "
                               f"is cron running? (`grep influx-archive /etc/cron.d/*`)"))


def _judge_fresh(config: Config, result: Status) -> None:
    """No new reading for longer than STALE_AFTER pages: with TAGS, for each device not retired (one
    oximeter silent beside a live one is named), else for the archive as a whole."""
    watched = {d: newest for d, newest in result.devices.items() if d not in config.retired_devices}
    if not watched:
        watched = {None: result.newest}
    limit = format_duration(config.stale_after)
    for device, last in sorted(watched.items(), key=lambda item: item[1]):
        quiet = result.now - (last + config.window)
        if quiet <= config.stale_after:
            continue
        if device is None:
            result.problems.append(problem("stale", f"stale: no new reading for {human_duration(quiet)} (STALE_AFTER "
                                                      f"{limit}): is the oximeter recording, and the hourly run "
                                                      f"working? `{command('check')}` shows what InfluxDB has"))
        else:
            result.problems.append(problem("stale", f"stale: device {device} has no new reading for "
                                                      f"{human_duration(quiet)} (STALE_AFTER {limit}): is it recording "
                                                      f"and uploading? One no longer used: add {device} to "
                                                      f"RETIRED_DEVICES"))


def _judge_behind(config: Config, result: Status) -> None:
    """Readings InfluxDB holds that the archive lacks: a look while the next run can load them, a page
    once they are close to leaving InfluxDB (late.leaving_after)."""
    if not result.behind:
        return
    soon = [b for b in result.behind if result.now - b.hour > late.leaving_after(config.late_lookback)]
    if soon:
        left = human_duration(max(0, soon[0].hour + config.late_lookback - result.now))
        result.problems.append(problem("leaving", f"InfluxDB holds readings the archive lacks that pass LATE_LOOKBACK "
                                                  f"({format_duration(config.late_lookback)}, InfluxDB's retention) "
                                                  f"in about {left}: {late.describe(soon)}; `{command('run')}` "
                                                  f"loads them (its error says what stops it)"))
    else:
        result.problems.append(problem("behind", f"InfluxDB holds readings the archive lacks in "
                                                  f"{len({b.hour for b in result.behind})} hour(s); the next run "
                                                  f"loads them"))


def refusals(run: Optional[dict]) -> Dict[str, dict]:
    """{field: {"refused", "counted", "lowest", "highest", "skipped"}} of a run row's refused column (a run
    of the version before recorded [refused, counted])."""
    found = {}
    for name, value in sorted(((run or {}).get("refused") or {}).items()):
        if isinstance(value, list):
            value = {"refused": value[0], "counted": value[1] if len(value) > 1 else 0}
        found[name] = {"refused": 0, "counted": 0, "lowest": None, "highest": None, "skipped": 0, **value}
    return found


def _values(refusal: dict) -> str:
    """' (values 0.91 to 0.99)': the lowest and highest refused reading, when the run recorded them."""
    low, high = refusal["lowest"], refusal["highest"]
    if low is None or high is None:
        return ""
    number = lambda x: f"{x:g}" if isinstance(x, (int, float)) else str(x)  # noqa: E731 - 'nan' is kept as text
    return f" (values {number(low)} to {number(high)})"


def _judge_refused(config: Config, result: Status) -> None:
    """A field that lost most of its readings to VALID_RANGES is worth a look: a device reporting another
    unit (0.95 for 95 %) would otherwise archive nothing of it, quietly."""
    for name, r in refusals(result.last_run).items():
        refused, counted = r["refused"], r["counted"]
        if counted and refused * 2 > counted and name in config.valid_ranges:
            low, high = config.valid_ranges[name]
            result.problems.append(problem("refused", f"{name}: {refused} of the {counted} readings the last hourly "
                                                      f"run read were outside VALID_RANGES {low:g}..{high:g}"
                                                      f"{_values(r)}: does the device report another unit (0.95 for "
                                                      f"95 %)? Correct VALID_RANGES (none: keep every reading)"))


def _backup_status(config: Config, now: float, result: Status) -> None:
    """The newest dump's age and size; a missing, unmounted or stale BACKUP_DIR pages, none yet is a look."""
    try:
        dump, count = newest(config, database_name(config))
    except BackupError as exc:
        result.backup = f"{exc} ({exc.hint})"
        result.problems.append(problem("backup-dir", "BACKUP_DIR unusable"))
        return
    if dump is None:
        result.backup = f"no dump yet in {config.backup_dir}"
        result.problems.append(problem("no-backup", f"no backup yet: `{command('backup')}` makes one"))
        return
    age = max(0, int(now) - dump.stamp)
    result.backup = (f"{rfc3339(dump.stamp)} ({human_duration(age)} ago), {human_size(dump.size)}; "
                     f"{count} dump(s) in {config.backup_dir}")
    if age > config.backup_max_age:
        result.problems.append(problem("backup-stale", f"backup stale: the newest dump is older than BACKUP_MAX_AGE "
                                                  f"({format_duration(config.backup_max_age)})"))
