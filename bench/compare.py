#!/usr/bin/env python3
"""Our stack against DPDK 22.11 and OVS-DPDK 3.1, case by case: what `make bench` runs after ringbench.

Groups (BENCH_ONLY=loopback,cross,switch,latency,ring,kernel,iommu picks some; all by default):
  loopback  guest TX (driver -> device), guest RX (device -> driver) and both ways: vhost-pktgen --frontend
            against vhost-pktgen --backend, versus dpdk-testpmd virtio_user against dpdk-testpmd net_vhost;
            64 and 1518 bytes, split and packed, mergeable RX buffers on and off.
  cross     one side ours, the other DPDK's, against DPDK on both sides: testpmd virtio_user driving our
            back-end, our frontend driving testpmd's net_vhost (which side is slow).
  switch    PVP: one vhost-pktgen process on the first CPU generates on port A and counts on port B
            (--sink); the switch on the second CPU: vhostd, versus testpmd io between two net_vhost ports, and
            versus OVS-DPDK (a netdev bridge, two dpdkvhostuserclient ports, flow in_port=A,actions=output:B).
            Then the same through learning switches at BENCH_FLOWS flows (default 1,10000): the sink announces
            its MAC (vhost-pktgen --announce), the generator spreads frames over that many UDP source ports
            (--flows), OVS keeps its bridge's NORMAL flow (MAC learning, as vhostd does).
  latency   one timestamped frame in flight (vhost-pktgen --latency): round trip through an echoing back-end
            (our back-end in macswap mode versus testpmd net_vhost macswap), and one way through each switch.
  ring      bench/ringbench: split and packed virtqueues next to the plain SPSC pointer ring.
  kernel    vhostd's two ways into the kernel, af_xdp against af_packet, on a veth pair in a namespace of its
            own: vhost-pktgen generates on port A of one vhostd, which forwards to a kernel port on one end of
            the veth; a second vhostd has a kernel port of the same type on the other end and forwards to port B,
            where vhost-pktgen counts (its sink). Both vhostd on the switch CPU (each sleeps when idle,
            --idle-us 20), the generator on the other; af_xdp in native mode (veth's own XDP), copy mode.
  iommu     the device IOTLB (VIRTIO_F_ACCESS_PLATFORM, docs/viommu.md): our frontend with --iommu (all of its
            memory mapped up front, so the IOTLB is warm) driving our back-end with --iommu, versus driving
            testpmd's net_vhost with iommu-support=1; and ours with the IOTLB versus ours without (its cost).
            Split ring, mergeable RX buffers, guest TX and guest RX.

Every case runs "ours" and the peer alternately BENCH_REPEAT times (default 3), each run BENCH_SECONDS
(default 5) measured after BENCH_WARMUP seconds (default 1) of traffic, one CPU per side (taskset; testpmd with
--lcores 0@C,1@C so its main and forwarding lcores share the CPU). Rates are taken at the receiver: vhost-pktgen's
--json rx_mpps, testpmd's periodic NIC statistics (Rx-pps, averaged over the measured seconds). Frame sizes count
the Ethernet FCS (64 and 1518 bytes are 60 and 1514 bytes in the buffers); Gbit/s = Mpps x size x 8 (no preamble
or gap). A run whose receiver saw nothing, or that failed otherwise, is FAILED, with the reason listed; a case
with no good run shows FAILED instead of a ratio.

Writes BENCH_DOC (default docs/benchmarks.md next to this script) and BENCH_CHART (docs/benchmarks.png; skipped,
and said so, without matplotlib). BENCH_QUICK=1: a tiny matrix for smoke tests. BENCH_CPUS=A,B (default 0,1):
A for the driver/generator side, B for the device/switch side. BENCH_SIZES (default 64,1518): frame sizes of the
loopback, cross and switch groups.

usage: compare.py BUILD_DIR
       compare.py --replot DOC   (the chart again from DOC's tables, e.g. once matplotlib is installed)
Needs root (hugepages, network namespace for OVS), dpdk-testpmd, ovs-vswitchd-dpdk (scripts/deps.sh bench).
"""
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import vhdrig  # noqa: E402  (processes, testpmd, hugepages: shared with the tests)
from vhdrig import CaseError as RunFail, wait_path  # noqa: E402
BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else ""
PKTGEN = os.path.join(BUILD, "tools", "vhost-pktgen")
VHOSTD = os.path.join(BUILD, "tools", "vhostd")
VHOSTCTL = os.path.join(BUILD, "tools", "vhostctl")
RINGBENCH = os.path.join(BUILD, "bench", "ringbench")
vhdrig.configure(vhostd=VHOSTD, vhostctl=VHOSTCTL, pktgen=PKTGEN)
TESTPMD = os.environ.get("BENCH_TESTPMD", "dpdk-testpmd")
OVS_VSWITCHD = os.environ.get("BENCH_OVS_VSWITCHD", "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk")
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "1"))
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
VERBOSE = os.environ.get("BENCH_VERBOSE", "") not in ("", "0")  # testpmd's per-second rates on stderr
GROUPS = ["loopback", "cross", "switch", "latency", "ring", "kernel", "iommu"]
SIZES = [int(x) for x in os.environ.get("BENCH_SIZES", "64,1518").split(",")]  # loopback, cross, switch
# Flow counts of the PVP cases through learning switches (each of BENCH_SIZES; none with BENCH_FLOWS=""):
FLOWS = [int(x) for x in os.environ.get("BENCH_FLOWS", "1,10000").split(",") if x]
ONLY = [g for g in os.environ.get("BENCH_ONLY", ",".join(GROUPS)).split(",") if g]
CPU_A, CPU_B = (int(c) for c in os.environ.get("BENCH_CPUS", "0,1").split(","))
DOC = os.environ.get("BENCH_DOC", os.path.join(ROOT, "docs", "benchmarks.md"))
CHART = os.environ.get("BENCH_CHART", os.path.join(ROOT, "docs", "benchmarks.png"))
HUGE_WANT = 1024  # 2 MiB pages, as tests/interop/test_dpdk.py
# Targets from issue 6, drawn on the chart: (label, ratio, which cases).
TARGETS = [("loopback 64B vs DPDK >= 1.0", 1.0, "loopback"), ("switch vs testpmd io >= 0.9", 0.9, "testpmd-io"),
           ("switch vs OVS-DPDK >= 2.0", 2.0, "OVS-DPDK")]


# ------------------------------------------------------------------ processes (vhdrig.Proc)

