--
-- failed_rows: due rows whose update fails are left as they were and
-- recorded; every other due row is expired.
--
SET timezone = 'UTC';
DELETE FROM subexpire_runs;
DELETE FROM subexpire_rules;

-- A table of its own: 1000 due rows, numbered, so that failing rows can
-- be spread out and named.
CREATE TABLE billing (
    id         integer PRIMARY KEY,
    tenant     integer NOT NULL DEFAULT 1,
    plan       text NOT NULL DEFAULT 'basic',
    status     text NOT NULL DEFAULT 'active',
    expires_at timestamptz NOT NULL DEFAULT '2026-05-01 00:00+00',
    updated_at timestamptz NOT NULL DEFAULT '2020-01-01 00:00+00'
);
CREATE INDEX ON billing (status, expires_at);
CREATE FUNCTION reset_billing() RETURNS void LANGUAGE sql AS $$
    DELETE FROM billing;
    INSERT INTO billing (id) SELECT n FROM generate_series(1, 1000) AS n;
$$;
-- A billing-sync trigger whose remote call fails for the rows listed.
CREATE TABLE sync_fails (id integer PRIMARY KEY);
CREATE FUNCTION billing_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM public.sync_fails WHERE id = NEW.id) THEN
        RAISE EXCEPTION 'billing sync failed for %', NEW.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER billing_sync BEFORE UPDATE ON billing
    FOR EACH ROW EXECUTE FUNCTION billing_sync();
INSERT INTO subexpire_rules (rule_name, target_table)
VALUES ('billing_end', 'public.billing');

-- What a run left: per status, the untouched rows, and the records.
CREATE VIEW billing_outcome AS
    SELECT status, count(*) AS n,
           count(*) FILTER (WHERE updated_at = '2020-01-01 00:00+00') AS untouched
    FROM billing GROUP BY status ORDER BY status;
CREATE VIEW last_run AS
    SELECT r.status, r.expired_count, r.skipped_failed AS run_failed,
           rr.expired_count AS rule_expired, rr.skipped_failed AS rule_failed,
           (SELECT count(*) FROM subexpire_row_errors e
            WHERE e.run_id = r.run_id) AS row_errors
    FROM subexpire_runs r JOIN subexpire_run_rules rr USING (run_id)
    ORDER BY r.run_id DESC LIMIT 1;

-- One failing row among 1000: the other 999 are expired, it stays as it
-- was, and its key and error are recorded, with one WARNING for the run.
SELECT reset_billing();
INSERT INTO sync_fails VALUES (500);
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM billing_outcome;
SELECT * FROM last_run;
SELECT rule_name, row_key, error FROM subexpire_row_errors;
SELECT status, updated_at FROM billing WHERE id = 500;
-- Health warns, and the metric counts it.
SELECT status, regexp_replace(detail, '(run|run_id =) \d+', '\1 N', 'g') AS detail
FROM subexpire_health() WHERE check_name = 'failed_rows';
SELECT line FROM regexp_split_to_table(subexpire_metrics(), E'\n') AS line
WHERE line LIKE 'subscription_expiry_failed_rows %';

-- The next run tries it again, and records it again under its own run.
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM last_run;
-- Once the cause is gone, the next run expires it.
DELETE FROM sync_fails;
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM last_run;
SELECT status, regexp_replace(detail, '(run|run_id =) \d+', '\1 N', 'g') AS detail
FROM subexpire_health() WHERE check_name = 'failed_rows';
SELECT line FROM regexp_split_to_table(subexpire_metrics(), E'\n') AS line
WHERE line LIKE 'subscription_expiry_failed_rows %';

-- 50 failing rows spread out, one in 20.
SELECT reset_billing();
INSERT INTO sync_fails SELECT n FROM generate_series(7, 1000, 20) AS n;
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM billing_outcome;
SELECT * FROM last_run;
SELECT count(*) AS recorded_rows_not_failing
FROM subexpire_row_errors e
WHERE e.run_id = (SELECT max(run_id) FROM subexpire_runs)
  AND NOT EXISTS (SELECT FROM sync_fails f WHERE jsonb_build_object('id', f.id) = e.row_key);
