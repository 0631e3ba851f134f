"""Recording sessions, T90 and ODI: constructed signals whose answers are known by construction, and
the sessions table equal to a recomputation from the 5-second table after backfills, late data,
re-runs and a rebuild, per device."""

import math

import psycopg2
import pytest

from loader import archive, metrics, sessions
from loader.job import Job
from loader.means import desaturations
from loader.metrics import METRICS, Metric
from loader.pg import Database
from loader.sessions import MAX_S, code_digest, rule, sessions_of, source_digest
from tests.support.archive import archive_rows
from tests.support.harness import DAY, HOUR, FixedClock, make_config
from tests.support.readings import feed_standin

W = 5
T0 = 1_790_000_000 - 1_790_000_000 % DAY + 22 * HOUR  # 22:00 UTC


def means(readings, window=W):
    """1 Hz readings {t: spo2} -> 5-second means [(window start, mean, pulse 60)], as the loader keeps them."""
    sums = {}
    for t, v in readings.items():
        sums.setdefault(t - t % window, []).append(v)
    return [(t, math.fsum(vs) / len(vs), 60.0) for t, vs in sorted(sums.items())]


def with_dips(seconds, depth, length, every=300, first=150, offset=0, base=96.0):
    """`seconds` of 1 Hz SpO2 at `base` with a dip `depth` points deep, `length` s long, every `every` s."""
    readings = {T0 + s: base for s in range(seconds)}
    for start in range(first, seconds, every):
        for s in range(start + offset, min(seconds, start + offset + length)):
            readings[T0 + s] = base - depth
    return readings


def night(rows, **kwargs):
    [session] = sessions_of(rows, W, 900, 3600, **kwargs)
    return session.row


def test_twelve_dips_of_5_points_lasting_20_s_in_an_hour_are_odi4_and_odi3_of_12():
    row = night(means(with_dips(3600, 5, 20)))
    assert (row["desat3"], row["desat4"]) == (12, 12)
    assert math.isclose(row["odi3"], 12) and math.isclose(row["odi4"], 12)
    assert row["recorded_s"] == 3600 and row["spo2_min"] == 91.0


def test_dips_that_do_not_line_up_with_the_windows_still_count():
    row = night(means(with_dips(3600, 5, 20, offset=2)))  # 20 s from second 2 of a window: 3 windows at 91
    assert (row["desat3"], row["desat4"]) == (12, 12)


def test_dips_of_3_and_a_half_points_count_for_odi3_only():
    row = night(means(with_dips(3600, 3.5, 20)))
    assert (row["desat3"], row["desat4"]) == (12, 0)


def test_a_dip_of_one_window_is_not_an_event():
    row = night(means(with_dips(3600, 6, 5)))
    assert (row["desat3"], row["desat4"]) == (0, 0)


def test_a_slow_drift_below_90_is_time_below_90_not_desaturations():
    readings = {T0 + s: 97 - 8 * s / 3600 for s in range(3600)}  # 97 % to 89 % over the hour
    row = night(means(readings))
    assert (row["desat3"], row["desat4"]) == (0, 0)
    below = sum(1 for _, v, _ in means(readings) if v < 90) * W
    assert row["t90_s"] == below > 0 and math.isclose(row["t90_pct"], 100 * below / 3600)


def test_a_long_fall_is_a_change_of_baseline_and_a_missing_window_ends_an_event():
    rows = means(with_dips(3600, 5, 600, every=3600, first=600))  # ten minutes at 91 %: T90's, not an event
    assert desaturations([r[0] for r in rows], [r[1] for r in rows], W) == {3: 0, 4: 0}
    rows = means(with_dips(3600, 5, 100, every=3600, first=600))  # 100 s: within EVENT_MAX_S (120 s)
    assert desaturations([r[0] for r in rows], [r[1] for r in rows], W) == {3: 1, 4: 1}
    rows = means(with_dips(3600, 5, 15, every=3600, first=600))  # 15 s: three windows, an event
    assert desaturations([r[0] for r in rows], [r[1] for r in rows], W) == {3: 1, 4: 1}
    holed = [r for r in rows if r[0] != T0 + 605]  # the oximeter lost the middle one: two of 5 s, none
    assert desaturations([r[0] for r in holed], [r[1] for r in holed], W) == {3: 0, 4: 0}


