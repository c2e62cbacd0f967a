#!/usr/bin/env python3
"""vhostd, the poll-mode virtual switch, between real Linux guests (Debian 6.12 under QEMU, TCG) and the host.

Every scenario runs vhostd inside a network namespace of its own (its tap and veth interfaces live there, the
host's network is untouched), boots guests whose NICs are vhost-user ports of vhostd, and drives them through
their consoles: the guest runs tests/interop/guest/tests/switch-agent.sh, which executes what the host types
("VHDC ID COMMAND") and tags the output ("VHD-O ID ..."), so the host can start a receiver, wait until it
listens, then start the sender. The traffic itself only crosses vhostd. Checks:

  two guests + tap    ARP learning (vhostctl fdb: each guest's MAC on its port, the tap's on the tap port),
                      ping, UDP (2000 datagrams, loss/duplication/corruption per datagram) and TCP (8 MiB,
                      every byte checked) both ways between the guests and between each guest and the host;
                      vhostd's counters (vhostctl stats --json) equal the guests' drivers' and the tap's own
                      counters exactly, no errors; one guest killed and booted again while the other keeps
                      talking to the host, without losing a packet
  jumbo               ports with mtu=9000, guests at MTU 9000 (one from QEMU's host_mtu=9000, one set by hand):
                      8000-byte pings cross unfragmented, TCP
                      then vhostctl upgrade, 3 times under a ping stream between them: at most a ping lost per
                      upgrade, carrier up, QEMU sees no disconnect
  vhostd restart      vhostd killed and started again under running guests, both ways of reconnecting: vhostd
                      as client of QEMU's server socket (server=on,wait=off), QEMU as reconnecting client
                      (reconnect=1) of vhostd's socket; traffic resumes
  restart cycles      vhostd killed -9 and started again VHD_RESTART_CYCLES times (100; soak 1000) under a paced
                      TCP stream host->guest and sequenced UDP datagrams both ways, its ports in client mode (QEMU
                      listens): the stream moves again after every restart and survives all of them, every byte
                      checked; the datagrams lost and duplicated per restart each way, within a ring; the last
                      vhostd's counters against the guest's and the tap's
  af_packet           an af_packet port on a veth whose peer (another namespace) has an IP: ping, UDP, TCP
  vxlan               the guest's segment carried by a vxlan port to a Linux vxlan device in another namespace
                      (its own host, over a veth underlay); guest at MTU 1450 from QEMU's host_mtu: ping, UDP,
                      TCP both ways, the Linux VTEP's MAC learned
  migrate             live migration (QMP migrate, TCP on 127.0.0.1) of a guest from one vhostd port to
                      another, QEMU's guest_announce off so that QEMU asks vhostd for the RARP (SEND_RARP):
                      no "Migration disabled", the guest's MAC on the new port in the fdb right after, a paced
                      TCP stream from the host started before the migration arrives whole (every byte checked)
                      after it, and so do paced datagrams across it (none stale: the pages vhostd wrote were
                      logged; those lost in the pause counted), UDP both ways after it; with split rings and
                      again with packed ones; and with QEMU's default (guest_announce on), where the guest
                      announces itself and the MAC moves on its gratuitous ARP; and with vhostd's dirty log
                      off (VHOSTD_TEST_DIRTY_LOG_OFF=1), the guest's receive ring held full of unread datagrams
                      (eth0 down) across a migration held after its first pass: the case passes only if the
                      checks after it catch the damage (they do: none of the ring's datagrams arrives, and
                      the drop counters do not account for them); the same with the log on (migrate_held, only
                      by name) delivers them intact
  viommu              two guests on ports with the default iommu=on, one behind QEMU's vIOMMU (intel-iommu,
                      strict invalidation), one without (which must not negotiate ACCESS_PLATFORM): ping, UDP and TCP both ways, vhostd's counters equal the guests',
                      and the vIOMMU port's IOTLB counters show its misses, updates and invalidations

usage: test_switch_guest.py VHOSTD VHOSTCTL [case-or-scenario-substring]
Prints PASS/FAIL lines like tests/unit/harness.h. VHD_INTEROP_WORK is where the guest is built and cached
(default: the build directory's interop/, shared with test_guest.py).
"""
import json
import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from vhdrig import (A_IP, A_MAC, B_IP, B_MAC, HOST_IP, TCP_BYTES, UDP_N, VETH_IP, CaseError, Guest,  # noqa: E402
                   HostNs, UdpFlow, check_no_errors, compare_guest, compare_tap, drop_counters, expect, log,
                   peer_start, ping_ok, quiet_snapshot, tcp, udp)
import vhdrig  # noqa: E402

vhdrig.configure(vhostd=sys.argv[1], vhostctl=sys.argv[2])
FILTER = sys.argv[3] if len(sys.argv) > 3 else ""


def switch_with_host(rig, vms, wrap=()):
    """vhostd with a listening vhost-user port for each name in vms and host0 (tap, 10.0.0.1 in the namespace);
    wrap: what vhostd runs under. @return the host's end (HostNs)."""
    rig.start_vhostd([f"add-port {vm} vhost-user path={rig.sock(vm)}" for vm in vms] +
                     [f"add-port host0 tap ifname={rig.tap}"], wrap=wrap)
    rig.tap_up()
    rig.host_ifaces.append((rig.tap, rig.ns))
    return HostNs(rig, rig.ns, HOST_IP, "host")


