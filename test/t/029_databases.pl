# Several databases in subexpire.database: the worker runs the job in each
# listed database, and each keeps its own run records, statistics, metrics
# and health; a database missing at first, created later; one without the
# extension; one dropped while its run goes on; a name that needs quoting;
# catch-up after downtime, decided database by database; a reload that
# removes a database, and one that adds it back (a catch-up at once); bad
# values refused by ALTER SYSTEM and by a reload; a hot standby runs
# nothing, and once promoted runs the job in both of its databases.
#
# Every wait is on a condition, on a one-second schedule (a yearly one for
# catch-up): about 25-30 s on two cores.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('databases');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'subexpire'
subexpire.enabled = off
subexpire.schedule = '1 seconds'
subexpire.timezone = 'UTC'
subexpire.database = 'db_a, doomed, db_b, "Db, 3", noext, late'
timezone = 'UTC'
});
$node->start;

# ---- helpers ----

sub query
{
    my ($db, $sql) = @_;
    return $node->safe_psql($db, $sql);
}

sub batch_day
{
    my ($k) = @_;
    return "'2000-01-01 00:00+00'::timestamptz + $k * interval '1 day'";
}

# $n active subscriptions in $db, due since day $k of 2000.
sub add_due
{
    my ($db, $k, $n) = @_;
    add_subscriptions($node, $db, $n, batch_day($k));
    return;
}

# "A active, E expired" for the rows of batch $k in $db.
sub batch_state_query
{
    my ($k) = @_;
    return q{SELECT format('%s active, %s expired',
                   count(*) FILTER (WHERE status = 'active'),
                   count(*) FILTER (WHERE status = 'expired'))
             FROM subscriptions WHERE expires_at = } . batch_day($k);
}

sub batch_state
{
    my ($db, $k) = @_;
    return query($db, batch_state_query($k));
}

# Wait until all $n rows of batch $k in $db are expired.
sub wait_batch_expired
{
    my ($db, $k, $n) = @_;
    return $node->poll_query_until($db, batch_state_query($k), "0 active, $n expired");
}

