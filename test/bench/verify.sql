-- test/bench/verify.sql
--
-- After a timed run: compares public.subscriptions with its starting state
-- (bench_orig) and prints one line, "changed expired_ok wrong other":
--   changed     rows whose status differs from the starting state
--   expired_ok  rows due at :as_of that are now 'expired' with a new
--               updated_at
--   wrong       rows not due at :as_of whose status or updated_at changed
--   other       rows missing, added, or changed in another column
-- bench.sh requires changed = expired_ok = the number due, wrong = other = 0.

\set ON_ERROR_STOP on

SELECT count(*) FILTER (WHERE s.status IS DISTINCT FROM o.status) AS changed,
       count(*) FILTER (WHERE o.status = 'active'
                          AND o.expires_at <= :'as_of'::timestamptz
                          AND s.status = 'expired'
                          AND s.updated_at IS DISTINCT FROM o.updated_at) AS expired_ok,
       count(*) FILTER (WHERE (s.status IS DISTINCT FROM o.status
                               OR s.updated_at IS DISTINCT FROM o.updated_at)
                          AND NOT coalesce(o.status = 'active'
                                   AND o.expires_at <= :'as_of'::timestamptz,
                                   false)) AS wrong,
       count(*) FILTER (WHERE s.id IS NULL OR o.id IS NULL
                          OR s.user_id IS DISTINCT FROM o.user_id
                          OR s.plan IS DISTINCT FROM o.plan
                          OR s.expires_at IS DISTINCT FROM o.expires_at
                          OR s.created_at IS DISTINCT FROM o.created_at) AS other
FROM public.subscriptions AS s
FULL JOIN bench_orig AS o ON o.id = s.id \gset
\echo :changed :expired_ok :wrong :other
