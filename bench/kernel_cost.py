#!/usr/bin/env python3
"""Instructions per frame (callgrind) of our frontend over vhost-kernel vs vhost-user, inside the Debian 6.12
guest (the host kernel has no vhost_net; times inside a TCG guest mean nothing, instruction counts do).

vhost-pktgen --mode txonly drives each device: /dev/vhost-net with the tap vk0 (the guest kernel's vhost-net
worker consumes the frames), and a vhost-pktgen back-end in rxonly on a vhost-user socket. Only the frontend
runs under callgrind. Each is run for two frame counts and the difference is divided by the difference of
counts, so start-up and negotiation cancel out: what remains is the data path per frame, polling included
(the frontend polls for completions while the device works, so this counts what waiting costs too).

usage: bench/kernel_cost.py BUILD_DIR [SIZE...]     (prints a markdown table; default sizes 64 1514)
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "lib"))
import vhdrig  # noqa: E402

B = sys.argv[1]
SIZES = sys.argv[2:] or ["64", "1514"]
N1, N2 = 20000, 120000
vhdrig.configure(vhostd=f"{B}/tools/vhostd", vhostctl=f"{B}/tools/vhostctl", pktgen=f"{B}/tools/vhost-pktgen")
VG = ["/usr/bin/valgrind", "/usr/bin/valgrind.bin", "/usr/libexec/valgrind/callgrind-amd64-linux",
      "/usr/libexec/valgrind/vgpreload_core-amd64-linux.so", "/usr/libexec/valgrind/default.supp"]


class Rig:
    dir, guests, name = None, [], "kernel_cost"


def main():
    err = vhdrig.prepare_guest()
    if err:
        sys.exit(f"kernel_cost: {err}")
    missing = [f for f in VG if not os.path.exists(f)]
    if missing:
        sys.exit(f"kernel_cost: valgrind not installed ({missing[0]}; apt-get install valgrind)")
    Rig.dir = vhdrig.WORK
    g = vhdrig.Guest(Rig(), "cost", None, None, payload=[vhdrig.PKTGEN] + VG, mem="1G", smp=2).boot()
    try:
        g.wait_agent()
        rc, out = g.cmd("modprobe tun && modprobe vhost_net")
        vhdrig.expect(rc == 0, f"modprobe: {out}")

        def instructions(device, size, n):
            rc, out = g.cmd(f"valgrind --tool=callgrind --callgrind-out-file=/tmp/cg {vhdrig.PKTGEN} {device} "
                            f"--mode txonly --size {size} --count {n} >/dev/null 2>/tmp/cg.err; "
                            f"grep '^summary:' /tmp/cg || tail -5 /tmp/cg.err", timeout=1800)
            m = [x for x in out if x.startswith("summary:")]
            vhdrig.expect(rc == 0 and m, f"callgrind over {device}: {out[-5:]}")
            return int(m[0].split()[1])

        g.start(f"sh -c 'echo $$ > /tmp/be.pid; exec {vhdrig.PKTGEN} --backend /tmp/be.sock --mode rxonly' "
                ">/dev/null 2>&1")
        devices = [("vhost-kernel", "--frontend /dev/vhost-net --tap vk0"),
                   ("vhost-user", "--frontend /tmp/be.sock")]
        print("| transport | frame bytes | instructions per frame (frontend, txonly) |")
        print("|---|---|---|")
        for name, dev in devices:
            for size in SIZES:
                i1, i2 = instructions(dev, size, N1), instructions(dev, size, N2)
                print(f"| {name} | {size} | {(i2 - i1) / (N2 - N1):.0f} |", flush=True)
        g.cmd("kill $(cat /tmp/be.pid)")
    finally:
        g.poweroff()


main()
