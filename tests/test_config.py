"""Settings: read and checked in one place, every problem reported together, in the user's words."""

import os
import subprocess
import sys

import pytest

from loader import config as config_module
from loader.errors import ConfigError
from loader.pg import libpq_url
from tests.support.archive import archive_rows
from tests.support.harness import HOUR, ROOT, TOKEN, cli, flux_env, make_config, now
from tests.support.readings import feed_standin, pulse_points

BASE = {"INFLUX_URL": "http://localhost:8086", "INFLUX_TOKEN": "tok-123456", "INFLUX_ORG": "o",
        "PG_URL": "postgresql://u:pw-secret@localhost/db"}


def test_every_config_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as exc:
        config_module.load(env_file=None, environ={"INFLUX_QUERY_LANGUAGE": "sql", "WINDOW": "7s",
                                                   "CHUNK": "1d", "VALID_RANGES": "spo2=100..50,bpm",
                                                   "TAGS": "time"})
    text = "\n".join(exc.value.problems)
    for expected in ("INFLUX_URL or CONNECTION is required", "PG_URL or PG_CONNECT is required",
                     "INFLUX_QUERY_LANGUAGE must be flux or influxql", "WINDOW 7s must divide one day",
                     "min above max", "'bpm' is not field=min..max", "cannot be a field or tag column"):
        assert expected in text
    assert len(exc.value.problems) >= 7