def scenario_two_guests(rig):
    """vm1, vm2 (vhost-user, vhostd listening), host0 (tap, 10.0.0.1 in the namespace)."""
    host = switch_with_host(rig, ["vm1", "vm2"])
    a = Guest(rig, "vm1", A_MAC, A_IP, f"path={rig.sock('vm1')}").boot()
    b = Guest(rig, "vm2", B_MAC, B_IP, f"path={rig.sock('vm2')}").boot()
    a.wait_agent()
    b.wait_agent()
    tap_mac = rig.nsrun("cat", f"/sys/class/net/{rig.tap}/address").stdout.strip()
    log(f"two guests up; tap MAC {tap_mac}")

    def arp_learning():
        show = rig.wait_link(["vm1", "vm2", "host0"])
        for p in ("vm1", "vm2"):
            expect(show[p]["info"].get("ring") == "split" and show[p]["info"].get("connected") is True,
                   f"{p}: {show[p]['info']}")
        out = []
        for g, ip in ((a, B_IP), (b, HOST_IP), (a, HOST_IP)):
            rc, lines = g.cmd(f"arping -f -c 3 -w 5 -I eth0 {ip}", timeout=30)  # -f: done at the first reply
            rec = [x for x in lines if "eceived" in x]
            expect(rc == 0 and rec and "Received 0 " not in rec[0], f"{g.name} arping {ip}: rc {rc} {lines[-3:]}")
            out.append(f"{g.name}->{ip}: {rec[0].strip()}")
        fdb = rig.fdb()
        want = {A_MAC: "vm1", B_MAC: "vm2", tap_mac: "host0"}
        for mac, port in want.items():
            expect(fdb.get(mac) == port, f"fdb {fdb}: wanted {mac} on {port}")
        return f"fdb {len(fdb)} entries, all three on their ports"

    def ping():
        res = []
        for g, ip in ((a, B_IP), (a, HOST_IP), (b, A_IP), (b, HOST_IP)):
            rc, out = g.ping(ip)
            res.append(ping_ok(f"{g.name}->{ip}", rc, out, 5))
        for ip in (A_IP, B_IP):
            rc, out = host.ping(ip)
            res.append(ping_ok(f"host->{ip}", rc, out, 5))
        return "6 x 5 pings answered"

    def udp_all():
        before = rig.stats()
        res = []
        for src, dst, port in ((a, b, 7101), (b, a, 7102), (a, host, 7103), (host, a, 7104), (b, host, 7105),
                               (host, b, 7106)):
            res.append(udp(rig, src, dst, port))
        after = check_no_errors(rig, "after UDP")
        drops = {p: after[p]["tx_drops"] - before[p]["tx_drops"] for p in after}
        return f"6 x {UDP_N} datagrams, lost {res} (all counted); switch tx_drops during: {drops}"

    def tcp_all():
        before = rig.stats()
        res = []
        for src, dst, port in ((a, b, 7201), (b, a, 7202), (a, host, 7203), (host, a, 7204), (b, host, 7205),
                               (host, b, 7206)):
            res.append(f"{src.name}->{dst.name} {tcp(src, dst, port)}")
        # All at once, a triangle: every port receives and transmits a stream at the same time.
        t = time.time()
        rs = [peer_start(dst, "tcp-recv", port, 2 * TCP_BYTES) for dst, port in ((b, 7211), (host, 7212), (a, 7213))]
        for r in rs:
            r.ready()
        ss = [peer_start(src, "tcp-send", dst.ip, port, 2 * TCP_BYTES)
              for src, dst, port in ((a, b, 7211), (b, host, 7212), (host, a, 7213))]
        for j in ss + rs:
            out = j.result(180)
            expect(" ok " in out, f"concurrent TCP: {out}")
        res.append(f"concurrently vm1->vm2, vm2->host, host->vm1 {2 * TCP_BYTES >> 20} MiB each in "
                   f"{time.time() - t:.1f} s")
        after = check_no_errors(rig, "after TCP")
        drops = {p: after[p]["tx_drops"] - before[p]["tx_drops"] for p in after}
        return "; ".join(res) + f"; switch tx_drops (full guest rings, retransmitted): {drops}"

    def counters():
        g, t, s = quiet_snapshot(rig, [a, b], [rig.tap])
        check_no_errors(rig, "counters")
        errs = compare_guest("vm1", g["vm1"], s["vm1"]) + compare_guest("vm2", g["vm2"], s["vm2"]) + \
            compare_tap("host0", t[rig.tap], s["host0"])
        expect(not errs, "; ".join(errs))
        # The rx side of the switch: whatever came in went somewhere or was counted.
        rx = sum(p["rx_packets"] for p in s.values())
        return (f"vm1 rx {s['vm1']['rx_packets']}/tx {s['vm1']['tx_packets']}, vm2 rx {s['vm2']['rx_packets']}/tx "
                f"{s['vm2']['tx_packets']}, host0 rx {s['host0']['rx_packets']}/tx {s['host0']['tx_packets']} = "
                f"guests' and tap's own counts; tx_drops {[s[p]['tx_drops'] for p in s]}, rx_drops "
                f"{[s[p]['rx_drops'] for p in s]}, {rx} frames in")

    def reboot():
        """vm2 is killed and booted again while vm1 pings and streams UDP to the host."""
        n_udp = 3000
        drops0 = drop_counters(rig, host)
        r = host.start("udp-recv", 7301, n_udp, 5000)
        r.ready()
        pinger = a.start(f"ping -c 100 -i 0.1 -W 3 {HOST_IP}")
        sender = a.start(f"nettool udp-send {HOST_IP} 7301 {n_udp}")
        time.sleep(1)
        b.kill()
        rig.wait_link(["vm2"], up=False, timeout=10)
        t = time.time()
        b.boot()
        b.wait_agent()
        boot_s = time.time() - t
        rc, out = b.ping(A_IP)
        ping_ok("vm2 (rebooted)->vm1", rc, out, 5)
        rc, out = b.ping(HOST_IP)
        ping_ok("vm2 (rebooted)->host", rc, out, 5)
        rc, out = pinger.wait(60)
        summary = ping_ok("vm1->host during the reboot", rc, out, 100)
        ures = sender.result(60)
        expect(" ok " in ures, f"vm1 UDP to host during the reboot: {ures}")
        rres = r.result(60)
        if " ok " not in rres:
            drops1 = drop_counters(rig, host)
            raise CaseError(f"host's UDP from vm1 during the reboot: {rres}; drop counters moved: "
                            f"{ {k: drops1[k] - drops0[k] for k in drops1 if drops1[k] != drops0[k]} }")
        tres = tcp(b, host, 7302)
        tres2 = tcp(a, b, 7303)
        # vm1's counters still match vhostd's exactly (vm2's restarted from zero with its new driver)
        g, _, s = quiet_snapshot(rig, [a])
        errs = compare_guest("vm1", g["vm1"], s["vm1"])
        expect(not errs, "; ".join(errs))
        check_no_errors(rig, "after the reboot")
        return (f"vm2 back in {boot_s:.1f} s; vm1->host meanwhile: {summary}, {n_udp} datagrams none lost; "
                f"TCP vm2->host {tres}, vm1->vm2 {tres2}")

    yield "switch_guest_arp_learning", arp_learning
    yield "switch_guest_ping", ping
    yield "switch_guest_udp", udp_all
    yield "switch_guest_tcp", tcp_all
    yield "switch_guest_counters_exact", counters
    yield "switch_guest_reboot_while_other_talks", reboot


def tcp_both_ways_then_counters(rig, a, b, port, where):
    """TCP a->b (on port) and b->a (port + 1), then at a quiet moment each guest's driver counters against its
    port's, and no errors anywhere. Returns both TCP results and vhostd's port stats."""
    t1 = tcp(a, b, port)
    t2 = tcp(b, a, port + 1)
    g, _, s = quiet_snapshot(rig, [a, b])
    errs = compare_guest(a.name, g[a.name], s[a.name]) + compare_guest(b.name, g[b.name], s[b.name])
    expect(not errs, "; ".join(errs))
    check_no_errors(rig, where)
    return t1, t2, s


