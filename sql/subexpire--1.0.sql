/* sql/subexpire--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION subexpire" to load this file. \quit

-- One row a run.  Written by the runs themselves, in their own transaction,
-- with the rights of the extension's owner (see src/runs.c).
CREATE TABLE subexpire_runs (
    run_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "trigger"       text NOT NULL
                    CHECK ("trigger" IN ('manual', 'schedule', 'catch-up')),
    as_of           timestamptz NOT NULL,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    status          text NOT NULL
                    CHECK (status IN ('running', 'succeeded', 'failed')),
    expired_count   bigint NOT NULL DEFAULT 0 CHECK (expired_count >= 0),
    skipped_locked  bigint NOT NULL DEFAULT 0 CHECK (skipped_locked >= 0),
    error           text
);

COMMENT ON TABLE subexpire_runs IS 'one row a run of the subscription expiry job';
COMMENT ON COLUMN subexpire_runs.skipped_locked IS
    'due rows left active because another transaction held them locked; the next run expires them';

-- Retention removes the oldest runs; monitoring reads the newest.
CREATE INDEX subexpire_runs_started_at_idx ON subexpire_runs (started_at);

-- pg_dump keeps the history.
SELECT pg_catalog.pg_extension_config_dump('subexpire_runs', '');

REVOKE ALL ON subexpire_runs FROM PUBLIC;
GRANT SELECT ON subexpire_runs TO pg_monitor;

CREATE FUNCTION expire_subscriptions(
    as_of   timestamptz DEFAULT pg_catalog.now(),
    dry_run boolean DEFAULT false)
RETURNS TABLE (expired_count bigint, processed_at timestamptz)
AS 'MODULE_PATHNAME', 'expire_subscriptions'
LANGUAGE C VOLATILE SECURITY INVOKER;

COMMENT ON FUNCTION expire_subscriptions(timestamptz, boolean) IS
    'expire every subscription due at as_of, in the caller''s transaction; with dry_run, count them';

-- The caller needs EXECUTE, granted explicitly, and UPDATE on the target.
REVOKE ALL ON FUNCTION expire_subscriptions(timestamptz, boolean) FROM PUBLIC;

CREATE FUNCTION subexpire_next_runs(
    schedule text DEFAULT NULL,
    timezone text DEFAULT NULL,
    after    timestamptz DEFAULT pg_catalog.now(),
    count    integer DEFAULT 5)
RETURNS SETOF timestamptz
AS 'MODULE_PATHNAME', 'subexpire_next_runs'
LANGUAGE C STABLE;

COMMENT ON FUNCTION subexpire_next_runs(text, text, timestamptz, integer) IS
    'the next times a schedule fires (NULL: subexpire.schedule in subexpire.timezone), as the worker computes them';
