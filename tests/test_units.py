"""Pure functions: window arithmetic, config checking, escaping. No servers."""

import os
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loader import config as config_module
from loader.config import SETTINGS, redact
from loader.errors import ConfigError
from loader.pg import libpq_url
from loader.sources.flux import build_query, flux_string
from loader.sources.influxql import build_statements, identifier, source_name
from loader.humanize import human_duration
from loader.windows import chunks, floor_to, format_duration, parse_duration, parse_time, rfc3339

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = {"INFLUX_URL": "http://localhost:8086", "INFLUX_TOKEN": "tok-123456", "INFLUX_ORG": "o",
        "PG_URL": "postgresql://u:pw-secret@localhost/db"}


@given(st.integers(0, 4_000_000_000), st.integers(0, 400_000), st.sampled_from([5, 60, 3600, 86400]))
def test_chunks_cover_the_range_exactly_with_aligned_inner_boundaries(start, length, chunk):
    pieces = chunks(start, start + length, chunk)
    assert sum(hi - lo for lo, hi in pieces) == length
    for (lo, hi), (nlo, _) in zip(pieces, pieces[1:]):
        assert hi == nlo and hi % chunk == 0 and lo < hi
    if pieces:
        assert pieces[0][0] == start and pieces[-1][1] == start + length


@given(st.integers(-10**10, 10**10), st.sampled_from([1, 5, 10, 60, 300, 86400]))
def test_floor_is_the_start_of_the_containing_window(t, width):
    start = floor_to(t, width)
    assert start % width == 0 and start <= t < start + width


@given(st.integers(0, 4_000_000_000))
def test_rfc3339_round_trips(t):
    assert parse_time(rfc3339(t)) == t


def test_durations_and_times():
    assert [parse_duration(x) for x in ("5s", "15m", "1h", "30d", "2w")] == [5, 900, 3600, 2592000, 1209600]
    assert format_duration(86400) == "1d" and format_duration(5) == "5s" and format_duration(5400) == "90m"
    assert [human_duration(s) for s in (45, 724, 10804, 190000)] == ["45s", "12m 4s", "3h 0m", "2d 4h"]
    assert parse_time("2026-10-01T02:00:00+02:00") == parse_time("2026-10-01T00:00:00Z")
    for bad in ("5", "5 minutes", "-1h"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_time("2026-10-01T00:00:00")


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


def test_world_readable_env_file_is_refused(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in BASE.items()))
    env_file.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        config_module.load(str(env_file), environ={})


def test_secrets_do_not_show_in_repr_or_errors():
    cfg = config_module.load(None, environ=BASE)
    assert "tok-123456" not in repr(cfg) and "pw-secret" not in repr(cfg)
    assert cfg.describe_pg() == "postgresql://u@localhost/db"  # no password field at all
    assert redact("failed for tok-123456 with pw-secret", cfg.secrets()) == "failed for *** with ***"


def test_env_example_documents_every_setting():
    text = open(os.path.join(ROOT, ".env.example"), encoding="utf-8").read()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    assert documented == {s.key for s in SETTINGS}
    for s in SETTINGS:
        block = text.split(f"{s.key}=")[0].rsplit("\n\n", 1)[-1]
        assert ("Required" in block) or ("Optional" in block), s.key


def test_sqlalchemy_style_urls_reach_libpq_unchanged_but_for_the_driver():
    assert libpq_url("postgresql://u:p@h:5432/d") == "postgresql://u:p@h:5432/d"
    assert libpq_url("postgres://u@h/d") == "postgresql://u@h/d"
    assert libpq_url("postgresql+psycopg2://u:p%40x@h/d?sslmode=require") == \
        "postgresql://u:p%40x@h/d?sslmode=require"


HOSTILE = ['a"b', "x\\\") |> drop(columns: [\"_value\"]) //", "${danger}", "semi;colon", "späce ünïcode", "it's"]


@pytest.mark.parametrize("name", HOSTILE)
def test_flux_strings_are_escaped(name):
    from flux_standin import Parser
    program = Parser(f"x = from(bucket: {flux_string(name)})").program()
    assert program[0][2][2]["bucket"] == name  # parsed back as one literal, unchanged


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_stay_inside_literals_in_whole_queries(name):
    cfg = config_module.load(None, environ=dict(BASE, INFLUX_BUCKET=name, INFLUX_MEASUREMENT=name,
                                                FIELDS=name.replace(",", ""), TAGS="uid",
                                                VALID_RANGES=f"{name.replace(',', '')}=1..2"))
    from flux_standin import Parser
    program = Parser(build_query(cfg, 0, 3600)).program()
    assert [stmt[0] for stmt in program] == ["assign", "expr", "expr"]  # nothing injected
    text = identifier(name)
    assert text.startswith('"') and text.endswith('"') and '"' not in text[1:-1].replace('\\"', "")
    statements = build_statements(cfg, [name], 0, 3600)
    assert all(s.count(identifier(name)) >= 1 for _, _, s in statements)
    assert source_name(cfg) == identifier(name)
