# Lifecycle rules in the worker: three rules over one table, in batches
# that commit one by one; a row moved by one rule is taken by the next in
# the same run; each rule's record counts exactly its rows.  A rule that
# fails (its table dropped, a trigger that raises) leaves the others to
# run and commit, and the run says failed; a disabled rule does not run.
# A locked row is left and counted under its rule, by the function and by
# the worker.  A rule is refused when the worker's role may not update its
# table.  A SIGKILL of the run worker in the middle of a rule loses no
# committed batch of any rule.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $batch = 50;

my $node = PostgreSQL::Test::Cluster->new('rules');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'subexpire'
subexpire.enabled = off
subexpire.schedule = '1 seconds'
subexpire.catch_up = off
subexpire.batch_size = $batch
restart_after_crash = on
});
$node->start;

$node->safe_psql('postgres', q{
    CREATE EXTENSION subexpire;
    CREATE TABLE accounts (
        id            bigint PRIMARY KEY,
        status        text NOT NULL,
        plan          text NOT NULL DEFAULT 'premium',
        trial_ends_at timestamptz,
        ends_at       timestamptz,
        updated_at    timestamptz NOT NULL DEFAULT '2000-01-01'
    );
    CREATE INDEX ON accounts (status, ends_at);
    CREATE INDEX ON accounts (status, trial_ends_at);
    -- One row here for each status change, committed with it, with the
    -- transaction that made it.
    CREATE TABLE changes (id bigint, old_status text, new_status text,
                          plan text, xid xid8 DEFAULT pg_current_xact_id());
    CREATE FUNCTION note_changes() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO changes (id, old_status, new_status, plan)
        SELECT n.id, o.status, n.status, n.plan
        FROM new_rows n JOIN old_rows o USING (id)
        WHERE o.status IS DISTINCT FROM n.status;
        RETURN NULL;
    END $$;
    CREATE TRIGGER note_changes AFTER UPDATE ON accounts
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION note_changes();
});

# Rows of each kind, numbered from $from: 200 trials that ended, 300 paid
# periods that ended yesterday, 100 that ended a month ago (past their
# grace too), 150 past_due whose grace is over, and 50 of nothing due.
sub add_accounts
{
    my ($from) = @_;
    $node->safe_psql('postgres', qq{
        INSERT INTO accounts (id, status, trial_ends_at, ends_at)
        SELECT $from + n,
               CASE WHEN n <= 200 THEN 'trialing'
                    WHEN n <= 600 THEN 'active'
                    WHEN n <= 750 THEN 'past_due'
                    ELSE 'active' END,
               CASE WHEN n <= 200 THEN now() - interval '1 day' END,
               CASE WHEN n <= 200 THEN NULL
                    WHEN n <= 500 THEN now() - interval '1 day'
                    WHEN n <= 600 THEN now() - interval '30 days'
                    WHEN n <= 750 THEN now() - interval '10 days'
                    ELSE now() + interval '30 days' END
        FROM generate_series(1, 800) AS n;
        ANALYZE accounts;
    });
    return;
}

$node->safe_psql('postgres', q{
    INSERT INTO subexpire_rules (rule_name, target_table, from_status, to_status,
                                 expires_column, set_columns, run_order)
    VALUES ('trial-end', 'public.accounts', 'trialing', 'expired', 'trial_ends_at',
            '{"plan": "free", "trial_ends_at": null}', 10),
           ('period-end', 'public.accounts', 'active', 'past_due', 'ends_at', '{}', 20),
           ('grace-end', 'public.accounts', 'past_due', 'canceled', 'ends_at',
            '{"plan": "free"}', 30);
    UPDATE subexpire_rules SET grace_period = '7 days' WHERE rule_name = 'grace-end';
});

# Turn the worker on until a run after run $after has expired rows and
# ended, then off; returns that run's id.  (The schedule fires every
# second: a run that finds nothing may follow it before the worker is off.)
sub one_run_after
{
    my ($after) = @_;
    my $ended = qq{run_id > $after AND status <> 'running' AND expired_count > 0};
    reload_with($node, 'subexpire.enabled', 'on');
    $node->poll_query_until('postgres', "SELECT count(*) > 0 FROM subexpire_runs WHERE $ended")
      or die "no run after $after ended";
    reload_with($node, 'subexpire.enabled', 'off');
    $node->poll_query_until('postgres', q{
        SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'subexpire run'})
      or die 'the run worker did not exit';
    return $node->safe_psql('postgres', "SELECT min(run_id) FROM subexpire_runs WHERE $ended");
}

