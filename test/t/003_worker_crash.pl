# A crash in the middle of the worker's batched run: SIGKILL of the run
# worker (the postmaster reinitializes), then an immediate shutdown.  The
# interrupted run is marked failed when the worker comes back, its record
# counts exactly the rows its committed batches expired (no committed batch
# lost, none counted that was not committed), and the next runs expire the
# rest: every due row once, the runs' counts adding up to the rows expired.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $due   = 300000;
my $batch = 10000;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'subexpire'
subexpire.enabled = off
subexpire.schedule = '2 seconds'
subexpire.batch_size = $batch
# PostgreSQL::Test::Cluster turns this off; here the postmaster must
# reinitialize after the SIGKILL, as it does by default.
restart_after_crash = on
});
$node->start;

create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', q{
    CREATE EXTENSION subexpire;
    -- One row here for each status change, committed with it.
    CREATE TABLE changes (id uuid NOT NULL, old_status text, new_status text);
    CREATE FUNCTION note_changes() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO changes
        SELECT n.id, o.status, n.status
        FROM new_rows n JOIN old_rows o USING (id)
        WHERE o.status IS DISTINCT FROM n.status;
        RETURN NULL;
    END $$;
    CREATE TRIGGER note_changes AFTER UPDATE ON subscriptions
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION note_changes();
});

# Due rows of round $k: they expire on day $k of 2000, so the rounds can
# be told apart.
sub add_round
{
    my ($k) = @_;
    add_subscriptions($node, 'postgres', $due,
        "'2000-01-01 00:00+00'::timestamptz + $k * interval '1 day'");
    return;
}

# Every run's record against the rows: a run sets updated_at to its as_of,
# so the rows each run expired can be counted.  Holds in any snapshot.
sub records_untrue
{
    return $node->safe_psql('postgres', q{
        SELECT count(*) FROM subexpire_runs r
        WHERE r.expired_count <> (SELECT count(*) FROM subscriptions s
                                  WHERE s.status = 'expired' AND s.updated_at = r.as_of)});
}

# Wait until a run of the worker is in the middle of the backlog; return
# its run_id.
sub wait_for_batched_run
{
    my ($after_run) = @_;
    $node->poll_query_until('postgres', qq{
        SELECT count(*) = 1 FROM subexpire_runs
        WHERE run_id > $after_run AND status = 'running' AND expired_count > 0})
      or die 'no run got under way';
    return $node->safe_psql('postgres', qq{
        SELECT run_id FROM subexpire_runs
        WHERE run_id > $after_run AND status = 'running' AND expired_count > 0});
}

# What the interrupted run $run looks like once the worker is back, and
# what it looks like when everything due has been expired.
sub check_after_crash
{
    my ($what, $run, $total) = @_;

    ok( $node->poll_query_until('postgres',
            "SELECT status = 'failed' FROM subexpire_runs WHERE run_id = $run"),
        "$what: the interrupted run is marked failed when the worker comes back");
    like( $node->safe_psql('postgres', "SELECT error FROM subexpire_runs WHERE run_id = $run"),
        qr/interrupted/, "$what: its error says it was interrupted");
    my ($count, $rows) = split /\|/, $node->safe_psql('postgres', qq{
        SELECT r.expired_count,
               (SELECT count(*) FROM subscriptions s
                WHERE s.status = 'expired' AND s.updated_at = r.as_of)
        FROM subexpire_runs r WHERE r.run_id = $run});
    is($rows, $count,
        "$what: the rows the interrupted run expired are exactly its count ($count): no committed batch lost");
    ok($count > 0 && $count < $due && $count % $batch == 0,
        "$what: its count is whole committed batches, short of the backlog");
    is(records_untrue(), '0', "$what: every run's record agrees with the rows");

    ok( $node->poll_query_until('postgres',
            "SELECT count(*) = 0 FROM subscriptions WHERE status = 'active'"),
        "$what: eventually every due row is expired");
    ok( $node->poll_query_until('postgres',
            "SELECT count(*) = 0 FROM subexpire_runs WHERE status = 'running'"),
        "$what: no run is left running");
    is($node->safe_psql('postgres', "SELECT count(*) FROM subscriptions WHERE status = 'expired'"),
        $total, "$what: $total rows expired");
    is( $node->safe_psql('postgres', q{
            SELECT count(*) || '/' || count(DISTINCT id) FROM changes
            WHERE old_status = 'active' AND new_status = 'expired'}),
        "$total/$total", "$what: each row changed from active to expired once");
    is($node->safe_psql('postgres', 'SELECT count(*) FROM changes'),
        $total, "$what: and no other status change happened");
    is($node->safe_psql('postgres', 'SELECT sum(expired_count) FROM subexpire_runs'),
        $total, "$what: the runs' counts add up to the rows expired");
    is(records_untrue(), '0', "$what: every run's record agrees with the rows");
    # The scheduled runs go on (every 2 s), so one may be under way.
    is( $node->safe_psql('postgres', qq{
            SELECT count(*) FROM subexpire_runs WHERE run_id > $run AND status = 'failed'}),
        '0', "$what: none of the runs after it failed");
    return;
}

# ---- SIGKILL of the run worker ----

add_round(1);
$node->append_conf('postgresql.conf', "subexpire.enabled = on\n");
$node->reload;

my $run = wait_for_batched_run(0);
my $pid = $node->safe_psql('postgres',
    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'subexpire run'");
like($pid, qr/^\d+$/, 'the run worker is in pg_stat_activity');
my $log_offset = -s $node->logfile;
kill 'KILL', $pid or die "could not kill $pid: $!";
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
ok( $node->log_contains(qr/background worker "subexpire run" \(PID $pid\) was terminated by signal 9/,
        $log_offset),
    'the run worker was killed in the middle of its run, and the postmaster reinitialized');

check_after_crash('SIGKILL', $run, $due);

# ---- an immediate shutdown ----

my $last = $node->safe_psql('postgres', 'SELECT max(run_id) FROM subexpire_runs');
add_round(2);
$run = wait_for_batched_run($last);
$node->stop('immediate');
$node->start;

check_after_crash('immediate shutdown', $run, 2 * $due);

done_testing();
