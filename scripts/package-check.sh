#!/usr/bin/env bash
# scripts/package-check.sh: build, lint, install and test the Debian package.
#
# On a Debian machine, as root or as a user with sudo:
#
#   1. installs what building and linting need (debhelper,
#      postgresql-server-dev-all, lintian, ...);
#   2. checks that the package version (debian/changelog) is the release
#      version (META.json);
#   3. builds the package with `dpkg-buildpackage -us -uc -b` in a copy of
#      the tree (it writes to the parent directory; the checkout stays as it
#      is), and runs lintian on the .changes: errors fail, the rest is shown;
#   4. installs the .deb with apt-get, and checks with dpkg that the
#      installed files are the package's;
#   5. runs the pg_regress suite against the installed files, nothing built
#      or installed from the tree in between (debian/tests/installcheck, the
#      package's autopkgtest);
#   6. starts a cluster that preloads the installed library, loads the
#      reference schema (test/reference_schema.sql), and checks that
#      expire_subscriptions() expires exactly its due rows and that the
#      background worker runs.
#
# On exit the machine is left as it was found: the package is removed again
# unless it was installed before (or --keep is given), and if the extension
# had been installed from source before, it is installed from source again
# (from the copy of this tree), since removing the package deletes those
# files.  Exit status: non-zero on any failure.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/common.sh"

keep=no
for arg in "$@"; do
    case "$arg" in
        --keep) keep=yes ;;
        *) echo "usage: $0 [--keep]" >&2; exit 2 ;;
    esac
done

PACKAGES="make gcc dpkg-dev debhelper lintian postgresql-$PG_MAJOR
          postgresql-server-dev-all"
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
PKG=postgresql-$PG_MAJOR-subexpire
started=$(date +%s)

step() {
    echo "== [$(( $(date +%s) - started )) s] $*"
}

fail() {
    echo "== FAILED: $*" >&2
    exit 1
}

step "installing the packages building and linting need"
ensure_packages

# The package version is the release version plus a Debian revision.
version=$(dpkg-parsechangelog -l "$ROOT/debian/changelog" -S Version)
upstream=${version%-*}
meta=$(perl -MJSON::PP -0777 -ne 'print decode_json($_)->{version}' "$ROOT/META.json")
[ "$upstream" = "$meta" ] ||
    fail "debian/changelog ($version) and META.json ($meta) disagree: the package version is META.json's with a Debian revision ($meta-1)"
step "package $PKG $version"

work=$(mktemp -d /tmp/subexpire-pkg.XXXXXX)
chmod 755 "$work"           # readable by postgres, for lintian and the tests
pgdata="$work/cluster"
pkg_was_installed=no
dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q "install ok installed" &&
    pkg_was_installed=yes
control="$(/usr/lib/postgresql/$PG_MAJOR/bin/pg_config --sharedir)/extension/subexpire.control"
source_install=no
if [ -e "$control" ] && ! dpkg -S "$control" >/dev/null 2>&1; then
    source_install=yes
fi
installed=no

