#!/usr/bin/env python3
"""vhostd as an operator meets it: log lines, the log file and its reopening, log levels, config errors, the
stats table, the owner/group/mode of a vhost-user port's socket as seen by an unprivileged front-end, and a tap
port's host address across restarts.

usage: test_ops.py VHOSTD VHOSTCTL [case-substring]
Prints PASS/FAIL/SKIP lines (scripts/check-summary.py counts them); exit 1 if any case failed.
"""
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import vhdrig  # noqa: E402

VHOSTD, VHOSTCTL = (os.path.abspath(a) for a in sys.argv[1:3])
vhdrig.configure(vhostd=VHOSTD, vhostctl=VHOSTCTL)
FILTER = sys.argv[3] if len(sys.argv) > 3 else ""
# ISO 8601 UTC with milliseconds, then the program and the level (docs/operations.md).
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z vhostd (error|warning|info|debug): .+$")
VHOST_USER_GET_FEATURES = 1


class Rig(vhdrig.Vhostd):
    """A case's temporary directory (which an unprivileged front-end can enter) and its vhostd."""

    def __init__(self, name):
        super().__init__(tempfile.mkdtemp(prefix=f"vhd-ops-{name}-"))
        os.chmod(self.dir, 0o755)  # an unprivileged front-end must reach the sockets inside
        self.log = os.path.join(self.dir, "vhostd.log")

    @property
    def vhostd(self):
        return self.p

    def start(self, *args, config=None):
        """vhostd with args (its log level among them) and the config text, up and answering."""
        return super().start(config, args, log_level=None)

    def vhostctl(self, *args):
        """vhostctl args (its human output): the CompletedProcess, whatever its exit status."""
        return self.ctl_cmd(*args, check=False, as_json=False)

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def read_lines(path):
    with open(path) as f:
        return f.read().splitlines()


def wait_for_line(path, pattern, what):
    """The lines of path once one matches pattern (a liveness deadline, not a timing check)."""
    deadline = time.time() + 20
    while time.time() < deadline:
        lines = read_lines(path) if os.path.exists(path) else []
        if any(re.search(pattern, l) for l in lines):
            return lines
        time.sleep(0.02)
    raise RuntimeError(f"{what}: no line matching {pattern!r} in {path}: {lines[-5:]}")


def case_config_error(r):
    """A refused config line says FILE:LINE: reason, not the raw JSON answer; vhostd exits 1."""
    cfg = "# ports\nadd-port a vhost-user path=%s\n\nadd-port b vhost-user path=%s colour=blue\n" % (
        os.path.join(r.dir, "a.sock"), os.path.join(r.dir, "b.sock"))
    try:
        r.start(config=cfg)
    except RuntimeError as e:
        msg = str(e)
    else:
        return "vhostd started with a bad config line"
    want = f"vhostd: {os.path.join(r.dir, 'vhostd.conf')}:4: colour: unknown argument"
    if "exited 1" not in msg or want not in msg:
        return f"want exit 1 and '{want}...', got: {msg}"
    if '"ok"' in msg or "{" in msg:
        return f"the refusal still carries JSON: {msg}"
    return None


