#!/usr/bin/env python3
"""The host's end of the guest traffic tests: the same four commands and formats as the guest's nettool
(tests/interop/guest/nettool.c), run inside the test's network namespace.

  hostpeer.py udp-send IP PORT COUNT [PPS] | udp-recv PORT COUNT MS | tcp-send IP PORT BYTES [KIB_PER_S] |
              tcp-recv PORT BYTES

udp-send with PPS and tcp-send with KIB_PER_S are paced (traffic that must outlast something, such as a live
migration); SIGUSR1 makes a paced tcp-send send the rest at full speed (what it had to outlast is over) and stops
a paced udp-send. A paced udp-send holds a datagram the stack refuses (no route: the tap is gone with a killed
vhostd) and sends it again every millisecond, for up to a minute, then goes on at its pace without catching up.
udp-recv's "VHD-SEQ" line sums up what is missing below the highest sequence number received and what was
duplicated, as nettool's does.

Prints one "VHD-RESULT <what> ok|fail <detail>" line (receivers print "VHD-READY <what> <port>" first).
"""
import array
import select
import signal
import socket
import sys
import time


def dg_len(i):
    return 16 + (i * 37) % 1400


RAMP = bytes(range(256)) * 8


def dg(i):
    n = dg_len(i)
    return i.to_bytes(8, "little") + RAMP[i & 255:(i & 255) + n - 8]


def stream(off, n):
    """Bytes [off, off+n) of the stream of 64-bit little-endian words 0, 1, 2, ..."""
    w0, w1 = off // 8, (off + n + 7) // 8
    b = array.array("Q", range(w0, w1))
    if sys.byteorder != "little":
        b.byteswap()
    s = off - w0 * 8
    return b.tobytes()[s:s + n]


def udp_send(ip, port, count, pps=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stop = []
    signal.signal(signal.SIGUSR1, lambda *_: stop.append(1))
    ok, i, nxt = 0, 0, time.monotonic()
    while i < count and not (pps and stop):
        if not pps:
            ok += s.sendto(dg(i), (ip, port)) == dg_len(i)
            if i % 8 == 7:
                time.sleep(0.002)  # a TCG guest under a sanitizer build takes a few thousand datagrams a second
            i += 1
            continue
        held = time.monotonic() + 60
        while True:
            try:
                ok += s.sendto(dg(i), (ip, port)) == dg_len(i)
                break
            except OSError:
                if time.monotonic() > held or stop:
                    raise
                time.sleep(0.001)
        i += 1
        nxt = max(nxt + 1.0 / pps, time.monotonic())
        time.sleep(max(0.0, nxt - time.monotonic()))
    print(f"VHD-RESULT udp-send {'ok' if ok == i else 'fail'} sent {ok} of {count}{', stopped' if i < count else ''}",
          flush=True)
    return ok == i


def udp_recv(port, count, ms):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(("0.0.0.0", port))
    print(f"VHD-READY udp-recv {port}", flush=True)
    seen = bytearray(count)
    got = dup = bad = stray = top = 0
    wait = 600.0  # until the guest starts sending; the test driver kills us if it never does
    while got < count:
        r, _, _ = select.select([s], [], [], wait)
        if not r:
            break
        b = s.recv(65536)
        wait = ms / 1000.0
        if len(b) < 8:
            bad += 1
            continue
        i = int.from_bytes(b[:8], "little")
        if i >= count:
            stray += 1
        elif b != dg(i):
            bad += 1
        elif seen[i]:
            seen[i] = min(seen[i] + 1, 255)
            dup += 1
        else:
            seen[i] = 1
            got += 1
            top = max(top, i + 1)
    miss, dupr, first, i = [0, 0, 0], [0, 0, 0], [], 0
    while i < top:  # runs of missing (0) and of duplicated (> 1) datagrams below the highest received
        missing, j = not seen[i], i
        while j < top and (not seen[j] if missing else seen[j] > 1):
            j += 1
        if j == i:
            i += 1
            continue
        c = miss if missing else dupr
        c[0], c[1], c[2] = c[0] + j - i, c[1] + 1, max(c[2], j - i)
        if missing and len(first) < 16:
            first.append(f"{i}-{j - 1}")
        i = j
    print(f"VHD-SEQ top {top} missing {miss[0]} runs {miss[1]} max {miss[2]} dup {dup} runs {dupr[1]} max {dupr[2]} "
          f"first {' '.join(first)}", flush=True)
    ok = got == count and not (dup or bad or stray)
    print(f"VHD-RESULT udp-recv {'ok' if ok else 'fail'} received {got} of {count}, lost {count - got}, "
          f"dup {dup}, corrupt {bad}, stray {stray}", flush=True)
    return ok


def tcp_send(ip, port, total, kib_per_s=0):
    unpaced = []
    signal.signal(signal.SIGUSR1, lambda *_: unpaced.append(1))
    s = socket.create_connection((ip, port), timeout=60)
    off, t0 = 0, time.time()
    while off < total:
        n = min(65536, total - off)
        s.sendall(stream(off, n))
        off += n
        if kib_per_s and not unpaced:
            ahead = off / (kib_per_s * 1024.0) - (time.time() - t0)
            if ahead > 0:
                time.sleep(ahead)
    s.shutdown(socket.SHUT_WR)
    while s.recv(4096):
        pass
    print(f"VHD-RESULT tcp-send ok sent {total} bytes", flush=True)
    return True


def tcp_recv(port, total):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(1)
    print(f"VHD-READY tcp-recv {port}", flush=True)
    c, _ = ls.accept()
    c.settimeout(60)
    off, first_bad = 0, -1
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        if first_bad < 0 and b != stream(off, len(b)):
            want = stream(off, len(b))
            first_bad = off + next(j for j in range(len(b)) if b[j] != want[j])
        off += len(b)
    c.close()
    ok = off == total and first_bad < 0
    print(f"VHD-RESULT tcp-recv {'ok' if ok else 'fail'} received {off} of {total} bytes, "
          f"first bad byte {first_bad}", flush=True)
    return ok


def main(a):
    try:
        if len(a) in (4, 5) and a[0] == "udp-send":
            return udp_send(a[1], int(a[2]), int(a[3]), int(a[4]) if len(a) == 5 else 0)
        if len(a) == 4 and a[0] == "udp-recv":
            return udp_recv(int(a[1]), int(a[2]), int(a[3]))
        if len(a) in (4, 5) and a[0] == "tcp-send":
            return tcp_send(a[1], int(a[2]), int(a[3]), int(a[4]) if len(a) == 5 else 0)
        if len(a) == 3 and a[0] == "tcp-recv":
            return tcp_recv(int(a[1]), int(a[2]))
    except OSError as e:
        print(f"VHD-RESULT {a[0]} fail {e}", flush=True)
        return False
    print(__doc__, file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    sys.exit(0 if main(sys.argv[1:]) else 1)
