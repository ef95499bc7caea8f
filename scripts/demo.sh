#!/usr/bin/env bash
# scripts/demo.sh: see subexpire expire subscriptions, on a throwaway cluster.
#
# Installs what it needs (Debian packages), builds and installs the
# extension, starts a PostgreSQL cluster of its own in a temporary
# directory (on a unix socket there, nothing on the network), creates the
# reference schema with sample subscriptions, and runs the job: a dry run,
# the run, a second run that finds nothing left, the background worker
# expiring subscriptions that fall due, on a 2-second schedule, and three
# lifecycle rules (a trial, a paid period and a grace period that end) in
# one run, the last writing an event for each row it expires, which a
# consumer takes.  The cluster is
# removed at the end; pass --keep to keep it and get the psql command to
# connect to it.  Works as root or as a user with sudo.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/common.sh"

keep=no
[ "${1:-}" = "--keep" ] && keep=yes

ensure_packages
build_and_install

bindir=/usr/lib/postgresql/$PG_MAJOR/bin
dir=$(mktemp -d /tmp/subexpire-demo.XXXXXX)
port=$(free_port)
[ "$(id -u)" -eq 0 ] && chown postgres: "$dir"

cleanup() {
    if [ "$keep" = no ]; then
        as_pg_user "$bindir/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
        rm -rf "$dir"
    fi
}
trap cleanup EXIT

echo "== starting a throwaway cluster in $dir (port $port, unix socket only)"
as_pg_user "$bindir/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
port = $port
shared_preload_libraries = 'subexpire'
timezone = 'UTC'
CONF
[ "$(id -u)" -eq 0 ] && chown postgres: "$dir/data/postgresql.conf"
as_pg_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null

psql_demo() {
    as_pg_user "$bindir/psql" -X -q -h "$dir" -p "$port" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 -P footer=off "$@"
}

echo "== the reference schema, with 1,000 sample subscriptions"
psql_demo <"$ROOT/test/reference_schema.sql"
psql_demo <<'SQL'
CREATE EXTENSION subexpire;
ALTER TABLE users ADD COLUMN email text;

-- Of 1,000 users: 600 active (150 of them past their expiry), 100 active
-- with no expiry, 150 already expired, 100 inactive, 50 pending.
WITH u AS (
    INSERT INTO users (email)
    SELECT 'user' || n || '@example.com' FROM generate_series(1, 1000) AS n
    RETURNING id, right(email, -4) AS rest
), numbered AS (
    SELECT id, split_part(rest, '@', 1)::int AS n FROM u
)
INSERT INTO subscriptions (user_id, plan, status, expires_at, created_at, updated_at)
SELECT id,
       CASE WHEN n % 3 = 0 THEN 'premium' ELSE 'free' END,
       CASE WHEN n <= 700 THEN 'active' WHEN n <= 850 THEN 'expired'
            WHEN n <= 950 THEN 'inactive' ELSE 'pending' END,
       CASE WHEN n <= 150 THEN now() - n * interval '2 hours'        -- due
            WHEN n <= 600 THEN now() + n * interval '1 hour'         -- later
            WHEN n <= 700 THEN NULL                                  -- never
            ELSE now() - interval '30 days' END,
       now() - interval '1 year', now() - interval '1 year'
FROM numbered;
SQL

psql_demo -c "SELECT status, count(*) AS subscriptions,
                     count(*) FILTER (WHERE status = 'active' AND expires_at <= now()) AS due_now
              FROM subscriptions GROUP BY status ORDER BY status"

echo "== a dry run counts what is due and changes nothing"
psql_demo -c "SELECT * FROM expire_subscriptions(dry_run => true)"

echo "== the job: SELECT * FROM expire_subscriptions();"
psql_demo -c "SELECT * FROM expire_subscriptions()"
psql_demo -c "SELECT status, count(*) AS subscriptions FROM subscriptions GROUP BY status ORDER BY status"

echo "== run again right away: nothing left to expire"
psql_demo -c "SELECT * FROM expire_subscriptions()"

echo "== every run leaves a record"
psql_demo -c "SELECT run_id, trigger, status, expired_count, skipped_locked,
                     finished_at - started_at AS duration
              FROM subexpire_runs ORDER BY run_id"

echo "== the background worker: every 2 seconds for this demo (the default is 02:00 daily)"
psql_demo -c "ALTER SYSTEM SET subexpire.schedule = '2 seconds'" -c "SELECT pg_reload_conf()" >/dev/null
psql_demo -c "SELECT * FROM subexpire_next_runs(count => 3)"
echo "== 40 more subscriptions fall due; the worker expires them"
psql_demo -c "UPDATE subscriptions SET expires_at = now() - interval '1 minute'
              WHERE id IN (SELECT id FROM subscriptions WHERE status = 'active'
                           AND expires_at > now() ORDER BY expires_at LIMIT 40)"
