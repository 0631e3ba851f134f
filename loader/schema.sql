-- influx-archive state tables, shared by the loader and install.sh. Safe to run again.
-- Run with search_path set to the archive's schema (PG_SCHEMA).

-- The watermark: every window that starts before it has been archived for that target table.
CREATE TABLE IF NOT EXISTS influx_archive_state (
    target      text PRIMARY KEY,            -- schema.table of the archive
    watermark   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per run/backfill: what it covered and how it ended. Error text never holds secrets.
CREATE TABLE IF NOT EXISTS influx_archive_runs (
    id            bigserial PRIMARY KEY,
    target        text NOT NULL,
    command       text NOT NULL,             -- run | backfill | rebuild-rollups
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    range_start   timestamptz,
    range_end     timestamptz,
    chunks        integer NOT NULL DEFAULT 0,
    rows_written  bigint NOT NULL DEFAULT 0,
    outcome       text NOT NULL DEFAULT 'running',  -- running | ok | nothing to do | failed | interrupted | abandoned
    error         text
);
CREATE INDEX IF NOT EXISTS influx_archive_runs_target_started
    ON influx_archive_runs (target, started_at DESC);
-- Late data (added in 2026-11): the readings InfluxDB held in each whole hour, per series and field,
-- when the loader last read that hour, counted by InfluxDB before the means were asked. A later run
-- that finds InfluxDB holding more reloads the hour.
CREATE TABLE IF NOT EXISTS influx_archive_counts (
    target    text NOT NULL,
    hour      timestamptz NOT NULL,
    series    text NOT NULL,                 -- its tags: 'uid=a' ('' for none)
    field     text NOT NULL,
    readings  bigint NOT NULL,
    PRIMARY KEY (target, hour, series, field)
);
-- The hours the last comparison found InfluxDB holding readings the archive lacks, until they are
-- loaded: what `status` pages on before InfluxDB's retention deletes them.
CREATE TABLE IF NOT EXISTS influx_archive_behind (
    target    text NOT NULL,
    hour      timestamptz NOT NULL,
    series    text NOT NULL,
    field     text NOT NULL,
    in_influx bigint NOT NULL,               -- readings InfluxDB holds
    loaded    bigint NOT NULL,               -- readings the archive's rows were made from (0: none)
    found_at  timestamptz NOT NULL,
    PRIMARY KEY (target, hour, series, field)
);
-- VALID_RANGES changes (added 2026-12): when a field's range changed, from what to what. Windows archived
-- before keep the readings the earlier range let through; `status` names each change.
CREATE TABLE IF NOT EXISTS influx_archive_ranges (
    target      text NOT NULL,
    field       text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    range_was   text NOT NULL,               -- 50..100, or none
    range_now   text NOT NULL,
    PRIMARY KEY (target, field, changed_at)
);
-- Finished nights delivered (added 2026-12): per session, the digest of its numbers its report and its
-- message were made from, and why the last try failed (the next run tries again; `status` says so).
CREATE TABLE IF NOT EXISTS influx_archive_nights (
    target         text NOT NULL,
    device         text NOT NULL,            -- its tags: 'uid=a' ('' for none)
    started        timestamptz NOT NULL,
    report_digest  text,                     -- the numbers the report in REPORT_DIR shows
    report_path    text,
    report_error   text,
    notified_at    timestamptz,
    notify_error   text,
    PRIMARY KEY (target, device, started)
);
-- Columns of influx_archive_runs added since (2026-11), each added only where it is missing: ALTER TABLE
-- takes an exclusive lock even when IF NOT EXISTS finds the column, and would wait behind every reader of
-- the table (the nightly pg_dump holds one on every table while it runs), and every reader behind it.
--   exit_code   the exit code a failed run ended with (1: the next run catches up, 2: needs a human)
--   late_hours  hours the run found behind (InfluxDB held readings the archive lacked) and reloaded
--   refused     readings the run kept out, per field: {"spo2": {"refused": n, "counted": n, "lowest": x,
--               "highest": x, "skipped": n}}: refused at the door (outside VALID_RANGES; their lowest and
--               highest value), of counted = the readings InfluxDB held in the ranges the run read; skipped:
--               held as text or booleans, not numbers. (Runs of the version before: {"spo2": [refused, counted]}.)
DO $$
DECLARE
    added record;
BEGIN
    FOR added IN SELECT * FROM (VALUES ('exit_code', 'smallint'), ('late_hours', 'integer'), ('refused', 'jsonb'))
                 AS c (name, kind) LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'influx_archive_runs'::regclass
                       AND attname = added.name AND NOT attisdropped) THEN
            EXECUTE format('ALTER TABLE influx_archive_runs ADD COLUMN IF NOT EXISTS %I %s', added.name, added.kind);
        END IF;
    END LOOP;
END
$$;
