# The full exchange with a host network stack at $VHD_PEER (vhost-pktgen --mode tap): ping, ARP, UDP both ways
# with every datagram checked, TCP both ways with every byte checked. tests/interop/test_guest.py starts the
# host's ends (ports 7001/7003 receive, 7002/7004 are ours) and reads the results.
do_ping 5
do_arping
# Room in the qdisc for the whole UDP burst: a device that drains it slower than nettool paces (a vIOMMU in
# iommu.strict=1 costs a round trip to QEMU per frame) must not lose datagrams in the guest's own queue, where
# sendto() still succeeds; what the device loses is what this checks.
echo 4000 >/sys/class/net/eth0/tx_queue_len
nettool udp-send "$VHD_PEER" 7001 2000
nettool udp-recv 7002 2000 3000
nettool tcp-send "$VHD_PEER" 7003 8388608
nettool tcp-recv 7004 8388608
eth_counters
