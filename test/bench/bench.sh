#!/usr/bin/env bash
#
# test/bench/bench.sh: how fast is subexpire at one table size and due
# fraction, against the physical limit (one plain set-based UPDATE), against
# what a user would write instead (a PL/pgSQL function called by pg_cron),
# and against what an application-side job does (one UPDATE per row from
# the client: psql, and an async SQLAlchemy ORM job)?
#
# It creates a throwaway PostgreSQL cluster of its own (initdb into a temp
# directory, unix socket only; run as the postgres user when invoked as
# root), loads the reference schema (test/reference_schema.sql) with --rows
# subscriptions, --due of them due at the time of the load, and times, in
# pairs whose order alternates:
#   (a)  SELECT * FROM expire_subscriptions(as_of)          all due rows
#   (b)  UPDATE subscriptions SET status = 'expired', updated_at = now()
#        WHERE status = 'active' AND expires_at <= as_of     all due rows
#   (w)  the background worker's batched run (subexpire.batch_size rows a
#        transaction), timed by its run record              all due rows
#   (p)  a PL/pgSQL function doing the UPDATE of (b), run by pg_cron,
#        timed by cron.job_run_details                      all due rows
#   (c)  a row-at-a-time loop from psql (SELECT the due ids, then one
#        UPDATE ... WHERE id = '...' per row, each a round trip, all in one
#        transaction)                                      --loop-rows rows
#   (o)  the same loop as an async SQLAlchemy ORM job (orm_job.py), flushing
#        each row, one commit at the end
#   (oc) the same ORM job committing each row
#   (ou) the same ORM job changing each object and committing once: the
#        unit of work sends the UPDATEs as one executemany (asyncpg does
#        not wait for each row's reply)
#   (a') expire_subscriptions() on the same --loop-rows rows (cutoff chosen
#        so that exactly those rows are due)
# and then (d) expire_subscriptions() with nothing due, right after a run,
# with the plan of its due search.  Before every timed run the database is
# copied afresh from a template holding the starting state (vacuumed,
# analyzed, checkpointed, then read into shared_buffers); after every timed
# run the changed rows are checked against the due rows, and any difference
# fails the benchmark.  Prints a plain-text and a markdown table of medians
# and ratios, with the machine it ran on.
#
# Run (the extension, postgresql-15-cron and, for (o), Debian's
# python3-sqlalchemy, python3-asyncpg and python3-greenlet installed):
#   test/bench/bench.sh                          # 1M rows, 20% due, 3 pairs
#   test/bench/bench.sh --rows 20000 --due 0.2 --pairs 1   # CI smoke size
# Options: --rows N, --due F, --pairs K, --loop-rows M, --batch-size B (the
# worker's subexpire.batch_size; default its default), --no-loops (leave
# out (c), (o) and (a')), --summary FILE (append one tab-separated line of
# results, for run.sh), --keep (leave the cluster running and its directory
# in place).  PG_CONFIG selects the PostgreSQL installation (default:
# pg_config on PATH); PYTHON the interpreter for (o) (default
# /usr/bin/python3, which sees Debian's packages).

# Single quotes around backquotes and psql backslash commands are meant.
# shellcheck disable=SC2016,SC2028

set -euo pipefail

ROWS=1000000
DUE=0.2
PAIRS=3
LOOP_ROWS=20000
KEEP=0
LOOPS=1
ONLY_CASES=
BATCH=
SUMMARY=
NOTHING_DUE_CALLS=20
PYTHON=${PYTHON:-/usr/bin/python3}

# Targets (informational: the benchmark fails on wrong results, not on
# slow ones).
TARGET_RATIO_RAW=1.10
TARGET_RATIO_WORKER=1.30
TARGET_LONGEST_BATCH_S=1
TARGET_NOTHING_DUE_MS=5
TARGET_RATIO_LOOP=30

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
	sed -n '3,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
	exit "${1:-0}"
}

die() {
	echo "bench.sh: $*" >&2
	exit 2
}

while [[ $# -gt 0 ]]; do
	case $1 in
		--rows) ROWS=${2:?--rows needs a value}; shift 2 ;;
		--rows=*) ROWS=${1#*=}; shift ;;
		--due) DUE=${2:?--due needs a value}; shift 2 ;;
		--due=*) DUE=${1#*=}; shift ;;
		--pairs) PAIRS=${2:?--pairs needs a value}; shift 2 ;;
		--pairs=*) PAIRS=${1#*=}; shift ;;
		--loop-rows) LOOP_ROWS=${2:?--loop-rows needs a value}; shift 2 ;;
		--loop-rows=*) LOOP_ROWS=${1#*=}; shift ;;
		--no-loops) LOOPS=0; shift ;;
		--cases) ONLY_CASES=${2:?--cases needs a list}; shift 2 ;;
		--batch-size) BATCH=${2:?--batch-size needs a value}; shift 2 ;;
		--batch-size=*) BATCH=${1#*=}; shift ;;
		--summary) SUMMARY=${2:?--summary needs a file}; shift 2 ;;
		--summary=*) SUMMARY=${1#*=}; shift ;;
		--keep) KEEP=1; shift ;;
		-h|--help) usage 0 ;;
		*) echo "bench.sh: unknown option $1" >&2; usage 2 >&2 ;;
	esac
