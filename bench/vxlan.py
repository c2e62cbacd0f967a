#!/usr/bin/env python3
"""What the VXLAN tunnel costs between two vhostd hosts, as ratios in one run.

Two network namespaces joined by a veth, each with a vhostd: hostA has vhost-user port vm (vhost-pktgen's
generator) and an uplink, hostB an uplink and vhost-user port vm (vhost-pktgen's sink, which announces its
MAC). The uplink is, in turn:
  vxlan       a vxlan port (vni 1) to the other host over the veth's IPv4 addresses
  vxlan_nogso the same with gso=off (one datagram per send, no UDP_SEGMENT runs)
  linux       an af_packet port on a Linux vxlan device (vni 1) over the veth: the kernel's own tunnel, the peer
  af_packet   an af_packet port on the veth itself (no tunnel: the same hosts and wire, plain Ethernet)
Frames of SIZE bytes (60 and 1400) go from generator to sink for SECONDS; the sink's rate is the figure, the
ratios vxlan / linux (ours against the kernel's) and vxlan / af_packet (the tunnel's cost). The runs alternate
ROUNDS times; the median counts. The machine's other load moves the absolute rates; the ratios are the result.

usage: bench/vxlan.py BUILD_DIR [SECONDS [ROUNDS]]
"""
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "lib"))
import vhdrig  # noqa: E402

UNDER = {"a": "192.168.79.1", "b": "192.168.79.2"}


def run_once(build, uplink, size, seconds):
    a = vhdrig.Rig("vba")
    b = a.child("vbb")
    try:
        vhdrig.veth(a, "ua", f"{UNDER['a']}/24", b, "ub", addr_b=f"{UNDER['b']}/24")
        for r, h, o, dev in ((a, "a", "b", "ua"), (b, "b", "a", "ub")):
            if uplink.startswith("vxlan"):
                up = f"add-port up vxlan vni=1 remote={UNDER[o]} local={UNDER[h]}"
                up += " gso=off" if uplink == "vxlan_nogso" else ""
            elif uplink == "linux":
                vhdrig.linux_vxlan(r, "vx0", 1, UNDER[h], [UNDER[o]], dev, 1450, f"10.79.0.{1 + (h == 'b')}/24")
                up = "add-port up af_packet ifname=vx0"
            else:
                up = f"add-port up af_packet ifname={dev}"
            r.start_vhostd([f"add-port vm vhost-user path={r.sock('vm')}", up])
        p = subprocess.run([os.path.join(build, "tools", "vhost-pktgen"), "--frontend", a.sock("vm"), "--sink",
                            b.sock("vm"), "--announce", "--mode", "txonly", "--size", str(size), "--static",
                            "--no-mrg", "--warmup", "1", "--duration", str(seconds), "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=seconds + 60)
        res = json.loads(p.stdout.strip().splitlines()[-1])
        return res["rx_mpps"]
    finally:
        a.cleanup()


def main():
    build = os.path.abspath(sys.argv[1])
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    vhdrig.configure(vhostd=os.path.join(build, "tools", "vhostd"), vhostctl=os.path.join(build, "tools",
                                                                                         "vhostctl"))
    for size in (60, 1400):
        got = {"vxlan": [], "vxlan_nogso": [], "linux": [], "af_packet": []}
        for _ in range(rounds):
            for uplink in got:
                got[uplink].append(run_once(build, uplink, size, seconds))
        med = {k: statistics.median(v) for k, v in got.items()}
        print(f"size {size}: vxlan {med['vxlan']:.3f} Mpps, Linux vxlan {med['linux']:.3f}, af_packet (no tunnel) "
              f"{med['af_packet']:.3f}, vxlan gso=off {med['vxlan_nogso']:.3f}; vxlan/linux {med['vxlan'] / med['linux']:.2f}, "
              f"gso on/off {med['vxlan'] / med['vxlan_nogso']:.2f}, vxlan/af_packet "
              f"{med['vxlan'] / med['af_packet']:.2f}  (runs: {got})", flush=True)


if __name__ == "__main__":
    main()
