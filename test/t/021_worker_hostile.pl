# What a hostile role can do to the worker, and cannot: take its
# one-run-at-a-time guard, run its code as the bootstrap superuser through
# a partition's trigger, make a run loop with a trigger that keeps the
# status, stall it with a table lock, or end it with an error while it
# records a failure.  Also deferred constraint triggers in the worker.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('hostile');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'subexpire'
subexpire.schedule = '1 second'
subexpire.enabled = off
maintenance_work_mem = '1MB'
timezone = 'UTC'
});
$node->start;
create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', q{
    CREATE EXTENSION subexpire;
    CREATE ROLE app LOGIN;
    CREATE ROLE nobody LOGIN;
    CREATE SCHEMA app AUTHORIZATION app;
    SET ROLE app;
    CREATE TABLE app.seen (what text, who name);
    CREATE FUNCTION app.note() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO app.seen VALUES (TG_TABLE_NAME, current_user);
        IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
            EXECUTE 'ALTER ROLE app SUPERUSER';
        END IF;
        RETURN NEW;
    END $$;
    RESET ROLE;
});

sub log_contains
{
    my ($pattern, $from) = @_;
    return slurp_file($node->logfile, $from) =~ $pattern;
}

sub wait_for_log
{
    my ($pattern, $from) = @_;
    foreach (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
    {
        return 1 if log_contains($pattern, $from);
        usleep(100_000);
    }
    return 0;
}

# ---- the guard: an advisory lock of anyone's does not stop the worker ----

my $holder = $node->background_psql('postgres', extra_params => [ '-U', 'nobody' ]);
$holder->query_safe('SELECT pg_advisory_lock(21336, 0), pg_advisory_lock(0, 21336)');
$holder->query_safe('SELECT pg_advisory_lock(21336)');
add_subscriptions($node, 'postgres', 3, "now() - interval '1 day'");
reload_with($node, 'subexpire.enabled', 'on');
ok( $node->poll_query_until('postgres',
        "SELECT count(*) = 3 FROM subscriptions WHERE status = 'expired'"),
    "a role holding advisory locks does not keep the worker from running");
$holder->quit;

# ---- a partition's trigger never runs as the bootstrap superuser ----

$node->safe_psql('postgres', q{
    CREATE TABLE public.parts (id int, status text, expires_at timestamptz,
                               updated_at timestamptz) PARTITION BY RANGE (id);
    CREATE TABLE public.parts_1 PARTITION OF public.parts FOR VALUES FROM (0) TO (10);
    CREATE TABLE public.parts_2 PARTITION OF public.parts FOR VALUES FROM (10) TO (20);
    ALTER TABLE public.parts_2 OWNER TO app;
    CREATE TRIGGER note BEFORE UPDATE ON public.parts_2 FOR EACH ROW EXECUTE FUNCTION app.note();
    INSERT INTO public.parts VALUES (1, 'active', '2000-01-01'), (11, 'active', '2000-01-01');
});
my $offset = -s $node->logfile;
reload_with($node, 'subexpire.target_table', 'public.parts');
ok( wait_for_log(qr/partition public\.parts_2 of public\.parts is owned by role "app", not by the table's owner "postgres"/, $offset),
    'a partition owned by another role than the table is refused, and the log says why');
is($node->safe_psql('postgres', "SELECT count(*) FROM public.parts WHERE status = 'active'"),
    '2', 'nothing was expired');
is($node->safe_psql('postgres', 'SELECT count(*) FROM app.seen'),
    '0', "the partition's trigger did not run");

$node->safe_psql('postgres', q{
    ALTER TABLE public.parts OWNER TO app;
    ALTER TABLE public.parts_1 OWNER TO app;
});
ok( $node->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM public.parts WHERE status = 'active'"),
    'with one owner for all of them, the worker expires the rows');
is($node->safe_psql('postgres', 'SELECT string_agg(DISTINCT who, \',\') FROM app.seen'),
    'app', "the partition's trigger ran as its owner");
is($node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'app'"),
    'f', 'the owner did not become a superuser');

# ---- a deferred constraint trigger fires in the worker ----

$node->safe_psql('postgres', q{
    DELETE FROM app.seen;
    SET ROLE app;
    CREATE CONSTRAINT TRIGGER deferred_note AFTER UPDATE ON public.parts_1
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION app.note();
    RESET ROLE;
    INSERT INTO public.parts VALUES (2, 'active', '2000-01-01');
});
ok( $node->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM public.parts WHERE status = 'active'"),
    'a table with a deferred constraint trigger: the worker expires its rows');
is($node->safe_psql('postgres', 'SELECT what || \':\' || who FROM app.seen'),
    'parts_1:app', 'and the trigger fired, as the owner');

# ---- status words that the column compares as equal are refused ----

$node->safe_psql('postgres', q{
    SET ROLE app;
    CREATE TABLE app.fixed (id int, status char(10), expires_at timestamptz, updated_at timestamptz);
    CREATE COLLATION app.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
    CREATE TABLE app.folded (id int, status text COLLATE app.ci, expires_at timestamptz, updated_at timestamptz);
    INSERT INTO app.fixed SELECT n, 'active', '2000-01-01' FROM generate_series(1, 1000) AS n;
    INSERT INTO app.folded SELECT n, 'active', '2000-01-01' FROM generate_series(1, 1000) AS n;
    RESET ROLE;
});
$offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "subexpire.expired_status = 'active '\n");
reload_with($node, 'subexpire.target_table', 'app.fixed');
ok(wait_for_log(qr/subexpire\.active_status "active" and subexpire\.expired_status "active " are the same value of column status of app\.fixed/, $offset),
    "the worker refuses words that a char(10) column compares as equal");
$offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "subexpire.expired_status = 'ACTIVE'\n");
reload_with($node, 'subexpire.target_table', 'app.folded');
ok(wait_for_log(qr/subexpire\.active_status "active" and subexpire\.expired_status "ACTIVE" are the same value of column status of app\.folded/, $offset),
    "and words that a case-insensitive collation compares as equal");
