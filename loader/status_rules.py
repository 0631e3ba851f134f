"""What `status` judges, declared once: each rule's exit code and when it holds. status.py judges by it
(every problem names its rule and takes its exit code from here), `status --help` lists it, and
setup/commands_doc.py writes the tables in README and docs/operations.md from it (tests/test_docs.py keeps
them in step). 2 pages, 1 is worth a look, 0 is healthy."""

from dataclasses import dataclass
from typing import Tuple

from .errors import EXIT_NEEDS_HUMAN, EXIT_OK, EXIT_RETRY_LATER


@dataclass(frozen=True)
class Rule:
    """One thing `status` judges: its exit code, and when it holds, as the docs' table says it."""

    key: str
    exit_code: int
    when: str


# each rule: its key (status.py names it where it judges), and when it holds, as the docs' table says it
PAGE = {
    "nothing": "nothing archived yet",
    "stale": "no new reading for longer than `STALE_AFTER` (with `TAGS`, judged per device: a quiet one is named, "
             "and one no longer used is retired with `RETIRED_DEVICES`; default 1 day: an oximeter worn at night "
             "leaves ~16 h gaps; `2h` for one that records around the clock)",
    "needs-human": "the last hourly run failed in a way that needs a human",
    "failing": "`FAILED_RUNS_ALERT` (3) hourly runs failed in a row",
    "no-runs": "no hourly run started for `FAILED_RUNS_ALERT` hours (is cron running?)",
    "leaving": "readings InfluxDB holds that the archive lacks, older than the last sixth of `LATE_LOOKBACK` "
               "(named, before InfluxDB's retention deletes them)",
    "backup-stale": "the newest dump older than `BACKUP_MAX_AGE`",
    "backup-dir": "`BACKUP_DIR` unusable (its drive gone, not writable)",
    "unreachable": "PostgreSQL unreachable, or the settings wrong (a monitor that cannot see the archive must not "
                   "stay quiet)",
}
LOOK = {
    "failed-once": "the last hourly run failed (a blip: the next one catches up; it pages after "
                   "`FAILED_RUNS_ALERT` in a row)",
    "behind": "late readings found and not loaded yet",
    "refused": "a field that lost more than half of the last run's readings to `VALID_RANGES` (a device sending "
               "0.95 for 95 %? the verdict names the range and the lowest and highest value refused)",
    "not-run": "data is there (e.g. backfilled) but the hourly run has not run yet",
    "no-backup": "backups are on but none was made yet",
    "undelivered": "a finished night's report (`REPORT_DIR`) or message (`NOTIFY_URL`) failed; the next run tries "
                   "again",
}
RULES = tuple(Rule(key, code, when) for code, rules in ((EXIT_NEEDS_HUMAN, PAGE), (EXIT_RETRY_LATER, LOOK))
              for key, when in rules.items())
RULE = {r.key: r for r in RULES}
WORDS = {EXIT_NEEDS_HUMAN: "page", EXIT_RETRY_LATER: "look when convenient", EXIT_OK: "healthy"}


def problem(key: str, text: str) -> Tuple[int, str]:
    """(exit code, text) of a problem of the rule named key: the code comes from RULES alone."""
    return RULE[key].exit_code, text


def rules_meaning(code: int) -> str:
    """The rules of an exit code, in one line (`status --help` and the docs' table)."""
    if code == EXIT_OK:
        return "everything else: `verdict: fresh`"
    return "; ".join(r.when for r in RULES if r.exit_code == code)


def table() -> str:
    """The exit table as README and docs/operations.md show it (markdown)."""
    rows = ["| exit | when |", "| --- | --- |"]
    rows += [f"| {code} — {WORDS[code]} | {rules_meaning(code)} |"
             for code in (EXIT_NEEDS_HUMAN, EXIT_RETRY_LATER, EXIT_OK)]
    return "\n".join(rows)
