"""A stand-in for the InfluxDB 2 query API (POST /api/v2/query), for testing the Flux source.

No InfluxDB 2 server can be installed here, so this implements the part of Flux our queries use,
following the documented semantics (docs.influxdata.com, Flux stdlib "universe"):
  - from() yields one table per series; group key = _measurement, _field and every tag;
  - range() keeps start <= _time < stop and adds _start/_stop to the group key;
  - filter() drops rows, and tables left empty (onEmpty: "drop"); what a table's group key decides
    is asked once per table, the rest once per row;
  - group(columns:) regroups, the group key becomes exactly those columns;
  - aggregateWindow() windows are epoch-aligned, half-open and clipped to the table's _start/_stop;
    the output _time comes from timeSrc (default "_stop"); createEmpty adds null windows;
  - keep()/drop() remove columns (and them from the group key);
  - pivot() removes columnKey/valueColumn from the group key, merges tables whose key is then
    equal, and on a second value for the same row and column the later one wins (silently);
  - count(), limit(), yield(name:).
Responses are annotated CSV (#datatype/#group/#default, header, tables separated by a blank line
when the schema changes, result column empty in rows with its name in #default), JSON error bodies
({"code", "message"}), 401 on a bad token, 404 on an unknown bucket, and injected faults: a status
with Retry-After, a response that hangs, a body cut off mid-stream, an error table inside a 200.
tests/test_flux_standin.py checks the engine against vectors from Flux's own stdlib tests.
"""

import bisect
import json
import math
import operator
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.serving import serve, stop

NS = 1_000_000_000
_DUR = {"ns": 1, "us": 1000, "ms": 1_000_000, "s": NS, "m": 60 * NS, "h": 3600 * NS, "d": 86400 * NS,
        "w": 7 * 86400 * NS}


# ---------------------------------------------------------------- tables

@dataclass
class Table:
    key: tuple          # group key column names, in order
    columns: list       # all column names, in order
    rows: list = field(default_factory=list)  # dicts column -> value
    types: dict = field(default_factory=dict)  # column -> flux csv datatype

    def key_values(self):
        return tuple(self.rows[0].get(c) for c in self.key) if self.rows else ()


def _type_of(value):
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    return "string"


def _regroup(tables, key_fn):
    """Rows of all tables, regrouped by key_fn(table) -> tuple of key columns; table order = first seen.

    Merging tables whose column types differ is a runtime error in Flux ("schema collision").
    """
    out = {}
    for t in tables:
        merged = set()  # the groups this table's schema is merged into already (once each, not per row)
        key_cols = key_fn(t)
        if set(key_cols) <= set(t.key):  # a new key within the table's own: one value in every row, one move
            parts = [t.rows] if t.rows else []
        else:
            parts = [[row] for row in t.rows]
        for part in parts:
            row = part[0]
            kv = tuple(row.get(c) for c in key_cols)
            ident = (key_cols, kv)
            if ident not in out:
                out[ident] = Table(key=key_cols, columns=list(t.columns), types=dict(t.types))
            dest = out[ident]
            if ident not in merged:
                merged.add(ident)
                for c in t.columns:
                    if c not in dest.columns:
                        dest.columns.append(c)
                        dest.types[c] = t.types.get(c)
                    elif dest.types.get(c) != t.types.get(c) and t.types.get(c) and dest.types.get(c):
                        raise FluxRuntimeError(f"schema collision detected: column \"{c}\" is both of type "
                                               f"{dest.types[c]} and {t.types[c]}")
            dest.rows.extend(part)
    return list(out.values())


# ---------------------------------------------------------------- lexer / parser

_TOKEN = re.compile(r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d))
  | (?P<duration>-?(?:\d+(?:ns|us|ms|mo|s|m|h|d|w|y))+)
  | (?P<number>-?\d+\.\d*(?:[eE][-+]?\d+)?|-?\d+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<op>\|>|=>|==|!=|>=|<=|=~|<|>|=|\(|\)|\[|\]|\{|\}|:|,|\.|\+|-|\*|/)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
