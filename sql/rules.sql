--
-- rules: lifecycle rules in subexpire_rules.
--
SET timezone = 'UTC';
SELECT reset_subscriptions();
DELETE FROM subexpire_runs;
SELECT subexpire_stats_reset();

-- With no rule, the one rule is 'default', of the settings.
SELECT * FROM subexpire_due('2026-06-01 00:00+00');

-- A billing table with a trial, a paid period and a grace period.
CREATE TABLE accounts (
    id            integer PRIMARY KEY,
    status        text NOT NULL,
    plan          text NOT NULL DEFAULT 'premium',
    is_premium    boolean NOT NULL DEFAULT true,
    seats         integer NOT NULL DEFAULT 5,
    trial_ends_at timestamptz,
    ends_at       timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT '2020-01-01 00:00+00'
);
CREATE INDEX ON accounts (status, ends_at);
CREATE INDEX ON accounts (status, trial_ends_at);
INSERT INTO accounts (id, status, trial_ends_at, ends_at) VALUES
    (1, 'trialing', '2026-05-20 00:00+00', NULL),                   -- trial ended
    (2, 'trialing', '2026-06-20 00:00+00', NULL),                   -- trial goes on
    (3, 'active',   NULL, '2026-05-30 00:00+00'),                   -- period ended 2 days ago
    (4, 'active',   NULL, '2026-05-01 00:00+00'),                   -- ended a month ago: past the grace too
    (5, 'past_due', NULL, '2026-05-20 00:00+00'),                   -- grace (7 days) over
    (6, 'past_due', NULL, '2026-05-28 00:00+00'),                   -- still in its grace
    (7, 'active',   NULL, '2026-07-01 00:00+00');                   -- paid up
CREATE VIEW account_states AS
    SELECT id, status, plan, is_premium, seats, trial_ends_at IS NULL AS trial_cleared,
           updated_at <> '2020-01-01 00:00+00' AS touched
    FROM accounts ORDER BY id;

INSERT INTO subexpire_rules (rule_name, target_table, from_status, to_status,
                             expires_column, set_columns, run_order)
VALUES ('trial-end', 'public.accounts', 'trialing', 'expired', 'trial_ends_at',
        '{"plan": "free", "is_premium": false, "trial_ends_at": null}', 10);
INSERT INTO subexpire_rules (rule_name, target_table, from_status, to_status,
                             expires_column, run_order)
VALUES ('period-end', 'public.accounts', 'active', 'past_due', 'ends_at', 20);
INSERT INTO subexpire_rules (rule_name, target_table, from_status, to_status,
                             expires_column, grace_period, set_columns, run_order)
VALUES ('grace-end', 'public.accounts', 'past_due', 'canceled', 'ends_at',
        '7 days', '{"plan": "free", "is_premium": false, "seats": 1}', 30);

-- What each rule would expire, changing nothing.  Row 4 is counted by
-- period-end only: it is not past_due yet.
SELECT * FROM subexpire_due('2026-06-01 00:00+00');
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', dry_run => true);
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', true, 'grace-end');
SELECT count(*) AS runs FROM subexpire_runs;

-- One run: the rules in run_order.  Row 4 goes to past_due, then to
-- canceled with the plan back to free, in the same run; the subscriptions
-- table, of the settings, is not the job any more.
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM account_states;
SELECT count(*) AS subscriptions_expired FROM subscriptions WHERE status = 'expired';
SELECT r.status, r.expired_count, rr.rule_name, rr.target_table,
       rr.expired_count AS rule_expired, rr.skipped_locked, rr.error
FROM subexpire_runs r JOIN subexpire_run_rules rr USING (run_id)
ORDER BY rr.rule_name;
SELECT rule_name, runs_total, runs_failed, expired_total, last_run_expired
FROM subexpire_rule_stats() ORDER BY rule_name;

-- Again: nothing.
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');

-- One rule by name; the others do not run.
UPDATE accounts SET status = 'trialing', trial_ends_at = '2026-05-01 00:00+00' WHERE id = 7;
UPDATE accounts SET status = 'active', ends_at = '2026-05-01 00:00+00' WHERE id = 6;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', rule_name => 'period-end');
SELECT id, status FROM accounts WHERE id IN (6, 7) ORDER BY id;

-- A disabled rule does not run, and cannot be run by name.
UPDATE subexpire_rules SET enabled = false WHERE rule_name = 'trial-end';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', rule_name => 'trial-end');
SELECT rule_name FROM subexpire_due('2026-06-01 00:00+00') ORDER BY 1;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', rule_name => 'nope');
UPDATE subexpire_rules SET enabled = true WHERE rule_name = 'trial-end';

