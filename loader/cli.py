"""Command line: parse arguments, call the library, turn its typed errors into one line and an exit code.

Each command is declared once, below: its help, example, exit codes, arguments and handler together.
Whatever a command raises ends as one line on stderr, an ERROR with the traceback in LOG_FILE, the
exit code, and a /fail heartbeat ping; nothing escapes as a bare traceback.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import textwrap
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, TextIO, Tuple

from . import __version__, invocation, status_rules
from . import config as config_module
from .clock import SystemClock
from .config import Config
from .console import readers_may_leave, setup_logging
from .errors import (
    EXIT_NEEDS_HUMAN,
    EXIT_OK,
    EXIT_RETRY_LATER,
    BackupDamaged,
    ConfigError,
    LoaderError,
    SinkUnavailable,
)
from .heartbeat import Heartbeat
from .humanize import human_duration
from .windows import parse_time, rfc3339

if TYPE_CHECKING:
    from .job import Job, Outcome

Argument = Tuple[Tuple[str, ...], dict]  # (flags, argparse keyword arguments)
Handler = Callable[[argparse.Namespace, Config], int]  # a command: (arguments, settings) -> exit code

log = logging.getLogger("loader")

UNEXPECTED = "an unexpected error (the log has its traceback)"


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    detail: str
    example: str
    exit_codes: tuple  # ((code, meaning), ...): what this command's exit codes mean
    handler: Callable[..., int]
    arguments: tuple = ()  # ((flags, argparse keyword arguments), ...)
    heartbeat: Optional[Callable[..., Optional[str]]] = None  # (args, config) -> the URL to ping, or None


COMMANDS: Dict[str, "Command"] = {}


def command(name: str, summary: str, detail: str, example: str, exit_codes: Sequence[Tuple[int, str]],
            arguments: Sequence[Argument] = (),
            heartbeat: Optional[Callable[..., Optional[str]]] = None) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        declared = tuple(arguments) + getattr(handler, "arguments", ())  # over_range declares --start/--end
        COMMANDS[name] = Command(name, summary, " ".join(detail.split()), example, tuple(exit_codes), handler,
                                 declared, heartbeat)
        return handler
    return register


def exit_code_help(codes: Sequence[Tuple[int, str]]) -> str:
    lines = ["exit codes:"]
    for code, meaning in codes:
        wrapped = textwrap.wrap(meaning, 74)
        lines.append(f"  {code}  {wrapped[0]}")
        lines += [f"     {more}" for more in wrapped[1:]]
    return "\n".join(lines)


def _time_arg(text: str) -> int:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def time_range(required: bool, start_help: str, end_help: str) -> Tuple[Argument, ...]:
    """--start and --end, declared once for every command that takes a range; range_problem checks them."""
    return ((("--start",), dict(required=required, type=_time_arg, metavar="TIME", help=start_help)),
            (("--end",), dict(required=required, type=_time_arg, metavar="TIME", help=end_help)))


def over_range(work: Callable[[Job, Any, Any], Outcome], nothing_done: str, required: bool,
               start_help: str, end_help: str) -> Callable[[Callable[[Outcome, Config], int]], Handler]:
    """What the commands over --start/--end share, around the handler of their outcome: the arguments
    (time_range), the range checked, work(job, start, end) done, the lock's answer said (nothing_done: what
    the person does then). The decorated function reports the outcome: (outcome, config) -> exit code."""
    def wrap(report: Callable[[Outcome, Config], int]) -> Handler:
        def handler(args: argparse.Namespace, config: Config) -> int:
            problem = range_problem(args)
            if problem:
                _say(problem)
                return EXIT_NEEDS_HUMAN
            outcome = work(_job(config), args.start, args.end)
            if outcome.locked_out:
                _say(f"{LOCKED}; {nothing_done.format(status=invocation.command('status'))}")
                return EXIT_RETRY_LATER
            return report(outcome, config)
        handler.arguments = time_range(required, start_help, end_help)  # type: ignore[attr-defined]  # read by command()
        return handler
    return wrap


def range_problem(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with the --start and --end given, as one line; None when they are fine."""
    if (args.start is None) != (args.end is None):
        return "give both --start and --end, or neither (then every archived row)"
    if args.start is not None and args.start >= args.end:
        return f"--start ({rfc3339(args.start)}) must be before --end ({rfc3339(args.end)})"
    return None


