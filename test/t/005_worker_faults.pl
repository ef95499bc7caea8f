# Faults the worker survives without a crash loop: the role, the database,
# the extension or the target table missing, or the role without CONNECT
# on the database (logged once, retried, and creating or granting the
# missing thing is enough: no restart), and a run that fails
# (recorded as failed, retried at the next scheduled time).  Last, a
# database missing at start-up: the first scheduled time after it appears
# runs the job.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('faults');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'subexpire'
subexpire.schedule = '2 seconds'
subexpire.enabled = off
timezone = 'UTC'
});
$node->start;

# Due rows of batch $k (they expire on day $k of 2000) in $db.
sub add_due
{
    my ($db, $k, $n) = @_;
    add_subscriptions($node, $db, $n,
        "'2000-01-01 00:00+00'::timestamptz + $k * interval '1 day'");
    return;
}

sub batch_expired_query
{
    my ($k, $n) = @_;
    return qq{SELECT count(*) = $n FROM subscriptions
        WHERE expires_at = '2000-01-01 00:00+00'::timestamptz + $k * interval '1 day'
          AND status = 'expired'};
}

sub active_in_batch
{
    my ($db, $k) = @_;
    return $node->safe_psql($db, qq{
        SELECT count(*) FROM subscriptions WHERE status = 'active'
          AND expires_at = '2000-01-01 00:00+00'::timestamptz + $k * interval '1 day'});
}

