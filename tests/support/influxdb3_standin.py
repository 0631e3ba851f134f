"""A stand-in for InfluxDB 3's v1 /query API: a proxy in front of a real influxd 1.x that answers the
way InfluxDB 3 does where it differs. No InfluxDB 3 can be installed here; each difference below is
taken from InfluxDB 3's source (influxdata/influxdb, crate influxdb3_server) or documentation:

- One statement per request. `query_influxql_inner` (src/http.rs) parses the query and returns
  Error::InfluxqlSingleStatement, "must provide only one InfluxQl statement per query", when there is
  more than one; Core up to 3.6 answers it with HTTP 500 (the catch-all of Error::into_response),
  as upstream issue influxdb#24771 reports. `several_statements=True` accepts them instead (as
  InfluxDB 1.x, 3.7+ and the v1 API reference for Cloud Serverless do).
- A missing database is "Database <name> not found" (the query executor's DatabaseNotFound), as an
  HTTP error with a JSON {"error": ...} body: 404 from the newer v1 handler (iox_v1_query_api
  HttpError::NotFound), 500 from older ones; `not_found_status` picks which.
- Series carry no "tags" object: src/http/v1.rs builds each series from the record batch's columns
  (`Series { name, columns, values }`), so GROUP BY tags arrive as columns after time.
- No X-Influxdb-Version header (InfluxDB 1.x sends one; nothing in the v1 handler sets it).

Everything else (the InfluxQL itself, the means) is the real influxd's answer.
"""

import json
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.serving import serve, stop

ONE_STATEMENT = "must provide only one InfluxQl statement per query"


def statement_count(query):
    """Statements in an InfluxQL text: `;` outside quoted identifiers and string literals separate them."""
    count, quote, escaped, current = 0, None, False, ""
    for ch in query:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            current += ch
        elif ch in "\"'":
            quote = ch
            current += ch
        elif ch == ";":
            count += bool(current.strip())
            current = ""
        else:
            current += ch
    return count + bool(current.strip())


def as_influxdb3(payload):
    """A 1.x JSON answer reshaped as InfluxDB 3 writes it: tags become columns after time."""
    for result in payload.get("results", []):
        for series in result.get("series", []):
            tags = series.pop("tags", None) or {}
            if tags:
                names = sorted(tags)
                columns = series["columns"]
                series["columns"] = columns[:1] + names + columns[1:]
                series["values"] = [row[:1] + [tags[n] for n in names] + row[1:] for row in series["values"]]
    return payload


class InfluxDB3StandIn:
    def __init__(self, influxd, several_statements=False, not_found_status=404):
        self.influxd = influxd
        self.several_statements = several_statements
        self.not_found_status = not_found_status
        self.requests = []  # the q parameter of each /query request
        standin = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # as InfluxDB (Go sets TCP_NODELAY)

            def log_message(self, *args):
                pass

            def do_GET(self):
                standin._handle(self)

            do_POST = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = serve(self.server)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        stop(self.server)

    def _answer(self, h, status, body, content_type="application/json"):
        data = body.encode() if isinstance(body, str) else body
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _handle(self, h):
        parts = urllib.parse.urlsplit(h.path)
        params = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            params.update(urllib.parse.parse_qsl(h.rfile.read(length).decode(), keep_blank_values=True))
        if parts.path != "/query":
            return self._answer(h, 404, "")
        query = params.get("q", "")
        self.requests.append(query)
        if statement_count(query) > 1 and not self.several_statements:
            return self._answer(h, 500, ONE_STATEMENT, "text/plain; charset=utf-8")
        upstream = f"{self.influxd.url}/query?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(upstream, timeout=60) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return self._answer(h, exc.code, exc.read())
        for result in payload.get("results", []):
            if str(result.get("error", "")).startswith("database not found"):
                message = f"Database {params.get('db', '')} not found"
                return self._answer(h, self.not_found_status, json.dumps({"error": message}))
        self._answer(h, 200, json.dumps(as_influxdb3(payload)))
