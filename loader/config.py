"""Every setting, declared once in SETTINGS (its kind, default, limits and help), read from the
environment and a .env file, and checked together; load() adds only the rules that span settings.

Variables already in the process environment win over the .env file (python-dotenv's default), so
cron, systemd or a test can override any key. The reference script's keys (CONNECTION, TOKEN, ORG,
PG_CONNECT) are accepted as aliases. `.env.example` mirrors SETTINGS; a test keeps them in step.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import shlex
import stat
import urllib.parse
from dataclasses import dataclass, field, make_dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple, TypeVar, Union

from dotenv import dotenv_values

from .errors import ConfigError
from .pg import describe_pg_url, pg_password, pg_url_problem, pg_userinfo
from .redaction import Secret, redact  # noqa: F401 - redact: where every module has found it
from .windows import format_duration, parse_duration

LANGUAGES = ("flux", "influxql")
SERVERLESS_HOST = "cloud2.influxdata.com"  # InfluxDB Cloud Serverless and TSM URLs end so
DEDICATED_HOST = ".influxdb.io"  # InfluxDB Cloud Dedicated clusters' URLs end so
CLOUD_HOSTS = (SERVERLESS_HOST, DEDICATED_HOST)
CLOUD_QUERY_LIMIT = 90  # seconds a Cloud query may run (InfluxDB Cloud limits and adjustable quotas)
NUMBER = r"(-?[0-9.]+(?:e-?\d+)?)"  # a decimal number (never nan or inf)
API_PATH = re.compile(r"/(query|write|ping|health|api/v2(/query|/write)?)/?$")


# Each kind turns a setting's text into its value and its problem (text, a list of texts for a list
# setting, or None; all are reported together); after a problem the value is a stand-in that the
# rules across settings skip (None where they look). Its return type names the value's type, which
# Config's attribute has (setup/config_types.py reads it).
T = TypeVar("T")
Problem = Union[str, List[str], None]
Parsed = Tuple[Optional[T], Problem]

def text(setting: Setting, raw: str) -> Parsed[str]:
    return raw, None


def control_characters(text: str) -> Optional[str]:
    """Problem text for names InfluxQL cannot carry: a line break or another control character ends
    or breaks a quoted name in InfluxDB 1.x's parser, and no dialect needs one. None when clean."""
    found = sorted({f"U+{ord(c):04X}" for c in text if ord(c) < 0x20 or ord(c) == 0x7F})
    return f"contains control character(s) {', '.join(found)} (a line break or tab pasted in?)" if found else None


def name(setting: Setting, raw: str) -> Parsed[str]:
    """A bucket, measurement, schema or table name: never empty, no control characters; PostgreSQL
    names fit in 63 bytes."""
    if not raw:
        return raw, f"{setting.key} must not be empty"
    bad = control_characters(raw)
    if bad:
        return raw, f"{setting.key} {bad}"
    if setting.key.startswith("PG_") and len(raw.encode()) > 63:
        return raw, f"{setting.key} is longer than PostgreSQL's 63-byte limit for names"
    return raw, None


def optional_name(setting: Setting, raw: str) -> Parsed[str]:
    """A name that may be empty (INFLUX_RETENTION_POLICY): no control characters."""
    bad = control_characters(raw)
    return raw, (f"{setting.key} {bad}" if bad else None)


def field_or_none(setting: Setting, raw: str) -> Parsed[str]:
    """A field name, or none (an empty value means the default, like every setting's)."""
    if raw.lower() == "none":
        return "", None
    return optional_name(setting, raw)


def duration(setting: Setting, raw: str) -> Parsed[int]:
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        return None, f"{setting.key}: {exc}"
    if seconds < setting.minimum:
        return None, f"{setting.key} must be at least {format_duration(setting.minimum)}, not {raw}"
    if setting.key == "WINDOW" and 86400 % seconds:
        return None, f"WINDOW {raw} must divide one day evenly (e.g. 1s, 5s, 10s, 1m)"
    return seconds, None


