# The worker's batches: one list of the due rows, then batches that take
# its rows by ctid (TID scans), in page order, each from where the one
# before it ended, never the same row twice; a row that was locked while
# its batch passed it is still taken by the run's last step once it is
# released, or counted as skipped if it is not.  The plans come from
# auto_explain, which logs the statements the run worker runs; the order in
# which rows were expired from subexpire.log_expired's lines.
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
subexpire.log_expired = on
# A batch's pieces are subtransactions of its one transaction: its rows
# share their commit's time.
track_commit_timestamp = on
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
# batches run: its batch skips it.
my $oldest = $node->safe_psql('postgres',
    "SELECT id FROM subscriptions ORDER BY expires_at LIMIT 1");
my $app = $node->background_psql('postgres');
$app->query_safe("BEGIN; SELECT 1 FROM subscriptions WHERE id = '$oldest' FOR UPDATE");

my $places = row_places('subscriptions');
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

# Turn the worker on until a run after run $after has expired rows, then
# off; returns that run's "expired_count skipped_locked".
sub worker_run_after
{
    my ($after, $what) = @_;
    reload_with($node, 'subexpire.enabled', 'on');
    ok( $node->poll_query_until('postgres', qq{
            SELECT count(*) > 0 FROM subexpire_runs
            WHERE run_id > $after AND status = 'succeeded' AND expired_count > 0}),
        $what);
    reload_with($node, 'subexpire.enabled', 'off');
    return $node->safe_psql('postgres', qq{
        SELECT expired_count || ' ' || skipped_locked FROM subexpire_runs
        WHERE run_id > $after AND expired_count > 0});
}

# The server log from $offset to the end of the LOG line of the first
# worker run after run $after that expired rows: what that run did, and
# not what a run after it did before the worker was turned off.
sub log_of_run
{
    my ($offset, $after) = @_;
    my $run = $node->safe_psql('postgres', qq{
        SELECT min(run_id) FROM subexpire_runs
        WHERE run_id > $after AND "trigger" <> 'manual' AND expired_count > 0});
    my $log = substr(slurp_file($node->logfile), $offset);
    $log =~ s/(subexpire: \S+ run $run expired [^\n]*\n).*/$1/s
      or die "no LOG line of run $run";
    return $log;
}

# Where each row of a table is, before the run: id => [block, offset].
sub row_places
{
    my ($table) = @_;
    my %place;
    for my $line (split /\n/, $node->safe_psql('postgres', qq{
        SELECT id, (ctid::text::point)[0]::int, (ctid::text::point)[1]::int FROM $table}))
    {
        my ($id, $block, $offset) = split /\|/, $line;
        $place{$id} = [ $block, $offset ];
    }
    return \%place;
}

# The ids that log_expired's lines name, in the order of the lines (the
# key is (id) or (id, plan)).
sub expired_ids
{
    my ($log, $table) = @_;
    return $log =~ /subexpire: expired subscription \(id[^)]*\)=\(([^,)]+)[^)]*\) in public\.$table$/mg;
}

