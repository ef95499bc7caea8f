# The events outbox: an event exists exactly when its row's expiry
# committed, one for each expired row.  A rule with emit_events on the
# reference table, beside one without on another table; after each of
# these, the events and the expired rows match one to one by key, each
# event carrying its row's expiry and its run's time and id, and each
# run's record counting exactly the events of its run:
#   - a SIGKILL of the run worker in the middle of a batched run over
#     300,000 due rows, then the runs that finish it;
#   - an immediate shutdown in the middle of another such run;
#   - the function with a due row held locked by another session (the
#     locked-rows path), and the worker's batches with one, then the run
#     that expires the row once it is released;
#   - three manual runs and the worker's run at once over 50,000 due rows;
#   - a manual run rolled back, one rolled back to a savepoint, and one
#     whose backend is killed with its transaction open.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $due   = 300000;
my $batch = 1000;

my $node = PostgreSQL::Test::Cluster->new('events');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'subexpire'
subexpire.enabled = off
subexpire.schedule = '2 seconds'
subexpire.catch_up = off
subexpire.batch_size = $batch
subexpire.lock_wait = '300ms'
# PostgreSQL::Test::Cluster turns this off; here the postmaster must
# reinitialize after the SIGKILL, as it does by default.
restart_after_crash = on
max_wal_size = '1GB'
});
$node->start;

create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', q{
    CREATE EXTENSION subexpire;
    CREATE TABLE trials (id bigint PRIMARY KEY, status text NOT NULL,
                         expires_at timestamptz, updated_at timestamptz);
    CREATE INDEX ON trials (status, expires_at);
    INSERT INTO trials SELECT n, 'active', '2000-01-01 00:00+00', NULL
    FROM generate_series(1, 1000) AS n;
    INSERT INTO subexpire_rules (rule_name, target_table, set_columns, emit_events)
    VALUES ('period_end', 'public.subscriptions', '{"plan": "free"}', true);
    INSERT INTO subexpire_rules (rule_name, target_table, run_order)
    VALUES ('trial_end', 'public.trials', 10);
});

# $count premium subscriptions due on day $k of 2000 (so the rounds can be
# told apart), each at its own time of that day, and 100 that are not due.
sub add_round
{
    my ($k, $count) = @_;
    $node->safe_psql('postgres', qq{
        WITH u AS (INSERT INTO users SELECT gen_random_uuid()
                   FROM generate_series(1, $count + 100) RETURNING id),
             n AS (SELECT id, row_number() OVER () AS n FROM u)
        INSERT INTO subscriptions (user_id, plan, status, expires_at)
        SELECT id, 'premium', 'active',
               CASE WHEN n <= $count
                    THEN '2000-01-01 00:00+00'::timestamptz + $k * interval '1 day'
                         + random() * interval '23 hours'
                    ELSE now() + interval '30 days' END
        FROM n;
        ANALYZE subscriptions;
    });
    return;
}

# Rows of round $k, as a condition on subscriptions (named $alias).
sub of_round
{
    my ($k, $alias) = @_;
    my $column = defined $alias ? "$alias.expires_at" : 'expires_at';
    return "$column >= '2000-01-01 00:00+00'::timestamptz + $k * interval '1 day' "
      . "AND $column < '2000-01-01 00:00+00'::timestamptz + ($k + 1) * interval '1 day'";
}

sub query { return $node->safe_psql('postgres', $_[0]); }

sub max_run { return query('SELECT coalesce(max(run_id), 0) FROM subexpire_runs'); }

