#!/usr/bin/env python3
"""vhostd --metrics: the Prometheus endpoint against the control socket's own counters, and against clients
that would stall it.

Traffic crosses vhostd between two vhost-pktgen frontends; once it has stopped, every vhostd_port_*_total and
vhostd_thread_*_total sample fetched with curl must equal what `vhostctl --json stats` says, and promtool
(Debian prometheus) must accept the whole body. Clients that send nothing, trickle, or send a request and
never read must not delay `vhostctl show`, and are dropped at their deadline.

usage: test_metrics.py VHOSTD VHOSTCTL PKTGEN [case-substring]
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_switch  # noqa: E402  (same argv: VHOSTD VHOSTCTL PKTGEN [filter])
from test_switch import MAC, PPS, Rig, stop_sink, wait_link  # noqa: E402

N = int(os.environ.get("VHD_METRICS_COUNT", "20000"))
# The names exactly as the text format allows them, and a sample line: name{labels} value.
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*)?\}})? (\S+)$")


def start(r, extra=()):
    """vhostd with ports a and b and metrics on a free port; returns the bound HOST:PORT from its log."""
    log = os.path.join(r.dir, "vhostd.log")
    r.start_vhostd([f"add-port a vhost-user path={r.sock('a')}", f"add-port b vhost-user path={r.sock('b')}"],
                   extra=("--metrics", "127.0.0.1:0", "--log-file", log, *extra))
    with open(log) as f:
        m = re.search(r"metrics on http://(127\.0\.0\.1:\d+)/metrics", f.read())
    if not m:
        raise RuntimeError("vhostd did not log its metrics address")
    return m.group(1)


def curl(addr, path="/metrics", *args):
    """(HTTP status, body) from curl."""
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", *args,
                        f"http://{addr}{path}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"curl {path}: exit {r.returncode}: {r.stderr.strip()}")
    body, _, code = r.stdout.rpartition("\n")
    return int(code), body


def parse(body):
    """Strict parse: {(name, frozenset of label pairs): value}; every sample's family announced by # TYPE
    before it, each family's samples together, no sample twice."""
    samples, typed, done, current = {}, {}, set(), None
    for line in body.split("\n")[:-1] if body.endswith("\n") else [None]:
        if line is None:
            raise ValueError("body does not end with a newline")
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            _, kind, name, rest = line.split(" ", 3)
            if not re.fullmatch(NAME, name) or not rest:
                raise ValueError(f"bad {kind} line {line!r}")
            if kind == "TYPE":
                if rest not in ("counter", "gauge") or name in typed:
                    raise ValueError(f"bad or repeated TYPE line {line!r}")
                typed[name] = rest
            if name != current:
                if current:
                    done.add(current)
                current = name
            continue
        m = SAMPLE.match(line)
        if not m:
            raise ValueError(f"bad sample line {line!r}")
        name, labels, value = m.groups()
        if name != current or name in done or name not in typed:
            raise ValueError(f"sample {line!r} outside its family's group")
        if typed[name] == "counter" and not name.endswith("_total"):
            raise ValueError(f"counter {name} does not end in _total")
        pairs = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels or ""))
        key = (name, pairs)
        if key in samples:
            raise ValueError(f"sample {line!r} twice")
        samples[key] = int(value)
    return samples


