"""The InfluxQL source: GET /query on the v1-compatible API (Cloud Serverless, InfluxDB 1.x/2.x).

`db` is the bucket (Cloud needs a DBRP mapping for it); the token goes in `Authorization: Token`,
or user/password as HTTP Basic for InfluxDB 1.x with auth. Never in the URL, so never in a log.
"""

import csv
import io
import json
import logging
import re

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from ..errors import LoaderError, SourceQueryError, SourceRejected, SourceUnavailable
from ..windows import format_duration
from .batch import Batch, Block
from .http import classify_status, http_rejection, no_answer, retry_after_seconds, server_kind
from .proof import NUMERIC_TYPES

log = logging.getLogger(__name__)

DBRP_HELP = ("InfluxQL reads a bucket through a DBRP mapping named like the bucket. Create one with "
             "`influx v1 dbrp create --db {bucket} --rp autogen --bucket-id <id> --default` "
             "(or in the Cloud UI), or set INFLUX_BUCKET to the mapped database name")
DATABASE_HELP = ("this InfluxDB 1.x server has no database {bucket}; set INFLUX_BUCKET to one it has "
                 "({databases})")
TOKEN_HELP = ("check that INFLUX_TOKEN is a current token with read access to {bucket} "
              "(InfluxDB 1.x: INFLUX_USERNAME/INFLUX_PASSWORD)")
PATH_HELP = ("INFLUX_URL should be the server's base URL, e.g. http://raspberrypi.local:8086, without "
             "/query or another path after the port")
# "database not found: x" (1.x, 2.x), "Database x not found" (InfluxDB 3's v1 query API)
NOT_FOUND = re.compile(r"(?i)\b(database|bucket)\b.*\bnot found\b|\bnot found\b.*\b(database|bucket)\b")


def identifier(name):
    """An InfluxQL double-quoted identifier."""
    return '"' + str(name).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def string_literal(value):
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def number(value):
    return repr(float(value))


def source_name(config):
    """FROM target: the measurement, or "db"."rp"."measurement" when a retention policy is set."""
    if config.retention_policy:
        return ".".join(identifier(p) for p in (config.bucket, config.retention_policy, config.measurement))
    return identifier(config.measurement)


def build_statements(config, fields, start, end):
    """One SELECT for the fields without a valid range, one per ranged field (a WHERE on a field
    value drops whole points in InfluxQL, so each ranged field needs its own), plus counts of the
    readings dropped. Returns [(kind, field-or-None, statement)]."""
    where_time = f"time >= {start}s AND time < {end}s"
    group = f"GROUP BY time({format_duration(config.window)})"
    for tag in config.tags:
        group += f", {identifier(tag)}"
    group += " fill(none)"
    src = source_name(config)
    statements = []
    plain = [f for f in fields if f not in config.valid_ranges]
    if plain:
        cols = ", ".join(f"mean({identifier(f)}) AS {identifier(f)}" for f in plain)
        statements.append(("means", None, f"SELECT {cols} FROM {src} WHERE {where_time} {group}"))
    for f in fields:
        if f in config.valid_ranges:
            lo, hi = config.valid_ranges[f]
            inside = f"{identifier(f)} >= {number(lo)} AND {identifier(f)} <= {number(hi)}"
            statements.append(("means", f, f"SELECT mean({identifier(f)}) AS {identifier(f)} FROM {src} "
                                           f"WHERE {where_time} AND {inside} {group}"))
            outside = f"({identifier(f)} < {number(lo)} OR {identifier(f)} > {number(hi)})"
            statements.append(("dropped", f, f"SELECT count({identifier(f)}) FROM {src} "
                                             f"WHERE {where_time} AND {outside}"))
    return statements


