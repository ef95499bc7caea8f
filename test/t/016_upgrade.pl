# Upgrades.  For every version older than default_version that the
# installed scripts can install, in a database of its own: create the
# extension at that version, check that it still creates what its scripts
# always created (test/catalog/<version>.txt: released scripts are frozen),
# give it a history, check that the current library works under its SQL
# (manual runs, the statistics view, a worker run that logs once that the
# SQL is old), then ALTER EXTENSION subexpire UPDATE and compare with a
# fresh install: \dx+ and a description of the catalog (columns, defaults,
# constraints, indexes, view definitions, functions with their signatures,
# volatility, security, C symbols and privileges, comments, what pg_dump
# dumps of the extension's tables, initial privileges).  The fresh install
# must be test/catalog/<default_version>.txt: since CREATE EXTENSION runs
# the same update scripts, that file, not the comparison, is what fails
# when an update script forgets something.  The history written before the
# update is still there, a pg_dump of the updated database restores, the
# worker records what the new version adds, and the user's grants and
# views on the extension's objects are kept or, where they cannot be, the
# update says what to grant.  Dumps taken before and after the update
# restore into the current version.  There is no way back, and an update on the
# current version does nothing.  Last, the library's side: an entry point
# of subexpire_stats declared with columns other than its own is an error
# that says what to do, and the statistics file that library 1.0 wrote at
# shutdown is read back.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use File::Basename qw(basename);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'subexpire'
subexpire.enabled = off
subexpire.schedule = '1 seconds'
subexpire.batch_size = 2
timezone = 'UTC'
});
$node->start;
my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

# ---- the versions, from the installed scripts ----

my $extdir = $node->config_data('--sharedir') . '/extension';
my ($default_version) =
  slurp_file("$extdir/subexpire.control") =~ /^default_version\s*=\s*'([^']+)'/m;
ok($default_version, "the installed control file names default_version ($default_version)");

my (%install, %update);
for my $file (glob("$extdir/subexpire--*.sql"))
{
    my @parts = split /--/, (basename($file) =~ s/^subexpire--(.*)\.sql$/$1/r);
    if (@parts == 1) { $install{ $parts[0] } = 1; }
    elsif (@parts == 2) { push @{ $update{ $parts[0] } }, $parts[1]; }
    else { fail("script name $file is neither an install nor an update script"); }
}

# Every version an install script and a chain of update scripts lead to.
my %installable = %install;
my @todo        = keys %install;
while (my $from = shift @todo)
{
    for my $to (@{ $update{$from} || [] })
    {
        push @todo, $to unless $installable{$to}++;
    }
}

