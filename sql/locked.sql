--
-- locked: due rows that another transaction holds locked.  A prepared
-- transaction holds its row locks until it is committed or rolled back,
-- which lets one session show what a run does around them.
--
SET timezone = 'UTC';
SET subexpire.lock_wait = '10ms';
SELECT reset_subscriptions();

-- Row 1 is held FOR UPDATE.  The run expires row 2, leaves row 1 active,
-- says so, and records it.
BEGIN;
SELECT status FROM subscriptions WHERE id = '00000000-0000-0000-0000-000000000001' FOR UPDATE;
PREPARE TRANSACTION 'holds_row_1';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT n, status, touched FROM subscription_states WHERE n <= 3;
SELECT expired_count, skipped_locked FROM subexpire_runs ORDER BY run_id DESC LIMIT 1;
-- Once the lock is gone, the next run expires it.
COMMIT PREPARED 'holds_row_1';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT expired_count, skipped_locked FROM subexpire_runs ORDER BY run_id DESC LIMIT 1;

-- A cancellation not yet committed: the run leaves the row; the
-- cancellation rolls back; the next run expires it.
SELECT reset_subscriptions();
BEGIN;
UPDATE subscriptions SET status = 'inactive' WHERE id = '00000000-0000-0000-0000-000000000002';
PREPARE TRANSACTION 'cancels_row_2';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
ROLLBACK PREPARED 'cancels_row_2';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT n, status FROM subscription_states WHERE n <= 2;

-- A renewal not yet committed: the run leaves the row; once the renewal
-- commits, the row is no longer due, and the next run leaves it too.
SELECT reset_subscriptions();
BEGIN;
UPDATE subscriptions SET expires_at = '2027-06-01 00:00+00' WHERE id = '00000000-0000-0000-0000-000000000001';
PREPARE TRANSACTION 'renews_row_1';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
COMMIT PREPARED 'renews_row_1';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT n, status, expires_at FROM subscription_states WHERE n <= 2;

-- A foreign-key check's lock (FOR KEY SHARE) does not conflict with the
-- run: nothing is skipped.
SELECT reset_subscriptions();
BEGIN;
SELECT status FROM subscriptions WHERE id = '00000000-0000-0000-0000-000000000001' FOR KEY SHARE;
PREPARE TRANSACTION 'key_share_row_1';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT expired_count, skipped_locked FROM subexpire_runs ORDER BY run_id DESC LIMIT 1;
COMMIT PREPARED 'key_share_row_1';

-- A partitioned table: one locked row in one partition does not keep the
-- run from the other rows of that partition or of the others.
CREATE TABLE public.subs_parted (id int, status text, expires_at timestamptz, updated_at timestamptz)
    PARTITION BY RANGE (id);
CREATE TABLE public.subs_parted_1 PARTITION OF public.subs_parted FOR VALUES FROM (1) TO (100);
CREATE TABLE public.subs_parted_2 PARTITION OF public.subs_parted FOR VALUES FROM (100) TO (200);
INSERT INTO public.subs_parted
SELECT n, 'active', '2026-01-01 00:00+00', NULL FROM generate_series(1, 199, 11) AS n;
SET subexpire.target_table = 'public.subs_parted';
BEGIN;
SELECT id FROM public.subs_parted WHERE id = 12 FOR NO KEY UPDATE;
PREPARE TRANSACTION 'holds_partition_row';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT tableoid::regclass AS partition, status, count(*), count(updated_at) AS with_updated_at
FROM public.subs_parted GROUP BY 1, 2 ORDER BY 1, 2;
COMMIT PREPARED 'holds_partition_row';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT expired_count, skipped_locked FROM subexpire_runs ORDER BY run_id DESC LIMIT 2;
RESET subexpire.target_table;
DROP TABLE public.subs_parted;

-- A table partitioned by status: expiring moves a row to another
-- partition, which the locked-rows path does through the partitioned
-- table, so that PostgreSQL routes it.
CREATE TABLE public.subs_by_status (id int, status text, expires_at timestamptz, updated_at timestamptz)
    PARTITION BY LIST (status);
CREATE TABLE public.subs_status_active PARTITION OF public.subs_by_status FOR VALUES IN ('active');
CREATE TABLE public.subs_status_other PARTITION OF public.subs_by_status DEFAULT;
INSERT INTO public.subs_by_status
SELECT n, 'active', '2026-01-01 00:00+00', NULL FROM generate_series(1, 5) AS n;
SET subexpire.target_table = 'public.subs_by_status';
BEGIN;
SELECT id FROM public.subs_by_status WHERE id = 3 FOR UPDATE;
PREPARE TRANSACTION 'holds_status_row';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
COMMIT PREPARED 'holds_status_row';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT tableoid::regclass AS partition, status, count(*), count(updated_at) AS with_updated_at
FROM public.subs_by_status GROUP BY 1, 2 ORDER BY 1, 2;
RESET subexpire.target_table;
DROP TABLE public.subs_by_status;

-- The max_expired_per_run guard counts what is due, locked or not.
SELECT reset_subscriptions();
SET subexpire.max_expired_per_run = 1;
BEGIN;
SELECT status FROM subscriptions WHERE id = '00000000-0000-0000-0000-000000000001' FOR UPDATE;
PREPARE TRANSACTION 'holds_row_1_again';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
COMMIT PREPARED 'holds_row_1_again';
RESET subexpire.max_expired_per_run;

RESET subexpire.lock_wait;
SELECT reset_subscriptions();
TRUNCATE subexpire_runs RESTART IDENTITY;
