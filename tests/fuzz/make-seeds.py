#!/usr/bin/env python3
"""Write the seed corpora of the binary harnesses (tests/fuzz/corpus/{virtq,net_tx,vu_msg}/): small valid
inputs in each harness's input format (see the comment at the top of each fuzz_*.c), so the fuzzer starts from
working rings, headers and message sequences. The ctl seeds are plain text, written by hand.
Usage: tests/fuzz/make-seeds.py (rewrites the generated files; the outputs are committed)."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

NEXT, WRITE, INDIRECT = 1, 2, 4
AVAIL, USED = 1 << 7, 1 << 15


def write(harness, name, data):
    d = os.path.join(HERE, 'corpus', harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def desc(addr, length, flags, nxt):
    return struct.pack('<QIHH', addr, length, flags, nxt)


def pdesc(addr, length, bid, flags):
    return struct.pack('<QIHH', addr, length, bid, flags)


def poke(img, off, data):
    img[off:off + len(data)] = data


# ------------------------------------------------------------------ virtq
def virtq_input(mode, size_sel, base, offs, image, rounds, niov=63, burst=15, split=0):
    image = bytes(image).rstrip(b'\0')  # the harness zero-fills the rest
    hdr = struct.pack('<BBH3HBBBHH', mode, size_sel, base, *offs, niov, burst, len(rounds) - 1, split, len(image))
    tail = b''
    for ctl, patches in rounds:
        tail += struct.pack('<BB', ctl, len(patches))
        for off, val in patches:
            tail += struct.pack('<HH', off, val)
    return hdr + bytes(image) + tail


def split_ring_image(indirect=False, event_idx=False):
    """num 8: descriptors at 0, avail at 0x100, used at 0x200, buffers from 0x1000."""
    img = bytearray(0x2000)
    # chain 0: one readable buffer; chain 1: readable header + writable body; chain 2: indirect or 3 segments
    poke(img, 0x00, desc(0x1000, 64, 0, 0))
    poke(img, 0x10, desc(0x1100, 12, NEXT, 2))
    poke(img, 0x20, desc(0x1200, 256, WRITE, 0))
    if indirect:
        poke(img, 0x30, desc(0x1800, 48, INDIRECT, 0))
        poke(img, 0x1800, desc(0x1300, 20, NEXT, 1) + desc(0x1400, 100, NEXT, 2) + desc(0x1500, 200, WRITE, 0))
    else:
        poke(img, 0x30, desc(0x1300, 20, NEXT, 4))
        poke(img, 0x40, desc(0x1400, 100, NEXT, 5))
        poke(img, 0x50, desc(0x1500, 200, WRITE, 0))
    poke(img, 0x100, struct.pack('<HH', 0, 3) + struct.pack('<4H', 0, 1, 3, 0))
    if event_idx:
        poke(img, 0x100 + 4 + 2 * 8, struct.pack('<H', 1))  # used_event
    return img


def packed_ring_image(indirect=False):
    """num 8, wrap counter 1: descriptors at 0, driver area at 0x100, device area at 0x200."""
    img = bytearray(0x2000)
    poke(img, 0x00, pdesc(0x1000, 64, 0, AVAIL))
    poke(img, 0x10, pdesc(0x1100, 12, 1, AVAIL | NEXT))
    poke(img, 0x20, pdesc(0x1200, 256, 1, AVAIL | WRITE))
    if indirect:
        poke(img, 0x30, pdesc(0x1800, 48, 2, AVAIL | INDIRECT))
        poke(img, 0x1800, desc(0x1300, 20, 0, 0) + desc(0x1400, 100, 0, 0) + desc(0x1500, 200, WRITE, 0))
    return img


def virtq_seeds():
    offs = (0, 0x100, 0x200)
    write('virtq', 'split_plain', virtq_input(0, 3, 0, offs, split_ring_image(), [(3, [])]))
    write('virtq', 'split_indirect_event_idx',
          virtq_input(2 | 4, 3, 0, offs, split_ring_image(True, True), [(1, []), (2, [])]))
    write('virtq', 'split_in_order_unpop',
          virtq_input(8, 3, 0, offs, split_ring_image(), [(0x80, []), (3, [])]))
    # a second round after the driver makes chain 0 available again at avail slot 3, idx 4
    write('virtq', 'split_two_rounds',
          virtq_input(0, 3, 0, offs, split_ring_image(), [(3, [(0x100 + 4 + 6, 0), (0x102, 4)]), (1, [])]))
    write('virtq', 'split_cross_regions', virtq_input(0, 3, 0, offs, split_ring_image(), [(3, [])], split=0x1204))
    write('virtq', 'packed_plain', virtq_input(1, 7, 0x8000, offs, packed_ring_image(), [(2, [])]))
    write('virtq', 'packed_indirect_in_order',
          virtq_input(1 | 2 | 8, 7, 0x8000, offs, packed_ring_image(True), [(0x80, []), (3, [])]))
    write('virtq', 'packed_event_idx', virtq_input(1 | 4, 7, 0x8000, offs, packed_ring_image(), [(0x42, [])]))


if __name__ == '__main__':
    virtq_seeds()
