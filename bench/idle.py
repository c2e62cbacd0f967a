#!/usr/bin/env python3
"""Idle CPU (docs/switch.md, "Idle"): what a switch costs at idle and at low rates, against what it forwards and
how late. vhostd with its default (sleep until notified) and with --poll (the short sleeps only), OVS-DPDK 3.1
without and with other_config:pmd-maxsleep (its PMD threads sleep up to that many microseconds when their queues
come back mostly empty), in the same run, alternating, pinned: the switch on CPU B, the generator (vhost-pktgen
PVP, as bench/compare.py's switch group: a frontend generating into port a, a sink on port b, --poll) on CPU A.
The switches start as bench/compare.py starts them (start_vhostd, start_ovs: one copy).

For each switch and offered load (idle: both ports connected, one frame a second; 1 kpps; 100 kpps; full: as fast
as the sink takes them), the CPU the switch process used (utime + stime of all its threads from /proc/PID/stat,
in % of one core, over the generator's measured window) and the rate the sink received; at 1 kpps also the
one-way latency through the switch (vhost-pktgen --latency: one frame in flight, timed until the sink has it).
Medians over BENCH_REPEAT runs, the order of the switches turning round from run to run.

usage: bench/idle.py BUILD_DIR
environment: BENCH_REPEAT (3), BENCH_SECONDS (5), BENCH_CPUS (0,1), BENCH_OVS_MAXSLEEP (500, microseconds),
             BENCH_IDLE_ONLY (switches to run, comma-separated: adaptive,poll,ovs,ovs-maxsleep),
             BENCH_IDLE_LOADS (loads to offer: idle,1k,100k,full),
             BENCH_IDLE_CHART (docs/idle.png; skipped, and said so, without matplotlib)
Needs root, hugepages and ovs-vswitchd-dpdk for the OVS rows (scripts/deps.sh bench); without them the OVS
rows are FAILED with the reason and the vhostd rows still run.
"""
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402  (its start_vhostd, start_ovs, pvp_pktgen, Run; it reads BUILD_DIR from argv)
from compare import vhdrig  # noqa: E402

SECONDS = compare.SECONDS
WARMUP = compare.WARMUP
REPEAT = compare.REPEAT
MAXSLEEP = int(os.environ.get("BENCH_OVS_MAXSLEEP", "500"))
CHART = os.environ.get("BENCH_IDLE_CHART", os.path.join(compare.ROOT, "docs", "idle.png"))
ALL_LOADS = {"idle": ("idle", 1), "1k": ("1 kpps", 1000), "100k": ("100 kpps", 100000), "full": ("full", None)}
LOADS = [ALL_LOADS[x] for x in os.environ.get("BENCH_IDLE_LOADS", ",".join(ALL_LOADS)).split(",") if x]
SWITCHES = {
    "adaptive": ("vhostd (adaptive)", lambda r, a, b: compare.start_vhostd(r, a, b, args=()), False),
    "poll": ("vhostd --poll", lambda r, a, b: compare.start_vhostd(r, a, b, args=("--poll",)), False),
    "ovs": ("OVS-DPDK", lambda r, a, b: compare.start_ovs(r, a, b), True),
    "ovs-maxsleep": (f"OVS-DPDK pmd-maxsleep={MAXSLEEP}",
                     lambda r, a, b: compare.start_ovs(r, a, b, other_config=(f"pmd-maxsleep={MAXSLEEP}",)), True),
}
ONLY = [s for s in os.environ.get("BENCH_IDLE_ONLY", ",".join(SWITCHES)).split(",") if s]


def cpu_seconds(pid):
    """utime + stime of the whole process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")  # fields 14 and 15


def one(workdir, switch, pps):
    """One run. @return (switch CPU %, sink Mpps, latency dict or None, commands)."""
    _, start, server = SWITCHES[switch]
    run = compare.Run(workdir)
    try:
        a, b = run.sock("a"), run.sock("b")
        start(run, a, b)
        pid = run.switch_pid
        latency = pps == 1000
        t_start = [time.monotonic()]  # traffic starts when the generator's two ports are up
        gen = compare.pvp_pktgen(run, a, b, 64, server, latency, pps=pps)
        # The switch's CPU time sampled while the generator runs. Its window is the --duration seconds after the
        # --warmup from its first frame, which comes once both ports are up: at once with vhostd (the generator
        # connects), when OVS gets round to connecting with OVS (its vhost client retries once a second). Its
        # exit is no clock: it waits up to 2 s for frames that a switch dropped.
        ovs_log = os.path.join(run.dir, "ovs", "ovs-vswitchd.log") if server else None
        samples = []
        stop = threading.Event()

        def sample():
            up = not ovs_log
            while not stop.is_set():
                try:
                    samples.append((time.monotonic(), cpu_seconds(pid)))
                    if not up:
                        with open(ovs_log, errors="replace") as f:
                            up = f.read().count("' has been added on numa node") >= 2
                        t_start[0] = time.monotonic()
                except OSError:
                    return
                stop.wait(0.02)
        th = threading.Thread(target=sample)
        th.start()
        try:
            val = compare.pvp_result(gen, latency)
        finally:
            stop.set()
            th.join()
        w0, w1 = t_start[0] + WARMUP + 0.2, t_start[0] + WARMUP + SECONDS - 0.2
        win = [s for s in samples if w0 <= s[0] <= w1]
        if len(win) < 2 or win[-1][0] - win[0][0] < 0.5:
            raise compare.RunFail(f"too few CPU samples of pid {pid} in the generator's window")
        cpu = 100.0 * (win[-1][1] - win[0][1]) / (win[-1][0] - win[0][0])
        g = compare.pktgen_json(gen)
        return cpu, g["rx_mpps"], val if latency else None, run.commands
    finally:
        run.close()


def med(xs):
    return statistics.median(xs) if xs else None


def chart(res, names):
    """CPU against the rate the sink received, one line per switch; None, or why there is no chart."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "The chart was skipped: matplotlib is missing (Debian: python3-matplotlib)."
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for sw in names:
        xs, ys = [], []
        for load, _ in LOADS:
            r = res.get((sw, load), [])
            if r:
                xs.append(max(med([x[1] for x in r]) * 1e6, 1.0))  # idle: one frame a second
                ys.append(med([x[0] for x in r]))
        if xs:
            ax.plot(xs, ys, marker="o", label=SWITCHES[sw][0])
    ax.set_xscale("log")
    ax.set_xlabel("frames per second received by the sink (log; idle = 1 frame/s)")
    ax.set_ylabel("switch CPU, % of one core")
    ax.set_ylim(bottom=0)
    ax.grid(True, which="both", alpha=0.3)
    la = os.getloadavg()
    ax.set_title(f"Switch CPU vs rate, {time.strftime('%Y-%m-%d')} (load average {la[0]:.1f})")
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(CHART), exist_ok=True)
    fig.savefig(CHART, dpi=100)
    return None


