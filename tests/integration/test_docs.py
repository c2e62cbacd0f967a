#!/usr/bin/env python3
"""The commands in docs/switch.md and docs/operations.md, run as they stand, so that they cannot rot.

Blocks marked `<!-- doc-test: NAME -->` (the line before the fence) are taken from the file: `config` (written
to the path its first line names), `vhostd` (started, then stopped with SIGTERM: exit 0), `host` (the host's
address on the tap, `vhostctl show`) and `qemu`. The only changes: paths under /run/vhostd and /etc/vhostd move
to a scratch folder (VHOSTD_SOCKET names the control socket there), vhostd and vhostctl are the build's, all of
it runs in a network namespace of its own, and in the QEMU command the VM's disk (`-drive file=vm1.qcow2,...`) is
replaced by the interop tests' kernel and initramfs, whose agent gives the guest 10.0.0.2/24 and pings the host's
documented address; the same command run a second time meanwhile (less reconnect=, which would make it wait for
the port) must fail at once with "Connection refused" (one front-end per port) while the first guest keeps its
link.

In docs/operations.md: `mode-refused` (a transcript: each `$ ` line is run, and what it prints must be the lines
that follow) and `group-line` (a config line, given to vhostctl: the socket gets that group and mode).

usage: test_docs.py VHOSTD VHOSTCTL [case-substring]   cases: host_switch_md, host_operations_md_socket,
       host_operations_md_two_hosts, qemu_switch_md
Prints PASS/FAIL/SKIP lines; exit 1 if any case failed.
"""
import grp
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import vhdrig  # noqa: E402
from vhdrig import doc_blocks  # noqa: E402

VHOSTD, VHOSTCTL = (os.path.abspath(a) for a in sys.argv[1:3])
FILTER = sys.argv[3] if len(sys.argv) > 3 else ""
vhdrig.configure(vhostd=VHOSTD, vhostctl=VHOSTCTL)  # and the guest's WORK: $VHD_INTEROP_WORK or the build's
DOCS = [os.path.join(ROOT, "docs", f) for f in ("switch.md", "operations.md")]
GUEST_IP, HOST_IP = "10.0.0.2", "10.0.0.1"  # the guest's (the agent sets it), the docs' host address


class Sandbox:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="vhd-docs-")
        self.ns = f"vhddoc{os.getpid()}"
        self.bin = os.path.join(self.dir, "bin")
        os.makedirs(self.bin)
        for exe in (VHOSTD, VHOSTCTL):
            os.symlink(exe, os.path.join(self.bin, os.path.basename(exe)))
        self.env = dict(os.environ, PATH=f"{self.bin}:{os.environ['PATH']}",
                        VHOSTD_SOCKET=self.path("/run/vhostd/vhostd.sock"))
        self.procs = []
        vhdrig.netns_add(self.ns)

    def path(self, p):
        """A documented path, moved into the scratch folder."""
        for d in ("/run/vhostd/", "/etc/vhostd/"):
            if p.startswith(d):
                sub = os.path.join(self.dir, d.strip("/").replace("/", "-"))
                os.makedirs(sub, exist_ok=True)
                return os.path.join(sub, p[len(d):])
        return p

    def text(self, s):
        return re.sub(r"/(?:run|etc)/vhostd/\S*?(?=[\s,]|$)", lambda m: self.path(m.group(0)), s)

    def sh(self, script, background=False):
        cmd = ["ip", "netns", "exec", self.ns, "sh", "-ec", self.text(script)]
        if background:
            return vhdrig.spawn(cmd, self.procs, stdin=subprocess.PIPE, env=self.env)
        return subprocess.run(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=60)

    def cleanup(self):
        for p in self.procs:
            vhdrig.kill_group(p)
        vhdrig.netns_del(self.ns)
        shutil.rmtree(self.dir, ignore_errors=True)


def start_switch(sb, blocks, config=None):
    """The config block (or config) written where the config block says, the vhostd block started; returns
    vhostd's process."""
    config = config if config is not None else blocks["config"]
    first = blocks["config"].splitlines()[0]
    if not first.startswith("# /"):
        raise RuntimeError(f"the config block does not name its file on its first line: {first!r}")
    with open(sb.path(first[2:].strip()), "w") as f:
        f.write(sb.text(config))
    # exec: vhostd itself is the process SIGTERM reaches (the block is one command line).
    p = sb.sh("exec " + blocks["vhostd"], background=True)
    sock = sb.env["VHOSTD_SOCKET"]
    for _ in range(500):
        if os.path.exists(sock) or p.poll() is not None:
            break
        time.sleep(0.02)
    if not os.path.exists(sock):
        raise RuntimeError(f"vhostd never opened {sock} (exit {p.poll()}): {p.stdout.read() if p.poll() else ''}")
    return p


