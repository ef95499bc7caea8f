# The monitoring kit (monitoring/): subexpire_metrics() is valid Prometheus
# text that promtool's linter accepts; the alert rules load and their unit
# tests pass; and the real prometheus-postgres-exporter, connected as a role
# that is only a member of pg_monitor and given monitoring/queries.yaml,
# exports the same series with the same values as subexpire_metrics().
#
# promtool and the exporter are required: CI installs them (see
# scripts/common.sh), so a missing one fails this test rather than skips it.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use File::Spec;
use HTTP::Tiny;
use IPC::Run;
use List::Util qw(max);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;
use Time::HiRes qw(usleep);

my $monitoring = File::Spec->rel2abs("$FindBin::Bin/../../monitoring");

# The histogram's bucket bounds, as subexpire_metrics() prints them.
my @bounds = qw(0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 30 60 120 300 600 +Inf);

# Every metric family of the kit, with its type.
my %families = (
    subscription_expiry_total                          => 'counter',
    subscription_expiry_duration_seconds               => 'histogram',
    subscription_expiry_runs_total                     => 'counter',
    subscription_expiry_last_success_timestamp_seconds => 'gauge',
    subscription_expiry_last_expiry_timestamp_seconds  => 'gauge',
    subscription_expiry_last_run_expired               => 'gauge',
    subscription_expiry_last_run_longest_batch_seconds => 'gauge',
    subscription_expiry_due                            => 'gauge',
    subscription_expiry_next_run_timestamp_seconds     => 'gauge',
    subscription_expiry_events_pending                 => 'gauge',
    subscription_expiry_events_oldest_age_seconds      => 'gauge',
    subscription_expiry_failed_rows                    => 'gauge',
);

# The first of @names found on PATH, or undef.
sub find_program
{
    my @names = @_;
    for my $name (@names)
    {
        for my $dir (File::Spec->path)
        {
            my $path = "$dir/$name";
            return $path if -f $path && -x $path;
        }
    }
    return undef;
}

my $promtool = find_program('promtool');
my $exporter = find_program('prometheus-postgres-exporter', 'postgres_exporter');
ok(defined $promtool, 'promtool is installed (Debian package prometheus)');
ok(defined $exporter,
    'the exporter is installed (Debian package prometheus-postgres-exporter)');
if (!defined $promtool || !defined $exporter)
{
    done_testing();
    exit 1;
}

# Run a command with $stdin, return (success, stdout, stderr).
sub run_tool
{
    my ($cmd, $stdin) = @_;
    my ($out, $err) = ('', '');
    my $ok = IPC::Run::run($cmd, '<', \($stdin // ''), '>', \$out, '2>', \$err);
    note(join(' ', @$cmd) . ":\n$out$err");
    return ($ok, $out, $err);
}

# Parse Prometheus text: the samples of the subscription_expiry_* families,
# keyed by name{labels} (labels sorted, the exporter's "server" label left
# out), and the families' types.
sub parse_metrics
{
    my ($text) = @_;
    my (%samples, %types);
    for my $line (split /\n/, $text)
    {
        next if $line !~ /subscription_expiry_/;
        if ($line =~ /^# TYPE (\S+) (\S+)$/)
        {
            $types{$1} = $2;
            next;
        }
        next if $line =~ /^#/;
        $line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/
          or die "cannot parse metrics line: $line";
        my ($name, $labels, $value) = ($1, $2 // '', $3);
        my %l = $labels =~ /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
        delete $l{server};
        my $key = $name;
        $key .= '{' . join(',', map { qq{$_="$l{$_}"} } sort keys %l) . '}' if %l;
        $samples{$key} = $value;
    }
    return (\%samples, \%types);
}

my $node = PostgreSQL::Test::Cluster->new('monitoring');
$node->init;
# The worker runs, so that next_run_at is set, but its schedule (January
# 1st) and no catch-up keep it from running during the test.
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'subexpire'
timezone = 'UTC'
subexpire.schedule = '0 0 1 1 *'
subexpire.catch_up = off
});
$node->start;

create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', q{
    CREATE EXTENSION subexpire;
    CREATE ROLE subexpire_monitor LOGIN IN ROLE pg_monitor;
});
is( $node->safe_psql('postgres', q{
        SELECT r.rolsuper, array_agg(g.rolname)
        FROM pg_roles r
        JOIN pg_auth_members m ON m.member = r.oid
        JOIN pg_roles g ON g.oid = m.roleid
        WHERE r.rolname = 'subexpire_monitor'
        GROUP BY r.rolsuper}),
    'f|{pg_monitor}',
    'the monitoring role is only a member of pg_monitor');

