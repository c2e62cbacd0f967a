"""The one Python module the tests and benchmarks share for what they start: processes, network namespaces,
vhostd and vhostctl, QEMU guests running the Debian kernel (tests/interop/guest/), their host-side peers, DPDK's
testpmd with its hugepages, and the case runner that reports PASS/FAIL lines like tests/unit/harness.h.

What it offers:
  processes    spawn() / kill_group(): a child in its own process group, killed with its group on every path;
               Proc: such a child with its output in files (read while it runs); wait_path(); run()
  namespaces   netns_add(), netns_del(); Rig.nsrun()
  QEMU         qemu_cmd(): the one QEMU command line of a guest (kernel append, vhost-user chardev, NIC extras,
               queues, vIOMMU, memory); prepare_guest(); qemu_warnings(); Guest: a guest driven through its
               console agent (switch-agent.sh), agent_append() its kernel command line; GuestNs: a netns
               inside a guest as a udp()/tcp() peer; Scratch: the directory of a guest outside a Rig;
               callgrind(), CALLGRIND, Guest.instructions(): instruction counts of a program in a guest
  DPDK         prepare_hugepages(), testpmd_cmd(), dpdk_cleanup()
  vhostd       Vhostd: one vhostd (its config, control socket, vhostctl --json, stop); Rig: one scenario's
               temporary directory, network namespace, Vhostd and guests; HostNs / NsJob: hostpeer.py in a
               namespace; pktgen(), pktgen_json(): vhost-pktgen and its JSON result
  traffic      udp(), tcp(), ping_ok(), drop_counters(), check_no_errors(), quiet_snapshot(), compare_guest(),
               compare_tap()
  cases        run_scenarios(), verdict() (a PASS/FAIL/SKIP line), CaseError, expect(), log()

Import it as `sys.path.insert(0, <repo>/tests/lib); import vhdrig`, then
`vhdrig.configure(vhostd=..., vhostctl=..., pktgen=...)` before starting anything that needs them. Do not write
another copy of any of this in a test or a benchmark: extend it here.
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

LIB = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(LIB)
HOSTPEER = os.path.join(TESTS, "interop", "hostpeer.py")
PREPARE_GUEST = os.path.join(TESTS, "interop", "guest", "prepare.sh")
HOST_IP, A_IP, B_IP, VETH_IP = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.9"
A_MAC, B_MAC = "52:54:00:00:00:0a", "52:54:00:00:00:0b"
UDP_N, TCP_BYTES = 2000, 8 << 20
T0 = time.time()
CONSOLE_TAIL = int(os.environ.get("VHD_CONSOLE_TAIL", "12"))  # console lines logged per guest on failure
QEMU_CPU = os.environ.get("VHD_QEMU_CPU", "max")
CONSOLE_DIR = os.environ.get("VHD_CONSOLE_DIR")  # if set, every boot's whole console is saved there

# Set by configure(): the binaries under test and where the guest is built and cached.
VHOSTD = VHOSTCTL = PKTGEN = WORK = None


def configure(vhostd=None, vhostctl=None, work=None, pktgen=None):
    """vhostd, vhostctl, pktgen (vhost-pktgen): the binaries under test. work: where prepare_guest() builds and
    caches the guest (default $VHD_INTEROP_WORK, else interop/ beside the build directory vhostd is in)."""
    global VHOSTD, VHOSTCTL, PKTGEN, WORK
    VHOSTD = os.path.abspath(vhostd) if vhostd else None
    VHOSTCTL = os.path.abspath(vhostctl) if vhostctl else None
    PKTGEN = os.path.abspath(pktgen) if pktgen else None
    base = VHOSTD or VHOSTCTL
    WORK = work or os.environ.get("VHD_INTEROP_WORK") or (
        os.path.join(os.path.dirname(os.path.dirname(base)), "interop") if base else None)


# QEMU prefixes its own messages with the program name: "qemu-system-x86_64: warning: ...".
# libvirt's log of a domain puts a timestamp before it: "2026-12-07T15:07:42.873872Z qemu-system-x86_64: ...".
_WARNING = re.compile(r"^(?:\S+Z )?qemu-system-[\w-]+: .*\bwarning: ")


def qemu_warnings(lines):
    """QEMU's own warning lines among lines (QEMU's stderr merged into its stdout): a vhost-user NIC on our
    back-ends must start without any."""
    return [line for line in lines if _WARNING.match(line)]


def prepare_guest():
    """Build (or reuse) the guest kernel and initrd in WORK. @return None, or why it could not."""
    t0 = time.time()
    prep = subprocess.run([PREPARE_GUEST, WORK], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in prep.stdout.splitlines():
        log(line)
    if prep.returncode != 0:
        return f"could not build the guest: {prep.stdout.strip()[-500:]}"
    log(f"guest prepared in {time.time() - t0:.1f} s")
    return None


def agent_append(ip):
    """The kernel command line of a guest that runs the console agent (switch-agent.sh) with eth0 at ip/24
    (ip None: a guest without a NIC)."""
    return (f"console=ttyS0 panic=-1 quiet loglevel=3 ipv6.disable=1 rdinit=/init vhd.test=switch-agent "
            f"vhd.ip={ip + '/24' if ip else 'none'}")


def _ldd(path):
    """The shared objects path loads (the dynamic loader included), as absolute host paths."""
    out = subprocess.run(["ldd", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


def guest_payload(files):
    """A gzip'd cpio archive that puts files (host executables, e.g. our own binaries or iproute2's ip) into the
    guest at the same absolute paths, with every shared object they load, for qemu_cmd(payload=). The kernel
    unpacks archives concatenated after the initrd one after the other, so the cached initrd stays as it is.
    Built in WORK once per content (the key hashes every file). @return the combined initrd's path."""
    import hashlib
    want = []
    for f in files:
        for x in [os.path.abspath(f)] + _ldd(f):
            if x not in want:
                want.append(x)
    h = hashlib.sha256()
    for x in [os.path.join(WORK, "initrd.gz")] + want:
        h.update(x.encode())
        with open(x, "rb") as fh:
            h.update(fh.read())
    out = os.path.join(WORK, f"initrd-{h.hexdigest()[:16]}.gz")
    if os.path.exists(out):
        return out
    stage = tempfile.mkdtemp(dir=WORK, prefix="payload.")
    try:
        for x in want:
            dst = os.path.join(stage, x.lstrip("/"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy(os.path.realpath(x), dst)  # a symlink's target, under the name the loader asks for
        arc = subprocess.run(f"cd {stage} && find . | cpio -o -H newc --quiet | gzip -1", shell=True,
                             stdout=subprocess.PIPE, check=True).stdout
        with open(os.path.join(WORK, "initrd.gz"), "rb") as fh:
            base = fh.read()
        with open(out + ".tmp", "wb") as fh:
            fh.write(base + arc)
        os.replace(out + ".tmp", out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out


def qemu_cmd(append, chardev, mac, queues=1, nic_extra="", iommu=False, mem="512M", smp=None, initrd=None):
    """The QEMU command line of one test guest: the kernel and initrd prepare_guest() built in WORK, booted with
    the kernel command line append (plus $VHD_GUEST_APPEND), memfd memory of size mem shared with the back-end,
    and one virtio-net-pci NIC with MAC mac on a vhost-user netdev.
    chardev: the socket chardev's options after "socket,id=chr0,", e.g. "path=P" or "path=P,server=on,wait=off".
    queues: queue pairs (the NIC gets mq=on beyond one), and as many vCPUs unless smp says otherwise.
    nic_extra: more virtio-net-pci properties, each with its leading comma (",packed=on").
    iommu: the NIC sits behind QEMU's intel-iommu (device-iotlb, ATS), iommu_platform=on; the caller puts the
    kernel's IOMMU mode (intel_iommu=on ...) into append.
    chardev None: no NIC at all. initrd: another initrd than prepare_guest()'s (guest_payload()).
    $VHD_QEMU_EXTRA: more QEMU arguments, split at spaces, for diagnosis (-trace enable=vtd_inv_desc,file=F)."""
    machine, iommu_dev = "q35,memory-backend=mem", []
    nic = f"virtio-net-pci,netdev=net0,mac={mac},vectors=0{nic_extra}" + (",mq=on" if queues > 1 else "")
    if iommu:
        machine += ",kernel-irqchip=split"
        iommu_dev = ["-device", "intel-iommu,intremap=on,device-iotlb=on",  # before the NIC it translates for
                     "-device", "pcie-root-port,id=rp0,bus=pcie.0,chassis=1"]
        nic += ",bus=rp0,disable-legacy=on,iommu_platform=on,ats=on"
    append = f"{append} {os.environ.get('VHD_GUEST_APPEND', '')}".strip()
    return (["qemu-system-x86_64", "-accel", "tcg", "-machine", machine, "-cpu", QEMU_CPU,
             "-smp", str(smp or queues), "-m", mem, "-object", f"memory-backend-memfd,id=mem,size={mem},share=on",
             "-nographic", "-no-reboot", "-kernel", os.path.join(WORK, "vmlinuz"),
             "-initrd", initrd or os.path.join(WORK, "initrd.gz"), "-append", append]
            + os.environ.get("VHD_QEMU_EXTRA", "").split()
            + (["-chardev", f"socket,id=chr0,{chardev}",
                "-netdev", f"vhost-user,id=net0,chardev=chr0,queues={queues}"] + iommu_dev + ["-device", nic]
               if chardev else []))


# ------------------------------------------------------------------------------------------------ processes


def spawn(cmd, procs=None, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
          **kw):
    """Start cmd in a process group of its own (kill_group() ends it with all it started), text mode; it joins
    the list procs if given (for the owner's cleanup). @return the Popen."""
    p = subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=stderr, text=True, start_new_session=True, **kw)
    if procs is not None:
        procs.append(p)
    return p


def kill_group(p, timeout=None):
    """SIGKILL p's process group if p still runs, and reap p (waiting at most timeout seconds)."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass


def _ignore_sigpipe():
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


class Proc:
    """A child in its own process group with its output in files under workdir (stdout and stderr apart, or
    merged with merge), readable while it runs. sigpipe_ignored: testpmd dies of SIGPIPE when it stops a port
    whose vhost-user peer has gone, before it prints its statistics; it is started with SIGPIPE ignored."""
    seq = 0
    all = []  # every one started, for a last kill on the way out

    def __init__(self, name, args, workdir, merge=False, env=None, sigpipe_ignored=False):
        Proc.seq += 1
        self.name, self.args = name, args
        self.out_path = os.path.join(workdir, f"{name}.{Proc.seq}.out")
        self.err_path = None if merge else os.path.join(workdir, f"{name}.{Proc.seq}.err")
        with open(self.out_path, "w") as out, open(self.err_path or os.devnull, "w") as err:
            self.p = spawn(args, stdout=out, stderr=subprocess.STDOUT if merge else err, env=env,
                           preexec_fn=_ignore_sigpipe if sigpipe_ignored else None)
        Proc.all.append(self)

    @staticmethod
    def _read(path):
        if not path:
            return ""
        with open(path, errors="replace") as f:
            return f.read().replace("\x1b[2J", "").replace("\x1b[1;1H", "")  # testpmd clears the screen

    def out(self):
        return self._read(self.out_path)

    def err(self):
        return self._read(self.err_path)

    def lines(self, n):
        """The last n non-blank lines of its output (stdout, then stderr)."""
        return [line for line in (self.out() + self.err()).splitlines() if line.strip()][-n:]

    def tail(self, n=6):
        return f"{self.name}: " + " | ".join(self.lines(n))

    def running(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.running():
            self.p.send_signal(sig)

    def wait(self, timeout):
        """@return the exit status; raises CaseError if it does not exit within timeout seconds."""
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CaseError(f"{self.name} did not exit within {timeout:.0f} s; {self.tail()}")

    def stop(self, timeout=10):
        """SIGINT to its group, then SIGKILL if it does not exit in time. @return the exit status."""
        if self.running():
            try:
                os.killpg(self.p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.p.returncode

    def kill(self):
        kill_group(self.p, timeout=10)


def pktgen(procs, *args, stderr=subprocess.PIPE):
    """vhost-pktgen --json args (PKTGEN, see configure()), stdout piped for pktgen_json(); it joins the list
    procs. stderr: where its messages go (piped by default). @return the Popen."""
    p = subprocess.Popen([PKTGEN, "--json", *args], stdout=subprocess.PIPE, stderr=stderr, text=True)
    procs.append(p)
    return p


def pktgen_json(p, timeout=120):
    """vhost-pktgen's JSON result once it exits (within timeout seconds), from the last line it printed."""
    out, err = p.communicate(timeout=timeout)
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"vhost-pktgen exit {p.returncode}, no JSON: {out!r} {(err or '').strip()[-400:]!r}")


def netns_add(ns):
    """A new network namespace ns with its loopback up."""
    run(["ip", "netns", "add", ns])
    run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])


