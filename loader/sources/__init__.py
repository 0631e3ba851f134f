"""Sources: one per query dialect, each turning [start, end) into a Batch of window means.

Both sources return the same rows for the same data: epoch-aligned half-open windows labelled by
their start, the mean of every point in the window (across all series unless a tag is a key),
empty windows absent.
"""

from dataclasses import dataclass, field


@dataclass
class Batch:
    """Window means for one chunk, ready for COPY: each row is [time, *tag values, *field values].

    time is an RFC 3339 string, tag values are strings ('' where a series lacks the tag), field
    values are strings or None (no reading of that field in the window).
    """

    tags: tuple
    fields: list
    rows: list = field(default_factory=list)
    dropped: dict = field(default_factory=dict)  # field -> readings outside VALID_RANGES


def open_source(config):
    if config.language == "flux":
        from .flux import FluxSource
        return FluxSource(config)
    from .influxql import InfluxQLSource
    return InfluxQLSource(config)