sub scheduler_pid
{
    return query('postgres',
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'subexpire scheduler'");
}

sub server_now
{
    return query('postgres', 'SELECT clock_timestamp()');
}

# The runs recorded in $db (finished or not).
sub runs
{
    my ($db) = @_;
    return query($db, 'SELECT count(*) FROM subexpire_runs');
}

# Wait until $db has $n finished runs that started after $since.
sub wait_for_runs_after
{
    my ($db, $since, $n) = @_;
    return $node->poll_query_until($db, qq{
        SELECT count(*) >= $n FROM subexpire_runs
        WHERE started_at > '$since' AND status <> 'running'});
}


# The warning the scheduler logs for database $db.
sub cannot_run
{
    my ($db, $problem) = @_;
    return qr/WARNING:  subexpire: cannot run the job in database "\Q$db\E": \Q$problem\E/;
}

sub missing_db
{
    my ($db) = @_;
    return cannot_run($db, "database \"$db\" named by subexpire.database does not exist");
}

# One value of subexpire_metrics() in $db.
sub metric
{
    my ($db, $name) = @_;
    return query($db, qq{
        SELECT split_part(line, ' ', 2)
        FROM regexp_split_to_table(subexpire_metrics(), E'\\n') AS line
        WHERE split_part(line, ' ', 1) = '$name'});
}

sub overdue
{
    my ($db) = @_;
    return query($db,
        "SELECT status || ': ' || detail FROM subexpire_health() WHERE check_name = 'overdue'");
}

# ---- set-up ----

# Three databases with the extension and a different number of due rows
# each, so that counting one's runs or rows in another shows; "Db, 3"
# must be quoted in the list (a comma, a capital).  "doomed" has a slow
# trigger, to be dropped while a run is in it.  "noext" lacks the
# extension.  "tmpl" (not listed) is copied to make "late" in one step.
# "postgres" (not listed, with the extension and due rows) must see no run.
my %due = (db_a => 3, db_b => 5, 'Db, 3' => 7);
for my $db ('db_a', 'db_b', 'Db, 3', 'doomed', 'noext', 'tmpl')
{
    query('postgres', qq{CREATE DATABASE "$db"});
}
for my $db ('db_a', 'db_b', 'Db, 3', 'doomed', 'noext', 'tmpl', 'postgres')
{
    create_reference_schema($node, $db);
    query($db, 'CREATE EXTENSION subexpire') unless $db eq 'noext';
}
add_due($_, 1, $due{$_}) for keys %due;
add_due('noext',    1, 4);
add_due('tmpl',     1, 9);
add_due('postgres', 1, 2);
query('doomed', q{
    CREATE FUNCTION slow_expiry() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_sleep(0.2);
        RETURN NEW;
    END $$;
    CREATE TRIGGER slow_expiry BEFORE UPDATE ON subscriptions
        FOR EACH ROW EXECUTE FUNCTION slow_expiry();
});

# ---- 1, 3, 7: the worker runs in each listed database ----

my $offset = -s $node->logfile;
reload_with($node, 'subexpire.enabled', 'on');
my $scheduler = scheduler_pid();
for my $db (sort keys %due)
{
    ok(wait_batch_expired($db, 1, $due{$db}),
        "database \"$db\": the worker expires its $due{$db} due rows");
}

# "late" is missing and "noext" lacks the extension: each is logged once,
# while the others run.
$node->wait_for_log(missing_db('late'), $offset);
$node->wait_for_log(
    cannot_run('noext', 'extension subexpire is not installed in database "noext"'), $offset);
my $since = server_now();
ok(wait_for_runs_after($_, $since, 3),
    "database \"$_\": runs go on while \"late\" is missing and \"noext\" lacks the extension")
  for sort keys %due;
is(count_in_log($node, missing_db('late'), $offset), 1,
    'missing database "late": the warning is logged once, not at every retry');
is( count_in_log($node, 
        cannot_run('noext', 'extension subexpire is not installed in database "noext"'), $offset),
    1, 'database "noext" without the extension: the warning is logged once, not at every retry');
is(count_in_log($node, qr/cannot run the job in database "(db_a|db_b|Db, 3|doomed)"/, $offset),
    0, 'no warning about the databases that can run');
is(batch_state('noext', 1), '4 active, 0 expired',
    'database "noext" without the extension: its due rows stay active');
is(batch_state('postgres', 1), '2 active, 0 expired',
    'database "postgres", not listed: its due rows stay active');
is(batch_state('tmpl', 1), '9 active, 0 expired',
    'database "tmpl", not listed: its due rows stay active');
is(scheduler_pid(), $scheduler, 'the scheduler is the same process all along');

# The counters of each database count its own runs and rows only.  With
# the worker off, nothing moves while they are compared.
stop_worker($node);
for my $db (sort keys %due)
{
    my $recorded = runs($db);
    cmp_ok($recorded, '>=', 4, "database \"$db\": its runs are recorded there ($recorded)");
    is( query($db, q{
            SELECT format('%s %s %s', count(*), count(*) FILTER (WHERE status = 'succeeded'),
                          sum(expired_count))
            FROM subexpire_runs}),
        "$recorded $recorded $due{$db}",
        "database \"$db\": every run succeeded, and subexpire_runs counts its $due{$db} rows");
    is( query($db, q{SELECT format('%s %s %s', runs_total, runs_failed, expired_total)
                     FROM subexpire_stats}),
        "$recorded 0 $due{$db}",
        "database \"$db\": subexpire_stats counts its own runs and rows");
    is(metric($db, 'subscription_expiry_total'), $due{$db},
        "database \"$db\": subexpire_metrics() subscription_expiry_total counts its own rows");
    is(metric($db, 'subscription_expiry_duration_seconds_count'), $recorded,
        "database \"$db\": subexpire_metrics() counts its own runs");
}
is( query('postgres', q{SELECT format('%s %s', runs_total, expired_total) FROM subexpire_stats}),
    '0 0', 'database "postgres", not listed: subexpire_stats counts no run');
is(metric('postgres', 'subscription_expiry_total'), '0',
    'database "postgres", not listed: subexpire_metrics() counts no row');
is(runs('postgres'), '0', 'database "postgres", not listed: no run recorded');
reload_with($node, 'subexpire.enabled', 'on');
# (The overdue check says nothing while subexpire.enabled is off.)
is(overdue($_), 'ok: no scheduled run is overdue',
    "database \"$_\", listed: the overdue check applies there")
  for sort keys %due;
like(overdue('postgres'), qr/^ok: subexpire\.database does not list this database/,
    'database "postgres", not listed: the overdue check says so');

# ---- 2: a database created after the server started ----

$offset = -s $node->logfile;
query('postgres', 'CREATE DATABASE late TEMPLATE tmpl');
ok(wait_batch_expired('late', 1, 9),
    'database "late", created with the extension: the worker expires its rows');
is( query('late', q{
        SELECT string_agg(format('%s/%s/%s', "trigger", status, expired_count), ',')
        FROM subexpire_runs WHERE expired_count > 0}),
    'schedule/succeeded/9', 'database "late": by one scheduled run that succeeded');
$node->wait_for_log(qr/LOG:  subexpire: runs can start again in database "late"/, $offset);
like( slurp_file($node->logfile, $offset),
    qr/LOG:  subexpire: runs can start again in database "late"\n.*DETAIL:  Resolved: database "late" named by subexpire\.database does not exist/,
    'database "late": the log says runs can start again there, and what was resolved');
is( query('late', q{SELECT format('%s %s', runs_failed, expired_total) FROM subexpire_stats}),
    '0 9', 'database "late": subexpire_stats counts its own rows');
is(count_in_log($node, missing_db('late'), $offset), 0,
    'database "late": the warning was not logged again');

# ---- 8: bad values ----

for my $case (
    [ 'a,,b', qr/DETAIL:  The list has an empty database name\./ ],
    [ 'a, a', qr/DETAIL:  Database "a" is listed twice\./ ],
    [ join(',', map { "d$_" } 1 .. 33), qr/DETAIL:  The list names more than 32 databases\./ ])
{
    my ($value, $why) = @$case;
    my ($ret, $stdout, $stderr) =
      $node->psql('postgres', "ALTER SYSTEM SET subexpire.database = '$value'");
    my $shown = length($value) > 20 ? '33 names' : "'$value'";
    isnt($ret, 0, "ALTER SYSTEM SET subexpire.database = $shown fails");
    like($stderr, qr/ERROR:  invalid value for parameter "subexpire\.database": "\Q$value\E"/,
        "ALTER SYSTEM SET subexpire.database = $shown: the error names subexpire.database");
    like($stderr, $why, "ALTER SYSTEM SET subexpire.database = $shown: the error says why");
}
unlike(slurp_file($node->data_dir . '/postgresql.auto.conf'), qr/subexpire\.database/,
    'the refused values were not written to postgresql.auto.conf');
my ($ret32) = $node->psql('postgres',
    "ALTER SYSTEM SET subexpire.database = '" . join(',', map { "d$_" } 1 .. 32) . "'");
is($ret32, 0, 'ALTER SYSTEM SET subexpire.database with 32 names is accepted');
query('postgres', 'ALTER SYSTEM RESET subexpire.database');

my $list = 'db_a, doomed, db_b, "Db, 3", noext, late';
$offset = -s $node->logfile;
$since = server_now();
$node->append_conf('postgresql.conf', "subexpire.database = 'db_a, db_a'\n");
$node->reload;
$node->wait_for_log(qr/invalid value for parameter "subexpire\.database": "db_a, db_a"/, $offset);
like( slurp_file($node->logfile, $offset),
    qr/invalid value for parameter "subexpire\.database": "db_a, db_a"\n.*DETAIL:  Database "db_a" is listed twice\./,
    'a reload with subexpire.database = \'db_a, db_a\' logs why it is refused');
is(query('postgres', 'SHOW subexpire.database'), $list, 'and keeps the old list');
ok(wait_for_runs_after($_, $since, 2),
    "the worker goes on running in database \"$_\" of the old list")
  for ('db_b', 'Db, 3', 'late');
is(scheduler_pid(), $scheduler, 'the scheduler is the same process after the bad reload');
reload_with($node, 'subexpire.database', $list);

# ---- 4: a database dropped while a run is in it ----

add_due('doomed', 1, 60);    # 0.2 s a row: 12 s, unless interrupted
ok( $node->poll_query_until('postgres', q{
        SELECT count(*) = 1 FROM pg_stat_activity
        WHERE backend_type = 'subexpire run' AND datname = 'doomed' AND wait_event = 'PgSleep'}),
    'database "doomed": a run worker is expiring its rows');
$offset = -s $node->logfile;
query('postgres', 'DROP DATABASE doomed WITH (FORCE)');
$since = server_now();
ok(wait_for_runs_after($_, $since, 3),
    "dropped \"doomed\": database \"$_\" goes on running")
  for ('db_a', 'db_b', 'Db, 3', 'late');
$node->wait_for_log(missing_db('doomed'), $offset);
$since = server_now();
ok(wait_for_runs_after('db_a', $since, 3), 'several scheduled times pass after the drop');
is(scheduler_pid(), $scheduler, 'dropped "doomed": the scheduler is the same process');
is( count_in_log($node, qr/background worker "subexpire scheduler" \(PID \d+\) (exited|was terminated)/, $offset),
    0, 'dropped "doomed": the scheduler did not exit');
is(count_in_log($node, qr/terminating any other active server processes/, $offset),
    0, 'dropped "doomed": no crash of the server');
is(count_in_log($node, missing_db('doomed'), $offset), 1,
    'dropped "doomed": logged once as missing, not at every retry');
my @doomed = grep { /database "doomed"/ } split /\n/, slurp_file($node->logfile, $offset);
note "what the log says about \"doomed\":\n" . join("\n", @doomed);

# ---- 6: a reload that removes databases, and one that adds one back ----

$offset = -s $node->logfile;
reload_with($node, 'subexpire.database', 'db_a, "Db, 3", late');
$since = server_now();
# A turn of the scheduler that began before the reload ends with the old
# list; the second run in db_a after the reload is in a turn after it.
ok(wait_for_runs_after('db_a', $since, 2), 'the scheduler has taken the reload');
my $b_runs = runs('db_b');
add_due('db_b', 2, 6);
$since = server_now();
ok(wait_for_runs_after($_, $since, 3), "database \"$_\", still listed, goes on running")
  for ('db_a', 'Db, 3', 'late');
is(runs('db_b'), $b_runs, 'database "db_b", removed: no more runs there');
is(batch_state('db_b', 2), '6 active, 0 expired', 'database "db_b", removed: its due rows stay active');
like(overdue('db_b'), qr/^ok: subexpire\.database does not list this database/,
    'database "db_b", removed: the overdue check says it is not listed');
is(count_in_log($node, qr/cannot run the job in database "(noext|doomed)"/, $offset),
    0, 'the databases removed with a problem are not tried again');

my $b_last = query('db_b', 'SELECT max(run_id) FROM subexpire_runs');
reload_with($node, 'subexpire.database', 'db_a, db_b, "Db, 3", late');
ok(wait_batch_expired('db_b', 2, 6), 'database "db_b", added back: the worker runs there');
is( query('db_b', qq{
        SELECT format('%s/%s/%s', "trigger", status, expired_count) FROM subexpire_runs
        WHERE run_id > $b_last ORDER BY run_id LIMIT 1}),
    'catch-up/succeeded/6',
    'database "db_b", added back after a scheduled time passed: its first run is a catch-up');

# ---- 5: catch-up after downtime, database by database ----

# A yearly schedule: db_a, "Db, 3" and late last succeeded in 2001 (as if
# the server had been down since), so each has missed a scheduled time and
# gets its own catch-up run at start-up; db_b succeeded this year and has
# missed none, so it gets none.
stop_worker($node);
my %catch_up = (db_a => 2, 'Db, 3' => 4, late => 5);
my %last_run;
for my $db ('db_a', 'db_b', 'Db, 3', 'late')
{
    $last_run{$db} = query($db, 'SELECT max(run_id) FROM subexpire_runs');
    if ($catch_up{$db})
    {
        query($db, q{
            DELETE FROM subexpire_runs;
            INSERT INTO subexpire_runs ("trigger", as_of, started_at, finished_at, status)
            VALUES ('schedule', '2001-06-01', '2001-06-01', '2001-06-01', 'succeeded');
        });
        $last_run{$db}++;
        add_due($db, 3, $catch_up{$db});
    }
}
add_due('db_b', 3, 3);
is( query('db_b', "SELECT max(started_at) > date_trunc('year', now()) FROM subexpire_runs
                   WHERE status = 'succeeded'"),
    't', 'database "db_b" last succeeded this year');
$node->stop;
$node->append_conf('postgresql.conf', q{
subexpire.schedule = '@yearly'
subexpire.enabled = on
});
$node->start;
ok( $node->poll_query_until('postgres', q{
        SELECT wait_event_type = 'Extension'
        FROM pg_stat_activity WHERE backend_type = 'subexpire scheduler'}),
    'after the restart the scheduler has done its start-up and sleeps');
for my $db (sort keys %catch_up)
{
    is( query($db, qq{
            SELECT string_agg(format('%s/%s/%s', "trigger", status, expired_count), ',')
            FROM subexpire_runs WHERE run_id > $last_run{$db}}),
        "catch-up/succeeded/$catch_up{$db}",
        "database \"$db\": exactly one run after the downtime, its own catch-up");
    is( query($db, q{SELECT bool_and(started_at > pg_postmaster_start_time())
                     FROM subexpire_runs WHERE "trigger" = 'catch-up'}),
        't', "database \"$db\": the catch-up ran after the restart");
    is(batch_state($db, 3), "0 active, $catch_up{$db} expired",
        "database \"$db\": the catch-up expired its rows");
}
is(query('db_b', "SELECT count(*) FROM subexpire_runs WHERE run_id > $last_run{db_b}"),
    '0', 'database "db_b", which missed no scheduled time: no catch-up run');
is(batch_state('db_b', 3), '3 active, 0 expired', 'database "db_b": its due rows wait for the schedule');

# ---- 9: a standby runs nothing; promoted, it runs in both databases ----

reload_with($node, 'subexpire.schedule', '1 seconds');
reload_with($node, 'subexpire.database', 'db_a, "Db, 3"');
$node->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'base', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');
is($standby->safe_psql('postgres', 'SHOW subexpire.database'), 'db_a, "Db, 3"',
    'the standby lists the same two databases');
my $standby_start = $standby->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
for my $db ('db_a', 'Db, 3')
{
    ok( $standby->poll_query_until($db, qq{
            SELECT count(*) >= 2 FROM subexpire_runs
            WHERE started_at > '$standby_start' AND status = 'succeeded'}),
        "database \"$db\": the primary's runs reach the standby");
}
is( $standby->safe_psql('postgres',
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'subexpire%'"),
    '0', 'the standby has no subexpire worker');
my $standby_log = slurp_file($standby->logfile);
unlike($standby_log, qr/background worker "subexpire/, 'the standby started no subexpire worker');
unlike($standby_log, qr/(WARNING|ERROR|FATAL|PANIC):  .*subexpire/,
    'the standby logs no warning or error about subexpire');

my %last_primary = map { $_ => query($_, 'SELECT max(run_id) FROM subexpire_runs') } ('db_a', 'Db, 3');
$node->wait_for_catchup($standby);
$node->stop;
my $standby_offset = -s $standby->logfile;
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
  or die 'the standby was not promoted';
my $promoted_at = $standby->safe_psql('postgres', 'SELECT clock_timestamp()');
ok( $standby->poll_query_until('postgres',
        "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'subexpire scheduler'"),
    'the promoted server starts the scheduler');
my %promoted_due = (db_a => 3, 'Db, 3' => 8);
for my $db (sort keys %promoted_due)
{
    add_subscriptions($standby, $db, $promoted_due{$db}, batch_day(4));
}
for my $db (sort keys %promoted_due)
{
    ok( $standby->poll_query_until($db, batch_state_query(4), "0 active, $promoted_due{$db} expired"),
        "database \"$db\": the promoted server's worker expires its rows");
    ok( $standby->poll_query_until($db, qq{
            SELECT count(*) >= 2 FROM subexpire_runs
            WHERE started_at > '$promoted_at' AND status = 'succeeded'}),
        "database \"$db\": the promoted server records its runs there");
    is( $standby->safe_psql($db,
            "SELECT sum(expired_count) FROM subexpire_runs WHERE run_id > $last_primary{$db}"),
        $promoted_due{$db}, "database \"$db\": the promoted server's runs count its own rows");
}
my @after = grep { /subexpire/ && /(WARNING|ERROR|FATAL|PANIC):/ } split /\n/,
  slurp_file($standby->logfile, $standby_offset);
is(scalar(@after), 0, 'no warning or error about subexpire after the promotion')
  or diag join("\n", @after);

done_testing();
