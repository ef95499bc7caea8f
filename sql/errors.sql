--
-- errors: bad settings and bad arguments are refused with an error that
-- names what is wrong and how to fix it, and change nothing.
--
SET timezone = 'UTC';
SELECT reset_subscriptions();
\set VERBOSITY default

-- Settings that cannot work are refused when set.
SET subexpire.target_table = 'subscriptions';
SET subexpire.target_table = 'public.subscriptions extra';
SET subexpire.target_table = 'a.b.c';
SET subexpire.target_table = '';
SET subexpire.status_column = 'public.status';
SET subexpire.expires_column = '';
SET subexpire.active_status = '';
SET subexpire.grace_period = '-1';
SET subexpire.grace_period = 'soon';
SET subexpire.batch_size = 0;
SET subexpire.max_expired_per_run = -5;
SET subexpire.lock_wait = 0;
SET subexpire.no_such_setting = 1;
SHOW subexpire.target_table;

-- The target table does not exist.
SET subexpire.target_table = 'public.no_such_table';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', dry_run => true);
SET subexpire.target_table = 'no_such_schema.subscriptions';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');

-- The target is not a table.
CREATE VIEW public.subscriptions_view AS SELECT * FROM subscriptions;
SET subexpire.target_table = 'public.subscriptions_view';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
CREATE SEQUENCE public.subscriptions_seq;
SET subexpire.target_table = 'public.subscriptions_seq';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
DROP VIEW public.subscriptions_view;
DROP SEQUENCE public.subscriptions_seq;
RESET subexpire.target_table;

-- A column does not exist.
SET subexpire.status_column = 'state';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.status_column;
SET subexpire.expires_column = '"Expires_At"';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.expires_column;
SET subexpire.updated_column = 'modified_at';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.updated_column;
-- A system column is not a column of the table's data.
SET subexpire.status_column = 'ctid';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.status_column;

-- A column of the wrong type.
SET subexpire.expires_column = 'plan';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.expires_column;
SET subexpire.status_column = 'created_at';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.status_column;
SET subexpire.updated_column = 'plan';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.updated_column;
SET subexpire.updated_column = 'expires_at';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.updated_column;

-- A status word that the status column cannot hold: too long for varchar(20) ...
SET subexpire.expired_status = 'expired-because-payment-failed';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.expired_status;
-- ... not a label of the enum ...
CREATE TYPE public.sub_state AS ENUM ('active', 'expired');
CREATE TABLE public.enum_subs (status public.sub_state, expires_at timestamptz, updated_at timestamptz);
SET subexpire.target_table = 'public.enum_subs';
SET subexpire.expired_status = 'lapsed';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
-- ... or refused by a domain's check.
RESET subexpire.expired_status;
CREATE DOMAIN public.short_status AS text CHECK (length(VALUE) <= 6);
CREATE TABLE public.domain_subs (status public.short_status, expires_at date, updated_at timestamptz);
SET subexpire.target_table = 'public.domain_subs';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.target_table;
DROP TABLE public.enum_subs, public.domain_subs;
DROP TYPE public.sub_state;
DROP DOMAIN public.short_status;

-- The same word for active and expired.
SET subexpire.expired_status = 'active';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.expired_status;

-- Bad arguments.
SELECT * FROM expire_subscriptions(NULL);
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', NULL);
SELECT * FROM expire_subscriptions('infinity');
SELECT * FROM expire_subscriptions('-infinity');
SET subexpire.grace_period = 2147483647;
SELECT * FROM expire_subscriptions('4714-11-25 00:00+00 BC');
RESET subexpire.grace_period;

-- A read-only transaction: refused, but a dry run works there.
BEGIN READ ONLY;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
ROLLBACK;
BEGIN READ ONLY;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', dry_run => true);
COMMIT;
SET default_transaction_read_only = on;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET default_transaction_read_only;

-- The guard: a run that would expire more than max_expired_per_run refuses,
-- says how many were due, and changes nothing.
SET subexpire.max_expired_per_run = 1;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
-- A dry run is not refused: it is how to see what the guard saw.
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', dry_run => true);
SET subexpire.max_expired_per_run = 2;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.max_expired_per_run;

-- Nothing above changed anything but the one run the guard let through.
SELECT n, status, touched FROM subscription_states;
SELECT trigger, status, expired_count FROM subexpire_runs ORDER BY run_id;
TRUNCATE subexpire_runs RESTART IDENTITY;
