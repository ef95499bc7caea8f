/* sql/subexpire--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION subexpire" to load this file. \quit

-- One row a run.  Written by the runs themselves, in their own transaction,
-- with the rights of the extension's owner (see src/records.c).
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

-- pg_dump keeps the history, and the position of its run_id sequence, so
-- that runs after a restore do not reuse the restored runs' ids.
SELECT pg_catalog.pg_extension_config_dump('subexpire_runs', '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('subexpire_runs', 'run_id')::pg_catalog.regclass, '');

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

-- Statistics since the last reset, kept in shared memory (src/stats.c):
-- every run counts, manual, scheduled, catch-up or from pg_cron, also one
-- that failed and whose transaction rolled back (a manual run's record in
-- subexpire_runs is written in its caller's transaction, so a failed one
-- leaves none: the statistics are where it shows).
CREATE FUNCTION subexpire_stats_internal(
    OUT runs_total          bigint,
    OUT runs_failed         bigint,
    OUT expired_total       bigint,
    OUT last_run_started_at timestamptz,
    OUT last_success_at     timestamptz,
    OUT last_failure_at     timestamptz,
    OUT last_error          text,
    OUT last_run_duration   interval,
    OUT run_seconds_total   double precision,
    OUT last_run_expired    bigint,
    OUT last_expiry_at      timestamptz,
    OUT next_run_at         timestamptz,
    OUT worker_pid          integer,
    OUT due_now             bigint,
    OUT stats_reset         timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'subexpire_stats_internal'
LANGUAGE C VOLATILE;

CREATE VIEW subexpire_stats AS
    SELECT * FROM subexpire_stats_internal();

COMMENT ON VIEW subexpire_stats IS
    'totals since the statistics were reset, the last runs, the worker and the rows due now';

CREATE FUNCTION subexpire_stats_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'subexpire_stats_reset'
LANGUAGE C VOLATILE;

-- The same figures in Prometheus text exposition format.
CREATE FUNCTION subexpire_metrics()
RETURNS text
AS 'MODULE_PATHNAME', 'subexpire_metrics'
LANGUAGE C VOLATILE;

-- The run-duration histogram of subexpire_metrics(), one row a bucket:
-- its upper bound in seconds (infinity last) and the runs that took at most
-- that long (cumulative, as Prometheus counts them).
CREATE FUNCTION subexpire_duration_buckets(
    OUT le    double precision,
    OUT runs  bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'subexpire_duration_buckets'
LANGUAGE C VOLATILE;

-- One row a check: ok, warning or critical, with what to do.
CREATE FUNCTION subexpire_health(
    OUT check_name text,
    OUT status     text,
    OUT detail     text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'subexpire_health'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION subexpire_stats_internal() FROM PUBLIC;
REVOKE ALL ON FUNCTION subexpire_stats_reset() FROM PUBLIC;
REVOKE ALL ON FUNCTION subexpire_metrics() FROM PUBLIC;
REVOKE ALL ON FUNCTION subexpire_health() FROM PUBLIC;
REVOKE ALL ON FUNCTION subexpire_duration_buckets() FROM PUBLIC;
REVOKE ALL ON subexpire_stats FROM PUBLIC;
GRANT EXECUTE ON FUNCTION subexpire_stats_internal() TO pg_monitor;
GRANT EXECUTE ON FUNCTION subexpire_metrics() TO pg_monitor;
GRANT EXECUTE ON FUNCTION subexpire_health() TO pg_monitor;
GRANT EXECUTE ON FUNCTION subexpire_duration_buckets() TO pg_monitor;
GRANT SELECT ON subexpire_stats TO pg_monitor;
