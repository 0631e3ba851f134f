"""Regenerate docs/sessions.md from loader/metrics.py's METRICS and the rules of oximetry.py and means.py:
python3 setup/sessions_doc.py
A test keeps the file in step with the code (as setup/commands_doc.py does for docs/commands.md)."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from loader import means, metrics, oximetry, sessions  # noqa: E402

FOUND = tuple(drop - means.SLACK for drop in means.DROPS)  # how deep a candidate is found, on the means
MARGIN = metrics.LOWEST_MARGIN  # how far under its window's mean a lowest reading is read at all
BY_LOWEST = tuple(drop + means.LOWEST_NOISE for drop in means.DROPS)  # how deep it counts one

HEAD = f"""# Sessions: the night's numbers

Generated from `loader/metrics.py` by `setup/sessions_doc.py`; each column is declared there once, with
its definition, which is also the column's comment in PostgreSQL (`\\d+ <PG_TABLE>_sessions`). A change
to a declaration or to the rules below changes the rule digest the sessions table's comment names, and the
next run computes every stored session again.

The loader keeps `<PG_TABLE>_sessions` in the transaction that writes the rows (recomputed when a later
chunk, late data, a backfill or `rebuild-rollups` touches a session; never duplicated), per device, from the
1 Hz readings and the 5-second means of `SESSION_SPO2` (spo2) and `SESSION_PULSE` (bpm).

## Session