""", re.X)


def _unescape(s):
    out, i = [], 1
    while i < len(s) - 1:
        ch = s[i]
        if ch == "\\":
            nxt = s[i + 1]
            out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
            i += 2
        else:
            if s.startswith("${", i):
                raise FluxError("string interpolation is not supported by the stand-in")
            out.append(ch)
            i += 1
    return "".join(out)


def tokenize(text):
    pos, out = 0, []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise FluxError(f"error @{pos}: invalid token {text[pos:pos + 10]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        out.append((kind, m.group()))
    out.append(("eof", ""))
    return out


class FluxError(Exception):
    pass


class FluxRuntimeError(Exception):
    """An error during execution: InfluxDB reports it as an error table inside an HTTP 200."""


def parse_time(text):
    frac = 0
    m = re.match(r"(.*?)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    base, fraction, zone = m.groups()
    if fraction:
        frac = int((fraction[1:] + "000000000")[:9])
    dt = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return int(dt.timestamp()) * NS + frac


def parse_duration(text):
    sign = -1 if text.startswith("-") else 1
    total = 0
    for n, unit in re.findall(r"(\d+)(ns|us|ms|mo|s|m|h|d|w|y)", text):
        if unit in ("mo", "y"):
            raise FluxError("calendar durations are not supported by the stand-in")
        total += int(n) * _DUR[unit]
    return sign * total


class Parser:
    def __init__(self, text):
        self.toks = tokenize(text)
        self.i = 0
        self.imported = set()

    def peek(self, k=0):
        return self.toks[self.i + k]

    def next(self):
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, value):
        tok = self.next()
        if tok[1] != value:
            raise FluxError(f"expected {value!r}, got {tok[1]!r}")
        return tok

    def program(self):
        stmts, imported = [], self.imported
        while self.peek()[0] != "eof":
            if self.peek()[1] == "import":
                self.next()
                package = _unescape(self.next()[1])
                if package not in PACKAGES:
                    raise FluxError(f'package "{package}" is not supported by the stand-in')
                imported.add(package)
                continue
            if self.peek()[0] == "name" and self.peek(1)[1] == "=":
                name = self.next()[1]
                self.next()
                stmts.append(("assign", name, self.pipe()))
            else:
                stmts.append(("expr", self.pipe()))
        return stmts

    def pipe(self):
        node = self.primary_call()
        while self.peek()[1] == "|>":
            self.next()
            name = self.next()[1]
            node = ("pipe", node, name, self.args())
        return node

    def primary_call(self):
        tok = self.next()
        if tok[0] != "name":
            raise FluxError(f"unexpected {tok[1]!r}")
        if self.peek()[1] == "(":
            return ("call", tok[1], self.args())
        return ("ref", tok[1])

    def args(self):
        self.expect("(")
        out = {}
        while self.peek()[1] != ")":
            key = self.next()[1]
            self.expect(":")
            out[key] = self.value()
            if self.peek()[1] == ",":
                self.next()
        self.expect(")")
        return out

    def value(self):
        tok = self.peek()
        if tok[1] == "(":
            # function literal (r) => expr
            self.next()
            param = self.next()[1]
            self.expect(")")
            self.expect("=>")
            return ("fn", param, self.expr())
        if tok[1] == "[":
            self.next()
            items = []
            while self.peek()[1] != "]":
                items.append(self.value())
                if self.peek()[1] == ",":
                    self.next()
            self.next()
            return items
        return self.atom()

    def atom(self):
        kind, text = self.next()
        if kind == "string":
            return _unescape(text)
        if kind == "time":
            return ("time", parse_time(text))
        if kind == "duration":
            return ("duration", parse_duration(text))
        if kind == "number":
            return float(text) if "." in text or "e" in text.lower() else int(text)
        if kind == "name":
            if text in ("true", "false"):
                return text == "true"
            if self.peek()[1] == ".":
                self.next()
                member = self.next()[1]
                if self.peek()[1] == "(":  # a package's function: types.isType(v: r._value, type: "float")
                    if text not in self.imported:
                        raise FluxError(f"undefined identifier {text}")
                    return ("call", f"{text}.{member}", self.args())
                return ("member", text, member)
            return ("ref", text)
        if text == "(":
            inner = self.expr()
            self.expect(")")
            return inner
        raise FluxError(f"unexpected {text!r}")

    # predicate expressions: or > and > not > comparison
    def expr(self):
        node = self.conj()
        while self.peek()[1] == "or":
            self.next()
            node = ("or", node, self.conj())
        return node

    def conj(self):
        node = self.neg()
        while self.peek()[1] == "and":
            self.next()
            node = ("and", node, self.neg())
        return node

    def neg(self):
        if self.peek()[1] == "not":
            self.next()
            return ("not", self.neg())
        left = self.atom()
        if self.peek()[1] in ("==", "!=", ">=", "<=", "<", ">"):
            op = self.next()[1]
            return ("cmp", op, left, self.atom())
        return left


_COMPARE = {"==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le, "<": operator.lt,
            ">": operator.gt}


def _compared(op, a, b):
    """A comparison in a filter: false against null, an error between a string and a number."""
    if a is None or b is None:
        return False  # comparisons with null are false in Flux filter
    if isinstance(a, str) != isinstance(b, str):
        raise FluxError(f"type error: cannot compare {type(a).__name__} with {type(b).__name__}")
    return op(a, b)


def _compile(node):
    """A predicate expression as a function of the row (filter() calls it once per row: compiled once, not
    walked per row). Errors a row would meet (an unsupported function, a string compared with a number)
    are raised when a row meets them, as evaluating the tree would."""
    if not isinstance(node, tuple):
        return lambda row: node
    kind = node[0]
    if kind in ("or", "and"):
        if not isinstance(node[1], tuple) and bool(node[1]) != (kind == "or"):  # True and x, False or x
            right = _compile(node[2])
            return lambda row: bool(right(row))
        left, right = _compile(node[1]), _compile(node[2])
        if not isinstance(node[2], tuple) and bool(node[2]) != (kind == "or"):  # x and True, x or False
            return lambda row: bool(left(row))
        if kind == "or":
            return lambda row: bool(left(row)) or bool(right(row))
        return lambda row: bool(left(row)) and bool(right(row))
    if kind == "not":
        inner = _compile(node[1])
        return lambda row: not inner(row)
    if kind == "member":
        name = node[2]
        return lambda row: row.get(name)
    if kind == "time":
        return lambda row: node[1]
    if kind == "call":
        if node[1] not in PREDICATES:
            def unsupported(row):
                raise FluxError(f"function {node[1]} is not supported by the stand-in")
            return unsupported
        fn, args = PREDICATES[node[1]], {k: _compile(v) for k, v in node[2].items()}
        return lambda row: fn({k: v(row) for k, v in args.items()})
    if kind == "cmp":
        op = _COMPARE[node[1]]
        if isinstance(node[2], tuple) and node[2][0] == "member" and not isinstance(node[3], tuple) \
                and node[3] is not None:  # r.name against a literal: the filters' usual shape, made quick
            name, b, b_is_str = node[2][2], node[3], isinstance(node[3], str)

            def against_literal(row):
                a = row.get(name)
                if a is None:
                    return False
                if isinstance(a, str) != b_is_str:
                    raise FluxError(f"type error: cannot compare {type(a).__name__} with {type(b).__name__}")
                return op(a, b)
            return against_literal
        left, right = _compile(node[2]), _compile(node[3])
        return lambda row: _compared(op, left(row), right(row))

    def unknown(row):
        raise FluxError(f"cannot evaluate {kind}")
    return unknown


# ---------------------------------------------------------------- functions

def _is_type(args):
    """types.isType(v:, type:) (Flux 0.141+, stdlib types): whether v is of the named basic type."""
    value, name = args["v"], args["type"]
    kinds = {"string": str, "bool": bool, "int": int, "float": float}
    if name == "uint":
        return False  # the stand-in stores no unsigned integers
    if name not in kinds:
        raise FluxError(f"types.isType: type {name!r} is not supported by the stand-in")
    return isinstance(value, kinds[name]) and (name == "bool" or not isinstance(value, bool))


PACKAGES = {"types"}
PREDICATES = {"types.isType": _is_type}


def f_range(tables, args):
    start = args["start"][1]
    stop = args.get("stop", ("time", int(time.time() * NS)))[1]
    if args["start"][0] == "duration":
        start = int(time.time() * NS) + start
    out = []
    for t in tables:
        rows = [dict(r, _start=start, _stop=stop) for r in t.rows if start <= r["_time"] < stop]
        if rows:
            cols = ["_start", "_stop"] + [c for c in t.columns if c not in ("_start", "_stop")]
            types = dict(t.types, _start="dateTime:RFC3339", _stop="dateTime:RFC3339")
            out.append(Table(key=("_start", "_stop") + tuple(c for c in t.key if c not in ("_start", "_stop")),
                             columns=cols, rows=rows, types=types))
    return out


def _specialise(node, known):
    """The predicate with what a table's group key holds put in (every row of a table has its key's
    values): (True, value) when that decides it for each row, else (False, what is left to ask of each
    row). The right of and/or is put in only where the left lets a row reach it, and an error met there
    is left in for the rows that reach it: each row meets the errors, and the short cuts, it would have."""
    if not isinstance(node, tuple):
        return True, node
    kind = node[0]
    if kind == "time":
        return True, node[1]
    if kind == "member":
        return (True, known[node[2]]) if node[2] in known else (False, node)
    if kind in ("or", "and"):
        decided, left = _specialise(node[1], known)
        if decided and bool(left) == (kind == "or"):
            return True, bool(left)
        try:
            right_decided, right = _specialise(node[2], known)
        except FluxError:  # met only by the rows that reach the right: they still meet it
            right_decided, right = False, node[2]
        if decided:
            return (True, bool(right)) if right_decided else (False, (kind, bool(left), right))
        return False, (kind, left, bool(right) if right_decided else right)
    if kind == "not":
        decided, inner = _specialise(node[1], known)
        return (True, not inner) if decided else (False, ("not", inner))
    if kind == "cmp":
        (left_decided, a), (right_decided, b) = _specialise(node[2], known), _specialise(node[3], known)
        return (True, _compared(_COMPARE[node[1]], a, b)) if left_decided and right_decided else (False, node)
    return False, node


def f_filter(tables, args):
    predicate, compiled = args["fn"][2], {}
    out = []
    for t in tables:
        if not t.rows:
            continue
        # a predicate on the group key (r._measurement, r._field, a tag) is asked once per table, as
        # InfluxDB pushes such filters down to its series index; what is left, once per row
        decided, rest = _specialise(predicate, {c: t.rows[0].get(c) for c in t.key})
        if decided:
            rows = list(t.rows) if rest else []
        else:
            shape = repr(rest)  # tables of one shape share the compiled rest
            if shape not in compiled:
                compiled[shape] = _compile(rest)
            keep = compiled[shape]
            rows = [r for r in t.rows if keep(r)]
        if rows:
            out.append(Table(key=t.key, columns=t.columns, rows=rows, types=t.types))
    return out


def f_group(tables, args):
    cols = tuple(args.get("columns", []))
    mode = args.get("mode", "by")
    if mode != "by":
        raise FluxError("group(mode: except) is not supported by the stand-in")
    return _regroup(tables, lambda t: tuple(c for c in cols if c in t.columns))


def _mean(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    total = 0.0
    for v in values:
        total += v
    return total / len(values)


AGGREGATES = {
    "mean": (_mean, "double"),
    "count": (lambda vs: sum(1 for v in vs if v is not None), "long"),
    "sum": (lambda vs: sum(v for v in vs if v is not None) if any(v is not None for v in vs) else None, None),
    "min": (lambda vs: min((v for v in vs if v is not None), default=None), None),
}


def f_aggregate_window(tables, args):
    every = args["every"][1]
    fn = args["fn"][1] if isinstance(args["fn"], tuple) else args["fn"]
    agg, out_type = AGGREGATES[fn]
    create_empty = args.get("createEmpty", True)
    time_src = args.get("timeSrc", "_stop")
    time_dst = args.get("timeDst", "_time")
    column = args.get("column", "_value")
    if time_src not in ("_start", "_stop"):
        raise FluxError("timeSrc must be _start or _stop in the stand-in")
    out = []
    for t in tables:
        if not t.rows:
            continue
        start = min(r["_start"] for r in t.rows)
        stop = max(r["_stop"] for r in t.rows)
        grouped = {}  # window start (epoch-aligned) -> the column's values; every row is in [start, stop)
        for r in t.rows:
            t_ns = r["_time"]
            values = grouped.get(t_ns - t_ns % every)
            if values is None:
                grouped[t_ns - t_ns % every] = values = []
            values.append(r.get(column))
        if create_empty:
            w = start - start % every
            while w < stop:
                grouped.setdefault(w, [])
                w += every
        key_template = {c: t.rows[0].get(c) for c in t.key}
        rows = []
        for w in sorted(grouped):
            # the window clipped to the table's bounds labels the row; window(every: inf) then restores the
            # table bounds into _start/_stop
            row = dict(key_template, _start=start, _stop=stop)
            row[column] = agg(grouped[w])
            row[time_dst] = max(w, start) if time_src == "_start" else min(w + every, stop)
            rows.append(row)
        value_type = out_type or t.types.get(column)
        columns = list(t.key) + [c for c in ("_start", "_stop") if c not in t.key] + [time_dst, column]
        types = {c: t.types.get(c) for c in t.key}
        types.update({"_start": "dateTime:RFC3339", "_stop": "dateTime:RFC3339", time_dst: "dateTime:RFC3339",
                      column: value_type})
        key = tuple(t.key) + tuple(c for c in ("_start", "_stop") if c not in t.key)
        out.append(Table(key=key, columns=columns, rows=rows, types=types))
    return out


def f_count(tables, args):
    column = args.get("column", "_value")
    out = []
    for t in tables:
        row = {c: t.rows[0].get(c) for c in t.key} if t.rows else {}
        row[column] = sum(1 for r in t.rows if r.get(column) is not None)
        types = {c: t.types.get(c) for c in t.key}
        types[column] = "long"
        out.append(Table(key=t.key, columns=list(t.key) + [column], rows=[row], types=types))
    return out


def _project(tables, keep_fn):
    out = []
    for t in tables:
        cols = [c for c in t.columns if keep_fn(c)]
        rows = [{c: r.get(c) for c in cols} for r in t.rows]
        out.append(Table(key=tuple(c for c in t.key if keep_fn(c)), columns=cols, rows=rows,
                         types={c: t.types.get(c) for c in cols}))
    # tables whose key became equal are not merged by keep/drop; pivot/group do that
    return out


def f_keep(tables, args):
    cols = set(args["columns"])
    return _project(tables, lambda c: c in cols)


def f_drop(tables, args):
    cols = set(args["columns"])
    return _project(tables, lambda c: c not in cols)


def f_pivot(tables, args):
    row_key = list(args["rowKey"])
    col_key = list(args["columnKey"])
    value_col = args["valueColumn"]
    removed = set(col_key) | {value_col}
    merged = _regroup(tables, lambda t: tuple(c for c in t.key if c not in removed))
    out = []
    for t in merged:
        rows = {}
        new_cols = []
        types = {c: t.types.get(c) for c in t.key}
        for r in t.rows:
            rk = tuple(r.get(c) for c in row_key)
            name = "_".join(str(r.get(c)) for c in col_key)
            if name not in new_cols:
                new_cols.append(name)
                types[name] = t.types.get(value_col)
            row = rows.setdefault(rk, {**{c: r.get(c) for c in t.key}, **dict(zip(row_key, rk))})
            row[name] = r.get(value_col)  # a second value for the same cell overwrites: documented
        for c in row_key:
            types[c] = t.types.get(c)
        columns = list(t.key) + [c for c in row_key if c not in t.key] + new_cols
        out.append(Table(key=t.key, columns=columns, rows=[rows[k] for k in sorted(rows, key=_sortable)],
                         types=types))
    return out


def _sortable(values):
    return tuple((v is None, v if v is not None else 0) for v in values)


def _float(value):
    """toFloat() of one value: numbers, booleans and numeric strings convert; another string is a runtime
    error, as in Flux (strconv)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise FluxRuntimeError(f'failed to evaluate map function: cannot convert string "{value}" to float') from None


