#!/usr/bin/perl
# scripts/pgindent.pl: format C files the way PostgreSQL's pgindent does
# (`make indent` runs it on every C file of the repository).
#
#   scripts/pgindent.pl [--indent=PROGRAM] [--typedefs=FILE] [--check] FILE...
#
# Like PostgreSQL 15's src/tools/pgindent/pgindent, it runs pg_bsd_indent
# 2.1.1 (Debian package pg-bsd-indent) with pgindent's standard options and
# a typedef list, between the same kind of textual pre- and post-processing.
# What it keeps of pgindent's own processing:
#
#   - the typedef list gets "bool" added and pgindent's excluded names
#     (words that are typedefs somewhere but variables elsewhere) removed;
#   - before: // comments become /* */ comments, and "/* ---" comments are
#     protected from being reflowed;
#   - after: the protection is undone, a comment that follows another on
#     the same line gets a tab before it, and a function's return type on a
#     line of its own ends in " *" rather than tabs and "*".
#
# What it leaves out: the extern "C" and CATALOG() protections (no file
# here has either), PostgreSQL's exclude_file_patterns, --commit and the
# diff options (`git diff` shows the changes).  With --check it changes
# nothing and exits 2 if a file would change.  It writes only files whose
# text changes, and prints their names.

use strict;
use warnings;

use File::Temp qw(tempfile);
use Getopt::Long;

my $indent = $ENV{PG_BSD_INDENT} || 'pg_bsd_indent';
my $typedefs_file = 'typedefs.list';
my $check = 0;
GetOptions(
	'indent=s' => \$indent,
	'typedefs=s' => \$typedefs_file,
	'check' => \$check) or exit 1;

# pgindent's standard options (PostgreSQL 15).
my @indent_options = qw(-bad -bap -bbb -bc -bl -cli1 -cp33 -cdb -nce -d0
  -di12 -nfc1 -i4 -l79 -lp -lpl -nip -npro -sac -tpg -ts4);

my $version = `$indent --version 2>&1`;
die "pgindent.pl: cannot run $indent (Debian: apt-get install pg-bsd-indent)\n"
  if $? != 0;
die "pgindent.pl: $indent is not version 2.1.1, which PostgreSQL 15's pgindent uses: $version"
  unless $version =~ /^pg_bsd_indent 2\.1\.1\b/;

# The typedef list as pg_bsd_indent gets it.
my %excluded = map { $_ => 1 } qw(ANY FD_SET U abs allocfunc boolean date
  digit ilist interval iterator other pointer printfunc reference string
  timestamp type wrap);
open(my $list, '<', $typedefs_file)
  or die "pgindent.pl: cannot open $typedefs_file: $!\n";
my @typedefs = grep { /\S/ && !$excluded{$_} } map { s/\s+//gr } <$list>;
close($list);
my ($typedefs_fh, $typedefs_tmp) = tempfile('pgtypedefsXXXXXX', TMPDIR => 1, UNLINK => 1);
print $typedefs_fh map { "$_\n" } @typedefs, 'bool';
close($typedefs_fh);

my $would_change = 0;
foreach my $file (@ARGV)
{
	open(my $in, '<', $file) or die "pgindent.pl: cannot open $file: $!\n";
	my $original = do { local $/; <$in> };
	close($in);

	my $text = $original;

	# Before: C99 comments become block comments; comments that start with
	# a row of dashes are marked so that indent leaves them as they are.
	$text =~ s{^([ \t]*)//(.*)$}{$1/* $2 */}gm;
	$text =~ s{/\* +---}{/*---X_X}g;

	my ($fh, $tmp) = tempfile('pgindentXXXXXX', TMPDIR => 1, UNLINK => 1);
	print $fh $text;
	close($fh);
	# With an output file named, indent writes no backup file (with the
	# input alone, it would leave NAME.BAK in the current directory).
	my $indented = "$tmp.out";
	my $errors = `'$indent' @indent_options -U'$typedefs_tmp' '$tmp' '$indented' 2>&1`;
	if ($? != 0 || $errors ne '')
	{
		unlink($indented);
		print STDERR "pgindent.pl: $indent failed on $file:\n$errors";
		exit 1;
	}
	open(my $out, '<', $indented) or die "pgindent.pl: cannot read $indented: $!\n";
	$text = do { local $/; <$out> };
	close($out);
	unlink($indented);

	# After: undo the mark; a tab between two comments run together; a
	# single space before the "*" of a return type on a line of its own.
	$text =~ s{/\*---X_X}{/* ---}g;
	$text =~ s{\*/(/\*.*\*/)$}{*/\t$1}gm;
	$text =~ s{^([A-Za-z_]\S*)[ \t]+\*$}{$1 *}gm;

	next if $text eq $original;
	$would_change = 1;
	print "$file\n";
	next if $check;
	open(my $write, '>', $file) or die "pgindent.pl: cannot write $file: $!\n";
	print $write $text;
	close($write);
}

exit($check && $would_change ? 2 : 0);
