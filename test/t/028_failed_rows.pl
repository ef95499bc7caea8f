# Poisoned rows: a due row whose update fails with an error about the row
# (a trigger's RAISE, a check constraint or a foreign key that refuses the
# new row) is left exactly as it was, recorded in subexpire_row_errors
# with its key and its error, and counted in skipped_failed, while every
# other due row expires; the next run tries it again, and once the cause
# is gone a run expires it.  Each of these by expire_subscriptions() and
# by the worker's batches:
#   - a BEFORE UPDATE trigger that raises for 1 row of 10,000 due, for 50
#     spread among them, and for every one of 300;
#   - a CHECK constraint that refuses the expired row of a 'vip' plan;
#   - a foreign key (tenant, status) whose referenced table has no
#     'expired' for one tenant;
#   - a rule with emit_events: events for exactly the rows expired, none
#     for the rows that failed;
# and:
#   - an error of a class that is not about a row (55000, among rows that
#     fail with row errors) still fails the whole run: nothing expired;
#   - a SIGKILL of the run worker while it isolates failing rows (small
#     batches, a trigger that takes its time on each of them): no
#     committed batch lost, and the interrupted run's row errors agree
#     with its count.
# The function's WARNING, the worker's LOG line and the failed_rows health
# check say how many failed.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('failed_rows');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'subexpire'
subexpire.enabled = off
subexpire.schedule = '1 second'
subexpire.catch_up = off
subexpire.batch_size = 1000
# PostgreSQL::Test::Cluster turns this off; here the postmaster must
# reinitialize after the SIGKILL, as it does by default.
restart_after_crash = on
});
$node->start;

create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', q{
    CREATE EXTENSION subexpire;
    -- For the foreign key: the statuses each tenant may have.
    ALTER TABLE subscriptions ADD COLUMN tenant integer;
    CREATE TABLE tenant_statuses (tenant integer, status varchar(20),
                                  PRIMARY KEY (tenant, status));
    INSERT INTO tenant_statuses SELECT t, s FROM generate_series(1, 9) AS t,
        unnest(ARRAY['active', 'expired']) AS s WHERE (t, s) <> (9, 'expired');
    -- The rows a round expects to fail, as they were before its runs.
    CREATE TABLE failing (id uuid PRIMARY KEY, status text, plan text,
                          updated_at timestamptz);
    CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.plan = 'poison' THEN
            RAISE EXCEPTION 'subscription % is poisoned', NEW.id;
        END IF;
        RETURN NEW;
    END $$;
});

sub query { return $node->safe_psql('postgres', $_[0]); }

sub max_run { return query('SELECT coalesce(max(run_id), 0) FROM subexpire_runs'); }

sub worker_on { reload_with($node, 'subexpire.enabled', 'on'); return; }

sub worker_off { stop_worker($node); return; }

# Turn the worker on until $n of its runs after run $after have ended,
# then off; returns their ids.
sub worker_runs
{
    my ($after, $n) = @_;
    worker_on();
    $node->poll_query_until('postgres',
        "SELECT count(*) >= $n FROM subexpire_runs WHERE run_id > $after AND status <> 'running'")
      or die "$n worker runs after run $after did not end";
    worker_off();
    return split / /, query(qq{
        SELECT string_agg(run_id::text, ' ' ORDER BY run_id)
        FROM (SELECT run_id FROM subexpire_runs WHERE run_id > $after
              ORDER BY run_id LIMIT $n) AS r});
}