def scenario_jumbo(rig):
    rig.start_vhostd([f"add-port vm1 vhost-user path={rig.sock('vm1')} mtu=9000",
                      f"add-port vm2 vhost-user path={rig.sock('vm2')} mtu=9000"])
    # vm1 learns its MTU from QEMU (host_mtu= offers VIRTIO_NET_F_MTU; QEMU, not the back-end, owns the config
    # space); vm2 boots at 1500 and is set to 9000 by hand.
    a = Guest(rig, "vm1", A_MAC, A_IP, f"path={rig.sock('vm1')}", nic_extra=",host_mtu=9000").boot()
    b = Guest(rig, "vm2", B_MAC, B_IP, f"path={rig.sock('vm2')}").boot()
    a.wait_agent()
    b.wait_agent()

    def jumbo():
        show = rig.wait_link(["vm1", "vm2"])
        expect(show["vm1"]["mtu"] == 9000 and show["vm2"]["mtu"] == 9000, f"port MTUs {show}")
        booted_mtu = {}
        for g in (a, b):
            rc, out = g.cmd("cat /sys/class/net/eth0/mtu; ip link set eth0 mtu 9000 && cat /sys/class/net/eth0/mtu")
            expect(rc == 0 and len(out) == 2 and out[1] == "9000", f"{g.name}: mtu 9000: rc {rc} {out}")
            booted_mtu[g.name] = out[0]
        expect(booted_mtu == {"vm1": "9000", "vm2": "1500"}, f"guests booted with MTUs {booted_mtu}, wanted 9000 "
                                                              f"(host_mtu=9000) and 1500")
        rc, out = a.ping(B_IP, 1)  # ARP resolved before the counted pings
        ping_ok("vm1->vm2", rc, out, 1)
        s0 = rig.stats()
        rc, out = a.ping(B_IP, 5, size=8000)
        ping_ok("vm1->vm2 -s 8000", rc, out, 5)
        s1 = rig.stats()
        # 5 requests of 14 + 20 + 8 + 8000 bytes each way, whole (fragments would be 6 frames each)
        dpk, dby = s1["vm1"]["rx_packets"] - s0["vm1"]["rx_packets"], s1["vm1"]["rx_bytes"] - s0["vm1"]["rx_bytes"]
        expect(5 <= dpk <= 7 and dby >= 5 * 8042, f"vm1 sent {dpk} frames / {dby} B for 5 pings of 8000 bytes")
        expect(s1["vm2"]["tx_drops"] == s0["vm2"]["tx_drops"], "vm2 tx_drops grew during the pings")
        rc, out = b.ping(A_IP, 5, size=8000)
        ping_ok("vm2->vm1 -s 8000", rc, out, 5)
        t1, t2, _ = tcp_both_ways_then_counters(rig, a, b, 7401, "jumbo")
        return (f"guests booted with MTU {booted_mtu}; 8042-byte frames whole ({dpk} frames, "
                f"{dby} B for 5 pings); TCP vm1->vm2 {t1}, vm2->vm1 {t2}")

    yield "switch_guest_jumbo_mtu9000", jumbo

    def upgrade():
        # vhostctl upgrade under a ping stream (docs/operations.md): QEMU's vhost-user connections are handed
        # over, so the guests keep their link and the pings go on.
        n = 150
        job = a.start(f"ping -c {n} -i 0.05 -W 3 {B_IP}")
        time.sleep(1)
        pauses = []
        for _ in range(3):
            pauses.append(json.loads(rig.vd.upgrade().stdout)["pause_us"])
            time.sleep(1)
        rc, out = job.wait(120)
        # At most one ping per upgrade: a frame a burst was carrying toward the port paused first is dropped
        # (counted); the rest wait in the guests' rings while forwarding pauses.
        summary = [x for x in out if "packets received" in x]
        got = int(summary[0].split(",")[1].split()[0]) if summary else 0
        expect(got >= n - len(pauses), f"vm1->vm2 across {len(pauses)} upgrades: ping rc {rc}, {out[-3:]}")
        summary = summary[0]
        for g in (a, b):
            rc, out = g.cmd("cat /sys/class/net/eth0/carrier")
            expect(rc == 0 and out == ["1"], f"{g.name}: carrier {out}")
        qemu = a.tail(1 << 30) + b.tail(1 << 30)
        bad = [x for x in qemu if "isconnect" in x] + vhdrig.qemu_warnings(qemu)
        expect(not bad, f"QEMU: {bad}")
        rig.wait_link(["vm1", "vm2"])
        expect(rig.ctl_json("stats")["upgrade"]["count"] == len(pauses), "upgrade count")
        return f"{summary} across {len(pauses)} upgrades; forwarding paused {pauses} us"

    yield "switch_guest_upgrade", upgrade


def scenario_restart(rig):
    """vm1: QEMU listens (server=on,wait=off), vhostd connects (client). vm2: vhostd listens, QEMU connects
    with reconnect=1. vhostd is stopped (SIGTERM) and started again, then killed (SIGKILL) and started again."""
    config = [f"add-port vm1 vhost-user path={rig.sock('vm1')} client",
              f"add-port vm2 vhost-user path={rig.sock('vm2')}",
              f"add-port host0 tap ifname={rig.tap}"]
    host = HostNs(rig, rig.ns, HOST_IP, "host")
    a = Guest(rig, "vm1", A_MAC, A_IP, f"path={rig.sock('vm1')},server=on,wait=off").boot()
    for _ in range(500):  # QEMU's socket first, for vhostd to connect to
        if os.path.exists(rig.sock("vm1")):
            break
        time.sleep(0.01)
    rig.start_vhostd(config)
    rig.tap_up()
    b = Guest(rig, "vm2", B_MAC, B_IP, f"path={rig.sock('vm2')},reconnect=1").boot()
    a.wait_agent()
    b.wait_agent()
    res = {"vm1": [], "vm2": []}
    err = {"vm1": [], "vm2": []}

    def reach(g, what, since):
        """g pings the host until it answers (30 s), then 5 pings must all be answered."""
        rc, out = g.cmd(f"i=0; until ping -c 1 -W 1 {HOST_IP} >/dev/null; do i=$((i+1)); [ $i -lt 30 ] || "
                        f"exit 1; done", timeout=60)
        if rc != 0:
            err[g.name].append(f"{what}: host unreachable for 30 s")
            return False
        back = time.time() - since
        rc, out = g.ping(HOST_IP)
        try:
            ping_ok(f"{g.name}->host {what}", rc, out, 5)
        except CaseError as e:
            err[g.name].append(str(e))
            return False
        res[g.name].append(f"{what}: answered {back:.1f} s after vhostd started")
        return True

    def link_times(since, what):
        """How long after vhostd started each port's front-end was connected (vhostctl show)."""
        end, up = time.time() + 20, {}
        while len(up) < 2 and time.time() < end:
            show = rig.show()
            for p in ("vm1", "vm2"):
                if p not in up and show[p]["link"] == "up":
                    up[p] = time.time() - since
            time.sleep(0.05)
        for p in ("vm1", "vm2"):
            if p in up:
                res[p].append(f"{what}: connected after {up[p]:.1f} s")
            else:
                err[p].append(f"{what}: port {p} not connected 20 s after vhostd started "
                              f"({rig.show()[p]['info']})")
        return len(up) == 2

    for g in (a, b):
        reach(g, "first boot", time.time())
    res["vm1"], res["vm2"] = [], []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        name = "SIGTERM" if sig == signal.SIGTERM else "SIGKILL"
        rc = rig.stop_vhostd(sig)
        if sig == signal.SIGTERM and rc != 0:
            err["vm1"].append(f"vhostd exited {rc} on SIGTERM: {rig.vhostd_tail()}")
        time.sleep(2.0)  # vhostd stays away a while: QEMU notices, the reconnecting client retries in vain
        t = time.time()
        rig.start_vhostd(config)
        rig.tap_up()
        link_times(t, f"restart after {name}")
        ok = [reach(g, f"after {name}", t) for g in (a, b)]
        if all(ok):
            try:
                tr = tcp(a, b, 7500 + int(sig))
                rc, out = host.ping(A_IP)
                ping_ok("host->vm1", rc, out, 5)
                rc, out = host.ping(B_IP)
                ping_ok("host->vm2", rc, out, 5)
                for g in ("vm1", "vm2"):
                    res[g].append(f"TCP vm1->vm2 {tr}")
            except CaseError as e:
                for g in ("vm1", "vm2"):
                    err[g].append(f"after {name}: {e}")
    try:
        check_no_errors(rig, "restart")
    except CaseError as e:
        err["vm1"].append(str(e))
        err["vm2"].append(str(e))

    def verdict(g):
        def f():
            expect(not err[g], "; ".join(err[g]))
            return "; ".join(res[g])
        return f

    yield "switch_guest_vhostd_restart_qemu_server", verdict("vm1")
    yield "switch_guest_vhostd_restart_qemu_reconnect", verdict("vm2")


