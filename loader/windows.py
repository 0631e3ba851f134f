"""Time arithmetic: durations, RFC 3339 times, epoch-aligned windows and chunks.

All times are whole seconds since the Unix epoch (UTC). A window is the half-open interval
[start, start + width); InfluxQL's GROUP BY time() and Flux's window() both align windows to the
epoch, so a window start is always a multiple of the width.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, List, Optional, Tuple

from .errors import ClockError

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
HOUR = 3600  # InfluxDB counts readings per hour and series; the archive keeps what it loaded per hour
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(text: str) -> int:
    """'5s', '90m', '1h', '30d', '2w' -> seconds. Raises ValueError with a readable message."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 5s, 15m, 1h or 30d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: int) -> str:
    """The shortest exact form: 86400 -> '1d', 5 -> '5s', 5400 -> '90m'."""
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def parse_time(text: str) -> int:
    """An RFC 3339 time ('2026-10-01T00:00:00Z', '2026-10-01T02:00:00+02:00') -> epoch seconds.

    A time without an offset is refused rather than guessed: the archive is in UTC. The advice in the
    refusal is itself a time this function accepts.
    """
    raw = str(text).strip()
    date_only = re.fullmatch(r"(\d{4}-\d\d-\d\d)[Zz]?", raw)
    if date_only:
        day = date_only.group(1)
        raise ValueError(f"{text!r} is a date; give a time with its UTC offset, e.g. {day}T00:00:00Z "
                         f"(midnight UTC) or {day}T00:00:00+01:00")
    try:
        parsed = datetime.fromisoformat(re.sub(r"[Zz]$", "+00:00", raw))
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time such as 2026-10-01T00:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; write it as e.g. {raw}Z (UTC) or {raw}+01:00")
    return int(parsed.timestamp() // 1)


def rfc3339(epoch_seconds: float) -> str:
    """Epoch seconds -> '2026-10-01T00:00:00Z' (the form Flux literals and InfluxQL accept)."""
    return datetime.fromtimestamp(epoch_seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def floor_to(epoch_seconds: float, width: int) -> int:
    """Start of the width-aligned window that contains epoch_seconds."""
    return int(epoch_seconds) - int(epoch_seconds) % width


def ceil_to(epoch_seconds: float, width: int) -> int:
    return -floor_to(-int(epoch_seconds), width)


def whole_hours(start: int, end: int) -> Tuple[int, int]:
    """[first, last) of the whole hours inside [start, end) (first >= last when there are none)."""
    return ceil_to(start, HOUR), floor_to(end, HOUR)


def chunks(start: int, end: int, chunk_seconds: int) -> List[Tuple[int, int]]:
    """Split [start, end) into consecutive pieces whose inner boundaries are multiples of chunk_seconds.

    Aligned boundaries make re-runs and backfills cut the same chunks, whatever range they cover.
    """
    if start >= end:
        return []
    pieces = []
    lo = start
    while lo < end:
        hi = min(floor_to(lo, chunk_seconds) + chunk_seconds, end)
        pieces.append((lo, hi))
        lo = hi
    return pieces


def plan_run(config: Config, watermark: Optional[int], now: float) -> Tuple[int, int]:
    """The range the cron job loads: from the watermark less LATE_DATA (first run: now less
    INITIAL_LOOKBACK), back to the start of its hour, up to the end of the last complete window.
    Starting on the hour, every hour is read whole by some run, so the readings InfluxDB held in it
    are counted and kept (late.py compares them later)."""
    end = floor_to(now, config.window)
    if watermark is None:
        start = now - config.initial_lookback
    elif now < watermark:
        raise ClockError(f"the system clock ({rfc3339(int(now))}) is earlier than the watermark "
                         f"({rfc3339(watermark)}); not loading until the clock is right",
                         hint="check `timedatectl`; a Pi without a real-time clock needs NTP after boot")
    else:
        start = min(watermark - config.late_data, end)
    return floor_to(floor_to(start, HOUR), config.window), end


def plan_backfill(config: Config, start: int, end: int, now: float) -> Tuple[int, int]:
    """Align a requested range to windows and stop it at the last complete window."""
    last_complete = floor_to(now, config.window)
    lo = floor_to(start, config.window)
    hi = min(floor_to(end, config.window), last_complete)
    if end > last_complete:
        log.info("backfill stops at %s, the end of the last complete window", rfc3339(last_complete))
    return lo, max(lo, hi)
