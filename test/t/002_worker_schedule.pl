# The background worker on a "2 seconds" schedule: it is visible and idle
# between runs; it works in a database created after the server started;
# a reload turns it off and on, changes the schedule and the role it runs
# as, with no restart; it comes back after a restart and after a crash.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('schedule');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'subexpire'
subexpire.schedule = '2 seconds'
timezone = 'UTC'
# PostgreSQL::Test::Cluster turns this off; the crash test below needs the
# postmaster to reinitialize, as it does by default.
restart_after_crash = on
});
$node->start;

my $db = 'jobs';

sub scheduler_pid
{
    return $node->safe_psql('postgres',
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'subexpire scheduler'");
}

# The server's clock, as a timestamptz literal.
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
      or die "the clock did not advance";
}

# Insert $n due rows, tagged by expires_at (batch $k expires on day $k of 2000).
sub add_due
{
    my ($k, $n) = @_;
    add_subscriptions($node, $db, $n,
        "'2000-01-01 00:00+00'::timestamptz + $k * interval '1 day'");
    return;
}

# How many rows of batch $k have the status $status.
sub batch_count
{
    my ($k, $status) = @_;
    return $node->safe_psql($db, qq{
        SELECT count(*) FROM subscriptions
        WHERE expires_at = '2000-01-01 00:00+00'::timestamptz + $k * interval '1 day'
          AND status = '$status'});
}

sub batch_expired_query
{
    my ($k, $n) = @_;
    return qq{SELECT count(*) = $n FROM subscriptions
        WHERE expires_at = '2000-01-01 00:00+00'::timestamptz + $k * interval '1 day'
          AND status = 'expired'};
}


# ---- the scheduler is there, connected to no database, and idle ----

ok( $node->poll_query_until('postgres',
        "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'subexpire scheduler'"),
    'the scheduler is in pg_stat_activity');
is( $node->safe_psql('postgres',
        "SELECT datname IS NULL FROM pg_stat_activity WHERE backend_type = 'subexpire scheduler'"),
    't', 'the scheduler is connected to no database');
# (The extension is not installed in the database "postgres" yet: a
# scheduler that retried at once instead of sleeping would never show it.)
ok( do {
        local $PostgreSQL::Test::Utils::timeout_default = 30;
        $node->poll_query_until('postgres', q{
        SELECT wait_event_type = 'Extension' AND wait_event = 'Extension'
        FROM pg_stat_activity WHERE backend_type = 'subexpire scheduler'})
    },
    'between runs the scheduler waits on an Extension wait event')
  or diag $node->safe_psql('postgres', q{
        SELECT string_agg(format('%s pid %s: %s/%s', backend_type, pid, wait_event_type, wait_event), E'\n')
        FROM pg_stat_activity WHERE backend_type LIKE 'subexpire%'});

# ---- a database created after the server started ----

my $bootstrap = $node->safe_psql('postgres',
    'SELECT rolname FROM pg_authid WHERE oid = 10');

$node->safe_psql('postgres', "CREATE DATABASE $db");
create_reference_schema($node, $db);
$node->safe_psql($db, q{
    CREATE EXTENSION subexpire;

    -- Who changed each row's status: the role the run was running as.
    CREATE TABLE who_log (sub_id uuid, who name);
    GRANT INSERT ON who_log TO PUBLIC;
    CREATE FUNCTION log_who() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO who_log VALUES (NEW.id, current_user);
        RETURN NULL;
    END $$;
    CREATE TRIGGER log_who AFTER UPDATE ON subscriptions
        FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
        EXECUTE FUNCTION log_who();

    -- Rows that are not due, in every way.
    WITH u AS (INSERT INTO users SELECT gen_random_uuid()
               FROM generate_series(1, 4) RETURNING id)
    INSERT INTO subscriptions (user_id, status, expires_at)
    SELECT id, s, e FROM (
        SELECT id, row_number() OVER () AS n FROM u) AS x
    JOIN (VALUES (1, 'active', '2099-01-01 00:00+00'::timestamptz),
                 (2, 'active', NULL),
                 (3, 'inactive', '2000-01-01 00:00+00'),
                 (4, 'pending', '2000-01-01 00:00+00')) AS v (n, s, e)
      USING (n);
});
add_due(1, 25);