# 100 in make check: a cycle takes about 0.5 s under ASan on the loaded 2-core machine (it was 1.2-2.6 s while
# the host's ARP for the guest, retried once a second, and a fixed 0.3 s pause after each kill set the pace), 100
# cycles 50 s, 60 s with the boot; scripts/soak.sh runs 1000.
RESTART_CYCLES = int(os.environ.get("VHD_RESTART_CYCLES", "100"))
CYCLE_KIBPS = 128  # the stream's pace: it outlasts the cycles (CYCLE_S each at most), then goes unpaced
CYCLE_S = 4.0
RESTART_PPS = 200  # each UDP direction's pace across the restarts
RING = 256  # QEMU's virtio-net queue size: what a restart can find in flight on one ring


def seq_report(lines, what):
    """A receiver's VHD-SEQ line (nettool, hostpeer.py): {top, missing, runs, max, dup, dup_runs, dup_max}."""
    m = [re.match(r"VHD-SEQ top (\d+) missing (\d+) runs (\d+) max (\d+) dup (\d+) runs (\d+) max (\d+)", x)
         for x in lines]
    m = [x for x in m if x]
    expect(m, f"{what}: no VHD-SEQ line: {lines[-5:]}")
    return dict(zip(("top", "missing", "runs", "max", "dup", "dup_runs", "dup_max"), map(int, m[-1].groups())))


