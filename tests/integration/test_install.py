#!/usr/bin/env python3
"""`meson install` into a DESTDIR, and what an operator gets from it: every expected file, man pages that render
without warnings and document every option `--help` lists, a systemd unit that systemd-analyze accepts, and a
bash completion that completes.

usage: test_install.py BUILD_DIR [case-substring]
Prints PASS/FAIL/SKIP lines (scripts/check-summary.py counts them); exit 1 if any case failed.
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

BUILD = os.path.abspath(sys.argv[1])
FILTER = sys.argv[2] if len(sys.argv) > 2 else ""
TOOLS = {"vhostd": "man8/vhostd.8", "vhostctl": "man8/vhostctl.8", "vhost-pktgen": "man1/vhost-pktgen.1"}


class SkipCase(Exception):
    pass


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120, **kw)


def options():
    """Meson's install directories of this build (prefix-relative ones made absolute)."""
    r = run(["meson", "introspect", "--buildoptions", BUILD])
    opts = {o["name"]: o["value"] for o in json.loads(r.stdout)}
    prefix = opts["prefix"]
    return {k: os.path.join(prefix, opts[k]) for k in ("bindir", "libdir", "includedir", "mandir", "datadir",
                                                           "sysconfdir")} | {"prefix": prefix}


class Install:
    def __init__(self):
        self.dest = tempfile.mkdtemp(prefix="vhd-install-")
        r = run(["meson", "install", "-C", BUILD, "--destdir", self.dest, "--no-rebuild", "--quiet"])
        if r.returncode != 0:
            raise RuntimeError(f"meson install: exit {r.returncode}: {r.stderr[-1000:]}")
        self.dirs = options()

    def path(self, key, *rest):
        return os.path.join(self.dest, self.dirs[key].lstrip("/"), *rest)

    def tool(self, name):
        return self.path("bindir", name)


def case_files(inst):
    want = [inst.tool(t) for t in TOOLS]
    want += [inst.path("includedir", "vhostd", h) for h in
             ("log.h", "mem.h", "iotlb.h", "virtq.h", "vhost_user.h", "frontend.h", "pkt.h", "net.h")]
    want += [inst.path("libdir", "libvhostd.so"), inst.path("libdir", "libvhostd.a"),
             inst.path("libdir", "pkgconfig", "vhostd.pc")]
    want += [inst.path("mandir", m) for m in TOOLS.values()]
    want += [inst.path("prefix", "lib", "systemd", "system", "vhostd.service"),
             inst.path("datadir", "bash-completion", "completions", "vhostctl"),
             inst.path("sysconfdir", "vhostd", "vhostd.conf")]
    missing = [w[len(inst.dest):] for w in want if not os.path.exists(w)]
    if missing:
        return f"not installed: {', '.join(missing)}"
    for t in TOOLS:
        if not os.access(inst.tool(t), os.X_OK):
            return f"{t} is not executable"
        r = run([inst.tool(t), "--help"])
        if r.returncode != 0 or "usage" not in r.stdout:
            return f"installed {t} --help: exit {r.returncode}"
    # The pkg-config file points a program at the installed headers and library.
    env = dict(os.environ, PKG_CONFIG_PATH=inst.path("libdir", "pkgconfig"), PKG_CONFIG_SYSROOT_DIR=inst.dest)
    r = run(["pkg-config", "--cflags", "--libs", "vhostd"], env=env)
    if r.returncode != 0 or "-lvhostd" not in r.stdout:
        return f"pkg-config vhostd: {r.stdout.strip()} {r.stderr.strip()}"
    # A second install keeps an operator's configuration.
    conf = inst.path("sysconfdir", "vhostd", "vhostd.conf")
    with open(conf, "w") as f:
        f.write("add-port mine tap ifname=mine0\n")
    r = run(["meson", "install", "-C", BUILD, "--destdir", inst.dest, "--no-rebuild", "--quiet"])
    if r.returncode != 0 or open(conf).read() != "add-port mine tap ifname=mine0\n":
        return "reinstalling overwrote the configuration"
    return None