done

[[ $ROWS =~ ^[0-9]+$ && $ROWS -ge 100 ]] || die "--rows must be an integer >= 100"
[[ $PAIRS =~ ^[0-9]+$ && $PAIRS -ge 1 ]] || die "--pairs must be an integer >= 1"
[[ $LOOP_ROWS =~ ^[0-9]+$ && $LOOP_ROWS -ge 1 ]] || die "--loop-rows must be an integer >= 1"
[[ $DUE =~ ^(0?\.[0-9]+|0|1|1\.0*)$ ]] || die "--due must be a fraction between 0 and 1"
DUE_COUNT=$(awk -v n="$ROWS" -v f="$DUE" 'BEGIN { printf "%d", n * f + 0.5 }')
[[ $DUE_COUNT -ge 1 && $DUE_COUNT -lt $ROWS ]] ||
	die "--due must leave at least one due and one not-due row ($DUE_COUNT of $ROWS due)"
LOOP_NOTE=""
if [[ $LOOP_ROWS -gt $DUE_COUNT ]]; then
	LOOP_NOTE="(--loop-rows $LOOP_ROWS lowered to the $DUE_COUNT due rows)"
	LOOP_ROWS=$DUE_COUNT
fi

. "$HERE/lib.sh"
bench_start_cluster

SERVER_SETTINGS=$(psqlpg -At -F ' = ' -c "SELECT name, current_setting(name) FROM pg_settings
	WHERE name IN ('shared_buffers', 'max_wal_size', 'checkpoint_timeout',
	               'synchronous_commit', 'fsync', 'full_page_writes', 'wal_level',
	               'autovacuum', 'jit', 'work_mem', 'lc_collate') ORDER BY name" | paste -sd ';' | sed 's/;/; /g')

say "subexpire benchmark"
say "  machine:  $MACHINE"
say "  server:   $PG_VERSION; subexpire $EXT_VERSION; pg_cron $CRON_VERSION"
say "  cluster:  throwaway, initdb --locale=C, unix socket $WORK port $PORT, server run as ${RUNAS[2]:-$DBUSER}"
say "  restore:  before each timed run: the database copied from its starting state (vacuumed, analyzed; CREATE DATABASE ... TEMPLATE checkpoints)$([[ $PREWARM -eq 1 ]] && echo ', pg_prewarm' || echo ' (no pg_prewarm: table in OS cache only)')"
say "  settings: $SERVER_SETTINGS"
say "  data:     $ROWS subscriptions, $DUE_COUNT due at $AS_OF (--due $DUE); pairs $PAIRS; loop rows $LOOP_ROWS $LOOP_NOTE"
if [[ $PAIRS -lt 3 ]]; then
	say "  NOTE:     fewer than 3 pairs: a smoke test, not a measurement"
fi
say

# --- the data -----------------------------------------------------------------

T0=$SECONDS
bench_load "$ROWS" "$DUE_COUNT"

# verify AS_OF EXPECTED WHAT: the table differs from its starting state in
# exactly the EXPECTED rows due at AS_OF, each now expired.
verify() {
	local changed expired_ok wrong other
	read -r changed expired_ok wrong other < <(psqlc -At -v as_of="$1" -f "$HERE/verify.sql")
	if [[ $changed != "$2" || $expired_ok != "$2" || $wrong != 0 || $other != 0 ]]; then
		fail "$3: expected exactly $2 due rows to be expired; found $changed rows changed in status," \
			"$expired_ok due rows expired, $wrong rows not due changed, $other rows changed otherwise"
	fi
}

restore
say "loaded in $((SECONDS - T0)) s: $(psqlc -At -c "SELECT pg_size_pretty(pg_table_size('subscriptions')) || ' table, '
	|| pg_size_pretty(pg_indexes_size('subscriptions')) || ' indexes'")"

# Sanity of the loaded data: the due count, and a cutoff at which exactly
# the LOOP_ROWS oldest due rows are due.
n=$(psqlc -At -c "SELECT count(*) FROM subscriptions WHERE status = 'active' AND expires_at <= '$AS_OF'")
[[ $n == "$DUE_COUNT" ]] || fail "the loaded table has $n due rows, not $DUE_COUNT"
AS_OF_LOOP=$(psqlc -At -c "SELECT expires_at FROM bench_orig
	WHERE status = 'active' AND expires_at <= '$AS_OF'
	ORDER BY expires_at LIMIT 1 OFFSET $((LOOP_ROWS - 1))")
n=$(psqlc -At -c "SELECT count(*) FROM subscriptions WHERE status = 'active' AND expires_at <= '$AS_OF_LOOP'")
[[ $n == "$LOOP_ROWS" ]] || fail "$n rows are due at $AS_OF_LOOP, not $LOOP_ROWS"

# The row-at-a-time client: one statement a line, each sent by psql and
# waited for (one round trip each), in one transaction.  The ids are those
# that the SELECT at its head returns (verify checks that exactly those rows
# changed); psql cannot feed a result into later statements, so the file
# holds them already, as an ORM's loop would have them in memory.
{
	echo '\set ON_ERROR_STOP on'
	echo 'SELECT clock_timestamp() AS t0 \gset'
	echo 'BEGIN;'
	echo '\o /dev/null'
	echo "SELECT id FROM subscriptions WHERE status = 'active' AND expires_at <= '$AS_OF_LOOP';"
	psqlc -At -c "SELECT format('UPDATE subscriptions SET status = %L, updated_at = now() WHERE id = %L;', 'expired', id)
		FROM bench_orig WHERE status = 'active' AND expires_at <= '$AS_OF_LOOP' ORDER BY expires_at"
	echo '\o'
	echo 'COMMIT;'
	echo "SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) AS secs \\gset"
	echo '\echo :secs'
} >"$WORK/loop.sql"

# --- timed runs -----------------------------------------------------------------
#
# Each is timed on the server's clock, from a statement just before it to
# one just after it, in the same session: the time includes the statement's
# parse, plan, execution and commit, and one client round trip.

time_expire() {
	psqlc -At <<EOF
SELECT clock_timestamp() AS t0 \gset
SELECT expired_count AS n FROM expire_subscriptions('$1') \gset
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) AS secs \gset
\echo :n :secs
EOF
}

time_update() {
	psqlc -At <<EOF
SELECT clock_timestamp() AS t0 \gset
UPDATE subscriptions SET status = 'expired', updated_at = now() WHERE status = 'active' AND expires_at <= '$1';
\set n :ROW_COUNT
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) AS secs \gset
\echo :n :secs
EOF
}

