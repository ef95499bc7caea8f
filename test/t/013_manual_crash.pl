# kill -9 of a backend in the middle of expire_subscriptions() over a few
# hundred thousand due rows: the run's one transaction never commits, so
# nothing is half done and nothing is recorded; the next run expires every
# due row, once.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $due = 300000;

my $node = PostgreSQL::Test::Cluster->new('manual_crash');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'subexpire'
subexpire.enabled = off
restart_after_crash = on
});
$node->start;
create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', q{
    CREATE EXTENSION subexpire;
    -- One row here each time a subscription becomes expired.
    CREATE TABLE expirations (id uuid NOT NULL);
    CREATE FUNCTION note_expiry() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO expirations SELECT id FROM new_rows WHERE status = 'expired';
        RETURN NULL;
    END $$;
    CREATE TRIGGER note_expiry AFTER UPDATE ON subscriptions
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION note_expiry();
});
add_subscriptions($node, 'postgres', $due, "now() - interval '1 day'");

# Start the run, and kill its backend while its UPDATE is under way.
my $session = $node->background_psql('postgres');
my $pid = $session->query_safe('SELECT pg_backend_pid()');
$session->query_until(qr/started/, q{
\echo started
SELECT * FROM expire_subscriptions();
});
ok( $node->poll_query_until('postgres', qq{
        SELECT count(*) > 0 FROM pg_stat_activity
        WHERE pid = $pid AND state = 'active' AND query LIKE '%expire_subscriptions%'}),
    'the run is under way');
kill 'KILL', $pid;
eval { $session->quit; };

ok($node->poll_query_until('postgres', 'SELECT true'),
    'the server is back after the crash');
is( $node->safe_psql('postgres',
        "SELECT count(*) FILTER (WHERE status = 'expired') || ':' || "
          . "(SELECT count(*) FROM subexpire_runs) FROM subscriptions"),
    '0:0', 'the killed run left no row expired and no record');

is($node->safe_psql('postgres', 'SELECT expired_count FROM expire_subscriptions()'),
    $due, 'the next run expires every due row');
is( $node->safe_psql('postgres',
        'SELECT count(*) || \':\' || count(DISTINCT id) FROM expirations'),
    "$due:$due", 'each row once');
is( $node->safe_psql('postgres',
        "SELECT sum(expired_count) || ':' || count(*) FILTER (WHERE status <> 'succeeded') FROM subexpire_runs"),
    "$due:0", 'the records add up to the rows expired, and none is left running or failed');

done_testing();
