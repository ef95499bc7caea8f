# test/bench/lib.sh: the throwaway cluster, data and worker control shared
# by bench.sh and gentle.sh (sourced, after their option parsing).
#
# The caller sets ROWS (sizes shared_buffers), KEEP (1: leave the cluster
# running on exit), optionally BATCH (the worker's subexpire.batch_size)
# and EXTRA_CONF (more postgresql.conf lines), and calls
#   bench_start_cluster      initdb, settings, start; psql helpers
#   bench_load ROWS DUE      the reference schema's data into bench_start,
#                            with DUE rows due at $AS_OF
#   restore                  bench becomes a fresh copy of bench_start
#   bench_worker_run         one batched run of the worker in bench
#   timed SQL                the seconds that SQL takes in bench
# The server refuses to run as root: when invoked as root the server runs
# as postgres; psql runs as the invoking user and connects as the cluster's
# bootstrap superuser, over a unix socket in the work directory only.

# Single quotes around backquotes and psql backslash commands are meant.
# shellcheck disable=SC2016,SC2034

PG_CONFIG=${PG_CONFIG:-pg_config}
BINDIR=$("$PG_CONFIG" --bindir)
[[ -x $BINDIR/initdb && -x $BINDIR/pg_ctl && -x $BINDIR/psql ]] ||
	die "no initdb/pg_ctl/psql in $BINDIR"

if [[ $EUID -eq 0 ]]; then
	RUNAS=(runuser -u postgres --)
	DBUSER=postgres
else
	RUNAS=()
	DBUSER=$(id -un)
fi

# Nothing from the caller's environment may change what psql does.
unset PGOPTIONS PGSERVICE PGSERVICEFILE PGDATABASE PGHOST PGHOSTADDR PGPORT PGUSER || true
export PGTZ=UTC PGAPPNAME=subexpire-bench

# The cutoff: the time of the load, to the second.  The worker and the
# pg_cron job expire what is due at their own now(); no row's expiry falls
# in the day after the cutoff (schema.sql), so within a day of the load
# they see exactly the rows due at the cutoff.
AS_OF=$(date -u '+%Y-%m-%d %H:%M:%S+00')

WORK=$(mktemp -d "${TMPDIR:-/tmp}/subexpire-bench.XXXXXX")
DATA=$WORK/data
LOG=$WORK/server.log
STARTED=0
if [[ $EUID -eq 0 ]]; then
	chown postgres: "$WORK"
fi

