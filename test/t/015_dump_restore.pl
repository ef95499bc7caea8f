# pg_dump of a database that uses subexpire, restored with pg_restore into
# a fresh cluster, brings back the extension, the run history (and the
# position of its run_id sequence), the rules and their records, the
# pending events (and the position of their event_id sequence), and the
# database-level settings.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $conf = q{
shared_preload_libraries = 'subexpire'
subexpire.enabled = off
};

my $old = PostgreSQL::Test::Cluster->new('old');
$old->init;
$old->append_conf('postgresql.conf', $conf);
$old->start;
$old->safe_psql('postgres', 'CREATE DATABASE shop');
create_reference_schema($old, 'shop');
add_subscriptions($old, 'shop', 7, "now() - interval '1 day'");
$old->safe_psql('shop', q{
    CREATE EXTENSION subexpire;
    SELECT expire_subscriptions();
    SELECT expire_subscriptions();
    ALTER DATABASE shop SET subexpire.grace_period = '2h';
    ALTER DATABASE shop SET subexpire.alert_max_expired = 500;
    INSERT INTO subexpire_rules (rule_name, target_table, set_columns, run_order, emit_events)
    VALUES ('period-end', 'public.subscriptions', '{"plan": "free"}', 5, true);
});
# Three more due rows, expired under the rule: three events, of which a
# consumer takes the first.
add_subscriptions($old, 'shop', 3, "now() - interval '1 day'");
$old->safe_psql('shop', q{
    SELECT expire_subscriptions();
    SELECT subexpire_take_events(1);
});
my $rules_query = q{
    SELECT string_agg(rule_name || ':' || target_table || ':' || set_columns::text || ':' || run_order
                      || ':' || emit_events, ',' ORDER BY rule_name) FROM subexpire_rules};
my $rules = $old->safe_psql('shop', $rules_query);
is($rules, 'period-end:public.subscriptions:{"plan": "free"}:5:true', 'the database has a rule');
my $rule_runs_query = q{
    SELECT string_agg(run_id || ':' || rule_name || ':' || expired_count, ',' ORDER BY run_id)
    FROM subexpire_run_rules};
my $rule_runs = $old->safe_psql('shop', $rule_runs_query);
is($rule_runs, '1:default:7,2:default:0,3:period-end:3',
    'and the records of the rules of its runs: the settings\' rule, then the rule');
my $events_query = q{
    SELECT string_agg(concat_ws(':', event_id, run_id, rule_name, target_table, row_key,
                                from_status, to_status, expires_at, expired_at), ',' ORDER BY event_id)
    FROM subexpire_events};
my $events = $old->safe_psql('shop', $events_query);
like($events, qr/^2:3:period-end:public\.subscriptions:\{"id": "[0-9a-f-]{36}"\}:active:expired:[^,]+,3:[^,]+$/,
    'and two pending events, the first of the three taken');
my $history_query =
  "SELECT string_agg(run_id || ':' || trigger || ':' || status || ':' || expired_count || ':' || as_of, ',' ORDER BY run_id) FROM subexpire_runs";
my $history = $old->safe_psql('shop', $history_query);
my $settings_query = q{
    SELECT string_agg(s, ',' ORDER BY s) FROM pg_db_role_setting d, unnest(d.setconfig) s
    WHERE d.setdatabase = (SELECT oid FROM pg_database WHERE datname = 'shop')};
my $settings = $old->safe_psql('postgres', $settings_query);
is($settings, 'subexpire.alert_max_expired=500,subexpire.grace_period=2h',
    'the database has its settings');

my $dump = $old->basedir . '/shop.dump';
command_ok([ 'pg_dump', '-Fc', '--create', '-f', $dump, '-d', $old->connstr('shop') ],
    'pg_dump');

my $new = PostgreSQL::Test::Cluster->new('new');
$new->init;
$new->append_conf('postgresql.conf', $conf);
$new->start;
command_ok([ 'pg_restore', '--create', '-d', $new->connstr('postgres'), $dump ],
    'pg_restore into a fresh cluster');

my ($default_version) =
  slurp_file("$FindBin::Bin/../../subexpire.control") =~ /^default_version\s*=\s*'([^']+)'/m;
is($new->safe_psql('shop', "SELECT extversion FROM pg_extension WHERE extname = 'subexpire'"),
    $default_version, 'the extension is back');
is($new->safe_psql('shop', $history_query), $history, 'the run history is back');
is($new->safe_psql('shop', $rules_query), $rules, 'the rules are back');
is($new->safe_psql('shop', $rule_runs_query), $rule_runs, "and the rules' records");
is($new->safe_psql('shop', $events_query), $events, 'the pending events are back');
is( $new->safe_psql('shop', q{
        SELECT pg_sequence_last_value(pg_get_serial_sequence('subexpire_events', 'event_id'))}),
    '3', 'and the position of their event_id sequence');
is($new->safe_psql('postgres', $settings_query), $settings, 'the database-level settings are back');
is($new->safe_psql('shop', 'SHOW subexpire.grace_period'), '2h', 'and in force');

# The restored database keeps working, and run ids go on from where they were.
$new->safe_psql('shop', "UPDATE subscriptions SET status = 'active', expires_at = now() - interval '1 day' WHERE status = 'expired'");
is($new->safe_psql('shop', 'SELECT expired_count FROM expire_subscriptions()'),
    '10', 'a run after the restore expires the due rows');
is($new->safe_psql('shop', "SELECT count(*) FROM subscriptions WHERE status = 'expired' AND plan = 'free'"),
    '10', 'under the restored rule');
is($new->safe_psql('shop', 'SELECT max(run_id) FROM subexpire_runs'),
    '4', 'with the next run_id');
is( $new->safe_psql('shop', q{
        SELECT min(event_id) || ':' || max(event_id) || ':' || count(*) FROM subexpire_events WHERE run_id = 4}),
    '4:13:10', 'its events go on from the event_id where they were');
is( $new->safe_psql('shop', q{
        SELECT string_agg(event_id::text, ',' ORDER BY event_id) FROM subexpire_take_events(3)}),
    '2,3,4', 'a consumer takes the restored events first');

done_testing();