is( $node->safe_psql('postgres', q{
        SELECT (SELECT count(*) FROM app.fixed WHERE status = 'active') + (SELECT count(*) FROM app.folded WHERE status = 'active')}),
    '2000', 'having touched no row');
is( $node->safe_psql('postgres', "SELECT pg_relation_size('app.fixed') + pg_relation_size('app.folded') <= 2 * 65536"),
    't', 'nor written a row version');
$node->append_conf('postgresql.conf', "subexpire.expired_status = 'expired'\n");
reload_with($node, 'subexpire.target_table', 'public.parts');

# ---- a trigger that keeps the status cannot make a run loop ----

# More due rows than one list holds with maintenance_work_mem = 1MB
# (174,762 ctids), every one kept active by the trigger.
$node->safe_psql('postgres', q{
    SET ROLE app;
    CREATE TABLE app.kept (id int PRIMARY KEY, status text, expires_at timestamptz, updated_at timestamptz);
    CREATE INDEX ON app.kept (status, expires_at);
    CREATE FUNCTION app.keep_status() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF OLD.id % 10 <> 0 THEN
            NEW.status := OLD.status;
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER keep BEFORE UPDATE ON app.kept FOR EACH ROW EXECUTE FUNCTION app.keep_status();
    INSERT INTO app.kept SELECT n, 'active', '2000-01-01' FROM generate_series(1, 180000) AS n;
    RESET ROLE;
});
reload_with($node, 'subexpire.enabled', 'off');
ok($node->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'subexpire run'"),
    'no run goes on');
my $last_run = $node->safe_psql('postgres', 'SELECT coalesce(max(run_id), 0) FROM subexpire_runs');
$offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "subexpire.target_table = 'app.kept'\n");
reload_with($node, 'subexpire.enabled', 'on');
ok( $node->poll_query_until('postgres', qq{
        SELECT count(*) > 0 FROM subexpire_runs
        WHERE run_id > $last_run AND status <> 'running'}),
    'a worker run over 180,000 rows that a trigger keeps due ends');
is( $node->safe_psql('postgres', qq{
        SELECT status || ':' || expired_count || ':' || kept_active FROM subexpire_runs
        WHERE run_id > $last_run AND status <> 'running' ORDER BY run_id LIMIT 1}),
    'succeeded:18000:162000',
    'it counted only the rows that got the expired status, and recorded those kept due');
ok(wait_for_log(qr/162000 due subscriptions in app\.kept stayed due after the run updated them/, $offset),
    'and warned about the rows the trigger kept due');
reload_with($node, 'subexpire.enabled', 'off');
ok($node->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'subexpire run'"),
    'no run goes on');

# The same with a trigger that puts the status back by an UPDATE of its
# own, after the run's: the run leaves out every row version it wrote.
$node->safe_psql('postgres', q{
    SET ROLE app;
    DROP TRIGGER keep ON app.kept;
    CREATE FUNCTION app.put_back() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE app.kept SET status = 'active' WHERE id = NEW.id;
        RETURN NULL;
    END $$;
    CREATE TRIGGER put_back AFTER UPDATE ON app.kept FOR EACH ROW
        WHEN (NEW.status = 'expired') EXECUTE FUNCTION app.put_back();
    UPDATE app.kept SET status = 'active';
    RESET ROLE;
});
$last_run = $node->safe_psql('postgres', 'SELECT coalesce(max(run_id), 0) FROM subexpire_runs');
reload_with($node, 'subexpire.enabled', 'on');
ok( $node->poll_query_until('postgres', qq{
        SELECT count(*) > 0 FROM subexpire_runs
        WHERE run_id > $last_run AND status = 'succeeded'}),
    'a worker run over 180,000 rows that a trigger puts back to active ends');
is( $node->safe_psql('postgres', qq{
        SELECT expired_count FROM subexpire_runs
        WHERE run_id > $last_run AND status = 'succeeded' ORDER BY run_id LIMIT 1}),
    '180000', "counting the rows its UPDATE expired: the trigger's own UPDATE is not the run's");
