"""docs/benchmarks.md opens with "Today": one table per benchmark, its newest figures, written by the benchmark
itself when it runs with --markdown (bench/run, bench/validate) between that benchmark's two markers. The dated
history below them is written by hand; nothing here touches it."""

import os
import re
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs", "benchmarks.md")
BEGIN, END = "<!-- today: {} -->", "<!-- /today: {} -->"


class MarkersMissing(Exception):
    """docs/benchmarks.md has no place for the benchmark's table."""


def table(title, header, rows, note=""):
    """A benchmark's Markdown block: a heading naming the date it was measured, the table, a note."""
    lines = [f"### {title} (measured {time.strftime('%Y-%m-%d')})", "",
             "| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines + ([""] + [textwrap.fill(note, 110)] if note else []))


def replace(text, name, block):
    """`text` with what lies between the benchmark's markers replaced by `block`."""
    pattern = re.compile(re.escape(BEGIN.format(name)) + r"\n.*?\n" + re.escape(END.format(name)), re.S)
    if not pattern.search(text):
        raise MarkersMissing(f"{DOCS} has no {BEGIN.format(name)} … {END.format(name)} pair: put them where the "
                             "table belongs, under '## Today'")
    return pattern.sub(lambda _: f"{BEGIN.format(name)}\n{block}\n{END.format(name)}", text, count=1)


def write(name, block, path=DOCS):
    """Rewrite the benchmark's table in docs/benchmarks.md, and say so."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(replace(text, name, block))
    print(f"\n{os.path.relpath(path, ROOT)}: its '{name}' table under 'Today' rewritten")
