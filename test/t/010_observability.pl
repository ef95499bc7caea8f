# What the worker's runs leave for monitoring: the statistics (with the
# worker's pid and next time), one LOG line per run and, with
# subexpire.log_expired, one per expired row naming its key; statistics
# that survive a clean restart and start from zero after a crash.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('observability');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'subexpire'
subexpire.schedule = '2 seconds'
subexpire.log_expired = on
restart_after_crash = on
});
$node->start;
create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', 'CREATE EXTENSION subexpire');
add_subscriptions($node, 'postgres', 5, "now() - interval '1 hour'");
add_subscriptions($node, 'postgres', 3, "now() + interval '30 days'");

ok( $node->poll_query_until('postgres',
        "SELECT count(*) = 5 FROM subscriptions WHERE status = 'expired'"),
    'the worker expired the due rows');
ok( $node->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM subexpire_runs WHERE status = 'running'"),
    'the run finished');

my ($run_id) = $node->safe_psql('postgres',
    "SELECT run_id FROM subexpire_runs WHERE expired_count = 5 AND trigger = 'schedule'");
ok($run_id, 'the run is recorded');

# The log: one summary line for the run, one line for each expired row.
my $log = slurp_file($node->logfile);
like($log,
    qr/LOG:  subexpire: schedule run $run_id expired 5 subscriptions due at \S+ \S+ in [0-9.]+ s/,
    'one LOG line for the run, with trigger, cutoff, count and duration');
my @expired_ids = split /\n/, $node->safe_psql('postgres',
    "SELECT id FROM subscriptions WHERE status = 'expired' ORDER BY id");
is(scalar(@expired_ids), 5, 'five rows expired');
for my $id (@expired_ids)
{
    my $lines = () = $log =~ /LOG:  subexpire: expired subscription \(id\)=\($id\) in public\.subscriptions/g;
    is($lines, 1, "one LOG line names expired row $id");
}

# The statistics, with the worker's pid and its next time.
my $scheduler_pid = $node->safe_psql('postgres',
    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'subexpire scheduler'");
is( $node->safe_psql('postgres', q{
        SELECT expired_total || ':' || (runs_failed = 0) || ':' || (worker_pid = } . $scheduler_pid . q{)
               || ':' || (next_run_at > now() - interval '1 second') || ':' || due_now
        FROM subexpire_stats}),
    '5:true:true:true:0',
    'subexpire_stats counts the expired rows and shows the worker');

# A reload with a schedule that does not parse keeps the old one, and
# the log says why.
$node->append_conf('postgresql.conf', "subexpire.schedule = '61 * * * *'");
$node->reload;
$node->wait_for_log(qr/invalid value for parameter "subexpire.schedule": "61 \* \* \* \*"/);
pass('a reload with an invalid schedule logs the setting and the value');
is($node->safe_psql('postgres', q{SELECT current_setting('subexpire.schedule')}),
    '2 seconds', 'and leaves the old schedule in force');
$node->append_conf('postgresql.conf', "subexpire.schedule = '2 seconds'");
$node->reload;

# Stop the schedule, so that the figures hold still, and restart cleanly.
$node->append_conf('postgresql.conf', 'subexpire.enabled = off');
$node->reload;
$node->poll_query_until('postgres',
    "SELECT next_run_at IS NULL FROM subexpire_stats");
my $before = $node->safe_psql('postgres',
    'SELECT runs_total || \':\' || expired_total || \':\' || stats_reset FROM subexpire_stats');
$node->restart;
unlike(slurp_file($node->logfile), qr/terminating background worker "subexpire scheduler"/,
    'the scheduler exits cleanly at shutdown, not terminated');
is($node->safe_psql('postgres',
        'SELECT runs_total || \':\' || expired_total || \':\' || stats_reset FROM subexpire_stats'),
    $before, 'the statistics survive a clean restart');

# After a crash, they start from zero (the file was read at start).
my $session = $node->background_psql('postgres');
my $victim = $session->query_safe('SELECT pg_backend_pid()');
kill 'KILL', $victim;
eval { $session->quit; };
ok( $node->poll_query_until('postgres', 'SELECT runs_total = 0 FROM subexpire_stats'),
    'after a crash the statistics start from zero');

done_testing();
