#!/usr/bin/env bash
# `make demo`: vhostd, the poll-mode virtual switch, between two QEMU guests and the host's network stack.
#  1. builds the guest (a Debian 6.12 kernel and a BusyBox initramfs, tests/interop/guest/prepare.sh);
#  2. starts vhostd with a config written to a temporary directory: vhost-user ports vm1 and vm2, and a tap
#     port host0, all inside a network namespace of its own (10.0.0.1/24 on the tap), so the host's real
#     network is untouched;
#  3. boots two guests under QEMU with vhost-user NICs on vhostd (vm1 10.0.0.2, vm2 10.0.0.3); they ping each
#     other and the host, and vm1 sends vm2 64 MiB over TCP, every byte checked, timed
#     (tests/interop/guest/tests/switch-demo-{a,b}.sh; the guests coordinate through the network only);
#  4. shows vhostd's view: vhostctl show, stats, fdb; then stops and removes everything it started.
# Usage (as root): scripts/demo.sh BUILD_DIR
set -euo pipefail
b=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
top=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" -ne 0 ]; then
	echo "demo: run as root (it creates a network namespace and a tap interface)" >&2
	exit 1
fi
for t in qemu-system-x86_64 ip; do
	command -v "$t" >/dev/null || { echo "demo: $t not found (scripts/deps.sh demo installs it)" >&2; exit 1; }
done

work=$b/interop
tmp=$(mktemp -d /tmp/vhostd-demo-XXXXXX)
ns=vhd-demo-$$
tap=vhd-demo0
ctl=$tmp/vhostd.sock
vhostd_pid= qemu1= qemu2= tail_pid=
vhostctl() { "$b/tools/vhostctl" --socket "$ctl" "$@"; }

