# Ping, then wait to be killed (the host kills QEMU while the back-end keeps serving).
do_ping 3
echo "VHD-HANG"
sleep 600