-- The rule's own guard, and the run's: nothing changes.
UPDATE subexpire_rules SET max_expired_per_run = 0 WHERE rule_name = 'trial-end';
UPDATE subexpire_rules SET max_expired_per_run = 1 WHERE rule_name = 'grace-end';
UPDATE accounts SET status = 'past_due', ends_at = '2026-01-01 00:00+00' WHERE id IN (1, 2);
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT id, status FROM accounts WHERE id IN (1, 2, 7) ORDER BY id;
UPDATE subexpire_rules SET max_expired_per_run = 0 WHERE rule_name = 'grace-end';
SET subexpire.max_expired_per_run = 2;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.max_expired_per_run;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT id, status FROM accounts WHERE id IN (1, 2, 7) ORDER BY id;

-- Status columns of other types: a boolean, integer codes, an enum, a
-- domain over text; the same transition from two statuses.
CREATE TYPE licence_state AS ENUM ('valid', 'lapsed');
CREATE DOMAIN tier_word AS text CHECK (VALUE IN ('gold', 'none'));
CREATE TABLE licences (
    id         bigint PRIMARY KEY,
    enabled    boolean NOT NULL,
    code       smallint NOT NULL,
    state      licence_state NOT NULL,
    tier       tier_word NOT NULL,
    ends_at    date
);
INSERT INTO licences VALUES
    (1, true, 1, 'valid', 'gold', '2026-05-01'),
    (2, true, 2, 'valid', 'gold', '2026-05-01'),
    (3, false, 1, 'valid', 'gold', '2026-07-01');
DELETE FROM subexpire_rules;
INSERT INTO subexpire_rules (rule_name, target_table, status_column, from_status,
                             to_status, expires_column, updated_column)
VALUES ('disable', 'public.licences', 'enabled', 'true', 'false', 'ends_at', NULL),
       ('code-active', 'public.licences', 'code', '1', '3', 'ends_at', NULL),
       ('code-trial', 'public.licences', 'code', '2', '3', 'ends_at', NULL),
       ('lapse', 'public.licences', 'state', 'valid', 'lapsed', 'ends_at', NULL),
       ('untier', 'public.licences', 'tier', 'gold', 'none', 'ends_at', NULL);
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM licences ORDER BY id;
SELECT rule_name, expired_count FROM subexpire_run_rules
WHERE run_id = (SELECT max(run_id) FROM subexpire_runs) ORDER BY rule_name;

-- A column whose name needs quotes, in the rule and in set_columns.
CREATE TABLE "Odd Table" ("Status" text, "Ends At" timestamptz, "Plan Name" text);
INSERT INTO "Odd Table" VALUES ('on', '2026-01-01', 'gold');
DELETE FROM subexpire_rules;
INSERT INTO subexpire_rules (rule_name, target_table, status_column, from_status,
                             to_status, expires_column, updated_column, set_columns)
VALUES ('odd', 'public."Odd Table"', '"Status"', 'on', 'off', '"Ends At"', NULL,
        '{"Plan Name": "x''; DROP TABLE users; --"}');
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM "Odd Table";
SELECT count(*) AS users_still_there FROM users;