cleanup() {
	set +e
	for p in $qemu1 $qemu2; do kill "$p" 2>/dev/null; done
	for p in $qemu1 $qemu2 $tail_pid; do wait "$p" 2>/dev/null; done
	if [ -n "$vhostd_pid" ]; then
		kill -TERM "$vhostd_pid" 2>/dev/null
		wait "$vhostd_pid" 2>/dev/null
	fi
	ip netns del "$ns" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s ==\n' "$*"; }

step "1. the guest: Debian 6.12 kernel + BusyBox initramfs (built once into $work)"
"$top/tests/interop/guest/prepare.sh" "$work"
echo "$work/vmlinuz, $work/initrd.gz"

step "2. vhostd: two vhost-user ports for the VMs, a tap port to the host (in network namespace $ns)"
cat >"$tmp/vhostd.conf" <<EOF
# vhostd config: one vhostctl command per line
add-port vm1 vhost-user path=$tmp/vm1.sock
add-port vm2 vhost-user path=$tmp/vm2.sock
add-port host0 tap ifname=$tap
EOF
sed 's/^/    /' "$tmp/vhostd.conf"
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
echo "\$ ip netns exec $ns vhostd --config $tmp/vhostd.conf --socket $ctl &"
ip netns exec "$ns" "$b/tools/vhostd" --config "$tmp/vhostd.conf" --socket "$ctl" >"$tmp/vhostd.log" 2>&1 &
vhostd_pid=$!
# Up when its control socket answers (the config, tap included, has been run by then).
for _ in $(seq 200); do
	vhostctl show >/dev/null 2>&1 && break
	kill -0 "$vhostd_pid" 2>/dev/null || { cat "$tmp/vhostd.log"; echo "demo: vhostd exited" >&2; exit 1; }
	sleep 0.05
done
vhostctl show >/dev/null || { cat "$tmp/vhostd.log"; echo "demo: vhostd does not answer on $ctl" >&2; exit 1; }
ip netns exec "$ns" ip addr add 10.0.0.1/24 dev "$tap"
ip netns exec "$ns" ip link set "$tap" up
echo "host side: $tap 10.0.0.1/24 in $ns"

step "3. two guests under QEMU (TCG), vhost-user NICs on vhostd"
qemu_args() { # qemu_args NAME MAC IP PEER TEST: the command line, in the array q
	q=(qemu-system-x86_64 -accel tcg -machine q35,memory-backend=mem -cpu max -smp 1 -m 512M
		-object memory-backend-memfd,id=mem,size=512M,share=on
		-nographic -no-reboot -kernel "$work/vmlinuz" -initrd "$work/initrd.gz"
		-append "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init vhd.test=$5 vhd.ip=$3/24 vhd.peer=$4"
		-chardev "socket,id=chr0,path=$tmp/$1.sock"
		-netdev vhost-user,id=net0,chardev=chr0,queues=1
		-device "virtio-net-pci,netdev=net0,mac=$2,vectors=0")
}
qemu_args vm1 52:54:00:00:00:01 10.0.0.2 10.0.0.3 switch-demo-a
show_cmd() { # the command line in q, one option group a line, $TMP for the temporary directory
	local a out="\$"
	for a in "${q[@]}"; do
		case "$a" in -object | -nographic | -append | -chardev | -netdev | -device) out+=$' \\\n   ' ;; esac
		a=${a//$tmp/\$TMP}
		case "$a" in *" "*) out+=" \"$a\"" ;; *) out+=" $a" ;; esac
	done
	echo "$out &"
}
show_cmd
"${q[@]}" </dev/null >"$tmp/vm1.log" 2>&1 &
qemu1=$!
qemu_args vm2 52:54:00:00:00:02 10.0.0.3 10.0.0.2 switch-demo-b
echo "\$ (vm2: the same with vm2.sock, mac=52:54:00:00:00:02, vhd.ip=10.0.0.3/24 vhd.peer=10.0.0.2) &"
"${q[@]}" </dev/null >"$tmp/vm2.log" 2>&1 &
qemu2=$!
echo "what the guests report (vm1 pings vm2 until it answers, then the host; vm2 the same the other way;"
echo "then vm1 sends vm2 64 MiB over TCP, retrying the connect until vm2 listens):"
# The guests' narrative, live: their VHD-SAY lines.
# (tail stops when its QEMU does)
tail --pid="$qemu1" -n +1 -f "$tmp/vm1.log" | sed -un 's/\r$//; s/^VHD-SAY /    vm1: /p' &
tail_pid=$!
tail --pid="$qemu2" -n +1 -f "$tmp/vm2.log" | sed -un 's/\r$//; s/^VHD-SAY /    vm2: /p' &
tail_pid="$tail_pid $!"
ok=0
for _ in $(seq 1500); do
	if grep -q '^VHD-SAY done' "$tmp/vm1.log" && grep -q '^VHD-SAY done' "$tmp/vm2.log"; then
		ok=1
		break
	fi
	if ! kill -0 "$qemu1" 2>/dev/null || ! kill -0 "$qemu2" 2>/dev/null; then
		break
	fi
	sleep 0.1
done
sleep 0.3
if [ $ok -ne 1 ]; then
	echo "demo: the guests did not finish; their consoles:" >&2
	tail -n 30 "$tmp/vm1.log" "$tmp/vm2.log" >&2
	echo "vhostd:" >&2
	tail -n 20 "$tmp/vhostd.log" >&2
	exit 1
fi

# A clean first impression: QEMU itself had nothing to warn about (its own lines start with its name).
if grep -h '^qemu-system-[^:]*: .*warning: ' "$tmp/vm1.log" "$tmp/vm2.log" >&2; then
	echo "demo: QEMU warned (above)" >&2
	exit 1
fi

step "4. vhostd's view (vhostctl)"
echo "\$ vhostctl show"
vhostctl show
echo
echo "\$ vhostctl stats"
vhostctl stats
echo "(RX: frames vhostd received from the port, TX: frames it handed to the port; a GSO/TSO frame counts once."
echo " TX_DROPS on a VM port: frames it could not take: no free receive buffer in the guest, as on a real NIC (TCP
 resends them), or broadcasts that came before the guest's driver was up.)"
echo
echo "\$ vhostctl fdb"
vhostctl fdb
echo
echo "guest MACs: vm1 52:54:00:00:00:01, vm2 52:54:00:00:00:02; the tap's: $(ip netns exec "$ns" cat /sys/class/net/$tap/address)"
echo
echo "stopping the guests and vhostd, removing $ns and $tmp"