def scenario_restart_cycles(rig):
    """vm1 with QEMU listening (server=on,wait=off) and vhostd's port connecting to it (client): a restarted
    vhostd connects at once and QEMU negotiates again, where QEMU as a client with reconnect=1 would only try
    again after up to a second. host0 a tap (vhostd's, with the host's address from addr=: it goes with each
    vhostd and comes back, addressed and up, with the next one, before vm1 connects). vhostd is killed (SIGKILL)
    and started again RESTART_CYCLES times while one paced TCP stream from the host to the guest and sequenced
    UDP datagrams both ways (RESTART_PPS each) run the whole time; each cycle waits until vhostd forwarded frames
    again both ways before the next kill. Per restart: datagrams lost and duplicated each way."""
    config = [f"add-port host0 tap ifname={rig.tap} addr={HOST_IP}/24",
              f"add-port vm1 vhost-user path={rig.sock('vm1')} client"]
    host = HostNs(rig, rig.ns, HOST_IP, "host")
    a = Guest(rig, "vm1", A_MAC, A_IP, f"path={rig.sock('vm1')},server=on,wait=off").boot()
    vhdrig.wait_path(rig.sock("vm1"), [a.p])
    # The sender's retransmissions back off from the minimum RTO while vhostd is away: 5 ms instead of 200 finds
    # the next vhostd within about as long as it took to come back.
    fast_rto = rig.nsrun("sysctl", "-qw", "net.ipv4.tcp_rto_min_us=5000", check=False).returncode == 0
    rig.start_vhostd(config)
    a.wait_agent()

    def neighbours():
        """Each side's neighbour entry for the other, permanent: the host's for the guest goes with each tap, and
        ARP, which retries once a second, would set the pace of the restarts rather than vhostd (the guest's for
        the tap lasts: the tap comes back with the same MAC, but its entry would be probed while vhostd is
        away). Set as soon as the tap is there."""
        for _ in range(500):
            if rig.nsrun("ip", "neigh", "replace", A_IP, "lladdr", A_MAC, "dev", rig.tap, "nud", "permanent",
                         check=False).returncode == 0:
                return
            time.sleep(0.01)
        raise CaseError(f"the tap {rig.tap} did not come back: {rig.vhostd_tail(10)}")

    def qemu_saw_hangup():
        """Until QEMU handled the hang-up of the killed vhostd: a vhostd connecting before that was, under ASan,
        once connected but never set up by QEMU 7.2, which handles a hang-up in a bottom half with the chardev's
        handlers unset until it ran (query-chardev shows the socket disconnected when the bottom half is
        scheduled; the next vhostd takes longer than one main-loop round to start)."""
        for _ in range(500):
            ch = [c for c in a.qmp("query-chardev") if rig.sock("vm1") in c.get("filename", "")]
            if ch and ch[0]["filename"].startswith("disconnected:"):
                return
            time.sleep(0.01)
        raise CaseError(f"QEMU did not see vhostd go within 5 s: {ch}")

    def cycles():
        rig.wait_link(["vm1", "host0"])
        neighbours()
        tap_mac = rig.nsrun("cat", f"/sys/class/net/{rig.tap}/address").stdout.strip()
        rc, out = a.cmd(f"arp -i eth0 -s {HOST_IP} {tap_mac} && arp -n -i eth0")  # BusyBox: permanent
        expect(rc == 0 and any("PERM" in x for x in out), f"vm1: arp: {out}")
        rc, out = a.ping(HOST_IP)
        ping_ok("vm1->host", rc, out, 5)
        nbytes = int(CYCLE_KIBPS * 1024 * (RESTART_CYCLES * CYCLE_S + 10))
        ndg = int(RESTART_PPS * (RESTART_CYCLES * CYCLE_S + 60))  # more than the cycles take: stopped after them
        r = a.start(f"nettool tcp-recv 7801 {nbytes}")
        r.ready()
        s = host.start("tcp-send", A_IP, 7801, nbytes, CYCLE_KIBPS)
        hg_r = a.start(f"nettool udp-recv 7802 {ndg} 3000")
        gh_r = host.start("udp-recv", 7803, ndg, 3000)
        hg_r.ready()
        gh_r.ready()
        hg_s = host.start("udp-send", A_IP, 7802, ndg, RESTART_PPS)
        gh_s = a.start(f"nettool udp-send {HOST_IP} 7803 {ndg} {RESTART_PPS} & echo $! > /tmp/us.pid; wait $!")
        t0 = time.time()
        waits, starts = [], []
        counted = {"host->vm1": 0, "vm1->host": 0}

        def acked():
            """What the guest acknowledged of the TCP stream so far (the sender's socket, ss)."""
            out = rig.nsrun("ss", "-tinH", "dst", f"{A_IP}:7801").stdout
            m = re.search(r"bytes_acked:(\d+)", out)
            return int(m.group(1)) if m else 0

        def flowing(t, base, what):
            """Until vhostd forwarded frames again both ways (the host's in, the guest's out) and the TCP stream
            moved."""
            while True:
                st = rig.stats()
                if (st["host0"]["rx_packets"] > base[0] + 10 and st["vm1"]["rx_packets"] > base[1] + 10 and
                        acked() > base[2]):
                    return st
                expect(time.time() - t < 60, f"{what}: no traffic both ways within 60 s: {st}; "
                                             f"vhostd: {rig.vhostd_tail(20)}; QEMU: {a.tail(10)}")
                time.sleep(0.02)

        st = rig.stats()
        flowing(time.time(), (st["host0"]["rx_packets"], st["vm1"]["rx_packets"], acked()), "before the first kill")
        for i in range(RESTART_CYCLES):
            if s.p.poll() is not None:
                raise CaseError(f"cycle {i}: the stream ended before the cycles did: {s.result(1)}")
            base = acked()
            rig.stop_vhostd(signal.SIGKILL)
            t = time.time()
            if i == RESTART_CYCLES - 1:
                g0 = a.counters()  # vhostd is gone: nothing moves on vm1's rings until the next one starts
            qemu_saw_hangup()
            rig.start_vhostd(config)
            neighbours()
            starts.append(time.time() - t)
            st = flowing(t, (0, 0, base), f"cycle {i}")
            # What each new vhostd dropped before traffic moved both ways (all frames, not only datagrams): toward
            # a port whose other end was not there yet. Nothing is dropped in the steady state after that.
            counted["host->vm1"] += st["vm1"]["tx_drops"]
            counted["vm1->host"] += st["host0"]["tx_drops"]
            waits.append(time.time() - t)
        took = time.time() - t0
        s.p.send_signal(signal.SIGUSR1)  # the rest at full speed
        hg_s.p.send_signal(signal.SIGUSR1)  # the datagrams stop
        rc, out = a.cmd("kill -USR1 $(cat /tmp/us.pid)")
        expect(rc == 0, f"stopping the guest's sender: {out}")
        sres, rres = s.result(nbytes / 1024 / CYCLE_KIBPS + 120), r.result(120)
        expect(" ok " in sres and " ok " in rres, f"TCP across the restarts: host {sres}; guest {rres}")
        # UDP: every datagram a sender's stack took either arrived once or went with a restart. What a restart
        # can lose or repeat is what was in flight when vhostd died: host->guest, the frames vhostd had read from
        # the tap (or the tap still queued) but not yet completed in the guest's receive ring (a buffer written
        # but not used is offered again, its frame lost); guest->host, the frames it had completed in the
        # transmit ring but not yet written to the tap (lost) or written but not yet completed (QEMU restarts the
        # ring from the used index in guest memory: sent again, duplicated). At most a ring each, plus what a sender
        # sent while there was no path: the host's holds while its route is gone with the tap, but nothing holds
        # the guest's (QEMU reports the link down while vhostd is away; the guest's stack queues and drops as it
        # will), at the pace for as long as that lasted (the longest kill-to-traffic time bounds it).
        bound = RING + int(RESTART_PPS * max(waits)) + 1
        figs, errs = [], []
        for what, snd, rcv in (("host->vm1", hg_s, hg_r), ("vm1->host", gh_s, gh_r)):
            sr, rr = snd.result(60), rcv.result(60)
            m = re.search(r"sent (\d+) of", sr)
            expect(" ok " in sr and m, f"UDP {what}: {sr}")
            sent = int(m.group(1))
            lines = rcv.lines() if callable(rcv.lines) else rcv.lines
            q = seq_report(lines, f"UDP {what}")
            mm = re.search(r"corrupt (\d+), stray (\d+)", rr)
            expect(mm and mm.groups() == ("0", "0"), f"UDP {what}: {rr}")
            tail = sent - q["top"]  # after the last one received: nothing is in flight by then
            lost = q["missing"] + tail
            # Each run of missing (or duplicated) datagrams is what one interruption cost.
            if max(q["max"], q["dup_max"], tail) > bound or q["dup_max"] > RING or lost > bound * RESTART_CYCLES:
                errs.append(f"UDP {what}: {sent} sent, {q} (+{tail} at the end): more than in flight ({bound}: "
                            f"a ring, {RING}, and {RESTART_PPS}/s for {max(waits):.2f} s) at a restart")
            figs.append(f"UDP {what}: {sent} sent, {lost} lost ({lost / RESTART_CYCLES:.2f} a restart; "
                        f"{q['runs'] + (tail > 0)} runs, the longest {max(q['max'], tail)}), {q['dup']} duplicated "
                        f"({q['dup'] / RESTART_CYCLES:.2f} a restart; {q['dup_runs']} runs, the longest "
                        f"{q['dup_max']}); vhostd counted {counted[what]} frames dropped that way as it came up")
        figs.append(f"bound a run {bound}")
        log("; ".join(figs) + ("" if fast_rto else "; no net.ipv4.tcp_rto_min_us here: the stream resumed slowly"))
        # The last vhostd's counters against what vm1's driver and the tap (made by that vhostd) counted since.
        g, t, st = quiet_snapshot(rig, [a], [rig.tap])
        check_no_errors(rig, "after the restarts")
        d = {k: g["vm1"][k] - g0[k] for k in g0}
        errs += compare_tap("host0", t[rig.tap], st["host0"])
        v = st["vm1"]
        if d["rx_packets"] + d["rx_dropped"] != v["tx_packets"] or d["rx_bytes"] != v["tx_bytes"]:
            errs.append(f"vm1: vhostd sent {v['tx_packets']} frames / {v['tx_bytes']} B, the guest received "
                        f"{d['rx_packets']} (+{d['rx_dropped']} dropped) / {d['rx_bytes']} B")
        # TX: the guest's driver counts a frame when the device gives its buffer back. Frames queued when vhostd
        # died are sent by the next one (QEMU restarts the ring from the used index: taken and not used ones
        # again) and counted by both; what the dead one had used and the driver collected after g0 it counts
        # alone. At most a ring's worth either way.
        tx_diff = d["tx_packets"] - v["rx_packets"]
        if abs(tx_diff) > RING:
            errs.append(f"vm1: the guest sent {d['tx_packets']} frames, vhostd received {v['rx_packets']}")
        expect(not errs, "; ".join(errs))
        return (f"{RESTART_CYCLES} kill -9 / restart cycles in {took:.1f} s ({took / RESTART_CYCLES:.2f} s each; "
                f"vhostd up {sum(starts) / len(starts):.2f} s after the kill, frames moving both ways again "
                f"{sum(waits) / len(waits):.2f} s after the kill on average, at most {max(waits):.2f}); "
                f"{nbytes >> 20} MiB TCP host->vm1 across all of them intact; {'; '.join(figs)}; since the last "
                f"start: host0 and vm1 RX counters equal, vm1 TX guest {d['tx_packets']} vs vhostd "
                f"{v['rx_packets']} ({tx_diff:+d})")

    yield "switch_guest_vhostd_kill9_cycles", cycles