def integer(setting: Setting, raw: str) -> Parsed[int]:
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < setting.minimum:
        return setting.minimum, f"{setting.key} must be a whole number of at least {setting.minimum}, not {raw!r}"
    return value, None


def choice(setting: Setting, raw: str) -> Parsed[str]:
    value = raw.lower()
    if value not in setting.choices:
        options = " or ".join(setting.choices) if len(setting.choices) < 3 else \
            ", ".join(setting.choices[:-1]) + " or " + setting.choices[-1]
        return None, f"{setting.key} must be {options}, not {value!r}"
    return value, None


def yes_no(setting: Setting, raw: str) -> Parsed[bool]:
    value, problem = choice(setting, raw)
    return value != "no", problem


def columns(setting: Setting, raw: str) -> Parsed[Tuple[str, ...]]:
    """Comma-separated field or tag names, each once, none named like the table's time column."""
    items = tuple(x.strip() for x in raw.split(",") if x.strip())
    if len(set(items)) != len(items):
        return items, f"{setting.key} lists a name twice"
    for item in items:
        bad = control_characters(item)
        if bad:
            return items, f"{setting.key}: {item!r} {bad}"
        if item.lower() == "time":
            return items, f"{item!r} cannot be a field or tag column: the table already has a time column"
    return items, None


def _items(raw: str) -> List[str]:
    return [x.strip() for x in raw.split(",") if x.strip()]


def valid_ranges(setting: Setting, raw: str) -> Parsed[Dict[str, Tuple[float, float]]]:
    """field=min..max, comma-separated: {field: (min, max)}; none: {}."""
    ranges: dict = {}
    problems: list = []
    if raw.lower() == "none":
        return ranges, problems
    for item in _items(raw):
        match = re.match(rf"^(.+?)\s*=\s*{NUMBER}\s*\.\.\s*{NUMBER}$", item)
        try:
            if match is None:
                raise ValueError(item)
            low, high = float(match.group(2)), float(match.group(3))
        except ValueError:
            problems.append(f"VALID_RANGES: {item!r} is not field=min..max such as spo2=50..100")
            continue
        if not (math.isfinite(low) and math.isfinite(high)):
            problems.append(f"VALID_RANGES: {item!r} has a bound too large for a number")
            continue
        bad = control_characters(match.group(1))
        if bad:
            problems.append(f"VALID_RANGES: {match.group(1)!r} {bad}")
            continue
        if low > high:
            problems.append(f"VALID_RANGES: {item!r} has min above max")
        ranges[match.group(1)] = (low, high)
    return ranges, problems


def thresholds(setting: Setting, raw: str) -> Parsed[Dict[str, float]]:
    """field=value, comma-separated: {field: value}."""
    found, problems = {}, []
    for item in _items(raw):
        match = re.match(rf"^(.+?)\s*=\s*{NUMBER}$", item)
        try:
            if match is None:
                raise ValueError(item)
            found[match.group(1)] = float(match.group(2))
        except ValueError:
            problems.append(f"{setting.key}: {item!r} is not field=value such as spo2=90")
    return found, problems


def devices(setting: Setting, raw: str) -> Parsed[Tuple[str, ...]]:
    """Devices as `status` names them, tag=value (tags of one device joined by commas), separated by
    semicolons: uid=ring1;uid=old. Each kept as that text with its tags in name order."""
    found, problems = [], []
    for item in (x.strip() for x in raw.split(";")):
        if not item:
            continue
        pairs = [p.strip().split("=", 1) for p in item.split(",") if p.strip()]
        if not pairs or any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
            problems.append(f"{setting.key}: {item!r} is not tag=value such as uid=ring1 (several devices: "
                            f"uid=ring1;uid=old)")
            continue
        found.append(",".join(f"{k.strip()}={v.strip()}" for k, v in sorted(pairs)))
    return tuple(found), problems


