#!/usr/bin/env bash
# test/bench/citus.sh: subexpire on a Citus-distributed table, against one
# raw multi-shard UPDATE on the same cluster.
#
# A coordinator and two workers on this machine (throwaway, unix sockets in
# a temp directory), the reference schema distributed by user_id
# (PRIMARY KEY (user_id)), --rows subscriptions of which --due are due
# (active, expiring in the 90 days before the cutoff), scattered over each
# shard; the rest active and expiring within the year after.
# Timed, in --pairs pairs whose order alternates (b a w, then w a b), each
# from the same starting state (a co-located copy, INSERT ... SELECT on the
# shards), VACUUM ANALYZE and CHECKPOINT on every node first:
#   (b) UPDATE subscriptions SET status = 'expired', updated_at = now()
#       WHERE status = 'active' AND expires_at <= cutoff (psql's \timing)
#   (a) SELECT * FROM expire_subscriptions(cutoff) (psql's \timing)
#   (w) the worker's batched run (its run record: first start to last end)
# Every case must change exactly the due rows.  Prints the medians and the
# ratios a/b and w/b.  Needs Citus (../shared/citus/install.sh) and the
# extension installed.
#
# Usage: test/bench/citus.sh [--rows N] [--due N] [--pairs N] [--batch N] [--keep]
set -euo pipefail

ROWS=1000000
DUE=200000
PAIRS=3
BATCH=10000
KEEP=0
while [[ $# -gt 0 ]]; do
	case $1 in
		--rows) ROWS=$2; shift 2 ;;
		--due) DUE=$2; shift 2 ;;
		--pairs) PAIRS=$2; shift 2 ;;
		--batch) BATCH=$2; shift 2 ;;
		--keep) KEEP=1; shift ;;
		-h|--help) sed -n '2,19p' "$0"; exit 0 ;;
		*) echo "citus.sh: unknown option $1" >&2; exit 2 ;;
	esac
done

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
BINDIR=$("$PG_CONFIG" --bindir)
[[ -f $("$PG_CONFIG" --sharedir)/extension/citus.control ]] || {
	echo "citus.sh: Citus is not installed; ../shared/citus/install.sh installs it" >&2
	exit 1
}
if [[ $EUID -eq 0 ]]; then RUNAS=(runuser -u postgres --); else RUNAS=(); fi

DIR=$(mktemp -d /tmp/subexpire-citus-bench.XXXXXX)
[[ $EUID -eq 0 ]] && chown postgres: "$DIR"
PORTS=(5710 5711 5712)
cleanup() {
	if [[ $KEEP -eq 0 ]]; then
		for p in "${PORTS[@]}"; do
			"${RUNAS[@]}" "$BINDIR/pg_ctl" -D "$DIR/n$p" -m immediate stop >/dev/null 2>&1 || true
		done
		rm -rf "$DIR"
	else
		echo "kept: $DIR (coordinator: psql -h $DIR -p ${PORTS[0]} postgres)"
	fi
}
trap cleanup EXIT

