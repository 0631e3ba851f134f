"""The docs say what the code does: the commands table and reference are generated from the CLI's
declarations, .env.example from SETTINGS, and every test docs/testing.md names exists where it says."""

import ast
import glob
import os
import re

import pytest

from bench import today
from loader import status_rules
from loader.cli import COMMANDS
from loader.config import SETTINGS
from setup import commands_doc, config_types, env_example, sessions_doc
from tests.support.harness import ROOT


def test_the_commands_table_and_reference_are_generated_from_the_cli_declarations():
    """README's table and docs/commands.md say what the code declares (setup/commands_doc.py rewrites them)."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    assert commands_doc.readme_with_table(readme) == readme, "run: python3 setup/commands_doc.py"
    with open(os.path.join(ROOT, "docs", "commands.md"), encoding="utf-8") as handle:
        assert handle.read() == commands_doc.commands_md(), "run: python3 setup/commands_doc.py"
    for name in COMMANDS:
        assert f"## {name}\n" in commands_doc.commands_md()


def test_the_status_exit_tables_are_the_rules_the_code_judges_by():
    """README's and docs/operations.md's status tables, and `status --help`, are loader/status_rules.py's RULES;
    every rule is judged somewhere (status.py, or the CLI for PostgreSQL unreachable) by its key."""
    for path in ("README.md", os.path.join("docs", "operations.md")):
        with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
            text = handle.read()
        assert commands_doc.with_status_rules(text) == text, f"{path}: run python3 setup/commands_doc.py"
        assert status_rules.table() in text
    with open(os.path.join(ROOT, "loader", "status.py"), encoding="utf-8") as handle:
        judged = set(re.findall(r'problem\("([a-z-]+)"', handle.read()))
    with open(os.path.join(ROOT, "loader", "cli.py"), encoding="utf-8") as handle:
        judged |= set(re.findall(r'status_rules\.RULE\["([a-z-]+)"\]', handle.read()))
    assert judged == set(status_rules.RULE)
    codes = dict(COMMANDS["status"].exit_codes)
    for rule in status_rules.RULES:
        assert rule.when in codes[rule.exit_code]

def test_the_sessions_reference_is_generated_from_the_metrics_declarations():
    with open(os.path.join(ROOT, "docs", "sessions.md"), encoding="utf-8") as handle:
        assert handle.read() == sessions_doc.sessions_md(), "run: python3 setup/sessions_doc.py"


def test_env_example_documents_every_setting():
    text = open(os.path.join(ROOT, ".env.example"), encoding="utf-8").read()
    assert text == env_example.env_example(), "run: python3 setup/env_example.py > .env.example"  # help texts too
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    assert documented == {s.key for s in SETTINGS}
    for s in SETTINGS:
        block = text.split(f"{s.key}=")[0].rsplit("\n\n", 1)[-1]
        assert ("Required" in block) or ("Optional" in block), s.key



def test_every_test_the_docs_name_is_in_the_file_they_name():
    defined = {}
    for path in glob.glob(os.path.join(ROOT, "tests", "test_*.py")):
        with open(path, encoding="utf-8") as handle:
            for node in ast.parse(handle.read()).body:
                if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                    defined[node.name] = os.path.basename(path)
    named = []
    for doc in [os.path.join(ROOT, "README.md")] + glob.glob(os.path.join(ROOT, "docs", "*.md")):
        with open(doc, encoding="utf-8") as handle:
            named += re.findall(r"`(test_\w+\.py)::(test_\w+)", handle.read())
    assert len(named) > 30  # the fault matrix
    wrong = [f"{file}::{name}" for file, name in named if defined.get(name) != file]
    assert not wrong, f"named in the docs but not there: {wrong}"


def test_each_benchmark_that_writes_its_today_table_has_its_place_and_rewrites_only_it():
    """bench/run and bench/validate --markdown rewrite their tables under docs/benchmarks.md's Today (bench/today.py):
    every name a benchmark writes has its markers once, and a rewrite changes what lies between them alone."""
    written = set()
    for name in os.listdir(os.path.join(ROOT, "bench")):
        if name.endswith(".py"):
            with open(os.path.join(ROOT, "bench", name), encoding="utf-8") as handle:
                written |= set(re.findall(r'today\.write\("([^"]+)"', handle.read()))
    assert written == {"bench/run", "bench/validate"}
    with open(today.DOCS, encoding="utf-8") as handle:
        text = handle.read()
    for name in written:
        assert text.count(today.BEGIN.format(name)) == text.count(today.END.format(name)) == 1
        block = today.table("A benchmark", ("measure", "figure"), [("CPU", "0.5")])
        out = today.replace(text, name, block)
        begin, end = out.index(today.BEGIN.format(name)), out.index(today.END.format(name))
        assert out[begin:end].endswith(block + "\n") and out[:begin] == text[:begin]
        assert out[end:] == text[text.index(today.END.format(name)):]
    with pytest.raises(today.MarkersMissing):
        today.replace("# Benchmarks\n", "bench/run", "x")


def test_configs_types_for_mypy_are_generated_from_the_settings():
    """loader/config_types.py gives mypy Config's attributes and their types, from SETTINGS and their kinds."""
    with open(config_types.PATH, encoding="utf-8") as handle:
        assert handle.read() == config_types.config_types(), "run: python3 setup/config_types.py"