sub rule_counts
{
    my ($run) = @_;
    return $node->safe_psql('postgres', qq{
        SELECT string_agg(rule_name || '=' || expired_count
                          || coalesce(' (' || error || ')', ''), ', ' ORDER BY rule_name)
        FROM subexpire_run_rules WHERE run_id = $run});
}

# ---- three rules in batches ----

add_accounts(0);
my $run = one_run_after(0);
is($node->safe_psql('postgres', "SELECT status || ' ' || expired_count FROM subexpire_runs WHERE run_id = $run"),
    'succeeded 850', 'the run expired the rows of the three rules');
is(rule_counts($run), 'grace-end=250, period-end=400, trial-end=200',
    "each rule's record counts its rows: grace-end takes the 150 past_due and the 100 moved to past_due by period-end in the same run");
is( $node->safe_psql('postgres', q{
        SELECT string_agg(status || ':' || plan || ':' || n, ' ' ORDER BY status, plan)
        FROM (SELECT status, plan, count(*) AS n FROM accounts GROUP BY 1, 2) AS s}),
    'active:premium:50 canceled:free:250 expired:free:200 past_due:premium:300',
    'every row got its rule\'s status, and the plan fell back to free where a rule says so');
is($node->safe_psql('postgres', 'SELECT count(*) FROM accounts WHERE status = \'expired\' AND trial_ends_at IS NOT NULL'),
    '0', 'trial-end cleared the trial\'s end (a JSON null)');
is( $node->safe_psql('postgres', q{
        SELECT count(*) FROM changes c JOIN changes d USING (id)
        WHERE c.old_status = 'active' AND c.new_status = 'past_due'
          AND d.old_status = 'past_due' AND d.new_status = 'canceled'}),
    '100', 'the 100 rows a month past their end went active, past_due, canceled in one run');
is( $node->safe_psql('postgres', qq{
        SELECT count(*) = count(DISTINCT (id, old_status)) FROM changes}),
    't', 'no row was changed twice by the same rule');
ok( $node->safe_psql('postgres', q{
        SELECT min(n) FROM (SELECT old_status, count(DISTINCT xid) AS n FROM changes GROUP BY 1) AS t})
      >= 4,
    'each rule committed its rows in several transactions (batches)');
is( $node->safe_psql('postgres', q{
        SELECT max(n) FROM (SELECT xid, count(*) AS n FROM changes GROUP BY 1) AS t}),
    $batch, "no transaction changed more than a batch ($batch rows)");
is( $node->safe_psql('postgres', q{
        SELECT string_agg(rule_name || '=' || runs_failed || '/' || expired_total, ', ' ORDER BY rule_name)
        FROM subexpire_rule_stats()}),
    'grace-end=0/250, period-end=0/400, trial-end=0/200',
    'the statistics count each rule');
like($node->safe_psql('postgres', 'SELECT subexpire_metrics()'),
    qr/^subscription_expiry_rule_expired_total\{rule="grace-end"\} 250$/m,
    'the metrics carry each rule');
like($node->safe_psql('postgres', 'SELECT subexpire_metrics()'),
    qr/^subscription_expiry_total 850$/m, 'and the 1.x series their sum');
ok($node->log_contains(qr/LOG:  subexpire: schedule run $run expired 850 subscriptions due at .* under 3 rules/),
    'the run\'s log line says how many rules it made');
# The rules' statistics survive a clean restart (the statistics file).
my $rule_stats = q{
    SELECT string_agg(rule_name || '=' || runs_total || '/' || expired_total, ', ' ORDER BY rule_name)
    FROM subexpire_rule_stats()};
my $stats_before = $node->safe_psql('postgres', $rule_stats);
$node->restart;
is($node->safe_psql('postgres', $rule_stats), $stats_before,
    "the rules' statistics are kept across a clean restart");

# ---- a rule that fails, and one that is disabled ----

