#!/usr/bin/env python3
"""DPDK 22.11's dpdk-testpmd judges both sides of vhostd, one named case per configuration.

A (dpdk_virtio_user_*): testpmd drives our back-end (vhost-pktgen --backend) through its virtio-user PMD.
B (dpdk_vhost_*): our frontend (vhost-pktgen --frontend) drives testpmd's vhost PMD (net_vhost).

Each case runs one of three flows and compares both sides' counters exactly:
  dpdk_tx  testpmd txonly -> vhost-pktgen rxonly: what testpmd counts as sent (forward statistics TX-packets)
           is exactly what pktgen received, and every frame has testpmd's length (rx_bytes = rx * 64).
  vhd_tx   vhost-pktgen txonly --count N -> testpmd rxonly: N = testpmd's RX-packets + RX-dropped (imissed)
           + RX-error + RX-nombufs of its forward statistics, and testpmd's NIC RX-bytes = pktgen's tx_bytes.
  echo     vhost-pktgen txonly --verify --count N <-> testpmd macswap: testpmd received N (RX-packets +
           RX-dropped), sent back TX-packets = what pktgen received, and RX = TX + TX-dropped; pktgen saw no
           duplicate or corrupt frame, counted lost <= TX-dropped, and exits 1 exactly when it counted any lost.
Every case also checks the features pktgen negotiated (RING_PACKED, MRG_RXBUF, IN_ORDER, MQ, ACCESS_PLATFORM),
that every queue pair carried traffic, both exit statuses, and that at least MIN_RX frames arrived.

dpdk_vhost_iommu_*: testpmd's net_vhost with iommu-support=1 behind our frontend with --iommu (all memory mapped
with an IOTLB UPDATE per queue; DPDK then asks for nothing) or --iommu-lazy (nothing mapped up front: every translation
DPDK uses comes from a MISS on the back-end channel, each answered); pktgen's iotlb counters are checked too.
No lazy case has DPDK dequeue from a packed ring: DPDK 22.11's fill_vec_buf_packed() counts the descriptor
before translating it, so a buffer that misses is consumed and its frame dropped uncounted (lost 52000-104000 of
400000 in three runs, RX-dropped 0); the split dequeue leaves such a buffer in the ring, as it should.

testpmd runs with its two lcores on CPU 1, vhost-pktgen on CPU 0. Needs root, hugepages (1024 x 2 MiB are
reserved and hugetlbfs is mounted on /dev/hugepages when missing) and dpdk-testpmd (Debian: dpdk); without either
every case FAILs with the reason. About 50 s for the first twelve cases, 30 s for the five iommu ones.

What testpmd does that the harness works around (so the counts can be exact):
  - testpmd frees, uncounted, what its RX queues hold when forwarding starts: --no-flush-rx.
  - the virtio PMD's dev_start fills the RX rings, then frees what the device already wrote there ("Flush the old
    packets", after the MQ control command): in virtio-user cases where we send, a silent back-end serves testpmd's
    start, and the sender connects afterwards through virtio-user's server-mode reconnect.
  - testpmd does not ignore SIGPIPE and dies of it when it stops a port whose back-end has gone: it is started
    with SIGPIPE ignored.

usage: test_dpdk.py PKTGEN [case-substring]
environment: VHD_DPDK_VERBOSE=1 (a '#' line per case with its time and numbers), VHD_DPDK_COUNT (frames pktgen
sends, default 400000), VHD_DPDK_TESTPMD (default dpdk-testpmd)
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import vhdrig  # noqa: E402
from vhdrig import CaseError as CaseFail  # noqa: E402

PKTGEN = sys.argv[1] if len(sys.argv) > 1 else ""
FILTER = sys.argv[2] if len(sys.argv) > 2 else ""
TESTPMD = os.environ.get("VHD_DPDK_TESTPMD", "dpdk-testpmd")
VERBOSE = bool(os.environ.get("VHD_DPDK_VERBOSE"))  # a '#' line per case: seconds and the numbers compared
HUGE_WANT = 1024        # 2 MiB pages
HUGE_MIN_FREE = 160     # testpmd -m 256 with a 32768-mbuf pool peaks at 128 pages; two never run at once
MIN_RX = 100000         # the receiving side must see at least this many frames
COUNT = int(os.environ.get("VHD_DPDK_COUNT", "400000"))  # frames pktgen sends in the vhd_tx and echo flows
DPDK_TX_TARGET = 2000000  # dpdk_tx: stop testpmd once its NIC stats show this many sent ...
DPDK_TX_MAX_S = 6.0       # ... or after this long
TXPKT_LEN = 64          # testpmd txonly frame length (its default)

F_MRG_RXBUF, F_MQ, F_ACCESS_PLATFORM, F_RING_PACKED, F_IN_ORDER = 15, 22, 33, 34, 35


class Case:
    """iommu (side vhost only): "" without, "premap" for pktgen --iommu, "lazy" for --iommu-lazy."""
    def __init__(self, name, side, packed, mrg, in_order, queues, dpdk_server, flow, size="64", iommu=""):
        self.name, self.side, self.packed, self.mrg, self.in_order = name, side, packed, mrg, in_order
        self.queues, self.dpdk_server, self.flow, self.size, self.iommu = queues, dpdk_server, flow, size, iommu


# side "virtio_user": testpmd is the driver, pktgen the back-end; "vhost": testpmd is the back-end.
# dpdk_server: testpmd listens (virtio-user server=1 / net_vhost default) and pktgen connects; else the reverse.
CASES = [
    Case("dpdk_virtio_user_split_mrg_tx_to_vhd", "virtio_user", False, True, False, 1, False, "dpdk_tx"),
    Case("dpdk_virtio_user_packed_nomrg_server_vhd_to_rx", "virtio_user", True, False, False, 1, True, "vhd_tx",
         "60-1514"),
    Case("dpdk_virtio_user_split_mrg_inorder_server_2q_echo", "virtio_user", False, True, True, 2, True, "echo",
         "60-9000"),
    Case("dpdk_virtio_user_packed_mrg_inorder_2q_tx_to_vhd", "virtio_user", True, True, True, 2, False, "dpdk_tx"),
    Case("dpdk_virtio_user_packed_mrg_server_vhd_to_rx", "virtio_user", True, True, False, 1, True, "vhd_tx",
         "60-9000"),
    Case("dpdk_virtio_user_split_nomrg_server_2q_vhd_to_rx", "virtio_user", False, False, False, 2, True, "vhd_tx",
         "60-1514"),
    Case("dpdk_vhost_split_mrg_tx_to_vhd", "vhost", False, True, False, 1, True, "dpdk_tx"),
    Case("dpdk_vhost_packed_nomrg_vhd_to_rx", "vhost", True, False, False, 1, True, "vhd_tx", "60-1514"),
    Case("dpdk_vhost_split_nomrg_inorder_2q_echo", "vhost", False, False, True, 2, True, "echo", "60-1514"),
    Case("dpdk_vhost_packed_mrg_inorder_client_2q_tx_to_vhd", "vhost", True, True, True, 2, False, "dpdk_tx"),
    Case("dpdk_vhost_split_mrg_client_vhd_to_rx", "vhost", False, True, False, 1, False, "vhd_tx", "60-9000"),
    Case("dpdk_vhost_packed_mrg_echo", "vhost", True, True, False, 1, True, "echo", "60-9000"),
    Case("dpdk_vhost_iommu_split_mrg_echo", "vhost", False, True, False, 1, True, "echo", "60-1514", "premap"),
    Case("dpdk_vhost_iommu_lazy_split_mrg_echo", "vhost", False, True, False, 1, True, "echo", "60-9000", "lazy"),
    Case("dpdk_vhost_iommu_lazy_packed_nomrg_2q_tx_to_vhd", "vhost", True, False, False, 2, True, "dpdk_tx",
         iommu="lazy"),
    Case("dpdk_vhost_iommu_lazy_split_mrg_vhd_to_rx", "vhost", False, True, False, 1, True, "vhd_tx", "60-1514",
         "lazy"),
    Case("dpdk_vhost_iommu_packed_mrg_vhd_to_rx", "vhost", True, True, False, 1, True, "vhd_tx", "60-1514",
         "premap"),
]


# ------------------------------------------------------------------ environment

def wait_for_pktgen():
    for _ in range(600):  # another engineer may be rebuilding build/release
        if os.access(PKTGEN, os.X_OK):
            return
        time.sleep(0.1)
    raise CaseFail(f"{PKTGEN} missing or not executable")


# ------------------------------------------------------------------ processes (vhdrig.Proc)

def tail(p, n=15):
    return f"--- {p.name} ({' '.join(p.args)}), last lines:\n  " + "\n  ".join(p.lines(n))


# ------------------------------------------------------------------ testpmd output

def nic_stats(text):
    """The last complete periodic 'NIC statistics for port 0' block, or None."""
    blocks = text.split("NIC statistics for port 0")[1:]
    for b in reversed(blocks):
        m1 = re.search(r"RX-packets:\s*(\d+)\s+RX-missed:\s*(\d+)\s+RX-bytes:\s*(\d+)", b)
        m2 = re.search(r"RX-errors:\s*(\d+)", b)
        m3 = re.search(r"RX-nombuf:\s*(\d+)", b)
        m4 = re.search(r"TX-packets:\s*(\d+)\s+TX-errors:\s*(\d+)\s+TX-bytes:\s*(\d+)", b)
        if m1 and m2 and m3 and m4:
            return {"rx": int(m1[1]), "missed": int(m1[2]), "rx_bytes": int(m1[3]), "rx_errors": int(m2[1]),
                    "nombuf": int(m3[1]), "tx": int(m4[1]), "tx_errors": int(m4[2]), "tx_bytes": int(m4[3])}
    return None


def fwd_stats(text):
    """testpmd's final forward statistics: the accumulated totals and the per-stream (per-queue) lines."""
    t = text
    i = t.find("Accumulated forward statistics for all ports")
    if i < 0:
        return None
    acc = t[i:i + 800]
    j = acc.find("+++\n", acc.find("\n"))  # the block's closing line
    acc = acc[:j] if j > 0 else acc
    m1 = re.search(r"RX-packets:\s*(\d+)\s+RX-dropped:\s*(\d+)\s+RX-total:\s*(\d+)", acc)
    m2 = re.search(r"TX-packets:\s*(\d+)\s+TX-dropped:\s*(\d+)\s+TX-total:\s*(\d+)", acc)
    if not (m1 and m2):
        return None
    s = {"rx": int(m1[1]), "rx_dropped": int(m1[2]), "tx": int(m2[1]), "tx_dropped": int(m2[2])}
    m = re.search(r"RX-error:\s*(\d+)", acc)
    s["rx_error"] = int(m[1]) if m else 0
    m = re.search(r"RX-nombufs:\s*(\d+)", acc)
    s["rx_nombufs"] = int(m[1]) if m else 0
    s["streams"] = {}
    for m in re.finditer(r"Forward Stats for RX Port=\s*0/Queue=\s*(\d+) -> TX Port=\s*0/Queue=\s*(\d+)[^\n]*\n"
                         r"\s*RX-packets:\s*(\d+)\s+TX-packets:\s*(\d+)\s+TX-dropped:\s*(\d+)", t):
        s["streams"][int(m[1])] = {"rx": int(m[3]), "tx": int(m[4]), "tx_dropped": int(m[5])}
    return s


