#!/usr/bin/env bash
# Profile one loopback case (guest TX: vhost-pktgen --frontend txonly -> vhost-pktgen --backend rxonly, a fixed
# number of frames) and print the top functions of each side: under `perf record` (hardware cycles when the
# machine has counters, else the cpu-clock timer: `perf stat -e instructions true` says which), then under
# `valgrind --tool=callgrind` (instruction counts, deterministic, about 50x slower). For profiling notes, not
# for figures. Debian: linux-perf, valgrind (scripts/deps.sh bench).
#
# Usage: bench/profile.sh BUILD_DIR [perf|callgrind|all]
# Environment: PROFILE_COUNT frames under perf (default 5000000), PROFILE_CG_COUNT under callgrind (default
# 200000), PROFILE_SIZE frame bytes without FCS (default 60), PROFILE_PACKED=1 for packed rings,
# PROFILE_TOP lines per report (default 25), PROFILE_CPUS=A,B (default 0,1: driver, device).
# Output files stay in the directory printed at the start (perf.data, callgrind.out.*).
set -euo pipefail

if [ $# -lt 1 ] || [ ! -x "$1/tools/vhost-pktgen" ]; then
	echo "usage: $0 BUILD_DIR [perf|callgrind|all]" >&2
	exit 2
fi
pktgen=$(realpath "$1/tools/vhost-pktgen")
what=${2:-all}
count=${PROFILE_COUNT:-5000000}
cg_count=${PROFILE_CG_COUNT:-200000}
size=${PROFILE_SIZE:-60}
top=${PROFILE_TOP:-25}
IFS=, read -r cpu_a cpu_b <<<"${PROFILE_CPUS:-0,1}"
packed=()
[ "${PROFILE_PACKED:-0}" = 1 ] && packed=(--packed)
out=$(mktemp -d /tmp/bn-profile-XXXXXX)
echo "profile: guest TX ${size}B ${packed[*]:-split}, output in $out"

pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}
trap cleanup EXIT

# The device side listens; the driver connects. Each side gets the wrapper in $1 (empty for none) and counts.
run_pair() { # DEV_WRAP DRV_WRAP COUNT TAG
	local sock="$out/$4.sock"
	rm -f "$sock"
	# shellcheck disable=SC2086
	taskset -c "$cpu_b" $1 "$pktgen" --poll --backend "$sock" --mode rxonly --count "$3" --size "$size" \
		>"$out/$4.device.out" 2>&1 &
	local dev=$!
	pids+=("$dev")
	for _ in $(seq 300); do
		[ -S "$sock" ] && break
		sleep 0.1
	done
	# shellcheck disable=SC2086
	taskset -c "$cpu_a" $2 "$pktgen" --poll --frontend "$sock" --mode txonly --count "$3" --size "$size" \
		"${packed[@]}" >"$out/$4.driver.out" 2>&1
	wait "$dev"
	grep -h 'Mpps' "$out/$4.driver.out" "$out/$4.device.out" | sed 's/^/  /'
}

if [ "$what" = perf ] || [ "$what" = all ]; then
	event=cycles
	if perf stat -e instructions true 2>&1 | grep -q 'not supported'; then
		event=cpu-clock # no hardware counters (a VM without a virtual PMU): timer sampling
	fi
	echo "== perf record -e $event, $count frames"
	run_pair "perf record -q -e $event -g -o $out/perf.device.data --" \
		"perf record -q -e $event -g -o $out/perf.driver.data --" "$count" perf
	for side in driver device; do
		echo "-- $side side: top functions (self, % of samples)"
		perf report -q -i "$out/perf.$side.data" --stdio --no-children --sort symbol 2>/dev/null |
			grep -v '^$' | grep -E '^ +[0-9.]+%' | head -n "$top"
	done
fi

if [ "$what" = callgrind ] || [ "$what" = all ]; then
	echo "== valgrind --tool=callgrind, $cg_count frames (one side at a time, the other native)"
	for side in driver device; do
		cg="valgrind -q --tool=callgrind --callgrind-out-file=$out/callgrind.out.$side"
		if [ "$side" = driver ]; then
			run_pair "" "$cg" "$cg_count" "cg-$side"
		else
			run_pair "$cg" "" "$cg_count" "cg-$side"
		fi
		echo "-- $side side: top functions (self instructions)"
		callgrind_annotate "$out/callgrind.out.$side" 2>/dev/null | grep -E '^ *[0-9,]+ ' | head -n "$top"
	done
fi
