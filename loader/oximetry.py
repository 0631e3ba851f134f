"""A night read from the oximeter's own 1 Hz readings: artefacts refused, desaturations at their integer
depth, the nadir held for a few seconds, and the McGill oximetry score. Pure functions of plain lists
(sessions.py reads them from <PG_TABLE>_seconds); docs/sessions.md says why each choice and its source.

The readings are what a finger or wrist oximeter sends: whole percent, already averaged by the device
over a few seconds, None where it sent nothing (or a reading VALID_RANGES refused: a finger-off 0 or
127). Three steps over each stretch of consecutive seconds:

1. Excursions. The readings, smoothed by a centred 3-second mean (a one-point flicker such as 96, 96, 95
   or 96, 95 then moves a third of a point at most), are cut into alternating peaks and troughs wherever
   they turn by at least TURN points; each trough is an excursion from the level before it to its lowest
   and back.
2. Artefacts: a brief excursion whose readings fall faster than blood desaturates (DELTA_MAX points in
   one second, pobm's delta filter, or FALL_2S in two), or one during which the pulse jumps PULSE_JUMP
   bpm within two seconds (motion corrupts the pulse the oximeter computes from the same light as SpO2)
   and PULSE_SPREAD times further than it moves by itself (an irregular rhythm jumps without motion),
   is refused; its seconds are bridged by a straight line from the reading before to the first back at
   its level, so a desaturation it sat in keeps its shape and nothing else counts it.
3. Desaturations, on the bridged readings: a trough whose level (the mean of the LEVEL_MEAN_S readings
   to its start, found at the highest smoothed reading since the trough before, at most LEVEL_S back)
   and lowest are `drop` or more apart in whole percent, from its start to the first second back within
   RECOVERED of the level (or the next peak), lasting EVENT_MIN_S to EVENT_MAX_S. Every trough is judged
   on its own: a long or shallow one hides no event inside it.
T90 and T88 (each metrics.TIME_BELOW metric) count the seconds read below 90 (at or below 88), a settled
signal's flicker averaged; the nadir is the lowest reading held NADIR_S seconds.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .metrics import TIME_BELOW, Metric

# 1 Hz readings, None where there is none; the functions below read them only inside a recorded run (no None)
Readings = Sequence[Any]
TURN = 1.0  # points: a peak or trough is where the smoothed readings turn by this much (flicker: 1/3)
SMOOTH_S = 3  # seconds: the centred mean the excursions are found on
DELTA_MAX = 4  # points in one second: faster is not blood (pobm's prep.delta_filter, Diff=4)...
FALL_2S = 6  # points in two seconds: likewise (3 points/s sustained; the validation's fastest dip: 1.75)
ARTEFACT_MAX_S = 10  # ...when the excursion is also brief: under half its depth for less than this
PULSE_JUMP = 10  # bpm within 2 seconds, in an excursion or 2 s either side: the pulse was corrupted too...
PULSE_SPREAD, PULSE_BEFORE_S = 3, 120  # ...and 3 times the upper quartile of its 2-s moves over the 2 minutes
#                                        before: a pulse that jumps by itself (atrial fibrillation) is not motion
LEVEL_S = 60  # seconds: how far back before its lowest an event's level is looked for
LEVEL_MEAN_S = 15  # seconds: the level is the mean of the smoothed readings over these, to the start
ONSET = 0.5  # points: an event starts at the last second this near its level
RECOVERED = 1.0  # points: it has ended at the first second back within this of its level
EVENT_MIN_S = 5  # seconds from its start to its end (a motion blip is shorter; a 10-s dip is not)
EVENT_MAX_S = 120  # longer is a change of baseline, not an event (T90 counts it)
SETTLE_S, SETTLE_RANGE = 61, 2  # seconds, points: a settled signal's flicker is averaged over these (T90)
NADIR_S = 3  # seconds: the nadir is the lowest reading held this long
DROPS = (3, 4)
ARTEFACT_MIN = 2.0  # points: a refused excursion at least this deep counts in the night's artefacts

# The McGill oximetry score (Nixon et al., Pediatrics 2004;113:e19-25): clusters of 4 % desaturations
# and drops below 90, 85 and 80 %
CLUSTER_EVENTS = 5  # a cluster: this many 4 % desaturations within CLUSTER_S
CLUSTER_S = 30 * 60
MCGILL_CLUSTERS = 3  # an abnormal night: at least 3 clusters and at least 3 drops below 90 %
MCGILL_DROPS = 3
MCGILL_BELOW = ((4, 80.0), (3, 85.0), (2, 90.0))  # (score, a drop below this), worst first



@dataclass(frozen=True)
class Desaturation:
    """One desaturation: its start and end (seconds from the night's first), depth below its level
    (points), area below that level (points × seconds), its level and its lowest."""

    start: int
    end: int
    depth: float
    area: float
    level: float
    lowest: float


@dataclass(frozen=True)
class NightReading:
    """What read_night found: the desaturations per drop, the artefacts refused (excursions at least
    ARTEFACT_MIN deep), seconds with a reading, {column: seconds} of each TIME_BELOW metric (t90_s, t88_s)
    and the nadir; refused: the seconds
    [first, end) each counted artefact was bridged over (a report marks them)."""

    events: dict
    artefacts: int
    recorded_s: int
    below: dict
    nadir: Optional[float]  # None: no reading
    refused: tuple = ()


def whole(value: float) -> int:
    """A value in whole percent, as an oximeter shows it (half up)."""
    return math.floor(value + 0.5)


def recorded_runs(values: Readings) -> List[Tuple[int, int]]:
    """[(first, end)] of the runs of seconds that have a reading."""
    out, n, t = [], len(values), 0
    while t < n:
        while t < n and values[t] is None:
            t += 1
        first = t
        while t < n and values[t] is not None:
            t += 1
        if t > first:
            out.append((first, t))
    return out


def smoothed(x: Readings, first: int, end: int) -> List[float]:
    """The centred SMOOTH_S-second mean of x over [first, end) (its ends: the readings there are)."""
    v, half = x[first:end], SMOOTH_S // 2
    n = len(v)
    if n <= 2 * half:
        return [sum(v[max(0, t - half):t + half + 1]) / len(v[max(0, t - half):t + half + 1]) for t in range(n)]
    total: Iterable[float] = v[:n - 2 * half]
    for k in range(1, SMOOTH_S):  # the sums of each SMOOTH_S in a row, added column by column in C
        total = map(operator.add, total, v[k:n - 2 * half + k])
    inner = [value / SMOOTH_S for value in total]
    head = [sum(v[:t + half + 1]) / (t + half + 1) for t in range(half)]
    tail = [sum(v[t - half:]) / (n - t + half) for t in range(n - half, n)]
    return head + inner + tail


def turns(y: Sequence[float]) -> List[Tuple[int, bool]]:
    """[(index, is_peak)] of y's alternating peaks and troughs: a peak is the highest point before y falls
    TURN below it, a trough the lowest before it rises TURN above it."""
    out: list = []
    if not y:
        return out
    hi = lo = 0
    direction = 0  # 1: rising towards a peak, -1: falling towards a trough, 0: not yet known
    for t in range(1, len(y)):
        v = y[t]
        if direction >= 0:
            if v > y[hi]:
                hi = t
            if v <= y[hi] - TURN:
                out.append((hi, True))
                direction, lo = -1, t
                continue
        if direction <= 0:
            if v < y[lo]:
                lo = t
            if v >= y[lo] + TURN:
                out.append((lo, False))
                direction, hi = 1, t
    return out


def troughs(x: Readings, y: Sequence[float]) -> List[Tuple[float, int, int, int]]:
    """(level, start, lowest index, end) of each trough of y that y rose TURN above again, x being the
    readings y smooths: its top is the highest point since the trough before (at most LEVEL_S before the
    lowest); it starts at the last point within ONSET of that top; its level is the mean of the
    LEVEL_MEAN_S readings to its start (a top's highest point is the noise's); it ends at the first
    point back within RECOVERED of the level, or at the next peak. A trough that never recovers before
    y ends is left out."""
    found = turns(y)
    out, previous = [], 0
    for k, (b, is_peak) in enumerate(found):
        if is_peak:
            continue
        lo, previous = max(previous, b - LEVEL_S), b
        if lo >= b:
            continue
        top = max(range(lo, b), key=y.__getitem__)
        start = next(t for t in range(b - 1, top - 1, -1) if y[t] >= y[top] - ONSET)
        before = x[max(lo, start - LEVEL_MEAN_S + 1):start + 1]
        level = math.fsum(before) / len(before)  # the top's mean: its highest point is the noise's
        bound = found[k + 1][0] if k + 1 < len(found) else len(y) - 1
        end = next((t for t in range(b + 1, bound + 1) if y[t] >= level - RECOVERED), None)
        if end is None and k + 1 < len(found):
            end = bound
        if end is not None:
            out.append((level, start, b, end))
    return out


def _jumps(pulse: Readings, lo: int, hi: int) -> List[float]:
    """How far the pulse reading moved over each 2 seconds of [lo, hi), where both readings are there."""
    beats = pulse[lo:hi]
    return [abs(p - q) for p, q in zip(beats, beats[2:]) if p is not None and q is not None]


def _typical(jumps: Sequence[float]) -> float:
    """The upper quartile of the pulse's 2-second moves before an excursion (0 without any): how far this
    pulse moves by itself."""
    return sorted(jumps)[min(len(jumps) - 1, int(len(jumps) * 0.75))] if jumps else 0


def _artefacts(x: List[Any], pulse: Optional[Readings], first: int,
               end: int) -> List[Tuple[int, int]]:
    """[(first, end)] of the excursions at least ARTEFACT_MIN deep x[first:end) held that were refused;
    every refused one is bridged in x, in place."""
    y = smoothed(x, first, end)
    counted = []
    for level, start, b, stop in troughs(x[first:end], y):
        if stop - start > EVENT_MAX_S:
            continue
        a, c = first + start, first + stop
        depth = level - y[b]
        brief = sum(1 for v in y[start:stop] if v < level - depth / 2) < ARTEFACT_MAX_S
        fast = brief and any(abs(x[t] - x[t - 1]) > DELTA_MAX or abs(x[t] - x[t - 2]) >= FALL_2S
                             for t in range(max(first + 2, a + 1), c + 1))
        jumped = False
        if pulse is not None and not fast:
            lo, hi = max(first, a - 2), min(end, c + 3)
            moved = max(_jumps(pulse, lo, hi), default=0)
            # the 2 minutes before are read only for a move of PULSE_JUMP or more (most excursions have none)
            jumped = moved >= PULSE_JUMP and moved >= PULSE_SPREAD * _typical(
                _jumps(pulse, max(first, a - PULSE_BEFORE_S), a))
        if not (fast or jumped):
            continue
        c = next((t for t in range(c, min(end - 1, c + ARTEFACT_MAX_S) + 1) if x[t] >= level - ONSET), c)
        if depth >= ARTEFACT_MIN:
            counted.append((a, c + 1))
        for t in range(a + 1, c):
            x[t] = x[a] + (x[c] - x[a]) * (t - a) / (c - a)
    return counted


def desaturations(x: Readings, y: Sequence[float], drops: Sequence[int] = DROPS,
                  offset: int = 0) -> Dict[int, List[Desaturation]]:
    """{drop: [Desaturation]} of at least each of `drops` points in a stretch of readings x, smoothed as y;
    their seconds counted from `offset`."""
    out: dict = {drop: [] for drop in drops}
    for level, start, b, end in troughs(x, y):
        lowest = y[b]
        depth = whole(level) - whole(lowest)
        if depth < min(drops) or not EVENT_MIN_S <= end - start <= EVENT_MAX_S:
            continue
        event = Desaturation(start + offset, end + offset, level - lowest,
                             math.fsum(level - v for v in y[start:end] if v < level), level, lowest)
        for drop in drops:
            if depth >= drop:
                out[drop].append(event)
    return out


def cut(metric: Metric) -> float:
    """Where a TIME_BELOW metric's reading starts in whole percent: below 90 is under 89.5, at or below 88
    under 88.5."""
    compare, bound = metric.reading or ("<", 0.0)
    return bound - 0.5 if compare == "<" else bound + 0.5


def settled(x: Readings) -> List[float]:
    """Each second's reading as T90 and T88 count it: where the readings of the SETTLE_S around it lie
    within SETTLE_RANGE points (a signal sitting near 89.5 flickers between 89 and 90 with the device's
    noise), their mean; elsewhere (a dip's slope) the reading. Looked at only where that can change
    whether it is counted at a TIME_BELOW reading (a mean lies within SETTLE_RANGE of the reading)."""
    half, out = SETTLE_S // 2, list(x)
    cuts = [cut(m) for m in TIME_BELOW]
    lo, hi = min(cuts) - SETTLE_RANGE, max(cuts) + SETTLE_RANGE
    for t, v in enumerate(x):
        if lo <= v <= hi:
            near = x[max(0, t - half):t + half + 1]
            if max(near) - min(near) <= SETTLE_RANGE:
                out[t] = math.fsum(near) / len(near)
    return out


def held_lowest(x: Readings, first: int, end: int, hold: int = NADIR_S) -> Optional[float]:
    """The lowest reading held `hold` seconds in x[first:end) (of each `hold` in a row, the highest; the
    lowest of those); a shorter stretch: its highest. None for none."""
    if end - first <= 0:
        return None
    if end - first < hold:
        return max(x[first:end])
    return min(map(max, *(x[first + k:end - hold + 1 + k] for k in range(hold))))


def read_night(spo2: Sequence[Optional[float]], pulse: Optional[Sequence[Optional[float]]] = None,
               drops: Sequence[int] = DROPS) -> NightReading:
    """A night's NightReading from its SpO2 readings at 1 Hz (a list, None where there is none) and the
    pulse's (the same seconds; None: no pulse). Events carry the seconds of spo2's index."""
    x = list(spo2)
    events: dict = {drop: [] for drop in drops}
    recorded, below = 0, {m.column: 0 for m in TIME_BELOW}
    cuts = [(m, cut(m)) for m in TIME_BELOW]
    nadir, refused = None, []
    for first, end in recorded_runs(x):
        refused += _artefacts(x, pulse, first, end)
        recorded += end - first
        y, here = smoothed(x, first, end), x[first:end]
        for drop, found in desaturations(here, y, drops, first).items():
            events[drop] += found
        level = settled(here)
        for m, at in cuts:  # below 90: 89 and under in whole percent
            below[m.column] += sum(1 for v in level if v < at)
        low = held_lowest(x, first, end)  # a recorded run has readings: never None here
        nadir = low if nadir is None or low is None else min(nadir, low)
    return NightReading(events, len(refused), recorded, below, nadir, tuple(refused))


def clusters(events: Sequence[Desaturation], size: int = CLUSTER_EVENTS, within: int = CLUSTER_S) -> int:
    """How many clusters the events make: from each event not yet in one, the events starting within
    `within` seconds of it; `size` or more are a cluster, and the search goes on after its last."""
    starts = sorted(e.start for e in events)
    found, i = 0, 0
    while i < len(starts):
        j = i
        while j + 1 < len(starts) and starts[j + 1] < starts[i] + within:
            j += 1
        if j - i + 1 >= size:
            found += 1
            i = j + 1
        else:
            i += 1
    return found


def mcgill(events4: Sequence[Desaturation]) -> int:
    """The McGill oximetry score (1-4) of a night's 4 % desaturations: 1 (normal or inconclusive) unless
    they make at least MCGILL_CLUSTERS clusters; then 4, 3 or 2 by whether MCGILL_DROPS of them fell below
    80, 85 or 90 % (1 when fewer than that fell below 90)."""
    if clusters(events4) < MCGILL_CLUSTERS:
        return 1
    for score, bound in MCGILL_BELOW:
        if sum(1 for e in events4 if e.lowest < bound) >= MCGILL_DROPS:
            return score
    return 1
