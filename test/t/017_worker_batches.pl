# The worker's batches: oldest expiry first, each batch's index range scan
# starting where the batch before it ended (not walking again over the
# entries of the rows already expired), and a row that was locked while the
# batches passed it, behind their position, still taken by the run's last
# step once it is released, or counted as skipped if it is not.  The plans
# come from auto_explain, which logs the statements the run worker runs.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $batch = 100;
my $due   = 1000;

my $node = PostgreSQL::Test::Cluster->new('batches');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'subexpire, auto_explain'
auto_explain.log_min_duration = 0
auto_explain.log_nested_statements = on
subexpire.enabled = off
subexpire.schedule = '1 seconds'
subexpire.catch_up = off
subexpire.batch_size = $batch
subexpire.lock_wait = '200ms'
});
$node->start;

create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', 'CREATE EXTENSION subexpire');
# Due rows with distinct expiries, an hour apart, the oldest 2000-01-01.
add_subscriptions($node, 'postgres', $due, "'2000-01-01 00:00+00'");
$node->safe_psql('postgres', q{
    UPDATE subscriptions SET expires_at = '2000-01-01 00:00+00'::timestamptz
        + s.n * interval '1 hour'
    FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM subscriptions) AS s
    WHERE subscriptions.id = s.id;
    ANALYZE subscriptions;
});
add_subscriptions($node, 'postgres', 50, "now() + interval '30 days'");

# The oldest due row, held locked by an application transaction while the
# batches run: every batch skips it, and their position moves past it.
my $oldest = $node->safe_psql('postgres',
    "SELECT id FROM subscriptions ORDER BY expires_at LIMIT 1");
my $app = $node->background_psql('postgres');
$app->query_safe("BEGIN; SELECT 1 FROM subscriptions WHERE id = '$oldest' FOR UPDATE");

my $log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "subexpire.enabled = on\n");
$node->reload;
ok( $node->poll_query_until('postgres',
        "SELECT count(*) > 0 FROM subexpire_runs WHERE status = 'succeeded'"),
    'the worker ran');
$node->append_conf('postgresql.conf', "subexpire.enabled = off\n");
$node->reload;

is( $node->safe_psql('postgres', q{
        SELECT expired_count || ' ' || skipped_locked FROM subexpire_runs
        ORDER BY run_id LIMIT 1}),
    ($due - 1) . ' 1',
    'the run expired every due row but the locked one, and counted that one as skipped');
is($node->safe_psql('postgres', "SELECT status FROM subscriptions WHERE id = '$oldest'"),
    'active', 'the locked row is still active');

# What the batches ran: the UPDATEs that take a batch (LIMIT $6), in order,
# each with its plan.
my $log = substr(slurp_file($node->logfile), $log_offset);
my @batches = grep { /LIMIT \$6 FOR NO KEY UPDATE SKIP LOCKED/ }
  $log =~ /(Query Text: UPDATE ONLY public\.subscriptions .*?)(?=\n\S|\z)/sg;
# 999 unlocked due rows: nine full batches, then a short one that ends them.
is(scalar(@batches), int(($due - 1) / $batch) + 1,
    'one batch statement for each batch, the last one short');
