#!/usr/bin/env python3
"""vhostd's vduse ports, proven against the Debian 6.12 kernel's VDUSE, vDPA bus and virtio_vdpa driver.

The host kernel has no VDUSE, so everything runs inside one guest (no NIC; our binaries and iproute2 in its
initramfs): vhostd in the guest serves two VDUSE devices, vda (packed rings) and vdb (split rings), and a tap.
virtio_vdpa binds each device and the kernel's virtio_net makes a netdev of it; each netdev goes into a network
namespace of its own (na 10.9.0.2, nb 10.9.0.3), the tap (10.9.0.1) stays in the guest's initial one, so every
frame between them crosses vhostd. Checks, every frame verified by nettool:

  traffic      ping, 2000 UDP datagrams each way and 8 MiB of TCP each way between na and nb (packed to split),
               the same with 2 MiB of TCP between na and the tap; any datagram lost counted by vhostd; vhostd
               counts no errors
  rebind       vda unbound from virtio_vdpa (the driver resets the device: status 0, mappings dropped) and bound
               again: a new netdev, put back in na, pings nb
  name taken   add-port with the name of an existing VDUSE device fails naming it; the ports keep working
  reset        vda unbound while nb floods it with UDP: vhostd survives, counts the reset, and after a rebind
               the two namespaces talk again
  slow loop    vhostd stopped for 3 s while the kernel waits for its answer (an unbind): the answer comes
               late, within the kernel's 30 s, and the device works after the rebind
  restart      vhostd killed (SIGKILL) under a UDP stream na -> nb and started again with the same config:
               it reopens both devices from /run/vhostd/vduse (packed and split), the stream resumes (more
               datagrams arrive than nb's netdev had taken at the kill), none duplicated or corrupted, the
               loss reported; then UDP nb -> na with every loss counted
  del-port     del-port vdb detaches and destroys it: /dev/vduse/vdb and the vdpa device are gone
  pktgen       vhost-pktgen --vduse pg0 --mode icmpecho --packed: its netdev (namespace np) pings it, 1000-byte
               echoes checked by ping; SIGTERM destroys the device

Then VDUSE bound to vhost_vdpa (VdpaPair: vhost-pktgen --vduse vp0 --mode io, our frontend in a second
vhost-pktgen driving its /dev/vhost-vdpa-N with txonly --verify):

  vdpa split, packed  VHD_VDUSE_VDPA_FRAMES frames (3000; 10^6 in make soak) each way, all verified, the device's
               and the consumer's counters equal
  vdpa reset_remap  the consumer resets the device under traffic, then unmaps its memory from the device's IOTLB
               and maps it again: the device counts the reset and the UPDATE_IOTLBs, parks and resumes its
               queues; nothing corrupt or duplicated, at most the rings' worth lost
  vdpa refuse  the device refuses DRIVER_OK, then every IOTLB update: the consumer names the failed step and
               exits cleanly on SIGINT; a fresh device then works

usage: test_vduse.py VHOSTD VHOSTCTL PKTGEN [case-substring]
"""
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from vhdrig import CaseError, Guest, expect, ping_ok, tcp, udp  # noqa: E402
import vhdrig  # noqa: E402

vhdrig.configure(vhostd=sys.argv[1], vhostctl=sys.argv[2], pktgen=sys.argv[3])
FILTER = sys.argv[4] if len(sys.argv) > 4 else ""
IP = "/usr/bin/ip"
TAP_IP, NA_IP, NB_IP = "10.9.0.1", "10.9.0.2", "10.9.0.3"


