# A batch of the worker locks its rows a piece at a time (1000 rows, in the
# list's page order), each piece just before it expires them, all in the
# batch's one transaction: a row is held from its piece's start to the
# batch's commit, not from the batch's start (src/expire.c).  Here one
# batch of 2500 rows is held still inside its first piece, by a trigger
# that waits on the first row it updates until the test lets it go; while
# it waits, the rows of its first piece must be held and the rows of its
# last piece must not.
use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SubexpireTest;
use Test::More;

my $rows = 2500;

my $node = PostgreSQL::Test::Cluster->new('batch_row_locks');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'subexpire'
subexpire.enabled = off
subexpire.schedule = '\@yearly'
subexpire.batch_size = $rows
autovacuum = off
# Its pieces are subtransactions of the batch's one transaction: its rows
# share their commit's time.
track_commit_timestamp = on
});
$node->start;

create_reference_schema($node, 'postgres');
$node->safe_psql('postgres', q{
    CREATE EXTENSION subexpire;
    CREATE TABLE hold_on (id uuid PRIMARY KEY);
    CREATE FUNCTION wait_while_held() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        WHILE EXISTS (SELECT FROM hold_on WHERE id = OLD.id) LOOP
            PERFORM pg_sleep(0.05);
        END LOOP;
        RETURN NEW;
    END $$;
    CREATE TRIGGER wait_while_held BEFORE UPDATE ON subscriptions
        FOR EACH ROW EXECUTE FUNCTION wait_while_held();
});
add_subscriptions($node, 'postgres', $rows, "'2000-01-01 00:00+00'");

# In the order the run lists them: the first row, one further into the
# first piece, and the last row, in the last piece.
my ($first, $in_first_piece, $last) = map {
    $node->safe_psql('postgres', "SELECT id FROM subscriptions ORDER BY ctid $_ LIMIT 1")
} ('', 'OFFSET 500', 'DESC');
$node->safe_psql('postgres', "INSERT INTO hold_on VALUES ('$first')");

start_one_catch_up_run($node);
ok( $node->poll_query_until('postgres', q{
        SELECT EXISTS (SELECT FROM pg_stat_activity
                       WHERE backend_type = 'subexpire run' AND wait_event = 'PgSleep')}),
    'the batch is held on its first row');

# Whether another transaction can lock the row at once, released at once.
sub row_is_free
{
    my ($id) = @_;
    my ($ret, $out, $err) = $node->psql('postgres', qq{
        BEGIN;
        SELECT id FROM subscriptions WHERE id = '$id' FOR NO KEY UPDATE NOWAIT;
        ROLLBACK;});
    return 1 if $ret == 0;
    like($err, qr/could not obtain lock on row/, 'a held row is refused for its lock, not for anything else');
    return 0;
}
ok(!row_is_free($in_first_piece), 'a row of the piece under way is held');
ok(row_is_free($last), 'a row of the batch\'s last piece is not held yet');

$node->safe_psql('postgres', 'DELETE FROM hold_on');
ok( $node->poll_query_until('postgres', q{
        SELECT status FROM subexpire_runs WHERE "trigger" = 'catch-up'}, 'succeeded'),
    'the run ended');
reload_with($node, 'subexpire.enabled', 'off');

is( $node->safe_psql('postgres', q{
        SELECT status || ' ' || expired_count FROM subexpire_runs
        WHERE "trigger" = 'catch-up'}),
    "succeeded $rows", 'the run expired every due row');
is( $node->safe_psql('postgres', q{
        SELECT count(*) || ' rows, ' || count(DISTINCT pg_xact_commit_timestamp(xmin)) || ' transaction'
        FROM subscriptions WHERE status = 'expired'}),
    "$rows rows, 1 transaction", 'its pieces were one transaction');

done_testing();
