#!/usr/bin/env python3
"""A Linux guest's virtio-net driver (Debian 6.12 kernel under QEMU, TCG) against our vhost-user back-end.

vhost-pktgen --backend serves the guest's NIC. In the tap cases it bridges the NIC to a tap interface in a
network namespace of its own, so the host's kernel is the guest's peer: ping and ARP, 2000 UDP datagrams each
way with every datagram checked (loss, duplication, corruption), 8 MiB of TCP each way with every byte checked,
offloads (checksum, TSO) in the virtio-net header both ways. In the icmpecho cases vhost-pktgen itself answers
ARP and ping. The guest (tests/interop/guest/) prints VHD-RESULT lines; the host's ends (hostpeer.py) print the
same; vhost-pktgen's JSON counters must show the negotiated ring layout and no errors.

usage: test_guest.py PKTGEN [case-substring]
Prints PASS/FAIL lines like tests/unit/harness.h. VHD_INTEROP_WORK is where the guest is built and cached
(default: the build directory's interop/).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import vhdrig  # noqa: E402
from vhdrig import log, run  # noqa: E402

PKTGEN = os.path.abspath(sys.argv[1])
FILTER = sys.argv[2] if len(sys.argv) > 2 else ""
vhdrig.configure(work=os.environ.get("VHD_INTEROP_WORK",
                                     os.path.join(os.path.dirname(os.path.dirname(PKTGEN)), "interop")))
GUEST_IP, HOST_IP, GUEST_MAC = "10.0.0.2", "10.0.0.1", "52:54:00:12:34:56"
F_MRG, F_ACCESS_PLATFORM, F_PACKED = 1 << 15, 1 << 33, 1 << 34
# vIOMMU cases: the guest kernel's IOMMU mode (docs/viommu.md): every unmap invalidated at once (strict), unmaps
# batched and invalidated later (lazy, the kernel's default), or no translation for the device (pt).
IOMMU_MODES = {"strict": "intel_iommu=on iommu.strict=1", "lazy": "intel_iommu=on iommu.strict=0",
               "pt": "intel_iommu=on iommu=pt"}
OOPS_MARKERS = ("BUG:", "Oops:", "WARNING:", "general protection fault", "Kernel panic", "kernel BUG")

# The guest's tests (tests/interop/guest/tests/*.sh) and the host ends each one needs:
# host receivers started before boot, and senders started when the guest says VHD-READY on a port.
TRAFFIC = {"recv": [("udp-recv", 7001, 2000), ("tcp-recv", 7003, 8388608)],
           "send": {7002: ("udp-send", 2000), 7004: ("tcp-send", 8388608)},
           "guest": ["ping", "arping", "udp-send", "udp-recv", "tcp-send", "tcp-recv"]}
GUEST_TESTS = {
    "traffic": TRAFFIC,
    "ping": {"recv": [], "send": {}, "guest": ["ping", "arping", "ping-again"]},
    "mq": {"recv": [("udp-recv", 7001, 1000), ("udp-recv", 7005, 1000), ("tcp-recv", 7003, 4194304)],
           "send": {7002: ("udp-send", 2000), 7004: ("tcp-send", 4194304)},
           "guest": ["ping", "udp-send", "udp-send", "udp-recv", "tcp-send", "tcp-recv"]},
    "reload": {"recv": [("udp-recv", 7001, 1000)], "send": {},
               "guest": ["ping-before", "rmmod", "reload", "ping-after", "udp-send"]},
    "hang": {"recv": [], "send": {}, "guest": ["ping"]},
}

# name: (peer mode, guest tests booted one after the other, options)
#   packed / mrg: the NIC's packed= and mrg_rxbuf= (our back-end offers both)
#   server: QEMU listens (server=on) and our back-end connects (--client)
#   queues: queue pairs (the guest gets as many vCPUs, so that it uses them all)
#   iommu: the guest sits behind QEMU's intel-iommu (device-iotlb, ATS) with its NIC iommu_platform=on, in that
#          kernel IOMMU mode (IOMMU_MODES); vhost-pktgen --iommu offers ACCESS_PLATFORM and its IOTLB must move
CASES = [
    ("guest_split_mrg_tap", "tap", ["traffic"], {}),
    ("guest_split_nomrg_tap", "tap", ["traffic"], {"mrg": False}),
    ("guest_packed_mrg_tap", "tap", ["traffic"], {"packed": True}),
    ("guest_packed_nomrg_tap", "tap", ["traffic"], {"packed": True, "mrg": False}),
    ("guest_split_qemu_server_tap", "tap", ["traffic"], {"server": True}),
    ("guest_packed_qemu_server_tap", "tap", ["ping"], {"server": True, "packed": True}),
    ("guest_split_2qp_tap", "tap", ["mq"], {"queues": 2}),
    ("guest_split_icmpecho", "icmpecho", ["ping"], {}),
    ("guest_packed_nomrg_icmpecho", "icmpecho", ["ping"], {"packed": True, "mrg": False}),
    ("guest_driver_reload", "tap", ["reload"], {}),
    ("guest_packed_driver_reload", "tap", ["reload"], {"packed": True}),
    ("guest_qemu_killed_and_restarted", "tap", ["hang", "traffic"], {}),
    ("guest_iommu_strict_split_tap", "tap", ["traffic"], {"iommu": "strict"}),
    ("guest_iommu_pt_split_tap", "tap", ["traffic"], {"iommu": "pt"}),
    ("guest_iommu_lazy_split_tap", "tap", ["traffic"], {"iommu": "lazy"}),
    ("guest_iommu_lazy_packed_tap", "tap", ["traffic"], {"iommu": "lazy", "packed": True}),
]
# Run only when named exactly (test_guest.py PKTGEN NAME): strict packed loses a datagram now and then for a reason
# not yet found (docs/viommu.md "Guest-side drops"); lazy per-burst repeats the lazy case the costly way a NIC
# without ATS needs (docs/viommu.md "Lazy invalidation"; here the NIC has ATS, so it is not needed).
OPT_IN = [
    ("guest_iommu_strict_packed_tap", "tap", ["traffic"], {"iommu": "strict", "packed": True}),
    ("guest_iommu_lazy_per_burst_split_tap", "tap", ["traffic"], {"iommu": "lazy", "per_burst": True}),
]


class Case:
    """One case: a vhdrig.Rig (temporary directory, network namespace, the processes) around vhost-pktgen
    --backend, the guest's boots and the host's ends (hostpeer.py in the namespace)."""

    def __init__(self, name, peer, boots, opt):
        self.name, self.peer, self.boots, self.opt = name, peer, boots, opt
        self.rig = vhdrig.Rig(name)
        self.sock = self.rig.sock("vu")
        self.host = vhdrig.HostNs(self.rig, self.rig.ns, HOST_IP, "host")
        self.lock = threading.Lock()
        self.console = []

    # ---------------------------------------------------------------- pieces
    def hostpeer(self, *args):
        """hostpeer.py args in the namespace. @return (who, its vhdrig.NsJob)."""
        return f"host {args[0]} {args[-2] if args[0].endswith('recv') else args[2]}", self.host.start(*args)

    def qemu(self, test):
        o = self.opt
        q = o.get("queues", 1)
        chardev = f"path={self.sock}" + (",server=on,wait=off" if o.get("server") else "")
        nic = ",packed=on" if o.get("packed") else ""
        nic += ",mrg_rxbuf=off" if o.get("mrg", True) is False else ""
        append = f"console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init vhd.test={test}"
        if o.get("iommu"):
            append += " " + IOMMU_MODES[o["iommu"]]
        return vhdrig.qemu_cmd(append, chardev, GUEST_MAC, queues=q, nic_extra=nic, iommu=bool(o.get("iommu")))

    # ---------------------------------------------------------------- the case
    def run(self):
        o = self.opt
        q = o.get("queues", 1)
        be = [PKTGEN, "--backend", self.sock, "--json", "--queues", str(q)]
        if o.get("server"):
            be.append("--client")
        if o.get("mrg", True) is False:
            be.append("--no-mrg")  # not needed (QEMU's mrg_rxbuf=off is enough), but the offer should match
        if o.get("iommu"):
            be.append("--iommu")
        if o.get("per_burst"):
            be.append("--iotlb-per-burst")
        tap = self.rig.tap
        be += ["--mode", "tap", "--tap", tap] if self.peer == "tap" else ["--mode", "icmpecho"]
        pktgen = vhdrig.spawn(be, self.rig.procs)
        pk_out = []
        pk_thread = threading.Thread(target=lambda: pk_out.extend(pktgen.stdout), daemon=True)
        pk_thread.start()
        if self.peer == "tap":
            for _ in range(200):
                if run(["ip", "link", "show", tap], check=False).returncode == 0:
                    break
                if pktgen.poll() is not None:
                    break
                time.sleep(0.02)
            run(["ip", "link", "set", tap, "netns", self.rig.ns])
            # The tap's queue holds a whole 2000-datagram burst, so a back-end slowed by load (or by a lazy
            # guest's IOTLB misses, each answered by TCG QEMU) shows as delay, never as the host kernel's drop.
            self.rig.nsrun("ip", "link", "set", tap, "txqueuelen", "4096")
            self.rig.nsrun("ip", "addr", "add", f"{HOST_IP}/24", "dev", tap)
            self.rig.nsrun("ip", "link", "set", tap, "up")
        elif not o.get("server"):
            for _ in range(200):
                if os.path.exists(self.sock):
                    break
                time.sleep(0.02)
        errors = []
        for boot in self.boots:
            errors += self.boot(boot)
            if pktgen.poll() is not None:
                errors.append(f"vhost-pktgen exited ({pktgen.returncode}) during boot '{boot}'")
                break
        if self.peer == "tap" and pktgen.poll() is None:
            # tx_dropped: host frames for the guest that vhost-pktgen did not read in time (the tap's queue).
            log(f"{self.name}: tap {self.rig.iface_stats(tap, ns=self.rig.ns)}")
        # vhost-pktgen's own view: it stayed up, negotiated what was asked for, saw no errors.
        if pktgen.poll() is None:
            pktgen.send_signal(signal.SIGINT)
        try:
            pktgen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            errors.append("vhost-pktgen did not exit on SIGINT")
        pk_thread.join(timeout=5)
        stats = None
        for line in reversed(pk_out):
            if line.startswith("{"):
                stats = json.loads(line)
                break
        if stats is None:
            errors.append(f"no JSON from vhost-pktgen (exit {pktgen.returncode}): {''.join(pk_out)[-800:]}")
        else:
            t = stats["total"]
            f = stats["features"]
            if bool(f & F_PACKED) != bool(o.get("packed")):
                errors.append(f"features 0x{f:x}: packed ring {'not ' if o.get('packed') else ''}negotiated")
            if bool(f & F_MRG) != o.get("mrg", True):
                errors.append(f"features 0x{f:x}: mergeable RX buffers {'not ' if o.get('mrg', True) else ''}"
                              f"negotiated")
            if t["errors"]:
                errors.append(f"vhost-pktgen counted {t['errors']} errors")
            if o.get("iommu"):
                io = stats.get("iotlb", {})
                if not f & F_ACCESS_PLATFORM:
                    errors.append(f"features 0x{f:x}: ACCESS_PLATFORM not negotiated")
                # The rings alone take a MISS (QEMU pushes only the used rings) and updates; a refusal means
                # QEMU sent something we could not map.
                if not io.get("misses") or not io.get("updates") or io.get("refused"):
                    errors.append(f"IOTLB counters did not move as they must: {io}")
                log(f"{self.name}: IOTLB {io}")
            if t["rx_packets"] == 0 or t["tx_packets"] == 0:
                errors.append(f"vhost-pktgen moved rx {t['rx_packets']} tx {t['tx_packets']}")
            if q > 1:
                per = [x["rx_packets"] for x in stats["queues"]]
                if len(per) != q or min(per) == 0:
                    errors.append(f"guest TX not spread over {q} queues: {per}")
            log(f"{self.name}: vhost-pktgen rx {t['rx_packets']} frames / {t['rx_bytes']} B, tx {t['tx_packets']}"
                f" / {t['tx_bytes']} B, drops {t['drops']}, features 0x{f:x}")
        if errors:
            for line in pk_out[-30:]:
                if not line.startswith("{"):
                    log(f"{self.name} vhost-pktgen: {line.rstrip()}")
        return errors

    def boot(self, test):
        spec = GUEST_TESTS[test]
        errors = []
        peers = []
        with self.lock:
            self.console = []
        for what, port, amount in spec["recv"]:
            who, job = self.hostpeer(what, port, amount, 3000) if what == "udp-recv" else \
                self.hostpeer(what, port, amount)
            if not job.ready_ev.wait(10):
                errors.append(f"host {what} {port} never listened")
            peers.append((who, job))
        qp = vhdrig.spawn(self.qemu(test), self.rig.procs)
        senders = []

        def on_line(line):
            if line.startswith("VHD-READY "):
                port = int(line.split()[2])
                if port in spec["send"]:
                    what, amount = spec["send"][port]
                    senders.append(self.hostpeer(what, GUEST_IP, port, amount))
            elif line.startswith("VHD-HANG"):
                os.killpg(qp.pid, signal.SIGKILL)  # QEMU dies without a word to the back-end

        def console():
            for line in qp.stdout:
                line = line.rstrip("\r\n")
                with self.lock:
                    self.console.append(line)
                on_line(line)
        qt = threading.Thread(target=console, daemon=True)
        qt.start()
        try:
            qp.wait(timeout=180)
        except subprocess.TimeoutExpired:
            errors.append("guest did not finish within 180 s")
            vhdrig.kill_group(qp)
        qt.join(timeout=5)
        killed = test == "hang"
        if not killed and qp.returncode != 0:
            errors.append(f"QEMU exited with {qp.returncode}")
        with self.lock:
            console = list(self.console)
        warnings = vhdrig.qemu_warnings(console)
        if warnings:
            errors.append(f"[{test}] QEMU warned: {' | '.join(warnings)}")
        results = [("guest", line) for line in console if line.startswith("VHD-RESULT ")]
        # The host's ends had the whole guest run to finish; whatever is still running failed.
        for who, job in peers + senders:
            job.result(timeout=15)
            results += [(who, line) for line in job.lines if line.startswith("VHD-RESULT ")]
        guest = [line.split()[1] for who, line in results if who == "guest"]
        for who, line in results:
            parts = line.split(maxsplit=3)
            if len(parts) < 3 or parts[2] != "ok":
                errors.append(f"[{test}] {who}: {line}")
        if guest != spec["guest"]:
            errors.append(f"[{test}] guest results {guest}, wanted {spec['guest']}")
        host_results = [(who, line) for who, line in results if who != "guest"]
        want_host = len(spec["recv"]) + len(spec["send"])
        if len(host_results) != want_host:
            errors.append(f"[{test}] {len(host_results)} host results, wanted {want_host}: {host_results}")
        for line in console:
            if line.startswith(("VHD-RESULT", "VHD-COUNTERS", "VHD-ETH", "VHD-DONE")):
                log(f"{self.name} [{test}] {line}")
        if errors:
            # A guest oops is printed from its first line, so its cause (not just the panic) reaches the log.
            oops = next((i for i, line in enumerate(console) if any(m in line for m in OOPS_MARKERS)), None)
            start = max(0, len(console) - 40) if oops is None else max(0, oops - 5)
            log(f"{self.name} [{test}] console {'from the oops' if oops is not None else 'tail'}:")
            for line in console[start:start + 200]:
                log(f"  | {line}")
        return errors


def main():
    # meson's timeout sends SIGTERM: unwind through the running case's cleanup (QEMU, vhost-pktgen, netns).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    cases = [c for c in CASES if FILTER in c[0]] + [c for c in OPT_IN if FILTER == c[0]]
    missing = [t for t in ("qemu-system-x86_64", "ip") if not shutil.which(t)]
    prep_err = f"not installed: {' '.join(missing)} (scripts/deps.sh check installs them)" if missing else \
        vhdrig.prepare_guest()
    failed = 0
    for name, peer, boots, opt in cases:
        if prep_err:
            failed += vhdrig.verdict(name, prep_err)
            continue
        t0 = time.time()
        c = None
        try:
            c = Case(name, peer, boots, opt)
            errors = c.run()
        except Exception as e:  # a broken step of the rig is this case's failure, not the suite's end
            errors = [f"{type(e).__name__}: {e}"]
        finally:
            if c:
                c.rig.cleanup()
        failed += vhdrig.verdict(name, "; ".join(errors), t0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
