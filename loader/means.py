"""A night read from its 5-second means: the rule for the sessions whose 1 Hz readings are not kept (archived
before they were, or too few of them: sessions.SECONDS_COVER). Pure functions of window starts and means;
docs/sessions.md says why each choice.

Desaturations: Jung/Hwang's fiducial points (the detector PhysioZoo's pobm implements) on the window means,
with each window's lowest reading where the sink kept one (a brief dip its mean averages away); T90/T88 from
the means and the reading counts; the nadir and the pulse's extremes held for HELD windows.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .metrics import LOWEST_MARGIN, TIME_BELOW

# DESATURATION, the rule desat3/desat4 count: Jung/Hwang's fiducial points (the detector PhysioZoo's pobm
# implements) on window means; docs/sessions.md says why each choice.
RISE_ALLOWED = 0.2  # points a mean may rise above the lowest so far on the way down (window means wobble)
RECOVERED = 1.0  # an event has ended once the mean is back within this of the level before it
EVENT_MIN_S = 10  # from its first fallen window's start to the recovering window's
EVENT_MAX_S = 120  # longer is a change of baseline, not an event (T90 counts it)
HELD = 2  # windows: an event has this many more than RECOVERED below its level; nadir and pulse extremes
#           are held this long (a one-second artefact moves one window mean)
DROPS = (3, 4)
SLACK = 0.5  # points: candidates are found this much shallower on the means, and count when the means reach
#              the drop or a window's lowest reading reaches it and LOWEST_NOISE more, where that reading is more
#              than LOWEST_MARGIN under its window's mean (a brief dip that its 5-second means average away; the
#              sink keeps a lowest reading only there)
LOWEST_NOISE = 0.5  # points: the lowest of a window's five noisy readings sits under the signal (0.38 under its
#                     lowest in the window on bench/validate's nights; with the one-window level, a dip's lowest
#                     reading is 0.6-0.75 deeper than the dip); bench/lowest_reading: 0.25-1.0 alike, 0.5 nearest


@dataclass(frozen=True)
class Event:
    """One desaturation: start of its first fallen window, duration to the recovering window's start (s),
    depth below the level before it (points), area below that level (points × seconds) and the level."""

    start: int
    duration: int
    depth: float
    area: float
    level: float

    @property
    def lowest(self) -> float:
        return self.level - self.depth


def desaturation_events(times: Sequence[int], values: Sequence[float], window: int, drop: float,
                        level_windows: int = 1) -> List[Event]:
    """The desaturations of at least `drop` points in window means (times ascending, epoch seconds).

    Jung/Hwang's fiducial points, on window means (docs/sessions.md): a window whose mean is lower than
    the one just before it starts a candidate, that earlier mean being its level; the means fall on (a
    rise of more than RISE_ALLOWED above the lowest so far abandons it, and the search goes on from the
    next window) until the lowest is `drop` below the level; the event ends at the first window at least
    EVENT_MIN_S after its start that is back within RECOVERED of the level, or `drop` above its lowest
    (a fall that takes longer than EVENT_MAX_S to reach `drop` is abandoned like one that rises).
    It counts when it lasted at most EVENT_MAX_S and held HELD windows more than RECOVERED below its
    level; the search resumes after its end. A missing window ends a candidate or an event uncounted.
    level_windows: the level is the mean of this many windows before the first fallen one (where they
    follow each other); the rule is 1, bench/lowest_reading measures 2."""
    events, n, i = [], len(times), 1
    # the lowest mean of each stretch of windows an event could reach its nadir in (a block of `span` and
    # the next): where even that is not `drop` below, no candidate starts there (a smooth decline would
    # otherwise be walked from each of its windows in turn)
    span = EVENT_MAX_S // window + 1
    reach = [min(values[b:b + 2 * span]) for b in range(0, n, span)]  # covers [i, i + span) from b = i // span
    # and the highest level a candidate starting in the block can have (values[i - 1]): a block whose
    # highest is not `drop` above its reach is passed whole, as each of its windows would be
    peak = [max(values[max(b - level_windows, 0):b + span - 1]) for b in range(0, n, span)]
    while i < n:
        block = i // span
        if reach[block] > peak[block] - drop:
            i = (block + 1) * span
            continue
        if times[i] - times[i - 1] != window or values[i] >= values[i - 1]:
            i += 1
            continue
        level, before = values[i - 1], i - level_windows
        if level_windows > 1 and before >= 0 and times[i - 1] - times[before] == (level_windows - 1) * window:
            level = math.fsum(values[before:i]) / level_windows
        if reach[block] > level - drop:
            i += 1
            continue
        first, lowest, j = i, values[i], i + 1
        while lowest > level - drop and j < n and times[j] - times[j - 1] == window:
            if values[j] > lowest + RISE_ALLOWED or times[j] - times[first - 1] > EVENT_MAX_S:
                break
            lowest = min(lowest, values[j])
            j += 1
        if lowest > level - drop:
            i = first + 1
            continue
        k = j
        while k < n and times[k] - times[k - 1] == window:
            lowest = min(lowest, values[k])
            back = level - values[k] <= RECOVERED or values[k] - lowest >= drop
            if back and times[k] - times[first] >= EVENT_MIN_S:
                break
            k += 1
        if k >= n or times[k] - times[k - 1] != window:
            i = k + 1
            continue
        below = [level - values[q] for q in range(first, k)]
        if times[k] - times[first - 1] <= EVENT_MAX_S and sum(d > RECOVERED for d in below) >= HELD:
            events.append(Event(times[first], times[k] - times[first], level - lowest,
                                math.fsum(d for d in below if d > 0) * window, level))
        i = k + 1
    return events


def desaturations_with_lowest(times: Sequence[int], values: Sequence[float], window: int, drop: float,
                              lowest: Optional[Dict[int, float]] = None, slack: float = SLACK,
                              margin: float = LOWEST_NOISE,
                              level_windows: int = 1) -> List[Event]:
    """The desaturations of at least `drop` points, from the window means and the lowest readings: the
    events desaturation_events finds `slack` points shallower, kept when their means fall `drop` below the
    level before them or a window's lowest reading falls `drop` + `margin` below it, where that reading is
    more than LOWEST_MARGIN under the window's own mean (a nadir the mean averaged away; elsewhere the
    lowest of five noisy readings says nothing the mean does not, and the sink keeps none). lowest: {window
    start: lowest reading}; a window without one counts by its mean. slack, margin, level_windows: the
    rule's, unless bench/lowest_reading measures others."""
    kept = []
    for event in desaturation_events(times, values, window, drop - slack, level_windows):
        if event.depth >= drop:
            kept.append(event)
            continue
        if not lowest:
            continue
        first = bisect.bisect_left(times, event.start)
        end = bisect.bisect_left(times, event.start + event.duration)  # the window the event recovered in
        deep = [lowest[times[q]] for q in range(first, end + 1)
                if lowest.get(times[q], values[q]) < values[q] - LOWEST_MARGIN]
        if deep and event.level - min(deep) >= drop + margin:
            kept.append(event)
    return kept