def netns_del(ns):
    run(["ip", "netns", "del", ns], check=False)


def wait_path(path, procs=(), timeout=20.0):
    """Wait until path exists; raises CaseError when one of procs (Proc or Popen) exits first, or at timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path):
            return
        for p in procs:
            pp = getattr(p, "p", p)
            if pp.poll() is not None:
                what = p.tail() if isinstance(p, Proc) else f"pid {pp.pid}"
                raise CaseError(f"{getattr(p, 'name', pp.args[0])} exited ({pp.returncode}) before {path} "
                                f"appeared; {what}")
        time.sleep(0.02)
    raise CaseError(f"{path} did not appear within {timeout:.0f} s")


# ------------------------------------------------------------------------------------------------ DPDK

HUGE_DIR = "/dev/hugepages"
TESTPMD = "dpdk-testpmd"
TESTPMD_MBUFS = 32768  # testpmd's mbuf pool (its default, 155456, needs 340 MB more)


def _meminfo(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def prepare_hugepages(want=1024, min_free=0):
    """At least want free 2 MiB hugepages (more are reserved when fewer are free) and hugetlbfs mounted on
    HUGE_DIR. @return None, or why not (fewer than min_free free, no permission, no mount)."""
    try:
        if _meminfo("HugePages_Free") < want:
            total = _meminfo("HugePages_Total") + want - _meminfo("HugePages_Free")
            with open("/proc/sys/vm/nr_hugepages", "w") as f:
                f.write(f"{total}\n")
    except OSError as e:
        return f"cannot reserve hugepages: {e}"
    free = _meminfo("HugePages_Free")
    if free < min_free:
        return (f"only {free} free 2 MiB hugepages (HugePages_Total {_meminfo('HugePages_Total')}), "
                f"need {min_free}")
    with open("/proc/mounts") as f:
        mounted = any(line.split()[1] == HUGE_DIR and line.split()[2] == "hugetlbfs" for line in f)
    if not mounted:
        try:
            os.makedirs(HUGE_DIR, exist_ok=True)
        except OSError as e:
            return f"cannot create {HUGE_DIR}: {e}"
        r = subprocess.run(["mount", "-t", "hugetlbfs", "nodev", HUGE_DIR], capture_output=True, text=True)
        if r.returncode != 0:
            return f"cannot mount hugetlbfs on {HUGE_DIR}: {r.stderr.strip()}"
    return None


def testpmd_cmd(cpu, prefix, vdevs, fwd, virtio_user=False, queues=1, extra=(), testpmd=None):
    """dpdk-testpmd (testpmd, default TESTPMD) on CPU cpu (its main and forwarding lcores share it), no PCI, 256 MB
    of hugepages in files named after prefix (dpdk_cleanup() removes them), vdevs, forwarding mode fwd on one
    core with NIC statistics every second, TESTPMD_MBUFS mbufs, and queues RX and TX queues per port; extra are
    more testpmd (not EAL) arguments. virtio_user: the vdevs are virtio-user ports (single-file segments, else the
    memory table needs more than 8 regions); else net_vhost ones, whose per-message log lines are kept out."""
    args = ["taskset", "-c", str(cpu), testpmd or TESTPMD, "--lcores", f"0@{cpu},1@{cpu}", "-n", "1", "-m", "256",
            "--no-pci", f"--file-prefix={prefix}"]
    for v in vdevs:
        args += ["--vdev", v]
    args += ["--single-file-segments"] if virtio_user else ["--log-level=lib.vhost.config:warning"]
    # --no-flush-rx: else testpmd drains and frees (uncounted) what arrived before it started forwarding
    args += ["--", f"--forward-mode={fwd}", "--nb-cores=1", "--stats-period=1", "--no-flush-rx"]
    if queues > 1:
        args += [f"--rxq={queues}", f"--txq={queues}"]
    return args + [f"--total-num-mbufs={TESTPMD_MBUFS}", *extra]


def dpdk_cleanup(prefix):
    """Remove what a DPDK process with --file-prefix=prefix left: its hugepage files and its runtime directory."""
    for f in os.listdir(HUGE_DIR) if os.path.isdir(HUGE_DIR) else []:
        if f.startswith(prefix):
            try:
                os.unlink(os.path.join(HUGE_DIR, f))
            except OSError:
                pass
    shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)


# ------------------------------------------------------------------------------------------------ docs

DOC_MARK = re.compile(r"^<!-- doc-test: (\S+) -->$")


def doc_blocks(*paths):
    """{name: text} of every fenced block in the Markdown files paths whose line before the fence is
    `<!-- doc-test: NAME -->`: the documented commands, configs and XML the tests run as they stand."""
    blocks = {}
    for path in paths:
        lines = open(path).read().splitlines()
        for i, line in enumerate(lines):
            m = DOC_MARK.match(line)
            if not m:
                continue
            if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
                raise RuntimeError(f"{path}:{i + 1}: doc-test mark not followed by a fenced block")
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            blocks[m.group(1)] = "\n".join(lines[i + 2:end]) + "\n"
    return blocks


def log(msg):
    print(f"# [{time.time() - T0:6.1f}] {msg}", flush=True)


def run(cmd, check=True, timeout=30):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stdout.strip()}")
    return r


class CaseError(RuntimeError):
    """A case's failure (or a step of its rig that failed), with the reason as its text."""