def case_counters(r):
    """The endpoint's samples equal vhostctl stats after traffic, promtool accepts the body, and the wrong
    path, method or request line get 404, 405 and 400."""
    if not shutil.which("promtool"):
        return "promtool missing (Debian prometheus; scripts/deps.sh check)"
    addr = start(r)
    b = r.pktgen("--frontend", r.sock("b"), "--mode", "rxonly", "--verify", "--mac", MAC["b"],
                 "--duration", "60", "--count", str(N))
    wait_link(r, ["b"])
    a = r.pktgen("--frontend", r.sock("a"), "--mode", "txonly", "--mac", MAC["a"], "--size", "60-1514",
                 "--count", str(N), "--pps", PPS)
    ra = Rig.result(a)
    rb, _ = stop_sink(r, b)
    full = r.ctl_json("stats")
    code, body = curl(addr)
    if code != 200:
        return f"GET /metrics: HTTP {code}"
    s = parse(body)
    if s.get(("vhostd_up", frozenset())) != 1:
        return "no vhostd_up 1"
    types = {p["name"]: p["type"] for p in r.ctl_json("show")["ports"]}
    for p in full["ports"]:
        lab = frozenset({("port", p["name"]), ("type", types[p["name"]])})
        for field, v in p.items():
            if field == "name":
                continue
            got = s.get((f"vhostd_port_{field}_total", lab))
            if got != v:
                return f"port {p['name']} {field}: metrics {got}, vhostctl stats {v}"
    a_rx = s[("vhostd_port_rx_packets_total", frozenset({("port", "a"), ("type", "vhost-user")}))]
    a_bytes = s[("vhostd_port_rx_bytes_total", frozenset({("port", "a"), ("type", "vhost-user")}))]
    if a_rx != N or a_bytes != ra["total"]["tx_bytes"]:
        return f"metrics say a received {a_rx} frames / {a_bytes} B, the sender sent {N} / {ra['total']['tx_bytes']}"
    b_tx = s[("vhostd_port_tx_packets_total", frozenset({("port", "b"), ("type", "vhost-user")}))]
    if b_tx != rb["total"]["rx_packets"]:
        return f"metrics say b was sent {b_tx} frames, its receiver got {rb['total']['rx_packets']}"
    # The vhost-user ports' own counters, per virtqueue (even: the guest's receive queue, odd: its transmit
    # queue): what a's guest sent, what b's guest received, and show's sums of the rest.
    per_q = {}
    for (name, lab), v in s.items():
        d = dict(lab)
        if name.startswith("vhostd_queue_"):
            per_q[(d["port"], name[len("vhostd_queue_"):-len("_total")], int(d["queue"]))] = v
    if per_q.get(("a", "packets", 1)) != N or per_q.get(("b", "packets", 0)) != rb["total"]["rx_packets"]:
        return (f"per-queue packets: a's transmit queue {per_q.get(('a', 'packets', 1))} (sent {N}), b's receive "
                f"queue {per_q.get(('b', 'packets', 0))} (got {rb['total']['rx_packets']})")
    info = {p["name"]: p["info"] for p in r.ctl_json("show")["ports"]}
    for port in ("a", "b"):
        for field in ("bad_header", "too_big", "no_buffers", "gso_unsupported", "ring_errors"):
            got = sum(v for (pn, f, _), v in per_q.items() if pn == port and f == field)
            if got != info[port][field] or not any(k[:2] == (port, field) for k in per_q):
                return f"port {port} {field}: per-queue metrics sum to {got}, show says {info[port][field]}"
        lab = frozenset({("port", port), ("type", "vhost-user")})
        if s.get(("vhostd_port_notify_failures_total", lab)) != info[port]["notify_failures"]:
            return f"port {port} notify_failures: metrics {s.get(('vhostd_port_notify_failures_total', lab))}"
    for t in full["threads"]:
        lab = frozenset({("thread", str(t["thread"]))})
        for field in ("busy_cycles", "packets", "busy_rounds"):
            got = s.get((f"vhostd_thread_{field}_total", lab))
            if got != t[field]:
                return f"thread {t['thread']} {field}: metrics {got}, vhostctl stats {t[field]}"
        for field in ("sleeps", "sleep_timeouts"):  # an idle thread's sleeps go on: present, not compared
            if not isinstance(s.get((f"vhostd_thread_{field}_total", lab)), int):
                return f"thread {t['thread']}: no vhostd_thread_{field}_total"
    bridge = r.ctl_json("show")["bridge"]
    if s.get(("vhostd_fdb_entries", frozenset())) != bridge["fdb_entries"] or bridge["fdb_entries"] < 1:
        return f"vhostd_fdb_entries {s.get(('vhostd_fdb_entries', frozenset()))}, show says {bridge['fdb_entries']}"
    pc = subprocess.run(["promtool", "check", "metrics"], input=body, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True)
    if pc.returncode != 0:
        return f"promtool check metrics: exit {pc.returncode}: {pc.stdout.strip()}"
    for path, args, want in (("/", (), 404), ("/metricsx", (), 404), ("/metrics", ("-X", "POST"), 405)):
        code, _ = curl(addr, path, *args)
        if code != want:
            return f"{' '.join(args)} {path}: HTTP {code}, wanted {want}"
    host, port = addr.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as c:
        c.sendall(b"this is not http\r\n\r\n")
        first = c.recv(4096).split(b"\r\n")[0]
    if first != b"HTTP/1.1 400 Bad Request":
        return f"garbage request answered {first!r}"
    return None


def case_stuck_clients(r):
    """Clients that send nothing, trickle, or never read their answer do not delay the control socket or the
    next scrape, and are dropped at their deadline."""
    addr = start(r)
    host, port = addr.split(":")
    silent = socket.create_connection((host, int(port)))
    trickle = socket.create_connection((host, int(port)))
    trickle.sendall(b"GET /met")
    deaf = socket.socket()
    deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    deaf.connect((host, int(port)))
    deaf.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    t0 = time.time()
    r.ctl_cmd("show")  # vhostctl's own 30 s timeout is the liveness deadline
    code, _ = curl(addr)
    if code != 200:
        return f"a scrape beside the stuck clients: HTTP {code}"
    # Each stuck client is closed by vhostd within a liveness bound (its deadline is seconds), the trickling one
    # although it keeps sending a byte every half second.
    for name, s in (("silent", silent), ("trickling", trickle)):
        s.settimeout(0.5)
        while True:
            if time.time() - t0 > 30:
                return f"{name} client still open after 30 s"
            try:
                if name == "trickling":
                    s.sendall(b"r")
                d = s.recv(4096)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                break
            if not d:
                break
            if d.startswith(b"HTTP/"):
                return f"{name} client got an answer: {d[:40]!r}"
    if r.vhostd.poll() is not None:
        return f"vhostd exited {r.vhostd.returncode}"
    for s in (silent, trickle, deaf):
        s.close()
    return None


def case_bad_address(r):
    """A --metrics value that is no address is a usage error naming it."""
    p = subprocess.run([test_switch.VHOSTD, "--socket", r.ctl, "--metrics", "1.2.3:80"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=30)
    if p.returncode != 2 or "'1.2.3'" not in p.stdout:
        return f"--metrics 1.2.3:80: exit {p.returncode}, {p.stdout.strip()!r}"
    return None


CASES = [("counters", case_counters), ("stuck_clients", case_stuck_clients), ("bad_address", case_bad_address)]

if __name__ == "__main__":
    test_switch.CASES = CASES
    sys.exit(test_switch.main())