def ping_and_learn(rig, g, peer, peer_mac, port):
    """g and peer (a HostNs behind port) ping each other both ways; the MAC table then has each on its own
    port."""
    rig.wait_link([g.name, port])
    rc, out = g.ping(peer.ip)
    ping_ok(f"{g.name}->{peer.name}", rc, out, 5)
    rc, out = peer.ping(g.ip)
    ping_ok(f"{peer.name}->{g.name}", rc, out, 5)
    fdb = rig.fdb()
    expect(fdb.get(peer_mac) == port and fdb.get(g.mac) == g.name, f"fdb {fdb}: wanted {peer_mac} on {port}")


def scenario_af_packet(rig):
    """vm1 (vhost-user) and p0 (af_packet on a veth whose peer, in a second namespace, is 10.0.0.9)."""
    va, vb, peer = rig.veth_peer()
    rig.start_vhostd([f"add-port vm1 vhost-user path={rig.sock('vm1')}", f"add-port p0 af_packet ifname={va}"])
    a = Guest(rig, "vm1", A_MAC, A_IP, f"path={rig.sock('vm1')}").boot()
    a.wait_agent()
    peer_mac = rig.nsrun("cat", f"/sys/class/net/{vb}/address", ns=rig.ns2).stdout.strip()

    def af_packet():
        ping_and_learn(rig, a, peer, peer_mac, "p0")
        u1 = udp(rig, a, peer, 7601)
        u2 = udp(rig, peer, a, 7602)
        errs = []
        res = []
        for src, dst, port in ((a, peer, 7603), (peer, a, 7604)):
            try:
                res.append(f"TCP {src.name}->{dst.name} {tcp(src, dst, port)}")
            except CaseError as e:
                errs.append(str(e))
        s = rig.stats()
        show = rig.show()
        if errs:
            raise CaseError("; ".join(errs) + f" | stats p0 {s['p0']}, vm1 {s['vm1']}; p0 info {show['p0']['info']}")
        check_no_errors(rig, "af_packet")
        g, _, s = quiet_snapshot(rig, [a])
        errs = compare_guest("vm1", g["vm1"], s["vm1"])
        expect(not errs, "; ".join(errs))
        return f"ping both ways, UDP {UDP_N} each way (lost {u1}, {u2}), {'; '.join(res)}; p0 tx_drops {s['p0']['tx_drops']}"

    yield "switch_guest_af_packet_veth", af_packet


def scenario_vxlan(rig):
    """vm1 (vhost-user, MTU 1450) and vx (vxlan) in rig's namespace; the far end a Linux vxlan device at
    10.0.0.9 in a second host's namespace, the two hosts joined by a veth (192.168.78.0/24)."""
    far = rig.child("vxf")
    vhdrig.veth(rig, "ul", "192.168.78.1/24", far, "ur", addr_b="192.168.78.2/24")
    vhdrig.linux_vxlan(far, "vx0", 77, "192.168.78.2", ["192.168.78.1"], "ur", 1450, f"{VETH_IP}/24")
    rig.start_vhostd([f"add-port vm1 vhost-user path={rig.sock('vm1')} mtu=1450",
                      "add-port vx vxlan vni=77 remote=192.168.78.2 local=192.168.78.1"])
    peer = HostNs(far, far.ns, VETH_IP, "Linux vxlan host")
    a = Guest(rig, "vm1", A_MAC, A_IP, f"path={rig.sock('vm1')}", nic_extra=",host_mtu=1450").boot()
    a.wait_agent()
    vx_mac = far.nsrun("cat", "/sys/class/net/vx0/address").stdout.strip()

    def vxlan():
        ping_and_learn(rig, a, peer, vx_mac, "vx")
        u1 = udp(rig, a, peer, 7701)
        u2 = udp(rig, peer, a, 7702)
        res = [f"TCP {s.name}->{d.name} {tcp(s, d, p)}" for s, d, p in ((a, peer, 7703), (peer, a, 7704))]
        check_no_errors(rig, "vxlan")
        info = rig.show()["vx"]["info"]
        bad = {k: v for k, v in info.items() if k.startswith("rx_") and v}
        expect(not bad and info["learned"] >= 1, f"vx info {info}")
        return f"ping both ways, UDP {UDP_N} each way (lost {u1}, {u2}), {'; '.join(res)}"

    yield "switch_guest_vxlan_linux", vxlan


