# The example consumer of the events outbox (examples/events_consumer.py),
# connected as a role that may only execute subexpire_take_events():
# killed with SIGKILL while it works, it has lost no event (every event
# gone from the outbox was handled), and started again with
# --exit-when-idle it drains the rest and exits, so that every expired
# row's event was handled at least once; a handler that raises leaves its
# batch in the outbox; with --exit-when-idle, a failure exits with status
# 1; and a consumer that waits for notifications, with a poll timeout far
# beyond the test's, takes the events of a run that commits while it
# waits, and reconnects when its session is terminated.
#
# Skipped where python3 cannot import asyncpg (Debian package
# python3-asyncpg, which scripts/common.sh installs).
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use File::Spec;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;
use Time::HiRes qw(usleep);

# The python3 on PATH, or Debian's, whichever imports asyncpg (a python3
# of a version manager earlier on PATH may lack Debian's packages).
my $python;
{
    my $err = '';
    for my $candidate ('python3', '/usr/bin/python3')
    {
        $err = '';
        my $ok = eval {
            IPC::Run::run([ $candidate, '-c', 'import asyncpg' ], '<', '/dev/null',
                '>', \$err, '2>&1');
        };
        $err = $@ if !$ok && $@;
        if ($ok)
        {
            $python = $candidate;
            last;
        }
    }
    if (!defined $python)
    {
        my @lines = split /\n/, $err;
        plan skip_all => "python3 with asyncpg is not installed: $lines[-1]";
    }
}

my $consumer =
  File::Spec->rel2abs("$FindBin::Bin/../../examples/events_consumer.py");
my $dir = PostgreSQL::Test::Utils::tempdir;
my $due = 20000;

my $node = PostgreSQL::Test::Cluster->new('events_consumer');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'subexpire'
subexpire.enabled = off
});
$node->start;

create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', q{
    CREATE EXTENSION subexpire;
    INSERT INTO subexpire_rules (rule_name, target_table, emit_events)
    VALUES ('period_end', 'public.subscriptions', true);
    CREATE ROLE consumer LOGIN;
    GRANT EXECUTE ON FUNCTION subexpire_take_events(integer) TO consumer;
});
add_subscriptions($node, 'postgres', $due, "now() - interval '1 day'");
add_subscriptions($node, 'postgres', 100, "now() + interval '30 days'");
$node->safe_psql('postgres', 'SELECT expire_subscriptions()');
is( $node->safe_psql('postgres', q{
        SELECT (SELECT count(*) FROM subscriptions WHERE status = 'expired')
               || ' ' || (SELECT count(*) FROM subexpire_events)}),
    "$due $due",
    'the run expired the due rows and wrote one event for each');
# The events as written, to compare with what the consumers handle (one
# row a line of their output); the rows expired while a consumer waits.
$node->safe_psql('postgres', q{
    CREATE TABLE written AS SELECT * FROM subexpire_events;
    CREATE TABLE handled (consumer text, event jsonb);
    CREATE TABLE late (id uuid);
});

# Over the node's unix socket, as $role; the consumers connect as the role
# that may only take events.
sub dsn_as
{
    my ($role) = @_;
    return sprintf('postgresql:///postgres?host=%s&port=%d&user=%s',
        $node->host, $node->port, $role);
}
my $dsn = dsn_as('consumer');

# Start the consumer in the background, its handler writing to
# $dir/$name.jsonl, its log in the test's log directory.
sub start_consumer
{
    my ($name, @options) = @_;
    my $log = "$PostgreSQL::Test::Utils::log_path/026_$name.log";
    my $h = IPC::Run::start(
        [ $python, '-B', $consumer, '--dsn', $dsn, '--output', "$dir/$name.jsonl", @options ],
        '<', '/dev/null', '>', $log, '2>&1');
    return ($h, $log);
}

# The lines a consumer's handler has written so far.
sub lines_in
{
    my ($name) = @_;
    my $file = "$dir/$name.jsonl";
    return 0 unless -e $file;
    my $n = () = slurp_file($file) =~ /\n/g;
    return $n;
}

