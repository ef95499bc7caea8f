# The worker and streaming replication: a hot standby with the library
# preloaded and the same schedule runs no worker (and says nothing about
# it) while the primary's worker runs; promoted, it starts the worker and
# the job runs there.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', q{
shared_preload_libraries = 'subexpire'
subexpire.schedule = '2 seconds'
timezone = 'UTC'
});
$primary->start;
create_reference_schema($primary, 'postgres');
$primary->safe_psql('postgres', 'CREATE EXTENSION subexpire');

# Due rows of batch $k (they expire on day $k of 2000).
sub add_due
{
    my ($node, $k, $n) = @_;
    add_subscriptions($node, 'postgres', $n,
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

sub workers
{
    my ($node) = @_;
    return $node->safe_psql('postgres',
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'subexpire%'");
}

add_due($primary, 1, 5);
ok($primary->poll_query_until('postgres', batch_expired_query(1, 5)),
    "the primary's worker expires the due rows");

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
    't', 'the standby is in recovery');
is($standby->safe_psql('postgres', 'SHOW shared_preload_libraries'),
    'subexpire', 'the standby preloads the library');
is($standby->safe_psql('postgres', 'SHOW subexpire.schedule'),
    '2 seconds', 'with the same schedule');

# While the primary's worker goes on running (its runs reach the standby),
# the standby runs none.
my $standby_start = $standby->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
add_due($primary, 2, 3);
ok( $standby->poll_query_until('postgres', qq{
        SELECT count(*) >= 3 FROM subexpire_runs
        WHERE started_at > '$standby_start' AND status = 'succeeded'}),
    "the primary's runs go on, and reach the standby");
ok($standby->poll_query_until('postgres', batch_expired_query(2, 3)),
    "the standby sees the rows the primary's worker expired");
is(workers($primary), '1', 'the primary has its scheduler');
is(workers($standby), '0', 'the standby has no subexpire worker');
my $log = slurp_file($standby->logfile);
my @complaints = grep { /subexpire/ && /(WARNING|ERROR|FATAL|PANIC):/ } split /\n/, $log;
is(scalar(@complaints), 0, 'the standby logs no warning or error about subexpire')
  or diag join("\n", @complaints);
unlike($log, qr/background worker "subexpire/, 'the standby started no subexpire worker');

# ---- promotion ----

my $primary_runs = $primary->safe_psql('postgres', 'SELECT max(run_id) FROM subexpire_runs');
$primary->wait_for_catchup($standby);
$primary->stop;
my $log_offset = -s $standby->logfile;
$standby->promote;
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
    'f', 'the standby is promoted');
my $promoted_at = $standby->safe_psql('postgres', 'SELECT clock_timestamp()');
ok( $standby->poll_query_until('postgres',
        "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'subexpire scheduler'"),
    'the promoted node starts the scheduler');
add_due($standby, 3, 4);
ok($standby->poll_query_until('postgres', batch_expired_query(3, 4)),
    'the promoted node expires the rows due');
ok( $standby->poll_query_until('postgres', qq{
        SELECT count(*) >= 2 FROM subexpire_runs
        WHERE started_at > '$promoted_at' AND "trigger" = 'schedule' AND status = 'succeeded'}),
    'its scheduled runs are recorded there');
is( $standby->safe_psql('postgres', qq{
        SELECT sum(expired_count) FROM subexpire_runs WHERE run_id > $primary_runs}),
    '4', 'the runs on the promoted node count the rows they expired');
is( $standby->safe_psql('postgres', q{
        SELECT (SELECT sum(expired_count) FROM subexpire_runs)
             = (SELECT count(*) FROM subscriptions WHERE status = 'expired')}),
    't', 'all the runs, before and after the promotion, account for every expired row');
my @after = grep { /subexpire/ && /(WARNING|ERROR|FATAL|PANIC):/ } split /\n/,
  slurp_file($standby->logfile, $log_offset);
is(scalar(@after), 0, 'no warning or error about subexpire after the promotion')
  or diag join("\n", @after);

done_testing();
