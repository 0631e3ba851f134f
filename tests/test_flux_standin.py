"""The stand-in's Flux semantics, checked on vectors in the form of Flux's own stdlib tests
(inData -> pipeline -> outData). These vectors are our own, written from the documented behaviour;
the stand-in was also run against vectors from Flux's stdlib (aggregate_window_mean,
aggregate_empty_window_mean, aggregate_window mean_empty_windows, pivot) — see README."""

import csv
import io

from loader.sources.flux import parse_annotated_csv
from tests.support.flux_standin import Point, Store, execute, read_annotated_csv, to_annotated_csv

IN = """
#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string,string
#group,false,false,true,true,false,false,true,true,true
#default,_result,,,,,,,,
,result,table,_start,_stop,_time,_value,_field,_measurement,uid
,,0,2026-01-01T00:00:00Z,2026-01-01T00:01:00Z,2026-01-01T00:00:01Z,90,spo2,spo2,a
,,0,2026-01-01T00:00:00Z,2026-01-01T00:01:00Z,2026-01-01T00:00:04Z,94,spo2,spo2,a
,,0,2026-01-01T00:00:00Z,2026-01-01T00:01:00Z,2026-01-01T00:00:05Z,97,spo2,spo2,a
,,0,2026-01-01T00:00:00Z,2026-01-01T00:01:00Z,2026-01-01T00:00:12Z,99,spo2,spo2,a
,,1,2026-01-01T00:00:00Z,2026-01-01T00:01:00Z,2026-01-01T00:00:02Z,98,spo2,spo2,b
,,2,2026-01-01T00:00:00Z,2026-01-01T00:01:00Z,2026-01-01T00:00:03Z,60,bpm,spo2,a
"""
T0 = 1767225600 * 10**9  # 2026-01-01T00:00:00Z
S = 10**9


def rows(tables, *cols):
    return [tuple(r.get(c) for c in cols) for t in tables for r in t.rows]


def run(program):
    return execute(program, Store(), env={"inData": read_annotated_csv(IN)})[-1][1]


def test_aggregate_window_labels_by_stop_unless_timesrc_start_and_windows_are_half_open():
    by_stop = run('inData |> range(start: 2026-01-01T00:00:00Z, stop: 2026-01-01T00:01:00Z) '
                  '|> filter(fn: (r) => r.uid == "a" and r._field == "spo2") '
                  '|> aggregateWindow(every: 5s, fn: mean, createEmpty: false)')
    assert rows(by_stop, "_time", "_value") == [(T0 + 5 * S, 92.0), (T0 + 10 * S, 97.0), (T0 + 15 * S, 99.0)]
    by_start = run('inData |> range(start: 2026-01-01T00:00:00Z, stop: 2026-01-01T00:01:00Z) '
                   '|> filter(fn: (r) => r.uid == "a" and r._field == "spo2") '
                   '|> aggregateWindow(every: 5s, fn: mean, createEmpty: false, timeSrc: "_start")')
    assert rows(by_start, "_time", "_value") == [(T0, 92.0), (T0 + 5 * S, 97.0), (T0 + 10 * S, 99.0)]


def test_windows_are_epoch_aligned_and_clipped_to_the_range():
    clipped = run('inData |> range(start: 2026-01-01T00:00:03Z, stop: 2026-01-01T00:00:13Z) '
                  '|> filter(fn: (r) => r.uid == "a" and r._field == "spo2") '
                  '|> aggregateWindow(every: 5s, fn: mean, timeSrc: "_start")')
    # [0,5) clipped to [3,5) -> label 3s; [10,15) clipped to [10,13); createEmpty default true
    assert rows(clipped, "_time", "_value") == [(T0 + 3 * S, 94.0), (T0 + 5 * S, 97.0), (T0 + 10 * S, 99.0)]


def test_create_empty_true_gives_null_windows():
    out = run('inData |> range(start: 2026-01-01T00:00:00Z, stop: 2026-01-01T00:00:20Z) '
              '|> filter(fn: (r) => r.uid == "b") |> aggregateWindow(every: 5s, fn: mean, timeSrc: "_start")')
    assert rows(out, "_time", "_value") == [(T0, 98.0), (T0 + 5 * S, None), (T0 + 10 * S, None), (T0 + 15 * S, None)]


def test_group_then_aggregate_merges_series_and_pivot_keeps_fields_apart():
    out = run('inData |> range(start: 2026-01-01T00:00:00Z, stop: 2026-01-01T00:01:00Z) '
              '|> group(columns: ["_field"]) '
              '|> aggregateWindow(every: 5s, fn: mean, createEmpty: false, timeSrc: "_start") '
              '|> keep(columns: ["_time", "_field", "_value"]) '
              '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")')
    assert len(out) == 1 and out[0].key == ()
    assert rows(out, "_time", "spo2", "bpm") == [(T0, (90 + 94 + 98) / 3, 60.0), (T0 + 5 * S, 97.0, None),
                                                  (T0 + 10 * S, 99.0, None)]


