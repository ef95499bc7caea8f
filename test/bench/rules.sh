#!/usr/bin/env bash
#
# test/bench/rules.sh: lifecycle rules against the raw UPDATEs they stand for.
#
# The reference schema at --rows subscriptions (bench_load), whose --due due
# rows are split in three: a third stay active, a third become trialing,
# a third past_due.  Three rules expire them in one run:
#   period-end  active   -> expired
#   trial-end   trialing -> expired
#   grace-end   past_due -> canceled, set_columns {"plan": "free"}
# Timed, in --pairs pairs whose order alternates, each case on a fresh copy
# of the same starting state (restore), psql's \timing:
#   (b3) the three raw UPDATEs, one after another, in one transaction
#   (a3) SELECT * FROM expire_subscriptions(cutoff): the three rules
#   (bs) the raw UPDATE of grace-end alone, with the same SET (plan = 'free')
#   (as) SELECT * FROM expire_subscriptions(cutoff, rule_name => 'grace-end')
# Every case must change exactly the rows it is due to change.  Prints the
# medians and the ratios a3/b3 and as/bs (targets: 1.15 each).
#
# Run (the extension installed; as root the server runs as postgres):
#   test/bench/rules.sh                    # 1M rows, 200k due, 4 pairs
#   test/bench/rules.sh --rows 20000 --due 4000 --pairs 1
# Options: --rows N, --due M, --pairs K, --keep.

set -euo pipefail

ROWS=1000000
DUE=200000
PAIRS=4
KEEP=0
TARGET=1.15

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
	sed -n '3,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
	exit "${1:-0}"
}

die() {
	echo "rules.sh: $*" >&2
	exit 2
}

while [[ $# -gt 0 ]]; do
	case $1 in
		--rows) ROWS=$2; shift 2 ;;
		--due) DUE=$2; shift 2 ;;
		--pairs) PAIRS=$2; shift 2 ;;
		--keep) KEEP=1; shift ;;
		-h | --help) usage 0 ;;
		*) die "unknown option $1 (see --help)" ;;
	esac
done
[[ $DUE -ge 3 && $DUE -lt $ROWS ]] || die "--due must be at least 3 and less than --rows"

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
. "$HERE/lib.sh"

say "== rules benchmark: $ROWS rows, $DUE due in three rules, $PAIRS pairs"
bench_start_cluster
bench_load "$ROWS" "$DUE"

# A third of the due rows trialing, a third past_due; the rules.
psqlstart >/dev/null <<SQL
WITH due AS (
    SELECT id, row_number() OVER (ORDER BY id) AS n FROM subscriptions
    WHERE status = 'active' AND expires_at <= '$AS_OF'
)
UPDATE subscriptions s
SET status = CASE WHEN due.n % 3 = 1 THEN 'trialing' ELSE 'past_due' END
FROM due WHERE s.id = due.id AND due.n % 3 <> 0;
VACUUM (FREEZE, ANALYZE) subscriptions;
INSERT INTO subexpire_rules (rule_name, target_table, from_status, to_status, run_order)
VALUES ('period-end', 'public.subscriptions', 'active', 'expired', 10),
       ('trial-end', 'public.subscriptions', 'trialing', 'expired', 20);
INSERT INTO subexpire_rules (rule_name, target_table, from_status, to_status,
                             set_columns, run_order)
VALUES ('grace-end', 'public.subscriptions', 'past_due', 'canceled',
        '{"plan": "free"}', 30);
CHECKPOINT;
SQL
read -r D_ACTIVE D_TRIAL D_PAST <<<"$(psqlstart -At -F ' ' -c "
    SELECT count(*) FILTER (WHERE status = 'active'),
           count(*) FILTER (WHERE status = 'trialing'),
           count(*) FILTER (WHERE status = 'past_due')
    FROM subscriptions WHERE expires_at <= '$AS_OF'")"
say "due: $D_ACTIVE active, $D_TRIAL trialing, $D_PAST past_due"

RAW3="BEGIN;
UPDATE subscriptions SET status = 'expired', updated_at = now()
 WHERE status = 'active' AND expires_at <= '$AS_OF';
UPDATE subscriptions SET status = 'expired', updated_at = now()
 WHERE status = 'trialing' AND expires_at <= '$AS_OF';
UPDATE subscriptions SET status = 'canceled', updated_at = now(), plan = 'free'
 WHERE status = 'past_due' AND expires_at <= '$AS_OF';
COMMIT;"
RAWS="UPDATE subscriptions SET status = 'canceled', updated_at = now(), plan = 'free'
 WHERE status = 'past_due' AND expires_at <= '$AS_OF';"
FUN3="SELECT * FROM expire_subscriptions('$AS_OF');"
FUNS="SELECT * FROM expire_subscriptions('$AS_OF', rule_name => 'grace-end');"

# check CASE ACTIVE TRIAL PAST: what is left due, and the plans, after a case
check() {
	local left
	left=$(psqlc -At -F ' ' -c "
		SELECT count(*) FILTER (WHERE status = 'active'),
		       count(*) FILTER (WHERE status = 'trialing'),
		       count(*) FILTER (WHERE status = 'past_due')
		FROM subscriptions WHERE expires_at <= '$AS_OF'")
	[[ $left == "$2 $3 $4" ]] || fail "$1 left $left due (active trialing past_due), not $2 $3 $4"
	local free
	free=$(psqlc -At -c "SELECT count(*) FROM subscriptions WHERE status = 'canceled' AND plan <> 'free'")
	[[ $free == 0 ]] || fail "$1 canceled $free rows without setting the plan"
}

run_case() {
	local c=$1 t
	restore
	case $c in
		b3) t=$(timed "$RAW3"); check b3 0 0 0 ;;
		a3) t=$(timed "$FUN3"); check a3 0 0 0 ;;
		bs) t=$(timed "$RAWS"); check bs "$D_ACTIVE" "$D_TRIAL" 0 ;;
		as) t=$(timed "$FUNS"); check as "$D_ACTIVE" "$D_TRIAL" 0 ;;
	esac
	eval "T_$c+=(\"$t\")"
	say "  $c: $t s"
}

T_b3=() T_a3=() T_bs=() T_as=()
for ((pair = 1; pair <= PAIRS; pair++)); do
	say "-- pair $pair"
	if ((pair % 2)); then order=(b3 a3 bs as); else order=(as bs a3 b3); fi
	for c in "${order[@]}"; do run_case "$c"; done
done

M_b3=$(median "${T_b3[@]}") M_a3=$(median "${T_a3[@]}")
M_bs=$(median "${T_bs[@]}") M_as=$(median "${T_as[@]}")
R3=$(calc "$M_a3 / $M_b3") RS=$(calc "$M_as / $M_bs")
say "================================================================================"
say "Machine: $MACHINE; $PG_VERSION; subexpire $EXT_VERSION"
say "$ROWS rows, $DUE due ($D_ACTIVE active, $D_TRIAL trialing, $D_PAST past_due), $PAIRS pairs, medians:"
say "| case | median s | all runs |"
say "| --- | --- | --- |"
say "| (b3) three raw UPDATEs, one transaction | $M_b3 | ${T_b3[*]} |"
say "| (a3) expire_subscriptions(), three rules | $M_a3 | ${T_a3[*]} |"
say "| (bs) raw UPDATE with SET plan = 'free' | $M_bs | ${T_bs[*]} |"
say "| (as) the grace-end rule alone (set_columns) | $M_as | ${T_as[*]} |"
say "a3/b3 = $R3 (target <= $TARGET); as/bs = $RS (target <= $TARGET)"
