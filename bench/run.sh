#!/usr/bin/env bash
# Run the benchmarks against a build directory and print their output (what `make bench` runs).
# Usage: bench/run.sh BUILD_DIR
# Every benchmark runs even if an earlier one fails; the exit status is nonzero if any failed.
set -uo pipefail

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
build=$1
rc=0

run() {
	local bin=$1
	shift
	if [ ! -x "$build/bench/$bin" ]; then
		echo "bench: $build/bench/$bin not built" >&2
		rc=1
		return
	fi
	echo "== $bin${*:+ $*} =="
	"$build/bench/$bin" "$@" || rc=1
}

# Virtqueues (split, packed; 64 and 1518 bytes) against a plain SPSC pointer ring.
run ringbench

exit $rc
