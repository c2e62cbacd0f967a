#!/usr/bin/env python3
"""Adaptive idle (docs/switch.md, "Idle"): vhostd's CPU, rate and latency with its default (sleep until notified)
against --poll (the short sleeps only), in the same run, alternating, pinned: vhostd on CPU B, the generator
(vhost-pktgen PVP: a frontend generating into port a, a sink on port b) on CPU A.

For each mode and offered load (idle: both ports connected, nothing sent; 1 kpps; 100 kpps; full: as fast as the
sink takes them), the CPU vhostd used (utime + stime from /proc over the measured seconds, in % of one core) and
the rate the sink received; at 1 kpps also the one-way latency through the switch (vhost-pktgen --latency: one
frame in flight, timed until the sink has it). Medians over BENCH_REPEAT runs, runs alternating modes.

usage: bench/idle.py BUILD_DIR        (environment: BENCH_REPEAT (3), BENCH_SECONDS (5))
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "lib"))
import vhdrig  # noqa: E402

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build/release"
T = os.path.join(BUILD, "tools")
vhdrig.configure(vhostd=os.path.join(T, "vhostd"), vhostctl=os.path.join(T, "vhostctl"),
                 pktgen=os.path.join(T, "vhost-pktgen"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CPU_A, CPU_B = 0, 1
LOADS = ["idle", "1k", "100k", "full"]


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return int(v[11]) + int(v[12])  # utime, stime (fields 14, 15)


def one(mode, load):
    """@return (vhostd CPU %, sink Mpps, latency dict or None)."""
    d = tempfile.mkdtemp(prefix="vhd-idle-")
    vd = vhdrig.Vhostd(d)
    a, b = os.path.join(d, "a.sock"), os.path.join(d, "b.sock")
    procs = []
    try:
        vd.start([f"add-port a vhost-user path={a}", f"add-port b vhost-user path={b}"],
                 ["--cpus", str(CPU_B), "--threads", "1"] + (["--poll"] if mode == "poll" else []),
                 log_level="warn", wrap=["taskset", "-c", str(CPU_B)])
        vhdrig.wait_path(b, [vd.p])
        args = ["taskset", "-c", str(CPU_A), vhdrig.PKTGEN, "--frontend", a, "--sink", b, "--announce", "--json",
                "--warmup", "1", "--duration", str(SECONDS)]
        if load == "idle":
            args += ["--pps", "1", "--size", "64"]  # connected, one frame a second
        elif load == "1k":
            args += ["--pps", "1000", "--latency"]
        elif load == "100k":
            args += ["--pps", "100000", "--static", "--no-mrg"]
        else:
            args += ["--static", "--no-mrg"]
        p = vhdrig.spawn(args, procs)
        time.sleep(1.0)  # connected and warming up
        hz = os.sysconf("SC_CLK_TCK")
        c0, t0 = cpu_ticks(vd.p.pid), time.time()
        time.sleep(SECONDS - 0.5)
        c1, t1 = cpu_ticks(vd.p.pid), time.time()
        out, _ = p.communicate(timeout=SECONDS + 60)
        g = json.loads(out.strip().splitlines()[-1])
        return 100.0 * (c1 - c0) / hz / (t1 - t0), g.get("rx_mpps", 0.0), g.get("latency")
    finally:
        for p in procs:
            vhdrig.kill_group(p)
        vd.stop()


def main():
    res = {}
    for rep in range(REPEAT):
        for load in LOADS:
            for mode in (("adaptive", "poll") if rep % 2 == 0 else ("poll", "adaptive")):
                cpu, mpps, lat = one(mode, load)
                res.setdefault((mode, load), []).append((cpu, mpps, lat))
                print(f"# run {rep} {load:>5} {mode:>8}: vhostd CPU {cpu:5.1f} %, sink {mpps:.4f} Mpps"
                      + (f", latency p50 {lat['p50_us']:.1f} us p99 {lat['p99_us']:.1f} us" if lat else ""),
                      flush=True)
    print("\n| load | vhostd CPU, adaptive | vhostd CPU, --poll | sink Mpps adaptive / --poll | latency p50 / p99 "
          "(us), adaptive | latency p50 / p99 (us), --poll |")
    print("|---|---|---|---|---|---|")
    for load in LOADS:
        row = [load]
        for mode in ("adaptive", "poll"):
            row.append(f"{statistics.median(r[0] for r in res[(mode, load)]):.1f} %")
        ma = statistics.median(r[1] for r in res[("adaptive", load)])
        mp = statistics.median(r[1] for r in res[("poll", load)])
        row.append(f"{ma:.4f} / {mp:.4f}" + (f" ({ma / mp:.2f})" if mp else ""))
        for mode in ("adaptive", "poll"):
            lats = [r[2] for r in res[(mode, load)] if r[2]]
            row.append(f"{statistics.median(x['p50_us'] for x in lats):.1f} / "
                       f"{statistics.median(x['p99_us'] for x in lats):.1f}" if lats else "")
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
