#!/usr/bin/env bash
# test/fuzz/run.sh [SECONDS]: run the schedule fuzzer for SECONDS (default
# 60) on a copy of the seed corpus, in test/fuzz/run/.  `make fuzz` builds
# test/fuzz/fuzz_schedule and calls this.  Exits non-zero, with the input
# saved in test/fuzz/run/ and the end of the log printed, on a crash, a hang
# (an input that runs 10 s), a sanitizer report or a broken check; see
# README.md.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
work=run

if [ ! -x fuzz_schedule ]; then
    echo "test/fuzz/fuzz_schedule is not built: run make fuzz" >&2
    exit 2
fi
rm -rf "$work"
mkdir -p "$work/corpus"
cp corpus/schedule/* "$work/corpus/"

# Stop at the first report of any kind, with a stack and source lines.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for s in llvm-symbolizer-14 /usr/lib/llvm-14/bin/llvm-symbolizer llvm-symbolizer; do
    if command -v "$s" >/dev/null 2>&1; then
        export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$(command -v "$s")}
        break
    fi
done

echo "== fuzzing the schedule for $seconds s (log: test/fuzz/$work/fuzz.log)"
status=0
./fuzz_schedule -max_total_time="$seconds" -timeout=10 -max_len=1024 \
    -dict=schedule.dict -artifact_prefix="$work/" -print_final_stats=1 \
    "$work/corpus" >"$work/fuzz.log" 2>&1 || status=$?

if [ "$status" -ne 0 ]; then
    # The report: from its first line (a broken check, a sanitizer or
    # libFuzzer itself), with the stack and the input that caused it.
    awk '/check failed|runtime error|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)/ { on = 1 }
         on && n++ < 80' "$work/fuzz.log" >&2
    echo "== FAILED (libFuzzer exit status $status); the input that failed:" >&2
    for f in "$work"/crash-* "$work"/timeout-* "$work"/leak-* "$work"/oom-* "$work"/slow-unit-*; do
        if [ -e "$f" ]; then echo "   test/fuzz/$f" >&2; fi
    done
    echo "== replay it with: test/fuzz/fuzz_schedule <that file>" >&2
    exit 1
fi
grep -E '^INFO: seed corpus|INITED|DONE' "$work/fuzz.log" || true
grep -E '^stat::' "$work/fuzz.log" || true
echo "== no failure; corpus grown to $(ls "$work/corpus" | wc -l) inputs"
