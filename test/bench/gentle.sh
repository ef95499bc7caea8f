#!/usr/bin/env bash
#
# test/bench/gentle.sh: does the worker's expiry hurt the application?
#
# An application workload on the subscriptions table (pgbench: 80 % reads
# of a user's subscription by e-mail, 20 % renewals of a random user's
# subscription, at a fixed rate from several clients) runs for --seconds,
# once with no expiry running (base) and once while the background worker
# expires --due-rows subscriptions in batches (expiry), in pairs whose
# order alternates, each from the same starting state (a fresh copy of the
# loaded database).  Reports, for each, the transactions per second and the
# latency percentiles of the transactions that ended while the worker ran
# (base: of all), and the longest lock wait of any application statement
# (log_lock_waits, deadlock_timeout = 10ms: a wait shorter than 10 ms is
# not logged), next to the worker's longest batch transaction.  Latency is
# reported twice: as pgbench sees it (from each transaction's scheduled
# start to its end, so it includes the client's own waits for a CPU, which
# on a small machine it shares with the server), and as the server sees it
# (each statement's duration, commit included, from log_min_duration_statement
# set for the workload's sessions only).
#
# With --compare-batch-size B2, each pair also runs the expiry at batch
# size B2 (expiry2), on the same data, the order of the three alternating
# (base expiry expiry2, then expiry2 expiry base), and reports both.
#
# Run (the extension, postgresql-15-cron and pgbench installed):
#   test/bench/gentle.sh                        # 5M rows, 1M due, 3 pairs
#   test/bench/gentle.sh --rows 50000 --due-rows 10000 --pairs 1 --seconds 15
#   test/bench/gentle.sh --rows 1000000 --due-rows 200000 --compare-batch-size 10000
# Options: --rows N (5000000), --due-rows M (1000000), --pairs K (3),
# --seconds S (60: must cover the worker's run), --clients C (4),
# --rate TPS (400, all clients together), --batch-size B (the worker's
# subexpire.batch_size; default its default), --compare-batch-size B2,
# --set 'NAME = VALUE' (a server setting, repeatable), --keep.

set -euo pipefail

ROWS=5000000
DUE_ROWS=1000000
PAIRS=3
RUN_SECONDS=60
CLIENTS=4
RATE=400
BATCH=
COMPARE_BATCH=
SETTINGS_EXTRA=
KEEP=0
# The worker starts this long after the workload, so that the workload's
# start-up is not in the window.
LEAD_SECONDS=5

# Targets (informational).
TARGET_P99_RATIO=2

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
	sed -n '3,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
	exit "${1:-0}"
}

die() {
	echo "gentle.sh: $*" >&2
	exit 2
}

while [[ $# -gt 0 ]]; do
	case $1 in
		--rows) ROWS=${2:?}; shift 2 ;;
		--due-rows) DUE_ROWS=${2:?}; shift 2 ;;
		--pairs) PAIRS=${2:?}; shift 2 ;;
		--seconds) RUN_SECONDS=${2:?}; shift 2 ;;
		--clients) CLIENTS=${2:?}; shift 2 ;;
		--rate) RATE=${2:?}; shift 2 ;;
		--batch-size) BATCH=${2:?}; shift 2 ;;
		--compare-batch-size) COMPARE_BATCH=${2:?}; shift 2 ;;
		--set) SETTINGS_EXTRA+="${2:?}"$'\n'; shift 2 ;;
		--keep) KEEP=1; shift ;;
		-h|--help) usage 0 ;;
		*) echo "gentle.sh: unknown option $1" >&2; usage 2 >&2 ;;
	esac
done
for v in ROWS DUE_ROWS PAIRS RUN_SECONDS CLIENTS RATE; do
	[[ ${!v} =~ ^[0-9]+$ && ${!v} -ge 1 ]] || die "--$(echo "$v" | tr 'A-Z_' 'a-z-') must be a positive integer"
done
[[ $DUE_ROWS -lt $ROWS ]] || die "--due-rows must be less than --rows"
[[ -z $COMPARE_BATCH || ($COMPARE_BATCH =~ ^[0-9]+$ && $COMPARE_BATCH -ge 1) ]] ||
	die "--compare-batch-size must be a positive integer"
[[ $RUN_SECONDS -gt $((LEAD_SECONDS + 5)) ]] || die "--seconds must be more than $((LEAD_SECONDS + 5))"

# The application's statements wait for row locks; log each wait longer
# than deadlock_timeout, with the waiting process's application name.
EXTRA_CONF="log_lock_waits = on
deadlock_timeout = 10ms
log_line_prefix = '%m %n [%p] %a: '
$SETTINGS_EXTRA"
. "$HERE/lib.sh"
PGBENCH=$BINDIR/pgbench
[[ -x $PGBENCH ]] || die "no pgbench in $BINDIR (Debian: postgresql-contrib)"

