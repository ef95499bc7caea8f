#!/usr/bin/env bash
# scripts/test.sh: run every test suite of subexpire on throwaway clusters.
#
# Installs what it needs (Debian packages), builds and installs the
# extension, then runs `make installcheck` (pg_regress, isolation and TAP
# suites, each on temporary instances of its own) as a user PostgreSQL
# accepts, in a copy of the tree so that the checkout keeps its owner.
# Works as root or as a user with sudo.  Exit status: that of the tests.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/common.sh"

ensure_packages
build_and_install

work=$(mktemp -d /tmp/subexpire-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -a "$ROOT/." "$work/"
rm -rf "$work/.git"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$work"; fi

echo "== running the regression, isolation and TAP suites"
status=0
as_pg_user make -C "$work" -s installcheck \
    PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config || status=$?
if [ "$status" -ne 0 ]; then
    for f in "$work/regression.diffs" "$work/output_iso/regression.diffs"; do
        [ -f "$f" ] && { echo "== $f"; cat "$f"; }
    done
    for f in "$work"/tmp_check/log/regress_log_*; do
        [ -f "$f" ] && { echo "== $f (last 60 lines)"; tail -n 60 "$f"; }
    done
    echo "== FAILED"
    exit "$status"
fi
echo "== all suites passed"
