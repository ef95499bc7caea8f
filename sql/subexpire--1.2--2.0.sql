/* sql/subexpire--1.2--2.0.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION subexpire UPDATE TO '2.0'" to load this file. \quit

-- Lifecycle rules: one row a rule, each a transition that a run makes
-- (src/rules.c reads them; src/rule_check.c checks a row when it is
-- written).  With no row, a run makes the one transition that the
-- subexpire.* target settings describe, named 'default', as 1.x did.
CREATE TABLE subexpire_rules (
    rule_name           text PRIMARY KEY
                        CHECK (rule_name OPERATOR(pg_catalog.~) '^[A-Za-z0-9_-]{1,63}$'),
    target_table        text NOT NULL,
    status_column       text NOT NULL DEFAULT 'status',
    from_status         text NOT NULL DEFAULT 'active',
    to_status           text NOT NULL DEFAULT 'expired',
    expires_column      text NOT NULL DEFAULT 'expires_at',
    grace_period        interval NOT NULL DEFAULT '0'
                        CHECK (grace_period OPERATOR(pg_catalog.>=) interval '0'),
    updated_column      text DEFAULT 'updated_at',
    set_columns         jsonb NOT NULL DEFAULT '{}'
                        CHECK (pg_catalog.jsonb_typeof(set_columns) OPERATOR(pg_catalog.=) 'object'),
    emit_events         boolean NOT NULL DEFAULT false,
    max_expired_per_run bigint NOT NULL DEFAULT 0
                        CHECK (max_expired_per_run OPERATOR(pg_catalog.>=) 0),
    run_order           integer NOT NULL DEFAULT 100,
    enabled             boolean NOT NULL DEFAULT true
);

COMMENT ON TABLE subexpire_rules IS
    'lifecycle rules: one transition a row, run in run_order by every run; empty: the subexpire.* target settings are the one rule, ''default''';

-- Every row is checked against the catalog when it is written, as its
-- writer, with the target's owner's rights for the conversions of its
-- values; a row that cannot work is refused and nothing is written.
CREATE FUNCTION subexpire_rules_check()
RETURNS trigger
AS 'MODULE_PATHNAME', 'subexpire_rules_check'
LANGUAGE C;

CREATE TRIGGER subexpire_rules_check
    BEFORE INSERT OR UPDATE ON subexpire_rules
    FOR EACH ROW EXECUTE FUNCTION subexpire_rules_check();

-- pg_dump keeps the rules.
SELECT pg_catalog.pg_extension_config_dump('subexpire_rules', '');

-- Superusers write the rules, or the roles they grant it to: a rule makes
-- the worker update a table as that table's owner.
REVOKE ALL ON subexpire_rules FROM PUBLIC;
GRANT SELECT ON subexpire_rules TO pg_monitor;

-- A worker run that reached subexpire.max_run_duration started no new
-- batch and left the rest to the next run.
ALTER TABLE subexpire_runs
    ADD COLUMN stopped_early boolean NOT NULL DEFAULT false;

COMMENT ON COLUMN subexpire_runs.stopped_early IS
    'the worker run reached subexpire.max_run_duration, started no new batch, and left the rest to the next run';

-- Due rows whose update failed (a trigger raised, a constraint refused
-- the new row) are left as they were, counted, and recorded one by one.
ALTER TABLE subexpire_runs
    ADD COLUMN skipped_failed bigint NOT NULL DEFAULT 0
        CHECK (skipped_failed >= 0);

COMMENT ON COLUMN subexpire_runs.skipped_failed IS
    'due rows whose update failed, left as they were for the next run; each in subexpire_row_errors';

CREATE TABLE subexpire_row_errors (
    run_id          bigint NOT NULL,
    rule_name       text NOT NULL,
    row_key         jsonb NOT NULL,
    error           text NOT NULL
);

CREATE INDEX ON subexpire_row_errors (run_id);

COMMENT ON TABLE subexpire_row_errors IS
    'one row for each due row whose update failed in a run: its key (primary key columns) and the error';

SELECT pg_catalog.pg_extension_config_dump('subexpire_row_errors', '');

REVOKE ALL ON subexpire_row_errors FROM PUBLIC;
GRANT SELECT ON subexpire_row_errors TO pg_monitor;

-- One row a rule a run, kept and pruned with subexpire_runs; the worker
-- adds to it in the transaction of each batch, as to the run's record.
CREATE TABLE subexpire_run_rules (
    run_id          bigint NOT NULL,
    rule_name       text NOT NULL,
    target_table    text NOT NULL,
    expired_count   bigint NOT NULL DEFAULT 0 CHECK (expired_count >= 0),
    skipped_locked  bigint NOT NULL DEFAULT 0 CHECK (skipped_locked >= 0),
    kept_active     bigint NOT NULL DEFAULT 0 CHECK (kept_active >= 0),
    skipped_failed  bigint NOT NULL DEFAULT 0 CHECK (skipped_failed >= 0),
    error           text,
    PRIMARY KEY (run_id, rule_name)
);

COMMENT ON TABLE subexpire_run_rules IS
    'one row a rule a run: what the rule expired and left; error when the rule failed';

SELECT pg_catalog.pg_extension_config_dump('subexpire_run_rules', '');

-- A run's rule records and row errors go with it, however it goes: pruned by
-- subexpire.history_retention, deleted or truncated by hand.  (Not a
-- foreign key: TRUNCATE subexpire_runs, which 1.x allowed, would fail.)
CREATE FUNCTION subexpire_runs_forget()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE @extschema@.subexpire_run_rules, @extschema@.subexpire_row_errors;
    ELSE
        DELETE FROM @extschema@.subexpire_run_rules r
        USING gone WHERE r.run_id OPERATOR(pg_catalog.=) gone.run_id;
        DELETE FROM @extschema@.subexpire_row_errors r
        USING gone WHERE r.run_id OPERATOR(pg_catalog.=) gone.run_id;
    END IF;
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION subexpire_runs_forget() FROM PUBLIC;

CREATE TRIGGER subexpire_runs_forget_deleted
    AFTER DELETE ON subexpire_runs
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION subexpire_runs_forget();

CREATE TRIGGER subexpire_runs_forget_truncated
    AFTER TRUNCATE ON subexpire_runs
    FOR EACH STATEMENT EXECUTE FUNCTION subexpire_runs_forget();

REVOKE ALL ON subexpire_run_rules FROM PUBLIC;
GRANT SELECT ON subexpire_run_rules TO pg_monitor;

-- expire_subscriptions() gains rule_name.  A function's arguments cannot
-- be changed in place, and an overload with the same defaults would make
-- "SELECT expire_subscriptions()" ambiguous: the function is replaced.  A
-- grant of EXECUTE on it goes with it: say so, with the grant to make.
-- (Not granted here: a grant made by this script would count as the
-- extension's own, and pg_dump would leave it out.)
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
        WHERE p.oid = 'expire_subscriptions(timestamptz, boolean)'::pg_catalog.regprocedure
          AND a.privilege_type = 'EXECUTE'
          AND a.grantee <> p.proowner
        ORDER BY 1
    LOOP
        RAISE WARNING 'expire_subscriptions() gained the argument rule_name; % may no longer execute it', g.grantee
            USING DETAIL = pg_catalog.format('EXECUTE on expire_subscriptions(timestamptz, boolean), granted to %s, was dropped with that function.', g.grantee),
                  HINT = pg_catalog.format('GRANT EXECUTE ON FUNCTION %s.expire_subscriptions(timestamptz, boolean, text) TO %s;', g.schema, g.grantee);
    END LOOP;
END
$$;

DROP FUNCTION expire_subscriptions(timestamptz, boolean);

CREATE FUNCTION expire_subscriptions(
    as_of     timestamptz DEFAULT pg_catalog.now(),
    dry_run   boolean DEFAULT false,
    rule_name text DEFAULT NULL)
RETURNS TABLE (expired_count bigint, processed_at timestamptz)
AS 'MODULE_PATHNAME', 'expire_subscriptions'
LANGUAGE C VOLATILE SECURITY INVOKER;

COMMENT ON FUNCTION expire_subscriptions(timestamptz, boolean, text) IS
    'expire every subscription due at as_of under every enabled rule, or the one named, in the caller''s transaction; with dry_run, count them';

-- The caller needs EXECUTE, granted explicitly, and UPDATE on every
-- rule's table.
REVOKE ALL ON FUNCTION expire_subscriptions(timestamptz, boolean, text) FROM PUBLIC;

-- What each enabled rule would expire at as_of, changing nothing; the
-- caller needs SELECT on the rules' tables.  Works on a standby.
CREATE FUNCTION subexpire_due(
    as_of         timestamptz DEFAULT pg_catalog.now(),
    OUT rule_name    text,
    OUT target_table text,
    OUT due_count    bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'subexpire_due'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION subexpire_due(timestamptz) IS
    'what each enabled rule would expire at as_of, changing nothing';

REVOKE ALL ON FUNCTION subexpire_due(timestamptz) FROM PUBLIC;

-- Statistics of each rule since the last reset, in shared memory.
CREATE FUNCTION subexpire_rule_stats(
    OUT rule_name        text,
    OUT runs_total       bigint,
    OUT runs_failed      bigint,
    OUT expired_total    bigint,
    OUT last_run_expired bigint,
    OUT last_run_at      timestamptz,
    OUT last_success_at  timestamptz,
    OUT last_failure_at  timestamptz,
    OUT last_error       text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'subexpire_rule_stats'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION subexpire_rule_stats() IS
    'statistics of each rule since the statistics were reset';

REVOKE ALL ON FUNCTION subexpire_rule_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION subexpire_rule_stats() TO pg_monitor;

-- The outbox of expired subscriptions: one row for every row that a rule
-- with emit_events expires, written in the transaction that expires it
-- (src/events.c), so that an event exists exactly when its row's expiry
-- committed.  Consumers take them with subexpire_take_events().
CREATE TABLE subexpire_events (
    event_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       bigint NOT NULL,
    rule_name    text NOT NULL,
    target_table text NOT NULL,
    row_key      jsonb NOT NULL,
    from_status  text NOT NULL,
    to_status    text NOT NULL,
    expires_at   timestamptz,
    expired_at   timestamptz NOT NULL
);

COMMENT ON TABLE subexpire_events IS
    'outbox: one row for every row expired by a rule with emit_events, until a consumer takes it with subexpire_take_events()';

-- pg_dump keeps the pending events, and where event_id goes on.
SELECT pg_catalog.pg_extension_config_dump('subexpire_events', '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('subexpire_events', 'event_id')::pg_catalog.regclass, '');

-- Written by the extension alone, as the table's owner; read by
-- monitoring; taken through subexpire_take_events().
REVOKE ALL ON subexpire_events FROM PUBLIC;
GRANT SELECT ON subexpire_events TO pg_monitor;

-- Take (delete and return) the oldest events that no other consumer holds,
-- in the caller's transaction: an event is consumed when the caller
-- commits, and comes back to the next take when it rolls back or dies.
-- SECURITY DEFINER, so that a consumer needs EXECUTE on this function
-- alone, not the right to delete from the outbox.
CREATE FUNCTION subexpire_take_events(max_events integer DEFAULT 100)
RETURNS SETOF subexpire_events
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF max_events IS NULL OR max_events OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'max_events must be 1 or more, not %', coalesce(max_events::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass how many events to take at most, or leave max_events out to take up to 100.';
    END IF;
    RETURN QUERY
    WITH taken AS (
        DELETE FROM @extschema@.subexpire_events e
        WHERE e.event_id OPERATOR(pg_catalog.=) ANY (ARRAY(
            SELECT o.event_id FROM @extschema@.subexpire_events o
            ORDER BY o.event_id
            LIMIT max_events
            FOR UPDATE SKIP LOCKED))
        RETURNING e.*)
    SELECT * FROM taken ORDER BY taken.event_id;
END
$$;

COMMENT ON FUNCTION subexpire_take_events(integer) IS
    'delete and return up to max_events of the oldest events that no other consumer holds, in the caller''s transaction';

REVOKE ALL ON FUNCTION subexpire_take_events(integer) FROM PUBLIC;