# A new round of $count due subscriptions, the n-th of them (in the order
# of the table's pages) with plan $s->{plan} and tenant $s->{tenant}, SQL
# expressions of n; the rows $s->{failing} says will fail are kept in
# "failing" as they are.  Returns how many those are.
sub new_round
{
    my ($s, $count) = @_;
    my $plan   = $s->{plan}   // q{'free'};
    my $tenant = $s->{tenant} // 'n % 8 + 1';
    query(qq{
        TRUNCATE subscriptions, users, failing;
        DELETE FROM subexpire_events;
        WITH u AS (INSERT INTO users SELECT gen_random_uuid()
                   FROM generate_series(1, $count) RETURNING id),
             n AS (SELECT id, row_number() OVER () AS n FROM u)
        INSERT INTO subscriptions (user_id, plan, tenant, status, expires_at, updated_at)
        SELECT id, $plan, $tenant, 'active', now() - interval '1 day',
               '2000-01-01 00:00+00'::timestamptz + n * interval '1 second'
        FROM n ORDER BY n;
        INSERT INTO failing SELECT id, status, plan, updated_at FROM subscriptions
        WHERE $s->{failing};
        ANALYZE subscriptions;
    });
    return query('SELECT count(*) FROM failing');
}

# The rows against "failing": "rows expired, other rows not expired,
# failing rows exactly as they were, failing rows changed".
sub rows_now
{
    return join ' ', split /\|/, query(q{
        SELECT count(*) FILTER (WHERE f.id IS NULL AND s.status = 'expired'),
               count(*) FILTER (WHERE f.id IS NULL AND s.status <> 'expired'),
               count(*) FILTER (WHERE f.id IS NOT NULL
                   AND (s.status, s.plan, s.updated_at) IS NOT DISTINCT FROM (f.status, f.plan, f.updated_at)),
               count(*) FILTER (WHERE f.id IS NOT NULL
                   AND (s.status, s.plan, s.updated_at) IS DISTINCT FROM (f.status, f.plan, f.updated_at))
        FROM subscriptions s LEFT JOIN failing f USING (id)});
}

# Run $run's records under scenario $s: "status expired skipped_failed" of
# the run, then of its rule.
sub records_of
{
    my ($run, $s) = @_;
    my $rule = $s->{rule} // 'default';
    return join ' ', split /\|/, query(qq{
        SELECT r.status, r.expired_count, r.skipped_failed, r.skipped_locked,
               rr.expired_count, rr.skipped_failed
        FROM subexpire_runs r JOIN subexpire_run_rules rr USING (run_id)
        WHERE r.run_id = $run AND rr.rule_name = '$rule'});
}

# Run $run's row errors against the failing rows, in one statement:
# "records, distinct keys, failing rows without a record, records of rows
# that did not fail, records with another rule or error than expected".
sub row_errors_of
{
    my ($run, $s) = @_;
    my $rule = $s->{rule} // 'default';
    return join ' ', split /\|/, query(qq{
        WITH e AS (SELECT * FROM subexpire_row_errors WHERE run_id = $run),
             f AS (SELECT jsonb_build_object('id', id) AS row_key FROM failing)
        SELECT (SELECT count(*) FROM e), (SELECT count(DISTINCT row_key) FROM e),
               count(*) FILTER (WHERE e.run_id IS NULL),
               count(*) FILTER (WHERE f.row_key IS NULL),
               count(*) FILTER (WHERE e.run_id IS NOT NULL
                   AND (e.rule_name, e.error) IS DISTINCT FROM ('$rule', $s->{error}))
        FROM e FULL JOIN f ON e.row_key = f.row_key});
}

# The records of a run $run that met every failing row ($failed of them)
# and expired $expired rows.
sub check_run
{
    my ($what, $run, $s, $expired, $failed) = @_;
    my ($status, $count, $skipped, $locked, $rule_count, $rule_skipped) =
      split / /, records_of($run, $s);
    is("$status $count $skipped $locked", "succeeded $expired $failed 0",
        "$what: run $run succeeded, expired $expired rows and counts $failed in skipped_failed");
    is("$rule_count $rule_skipped", "$expired $failed", "$what: so does its rule's record");
    is($count + $skipped, $expired + $failed, "$what: expired_count + skipped_failed are the rows it met");
    is(row_errors_of($run, $s), "$failed $failed 0 0 0",
        "$what: subexpire_row_errors has exactly the failing rows' keys under run $run, with their errors");
    return;
}