def verdict(name, err=None, t0=None, detail=""):
    """Print a case's line as tests/unit/harness.h does (scripts/check-summary.py counts them): PASS (with
    detail), FAIL: err, or SKIP: why when err is "SKIP: why"; with the seconds since t0 if given.
    @return 1 if the case failed, else 0."""
    secs = f" ({time.time() - t0:.1f} s)" if t0 is not None else ""
    if not err:
        print(f"PASS: {name}{' ' + detail if detail else ''}{secs}", flush=True)
        return 0
    if err.startswith("SKIP: "):
        print(f"SKIP: {name}: {err[6:]}{secs}", flush=True)
        return 0
    print(f"FAIL: {name}: {err}{secs}", flush=True)
    return 1


def expect(cond, msg):
    if not cond:
        raise CaseError(msg)


# ------------------------------------------------------------------------------------------------ vhostd


class Vhostd:
    """One vhostd at a time: its config file and control socket (ctl) in the directory dir, inside network
    namespace ns if given; its output (stdout and stderr) collected line by line in out while it runs."""

    def __init__(self, dir, ns=None):
        self.dir, self.ns = dir, ns
        self.ctl = os.path.join(dir, "ctl.sock")
        self.p = None
        self.out = []
        self.successor = None  # pid of the vhostd a `vhostctl upgrade` handed over to (not our child)

    def start(self, config=None, args=(), log_level="info", answer=True, stdout=None, wrap=()):
        """config: the config file's lines (a list) or text (None: no --config); args: more vhostd arguments.
        stdout: a file for vhostd's output instead of out (which then stays empty). wrap: what vhostd runs
        under, e.g. ["taskset", "-c", "1"]; the whole command line is kept in cmd.
        Returns once the control socket accepts a connection (a killed vhostd's socket file may still be there:
        the new one replaces it) and, with answer, vhostd answered `vhostctl show`: it listens before it reads
        its config and answers only after, so the config's ports (and their taps) exist by then.
        Raises CaseError if vhostd exits first. @return the Popen (also in p)."""
        cmd = [VHOSTD, "--socket", self.ctl]
        if config is not None:
            cfg = os.path.join(self.dir, "vhostd.conf")
            with open(cfg, "w") as f:
                f.write(config if isinstance(config, str) else
                        "# written by tests/lib/vhdrig.py\n" + "\n".join(config) + "\n")
            cmd += ["--config", cfg]
        if log_level:
            cmd += ["--log-level", log_level]
        # `ip netns exec` execs vhostd in place: the pid is vhostd's.
        self.cmd = (["ip", "netns", "exec", self.ns] if self.ns else []) + list(wrap) + cmd + list(args)
        p = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=stdout or subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
        self.p, self.out, self.reader, self.successor = p, [], None, None
        out = self.out
        if not stdout:
            self.reader = threading.Thread(target=lambda: [out.append(line.rstrip("\n")) for line in p.stdout],
                                           daemon=True)
            self.reader.start()
        for _ in range(1000):
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                    c.connect(self.ctl)
            except OSError:
                pass
            else:
                r = self.ctl_cmd("show", check=False) if answer else None
                if r and r.returncode != 0:
                    try:
                        p.wait(timeout=2)  # on its way out (a refused config line)?
                    except subprocess.TimeoutExpired:
                        raise CaseError(f"vhostctl show: exit {r.returncode}: {r.stderr.strip()}")
                if p.poll() is None:
                    return p
            if p.poll() is not None:
                if self.reader:
                    self.reader.join(timeout=5)
                raise CaseError(f"vhostd exited {p.returncode}: {' / '.join(out[-10:])}")
            time.sleep(0.01)
        raise CaseError("vhostd never opened its control socket")

    def ctl_cmd(self, *args, check=True, as_json=True, timeout=30):
        """vhostctl [--json] args against this vhostd. check: raise CaseError unless it exits 0.
        @return the CompletedProcess."""
        r = subprocess.run([VHOSTCTL, "--socket", self.ctl, *(["--json"] if as_json else []), *args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise CaseError(f"vhostctl {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        return r

    def ctl_json(self, *args):
        return json.loads(self.ctl_cmd(*args).stdout)

    def upgrade(self, binary=None, check=True):
        """vhostctl upgrade BINARY (default: the vhostd under test). On success the old process is gone and
        the new one (a child of the old, reparented) is tracked in successor, its output still in out.
        @return the CompletedProcess (stdout: the JSON result)."""
        old = self.pid
        r = self.ctl_cmd("upgrade", binary or VHOSTD, check=check, timeout=60)
        if r.returncode == 0:
            self.successor = json.loads(r.stdout)["pid"]
            if not _wait_gone(old, 10):
                raise CaseError(f"vhostd {old} still runs after handing over to {self.successor}")
        return r

    @property
    def pid(self):
        return self.successor or (self.p.pid if self.p else None)

    def running(self):
        if self.successor:
            return not _wait_gone(self.successor, 0)
        return self.p is not None and self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Signal vhostd and wait for it (SIGKILL and CaseError if it does not exit in time).
        @return (its exit status, all it printed); (None, "") if it was never started."""
        p = self.p
        if p is None:
            return None, ""
        if self.successor:
            # Not our child: signalled and waited for by pid; its exit status is lost to us (None).
            try:
                os.kill(self.successor, sig)
            except ProcessLookupError:
                pass
            gone = _wait_gone(self.successor, timeout)
            if not gone:
                self.kill()
                raise CaseError(f"vhostd {self.successor} did not exit on signal {sig}")
            if self.reader:
                self.reader.join(timeout=5)
            return None, "\n".join(self.out)
        if p.poll() is None:
            p.send_signal(sig)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise CaseError(f"vhostd did not exit on signal {sig}")
        if self.reader:
            self.reader.join(timeout=5)
        return p.returncode, "\n".join(self.out)

    def kill(self):
        if self.successor:
            try:
                os.kill(self.successor, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait_gone(self.successor, 10)
        if self.p and self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def tail(self, n=12):
        return " / ".join(self.out[-n:])


def _wait_gone(pid, timeout):
    """Whether process pid has exited (gone, or a zombie nobody reaps) within timeout seconds."""
    end = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)


# ------------------------------------------------------------------------------------------------ the rig


class Rig:
    """One scenario: a temporary directory, a network namespace, vhostd in it, guests, host-side peers."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"vhd-rig-{name}-")
        self.ctl = os.path.join(self.dir, "ctl.sock")
        tag = f"{os.getpid() % 10000}{name[:3]}"
        self.ns = f"vhdsw{tag}"
        self.ns2 = None
        self.tap = f"vhdt{tag}"
        self.vd = Vhostd(self.dir, self.ns)
        self.procs = []
        self.guests = []
        self.host_ifaces = []  # (ifname, namespace) of the host's ends, for drop accounting
        self.children = []  # more hosts of the same scenario (child())
        netns_add(self.ns)
        # No IPv6 in the namespace: the tap would chatter (router solicitations, MLD) and the counters compared
        # exactly below would move while being read.
        self.no_ipv6(self.ns)

    def child(self, name):
        """Another host of this scenario: a rig with its own namespace (and vhostd, if started) whose vhostd is
        stopped and checked at the scenario's end like this one's, and which is cleaned up with it. name's first
        three characters must differ from those of the other rigs'."""
        r = Rig(name)
        self.children.append(r)
        return r

    def all_rigs(self):
        return [self] + self.children

    def no_ipv6(self, ns):
        self.nsrun("sh", "-c", "for f in all default; do echo 1 >/proc/sys/net/ipv6/conf/$f/disable_ipv6; done",
                   ns=ns, check=False)  # (no IPv6 at all on the host is fine too)

    def sock(self, port):
        return os.path.join(self.dir, f"{port}.sock")

    def nsrun(self, *cmd, ns=None, check=True, timeout=30):
        return run(["ip", "netns", "exec", ns or self.ns, *cmd], check=check, timeout=timeout)

    # ---------------------------------------------------------------- vhostd
    @property
    def vhostd(self):
        """vhostd's Popen (None before start_vhostd())."""
        return self.vd.p

    def start_vhostd(self, lines, extra=(), wrap=()):
        """vhostd in the namespace with the config lines; extra: more options (e.g. --threads 2); wrap: what it
        runs under (Vhostd.start())."""
        return self.vd.start(lines, extra, answer=False, wrap=wrap)

    def stop_vhostd(self, sig=signal.SIGTERM):
        """@return vhostd's exit status."""
        return self.vd.stop(sig)[0]

    def ctl_json(self, *args):
        return self.vd.ctl_json(*args)

    def vhostd_tail(self, n=12):
        return self.vd.tail(n)

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

    def veth_peer(self, ip=VETH_IP, tx_csum=True):
        """A veth pair for an af_packet or af_xdp port: one end up in the rig's namespace, the other in a second
        one (self.ns2) with address ip and its own stack as the peer. tx_csum=False turns the peer's checksum
        offload off (`ethtool -K`), which an af_xdp port needs (docs/switch.md). Both ends count drops for udp().
        @return (the port's end, the peer's end, a HostNs for the peer)."""
        self.ns2 = self.ns + "p"
        va, vb = self.tap.replace("vhdt", "vhdv") + "a", self.tap.replace("vhdt", "vhdv") + "b"
        netns_add(self.ns2)
        self.no_ipv6(self.ns2)
        self.nsrun("ip", "link", "add", va, "type", "veth", "peer", "name", vb, "netns", self.ns2)
        self.nsrun("ip", "link", "set", va, "up")
        self.nsrun("ip", "addr", "add", f"{ip}/24", "dev", vb, ns=self.ns2)
        self.nsrun("ip", "link", "set", vb, "up", ns=self.ns2)
        if not tx_csum:
            self.nsrun("ethtool", "-K", vb, "tx", "off", ns=self.ns2)
        self.host_ifaces += [(va, self.ns), (vb, self.ns2)]
        return va, vb, HostNs(self, self.ns2, ip, "veth peer")

    def iface_stats(self, ifname, ns=None):
        r = self.nsrun("sh", "-c", f"cd /sys/class/net/{ifname}/statistics && cat rx_packets tx_packets rx_bytes "
                                   f"tx_bytes rx_dropped tx_dropped", ns=ns)
        return dict(zip(("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped"),
                        map(int, r.stdout.split())))

    # ---------------------------------------------------------------- cleanup
    def cleanup(self):
        for c in self.children:
            c.cleanup()
        for g in self.guests:
            g.kill()
            if g.domain:
                g.domain.undefine()
        for p in self.procs:
            kill_group(p)
        self.vd.kill()
        for ns in (self.ns, self.ns2):
            if ns:
                netns_del(ns)
        shutil.rmtree(self.dir, ignore_errors=True)


def veth(a, ifa, addr_a, b, ifb, addr_b=None, master=None):
    """A veth between rig a's namespace (end ifa, address addr_a "IP/PREFIX") and rig b's (end ifb, with addr_b,
    or enslaved to the bridge master); both ends up."""
    run(["ip", "link", "add", ifa, "netns", a.ns, "type", "veth", "peer", "name", ifb, "netns", b.ns])
    a.nsrun("ip", "addr", "add", addr_a, "dev", ifa)
    a.nsrun("ip", "link", "set", ifa, "up")
    if addr_b:
        b.nsrun("ip", "addr", "add", addr_b, "dev", ifb)
    if master:
        b.nsrun("ip", "link", "set", ifb, "master", master)
    b.nsrun("ip", "link", "set", ifb, "up")


def linux_vxlan(rig, name, vni, local, remotes, dev, mtu, addr):
    """A plain Linux vxlan netdev in rig's namespace (the kernel as the peer VTEP of a vxlan port): UDP port
    4789, head-end replication to each of remotes (all-zero fdb entries), learning on, address addr
    ("IP/PREFIX"), up. Its transmit checksum offload is off: over a veth (no NIC between) Linux leaves the inner
    UDP/TCP checksums partial inside the datagrams, which a UDP socket cannot tell, and the receiver would
    drop those frames as corrupt (docs/switch.md, "VXLAN ports"; seen with a guest: 0 of 2000 datagrams)."""
    rig.nsrun("ip", "link", "add", name, "type", "vxlan", "id", str(vni), "dstport", "4789", "local", local,
              "dev", dev)
    for r in remotes:
        rig.nsrun("bridge", "fdb", "append", "00:00:00:00:00:00", "dev", name, "dst", r)
    rig.nsrun("ethtool", "-K", name, "tx", "off")
    rig.nsrun("ip", "addr", "add", addr, "dev", name)
    rig.nsrun("ip", "link", "set", name, "mtu", str(mtu), "up")


class HostNs:
    """The host's end in a network namespace: hostpeer.py and BusyBox ping."""

    def __init__(self, rig, ns, ip, name):
        self.rig, self.ns, self.ip, self.name = rig, ns, ip, name

    def start(self, *args):
        p = spawn(["ip", "netns", "exec", self.ns, sys.executable, HOSTPEER, *map(str, args)], self.rig.procs)
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
            kill_group(self.p)
        self.t.join(timeout=5)
        res = [line for line in self.lines if line.startswith("VHD-RESULT")]
        return (res[-1] if res else f"VHD-RESULT {self.what} fail no result: {self.lines[-5:]}")


class Guest:
    """A QEMU guest running switch-agent.sh; commands go in through the serial console: QEMU's stdin and
    stdout (QEMU started here with chardev, the NIC's -chardev options), or with domain= a libvirt Domain whose
    serial console is a unix socket (QEMU started by libvirtd; chardev unused)."""

    def __init__(self, rig, name, mac, ip, chardev=None, extra_append="", nic_extra="", incoming=None, domain=None,
                 viommu=False, payload=(), mem="512M", smp=None):
        """incoming: QEMU's -incoming URI: this QEMU waits for a live migration (migrate_from()) instead of
        booting. Every guest QEMU started here has a QMP socket (self.qmp_path). viommu: the guest sits behind
        QEMU's intel-iommu in strict mode (iommu.strict=1), its NIC with iommu_platform=on (its port needs
        iommu=on), as in docs/viommu.md. chardev None (and mac, ip None): a guest without a NIC.
        payload: host executables the guest gets at the same paths, with their libraries (guest_payload()),
        e.g. [VHOSTD, VHOSTCTL, PKTGEN] to run our binaries inside the guest against its kernel."""
        self.rig, self.name, self.mac, self.ip, self.chardev = rig, name, mac, ip, chardev
        self.extra_append, self.nic_extra, self.incoming, self.domain = extra_append, nic_extra, incoming, domain
        self.viommu, self.payload, self.mem, self.smp = viommu, list(payload), mem, smp
        if viommu:
            self.extra_append += " intel_iommu=on iommu.strict=1"
        self.qmp_path = os.path.join(rig.dir, f"{name}.qmp")
        self.p = None
        rig.guests.append(self)

    def cmdline(self):
        """The guest kernel's whole command line (a libvirt domain's <cmdline>): the agent on ttyS0, eth0 at ip."""
        return f"{agent_append(self.ip)} {self.extra_append} {os.environ.get('VHD_GUEST_APPEND', '')}".strip()

    def boot(self):
        self.lock = threading.Condition()
        self.out, self.rc, self.console = {}, {}, []
        self.agent = None
        self.next_id = 0
        if self.domain:
            self.p = self.domain.start()
            threading.Thread(target=self._reader, args=(self.p, self.lock, self.out, self.rc, self.console),
                             daemon=True).start()
            return self
        # (qemu_cmd adds $VHD_GUEST_APPEND itself)
        cmd = qemu_cmd(f"{agent_append(self.ip)} {self.extra_append}", self.chardev, self.mac,
                       nic_extra=self.nic_extra, iommu=self.viommu, mem=self.mem, smp=self.smp,
                       initrd=guest_payload(self.payload) if self.payload else None)
        cmd += ["-qmp", f"unix:{self.qmp_path},server=on,wait=off"] + (["-incoming", self.incoming]
                                                                      if self.incoming else [])
        self.p = spawn(cmd, stdin=subprocess.PIPE)
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
        expect(self.agent == (self.mac or "none"), f"{self.name}: eth0 has MAC {self.agent}, wanted {self.mac}")
        # By now QEMU has set up the vhost-user NIC: it had nothing to warn about.
        warnings = qemu_warnings(self.domain.qemu_log() if self.domain else self.tail(1 << 30))
        expect(not warnings, f"{self.name}: QEMU warned: {' | '.join(warnings)}")
        return self

    def qmp(self, execute, timeout=30, **arguments):
        """One QMP command on this QEMU's monitor socket. @return its "return" value; CaseError on "error"."""
        end = time.time() + timeout
        while True:
            try:
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.settimeout(timeout)
                c.connect(self.qmp_path)
                break
            except OSError:
                c.close()
                expect(time.time() < end and self.p.poll() is None, f"{self.name}: no QMP socket")
                time.sleep(0.1)
        with c:
            f = c.makefile("rw")

            def answer():
                while True:
                    line = f.readline()
                    expect(line, f"{self.name}: QMP closed during {execute}")
                    r = json.loads(line)
                    if "return" in r or "error" in r:
                        return r
            f.readline()  # greeting
            f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n")
            f.flush()
            answer()
            f.write(json.dumps({"execute": execute, "arguments": arguments}) + "\n")
            f.flush()
            r = answer()
        expect("return" in r, f"{self.name}: QMP {execute}: {r.get('error')}")
        return r["return"]

    def migrate_to(self, dst, timeout=300, hold=None):
        """Live-migrate this guest to dst, a Guest booted with incoming=tcp:127.0.0.1:PORT and the same
        devices; commands then go to dst (its ids continue ours). hold: called once every page has been sent
        (the second dirty sync), the migration kept from completing until it returns: till then at most 16 MiB/s
        and 1 ms of downtime, so that 4 dirty pages are too many to stop for (the guest must keep dirtying).
        @return the final query-migrate answer."""
        self.qmp("migrate-set-parameters", **({"max-bandwidth": 16 << 20, "downtime-limit": 1} if hold else
                                              {"max-bandwidth": 4 << 30, "downtime-limit": 2000}))
        self.qmp("migrate", uri=dst.incoming)
        end = time.time() + timeout
        while True:
            st = self.qmp("query-migrate")
            if st.get("status") in ("completed", "failed", "cancelled"):
                break
            if hold and st.get("ram", {}).get("dirty-sync-count", 0) >= 2:
                # 1 MiB/s while held: few passes (each a dirty sync) until it ends (QEMU 7.2's TCG guest crashed
                # once after a migration of 20 syncs under a busy writer, logged or not).
                self.qmp("migrate-set-parameters", **{"max-bandwidth": 1 << 20})
                hold()
                hold = None
                self.qmp("migrate-set-parameters", **{"max-bandwidth": 4 << 30, "downtime-limit": 2000})
            expect(time.time() < end, f"{self.name}: migration not done in {timeout} s: {st}")
            time.sleep(0.1 if hold else 0.5)
        expect(st["status"] == "completed", f"{self.name}: migration {st.get('status')}: "
                                            f"{st.get('error-desc', '')} | {' | '.join(self.tail(5))}")
        with self.lock:
            n = self.next_id
        with dst.lock:
            dst.next_id, dst.agent = n, self.agent
        return st

    def adopt(self, job):
        """A job started on the guest before it migrated here: its output now comes out of this QEMU."""
        return GuestJob(self, job.i, job.command)

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

    def reach(self, ip, secs=30):
        """Ping ip once a second until it answers (e.g. after a restart re-created the host's tap with a new MAC,
        the guest's ARP entry for ip has to go stale first). @return seconds it took; CaseError after secs."""
        t = time.time()
        rc, out = self.cmd(f"i=0; until ping -c 1 -W 1 {ip} >/dev/null; do i=$((i+1)); [ $i -lt {secs} ] || "
                           f"exit 1; done", timeout=4 * secs + 30)  # (a ping waiting on ARP: 3 s)
        expect(rc == 0, f"{self.name}: {ip} unreachable for {secs} s")
        return time.time() - t

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
        if self.p and self.p.poll() is None and self.domain:
            self.p.kill()  # virsh destroy
            self.p.wait()
        elif self.p:
            kill_group(self.p)
        if self.p and not getattr(self.p, "saved", False):
            time.sleep(0.2)
            self.save_console()
            self.p.saved = True

    def poweroff(self, timeout=30):
        # (a libvirt domain would reboot: libvirt's default on_reboot; it is destroyed)
        if self.p and self.p.poll() is None and not self.domain:
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

    def instructions(self, out):
        """The instruction total of the callgrind() run that wrote out in this guest (its "summary:" line).
        CaseError, with valgrind's last words, if there is none (the program or valgrind failed)."""
        rc, lines = self.cmd(f"sed -n 's/^summary: /VHD-IR /p' {out}; tail -3 {out}.log")
        ir = [x for x in lines if x.startswith("VHD-IR ")]
        expect(rc == 0 and ir, f"{self.name}: no callgrind summary in {out}: {lines[-4:]}")
        return int(ir[0].split()[1])


class Scratch:
    """What a Guest needs of a Rig when nothing else of one is wanted (a benchmark's guest without a NIC): a
    temporary directory and the guests to kill. cleanup() kills them and removes the directory."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"vhd-{name}-")
        self.guests = []

    def cleanup(self):
        for g in self.guests:
            g.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# valgrind's callgrind for a guest's payload: the launcher itself (Debian's /usr/bin/valgrind is a wrapper around
# it), the tool and its preload library. callgrind() wraps a guest command in it.
_VG = "/usr/libexec/valgrind"
CALLGRIND = ["/usr/bin/valgrind.bin", f"{_VG}/callgrind-amd64-linux", f"{_VG}/vgpreload_core-amd64-linux.so",
             f"{_VG}/default.supp"]


def callgrind(command, out):
    """command (one program and its arguments, no shell syntax) run under callgrind inside a guest whose payload
    has CALLGRIND; the profile goes to out, valgrind's own messages to out.log. Guest.instructions(out) reads
    the total back."""
    return f"valgrind.bin --tool=callgrind --log-file={out}.log --callgrind-out-file={out} {command}"


def callgrind_missing():
    """None, or why valgrind cannot go into a guest's payload (what is not installed)."""
    missing = [f for f in CALLGRIND if not os.path.exists(f)]
    return f"valgrind not installed ({missing[0]}; apt-get install valgrind)" if missing else None


# Sanitizer settings for our binaries run inside a guest (leaks reported, the first error fatal).
GUEST_SAN = "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"


class GuestNs:
    """A network namespace inside a Guest (ip netns, iproute2 in the guest's payload), as a traffic peer for
    udp()/tcp()/peer_start(): its nettool runs there, at ip."""

    def __init__(self, guest, ns, ip):
        self.g, self.ns, self.ip, self.name = guest, ns, ip, f"{guest.name}/{ns}"

    def start(self, *args):
        return self.g.start(f"/usr/bin/ip netns exec {self.ns} nettool " + " ".join(map(str, args)))

    def udp_rcvbuf_errors(self):
        return guest_udp_rcvbuf_errors(self.g, f"/usr/bin/ip netns exec {self.ns} ")


def guest_udp_rcvbuf_errors(g, pre=""):
    """UDP datagrams the kernel of Guest g dropped for a full socket receive buffer (Udp: RcvbufErrors in
    /proc/net/snmp; pre: a command prefix such as "ip netns exec NS " for a namespace's own count)."""
    rc, out = g.cmd(f"{pre}cat /proc/net/snmp", timeout=30)
    rows = [line.split() for line in out if line.startswith("Udp:")]
    expect(rc == 0 and len(rows) >= 2 and "RcvbufErrors" in rows[0], f"{g.name}: no Udp row in /proc/net/snmp")
    return int(rows[1][rows[0].index("RcvbufErrors")])


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


# ------------------------------------------------------------------------------------------------ libvirt


class Libvirt:
    """libvirtd's system instance (qemu:///system: QEMU runs as libvirt's user, libvirt-qemu on Debian): the
    one already running, else libvirtd and virtlogd started here, without systemd, and stopped by stop()."""

    URI = "qemu:///system"
    LOGD_SOCK = "/run/libvirt/virtlogd-sock"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="vhd-libvirt-")
        self.started = []  # (name, pid file) of the daemons started here

    def virsh(self, *args, check=True, timeout=60):
        return run(["virsh", "-q", "-c", self.URI, *args], check=check, timeout=timeout)

    def up(self):
        """@return None when libvirtd answers, or why it does not."""
        if self.virsh("version", check=False).returncode == 0:
            log("libvirtd: using the one running")
            return None
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.connect(self.LOGD_SOCK)
        except OSError:  # QEMU's stderr and the consoles go through virtlogd (qemu.conf stdio_handler)
            self._daemon("virtlogd")
        self._daemon("libvirtd")
        for _ in range(300):
            r = self.virsh("version", check=False)
            if r.returncode == 0:
                log(f"libvirtd started: {' / '.join(r.stdout.splitlines()[-2:])}")
                return None
            time.sleep(0.1)
        return f"libvirtd does not answer on {self.URI}: {r.stdout.strip()}"

    def _daemon(self, name):
        pidfile = os.path.join(self.dir, f"{name}.pid")
        run([name, "--daemon", "--pid-file", pidfile])
        self.started.append((name, pidfile))

    def stop(self):
        for name, pidfile in reversed(self.started):
            try:
                pid = int(open(pidfile).read())
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError):
                continue
            for _ in range(300):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                os.kill(pid, signal.SIGKILL)
        self.started = []
        shutil.rmtree(self.dir, ignore_errors=True)


class Domain:
    """A persistent libvirt domain (defined from xml; `virsh start`/`destroy`), whose serial console is the unix
    socket console (`<serial type='unix'><source mode='bind' path=console/>`): Guest(domain=) talks through it."""

    def __init__(self, libvirt, name, xml, console):
        self.lv, self.name, self.xml, self.console = libvirt, name, xml, console
        self.log = f"/var/log/libvirt/qemu/{name}.log"
        self.log_at = 0
        path = os.path.join(libvirt.dir, f"{name}.xml")
        with open(path, "w") as f:
            f.write(xml)
        self.lv.virsh("define", path)
        self.defined = True

    def start(self):
        """virsh start (it returns when QEMU runs: with a mode='server' NIC, once the back-end connected).
        @return the console, with the surface of the subprocess.Popen Guest uses."""
        self.log_at = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        try:
            r = self.lv.virsh("start", self.name, check=False, timeout=60)
        except subprocess.TimeoutExpired:
            raise CaseError(f"virsh start {self.name}: no answer in 60 s (QEMU waiting for its vhost-user NIC's "
                            f"peer?); QEMU: {' | '.join(self.qemu_log()[-3:])}")
        if r.returncode != 0:
            raise CaseError(f"virsh start {self.name}: {r.stdout.strip()}")
        return DomainConsole(self)

    def destroy(self):
        self.lv.virsh("destroy", self.name, check=False)

    def undefine(self):
        if self.defined:
            self.destroy()
            self.lv.virsh("undefine", self.name, check=False)
            self.defined = False

    def state(self):
        return self.lv.virsh("domstate", self.name, "--reason", check=False).stdout.strip()

    def qemu_log(self):
        """QEMU's stderr since the last start (libvirt logs it, with the command line, to the domain's log)."""
        try:
            with open(self.log, errors="replace") as f:
                f.seek(self.log_at)
                return f.read().splitlines()
        except OSError:
            return []


class DomainConsole:
    """A libvirt domain's console socket, as the subprocess.Popen of a QEMU started here is for Guest: stdin,
    stdout, poll(), wait(), kill(). The socket closes when QEMU exits: that is the domain's end (returncode 0;
    the reason is in state())."""

    def __init__(self, dom):
        self.dom, self.returncode = dom, None
        self.ended = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        for _ in range(300):
            try:
                self.sock.connect(dom.console)
                break
            except OSError as e:
                err = e
                time.sleep(0.1)
        else:
            raise CaseError(f"{dom.name}: console {dom.console}: {err}")
        self.stdin = self.sock.makefile("w", encoding="utf-8", errors="replace")
        self._rfile = self.sock.makefile("r", encoding="utf-8", errors="replace")
        self.stdout = self._lines()

    def _lines(self):
        try:
            yield from self._rfile
        except OSError:
            pass
        self.returncode = 0
        for f in (self._rfile, self.stdin, self.sock):
            try:
                f.close()
            except OSError:
                pass
        self.ended.set()

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        if not self.ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"domain {self.dom.name}", timeout)
        return self.returncode

    def kill(self):
        self.dom.destroy()


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
    counted as dropped on the way: by vhostd (the output port's tx_drops, e.g. a guest's full receive ring; a
    port's kernel_drops), the receiving guest's driver (rx_dropped), the host's side of a tap or veth (its
    tx_dropped: vhostd or the peer did not read in time) or the kernel under an af_xdp port (its fill or receive
    ring ran out)."""
    return UdpFlow(rig, src, dst, port, n).check()


class UdpFlow:
    """udp() in two halves: started here (the receiver listening, the sender going, pps datagrams a second when
    given), checked by check(), which may read the receiver's verdict through another Guest (moved_to: the
    receiving guest migrated there meanwhile)."""

    def __init__(self, rig, src, dst, port, n=UDP_N, pps=None, idle_ms=3000, send=True):
        """send False: only the receiver now, the sender when send() is called."""
        self.rig, self.src, self.dst, self.n, self.port, self.pps = rig, src, dst, n, port, pps
        self.before = drop_counters(rig, dst)
        self.r = peer_start(dst, "udp-recv", port, n, idle_ms)
        self.r.ready()
        if send:
            self.send()

    def send(self):
        self.s = peer_start(self.src, "udp-send", self.dst.ip, self.port, self.n, *([self.pps] if self.pps else []))

    def check(self, moved_to=None, timeout=120):
        src, dst, n = self.src, moved_to or self.dst, self.n
        r = moved_to.adopt(self.r) if moved_to else self.r
        sres, rres = self.s.result(timeout), r.result(timeout)
        expect(" ok " in sres, f"UDP {src.name}->{dst.name}: {sres}")
        m = re.search(r"received (\d+) of (\d+), lost (\d+), dup (\d+), corrupt (\d+), stray (\d+)", rres)
        expect(m, f"UDP {src.name}->{dst.name}: {rres}")
        got, _, lost, dup, bad, stray = map(int, m.groups())
        expect(not (dup or bad or stray), f"UDP {src.name}->{dst.name}: {rres}")
        if lost:
            after = drop_counters(self.rig, dst)
            counted = {k: after[k] - self.before[k] for k in after if after[k] != self.before.get(k, after[k])}
            expect(sum(counted.values()) >= lost, f"UDP {src.name}->{dst.name}: {lost} lost, drops counted on the "
                                                  f"way {counted or 'none'}: {rres}")
            log(f"UDP {src.name}->{dst.name}: {lost} of {n} lost, all counted: {counted}")
        return lost


def drop_counters(rig, dst):
    """Every drop counter on the way to dst (see udp())."""
    stats = rig.stats()
    c = {f"{p}.tx_drops": v["tx_drops"] for p, v in stats.items()}
    c.update({f"{p}.rx_drops": v["rx_drops"] for p, v in stats.items()})
    # af_xdp ports: what the kernel dropped before vhostd could read it (vhostctl stats, the port type's own).
    c.update({f"{p}.{k}": v[k] for p, v in stats.items() for k in ("af_xdp_fill_ring_empty", "af_xdp_rx_ring_full",
                                                                  "af_xdp_rx_dropped") if k in v})
    # what the kernel dropped at a port's socket before vhostd read it (af_packet's ring, vxlan's socket buffer)
    c.update({f"{p}.kernel_drops": v["info"]["kernel_drops"] for p, v in rig.show().items()
              if "kernel_drops" in v.get("info", {})})
    if isinstance(dst, Guest):
        g = dst.counters()
        c[f"{dst.mac}.rx_dropped"] = g["rx_dropped"]  # by MAC: the same guest after a live migration
    # the receiver's own socket buffer overflowing (a nettool off the CPU under TCG): the kernel's UDP RcvbufErrors
    if hasattr(dst, "udp_rcvbuf_errors"):
        c[f"{dst.name}.udp_rcvbuf_errors"] = dst.udp_rcvbuf_errors()
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


def run_scenarios(scenarios, filt="", need=("qemu-system-x86_64", "ip", "busybox"), unavailable=None):
    """Run each (name, function, case names) scenario whose name or cases contain filt: the function gets a
    fresh Rig and yields (case name, callable) pairs; a callable returns a detail string or raises CaseError.
    need: the programs the scenarios run; unavailable: why a peer they need (e.g. libvirtd) could not be had.
    Either failing, every case FAILs saying why. Prints one PASS/FAIL line per case. @return the exit status
    (1 if any failed)."""
    # meson's timeout sends SIGTERM: unwind through the running scenario's cleanup (QEMU, vhostd, namespaces).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    failed = 0

    def report(name, err, secs, detail=""):
        nonlocal failed
        failed += verdict(name, err, time.time() - secs)

    # the filter picks cases by name, or whole scenarios by theirs (two_guests, jumbo, restart, af_packet)
    scenarios = [s for s in scenarios if filt in s[0] or any(filt in c for c in s[2])]
    missing = [t for t in need if not shutil.which(t)]
    missing += [f for f in (VHOSTD, VHOSTCTL) if not os.access(f, os.X_OK)]
    prep_err = unavailable
    if prep_err:
        pass
    elif missing:
        prep_err = f"not installed: {' '.join(missing)} (scripts/deps.sh check installs them)"
    elif os.geteuid() != 0:
        prep_err = "needs root (network namespaces, tap and veth interfaces)"
    elif "qemu-system-x86_64" in need:
        prep_err = prepare_guest()
    for sname, fn, names in scenarios:
        names = [n for n in names if filt in n or filt in sname]
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
                for r in rig.all_rigs():
                    if r.vhostd and not r.vd.running() and not err:
                        err = f"vhostd in {r.name} died ({r.vhostd.returncode}): {r.vhostd_tail()}"
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
            for r in rig.all_rigs():
                if r.vhostd and r.vd.running():
                    rc = r.stop_vhostd()
                    # None: a vhostd that vhostctl upgrade started, not our child; its sanitizer report is in out
                    if rc is None and any("Sanitizer" in x for x in r.vd.out):
                        rc = "with a sanitizer report"
                    if rc not in (0, None) and pending:
                        pending = (pending[0], (pending[1] + "; " if pending[1] else "") +
                                   f"vhostd exited {rc} on SIGTERM: {r.vhostd_tail()}", pending[2], pending[3])
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