sub version_cmp
{
    my ($a, $b) = @_;
    my @a = split /\./, $a;
    my @b = split /\./, $b;
    while (@a || @b)
    {
        my $c = (shift(@a) // 0) <=> (shift(@b) // 0);
        return $c if $c;
    }
    return 0;
}

ok($installable{$default_version}, 'default_version can be installed');
is( join(',', sort keys %installable),
    $node->safe_psql('postgres',
        "SELECT string_agg(version, ',' ORDER BY version) FROM pg_available_extension_versions WHERE name = 'subexpire'"),
    'the versions found are those PostgreSQL offers');
my @old = sort { version_cmp($a, $b) } grep { version_cmp($_, $default_version) < 0 } keys %installable;
is( scalar(grep { version_cmp($_, $default_version) > 0 } keys %installable),
    0, 'no version is newer than default_version');
ok(@old > 0, 'there are older versions to update from: ' . join(', ', @old));

# ---- helpers ----

# The ACL $acl of an object owned by $owner, as text: the owner as OWNER,
# so that the description does not depend on who runs the tests.
sub acl_sql
{
    my ($acl, $owner) = @_;
    return qq{CASE WHEN $acl IS NULL THEN 'default' ELSE COALESCE((
        SELECT string_agg(g, ', ' ORDER BY g) FROM (
            SELECT CASE WHEN x.grantee = $owner THEN 'OWNER'
                        WHEN x.grantee = 0 THEN 'PUBLIC'
                        ELSE x.grantee::regrole::text END
                   || ':' || x.privilege_type
                   || CASE WHEN x.is_grantable THEN ' with grant option' ELSE '' END
                   || CASE WHEN x.grantor = $owner THEN ''
                           ELSE ' granted by ' || x.grantor::regrole::text END AS g
            FROM aclexplode($acl) AS x) AS y), 'none') END};
}

my $rel_acl   = acl_sql('c.relacl',   'c.relowner');
my $col_acl   = acl_sql('a.attacl',   'c.relowner');
my $proc_acl  = acl_sql('p.proacl',   'p.proowner');
my $init_acl  = acl_sql('i.initprivs', '(SELECT extowner FROM ext)');

# One line for each thing a user or pg_dump can tell about the extension.
my $describe_sql = qq{
WITH ext AS (
    SELECT * FROM pg_extension WHERE extname = 'subexpire'),
members AS (
    SELECT d.classid, d.objid, d.objsubid
    FROM pg_depend d, ext
    WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid
      AND d.deptype = 'e'),
rels AS (
    SELECT c.* FROM pg_class c JOIN members m
      ON m.classid = 'pg_class'::regclass AND m.objid = c.oid),
owner_word(oid, word) AS (
    SELECT r.oid, CASE WHEN r.oid = ext.extowner THEN 'the extension owner'
                       ELSE r.rolname::text END
    FROM pg_roles r, ext),
lines(section, line) AS (
    SELECT 1, format('extension subexpire %s, schema %s, relocatable %s',
                     extversion, extnamespace::regnamespace, extrelocatable)
    FROM ext
  UNION ALL
    SELECT 2, format('dumped by pg_dump: %s%s', u.tab::regclass,
                     CASE WHEN u.cond <> '' THEN ' WHERE ' || u.cond ELSE '' END)
    FROM ext, unnest(ext.extconfig, ext.extcondition) AS u (tab, cond)
  UNION ALL
    SELECT 3, 'member: ' || pg_describe_object(classid, objid, objsubid)
    FROM members
  UNION ALL
    SELECT 4, format('relation %s: kind %s, persistence %s, schema %s, owned by %s, row security %s, options %s, privileges: %s',
                     c.relname, c.relkind, c.relpersistence, c.relnamespace::regnamespace,
                     o.word, c.relrowsecurity, c.reloptions, $rel_acl)
    FROM rels c JOIN owner_word o ON o.oid = c.relowner
  UNION ALL
    SELECT 4, format('comment on relation %s: %s', c.relname, obj_description(c.oid, 'pg_class'))
    FROM rels c
  UNION ALL
    SELECT 5, format('column %s.%s %s %s%s%s%s%s%s%s%s', c.relname,
                     lpad((row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum))::text, 2, '0'),
                     a.attname, format_type(a.atttypid, a.atttypmod),
                     CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                     CASE WHEN a.atthasdef THEN ' default ' || pg_get_expr(ad.adbin, ad.adrelid) ELSE '' END,
                     CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END,
                     CASE WHEN a.attgenerated <> '' THEN ' generated ' || a.attgenerated::text ELSE '' END,
                     CASE WHEN a.attcollation <> t.typcollation THEN ' collate ' || a.attcollation::regcollation ELSE '' END,
                     CASE WHEN a.attacl IS NOT NULL THEN ' privileges: ' || $col_acl ELSE '' END,
                     COALESCE(' -- ' || col_description(c.oid, a.attnum), ''))
    FROM rels c
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
  UNION ALL
    SELECT 6, format('constraint %s on %s: %s%s%s', k.conname, c.relname,
                     pg_get_constraintdef(k.oid),
                     CASE WHEN k.convalidated THEN '' ELSE ' not valid' END,
                     COALESCE(' -- ' || obj_description(k.oid, 'pg_constraint'), ''))
    FROM rels c JOIN pg_constraint k ON k.conrelid = c.oid
  UNION ALL
    SELECT 7, format('index %s: %s%s', ic.relname, pg_get_indexdef(ic.oid),
                     COALESCE(' -- ' || obj_description(ic.oid, 'pg_class'), ''))
    FROM rels c JOIN pg_index i ON i.indrelid = c.oid JOIN pg_class ic ON ic.oid = i.indexrelid
  UNION ALL
    SELECT 8, format('trigger %s', pg_get_triggerdef(tg.oid))
    FROM rels c JOIN pg_trigger tg ON tg.tgrelid = c.oid AND NOT tg.tgisinternal
  UNION ALL
    SELECT 8, format('policy %s on %s: %s', pol.polname, c.relname, pg_get_expr(pol.polqual, pol.polrelid))
    FROM rels c JOIN pg_policy pol ON pol.polrelid = c.oid
  UNION ALL
    SELECT 9, format('view %s: %s', c.relname, regexp_replace(pg_get_viewdef(c.oid), '\\s+', ' ', 'g'))
    FROM rels c WHERE c.relkind IN ('v', 'm')
  UNION ALL
    SELECT 10, format('sequence %s: %s start %s increment %s min %s max %s cache %s cycle %s',
                      c.relname, s.seqtypid::regtype, s.seqstart, s.seqincrement,
                      s.seqmin, s.seqmax, s.seqcache, s.seqcycle)
    FROM rels c JOIN pg_sequence s ON s.seqrelid = c.oid
  UNION ALL
    SELECT 10, format('sequence %s belongs to %s.%s (%s)', c.relname, d.refobjid::regclass,
                      a.attname, d.deptype::text)
    FROM rels c
    JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
         AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
    WHERE c.relkind = 'S'
  UNION ALL
    SELECT 11, format('function %s(%s) returns %s: language %s, %s, %s, %s, parallel %s, cost %s, rows %s, symbol %s in %s, schema %s, owned by %s, settings %s, privileges: %s',
                      p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
                      l.lanname,
                      CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable' ELSE 'volatile' END,
                      CASE WHEN p.proisstrict THEN 'strict' ELSE 'called on null input' END,
                      CASE WHEN p.prosecdef THEN 'security definer' ELSE 'security invoker' END,
                      p.proparallel, p.procost, p.prorows, p.prosrc, p.probin,
                      p.pronamespace::regnamespace, o.word, p.proconfig, $proc_acl)
    FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
    JOIN pg_language l ON l.oid = p.prolang
    JOIN owner_word o ON o.oid = p.proowner
  UNION ALL
    SELECT 11, format('comment on function %s: %s', m.objid::regprocedure, obj_description(m.objid, 'pg_proc'))
    FROM members m WHERE m.classid = 'pg_proc'::regclass
  UNION ALL
    SELECT 12, format('initial privileges of %s (%s): %s',
                      pg_describe_object(i.classoid, i.objoid, i.objsubid), i.privtype, $init_acl)
    FROM pg_init_privs i JOIN members m ON m.classid = i.classoid AND m.objid = i.objoid
)
SELECT line FROM lines ORDER BY section, line COLLATE "C";
};