# Events against the rows: "events, expired rows without their event,
# events of rows not expired, events of failing rows".
sub events_now
{
    return join ' ', split /\|/, query(q{
        WITH s AS (SELECT jsonb_build_object('id', id) AS row_key FROM subscriptions
                   WHERE status = 'expired'),
             e AS (SELECT * FROM subexpire_events)
        SELECT (SELECT count(*) FROM e),
               count(*) FILTER (WHERE e.event_id IS NULL),
               count(*) FILTER (WHERE s.row_key IS NULL),
               (SELECT count(*) FROM e JOIN failing f ON e.row_key = jsonb_build_object('id', f.id))
        FROM s FULL JOIN e ON e.row_key = s.row_key});
}

# subexpire_health()'s failed_rows check: "status: detail".
sub failed_rows_check
{
    return query(q{
        SELECT status || ': ' || detail FROM subexpire_health() WHERE check_name = 'failed_rows'});
}

# What failed_rows says after run $run, in which $failed rows failed.
sub failed_rows_warning
{
    my ($run, $failed) = @_;
    my $words = $failed == 1
      ? '1 due row as it was because its update failed'
      : "$failed due rows as they were because their update failed";
    return qr/^warning: run $run left \Q$words\E; SELECT \* FROM subexpire_row_errors WHERE run_id = $run names each row and its error/;
}

my $uuid = qr/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

# The WARNING of a run $run in which $failed rows failed, the first with an
# error matching $error_re, under rule $rule.
sub warning_re
{
    my ($failed, $run, $rule, $error_re) = @_;
    my $words = $failed == 1
      ? '1 due subscription could not be expired and was left as it was'
      : "$failed due subscriptions could not be expired and were left as they were";
    return qr/WARNING:  \Q$words\E\nDETAIL:  Updating a row of public\.subscriptions under rule "\Q$rule\E" failed: $error_re\nHINT:  subexpire_row_errors has each row's key and error for run $run; the next run tries them again\./;
}

# Scenario $s by expire_subscriptions(): a round of $count due rows, a
# run, a second run that tries the failing rows again, then the cause
# fixed and a run that expires them.
sub through_function
{
    my ($what, $s, $count) = @_;
    my $rule   = $s->{rule} // 'default';
    my $failed = new_round($s, $count);
    is($failed, $s->{expect}, "$what: $failed of the $count due rows will fail");
    query($s->{break});
    my $expired = $count - $failed;

    my ($rc, $out, $err) = $node->psql('postgres', 'SELECT expired_count FROM expire_subscriptions()');
    my $run = max_run();
    is($out, $expired, "$what: the function expired every other row ($expired)");
    like($err, warning_re($failed, $run, $rule, $s->{error_re}),
        "$what: one WARNING says how many failed, the first error, and where they are recorded");
    my @warnings = $err =~ /WARNING/g;
    is(scalar @warnings, 1, "$what: and only one");
    if ($err =~ /subscription ($uuid) is poisoned/)
    {
        is(query("SELECT count(*) FROM failing WHERE id = '$1'"), '1',
            "$what: the WARNING names a row that failed");
    }
    is(rows_now(), "$expired 0 $failed 0",
        "$what: every other row expired, every failing row exactly as it was");
    check_run("$what, the function", $run, $s, $expired, $failed);
    like(failed_rows_check(), failed_rows_warning($run, $failed),
        "$what: the failed_rows health check warns, naming the run");
    is( query(qq{
            SELECT count(*) FROM subscriptions s JOIN subexpire_runs r ON r.run_id = $run
            WHERE s.status = 'expired' AND s.updated_at = r.started_at}),
        $expired, "$what: the rows run $run expired are its count");

    ($rc, $out, $err) = $node->psql('postgres', 'SELECT expired_count FROM expire_subscriptions()');
    my $again = max_run();
    is($out, '0', "$what: a second run expires nothing");
    like($err, warning_re($failed, $again, $rule, $s->{error_re}), "$what: and warns again");
    check_run("$what, the second run", $again, $s, 0, $failed);
    is(rows_now(), "$expired 0 $failed 0", "$what: the failing rows are still as they were");

    query($s->{fix});
    ($rc, $out, $err) = $node->psql('postgres', 'SELECT expired_count FROM expire_subscriptions()');
    my $fixed = max_run();
    is($out, $failed, "$what: its cause fixed, a run expires the rows that failed");
    is($err, '', "$what: without a WARNING");
    is(records_of($fixed, $s), "succeeded $failed 0 0 $failed 0", "$what: its records count no failure");
    is(failed_rows_check(), "ok: every due row of run $fixed could be updated",
        "$what: the failed_rows health check is ok again");
    is(query("SELECT count(*) FROM subexpire_row_errors WHERE run_id = $fixed"), '0',
        "$what: and it recorded no row error");
    is(query("SELECT count(*) FROM subscriptions WHERE status <> 'expired'"), '0',
        "$what: every row is expired");
    query($s->{cleanup}) if $s->{cleanup};
    return;
}

