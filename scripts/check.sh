#!/usr/bin/env bash
# Run the test suite in each build directory given, then print one summary line over all of them:
#   N passed, N failed[, N skipped]
# Counts are per test case (the PASS/FAIL/SKIP lines tests/unit/harness.h prints). A test binary that fails
# without reporting a failed case (crash before its first case, timeout) counts as one failure of its own.
# Usage: check.sh [--fuzz FUZZBUILD] BUILD...; with --fuzz, the libFuzzer harnesses of FUZZBUILD (suite 'fuzz')
# run last, VHD_FUZZ_SECONDS each (default 60), two at a time, and count in the same summary.
# A ThreadSanitizer build (b_sanitize=thread) runs only its suite 'tsan' (the unit and integration tests,
# tests/meson.build), with TSAN_OPTIONS that make any report fail the case.
set -u
here=$(cd "$(dirname "$0")" && pwd)
status=0
logs=()
fuzz=
if [ "${1:-}" = "--fuzz" ]; then
	fuzz=$2
	shift 2
fi
last=${!#}
for b in "$@"; do
	echo "=== meson test in $b ==="
	# The interop suite (real QEMU guests and DPDK) runs once, in the last build given.
	suites=()
	[ "$b" = "$last" ] || suites=(--no-suite interop)
	if python3 -c 'import json, sys
o = {x["name"]: x["value"] for x in json.load(open(sys.argv[1] + "/meson-info/intro-buildoptions.json"))}
sys.exit(0 if "thread" in str(o.get("b_sanitize")) else 1)' "$b"; then
		suites=(--suite tsan)
	fi
	# ASan: fail on leaks too; UBSan: print stacks. Both abort so the harness records the case as failed.
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
	TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:exitcode=66} \
		meson test -C "$b" --print-errorlogs --no-rebuild "${suites[@]}" || status=1
	logs+=("$b/meson-logs/testlog.json")
done
if [ -n "$fuzz" ]; then
	echo "=== fuzzing in $fuzz (${VHD_FUZZ_SECONDS:-60} s per harness) ==="
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
		meson test -C "$fuzz" --print-errorlogs --no-rebuild --suite fuzz --num-processes 2 || status=1
	logs+=("$fuzz/meson-logs/testlog.json")
fi
python3 "$here/check-summary.py" "${logs[@]}" || status=1
exit $status