def f_to_float(tables, args):
    out = []
    for t in tables:
        if t.types.get("_value") == "double" and all(type(r.get("_value")) is float for r in t.rows):
            rows = t.rows  # nothing to convert (rows are never changed in place: shared, not copied)
        else:
            rows = [dict(r, _value=_float(r.get("_value"))) for r in t.rows]
        out.append(Table(key=t.key, columns=t.columns, rows=rows, types=dict(t.types, _value="double")))
    return out


def f_limit(tables, args):
    n = args["n"]
    return [Table(key=t.key, columns=t.columns, rows=t.rows[:n], types=t.types) for t in tables]


def f_distinct(tables, args):
    """distinct(column): per table, the column's distinct values as _value (first seen first), the
    group key kept. schema.tagValues() is from |> range |> filter |> keep |> group() |> distinct."""
    column = args.get("column", "_value")
    out = []
    for t in tables:
        seen = []
        for r in t.rows:
            if r.get(column) not in seen:
                seen.append(r.get(column))
        key_row = {c: t.rows[0].get(c) for c in t.key} if t.rows else {}
        types = {c: t.types.get(c) for c in t.key}
        types["_value"] = t.types.get(column)
        out.append(Table(key=t.key, columns=list(t.key) + ["_value"], rows=[dict(key_row, _value=v) for v in seen],
                         types=types))
    return out


