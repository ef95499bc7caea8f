# The release metadata agree: META.json's version is the control file's
# default_version, and the install script of that version exists.
use strict;
use warnings;

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
ok(-f "$root/sql/subexpire--$default_version.sql", 'the install script of default_version exists');
is($meta->{'meta-spec'}{version}, '1.0.0', 'META.json follows PGXN meta-spec 1.0.0');
for my $key (qw(abstract maintainer license provides))
{
    ok(defined $meta->{$key}, "META.json has $key");
}

done_testing();