# Are the ctids, taken in order, strictly increasing: page order, and no
# row twice?
sub in_page_order
{
    my @tids = @_;
    for my $i (1 .. $#tids)
    {
        my ($a, $b) = ($tids[ $i - 1 ], $tids[$i]);
        return 0
          unless $a->[0] < $b->[0] || ($a->[0] == $b->[0] && $a->[1] < $b->[1]);
    }
    return 1;
}

# What the run ran: the list of due rows, then the UPDATEs that take a
# batch of it ($6), in order, each with its plan.
my $log = log_of_run($log_offset, 0);
my @statements = $log =~ /(Query Text: (?:SELECT ctid|UPDATE ONLY) .*?)(?=\n\S|\z)/sg;
my @batches = grep { /ANY \(\$6\) AND .* FOR NO KEY UPDATE SKIP LOCKED/ } @statements;
like($statements[0], qr/^Query Text: SELECT ctid FROM ONLY public\.subscriptions WHERE status/,
    'the run lists the due rows before its first batch');
# 1000 due rows listed (the locked one too): ten batches of 100; then the
# run's last step, which comes back for the locked row, expires what it
# lists with the same statement, before and after waiting for the row.
is(scalar(@batches), $due / $batch + 2,
    'one batch statement for each batch, and two for the last step');
is(scalar(grep { /Tid Scan on subscriptions/ && !/Index Scan|Seq Scan/ } @batches),
    scalar(@batches), 'every batch finds its rows by ctid, with no index or sequential scan');
my @tids = map { $places->{$_} } expired_ids($log, 'subscriptions');
is(scalar(@tids), $due - 1, 'the run expired each unlocked due row once');
ok(in_page_order(@tids), 'the batches took the rows in page order, each from where the one before it ended');
# The locked row was listed, and its batch did not take it: the run's last
# step searches the due rows again (its probe, then its UPDATE), and comes
# back for it.
my $searches = () = $log =~ /Query Text: SELECT 1 FROM public\.subscriptions WHERE status/g;
ok($searches > 0, 'a listed row that its batch did not take: the last step searched the due rows again');

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

# ---- A partitioned table: each partition's rows in its own page order ----

# 250 due rows in each of two partitions, and 20 not due: with batches of
# 100, a batch can end in one partition and go on in the other.
$node->safe_psql('postgres', q{
    CREATE TABLE subs_parted (id int, plan text, status text,
                              expires_at timestamptz, updated_at timestamptz,
                              PRIMARY KEY (id, plan))
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
my %partition_of = map { split /\|/ } split /\n/, $node->safe_psql('postgres',
    'SELECT id, tableoid::regclass FROM subs_parted');
$places = row_places('subs_parted');
$log_offset = -s $node->logfile;
reload_with($node, 'subexpire.target_table', 'public.subs_parted');
is(worker_run_after($last_run, 'the worker ran on the partitioned table'),
    '500 0', 'one run expired the 500 due rows of both partitions');
is( $node->safe_psql('postgres', q{
        SELECT string_agg(status || ':' || n, ' ' ORDER BY status)
        FROM (SELECT status, count(*) AS n FROM subs_parted GROUP BY status) AS s}),
    'active:20 expired:500', 'every due row expired, none of the others');

$log = log_of_run($log_offset, $last_run);
for my $partition (qw(subs_parted_free subs_parted_premium))
{
    my @statements = grep { /ANY \(\$6\) AND .* FOR NO KEY UPDATE SKIP LOCKED/ }
      $log =~ /(Query Text: UPDATE ONLY public\.$partition .*?)(?=\n\S|\z)/sg;
    # 250 rows in batches of 100 that go on from one partition to the next.
    is(scalar(@statements), 3, "$partition: three batches ran in it");
    my @tids = map { $places->{$_} }
      grep { $partition_of{$_} eq $partition } expired_ids($log, 'subs_parted');
    is(scalar(@tids), 250, "$partition: each of its 250 due rows expired once");
    ok(in_page_order(@tids), "$partition: in its page order, each batch from where the one before it ended");
}
# Every listed row taken: the run ended without searching the due rows
# again, which would have stepped over the entries of the rows it expired.
is(scalar(() = $log =~ /Query Text: (?:SELECT 1 FROM|UPDATE) public\.subs_parted\b/g),
    0, 'every listed row taken by a batch: the last step did not search the due rows again');

# ---- More rows due than one list can hold ----

# maintenance_work_mem at its least, 1MB, holds 174,762 ctids: 200,000 due
# rows take two lists, the second made once the first is used up.
my $many = 200000;
reload_with($node, 'subexpire.target_table', 'public.subscriptions');
reload_with($node, 'subexpire.log_expired', 'off');
reload_with($node, 'subexpire.batch_size', '50000');
reload_with($node, 'maintenance_work_mem', '1MB');
add_subscriptions($node, 'postgres', $many, "'2001-01-01 00:00+00'");
$node->safe_psql('postgres', 'ANALYZE subscriptions');
$last_run = $node->safe_psql('postgres', 'SELECT max(run_id) FROM subexpire_runs');
$log_offset = -s $node->logfile;
is(worker_run_after($last_run, 'the worker ran with more rows due than one list holds'),
    "$many 0", "one run expired the $many due rows");
is( $node->safe_psql('postgres', q{
        SELECT count(*) FROM subscriptions
        WHERE status = 'active' AND expires_at <= now()}),
    '0', 'no due row is left');
$log = log_of_run($log_offset, $last_run);
my @lists = $log =~ /Query Text: SELECT ctid FROM ONLY public\.subscriptions WHERE status/g;
is(scalar(@lists), 2, 'the run made two lists of the due rows, the second after the first was used up');
# 174,762 rows in batches of 50,000, then 25,238 in one; a batch is one
# transaction, whatever number of statements (and subtransactions) it
# takes its rows in: one commit.
is( $node->safe_psql('postgres', q{
        SELECT count(DISTINCT pg_xact_commit_timestamp(xmin)) FROM subscriptions
        WHERE expires_at = '2001-01-01 00:00+00'}),
    '5', 'four batches from the first list, one from the second');
is(scalar(() = $log =~ /Query Text: SELECT 1 FROM public\.subscriptions\b/g),
    0, 'every row of both lists taken: no search of the due rows after the batches');

done_testing();
