#!/usr/bin/env python3
"""Instructions per frame of our frontend (vhost-pktgen --frontend) over vhost-vdpa against the kernel's
vdpa_sim_net, and over vhost-user against a vhost-pktgen back-end echoing (--mode io), both inside the 6.12 test
guest (the host kernel has no vhost-vdpa): callgrind counts the frontend process's own instructions, as
bench/cost.sh does, so TCG's speed does not matter and the counts repeat. Each transport runs twice, with N1
and N2 frames; (I2 - I1) / (N2 - N1) cancels the setup. The frontend does the same work on both (txonly with
--verify --latency --window 64: send, receive, check every frame); the device's own work (the kernel's, or the
back-end process's) is not counted.

usage: bench/vdpa_cost.py BUILD_DIR [N1 N2]     (prints a markdown table)
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "lib"))
import vhdrig  # noqa: E402
from vhdrig import Guest, expect  # noqa: E402

B = sys.argv[1]
N1, N2 = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (2000, 6000)
vhdrig.configure(vhostd=f"{B}/tools/vhostd", pktgen=f"{B}/tools/vhost-pktgen")
VG = "/usr/libexec/valgrind"
TOOLS = ["/usr/bin/valgrind.bin", f"{VG}/callgrind-amd64-linux", f"{VG}/vgpreload_core-amd64-linux.so",
         f"{VG}/default.supp"]
ARGS = "--mode txonly --verify --latency --window 64"


class Rig:
    dir, guests, name = "/tmp", [], "vdpa_cost"


def main():
    err = vhdrig.prepare_guest()
    expect(err is None, f"guest: {err}")
    g = Guest(Rig(), "g", None, None, payload=[vhdrig.PKTGEN, "/usr/sbin/vdpa"] + TOOLS, mem="1G", smp=2).boot()
    try:
        g.wait_agent()
        rc, out = g.cmd("modprobe vdpa_sim_net && modprobe vhost_vdpa && /usr/sbin/vdpa dev add name vdpa0 "
                        "mgmtdev vdpasim_net mac 02:00:00:00:00:02")
        expect(rc == 0, f"vdpa_sim_net: {out}")
        job = g.start(f"{vhdrig.PKTGEN} --backend /tmp/b.sock --mode io")

        def cost(path, n):
            rc, out = g.cmd(f"valgrind.bin --tool=callgrind --log-file=/tmp/vg.log --callgrind-out-file=/tmp/cg "
                            f"{vhdrig.PKTGEN} --frontend {path} {ARGS} --count {n} >/tmp/cg.out 2>&1; echo rc=$?; "
                            "sed -n 's/^summary: //p' /tmp/cg; tail -5 /tmp/cg.out", timeout=1800)
            # Exit 1: --verify counted frames missing. Under callgrind a frame may outlive --latency's 50 ms
            # timeout and be sent again; the frontend's work per frame sent is still what is measured.
            st = [x for x in out if x.startswith("rc=")]
            expect(rc == 0 and st and st[0] in ("rc=0", "rc=1"), f"callgrind over {path}: {out}")
            return int(out[out.index(st[0]) + 1])

        rows = []
        for name, path in (("vhost-vdpa (vdpa_sim_net)", "/dev/vhost-vdpa-0"), ("vhost-user (pktgen io)",
                                                                                 "/tmp/b.sock")):
            i1, i2 = cost(path, N1), cost(path, N2)
            rows.append((name, (i2 - i1) / (N2 - N1)))
        g.cmd("kill -INT $(pidof vhost-pktgen)")
        job.wait(60)
    finally:
        g.poweroff()
    print("| transport | frontend instructions per frame (64 B, sent and received back) |")
    print("|---|---|")
    for name, ipf in rows:
        print(f"| {name} | {ipf:.0f} |")


if __name__ == "__main__":
    main()
