# Load and race: a backlog of due subscriptions is expired by the worker
# and by manual runs at once, while pgbench drives application traffic
# (renewals, cancellations, sign-ups) at full speed against the same rows.
# Every invariant is checked from the data itself, through an audit trail
# written in the same transactions as the changes:
#
#   app_events   one row per application change, written by the
#                application's own transaction (kind renew|cancel|signup,
#                the expiry it set, its txid)
#   sub_changes  one row per change of a subscription, written by an AFTER
#                trigger: txid, old and new status and expiry.  A row's
#                changes are serialized by its row lock, so ordered by seq
#                they are the row's history.
#   run_xacts    the transactions of each run (a trigger on subexpire_runs,
#                whose record every run writes in each of its transactions)
# and the commit time of each change (track_commit_timestamp), which says
# what a run left active when it ended.
#
# Before that, a deterministic part: four manual runs started at the same
# moment (an advisory-lock barrier) with the same as_of split N due rows
# exactly: their counts add up to N, each row is expired once, and the run
# records agree.  Twice: with the default subexpire.lock_wait, and with
# 50 ms, when the runs share the rows through the locked-rows path.
#
# Sizes, from the environment (the defaults keep this file under a minute):
#   SUBEXPIRE_LOAD_ROWS     subscriptions in the backlog, half of them due (100000)
#   SUBEXPIRE_LOAD_SECONDS  pgbench duration, -T (10)
#   SUBEXPIRE_LOAD_CLIENTS  pgbench clients, -c (4)
#   SUBEXPIRE_LOAD_JOBS     pgbench threads, -j (2)
#   SUBEXPIRE_LOAD_MANUAL   psql sessions looping expire_subscriptions() (4)
#   SUBEXPIRE_LOAD_BATCH    subexpire.batch_size of the worker (500)
#   SUBEXPIRE_SPLIT_ROWS    due rows for the four simultaneous runs (40000)
# e.g. SUBEXPIRE_LOAD_ROWS=300000 SUBEXPIRE_LOAD_SECONDS=30 make installcheck
#      REGRESS= ISOLATION= PROVE_TESTS=test/t/012_load_race.pl
# The figures (pgbench's, and who expired what) are printed as notes
# (prove -v, or tmp_check/log/regress_log_012_load_race).
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

sub size_from_env
{
	my ($name, $default) = @_;
	my $value = $ENV{$name} // $default;
	die "$name must be a positive integer, not \"$value\""
	  unless $value =~ /^[1-9][0-9]*$/;
	return $value;
}

my $rows       = size_from_env('SUBEXPIRE_LOAD_ROWS',    100000);
my $seconds    = size_from_env('SUBEXPIRE_LOAD_SECONDS', 10);
my $clients    = size_from_env('SUBEXPIRE_LOAD_CLIENTS', 4);
my $jobs       = size_from_env('SUBEXPIRE_LOAD_JOBS',    2);
my $manual     = size_from_env('SUBEXPIRE_LOAD_MANUAL',  4);
my $batch      = size_from_env('SUBEXPIRE_LOAD_BATCH',   500);
my $split_rows = size_from_env('SUBEXPIRE_SPLIT_ROWS',   40000);
my $due        = int($rows / 2);

my $t0 = time;
sub elapsed { return sprintf('%.1f s', time - $t0); }

my $node = PostgreSQL::Test::Cluster->new('load_race');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'subexpire'
subexpire.enabled = off
subexpire.schedule = '1 second'
subexpire.batch_size = $batch
# Cluster.pm logs every statement; at full speed that is the bottleneck.
log_statement = none
max_connections = 100
# Who waited for whom, when a figure or an invariant needs explaining.
log_lock_waits = on
# When each change committed: what a run left active when it ended.
track_commit_timestamp = on
});
$node->start;

# The transactions of each run: every run writes its record in each of its
# transactions (a manual run once, the worker in every batch), so a row
# changed in one of these transactions was changed by that run.  The
# record is written with search_path = pg_catalog, pg_temp: qualify.
my $run_xacts_sql = q{
    CREATE TABLE public.run_xacts (run_id bigint NOT NULL, txid bigint NOT NULL,
                                   PRIMARY KEY (run_id, txid));
    CREATE FUNCTION public.note_run_xact() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO public.run_xacts VALUES (NEW.run_id, pg_catalog.txid_current())
            ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$;
    CREATE TRIGGER note_run_xact AFTER INSERT OR UPDATE ON subexpire_runs
        FOR EACH ROW EXECUTE FUNCTION public.note_run_xact();
};

