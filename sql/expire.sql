--
-- expire: expire_subscriptions() on the reference schema.
--
SET timezone = 'UTC';
SELECT reset_subscriptions();
CREATE TEMP TABLE before AS SELECT * FROM subscriptions;

-- A dry run counts the due rows and changes nothing, not even the history.
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', dry_run => true);
SELECT count(*) AS changed FROM subscriptions s JOIN before b USING (id)
WHERE (s.*) IS DISTINCT FROM (b.*);
SELECT count(*) AS runs FROM subexpire_runs;

-- The run expires rows 1 and 2 (due, and exactly at the cutoff) and
-- returns the cutoff it used.
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM subscription_states;

-- Nothing but status and updated_at changed, and only in the expired rows.
SELECT right(s.id::text, 2)::int AS n
FROM subscriptions s JOIN before b USING (id)
WHERE (s.id, s.user_id, s.plan, s.expires_at, s.created_at)
      IS DISTINCT FROM (b.id, b.user_id, b.plan, b.expires_at, b.created_at)
   OR (s.status IS DISTINCT FROM b.status OR s.updated_at IS DISTINCT FROM b.updated_at)
      <> (s.status = 'expired' AND b.status = 'active');

-- One run record, written in the same transaction, with the count.
SELECT run_id, trigger, as_of, status, expired_count, skipped_locked, error,
       finished_at >= started_at AS finished_after_start
FROM subexpire_runs ORDER BY run_id;

-- updated_at is the time of the run.
SELECT bool_and(s.updated_at = r.started_at) AS updated_at_is_run_time
FROM subscriptions s, subexpire_runs r
WHERE s.status = 'expired' AND s.updated_at <> '2020-01-01 00:00+00' AND r.run_id = 1;

-- Running it again right away expires nothing.
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');

-- One second later, row 3 is due.
SELECT * FROM expire_subscriptions('2026-06-01 00:00:01+00');
SELECT n, status FROM subscription_states WHERE n = 3;

-- A rolled-back run leaves neither changes nor a record.
SELECT reset_subscriptions();
BEGIN;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
ROLLBACK;
-- (row 5 was expired before; the three records are the runs above)
SELECT count(*) FILTER (WHERE status = 'expired') AS expired_rows FROM subscriptions;
SELECT count(*) AS runs FROM subexpire_runs;

-- As written in the README: the default cutoff is now(), and rows 1 to 3
-- (due in 2026) are due by now, row 8 (2099) is not.
SELECT expired_count FROM expire_subscriptions();
SELECT n, status FROM subscription_states WHERE status = 'expired' ORDER BY n;
SELECT processed_at = now() AS cutoff_is_now FROM expire_subscriptions();

-- The result is one row, also when called in the FROM clause with a column list.
SELECT r.expired_count FROM expire_subscriptions('2030-01-01 00:00+00') AS r;

TRUNCATE subexpire_runs RESTART IDENTITY;
