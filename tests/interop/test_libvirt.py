#!/usr/bin/env python3
"""VMs started by libvirt on vhostd ports: the domain XML and port lines of docs/libvirt.md, run as they stand.

libvirtd is the system instance (qemu:///system; QEMU runs as libvirt-qemu): the one running, else libvirtd and
virtlogd started here without systemd and stopped at the end. vhostd runs in a network namespace with a tap
port holding the host's address (10.0.0.1); libvirt's QEMU runs in the host's namespace and reaches vhostd's
sockets by path. The guest is the interop tests' Debian 6.12 kernel and initramfs, whose agent
(tests/interop/guest/tests/switch-agent.sh) runs what the test types on the domain's serial console, a unix
socket here. The documented blocks change only in: the domain's name, /run/vhostd/ moved to a scratch folder,
the disk replaced by <kernel>/<initrd>/<cmdline>, the pty console by the unix socket.

  client   vm1, mode='client' on a `vhost-user ... group=libvirt-qemu mode=0660` port: ping and TCP both ways
           (every byte checked) between the guest and the host; virsh destroy/start; vhostd stopped (SIGTERM)
           and killed (SIGKILL) and started again under the running domain (QEMU reconnects: <reconnect>)
  server   vm2, mode='server' with a vhostd `client` port in the documented directory: the same (vhostd
           reconnects), the host's tap back with its MAC after each vhostd restart

usage: test_libvirt.py VHOSTD VHOSTCTL [case-or-scenario-substring]
Prints PASS/FAIL lines like tests/unit/harness.h.
"""
import os
import re
import shutil
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from vhdrig import (HOST_IP, A_IP, CaseError, Domain, Guest, HostNs, Libvirt, check_no_errors, doc_blocks,  # noqa: E402
                   expect, ping_ok, run, tcp)
import vhdrig  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
vhdrig.configure(vhostd=sys.argv[1], vhostctl=sys.argv[2])
FILTER = sys.argv[3] if len(sys.argv) > 3 else ""
DOC = os.path.join(ROOT, "docs", "libvirt.md")
LIBVIRT = Libvirt()


def swap(text, old, new, what):
    """text with old (a string or a regex) replaced by new; the documented block must hold old."""
    out, n = re.subn(old, lambda _: new, text, flags=re.S)
    if n != 1:
        raise CaseError(f"docs/libvirt.md: the {what} block has {n} of {old!r}, wanted one to stand in for")
    return out


def moved(rig, text):
    """The documented paths under /run/vhostd/, moved into the rig's folder."""
    return text.replace("/run/vhostd/", rig.dir + "/")


def domain_xml(rig, blocks, name, interface=None):
    """The documented domain as the test defines it (see the module's docstring), and its NIC's MAC."""
    xml = blocks["libvirt-domain"]
    if interface:
        xml = swap(xml, r"    <interface type='vhostuser'>.*?</interface>\n", interface, "libvirt-domain")
    xml = swap(xml, "<name>vm1</name>", f"<name>{name}</name>", "libvirt-domain")
    xml = swap(xml, r"    <disk type='file' device='disk'>.*?</disk>\n", "", "libvirt-domain")
    return xml, re.search(r"<mac address='([0-9a-f:]+)'/>", xml).group(1)


def libvirt_guest(rig, blocks, vm, interface=None):
    """vm's domain (defined, not started) as a Guest talking through its console socket."""
    name = f"vhd-{os.getpid()}-{vm}"
    xml, mac = domain_xml(rig, blocks, name, interface)
    console = os.path.join(rig.dir, f"{vm}.console")
    g = Guest(rig, vm, mac, A_IP)
    boot = (f"<kernel>{os.path.join(vhdrig.WORK, 'vmlinuz')}</kernel>\n"
            f"    <initrd>{os.path.join(vhdrig.WORK, 'initrd.gz')}</initrd>\n"
            f"    <cmdline>{g.cmdline()}</cmdline>")
    xml = swap(xml, "<boot dev='hd'/>", boot, "libvirt-domain")
    xml = swap(xml, "    <serial type='pty'/>\n    <console type='pty'/>\n",
               f"    <serial type='unix'><source mode='bind' path='{console}'/><target port='0'/></serial>\n",
               "libvirt-domain")
    g.domain = Domain(LIBVIRT, name, moved(rig, xml), console)
    return g


def start_switch(rig, blocks, port):
    """vhostd with the documented line for port and a tap with the host's address."""
    lines = [line for line in moved(rig, blocks["libvirt-ports"]).splitlines() if line.split()[1:2] == [port]]
    expect(len(lines) == 1, f"docs/libvirt.md: libvirt-ports has no line for {port}")
    rig.start_vhostd(lines + [f"add-port host0 tap ifname={rig.tap}"])
    rig.tap_up()
    rig.host_ifaces.append((rig.tap, rig.ns))
    return lines[0]


def qemu_user(g):
    """The user the domain's QEMU runs as (libvirt's, not root)."""
    pid = open(f"/run/libvirt/qemu/{g.domain.name}.pid").read().strip()
    return run(["ps", "-o", "user=", "-p", pid]).stdout.strip()