cleanup() {
    local status=$?
    set +e
    if [ -f "$pgdata/postmaster.pid" ]; then
        as_pg_user "$PGBIN/pg_ctl" -D "$pgdata" -m immediate stop >/dev/null 2>&1
    fi
    if [ "$installed" = yes ] && [ "$keep" = no ] && [ "$pkg_was_installed" = no ]; then
        echo "== removing $PKG again"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq "$PKG" >/dev/null
        if [ "$source_install" = yes ]; then
            echo "== installing subexpire from source again, as it was before"
            as_root make -s -C "$work/src" install \
                PG_CONFIG="$PGBIN/pg_config" >/dev/null
        fi
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

step "building the package in $work"
mkdir "$work/src"
tar -C "$ROOT" --exclude=./.git --exclude='./tmp_*' --exclude=./results \
    --exclude=./output_iso -cf - . | tar -C "$work/src" -xf -
if ! (cd "$work/src" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
    tail -n 60 "$work/build.log"
    fail "dpkg-buildpackage"
fi
arch=$(dpkg --print-architecture)
deb="$work/${PKG}_${version}_${arch}.deb"
changes="$work/subexpire_${version}_${arch}.changes"
[ -f "$deb" ] || fail "no $deb"
ls -l "$work"/*.deb | sed 's/^/   /'

# Lintian warns when it runs as root, so it runs as the test user.
step "lintian (errors fail, warnings, info and pedantic tags are shown)"
lintian_status=0
as_pg_user lintian --display-info --pedantic --show-overrides --fail-on error "$changes" || lintian_status=$?
[ "$lintian_status" -eq 0 ] || fail "lintian found errors"

step "apt-get install $deb"
installed=yes
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall "$deb" >/dev/null
# Every file of the package is installed, unchanged: what the tests below
# load is what the package ships.
dpkg --verify "$PKG" || fail "dpkg --verify $PKG: installed files differ from the package's"
for f in "$control" "$("$PGBIN/pg_config" --pkglibdir)/subexpire.so"; do
    dpkg -S "$f" >/dev/null || fail "$f is not from the package"
done

step "pg_regress suite against the installed package (debian/tests/installcheck)"
(cd "$work/src" && debian/tests/installcheck) >"$work/installcheck.log" 2>&1 || {
    cat "$work/installcheck.log"
    fail "the pg_regress suite against the installed package"
}
grep -E '^(test |ok |not ok |=+$| All | [0-9]+ of )' "$work/installcheck.log" | sed 's/^/   /'

step "the reference schema's due rows, on a cluster that preloads the installed library"
mkdir "$pgdata"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$pgdata"; fi
as_pg_user "$PGBIN/initdb" -D "$pgdata" -A trust -U postgres --no-sync >/dev/null
as_pg_user "$PGBIN/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w \
    -o "-c listen_addresses='' -k '$pgdata' -c shared_preload_libraries=subexpire -c timezone=UTC" \
    start >/dev/null
psql_check() {
    as_pg_user "$PGBIN/psql" -h "$pgdata" -U postgres -X -q -At -v ON_ERROR_STOP=1 "$@"
}
# A database of its own: the worker runs in subexpire.database (postgres)
# and never touches this one.
psql_check -d postgres -c "CREATE DATABASE pkgcheck" >/dev/null
psql_check -d pkgcheck -f "$work/src/test/reference_schema.sql" >/dev/null
result=$(psql_check -d pkgcheck <<'SQL'
CREATE EXTENSION subexpire;
INSERT INTO users SELECT FROM generate_series(1, 6);
INSERT INTO subscriptions (user_id, plan, status, expires_at)
SELECT u.id, 'premium', s.status, s.expires_at
FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM users) AS u
JOIN (VALUES (1, 'active', timestamptz '2026-01-01 00:00+00'),   -- due
             (2, 'active', '2026-06-01 01:59:59+00'),            -- due
             (3, 'active', '2026-06-01 02:00:00+00'),            -- due, at the cutoff
             (4, 'active', '2026-06-01 02:00:01+00'),            -- not yet
             (5, 'active', NULL),                                -- never
             (6, 'inactive', '2026-01-01 00:00+00'))             -- not active
     AS s (n, status, expires_at) USING (n);
SELECT 'extension ' || extversion FROM pg_extension WHERE extname = 'subexpire';
SELECT 'dry run ' || expired_count FROM expire_subscriptions('2026-06-01 02:00+00', dry_run => true);
SELECT 'run ' || expired_count || ' at ' || processed_at FROM expire_subscriptions('2026-06-01 02:00+00');
SELECT 'again ' || expired_count FROM expire_subscriptions('2026-06-01 02:00+00');
SELECT 'rows ' || string_agg(status || ' ' || coalesce(to_char(expires_at, 'HH24:MI:SS'), 'null'),
                             ', ' ORDER BY expires_at, status)
FROM subscriptions;
SELECT 'recorded ' || string_agg(status || ' ' || expired_count, ', ' ORDER BY run_id)
FROM subexpire_runs;
SQL
) || fail "the reference schema check"
echo "$result" | sed 's/^/   /'
default_version=$(sed -n "s/^default_version = '\(.*\)'$/\1/p" "$ROOT/subexpire.control")
expected="extension $default_version
dry run 3
run 3 at 2026-06-01 02:00:00+00
again 0
rows expired 00:00:00, inactive 00:00:00, expired 01:59:59, expired 02:00:00, active 02:00:01, active null
recorded succeeded 3, succeeded 0"
[ "$result" = "$expected" ] || {
    printf '== expected:\n%s\n' "$expected"
    fail "the reference schema's due rows were not expired as expected"
}

# The scheduler is up: the packaged library, preloaded, started its worker.
worker_pid=""
for _ in $(seq 1 50); do
    worker_pid=$(psql_check -d pkgcheck -c "SELECT worker_pid FROM subexpire_stats")
    [ -n "$worker_pid" ] && break
    sleep 0.2
done
[ -n "$worker_pid" ] || { tail -n 20 "$pgdata/server.log"; fail "no subexpire worker"; }
echo "   scheduler worker pid $worker_pid, next run at" \
    "$(psql_check -d pkgcheck -c "SELECT next_run_at FROM subexpire_stats")"

step "package check passed"
