# The full exchange with a host network stack at $VHD_PEER (vhost-pktgen --mode tap): ping, ARP, UDP both ways
# with every datagram checked, TCP both ways with every byte checked. tests/interop/test_guest.py starts the
# host's ends (ports 7001/7003 receive, 7002/7004 are ours) and reads the results.
do_ping 5
do_arping
nettool udp-send "$VHD_PEER" 7001 2000
nettool udp-recv 7002 2000 3000
nettool tcp-send "$VHD_PEER" 7003 8388608
nettool tcp-recv 7004 8388608
eth_counters
