# scripts/common.sh: shared by scripts/demo.sh and scripts/test.sh.
#
# Installs the Debian packages that building and testing need, builds and
# installs the extension, and runs commands as a user PostgreSQL accepts:
# the postgres user when invoked as root (PostgreSQL refuses to run as
# root), the invoking user otherwise (with sudo for what needs root).

PG_MAJOR=${PG_MAJOR:-15}
PACKAGES="make gcc postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR
          postgresql-client-$PG_MAJOR postgresql-$PG_MAJOR-cron libipc-run-perl
          prometheus prometheus-postgres-exporter
          clang-14 libclang-rt-14-dev llvm-14"
# make valgrind-check; make sanitize-check needs only gcc, which brings
# libasan and libubsan.
PACKAGES="$PACKAGES valgrind"
# The benchmark (test/bench/): its async SQLAlchemy ORM job runs on
# Debian's python3 with these; gentle.sh needs pgbench (postgresql-contrib,
# which also brings pg_prewarm and auto_explain).
PACKAGES="$PACKAGES python3 python3-sqlalchemy python3-asyncpg python3-greenlet
          postgresql-contrib"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Run a command as the user that owns the throwaway clusters.
as_pg_user() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_user() {
    if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

ensure_packages() {
    local missing=""
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "== installing:$missing"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    fi
}

build_and_install() {
    local pg_config=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
    echo "== building and installing subexpire"
    make -s -C "$ROOT" PG_CONFIG="$pg_config" >/dev/null
    as_root make -s -C "$ROOT" PG_CONFIG="$pg_config" install >/dev/null
}

# A free TCP port number (the clusters listen on a unix socket of their own,
# but the port number names the socket file).
free_port() {
    local port=54400
    while [ -e "/tmp/.s.PGSQL.$port" ] || (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        port=$((port + 1))
    done
    echo "$port"
}