def case_log_file(r):
    """--log-file: every line stamped; level changes at info; debug adds control and vhost-user messages;
    SIGHUP reopens the file after logrotate moved it."""
    r.start("--log-file", r.log, "--log-level", "info")
    wait_for_line(r.log, r"vhostd: running", "start")
    # vhostd and vhostctl spell the levels the same way; the old short names are aliases.
    out = r.vhostctl("log-level", "debug")
    if out.returncode != 0 or out.stdout.strip() != "debug":
        return f"log-level debug: {out.returncode} {out.stdout!r} {out.stderr!r}"
    wait_for_line(r.log, r" info: vhostd: log level info -> debug$", "level change")
    sock = os.path.join(r.dir, "vm1.sock")
    if r.vhostctl("add-port", "vm1", "vhost-user", f"path={sock}").returncode != 0:
        return "add-port refused"
    wait_for_line(r.log, r" debug: control: add-port with 3 argument\(s\): done$", "control command at debug")
    # A front-end's message, seen at debug.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock)
    s.sendall(struct.pack("<III", VHOST_USER_GET_FEATURES, 1, 0))
    if len(s.recv(64)) != 20:
        return "no GET_FEATURES reply"
    s.close()
    wait_for_line(r.log, r" debug: vm1: received GET_FEATURES \(1\): 0 payload bytes, 0 fds$", "message at debug")
    # logrotate: move the file away, SIGHUP, and the next lines go to a new file at the old path.
    rotated = r.log + ".1"
    os.rename(r.log, rotated)
    r.vhostd.send_signal(signal.SIGHUP)
    wait_for_line(r.log, r" info: vhostd: SIGHUP: log file reopened$", "reopen")
    out = r.vhostctl("log-level", "warn")
    if out.returncode != 0 or out.stdout.strip() != "warning":
        return f"log-level warn (alias): {out.returncode} {out.stdout!r} {out.stderr!r}"
    # Said at info even though the new level hides info.
    wait_for_line(r.log, r" info: vhostd: log level debug -> warning$", "level change to warning")
    bad = r.vhostctl("log-level", "loud")
    if bad.returncode != 1 or "want error, warning, info or debug" not in bad.stderr:
        return f"log-level loud: {bad.returncode} {bad.stderr!r}"
    rc, out = r.stop()
    if rc != 0:
        return f"vhostd exited {rc}: {out[-500:]}"
    if out.strip():
        return f"with --log-file nothing goes to stderr, got: {out[-300:]}"
    old, new = read_lines(rotated), read_lines(r.log)
    for l in old + new:
        if not LINE.match(l):
            return f"line without timestamp/level: {l!r}"
    if any("SIGHUP" in l for l in old) or not any("received GET_FEATURES" in l for l in old):
        return "lines went to the wrong file around the reopen"
    # Stopped while at warning: the info lines about stopping are not there.
    if any("stopping" in l for l in new):
        return "info line logged at level warning"
    return None


def case_stats_table(r):
    """The stats table has the queue_breaks column the JSON has."""
    r.start("--log-level", "warning",
            config=f"add-port vm1 vhost-user path={os.path.join(r.dir, 'vm1.sock')}\n")
    out = r.vhostctl("stats")
    if out.returncode != 0:
        return f"stats: {out.returncode} {out.stderr}"
    head, row = out.stdout.splitlines()[:2]
    cols = head.split()
    if "QUEUE_BREAKS" not in cols or row.split()[0] != "vm1" or row.split()[cols.index("QUEUE_BREAKS")] != "0":
        return f"stats table: {out.stdout!r}"
    return None


def connect_as(path, uid, gid):
    """0 if a process running as uid:gid (no other groups) can connect to path, else the errno."""
    pid = os.fork()
    if pid == 0:
        code = 100
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                code = 0
            except OSError as e:
                code = e.errno
        finally:
            os._exit(code)
    _, st = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(st)
    if code == 100:
        raise RuntimeError("cannot become the unprivileged user")
    return code


def case_socket_access(r):
    """group=/mode= on a vhost-user port decide whether a front-end running as another user (QEMU under
    libvirt) may connect."""
    if os.geteuid() != 0:
        return "SKIP: needs root"
    try:
        nobody = pwd.getpwnam("nobody")
        nogroup = grp.getgrgid(nobody.pw_gid).gr_name
    except KeyError:
        return "SKIP: no user 'nobody'"
    a, b = os.path.join(r.dir, "a.sock"), os.path.join(r.dir, "b.sock")
    r.start("--log-level", "warning", config=f"add-port a vhost-user path={a} group={nogroup} mode=0660\n"
                                             f"add-port b vhost-user path={b}\n")
    st = os.stat(a)
    if (st.st_mode & 0o7777, st.st_uid, st.st_gid) != (0o660, 0, nobody.pw_gid):
        return f"a.sock: mode {st.st_mode & 0o7777:o} uid {st.st_uid} gid {st.st_gid}"
    if connect_as(a, nobody.pw_uid, nobody.pw_gid) != 0:
        return "nobody cannot connect to a group-writable socket of its group"
    import errno
    if connect_as(b, nobody.pw_uid, nobody.pw_gid) != errno.EACCES:
        return "nobody could connect to a socket without options (want EACCES)"
    bad = r.vhostctl("add-port", "c", "vhost-user", f"path={os.path.join(r.dir, 'c.sock')}", "mode=0999")
    if bad.returncode != 1 or "mode=0999" not in bad.stderr:
        return f"mode=0999: {bad.returncode} {bad.stderr!r}"
    bad = r.vhostctl("add-port", "c", "vhost-user", f"path={os.path.join(r.dir, 'c.sock')}", "owner=nosuchuserzz")
    if bad.returncode != 1 or "no such user" not in bad.stderr:
        return f"owner=nosuchuserzz: {bad.returncode} {bad.stderr!r}"
    rc, out = r.stop()
    if rc != 0:
        return f"vhostd exited {rc}: {out[-500:]}"
    return None


