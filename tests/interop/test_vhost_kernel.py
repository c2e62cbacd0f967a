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
  packed_refused     --packed with vhost-kernel: refused with a clear message (vhost-net has no packed ring);
                     so is --mode tap without --vhost-tap (its --tap is the bridged tap)
  mode_*             every other vhost-pktgen mode over vhost-kernel, on a tap made beforehand in netns m, which
                     has the generated frames' destination (10.0.0.2, 02:00:00:00:00:02): txonly (the tap's
                     rx_packets grew by --count), txrx (nettool udp-echo echoes each one: all back, verified),
                     rxonly (the datagrams the kernel sent counted), io and macswap (sent back into the tap;
                     macswap's, to the tap's own MAC, reach IP: InAddrErrors)
  vhostd_*           vhostd in the guest with two `vhost-net` ports, vn0 (netns c) and vn1 (netns d, two queue
                     pairs): ping, 2000 UDP datagrams and 8 MiB of TCP each way between the two kernel stacks
                     through the switch; every port's counters equal its tap's (compare_tap), no errors; then
                     vn0's tap deleted under traffic: the port goes down (downs), vhostd stays alive, the port
                     comes back on a fresh tap, and vhostd exits 0 on SIGTERM (ASan's leak check included)
  vhostd_vm_*        vhostd with a vhost-net port vn2 (netns e) and a vhost-user port vm whose driver, standing in
                     for a VM, is vhost-pktgen's frontend in --mode tap (its tap vt in netns f): ping, 2000 UDP
                     datagrams and 8 MiB of TCP each way; both ports' counters equal their taps'

usage: test_vhost_kernel.py VHOSTD VHOSTCTL PKTGEN [case-substring]
"""
import json
import os
import re
import sys
import time

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
        # 8 MiB in 1514-byte frames would be 5800 of them: fewer, larger on average than the largest unsegmented
        # frame, means segmentation was left to the other end (how much larger depends on TCP's pacing, which a
        # loaded host makes vary: 2500 bytes seen).
        expect(txp and txb / txp > 1514, f"ka sent {txb} bytes in {txp} frames: no TSO across vhost-net")
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
        # --mode tap's --tap is the bridged tap: vhost-net's own must be named apart.
        rc, tap = g.cmd(f"{ENV} {vhdrig.PKTGEN} --frontend /dev/vhost-net --mode tap --tap t8 2>&1")
        expect(rc == 2 and any("--vhost-tap NAME with --mode tap" in x for x in tap), f"rc {rc}: {tap[-3:]}")
        return f"{out[0]}; {tap[0]}"

    # Every vhost-pktgen mode over vhost-kernel, its tap tm made beforehand (up, so that no frame is sent into
    # a tap that is down) in netns m, which has the address and MAC the generated frames go to (10.0.0.1,
    # 02:00:00:00:00:01 -> 10.0.0.2, 02:00:00:00:00:02) and knows vhost-pktgen's without asking.
    m = GuestNs(g, "m", "10.0.0.2")

    def modes_setup():
        """netns m and its tap tm, once (a case may run alone)."""
        if g.cmd(f"{IP} -n m link show tm")[0] == 0:
            return
        sh(g, f"{IP} netns add m && {IP} netns exec m sh -c '[ ! -d /proc/sys/net/ipv6 ] || "
              f"echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6' && "
              f"{IP} -n m tuntap add tm mode tap vnet_hdr && {IP} -n m link set tm address 02:00:00:00:00:02 && "
              f"{IP} -n m addr add {m.ip}/24 dev tm && {IP} -n m link set tm up && "
              f"{IP} -n m neigh add 10.0.0.1 lladdr 02:00:00:00:00:01 dev tm nud permanent")

    def in_addr_errors():
        out = sh(g, f"{IP} netns exec m cat /proc/net/snmp")
        ip = [x.split() for x in out if x.startswith("Ip:")]
        return int(ip[1][ip[0].index("InAddrErrors")])

    def pg_mode(tag, args, feed=None):
        """vhost-pktgen over tm (netns m, made first) in mode args, fed by feed() once up. @return its JSON
        totals and the tap's counters' increments."""
        modes_setup()
        before = tap_counters("m", "tm")
        job = bg(g, tag, f"{IP} netns exec m {vhdrig.PKTGEN}", f"--frontend /dev/vhost-net --tap tm --json {args}")
        wait_log(g, tag, "vhost-kernel up")
        if feed:
            feed()
        rc, _ = job.wait(120)
        lines = log_of(g, tag)
        js = [x for x in lines if x.startswith("{")]
        expect(rc == 0 and js, f"{tag}: exit status {rc}: {lines[-8:]}")
        after = tap_counters("m", "tm")
        return json.loads(js[0])["total"], {k: after[k] - before[k] for k in after}

    def send_into(n):
        return lambda: sh(g, f"{IP} netns exec m nettool udp-send 10.0.0.1 9 {n}", timeout=120)

    def mode_txonly():
        n = 1000
        t, d = pg_mode("txonly", f"--mode txonly --count {n}")
        expect(t["tx_packets"] == n and d["rx_packets"] + d["rx_dropped"] == n,
               f"sent {t['tx_packets']}, the kernel received {d['rx_packets']} (+{d['rx_dropped']} dropped)")
        return f"{n} frames sent, {d['rx_packets']} received by the kernel, {d['rx_dropped']} dropped there"

    def mode_txrx():
        # The kernel echoes every datagram (nettool udp-echo on the frames' port): each one comes back, checked.
        n = 500
        echo = vhdrig.peer_start(m, "udp-echo", 9, 3000)
        echo.ready()
        t, d = pg_mode("txrx", f"--mode txrx --verify --latency --window 32 --count {n}")
        res = echo.result(60)
        expect(t["tx_packets"] == n and t["rx_packets"] == n and not (t["lost"] or t["dup"] or t["corrupt"]),
               f"txrx: {t}; {res}")
        return f"{n} frames sent, echoed by the kernel ({res.split(' ', 2)[-1]}), all {n} back and verified"

    def mode_rxonly():
        n = 300
        t, d = pg_mode("rxonly", f"--mode rxonly --count {n}", send_into(n))
        expect(t["rx_packets"] == n and d["tx_packets"] == n and t["tx_packets"] == 0,
               f"the kernel sent {d['tx_packets']}, vhost-pktgen received {t['rx_packets']}")
        return f"{n} datagrams from the kernel counted"

    def mode_forward(mode):
        # io sends each frame back unchanged (to 02:00:00:00:00:01: not the tap's MAC, dropped before IP);
        # macswap to the tap's own MAC, so IP takes it and finds 10.0.0.1 not its own: InAddrErrors.
        n = 300
        modes_setup()
        errs = in_addr_errors()
        t, d = pg_mode(mode, f"--mode {mode} --count {n}", send_into(n))
        errs = in_addr_errors() - errs
        # A forwarding mode does not wait for room in the TX ring: a frame vhost-net has not made room for
        # (its worker starved on a loaded host) is dropped, and counted.
        expect(t["rx_packets"] == n and t["tx_packets"] + t["drops"] == n and d["tx_packets"] == n and
               d["rx_packets"] + d["rx_dropped"] == t["tx_packets"],
               f"{mode}: vhost-pktgen {t}, the tap's increments {d}")
        want = t["tx_packets"] if mode == "macswap" else 0
        expect(errs == want, f"{mode}: {errs} frames reached IP as addressed to the tap's MAC, not {want}")
        return f"{n} datagrams from the kernel, {t['tx_packets']} sent back to it ({errs} to its own MAC)"

    c = GuestNs(g, "c", "10.7.0.1")
    d = GuestNs(g, "d", "10.7.0.2")
    vd = {}

    def vstats(sock="/tmp/vd.sock"):
        out = sh(g, f"{vhdrig.VHOSTCTL} --socket {sock} --json stats")
        return {p["name"]: p for p in json.loads("".join(out))["ports"]}

    def vshow_all(sock="/tmp/vd.sock"):
        out = sh(g, f"{vhdrig.VHOSTCTL} --socket {sock} --json show")
        return {p["name"]: p for p in json.loads("".join(out))["ports"]}

    def vshow(port):
        return vshow_all()[port]


    def tap_counters(ns, dev):
        out = sh(g, f"{IP} netns exec {ns} sh -c 'cd /sys/class/net/{dev}/statistics && "
                    f"cat tx_packets rx_packets tx_dropped rx_dropped'")
        return dict(zip(("tx_packets", "rx_packets", "tx_dropped", "rx_dropped"), map(int, out)))

    def into_netns(pairs, label):
        """pairs: (netns, dev, GuestNs) twice: each dev into its new netns, with the GuestNs's address, up;
        then the first pings the second. @return ping's summary."""
        sh(g, " && ".join(f"{IP} netns add {ns} && {IP} link set {dev} netns {ns}" for ns, dev, _ in pairs))
        for ns, dev, peer in pairs:
            # No IPv6 chatter (DAD, router solicitations) to race the counter comparison.
            sh(g, f"{IP} netns exec {ns} sh -c '[ ! -d /proc/sys/net/ipv6 ] || "
                  f"echo 1 > /proc/sys/net/ipv6/conf/{dev}/disable_ipv6' && "
                  f"{IP} -n {ns} addr add {peer.ip}/24 dev {dev} && {IP} -n {ns} link set {dev} up && "
                  f"{IP} -n {ns} link set lo up")
        rc, out = g.cmd(f"{IP} netns exec {pairs[0][0]} ping -c 5 -i 0.2 -W 3 {pairs[1][2].ip}", timeout=40)
        return ping_ok(label, rc, out, 5)

    def two_port_counters(sock, taps):
        """taps: vhostd's two ports (at sock), each with the (netns, tap) the kernel sees it through. Once the
        counters stand still, each port's equal its tap's, no errors, and what one receives the other sends or
        counts as dropped (its ring was full). @return vhostd's counters."""
        for _ in range(5):
            s1 = vstats(sock)
            t = {p: tap_counters(*taps[p]) for p in taps}
            s2 = vstats(sock)
            if all(s1[p]["rx_packets"] == s2[p]["rx_packets"] and s1[p]["tx_packets"] == s2[p]["tx_packets"]
                   for p in taps):
                break
        else:
            raise vhdrig.CaseError("vhostd's counters never stood still")
        errs = [e for p in taps for e in compare_tap(p, t[p], s2[p])]
        errs += [f"{p}: errors {s2[p]['errors']}" for p in taps if s2[p]["errors"]]
        x, y = taps
        for a, b in ((x, y), (y, x)):
            if not (s2[a]["rx_packets"] == s2[b]["tx_packets"] + s2[b]["tx_drops"] and s2[a]["rx_bytes"] > TCP_BYTES):
                errs.append(f"{a} rx vs {b} tx + tx_drops: {s2[a]}, {s2[b]}")
        expect(not errs, "; ".join(errs))
        return (f"{x} rx {s2[x]['rx_packets']} tx {s2[x]['tx_packets']}, {y} rx {s2[y]['rx_packets']} "
                f"tx {s2[y]['tx_packets']}: equal to the taps'")

    def vhostd_up():
        sh(g, "printf 'add-port vn0 vhost-net ifname=vn0\\nadd-port vn1 vhost-net ifname=vn1 queues=2\\n' "
              "> /tmp/vd.conf")
        vd["job"] = bg(g, "vd", vhdrig.VHOSTD, "--socket /tmp/vd.sock --config /tmp/vd.conf")
        wait_log(g, "vd", "vn0: up")
        wait_log(g, "vd", "vn1: up")
        return into_netns((("c", "vn0", c), ("d", "vn1", d)), "c->d")

    def vhostd_traffic():
        counted = InGuest(g, vstats, vshow_all, [("vn0", "c"), ("vn1", "d")])
        lost = udp(counted, c, d, 5011) + udp(counted, d, c, 5012)
        return f"UDP 2000 each way ({lost} lost, counted by vhostd); TCP c->d {tcp(c, d, 5013)}, d->c {tcp(d, c, 5014)}"

    def vhostd_counters():
        return two_port_counters("/tmp/vd.sock", {"vn0": ("c", "vn0"), "vn1": ("d", "vn1")})

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

    # vhostd with a vhost-net port (vn2, netns e) and a vhost-user port (vm) whose driver is vhost-pktgen's
    # frontend in --mode tap, standing in for a VM's virtio-net driver: the kernel's stack behind its tap vt
    # (netns f) is the "VM"'s. (vhostd is the device on a vhost-user port: its peer is a driver, so the
    # stand-in is our frontend code, not a vhost-pktgen back-end.)
    e = GuestNs(g, "e", "10.4.0.1")
    f = GuestNs(g, "f", "10.4.0.2")
    vu = {}

    def vm_up():
        sh(g, "printf 'add-port vn2 vhost-net ifname=vn2\\nadd-port vm vhost-user path=/tmp/vm.sock\\n' "
              "> /tmp/vu.conf")
        vu["vd"] = bg(g, "vu", vhdrig.VHOSTD, "--socket /tmp/vu.sock --config /tmp/vu.conf")
        wait_log(g, "vu", "vn2: up")
        vu["vm"] = pktgen(g, "vm", "--frontend /tmp/vm.sock --mode tap --tap vt")
        for _ in range(150):
            if vshow_all("/tmp/vu.sock")["vm"].get("link") == "up":
                break
            time.sleep(0.2)
        expect(vshow_all("/tmp/vu.sock")["vm"].get("link") == "up", f"port vm not up: {log_of(g, 'vm')[-5:]}")
        sh(g, "test -d /sys/class/net/vt")
        return into_netns((("e", "vn2", e), ("f", "vt", f)), "e->vm")

    def vm_traffic():
        counted = InGuest(g, lambda: vstats("/tmp/vu.sock"), lambda: vshow_all("/tmp/vu.sock"),
                          [("vn2", "e"), ("vt", "f")])
        lost = udp(counted, e, f, 5021) + udp(counted, f, e, 5022)
        return f"UDP 2000 each way ({lost} lost, counted); TCP e->vm {tcp(e, f, 5023)}, vm->e {tcp(f, e, 5024)}"

    def vm_counters():
        # vm's tap is one hop further (vhost-pktgen between): what the kernel sent into vt vhost-pktgen gave
        # the port, and what the port sent vhost-pktgen wrote to vt.
        summary = two_port_counters("/tmp/vu.sock", {"vn2": ("e", "vn2"), "vm": ("f", "vt")})
        lines = stop(g, "vm", vu["vm"])
        tot = [x for x in lines if x.startswith("total")]
        stop(g, "vu", vu["vd"], sig="TERM")
        return f"{summary}; vhost-pktgen {tot[0] if tot else '?'}"

    yield "pktgen_ping", pktgen_ping
    yield "pktgen_bridge_ping", bridge_up
    yield "pktgen_bridge_udp", bridge_udp
    yield "pktgen_bridge_tcp", bridge_tcp
    yield "tap_deleted", tap_deleted
    yield "max_mem_regions", max_mem_regions
    yield "packed_refused", packed_refused
    yield "mode_txonly", mode_txonly
    yield "mode_txrx", mode_txrx
    yield "mode_rxonly", mode_rxonly
    yield "mode_io", lambda: mode_forward("io")
    yield "mode_macswap", lambda: mode_forward("macswap")
    yield "vhostd_ping", vhostd_up
    yield "vhostd_udp_tcp", vhostd_traffic
    yield "vhostd_counters", vhostd_counters
    yield "vhostd_tap_deleted", vhostd_tap_deleted
    yield "vhostd_vm_ping", vm_up
    yield "vhostd_vm_udp_tcp", vm_traffic
    yield "vhostd_vm_counters", vm_counters


CASES = ["pktgen_ping", "pktgen_bridge_ping", "pktgen_bridge_udp", "pktgen_bridge_tcp", "tap_deleted",
         "max_mem_regions", "packed_refused", "mode_txonly", "mode_txrx", "mode_rxonly", "mode_io", "mode_macswap",
         "vhostd_ping", "vhostd_udp_tcp", "vhostd_counters",
         "vhostd_tap_deleted", "vhostd_vm_ping", "vhostd_vm_udp_tcp", "vhostd_vm_counters"]
sys.exit(vhdrig.run_scenarios([("vhost_kernel", scenario, CASES)], FILTER))
