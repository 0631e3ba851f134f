"""Heartbeat pings for a dead-man's switch (HEALTHCHECK_URL, BACKUP_HEALTHCHECK_URL).

The convention of healthchecks.io and its clones: GET or POST URL/start when a job begins, URL when
it succeeds, URL/fail when it fails; a POST body is kept as the ping's log. The service alerts when a
success does not arrive in time, so a Pi that died, lost its network or whose cron stopped is noticed.

A ping that fails is logged and otherwise ignored: the archive matters more than its monitor. The URL
is a capability (whoever knows it can report for the check), so only its host ever reaches the log.
"""

import logging
import urllib.parse
from typing import Optional

log = logging.getLogger(__name__)

BODY_LIMIT = 10_000  # bytes; healthchecks.io keeps up to 100 kB of a ping body


class Heartbeat:
    def __init__(self, url: Optional[str], timeout: float = 10, attempts: int = 2) -> None:
        self.url = url or ""
        self.timeout = timeout
        self.attempts = attempts

    def start(self) -> None:
        self._ping("/start", "")

    def finish(self, exit_code: int, text: str = "") -> None:
        """Success for exit code 0, failure otherwise; text (already free of secrets) is the ping body."""
        self._ping("" if exit_code == 0 else "/fail", text)

    def _endpoint(self, suffix: str) -> str:
        parts = urllib.parse.urlsplit(self.url)
        return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix if suffix else parts.path))

    def _ping(self, suffix: str, text: str) -> None:
        if not self.url:
            return
        import urllib.error  # only with a URL set: urllib.request is 20 ms of every command's start-up
        import urllib.request
        host = urllib.parse.urlsplit(self.url).netloc.rsplit("@", 1)[-1]
        body = text.encode("utf-8", "replace")[:BODY_LIMIT]
        request = urllib.request.Request(self._endpoint(suffix), data=body, method="POST",
                                         headers={"Content-Type": "text/plain; charset=utf-8",
                                                  "User-Agent": "influx-archive"})
        problem = None
        for _ in range(self.attempts):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    answer.read()
                return
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                problem = type(getattr(exc, "reason", exc)).__name__
        log.warning("heartbeat ping%s to %s failed (%s); the job itself is not affected", suffix, host, problem)