def tap_state(ifname):
    """The interface's global addresses (as IP/PREFIX) and whether it is up, or None if it does not exist."""
    r = subprocess.run(["ip", "-j", "addr", "show", "dev", ifname], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    if r.returncode != 0:
        return None
    info = json.loads(r.stdout)[0]
    addrs = {f"{a['local']}/{a['prefixlen']}" for a in info.get("addr_info", []) if a.get("scope") == "global"}
    return addrs, "UP" in info.get("flags", [])


def case_tap_addr(r):
    """addr= on a tap port: a tap vhostd created comes back with its host address after a restart, as does a
    persistent one; a malformed address refuses the port, naming it."""
    if os.geteuid() != 0:
        return "SKIP: needs root"
    tap, keep = f"vhdop{os.getpid() % 100000}", f"vhdok{os.getpid() % 100000}"
    want = {"198.18.213.1/30", "fd00:213::1/64"}
    config = (f"add-port t tap ifname={tap} addr=198.18.213.1/30\n"
              f"add-port k tap ifname={keep} addr=fd00:213::1/64\n")
    subprocess.run(["ip", "tuntap", "add", "dev", keep, "mode", "tap", "vnet_hdr"], check=True)
    try:
        for run in ("first start", "restart"):
            r.start("--log-level", "warning", config=config)
            got = (tap_state(tap), tap_state(keep))
            if got != (({"198.18.213.1/30"}, True), ({"fd00:213::1/64"}, True)):
                return f"{run}: {tap} and {keep} (addresses, up): {got}, wanted {want} up"
            rc, out = r.stop()
            if rc != 0:
                return f"{run}: vhostd exited {rc}: {out[-500:]}"
            if tap_state(tap) is not None:
                return f"{run}: {tap}, created by vhostd, outlived it"
            if tap_state(keep) is None:
                return f"{run}: the persistent {keep} went with vhostd"
        r.start("--log-level", "warning")
        for bad in ("10.0.0.1", "10.0.0.1/33", "fd00::1::2/64", "/24"):
            res = r.vhostctl("add-port", "b", "tap", f"ifname={tap}", f"addr={bad}")
            if res.returncode != 1 or f"addr={bad}: want IPV4/PREFIX" not in res.stderr:
                return f"addr={bad}: exit {res.returncode} {res.stderr!r}"
        if tap_state(tap) is not None:
            return f"a refused addr= left {tap} behind"
        rc, out = r.stop()
        return f"vhostd exited {rc}: {out[-500:]}" if rc != 0 else None
    finally:
        subprocess.run(["ip", "link", "del", keep], stderr=subprocess.DEVNULL)


CASES = [("config_error", case_config_error), ("log_file", case_log_file), ("stats_table", case_stats_table),
         ("socket_access", case_socket_access), ("tap_addr", case_tap_addr)]


def main():
    failed = 0
    for name, fn in CASES:
        if FILTER not in name:
            continue
        r = Rig(name)
        try:
            err = fn(r)
        except Exception as e:
            err = f"{type(e).__name__}: {e}"
        r.cleanup()
        failed += vhdrig.verdict(name, err)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
