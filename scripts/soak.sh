#!/usr/bin/env bash
# `make soak`: the long runs that do not fit in `make check`. Repeats, in the given build:
#   - the two-guest switch scenario (tests/interop/test_switch_guest.py two_guests) with the guests' kernels
#     watching their own memory (slub_debug, page poisoning, init_on_free): a device writing into guest memory
#     it had given back shows up there as a poison or slab report on a guest console;
#   - the frontend/back-end pktgen test with 10x the frames;
#   - the inflight restart cases (an io back-end killed -9 under traffic; split and packed) with 200 restarts
#     instead of 20, and test_fe_be's (the echo back-end; split and packed) with 1000 instead of 100;
#   - VDUSE bound to vhost_vdpa in the 6.12 guest, driven by our frontend: 10^6 frames verified per ring layout
#     (tests/interop/test_vduse.py vduse_vdpa_*, with its hostile cases);
#   - vhostd killed -9 and restarted 1000 times under a guest's TCP stream (test_switch_guest.py restart_cycles,
#     20 in make check); this and test_fe_be's 1000 in the first round only.
# Stops at the first failure; consoles of every guest boot are kept in $SOAK_DIR (default /tmp/vhd-soak).
# Usage (as root): scripts/soak.sh BUILD_DIR [ROUNDS]   (default 10 rounds)
set -uo pipefail
b=$(cd "${1:?usage: $0 BUILD_DIR [ROUNDS]}" && pwd)
rounds=${2:-10}
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${SOAK_DIR:-/tmp/vhd-soak}
mkdir -p "$dir"
for i in $(seq 1 "$rounds"); do
	echo "=== soak round $i/$rounds"
	out=$(VHD_CONSOLE_DIR="$dir/round$i" VHD_GUEST_APPEND="slub_debug=FZPU page_poison=1 init_on_free=1" \
		python3 "$top/tests/interop/test_switch_guest.py" "$b/tools/vhostd" "$b/tools/vhostctl" two_guests 2>&1)
	echo "$out" | grep -E '^(PASS|FAIL)'
	if echo "$out" | grep -q '^FAIL' ||
	   grep -a -l -E 'BUG:|Poison overwritten|page_poison|double fault|Oops' "$dir/round$i"/* 2>/dev/null; then
		echo "soak: round $i failed; consoles in $dir/round$i" >&2
		exit 1
	fi
	VHD_PKTGEN_COUNT=10000000 python3 "$top/tests/integration/test_pktgen.py" "$b/tools/vhost-pktgen" split_mrg_fe_to_be |
		grep -E '^(PASS|FAIL)' | tee "$dir/pktgen$i.txt"
	VHD_PKTGEN_RESTARTS=200 python3 "$top/tests/integration/test_pktgen.py" "$b/tools/vhost-pktgen" restart_inflight |
		grep -E '^(PASS|FAIL)|restarts' | tee -a "$dir/pktgen$i.txt"
	VHD_VDUSE_VDPA_FRAMES=1000000 python3 "$top/tests/interop/test_vduse.py" "$b/tools/vhostd" "$b/tools/vhostctl" \
		"$b/tools/vhost-pktgen" vduse_vdpa_ | grep -E '^(PASS|FAIL)' | tee -a "$dir/pktgen$i.txt"
	if [ "$i" = 1 ]; then  # the 1000-cycle runs once (the guest one takes about an hour)
		VHD_FE_RESTARTS=1000 "$b/tests/test_fe_be" backend_killed_inflight 2>&1 | grep -E '^(PASS|FAIL)' |
			tee -a "$dir/pktgen$i.txt"
		VHD_RESTART_CYCLES=1000 python3 "$top/tests/interop/test_switch_guest.py" "$b/tools/vhostd" \
			"$b/tools/vhostctl" restart_cycles 2>&1 | grep -E '^(PASS|FAIL)|kill9' | tee -a "$dir/pktgen$i.txt"
	fi
	if grep -q '^FAIL' "$dir/pktgen$i.txt"; then
		echo "soak: round $i: pktgen failed" >&2
		exit 1
	fi
done
echo "soak: $rounds rounds passed"
