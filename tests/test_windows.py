"""Window arithmetic and time formats (pure functions, no servers)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loader.humanize import human_duration
from loader.windows import chunks, floor_to, format_duration, parse_duration, parse_time, rfc3339


@given(st.integers(0, 4_000_000_000), st.integers(0, 400_000), st.sampled_from([5, 60, 3600, 86400]))
def test_chunks_cover_the_range_exactly_with_aligned_inner_boundaries(start, length, chunk):
    pieces = chunks(start, start + length, chunk)
    assert sum(hi - lo for lo, hi in pieces) == length
    for (lo, hi), (nlo, _) in zip(pieces, pieces[1:]):
        assert hi == nlo and hi % chunk == 0 and lo < hi
    if pieces:
        assert pieces[0][0] == start and pieces[-1][1] == start + length


@given(st.integers(-10**10, 10**10), st.sampled_from([1, 5, 10, 60, 300, 86400]))
def test_floor_is_the_start_of_the_containing_window(t, width):
    start = floor_to(t, width)
    assert start % width == 0 and start <= t < start + width


@given(st.integers(0, 4_000_000_000))
def test_rfc3339_round_trips(t):
    assert parse_time(rfc3339(t)) == t


def test_durations_and_times():
    assert [parse_duration(x) for x in ("5s", "15m", "1h", "30d", "2w")] == [5, 900, 3600, 2592000, 1209600]
    assert format_duration(86400) == "1d" and format_duration(5) == "5s" and format_duration(5400) == "90m"
    assert [human_duration(s) for s in (45, 724, 10804, 190000)] == ["45s", "12m 4s", "3h 0m", "2d 4h"]
    assert parse_time("2026-10-01T02:00:00+02:00") == parse_time("2026-10-01T00:00:00Z")
    for bad in ("5", "5 minutes", "-1h"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_time("2026-10-01T00:00:00")