def main():
    if os.geteuid() != 0 and any(SWITCHES[s][2] for s in ONLY):
        print("bench: not root: the OVS-DPDK rows will fail", file=sys.stderr)
    if any(SWITCHES[s][2] for s in ONLY):
        err = vhdrig.prepare_hugepages(compare.HUGE_WANT)
        if err:
            print(f"bench: hugepages: {err}; the OVS-DPDK rows will fail", file=sys.stderr)
    la0 = os.getloadavg()
    t0 = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    workdir = tempfile.mkdtemp(prefix="vhd-idle-")
    res, fails, cmds = {}, {}, {}
    for rep in range(REPEAT):
        order = ONLY if rep % 2 == 0 else list(reversed(ONLY))
        for load, pps in LOADS:
            for sw in order:
                try:
                    cpu, mpps, lat, c = one(workdir, sw, pps)
                except (compare.RunFail, OSError, ValueError, KeyError) as e:
                    fails.setdefault((sw, load), []).append(str(e))
                    print(f"# run {rep} {load:>8} {sw:>12}: FAILED: {e}", flush=True)
                    continue
                res.setdefault((sw, load), []).append((cpu, mpps, lat))
                cmds.setdefault(sw, c)
                print(f"# run {rep} {load:>8} {sw:>12}: CPU {cpu:5.1f} %, sink {mpps:.4f} Mpps"
                      + (f", latency p50 {lat['p50_us']:.1f} us p99 {lat['p99_us']:.1f} us" if lat else ""),
                      flush=True)
    shutil.rmtree(workdir, ignore_errors=True)
    la1 = os.getloadavg()
    out = [f"Run {t0}, `BENCH_REPEAT={REPEAT} BENCH_SECONDS={SECONDS:g} bench/idle.py {sys.argv[1]}`, "
           f"load average {la0[0]:.1f} at the start, {la1[0]:.1f} at the end; medians of {REPEAT} run(s), "
           "run by run values in brackets.", "",
           "| switch | CPU idle | CPU 1 kpps | CPU 100 kpps | CPU full | full rate (Mpps) | latency 1 kpps p50 / p99 "
           "(us) |", "|---|---|---|---|---|---|---|"]

    def cell(sw, load, f, fmt):
        r = res.get((sw, load), [])
        if not r:
            return "FAILED" if (sw, load) in fails else "-"
        vals = [f(x) for x in r]
        s = fmt.format(med(vals))
        return s + (" (" + ", ".join(fmt.format(v) for v in vals) + ")" if len(vals) > 1 else "")
    for sw in ONLY:
        row = [SWITCHES[sw][0]] + [cell(sw, load, lambda x: x[0], "{:.1f} %") for load, _ in ALL_LOADS.values()]
        row.append(cell(sw, "full", lambda x: x[1], "{:.3f}"))
        lats = [x[2] for x in res.get((sw, "1 kpps"), []) if x[2]]
        row.append(f"{med([x['p50_us'] for x in lats]):.1f} / {med([x['p99_us'] for x in lats]):.1f} ("
                   + ", ".join(f"{x['p50_us']:.1f}/{x['p99_us']:.1f}" for x in lats) + ")" if lats else "-")
        out.append("| " + " | ".join(row) + " |")
    full = {sw: [x[1] for x in res.get((sw, "full"), [])] for sw in ("adaptive", "poll")}
    if full["adaptive"] and full["poll"]:
        ratios = [a / p for a, p in zip(full["adaptive"], full["poll"]) if p]
        out += ["", f"Full rate, vhostd adaptive / --poll: {med(full['adaptive']) / med(full['poll']):.2f} "
                f"(run by run {', '.join(f'{r:.2f}' for r in ratios)})."]
    why = chart(res, ONLY)
    out += ["", why or f"Chart: {os.path.relpath(CHART, compare.ROOT)}."]
    if fails:
        out += ["", "Failed runs:"] + [f"- {SWITCHES[sw][0]}, {load}: {e[0]}" for (sw, load), e in fails.items()]
    out += ["", "Commands (first run of each switch):"]
    for sw, c in cmds.items():
        out += [f"- {SWITCHES[sw][0]}:"] + [f"  - `{x}`" for x in c]
    print("\n" + "\n".join(out))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