SELECT count(*) AS failing_rows_not_recorded
FROM sync_fails f
WHERE NOT EXISTS (SELECT FROM subexpire_row_errors e
                  WHERE e.run_id = (SELECT max(run_id) FROM subexpire_runs)
                    AND e.row_key = jsonb_build_object('id', f.id));

-- Every row fails: nothing is expired, every row is recorded, and the run
-- itself succeeded.
SELECT reset_billing();
DELETE FROM billing WHERE id > 100;
INSERT INTO sync_fails SELECT n FROM generate_series(1, 100) AS n
ON CONFLICT DO NOTHING;
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM billing_outcome;
SELECT * FROM last_run;
DELETE FROM sync_fails;

-- A check constraint that refuses the new row of some rows (an expired
-- 'vip' row is not allowed), and a rule that also moves the plan.
SELECT reset_billing();
UPDATE billing SET plan = 'vip' WHERE id IN (3, 333, 999);
ALTER TABLE billing ADD CONSTRAINT vip_never_expires
    CHECK (status <> 'expired' OR plan = 'vip_archived' OR plan <> 'vip');
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM last_run;
SELECT row_key, error FROM subexpire_row_errors
WHERE run_id = (SELECT max(run_id) FROM subexpire_runs) ORDER BY row_key;
ALTER TABLE billing DROP CONSTRAINT vip_never_expires;

-- A foreign key that refuses it: (tenant, status) must be a known pair,
-- and tenant 2 has no 'expired'.
SELECT reset_billing();
CREATE TABLE tenant_statuses (tenant integer, status text, PRIMARY KEY (tenant, status));
INSERT INTO tenant_statuses VALUES (1, 'active'), (1, 'expired'), (2, 'active');
UPDATE billing SET tenant = 2 WHERE id % 100 = 0;
ALTER TABLE billing ADD CONSTRAINT known_status
    FOREIGN KEY (tenant, status) REFERENCES tenant_statuses;
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM billing_outcome;
SELECT * FROM last_run;
SELECT row_key, error FROM subexpire_row_errors
WHERE run_id = (SELECT max(run_id) FROM subexpire_runs) ORDER BY (row_key->>'id')::int LIMIT 2;
ALTER TABLE billing DROP CONSTRAINT known_status;

-- A unique index that refuses it: one expired row a tenant.
SELECT reset_billing();
UPDATE billing SET tenant = id;
UPDATE billing SET tenant = 1 WHERE id IN (1, 2);
CREATE UNIQUE INDEX one_expired_a_tenant ON billing (tenant) WHERE status = 'expired';
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM last_run;
SELECT row_key FROM subexpire_row_errors
WHERE run_id = (SELECT max(run_id) FROM subexpire_runs);
DROP INDEX one_expired_a_tenant;

-- An error that is not about a row still fails the run, which changes
-- nothing, as before.
SELECT reset_billing();
CREATE FUNCTION billing_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 10 THEN
        RAISE EXCEPTION 'billing is frozen' USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER billing_frozen BEFORE UPDATE ON billing
    FOR EACH ROW EXECUTE FUNCTION billing_frozen();
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM billing_outcome;
DROP TRIGGER billing_frozen ON billing;

-- Events: one for each row expired, none for a row that failed.
SELECT reset_billing();
DELETE FROM subexpire_events;
INSERT INTO sync_fails VALUES (1), (640);
UPDATE subexpire_rules SET emit_events = true WHERE rule_name = 'billing_end';
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT count(*) AS events,
       count(*) FILTER (WHERE row_key IN ('{"id": 1}', '{"id": 640}')) AS events_of_failed_rows,
       count(DISTINCT row_key) AS distinct_rows
FROM subexpire_events;
SELECT count(*) AS expired_without_event
FROM billing b
WHERE b.status = 'expired'
  AND NOT EXISTS (SELECT FROM subexpire_events e WHERE e.row_key = jsonb_build_object('id', b.id));
UPDATE subexpire_rules SET emit_events = false WHERE rule_name = 'billing_end';
DELETE FROM subexpire_events;

