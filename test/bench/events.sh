#!/usr/bin/env bash
#
# test/bench/events.sh: what the events outbox costs a run, and how fast a
# consumer takes the events.
#
# The reference schema at --rows subscriptions (bench_load), --due of them
# due, and two rules of the same transition (active -> expired) on it:
# 'with-events' (emit_events) and 'without'.  Timed, in --pairs pairs
# whose order alternates, each case on a fresh copy of the same starting
# state (restore), psql's \timing:
#   (b) the raw UPDATE
#   (n) SELECT * FROM expire_subscriptions(cutoff, rule_name => 'without')
#   (e) SELECT * FROM expire_subscriptions(cutoff, rule_name => 'with-events')
#   (wn), (we) the worker's batched run, with only 'without' or only
#       'with-events' enabled, timed from its run record
# Every case must expire exactly the due rows; (e) must leave one event for
# each, by key, and (n) none; so must (we) and (wn).  After each (e) and
# (we), the events are taken and
# deleted the way a consumer does, in transactions of --take rows
# (SELECT count(*) FROM subexpire_take_events(--take), one psql statement
# each, until one takes none), timed from the first take to the last.
# Prints the medians, e/n (target: 1.6), e/b and we/wn, and the rows
# taken a second.
#
# Run (the extension installed; as root the server runs as postgres):
#   test/bench/events.sh                   # 1M rows, 200k due, 4 pairs
#   test/bench/events.sh --rows 20000 --due 4000 --pairs 1
# Options: --rows N, --due M, --pairs K, --take T (1000), --keep.

set -euo pipefail

ROWS=1000000
DUE=200000
PAIRS=4
TAKE=1000
KEEP=0
TARGET=1.6

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
	sed -n '3,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
	exit "${1:-0}"
}

die() {
	echo "events.sh: $*" >&2
	exit 2
}

while [[ $# -gt 0 ]]; do
	case $1 in
		--rows) ROWS=$2; shift 2 ;;
		--due) DUE=$2; shift 2 ;;
		--pairs) PAIRS=$2; shift 2 ;;
		--take) TAKE=$2; shift 2 ;;
		--keep) KEEP=1; shift ;;
		-h | --help) usage 0 ;;
		*) die "unknown option $1 (see --help)" ;;
	esac
done
[[ $DUE -ge 1 && $DUE -lt $ROWS ]] || die "--due must be at least 1 and less than --rows"
[[ $TAKE -ge 1 ]] || die "--take must be at least 1"

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
. "$HERE/lib.sh"

say "== events benchmark: $ROWS rows, $DUE due, $PAIRS pairs, taken $TAKE at a time"
bench_start_cluster
bench_load "$ROWS" "$DUE"

psqlstart >/dev/null <<SQL
INSERT INTO subexpire_rules (rule_name, target_table, emit_events)
VALUES ('with-events', 'public.subscriptions', true),
       ('without', 'public.subscriptions', false);
CHECKPOINT;
SQL
D=$(psqlstart -At -c "SELECT count(*) FROM subscriptions WHERE status = 'active' AND expires_at <= '$AS_OF'")
say "due: $D"

RAW="UPDATE subscriptions SET status = 'expired', updated_at = now()
 WHERE status = 'active' AND expires_at <= '$AS_OF';"
FUN_N="SELECT * FROM expire_subscriptions('$AS_OF', rule_name => 'without');"
FUN_E="SELECT * FROM expire_subscriptions('$AS_OF', rule_name => 'with-events');"

