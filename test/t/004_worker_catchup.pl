# Catch-up: on an every-minute schedule, scheduled times that pass while
# the server is down make exactly one 'catch-up' run at start-up, at once
# (never one per missed time); with subexpire.catch_up = off they make
# none.  Takes two to three minutes: the schedule is in whole minutes.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('catchup');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'subexpire'
subexpire.schedule = '* * * * *'
subexpire.timezone = 'UTC'
subexpire.enabled = off
});
$node->start;

create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', 'CREATE EXTENSION subexpire');

# Due rows of batch $k (they expire on day $k of 2000).
sub add_due
{
    my ($k, $n) = @_;
    add_subscriptions($node, 'postgres', $n,
        "'2000-01-01 00:00+00'::timestamptz + $k * interval '1 day'");
    return;
}

sub active_in_batch
{
    my ($k) = @_;
    return $node->safe_psql('postgres', qq{
        SELECT count(*) FROM subscriptions WHERE status = 'active'
          AND expires_at = '2000-01-01 00:00+00'::timestamptz + $k * interval '1 day'});
}

# The scheduler has finished its start-up (the catch-up check, and the
# catch-up run if there is one): it sleeps only after that.
sub wait_for_startup
{
    $node->poll_query_until('postgres', q{
        SELECT wait_event_type = 'Extension'
        FROM pg_stat_activity WHERE backend_type = 'subexpire scheduler'})
      or die 'the scheduler did not finish its start-up';
    return;
}

# When the every-minute schedule fires next after the server time $ts
# (seconds since the epoch).
sub next_minute_after
{
    my ($ts) = @_;
    return $node->safe_psql('postgres', qq{
        SELECT extract(epoch FROM t) FROM subexpire_next_runs('* * * * *', 'UTC', '$ts', 1) AS t});
}

# Wait, with the server down, until the clock is past $epoch.
sub wait_until_clock_past
{
    my ($epoch) = @_;
    usleep(200_000) while time() < $epoch + 1;
    return;
}

# ---- one scheduled run succeeds ----

$node->append_conf('postgresql.conf', "subexpire.enabled = on\n");
$node->reload;
ok( $node->poll_query_until('postgres', q{
        SELECT count(*) = 1 FROM subexpire_runs WHERE "trigger" = 'schedule' AND status = 'succeeded'}),
    'a scheduled run succeeded at the top of a minute');
my ($last_run, $last_success) = split /\|/, $node->safe_psql('postgres', q{
    SELECT run_id, started_at FROM subexpire_runs WHERE "trigger" = 'schedule'});
my $missed_1 = next_minute_after($last_success);
my $missed_2 = $missed_1 + 60;

# ---- catch_up = off: the server is down over a scheduled time ----

add_due(1, 3);
$node->stop;
$node->append_conf('postgresql.conf', "subexpire.catch_up = off\n");
wait_until_clock_past($missed_1);
$node->start;
wait_for_startup();
is( $node->safe_psql('postgres',
        "SELECT extract(epoch FROM pg_postmaster_start_time()) > $missed_1"),
    't', 'catch_up = off: a scheduled time passed while the server was down');
is( $node->safe_psql('postgres', "SELECT count(*) FROM subexpire_runs WHERE run_id > $last_run"),
    '0', 'catch_up = off: no run at start-up');
is(active_in_batch(1), '3', 'catch_up = off: the rows due are still active');
ok( $node->safe_psql('postgres', 'SELECT extract(epoch FROM clock_timestamp())') < $missed_2,
    'catch_up = off: checked before the next scheduled time');

# ---- catch_up = on: down over two more scheduled times ----

$node->stop;
$node->append_conf('postgresql.conf', "subexpire.catch_up = on\n");
wait_until_clock_past($missed_2);
$node->start;
wait_for_startup();
is( $node->safe_psql('postgres',
        "SELECT extract(epoch FROM pg_postmaster_start_time()) > $missed_2"),
    't', 'catch_up = on: two scheduled times passed since the last run (one with the server up and catch_up off, one down)');
is( $node->safe_psql('postgres', qq{
        SELECT string_agg(format('%s/%s/%s', "trigger", status, expired_count), ',')
        FROM subexpire_runs WHERE run_id > $last_run}),
    'catch-up/succeeded/3',
    'catch_up = on: exactly one run at start-up, a catch-up run, which expired the rows due');
is( $node->safe_psql('postgres', q{
        SELECT started_at < pg_postmaster_start_time() + interval '10 seconds'
        FROM subexpire_runs WHERE "trigger" = 'catch-up'}),
    't', 'catch_up = on: it ran at once');
ok( $node->safe_psql('postgres',
        "SELECT extract(epoch FROM started_at) FROM subexpire_runs WHERE \"trigger\" = 'catch-up'")
      < $missed_2 + 60,
    'catch_up = on: before the next scheduled time');
is(active_in_batch(1), '0', 'catch_up = on: no due row left active');

done_testing();
