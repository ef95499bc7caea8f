#!/usr/bin/perl
# check-includes.pl: the module graph of src/, from its #include lines.
#
# Each module is a .c file with the header of the same name (a module may
# have no header: nothing includes it).  "X uses Y" when X.c or X.h
# includes Y.h.  Fails (exit 1) when:
#   - the graph has a cycle (arrows must point one way);
#   - a header declares a function that its own .c does not define (a
#     header declares only what its module exports);
#   - a .c defines a non-static function that no header declares and that
#     is not an SQL or background-worker entry point or _PG_init.
# With --list, prints "X uses Y, Z" lines, lowest modules first.
#
# Usage: scripts/check-includes.pl [--list] [srcdir]

use strict;
use warnings;

my $list = 0;
if (@ARGV && $ARGV[0] eq '--list') { $list = 1; shift @ARGV; }
my $dir = shift @ARGV // 'src';

opendir(my $dh, $dir) or die "check-includes: cannot read $dir: $!\n";
my @files = sort grep { /\.[ch]$/ } readdir($dh);
closedir($dh);

my %modules;
$modules{ ($_ =~ s/\.[ch]$//r) } = 1 for @files;

sub slurp
{
	my ($path) = @_;
	open(my $fh, '<', $path) or return '';
	local $/;
	my $text = <$fh>;
	close($fh);
	return $text;
}

# The edges.
my %uses;
for my $file (@files)
{
	my $module = $file =~ s/\.[ch]$//r;
	for my $line (split /\n/, slurp("$dir/$file"))
	{
		next unless $line =~ /^\s*#\s*include\s+"([^"]+)\.h"/;
		my $used = $1;
		next if $used eq $module || !$modules{$used};
		$uses{$module}{$used} = 1;
	}
}

my $failed = 0;

# Cycles: depth-first search; a grey node met again closes a cycle.
my %state;    # 1: on the path, 2: done
my @order;
sub visit
{
	my ($module, @path) = @_;
	return if ($state{$module} // 0) == 2;
	if (($state{$module} // 0) == 1)
	{
		my @cycle = (@path[ (grep { $path[$_] eq $module } 0 .. $#path)[0] .. $#path ], $module);
		print STDERR "check-includes: cycle: ", join(' -> ', @cycle), "\n";
		$failed = 1;
		return;
	}
	$state{$module} = 1;
	visit($_, @path, $module) for sort keys %{ $uses{$module} // {} };
	$state{$module} = 2;
	push @order, $module;
}
visit($_) for sort keys %modules;

# Each header declares only what its own .c defines.
for my $module (sort keys %modules)
{
	my $header = slurp("$dir/$module.h");
	my $source = slurp("$dir/$module.c");
	next if $header eq '' || $source eq '';
	while ($header =~ /^extern\b[^;(]*?\b(\w+)\s*\(/mg)
	{
		my $name = $1;
		next if $source =~ /^\Q$name\E\s*\(/m;
		print STDERR "check-includes: $module.h declares $name(), which $module.c does not define\n";
		$failed = 1;
	}
}

# Each exported function is declared by its module's header.
for my $module (sort keys %modules)
{
	my $source = slurp("$dir/$module.c");
	my $header = slurp("$dir/$module.h");
	next if $source eq '';
	my %entry;
	$entry{$1} = 1 while $source =~ /PG_FUNCTION_INFO_V1\((\w+)\)/g;
	while ($source =~ /^(?!static\b)(?:const\s+)?[A-Za-z_][\w *]*\n(\w+)\(/mg)
	{
		my $name = $1;
		next if $entry{$name} || $name eq '_PG_init';
		next if $header =~ /\b\Q$name\E\s*\(/;
		print STDERR "check-includes: $module.c exports $name(), which $module.h does not declare\n";
		$failed = 1;
	}
}

if ($list)
{
	for my $module (@order)
	{
		my @used = sort keys %{ $uses{$module} // {} };
		print "$module uses ", (@used ? join(', ', @used) : 'nothing'), "\n";
	}
}

exit $failed;
