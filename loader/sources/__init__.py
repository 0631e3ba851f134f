"""Sources: one per query dialect, each turning [start, end) into a Batch of window means.

Both sources return the same rows for the same data: epoch-aligned half-open windows labelled by
their start, the mean of every point in the window (across all series unless a tag is a key),
empty windows absent. Before loading, proof.prove_fields has them show that the names exist.
"""


def open_source(config):
    if config.language == "flux":
        from .flux import FluxSource
        return FluxSource(config)
    from .influxql import InfluxQLSource
    return InfluxQLSource(config)
