--
-- setup: the extension and the reference schema that the other files use.
--
SET timezone = 'UTC';
CREATE EXTENSION subexpire;

\i test/reference_schema.sql

-- One row in every state, relative to the cutoff 2026-06-01 00:00 UTC that
-- the tests use.  Row n has id ...0n and user ...1n; updated_at starts at
-- 2020-01-01 so that a changed one shows.
CREATE FUNCTION reset_subscriptions() RETURNS void LANGUAGE sql AS $$
    DELETE FROM subscriptions;
    DELETE FROM users;
    INSERT INTO users (id)
        SELECT ('00000000-0000-0000-0000-0000000001' || lpad(n::text, 2, '0'))::uuid
        FROM generate_series(1, 8) AS n;
    INSERT INTO subscriptions (id, user_id, plan, status, expires_at, created_at, updated_at)
    SELECT ('00000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid,
           ('00000000-0000-0000-0000-0000000001' || lpad(n::text, 2, '0'))::uuid,
           plan, status, expires_at::timestamptz,
           '2019-01-01 00:00+00', '2020-01-01 00:00+00'
    FROM (VALUES
        (1, 'premium', 'active',   '2026-05-01 00:00+00'),  -- due
        (2, 'premium', 'active',   '2026-06-01 00:00+00'),  -- exactly at the cutoff: due
        (3, 'free',    'active',   '2026-06-01 00:00:01+00'), -- one second after
        (4, 'free',    'active',   NULL),                   -- never expires
        (5, 'premium', 'expired',  '2026-04-01 00:00+00'),  -- already expired
        (6, 'free',    'inactive', '2026-04-01 00:00+00'),
        (7, 'premium', 'pending',  '2026-04-01 00:00+00'),
        (8, 'premium', 'active',   '2099-01-01 00:00+00')   -- far future
    ) AS v (n, plan, status, expires_at);
$$;

-- The rows, one line each, by their number.
CREATE VIEW subscription_states AS
    SELECT right(id::text, 2)::int AS n, plan, status, expires_at,
           updated_at <> '2020-01-01 00:00+00' AS touched
    FROM subscriptions ORDER BY 1;

SELECT reset_subscriptions();
SELECT * FROM subscription_states;