-- Bad rules are refused when written, naming the rule's column, and
-- nothing is written.
DELETE FROM subexpire_rules;
INSERT INTO subexpire_rules (rule_name, target_table) VALUES ('bad name!', 'public.accounts');
INSERT INTO subexpire_rules (rule_name, target_table) VALUES ('t', 'accounts');
INSERT INTO subexpire_rules (rule_name, target_table) VALUES ('t', 'public.nope');
INSERT INTO subexpire_rules (rule_name, target_table) VALUES ('t', 'public.accounts; DROP TABLE users');
INSERT INTO subexpire_rules (rule_name, target_table, status_column) VALUES ('t', 'public.accounts', 'nope');
INSERT INTO subexpire_rules (rule_name, target_table, expires_column) VALUES ('t', 'public.accounts', 'plan');
INSERT INTO subexpire_rules (rule_name, target_table, expires_column) VALUES ('t', 'public.accounts', 'ends_at, status');
INSERT INTO subexpire_rules (rule_name, target_table, status_column, expires_column, from_status)
VALUES ('t', 'public.licences', 'state', 'ends_at', 'gone');
INSERT INTO subexpire_rules (rule_name, target_table, status_column, expires_column, from_status, updated_column)
VALUES ('t', 'public.licences', 'code', 'ends_at', 'yes', NULL);
INSERT INTO subexpire_rules (rule_name, target_table, status_column, expires_column, from_status, updated_column)
VALUES ('t', 'public.licences', 'code', 'ends_at', '2026-01-01', NULL);
INSERT INTO subexpire_rules (rule_name, target_table, status_column, expires_column, from_status, to_status, updated_column)
VALUES ('t', 'public.licences', 'tier', 'ends_at', 'gold', 'silver', NULL);
INSERT INTO subexpire_rules (rule_name, target_table, from_status, to_status, expires_column)
VALUES ('t', 'public.accounts', 'active', 'active', 'ends_at');
INSERT INTO subexpire_rules (rule_name, target_table, expires_column, set_columns)
VALUES ('t', 'public.accounts', 'ends_at', '["plan"]');
INSERT INTO subexpire_rules (rule_name, target_table, expires_column, set_columns)
VALUES ('t', 'public.accounts', 'ends_at', '{"status": "x"}');
INSERT INTO subexpire_rules (rule_name, target_table, expires_column, set_columns)
VALUES ('t', 'public.accounts', 'ends_at', '{"updated_at": "2026-01-01"}');
INSERT INTO subexpire_rules (rule_name, target_table, expires_column, set_columns)
VALUES ('t', 'public.accounts', 'ends_at', '{"Plan": "free"}');
INSERT INTO subexpire_rules (rule_name, target_table, expires_column, set_columns)
VALUES ('t', 'public.accounts', 'ends_at', '{"seats": "many"}');
INSERT INTO subexpire_rules (rule_name, target_table, expires_column, set_columns)
VALUES ('t', 'public.accounts', 'ends_at', '{"seats": "2026-01-01"}');
INSERT INTO subexpire_rules (rule_name, target_table, expires_column, set_columns)
VALUES ('t', 'public.accounts', 'ends_at', '{"seats": null}');
INSERT INTO subexpire_rules (rule_name, target_table, expires_column, set_columns)
VALUES ('t', 'public.accounts', 'ends_at', '{"plan": {"name": "free"}}');
INSERT INTO subexpire_rules (rule_name, target_table, expires_column, set_columns)
SELECT 't', 'public.accounts', 'ends_at', jsonb_object_agg('c' || g, 1)
FROM generate_series(1, 65) AS g;
INSERT INTO subexpire_rules (rule_name, target_table, expires_column, grace_period)
VALUES ('t', 'public.accounts', 'ends_at', '-1 day');
INSERT INTO subexpire_rules (rule_name, target_table, expires_column, updated_column)
VALUES ('t', 'public.accounts', 'ends_at', 'status');
INSERT INTO subexpire_rules (rule_name, target_table, status_column, expires_column, updated_column, emit_events)
VALUES ('t', 'public."Odd Table"', '"Status"', '"Ends At"', NULL, true);
INSERT INTO subexpire_rules (rule_name, target_table, expires_column, emit_events, set_columns)
VALUES ('t', 'public.accounts', 'ends_at', true, '{"ends_at": null}');
SELECT count(*) AS rules_written FROM subexpire_rules;
-- A valid rule, then an UPDATE that would break it.
INSERT INTO subexpire_rules (rule_name, target_table, expires_column)
VALUES ('t', 'public.accounts', 'ends_at');
UPDATE subexpire_rules SET to_status = NULL WHERE rule_name = 't';
UPDATE subexpire_rules SET status_column = 'nope' WHERE rule_name = 't';
SELECT rule_name, status_column, to_status FROM subexpire_rules;