# Scenario $s by the worker's batches: its first run over a round of
# $count due rows, the second that tries the failing rows again, then the
# cause fixed and a run that expires them.
sub through_worker
{
    my ($what, $s, $count) = @_;
    my $failed = new_round($s, $count);
    is($failed, $s->{expect}, "$what: $failed of the $count due rows will fail");
    query($s->{break});
    my $expired = $count - $failed;

    my $log_offset = -s $node->logfile;
    my ($run, $again) = worker_runs(max_run(), 2);
    is(rows_now(), "$expired 0 $failed 0",
        "$what: the worker expired every other row, every failing row exactly as it was");
    check_run("$what, the worker's first run", $run, $s, $expired, $failed);
    is( query(qq{
            SELECT count(*) FROM subscriptions s JOIN subexpire_runs r ON r.run_id = $run
            WHERE s.status = 'expired' AND s.updated_at = r.as_of}),
        $expired, "$what: the rows run $run expired are its count");
    check_run("$what, the worker's next run", $again, $s, 0, $failed);
    # A third run may have ended before the worker was turned off.
    my $last = query(q{SELECT max(run_id) FROM subexpire_runs WHERE status <> 'running'});
    like(failed_rows_check(), failed_rows_warning($last, $failed),
        "$what: the failed_rows health check warns, naming the last run");
    my $left = $failed == 1 ? 'was left as it was' : 'were left as they were';
    ok( $node->log_contains(
            qr/LOG:  subexpire: schedule run $run expired $expired subscriptions due at [^\n;]* in [0-9.]+ s; $failed failed and $left\n/,
            $log_offset),
        "$what: the worker's LOG line of run $run says how many failed");
    ok( $node->log_contains(
            qr/LOG:  subexpire: schedule run $again expired 0 subscriptions due at [^\n;]* in [0-9.]+ s; $failed failed and $left\n/,
            $log_offset),
        "$what: and of run $again");

    query($s->{fix});
    my $before = max_run();
    worker_on();
    ok( $node->poll_query_until('postgres',
            "SELECT count(*) = 0 FROM subscriptions WHERE status <> 'expired'"),
        "$what: its cause fixed, the worker expires the rows that failed");
    worker_off();
    is( query(qq{
            SELECT string_agg(expired_count || '/' || skipped_failed, ' ')
                   || ' ' || sum(skipped_failed)
                   || ' ' || (SELECT count(*) FROM subexpire_row_errors WHERE run_id > $before)
            FROM subexpire_runs WHERE run_id > $before AND expired_count > 0}),
        "$failed/0 0 0", "$what: in one run, which recorded no failure, nor did the ones after it");
    query($s->{cleanup}) if $s->{cleanup};
    return;
}

my $trigger = {
    break    => 'CREATE TRIGGER poison BEFORE UPDATE ON subscriptions FOR EACH ROW EXECUTE FUNCTION poison()',
    fix      => 'DROP TRIGGER poison ON subscriptions',
    failing  => q{plan = 'poison'},
    error    => q{'subscription ' || (e.row_key->>'id') || ' is poisoned'},
    error_re => qr/subscription $uuid is poisoned/,
};