# ==== Part 1: four manual runs at once split the work exactly ====

# Two rounds over the same table: N rows due in each, at its own as_of.
# In the first, the runs keep the default subexpire.lock_wait: the three
# that lose the race for the first row wait for the winner to commit.  In
# the second, lock_wait is 50 ms: they give up waiting at once and go
# round the winner's locks (SKIP LOCKED), so the four really share the
# rows while the winner's UPDATE is still going.
my @rounds = (
	{ as_of => '2000-06-01 00:00:00+00', from => '2000-01-01 00:00+00', lock_wait => undef },
	{ as_of => '2001-06-01 00:00:00+00', from => '2000-07-01 00:00+00', lock_wait => '50ms' });
$node->safe_psql('postgres', 'CREATE DATABASE split');
create_reference_schema($node, 'split');
$node->safe_psql('split', qq{
    CREATE EXTENSION subexpire;
    $run_xacts_sql
    CREATE TABLE expirations (id uuid NOT NULL, txid bigint NOT NULL,
                              old_status text, old_expires_at timestamptz,
                              new_expires_at timestamptz, new_updated_at timestamptz);
    CREATE FUNCTION note_expiry() RETURNS trigger LANGUAGE plpgsql AS \$\$
    BEGIN
        INSERT INTO public.expirations
        VALUES (NEW.id, pg_catalog.txid_current(), OLD.status, OLD.expires_at,
                NEW.expires_at, NEW.updated_at);
        RETURN NULL;
    END \$\$;
    CREATE TRIGGER note_expiry AFTER UPDATE ON subscriptions FOR EACH ROW
        WHEN (NEW.status = 'expired') EXECUTE FUNCTION note_expiry();
});
# N due in each round (in the 151 days before its as_of), as many due
# after the last, and some due long ago but not active.
for my $round (@rounds)
{
	add_subscriptions($node, 'split', $split_rows,
		"'$round->{from}'::timestamptz + random() * interval '151 days'");
}
add_subscriptions($node, 'split', $split_rows,
	"'$rounds[-1]{as_of}'::timestamptz + interval '1 microsecond' + random() * interval '300 days'");
$node->safe_psql('split', qq{
    WITH u AS (INSERT INTO users SELECT gen_random_uuid()
               FROM generate_series(1, 1000) RETURNING id)
    INSERT INTO subscriptions (user_id, status, expires_at)
    SELECT id, CASE WHEN random() < 0.5 THEN 'inactive' ELSE 'pending' END,
           '2000-01-01 00:00+00'
    FROM u;
    VACUUM ANALYZE subscriptions;
});