for _ in $(seq 1 100); do
    done_runs=$(psql_demo -At -c "SELECT count(*) FROM subexpire_runs
                                  WHERE trigger = 'schedule' AND expired_count > 0")
    [ "$done_runs" -gt 0 ] && break
    sleep 0.2
done
psql_demo -c "SELECT run_id, trigger, status, expired_count, as_of
              FROM subexpire_runs WHERE trigger <> 'manual' AND expired_count > 0 ORDER BY run_id"
psql_demo -c "SELECT status, count(*) AS subscriptions FROM subscriptions GROUP BY status ORDER BY status"

echo "== lifecycle rules: a trial that ends, a paid period that ends, a grace period that ends"
psql_demo -c "ALTER SYSTEM RESET subexpire.schedule" -c "SELECT pg_reload_conf()" >/dev/null
psql_demo <<'SQL'
ALTER TABLE subscriptions ADD COLUMN trial_ends_at timestamptz;
-- 30 trials that ended, 20 that go on; 40 paid periods that ended
-- yesterday, 25 that ended ten days ago (past a 7-day grace as well).
INSERT INTO users (email) SELECT 'rules' || n || '@example.com' FROM generate_series(1, 115) AS n;
INSERT INTO subscriptions (user_id, plan, status, trial_ends_at, expires_at, created_at, updated_at)
SELECT u.id, 'premium',
       CASE WHEN n <= 50 THEN 'trialing' ELSE 'active' END,
       CASE WHEN n <= 30 THEN now() - interval '1 hour'
            WHEN n <= 50 THEN now() + interval '5 days' END,
       CASE WHEN n <= 50 THEN NULL
            WHEN n <= 90 THEN now() - interval '1 day'
            ELSE now() - interval '10 days' END,
       now() - interval '1 month', now() - interval '1 month'
FROM (SELECT id, split_part(right(email, -5), '@', 1)::int AS n
      FROM users WHERE email LIKE 'rules%') AS u;

INSERT INTO subexpire_rules (rule_name, target_table, from_status, to_status,
                             expires_column, set_columns, run_order)
VALUES ('trial-end', 'public.subscriptions', 'trialing', 'expired', 'trial_ends_at',
        '{"plan": "free", "trial_ends_at": null}', 10);
INSERT INTO subexpire_rules (rule_name, target_table, from_status, to_status,
                             expires_column, run_order)
VALUES ('period-end', 'public.subscriptions', 'active', 'past_due', 'expires_at', 20);
-- grace-end tells the rest of the system: one event a canceled subscription.
INSERT INTO subexpire_rules (rule_name, target_table, from_status, to_status,
                             expires_column, grace_period, set_columns, emit_events, run_order)
VALUES ('grace-end', 'public.subscriptions', 'past_due', 'canceled', 'expires_at',
        '7 days', '{"plan": "free"}', true, 30);
SQL
psql_demo -c "SELECT rule_name, from_status, to_status, expires_column, grace_period, set_columns, emit_events
              FROM subexpire_rules ORDER BY run_order"
echo "== what each rule would do now (subexpire_due)"
psql_demo -c "SELECT * FROM subexpire_due()"
echo "== one run makes them all, in run_order: a row past its period and its grace goes active, past_due, canceled"
psql_demo -c "SELECT * FROM expire_subscriptions()"
psql_demo -c "SELECT rule_name, expired_count FROM subexpire_run_rules
              WHERE run_id = (SELECT max(run_id) FROM subexpire_runs) ORDER BY rule_name"
psql_demo -c "SELECT status, plan, count(*) AS subscriptions FROM subscriptions s JOIN users u ON u.id = s.user_id
              WHERE u.email LIKE 'rules%' GROUP BY 1, 2 ORDER BY 1, 2"
echo "== the outbox: one event for each subscription that grace-end canceled, written with it"
psql_demo -c "SELECT rule_name, to_status, count(*) AS events FROM subexpire_events GROUP BY 1, 2"
echo "== a consumer takes them in its transaction (examples/events_consumer.py does it in batches)"
psql_demo -c "SELECT event_id, run_id, row_key, from_status, to_status FROM subexpire_take_events(3)"
psql_demo -c "SELECT count(*) AS events_left FROM subexpire_events"

if [ "$keep" = yes ]; then
    echo "== the cluster is kept; connect with:"
    echo "   $( [ "$(id -u)" -eq 0 ] && echo 'runuser -u postgres -- ' )$bindir/psql -h $dir -p $port -U postgres postgres"
    echo "   stop it with: $bindir/pg_ctl -D $dir/data stop"
fi
echo "== done"