class InfluxQLSource:
    def __init__(self, config):
        self.config = config
        self._fields = list(config.fields) or None
        self._field_keys = None
        self._http = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED", ca_certs=config.ca_file or None,
            timeout=urllib3.Timeout(connect=min(10, config.timeout), read=config.timeout),
            retries=False)
        self._headers = {"Accept": "application/json"}
        if config.influx_token:
            self._headers["Authorization"] = "Token " + config.influx_token.reveal()
        elif config.influx_username:
            self._headers.update(urllib3.make_headers(
                basic_auth=f"{config.influx_username}:{config.influx_password.reveal()}"))

    def close(self):
        self._http.clear()

    def _query(self, statement):
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
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = None
        if response.status >= 300:
            message = (payload or {}).get("error") if isinstance(payload, dict) else None
            message = message or (body[:200].decode("utf-8", "replace").strip() if body else response.reason)
            if classify_status(response.status) == "retry":
                raise SourceUnavailable(f"InfluxDB answered HTTP {response.status} {message}",
                                        retry_after=retry_after_seconds(response.headers))
            if response.status in (401, 403):
                raise SourceRejected(f"InfluxDB refused the credentials (HTTP {response.status}): {message}",
                                     hint=TOKEN_HELP.format(bucket=self.config.bucket))
            if NOT_FOUND.search(message or ""):
                raise self._not_found(message, response.headers)
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

    def _not_found(self, message, headers):
        """The database (bucket) is missing: the advice depends on the kind of server."""
        bucket = self.config.bucket
        if server_kind(headers) == "1.x":
            try:
                series = self._query("SHOW DATABASES")[0].get("series", [])
                names = [row[0] for s in series for row in s.get("values", []) if not row[0].startswith("_")]
            except LoaderError:
                names = []
            databases = ", ".join(names) if names else "it has none: CREATE DATABASE one and write to it"
            return SourceRejected(f"InfluxDB answered: {message}",
                                  hint=DATABASE_HELP.format(bucket=bucket, databases=databases))
        return SourceRejected(f"InfluxDB answered: {message}", hint=DBRP_HELP.format(bucket=bucket))

    def field_keys(self, start=None, stop=None):
        """{field: type} of the measurement (SHOW FIELD KEYS: every retained shard, so the range is not
        used); empty when the measurement has no data in the database."""
        if self._field_keys is None:
            found = {}
            for series in self._query(f"SHOW FIELD KEYS FROM {source_name(self.config)}")[0].get("series", []):
                for name, kind in series.get("values", []):
                    found.setdefault(name, kind)
            self._field_keys = found
        return self._field_keys

    def measurements(self, start=None, stop=None, limit=20):
        """Names of measurements in the database (for advice when ours has no data)."""
        series = self._query(f"SHOW MEASUREMENTS LIMIT {int(limit)}")[0].get("series", [])
        return [row[0] for s in series for row in s.get("values", [])]

    def numeric_fields(self):
        """The measurement's float and integer fields, for FIELDS left empty."""
        fields = []
        for name, kind in self.field_keys().items():
            if kind in NUMERIC_TYPES:
                if name in self.config.tags:
                    log.warning("field %s has the name of a key tag and is not archived", name)
                    continue
                fields.append(name)
        return fields

    def fetch(self, start, end):
        if self._fields is None:
            self._fields = self.numeric_fields()
        tags = tuple(self.config.tags)
        batch = Batch(tags=tags, start=start, end=end, fields=list(self._fields))
        if not self._fields:
            return batch
        index = {f: i for i, f in enumerate(self._fields)}
        statements = build_statements(self.config, self._fields, start, end)
        results = self._query(";".join(s for _, _, s in statements))
        if len(results) != len(statements):
            raise SourceQueryError("InfluxDB answered fewer statements than were sent")
        by_key = {}
        for (kind, fld, _), result in zip(statements, results):
            for series in result.get("series", []):
                columns = series["columns"]
                if kind == "dropped":
                    batch.dropped[fld] = int(series["values"][0][1]) if series.get("values") else 0
                    continue
                series_tags = series.get("tags") or {}
                tag_values = [series_tags.get(t) or "" for t in tags]
                slots = [(i, index[c]) for i, c in enumerate(columns) if c in index]
                for values in series.get("values", []):
                    key = (values[0], *tag_values)
                    row = by_key.get(key)
                    if row is None:
                        row = by_key[key] = [values[0], *tag_values] + [None] * len(self._fields)
                    for i, slot in slots:
                        if values[i] is not None:
                            row[1 + len(tags) + slot] = _number_text(values[i])
        if by_key:
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(by_key.values())
            batch.blocks.append(Block(columns=["time", *tags, *self._fields], text=out.getvalue(), rows=len(by_key)))
        return batch



def _number_text(value):
    if isinstance(value, float):
        return repr(value)
    return str(value)
