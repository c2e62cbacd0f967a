#!/usr/bin/env python3
"""vhostd, the poll-mode virtual switch, between real Linux guests (Debian 6.12 under QEMU, TCG) and the host.

Every scenario runs vhostd inside a network namespace of its own (its tap and veth interfaces live there, the
host's network is untouched), boots guests whose NICs are vhost-user ports of vhostd, and drives them through
their consoles: the guest runs tests/interop/guest/tests/switch-agent.sh, which executes what the host types
("VHDC ID COMMAND") and tags the output ("VHD-O ID ..."), so the host can start a receiver, wait until it
listens, then start the sender. The traffic itself only crosses vhostd. Checks:

  two guests + tap    ARP learning (vhostctl fdb: each guest's MAC on its port, the tap's on the tap port),
                      ping, UDP (2000 datagrams, loss/duplication/corruption per datagram) and TCP (8 MiB,
                      every byte checked) both ways between the guests and between each guest and the host;
                      vhostd's counters (vhostctl stats --json) equal the guests' drivers' and the tap's own
                      counters exactly, no errors; one guest killed and booted again while the other keeps
                      talking to the host, without losing a packet
  jumbo               ports with mtu=9000, guests at MTU 9000 (one from QEMU's host_mtu=9000, one set by hand):
                      8000-byte pings cross unfragmented, TCP
  vhostd restart      vhostd killed and started again under running guests, both ways of reconnecting: vhostd
                      as client of QEMU's server socket (server=on,wait=off), QEMU as reconnecting client
                      (reconnect=1) of vhostd's socket; traffic resumes
  af_packet           an af_packet port on a veth whose peer (another namespace) has an IP: ping, UDP, TCP

usage: test_switch_guest.py VHOSTD VHOSTCTL [case-or-scenario-substring]
Prints PASS/FAIL lines like tests/unit/harness.h. VHD_INTEROP_WORK is where the guest is built and cached
(default: the build directory's interop/, shared with test_guest.py).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from qemu_log import qemu_warnings

HERE = os.path.dirname(os.path.abspath(__file__))
VHOSTD, VHOSTCTL = (os.path.abspath(a) for a in sys.argv[1:3])
FILTER = sys.argv[3] if len(sys.argv) > 3 else ""
WORK = os.environ.get("VHD_INTEROP_WORK", os.path.join(os.path.dirname(os.path.dirname(VHOSTD)), "interop"))
HOSTPEER = os.path.join(HERE, "hostpeer.py")
HOST_IP, A_IP, B_IP, VETH_IP = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.9"
A_MAC, B_MAC = "52:54:00:00:00:0a", "52:54:00:00:00:0b"
UDP_N, TCP_BYTES = 2000, 8 << 20
T0 = time.time()
CONSOLE_TAIL = int(os.environ.get("VHD_CONSOLE_TAIL", "12"))  # console lines logged per guest on failure
QEMU_CPU = os.environ.get("VHD_QEMU_CPU", "max")
CONSOLE_DIR = os.environ.get("VHD_CONSOLE_DIR")  # if set, every boot's whole console is saved there


def log(msg):
    print(f"# [{time.time() - T0:6.1f}] {msg}", flush=True)


def run(cmd, check=True, timeout=30):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stdout.strip()}")
    return r


class CaseError(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise CaseError(msg)


# ------------------------------------------------------------------------------------------------ the rig


class Rig:
    """One scenario: a temporary directory, a network namespace, vhostd in it, guests, host-side peers."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"vhd-swg-{name}-")
        self.ctl = os.path.join(self.dir, "ctl.sock")
        tag = f"{os.getpid() % 10000}{name[:3]}"
        self.ns = f"vhdsw{tag}"
        self.ns2 = None
        self.tap = f"vhdt{tag}"
        self.vhostd = None
        self.vhostd_out = []
        self.procs = []
        self.guests = []
        self.host_ifaces = []  # (ifname, namespace) of the host's ends, for drop accounting
        run(["ip", "netns", "add", self.ns])
        self.nsrun("ip", "link", "set", "lo", "up")
        # No IPv6 in the namespace: the tap would chatter (router solicitations, MLD) and the counters compared
        # exactly below would move while being read.
        self.no_ipv6(self.ns)

    def no_ipv6(self, ns):
        self.nsrun("sh", "-c", "for f in all default; do echo 1 >/proc/sys/net/ipv6/conf/$f/disable_ipv6; done",
                   ns=ns, check=False)  # (no IPv6 at all on the host is fine too)

    def sock(self, port):
        return os.path.join(self.dir, f"{port}.sock")

    def nsrun(self, *cmd, ns=None, check=True, timeout=30):
        return run(["ip", "netns", "exec", ns or self.ns, *cmd], check=check, timeout=timeout)

    # ---------------------------------------------------------------- vhostd
    def start_vhostd(self, lines):
        cfg = os.path.join(self.dir, "vhostd.conf")
        with open(cfg, "w") as f:
            f.write("# written by test_switch_guest.py\n" + "\n".join(lines) + "\n")
        # `ip netns exec` execs vhostd in place: the pid is vhostd's.
        p = subprocess.Popen(["ip", "netns", "exec", self.ns, VHOSTD, "--config", cfg, "--socket", self.ctl,
                              "--log-level", "info"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        self.vhostd = p
        out = self.vhostd_out
        threading.Thread(target=lambda: [out.append(line.rstrip()) for line in p.stdout], daemon=True).start()
        # Up when its control socket answers (a killed vhostd's socket file may still be there: the new one
        # replaces it).
        for _ in range(1000):
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                    c.connect(self.ctl)
                return p
            except OSError:
                pass
            if p.poll() is not None:
                time.sleep(0.1)
                raise RuntimeError(f"vhostd exited {p.returncode}: {' / '.join(out[-10:])}")
            time.sleep(0.01)
        raise RuntimeError("vhostd never opened its control socket")

    def stop_vhostd(self, sig=signal.SIGTERM):
        """@return vhostd's exit status."""
        p = self.vhostd
        if p.poll() is None:
            p.send_signal(sig)
        try:
            return p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise CaseError(f"vhostd did not exit on signal {sig}")

    def ctl_json(self, *args):
        r = subprocess.run([VHOSTCTL, "--socket", self.ctl, "--json", *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        if r.returncode != 0:
            raise CaseError(f"vhostctl {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def stats(self):
        return {p["name"]: p for p in self.ctl_json("stats")["ports"]}

    def show(self):
        return {p["name"]: p for p in self.ctl_json("show")["ports"]}

    def fdb(self):
        return {e["mac"]: e["port"] for e in self.ctl_json("fdb")["entries"]}

    def wait_link(self, ports, up=True, timeout=30):
        end = time.time() + timeout
        while True:
            show = self.show()
            if all((show[p]["link"] == "up") == up for p in ports):
                return show
            if time.time() > end:
                raise CaseError(f"ports {ports} not {'up' if up else 'down'} after {timeout} s: "
                                f"{ {p: show[p]['link'] for p in ports} }")
            time.sleep(0.1)

    def tap_up(self, ip=HOST_IP):
        """The tap vhostd created in the namespace gets the host's address (again after a vhostd restart)."""
        for _ in range(300):
            if self.nsrun("ip", "link", "show", self.tap, check=False).returncode == 0:
                break
            time.sleep(0.02)
        self.nsrun("ip", "addr", "add", f"{ip}/24", "dev", self.tap)
        self.nsrun("ip", "link", "set", self.tap, "up")

    def iface_stats(self, ifname, ns=None):
        r = self.nsrun("sh", "-c", f"cd /sys/class/net/{ifname}/statistics && cat rx_packets tx_packets rx_bytes "
                                   f"tx_bytes rx_dropped tx_dropped", ns=ns)
        return dict(zip(("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped"),
                        map(int, r.stdout.split())))

    # ---------------------------------------------------------------- cleanup
    def cleanup(self):
        for g in self.guests:
            g.kill()
        for p in self.procs + ([self.vhostd] if self.vhostd else []):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL) if p is not self.vhostd else p.kill()
                except ProcessLookupError:
                    pass
                p.wait()
        for ns in (self.ns, self.ns2):
            if ns:
                run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def vhostd_tail(self, n=12):
        return " / ".join(self.vhostd_out[-n:])


class HostNs:
    """The host's end in a network namespace: hostpeer.py and BusyBox ping."""

    def __init__(self, rig, ns, ip, name):
        self.rig, self.ns, self.ip, self.name = rig, ns, ip, name

    def start(self, *args):
        p = subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, HOSTPEER, *map(str, args)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
        self.rig.procs.append(p)
        return NsJob(p, f"{self.name} {args[0]}")

    def ping(self, ip, n=5):
        r = run(["ip", "netns", "exec", self.ns, "busybox", "ping", "-c", str(n), "-i", "0.2", "-W", "3", ip],
                check=False)
        return r.returncode, r.stdout.splitlines()


class NsJob:
    def __init__(self, p, what):
        self.p, self.what, self.lines = p, what, []
        self.ready_ev = threading.Event()

        def go():
            for line in p.stdout:
                line = line.rstrip()
                self.lines.append(line)
                if line.startswith("VHD-READY"):
                    self.ready_ev.set()
        self.t = threading.Thread(target=go, daemon=True)
        self.t.start()

    def ready(self, timeout=30):
        expect(self.ready_ev.wait(timeout), f"{self.what} never listened: {self.lines[-5:]}")

    def result(self, timeout=120):
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()
        self.t.join(timeout=5)
        res = [line for line in self.lines if line.startswith("VHD-RESULT")]
        return (res[-1] if res else f"VHD-RESULT {self.what} fail no result: {self.lines[-5:]}")


class Guest:
    """A QEMU guest running switch-agent.sh; commands go in through the serial console."""

    def __init__(self, rig, name, mac, ip, chardev, extra_append="", nic_extra=""):
        self.rig, self.name, self.mac, self.ip, self.chardev = rig, name, mac, ip, chardev
        self.extra_append, self.nic_extra = extra_append, nic_extra
        self.p = None
        rig.guests.append(self)

    def boot(self):
        self.lock = threading.Condition()
        self.out, self.rc, self.console = {}, {}, []
        self.agent = None
        self.next_id = 0
        append = (f"console=ttyS0 panic=-1 quiet loglevel=3 ipv6.disable=1 rdinit=/init vhd.test=switch-agent "
                  f"vhd.ip={self.ip}/24 {self.extra_append} {os.environ.get('VHD_GUEST_APPEND', '')}")
        cmd = ["qemu-system-x86_64", "-accel", "tcg", "-machine", "q35,memory-backend=mem", "-cpu", QEMU_CPU,
               "-smp", "1", "-m", "512M", "-object", "memory-backend-memfd,id=mem,size=512M,share=on",
               "-nographic", "-no-reboot", "-kernel", os.path.join(WORK, "vmlinuz"),
               "-initrd", os.path.join(WORK, "initrd.gz"), "-append", append,
               "-chardev", f"socket,id=chr0,{self.chardev}",
               "-netdev", "vhost-user,id=net0,chardev=chr0,queues=1",
               "-device", f"virtio-net-pci,netdev=net0,mac={self.mac},vectors=0{self.nic_extra}"]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, start_new_session=True)
        # This boot's reader fills this boot's containers only (a killed QEMU's last lines stay out of the next).
        threading.Thread(target=self._reader, args=(self.p, self.lock, self.out, self.rc, self.console),
                         daemon=True).start()
        return self

    def _reader(self, p, lock, out, rcs, console):
        pat = re.compile(r"VHD-O (\d+) (.*)")
        for line in p.stdout:
            line = line.rstrip("\r\n")
            with lock:
                console.append(line)
                m = pat.search(line)
                if m:
                    i, text = int(m.group(1)), m.group(2)
                    if text.startswith("VHD-RC "):
                        rcs[i] = int(text.split()[1])
                    else:
                        out.setdefault(i, []).append(text)
                elif line.startswith("VHD-AGENT ready") and p is self.p:
                    self.agent = line.split()[2] if len(line.split()) > 2 else "?"
                lock.notify_all()
        with lock:
            lock.notify_all()

    def wait_agent(self, timeout=90):
        with self.lock:
            ok = self.lock.wait_for(lambda: self.agent is not None or self.p.poll() is not None, timeout)
        expect(ok and self.agent is not None, f"{self.name}: no agent within {timeout} s (QEMU "
                                              f"{'exited ' + str(self.p.returncode) if self.p.poll() is not None else 'running'}): "
                                              f"{' | '.join(self.console[-15:])}")
        expect(self.agent == self.mac, f"{self.name}: eth0 has MAC {self.agent}, wanted {self.mac}")
        # By now QEMU has set up the vhost-user NIC: it had nothing to warn about.
        warnings = qemu_warnings(self.tail(1 << 30))
        expect(not warnings, f"{self.name}: QEMU warned: {' | '.join(warnings)}")
        return self

    def start(self, command):
        with self.lock:
            i = self.next_id
            self.next_id += 1
        expect(self.p.poll() is None, f"{self.name}: QEMU is gone (exit {self.p.returncode})")
        self.p.stdin.write(f"VHDC {i} {command}\n")
        self.p.stdin.flush()
        return GuestJob(self, i, command)

    def cmd(self, command, timeout=60):
        j = self.start(command)
        return j.wait(timeout)

    def ping(self, ip, n=5, size=None):
        s = f" -s {size}" if size else ""
        return self.cmd(f"ping -c {n} -i 0.2 -W 3{s} {ip}", timeout=n + 30)

    def counters(self):
        rc, out = self.cmd("cd /sys/class/net/eth0/statistics && echo VHD-STAT $(cat rx_packets tx_packets "
                           "rx_bytes tx_bytes rx_dropped tx_dropped rx_errors)")
        line = [x for x in out if x.startswith("VHD-STAT")]
        expect(rc == 0 and line, f"{self.name}: no counters: {out}")
        v = list(map(int, line[0].split()[1:]))
        return dict(zip(("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped",
                         "rx_errors"), v))

    def save_console(self):
        if CONSOLE_DIR and self.p:
            os.makedirs(CONSOLE_DIR, exist_ok=True)
            self.boots = getattr(self, "boots", 0) + 1
            with open(os.path.join(CONSOLE_DIR, f"{self.rig.name}-{self.name}-{self.boots}.log"), "w") as f:
                f.write("\n".join(self.tail(1 << 30)) + "\n")

    def kill(self):
        if self.p and self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait()
        if self.p and not getattr(self.p, "saved", False):
            time.sleep(0.2)
            self.save_console()
            self.p.saved = True

    def poweroff(self, timeout=30):
        if self.p and self.p.poll() is None:
            try:
                self.p.stdin.write(f"VHDC {self.next_id} exit\n")
                self.p.stdin.flush()
                self.p.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def tail(self, n=25):
        with self.lock:
            return list(self.console[-n:])


class GuestJob:
    def __init__(self, g, i, command):
        self.g, self.i, self.command = g, i, command
        self.what = f"{g.name}: {command.split()[0]} {command.split()[1] if len(command.split()) > 1 else ''}"

    def lines(self):
        with self.g.lock:
            return list(self.g.out.get(self.i, []))

    def ready(self, timeout=30):
        with self.g.lock:
            ok = self.g.lock.wait_for(lambda: any(x.startswith("VHD-READY") for x in self.g.out.get(self.i, []))
                                      or self.i in self.g.rc or self.g.p.poll() is not None, timeout)
        expect(ok and any(x.startswith("VHD-READY") for x in self.lines()),
               f"{self.what} never listened: {self.lines()[-5:]}")

    def wait(self, timeout=120):
        with self.g.lock:
            done = self.g.lock.wait_for(lambda: self.i in self.g.rc or self.g.p.poll() is not None, timeout)
            rc = self.g.rc.get(self.i)
        if not done or rc is None:
            raise CaseError(f"{self.g.name}: '{self.command}' did not finish within {timeout} s "
                            f"(output {self.lines()[-5:]})")
        return rc, self.lines()

    def result(self, timeout=120):
        rc, out = self.wait(timeout)
        res = [line for line in out if line.startswith("VHD-RESULT")]
        return res[-1] if res else f"VHD-RESULT {self.what} fail rc={rc} {out[-5:]}"


# ------------------------------------------------------------------------------------------------ traffic


def ping_ok(who, rc, out, n):
    summary = [x for x in out if "packets transmitted" in x]
    expect(rc == 0 and summary and f"{n} packets received" in summary[0],
           f"{who}: ping: rc {rc}, {summary[0] if summary else out[-3:]}")
    return summary[0]


def peer_start(peer, *args):
    """peer: a Guest (nettool) or a HostNs (hostpeer.py)."""
    if isinstance(peer, Guest):
        return peer.start("nettool " + " ".join(map(str, args)))
    return peer.start(*args)


def udp(rig, src, dst, port, n=UDP_N):
    """n datagrams src -> dst, each checked. None may be duplicated, corrupted or stray; any lost must have been
    counted as dropped on the way: by vhostd (the output port's tx_drops, e.g. a guest's full receive ring), the
    receiving guest's driver (rx_dropped) or the host's side of a tap or veth (its tx_dropped: vhostd or the
    peer did not read in time)."""
    before = drop_counters(rig, dst)
    r = peer_start(dst, "udp-recv", port, n, 3000)
    r.ready()
    s = peer_start(src, "udp-send", dst.ip, port, n)
    sres, rres = s.result(), r.result()
    expect(" ok " in sres, f"UDP {src.name}->{dst.name}: {sres}")
    m = re.search(r"received (\d+) of (\d+), lost (\d+), dup (\d+), corrupt (\d+), stray (\d+)", rres)
    expect(m, f"UDP {src.name}->{dst.name}: {rres}")
    got, _, lost, dup, bad, stray = map(int, m.groups())
    expect(not (dup or bad or stray), f"UDP {src.name}->{dst.name}: {rres}")
    if lost:
        after = drop_counters(rig, dst)
        counted = {k: after[k] - before[k] for k in after if after[k] != before[k]}
        expect(sum(counted.values()) >= lost, f"UDP {src.name}->{dst.name}: {lost} lost, drops counted on the way "
                                              f"{counted or 'none'}: {rres}")
        log(f"UDP {src.name}->{dst.name}: {lost} of {n} lost, all counted: {counted}")
    return lost


def drop_counters(rig, dst):
    """Every drop counter on the way to dst (see udp())."""
    c = {f"{p}.tx_drops": v["tx_drops"] for p, v in rig.stats().items()}
    c.update({f"{p}.rx_drops": v["rx_drops"] for p, v in rig.stats().items()})
    if isinstance(dst, Guest):
        g = dst.counters()
        c[f"{dst.name}.rx_dropped"] = g["rx_dropped"]
    for ifname, ns in rig.host_ifaces:
        t = rig.iface_stats(ifname, ns=ns)
        c[f"{ifname}.tx_dropped"], c[f"{ifname}.rx_dropped"] = t["tx_dropped"], t["rx_dropped"]
    return c


def tcp(src, dst, port, nbytes=TCP_BYTES):
    r = peer_start(dst, "tcp-recv", port, nbytes)
    r.ready()
    t = time.time()
    s = peer_start(src, "tcp-send", dst.ip, port, nbytes)
    sres, rres = s.result(180), r.result(180)
    dt = time.time() - t
    expect(" ok " in sres, f"TCP {src.name}->{dst.name}: {sres}")
    expect(" ok " in rres, f"TCP {src.name}->{dst.name}: {rres}")
    return f"{nbytes >> 20} MiB in {dt:.1f} s"


def check_no_errors(rig, where):
    s = rig.stats()
    bad = {n: p["errors"] for n, p in s.items() if p["errors"]}
    expect(not bad, f"{where}: vhostd counted errors {bad}")
    show = rig.show()
    for n, p in show.items():
        info = p.get("info", {})
        for k in ("bad_header", "ring_errors", "rx_errors", "tx_errors", "gso_unsupported", "rx_too_big"):
            expect(not info.get(k), f"{where}: port {n} reports {k}={info.get(k)}")
    return s


def quiet_snapshot(rig, guests, taps=()):
    """Guest driver counters, tap counters and vhostd's, at a moment nothing moved in between."""
    last = None
    for i in range(6):
        if i:
            log(f"counters moved while being read, again: {last}")
        g1 = {g.name: g.counters() for g in guests}
        t1 = {t: rig.iface_stats(t) for t in taps}
        s = rig.stats()
        g2 = {g.name: g.counters() for g in guests}
        t2 = {t: rig.iface_stats(t) for t in taps}
        if g1 == g2 and t1 == t2:
            return g1, t1, s
        last = (g1, g2)
        time.sleep(0.5)
    raise CaseError(f"counters never held still: {last}")


def compare_guest(port, g, s):
    """Frames the guest's driver sent are those vhostd received on its port, and the other way round."""
    errs = []
    if g["tx_packets"] != s["rx_packets"] or g["tx_bytes"] != s["rx_bytes"]:
        errs.append(f"{port}: guest sent {g['tx_packets']} frames / {g['tx_bytes']} B, vhostd received "
                    f"{s['rx_packets']} / {s['rx_bytes']} B")
    if g["rx_packets"] + g["rx_dropped"] != s["tx_packets"] or g["rx_bytes"] != s["tx_bytes"]:
        errs.append(f"{port}: vhostd sent {s['tx_packets']} frames / {s['tx_bytes']} B, guest received "
                    f"{g['rx_packets']} (+{g['rx_dropped']} dropped) / {g['rx_bytes']} B")
    if g["rx_dropped"] or g["rx_errors"]:
        errs.append(f"{port}: guest driver dropped {g['rx_dropped']}, errors {g['rx_errors']}")
    return errs


def compare_tap(port, t, s):
    """tap interface counters are the kernel's view: its tx went to vhostd, its rx came from vhostd."""
    errs = []
    if t["tx_packets"] != s["rx_packets"]:
        errs.append(f"{port}: the kernel sent {t['tx_packets']} frames into the tap (+{t['tx_dropped']} dropped), "
                    f"vhostd received {s['rx_packets']}")
    if t["rx_packets"] + t["rx_dropped"] != s["tx_packets"]:
        errs.append(f"{port}: vhostd wrote {s['tx_packets']} frames to the tap, the kernel received "
                    f"{t['rx_packets']} (+{t['rx_dropped']} dropped)")
    return errs


# ------------------------------------------------------------------------------------------------ scenarios
# Each scenario yields (case name, function) pairs; a function returns a detail string or raises CaseError.


def scenario_two_guests(rig):
    """vm1, vm2 (vhost-user, vhostd listening), host0 (tap, 10.0.0.1 in the namespace)."""
    rig.start_vhostd([f"add-port vm1 vhost-user path={rig.sock('vm1')}",
                      f"add-port vm2 vhost-user path={rig.sock('vm2')}",
                      f"add-port host0 tap ifname={rig.tap}"])
    rig.tap_up()
    rig.host_ifaces.append((rig.tap, rig.ns))
    host = HostNs(rig, rig.ns, HOST_IP, "host")
    a = Guest(rig, "vm1", A_MAC, A_IP, f"path={rig.sock('vm1')}").boot()
    b = Guest(rig, "vm2", B_MAC, B_IP, f"path={rig.sock('vm2')}").boot()
    a.wait_agent()
    b.wait_agent()
    tap_mac = rig.nsrun("cat", f"/sys/class/net/{rig.tap}/address").stdout.strip()
    log(f"two guests up; tap MAC {tap_mac}")

    def arp_learning():
        show = rig.wait_link(["vm1", "vm2", "host0"])
        for p in ("vm1", "vm2"):
            expect(show[p]["info"].get("ring") == "split" and show[p]["info"].get("connected") is True,
                   f"{p}: {show[p]['info']}")
        out = []
        for g, ip in ((a, B_IP), (b, HOST_IP), (a, HOST_IP)):
            rc, lines = g.cmd(f"arping -f -c 3 -w 5 -I eth0 {ip}", timeout=30)  # -f: done at the first reply
            rec = [x for x in lines if "eceived" in x]
            expect(rc == 0 and rec and "Received 0 " not in rec[0], f"{g.name} arping {ip}: rc {rc} {lines[-3:]}")
            out.append(f"{g.name}->{ip}: {rec[0].strip()}")
        fdb = rig.fdb()
        want = {A_MAC: "vm1", B_MAC: "vm2", tap_mac: "host0"}
        for mac, port in want.items():
            expect(fdb.get(mac) == port, f"fdb {fdb}: wanted {mac} on {port}")
        return f"fdb {len(fdb)} entries, all three on their ports"

    def ping():
        res = []
        for g, ip in ((a, B_IP), (a, HOST_IP), (b, A_IP), (b, HOST_IP)):
            rc, out = g.ping(ip)
            res.append(ping_ok(f"{g.name}->{ip}", rc, out, 5))
        for ip in (A_IP, B_IP):
            rc, out = host.ping(ip)
            res.append(ping_ok(f"host->{ip}", rc, out, 5))
        return "6 x 5 pings answered"

    def udp_all():
        before = rig.stats()
        res = []
        for src, dst, port in ((a, b, 7101), (b, a, 7102), (a, host, 7103), (host, a, 7104), (b, host, 7105),
                               (host, b, 7106)):
            res.append(udp(rig, src, dst, port))
        after = check_no_errors(rig, "after UDP")
        drops = {p: after[p]["tx_drops"] - before[p]["tx_drops"] for p in after}
        return f"6 x {UDP_N} datagrams, lost {res} (all counted); switch tx_drops during: {drops}"

    def tcp_all():
        before = rig.stats()
        res = []
        for src, dst, port in ((a, b, 7201), (b, a, 7202), (a, host, 7203), (host, a, 7204), (b, host, 7205),
                               (host, b, 7206)):
            res.append(f"{src.name}->{dst.name} {tcp(src, dst, port)}")
        # All at once, a triangle: every port receives and transmits a stream at the same time.
        t = time.time()
        rs = [peer_start(dst, "tcp-recv", port, 2 * TCP_BYTES) for dst, port in ((b, 7211), (host, 7212), (a, 7213))]
        for r in rs:
            r.ready()
        ss = [peer_start(src, "tcp-send", dst.ip, port, 2 * TCP_BYTES)
              for src, dst, port in ((a, b, 7211), (b, host, 7212), (host, a, 7213))]
        for j in ss + rs:
            out = j.result(180)
            expect(" ok " in out, f"concurrent TCP: {out}")
        res.append(f"concurrently vm1->vm2, vm2->host, host->vm1 {2 * TCP_BYTES >> 20} MiB each in "
                   f"{time.time() - t:.1f} s")
        after = check_no_errors(rig, "after TCP")
        drops = {p: after[p]["tx_drops"] - before[p]["tx_drops"] for p in after}
        return "; ".join(res) + f"; switch tx_drops (full guest rings, retransmitted): {drops}"

    def counters():
        g, t, s = quiet_snapshot(rig, [a, b], [rig.tap])
        check_no_errors(rig, "counters")
        errs = compare_guest("vm1", g["vm1"], s["vm1"]) + compare_guest("vm2", g["vm2"], s["vm2"]) + \
            compare_tap("host0", t[rig.tap], s["host0"])
        expect(not errs, "; ".join(errs))
        # The rx side of the switch: whatever came in went somewhere or was counted.
        rx = sum(p["rx_packets"] for p in s.values())
        return (f"vm1 rx {s['vm1']['rx_packets']}/tx {s['vm1']['tx_packets']}, vm2 rx {s['vm2']['rx_packets']}/tx "
                f"{s['vm2']['tx_packets']}, host0 rx {s['host0']['rx_packets']}/tx {s['host0']['tx_packets']} = "
                f"guests' and tap's own counts; tx_drops {[s[p]['tx_drops'] for p in s]}, rx_drops "
                f"{[s[p]['rx_drops'] for p in s]}, {rx} frames in")

    def reboot():
        """vm2 is killed and booted again while vm1 pings and streams UDP to the host."""
        n_udp = 3000
        drops0 = drop_counters(rig, host)
        r = host.start("udp-recv", 7301, n_udp, 5000)
        r.ready()
        pinger = a.start(f"ping -c 100 -i 0.1 -W 3 {HOST_IP}")
        sender = a.start(f"nettool udp-send {HOST_IP} 7301 {n_udp}")
        time.sleep(1)
        b.kill()
        rig.wait_link(["vm2"], up=False, timeout=10)
        t = time.time()
        b.boot()
        b.wait_agent()
        boot_s = time.time() - t
        rc, out = b.ping(A_IP)
        ping_ok("vm2 (rebooted)->vm1", rc, out, 5)
        rc, out = b.ping(HOST_IP)
        ping_ok("vm2 (rebooted)->host", rc, out, 5)
        rc, out = pinger.wait(60)
        summary = ping_ok("vm1->host during the reboot", rc, out, 100)
        ures = sender.result(60)
        expect(" ok " in ures, f"vm1 UDP to host during the reboot: {ures}")
        rres = r.result(60)
        if " ok " not in rres:
            drops1 = drop_counters(rig, host)
            raise CaseError(f"host's UDP from vm1 during the reboot: {rres}; drop counters moved: "
                            f"{ {k: drops1[k] - drops0[k] for k in drops1 if drops1[k] != drops0[k]} }")
        tres = tcp(b, host, 7302)
        tres2 = tcp(a, b, 7303)
        # vm1's counters still match vhostd's exactly (vm2's restarted from zero with its new driver)
        g, _, s = quiet_snapshot(rig, [a])
        errs = compare_guest("vm1", g["vm1"], s["vm1"])
        expect(not errs, "; ".join(errs))
        check_no_errors(rig, "after the reboot")
        return (f"vm2 back in {boot_s:.1f} s; vm1->host meanwhile: {summary}, {n_udp} datagrams none lost; "
                f"TCP vm2->host {tres}, vm1->vm2 {tres2}")

    yield "switch_guest_arp_learning", arp_learning
    yield "switch_guest_ping", ping
    yield "switch_guest_udp", udp_all
    yield "switch_guest_tcp", tcp_all
    yield "switch_guest_counters_exact", counters
    yield "switch_guest_reboot_while_other_talks", reboot


def scenario_jumbo(rig):
    rig.start_vhostd([f"add-port vm1 vhost-user path={rig.sock('vm1')} mtu=9000",
                      f"add-port vm2 vhost-user path={rig.sock('vm2')} mtu=9000"])
    # vm1 learns its MTU from QEMU (host_mtu= offers VIRTIO_NET_F_MTU; QEMU, not the back-end, owns the config
    # space); vm2 boots at 1500 and is set to 9000 by hand.
    a = Guest(rig, "vm1", A_MAC, A_IP, f"path={rig.sock('vm1')}", nic_extra=",host_mtu=9000").boot()
    b = Guest(rig, "vm2", B_MAC, B_IP, f"path={rig.sock('vm2')}").boot()
    a.wait_agent()
    b.wait_agent()

    def jumbo():
        show = rig.wait_link(["vm1", "vm2"])
        expect(show["vm1"]["mtu"] == 9000 and show["vm2"]["mtu"] == 9000, f"port MTUs {show}")
        booted_mtu = {}
        for g in (a, b):
            rc, out = g.cmd("cat /sys/class/net/eth0/mtu; ip link set eth0 mtu 9000 && cat /sys/class/net/eth0/mtu")
            expect(rc == 0 and len(out) == 2 and out[1] == "9000", f"{g.name}: mtu 9000: rc {rc} {out}")
            booted_mtu[g.name] = out[0]
        expect(booted_mtu == {"vm1": "9000", "vm2": "1500"}, f"guests booted with MTUs {booted_mtu}, wanted 9000 "
                                                              f"(host_mtu=9000) and 1500")
        rc, out = a.ping(B_IP, 1)  # ARP resolved before the counted pings
        ping_ok("vm1->vm2", rc, out, 1)
        s0 = rig.stats()
        rc, out = a.ping(B_IP, 5, size=8000)
        ping_ok("vm1->vm2 -s 8000", rc, out, 5)
        s1 = rig.stats()
        # 5 requests of 14 + 20 + 8 + 8000 bytes each way, whole (fragments would be 6 frames each)
        dpk, dby = s1["vm1"]["rx_packets"] - s0["vm1"]["rx_packets"], s1["vm1"]["rx_bytes"] - s0["vm1"]["rx_bytes"]
        expect(5 <= dpk <= 7 and dby >= 5 * 8042, f"vm1 sent {dpk} frames / {dby} B for 5 pings of 8000 bytes")
        expect(s1["vm2"]["tx_drops"] == s0["vm2"]["tx_drops"], "vm2 tx_drops grew during the pings")
        rc, out = b.ping(A_IP, 5, size=8000)
        ping_ok("vm2->vm1 -s 8000", rc, out, 5)
        t1 = tcp(a, b, 7401)
        t2 = tcp(b, a, 7402)
        g, _, s = quiet_snapshot(rig, [a, b])
        errs = compare_guest("vm1", g["vm1"], s["vm1"]) + compare_guest("vm2", g["vm2"], s["vm2"])
        expect(not errs, "; ".join(errs))
        check_no_errors(rig, "jumbo")
        return (f"guests booted with MTU {booted_mtu}; 8042-byte frames whole ({dpk} frames, "
                f"{dby} B for 5 pings); TCP vm1->vm2 {t1}, vm2->vm1 {t2}")

    yield "switch_guest_jumbo_mtu9000", jumbo


def scenario_restart(rig):
    """vm1: QEMU listens (server=on,wait=off), vhostd connects (client). vm2: vhostd listens, QEMU connects
    with reconnect=1. vhostd is stopped (SIGTERM) and started again, then killed (SIGKILL) and started again."""
    config = [f"add-port vm1 vhost-user path={rig.sock('vm1')} client",
              f"add-port vm2 vhost-user path={rig.sock('vm2')}",
              f"add-port host0 tap ifname={rig.tap}"]
    host = HostNs(rig, rig.ns, HOST_IP, "host")
    a = Guest(rig, "vm1", A_MAC, A_IP, f"path={rig.sock('vm1')},server=on,wait=off").boot()
    for _ in range(500):  # QEMU's socket first, for vhostd to connect to
        if os.path.exists(rig.sock("vm1")):
            break
        time.sleep(0.01)
    rig.start_vhostd(config)
    rig.tap_up()
    b = Guest(rig, "vm2", B_MAC, B_IP, f"path={rig.sock('vm2')},reconnect=1").boot()
    a.wait_agent()
    b.wait_agent()
    res = {"vm1": [], "vm2": []}
    err = {"vm1": [], "vm2": []}

    def reach(g, what, since):
        """g pings the host until it answers (30 s), then 5 pings must all be answered."""
        rc, out = g.cmd(f"i=0; until ping -c 1 -W 1 {HOST_IP} >/dev/null; do i=$((i+1)); [ $i -lt 30 ] || "
                        f"exit 1; done", timeout=60)
        if rc != 0:
            err[g.name].append(f"{what}: host unreachable for 30 s")
            return False
        back = time.time() - since
        rc, out = g.ping(HOST_IP)
        try:
            ping_ok(f"{g.name}->host {what}", rc, out, 5)
        except CaseError as e:
            err[g.name].append(str(e))
            return False
        res[g.name].append(f"{what}: answered {back:.1f} s after vhostd started")
        return True

    def link_times(since, what):
        """How long after vhostd started each port's front-end was connected (vhostctl show)."""
        end, up = time.time() + 20, {}
        while len(up) < 2 and time.time() < end:
            show = rig.show()
            for p in ("vm1", "vm2"):
                if p not in up and show[p]["link"] == "up":
                    up[p] = time.time() - since
            time.sleep(0.05)
        for p in ("vm1", "vm2"):
            if p in up:
                res[p].append(f"{what}: connected after {up[p]:.1f} s")
            else:
                err[p].append(f"{what}: port {p} not connected 20 s after vhostd started "
                              f"({rig.show()[p]['info']})")
        return len(up) == 2

    for g in (a, b):
        reach(g, "first boot", time.time())
    res["vm1"], res["vm2"] = [], []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        name = "SIGTERM" if sig == signal.SIGTERM else "SIGKILL"
        rc = rig.stop_vhostd(sig)
        if sig == signal.SIGTERM and rc != 0:
            err["vm1"].append(f"vhostd exited {rc} on SIGTERM: {rig.vhostd_tail()}")
        time.sleep(2.0)  # vhostd stays away a while: QEMU notices, the reconnecting client retries in vain
        t = time.time()
        rig.start_vhostd(config)
        rig.tap_up()
        link_times(t, f"restart after {name}")
        ok = [reach(g, f"after {name}", t) for g in (a, b)]
        if all(ok):
            try:
                tr = tcp(a, b, 7500 + int(sig))
                rc, out = host.ping(A_IP)
                ping_ok("host->vm1", rc, out, 5)
                rc, out = host.ping(B_IP)
                ping_ok("host->vm2", rc, out, 5)
                for g in ("vm1", "vm2"):
                    res[g].append(f"TCP vm1->vm2 {tr}")
            except CaseError as e:
                for g in ("vm1", "vm2"):
                    err[g].append(f"after {name}: {e}")
    try:
        check_no_errors(rig, "restart")
    except CaseError as e:
        err["vm1"].append(str(e))
        err["vm2"].append(str(e))

    def verdict(g):
        def f():
            expect(not err[g], "; ".join(err[g]))
            return "; ".join(res[g])
        return f

    yield "switch_guest_vhostd_restart_qemu_server", verdict("vm1")
    yield "switch_guest_vhostd_restart_qemu_reconnect", verdict("vm2")


def scenario_af_packet(rig):
    """vm1 (vhost-user) and p0 (af_packet on a veth whose peer, in a second namespace, is 10.0.0.9)."""
    rig.ns2 = rig.ns + "p"
    va, vb = rig.tap.replace("vhdt", "vhdv") + "a", rig.tap.replace("vhdt", "vhdv") + "b"
    run(["ip", "netns", "add", rig.ns2])
    rig.no_ipv6(rig.ns2)
    rig.nsrun("ip", "link", "add", va, "type", "veth", "peer", "name", vb, "netns", rig.ns2)
    rig.nsrun("ip", "link", "set", va, "up")
    rig.nsrun("ip", "link", "set", "lo", "up", ns=rig.ns2)
    rig.nsrun("ip", "addr", "add", f"{VETH_IP}/24", "dev", vb, ns=rig.ns2)
    rig.nsrun("ip", "link", "set", vb, "up", ns=rig.ns2)
    rig.start_vhostd([f"add-port vm1 vhost-user path={rig.sock('vm1')}", f"add-port p0 af_packet ifname={va}"])
    peer = HostNs(rig, rig.ns2, VETH_IP, "veth peer")
    rig.host_ifaces += [(va, rig.ns), (vb, rig.ns2)]
    a = Guest(rig, "vm1", A_MAC, A_IP, f"path={rig.sock('vm1')}").boot()
    a.wait_agent()
    peer_mac = rig.nsrun("cat", f"/sys/class/net/{vb}/address", ns=rig.ns2).stdout.strip()

    def af_packet():
        rig.wait_link(["vm1", "p0"])
        rc, out = a.ping(VETH_IP)
        ping_ok("vm1->veth peer", rc, out, 5)
        rc, out = peer.ping(A_IP)
        ping_ok("veth peer->vm1", rc, out, 5)
        fdb = rig.fdb()
        expect(fdb.get(peer_mac) == "p0" and fdb.get(A_MAC) == "vm1", f"fdb {fdb}: wanted {peer_mac} on p0")
        u1 = udp(rig, a, peer, 7601)
        u2 = udp(rig, peer, a, 7602)
        errs = []
        res = []
        for src, dst, port in ((a, peer, 7603), (peer, a, 7604)):
            try:
                res.append(f"TCP {src.name}->{dst.name} {tcp(src, dst, port)}")
            except CaseError as e:
                errs.append(str(e))
        s = rig.stats()
        show = rig.show()
        if errs:
            raise CaseError("; ".join(errs) + f" | stats p0 {s['p0']}, vm1 {s['vm1']}; p0 info {show['p0']['info']}")
        check_no_errors(rig, "af_packet")
        g, _, s = quiet_snapshot(rig, [a])
        errs = compare_guest("vm1", g["vm1"], s["vm1"])
        expect(not errs, "; ".join(errs))
        return f"ping both ways, UDP {UDP_N} each way (lost {u1}, {u2}), {'; '.join(res)}; p0 tx_drops {s['p0']['tx_drops']}"

    yield "switch_guest_af_packet_veth", af_packet


SCENARIOS = [
    ("two_guests", scenario_two_guests, ["switch_guest_arp_learning", "switch_guest_ping", "switch_guest_udp",
                                         "switch_guest_tcp", "switch_guest_counters_exact",
                                         "switch_guest_reboot_while_other_talks"]),
    ("jumbo", scenario_jumbo, ["switch_guest_jumbo_mtu9000"]),
    ("restart", scenario_restart, ["switch_guest_vhostd_restart_qemu_server",
                                   "switch_guest_vhostd_restart_qemu_reconnect"]),
    ("af_packet", scenario_af_packet, ["switch_guest_af_packet_veth"]),
]


def main():
    # meson's timeout sends SIGTERM: unwind through the running scenario's cleanup (QEMU, vhostd, namespaces).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    failed = 0

    def report(name, err, secs, detail=""):
        nonlocal failed
        if err:
            failed += 1
            print(f"FAIL: {name}: {err} ({secs:.1f} s)", flush=True)
        else:
            print(f"PASS: {name} ({secs:.1f} s)", flush=True)

    # the filter picks cases by name, or whole scenarios by theirs (two_guests, jumbo, restart, af_packet)
    scenarios = [s for s in SCENARIOS if FILTER in s[0] or any(FILTER in c for c in s[2])]
    missing = [t for t in ("qemu-system-x86_64", "ip", "busybox") if not shutil.which(t)]
    missing += [f for f in (VHOSTD, VHOSTCTL) if not os.access(f, os.X_OK)]
    prep_err = None
    if missing:
        prep_err = f"not installed: {' '.join(missing)} (scripts/deps.sh check installs them)"
    elif os.geteuid() != 0:
        prep_err = "needs root (network namespaces, tap and veth interfaces)"
    else:
        t0 = time.time()
        prep = subprocess.run([os.path.join(HERE, "guest", "prepare.sh"), WORK], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        for line in prep.stdout.splitlines():
            log(line)
        if prep.returncode != 0:
            prep_err = f"could not build the guest: {prep.stdout.strip()[-500:]}"
        log(f"guest prepared in {time.time() - t0:.1f} s")
    for sname, fn, names in scenarios:
        names = [n for n in names if FILTER in n or FILTER in sname]
        if prep_err:
            for n in names:
                report(n, prep_err, 0.0)
            continue
        t0 = time.time()
        rig = None
        done = set()
        pending = None  # the last case's verdict waits for the scenario's clean end
        try:
            rig = Rig(sname)
            for name, case in fn(rig):
                if name not in names:
                    continue
                err, detail = None, ""
                try:
                    detail = case()
                except CaseError as e:
                    err = str(e)
                except Exception as e:
                    err = f"{type(e).__name__}: {e}"
                if rig.vhostd and rig.vhostd.poll() is not None and not err:
                    err = f"vhostd died ({rig.vhostd.returncode}): {rig.vhostd_tail()}"
                if not err:
                    log(f"{name}: {detail}")
                if err:
                    for g in rig.guests:
                        if g.p:
                            for line in g.tail(CONSOLE_TAIL):
                                log(f"  {name} {g.name} | {line}")
                    log(f"  {name} vhostd | {rig.vhostd_tail(8)}")
                if pending:
                    report(*pending)
                pending = (name, err, time.time() - t0, detail)
                done.add(name)
                t0 = time.time()
            # The end of the scenario: guests power off, vhostd stops cleanly (under ASan: the leak check too).
            for g in rig.guests:
                g.poweroff()
            if rig.vhostd and rig.vhostd.poll() is None:
                rc = rig.stop_vhostd()
                if rc != 0 and pending:
                    pending = (pending[0], (pending[1] + "; " if pending[1] else "") +
                               f"vhostd exited {rc} on SIGTERM: {rig.vhostd_tail()}", pending[2], pending[3])
            if pending:
                report(*pending)
                pending = None
        except (Exception, SystemExit) as e:
            if pending:
                report(*pending)
            err = f"{sname} setup: {type(e).__name__}: {e}"
            if rig:
                for g in rig.guests:
                    if g.p:
                        for line in g.tail(15):
                            log(f"  {g.name} | {line}")
                err += f" | vhostd: {rig.vhostd_tail(8)}"
            for n in names:
                if n not in done:
                    report(n, err, time.time() - t0)
            if isinstance(e, SystemExit):
                if rig:
                    rig.cleanup()
                raise
        finally:
            if rig:
                rig.cleanup()
    log(f"total {time.time() - T0:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
