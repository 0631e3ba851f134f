"""Command line: parse arguments, call the library, turn its typed errors into one line and an exit code.

Exit codes: 0 done or nothing to do; 1 failed, the next run will catch up; 2 needs a human.
"""

import argparse
import logging
import sys
import textwrap

from . import __version__
from . import config as config_module
from .clock import SystemClock
from .errors import EXIT_NEEDS_HUMAN, EXIT_OK, EXIT_RETRY_LATER, BackupDamaged, ConfigError, LoaderError
from .heartbeat import Heartbeat
from .windows import parse_time, rfc3339

log = logging.getLogger("loader")

EXIT_CODES = """exit codes:
  0  done, or nothing to do (also: another run is active)
  1  failed, but the next run will catch up (InfluxDB or PostgreSQL unreachable, rate-limited)
  2  needs a human (config, token, bucket, table)"""

COMMANDS = {
    "run": ("load everything new since the last run (the hourly cron job)",
            """From the watermark (first run: now - INITIAL_LOOKBACK) up to the last complete window,
            re-reading LATE_DATA for late points, in CHUNK-sized transactions. Safe to re-run: windows
            are upserted, never duplicated. A second run while one is active exits 0 at once.""",
            "python -m loader run\n  python -m loader --env-file /etc/influx-archive/.env run"),
    "backfill": ("load (or reload) a given time range",
                 """Same write path as run. The watermark moves only if the range joins the archived
                 span. Times are RFC 3339 with an offset; the end is exclusive.""",
                 "python -m loader backfill --start 2026-10-01T00:00:00Z --end 2026-10-08T00:00:00Z"),
    "rebuild-rollups": ("recompute the 1-minute, 1-hour and 1-day rollups from the 5-second table",
                        """run and backfill keep the rollups current themselves; this is for an archive made
                        before rollups existed, an adopted table, or a change of ROLLUP_BELOW. Without --start
                        and --end it covers every archived row.""",
                        "python -m loader rebuild-rollups\n"
                        "  python -m loader rebuild-rollups --start 2026-10-01T00:00:00Z --end 2026-11-01T00:00:00Z"),
    "status": ("show watermark, lag, last run, row count and the newest backup",
               """Exit 0 when fresh, 1 when the newest window is older than STALE_AFTER or the newest dump in
               BACKUP_DIR older than BACKUP_MAX_AGE (or none yet), 2 when never run, the last run failed,
               or BACKUP_DIR is missing or not mounted.""",
               "python -m loader status && echo archive is current"),
    "adopt-reference": ("adopt a table written by the reference script",
                        """Keeps the old table as <PG_TABLE>_reference_backup, creates the archive table with its
                        key, and copies each window once, its label moved from window end to window start. Without
                        --yes it only counts what it would change. install.sh --adopt-reference calls it.""",
                        "python -m loader adopt-reference          # dry run: counts only\n"
                        "  python -m loader adopt-reference --yes"),
    "backup": ("dump the archive database to BACKUP_DIR, rotate old dumps, copy to BACKUP_REMOTE",
               """A consistent, compressed pg_dump (custom format, the server's major version), written
               atomically; refused when BACKUP_DIR is missing, not on a mounted drive, or short of space.
               Keeps the newest dump of each of BACKUP_KEEP_DAILY days and BACKUP_KEEP_WEEKLY weeks. Pings
               BACKUP_HEALTHCHECK_URL. install.sh runs it nightly.""",
               "python -m loader backup"),
    "restore": ("restore a dump into a database, or --verify that the newest dump restores",
                """FILE is restored in one transaction into --into DBNAME (created if missing; default:
                PG_URL's database), never over one that holds tables unless --force; row counts follow.
                A damaged file is reported before any database is touched. --verify restores the newest
                dump in BACKUP_DIR (or FILE) into a scratch database, compares its archive tables with the
                live ones (rows older than the dump's watermark less LATE_DATA, which later runs never
                change), then drops it; install.sh runs it weekly.""",
                "python -m loader restore --verify\n"
                "  python -m loader restore /mnt/usb/influx-archive/influx_archive-2026-11-22T031700Z.dump "
                "--into archive_copy"),
    "check": ("test that InfluxDB can be read and PostgreSQL written",
              """Runs a tiny query (InfluxQL: also proves the DBRP mapping exists), then creates the tables
              and writes a test row in a transaction it rolls back.""",
              "python -m loader check"),
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m loader",
        description="Copy InfluxDB data into PostgreSQL as window means (5-second by default), "
                    "idempotently, so it outlives the bucket's retention.",
        epilog="examples:\n  python -m loader check\n  python -m loader run\n  python -m loader status\n\n"
               + EXIT_CODES + "\n\nSettings come from .env and the environment; see .env.example.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-file", default=".env", metavar="PATH",
                        help="settings file (default: .env); the environment overrides it")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, tracebacks on stderr")
    parser.add_argument("--version", action="version", version=f"influx-archive {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (summary, detail, example) in COMMANDS.items():
        cmd = sub.add_parser(name, help=summary, description=summary + ".\n\n" + textwrap.fill(" ".join(detail.split()), 78), epilog=f"example:\n  {example}\n\n{EXIT_CODES}",
            formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == "adopt-reference":
            cmd.add_argument("--yes", action="store_true", help="do it (without: count what would change)")
        if name == "rebuild-rollups":
            cmd.add_argument("--start", type=_time_arg, metavar="TIME", help="first instant (default: the oldest row)")
            cmd.add_argument("--end", type=_time_arg, metavar="TIME", help="end, exclusive (default: after the newest)")
        if name == "restore":
            cmd.add_argument("file", nargs="?", metavar="FILE", help="a dump made by backup (--verify: default newest)")
            cmd.add_argument("--into", metavar="DBNAME", help="database to restore into (default: PG_URL's)")
            cmd.add_argument("--force", action="store_true", help="replace the tables of a database that has some")
            cmd.add_argument("--verify", action="store_true",
                             help="restore into a scratch database, compare with the live archive, drop it")
        if name == "backfill":
            cmd.add_argument("--start", required=True, type=_time_arg, metavar="TIME",
                             help="first instant to load, e.g. 2026-10-01T00:00:00Z")
            cmd.add_argument("--end", required=True, type=_time_arg, metavar="TIME",
                             help="instant to stop at (exclusive), e.g. 2026-10-08T00:00:00Z")
    return parser


def _time_arg(text):
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _setup_logging(config, verbose):
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.DEBUG)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    console.setFormatter(fmt)
    root.addHandler(console)
    if config is not None and config.log_file:
        handler = logging.FileHandler(config.log_file, encoding="utf-8")
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(fmt)
        root.addHandler(handler)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def _progress_printer(stream):
    """Progress on a terminal only: one line, rewritten per chunk. Cron logs get the INFO lines."""
    if not stream.isatty():
        return None

    def show(index, total, lo, hi, windows, rows):
        stream.write(f"\r  chunk {index}/{total}  {rfc3339(lo)}  {windows} windows  {rows} rows written ")
        if index == total:
            stream.write("\n")
        stream.flush()
    return show


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_NEEDS_HUMAN
    _setup_logging(None, args.verbose)
    config = None
    heartbeat = Heartbeat(None)
    try:
        config = config_module.load(args.env_file)
        _setup_logging(config, args.verbose)
        for warning in config.warnings:
            log.warning(warning)
        heartbeat = _heartbeat(args, config)
        heartbeat.start()
        code = _dispatch(args, config)
        line = f"influx-archive {args.command}: " + ("done" if code == EXIT_OK else f"exit {code}")
    except ConfigError as exc:
        print(f"influx-archive: configuration problems in {args.env_file} or the environment:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return exc.exit_code
    except LoaderError as exc:
        secrets = config.secrets() if config else []
        log.debug("traceback", exc_info=True)
        hint = f" ({exc.hint})" if exc.hint else ""
        code, line = exc.exit_code, f"influx-archive: {config_module.redact(str(exc) + hint, secrets)}"
        print(line, file=sys.stderr)
    except KeyboardInterrupt:
        code, line = EXIT_RETRY_LATER, "influx-archive: interrupted; what was committed is kept, nothing half-done"
        print(line, file=sys.stderr)
    heartbeat.finish(code, line)
    return code


def _heartbeat(args, config):
    """run pings HEALTHCHECK_URL; backup and restore --verify ping BACKUP_HEALTHCHECK_URL."""
    if args.command == "run":
        return Heartbeat(config.healthcheck_url.reveal())
    if args.command == "backup" or (args.command == "restore" and args.verify):
        return Heartbeat(config.backup_healthcheck_url.reveal())
    return Heartbeat(None)


def _dispatch(args, config):
    from .job import Job  # imported here so `--help` and config errors stay fast

    if args.command in ("run", "backfill"):
        job = Job(config, progress=_progress_printer(sys.stderr))
        if args.command == "run":
            outcome = job.run()
        else:
            if args.start >= args.end:
                print("influx-archive: --start must be before --end", file=sys.stderr)
                return EXIT_NEEDS_HUMAN
            outcome = job.backfill(args.start, args.end)
        if outcome.locked_out:
            print("influx-archive: another run is active for this archive; nothing to do", file=sys.stderr)
        elif outcome.nothing_to_do:
            log.info("nothing to do: the archive is current")
        else:
            dropped = sum(outcome.dropped.values())
            log.info("%s done: %s .. %s, %d chunk(s), %d row(s) written%s", outcome.command,
                     rfc3339(outcome.start), rfc3339(outcome.end), outcome.chunks, outcome.rows,
                     f", {dropped} reading(s) outside VALID_RANGES dropped" if dropped else "")
        return EXIT_OK
    if args.command == "rebuild-rollups":
        if (args.start is None) != (args.end is None):
            print("influx-archive: give both --start and --end, or neither", file=sys.stderr)
            return EXIT_NEEDS_HUMAN
        outcome = Job(config, progress=_progress_printer(sys.stderr)).rebuild_rollups(args.start, args.end)
        if outcome.locked_out:
            print("influx-archive: another run is active for this archive; try again later", file=sys.stderr)
        elif outcome.nothing_to_do:
            log.info("nothing to rebuild: the archive is empty")
        else:
            log.info("rollups rebuilt for %s .. %s in %d chunk(s)", rfc3339(outcome.start), rfc3339(outcome.end),
                     outcome.chunks)
        return EXIT_OK
    if args.command == "status":
        from .status import status
        result = status(config, SystemClock().now())
        print("\n".join(result.lines()))
        return result.exit_code
    if args.command == "adopt-reference":
        from .adopt import adopt_reference
        print("\n".join(adopt_reference(config, apply=args.yes).lines()))
        return EXIT_OK
    if args.command == "backup":
        from .backup import backup
        print("\n".join(backup(config, SystemClock()).lines()))
        return EXIT_OK
    if args.command == "restore":
        return _restore(args, config)
    if args.command == "check":
        from .check import check_influx, check_postgres
        worst = EXIT_OK
        for ok, message in (check_influx(config), check_postgres(config)):
            print(("ok    " if ok else "FAIL  ") + config_module.redact(message, config.secrets()))
            worst = worst if ok else EXIT_NEEDS_HUMAN
        return worst
    raise AssertionError(args.command)


def _restore(args, config):
    from .restore import restore, verify
    if args.verify:
        if args.into or args.force:
            print("influx-archive: --verify restores into its own scratch database; drop --into and --force",
                  file=sys.stderr)
            return EXIT_NEEDS_HUMAN
        result = verify(config, args.file)
        print("\n".join(result.lines()))
        if not result.ok:
            raise BackupDamaged(f"{result.file} does not restore to the live archive (see the table above)",
                                hint="if nothing rewrote old rows since (backfill, rebuild-rollups), the dump is "
                                     "damaged: make a new one with `python -m loader backup`")
        return EXIT_OK
    if not args.file:
        print("influx-archive: restore needs FILE (or --verify)", file=sys.stderr)
        return EXIT_NEEDS_HUMAN
    print("\n".join(restore(config, args.file, into=args.into, force=args.force).lines()))
    return EXIT_OK