def _progress_printer(stream: TextIO) -> Optional[Callable[..., None]]:
    """Progress on a terminal only: one line, rewritten per chunk. Cron logs get the INFO lines."""
    if not stream.isatty():
        return None

    def show(index: int, total: int, lo: int, hi: int, windows: int, rows: int) -> None:
        stream.write(f"\r  chunk {index}/{total}  {rfc3339(lo)}  {windows} windows  {rows} rows written ")
        if index == total:
            stream.write("\n")
        stream.flush()
    return show


def _say(text: str) -> None:
    print(f"influx-archive: {text}", file=sys.stderr)


def _job(config: Config) -> Job:
    from .job import Job  # imported here so `--help` and config errors stay fast
    return Job(config, progress=_progress_printer(sys.stderr))


def _report_load(outcome: Outcome, config: Config, now: float) -> None:
    if outcome.nothing_to_do:
        log.info("nothing to do: the archive is current")
    else:
        dropped = sum(outcome.dropped.values())
        log.info("%s done: %s .. %s, %d chunk(s), %d row(s) written%s", outcome.command,
                 *map(rfc3339, outcome.span()), outcome.chunks, outcome.rows,
                 f", {dropped} reading(s) outside VALID_RANGES dropped" if dropped else "")
    if outcome.command == "backfill" and not outcome.nothing_to_do and not outcome.windows:
        log.warning("InfluxDB has no %s readings between %s and %s: there was nothing to load (the free plan "
                    "keeps 30 days)", config.measurement, *map(rfc3339, outcome.span()))
    if outcome.newest is None:
        log.warning("nothing is archived yet: InfluxDB has no %s readings in the range loaded so far",
                    config.measurement)
    elif now - outcome.newest > config.stale_after:
        log.warning("no new reading since %s (%s ago): is the oximeter recording? `status` pages after "
                    "STALE_AFTER", rfc3339(outcome.newest), human_duration(now - outcome.newest))


CONFIG_PROBLEM = "settings (.env, the environment) are missing or wrong"
LOCKED = "another run, backfill or rebuild holds this archive's lock"
INTERRUPTED = "another command holding the lock, interrupted, or " + UNEXPECTED


@command("run", "load everything new since the last run (the hourly cron job)",
         """From the watermark (first run: now - INITIAL_LOOKBACK) up to the last complete window,
         re-reading LATE_DATA for late points, in CHUNK-sized transactions. First the source must show
         that the measurement and every field in FIELDS exist: an empty answer then means no readings,
         never a misspelt name, and nothing is skipped. Safe to re-run: windows are upserted, never
         duplicated. A second run while one is active steps aside at once.""",
         "python -m loader run\n  python -m loader --env-file /opt/influx-archive/.env run",
         [(0, "loaded what was new, or nothing was new, or another command held the lock (the next hourly run loads "
              "what is new)"),
          (1, "failed, and the next hourly run catches up: InfluxDB or PostgreSQL unreachable, rate-limited, "
              "a statement PostgreSQL cancelled (a timeout), the clock not synchronised, or " + UNEXPECTED),
          (2, "needs a human: " + CONFIG_PROBLEM + "; token refused; bucket, measurement or a FIELDS name not "
              "found in InfluxDB; a table that does not fit; PostgreSQL's disk full")],
         heartbeat=lambda args, config: config.healthcheck_url.reveal())
def _run(args: argparse.Namespace, config: Config) -> int:
    outcome = _job(config).run()
    if outcome.locked_out:
        _say(f"{LOCKED}; this run did nothing (the next hourly run loads what is new)")
        return EXIT_OK
    now = SystemClock().now()
    _report_load(outcome, config, now)
    _deliver(config, now)
    return EXIT_OK


def _deliver(config: Config, now: float) -> None:
    """Finished nights' reports and messages (REPORT_DIR, NOTIFY_URL): after the archive is whole, never
    failing the run; what failed is recorded for `status` and tried again next hour."""
    from . import morning
    if not morning.wanted(config):
        return
    try:
        morning.deliver(config, now)
    except LoaderError as exc:
        log.error("reports and messages: %s; the next run tries again", exc)
    except Exception:  # noqa: BLE001 - the archive is loaded; this part is logged and tried again
        log.exception("reports and messages failed unexpectedly; the next run tries again")