def http_url(setting: Setting, raw: str) -> Parsed[str]:
    if raw and not re.match(r"^https?://[^/\s]+", raw):
        return raw, f"{setting.key} must start with http:// or https://"
    return raw, None


def influx_url(setting: Setting, raw: str) -> Parsed[str]:
    """InfluxDB's base URL: http(s), no credentials (never shown back), no API path."""
    if raw and "@" in raw.split("://", 1)[-1].split("/", 1)[0]:
        return "", ("INFLUX_URL must not carry a user name or password (the value is not shown): put the token in "
                    "INFLUX_TOKEN, or InfluxDB 1.x credentials in INFLUX_USERNAME and INFLUX_PASSWORD")
    if raw and not re.match(r"^https?://[^/\s]+", raw):
        return raw, f"INFLUX_URL must start with http:// or https://, not {raw!r}"
    if raw and API_PATH.search(raw.split("?")[0]):
        base = API_PATH.sub("", raw.split("?")[0])
        return raw, f"INFLUX_URL is the server's base URL, without the API path: set it to {base}"
    return raw.rstrip("/"), None


def postgres_url(setting: Setting, raw: str) -> Parsed[str]:
    return raw, (pg_url_problem(raw) if raw else None)


def absolute_path(setting: Setting, raw: str) -> Parsed[str]:
    if raw and not os.path.isabs(raw):
        return raw, f"{setting.key} must be an absolute path, not {raw!r}"
    return (raw.rstrip("/") or raw), None


def service_url(setting: Setting, raw: str) -> Parsed[str]:
    """An Apprise URL (ntfy://, tgram://, mailto://, ...): a scheme and something after it; its value is never
    shown (it carries tokens)."""
    if raw and not re.match(r"^[a-z][a-z0-9+.-]*://\S+$", raw):
        return raw, (f"{setting.key} must be a notification URL such as ntfy://ntfy.sh/TOPIC or tgram://TOKEN/CHAT "
                     f"(Apprise's forms; the value is not shown)")
    return raw, None


def existing_file(setting: Setting, raw: str) -> Parsed[str]:
    if raw and not os.path.isfile(raw):
        return raw, f"{setting.key} {raw} does not exist"
    return raw, None


def command(setting: Setting, raw: str) -> Parsed[Tuple[str, ...]]:
    try:
        return tuple(shlex.split(raw)), None
    except ValueError as exc:
        return (), f"{setting.key}: {exc}"


@dataclass(frozen=True)
class Setting:
    """One setting, declared once: its key, what it is for, its kind (the parser above) and limits,
    and the Config attribute it fills (None: it only feeds a rule in load, e.g. INFLUX_TOKEN_FILE)."""

    key: str
    help: str
    attr: Optional[str] = None
    kind: Callable[..., tuple] = text
    default: Optional[str] = None
    required: bool = False
    secret: bool = False
    aliases: tuple = ()
    example: str = ""
    minimum: int = 0
    choices: tuple = ()


