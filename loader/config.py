"""Every setting, declared once, read from the environment and a .env file, checked together.

Variables already in the process environment win over the .env file (python-dotenv's default), so
cron, systemd or a test can override any key. The reference script's keys (CONNECTION, TOKEN, ORG,
PG_CONNECT) are accepted as aliases. `.env.example` mirrors SETTINGS; a test keeps them in step.
"""

import difflib
import os
import re
import shlex
import stat
import urllib.parse
from dataclasses import dataclass, field

from dotenv import dotenv_values

from .errors import ConfigError
from .pg import describe_pg_url, pg_password, pg_url_problem, pg_userinfo
from .redaction import Secret, redact  # noqa: F401 - redact: where every module has found it
from .windows import format_duration, parse_duration

LANGUAGES = ("flux", "influxql")


@dataclass(frozen=True)
class Setting:
    key: str
    help: str
    default: str = None
    required: bool = False
    secret: bool = False
    aliases: tuple = ()
    example: str = ""


SETTINGS = (
    Setting("INFLUX_URL", "InfluxDB base URL (Cloud region URL or http://host:8086).", required=True,
            aliases=("CONNECTION",), example="https://eu-central-1-1.aws.cloud2.influxdata.com"),
    Setting("INFLUX_TOKEN", "API token with read access to the bucket (or set INFLUX_TOKEN_FILE).",
            secret=True, aliases=("TOKEN",), example="paste-your-read-token-here"),
    Setting("INFLUX_TOKEN_FILE", "File whose content is the token (suits cron and systemd).",
            example="/etc/influx-archive/token"),
    Setting("INFLUX_ORG", "Organisation name or ID (Flux only).", aliases=("ORG",), example="my-org"),
    Setting("INFLUX_BUCKET", "Bucket (InfluxQL: the database the DBRP mapping names).", default="pulse_oximeter"),
    Setting("INFLUX_MEASUREMENT", "Measurement to archive.", default="spo2"),
    Setting("INFLUX_QUERY_LANGUAGE", "flux (Cloud TSM, OSS 2.x) or influxql (Cloud Serverless, InfluxDB 1.x).",
            default="flux"),
    Setting("INFLUX_RETENTION_POLICY", "InfluxQL only: retention policy; empty means the default one.", default=""),
    Setting("INFLUX_USERNAME", "InfluxDB 1.x with auth only: user name (instead of a token).", default=""),
    Setting("INFLUX_PASSWORD", "InfluxDB 1.x with auth only: password.", secret=True, default=""),
    Setting("INFLUX_CA_FILE", "PEM file of a private CA to verify InfluxDB's TLS certificate; "
            "empty means the system's CAs. Verification is never turned off.", default=""),
    Setting("INFLUX_TIMEOUT", "How long one query may take before it counts as failed.", default="60s"),
    Setting("FIELDS", "Comma-separated fields to keep; empty keeps every numeric field.", default="",
            example="spo2,bpm"),
    Setting("TAGS", "Comma-separated tags that become key columns; empty merges all series "
            "(the mean is taken across them).", default="", example="uid"),
    Setting("VALID_RANGES", "Per-field valid ranges applied before averaging, field=min..max, "
            "comma-separated; readings outside are dropped and counted.", default="",
            example="spo2=50..100,bpm=20..250"),
    Setting("PG_URL", "PostgreSQL URL; postgresql:// is used with psycopg2.", required=True,
            secret=True, aliases=("PG_CONNECT",), example="postgresql://archive:secret@localhost:5432/archive"),
    Setting("ROLLUP_BELOW", "Per field, a threshold whose time-below the rollups count (for the dashboard's "
            "'time below 90 %'), field=value, comma-separated.", default="spo2=90", example="spo2=90,bpm=50"),
    Setting("PG_SCHEMA", "Schema holding the archive and its state tables.", default="public"),
    Setting("PG_TABLE", "Table of window means.", default="pox_five_second_mean"),
    Setting("WINDOW", "Width of the averaging window; must divide one day.", default="5s"),
    Setting("INITIAL_LOOKBACK", "How far back the first run starts (the free plan keeps 30 days).", default="30d"),
    Setting("CHUNK", "Time span fetched and committed at once; memory is bounded by it.", default="1d"),
    Setting("LATE_DATA", "Trailing period re-read by every run so late points are merged.", default="1h"),
    Setting("STALE_AFTER", "`status` pages (exit 2) when the newest archived reading is older than this. An "
            "oximeter worn only at night leaves ~16 h gaps: 1d pages after a missed night; one that records "
            "around the clock suits 2h.", default="1d"),
    Setting("FAILED_RUNS_ALERT", "`status` pages when this many hourly runs in a row failed, or none started "
            "for this many hours; a single failure is a blip the next run catches up (exit 1).", default="3"),
    Setting("MAX_RETRIES", "Attempts per chunk on 429, 5xx or a dropped connection.", default="5"),
    Setting("MAX_RETRY_WAIT", "Longest single wait (backoff or Retry-After); a longer Retry-After "
            "ends the run, to be caught up next hour.", default="5m"),
    Setting("REQUIRE_CLOCK_SYNC", "auto: refuse to run while systemd reports the clock as not "
            "NTP-synchronised (where it can tell); yes: refuse also when it cannot tell; no: never check.",
            default="auto"),
    Setting("GRAFANA_PG_PASSWORD", "Written by install.sh: the password of the read-only Grafana role "
            "(the loader does not use it).", secret=True, default=""),
    Setting("LOG_FILE", "Append the full log (with tracebacks) here; empty: log to stderr only.", default=""),
    Setting("BACKUP_DIR", "Where `backup` writes its dumps: a USB drive or network mount, not the SD card; "
            "empty: backups are off.", default="", example="/mnt/usb/influx-archive"),
    Setting("BACKUP_REQUIRE_MOUNT", "yes: refuse a BACKUP_DIR on the root filesystem (a drive that is not "
            "mounted leaves an empty directory on the SD card); no: allow it.", default="yes"),
    Setting("BACKUP_KEEP_DAILY", "Dumps kept: the newest of each of this many most recent days.", default="7"),
    Setting("BACKUP_KEEP_WEEKLY", "Also kept: the newest of each of this many most recent ISO weeks.", default="4"),
    Setting("BACKUP_MAX_AGE", "`status` fails when the newest dump is older than this.", default="36h"),
    Setting("BACKUP_REMOTE", "Optional rsync destination for a copy of each new dump (its SSH key and "
            "known_hosts stay the service user's, never in this file).", default="",
            example="backup@nas.local:/srv/backups/influx-archive/"),
    Setting("BACKUP_REMOTE_SSH", "The remote shell rsync uses for BACKUP_REMOTE.", default="ssh -o BatchMode=yes",
            example="ssh -o BatchMode=yes -i /etc/influx-archive/backup_key"),
    Setting("HEALTHCHECK_URL", "Optional dead-man's-switch URL pinged by `run` (URL/start, URL on success, "
            "URL/fail on failure), e.g. a healthchecks.io check. A failed ping never fails the run.",
            secret=True, default="", example="https://hc-ping.com/your-check-uuid"),
    Setting("BACKUP_HEALTHCHECK_URL", "The same for `backup` and `restore --verify` (a separate check: "
            "they run nightly and weekly, not hourly).", secret=True, default="",
            example="https://hc-ping.com/your-backup-check-uuid"),
)
_BY_KEY = {s.key: s for s in SETTINGS}
_ALIASES = {alias: s.key for s in SETTINGS for alias in s.aliases}


