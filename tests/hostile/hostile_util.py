"""What the hostile-peer runners (test_hostile.py, test_hostile_backend.py) share beyond tests/lib/vhdrig.py
(vhostd, vhost-pktgen and its JSON result, waiting for a socket): a process's open fds and waiting for them to
settle, and the PASS/FAIL report."""
import os
import time

from vhdrig import verdict


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def timeout_scale():
    """VHD_TEST_TIMEOUT_SCALE (tests/unit/harness.h): a factor (default 1) on deadlines, for slow builds."""
    try:
        return max(1, int(os.environ.get("VHD_TEST_TIMEOUT_SCALE", "1")))
    except ValueError:
        return 1


def wait_memfd(pid, timeout=30.0):
    """Wait until process pid holds a memfd (a vhost-pktgen frontend's shared memory: it is set up, so its fd
    count is the resting one); False if it never did within timeout."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("/memfd:") for fd in os.listdir(f"/proc/{pid}/fd")):
                return True
        except OSError:  # an fd closed between listdir and readlink, or the process is gone
            pass
        time.sleep(0.02)
    return False


def settle_fds(pid, want, timeout=5.0):
    """A peer notices a closed connection at its next poll: wait for its fd count to come back to want."""
    end = time.time() + timeout
    n = fds(pid)
    while n != want and time.time() < end:
        time.sleep(0.02)
        n = fds(pid)
    return n


def report(results):
    """Print one PASS/FAIL line per (case, error-or-None, detail) (vhdrig.verdict()); exit status."""
    failed = sum(verdict(case, err, detail=detail) for case, err, detail in results)
    return 1 if failed else 0


def kill_all(procs):
    """What a phase started and did not see exit: killed and reaped."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