# ---- a trigger that raises for 1 row of 10,000 ----

my %one = (%$trigger, plan => q{CASE WHEN n = 7777 THEN 'poison' ELSE 'free' END}, expect => 1);
through_function('1 of 10000', \%one, 10000);
through_worker('1 of 10000, worker', \%one, 10000);

# ---- for 50 rows spread among 10,000 ----

my %fifty = (%$trigger, plan => q{CASE WHEN n % 200 = 77 THEN 'poison' ELSE 'free' END}, expect => 50);
through_function('50 of 10000', \%fifty, 10000);
through_worker('50 of 10000, worker', \%fifty, 10000);

# ---- for every row ----

my %all = (%$trigger, plan => q{'poison'}, expect => 300);
through_function('300 of 300', \%all, 300);
through_worker('300 of 300, worker', \%all, 300);

# ---- a check constraint that refuses the new row ----

my %check = (
    plan     => q{CASE WHEN n % 250 = 3 THEN 'vip' ELSE 'premium' END},
    expect   => 40,
    failing  => q{plan = 'vip'},
    break    => q{ALTER TABLE subscriptions ADD CONSTRAINT vip_stays CHECK (status <> 'expired' OR plan <> 'vip')},
    fix      => q{UPDATE subscriptions SET plan = 'premium' WHERE plan = 'vip'},
    cleanup  => 'ALTER TABLE subscriptions DROP CONSTRAINT vip_stays',
    error    => q{'new row for relation "subscriptions" violates check constraint "vip_stays"'},
    error_re => qr/new row for relation "subscriptions" violates check constraint "vip_stays"/,
);
through_function('check constraint', \%check, 10000);
through_worker('check constraint, worker', \%check, 10000);

# ---- a foreign key that refuses the new row ----

# Tenant 9 may not be 'expired': tenant_statuses lacks (9, 'expired').
my %foreign_key = (
    tenant   => 'CASE WHEN n % 300 = 150 THEN 9 ELSE n % 8 + 1 END',
    expect   => 33,
    failing  => 'tenant = 9',
    break    => 'ALTER TABLE subscriptions ADD CONSTRAINT tenant_status FOREIGN KEY (tenant, status) REFERENCES tenant_statuses',
    fix      => q{INSERT INTO tenant_statuses VALUES (9, 'expired')},
    cleanup  => q{ALTER TABLE subscriptions DROP CONSTRAINT tenant_status;
                  DELETE FROM tenant_statuses WHERE (tenant, status) = (9, 'expired')},
    error    => q{'insert or update on table "subscriptions" violates foreign key constraint "tenant_status"'},
    error_re => qr/insert or update on table "subscriptions" violates foreign key constraint "tenant_status"/,
);
through_function('foreign key', \%foreign_key, 10000);
through_worker('foreign key, worker', \%foreign_key, 10000);

# ---- a rule with emit_events ----

query(q{
    INSERT INTO subexpire_rules (rule_name, target_table, emit_events)
    VALUES ('period_end', 'public.subscriptions', true);
});
my %events = (%$trigger, plan => q{CASE WHEN n % 100 = 50 THEN 'poison' ELSE 'free' END},
    expect => 50, rule => 'period_end');

my $failed = new_round(\%events, 5000);
query($events{break});
is(query('SELECT expired_count FROM expire_subscriptions()'), 5000 - $failed,
    'events: the function expired every other row');
my $run = max_run();
check_run('events, the function', $run, \%events, 5000 - $failed, $failed);
is(events_now(), (5000 - $failed) . ' 0 0 0',
    'events: one for each row expired, none for a row that failed');
is(query("SELECT count(*) FROM subexpire_events WHERE run_id = $run"), 5000 - $failed,
    'events: all of them of the run');
query($events{fix});
is(query('SELECT expired_count FROM expire_subscriptions()'), $failed,
    'events: its cause fixed, a run expires the rows that failed');
is(events_now(), "5000 0 0 $failed", 'events: and writes their events');
is(query('SELECT count(*) FROM subexpire_events WHERE run_id = ' . max_run()), $failed,
    'events: in that run');