$node->safe_psql('postgres', q{
    TRUNCATE changes;
    CREATE TABLE doomed (status text, expires_at timestamptz, updated_at timestamptz);
    INSERT INTO doomed VALUES ('active', now() - interval '1 day', NULL);
    INSERT INTO subexpire_rules (rule_name, target_table, run_order)
    VALUES ('doomed', 'public.doomed', 15);
    CREATE TABLE raising (status text, expires_at timestamptz, updated_at timestamptz);
    INSERT INTO raising SELECT 'active', now() - interval '1 day', NULL FROM generate_series(1, 10);
    -- Not about a row (its SQLSTATE), so the rule fails.
    CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'billing sync is down' USING ERRCODE = 'object_not_in_prerequisite_state'; END $$;
    CREATE TRIGGER refuse BEFORE UPDATE ON raising FOR EACH ROW EXECUTE FUNCTION refuse();
    INSERT INTO subexpire_rules (rule_name, target_table, run_order)
    VALUES ('raising', 'public.raising', 25);
    INSERT INTO subexpire_rules (rule_name, target_table, from_status, to_status,
                                 expires_column, enabled)
    VALUES ('off', 'public.accounts', 'past_due', 'gone', 'ends_at', false);
    DROP TABLE doomed;
});
add_accounts(1000);
my $run2 = one_run_after($run);
is($node->safe_psql('postgres', "SELECT status FROM subexpire_runs WHERE run_id = $run2"),
    'failed', 'a run in which a rule failed is failed');
like($node->safe_psql('postgres', "SELECT error FROM subexpire_runs WHERE run_id = $run2"),
    qr/^rule "doomed" failed: table public\.doomed named by target_table of rule "doomed" does not exist/,
    'its error names the first rule that failed, and why');
is(rule_counts($run2),
    'doomed=0 (table public.doomed named by target_table of rule "doomed" does not exist), '
      . 'grace-end=250, period-end=400, '
      . 'raising=0 (billing sync is down), trial-end=200',
    'the other rules ran and committed, before and after the failed ones');
is($node->safe_psql('postgres', "SELECT expired_count FROM subexpire_runs WHERE run_id = $run2"),
    '850', 'the run counts what its rules expired');
is($node->safe_psql('postgres', "SELECT count(*) FROM accounts WHERE status = 'gone'"),
    '0', 'the disabled rule did not run');
is($node->safe_psql('postgres', "SELECT count(*) FROM raising WHERE status = 'active'"),
    '10', "the failed rule's rows are as they were");
is( $node->safe_psql('postgres', q{
        SELECT (runs_failed > 0) || ' ' || last_error FROM subexpire_rule_stats() WHERE rule_name = 'raising'}),
    'true billing sync is down', 'the statistics count the rule that failed');
like( $node->safe_psql('postgres', q{
        SELECT status || ' ' || detail FROM subexpire_health() WHERE check_name = 'rules'}),
    qr/^critical 1 of 5 enabled rules cannot run: rule "doomed"/,
    'health names the rule that cannot run');
$node->safe_psql('postgres', q{
    DELETE FROM subexpire_rules WHERE rule_name IN ('doomed', 'raising', 'off');
});

# ---- a row held locked under one rule ----

# The function and the worker both leave it, count it as skipped under
# its rule, and expire the rest.
$node->safe_psql('postgres', 'TRUNCATE changes; DELETE FROM accounts');
reload_with($node, 'subexpire.lock_wait', '200ms');
add_accounts(3000);
my $app = $node->background_psql('postgres');
$app->query_safe("BEGIN; SELECT 1 FROM accounts WHERE id = 3001 FOR UPDATE");
$node->safe_psql('postgres', 'SELECT expire_subscriptions()');
is( $node->safe_psql('postgres', q{
        SELECT string_agg(rule_name || '=' || expired_count || '/' || skipped_locked, ' ' ORDER BY rule_name)
        FROM subexpire_run_rules WHERE run_id = (SELECT max(run_id) FROM subexpire_runs)}),
    'grace-end=250/0 period-end=400/0 trial-end=199/1',
    'the function left the locked trial, counted under trial-end, and expired the rest');
$node->safe_psql('postgres', q{
    UPDATE accounts SET status = 'trialing', plan = 'premium', trial_ends_at = now() - interval '1 day'
    WHERE id BETWEEN 3002 AND 3200;
});
my $locked_run = one_run_after($node->safe_psql('postgres', 'SELECT max(run_id) FROM subexpire_runs'));
is( $node->safe_psql('postgres', qq{
        SELECT string_agg(rule_name || '=' || expired_count || '/' || skipped_locked, ' ' ORDER BY rule_name)
        FROM subexpire_run_rules WHERE run_id = $locked_run}),
    'grace-end=0/0 period-end=0/0 trial-end=199/1',
    "the worker's batches left it too, and counted it");
$app->query_safe('COMMIT');
$app->quit;
$node->safe_psql('postgres', 'SELECT expire_subscriptions()');
is($node->safe_psql('postgres', "SELECT status FROM accounts WHERE id = 3001"),
    'expired', 'once released, the next run expires it');

