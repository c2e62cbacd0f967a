# `make demo` (scripts/demo.sh), guest vm1: finds vm2 ($VHD_PEER) and the host (10.0.0.1) through vhostd,
# then sends vm2 64 MiB over TCP (every byte checked by vm2) and times it. vm2 runs switch-demo-b.sh; the two
# coordinate through the network only: vm1 pings vm2 until it answers and retries the TCP connect until vm2
# listens. Lines for the narrative start with VHD-SAY.
say() { echo "VHD-SAY $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
pingsum() { # pingsum NAME IP: one line out of three pings
	out=$(ping -c 3 -i 0.2 -W 2 "$2" 2>&1)
	say "ping $1 ($2): $(echo "$out" | grep transmitted | sed 's/packets //g'), $(echo "$out" | grep round-trip | sed 's/.*= //')"
}
bytes=67108864
i=0
until ping -c 1 -W 1 "$VHD_PEER" >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 60 ] || break
done
pingsum vm2 "$VHD_PEER"
pingsum host 10.0.0.1
i=0
while :; do
	t0=$(up)
	out=$(nettool tcp-send "$VHD_PEER" 7100 $bytes)
	t1=$(up)
	case "$out" in
	*"fail connect"*) i=$((i + 1)); if [ $i -lt 30 ]; then sleep 1; continue; fi ;;
	esac
	break
done
case "$out" in
*" ok "*) say "$(echo "$t0 $t1 $bytes" | awk '{s = $2 - $1; if (s <= 0) s = 0.01;
	printf "TCP to vm2: %d MiB in %.2f s = %.1f MB/s (%.0f Mbit/s)", $3 / 1048576, s, $3 / s / 1e6, $3 * 8 / s / 1e6}')" ;;
*) say "TCP to vm2 FAILED: $out" ;;
esac
say "done"
sleep 600 # until the host has shown vhostd's view and stops us