sub describe
{
    my ($db) = @_;
    return $node->safe_psql($db, $describe_sql) . "\n";
}

sub dx_plus
{
    my ($db) = @_;
    my ($stdout, $stderr);
    IPC::Run::run [ 'psql', '-X', '-d', $node->connstr($db), '-c', '\dx+ subexpire' ],
      '>', \$stdout, '2>', \$stderr
      or die "psql \\dx+ failed: $stderr";
    return $stdout;
}

# Pass when $got is $expected; otherwise fail with a diff.
sub same_text
{
    my ($got, $expected, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    return pass($name) if $got eq $expected;
    my $dir = PostgreSQL::Test::Utils::tempdir;
    append_to_file("$dir/expected", $expected);
    append_to_file("$dir/got",      $got);
    my $diff;
    IPC::Run::run [ 'diff', '-u', "$dir/expected", "$dir/got" ], '>', \$diff;
    fail($name);
    diag($diff);
    return 0;
}

# The catalog description that version $version's scripts create, kept in
# test/catalog/: reviewed like an expected output, whenever a version's
# scripts change (a released version's never do).
sub same_as_recorded
{
    my ($got, $version, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $file = "$FindBin::Bin/../catalog/$version.txt";
    my $saved = $node->basedir . "/catalog-$version.txt";
    unlink $saved;
    append_to_file($saved, $got);
    if (!-f $file)
    {
        fail("$name: $file is missing");
        diag("the description is in $saved");
        return 0;
    }
    return same_text($got, slurp_file($file), $name)
      || diag("the description is in $saved; if the change is meant, copy it to $file");
}

sub reload_settings
{
    my (%settings) = @_;
    while (my ($name, $value) = each %settings)
    {
        $node->append_conf('postgresql.conf', "$name = '$value'\n");
    }
    $node->reload;
    while (my ($name, $value) = each %settings)
    {
        $node->poll_query_until('postgres', "SHOW $name", $value)
          or die "$name did not become $value";
    }
    return;
}

# Turn the worker off and wait until no run is going on.
sub worker_off
{
    reload_settings('subexpire.enabled' => 'off');
    $node->poll_query_until('postgres',
        "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'subexpire run'")
      or die 'a run worker is still there';
    return;
}

# Let the worker run in $db until it has expired $n rows due on day $k of
# 2000, added now; returns its run_id.  Log lines since $offset.
sub worker_expires
{
    my ($db, $k, $n) = @_;
    add_subscriptions($node, $db, $n,
        "'2000-01-01 00:00+00'::timestamptz + $k * interval '1 day'");
    reload_settings('subexpire.database' => $db, 'subexpire.enabled' => 'on');
    $node->poll_query_until($db, qq{
        SELECT count(*) = 0 FROM subscriptions WHERE status = 'active'
          AND expires_at = '2000-01-01 00:00+00'::timestamptz + $k * interval '1 day'})
      or die "the worker did not expire the rows of day $k in $db";
    worker_off();
    return $node->safe_psql($db, qq{
        SELECT run_id FROM subexpire_runs
        WHERE "trigger" <> 'manual' AND expired_count = $n ORDER BY run_id DESC LIMIT 1});
}

my $history_sql = q{
    SELECT string_agg(concat_ws('|', run_id, "trigger", as_of, started_at, finished_at,
                                status, expired_count, skipped_locked, error), E'\n' ORDER BY run_id)
    FROM subexpire_runs};

my $old_sql_log = qr/LOG:  subexpire: the extension in database "[^"]+" is version [^,]+, older than the library \(\Q$default_version\E\)\n.*DETAIL:  [^\n]*\n.*HINT:  Run ALTER EXTENSION subexpire UPDATE\./;

# ---- a fresh install of the current version ----

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
create_reference_schema($node, 'fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION subexpire');
is($node->safe_psql('fresh', "SELECT extversion FROM pg_extension WHERE extname = 'subexpire'"),
    $default_version, 'CREATE EXTENSION installs default_version');
my $fresh   = describe('fresh');
my $fresh_dx = dx_plus('fresh');
same_as_recorded($fresh, $default_version,
    "a fresh install of $default_version is test/catalog/$default_version.txt");

# ---- from every older version ----

for my $v (@old)
{
    my $db = 'from_' . ($v =~ s/\W/_/gr);
    my $watcher = "watcher_$db";

    $node->safe_psql('postgres', "CREATE DATABASE $db");
    create_reference_schema($node, $db);
    $node->safe_psql($db, "CREATE EXTENSION subexpire VERSION '$v'");
    is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'subexpire'"),
        $v, "$v: installed");
    same_as_recorded(describe($db), $v,
        "$v: CREATE EXTENSION VERSION '$v' creates test/catalog/$v.txt");

    # The current library under the SQL objects of $v: manual runs.
    add_subscriptions($node, $db, 5, "now() - interval '1 day'");
    is($node->safe_psql($db, 'SELECT expired_count FROM expire_subscriptions()'),
        '5', "$v: expire_subscriptions() works under the SQL of $v");
    is($node->safe_psql($db, 'SELECT expired_count FROM expire_subscriptions()'),
        '0', "$v: and again");
    is( $node->safe_psql($db, q{
            SELECT string_agg(format('%s/%s/%s', "trigger", status, expired_count), ',' ORDER BY run_id)
            FROM subexpire_runs}),
        'manual/succeeded/5,manual/succeeded/0', "$v: both runs are recorded");

    # The statistics view of $v, its columns as $v declared them.
    is( $node->safe_psql($db, q{
            SELECT count(*) = 1 AND bool_and(runs_total >= 2 AND last_run_expired = 0 AND due_now = 0)
            FROM subexpire_stats}),
        't', "$v: SELECT ... FROM subexpire_stats works under the SQL of $v");
    my ($ret, $stdout, $stderr) = $node->psql($db, 'SELECT * FROM subexpire_stats');
    is($ret, 0, "$v: SELECT * FROM subexpire_stats works under the SQL of $v");
    is( $node->safe_psql($db, q{
            SELECT count(*) > 0 FROM subexpire_health() WHERE status = 'ok'}),
        't', "$v: subexpire_health() works");
    like($node->safe_psql($db, 'SELECT subexpire_metrics()'),
        qr/^subscription_expiry_total \d+$/m, "$v: subexpire_metrics() works");

    # A worker run under the SQL of $v: it works, in batches, and logs
    # once, at its start, that the SQL is old.
    my $offset = -s $node->logfile;
    my $run = worker_expires($db, 1, 5);
    is( $node->safe_psql($db, "SELECT format('%s/%s', status, expired_count) FROM subexpire_runs WHERE run_id = $run"),
        'succeeded/5', "$v: a worker run (batch_size 2) under the SQL of $v succeeds");
    my $log = slurp_file($node->logfile, $offset);
    like($log, $old_sql_log, "$v: the worker says that the SQL is older than the library, and what to do");
    my %per_pid;
    $per_pid{$1}++ while $log =~ /\[(\d+)\] LOG:  subexpire: the extension in database "$db" is version/g;
    ok(%per_pid && !grep({ $_ != 1 } values %per_pid),
        "$v: once a run, not once a batch (" . scalar(keys %per_pid) . ' runs)');
    unlike($log, qr/ERROR|FATAL|PANIC|TRAP/, "$v: and nothing failed");

    # A dump taken before the update restores into the current version
    # (pg_dump does not record the version; CREATE EXTENSION makes the
    # current one, and the history's COPY names its columns).
    my $old_dump = $node->basedir . "/$db-$v.dump";
    $node->command_ok([ 'pg_dump', '-Fc', '-f', $old_dump, '-d', $node->connstr($db) ],
        "$v: pg_dump before the update");
    $node->safe_psql('postgres', "CREATE DATABASE restored_old_$db");
    $node->command_ok(
        [ 'pg_restore', '-d', $node->connstr("restored_old_$db"), $old_dump ],
        "$v: pg_restore of it into a new database");
    is( $node->safe_psql("restored_old_$db", $history_sql),
        $node->safe_psql($db, $history_sql), "$v: brings back the history");
    same_text(describe("restored_old_$db"), $fresh,
        "$v: into an extension that is a fresh install of $default_version");

    # What users add to the extension's objects, which the update must keep,
    # or say what to do about.
    $node->safe_psql($db, qq{
        CREATE ROLE $watcher;
        GRANT SELECT ON subexpire_stats, subexpire_runs TO $watcher;
        CREATE VIEW my_stats AS SELECT runs_total, due_now FROM subexpire_stats;
    });
    my $old_internal = $node->safe_psql($db,
        "SELECT to_regprocedure('subexpire_stats_internal()') IS NOT NULL") eq 't';
    if ($old_internal)
    {
        $node->safe_psql($db, "GRANT EXECUTE ON FUNCTION subexpire_stats_internal() TO $watcher");
    }
    else
    {
        $node->safe_psql($db, "GRANT EXECUTE ON FUNCTION subexpire_stats_internal_1_1() TO $watcher");
    }
    is( $node->safe_psql($db, "SET ROLE $watcher; SELECT count(*) FROM subexpire_stats"),
        '1', "$v: a role granted it reads subexpire_stats");

    # Restored into the current version, a dump of them brings back the
    # grants on the view and the table, and the view; a grant on the old
    # function under the view has nothing to apply to, and says so.
    if ($old_internal)
    {
        my $grants_dump = $node->basedir . "/$db-$v-grants.dump";
        $node->command_ok([ 'pg_dump', '-Fc', '-f', $grants_dump, '-d', $node->connstr($db) ],
            "$v: pg_dump with the user's grants");
        $node->safe_psql('postgres', "CREATE DATABASE restored_grants_$db");
        my ($out, $err);
        IPC::Run::run [ 'pg_restore', '-d', $node->connstr("restored_grants_$db"), $grants_dump ],
          '>', \$out, '2>', \$err;
        like($err,
            qr/ERROR:  function (?:\w+\.)?subexpire_stats_internal\(\) does not exist\nCommand was: GRANT [^\n]* ON FUNCTION [^\n]*subexpire_stats_internal\([^\n]* TO $watcher;\n\s*pg_restore: warning: errors ignored on restore: 1\n\z/,
            "$v: restored, the grant on subexpire_stats_internal() is the one error");
        is( $node->safe_psql("restored_grants_$db", qq{
                SELECT has_table_privilege('$watcher', 'subexpire_stats', 'SELECT')
                   AND has_table_privilege('$watcher', 'subexpire_runs', 'SELECT')
                   AND to_regclass('my_stats') IS NOT NULL}),
            't', "$v: the other grants and the user's view are restored");
        $node->safe_psql('postgres', "DROP DATABASE restored_grants_$db");
    }

    # A grant of EXECUTE on expire_subscriptions(), which 2.0 replaces.
    my $old_function = $node->safe_psql($db,
        "SELECT to_regprocedure('expire_subscriptions(timestamptz, boolean)') IS NOT NULL") eq 't';
    $node->safe_psql($db,
        "GRANT EXECUTE ON FUNCTION expire_subscriptions(timestamptz, boolean) TO $watcher")
      if $old_function;

    my $history = $node->safe_psql($db, $history_sql);
    my $next_id = $node->safe_psql($db,
        "SELECT last_value FROM subexpire_runs_run_id_seq");

    # ---- the update ----
    ($ret, $stdout, $stderr) = $node->psql($db, 'ALTER EXTENSION subexpire UPDATE');
    is($ret, 0, "$v: ALTER EXTENSION subexpire UPDATE") or diag($stderr);
    my $update_stderr = $stderr;
    is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'subexpire'"),
        $default_version, "$v: updated to $default_version");

    # The history and the position of its sequence are kept.
    is($node->safe_psql($db, $history_sql), $history, "$v: the run history is kept");
    is($node->safe_psql($db, 'SELECT last_value FROM subexpire_runs_run_id_seq'),
        $next_id, "$v: and the position of its run_id sequence");
    if (version_cmp($v, '1.1') < 0)
    {
        is($node->safe_psql($db, 'SELECT count(*) FROM subexpire_runs WHERE longest_batch IS NOT NULL'),
            '0', "$v: runs recorded before the update have no longest_batch");
    }
    is($node->safe_psql($db, 'SELECT count(*) FROM subexpire_runs WHERE kept_active <> 0'),
        '0', "$v: runs recorded before the update have kept_active 0");

    # The user's grant on the view and the view on it are kept; a grant on
    # the function under it cannot be, and the update says what to grant.
    is($node->safe_psql($db, 'SELECT count(*) FROM my_stats'), '1',
        "$v: a user's view on subexpire_stats is kept");
    is( $node->safe_psql($db, "SELECT has_table_privilege('$watcher', 'subexpire_stats', 'SELECT')"),
        't', "$v: a grant on subexpire_stats is kept");
    is( $node->safe_psql($db, "SET ROLE $watcher; SELECT count(*) FROM subexpire_runs"),
        $node->safe_psql($db, 'SELECT count(*) FROM subexpire_runs'),
        "$v: a grant on subexpire_runs is kept");
    if ($old_internal)
    {
        like($stderr,
            qr/WARNING:  subexpire_stats now reads subexpire_stats_internal_1_1\(\), which $watcher may not execute\n.*\nHINT:  (GRANT EXECUTE ON FUNCTION public\.subexpire_stats_internal_1_1\(\) TO $watcher;)/,
            "$v: the update warns that ${watcher}'s grant on subexpire_stats_internal() went, and says what to grant");
        my ($grant) = $stderr =~ /HINT:  (GRANT [^\n]*)/;
        ($ret, $stdout, $stderr) = $node->psql($db, "SET ROLE $watcher; SELECT count(*) FROM subexpire_stats");
        like($stderr, qr/permission denied for function subexpire_stats_internal_1_1/,
            "$v: indeed $watcher may not read subexpire_stats");
        $node->safe_psql($db, $grant);
        is( $node->safe_psql($db, "SET ROLE $watcher; SELECT count(*) FROM subexpire_stats"),
            '1', "$v: until the grant in the hint is made");
    }
    else
    {
        is( $node->safe_psql($db, "SET ROLE $watcher; SELECT count(*) FROM subexpire_stats"),
            '1', "$v: a grant on the function under subexpire_stats is kept");
    }
    if ($old_function)
    {
        like($update_stderr,
            qr/WARNING:  expire_subscriptions\(\) gained the argument rule_name; $watcher may no longer execute it\n.*?\nHINT:  (GRANT EXECUTE ON FUNCTION public\.expire_subscriptions\(timestamptz, boolean, text\) TO $watcher;)/s,
            "$v: the update warns that ${watcher}'s grant on expire_subscriptions() went, and says what to grant");
        my ($grant) = $update_stderr =~ /HINT:  (GRANT EXECUTE ON FUNCTION public\.expire_subscriptions[^\n]*)/;
        is( $node->safe_psql($db,
                "SELECT has_function_privilege('$watcher', 'expire_subscriptions(timestamptz, boolean, text)', 'EXECUTE')"),
            'f', "$v: indeed $watcher may not run it");
        $node->safe_psql($db, $grant);
        is( $node->safe_psql($db,
                "SELECT has_function_privilege('$watcher', 'expire_subscriptions(timestamptz, boolean, text)', 'EXECUTE')"),
            't', "$v: until the grant in the hint is made");
    }
    $node->safe_psql($db, "DROP VIEW my_stats; DROP OWNED BY $watcher; DROP ROLE $watcher");

    # The updated objects work with the library, and the worker records
    # what the new version adds, and no longer logs that the SQL is old.
    is( $node->safe_psql($db, q{
            SELECT count(*) = 1 AND bool_and(runs_total >= 2) FROM subexpire_stats}),
        't', "$v: subexpire_stats works after the update");
    $offset = -s $node->logfile;
    $run = worker_expires($db, 2, 5);
    is( $node->safe_psql($db, qq{
            SELECT format('%s/%s/%s', status, expired_count,
                          longest_batch > interval '0' AND longest_batch <= finished_at - started_at)
            FROM subexpire_runs WHERE run_id = $run}),
        'succeeded/5/t', "$v: after the update the worker records longest_batch");
    is( $node->safe_psql($db, q{
            SELECT s.last_run_longest_batch IS NOT DISTINCT FROM
                   (SELECT longest_batch FROM subexpire_runs WHERE "trigger" <> 'manual'
                    ORDER BY run_id DESC LIMIT 1)
            FROM subexpire_stats s}),
        't', "$v: subexpire_stats' last_run_longest_batch is the last worker run's longest_batch");
    $log = slurp_file($node->logfile, $offset);
    unlike($log, qr/older than the library/, "$v: and no longer says that the SQL is old");
    is($node->safe_psql($db, "SELECT run_id > $next_id FROM subexpire_runs WHERE run_id = $run"),
        't', "$v: run ids go on after those of the history");

    # The same extension as a fresh install.
    same_text(describe($db), $fresh, "$v to $default_version: the catalog is a fresh install's");
    same_text(dx_plus($db), $fresh_dx, "$v to $default_version: \\dx+ is a fresh install's");

    # What pg_dump dumps of the updated database restores.
    my $dump = $node->basedir . "/$db.dump";
    $node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr($db) ],
        "$v: pg_dump of the updated database");
    $node->safe_psql('postgres', "CREATE DATABASE restored_$db");
    $node->command_ok([ 'pg_restore', '-d', $node->connstr("restored_$db"), $dump ],
        "$v: pg_restore");
    is( $node->safe_psql("restored_$db", $history_sql),
        $node->safe_psql($db, $history_sql), "$v: the restored history is the updated one");
    is( $node->safe_psql("restored_$db", 'SELECT string_agg(coalesce(longest_batch::text, \'-\'), \',\' ORDER BY run_id) FROM subexpire_runs'),
        $node->safe_psql($db, 'SELECT string_agg(coalesce(longest_batch::text, \'-\'), \',\' ORDER BY run_id) FROM subexpire_runs'),
        "$v: with longest_batch");
    same_text(describe("restored_$db"), $fresh, "$v: the restored extension is a fresh install's");

    # No way back.
    is( $node->safe_psql('postgres', qq{
            SELECT count(*) FROM pg_extension_update_paths('subexpire')
            WHERE source = '$default_version' AND target = '$v' AND path IS NOT NULL}),
        '0', "$v: no update path from $default_version back to $v");
    ($ret, $stdout, $stderr) = $node->psql($db, "ALTER EXTENSION subexpire UPDATE TO '$v'");
    like($stderr, qr/extension "subexpire" has no update path from version "\Q$default_version\E" to version "\Q$v\E"/,
        "$v: ALTER EXTENSION subexpire UPDATE TO '$v' is refused");
    isnt( $node->safe_psql('postgres', qq{
            SELECT path FROM pg_extension_update_paths('subexpire')
            WHERE source = '$v' AND target = '$default_version'}),
        '', "$v: the path from $v to $default_version is known to PostgreSQL");
}