MIG_BYTES, MIG_KIBPS = 40 << 20, 1024  # a 40-second stream: it outlasts the migration
MIG_UDP_N, MIG_UDP_PPS = 30000, 2000  # 15 seconds of datagrams, each checked: some land in the final pause
MIG_HELD_N = 400  # datagrams sent into a receive ring the guest does not read while the migration is held


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scenario_migrate(rig, packed=False, announce=False, unlogged=False):
    """vm1 (source QEMU) and vm1new (destination QEMU, -incoming) on ports of one vhostd, host0 (tap); the
    guest's rings split or packed (then GET/SET_VRING_BASE carry wrap counters). announce: QEMU's default, the
    guest announces itself (GUEST_ANNOUNCE); else guest_announce=off on both ends and QEMU sends SEND_RARP.
    unlogged: vhostd runs with VHOSTD_TEST_DIRTY_LOG_OFF=1 (its ports offer and accept the dirty log but set no
    bit): the case passes only if the checks of the datagrams across the migration catch the damage."""
    host = switch_with_host(rig, ["vm1", "vm1new"], wrap=["env", "VHOSTD_TEST_DIRTY_LOG_OFF=1"] if unlogged else ())
    nic = ("" if announce else ",guest_announce=off") + (",packed=on" if packed else "")
    src = Guest(rig, "src", A_MAC, A_IP, f"path={rig.sock('vm1')}", nic_extra=nic).boot()
    dst = Guest(rig, "dst", A_MAC, A_IP, f"path={rig.sock('vm1new')}", nic_extra=nic,
                incoming=f"tcp:127.0.0.1:{free_port()}").boot()
    src.wait_agent()

    def migrate():
        rc, out = src.cmd(f"arping -f -c 3 -w 5 -I eth0 {HOST_IP}", timeout=30)
        expect(rc == 0, f"arping: {out[-3:]}")
        expect(rig.fdb().get(A_MAC) == "vm1", f"before: fdb {rig.fdb()}")
        lost0 = udp(rig, host, src, 7301)
        r = src.start(f"nettool tcp-recv 7302 {MIG_BYTES}")
        r.ready()
        s = host.start("tcp-send", A_IP, 7302, MIG_BYTES, MIG_KIBPS)
        # Datagrams written into the guest's buffers up to the source's last moment are found on the destination
        # only if their pages were logged: stale buffers would read as duplicates or corrupt datagrams.
        flow = UdpFlow(rig, host, src, 7305, MIG_UDP_N, pps=MIG_UDP_PPS, idle_ms=10000)
        time.sleep(3)
        t = time.time()
        st = src.migrate_to(dst)
        took = time.time() - t
        mig = (f"migrated in {took:.1f} s (downtime {st.get('downtime')} ms, {st['ram']['transferred'] >> 20} "
               f"MiB sent, {st['ram'].get('dirty-sync-count')} dirty syncs)")
        # The RARP vhostd sent for the guest moved its MAC to the new port.
        t = time.time()
        while rig.fdb().get(A_MAC) != "vm1new" and time.time() - t < 10:
            time.sleep(0.1)
        fdb_s = time.time() - t
        expect(rig.fdb().get(A_MAC) == "vm1new", f"after: fdb {rig.fdb()} (vhostd: {rig.vhostd_tail()})")
        rarp = any("vm1new: SEND_RARP" in x for x in rig.vd.out)
        expect(rarp or announce, f"no SEND_RARP: {rig.vhostd_tail()}")
        sres, rres = s.result(300), dst.adopt(r).result(300)
        expect(" ok " in sres and " ok " in rres, f"TCP across the migration: host {sres}; guest {rres}")
        lost_mig = flow.check(moved_to=dst)
        lost1 = udp(rig, host, dst, 7303)
        lost2 = udp(rig, dst, host, 7304)
        qemu = src.tail(1 << 30) + dst.tail(1 << 30)
        bad = [x for x in qemu if "Migration disabled" in x or "vhost lacks" in x] + vhdrig.qemu_warnings(qemu)
        expect(not bad, f"QEMU: {bad}")
        ring = rig.show()["vm1new"]["info"].get("ring")
        expect(ring == ("packed" if packed else "split"), f"vm1new ring {ring}")
        how = "SEND_RARP" if rarp else "the guest's announcement"
        # The source stays paused for good (QEMU's postmigrate state) and would not power off at the scenario's
        # end: 30 s of waiting per case.
        src.kill()
        return (f"{ring}, {how}: {mig}; MAC on vm1new {fdb_s:.1f} s after; "
                f"{MIG_BYTES >> 20} MiB TCP across it intact; {MIG_UDP_N} datagrams across it, {lost_mig} lost "
                f"(counted), none stale; UDP lost before {lost0}, after {lost1}/{lost2} (all counted)")

    def held():
        """The receive ring filled while the migration is held after its first pass over memory and the guest's
        eth0 is down (NAPI off: the guest neither reads nor refills the ring, nor writes those pages): the
        buffers' pages reach the destination only through vhostd's dirty log. Without the hold and the
        link down, the guest itself dirties every receive buffer's page soon after vhostd writes it (its
        skb_shared_info, freshly zeroed pages) and QEMU re-sends the used ring at the stop whatever the log
        says: in 2 runs of the plain migration with the log off nothing was stale."""
        rc, out = src.cmd(f"arping -f -c 3 -w 5 -I eth0 {HOST_IP}", timeout=30)
        expect(rc == 0, f"arping: {out[-3:]}")
        lost0 = udp(rig, host, src, 7301)
        # The host keeps sending to the guest's MAC while the guest, link down, cannot answer its ARP.
        rig.nsrun("ip", "neigh", "replace", A_IP, "lladdr", A_MAC, "dev", rig.tap, "nud", "permanent")
        rc, out = src.cmd("ip link set eth0 down")
        expect(rc == 0, f"eth0 down: {out[-3:]}")
        flow = UdpFlow(rig, host, src, 7305, MIG_HELD_N, pps=MIG_UDP_PPS, idle_ms=5000, send=False)
        # An idle guest dirties no page: the migration would end at its first pass, before the ring is filled.
        # A shell rewrites 64 files in tmpfs (64 pages) without end: every pass has more left to send than 1 ms
        # of downtime allows. (dd rewriting a 4 MiB buffer instead crashed the destination's kernel, logged or
        # not: QEMU 7.2's TCG under a high dirty rate, 22 dirty syncs.)
        rc, out = src.cmd("(i=0; while :; do for f in $(seq 64); do echo $i >/tmp/d$f; done; i=$((i+1)); done) "
                          ">/dev/null 2>&1 & echo $!")
        pid = out[-1].strip() if out else ""
        expect(rc == 0 and pid.isdigit(), f"dirtier: {rc} {out[-3:]}")
        sent = []

        def fill():
            flow.send()
            sent.append(flow.s.result(60))
            time.sleep(0.5)  # the ring full: vhostd has written every buffer it had
        t = time.time()
        st = src.migrate_to(dst, hold=fill)
        took = time.time() - t
        expect(sent, f"the migration completed before its first pass ended: {st}")
        expect(" ok " in sent[0], f"UDP host->guest: {sent[0]}")
        mig = (f"migrated in {took:.1f} s (downtime {st.get('downtime')} ms, {st['ram']['transferred'] >> 20} "
               f"MiB sent, {st['ram'].get('dirty-sync-count')} dirty syncs)")

        def after():
            rc, out = dst.cmd(f"kill {pid}; ip link set eth0 up", timeout=20)
            expect(rc == 0, f"eth0 up: {out[-3:]}")
            return flow.check(moved_to=dst)
        if not unlogged:
            lost = after()
            return (f"{mig}; {MIG_HELD_N} datagrams into the held ring, {lost} lost (counted), none stale; "
                    f"before {lost0}")
        # Any of the checks may see it: datagrams stale (duplicates, corrupt, stray, lost uncounted), a receive
        # queue stuck, the destination's kernel crashed on what it read from the ring (QEMU gone).
        try:
            lost = after()
        except CaseError as e:
            panic = [x.strip() for x in dst.tail(400) if "Kernel panic" in x or "BUG:" in x or "RIP:" in x][:3]
            log(f"unlogged: {mig}; caught: {e}; the destination's kernel: {panic or 'no oops'}")
            # Only what the ring's contents can cause counts: the datagrams' verdict stale (lost uncounted,
            # duplicated, corrupt, stray), or none (the destination broke on reading the ring). With more dirty
            # syncs (20, before the 1 MiB/s hold) the destination's kernel crashed once with the log on too, after
            # an intact verdict: that is not this.
            verdict = [x for x in dst.tail(1 << 30) if "VHD-RESULT udp-recv" in x]
            expect(not verdict or not re.search(r"dup 0, corrupt 0, stray 0", verdict[-1]) or
                   "drops counted on the way" in str(e),
                   f"the datagrams arrived intact, then something else failed (not the log): {e}")
            # Neither would power off (the source is paused for good, the destination broken): 30 s each.
            src.kill()
            dst.kill()
            return f"{mig}; caught: {str(e)[:300]}" + (f"; destination kernel: {' / '.join(panic)}" if panic else "")
        raise CaseError(f"the migration with the dirty log off went unnoticed: {mig}; {MIG_HELD_N} datagrams into "
                        f"the held ring, {lost} lost (counted), none stale")

    if unlogged is None:
        yield "switch_guest_migrate_held", held
    elif unlogged:
        yield "switch_guest_migrate_unlogged_detected", held
    else:
        yield "switch_guest_migrate_live" + ("_packed" if packed else "") + ("_guest_announce" if announce else ""), migrate


