#!/usr/bin/env bash
# Run the benchmarks against a build directory and print their output (what `make bench` runs): bench/compare.py,
# whose groups are loopback, cross, switch, latency (our stack against DPDK testpmd and OVS-DPDK), ring
# (bench/ringbench: the virtqueues against a plain SPSC pointer ring), kernel (af_xdp against af_packet on a
# veth) and iommu (the device IOTLB: ours against DPDK's, and on against off). It writes docs/benchmarks.md and
# docs/benchmarks.png. Then bench/idle.py (group idle): CPU and low-rate latency of vhostd's adaptive idle and
# --poll beside OVS-DPDK with and without pmd-maxsleep (docs/idle.png).
# Environment: BENCH_REPEAT (3), BENCH_SECONDS (5), BENCH_WARMUP (1),
# BENCH_ONLY=loopback,cross,switch,latency,ring,kernel,iommu,idle, BENCH_SIZES=64,1518, BENCH_QUICK=1 (smoke matrix),
# BENCH_VERBOSE=1; see compare.py.
# Usage: bench/run.sh BUILD_DIR
# Exit status nonzero if a case FAILED.
set -uo pipefail

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
build=$1
for bin in bench/ringbench tools/vhost-pktgen tools/vhostd; do
	if [ ! -x "$build/$bin" ]; then
		echo "bench: $build/$bin not built" >&2
		exit 1
	fi
done
# Debian's interpreter, whose python3-matplotlib scripts/deps.sh installs (a python3 earlier in PATH, e.g.
# pyenv's, would not see it and the chart would be skipped).
py=/usr/bin/python3
[ -x "$py" ] || py=python3
rc=0
"$py" "$(dirname "$0")/compare.py" "$build" || rc=1
# bench/idle.py: adaptive idle, --poll, OVS-DPDK (CPU, rate, latency); BENCH_ONLY without "idle" skips it.
case ",${BENCH_ONLY:-idle}," in
*,idle,*) "$py" "$(dirname "$0")/idle.py" "$build" || rc=1 ;;
esac
exit $rc
