#!/bin/sh
# scripts/find-typedefs.sh: print the typedef list that `make indent` gives
# pg_bsd_indent (`make typedefs` writes it to typedefs.list).
#
#   CC=gcc CPPFLAGS='-I...' scripts/find-typedefs.sh FILE.c... [FILE.h...]
#
# pg_bsd_indent formats a name differently when it is a type ("Foo *x",
# not "Foo * x"), and only knows the types it is told.  The list is:
#
#   - every typedef name in the debugging information of the C files,
#     each compiled with -g into a temporary directory: the typedefs of
#     PostgreSQL, the C library and ours that the code uses, found the way
#     PostgreSQL's src/tools/find_typedef finds its own (objdump, DWARF);
#   - every typedef the C and header files declare, used or not, read
#     from their text ("typedef ... Name;" at the end of a declaration).
#
# Names starting with "__" (the C library's internals) are left out.
set -eu

CC=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

n=0
for f in "$@"; do
    case "$f" in
        *.c)
            n=$((n + 1))
            # shellcheck disable=SC2086
            $CC ${CPPFLAGS:-} -g -O0 -w -c -o "$tmp/$n.o" "$f"
            ;;
    esac
done

{
    for o in "$tmp"/*.o; do
        [ -e "$o" ] || continue
        objdump -W "$o" | awk '
            /DW_TAG_/ { typedef = ($0 ~ /\(DW_TAG_typedef\)/) }
            typedef && $2 == "DW_AT_name" { print $NF; typedef = 0 }'
    done
    perl -0777 -ne '
        s{/\*.*?\*/}{}gs;                       # comments out
        while (/\btypedef\b((?:[^;{}]|(\{(?:[^{}]|(?2))*\}))*);/g) {
            my $decl = $1;
            if ($decl =~ /\(\s*\*\s*(\w+)\s*\)\s*\(/) { print "$1\n"; }
            elsif ($decl =~ /(\w+)\s*(?:\[[^\]]*\]\s*)*$/) { print "$1\n"; }
        }' "$@"
} | grep -v '^__' | LC_ALL=C sort -u
