"""PhysioZoo's pobm (PyPI 1.2.0, Levy et al. 2021) on 1 Hz SpO2: the reference the night numbers are
validated against. Runs in its own venv (pobm needs numpy<2); bench/validate sets it up.

Reads JSON {night: [SpO2 at 1 Hz, null where nothing was recorded]} on stdin, writes JSON
{night: {"odi3", "odi4", "t90_s", "t88_s", "nadir", "hours"}} on stdout. The signal is prepared as pobm's
own prep.set_range does (readings outside 50..100 are not SpO2), then the seconds without a reading
are left out. ODI3/ODI4 count the events of pobm's Jung/Hwang detector (the private
_DesaturationsMeasures__sc_desaturations, events up to 120 s) per hour of signal, as pobm's ODI does;
counted directly, not through DesaturationsMeasures.compute, whose meta-event grouping keeps its
counter in an int8 that wraps after 127 events a night.
"""

import json
import sys

import numpy as np
from pobm.obm.desat import DesaturationsMeasures
from pobm.prep import set_range


def measures(values):
    signal = set_range(np.array([np.nan if v is None else float(v) for v in values]))
    signal = signal[~np.isnan(signal)]
    hours = len(signal) / 3600
    out = {"hours": hours, "t90_s": int(np.sum(signal < 90)), "t88_s": int(np.sum(signal <= 88)),
           "nadir": float(np.min(signal))}
    for drop in (3, 4):
        detector = DesaturationsMeasures(ODI_Threshold=drop, desat_max_length=120)
        events = detector._DesaturationsMeasures__sc_desaturations(signal)[0]
        out[f"odi{drop}"] = events / hours
    return out


def main():
    nights = json.load(sys.stdin)
    json.dump({name: measures(values) for name, values in nights.items()}, sys.stdout)


if __name__ == "__main__":
    main()