time_loop() {
	echo "$LOOP_ROWS $(psqlc -At -f "$WORK/loop.sql")"
}

# The ORM job times itself on the client, from its SELECT to its last
# COMMIT.  time_orm flush|commit|once
time_orm() {
	"$PYTHON" "$HERE/orm_job.py" "$WORK" "$PORT" "$DBUSER" bench "$AS_OF_LOOP" "$1"
}

# (p) The PL/pgSQL function, run once by pg_cron (on the next minute:
# pg_cron 1.4 has no seconds schedules), timed by cron.job_run_details.
# The count is that of the rows it changed (the function's result is not
# recorded by pg_cron): a new updated_at, later than any in the data.
time_cron() {
	local job status secs message
	job=$(psqlpg -At -c "SELECT cron.schedule_in_database('bench-plpgsql', '* * * * *',
		'SELECT expire_due_subscriptions()', 'bench')")
	wait_until "(p) the pg_cron job" postgres 150 "SELECT EXISTS (SELECT FROM cron.job_run_details
		WHERE jobid = $job AND status IN ('succeeded', 'failed'))"
	psqlpg -c "SELECT cron.unschedule($job)" >/dev/null
	IFS='|' read -r status secs message < <(psqlpg -At -c "SELECT status,
		extract(epoch FROM end_time - start_time), return_message
		FROM cron.job_run_details WHERE jobid = $job ORDER BY runid LIMIT 1")
	[[ $status == succeeded ]] || fail "(p): the pg_cron job ended $status: $message"
	echo "$(psqlc -At -c "SELECT count(*) FROM subscriptions WHERE updated_at >= '$AS_OF'") $secs"
}

declare -a T_A=() T_B=() T_C=() T_AM=() T_W=() T_P=() T_O=() T_OC=() T_OU=() L_W=()

