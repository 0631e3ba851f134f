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
-- The exit code a failed run ended with (1: the next run catches up, 2: needs a human); added in 2026-11.
ALTER TABLE influx_archive_runs ADD COLUMN IF NOT EXISTS exit_code smallint;
CREATE INDEX IF NOT EXISTS influx_archive_runs_target_started
    ON influx_archive_runs (target, started_at DESC);
