#!/usr/bin/env python3
"""vxlan ports against each other and against Linux's own vxlan device, over a real (veth) underlay.

Three hosts, each a network namespace: hostA and hostB each run vhostd with a tap port (the host's stack as the
"guest", inner address 10.50.0.x) and a vxlan port whose remotes are the two other hosts; hostC has no vhostd
but a plain Linux vxlan netdev (`ip link add vx0 type vxlan id 4242`, head-end replication to both through
all-zero fdb entries) with the inner address on it, and holds the underlay: a bridge with a veth to each of
hostA and hostB. Across each pair (vhostd<->vhostd, vhostd<->Linux vxlan): ping both ways, UDP datagrams each
checked byte for byte, a TCP stream checked byte for byte (tests/interop/hostpeer.py), then the ports' own
counters: no refused datagram, no error, both remote MACs learned. Last, Linux sends on another VNI to hostA:
counted as rx_wrong_vni and never delivered.
Each vhostd also has a vhost-user port pg: vhost-pktgen's generator on hostA's and its sink on hostB's (one
process, two vhost-user connections) carry 20000 frames of 60-1400 bytes across the tunnel, each verified at the
sink; any lost must be counted by a drop counter on the way.

usage: test_vxlan.py VHOSTD VHOSTCTL VHOST-PKTGEN [case-substring]
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import vhdrig  # noqa: E402
from vhdrig import HostNs, expect  # noqa: E402

VNI = 4242
MTU = 1450  # the underlay's 1500 less VXLAN's 50
UNDER = {"a": "192.168.77.1", "b": "192.168.77.2", "c": "192.168.77.3"}
INNER = {"a": "10.50.0.1", "b": "10.50.0.2", "c": "10.50.0.3"}
PAIRS = (("a", "b"), ("a", "c"), ("b", "c"))
REFUSALS = ("rx_runts", "rx_bad_flags", "rx_wrong_vni", "rx_unknown_remote", "rx_too_big", "rx_errors",
            "tx_errors", "tx_full")


def underlay(hosts):
    """hostC's bridge holds the wire; hostA and hostB each hang on it by a veth."""
    c = hosts["c"]
    c.nsrun("ip", "link", "add", "br0", "type", "bridge")
    c.nsrun("ip", "addr", "add", f"{UNDER['c']}/24", "dev", "br0")
    c.nsrun("ip", "link", "set", "br0", "up")
    for h in ("a", "b"):
        vhdrig.veth(hosts[h], f"u{h}", f"{UNDER[h]}/24", c, f"w{h}", master="br0")


def start_vhostd(r, h):
    others = ",".join(UNDER[o] for o in "abc" if o != h)
    tap = f"vxt{h}"
    r.start_vhostd([f"add-port t0 tap ifname={tap} addr={INNER[h]}/24 mtu={MTU}",
                    f"add-port vx vxlan vni={VNI} remote={others} local={UNDER[h]}",
                    f"add-port pg vhost-user path={r.sock('pg')} mtu={MTU}"],
                   # two threads: the vxlan port's receive (which learns) and transmit (which looks up) run on
                   # different ones, where ThreadSanitizer sees them
                   extra=("--threads", "2"))
    r.wait_link(["t0", "vx"])
    r.nsrun("ip", "link", "set", tap, "mtu", str(MTU))
    r.host_ifaces.append((tap, r.ns))


def linux_vxlan(c, name, vni, addr):
    """hostC's kernel VTEP: replicates to hostA and hostB, learns like any Linux vxlan device."""
    vhdrig.linux_vxlan(c, name, vni, UNDER["c"], (UNDER["a"], UNDER["b"]), "br0", MTU, addr)


def three_hosts(rig):
    hosts = {"a": rig, "b": rig.child("vxb"), "c": rig.child("vxc")}
    underlay(hosts)
    for h in ("a", "b"):
        start_vhostd(hosts[h], h)
    linux_vxlan(hosts["c"], "vx0", VNI, f"{INNER['c']}/24")
    peers = {h: HostNs(hosts[h], hosts[h].ns, INNER[h], f"host{h.upper()}") for h in "abc"}
    return hosts, peers


def vx_info(r):
    return r.show()["vx"]["info"]


PG_N = 20000


def pg_drops(a, b):
    """Every counter a frame from hostA's pg to hostB's pg may be dropped in: hostA's switch and vx (queue full,
    send errors), hostB's vx socket (kernel drops) and switch, hostB's pg (the sink's ring full)."""
    c = {}
    for name, r in (("A", a), ("B", b)):
        st = r.stats()
        for port in ("pg", "vx"):
            c[f"{name}.{port}.tx_drops"] = st[port]["tx_drops"]
            c[f"{name}.{port}.rx_drops"] = st[port]["rx_drops"]
        info = vx_info(r)
        for k in ("kernel_drops", "tx_errors", "tx_full"):
            c[f"{name}.vx.{k}"] = info[k]
    return c