class Switch:
    """vhostd inside the guest, through vhostctl run there: the stats()/show() udp() reads for drop accounting."""

    def __init__(self, g):
        self.g, self.host_ifaces = g, []

    def ctl(self, *args, check=True):
        rc, out = self.g.cmd(f"{vhdrig.VHOSTCTL} --socket /tmp/ctl {' '.join(args)} 2>&1", timeout=60)
        expect(rc == 0 or not check, f"vhostctl {' '.join(args)}: rc {rc}: {out[-3:]}")
        return rc, out

    def json(self, *args):
        return json.loads("\n".join(self.ctl("--json", *args)[1]))

    def stats(self):
        return {p["name"]: p for p in self.json("stats")["ports"]}

    def show(self):
        return {p["name"]: p for p in self.json("show")["ports"]}

    def iface_stats(self, ifname, ns=None):
        """The guest's netdev ifname's counters (in namespace ns), for udp()'s drop accounting."""
        pre = f"{IP} netns exec {ns} " if ns else ""
        rc, out = self.g.cmd(f"{pre}sh -c 'cd /sys/class/net/{ifname}/statistics && echo VHD-STAT $(cat rx_packets "
                             f"tx_packets rx_bytes tx_bytes rx_dropped tx_dropped)'")
        line = [x for x in out if x.startswith("VHD-STAT")]
        expect(rc == 0 and line, f"{ifname} counters: {out[-3:]}")
        return dict(zip(("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped"),
                        map(int, line[0].split()[1:])))


class NsEnd:
    """One end of the traffic: nettool in a namespace of the guest (ns None: the initial one)."""

    def __init__(self, g, ns, ip, name):
        self.g, self.ns, self.ip, self.name = g, ns, ip, name

    def start(self, *args):
        pre = f"{IP} netns exec {self.ns} " if self.ns else ""
        return self.g.start(pre + "nettool " + " ".join(map(str, args)))

    def udp_rcvbuf_errors(self):
        return vhdrig.guest_udp_rcvbuf_errors(self.g, f"{IP} netns exec {self.ns} " if self.ns else "")


def netdev_into(g, dev, ns, ip):
    """The netdev virtio_vdpa made of VDUSE device dev, moved into ns with ip, up. Waits for it (the probe runs
    after the attach returns on a rebind)."""
    rc, out = g.cmd(f"for i in $(seq 50); do n=$(ls /sys/bus/vdpa/devices/{dev}/virtio*/net 2>/dev/null); "
                    f"[ -n \"$n\" ] && break; sleep 0.1; done; echo IF=$n", timeout=30)
    ifname = [x[3:] for x in out if x.startswith("IF=")]
    expect(rc == 0 and ifname and ifname[0], f"{dev}: no netdev under /sys/bus/vdpa/devices/{dev}: {out[-3:]}")
    rc, out = g.cmd(f"{IP} link set {ifname[0]} netns {ns} && {IP} -n {ns} addr add {ip}/24 dev {ifname[0]} && "
                    f"{IP} -n {ns} link set {ifname[0]} up && {IP} -n {ns} link set lo up", timeout=30)
    expect(rc == 0, f"{dev}: moving {ifname[0]} into {ns}: {out[-3:]}")
    return ifname[0]


def ns_ping(g, ns, ip, n=3):
    rc, out = g.cmd(f"{IP} netns exec {ns} ping -c {n} -i 0.2 -W 3 {ip}", timeout=n * 4 + 30)
    return ping_ok(f"{ns}->{ip}", rc, out, n)


# Frames per ring layout through VDUSE on vhost_vdpa: a few seconds' worth under ASan in TCG here, 10^6 in make
# soak (VHD_VDUSE_VDPA_FRAMES; ~2000 frames/s in the release build).
VDPA_FRAMES = int(os.environ.get("VHD_VDUSE_VDPA_FRAMES", "3000"))
WINDOW, RING_FRAMES = 64, 2 * 256  # frames the consumer keeps in flight; what its two rings hold


