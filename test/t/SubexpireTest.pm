# test/t/SubexpireTest.pm: what the TAP tests of subexpire share.
package SubexpireTest;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use PostgreSQL::Test::Utils;

our @EXPORT = qw(create_reference_schema add_subscriptions reload_with
  start_one_catch_up_run stop_worker count_in_log kill_run_worker);

# Create the reference schema (test/reference_schema.sql) in $dbname.
sub create_reference_schema
{
    my ($node, $dbname) = @_;
    my $sql = slurp_file(dirname(__FILE__) . '/../reference_schema.sql');
    $node->safe_psql($dbname, $sql);
    return;
}

# Add $count users with an active subscription each, expiring at the SQL
# expression $expires_at (evaluated per row).
sub add_subscriptions
{
    my ($node, $dbname, $count, $expires_at) = @_;
    $node->safe_psql($dbname, qq{
        WITH u AS (INSERT INTO users SELECT gen_random_uuid()
                   FROM generate_series(1, $count) RETURNING id)
        INSERT INTO subscriptions (user_id, status, expires_at)
        SELECT id, 'active', $expires_at FROM u;
    });
    return;
}

# Change a setting of $node with a reload, and wait until a new session
# sees it (the postmaster has read the file and signalled the worker by
# then).
sub reload_with
{
    my ($node, $name, $value) = @_;
    $node->append_conf('postgresql.conf', "$name = '$value'\n");
    $node->reload;
    $node->poll_query_until('postgres', "SHOW $name", $value)
      or die "$name did not become $value";
    return;
}

# Turn the worker of $node off, and wait until no run is under way.
sub stop_worker
{
    my ($node) = @_;
    reload_with($node, 'subexpire.enabled', 'off');
    $node->poll_query_until('postgres', q{
        SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'subexpire run'})
      or die 'the run worker did not exit';
    return;
}

# How often $re matches the log of $node from byte $offset on.
sub count_in_log
{
    my ($node, $re, $offset) = @_;
    my $log = slurp_file($node->logfile, $offset);
    my $n = () = $log =~ /$re/g;
    return $n;
}

# Kill the run worker of $node with SIGKILL, and wait until the postmaster
# has reinitialized and the server takes connections again (the node must
# have restart_after_crash on).  Returns the killed pid and the log offset
# from before the kill.
sub kill_run_worker
{
    my ($node) = @_;
    my $pid = $node->safe_psql('postgres',
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'subexpire run'");
    die 'no run worker to kill' unless $pid =~ /^\d+$/;
    my $offset = -s $node->logfile;
    kill 'KILL', $pid or die "could not kill $pid: $!";
    $node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
    $node->poll_query_until('postgres', 'SELECT true')
      or die 'the server did not come back after the crash';
    return ($pid, $offset);
}

# Start one worker run on $node, whose worker is off with a yearly
# schedule: with the last success set back to 2001, turning the worker on
# makes one catch-up run at once, and the schedule none after it.
sub start_one_catch_up_run
{
    my ($node) = @_;
    $node->safe_psql('postgres', q{
        INSERT INTO subexpire_runs ("trigger", as_of, started_at, finished_at, status)
        VALUES ('schedule', '2001-06-01', '2001-06-01', '2001-06-01', 'succeeded');
    });
    reload_with($node, 'subexpire.enabled', 'on');
    return;
}

1;
