#!/usr/bin/env python3
"""vhostctl capture: pcapng files read back with tshark and compared with what vhost-pktgen sent.

vhost-pktgen frontends send known frames through vhostd (ports a -> b) while vhostctl captures on a port; tshark
(Debian tshark) reads each file and every frame's bytes must equal the one the generator built for that
sequence number, in order, with the direction the capture says (epb_flags: 1 inbound = received from the port,
2 outbound = given to the port to send). Also: --count and --direction, the ends (Ctrl-C, the port's removal),
refusals (bad port name, bad values, a request without its socket), and a reader that never reads: the capture
drops and counts, while the forwarded traffic and its counters are untouched.

usage: test_capture.py VHOSTD VHOSTCTL PKTGEN [case-substring]
"""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_switch  # noqa: E402  (same argv: VHOSTD VHOSTCTL PKTGEN [filter])
from test_switch import MAC, Rig, check_pair, stop_sink, wait_link  # noqa: E402

N = int(os.environ.get("VHD_CAPTURE_COUNT", "300"))
PPS = "5000"  # the capture rings hold 512 frames per thread, drained every 10 ms: 100 ms of slack at this rate
INBOUND, OUTBOUND = 1, 2


def ipv4_csum(h):
    s = sum(struct.unpack("!10H", h))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def pktgen_frame(mac, length, seq, q=0):
    """The frame vhost-pktgen (tools/vhost-pktgen.c build_frame) sends as sequence seq: Ethernet/IPv4/UDP
    10.0.0.1:9 -> 10.0.0.2:9 to 02:00:00:00:00:02, a stamp (seq, queue, length; little endian), a pattern."""
    eth = bytes([2, 0, 0, 0, 0, 2]) + bytes.fromhex(mac.replace(":", "")) + b"\x08\x00"
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, length - 14, 0, 0x4000, 64, 17, 0, bytes([10, 0, 0, 1]),
                               bytes([10, 0, 0, 2])))
    ip[10:12] = struct.pack("!H", ipv4_csum(bytes(ip)))
    udp = struct.pack("!HHHH", 9, 9, length - 34, 0)
    stamp = struct.pack("<QHH", seq, q, length)
    k = seq * 7
    pay = bytes(((i * 13 + (i >> 8)) + k) & 0xFF for i in range(54, length))
    return eth + bytes(ip) + udp + stamp + pay


def tshark_frames(path):
    """[(direction, bytes)] of every frame in path, through tshark; tshark must read the file without error."""
    if not shutil.which("tshark"):
        raise RuntimeError("tshark missing (Debian tshark; scripts/deps.sh check)")
    f = subprocess.run(["tshark", "-r", path, "-T", "fields", "-e", "frame.packet_flags_direction", "-e",
                        "frame.interface_name"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=120)
    j = subprocess.run(["tshark", "-r", path, "-T", "json", "-x"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=120)
    for r in (f, j):
        if r.returncode != 0 or "cut short" in r.stderr or "isn't a capture file" in r.stderr:
            raise RuntimeError(f"tshark -r {path}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
    dirs = [line.split("\t") for line in f.stdout.splitlines()]
    raw = [bytes.fromhex(p["_source"]["layers"]["frame_raw"][0]) for p in json.loads(j.stdout or "[]")]
    if len(dirs) != len(raw):
        raise RuntimeError(f"tshark: {len(dirs)} frames in one pass, {len(raw)} in the other")
    return [(int(d[0], 0) if d[0] else 0, b, d[1]) for d, b in zip(dirs, raw)]


def check_frames(frames, port, direction, seqs, mac=MAC["a"]):
    """The captured frames are exactly pktgen's frames seqs, in order, all of direction and named port."""
    if len(frames) != len(seqs):
        return f"{len(frames)} frames captured on {port}, wanted {len(seqs)}"
    for (d, data, name), seq in zip(frames, seqs):
        want = pktgen_frame(mac, len(data), seq)
        if d != direction or name != port:
            return f"frame {seq} on {name} has direction {d}, wanted {direction} on {port}"
        got_seq = struct.unpack_from("<Q", data, 42)[0] if len(data) >= 50 else None
        if got_seq != seq or data != want:
            return f"frame {seq} differs from what was sent (stamp seq {got_seq}, {len(data)} bytes)"
    return None


def capture(r, port, path, *opts):
    """vhostctl capture in the background; returns once vhostd has taken it (vhostctl says so)."""
    p = subprocess.Popen([test_switch.VHOSTCTL, "--socket", r.ctl, "capture", port, *opts, "-w", path],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    r.procs.append(p)
    line = p.stderr.readline()
    if "capturing" not in line:
        p.wait(timeout=10)
        raise RuntimeError(f"vhostctl capture {port}: exit {p.returncode}: {line.strip()} {p.stderr.read()}")
    return p


def finish(p, interrupt=False, timeout=30):
    """Exit status and stderr of a capturing vhostctl, after Ctrl-C if interrupt."""
    if interrupt:
        p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=timeout)
    return p.returncode, err


def send(r, n, size="60-1514"):
    """b counts (rxonly), a sends n generated frames to it; returns (a's result, b's result, stats)."""
    b = r.pktgen("--frontend", r.sock("b"), "--mode", "rxonly", "--verify", "--mac", MAC["b"], "--duration", "60",
                 "--count", str(n))
    wait_link(r, ["b"])
    a = r.pktgen("--frontend", r.sock("a"), "--mode", "txonly", "--mac", MAC["a"], "--size", size, "--count",
                 str(n), "--pps", PPS)
    ra = Rig.result(a)
    rb, s = stop_sink(r, b)
    return ra, rb, s


def start(r):
    r.start_vhostd([f"add-port a vhost-user path={r.sock('a')}", f"add-port b vhost-user path={r.sock('b')}"])


def case_frames_and_direction(r):
    """Capture a (both ways, until Ctrl-C) and b (tx, --count N) at once: a's file holds the N frames a sent,
    inbound; b's the same N, outbound; byte for byte and in order."""
    start(r)
    fa, fb = os.path.join(r.dir, "a.pcapng"), os.path.join(r.dir, "b.pcapng")
    ca = capture(r, "a", fa)
    cb = capture(r, "b", fb, "--direction", "tx", "--count", str(N))
    ra, rb, s = send(r, N)
    err = check_pair(ra, rb, s["b"], N)
    if err:
        return err
    rc, out = finish(cb)  # ends by itself at --count
    if rc != 0 or f"{N} frames" not in out or "0 dropped" not in out:
        return f"capture b --count {N}: exit {rc}: {out.strip()}"
    time.sleep(0.1)
    rc, out = finish(ca, interrupt=True)
    if rc != 0 or f"{N} frames" not in out or "0 dropped" not in out:
        return f"capture a, Ctrl-C: exit {rc}: {out.strip()}"
    return (check_frames(tshark_frames(fa), "a", INBOUND, range(N)) or
            check_frames(tshark_frames(fb), "b", OUTBOUND, range(N)))


def case_count_and_filter(r):
    """--direction tx on the sending port captures nothing; --count 50 on the receiving one the first 50."""
    start(r)
    fa, fb = os.path.join(r.dir, "a.pcapng"), os.path.join(r.dir, "b.pcapng")
    ca = capture(r, "a", fa, "--direction", "tx")
    cb = capture(r, "b", fb, "--count", "50")
    ra, rb, s = send(r, N)
    err = check_pair(ra, rb, s["b"], N)
    if err:
        return err
    rc, out = finish(cb)
    if rc != 0:
        return f"capture b --count 50: exit {rc}: {out.strip()}"
    rc, out = finish(ca, interrupt=True)
    if rc != 0 or "0 frames" not in out:
        return f"capture a --direction tx, Ctrl-C: exit {rc}: {out.strip()}"
    return check_frames(tshark_frames(fa), "a", INBOUND, []) or check_frames(tshark_frames(fb), "b", OUTBOUND,
                                                                                  range(50))


def case_two_threads(r):
    """Two forwarding threads, two queue pairs: each thread fills its own ring and the control thread merges
    them; every frame of each queue is there, whole, in its queue's order, all inbound."""
    r.start_vhostd([f"add-port a vhost-user path={r.sock('a')} queues=2",
                    f"add-port b vhost-user path={r.sock('b')} queues=2"], extra=("--threads", "2"))
    fa = os.path.join(r.dir, "a.pcapng")
    ca = capture(r, "a", fa, "--direction", "rx", "--count", str(N))
    b = r.pktgen("--frontend", r.sock("b"), "--mode", "rxonly", "--verify", "--mac", MAC["b"], "--queues", "2",
                 "--duration", "60", "--count", str(N))
    wait_link(r, ["b"])
    a = r.pktgen("--frontend", r.sock("a"), "--mode", "txonly", "--mac", MAC["a"], "--size", "60-1514",
                 "--queues", "2", "--count", str(N), "--pps", PPS)
    ra = Rig.result(a)
    rb, s = stop_sink(r, b)
    err = check_pair(ra, rb, s["b"], N)
    if err:
        return err
    rc, out = finish(ca)
    if rc != 0 or f"{N} frames" not in out:
        return f"capture a: exit {rc}: {out.strip()}"
    frames = tshark_frames(fa)
    byq = {}
    for d, data, name in frames:
        q = struct.unpack_from("<H", data, 50)[0]
        byq.setdefault(q, []).append((d, data, name))
    if sorted(byq) != [0, 1]:
        return f"frames from queues {sorted(byq)}, wanted 0 and 1"
    for q, fr in byq.items():
        want = [pktgen_frame(MAC["a"], len(x[1]), i, q) for i, x in enumerate(fr)]
        if [x[1] for x in fr] != want or any(x[0] != INBOUND for x in fr):
            return f"queue {q}: {len(fr)} frames, not the generator's 0..{len(fr) - 1} in order, inbound"
    return None


def case_port_removed(r):
    """The capture ends with its port: vhostctl exits by itself and the file is whole."""
    start(r)
    fa = os.path.join(r.dir, "a.pcapng")
    ca = capture(r, "a", fa, "--direction", "rx")
    ra, rb, s = send(r, N)
    r.ctl_cmd("del-port", "a")
    rc, out = finish(ca, timeout=10)
    if rc != 0 or f"{N} frames" not in out:
        return f"capture a, port removed: exit {rc}: {out.strip()}"
    return check_frames(tshark_frames(fa), "a", INBOUND, range(N))


def raw_request(r, args, fds=()):
    """One request line on the control socket with fds passed alongside; the parsed answer."""
    with socket.socket(socket.AF_UNIX) as c:
        c.connect(r.ctl)
        socket.send_fds(c, [json.dumps({"cmd": "capture", "args": args}).encode() + b"\n"], list(fds))
        c.settimeout(10)
        return json.loads(c.makefile().readline())


def case_refusals(r):
    """Bad port name, values and requests are refused with a reason, and leave no file behind."""
    start(r)
    f = os.path.join(r.dir, "x.pcapng")
    cmd = [test_switch.VHOSTCTL, "--socket", r.ctl, "capture"]
    for args, code, words in ((["nosuch", "-w", f], 1, "no port nosuch"),
                              (["a", "--direction", "up", "-w", f], 2, "rx, tx or both"),
                              (["a", "--count", "0", "-w", f], 2, "--count"),
                              (["a", "--count", "12x", "-w", f], 2, "--count"),
                              (["a"], 2, "usage"),
                              (["a", "-w", os.path.join(r.dir, "no", "dir.pcapng")], 1, "No such file")):
        p = subprocess.run(cmd + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        if p.returncode != code or words not in p.stderr:
            return f"capture {' '.join(args)}: exit {p.returncode}, {p.stderr.strip()!r}; wanted {code}, {words!r}"
        if os.path.exists(f):
            return f"capture {' '.join(args)} left {f} behind"
    # The daemon's side: every value checked again, and the socket must be one.
    fds0 = len(os.listdir(f"/proc/{r.vhostd.pid}/fd"))
    a, b = socket.socketpair()
    pr, pw = os.pipe()
    for args, fds, words in ((["a", "both"], (), "SCM_RIGHTS"), (["a", "both"], (pw,), "SCM_RIGHTS"),
                             (["a", "sideways"], (b.fileno(),), "rx, tx or both"),
                             (["a", "rx", "-1"], (b.fileno(),), "want 1.."),
                             (["a", "rx", "99999999999"], (b.fileno(),), "want 1.."),
                             (["no/such", "rx"], (b.fileno(),), "no port")):
        ans = raw_request(r, args, fds)
        if ans.get("ok") or words not in ans.get("error", ""):
            return f"capture {args} with {len(fds)} fd(s): {ans}"
    # Descriptors passed with a command that takes none, or several with one line, are closed.
    with socket.socket(socket.AF_UNIX) as c:
        c.connect(r.ctl)
        socket.send_fds(c, [b'{"cmd":"show"}\n'], [pr, pw, b.fileno()])
        c.settimeout(10)
        if not json.loads(c.makefile().readline()).get("ok"):
            return "show with descriptors passed along was refused"
    for fd in (pr, pw):
        os.close(fd)
    # One capture per port at a time.
    ca = capture(r, "a", os.path.join(r.dir, "a.pcapng"))
    ans = raw_request(r, ["a", "both"], (b.fileno(),))
    if ans.get("ok") or "already" not in ans.get("error", ""):
        return f"a second capture of a: {ans}"
    a.close()
    b.close()
    rc, out = finish(ca, interrupt=True)
    if rc != 0:
        return f"capture a, Ctrl-C: exit {rc}: {out.strip()}"
    # vhostd holds no descriptor of any of these: its fd count is back where it was.
    for _ in range(50):
        fds = len(os.listdir(f"/proc/{r.vhostd.pid}/fd"))
        if fds == fds0:
            return None
        time.sleep(0.1)
    return f"vhostd has {fds} descriptors after the refused and ended captures, {fds0} before"



def isb_counts(data):
    """(isb_ifrecv, isb_osdrop) of the Interface Statistics Block in pcapng bytes, or None."""
    off = 0
    while off + 12 <= len(data):
        t, ln = struct.unpack_from("<II", data, off)
        if t == 5:
            o, got = off + 20, {}
            while o + 4 <= off + ln - 4:
                code, olen = struct.unpack_from("<HH", data, o)
                if code == 0:
                    break
                if olen == 8:
                    got[code] = struct.unpack_from("<Q", data, o + 4)[0]
                o += 4 + ((olen + 3) & ~3)
            return got.get(4), got.get(7)
        off += ln
    return None


def control_cpu_s(r):
    """CPU seconds vhostd's control thread (its main thread) has used."""
    with open(f"/proc/{r.vhostd.pid}/task/{r.vhostd.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def case_stalled_reader_others_unaffected(r):
    """A capture whose reader reads nothing while 3000 full-size frames cross: every frame still reaches b
    (counters exact), vhostd's control thread idles while the reader sits on the last blocks, and the capture
    keeps what it could hold and counts the rest: captured + dropped == received, the drops > 0."""
    start(r)
    n = 3000
    mine, theirs = socket.socketpair()
    ans = raw_request(r, ["a", "rx"], (theirs.fileno(),))
    theirs.close()
    if not ans.get("ok"):
        return f"capture a with our socket: {ans}"
    ra, rb, s = send(r, n, size="1514")
    err = check_pair(ra, rb, s["b"], n)
    if err:
        return err
    if s["a"]["rx_packets"] != n or s["b"]["tx_packets"] != rb["total"]["rx_packets"]:
        return f"counters with a stalled capture: a {s['a']}, b {s['b']}"
    r.ctl_cmd("show")  # the control thread answers meanwhile
    mine.shutdown(socket.SHUT_WR)  # what vhostctl does on Ctrl-C
    # vhostd's control thread waits for the reader to take the last blocks: it must sleep meanwhile, not spin.
    cpu0 = control_cpu_s(r)
    time.sleep(1)
    cpu = control_cpu_s(r) - cpu0
    if cpu > 0.1:
        return f"vhostd's control thread used {cpu:.2f} s of CPU in 1 s waiting for a reader that does not read"
    mine.settimeout(10)
    data = b""
    while True:
        d = mine.recv(1 << 20)
        if not d:
            break
        data += d
    mine.close()
    path = os.path.join(r.dir, "stalled.pcapng")
    with open(path, "wb") as f:
        f.write(data)
    frames = tshark_frames(path)
    counts = isb_counts(data)
    if not counts or counts[0] != n or counts[1] != n - len(frames) or not counts[1]:
        return f"{len(frames)} frames captured, statistics block (received, dropped) {counts}, {n} sent"
    # What was kept is the first frames, whole, in order.
    return check_frames(frames, "a", INBOUND, range(len(frames)))


CASES = [("capture_frames_and_direction", case_frames_and_direction),
         ("capture_count_and_filter", case_count_and_filter),
         ("capture_two_threads", case_two_threads),
         ("capture_port_removed", case_port_removed),
         ("capture_refusals", case_refusals),
         ("capture_stalled_reader_others_unaffected", case_stalled_reader_others_unaffected)]

if __name__ == "__main__":
    test_switch.CASES = CASES
    sys.exit(test_switch.main())
