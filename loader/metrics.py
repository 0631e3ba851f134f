"""The night metrics: each column of the sessions table declared once, with what it is computed from.

A Metric is a column of <PG_TABLE>_sessions: its type, unit, title, definition (the column's comment,
docs/sessions.md, the dashboard's Sessions table and the report) and colour bands. A metric of time spent
below a reading (`reading`: T90, T88) is computed from its declaration alone: the sources count each
window's readings there (READING_COUNTS, kept in <PG_TABLE>_readings), oximetry.read_night counts the
seconds, and a `share_of` metric is that time as a percentage of the recorded time. Declaring one adds it
everywhere; the sessions' rule digest (sessions.py) changes with these declarations, so stored sessions
are computed again by the next run.
"""

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

# Colour bands at clinically meaningful thresholds ((colour, from value), lowest first), for the dashboard
# and docs/sessions.md: ODI under 5 normal, 5-15 mild, 15-30 moderate, 30 and over severe (the AASM's
# AHI bands, which ODI studies use); T90 over 1 % and 10 % of the night; SpO2 below 90 % hypoxaemia.
ODI_BANDS = (("green", None), ("yellow", 5), ("orange", 15), ("red", 30))
T90_BANDS = (("green", None), ("yellow", 1), ("red", 10))
NADIR_BANDS = (("red", None), ("orange", 80), ("yellow", 85), ("green", 90))
MEAN_BANDS = (("red", None), ("yellow", 90), ("green", 94))
# A child's (typically developing, 1-16 years): ODI3 of 7/h and ODI4 of 4/h predicted obstructive sleep apnoea
# (obstructive AHI of 1/h or more) with specificities of 85 % and 92 %, ODI3 of 8/h an obstructive AHI of 5/h
# or more (moderate) with 84 % (Selby, ..., Evans, Arch Dis Child 2024;109:308-13; 322 children)
CHILD_ODI3_BANDS = (("green", None), ("orange", 7), ("red", 8))
CHILD_ODI4_BANDS = (("green", None), ("orange", 4))
# McGill score 1 normal or inconclusive, 2 mild, 3 moderate, 4 severe (Nixon et al. 2004)
MCGILL_BANDS = (("green", None), ("yellow", 2), ("orange", 3), ("red", 4))


# the readings table's count columns by comparison: below_90 counts readings < 90, atmost_88 those <= 88
COUNT_PREFIX = {"<": "below", "<=": "atmost"}


@dataclass(frozen=True)
class Metric:
    """One column of the sessions table: declared once, read by the table, the computation (summarise
    returns exactly these keys), docs/sessions.md and the dashboard."""

    column: str
    kind: str  # PostgreSQL type
    unit: str  # as people read it
    title: str  # the dashboard's column header
    definition: str
    decimals: Optional[int] = None  # shown in the dashboard's Sessions table with these decimals; None: not shown
    grafana_unit: Optional[str] = None  # Grafana's unit id for it there
    bands: tuple = ()  # colour bands there, an adult's
    child_bands: Optional[tuple] = None  # a child's where they differ (SUBJECT=child)
    subjects: tuple = ("adult", "child")  # whose nights it is kept and shown for
    # seconds whose SpO2 reading is (comparison, bound) in whole percent: ("<", 90.0) is T90; the sources count
    # each window's readings there, the 1 Hz readings are counted there (oximetry.read_night)
    reading: Optional[Tuple[str, float]] = None
    share_of: Optional[str] = None  # a percentage of recorded_s: this column's (None where it is None)

    def bands_for(self, subject: str) -> tuple:
        return self.child_bands if subject == "child" and self.child_bands is not None else self.bands

    @property
    def count_column(self) -> str:
        """The column of <PG_TABLE>_readings counting each window's readings at `reading`: below_90,
        atmost_88 (kept names: archives hold them)."""
        assert self.reading is not None
        compare, bound = self.reading
        return f"{COUNT_PREFIX[compare]}_{bound:g}"

    def counts(self) -> Callable[[float], bool]:
        """Whether a reading (or a window mean) is counted at `reading`: a bound method of the bound, as fast
        as a comparison where it is mapped over a month of windows (float(90).__gt__ is `v < 90`)."""
        assert self.reading is not None
        compare, bound = self.reading
        return float(bound).__gt__ if compare == "<" else float(bound).__ge__