# The events against the expired rows, in one snapshot (one statement):
# as many events as expired rows, a key each, every expired row with its
# event and every event with its expired row, each event saying what its
# row went through (the rule's words, the row's expiry, the run's time,
# which the run also wrote into updated_at), and every expired row under
# the rule's set_columns.  Returns the number of expired rows.
sub check_events
{
    my ($what) = @_;
    my ($rows, $events, $keys, $no_event, $no_row, $untrue, $not_free) =
      split /\|/, query(q{
        WITH s AS (SELECT id, plan, expires_at, updated_at FROM subscriptions
                   WHERE status = 'expired'),
             e AS (SELECT * FROM subexpire_events)
        SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM e),
               (SELECT count(DISTINCT row_key) FROM e),
               count(*) FILTER (WHERE e.event_id IS NULL),
               count(*) FILTER (WHERE s.id IS NULL),
               count(*) FILTER (WHERE s.id IS NOT NULL AND e.event_id IS NOT NULL
                   AND (e.rule_name, e.target_table, e.from_status, e.to_status,
                        e.expires_at, e.expired_at)
                       IS DISTINCT FROM ('period_end', 'public.subscriptions', 'active',
                                         'expired', s.expires_at, s.updated_at)),
               count(*) FILTER (WHERE s.plan <> 'free')
        FROM s FULL JOIN e ON e.row_key = jsonb_build_object('id', s.id)});
    ok($rows > 0, "$what: rows are expired ($rows)");
    is($events, $rows, "$what: as many events as expired rows");
    is($keys, $rows, "$what: each event names another row");
    is($no_event, 0, "$what: every expired row has its event");
    is($no_row, 0, "$what: every event is of an expired row");
    is($untrue, 0,
        "$what: each event has its rule, table, words, its row's expiry, and its run's time");
    is($not_free, 0, "$what: every expired row got the rule's set_columns");
    return $rows;
}

# The last run whose events a consumer has taken.
my $taken_up_to = 0;

# Each run's record of period_end against the events of the run (in one
# snapshot): the runs whose record differs from their events, or that
# have events and no record (of the runs whose events are not taken).
sub runs_untrue
{
    return query(qq{
        WITH e AS (SELECT run_id, count(*) AS n FROM subexpire_events GROUP BY run_id),
             r AS (SELECT run_id, expired_count AS n FROM subexpire_run_rules
                   WHERE rule_name = 'period_end' AND expired_count > 0
                     AND run_id > $taken_up_to)
        SELECT count(*) FROM e FULL JOIN r USING (run_id)
        WHERE e.n IS DISTINCT FROM r.n});
}

sub events_of_run
{
    my ($run) = @_;
    return query("SELECT count(*) FROM subexpire_events WHERE run_id = $run");
}

# The period_end rows that run $run expired, by its record.
sub rule_count
{
    my ($run) = @_;
    return query(qq{
        SELECT coalesce(sum(expired_count), 0) FROM subexpire_run_rules
        WHERE run_id = $run AND rule_name = 'period_end'});
}

sub worker_on { reload_with($node, 'subexpire.enabled', 'on'); return; }

sub worker_off { stop_worker($node); return; }

# Wait until a worker run after run $after is under way in period_end,
# having committed some of its batches; returns its run_id.
sub wait_for_batched_run
{
    my ($after) = @_;
    my $running = qq{
        FROM subexpire_runs r JOIN subexpire_run_rules rr USING (run_id)
        WHERE r.run_id > $after AND r.status = 'running'
          AND rr.rule_name = 'period_end' AND rr.expired_count > 0};
    $node->poll_query_until('postgres', "SELECT count(*) = 1 $running")
      or die 'no run got under way';
    return query("SELECT r.run_id $running");
}