SETTINGS = (
    Setting("INFLUX_URL", "InfluxDB base URL (Cloud region URL or http://host:8086).", required=True,
            aliases=("CONNECTION",), example="https://eu-central-1-1.aws.cloud2.influxdata.com",
            attr="influx_url", kind=influx_url),
    Setting("INFLUX_TOKEN", "API token with read access to the bucket (or set INFLUX_TOKEN_FILE).",
            secret=True, aliases=("TOKEN",), example="paste-your-read-token-here",
            attr="influx_token"),
    Setting("INFLUX_TOKEN_FILE", "File whose content is the token (suits cron and systemd).",
            example="/etc/influx-archive/token"),
    Setting("INFLUX_ORG", "Organisation name or ID (Flux only).", aliases=("ORG",), example="my-org",
            attr="influx_org"),
    Setting("INFLUX_BUCKET", "Bucket (InfluxQL: the database the DBRP mapping names).", default="pulse_oximeter",
            attr="bucket", kind=name),
    Setting("INFLUX_MEASUREMENT", "Measurement to archive.", default="spo2",
            attr="measurement", kind=name),
    Setting("INFLUX_QUERY_LANGUAGE", "flux (Cloud TSM, OSS 2.x) or influxql (Cloud Serverless, InfluxDB 1.x).",
            default="flux",
            attr="language", kind=choice, choices=LANGUAGES),
    Setting("INFLUX_RETENTION_POLICY", "InfluxQL only: retention policy; empty means the default one.", default="",
            attr="retention_policy", kind=optional_name),
    Setting("INFLUX_USERNAME", "InfluxDB 1.x with auth only: user name (instead of a token).", default="",
            attr="influx_username"),
    Setting("INFLUX_PASSWORD", "InfluxDB 1.x with auth only: password.", secret=True, default="",
            attr="influx_password"),
    Setting("INFLUX_CA_FILE", "PEM file of a private CA to verify InfluxDB's TLS certificate; "
            "empty means the system's CAs. Verification is never turned off.", default="",
            attr="ca_file", kind=existing_file),
    Setting("INFLUX_TIMEOUT", "How long one query may take before it counts as failed.", default="60s",
            attr="timeout", kind=duration, minimum=1),
    Setting("FIELDS", "Comma-separated fields to keep; empty keeps every numeric field (float, integer, "
            "unsigned; string and boolean fields have no mean).", default="",
            example="spo2,bpm",
            attr="fields", kind=columns),
    Setting("TAGS", "Comma-separated tags that become key columns (one per device: uid); empty keeps one "
            "series: readings of two series in the same hour are refused, naming the tag to set.", default="",
            example="uid",
            attr="tags", kind=columns),
    Setting("VALID_RANGES", "Per-field valid ranges applied before averaging, field=min..max, "
            "comma-separated; readings outside (a finger-off 0, a glitch such as 65535) are dropped, counted and "
            "logged. The default is a pulse oximeter's physiological range and applies to the fields of those "
            "names that InfluxDB has; none: keep every reading.", default="spo2=50..100,bpm=20..250",
            example="spo2=50..100,bpm=20..250,temp=30..45",
            attr="valid_ranges", kind=valid_ranges),
    Setting("PG_URL", "PostgreSQL URL; postgresql:// is used with psycopg2.", required=True,
            secret=True, aliases=("PG_CONNECT",), example="postgresql://archive:secret@localhost:5432/archive",
            attr="pg_url", kind=postgres_url),
    Setting("ROLLUP_BELOW", "Per field, a threshold whose time-below the rollups count (the dashboard's "
            "time below the spo2 threshold), field=value, comma-separated; a change recounts every bucket at "
            "the next run.", default="spo2=90", example="spo2=90,bpm=50",
            attr="rollup_below", kind=thresholds),
    Setting("SESSION_SPO2", "The field holding SpO2 in %, whose recording sessions (nights) the loader keeps in "
            "<PG_TABLE>_sessions with T90 and ODI; none: no sessions.", default="spo2",
            attr="session_spo2", kind=field_or_none),
    Setting("SESSION_PULSE", "The field holding the pulse in bpm, summarised per session; none: no pulse.",
            default="bpm", attr="session_pulse", kind=field_or_none),
    Setting("SESSION_GAP", "A session ends where no SpO2 was recorded for longer than this: a night's bathroom "
            "break or a re-clipped sensor stays inside it.", default="45m",
            attr="session_gap", kind=duration, minimum=1),
    Setting("SESSION_MIN", "Shorter runs of readings are not sessions (a finger check, a test); at most 1d.",
            default="1h",
            attr="session_min", kind=duration, minimum=1),
    Setting("SUBJECT", "Whose nights these are: adult, or child (a child's sessions get the McGill oximetry "
            "score and are coloured by paediatric bands: docs/sessions.md).", default="adult",
            attr="subject", kind=choice, choices=("adult", "child")),
    Setting("PG_SCHEMA", "Schema holding the archive and its state tables.", default="public",
            attr="pg_schema", kind=name),
    Setting("PG_TABLE", "Table of window means.", default="pox_five_second_mean",
            attr="pg_table", kind=name),
    Setting("WINDOW", "Width of the averaging window; must divide one day.", default="5s",
            attr="window", kind=duration, minimum=1),
    Setting("INITIAL_LOOKBACK", "How far back the first run starts (the free plan keeps 30 days).", default="30d",
            attr="initial_lookback", kind=duration, minimum=1),
    Setting("CHUNK", "Time span fetched and committed at once; memory is bounded by it.", default="1d",
            attr="chunk", kind=duration, minimum=1),
    Setting("LATE_DATA", "Trailing period re-read by every run so late points are merged.", default="1h",
            attr="late_data", kind=duration),
    Setting("LATE_LOOKBACK", "How far back every run compares InfluxDB's count of readings per hour and series "
            "with what the archive was loaded from, and reloads the hours InfluxDB holds more of (a phone "
            "synced hours later, a sensor back from an outage, a second device); the free plan's retention. "
            "0s: never.", default="30d", attr="late_lookback", kind=duration),
    Setting("STALE_AFTER", "`status` pages (exit 2) when the newest archived reading is older than this. An "
            "oximeter worn only at night leaves ~16 h gaps: 1d pages after a missed night; one that records "
            "around the clock suits 2h.", default="1d",
            attr="stale_after", kind=duration, minimum=1),
    Setting("RETIRED_DEVICES", "Devices `status` no longer expects readings from (a sensor replaced or given "
            "back), as it names them, separated by semicolons; their rows stay archived. With TAGS set, `status` "
            "judges every other device it has archived against STALE_AFTER.", default="",
            example="uid=old-ring;uid=loaner", attr="retired_devices", kind=devices),
    Setting("FAILED_RUNS_ALERT", "`status` pages when this many hourly runs in a row failed, or none started "
            "for this many hours; a single failure is a blip the next run catches up (exit 1).", default="3",
            attr="failed_runs_alert", kind=integer, minimum=1),
    Setting("MAX_RETRIES", "Attempts per chunk on 429, 5xx or a dropped connection.", default="5",
            attr="max_retries", kind=integer, minimum=1),
    Setting("MAX_RETRY_WAIT", "Longest single wait (backoff or Retry-After); a longer Retry-After "
            "ends the run, to be caught up next hour.", default="5m",
            attr="max_retry_wait", kind=duration, minimum=1),
    Setting("REQUIRE_CLOCK_SYNC", "auto: refuse to run while systemd reports the clock as not "
            "NTP-synchronised (where it can tell); yes: refuse also when it cannot tell; no: never check.",
            default="auto",
            attr="require_clock_sync", kind=choice, choices=("auto", "yes", "no")),
    Setting("GRAFANA_PG_PASSWORD", "Written by install.sh: the password of the read-only Grafana role "
            "(the loader does not use it).", secret=True, default=""),
    Setting("LOG_FILE", "Append the log here, each line with its time, an error with its traceback (-v adds "
            "the debug lines); empty: stderr only. install.sh sets it to the file cron appends the output to, "
            "which is then written once.", default="",
            attr="log_file"),
    Setting("BACKUP_DIR", "Where `backup` writes its dumps: a USB drive or network mount, not the SD card; "
            "empty: backups are off.", default="", example="/mnt/usb/influx-archive",
            attr="backup_dir", kind=absolute_path),
    Setting("BACKUP_REQUIRE_MOUNT", "yes: refuse a BACKUP_DIR on the root filesystem (a drive that is not "
            "mounted leaves an empty directory on the SD card); no: allow it.", default="yes",
            attr="backup_require_mount", kind=yes_no, choices=("yes", "no")),
    Setting("BACKUP_KEEP_DAILY", "Dumps kept: the newest of each of this many most recent days.", default="7",
            attr="backup_keep_daily", kind=integer, minimum=1),
    Setting("BACKUP_KEEP_WEEKLY", "Also kept: the newest of each of this many most recent ISO weeks.", default="4",
            attr="backup_keep_weekly", kind=integer),
    Setting("BACKUP_MAX_AGE", "`status` fails when the newest dump is older than this.", default="36h",
            attr="backup_max_age", kind=duration, minimum=1),
    Setting("BACKUP_REMOTE", "Optional rsync destination for a copy of each new dump (its SSH key and "
            "known_hosts stay the service user's, never in this file).", default="",
            example="backup@nas.local:/srv/backups/influx-archive/",
            attr="backup_remote"),
    Setting("BACKUP_REMOTE_SSH", "The remote shell rsync uses for BACKUP_REMOTE.", default="ssh -o BatchMode=yes",
            example="ssh -o BatchMode=yes -i /etc/influx-archive/backup_key",
            attr="backup_remote_ssh", kind=command),
    Setting("REPORT_DIR", "Where the hourly run writes each finished night's report (`report`'s page, as "
            "night-DATE-HHMM[-DEVICE].pdf; revised when late readings change the night), kept as long as the dumps "
            "(BACKUP_KEEP_DAILY days, BACKUP_KEEP_WEEKLY weeks); empty: none. Needs matplotlib.", default="",
            example="/mnt/usb/influx-archive/reports", attr="report_dir", kind=absolute_path),
    Setting("NOTIFY_URL", "A message for each finished night NOTIFY_WHEN chooses, through Apprise (ntfy, "
            "Telegram, e-mail, Signal, Matrix, Pushover...: one URL; Debian's apprise package), with its report "
            "attached where REPORT_DIR makes one. A failed message is tried again on the next run.", secret=True,
            default="", example="ntfy://ntfy.sh/my-nights-topic", attr="notify_url", kind=service_url),
    Setting("NOTIFY_WHEN", "bad: only nights whose ODI4 or T90 is in the dashboard's orange or red bands, or with "
            "less than half the device's usual recorded time (a sensor that fell off); always: every night.",
            default="bad", attr="notify_when", kind=choice, choices=("bad", "always")),
    Setting("HEALTHCHECK_URL", "Optional dead-man's-switch URL pinged by `run` (URL/start, URL on success, "
            "URL/fail on failure), e.g. a healthchecks.io check. A failed ping never fails the run.",
            secret=True, default="", example="https://hc-ping.com/your-check-uuid",
            attr="healthcheck_url", kind=http_url),
    Setting("BACKUP_HEALTHCHECK_URL", "The same for `backup` and `restore --verify` (a separate check: "
            "they run nightly and weekly, not hourly).", secret=True, default="",
            example="https://hc-ping.com/your-backup-check-uuid",
            attr="backup_healthcheck_url", kind=http_url),
)
_BY_KEY = {s.key: s for s in SETTINGS}
_ALIASES = {alias: s.key for s in SETTINGS for alias in s.aliases}