class Run:
    """One measurement: its processes, its DPDK file prefixes and its sockets, all cleaned up at the end."""
    seq = 0

    def __init__(self, workdir):
        Run.seq += 1
        self.dir = os.path.join(workdir, f"r{Run.seq}")
        os.makedirs(self.dir)
        self.procs, self.prefixes, self.cleanups = [], [], []
        self.commands = []

    def sock(self, name):
        return os.path.join(self.dir, name + ".sock")

    def prefix(self):
        p = f"bn{os.getpid()}r{Run.seq}p{len(self.prefixes)}"
        self.prefixes.append(p)
        return p

    def start(self, name, args, env=None):
        self.commands.append(" ".join(args))
        p = vhdrig.Proc(name, args, self.dir, merge=True, env=env, sigpipe_ignored=True)
        self.procs.append(p)
        return p

    def close(self):
        for p in reversed(self.procs):
            p.stop(5)
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:  # cleanup goes on whatever failed before
                print(f"bench: cleanup: {e}", file=sys.stderr)
        for pre in self.prefixes:
            vhdrig.dpdk_cleanup(pre)


# ------------------------------------------------------------------ the sides

def buf_len(size):
    return size - 4  # the FCS is not in the buffer


def pktgen_json(p):
    for line in reversed(p.out().strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    raise RunFail(f"vhost-pktgen printed no JSON; {p.tail()}")


def testpmd_args(cpu, prefix, vdevs, fwd, size, virtio_user=False):
    extra = [f"--txpkts={buf_len(size)}"] if fwd in ("txonly", "flowgen") else []
    return vhdrig.testpmd_cmd(cpu, prefix, vdevs, fwd, virtio_user, extra=extra, testpmd=TESTPMD)


def testpmd_pps(text, port=0):
    """The Rx-pps of each periodic NIC statistics block for port, in order."""
    out = []
    for b in text.split(f"NIC statistics for port {port} ")[1:]:
        m = re.search(r"Rx-pps:\s*(\d+)", b)
        if m:
            out.append(int(m[1]))
    return out


def testpmd_rate(tp, port=0):
    """Mean Rx-pps (Mpps) over the measured seconds: after the first block with traffic (partial) and the
    warm-up's blocks."""
    pps = testpmd_pps(tp.out(), port)
    while pps and pps[0] == 0:
        pps.pop(0)
    skip = 1 + math.ceil(WARMUP)
    win = pps[skip:skip + max(1, int(SECONDS))]
    if VERBOSE:
        print(f"bench:     testpmd port {port} Rx-pps {pps}, window {win}", file=sys.stderr, flush=True)
    if not win or max(win) == 0:
        raise RunFail(f"testpmd port {port} received nothing in the measured window (Rx-pps {pps}); {tp.tail()}")
    return statistics.mean(win) / 1e6


def wait_testpmd_traffic(tp, port=0, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not tp.running():
            raise RunFail(f"testpmd exited ({tp.p.returncode}); {tp.tail()}")
        if any(testpmd_pps(tp.out(), port)):
            return
        time.sleep(0.1)
    raise RunFail(f"no traffic at testpmd port {port} within {timeout} s; {tp.tail()}")


class Side:
    """One end of a loopback: impl 'ours' (vhost-pktgen) or 'dpdk' (testpmd), role 'driver' or 'device',
    job 'tx', 'rx' or 'both'."""

    def __init__(self, impl, role, job, iommu=False):
        self.impl, self.role, self.job, self.iommu = impl, role, job, iommu

    def start(self, run, sock, c):
        cpu = CPU_A if self.role == "driver" else CPU_B
        if self.impl == "ours":
            mode = {"tx": "txonly", "rx": "rxonly", "both": "txrx"}[self.job]
            args = ["taskset", "-c", str(cpu), PKTGEN, "--poll",
                    "--frontend" if self.role == "driver" else "--backend", sock, "--mode", mode,
                    "--size", str(buf_len(c["size"])), "--json"]
            if self.job != "tx":  # a receiver measures: warm-up, then the window; a sender runs until stopped
                args += ["--warmup", str(WARMUP), "--duration", str(SECONDS)]
            if self.job != "rx":  # generating: headers only, as testpmd txonly/flowgen (nobody verifies here)
                args.append("--no-payload")
            if not c["mrg"]:
                args.append("--no-mrg")
            if c["packed"] and self.role == "driver":
                args.append("--packed")
            if self.iommu:
                args.append("--iommu")
            self.p = run.start(f"pktgen-{self.role}", args)
        else:
            fwd = {"tx": "txonly", "rx": "rxonly", "both": "flowgen"}[self.job]
            if self.role == "driver":
                vdev = (f"net_virtio_user0,path={sock},queues=1,packed_vq={int(c['packed'])},"
                        f"mrg_rxbuf={int(c['mrg'])},in_order=0")
            else:
                vdev = f"net_vhost0,iface={sock},queues=1" + (",iommu-support=1" if self.iommu else "")
            self.p = run.start(f"testpmd-{self.role}", testpmd_args(cpu, run.prefix(), [vdev], fwd, c["size"],
                                                                    self.role == "driver"))
        return self.p

    def receives(self):
        return self.job in ("rx", "both")

    def rate(self):
        if self.impl == "ours":
            self.p.wait(SECONDS + WARMUP + 30)
            g = pktgen_json(self.p)
            if g["total"]["rx_packets"] == 0 or g["rx_mpps"] <= 0:
                raise RunFail(f"vhost-pktgen ({self.role}) received nothing; {self.p.tail()}")
            if g["total"]["errors"]:
                raise RunFail(f"vhost-pktgen ({self.role}) counted {g['total']['errors']} errors")
            return g["rx_mpps"]
        return testpmd_rate(self.p)


def run_pair(workdir, c, driver, device):
    """A loopback measurement: device side first (it listens), then the driver. Returns (Mpps, commands)."""
    run = Run(workdir)
    try:
        sock = run.sock("lb")
        dev = device.start(run, sock, c)
        wait_path(sock, [dev])
        drv = driver.start(run, sock, c)
        receivers = [s for s in (driver, device) if s.receives()]
        for s in receivers:
            if s.impl == "dpdk":
                wait_testpmd_traffic(s.p)
        if any(s.impl == "dpdk" for s in receivers):
            time.sleep(WARMUP + SECONDS + 2.2)  # the partial first block, the warm-up, the window, one more
        total = sum(s.rate() for s in receivers)
        for p in (drv, dev):
            if not p.running() and p.p.returncode not in (0, None):
                raise RunFail(f"{p.name} exit status {p.p.returncode}; {p.tail()}")
        return total, run.commands
    finally:
        run.close()


# ------------------------------------------------------------------ switches (PVP)

def pvp_pktgen(run, a, b, size, server, latency, flows=None, pps=None):
    """pps: the offered load in frames per second (None: as fast as the sink takes them)."""
    args = ["taskset", "-c", str(CPU_A), PKTGEN, "--poll", "--frontend", a, "--sink", b,
            "--size", str(buf_len(size)), "--warmup", str(WARMUP), "--duration", str(SECONDS), "--json"]
    if pps:
        args += ["--pps", str(pps)]
    if flows:
        # Many flows through a learning switch: the sink announces its MAC so every switch forwards to it as a
        # known address, and the UDP source port runs through `flows` values (flow caches see that many).
        args += ["--flows", str(flows), "--announce"]
    if not latency:
        # The same generator for every switch, as light as it can be: identical frames, written into a buffer only
        # once, so that its one core is spent on the rings and the switch is what gets measured. Without mergeable
        # RX buffers the sink never reads a received header (nothing in it can matter then), so the line the
        # switch wrote it in stays in the switch's cache.
        args += ["--static", "--no-mrg"]
    if server:
        args.append("--server")
    if latency:
        args.append("--latency")
    return run.start("pktgen-pvp", args)


def pvp_result(p, latency):
    p.wait(SECONDS + WARMUP + 60)
    g = pktgen_json(p)
    if g["rx_packets"] == 0:
        raise RunFail(f"the sink received nothing (generator sent {g['tx_packets']}); {p.tail()}")
    if latency:
        return g["latency"]
    return g["rx_mpps"]


# PVP runs: each switch's own count of its forwarding cost, busy cycles per packet, by (case, switch).
SWITCH_CYCLES = {}


def pvp(workdir, size, latency, start_switch, name, server=False, flows=None, case=None):
    """One PVP run: start_switch(run, a, b) brings the switch up with its ports on sockets a and b and returns a
    function that reads the switch's cycles per packet after the traffic; then one vhost-pktgen generates on a and
    counts on b (listening on both with server)."""
    run = Run(workdir)
    try:
        a, b = run.sock("a"), run.sock("b")
        cycles = start_switch(run, a, b)
        val = pvp_result(pvp_pktgen(run, a, b, size, server, latency, flows), latency)
        if not latency:
            try:
                c = cycles()
                if c:
                    SWITCH_CYCLES.setdefault((case or f"PVP {size}B", name), []).append(c)
            except (RunFail, OSError, ValueError, KeyError, subprocess.SubprocessError) as e:
                print(f"bench:     {name}: no cycles per packet: {e}", file=sys.stderr, flush=True)
        return val, run.commands
    finally:
        run.close()  # the switch too: SIGINT, SIGKILL if it hangs, then the run's own cleanups


def start_vhostd(run, a, b, args=("--idle-us", "0")):
    """vhostd on CPU_B with ports a and b; args: how it idles (bench/idle.py tries the others). Its pid goes
    into run.switch_pid."""
    vd = vhdrig.Vhostd(run.dir)
    run.cleanups.append(lambda: vd.stop(signal.SIGINT, 5))  # SIGKILL if it hangs
    vd.start([f"add-port a vhost-user path={a}", f"add-port b vhost-user path={b}"],
             ["--cpus", str(CPU_B), "--threads", "1", *args], log_level="warn",
             wrap=["taskset", "-c", str(CPU_B)])
    run.commands.append(" ".join(vd.cmd))
    run.switch_pid = vd.p.pid  # taskset execs vhostd
    wait_path(b, [vd.p])

    def cycles():
        return float(vd.ctl_json("stats")["threads"][0]["cycles_per_packet"])
    return cycles


def start_testpmd_io(run, a, b):
    tp = run.start("testpmd-io", testpmd_args(CPU_B, run.prefix(), [f"net_vhost0,iface={a},queues=1",
                                                                      f"net_vhost1,iface={b},queues=1"], "io", 64)
                   + ["--record-core-cycles"])
    wait_path(a, [tp])
    wait_path(b, [tp])

    def cycles():
        tp.stop()  # it prints "CPU cycles/packet=..." on the way out
        m = re.search(r"CPU cycles/packet=([\d.]+)", tp.out())
        return float(m[1]) if m else None
    return cycles


def start_ovs(run, a, b, normal=False, other_config=()):
    """OVS-DPDK in a private directory and network namespace (the netdev bridge's internal port is a tap),
    ovs-vswitchd and its PMD thread on CPU_B; its dpdkvhostuserclient ports connect to vhost-pktgen at a and b.
    The one flow in_port=1,actions=output:2, or with normal the bridge's own NORMAL flow (MAC learning, as
    vhostd does). other_config: more Open_vSwitch other_config settings ("key=value", e.g. pmd-maxsleep=500).
    ovs-vswitchd's pid goes into run.switch_pid."""
    d = os.path.join(run.dir, "ovs")
    os.makedirs(d)
    env = dict(os.environ, OVS_RUNDIR=d, OVS_DBDIR=d, OVS_LOGDIR=d, OVS_SYSCONFDIR=d)
    ns = f"bn-ovs-{os.getpid()}-{Run.seq}"
    db = f"unix:{d}/db.sock"

    def sh(*args, timeout=30):
        run.commands.append(" ".join(args))
        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RunFail(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
        return r.stdout

    vhdrig.netns_add(ns)
    run.cleanups.append(lambda: vhdrig.netns_del(ns))
    sh("ovsdb-tool", "create", f"{d}/conf.db", OVS_SCHEMA)
    dbs = run.start("ovsdb-server", ["ovsdb-server", f"{d}/conf.db", f"--remote=punix:{d}/db.sock",
                                     f"--pidfile={d}/ovsdb-server.pid", f"--log-file={d}/ovsdb-server.log",
                                     "--no-chdir"], env)
    wait_path(f"{d}/db.sock", [dbs])
    vsctl = ["ovs-vsctl", f"--db={db}", "--timeout=20"]
    sh(*vsctl, "--no-wait", "init")
    mask = hex(1 << CPU_B)
    sh(*vsctl, "--no-wait", "set", "Open_vSwitch", ".", "other_config:dpdk-init=true",
       f"other_config:dpdk-lcore-mask={mask}", f"other_config:pmd-cpu-mask={mask}",
       "other_config:dpdk-socket-mem=512", "other_config:dpdk-socket-limit=512",
       f"other_config:dpdk-extra=--no-pci --file-prefix={run.prefix()}",
       *(f"other_config:{kv}" for kv in other_config))
    run.switch_pid = run.start("ovs-vswitchd", ["ip", "netns", "exec", ns, "taskset", "-c", str(CPU_B), OVS_VSWITCHD, db,
                               f"--pidfile={d}/ovs-vswitchd.pid", f"--log-file={d}/ovs-vswitchd.log",
                               f"--unixctl={d}/vswitchd.ctl", "--no-chdir"], env).p.pid  # both exec it
    sh(*vsctl, "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev")
    for port, path, ofport in (("a", a, 1), ("b", b, 2)):
        sh(*vsctl, "add-port", "br0", port, "--", "set", "Interface", port, "type=dpdkvhostuserclient",
           f"options:vhost-server-path={path}", f"ofport_request={ofport}")
    if not normal:
        sh("ovs-ofctl", "del-flows", "br0")
        sh("ovs-ofctl", "add-flow", "br0", "in_port=1,actions=output:2")

    def cycles():
        m = re.search(r"avg processing cycles per packet:\s*([\d.]+)", sh("ovs-appctl", "-t", f"{d}/vswitchd.ctl",
                                                                           "dpif-netdev/pmd-stats-show"))
        return float(m[1]) if m else None
    return cycles


# ------------------------------------------------------------------ latency through an echoing back-end

def echo_latency(workdir, impl):
    run = Run(workdir)
    try:
        sock = run.sock("echo")
        if impl == "ours":
            dev = run.start("pktgen-macswap", ["taskset", "-c", str(CPU_B), PKTGEN, "--poll", "--backend", sock,
                                               "--mode", "macswap"])
        else:
            dev = run.start("testpmd-macswap", testpmd_args(CPU_B, run.prefix(),
                                                            [f"net_vhost0,iface={sock},queues=1"], "macswap", 64))
        wait_path(sock, [dev])
        p = run.start("pktgen-latency", ["taskset", "-c", str(CPU_A), PKTGEN, "--poll", "--frontend", sock,
                                         "--mode", "txonly", "--latency", "--size", "60", "--warmup", str(WARMUP),
                                         "--duration", str(SECONDS), "--json"])
        p.wait(SECONDS + WARMUP + 60)
        g = pktgen_json(p)
        if not g.get("latency", {}).get("samples"):
            raise RunFail(f"no frame came back; {p.tail()}")
        return g["latency"], run.commands
    finally:
        run.close()


# ------------------------------------------------------------------ the matrix

# A case: (label, frame size, {side: fn(workdir) -> (value, commands)}, [(row label, ours side, peer side)]).
# Its sides run in turn, BENCH_REPEAT times; each row of the table compares two of them.

def loopback_cases():
    dirs = [("guest TX", "tx", "rx"), ("guest RX", "rx", "tx"), ("both ways", "both", "both")]
    sizes, layouts, mrgs = SIZES, [False, True], [True, False]
    if QUICK:
        sizes, layouts, mrgs = SIZES[:1], [False, True], [True]
    out = []
    for name, jd, jv in dirs:
        for size in sizes:
            for packed in layouts:
                for mrg in mrgs:
                    c = {"size": size, "packed": packed, "mrg": mrg}
                    label = f"{name} {size}B {'packed' if packed else 'split'} mrg {'on' if mrg else 'off'}"
                    sides = {"ours": lambda w, c=c, jd=jd, jv=jv: run_pair(w, c, Side("ours", "driver", jd),
                                                                          Side("ours", "device", jv)),
                             "dpdk": lambda w, c=c, jd=jd, jv=jv: run_pair(w, c, Side("dpdk", "driver", jd),
                                                                          Side("dpdk", "device", jv))}
                    out.append((label, size, sides, [(label, "ours", "dpdk")]))
    return out


def cross_cases():
    """Each configuration: DPDK on both sides, DPDK's driver on our device, our driver on DPDK's device."""
    out = []
    sizes = SIZES[:1] if QUICK else SIZES
    layouts = [False] if QUICK else [False, True]
    for name, jd, jv in [("guest TX", "tx", "rx"), ("guest RX", "rx", "tx")]:
        for size in sizes:
            for packed in layouts:
                c = {"size": size, "packed": packed, "mrg": True}
                label = f"{name} {size}B {'packed' if packed else 'split'}"
                pair = lambda drv, dev, c=c, jd=jd, jv=jv: (
                    lambda w: run_pair(w, c, Side(drv, "driver", jd), Side(dev, "device", jv)))
                sides = {"dpdk": pair("dpdk", "dpdk"), "our-device": pair("dpdk", "ours"),
                         "our-driver": pair("ours", "dpdk")}
                out.append((label, size, sides,
                            [(f"DPDK virtio-user -> our back-end, {label}", "our-device", "dpdk"),
                             (f"our frontend -> DPDK vhost, {label}", "our-driver", "dpdk")]))
    return out


def iommu_cases():
    """Our IOMMU frontend against our back-end and DPDK's, and against ours without the IOTLB."""
    out = []
    for name, jd, jv in [("guest TX", "tx", "rx"), ("guest RX", "rx", "tx")]:
        for size in SIZES[:1] if QUICK else SIZES:
            c = {"size": size, "packed": False, "mrg": True}
            label = f"{name} {size}B split"
            pair = lambda dev, iommu, c=c, jd=jd, jv=jv: (
                lambda w: run_pair(w, c, Side("ours", "driver", jd, iommu), Side(dev, "device", jv, iommu)))
            sides = {"ours-iotlb": pair("ours", True), "dpdk-iotlb": pair("dpdk", True), "ours": pair("ours", False)}
            out.append((label, size, sides,
                        [(f"{label}: our back-end vs DPDK vhost, both with the IOTLB", "ours-iotlb", "dpdk-iotlb"),
                         (f"{label}: our back-end with the IOTLB vs without", "ours-iotlb", "ours")]))
    return out


def pvp_sides(size, latency, flows=None, case=None):
    """The three switches of one PVP case: as they are, or with flows through learning switches (OVS with its
    bridge's NORMAL flow instead of the one rule)."""
    ovs = (lambda r, a, b: start_ovs(r, a, b, normal=True)) if flows else start_ovs
    return {"vhostd": lambda w: pvp(w, size, latency, start_vhostd, "vhostd", flows=flows, case=case),
            "testpmd-io": lambda w: pvp(w, size, latency, start_testpmd_io, "testpmd-io", flows=flows, case=case),
            "OVS-DPDK": lambda w: pvp(w, size, latency, ovs, "OVS-DPDK", server=True, flows=flows, case=case)}


def switch_cases(latency=False):
    out = []
    for size in [64] if latency else SIZES[:1] if QUICK else SIZES:
        sides = pvp_sides(size, latency)
        what = "one way through the switch" if latency else "PVP"
        out.append((f"{what} {size}B", size, sides,
                    [(f"{what} {size}B, vhostd vs testpmd-io", "vhostd", "testpmd-io"),
                     (f"{what} {size}B, vhostd vs OVS-DPDK", "vhostd", "OVS-DPDK")]))
    if latency:
        return out
    # An L2 switch's usual work: the destination is a learned address, the traffic many flows. vhostd and OVS
    # (its NORMAL action) both learn; testpmd io, which neither learns nor looks at the frames, is the floor.
    for size, flows in [] if QUICK else [(z, f) for z in SIZES for f in FLOWS]:
        case = f"PVP {size}B learned MAC, {flows} flow{'s' if flows > 1 else ''}"
        out.append((case, size, pvp_sides(size, False, flows, case),
                    [(f"{case}, vhostd vs testpmd-io", "vhostd", "testpmd-io"),
                     (f"{case}, vhostd vs OVS-DPDK (NORMAL)", "vhostd", "OVS-DPDK")]))
    return out


def start_kernel_ports(kind):
    """A start_switch for pvp(): A -> vhostd -> `kind` port on veth end bxa ~ bxb -> `kind` port -> vhostd -> B."""
    def start(run, a, b):
        ns = f"bnx{os.getpid()}r{Run.seq}"
        vhdrig.netns_add(ns)
        run.cleanups.append(lambda: vhdrig.netns_del(ns))

        def sh(*args):
            vhdrig.run(["ip", "netns", "exec", ns, *args])
        sh("ip", "link", "add", "bxa", "type", "veth", "peer", "name", "bxb")
        sh("ip", "link", "set", "bxa", "up")
        sh("ip", "link", "set", "bxb", "up")
        vds = []
        for i, (sock, ifname) in enumerate(((a, "bxa"), (b, "bxb"))):
            vd = vhdrig.Vhostd(os.path.join(run.dir, f"vhostd{i}"), ns)
            os.makedirs(vd.dir)
            run.cleanups.append(lambda vd=vd: vd.stop(signal.SIGINT, 5))  # SIGKILL if it hangs
            vd.start([f"add-port v vhost-user path={sock}", f"add-port k {kind} ifname={ifname}"],
                     ["--cpus", str(CPU_B), "--threads", "1"], log_level="warn", wrap=["taskset", "-c", str(CPU_B)])
            run.commands.append(" ".join(vd.cmd))
            wait_path(sock, [vd.p])
            vds.append(vd)
        if kind == "af_xdp":
            modes = [p["info"].get("mode") for p in vds[1].ctl_json("show")["ports"] if p["name"] == "k"]
            if modes != ["native"]:
                raise RunFail(f"af_xdp port not in native mode: {modes}")
        return lambda: None
    return start


def kernel_cases():
    out = []
    for size in SIZES[:1] if QUICK else SIZES:
        sides = {k: (lambda w, k=k: pvp(w, size, False, start_kernel_ports(k), k)) for k in ("af_xdp", "af_packet")}
        out.append((f"veth PVP {size}B", size, sides, [(f"veth PVP {size}B, af_xdp vs af_packet", "af_xdp",
                                                        "af_packet")]))
    return out


def cycles_table():
    """Each switch's own figure for what forwarding costs it: cycles spent in polling rounds that moved packets,
    divided by those packets (vhostd's `vhostctl stats`, testpmd --record-core-cycles, OVS pmd-stats-show's
    "avg processing cycles per packet"). Unlike the PVP rate, this does not stop at the generator's limit."""
    lines = ["### Switch cost per packet (each switch's own count; lower is better)", "",
             "Busy cycles (TSC) per forwarded packet over the PVP runs above: vhostd `vhostctl stats` (threads), "
             "testpmd `--record-core-cycles` (\"CPU cycles/packet\"), OVS-DPDK `ovs-appctl dpif-netdev/pmd-stats-show` "
             "(\"avg processing cycles per packet\"). Each counts the cycles of polling rounds that received "
             "something, so the figure is the switch's cost even where the PVP rate is the generator's limit. "
             "peer/ours > 1: vhostd forwards a packet in fewer cycles.", "",
             "| case | vhostd cycles/pkt median [min–max] | peer | peer cycles/pkt median [min–max] | peer/ours |",
             "|---|---|---|---|---|"]
    points = []

    def cyc(v):
        return f"{med(v):.0f} [{min(v):.0f}–{max(v):.0f}]" if v else "FAILED"
    for case in dict.fromkeys(k[0] for k in SWITCH_CYCLES):  # in the order the cases ran
        ours = SWITCH_CYCLES.get((case, "vhostd"), [])
        for peer in ("testpmd-io", "OVS-DPDK"):
            pv = SWITCH_CYCLES.get((case, peer), [])
            q = med(pv) / med(ours) if ours and pv else None
            lines.append(f"| {case} | {cyc(ours)} | {peer} | {cyc(pv)} | "
                         f"{f'{q:.2f}' if q else 'FAILED'} |")
            if q:
                points.append((f"switch: cycles/packet {case}, vhostd vs {peer}", q))
    if not SWITCH_CYCLES:
        lines.append("| (no switch reported its cycles) | | | | |")
    return lines, points


def latency_cases():
    return [("echo 64B", 64, {"ours": lambda w: echo_latency(w, "ours"), "dpdk": lambda w: echo_latency(w, "dpdk")},
             [("echo 64B: back-end macswap, ours vs testpmd net_vhost", "ours", "dpdk")])] + switch_cases(True)


class Result:
    def __init__(self, label, size, keys):
        self.label, self.size = label, size
        self.vals = {k: [] for k in keys}
        self.fails = {k: [] for k in keys}
        self.commands = {}


def run_case(workdir, label, size, sides):
    r = Result(label, size, sides)
    order = list(sides.items())
    for i in range(REPEAT):
        # Every side once per round, the order rotated each round, so drift lands on all of them.
        k = i % len(order)
        for side, fn in order[k:] + order[:k]:
            try:
                v, cmds = fn(workdir)
                r.vals[side].append(v)
                r.commands.setdefault(side, cmds)
                shown = (f"p50 {v['p50_us']:.1f} us, p99 {v['p99_us']:.1f} us" if isinstance(v, dict)
                         else f"{v:.3f} Mpps")
                print(f"bench:   {side}: {shown}", file=sys.stderr, flush=True)
            except (RunFail, OSError, subprocess.SubprocessError) as e:
                r.fails[side].append(str(e))
                print(f"bench: {label} ({side}): FAILED: {e}", file=sys.stderr, flush=True)
    return r


# ------------------------------------------------------------------ tables

def med(v):
    return statistics.median(v)


def failed_note(r, side):
    return f" ({len(r.fails[side])} of {REPEAT} FAILED)" if r.fails[side] else ""


def cell(r, side):
    v = r.vals[side]
    if not v:
        return "FAILED", "FAILED"
    return (f"{med(v):.3f} [{min(v):.3f}–{max(v):.3f}]{failed_note(r, side)}",
            f"{med(v) * r.size * 8 / 1000:.2f}")


def ratio(r, ours, peer, key=lambda v: v):
    """ours/peer of the medians, or None (FAILED) unless every run of both sides worked."""
    if not r.vals[ours] or not r.vals[peer] or r.fails[ours] or r.fails[peer]:
        return None
    return med([key(v) for v in r.vals[ours]]) / med([key(v) for v in r.vals[peer]])


def paired(r, ours, peer, key=lambda v: v):
    """The run-by-run ratios: run i of each side is from the same round, seconds apart, so the vCPU placement the
    host chose (which moves the absolute figures by 2-3x, see the min–max columns) is mostly the same for both.
    Their median with min–max, or None under the same condition as ratio()."""
    if ratio(r, ours, peer, key) is None or len(r.vals[ours]) != len(r.vals[peer]):
        return None
    q = [key(o) / key(p) for o, p in zip(r.vals[ours], r.vals[peer]) if key(p) > 0]
    return (med(q), min(q), max(q)) if q else None


def fmt_paired(q):
    return "FAILED" if q is None else f"{q[0]:.2f} [{q[1]:.2f}–{q[2]:.2f}]"


def fmt_ratio(q):
    return "FAILED" if q is None else f"{q:.2f}"


def rate_table(title, rows, peer_name):
    lines = [f"### {title}", "",
             f"| case | ours Mpps median [min–max] | ours Gbit/s | {peer_name} Mpps median [min–max] | "
             f"{peer_name} Gbit/s | ours/peer | run by run [min–max] |", "|---|---|---|---|---|---|---|"]
    for label, r, ours, peer in rows:
        om, og = cell(r, ours)
        pm, pg = cell(r, peer)
        lines.append(f"| {label} | {om} | {og} | {pm} | {pg} | {fmt_ratio(ratio(r, ours, peer))} | "
                     f"{fmt_paired(paired(r, ours, peer))} |")
    return lines


def lat_cell(r, side):
    v = r.vals[side]
    if not v:
        return "FAILED"
    p50 = [x["p50_us"] for x in v]
    p99 = [x["p99_us"] for x in v]
    return (f"{med(p50):.1f} [{min(p50):.1f}–{max(p50):.1f}] / {med(p99):.1f} [{min(p99):.1f}–{max(p99):.1f}]"
            f"{failed_note(r, side)}")


def p50(v):
    return v["p50_us"]


def latency_table(rows):
    lines = ["### Latency (µs, p50 / p99; median [min–max] over the runs; lower is better)", "",
             "| case | ours p50 / p99 | peer p50 / p99 | p50 ours/peer |", "|---|---|---|---|"]
    for label, r, ours, peer in rows:
        lines.append(f"| {label} | {lat_cell(r, ours)} | {lat_cell(r, peer)} | "
                     f"{fmt_ratio(ratio(r, ours, peer, p50))} |")
    return lines


def ring_group():
    """ringbench --json: one line per layout and size, with the SPSC reference's numbers and the ratio."""
    args = [RINGBENCH, "--json", "--duration", str(min(SECONDS, 2.0) if QUICK else SECONDS), "--warmup",
            str(min(WARMUP, 0.5)), "--reps", str(REPEAT), "--cpus", f"{CPU_A},{CPU_B}", "--size", "64,1518"]
    lines = ["### Ring micro-benchmark (bench/ringbench: virtqueue vs plain SPSC pointer ring, Mpps)", "",
             f"`{' '.join(['bench/ringbench'] + args[1:])}`", "",
             "| case | virtqueue Mpps median [min–max] | SPSC Mpps median [min–max] | virtqueue/SPSC |",
             "|---|---|---|---|"]
    ratios = []
    r = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    rows = []
    for line in r.stdout.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass
    if r.returncode != 0 or not rows:
        lines.append(f"| ringbench | FAILED (exit {r.returncode}: {r.stderr.strip()[-300:]}) | | FAILED |")
    for j in rows:
        name = f"{j['layout']} {j['size']}B"
        if j.get("error"):
            lines.append(f"| {name} | FAILED | FAILED | FAILED |")
            continue
        m, s = j["mpps"], j["spsc_mpps"]
        lines.append(f"| {name} | {m['median']:.2f} [{m['min']:.2f}–{m['max']:.2f}] | "
                     f"{s['median']:.2f} [{s['min']:.2f}–{s['max']:.2f}] | {j['ratio']:.2f} |")
        ratios.append((f"ring {name}", j["ratio"]))
    return lines, ratios


# ------------------------------------------------------------------ machine, doc, chart

def cmd_out(args):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine():
    model = re.search(r"Model name:\s*(.+)", cmd_out(["lscpu"]))
    ver = lambda p: cmd_out(["dpkg-query", "-W", "-f=${Version}", p]) or "not installed"
    return [f"- CPU: {model[1] if model else '?'}, {os.cpu_count()} CPUs; kernel {os.uname().release}",
            f"- DPDK {ver('dpdk')} (dpdk-testpmd), Open vSwitch {ver('openvswitch-switch-dpdk')} "
            f"(ovs-vswitchd-dpdk), QEMU {ver('qemu-system-x86')} (not used here)",
            f"- vhostd commit {cmd_out(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'])}, "
            f"build {os.path.relpath(BUILD, ROOT) if BUILD.startswith(ROOT) else BUILD}",
            f"- load average (1, 5, 15 min) when the run started: {LOAD0}; when it ended: "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"]


def chart(points):
    """Bar chart of ours/peer per case with the target lines; returns a sentence for the doc."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "The chart was skipped: matplotlib is missing (Debian: python3-matplotlib)."
    if not points:
        return "The chart was skipped: no ratio to draw."
    fig, ax = plt.subplots(figsize=(12, max(4, 0.28 * len(points) + 1.5)))
    labels = [p[0] for p in points]
    vals = [p[1] for p in points]
    ax.barh(range(len(points)), vals, color=["tab:green" if v >= 1 else "tab:orange" for v in vals])
    ax.set_yticks(range(len(points)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    for (name, v, _), style in zip(TARGETS, ["-", "--", ":"]):
        ax.axvline(v, color="k", linestyle=style, linewidth=1, label=f"target: {name}")
    ax.set_xlabel("ours / peer (throughput; > 1: ours faster)")
    ax.set_title(f"vhostd vs DPDK / OVS-DPDK, {time.strftime('%Y-%m-%d')} (only same-run ratios count)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(CHART), exist_ok=True)
    fig.savefig(CHART, dpi=110)
    plt.close(fig)
    return f"Chart: [{os.path.basename(CHART)}]({os.path.basename(CHART)}) (ratios ours/peer with the targets)."


def commands_section(all_results):
    lines = ["## Exact commands", "",
             "The first good run of each side of each case ran these (sockets and DPDK file prefixes are per run; "
             "`taskset` pins each side to its CPU):", ""]
    for r in all_results:
        for side in r.vals:
            if side in r.commands:
                lines.append(f"- {r.label} — {side}:")
                lines += [f"  - `{c}`" for c in r.commands[side]]
    return lines


def failures_section(all_results):
    lines = []
    for r in all_results:
        for side in r.vals:
            for f in r.fails[side]:
                lines.append(f"- {r.label} ({side}): {f[:600]}")
    return (["## Failed runs", ""] + lines) if lines else ["## Failed runs", "", "None."]


# ------------------------------------------------------------------ main

def on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


LOAD0 = " ".join(f"{x:.2f}" for x in os.getloadavg())


def replot(doc):
    """compare.py --replot DOC: draw the chart again from the tables of a written doc (e.g. after installing
    matplotlib), and put the chart's line in place of the old one."""
    with open(doc) as f:
        text = f.read()
    points, key = [], None
    keys = {"### Loopback": "loopback", "### Cross": "cross", "### Switch": "switch", "### Ring": "ring",
            "### Kernel": "kernel"}
    for line in text.splitlines():
        if line.startswith("### "):
            key = next((k for h, k in keys.items() if line.startswith(h)), None)
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if key and line.startswith("| ") and re.fullmatch(r"\d+\.\d+", cols[-1]):
            points.append((f"ring {cols[0]}" if key == "ring" else f"{key}: {cols[0]}", float(cols[-1])))
    said = chart(points)
    text = re.sub(r"^(The chart was skipped.*|Chart: .*)$", lambda m: said, text, count=1, flags=re.M)
    with open(doc, "w") as f:
        f.write(text)
    print(said)
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--replot":
        return replot(sys.argv[2])
    if not BUILD or not os.access(PKTGEN, os.X_OK):
        print("usage: compare.py BUILD_DIR (with tools/vhost-pktgen built)", file=sys.stderr)
        return 2
    bad = [g for g in ONLY if g not in GROUPS and g != "idle"]  # idle: bench/idle.py's, run by bench/run.sh
    if bad:
        print(f"bench: unknown BENCH_ONLY group(s) {bad}; known: {','.join(GROUPS)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGHUP, on_sigterm)
    missing = [t for t in (TESTPMD, "ovsdb-server", "ovs-vsctl", "ovs-ofctl", OVS_VSWITCHD, "taskset")
               if shutil.which(t) is None]
    if missing:
        print(f"bench: missing {missing}: scripts/deps.sh bench installs them; their cases will fail",
              file=sys.stderr)
    err = vhdrig.prepare_hugepages(HUGE_WANT)
    if err:
        print(f"bench: hugepages: {err}; the DPDK and OVS cases will fail", file=sys.stderr)
    t0 = time.time()
    workdir = tempfile.mkdtemp(prefix="bn-bench-")
    doc = []
    points = []
    all_results = []
    failed_cells = 0
    try:
        groups = [("loopback", "Loopback: vhost-pktgen frontend/back-end (ours) vs testpmd virtio_user/net_vhost",
                   loopback_cases, "DPDK"),
                  ("cross", "Cross pairs: one side ours vs DPDK on both sides (the other side is DPDK's)",
                   cross_cases, "DPDK-DPDK"),
                  ("switch", "Switch, PVP (Mpps at the sink; generator and sink on one CPU, the switch on the other)",
                   switch_cases, "peer"),
                  ("latency", None, latency_cases, None),
                  ("kernel", "Kernel ports on a veth pair, PVP through two vhostd (Mpps at the sink): af_xdp (ours) "
                   "vs af_packet", kernel_cases, "af_packet"),
                  ("iommu", "Device IOTLB: our frontend with --iommu (warm: all mapped up front) driving a back-end "
                   "with ACCESS_PLATFORM", iommu_cases, "peer")]
        for key, title, cases, peer in groups:
            if key not in ONLY:
                continue
            rows = []
            for label, size, sides, case_rows in cases():
                print(f"bench: {key}: {label}", flush=True)
                r = run_case(workdir, label, size, sides)
                all_results.append(r)
                rows += [(rl, r, o, p) for rl, o, p in case_rows]
            if key == "latency":
                table = latency_table(rows)
                failed_cells += sum(1 for _, r, o, p in rows if ratio(r, o, p, p50) is None)
            else:
                table = rate_table(title, rows, peer)
                for rl, r, o, p in rows:
                    q = ratio(r, o, p)
                    if q is None:
                        failed_cells += 1
                    else:
                        points.append((f"{key}: {rl}", q))
            if key == "switch":
                ctable, cpoints = cycles_table()
                table += [""] + ctable
                points += cpoints
            print("\n".join(table) + "\n", flush=True)
            doc += table + [""]
        if "ring" in ONLY:
            print("bench: ring", flush=True)
            table, ratios = ring_group()
            failed_cells += sum(1 for l in table if "FAILED" in l)
            points += ratios
            print("\n".join(table) + "\n", flush=True)
            doc += table + [""]
    except KeyboardInterrupt as e:
        print(f"bench: interrupted ({e}); processes stopped", file=sys.stderr)
        for p in vhdrig.Proc.all:
            p.kill()
        return 130
    finally:
        for p in vhdrig.Proc.all:
            if p.running():
                p.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    # Only the load before the run says whether something else was running: during it the two sides alone
    # make it about 2.
    busy = float(LOAD0.split()[0]) > 0.5
    head = ["# Benchmarks: vhostd against DPDK and OVS-DPDK", "",
            f"Written by `bench/compare.py` (`make bench`) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(t0))}, "
            f"{(time.time() - t0) / 60:.0f} minutes; BENCH_REPEAT={REPEAT}, BENCH_SECONDS={SECONDS:g}, "
            f"BENCH_WARMUP={WARMUP:g}{', BENCH_QUICK=1 (smoke matrix)' if QUICK else ''}"
            f"{', BENCH_ONLY=' + ','.join(ONLY) if ONLY != GROUPS else ''}.", "",
            "Idle CPU and low-rate latency (vhostd's adaptive idle and --poll beside OVS-DPDK with and without "
            "pmd-maxsleep, chart docs/idle.png) are bench/idle.py's: docs/performance.md, \"Adaptive idle\".", ""]
    if busy:
        head += [f"**The machine was not idle when the run started** (1-minute load average {LOAD0.split()[0]}): "
                 "something else was running or had just finished; the absolute figures are noisy, compare only "
                 "the ratios, and only within this run.", ""]
    head += ["The two CPUs are virtual and the host moves them: the same binaries can differ by a factor of 2-3 "
             "from one run to the next (see the min–max columns). Ours and the peer alternate run by run, which "
             "is why only same-run ratios mean anything.", ""]
    env = " ".join(f"{k}={os.environ[k]}" for k in sorted(os.environ) if k.startswith("BENCH_") and
                   k not in ("BENCH_DOC", "BENCH_CHART"))
    head += [f"Reproduce: `{env + ' ' if env else ''}make bench` (as root; `scripts/deps.sh bench` installs "
             "DPDK, OVS-DPDK, matplotlib, perf, valgrind).", ""]
    head += ["Only ratios measured in the same run count: ours and the peer alternate case by case on the same "
             "machine, pinned the same way; absolute figures from different runs or machines are not comparable.",
             "", "## Machine", ""] + machine() + [
             "", "## Method", "",
             f"- One CPU per side: CPU {CPU_A} for the driver / generator (vhost-pktgen, testpmd virtio_user), "
             f"CPU {CPU_B} for the device / switch (vhost-pktgen --backend, testpmd net_vhost, vhostd, "
             f"ovs-vswitchd and its PMD). testpmd runs `--lcores 0@C,1@C` (main and forwarding lcore share C).",
             "- Each run: start, wait for traffic, a warm-up that is not counted, then the measured window; the "
             "rate is taken at the receiver (vhost-pktgen `--json` rx_mpps; testpmd's per-second Rx-pps averaged "
             "over the window). Both ways: the two receivers' rates added (vhost-pktgen `--mode txrx` on both "
             "sides versus testpmd `flowgen`, which also receives and counts, on both sides).",
             "- ours/peer is the ratio of the two medians; \"run by run\" is the median [min–max] of the ratios of "
             "run i of ours to run i of the peer, taken in the same round seconds apart, so mostly in the same vCPU "
             "placement: it shows how much of the spread is the machine's and how much the stacks'.",
             "- Sizes include the 4-byte FCS (64 B = 60 bytes in the buffer); Gbit/s = Mpps × size × 8.",
             "- Generators write headers only: vhost-pktgen `--no-payload` (headers and its 12-byte stamp), testpmd "
             "txonly/flowgen (headers); the payload is whatever the buffer holds. Both copy every byte of every frame "
             "through the rings. The PVP generator uses `--static` (every frame the same, written into each buffer "
             "once) and `--no-mrg` (the sink then reads no received header), the same generator for every switch, so "
             "that its core goes to the rings rather than to frames.",
             "- IN_ORDER off on both stacks (testpmd virtio_user `in_order=0`); mergeable RX buffers as in the case.",
             "- Switch: vhostd `--threads 1 --cpus B --idle-us 0` with two vhost-user ports; testpmd `io` between "
             "two net_vhost ports; OVS-DPDK: private ovsdb-server/ovs-vswitchd (own db, OVS_RUNDIR, own network "
             "namespace for the bridge's tap), dpdk-init, PMD and lcore mask = CPU B, a netdev bridge with two "
             "dpdkvhostuserclient ports (vhost-pktgen listens with `--server`) and the one flow "
             "`in_port=1,actions=output:2`. Generated frames go to MAC 02:00:00:00:00:02, which vhostd never "
             "learns (the sink sends nothing) and floods to the only other port.",
             "- Switch through learning switches (\"learned MAC, N flows\"): the sink announces its MAC with one "
             "broadcast before generation starts (vhost-pktgen `--announce`), so vhostd and OVS-DPDK both forward "
             "to a learned address; OVS keeps the bridge's own NORMAL flow (MAC learning, what vhostd does) instead "
             "of the one-rule flow table; the generator spreads the frames over N UDP source ports "
             "(`--flows N`; with N > 1 it then writes each frame's first line, as a real sender does, so every "
             "switch's first read of a frame misses in the generator's cache: docs/performance.md). "
             "N = 10000 is more flows than OVS's exact-match cache keeps, the usual case on a busy host; testpmd "
             "io, which neither learns nor looks at frames, is the floor.",
             "- Latency: vhost-pktgen `--latency` keeps one frame in flight, CLOCK_MONOTONIC; echo = round trip, "
             "switch = one way (sent on A, seen on B, same process).", "", "## Results", ""]
    doc = head + doc + [chart(points), ""] + failures_section(all_results) + [""] + commands_section(all_results)
    os.makedirs(os.path.dirname(DOC), exist_ok=True)
    with open(DOC, "w") as f:
        f.write("\n".join(doc) + "\n")
    print(f"bench: wrote {DOC}" + (f" and {CHART}" if os.path.exists(CHART) else ""))
    print(f"bench: {failed_cells} case(s) FAILED" if failed_cells else "bench: no case FAILED")
    return 1 if failed_cells else 0


if __name__ == "__main__":
    sys.exit(main())
