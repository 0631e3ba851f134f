"""Late data: readings that reach InfluxDB after the hour they belong to was loaded.

A phone-synced oximeter uploads a night hours after it ends, a sensor buffers through a Wi-Fi
outage for days, a second device appears in hours already archived. Re-reading LATE_DATA catches
only the last hour or so; this module catches the rest while InfluxDB still has it, without
re-reading its whole retention every hour.

Every chunk the loader reads also keeps, per whole hour, series and field, how many readings
InfluxDB held (counted by InfluxDB before the means were asked, so the rows hold at least those:
state's influx_archive_counts). Every run then asks InfluxDB for the same counts over LATE_LOOKBACK
(a count per hour and series that InfluxDB computes from storage: a few hundred kB for 30 days of
one device) and compares: an hour where InfluxDB holds more readings of any series or field than
the archive's rows were made from is "behind", and is read again whole. Its windows get the means
of all their readings (the upsert replaces them), and the rollups and sessions follow in the same
transaction, as for any written range. An hour where InfluxDB holds fewer (retention, a delete) is
left as archived: the archive outlives InfluxDB on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import SourceRejected
from .humanize import human_duration
from .invocation import command, settings_file
from .sources.batch import series_tags
from .windows import HOUR, ceil_to, chunks, floor_to, rfc3339, whole_hours

if TYPE_CHECKING:
    from .pg import Cursor
    from .sink import ArchiveTable
    from .state import State

Counts = Dict[Tuple[int, str, str], int]  # {(hour start, series, field): readings}

# one count request covers at most this span: a week of one device is ~350 rows of answer, and
# InfluxDB Cloud ends a query after 90 s
COUNT_SPAN = 7 * 86400


@dataclass(frozen=True)
class Behind:
    """An hour, series and field for which InfluxDB holds more readings than the archive was made from."""

    hour: int
    series: str
    field: str
    in_influx: int
    loaded: int  # 0: the archive never read any of them

    @property
    def missing(self) -> int:
        return self.in_influx - self.loaded


def whole_hours_of(counts: Counts, lo: int, hi: int) -> Counts:
    """The counts of the whole hours inside [lo, hi): what the archive may keep as read (a part hour
    at either end of a chunk is labelled by its hour's start or by the cut; neither is whole)."""
    first, last = whole_hours(lo, hi)
    return {k: n for k, n in counts.items() if k[0] % HOUR == 0 and first <= k[0] < last}


def compare(influx: Counts, archived: Counts) -> List[Behind]:
    """The Behind entries, oldest first, from {(hour, series, field): readings} as InfluxDB counts them
    now and as the archive keeps them."""
    found = [Behind(h, s, f, n, archived.get((h, s, f), 0)) for (h, s, f), n in influx.items()
             if n > archived.get((h, s, f), 0)]
    return sorted(found, key=lambda b: (b.hour, b.series, b.field))


def span(cur: Cursor, state: State, table: ArchiveTable, now: float, lookback: int,
         upto: Optional[int] = None) -> Optional[Tuple[int, int]]:
    """[lo, hi) of whole hours to compare: LATE_LOOKBACK back from now, but not before loading began
    (INITIAL_LOOKBACK's start or the oldest archived row: older hours were never asked for), up to
    `upto` (where a run began reading: it has just counted the rest); None when off or empty."""
    began = [t for t in (state.loaded_from(cur), table.span(cur)[0]) if t is not None]
    if not lookback or not began:
        return None
    lo = max(floor_to(now - lookback, HOUR), floor_to(min(began), HOUR))
    hi = floor_to(now, HOUR) if upto is None else min(floor_to(now, HOUR), upto)
    return (lo, hi) if lo < hi else None


def influx_counts(counts: Callable[[int, int], Counts], lo: int, hi: int) -> Counts:
    """InfluxDB's {(hour, series, field): readings} over [lo, hi), asked COUNT_SPAN at a time through
    counts(start, end) (the source's, or a retrying wrapper of it)."""
    found = {}
    for piece in chunks(lo, hi, COUNT_SPAN):
        found.update(counts(*piece))
    return found


def reload_pieces(behind: Sequence[Behind], window: int, chunk: int) -> List[Tuple[int, int]]:
    """The ranges to read again: each behind hour whole (window-aligned), adjacent hours joined, cut
    at CHUNK boundaries like every load."""
    ranges: list = []
    for hour in sorted({b.hour for b in behind}):
        lo, hi = floor_to(hour, window), ceil_to(hour + HOUR, window)
        if ranges and lo <= ranges[-1][1]:
            ranges[-1][1] = max(ranges[-1][1], hi)
        else:
            ranges.append([lo, hi])
    return [piece for lo, hi in ranges for piece in chunks(lo, hi, chunk)]


def leaving_after(lookback: int) -> int:
    """Age after which readings still behind are close to leaving InfluxDB: the last sixth of
    LATE_LOOKBACK (25 days of 30), time enough for a person to act."""
    return lookback - lookback // 6


def describe(behind: Sequence[Behind], now: Optional[float] = None, limit: int = 6) -> str:
    """'3 hours (2026-11-20T02:00Z .. 2026-11-20T05:00Z): uid=b spo2 3600 readings, archive 0, ...' for
    the log, status and check: the hours as ranges, and what was missing per series and field."""
    hours = sorted({b.hour for b in behind})
    spans, start = [], None
    for i, hour in enumerate(hours):
        start = hour if start is None else start
        if i + 1 == len(hours) or hours[i + 1] != hour + HOUR:
            spans.append((start, hour + HOUR))
            start = None
    shown = ", ".join(f"{rfc3339(lo)} .. {rfc3339(hi)}" for lo, hi in spans[:limit])
    if len(spans) > limit:
        shown += f" and {len(spans) - limit} more span(s)"
    per: dict = {}
    for b in behind:
        key = (b.series or "all series", b.field)
        per[key] = per.get(key, 0) + b.missing
    what = ", ".join(f"{series} {field}: {missing} reading(s)" for (series, field), missing in sorted(per.items()))
    oldest = f", the oldest {human_duration(now - hours[0])} old" if now is not None and hours else ""
    return f"{len(hours)} hour(s) ({shown}{oldest}); missing {what}"


def merged_series(counts: Counts) -> Dict[int, List[str]]:
    """{hour: [series]} of the hours in which InfluxDB holds readings of more than one series (tag set),
    from {(hour, series, field): readings}: with TAGS empty their readings would be averaged into one."""
    by_hour: dict = {}
    for (hour, series, _), readings in counts.items():
        if readings:
            by_hour.setdefault(hour, set()).add(series)
    return {hour: sorted(found) for hour, found in sorted(by_hour.items()) if len(found) > 1}


def refuse_merged(counts: Counts, tags: Sequence[str]) -> None:
    """With TAGS empty, every series of the measurement is averaged into one row per window: right for
    one device, wrong for two (a night with 25 desaturations archived as one). Hours in which InfluxDB
    holds readings of more than one series are refused (SourceRejected, exit 2) before anything of
    them is written, naming the series and the tag to set. `run` judges every chunk and its late hours so;
    `check` judges what the next run would read."""
    merged = merged_series(counts) if not tags else {}
    if not merged:
        return
    series = sorted({s for found in merged.values() for s in found})
    names = differing_tags(series) or ["<the tag that names the device>"]
    first = next(iter(merged))
    named = ", ".join(s or "(no tags)" for s in series[:5]) + (", ..." if len(series) > 5 else "")
    raise SourceRejected(
        f"InfluxDB holds readings of {len(series)} series in the same hours ({named}; "
        f"{len(merged)} hour(s) from {rfc3339(first)}): with TAGS empty they would be averaged into one; "
        "nothing of them was loaded",
        hint=f"to keep each device apart set TAGS={','.join(names)} in {settings_file()}, then, when this archive "
             f"already has rows, `{command('add-tags --yes')}` keys them by it in place (every row kept); or write "
             "the other device to another measurement or bucket")


def differing_tags(series: Sequence[str]) -> List[str]:
    """The tag keys whose values differ between series keys ('uid=a,zone=x'): the ones TAGS needs."""
    tags = [series_tags(key) for key in series]
    names = sorted({name for t in tags for name in t})
    return [name for name in names if len({t.get(name) for t in tags}) > 1]
