"""The proof a source gives before anything is loaded: the measurement and the fields exist.

Without it an empty answer could be a misspelt name rather than no readings, and the watermark
would move past data InfluxDB still has; the free plan deletes it after 30 days.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Set

from ..config import control_characters
from ..errors import SourceRejected
from ..windows import rfc3339

if TYPE_CHECKING:
    from ..config import Config
    from . import Source

log = logging.getLogger(__name__)

NUMERIC_TYPES = ("float", "integer", "unsigned")  # as InfluxQL's SHOW FIELD KEYS names them


def one_kind(kinds: Iterable[str]) -> str:
    """One type for a field seen with several (InfluxDB keeps a type per shard, so a point `bpm="--"`
    written on another day makes bpm a string there): float if any, else another numeric one -- the
    field's numeric readings are averaged and the others skipped --, else the non-numeric one."""
    numeric = sorted(k for k in kinds if k in NUMERIC_TYPES)
    if numeric:
        return "float" if "float" in numeric else numeric[0]
    return sorted(kinds)[0]


def other_kinds(kinds: Dict[str, Set[str]]) -> Dict[str, List[str]]:
    """{field: [its non-numeric types]} of the fields that are numeric in some shards and not in others,
    from {field: set of types}: their numeric readings are loaded, these counted as skipped."""
    return {name: sorted(k for k in found if k not in NUMERIC_TYPES) for name, found in kinds.items()
            if any(k in NUMERIC_TYPES for k in found) and any(k not in NUMERIC_TYPES for k in found)}


def mixed_kinds(kinds: Dict[str, Set[str]]) -> Set[str]:
    """The fields seen with more than one type, from {field: set of types}."""
    return {name for name, found in kinds.items() if len(found) > 1}


# The measurement and fields must have data somewhere in the last 30 days (the free plan's retention)
# or INITIAL_LOOKBACK if longer: a device that is merely off for a while still proves its names.
PROOF_SPAN = 30 * 86400


def prove_fields(config: Config, source: Source, load_start: Optional[int], now: float) -> List[str]:
    """The fields to load from load_start on, once the source has shown that the measurement and every
    field in FIELDS have data between the older of load_start and PROOF_SPAN (or INITIAL_LOOKBACK) ago,
    and now. Until then an empty answer could mean a misspelt name rather than no data, and the
    watermark would move past readings that are still there: SourceRejected (exit 2) instead, naming
    what the source does have."""
    now = int(now)
    start = now - max(config.initial_lookback, PROOF_SPAN)
    start = start if load_start is None else min(start, load_start)
    stop = now + 1
    found = source.field_keys(start, stop)
    where = f"bucket {config.bucket!r} between {rfc3339(start)} and {rfc3339(stop)}"
    if not found:
        others = [m for m in source.measurements(start, stop) if m != config.measurement]
        hint = (f"check INFLUX_MEASUREMENT; measurements there: {', '.join(others)}" if others else
                "check INFLUX_BUCKET and INFLUX_MEASUREMENT, and that the device is writing")
        if not others and config.language == "influxql" and not config.retention_policy:
            hint += (f"; data kept in a retention policy other than the database's default needs "
                     f"INFLUX_RETENTION_POLICY (`SHOW RETENTION POLICIES ON \"{config.bucket}\"` lists them)")
        raise SourceRejected(f"measurement {config.measurement!r} has no data in {where}; nothing was loaded",
                             hint=hint)
    skipped = source.other_kinds()
    listing = ", ".join(f"{name} ({kind}" + (f"; {', '.join(skipped[name])} in some shards" if name in skipped else "")
                        + ")" for name, kind in found.items())
    missing = [f for f in config.fields if f not in found]
    if missing:
        raise SourceRejected(f"FIELDS names {', '.join(missing)}, which measurement {config.measurement!r} does "
                             f"not have in {where}; nothing was loaded",
                             hint=f"its fields: {listing}; correct FIELDS, or leave it empty for every numeric field")
    _prove_named(config, source, found, listing, where, start, stop)
    wrong = [f for f in config.fields if found[f] not in NUMERIC_TYPES]
    if wrong:
        raise SourceRejected(f"FIELDS names {', '.join(wrong)}, which is not numeric and has no mean",
                             hint=f"its fields: {listing}; FIELDS may name only numeric (float, integer, "
                                  "unsigned) fields")
    numeric = list(config.fields) or numeric_fields(found, config, warn=False)
    if not numeric:
        raise SourceRejected(f"measurement {config.measurement!r} has no numeric fields in {where}",
                             hint=f"its fields: {listing}")
    for name in numeric:
        if name in skipped:
            log.warning("field %s holds %s readings in some of InfluxDB's shards beside numbers: they have no mean "
                        "and are skipped; the numeric ones are loaded (each chunk's log says how many were skipped)",
                        name, " and ".join(skipped[name]))
    return numeric


def named_fields(config: Config) -> Dict[str, List[str]]:
    """{setting: [field names]} of the settings the user set that name fields (a default names fields
    only where InfluxDB has them: the oximeter's ranges, spo2 and bpm for sessions)."""
    named = {"VALID_RANGES": list(config.valid_ranges), "ROLLUP_BELOW": list(config.rollup_below),
             "SESSION_SPO2": [config.session_spo2] if config.session_spo2 else [],
             "SESSION_PULSE": [config.session_pulse] if config.session_pulse else []}
    return {key: names for key, names in named.items() if key in config.explicit and names}


def _prove_named(config: Config, source: Source, found: Dict[str, str], listing: str, where: str, start: int,
                 stop: int) -> None:
    """Every field another setting names, and every TAGS name, exists in InfluxDB (SourceRejected naming
    them all, with what InfluxDB has): a misspelt name would otherwise range, count or summarise
    nothing, quietly."""
    problems = [f"{key} names {', '.join(repr(n) for n in names if n not in found)}"
                for key, names in named_fields(config).items() if any(n not in found for n in names)]
    hints = [f"its fields: {listing}"] if problems else []
    if config.tags:
        tags = source.tag_keys(start, stop)
        missing = [t for t in config.tags if t not in tags]
        if missing:
            problems.append(f"TAGS names {', '.join(repr(t) for t in missing)}")
            hints.append(f"its tags: {', '.join(tags) or 'none'}")
    if problems:
        raise SourceRejected(f"{'; '.join(problems)}, which measurement {config.measurement!r} does not have in "
                             f"{where}; nothing was loaded", hint="; ".join(hints) + "; correct the names")


def numeric_fields(found: Dict[str, str], config: Config, warn: bool = True) -> List[str]:
    """The fields an empty FIELDS loads, from {field: type}: the numeric ones, less any named like a
    key tag (its values would land in the tag's column) or with a control character in its name."""
    fields = []
    for name, kind in found.items():
        if kind not in NUMERIC_TYPES:
            continue
        why = control_characters(name) or ("is a key tag's name" if name in config.tags else None)
        if why:
            if warn:
                log.warning("field %r is not archived: its name %s", name, why)
            continue
        fields.append(name)
    return fields