$failed = new_round(\%events, 5000);
query($events{break});
my ($first, $second) = worker_runs(max_run(), 2);
check_run("events, the worker's first run", $first, \%events, 5000 - $failed, $failed);
check_run("events, the worker's next run", $second, \%events, 0, $failed);
is(events_now(), (5000 - $failed) . ' 0 0 0',
    "events: the worker's batches wrote one for each row expired, none for a row that failed");
is(query("SELECT count(*) FROM subexpire_events WHERE run_id = $first"), 5000 - $failed,
    'events: all of them of its first run');
query($events{fix});
query('DELETE FROM subexpire_rules');

# ---- an error that is not about a row fails the whole run ----

query(q{
    CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.plan = 'refuse' THEN
            RAISE EXCEPTION 'subscription % is not ready', NEW.id
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER refuse BEFORE UPDATE ON subscriptions FOR EACH ROW EXECUTE FUNCTION refuse();
});
# 1000 due rows, one of them refused (55000) and ten poisoned (P0001):
# the worker's one batch meets them all.
my %refused = (%$trigger,
    plan => q{CASE WHEN n = 500 THEN 'refuse' WHEN n % 100 = 0 THEN 'poison' ELSE 'free' END},
    failing => q{plan = 'refuse'});
new_round(\%refused, 1000);
query($refused{break});
my $runs_failed = query('SELECT runs_failed FROM subexpire_stats');
my $before = max_run();
my ($rc, $out, $err) = $node->psql('postgres', 'SELECT expired_count FROM expire_subscriptions()');
like($err, qr/ERROR:  subscription $uuid is not ready/, '55000: the function fails');
is( query(qq{
        SELECT count(*) FILTER (WHERE status = 'active') || ' '
               || (SELECT count(*) FROM subexpire_runs WHERE run_id > $before) || ' '
               || (SELECT count(*) FROM subexpire_row_errors WHERE run_id > $before)
        FROM subscriptions}),
    '1000 0 0', '55000: nothing expired, no record and no row error left');
is(query('SELECT runs_failed FROM subexpire_stats'), $runs_failed + 1, '55000: the run is counted as failed');
like(query('SELECT last_error FROM subexpire_stats'), qr/^subscription $uuid is not ready$/,
    '55000: with its error');
($run) = worker_runs(max_run(), 1);
like(query("SELECT status || ': ' || error FROM subexpire_runs WHERE run_id = $run"),
    qr/^failed: .*subscription $uuid is not ready/, '55000: the worker\'s run failed, with the error');
is( query(qq{
        SELECT count(*) FILTER (WHERE status = 'active') || ' '
               || (SELECT expired_count || ' ' || skipped_failed FROM subexpire_runs WHERE run_id = $run) || ' '
               || (SELECT count(*) FROM subexpire_row_errors WHERE run_id = $run)
        FROM subscriptions}),
    '1000 0 0 0', '55000: the worker expired nothing, and recorded no row error');
query(q{DROP TRIGGER refuse ON subscriptions; DROP TRIGGER poison ON subscriptions});

# ---- a SIGKILL of the run worker while it isolates failing rows ----

# 3000 due rows, every 10th poisoned, batches of 100: each batch expires 90
# rows and records 10, halving its pieces down to each of them, and the
# trigger takes 10 ms on each poisoned row it refuses.
reload_with($node, 'subexpire.batch_size', '100');
query(q{
    CREATE FUNCTION poison_slowly() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.plan = 'poison' THEN
            PERFORM pg_sleep(0.01);
            RAISE EXCEPTION 'subscription % is poisoned', NEW.id;
        END IF;
        RETURN NEW;
    END $$;
});
my %slow = (%$trigger,
    plan  => q{CASE WHEN n % 10 = 0 THEN 'poison' ELSE 'free' END},
    break => 'CREATE TRIGGER poison BEFORE UPDATE ON subscriptions FOR EACH ROW EXECUTE FUNCTION poison_slowly()');
