# subexpire_runs.longest_batch and subexpire_stats.last_run_longest_batch:
# how long a worker run held rows locked at most, that is, the longest of
# its transactions that expired rows, from its start to its commit.  The
# batches are made slow by a trigger (0.2 s each) and the run's last
# transaction slower still (it waits 2 s for a row that another session
# holds locked, and expires nothing): the figure is a batch's, not the
# run's nor that last transaction's.  A run that fails keeps the longest of
# the batches it committed; a run that expired nothing has none.  Each
# check runs the worker exactly once: see worker_run_once().
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('longest_batch');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'subexpire'
subexpire.enabled = off
subexpire.schedule = '@yearly'
subexpire.batch_size = 3
subexpire.lock_wait = 2000
timezone = 'UTC'
});
$node->start;

create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', q{
    CREATE EXTENSION subexpire;

    -- Each UPDATE that changes rows takes 0.2 s more; the third one fails
    -- when failing_batch says so, with an error not about a row (its
    -- SQLSTATE), which fails the run.
    CREATE TABLE failing_batch (fail boolean NOT NULL, seen int NOT NULL);
    INSERT INTO failing_batch VALUES (false, 0);
    CREATE FUNCTION slow_batch() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT FROM new_rows) THEN
            PERFORM pg_sleep(0.2);
            UPDATE failing_batch SET seen = seen + 1;
            IF (SELECT fail AND seen >= 3 FROM failing_batch) THEN
                RAISE EXCEPTION 'billing is frozen' USING ERRCODE = 'object_not_in_prerequisite_state';
            END IF;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER slow_batch AFTER UPDATE ON subscriptions
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION slow_batch();
});


# Start afresh with $n due subscriptions.
sub reset_subscriptions
{
    my ($n) = @_;
    $node->safe_psql('postgres', 'DELETE FROM subscriptions; DELETE FROM users;');
    add_subscriptions($node, 'postgres', $n, "'2000-01-01 00:00+00'") if $n > 0;
    return;
}

# One worker run, and no other.  Returns the run's id once the run has
# ended and the statistics count it.
sub worker_run_once
{
    $node->safe_psql('postgres',
        q{DELETE FROM subexpire_runs WHERE "trigger" <> 'manual'});
    start_one_catch_up_run($node);
    $node->poll_query_until('postgres', q{
        SELECT count(*) = 1 FROM subexpire_runs
        WHERE "trigger" = 'catch-up' AND status <> 'running'})
      or die 'no catch-up run';
    my $run = $node->safe_psql('postgres',
        q{SELECT run_id FROM subexpire_runs WHERE "trigger" = 'catch-up'});
    $node->poll_query_until('postgres', qq{
        SELECT s.last_run_started_at = r.started_at
        FROM subexpire_stats s, subexpire_runs r WHERE r.run_id = $run})
      or die 'the statistics do not count the run';
    reload_with($node, 'subexpire.enabled', 'off');
    return $run;
}

# The last run's longest batch in subexpire_metrics(), as printed.
sub metrics_longest_batch
{
    my ($line) = grep { /^subscription_expiry_last_run_longest_batch_seconds / }
      split /\n/, $node->safe_psql('postgres', 'SELECT subexpire_metrics()');
    return defined $line ? (split / /, $line)[1] : 'missing';
}

# The run's record, and whether the statistics show the same longest batch.
sub record_of
{
    my ($run) = @_;
    return $node->safe_psql('postgres', qq{
        SELECT format('%s/%s/%s', r.status, r.expired_count, r.skipped_locked),
               extract(epoch FROM r.longest_batch),
               extract(epoch FROM r.finished_at - r.started_at),
               s.last_run_longest_batch IS NOT DISTINCT FROM r.longest_batch
        FROM subexpire_runs r, subexpire_stats s WHERE r.run_id = $run});
}

# ---- batches of 3 and a last transaction that waits for a locked row ----

reset_subscriptions(8);
my $locker = $node->background_psql('postgres');
$locker->query_safe(q{
    BEGIN;
    SELECT id FROM subscriptions ORDER BY id LIMIT 1 FOR UPDATE;
});
my $run = worker_run_once();
$locker->query_safe('COMMIT');
$locker->quit;

my ($outcome, $longest, $duration, $stats_agree) = split /\|/, record_of($run);
is($outcome, 'succeeded/7/1',
    'the run expired 7 rows in batches of 3 and left the locked one');
cmp_ok($duration, '>=', 2.6, 'it took the three batches plus the 2 s wait for the locked row');
cmp_ok($longest, '>=', 0.2, 'longest_batch is at least a batch (0.2 s)');
cmp_ok($longest, '<', 2,
    'and is not the last transaction, which waited 2 s but expired nothing');
is($stats_agree, 't', 'subexpire_stats shows the same longest batch');
is( $node->safe_psql('postgres', 'SELECT last_run_longest_batch IS NOT NULL FROM subexpire_stats'),
    't', 'which is not NULL');
is(metrics_longest_batch(), sprintf('%.6f', $longest),
    'subexpire_metrics() shows it, in seconds');

# ---- a run that fails after two batches ----

reset_subscriptions(7);
$node->safe_psql('postgres', 'UPDATE failing_batch SET fail = true, seen = 0');
$run = worker_run_once();
$node->safe_psql('postgres', 'UPDATE failing_batch SET fail = false');

($outcome, $longest, $duration, $stats_agree) = split /\|/, record_of($run);
is($outcome, 'failed/6/0', 'the run failed in its third batch, after two committed ones');
cmp_ok($longest, '>=', 0.2, 'its record keeps the longest of the batches it committed');
is($stats_agree, 't', 'and so do the statistics');
is( $node->safe_psql('postgres', "SELECT error FROM subexpire_runs WHERE run_id = $run"),
    'billing is frozen', 'with the error');

# ---- a run with nothing due ----

reset_subscriptions(0);
$run = worker_run_once();
($outcome, $longest, $duration, $stats_agree) = split /\|/, record_of($run);
is($outcome, 'succeeded/0/0', 'a run with nothing due');
is($longest, '', 'has no longest batch: none of its transactions expired rows');
is($stats_agree, 't', 'nor do the statistics');

# ---- a manual run ----

reset_subscriptions(2);
is($node->safe_psql('postgres', 'SELECT expired_count FROM expire_subscriptions()'),
    '2', 'a manual run');
is( $node->safe_psql('postgres', q{
        SELECT count(*) FROM subexpire_runs WHERE "trigger" = 'manual' AND longest_batch IS NULL}),
    '1', 'has no longest batch: its transaction is its caller\'s');
is($node->safe_psql('postgres', 'SELECT last_run_longest_batch IS NULL FROM subexpire_stats'),
    't', 'and the statistics say so');
is(metrics_longest_batch(), '0.000000', 'and subexpire_metrics() shows 0');

done_testing();