@command("backfill", "load (or reload) a given time range",
         """Same write path and the same checks as run. The watermark moves only if the range joins
         the archived span. Times are RFC 3339 with an offset; the end is exclusive. Run it again after
         a failure: committed chunks are kept and re-reading them changes nothing.""",
         "python -m loader backfill --start 2026-10-01T00:00:00Z --end 2026-10-08T00:00:00Z",
         [(0, "the range is loaded (every reading InfluxDB has in it)"),
          (1, f"not finished: InfluxDB or PostgreSQL unreachable, {INTERRUPTED}; what was committed is kept: run the "
              "same command again"),
          (2, "needs a human: " + CONFIG_PROBLEM + "; --start not before --end; token refused; bucket, "
              "measurement or a FIELDS name not found; PostgreSQL's disk full")])
@over_range(lambda job, start, end: job.backfill(start, end),
            "nothing was loaded: run this backfill again when it has finished (`{status}` shows it)",
            True, "first instant to load, e.g. 2026-10-01T00:00:00Z",
            "instant to stop at (exclusive), e.g. 2026-10-08T00:00:00Z")
def _backfill(outcome: Outcome, config: Config) -> int:
    _report_load(outcome, config, SystemClock().now())
    return EXIT_OK


@command("rebuild-rollups", "recompute the 1-minute, 1-hour and 1-day rollups and the sessions from the 5-second "
         "table",
         """run and backfill keep the rollups and sessions current themselves, and the first run after a
         change of ROLLUP_BELOW, WINDOW or a SESSION_ setting recomputes them all; this is for rows
         changed behind the loader's back (an adopted table, a restore of part of the archive). Without
         --start and --end it covers every archived row.""",
         "python -m loader rebuild-rollups\n"
         "  python -m loader rebuild-rollups --start 2026-10-01T00:00:00Z --end 2026-11-01T00:00:00Z",
         [(0, "rebuilt, or nothing to rebuild (the archive is empty)"),
          (1, f"not finished: PostgreSQL unreachable, {INTERRUPTED}; run it again"),
          (2, "needs a human: " + CONFIG_PROBLEM + "; --start and --end not both given, or not in order; a "
              "table that does not fit; PostgreSQL's disk full")])
@over_range(lambda job, start, end: job.rebuild_rollups(start, end),
            "nothing was rebuilt: run this again when it has finished",
            False, "first instant (default: the oldest row)", "end, exclusive (default: after the newest)")
def _rebuild_rollups(outcome: Outcome, config: Config) -> int:
    if outcome.nothing_to_do:
        log.info("nothing to rebuild: the archive is empty")
    else:
        log.info("rollups and sessions rebuilt for %s .. %s in %d chunk(s)", *map(rfc3339, outcome.span()),
                 outcome.chunks)
    return EXIT_OK


@command("status", "is the archive healthy? newest data, last hourly run, failures, newest backup",
         """Prints each part and a verdict. The exit code is the rule a monitor pages on: 2 pages, 1
         is worth a look, 0 is healthy. One failed hourly run is a blip (1); FAILED_RUNS_ALERT of them in a
         row, or no new reading for STALE_AFTER (with TAGS: from any device RETIRED_DEVICES does not name),
         pages (2).""",
         "python -m loader status && echo archive is healthy",
         [(EXIT_OK, "healthy: " + status_rules.rules_meaning(EXIT_OK)),
          (EXIT_RETRY_LATER, "worth a look: " + status_rules.rules_meaning(EXIT_RETRY_LATER) + "; or " + UNEXPECTED),
          (EXIT_NEEDS_HUMAN, "page: " + status_rules.rules_meaning(EXIT_NEEDS_HUMAN))])
def _status(args: argparse.Namespace, config: Config) -> int:
    from .status import status
    try:
        result = status(config, SystemClock().now())
    except SinkUnavailable as exc:
        exc.exit_code = status_rules.RULE["unreachable"].exit_code  # a monitor must not stay quiet
        raise
    print("\n".join(result.lines()))
    return result.exit_code


@command("adopt-reference", "adopt a table written by the reference script",
         """Keeps the old table as <PG_TABLE>_reference_backup, creates the archive table with its
         key, and copies each window once, its label moved from window end to window start. Without
         --yes it only counts what it would change. install.sh --adopt-reference calls it.""",
         "python -m loader adopt-reference          # dry run: counts only\n"
         "  python -m loader adopt-reference --yes",
         [(0, "adopted, or (without --yes) counted"),
          (1, "PostgreSQL unreachable, or " + UNEXPECTED + "; nothing is half-done: run it again"),
          (2, "needs a human: " + CONFIG_PROBLEM + "; a table that cannot be adopted")],
         arguments=[(("--yes",), dict(action="store_true", help="do it (without: count what would change)"))])
