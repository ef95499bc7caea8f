#!/usr/bin/env bash
#
# test/bench/run.sh: the whole benchmark suite, one command.
#
# Runs bench.sh at each table size and due fraction (each on a throwaway
# cluster of its own, the timed runs in alternating pairs), with the
# row-at-a-time client loops at one size only (their cost a row does not
# depend on the table's size, and the ORM job that commits each row takes
# minutes), then idle.sh (the idle worker against pg_cron's launcher, over
# a minute) and gentle.sh (an application workload while the worker
# expires --gentle-due rows), and prints one table across sizes.  Each
# part's full output is kept in --out.
#
# Run (the extension installed; see README.md for the packages):
#   test/bench/run.sh                      # 100k, 1M, 10M rows; 10 % and 20 % due
#   test/bench/run.sh --sizes 1000000 --dues 0.2 --no-gentle
# Options: --sizes "N ..." (100000 1000000 10000000), --dues "F ..."
# (0.1 0.2), --pairs K (3), --loops-at N (1000000), --gentle-rows N
# (5000000), --gentle-due M (1000000), --small-batch B (1000: gentle.sh
# again, on 1M rows with 200,000 due, at subexpire.batch_size B), --no-idle,
# --no-gentle, --out DIR.
# Takes about 70 minutes with the defaults on a 2-CPU machine.

set -euo pipefail

SIZES="100000 1000000 10000000"
DUES="0.1 0.2"
PAIRS=3
LOOPS_AT=1000000
GENTLE_ROWS=5000000
GENTLE_DUE=1000000
SMALL_BATCH=1000
IDLE=1
GENTLE=1
OUT=${TMPDIR:-/tmp}/subexpire-bench-$(date -u +%Y%m%d-%H%M%S)

while [[ $# -gt 0 ]]; do
	case $1 in
		--sizes) SIZES=${2:?}; shift 2 ;;
		--dues) DUES=${2:?}; shift 2 ;;
		--pairs) PAIRS=${2:?}; shift 2 ;;
		--loops-at) LOOPS_AT=${2:?}; shift 2 ;;
		--gentle-rows) GENTLE_ROWS=${2:?}; shift 2 ;;
		--gentle-due) GENTLE_DUE=${2:?}; shift 2 ;;
		--small-batch) SMALL_BATCH=${2:?}; shift 2 ;;
		--no-idle) IDLE=0; shift ;;
		--no-gentle) GENTLE=0; shift ;;
		--out) OUT=${2:?}; shift 2 ;;
		-h|--help) sed -n '3,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
		*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	esac
done

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$OUT"
SUMMARY=$OUT/summary.tsv
: >"$SUMMARY"
echo "subexpire benchmark suite: output in $OUT"

for rows in $SIZES; do
	for due in $DUES; do
		log=$OUT/bench-$rows-$due.txt
		loops=--no-loops
		[[ $rows == "$LOOPS_AT" ]] && loops=
		echo "== bench.sh --rows $rows --due $due --pairs $PAIRS $loops ($log)"
		"$HERE/bench.sh" --rows "$rows" --due "$due" --pairs "$PAIRS" $loops \
			--summary "$SUMMARY" >"$log" 2>&1 || { tail -n 30 "$log"; exit 1; }
		sed -n '/^RESULTS/,/^markdown:/p' "$log" | sed '$d'
	done
done

if [[ $IDLE -eq 1 ]]; then
	echo "== idle.sh --seconds 60 ($OUT/idle.txt)"
	"$HERE/idle.sh" --seconds 60 >"$OUT/idle.txt" 2>&1 || { cat "$OUT/idle.txt"; exit 1; }
	cat "$OUT/idle.txt"
fi

if [[ $GENTLE -eq 1 ]]; then
	echo "== gentle.sh --rows $GENTLE_ROWS --due-rows $GENTLE_DUE --pairs $PAIRS ($OUT/gentle.txt)"
	"$HERE/gentle.sh" --rows "$GENTLE_ROWS" --due-rows "$GENTLE_DUE" --pairs "$PAIRS" \
		>"$OUT/gentle.txt" 2>&1 || { tail -n 30 "$OUT/gentle.txt"; exit 1; }
	sed -n '/^RESULTS/,$p' "$OUT/gentle.txt"
	# The batch-size trade-off: the same workload on a 1M-row table while
	# the worker expires 200,000 rows in batches of SMALL_BATCH.
	echo "== gentle.sh --rows 1000000 --due-rows 200000 --batch-size $SMALL_BATCH --pairs $PAIRS ($OUT/gentle_small_batch.txt)"
	"$HERE/gentle.sh" --rows 1000000 --due-rows 200000 --seconds 30 --batch-size "$SMALL_BATCH" \
		--pairs "$PAIRS" >"$OUT/gentle_small_batch.txt" 2>&1 ||
		{ tail -n 30 "$OUT/gentle_small_batch.txt"; exit 1; }
	sed -n '/^RESULTS/,$p' "$OUT/gentle_small_batch.txt"
fi

echo
echo "Across sizes (medians of $PAIRS pairs; seconds unless marked):"
echo
echo "| rows | due | (b) raw UPDATE | (a) expire_subscriptions() | a/b | (w) worker, batched | w/b | longest batch | (p) PL/pgSQL by pg_cron | p/b | nothing due, after a run / after VACUUM | the bare search, after a run / after VACUUM |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
awk -F'\t' '{
	printf "| %d | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %s | %.3f | %.3f | %.2f ms / %.2f ms | %.2f ms / %.2f ms |\n",
		$1, $2, $4, $3, $3 / $4, $5, $5 / $4, ($7 == "n/a" ? "n/a" : sprintf("%.3f", $7)),
		$6, $6 / $4, $12, $13, $16, $17
}' "$SUMMARY"
echo
echo "The client loops against expire_subscriptions() on the same rows:"
echo
echo "| rows | rows expired | (a') expire_subscriptions() | (c) psql loop | (o) ORM, flush a row | (oc) ORM, commit a row | (ou) ORM, commit once | c/a' | o/a' | oc/a' | ou/a' |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
awk -F'\t' '$8 != "" {
	printf "| %d | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.1fx | %.1fx | %.1fx | %.1fx |\n",
		$1, $15, $10, $11, $8, $9, $18, $11 / $10, $8 / $10, $9 / $10, $18 / $10
}' "$SUMMARY"
echo
echo "Machine: $(nproc) CPUs, $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM."
