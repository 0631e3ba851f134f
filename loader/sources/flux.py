"""The Flux source: POST /api/v2/query, answered as annotated CSV.

The request is the one influxdb-client's query_raw() sends (JSON body with the query and the CSV
dialect, `Authorization: Token`, `org` as a query parameter), made with urllib3, the HTTP library
influxdb-client itself uses. influxdb-client is not imported: its package imports numpy and
reactivex for its write API, which would cost every hourly run more start-up time and memory than
the request itself (figures in docs/benchmarks.md).

No DataFrame and no per-row objects: each chunk's response (a day of 5-second windows is about
1 MB, so memory stays bounded by CHUNK) is split into its tables, checked for the error table Flux
sends inside an HTTP 200 when a query fails part-way, and its data lines go to COPY as they are.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import urllib.parse
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Sequence, Tuple

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from ..errors import LoaderError, SourceQueryError, SourceRejected
from ..windows import HOUR, format_duration, parse_time, rfc3339
from .batch import READINGS, SECONDS_RESULT, Batch, Block, put_times, series_key, session_fields
from .http import classify_status, connection_pool, http_rejection, no_answer, server_trouble
from .literal import number
from .proof import numeric_fields, one_kind, other_kinds

if TYPE_CHECKING:
    from ..config import Config
    from ..late import Counts

log = logging.getLogger(__name__)

MEANS_RESULT = "means"
DROPPED_RESULT = "dropped"
LOWEST_RESULT = "dropped_lowest"
HIGHEST_RESULT = "dropped_highest"
SKIPPED_RESULT = "skipped"
READINGS_RESULT = "readings_"  # + a READINGS column
# Columns Flux adds itself; everything else in the pivoted table is a field or a key tag.
_FLUX_COLUMNS = {"", "result", "table", "_start", "_stop", "_time", "_measurement"}
# InfluxDB API reference, POST /api/v2/query: the Dialect object
DIALECT = {"header": True, "delimiter": ",", "annotations": ["datatype", "group", "default"],
           "commentPrefix": "#", "dateTimeFormat": "RFC3339"}

TOKEN_HELP = ("check that INFLUX_TOKEN is a current API token with read access to bucket {bucket} "
              "in organisation {org} (InfluxDB UI: Load Data > API Tokens)")


def flux_string(value: str) -> str:
    """A Flux string literal: backslash, double quote and interpolation ${ are escaped."""
    escaped = (str(value).replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
               .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def _field_filter(fields: Sequence[str]) -> str:
    return "filter(fn: (r) => " + " or ".join(f"r._field == {flux_string(f)}" for f in fields) + ")"


def build_query(config: Config, start: int, end: int, fields: Optional[Sequence[str]] = None,
                skipped: Sequence[str] = ()) -> str:
    """The Flux query for [start, end): group explicitly, average, label by window start, pivot.

    aggregateWindow labels each window by its stop unless timeSrc is "_start" (Flux docs, universe
    aggregateWindow). group() before it merges every series on purpose, so pivot never has two
    values for one (time, key tags) to silently overwrite. Beside the means: the count, lowest and
    highest of the readings refused by VALID_RANGES; and when a field is also held as text or
    booleans in some shards (skipped), only numbers are read (types.isType, Flux 0.141+) and the
    others counted.
    """
    fields = list(fields if fields is not None else config.fields)
    source = [f"from(bucket: {flux_string(config.bucket)})",
              f"  |> range(start: {rfc3339(start)}, stop: {rfc3339(end)})",
              f"  |> filter(fn: (r) => r._measurement == {flux_string(config.measurement)})"]
    if fields:
        source.append(f"  |> {_field_filter(fields)}")
    elif config.tags:
        # a field named like a key tag would land in the tag's column after pivot: leave it out
        # (FIELDS cannot name one: config refuses the overlap)
        clash = " and ".join(f"r._field != {flux_string(t)}" for t in config.tags)
        source.append(f"  |> filter(fn: (r) => {clash})")
    if skipped:
        numeric = " or ".join(f'types.isType(v: r._value, type: "{t}")' for t in ("float", "int", "uint"))
        head = ['import "types"', "", "raw = " + source[0], *source[1:], "data = raw",
                f"  |> filter(fn: (r) => {numeric})"]
        others = ["", "raw", f"  |> filter(fn: (r) => not ({numeric}))", '  |> group(columns: ["_field"])',
                  "  |> count()", f"  |> yield(name: {flux_string(SKIPPED_RESULT)})"]
    else:
        head, others = ["data = " + source[0], *source[1:]], []
    # a field written as int in one shard and float in another arrives as two tables of different
    # types; group() would refuse to merge them ("schema collision"), so cast first
    head.append("  |> toFloat()")
    group = ", ".join(flux_string(c) for c in ("_field",) + tuple(config.tags))
    keep = ", ".join(flux_string(c) for c in ("_time", "_field", "_value") + tuple(config.tags))
    body = ["", "kept = data"]
    refused = []
    if config.valid_ranges:
        in_range = " and ".join(
            f"(r._field != {flux_string(f)} or (r._value >= {number(lo)} and r._value <= {number(hi)}))"
            for f, (lo, hi) in sorted(config.valid_ranges.items()))
        body.append(f"  |> filter(fn: (r) => {in_range})")
        refused = ["", "refused = data", f"  |> filter(fn: (r) => not ({in_range}))", '  |> group(columns: ["_field"])',
                   "", "refused", "  |> count()", f"  |> yield(name: {flux_string(DROPPED_RESULT)})"]
        for name, fn in ((LOWEST_RESULT, "min"), (HIGHEST_RESULT, "max")):
            refused += ["", "refused", f"  |> {fn}()", '  |> keep(columns: ["_field", "_value"])',
                        f"  |> yield(name: {flux_string(name)})"]
    window = f"  |> aggregateWindow(every: {format_duration(config.window)}, fn: {{}}, createEmpty: false, " \
             'timeSrc: "_start")'
    body += [
        "", "kept",
        f"  |> group(columns: [{group}])",
        window.format("mean"),
        f"  |> keep(columns: [{keep}])",
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
        f"  |> yield(name: {flux_string(MEANS_RESULT)})",
    ]
    readings = []
    spo2 = config.session_spo2
    if spo2 and (not fields or spo2 in fields):  # T90, T88 and brief dips from readings: batch.READINGS
        tags = ", ".join(flux_string(t) for t in config.tags)
        for column, aggregate, compare, bound in READINGS:
            which = f"r._field == {flux_string(spo2)}" + (f" and r._value {compare} {number(bound)}" if compare else "")
            readings += ["", "kept", f"  |> filter(fn: (r) => {which})", f"  |> group(columns: [{tags}])",
                         window.format(aggregate), f'  |> keep(columns: ["_time", "_value"{", " * bool(tags)}{tags}])',
                         f"  |> yield(name: {flux_string(READINGS_RESULT + column)})"]
    seconds = []
    wanted = session_fields(config, fields)
    if wanted:  # the night's 1 Hz readings (seconds.py): the mean of each second's readings, by device
        group = ", ".join(flux_string(c) for c in ("_field",) + tuple(config.tags))
        seconds = ["", "kept", f"  |> {_field_filter(wanted)}", f"  |> group(columns: [{group}])",
                   '  |> aggregateWindow(every: 1s, fn: mean, createEmpty: false, timeSrc: "_start")',
                   f"  |> keep(columns: [{keep}])", f"  |> yield(name: {flux_string(SECONDS_RESULT)})"]
    return "\n".join(head + body + readings + seconds + refused + others) + "\n"


def counts_pipeline(config: Config, fields: Sequence[str]) -> List[str]:
    """What follows from |> range for the readings per hour, series and field: every reading, valid or
    not (they compare with what InfluxDB holds later); a bare count InfluxDB pushes down to storage
    (no point reaches the query engine), one table per series, labelled by the hour's start."""
    return [f"filter(fn: (r) => r._measurement == {flux_string(config.measurement)})", _field_filter(fields),
            f'aggregateWindow(every: {format_duration(HOUR)}, fn: count, createEmpty: false, timeSrc: "_start")',
            'drop(columns: ["_start", "_stop", "_measurement"])']


# columns of a counts table that are not the series' tags
_COUNT_COLUMNS = {"", "result", "table", "_time", "_value", "_field"}


def parse_annotated_csv(text: str, tags: Sequence[str]) -> Batch:
    """Split a Flux annotated-CSV response into Blocks of data lines; raise on an error table.

    Tables arrive one after another, separated by a blank line; each starts with its
    #datatype/#group/#default lines and its header. Python looks at each table once, not at each
    line: the data lines go to COPY as they are (less their first three cells, the annotation,
    result and table columns), so a month of windows costs no per-value work here. A field missing
    from some tables (a series without bpm) is simply absent from their block.
    """
    batch = Batch(tags=tuple(tags))
    annotations: dict = {}
    for header, data in _tables(text, annotations):
        kind = _classify(header, tags)
        if "\n#" in data or data.startswith("#"):
            raise SourceQueryError("malformed CSV from InfluxDB: annotations inside a table")
        if kind == "error":
            _raise_query_error(header, data)
        if kind == "counted":
            _counted(batch, header, data, annotations.get("default") or [])
            continue
        if not data:
            continue
        result = _result_name(header, data, annotations.get("default") or [])
        if result == SECONDS_RESULT:
            _seconds(batch, header, data)
            continue
        if result.startswith(READINGS_RESULT):
            batch.readings.append(_readings_block(header, data, result[len(READINGS_RESULT):]))
            continue
        if header[:3] != ["", "result", "table"] or any(c in _FLUX_COLUMNS for c in header[3:] if c != "_time"):
            raise SourceQueryError(f"unexpected columns in the Flux response: {', '.join(header)}")
        columns = ["time" if name == "_time" else name for name in header[3:]]
        for name in columns:
            if name != "time" and name not in tags and name not in batch.fields:
                batch.fields.append(name)
        rows = data.count("\n") + 1
        # the annotation, result and table cells (",,0,") are not archived: cut them off every line
        # in one pass, so COPY reads the rest straight into the archive's columns
        stripped, cut = _LEADING_CELLS.subn("", data)
        if cut != rows:
            raise SourceQueryError("malformed CSV from InfluxDB: a row without result and table cells")
        batch.blocks.append(Block(columns=columns, text=stripped + "\n", rows=rows))
    return batch


_LEADING_CELLS = re.compile(r"^,[^,\n]*,[^,\n]*,", re.M)


def _result_name(header: List[str], data: str, default: List[str]) -> str:
    """The yield a table belongs to: its rows' result cell, or, when that is empty, the #default annotation's."""
    at = header.index("result")
    first = next(csv.reader([data.split("\n", 1)[0]]))
    return (first[at] if len(first) > at else "") or (default[at] if len(default) > at else "")


def _readings_block(header: List[str], data: str, column: str) -> Block:
    """A Block of one READINGS column: its table's _time, _value (a count, or the lowest) and key tags."""
    if column not in {c for c, _, _, _ in READINGS} or header[:3] != ["", "result", "table"]:
        raise SourceQueryError(f"unexpected table in the Flux response: result {READINGS_RESULT + column!r}")
    columns = ["time" if c == "_time" else column if c == "_value" else c for c in header[3:]]
    stripped, cut = _LEADING_CELLS.subn("", data)
    rows = data.count("\n") + 1
    if cut != rows:
        raise SourceQueryError("malformed CSV from InfluxDB: a row without result and table cells")
    return Block(columns=columns, text=stripped + "\n", rows=rows)


def _seconds(batch: Batch, header: List[str], data: str) -> None:
    """1-second means (one table per field and device, a row for each second with readings; tables of one
    layout share a section) into batch.seconds. Python looks at each table once, not at each second: a table
    is split once and each column is a stride of it (the csv module reads it where a value is quoted: a tag
    holding a comma), and each run of consecutive seconds becomes bytes in one pass (batch.put_times)."""
    if "_field" not in header or "_value" not in header or "table" not in header:
        raise SourceQueryError(f"unexpected columns in the Flux response: {', '.join(header)}")
    at_table, at_time, at_value, at_field = (header.index(c) for c in ("table", "_time", "_value", "_field"))
    at_tags = [header.index(t) for t in batch.tags]
    for table in _each_table(data):
        columns: Sequence[Sequence[str]]
        if '"' in table:  # a quoted cell may hold a comma: the csv module reads it
            columns = list(zip(*csv.reader(table.split("\n"))))
        else:  # one split for the whole table, then each column a stride of it
            cells = table.replace("\n", ",").split(",")
            columns = [cells[i::len(header)] for i in range(len(header))] if len(cells) % len(header) == 0 else []
        if len(columns) != len(header) or len(set(columns[at_table])) != 1:
            raise SourceQueryError("malformed CSV from InfluxDB: a row of another width than its header")
        device = tuple(columns[i][0] for i in at_tags)
        put_times(batch.seconds.setdefault((device, columns[at_field][0]), {}), columns[at_time], columns[at_value])


def _each_table(data: str) -> Iterator[str]:
    """The data lines of each table in a section, a table at a time (a day of a field's seconds is 86,400
    lines: split whole, the section's cells would hold every table's at once). A table's lines come together;
    the next begins at the first line whose table cell (the third) differs."""
    at = 0
    while at < len(data):
        line_end = data.find("\n", at)
        first = data[at:line_end if line_end >= 0 else len(data)]
        cells = next(csv.reader([first]))
        if len(cells) < 3:
            raise SourceQueryError("malformed CSV from InfluxDB: a row without result and table cells")
        other = re.compile(r"\n(?!" + re.escape(first[:first.index(",", first.index(",") + 1) + 1])
                           + re.escape(cells[2]) + ",)")
        found = other.search(data, at)
        end = found.start() if found else len(data)
        yield data[at:end]
        at = end + 1


def _counted(batch: Batch, header: List[str], data: str, default: List[str]) -> None:
    """A table of what the query counted beside the means, by field: the refused readings' count,
    lowest and highest, or the readings skipped as not numbers; which one, its result name says (in
    each row's result cell, or, when that is empty, in the #default annotation)."""
    at_field, at_value, at_result = header.index("_field"), header.index("_value"), header.index("result")
    for row in csv.reader(data.split("\n")):
        if not row:
            continue
        result = row[at_result] or (default[at_result] if len(default) > at_result else "")
        name, value = row[at_field], row[at_value]
        if result == DROPPED_RESULT:
            batch.dropped[name] = int(value)
        elif result in (LOWEST_RESULT, HIGHEST_RESULT):
            low, high = batch.refused_seen.get(name, (None, None))
            batch.refused_seen[name] = (float(value), high) if result == LOWEST_RESULT else (low, float(value))
        elif result == SKIPPED_RESULT:
            batch.skipped[name] = batch.skipped.get(name, 0) + int(value)
        else:
            raise SourceQueryError(f"unexpected table in the Flux response: result {result!r}")


def _tables(text: str, annotations: Optional[dict] = None) -> Iterator[Tuple[List[str], str]]:
    """(header cells, data lines) of each table of an annotated-CSV response, its annotations skipped;
    with annotations={} that dict holds, for the table just yielded, its annotation rows' cells by name
    ("datatype", "group", "default")."""
    for section in text.replace("\r\n", "\n").split("\n\n"):
        body = section.strip("\n")
        if annotations is not None and body.startswith("#"):
            annotations.clear()
        while body.startswith("#"):
            if annotations is not None:
                cells = next(csv.reader([body.split("\n", 1)[0]]))
                annotations[cells[0][1:]] = cells
            body = body[body.find("\n") + 1:] if "\n" in body else ""
        if not body:
            continue
        line_end = body.find("\n")
        header_line, data = (body, "") if line_end < 0 else (body[:line_end], body[line_end + 1:])
        yield next(csv.reader([header_line])), data


# Flux's annotated-CSV datatypes, named as InfluxQL's SHOW FIELD KEYS names them
FLUX_TYPES = {"double": "float", "long": "integer", "unsignedLong": "unsigned", "string": "string",
              "boolean": "boolean"}


def _is_error_table(header: List[str]) -> bool:
    return "error" in header and "reference" in header


def _raise_query_error(header: List[str], data: str) -> None:
    row = next(csv.reader([data.split("\n", 1)[0]]))
    raise SourceQueryError(f"InfluxDB reported a query error: {row[header.index('error')]}")


def _classify(header: List[str], tags: Sequence[str]) -> str:
    if _is_error_table(header):
        return "error"
    if "_time" in header and "result" in header:
        missing = [t for t in tags if t not in header]
        if missing:
            raise SourceQueryError(f"Flux response table lacks column(s) {', '.join(missing)}")
        return "means"
    if "_field" in header and "_value" in header:
        return "counted"
    raise SourceQueryError(f"unexpected table in the Flux response: columns {', '.join(header)}")


class FluxSource:
    # what the measurement holds, asked of InfluxDB once per run (field_keys): {field: kind}, its tag keys and
    # {field: every kind seen}
    _field_keys: Optional[dict] = None
    _tag_keys: Optional[list] = None
    _kinds: Optional[dict] = None

    def __init__(self, config: Config) -> None:
        self.config = config
        self._fields = list(config.fields) or None
        self._http = connection_pool(config)
        self._url = f"{config.influx_url}/api/v2/query?" + urllib.parse.urlencode({"org": config.influx_org})
        self._headers = {"Authorization": "Token " + config.influx_token.reveal(),
                         "Content-Type": "application/json", "Accept": "application/csv",
                         "Accept-Encoding": "identity", "User-Agent": "influx-archive"}

    def close(self) -> None:
        self._http.clear()

    def _post(self, query: str) -> str:
        """The response body of a Flux query as text; HTTP and transport failures as typed errors."""
        body = json.dumps({"query": query, "type": "flux", "dialect": DIALECT})
        try:
            response = self._http.request("POST", self._url, body=body.encode("utf-8"), headers=self._headers)
        except (Urllib3Error, OSError) as exc:
            raise no_answer(self.config.influx_url, exc) from None
        if response.status >= 300:
            raise self._http_error(response)
        try:
            return response.data.decode("utf-8")  # a chunk is bounded: a day is ~1 MB
        except UnicodeDecodeError as exc:
            raise SourceQueryError(f"malformed CSV from InfluxDB: {exc}") from None

    def counts(self, start: int, end: int) -> Counts:
        """{(hour start, series, field): readings} in [start, end), as InfluxDB counts them (a part hour
        at either end is labelled by where the range cuts it). A field typed differently in two shards
        comes as two tables: their counts add up."""
        if self._fields is None:
            self._fields = self.numeric_fields()
        found: dict = {}
        if not self._fields or start >= end:
            return found
        for header, data in self._lookup(start, end, counts_pipeline(self.config, self._fields)):
            if "_time" not in header or "_field" not in header:
                raise SourceQueryError(f"unexpected columns in the Flux response: {', '.join(header)}")
            at_time, at_field, at_value = header.index("_time"), header.index("_field"), header.index("_value")
            tag_columns = [(i, c) for i, c in enumerate(header) if c not in _COUNT_COLUMNS]
            for row in csv.reader(data.split("\n")):
                if len(row) == len(header) and row[at_value] not in ("", "0"):
                    key = (parse_time(row[at_time]), series_key({c: row[i] for i, c in tag_columns}), row[at_field])
                    found[key] = found.get(key, 0) + int(row[at_value])
        return found

    def fetch(self, start: int, end: int) -> Batch:
        if self._fields is None:
            self._fields = self.numeric_fields()
        counts = self.counts(start, end)  # before the means: they then hold at least these readings
        others = self.other_kinds()
        skipped = [f for f in self._fields if f in others]
        query = build_query(self.config, start, end, self._fields, skipped)
        log.debug("flux query:\n%s", query)
        text = self._post(query)
        try:
            batch = parse_annotated_csv(text, self.config.tags)
        except csv.Error as exc:
            raise SourceQueryError(f"malformed CSV from InfluxDB: {exc}") from None
        batch.start, batch.end, batch.counts = start, end, counts
        batch.readings_field = self.config.session_spo2
        return batch

    def field_keys(self, start: int, stop: int) -> Dict[str, str]:
        """{field: type} of the measurement's fields with data in [start, stop), types named as
        InfluxQL's SHOW FIELD KEYS names them; empty when it has none.

        Flux tells a value's type only in the #datatype annotation of the tables that carry it, so
        this reads one point per series: first(), which InfluxDB answers from storage without
        scanning (a bare aggregate pushed down). A field written as integer in one shard and float in
        another comes as two tables, both numeric; one with any non-numeric table is not."""
        kinds: dict = {}
        annotations: dict = {}
        tags: set = set()
        pipeline = [f"filter(fn: (r) => r._measurement == {flux_string(self.config.measurement)})", "first()"]
        for header, data in self._lookup(start, stop, pipeline, annotations):
            datatypes = annotations.get("datatype") or []
            if "_field" not in header or len(datatypes) != len(header):
                raise SourceQueryError(f"unexpected columns in the Flux response: {', '.join(header)}")
            tags.update(c for c in header if c not in _FLUX_COLUMNS | {"_value", "_field"})
            kind = FLUX_TYPES.get(datatypes[header.index("_value")], datatypes[header.index("_value")])
            at = header.index("_field")
            for row in csv.reader(data.split("\n")):
                if len(row) > at:
                    kinds.setdefault(row[at], set()).add(kind)
        self._field_keys = {name: one_kind(found) for name, found in kinds.items()}
        self._kinds, self._tag_keys = kinds, sorted(tags)
        return self._field_keys

    def other_kinds(self) -> Dict[str, List[str]]:
        """{field: [non-numeric types]} of the fields InfluxDB holds as numbers in some shards and not
        in others (the proof asks field_keys first)."""
        if self._kinds is None:
            raise SourceQueryError("the fields were not looked up before loading")
        return other_kinds(self._kinds)

    def tag_keys(self, start: int, stop: int) -> List[str]:
        """The tag keys of the measurement's series with data in [start, stop) (the columns of the
        tables field_keys read)."""
        if self._tag_keys is None:
            self.field_keys(start, stop)
        return self._tag_keys or []

    def numeric_fields(self) -> List[str]:
        """The fields to load when FIELDS is empty (proof.numeric_fields of what field_keys found:
        the proof asks first)."""
        if self._field_keys is None:
            raise SourceQueryError("the fields were not looked up before loading")
        return numeric_fields(self._field_keys, self.config)

    def measurements(self, start: int, stop: int, limit: int = 20) -> List[str]:
        """Names of measurements with data in [start, stop) (for advice when ours has none)."""
        return self._distinct("_measurement", start, stop, limit=limit)

    def _distinct(self, column: str, start: int, stop: int, limit: Optional[int] = None) -> List[str]:
        """Distinct values of a column: the pipeline schema.tagValues() is made of (Flux stdlib,
        influxdata/influxdb/schema), which InfluxDB answers from its index without reading points."""
        pipeline = [f"keep(columns: [{flux_string(column)}])", "group()", f"distinct(column: {flux_string(column)})"]
        if limit:
            pipeline.append(f"limit(n: {int(limit)})")
        values = []
        for header, data in self._lookup(start, stop, pipeline):
            at = header.index("_value")
            for row in csv.reader(data.split("\n")):
                if len(row) > at and row[at] not in values:
                    values.append(row[at])
        return values

    def _lookup(self, start: int, stop: int, pipeline: Sequence[str],
                annotations: Optional[dict] = None) -> Iterator[Tuple[List[str], str]]:
        """(header, data) of each table that from(bucket) |> range(start, stop) |> pipeline answers
        (the look-ups before loading); an error table raises, a table without _value is unexpected.
        annotations as for _tables."""
        lines = [f"from(bucket: {flux_string(self.config.bucket)})",
                 f"  |> range(start: {rfc3339(start)}, stop: {rfc3339(stop)})"] + [f"  |> {p}" for p in pipeline]
        for header, data in _tables(self._post("\n".join(lines) + "\n"), annotations):
            if _is_error_table(header):
                if data:
                    _raise_query_error(header, data)
                continue
            if "_value" not in header:
                raise SourceQueryError(f"unexpected columns in the Flux response: {', '.join(header)}")
            yield header, data

    def _http_error(self, response: urllib3.BaseHTTPResponse) -> LoaderError:
        status = response.status
        try:
            payload = json.loads(response.data)
            message = payload.get("message", "") if isinstance(payload, dict) else ""
        except ValueError:
            message = response.data[:200].decode("utf-8", "replace").strip()
        message = message or response.reason or ""
        if classify_status(status) == "retry":
            return server_trouble(status, message, response.headers)
        if status in (401, 403):
            return SourceRejected(f"InfluxDB refused the token (HTTP {status})",
                                  hint=TOKEN_HELP.format(bucket=self.config.bucket, org=self.config.influx_org))
        if status == 404:
            return SourceRejected(f"InfluxDB answered HTTP 404: {message or 'not found'}",
                                  hint=f"check INFLUX_BUCKET ({self.config.bucket}) and INFLUX_ORG "
                                       f"({self.config.influx_org}); is this account Cloud Serverless? "
                                       "Then set INFLUX_QUERY_LANGUAGE=influxql")
        return http_rejection(self.config.influx_url, status, message) or SourceQueryError(
            f"InfluxDB rejected the query (HTTP {status}): {message}")
