"""install.sh's .env helper (stdlib only). Secrets travel in environment variables, never argv.

  envfile.py get FILE KEY              print KEY's value from FILE (nothing if absent)
  envfile.py create FILE EXAMPLE       write FILE from EXAMPLE with every IA_SET_<KEY> variable of
                                       the environment set; mode 0600; refuses to overwrite FILE
  envfile.py add-missing FILE          append each IA_SET_<KEY> that FILE does not set; never changes a line
  envfile.py set FILE KEY              set KEY to IA_SET_<KEY> (an option the user gave install.sh): the
                                       line setting KEY is replaced, else one is appended; mode kept
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from typing import Iterable, List, Optional, Tuple


def read_value(path: str, key: str) -> str:
    if not os.path.exists(path):
        return ""
    pattern = re.compile(r"^\s*(?:export\s+)?" + re.escape(key) + r"\s*=\s*(.*)$")
    value = ""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            match = pattern.match(line.rstrip("\n"))
            if match:
                value = _unquote(match.group(1).strip())
    return value


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw.split(" #", 1)[0].strip()


def quote(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./:@+%,=-]*", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def create(path: str, example: str) -> None:
    if os.path.exists(path):
        raise SystemExit(f"{path} exists; it is never overwritten")
    values = {k[len("IA_SET_"):]: v for k, v in os.environ.items() if k.startswith("IA_SET_")}
    lines, seen = [], set()
    with open(example, encoding="utf-8") as handle:
        for line in handle:
            match = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=", line)
            if match and match.group(2) in values and match.group(2) not in seen:
                key = match.group(2)
                seen.add(key)
                line = f"{key}={quote(values[key])}\n"
            lines.append(line)
    for key in sorted(set(values) - seen):
        lines.append(f"{key}={quote(values[key])}\n")
    write_atomically(path, lines, mode=0o600)


def write_atomically(path: str, lines: Iterable[str], mode: int, owner: Optional[Tuple[int, int]] = None) -> None:
    """Write a temporary file beside path with mode (and owner), then rename it over path."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".env.")
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.writelines(lines)
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def add_missing(path: str) -> None:
    values = {k[len("IA_SET_"):]: v for k, v in os.environ.items() if k.startswith("IA_SET_")}
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    missing = [k for k in sorted(values) if not re.search(r"^\s*(?:export\s+)?" + re.escape(k) + r"\s*=", text, re.M)]
    if missing:
        with open(path, "a", encoding="utf-8") as handle:
            if text and not text.endswith("\n"):
                handle.write("\n")
            handle.writelines(f"{k}={quote(values[k])}\n" for k in missing)
    print(" ".join(missing))


def set_value(path: str, key: str) -> None:
    value = os.environ["IA_SET_" + key]
    with open(path, encoding="utf-8") as handle:
        lines = handle.readlines()
    pattern = re.compile(r"^\s*(?:export\s+)?" + re.escape(key) + r"\s*=")
    new = f"{key}={quote(value)}\n"
    hits = [i for i, line in enumerate(lines) if pattern.match(line)]
    if hits and all(lines[i] == new for i in hits):
        return
    for i in reversed(hits[1:]):
        del lines[i]
    if hits:
        lines[hits[0]] = new
    else:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(new)
    st = os.stat(path)
    write_atomically(path, lines, st.st_mode & 0o777, (st.st_uid, st.st_gid) if os.geteuid() == 0 else None)


def main(argv: List[str]) -> None:
    if len(argv) == 4 and argv[1] == "get":
        print(read_value(argv[2], argv[3]))
    elif len(argv) == 4 and argv[1] == "create":
        create(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "set":
        set_value(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "add-missing":
        add_missing(argv[2])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
