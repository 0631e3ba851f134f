"""What a source hands the sink for one chunk: blocks of CSV lines, as the source wrote them."""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence

from ..metrics import LOWEST, READING_COUNTS
from ..windows import parse_time

if TYPE_CHECKING:
    from ..config import Config

# What the sources ask per window of the SpO2 field's readings: (column, InfluxDB aggregate, comparison, bound):
# the counts of metrics.READING_COUNTS and the lowest reading
READINGS = tuple((column, "count", compare, bound) for column, compare, bound in READING_COUNTS) + (
    (LOWEST, "min", None, None),)


@dataclass
class Block:
    """CSV lines sharing one column layout, to be COPYed as they are.

    columns names the CSV's columns in order, each a column of the archive: "time", a key tag or a
    field. Values are as the source wrote them: RFC 3339 times, numbers, '' for none; PostgreSQL
    parses them.
    """

    columns: list
    text: str
    rows: int


@dataclass
class Batch:
    """Window means for one chunk: blocks of CSV plus what the source counted on the way."""

    tags: tuple
    start: int = 0  # the chunk [start, end), epoch seconds
    end: int = 0
    fields: list = field(default_factory=list)  # every field any block carries
    blocks: list = field(default_factory=list)
    dropped: dict = field(default_factory=dict)  # field -> readings outside VALID_RANGES
    refused_seen: dict = field(default_factory=dict)  # field -> (lowest, highest) of those readings
    skipped: dict = field(default_factory=dict)  # field -> readings InfluxDB holds as text or booleans
    # (hour, series, field) -> readings InfluxDB held in that hour of the chunk (part hours at its ends
    # labelled as the source's count labels them), counted before the means were asked
    counts: dict = field(default_factory=dict)
    readings: list = field(default_factory=list)  # Blocks of READINGS: time, key tags, one column
    readings_field: Optional[str] = None  # the field the readings are of (SESSION_SPO2)
    # (key tag values in TAGS' order, field) -> {hour start: bytearray(3600)}: each second's mean of the session
    # fields' readings (SESSION_SPO2, SESSION_PULSE) within VALID_RANGES, put_seconds' bytes; the night's 1 Hz
    # readings (seconds.py)
    seconds: dict = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(b.rows for b in self.blocks)


SECONDS_RESULT = "seconds"  # what the sources name the session fields' 1-second means
HOUR_S = 3600
NO_READING, TOP_READING = 255, 254  # a second without a reading; the highest value kept (a pulse above: 254)
BLANK_HOUR = bytes([NO_READING]) * HOUR_S


class _Whole(dict):
    """A reading's text as InfluxDB wrote it ("96", "95.5", "", None) -> its byte: whole units, half up (an
    oximeter sends whole percent and whole bpm: the mean of two readings in one second is rounded), 0 to
    TOP_READING; no reading for none, or for a value that is not a number (VALID_RANGES=none keeps NaN and
    infinities). A dict, so a night's few distinct texts are each converted once."""

    def __missing__(self, cell: Optional[str]) -> int:
        value = NO_READING
        if cell not in ("", None):
            number = float(cell)
            if math.isfinite(number):
                value = min(TOP_READING, max(0, int(number + 0.5)))
        self[cell] = value
        return value


_WHOLE = _Whole()


def put_seconds(hours: Dict[int, bytearray], first: int, cells: Sequence[Optional[str]]) -> None:
    """Consecutive seconds from `first` (their readings' texts, as _Whole reads them) into {hour start:
    bytearray(3600)}. Where an hour already holds readings (a field InfluxDB keeps as integers in one shard
    and floats in another comes as two tables), a second without one keeps what is there."""
    if len(_WHOLE) > 4096:  # means of several readings a second can each be another text
        _WHOLE.clear()
    readings = bytes(map(_WHOLE.__getitem__, cells))
    at, t, n = 0, first, len(readings)
    while at < n:
        hour = t - t % HOUR_S
        take = min(n - at, hour + HOUR_S - t)
        part = readings[at:at + take]
        row = hours.get(hour)
        if row is None:
            if part.count(NO_READING) < take:  # an hour without a reading is not kept
                row = hours[hour] = bytearray(BLANK_HOUR)
                row[t - hour:t - hour + take] = part
        else:
            for k, value in enumerate(part):
                if value != NO_READING:
                    row[t - hour + k] = value
        at += take
        t += take


def put_times(hours: Dict[int, bytearray], times: Sequence[str], cells: Sequence[Optional[str]]) -> None:
    """Readings at ascending, distinct 1-second times (RFC 3339 texts, as InfluxDB labels 1-second windows)
    into hour rows: each run of consecutive seconds is found by a binary search (its times are exactly its
    length apart), so a night's few gaps cost a few parsed times, not one per reading."""
    def at(i: int) -> int:
        found = second_of(times[i])
        return parse_time(times[i]) if found is None else found

    first, n = 0, len(times)
    while first < n:
        start = at(first)
        lo, hi = first, n - 1
        if at(hi) - start == hi - first:
            lo = hi
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if at(mid) - start == mid - first:
                lo = mid
            else:
                hi = mid - 1
        put_seconds(hours, start, cells[first:lo + 1])
        first = lo + 1


def session_fields(config: Config, fields: Sequence[str]) -> List[str]:
    """The fields whose 1 Hz readings the sessions read, of those a chunk reads (`fields`; empty: every field):
    SESSION_SPO2 first, then SESSION_PULSE; none without SESSION_SPO2 among them (a pulse alone makes no
    session)."""
    def read(name: str) -> bool:
        return bool(name) and (not fields or name in fields)
    if not read(config.session_spo2):
        return []
    return [config.session_spo2] + ([config.session_pulse] if read(config.session_pulse) else [])


_DAYS: Dict[str, int] = {}  # "2026-12-06" -> its epoch, for second_of


def second_of(text: str) -> Optional[int]:
    """Epoch seconds of an RFC 3339 time InfluxDB writes for a 1-second window, "2026-12-06T04:33:01Z",
    read without datetime; None for any other form."""
    if len(text) != 20 or text[10] != "T" or text[19] != "Z":
        return None
    day = _DAYS.get(text[:10])
    if day is None:
        day = _DAYS[text[:10]] = calendar.timegm((int(text[:4]), int(text[5:7]), int(text[8:10]), 0, 0, 0))
    return day + int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19])


def series_key(tags: Mapping[str, Optional[str]]) -> str:
    """A series named by its tags, as the counts table keeps it: 'uid=a,zone=b' ('' without tags)."""
    return ",".join(f"{k}={v}" for k, v in sorted(tags.items()) if v not in (None, ""))


def series_tags(key: str) -> Dict[str, str]:
    """series_key's tags back: 'uid=a,zone=b' -> {'uid': 'a', 'zone': 'b'} ({} for '')."""
    return dict(pair.split("=", 1) for pair in key.split(",") if "=" in pair)
