--
-- plan: the due-row search is an index range scan when an index serves it,
-- never a scan of the whole table.  The table's scan counters for the
-- current transaction, read before and after a run in one transaction,
-- tell which scans the run made (pending counters of earlier transactions
-- may be in them too, hence the difference).
--
SET timezone = 'UTC';
SELECT reset_subscriptions();

-- 20,000 more rows: active ones expiring from 2030 on, and expired ones.
INSERT INTO users (id) SELECT gen_random_uuid() FROM generate_series(1, 20000);
INSERT INTO subscriptions (user_id, status, expires_at)
SELECT id, CASE WHEN random() < 0.5 THEN 'active' ELSE 'expired' END,
       '2030-01-01 00:00+00'::timestamptz + random() * interval '3 years'
FROM users WHERE id::text NOT LIKE '00000000-%';
ANALYZE subscriptions;

CREATE FUNCTION scan_counts(OUT seq bigint, OUT idx bigint) LANGUAGE sql AS $$
    SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables
    WHERE relid = 'public.subscriptions'::regclass
$$;

-- Nothing due, with the reference schema's (status, expires_at) index.
BEGIN;
SELECT seq AS seq0, idx AS idx0 FROM scan_counts() \gset
SELECT * FROM expire_subscriptions('2026-01-01 00:00+00');
SELECT seq - :seq0 AS seq_scans, idx > :idx0 AS used_an_index FROM scan_counts();
ROLLBACK;
BEGIN;
SELECT seq AS seq0, idx AS idx0 FROM scan_counts() \gset
SELECT * FROM expire_subscriptions('2026-01-01 00:00+00', dry_run => true);
SELECT seq - :seq0 AS seq_scans, idx > :idx0 AS used_an_index FROM scan_counts();
ROLLBACK;

-- A few due: still the index.
BEGIN;
SELECT seq AS seq0, idx AS idx0 FROM scan_counts() \gset
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT seq - :seq0 AS seq_scans, idx > :idx0 AS used_an_index FROM scan_counts();
ROLLBACK;

-- A partial index on the expiry column of active rows serves as well.
DROP INDEX ix_subscriptions_status_expires_at;
CREATE INDEX subscriptions_active_expires_at ON subscriptions (expires_at) WHERE status = 'active';
BEGIN;
SELECT seq AS seq0, idx AS idx0 FROM scan_counts() \gset
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT seq - :seq0 AS seq_scans, idx > :idx0 AS used_an_index FROM scan_counts();
ROLLBACK;

-- With no index on the expiry column, every run scans the table.
DROP INDEX subscriptions_active_expires_at;
BEGIN;
SELECT seq AS seq0, idx AS idx0 FROM scan_counts() \gset
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT seq > :seq0 AS scanned_the_table FROM scan_counts();
ROLLBACK;

CREATE INDEX ix_subscriptions_status_expires_at ON subscriptions (status, expires_at);
DROP FUNCTION scan_counts();
SELECT reset_subscriptions();
