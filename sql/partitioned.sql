--
-- partitioned: a partitioned target table, and one with inheritance children.
--
SET timezone = 'UTC';

CREATE TABLE public.subs_by_plan (
    id         bigint NOT NULL,
    plan       text NOT NULL,
    status     text NOT NULL,
    expires_at timestamptz,
    updated_at timestamptz
) PARTITION BY LIST (plan);
CREATE TABLE public.subs_free PARTITION OF public.subs_by_plan FOR VALUES IN ('free');
CREATE TABLE public.subs_premium PARTITION OF public.subs_by_plan
    FOR VALUES IN ('premium') PARTITION BY RANGE (expires_at);
CREATE TABLE public.subs_premium_2026 PARTITION OF public.subs_premium
    FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE public.subs_premium_other PARTITION OF public.subs_premium DEFAULT;
CREATE INDEX ON public.subs_by_plan (status, expires_at);

INSERT INTO public.subs_by_plan
SELECT n, CASE WHEN n % 2 = 0 THEN 'free' ELSE 'premium' END,
       CASE WHEN n % 5 = 0 THEN 'inactive' ELSE 'active' END,
       CASE WHEN n % 7 = 0 THEN NULL
            ELSE '2026-05-01 00:00+00'::timestamptz + n * interval '1 day' END,
       NULL
FROM generate_series(1, 100) AS n;

SET subexpire.target_table = 'public.subs_by_plan';

-- What is due, partition by partition, computed independently.
SELECT tableoid::regclass AS partition, count(*) AS due
FROM public.subs_by_plan
WHERE status = 'active' AND expires_at <= '2026-06-15 00:00+00'
GROUP BY 1 ORDER BY 1;

SELECT * FROM expire_subscriptions('2026-06-15 00:00+00', dry_run => true);
SELECT * FROM expire_subscriptions('2026-06-15 00:00+00');
SELECT tableoid::regclass AS partition, status, count(*),
       count(updated_at) AS with_updated_at
FROM public.subs_by_plan GROUP BY 1, 2 ORDER BY 1, 2;
SELECT * FROM expire_subscriptions('2026-06-15 00:00+00');

-- Across the range boundary: rows of 2027 live in the default partition.
SELECT * FROM expire_subscriptions('2027-12-31 00:00+00');
SELECT count(*) AS still_active_and_due FROM public.subs_by_plan
WHERE status = 'active' AND expires_at <= '2027-12-31 00:00+00';

-- Legacy inheritance: the parent's rows and its children's.
CREATE TABLE public.subs_parent (status text, expires_at timestamptz, updated_at timestamptz);
CREATE TABLE public.subs_child () INHERITS (public.subs_parent);
INSERT INTO public.subs_parent VALUES ('active', '2026-01-01', NULL);
INSERT INTO public.subs_child VALUES ('active', '2026-01-01', NULL), ('active', '2099-01-01', NULL);
SET subexpire.target_table = 'public.subs_parent';
SELECT * FROM expire_subscriptions('2026-06-15 00:00+00');
SELECT tableoid::regclass AS tab, status FROM public.subs_parent ORDER BY 1, 2;

-- Partitioned by expiry: the partitions whose range lies after the cutoff
-- are pruned, not read; the others are read through their indexes, or
-- sequentially when all their rows are due (the planner's choice).
CREATE TABLE public.subs_by_expiry (
    id         bigint NOT NULL,
    status     text NOT NULL,
    expires_at timestamptz,
    updated_at timestamptz
) PARTITION BY RANGE (expires_at);
CREATE TABLE public.subs_by_expiry_2025 PARTITION OF public.subs_by_expiry
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.subs_by_expiry_2026 PARTITION OF public.subs_by_expiry
    FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE public.subs_by_expiry_2027 PARTITION OF public.subs_by_expiry
    FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
CREATE INDEX ON public.subs_by_expiry (status, expires_at);
INSERT INTO public.subs_by_expiry
SELECT n, 'active', '2025-01-01 00:00+00'::timestamptz + n * interval '1 hour', NULL
FROM generate_series(0, 3 * 8760 - 1) AS n;
ANALYZE public.subs_by_expiry;
SET subexpire.target_table = 'public.subs_by_expiry';
CREATE FUNCTION partition_scans(OUT relname name, OUT seq bigint, OUT idx bigint)
RETURNS SETOF record LANGUAGE sql AS $$
    SELECT relname, seq_scan, coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables
    WHERE relname LIKE 'subs_by_expiry_%'
$$;
BEGIN;
CREATE TEMP TABLE scans_before AS SELECT * FROM partition_scans();
SELECT * FROM expire_subscriptions('2026-03-01 00:00+00');
SELECT relname AS partition, coalesce(p.seq, 0) - coalesce(b.seq, 0) AS seq_scans,
       coalesce(p.idx, 0) - coalesce(b.idx, 0) > 0 AS read_through_its_index
FROM (SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'public.subs_by_expiry'::regclass) AS parts
     LEFT JOIN partition_scans() AS p USING (relname)
     LEFT JOIN scans_before AS b USING (relname)
ORDER BY 1;
ROLLBACK;

RESET subexpire.target_table;
DROP FUNCTION partition_scans();
DROP TABLE public.subs_by_plan, public.subs_parent, public.subs_by_expiry CASCADE;
TRUNCATE subexpire_runs RESTART IDENTITY;