METRICS = (
    Metric("run_started", "timestamptz NOT NULL", "", "Run started",
           "Start of the run of windows the session belongs to (a run worn around the clock is cut every 24 h "
           "from here)."),
    Metric("ended", "timestamptz NOT NULL", "", "Ended", "End of the session's last window.", 0),
    Metric("recorded_s", "integer NOT NULL", "s", "Recorded",
           "Seconds with an SpO2 reading (where the 1 Hz readings are kept; else windows with an SpO2 mean × "
           "WINDOW): the time every per-hour figure is per hour of.", 0, "dtdurations"),
    Metric("spo2_mean", "double precision NOT NULL", "%", "SpO2 mean", "Mean of the window means.", 1, "percent",
           MEAN_BANDS),
    Metric("spo2_min", "double precision NOT NULL", "%", "SpO2 lowest window",
           "Lowest window mean (one window can hold an artefact: see nadir)."),
    Metric("nadir", "double precision NOT NULL", "%", "Nadir",
           "Lowest SpO2 reading held for 3 s once artefacts are refused (from the means where the 1 Hz readings "
           "are not kept: held for 10 s, as pulse_min).", 1, "percent", NADIR_BANDS),
    Metric("t90_s", "integer NOT NULL", "s", "T90",
           "Time below 90 % by the readings: seconds read 89 or under once artefacts are refused (a settled "
           "signal's flicker averaged); where the 1 Hz readings are not kept, per window its share of readings "
           "below 90 times its width (whole when its mean is below 90, archived before reading counts).",
           reading=("<", 90.0)),
    Metric("t90_pct", "double precision NOT NULL", "%", "T90 %", "t90_s as a percentage of recorded_s.", 1, "percent",
           T90_BANDS, share_of="t90_s"),
    Metric("t88_s", "integer NOT NULL", "s", "T88",
           "Time at or below 88 % by the readings, likewise (Medicare's home-oxygen criterion: 5 minutes or more "
           "at or below 88 %).", 0, "dtdurations", reading=("<=", 88.0)),
    Metric("t88_pct", "double precision NOT NULL", "%", "T88 %", "t88_s as a percentage of recorded_s.",
           share_of="t88_s"),
    Metric("below_s", "integer", "s", "Below",
           "Time whose window mean is below ROLLUP_BELOW's SpO2 threshold (the column comment holds it); NULL "
           "when ROLLUP_BELOW names none."),
    Metric("below_pct", "double precision", "%", "Below %", "below_s as a percentage of recorded_s.",
           share_of="below_s"),
    Metric("desat3", "integer NOT NULL", "", "Desaturations ≥3",
           "Desaturations of at least 3 points in whole percent (the rule in docs/sessions.md)."),
    Metric("desat4", "integer NOT NULL", "", "Desaturations ≥4", "The same of at least 4 points."),
    Metric("odi3", "double precision NOT NULL", "/h", "ODI3", "desat3 per hour of recorded_s.", 1, "none", ODI_BANDS,
           CHILD_ODI3_BANDS),
    Metric("odi4", "double precision NOT NULL", "/h", "ODI4", "desat4 per hour of recorded_s.", 1, "none", ODI_BANDS,
           CHILD_ODI4_BANDS),
    Metric("hypoxic_burden", "double precision NOT NULL", "%·min/h", "Hypoxic burden",
           "Area of the ≥3-point desaturations below the level before each (percentage points × minutes) per "
           "hour of recorded_s, after Azarbarzin et al., Eur Heart J 2019 (there: respiratory events and an "
           "ensemble-averaged search window).", 1, "none"),
    Metric("artefacts", "integer", "", "Artefacts",
           "Excursions of 2 points or more refused as artefacts (a fall faster than blood, or a pulse corrupted "
           "with it); NULL where the 1 Hz readings are not kept.", 0, "none"),
    Metric("mcgill", "integer", "", "McGill score",
           "McGill oximetry score, 1-4 (Nixon et al., Pediatrics 2004): 1 normal or inconclusive; 2, 3, 4 for "
           "3 or more clusters of ≥4-point desaturations (5 within 30 minutes) and 3 or more of them reaching "
           "below 90, 85, 80 %. A child's nights only (SUBJECT=child); NULL for an adult's.", 0, "none",
           MCGILL_BANDS, subjects=("child",)),
    Metric("desat_depth", "double precision", "points", "Desat depth",
           "Mean depth of the ≥3-point desaturations (level before − lowest: from the 1 Hz readings, the lowest 3-s "
           "mean; from the means, the lowest window mean); NULL without any.", 1, "none"),
    Metric("desat_duration", "double precision", "s", "Desat duration",
           "Mean duration of the ≥3-point desaturations (from the fall's start to the recovery, as "
           "docs/sessions.md says for each rule); NULL without any.", 0, "s"),
    Metric("pulse_mean", "double precision", "bpm", "Pulse mean", "Mean of the pulse field's window means.", 0,
           "suffix:bpm"),
    Metric("pulse_min", "double precision", "bpm", "Pulse min",
           "Lowest pulse held for 10 s: the lowest, over two consecutive windows, of the higher of their "
           "means (a one-second artefact moves one window).", 0, "suffix:bpm"),
    Metric("pulse_max", "double precision", "bpm", "Pulse max", "Highest pulse held for 10 s, likewise.", 0,
           "suffix:bpm"),
)