@dataclass(frozen=True)
class Config:
    influx_url: str
    influx_token: Secret
    influx_org: str
    bucket: str
    measurement: str
    language: str
    retention_policy: str
    influx_username: str
    influx_password: Secret
    ca_file: str
    timeout: int
    fields: tuple
    tags: tuple
    valid_ranges: dict
    rollup_below: dict
    pg_url: Secret
    pg_schema: str
    pg_table: str
    window: int
    initial_lookback: int
    chunk: int
    late_data: int
    stale_after: int
    failed_runs_alert: int
    max_retries: int
    max_retry_wait: int
    require_clock_sync: str
    log_file: str
    backup_dir: str = ""
    backup_require_mount: bool = True
    backup_keep_daily: int = 7
    backup_keep_weekly: int = 4
    backup_max_age: int = 36 * 3600
    backup_remote: str = ""
    backup_remote_ssh: tuple = ("ssh", "-o", "BatchMode=yes")
    healthcheck_url: Secret = Secret("")
    backup_healthcheck_url: Secret = Secret("")
    warnings: tuple = field(default=())

    def secrets(self):
        """Every secret value, so error text can be scrubbed of them before it is shown or stored."""
        values = [self.influx_token.reveal(), self.influx_password.reveal(),
                  self.healthcheck_url.reveal(), self.backup_healthcheck_url.reveal()]
        url = self.pg_url.reveal()
        password = pg_password(url) or (re.search(r"[?&]password=([^&]*)", url) or [None, ""])[1]
        if password:  # a URL without one (peer or .pgpass authentication) holds nothing secret
            values += [url, password, urllib.parse.unquote(password), pg_userinfo(url)]
        return [v for v in values if v]

    def describe_pg(self):
        """PG_URL for messages: user, host, port and database, never the password."""
        return describe_pg_url(self.pg_url.reveal())