my $k = 0;
for my $round (@rounds)
{
	my $as_of = $round->{as_of};
	my $what = 'split, lock_wait ' . ($round->{lock_wait} // 'default');
	my $before = $node->safe_psql('split', 'SELECT coalesce(max(run_id), 0) FROM subexpire_runs');
	$k++;

	is( $node->safe_psql('split',
			"SELECT expired_count FROM expire_subscriptions('$as_of', dry_run => true)"),
		$split_rows, "$what: $split_rows rows are due at $as_of");

	# The barrier: the test holds an advisory lock; each session waits for
	# it before its run, and all are let go at once.  Input from a file:
	# psql reads it as it goes, with no pumping from here.
	my $barrier = $node->background_psql('split');
	$barrier->query_safe('SELECT pg_advisory_lock(4242)');
	my $script = PostgreSQL::Test::Utils::tempdir . "/split$k.sql";
	open my $fh, '>', $script or die "$script: $!";
	print $fh ($round->{lock_wait} ? "SET subexpire.lock_wait = '$round->{lock_wait}';\n" : '');
	print $fh qq{
SELECT pg_advisory_lock_shared(4242) \\g /dev/null
BEGIN;
SELECT 'count=' || expired_count FROM expire_subscriptions('$as_of');
COMMIT;
};
	close $fh;
	my @sessions;
	for my $i (1 .. 4)
	{
		my %s = (out => '', err => '');
		$s{h} = IPC::Run::start(
			[ 'psql', '-X', '-At', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('split') ],
			'<', $script, '>', \$s{out}, '2>', \$s{err});
		push @sessions, \%s;
	}
	ok( $node->poll_query_until('split', q{
            SELECT count(*) = 4 FROM pg_locks
            WHERE locktype = 'advisory' AND objid = 4242 AND NOT granted}),
		"$what: the four sessions wait at the barrier");
	$barrier->query_safe('SELECT pg_advisory_unlock(4242)');

	my @counts;
	for my $s (@sessions)
	{
		ok($s->{h}->finish, "$what: a session's run succeeded") or diag("stderr: $s->{err}");
		my ($count) = $s->{out} =~ /^count=(\d+)$/m;
		push @counts, $count // -1;
	}
	$barrier->quit;
	my $sum = 0;
	$sum += $_ for @counts;
	is($sum, $split_rows,
		"$what: the four runs' counts add up to the $split_rows due rows ("
		  . join(' + ', @counts) . ')');

	# This round's runs, and the rows their transactions expired.
	my $runs = "(SELECT * FROM subexpire_runs WHERE run_id > $before)";
	note("$what: runs\n" . $node->safe_psql('split',
		"SELECT run_id, started_at, finished_at, expired_count FROM $runs r ORDER BY run_id"));
	my $expired = "(SELECT e.*, x.run_id FROM expirations e JOIN run_xacts x USING (txid)
                    WHERE x.run_id > $before)";
	is( $node->safe_psql('split', qq{
            SELECT count(*) || '/' || count(DISTINCT id) || '/'
                || count(*) FILTER (WHERE old_status = 'active' AND old_expires_at <= '$as_of'
                                    AND new_expires_at = old_expires_at)
            FROM $expired e}),
		"$split_rows/$split_rows/$split_rows",
		"$what: each row due was expired once, by one of the runs, and only those");
	is( $node->safe_psql('split', qq{
            SELECT count(*) || '|' || count(*) FILTER (WHERE trigger = 'manual' AND status = 'succeeded'
                                                       AND as_of = '$as_of' AND skipped_locked = 0)
            FROM $runs r}),
		'4|4', "$what: four run records, manual, succeeded, with the as_of given, nothing skipped");
	is( $node->safe_psql('split',
			"SELECT string_agg(expired_count::text, ' ' ORDER BY expired_count) FROM $runs r"),
		join(' ', sort { $a <=> $b } @counts),
		"$what: the run records hold the counts the sessions were told");
	is( $node->safe_psql('split', qq{
            SELECT string_agg(format('run %s recorded %s, its transaction expired %s',
                                     r.run_id, r.expired_count, n), '; ')
            FROM (SELECT r.*, (SELECT count(*) FROM $expired e WHERE e.run_id = r.run_id) AS n
                  FROM $runs r) r
            WHERE r.expired_count <> n}),
		'', "$what: each run's record counts exactly the rows its transaction expired");
	is( $node->safe_psql('split', qq{
            SELECT string_agg(format('run %s started at %s: %s rows got updated_at %s',
                                     run_id, started_at, n, new_updated_at), '; ')
            FROM (SELECT e.run_id, r.started_at, e.new_updated_at, count(*) AS n
                  FROM $expired e JOIN subexpire_runs r USING (run_id)
                  WHERE e.new_updated_at IS DISTINCT FROM r.started_at
                  GROUP BY 1, 2, 3) m}),
		'', "$what: each row expired got the start time of its run");
	is( $node->safe_psql('split',
			"SELECT max(started_at) < min(finished_at) FROM $runs r"),
		't', "$what: the four runs overlapped in time");
	is( $node->safe_psql('split',
			"SELECT expired_count FROM expire_subscriptions('$as_of')"),
		'0', "$what: a run after them finds nothing left");
}
is( $node->safe_psql('split', q{
        SELECT count(*) FILTER (WHERE status = 'active') || '|'
            || count(*) FILTER (WHERE status = 'expired') || '|'
            || count(*) FILTER (WHERE status IN ('inactive', 'pending'))
        FROM subscriptions}),
	"$split_rows|" . (2 * $split_rows) . '|1000', 'split: nothing else changed status');
is( $node->safe_psql('split', 'SELECT count(*) || \'/\' || count(DISTINCT id) FROM expirations'),
	(2 * $split_rows) . '/' . (2 * $split_rows), 'split: no row was expired twice');
note('split: ' . elapsed());

# ==== Part 2: the backlog, under application traffic ====