# ---- an update on the current version does nothing ----

my ($ret, $stdout, $stderr) = $node->psql('fresh', 'ALTER EXTENSION subexpire UPDATE');
is($ret, 0, 'ALTER EXTENSION subexpire UPDATE on the current version succeeds');
like($stderr, qr/NOTICE:  version "\Q$default_version\E" of extension "subexpire" is already installed/,
    'with a notice that it is already installed');
same_text(describe('fresh'), $fresh, 'and changes nothing');

# ---- SQL objects that do not match the library ----

# Each entry point checks the columns it is declared with, as its own
# version declares them, and says what to do rather than build a row of
# another shape.
$node->safe_psql('fresh', q{
    CREATE FUNCTION stats_short(OUT runs_total bigint, OUT runs_failed bigint) RETURNS record
        AS 'subexpire', 'subexpire_stats_internal_1_1' LANGUAGE C;
    CREATE FUNCTION stats_1_0_as_1_1(
        OUT a1 bigint, OUT a2 bigint, OUT a3 bigint, OUT a4 timestamptz, OUT a5 timestamptz,
        OUT a6 timestamptz, OUT a7 text, OUT a8 interval, OUT a9 double precision,
        OUT a10 bigint, OUT a11 timestamptz, OUT a12 timestamptz, OUT a13 integer,
        OUT a14 bigint, OUT a15 timestamptz, OUT a16 interval) RETURNS record
        AS 'subexpire', 'subexpire_stats_internal' LANGUAGE C;
});
($ret, $stdout, $stderr) = $node->psql('fresh', 'SELECT * FROM stats_short()',
    extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr,
    qr/ERROR:  55000: subexpire's SQL objects do not match its library\nDETAIL:  Function stats_short returns 2 columns, but the library's entry point subexpire_stats_internal_1_1 returns 16\.\nHINT:  Run ALTER EXTENSION subexpire UPDATE\./,
    'an entry point declared with too few columns: an error that says what to do');