class VdpaPair:
    """A VDUSE device served by vhost-pktgen --vduse (mode io) bound to vhost_vdpa, and our frontend (a second
    vhost-pktgen, txonly --verify) driving its /dev/vhost-vdpa-N, in the guest; both report JSON."""

    def __init__(self, g):
        self.g, self.dev, self.job, self.node = g, None, None, None

    def device(self, name, args):
        """(Re)start the device as name with extra args, attached and bound to vhost_vdpa."""
        self.stop_device()
        self.dev = name
        self.job = self.g.start(self.pktgen("dev", f"--vduse {name} --mode io {args} --json",
                                            f">/tmp/{name}.json 2>/tmp/{name}.log"))
        rc, out = self.g.cmd(f"for i in $(seq 300); do [ -e /sys/bus/vdpa/devices/{name} ] && break; sleep 0.1; done; "
                             f"echo {name} > /sys/bus/vdpa/drivers/vhost_vdpa/bind && "
                             f"ls -d /sys/bus/vdpa/devices/{name}/vhost-vdpa-*", timeout=60)
        node = [x.rsplit("/", 1)[1] for x in out if "/vhost-vdpa-" in x]
        expect(rc == 0 and node, f"{name} not bound to vhost_vdpa: {out[-4:]}")
        self.node = "/dev/" + node[0]

    def device_log(self):
        return self.g.cmd(f"cat /tmp/{self.dev}.log")[1]

    def stop_device(self):
        """SIGINT to the device: its JSON (the vduse counters included). None if none runs."""
        if not self.job:
            return None
        self.g.cmd("kill -INT $(cat /tmp/dev.pid)")
        rc, _ = self.job.wait(60)
        self.job = None
        rc2, out = self.g.cmd(f"cat /tmp/{self.dev}.json; echo; cat /tmp/{self.dev}.log")
        js = [x for x in out if x.startswith("{")]
        expect(rc == 0 and js and not any("Sanitizer" in x or "runtime error" in x for x in out),
               f"device {self.dev}: exit {rc}: {out[-8:]}")
        rc2, out = self.g.cmd("ls /sys/bus/vdpa/devices /dev/vduse")
        expect(self.dev not in out, f"device {self.dev} left behind: {out}")
        return json.loads(js[0])

    def pktgen(self, role, args, out):
        """A vhost-pktgen command line whose pid goes to /tmp/ROLE.pid (to signal it), output to out."""
        return f"sh -c 'echo $$ >/tmp/{role}.pid; exec env {vhdrig.GUEST_SAN} {vhdrig.PKTGEN} {args} {out}'"

    def run(self, args, signals=()):
        """The consumer with args: until --count, or (signals) sent each signal 1.5 s apart once it is up, then
        SIGINT 2 s after the last. Stops the device too. @return (consumer JSON, device JSON)."""
        base = self.pktgen("fe", f"--frontend {self.node} --mode txonly --verify --latency --window {WINDOW} {args} "
                                 "--json", ">/tmp/fe.json 2>/tmp/fe.log")
        # Nothing of the last consumer's may answer for this one (its pid, its "up" line).
        self.g.cmd("rm -f /tmp/fe.pid /tmp/fe.log /tmp/fe.json")
        if signals:
            job = self.g.start(base)
            # Signals once it is up (its handlers installed: under ASan in TCG that takes seconds).
            # (after a reset, the next signal waits for the consumer to be up again)
            sig = "".join(f"sleep 1.5; kill -{s} $(cat /tmp/fe.pid); " +
                          ("for i in $(seq 300); do grep -q 'up again' /tmp/fe.log && break; sleep 0.1; done; "
                           if s == "USR1" else "") for s in signals)
            rc, out = self.g.cmd("for i in $(seq 600); do grep -qs 'vhost-vdpa up' /tmp/fe.log && break; sleep 0.1; "
                                 f"done; {sig}sleep 2; kill -INT $(cat /tmp/fe.pid)", timeout=180)
            expect(rc == 0, f"consumer gone before its signals: {out[-3:]}")
            rc = job.wait(120)[0]
        else:
            rc = self.g.cmd(base, timeout=900)[0]
        d = self.stop_device()
        rc2, out = self.g.cmd("cat /tmp/fe.json; echo; cat /tmp/fe.log")
        js = [x for x in out if x.startswith("{")]
        # Exit 1: --verify saw frames missing, which a disruption (signals) may cost; checked by the caller.
        expect(js and (rc == 0 or (signals and rc == 1)) and
               not any("Sanitizer" in x or "runtime error" in x for x in out),
               f"consumer: exit {rc}: {out[-8:]}; device {d['total']}")
        self.fe_log = out
        return json.loads(js[0]), d

    def refused(self):
        """A consumer against a refusing device: it must say why and keep trying; SIGINT then ends it cleanly
        (exit 0, no leak). Stops the device. @return the consumer's log."""
        self.g.cmd("rm -f /tmp/fe.pid /tmp/fr.log")
        job = self.g.start(self.pktgen("fe", f"--frontend {self.node} --mode txonly", "2>/tmp/fr.log"))
        self.g.cmd("for i in $(seq 300); do grep -qs 'setup failed' /tmp/fr.log && break; sleep 0.1; done; "
                   "sleep 1; kill -INT $(cat /tmp/fe.pid)", timeout=90)
        rc = job.wait(60)[0]
        log = self.g.cmd("cat /tmp/fr.log")[1]
        expect(rc == 0 and not any("Sanitizer" in x or "runtime error" in x for x in log),
               f"the refused consumer did not end cleanly: exit {rc}: {log[-6:]}")
        d = self.stop_device()
        expect(d["vduse"]["requests_failed"] >= 1, f"the device refused nothing: {d['vduse']}")
        return log

    @staticmethod
    def summary(c, d):
        t, dt = c["total"], d["total"]
        return (f"consumer sent {t['tx_packets']}, got back {t['rx_packets']} verified; device received "
                f"{dt['rx_packets']}, sent {dt['tx_packets']}, dropped {dt['drops']}")

    def expect_exact(self, c, d, n):
        t, dt = c["total"], d["total"]
        expect(t["tx_packets"] == n and t["rx_packets"] == n and not (t["lost"] or t["dup"] or t["corrupt"]),
               f"consumer: {t}")
        expect(dt["rx_packets"] == n and dt["tx_packets"] == n and dt["drops"] == 0 and dt["errors"] == 0,
               f"device counters disagree with the consumer's: {dt}")

    def expect_in_flight(self, c, d):
        """Traffic on both sides of a disruption: nothing corrupt or duplicated, and only what the rings held
        missing; the two sides' counters agree up to that."""
        t, dt = c["total"], d["total"]
        expect(t["dup"] == 0 and t["corrupt"] == 0 and dt["errors"] == 0, f"consumer {t}, device {dt}")
        expect(t["tx_packets"] >= dt["rx_packets"] and dt["rx_packets"] == dt["tx_packets"] + dt["drops"] and
               dt["tx_packets"] >= t["rx_packets"], f"counters out of order: consumer {t}, device {dt}")
        expect(t["tx_packets"] - t["rx_packets"] <= RING_FRAMES, f"more lost than the rings hold: {t}")
        again = [x for x in self.fe_log if "frames received before" in x or "memory mapped again" in x]
        expect(again, f"the consumer never came back: {self.fe_log[-6:]}")
        before = int(again[-1].split(", ")[-1].split()[0])
        expect(0 < before < t["rx_packets"], f"{before} frames back before, {t['rx_packets']} in all: traffic did "
                                             "not run on both sides of the disruption")


