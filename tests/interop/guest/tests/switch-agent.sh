# The guest's side of tests/interop/test_switch_guest.py: run what the host types on the console.
# Each line "VHDC ID COMMAND..." runs COMMAND in the background; every line it prints comes back as
# "VHD-O ID LINE", then "VHD-O ID VHD-RC STATUS". "VHDC ID exit" ends the script (and /init powers off).
# The host sequences the guests this way (receiver listening before the sender starts, snapshots of the
# driver's counters at quiet moments); the traffic itself only ever crosses vhostd.
stty -echo 2>/dev/null
echo "VHD-AGENT ready $(cat /sys/class/net/eth0/address 2>/dev/null || echo none)"
while read -r tag id cmd; do
	[ "$tag" = VHDC ] || continue
	[ "$cmd" = exit ] && break
	( { eval "$cmd"; echo "VHD-RC $?"; } 2>&1 | while IFS= read -r l; do echo "VHD-O $id $l"; done ) &
done