create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', qq{
    CREATE EXTENSION subexpire;
    $run_xacts_sql
    -- Subscriptions by number, for pgbench's random picks.
    CREATE TABLE sub_index (n bigserial PRIMARY KEY, sub_id uuid NOT NULL UNIQUE);
    -- Written by the application transactions, with their change.
    CREATE TABLE app_events (
        id             bigserial PRIMARY KEY,
        sub_id         uuid NOT NULL,
        kind           text NOT NULL CHECK (kind IN ('renew', 'cancel', 'signup')),
        at             timestamptz NOT NULL DEFAULT clock_timestamp(),
        expires_at_set timestamptz,
        txid           bigint NOT NULL DEFAULT txid_current());
    -- Every change of a subscription, by trigger.  op 'seed' is its state
    -- when the traffic starts.
    CREATE TABLE sub_changes (
        seq            bigserial PRIMARY KEY,
        sub_id         uuid NOT NULL,
        txid           bigint NOT NULL,
        op             text NOT NULL,
        old_status     text,
        new_status     text,
        old_expires_at timestamptz,
        new_expires_at timestamptz,
        new_updated_at timestamptz,
        at             timestamptz NOT NULL DEFAULT clock_timestamp());
    CREATE FUNCTION log_change() RETURNS trigger LANGUAGE plpgsql AS \$\$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO public.sub_changes (sub_id, txid, op, new_status,
                                            new_expires_at, new_updated_at)
            VALUES (NEW.id, pg_catalog.txid_current(), TG_OP, NEW.status,
                    NEW.expires_at, NEW.updated_at);
        ELSE
            INSERT INTO public.sub_changes (sub_id, txid, op, old_status, new_status,
                                            old_expires_at, new_expires_at, new_updated_at)
            VALUES (NEW.id, pg_catalog.txid_current(), TG_OP, OLD.status, NEW.status,
                    OLD.expires_at, NEW.expires_at, NEW.updated_at);
        END IF;
        RETURN NULL;
    END \$\$;
    CREATE TABLE load_control (traffic_started timestamptz);

    -- The backlog: $due due (in the last 300 days), and as many not due:
    -- active and due later, inactive or expired long ago.
    INSERT INTO users SELECT gen_random_uuid() FROM generate_series(1, $rows);
    INSERT INTO subscriptions (user_id, status, expires_at)
    SELECT id,
           CASE WHEN i <= $due THEN 'active'
                WHEN i % 5 = 0 THEN 'inactive'
                WHEN i % 5 = 1 THEN 'expired'
                ELSE 'active' END,
           CASE WHEN i <= $due OR i % 5 IN (0, 1)
                THEN now() - interval '1 minute' - random() * interval '300 days'
                ELSE now() + interval '1 day' + random() * interval '300 days' END
    FROM (SELECT id, row_number() OVER () AS i FROM users) u;
    INSERT INTO sub_index (sub_id) SELECT id FROM subscriptions ORDER BY random();
    INSERT INTO sub_changes (sub_id, txid, op, new_status, new_expires_at, new_updated_at)
    SELECT id, txid_current(), 'seed', status, expires_at, updated_at FROM subscriptions;
    CREATE TRIGGER log_change AFTER INSERT OR UPDATE ON subscriptions
        FOR EACH ROW EXECUTE FUNCTION log_change();
});
$node->safe_psql('postgres', 'VACUUM ANALYZE');
is( $node->safe_psql('postgres',
		'SELECT expired_count FROM expire_subscriptions(dry_run => true)'),
	$due, "load: $due of $rows rows are due");
note('load: backlog created at ' . elapsed());

# The application.  Each transaction writes its event with its change.
my $scripts = PostgreSQL::Test::Utils::tempdir;
my %script = (
	renew => q{
SELECT last_value AS maxn FROM sub_index_n_seq \gset
\set n random(1, :maxn)
BEGIN;
SELECT s.status, s.expires_at FROM subscriptions s JOIN sub_index i ON i.sub_id = s.id
WHERE i.n = :n FOR UPDATE OF s;
WITH r AS (
    UPDATE subscriptions s
    SET status = 'active', expires_at = now() + interval '30 days', updated_at = now()
    FROM sub_index i WHERE i.n = :n AND s.id = i.sub_id
    RETURNING s.id, s.expires_at)
INSERT INTO app_events (sub_id, kind, expires_at_set) SELECT id, 'renew', expires_at FROM r;
COMMIT;
},
	cancel => q{
SELECT last_value AS maxn FROM sub_index_n_seq \gset
\set n random(1, :maxn)
BEGIN;
WITH c AS (
    UPDATE subscriptions s SET status = 'inactive', updated_at = now()
    FROM sub_index i WHERE i.n = :n AND s.id = i.sub_id AND s.status = 'active'
    RETURNING s.id, s.expires_at)
INSERT INTO app_events (sub_id, kind, expires_at_set) SELECT id, 'cancel', expires_at FROM c;
COMMIT;
},
	# 30%: already due; 30%: due within seconds; 40%: a month ahead.
	signup => q{
\set r random(1, 10)
\set secs case when :r <= 3 then random(-864000, -1) when :r <= 6 then random(1, 5) else 2592000 end
BEGIN;
WITH u AS (INSERT INTO users DEFAULT VALUES RETURNING id),
     s AS (INSERT INTO subscriptions (user_id, status, expires_at)
           SELECT id, 'active', now() + :secs * interval '1 second' FROM u
           RETURNING id, expires_at),
     i AS (INSERT INTO sub_index (sub_id) SELECT id FROM s)
INSERT INTO app_events (sub_id, kind, expires_at_set) SELECT id, 'signup', expires_at FROM s;
COMMIT;
});
my %weight = (renew => 5, cancel => 2, signup => 3);
my @script_names = qw(renew cancel signup);
for my $name (@script_names)
{
	open my $fh, '>', "$scripts/$name.sql" or die "$scripts/$name.sql: $!";
	print $fh $script{$name};
	close $fh;
}