# run_case PAIR CASE: restore, time, check, record.
run_case() {
	local pair=$1 case=$2 as_of expect what out n secs longest=
	restore
	case $case in
		a) as_of=$AS_OF; expect=$DUE_COUNT
		   what="(a)  expire_subscriptions, $DUE_COUNT due"; out=$(time_expire "$as_of") ;;
		b) as_of=$AS_OF; expect=$DUE_COUNT
		   what="(b)  raw UPDATE, $DUE_COUNT due"; out=$(time_update "$as_of") ;;
		w) as_of=$AS_OF; expect=$DUE_COUNT
		   what="(w)  worker, batched, $DUE_COUNT due"; out=$(bench_worker_run) ;;
		p) as_of=$AS_OF; expect=$DUE_COUNT
		   what="(p)  PL/pgSQL by pg_cron, $DUE_COUNT due"; out=$(time_cron) ;;
		c) as_of=$AS_OF_LOOP; expect=$LOOP_ROWS
		   what="(c)  row loop, psql, $LOOP_ROWS rows"; out=$(time_loop) ;;
		o) as_of=$AS_OF_LOOP; expect=$LOOP_ROWS
		   what="(o)  async ORM, flush a row, $LOOP_ROWS rows"; out=$(time_orm flush) ;;
		oc) as_of=$AS_OF_LOOP; expect=$LOOP_ROWS
		   what="(oc) async ORM, commit a row, $LOOP_ROWS rows"; out=$(time_orm commit) ;;
		ou) as_of=$AS_OF_LOOP; expect=$LOOP_ROWS
		   what="(ou) async ORM, commit once, $LOOP_ROWS rows"; out=$(time_orm once) ;;
		am) as_of=$AS_OF_LOOP; expect=$LOOP_ROWS
		   what="(a') expire_subscriptions, $LOOP_ROWS rows"; out=$(time_expire "$as_of") ;;
	esac
	read -r n secs longest <<<"$out"
	[[ $n == "$expect" ]] || fail "$what: reported $n rows, expected $expect"
	[[ $secs =~ ^[0-9.]+$ ]] || fail "$what: no time measured (got '$out')"
	verify "$as_of" "$expect" "$what"
	# Only (w) may have the worker expire rows: a run of it in another
	# case's copy would be timed as that case.
	if [[ $case != w && $(psqlc -At -c "SELECT count(*) FROM subexpire_runs
		WHERE trigger <> 'manual' AND expired_count > 0") != 0 ]]; then
		fail "$what: the background worker expired rows during this case"
	fi
	case $case in
		a) T_A+=("$secs") ;;
		b) T_B+=("$secs") ;;
		w) T_W+=("$secs"); L_W+=("$longest") ;;
		p) T_P+=("$secs") ;;
		c) T_C+=("$secs") ;;
		o) T_O+=("$secs") ;;
		oc) T_OC+=("$secs") ;;
		ou) T_OU+=("$secs") ;;
		am) T_AM+=("$secs") ;;
	esac
	printf '  pair %d  %-42s %10.4f s   %s rows changed, verified%s\n' "$pair" "$what" "$secs" "$n" \
		"${longest:+; longest batch $longest s}"
}

CASES=(a b w p)
if [[ $LOOPS -eq 1 ]]; then
	CASES+=(c o oc ou am)
fi
if [[ -n $ONLY_CASES ]]; then
	IFS=, read -r -a CASES <<<"$ONLY_CASES"
fi