# What a crash in the middle of run $run of round $k left, once the server
# is back; then, once the next runs have expired the rest, the same.
sub check_after_crash
{
    my ($what, $run, $k) = @_;

    ok( $node->poll_query_until('postgres',
            "SELECT status = 'failed' FROM subexpire_runs WHERE run_id = $run"),
        "$what: the interrupted run is marked failed when the worker comes back");
    # The next run may be under way: each check is one snapshot.
    check_events("$what, after the restart");
    is(runs_untrue(), 0, "$what, after the restart: each run's record counts its events");
    my $count = rule_count($run);
    ok($count > 0 && $count < $due && $count % $batch == 0,
        "$what: the interrupted run committed whole batches, short of the backlog ($count rows)");
    is(events_of_run($run), $count, "$what: it has an event for each row it committed, and no more");
    is( query(qq{
            SELECT count(*) FROM subscriptions s JOIN subexpire_runs r
                ON r.run_id = $run AND s.updated_at = r.as_of
            WHERE s.status = 'expired'}),
        $count, "$what: which are the rows it expired");

    ok( $node->poll_query_until('postgres', qq{
            SELECT count(*) = 0 FROM subscriptions
            WHERE status = 'active' AND expires_at <= now()}),
        "$what: the next runs expire the rest");
    worker_off();
    is(query("SELECT count(*) FROM subexpire_runs WHERE status = 'running'"),
        '0', "$what: no run is left running");
    is( query(qq{
            SELECT count(*) FROM subexpire_events e JOIN subscriptions s
                ON e.row_key = jsonb_build_object('id', s.id)
            WHERE e.run_id > $run AND } . of_round($k, 's')),
        $due - $count, "$what: the runs after it wrote the events of the rest of the round");
    my $rows = check_events("$what, all expired");
    is(query('SELECT count(*) FROM subscriptions WHERE status = \'expired\' AND ' . of_round($k)),
        $due, "$what: every row of the round expired");
    is(runs_untrue(), 0, "$what, all expired: each run's record counts its events");

    # A consumer takes every event; then the next part starts afresh.
    is(query('SELECT count(*) FROM subexpire_take_events(1000000)'), $rows,
        "$what: a consumer takes the events, one for each expired row");
    $taken_up_to = max_run();
    query(q{
        TRUNCATE subscriptions, users;
        SELECT count(*) FROM subexpire_events;}) eq '0'
      or die 'events are left after the consumer took them';
    return $rows;
}

my $log_offset;

# ---- SIGKILL of the run worker in the middle of its batches ----

add_round(1, $due);
my $before = max_run();
worker_on();
my $run = wait_for_batched_run($before);
my $pid;
($pid, $log_offset) = kill_run_worker($node);
ok( $node->log_contains(qr/background worker "subexpire run" \(PID $pid\) was terminated by signal 9/,
        $log_offset),
    'the run worker was killed in the middle of its run, and the postmaster reinitialized');
is(query("SELECT count(*) FROM trials WHERE status = 'expired'"),
    '1000', 'the rule without emit_events had expired its rows before');
is(query("SELECT count(*) FROM subexpire_events WHERE rule_name <> 'period_end'"),
    '0', 'and wrote no event');
check_after_crash('SIGKILL', $run, 1);

# ---- an immediate shutdown in the middle of a run ----

add_round(2, $due);
$before = max_run();
worker_on();
$run = wait_for_batched_run($before);
$node->stop('immediate');
$node->start;
check_after_crash('immediate shutdown', $run, 2);

# ---- the function with a due row held locked ----

add_round(3, 20000);
my $locked = query(q{
    SELECT id FROM subscriptions WHERE status = 'active' AND expires_at <= now()
    ORDER BY expires_at OFFSET 7000 LIMIT 1});
my $locked_key = qq{jsonb_build_object('id', '$locked'::uuid)};
my $app = $node->background_psql('postgres');
$app->query_safe("BEGIN; SELECT 1 FROM subscriptions WHERE id = '$locked' FOR UPDATE");
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT expired_count FROM expire_subscriptions()');
is($out, '19999', 'the function expired every due row but the locked one');
like($err, qr/1 due subscription in public\.subscriptions was left active because another transaction held it locked/,
    'and said so');
$run = max_run();
is(query("SELECT expired_count || ' ' || skipped_locked FROM subexpire_runs WHERE run_id = $run"),
    '19999 1', 'its record counts the locked row as skipped: the locked-rows path');
is(events_of_run($run), '19999', 'the run wrote an event for each row it expired');
is(query("SELECT count(*) FROM subexpire_events WHERE row_key = $locked_key"),
    '0', 'and none for the locked row');
check_events('the function around a locked row');
$app->query_safe('COMMIT');
is(query('SELECT expired_count FROM expire_subscriptions()'), '1',
    'once released, the next run expires the row');
$run = max_run();
is( query("SELECT count(*) || ' ' || min(run_id) FROM subexpire_events WHERE row_key = $locked_key"),
    "1 $run", 'and writes its one event');
check_events('the function, after the locked row');