# Run 1 expires 25 rows; run 2 fails (more due than max_expired_per_run);
# run 3, with an earlier cutoff, expires 4 and leaves 3 due.
add_subscriptions($node, 'postgres', 25, "now() - interval '1 day'");
add_subscriptions($node, 'postgres', 5,  "now() + interval '30 days'");
is($node->safe_psql('postgres', 'SELECT expired_count FROM expire_subscriptions()'),
    '25', 'run 1 expires 25 rows');
add_subscriptions($node, 'postgres', 4, "now() - interval '2 days'");
add_subscriptions($node, 'postgres', 3, "now() - interval '1 hour'");
my ($ret, $stdout, $stderr) = $node->psql('postgres', q{
    SET subexpire.max_expired_per_run = 2;
    SELECT expired_count FROM expire_subscriptions();});
isnt($ret, 0, 'run 2 fails');
like($stderr, qr/max_expired_per_run/, 'run 2 fails on subexpire.max_expired_per_run');
is( $node->safe_psql('postgres',
        "SELECT expired_count FROM expire_subscriptions(now() - interval '1 day')"),
    '4', 'run 3 expires 4 rows');

# subexpire_metrics() and the view, read as the monitoring role.
sub as_monitor
{
    my ($sql) = @_;
    return $node->safe_psql('postgres', $sql,
        extra_params => [ '-U', 'subexpire_monitor' ]);
}

# The figures of subexpire_stats, timestamps as Unix seconds (0: none).
sub view_figures
{
    my ($success, $expiry, $next, $last_run) = split /\|/, as_monitor(q{
        SELECT coalesce(extract(epoch FROM last_success_at), 0),
               coalesce(extract(epoch FROM last_expiry_at), 0),
               coalesce(extract(epoch FROM next_run_at), 0),
               (SELECT extract(epoch FROM max(started_at)) FROM subexpire_runs
                WHERE status = 'succeeded')
        FROM subexpire_stats});
    return {
        success  => $success,
        expiry   => $expiry,
        next     => $next,
        last_run => $last_run
    };
}

# (a) subexpire_metrics(): promtool's linter accepts it, and it has every
# family with its type and the buckets in order.
sub check_metrics_function
{
    my ($state, @absent) = @_;
    my $text = as_monitor('SELECT subexpire_metrics()') . "\n";
    my %want_families = %families;
    delete @want_families{@absent};
    my ($ok, $out, $err) = run_tool([ $promtool, 'check', 'metrics' ], $text);
    ok($ok, "$state: promtool check metrics accepts subexpire_metrics()");
    is($out . $err, '', "$state: promtool's linter has no complaint");
    my ($samples, $types) = parse_metrics($text);
    is_deeply($types, \%want_families, "$state: every family, with its type");
    my @les = $text =~ /^subscription_expiry_duration_seconds_bucket\{le="([^"]*)"\} /mg;
    is_deeply(\@les, \@bounds, "$state: the histogram's buckets, in order");
    return $samples;
}

# (c) The exporter, on a free port, as the monitoring role over the socket.
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $exporter_log = "$PostgreSQL::Test::Utils::log_path/009_exporter.log";
my $exporter_h;
{
    local $ENV{DATA_SOURCE_NAME} = sprintf(
        'host=%s port=%d user=subexpire_monitor dbname=postgres sslmode=disable',
        $node->host, $node->port);
    $exporter_h = IPC::Run::start(
        [
            $exporter,
            "--web.listen-address=127.0.0.1:$port",
            "--extend.query-path=$monitoring/queries.yaml",
            '--disable-default-metrics',
            '--disable-settings-metrics',
            '--no-collector.database',
            '--no-collector.bgwriter',
            '--no-auto-discover-databases',
        ],
        '<', '/dev/null', '>', $exporter_log, '2>&1');
}
END { eval { $exporter_h->kill_kill(grace => 5) if $exporter_h }; }

my $http = HTTP::Tiny->new(timeout => 10);

# One scrape of the exporter's /metrics, waiting for it to listen.
sub scrape
{
    my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
    while (time() < $deadline)
    {
        my $res = $http->get("http://127.0.0.1:$port/metrics");
        return $res->{content} if $res->{success};
        die "the exporter exited; see $exporter_log" unless $exporter_h->pumpable;
        usleep(100_000);
    }
    die "the exporter did not answer on 127.0.0.1:$port; see $exporter_log";
}