def _adopt_reference(args: argparse.Namespace, config: Config) -> int:
    from .adopt import adopt_reference
    print("\n".join(adopt_reference(config, apply=args.yes).lines()))
    return EXIT_OK


def _backup_heartbeat(args: argparse.Namespace, config: Config) -> Optional[str]:
    return config.backup_healthcheck_url.reveal()


@command("report", "a night on one page (PDF, or PNG for a phone): traces, desaturations, the night's numbers",
         """Writes each device's last finished night (or the nights that began on --night's evening) as an A4
         page: the SpO2 trace with its desaturations, the artefacts refused and the 90 % and 88 % lines, the
         pulse, and the night's numbers from the sessions table in the dashboard's colour bands (a child's
         with SUBJECT=child), in this machine's local time. --out names the file (.pdf: a page per night;
         .png: one night); without it, night-DATE-HHMM[-DEVICE].pdf here. Needs matplotlib (install.sh
         --reports).""",
         "python -m loader report\n"
         "  python -m loader report --night 2026-12-05 --device uid=a --out night.png",
         [(0, "written"),
          (1, "PostgreSQL unreachable, or " + UNEXPECTED),
          (2, "needs a human: " + CONFIG_PROBLEM + "; no such night; matplotlib missing; the file cannot be "
              "written")],
         arguments=[(("--out",), dict(metavar="FILE", help="the report's file: .pdf or .png")),
                    (("--night",), dict(metavar="DATE", help="the night that began on this date's evening, "
                                                             "e.g. 2026-12-05 (default: the last finished)")),
                    (("--device",), dict(metavar="TAG=VALUE", help="with TAGS: this device only, e.g. uid=a"))])
def _report(args: argparse.Namespace, config: Config) -> int:
    from .report import report
    print("\n".join(report(config, SystemClock().now(), out=args.out, night=args.night,
                           device=args.device).lines()))
    return EXIT_OK


@command("add-tags", "key a one-device archive by TAGS in place, for a second oximeter",
         """With TAGS set (TAGS=uid), gives every archived row the device InfluxDB held for its hour (the
         counts each run keeps), adds the tag columns to the archive table, its readings and 1 Hz
         tables, makes them part of the key, and computes the rollups and sessions again per device: one
         transaction, every row kept, the table's name and watermark too. The next run then loads the other
         device's readings. Without --yes it only counts what it would change.""",
         "python -m loader add-tags          # dry run: rows per device\n"
         "  python -m loader add-tags --yes",
         [(0, "keyed (or already keyed), or (without --yes) counted"),
          (1, "PostgreSQL unreachable, a run holding the archive, or " + UNEXPECTED + "; nothing is half-done: "
              "run it again"),
          (2, "needs a human: " + CONFIG_PROBLEM + "; TAGS empty; rows no count names a device for (give "
              "--device)")],
         arguments=[(("--yes",), dict(action="store_true", help="do it (without: count what would change)")),
                    (("--device",), dict(metavar="TAG=VALUE", help="the device of rows loaded before devices "
                                                                   "were counted, e.g. uid=a"))])
def _add_tags(args: argparse.Namespace, config: Config) -> int:
    from .retag import add_tags
    print("\n".join(add_tags(config, apply=args.yes, device=args.device).lines()))
    return EXIT_OK


@command("backup", "dump the archive database to BACKUP_DIR, rotate old dumps, copy to BACKUP_REMOTE",
         """A consistent, compressed pg_dump (custom format, the server's major version), written
         atomically; refused when BACKUP_DIR is missing, not on a mounted drive, in memory (tmpfs) or
         short of space. Keeps the newest dump of each of BACKUP_KEEP_DAILY days and BACKUP_KEEP_WEEKLY
         weeks. Pings BACKUP_HEALTHCHECK_URL. install.sh runs it nightly.""",
         "python -m loader backup",
         [(0, "the dump is written, rotated and (with BACKUP_REMOTE) copied"),
          (1, "PostgreSQL unreachable; copying to BACKUP_REMOTE failed (the dump is kept); another backup or "
              "verify is using BACKUP_DIR; or " + UNEXPECTED + " (e.g. a failing drive)"),
          (2, "needs a human: BACKUP_DIR unset, missing, not mounted, in memory, not writable or full; no "
              "pg_dump for the server; " + CONFIG_PROBLEM)],
         heartbeat=_backup_heartbeat)
