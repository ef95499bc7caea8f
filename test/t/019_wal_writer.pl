# While a batch of the worker runs, the WAL writer is woken every few
# milliseconds, so that the batch's WAL is flushed as it is written and an
# application's commit does not wait behind it (src/walwriter.c).  Here the
# WAL writer would wake on its own only every 10 s (wal_writer_delay), and
# flushes whatever it has written whenever it wakes (wal_writer_flush_after
# = 0).  One batch takes about 2 s: a trigger writes a row of about 1.5 kB
# and sleeps 5 ms for each subscription the batch expires.  Sampled while
# the batch sleeps in its trigger, the flushed WAL position must move many
# times; without the wake-ups it would move once at most, and nothing else
# in this cluster flushes WAL during the batch.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $rows = 400;

my $node = PostgreSQL::Test::Cluster->new('wal_writer');
$node->init;
plan skip_all => 'the WAL writer is woken with enable_timeout_every(), new in PostgreSQL 15'
  if $node->pg_version < 15;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'subexpire'
subexpire.enabled = off
subexpire.schedule = '\@yearly'
subexpire.batch_size = $rows
wal_writer_delay = '10s'
wal_writer_flush_after = 0
autovacuum = off
});
$node->start;

create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', q{
    CREATE EXTENSION subexpire;
    CREATE TABLE batch_filler (payload text NOT NULL);
    CREATE FUNCTION slow_expiry() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO batch_filler
        SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 48);
        PERFORM pg_sleep(0.005);
        RETURN NEW;
    END $$;
    CREATE TRIGGER slow_expiry BEFORE UPDATE ON subscriptions
        FOR EACH ROW EXECUTE FUNCTION slow_expiry();
});
add_subscriptions($node, 'postgres', $rows, "'2000-01-01 00:00+00'");

start_one_catch_up_run($node);

# The flushed WAL position each time the run worker is found in its
# trigger's sleep, until the run has ended.
my %flushed_at;
my $samples = 0;
my $deadline = time + 120;
while (time < $deadline)
{
    my ($in_batch, $flush, $ended) = split /\|/, $node->safe_psql('postgres', q{
        SELECT EXISTS (SELECT FROM pg_stat_activity
                       WHERE backend_type = 'subexpire run' AND wait_event = 'PgSleep'),
               pg_current_wal_flush_lsn(),
               EXISTS (SELECT FROM subexpire_runs
                       WHERE "trigger" = 'catch-up' AND status <> 'running')});
    last if $ended eq 't';
    next unless $in_batch eq 't';
    $samples++;
    $flushed_at{$flush} = 1;
}
reload_with($node, 'subexpire.enabled', 'off');

note("$samples samples in the batch, " . scalar(keys %flushed_at) . ' flushed positions');
is( $node->safe_psql('postgres', q{
        SELECT status || ' ' || expired_count FROM subexpire_runs
        WHERE "trigger" = 'catch-up'}),
    "succeeded $rows", 'the run expired every due row in one batch');
cmp_ok($samples, '>=', 10, 'the batch was sampled while it ran');
cmp_ok(scalar(keys %flushed_at), '>=', 20,
    'the WAL was flushed again and again while the batch ran');

done_testing();
