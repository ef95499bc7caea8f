# The worker's batched run and manual runs at the same moment: every row is
# expired by exactly one of them, and the runs' counts add up to the rows
# expired.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;
use IPC::Run;

my $due = 60000;

my $node = PostgreSQL::Test::Cluster->new('overlap');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'subexpire'
subexpire.enabled = off
subexpire.schedule = '1 second'
subexpire.batch_size = 2000
});
$node->start;

create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', qq{
    CREATE EXTENSION subexpire;
    -- One row here each time a subscription becomes expired.
    CREATE TABLE expirations (id uuid NOT NULL, by_user name NOT NULL);
    CREATE FUNCTION note_expiry() RETURNS trigger LANGUAGE plpgsql AS \$\$
    BEGIN
        INSERT INTO expirations VALUES (NEW.id, current_user);
        RETURN NEW;
    END \$\$;
    CREATE TRIGGER note_expiry AFTER UPDATE ON subscriptions FOR EACH ROW
        WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status = 'expired')
        EXECUTE FUNCTION note_expiry();
    WITH u AS (INSERT INTO users SELECT gen_random_uuid() FROM generate_series(1, $due) RETURNING id)
    INSERT INTO subscriptions (user_id, status, expires_at)
    SELECT id, 'active', now() - interval '1 day' - random() * interval '300 days' FROM u;
});

# The worker starts on its 1-second schedule, and three clients call
# expire_subscriptions() over and over while it works through the backlog.
$node->append_conf('postgresql.conf', 'subexpire.enabled = on');
$node->reload;
ok( $node->poll_query_until('postgres',
        "SELECT count(*) > 0 FROM subexpire_runs WHERE trigger IN ('schedule', 'catch-up') AND expired_count > 0"),
    'the worker is expiring rows');

my @clients;
for my $i (1 .. 3)
{
    my $sql = "SELECT expire_subscriptions();\n" x 20;
    push @clients,
      IPC::Run::start(
        [ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
        '<', \$sql, '>', '/dev/null', '2>', \my $err);
}
my $clients_ok = 1;
$clients_ok &&= $_->finish for @clients;
ok($clients_ok, 'the manual runs succeeded');

ok( $node->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM subscriptions WHERE status = 'active'"),
    'every due row is expired');
ok( $node->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM subexpire_runs WHERE status = 'running'"),
    'no run is left running');

is($node->safe_psql('postgres', 'SELECT count(*) FROM expirations'),
    $due, 'each due row became expired once');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT id) FROM expirations'),
    $due, 'no row was expired twice');
is( $node->safe_psql('postgres',
        "SELECT sum(expired_count) FROM subexpire_runs WHERE status = 'succeeded'"),
    $due, 'the runs\' counts add up to the rows expired');
my ($manual, $worker) = split /\|/, $node->safe_psql('postgres', q{
    SELECT coalesce(sum(expired_count) FILTER (WHERE trigger = 'manual'), 0) > 0,
           coalesce(sum(expired_count) FILTER (WHERE trigger <> 'manual'), 0) > 0
    FROM subexpire_runs});
is($worker, 't', 'the worker expired some rows');
note("manual runs expired some rows too: $manual");
is($node->safe_psql('postgres', "SELECT count(*) FROM subexpire_runs WHERE status = 'failed'"),
    '0', 'no run failed');

done_testing();
