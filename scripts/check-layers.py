#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Fail when a source file includes a header of a layer above its own, or another layer's private header.

The layers, lowest first (docs/architecture.md): a file under src/<dir> (or tools/) may include
- its own directory's headers, and private headers (src/<dir>/*.h) of directories in its own group at its
  rank or below (the transports share vhost_user's messages; ctl drives the switch; tools/ are built on both);
- src/spec/ and src/util/ headers, which every layer above them may use (they include nothing higher);
- public headers (include/vhostd/*.h) of its own layer or lower ones.
Usage: check-layers.py [SOURCE_ROOT]; prints each violation with file:line and exits 1 if there is one.
"""
import os
import re
import sys

# Layer rank of each directory under src/ (tools/ sits at the top with the programs built from it).
LAYERS = {
    'spec': 0,
    'util': 1,
    'virtq': 2,
    'net': 3,
    'vhost_user': 4, 'vduse': 4, 'frontend': 4,
    'switch': 5,
    'ctl': 6,
    'tools': 7,
}
# Directories that may use each other's private headers, downwards only.
GROUP = {'vhost_user': 'transport', 'vduse': 'transport', 'frontend': 'transport',
         'switch': 'switch', 'ctl': 'switch', 'tools': 'switch'}
# Layers whose headers are meant for every layer above them.
SHARED = {'spec', 'util'}
# Which layer each public header belongs to.
PUBLIC = {
    'log.h': 'util',
    'mem.h': 'virtq', 'iotlb.h': 'virtq', 'dlog.h': 'virtq', 'virtq.h': 'virtq',
    'pkt.h': 'net', 'net.h': 'net',
    'vhost_user.h': 'vhost_user', 'vduse.h': 'vduse', 'frontend.h': 'frontend',
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def check_file(path, layer, root):
    bad = []
    rank = LAYERS[layer]
    with open(path, encoding='utf-8', errors='replace') as f:
        for n, line in enumerate(f, 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            inc = m.group(1)
            where = f'{os.path.relpath(path, root)}:{n}: #include "{inc}"'
            parts = inc.split('/')
            if len(parts) == 1:
                continue  # a header next to the file: its own directory
            top = parts[0]
            if top == 'vhostd':
                owner = PUBLIC.get(parts[1])
                if owner is None:
                    bad.append(f'{where}: public header without a layer (add it to PUBLIC in {sys.argv[0]})')
                elif LAYERS[owner] > rank:
                    bad.append(f'{where}: {layer} (layer {rank}) includes {owner}\'s public header (layer {LAYERS[owner]})')
                continue
            if top not in LAYERS:
                bad.append(f'{where}: unknown directory {top!r}')
            elif LAYERS[top] > rank:
                bad.append(f'{where}: {layer} (layer {rank}) includes higher layer {top} (layer {LAYERS[top]})')
            elif top != layer and top not in SHARED and (GROUP.get(top) is None or GROUP[top] != GROUP.get(layer)):
                bad.append(f'{where}: {layer} includes {top}\'s private header; use include/vhostd/ or src/spec/')
    return bad


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
    bad, files = [], 0
    dirs = [(os.path.join(root, 'src', d), d) for d in sorted(os.listdir(os.path.join(root, 'src')))
            if os.path.isdir(os.path.join(root, 'src', d))]
    dirs.append((os.path.join(root, 'tools'), 'tools'))
    for d, layer in dirs:
        if layer not in LAYERS:
            bad.append(f'src/{layer}: directory without a layer (add it to LAYERS in {sys.argv[0]})')
            continue
        for dirpath, _, names in os.walk(d):
            for name in sorted(names):
                if name.endswith(('.c', '.h')):
                    files += 1
                    bad += check_file(os.path.join(dirpath, name), layer, root)
    for b in bad:
        print(b)
    print(f'{"FAIL" if bad else "PASS"} check_layers: {files} files, {len(bad)} layering violations')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
