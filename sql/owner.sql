--
-- owner: every statement on the target, and every conversion of a status
-- word to the column's type, runs as the table's owner, in a
-- security-restricted operation, on every path: a run, a dry run, the
-- counts of subexpire_stats and subexpire_metrics(), subexpire_health().
-- Code that the owner puts on the table never runs as the caller, a
-- superuser's included.  Also what the run refuses before it starts.
--
SET timezone = 'UTC';
\set VERBOSITY default

CREATE ROLE regress_subexpire_owner;
CREATE ROLE regress_subexpire_watcher IN ROLE pg_monitor;
CREATE SCHEMA app AUTHORIZATION regress_subexpire_owner;
SET ROLE regress_subexpire_owner;
-- Who ran the owner's code: a domain's check on the status column, a
-- trigger and a table's CHECK constraint, each of which would make its
-- owner a superuser if it ever ran as one.
CREATE TABLE app.seen (what text, who name);
CREATE FUNCTION app.ran(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO app.seen VALUES (what, current_user);
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'ALTER ROLE regress_subexpire_owner SUPERUSER';
    END IF;
    RETURN true;
END $$;
CREATE DOMAIN app.status_word AS text CHECK (app.ran('domain'));
CREATE FUNCTION app.note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM app.ran('trigger');
    RETURN NEW;
END $$;
CREATE TABLE app.subs (id int PRIMARY KEY, status app.status_word NOT NULL,
                       expires_at timestamptz, updated_at timestamptz);
CREATE INDEX ON app.subs (status, expires_at);
CREATE TRIGGER note AFTER UPDATE ON app.subs FOR EACH ROW EXECUTE FUNCTION app.note();
ALTER TABLE app.subs ADD CONSTRAINT row_ok CHECK (app.ran('check'));
INSERT INTO app.subs VALUES (1, 'active', '2026-05-01'), (2, 'active', '2026-07-01');
DELETE FROM app.seen;
RESET ROLE;

-- As a superuser, every path.
SET subexpire.target_table = 'app.subs';
SELECT check_name, status FROM subexpire_health() WHERE check_name = 'index';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', dry_run => true);
SELECT due_now IS NOT NULL AS counted FROM subexpire_stats;
SELECT subexpire_metrics() LIKE '%subscription_expiry_due %' AS metric_counted;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT what, who, count(*) > 0 AS ran FROM app.seen GROUP BY 1, 2 ORDER BY 1, 2;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_subexpire_owner';

-- A member of pg_monitor with no access to the table: the health checks
-- and the due count see the table through its owner, and are not critical.
RESET subexpire.target_table;
SET ROLE regress_subexpire_watcher;
SELECT count(*) FROM public.subscriptions;
SELECT check_name, status, detail FROM subexpire_health() WHERE check_name = 'index';
SELECT due_now IS NOT NULL AS counted FROM subexpire_stats;
RESET ROLE;

-- Status words that are the same value of the column are refused, by the
-- column type's equality and collation, not by their text.
SET subexpire.target_table = 'app.subs';
SET ROLE regress_subexpire_owner;
CREATE TABLE app.fixed (id int, status char(10), expires_at timestamptz, updated_at timestamptz);
CREATE COLLATION app.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE app.folded (id int, status text COLLATE app.ci, expires_at timestamptz, updated_at timestamptz);
INSERT INTO app.fixed VALUES (1, 'active', '2026-05-01');
INSERT INTO app.folded VALUES (1, 'active', '2026-05-01');
RESET ROLE;
SET subexpire.target_table = 'app.fixed';
SET subexpire.expired_status = 'active ';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SET subexpire.target_table = 'app.folded';
SET subexpire.expired_status = 'ACTIVE';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', dry_run => true);
RESET subexpire.expired_status;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT status FROM app.folded;

-- A trigger that keeps the status: the row is not counted as expired, the
-- run says so, and it does not come back for it.
SET ROLE regress_subexpire_owner;
CREATE FUNCTION app.keep_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.id = 2 THEN
        NEW.status := OLD.status;
    END IF;
    RETURN NEW;
END $$;
CREATE TABLE app.kept (id int PRIMARY KEY, status text, expires_at timestamptz, updated_at timestamptz);
CREATE TRIGGER keep BEFORE UPDATE ON app.kept FOR EACH ROW EXECUTE FUNCTION app.keep_status();
INSERT INTO app.kept VALUES (1, 'active', '2026-05-01'), (2, 'active', '2026-05-01'), (3, 'active', '2026-05-01');
RESET ROLE;
SET subexpire.target_table = 'app.kept';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT id, status FROM app.kept ORDER BY id;
-- The next run tries it again, once.
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT expired_count, skipped_locked, kept_active FROM subexpire_runs ORDER BY run_id DESC LIMIT 2;

-- A deferred constraint trigger fires, as the owner, at the end of the
-- run's statement.
SET ROLE regress_subexpire_owner;
CREATE TABLE app.deferred (id int, status text, expires_at timestamptz, updated_at timestamptz);
CREATE CONSTRAINT TRIGGER deferred_note AFTER UPDATE ON app.deferred
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION app.note();
INSERT INTO app.deferred VALUES (1, 'active', '2026-05-01');
DELETE FROM app.seen;
RESET ROLE;
SET subexpire.target_table = 'app.deferred';
BEGIN;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT what, who FROM app.seen;
-- The constraint stays immediate for the rest of the caller's
-- transaction: the caller's own UPDATE fires its trigger at once.
UPDATE app.deferred SET updated_at = '2026-06-02';
SELECT count(*) AS fired_before_commit FROM app.seen;
COMMIT;

-- A child table owned by another role is refused, with the fix.
CREATE TABLE app.parts (id int, status text, expires_at timestamptz, updated_at timestamptz)
    PARTITION BY RANGE (id);
ALTER TABLE app.parts OWNER TO regress_subexpire_owner;
CREATE TABLE app.parts_1 PARTITION OF app.parts FOR VALUES FROM (0) TO (10);
ALTER TABLE app.parts_1 OWNER TO regress_subexpire_watcher;
INSERT INTO app.parts VALUES (1, 'active', '2026-05-01');
SET subexpire.target_table = 'app.parts';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', dry_run => true);
ALTER TABLE app.parts_1 OWNER TO regress_subexpire_owner;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');

-- A foreign partition is refused on every path, before anything changed.
CREATE FOREIGN DATA WRAPPER regress_subexpire_fdw;
CREATE SERVER regress_subexpire_server FOREIGN DATA WRAPPER regress_subexpire_fdw;
CREATE FOREIGN TABLE app.parts_2 PARTITION OF app.parts FOR VALUES FROM (10) TO (20)
    SERVER regress_subexpire_server;
ALTER TABLE app.parts_2 OWNER TO regress_subexpire_owner;
UPDATE app.parts SET status = 'active' WHERE id = 1;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', dry_run => true);
SELECT check_name, status FROM subexpire_health() WHERE check_name = 'index';
SELECT status FROM app.parts_1;
DROP FOREIGN TABLE app.parts_2;
DROP SERVER regress_subexpire_server;
DROP FOREIGN DATA WRAPPER regress_subexpire_fdw;

-- A rule on UPDATE replaces the run's statement: refused.
CREATE RULE keep_log AS ON UPDATE TO app.kept DO ALSO NOTIFY kept;
SET subexpire.target_table = 'app.kept';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
DROP RULE keep_log ON app.kept;

-- A caller restricted by row-level security is refused: the run acts as
-- the owner and would expire rows the policies hide from the caller.
CREATE ROLE regress_subexpire_clerk;
GRANT USAGE ON SCHEMA app TO regress_subexpire_clerk;
GRANT SELECT, UPDATE ON app.subs TO regress_subexpire_clerk;
GRANT EXECUTE ON FUNCTION expire_subscriptions(timestamptz, boolean, text) TO regress_subexpire_clerk;
ALTER TABLE app.subs ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_one ON app.subs USING (id = 1);
SET subexpire.target_table = 'app.subs';
SET ROLE regress_subexpire_clerk;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET ROLE;
ALTER TABLE app.subs DISABLE ROW LEVEL SECURITY;

-- A caller without rights on the table is refused before a run starts:
-- no run is recorded or counted as failed.
REVOKE SELECT, UPDATE ON app.subs FROM regress_subexpire_clerk;
SELECT runs_failed AS failed_before FROM subexpire_stats \gset
SELECT count(*) AS runs_before FROM subexpire_runs \gset
SET ROLE regress_subexpire_clerk;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET ROLE;
SELECT runs_failed = :failed_before AS no_failure_counted FROM subexpire_stats;
SELECT count(*) = :runs_before AS no_run_recorded FROM subexpire_runs;

-- Functions on the table see the caller's search_path (README: give them
-- a SET search_path).
SET ROLE regress_subexpire_owner;
CREATE TABLE app.path (id int, status text, expires_at timestamptz, updated_at timestamptz);
CREATE FUNCTION app.path_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO app.seen VALUES ('search_path', current_setting('search_path'));
    RETURN NEW;