bench_start_cluster
say "subexpire gentleness benchmark"
say "  machine:  $MACHINE"
say "  server:   ${PG_VERSION%% on *}; subexpire $EXT_VERSION; worker batch_size $BATCH_SIZE${COMPARE_BATCH:+, and $COMPARE_BATCH (expiry2)}"
say "  data:     $ROWS subscriptions, $DUE_ROWS due; pairs $PAIRS of $RUN_SECONDS s"
[[ -z $SETTINGS_EXTRA ]] || say "  settings: $(printf '%s' "$SETTINGS_EXTRA" | paste -sd ';' | sed 's/;/; /g')"
say "  workload: pgbench, $CLIENTS clients, $RATE transactions/s in all (--rate): 80 % read, 20 % renewal"
T0=$SECONDS
bench_load "$ROWS" "$DUE_ROWS"
say "  loaded in $((SECONDS - T0)) s"
say

cat >"$WORK/read.sql" <<EOF
\set k random(1, $ROWS)
SELECT s.id, s.plan, s.status, s.expires_at
FROM subscriptions AS s JOIN users AS u ON u.id = s.user_id
WHERE u.email = 'user' || :k || '@example.com';
EOF
cat >"$WORK/renew.sql" <<EOF
\set k random(1, $ROWS)
UPDATE subscriptions
SET status = 'active', expires_at = greatest(expires_at, now()) + interval '30 days',
    updated_at = now()
