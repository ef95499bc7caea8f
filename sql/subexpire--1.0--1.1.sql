/* sql/subexpire--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION subexpire UPDATE TO '1.1'" to load this file. \quit

-- CREATE EXTENSION subexpire runs subexpire--1.0.sql and then this script,
-- so a fresh install and an update from 1.0 run the same statements:
-- whatever 1.1 adds is added here only.

-- How long a worker run held rows locked at most: the longest of its
-- transactions that expired rows, from its start to its commit (src/run.c).
-- The column is added last; pg_dump names the columns of the history it
-- dumps, so an older dump restores into it.
ALTER TABLE subexpire_runs
    ADD COLUMN longest_batch interval CHECK (longest_batch >= interval '0');

COMMENT ON COLUMN subexpire_runs.longest_batch IS
    'worker runs: the longest of the run''s transactions that expired rows, from its start to its commit; NULL for a manual run, whose transaction is its caller''s';

-- subexpire_stats gains last_run_longest_batch, the last worker run's
-- longest batch (NULL when the last run was manual), through the
-- library's entry point of version 1.1.  The library keeps the entry point
-- of 1.0 (subexpire_stats_internal), which serves the view of 1.0 until
-- this script has run.
CREATE FUNCTION subexpire_stats_internal_1_1(
    OUT runs_total             bigint,
    OUT runs_failed            bigint,
    OUT expired_total          bigint,
    OUT last_run_started_at    timestamptz,
    OUT last_success_at        timestamptz,
    OUT last_failure_at        timestamptz,
    OUT last_error             text,
    OUT last_run_duration      interval,
    OUT run_seconds_total      double precision,
    OUT last_run_expired       bigint,
    OUT last_expiry_at         timestamptz,
    OUT next_run_at            timestamptz,
    OUT worker_pid             integer,
    OUT due_now                bigint,
    OUT stats_reset            timestamptz,
    OUT last_run_longest_batch interval)
RETURNS record
AS 'MODULE_PATHNAME', 'subexpire_stats_internal_1_1'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION subexpire_stats_internal_1_1() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION subexpire_stats_internal_1_1() TO pg_monitor;

-- Whoever reads the view needs EXECUTE on the function under it.  A grant
-- of EXECUTE on the old function to anyone but pg_monitor goes with it: say
-- so, with the grant to make.  (Not granted here: a grant made by this
-- script would count as the extension's own, and pg_dump would leave it
-- out.)
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                             ELSE pg_catalog.quote_ident(r.rolname) END AS grantee,
               pg_catalog.quote_ident(n.nspname) AS schema
        FROM pg_catalog.pg_proc p
             JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
             CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) AS a
             LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
        WHERE p.oid = 'subexpire_stats_internal()'::pg_catalog.regprocedure
          AND a.privilege_type = 'EXECUTE'
          AND a.grantee <> p.proowner
          AND a.grantee <> 'pg_monitor'::pg_catalog.regrole
        ORDER BY 1
    LOOP
        RAISE WARNING 'subexpire_stats now reads subexpire_stats_internal_1_1(), which % may not execute', g.grantee
            USING DETAIL = pg_catalog.format('EXECUTE on subexpire_stats_internal(), granted to %s, was dropped with that function.', g.grantee),
                  HINT = pg_catalog.format('GRANT EXECUTE ON FUNCTION %s.subexpire_stats_internal_1_1() TO %s;', g.schema, g.grantee);
    END LOOP;
END
$$;

-- Replaced, not dropped: the view keeps its grants, its comment and the
-- views that users built on it.  The new column comes last.
CREATE OR REPLACE VIEW subexpire_stats AS
    SELECT * FROM subexpire_stats_internal_1_1();

DROP FUNCTION subexpire_stats_internal();