class _ConfigMethods:
    def secrets(self) -> List[str]:
        """Every secret value, so error text can be scrubbed of them before it is shown or stored."""
        values = [getattr(self, s.attr).reveal() for s in SETTINGS if s.secret and s.attr and s.key != "PG_URL"]
        url = getattr(self, "pg_url").reveal()
        password = pg_password(url) or (re.search(r"[?&]password=([^&]*)", url) or [None, ""])[1]
        if password:  # a URL without one (peer or .pgpass authentication) holds nothing secret
            values += [url, password, urllib.parse.unquote(password), pg_userinfo(url)]
        return [v for v in values if v]

    def describe_pg(self) -> str:
        """PG_URL for messages: user, host, port and database, never the password."""
        return describe_pg_url(getattr(self, "pg_url").reveal())


# The settings as the loader uses them: one attribute per Setting.attr (secrets as Secret), and the
# warnings load() found. Declared by SETTINGS, not a second time here.
# For mypy, the same attributes with their types: loader/config_types.py, generated from SETTINGS and the
# kinds' return types by setup/config_types.py (a test keeps it in step).
if TYPE_CHECKING:
    from .config_types import ConfigAttributes

    class Config(ConfigAttributes, _ConfigMethods):
        def __init__(self, **values: object) -> None: ...
