"""Regenerate docs/sessions.md from loader/sessions.py's METRICS and rule:  python3 setup/sessions_doc.py
A test keeps the file in step with the code (as setup/commands_doc.py does for docs/commands.md)."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from loader import sessions  # noqa: E402
from loader.sources import batch  # noqa: E402

FOUND = tuple(drop - sessions.SLACK for drop in sessions.DROPS)  # how deep a candidate is found, on the means
MARGIN = batch.LOWEST_MARGIN  # how far under its window's mean a lowest reading is read at all
BY_LOWEST = tuple(drop + sessions.LOWEST_NOISE for drop in sessions.DROPS)  # how deep it counts one

HEAD = f"""# Sessions: the night's numbers

Generated from `loader/sessions.py` by `setup/sessions_doc.py`; each column is declared there once, with
its definition, which is also the column's comment in PostgreSQL (`\\d+ <PG_TABLE>_sessions`).

The loader keeps `<PG_TABLE>_sessions` in the transaction that writes the rows (recomputed when a later
chunk, late data, a backfill or `rebuild-rollups` touches a session; never duplicated), from the 5-second
means of `SESSION_SPO2` (spo2) and `SESSION_PULSE` (bpm), per device.

## Session

Windows with an SpO2 mean, none more than `SESSION_GAP` (default 45 min) after the previous one's end,
lasting at least `SESSION_MIN` (1 h) from first start to last end; worn around the clock, a run is cut
every 24 h from its start. 45 minutes: a bathroom break or a re-clipped sensor (10-30 minutes) must not
split a night, and the readings after it belong to that night; a nap in the afternoon, hours later, is
its own session.

## Desaturation (desat3, desat4, ODI)

Jung and Hwang's fiducial points (Hwang et al., "Real-time automatic apneic event detection using
nocturnal pulse oximetry", IEEE Trans Biomed Eng 65(3):706-712, 2018), the detector PhysioZoo's pobm
implements (Levy et al., "Digital oximetry biomarkers for assessing respiratory function", npj Digital
Medicine 4:1, 2021), applied to window means instead of 1 Hz readings:

- **Onset (A)**: a window whose mean is lower than the window just before it; that earlier mean is the
  event's **level** (the drop is measured from the pre-event level, as the AASM asks, not from a mean of
  the minutes before, which sinks inside a cluster of events).
- **Nadir (B)**: the means go on falling; a rise of more than {sessions.RISE_ALLOWED:g} points above the lowest so far
  (window means wobble by a tenth or two) before the lowest is {FOUND[0]:g} ({FOUND[1]:g}) points below the level
  abandons the candidate, and the search goes on from the next window (candidates are found
  {sessions.SLACK:g} points shallower than the drop they count for).
- **End (C)**: the first window at least {sessions.EVENT_MIN_S} s after the onset's start that is back within
  {sessions.RECOVERED:g} point of the level, or {FOUND[0]:g} ({FOUND[1]:g}) points above the lowest (the next event
  of a cluster can start there).
- It **counts** when it lasted at most {sessions.EVENT_MAX_S} s (longer is a change of baseline, which T90
  shows; pobm's detector defaults to 90 s and its authors note events up to 120 s, which the validation
  passes it), held {sessions.HELD} windows more than {sessions.RECOVERED:g} point
  below its level (a one-second motion artefact moves one window mean), and either its means fell 3 (4)
  points below the level, or a window's **lowest reading** fell {BY_LOWEST[0]:g} ({BY_LOWEST[1]:g}) points below it,
  where that reading is more than {MARGIN:g} point under its window's own mean. The second is for brief
  dips (10-20 s), which a 5-second mean averages to less than their depth: a reading that far under its
  window's mean is a nadir the mean averaged away (elsewhere the lowest of five noisy readings says nothing
  the mean does not), and the {sessions.LOWEST_NOISE:g} more stands for the lowest of five noisy readings sitting
  under the signal (on the validation nights 0.38 point under its lowest in the window; a dip's lowest
  reading 0.6-0.75 deeper under the level than the dip; margins of 0.25 to 1 read the nights alike,
  {sessions.LOWEST_NOISE:g} nearest the truth: `bench.lowest_reading`). The loader keeps a
  window's lowest reading (`<PG_TABLE>_readings.lowest`, from InfluxDB's `min` per window) only there;
  windows archived before it kept them count by their means. A missing window ends a candidate uncounted; the
  search resumes after the event's end.

pobm's own counter of events per night is an int8 that wraps after 127 events: its ODI is counted here
from its detector's list instead (`bench/pobm_reference.py`). How close this rule comes to pobm on the
1 Hz readings and to the injected truth, night by night: `bench/validate`, results in
[benchmarks.md](benchmarks.md#night-numbers).

## Held for 10 s (nadir, pulse min and max)

Of each {sessions.HELD} consecutive windows, the higher (for a maximum: the lower) mean; the lowest (highest) of
those. A reading that lasts a second moves one window mean and never sets them; without two windows in
a row, the lowest (highest) window.

## Colour bands (dashboard)

ODI: under 5 normal, 5-15 mild, 15-30 moderate, 30 and over severe (the AASM's bands for the apnoea-
hypopnoea index, which ODI studies use). T90: over 1 % and over 10 % of the night. Nadir: below 90, 85,
80 %. Mean SpO2: below 94 and 90 %. T88: Medicare's criterion for home oxygen at night is 5 minutes or
more at or below 88 % (NCD 240.2).

## Columns
"""


def table():
    rows = ["| column | unit | definition | bands |", "| --- | --- | --- | --- |"]
    for m in sessions.METRICS:
        bands = ", ".join(f"{colour} from {value:g}" if value is not None else colour for colour, value in m.bands)
        rows.append(f"| `{m.column}` | {m.unit or ''} | {m.definition} | {bands} |")
    return "\n".join(rows)


def sessions_md():
    return HEAD + "\n" + table() + "\n"


def main():
    with open(os.path.join(ROOT, "docs", "sessions.md"), "w", encoding="utf-8") as handle:
        handle.write(sessions_md())


if __name__ == "__main__":
    main()
