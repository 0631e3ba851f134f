"""Synthetic nights as a finger or wrist oximeter sends them, with known truth (bench/validate_nights.py).

The clean signal (a wandering baseline and injected desaturations) goes through what a device does to
it: sensor noise, its own moving average over DEVICE_AVERAGE_S seconds, whole percent and whole bpm,
once a second. On top, what real recordings hold: motion artefacts (2-8 s, SpO2 3-12 points low, and,
in most, the pulse corrupted by the same motion), "no reading" markers (SpO2 127 and pulse 0, which
VALID_RANGES refuses), dropouts (nothing sent for 1-5 minutes) and a finger-off stretch (127s for
minutes). Kinds:

  normal     a healthy adult night: a few isolated 3-4 point dips
  apnoea     clusters of desaturations as in severe obstructive sleep apnoea (4-9 points, 20-45 s)
  moderate   fewer, shallower clusters, and a 20-minute bathroom break
  brief      brief dips, 10-22 s long, 3-6 points deep, scattered
  rem        a baseline that sinks 1.5-3 points for each REM period, with its events there
  altitude   a baseline of 88-91 % (high altitude) with small dips, 3-5 points, periodic breathing
  child      a child's night: baseline 97-98 %, pulse 80-110, brief dips and three clusters
  irregular  a moderate night with an irregular rhythm (atrial fibrillation): a pulse of 55-115 bpm beat to
             beat, which jumps as motion makes it jump

The truth is what a perfect oximeter would report of the clean signal, in whole percent: each injected
desaturation (depth from the baseline before it) whose seconds were all recorded; T90 and T88 as the
recorded seconds whose clean value rounds below 90 (to 88 or under); the nadir as its lowest. The
motion artefacts are listed with their seconds, so a validation can tell how many became events.
The generator is seeded: the same nights every time.
"""

import math
import random

NIGHT_START = 1_790_000_000 - 1_790_000_000 % 86400 - 2 * 3600  # 22:00 UTC the evening before
DEVICE_AVERAGE_S = 3  # the device's own moving average
NO_SPO2, NO_PULSE = 127, 0  # what the device sends for "no reading"
KINDS = ("normal", "apnoea", "moderate", "brief", "rem", "altitude", "child", "irregular")


def _shape(duration, depth):
    """A desaturation's shape: a fall over 45 % of it, its lowest held at least 3 s, then a faster
    recovery; 0 at both ends."""
    hold = max(3, round(duration * 0.15))
    fall = max(2, round((duration - hold) * 0.6))
    rise = max(2, duration - fall - hold)
    shape = [-depth * (i + 1) / fall for i in range(fall)] + [-depth] * hold
    return shape + [-depth * (1 - (i + 1) / rise) for i in range(rise)]


def _baseline(rng, seconds, kind):
    level = {"altitude": rng.uniform(89.0, 90.5), "child": rng.uniform(97.0, 98.0)}.get(kind, rng.uniform(95.0, 96.5))
    wander = 0.8 if kind != "altitude" else 0.9
    phase = rng.uniform(0, 2 * math.pi)
    base = [level + wander * math.sin(phase + t / 2400.0) + 0.3 * math.sin(t / 333.0) for t in range(seconds)]
    rem = []
    if kind == "rem":  # REM every 90 minutes from the second hour, 15-25 minutes, baseline 1.5-3 lower
        for at in range(5400, seconds - 1800, 5400):
            length, sink = rng.randint(900, 1500), rng.uniform(1.5, 3.0)
            for i in range(length):
                edge = min(1.0, i / 300, (length - i) / 300)  # sinks and recovers over 5 minutes
                base[at + i] -= sink * edge
            rem.append((at, length))
    return base, rem


def _events(rng, seconds, kind, rem):
    """[(start second, duration s, depth)], at least 15 s apart."""
    events, t = [], 900

    def cluster(count, lo, hi, length=(20, 45)):
        nonlocal t
        for _ in range(count):
            duration = rng.randint(*length)
            if t + duration + 60 >= seconds - 600:
                return
            events.append((int(t), duration, rng.uniform(lo, hi)))
            t += duration + rng.uniform(20, 40)

    while t < seconds - 900:
        if kind == "apnoea":
            t += rng.uniform(600, 1500)
            cluster(rng.randint(8, 30), 4, 9)
        elif kind in ("moderate", "irregular"):
            t += rng.uniform(1500, 3600)
            cluster(rng.randint(4, 12), 3, 7)
        elif kind == "brief":
            t += rng.uniform(60, 240)
            events.append((int(t), rng.randint(10, 22), rng.uniform(3, 6)))
            t += 30
        elif kind == "rem":
            inside = [(a, n) for a, n in rem if a + 300 <= t < a + n - 400]
            if inside:
                events.append((int(t), rng.randint(15, 40), rng.uniform(3, 6)))
                t += rng.uniform(60, 150)
            else:
                t += 120
        elif kind == "altitude":
            t += rng.uniform(300, 900)
            cluster(rng.randint(3, 8), 3, 5, (15, 40))
        elif kind == "child":
            t += rng.uniform(300, 1200)
            if len(events) < 40 and rng.random() < 0.25:
                cluster(rng.randint(5, 8), 3, 7, (10, 25))
            else:
                events.append((int(t), rng.randint(10, 20), rng.uniform(3, 7)))
                t += 30
        else:  # normal
            t += rng.uniform(1800, 3600)
            events.append((int(t), rng.randint(20, 35), rng.uniform(3.0, 4.0)))
            t += 60
    return [e for e in events if e[0] + e[1] < seconds - 600]


