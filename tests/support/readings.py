"""Synthetic oximeter readings, how they reach InfluxDB (stand-in or real influxd), and the window means
expected of them, computed here independently of any database."""

from tests.support.flux_standin import Point

BUCKET = "pulse_oximeter"


def pulse_points(start, seconds, uids=("a",), gap=None, finger_off_every=0, step=1):
    """Synthetic 1 Hz readings as (measurement, tags, field, epoch seconds, value); step=5: one reading
    per 5-second window (every row of the archive, a fifth of the readings, for tests of what is made
    of the rows rather than of the readings).

    Values are multiples of 0.25 so every sum is exact in binary floating point: means computed
    by InfluxDB, the stand-in and the test agree to the last bit.
    """
    out = []
    for uid_index, uid in enumerate(uids):
        for t in range(start, start + seconds, step):
            if gap and gap[0] <= t < gap[1]:
                continue
            k = t + 13 * uid_index
            spo2 = 94 + (k * 7 % 23) * 0.25
            bpm = 58 + (k * 11 % 61) * 0.5
            if finger_off_every and t % finger_off_every == 0:
                spo2, bpm = 0.0, 127.0
            out.append(("spo2", {"uid": uid}, "spo2", t, spo2))
            out.append(("spo2", {"uid": uid}, "bpm", t, bpm))
    return out


def with_dips(points):
    """The same readings with SpO2 86.5 in the first 5 minutes of every hour: something below 90 for
    T90 and the below-threshold counts to count."""
    return [(m, tags, f, t, 86.5 if f == "spo2" and t % 3600 < 300 else v) for m, tags, f, t, v in points]


def feed_standin(standin, points, bucket=BUCKET):
    standin.store.add(bucket, [Point(m, tags, f, t * 10**9, v) for m, tags, f, t, v in points])


def line_protocol(points):
    """Line protocol, one line per (measurement, tags, time) with all its fields."""
    rows = {}
    for m, tags, f, t, v in points:
        key = (m, tuple(sorted(tags.items())), t)
        rows.setdefault(key, []).append((f, v))
    lines = []
    for (m, tags, t), fields in rows.items():
        tag_text = "".join(f",{_lp_escape(k, ',= ')}={_lp_escape(v, ',= ')}" for k, v in tags)
        field_text = ",".join(f"{_lp_escape(f, ',= ')}={_lp_value(v)}" for f, v in fields)
        lines.append(f"{_lp_escape(m, ', ')}{tag_text} {field_text} {t}")
    return lines


def _lp_value(value):
    """A field value: a float (an int too: as the oximeter writes), a boolean, or a quoted string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(float(value))


def _lp_escape(text, special):
    """Line-protocol escaping: a backslash before each special character."""
    for ch in special:
        text = text.replace(ch, "\\" + ch)
    return text


def feed_influxd(influxd, db, points):
    influxd.write(db, line_protocol(points))


def expected_means(points, window=5, tags=(), valid_ranges=None, start=None, end=None):
    """Window means computed here, independently of any database: {(window_start, *tags): {field: mean}}."""
    sums = {}
    for m, ptags, f, t, v in points:
        if start is not None and not (start <= t < end):
            continue
        if valid_ranges and f in valid_ranges and not (valid_ranges[f][0] <= v <= valid_ranges[f][1]):
            continue
        key = (t - t % window, *(ptags.get(tag, "") for tag in tags))
        acc = sums.setdefault(key, {}).setdefault(f, [0.0, 0])
        acc[0] += v
        acc[1] += 1
    return {k: {f: s / n for f, (s, n) in fields.items()} for k, fields in sums.items()}


def constructed_night(uid, dips, start):
    """7 hours of 1 Hz whole-percent readings of one device: 96 %, `dips` clusters of 5 dips of 5 points (20 s,
    40 s apart) an hour apart from 1 h 30 min, a bathroom break (20 minutes unsent) and a finger-off stretch
    (SpO2 0, refused)."""
    out = []
    lows = {start + 3600 * (k + 1) + 1800 + 60 * j + s for k in range(dips) for j in range(5) for s in range(20)}
    for t in range(start, start + 7 * 3600):
        if start + 3 * 3600 <= t < start + 3 * 3600 + 20 * 60:
            continue
        spo2 = 0.0 if start + 5 * 3600 <= t < start + 5 * 3600 + 120 else (91.0 if t in lows else 96.0)
        out.append(("spo2", {"uid": uid}, "spo2", t, spo2))
        out.append(("spo2", {"uid": uid}, "bpm", t, 62.0 if t % 7 else 63.0))
    return out


def regular_night(uid, start, hours, dip_every=None):
    """1 Hz whole-percent readings: 96 %, with a 20-s dip to 90 every `dip_every` seconds (a bad night)."""
    out = []
    for t in range(start, start + hours * 3600):
        low = dip_every and (t - start) % dip_every < 20 and t - start >= 60
        out.append(("spo2", {"uid": uid}, "spo2", t, 90.0 if low else 96.0))
        out.append(("spo2", {"uid": uid}, "bpm", t, 61.0))
    return out