my ($pgbench_out, $pgbench_err) = ('', '');
# application_name tells the clients apart in the server log.
my $pgbench;
{
	local $ENV{PGAPPNAME} = 'app';
	$pgbench = IPC::Run::start(
		[
			'pgbench', '-n', '-c', $clients, '-j', $jobs, '-T', $seconds,
			(map { ('-f', "$scripts/$_.sql\@$weight{$_}") } @script_names),
			'-h', $node->host, '-p', $node->port, 'postgres'
		],
		'>', \$pgbench_out, '2>', \$pgbench_err);
}
ok( $node->poll_query_until('postgres', 'SELECT count(*) > 0 FROM app_events'),
	'load: the application traffic is under way');
$node->safe_psql('postgres', 'INSERT INTO load_control VALUES (now())');

# Then, while it goes on, the worker, and once it is under way, the
# manual runs.
$node->append_conf('postgresql.conf', "subexpire.enabled = on\n");
$node->reload;
ok( $node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM subexpire_runs WHERE trigger <> 'manual' AND expired_count > 0"),
	'load: the worker is expiring the backlog');
# Each run is followed by a dot on stdout, so that the test knows how many
# are done, and feeds each session a few runs ahead only: when pgbench is
# done, so are they, soon after.
my $stanza = "SELECT expire_subscriptions();\n\\echo .\n";
my @loops;
for my $i (1 .. $manual)
{
	my %l = (in => '', out => '', err => '', sent => 0);
	local $ENV{PGAPPNAME} = "manual_$i";
	$l{h} = IPC::Run::start(
		[
			'psql', '-X', '-q', '-o', '/dev/null', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr('postgres')
		],
		'<', \$l{in}, '>', \$l{out}, '2>', \$l{err});
	push @loops, \%l;
}
while ($pgbench->pumpable)
{
	for my $l (@loops)
	{
		next unless $l->{h}->pumpable;
		$l->{h}->pump_nb;
		my $done = ($l->{out} =~ tr/.//);
		if ($l->{sent} - $done < 20)
		{
			$l->{in} .= $stanza x 20;
			$l->{sent} += 20;
		}
	}
	$pgbench->pump_nb;
	usleep(10_000);
}
my $pgbench_ok = $pgbench->finish;
note('load: pgbench done at ' . elapsed());
my $loops_ok = 1;
for my $l (@loops)
{
	$loops_ok &&= $l->{h}->finish;
	diag("manual session: $l->{err}") if $l->{err} ne '';
}
note('load: traffic done at ' . elapsed());
ok($pgbench_ok, 'load: pgbench succeeded') or diag("pgbench: $pgbench_err\n$pgbench_out");
ok($loops_ok, 'load: the manual sessions\' runs all succeeded');
like($pgbench_out, qr/number of failed transactions: 0 /, 'load: no application transaction failed');
note("pgbench:\n$pgbench_out");

# Stop the worker, wait for the last run to end, and run until a run
# finds nothing due.
$node->append_conf('postgresql.conf', "subexpire.enabled = off\n");
$node->reload;
ok( $node->poll_query_until('postgres',
		'SELECT next_run_at IS NULL FROM subexpire_stats'),
	'drain: the worker is off');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM subexpire_runs WHERE status = 'running'"),
	'drain: no run is running');
ok( $node->poll_query_until('postgres',
		'SELECT expired_count = 0 FROM expire_subscriptions()'),
	'drain: a final run finds nothing due');