def test_a_cluster_of_30_dips_of_5_points_20_s_each_40_s_apart_in_one_hour_is_odi4_30():
    readings = with_dips(3600, 5, 20, every=60, first=600)  # 30 dips from minute 10 to minute 40
    readings = {t: v if t < T0 + 600 + 30 * 60 else 96.0 for t, v in readings.items()}
    row = night(means(readings))
    assert (row["desat3"], row["desat4"]) == (30, 30) and math.isclose(row["odi4"], 30)
    assert math.isclose(row["desat_depth"], 5) and row["desat_duration"] == 20
    # each event's area below its level: 5 points for 20 s
    assert math.isclose(row["hypoxic_burden"], 30 * 5 * 20 / 60)


@pytest.mark.parametrize("offset", [0, 3])
def test_dips_of_12_s_count_whether_or_not_they_line_up_with_the_windows(offset):
    row = night(means(with_dips(3600, 5, 12, offset=offset)))
    assert (row["desat3"], row["desat4"]) == (12, 12)


def test_a_windows_lowest_reading_counts_half_a_point_past_the_drop_where_it_is_over_a_point_under_its_mean():
    """Means of 96, then a dip whose two lowest windows average 92.45 (3.55 under the level: 3 points, not 4):
    a lowest reading of 91.4 in one (4.6 under the level, 1.05 under its mean) makes it a 4-point
    desaturation (4 + LOWEST_NOISE); one of 91.5 (4.5 under the level) does not, being 0.95 under its
    window's mean, as a noisy reading can be, but does under a mean of 92.6 (1.1 under it); one of 91.55
    there does not (4.45 under the level)."""
    values = [96.0] * 20 + [94.0, 92.45, 92.45, 96.0] + [96.0] * 20
    times = [T0 + i * W for i in range(len(values))]
    dip = times[21]
    assert desaturations(times, values, W) == {3: 1, 4: 0}
    assert desaturations(times, values, W, lowest={dip: 91.4}) == {3: 1, 4: 1}
    assert desaturations(times, values, W, lowest={dip: 91.5}) == {3: 1, 4: 0}
    shallower = values[:21] + [92.6] + values[22:]  # the other window keeps the candidate 3.55 deep
    assert desaturations(times, shallower, W, lowest={dip: 91.55}) == {3: 1, 4: 0}
    assert desaturations(times, shallower, W, lowest={dip: 91.5}) == {3: 1, 4: 1}


def test_a_dip_that_starts_with_the_recording_has_no_level_and_is_not_counted():
    rows = means(with_dips(3600, 5, 20, every=3600, first=0))
    assert desaturations([r[0] for r in rows], [r[1] for r in rows], W) == {3: 0, 4: 0}


def test_one_second_artefacts_set_neither_an_event_the_nadir_nor_the_pulse_extremes():
    readings = with_dips(3600, 0, 0)
    readings[T0 + 1802] = 84.0  # a motion artefact: one reading 12 points low
    rows = [(t, v, 40.0 if t == T0 + 900 else 240.0 if t == T0 + 2700 else 60.0) for t, v, _ in means(readings)]
    row = night(rows)
    assert (row["desat3"], row["desat4"]) == (0, 0)
    assert row["spo2_min"] < 94 and row["nadir"] == 96.0  # the lowest window holds it; held 10 s, nothing does
    assert (row["pulse_min"], row["pulse_max"]) == (60.0, 60.0)  # a window at 40 bpm, one at 240: neither held


def test_a_20_minute_break_inside_a_night_is_one_session_by_default():
    gap = make_config("postgresql://localhost/x", "http://localhost:8086").session_gap
    first = means({T0 + s: 96.0 for s in range(3 * 3600)})
    after = [(t + 3 * 3600 + 20 * 60, v, p) for t, v, p in first[:480]]  # 20 minutes out, then 40 more
    [session] = sessions_of(first + after, W, gap, 3600)
    assert session.row["recorded_s"] == 3 * 3600 + 40 * 60
    assert session.row["ended"] == T0 + 4 * 3600


def test_a_session_row_has_exactly_the_declared_columns():
    row = night(means(with_dips(3600, 5, 20)))
    assert list(row) == [m.column for m in METRICS]


