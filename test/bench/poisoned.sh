#!/usr/bin/env bash
#
# test/bench/poisoned.sh: what due rows whose update fails cost a run.
#
# The reference schema at --rows subscriptions (bench_load), --due of them
# due, with a BEFORE UPDATE trigger that raises for the rows it is told
# to fail, the way a billing-sync trigger does when its remote call fails.
# Which rows fail is set per database (bench.poison): 'none', 'one' (the
# due row in the middle of the table) or 'many' (about --poisoned due
# rows spread over the table, by a hash of their id); the trigger checks
# the setting only for rows being expired, so 'none' costs it a call a row.
# Timed, in --pairs pairs whose order alternates, each case on a fresh copy
# of the same starting state (restore), psql's \timing:
#   (b)  the raw UPDATE, trigger disabled
#   (c)  SELECT * FROM expire_subscriptions(), trigger disabled
#   (bt) the raw UPDATE, with the trigger, no row failing
#   (ct) expire_subscriptions(), with the trigger, no row failing
#   (p1) expire_subscriptions(), one row failing
#   (pm) expire_subscriptions(), the --poisoned rows failing
#   (wc), (w1), (wm) the worker's batched run, no row, one row, the
#        --poisoned rows failing, timed from its run record
# Every case must expire every due row but the failing ones, and record
# exactly those in subexpire_row_errors.  Prints the medians, p1/ct and
# w1/wc (target: 2), pm/ct and wm/wc (target: 3), and c/b and ct/bt (the
# clean run against the raw UPDATE).
#
# Run (the extension installed; as root the server runs as postgres):
#   test/bench/poisoned.sh                 # 1M rows, 200k due, 100 failing, 3 pairs
#   test/bench/poisoned.sh --rows 20000 --due 4000 --poisoned 10 --pairs 1
# Options: --rows N, --due M, --poisoned P, --pairs K, --keep.

set -euo pipefail

ROWS=1000000
DUE=200000
POISONED=100
PAIRS=3
KEEP=0

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
	sed -n '3,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
	exit "${1:-0}"
}

die() {
	echo "poisoned.sh: $*" >&2
	exit 2
}

while [[ $# -gt 0 ]]; do
	case $1 in
		--rows) ROWS=$2; shift 2 ;;
		--due) DUE=$2; shift 2 ;;
		--poisoned) POISONED=$2; shift 2 ;;
		--pairs) PAIRS=$2; shift 2 ;;
		--keep) KEEP=1; shift ;;
		-h | --help) usage 0 ;;
		*) die "unknown option $1 (see --help)" ;;
	esac
done
[[ $DUE -ge 1 && $DUE -lt $ROWS ]] || die "--due must be at least 1 and less than --rows"
[[ $POISONED -ge 2 && $POISONED -le $DUE ]] || die "--poisoned must be at least 2 and at most --due"

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
. "$HERE/lib.sh"

say "== poisoned rows benchmark: $ROWS rows, $DUE due, 1 or about $POISONED failing, $PAIRS pairs"
bench_start_cluster
bench_load "$ROWS" "$DUE"

DUE_ROWS="status = 'active' AND expires_at <= '$AS_OF'"
MODULUS=$((DUE / POISONED))
psqlstart >/dev/null <<SQL
CREATE FUNCTION bench_billing_sync() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    IF NEW.status = 'expired' AND current_setting('bench.poison', true) IN ('one', 'many') THEN
        IF (current_setting('bench.poison') = 'one'
            AND NEW.id = current_setting('bench.poison_one')::uuid)
           OR (current_setting('bench.poison') = 'many'
               AND abs(hashtext(NEW.id::text)) % $MODULUS = 0) THEN
            RAISE EXCEPTION 'billing sync failed for %', NEW.id;
        END IF;
    END IF;
    RETURN NEW;
END \$\$;
CREATE TRIGGER bench_billing_sync BEFORE UPDATE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION bench_billing_sync();
CHECKPOINT;
SQL
D=$(psqlstart -At -c "SELECT count(*) FROM subscriptions WHERE $DUE_ROWS")
ONE=$(psqlstart -At -c "SELECT id FROM subscriptions WHERE $DUE_ROWS ORDER BY ctid OFFSET $((D / 2)) LIMIT 1")
MANY=$(psqlstart -At -c "SELECT count(*) FROM subscriptions WHERE $DUE_ROWS AND abs(hashtext(id::text)) % $MODULUS = 0")
say "due: $D; failing: 1 ($ONE), or $MANY"