my $final_as_of = $node->safe_psql('postgres', q{
    SELECT as_of FROM subexpire_runs WHERE trigger = 'manual'
    ORDER BY run_id DESC LIMIT 1});
note("drain: done at " . elapsed() . ", final cutoff $final_as_of");

# ---- the invariants, from the data ----

$node->safe_psql('postgres', q{
    CREATE INDEX ON sub_changes (txid);
    CREATE INDEX ON sub_changes (sub_id, seq);
    CREATE INDEX ON app_events (txid);
    CREATE INDEX ON app_events (sub_id);
    CREATE INDEX ON run_xacts (txid);
    ANALYZE;
});

# The history: every change with the row's previous state.
my $history = q{
    CREATE TEMP VIEW history AS
    SELECT c.*,
           lag(c.new_status)     OVER w AS prev_status,
           lag(c.new_expires_at) OVER w AS prev_expires_at,
           lag(c.txid)           OVER w AS prev_txid,
           row_number()          OVER w AS k
    FROM sub_changes c WINDOW w AS (PARTITION BY sub_id ORDER BY seq);
    CREATE TEMP VIEW expiries AS
    SELECT * FROM sub_changes WHERE op = 'UPDATE' AND new_status = 'expired';
};
sub check
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', $history . $sql);
}

is( $node->safe_psql('postgres', q{
        SELECT count(*) FILTER (WHERE status = 'running') || '|'
            || count(*) FILTER (WHERE status = 'failed') || '|'
            || count(*) FILTER (WHERE status <> 'succeeded')
        FROM subexpire_runs}),
	'0|0|0', 'runs: none failed, none is running');

is( check(q{
        SELECT count(*) FROM expiries e
        WHERE (SELECT count(*) FROM run_xacts x WHERE x.txid = e.txid) <> 1}),
	'0', 'runs: every expiry was made by exactly one run');
is( check(q{
        SELECT count(*) FROM sub_changes c JOIN run_xacts x USING (txid)
        WHERE NOT (c.op = 'UPDATE' AND c.old_status = 'active' AND c.new_status = 'expired'
                   AND c.new_expires_at IS NOT DISTINCT FROM c.old_expires_at)}),
	'0', 'runs: a run changed nothing but the status of active rows to expired');
is( check(q{
        SELECT count(*) FROM expiries e
        JOIN run_xacts x USING (txid) JOIN subexpire_runs r USING (run_id)
        WHERE e.old_expires_at > r.as_of OR e.new_updated_at <> r.started_at}),
	'0', 'runs: every row a run expired was due at its cutoff (on the version it changed), '
	  . 'and got its start time');

my $mismatched = check(q{
    SELECT string_agg(format('run %s (%s) recorded %s, expired %s', r.run_id, r.trigger,
                             r.expired_count, coalesce(e.n, 0)), '; ')
    FROM subexpire_runs r
    LEFT JOIN (SELECT x.run_id, count(*) AS n FROM expiries e JOIN run_xacts x USING (txid)
               GROUP BY x.run_id) e USING (run_id)
    WHERE r.expired_count <> coalesce(e.n, 0)});
is($mismatched, '', 'runs: each run\'s record counts exactly the rows it expired');
my ($expired_total, $runs_sum) = split /\|/, check(q{
    SELECT (SELECT count(*) FROM expiries) || '|'
        || (SELECT sum(expired_count) FROM subexpire_runs)});
is($runs_sum, $expired_total,
	"runs: the runs' counts add up to the expiries recorded ($expired_total)");

# skipped_locked counts the due rows a run left active because other
# transactions held them locked: each was still active and due when the run
# counted them, just before its finished_at.  From the commit times of the
# changes, count the rows in that state at finished_at: a run cannot have
# left more.  (txid::text::xid: a fresh cluster, still in xid epoch 0.)
my $overcounted = $node->safe_psql('postgres', q{
    CREATE TEMP TABLE states AS
    SELECT sub_id, new_status, new_expires_at, cts,
           lead(cts) OVER (PARTITION BY sub_id ORDER BY seq) AS next_cts
    FROM (SELECT c.*, pg_xact_commit_timestamp(c.txid::text::xid) AS cts FROM sub_changes c) c;
    SELECT string_agg(format('run %s (%s, as_of %s, finished %s) recorded skipped_locked %s, '
                             || 'but left %s due rows active', run_id, trigger, as_of, finished_at,
                             skipped_locked, left_active), '; ' ORDER BY run_id)
    FROM (SELECT r.*,
                 (SELECT count(*) FROM states s
                  WHERE s.new_status = 'active' AND s.new_expires_at <= r.as_of
                    AND s.cts <= r.finished_at
                    AND (s.next_cts IS NULL OR s.next_cts > r.finished_at)) AS left_active
          FROM subexpire_runs r WHERE r.skipped_locked > 0) r
    WHERE skipped_locked > left_active});