BY_COLUMN = {m.column: m for m in METRICS}
# the metrics of time spent at a reading, highest bound first (what the readings are counted at)
TIME_BELOW = tuple(sorted((m for m in METRICS if m.reading), key=lambda m: -m.reading[1]))  # type: ignore[index]  # filtered: set
# Per window, of the SpO2 field's readings (SESSION_SPO2, within VALID_RANGES): how many (n), and how many at
# each TIME_BELOW reading, so T90 and T88 are the time the readings spent there, not the time whose window
# mean was there (a mean of 90, 90, 89, 90, 89 is 89.6 and would count 5 s below 90 for 2).
# (column, comparison, bound); the sink keeps them in <PG_TABLE>_readings.
READING_COUNTS = (("n", None, None),) + tuple((m.count_column, *m.reading) for m in TIME_BELOW)  # type: ignore[misc]  # set, as above
# And their lowest: a brief dip (10-20 s) that the window's mean averages to less than its depth still shows
# there (the desaturation rule, sessions.py). The sink keeps it where it is more than LOWEST_MARGIN under the
# window's mean: only there can it count a desaturation the means do not.
LOWEST, LOWEST_MARGIN = "lowest", 1.0


def problems(metrics: Tuple[Metric, ...] = METRICS) -> list:
    """What is wrong with the declarations (a test keeps this empty): a share of an undeclared column, a
    reading with another comparison, two columns of one name."""
    columns = [m.column for m in metrics]
    out = [f"{c} is declared twice" for c in sorted(set(columns)) if columns.count(c) > 1]
    out += [f"{m.column} is a share of {m.share_of}, which is not declared" for m in metrics
            if m.share_of and m.share_of not in columns]
    out += [f"{m.column} counts readings {m.reading[0]} {m.reading[1]:g}: the comparison is one of "
            f"{', '.join(COUNT_PREFIX)}" for m in metrics if m.reading and m.reading[0] not in COUNT_PREFIX]
    return out
