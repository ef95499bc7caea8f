#!/usr/bin/env bash
#
# test/bench/idle.sh: what the idle subexpire scheduler costs, next to
# pg_cron's launcher on the same server.
#
# Starts a throwaway cluster with both preloaded (subexpire on its default
# schedule, 02:00 UTC daily; pg_cron with one job a day), waits until both
# are idle, then reads each process's CPU time (utime + stime, from
# /proc/<pid>/stat) and its voluntary context switches (each one a wake-up
# after sleeping, from /proc/<pid>/status) at the start and the end of a
# window (--seconds, default 60), and prints the differences.  With
# --databases N, subexpire.database lists N databases (postgres and N - 1
# more, each with the extension and a table), made before the window.
#
# Run (the extension and postgresql-15-cron installed):
#   test/bench/idle.sh [--seconds N] [--databases N]
set -euo pipefail

SECONDS_WINDOW=60
DATABASES=1
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) SECONDS_WINDOW=$2; shift 2 ;;
        --databases) DATABASES=$2; shift 2 ;;
        *) echo "idle.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

bindir=$("${PG_CONFIG:-pg_config}" --bindir)
dir=$(mktemp -d /tmp/subexpire-idle.XXXXXX)
run() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
trap 'run "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT

run "$bindir/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = 'pg_cron, subexpire'
cron.database_name = 'postgres'
CONF
run "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
psql() { run "$bindir/psql" -X -q -At -h "$dir" -U postgres -d postgres "$@"; }
psql -c "CREATE EXTENSION pg_cron" -c "SELECT cron.schedule('nightly', '0 3 * * *', 'SELECT 1')" >/dev/null
listed=postgres
for i in $(seq 1 "$DATABASES"); do
    db=postgres
    if [ "$i" -gt 1 ]; then
        db=idle$i
        psql -c "CREATE DATABASE $db"
        listed="$listed, $db"
    fi
    psql -d "$db" -c "CREATE EXTENSION subexpire" \
         -c "CREATE TABLE subscriptions (id bigint PRIMARY KEY, status text, expires_at timestamptz, updated_at timestamptz)" \
         >/dev/null
done
psql -c "ALTER SYSTEM SET subexpire.database = '$listed'" -c "SELECT pg_reload_conf()" >/dev/null

pid_of() {
    local pid=""
    while [ -z "$pid" ]; do
        pid=$(psql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = '$1'")
        [ -n "$pid" ] || sleep 0.2
    done
    echo "$pid"
}
scheduler=$(pid_of 'subexpire scheduler')
launcher=$(pid_of 'pg_cron launcher')

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wakeups() { awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$1/status"; }

# Let start-up settle (the catch-up check runs at start, and for each
# database the reload added, in a run worker each).
until [ "$(psql -c "SHOW subexpire.database")" = "$listed" ]; do sleep 0.2; done
sleep 1
while [ -n "$(psql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'subexpire run'")" ]; do
    sleep 0.2
done
sleep 1
s_cpu0=$(cpu_ticks "$scheduler"); s_wake0=$(wakeups "$scheduler")
l_cpu0=$(cpu_ticks "$launcher"); l_wake0=$(wakeups "$launcher")
sleep "$SECONDS_WINDOW"
s_cpu1=$(cpu_ticks "$scheduler"); s_wake1=$(wakeups "$scheduler")
l_cpu1=$(cpu_ticks "$launcher"); l_wake1=$(wakeups "$launcher")

hz=$(getconf CLK_TCK)
printf 'idle over %d s, %d databases listed (CPU time in ms, from clock ticks of %d Hz):\n' "$SECONDS_WINDOW" "$DATABASES" "$hz"
printf '| process | CPU time | wake-ups |\n| --- | ---: | ---: |\n'
printf '| subexpire scheduler | %d ms | %d |\n' $(( (s_cpu1 - s_cpu0) * 1000 / hz )) $(( s_wake1 - s_wake0 ))
printf '| pg_cron launcher | %d ms | %d |\n' $(( (l_cpu1 - l_cpu0) * 1000 / hz )) $(( l_wake1 - l_wake0 ))
