"""Sources: one per query dialect, each turning [start, end) into a Batch of window means.

Both sources return the same rows for the same data: epoch-aligned half-open windows labelled by
their start, the mean of every point in the window (across all series unless a tag is a key),
empty windows absent. Before loading, proof.prove_fields has them show that the names exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from ..config import Config
    from .flux import FluxSource
    from .influxql import InfluxQLSource

    Source = Union[FluxSource, InfluxQLSource]  # what open_source gives: one per query dialect


def open_source(config: Config) -> Source:
    if config.language == "flux":
        from .flux import FluxSource
        return FluxSource(config)
    from .influxql import InfluxQLSource
    return InfluxQLSource(config)