else:
    Config = make_dataclass("Config", [(s.attr, object) for s in SETTINGS if s.attr]
                            + [("warnings", tuple, field(default=())),
                               ("explicit", frozenset, field(default=frozenset()))],
                            bases=(_ConfigMethods,), frozen=True)


def read_env_file(path: Optional[str], required: bool = False) -> Tuple[Dict[str, str], List[str]]:
    """The key/value pairs of a .env file; problems (missing when required, unreadable, readable by
    others) as text."""
    problems = []
    if not path or not os.path.exists(path):
        if required:
            problems.append(f"the settings file {path} does not exist (--env-file); "
                            f"copy .env.example there and fill it in")
        return {}, problems
    try:
        mode = os.stat(path).st_mode
        values = dotenv_values(path)
    except OSError as exc:
        return {}, [f"cannot read {path}: {exc.strerror}"]
    if stat.S_ISREG(mode) and mode & (stat.S_IROTH | stat.S_IWOTH):
        problems.append(f"{path} is readable by other users and holds secrets; run: chmod 600 {path}")
    return {k: v for k, v in values.items() if v is not None}, problems


def load(env_file: Optional[str] = ".env", environ: Optional[Mapping[str, str]] = None,
         file_required: bool = False) -> Config:
    """Read every setting; raise ConfigError naming all problems at once. file_required: the user
    named the file (--env-file), so its absence is a problem rather than "no .env here"."""
    environ = dict(os.environ if environ is None else environ)
    file_values, problems = read_env_file(env_file, required=file_required)
    if file_required and problems and not (env_file and os.path.exists(env_file)):
        raise ConfigError(problems)  # everything else would only list what the missing file holds
    warnings = []

    merged = {}
    for source in (file_values, environ):  # later wins: the process environment beats the file
        for key, value in source.items():
            canonical = _ALIASES.get(key, key)
            if canonical in _BY_KEY and (key == canonical or canonical not in source):
                merged[canonical] = value
        for s in SETTINGS:  # a key and its alias in one place, saying different things
            given = [k for k in (s.key,) + s.aliases if (source.get(k) or "").strip()]
            if len({source[k].strip() for k in given}) > 1:
                where = env_file if source is file_values else "the environment"
                problems.append(f"{where} sets both {' and '.join(given)}, to different values; keep one")

    known = set(_BY_KEY) | set(_ALIASES)
    for key in file_values:
        if key not in known:
            close = difflib.get_close_matches(key.upper(), known, n=1, cutoff=0.75)
            if close:
                problems.append(f"{env_file}: unknown key {key} (did you mean {close[0]}?)")
            else:
                warnings.append(f"{env_file}: key {key} is not used by influx-archive")

    def get(key: str) -> str:
        value = merged.get(key)
        if value is None or value.strip() == "":
            return _BY_KEY[key].default or ""
        return value.strip()

    missing = [" or ".join((s.key,) + s.aliases) for s in SETTINGS if s.required and not get(s.key)]
    if missing and env_file and not os.path.exists(env_file):
        problems.append(f"there is no {env_file} in {os.getcwd()}: run from the directory that holds it, pass "
                        f"--env-file PATH, or set the settings in the environment")
    problems += [f"{names} is required ({_BY_KEY[names.split()[0]].help})" for names in missing]

    values = {}
    for setting in SETTINGS:
        values[setting.key], problem = setting.kind(setting, get(setting.key))
        problems += problem if isinstance(problem, list) else [problem] if problem else []
    _check_across(values, get, problems, warnings)
    explicit = frozenset(s.key for s in SETTINGS if (merged.get(s.key) or "").strip())
    config = Config(**{s.attr: Secret(values[s.key]) if s.secret else values[s.key] for s in SETTINGS if s.attr},
                    warnings=tuple(warnings), explicit=explicit)
    if problems:
        raise ConfigError([redact(p, config.secrets()) for p in problems])
    return config


