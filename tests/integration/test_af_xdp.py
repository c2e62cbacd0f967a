#!/usr/bin/env python3
"""vhostd forwarding between an af_xdp port and a tap, with the kernel's stacks on both ends.

vhostd runs in a namespace of its own; its tap there carries the host's address 10.0.0.1, and its af_xdp port sits
on one end of a veth pair whose other end, in a second namespace, is 10.0.0.9 (checksum offload off, as
docs/switch.md tells users). Per XDP mode (native: veth's own XDP; generic: forced with mode=generic):

  ping both ways; UDP (2000 datagrams, each checked for loss, duplication, corruption) and TCP (8 MiB, every byte
  checked) both ways; vhostctl show names the mode and copy mode; no port errors; the veth peer's MAC learned on
  the af_xdp port; after del-port, no XDP program is left on the interface.

usage: test_af_xdp.py VHOSTD VHOSTCTL [case-substring]
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from vhdrig import (HOST_IP, UDP_N, VETH_IP, HostNs, check_no_errors, expect, ping_ok, tcp, udp)  # noqa: E402
import vhdrig  # noqa: E402

FILTER = sys.argv[3] if len(sys.argv) > 3 else ""


def scenario(mode):
    def fn(rig):
        va, vb, peer = rig.veth_peer(tx_csum=False)
        args = "" if mode == "native" else " mode=generic"
        rig.start_vhostd([f"add-port t0 tap ifname={rig.tap}", f"add-port x0 af_xdp ifname={va}{args}"])
        rig.tap_up()
        host = HostNs(rig, rig.ns, HOST_IP, "host")
        peer_mac = rig.nsrun("cat", f"/sys/class/net/{vb}/address", ns=rig.ns2).stdout.strip()

        def traffic():
            show = rig.wait_link(["t0", "x0"])
            info = show["x0"]["info"]
            expect(info.get("mode") == mode and info.get("zerocopy") is False and info.get("ifname") == va and
                   info.get("queue") == 0, f"show x0: {info}")
            rc, out = host.ping(VETH_IP)
            p1 = ping_ok("host->veth peer", rc, out, 5)
            rc, out = peer.ping(HOST_IP)
            ping_ok("veth peer->host", rc, out, 5)
            fdb = rig.fdb()
            expect(fdb.get(peer_mac) == "x0", f"fdb {fdb}: wanted {peer_mac} on x0")
            u1 = udp(rig, host, peer, 7701)
            u2 = udp(rig, peer, host, 7702)
            t1 = tcp(host, peer, 7703)
            t2 = tcp(peer, host, 7704)
            check_no_errors(rig, f"af_xdp {mode}")
            s = rig.stats()["x0"]
            expect(s["rx_packets"] > UDP_N and s["tx_packets"] > UDP_N, f"x0 stats {s}")
            expect(all(k in s for k in ("af_xdp_fill_ring_empty", "af_xdp_rx_ring_full", "af_xdp_rx_dropped",
                                        "af_xdp_tx_ring_full")), f"x0 stats lack the af_xdp counters: {s}")
            return (f"{p1}; UDP {UDP_N} each way (lost {u1}, {u2}); TCP host->peer {t1}, peer->host {t2}; "
                    f"x0 rx {s['rx_packets']} tx {s['tx_packets']} tx_drops {s['tx_drops']}")

        def detached():
            link = rig.nsrun("ip", "link", "show", "dev", va).stdout
            expect("prog/xdp" in link, f"no XDP program on {va} while the port exists: {link}")
            rig.ctl_json("del-port", "x0")
            link = rig.nsrun("ip", "link", "show", "dev", va).stdout
            expect(" xdp" not in link and "prog/xdp" not in link, f"an XDP program is left on {va}: {link}")
            return "no XDP program on the interface after del-port"

        yield f"af_xdp_{mode}_tap", traffic
        yield f"af_xdp_{mode}_detached", detached
    return fn


SCENARIOS = [
    ("af_xdp_native", scenario("native"), ["af_xdp_native_tap", "af_xdp_native_detached"]),
    ("af_xdp_generic", scenario("generic"), ["af_xdp_generic_tap", "af_xdp_generic_detached"]),
]


def main():
    vhdrig.configure(vhostd=sys.argv[1], vhostctl=sys.argv[2])
    return vhdrig.run_scenarios(SCENARIOS, FILTER, need=("ip", "busybox", "ethtool"))


if __name__ == "__main__":
    sys.exit(main())