def read_env_file(path, required=False):
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


def load(env_file=".env", environ=None, file_required=False):
    """Read every setting; raise ConfigError naming all problems at once. file_required: the user
    named the file (--env-file), so its absence is a problem rather than "no .env here"."""
    environ = dict(os.environ if environ is None else environ)
    file_values, problems = read_env_file(env_file, required=file_required)
    if file_required and problems and not os.path.exists(env_file):
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

    def get(key):
        value = merged.get(key)
        if value is None or value.strip() == "":
            return _BY_KEY[key].default if _BY_KEY[key].default is not None else ""
        return value.strip()

    missing = [" or ".join((s.key,) + s.aliases) for s in SETTINGS if s.required and not get(s.key)]
    if missing and env_file and not os.path.exists(env_file):
        problems.append(f"there is no {env_file} in {os.getcwd()}: run from the directory that holds it, pass "
                        f"--env-file PATH, or set the settings in the environment")
    problems += [f"{names} is required ({_BY_KEY[names.split()[0]].help})" for names in missing]

    def duration(key, minimum=1):
        """Seconds, or None after recording a problem (rules that combine settings then skip it)."""
        try:
            seconds = parse_duration(get(key))
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
            return None
        if seconds < minimum:
            problems.append(f"{key} must be at least {format_duration(minimum)}, not {get(key)}")
            return None
        return seconds

    def integer(key, minimum):
        try:
            value = int(get(key))
            if value < minimum:
                raise ValueError
            return value
        except ValueError:
            problems.append(f"{key} must be a whole number of at least {minimum}, not {get(key)!r}")
            return minimum

    def names(key):
        items = tuple(x.strip() for x in get(key).split(",") if x.strip())
        if len(set(items)) != len(items):
            problems.append(f"{key} lists a name twice")
        return items

    url = get("INFLUX_URL")
    if url and "@" in url.split("://", 1)[-1].split("/", 1)[0]:
        problems.append("INFLUX_URL must not carry a user name or password (the value is not shown): put the "
                        "token in INFLUX_TOKEN, or InfluxDB 1.x credentials in INFLUX_USERNAME and INFLUX_PASSWORD")
        url = ""
    if url and not re.match(r"^https?://[^/\s]+", url):
        problems.append(f"INFLUX_URL must start with http:// or https://, not {url!r}")
    elif url and re.search(r"/(query|write|ping|health|api/v2(/query|/write)?)/?$", url.split("?")[0]):
        base = re.sub(r"/(query|write|ping|health|api/v2(/query|/write)?)/?$", "", url.split("?")[0])
        problems.append(f"INFLUX_URL is the server's base URL, without the API path: set it to {base}")

    language = get("INFLUX_QUERY_LANGUAGE").lower()
    if language not in LANGUAGES:
        problems.append(f"INFLUX_QUERY_LANGUAGE must be flux or influxql, not {language!r}")

    token = get("INFLUX_TOKEN")
    token_file = get("INFLUX_TOKEN_FILE")
    if token_file:
        if token:
            problems.append("set INFLUX_TOKEN or INFLUX_TOKEN_FILE, not both")
        try:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
            if not token:
                problems.append(f"INFLUX_TOKEN_FILE {token_file} is empty")
        except OSError as exc:
            problems.append(f"INFLUX_TOKEN_FILE {token_file}: {exc.strerror}")
    if language == "flux":
        if not token:
            problems.append("INFLUX_TOKEN (or TOKEN, or INFLUX_TOKEN_FILE) is required for the flux source")
        if not get("INFLUX_ORG"):
            problems.append("INFLUX_ORG (or ORG) is required for the flux source")
    if get("INFLUX_USERNAME") and token:
        problems.append("set either INFLUX_TOKEN or INFLUX_USERNAME/INFLUX_PASSWORD, not both")

    ca_file = get("INFLUX_CA_FILE")
    if ca_file and not os.path.isfile(ca_file):
        problems.append(f"INFLUX_CA_FILE {ca_file} does not exist")

    for key in ("INFLUX_BUCKET", "INFLUX_MEASUREMENT", "PG_SCHEMA", "PG_TABLE"):
        if not get(key):
            problems.append(f"{key} must not be empty")
        elif len(get(key).encode()) > 63 and key.startswith("PG_"):
            problems.append(f"{key} is longer than PostgreSQL's 63-byte limit for names")

    fields = names("FIELDS")
    tags = names("TAGS")
    reserved = {"time"}
    for name in fields + tags:
        if name.lower() in reserved:
            problems.append(f"{name!r} cannot be a field or tag column: the table already has a time column")
    overlap = set(fields) & set(tags)
    if overlap:
        problems.append(f"{', '.join(sorted(overlap))} is listed in both FIELDS and TAGS")

    valid_ranges = {}
    for item in names("VALID_RANGES"):
        match = re.match(r"^(.+?)\s*=\s*(-?[0-9.]+(?:e-?\d+)?)\s*\.\.\s*(-?[0-9.]+(?:e-?\d+)?)$", item)
        try:
            low, high = float(match.group(2)), float(match.group(3))
        except (AttributeError, ValueError):
            problems.append(f"VALID_RANGES: {item!r} is not field=min..max such as spo2=50..100")
            continue
        if low > high:
            problems.append(f"VALID_RANGES: {item!r} has min above max")
        elif fields and match.group(1) not in fields:
            problems.append(f"VALID_RANGES names {match.group(1)!r}, which FIELDS does not keep")
        valid_ranges[match.group(1)] = (low, high)

    rollup_below = {}
    for item in names("ROLLUP_BELOW"):
        match = re.match(r"^(.+?)\s*=\s*(-?[0-9.]+)$", item)
        try:
            rollup_below[match.group(1)] = float(match.group(2))
        except (AttributeError, ValueError):
            problems.append(f"ROLLUP_BELOW: {item!r} is not field=value such as spo2=90")

    window = duration("WINDOW")
    if window and 86400 % window:
        problems.append(f"WINDOW {get('WINDOW')} must divide one day evenly (e.g. 1s, 5s, 10s, 1m)")
        window = None
    chunk = duration("CHUNK")
    if window and chunk and chunk % window:
        problems.append(f"CHUNK {get('CHUNK')} must be a multiple of WINDOW {get('WINDOW')}")
    late_data = duration("LATE_DATA", minimum=0)
    if window and late_data and late_data % window:
        problems.append(f"LATE_DATA {get('LATE_DATA')} must be a multiple of WINDOW {get('WINDOW')}")

    clock_sync = get("REQUIRE_CLOCK_SYNC").lower()
    if clock_sync not in ("auto", "yes", "no"):
        problems.append(f"REQUIRE_CLOCK_SYNC must be auto, yes or no, not {clock_sync!r}")

    backup_dir = get("BACKUP_DIR")
    if backup_dir and not os.path.isabs(backup_dir):
        problems.append(f"BACKUP_DIR must be an absolute path, not {backup_dir!r}")
    require_mount = get("BACKUP_REQUIRE_MOUNT").lower()
    if require_mount not in ("yes", "no"):
        problems.append(f"BACKUP_REQUIRE_MOUNT must be yes or no, not {require_mount!r}")
    try:
        remote_ssh = tuple(shlex.split(get("BACKUP_REMOTE_SSH")))
    except ValueError as exc:
        problems.append(f"BACKUP_REMOTE_SSH: {exc}")
        remote_ssh = ()
    for key in ("HEALTHCHECK_URL", "BACKUP_HEALTHCHECK_URL"):
        if get(key) and not re.match(r"^https?://[^/\s]+", get(key)):
            problems.append(f"{key} must start with http:// or https://")

    pg_url = get("PG_URL")
    pg_problem = pg_url and pg_url_problem(pg_url)
    if pg_problem:
        problems.append(pg_problem)

    config = Config(
        influx_url=url.rstrip("/"),
        influx_token=Secret(token),
        influx_org=get("INFLUX_ORG"),
        bucket=get("INFLUX_BUCKET"),
        measurement=get("INFLUX_MEASUREMENT"),
        language=language,
        retention_policy=get("INFLUX_RETENTION_POLICY"),
        influx_username=get("INFLUX_USERNAME"),
        influx_password=Secret(get("INFLUX_PASSWORD")),
        ca_file=ca_file,
        timeout=duration("INFLUX_TIMEOUT") or 1,
        fields=fields,
        tags=tags,
        valid_ranges=valid_ranges,
        rollup_below=rollup_below,
        pg_url=Secret(pg_url),
        pg_schema=get("PG_SCHEMA"),
        pg_table=get("PG_TABLE"),
        window=window or 1,
        initial_lookback=duration("INITIAL_LOOKBACK") or 1,
        chunk=chunk or 1,
        late_data=late_data or 0,
        stale_after=duration("STALE_AFTER") or 1,
        failed_runs_alert=integer("FAILED_RUNS_ALERT", 1),
        max_retries=integer("MAX_RETRIES", 1),
        max_retry_wait=duration("MAX_RETRY_WAIT") or 1,
        require_clock_sync=clock_sync,
        log_file=get("LOG_FILE"),
        backup_dir=backup_dir.rstrip("/") or backup_dir,
        backup_require_mount=require_mount != "no",
        backup_keep_daily=integer("BACKUP_KEEP_DAILY", 1),
        backup_keep_weekly=integer("BACKUP_KEEP_WEEKLY", 0),
        backup_max_age=duration("BACKUP_MAX_AGE") or 1,
        backup_remote=get("BACKUP_REMOTE"),
        backup_remote_ssh=remote_ssh,
        healthcheck_url=Secret(get("HEALTHCHECK_URL")),
        backup_healthcheck_url=Secret(get("BACKUP_HEALTHCHECK_URL")),
        warnings=tuple(warnings),
    )
    if problems:
        raise ConfigError([redact(p, config.secrets()) for p in problems])
    return config