reload_with($node, 'subexpire.database', $db);

ok($node->poll_query_until($db, batch_expired_query(1, 25)),
    'the worker expired the due rows of a database created after start');
is( $node->safe_psql($db, q{
        SELECT string_agg(format('%s/%s/%s/%s', "trigger", status, expired_count, skipped_locked), ',')
        FROM subexpire_runs WHERE expired_count > 0}),
    'schedule/succeeded/25/0',
    'one scheduled run expired them, succeeded, and says so');
is($node->safe_psql($db, 'SELECT sum(expired_count) FROM subexpire_runs'),
    '25', 'the runs account for every expired row');
is( $node->safe_psql($db,
        "SELECT count(*) FROM subscriptions WHERE status <> 'expired' AND updated_at > created_at"),
    '0', 'the rows that were not due were not touched');
is($node->safe_psql($db, 'SELECT count(*) FROM subscriptions WHERE status = \'expired\''),
    '25', 'nothing else was expired');
is($node->safe_psql($db, 'SELECT string_agg(DISTINCT who, \',\') FROM who_log'),
    $bootstrap, 'with subexpire.role empty the runs run as the bootstrap superuser');
ok( $node->poll_query_until($db, q{
        SELECT count(*) >= 2 FROM subexpire_runs
        WHERE "trigger" = 'schedule' AND status = 'succeeded'}),
    'the schedule keeps firing, one recorded run each time');

# ---- subexpire.enabled = off stops the runs; on starts them again ----

my $scheduler = scheduler_pid();
reload_with($node, 'subexpire.enabled', 'off');
my $t_off = server_now();
# A run that had already started when the reload arrived may finish; the
# rows of batch 2 come after it.
wait_until_past($t_off, 1);
add_due(2, 5);
wait_until_past($t_off, 8);
is( $node->safe_psql($db,
        "SELECT count(*) FROM subexpire_runs WHERE started_at > '$t_off'::timestamptz + interval '1 second'"),
    '0', 'no run for 7 s (3 periods) with subexpire.enabled = off');
is(batch_count(2, 'active'), '5', 'the rows that became due meanwhile are still active');
is(scheduler_pid(), $scheduler, 'the scheduler is still there, the same process');

my $t_on = server_now();
reload_with($node, 'subexpire.enabled', 'on');
ok($node->poll_query_until($db, batch_expired_query(2, 5)),
    'turned back on, the worker expires them');
is( $node->safe_psql($db, qq{
        SELECT format('%s/%s/%s', "trigger", status, expired_count)
        FROM subexpire_runs WHERE started_at > '$t_on' ORDER BY run_id LIMIT 1}),
    'catch-up/succeeded/5',
    'the first run after turning it back on is one catch-up run (times passed while off)');
ok( $node->poll_query_until($db, qq{
        SELECT count(*) >= 2 FROM subexpire_runs
        WHERE started_at > '$t_on' AND "trigger" = 'schedule' AND status = 'succeeded'}),
    'then scheduled runs resume');
is( $node->safe_psql($db,
        "SELECT count(*) FROM subexpire_runs WHERE started_at > '$t_on' AND \"trigger\" = 'catch-up'"),
    '1', 'only one catch-up run');

# ---- a reload that changes the schedule ----

# A cron time months away: the first of the month six months from now.
my $month = $node->safe_psql('postgres',
    "SELECT extract(month FROM now() + interval '6 months')::int");
my $far = "0 0 1 $month *";
reload_with($node, 'subexpire.schedule', $far);
my $t_far = server_now();
wait_until_past($t_far, 1);
add_due(3, 3);
wait_until_past($t_far, 8);
is( $node->safe_psql($db,
        "SELECT count(*) FROM subexpire_runs WHERE started_at > '$t_far'::timestamptz + interval '1 second'"),
    '0', "no run for 7 s once the schedule is '$far'");
is(batch_count(3, 'active'), '3', 'the rows that became due meanwhile are still active');