def pktgen_json(proc):
    lines = proc.out().strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (ValueError, IndexError):
        raise CaseFail(f"vhost-pktgen printed no JSON\n{tail(proc)}")


# ------------------------------------------------------------------ one case

def testpmd_args(c, prefix, sock, fwd):
    if c.side == "virtio_user":
        vdev = (f"net_virtio_user0,path={sock},queues={c.queues},packed_vq={int(c.packed)},"
                f"mrg_rxbuf={int(c.mrg)},in_order={int(c.in_order)}" + (",server=1" if c.dpdk_server else ""))
    else:
        vdev = (f"net_vhost0,iface={sock},queues={c.queues}" + ("" if c.dpdk_server else ",client=1") +
                (",iommu-support=1" if c.iommu else ""))
    extra = ["--tx-first", f"--txpkts={TXPKT_LEN}"] if fwd == "txonly" else []
    return vhdrig.testpmd_cmd(1, prefix, [vdev], fwd, c.side == "virtio_user", c.queues, extra, TESTPMD)


def pktgen_args(c, sock, mode):
    args = ["taskset", "-c", "0", PKTGEN, "--backend" if c.side == "virtio_user" else "--frontend", sock,
            "--mode", mode, "--queues", str(c.queues), "--json"]
    if c.dpdk_server:
        args.append("--client")
    elif c.side == "vhost":
        args.append("--server")
    if not c.mrg:
        args.append("--no-mrg")
    if c.side == "vhost":
        if c.packed:
            args.append("--packed")
        if c.in_order:
            args.append("--in-order")
        if c.iommu:
            args.append("--iommu-lazy" if c.iommu == "lazy" else "--iommu")
    if mode == "txonly":
        args += ["--size", c.size, "--count", str(COUNT)]
        if c.flow == "echo":
            args.append("--verify")
    return args


