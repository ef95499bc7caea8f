--
-- monitoring: statistics, metrics, health checks, history retention, and
-- who may read them.
--
SET timezone = 'UTC';
SELECT reset_subscriptions();
TRUNCATE subexpire_runs RESTART IDENTITY;
SELECT subexpire_stats_reset();

-- Nothing yet.
SELECT runs_total, runs_failed, expired_total, last_run_started_at,
       last_error, last_run_duration, last_run_expired, last_run_longest_batch,
       stats_reset <= now() AS reset_known
FROM subexpire_stats;

-- A manual run is counted when its transaction commits.
BEGIN;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT runs_total FROM subexpire_stats;
COMMIT;
SELECT runs_total, runs_failed, expired_total, last_run_expired,
       last_success_at IS NOT NULL AS succeeded, last_failure_at,
       last_expiry_at = last_success_at AS expired_rows,
       last_run_duration >= interval '0' AS timed
FROM subexpire_stats;
-- Row 3 expires one second after the cutoff: by now it is due.
SELECT due_now FROM subexpire_stats;
-- A manual run's transaction is its caller's: no longest batch, in its
-- record or in the statistics.
SELECT "trigger", expired_count, longest_batch FROM subexpire_runs;
SELECT last_run_longest_batch FROM subexpire_stats;

-- A run made to fail by a trigger: its transaction rolls back, yet the
-- failure, its time and its message show.  (An error about the whole
-- statement, not about a row: rows that fail on their own are left out,
-- and the run goes on; see sql/failed_rows.sql.)
SELECT reset_subscriptions();
CREATE FUNCTION public.refuse_expiry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'billing is frozen' USING ERRCODE = 'object_not_in_prerequisite_state';
END $$;
CREATE TRIGGER refuse_expiry BEFORE UPDATE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION public.refuse_expiry();
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT runs_total, runs_failed, expired_total, last_error,
       last_failure_at > last_success_at AS failed_last
FROM subexpire_stats;
SELECT check_name, status FROM subexpire_health() WHERE check_name = 'last_run';
SELECT count(*) AS runs_recorded FROM subexpire_runs;
DROP TRIGGER refuse_expiry ON subscriptions;
DROP FUNCTION public.refuse_expiry();

-- A run whose caller rolls back counts as failed: nothing stayed expired.
BEGIN;
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
ROLLBACK;
SELECT runs_total, runs_failed, expired_total, last_error FROM subexpire_stats;

-- The next run succeeds, and the health check turns back to ok.
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT check_name, status FROM subexpire_health() WHERE check_name = 'last_run';

-- Metrics, in Prometheus text format (timestamps and durations vary, so
-- only their presence is shown).
SELECT regexp_replace(line, '(_timestamp_seconds|_sum|le="[0-9.]+"\}) [0-9.e+]+$', '\1 <n>') AS line
FROM regexp_split_to_table(subexpire_metrics(), E'\n') AS line
WHERE line <> '';

-- The histogram's buckets are cumulative and end at +Inf with every run.
SELECT count(*) AS buckets, bool_and(runs <= (SELECT runs_total FROM subexpire_stats)) AS cumulative,
       max(runs) FILTER (WHERE le = 'infinity') AS all_runs
FROM subexpire_duration_buckets();

-- Health: the thresholds.
SET subexpire.alert_max_expired = 1;
SELECT check_name, status, detail FROM subexpire_health()
WHERE check_name IN ('excessive_expiry', 'index');
RESET subexpire.alert_max_expired;
-- Without an index on the expiry column, the due-row search scans the table.
DROP INDEX ix_subscriptions_status_expires_at;
SELECT check_name, status, detail FROM subexpire_health() WHERE check_name = 'index';
CREATE INDEX subscriptions_active_expires_at ON subscriptions (expires_at) WHERE status = 'active';
SELECT check_name, status FROM subexpire_health() WHERE check_name = 'index';
DROP INDEX subscriptions_active_expires_at;
CREATE INDEX ix_subscriptions_status_expires_at ON subscriptions (status, expires_at);
-- A target that does not exist is reported, not raised.
SET subexpire.target_table = 'public.no_such_table';
SELECT check_name, status, detail FROM subexpire_health() WHERE check_name = 'index';
SELECT due_now FROM subexpire_stats;
RESET subexpire.target_table;
-- No expiry for longer than alert_no_expiry_after.
SET subexpire.alert_no_expiry_after = '1s';
SELECT pg_sleep(1.1);
SELECT check_name, status FROM subexpire_health() WHERE check_name = 'no_expiry';
RESET subexpire.alert_no_expiry_after;
SELECT check_name FROM subexpire_health();

-- History retention: runs older than subexpire.history_retention go.
INSERT INTO subexpire_runs (trigger, as_of, started_at, finished_at, status)
VALUES ('manual', '2020-01-01', '2020-01-01', '2020-01-01', 'succeeded'),
       ('schedule', now() - interval '89 days', now() - interval '89 days', now() - interval '89 days', 'succeeded');
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT count(*) FILTER (WHERE started_at < '2021-01-01') AS old_left,
       count(*) FILTER (WHERE started_at < now() - interval '88 days') AS recent_old_kept
FROM subexpire_runs;

-- Access: pg_monitor members read everything; others nothing.
CREATE ROLE regress_subexpire_watcher IN ROLE pg_monitor;
CREATE ROLE regress_subexpire_nobody;
SET ROLE regress_subexpire_watcher;
SELECT runs_total > 0 AS reads_stats, due_now IS NOT NULL AS sees_due FROM subexpire_stats;
SELECT count(*) > 0 AS reads_runs FROM subexpire_runs;
SELECT length(subexpire_metrics()) > 0 AS reads_metrics;
SELECT count(*) AS checks FROM subexpire_health();
SELECT subexpire_stats_reset();
RESET ROLE;
SET ROLE regress_subexpire_nobody;
SELECT * FROM subexpire_stats;
SELECT subexpire_metrics();
SELECT * FROM subexpire_health();
SELECT * FROM subexpire_runs;
RESET ROLE;
DROP ROLE regress_subexpire_watcher, regress_subexpire_nobody;

-- Reset.
SELECT subexpire_stats_reset();
SELECT runs_total, runs_failed, expired_total, last_error FROM subexpire_stats;
SELECT reset_subscriptions();
TRUNCATE subexpire_runs RESTART IDENTITY;
