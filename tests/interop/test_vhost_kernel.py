#!/usr/bin/env python3
"""Our frontend over vhost-kernel (/dev/vhost-net and a tap) inside the Debian 6.12 guest, whose kernel has
vhost_net (the host's has not): our binaries run in the guest (vhdrig.Guest payload), against its kernel.

  pktgen_ping        vhost-pktgen --frontend /dev/vhost-net --tap t0 --mode icmpecho: the guest kernel pings
                     an address on t0's subnet and vhost-pktgen answers (ARP and ICMP) through vhost-net
  pktgen_bridge_*    vhost-pktgen --mode tap over vhost-kernel with two queue pairs: vhost-net's tap in netns
                     a, the bridged tap in netns b, so the guest kernel talks to itself across our frontend:
                     ping, 2000 UDP datagrams each way and 8 MiB of TCP each way (every datagram and byte
                     checked by nettool), with the checksum and segmentation offloads negotiated (TSO: the
                     taps count fewer, larger frames than MSS-sized ones)
  tap_deleted        vhost-net's tap deleted under traffic: vhost-pktgen says so, stays alive, comes up again
                     on a new tap, and exits cleanly (no leak under ASan) on SIGINT
  max_mem_regions    the vhost module allowing fewer memory regions than our memory needs: refused, naming
                     max_mem_regions
  packed_refused     --packed with vhost-kernel: refused with a clear message (vhost-net has no packed ring)
  vhostd_*           vhostd in the guest with two `vhost-net` ports, vn0 (netns c) and vn1 (netns d, two queue
                     pairs): ping, 2000 UDP datagrams and 8 MiB of TCP each way between the two kernel stacks
                     through the switch; every port's counters equal its tap's (compare_tap), no errors; then
                     vn0's tap deleted under traffic: the port goes down (downs), vhostd stays alive, the port
                     comes back on a fresh tap, and vhostd exits 0 on SIGTERM (ASan's leak check included)

usage: test_vhost_kernel.py VHOSTD VHOSTCTL PKTGEN [case-substring]
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from vhdrig import TCP_BYTES, Guest, GuestNs, compare_tap, expect, ping_ok, tcp, udp  # noqa: E402
import vhdrig  # noqa: E402

vhdrig.configure(vhostd=sys.argv[1], vhostctl=sys.argv[2], pktgen=sys.argv[3])
FILTER = sys.argv[4] if len(sys.argv) > 4 else ""
IP = "/usr/bin/ip"
# Our binaries may be the sanitizer build: a leak or UB makes them fail in the guest too.
ENV = vhdrig.GUEST_SAN


class InGuest:
    """udp()'s drop accounting (vhdrig.drop_counters) inside the guest: a datagram lost must have been counted
    by the guest's vhostd (stats, show: its vhostctl --json answers, or nothing) or by one of ifaces ((ifname,
    netns) pairs in the guest)."""

    def __init__(self, g, stats=dict, show=dict, ifaces=()):
        self.g, self.stats, self.show, self.host_ifaces = g, stats, show, list(ifaces)

    def iface_stats(self, ifname, ns):
        out = sh(self.g, f"{IP} netns exec {ns} sh -c 'cd /sys/class/net/{ifname}/statistics && "
                         f"cat tx_dropped rx_dropped'")
        return dict(zip(("tx_dropped", "rx_dropped"), map(int, out)))


def sh(g, command, timeout=60):
    rc, out = g.cmd(command, timeout=timeout)
    expect(rc == 0, f"'{command}' failed ({rc}): {out[-5:]}")
    return out


def bg(g, tag, program, args):
    """program in the guest, its pid in /tmp/{tag}.pid and its output in /tmp/{tag}.log. @return the job."""
    return g.start(f"sh -c 'echo $$ > /tmp/{tag}.pid; exec env {ENV} {program} {args}' > /tmp/{tag}.log 2>&1")


def pktgen(g, tag, args):
    return bg(g, tag, vhdrig.PKTGEN, args)


def log_of(g, tag):
    return g.cmd(f"cat /tmp/{tag}.log")[1]


def wait_log(g, tag, pattern, count=1, secs=30):
    """Until pattern appears count times in tag's log. @return the log."""
    rc, out = g.cmd(f"i=0; until [ $(grep -c '{pattern}' /tmp/{tag}.log) -ge {count} ]; do i=$((i+1)); "
                    f"[ $i -lt {secs * 5} ] || exit 1; sleep 0.2; done", timeout=secs + 30)
    lines = log_of(g, tag)
    expect(rc == 0, f"{tag}: no {count}x '{pattern}' within {secs} s: {lines[-8:]}")
    return lines