def test_config_problems_are_reported_together_with_exit_2(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("INFLUX_URL=ftp://x\nWINDOW=7x\nPG_URLL=postgresql://a@b/c\n")
    env_file.chmod(0o600)
    result = cli("--env-file", str(env_file), "run", env={"PATH": os.environ["PATH"]})
    assert result.returncode == 2
    for text in ("INFLUX_URL must start with http", "WINDOW", "PG_URL or PG_CONNECT is required",
                 "did you mean PG_URL", "INFLUX_TOKEN"):
        assert text in result.stderr
    assert "Traceback" not in result.stderr


def test_aliases_precedence_and_token_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("CONNECTION=http://from-file:8086\nTOKEN=file-token\nORG=o\n"
                        "PG_CONNECT=postgresql://a@h/d\nWINDOW=10s\n")
    env_file.chmod(0o600)
    cfg = config_module.load(str(env_file), environ={"WINDOW": "5s"})
    assert cfg.influx_url == "http://from-file:8086" and cfg.influx_token.reveal() == "file-token"
    assert cfg.window == 5  # the environment wins over the file
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    cfg = config_module.load(None, environ=dict(BASE, INFLUX_TOKEN="", INFLUX_TOKEN_FILE=str(token_file)))
    assert cfg.influx_token.reveal() == "from-a-file"


def test_reference_dotenv_keys_work_unchanged(tmp_path, pg_url, standin):
    """The article's .env (CONNECTION, TOKEN, ORG, PG_CONNECT with postgresql://) runs as is."""
    feed_standin(standin, pulse_points(now() - HOUR, HOUR))
    env_file = tmp_path / ".env"
    env_file.write_text(f'TOKEN="{TOKEN}"\nORG="test-org"\nCONNECTION="{standin.url}"\nPG_CONNECT="{pg_url}"\n'
                        "INITIAL_LOOKBACK=1h\nREQUIRE_CLOCK_SYNC=no\n")
    env_file.chmod(0o600)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUX_", "PG_"))}
    result = cli("--env-file", str(env_file), "run", env=base)
    assert result.returncode == 0, result.stderr
    assert len(archive_rows(pg_url)) >= HOUR // 5 - 1


def test_environment_overrides_the_env_file(tmp_path, pg_url, standin):
    env_file = tmp_path / ".env"
    env_file.write_text(f"INFLUX_URL={standin.url}\nINFLUX_TOKEN=wrong\nINFLUX_ORG=o\nPG_URL={pg_url}\n")
    env_file.chmod(0o600)
    feed_standin(standin, pulse_points(now() - HOUR, HOUR))
    env = flux_env(pg_url, standin, INITIAL_LOOKBACK="1h")
    result = cli("--env-file", str(env_file), "run", env=env)
    assert result.returncode == 0, result.stderr


def test_a_missing_env_file_is_said_and_only_that(tmp_path):
    named = cli("--env-file", str(tmp_path / "nonexistent" / ".env"), "run", env={"PATH": os.environ["PATH"]})
    assert named.returncode == 2
    assert named.stderr.splitlines()[1:] == [f"  - the settings file {tmp_path}/nonexistent/.env does not exist "
                                             "(--env-file); copy .env.example there and fill it in"]
    implicit = subprocess.run([sys.executable, "-m", "loader", "run"], cwd=tmp_path, capture_output=True, text=True,
                              env={"PATH": os.environ["PATH"], "PYTHONPATH": ROOT})
    assert implicit.returncode == 2
    assert implicit.stderr.splitlines()[1] == (f"  - there is no .env in {tmp_path}: run from the directory that "
                                               "holds it, pass --env-file PATH, or set the settings in the environment")


def test_settings_mistakes_are_each_said_once_in_the_users_words(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("influx_url=http://127.0.0.1:8086\nINFLUX_URL=http://127.0.0.1:8086\n"
                        "CONNECTION=http://10.0.0.9:8086\nINFLUX_TOKEN=t0ken-value\nINFLUX_ORG=o\n"
                        "PG_URL=postgresql://u@127.0.0.1/db\nCHUNK=0\n")
    env_file.chmod(0o600)
    result = cli("--env-file", str(env_file), "run", env={"PATH": os.environ["PATH"]})
    assert result.returncode == 2
    problems = result.stderr.splitlines()[1:]
    assert f"  - {env_file}: unknown key influx_url (did you mean INFLUX_URL?)" in problems
    assert f"  - {env_file} sets both INFLUX_URL and CONNECTION, to different values; keep one" in problems
    assert [p for p in problems if "CHUNK" in p] == ["  - CHUNK: '0' is not a duration such as 5s, 15m, 1h or 30d"]


def test_sqlalchemy_style_urls_reach_libpq_unchanged_but_for_the_driver():
    assert libpq_url("postgresql://u:p@h:5432/d") == "postgresql://u:p@h:5432/d"
    assert libpq_url("postgres://u@h/d") == "postgresql://u@h/d"
    assert libpq_url("postgresql+psycopg2://u:p%40x@h/d?sslmode=require") == \
        "postgresql://u:p%40x@h/d?sslmode=require"


def test_names_with_control_characters_and_bounds_too_large_are_refused_together():
    with pytest.raises(ConfigError) as exc:
        config_module.load(None, environ=dict(BASE, INFLUX_MEASUREMENT="sp\ro2", FIELDS="spo2,bp\tm", TAGS="u\nid",
                                              INFLUX_BUCKET="pulse\r\nox", INFLUX_RETENTION_POLICY="autogen\x7f",
                                              VALID_RANGES="spo2=50..1e400"))
    text = "\n".join(exc.value.problems)
    for expected in ("INFLUX_MEASUREMENT contains control character(s) U+000D",
                     "FIELDS: 'bp\\tm' contains control character(s) U+0009",
                     "TAGS: 'u\\nid' contains control character(s) U+000A",
                     "INFLUX_BUCKET contains control character(s) U+000A, U+000D",
                     "INFLUX_RETENTION_POLICY contains control character(s) U+007F",
                     "VALID_RANGES: 'spo2=50..1e400' has a bound too large for a number"):
        assert expected in text


def test_a_carriage_return_in_the_measurement_is_one_line_exit_2_before_influxdb_is_asked(pg_url, standin):
    """Inside a name (at its ends it is whitespace, stripped like a CRLF line end)."""
    result = cli("run", env=flux_env(pg_url, standin, INFLUX_MEASUREMENT="sp\ro2"))
    assert result.returncode == 2, result.stderr
    assert "INFLUX_MEASUREMENT contains control character(s) U+000D (a line break or tab pasted in?)" in result.stderr
    assert standin.queries == [] and "Traceback" not in result.stderr


def test_a_timeout_beyond_influxdb_clouds_query_limit_is_refused_for_cloud_urls_only():
    cloud = dict(BASE, INFLUX_URL="https://eu-central-1-1.aws.cloud2.influxdata.com", INFLUX_TIMEOUT="2m")
    with pytest.raises(ConfigError, match="longer than the 90 s InfluxDB Cloud lets a query run"):
        config_module.load(None, environ=cloud)
    assert config_module.load(None, environ=dict(cloud, INFLUX_TIMEOUT="90s")).timeout == 90
    assert config_module.load(None, environ=dict(BASE, INFLUX_TIMEOUT="2m")).timeout == 120  # own server: yours


def test_fields_without_the_session_fields_warn_saying_what_is_lost_and_how_to_say_so():
    url = "postgresql://archive@localhost/archive"
    cfg = make_config(url, "http://localhost:8086", FIELDS="spo2")
    assert cfg.warnings == ("SESSION_PULSE bpm is not in FIELDS, so sessions have no pulse; add it to FIELDS, "
                            "or set SESSION_PULSE=none to say so",)
    quiet = make_config(url, "http://localhost:8086", FIELDS="spo2", SESSION_PULSE="none")
    assert quiet.warnings == () and quiet.session_pulse == ""
    with pytest.raises(ConfigError, match="SESSION_MIN 2d must be at most 1d"):
        make_config(url, "http://localhost:8086", SESSION_MIN="2d")


def test_retired_devices_are_named_as_status_names_them_and_only_by_tags_the_archive_keeps():
    config = config_module.load(None, environ=BASE | {"TAGS": "uid,zone", "RETIRED_DEVICES": "zone=b, uid=a ;uid=c"})
    assert config.retired_devices == ("uid=a,zone=b", "uid=c")  # series_key's order: status's text matches
    with pytest.raises(ConfigError) as exc:
        config_module.load(None, environ=BASE | {"TAGS": "uid", "RETIRED_DEVICES": "uid=a;ring7;room=x"})
    assert exc.value.problems == [
        "RETIRED_DEVICES: 'ring7' is not tag=value such as uid=ring1 (several devices: uid=ring1;uid=old)",
        "RETIRED_DEVICES names tag room in 'room=x', which TAGS does not hold (TAGS=uid)"]
