"""`status`: is the archive current? Watermark, lag, last run, row count, and an exit code for scripts."""

from dataclasses import dataclass

from psycopg2 import sql

from .backup import human_size, newest
from .errors import EXIT_NEEDS_HUMAN, EXIT_OK, EXIT_RETRY_LATER, BackupError
from .pgtools import database_name
from .sink import Database
from .state import State, set_search_path
from .windows import format_duration, human_duration, rfc3339

STATE_TABLES_EXIST = "SELECT to_regclass(%(name)s) IS NOT NULL"


@dataclass
class Status:
    target: str
    watermark: int = None
    lag: int = None
    last_run: dict = None
    rows: int = None
    running: int = 0
    exit_code: int = EXIT_NEEDS_HUMAN
    verdict: str = "never run"
    backup: str = "not configured (set BACKUP_DIR; README, Backups)"

    def lines(self):
        out = [f"archive:    {self.target}"]
        if self.watermark is None:
            out.append("watermark:  none (never loaded)")
        else:
            out.append(f"watermark:  {rfc3339(self.watermark)} (lag {human_duration(max(0, self.lag))})")
        if self.last_run:
            run = self.last_run
            when = rfc3339(int(run["started"]))
            took = f", took {int(run['finished'] - run['started'])}s" if run["finished"] else ""
            out.append(f"last run:   {run['command']} at {when}: {run['outcome']}, {run['rows']} row(s) "
                       f"written{took}")
            if run["error"]:
                out.append(f"last error: {run['error']}")
        else:
            out.append("last run:   none")
        if self.running:
            out.append("running:    yes (or killed: the next run will say)")
        if self.rows is not None:
            out.append(f"rows:       {self.rows}")
        out.append(f"backup:     {self.backup}")
        out.append(f"verdict:    {self.verdict}")
        return out


def status(config, now):
    result = Status(target=f"{config.pg_schema}.{config.pg_table}")
    if not _read_state(config, result):
        result.verdict = "never run: run `python -m loader run` (or wait for cron)"
    elif result.watermark is None:
        result.exit_code, result.verdict = EXIT_NEEDS_HUMAN, "never run: run `python -m loader run`"
    else:
        result.lag = int(now) - result.watermark
        if result.last_run and result.last_run["outcome"] in ("failed", "abandoned"):
            result.exit_code = EXIT_NEEDS_HUMAN
            result.verdict = "failing: the last run did not finish (see last error)"
        elif result.lag > config.stale_after:
            result.exit_code = EXIT_RETRY_LATER
            result.verdict = f"stale: lag above STALE_AFTER ({format_duration(config.stale_after)})"
        else:
            result.exit_code, result.verdict = EXIT_OK, "fresh"
    if config.backup_dir:
        _backup_status(config, now, result)
    return result


def _read_state(config, result):
    """Fill result from the state tables; False when they do not exist yet."""
    db = Database(config)
    conn = db.connect()
    try:
        with db.errors():
            cur = conn.cursor()
            state = State(config.pg_schema, db.target)
            set_search_path(cur, config.pg_schema)
            cur.execute(STATE_TABLES_EXIST, {"name": "influx_archive_state"})
            if not cur.fetchone()[0]:
                return False
            result.watermark = state.watermark(cur)
            result.last_run = state.last_run(cur)
            result.running = state.running(cur)
            cur.execute(STATE_TABLES_EXIST, {"name": db.table.as_string(cur)})
            if cur.fetchone()[0]:
                cur.execute(sql.SQL("SELECT count(*) FROM {}").format(db.table))
                result.rows = cur.fetchone()[0]
            conn.rollback()
            return True
    finally:
        conn.close()


def _backup_status(config, now, result):
    """The newest dump's age and size; a missing, unmounted or stale BACKUP_DIR makes the exit code worse."""
    code = EXIT_OK
    try:
        dump, count = newest(config, database_name(config))
    except BackupError as exc:
        result.backup, code, problem = f"{exc} ({exc.hint})", EXIT_NEEDS_HUMAN, "BACKUP_DIR unusable"
    else:
        if dump is None:
            result.backup, code, problem = f"no dump yet in {config.backup_dir}", EXIT_RETRY_LATER, "no backup yet"
        else:
            age = max(0, int(now) - dump.stamp)
            result.backup = (f"{rfc3339(dump.stamp)} ({human_duration(age)} ago), {human_size(dump.size)}; "
                             f"{count} dump(s) in {config.backup_dir}")
            if age > config.backup_max_age:
                code = EXIT_RETRY_LATER
                problem = f"backup stale: older than BACKUP_MAX_AGE ({format_duration(config.backup_max_age)})"
    if code != EXIT_OK:
        result.verdict = problem if result.exit_code == EXIT_OK else f"{result.verdict}; {problem}"
        result.exit_code = max(result.exit_code, code)
