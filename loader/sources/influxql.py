"""The InfluxQL source: GET /query on the v1-compatible API (Cloud Serverless, InfluxDB 1.x/2.x).

`db` is the bucket (Cloud needs a DBRP mapping for it); the token goes in `Authorization: Token`,
or user/password as HTTP Basic for InfluxDB 1.x with auth. Never in the URL, so never in a log.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from typing import TYPE_CHECKING, Collection, Dict, List, Mapping, Optional, Sequence, Set, Tuple
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from ..config import DEDICATED_HOST, SERVERLESS_HOST
from ..errors import LoaderError, SourceQueryError, SourceRejected
from ..windows import HOUR, format_duration, parse_time
from .batch import READINGS, Batch, Block, put_times, series_key, session_fields
from .http import classify_status, connection_pool, http_rejection, no_answer, server_kind, server_trouble
from .literal import number
from .proof import mixed_kinds, numeric_fields, one_kind, other_kinds

if TYPE_CHECKING:
    from ..config import Config
    from ..late import Counts

log = logging.getLogger(__name__)

DBRP_HELP = ("InfluxQL reads a bucket through a DBRP mapping named like the bucket. Create one with "
             "`influx v1 dbrp create --db {bucket} --rp autogen --bucket-id <id> --default` "
             "(or in the Cloud UI), or set INFLUX_BUCKET to the mapped database name")
DATABASE_HELP = ("this InfluxDB 1.x server has no database {bucket}; set INFLUX_BUCKET to one it has "
                 "({databases})")
DATABASE3_HELP = ("InfluxDB 3 (Core, Enterprise, Cloud Dedicated) reads a database by its name, with no DBRP "
                  "mapping, and has none called {bucket}: set INFLUX_BUCKET to one it has (`influxdb3 show "
                  "databases`; on Cloud Dedicated `influxctl database list`)")
TOKEN_HELP = ("check that INFLUX_TOKEN is a current token with read access to {bucket} "
              "(InfluxDB 1.x: INFLUX_USERNAME/INFLUX_PASSWORD)")
PASSWORD_HELP = ("check INFLUX_USERNAME and INFLUX_PASSWORD: a user of this InfluxDB 1.x server with READ on "
                 "{bucket} (`SHOW GRANTS FOR \"<user>\"` as an admin)")
PATH_HELP = ("INFLUX_URL should be the server's base URL, e.g. http://raspberrypi.local:8086, without "
             "/query or another path after the port")
# "database not found: x" (1.x, 2.x), "Database x not found" (InfluxDB 3: influxdb3_server's query
# executor, its v1 /query handler answering it as an HTTP error)
NOT_FOUND = re.compile(r"(?i)\b(database|bucket)\b.*\bnot found\b|\bnot found\b.*\b(database|bucket)\b")
# InfluxDB 3 Core up to 3.6 (influxdb3_server http.rs, Error::InfluxqlSingleStatement; HTTP 500)
ONE_STATEMENT = re.compile(r"(?i)only one InfluxQl statement")


def influx_kind(url: str, headers: Mapping[str, str], message: str = "") -> str:
    """Which InfluxDB answered, for advice: '1.x' (X-Influxdb-Version 1.x), '3' (InfluxDB 3 Core or
    Enterprise -- X-Influxdb-Version 3.x or its own "Database x not found" wording -- or Cloud Dedicated,
    whose URLs end in .influxdb.io), or 'dbrp': InfluxDB 2.x and Cloud Serverless (URLs on
    cloud2.influxdata.com), which map InfluxQL's database to a bucket through a DBRP mapping."""
    host = (urlsplit(url).hostname or "").lower()
    if host.endswith(SERVERLESS_HOST):
        return "dbrp"
    if host.endswith(DEDICATED_HOST):
        return "3"
    kind = server_kind(headers)
    if kind in ("1.x", "2.x"):
        return "1.x" if kind == "1.x" else "dbrp"
    if kind == "3.x" or re.search(r"\bDatabase \S.* not found\b", message or ""):
        return "3"
    return "dbrp"