my $t_back = server_now();
reload_with($node, 'subexpire.schedule', '2 seconds');
ok($node->poll_query_until($db, batch_expired_query(3, 3)),
    "back to '2 seconds', the worker expires them");
is( $node->safe_psql($db, qq{
        SELECT format('%s/%s/%s', "trigger", status, expired_count)
        FROM subexpire_runs WHERE started_at > '$t_back' AND expired_count > 0}),
    'schedule/succeeded/3', 'by a scheduled run');

# ---- a reload that changes the role ----

$node->safe_psql($db, q{
    CREATE ROLE expirer LOGIN;
    GRANT SELECT, UPDATE ON subscriptions TO expirer;
});
reload_with($node, 'subexpire.role', 'expirer');
my $t_role = server_now();
wait_until_past($t_role, 1);
add_due(4, 7);
ok($node->poll_query_until($db, batch_expired_query(4, 7)),
    'with subexpire.role = expirer the worker expires the due rows');
is( $node->safe_psql($db, q{
        SELECT string_agg(DISTINCT w.who, ',') FROM who_log w JOIN subscriptions s ON s.id = w.sub_id
        WHERE s.expires_at = '2000-01-05 00:00+00'}),
    'postgres', "whose statements on the table act as the table's owner");
is( $node->safe_psql($db, qq{
        SELECT format('%s/%s/%s', "trigger", status, expired_count)
        FROM subexpire_runs WHERE started_at > '$t_role' AND expired_count > 0}),
    'schedule/succeeded/7', 'in a scheduled run that succeeded');

# ---- restart ----

$scheduler = scheduler_pid();
my $t_restart = server_now();
$node->restart;
ok( $node->poll_query_until('postgres', qq{
        SELECT count(*) = 1 FROM pg_stat_activity
        WHERE backend_type = 'subexpire scheduler' AND pid <> $scheduler}),
    'after a restart the scheduler is back');
add_due(5, 4);
ok($node->poll_query_until($db, batch_expired_query(5, 4)),
    'and expires the rows due');
ok( $node->poll_query_until($db, qq{
        SELECT count(*) >= 1 FROM subexpire_runs
        WHERE started_at > '$t_restart' AND "trigger" = 'schedule' AND status = 'succeeded'}),
    'scheduled runs resume after the restart');

# ---- SIGKILL of the scheduler: the postmaster reinitializes ----

$scheduler = scheduler_pid();
my $log_offset = -s $node->logfile;
my $t_kill = server_now();
kill 'KILL', $scheduler or die "could not kill $scheduler: $!";
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
ok( $node->poll_query_until('postgres', qq{
        SELECT count(*) = 1 FROM pg_stat_activity
        WHERE backend_type = 'subexpire scheduler' AND pid <> $scheduler}),
    'after SIGKILL of the scheduler and the reinitialization, the scheduler is back');
ok( $node->log_contains(qr/background worker "subexpire scheduler" \(PID $scheduler\) was terminated by signal 9/,
        $log_offset),
    'the log shows the killed scheduler');
add_due(6, 6);
ok($node->poll_query_until($db, batch_expired_query(6, 6)),
    'and it expires the rows due');
ok( $node->poll_query_until($db, qq{
        SELECT count(*) >= 1 FROM subexpire_runs
        WHERE started_at > '$t_kill' AND "trigger" = 'schedule' AND status = 'succeeded'}),
    'scheduled runs resume after the crash');

# ---- the record, overall ----

is( $node->safe_psql($db, q{
        SELECT (SELECT sum(expired_count) FROM subexpire_runs)
             = (SELECT count(*) FROM subscriptions WHERE status = 'expired')}),
    't', 'the runs account for every expired row');
is( $node->safe_psql($db, 'SELECT count(*) - count(DISTINCT sub_id) FROM who_log'),
    '0', 'no row changed status twice');
is( $node->safe_psql($db, q{
        SELECT count(*) FROM subexpire_runs
        WHERE status <> 'succeeded' AND error NOT LIKE 'interrupted:%'}),
    '0', 'every run succeeded (but one the restart or the crash may have interrupted)');

done_testing();