cleanup() {
	local rc=$?
	trap - EXIT
	if [[ $rc -ne 0 && -s $LOG ]]; then
		echo "--- last lines of the server log ($LOG) ---" >&2
		tail -n 20 "$LOG" >&2 || true
	fi
	if [[ ${KEEP:-0} -eq 1 ]]; then
		echo "kept: cluster in $DATA, running: $STARTED;" \
			"connect: $BINDIR/psql -h $WORK -p ${PORT:-?} -U $DBUSER bench;" \
			"stop and remove: ${RUNAS[*]} $BINDIR/pg_ctl -D $DATA stop && rm -rf $WORK" >&2
	else
		if [[ $STARTED -eq 1 ]]; then
			"${RUNAS[@]}" "$BINDIR/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
		fi
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The socket lives in $WORK and no TCP port is opened, so any port number
# is free for us; avoid one that a server in a default socket directory
# uses, so that nobody connects to ours by mistake.
PORT=
for _ in $(seq 1 100); do
	p=$((20000 + RANDOM % 40000))
	if [[ ! -e /tmp/.s.PGSQL.$p && ! -e /var/run/postgresql/.s.PGSQL.$p ]]; then
		PORT=$p
		break
	fi
done
[[ -n $PORT ]] || die "no free port found"

# psql into a database; into the database of the timed runs, the starting
# state, postgres.
psqldb() {
	local db=$1
	shift
	"$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" \
		-U "$DBUSER" -d "$db" "$@"
}
psqlc() { psqldb bench "$@"; }
psqlstart() { psqldb bench_start "$@"; }
psqlpg() { psqldb postgres "$@"; }

fail() {
	echo >&2
	echo "BENCHMARK FAILED: $*" >&2
	exit 1
}

# median of the arguments
median() {
	printf '%s\n' "$@" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# calc EXPR: floating-point arithmetic
calc() {
	awk "BEGIN { printf \"%.6f\", $1 }"
}

say() {
	echo "$*"
}

bench_start_cluster() {
	"${RUNAS[@]}" "$BINDIR/initdb" -D "$DATA" -U "$DBUSER" --auth=trust \
		--encoding=UTF8 --locale=C -N >"$WORK/initdb.log" 2>&1 ||
		{ cat "$WORK/initdb.log" >&2; fail "initdb failed"; }

	# shared_buffers holds the whole database (table, indexes, users and
	# the copy of the starting state): about 450 bytes a row.
	SETTINGS="shared_buffers = $((ROWS * 450 / 1073741824 + 1))GB
max_wal_size = 8GB
checkpoint_timeout = 1h
autovacuum = off
synchronous_commit = on
timezone = 'UTC'"
	# The schedulers: subexpire's worker, off until bench_worker_run turns
	# it on, runs every second in the benchmark database; pg_cron runs its
	# jobs in background workers (its launcher lives in postgres).
	SCHEDULERS="shared_preload_libraries = 'pg_cron, subexpire'
subexpire.enabled = off
subexpire.database = 'bench'
subexpire.schedule = '1 seconds'
subexpire.catch_up = off
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16${BATCH:+
subexpire.batch_size = $BATCH}"
	cat >>"$DATA/postgresql.conf" <<EOF

# subexpire benchmark
listen_addresses = ''
unix_socket_directories = '$WORK'
port = $PORT
$SETTINGS
$SCHEDULERS
${EXTRA_CONF:-}
EOF

	"${RUNAS[@]}" "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 300 start >/dev/null ||
		fail "the server did not start"
	STARTED=1

	# The starting state is built once in bench_start; every timed run
	# works on a fresh copy of it named bench (restore).
	psqlpg -c 'CREATE DATABASE bench_start' -c 'CREATE EXTENSION pg_cron'
	psqlstart -c 'CREATE EXTENSION subexpire'
	# pg_prewarm (contrib) puts the table back into shared_buffers after
	# each restore; without it the table is in the OS page cache only.
	PREWARM=0
	if [[ $(psqlstart -At -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_prewarm'") == 1 ]]; then
		psqlstart -c 'CREATE EXTENSION pg_prewarm'
		PREWARM=1
	fi

	# A file copy of the starting state: the same files every time, with a
	# checkpoint before and after the copy (PostgreSQL 15's default
	# strategy, WAL_LOG, would write the whole database to WAL first).
	COPY_STRATEGY=
	if [[ $(psqlpg -At -c 'SHOW server_version_num') -ge 150000 ]]; then
		COPY_STRATEGY='STRATEGY = FILE_COPY'
	fi

	# The longest batch of a worker run, where the installed SQL records it.
	LONGEST_BATCH=NULL
	if [[ $(psqlstart -At -c "SELECT count(*) FROM pg_attribute
		WHERE attrelid = 'subexpire_runs'::regclass AND attname = 'longest_batch'") == 1 ]]; then
		LONGEST_BATCH='extract(epoch FROM max(longest_batch))'
	fi

	CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
	RAM=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null || true)
	STORAGE=$(df -PT "$WORK" 2>/dev/null | awk 'NR == 2 { print $2 " (" $1 ")" }' || true)
	PG_VERSION=$(psqlpg -At -c 'SELECT version()')
	EXT_VERSION=$(psqlstart -At -c "SELECT extversion FROM pg_extension WHERE extname = 'subexpire'")
	CRON_VERSION=$(psqlpg -At -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'")
	BATCH_SIZE=$(psqlpg -At -c 'SHOW subexpire.batch_size')
	MACHINE="$(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, ${RAM:-? RAM} RAM, storage ${STORAGE:-?}"
}

# bench_load ROWS DUE: the reference schema with ROWS subscriptions, DUE of
# them due at $AS_OF (schema.sql), in bench_start, vacuumed and analyzed
# (starting_state.sql).
bench_load() {
	psqlstart -v rows="$1" -v due_count="$2" -v as_of="$AS_OF" \
		-f "$HERE/schema.sql" >/dev/null
	psqlstart -f "$HERE/starting_state.sql" >/dev/null
}

# restore: bench becomes a fresh copy of bench_start, its table and indexes
# read into shared_buffers.
restore() {
	psqlpg -c 'SET client_min_messages = warning' -c 'DROP DATABASE IF EXISTS bench WITH (FORCE)' \
		-c "CREATE DATABASE bench TEMPLATE bench_start $COPY_STRATEGY"
	if [[ $PREWARM -eq 1 ]]; then
		psqlc -At -c "SELECT sum(pg_prewarm(c.oid::regclass)) FROM pg_class AS c
			WHERE c.oid = 'public.subscriptions'::regclass
			   OR c.oid IN (SELECT indexrelid FROM pg_index
			                WHERE indrelid = 'public.subscriptions'::regclass)" >/dev/null
	fi
}

# timed SQL: psql's \timing of the statements, run in bench after a
# checkpoint, in seconds (summed)
timed() {
	psqlc -c 'CHECKPOINT' >/dev/null
	printf '\\timing on\n%s\n' "$1" | psqlc 2>&1 |
		awk '/^Time: / { t += $2 } END { printf "%.6f", t / 1000 }'
}

# wait_until WHAT DB SECONDS SQL: poll (twice a second, so as to take little
# from the run it waits for) until SQL, run in DB, returns t.
wait_until() {
	local what=$1 db=$2 limit=$3 sql=$4 i
	for ((i = 0; i < limit * 2; i++)); do
		[[ $(psqldb "$db" -At -c "$sql") == t ]] && return 0
		sleep 0.5
	done
	fail "$what: not done after $limit s"
}

# bench_worker_run: the worker is turned on (it runs every second), then
# off once a run of it has expired rows and none is running, and it waits
# until the scheduler has taken the reload (no next run): a run started in
# between would otherwise expire the rows of the next case's fresh copy
# (seen as a 1 s pg_cron run that found nothing due).  Prints "rows
# seconds longest_batch_seconds", from the run records: the time from the
# start of the run's first transaction to the end of its last (the
# worker's start-up before the run is not counted).
bench_worker_run() {
	local failed
	psqlpg -c 'ALTER SYSTEM SET subexpire.enabled = on' -c 'SELECT pg_reload_conf()' >/dev/null
	wait_until "the worker's run" bench 3600 \
		"SELECT count(*) FILTER (WHERE status <> 'running' AND expired_count > 0) > 0
		        AND count(*) FILTER (WHERE status = 'running') = 0
		 FROM subexpire_runs WHERE trigger <> 'manual'"
	psqlpg -c 'ALTER SYSTEM RESET subexpire.enabled' -c 'SELECT pg_reload_conf()' >/dev/null
	wait_until "the worker turned off" bench 60 \
		"SELECT (SELECT next_run_at IS NULL FROM subexpire_stats)
		        AND NOT EXISTS (SELECT FROM subexpire_runs WHERE status = 'running')"
	failed=$(psqlc -At -c "SELECT string_agg(error, '; ') FROM subexpire_runs WHERE status = 'failed'")
	[[ -z $failed ]] || fail "the worker's run failed: $failed"
	psqlc -At -F ' ' -c "SELECT sum(expired_count),
			extract(epoch FROM max(finished_at) - min(started_at)),
			coalesce($LONGEST_BATCH::text, 'n/a')
		FROM subexpire_runs WHERE trigger <> 'manual' AND expired_count > 0"
}
