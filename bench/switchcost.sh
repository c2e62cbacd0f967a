#!/usr/bin/env bash
# Instructions per forwarded packet of vhostd's forwarding thread, under callgrind: vhostd (one thread, two
# vhost-user ports) runs under valgrind, a native vhost-pktgen sends PACKETS static frames of SIZE bytes from
# one port to the other (PVP, as make bench does: --static --no-mrg). The generator outruns vhostd under
# valgrind, so bursts are full and the count repeats to within a few instructions; cross-core runs on this
# machine cannot tell 5% apart.
# With TO=tap the second port is a tap (vhdcost0, created and removed; needs root) and the generator runs
# alone: the path of a port whose data path is its own (the upgrade gate, a write per frame; the kernel's part
# of it is not counted).
# Usage: bench/switchcost.sh BUILD_DIR [SIZE [PACKETS [TO]]]   (prints "N instructions per packet"; add -g to
# the build for callgrind_annotate --auto=yes on the kept output file it names)
set -euo pipefail
if [ $# -lt 1 ] || [ ! -x "$1/tools/vhostd" ]; then
	echo "usage: $0 BUILD_DIR [SIZE [PACKETS [vhost-user|tap]]]  (BUILD_DIR/tools/vhostd must exist)" >&2
	exit 2
fi
build=$(cd "$1" && pwd)
size=${2:-60}
count=${3:-300000}
to=${4:-vhost-user}
case $to in vhost-user | tap) ;; *) echo "switchcost: TO is vhost-user or tap, not $to" >&2; exit 2 ;; esac
command -v valgrind >/dev/null || { echo "switchcost: valgrind not installed (apt-get install valgrind)" >&2; exit 1; }
dir=$(mktemp -d /tmp/switchcost.XXXXXX)
vg=
cleanup() { [ -n "$vg" ] && kill -INT "$vg" 2>/dev/null || true; }
trap cleanup EXIT
printf 'add-port a vhost-user path=%s/a.sock\n' "$dir" >"$dir/c.conf"
if [ "$to" = tap ]; then
	echo 'add-port b tap ifname=vhdcost0' >>"$dir/c.conf"
	ready=$dir/a.sock sink=(--mode txonly)
else
	printf 'add-port b vhost-user path=%s/b.sock\n' "$dir" >>"$dir/c.conf"
	ready=$dir/b.sock sink=(--sink "$dir/b.sock")
fi
# --fair-sched and --idle-us: valgrind runs one thread at a time, and the control thread must get its turn.
valgrind --tool=callgrind --fair-sched=yes --separate-threads=yes --callgrind-out-file="$dir/cg" \
	"$build/tools/vhostd" --config "$dir/c.conf" --socket "$dir/ctl.sock" --threads 1 --idle-us 100 \
	--log-level warn >"$dir/vhostd.log" 2>&1 &
vg=$!
for _ in $(seq 150); do [ -S "$ready" ] && break; sleep 0.2; done
[ -S "$ready" ] || { echo "switchcost: vhostd did not come up; $dir/vhostd.log:" >&2; tail "$dir/vhostd.log" >&2; exit 1; }
timeout 600 "$build/tools/vhost-pktgen" --poll --frontend "$dir/a.sock" "${sink[@]}" --size "$size" \
	--count "$count" --static --no-mrg --json >"$dir/pktgen.json"
packets=$("$build/tools/vhostctl" --socket "$dir/ctl.sock" --json stats |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["threads"][0]["packets"])')
kill -INT "$vg"
wait "$vg" || true
vg=
# Thread 1 is the control thread; the forwarding thread's file is the one that did the work.
total=0
for f in "$dir"/cg-*; do
	n=$(sed -n 's/^summary: //p' "$f")
	if [ "${n:-0}" -gt "$total" ]; then total=$n; out=$f; fi
done
[ "$packets" -gt 0 ] || { echo "switchcost: nothing was forwarded" >&2; exit 1; }
awk -v t="$total" -v n="$packets" 'BEGIN { printf "%.0f instructions per packet (%d packets)\n", t / n, n }'
echo "callgrind output: $out"