q() { local p=$1; shift; "${RUNAS[@]}" "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$p" -d postgres "$@"; }
qc() { q "${PORTS[0]}" "$@"; }
median() {
	printf '%s\n' "$@" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "== a coordinator and two workers in $DIR"
for p in "${PORTS[@]}"; do
	"${RUNAS[@]}" "$BINDIR/initdb" -D "$DIR/n$p" -A trust >/dev/null
	cat >> "$DIR/n$p/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$DIR'
port = $p
shared_preload_libraries = 'citus,subexpire'
max_prepared_transactions = 50
max_connections = 200
shared_buffers = 1GB
max_wal_size = 8GB
checkpoint_timeout = 1h
autovacuum = off
subexpire.enabled = off
subexpire.batch_size = $BATCH
subexpire.schedule = '1 second'
CONF
	"${RUNAS[@]}" "$BINDIR/pg_ctl" -D "$DIR/n$p" -l "$DIR/n$p.log" start >/dev/null
	q "$p" -c 'CREATE EXTENSION citus'
done
qc -c "SELECT citus_set_coordinator_host('$DIR', ${PORTS[0]})" >/dev/null
for p in "${PORTS[@]:1}"; do qc -c "SELECT citus_add_node('$DIR', $p)" >/dev/null; done

echo "== $ROWS rows, $DUE due"
CUTOFF=$(qc -At -c "SELECT now()")
qc <<SQL
CREATE EXTENSION subexpire;
CREATE TABLE seed (
    id uuid NOT NULL DEFAULT gen_random_uuid(), user_id uuid NOT NULL,
    plan varchar(20) NOT NULL DEFAULT 'free', status varchar(20) NOT NULL,
    expires_at timestamptz, created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (user_id));
CREATE TABLE subscriptions (LIKE seed INCLUDING DEFAULTS, PRIMARY KEY (user_id));
CREATE INDEX ix_subscriptions_status_expires_at ON subscriptions (status, expires_at);
SELECT create_distributed_table('seed', 'user_id');
SELECT create_distributed_table('subscriptions', 'user_id', colocate_with => 'seed');
SELECT setseed(0.5);
INSERT INTO seed (user_id, status, expires_at)
SELECT gen_random_uuid(),
       'active',
       CASE WHEN g <= $DUE
            THEN '$CUTOFF'::timestamptz - random() * interval '90 days'
            ELSE '$CUTOFF'::timestamptz + interval '1 day' + random() * interval '365 days' END
FROM generate_series(1, $ROWS) g
ORDER BY random();
SQL

reset_state() {
	qc -c 'TRUNCATE subscriptions' -c 'INSERT INTO subscriptions SELECT * FROM seed' \
		-c 'TRUNCATE subexpire_runs' -c 'VACUUM ANALYZE subscriptions' >/dev/null
	for p in "${PORTS[@]}"; do q "$p" -c CHECKPOINT; done
}

verify() {
	local changed
	changed=$(qc -At -c "SELECT count(*) FROM subscriptions WHERE status = 'expired'")
	[[ $changed -eq $DUE ]] || { echo "citus.sh: $1 changed $changed rows, not $DUE" >&2; exit 1; }
}

# psql's \timing of one statement, in seconds.
timed() {
	qc -c '\timing on' -c "$1" | awk '/^Time:/ { print $2 / 1000 }' | tail -1
}

run_case() {
	local t
	reset_state
	case $1 in
		b) t=$(timed "UPDATE subscriptions SET status = 'expired', updated_at = now() WHERE status = 'active' AND expires_at <= '$CUTOFF'") ;;
		a) t=$(timed "SELECT * FROM expire_subscriptions('$CUTOFF')") ;;
		w)
			qc -c 'ALTER SYSTEM SET subexpire.enabled = on' -c 'SELECT pg_reload_conf()' >/dev/null
			until [[ $(qc -At -c "SELECT count(*) FROM subexpire_runs WHERE status = 'succeeded' AND expired_count > 0") -gt 0 ]]; do
				sleep 0.5
			done
			qc -c 'ALTER SYSTEM RESET subexpire.enabled' -c 'SELECT pg_reload_conf()' >/dev/null
			t=$(qc -At -c "SELECT extract(epoch FROM finished_at - started_at) FROM subexpire_runs WHERE status = 'succeeded' AND expired_count > 0")
			;;
	esac
	verify "$1"
	echo "$t"
}

declare -a B A W
for ((pair = 1; pair <= PAIRS; pair++)); do
	if ((pair % 2)); then order=(b a w); else order=(w a b); fi
	for c in "${order[@]}"; do
		t=$(run_case "$c")
		printf '  pair %d  (%s)  %s s\n' "$pair" "$c" "$t"
		case $c in b) B+=("$t") ;; a) A+=("$t") ;; w) W+=("$t") ;; esac
	done
done

mb=$(median "${B[@]}"); ma=$(median "${A[@]}"); mw=$(median "${W[@]}")
echo "== medians of $PAIRS pairs, $ROWS rows, $DUE due, batch $BATCH"
printf '(b) raw multi-shard UPDATE   %.3f s\n' "$mb"
printf '(a) expire_subscriptions()   %.3f s   a/b %.2f\n' "$ma" "$(awk "BEGIN { print $ma / $mb }")"
printf '(w) worker, batched          %.3f s   w/b %.2f\n' "$mw" "$(awk "BEGIN { print $mw / $mb }")"
