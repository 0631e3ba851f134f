"""What each window's lowest reading does for ODI, and variants of the rule that reads it: a measurement.

  .venv-test/bin/python -m bench.lowest_reading --pobm .venv-pobm/bin/python [--seed 1,2,3,4] [--sweep]

The night-numbers issue suggests keeping, per window, the lowest SpO2 reading beside the mean, for brief
(10-22 s) dips whose 5-second means fall short of 4 points; the loader does since 2026-12-02 (level 1
window, slack 0.5, margin 0.5 since 2026-12-03: means.SLACK and means.LOWEST_NOISE). This takes
bench/validate's nights, makes their 5-second means and lowest readings in Python (within the default
VALID_RANGES, as the loader keeps them), and counts desaturations on the means alone (the loader's rule
before it kept lowest readings) and with candidates found `slack` points shallower on the means, kept when
a lowest reading inside the event, more than batch.LOWEST_MARGIN under its window's mean (the windows whose
lowest the sink keeps), is `drop + margin` or more below the level before it (the margin stands for the
lowest of five noisy readings sitting under the signal). Each also with the level before an event taken
as the mean of the two windows before it (desaturation_events' level_windows=2) instead of the one window (the rule): a
single window that the next one falls from is a local high, its noise counted into the depth. Per
variant: how many nights meet bench/validate's ODI targets (within max(5/h, 30 %) of pobm's and no
further from the truth than pobm's), and how far its ODI3 and ODI4 are from the truth, summed over the
nights (a variant can meet more targets by reading further from the truth: nearer pobm where pobm is far
from it). Not a test.
"""

import argparse
import math
import sys

from bench.nights import nights
from bench.validate_nights import reference, seeds
from loader.means import desaturation_events, desaturations_with_lowest

WINDOW = 5
SPO2_RANGE = (50, 100)  # the default VALID_RANGES for spo2
# (windows the level is the mean of, slack, margin)
VARIANTS = tuple((level, slack, margin) for level in (1, 2)
                 for slack, margin in ((None, None), (0.5, 0.25), (0.5, 0.5), (0.5, 0.75), (0.5, 1.0), (1.0, 0.5),
                                       (1.0, 1.0)))
# --sweep: every slack and margin of a grid, to see whether a result is a plateau or one lucky point
SWEEP = tuple((level, slack, margin) for level in (1, 2) for slack, margin in [(None, None)] + [
    (slack, margin) for slack in (0.5, 1.0, 1.5, 2.0) for margin in (0.25, 0.5, 0.75, 1.0, 1.25, 1.5)])


def windows(readings):
    """(times, means, lowest readings) of the 5-second windows of a night's SpO2 readings."""
    kept = {}
    for t, spo2, _ in readings:
        if spo2 is not None and SPO2_RANGE[0] <= spo2 <= SPO2_RANGE[1]:
            kept.setdefault(t - t % WINDOW, []).append(spo2)
    times = sorted(kept)
    return times, [math.fsum(kept[t]) / len(kept[t]) for t in times], [min(kept[t]) for t in times]


def count(times, means, lowest, drop, level_windows, slack, margin):
    """Desaturations of at least `drop` points: on the means alone (slack None), or with the lowest readings
    ({window start: lowest reading}, every window's: the rule reads only those the sink keeps)."""
    if slack is None:
        return len(desaturation_events(times, means, WINDOW, drop, level_windows))
    return len(desaturations_with_lowest(times, means, WINDOW, drop, lowest, slack, margin, level_windows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pobm", required=True, help="the python of the venv holding pobm (bench/validate makes it)")
    parser.add_argument("--seed", type=seeds, default=[1, 2, 3, 4], help="seeds of the nights (default 1,2,3,4)")
    parser.add_argument("--sweep", action="store_true", help="a grid of slacks and margins, the counts alone")
    args = parser.parse_args()
    variants = SWEEP if args.sweep else VARIANTS
    met = dict.fromkeys(variants, 0)
    off = dict.fromkeys(variants, 0.0)  # |ODI3 - truth| + |ODI4 - truth|, summed over the nights
    pobm_off = 0.0
    total = 0
    names = [("level 1 window" if level == 1 else f"level {level} windows") + (
        ", means only" if slack is None else f", slack {slack} margin {margin}") for level, slack, margin in variants]
    if not args.sweep:
        print("ODI3/ODI4 per hour; '!' a night that misses a target. Columns: truth, pobm, then " + ", ".join(names))
    for seed in args.seed:
        night_list = nights(seed)
        pobm = reference(night_list, args.pobm)
        for night in night_list:
            times, means, lowest = windows(night["readings"])
            lowest = dict(zip(times, lowest))  # once a night, for every variant and drop
            hours = len(times) * WINDOW / 3600
            truth, ref = night["truth"], pobm[night["kind"]]
            cells = []
            for variant in variants:
                odi = {name: count(times, means, lowest, drop, *variant) / hours
                       for drop, name in ((3, "odi3"), (4, "odi4"))}
                ok = all(abs(odi[n] - ref[n]) <= max(5, 0.3 * ref[n])
                         and abs(odi[n] - truth[n]) <= abs(ref[n] - truth[n]) + 1e-9 for n in odi)
                met[variant] += ok
                off[variant] += sum(abs(odi[n] - truth[n]) for n in odi)
                cells.append(f"{odi['odi3']:4.1f}/{odi['odi4']:4.1f}{' ' if ok else '!'}")
            total += 1
            pobm_off += sum(abs(ref[n] - truth[n]) for n in ("odi3", "odi4"))
            if not args.sweep:
                print(f"{seed} {night['kind']:<9} {truth['odi3']:4.1f}/{truth['odi4']:4.1f}  "
                      f"{ref['odi3']:4.1f}/{ref['odi4']:4.1f}  | " + " ".join(cells))
    print(f"{'pobm':<38} |ODI3 - truth| + |ODI4 - truth| summed over the nights: {pobm_off:5.1f}/h")
    for name, variant in zip(names, variants):
        print(f"{name:<38} {met[variant]:2d} of {total} nights meet the ODI targets; "
              f"off the truth {off[variant]:5.1f}/h")
    sys.exit(0)


if __name__ == "__main__":
    main()