unlike($batches[0], qr/OPERATOR\(pg_catalog\.>=\) \$7/, 'the first batch starts at the oldest due row');
like($batches[0], qr/ORDER BY expires_at LIMIT \$6/, 'a batch takes the oldest expiries first');
my $positioned = grep {
    /expires_at OPERATOR\(pg_catalog\.>=\) \$7/
      && /Index Cond: \(\(\(status\)::text = 'active'::text\) AND \(expires_at <= '[^']+'::timestamp with time zone\) AND \(expires_at >= '[^']+'::timestamp with time zone\)\)/
} @batches[ 1 .. $#batches ];
is($positioned, $#batches,
    'every later batch is an index range scan that starts at the expiry the batch before it reached');

# Released, the row is expired by the next run.
$app->query_safe('COMMIT');
$app->quit;
$node->append_conf('postgresql.conf', "subexpire.enabled = on\n");
$node->reload;
ok( $node->poll_query_until('postgres',
        "SELECT status = 'expired' FROM subscriptions WHERE id = '$oldest'"),
    'the next run expired the row once it was released');
$node->append_conf('postgresql.conf', "subexpire.enabled = off\n");
$node->reload;
is( $node->safe_psql('postgres', q{
        SELECT count(*) FILTER (WHERE status = 'expired') || ' '
            || count(*) FILTER (WHERE status = 'active' AND expires_at > now())
        FROM subscriptions}),
    "$due 50", 'every due row expired, every other row left active');
is( $node->safe_psql('postgres', "SELECT sum(expired_count) FROM subexpire_runs"),
    $due, 'the runs\' counts add up to the rows expired');

# ---- A partitioned table: each partition keeps a position of its own ----

# 250 due rows in each of two partitions, and 20 not due: with batches of
# 100, a batch can end in one partition and go on in the other.
$node->safe_psql('postgres', q{
    CREATE TABLE subs_parted (id int, plan text, status text,
                              expires_at timestamptz, updated_at timestamptz)
        PARTITION BY LIST (plan);
    CREATE TABLE subs_parted_free PARTITION OF subs_parted FOR VALUES IN ('free');
    CREATE TABLE subs_parted_premium PARTITION OF subs_parted FOR VALUES IN ('premium');
    CREATE INDEX ON subs_parted (status, expires_at);
    INSERT INTO subs_parted
    SELECT n, CASE WHEN n % 2 = 0 THEN 'free' ELSE 'premium' END, 'active',
           '2000-01-01 00:00+00'::timestamptz + n * interval '1 hour', NULL
    FROM generate_series(1, 500) AS n;
    INSERT INTO subs_parted
    SELECT n, 'free', 'active', now() + interval '30 days', NULL
    FROM generate_series(501, 520) AS n;
    ANALYZE subs_parted;
});
my $last_run = $node->safe_psql('postgres', 'SELECT max(run_id) FROM subexpire_runs');
$log_offset = -s $node->logfile;
reload_with($node, 'subexpire.target_table', 'public.subs_parted');
reload_with($node, 'subexpire.enabled', 'on');
ok( $node->poll_query_until('postgres', qq{
        SELECT count(*) > 0 FROM subexpire_runs
        WHERE run_id > $last_run AND status = 'succeeded' AND expired_count > 0}),
    'the worker ran on the partitioned table');
reload_with($node, 'subexpire.enabled', 'off');

is( $node->safe_psql('postgres', qq{
        SELECT expired_count || ' ' || skipped_locked FROM subexpire_runs
        WHERE run_id > $last_run AND expired_count > 0}),
    '500 0', 'one run expired the 500 due rows of both partitions');
is( $node->safe_psql('postgres', q{
        SELECT string_agg(status || ':' || n, ' ' ORDER BY status)
        FROM (SELECT status, count(*) AS n FROM subs_parted GROUP BY status) AS s}),
    'active:20 expired:500', 'every due row expired, none of the others');

$log = substr(slurp_file($node->logfile), $log_offset);
for my $partition (qw(subs_parted_free subs_parted_premium))
{
    my @statements = grep { /LIMIT \$6 FOR NO KEY UPDATE SKIP LOCKED/ }
      $log =~ /(Query Text: UPDATE ONLY public\.$partition .*?)(?=\n\S|\z)/sg;
    ok(@statements > 2, "$partition: batches ran in it");
    unlike($statements[0], qr/OPERATOR\(pg_catalog\.>=\) \$7/, "$partition: its first batch starts at its oldest due row");
    is( scalar(grep { /OPERATOR\(pg_catalog\.>=\) \$7/ } @statements[ 1 .. $#statements ]),
        $#statements, "$partition: each later batch starts where its own last one ended");
}

done_testing();