def _device(values, rng, noise, top):
    """What the device sends of a clean signal: noise, its moving average, whole numbers."""
    noisy = [v + rng.gauss(0, noise) for v in values]
    out, total = [], 0.0
    for t, v in enumerate(noisy):
        total += v - (noisy[t - DEVICE_AVERAGE_S] if t >= DEVICE_AVERAGE_S else 0.0)
        out.append(min(top, round(total / min(t + 1, DEVICE_AVERAGE_S))))
    return out


def night(kind, seed, hours=8.0, day=0):
    """{"kind", "readings": [(epoch, spo2 or None, pulse or None)], "truth": {...}, "injected",
    "artefacts": [(start second, length)], "clean": the clean signal, a value a second}."""
    rng = random.Random(f"device-{kind}-{seed}")
    seconds = int(hours * 3600)
    base, rem = _baseline(rng, seconds, kind)
    clean = list(base)
    events = _events(rng, seconds, kind, rem)
    for start, duration, depth in events:
        for i, d in enumerate(_shape(duration, depth)):
            clean[start + i] = base[start + i] + d
    rest = 95.0 if kind == "child" else 62.0
    pulse = [rest + 6 * math.sin(t / 1800.0) for t in range(seconds)]
    if kind == "irregular":  # beat to beat anywhere from 55 to 115 bpm (the device then averages it)
        pulse = [rng.uniform(55, 115) for _ in range(seconds)]
    for start, duration, _ in events:  # the pulse rises after each event (arousal), 8-15 bpm over 20 s
        rise = rng.uniform(8, 15)
        for i in range(min(20, seconds - start - duration)):
            pulse[start + duration + i] += rise * math.sin(math.pi * i / 20)
    motion = list(clean)
    busy = [False] * seconds  # seconds near an event: no artefact lands there (the truth stays clean)
    for start, duration, _ in events:
        for i in range(max(0, start - 30), min(seconds, start + duration + 30)):
            busy[i] = True
    artefacts = []
    while len(artefacts) < rng.randint(25, 40):
        at, length = rng.randrange(600, seconds - 600), rng.randint(2, 8)
        if any(busy[at - 20:at + length + 20]):
            continue
        drop, corrupt = rng.uniform(3, 12), rng.random() < 0.9
        offset = rng.choice([-1, 1]) * rng.uniform(20, 40)
        for i in range(length):
            motion[at + i] -= drop
            if corrupt:
                pulse[at + i] += offset
            busy[at + i] = True
        artefacts.append((at, length))
    spo2 = _device(motion, rng, 0.35, 100)
    beats = _device(pulse, rng, 1.0, 250)
    present = [True] * seconds
    marker = [False] * seconds
    for _ in range(rng.randint(2, 6)):  # dropouts
        at = rng.randrange(600, seconds - 900)
        if not any(busy[at:at + 300]):
            for i in range(rng.randint(60, 300)):
                present[at + i] = False
    for _ in range(rng.randint(3, 8)):  # "no reading" markers for a few seconds
        at = rng.randrange(600, seconds - 600)
        if not any(busy[at - 10:at + 20]):
            for i in range(rng.randint(2, 10)):
                marker[at + i] = True
    at = rng.randrange(3600, seconds - 3600)  # a finger-off stretch: 2-6 minutes of 127s
    if not any(busy[at:at + 360]):
        for i in range(rng.randint(120, 360)):
            marker[at + i] = True
    if kind == "moderate":  # a 20-minute bathroom break
        out_at = seconds - int(1.05 * 3600)
        for i in range(1200):
            present[out_at + i] = False
    readings = []
    for t in range(seconds):
        if not present[t]:
            readings.append((NIGHT_START + day * 86400 + t, None, None))
        elif marker[t]:
            readings.append((NIGHT_START + day * 86400 + t, NO_SPO2, NO_PULSE))
        else:
            readings.append((NIGHT_START + day * 86400 + t, spo2[t], beats[t]))
    recorded = [t for t in range(seconds) if present[t] and not marker[t]]
    hours_recorded = len(recorded) / 3600
    valid = [present[t] and not marker[t] for t in range(seconds)]
    counted = [e for e in events if all(valid[e[0] + i] for i in range(-5, e[1] + 5))]
    whole = [math.floor(v + 0.5) for v in clean]  # in whole percent, half up
    # each event's depth as a perfect oximeter shows it: its level and its lowest in whole percent
    shown = {e: whole_level(base[e[0]]) - min(whole[e[0] + i] for i in range(e[1])) for e in counted}
    truth = {
        "recorded_s": len(recorded),
        "odi3": sum(1 for e in counted if shown[e] >= 3) / hours_recorded,
        "odi4": sum(1 for e in counted if shown[e] >= 4) / hours_recorded,
        "t90_pct": 100 * sum(1 for t in recorded if whole[t] < 90) / len(recorded),
        "t88_pct": 100 * sum(1 for t in recorded if whole[t] <= 88) / len(recorded),
        "nadir": min(whole[t] for t in recorded),
        "events4": [e for e in counted if shown[e] >= 4],
    }
    return {"kind": kind, "readings": readings, "truth": truth, "injected": counted, "artefacts": artefacts,
            "clean": clean}


def whole_level(value):
    return math.floor(value + 0.5)


def nights(seed=1):
    """One night of each kind, on consecutive days."""
    return [night(kind, seed, day=day) for day, kind in enumerate(KINDS)]