def test_the_declarations_hold_together_and_a_wrong_one_is_named():
    assert metrics.problems() == []
    wrong = METRICS + (Metric("t90_s", "integer", "s", "T90 again", "Twice."),
                       Metric("t80_pct", "double precision", "%", "T80 %", "A share.", share_of="t70_s"),
                       Metric("t80_s", "integer", "s", "T80", "Readings over.", reading=(">", 80.0)))
    assert metrics.problems(wrong) == ["t90_s is declared twice", "t80_pct is a share of t70_s, which is not declared",
                                       "t80_s counts readings > 80: the comparison is one of <, <="]


RULE_SOURCE = '''"""A rule."""

EVENT_MIN_S = 10  # seconds


def counts(x):
    """How many."""
    return sum(v < EVENT_MIN_S for v in x)
'''


def test_the_rule_digest_follows_the_code_and_its_constants_not_its_comments_or_docstrings():
    """Stored sessions name rule() in their definition (a changed one recomputes them, as a changed setting does):
    it changes with a constant or a line of code of the rule's modules, never with their prose."""
    digest = code_digest([RULE_SOURCE])
    assert code_digest([RULE_SOURCE.replace("EVENT_MIN_S = 10", "EVENT_MIN_S = 11")]) != digest
    assert code_digest([RULE_SOURCE.replace("v < EVENT_MIN_S", "v <= EVENT_MIN_S")]) != digest
    assert code_digest([RULE_SOURCE.replace("# seconds", "# seconds, from the fall's start")
                        .replace('"""How many."""', '"""How many,\n    said otherwise."""')
                        .replace("\n\n\ndef", "\n\n\n# the rule\ndef")]) == digest
    assert rule() == "rule-" + code_digest(open(f"loader/{name}.py", encoding="utf-8").read()
                                           for name in ("metrics", "means", "oximetry", "sessions"))


def test_a_definition_these_files_wrote_gives_the_rule_without_computing_it(monkeypatch):
    """rule() parses the rule's files (tens of milliseconds, ten times that on a Pi, every hourly run): where the
    stored definition names this source digest, its rule digest is read from it instead."""
    stored = f"SESSION_GAP=2700s rule-0123456789ab source={source_digest()}"
    monkeypatch.setattr(sessions, "rule", lambda: pytest.fail("rule() computed"))
    assert sessions.rule_for(stored) == "rule-0123456789ab"
    monkeypatch.undo()
    assert sessions.rule_for("SESSION_GAP=2700s rule-0123456789ab source=000000000000") == rule()
    assert sessions.same_rule(stored, stored.replace(source_digest(), "000000000000"))
    assert not sessions.same_rule(stored, stored.replace("rule-0123456789ab", rule()))


def test_sessions_split_at_gaps_longer_than_session_gap_and_short_runs_are_not_sessions():
    hour = means({T0 + s: 96.0 for s in range(3600)})
    later = [(t + 3600 + 14 * 60, v, p) for t, v, p in hour]  # 14 minutes after: the same session
    apart = [(t + 2 * 3600 + 30 * 60, v, p) for t, v, p in hour]  # 16 minutes after that: a new one
    short = [(t + 5 * 3600, v, p) for t, v, p in hour[:700]]  # 58 minutes: not a session
    found = list(sessions_of(hour + later + apart + short, W, 900, 3600))
    assert [(s.started - T0, s.row["ended"] - T0, s.row["recorded_s"]) for s in found] == [
        (0, 2 * 3600 + 14 * 60, 7200), (2 * 3600 + 30 * 60, 3 * 3600 + 30 * 60, 3600)]


def test_a_run_worn_around_the_clock_is_cut_every_24_hours_and_each_part_knows_its_run():
    rows = [(T0 + s, 96.0, 60.0) for s in range(0, 2 * DAY + 2 * HOUR, W)]
    found = list(sessions_of(rows, W, 900, 3600))
    assert [(s.started - T0, s.row["ended"] - T0) for s in found] == [
        (0, MAX_S), (MAX_S, 2 * MAX_S), (2 * MAX_S, 2 * MAX_S + 2 * HOUR)]
    assert {s.row["run_started"] for s in found} == {T0}
    tail = [(T0 + s, 96.0, 60.0) for s in range(0, DAY + 24 * 60, W)]  # SESSION_MIN is the whole run's, as said
    assert [(s.started - T0, s.row["ended"] - T0) for s in sessions_of(tail, W, 900, 3600)] == [
        (0, MAX_S), (MAX_S, MAX_S + 24 * 60)]  # README, docs/sessions.md: the last piece, whatever its length


