#!/usr/bin/env python3
"""Count PASS/FAIL/SKIP case lines in meson testlog.json files and print the suite's last line."""
import json
import sys

passed = failed = skipped = 0
problems = []
for path in sys.argv[1:]:
    build = path.split('/meson-logs/')[0]
    try:
        with open(path) as f:
            entries = [json.loads(line) for line in f if line.strip()]
    except OSError as e:
        problems.append(f"{path}: {e}")
        failed += 1
        continue
    for e in entries:
        out = e.get('stdout') or ''
        p = f = s = 0
        for line in out.splitlines():
            if line.startswith('PASS: '):
                p += 1
            elif line.startswith('FAIL: '):
                f += 1
                problems.append(f"[{build}] {line}")
            elif line.startswith('SKIP: '):
                s += 1
                problems.append(f"[{build}] {line}")
        if e.get('result') not in ('OK', 'SKIP', 'EXPECTEDFAIL') and f == 0:
            f = 1
            problems.append(f"[{build}] FAIL: {e.get('name')}: {e.get('result')} without a failed case")
        passed += p
        failed += f
        skipped += s

for p in problems:
    print(p)
line = f"{passed} passed, {failed} failed"
if skipped:
    line += f", {skipped} skipped"
print(line)
sys.exit(1 if failed or passed == 0 else 0)
