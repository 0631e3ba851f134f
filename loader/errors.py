"""Typed errors raised by the library. Only loader.cli turns them into a line and an exit code.

Exit codes (documented in README and `python -m loader --help`):
  0  done, or nothing to do
  1  failed, but the next run will catch up (source or database unreachable, rate-limited, ...)
  2  needs a human (config, credentials, bucket or table that cannot be used)
"""

from typing import Iterable, Optional

EXIT_OK = 0
EXIT_RETRY_LATER = 1
EXIT_NEEDS_HUMAN = 2


class LoaderError(Exception):
    """Base of every error the CLI knows how to report in one line."""

    exit_code = EXIT_RETRY_LATER
    hint = ""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint


class ConfigError(LoaderError):
    """One or more settings are missing or invalid; `problems` lists every one of them."""

    exit_code = EXIT_NEEDS_HUMAN

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class SourceUnavailable(LoaderError):
    """InfluxDB could not be reached or answered with a temporary failure (retry later)."""

    def __init__(self, message: str, retry_after: Optional[float] = None, hint: str = "", retry: bool = True) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after
        self.retry = retry  # False: not worth retrying within this run (the next run still tries)


class SourceRejected(LoaderError):
    """InfluxDB refused the request in a way retrying will not fix (token, bucket, DBRP mapping)."""

    exit_code = EXIT_NEEDS_HUMAN


class SourceQueryError(LoaderError):
    """The query failed inside InfluxDB (e.g. an error table in a 200 response, a malformed body)."""


class SinkUnavailable(LoaderError):
    """PostgreSQL could not be reached or dropped the connection (retry later)."""


class SinkRejected(LoaderError):
    """PostgreSQL refused what we asked (permissions, a table whose shape does not fit)."""

    exit_code = EXIT_NEEDS_HUMAN


class ClockError(LoaderError):
    """The system clock cannot be trusted right now; nothing is written until it can."""


class BackupError(LoaderError):
    """A backup or restore cannot go ahead as asked (no BACKUP_DIR, drive not mounted, disk full,
    no matching pg_dump, a live database in the way); retrying will not fix it."""

    exit_code = EXIT_NEEDS_HUMAN


class BackupDamaged(BackupError):
    """A dump file cannot be read back in full (truncated, corrupted, not a pg_dump archive)."""


class RemoteCopyFailed(LoaderError):
    """The dump was written, but copying it to BACKUP_REMOTE failed (retried by the next backup)."""
