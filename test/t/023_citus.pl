# Every path on a Citus hash-distributed subscriptions table, on a
# coordinator and two workers: the common path, the dry run, a locked row
# (the wait bounded by subexpire.lock_wait, the row counted as skipped),
# four manual runs at once, a renewal committed while a run waits for its
# row, the worker's batched run (key ranges, a transaction each), a
# SIGKILL of the coordinator's run worker in the middle of one (no
# committed batch lost), the run records and statistics on the
# coordinator, subexpire_health()'s index check, rows whose update fails
# (a trigger on the shards raises for them: left as they were, recorded
# with their keys, counted, and tried again, by the function and by the
# worker), rules, and the events of a rule with emit_events (written on
# the coordinator, one for each expired row, by the common path, the
# locked-rows path and the worker's batches, and across a SIGKILL of the
# run worker).
#
# Citus is not in Debian's archive: ../shared/citus/install.sh installs a
# build for PostgreSQL 15 (CI runs it).  Without it, the test is skipped.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time);

my $sharedir = `pg_config --sharedir`;
chomp $sharedir;
plan skip_all =>
  "Citus is not installed (no $sharedir/extension/citus.control): the Citus tests need it; ../shared/citus/install.sh installs a build for PostgreSQL 15"
  unless -f "$sharedir/extension/citus.control";

my $due = 20000;

# A coordinator and two workers, on unix sockets.
my @nodes;
for my $name ('coordinator', 'worker1', 'worker2')
{
    my $node = PostgreSQL::Test::Cluster->new($name);
    $node->init;
    $node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'citus,subexpire'
max_prepared_transactions = 20
max_connections = 100
subexpire.enabled = off
subexpire.lock_wait = '500ms'
subexpire.batch_size = 1000
subexpire.schedule = '1 second'
# The postmaster must reinitialize after the SIGKILL below, and the
# prepared transactions of the batch it interrupted be resolved soon.
restart_after_crash = on
citus.recover_2pc_interval = '1s'
});
    $node->start;
    $node->safe_psql('postgres', 'CREATE EXTENSION citus');
    push @nodes, $node;
}
my ($coord, @workers) = @nodes;
$coord->safe_psql('postgres', sprintf(
        "SELECT citus_set_coordinator_host('%s', %d)", $coord->host, $coord->port));
$coord->safe_psql('postgres', sprintf(
        "SELECT citus_add_node('%s', %d)", $_->host, $_->port)) for @workers;

# The reference schema, distributed by user_id (a unique key of a
# distributed table must include its distribution column).
$coord->safe_psql('postgres', q{
    CREATE EXTENSION subexpire;
    CREATE TABLE public.subscriptions (
        id         uuid NOT NULL DEFAULT gen_random_uuid(),
        user_id    uuid NOT NULL,
        plan       varchar(20) NOT NULL DEFAULT 'free',
        status     varchar(20) NOT NULL DEFAULT 'inactive',
        expires_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id)
    );
    CREATE INDEX ix_subscriptions_status_expires_at ON subscriptions (status, expires_at);
    SELECT create_distributed_table('subscriptions', 'user_id');
});
is( $coord->safe_psql('postgres',
        "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'subscriptions'::regclass"),
    '32', 'the table is distributed in 32 shards');

# $count due rows expiring on day $k of 2000, so the rounds can be told
# apart, and as many that are not due.
sub add_round
{
    my ($k, $count) = @_;
    $coord->safe_psql('postgres', qq{
        INSERT INTO subscriptions (user_id, status, expires_at)
        SELECT gen_random_uuid(), 'active',
               '2000-01-01 00:00+00'::timestamptz + $k * interval '1 day' + g * interval '1 second'
        FROM generate_series(1, $count) g;
        INSERT INTO subscriptions (user_id, status, expires_at)
        SELECT gen_random_uuid(), 'active', now() + interval '30 days'
        FROM generate_series(1, $count);
    });
    return;
}

sub active_due
{
    return $coord->safe_psql('postgres',
        "SELECT count(*) FROM subscriptions WHERE status = 'active' AND expires_at <= now()");
}

# Every worker run's record against the rows: a worker run sets updated_at
# to its as_of.
# (Citus joins a local table with a distributed one only through an
# intermediate result, such as a CTE.)
sub records_untrue
{
    return $coord->safe_psql('postgres', q{
        WITH s AS (SELECT updated_at, count(*) AS n FROM subscriptions
                   WHERE status = 'expired' GROUP BY updated_at)
        SELECT count(*) FROM subexpire_runs r LEFT JOIN s ON s.updated_at = r.as_of
        WHERE r.trigger <> 'manual' AND r.expired_count <> coalesce(s.n, 0)});
}

# Rows that run $run expired.
sub rows_of_run
{
    my ($run) = @_;
    my $as_of = $coord->safe_psql('postgres',
        "SELECT as_of FROM subexpire_runs WHERE run_id = $run");
    return $coord->safe_psql('postgres',
        "SELECT count(*) FROM subscriptions WHERE status = 'expired' AND updated_at = '$as_of'");
}