sub scheduler_pid
{
    return $node->safe_psql('postgres',
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'subexpire scheduler'");
}

sub server_now
{
    return $node->safe_psql('postgres', 'SELECT clock_timestamp()');
}

# Wait until the server's clock is $seconds past $since.
sub wait_until_past
{
    my ($since, $seconds) = @_;
    $node->poll_query_until('postgres',
        "SELECT clock_timestamp() > '$since'::timestamptz + interval '$seconds seconds'")
      or die 'the clock did not advance';
    return;
}



# A fault: with the settings that cause it in place, the worker logs
# $warning; wait for that.
sub wait_for_warning
{
    my ($what, $warning, $offset) = @_;
    $node->wait_for_log(qr/WARNING:  subexpire: cannot run the job: \Q$warning\E/, $offset);
    ok(1, "$what: the worker says so in the log");
    return;
}

# Then, over three periods and more: the warning is not repeated, the
# scheduler lives on, and $sample (what a run would change) stays the same.
sub check_fault_holds
{
    my ($what, $warning, $offset, $sample) = @_;
    my $pid    = scheduler_pid();
    my $before = $sample->();
    wait_until_past(server_now(), 7);
    is( count_in_log($node, qr/WARNING:  subexpire: cannot run the job: \Q$warning\E/, $offset),
        1, "$what: the warning is logged once, not at every retry");
    is(scheduler_pid(), $pid, "$what: the scheduler is the same process (no crash loop)");
    is( count_in_log($node, qr/background worker "subexpire scheduler" \(PID \d+\) (exited|was terminated)/, $offset),
        0, "$what: the scheduler did not exit");
    is($sample->(), $before, "$what: no run happened");
    return;
}

# What a run in "postgres" would change: the runs recorded there, and the
# rows of batch $k still active.
sub runs_and_active
{
    my ($k) = @_;
    return sub {
        $node->safe_psql('postgres', 'SELECT count(*) FROM subexpire_runs') . ' runs, '
          . active_in_batch('postgres', $k) . ' active';
    };
}

# ---- set-up: the worker works in "postgres" ----

create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', 'CREATE EXTENSION subexpire');
add_due('postgres', 1, 3);

# A database to copy (CREATE DATABASE ... TEMPLATE: the database, the
# extension and the table appear at once), one without the extension and
# one without the table.
$node->safe_psql('postgres', 'CREATE DATABASE tmpl');
create_reference_schema($node, 'tmpl');
$node->safe_psql('tmpl', 'CREATE EXTENSION subexpire');
add_due('tmpl', 9, 5);
$node->safe_psql('postgres', 'CREATE DATABASE noext');
create_reference_schema($node, 'noext');
add_due('noext', 9, 4);
$node->safe_psql('postgres', 'CREATE DATABASE notable');
$node->safe_psql('notable', 'CREATE EXTENSION subexpire');

reload_with($node, 'subexpire.enabled', 'on');
ok($node->poll_query_until('postgres', batch_expired_query(1, 3)),
    'the worker runs in the database "postgres"');
my $scheduler = scheduler_pid();
my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

# ---- a missing role ----

my $offset = -s $node->logfile;
my $warning = 'role "no_such_role" named by subexpire.role does not exist';
reload_with($node, 'subexpire.role', 'no_such_role');
wait_for_warning('missing role', $warning, $offset);
add_due('postgres', 2, 4);
check_fault_holds('missing role', $warning, $offset, runs_and_active(2));
is(active_in_batch('postgres', 2), '4', 'missing role: the rows due are still active');

$node->safe_psql('postgres', q{
    BEGIN;
    CREATE ROLE no_such_role LOGIN;
    GRANT SELECT, UPDATE ON subscriptions TO no_such_role;
    COMMIT;
});
ok($node->poll_query_until('postgres', batch_expired_query(2, 4)),
    'missing role: once created, the worker runs as it');
is( $node->safe_psql('postgres', q{
        SELECT format('%s/%s', "trigger", status) FROM subexpire_runs
        WHERE expired_count > 0 ORDER BY run_id DESC LIMIT 1}),
    'schedule/succeeded', 'missing role: in a scheduled run that succeeded');
# The scheduler says so when the run worker has ended, a little after the
# run's rows committed.
$node->wait_for_log(qr/LOG:  subexpire: runs can start again/, $offset);
ok($node->log_contains(qr/LOG:  subexpire: runs can start again/, $offset),
    'missing role: the log says runs can start again');

# ---- a role that may not connect to the database ----

# Found by the scheduler before it starts a run worker, whose connection
# would otherwise fail with a FATAL error at every retry.
$offset = -s $node->logfile;
$node->safe_psql('postgres', 'REVOKE CONNECT ON DATABASE postgres FROM PUBLIC');
$warning = 'role "no_such_role" named by subexpire.role may not connect to database "postgres"; '
  . 'GRANT CONNECT ON DATABASE postgres TO no_such_role';
wait_for_warning('no CONNECT', $warning, $offset);
add_due('postgres', 5, 2);
check_fault_holds('no CONNECT', $warning, $offset, runs_and_active(5));
is(count_in_log($node, qr/FATAL:  permission denied for database/, $offset),
    0, 'no CONNECT: no run worker was started only to be refused');
# Granted through a role it is a member of: the scheduler follows the
# membership as the connection would.
$node->safe_psql('postgres', q{
    CREATE ROLE may_connect NOLOGIN;
    GRANT CONNECT ON DATABASE postgres TO may_connect;
    GRANT may_connect TO no_such_role;
});
ok($node->poll_query_until('postgres', batch_expired_query(5, 2)),
    'no CONNECT: once granted (through a group role), the worker runs as the role');
$node->wait_for_log(qr/LOG:  subexpire: runs can start again/, $offset);
is( count_in_log($node, qr/LOG:  subexpire: runs can start again/, $offset),
    1, 'no CONNECT: the log says runs can start again');
$node->safe_psql('postgres', 'GRANT CONNECT ON DATABASE postgres TO PUBLIC');
reload_with($node, 'subexpire.role', '');

# ---- a missing database ----

$offset = -s $node->logfile;
$warning = 'database "not_yet" named by subexpire.database does not exist';
reload_with($node, 'subexpire.database', 'not_yet');
wait_for_warning('missing database', $warning, $offset);
check_fault_holds('missing database', $warning, $offset,
    sub {
        $node->safe_psql('postgres',
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'subexpire run'");
    });
$node->safe_psql('postgres', 'CREATE DATABASE not_yet TEMPLATE tmpl');
ok($node->poll_query_until('not_yet', batch_expired_query(9, 5)),
    'missing database: once created (with the extension and the table), the worker runs there');
is( $node->safe_psql('not_yet', q{
        SELECT format('%s/%s/%s', "trigger", status, expired_count) FROM subexpire_runs
        WHERE expired_count > 0}),
    'schedule/succeeded/5', 'missing database: a scheduled run that succeeded');

# ---- a missing extension ----

$offset = -s $node->logfile;
$warning = 'extension subexpire is not installed in database "noext"';
reload_with($node, 'subexpire.database', 'noext');
wait_for_warning('missing extension', $warning, $offset);
check_fault_holds('missing extension', $warning, $offset,
    sub { active_in_batch('noext', 9) });
is(active_in_batch('noext', 9), '4', 'missing extension: the rows due are still active');
$node->safe_psql('noext', 'CREATE EXTENSION subexpire');
ok($node->poll_query_until('noext', batch_expired_query(9, 4)),
    'missing extension: once created, the worker runs');
is( $node->safe_psql('noext', q{
        SELECT format('%s/%s/%s', "trigger", status, expired_count) FROM subexpire_runs
        WHERE expired_count > 0}),
    'schedule/succeeded/4', 'missing extension: a scheduled run that succeeded');

# ---- a missing target table ----

$offset = -s $node->logfile;
$warning = 'table public.subscriptions named by subexpire.target_table does not exist';
reload_with($node, 'subexpire.database', 'notable');
wait_for_warning('missing table', $warning, $offset);
check_fault_holds('missing table', $warning, $offset,
    sub { $node->safe_psql('notable', 'SELECT count(*) FROM subexpire_runs') });
is($node->safe_psql('notable', 'SELECT count(*) FROM subexpire_runs'),
    '0', 'missing table: no run was recorded');
$node->safe_psql('notable', 'BEGIN; '
      . slurp_file("$FindBin::Bin/../reference_schema.sql") . q{
    WITH u AS (INSERT INTO users SELECT gen_random_uuid()
               FROM generate_series(1, 6) RETURNING id)
    INSERT INTO subscriptions (user_id, status, expires_at)
    SELECT id, 'active', '2000-01-10 00:00+00' FROM u;
    COMMIT;
});
ok($node->poll_query_until('notable', batch_expired_query(9, 6)),
    'missing table: once created, the worker runs');
is( $node->safe_psql('notable', q{
        SELECT format('%s/%s/%s', "trigger", status, expired_count) FROM subexpire_runs
        WHERE expired_count > 0}),
    'schedule/succeeded/6', 'missing table: a scheduled run that succeeded');

# ---- a run that fails ----

# By an error that is not about a row (its SQLSTATE): rows whose own
# update fails are left out and the run goes on (028_failed_rows.pl).

reload_with($node, 'subexpire.database', 'postgres');
$offset = -s $node->logfile;
my $last = $node->safe_psql('postgres', 'SELECT max(run_id) FROM subexpire_runs');
$node->safe_psql('postgres', q{
    CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'no expiry today' USING ERRCODE = 'object_not_in_prerequisite_state';
    END $$;
    CREATE TRIGGER refuse BEFORE UPDATE ON subscriptions
        FOR EACH ROW EXECUTE FUNCTION refuse();
});
add_due('postgres', 3, 2);
ok( $node->poll_query_until('postgres', qq{
        SELECT count(*) >= 2 FROM subexpire_runs WHERE run_id > $last AND status = 'failed'}),
    'failing run: recorded as failed, and the next scheduled run is attempted');
is( $node->safe_psql('postgres', qq{
        SELECT format('%s/%s/%s/%s', "trigger", status, expired_count, finished_at IS NOT NULL)
        FROM subexpire_runs WHERE run_id > $last ORDER BY run_id LIMIT 1}),
    'schedule/failed/0/t', 'failing run: the record');
like( $node->safe_psql('postgres',
        "SELECT error FROM subexpire_runs WHERE run_id > $last ORDER BY run_id LIMIT 1"),
    qr/no expiry today/, 'failing run: the record has the error');
ok($node->log_contains(qr/LOG:  subexpire: schedule run failed: no expiry today/, $offset),
    'failing run: the log says so');
is(active_in_batch('postgres', 3), '2', 'failing run: the rows stay active');
is(scheduler_pid(), $scheduler, 'failing run: the scheduler is the same process');

$node->safe_psql('postgres', 'DROP TRIGGER refuse ON subscriptions');
ok($node->poll_query_until('postgres', batch_expired_query(3, 2)),
    'failing run: without the trigger the next run succeeds');
is( $node->safe_psql('postgres', qq{
        SELECT format('%s/%s/%s', "trigger", status, expired_count)
        FROM subexpire_runs WHERE run_id > $last AND expired_count > 0}),
    'schedule/succeeded/2', 'failing run: the successful run is a scheduled one');

# ---- through all of it ----

is(scheduler_pid(), $scheduler, 'the scheduler was the same process all along');
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
    $started, 'and the server was never restarted');

# ---- a database missing at start-up: the first scheduled time after it
# appears runs the job ----

# At start-up the scheduler first checks for a catch-up; while the database
# is missing that check waits.  When the database appears, the next
# scheduled time must run the job, not only do the start-up check: with a
# daily schedule that time is the day's run.
$node->append_conf('postgresql.conf', "subexpire.database = 'late'\n");
$offset = -s $node->logfile;
$node->restart;
wait_for_warning('missing at start-up',
    'database "late" named by subexpire.database does not exist', $offset);
# Create it well inside a 2-second period, so that the period it is created
# in is known.
$node->poll_query_until('postgres',
    "SELECT extract(epoch FROM clock_timestamp()) % 2 BETWEEN 0.2 AND 0.8")
  or die 'the clock did not come round';
my $before = server_now();
$node->safe_psql('postgres', 'CREATE DATABASE late TEMPLATE tmpl');
my $after = server_now();
my $first_time = $node->safe_psql('postgres',
    "SELECT subexpire_next_runs('2 seconds', 'UTC', '$before', 1)");
is( $node->safe_psql('postgres', "SELECT '$after'::timestamptz < '$first_time'"),
    't', "missing at start-up: the database appeared before the scheduled time $first_time");
ok($node->poll_query_until('late', batch_expired_query(9, 5)),
    'missing at start-up: once the database appears, the worker runs there');
is( $node->safe_psql('late', qq{
        SELECT format('%s/%s/%s', "trigger", status, expired_count) FROM subexpire_runs
        WHERE expired_count > 0}),
    'schedule/succeeded/5', 'missing at start-up: a scheduled run that succeeded');
my $first_run = $node->safe_psql('late', 'SELECT min(started_at) FROM subexpire_runs');
is( $node->safe_psql('late',
        "SELECT '$first_run'::timestamptz < '$first_time'::timestamptz + interval '1 second'"),
    't',
    "missing at start-up: the first scheduled time after the database appeared ($first_time) ran the job (first run started at $first_run)");

done_testing();
