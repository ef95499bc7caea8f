--
-- privileges: who may run the job, with whose rights, and who may read
-- its history.
--
SET timezone = 'UTC';
SELECT reset_subscriptions();

CREATE ROLE regress_subexpire_app;
CREATE ROLE regress_subexpire_reader;
GRANT pg_monitor TO regress_subexpire_reader;

-- EXECUTE is revoked from PUBLIC; the caller needs rights on the table.
SELECT has_function_privilege('public', 'expire_subscriptions(timestamptz, boolean, text)', 'EXECUTE') AS public_may_execute;
SELECT prosecdef AS security_definer FROM pg_proc WHERE proname = 'expire_subscriptions';

SET ROLE regress_subexpire_app;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET ROLE;

-- With EXECUTE but without UPDATE on the table: refused, with the grant to make.
GRANT EXECUTE ON FUNCTION expire_subscriptions(timestamptz, boolean, text) TO regress_subexpire_app;
SET ROLE regress_subexpire_app;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET ROLE;

-- UPDATE without SELECT: the UPDATE must read the columns it tests, and
-- a dry run must read them too.
GRANT UPDATE ON subscriptions TO regress_subexpire_app;
SET ROLE regress_subexpire_app;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', dry_run => true);
RESET ROLE;
-- SELECT on the two columns the due search reads is enough for a dry run.
GRANT SELECT (status, expires_at) ON subscriptions TO regress_subexpire_app;
SET ROLE regress_subexpire_app;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', dry_run => true);
RESET ROLE;

-- A trigger on the table sees the table's owner as current_user, whoever
-- calls: the job runs the owner's code with the owner's rights, never with
-- the caller's (a superuser's included), as VACUUM does.
CREATE TABLE public.audit (who name, n int, old_status text, new_status text);
GRANT INSERT ON public.audit TO regress_subexpire_app;
CREATE FUNCTION public.audit_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.audit VALUES (current_user, right(NEW.id::text, 2)::int, OLD.status, NEW.status);
    RETURN NEW;
END $$;
CREATE TRIGGER audit_status AFTER UPDATE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION public.audit_status();

GRANT SELECT ON subscriptions TO regress_subexpire_app;
SET ROLE regress_subexpire_app;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
-- The caller cannot write, or even read, the run history itself ...
SELECT count(*) FROM subexpire_runs;
INSERT INTO subexpire_runs (trigger, as_of, started_at, status) VALUES ('manual', now(), now(), 'succeeded');
RESET ROLE;
SELECT * FROM public.audit ORDER BY n;
-- ... yet its run was recorded.
SELECT trigger, status, expired_count FROM subexpire_runs ORDER BY run_id;

-- Column-level UPDATE on the columns the job sets is enough.
SELECT reset_subscriptions();
REVOKE UPDATE ON subscriptions FROM regress_subexpire_app;
GRANT UPDATE (status, updated_at) ON subscriptions TO regress_subexpire_app;
SET ROLE regress_subexpire_app;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET ROLE;
REVOKE UPDATE (updated_at) ON subscriptions FROM regress_subexpire_app;
SELECT reset_subscriptions();
SET ROLE regress_subexpire_app;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
-- Only superusers may point the job elsewhere.
SET subexpire.target_table = 'public.audit';
SET subexpire.active_status = 'expired';
RESET ROLE;

-- pg_monitor members read the history; others do not.
SET ROLE regress_subexpire_reader;
SELECT count(*) > 0 AS reads_history FROM subexpire_runs;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00', dry_run => true);
RESET ROLE;

DROP TRIGGER audit_status ON subscriptions;
DROP FUNCTION public.audit_status();
DROP TABLE public.audit;
REVOKE ALL ON subscriptions FROM regress_subexpire_app;
REVOKE ALL ON FUNCTION expire_subscriptions(timestamptz, boolean, text) FROM regress_subexpire_app;
DROP ROLE regress_subexpire_app, regress_subexpire_reader;
TRUNCATE subexpire_runs RESTART IDENTITY;
