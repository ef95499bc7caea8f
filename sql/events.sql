--
-- events: the outbox of expired rows, subexpire_events, and
-- subexpire_take_events().
--
SET timezone = 'UTC';
SELECT reset_subscriptions();
DELETE FROM subexpire_runs;
DELETE FROM subexpire_events;

-- The reference schema, with events: one event for each row expired, in
-- the statement's transaction, naming the row by its primary key.
INSERT INTO subexpire_rules (rule_name, target_table, emit_events, set_columns)
VALUES ('period_end', 'public.subscriptions', true, '{"plan": "free"}');
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT e.row_key, e.rule_name, e.target_table, e.from_status, e.to_status,
       e.expires_at, e.run_id = r.run_id AS names_the_run,
       e.expired_at = r.started_at AS at_the_runs_time
FROM subexpire_events e JOIN subexpire_runs r USING (run_id)
ORDER BY e.event_id;
-- The events are exactly the rows expired.
SELECT count(*) AS expired_without_event
FROM subscriptions s
WHERE s.status = 'expired' AND s.updated_at > '2020-01-01'
  AND NOT EXISTS (SELECT FROM subexpire_events e WHERE e.row_key = jsonb_build_object('id', s.id));

-- A dry run, a run with nothing due and a run rolled back write none.
SELECT count(*) AS events_before FROM subexpire_events;
SELECT expired_count FROM expire_subscriptions('2027-01-01 00:00+00', dry_run => true);
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
BEGIN;
UPDATE subscriptions SET status = 'active' WHERE id = '00000000-0000-0000-0000-000000000003';
SELECT expired_count FROM expire_subscriptions('2026-07-01 00:00+00');
SELECT count(*) AS events_in_the_transaction FROM subexpire_events;
ROLLBACK;
SELECT count(*) AS events_after FROM subexpire_events;

-- Taking events: the oldest first, deleted when the taker commits, back
-- when it rolls back.
BEGIN;
SELECT row_key FROM subexpire_take_events(1);
ROLLBACK;
SELECT row_key FROM subexpire_take_events(1);
SELECT count(*) AS left_after_one FROM subexpire_events;
SELECT row_key FROM subexpire_take_events();
SELECT count(*) AS left_after_all FROM subexpire_events;
SELECT count(*) AS taken_from_none FROM subexpire_take_events(10);
SELECT * FROM subexpire_take_events(0);
SELECT * FROM subexpire_take_events(NULL);

-- A row a BEFORE trigger keeps due is not expired, and has no event.
SELECT reset_subscriptions();
CREATE FUNCTION keep_row_1() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = '00000000-0000-0000-0000-000000000001' THEN
        NEW.status := OLD.status;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER keep_row_1 BEFORE UPDATE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION keep_row_1();
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT row_key FROM subexpire_take_events(100);
DROP TRIGGER keep_row_1 ON subscriptions;
DROP FUNCTION keep_row_1();

-- With subexpire.log_expired on too, the same events.
SELECT reset_subscriptions();
SET subexpire.log_expired = on;
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
RESET subexpire.log_expired;
SELECT row_key FROM subexpire_take_events(100);

-- A key of several columns, a date expiry and an enum status: row_key
-- holds every key column, expires_at the date at midnight in the
-- session's time zone.
CREATE TYPE seat_state AS ENUM ('on', 'off');
CREATE TABLE seats (
    org      integer,
    seat     text,
    state    seat_state NOT NULL,
    ends_on  date,
    PRIMARY KEY (org, seat)
);
INSERT INTO seats VALUES (1, 'a', 'on', '2026-05-01'), (1, 'b', 'on', '2026-07-01'),
                         (2, 'a', 'on', '2026-05-31'), (2, 'b', 'off', '2026-05-01');
INSERT INTO subexpire_rules (rule_name, target_table, status_column, from_status, to_status,
                             expires_column, updated_column, emit_events, run_order)
VALUES ('seat_end', 'public.seats', 'state', 'on', 'off', 'ends_on', NULL, true, 200);
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00', rule_name => 'seat_end');
SELECT row_key, rule_name, target_table, from_status, to_status, expires_at
FROM subexpire_take_events(100);

