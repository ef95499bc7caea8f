# subexpire.max_run_duration: a worker run starts no new batch once it has
# run that long, records stopped_early, and the next run goes on; health
# warns when runs keep stopping early; a manual run ignores the setting.
#
# 300 due rows whose BEFORE UPDATE trigger takes 20 ms a row, batches of
# 10 (0.2 s each), a limit of 1 s and a run every 2 seconds: each run
# expires about 50 rows, so several runs stop early before one finishes.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('time_limit');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'subexpire'
subexpire.enabled = off
subexpire.schedule = '2 seconds'
subexpire.catch_up = off
subexpire.batch_size = 10
subexpire.max_run_duration = '1s'
});
$node->start;

create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', q{
    CREATE EXTENSION subexpire;
    CREATE FUNCTION slow_expiry() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_sleep(0.02);
        RETURN NEW;
    END $$;
    CREATE TRIGGER slow_expiry BEFORE UPDATE ON subscriptions
        FOR EACH ROW EXECUTE FUNCTION slow_expiry();
});
add_subscriptions($node, 'postgres', 300, "now() - interval '1 day'");

sub query { return $node->safe_psql('postgres', $_[0]); }

my $ended = q{"trigger" <> 'manual' AND status <> 'running' AND expired_count > 0};

reload_with($node, 'subexpire.enabled', 'on');

# Health warns once three runs in a row have stopped early.
ok( $node->poll_query_until('postgres',
        "SELECT status = 'warning' FROM subexpire_health() WHERE check_name = 'stopped_early'"),
    'health warns when the worker\'s runs keep stopping early');
like(query("SELECT detail FROM subexpire_health() WHERE check_name = 'stopped_early'"),
    qr/^the last 3 runs of the worker each stopped at subexpire\.max_run_duration \(1 s\)/,
    'and says which setting, and what to do');
my ($stopped, $left) = split /\|/, query(qq{
    SELECT count(*) FILTER (WHERE stopped_early),
           (SELECT count(*) FROM subscriptions WHERE status = 'active')
    FROM subexpire_runs WHERE $ended});
cmp_ok($stopped, '>=', 3, "three runs or more stopped early ($stopped)");
cmp_ok($left, '>', 0, "with rows still due ($left)");

# The runs go on until every row is expired; the last one does not stop early.
ok( $node->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM subscriptions WHERE status = 'active'"),
    'the next runs expire the rest');
ok( $node->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM subexpire_runs WHERE status = 'running'"),
    'and end');
reload_with($node, 'subexpire.enabled', 'off');

my ($runs, $early, $expired, $failed, $longest, $last_early) = split /\|/, query(qq{
    SELECT count(*), count(*) FILTER (WHERE stopped_early), sum(expired_count),
           (SELECT count(*) FROM subexpire_runs WHERE status = 'failed'),
           max(extract(epoch FROM finished_at - started_at)),
           (SELECT stopped_early FROM subexpire_runs WHERE $ended ORDER BY run_id DESC LIMIT 1)
    FROM subexpire_runs WHERE $ended});
cmp_ok($runs, '>=', 4, "the 300 rows took several runs ($runs)");
is($expired, '300', 'whose counts add up to the 300 rows');
is($failed, '0', 'none failed: stopping early is no failure');
is($last_early, 'f', 'the run that expired the last rows did not stop early');
cmp_ok($early, '==', $runs - 1, 'every run before it stopped early');
# A run starts no batch after 1 s: it ends within its last batch (0.2 s)
# and the run's last steps after the limit.
cmp_ok($longest, '<', 2.5, "no run went on long past the limit (longest: $longest s)");
my ($min, $max) = split /\|/, query(qq{
    SELECT min(expired_count), max(expired_count) FROM subexpire_runs
    WHERE $ended AND stopped_early});
cmp_ok($min, '>=', 10, "each run that stopped early expired at least a batch ($min)");
cmp_ok($max, '<=', 120, "and no more than about a second's worth ($max)");
ok( $node->log_contains(
        qr/subexpire: (?:schedule|catch-up) run \d+ expired \d+ subscriptions due at .*; it stopped early, at subexpire\.max_run_duration \(1 s\), and left the rest for the next run/),
    'the log line of a run that stopped early says so');
is(query("SELECT status FROM subexpire_health() WHERE check_name = 'stopped_early'"),
    'ok', 'health is ok again once a run finished');

# A manual run is bounded by statement_timeout, not by the setting.
add_subscriptions($node, 'postgres', 100, "now() - interval '1 day'");
is( query(q{SET subexpire.max_run_duration = '1s'; SELECT expired_count FROM expire_subscriptions()}),
    '100', 'a manual run of 2 s expires every due row, whatever max_run_duration says');

# The setting: seconds, 0 and up.
my ($rc, $out, $err) = $node->psql('postgres', "SET subexpire.max_run_duration = '-1'");
like($err, qr/-1 s is outside the valid range for parameter "subexpire\.max_run_duration"/,
    'a negative limit is refused');

done_testing();
