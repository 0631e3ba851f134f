"""The Flux source: POST /api/v2/query through influxdb-client (query_raw), as annotated CSV.

No DataFrame and no per-row objects: each chunk's response (a day of 5-second windows is about
1 MB, so memory stays bounded by CHUNK) is split into its tables, checked for the error table Flux
sends inside an HTTP 200 when a query fails part-way, and its data lines go to COPY as they are.
"""

import csv
import logging
import re

from influxdb_client import InfluxDBClient
from influxdb_client.domain.dialect import Dialect
from influxdb_client.rest import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from ..errors import SourceQueryError, SourceRejected, SourceUnavailable
from ..windows import format_duration, rfc3339
from . import Batch, Block
from .http import classify_status, no_answer, retry_after_seconds

log = logging.getLogger(__name__)

MEANS_RESULT = "means"
DROPPED_RESULT = "dropped"
# Columns Flux adds itself; everything else in the pivoted table is a field or a key tag.
_FLUX_COLUMNS = {"", "result", "table", "_start", "_stop", "_time", "_measurement"}
_DIALECT = Dialect(header=True, delimiter=",", annotations=["datatype", "group", "default"],
                   comment_prefix="#", date_time_format="RFC3339")

TOKEN_HELP = ("check that INFLUX_TOKEN is a current API token with read access to bucket {bucket} "
              "in organisation {org} (InfluxDB UI: Load Data > API Tokens)")


