"""Synthetic 1 Hz oximetry nights with known events, for validating the night numbers (bench/validate_nights.py).

Each night is a list of (epoch second, SpO2 or None, pulse or None) at 1 Hz, integers as an oximeter
reports them, plus its truth: the injected desaturations (start, duration, depth from the baseline
before them), the seconds below 90 and 88 % of the clean signal, and its recorded seconds. Kinds, as
the issue on night numbers describes the nights that matter:

  severe     clusters of desaturations as in severe sleep apnoea (4-9 points, 20-45 s, 40-70 s apart)
  moderate   fewer and shallower clusters
  brief      brief dips, 10-22 s long, 3-6 points deep, scattered
  artefacts  a mild night with motion artefacts (1-3 s drops and jumps), finger-off seconds (SpO2 0,
             which VALID_RANGES refuses) and dropouts (no readings for 1-5 minutes)
  break      a moderate night with a 20-minute bathroom break and a 40-minute return to bed
  quiet      a healthy night: a few isolated 3-point dips

The generator is seeded: the same nights every time.
"""

import math
import random

NIGHT_START = 1_790_000_000 - 1_790_000_000 % 86400 - 2 * 3600  # 22:00 UTC the evening before


def _baseline(rng, seconds):
    """A slowly wandering awake/asleep baseline around 95-96 %."""
    phase = rng.uniform(0, 2 * math.pi)
    level = rng.uniform(95.0, 96.5)
    return [level + 0.8 * math.sin(phase + t / 2400.0) + 0.3 * math.sin(t / 333.0) for t in range(seconds)]


def _dip(duration, depth):
    """A desaturation's shape over `duration` seconds: a fall over 45 % of it to -depth, a short nadir,
    then the recovery; 0 at both ends."""
    fall = max(2, round(duration * 0.45))
    hold = max(1, round(duration * 0.15))
    rise = max(2, duration - fall - hold)
    shape = [-depth * (i + 1) / fall for i in range(fall)] + [-depth] * hold
    shape += [-depth * (1 - (i + 1) / rise) for i in range(rise)]
    return shape[:duration]


def _events(rng, seconds, kind):
    """[(start second, duration s, depth)] for a night of `kind`, at least 15 s apart."""
    events, t = [], 600
    while t < seconds - 600:
        if kind in ("severe", "moderate", "break"):
            cluster_gap = rng.uniform(600, 1500) if kind == "severe" else rng.uniform(1500, 3600)
            t += cluster_gap
            for _ in range(rng.randint(8, 30) if kind == "severe" else rng.randint(4, 12)):
                duration = rng.randint(20, 45)
                depth = rng.uniform(4, 9) if kind == "severe" else rng.uniform(3, 7)
                if t + duration + 30 >= seconds - 300:
                    break
                events.append((int(t), duration, depth))
                t += duration + rng.uniform(20, 40)
        elif kind == "brief":
            t += rng.uniform(60, 240)
            events.append((int(t), rng.randint(10, 22), rng.uniform(3, 6)))
            t += 30
        elif kind == "artefacts":
            t += rng.uniform(600, 1800)
            events.append((int(t), rng.randint(25, 40), rng.uniform(3.5, 6)))
            t += 60
        else:  # quiet
            t += rng.uniform(1800, 3600)
            events.append((int(t), rng.randint(20, 35), rng.uniform(3.0, 3.8)))
            t += 60
    return [e for e in events if e[0] + e[1] < seconds - 300]


def night(kind, seed, hours=8.0, day=0):
    """One night, `day` days after the first: {"kind", "readings": [(epoch, spo2, pulse)], "truth": {...},
    "injected": [(start second, duration, depth)]}."""
    rng = random.Random(f"{kind}-{seed}")
    seconds = int(hours * 3600)
    base = _baseline(rng, seconds)
    clean = list(base)
    events = _events(rng, seconds, kind)
    for start, duration, depth in events:
        for i, d in enumerate(_dip(duration, depth)):
            clean[start + i] = base[start + i] + d
    pulse = [62 + 6 * math.sin(t / 1800.0) + rng.gauss(0, 1.0) for t in range(seconds)]
    for start, duration, _ in events:  # the pulse rises a little after each event (arousal)
        for i in range(min(20, seconds - start - duration)):
            pulse[start + duration + i] += 8 * math.sin(math.pi * i / 20)
    spo2 = [min(100, round(v + rng.gauss(0, 0.35))) for v in clean]
    pulse = [round(p) for p in pulse]
    present = [True] * seconds
    if kind == "artefacts":
        for _ in range(40):  # motion: 1-3 s readings far off, down or up
            at, width = rng.randrange(300, seconds - 300), rng.randint(1, 3)
            jump = rng.choice([-12, -8, -6, 3])
            for i in range(width):
                spo2[at + i] = min(100, spo2[at + i] + jump)
                pulse[at + i] = pulse[at + i] + rng.choice([-25, 40])
        for _ in range(6):  # finger-off: zeros (refused by VALID_RANGES)
            at = rng.randrange(300, seconds - 300)
            for i in range(rng.randint(3, 15)):
                spo2[at + i], pulse[at + i] = 0, 0
        for _ in range(8):  # dropouts: nothing recorded
            at = rng.randrange(300, seconds - 600)
            for i in range(rng.randint(60, 300)):
                present[at + i] = False
    if kind == "break":
        out_at = seconds - int(1.05 * 3600)  # 20 minutes out of bed, then 40 minutes of sleep
        for i in range(1200):
            present[out_at + i] = False
    readings = [(NIGHT_START + day * 86400 + t, spo2[t] if present[t] else None, pulse[t] if present[t] else None)
                for t in range(seconds)]
    recorded = [t for t in range(seconds) if present[t] and spo2[t] > 0]
    hours_recorded = len(recorded) / 3600
    counted = [e for e in events if all(present[e[0] + i] for i in range(e[1]))]
    truth = {
        "recorded_s": len(recorded),
        "odi3": sum(1 for e in counted if e[2] >= 3) / hours_recorded,
        "odi4": sum(1 for e in counted if e[2] >= 4) / hours_recorded,
        "t90_s": sum(1 for t in recorded if clean[t] < 90),
        "t88_s": sum(1 for t in recorded if clean[t] <= 88),
        "nadir": min(round(clean[t]) for t in recorded),
        "events": len(counted),
    }
    return {"kind": kind, "readings": readings, "truth": truth, "injected": counted}


KINDS = ("severe", "moderate", "brief", "artefacts", "break", "quiet")


def nights(seed=1):
    """One night of each kind, on consecutive days."""
    return [night(kind, seed, day=day) for day, kind in enumerate(KINDS)]