# End a background session's backend (pg_sleep does not notice that its
# client has gone) and the session.
sub end_session
{
    my ($session, $name) = @_;
    $coord->safe_psql('postgres',
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$name'");
    $coord->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = '$name'")
      or die "session $name did not end";
    $session->{harness}->kill_kill;
    $session->{harness}->finish;
    return;
}

# A session that runs $sql from a file (IPC::Run feeds a scalar only while
# it is pumped), in the background.
my $tempdir = PostgreSQL::Test::Utils::tempdir;
my $sessions = 0;
sub start_session
{
    my ($sql) = @_;
    my $file = "$tempdir/session" . ++$sessions . '.sql';
    PostgreSQL::Test::Utils::append_to_file($file, $sql);
    my ($out, $err) = ('', '');
    my $h = IPC::Run::start(
        [ 'psql', '-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-d', $coord->connstr('postgres'), '-f', $file ],
        '>', \$out, '2>', \$err);
    return { harness => $h, out => \$out, err => \$err };
}

my ($rc, $out, $err);

# ---- the common path and the dry run ----

add_round(1, $due);
is( $coord->safe_psql('postgres', 'SELECT expired_count FROM expire_subscriptions(dry_run => true)'),
    $due, 'the dry run counts the due rows');
is($coord->safe_psql('postgres', 'SELECT expired_count FROM expire_subscriptions()'),
    $due, 'expire_subscriptions() expires every due row');
is(active_due(), '0', 'none is left due');

# ---- the guard and the log ----

add_round(6, 10);
($rc, $out, $err) = $coord->psql('postgres', q{
    SET subexpire.max_expired_per_run = 5;
    SELECT expired_count FROM expire_subscriptions();});
like($err, qr/refusing to expire 10 subscriptions, more than subexpire.max_expired_per_run \(5\)/,
    'subexpire.max_expired_per_run refuses a run that would expire more');
is(active_due(), '10', 'and nothing was changed');
my $log_offset = -s $coord->logfile;
$coord->safe_psql('postgres', q{
    SET subexpire.log_expired = on;
    SELECT expired_count FROM expire_subscriptions();});
my $lines = () = slurp_file($coord->logfile, $log_offset) =~
  /subexpire: expired subscription \(user_id\)=\([0-9a-f-]+\) in public.subscriptions/g;
is($lines, 10, 'subexpire.log_expired logs each expired row with its key');

# ---- a row held locked: the wait is bounded ----

add_round(2, $due);
my $locked = $coord->safe_psql('postgres', q{
    SELECT user_id FROM subscriptions WHERE status = 'active' AND expires_at <= now()
    ORDER BY expires_at OFFSET 7000 LIMIT 1});
my $holder = start_session(qq{
    SET application_name = 'holder';
    BEGIN;
    SELECT user_id FROM subscriptions WHERE user_id = '$locked' FOR UPDATE;
    SELECT pg_sleep(60);
});
ok( $coord->poll_query_until('postgres',
        "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'holder' AND wait_event = 'PgSleep'"),
    'another session holds a due row locked');
my $started = time;
($rc, $out, $err) = $coord->psql('postgres',
    'SELECT expired_count FROM expire_subscriptions()');
my $took = time - $started;
is($out, $due - 1, 'the run expired every other due row');
ok($took < 10, sprintf('it did not wait for the lock holder (%.1f s, the holder keeps it 60 s)', $took));
like($err, qr/1 due subscription in public.subscriptions was left active because another transaction held it locked/,
    'it warned about the locked row');
is( $coord->safe_psql('postgres',
        'SELECT skipped_locked FROM subexpire_runs ORDER BY run_id DESC LIMIT 1'),
    '1', 'its record counts the row as skipped');
is( $coord->safe_psql('postgres', "SELECT status FROM subscriptions WHERE user_id = '$locked'"),
    'active', 'the locked row is left active');
end_session($holder, 'holder');
is($coord->safe_psql('postgres', 'SELECT expired_count FROM expire_subscriptions()'),
    '1', 'the next run expires it');

# ---- the caller's lock_timeout is given back to the shards ----

# In the caller's transaction after a run, a statement on a row that
# another session holds for 2 s waits for it under the caller's own
# lock_timeout (5 s), not under the run's subexpire.lock_wait (500 ms).
add_round(7, 1000);
my $other = $coord->safe_psql('postgres', q{
    SELECT user_id FROM subscriptions WHERE status = 'active' ORDER BY expires_at DESC LIMIT 1});
my $briefly = start_session(qq{
    SET application_name = 'brief_holder';
    BEGIN;
    SELECT user_id FROM subscriptions WHERE user_id = '$other' FOR UPDATE;
    SELECT pg_sleep(2);
    COMMIT;
});
ok( $coord->poll_query_until('postgres',
        "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'brief_holder' AND wait_event = 'PgSleep'"),
    'another session holds a row for 2 s');
($rc, $out, $err) = $coord->psql('postgres', qq{
    SET lock_timeout = '5s';
    BEGIN;
    SELECT expired_count FROM expire_subscriptions();
    UPDATE subscriptions SET plan = 'premium' WHERE user_id = '$other';
    COMMIT;});
like($out, qr/^1000$/m, 'a run expired the due rows in that transaction');
is($rc, 0, 'in the same transaction, the caller\'s statement waited for the row under its own lock_timeout')
  or diag($err);
$briefly->{harness}->finish;
is($coord->safe_psql('postgres', "SELECT plan FROM subscriptions WHERE user_id = '$other'"),
    'premium', 'and changed it');

# ---- four manual runs at once ----

add_round(3, $due);
my $before = $coord->safe_psql('postgres', 'SELECT max(run_id) FROM subexpire_runs');
my @runs = map { start_session('SELECT expired_count FROM expire_subscriptions();') } 1 .. 4;
my $sum = 0;
for my $run (@runs)
{
    $run->{harness}->finish;
    chomp ${ $run->{out} };
    $sum += ${ $run->{out} };
}
is($sum, $due, 'four runs at once expired the due rows between them');
is(active_due(), '0', 'none is left due');
is( $coord->safe_psql('postgres',
        "SELECT count(*) || '/' || sum(expired_count) FROM subexpire_runs WHERE run_id > $before AND status = 'succeeded'"),
    "4/$due", 'four runs are recorded, and their counts add up');

# ---- a renewal committed while a run waits for the row ----

add_round(4, 100);
my $renewed = $coord->safe_psql('postgres', q{
    SELECT user_id FROM subscriptions WHERE status = 'active' AND expires_at <= now()
    ORDER BY expires_at LIMIT 1});
my $renewal = start_session(qq{
    SET application_name = 'renewal';
    BEGIN;
    UPDATE subscriptions SET expires_at = now() + interval '1 year' WHERE user_id = '$renewed';
    SELECT pg_sleep(2);
    COMMIT;
});
ok( $coord->poll_query_until('postgres',
        "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'renewal' AND wait_event = 'PgSleep'"),
    'a renewal holds a due row');
my $run = start_session(q{
    SET subexpire.lock_wait = '20s';
    SELECT expired_count FROM expire_subscriptions();
});
$renewal->{harness}->finish;
$run->{harness}->finish;
chomp ${ $run->{out} };
is(${ $run->{out} }, '99', 'the run waited for the renewal and expired the other rows');
is( $coord->safe_psql('postgres',
        "SELECT status || ' ' || (expires_at > now()) FROM subscriptions WHERE user_id = '$renewed'"),
    'active true', 'the renewed row is not expired');

# ---- the worker's batched run, and a SIGKILL in the middle of one ----

add_round(5, 100000);
$before = $coord->safe_psql('postgres', 'SELECT max(run_id) FROM subexpire_runs');
$coord->append_conf('postgresql.conf', "subexpire.batch_size = 200\nsubexpire.enabled = on\n");
$coord->reload;
ok( $coord->poll_query_until('postgres', qq{
        SELECT count(*) = 1 FROM subexpire_runs
        WHERE run_id > $before AND status = 'running' AND expired_count > 0}),
    'a worker run is expiring rows in batches');
my $crashed = $coord->safe_psql('postgres', qq{
    SELECT run_id FROM subexpire_runs WHERE run_id > $before AND status = 'running'});
my $pid = $coord->safe_psql('postgres',
    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'subexpire run'");
$log_offset = -s $coord->logfile;
kill 'KILL', $pid or die "could not kill $pid: $!";
$coord->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
ok(1, 'the coordinator\'s run worker was killed in the middle of its run');

ok( $coord->poll_query_until('postgres',
        "SELECT status = 'failed' FROM subexpire_runs WHERE run_id = $crashed"),
    'the interrupted run is marked failed when the worker comes back');
my $count = $coord->safe_psql('postgres',
    "SELECT expired_count FROM subexpire_runs WHERE run_id = $crashed");
my $rows = rows_of_run($crashed);
is($rows, $count, "the rows it expired are exactly its count ($count): no committed batch lost");
ok($count > 0 && $count < 100000 && $count % 200 == 0,
    'its count is whole committed batches, short of the backlog');
ok($coord->poll_query_until('postgres', "SELECT count(*) = 0 FROM subscriptions WHERE status = 'active' AND expires_at <= now()"),
    'the next runs expire the rest');
ok( $coord->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM subexpire_runs WHERE status = 'running'"),
    'no run is left running');
$coord->append_conf('postgresql.conf', "subexpire.enabled = off\n");
$coord->reload;
is( $coord->safe_psql('postgres', qq{
        SELECT count(*) FROM subexpire_runs
        WHERE run_id > $crashed AND trigger IN ('schedule', 'catch-up') AND status = 'succeeded'
          AND longest_batch IS NOT NULL}) > 0 ? 1 : 0,
    1, 'a worker run after it succeeded, in batches');

# ---- the records, the statistics and health, on the coordinator ----

is(records_untrue(), '0', 'every worker run\'s record agrees with the rows');
is( $coord->safe_psql('postgres', q{SELECT sum(expired_count) FROM subexpire_runs}),
    $coord->safe_psql('postgres', q{SELECT count(*) FROM subscriptions WHERE status = 'expired'}),
    'the runs\' counts add up to the rows expired: none twice');
is( $coord->safe_psql('postgres', 'SELECT count(*) FROM subexpire_runs WHERE status = \'running\''),
    '0', 'no record is left running');
ok($coord->safe_psql('postgres', 'SELECT runs_total > 0 AND due_now = 0 FROM subexpire_stats') eq 't',
    'subexpire_stats counts the runs, and nothing is due');
is( $coord->safe_psql('postgres', q{SELECT status FROM subexpire_health() WHERE check_name = 'index'}),
    'ok', 'subexpire_health() finds the index on the distributed table');

# ---- rows whose update fails: a trigger on the shards ----

# A BEFORE UPDATE trigger on the distributed table raises for the rows of
# plan 'poison'.  Citus creates a trigger on a distributed table only with
# citus.enable_unsafe_triggers on; it creates it on every shard, and its
# function on every worker.  A range of the function or of the worker's
# batches that fails is halved down to its row: every other row expires,
# and each failing row is left as it was, recorded with its key, counted
# in skipped_failed, and tried again by the next run.
$coord->safe_psql('postgres', q{
    CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.plan = 'poison' THEN
            RAISE EXCEPTION 'subscription % is poisoned', NEW.user_id;
        END IF;
        RETURN NEW;
    END $$;
});
($rc, $out, $err) = $coord->psql('postgres', q{
    CREATE TRIGGER poison BEFORE UPDATE ON subscriptions FOR EACH ROW EXECUTE FUNCTION poison()});
like($err, qr/triggers are not supported on distributed tables/,
    'Citus refuses a trigger on a distributed table by default');
$coord->safe_psql('postgres', q{
    SET citus.enable_unsafe_triggers = on;
    CREATE TRIGGER poison BEFORE UPDATE ON subscriptions FOR EACH ROW EXECUTE FUNCTION poison();
});
my $shard_triggers = 0;
$shard_triggers += $_->safe_psql('postgres',
    q{SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'poison\_%'}) for @workers;
is($shard_triggers, 32, 'with citus.enable_unsafe_triggers, the trigger is on every shard');

my $poisoned_due = 2000;

# The rows of day $k of 2000, as a condition.
sub of_day
{
    my ($k) = @_;
    return "expires_at >= '2000-01-01 00:00+00'::timestamptz + $k * interval '1 day' "
      . "AND expires_at < '2000-01-01 00:00+00'::timestamptz + ($k + 1) * interval '1 day'";
}

# $poisoned_due due rows on day $k of 2000, every 400th of them (by expiry)
# poisoned; failing_rows (on the coordinator) keeps those as they are.
sub add_poisoned_round
{
    my ($k) = @_;
    $coord->safe_psql('postgres', qq{
        INSERT INTO subscriptions (user_id, plan, status, expires_at)
        SELECT gen_random_uuid(), CASE WHEN g % 400 = 200 THEN 'poison' ELSE 'free' END, 'active',
               '2000-01-01 00:00+00'::timestamptz + $k * interval '1 day' + g * interval '1 second'
        FROM generate_series(1, $poisoned_due) g;
        DROP TABLE IF EXISTS failing_rows;
        CREATE TABLE failing_rows AS
            SELECT user_id, status, plan, updated_at FROM subscriptions WHERE plan = 'poison';
    });
    return $coord->safe_psql('postgres', 'SELECT count(*) FROM failing_rows');
}

# The rows of day $k against failing_rows, in one statement: "rows
# expired, other rows not expired, failing rows exactly as they were,
# failing rows changed".  (The distributed side is a CTE, an intermediate
# result on the coordinator.)
sub poisoned_rows_now
{
    my ($k) = @_;
    return join ' ', split /\|/, $coord->safe_psql('postgres', q{
        WITH s AS MATERIALIZED (SELECT user_id, status, plan, updated_at FROM subscriptions
                                WHERE } . of_day($k) . q{),
             f AS MATERIALIZED (SELECT * FROM failing_rows)
        SELECT count(*) FILTER (WHERE f.user_id IS NULL AND s.status = 'expired'),
               count(*) FILTER (WHERE f.user_id IS NULL AND s.status <> 'expired'),
               count(*) FILTER (WHERE f.user_id IS NOT NULL
                   AND (s.status, s.plan, s.updated_at) IS NOT DISTINCT FROM (f.status, f.plan, f.updated_at)),
               count(*) FILTER (WHERE f.user_id IS NOT NULL
                   AND (s.status, s.plan, s.updated_at) IS DISTINCT FROM (f.status, f.plan, f.updated_at))
        FROM s LEFT JOIN f USING (user_id)});
}

# Run $run's record and its rule's: "status expired skipped_failed
# skipped_locked rule_expired rule_skipped_failed".
sub poisoned_records
{
    my ($run) = @_;
    return join ' ', split /\|/, $coord->safe_psql('postgres', qq{
        SELECT r.status, r.expired_count, r.skipped_failed, r.skipped_locked,
               rr.expired_count, rr.skipped_failed
        FROM subexpire_runs r JOIN subexpire_run_rules rr USING (run_id)
        WHERE r.run_id = $run AND rr.rule_name = 'default'});
}

# Run $run's row errors against failing_rows: "records, distinct keys,
# failing rows without a record, records of rows that did not fail,
# records with another rule or error".
sub poisoned_row_errors
{
    my ($run) = @_;
    return join ' ', split /\|/, $coord->safe_psql('postgres', qq{
        WITH e AS (SELECT * FROM subexpire_row_errors WHERE run_id = $run),
             f AS (SELECT jsonb_build_object('user_id', user_id) AS row_key FROM failing_rows)
        SELECT (SELECT count(*) FROM e), (SELECT count(DISTINCT row_key) FROM e),
               count(*) FILTER (WHERE e.run_id IS NULL),
               count(*) FILTER (WHERE f.row_key IS NULL),
               count(*) FILTER (WHERE e.run_id IS NOT NULL
                   AND (e.rule_name, e.error) IS DISTINCT FROM
                       ('default', 'subscription ' || (e.row_key->>'user_id') || ' is poisoned'))
        FROM e FULL JOIN f ON e.row_key = f.row_key});
}

sub max_run_id { return $coord->safe_psql('postgres', 'SELECT max(run_id) FROM subexpire_runs'); }

my $poisoned = add_poisoned_round(12);
my $others = $poisoned_due - $poisoned;
is($poisoned, '5', "5 of the $poisoned_due due rows are poisoned");
($rc, $out, $err) = $coord->psql('postgres', 'SELECT expired_count FROM expire_subscriptions()');
my $poisoned_run = max_run_id();
is($out, $others, 'failing rows: the function expired every other row');
like($err,
    qr/WARNING:  5 due subscriptions could not be expired and were left as they were\nDETAIL:  Updating a row of public\.subscriptions under rule "default" failed: subscription [0-9a-f-]{36} is poisoned\nHINT:  subexpire_row_errors has each row's key and error for run $poisoned_run; the next run tries them again\./,
    'failing rows: the function warned, with the first error');
is(poisoned_rows_now(12), "$others 0 5 0",
    'failing rows: every other row expired, every failing row exactly as it was');
is(poisoned_records($poisoned_run), "succeeded $others 5 0 $others 5",
    'failing rows: the run and its rule count them in skipped_failed, beside the rows expired');
is(poisoned_row_errors($poisoned_run), '5 5 0 0 0',
    'failing rows: subexpire_row_errors has exactly their keys, with their errors');
($rc, $out, $err) = $coord->psql('postgres', 'SELECT expired_count FROM expire_subscriptions()');
$poisoned_run = max_run_id();
is($out, '0', 'failing rows: a second run expires nothing');
is(poisoned_records($poisoned_run), 'succeeded 0 5 0 0 5', 'failing rows: and counts them again');
is(poisoned_row_errors($poisoned_run), '5 5 0 0 0', 'failing rows: and records them again, under its run');
is(poisoned_rows_now(12), "$others 0 5 0", 'failing rows: still as they were');
$coord->safe_psql('postgres', q{UPDATE subscriptions SET plan = 'free' WHERE plan = 'poison'});
is($coord->safe_psql('postgres', 'SELECT expired_count FROM expire_subscriptions()'),
    '5', 'failing rows: their data fixed, a run expires them');
$poisoned_run = max_run_id();
is(poisoned_records($poisoned_run), 'succeeded 5 0 0 5 0', 'failing rows: and counts no failure');
is($coord->safe_psql('postgres', "SELECT count(*) FROM subexpire_row_errors WHERE run_id = $poisoned_run"),
    '0', 'failing rows: nor records one');

# The worker's batches (of 200 rows here): its first run, and the next,
# which tries the failing rows again.
$poisoned = add_poisoned_round(13);
my $poisoned_before = max_run_id();
$log_offset = -s $coord->logfile;
reload_with($coord, 'subexpire.enabled', 'on');
ok( $coord->poll_query_until('postgres',
        "SELECT count(*) >= 2 FROM subexpire_runs WHERE run_id > $poisoned_before AND status <> 'running'"),
    'failing rows: two worker runs ended');
reload_with($coord, 'subexpire.enabled', 'off');
$coord->poll_query_until('postgres',
    "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'subexpire run'")
  or die 'the run worker did not end';
my ($first_poisoned, $next_poisoned) = split / /, $coord->safe_psql('postgres', qq{
    SELECT string_agg(run_id::text, ' ' ORDER BY run_id)
    FROM (SELECT run_id FROM subexpire_runs WHERE run_id > $poisoned_before
          ORDER BY run_id LIMIT 2) AS r});
is(poisoned_rows_now(13), "$others 0 5 0",
    'failing rows: the worker expired every other row, every failing row exactly as it was');
is(poisoned_records($first_poisoned), "succeeded $others 5 0 $others 5",
    "failing rows: the worker's first run and its rule count them in skipped_failed");
is(rows_of_run($first_poisoned), $others, 'failing rows: the rows it expired are its count');
is(poisoned_row_errors($first_poisoned), '5 5 0 0 0',
    'failing rows: subexpire_row_errors has exactly their keys, with their errors');
is(poisoned_records($next_poisoned), 'succeeded 0 5 0 0 5',
    "failing rows: the worker's next run tries them again");
is(poisoned_row_errors($next_poisoned), '5 5 0 0 0', 'failing rows: and records them again, under its run');
ok( $coord->log_contains(
        qr/LOG:  subexpire: (?:schedule|catch-up) run $first_poisoned expired $others subscriptions due at [^\n;]* in [0-9.]+ s; 5 failed and were left as they were\n/,
        $log_offset),
    "failing rows: the worker's LOG line says how many failed");
$coord->safe_psql('postgres', q{UPDATE subscriptions SET plan = 'free' WHERE plan = 'poison'});
$poisoned_before = max_run_id();
reload_with($coord, 'subexpire.enabled', 'on');
ok( $coord->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM subscriptions WHERE status = 'active' AND expires_at <= now()"),
    'failing rows: their data fixed, the worker expires them');
reload_with($coord, 'subexpire.enabled', 'off');
$coord->poll_query_until('postgres',
    "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'subexpire run'")
  or die 'the run worker did not end';
is( $coord->safe_psql('postgres', qq{
        SELECT string_agg(expired_count || '/' || skipped_failed, ' ')
               || ' ' || (SELECT count(*) FROM subexpire_row_errors WHERE run_id > $poisoned_before)
        FROM subexpire_runs WHERE run_id > $poisoned_before AND expired_count > 0}),
    '5/0 0', 'failing rows: in one run, recording no failure');
# Dropping the trigger takes the setting too.
$coord->safe_psql('postgres', q{
    SET citus.enable_unsafe_triggers = on;
    DROP TRIGGER poison ON subscriptions;
    DROP TABLE failing_rows;
});

# ---- rules on the distributed table ----

# Two chained rules, the second with set_columns: by the function, then by
# the worker's batches.
$coord->safe_psql('postgres', q{
    INSERT INTO subscriptions (user_id, status, plan, expires_at)
    SELECT gen_random_uuid(), 'trialing', 'premium', now() - interval '1 day'
    FROM generate_series(1, 3000);
    INSERT INTO subexpire_rules (rule_name, target_table, from_status, to_status, run_order)
    VALUES ('trial-end', 'public.subscriptions', 'trialing', 'lapsed', 10);
    INSERT INTO subexpire_rules (rule_name, target_table, from_status, to_status,
                                 set_columns, run_order)
    VALUES ('lapse-end', 'public.subscriptions', 'lapsed', 'canceled', '{"plan": "free"}', 20);
});
my ($citus_ret, $citus_out, $citus_err) = $coord->psql('postgres', q{
    INSERT INTO subexpire_rules (rule_name, target_table, set_columns)
    VALUES ('move', 'public.subscriptions', '{"user_id": "00000000-0000-0000-0000-000000000000"}')});
like($citus_err, qr/cannot set column "user_id" of public\.subscriptions: it is the table's distribution column/,
    'set_columns may not name the distribution column');
is($coord->safe_psql('postgres', 'SELECT expired_count FROM expire_subscriptions()'),
    '6000', 'the function runs both rules on the distributed table: each row moved twice');
is( $coord->safe_psql('postgres', q{
        SELECT string_agg(rule_name || '=' || expired_count, ' ' ORDER BY rule_name)
        FROM subexpire_run_rules WHERE run_id = (SELECT max(run_id) FROM subexpire_runs)}),
    'lapse-end=3000 trial-end=3000', "each rule's record counts its rows");
is( $coord->safe_psql('postgres',
        "SELECT count(*) FROM subscriptions WHERE status = 'canceled' AND plan = 'free'"),
    '3000', 'with the plan set by set_columns on the shards');

$coord->safe_psql('postgres', q{
    INSERT INTO subscriptions (user_id, status, plan, expires_at)
    SELECT gen_random_uuid(), 'trialing', 'premium', now() - interval '1 day'
    FROM generate_series(1, 3000);
});
$before = $coord->safe_psql('postgres', 'SELECT max(run_id) FROM subexpire_runs');
$coord->append_conf('postgresql.conf', "subexpire.enabled = on\n");
$coord->reload;
ok( $coord->poll_query_until('postgres', qq{
        SELECT count(*) > 0 FROM subexpire_runs
        WHERE run_id > $before AND status <> 'running' AND expired_count > 0}),
    'a worker run expired rows under the rules');
$coord->append_conf('postgresql.conf', "subexpire.enabled = off\n");
$coord->reload;
my $rules_run = $coord->safe_psql('postgres', qq{
    SELECT min(run_id) FROM subexpire_runs
    WHERE run_id > $before AND status <> 'running' AND expired_count > 0});
is( $coord->safe_psql('postgres', qq{
        SELECT r.status || ' ' || string_agg(rr.rule_name || '=' || rr.expired_count, ' ' ORDER BY rr.rule_name)
        FROM subexpire_runs r JOIN subexpire_run_rules rr USING (run_id)
        WHERE run_id = $rules_run GROUP BY r.status}),
    'succeeded lapse-end=3000 trial-end=3000', "the worker's batches ran both rules, each counted");
is( $coord->safe_psql('postgres',
        "SELECT count(*) FROM subscriptions WHERE status IN ('trialing', 'lapsed')"),
    '0', 'no row is left between the rules');

# ---- events of a rule on the distributed table ----

# A rule with emit_events beside the two: one event for each row it
# expires, written on the coordinator in the transaction that expired the
# row, by the function's common path, its locked-rows path, and the
# worker's batches (with a row held locked too).
$coord->safe_psql('postgres', q{
    INSERT INTO subexpire_rules (rule_name, target_table, emit_events, run_order)
    VALUES ('period-end', 'public.subscriptions', true, 30);
});

# The rows of round $k, by their expiry, as a condition on $column.
sub in_round
{
    my ($k, $column) = @_;
    return "$column >= '2000-01-01 00:00+00'::timestamptz + $k * interval '1 day' "
      . "AND $column < '2000-01-01 00:00+00'::timestamptz + ($k + 1) * interval '1 day'";
}

# The expired rows of round $k against the events of its rows, in one
# statement: "rows events keys rows-without-event events-without-row
# events-that-say-otherwise".  (The distributed side is a CTE, an
# intermediate result on the coordinator, where the events are.)
sub events_against_rows
{
    my ($k) = @_;
    return join ' ', split /\|/, $coord->safe_psql('postgres', q{
        WITH s AS MATERIALIZED (SELECT user_id, expires_at, updated_at FROM subscriptions
                                WHERE status = 'expired' AND } . in_round($k, 'expires_at') . q{),
             e AS MATERIALIZED (SELECT * FROM subexpire_events WHERE } . in_round($k, 'expires_at') . q{)
        SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM e),
               (SELECT count(DISTINCT row_key) FROM e),
               count(*) FILTER (WHERE e.event_id IS NULL),
               count(*) FILTER (WHERE s.user_id IS NULL),
               count(*) FILTER (WHERE s.user_id IS NOT NULL AND e.event_id IS NOT NULL
                   AND (e.rule_name, e.target_table, e.from_status, e.to_status,
                        e.expires_at, e.expired_at)
                       IS DISTINCT FROM ('period-end', 'public.subscriptions', 'active',
                                         'expired', s.expires_at, s.updated_at))
        FROM s FULL JOIN e ON e.row_key = jsonb_build_object('user_id', s.user_id)});
}

sub events_of_run
{
    my ($run) = @_;
    return $coord->safe_psql('postgres', "SELECT count(*) FROM subexpire_events WHERE run_id = $run");
}

sub last_run { return $coord->safe_psql('postgres', 'SELECT max(run_id) FROM subexpire_runs'); }

# Hold the due row at $offset in expiry order locked from another session
# (events_holder) until end_session(); returns its user_id and the session.
sub hold_due_row
{
    my ($offset) = @_;
    my $user_id = $coord->safe_psql('postgres', qq{
        SELECT user_id FROM subscriptions WHERE status = 'active' AND expires_at <= now()
        ORDER BY expires_at OFFSET $offset LIMIT 1});
    my $session = start_session(qq{
        SET application_name = 'events_holder';
        BEGIN;
        SELECT user_id FROM subscriptions WHERE user_id = '$user_id' FOR UPDATE;
        SELECT pg_sleep(60);
    });
    ok( $coord->poll_query_until('postgres',
            "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'events_holder' AND wait_event = 'PgSleep'"),
        'another session holds a due row locked');
    return ($user_id, $session);
}

# The common path.
add_round(8, 5000);
is($coord->safe_psql('postgres', 'SELECT expired_count FROM expire_subscriptions()'),
    '5000', 'the function expires the due rows under the rule with events');
is(events_of_run(last_run()), '5000', 'its run wrote an event for each on the coordinator');
is(events_against_rows(8), '5000 5000 5000 0 0 0',
    'the events match the expired rows one to one by key, each with its row\'s expiry and the run\'s time');

# The locked-rows path.
add_round(9, 5000);
($locked, $holder) = hold_due_row(2000);
($rc, $out, $err) = $coord->psql('postgres', 'SELECT expired_count FROM expire_subscriptions()');
is($out, '4999', 'the function expired every other due row');
is( $coord->safe_psql('postgres', 'SELECT skipped_locked FROM subexpire_runs ORDER BY run_id DESC LIMIT 1'),
    '1', 'and left the locked one, counted: the locked-rows path');
is(events_of_run(last_run()), '4999', 'its run wrote an event for each row it expired');
is( $coord->safe_psql('postgres',
        "SELECT count(*) FROM subexpire_events WHERE row_key = jsonb_build_object('user_id', '$locked'::uuid)"),
    '0', 'and none for the locked row');
is(events_against_rows(9), '4999 4999 4999 0 0 0', 'the events match the expired rows one to one');
end_session($holder, 'events_holder');
is($coord->safe_psql('postgres', 'SELECT expired_count FROM expire_subscriptions()'),
    '1', 'once released, the next run expires the row');
is( $coord->safe_psql('postgres',
        "SELECT string_agg(run_id::text, ',') FROM subexpire_events WHERE row_key = jsonb_build_object('user_id', '$locked'::uuid)"),
    last_run(), 'and writes its one event');
is(events_against_rows(9), '5000 5000 5000 0 0 0', 'the events match the expired rows one to one');

# The worker's batches, one row held locked while they run.
add_round(10, 20000);
($locked, $holder) = hold_due_row(9000);

# Turn the worker on until a run after run $after has expired rows and
# ended, then off; returns that run's id.
sub worker_run_after
{
    my ($after) = @_;
    my $ended = "run_id > $after AND status <> 'running' AND expired_count > 0";
    $coord->append_conf('postgresql.conf', "subexpire.enabled = on\n");
    $coord->reload;
    $coord->poll_query_until('postgres', "SELECT count(*) > 0 FROM subexpire_runs WHERE $ended")
      or die "no worker run after $after expired rows";
    $coord->append_conf('postgresql.conf', "subexpire.enabled = off\n");
    $coord->reload;
    $coord->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'subexpire run'")
      or die 'the run worker did not end';
    return $coord->safe_psql('postgres', "SELECT min(run_id) FROM subexpire_runs WHERE $ended");
}

my $events_run = worker_run_after(last_run());
is( $coord->safe_psql('postgres', qq{
        SELECT status || ' ' || expired_count || ' ' || skipped_locked || ' ' || (longest_batch IS NOT NULL)
        FROM subexpire_runs WHERE run_id = $events_run}),
    'succeeded 19999 1 true', 'a worker run expired the rows in batches, and left the locked one');
is(events_of_run($events_run), '19999', 'its batches wrote an event for each row they expired');
is( $coord->safe_psql('postgres',
        "SELECT count(*) FROM subexpire_events WHERE row_key = jsonb_build_object('user_id', '$locked'::uuid)"),
    '0', 'and none for the locked row');
is(events_against_rows(10), '19999 19999 19999 0 0 0', 'the events match the expired rows one to one');
end_session($holder, 'events_holder');
$events_run = worker_run_after($events_run);
is( $coord->safe_psql('postgres',
        "SELECT string_agg(run_id::text, ',') FROM subexpire_events WHERE row_key = jsonb_build_object('user_id', '$locked'::uuid)"),
    $events_run, 'once released, the next worker run expires the row and writes its one event');
is(events_against_rows(10), '20000 20000 20000 0 0 0', 'the events match the expired rows one to one');

# A SIGKILL of the coordinator's run worker in the middle of the batches:
# once the next runs have expired the rest and no prepared transaction is
# left on the workers, the killed run's committed batches have their
# events, and no row has more than one.
add_round(11, 60000);
$before = last_run();
$coord->append_conf('postgresql.conf', "subexpire.enabled = on\n");
$coord->reload;
ok( $coord->poll_query_until('postgres', qq{
        SELECT count(*) = 1 FROM subexpire_runs r JOIN subexpire_run_rules rr USING (run_id)
        WHERE r.run_id > $before AND r.status = 'running'
          AND rr.rule_name = 'period-end' AND rr.expired_count > 0}),
    'a worker run is expiring rows in batches under the rule with events');
$crashed = $coord->safe_psql('postgres', qq{
    SELECT run_id FROM subexpire_runs WHERE run_id > $before AND status = 'running'});
$pid = $coord->safe_psql('postgres',
    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'subexpire run'");
$log_offset = -s $coord->logfile;
kill 'KILL', $pid or die "could not kill $pid: $!";
$coord->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
ok( $coord->poll_query_until('postgres',
        "SELECT status = 'failed' FROM subexpire_runs WHERE run_id = $crashed"),
    'killed in the middle of its run, the run is marked failed when the worker comes back');
ok( $coord->poll_query_until('postgres', q{
        SELECT count(*) = 0 FROM subscriptions WHERE status = 'active' AND expires_at <= now()}),
    'the next runs expire the rest');
$coord->append_conf('postgresql.conf', "subexpire.enabled = off\n");
$coord->reload;
ok( $coord->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'subexpire run'"),
    'the run worker ended');
ok($_->poll_query_until('postgres', 'SELECT count(*) = 0 FROM pg_prepared_xacts'),
    $_->name . ': no prepared transaction is left') for @workers;
$count = $coord->safe_psql('postgres', qq{
    SELECT expired_count FROM subexpire_run_rules WHERE run_id = $crashed AND rule_name = 'period-end'});
ok($count > 0 && $count < 60000 && $count % 200 == 0,
    "the killed run committed whole batches, short of the round ($count rows)");
is(events_of_run($crashed), $count, 'it has an event for each row it committed, and no more');
is(events_against_rows(11), '60000 60000 60000 0 0 0',
    'the events of the round match its expired rows one to one');

# Every run under the rule: its record counts its events.
is( $coord->safe_psql('postgres', q{
        WITH e AS (SELECT run_id, count(*) AS n FROM subexpire_events GROUP BY run_id),
             r AS (SELECT run_id, expired_count AS n FROM subexpire_run_rules
                   WHERE rule_name = 'period-end' AND expired_count > 0)
        SELECT count(*) FROM e FULL JOIN r USING (run_id) WHERE e.n IS DISTINCT FROM r.n}),
    '0', "each run's record of the rule counts exactly its events");
is( $coord->safe_psql('postgres', "SELECT count(*) FROM subexpire_events WHERE rule_name <> 'period-end'"),
    '0', 'the rules without emit_events wrote none');

$_->stop for reverse @nodes;
done_testing();