-- Refused when written: emit_events on a table without a primary key,
-- and emit_events with set_columns naming the expiry column (the event
-- reports the expiry as it was).  Nothing is written.
CREATE TABLE keyless (status text, expires_at timestamptz);
INSERT INTO subexpire_rules (rule_name, target_table, updated_column, emit_events)
VALUES ('keyless', 'public.keyless', NULL, true);
INSERT INTO subexpire_rules (rule_name, target_table, emit_events, set_columns)
VALUES ('clears', 'public.subscriptions', true, '{"expires_at": null}');
UPDATE subexpire_rules SET set_columns = '{"expires_at": null}' WHERE rule_name = 'period_end';
SELECT rule_name, emit_events, set_columns FROM subexpire_rules ORDER BY rule_name;
-- A primary key dropped after the rule was written fails the run, which
-- changes nothing.
ALTER TABLE seats DROP CONSTRAINT seats_pkey;
UPDATE seats SET ends_on = '2026-05-01';
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00', rule_name => 'seat_end');
SELECT count(*) AS seats_still_on FROM seats WHERE state = 'on';

-- Monitoring: the backlog in the metrics and the health check.
DELETE FROM subexpire_rules WHERE rule_name = 'seat_end';
SELECT reset_subscriptions();
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT line FROM regexp_split_to_table(subexpire_metrics(), E'\n') AS line
WHERE line LIKE 'subscription_expiry_events_pending %';
SELECT status FROM subexpire_health() WHERE check_name = 'event_backlog';
UPDATE subexpire_events SET expired_at = now() - interval '2 hours';
SELECT status, detail LIKE '2 events wait in subexpire_events, the oldest since %, longer than subexpire.alert_event_backlog_after;%' AS says_so
FROM subexpire_health() WHERE check_name = 'event_backlog';
SET subexpire.alert_event_backlog_after = 0;
SELECT status FROM subexpire_health() WHERE check_name = 'event_backlog';
RESET subexpire.alert_event_backlog_after;
SET subexpire.alert_event_backlog_after = '-1';
SELECT count(*) FROM subexpire_take_events(100);
SELECT status, detail FROM subexpire_health() WHERE check_name = 'event_backlog';
SELECT line FROM regexp_split_to_table(subexpire_metrics(), E'\n') AS line
WHERE line LIKE 'subscription_expiry_events_% %' AND line NOT LIKE '#%';

-- Privileges: the outbox is the extension's.  A role that owns a target
-- table and may run the job can neither write events nor take them
-- without a grant; pg_monitor reads them.
CREATE ROLE regress_subexpire_owner;
CREATE TABLE owned (id integer PRIMARY KEY, status text, expires_at timestamptz, updated_at timestamptz);
ALTER TABLE owned OWNER TO regress_subexpire_owner;
INSERT INTO owned VALUES (1, 'active', '2026-05-01', NULL);
INSERT INTO subexpire_rules (rule_name, target_table, emit_events)
VALUES ('owned', 'public.owned', true);
GRANT EXECUTE ON FUNCTION expire_subscriptions(timestamptz, boolean, text) TO regress_subexpire_owner;
SET ROLE regress_subexpire_owner;
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00', rule_name => 'owned');
INSERT INTO subexpire_events (run_id, rule_name, target_table, row_key, from_status, to_status, expired_at)
VALUES (1, 'forged', 'public.owned', '{"id": 2}', 'active', 'expired', now());
SELECT * FROM subexpire_take_events();
SELECT count(*) FROM subexpire_events;
RESET ROLE;
SET ROLE pg_monitor;
SELECT row_key, rule_name FROM subexpire_events WHERE rule_name = 'owned';
RESET ROLE;
GRANT EXECUTE ON FUNCTION subexpire_take_events(integer) TO regress_subexpire_owner;
SET ROLE regress_subexpire_owner;
SELECT row_key, rule_name FROM subexpire_take_events() WHERE rule_name = 'owned';
RESET ROLE;
SELECT count(*) AS left_after_owned FROM subexpire_events WHERE rule_name = 'owned';

DELETE FROM subexpire_rules;
DELETE FROM subexpire_events;
DROP TABLE owned, seats, keyless;
DROP TYPE seat_state;
REVOKE ALL ON FUNCTION expire_subscriptions(timestamptz, boolean, text) FROM regress_subexpire_owner;
REVOKE ALL ON FUNCTION subexpire_take_events(integer) FROM regress_subexpire_owner;
DROP ROLE regress_subexpire_owner;
-- Without rules, the rule of the settings, default, writes no events.
SELECT reset_subscriptions();
SELECT expired_count FROM expire_subscriptions('2026-06-01 00:00+00');
SELECT count(*) AS events_of_default FROM subexpire_events;
SELECT reset_subscriptions();
