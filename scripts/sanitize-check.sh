#!/usr/bin/env bash
# scripts/sanitize-check.sh: `make sanitize-check`.
#
# Builds the library with AddressSanitizer and UndefinedBehaviorSanitizer in
# tmp_sanitize/, a copy of the tree, and runs every suite of `make
# installcheck` there (pg_regress, isolation, TAP) with the sanitizer
# runtimes preloaded into the processes the suites start, the temporary
# servers included.  Fails if a test fails or if a sanitizer reported
# anything, and prints the reports.
#
# Nothing is installed.  subexpire.control names the library without
# $libdir, so every temporary server loads the build whose directory comes
# first in dynamic_library_path: pg_regress and pg_isolation_regress get it
# with --temp-config (EXTRA_REGRESS_OPTS), the TAP clusters through
# TEMP_CONFIG, which PostgreSQL::Test::Cluster appends to every
# postgresql.conf.  The control file and the SQL script are the installed
# ones, as in any installcheck: `make install` the normal build first.
# The first pg_regress test, test/sanitize/sql/sanitize_loaded.sql, fails
# unless the server has the sanitized build and the runtimes mapped.
#
# The copy keeps this tree's test outputs (results/, output_iso/,
# tmp_check/) free for a `make installcheck` running in it at the same time.
#
# What the sanitizers can see: the library's own stack and global arrays,
# memory it gets from malloc(), and undefined behaviour in its code.  palloc'd
# memory is not poisoned (the server is not built with ASan), so an overrun
# inside a memory context is not seen; valgrind-check does not see it either.
#
# Environment (set by the Makefile): PG_CONFIG, CC (the compiler PGXS uses),
# MAKE, REGRESS (the pg_regress tests), EXTRA_REGRESS_OPTS.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
SAN=$ROOT/tmp_sanitize
PG_CONFIG=${PG_CONFIG:-pg_config}
CC=${CC:-gcc}
MAKE=${MAKE:-make}
REGRESS=${REGRESS:-}
start=$SECONDS

if [ "$(id -u)" -eq 0 ]; then
    echo "sanitize-check: PostgreSQL refuses to run as root; run it as the owner of the tree:" >&2
    echo "  chown -R postgres: . && runuser -u postgres -- make sanitize-check" >&2
    exit 1
fi

# The runtimes that match the compiler; -print-file-name prints the bare
# name back when it has no such file.
asan_rt=$("$CC" -print-file-name=libasan.so)
ubsan_rt=$("$CC" -print-file-name=libubsan.so)
for rt in "$asan_rt" "$ubsan_rt"; do
    if [ ! -e "$rt" ]; then
        echo "sanitize-check: $CC has no $rt (Debian: gcc brings libasan and libubsan)" >&2
        exit 1
    fi
done

echo "== sanitize-check: copying the tree to $SAN"
rm -rf "$SAN"
mkdir -p "$SAN/sanitizer"
# Everything but version control, build products and test outputs.
tar -C "$ROOT" \
    --exclude=./.git --exclude='./tmp_*' --exclude=./results \
    --exclude=./output_iso --exclude=./log --exclude=./regression.diffs \
    --exclude=./regression.out --exclude=./test/bench/out \
    --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
    -cf - . | tar -C "$SAN" -xf -

echo "== sanitize-check: building with -fsanitize=address,undefined"
# with_llvm=no: no JIT bitcode, which would be the unsanitized code anyway.
"$MAKE" -s -C "$SAN" PG_CONFIG="$PG_CONFIG" with_llvm=no \
    PG_CFLAGS='-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g' \
    PG_LDFLAGS='-fsanitize=address,undefined'
# What makes the runtimes work in PostgreSQL's programs: see the file.
"$CC" -shared -fPIC -O2 -o "$SAN/sanitizer/preload.so" \
    "$ROOT/test/sanitize/preload.c"

# The test that checks what the server loaded, first in the run.
cp "$ROOT/test/sanitize/sql/sanitize_loaded.sql" "$SAN/sql/"
cp "$ROOT/test/sanitize/expected/sanitize_loaded.out" "$SAN/expected/"

# Every temporary server finds the sanitized build first.
printf "# make sanitize-check: the sanitized build of subexpire\ndynamic_library_path = '%s:\$libdir'\n" \
    "$SAN" > "$SAN/sanitizer/sanitize.conf"