def scenario(rig):
    hosts, peers = three_hosts(rig)
    port = [5300]

    def drops_rig(dst, src):
        # the vhostd on the receiving side, or the sender's when the receiver is Linux's vxlan
        return hosts[dst] if dst != "c" else hosts[src]

    for x, y in PAIRS:
        def ping(x=x, y=y):
            out = []
            for s, d in ((x, y), (y, x)):
                rc, lines = peers[s].ping(INNER[d], 5)
                out.append(vhdrig.ping_ok(f"{s}->{d}", rc, lines, 5))
            return " / ".join(out)

        def udp(x=x, y=y):
            lost = []
            for s, d in ((x, y), (y, x)):
                port[0] += 1
                lost.append(vhdrig.udp(drops_rig(d, s), peers[s], peers[d], port[0]))
            return f"{vhdrig.UDP_N} datagrams each way, lost (counted) {lost}"

        def tcp(x=x, y=y):
            out = []
            for s, d in ((x, y), (y, x)):
                port[0] += 1
                out.append(f"{s}->{d} " + vhdrig.tcp(peers[s], peers[d], port[0]))
            return ", ".join(out)

        yield f"vxlan_{x}{y}_ping", ping
        yield f"vxlan_{x}{y}_udp", udp
        yield f"vxlan_{x}{y}_tcp", tcp

    def pktgen():
        """vhost-pktgen's generator on hostA's vhostd, its sink on hostB's: PG_N frames of 60-1400 bytes across
        the tunnel, each verified at the sink (sequence, length, contents); any lost must be counted on the way."""
        a, b = hosts["a"], hosts["b"]
        procs = []
        try:
            before = pg_drops(a, b)
            g = vhdrig.pktgen(procs, "--frontend", a.sock("pg"), "--sink", b.sock("pg"), "--announce", "--verify",
                              "--count", str(PG_N), "--size", "60-1400", "--pps", "20000")
            res = vhdrig.pktgen_json(g, timeout=180)
        finally:
            for p in procs:
                vhdrig.kill_group(p)
        sink = res["sink"]["total"]
        expect(res["tx_packets"] == PG_N, f"generated {res['tx_packets']} of {PG_N}")
        expect(not (sink["dup"] or sink["corrupt"]), f"the sink saw {sink}")
        lost = PG_N - res["rx_packets"]
        if lost:
            after = pg_drops(a, b)
            counted = {k: after[k] - before[k] for k in after if after[k] != before[k]}
            expect(sum(counted.values()) >= lost, f"{lost} of {PG_N} lost, counted on the way: {counted or 'none'}")
        expect(hosts["b"].fdb().get("02:00:00:00:00:01") == "vx", f"hostB's fdb {hosts['b'].fdb()}")
        counted = {k: v - before[k] for k, v in pg_drops(a, b).items() if v != before[k]}
        return f"{PG_N} frames hostA->hostB, {res['rx_packets']} verified at the sink, lost {lost} (counted: {counted})"

    yield "vxlan_ab_pktgen", pktgen

    def counters():
        out = []
        for h in ("a", "b"):
            vhdrig.check_no_errors(hosts[h], f"host{h.upper()}")
            info = vx_info(hosts[h])
            bad = {k: info[k] for k in REFUSALS if info.get(k)}
            expect(not bad, f"host{h.upper()} vx: {bad}")
            expect(info["vni"] == VNI and info["dstport"] == 4789 and info["local"] == UNDER[h],
                   f"host{h.upper()} vx describes {info}")
            expect(sorted(info["remotes"]) == sorted(UNDER[o] for o in "abc" if o != h), f"remotes {info}")
            # the other vhostd's tap and Linux's vx0
            expect(info["learned"] >= 2, f"host{h.upper()} learned {info['learned']} MACs")
            out.append(f"host{h.upper()}: learned {info['learned']}, {info['tx_datagrams']} datagrams sent")
        return "; ".join(out)

    def wrong_vni():
        c = hosts["c"]
        linux_vxlan(c, "vx1", VNI + 1, "10.51.0.3/24")
        before = vx_info(hosts["a"])
        rc, _ = HostNs(c, c.ns, "10.51.0.3", "hostC-vx1").ping("10.51.0.1", 3)
        expect(rc != 0, "a ping on another VNI was answered")
        after = vx_info(hosts["a"])
        got = after["rx_wrong_vni"] - before["rx_wrong_vni"]
        expect(got >= 3, f"rx_wrong_vni moved by {got} for 3+ ARP requests on VNI {VNI + 1}")
        st = hosts["a"].stats()["vx"]
        expect(st.get("vxlan_rx_wrong_vni") == after["rx_wrong_vni"], f"vhostctl stats: {st}")
        c.nsrun("ip", "link", "del", "vx1")
        return f"rx_wrong_vni +{got}"

    yield "vxlan_counters", counters
    yield "vxlan_wrong_vni", wrong_vni


CASES = [f"vxlan_{x}{y}_{k}" for x, y in PAIRS for k in ("ping", "udp", "tcp")] + ["vxlan_ab_pktgen",
                                                                                    "vxlan_counters",
                                                                                    "vxlan_wrong_vni"]


def main():
    vhdrig.configure(vhostd=sys.argv[1], vhostctl=sys.argv[2], pktgen=sys.argv[3])
    filt = sys.argv[4] if len(sys.argv) > 4 else ""
    return vhdrig.run_scenarios([("vxa", scenario, CASES)], filt, need=("ip", "bridge", "busybox", "ethtool"))


if __name__ == "__main__":
    sys.exit(main())