# ---- the worker's role must be able to update a rule's table ----

$node->safe_psql('postgres', q{
    CREATE ROLE rules_worker LOGIN;
    CREATE TABLE private (status text, expires_at timestamptz, updated_at timestamptz);
    GRANT SELECT, UPDATE ON accounts, changes TO rules_worker;
});
reload_with($node, 'subexpire.role', 'rules_worker');
my ($ret, $stdout, $stderr) = $node->psql('postgres', q{
    INSERT INTO subexpire_rules (rule_name, target_table) VALUES ('private', 'public.private')});
like($stderr,
    qr/permission denied to expire subscriptions in table public\.private\nDETAIL:  The worker's role, subexpire\.role, needs the rights to read and update that table, and role "rules_worker" does not have them/,
    "a rule on a table that the worker's role may not update is refused, even from a superuser");
is($node->safe_psql('postgres', "SELECT count(*) FROM subexpire_rules WHERE rule_name = 'private'"),
    '0', 'and not written');
reload_with($node, 'subexpire.role', '');

# ---- SIGKILL of the run worker in the middle of a rule ----

# Slow batches: each statement on accounts takes 50 ms more.
$node->safe_psql('postgres', q{
    TRUNCATE changes;
    DELETE FROM accounts;
    CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END $$;
    CREATE TRIGGER slow AFTER UPDATE ON accounts
        FOR EACH STATEMENT EXECUTE FUNCTION slow();
});
add_accounts(2000);
$node->safe_psql('postgres', q{
    INSERT INTO accounts (id, status, ends_at)
    SELECT 10000 + n, 'active', now() - interval '1 day' FROM generate_series(1, 2000) AS n;
});
reload_with($node, 'subexpire.enabled', 'on');
$node->poll_query_until('postgres', qq{
    SELECT count(*) > 0 FROM subexpire_run_rules rr JOIN subexpire_runs r USING (run_id)
    WHERE r.run_id > $run2 AND r.status = 'running'
      AND rr.rule_name = 'period-end' AND rr.expired_count > 0})
  or die 'no run got to period-end';
my $killed = $node->safe_psql('postgres', "SELECT max(run_id) FROM subexpire_runs");
my $pid = $node->safe_psql('postgres',
    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'subexpire run'");
ok($pid =~ /^\d+$/ && kill('KILL', $pid), 'killed the run worker in the middle of period-end');
$node->poll_query_until('postgres', "SELECT status = 'failed' FROM subexpire_runs WHERE run_id = $killed")
  or die 'the interrupted run was not marked failed';
$node->poll_query_until('postgres', q{
    SELECT count(*) = 0 FROM accounts WHERE status = 'trialing'
       OR (status = 'active' AND ends_at < now())
       OR (status = 'past_due' AND ends_at < now() - interval '7 days')})
  or die 'the next runs did not finish';
reload_with($node, 'subexpire.enabled', 'off');
$node->poll_query_until('postgres', q{
    SELECT count(*) = 0 FROM subexpire_runs WHERE status = 'running'})
  or die 'a run is left running';

my ($trial, $period) = split /\|/, $node->safe_psql('postgres', qq{
    SELECT (SELECT expired_count FROM subexpire_run_rules WHERE run_id = $killed AND rule_name = 'trial-end'),
           (SELECT expired_count FROM subexpire_run_rules WHERE run_id = $killed AND rule_name = 'period-end')});
is($trial, '200', 'the interrupted run had finished trial-end');
ok($period > 0 && $period < 2400 && $period % $batch == 0,
    "it counts whole committed batches of period-end ($period)");
is( $node->safe_psql('postgres', q{
        SELECT string_agg(old_status || '>' || new_status || '=' || n, ' ' ORDER BY old_status)
        FROM (SELECT old_status, new_status, count(*) AS n, count(DISTINCT id) AS d
              FROM changes GROUP BY 1, 2) AS t WHERE n = d}),
    'active>past_due=2400 past_due>canceled=250 trialing>expired=200',
    'every row changed once by each rule it was due under');
is( $node->safe_psql('postgres', qq{
        SELECT string_agg(rule_name || '=' || total, ' ' ORDER BY rule_name)
        FROM (SELECT rule_name, sum(expired_count) AS total FROM subexpire_run_rules
              WHERE run_id >= $killed GROUP BY 1) AS t}),
    'grace-end=250 period-end=2400 trial-end=200',
    "the rules' records add up to the rows they changed: no committed batch lost, none counted twice");

done_testing();