def f_first(tables, args):
    """first(): each table's earliest row (rows are in time order), its columns and types kept; an
    empty table gives none."""
    return [Table(key=t.key, columns=t.columns, rows=t.rows[:1], types=t.types) for t in tables if t.rows]


def _selector(pick):
    """min()/max(): each table's row with the lowest/highest _value (the first of equal ones), all its
    columns kept; an empty table gives none."""
    def select(tables, args):
        column = args.get("column", "_value")
        out = []
        for t in tables:
            rows = [r for r in t.rows if r.get(column) is not None]
            if rows:
                best = pick(rows, key=lambda r: r[column])
                out.append(Table(key=t.key, columns=t.columns, rows=[best], types=t.types))
        return out
    return select


def f_sort(tables, args):
    cols = args.get("columns", ["_value"])
    desc = args.get("desc", False)
    return [Table(key=t.key, columns=t.columns, types=t.types,
                  rows=sorted(t.rows, key=lambda r: _sortable([r.get(c) for c in cols]), reverse=desc))
            for t in tables]


FUNCTIONS = {"range": f_range, "filter": f_filter, "group": f_group, "aggregateWindow": f_aggregate_window,
             "count": f_count, "toFloat": f_to_float, "keep": f_keep, "drop": f_drop, "pivot": f_pivot,
             "limit": f_limit, "sort": f_sort, "distinct": f_distinct, "first": f_first,
             "min": _selector(min), "max": _selector(max)}