def test_the_rollup_below_threshold_is_counted_beside_t90():
    readings = {T0 + s: (88.5 if s % 600 < 60 else 95.0) for s in range(3600)}
    row = night(means(readings), below=89)
    assert row["t90_s"] == row["below_s"] == 360 and math.isclose(row["below_pct"], 10)
    assert night(means(readings))["below_s"] is None


# --- the table, kept by the loader -------------------------------------------------------------------

NOW = T0 + DAY + 10 * HOUR


def oximeter_nights(devices=("a", "b"), nights=2, first=T0 - DAY):
    """Nights 22:00..06:30 UTC (each crosses midnight, the default CHUNK's boundary), dips every
    5 minutes, a 10-minute pause at 02:00 (shorter than SESSION_GAP); device b starts 13 minutes
    later and dips 4.5 points."""
    points = []
    for index, uid in enumerate(devices):
        for n in range(nights):
            start = first + n * DAY + 13 * 60 * index
            for s in range(0, 8 * HOUR + 30 * 60):
                if 4 * HOUR <= s < 4 * HOUR + 10 * 60:
                    continue
                spo2 = 95.0 - (5.0 - index / 2 if 150 <= s % 300 < 175 else 0) + (s % 7) * 0.25
                points.append(("spo2", {"uid": uid}, "spo2", start + s, spo2))
                points.append(("spo2", {"uid": uid}, "bpm", start + s, 55.0 + (s % 11)))
    return points


# the pulse of oximeter_nights, 55 + (s % 11) bpm, as 5-second means (57..63): the lowest and highest of
# them held for two windows in a row
_PULSE = [sum(55 + (5 * k + i) % 11 for i in range(5)) / 5 for k in range(12)]
PULSE_HELD = (min(max(a, b) for a, b in zip(_PULSE, _PULSE[1:])), max(min(a, b) for a, b in zip(_PULSE, _PULSE[1:])))


# the session columns compared between the table and a recomputation, by name
COMPARED = ("recorded_s", "spo2_mean", "spo2_min", "t90_s", "below_s", "desat3", "desat4", "odi3", "odi4",
            "pulse_mean", "pulse_min", "pulse_max")


def stored(pg_url, tags=("uid",)):
    """The sessions table's rows as {column: value} (started and ended in epoch seconds), in key order."""
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT {''.join(t + ', ' for t in tags)}extract(epoch FROM started)::bigint AS started, "
                    f"extract(epoch FROM ended)::bigint AS ended, {', '.join(COMPARED)} "
                    f"FROM pox_five_second_mean_sessions ORDER BY {', '.join((*tags, 'started'))}")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]
    finally:
        conn.close()


def recomputed(pg_url, tags=("uid",)):
    """The sessions computed afresh from the 5-second table as it is now, as stored() gives them."""
    rows = archive_rows(pg_url)
    out = []
    for device in sorted({k[1:] for k in rows}):
        series = [(k[0], v["spo2"], v.get("bpm")) for k, v in sorted(rows.items()) if k[1:] == device and "spo2" in v]
        for s in sessions_of(series, W, 900, 3600, below=90.0):
            out.append({**dict(zip(tags, device)), "started": s.started, "ended": s.row["ended"],
                        **{c: s.row[c] for c in COMPARED}})
    return out


def assert_same_sessions(got, want):
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys(), (g, w)
        for column in g:
            a, b = g[column], w[column]
            if isinstance(a, float) or isinstance(b, float):  # means: PostgreSQL and Python round alike,
                assert math.isclose(a, b, rel_tol=1e-12), (column, g, w)  # but an fsum is not a sum in order
            else:
                assert a == b, (column, g, w)