def test_pivot_after_dropping_a_tag_silently_overwrites_which_is_why_we_group_first():
    """The reference script's query: drop uid, then pivot. Two series, one value survives per cell."""
    out = run('inData |> range(start: 2026-01-01T00:00:00Z, stop: 2026-01-01T00:01:00Z) '
              '|> filter(fn: (r) => r._field == "spo2") '
              '|> aggregateWindow(every: 5s, fn: mean, createEmpty: false) '
              '|> drop(columns: ["_start", "_stop", "_measurement", "uid"]) '
              '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")')
    # window [0,5) has a: 92 and b: 98; the pivot keeps one of them: the mean (94.0) is lost
    assert rows(out, "_time", "spo2")[0] in ((T0 + 5 * S, 92.0), (T0 + 5 * S, 98.0))


def test_count_filter_and_multiple_yields():
    store = Store()
    store.add("b", [Point("m", {}, "f", T0 + i * S, float(i)) for i in range(10)])
    results = execute('data = from(bucket: "b") |> range(start: 2026-01-01T00:00:00Z, stop: 2026-01-01T00:01:00Z)\n'
                      'data |> filter(fn: (r) => r._value >= 5.0) |> count() |> yield(name: "big")\n'
                      'data |> filter(fn: (r) => not (r._value >= 5.0)) |> count() |> yield(name: "small")\n', store)
    assert [(name, rows(t, "_value")) for name, t in results] == [("big", [(5,)]), ("small", [(5,)])]


def test_annotated_csv_round_trip_through_the_loader_parser():
    """What the stand-in encodes (#default result name, empty result cells, schema changes between
    tables) is what the loader's parser reads."""
    store = Store()
    store.add("b", [Point("m", {"uid": "a"}, "spo2", T0, 97.5), Point("m", {"uid": "a"}, "bpm", T0, 61.0),
                    Point("m", {"uid": "b"}, "spo2", T0 + S, 95.0)])
    results = execute('from(bucket: "b") |> range(start: 2026-01-01T00:00:00Z, stop: 2026-01-01T00:01:00Z) '
                      '|> group(columns: ["_field", "uid"]) '
                      '|> aggregateWindow(every: 5s, fn: mean, createEmpty: false, timeSrc: "_start") '
                      '|> keep(columns: ["_time", "_field", "_value", "uid"]) '
                      '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value") '
                      '|> yield(name: "means")', store)
    body = "".join(to_annotated_csv(results))
    assert "#default,means," in body and "\n,,0," in body
    batch = parse_annotated_csv(body, ("uid",))
    got = []
    for block in batch.blocks:
        assert "time" in block.columns and None not in block.columns  # leading Flux cells cut off
        for row in csv.reader(io.StringIO(block.text)):
            cells = dict(zip(block.columns, row))
            got.append((cells["time"], cells["uid"], cells.get("spo2"), cells.get("bpm")))
    assert sorted(got) == [("2026-01-01T00:00:00Z", "a", "97.5", "61"), ("2026-01-01T00:00:00Z", "b", "95", None)]
    assert batch.fields == ["bpm", "spo2"] and batch.rows == 2


def test_the_schema_pipeline_from_the_series_index_equals_the_point_by_point_answer(monkeypatch):
    """The stand-in answers schema.tagValues()' shape from its series index, as InfluxDB does, without
    reading points; the answer must be the one evaluating it point by point gives."""
    from tests.support import flux_standin

    class CountingStore(Store):
        reads = 0

        def from_bucket(self, *args):
            self.reads += 1
            return super().from_bucket(*args)

    store = CountingStore()
    ns = 10**9
    store.add("b", [Point("spo2", {"uid": "a"}, "spo2", 100 * ns, 97.0),
                    Point("spo2", {"uid": "a"}, "bpm", 100 * ns, 60.0),
                    Point("spo2", {"uid": "b"}, "note", 5000 * ns, "x"),
                    Point("other", {}, "t", 150 * ns, 1.0)])

    def rows(query):
        return [[r["_value"] for t in tables for r in t.rows] for _, tables in execute(query, store)]

    for measurement, start, stop in (("spo2", "00:00:00", "00:03:20"), ("spo2", "00:00:00", "03:00:00"),
                                     ("spo2", "00:01:41", "00:03:20"), ("nope", "00:00:00", "03:00:00")):
        query = (f'from(bucket: "b") |> range(start: 1970-01-01T{start}Z, stop: 1970-01-01T{stop}Z) '
                 f'|> filter(fn: (r) => r._measurement == "{measurement}") '
                 '|> keep(columns: ["_field"]) |> group() |> distinct(column: "_field")')
        store.reads = 0
        fast = rows(query)
        assert store.reads == 0  # the index answered
        with monkeypatch.context() as patch:
            patch.setattr(flux_standin, "_index_read", lambda node, store: None)
            assert rows(query) == fast and store.reads == 1
    assert fast == [[]] and rows(query.replace('"nope"', '"spo2"')) == [["bpm", "spo2", "note"]]


