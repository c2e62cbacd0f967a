# The driver is unloaded and loaded again: the device is reset, then negotiated and set up from scratch.
do_ping 3 ping-before
ip link set eth0 down
rmmod virtio_net
result rmmod $?
modprobe virtio_net
eth_up
result reload $?
do_ping 5 ping-after
nettool udp-send "$VHD_PEER" 7001 1000
eth_counters