-- A rule whose table was dropped after it was written fails the call,
-- naming the rule's column and the table; health says which rule.
CREATE TABLE doomed (status text, expires_at timestamptz, updated_at timestamptz);
INSERT INTO subexpire_rules (rule_name, target_table) VALUES ('doomed', 'public.doomed');
DROP TABLE doomed;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT check_name, status, detail FROM subexpire_health()
WHERE check_name IN ('index', 'rules', 'target_settings') ORDER BY 1;
-- It can be turned off (a disabled rule is checked when it is enabled).
UPDATE subexpire_rules SET enabled = false WHERE rule_name = 'doomed';
UPDATE subexpire_rules SET enabled = true WHERE rule_name = 'doomed';
DELETE FROM subexpire_rules WHERE rule_name = 'doomed';
-- With check_function_bodies off (a restore of pg_dump's output), a rule
-- is written as it is, its name checked alone; the run refuses it.
SET check_function_bodies = off;
INSERT INTO subexpire_rules (rule_name, target_table, emit_events)
VALUES ('restored', 'public.not_yet', true);
INSERT INTO subexpire_rules (rule_name, target_table) VALUES ('bad name', 'public.not_yet');
RESET check_function_bodies;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT status FROM subexpire_health() WHERE check_name = 'rules';
DELETE FROM subexpire_rules WHERE rule_name = 'restored';
SELECT check_name, status FROM subexpire_health()
WHERE check_name IN ('index', 'rules', 'target_settings') ORDER BY 1;
-- A target setting changed while rules define the job: health says so.
SET subexpire.target_table = 'public.accounts';
SELECT status, detail FROM subexpire_health() WHERE check_name = 'target_settings';
RESET subexpire.target_table;

-- With rules but none enabled, runs expire nothing, and health says so.
UPDATE subexpire_rules SET enabled = false;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM subexpire_due('2026-06-01 00:00+00');
SELECT check_name, status, detail FROM subexpire_health()
WHERE check_name IN ('index', 'rules') ORDER BY 1;
SELECT due_now FROM subexpire_stats;
UPDATE subexpire_rules SET enabled = true;

-- Writing the rules: superusers, or a role granted it, who must itself be
-- able to update the rule's table.  A caller of expire_subscriptions()
-- needs rights on every rule's table.
CREATE ROLE regress_subexpire_ruler;
CREATE ROLE regress_subexpire_runner;
GRANT EXECUTE ON FUNCTION expire_subscriptions(timestamptz, boolean, text) TO regress_subexpire_runner;
SET ROLE regress_subexpire_ruler;
INSERT INTO subexpire_rules (rule_name, target_table, expires_column)
VALUES ('mine', 'public.accounts', 'ends_at');
RESET ROLE;
GRANT INSERT, UPDATE, DELETE, SELECT ON subexpire_rules TO regress_subexpire_ruler;
SET ROLE regress_subexpire_ruler;
INSERT INTO subexpire_rules (rule_name, target_table, expires_column)
VALUES ('mine', 'public.accounts', 'ends_at');
RESET ROLE;
GRANT SELECT, UPDATE ON accounts TO regress_subexpire_ruler;
SET ROLE regress_subexpire_ruler;
INSERT INTO subexpire_rules (rule_name, target_table, expires_column)
VALUES ('mine', 'public.accounts', 'ends_at');
RESET ROLE;
GRANT SELECT, UPDATE (status, updated_at) ON accounts TO regress_subexpire_runner;
GRANT SELECT, UPDATE ON licences TO regress_subexpire_runner;
INSERT INTO subexpire_rules (rule_name, target_table, status_column, from_status,
                             to_status, expires_column, updated_column)
VALUES ('lic', 'public.licences', 'code', '3', '4', 'ends_at', NULL);
SET ROLE regress_subexpire_runner;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', rule_name => 'lic');
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET ROLE;
UPDATE subexpire_rules SET set_columns = '{"plan": "free"}' WHERE rule_name = 't';
SET ROLE regress_subexpire_runner;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET ROLE;

-- A manual run that rolls back counts as failed for each of its rules.
SELECT rule_name, runs_failed FROM subexpire_rule_stats() WHERE rule_name IN ('lic', 'mine') ORDER BY 1;
BEGIN;
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
ROLLBACK;
SELECT rule_name, runs_failed, last_error FROM subexpire_rule_stats() WHERE rule_name IN ('lic', 'mine') ORDER BY 1;

-- subexpire_due() is for superusers and whom they grant it.
SELECT has_function_privilege('public', 'subexpire_due(timestamptz)', 'EXECUTE') AS public_may_count;

-- pg_monitor reads the rules and their records; PUBLIC does not.
SELECT has_table_privilege('public', 'subexpire_rules', 'SELECT') AS public_reads_rules,
       has_table_privilege('pg_monitor', 'subexpire_rules', 'SELECT') AS monitor_reads_rules,
       has_table_privilege('pg_monitor', 'subexpire_run_rules', 'SELECT') AS monitor_reads_records,
       has_table_privilege('pg_monitor', 'subexpire_rules', 'INSERT') AS monitor_writes_rules;

-- Metrics per rule carry a rule label; the 1.x series stay.
SELECT line FROM regexp_split_to_table(subexpire_metrics(), '\n') AS line
WHERE line LIKE 'subscription_expiry_rule_expired_total{%' OR line LIKE 'subscription_expiry_rule_due{%'
ORDER BY 1;

-- The statistics keep 64 rules: 65 more rules run, and 64 are kept.
DELETE FROM subexpire_rules;
INSERT INTO subexpire_rules (rule_name, target_table, from_status, to_status, expires_column)
SELECT 'many-' || g, 'public.accounts', 'state-' || g, 'gone', 'ends_at'
FROM generate_series(1, 65) AS g;
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT count(*) AS rules_counted, count(*) FILTER (WHERE rule_name LIKE 'many-%') AS of_the_new
FROM subexpire_rule_stats();

DELETE FROM subexpire_rules;
REVOKE ALL ON accounts, licences FROM regress_subexpire_ruler, regress_subexpire_runner;
REVOKE ALL ON subexpire_rules FROM regress_subexpire_ruler;
REVOKE ALL ON FUNCTION expire_subscriptions(timestamptz, boolean, text) FROM regress_subexpire_runner;
DROP ROLE regress_subexpire_ruler;
DROP ROLE regress_subexpire_runner;