def test_a_night_crossing_midnight_and_a_chunk_boundary_is_one_session_per_device(pg_url, standin):
    feed_standin(standin, oximeter_nights())
    cfg = make_config(pg_url, standin.url, TAGS="uid", INITIAL_LOOKBACK="3d", CHUNK="1d")
    Job(cfg, clock=FixedClock(NOW)).run()
    got = stored(pg_url)
    assert [(r["uid"], r["started"] - T0) for r in got] == [("a", -DAY), ("a", 0), ("b", -DAY + 780), ("b", 780)]
    for r in got:
        assert r["ended"] - r["started"] == 8 * HOUR + 30 * 60 and r["recorded_s"] == r["ended"] - r["started"] - 600
        assert r["desat3"] == r["desat4"] == (8 * HOUR + 20 * 60) // 300  # every dip, none in the pause
        assert (r["pulse_min"], r["pulse_max"]) == PULSE_HELD
    assert_same_sessions(got, recomputed(pg_url))


def test_sessions_equal_a_recomputation_after_backfill_late_data_reruns_and_a_rebuild(pg_url, standin):
    points = oximeter_nights(nights=3, first=T0 - 2 * DAY)
    late_start = T0 + 3 * HOUR
    feed_standin(standin, [p for p in points if not late_start <= p[3] < late_start + HOUR])
    cfg = make_config(pg_url, standin.url, TAGS="uid", INITIAL_LOOKBACK="1d", CHUNK="6h", LATE_DATA="2h")
    Job(cfg, clock=FixedClock(T0 + 5 * HOUR)).run()  # the night so far, with an hour missing
    assert_same_sessions(stored(pg_url), recomputed(pg_url))
    for hour in range(6, 12):  # hourly runs through the morning
        Job(cfg, clock=FixedClock(T0 + hour * HOUR)).run()
    assert_same_sessions(stored(pg_url), recomputed(pg_url))
    # the missing hour arrives late, beyond LATE_DATA: a backfill brings it, joining two runs into one
    feed_standin(standin, [p for p in points if late_start <= p[3] < late_start + HOUR])
    Job(cfg, clock=FixedClock(T0 + 12 * HOUR)).backfill(late_start, late_start + HOUR)
    Job(cfg, clock=FixedClock(T0 + 12 * HOUR)).backfill(T0 - 2 * DAY, T0)  # the older nights
    Job(cfg, clock=FixedClock(T0 + 12 * HOUR)).run()
    got = stored(pg_url)
    assert [(r["uid"], r["started"] - T0) for r in got] == [("a", -2 * DAY), ("a", -DAY), ("a", 0),
                                                           ("b", -2 * DAY + 780), ("b", -DAY + 780), ("b", 780)]
    assert_same_sessions(got, recomputed(pg_url))
    conn = psycopg2.connect(pg_url)
    conn.cursor().execute("UPDATE pox_five_second_mean_sessions SET desat3 = 0, odi3 = 0")
    conn.commit()
    conn.close()
    Job(cfg, clock=FixedClock(T0 + 12 * HOUR)).rebuild_rollups()
    assert_same_sessions(stored(pg_url), got)


def test_the_readings_are_read_per_session_by_key_whatever_the_statistics(pg_url, standin):
    """Sessions are computed in the transaction that filled the tables, before any statistics exist: the sum of a
    session's reading counts must look each counted window's mean up by the archive's key (a join left to the
    planner's guess was a nested loop over a whole table per window, 14 s for one day of two devices), and it and
    the read of the lowest readings read only the session's part of the readings table."""
    feed_standin(standin, oximeter_nights(nights=1, first=T0))
    cfg = make_config(pg_url, standin.url, TAGS="uid", INITIAL_LOOKBACK="1d")
    assert Job(cfg, clock=FixedClock(T0 + 9 * HOUR)).run().rows > 0
    db = Database(cfg)
    conn = db.connect()
    queries = []

    class Recording(psycopg2.extensions.cursor):
        def execute(self, query, params=None):
            super().execute(query, params)
            queries.append(self.query)
    try:
        cur = conn.cursor(cursor_factory=Recording)
        read = archive.sessions(db, cfg).readings(cur, ("a",))
        del queries[:]
        read(T0, T0 + HOUR)
        plans = []
        for query in list(queries):
            cur.execute(b"EXPLAIN " + query)
            plans.append("\n".join(line for line, in cur.fetchall()))
        counts, _ = plans
        assert "Index Scan using pox_five_second_mean_pkey on pox_five_second_mean a" in counts, counts
        for plan in plans:
            assert "Index Scan using pox_five_second_mean_readings_pkey on pox_five_second_mean_readings r" in plan
            assert "Seq Scan" not in plan, plan
    finally:
        conn.close()