def flux_string(value):
    """A Flux string literal: backslash, double quote and interpolation ${ are escaped."""
    escaped = (str(value).replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
               .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def flux_float(value):
    return repr(float(value)) if "e" not in repr(float(value)) else f"{float(value):.17f}"


def build_query(config, start, end):
    """The Flux query for [start, end): group explicitly, average, label by window start, pivot.

    aggregateWindow labels each window by its stop unless timeSrc is "_start" (Flux docs, universe
    aggregateWindow). group() before it merges every series on purpose, so pivot never has two
    values for one (time, key tags) to silently overwrite.
    """
    lines = [
        f"data = from(bucket: {flux_string(config.bucket)})",
        f"  |> range(start: {rfc3339(start)}, stop: {rfc3339(end)})",
        f"  |> filter(fn: (r) => r._measurement == {flux_string(config.measurement)})",
    ]
    if config.fields:
        fields = " or ".join(f"r._field == {flux_string(f)}" for f in config.fields)
        lines.append(f"  |> filter(fn: (r) => {fields})")
    elif config.tags:
        # a field named like a key tag would land in the tag's column after pivot: leave it out
        # (FIELDS cannot name one: config refuses the overlap)
        clash = " and ".join(f"r._field != {flux_string(t)}" for t in config.tags)
        lines.append(f"  |> filter(fn: (r) => {clash})")
    group = ", ".join(flux_string(c) for c in ("_field",) + tuple(config.tags))
    keep = ", ".join(flux_string(c) for c in ("_time", "_field", "_value") + tuple(config.tags))
    body = [
        "",
        "data",
    ]
    if config.valid_ranges:
        in_range = " and ".join(
            f"(r._field != {flux_string(f)} or (r._value >= {flux_float(lo)} and r._value <= {flux_float(hi)}))"
            for f, (lo, hi) in sorted(config.valid_ranges.items()))
        body.append(f"  |> filter(fn: (r) => {in_range})")
        dropped = [
            "",
            "data",
            f"  |> filter(fn: (r) => not ({in_range}))",
            '  |> group(columns: ["_field"])',
            "  |> count()",
            f"  |> yield(name: {flux_string(DROPPED_RESULT)})",
        ]
    else:
        dropped = []
    body += [
        # a field written as int in one shard and float in another arrives as two tables of different
        # types; group() would refuse to merge them ("schema collision"), so cast first
        "  |> toFloat()",
        f"  |> group(columns: [{group}])",
        f'  |> aggregateWindow(every: {format_duration(config.window)}, fn: mean, createEmpty: false, timeSrc: "_start")',
        f"  |> keep(columns: [{keep}])",
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
        f"  |> yield(name: {flux_string(MEANS_RESULT)})",
    ]
    return "\n".join(lines + body + dropped) + "\n"


def parse_annotated_csv(text, tags):
    """Split a Flux annotated-CSV response into Blocks of data lines; raise on an error table.

    Tables arrive one after another, separated by a blank line; each starts with its
    #datatype/#group/#default lines and its header. Python looks at each table once, not at each
    line: the data lines go to COPY as they are (less their first three cells, the annotation,
    result and table columns), so a month of windows costs no per-value work here. A field missing
    from some tables (a series without bpm) is simply absent from their block.
    """
    batch = Batch(tags=tuple(tags))
    for section in text.replace("\r\n", "\n").split("\n\n"):
        body = section.strip("\n")
        if not body:
            continue
        while body.startswith("#"):
            body = body[body.find("\n") + 1:] if "\n" in body else ""
        if not body:
            continue
        line_end = body.find("\n")
        header_line, data = (body, "") if line_end < 0 else (body[:line_end], body[line_end + 1:])
        header = next(csv.reader([header_line]))
        kind = _classify(header, tags)
        if "\n#" in data or data.startswith("#"):
            raise SourceQueryError("malformed CSV from InfluxDB: annotations inside a table")
        if kind == "error":
            row = next(csv.reader([data.split("\n", 1)[0]]))
            raise SourceQueryError(f"InfluxDB reported a query error: {row[header.index('error')]}")
        if kind == "dropped":
            for row in csv.reader(data.split("\n")):
                if row:
                    batch.dropped[row[header.index("_field")]] = int(row[header.index("_value")])
            continue
        if not data:
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


def _classify(header, tags):
    if "error" in header and "reference" in header:
        return "error"
    if "_time" in header and "result" in header:
        missing = [t for t in tags if t not in header]
        if missing:
            raise SourceQueryError(f"Flux response table lacks column(s) {', '.join(missing)}")
        return "means"
    if "_field" in header and "_value" in header:
        return "dropped"
    raise SourceQueryError(f"unexpected table in the Flux response: columns {', '.join(header)}")


class FluxSource:
    def __init__(self, config):
        self.config = config
        self._client = InfluxDBClient(
            url=config.influx_url, token=config.influx_token.reveal(), org=config.influx_org,
            timeout=config.timeout * 1000, verify_ssl=True, ssl_ca_cert=config.ca_file or None,
            enable_gzip=False)
        self._query_api = self._client.query_api()

    def close(self):
        self._client.close()

    def fetch(self, start, end):
        query = build_query(self.config, start, end)
        log.debug("flux query:\n%s", query)
        try:
            response = self._query_api.query_raw(query, dialect=_DIALECT)
            try:
                body = response.read(decode_content=True)  # a chunk is bounded: a day is ~1 MB
            finally:
                response.release_conn()
            batch = parse_annotated_csv(body.decode("utf-8"), self.config.tags)
            batch.start, batch.end = start, end
            return batch
        except ApiException as exc:
            raise self._api_error(exc) from None
        except (Urllib3Error, OSError) as exc:
            raise no_answer(self.config.influx_url, exc) from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise SourceQueryError(f"malformed CSV from InfluxDB: {exc}") from None

    def check(self):
        """Run a tiny query that proves the token can read the bucket."""
        query = (f"from(bucket: {flux_string(self.config.bucket)}) |> range(start: -1m) "
                 f"|> filter(fn: (r) => r._measurement == {flux_string(self.config.measurement)}) |> limit(n: 1)")
        try:
            for _ in self._query_api.query_csv(query, dialect=_DIALECT):
                pass
        except ApiException as exc:
            raise self._api_error(exc) from None
        except (Urllib3Error, OSError) as exc:
            raise no_answer(self.config.influx_url, exc) from None

    def _api_error(self, exc):
        message = getattr(exc, "message", None) or exc.reason or ""
        if not exc.status:  # influxdb-client's way of saying the request got no HTTP answer at all
            return no_answer(self.config.influx_url, exc.reason or "no response")
        kind = classify_status(exc.status)
        if kind == "retry":
            return SourceUnavailable(f"InfluxDB answered HTTP {exc.status} {message}".strip(),
                                     retry_after=retry_after_seconds(exc.headers))
        if exc.status in (401, 403):
            return SourceRejected(f"InfluxDB refused the token (HTTP {exc.status})",
                                  hint=TOKEN_HELP.format(bucket=self.config.bucket, org=self.config.influx_org))
        if exc.status == 404:
            return SourceRejected(f"InfluxDB: {message or 'not found'}",
                                  hint=f"check INFLUX_BUCKET ({self.config.bucket}) and INFLUX_ORG "
                                       f"({self.config.influx_org}); is this account Cloud Serverless? "
                                       "Then set INFLUX_QUERY_LANGUAGE=influxql")
        return SourceQueryError(f"InfluxDB rejected the query (HTTP {exc.status}): {message}")