def roff_text(path):
    """The man page's source with the escapes that sit inside option names undone."""
    s = open(path).read()
    s = re.sub(r"\\f[BIRP]|\\f\(..|\\c|\\&", "", s)
    return s.replace("\\-", "-").replace("\\e", "\\")


def help_items(tool):
    """What `TOOL --help` offers: long options; for vhostctl also its commands and add-port's keys."""
    r = run([tool, "--help"])
    items = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", r.stdout))
    if os.path.basename(tool) == "vhostctl":
        cmds = r.stdout.split("Commands:\n", 1)[1]
        items |= set(re.findall(r"^  ([a-z][a-z-]+) ", cmds, re.M)) - {"vhost-user", "virtio-user", "tap",
                                                                       "af_packet", "vxlan", "every"}
        ap = run([tool, "add-port", "--help"]).stdout
        items |= {k + "=" for k in re.findall(r"([a-z_]+)=", ap)}
        items |= set(re.findall(r"\[([a-z]+)\]", ap))
    return items


def case_man(inst):
    if not shutil.which("man"):
        raise SkipCase("no man (scripts/deps.sh check installs man-db)")
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    env.pop("MAN_KEEP_FORMATTING", None)
    for t, m in TOOLS.items():
        page = inst.path("mandir", m)
        r = run(["man", "--warnings", "-l", page], env=env)
        if r.returncode != 0 or r.stderr.strip():
            return f"man --warnings -l {m}: exit {r.returncode}: {r.stderr.strip()[:500]}"
        text = r.stdout
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES"):
            if not re.search(rf"^{section}$", text, re.M):
                return f"{m}: no {section} section"
        if max(len(l) for l in text.splitlines()) > 80:
            return f"{m}: lines wider than MANWIDTH=80"
        # --help and the page stay in step: what one offers the other documents.
        src = roff_text(page)
        undocumented = sorted(i for i in help_items(inst.tool(t)) if i not in src)
        if undocumented:
            return f"{m} does not document what {t} --help lists: {' '.join(undocumented)}"
    # vhostd(8) describes every add-port key vhostctl offers.
    src = roff_text(inst.path("mandir", TOOLS["vhostd"]))
    keys = sorted(i for i in help_items(inst.tool("vhostctl")) if i.endswith("=") and i not in src)
    if keys:
        return f"vhostd.8 does not describe the port keys {' '.join(keys)}"
    return None


def case_unit(inst):
    if not shutil.which("systemd-analyze"):
        raise SkipCase("no systemd-analyze (scripts/deps.sh check installs systemd)")
    unit = inst.path("prefix", "lib", "systemd", "system", "vhostd.service")
    text = open(unit).read()
    for want in ("RuntimeDirectory=vhostd", "Restart=on-failure", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_BPF", "AF_XDP",
                 f"--config {inst.dirs['sysconfdir']}/vhostd/vhostd.conf", f"ExecStart={inst.dirs['bindir']}/vhostd "):
        if want not in text:
            return f"vhostd.service lacks {want!r}"
    # The unit names the installed path of vhostd, which exists only under DESTDIR here: verify a copy that
    # points there (systemd-analyze checks that ExecStart is executable).
    d = tempfile.mkdtemp(prefix="vhd-unit-")
    try:
        copy = os.path.join(d, "vhostd.service")
        with open(copy, "w") as f:
            f.write(text.replace(f"ExecStart={inst.dirs['bindir']}/vhostd ",
                                 f"ExecStart={inst.tool('vhostd')} "))
        r = run(["systemd-analyze", "verify", "--man=no", copy])
        out = (r.stdout + r.stderr).strip()
        if r.returncode != 0 and re.search(r"(?i)bus|no medium|not booted|PID 1", out):
            raise SkipCase(f"systemd-analyze cannot run here: {out[:200]}")
        if r.returncode != 0 or out:
            return f"systemd-analyze verify: exit {r.returncode}: {out[:800]}"
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return None