def _backup(args: argparse.Namespace, config: Config) -> int:
    from .backup import backup
    print("\n".join(backup(config, SystemClock()).lines()))
    return EXIT_OK


@command("restore", "restore a dump into a database, or --verify that the newest dump restores",
         """FILE is restored in one transaction into --into DBNAME (created if missing; default:
         PG_URL's database), never over one that holds tables unless --force; row counts follow. A
         damaged file is reported before any database is touched. --verify restores the newest dump in
         BACKUP_DIR (or FILE) into a scratch database, compares its archive tables with the live ones
         (rows older than the dump's watermark less LATE_DATA, which later runs never change), then
         drops it; install.sh runs it weekly.""",
         "python -m loader restore --verify\n"
         "  python -m loader restore /mnt/usb/influx-archive/influx_archive-2026-11-22T031700Z.dump "
         "--into archive_copy",
         [(0, "restored, or (--verify) the dump restores identical to the live archive"),
          (1, "PostgreSQL unreachable; another backup or verify is using BACKUP_DIR; or " + UNEXPECTED),
          (2, "needs a human: a damaged dump or one that differs from the archive; a database in the way; "
              "no CREATEDB; FILE missing; " + CONFIG_PROBLEM)],
         arguments=[(("file",), dict(nargs="?", metavar="FILE",
                                     help="a dump made by backup (--verify: default newest)")),
                    (("--into",), dict(metavar="DBNAME", help="database to restore into (default: PG_URL's)")),
                    (("--force",), dict(action="store_true", help="replace the tables of a database that has some")),
                    (("--verify",), dict(action="store_true",
                                         help="restore into a scratch database, compare with the live archive, "
                                              "drop it"))],
         heartbeat=lambda args, config: _backup_heartbeat(args, config) if args.verify else None)
def _restore(args: argparse.Namespace, config: Config) -> int:
    from .restore import restore, verify
    if args.verify:
        if args.into or args.force:
            _say("--verify restores into its own scratch database; drop --into and --force")
            return EXIT_NEEDS_HUMAN
        result = verify(config, args.file)
        print("\n".join(result.lines()))
        if not result.ok:
            raise BackupDamaged(f"{result.file} does not restore to the live archive (see the table above)",
                                hint="if nothing rewrote old rows since (backfill, rebuild-rollups), the dump is "
                                     f"damaged: make a new one with `{invocation.command('backup')}`")
        return EXIT_OK
    if not args.file:
        _say("restore needs FILE (or --verify)")
        return EXIT_NEEDS_HUMAN
    print("\n".join(restore(config, args.file, into=args.into, force=args.force).lines()))
    return EXIT_OK


@command("check", "test that InfluxDB has the measurement and fields, and PostgreSQL can be written",
         """Asks InfluxDB which fields the measurement has in the last INITIAL_LOOKBACK (the proof run
         makes before loading; InfluxQL: also proves the DBRP mapping or database exists) and checks
         FIELDS against them, then creates the tables and writes a test row in a transaction it rolls
         back. Last, it compares InfluxDB's readings per hour and series over LATE_LOOKBACK with what the
         archive was loaded from, and names the hours the next run will load again.""",
         "python -m loader check",
         [(0, "both sides are ready"),
          (1, UNEXPECTED),
          (2, "a side failed (its line says what to do), or " + CONFIG_PROBLEM)])
def _check(args: argparse.Namespace, config: Config) -> int:
    from .check import check_influx, check_next_run, check_postgres
    now = SystemClock().now()
    results = [check_influx(config, now), check_postgres(config)]
    if all(ok for ok, _ in results):  # the next run's judgement needs both sides; a failure is said once
        results += check_next_run(config, now)
    for ok, message in results:
        print(("ok    " if ok else "FAIL  ") + config_module.redact(message, config.secrets()))
    return EXIT_OK if all(ok for ok, _ in results) else EXIT_NEEDS_HUMAN


