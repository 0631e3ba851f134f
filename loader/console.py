"""Where a command's words go: stderr and LOG_FILE (secrets scrubbed; cron's log written once), and a reader
that leaves early or a file that fills up (the command still ends with its own exit code)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, TextIO

from .errors import ConfigError
from .redaction import redact

if TYPE_CHECKING:
    from .config import Config


class _Redacting(logging.Formatter):
    """Scrubs every secret from what it formats, tracebacks included."""

    def __init__(self, secrets: List[str]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


def setup_logging(config: Optional[Config], verbose: bool) -> bool:
    """Logging to stderr and LOG_FILE. When stderr is LOG_FILE itself (cron's `>> loader.log 2>&1` with
    LOG_FILE naming that file, as install.sh sets them), the file alone is written, so no line is there
    twice; returns whether that is so."""
    root = logging.getLogger()
    root.handlers.clear()
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    root.setLevel(logging.DEBUG)
    secrets = config.secrets() if config else []
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    console.setFormatter(_Redacting(secrets))
    console.addFilter(lambda record: not getattr(record, "log_file_only", False))  # printed as one line already
    root.addHandler(console)
    if config is not None and config.log_file:
        try:
            handler = _LogFile(config.log_file, encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"LOG_FILE {config.log_file}: {exc.strerror}; fix its directory or permissions, "
                               f"or leave LOG_FILE empty"]) from None
        handler.setLevel(console.level)  # an hourly log a person reads: the queries only with -v
        handler.setFormatter(_Redacting(secrets))
        root.addHandler(handler)
        if _same_file(handler.stream, sys.stderr):
            root.removeHandler(console)
            return True
    return False


def _same_file(a: Any, b: Any) -> bool:
    """Whether two streams write to one file (either may be None or have no file)."""
    try:
        one, other = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (OSError, ValueError, AttributeError):  # a stream without a file (captured output)
        return False
    return (one.st_dev, one.st_ino) == (other.st_dev, other.st_ino)


class _LogFile(logging.FileHandler):
    """LOG_FILE. One that cannot be written mid-run (a full disk, a failing card) is said once on stderr and
    left alone: the command's own outcome and exit code stand, with no `--- Logging error ---` tracebacks."""

    said = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.said:
            self.said = True
            problem = sys.exc_info()[1]
            why = getattr(problem, "strerror", None) or str(problem)
            print(f"influx-archive: LOG_FILE {self.baseFilename} cannot be written ({why}); the rest of this "
                  f"command's log goes to stderr only (free space there, or set LOG_FILE elsewhere)", file=sys.stderr)


class _Reader:
    """stdout or stderr for a reader that may leave early (`status | head`, `check | grep -q ok`) or a
    file that fills up (cron's `>> loader.log` on a full disk): from then on the rest goes to /dev/null and
    the command goes on to its own exit code, with no traceback and no exit 120 from the interpreter's
    last flush."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._gone = False

    def _closed(self) -> None:
        self._gone = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())  # the interpreter's own flush at exit goes there too
            os.close(devnull)

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return self._stream.write(text)
            except OSError:  # the reader left (EPIPE), or the file it is redirected to is full (ENOSPC)
                self._closed()
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except OSError:
                self._closed()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def readers_may_leave() -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Reader(sys.stdout), _Reader(sys.stderr)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved
