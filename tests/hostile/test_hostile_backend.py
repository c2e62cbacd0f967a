#!/usr/bin/env python3
"""The hostile back-end (hostile_backend) against our frontends: vhost-pktgen --frontend (split, and packed for
the ring classes), and a virtio-user port of vhostd while vhostd carries traffic between two other ports.

For each class hostile_backend listens on the frontend's socket and plays ROUNDS (default 3) connections; it
exits non-zero when a round did not end as the class expects (the frontend must hang up on a lying or stalled
back-end by itself, within HOLD_MS) or the frontend stopped coming back. Around each class this runner checks:
the frontend process is alive; it logged why (an error line naming the lie, for the ring classes the queue's
error code); its fd count is back to the figure before the class once the connection is gone; and, for vhostd,
`vhostctl show` kept answering promptly while it was asked during the class (four times a second; see CTL_SLOW).
Afterwards a good back-end on the same socket gets frames from the frontend's side, each one verified, and for
vhostd the traffic a -> b that ran during all attacks is checked exactly (received + dropped == sent).

The frontends run with a short per-message deadline (vhost-pktgen --msg-timeout, the virtio-user port's
msg_timeout_ms=; MSG_TIMEOUT_MS), so that a stalling class costs a fraction of a second a round rather than the
default 2 s; its log lines must name that deadline. One case (pktgen_default_deadline) stalls a frontend
started without the option and checks that it gave up at the documented default, 2000 ms.

usage: test_hostile_backend.py VHOSTD VHOSTCTL PKTGEN HOSTILE_BACKEND [case-substring]
Prints PASS/FAIL lines like tests/unit/harness.h; VHD_HOSTILE_BACKEND_ROUNDS overrides the rounds,
VHD_HOSTILE_BACKEND_HOLD_MS how long a stalling class waits for the frontend to give up on it (default 6000),
VHD_HOSTILE_BACKEND_MSG_TIMEOUT_MS the frontends' deadline (default 500 x VHD_TEST_TIMEOUT_SCALE).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import vhdrig  # noqa: E402
from hostile_util import fds, kill_all, report, settle_fds, timeout_scale, wait_memfd  # noqa: E402
from vhdrig import pktgen_json  # noqa: E402

VHOSTD, VHOSTCTL, PKTGEN, HOSTILE = (os.path.abspath(a) for a in sys.argv[1:5])
vhdrig.configure(vhostd=VHOSTD, vhostctl=VHOSTCTL, pktgen=PKTGEN)
FILTER = sys.argv[5] if len(sys.argv) > 5 else ""
ROUNDS = int(os.environ.get("VHD_HOSTILE_BACKEND_ROUNDS", "3"))
HOLD_MS = int(os.environ.get("VHD_HOSTILE_BACKEND_HOLD_MS", "6000"))
# 500 ms (x VHD_TEST_TIMEOUT_SCALE: 1500 under TSan) is what an honest back-end's replies take at most on a loaded
# 2-core machine with margin; 300 ms failed a ring class's setup under TSan there.
MSG_TIMEOUT_MS = int(os.environ.get("VHD_HOSTILE_BACKEND_MSG_TIMEOUT_MS", str(500 * timeout_scale())))
DEFAULT_MSG_TIMEOUT_MS = 2000  # vhd_fe_config.reply_timeout_ms's documented default (include/vhostd/frontend.h)
# The classes that stall instead of lying: the frontend gives up on them at its deadline, and says so.
STALLS = ("half_reply", "half_payload", "no_reply")
# A control thread that waits on the back-end shows as a `vhostctl show` slower than CTL_SLOW (each stall
# holds up the probe that arrives during it: one slow answer per stalled round), or one that gets no answer within
# CTL_TIMEOUT. On a loaded 2-core machine under ASan a healthy vhostd answers within half a second, but an
# occasional answer past CTL_SLOW happens without any stall: a class fails on two slow answers, or one timeout.
CTL_SLOW = 1.5
CTL_TIMEOUT = 5.0
GOOD_FRAMES = 20000
MAC = {"a": "02:00:00:00:00:0a", "b": "02:00:00:00:00:0b"}
CLASSES = subprocess.run([HOSTILE, "-", "list"], stdout=subprocess.PIPE, text=True, check=True).stdout.split()
RING = [c for c in CLASSES if c.startswith("ring_")]
# What the frontend's log must say after each class (besides any error line): the ring classes name the
# queue's error code (vhd_vq_strerror).
SPLIT_CODES = {"ring_id_range": "used-id", "ring_twice": "used-id", "ring_len": "used-len",
               "ring_idx_jump": "used-idx", "ring_wrap": "used-idx"}
PACKED_CODES = {"ring_id_range": "used-id", "ring_twice": "used-id", "ring_len": "used-len",
                "ring_idx_jump": "packed-flags", "ring_wrap": "packed-flags"}


class Log:
    """A log file some process writes; new() returns what was added since the last call."""

    def __init__(self, path):
        self.path = path
        self.f = open(path, "w+")
        self.pos = 0

    def new(self):
        with open(self.path) as f:
            f.seek(self.pos)
            s = f.read()
            self.pos = f.tell()
        return s


class CtlProbe(threading.Thread):
    """Asks `vhostctl show` four times a second until stopped; records answers slower than CTL_SLOW and
    questions not answered within CTL_TIMEOUT."""

    def __init__(self, ctl):
        super().__init__(daemon=True)
        self.ctl, self.stop, self.slow, self.asked, self.worst = ctl, threading.Event(), [], 0, 0.0
        self.unanswered = 0

    def run(self):
        while not self.stop.is_set():
            t0 = time.time()
            try:
                r = subprocess.run([VHOSTCTL, "--socket", self.ctl, "--json", "show"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, timeout=CTL_TIMEOUT)
                ok = r.returncode == 0
            except subprocess.TimeoutExpired:
                ok = False
            dt = time.time() - t0
            self.asked += 1
            self.worst = max(self.worst, dt)
            self.unanswered += not ok
            if dt > CTL_SLOW:
                self.slow.append(dt)
            self.stop.wait(0.25)


def wait_said(log, cls, codes, deadline_ms, timeout=5.0):
    """What the frontend logged about class cls, once it has said what the checks below look for (or after
    timeout: the frontend's data path and log catch up after the connection is gone)."""
    said, end = "", time.time() + timeout
    while True:
        said += log.new()
        missing = (not re.search(r"\b(err|error|warn)\b", said)
                   or (cls in codes and f"queue broken ({codes[cls]})" not in said)
                   or (cls in STALLS and f"{deadline_ms} ms" not in said))
        if missing and time.time() < end:
            time.sleep(0.02)
            continue
        return said


def attack(name, fe_pid, sock, log, results, classes, codes, ctl=None, alive=lambda: True, rounds=ROUNDS,
           deadline_ms=MSG_TIMEOUT_MS, case_name=None):
    """Every class in classes against the frontend fe_pid (connecting to sock), whose per-message deadline is
    deadline_ms; appends (case, error, detail)."""
    for cls in classes:
        case = case_name or f"hostile_backend_{name}_{cls}"
        if FILTER not in case:
            continue
        # The frontend is between connections here (the last class's back-end is gone): its resting fd count,
        # the least of a few samples, since each reconnect attempt holds a socket for a moment.
        fd0 = min(fds(fe_pid) for _ in range(10) if time.sleep(0.03) is None)
        log.new()
        probe = CtlProbe(ctl) if ctl else None
        if probe:
            probe.start()
        t0 = time.time()
        try:
            r = subprocess.run([HOSTILE, sock, cls, str(rounds), str(HOLD_MS)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=60 + rounds * (HOLD_MS / 1000 + 20))
            rc, out = r.returncode, (r.stdout.strip() + " " + r.stderr.strip()).strip()
        except subprocess.TimeoutExpired:
            rc, out = -1, "hostile_backend timed out"
        if probe:
            probe.stop.set()
            probe.join()
        said = wait_said(log, cls, codes, deadline_ms)
        err = None
        if not alive():
            err = f"frontend died during {cls}"
        elif rc != 0:
            err = f"hostile_backend exit {rc}: {out}"
        elif probe and (probe.unanswered or len(probe.slow) >= 2):
            err = (f"vhostctl show took {', '.join(f'{t:.1f}' for t in probe.slow[:5])} s "
                   f"({len(probe.slow)} of {probe.asked} over {CTL_SLOW} s, {probe.unanswered} unanswered)")
        elif cls in codes and f"queue broken ({codes[cls]})" not in said:
            err = f"no 'queue broken ({codes[cls]})' in the frontend's log: {said[-300:]!r}"
        elif not re.search(r"\b(err|error|warn)\b", said):
            err = f"the frontend logged nothing about it: {said[-300:]!r}"
        elif cls in STALLS and f"{deadline_ms} ms" not in said:
            err = f"the frontend's log does not name its {deadline_ms} ms deadline: {said[-300:]!r}"
        else:
            n = settle_fds(fe_pid, fd0)
            if n != fd0:
                err = f"frontend fds {fd0} -> {n} after {rounds} rounds"
        detail = f"{out} ({time.time() - t0:.1f} s)"
        if probe:
            detail += f", vhostctl answered {probe.asked} times, slowest {probe.worst:.2f} s"
        results.append((case, err, detail))
        if not alive():
            return


def pktgen_phase(tmp, results, packed):
    name = "pktgen_packed" if packed else "pktgen"
    sock = os.path.join(tmp, f"{name}.sock")
    log = Log(os.path.join(tmp, f"{name}.log"))
    fl = ["--packed"] if packed else []
    procs = []
    fe = vhdrig.pktgen(procs, "--frontend", sock, "--mode", "rxonly", "--verify", "--duration", "3600", *fl,
                       "--msg-timeout", str(MSG_TIMEOUT_MS), stderr=log.f)
    try:
        if not wait_memfd(fe.pid):
            raise RuntimeError("vhost-pktgen --frontend never set up its shared memory")
        attack(name, fe.pid, sock, log, results, RING if packed else CLASSES, PACKED_CODES if packed else SPLIT_CODES,
               alive=lambda: fe.poll() is None)
        case = f"hostile_backend_{name}_good_backend_after"
        if FILTER in case:
            err = None
            if fe.poll() is not None:
                err = f"vhost-pktgen --frontend died ({fe.returncode})"
            else:
                # A good back-end on the same socket: the frontend comes back and receives every frame intact.
                be = vhdrig.pktgen(procs, "--backend", sock, "--mode", "txonly", "--count", str(GOOD_FRAMES))
                rb = pktgen_json(be)
                time.sleep(0.5)
                fe.send_signal(signal.SIGINT)
                rf = pktgen_json(fe)
                got = rf["total"]["rx_packets"]
                if fe.returncode != 0:
                    err = f"vhost-pktgen --frontend exit {fe.returncode} (LeakSanitizer?)"
                elif rb["total"]["tx_packets"] != GOOD_FRAMES or got != GOOD_FRAMES:
                    err = f"good back-end sent {rb['total']['tx_packets']}, frontend received {got} of {GOOD_FRAMES}"
                elif rf["total"]["dup"] or rf["total"]["corrupt"]:
                    err = f"frontend saw dup {rf['total']['dup']} corrupt {rf['total']['corrupt']}"
            results.append((case, err, ""))
    finally:
        kill_all(procs)


def default_deadline_phase(tmp, results):
    """A frontend started without --msg-timeout gives up on a back-end that never answers at the documented
    default deadline, and says so (one round: the other cases use a short deadline)."""
    if FILTER not in "hostile_backend_pktgen_default_deadline":
        return
    sock = os.path.join(tmp, "default.sock")
    log = Log(os.path.join(tmp, "default.log"))
    procs = []
    fe = vhdrig.pktgen(procs, "--frontend", sock, "--mode", "rxonly", "--duration", "3600", stderr=log.f)
    try:
        if not wait_memfd(fe.pid):
            raise RuntimeError("vhost-pktgen --frontend never set up its shared memory")
        attack("pktgen", fe.pid, sock, log, results, ["no_reply"], {}, alive=lambda: fe.poll() is None, rounds=1,
               deadline_ms=DEFAULT_MSG_TIMEOUT_MS, case_name="hostile_backend_pktgen_default_deadline")
    finally:
        kill_all(procs)


def wait_link(vhd, port, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        show = {p["name"]: p for p in vhd.ctl_json("show")["ports"]}
        if show[port]["link"] == "up":
            return show
        time.sleep(0.05)
    raise RuntimeError(f"port {port} never came up: {show[port]}")


def vhostd_phase(tmp, results):
    vhd = vhdrig.Vhostd(tmp)
    ctl = vhd.ctl
    sock = {p: os.path.join(tmp, f"vd-{p}.sock") for p in "abv"}
    log = Log(os.path.join(tmp, "vhostd.log"))
    procs = []
    try:
        vd = vhd.start([f"add-port a vhost-user path={sock['a']}", f"add-port b vhost-user path={sock['b']}",
                        f"add-port v virtio-user path={sock['v']} msg_timeout_ms={MSG_TIMEOUT_MS}"], log_level="info",
                       stdout=log.f)
        # a -> b all along: b receives (every frame verified), a sends at a modest pace (flooded to v too).
        b = vhdrig.pktgen(procs, "--frontend", sock["b"], "--mode", "rxonly", "--verify", "--mac", MAC["b"],
                          "--duration", "3600")
        wait_link(vhd, "b")
        a = vhdrig.pktgen(procs, "--frontend", sock["a"], "--mode", "txonly", "--mac", MAC["a"], "--pps", "5000",
                          "--duration", "3600")
        wait_link(vhd, "a")
        attack("vhostd", vd.pid, sock["v"], log, results, CLASSES, SPLIT_CODES, ctl=ctl,
               alive=lambda: vd.poll() is None)
        if vd.poll() is not None:
            results.append(("hostile_backend_vhostd_alive", f"vhostd died ({vd.returncode})", ""))
            return
        a.send_signal(signal.SIGINT)
        ra = pktgen_json(a)
        time.sleep(0.5)
        b.send_signal(signal.SIGINT)
        rb = pktgen_json(b)
        s = {p["name"]: p for p in vhd.ctl_json("stats")["ports"]}
        sent, got, drops = ra["total"]["tx_packets"], rb["total"]["rx_packets"], s["b"]["tx_drops"]
        # What a posted but vhostd never took is what sat in a's TX ring when a quit (at most a ring's worth,
        # 64 frames in one CI run under TSan); every frame vhostd took reached b or is a counted drop.
        took, unrouted = s["a"]["rx_packets"], s["a"]["rx_drops"]
        err = None
        # Each ring class breaks v's receive queue once a round, and each break counts once.
        breaks = s["v"].get("queue_breaks")
        want = ROUNDS * len([c for c in RING if FILTER in f"hostile_backend_vhostd_{c}"])
        if rb["total"]["dup"] or rb["total"]["corrupt"]:
            err = f"b saw dup {rb['total']['dup']} corrupt {rb['total']['corrupt']}"
        elif not 0 <= sent - took <= 1024:
            err = f"a sent {sent}, vhostd took {took}: more than a ring's worth never taken"
        elif got + drops + unrouted != took or got < sent // 10:
            err = f"b received {got} + dropped {drops} (+ {unrouted} unrouted) of {took} vhostd took from a"
        elif breaks != want:
            err = f"v counted {breaks} queue breaks, the ring classes made {want}"
        results.append(("hostile_backend_vhostd_traffic_during_attacks", err,
                        f"a sent {sent}, vhostd took {took}, b received {got}, dropped {drops}; v queue_breaks "
                        f"{s['v'].get('queue_breaks')}"))
        if not FILTER or FILTER in "hostile_backend_vhostd_good_backend_after":
            # A good back-end behind v: vhostd's frontend comes back, and a's frames flooded to it arrive intact.
            be = vhdrig.pktgen(procs, "--backend", sock["v"], "--mode", "rxonly", "--verify", "--duration", "3600")
            show = wait_link(vhd, "v")
            before = s["v"]["tx_drops"]
            a2 = vhdrig.pktgen(procs, "--frontend", sock["a"], "--mode", "txonly", "--mac", MAC["a"], "--count",
                               str(GOOD_FRAMES), "--pps", "20000")
            ra2 = pktgen_json(a2)
            time.sleep(0.5)
            be.send_signal(signal.SIGINT)
            rbe = pktgen_json(be)
            s = {p["name"]: p for p in vhd.ctl_json("stats")["ports"]}
            got, drops = rbe["total"]["rx_packets"], s["v"]["tx_drops"] - before
            err = None
            if ra2["total"]["tx_packets"] != GOOD_FRAMES:
                err = f"a sent {ra2['total']['tx_packets']} of {GOOD_FRAMES}"
            elif rbe["total"]["dup"] or rbe["total"]["corrupt"]:
                err = f"good back-end saw dup {rbe['total']['dup']} corrupt {rbe['total']['corrupt']}"
            elif got + drops != GOOD_FRAMES or got < GOOD_FRAMES // 10:
                err = f"good back-end received {got} + v dropped {drops} of {GOOD_FRAMES}"
            results.append(("hostile_backend_vhostd_good_backend_after", err,
                            f"v ups {show['v']['info'].get('ups')}, received {got}, dropped {drops}"))
        rc, _ = vhd.stop()
        if rc != 0:
            results.append(("hostile_backend_vhostd_clean_exit", f"vhostd exit {rc}: {log.new()[-800:]}", ""))
    finally:
        kill_all(procs)
        vhd.kill()


def main():
    tmp = tempfile.mkdtemp(prefix="hs-hostile-be-")
    results = []
    try:
        for phase, arg in ((pktgen_phase, False), (pktgen_phase, True), (default_deadline_phase, None),
                           (vhostd_phase, None)):
            try:
                if arg is None:
                    phase(tmp, results)
                else:
                    phase(tmp, results, arg)
            except Exception as e:
                results.append((f"{phase.__name__}{'_packed' if arg else ''}", f"{type(e).__name__}: {e}", ""))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report(results)


if __name__ == "__main__":
    sys.exit(main())
