# The release metadata agree: META.json's version is the control file's
# default_version, which the scripts in sql/ can install (an install
# script, then update scripts), and which the library is made for.
use strict;
use warnings;

use File::Basename qw(basename);
use FindBin;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

my $root = "$FindBin::Bin/../..";
my $meta = decode_json(slurp_file("$root/META.json"));
my ($default_version) =
  slurp_file("$root/subexpire.control") =~ /^default_version\s*=\s*'([^']+)'/m;

ok($default_version, 'the control file names a default_version');
is($meta->{name}, 'subexpire', 'META.json names the extension');
is($meta->{version}, "$default_version.0", 'META.json version is default_version (as major.minor.patch)');
is($meta->{provides}{subexpire}{version}, $meta->{version}, 'provides has the same version');
ok(-f "$root/$meta->{provides}{subexpire}{file}", 'the file that provides names exists');

# The scripts: subexpire--V.sql installs V, subexpire--A--B.sql updates A
# to B.  CREATE EXTENSION installs default_version through a chain of them.
my (%install, %update);
for my $file (glob("$root/sql/subexpire--*.sql"))
{
    my @parts = split /--/, (basename($file) =~ s/^subexpire--(.*)\.sql$/$1/r);
    my $script = slurp_file($file);
    if (@parts == 1)
    {
        $install{ $parts[0] } = 1;
        like($script, qr/^\\echo Use "CREATE EXTENSION subexpire" to load this file\. \\quit$/m,
            basename($file) . ' refuses to be run by psql');
    }
    elsif (@parts == 2)
    {
        push @{ $update{ $parts[0] } }, $parts[1];
        like($script, qr/^\\echo Use "ALTER EXTENSION subexpire UPDATE TO '\Q$parts[1]\E'" to load this file\. \\quit$/m,
            basename($file) . ' refuses to be run by psql');
    }
    else
    {
        fail(basename($file) . ' is neither an install nor an update script');
    }
}
ok(%install, 'there is an install script');
my %reachable = %install;
my @todo      = keys %install;
while (my $from = shift @todo)
{
    push @todo, grep { !$reachable{$_}++ } @{ $update{$from} || [] };
}
ok($reachable{$default_version},
    "default_version $default_version is installed by an install script and update scripts");

# The library knows the version of the SQL objects it is made for.
my ($library_version) =
  slurp_file("$root/src/extension.h") =~ /^#define SUBEXPIRE_SQL_VERSION_NAME "([^"]+)"/m;
is($library_version, $default_version, 'src/extension.h: SUBEXPIRE_SQL_VERSION_NAME is default_version');
is($meta->{'meta-spec'}{version}, '1.0.0', 'META.json follows PGXN meta-spec 1.0.0');
for my $key (qw(abstract maintainer license provides))
{
    ok(defined $meta->{$key}, "META.json has $key");
}

done_testing();
