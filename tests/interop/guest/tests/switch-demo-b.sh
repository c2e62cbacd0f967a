# `make demo` (scripts/demo.sh), guest vm2: listens for vm1's TCP stream (switch-demo-a.sh) from the start,
# pings vm1 ($VHD_PEER, until it answers) and the host (10.0.0.1), then reports what arrived.
say() { echo "VHD-SAY $*"; }
pingsum() {
	out=$(ping -c 3 -i 0.2 -W 2 "$2" 2>&1)
	say "ping $1 ($2): $(echo "$out" | grep transmitted | sed 's/packets //g'), $(echo "$out" | grep round-trip | sed 's/.*= //')"
}
bytes=67108864
nettool tcp-recv 7100 $bytes >/tmp/recv.out &
recv=$!
i=0
until ping -c 1 -W 1 "$VHD_PEER" >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 60 ] || break
done
pingsum vm1 "$VHD_PEER"
pingsum host 10.0.0.1
wait $recv
r=$(grep VHD-RESULT /tmp/recv.out)
case "$r" in
*" ok "*) say "TCP from vm1: $(echo "$r" | sed "s/.*received \([0-9]*\) of.*/\1/") bytes arrived in order, every byte checked" ;;
*) say "TCP from vm1 FAILED: $r" ;;
esac
say "done"
sleep 600