def desaturations(times: Sequence[int], values: Sequence[float], window: int, drops: Sequence[int] = DROPS,
                  lowest: Optional[Dict[int, float]] = None) -> Dict[int, int]:
    """{drop: how many desaturations of at least `drop` points the window means (and lowest readings) hold}."""
    return {drop: len(desaturations_with_lowest(times, values, window, drop, lowest)) for drop in drops}


def stretches(times: Sequence[int], window: int) -> List[Tuple[int, int]]:
    """[(first, end)] index ranges of the windows that follow each other without one missing. Times are
    whole windows apart and ascending, so [a, b] is unbroken exactly when times[b] - times[a] is
    (b - a) windows: a binary search finds each break (a night has few)."""
    out, first, n = [], 0, len(times)
    while first < n:
        lo, hi = first, n - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if times[mid] - times[first] == (mid - first) * window:
                lo = mid
            else:
                hi = mid - 1
        out.append((first, lo + 1))
        first = lo + 1
    return out


def held(values: Sequence[float], runs: Sequence[Tuple[int, int]], lowest: bool = True) -> float:
    """The lowest (or highest) value held for HELD consecutive windows: of each HELD windows in a row,
    the highest (lowest) mean, then the lowest (highest) of those; a one-window artefact never sets it.
    runs: stretches() of the values' times. Without HELD windows in a row, the lowest (highest) window."""
    pick, keep = (max, min) if lowest else (min, max)
    found = [keep(map(pick, *(values[a + k:b] for k in range(HELD)))) for a, b in runs if b - a >= HELD]
    return keep(found) if found else keep(values)


def time_below(spo2: Sequence[float], window: int, counted: Optional[Dict[str, float]] = None) -> Dict[str, int]:
    """{column: whole seconds} of each metrics.TIME_BELOW metric (T90, T88): each window whose mean is counted
    there (below 90; at or below 88) whole, plus `counted` ({column: correction}): over the windows with
    reading counts, their shares of readings there less what their means counted (Sessions.readings). So
    each window counts its share of readings times its width, and a window without counts by its mean."""
    counted = counted or {}
    return {m.column: round((sum(map(m.counts(), spo2)) + counted.get(m.column, 0.0)) * window) for m in TIME_BELOW}