def scenario_viommu(rig):
    """vm1 behind a vIOMMU, vm2 without; both ports as added by default (iommu=on)."""
    rig.start_vhostd([f"add-port vm1 vhost-user path={rig.sock('vm1')}",
                      f"add-port vm2 vhost-user path={rig.sock('vm2')}"])
    a = Guest(rig, "vm1", A_MAC, A_IP, f"path={rig.sock('vm1')}", viommu=True).boot()
    b = Guest(rig, "vm2", B_MAC, B_IP, f"path={rig.sock('vm2')}").boot()
    a.wait_agent()
    b.wait_agent()

    def viommu():
        show = rig.wait_link(["vm1", "vm2"])
        expect(show["vm1"]["info"].get("iommu") is True and show["vm2"]["info"].get("iommu") is False,
               f"ACCESS_PLATFORM: vm1 {show['vm1']['info'].get('iommu')}, vm2 {show['vm2']['info'].get('iommu')}")
        # While vm1's receive queue waits on a miss, frames for it are dropped and counted in its port's
        # tx_drops (docs/viommu.md, "Guest RX"): a lost ping must be one of those.
        pings = []
        for src, dst_ip, who in ((a, B_IP, "vm1->vm2"), (b, A_IP, "vm2->vm1")):
            d0 = rig.stats()["vm1"]["tx_drops"]
            rc, out = src.ping(dst_ip)
            d1 = rig.stats()["vm1"]["tx_drops"]
            summary = [x for x in out if "packets transmitted" in x]
            got = int(summary[0].split(",")[1].split()[0]) if summary else 0
            # Not even one reply is required (in one run vm1 got 1 of 5): UDP and TCP below show delivery.
            expect(summary and 5 - got <= d1 - d0, f"{who}: ping: rc {rc}, {summary or out[-3:]}; vm1 tx_drops "
                                                  f"grew by {d1 - d0}")
            pings.append(f"{who} {got}/5")
        u1 = udp(rig, a, b, 7701)
        u2 = udp(rig, b, a, 7702)
        t1, t2, s = tcp_both_ways_then_counters(rig, a, b, 7703, "viommu")
        io = {k: s["vm1"].get(f"iotlb_{k}") for k in ("misses", "updates", "invalidations", "waits")}
        expect(io["misses"] and io["updates"] and io["invalidations"], f"vm1's IOTLB counters {io}")
        expect(not s["vm2"].get("iotlb_misses"), f"vm2 (no vIOMMU) counted IOTLB misses: {s['vm2']}")
        return f"ping {', '.join(pings)}, UDP {UDP_N} each way (lost {u1}, {u2}), TCP {t1} / {t2}; vm1 IOTLB {io}"

    yield "switch_guest_viommu_and_plain", viommu


SCENARIOS = [
    ("two_guests", scenario_two_guests, ["switch_guest_arp_learning", "switch_guest_ping", "switch_guest_udp",
                                         "switch_guest_tcp", "switch_guest_counters_exact",
                                         "switch_guest_reboot_while_other_talks"]),
    ("jumbo", scenario_jumbo, ["switch_guest_jumbo_mtu9000", "switch_guest_upgrade"]),
    ("restart", scenario_restart, ["switch_guest_vhostd_restart_qemu_server",
                                   "switch_guest_vhostd_restart_qemu_reconnect"]),
    ("restart_cycles", scenario_restart_cycles, ["switch_guest_vhostd_kill9_cycles"]),
    ("af_packet", scenario_af_packet, ["switch_guest_af_packet_veth"]),
    ("vxlan", scenario_vxlan, ["switch_guest_vxlan_linux"]),
    ("migrate", scenario_migrate, ["switch_guest_migrate_live"]),
    ("migrate_packed", lambda rig: scenario_migrate(rig, packed=True), ["switch_guest_migrate_live_packed"]),
    ("migrate_announce", lambda rig: scenario_migrate(rig, announce=True),
     ["switch_guest_migrate_live_guest_announce"]),
    ("migrate_unlogged", lambda rig: scenario_migrate(rig, unlogged=True),
     ["switch_guest_migrate_unlogged_detected"]),
    ("viommu", scenario_viommu, ["switch_guest_viommu_and_plain"]),
]
# Run only when named exactly: migrate_held is migrate_unlogged with the log on, the control that shows that case
# sees the missing log and nothing else.
OPT_IN = [("migrate_held", lambda rig: scenario_migrate(rig, unlogged=None), ["switch_guest_migrate_held"])]


def main():
    return vhdrig.run_scenarios(SCENARIOS + [s for s in OPT_IN if FILTER in (s[0], *s[2])], FILTER)




if __name__ == "__main__":
    sys.exit(main())
