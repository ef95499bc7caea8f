-- test/bench/schema.sql
--
-- Loads the benchmark's data, once per run of bench.sh (which passes the
-- psql variables rows, due_count and as_of).
--
-- users: one row per subscription (subscriptions.user_id is UNIQUE).
-- bench_orig: the starting state of public.subscriptions, row for row, in
-- the physical order the table is loaded in (seq).  starting_state.sql builds
-- subscriptions from it, and verify.sql compares
-- subscriptions with it after every timed run.
--
-- The mix, by a random permutation of the rows (exact counts):
--   due_count rows   active, expires_at in the past relative to as_of, all
--                    distinct, spread over the 90 days before as_of (so
--                    that "the M oldest due rows" is a cutoff of its own)
--   of the rest:
--     50 %           active, expires_at in the year after the day after
--                    as_of (none in the day after: the worker and pg_cron
--                    expire at their own now(), a little after as_of)
--     10 %           active, expires_at NULL (never expires)
--     20 %           expired, expires_at in the year before as_of
--     10 %           inactive, half with a past expires_at, half NULL
--     10 %           pending, expires_at NULL
-- Due rows sit at random places in the table, as they would in production.

\set ON_ERROR_STOP on
-- Room for the sort by random() at 10M rows.
SET work_mem = '1GB';

SELECT setseed(0.4242);

CREATE TABLE users (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email      text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO users (email, created_at)
SELECT 'user' || g || '@example.com',
       :'as_of'::timestamptz - make_interval(days => 400 + (g % 700))
FROM generate_series(1, :rows) AS g;

CREATE TABLE bench_orig AS
WITH u AS (
    SELECT id AS user_id, created_at AS user_created,
           row_number() OVER () AS seq
    FROM users
), ranked AS (
    SELECT u.*, row_number() OVER (ORDER BY random()) AS r, random() AS x
    FROM u
), kind AS (
    SELECT ranked.*,
           CASE
               WHEN r <= :due_count THEN 'due'
               ELSE CASE
                   WHEN (r - :due_count) <= 0.5 * (:rows - :due_count) THEN 'future'
                   WHEN (r - :due_count) <= 0.6 * (:rows - :due_count) THEN 'never'
                   WHEN (r - :due_count) <= 0.8 * (:rows - :due_count) THEN 'expired'
                   WHEN (r - :due_count) <= 0.9 * (:rows - :due_count) THEN 'inactive'
                   ELSE 'pending'
               END
           END AS k
    FROM ranked
)
SELECT seq,
       gen_random_uuid() AS id,
       user_id,
       (CASE WHEN k IN ('due', 'future', 'expired') THEN 'premium' ELSE 'free' END)::varchar(20) AS plan,
       (CASE k WHEN 'due' THEN 'active' WHEN 'future' THEN 'active'
               WHEN 'never' THEN 'active' ELSE k END)::varchar(20) AS status,
       CASE k
           WHEN 'due' THEN :'as_of'::timestamptz
                - make_interval(secs => r * (7776000.0 / :due_count))
           WHEN 'future' THEN :'as_of'::timestamptz
                + make_interval(secs => 86400 + x * 31536000)
           WHEN 'expired' THEN :'as_of'::timestamptz
                - make_interval(secs => 86400 + x * 31536000)
           WHEN 'inactive' THEN CASE WHEN x < 0.5 THEN :'as_of'::timestamptz
                - make_interval(secs => 86400 + x * 31536000) END
       END AS expires_at,
       user_created + interval '1 day' AS created_at,
       user_created + interval '1 day' + make_interval(secs => x * 8640000) AS updated_at
FROM kind
ORDER BY seq;

VACUUM ANALYZE users;
VACUUM ANALYZE bench_orig;

-- The one table the runs work on; starting_state.sql builds it.
CREATE TABLE subscriptions (id uuid);
