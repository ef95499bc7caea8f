# A hot standby refuses to expire subscriptions, with a hint to use the
# primary, and changes nothing; a dry run works there.  The primary's run
# reaches the standby by replication.
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
$primary->append_conf('postgresql.conf', "shared_preload_libraries = 'subexpire'");
$primary->start;
create_reference_schema($primary, 'postgres');
$primary->safe_psql('postgres', q{
    CREATE EXTENSION subexpire;
    WITH u AS (INSERT INTO users SELECT gen_random_uuid() FROM generate_series(1, 5) RETURNING id)
    INSERT INTO subscriptions (user_id, status, expires_at)
    SELECT id, 'active', '2026-05-01 00:00+00'::timestamptz + (row_number() OVER ()) * interval '7 days'
    FROM u;
});

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

my $as_of = "'2026-05-20 00:00+00'";
my ($ret, $stdout, $stderr) =
  $standby->psql('postgres', "SELECT * FROM expire_subscriptions($as_of)");
isnt($ret, 0, 'a run on a hot standby fails');
like($stderr, qr/ERROR:  cannot expire subscriptions on a hot standby/,
    'the error says why');
like($stderr, qr/HINT:  Call expire_subscriptions\(\) on the primary/,
    'the hint says where to run it');

is( $standby->safe_psql('postgres',
        "SELECT expired_count FROM expire_subscriptions($as_of, dry_run => true)"),
    '2',
    'a dry run on the standby counts the due rows');

is( $primary->safe_psql('postgres',
        "SELECT count(*) FROM subscriptions WHERE status = 'expired'"),
    '0', 'nothing was expired by the attempts on the standby');

is( $primary->safe_psql('postgres',
        "SELECT expired_count FROM expire_subscriptions($as_of)"),
    '2', 'the primary expires the due rows');
$primary->wait_for_catchup($standby);
is( $standby->safe_psql('postgres',
        "SELECT count(*) FILTER (WHERE status = 'expired') || '/' || "
          . "(SELECT count(*) FROM subexpire_runs) FROM subscriptions"),
    '2/1', 'the standby sees the expired rows and the run record');

done_testing();