# Wait until $done returns true while consumer $h runs, or die.
sub wait_for
{
    my ($what, $h, $log, $done) = @_;
    my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
    until ($done->())
    {
        die "the consumer exited before $what; see $log" unless $h->pumpable;
        die "timed out waiting for $what; see $log" if time() > $deadline;
        usleep(50_000);
    }
    return;
}

# Add what consumer $name handled to the table handled, one row a line.
sub load_handled
{
    my ($name) = @_;
    $node->safe_psql('postgres', qq{
        INSERT INTO handled
        SELECT '$name', line::jsonb
        FROM regexp_split_to_table(pg_read_file('$dir/$name.jsonl'), E'\\n') AS line
        WHERE line <> '';
    });
    return;
}

# (1) A slow consumer, killed with SIGKILL once it has handled a few
# batches: far from all of them (2 ms an event).
my ($killed, $killed_log) = start_consumer('killed', '--batch-size', '100',
    '--handler-delay', '2');
wait_for('some events handled', $killed, $killed_log,
    sub { lines_in('killed') >= 300 });
$killed->signal('KILL');
$killed->finish;
is(($killed->full_results)[0] & 127, 9, 'the first consumer was killed with SIGKILL');
my $handled = lines_in('killed');
ok($handled > 0 && $handled < $due,
    "the killed consumer had handled some of the events but not all ($handled)");

# Its session ends, rolling back the batch it was handling.
$node->poll_query_until('postgres',
    "SELECT count(*) = 0 FROM pg_stat_activity WHERE usename = 'consumer'")
  or die 'the killed consumer\'s session did not end';
my $pending = $node->safe_psql('postgres', 'SELECT count(*) FROM subexpire_events');
ok($pending > 0 && $pending < $due, "some events are still pending ($pending)");
load_handled('killed');
is( $node->safe_psql('postgres', q{
        SELECT count(*) FROM written w
        WHERE NOT EXISTS (SELECT 1 FROM subexpire_events e WHERE e.event_id = w.event_id)
          AND NOT EXISTS (SELECT 1 FROM handled h
                          WHERE (h.event->>'event_id')::bigint = w.event_id)}),
    '0',
    'every event gone from the outbox was handled before the consumer was killed');

