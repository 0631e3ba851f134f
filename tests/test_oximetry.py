"""A night read from 1 Hz readings as an oximeter sends them (loader/oximetry.py): constructed readings
whose answers are known by construction."""

import random

import pytest

from loader.oximetry import clusters, mcgill, read_night

HOUR = 3600
WOBBLES = ([96, 96, 95], [96, 95], [97, 97, 96], [96, 96, 95, 95], [96, 96, 96, 95, 95, 95])


def baseline(seconds, rhythm=(96,)):
    return [rhythm[t % len(rhythm)] for t in range(seconds)]


def with_square_dips(readings, count, depth, length, top):
    """`count` dips to `top` - depth, `length` s each, spread evenly."""
    every = len(readings) // count
    for k in range(count):
        start = every * k + every // 2
        readings[start:start + length] = [top - depth] * length
    return readings


@pytest.mark.parametrize("rhythm", WOBBLES, ids=lambda r: ",".join(map(str, r)))
def test_twenty_dips_of_5_points_on_a_wobbling_baseline_are_twenty_desaturations(rhythm):
    readings = with_square_dips(baseline(8 * HOUR, rhythm), 20, 5, 30, max(rhythm))
    night = read_night(readings)
    assert (len(night.events[3]), len(night.events[4])) == (20, 20)
    assert night.artefacts == 0 and night.nadir == max(rhythm) - 5


def test_a_slow_fall_longer_than_an_event_hides_no_dip_inside_it():
    readings = baseline(2 * HOUR)
    for t in range(1800, 2400):  # ten minutes sinking from 96 to 92: a change of baseline, not an event
        readings[t] = 96 - round(4 * (t - 1800) / 600)
    readings[2400:3600] = [92] * 1200
    readings[2100:2130] = [readings[2099] - 5] * 30  # a 30-s dip of 5 points on the way down
    night = read_night(readings)
    assert (len(night.events[3]), len(night.events[4])) == (1, 1)


@pytest.mark.parametrize("pulse_disturbed", [False, True])
def test_a_6_s_artefact_10_points_low_on_a_flat_night_is_refused_and_leaves_the_nadir_alone(pulse_disturbed):
    readings, pulse = baseline(HOUR), [60] * HOUR
    readings[1000:1006] = [86] * 6
    if pulse_disturbed:
        pulse[1000:1006] = [95] * 6
    night = read_night(readings, pulse)
    assert (len(night.events[3]), night.artefacts, night.nadir) == (0, 1, 96)
    assert night.below["t90_s"] == 0


def test_an_artefact_as_a_device_smooths_it_is_refused_by_the_pulse_it_corrupted():
    readings, pulse = baseline(HOUR), [60] * HOUR
    readings[1000:1009] = [94, 92, 90, 89, 89, 90, 92, 94, 95]  # falls 2 points a second: blood could
    pulse[1000:1009] = [68, 76, 84, 88, 88, 84, 76, 68, 62]  # but the pulse jumped with it: motion
    night = read_night(readings, pulse)
    assert (len(night.events[3]), night.artefacts, night.nadir) == (0, 1, 96)
    quiet = read_night(readings, [60] * HOUR)  # the same dip with a steady pulse is a desaturation
    assert (len(quiet.events[3]), quiet.artefacts) == (1, 0)


def test_an_upward_spike_is_no_event_after_it():
    readings, pulse = baseline(HOUR, (94,)), [60] * HOUR
    readings[1000:1004] = [100] * 4
    pulse[1000:1004] = [100] * 4
    night = read_night(readings, pulse)
    assert len(night.events[3]) == 0 and night.artefacts == 0  # refused, but not a dip: none counted


@pytest.mark.parametrize("depth, counted", [(3, (1, 0)), (4, (1, 1))])
def test_a_15_s_dip_of_exactly_3_or_4_integer_points_counts_at_its_depth(depth, counted):
    readings = baseline(HOUR)
    shape = [96 - min(depth, k) for k in range(1, depth + 1)] + [96 - depth] * 4
    shape += [96 - depth + k for k in range(1, depth + 1)]
    readings[1000:1000 + len(shape)] = shape  # 96, 95, ... 92 held 5 s, ... 96: 15 s for 4 points
    night = read_night(readings)
    assert (len(night.events[3]), len(night.events[4])) == counted
    assert night.nadir == 96 - depth


def test_a_10_s_dip_of_3_points_counts_and_a_2_point_one_does_not():
    readings = baseline(HOUR)
    readings[1000:1010] = [95, 94, 93, 93, 93, 93, 94, 95, 96, 96]
    readings[2000:2010] = [95, 94, 94, 94, 94, 94, 95, 96, 96, 96]
    night = read_night(readings)
    assert (len(night.events[3]), len(night.events[4])) == (1, 0)


def test_t90_and_t88_count_the_seconds_read_below_90_and_at_or_below_88():
    readings = baseline(HOUR)
    readings[1000:1300] = [89] * 300  # five minutes at 89, then two at 88
    readings[1300:1420] = [88] * 120
    night = read_night(readings)
    assert (night.below["t90_s"], night.below["t88_s"], night.recorded_s) == (420, 120, HOUR)


def test_seconds_without_a_reading_end_a_dip_uncounted_and_are_not_recorded():
    readings = baseline(HOUR)
    readings[1000:1030] = [91] * 30
    readings[1015:1100] = [None] * 85  # the sensor sent nothing from the dip's middle on
    night = read_night(readings)
    assert len(night.events[3]) == 0 and night.recorded_s == HOUR - 85


def test_a_childs_night_of_three_clusters_reaching_below_85_is_mcgill_3():
    readings = baseline(8 * HOUR, (98,))
    for cluster in range(3):  # three clusters of 5 dips to 84 % within 10 minutes, hours apart
        for k in range(5):
            start = HOUR + cluster * 2 * HOUR + k * 120
            readings[start:start + 20] = [84] * 20
    night = read_night(readings)
    events = night.events[4]
    assert len(events) == 15 and clusters(events) == 3
    assert mcgill(events) == 3  # 3 clusters and at least 3 drops below 85 (none below 80)


def test_mcgill_is_1_with_two_clusters_and_2_or_4_by_how_deep_the_drops_go():
    readings = baseline(8 * HOUR, (98,))
    for cluster in range(2):
        for k in range(5):
            start = HOUR + cluster * 2 * HOUR + k * 120
            readings[start:start + 20] = [84] * 20
    assert mcgill(read_night(readings).events[4]) == 1
    for lowest, score in ((89, 2), (79, 4)):
        readings = baseline(8 * HOUR, (98,))
        for cluster in range(3):
            for k in range(5):
                start = HOUR + cluster * 2 * HOUR + k * 120
                readings[start:start + 20] = [lowest] * 20
        assert mcgill(read_night(readings).events[4]) == score


def test_a_pulse_that_jumps_by_itself_does_not_make_real_dips_artefacts():
    """An irregular rhythm (atrial fibrillation): beat-to-beat rates of 60-110 bpm, averaged over 3 s as a
    device does, jump 10 bpm within 2 s all night; the dips are desaturations, not motion."""
    rng = random.Random(7)
    beats = [rng.uniform(60, 110) for _ in range(HOUR)]
    pulse = [round(sum(beats[max(0, t - 2):t + 1]) / len(beats[max(0, t - 2):t + 1])) for t in range(HOUR)]
    readings = with_square_dips(baseline(HOUR), 10, 5, 25, 96)
    night = read_night(readings, pulse)
    assert (len(night.events[3]), night.artefacts) == (10, 0)
