"""Numbers written into queries in the one form every parser reads.

InfluxQL (InfluxDB 1.x's parser, InfluxDB 3's grammar) and Flux have no exponent notation, and an
integer literal too large for int64 fails to parse; Python's repr writes 1e-07 and 1e+22. So a bound
is written as plain decimal digits with a point: 1e-07 as 0.0000001, 1e+22 as
10000000000000000000000.0 -- the same value, read as a float by all of them.
"""

from decimal import Decimal


def number(value: float) -> str:
    """A finite float as digits, a point and digits, never an exponent."""
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{value} has no literal in InfluxQL or Flux")
    text = format(Decimal(repr(value)), "f")  # repr: the shortest digits that read back as value
    return text if "." in text else text + ".0"