# ---- the worker's batches with a due row held locked ----

add_round(4, 5000);
$locked = query(q{
    SELECT id FROM subscriptions WHERE status = 'active' AND expires_at <= now()
    ORDER BY ctid OFFSET 2500 LIMIT 1});
$locked_key = qq{jsonb_build_object('id', '$locked'::uuid)};
$app->query_safe("BEGIN; SELECT 1 FROM subscriptions WHERE id = '$locked' FOR UPDATE");
$before = max_run();
worker_on();
ok( $node->poll_query_until('postgres', qq{
        SELECT count(*) > 0 FROM subexpire_runs
        WHERE run_id > $before AND status <> 'running' AND expired_count > 0}),
    'a worker run expired the rows around the locked one');
worker_off();
$run = query(qq{
    SELECT min(run_id) FROM subexpire_runs
    WHERE run_id > $before AND status <> 'running' AND expired_count > 0});
is(query("SELECT status || ' ' || expired_count || ' ' || skipped_locked FROM subexpire_runs WHERE run_id = $run"),
    'succeeded 4999 1', 'its batches left the locked row, counted as skipped');
is(events_of_run($run), '4999', 'the run wrote an event for each row it expired');
is(query("SELECT count(*) FROM subexpire_events WHERE row_key = $locked_key"),
    '0', 'and none for the locked row');
check_events("the worker's batches around a locked row");
$app->query_safe('COMMIT');
$app->quit;
$before = max_run();
worker_on();
ok( $node->poll_query_until('postgres', qq{
        SELECT count(*) > 0 FROM subexpire_runs
        WHERE run_id > $before AND status <> 'running' AND expired_count > 0}),
    'once released, a worker run expires the row');
worker_off();
is( query("SELECT count(*) || ' ' || (min(run_id) > $before) FROM subexpire_events WHERE row_key = $locked_key"),
    '1 true', 'and writes its one event');
check_events("the worker's batches, after the locked row");
is(runs_untrue(), 0, "each run's record counts its events");

# ---- three manual runs and the worker's at once ----

# The worker's batches are smaller here, so that its run lasts while the
# manual runs start.
my $many = 50000;
add_round(5, $many);
reload_with($node, 'subexpire.batch_size', '50');
$before = max_run();

# The manual runs wait for a lock that the test holds, and start together
# when it lets it go.
my $gate = $node->background_psql('postgres');
$gate->query_safe('SELECT pg_advisory_lock(25)');
my $tempdir = PostgreSQL::Test::Utils::tempdir;
my @sessions;
for my $i (1 .. 3)
{
    my $file = "$tempdir/run$i.sql";
    PostgreSQL::Test::Utils::append_to_file($file, q{
SELECT pg_advisory_lock_shared(25) IS NULL;
SELECT 'expired ' || expired_count FROM expire_subscriptions();
});
    my ($o, $e) = ('', '');
    my $h = IPC::Run::start(
        [ 'psql', '-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-f', $file ],
        '>', \$o, '2>', \$e);
    push @sessions, { harness => $h, out => \$o, err => \$e };
}
ok( $node->poll_query_until('postgres', q{
        SELECT count(*) = 3 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted}),
    'three manual runs are ready to start');
worker_on();
ok( $node->poll_query_until('postgres', qq{
        SELECT count(*) > 0 FROM subexpire_runs
        WHERE run_id > $before AND trigger = 'schedule' AND status = 'running' AND expired_count > 0}),
    'the worker is expiring the rows in batches');
$gate->query_safe('SELECT pg_advisory_unlock(25)');
my $manual = 0;
for my $s (@sessions)
{
    $s->{harness}->finish;
    my ($n) = ${ $s->{out} } =~ /^expired (\d+)$/m;
    ok(defined $n, 'a manual run ended') or diag(${ $s->{err} });
    $manual += $n // 0;
}
$gate->quit;
ok( $node->poll_query_until('postgres', qq{
        SELECT count(*) = 0 FROM subscriptions
        WHERE status = 'active' AND expires_at <= now()}),
    'every due row is expired');