say
say "timed runs (each from the same restored state; order alternates between pairs):"
for ((pair = 1; pair <= PAIRS; pair++)); do
	order=("${CASES[@]}")
	if ! ((pair % 2)); then
		order=()
		for ((k = ${#CASES[@]} - 1; k >= 0; k--)); do
			order+=("${CASES[k]}")
		done
	fi
	for c in "${order[@]}"; do
		run_case "$pair" "$c"
	done
	# ratio NAME NUM DEN: "NAME x.xxx" from this pair's last runs, when both ran
	ratio() {
		local -n num=$2 den=$3
		[[ ${#num[@]} -gt 0 && ${#den[@]} -gt 0 ]] &&
			printf ', %s %.3f' "$1" "$(calc "${num[-1]} / ${den[-1]}")"
		return 0
	}
	printf '  pair %d  ratios' "$pair"
	ratio a/b T_A T_B
	ratio w/b T_W T_B
	ratio p/b T_P T_B
	ratio "c/a'" T_C T_AM
	ratio "o/a'" T_O T_AM
	ratio "oc/a'" T_OC T_AM
	ratio "ou/a'" T_OU T_AM
	printf '\n'
done

# --- plans ------------------------------------------------------------------------
#
# The plans the two full-size statements used, instrumented (so not timed):
# the raw UPDATE with EXPLAIN ANALYZE, expire_subscriptions() through
# auto_explain, which shows the plans of the statements it runs inside.

AUTO_EXPLAIN="LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_level = notice;
SET client_min_messages = notice;"

say
say "plan of (b), the raw UPDATE (EXPLAIN ANALYZE, BUFFERS):"
restore
psqlc -At -c "EXPLAIN (ANALYZE, BUFFERS) UPDATE subscriptions SET status = 'expired', updated_at = now()
	WHERE status = 'active' AND expires_at <= '$AS_OF'" | sed 's/^/    /'
verify "$AS_OF" "$DUE_COUNT" "EXPLAIN ANALYZE of the raw UPDATE"

say
say "plan of (a), the statements expire_subscriptions() runs (auto_explain, analyze, buffers):"
restore
out=$(psqlc -At 2>&1 <<EOF
$AUTO_EXPLAIN
SELECT expired_count FROM expire_subscriptions('$AS_OF');
EOF
)
echo "$out" | sed -e 's/^psql:[^ ]* //' -e 's/^/    /'
verify "$AS_OF" "$DUE_COUNT" "expire_subscriptions under auto_explain"

# --- (d) nothing due ---------------------------------------------------------------
#
# Right after that run (nothing due; no VACUUM, as a scheduler calling again
# would find it), NOTHING_DUE_CALLS calls in one session: psql's \timing
# (the client's wall clock: round trip, execution, commit) and the time
# inside the statement (clock_timestamp() - statement_timestamp()).  Each
# call is followed by the bare search it makes (SELECT 1 ... ORDER BY
# expires_at LIMIT 1, the physical limit: it steps over the index entries
# of the rows just expired until VACUUM removes them), so that both are
# measured side by side in the same state; the first call pays for marking
# those entries dead.  Then the same after VACUUM, the steady state of
# a daily job.

# nothing_due LABEL: prints "median_ms first_ms max_ms
# median_in_statement_ms bare_search_median_ms"
nothing_due() {
	local out calls=() inside=() bare=() line n=0
	out=$(
		{
			echo '\timing on'
			for ((i = 0; i < NOTHING_DUE_CALLS; i++)); do
				echo "SELECT expired_count, extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000
					FROM expire_subscriptions('$AS_OF');"
				echo "SELECT 1 FROM subscriptions WHERE status = 'active' AND expires_at <= '$AS_OF'
					ORDER BY expires_at LIMIT 1;"
			done
		} | psqlc -At
	)
	while IFS= read -r line; do
		if [[ $line =~ ^Time:\ ([0-9.]+)\ ms ]]; then
			if ((n++ % 2)); then
				bare+=("${BASH_REMATCH[1]}")
			else
				calls+=("${BASH_REMATCH[1]}")
			fi
		elif [[ $line =~ ^([0-9]+)\|([0-9.]+)$ ]]; then
			[[ ${BASH_REMATCH[1]} == 0 ]] ||
				fail "(d) $1: expire_subscriptions() expired ${BASH_REMATCH[1]} rows with nothing due"
			inside+=("${BASH_REMATCH[2]}")
		elif [[ $line == 1 ]]; then
			fail "(d) $1: the bare search found a due row"
		fi
	done <<<"$out"
	[[ ${#calls[@]} -eq $NOTHING_DUE_CALLS && ${#inside[@]} -eq $NOTHING_DUE_CALLS &&
		${#bare[@]} -eq $NOTHING_DUE_CALLS ]] ||
		fail "(d) $1: could not read the timings: $out"
	echo "$(median "${calls[@]}") ${calls[0]} $(printf '%s\n' "${calls[@]}" | sort -g | tail -n 1) $(median "${inside[@]}") $(median "${bare[@]}")"
}

say
say "(d) nothing due, $NOTHING_DUE_CALLS calls in one session, each followed by the bare search it makes:"
read -r D_MED D_FIRST D_MAX D_INSIDE D_BARE < <(nothing_due "right after a run")
printf '  right after a run:  median %.3f ms (first call %.3f ms, max %.3f ms); inside the statement %.3f ms; bare search %.3f ms\n' \
	"$D_MED" "$D_FIRST" "$D_MAX" "$D_INSIDE" "$D_BARE"
psqlc -c 'VACUUM ANALYZE subscriptions'
read -r V_MED V_FIRST V_MAX V_INSIDE V_BARE < <(nothing_due "after VACUUM")
printf '  after VACUUM:       median %.3f ms (first call %.3f ms, max %.3f ms); inside the statement %.3f ms; bare search %.3f ms\n' \
	"$V_MED" "$V_FIRST" "$V_MAX" "$V_INSIDE" "$V_BARE"
verify "$AS_OF" "$DUE_COUNT" "nothing-due calls"

say
say "plan of the due search with nothing due (auto_explain of one expire_subscriptions() call):"
out=$(psqlc -At 2>&1 <<EOF
$AUTO_EXPLAIN
SELECT expired_count FROM expire_subscriptions('$AS_OF');
EOF
)
echo "$out" | sed -e 's/^psql:[^ ]* //' -e 's/^/    /'
# The statements that search subscriptions (the due probe, and the UPDATE
# when something is due), up to the run record's INSERT.
update_plan=$(echo "$out" | awk '/Query Text: (SELECT 1 FROM|UPDATE) public.subscriptions/ { p = 1 } p && /Query Text: INSERT/ { p = 0 } p')
PLAN_OK=1
if ! grep -Eq 'Index (Only )?Scan using ix_subscriptions_status_expires_at|Bitmap Index Scan on ix_subscriptions_status_expires_at' <<<"$update_plan" ||
	grep -q 'Seq Scan on subscriptions' <<<"$update_plan"; then
	PLAN_OK=0
fi
PLAN_NODE=$(grep -Eo '(Index Only Scan|Index Scan|Bitmap Index Scan|Seq Scan)( using| on) [a-z_]+' <<<"$update_plan" | head -n 1 || true)

# --- results ----------------------------------------------------------------------

# A run of some cases only (--cases): the medians of those, and w/b when
# both ran; the full table needs every case.
if [[ -n $ONLY_CASES ]]; then
	say
	say "RESULTS (--cases $ONLY_CASES)  $ROWS rows, $DUE_COUNT due, $PAIRS pairs (medians; runs in brackets)"
	for c in A B W P C O OC OU AM; do
		declare -n runs="T_$c"
		[[ ${#runs[@]} -gt 0 ]] &&
			printf '  %-4s %10.3f s   [%s]\n' "$c" "$(median "${runs[@]}")" "$(printf '%.3f ' "${runs[@]}" | sed 's/ $//')"
		unset -n runs
	done
	if [[ ${#T_W[@]} -gt 0 && ${#T_B[@]} -gt 0 ]]; then
		printf '  w/b  %10.3f      longest batch %s s\n' "$(calc "$(median "${T_W[@]}") / $(median "${T_B[@]}")")" \
			"$(printf '%s\n' "${L_W[@]}" | sort -g | tail -n 1)"
	fi
	if [[ ${#T_A[@]} -gt 0 && ${#T_B[@]} -gt 0 ]]; then
		printf '  a/b  %10.3f\n' "$(calc "$(median "${T_A[@]}") / $(median "${T_B[@]}")")"
	fi
	printf '  nothing due: right after a run %.3f ms (bare search %.3f ms), after VACUUM %.3f ms (bare search %.3f ms)\n' \
		"$D_MED" "$D_BARE" "$V_MED" "$V_BARE"
	say "total time: $SECONDS s"
	exit 0
fi

M_A=$(median "${T_A[@]}")
M_B=$(median "${T_B[@]}")
M_W=$(median "${T_W[@]}")
M_P=$(median "${T_P[@]}")
R_RAW=$(calc "$M_A / $M_B")
R_WORKER=$(calc "$M_W / $M_B")
R_CRON=$(calc "$M_P / $M_B")
LONGEST=n/a
if [[ ${L_W[0]} != n/a ]]; then
	LONGEST=$(printf '%s\n' "${L_W[@]}" | sort -g | tail -n 1)
fi

verdict() { # verdict VALUE OP TARGET
	if [[ $1 == n/a ]]; then echo "not measured"; return; fi
	if awk "BEGIN { exit !($1 $2 $3) }"; then echo "met"; else echo "NOT MET"; fi
}
V_RAW=$(verdict "$R_RAW" "<=" "$TARGET_RATIO_RAW")
V_WORKER=$(verdict "$R_WORKER" "<=" "$TARGET_RATIO_WORKER")
V_LONGEST=$(verdict "$LONGEST" "<" "$TARGET_LONGEST_BATCH_S")
V_ND=$(verdict "$D_MED" "<" "$TARGET_NOTHING_DUE_MS")
list() { printf '%.3f ' "$@" | sed 's/ $//'; }
if [[ $LOOPS -eq 1 ]]; then
	M_C=$(median "${T_C[@]}")
	M_O=$(median "${T_O[@]}")
	M_OC=$(median "${T_OC[@]}")
	M_OU=$(median "${T_OU[@]}")
	M_AM=$(median "${T_AM[@]}")
	R_LOOP=$(calc "$M_C / $M_AM")
	R_ORM=$(calc "$M_O / $M_AM")
	R_ORM_COMMIT=$(calc "$M_OC / $M_AM")
	R_ORM_ONCE=$(calc "$M_OU / $M_AM")
	V_ORM_ONCE=$(verdict "$R_ORM_ONCE" ">=" "$TARGET_RATIO_LOOP")
	US_OU=$(calc "$M_OU / $LOOP_ROWS * 1e6")
	V_ORM_COMMIT=$(verdict "$R_ORM_COMMIT" ">=" "$TARGET_RATIO_LOOP")
	US_OC=$(calc "$M_OC / $LOOP_ROWS * 1e6")
	V_LOOP=$(verdict "$R_LOOP" ">=" "$TARGET_RATIO_LOOP")
	V_ORM=$(verdict "$R_ORM" ">=" "$TARGET_RATIO_LOOP")
	US_C=$(calc "$M_C / $LOOP_ROWS * 1e6")
	US_O=$(calc "$M_O / $LOOP_ROWS * 1e6")
	US_AM=$(calc "$M_AM / $LOOP_ROWS * 1e6")
fi

say
say "================================================================================"
say "RESULTS  $ROWS rows, $DUE_COUNT due, $PAIRS pairs (medians; runs in brackets)"
say "  machine: $(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, ${RAM:-?} RAM; ${PG_VERSION%% on *}"
say "  settings: $(echo "$SETTINGS" | paste -sd ';' | sed 's/;/; /g')"
printf '  %-48s %12s   %s\n' "measurement" "median" "runs / target"
printf '  %-48s %10.3f s   [%s]\n' "(a)  expire_subscriptions(), $DUE_COUNT due" "$M_A" "$(list "${T_A[@]}")"
printf '  %-48s %10.3f s   [%s]\n' "(b)  raw UPDATE, $DUE_COUNT due" "$M_B" "$(list "${T_B[@]}")"
printf '  %-48s %10.3f s   [%s]\n' "(w)  worker, batches of $BATCH_SIZE" "$M_W" "$(list "${T_W[@]}")"
printf '  %-48s %10.3f s   [%s]\n' "(p)  PL/pgSQL UPDATE run by pg_cron" "$M_P" "$(list "${T_P[@]}")"
printf '  %-48s %12.3f   target <= %s: %s\n' "     ratio (a)/(b)" "$R_RAW" "$TARGET_RATIO_RAW" "$V_RAW"
printf '  %-48s %12.3f   target <= %s: %s\n' "     ratio (w)/(b)" "$R_WORKER" "$TARGET_RATIO_WORKER" "$V_WORKER"
printf '  %-48s %12.3f\n' "     ratio (p)/(b)" "$R_CRON"
printf '  %-48s %12s   target < %s s: %s\n' "     (w) longest batch transaction, s" "$LONGEST" "$TARGET_LONGEST_BATCH_S" "$V_LONGEST"
if [[ $LOOPS -eq 1 ]]; then
	printf '  %-48s %10.3f s   [%s]  %.1f us/row\n' "(c)  row loop from psql, $LOOP_ROWS rows" "$M_C" "$(list "${T_C[@]}")" "$US_C"
	printf '  %-48s %10.3f s   [%s]  %.1f us/row\n' "(o)  async ORM job, flush a row, $LOOP_ROWS rows" "$M_O" "$(list "${T_O[@]}")" "$US_O"
	printf '  %-48s %10.3f s   [%s]  %.1f us/row\n' "(oc) async ORM job, commit a row, $LOOP_ROWS rows" "$M_OC" "$(list "${T_OC[@]}")" "$US_OC"
	printf '  %-48s %10.3f s   [%s]  %.1f us/row\n' "(ou) async ORM job, commit once, $LOOP_ROWS rows" "$M_OU" "$(list "${T_OU[@]}")" "$US_OU"
	printf '  %-48s %10.3f s   [%s]  %.1f us/row\n' "(a') expire_subscriptions(), same $LOOP_ROWS rows" "$M_AM" "$(list "${T_AM[@]}")" "$US_AM"
	printf '  %-48s %11.1fx   target >= %sx: %s\n' "     ratio (c)/(a'), per equal rows" "$R_LOOP" "$TARGET_RATIO_LOOP" "$V_LOOP"
	printf '  %-48s %11.1fx   target >= %sx: %s\n' "     ratio (o)/(a'), per equal rows" "$R_ORM" "$TARGET_RATIO_LOOP" "$V_ORM"
	printf '  %-48s %11.1fx   target >= %sx: %s\n' "     ratio (oc)/(a'), per equal rows" "$R_ORM_COMMIT" "$TARGET_RATIO_LOOP" "$V_ORM_COMMIT"
	printf '  %-48s %11.1fx   target >= %sx: %s\n' "     ratio (ou)/(a'), per equal rows" "$R_ORM_ONCE" "$TARGET_RATIO_LOOP" "$V_ORM_ONCE"
fi
printf '  %-48s %9.3f ms   first %.3f, max %.3f; inside the statement %.3f; bare search %.3f; target < %s ms: %s\n' \
	"(d)  nothing due, right after a run" "$D_MED" "$D_FIRST" "$D_MAX" "$D_INSIDE" "$D_BARE" "$TARGET_NOTHING_DUE_MS" "$V_ND"
printf '  %-48s %9.3f ms   first %.3f, max %.3f; inside the statement %.3f; bare search %.3f\n' \
	"(d)  nothing due, after VACUUM" "$V_MED" "$V_FIRST" "$V_MAX" "$V_INSIDE" "$V_BARE"
printf '  %-48s %s\n' "(d)  due search plan" "${PLAN_NODE:-not found}$([[ $PLAN_OK -eq 1 ]] || echo '  <- NOT AN INDEX RANGE SCAN')"
say
say "markdown:"
say
say "| measurement ($ROWS rows, $DUE_COUNT due, $PAIRS pairs) | median | runs | target |"
say "| --- | ---: | --- | --- |"
printf '| (a) `expire_subscriptions()`, %s due | %.3f s | %s | |\n' "$DUE_COUNT" "$M_A" "$(list "${T_A[@]}")"
printf '| (b) raw `UPDATE`, %s due | %.3f s | %s | |\n' "$DUE_COUNT" "$M_B" "$(list "${T_B[@]}")"
printf '| (w) worker, batches of %s | %.3f s | %s | |\n' "$BATCH_SIZE" "$M_W" "$(list "${T_W[@]}")"
printf '| (p) PL/pgSQL `UPDATE` run by pg_cron | %.3f s | %s | |\n' "$M_P" "$(list "${T_P[@]}")"
printf '| ratio (a)/(b) | **%.3f** | | <= %s: %s |\n' "$R_RAW" "$TARGET_RATIO_RAW" "$V_RAW"
printf '| ratio (w)/(b) | **%.3f** | | <= %s: %s |\n' "$R_WORKER" "$TARGET_RATIO_WORKER" "$V_WORKER"
printf '| ratio (p)/(b) | %.3f | | |\n' "$R_CRON"
printf '| (w) longest batch transaction | %s s | | < %s s: %s |\n' "$LONGEST" "$TARGET_LONGEST_BATCH_S" "$V_LONGEST"
if [[ $LOOPS -eq 1 ]]; then
	printf '| (c) row loop from psql, %s rows | %.3f s (%.1f us/row) | %s | |\n' "$LOOP_ROWS" "$M_C" "$US_C" "$(list "${T_C[@]}")"
	printf '| (o) async SQLAlchemy ORM job, flush a row, %s rows | %.3f s (%.1f us/row) | %s | |\n' "$LOOP_ROWS" "$M_O" "$US_O" "$(list "${T_O[@]}")"
	printf '| (oc) async SQLAlchemy ORM job, commit a row, %s rows | %.3f s (%.1f us/row) | %s | |\n' "$LOOP_ROWS" "$M_OC" "$US_OC" "$(list "${T_OC[@]}")"
	printf '| (ou) async SQLAlchemy ORM job, commit once, %s rows | %.3f s (%.1f us/row) | %s | |\n' "$LOOP_ROWS" "$M_OU" "$US_OU" "$(list "${T_OU[@]}")"
	printf '| (a'"'"') `expire_subscriptions()`, same %s rows | %.3f s (%.1f us/row) | %s | |\n' "$LOOP_ROWS" "$M_AM" "$US_AM" "$(list "${T_AM[@]}")"
	printf '| ratio (c)/(a'"'"') | %.1fx | | >= %sx: %s |\n' "$R_LOOP" "$TARGET_RATIO_LOOP" "$V_LOOP"
	printf '| ratio (o)/(a'"'"') | **%.1fx** | | >= %sx: %s |\n' "$R_ORM" "$TARGET_RATIO_LOOP" "$V_ORM"
	printf '| ratio (oc)/(a'"'"') | **%.1fx** | | >= %sx: %s |\n' "$R_ORM_COMMIT" "$TARGET_RATIO_LOOP" "$V_ORM_COMMIT"
	printf '| ratio (ou)/(a'"'"') | **%.1fx** | | >= %sx: %s |\n' "$R_ORM_ONCE" "$TARGET_RATIO_LOOP" "$V_ORM_ONCE"
fi
printf '| (d) nothing due, right after a run (median of %s calls) | **%.3f ms** | first %.3f, max %.3f; in statement %.3f; bare search %.3f | < %s ms: %s |\n' \
	"$NOTHING_DUE_CALLS" "$D_MED" "$D_FIRST" "$D_MAX" "$D_INSIDE" "$D_BARE" "$TARGET_NOTHING_DUE_MS" "$V_ND"
printf '| (d) nothing due, after VACUUM (median of %s calls) | %.3f ms | first %.3f, max %.3f; in statement %.3f; bare search %.3f | |\n' \
	"$NOTHING_DUE_CALLS" "$V_MED" "$V_FIRST" "$V_MAX" "$V_INSIDE" "$V_BARE"
printf '| (d) due search plan | %s | | index range scan |\n' "${PLAN_NODE:-not found}"
say
say "Machine: $(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, ${RAM:-?} RAM, storage ${STORAGE:-?}. ${PG_VERSION%% on *}, subexpire $EXT_VERSION, pg_cron $CRON_VERSION."
say "Settings: $(echo "$SETTINGS" | paste -sd ';' | sed 's/;/; /g'); initdb --locale=C; otherwise defaults."
say "================================================================================"
say "total time: $SECONDS s"

# One line for run.sh's table across sizes: rows, due, medians of (a) (b)
# (w) (p), longest batch, (o) (oc) (a') (c) when the loops ran, nothing due
# after a run and after VACUUM (ms), pairs, loop rows, the bare search
# after a run and after VACUUM (ms), (ou) when the loops ran.
if [[ -n $SUMMARY ]]; then
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
		"$ROWS" "$DUE_COUNT" "$M_A" "$M_B" "$M_W" "$M_P" "$LONGEST" \
		"${M_O:-}" "${M_OC:-}" "${M_AM:-}" "${M_C:-}" "$D_MED" "$V_MED" "$PAIRS" \
		"$LOOP_ROWS" "$D_BARE" "$V_BARE" "${M_OU:-}" >>"$SUMMARY"
fi

if [[ $PLAN_OK -ne 1 ]]; then
	fail "with nothing due, expire_subscriptions() did not search with an index range scan on ix_subscriptions_status_expires_at"
fi