def complete(inst, words, sock=None):
    """COMPREPLY for the command line `words` (the last word is the one being completed), from the installed
    completion sourced into a fresh bash."""
    script = ('source "$1"; shift; complete -p vhostctl >/dev/null || exit 9; COMP_WORDS=("$@"); '
              'COMP_CWORD=$(($# - 1)); _vhostctl; printf "%s\\n" "${COMPREPLY[@]}"')
    env = dict(os.environ, PATH=inst.path("bindir") + os.pathsep + os.environ.get("PATH", ""))
    env.pop("VHOSTD_SOCKET", None)
    r = run(["bash", "-c", script, "bash",
             inst.path("datadir", "bash-completion", "completions", "vhostctl"), "vhostctl", *words], env=env)
    if r.returncode != 0:
        raise RuntimeError(f"completion of {words}: exit {r.returncode}: {r.stderr.strip()}")
    return sorted(l for l in r.stdout.splitlines() if l)


def case_completion(inst):
    checks = [
        (["s"], ["show", "stats"]),
        (["--j"], ["--json"]),
        (["log-level", "w"], ["warning"]),
        (["add-port", "vm9", "v"], ["vdpa", "vduse", "vhost-net", "vhost-user", "virtio-user", "vxlan"]),
        (["add-port", "vd9", "vduse", "pa"], ["packed="]),
        (["add-port", "vx9", "vxlan", "src"], ["src_ports="]),
        (["add-port", "vm9", "vhost-user", "path=/x", "mo"], ["mode="]),
        (["add-port", "vm9", "af_packet", "qd"], ["qdisc_bypass="]),
        (["add-port", "vm9", "af_xdp", "mode=n"], ["mode=native"]),
        (["add-port", "vm9", "tap", "offloads=o"], ["offloads=off", "offloads=on"]),
        (["-j", "help", "del"], ["del-port"]),
        (["capture", "vm9", "--d"], ["--direction"]),
        (["capture", "vm9", "--direction", "t"], ["tx"]),
    ]
    for words, want in checks:
        got = complete(inst, words)
        if got != want:
            return f"vhostctl {' '.join(words)}<TAB>: {got}, want {want}"
    # Port names come from the running daemon, on the socket given on the line.
    d = tempfile.mkdtemp(prefix="vhd-compl-")
    sock = os.path.join(d, "ctl.sock")
    cfg = os.path.join(d, "vhostd.conf")
    with open(cfg, "w") as f:
        f.write(f"add-port vm1 vhost-user path={d}/vm1.sock\nadd-port vm2 vhost-user path={d}/vm2.sock\n"
                f"add-port other vhost-user path={d}/o.sock\n")
    vd = subprocess.Popen([inst.tool("vhostd"), "--socket", sock, "--config", cfg, "--log-level", "warning"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1000):
            if os.path.exists(sock) or vd.poll() is not None:
                break
            time.sleep(0.01)
        if not os.path.exists(sock):
            return f"vhostd did not start: {vd.stderr.read() if vd.poll() is not None else 'no socket'}"
        for words, want in ((["--socket", sock, "del-port", "vm"], ["vm1", "vm2"]),
                            ([f"--socket={sock}", "stats", ""], ["other", "vm1", "vm2"])):
            got = complete(inst, words)
            if got != want:
                return f"vhostctl {' '.join(words)}<TAB>: {got}, want {want}"
    finally:
        vd.send_signal(signal.SIGTERM)
        vd.communicate(timeout=30)
        shutil.rmtree(d, ignore_errors=True)
    return None


CASES = [("files", case_files), ("man", case_man), ("unit", case_unit), ("completion", case_completion)]


def main():
    failed = 0
    inst = None
    try:
        inst = Install()
        for name, fn in CASES:
            if FILTER not in name:
                continue
            try:
                err = fn(inst)
            except SkipCase as e:
                print(f"SKIP: {name}: {e}", flush=True)
                continue
            except Exception as e:
                err = f"{type(e).__name__}: {e}"
            if err:
                failed += 1
                print(f"FAIL: {name}: {err}", flush=True)
            else:
                print(f"PASS: {name}", flush=True)
    except Exception as e:
        failed += 1
        print(f"FAIL: install: {e}", flush=True)
    finally:
        if inst:
            shutil.rmtree(inst.dest, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