reload_with($node, 'subexpire.enabled', 'off');
ok($node->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'subexpire run'"),
    'no run goes on');
$node->safe_psql('postgres', 'DROP TABLE app.kept');

# ---- a table lock bounds the run's wait; the run is retried ----

$node->append_conf('postgresql.conf', q{
subexpire.target_table = 'public.subscriptions'
subexpire.schedule = '0 0 1 1 *'
subexpire.lock_wait = '500ms'
});
$node->reload;
$node->safe_psql('postgres', q{
    GRANT SELECT, UPDATE ON subscriptions TO nobody;
    DELETE FROM subexpire_runs;
});
add_subscriptions($node, 'postgres', 4, "now() - interval '1 day'");
my $locker = $node->background_psql('postgres', extra_params => [ '-U', 'nobody' ]);
$locker->query_safe('BEGIN');
$locker->query_safe('LOCK TABLE subscriptions IN SHARE MODE');
start_one_catch_up_run($node);
ok( $node->poll_query_until('postgres', q{
        SELECT count(*) > 0 FROM subexpire_runs
        WHERE status = 'failed' AND error LIKE 'could not lock table public.subscriptions%'}),
    'a run that waits for a table lock longer than subexpire.lock_wait fails, recorded');
is($node->safe_psql('postgres', "SELECT count(*) FROM subscriptions WHERE status = 'active'"),
    '4', 'having changed nothing');
$locker->query_safe('COMMIT');
ok( $node->poll_query_until('postgres', q{
        SELECT count(*) = 0 FROM subscriptions WHERE status = 'active'}),
    'once the lock is released, the run is tried again within a minute, and expires the rows');
is( $node->safe_psql('postgres',
        "SELECT string_agg(status, ',' ORDER BY run_id) FROM subexpire_runs WHERE \"trigger\" = 'catch-up'"),
    'failed,succeeded', 'as a catch-up run, as the one that failed');

# A reload that turns the worker off while a run waits for the lock is
# taken before the run starts.
$node->append_conf('postgresql.conf', "subexpire.lock_wait = '60s'\n");
$node->reload;
reload_with($node, 'subexpire.enabled', 'off');
$node->safe_psql('postgres', q{
    DELETE FROM subexpire_runs;
});
add_subscriptions($node, 'postgres', 2, "now() - interval '1 day'");
$locker->query_safe('BEGIN');
$locker->query_safe('LOCK TABLE subscriptions IN SHARE MODE');
start_one_catch_up_run($node);
ok( $node->poll_query_until('postgres', q{
        SELECT count(*) = 1 FROM pg_stat_activity
        WHERE backend_type = 'subexpire run' AND wait_event_type = 'Lock'}),
    'a run waits for the table lock');
reload_with($node, 'subexpire.enabled', 'off');
$locker->query_safe('COMMIT');
ok($node->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'subexpire run'"),
    'the run worker ended');
is( $node->safe_psql('postgres', q{
        SELECT (SELECT count(*) FROM subscriptions WHERE status = 'active') || ':' ||
               (SELECT count(*) FROM subexpire_runs WHERE "trigger" = 'catch-up')}),
    '2:0', 'turned off meanwhile, it ran nothing');
$locker->quit;

# ---- subexpire_runs emptied during a run: the failure is logged ----

$node->append_conf('postgresql.conf', q{
subexpire.lock_wait = '1s'
subexpire.batch_size = 2
});
$node->reload;
$node->safe_psql('postgres', q{
    CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_sleep(0.3);
        RETURN NEW;
    END $$;
    CREATE TRIGGER slow BEFORE UPDATE ON subscriptions FOR EACH ROW EXECUTE FUNCTION public.slow();
    DELETE FROM subexpire_runs;
});
add_subscriptions($node, 'postgres', 8, "now() - interval '1 day'");
$offset = -s $node->logfile;
start_one_catch_up_run($node);
ok( $node->poll_query_until('postgres', q{
        SELECT expired_count >= 2 FROM subexpire_runs WHERE "trigger" = 'catch-up'}),
    'a run has committed a batch');
$node->safe_psql('postgres', 'TRUNCATE subexpire_runs');
ok(wait_for_log(qr/catch-up run failed: the record of run \d+ is gone from subexpire_runs/, $offset),
    'the run fails saying that its record is gone');
ok(wait_for_log(qr/could not record the failure of a catch-up run/, $offset),
    'and that its failure could not be recorded');
ok($node->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'subexpire run'"),
    'the run worker ended');
my $log = slurp_file($node->logfile, $offset);
unlike($log, qr/subexpire run.*exited with exit code 1/, 'cleanly, not with exit code 1');
unlike($log, qr/exited before it said how its run ended/, 'and the scheduler knows that it ran');
is($node->safe_psql('postgres', 'SELECT runs_failed > 0 FROM subexpire_stats'),
    't', 'the failure is counted in the statistics');

done_testing();
