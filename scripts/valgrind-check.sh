#!/usr/bin/env bash
# scripts/valgrind-check.sh: `make valgrind-check`.
#
# Runs the pg_regress suite against a server started under valgrind
# (memcheck) in tmp_valgrind/, with this tree's build of the library loaded
# through dynamic_library_path (subexpire.control names the library without
# $libdir; nothing is installed).  Fails if a test fails or if any valgrind
# error has a frame in subexpire: in subexpire.so, or in its sources.
#
# PostgreSQL itself is not built for valgrind (USE_VALGRIND): its memory
# contexts hand out memory valgrind knows nothing about, and it writes
# uninitialised padding to files and WAL on purpose.  The errors valgrind
# reports in the server's own code, with no subexpire frame on the stack,
# are therefore counted and left in the logs, not judged; those padding
# writes are suppressed (test/valgrind.supp) because the library can be on
# their stack, far down (its worker commits, and connects to a database).
# For the same reason an overrun inside a palloc'd chunk goes unseen; what
# valgrind does see in the library is uninitialised values from the stack
# and from fresh malloc'd blocks (as the memory contexts are), invalid
# frees, and accesses outside any mapped block.
#
# The server runs with the postmaster's stderr in tmp_valgrind/postmaster.log
# and one valgrind log per process in tmp_valgrind/valgrind/<pid>.log (the
# postmaster forks its backends without exec; --trace-children=yes also
# follows any program it execs).
#
# Environment (set by the Makefile): PG_CONFIG, PG_REGRESS (pg_regress of
# PGXS), REGRESS (the pg_regress tests).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
VG=$ROOT/tmp_valgrind
PG_CONFIG=${PG_CONFIG:-pg_config}
REGRESS=${REGRESS:?REGRESS: the pg_regress tests to run}
PG_REGRESS=${PG_REGRESS:?PG_REGRESS: the path of pg_regress}
bindir=$("$PG_CONFIG" --bindir)
start=$SECONDS

if [ "$(id -u)" -eq 0 ]; then
    echo "valgrind-check: PostgreSQL refuses to run as root; run it as the owner of the tree:" >&2
    echo "  chown -R postgres: . && runuser -u postgres -- make valgrind-check" >&2
    exit 1
fi
command -v valgrind >/dev/null || { echo "valgrind-check: no valgrind (Debian: apt-get install valgrind)" >&2; exit 1; }
[ -f "$ROOT/subexpire.so" ] || { echo "valgrind-check: no $ROOT/subexpire.so: run make first" >&2; exit 1; }

rm -rf "$VG"
mkdir -p "$VG/valgrind"
# The socket in a short private directory: the tree's path may be too long
# for a socket's, and no other server can be listening there.
sockdir=$(mktemp -d /tmp/subexpire-valgrind.XXXXXX)
port=5432
pid=

cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        "$bindir/pg_ctl" -D "$VG/data" stop -m immediate >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$sockdir"
}
trap cleanup EXIT

echo "== valgrind-check: initdb in $VG/data"
"$bindir/initdb" -D "$VG/data" --no-sync -A trust >"$VG/initdb.log" 2>&1 \
    || { cat "$VG/initdb.log"; exit 1; }
{
    echo "# make valgrind-check"
    echo "listen_addresses = ''"
    echo "unix_socket_directories = '$sockdir'"
    echo "port = $port"
    echo "dynamic_library_path = '$ROOT:\$libdir'"
    echo "log_line_prefix = '%m [%p] '"
    # What the suite's temporary instances get (--temp-config).
    cat "$ROOT/test/subexpire.conf"
} >>"$VG/data/postgresql.conf"

echo "== valgrind-check: starting postgres under valgrind"
# --error-markers: each error between two lines that can be matched.
# --fullpath-after= (empty): source files with their whole path, so that a
# frame in the library names this tree's src/ even when it has line numbers
# (and so no "(in .../subexpire.so)").
valgrind --tool=memcheck --trace-children=yes --leak-check=no \
    --track-origins=yes --num-callers=40 --fullpath-after= \
    --error-markers=VALGRINDERROR-BEGIN,VALGRINDERROR-END \
    --suppressions="$ROOT/test/valgrind.supp" \
    --log-file="$VG/valgrind/%p.log" \
    "$bindir/postgres" -D "$VG/data" >"$VG/postmaster.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    if "$bindir/pg_isready" -q -h "$sockdir" -p "$port"; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "valgrind-check: the server did not start:" >&2
        tail -n 40 "$VG/postmaster.log" >&2
        exit 1
    fi
    sleep 1
done
"$bindir/pg_isready" -q -h "$sockdir" -p "$port" \
    || { echo "valgrind-check: the server is not ready after 600 s" >&2; exit 1; }

echo "== valgrind-check: pg_regress against it"
status=0
"$PG_REGRESS" --inputdir="$ROOT" --outputdir="$VG" --bindir="$bindir" \
    --host="$sockdir" --port="$port" --dbname=contrib_regression \
    $REGRESS || status=$?

echo "== valgrind-check: stopping the server"
"$bindir/pg_ctl" -D "$VG/data" stop -m fast -t 600 >/dev/null || status=1
wait "$pid" || true
pid=

# Each error is the lines between the markers.  Ours: any line of it in
# subexpire.so or in this tree's src/, in the stack of the access or in
# that of the memory's allocation or origin.
echo "== valgrind-check: reading the valgrind logs"
report=$VG/subexpire-errors.txt
: >"$report"
total=0
for f in "$VG"/valgrind/*.log; do
    [ -f "$f" ] || continue
    n=$(grep -c 'VALGRINDERROR-BEGIN' "$f" || true)
    total=$((total + n))
    awk -v lib="subexpire.so" -v src="$ROOT/src/" -v file="$f" '
        /VALGRINDERROR-BEGIN/ { block = ""; inblock = 1; ours = 0; next }
        /VALGRINDERROR-END/ {
            if (ours) printf "---- %s\n%s", file, block
            inblock = 0; next
        }
        inblock {
            block = block $0 "\n"
            if (index($0, lib) || index($0, src)) ours = 1
        }' "$f" >>"$report"
done
ours=$(grep -c '^---- ' "$report" || true)

elapsed=$((SECONDS - start))
echo "valgrind-check: $total valgrind error(s) in the server (test/valgrind.supp aside), $ours with a subexpire frame"
if [ "$ours" -ne 0 ]; then
    cat "$report"
    echo "== valgrind-check: FAILED, valgrind errors in subexpire above (${elapsed}s)"
    exit 1
fi
if [ "$status" -ne 0 ]; then
    if [ -f "$VG/regression.diffs" ]; then cat "$VG/regression.diffs"; fi
    echo "== valgrind-check: FAILED, tests failed (${elapsed}s)"
    exit "$status"
fi
echo "== valgrind-check: pg_regress passed, no valgrind error in subexpire (${elapsed}s)"