def traffic(rig, g, host, port, what):
    """The guest reaches the host (within 30 s), then 5 pings all answered, 8 MiB of TCP each way with every byte checked."""
    rig.wait_link([g.name])
    secs = g.reach(HOST_IP)
    rc, out = g.ping(HOST_IP)
    ping_ok(f"{g.name}->host {what}", rc, out, 5)
    t1 = tcp(g, host, port)
    t2 = tcp(host, g, port + 1)
    check_no_errors(rig, what)
    return f"host answered after {secs:.1f} s, 5 pings, TCP {g.name}->host {t1}, host->{g.name} {t2}"


def destroy_start(rig, g, host, port):
    g.kill()  # virsh destroy
    state = g.domain.state()
    expect(state.startswith("shut off"), f"after virsh destroy the domain is '{state}'")
    rig.wait_link([g.name], up=False, timeout=10)
    g.boot()
    g.wait_agent()
    return f"'{state}', port down; started again: " + traffic(rig, g, host, port, "after virsh start")


def vhostd_restart(rig, g, host, line, port):
    """vhostd stopped (SIGTERM), then killed (SIGKILL), and started again each time under the running domain:
    the guest's link comes back by itself, and the host's tap, created again, has the MAC it had (a guest that
    sees no link change keeps the host's MAC in its ARP cache)."""
    res = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        mac = rig.nsrun("cat", f"/sys/class/net/{rig.tap}/address").stdout.strip()
        rc = rig.stop_vhostd(sig)
        expect(sig == signal.SIGKILL or rc == 0, f"vhostd exited {rc} on SIGTERM")
        rig.start_vhostd([line, f"add-port host0 tap ifname={rig.tap}"])
        rig.tap_up()
        again = rig.nsrun("cat", f"/sys/class/net/{rig.tap}/address").stdout.strip()
        expect(again == mac, f"the tap came back with MAC {again}, was {mac}")
        expect(g.p.poll() is None, f"the domain is gone: {g.domain.state()}")
        what = f"after {signal.Signals(sig).name}"
        res.append(f"{what}: " + traffic(rig, g, host, port, what))
        port += 2
    return "; ".join(res)


def scenario_client(rig):
    blocks = doc_blocks(DOC)
    os.chmod(rig.dir, 0o755)  # like /run/vhostd: QEMU (libvirt-qemu) reaches the sockets in it
    line = start_switch(rig, blocks, "vm1")
    host = HostNs(rig, rig.ns, HOST_IP, "host")
    g = libvirt_guest(rig, blocks, "vm1")
    st = os.stat(rig.sock("vm1"))
    g.boot()
    g.wait_agent()

    def client_traffic():
        user = qemu_user(g)
        expect(user == "libvirt-qemu", f"the domain's QEMU runs as {user}, wanted libvirt-qemu (qemu.conf's user)")
        return (f"socket mode {st.st_mode & 0o777:o} group {st.st_gid} ({line.split(' ', 3)[3]}), QEMU as {user}; "
                + traffic(rig, g, host, 7401, "first boot"))

    def client_destroy_start():
        return destroy_start(rig, g, host, 7411)

    def client_vhostd_restart():
        return vhostd_restart(rig, g, host, line, 7421)

    yield "libvirt_client_traffic", client_traffic
    yield "libvirt_client_destroy_start", client_destroy_start
    yield "libvirt_client_vhostd_restart", client_vhostd_restart


def scenario_server(rig):
    blocks = doc_blocks(DOC)
    os.chmod(rig.dir, 0o755)
    mkdir = moved(rig, blocks["libvirt-server-dir"])
    run(["sh", "-ec", mkdir])
    line = start_switch(rig, blocks, "vm2")
    host = HostNs(rig, rig.ns, HOST_IP, "host")
    g = libvirt_guest(rig, blocks, "vm2", interface=blocks["libvirt-interface-server"])
    g.boot()  # virsh start returns once vhostd connected (QEMU waits for it)
    g.wait_agent()

    def server_traffic():
        return traffic(rig, g, host, 7501, "first boot")

    def server_destroy_start():
        return destroy_start(rig, g, host, 7511)

    def server_vhostd_restart():
        return vhostd_restart(rig, g, host, line, 7521)

    yield "libvirt_server_traffic", server_traffic
    yield "libvirt_server_destroy_start", server_destroy_start
    yield "libvirt_server_vhostd_restart", server_vhostd_restart


SCENARIOS = [
    ("client", scenario_client, ["libvirt_client_traffic", "libvirt_client_destroy_start",
                                 "libvirt_client_vhostd_restart"]),
    ("server", scenario_server, ["libvirt_server_traffic", "libvirt_server_destroy_start",
                                 "libvirt_server_vhostd_restart"]),
]


def main():
    missing = [t for t in ("libvirtd", "virtlogd", "virsh") if not shutil.which(t)]
    why = f"not installed: {' '.join(missing)} (scripts/deps.sh check installs them)" if missing else None
    if not why and os.geteuid() == 0:  # (not root: run_scenarios says so)
        why = LIBVIRT.up()
    try:
        return vhdrig.run_scenarios(SCENARIOS, FILTER, unavailable=why)
    finally:
        LIBVIRT.stop()


if __name__ == "__main__":
    sys.exit(main())
