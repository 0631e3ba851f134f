"""HTTP handling shared by both sources (InfluxDB v2 and v1 APIs answer alike): the connection pool,
status codes, and requests that got no HTTP answer at all, said in the user's words with advice that
works."""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from time import time as _now
from typing import TYPE_CHECKING, Mapping, Optional
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import MaxRetryError, SSLError

from ..errors import LoaderError, SourceRejected, SourceUnavailable

if TYPE_CHECKING:
    from ..config import Config

# 429: rate limited (Cloud free plan: 300 MB of reads per 5 minutes); 5xx: server trouble.
RETRY_STATUSES = {429, 500, 502, 503, 504}


def connection_pool(config: Config) -> urllib3.PoolManager:
    """The pool a source asks InfluxDB through: TLS always verified (INFLUX_CA_FILE or the system's CAs),
    INFLUX_TIMEOUT per request, no retries of urllib3's own (the job retries whole chunks)."""
    return urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=config.ca_file or None,
                               timeout=urllib3.Timeout(connect=min(10, config.timeout), read=config.timeout),
                               retries=False)


def classify_status(status: int) -> str:
    return "retry" if status in RETRY_STATUSES else "fail"


TLS_HELP = ("InfluxDB's TLS certificate is not trusted here: if it is signed by your own CA, set "
            "INFLUX_CA_FILE to that CA's PEM file (verification is never turned off)")
# Go's net/http (InfluxDB) answers a plain-HTTP request on its TLS port with this 400 body
PLAIN_HTTP_TO_TLS = "Client sent an HTTP request to an HTTPS server"


def host_port(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def no_answer(url: str, exc: BaseException) -> LoaderError:
    """The error for a request that got no HTTP answer, from the urllib3 or OS error behind it
    (urllib3 1.26, Debian's, and 2.x name them differently; their texts are matched too).

    Exit 2 (a setting is wrong, retrying cannot help): TLS to a server that does not speak it, an
    untrusted certificate, a server that answers but not in HTTP. Exit 1 (the next run catches up):
    refused, reset, timed out; a host name that does not resolve is not retried within the run (the
    network or DNS is down, or the name is misspelt: the message says both)."""
    reason = exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc
    text = f"{type(reason).__name__}: {reason}"
    where = host_port(url)
    if isinstance(reason, SSLError) or "SSL" in text or "CERTIFICATE" in text:
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            if "match" in text or "mismatch" in text.lower():
                return SourceRejected(f"the TLS certificate of {where} is not for that host name",
                                      hint="use the host name the certificate names in INFLUX_URL")
            return SourceRejected(f"TLS to {url} failed: the certificate is not trusted", hint=TLS_HELP)
        if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text or "record layer" in text:
            return SourceRejected(f"{where} does not speak TLS",
                                  hint=f"INFLUX_URL says https://; this server wants http://{where}")
        return SourceRejected(f"TLS to {url} failed: {reason}", hint=TLS_HELP)
    if "Connection refused" in text or "Errno 111" in text:
        return SourceUnavailable(f"nothing is listening at {where} (connection refused)",
                                 hint="is InfluxDB running there, and is INFLUX_URL's port right? "
                                      "The next run catches up once it answers")
    if "NameResolutionError" in text or re.search(r"Errno -\d+|resolve|Name or service|nodename", text):
        host = urlsplit(url).hostname
        return SourceUnavailable(f"host {host} not found (DNS)", retry=False,
                                 hint=f"check the spelling of INFLUX_URL; if {host} is right, this machine's "
                                      "network or DNS is down and the next run catches up")
    if "BadStatusLine" in text:
        return SourceRejected(f"{where} answered, but not in HTTP",
                              hint="is INFLUX_URL's port InfluxDB's (8086 by default)?")
    if "RemoteDisconnected" in text:
        return SourceUnavailable(f"{where} closed the connection without an HTTP answer",
                                 hint="is INFLUX_URL's port InfluxDB's (8086 by default; 5432 is PostgreSQL's)? "
                                      "If it is, InfluxDB was restarting and the next run catches up")
    if "timed out" in text.lower() or "Timeout" in text:
        return SourceUnavailable(f"InfluxDB at {where} did not answer in time (INFLUX_TIMEOUT)",
                                 hint="the next run catches up; a query that is always too slow needs a "
                                      "smaller CHUNK or a larger INFLUX_TIMEOUT")
    return SourceUnavailable(f"InfluxDB at {where} did not answer: {type(reason).__name__}",
                             hint="the next run catches up")


# a query the server ended for taking too long (Cloud: 90 s) fails the same way next time
SERVER_TIMEOUT = re.compile(r"(?i)time ?out|deadline exceeded|took too long")


def server_trouble(status: int, message: str, headers: Mapping[str, str]) -> SourceUnavailable:
    """The retryable error for a 429 or 5xx answer: Retry-After honoured; a query the server ended
    for its time limit gets the advice that makes the next one shorter."""
    hint = ""
    if status != 429 and SERVER_TIMEOUT.search(message or ""):
        hint = ("InfluxDB ended the query for its time limit (InfluxDB Cloud: 90 s): a smaller CHUNK "
                "makes each query shorter")
    return SourceUnavailable(f"InfluxDB answered HTTP {status} {message}".strip(),
                             retry_after=retry_after_seconds(headers), hint=hint)


def http_rejection(url: str, status: int, message: str) -> Optional[SourceRejected]:
    """Advice for an HTTP error status that is neither 401/403 nor a retry; None when there is none."""
    if status == 400 and PLAIN_HTTP_TO_TLS in message:
        return SourceRejected(f"{host_port(url)} speaks TLS", hint="use https:// in INFLUX_URL")
    return None


def _header(headers: Mapping[str, str], name: str) -> Optional[str]:
    """A response header's value by its name in any case (None when absent)."""
    value = None
    for key in headers or {}:
        if key.lower() == name:
            value = headers[key]
    return value


def retry_after_seconds(headers: Mapping[str, str]) -> Optional[int]:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None when absent or bad."""
    value = _header(headers, "retry-after")
    if value is None:
        return None
    value = str(value).strip()
    if value.isdigit():
        return int(value)
    try:
        return max(0, int(parsedate_to_datetime(value).timestamp() - _now()))
    except (TypeError, ValueError):
        return None


def server_kind(headers: Mapping[str, str]) -> str:
    """'1.x', '2.x', '3.x' from InfluxDB's X-Influxdb-Version header, or '' when it does not say."""
    version = str(_header(headers, "x-influxdb-version") or "").strip().lstrip("v")
    return f"{version.split('.')[0]}.x" if re.match(r"^\d+\.", version) else ""