WHERE user_id = (SELECT id FROM users WHERE email = 'user' || :k || '@example.com');
EOF
[[ $EUID -ne 0 ]] || chown postgres: "$WORK"/*.sql

# workload NAME: pgbench for RUN_SECONDS, each transaction logged to
# $WORK/NAME.* (client, number, latency us, script, end epoch s, us, lag).
workload() {
	PGAPPNAME=pgbench PGOPTIONS='-c log_min_duration_statement=0' "$PGBENCH" -n -h "$WORK" -p "$PORT" -U "$DBUSER" \
		-c "$CLIENTS" -j 2 -R "$RATE" -T "$RUN_SECONDS" \
		-f "$WORK/read.sql@8" -f "$WORK/renew.sql@2" \
		-l --log-prefix="$WORK/$1" bench >"$WORK/$1.out" 2>&1 ||
		{ cat "$WORK/$1.out" >&2; fail "pgbench failed ($1)"; }
}

# percentiles: of the numbers on stdin, "count p50 p99 max" (nearest rank).
percentiles() {
	sort -g | awk '{ v[NR] = $1 }
		function pct(p,   i) { i = int(NR * p + 0.999999); return v[i < 1 ? 1 : i] }
		END { if (NR == 0) print "0 0 0 0"; else printf "%d %.3f %.3f %.3f\n", NR, pct(0.5), pct(0.99), v[NR] }'
}

# stats NAME FROM TO: "count tps p50_ms p99_ms max_ms reads_p99_ms
# renewals_p99_ms" of the transactions of NAME that ended in [FROM, TO]
# (epoch seconds).
stats() {
	local n p50 p99 max rn rp50 rp99 rmax
	cat "$WORK/$1".[0-9]* | awk -v from="$2" -v to="$3" \
		'{ t = $5 + $6 / 1e6 } t >= from && t <= to { print $4, $3 / 1000 }' >"$WORK/$1.window"
	read -r n p50 p99 max < <(awk '{ print $2 }' "$WORK/$1.window" | percentiles)
	read -r _ _ qp99 _ < <(awk '$1 == 0 { print $2 }' "$WORK/$1.window" | percentiles)
	read -r _ _ rp99 _ < <(awk '$1 == 1 { print $2 }' "$WORK/$1.window" | percentiles)
	echo "$n $(calc "$n / ($3 - $2)") $p50 $p99 $max $qp99 $rp99"
}

# server_stats OFFSET FROM TO: "p99_ms reads_p99_ms renewals_p99_ms" of
# the workload's statement durations that the server logged after byte
# OFFSET of its log and that ended in [FROM, TO] (epoch seconds, %n).
server_stats() {
	local p99 qp99 rp99
	tail -c +"$(($1 + 1))" "$LOG" | awk -v from="$2" -v to="$3" '
		$4 >= from && $4 <= to && / pgbench: LOG:  duration: / {
			for (i = 1; i <= NF; i++) if ($i == "duration:") v = $(i + 1)
			kind = / statement: SELECT / ? 0 : 1
			print kind, v
		}' >"$WORK/server.window"
	read -r _ _ p99 _ < <(awk '{ print $2 }' "$WORK/server.window" | percentiles)
	read -r _ _ qp99 _ < <(awk '$1 == 0 { print $2 }' "$WORK/server.window" | percentiles)
	read -r _ _ rp99 _ < <(awk '$1 == 1 { print $2 }' "$WORK/server.window" | percentiles)
	echo "$p99 $qp99 $rp99"
}

# The longest lock wait of an application statement, in ms, logged since
# byte OFFSET of the server log ("acquired ... after N ms"); waits still
# going on at the end count as "still waiting".
longest_app_wait() {
	tail -c +"$(($1 + 1))" "$LOG" | awk '
		/ pgbench: .* acquired .* after [0-9.]+ ms/ {
			for (i = 1; i <= NF; i++) if ($i == "after") { v = $(i + 1) + 0; if (v > m) m = v }
			n++
		}
		END { printf "%.1f %d\n", m, n }'
}

declare -a B_P99=() B_SP99=() B_TPS=() ROWS_OUT=()
declare -a E_P99=() E_SP99=() E_TPS=() E_RUN=() E_WAIT=() E_LONGEST=()
declare -a F_P99=() F_SP99=() F_TPS=() F_RUN=() F_WAIT=() F_LONGEST=()

# set_batch_size B: the worker's subexpire.batch_size, once a new session
# sees it
set_batch_size() {
	psqlpg -c "ALTER SYSTEM SET subexpire.batch_size = $1" -c 'SELECT pg_reload_conf()' >/dev/null
	wait_until "subexpire.batch_size = $1" postgres 30 \
		"SELECT current_setting('subexpire.batch_size') = '$1'"
}

# run_phase PAIR PHASE: base (the workload alone), expiry (with the worker
# at BATCH_SIZE) or expiry2 (at COMPARE_BATCH), whose figures go to the
# arrays B_*, E_* or F_*.
run_phase() {
	local pair=$1 phase=$2 name="$2_$1" offset from to out run_out n secs longest wait waits
	local a=E
	restore
	if [[ $phase == expiry2 ]]; then
		a=F
		set_batch_size "$COMPARE_BATCH"
	elif [[ $phase == expiry && -n $COMPARE_BATCH ]]; then
		set_batch_size "$BATCH_SIZE"
	fi
	offset=$(stat -c %s "$LOG")
	if [[ $phase == base ]]; then
		from=$(date +%s.%N)
		workload "$name"
		to=$(date +%s.%N)
		out=$(stats "$name" "$from" "$to")
		read -r n tps p50 p99 max qp99 rp99 <<<"$out"
		read -r sp99 sqp99 srp99 < <(server_stats "$offset" "$from" "$to")
		B_P99+=("$p99"); B_TPS+=("$tps"); B_SP99+=("$sp99")
		printf '  pair %d  base     %6d tx  %7.1f tx/s  p50 %7.3f ms  p99 %7.3f ms  max %8.3f ms  p99 reads %7.3f, renewals %7.3f ms\n' \
			"$pair" "$n" "$tps" "$p50" "$p99" "$max" "$qp99" "$rp99"
		printf '                  server: p99 %7.3f ms; reads %7.3f, renewals %7.3f ms\n' "$sp99" "$sqp99" "$srp99"
	else
		workload "$name" &
		local wl=$!
		sleep "$LEAD_SECONDS"
		run_out=$(bench_worker_run)
		wait "$wl" || fail "pgbench failed ($name)"
		read -r n secs longest <<<"$run_out"
		read -r from to < <(psqlc -At -F ' ' -c "SELECT extract(epoch FROM min(started_at)),
			extract(epoch FROM max(finished_at)) FROM subexpire_runs
			WHERE trigger <> 'manual' AND expired_count > 0")
		awk -v to="$to" -v end="$(date +%s.%N)" 'BEGIN { exit !(to < end) }' ||
			fail "the worker's run outlasted the workload: raise --seconds"
		read -r wait waits < <(longest_app_wait "$offset")
		out=$(stats "$name" "$from" "$to")
		read -r tn tps p50 p99 max qp99 rp99 <<<"$out"
		read -r sp99 sqp99 srp99 < <(server_stats "$offset" "$from" "$to")
		eval "${a}_SP99+=(\"\$sp99\") ${a}_P99+=(\"\$p99\") ${a}_TPS+=(\"\$tps\")"
		eval "${a}_RUN+=(\"\$secs\") ${a}_WAIT+=(\"\$wait\") ${a}_LONGEST+=(\"\$longest\")"
		ROWS_OUT+=("$n")
		printf '  pair %d  %-8s %6d tx  %7.1f tx/s  p50 %7.3f ms  p99 %7.3f ms  max %8.3f ms  p99 reads %7.3f, renewals %7.3f ms\n' \
			"$pair" "$phase" "$tn" "$tps" "$p50" "$p99" "$max" "$qp99" "$rp99"
		printf '                  server: p99 %7.3f ms; reads %7.3f, renewals %7.3f ms\n' "$sp99" "$sqp99" "$srp99"
		printf '                  worker: %s rows in %.3f s; longest batch %s s; application lock waits over 10 ms: %s, longest %s ms\n' \
			"$n" "$secs" "$longest" "$waits" "$wait"
	fi
}

say "runs (each from the same starting state; order alternates between pairs):"
phases=(base expiry)
[[ -z $COMPARE_BATCH ]] || phases+=(expiry2)
for ((pair = 1; pair <= PAIRS; pair++)); do
	if ((pair % 2)); then
		order=("${phases[@]}")
	else
		order=()
		for ((i = ${#phases[@]} - 1; i >= 0; i--)); do order+=("${phases[i]}"); done
	fi
	for phase in "${order[@]}"; do run_phase "$pair" "$phase"; done
done

M_BP99=$(median "${B_P99[@]}")
M_BTPS=$(median "${B_TPS[@]}")
M_BSP99=$(median "${B_SP99[@]}")

# expiry_rows PREFIX BATCH: the result rows of the expiry phases whose
# figures are in the arrays PREFIX_*, the worker at batch size BATCH
expiry_rows() {
	local -n p99s=$1_P99 sp99s=$1_SP99 tpss=$1_TPS runs=$1_RUN waits=$1_WAIT longests=$1_LONGEST
	local m_p99 m_sp99 r_p99 r_sp99 v_p99 v_sp99 v_wait max_wait max_longest
	m_p99=$(median "${p99s[@]}")
	m_sp99=$(median "${sp99s[@]}")
	r_p99=$(calc "$m_p99 / $M_BP99")
	r_sp99=$(calc "$m_sp99 / $M_BSP99")
	max_wait=$(printf '%s\n' "${waits[@]}" | sort -g | tail -n 1)
	max_longest=$(printf '%s\n' "${longests[@]}" | sort -g | tail -n 1)
	if awk "BEGIN { exit !($r_p99 <= $TARGET_P99_RATIO) }"; then v_p99=met; else v_p99="NOT MET"; fi
	if awk "BEGIN { exit !($r_sp99 <= $TARGET_P99_RATIO) }"; then v_sp99=met; else v_sp99="NOT MET"; fi
	v_wait="not measured (no longest_batch in subexpire_runs)"
	if [[ $max_longest != n/a ]]; then
		if awk "BEGIN { exit !($max_wait <= $max_longest * 1000) }"; then v_wait=met; else v_wait="NOT MET"; fi
	fi
	printf '| while the worker expires, batch_size %s (%s s median) | %.1f | %.3f ms | %s | %.3f ms | %s | |\n' "$2" "$(median "${runs[@]}")" "$(median "${tpss[@]}")" "$m_p99" "$(printf '%s ' "${p99s[@]}")" "$m_sp99" "$(printf '%s ' "${sp99s[@]}")"
	printf '| p99 ratio, batch_size %s | | **%.2f** | %s | **%.2f** | %s | <= %s |\n' "$2" "$r_p99" "$v_p99" "$r_sp99" "$v_sp99" "$TARGET_P99_RATIO"
	printf '| longest application lock wait, batch_size %s | | %s ms | longest batch %s s | | | <= one batch: %s |\n' "$2" "$max_wait" "$max_longest" "$v_wait"
}

say
say "================================================================================"
say "RESULTS  $ROWS rows, ${ROWS_OUT[0]} expired by the worker, $PAIRS pairs (medians)"
say
say "| workload ($CLIENTS clients, $RATE tx/s offered) | tx/s | p99 latency, pgbench | runs (p99, ms) | p99 statement, server | runs (p99, ms) | target |"
say "| --- | ---: | ---: | --- | ---: | --- | --- |"
printf '| no expiry running | %.1f | %.3f ms | %s | %.3f ms | %s | |\n' "$M_BTPS" "$M_BP99" "$(printf '%s ' "${B_P99[@]}")" "$M_BSP99" "$(printf '%s ' "${B_SP99[@]}")"
expiry_rows E "$BATCH_SIZE"
[[ -z $COMPARE_BATCH ]] || expiry_rows F "$COMPARE_BATCH"
say
say "Machine: $MACHINE. ${PG_VERSION%% on *}, subexpire $EXT_VERSION."
say "================================================================================"
say "total time: $SECONDS s"
