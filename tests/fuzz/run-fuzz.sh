#!/usr/bin/env bash
# Run one libFuzzer harness for a bounded time and print the line scripts/check-summary.py counts:
#   PASS: fuzz/NAME: N execs        or        FAIL: fuzz/NAME: what was found, artifact PATH
# Usage: run-fuzz.sh HARNESS NAME WORKDIR. Seconds from VHD_FUZZ_SECONDS (default 60). New inputs go to
# WORKDIR/corpus/NAME (the committed seeds in tests/fuzz/corpus/NAME are read, never written); crashes to
# WORKDIR/artifacts/NAME/; the fuzzer's own output to WORKDIR/logs/NAME.log.
set -u
if [ $# -ne 3 ]; then
	echo "usage: $0 HARNESS NAME WORKDIR" >&2
	exit 2
fi
exe=$1 name=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
secs=${VHD_FUZZ_SECONDS:-60}
seeds=$here/corpus/$name
corpus=$work/corpus/$name
artifacts=$work/artifacts/$name
log=$work/logs/$name.log
mkdir -p "$corpus" "$artifacts" "$work/logs"

args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
	-artifact_prefix="$artifacts/")
[ -f "$here/$name.dict" ] && args+=(-dict="$here/$name.dict")
# The harnesses' ASan runs leak checks per input; keep the suite's options but make sure those are on.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# timeout(1) only matters if the fuzzer itself hangs past its own limit (it should not).
timeout --kill-after=10 $((secs + 120)) "$exe" "${args[@]}" "$corpus" "$seeds" >"$log" 2>&1
rc=$?

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
[ -n "$execs" ] || execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
if [ $rc -eq 0 ] && [ -n "$execs" ]; then
	echo "PASS: fuzz/$name: $execs execs in ${secs} s"
	exit 0
fi
# The first sanitizer or libFuzzer verdict names the finding; the artifact line says where the input went.
what=$(grep -m1 -E '^(SUMMARY: |==[0-9]+== ?ERROR: |.*runtime error: |==[0-9]+== ?ERROR: libFuzzer)' "$log" |
	sed 's/^==[0-9]*== *//')
[ -n "$what" ] || what="exit status $rc"
artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
echo "FAIL: fuzz/$name: $what, artifact ${artifact:-none} (log $log)"
tail -n 60 "$log" >&2
exit 1
