# Helpers the guest test scripts share (sourced by /init).

# Bring eth0 up with $VHD_IP; wait for it to appear (module probe is asynchronous).
eth_up() {
	for i in 1 2 3 4 5 6 7 8 9 10; do
		[ -e /sys/class/net/eth0 ] && break
		sleep 0.5
	done
	[ -e /sys/class/net/eth0 ] || return 1
	ip link set lo up
	ip link set eth0 up
	ip addr add "$VHD_IP" dev eth0
	echo "VHD-ETH eth0 $(cat /sys/class/net/eth0/address) $VHD_IP, queues $(ls -d /sys/class/net/eth0/queues/rx-* | wc -l)"
}

# result NAME RC DETAIL...
result() {
	name=$1 rc=$2
	shift 2
	if [ "$rc" = 0 ]; then echo "VHD-RESULT $name ok $*"; else echo "VHD-RESULT $name fail rc=$rc $*"; fi
}

# ping N: N echo requests, all of them answered.
do_ping() {
	out=$(ping -c "$1" -i 0.2 -W 3 "$VHD_PEER" 2>&1)
	rc=$?
	sum=$(echo "$out" | grep 'packets transmitted')
	echo "$sum" | grep -q "$1 packets received" || rc=1
	result "${2:-ping}" $rc "$sum"
}

do_arping() {
	out=$(arping -c 3 -w 6 -I eth0 "$VHD_PEER" 2>&1)
	rc=$?
	sum=$(echo "$out" | grep -i 'received')
	result arping $rc "$sum"
}

# Frames and bytes the guest's driver counted.
eth_counters() {
	echo "VHD-COUNTERS rx $(cat /sys/class/net/eth0/statistics/rx_packets) tx $(cat /sys/class/net/eth0/statistics/tx_packets) rx_errors $(cat /sys/class/net/eth0/statistics/rx_errors) rx_dropped $(cat /sys/class/net/eth0/statistics/rx_dropped)"
}