@pytest.mark.parametrize("change", ["SESSION_GAP", "ROLLUP_BELOW"])
def test_a_changed_session_setting_recomputes_every_session(pg_url, standin, change):
    feed_standin(standin, oximeter_nights(devices=("a",)))
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="3d")
    Job(cfg, clock=FixedClock(NOW)).run()
    assert len(stored(pg_url, tags=())) == 2
    setting = {"SESSION_GAP": "30m", "ROLLUP_BELOW": "spo2=93"}[change]
    Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="3d", **{change: setting}), clock=FixedClock(NOW)).run()
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute("SELECT obj_description(attrelid, 'pg_class'), col_description(attrelid, attnum) FROM pg_attribute "
                "WHERE attrelid = 'pox_five_second_mean_sessions'::regclass AND attname = 'below_s'")
    definition, threshold = cur.fetchone()
    cur.execute("SELECT count(*), min(below_s), min(t90_s) FROM pox_five_second_mean_sessions")
    count, below, t90 = cur.fetchone()
    conn.close()
    if change == "SESSION_GAP":
        assert "SESSION_GAP=1800s" in definition and count == 2
    else:
        assert threshold == "93" and "below=93" in definition and below > t90  # 93: dips from ~95 count


def _load_hours_of_cycles(pg_url, standin, *cycles):
    """An hour of 1-Hz SpO2 readings per cycle (its readings repeated in every 5-second window) with a pulse of
    60, loaded by one run; returns the first window's start."""
    start = T0 - T0 % W
    points = [("spo2", {"uid": "a"}, "spo2", start + s, cycles[s // HOUR][s % W]) for s in range(len(cycles) * HOUR)]
    points += [("spo2", {"uid": "a"}, "bpm", start + s, 60.0) for s in range(len(cycles) * HOUR)]
    feed_standin(standin, points)
    Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="1d"), clock=FixedClock(start + 3 * HOUR)).run()
    return start


def test_t90_and_t88_are_the_time_the_readings_spent_there_not_the_windows_whose_mean_did(pg_url, standin):
    """Readings 89, 91, 91, 88, 92 in every window: each mean is 90.2, so no window mean is below 90, yet
    two readings in five are below 90 and one is at or below 88: T90 is 40 % of the night, T88 20 %."""
    _load_hours_of_cycles(pg_url, standin, (89.0, 91.0, 91.0, 88.0, 92.0), (89.0, 91.0, 91.0, 88.0, 92.0))
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute("SELECT recorded_s, spo2_min, t90_s, t90_pct, t88_s, t88_pct FROM pox_five_second_mean_sessions")
    recorded, lowest_mean, t90, t90_pct, t88, t88_pct = cur.fetchone()
    conn.close()
    assert recorded == 2 * HOUR and math.isclose(lowest_mean, 90.2)
    assert (t90, t88) == (2 * HOUR * 2 // 5, 2 * HOUR // 5)
    assert math.isclose(t90_pct, 40.0) and math.isclose(t88_pct, 20.0)


def test_windows_whose_readings_are_all_90_or_more_count_none_below_without_a_row_of_counts(pg_url, standin):
    """The readings table keeps the windows with a reading below 90 (or a lowest reading far under their mean)
    alone: the other windows' means (90 or more) say their T90 and T88 exactly. An hour of 89, 91, 91, 88, 92
    in every window, then an hour of 92, 93, 93, 92, 93 (mean 92.6, lowest 92): T90 and T88 as the readings
    say, with rows for the first hour's windows only."""
    start = _load_hours_of_cycles(pg_url, standin, (89.0, 91.0, 91.0, 88.0, 92.0), (92.0, 93.0, 93.0, 92.0, 93.0))
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute("SELECT recorded_s, t90_s, t88_s FROM pox_five_second_mean_sessions")
    assert cur.fetchone() == (2 * HOUR, HOUR * 2 // 5, HOUR // 5)
    cur.execute("SELECT count(*), min(time) = to_timestamp(%s), max(time) < to_timestamp(%s) "
                "FROM pox_five_second_mean_readings", (start, start + HOUR))
    assert cur.fetchone() == (HOUR // W, True, True)
    conn.close()


def test_windows_whose_mean_is_below_90_count_only_their_readings_below(pg_url, standin):
    """A window whose mean is below 90 (at or below 88) but not all of whose readings are counts its share of
    readings, not the whole window: an hour of 91, 89, 88, 87, 89 (mean 88.8: four readings in five below 90, two
    at or below 88), then an hour of 89, 88, 87, 86, 90 (mean 88: four below 90, three at or below 88)."""
    _load_hours_of_cycles(pg_url, standin, (91.0, 89.0, 88.0, 87.0, 89.0), (89.0, 88.0, 87.0, 86.0, 90.0))
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute("SELECT recorded_s, t90_s, t88_s FROM pox_five_second_mean_sessions")
    assert cur.fetchone() == (2 * HOUR, 2 * HOUR * 4 // 5, HOUR * 2 // 5 + HOUR * 3 // 5)
    conn.close()


BRIEF_DIP = (94.0, 92.0, 91.0, 90.0, 89.5, 90.0, 91.0, 92.0, 94.0, 95.0)  # 10 s from a level of 95: means 91.3, 92.4


def brief_dips(hours=2, every=600):
    """1 Hz SpO2 at 95 with a 10-s dip (BRIEF_DIP) every `every` s, aligned with the windows: its lowest reading
    5.5 points under the level, its lowest window mean (91.3) 3.7 under it."""
    readings = {T0 + s: 95.0 for s in range(hours * HOUR)}
    for start in range(300, hours * HOUR - 60, every):
        for i, value in enumerate(BRIEF_DIP):
            readings[T0 + start + i] = value
    return readings


def test_a_brief_dip_whose_means_fall_short_of_4_points_counts_by_its_lowest_reading(pg_url, standin):
    """12 dips of 10 s whose lowest reading is 5.5 points under the level and whose 5-second means fall 3.7: on the
    means alone ODI3 of 6/h and no 4-point desaturation; through the loader, which keeps each window's lowest
    reading where it is more than LOWEST_MARGIN under its mean, 12 of at least 4 points as well."""
    readings = brief_dips()
    rows = means(readings)
    assert desaturations([r[0] for r in rows], [r[1] for r in rows], W) == {3: 12, 4: 0}
    points = [("spo2", {"uid": "a"}, "spo2", t, v) for t, v in readings.items()]
    points += [("spo2", {"uid": "a"}, "bpm", t, 60.0) for t in readings]
    feed_standin(standin, points)
    Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="1d"), clock=FixedClock(T0 + 3 * HOUR)).run()
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute("SELECT desat3, desat4, recorded_s FROM pox_five_second_mean_sessions")
    assert cur.fetchone() == (12, 12, 2 * HOUR)
    cur.execute("SELECT count(*), min(lowest), max(lowest) FROM pox_five_second_mean_readings WHERE lowest IS NOT NULL")
    assert cur.fetchone() == (24, 89.5, 90.0)  # the two windows of each dip
    conn.close()


def _archive_from_before(pg_url, standin, readings, dropped, definition):
    """Four hours of 1 Hz SpO2 readings ({t: value} from T0) with a pulse of 60: the first two loaded, the archive
    then made as an older version left it (its readings table without the column `dropped`, the sessions'
    definition another rule's), the rest loaded by the next run; (conn, cur) on it. Its 1 Hz readings are dropped
    too: the hours the next run reads again and after (3 of 4) are too few of the session's (SECONDS_COVER) to
    read it by them, so its means and the readings table count."""
    points = [("spo2", {"uid": "a"}, "spo2", t, v) for t, v in readings.items()]
    points += [("spo2", {"uid": "a"}, "bpm", t, 60.0) for t in readings]
    feed_standin(standin, [p for p in points if p[3] < T0 + 2 * HOUR])
    cfg = make_config(pg_url, standin.url, INITIAL_LOOKBACK="1d")
    Job(cfg, clock=FixedClock(T0 + 2 * HOUR)).run()
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute(f"ALTER TABLE pox_five_second_mean_readings DROP COLUMN {dropped}")
    cur.execute("DROP TABLE pox_five_second_mean_seconds")
    cur.execute("COMMENT ON TABLE pox_five_second_mean_sessions IS %s", (definition,))
    conn.commit()
    feed_standin(standin, [p for p in points if p[3] >= T0 + 2 * HOUR])
    Job(cfg, clock=FixedClock(T0 + 5 * HOUR)).run()
    return conn, cur


def test_an_archive_from_before_the_lowest_readings_is_recomputed_and_keeps_loading(pg_url, standin):
    """An archive of the rule before (desat-v2), whose readings table has no lowest column: the next run
    recomputes every session while the column is missing (by the means), adds it with its chunk, and keeps the
    lowest readings from then on. Two hours of brief dips before, two after: one session of 4 hours, its 24 dips
    3-point desaturations, and 4-point ones exactly where their windows' lowest readings are kept: the later 12
    and those of the earlier hours the run read again (LATE_DATA), not the others."""
    conn, cur = _archive_from_before(pg_url, standin, brief_dips(hours=4), "lowest",
                                     "SESSION_GAP=2700s desat-v2 t90-readings")
    cur.execute("SELECT count(*) FROM pox_five_second_mean_readings WHERE lowest IS NOT NULL")
    kept = cur.fetchone()[0]  # two windows a dip
    cur.execute("SELECT desat3, desat4, recorded_s FROM pox_five_second_mean_sessions")
    assert cur.fetchall() == [(24, kept // 2, 4 * HOUR)] and 24 <= kept < 48
    conn.close()


def test_a_readings_table_from_before_a_declared_count_gains_its_column_and_older_windows_count_by_their_means(
        pg_url, standin):
    """An archive whose readings table was made before T88 was declared (no atmost_88) and whose sessions were
    computed by another rule: the next run adds the column (NULL in the older rows), recomputes the sessions and
    counts T88 by the means where no count is kept and by the counts from then on. Readings 89, 88, 87, 86, 90
    in every window (mean 88: four below 90, three at or below 88), two hours before and two after; the session
    is read by its means (its 1 Hz readings dropped too)."""
    cycle = (89.0, 88.0, 87.0, 86.0, 90.0)
    readings = {T0 + s: cycle[s % W] for s in range(4 * HOUR)}
    conn, cur = _archive_from_before(pg_url, standin, readings, "atmost_88", "SESSION_GAP=2700s rule-before")
    cur.execute("SELECT count(*) FILTER (WHERE atmost_88 IS NULL), count(*) FILTER (WHERE atmost_88 = 3), count(*) "
                "FROM pox_five_second_mean_readings WHERE below_90 = 4")
    older, counted, windows = cur.fetchone()
    assert older > 0 and counted > 0 and older + counted == windows == 4 * HOUR // W
    cur.execute("SELECT recorded_s, t90_s, t88_s FROM pox_five_second_mean_sessions")
    assert cur.fetchall() == [(4 * HOUR, 4 * HOUR * 4 // 5, older * W + counted * 3)]
    cur.execute("SELECT obj_description('pox_five_second_mean_sessions'::regclass, 'pg_class')")
    assert rule() in cur.fetchone()[0]
    conn.close()


def test_sessions_whose_rule_files_changed_in_prose_alone_are_kept_and_relabelled(pg_url, standin, caplog):
    """A stored definition that names this rule and another source digest (the rule's files edited in their
    comments alone): the next run rewrites the comment and computes nothing again."""
    _load_hours_of_cycles(pg_url, standin, (96.0, 95.0, 96.0, 97.0, 96.0))
    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute("SELECT obj_description('pox_five_second_mean_sessions'::regclass, 'pg_class')")
    kept = cur.fetchone()[0]
    edited = kept.replace(source_digest(), "000000000000")
    cur.execute("COMMENT ON TABLE pox_five_second_mean_sessions IS %s", (edited,))
    conn.commit()
    caplog.set_level("INFO", logger="loader")
    Job(make_config(pg_url, standin.url, INITIAL_LOOKBACK="1d"), clock=FixedClock(T0 + 4 * HOUR)).run()
    cur.execute("SELECT obj_description('pox_five_second_mean_sessions'::regclass, 'pg_class')")
    assert cur.fetchone()[0] == kept
    assert not [r for r in caplog.records if "computing them again" in r.getMessage()]
    conn.close()
