# Two queue pairs: the driver picks the transmit queue by CPU (XPS), so a sender on each CPU uses each queue.
do_ping 5
taskset 1 nettool udp-send "$VHD_PEER" 7001 1000
taskset 2 nettool udp-send "$VHD_PEER" 7005 1000
nettool udp-recv 7002 2000 3000
taskset 1 nettool tcp-send "$VHD_PEER" 7003 4194304
nettool tcp-recv 7004 4194304
eth_counters