# The exporter's figures agree with subexpire_metrics()'s, series by series.
sub check_exporter
{
    my ($state, $function) = @_;
    my $text = scrape();
    like($text, qr/^pg_up 1$/m, "$state: the exporter reaches the server");
    like($text, qr/^pg_exporter_last_scrape_error 0$/m,
        "$state: its queries ran without error");
    like($text, qr/^pg_exporter_user_queries_load_error\{.*\} 0$/m,
        "$state: it loaded monitoring/queries.yaml");
    my $own = join("\n", grep { /subscription_expiry_/ } split /\n/, $text) . "\n";
    my ($ok, $out, $err) = run_tool([ $promtool, 'check', 'metrics' ], $own);
    ok($ok && $out . $err eq '', "$state: promtool's linter accepts the exporter's series");
    my ($samples, $types) = parse_metrics($text);
    is_deeply($types, \%families, "$state: the exporter has every family, with its type");
    is_deeply([ sort keys %$samples ], [ sort keys %$function ],
        "$state: the exporter has the series of subexpire_metrics()");
    for my $key (sort keys %$function)
    {
        my ($want, $got) = ($function->{$key}, $samples->{$key} // 'missing');
        # Both print timestamps to the millisecond, rounded apart; an age
        # grows between the two readings.
        my $tolerance =
            $key =~ /timestamp/ ? 0.0011
          : $key =~ /age_seconds/ ? 30
          : 1e-9 * max(1, abs($want));
        ok( $got ne 'missing' && abs($got - $want) <= $tolerance,
            "$state: $key is $want in both (exporter: $got)");
    }
    return $samples;
}

# State 1, after runs 1 to 3.
my $m = check_metrics_function('after run 3');
my $v = view_figures();
my %want = (
    'subscription_expiry_total'                        => 29,
    'subscription_expiry_runs_total{status="succeeded"}' => 2,
    'subscription_expiry_runs_total{status="failed"}'  => 1,
    'subscription_expiry_last_run_expired'             => 4,
    'subscription_expiry_due'                          => 3,
    'subscription_expiry_duration_seconds_count'       => 3,
    'subscription_expiry_duration_seconds_bucket{le="+Inf"}' => 3,
);
is($m->{$_}, $want{$_}, "after run 3: subexpire_metrics() has $_ $want{$_}")
  for sort keys %want;
is($node->safe_psql('postgres', "SELECT count(*) FROM subscriptions WHERE status = 'expired'"),
    $m->{subscription_expiry_total}, 'subscription_expiry_total is the rows expired');
ok($m->{subscription_expiry_duration_seconds_sum} > 0, 'the durations add up to more than 0');
cmp_ok($m->{subscription_expiry_last_run_longest_batch_seconds}, '==', 0,
    'the last run was manual: no longest batch, 0');
ok( abs($m->{subscription_expiry_last_success_timestamp_seconds} - $v->{success}) <= 0.0011
      && abs($v->{success} - $v->{last_run}) < 1e-6,
    'last success: the start of run 3, as in subexpire_stats and subexpire_runs');
ok( abs($m->{subscription_expiry_last_expiry_timestamp_seconds} - $v->{expiry}) <= 0.0011
      && abs($v->{expiry} - $v->{last_run}) < 1e-6,
    'last expiry: the start of run 3 too');
ok(abs($m->{subscription_expiry_next_run_timestamp_seconds} - $v->{next}) <= 0.0011
      && $v->{next} > time(),
    'next run: the worker\'s next time, in the future');

my $e = check_exporter('after run 3', $m);
is($e->{$_}, $want{$_}, "after run 3: the exporter has $_ $want{$_}") for sort keys %want;

# State 2: run 4 succeeds and expires nothing, so the last expiry is older
# than the last success.
is( $node->safe_psql('postgres',
        "SELECT expired_count FROM expire_subscriptions(now() - interval '1 day')"),
    '0', 'run 4 expires nothing');
$m = check_metrics_function('after run 4');
$e = check_exporter('after run 4', $m);
is($e->{'subscription_expiry_runs_total{status="succeeded"}'}, 3,
    'after run 4: 3 runs succeeded');
is($e->{subscription_expiry_last_run_expired}, 0, 'after run 4: the last run expired 0');
ok( $e->{subscription_expiry_last_expiry_timestamp_seconds}
      < $e->{subscription_expiry_last_success_timestamp_seconds},
    'after run 4: the last expiry is older than the last success');

# State 3: two events wait in the outbox, the oldest since two hours.
$node->safe_psql('postgres', q{
    INSERT INTO subexpire_events (run_id, rule_name, target_table, row_key,
                                  from_status, to_status, expires_at, expired_at)
    VALUES (1, 'default', 'public.subscriptions', '{"id": 1}', 'active', 'expired',
            now() - interval '3 hours', now() - interval '2 hours'),
           (1, 'default', 'public.subscriptions', '{"id": 2}', 'active', 'expired',
            now() - interval '3 hours', now() - interval '1 hour');
});
$m = check_metrics_function('events waiting');
$e = check_exporter('events waiting', $m);
is($e->{subscription_expiry_events_pending}, 2, 'events waiting: 2 pending');
cmp_ok(abs($e->{subscription_expiry_events_oldest_age_seconds} - 7200), '<', 60,
    'events waiting: the oldest has waited two hours');
$node->safe_psql('postgres', 'DELETE FROM subexpire_events');

# State 4: with the target table gone the due rows cannot be counted;
# subexpire_metrics() leaves the gauge out, the exporter says NaN, and
# everything else still works.
$node->safe_psql('postgres', 'ALTER TABLE subscriptions RENAME TO subscriptions_away');
$m = check_metrics_function('target missing', 'subscription_expiry_due');
ok(!exists $m->{subscription_expiry_due}, 'target missing: subexpire_metrics() has no due gauge')
  or diag explain $m;
{
    my $text = scrape();
    like($text, qr/^pg_exporter_last_scrape_error 0$/m,
        'target missing: the exporter\'s queries still run');
    like($text, qr/^subscription_expiry_due\{server="[^"]*"\} NaN$/m,
        'target missing: the exporter says NaN for the due gauge');
    like($text, qr/^subscription_expiry_total\{server="[^"]*"\} 29$/m,
        'target missing: the exporter still has the other figures');
}
$node->safe_psql('postgres', 'ALTER TABLE subscriptions_away RENAME TO subscriptions');

# State 5: a run leaves a due row whose update fails; the gauge says how
# many, until a run expires it.
is($e->{subscription_expiry_failed_rows}, 0, 'before a row fails: 0 failed rows');
$node->safe_psql('postgres', q{
    UPDATE subscriptions SET status = 'active', expires_at = now() - interval '1 hour'
    WHERE id IN (SELECT id FROM subscriptions ORDER BY id LIMIT 2);
    CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.id = (SELECT id FROM subscriptions ORDER BY id LIMIT 1) THEN
            RAISE EXCEPTION 'billing sync failed';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER refuse_one BEFORE UPDATE ON subscriptions
        FOR EACH ROW EXECUTE FUNCTION refuse_one();
});
my $due = $node->safe_psql('postgres', 'SELECT due_now FROM subexpire_stats');
is( $node->safe_psql('postgres',
        'SELECT expired_count FROM expire_subscriptions()'),
    $due - 1, "a run expires every due row but one ($due due)");
$m = check_metrics_function('a row failed');
$e = check_exporter('a row failed', $m);
is($e->{subscription_expiry_failed_rows}, 1, 'a row failed: 1 failed row');
$node->safe_psql('postgres', q{
    DROP TRIGGER refuse_one ON subscriptions;
    DROP FUNCTION refuse_one();
});
is( $node->safe_psql('postgres',
        'SELECT expired_count FROM expire_subscriptions()'),
    '1', 'the next run expires it');
$m = check_metrics_function('the row expired');
$e = check_exporter('the row expired', $m);
is($e->{subscription_expiry_failed_rows}, 0, 'the row expired: 0 failed rows');

$exporter_h->kill_kill(grace => 5);
$exporter_h = undef;

# (b) The alert rules load, and their unit tests pass.
my ($ok, $out, $err) = run_tool([ $promtool, 'check', 'rules', "$monitoring/alerts.yml" ]);
ok($ok, 'promtool check rules accepts monitoring/alerts.yml');
unlike($out . $err, qr/FAILED|lint|duplicate/i, 'with no complaint');
($ok, $out, $err) = run_tool([ $promtool, 'test', 'rules', "$monitoring/alerts_test.yml" ]);
ok($ok, 'promtool test rules: monitoring/alerts_test.yml passes');
like($out, qr/SUCCESS/, 'promtool reports SUCCESS');

# Every alert exercised by a test, and every metric an alert reads exists.
my $rules = slurp_file("$monitoring/alerts.yml");
my $tests = slurp_file("$monitoring/alerts_test.yml");
my %alerts = map { $_ => 1 } $rules =~ /^\s*- alert: (\w+)/mg;
is_deeply([ sort keys %alerts ],
    [ sort qw(SubscriptionExpiryFailed SubscriptionExpiryNotRun SubscriptionExpiryNoExpiries
          SubscriptionExpiryExcessive SubscriptionExpiryLongLocks SubscriptionExpiryBacklog
          SubscriptionExpiryEventBacklog SubscriptionExpiryFailedRows) ],
    'alerts.yml has the eight alerts');
for my $alert (sort keys %alerts)
{
    like($tests, qr/alertname: $alert\n\s+exp_alerts: \[\]/,
        "$alert is tested not firing");
    like($tests, qr/alertname: $alert\n\s+exp_alerts:\n\s+- exp_labels:/,
        "$alert is tested firing");
}
my %exported = map { s/\{.*//r => 1 } keys %$e;
my %used = map { $_ => 1 } $rules =~ /\b(subscription_expiry_\w+)/g;
ok(exists $exported{$_}, "the alerts read $_, which is exported") for sort keys %used;

done_testing();