def stop_switch(p):
    os.killpg(p.pid, signal.SIGTERM)
    out, _ = p.communicate(timeout=30)
    return None if p.returncode == 0 else f"vhostd exited {p.returncode} on SIGTERM: {out[-500:]}"


def case_host(sb, blocks):
    vhostd = start_switch(sb, blocks)
    r = sb.sh(blocks["host"])
    if r.returncode != 0:
        return f"host block: exit {r.returncode}: {r.stdout.strip()}"
    for port in ("vm1", "vm2", "host0"):
        if not re.search(rf"^{port}\s", r.stdout, re.M):
            return f"`vhostctl show` lists no {port}: {r.stdout}"
    show = json.loads(sb.sh("vhostctl --json show").stdout)
    links = {p["name"]: p["link"] for p in show["ports"]}
    if links != {"vm1": "down", "vm2": "down", "host0": "up"}:
        return f"links {links}: wanted the tap up and the VMs (none started) down"
    addr = sb.sh("ip -br addr show dev vhd0").stdout
    if "10.0.0.1/24" not in addr:
        return f"vhd0 has not the documented address: {addr.strip()}"
    return stop_switch(vhostd)


def case_qemu(sb, blocks):
    if not shutil.which("qemu-system-x86_64"):
        return "SKIP: no qemu-system-x86_64"
    prep_err = vhdrig.prepare_guest()
    if prep_err:
        return prep_err
    qemu = blocks["qemu"]
    disk = "-drive file=vm1.qcow2,if=virtio"
    if disk not in qemu:
        return f"the qemu block has no {disk!r} to stand in for"
    boot = " ".join(shlex.quote(a) for a in ["-kernel", os.path.join(vhdrig.WORK, "vmlinuz"), "-initrd",
                                             os.path.join(vhdrig.WORK, "initrd.gz"), "-append",
                                             vhdrig.agent_append(GUEST_IP), "-no-reboot"])
    vhostd = start_switch(sb, blocks)
    r = sb.sh(blocks["host"])
    if r.returncode != 0:
        return f"host block: exit {r.returncode}: {r.stdout.strip()}"
    q = sb.sh("exec " + qemu.replace(disk, boot), background=True)
    console = []
    threading.Thread(target=lambda: console.extend(line.rstrip("\r\n") for line in q.stdout), daemon=True).start()

    def wait_line(prefix, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline and q.poll() is None:
            if any(line.startswith(prefix) for line in list(console)):
                return True
            time.sleep(0.2)
        return False
    # The guest's agent (tests/interop/guest/tests/switch-agent.sh) runs what is typed on its console: the
    # guest pings the host's documented address through vhostd, and the host answers.
    ok = wait_line("VHD-AGENT ready", 120)
    if ok:
        q.stdin.write(f"VHDC 1 ping -c 3 -W 3 {HOST_IP}\n")
        q.stdin.flush()
        ok = wait_line("VHD-O 1 VHD-RC ", 60) and "VHD-O 1 VHD-RC 0" in console
    second = None
    if ok:
        # The same command again while vm1 has its VM, less reconnect= (with it QEMU would wait for the port):
        # the second QEMU is refused at once (not left hanging), and the first keeps its link.
        t0 = time.time()
        try:
            second = sb.sh("exec " + qemu.replace(disk, boot).replace(",reconnect=1", ""))
        except subprocess.TimeoutExpired:
            return "a second QEMU on vm1's socket still ran after 60 s"
        took = time.time() - t0
        if second.returncode == 0 or "Connection refused" not in second.stdout or took > 10:
            return (f"a second QEMU on vm1's socket: exit {second.returncode} after {took:.1f} s, wanted a prompt "
                    f"'Connection refused': {second.stdout.strip()[-300:]}")
        q.stdin.write(f"VHDC 2 ping -c 2 -W 3 {HOST_IP}\n")
        q.stdin.flush()
        if not wait_line("VHD-O 2 VHD-RC ", 60) or "VHD-O 2 VHD-RC 0" not in console:
            return f"vm1's guest lost the host after the second QEMU was refused: {' | '.join(console[-8:])}"
    alive = q.poll() is None
    stats = "" if ok else sb.sh("vhostctl show; vhostctl stats").stdout
    if alive:
        os.killpg(q.pid, signal.SIGKILL)
    q.wait(timeout=30)
    time.sleep(0.2)
    if not ok:
        return (f"the guest could not ping the host (QEMU {'running' if alive else f'exited {q.returncode}'}): "
                f"{' | '.join(console[-15:])}\n{stats}")
    warnings = vhdrig.qemu_warnings(console)
    if warnings:
        return f"QEMU warned: {' | '.join(warnings)}"
    return stop_switch(vhostd)


def case_operations_socket(sb, blocks):
    vhostd = start_switch(sb, blocks, config="")
    lines = blocks["mode-refused"].splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("$ "):
            continue
        want = [sb.text(x) for x in itertools.takewhile(lambda x: not x.startswith("$ "), lines[i + 1:])]
        got = sb.sh(line[2:]).stdout.splitlines()
        if got != want:
            return f"`{line[2:]}` printed {got}, the docs say {want}"
    try:
        gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        return "SKIP: no group kvm"
    r = sb.sh("vhostctl " + blocks["group-line"].strip())
    if r.returncode != 0:
        return f"vhostctl {blocks['group-line'].strip()}: exit {r.returncode}: {r.stdout.strip()}"
    st = os.stat(sb.path("/run/vhostd/vm1.sock"))
    if (st.st_gid, st.st_mode & 0o7777) != (gid, 0o660):
        return f"vm1.sock: gid {st.st_gid} mode {st.st_mode & 0o7777:o}, wanted group kvm ({gid}) and 0660"
    return stop_switch(vhostd)


def case_operations_two_hosts(sb, blocks):
    """docs/operations.md's two hosts: each configuration block on a vhostd of its own in a network namespace,
    the two joined by a veth with the documented underlay addresses; the tap MTU line run on each; then the check
    block on host A: the ping answered, and vhostctl fdb with host B's tap on port dc. Beyond the block: 8 MiB of
    TCP each way between the hosts' taps, every byte checked."""
    a = vhdrig.Rig("twa")
    try:
        b = a.child("twb")
        vhdrig.veth(a, "ula", "192.0.2.10/24", b, "ulb", addr_b="192.0.2.20/24")
        for r, block in ((a, "two-hosts-a"), (b, "two-hosts-b")):
            lines = [x for x in blocks[block].splitlines() if x.strip() and not x.startswith("#")]
            # the VMs' sockets go to the scenario's folder (no VM here: those ports stay down)
            r.start_vhostd([re.sub(r"path=/run/vhostd/(\S+)\.sock", lambda m: "path=" + r.sock(m.group(1)), x)
                            for x in lines])
            r.wait_link(["host0", "dc"])
            for cmd in blocks["two-hosts-tap-mtu"].splitlines():
                r.nsrun(*shlex.split(cmd))
        ping, fdb = blocks["two-hosts-check"].splitlines()
        cmd = shlex.split(ping)
        out = a.nsrun(*(cmd if shutil.which(cmd[0]) else ["busybox", *cmd]), check=False)
        if out.returncode != 0 or ("3 packets received" not in out.stdout and " 0% packet loss" not in out.stdout):
            return (f"`{ping}` on host A: exit {out.returncode}: {out.stdout.strip()[-300:]}; host A: {a.stats()} {a.show()}; host B: {b.stats()}")
        if fdb.strip() != "vhostctl fdb":
            return f"the check block's second line is {fdb!r}; this test runs `vhostctl fdb`"
        b_mac = b.nsrun("cat", "/sys/class/net/vhd0/address").stdout.strip()
        learned = a.fdb()
        if learned.get(b_mac) != "dc":
            return f"host A's fdb has host B's tap ({b_mac}) on {learned.get(b_mac)}: {learned}"
        ha = vhdrig.HostNs(a, a.ns, "10.0.0.1", "hostA")
        hb = vhdrig.HostNs(b, b.ns, "10.0.0.21", "hostB")
        res = [vhdrig.tcp(ha, hb, 7801), vhdrig.tcp(hb, ha, 7802)]
        for r in (a, b):
            vhdrig.check_no_errors(r, r.name)
            rc = r.stop_vhostd()
            if rc != 0:
                return f"vhostd on {r.name} exited {rc} on SIGTERM: {r.vhostd_tail()}"
        vhdrig.log(f"two hosts: TCP A->B {res[0]}, B->A {res[1]}")
        return None
    finally:
        a.cleanup()


CASES = [("host_switch_md", case_host), ("qemu_switch_md", case_qemu),
         ("host_operations_md_socket", case_operations_socket),
         ("host_operations_md_two_hosts", case_operations_two_hosts)]


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    failed = 0
    for name, fn in CASES:
        if FILTER not in name:
            continue
        if os.geteuid() != 0:
            print(f"SKIP: {name}: needs root (a network namespace, a tap)", flush=True)
            continue
        t0 = time.time()
        sb = None
        try:
            sb = Sandbox()
            err = fn(sb, doc_blocks(*DOCS))
        except Exception as e:  # a broken step is this case's failure
            err = f"{type(e).__name__}: {e}"
        finally:
            if sb:
                sb.cleanup()
        failed += vhdrig.verdict(name, err, t0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