$failed = new_round(\%slow, 3000);
is($failed, '300', 'SIGKILL: 300 of the 3000 due rows will fail');
query($slow{break});
$before = max_run();
worker_on();
my $running = qq{
    FROM subexpire_runs WHERE run_id > $before AND status = 'running' AND skipped_failed >= 30};
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 $running"),
    'SIGKILL: a worker run has committed batches with rows that failed');
my $killed = query("SELECT run_id $running");
# It spends most of its time in the trigger, inside a subtransaction of a
# batch that isolates the failing rows.
ok( $node->poll_query_until('postgres', q{
        SELECT wait_event = 'PgSleep' FROM pg_stat_activity WHERE backend_type = 'subexpire run'}),
    'SIGKILL: the run worker is in the trigger of a row that fails');
my ($pid, $log_offset) = kill_run_worker($node);
ok( $node->log_contains(qr/background worker "subexpire run" \(PID $pid\) was terminated by signal 9/,
        $log_offset),
    'SIGKILL: the run worker was killed in the middle of its run');
ok( $node->poll_query_until('postgres',
        "SELECT status = 'failed' FROM subexpire_runs WHERE run_id = $killed"),
    'SIGKILL: the interrupted run is marked failed when the worker comes back');
# The trigger need not take its time any more.
query(q{
    CREATE OR REPLACE FUNCTION poison_slowly() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.plan = 'poison' THEN
            RAISE EXCEPTION 'subscription % is poisoned', NEW.id;
        END IF;
        RETURN NEW;
    END $$;
});
my ($count, $skipped, $rule_skipped, $rows, $errors, $error_keys) = split /\|/, query(qq{
    SELECT r.expired_count, r.skipped_failed,
           (SELECT skipped_failed FROM subexpire_run_rules WHERE run_id = r.run_id),
           (SELECT count(*) FROM subscriptions s WHERE s.status = 'expired' AND s.updated_at = r.as_of),
           (SELECT count(*) FROM subexpire_row_errors WHERE run_id = r.run_id),
           (SELECT count(DISTINCT e.row_key) FROM subexpire_row_errors e
              JOIN failing f ON e.row_key = jsonb_build_object('id', f.id)
            WHERE e.run_id = r.run_id)
    FROM subexpire_runs r WHERE r.run_id = $killed});
is($rows, $count, "SIGKILL: the rows the interrupted run expired are its count ($count): no committed batch lost");
ok($count > 0 && $count < 2700 && $count % 90 == 0,
    'SIGKILL: its count is whole committed batches, short of the round');
is($skipped * 9, $count, "SIGKILL: its skipped_failed ($skipped) is 10 rows for each of those batches");
is($rule_skipped, $skipped, "SIGKILL: so is its rule's");
is("$errors $error_keys", "$skipped $skipped",
    'SIGKILL: its row errors agree with its count, one for each of the failing rows it met');
ok( $node->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM subscriptions WHERE status = 'active' AND plan <> 'poison'"),
    'SIGKILL: the next runs expire the rest');
worker_off();
is(rows_now(), '2700 0 300 0', 'SIGKILL: every other row expired, every failing row exactly as it was');
is( query(qq{SELECT sum(expired_count) FROM subexpire_runs WHERE run_id > $before}),
    '2700', "SIGKILL: the runs' counts add up to the rows expired");
is( query(qq{
        SELECT count(*) FROM subexpire_runs r
        WHERE r.run_id > $before
          AND (r.expired_count <> (SELECT count(*) FROM subscriptions s
                                   WHERE s.status = 'expired' AND s.updated_at = r.as_of)
               OR r.skipped_failed <> (SELECT count(*) FROM subexpire_row_errors e
                                       WHERE e.run_id = r.run_id))}),
    '0', "SIGKILL: every run's record agrees with the rows it expired and its row errors");
is( query(qq{
        SELECT count(*) FROM subexpire_runs WHERE run_id > $killed AND status <> 'succeeded'}),
    '0', 'SIGKILL: the runs after it succeeded');

done_testing();
