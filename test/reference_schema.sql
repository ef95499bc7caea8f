-- The reference schema: the table that application-side
-- expiry jobs already have, and its index.  Shared by the regression
-- suite (sql/setup.sql), the TAP tests (test/t/SubexpireTest.pm) and the
-- demo (scripts/demo.sh).
CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid()
);

CREATE TABLE public.subscriptions (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    plan       varchar(20) NOT NULL DEFAULT 'free',      -- 'free' | 'premium'
    status     varchar(20) NOT NULL DEFAULT 'inactive',  -- 'active' | 'inactive' | 'expired' | 'pending'
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_subscriptions_status_expires_at ON subscriptions (status, expires_at);