def test_a_bare_first_from_the_series_index_equals_the_point_by_point_answer_types_included(monkeypatch):
    """The fields' types come from first() per series (its #datatype); the stand-in answers that shape
    from its index, as InfluxDB pushes the bare aggregate down: it must equal the full evaluation."""
    from tests.support import flux_standin

    store = Store()
    ns = 10**9
    store.add("b", [Point("spo2", {"uid": "a"}, "bpm", t * ns, 60 + t % 7) for t in range(100, 110)] +
                   [Point("spo2", {"uid": "a"}, "bpm", t * ns, 60.5) for t in range(200, 210)] +
                   [Point("spo2", {"uid": "a"}, "spo2", t * ns, 97.0) for t in range(105, 300)] +
                   [Point("spo2", {"uid": "b"}, "clip", 150 * ns, True), Point("other", {}, "t", 150 * ns, 1.0)])
    query = ('from(bucket: "b") |> range(start: 1970-01-01T00:01:45Z, stop: 1970-01-01T00:05:00Z) '
             '|> filter(fn: (r) => r._measurement == "spo2") |> first()')
    fast = "".join(to_annotated_csv(execute(query, store)))
    with monkeypatch.context() as patch:
        patch.setattr(flux_standin, "_index_first", lambda node, store: None)
        assert "".join(to_annotated_csv(execute(query, store))) == fast
    text = fast
    for datatype in ("long", "double", "boolean"):
        assert f"#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,{datatype}" in text
    assert "1970-01-01T00:01:45Z,60,bpm" in text and ",60.5,bpm" in text and ",97,spo2" in text


def test_a_filter_asked_once_per_table_of_its_key_equals_asking_every_row_errors_included(monkeypatch):
    """filter() decides what a table's group key decides once per table (as InfluxDB pushes filters on
    the series down to its index); the rows kept, and the errors met, must be those of asking every row."""
    from tests.support import flux_standin

    def row_by_row(tables, args):
        keep = flux_standin._compile(args["fn"][2])
        return [flux_standin.Table(key=t.key, columns=t.columns, rows=kept, types=t.types)
                for t in tables for kept in [[r for r in t.rows if keep(r)]] if kept]

    def answer(predicate):
        try:
            return rows(run('inData |> range(start: 2026-01-01T00:00:00Z, stop: 2026-01-01T00:01:00Z) '
                            f'|> filter(fn: (r) => {predicate})'), "_time", "_value", "_field", "uid")
        except flux_standin.FluxError as exc:
            return str(exc)

    predicates = [
        'r._field == "spo2"', 'r.uid == "a" and r._value > 92.0', 'r._value > 92.0 and r.uid == "a"',
        'r._field != "spo2" or (r._value >= 95.0 and r._value <= 100.0)', 'not (r.uid == "b") or r._value < 91.0',
        '(r._field != "spo2" or r._value >= 95.0) and (r._field != "bpm" or r._value <= 59.0)',
        'r.missing == "x" or r._field == "bpm"', 'r.uid == 1', 'r._field == "bpm" and r.uid == 1',
        'r._value > 95.0 or r.uid == 1', 'r.uid == "b" and (r._value > 95.0 or r.uid == 1)',
        'types.isType(v: r._value, type: "float") and r._field == "spo2"',
    ]
    fast = [answer(p) for p in predicates]
    monkeypatch.setitem(flux_standin.FUNCTIONS, "filter", row_by_row)
    assert fast == [answer(p) for p in predicates]
    # the key decided it: the type error is met, and where the row's own test passes first, it is not
    assert fast[7].startswith("type error") and fast[8].startswith("type error") and fast[9].startswith("type error")
    assert fast[10] == [(T0 + 2 * S, 98.0, "spo2", "b")] and len(fast[0]) == 5


def test_a_time_cell_is_written_as_a_datetime_writes_it():
    """The reply's _time cells are written from a cached day and the second's arithmetic; the text must
    be datetime's, fractions, days before the epoch and the last second of a year included."""
    from datetime import datetime, timezone

    from tests.support.flux_standin import format_value

    def by_datetime(value):
        secs, frac = divmod(value, S)
        text = datetime.fromtimestamp(secs, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return text + ("." + f"{frac:09d}".rstrip("0") if frac else "") + "Z"

    for value in (0, 1, S - 1, T0, T0 + 5 * S + 120, T0 - 1, -5 * S, -1, 1798761599 * S + 999_999_999,
                  253402300799 * S, 951782400 * S + 86399 * S):
        assert format_value(value, "dateTime:RFC3339") == by_datetime(value), value
    assert format_value(T0 + 5 * S + 120, "dateTime:RFC3339") == "2026-01-01T00:00:05.00000012Z"
    assert format_value(None, "dateTime:RFC3339") == ""