def scenario(rig):
    g = Guest(rig, "g", None, None, payload=[vhdrig.VHOSTD, vhdrig.VHOSTCTL, vhdrig.PKTGEN, IP], mem="1G", smp=2).boot()
    g.wait_agent()
    sw = Switch(g)
    rc, out = g.cmd("modprobe tun && modprobe vdpa && modprobe vduse && modprobe virtio_vdpa && "
                    "ls /dev/vduse/control /dev/net/tun")
    expect(rc == 0, f"guest kernel modules: {out[-3:]}")
    conf = "/tmp/vhostd.conf"
    g.cmd(f"printf '%s\\n' 'add-port va vduse name=vda mac=02:00:00:00:0a:01' "
          f"'add-port vb vduse name=vdb packed=off mac=02:00:00:00:0b:01' "
          f"'add-port t tap ifname=vtap0 addr={TAP_IP}/24' > {conf}")
    vds = []

    def start_vhostd():
        g.cmd("rm -f /tmp/ctl")
        vds.append(g.start(f"{vhdrig.VHOSTD} --socket /tmp/ctl --config {conf} --log-level info"))
        rc, out = g.cmd("for i in $(seq 200); do [ -S /tmp/ctl ] && break; sleep 0.1; done; "
                        f"{vhdrig.VHOSTCTL} --socket /tmp/ctl show", timeout=60)
        expect(rc == 0, f"vhostd did not come up: {vds[-1].lines()[-5:]}")
    start_vhostd()
    g.cmd(f"{IP} netns add na; {IP} netns add nb; {IP} link set vtap0 up")
    # Drops on the way count in udp(): the netdevs' own too (the driver's, the qdisc's).
    sw.host_ifaces = [(netdev_into(g, "vda", "na", NA_IP), "na"), (netdev_into(g, "vdb", "nb", NB_IP), "nb"),
                      ("vtap0", None)]
    na, nb, tap = NsEnd(g, "na", NA_IP, "na"), NsEnd(g, "nb", NB_IP, "nb"), NsEnd(g, None, TAP_IP, "tap")

    def no_errors(where):
        for name, p in sw.show().items():
            info = p.get("info", {})
            for k in ("bad_header", "ring_errors", "requests_failed", "irq_failures"):
                expect(not info.get(k), f"{where}: port {name} reports {k}={info.get(k)}")

    def traffic():
        ping_ok("na->nb", *g.cmd(f"{IP} netns exec na ping -c 3 -i 0.2 -W 3 {NB_IP}", timeout=40), 3)
        ns_ping(g, "na", TAP_IP)
        lost = [udp(sw, na, nb, 7301), udp(sw, nb, na, 7302), udp(sw, na, tap, 7303), udp(sw, tap, na, 7304)]
        # 8 MiB each way across both ring layouts; the tap leg shorter (make check's time budget).
        t = [tcp(na, nb, 7311), tcp(nb, na, 7312), tcp(na, tap, 7313, 2 << 20), tcp(tap, na, 7314, 2 << 20)]
        no_errors("traffic")
        info = sw.show()["va"]["info"]
        expect(info["ring"] == "packed" and sw.show()["vb"]["info"]["ring"] == "split",
               f"ring layouts: va {info['ring']}, vb {sw.show()['vb']['info']['ring']}")
        return f"UDP lost (all counted) {lost}; TCP {', '.join(t)}"
    yield "vduse_traffic", traffic

    def rebind():
        before = sw.show()["va"]["info"]["resets"]
        rc, out = g.cmd("echo vda > /sys/bus/vdpa/drivers/virtio_vdpa/unbind && "
                        "echo vda > /sys/bus/vdpa/drivers/virtio_vdpa/bind", timeout=60)
        expect(rc == 0, f"unbind/bind: {out[-3:]}")
        sw.host_ifaces[0] = (netdev_into(g, "vda", "na", NA_IP), "na")
        s = ns_ping(g, "na", NB_IP)
        after = sw.show()["va"]["info"]["resets"]
        expect(after > before, f"the unbind reset nothing: resets {before} -> {after}")
        return s
    yield "vduse_rebind", rebind

    def name_taken():
        rc, out = sw.ctl("add-port vx vduse name=vda", check=False)
        expect(rc != 0 and any("exists already" in x for x in out), f"add-port with a taken name: rc {rc} {out[-3:]}")
        return ns_ping(g, "na", NB_IP)
    yield "vduse_name_taken", name_taken

    def reset_mid_traffic():
        sender = nb.start("udp-send", NA_IP, 7321, 4000)
        g.cmd("sleep 1; echo vda > /sys/bus/vdpa/drivers/virtio_vdpa/unbind", timeout=60)
        sender.wait(180)
        rc, out = g.cmd("echo vda > /sys/bus/vdpa/drivers/virtio_vdpa/bind", timeout=60)
        expect(rc == 0, f"bind: {out[-3:]}")
        sw.host_ifaces[0] = (netdev_into(g, "vda", "na", NA_IP), "na")
        lost = udp(sw, nb, na, 7322, n=500)
        no_errors("after the reset")
        return f"traffic again after the reset, UDP lost (all counted) {lost}"
    yield "vduse_reset_mid_traffic", reset_mid_traffic

    def slow_loop():
        # vhostd stopped (SIGSTOP) while the kernel waits for its answer to the unbind's reset: the kernel waits
        # (up to its 30 s msg_timeout), the answer comes 3 s late, and the device is not marked broken.
        rc, out = g.cmd("p=$(pidof vhostd); kill -STOP $p; (echo vda > /sys/bus/vdpa/drivers/virtio_vdpa/unbind "
                        "&& echo UNBOUND) & sleep 3; echo RESUMING; kill -CONT $p; wait; "
                        "echo vda > /sys/bus/vdpa/drivers/virtio_vdpa/bind && echo BOUND", timeout=90)
        # The unbind cannot finish before vhostd answers: UNBOUND after RESUMING.
        expect(rc == 0 and "RESUMING" in out and "UNBOUND" in out and "BOUND" in out and
               out.index("RESUMING") < out.index("UNBOUND"), f"unbind answered late: rc {rc} {out[-4:]}")
        sw.host_ifaces[0] = (netdev_into(g, "vda", "na", NA_IP), "na")
        s = ns_ping(g, "na", NB_IP)
        no_errors("after the slow answer")
        return "the kernel waited 3 s for the reset's answer; " + s
    yield "vduse_slow_loop", slow_loop

    def restart():
        n = 6000
        rx0 = sw.iface_stats(sw.host_ifaces[1][0], "nb")["rx_packets"]
        flow = vhdrig.UdpFlow(sw, na, nb, 7331, n, idle_ms=6000)
        # Killed under traffic: once the stream is flowing.
        end = time.monotonic() + 30
        while sw.iface_stats(sw.host_ifaces[1][0], "nb")["rx_packets"] - rx0 < 300 and time.monotonic() < end:
            time.sleep(0.1)
        g.cmd("kill -KILL $(pidof vhostd); while pidof vhostd >/dev/null; do sleep 0.1; done")
        # What reached nb before the kill (frames its netdev took: an upper bound on those datagrams).
        before = sw.iface_stats(sw.host_ifaces[1][0], "nb")["rx_packets"] - rx0
        vds[-1].wait(30)
        start_vhostd()
        log = "\n".join(vds[-1].lines())
        vhdrig.log("\n".join(x for x in vds[-1].lines() if "resum" in x))
        expect("vda: VDUSE device resumed" in log and "vdb: VDUSE device resumed" in log,
               f"vhostd did not resume vda and vdb: {vds[-1].lines()[-8:]}")
        sres, rres = flow.s.result(120), flow.r.result(120)
        m = re.search(r"received (\d+) of (\d+), lost (\d+), dup (\d+), corrupt (\d+), stray (\d+)", rres)
        expect(m, f"UDP na->nb across the restart: {rres} ({sres})")
        got, _, lost, dup, bad, stray = map(int, m.groups())
        expect(not (dup or bad or stray), f"UDP na->nb across the restart: {rres}")
        expect(got > before, f"the stream did not resume: {got} received, {before} of them before the kill")
        back = udp(sw, nb, na, 7332, n=300)
        no_errors("after the restart")
        return (f"{before} datagrams before the kill, {got - before} after the restart, {lost} of {n} lost while "
                f"vhostd was down, none duplicated or corrupted; UDP nb->na after it: {back} lost (counted)")
    yield "vduse_restart", restart

    def del_port():
        sw.ctl("del-port vb")
        rc, out = g.cmd("ls /dev/vduse /sys/bus/vdpa/devices")
        expect(rc == 0 and "vdb" not in out and "vda" in out, f"after del-port vb: {out}")
        return "vdb gone, vda stays"
    yield "vduse_del_port", del_port

    def pktgen():
        pg = g.start(f"{vhdrig.PKTGEN} --vduse pg0 --mode icmpecho --packed --mac 02:00:00:00:0c:01")
        g.cmd(f"{IP} netns add np")
        netdev_into(g, "pg0", "np", "10.8.0.1")
        rc, out = g.cmd(f"{IP} netns exec np ping -c 20 -i 0.05 -s 1000 -W 3 10.8.0.2", timeout=60)
        s = ping_ok("np->pktgen", rc, out, 20)
        g.cmd("kill $(pidof vhost-pktgen)")
        rc, out = pg.wait(60)
        expect(rc == 0, f"vhost-pktgen: rc {rc}: {out[-3:]}")
        rc, out = g.cmd("ls /dev/vduse /sys/bus/vdpa/devices")
        expect("pg0" not in out, f"pg0 left behind: {out}")
        return s
    yield "vduse_pktgen", pktgen

    # ---- VDUSE bound to vhost_vdpa: vhost-pktgen --vduse (io: every frame sent back) is the device, a second
    # vhost-pktgen drives its /dev/vhost-vdpa-N with our frontend. New vDPA devices stay unbound from here on
    # (drivers_autoprobe 0) so that each can be bound to vhost_vdpa rather than to virtio_vdpa.
    rc, out = g.cmd("modprobe vhost_vdpa && echo 0 > /sys/bus/vdpa/drivers_autoprobe")
    expect(rc == 0, f"vhost_vdpa: {out[-3:]}")
    vp = VdpaPair(g)

    def vdpa_traffic(packed):
        def case():
            vp.device("vp0", "--packed" if packed else "")
            c, d = vp.run(f"--count {VDPA_FRAMES}{' --packed' if packed else ''}")
            vp.expect_exact(c, d, VDPA_FRAMES)
            return (f"{VDPA_FRAMES} frames {'packed' if packed else 'split'} through VDUSE on vhost_vdpa and back, "
                    f"all verified; {c['seconds']:.1f} s of traffic")
        return case
    yield "vduse_vdpa_split", vdpa_traffic(False)
    yield "vduse_vdpa_packed", vdpa_traffic(True)

    def vdpa_reset_remap():
        # One consumer, three disruptions under traffic: a reset (SIGUSR1: status 0, everything set up again);
        # then its memory taken out of the device's IOTLB (SIGUSR2) and, a second later, given back (SIGUSR2).
        # The kernel tells the device of each IOTLB change (UPDATE_IOTLB): it must drop its mappings at once,
        # park the queues whose rings went, and resume them when they are back.
        vp.device("vp0", "--packed")
        c, d = vp.run("--packed", signals=["USR1", "USR2", "USR2"])
        v = d["vduse"]
        expect(v["resets"] >= 2, f"the consumer's reset did not reach the device: {v}")
        expect(v["iotlb_updates"] >= 2 and v["queues_parked"] >= 1,
               f"the device saw no IOTLB removal, or parked no queue: {v}")
        log = vp.device_log()
        expect(sum("memory is gone" in x for x in log) >= 1, f"no parking logged: {log[-6:]}")
        expect(any("frames received before" in x for x in vp.fe_log), f"no reset: {vp.fe_log[-6:]}")
        vp.expect_in_flight(c, d)
        return f"reset, memory unmapped and mapped again under traffic: {vp.summary(c, d)}; device {v}"
    yield "vduse_vdpa_reset_remap", vdpa_reset_remap

    def vdpa_refuse():
        seen = []
        for knob, step, why in (("--refuse-status 4", "setup failed at SET_STATUS", "DRIVER_OK missing"),
                                ("--refuse-iotlb", "setup failed at SET_MEM_TABLE", "refused by")):
            vp.device("vp0", knob)
            log = vp.refused()
            expect(any(step in x for x in log) and any(why in x for x in log),
                   f"{knob}: the consumer did not say '{step}' ('{why}'): {log[-6:]}")
            seen.append(f"{knob}: '{[x for x in log if why in x][0].split(': ', 1)[1]}'")
        # The refusal lifted (a fresh device of the same name): a consumer works.
        vp.device("vp0", "")
        c, d = vp.run("--count 2000")
        vp.expect_exact(c, d, 2000)
        vp.stop_device()
        g.cmd("echo 1 > /sys/bus/vdpa/drivers_autoprobe")
        return "; ".join(seen) + "; then a fresh device carried 2000 frames"
    yield "vduse_vdpa_refuse", vdpa_refuse

    rc, out = g.cmd("kill $(pidof vhostd); for i in $(seq 100); do pidof vhostd >/dev/null || break; sleep 0.1; "
                    "done; pidof vhostd; ls /dev/vduse", timeout=60)
    if any("vda" in x for x in out) or vds[-1].wait(30)[0] != 0:
        raise CaseError(f"vhostd did not stop cleanly: {vds[-1].lines()[-8:]} {out}")


if __name__ == "__main__":
    sys.exit(vhdrig.run_scenarios([("vduse", scenario, ["vduse_traffic", "vduse_rebind", "vduse_name_taken",
                                                        "vduse_reset_mid_traffic", "vduse_slow_loop", "vduse_restart",
                                                        "vduse_del_port",
                                                        "vduse_pktgen", "vduse_vdpa_split", "vduse_vdpa_packed",
                                                        "vduse_vdpa_reset_remap", "vduse_vdpa_refuse"])],
                                 FILTER))
