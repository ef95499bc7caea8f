# Many manual runs in progress at once: each run's transaction is known to
# the others as an expiry run however many there are, so that rows one run
# holds locked while it expires them are never counted as skipped by
# another (the registry has a slot for every backend; it once had 64, and
# the 65th run went unregistered).
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;
use IPC::Run;

my $holders = 70;

my $node = PostgreSQL::Test::Cluster->new('many_runs');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'subexpire'
subexpire.enabled = off
subexpire.lock_wait = '200ms'
max_connections = @{[$holders + 20]}
});
$node->start;

create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', 'CREATE EXTENSION subexpire');

# A session that runs expire_subscriptions() in a transaction and keeps the
# transaction open, with a name to find it by in pg_stat_activity.
my @sessions;
my $tempdir = PostgreSQL::Test::Utils::tempdir;
sub start_holder
{
    my ($name) = @_;
    # Input from a file: IPC::Run feeds a scalar only while it is pumped.
    my $file = "$tempdir/$name.sql";
    PostgreSQL::Test::Utils::append_to_file($file, qq{BEGIN;
SELECT pg_catalog.set_config('application_name', '$name ' || expired_count, false)
FROM expire_subscriptions();
SELECT pg_sleep(3600);
});
    push @sessions,
      IPC::Run::start(
        [ 'psql', '-X', '-q', '-d', $node->connstr('postgres') ],
        '<', $file, '>', '/dev/null', '2>', '/dev/null');
}

sub holders_asleep
{
    my ($pattern, $count) = @_;
    return $node->poll_query_until('postgres', qq{
        SELECT count(*) = $count FROM pg_stat_activity
        WHERE application_name LIKE '$pattern' AND wait_event = 'PgSleep'});
}

# First $holders runs with nothing due, each holding its transaction open.
start_holder("holder_$_") for 1 .. $holders;
ok(holders_asleep('holder\_% 0', $holders),
    "$holders manual runs are in progress at once");

# Then one more, which expires the due rows and holds them locked.
add_subscriptions($node, 'postgres', 10, "now() - interval '1 day'");
start_holder('last_run');
ok(holders_asleep('last\_run 10', 1), 'a further run expired 10 rows and holds them');
is( $node->safe_psql('postgres',
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
         WHERE a.application_name = 'last_run 10' AND l.locktype = 'transactionid'
           AND l.mode = 'ExclusiveLock'"),
    1, 'its transaction is open');

# A run now finds those rows locked by a run in progress: not skipped.
my ($rc, $out, $err) = $node->psql('postgres',
    'SELECT expired_count FROM expire_subscriptions()');
is($rc, 0, 'the run succeeded');
is($out, '0', 'it expired nothing: the rows are the other run\'s');
unlike($err, qr/left active because/,
    'it did not warn about rows held by the application');
is( $node->safe_psql('postgres',
        "SELECT skipped_locked FROM subexpire_runs ORDER BY run_id DESC LIMIT 1"),
    '0', 'its record counts no skipped rows');

$_->kill_kill for @sessions;
$_->finish for @sessions;
is( $node->safe_psql('postgres',
        "SELECT count(*) FROM subscriptions WHERE status = 'active'"),
    '10', 'the held run rolled back when its session ended');

$node->stop;
done_testing();
