-- test/bench/starting_state.sql
--
-- Builds public.subscriptions in its starting state from bench_orig, row
-- for row and in the same physical order, once, in the database bench_start
-- that bench.sh copies before every timed run: every timed run starts from
-- the same table, the same indexes, no dead rows and fresh statistics.
--
-- The table is the reference schema's (test/reference_schema.sql); the
-- constraints and the index are added after the load (same names, same
-- definitions as the CREATE TABLE there would give), which is faster than
-- loading into indexes.
--
-- Also the function that case (p) of bench.sh has pg_cron call: what a
-- user writes instead of subexpire, the set-based UPDATE in PL/pgSQL.

\set ON_ERROR_STOP on
SET maintenance_work_mem = '1GB';

BEGIN;
DROP TABLE IF EXISTS public.subscriptions;
CREATE TABLE public.subscriptions (
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL,
    plan       varchar(20) NOT NULL DEFAULT 'free',      -- 'free' | 'premium'
    status     varchar(20) NOT NULL DEFAULT 'inactive',  -- 'active' | 'inactive' | 'expired' | 'pending'
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO public.subscriptions
SELECT id, user_id, plan, status, expires_at, created_at, updated_at
FROM bench_orig
ORDER BY seq;
ALTER TABLE public.subscriptions
    ADD PRIMARY KEY (id),
    ADD UNIQUE (user_id),
    ADD FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
CREATE INDEX ix_subscriptions_status_expires_at
    ON public.subscriptions (status, expires_at);
COMMIT;

VACUUM ANALYZE public.subscriptions;

CREATE FUNCTION expire_due_subscriptions() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    expired bigint;
BEGIN
    UPDATE subscriptions SET status = 'expired', updated_at = now()
    WHERE status = 'active' AND expires_at <= now();
    GET DIAGNOSTICS expired = ROW_COUNT;
    RETURN expired;
END
$$;
