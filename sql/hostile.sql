--
-- hostile: the catalogue of hostile input.  Each is refused with a clear
-- error and changes nothing.  (Settings shaped like SQL, quotes and
-- Unicode names are in security.sql; infinite cutoffs in errors.sql;
-- schedules beyond every field's bounds in schedule.sql.)
--
SET timezone = 'UTC';
SELECT reset_subscriptions();
\set VERBOSITY default

-- Huge and negative numbers.
SET subexpire.grace_period = '100000000d';
SET subexpire.grace_period = '-1s';
SET subexpire.batch_size = 10000000000;
SET subexpire.batch_size = -1;
SET subexpire.max_expired_per_run = 2147483648;
SET subexpire.lock_wait = '2h';
SET subexpire.history_retention = '-1d';
SET subexpire.alert_max_expired = -1;
-- The largest grace period works: nothing is that old.
SET subexpire.grace_period = 2147483647;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', dry_run => true);
RESET subexpire.grace_period;
-- Cutoffs at the ends of the timestamp range.
SELECT * FROM expire_subscriptions('4713-01-01 00:00+00 BC', dry_run => true);
SELECT * FROM expire_subscriptions('294276-12-31 23:59:59+00', dry_run => true);

-- Schedules at every field's bounds work; one past them does not.
SELECT count(*) AS fires FROM subexpire_next_runs('0,59 0,23 1,31 1,12 0,6,7', 'UTC', '2026-01-01', 5);
SELECT * FROM subexpire_next_runs('0 0 31 4 *', 'UTC', '2026-01-01', 1);
SELECT * FROM subexpire_next_runs('0-60 * * * *');
SELECT * FROM subexpire_next_runs('* * * * 0-8');
SELECT * FROM subexpire_next_runs('99999999999999999999 * * * *');
SELECT * FROM subexpire_next_runs('*/99999999999 * * * *');
SELECT * FROM subexpire_next_runs(repeat('1,', 5000) || '1 * * * *', 'UTC', '2026-01-01', 1);
SELECT * FROM subexpire_next_runs(E'0\t2 * *\n*', 'UTC', '2026-01-01', 1);

-- Zones that are abbreviations or offsets are not zones of the database:
-- POSIX would read UTC+3 as three hours behind UTC.
ALTER SYSTEM SET subexpire.timezone = 'CEST';
ALTER SYSTEM SET subexpire.timezone = '+05:00';
ALTER SYSTEM SET subexpire.timezone = 'UTC+3';
ALTER SYSTEM SET subexpire.timezone = 'XYZ5';
ALTER SYSTEM SET subexpire.timezone = '../../../etc/passwd';
-- Names of the database work, in any case.
ALTER SYSTEM SET subexpire.timezone = 'america/new_york';
ALTER SYSTEM SET subexpire.timezone = 'Etc/GMT+5';
ALTER SYSTEM RESET subexpire.timezone;

-- A target that is a foreign table.
CREATE FOREIGN DATA WRAPPER regress_subexpire_fdw;
CREATE SERVER regress_subexpire_server FOREIGN DATA WRAPPER regress_subexpire_fdw;
CREATE FOREIGN TABLE public.remote_subs (status text, expires_at timestamptz, updated_at timestamptz)
    SERVER regress_subexpire_server;
SET subexpire.target_table = 'public.remote_subs';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.target_table;
DROP FOREIGN TABLE public.remote_subs;
DROP SERVER regress_subexpire_server;
DROP FOREIGN DATA WRAPPER regress_subexpire_fdw;

-- A status column that is an array or JSON; an expiry column that is text.
CREATE TABLE public.odd_subs (
    tags       text[],
    doc        jsonb,
    status     text,
    expires_at timestamptz,
    expires_txt text,
    updated_at timestamptz
);
SET subexpire.target_table = 'public.odd_subs';
SET subexpire.status_column = 'tags';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SET subexpire.status_column = 'doc';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.status_column;
SET subexpire.expires_column = 'expires_txt';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.expires_column;
RESET subexpire.target_table;
DROP TABLE public.odd_subs;

-- Status words with control characters or symbols are values like any
-- other: compared as values, they match nothing here.
SET subexpire.active_status = E'act\tive';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SET subexpire.active_status = 'ÄCTIVE ✓';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.active_status;

-- Names too long for an identifier are cut as SQL cuts them, so they name
-- no table.
SET subexpire.target_table = 'public.subscriptions_with_a_name_that_goes_on_and_on_beyond_the_limit_of_63_bytes';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.target_table;

-- Nothing above changed a subscription (row 5 was expired before); the two
-- runs with odd words ran, matched nothing, and were recorded.
SELECT count(*) FILTER (WHERE status = 'expired') AS expired, count(*) AS total FROM subscriptions;
SELECT count(*) AS runs FROM subexpire_runs;
