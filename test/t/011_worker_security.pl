# Neither the owner of the subscriptions table nor the worker's own role can
# make the worker run their code with more rights than they have.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('security');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'subexpire'
subexpire.schedule = '1 second'
});
$node->start;
create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', q{
    CREATE EXTENSION subexpire;
    -- The application owns its table, and puts a trigger on it that would
    -- make it a superuser if it ever ran as one.
    CREATE ROLE app LOGIN;
    ALTER TABLE users OWNER TO app;
    ALTER TABLE subscriptions OWNER TO app;
    CREATE SCHEMA app AUTHORIZATION app;
    SET ROLE app;
    CREATE TABLE app.seen (who name);
    CREATE FUNCTION app.note() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO app.seen VALUES (current_user);
        IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            EXECUTE 'ALTER ROLE app SUPERUSER';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER note BEFORE UPDATE ON subscriptions FOR EACH ROW EXECUTE FUNCTION app.note();
    RESET ROLE;
});
add_subscriptions($node, 'postgres', 3, "now() - interval '1 day'");

# The worker runs as the bootstrap superuser (subexpire.role is empty).
ok( $node->poll_query_until('postgres',
        "SELECT count(*) = 3 FROM subscriptions WHERE status = 'expired'"),
    'the worker expired the rows');
is($node->safe_psql('postgres', 'SELECT DISTINCT who FROM app.seen'),
    'app', "the table's trigger ran as the table's owner, not as a superuser");
is($node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'app'"),
    'f', 'the table owner did not become a superuser');

# A worker role that plants an operator in its search_path: the run
# records are written as the extension's owner, with pg_catalog's
# operators only.
$node->safe_psql('postgres', q{
    CREATE ROLE w LOGIN;
    GRANT SELECT, UPDATE ON subscriptions TO w;
    GRANT USAGE ON SCHEMA app TO w;
    GRANT INSERT ON app.seen TO w;
    CREATE SCHEMA w AUTHORIZATION w;
    ALTER ROLE w SET search_path = w, pg_catalog, public;
    SET ROLE w;
    CREATE FUNCTION w.eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$
    BEGIN
        IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            EXECUTE 'ALTER ROLE w SUPERUSER';
        END IF;
        RETURN $1 OPERATOR(pg_catalog.=) $2;
    END $$;
    CREATE OPERATOR w.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = w.eq);
    CREATE FUNCTION w.plus(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS $$
    BEGIN
        IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            EXECUTE 'ALTER ROLE w SUPERUSER';
        END IF;
        RETURN $1 OPERATOR(pg_catalog.+) $2;
    END $$;
    CREATE OPERATOR w.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = w.plus);
    RESET ROLE;
});
$node->append_conf('postgresql.conf', "subexpire.role = 'w'");
$node->reload;
add_subscriptions($node, 'postgres', 2, "now() - interval '1 day'");
ok( $node->poll_query_until('postgres',
        "SELECT count(*) = 5 FROM subscriptions WHERE status = 'expired'"),
    'the worker, as role w, expired the new rows');
ok( $node->poll_query_until('postgres',
        "SELECT count(*) > 0 FROM subexpire_runs WHERE expired_count = 2 AND status = 'succeeded'"),
    'and recorded the run');
is($node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'w'"),
    'f', 'the worker role did not become a superuser');
is($node->safe_psql('postgres', "SELECT count(*) FROM app.seen WHERE who = 'w'"),
    '0', "with subexpire.role set, the trigger still runs as the table's owner");

done_testing();
