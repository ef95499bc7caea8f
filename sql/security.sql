--
-- security: neither a hostile search_path nor a setting shaped like SQL
-- changes what a run does.
--
SET timezone = 'UTC';
SELECT reset_subscriptions();

-- An "=" and a "<=" that are always true, for the very types of the
-- reference schema, in a schema searched before pg_catalog; and a table of
-- the same name.  A statement that used unqualified operators or names
-- would expire every row of the wrong table.
CREATE SCHEMA evil;
CREATE FUNCTION evil.always(varchar, varchar) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION evil.always(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR evil.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = evil.always);
CREATE OPERATOR evil.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.always);
CREATE TABLE evil.subscriptions (LIKE public.subscriptions);
CREATE TABLE evil.subexpire_runs (LIKE public.subexpire_runs);
-- They would work, unqualified:
SET search_path = evil, pg_catalog, public;
SELECT count(*) AS evil_matches FROM public.subscriptions
WHERE status = 'active'::varchar AND expires_at <= '2000-01-01'::timestamptz;

SELECT * FROM public.expire_subscriptions('2026-06-01 00:00+00');
RESET search_path;
SELECT n, status FROM subscription_states;
SELECT count(*) AS runs_in_evil FROM evil.subexpire_runs;
SELECT count(*) AS runs_recorded FROM subexpire_runs;
DROP SCHEMA evil CASCADE;

-- Settings shaped like SQL are refused when set ...
SET subexpire.target_table = 'public.subscriptions; DROP TABLE users';
SET subexpire.target_table = 'public.subscriptions WHERE true';
SET subexpire.status_column = 'status = status --';
SET subexpire.expires_column = 'expires_at) OR (true';
SET subexpire.updated_column = 'updated_at = now(), plan';
-- ... or, being values, are only ever compared as values.
SELECT reset_subscriptions();
SET subexpire.active_status = $$active' OR '1'='1$$;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SET subexpire.active_status = $$active"; --$$;
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.active_status;
SELECT count(*) FILTER (WHERE status = 'expired') AS expired, count(*) AS total FROM subscriptions;
SELECT count(*) AS users_left FROM users;

-- A quoted name is taken as a name, not as SQL: this table exists.
CREATE TABLE public."subscriptions; DROP TABLE users" (status text, expires_at timestamptz, updated_at timestamptz);
INSERT INTO public."subscriptions; DROP TABLE users" VALUES ('active', '2026-01-01', NULL);
SET subexpire.target_table = 'public."subscriptions; DROP TABLE users"';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.target_table;
DROP TABLE public."subscriptions; DROP TABLE users";
SELECT count(*) AS users_left FROM users;

-- Unicode identifiers work when they name a real table.
CREATE SCHEMA "facturación";
CREATE TABLE "facturación"."Abonnements €" ("statut" text, "échéance" timestamptz, "mis à jour" timestamptz);
INSERT INTO "facturación"."Abonnements €" VALUES ('actif', '2026-01-01', NULL), ('actif', '2027-01-01', NULL);
SET subexpire.target_table = '"facturación"."Abonnements €"';
SET subexpire.status_column = 'statut';
SET subexpire.expires_column = '"échéance"';
SET subexpire.updated_column = '"mis à jour"';
SET subexpire.active_status = 'actif';
SET subexpire.expired_status = 'expiré';
SELECT * FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT statut, "échéance", "mis à jour" IS NOT NULL AS updated FROM "facturación"."Abonnements €" ORDER BY 2;
RESET ALL;
DROP SCHEMA "facturación" CASCADE;
TRUNCATE subexpire_runs RESTART IDENTITY;
