#!/usr/bin/env bash
# Instructions per packet of the virtio-net data path (bench/netcost under callgrind), for each ring layout,
# direction, frame size and mergeable setting. The counts repeat exactly from run to run whatever else the
# machine is doing, so they judge an optimisation where the cross-core benchmarks on a busy 2-core machine
# cannot. Usage: bench/cost.sh BUILD_DIR [PACKETS [NETCOST_ARGS...]]     (prints a markdown table)
# NETCOST_ARGS go to every run, e.g. --log (the device logging its writes, as during a live migration), or
# --iommu (the device translating IOVAs through a warm IOTLB, as with ACCESS_PLATFORM).
set -euo pipefail
if [ $# -lt 1 ] || [ ! -x "$1/bench/netcost" ]; then
	echo "usage: $0 BUILD_DIR [PACKETS]  (BUILD_DIR/bench/netcost must exist)" >&2
	exit 2
fi
netcost=$1/bench/netcost
count=${2:-200000}
shift $(($# < 2 ? $# : 2))
extra=("$@")
command -v valgrind >/dev/null || { echo "cost: valgrind not installed (apt-get install valgrind)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cost() {
	valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$netcost" --count "$count" "$@" ${extra[@]+"${extra[@]}"} \
		>/dev/null 2>"$out/err" ||
		{ cat "$out/err" >&2; return 1; }
	# "summary: N" is the program's total instruction count.
	local total
	total=$(sed -n 's/^summary: //p' "$out/cg")
	awk -v t="$total" -v n="$count" 'BEGIN { printf "%.0f", t / n }'
}

echo "| ring | mrg | size | guest TX (driver xmit + device dequeue) | guest RX (device enqueue + driver recv/refill) |"
echo "|---|---|---|---|---|"
for ring in split packed; do
	for mrg in on off; do
		for size in 64 1514; do
			args=(--size "$size")
			[ "$ring" = packed ] && args+=(--packed)
			[ "$mrg" = off ] && args+=(--no-mrg)
			echo "| $ring | $mrg | $size | $(cost --dir tx "${args[@]}") | $(cost --dir rx "${args[@]}") |"
		done
	done
done
echo
echo "Instructions per packet, both sides of one queue plus the loop that drives them (netcost --count $count${extra[*]+ ${extra[*]}})."