def wait_stats(tp, pred, timeout):
    """Poll testpmd's periodic NIC stats until pred(stats) or timeout; returns the last stats seen."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        if not tp.running():
            raise CaseFail(f"testpmd exited early with {tp.p.returncode}\n{tail(tp)}")
        last = nic_stats(tp.out())
        if last and pred(last):
            return last
        time.sleep(0.1)
    return last


def wait_sender(pg, tp, stall_s=5.0, limit_s=90.0):
    """Wait for vhost-pktgen txonly --count to finish; fail early if one of our queues broke or testpmd's
    received count stopped moving."""
    t0 = last_move = time.monotonic()
    last_rx = -1
    while pg.running():
        now = time.monotonic()
        broken = [l for l in pg.err().splitlines() if "queue broken" in l]
        if broken:
            raise CaseFail(f"vhost-pktgen: {broken[0]}")
        if not tp.running():
            raise CaseFail(f"testpmd exited with {tp.p.returncode} while vhost-pktgen was sending")
        ns = nic_stats(tp.out())
        rx = ns["rx"] + ns["missed"] if ns else 0
        if rx != last_rx:
            last_rx, last_move = rx, now
        if now - last_move > stall_s and now - t0 > 10:
            raise CaseFail(f"traffic stalled: testpmd's RX stuck at {rx} for {stall_s} s, vhost-pktgen still sending")
        if now - t0 > limit_s:
            raise CaseFail(f"vhost-pktgen did not finish within {limit_s} s")
        time.sleep(0.1)
    return pg.p.returncode


def check_features(c, feat):
    want = {F_RING_PACKED: c.packed, F_MRG_RXBUF: c.mrg, F_IN_ORDER: c.in_order, F_MQ: c.queues > 1,
            F_ACCESS_PLATFORM: bool(c.iommu)}
    if c.side == "vhost" and c.queues == 1:
        del want[F_MQ]  # DPDK's vhost offers MQ and our frontend takes it even for one pair
    names = {F_RING_PACKED: "RING_PACKED", F_MRG_RXBUF: "MRG_RXBUF", F_IN_ORDER: "IN_ORDER", F_MQ: "MQ",
             F_ACCESS_PLATFORM: "ACCESS_PLATFORM"}
    bad = [f"{names[b]} {'missing' if w else 'negotiated'}" for b, w in want.items() if bool(feat >> b & 1) != w]
    if bad:
        raise CaseFail(f"negotiated features 0x{feat:x}: {', '.join(bad)}")


def run_case(c, idx, workdir):
    wait_for_pktgen()
    sock = os.path.join(workdir, f"{c.name}.sock")
    prefix = f"vhdt{os.getpid()}c{idx}"
    procs = []
    tp = pg = None
    try:
        tp_mode = {"dpdk_tx": "txonly", "vhd_tx": "rxonly", "echo": "macswap"}[c.flow]
        pg_mode = {"dpdk_tx": "rxonly", "vhd_tx": "txonly", "echo": "txonly"}[c.flow]

        def start_tp():
            # testpmd does not ignore SIGPIPE: when the vhost-user peer has gone before testpmd stops its port,
            # its next message would kill it before it prints the statistics.
            p = vhdrig.Proc("testpmd", testpmd_args(c, prefix, sock, tp_mode), workdir, merge=True,
                            sigpipe_ignored=True)
            procs.append(p)
            return p

        def start_pg(mode=pg_mode, name="vhost-pktgen"):
            p = vhdrig.Proc(name, pktgen_args(c, sock, mode), workdir)
            procs.append(p)
            return p

        # The listening side first, then the connecting side once the socket exists.
        if c.side == "virtio_user" and c.flow != "dpdk_tx":
            # virtio_dev_start() fills the RX rings, then (after the MQ control command) frees whatever the
            # back-end already put there ("Flush the old packets"), uncounted. So our sender must not connect
            # before testpmd's port is started: a silent back-end (rxonly) serves the start, goes away, and the
            # sender connects to testpmd's server socket for virtio-user's reconnect.
            assert c.dpdk_server, c.name
            tp = start_tp()
            vhdrig.wait_path(sock, procs, 30)
            warm = start_pg("rxonly", "vhost-pktgen-warmup")
            if wait_stats(tp, lambda s: True, 30) is None:  # the first periodic stats: forwarding has started
                raise CaseFail("testpmd did not start forwarding within 30 s")
            warm.signal(signal.SIGINT)
            if warm.wait(15) != 0:
                raise CaseFail(f"warm-up vhost-pktgen exit status {warm.p.returncode}")
            pg = start_pg()
        elif c.dpdk_server:
            tp = start_tp()
            vhdrig.wait_path(sock, procs, 30)
            pg = start_pg()
        else:
            pg = start_pg()
            vhdrig.wait_path(sock, procs, 15)
            tp = start_tp()

        if c.flow == "dpdk_tx":
            # testpmd sends until stopped; stop it once enough went out, then let pktgen report.
            if wait_stats(tp, lambda s: True, 30) is None:
                raise CaseFail("testpmd did not start forwarding within 30 s")
            wait_stats(tp, lambda s: s["tx"] >= DPDK_TX_TARGET, DPDK_TX_MAX_S)
            tp.signal(signal.SIGINT)
            tp_rc = tp.wait(30)
            time.sleep(0.3)
            pg.signal(signal.SIGINT)
            pg_rc = pg.wait(15)
        else:
            # pktgen sends COUNT frames and exits; wait until testpmd's NIC stats account for all of them
            # (they are printed once a second, so the last block is final), then stop testpmd.
            pg_rc = wait_sender(pg, tp)
            g = pktgen_json(pg)
            sent = g["total"]["tx_packets"]
            wait_stats(tp, lambda s: s["rx"] + s["missed"] + s["rx_errors"] >= sent, 5)
            time.sleep(1.2)  # one more period: nothing moved since
            tp.signal(signal.SIGINT)
            tp_rc = tp.wait(30)

        g = pktgen_json(pg)
        fs = fwd_stats(tp.out())
        ns = nic_stats(tp.out())
        if fs is None:
            raise CaseFail(f"no forward statistics from testpmd (exit {tp_rc})\n{tail(tp)}")
        if tp_rc != 0:
            raise CaseFail(f"testpmd exit status {tp_rc}\n{tail(tp)}")
        return check_result(c, g, pg_rc, fs, ns)
    except CaseFail as e:
        msg = str(e)
        for p in procs:
            if f"--- {p.name} (" not in msg:
                msg += "\n" + tail(p, 25 if p.name == "testpmd" else 8)
        raise CaseFail(msg)
    finally:
        for p in procs:
            p.kill()
        try:
            os.unlink(sock)
        except OSError:
            pass
        vhdrig.dpdk_cleanup(prefix)


def check_iotlb(c, g):
    """Our frontend's IOTLB counters: DPDK's misses answered (lazy), or an UPDATE per queue and no miss."""
    if not c.iommu:
        return
    io = g.get("iotlb")
    if io is None or io["unmapped"]:
        raise CaseFail(f"vhost-pktgen iotlb counters {io}: missing, or misses outside our memory")
    if c.iommu == "lazy" and not io["misses"] > 0:
        raise CaseFail(f"lazy, yet DPDK asked for nothing: {io}")
    if c.iommu == "premap" and (io["misses"] or io["updates"] != 2 * c.queues):
        raise CaseFail(f"everything mapped up front, yet {io}")


def check_result(c, g, pg_rc, fs, ns):
    t = g["total"]
    check_features(c, g["features"])
    check_iotlb(c, g)
    if t["errors"]:
        raise CaseFail(f"vhost-pktgen counted {t['errors']} errors: {json.dumps(g)}")
    if c.flow == "dpdk_tx":
        if pg_rc != 0:
            raise CaseFail(f"vhost-pktgen exit status {pg_rc}")
        if t["rx_packets"] != fs["tx"]:
            raise CaseFail(f"testpmd sent {fs['tx']} (TX-packets; TX-dropped {fs['tx_dropped']}), "
                           f"vhost-pktgen received {t['rx_packets']}")
        if t["rx_bytes"] != t["rx_packets"] * TXPKT_LEN:
            raise CaseFail(f"vhost-pktgen received {t['rx_packets']} frames in {t['rx_bytes']} bytes, "
                           f"testpmd sends {TXPKT_LEN}-byte frames")
        if t["rx_packets"] < MIN_RX:
            raise CaseFail(f"only {t['rx_packets']} frames arrived, want >= {MIN_RX}")
        per_q = [q["rx_packets"] for q in g["queues"]]
        if c.queues > 1:
            st = [fs["streams"].get(q, {}).get("tx") for q in range(c.queues)]
            if st != per_q:
                raise CaseFail(f"per queue: testpmd sent {st}, vhost-pktgen received {per_q}")
        if 0 in per_q:
            raise CaseFail(f"a queue pair carried nothing: {per_q}")
        return (f"testpmd TX-packets {fs['tx']} (TX-dropped {fs['tx_dropped']}) = vhost-pktgen rx {per_q}, "
                f"features 0x{g['features']:x}")
    sent = t["tx_packets"]
    if sent != COUNT:
        raise CaseFail(f"vhost-pktgen sent {sent} of {COUNT} (exit {pg_rc})")
    if 0 in [q["tx_packets"] for q in g["queues"]]:
        raise CaseFail(f"a queue pair carried nothing: {[q['tx_packets'] for q in g['queues']]}")
    got = fs["rx"] + fs["rx_dropped"] + fs["rx_error"] + fs["rx_nombufs"]
    if got != sent:
        raise CaseFail(f"vhost-pktgen sent {sent}, testpmd counted RX-packets {fs['rx']} + RX-dropped "
                       f"{fs['rx_dropped']} + RX-error {fs['rx_error']} + RX-nombufs {fs['rx_nombufs']} = {got} "
                       f"(per queue {[fs['streams'].get(q, {}).get('rx') for q in range(c.queues)]}; "
                       f"last NIC stats {ns})")
    if fs["rx"] < MIN_RX:
        raise CaseFail(f"testpmd received only {fs['rx']}, want >= {MIN_RX}")
    if c.queues > 1:
        st = [fs["streams"].get(q, {}).get("rx") for q in range(c.queues)]
        if None in st or 0 in st:
            raise CaseFail(f"testpmd per-queue RX {st}")
    if c.flow == "vhd_tx":
        if pg_rc != 0:
            raise CaseFail(f"vhost-pktgen exit status {pg_rc}")
        if ns is None or ns["rx"] != fs["rx"] or ns["rx_bytes"] != t["tx_bytes"]:
            raise CaseFail(f"testpmd NIC stats {ns} do not show the {fs['rx']} frames / {t['tx_bytes']} bytes "
                           f"vhost-pktgen sent")
        return (f"vhost-pktgen tx {sent} ({t['tx_bytes']} bytes) = testpmd RX-packets {fs['rx']} + RX-dropped "
                f"{fs['rx_dropped']}, features 0x{g['features']:x}")
    # echo
    if fs["tx"] + fs["tx_dropped"] != fs["rx"]:
        raise CaseFail(f"testpmd macswap: RX {fs['rx']} != TX-packets {fs['tx']} + TX-dropped {fs['tx_dropped']}")
    if t["rx_packets"] != fs["tx"]:
        raise CaseFail(f"testpmd sent back {fs['tx']} (TX-dropped {fs['tx_dropped']}), vhost-pktgen received "
                       f"{t['rx_packets']}")
    if t["dup"] or t["corrupt"]:
        raise CaseFail(f"vhost-pktgen --verify: {t['dup']} duplicated, {t['corrupt']} corrupt")
    if t["lost"] > fs["tx_dropped"] + fs["rx_dropped"]:
        raise CaseFail(f"vhost-pktgen counted {t['lost']} lost, testpmd dropped only {fs['tx_dropped']} "
                       f"(TX-dropped) + {fs['rx_dropped']} (RX-dropped)")
    if pg_rc != (1 if t["lost"] else 0):
        raise CaseFail(f"vhost-pktgen exit status {pg_rc} with {t['lost']} lost")
    if ns is None or ns["rx_bytes"] != t["tx_bytes"] or ns["tx_bytes"] != t["rx_bytes"]:
        raise CaseFail(f"testpmd NIC stats {ns}: bytes differ from vhost-pktgen's tx {t['tx_bytes']} / "
                       f"rx {t['rx_bytes']}")
    return (f"vhost-pktgen tx {sent} = testpmd RX {fs['rx']} = TX {fs['tx']} + TX-dropped {fs['tx_dropped']}; "
            f"vhost-pktgen rx {t['rx_packets']}, lost {t['lost']}, features 0x{g['features']:x}")


# ------------------------------------------------------------------ main

def on_sigterm(signum, frame):
    # Unwind through every finally: the children run in their own sessions and would outlive us.
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    signal.signal(signal.SIGTERM, on_sigterm)
    cases = [c for c in CASES if not FILTER or FILTER in c.name]
    setup_err = None
    if not PKTGEN:
        setup_err = "usage: test_dpdk.py PKTGEN [case-substring]"
    elif os.geteuid() != 0:
        setup_err = "needs root (hugepages, hugetlbfs)"
    elif shutil.which(TESTPMD) is None:
        setup_err = f"{TESTPMD} not found in PATH (Debian 12: apt-get install dpdk)"
    else:
        setup_err = vhdrig.prepare_hugepages(HUGE_WANT, HUGE_MIN_FREE)
    failed = 0
    summary = None
    workdir = tempfile.mkdtemp(prefix="vhd-dpdk-")
    try:
        for idx, c in enumerate(cases):
            if setup_err:
                why = setup_err
            else:
                t0 = time.monotonic()
                try:
                    summary = run_case(c, idx, workdir)
                    why = None
                except CaseFail as e:
                    why = str(e)
                except (OSError, subprocess.SubprocessError) as e:
                    why = f"{type(e).__name__}: {e}"
                except KeyboardInterrupt as e:
                    print(f"FAIL: test_dpdk/{c.name}: interrupted ({e or 'SIGINT'}); its processes were killed",
                          flush=True)
                    return 1
                if VERBOSE:
                    print(f"# {c.name}: {time.monotonic() - t0:.1f} s" + (f": {summary}" if not why else ""),
                          flush=True)
            failed += vhdrig.verdict(f"test_dpdk/{c.name}", why)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not cases:
        print(f"FAIL: test_dpdk: no case name contains {FILTER!r}", flush=True)
    return 1 if failed or not cases else 0


if __name__ == "__main__":
    sys.exit(main())