Windows with an SpO2 mean, none more than `SESSION_GAP` (default 45 min) after the previous one's end,
lasting at least `SESSION_MIN` (1 h) from first start to last end; worn around the clock, a run is cut
every 24 h from its start, and its last piece is a session whatever its length (SESSION_MIN is the whole
run's: a run of 24 h 24 min gives sessions of 24 h and of 24 min). 45 minutes: a bathroom break or a
re-clipped sensor (10-30 minutes) must not split a night, and the readings after it belong to that night;
a nap in the afternoon, hours later, is its own session.

## From the oximeter's own readings

A session is read from its 1 Hz readings (`loader/oximetry.py`), which the loader keeps beside the
5-second means in `<PG_TABLE>_seconds`: InfluxDB's mean of each second's readings of `SESSION_SPO2` and
`SESSION_PULSE` within `VALID_RANGES`, one byte a second (a finger-off 0 or 127 is refused there, so it is
no reading). A session archived before the seconds were kept (less than {sessions.SECONDS_COVER:.0%} of its
recorded time has them) is read from its means by the older rule below. The readings are what an oximeter
sends: whole percent, already averaged by the device over a few seconds.

- **Excursions.** The readings smoothed by a centred {oximetry.SMOOTH_S}-second mean (a one-point flicker
  such as 96, 96, 95 or 96, 95 then moves a third of a point at most) are cut into alternating peaks and
  troughs where they turn by at least {oximetry.TURN:g} point. Every trough is judged on its own: a long fall,
  or a candidate refused for any reason, hides no dip inside it (the means rule below abandoned a candidate
  that started in a wobble and ran on into the real dip, then resumed after it).
- **Artefacts** (the `artefacts` column counts those {oximetry.ARTEFACT_MIN:g} points deep or more) are excursions
  that fall faster than blood desaturates while brief (under half their depth for less than
  {oximetry.ARTEFACT_MAX_S} s): a step of more than {oximetry.DELTA_MAX} points in one second (pobm's
  `prep.delta_filter`, Diff=4) or {oximetry.FALL_2S} in two (on the validation nights the fastest desaturation
  falls 1.75 points a second); or excursions during which the pulse reading jumps {oximetry.PULSE_JUMP} bpm within
  two seconds (motion corrupts the pulse the oximeter computes from the same light; an arousal raises the
  pulse over many seconds) and {oximetry.PULSE_SPREAD} times further than the upper quartile of its 2-second moves
  over the {oximetry.PULSE_BEFORE_S // 60} minutes before (an irregular rhythm such as atrial fibrillation jumps that
  far by itself: it is not motion). A refused excursion's seconds are bridged by a straight line from the
  reading before it to the first one back at its level: a desaturation it sat in keeps its shape, and neither
  an event, the nadir nor T90 counts it. A motion artefact that leaves the pulse alone (or whose pulse jumps no
  more than an irregular rhythm's own) and falls no faster than a desaturation cannot be told from one: it
  counts. On the validation's irregular-pulse nights about half the motion artefacts count, and ODI reads
  1.3-2.3/h high ([benchmarks.md](benchmarks.md#night-numbers)).
- **Desaturation** (desat3, desat4, ODI): a trough whose **level** (the mean of the {oximetry.LEVEL_MEAN_S}
  readings up to its start; its start the last second within {oximetry.ONSET:g} point of the highest smoothed
  reading since the trough before, at most {oximetry.LEVEL_S} s before the lowest) and **lowest** (the lowest
  smoothed reading) are 3 (4) or more apart **in whole percent**, as the oximeter shows them: a dip from a level
  of 96 to 92 is 4 points whether it lasts 10 s or 100 s, and one from a level of 95.6 (readings 96, 96, 95) to
  a lowest of 92.4 is 96 - 92 = 4. It lasts from its start to the first second back within
  {oximetry.RECOVERED:g} point of the level (or the next peak, inside a cluster): at least {oximetry.EVENT_MIN_S} s
  (a blip) and at most {oximetry.EVENT_MAX_S} s (longer is a change of baseline, which T90 shows). The drop is
  measured from the pre-event level, as the AASM asks, not from a mean of the minutes before, which sinks inside
  a cluster of events.
- **Nadir**: the lowest reading held for {oximetry.NADIR_S} s, artefacts refused.
- **T90, T88**: the seconds read 89 % or under (88 % or under). Where the readings of the
  {oximetry.SETTLE_S} s around a second lie within {oximetry.SETTLE_RANGE} points (a signal sitting near 89.5
  flickers between 89 and 90 with the device's noise), their mean stands for the second.
- **McGill oximetry score** (`mcgill`, SUBJECT=child only; Nixon et al., "Planning adenotonsillectomy in
  children with obstructive sleep apnea: the role of overnight oximetry", Pediatrics 113(1):e19-e25, 2004): a
  cluster is {oximetry.CLUSTER_EVENTS} or more ≥4-point desaturations within {oximetry.CLUSTER_S // 60} minutes
  (counted from each event not yet in a cluster); with at least {oximetry.MCGILL_CLUSTERS} clusters, the score is
  4, 3 or 2 when at least {oximetry.MCGILL_DROPS} of the desaturations reached below 80, 85 or 90 %; otherwise 1
  (normal or inconclusive).

How close these come to the injected truth on nights as a device sends them, with pobm beside them:
`bench/validate`, results in [benchmarks.md](benchmarks.md#night-numbers).

## From the means (sessions archived before the 1 Hz readings were kept)

Jung and Hwang's fiducial points (Hwang et al., "Real-time automatic apneic event detection using
nocturnal pulse oximetry", IEEE Trans Biomed Eng 65(3):706-712, 2018), the detector PhysioZoo's pobm
implements (Levy et al., "Digital oximetry biomarkers for assessing respiratory function", npj Digital
Medicine 4:1, 2021), applied to window means:

- **Onset (A)**: a window whose mean is lower than the window just before it; that earlier mean is the
  event's **level**.
- **Nadir (B)**: the means go on falling; a rise of more than {means.RISE_ALLOWED:g} points above the lowest so far
  before the lowest is {FOUND[0]:g} ({FOUND[1]:g}) points below the level abandons the candidate, and the search
  goes on from the next window (candidates are found {means.SLACK:g} points shallower than the drop they count
  for).
- **End (C)**: the first window at least {means.EVENT_MIN_S} s after the onset's start that is back within
  {means.RECOVERED:g} point of the level, or {FOUND[0]:g} ({FOUND[1]:g}) points above the lowest.
- It **counts** when it lasted at most {means.EVENT_MAX_S} s, held {means.HELD} windows more than
  {means.RECOVERED:g} point below its level, and either its means fell 3 (4) points below the level, or a
  window's **lowest reading** (`<PG_TABLE>_readings.lowest`) fell {BY_LOWEST[0]:g} ({BY_LOWEST[1]:g}) points below
  it, where that reading is more than {MARGIN:g} point under its window's own mean.
- **Nadir, pulse min and max**: of each {means.HELD} consecutive windows, the higher (for a maximum: the
  lower) mean; the lowest (highest) of those.
- **T90, T88**: per window, its share of readings below 90 (at or below 88) times its width, from the
  reading counts in `<PG_TABLE>_readings`.

This rule hides a dip behind a candidate that started in a one-point wobble of the baseline, counts motion
artefacts as events and misses brief dips of exactly 3 or 4 points (issue #31): the 1 Hz readings replace
it wherever they are kept.

pobm's own counter of events per night is an int8 that wraps after 127 events: its ODI is counted here
from its detector's list instead (`bench/pobm_reference.py`).

## Colour bands (dashboard)

An adult's (SUBJECT=adult): ODI under 5 normal, 5-15 mild, 15-30 moderate, 30 and over severe (the AASM's
bands for the apnoea-hypopnoea index, which ODI studies use). T90: over 1 % and over 10 % of the night.
Nadir: below 90, 85, 80 %. Mean SpO2: below 94 and 90 %. T88: Medicare's criterion for home oxygen at night
is 5 minutes or more at or below 88 % (NCD 240.2).

A child's (SUBJECT=child; `setup/grafana/dashboard-child*.json`): ODI3 orange from 7/h and ODI4 from 4/h,
which predicted obstructive sleep apnoea in typically developing children aged 1-16 with specificities of
85 % and 92 %, and ODI3 red from 8/h, the best predictor of an obstructive AHI of 5/h or more (Selby et al.,
"Role of overnight oximetry in assessing the severity of obstructive sleep apnoea in typically developing
children", Arch Dis Child 109(4):308-313, 2024; 322 children). McGill score: 1 green, 2 yellow, 3 orange,
4 red (Nixon et al. 2004). T90, nadir and mean SpO2 as an adult's.

## Columns
"""


def table() -> str:
    rows = ["| column | unit | definition | bands |", "| --- | --- | --- | --- |"]
    for m in metrics.METRICS:
        bands = "; ".join(
            ("a child's: " if subject == "child" else "") + ", ".join(
                f"{colour} from {value:g}" if value is not None else colour for colour, value in m.bands_for(subject))
            for subject in m.subjects if m.bands_for(subject) and (subject == "adult" or m.child_bands is not None
                                                                    or "adult" not in m.subjects))
        rows.append(f"| `{m.column}` | {m.unit or ''} | {m.definition} | {bands} |")
    return "\n".join(rows)


def sessions_md() -> str:
    return HEAD + "\n" + table() + "\n"


def main() -> None:
    with open(os.path.join(ROOT, "docs", "sessions.md"), "w", encoding="utf-8") as handle:
        handle.write(sessions_md())


if __name__ == "__main__":
    main()
