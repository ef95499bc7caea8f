--
-- config: other schemas served by configuration alone.
--
SET timezone = 'UTC';

-- The defaults fit the reference schema exactly.
SELECT name, setting, unit, context FROM pg_settings
WHERE name LIKE 'subexpire.%' ORDER BY name;

-- An enum status with other words, a date expiry, a timestamp (without
-- time zone) updated-at column, a quoted mixed-case table name, and a
-- grace period of three days.
CREATE SCHEMA billing;
CREATE TYPE billing.account_state AS ENUM ('trial', 'live', 'lapsed');
CREATE TABLE billing."Accounts" (
    acct_id    int PRIMARY KEY,
    state      billing.account_state NOT NULL,
    paid_until date,
    touched    timestamp
);
CREATE INDEX ON billing."Accounts" (state, paid_until);
INSERT INTO billing."Accounts" VALUES
    (1, 'live',   '2026-06-06', NULL),   -- paid until the 6th: due by the 10th
    (2, 'live',   '2026-06-07', NULL),   -- the 7th + 3 days = 10th 00:00: due
    (3, 'live',   '2026-06-08', NULL),   -- the 11th: not yet
    (4, 'live',   NULL,         NULL),   -- never
    (5, 'trial',  '2026-01-01', NULL),   -- not the active word
    (6, 'lapsed', '2026-01-01', NULL);

SET subexpire.target_table = 'billing."Accounts"';
SET subexpire.status_column = 'state';
SET subexpire.expires_column = 'paid_until';
SET subexpire.updated_column = 'touched';
SET subexpire.active_status = 'live';
SET subexpire.expired_status = 'lapsed';
SET subexpire.grace_period = '3d';
SHOW subexpire.grace_period;

SELECT * FROM expire_subscriptions('2026-06-10 12:00+00', dry_run => true);
SELECT * FROM expire_subscriptions('2026-06-10 12:00+00');
SELECT acct_id, state, paid_until, touched IS NOT NULL AS touched
FROM billing."Accounts" ORDER BY acct_id;
SELECT * FROM expire_subscriptions('2026-06-10 12:00+00');
-- A day later, row 3 is due as well.
SELECT * FROM expire_subscriptions('2026-06-11 00:00+00');

-- A date or a timestamp without time zone is read in the session's
-- TimeZone, as PostgreSQL's own casts read it: three days before 23:00 UTC
-- on the 11th is still the 8th in UTC but already the 9th in Auckland, so
-- row 4, paid until the 9th, is due there and not in UTC.
UPDATE billing."Accounts" SET paid_until = '2026-06-09' WHERE acct_id = 4;
SELECT * FROM expire_subscriptions('2026-06-11 23:00+00', dry_run => true);
SET timezone = 'Pacific/Auckland';
SELECT expired_count FROM expire_subscriptions('2026-06-11 23:00+00', dry_run => true);
SET timezone = 'UTC';

-- A text status column and a timestamp expiry column, no updated-at column.
CREATE TABLE public.plain_subs (
    id      bigint PRIMARY KEY,
    state   text NOT NULL,
    ends_at timestamp
);
INSERT INTO public.plain_subs VALUES
    (1, 'on',  '2026-06-01 00:00'),
    (2, 'on',  '2026-06-01 00:00:01'),
    (3, 'off', '2026-01-01 00:00');
RESET subexpire.grace_period;
SET subexpire.target_table = 'public.plain_subs';
SET subexpire.expires_column = 'ends_at';
SET subexpire.updated_column = '';
SET subexpire.active_status = 'on';
SET subexpire.expired_status = 'done';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM public.plain_subs ORDER BY id;

-- A domain over text with a check: words the domain accepts work.
CREATE DOMAIN public.sub_status AS text CHECK (VALUE IN ('on', 'done', 'off'));
ALTER TABLE public.plain_subs ALTER COLUMN state TYPE public.sub_status;
SELECT * FROM expire_subscriptions('2026-06-01 00:00:01+00');
SELECT * FROM public.plain_subs ORDER BY id;

-- A column type change between two runs of one session is picked up (the
-- prepared statement is rebuilt): varchar status, timestamptz expiry.
ALTER TABLE public.plain_subs ALTER COLUMN state TYPE varchar(10),
                              ALTER COLUMN ends_at TYPE timestamptz;
UPDATE public.plain_subs SET state = 'on';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM public.plain_subs ORDER BY id;

-- Back to the reference schema: the settings reset and the plan for the
-- reference table is used again.
RESET subexpire.target_table;
RESET subexpire.status_column;
RESET subexpire.expires_column;
RESET subexpire.updated_column;
RESET subexpire.active_status;
RESET subexpire.expired_status;
SELECT reset_subscriptions();
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');

-- A column name that needs quoting: capitals and spaces.
CREATE TABLE public."Odd Subs" ("Status Word" text, "Ends" timestamptz);
INSERT INTO public."Odd Subs" VALUES ('active', '2026-01-01'), ('active', '2027-01-01');
SET subexpire.target_table = 'public."Odd Subs"';
SET subexpire.status_column = '"Status Word"';
SET subexpire.expires_column = '"Ends"';
SET subexpire.updated_column = '';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM public."Odd Subs" ORDER BY "Ends";
RESET ALL;

DROP TABLE public.plain_subs, public."Odd Subs";
DROP DOMAIN public.sub_status;
DROP SCHEMA billing CASCADE;
TRUNCATE subexpire_runs RESTART IDENTITY;