def _common_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """--env-file and -v, before or after the command (after it they override what came before)."""
    keep: Dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    parser.add_argument("--env-file", metavar="PATH", **({"default": None} if defaults else keep),
                        help=(f"settings file (this command's: {invocation.settings_file()})" if invocation.installed()
                              else "settings file (default: .env in this directory)")
                        + "; the environment overrides it")
    parser.add_argument("-v", "--verbose", action="store_true", **({} if defaults else keep),
                        help="debug logging, tracebacks on stderr")


def as_typed(text: str) -> str:
    """The CLI's own help as the person types it: `python -m loader` and .env on the hand route, the
    installed command and its settings file through it (loader/invocation.py)."""
    if not invocation.installed():
        return text
    name = invocation.command()
    text = re.sub(r"python -m loader --env-file \S+", name, text).replace("python -m loader", name)
    text = re.sub(r"(?<![\w./])\.env(?![\w.])", invocation.settings_file(), text)
    lines = text.split("\n")  # an example for the hand route with --env-file reads as the one before it
    return "\n".join(line for i, line in enumerate(lines) if i == 0 or line.strip() != lines[i - 1].strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=invocation.command(),
        description="Copy InfluxDB data into PostgreSQL as window means (5-second by default), "
                    "idempotently, so it outlives the bucket's retention.",
        epilog=as_typed("examples:\n  python -m loader check\n  python -m loader run\n  python -m loader status\n\n"
                        "Each command's --help lists its exit codes: 0 done, 1 try again later (the hourly run "
                        "does),\n2 needs a human. Settings come from .env and the environment; see .env.example."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common_options(parser, defaults=True)
    parser.add_argument("--version", action="version", version=f"influx-archive {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS.values():
        child = sub.add_parser(cmd.name, help=cmd.summary,
                               description=cmd.summary + ".\n\n" + textwrap.fill(as_typed(cmd.detail), 78),
                               epilog=as_typed(f"example:\n  {cmd.example}\n\n{exit_code_help(cmd.exit_codes)}"),
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        _common_options(child, defaults=False)
        for flags, options in cmd.arguments:
            child.add_argument(*flags, **options)
    return parser


def _fail(line: str, verbose: bool, logged_to_stderr: bool = False) -> None:
    """The one line on stderr; in the log an ERROR with the traceback (which is all, when stderr is the log)."""
    if not logged_to_stderr:
        print(line, file=sys.stderr)
    log.error(line, exc_info=True, extra={"log_file_only": True})
    if verbose:
        traceback.print_exc()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line; whatever happens, an exit code (argparse's own exit for --help and usage errors)."""
    with readers_may_leave():
        return _main(argv)


def _main(argv: Optional[Sequence[str]]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_NEEDS_HUMAN
    cmd = COMMANDS[args.command]
    env_file = args.env_file or ".env"
    setup_logging(None, args.verbose)
    config, stderr_is_log = None, False
    heartbeat = Heartbeat(None)
    try:
        config = config_module.load(env_file, file_required=args.env_file is not None)
        stderr_is_log = setup_logging(config, args.verbose)
        for warning in config.warnings:
            log.warning(warning)
        heartbeat = Heartbeat(cmd.heartbeat(args, config) if cmd.heartbeat else None)
        heartbeat.start()
        code = cmd.handler(args, config)
        line = f"influx-archive {args.command}: " + ("done" if code == EXIT_OK else f"exit {code}")
    except ConfigError as exc:
        print(f"influx-archive: configuration problems in {env_file} or the environment:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return exc.exit_code
    except LoaderError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        code, line = exc.exit_code, "influx-archive: " + _redact(str(exc) + hint, config)
        _fail(line, args.verbose, stderr_is_log)
    except KeyboardInterrupt:
        code, line = EXIT_RETRY_LATER, "influx-archive: interrupted; what was committed is kept, nothing half-done"
        _fail(line, args.verbose, stderr_is_log)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, logged, exit 1, /fail
        where = f"the traceback is in {config.log_file}" if config and config.log_file else "-v shows the traceback"
        code = EXIT_RETRY_LATER
        line = _redact(f"influx-archive: unexpected {type(exc).__name__}: {exc} ({where}; if it is not about "
                       f"the disk or the network, please report it)", config)
        _fail(line, args.verbose, stderr_is_log)
    heartbeat.finish(code, line)
    return code


def _redact(text: str, config: Optional[Config]) -> str:
    return config_module.redact(text, config.secrets() if config else [])