def stop(g, tag, job, sig="INT"):
    """SIGINT (or sig), then its exit status must be 0 (ASan's leak check passes). @return its log."""
    sh(g, f"kill -{sig} $(cat /tmp/{tag}.pid)")
    rc, _ = job.wait(60)
    lines = log_of(g, tag)
    expect(rc == 0, f"{tag}: exit status {rc}: {lines[-10:]}")
    return lines


def link_stats(g, ns, dev):
    out = sh(g, f"cat /sys/class/net/{dev}/statistics/tx_packets /sys/class/net/{dev}/statistics/tx_bytes"
                if ns is None else f"{IP} netns exec {ns} sh -c 'cd /sys/class/net/{dev}/statistics && "
                f"cat tx_packets tx_bytes rx_packets rx_bytes'")
    return list(map(int, out))


def scenario(rig):
    g = Guest(rig, "g", None, None, payload=[vhdrig.VHOSTD, vhdrig.VHOSTCTL, vhdrig.PKTGEN, IP], mem="1G",
              smp=2).boot()
    g.wait_agent()
    sh(g, "modprobe tun && modprobe vhost_net && test -c /dev/vhost-net")

    def pktgen_ping():
        job = pktgen(g, "echo", "--frontend /dev/vhost-net --tap t0 --mode icmpecho")
        wait_log(g, "echo", "vhost-kernel up")
        sh(g, f"{IP} link set t0 up && {IP} addr add 10.9.0.1/24 dev t0")
        rc, out = g.ping("10.9.0.2", n=5)
        summary = ping_ok("t0", rc, out, 5)
        lines = stop(g, "echo", job)
        tot = [x.split() for x in lines if x.startswith("total")]
        # 5 echo requests and at least one ARP request, each answered.
        expect(tot and int(tot[0][1]) >= 6 and tot[0][1] == tot[0][3], f"pktgen counters: {lines[-6:]}")
        return f"{summary}; pktgen rx/tx {tot[0][1]}/{tot[0][3]}"

    a = GuestNs(g, "a", "10.8.0.1")
    b = GuestNs(g, "b", "10.8.0.2")
    bridge = {}

    def bridge_up():
        bridge["job"] = pktgen(g, "br", "--frontend /dev/vhost-net --vhost-tap ka --tap kb --mode tap --queues 2")
        lines = wait_log(g, "br", "vhost-kernel up")
        up = [x for x in lines if "vhost-kernel up" in x][0]
        feats = int(re.search(r"features 0x([0-9a-f]+)", up).group(1), 16)
        # CSUM, GUEST_CSUM, GUEST_TSO4, HOST_TSO4, MQ: the offloads and the tap-paired queues were negotiated.
        want = (1 << 0) | (1 << 1) | (1 << 7) | (1 << 11) | (1 << 22)
        expect(feats & want == want, f"features 0x{feats:x} lack some of 0x{want:x}: {up}")
        sh(g, f"{IP} netns add a && {IP} netns add b && {IP} link set ka netns a && {IP} link set kb netns b && "
              f"{IP} -n a addr add 10.8.0.1/24 dev ka && {IP} -n a link set ka up && {IP} -n a link set lo up && "
              f"{IP} -n b addr add 10.8.0.2/24 dev kb && {IP} -n b link set kb up && {IP} -n b link set lo up")
        rc, out = g.cmd(f"{IP} netns exec a ping -c 5 -i 0.2 -W 3 10.8.0.2", timeout=40)
        return f"{ping_ok('a->b', rc, out, 5)}; features 0x{feats:x}"

    def bridge_udp():
        taps = InGuest(g, ifaces=[("ka", "a"), ("kb", "b")])
        lost = udp(taps, a, b, 5001) + udp(taps, b, a, 5002)
        return f"2000 datagrams each way, all checked ({lost} lost, counted by the taps)"

    def bridge_tcp():
        before = link_stats(g, "a", "ka")
        r1 = tcp(a, b, 5003)
        r2 = tcp(b, a, 5004)
        after = link_stats(g, "a", "ka")
        txp, txb = after[0] - before[0], after[1] - before[1]
        # 8 MiB in 1514-byte frames would be 5800 of them: fewer means segmentation was left to the other end.
        expect(txp and txb / txp > 3000, f"ka sent {txb} bytes in {txp} frames: no TSO across vhost-net")
        return f"a->b {r1}, b->a {r2}; ka sent {txp} frames averaging {txb // txp} bytes"

    def tap_deleted():
        flood = g.start(f"{IP} netns exec a nettool udp-send 10.8.0.2 5005 20000")
        wait_log(g, "br", "vhost-kernel up", count=1)
        sh(g, f"sleep 1; {IP} -n a link del ka")
        lines = wait_log(g, "br", "tap ka is gone")
        # Back on a fresh tap (created in the guest's root namespace) after the back-off.
        lines = wait_log(g, "br", "vhost-kernel up", count=2)
        sh(g, f"test -d /sys/class/net/ka && kill -0 $(cat /tmp/br.pid)")
        flood.wait(120)
        lines = stop(g, "br", bridge["job"])
        gone = [x for x in lines if "is gone" in x][0]
        return f"'{gone.split('error: ', 1)[-1]}', up again, clean exit"

    def max_mem_regions():
        # (read-only once loaded: set when loading the module; nothing holds it between the cases)
        sh(g, "modprobe -r vhost_net vhost && modprobe vhost max_mem_regions=0 && modprobe vhost_net")
        try:
            job = pktgen(g, "mm", "--frontend /dev/vhost-net --tap t9")
            lines = wait_log(g, "mm", "max_mem_regions")
            stop(g, "mm", job)
        finally:
            sh(g, "modprobe -r vhost_net vhost && modprobe vhost_net")
        why = [x for x in lines if "max_mem_regions" in x][0]
        expect("allows 0" in why and "setup failed at SET_MEM_TABLE" in " ".join(lines), f"{lines[-5:]}")
        return why.split("error: ", 1)[-1]

    def packed_refused():
        rc, out = g.cmd(f"{ENV} {vhdrig.PKTGEN} --frontend /dev/vhost-net --tap t8 --packed 2>&1")
        expect(rc == 2 and any("vhost-net has no packed rings" in x for x in out), f"rc {rc}: {out[-3:]}")
        return out[0]

    c = GuestNs(g, "c", "10.7.0.1")
    d = GuestNs(g, "d", "10.7.0.2")
    vd = {}
    ctl = f"{vhdrig.VHOSTCTL} --socket /tmp/vd.sock"

    def vstats():
        import json
        out = sh(g, f"{ctl} --json stats")
        return {p["name"]: p for p in json.loads("".join(out))["ports"]}

    def vshow_all():
        import json
        out = sh(g, f"{ctl} --json show")
        return {p["name"]: p for p in json.loads("".join(out))["ports"]}

    def vshow(port):
        return vshow_all()[port]


    def tap_counters(ns, dev):
        out = sh(g, f"{IP} netns exec {ns} sh -c 'cd /sys/class/net/{dev}/statistics && "
                    f"cat tx_packets rx_packets tx_dropped rx_dropped'")
        return dict(zip(("tx_packets", "rx_packets", "tx_dropped", "rx_dropped"), map(int, out)))

    def vhostd_up():
        sh(g, "printf 'add-port vn0 vhost-net ifname=vn0\\nadd-port vn1 vhost-net ifname=vn1 queues=2\\n' "
              "> /tmp/vd.conf")
        vd["job"] = bg(g, "vd", vhdrig.VHOSTD, "--socket /tmp/vd.sock --config /tmp/vd.conf")
        wait_log(g, "vd", "vn0: up")
        wait_log(g, "vd", "vn1: up")
        sh(g, f"{IP} netns add c && {IP} netns add d && {IP} link set vn0 netns c && {IP} link set vn1 netns d")
        for ns, dev, ip in (("c", "vn0", c.ip), ("d", "vn1", d.ip)):
            # No IPv6 chatter (DAD, router solicitations) to race the counter comparison.
            sh(g, f"{IP} netns exec {ns} sh -c '[ ! -d /proc/sys/net/ipv6 ] || "
                  f"echo 1 > /proc/sys/net/ipv6/conf/{dev}/disable_ipv6' && "
                  f"{IP} -n {ns} addr add {ip}/24 dev {dev} && {IP} -n {ns} link set {dev} up && "
                  f"{IP} -n {ns} link set lo up")
        rc, out = g.cmd(f"{IP} netns exec c ping -c 5 -i 0.2 -W 3 {d.ip}", timeout=40)
        return ping_ok("c->d", rc, out, 5)

    def vhostd_traffic():
        counted = InGuest(g, vstats, vshow_all, [("vn0", "c"), ("vn1", "d")])
        lost = udp(counted, c, d, 5011) + udp(counted, d, c, 5012)
        return f"UDP 2000 each way ({lost} lost, counted by vhostd); TCP c->d {tcp(c, d, 5013)}, d->c {tcp(d, c, 5014)}"

    def vhostd_counters():
        for _ in range(5):
            s1 = vstats()
            taps = {"vn0": tap_counters("c", "vn0"), "vn1": tap_counters("d", "vn1")}
            s2 = vstats()
            if all(s1[p]["rx_packets"] == s2[p]["rx_packets"] and s1[p]["tx_packets"] == s2[p]["tx_packets"]
                   for p in taps):
                break
        else:
            raise vhdrig.CaseError("vhostd's counters never stood still")
        errs = compare_tap("vn0", taps["vn0"], s2["vn0"]) + compare_tap("vn1", taps["vn1"], s2["vn1"])
        errs += [f"{p}: errors {s2[p]['errors']}" for p in taps if s2[p]["errors"]]
        expect(not errs, "; ".join(errs))
        # Two ports: everything one receives the other sends or counts as dropped (its ring was full).
        for x, y in (("vn0", "vn1"), ("vn1", "vn0")):
            expect(s2[x]["rx_packets"] == s2[y]["tx_packets"] + s2[y]["tx_drops"] and s2[x]["rx_bytes"] > TCP_BYTES,
                   f"{x} rx vs {y} tx + tx_drops: {s2}")
        return (f"vn0 rx {s2['vn0']['rx_packets']} tx {s2['vn0']['tx_packets']}, vn1 rx {s2['vn1']['rx_packets']} "
                f"tx {s2['vn1']['tx_packets']}: equal to the taps'")

    def vhostd_tap_deleted():
        flood = g.start(f"{IP} netns exec d nettool udp-send {c.ip} 5015 20000")
        sh(g, f"sleep 1; {IP} -n c link del vn0")
        wait_log(g, "vd", "tap vn0 is gone")
        wait_log(g, "vd", "vn0: up", count=2)
        info = vshow("vn0")["info"]
        expect(info.get("downs", 0) >= 1 and info.get("ups", 0) >= 2 and info.get("ifname") == "vn0",
               f"vn0 after its tap was deleted: {info}")
        flood.wait(120)
        lines = stop(g, "vd", vd["job"], sig="TERM")
        return f"downs {info['downs']} ups {info['ups']}; vhostd exited 0 ({len(lines)} log lines)"

    yield "pktgen_ping", pktgen_ping
    yield "pktgen_bridge_ping", bridge_up
    yield "pktgen_bridge_udp", bridge_udp
    yield "pktgen_bridge_tcp", bridge_tcp
    yield "tap_deleted", tap_deleted
    yield "max_mem_regions", max_mem_regions
    yield "packed_refused", packed_refused
    yield "vhostd_ping", vhostd_up
    yield "vhostd_udp_tcp", vhostd_traffic
    yield "vhostd_counters", vhostd_counters
    yield "vhostd_tap_deleted", vhostd_tap_deleted


CASES = ["pktgen_ping", "pktgen_bridge_ping", "pktgen_bridge_udp", "pktgen_bridge_tcp", "tap_deleted",
         "max_mem_regions", "packed_refused", "vhostd_ping", "vhostd_udp_tcp", "vhostd_counters",
         "vhostd_tap_deleted"]
sys.exit(vhdrig.run_scenarios([("vhost_kernel", scenario, CASES)], FILTER))