is($node->safe_psql('postgres', 'SELECT count(*) FROM sub_changes
        WHERE pg_xact_commit_timestamp(txid::text::xid) IS NULL'),
	'0', 'runs: every change has its commit time');
is($overcounted, '',
	'runs: no run counted more rows as skipped_locked than it left active');

is( check(q{
        SELECT count(*) FROM history
        WHERE CASE WHEN k = 1 THEN op NOT IN ('seed', 'INSERT')
                   ELSE op <> 'UPDATE'
                        OR old_status IS DISTINCT FROM prev_status
                        OR old_expires_at IS DISTINCT FROM prev_expires_at END}),
	'0', 'history: each change starts from the state the previous one left (no lost update)');
is( check(q{
        SELECT count(*) FROM subscriptions s
        FULL JOIN (SELECT DISTINCT ON (sub_id) * FROM sub_changes ORDER BY sub_id, seq DESC) l
            ON l.sub_id = s.id
        WHERE l.sub_id IS NULL OR s.id IS NULL OR l.new_status IS DISTINCT FROM s.status
           OR l.new_expires_at IS DISTINCT FROM s.expires_at}),
	'0', 'history: every row is in the state its last change left');

is( check(q{
        SELECT count(*) FROM app_events a
        WHERE (SELECT count(*) FROM sub_changes c
               WHERE c.txid = a.txid AND c.sub_id = a.sub_id
                 AND CASE a.kind
                     WHEN 'renew' THEN c.op = 'UPDATE' AND c.new_status = 'active'
                                       AND c.new_expires_at = a.expires_at_set
                     WHEN 'cancel' THEN c.op = 'UPDATE' AND c.old_status = 'active'
                                        AND c.new_status = 'inactive'
                     ELSE c.op = 'INSERT' AND c.new_status = 'active'
                          AND c.new_expires_at = a.expires_at_set END) <> 1}),
	'0', 'events: every application event is a change of its row, in its transaction');
is( check(q{
        SELECT count(*) FROM sub_changes c
        WHERE c.op <> 'seed'
          AND NOT EXISTS (SELECT 1 FROM run_xacts x WHERE x.txid = c.txid)
          AND NOT EXISTS (SELECT 1 FROM app_events a
                          WHERE a.txid = c.txid AND a.sub_id = c.sub_id)}),
	'0', 'events: every change was made by a run or by an application event');

is( check(q{
        SELECT count(*) FROM history h JOIN app_events a
            ON a.txid = h.prev_txid AND a.sub_id = h.sub_id AND a.kind = 'renew'
        WHERE h.op = 'UPDATE' AND h.new_status = 'expired'}),
	'0', 'renewals: no renewal was followed by an expiry');
is( check(q{
        SELECT count(*) FROM subscriptions s
        JOIN (SELECT DISTINCT ON (sub_id) * FROM sub_changes ORDER BY sub_id, seq DESC) l
            ON l.sub_id = s.id
        JOIN app_events a ON a.txid = l.txid AND a.sub_id = s.id AND a.kind = 'renew'
        WHERE s.status <> 'active'}),
	'0', 'renewals: every row whose last change was a renewal is active');
is( check(q{
        SELECT count(*) FROM subscriptions s
        WHERE s.status = 'expired'
          AND EXISTS (SELECT 1 FROM app_events a JOIN sub_changes c
                          ON c.txid = a.txid AND c.sub_id = a.sub_id
                      WHERE a.sub_id = s.id AND a.kind = 'renew'
                        AND c.seq > (SELECT max(e.seq) FROM expiries e WHERE e.sub_id = s.id))}),
	'0', 'renewals: no row with a renewal committed after its last expiry is expired');

is( check(q{
        SELECT count(*) FROM history
        WHERE op = 'UPDATE' AND new_status = 'expired' AND prev_status IS DISTINCT FROM 'active'}),
	'0', 'expiries: a row was expired only from active: never twice without a renewal between');
is( check(q{SELECT count(*) - count(DISTINCT sub_id) FROM expiries}),
	'0', 'expiries: no row was expired twice (a renewal puts the expiry a month ahead)');

is( $node->safe_psql('postgres', qq{
        SELECT count(*) FROM subscriptions
        WHERE status = 'active' AND expires_at <= '$final_as_of'}),
	'0', 'complete: after the final run, no active row is due at its cutoff');
is( check(q{
        SELECT count(*) FROM subscriptions s JOIN sub_changes c
            ON c.sub_id = s.id AND c.op = 'seed'
        WHERE c.new_status = 'active' AND c.new_expires_at <= (SELECT traffic_started FROM load_control)
          AND NOT EXISTS (SELECT 1 FROM app_events a WHERE a.sub_id = s.id)
          AND s.status <> 'expired'}),
	'0', 'complete: every row of the backlog that the application left alone is expired');

# Did the traffic race with the runs, or did they take turns?
my ($renew_due, $renew_expired, $renew_in_run, $cancel_due) = split /\|/, check(q{
    SELECT count(*) FILTER (WHERE a.kind = 'renew' AND h.old_status = 'active'
                            AND h.old_expires_at <= a.at) || '|'
        || count(*) FILTER (WHERE a.kind = 'renew' AND h.old_status = 'expired') || '|'
        || count(*) FILTER (WHERE a.kind = 'renew' AND h.old_status = 'active'
                            AND EXISTS (SELECT 1 FROM subexpire_runs r
                                        WHERE a.at BETWEEN r.started_at AND r.finished_at
                                          AND h.old_expires_at <= r.as_of)) || '|'
        || count(*) FILTER (WHERE a.kind = 'cancel' AND h.old_expires_at <= a.at)
    FROM app_events a JOIN history h ON h.txid = a.txid AND h.sub_id = a.sub_id});
ok($renew_in_run > 0,
	"race: renewals of due rows committed while a run was expiring them ($renew_in_run)");

# ---- the figures ----

my %events = map { split /\|/ } split /\n/, $node->safe_psql('postgres',
	'SELECT kind, count(*) FROM app_events GROUP BY kind');
my %by = map { my @f = split /\|/; ($f[0] => [ @f[ 1 .. 3 ] ]) } split /\n/,
  $node->safe_psql('postgres', q{
    SELECT CASE WHEN trigger = 'manual' THEN 'manual' ELSE 'worker' END,
           count(*), sum(expired_count), sum(skipped_locked)
    FROM subexpire_runs GROUP BY 1});
my %tx;
while ($pgbench_out =~ /SQL script \d+: \S*\/(\w+)\.sql\n.*?\n - (\d+) transactions/g)
{
	$tx{$1} = $2;
}
my ($tps)     = $pgbench_out =~ /tps = ([\d.]+) \(without initial connection time\)/;
my ($latency) = $pgbench_out =~ /latency average = ([\d.]+ ms)/;
# A transaction that pgbench counts has committed its event; one in flight
# when the time is up may have committed without being counted.
my $signups = $events{signup} // 0;
ok( defined $tx{signup} && $signups >= $tx{signup} && $signups <= $tx{signup} + $clients,
	"events: a sign-up event for each sign-up transaction ($signups events, "
	  . ($tx{signup} // '?') . ' transactions)');
$by{$_} //= [ 0, 0, 0 ] for qw(manual worker);
ok($by{worker}[1] > 0 && $by{manual}[1] > 0, 'race: both the worker and the manual runs expired rows');
my $manual_runs_during = 0;
$manual_runs_during += ($_->{out} =~ tr/.//) for @loops;
note(sprintf(
		"figures: %d rows, %d due; pgbench -c %d -j %d -T %d: tps %s, latency average %s\n"
		  . "  transactions: renew %s, cancel %s, signup %s\n"
		  . "  events: %s renewals (%s of due active rows, %s of them while a run was expiring them; "
		  . "%s of expired rows), %s cancellations (%s of due rows), %s sign-ups\n"
		  . "  expired: %s in total; worker %s in %s runs, manual %s in %s runs (%s by the looping sessions); skipped_locked %s\n"
		  . "  elapsed %s",
		$rows, $due, $clients, $jobs, $seconds, $tps // '?', $latency // '?',
		$tx{renew} // '?', $tx{cancel} // '?', $tx{signup} // '?',
		$events{renew} // 0, $renew_due, $renew_in_run, $renew_expired,
		$events{cancel} // 0, $cancel_due, $events{signup} // 0,
		$expired_total, $by{worker}[1], $by{worker}[0], $by{manual}[1], $by{manual}[0], $manual_runs_during,
		$by{worker}[2] + $by{manual}[2], elapsed()));

done_testing();
