"""What the hostile-peer runners (test_hostile.py, test_hostile_backend.py) share: a process's open fds, waiting
for them to settle or for a socket to appear, vhost-pktgen's JSON result, and the PASS/FAIL report."""
import json
import os
import time


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def settle_fds(pid, want, timeout=5.0):
    """A peer notices a closed connection at its next poll: wait for its fd count to come back to want."""
    end = time.time() + timeout
    n = fds(pid)
    while n != want and time.time() < end:
        time.sleep(0.02)
        n = fds(pid)
    return n


def wait_path(path, proc):
    for _ in range(500):
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"exited {proc.returncode}")
        time.sleep(0.01)
    raise RuntimeError(f"{path} never appeared")


def pktgen_json(p, timeout=120):
    out, err = p.communicate(timeout=timeout)
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"vhost-pktgen exit {p.returncode}, no JSON: {out!r} {err.strip()[-400:]!r}")


def report(results):
    """Print one PASS/FAIL line per (case, error-or-None, detail), as tests/unit/harness.h does; exit status."""
    failed = 0
    for case, err, detail in results:
        if err:
            failed += 1
            print(f"FAIL: {case}: {err}", flush=True)
        else:
            print(f"PASS: {case} {detail}".rstrip(), flush=True)
    return 1 if failed else 0


def kill_all(procs):
    """What a phase started and did not see exit: killed and reaped."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