# ---------------------------------------------------------------- store and execution

@dataclass
class Point:
    measurement: str
    tags: dict
    field: str
    time_ns: int
    value: object


class Store:
    def __init__(self):
        self.buckets = set()  # the buckets written to (their points are in the series index)
        self.series_times = {}  # bucket -> {(measurement, field, tags): sorted times}: the series index
        self.series_values = {}  # bucket -> {(measurement, field, tags): the values, in the times' order}
        self.series_kinds = {}  # bucket -> {(measurement, field, tags): the types of its values}
        self.lock = threading.Lock()

    def add(self, bucket, points):
        with self.lock:
            self.buckets.add(bucket)
            index = self.series_times.setdefault(bucket, {})
            values = self.series_values.setdefault(bucket, {})
            kinds = self.series_kinds.setdefault(bucket, {})
            touched = set()
            for p in points:
                ident = (p.measurement, p.field, tuple(sorted(p.tags.items())))
                index.setdefault(ident, []).append(p.time_ns)
                values.setdefault(ident, []).append(p.value)
                kinds.setdefault(ident, set()).add(_type_of(p.value))
                touched.add(ident)
            for ident in touched:
                order = sorted(range(len(index[ident])), key=index[ident].__getitem__)
                index[ident] = [index[ident][i] for i in order]
                values[ident] = [values[ident][i] for i in order]

    def first_points(self, bucket, ident, start, stop):
        """[(time_ns, value)] of the series' first point of each type in [start, stop): what first()
        reads of each table, found from the index."""
        times, values = self.series_times[bucket][ident], self.series_values[bucket][ident]
        kinds = self.series_kinds[bucket][ident]
        found = {}
        for at in range(bisect.bisect_left(times, start), len(times)):
            if times[at] >= stop:
                break
            found.setdefault(_type_of(values[at]), (times[at], values[at]))
            if len(found) == len(kinds):  # every type the series holds has its first point
                break
        return list(found.values())

    def series_in_range(self, bucket, start, stop):
        """(measurement, field, tags) of each series with a point in [start, stop), in from()'s order:
        what InfluxDB's series index answers without reading points."""
        if bucket not in self.buckets:
            raise NotFound(f'failed to initialize execute state: could not find bucket "{bucket}"')
        def has_point(times):
            at = bisect.bisect_left(times, start)
            return at < len(times) and times[at] < stop

        with self.lock:
            found = [ident for ident, times in self.series_times.get(bucket, {}).items() if has_point(times)]
        return sorted(found, key=lambda ident: (ident[0], ident[2], ident[1]))

    def from_bucket(self, bucket, start=None, stop=None):
        """Tables of the bucket's series; start/stop (ns) restrict to a range() that follows from(). Read
        from the series index (each series' points in time order), a slice per series."""
        if bucket not in self.buckets:
            raise NotFound(f'failed to initialize execute state: could not find bucket "{bucket}"')
        with self.lock:
            series = []
            for ident, times in self.series_times.get(bucket, {}).items():
                lo, hi = (0, len(times)) if start is None else (bisect.bisect_left(times, start),
                                                                bisect.bisect_left(times, stop))
                if lo < hi:
                    series.append((ident, times[lo:hi], self.series_values[bucket][ident][lo:hi]))
        tables = []
        for (measurement, fld, tags), times, values in sorted(series, key=lambda s: (s[0][0], s[0][2], s[0][1])):
            tag_names = [k for k, _ in tags]
            key = ("_measurement", "_field") + tuple(tag_names)
            cols = ["_time", "_value", "_field", "_measurement"] + tag_names
            types = {"_time": "dateTime:RFC3339", "_field": "string", "_measurement": "string",
                     **{t: "string" for t in tag_names}}
            # a field written as int in one shard and float in another gives two tables, in the order each
            # type first appears
            by_type, names = {}, {"_field": fld, "_measurement": measurement, **dict(tags)}
            for t_ns, value in zip(times, values):
                by_type.setdefault(_type_of(value), []).append({"_time": t_ns, "_value": value, **names})
            for typ, typed_rows in by_type.items():
                tables.append(Table(key=key, columns=list(cols), rows=typed_rows, types=dict(types, _value=typ)))
        return tables


class NotFound(Exception):
    pass