def _check_across(values: Dict[str, Any], get: Callable[[str], str], problems: List[str],
                  warnings: List[str]) -> None:
    """The rules that span several settings (each setting's own are in its kind). Fills in the token
    from INFLUX_TOKEN_FILE."""
    token, token_file = values["INFLUX_TOKEN"], get("INFLUX_TOKEN_FILE")
    if token_file:
        if token:
            problems.append("set INFLUX_TOKEN or INFLUX_TOKEN_FILE, not both")
        try:
            with open(token_file, encoding="utf-8") as handle:
                token = values["INFLUX_TOKEN"] = handle.read().strip()
            if not token:
                problems.append(f"INFLUX_TOKEN_FILE {token_file} is empty")
        except OSError as exc:
            problems.append(f"INFLUX_TOKEN_FILE {token_file}: {exc.strerror}")
    if values["INFLUX_QUERY_LANGUAGE"] == "flux":
        if not token:
            problems.append("INFLUX_TOKEN (or TOKEN, or INFLUX_TOKEN_FILE) is required for the flux source")
        if not values["INFLUX_ORG"]:
            problems.append("INFLUX_ORG (or ORG) is required for the flux source")
    if values["INFLUX_USERNAME"] and token:
        problems.append("set either INFLUX_TOKEN or INFLUX_USERNAME/INFLUX_PASSWORD, not both")

    # InfluxDB Cloud ends a query after 90 s (its documented limit): waiting longer only delays the retry
    host = (urllib.parse.urlsplit(values["INFLUX_URL"] or "").hostname or "").lower()
    if host.endswith(CLOUD_HOSTS) and values["INFLUX_TIMEOUT"] and values["INFLUX_TIMEOUT"] > CLOUD_QUERY_LIMIT:
        problems.append(f"INFLUX_TIMEOUT {get('INFLUX_TIMEOUT')} is longer than the {CLOUD_QUERY_LIMIT} s InfluxDB "
                        "Cloud lets a query run; set 90s or less (a smaller CHUNK makes each query shorter)")

    fields, tags = values["FIELDS"], values["TAGS"]
    overlap = set(fields) & set(tags)
    if overlap:
        problems.append(f"{', '.join(sorted(overlap))} is listed in both FIELDS and TAGS")
    for device in values["RETIRED_DEVICES"] or ():
        unknown = sorted({pair.split("=", 1)[0] for pair in device.split(",")} - set(tags))
        if unknown:
            problems.append(f"RETIRED_DEVICES names tag {', '.join(unknown)} in {device!r}, which TAGS does not hold "
                            f"(TAGS={','.join(tags) or 'empty: one device, nothing to retire'})")
    if values["SESSION_MIN"] and values["SESSION_MIN"] > 86400:
        problems.append(f"SESSION_MIN {get('SESSION_MIN')} must be at most 1d: a session is cut every 24 hours")
    for key, lost in (("SESSION_SPO2", "no sessions are kept"), ("SESSION_PULSE", "sessions have no pulse")):
        if fields and values[key] and values[key] not in fields:
            warnings.append(f"{key} {values[key]} is not in FIELDS, so {lost}; add it to FIELDS, or set "
                            f"{key}=none to say so")
    ranges = values["VALID_RANGES"] if get("VALID_RANGES") != _BY_KEY["VALID_RANGES"].default else {}
    for name in ranges:  # the default ranges apply to whichever of their fields the archive keeps
        if fields and name not in fields:
            problems.append(f"VALID_RANGES names {name!r}, which FIELDS does not keep")

    window = values["WINDOW"]
    for key in ("CHUNK", "LATE_DATA"):
        if window and values[key] and values[key] % window:
            problems.append(f"{key} {get(key)} must be a multiple of WINDOW {get('WINDOW')}")