-- The locked-rows path: a row held locked by a prepared transaction and
-- a failing row.  The locked one is skipped, the failing one recorded,
-- the rest expired.
SELECT reset_billing();
DELETE FROM sync_fails;
INSERT INTO sync_fails VALUES (20);
BEGIN;
SELECT id FROM billing WHERE id = 10 FOR UPDATE;
PREPARE TRANSACTION 'holds_billing_10';
SET subexpire.lock_wait = '50ms';
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.lock_wait;
SELECT * FROM billing_outcome;
SELECT r.expired_count, r.skipped_locked, r.skipped_failed
FROM subexpire_runs r ORDER BY run_id DESC LIMIT 1;
SELECT row_key FROM subexpire_row_errors
WHERE run_id = (SELECT max(run_id) FROM subexpire_runs);
COMMIT PREPARED 'holds_billing_10';

-- Two rules: a failing row of one leaves the other's rows alone, and each
-- rule's record counts its own.
SELECT reset_subscriptions();
SELECT reset_billing();
INSERT INTO subexpire_rules (rule_name, target_table)
VALUES ('period_end', 'public.subscriptions');
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT rule_name, expired_count, skipped_failed
FROM subexpire_run_rules
WHERE run_id = (SELECT max(run_id) FROM subexpire_runs) ORDER BY rule_name;
SELECT expired_count, skipped_failed FROM subexpire_runs
ORDER BY run_id DESC LIMIT 1;
DELETE FROM subexpire_rules WHERE rule_name = 'period_end';

-- A partitioned table without a primary key: a row is named by its
-- partition and ctid.
CREATE TABLE billing_parts (id integer, status text NOT NULL DEFAULT 'active',
    expires_at timestamptz NOT NULL, updated_at timestamptz)
    PARTITION BY RANGE (expires_at);
CREATE TABLE billing_parts_2026 PARTITION OF billing_parts
    FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE billing_parts_2025 PARTITION OF billing_parts
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO billing_parts (id, expires_at)
SELECT n, CASE WHEN n % 2 = 0 THEN '2026-05-01 00:00+00'::timestamptz ELSE '2025-05-01 00:00+00' END
FROM generate_series(1, 40) AS n;
CREATE FUNCTION parts_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IN (7, 8) THEN
        RAISE EXCEPTION 'billing sync failed for %', NEW.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER parts_sync BEFORE UPDATE ON billing_parts
    FOR EACH ROW EXECUTE FUNCTION parts_sync();
UPDATE subexpire_rules SET enabled = false;
INSERT INTO subexpire_rules (rule_name, target_table)
VALUES ('parts_end', 'public.billing_parts');
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT e.row_key ? 'ctid' AS has_ctid,
       e.row_key->>'table' AS partition,
       p.id
FROM subexpire_row_errors e
JOIN billing_parts p ON p.tableoid::regclass::text = e.row_key->>'table'
                    AND p.ctid = (e.row_key->>'ctid')::tid
WHERE e.run_id = (SELECT max(run_id) FROM subexpire_runs)
ORDER BY p.id;
DELETE FROM subexpire_rules WHERE rule_name = 'parts_end';
UPDATE subexpire_rules SET enabled = true;

-- The row errors go with their runs: pruned, deleted or truncated.
SELECT count(*) > 0 AS some_row_errors FROM subexpire_row_errors;
DELETE FROM subexpire_runs
WHERE run_id < (SELECT max(run_id) FROM subexpire_runs);
SELECT count(*) AS row_errors_of_deleted_runs FROM subexpire_row_errors e
WHERE NOT EXISTS (SELECT FROM subexpire_runs r WHERE r.run_id = e.run_id);
TRUNCATE subexpire_runs;
SELECT count(*) AS row_errors_after_truncate FROM subexpire_row_errors;

-- Only the extension writes them; pg_monitor reads them.
SELECT has_table_privilege('pg_monitor', 'subexpire_row_errors', 'SELECT') AS monitor_reads,
       has_table_privilege('public', 'subexpire_row_errors', 'SELECT') AS public_reads,
       has_table_privilege('pg_monitor', 'subexpire_row_errors', 'INSERT') AS monitor_writes;

DROP TABLE billing_parts;
DROP FUNCTION parts_sync();
DELETE FROM subexpire_rules;
DROP VIEW last_run;
DROP VIEW billing_outcome;
DROP TABLE billing;
DROP TABLE tenant_statuses;
DROP TABLE sync_fails;
DROP FUNCTION billing_sync();
DROP FUNCTION billing_frozen();
DROP FUNCTION reset_billing();
