#!/usr/bin/env python3
"""Our frontend over vhost-vdpa, against the Linux kernel's own vDPA network simulator (vdpa_sim_net, built out
of tree for the Debian 6.12 guest by tests/interop/guest/build-vdpasim.sh), inside that guest: one boot, our
binaries in it (the guest payload), /dev/vhost-vdpa-0 from `vdpa dev add ... mgmtdev vdpasim_net` bound to
vhost_vdpa. The simulator loops every frame sent on its TX queue back into its RX queue when the destination is
its MAC (or broadcast), so vhost-pktgen's generator (txonly --verify) gets back exactly what it sent, and checks
every frame's sequence number, length and contents. --latency --window 64 keeps at most 64 frames in flight, so
the simulator never finds our 256-entry RX ring empty (it would drop the frame: an overrun, not our fault).

  vdpa_loopback      3000 frames looped back, all verified; the device's MAC as set by vdpa dev add
  vdpa_txonly        plain txonly --count 3000 (nothing verified, no window) finishes, the frames looped back
                     counted (less the simulator's overruns): it hung once the simulator found our RX ring full
                     (docs/interop.md)
  vdpa_txrx          txrx --verify --count 2000: every frame back, verified
  vdpa_tap           --mode tap: the kernel's datagrams to the simulator's MAC, through the tap and the
                     simulator, back into the tap (its rx_packets), counted by vhost-pktgen both ways
  vdpa_reset         vhd_fe_reset() (SIGUSR1) under traffic: the device is reset (status 0, maps dropped, fd
                     closed), set up again, and the rest of the frames come back verified; only frames in
                     flight at the reset (at most what the two rings hold) are missing
  vdpa_ctrl_mac      --set-mac: the simulator's MAC changed through its control queue, as a guest's driver does,
                     read back with vdpa dev config show (and set back)
  vdpa_port          vhostd's `vdpa path=/dev/vhost-vdpa-0` port: vhostctl shows it up, and frames a vhost-user
                     port sends to the simulator's MAC come back out of it

usage: test_vdpa.py VHOSTD VHOSTCTL PKTGEN [case-substring]
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from vhdrig import Guest, expect  # noqa: E402
import vhdrig  # noqa: E402

vhdrig.configure(vhostd=sys.argv[1], vhostctl=sys.argv[2], pktgen=sys.argv[3])
FILTER = sys.argv[4] if len(sys.argv) > 4 else ""

DEV = "/dev/vhost-vdpa-0"
SIM_MAC = "02:00:00:00:00:02"  # where vhost-pktgen's generated frames go
WINDOW = 64
RING_FRAMES = 2 * 256  # the frontend's TX and RX rings
SAN = vhdrig.GUEST_SAN


def pktgen(args, out):
    """A vhost-pktgen frontend command line over the simulator, its JSON to out.json, its log to out.log."""
    return f"{SAN} {vhdrig.PKTGEN} --frontend {DEV} {args} --json >{out}.json 2>{out}.log"


def result(g, out):
    rc, lines = g.cmd(f"cat {out}.json; echo; cat {out}.log")
    js = [x for x in lines if x.startswith("{")]
    expect(js, f"no JSON from vhost-pktgen: {lines[-10:]}")
    return json.loads(js[0]), lines


def scenario(rig):
    g = Guest(rig, "g", None, None, payload=[vhdrig.VHOSTD, vhdrig.VHOSTCTL, vhdrig.PKTGEN, "/usr/sbin/vdpa",
                                                                                 "/usr/bin/ip"],
              mem="1G", smp=2).boot()
    g.wait_agent()
    rc, out = g.cmd("modprobe vdpa_sim_net && modprobe vhost_vdpa && "
                    f"/usr/sbin/vdpa dev add name vdpa0 mgmtdev vdpasim_net mac {SIM_MAC} && ls {DEV}")
    expect(rc == 0, f"no vdpa_sim_net device: {out}")

    def generate(args, n, out):
        """vhost-pktgen generating n frames (args) to the simulator, which must all come back, verified, and it
        exit 0 within the deadline. @return its JSON totals."""
        rc, _ = g.cmd(pktgen(f"{args} --verify --count {n}", out), timeout=180)
        r, lines = result(g, out)
        t = r["total"]
        expect(rc == 0, f"vhost-pktgen failed ({rc}): {lines[-10:]}")
        expect(t["tx_packets"] == n and t["rx_packets"] == n, f"sent {t['tx_packets']}, got back {t['rx_packets']}")
        expect(t["lost"] == 0 and t["dup"] == 0 and t["corrupt"] == 0, f"verify: {t}")
        return t

    def loopback():
        n = 3000
        t = generate(f"--mode txonly --latency --window {WINDOW}", n, "/tmp/lb")
        rc, cfg = g.cmd("/usr/sbin/vdpa dev config show vdpa0")
        expect(rc == 0 and any(f"mac {SIM_MAC}" in x for x in cfg), f"vdpa dev config show: {cfg}")
        return f"{n} frames looped back and verified, {t['rx_bytes']} bytes"

    yield "vdpa_loopback", loopback

    def txonly():
        # Plain txonly read nothing back, yet the simulator loops every frame into our RX ring: once full, it
        # took one TX frame per kick and vhost-pktgen, waiting for the rest, hung. It must finish, with what
        # comes back read and counted. Without a window some frames may find our RX ring full (the simulator's
        # overruns: up to 160 of 3000 seen under load), which only the simulator counts, and only while
        # the device is in use.
        n = 3000
        rc, _ = g.cmd(pktgen(f"--mode txonly --count {n}", "/tmp/tx"), timeout=180)
        r, lines = result(g, "/tmp/tx")
        t = r["total"]
        expect(rc == 0 and t["tx_packets"] == n and n // 2 < t["rx_packets"] <= n, f"txonly ({rc}): {t} {lines[-5:]}")
        expect(not any("never taken" in x for x in lines), f"frames left in the TX ring: {lines[-5:]}")
        return f"{n} frames sent, {t['rx_packets']} looped back and counted ({n - t['rx_packets']} overruns)"

    yield "vdpa_txonly", txonly

    def txrx():
        n = 2000
        generate(f"--mode txrx --latency --window {WINDOW}", n, "/tmp/tr")
        return f"{n} frames sent and back, verified"

    yield "vdpa_txrx", txrx

    def tap():
        # --mode tap: the kernel's datagrams to the simulator's MAC (a permanent neighbour) go through the tap,
        # vhost-pktgen and the simulator, which loops them back to the tap.
        n = 500
        ip = "/usr/bin/ip"
        ns = f"{ip} netns exec v"
        g.cmd(f"modprobe tun && {ip} netns add v && {ns} sh -c '[ ! -d /proc/sys/net/ipv6 ] || "
              "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6'")
        job = g.start(f"{ns} env {SAN} {vhdrig.PKTGEN} --frontend {DEV} --mode tap --tap tv --json >/tmp/tp.json "
                      "2>/tmp/tp.log")
        rc, out = g.cmd(f"for i in $(seq 300); do {ip} -n v link show tv >/dev/null 2>&1 && break; sleep 0.1; done; "
                        f"{ip} -n v addr add 10.5.0.1/24 dev tv && {ip} -n v link set tv up && "
                        f"{ip} -n v neigh add 10.5.0.2 lladdr {SIM_MAC} dev tv nud permanent && "
                        "for i in $(seq 600); do grep -q 'vhost-vdpa up' /tmp/tp.log && break; sleep 0.1; done; "
                        f"{ns} cat /sys/class/net/tv/statistics/rx_packets", timeout=60)
        expect(rc == 0, f"tap tv: {out}")
        before = int(out[-1])
        rc, out = g.cmd(f"{ns} nettool udp-send 10.5.0.2 9 {n} && sleep 1 && "
                        f"{ns} cat /sys/class/net/tv/statistics/rx_packets /sys/class/net/tv/statistics/tx_packets; "
                        "kill -INT $(pidof vhost-pktgen)", timeout=120)
        job.wait(60)
        r, lines = result(g, "/tmp/tp")
        t = r["total"]
        back = int(out[-2]) - before
        expect(back == n and t["tx_packets"] == n and t["rx_packets"] == n,
               f"{n} datagrams sent, {back} back at the tap; vhost-pktgen {t} {lines[-5:]}")
        return f"{n} datagrams from the tap through the simulator and back to it"

    yield "vdpa_tap", tap

    def reset():
        # Runs until SIGINT: reset it while it sends, and stop it a while after it is up again.
        job = g.start(pktgen(f"--mode txonly --verify --latency --window {WINDOW}", "/tmp/rs"))
        rc, out = g.cmd("for i in $(seq 600); do grep -q 'vhost-vdpa up' /tmp/rs.log && break; sleep 0.1; done; "
                        "sleep 2; kill -USR1 $(pidof vhost-pktgen) && for i in $(seq 300); do "
                        "grep -q 'up again' /tmp/rs.log && break; sleep 0.1; done && grep -q 'up again' /tmp/rs.log "
                        "&& sleep 2 && kill -INT $(pidof vhost-pktgen)", timeout=120)
        expect(rc == 0, f"vhost-pktgen gone before the reset, or not up again after it: {out}")
        job.wait(120)
        r, lines = result(g, "/tmp/rs")
        t = r["total"]
        again = [x for x in lines if "up again after reset 1" in x]
        expect(any("reset (SIGUSR1): done" in x for x in lines) and again,
               f"expected a reset and a second set-up, log: {lines[-6:]}")
        before = int(again[0].split(", ")[1].split()[0])
        expect(t["dup"] == 0 and t["corrupt"] == 0, f"verify after the reset: {t}")
        expect(before > 0 and t["rx_packets"] > before, f"{before} frames back before the reset, {t['rx_packets']} "
                                                        "in all: traffic did not run on both sides of it")
        # What the reset may lose is what sat in the rings then: our TX ring and the device's RX side, 256 each
        # (--latency keeps 64 in flight, but a frame it gave up on after 50 ms may still be in a ring).
        expect(t["tx_packets"] - t["rx_packets"] <= RING_FRAMES,
               f"sent {t['tx_packets']}, got back {t['rx_packets']} (at most {RING_FRAMES} may die in the reset)")
        return (f"{before} frames back before the reset, {t['rx_packets'] - before} after, all verified; "
                f"{t['tx_packets'] - t['rx_packets']} lost in flight")

    yield "vdpa_reset", reset

    def mac():
        # The simulator's control queue (CTRL_VQ, CTRL_MAC_ADDR): its MAC changed by our frontend as a guest's
        # driver would, read back from the kernel with vdpa dev config show; then set back for what follows.
        seen = []
        for want in ("02:00:00:00:00:aa", SIM_MAC):
            job = g.start(f"{SAN} {vhdrig.PKTGEN} --frontend {DEV} --mode rxonly --set-mac {want} 2>/tmp/mac.log")
            rc, out = g.cmd(f"for i in $(seq 600); do grep -q 'device MAC' /tmp/mac.log && break; sleep 0.1; done; "
                            f"cat /tmp/mac.log; /usr/sbin/vdpa dev config show vdpa0; kill -INT $(pidof vhost-pktgen)",
                            timeout=120)
            job.wait(60)
            expect(any(f"device MAC {want}: set" in x for x in out), f"--set-mac {want}: {out}")
            expect(any(x.startswith("vdpa0:") and f"mac {want} " in x for x in out),
                   f"vdpa dev config show after --set-mac {want}: {out}")
            seen.append(want)
        return f"device MAC set to {seen[0]} through the control queue, read back, and set back to {seen[1]}"

    yield "vdpa_ctrl_mac", mac

    def port():
        # vhostd in the guest: a vhost-user port (vhost-pktgen's frontend standing in for a VM) and the simulator
        # as a vdpa port. The generated frames go to the simulator's MAC: flooded to the vdpa port, looped back,
        # flooded back to the generator, which verifies every one.
        vd = f"{SAN} {vhdrig.VHOSTD} --socket /tmp/vd.ctl --log-level info"
        ctl = f"{vhdrig.VHOSTCTL} --socket /tmp/vd.ctl"
        vjob = g.start(f"{vd} >/tmp/vd.log 2>&1")
        n = 2000
        rc, out = g.cmd(f"for i in $(seq 100); do {ctl} show >/dev/null 2>&1 && break; sleep 0.1; done; "
                        f"{ctl} add-port sim vdpa path={DEV} && {ctl} add-port vm vhost-user path=/tmp/vm.sock && "
                        f"for i in $(seq 300); do {ctl} show | grep -q 'up.*true' && break; sleep 0.1; done; "
                        f"{ctl} --json show", timeout=120)
        expect(rc == 0, f"vhostd ports: {out[-10:]}")
        rc, out = g.cmd(f"{SAN} {vhdrig.PKTGEN} --frontend /tmp/vm.sock --mode txonly --verify --latency "
                        f"--window {WINDOW} --count {n} --json >/tmp/vp.json 2>/tmp/vp.log", timeout=300)
        r, lines = result(g, "/tmp/vp")
        t = r["total"]
        expect(t["tx_packets"] == n and t["rx_packets"] > 0 and t["corrupt"] == 0 and t["dup"] == 0,
               f"through vhostd and the simulator: {t} {lines[-5:]}")
        # Every frame missing is one a counter explains: the simulator's overruns (what vhostd sent it and did
        # not get back: under a loaded TCG host --latency's 50 ms timeouts let more than the window into the
        # rings) or vhostd's own drops. Anything else is a frame we lost.
        rc, st = g.cmd(f"{ctl} --json stats")
        ports = {p["name"]: p for p in json.loads("".join(x for x in st if not x.startswith("VHD")))["ports"]}
        sim, vm = ports["sim"], ports["vm"]
        drops = sum(p["rx_drops"] + p["tx_drops"] for p in (sim, vm))
        expect(vm["rx_packets"] == n and vm["tx_packets"] == t["rx_packets"] and
               n - t["rx_packets"] == (sim["tx_packets"] - sim["rx_packets"]) + drops,
               f"frames unaccounted for: pktgen {t}, vhostd sim {sim}, vm {vm}")
        # A node that is not a vDPA device, and a key vdpa does not take: refused, naming why; vhostd carries on.
        rc, out = g.cmd(f"{ctl} add-port bad vdpa path=/dev/null")
        expect(rc != 0 and any("vdpa: opening /dev/null" in x for x in out), f"add-port vdpa path=/dev/null: {out}")
        rc, out = g.cmd(f"{ctl} add-port bad vdpa path={DEV} server")
        expect(rc != 0 and any("server" in x for x in out), f"add-port vdpa ... server: {out}")
        # The device deleted under the port: the kernel waits for us to let go of it (vhost_vdpa_remove), so
        # deleting the port is what lets `vdpa dev del` finish; vhostd and its other port carry on.
        djob = g.start("/usr/sbin/vdpa dev del vdpa0; echo deleted")
        rc, out = g.cmd(f"{ctl} del-port sim && {ctl} show", timeout=60)
        expect(rc == 0, f"del-port sim: {out}")
        rc, out = djob.wait(60)
        expect(any("deleted" in x for x in out) and rc == 0, f"vdpa dev del: {out}")
        rc, out = g.cmd(f"/usr/sbin/vdpa dev show; ls {DEV} 2>&1; {ctl} show")
        expect(not any(x.startswith("vdpa0") for x in out) and any("vm" in x for x in out),
               f"after the delete: {out}")
        g.cmd(f"kill -INT $(pidof vhostd)")
        rc, out = vjob.wait(60)
        rc2, log = g.cmd("cat /tmp/vd.log")
        expect(rc == 0 and not any("ERROR: AddressSanitizer" in x or "runtime error" in x for x in log),
               f"vhostd exit {rc}: {log[-10:]}")
        return (f"{t['rx_packets']} of {n} frames through vhostd's vdpa port and back, verified; "
                f"{sim['tx_packets'] - sim['rx_packets']} overrun in the simulator, {drops} dropped by vhostd; "
                "device deleted")

    yield "vdpa_port", port


SCENARIOS = [("vdpa_sim", scenario, ["vdpa_loopback", "vdpa_txonly", "vdpa_txrx", "vdpa_tap", "vdpa_reset",
                                     "vdpa_ctrl_mac", "vdpa_port"])]

if __name__ == "__main__":
    sys.exit(vhdrig.run_scenarios(SCENARIOS, FILTER))
