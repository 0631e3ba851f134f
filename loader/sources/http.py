"""HTTP status handling shared by both sources (InfluxDB v2 and v1 APIs answer alike)."""

from email.utils import parsedate_to_datetime
from time import time as _now

from urllib3.exceptions import MaxRetryError, SSLError

from ..errors import SourceRejected, SourceUnavailable

# 429: rate limited (Cloud free plan: 300 MB of reads per 5 minutes); 5xx: server trouble.
RETRY_STATUSES = {429, 500, 502, 503, 504}


def classify_status(status):
    return "retry" if status in RETRY_STATUSES else "fail"


TLS_HELP = ("InfluxDB's TLS certificate is not trusted here: if it is signed by your own CA, set "
            "INFLUX_CA_FILE to that CA's PEM file (verification is never turned off)")


def no_answer(url, exc):
    """The error for a request that got no HTTP answer: a TLS/certificate failure needs a human
    (exit 2), anything else (refused, reset, timed out, cut off) is retried and caught up later.
    exc is a urllib3 or OS error."""
    reason = exc.reason if isinstance(exc, MaxRetryError) else exc
    text = str(reason)
    if isinstance(reason, SSLError) or "SSLError" in text or "CERTIFICATE_VERIFY_FAILED" in text:
        return SourceRejected(f"TLS to {url} failed", hint=TLS_HELP)
    detail = type(reason).__name__
    return SourceUnavailable(f"InfluxDB at {url} did not answer: {detail}")


def retry_after_seconds(headers):
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None when absent or bad."""
    if not headers:
        return None
    value = None
    for key in headers:
        if key.lower() == "retry-after":
            value = headers[key]
    if value is None:
        return None
    value = str(value).strip()
    if value.isdigit():
        return int(value)
    try:
        return max(0, int(parsedate_to_datetime(value).timestamp() - _now()))
    except (TypeError, ValueError):
        return None
