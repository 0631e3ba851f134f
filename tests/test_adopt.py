"""adopt-reference: a table written exactly as the reference article writes it (pandas to_sql,
if_exists="append", windows labelled by their end, re-runs appending duplicates) becomes the archive."""

import os
import subprocess
import sys
import time

import pandas as pd
import psycopg2
from sqlalchemy import create_engine

from tests.support.archive import archive_rows
from tests.support.harness import ROOT, TOKEN
from tests.support.readings import expected_means, feed_standin, pulse_points


def reference_table(pg_url, windows):
    """{window end (naive UTC): (bpm, spo2)} appended the reference way, then again (a re-run)."""
    df = pd.DataFrame({"time": pd.to_datetime(list(windows), unit="s"),
                       "bpm": [v[0] for v in windows.values()], "spo2": [v[1] for v in windows.values()]})
    df["time"] = df["time"].astype("datetime64[us]")
    df = df.set_index("time")
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg2://"))
    df.to_sql("pox_five_second_mean", engine, if_exists="append")
    df.iloc[:3].to_sql("pox_five_second_mean", engine, if_exists="append")  # the duplicates of a re-run
    engine.dispose()


def table_count(pg_url, table):
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        cur.execute(f'SELECT count(*) FROM "{table}"')
        return cur.fetchone()[0]
    finally:
        conn.close()


def loader(*args, env):
    return subprocess.run([sys.executable, "-m", "loader", "--env-file", os.devnull, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_adopt_reference_table_then_run_fills_it(pg_url, standin):
    start = 1_790_000_000 - 1_790_000_000 % 3600
    windows = {start + 5 * (i + 1): (60.0 + i, 95.0 + i / 10) for i in range(10)}  # labelled by window END
    reference_table(pg_url, windows)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUX_", "PG_"))}
    env.update(INFLUX_URL=standin.url, INFLUX_TOKEN=TOKEN, INFLUX_ORG="test-org", PG_URL=pg_url,
               REQUIRE_CLOCK_SYNC="no", INITIAL_LOOKBACK="1h")

    refused = loader("run", env=env)
    assert refused.returncode == 2 and "reference script" in refused.stderr

    dry = loader("adopt-reference", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would adopt public.pox_five_second_mean: 13 rows, 3 duplicate window(s) removed, 10 rows kept" in dry.stdout
    assert table_count(pg_url, "pox_five_second_mean") == 13  # the dry run changed nothing

    done = loader("adopt-reference", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert "adopted public.pox_five_second_mean" in done.stdout and "5s back to window start" in done.stdout
    rows = archive_rows(pg_url)
    assert rows == {(end - 5,): {"bpm": bpm, "spo2": spo2} for end, (bpm, spo2) in windows.items()}
    assert table_count(pg_url, "pox_five_second_mean_reference_backup") == 13  # the originals, kept aside

    conn = psycopg2.connect(pg_url)
    cur = conn.cursor()
    cur.execute("SELECT windows, spo2_n FROM pox_five_second_mean_1h")
    assert cur.fetchall() == [(10, 10)]  # the adopted rows are in the rollups too
    conn.close()
    assert "nothing to adopt" in loader("adopt-reference", "--yes", env=env).stdout

    # the loader now owns the table: a run fills the last hour from the source, labelled by start
    now = int(time.time())
    feed_standin(standin, pulse_points(now - 1800, 1800))
    assert loader("run", env=env).returncode == 0
    after = archive_rows(pg_url)
    assert {k: v for k, v in after.items() if k[0] < start + 3600} == rows
    want = expected_means(pulse_points(now - 1800, 1800), start=0, end=now - now % 5)
    assert all(after[k] == v for k, v in want.items())