class SyntheticStore(Store):
    """Series defined by a function of time, generated only for the range a query asks for, so the
    benchmarks can serve months of 1 Hz data without holding it: add(bucket, measurement, tags,
    field, start_s, end_s, fn) where fn(t) gives the value at second t (or None for no point)."""

    def __init__(self):
        super().__init__()
        self.series = {}

    def add_series(self, bucket, measurement, tags, field, start, end, fn):
        self.series.setdefault(bucket, []).append((measurement, dict(tags), field, start, end, fn))
        self.buckets.add(bucket)

    def series_in_range(self, bucket, start, stop):
        if bucket not in self.series:
            return super().series_in_range(bucket, start, stop)
        return sorted(((m, f, tuple(sorted(tags.items()))) for m, tags, f, first, last, fn in self.series[bucket]
                       if first * NS < stop and last * NS > start), key=lambda ident: (ident[0], ident[2], ident[1]))

    def first_points(self, bucket, ident, start, stop):
        if bucket not in self.series:
            return super().first_points(bucket, ident, start, stop)
        for measurement, tags, field_name, first, last, fn in self.series[bucket]:
            if (measurement, field_name, tuple(sorted(tags.items()))) == ident:
                for t in range(max(first, -(-start // NS)), min(last, -(-stop // NS))):
                    if fn(t) is not None:
                        return [(t * NS, fn(t))]
        return []

    def from_bucket(self, bucket, start=None, stop=None):
        if bucket not in self.series:
            return super().from_bucket(bucket, start, stop)
        tables = []
        for measurement, tags, field_name, first, last, fn in self.series[bucket]:
            lo = first if start is None else max(first, -(-start // NS))
            hi = last if stop is None else min(last, -(-stop // NS))
            rows = []
            for t in range(lo, hi):
                value = fn(t)
                if value is not None:
                    rows.append({"_time": t * NS, "_value": value, "_field": field_name, "_measurement": measurement,
                                 **tags})
            if rows:
                tag_names = sorted(tags)
                tables.append(Table(key=("_measurement", "_field") + tuple(tag_names),
                                    columns=["_time", "_value", "_field", "_measurement"] + tag_names, rows=rows,
                                    types={"_time": "dateTime:RFC3339", "_value": _type_of(rows[0]["_value"]),
                                           "_field": "string", "_measurement": "string",
                                           **{t: "string" for t in tag_names}}))
        return tables


def read_annotated_csv(text):
    """Tables from annotated CSV (as in Flux's csv.from): #datatype, #group, #default, header, rows."""
    import csv as _csv
    import io
    tables, current = [], {}
    datatypes = groups = defaults = header = None
    for row in _csv.reader(io.StringIO(text.strip("\n"))):
        if not row or row == [""]:
            header = None
            continue
        if row[0] == "#datatype":
            datatypes, header = row, None
            continue
        if row[0] == "#group":
            groups = row
            continue
        if row[0] == "#default":
            defaults = row
            continue
        if header is None:
            header = row
            continue
        types = {}
        values = {}
        for i, name in enumerate(header):
            if name in ("", "result", "table"):
                continue
            typ = datatypes[i]
            types[name] = typ
            cell = row[i] if row[i] != "" else (defaults[i] if defaults else "")
            values[name] = _parse_cell(cell, typ)
        key = tuple(header[i] for i in range(len(header))
                    if groups[i] == "true" and header[i] not in ("result", "table"))
        ident = (row[header.index("table")], key)
        if ident not in current:
            current[ident] = Table(key=key, columns=[c for c in header if c not in ("", "result", "table")],
                                   types=types)
            tables.append(current[ident])
        current[ident].rows.append(values)
    return tables


def _parse_cell(cell, typ):
    if cell == "":
        return None
    if typ.startswith("dateTime"):
        return parse_time(cell)
    if typ == "double":
        return float(cell.replace("+Inf", "inf").replace("-Inf", "-inf"))
    if typ in ("long", "unsignedLong"):
        return int(cell)
    if typ == "boolean":
        return cell == "true"
    return cell


def _below(node):
    """The calls piped into node's function, in program order as [(name, args)], and what they start
    from (from(), or another expression)."""
    chain, inner = [], node[1]
    while inner[0] == "pipe":
        chain.append((inner[2], inner[3]))
        inner = inner[1]
    return chain[::-1], inner


def _index_read(node, store):
    """from |> range |> filter... |> keep(columns: [c]) |> group() |> distinct(column: c), the shape of
    schema.tagValues(), answered from the series index as InfluxDB's planner does (its ReadTagValues
    pushdown) instead of from every point; None for any other shape."""
    column = node[3].get("column", "_value")
    chain, inner = _below(node)
    names = [n for n, _ in chain]
    if (inner[0] != "call" or inner[1] != "from" or len(names) < 3 or names[0] != "range"
            or names[-2:] != ["keep", "group"] or any(n != "filter" for n in names[1:-2])
            or list(chain[-2][1]["columns"]) != [column] or chain[-1][1].get("columns")
            or chain[0][1].get("start", ("",))[0] != "time"):
        return None
    start = chain[0][1]["start"][1]
    stop = chain[0][1].get("stop", ("time", int(time.time() * NS)))[1]
    rows = [{"_measurement": m, "_field": f, **dict(tags)} for m, f, tags in
            store.series_in_range(inner[2]["bucket"], start, stop)]
    for _, args in chain[1:-2]:
        keep = _compile(args["fn"][2])
        rows = [r for r in rows if keep(r)]
    values = list(dict.fromkeys(r.get(column) for r in rows))
    if not values:
        return []  # like the point-by-point path: no table at all
    return [Table(key=(), columns=["_value"], rows=[{"_value": v} for v in values], types={"_value": "string"})]


def _index_first(node, store):
    """from |> range |> filter(on names and tags)... |> first(), answered from the series index as
    InfluxDB pushes a bare first() down to storage, instead of reading every point; None for any
    other shape."""
    chain, inner = _below(node)
    names = [n for n, _ in chain]
    if (inner[0] != "call" or inner[1] != "from" or not names or names[0] != "range"
            or any(n != "filter" for n in names[1:]) or chain[0][1].get("start", ("",))[0] != "time"
            or any("_value" in repr(args) or "_time" in repr(args) for _, args in chain[1:])):
        return None
    bucket, range_args = inner[2]["bucket"], chain[0][1]
    start = range_args["start"][1]
    stop = range_args.get("stop", ("time", int(time.time() * NS)))[1]
    tables = []
    for ident in store.series_in_range(bucket, start, stop):
        measurement, fld, tags = ident
        tag_names = [k for k, _ in tags]
        for t_ns, value in store.first_points(bucket, ident, start, stop):
            row = {"_time": t_ns, "_value": value, "_field": fld, "_measurement": measurement, **dict(tags)}
            tables.append(Table(key=("_measurement", "_field") + tuple(tag_names),
                                columns=["_time", "_value", "_field", "_measurement"] + tag_names, rows=[row],
                                types={"_time": "dateTime:RFC3339", "_value": _type_of(value), "_field": "string",
                                       "_measurement": "string", **{t: "string" for t in tag_names}}))
    tables = FUNCTIONS["range"](tables, range_args)
    for _, args in chain[1:]:
        tables = FUNCTIONS["filter"](tables, args)
    return f_first(tables, {})


def execute(program_text, store, env=None):
    """Run a Flux program; return [(result name, [tables])]. env binds names to tables (for vectors)."""
    env, results = dict(env or {}), []

    def evaluate(node):
        kind = node[0]
        if kind == "call":
            if node[1] != "from":
                raise FluxError(f"undefined identifier {node[1]}")
            return store.from_bucket(node[2]["bucket"])
        if kind == "ref":
            if node[1] not in env:
                raise FluxError(f"undefined identifier {node[1]}")
            return env[node[1]]
        if kind == "pipe":
            name, args = node[2], node[3]
            if name in ("distinct", "first"):
                tables = (_index_read if name == "distinct" else _index_first)(node, store)
                if tables is not None:
                    return tables
            right_after_from = node[1][0] == "call" and node[1][1] == "from"
            if name == "range" and right_after_from and args.get("start", ("",))[0] == "time":
                # range() right after from(): read only that span (what InfluxDB's storage does too)
                stop = args.get("stop", ("time", int(time.time() * NS)))[1]
                tables = store.from_bucket(node[1][2]["bucket"], args["start"][1], stop)
                return FUNCTIONS["range"](tables, args)
            tables = evaluate(node[1])
            if name == "yield":
                results.append((args.get("name", "_result"), tables))
                return tables
            if name not in FUNCTIONS:
                raise FluxError(f"function {name} is not supported by the stand-in")
            return FUNCTIONS[name](tables, args)
        raise FluxError(f"cannot evaluate {kind}")

    for stmt in Parser(program_text).program():
        if stmt[0] == "assign":
            env[stmt[1]] = evaluate(stmt[2])
        else:
            before = len(results)
            tables = evaluate(stmt[1])
            if len(results) == before and stmt[1][0] == "pipe" and stmt[1][2] != "yield":
                results.append(("_result", tables))
    return results


# ---------------------------------------------------------------- annotated CSV

def format_value(value, typ):
    if value is None:
        return ""
    if typ and typ.startswith("dateTime"):
        return _format_time(value)
    if typ == "double":
        v = float(value)
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "+Inf" if v > 0 else "-Inf"
        text = repr(v)
        if "e" in text:
            text = f"{v:.17f}".rstrip("0").rstrip(".")
        return text[:-2] if text.endswith(".0") else text
    if typ == "boolean":
        return "true" if value else "false"
    return str(value)


_QUOTED = re.compile(r'[,"\n\r]')


def _csv_cell(text):
    if _QUOTED.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


_DAYS = {}  # day since the epoch -> "YYYY-MM-DDT": a reply's times are mostly of a few days


def _format_time(value):
    """A dateTime:RFC3339 cell (ns since the epoch) as InfluxDB writes it, without a datetime per row."""
    if value is None:
        return ""
    secs, frac = divmod(value, NS)
    day, of_day = divmod(secs, 86400)
    if day not in _DAYS:
        _DAYS[day] = datetime.fromtimestamp(day * 86400, timezone.utc).strftime("%Y-%m-%dT")
    hours, rest = divmod(of_day, 3600)
    text = f"{_DAYS[day]}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def _cell_writer(typ):
    """cell(value) -> the CSV cell of a column of type typ: format_value, then quoted if it must be."""
    if typ and typ.startswith("dateTime"):
        return _format_time  # digits, '-', ':', '.', 'T', 'Z': never quoted
    if typ == "double":
        return lambda value: format_value(value, "double")  # a number, NaN or an infinity: never quoted
    return lambda value: _csv_cell(format_value(value, typ))


def _fixed(text):
    """A cell writer that writes `text` whatever the row holds (a group-key column's)."""
    return lambda value: text


def _no_annotations(raw):
    """True when the request's dialect asks for no annotations (plain CSV with a header)."""
    try:
        dialect = json.loads(raw).get("dialect") or {}
    except ValueError:
        return False
    return "annotations" in dialect and not dialect["annotations"]


def to_annotated_csv(results, header_only=False):
    """Yield the response body, line by line, as InfluxDB 2 encodes it. With header_only (the
    request's dialect asked for no annotations) each schema starts with just its header row and the
    rows carry the result name themselves, there being no #default line to name it."""
    for name, tables in results:
        previous = None
        result_cell = _csv_cell(name) if header_only else ""
        for index, t in enumerate(tables):
            schema = (tuple(t.columns), tuple(t.types.get(c) for c in t.columns), tuple(t.key))
            if schema != previous:
                if previous is not None:
                    yield "\n"
                if not header_only:
                    types = [t.types.get(c) or "string" for c in t.columns]
                    yield ",".join(["#datatype", "string", "long"] + types) + "\n"
                    yield ",".join(["#group", "false", "false"] + ["true" if c in t.key else "false"
                                                                   for c in t.columns]) + "\n"
                    yield ",".join(["#default", _csv_cell(name), ""] + [""] * len(t.columns)) + "\n"
                yield ",".join(["", "result", "table"] + [_csv_cell(c) for c in t.columns]) + "\n"
                previous = schema
            # a group-key column holds one value in every row of its table: its cell is written once
            head, first = ",".join(["", result_cell, str(index)]), t.rows[0] if t.rows else {}
            writers = [(c, _cell_writer(t.types.get(c))) for c in t.columns]
            cells = [(c, _fixed(write(first.get(c))) if c in t.key else write) for c, write in writers]
            for r in t.rows:
                yield ",".join([head] + [write(r.get(c)) for c, write in cells]) + "\n"
        if tables:
            yield "\n"


def error_table(message):
    return ("#datatype,string,string\n#group,true,true\n#default,,\n,error,reference\n"
            f",{_csv_cell(message)},\n\n")


# ---------------------------------------------------------------- HTTP server

class StandIn:
    """The server. `faults` is a list of planned faults consumed one per query that reads points:
    ("status", code, retry_after[, message]) | ("hang", seconds) | ("cut", after_bytes) | ("error_table", message)
    | ("body", text)."""

    def __init__(self, token="test-token", org="test-org", store=None, cache=False, tls=None):
        self.store = store or Store()
        self.cache = {} if cache else None  # query -> body: benchmarks measure clients, not the stand-in
        self.token = token
        self.org = org
        self.faults = []
        self.queries = []
        self.busy = 0.0  # seconds spent computing answers (benchmarks subtract it: a client waits for it)
        self.lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # as InfluxDB (Go sets TCP_NODELAY): no 40 ms delayed-ACK stall per answer

            def log_message(self, *args):
                pass

            def do_POST(self):
                standin._handle(self)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # clients that hang up (timeouts, cut streams) are what the fault tests do

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls:  # (certificate file, key file): serve HTTPS
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.httpd.daemon_threads = True
        self.thread = serve(self.httpd)

    @property
    def url(self):
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def warm(self, query, annotations=True):
        """Compute a query's answer into the cache ahead of time (benchmarks: the stand-in, unlike
        InfluxDB, takes minutes for months of 1 Hz data, longer than a client's timeout)."""
        body = "".join(to_annotated_csv(execute(query, self.store), header_only=not annotations)).encode()
        self.cache[query] = body

    def close(self):
        stop(self.httpd)

    def _json(self, h, status, code, message, headers=()):
        body = json.dumps({"code": code, "message": message}).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def _handle(self, h):
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length)
        if not h.path.startswith("/api/v2/query"):
            return self._json(h, 404, "not found", "path not found")
        if h.headers.get("Authorization") != f"Token {self.token}":
            return self._json(h, 401, "unauthorized", "unauthorized access")
        params = urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query)
        org = (params.get("org") or params.get("orgID") or [None])[0]
        if org is None:  # as InfluxDB 2 answers a query without an organisation
            return self._json(h, 400, "invalid", "Please provide either orgID or org")
        if org != self.org:
            return self._json(h, 404, "not found", f'organization name "{org}" not found')
        if not (h.headers.get("Content-Type") or "").startswith("application/json"):
            return self._json(h, 400, "invalid", "failed to decode request body: unsupported content type")
        try:
            query = json.loads(raw)["query"]
        except (ValueError, KeyError):
            return self._json(h, 400, "invalid", "failed to decode request body")
        with self.lock:
            self.queries.append(query)
            # planned faults hit the queries that read the means (one per chunk); the loader's metadata
            # queries (which fields exist, how many readings per hour) pass, so a test's faults land on
            # the chunks it means
            reads_points = "fn: mean" in query
            fault = self.faults.pop(0) if self.faults and reads_points else None
        if fault and fault[0] == "status":
            headers = [("Retry-After", str(fault[2]))] if fault[2] is not None else []
            return self._json(h, fault[1], "too many requests" if fault[1] == 429 else "internal error",
                              fault[3] if len(fault) > 3 else "injected fault", headers)
        if fault and fault[0] == "hang":
            time.sleep(fault[1])
        try:
            if self.cache is not None and query in self.cache:
                body = self.cache[query]
            else:
                started = time.perf_counter()
                results = execute(query, self.store)
                body = "".join(to_annotated_csv(results, header_only=_no_annotations(raw))).encode()
                with self.lock:
                    self.busy += time.perf_counter() - started
                if self.cache is not None:
                    self.cache[query] = body
        except FluxRuntimeError as exc:
            body = error_table(str(exc)).encode()
        except NotFound as exc:
            return self._json(h, 404, "not found", str(exc))
        except FluxError as exc:
            return self._json(h, 400, "invalid", f"compilation failed: {exc}")
        if fault and fault[0] == "body":  # a 200 whose body is whatever the test says
            body = fault[1].encode()
        if fault and fault[0] == "error_table":
            body = body[: len(body) // 2].rsplit(b"\n", 1)[0] + b"\n\n" + error_table(fault[1]).encode()
        h.send_response(200)
        h.send_header("Content-Type", "text/csv; charset=utf-8")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        if fault and fault[0] == "cut":
            part = body[: fault[1]]
            h.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            h.wfile.flush()
            h.close_connection = True
            return  # no terminating chunk: the stream ends early
        for i in range(0, len(body), 65536):
            part = body[i:i + 65536]
            h.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        h.wfile.write(b"0\r\n\r\n")