# check CASE EVENTS: nothing left due, and EVENTS events, one for each row
# that the run expired (those it gave its time as updated_at)
check() {
	local left events unmatched
	left=$(psqlc -At -c "SELECT count(*) FROM subscriptions WHERE status = 'active' AND expires_at <= '$AS_OF'")
	[[ $left == 0 ]] || fail "$1 left $left rows due"
	events=$(psqlc -At -c "SELECT count(*) FROM subexpire_events")
	[[ $events == "$2" ]] || fail "$1 wrote $events events, not $2"
	if [[ $2 -gt 0 ]]; then
		unmatched=$(psqlc -At -c "SELECT count(*) FROM subscriptions s
			FULL JOIN subexpire_events e ON e.row_key = jsonb_build_object('id', s.id)
			WHERE (s.status = 'expired' AND e.event_id IS NULL
			       AND s.updated_at IN (SELECT started_at FROM subexpire_runs))
			   OR s.id IS NULL")
		[[ $unmatched == 0 ]] || fail "$1: $unmatched expired rows and events do not match by key"
	fi
}

# take: the events taken, $TAKE a transaction, until none is left; seconds
take() {
	local n=$(((D + TAKE - 1) / TAKE + 1)) t left
	t=$(for ((i = 0; i < n; i++)); do
		echo "SELECT count(*) FROM subexpire_take_events($TAKE);"
	done | timed "$(cat)")
	left=$(psqlc -At -c "SELECT count(*) FROM subexpire_events")
	[[ $left == 0 ]] || fail "taking left $left events"
	echo "$t"
}

run_case() {
	local c=$1 t
	restore
	case $c in
		b) t=$(timed "$RAW"); check b 0 ;;
		n) t=$(timed "$FUN_N"); check n 0 ;;
		e) t=$(timed "$FUN_E"); check e "$D" ;;
		wn | we)
			psqlc -c "UPDATE subexpire_rules SET enabled = (rule_name = '$([[ $c == we ]] && echo with-events || echo without)')" >/dev/null
			read -r _ t _ <<<"$(bench_worker_run)"
			check "$c" "$([[ $c == we ]] && echo "$D" || echo 0)"
			;;
	esac
	eval "T_$c+=(\"$t\")"
	say "  $c: $t s"
	if [[ $c == e || $c == we ]]; then
		t=$(take)
		T_take+=("$t")
		say "  take: $t s"
	fi
}

T_b=() T_n=() T_e=() T_wn=() T_we=() T_take=()
for ((pair = 1; pair <= PAIRS; pair++)); do
	say "-- pair $pair"
	if ((pair % 2)); then order=(b n e wn we); else order=(we wn e n b); fi
	for c in "${order[@]}"; do run_case "$c"; done
done

M_b=$(median "${T_b[@]}") M_n=$(median "${T_n[@]}") M_e=$(median "${T_e[@]}")
M_wn=$(median "${T_wn[@]}") M_we=$(median "${T_we[@]}")
M_take=$(median "${T_take[@]}")
R_EN=$(calc "$M_e / $M_n") R_EB=$(calc "$M_e / $M_b") R_NB=$(calc "$M_n / $M_b")
R_W=$(calc "$M_we / $M_wn")
RATE=$(calc "$D / $M_take")
say "================================================================================"
say "Machine: $MACHINE; $PG_VERSION; subexpire $EXT_VERSION"
say "$ROWS rows, $D due, $PAIRS pairs, medians:"
say "| case | median s | all runs |"
say "| --- | --- | --- |"
say "| (b) raw UPDATE | $M_b | ${T_b[*]} |"
say "| (n) expire_subscriptions(), rule without events | $M_n | ${T_n[*]} |"
say "| (e) expire_subscriptions(), rule with emit_events | $M_e | ${T_e[*]} |"
say "| (wn) the worker's run, batches of $BATCH_SIZE, rule without events | $M_wn | ${T_wn[*]} |"
say "| (we) the worker's run, batches of $BATCH_SIZE, rule with emit_events | $M_we | ${T_we[*]} |"
say "| taking the $D events, $TAKE a transaction | $M_take | ${T_take[*]} |"
say "e/n = $R_EN (target <= $TARGET); e/b = $R_EB; n/b = $R_NB; we/wn = $R_W"
say "taken: $RATE events a second"