END $$;
CREATE TRIGGER path_note AFTER UPDATE ON app.path FOR EACH ROW EXECUTE FUNCTION app.path_note();
INSERT INTO app.path VALUES (1, 'active', '2026-05-01');
DELETE FROM app.seen;
RESET ROLE;
SET subexpire.target_table = 'app.path';
SET search_path = app, public;
SELECT expired_count FROM public.expire_subscriptions('2026-06-01 00:00+00');
RESET search_path;
SELECT what, who FROM app.seen;

-- A cutoff with no value in a timestamp column's type names as_of.
SET ROLE regress_subexpire_owner;
CREATE TABLE app.local_time (id int, status text, expires_at timestamp, updated_at timestamp);
RESET ROLE;
SET subexpire.target_table = 'app.local_time';
SET timezone = 'Pacific/Kiritimati';
SELECT * FROM expire_subscriptions('294276-12-31 23:59:59+00', dry_run => true);
RESET timezone;
SET timezone = 'UTC';

RESET ALL;
SET timezone = 'UTC';
DROP SCHEMA app CASCADE;
REVOKE EXECUTE ON FUNCTION expire_subscriptions(timestamptz, boolean, text) FROM regress_subexpire_clerk;
DROP ROLE regress_subexpire_clerk;
DROP ROLE regress_subexpire_owner;
DROP ROLE regress_subexpire_watcher;
TRUNCATE subexpire_runs RESTART IDENTITY;