($ret, $stdout, $stderr) = $node->psql('fresh', 'SELECT * FROM stats_1_0_as_1_1()');
like($stderr, qr/ERROR:  subexpire's SQL objects do not match its library\nDETAIL:  .* subexpire_stats_internal returns 15\.\nHINT:  Run ALTER EXTENSION subexpire UPDATE\./,
    'the entry point of 1.0 declared with the columns of 1.1: the same error');
$node->safe_psql('fresh', 'DROP FUNCTION stats_short(), stats_1_0_as_1_1()');
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $started,
    'no backend crashed: the server never restarted');

# ---- statistics that the 1.0 library wrote at shutdown ----

# The server is restarted with a new library: the statistics file is the
# old library's.  Library 1.0 wrote its magic number, 0x53584531 ("SXE1"),
# and its counters, 480 bytes:
# runs_total, runs_failed, expired_total, last_run_started_at,
# last_success_at, last_failure_at, last_expiry_at, last_run_duration,
# last_run_expired (int64 each, times in microseconds since 2000-01-01),
# last_error (256 bytes), duration_counts (17 int64), duration_sum (double),
# stats_reset.
$node->stop;
my $day = 86_400_000_000;
my @buckets = (0) x 17;
$buckets[8] = 41;
my $stats_1_0 = pack('L< q<9 a256 q<17 d< q<',
    0x53584531, 41, 1, 4242, 3 * $day, 3 * $day, 2 * $day, 3 * $day, 1_500_000, 7,
    'from 1.0', @buckets, 61.5, $day);
is(length($stats_1_0), 484, 'a statistics file of library 1.0 is 484 bytes');
open(my $fh, '>:raw', $node->data_dir . '/pg_stat/subexpire.stat') or die $!;
print $fh $stats_1_0;
close($fh);
$node->start;
is( $node->safe_psql('fresh', q{
        SELECT concat_ws('|', runs_total, runs_failed, expired_total, last_run_started_at,
                         last_error, last_run_duration, last_run_expired,
                         last_run_longest_batch IS NULL, stats_reset)
        FROM subexpire_stats}),
    '41|1|4242|2000-01-04 00:00:00+00|from 1.0|00:00:01.5|7|t|2000-01-02 00:00:00+00',
    'the statistics that library 1.0 wrote are read back, with no longest batch');
ok(!$node->log_contains(qr/ignoring invalid subexpire statistics file/),
    'and the file is not called invalid');

done_testing();
