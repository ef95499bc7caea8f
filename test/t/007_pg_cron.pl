# pg_cron as the alternative scheduler: the real pg_cron (Debian's
# postgresql-15-cron) fires "SELECT expire_subscriptions()" on its own
# schedule; rows expire and the run is recorded as a manual one.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('cron');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_cron, subexpire'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
subexpire.enabled = off
});
$node->start;

create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', q{
    CREATE EXTENSION pg_cron;
    CREATE EXTENSION subexpire;
    WITH u AS (INSERT INTO users SELECT gen_random_uuid() FROM generate_series(1, 50) RETURNING id)
    INSERT INTO subscriptions (user_id, status, expires_at)
    SELECT id, 'active',
           CASE WHEN row_number() OVER () <= 30 THEN now() - interval '1 day'
                ELSE now() + interval '30 days' END
    FROM u;
});

# The README's one line.
$node->safe_psql('postgres',
    "SELECT cron.schedule('expire-subscriptions', '* * * * *', 'SELECT expire_subscriptions()')");

# pg_cron fires at the next whole minute.
ok( $node->poll_query_until('postgres',
        "SELECT count(*) > 0 FROM cron.job_run_details WHERE status = 'succeeded'", 't'),
    'pg_cron ran the job');

is($node->safe_psql('postgres',
        "SELECT count(*) FROM subscriptions WHERE status = 'expired'"),
    '30', 'the due rows expired');
is($node->safe_psql('postgres',
        "SELECT count(*) FROM subscriptions WHERE status = 'active' AND expires_at > now()"),
    '20', 'the others did not');
is($node->safe_psql('postgres',
        "SELECT trigger || ':' || status || ':' || expired_count FROM subexpire_runs ORDER BY run_id LIMIT 1"),
    'manual:succeeded:30', 'the run was recorded');

done_testing();