worker_off();
reload_with($node, 'subexpire.batch_size', $batch);
note('runs: ' . query(qq{
    SELECT string_agg(run_id || ' ' || trigger || ' ' || expired_count || '/' || skipped_locked, ', ' ORDER BY run_id)
    FROM subexpire_runs WHERE run_id > $before}));
my ($with_rows, $manual_with_rows) = split /\|/, query(qq{
    SELECT count(*), count(*) FILTER (WHERE trigger = 'manual') FROM subexpire_runs
    WHERE run_id > $before AND status = 'succeeded' AND expired_count > 0});
ok($with_rows >= 2 && $manual_with_rows >= 1,
    "the worker and a manual run both expired rows of the round ($with_rows runs did, $manual_with_rows manual)");
my ($worker_runs, $all_runs, $round_events) = split /\|/, query(qq{
    SELECT (SELECT sum(expired_count) FROM subexpire_runs WHERE run_id > $before AND trigger <> 'manual'),
           (SELECT sum(expired_count) FROM subexpire_runs WHERE run_id > $before),
           (SELECT count(*) FROM subexpire_events WHERE run_id > $before)});
is($manual + $worker_runs, $many, 'the counts the manual runs returned and the worker\'s add up to the round');
is($all_runs, $many, 'so do the runs\' records');
is($round_events, $many, 'one event for each row of the round');
is( query(qq{
        WITH e AS (SELECT run_id, count(*) AS n FROM subexpire_events
                   WHERE run_id > $before GROUP BY run_id),
             r AS (SELECT run_id, expired_count AS n FROM subexpire_runs
                   WHERE run_id > $before AND expired_count > 0)
        SELECT count(*) FROM e FULL JOIN r USING (run_id) WHERE e.n IS DISTINCT FROM r.n}),
    '0', 'each run has as many events as its record counts');
check_events('runs at once');
is(runs_untrue(), 0, "each run's record counts its events");

# ---- a manual run rolled back ----

add_round(6, 1000);
my $events_before = query('SELECT count(*) FROM subexpire_events');
is( query(q{
        BEGIN;
        SELECT expired_count FROM expire_subscriptions();
        SELECT count(*) FROM subexpire_events;
        ROLLBACK;}),
    "1000\n" . ($events_before + 1000), 'a run in a transaction writes its events there');
is( query(q{
        SELECT count(*) FILTER (WHERE status = 'expired') || ' ' || count(*) || ' '
               || (SELECT count(*) FROM subexpire_events)
        FROM subscriptions WHERE } . of_round(6)),
    "0 1000 $events_before", 'rolled back, it left no expired row and no event');
is( query(q{
        BEGIN;
        SAVEPOINT before_run;
        SELECT expired_count FROM expire_subscriptions();
        ROLLBACK TO SAVEPOINT before_run;
        COMMIT;
        SELECT count(*) FROM subexpire_events;}),
    "1000\n$events_before", 'rolled back to a savepoint, the same');

# A crash with the run's transaction open: the run had written its events
# in it, and neither they nor the rows' expiry survive.
my $open = $node->background_psql('postgres');
my $backend = $open->query_safe('SELECT pg_backend_pid()');
is($open->query_safe('BEGIN; SELECT expired_count FROM expire_subscriptions()'),
    '1000', 'a run in a transaction left open expired the rows');
$log_offset = -s $node->logfile;
kill 'KILL', $backend or die "could not kill $backend: $!";
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
$node->poll_query_until('postgres', 'SELECT true')
  or die 'the server did not come back after the crash';
eval { $open->quit; };
is( query(q{
        SELECT count(*) FILTER (WHERE status = 'expired') || ' ' || count(*) || ' '
               || (SELECT count(*) FROM subexpire_events)
        FROM subscriptions WHERE } . of_round(6)),
    "0 1000 $events_before", 'its backend killed, it left no expired row and no event');
check_events('after the rollbacks and the crash');
is(query('SELECT expired_count FROM expire_subscriptions()'), '1000',
    'committed, the run expires the rows');
is(events_of_run(max_run()), '1000', 'and writes their events');
check_events('at the end');

done_testing();