# (2) consume() with a handler of the application's that raises: the
# batch stays in the outbox, and with exit_when_idle consume() returns 1.
{
    my $out = '';
    IPC::Run::run(
        [
            $python, '-B', '-c', q{
import asyncio, logging, sys
sys.path.insert(0, sys.argv[1])
import events_consumer

async def fail(event):
    raise RuntimeError("the handler failed on event %d" % event["event_id"])

logging.basicConfig()
sys.exit(asyncio.run(events_consumer.consume(sys.argv[2], fail, 10, exit_when_idle=True)))
}, File::Spec->rel2abs("$FindBin::Bin/../../examples"), $dsn
        ],
        '<', '/dev/null', '>', \$out, '2>&1',
        IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
    is($? >> 8, 1, 'a handler that raises makes consume() fail, with exit_when_idle')
      or diag($out);
    like($out, qr/taking events failed.*RuntimeError: the handler failed on event \d+/s,
        'and it logs the handler\'s error');
    is($node->safe_psql('postgres', 'SELECT count(*) FROM subexpire_events'),
        $pending, 'the batch is back in the outbox');
}

# (3) Started again with --exit-when-idle, it takes the rest and exits.
{
    my $log = "$PostgreSQL::Test::Utils::log_path/026_restarted.log";
    my $ok = IPC::Run::run(
        [
            $python, '-B', $consumer, '--dsn', $dsn, '--output', "$dir/restarted.jsonl",
            '--batch-size', '500', '--exit-when-idle'
        ],
        '<', '/dev/null', '>', $log, '2>&1',
        IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
    ok($ok, 'the restarted consumer drained the outbox and exited with status 0')
      or diag(slurp_file($log));
}
load_handled('restarted');
is($node->safe_psql('postgres', 'SELECT count(*) FROM subexpire_events'),
    '0', 'no event is left in the outbox');
is( $node->safe_psql('postgres', q{
        SELECT count(*) FROM subscriptions s
        WHERE s.status = 'expired'
          AND NOT EXISTS (SELECT 1 FROM handled h
                          WHERE h.event->'row_key' = jsonb_build_object('id', s.id))}),
    '0',
    'every expired row\'s key was handled at least once');
is( $node->safe_psql('postgres', q{
        SELECT count(DISTINCT event->>'event_id') || ' ' || count(DISTINCT event->'row_key')
        FROM handled}),
    "$due $due",
    'as many distinct events and row keys were handled as rows expired');
is( $node->safe_psql('postgres', q{
        SELECT count(*) FROM handled h
        WHERE NOT EXISTS (
            SELECT 1 FROM written w
            WHERE w.event_id = (h.event->>'event_id')::bigint
              AND w.run_id = (h.event->>'run_id')::bigint
              AND w.rule_name = h.event->>'rule_name'
              AND w.target_table = h.event->>'target_table'
              AND w.row_key = h.event->'row_key'
              AND w.from_status = h.event->>'from_status'
              AND w.to_status = h.event->>'to_status'
              AND w.expires_at = (h.event->>'expires_at')::timestamptz
              AND w.expired_at = (h.event->>'expired_at')::timestamptz)}),
    '0',
    'every handled line is an event as it was written, every column of it');
note('events handled twice (the killed batch): '
      . $node->safe_psql('postgres',
        q{SELECT count(*) - count(DISTINCT event->>'event_id') FROM handled}));

# With --exit-when-idle, a failure (here: a role that does not exist)
# exits with status 1 rather than retrying, for cron to report.
{
    my $out = '';
    IPC::Run::run(
        [
            $python, '-B', $consumer, '--dsn', dsn_as('no_such_role'), '--output',
            "$dir/failed.jsonl", '--exit-when-idle'
        ],
        '<', '/dev/null', '>', \$out, '2>&1',
        IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
    is($? >> 8, 1, 'with --exit-when-idle, a consumer that cannot connect exits with status 1')
      or diag($out);
    like($out, qr/role "no_such_role" does not exist/, 'and logs why');
}

# (4) A consumer waiting for notifications, with a poll timeout longer than
# this test may wait, takes the events of a run committed meanwhile: the
# notification woke it.  Its session terminated, it reconnects and takes
# the events of the next run.
sub expire_late
{
    my ($count) = @_;
    add_subscriptions($node, 'postgres', $count, "now() - interval '1 hour'");
    $node->safe_psql('postgres', q{
        INSERT INTO late
        SELECT id FROM subscriptions WHERE status = 'active' AND expires_at <= now();
        SELECT expire_subscriptions();
    });
    return;
}

my $outbox_empty = 'SELECT count(*) = 0 FROM subexpire_events';
my ($listening, $listening_log) = start_consumer('listening', '--poll-seconds', '3600');
wait_for('the consumer to wait for notifications', $listening, $listening_log,
    sub { slurp_file($listening_log) =~ /caught up; waiting for notifications/ });
expire_late(500);
ok($node->poll_query_until('postgres', $outbox_empty),
    'the waiting consumer was woken by the notification and took the events');
$node->safe_psql('postgres',
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'consumer'");
expire_late(100);
ok($node->poll_query_until('postgres', $outbox_empty),
    'its session terminated, it reconnected and took the events of the next run');
like(slurp_file($listening_log), qr/connection failed: .*reconnecting in/s,
    'it logged the lost connection and the reconnection');
$listening->signal('TERM');
$listening->finish;
is(($listening->full_results)[0], 0, 'it stops on SIGTERM with status 0');
load_handled('listening');
is( $node->safe_psql('postgres', q{
        SELECT count(DISTINCT event->>'event_id') || ' '
               || count(*) FILTER (WHERE event->'row_key' IN
                                   (SELECT jsonb_build_object('id', id) FROM late)) || ' '
               || (SELECT count(*) FROM late WHERE jsonb_build_object('id', id) NOT IN
                       (SELECT event->'row_key' FROM handled WHERE consumer = 'listening'))
        FROM handled WHERE consumer = 'listening'}),
    '600 ' . lines_in('listening') . ' 0',
    'it handled an event for each of the 600 rows expired meanwhile, and no other');

$node->stop;
done_testing();
