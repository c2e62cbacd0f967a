#!/usr/bin/env python3
"""Instructions and simulated cache misses per frame of our vhost-user back-end (vhost-pktgen --backend) under
callgrind, driven by a native driver: dpdk-testpmd's virtio-user (the cross benchmark's pairing, bench/compare.py)
or our own vhost-pktgen --frontend. bench/cost.sh counts our driver and device together in one thread; this
counts the device process alone, against the driver whose buffers and ring layout it serves.

Cells: driver (testpmd, ours) x direction (guest TX: the driver sends, txonly, the device counts and drops,
rxonly; guest RX: the device sends, txonly, the driver counts and drops) x mrg on/off, packed rings by default,
64-byte frames. Each cell runs the device with --count N1 and --count N2 and prints (X(N2) - X(N1)) / (N2 - N1)
for X = instructions, D1 misses (read + write) and last-level misses (callgrind --cache-sim=yes): start-up,
negotiation and teardown cancel out. The driver runs natively on another CPU and keeps the ring full of frames
(guest TX) or of empty buffers (guest RX), except while the host runs something else on its CPU: the device then
polls in vain (without --poll: it sleeps after 1000 empty rounds, as while it waits for the driver), which only
adds. So each total is the least of REPEAT runs, and testpmd gets 4096-slot rings (about 80 ms of the
device's work under callgrind, longer than a time slice); vhost-pktgen's frontend has 256 and repeats less well
on a loaded host.

usage: bench/devcost.py BUILD_DIR [N1 N2 [REPEAT]]  (default 20000 60000 3; prints a markdown table)
DEVCOST_RING=split measures split rings; DEVCOST_ONLY=testpmd or =ours one driver.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "lib"))
import vhdrig  # noqa: E402

if len(sys.argv) < 2:
    sys.exit(__doc__)
B = sys.argv[1]
N1, N2 = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (20000, 60000)
REPEAT = int(sys.argv[4]) if len(sys.argv) > 4 else 3
PACKED = os.environ.get("DEVCOST_RING", "packed") == "packed"
DRIVERS = [d for d in ("testpmd", "ours") if os.environ.get("DEVCOST_ONLY", d) == d]
CPU_DRV, CPU_DEV = 0, 1
vhdrig.configure(pktgen=f"{B}/tools/vhost-pktgen")


def totals(cg):
    """Ir, D1 misses and LL misses of a callgrind file (its events and summary lines)."""
    ev = sm = None
    with open(cg) as f:
        for line in f:
            if line.startswith("events:"):
                ev = line.split()[1:]
            elif line.startswith("summary:"):
                sm = [int(x) for x in line.split()[1:]]
    v = dict(zip(ev, sm))
    return v["Ir"], v["D1mr"] + v["D1mw"], v["DLmr"] + v["DLmw"]


def once(work, driver, direction, mrg, n):
    """The device under callgrind for n frames; returns totals()."""
    sock = os.path.join(work, "dev.sock")
    cg = os.path.join(work, f"cg.{n}")
    if os.path.exists(sock):
        os.unlink(sock)
    dev_mode, drv_mode = ("rxonly", "txonly") if direction == "tx" else ("txonly", "rxonly")
    dev_args = ["taskset", "-c", str(CPU_DEV), "valgrind", "--tool=callgrind", "--cache-sim=yes",
                f"--callgrind-out-file={cg}", vhdrig.PKTGEN, "--backend", sock, "--mode", dev_mode,
                "--count", str(n), "--size", "64"]
    if dev_mode == "txonly":
        dev_args.append("--no-payload")  # as compare.py's generators
    if not mrg:
        dev_args.append("--no-mrg")
    dev = vhdrig.Proc("device", dev_args, work)
    prefix = f"devcost{os.getpid()}"
    drv = None
    try:
        vhdrig.wait_path(sock, [dev], timeout=60)
        if driver == "testpmd":
            vdev = (f"net_virtio_user0,path={sock},queues=1,packed_vq={int(PACKED)},mrg_rxbuf={int(mrg)},"
                    "in_order=0,queue_size=4096")
            extra = ["--txd=4096", "--rxd=4096"] + (["--txpkts=64"] if drv_mode == "txonly" else [])
            drv = vhdrig.Proc("testpmd", vhdrig.testpmd_cmd(CPU_DRV, prefix, [vdev], drv_mode, True, extra=extra),
                              work, merge=True, sigpipe_ignored=True)
        else:
            args = ["taskset", "-c", str(CPU_DRV), vhdrig.PKTGEN, "--poll", "--frontend", sock, "--mode", drv_mode,
                    "--size", "64"] + (["--packed"] if PACKED else []) + ([] if mrg else ["--no-mrg"])
            if drv_mode == "txonly":
                args.append("--no-payload")
            drv = vhdrig.Proc("frontend", args, work)
        rc = dev.wait(600)
        if rc != 0:
            raise vhdrig.CaseError(f"device exit {rc}; {dev.tail()}")
    finally:
        dev.kill()
        if drv:
            drv.stop()
        vhdrig.dpdk_cleanup(prefix)
    return totals(cg)


def main():
    if "testpmd" in DRIVERS:
        why = vhdrig.prepare_hugepages(want=256)
        if why:
            sys.exit(f"devcost: {why}")
    ring = "packed" if PACKED else "split"
    print("| driver | direction | mrg | instructions / frame | D1 misses / frame | LL misses / frame |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="devcost-") as work:
        for driver in DRIVERS:
            for direction in ("tx", "rx"):
                for mrg in (True, False):
                    # Each total at its least over REPEAT runs: polling while the driver is off its CPU
                    # only ever adds.
                    a = [min(x) for x in zip(*(once(work, driver, direction, mrg, N1) for _ in range(REPEAT)))]
                    b = [min(x) for x in zip(*(once(work, driver, direction, mrg, N2) for _ in range(REPEAT)))]
                    per = [(y - x) / (N2 - N1) for x, y in zip(a, b)]
                    name = {"testpmd": "testpmd virtio-user", "ours": "vhost-pktgen --frontend"}[driver]
                    print(f"| {name} | guest {direction.upper()} | {'on' if mrg else 'off'} | {per[0]:.0f} | "
                          f"{per[1]:.2f} | {per[2]:.2f} |", flush=True)
    print(f"\nvhost-pktgen --backend under callgrind --cache-sim=yes, {ring} rings, 64 B, "
          f"(X({N2}) - X({N1})) / {N2 - N1} (bench/devcost.py).")


if __name__ == "__main__":
    main()