def identifier(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + str(name).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def source_name(config: Config) -> str:
    """FROM target: the measurement, or "db"."rp"."measurement" when a retention policy is set."""
    if config.retention_policy:
        return ".".join(identifier(p) for p in (config.bucket, config.retention_policy, config.measurement))
    return identifier(config.measurement)


def field_ref(name: str, cast: Collection[str] = ()) -> str:
    """A field in a SELECT or WHERE: `"bpm"::float` when InfluxDB holds it with several types (a type per
    shard; InfluxDB 1.x casts integers and skips strings and booleans, and without the cast a range whose
    shards hold only strings fails: "unsupported mean iterator type")."""
    return identifier(name) + ("::float" if name in cast else "")


def build_statements(config: Config, fields: Sequence[str], start: int, end: int, cast: Collection[str] = (),
                     skipped: Optional[Dict[str, List[str]]] = None) -> List[Tuple[str, str, str]]:
    """One SELECT for the fields without a valid range, one per ranged field (a WHERE on a field
    value drops whole points in InfluxQL, so each ranged field needs its own), plus the count, lowest
    and highest of the readings refused, and, for a field InfluxDB also holds as text or booleans
    (skipped: {field: [types]}), the count of those. Returns [(kind, field, statement)]; the plain fields'
    statement names no field ("")."""
    where_time = f"time >= {start}s AND time < {end}s"
    group = f"GROUP BY time({format_duration(config.window)})"
    for tag in config.tags:
        group += f", {identifier(tag)}"
    group += " fill(none)"
    src = source_name(config)
    statements: list = []
    plain = [f for f in fields if f not in config.valid_ranges]
    if plain:
        cols = ", ".join(f"mean({field_ref(f, cast)}) AS {identifier(f)}" for f in plain)
        statements.append(("means", "", f"SELECT {cols} FROM {src} WHERE {where_time} {group}"))
    for f in fields:
        ref = field_ref(f, cast)
        if f in config.valid_ranges:
            lo, hi = config.valid_ranges[f]
            inside = f"{ref} >= {number(lo)} AND {ref} <= {number(hi)}"
            statements.append(("means", f, f"SELECT mean({ref}) AS {identifier(f)} FROM {src} "
                                           f"WHERE {where_time} AND {inside} {group}"))
            outside = f"({ref} < {number(lo)} OR {ref} > {number(hi)})"
            statements.append(("dropped", f, f"SELECT count({ref}), min({ref}), max({ref}) FROM {src} "
                                             f"WHERE {where_time} AND {outside}"))
        for kind in (skipped or {}).get(f, ()):
            statements.append(("skipped", f, f"SELECT count({identifier(f)}::{kind}) FROM {src} WHERE {where_time}"))
    spo2 = config.session_spo2
    if spo2 and spo2 in fields:  # T90, T88 and brief dips from readings: batch.READINGS, per window
        ref = field_ref(spo2, cast)
        within: list = []
        if spo2 in config.valid_ranges:
            lo, hi = config.valid_ranges[spo2]
            within = [f"{ref} >= {number(lo)} AND {ref} <= {number(hi)}"]
        for column, aggregate, compare, bound in READINGS:
            where = " AND ".join([where_time, *within] + ([f"{ref} {compare} {number(bound)}"] if compare else []))
            statements.append(("readings", column,
                               f"SELECT {aggregate}({ref}) AS {identifier(column)} FROM {src} WHERE {where} {group}"))
    by_second = group.replace(f"GROUP BY time({format_duration(config.window)})", "GROUP BY time(1s)", 1)
    for f in session_fields(config, fields):  # the night's 1 Hz readings (seconds.py)
        ref = field_ref(f, cast)
        where = where_time
        if f in config.valid_ranges:
            lo, hi = config.valid_ranges[f]
            where += f" AND {ref} >= {number(lo)} AND {ref} <= {number(hi)}"
        statements.append(("seconds", f, f"SELECT mean({ref}) AS {identifier(f)} FROM {src} WHERE {where} {by_second}"))
    return statements


def build_counts(config: Config, fields: Sequence[str], start: int, end: int, cast: Collection[str] = ()) -> str:
    """Readings per hour, series and field in [start, end), counted by InfluxDB from storage: every
    reading, valid or not, so they compare with what InfluxDB holds later. GROUP BY * gives each
    series (tag set) apart."""
    cols = ", ".join(f"count({field_ref(f, cast)}) AS {identifier(f)}" for f in fields)
    return (f"SELECT {cols} FROM {source_name(config)} WHERE time >= {start}s AND time < {end}s "
            f"GROUP BY time({format_duration(HOUR)}), * fill(none)")


class InfluxQLSource:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._fields = list(config.fields) or None
        self._http = connection_pool(config)
        self._headers = {"Accept": "application/json"}
        # what the measurement holds, asked of InfluxDB once per run (field_keys): {field: kind}, {field: kinds}
        self._field_keys: Optional[dict] = None
        self._kinds: Optional[dict] = None
        if config.influx_token:
            self._headers["Authorization"] = "Token " + config.influx_token.reveal()
        elif config.influx_username:
            self._headers.update(urllib3.make_headers(
                basic_auth=f"{config.influx_username}:{config.influx_password.reveal()}"))

    def close(self) -> None:
        self._http.clear()

    def _query(self, statement: str) -> List[dict]:
        """Run InfluxQL; return the list of results (one per statement)."""
        url = f"{self.config.influx_url}/query"
        params = {"db": self.config.bucket, "q": statement}
        if self.config.retention_policy:
            params["rp"] = self.config.retention_policy
        try:
            response = self._http.request("GET", url, fields=params, headers=self._headers)
        except (Urllib3Error, OSError) as exc:
            raise no_answer(self.config.influx_url, exc) from None
        body = response.data
        try:
            # numbers stay the text InfluxDB wrote: they go to COPY as text, and writing a float back
            # out (repr) costs more than all the rest of a chunk's parsing
            payload = json.loads(body, parse_float=str, parse_int=str) if body else {}
        except ValueError:
            payload = None
        if response.status >= 300:
            message = (payload or {}).get("error") if isinstance(payload, dict) else None
            message = message or (body[:200].decode("utf-8", "replace").strip() if body else response.reason) or ""
            # by meaning first: InfluxDB 3 says these with HTTP 500, which is otherwise worth a retry
            if NOT_FOUND.search(message or ""):
                raise self._not_found(message, response.headers)
            if ONE_STATEMENT.search(message or ""):
                raise SourceRejected(f"InfluxDB refused the query (HTTP {response.status}): {message}",
                                     hint="this server takes one InfluxQL statement per request and "
                                          "influx-archive sends one; please report this with the server's version")
            if classify_status(response.status) == "retry":
                raise server_trouble(response.status, message, response.headers)
            if response.status in (401, 403):
                raise SourceRejected(f"InfluxDB refused the credentials (HTTP {response.status}): {message}",
                                     hint=(PASSWORD_HELP if self.config.influx_username else TOKEN_HELP).format(
                                         bucket=self.config.bucket))
            if response.status == 404:
                raise SourceRejected(f"nothing answers InfluxQL at {url} (HTTP 404)", hint=PATH_HELP)
            raise http_rejection(url, response.status, message) or SourceQueryError(
                f"InfluxDB rejected the query (HTTP {response.status}): {message}")
        if not isinstance(payload, dict) or "results" not in payload:
            raise SourceQueryError("InfluxDB answered with a body that is not InfluxQL JSON",
                                   hint=PATH_HELP if "/" in self.config.influx_url.split("://", 1)[1] else "")
        results = payload["results"]
        for result in results:
            error = result.get("error")
            if error:
                if NOT_FOUND.search(error):
                    raise self._not_found(error, response.headers)
                if "authoriz" in error or "permission" in error:
                    raise SourceRejected(f"InfluxDB refused: {error}",
                                         hint=TOKEN_HELP.format(bucket=self.config.bucket))
                raise SourceQueryError(f"InfluxDB reported a query error: {error}")
        return results

    def _not_found(self, message: str, headers: Mapping[str, str]) -> SourceRejected:
        """The database (bucket) is missing: the advice depends on the kind of server (see
        influx_kind)."""
        bucket = self.config.bucket
        kind = influx_kind(self.config.influx_url, headers, message)
        if kind == "3":
            return SourceRejected(f"InfluxDB answered: {message}", hint=DATABASE3_HELP.format(bucket=bucket))
        if kind == "1.x":
            try:
                series = self._query("SHOW DATABASES")[0].get("series", [])
                names = [row[0] for s in series for row in s.get("values", []) if not row[0].startswith("_")]
            except LoaderError:
                names = []
            databases = ", ".join(names) if names else "it has none: CREATE DATABASE one and write to it"
            return SourceRejected(f"InfluxDB answered: {message}",
                                  hint=DATABASE_HELP.format(bucket=bucket, databases=databases))
        return SourceRejected(f"InfluxDB answered: {message}", hint=DBRP_HELP.format(bucket=bucket))

    def field_keys(self, start: Optional[int] = None, stop: Optional[int] = None) -> Dict[str, str]:
        """{field: type} of the measurement (SHOW FIELD KEYS: every retained shard, so the range is not
        used); empty when the measurement has no data in the database."""
        if self._field_keys is None:
            kinds: dict = {}
            for series in self._query(f"SHOW FIELD KEYS FROM {source_name(self.config)}")[0].get("series", []):
                for name, kind in series.get("values", []):
                    kinds.setdefault(name, set()).add(kind)
            self._field_keys = {name: one_kind(found) for name, found in kinds.items()}
            self._kinds = kinds
        return self._field_keys

    def other_kinds(self) -> Dict[str, List[str]]:
        """{field: [non-numeric types]} of the fields InfluxDB holds as numbers in some shards and not
        in others (InfluxQL's cast names: string, boolean)."""
        self.field_keys()
        return other_kinds(self._kinds or {})

    def _cast(self) -> Set[str]:
        self.field_keys()
        return mixed_kinds(self._kinds or {})

    def tag_keys(self, start: Optional[int] = None, stop: Optional[int] = None) -> List[str]:
        """The measurement's tag keys (SHOW TAG KEYS: every retained shard)."""
        series = self._query(f"SHOW TAG KEYS FROM {source_name(self.config)}")[0].get("series", [])
        return sorted({row[0] for s in series for row in s.get("values", [])})

    def measurements(self, start: Optional[int] = None, stop: Optional[int] = None, limit: int = 20) -> List[str]:
        """Names of measurements in the database (for advice when ours has no data)."""
        series = self._query(f"SHOW MEASUREMENTS LIMIT {int(limit)}")[0].get("series", [])
        return [row[0] for s in series for row in s.get("values", [])]

    def numeric_fields(self) -> List[str]:
        """The fields to load when FIELDS is empty (proof.numeric_fields of SHOW FIELD KEYS)."""
        return numeric_fields(self.field_keys(), self.config)

    def counts(self, start: int, end: int) -> Counts:
        """{(hour start, series, field): readings} in [start, end), as InfluxDB counts them (a part hour
        at the start is labelled by its hour). Tags come as the series' "tags" (1.x, 2.x) or as columns
        (InfluxDB 3)."""
        if self._fields is None:
            self._fields = self.numeric_fields()
        found: dict = {}
        if not self._fields or start >= end:
            return found
        for series in self._single(build_counts(self.config, self._fields, start, end, self._cast())):
            columns = list(series.get("columns") or [])
            tags = dict(series.get("tags") or {})
            for values in series.get("values") or []:
                row = dict(zip(columns, values))
                key_tags = dict(tags, **{c: v for c, v in row.items() if c != "time" and c not in self._fields})
                hour = parse_time(row["time"])
                for f in self._fields:
                    if row.get(f) not in (None, "", "0"):
                        key = (hour, series_key(key_tags), f)
                        found[key] = found.get(key, 0) + int(row[f])
        return found

    def fetch(self, start: int, end: int) -> Batch:
        """The chunk's window means: one request per statement (InfluxDB 3 Core up to 3.6 refuses
        several in one), every answer in hand before the Batch exists, so a chunk is written whole
        or not at all. With one statement (no VALID_RANGES) each series' rows go to CSV as they
        came; with several, each row's fields are merged from the statements' answers."""
        if self._fields is None:
            self._fields = self.numeric_fields()
        tags = tuple(self.config.tags)
        batch = Batch(tags=tags, start=start, end=end, fields=list(self._fields))
        if not self._fields:
            return batch
        batch.counts = self.counts(start, end)  # before the means: they then hold at least these readings
        statements = build_statements(self.config, self._fields, start, end, self._cast(), self.other_kinds())
        answers = [(kind, fld, self._single(statement)) for kind, fld, statement in statements]
        means = [series for kind, _, series in answers if kind == "means"]
        for kind, fld, series in answers:
            rows = [row for s in series for row in s.get("values") or [] if row[1] not in (None, "0")]
            if kind == "dropped" and rows:
                batch.dropped[fld] = int(rows[0][1])
                batch.refused_seen[fld] = (float(rows[0][2]), float(rows[0][3]))
            elif kind == "skipped" and rows:
                batch.skipped[fld] = batch.skipped.get(fld, 0) + int(rows[0][1])
            elif kind == "seconds":
                self._seconds(batch, fld, series, tags)
            elif kind == "readings":
                batch.readings.extend(self._blocks(series, tags, extra=(fld,)))
                batch.readings_field = self.config.session_spo2
        if len(means) == 1:
            batch.blocks.extend(self._blocks(means[0], tags))
        else:
            block = self._merged(means, tags)
            if block:
                batch.blocks.append(block)
        return batch

    def _seconds(self, batch: Batch, name: str, all_series: List[dict], tags: Sequence[str]) -> None:
        """One field's 1-second means into batch.seconds, by device: the series' tags (1.x, 2.x), or columns
        of its rows (InfluxDB 3); each run of consecutive seconds made bytes in one pass (batch.put_times)."""
        for series in all_series:
            columns, tag_values, outside = self._layout(series, tags, extra=(name,))
            at_value = columns.index(name)
            at_tags = [columns.index(t) if t in columns else None for t in tags]
            given = dict(zip(outside, tag_values))
            rows = series.get("values") or []
            if all(i is None for i in at_tags):
                devices = {tuple(given.get(t, "") for t in tags): rows}
            else:
                devices = {}
                for row in rows:
                    device = tuple(given.get(t, "") if i is None else (row[i] or "") for t, i in zip(tags, at_tags))
                    devices.setdefault(device, []).append(row)
            for device, found in devices.items():
                put_times(batch.seconds.setdefault((device, name), {}), [row[0] for row in found],
                          [row[at_value] for row in found])

    def _single(self, statement: str) -> List[dict]:
        """The series of one statement's answer."""
        results = self._query(statement)
        if len(results) != 1:
            raise SourceQueryError(f"InfluxDB answered {len(results)} results to one statement")
        return results[0].get("series") or []

    def _layout(self, series: dict, tags: Sequence[str],
                extra: Sequence[str] = ()) -> Tuple[List[str], List[str], List[str]]:
        """(the CSV columns of a series' rows, its tag values not among them): InfluxDB 1.x and 2.x give
        GROUP BY tags as the series' "tags"; InfluxDB 3's v1 API as columns of the rows. extra: the
        columns a statement names besides the fields (a READINGS column)."""
        columns = list(series.get("columns") or [])
        known = {"time", *tags, *(extra or self._fields or ())}
        stray = [c for c in columns if c not in known]
        if not columns or columns[0] != "time" or stray:
            raise SourceQueryError(f"unexpected columns in InfluxDB's answer: {', '.join(columns)}")
        series_tags = series.get("tags") or {}
        outside = [t for t in tags if t not in columns]
        return columns, [series_tags.get(t) or "" for t in outside], outside

    def _blocks(self, all_series: List[dict], tags: Sequence[str], extra: Sequence[str] = ()) -> List[Block]:
        """One Block per series, its rows written by the csv module as they came (no per-value work
        in Python); the series' tag values, when not columns, appended to every line."""
        blocks = []
        for series in all_series:
            values = series.get("values") or []
            if not values:
                continue
            columns, tag_values, outside = self._layout(series, tags, extra)
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(values)
            text = out.getvalue()
            if outside:
                suffix = io.StringIO()
                csv.writer(suffix, lineterminator="").writerow(["", *tag_values])
                text = text.replace("\n", suffix.getvalue() + "\n")
            blocks.append(Block(columns=columns + outside, text=text, rows=len(values)))
        return blocks

    def _merged(self, answers: List[List[dict]], tags: Sequence[str]) -> Optional[Block]:
        """One Block from several statements' answers (a statement per ranged field), merged by
        window and tag values."""
        fields = self._fields or []
        width = 1 + len(tags) + len(fields)
        at = {c: i for i, c in enumerate(["time", *tags, *fields])}
        by_key: dict = {}
        for all_series in answers:
            for series in all_series:
                columns, tag_values, outside = self._layout(series, tags)
                slots = [(i, at[c]) for i, c in enumerate(columns)]
                fixed = [(at[t], v) for t, v in zip(outside, tag_values)]
                key_slots = [i for i, c in enumerate(columns) if c == "time" or c in tags]
                for values in series.get("values") or []:
                    key = (tuple(values[i] for i in key_slots), tuple(tag_values))
                    row = by_key.get(key)
                    if row is None:
                        row = by_key[key] = [None] * width
                        for slot, value in fixed:
                            row[slot] = value
                    for i, slot in slots:
                        if values[i] is not None:
                            row[slot] = values[i]
        if not by_key:
            return None
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(by_key.values())
        return Block(columns=["time", *tags, *fields], text=out.getvalue(), rows=len(by_key))