# The pg_regress and isolation servers also get a statement_timeout: a
# sanitizer kills the process it finds a fault in, and a test killed in the
# middle can leave behind what makes a later one wait for good (sql/locked.sql
# leaves a prepared transaction that holds row locks); the suite must fail,
# not hang.  The slowest statement of those suites takes about a second.
# (The TAP tests have their own timeouts.)
printf "# make sanitize-check: a killed test must not hang the next\nstatement_timeout = '5min'\n" \
    > "$SAN/sanitizer/suites.conf"
# The TAP clusters: whatever TEMP_CONFIG the caller had, then ours.
{
    if [ -n "${TEMP_CONFIG:-}" ]; then cat "$TEMP_CONFIG"; fi
    cat "$SAN/sanitizer/sanitize.conf"
} > "$SAN/sanitizer/tap.conf"

# detect_leaks=0: the server frees by resetting memory contexts and by
# exiting, so LeakSanitizer would report every backend.  abort_on_error=1:
# a report ends the process with SIGABRT, which the postmaster logs ("was
# terminated by signal 6") and handles as a crash.  ASan's reports go to
# files of their own (log_path, one per process), which outlive the
# temporary instances whatever those do with their logs; UBSan's go to the
# server's stderr, its log (with libasan loaded first, libubsan hands its
# log_path to libasan's copy of the setting).  The caller's options come
# after ours, so they win.
# preload.so before libubsan, so that its __ubsan_default_options() is the
# one libubsan calls.
export LD_PRELOAD="$asan_rt $SAN/sanitizer/preload.so $ubsan_rt${LD_PRELOAD:+ $LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$SAN/sanitizer/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export TEMP_CONFIG="$SAN/sanitizer/tap.conf"

# The three suites of installcheck one by one, so that a failure in one
# does not keep the others, and what the sanitizers find there, from running.
status=0
failed=
run_suite() {
    local name=$1
    shift
    echo "== sanitize-check: $name suite (make installcheck in $SAN)"
    "$MAKE" -C "$SAN" installcheck PG_CONFIG="$PG_CONFIG" "$@" \
        || { status=1; failed="$failed $name"; }
}
regress_opts="${EXTRA_REGRESS_OPTS:-} --temp-config=$SAN/sanitizer/sanitize.conf --temp-config=$SAN/sanitizer/suites.conf"
run_suite regress REGRESS="sanitize_loaded $REGRESS" ISOLATION= TAP_TESTS= \
    EXTRA_REGRESS_OPTS="$regress_opts"
run_suite isolation REGRESS= TAP_TESTS= EXTRA_REGRESS_OPTS="$regress_opts"
run_suite TAP REGRESS= ISOLATION=
unset LD_PRELOAD

# The reports: ASan's files, and the logs of the servers (pg_regress keeps
# them in log/ under its output directory, the TAP tests in tmp_check/log/)
# for UBSan's and anything written to stderr before log_path applied.
echo "== sanitize-check: looking for sanitizer reports"
pattern='AddressSanitizer|LeakSanitizer|runtime error:'
found=0
for f in "$SAN"/sanitizer/asan.*; do
    [ -f "$f" ] || continue
    found=1
    echo "---- $f"
    cat "$f"
done
for d in log output_iso/log tmp_check/log; do
    [ -d "$SAN/$d" ] || continue
    while IFS= read -r f; do
        found=1
        echo "---- $f"
        grep -a -n -E -B 2 -A 40 "$pattern" "$f"
    done < <(grep -a -r -l -E "$pattern" "$SAN/$d" || true)
done

elapsed=$((SECONDS - start))
if [ "$found" -ne 0 ]; then
    echo "== sanitize-check: FAILED, sanitizer reports above; failed suites:${failed:- none} (${elapsed}s)"
    exit 1
fi
if [ "$status" -ne 0 ]; then
    for f in "$SAN/regression.diffs" "$SAN/output_iso/regression.diffs"; do
        if [ -f "$f" ]; then echo "---- $f"; cat "$f"; fi
    done
    echo "== sanitize-check: FAILED, failed suites:$failed; no sanitizer report (${elapsed}s)"
    exit "$status"
fi
echo "== sanitize-check: all suites passed, no sanitizer report (${elapsed}s)"