RAW="UPDATE subscriptions SET status = 'expired', updated_at = now() WHERE $DUE_ROWS;"
FUN="SELECT * FROM expire_subscriptions('$AS_OF');"

# prepare POISON TRIGGER: the copy's rows to fail, and its trigger on or off
prepare() {
	psqlpg -c "ALTER DATABASE bench SET bench.poison = '$1'" \
		-c "ALTER DATABASE bench SET bench.poison_one = '$ONE'" >/dev/null
	psqlc -c "ALTER TABLE subscriptions $2 TRIGGER bench_billing_sync" >/dev/null
}

# check CASE FAILING: the failing rows left due, every other due row
# expired, and the failing rows, and only they, in the row errors of the
# run that expired the others
check() {
	local left recorded
	left=$(psqlc -At -c "SELECT count(*) FROM subscriptions WHERE $DUE_ROWS")
	[[ $left == "$2" ]] || fail "$1 left $left rows due, not $2"
	recorded=$(psqlc -At -c "SELECT count(*) FROM subexpire_row_errors e
		JOIN subscriptions s ON e.row_key = jsonb_build_object('id', s.id)
		WHERE s.status = 'active'
		  AND e.run_id = (SELECT min(run_id) FROM subexpire_runs WHERE expired_count > 0)")
	[[ $recorded == "$2" ]] || fail "$1 recorded $recorded of its $2 failing rows"
}

run_case() {
	local c=$1 t failing
	restore
	case $c in
		b | c) prepare none DISABLE ;;
		bt | ct | wc) prepare none ENABLE ;;
		p1 | w1) prepare one ENABLE ;;
		pm | wm) prepare many ENABLE ;;
	esac
	case $c in
		*1) failing=1 ;;
		*m) failing=$MANY ;;
		*) failing=0 ;;
	esac
	case $c in
		b | bt) t=$(timed "$RAW") ;;
		c | ct | p1 | pm) t=$(timed "$FUN") ;;
		w*) read -r _ t _ <<<"$(bench_worker_run)" ;;
	esac
	[[ $c == b* ]] || check "$c" "$failing"
	eval "T_$c+=(\"$t\")"
	say "  $c: $t s"
}

T_b=() T_c=() T_bt=() T_ct=() T_p1=() T_pm=() T_wc=() T_w1=() T_wm=()
for ((pair = 1; pair <= PAIRS; pair++)); do
	say "-- pair $pair"
	if ((pair % 2)); then order=(b c bt ct p1 pm wc w1 wm); else order=(wm w1 wc pm p1 ct bt c b); fi
	for c in "${order[@]}"; do run_case "$c"; done
done

for c in b c bt ct p1 pm wc w1 wm; do
	eval "M_$c=\$(median \"\${T_$c[@]}\")"
done
say "================================================================================"
say "Machine: $MACHINE; $PG_VERSION; subexpire $EXT_VERSION"
say "$ROWS rows, $D due, $PAIRS pairs, medians:"
say "| case | median s | all runs |"
say "| --- | --- | --- |"
say "| (b) raw UPDATE, no trigger | $M_b | ${T_b[*]} |"
say "| (c) expire_subscriptions(), no trigger | $M_c | ${T_c[*]} |"
say "| (bt) raw UPDATE, trigger, no row failing | $M_bt | ${T_bt[*]} |"
say "| (ct) expire_subscriptions(), trigger, no row failing | $M_ct | ${T_ct[*]} |"
say "| (p1) expire_subscriptions(), 1 row failing | $M_p1 | ${T_p1[*]} |"
say "| (pm) expire_subscriptions(), $MANY rows failing | $M_pm | ${T_pm[*]} |"
say "| (wc) the worker's run, batches of $BATCH_SIZE, no row failing | $M_wc | ${T_wc[*]} |"
say "| (w1) the worker's run, 1 row failing | $M_w1 | ${T_w1[*]} |"
say "| (wm) the worker's run, $MANY rows failing | $M_wm | ${T_wm[*]} |"
say "p1/ct = $(calc "$M_p1 / $M_ct") (target <= 2); pm/ct = $(calc "$M_pm / $M_ct") (target <= 3)"
say "w1/wc = $(calc "$M_w1 / $M_wc") (target <= 2); wm/wc = $(calc "$M_wm / $M_wc") (target <= 3)"
say "c/b = $(calc "$M_c / $M_b"); ct/bt = $(calc "$M_ct / $M_bt")"
