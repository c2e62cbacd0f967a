# Ping and ARP only (the peer may be vhost-pktgen --mode icmpecho, which answers nothing else).
do_ping 5
do_arping
do_ping 10 ping-again
eth_counters
