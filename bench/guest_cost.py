#!/usr/bin/env python3
"""Instructions per frame (callgrind) of our processes over every transport, inside the Debian 6.12 guest (the
host kernel has no vhost_net, vhost_vdpa or vduse; times inside a TCG guest mean nothing, instruction counts
do). One boot; valgrind goes into the guest's payload with our binaries.

Two kinds of rows, 64-byte frames:
  frontend  vhost-pktgen --frontend under callgrind, the device native: a vhost-pktgen back-end (vhost-user),
            the kernel's vhost-net worker and a tap (vhost-kernel), the kernel's vdpa_sim_net (vhost-vdpa), our
            VDUSE device bound to vhost_vdpa (vhost-vdpa -> VDUSE)
  device    the device process under callgrind, driven by a native vhost-pktgen --frontend doing the same work:
            vhost-pktgen --backend (vhost-user) against vhost-pktgen --vduse bound to vhost_vdpa (the frontend
            reaches it through /dev/vhost-vdpa-N), split and packed rings
Work: txonly (the frontend sends, the device counts and drops: rxonly) and echo (the frontend sends with
--verify --latency --window 64 and checks each frame coming back; the device sends each one back: io).
vhost-kernel has no echo (nothing in the guest's kernel sends a tap's frames back without modules its initrd
lacks) and vdpa_sim_net no txonly (it loops every frame back; unread, its RX ring overruns on every frame and
the run crawls).

Each cell runs with N1 and N2 frames (both sides --count N) and (I2 - I1) / (N2 - N1) is printed, so start-up,
negotiation and teardown cancel out; what remains is the data path per frame with its polling. Polling while the
other side is late is counted too, and how late it is depends on the host's load (the guest's vCPUs are threads
of a TCG QEMU): a wait in the N2 run raises the figure, one in the N1 run lowers it. Each cell is measured
REPEAT times; take the median of several and give the spread.

usage: bench/guest_cost.py BUILD_DIR [N1 N2 [REPEAT]]     (prints a markdown table; default 300 900 2)
GUEST_COST_ONLY=frontend or =device measures only those rows.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "lib"))
import vhdrig  # noqa: E402
from vhdrig import callgrind, expect  # noqa: E402

B = sys.argv[1] if len(sys.argv) > 1 else sys.exit(__doc__)
N1, N2 = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (300, 900)
REPEAT = int(sys.argv[4]) if len(sys.argv) > 4 else 2
vhdrig.configure(vhostd=f"{B}/tools/vhostd", pktgen=f"{B}/tools/vhost-pktgen")
PG = None  # vhost-pktgen's path, set in main()
SLOW_PEER = "--msg-timeout 120000"
WORK = {"txonly": ("--mode txonly", "rxonly"), "echo": ("--mode txonly --verify --latency --window 64", "io")}
TRANSPORTS = ["vhost-user", "vhost-kernel", "vhost-vdpa (vdpa_sim_net)", "vhost-vdpa -> VDUSE"]
# (measured side, work, ring, transport): frontend rows first, then the devices.
CELLS = [("frontend", w, "split", t) for w, ts in (("txonly", (0, 1, 3)), ("echo", (0, 2, 3))) for t in ts] + \
        [("device", w, r, t) for r in ("split", "packed") for w in ("txonly", "echo") for t in (0, 3)]
CELLS = [c for c in CELLS if os.environ.get("GUEST_COST_ONLY", c[0]) == c[0]]


class Run:
    """One measurement: a device (started first, if it is a process) and a frontend, one of them under
    callgrind, both for n frames."""
    seq = 0

    def __init__(self, g, side, work, ring, transport, n):
        Run.seq += 1
        self.g, self.n, self.k = g, n, Run.seq
        self.side, self.transport = side, transport
        fe_args, self.dev_mode = WORK[work]
        self.packed = " --packed" if ring == "packed" else ""
        self.fe_args = f"{fe_args} --count {n}{self.packed}"
        self.out = f"/tmp/cg.{self.k}"

    def wrap(self, side, command):
        return callgrind(command, self.out) if side == self.side else command

    def device(self):
        """Start the device process, if any; @return (its job or None, the path the frontend drives)."""
        t = TRANSPORTS[self.transport]
        if t == "vhost-kernel":
            return None, "/dev/vhost-net --tap vk0"
        if t.startswith("vhost-vdpa (vdpa_sim"):
            return None, self.g.sim
        if t == "vhost-user":
            sock = f"/tmp/be.{self.k}.sock"
            # A side under callgrind on a loaded host can take seconds over a message: past --msg-timeout its
            # peer would hang up and set up again, counted in one run and not in the other.
            self.fe_args += f" {SLOW_PEER}"
            job = self.g.start(self.wrap("device", f"{PG} --backend {sock} --mode {self.dev_mode} --count {self.n} "
                                                   f"{SLOW_PEER}"))
            rc, out = self.g.cmd(f"for i in $(seq 1200); do [ -S {sock} ] && break; sleep 0.1; done; [ -S {sock} ]",
                                 timeout=180)
            expect(rc == 0, f"no back-end socket {sock}: {job.lines()[-5:]}")
            return job, sock
        name = f"vd{self.k}"  # a new name each time: a device is gone only once its vhost-vdpa node is closed
        job = self.g.start(self.wrap("device", f"{PG} --vduse {name} --mode {self.dev_mode} --count {self.n}"
                                               f"{self.packed}"))
        return job, vdpa_node(self.g, name, job)

    def instructions(self):
        job, path = self.device()
        rc, out = self.g.cmd(self.wrap("frontend", f"{PG} --frontend {path} {self.fe_args}") +
                             f" >{self.out}.fe 2>&1; echo VHD-FE $?; tail -4 {self.out}.fe", timeout=3600)
        st = [x for x in out if x.startswith("VHD-FE ")]
        # Exit 1: --verify counted frames missing (under callgrind one may outlive --latency's 50 ms); the work
        # per frame sent is still what is measured.
        expect(rc == 0 and st and st[0] in ("VHD-FE 0", "VHD-FE 1"), f"frontend over {path}: {out[-6:]}")
        if job:
            jrc, jout = job.wait(600)
            expect(jrc == 0, f"device for {path} exited {jrc}: {jout[-5:]}")
        return self.g.instructions(self.out)


def vdpa_node(g, name, job):
    """/dev/vhost-vdpa-N of vDPA device name once vhost_vdpa has bound it."""
    rc, out = g.cmd(f"for i in $(seq 1800); do d=$(ls -d /sys/bus/vdpa/devices/{name}/vhost-vdpa-* 2>/dev/null) "
                    f"&& break; sleep 0.1; done; echo VHD-NODE ${{d##*/}}", timeout=240)
    node = [x.split()[1] for x in out if x.startswith("VHD-NODE ") and len(x.split()) > 1]
    expect(rc == 0 and node, f"{name}: no vhost-vdpa node: {out[-3:]} {job.lines()[-5:] if job else ''}")
    return f"/dev/{node[0]}"


def main():
    global PG
    PG = vhdrig.PKTGEN
    for err in (vhdrig.callgrind_missing(), vhdrig.prepare_guest()):
        if err:
            sys.exit(f"guest_cost: {err}")
    scratch = vhdrig.Scratch("guest_cost")
    g = vhdrig.Guest(scratch, "cost", None, None, payload=[PG, "/usr/sbin/vdpa"] + vhdrig.CALLGRIND, mem="1G",
                     smp=2).boot()
    results, failed = {}, set()
    try:
        g.wait_agent()
        # virtio_vdpa stays unloaded, so that vhost_vdpa binds every vDPA device (VDUSE ones included).
        rc, out = g.cmd("modprobe tun && modprobe vhost_net && modprobe vdpa_sim_net && modprobe vhost_vdpa && "
                        "modprobe vduse && /usr/sbin/vdpa dev add name sim0 mgmtdev vdpasim_net "
                        "mac 02:00:00:00:00:02")
        expect(rc == 0, f"guest modules: {out[-3:]}")
        g.sim = vdpa_node(g, "sim0", None)
        for cell in CELLS:
            for r in range(REPEAT):
                try:
                    i1 = Run(g, *cell, N1).instructions()
                    i2 = Run(g, *cell, N2).instructions()
                except vhdrig.CaseError as e:  # the cell says "failed"; the guest goes on with the next
                    vhdrig.log(f"{cell}: {e}")
                    g.cmd("pkill -INT vhost-pktgen; sleep 1; pkill -KILL vhost-pktgen valgrind.bin", timeout=60)
                    failed.add(cell)
                    continue
                results.setdefault(cell, []).append((i2 - i1) / (N2 - N1))
                vhdrig.log(f"{cell}: {results[cell][-1]:.0f}")
    finally:
        g.poweroff()
        scratch.cleanup()
    print(f"| process measured | work | ring | {' | '.join(TRANSPORTS)} |")
    print("|---|---|---|" + "---|" * len(TRANSPORTS))
    for row in dict.fromkeys((s, w, r) for s, w, r, _ in CELLS):
        vals = []
        for t in range(len(TRANSPORTS)):
            v = results.get(row + (t,))
            vals.append(" / ".join(f"{x:.0f}" for x in v) + (" (failed)" if row + (t,) in failed else "")
                        if v else "failed" if row + (t,) in failed else "-")
        print(f"| {row[0]} | {row[1]} | {row[2]} | {' | '.join(vals)} |")
    print(f"\nInstructions per 64-byte frame, (I({N2}) - I({N1})) / {N2 - N1}, {REPEAT} measurements a cell "
          f"(bench/guest_cost.py {B} {N1} {N2} {REPEAT}).")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
