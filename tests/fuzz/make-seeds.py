#!/usr/bin/env python3
"""Write the seed corpora of the binary harnesses (tests/fuzz/corpus/{virtq,net_tx,vu_msg,drv,net_rx,gso}/): small valid
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


# ------------------------------------------------------------------ net_tx
# Bit positions in the harness's feature_bits[] table.
F = {name: 1 << i for i, name in enumerate([
    'VERSION_1', 'MRG_RXBUF', 'CSUM', 'GUEST_CSUM', 'HOST_TSO4', 'HOST_TSO6', 'HOST_UFO', 'HOST_USO', 'HOST_ECN',
    'GUEST_HDRLEN', 'HASH_REPORT', 'INDIRECT_DESC', 'EVENT_IDX', 'IN_ORDER', 'GUEST_TSO4', 'GUEST_TSO6',
    'GUEST_ECN', 'RSC_EXT'])}
NEEDS_CSUM = 1
GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_UDP_L4 = 1, 3, 4, 5


def vnet_hdr(size, flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0, num_buffers=0):
    h = struct.pack('<BBHHHH', flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)
    if size >= 12:
        h += struct.pack('<H', num_buffers)
    return h + bytes(size - len(h))


ETH_V4 = bytes.fromhex('525400000002525400000001') + b'\x08\x00'
ETH_V6 = bytes.fromhex('525400000002525400000001') + b'\x86\xdd'


def ipv4(proto, payload_len):
    return struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + payload_len, 1, 0x4000, 64, proto, 0,
                       bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))


def ipv6(proto, payload_len):
    return struct.pack('!IHBB16s16s', 0x60000000, payload_len, proto, 64, bytes(15) + b'\x01', bytes(15) + b'\x02')


def tcp(flags=0x18):
    return struct.pack('!HHIIBBHHH', 1234, 80, 1000, 0, 5 << 4, flags, 65535, 0, 0)


def udp(payload_len):
    return struct.pack('!HHHH', 1234, 53, 8 + payload_len, 0)


def net_input(features, frames, packed=False, pool=1, burst=9):
    out = struct.pack('<IBBBB', features, 1 if packed else 0, pool, burst, len(frames) - 1)
    for shape, cuts, data in frames:
        out += struct.pack('<BHHH', shape, cuts[0], cuts[1], len(data)) + data
    return out


def net_tx_seeds():
    v1 = F['VERSION_1']
    offl = v1 | F['CSUM'] | F['HOST_TSO4'] | F['HOST_TSO6'] | F['HOST_ECN'] | F['HOST_UFO'] | F['HOST_USO']
    pay = bytes(range(256)) * 2
    tcp4 = ETH_V4 + ipv4(6, 20 + len(pay)) + tcp() + pay
    tcp6 = ETH_V6 + ipv6(6, 20 + len(pay)) + tcp(0x99) + pay
    udp4 = ETH_V4 + ipv4(17, 8 + 100) + udp(100) + bytes(100)
    arp = bytes.fromhex('ffffffffffff525400000001') + b'\x08\x06' + bytes(28)
    h12 = lambda **kw: vnet_hdr(12, **kw)
    write('net_tx', 'plain_one_segment', net_input(v1, [(1, (0, 0), h12() + arp)]))
    write('net_tx', 'legacy_header', net_input(0, [(2, (10, 0), vnet_hdr(10) + arp)]))
    write('net_tx', 'csum_tcp4_split3', net_input(
        v1 | F['CSUM'], [(3, (12, 40), h12(flags=NEEDS_CSUM, csum_start=34, csum_offset=16) + tcp4)]))
    write('net_tx', 'tso4', net_input(offl, [(2, (12, 0), h12(flags=NEEDS_CSUM, gso_type=GSO_TCPV4, hdr_len=54,
                                                         gso_size=100, csum_start=34, csum_offset=16) + tcp4)]))
    write('net_tx', 'tso6_ecn_indirect', net_input(
        offl | F['INDIRECT_DESC'], [(6, (30, 80), h12(flags=NEEDS_CSUM, gso_type=GSO_TCPV6 | 0x80, hdr_len=74,
                                                    gso_size=64, csum_start=54, csum_offset=16) + tcp6)]))
    write('net_tx', 'tso4_packed_in_order', net_input(
        offl | F['IN_ORDER'] | F['EVENT_IDX'], [
            (1, (0, 0), h12(flags=NEEDS_CSUM, gso_type=GSO_TCPV4, hdr_len=54, gso_size=200, csum_start=34,
                            csum_offset=16) + tcp4),
            (2, (5, 0), h12() + arp)], packed=True))
    write('net_tx', 'udp_ufo_uso', net_input(offl, [
        (1, (0, 0), h12(flags=NEEDS_CSUM, gso_type=GSO_UDP, hdr_len=42, gso_size=50, csum_start=34,
                        csum_offset=6) + udp4),
        (1, (0, 0), h12(flags=NEEDS_CSUM, gso_type=GSO_UDP_L4, hdr_len=42, gso_size=50, csum_start=34,
                        csum_offset=6) + udp4)]))
    write('net_tx', 'hash_report_hdrlen', net_input(
        offl | F['HASH_REPORT'] | F['GUEST_HDRLEN'],
        [(3, (20, 21), vnet_hdr(20, flags=NEEDS_CSUM, gso_type=GSO_TCPV4, hdr_len=54, gso_size=100,
                                csum_start=34, csum_offset=16) + tcp4)]))
    write('net_tx', 'mrg_num_buffers_small_pool', net_input(
        v1 | F['MRG_RXBUF'], [(1, (0, 0), h12(num_buffers=3) + tcp4), (1, (0, 0), h12() + bytes(13))], pool=0))


# ------------------------------------------------------------------ vu_msg
REQ = dict(GET_FEATURES=1, SET_FEATURES=2, SET_OWNER=3, RESET_OWNER=4, SET_MEM_TABLE=5, SET_LOG_BASE=6,
           SET_VRING_NUM=8, SET_VRING_ADDR=9, SET_VRING_BASE=10, GET_VRING_BASE=11, SET_VRING_KICK=12,
           SET_VRING_CALL=13, SET_VRING_ERR=14, GET_PROTOCOL_FEATURES=15, SET_PROTOCOL_FEATURES=16,
           GET_QUEUE_NUM=17, SET_VRING_ENABLE=18, SEND_RARP=19, NET_SET_MTU=20, SET_BACKEND_REQ_FD=21,
           GET_CONFIG=24, SET_CONFIG=25, RESET_DEVICE=34, GET_MAX_MEM_SLOTS=36, ADD_MEM_REG=37, REM_MEM_REG=38,
           SET_STATUS=39, GET_STATUS=40)
V1, NEED_REPLY = 1, 8
MEMFD1, MEMFD4, MEMFD16, EVENTFD = 0, 1, 2, 3
UA = 0x7f0000000000
PROTO = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 9) | (1 << 13) | (1 << 15) | (1 << 16)
F_VERSION_1, F_PACKED, F_PROTOCOL_FEATURES, F_INDIRECT, F_EVENT_IDX = 1 << 32, 1 << 34, 1 << 30, 1 << 28, 1 << 29


def msg(req, payload=b'', fds=(), flags=V1, size=None):
    out = struct.pack('<BBHB', REQ[req], flags, len(payload) if size is None else size, len(fds))
    for kind, fill in fds:
        out += struct.pack('<BH', kind, len(fill)) + fill
    return out + payload


def u64(v):
    return struct.pack('<Q', v)


def state(i, n):
    return struct.pack('<II', i, n)


def region(gpa, size, ua, off):
    return struct.pack('<QQQQ', gpa, size, ua, off)


def guest_image(packed):
    """One 64 KiB memfd at guest 0 / user UA: queue 0's ring at 0, queue 1's at 0x1000, buffers from 0x4000."""
    img = bytearray(0x1200)
    if packed:
        poke(img, 0x0, pdesc(0x4000, 60, 0, AVAIL) + pdesc(0x4100, 12, 1, AVAIL | NEXT) + pdesc(0x4200, 100, 1, AVAIL))
        poke(img, 0x1000, pdesc(0x5000, 2048, 0, AVAIL | WRITE))
    else:
        poke(img, 0x0, desc(0x4000, 60, 0, 0) + desc(0x4100, 12, NEXT, 2) + desc(0x4200, 100, 0, 0))
        poke(img, 0x100, struct.pack('<HHHH', 0, 2, 0, 1))
        poke(img, 0x1000, desc(0x5000, 2048, WRITE, 0))
        poke(img, 0x1100, struct.pack('<HHH', 0, 1, 0))
    return bytes(img).rstrip(b'\0')


def handshake(features, proto=PROTO):
    return (msg('GET_FEATURES') + msg('SET_OWNER') + msg('GET_PROTOCOL_FEATURES') +
            msg('SET_PROTOCOL_FEATURES', u64(proto)) + msg('SET_FEATURES', u64(features)))


def vring(q, base, desc_off, avail_off, used_off, num=8, enable=True):
    a = struct.pack('<IIQQQQ', q, 0, UA + desc_off, UA + used_off, UA + avail_off, 0)
    out = (msg('SET_VRING_NUM', state(q, num)) + msg('SET_VRING_ADDR', a) + msg('SET_VRING_BASE', state(q, base)) +
           msg('SET_VRING_KICK', u64(q), fds=[(EVENTFD, b'')]) + msg('SET_VRING_CALL', u64(q), fds=[(EVENTFD, b'')]))
    if enable:
        out += msg('SET_VRING_ENABLE', state(q, 1), flags=V1 | NEED_REPLY)
    return out


def vu_seeds():
    feats = F_VERSION_1 | F_PROTOCOL_FEATURES | F_INDIRECT | F_EVENT_IDX
    mem_table = lambda img: msg('SET_MEM_TABLE', struct.pack('<II', 1, 0) + region(0, 0x10000, UA, 0),
                                fds=[(MEMFD16, img)])
    split = (b'\x00' + handshake(feats) + mem_table(guest_image(False)) + vring(0, 0, 0, 0x100, 0x200) +
             vring(1, 0, 0x1000, 0x1100, 0x1200))
    write('vu_msg', 'split_two_queues_ready', split)
    write('vu_msg', 'split_then_stop', split + msg('GET_VRING_BASE', state(0, 0)) +
          msg('SET_VRING_ENABLE', state(1, 0)) + msg('GET_VRING_BASE', state(1, 0)) + msg('RESET_DEVICE'))
    packed = (b'\x00' + handshake(feats | F_PACKED) + mem_table(guest_image(True)) +
              vring(0, 0x8000, 0, 0x100, 0x200) + vring(1, 0x8000, 0x1000, 0x1100, 0x1200) +
              msg('GET_VRING_BASE', state(1, 0)))
    write('vu_msg', 'packed_two_queues', packed)
    mem_slots = (b'\x01' + handshake(feats) + msg('GET_MAX_MEM_SLOTS') +
                 msg('ADD_MEM_REG', u64(0) + region(0, 0x4000, UA, 0), fds=[(MEMFD4, guest_image(False)[:0x4000])]) +
                 msg('ADD_MEM_REG', u64(0) + region(0x4000, 0x1000, UA + 0x4000, 0), fds=[(MEMFD1, b'')]) +
                 vring(0, 0, 0, 0x100, 0x200) +
                 msg('REM_MEM_REG', u64(0) + region(0x4000, 0x1000, UA + 0x4000, 0), fds=[(MEMFD1, b'')]) +
                 msg('REM_MEM_REG', u64(0) + region(0, 0x4000, UA, 0)))
    write('vu_msg', 'mem_slots', mem_slots)
    misc = (b'\x03' + handshake(F_VERSION_1 | F_PROTOCOL_FEATURES) + msg('GET_QUEUE_NUM') +
            msg('GET_CONFIG', struct.pack('<III', 0, 12, 0) + bytes(12)) +
            msg('SET_CONFIG', struct.pack('<III', 0, 6, 0) + bytes(6)) + msg('SET_STATUS', u64(0xf)) +
            msg('GET_STATUS') + msg('NET_SET_MTU', u64(9000), flags=V1 | NEED_REPLY) +
            msg('SEND_RARP', u64(0x010000545200)) + msg('SET_BACKEND_REQ_FD', fds=[(EVENTFD, b'')]) +
            msg('SET_VRING_ERR', u64(3), fds=[(EVENTFD, b'')]) + msg('SET_VRING_CALL', u64(2 | 0x100)) +
            msg('SET_LOG_BASE', struct.pack('<QQ', 4096, 0), fds=[(MEMFD1, b'')]) + msg('RESET_OWNER'))
    write('vu_msg', 'config_status_misc', misc)
    # no PROTOCOL_FEATURES: a ring is enabled by its kick
    legacy = (b'\x00' + msg('GET_FEATURES') + msg('SET_OWNER') + msg('SET_FEATURES', u64(F_VERSION_1)) +
              mem_table(guest_image(False)) + vring(0, 0, 0, 0x100, 0x200, enable=False) +
              vring(1, 0, 0x1000, 0x1100, 0x1200, enable=False))
    write('vu_msg', 'no_protocol_features', legacy)
    bad = (b'\x00' + msg('SET_MEM_TABLE', struct.pack('<II', 2, 0) + region(0, 0x1000, UA, 0), fds=[(MEMFD1, b'')]) +
           msg('SET_VRING_KICK', u64(0), fds=[(EVENTFD, b'')] * 9) + msg('GET_FEATURES', size=0, flags=2))
    write('vu_msg', 'refusals', bad)



# ------------------------------------------------------------------ drv (driver side against a lying device)
def drv_round(adds=(), honest=(), lies=(), gets=63):
    """adds: (shape, len0, len1); honest: (len, frame bytes or None); lies: (kind, pos, id, len, v)."""
    out = struct.pack('<B', len(adds)) + b''.join(struct.pack('<BHH', *a) for a in adds)
    out += struct.pack('<B', len(honest))
    for length, frame in honest:
        out += struct.pack('<I', length)
        if frame is not None:
            out += struct.pack('<H', len(frame)) + frame
    out += struct.pack('<B', len(lies)) + b''.join(struct.pack('<BHHIH', *l) for l in lies)
    return out + struct.pack('<B', gets)


def drv_input(mode, size_sel, rounds, rx_buf_len=0):
    return struct.pack('<BBHB', mode, size_sel, rx_buf_len, len(rounds) - 1) + b''.join(rounds)


def drv_seeds():
    bufs = [(0x04, 100, 0), (0x01, 40, 80), (0x22, 10, 20)]  # readable+writable, two writable, indirect three
    honest = [(0, None)] * 3
    write('drv', 'split_honest', drv_input(0, 3, [drv_round(bufs, honest), drv_round(bufs, honest)]))
    write('drv', 'packed_honest', drv_input(1, 7, [drv_round(bufs, honest), drv_round(bufs, honest)]))
    write('drv', 'split_in_order_event_idx', drv_input(8 | 4, 3, [drv_round(bufs * 2, honest * 2)] * 3))
    write('drv', 'packed_in_order_indirect', drv_input(1 | 2 | 8, 5, [drv_round(bufs * 2, honest * 2)] * 3))
    # lies: a used length past the buffer, an id never posted, the index jumping, a used mark in the wrong lap
    write('drv', 'split_len_lie', drv_input(0, 3, [drv_round(bufs, [(500, None)])]))
    write('drv', 'split_id_lie', drv_input(0, 3, [drv_round(bufs, (), [(0, 0, 7, 0, 0), (2, 0, 0, 0, 1)])]))
    write('drv', 'split_idx_jump', drv_input(0, 3, [drv_round(bufs, (), [(6, 0, 0, 0, 0x4000)])]))
    write('drv', 'packed_wrong_lap', drv_input(1, 7, [drv_round(bufs, (), [(1, 0, 0, 0, 0)])]))
    write('drv', 'packed_flags_raw', drv_input(1, 7, [drv_round(bufs, (), [(3, 0, 1, 0, 0x8000)])]))
    hdr = vnet_hdr(12, num_buffers=1)
    frame = ETH_V4 + ipv4(17, 8 + 32) + udp(32) + bytes(range(32))
    rx = [(0, hdr + frame)] * 4
    write('drv', 'net_rx_split', drv_input(16, 6, [drv_round((), rx), drv_round((), rx)]))
    write('drv', 'net_rx_packed_mrg', drv_input(16 | 32 | 1, 63, [drv_round((), rx)], rx_buf_len=64))
    two = vnet_hdr(12, num_buffers=2) + frame
    write('drv', 'net_rx_mrg_two_buffers', drv_input(16 | 32, 6, [drv_round((), [(0, two[:40]), (0, two[40:])])],
                                                     rx_buf_len=52))
    csum = vnet_hdr(12, flags=NEEDS_CSUM, csum_start=34, csum_offset=6, num_buffers=1)
    write('drv', 'net_rx_csum_lie', drv_input(16 | 64, 6, [drv_round((), [(0, csum + frame), (9000, hdr + frame)])]))


# ------------------------------------------------------------------ net_rx (device enqueue into guest buffers)
NET_RX_BITS = {n: 1 << i for i, n in enumerate([
    'VERSION_1', 'MRG_RXBUF', 'GUEST_CSUM', 'GUEST_TSO4', 'GUEST_TSO6', 'GUEST_UFO', 'GUEST_ECN', 'HASH_REPORT',
    'RING_PACKED', 'INDIRECT_DESC', 'EVENT_IDX', 'IN_ORDER', 'GUEST_USO4', 'GUEST_USO6'])}


def meta(flags=0, gso_type=0, gso_size=0, csum_start=0, csum_offset=0):
    return struct.pack('<BBHHH', flags, gso_type, gso_size, csum_start, csum_offset)


def net_rx_input(features, bufs, frames, raw=(), bursts=1):
    out = struct.pack('<HB', features, len(bufs)) + b''.join(struct.pack('<BHHH', *b) for b in bufs)
    out += struct.pack('<B', len(raw)) + b''.join(struct.pack('<HH', *r) for r in raw)
    out += struct.pack('<BB', bursts - 1, len(frames) - 1)
    for m, data in frames:
        out += m + struct.pack('<H', len(data)) + data
    return out


def net_rx_seeds():
    b = NET_RX_BITS
    v1, mrg = b['VERSION_1'], b['VERSION_1'] | b['MRG_RXBUF']
    udp_frame = ETH_V4 + ipv4(17, 8 + 100) + udp(100) + bytes(range(100))
    tcp_big = ETH_V4 + ipv4(6, 20 + 3000) + tcp() + bytes(i & 0xff for i in range(3000))
    whole = [(1, 2048, 0, 0)] * 8
    small = [(1, 300, 0, 0)] * 32
    write('net_rx', 'plain', net_rx_input(v1, whole, [(meta(), udp_frame)] * 3))
    write('net_rx', 'mrg_small_buffers', net_rx_input(mrg, small, [(meta(), tcp_big), (meta(), udp_frame)]))
    write('net_rx', 'mrg_packed_in_order', net_rx_input(mrg | b['RING_PACKED'] | b['IN_ORDER'], small,
                                                        [(meta(), tcp_big)] * 2, bursts=2))
    tso = meta(NEEDS_CSUM, GSO_TCPV4, 1448, 34, 16)
    write('net_rx', 'tso_guest_offloads', net_rx_input(mrg | b['GUEST_CSUM'] | b['GUEST_TSO4'] | b['HASH_REPORT'],
                                                       small, [(tso, tcp_big)]))
    write('net_rx', 'csum_completed_for_guest', net_rx_input(v1, whole, [(meta(NEEDS_CSUM, 0, 0, 34, 6), udp_frame)]))
    # guest shapes: readable segment in front, several writable ones, an indirect table, empty and tiny buffers
    odd = [(0x06, 64, 400, 1500), (0x13, 12, 6, 2000), (0x01, 0, 0, 0), (0x01, 5, 0, 0), (0x02, 1, 2048, 0)]
    write('net_rx', 'odd_buffers', net_rx_input(mrg | b['INDIRECT_DESC'], odd * 4, [(meta(), udp_frame)] * 4))
    write('net_rx', 'raw_ring_writes', net_rx_input(mrg, small, [(meta(), udp_frame)], raw=[(2, 0x20), (0x402, 9)]))


# ------------------------------------------------------------------ gso (software TCP segmentation)
def gso_input(template, doff, m, frame, pool=1, max_seg=64, hdr_len=54):
    flags, gso_type, gso_size, csum_start, csum_offset = struct.unpack('<BBHHH', m)
    return struct.pack('<BBBBHHHHBBH', template, doff, flags, gso_type, hdr_len, gso_size, csum_start, csum_offset,
                       pool, max_seg, len(frame)) + frame


def gso_seeds():
    payload = bytes(i & 0xff for i in range(4000))
    v4 = ETH_V4 + ipv4(6, 20 + len(payload)) + tcp(0x19) + payload
    v6 = ETH_V6 + ipv6(6, 20 + len(payload)) + tcp(0x98) + payload
    write('gso', 'tcp4', gso_input(0, 0x50, meta(NEEDS_CSUM, GSO_TCPV4, 1448, 34, 16), v4))
    write('gso', 'tcp6_ecn', gso_input(0, 0x50, meta(NEEDS_CSUM, GSO_TCPV6 | 0x80, 1000, 54, 16), v6))
    write('gso', 'tcp4_small_mss_small_pool', gso_input(0, 0x50, meta(NEEDS_CSUM, GSO_TCPV4, 100, 34, 16),
                                                        v4[:1000], pool=0))
    # template: headers laid over input bytes (VLAN tags, IPv4 options, TCP options), conforming meta
    write('gso', 'template_vlan_options', gso_input(1 | 4 | 0x20 | 0x80, 0x80, meta(0, 0, 536, 0, 0), bytes(3000)))
    write('gso', 'template_v6_qinq', gso_input(1 | 2 | 8 | 0x80, 0x50, meta(0, 0, 1220, 0, 0), bytes(5000)))
    write('gso', 'too_many_segments', gso_input(0, 0x50, meta(NEEDS_CSUM, GSO_TCPV4, 10, 34, 16), v4, max_seg=8))


if __name__ == '__main__':
    vu_seeds()
    virtq_seeds()
    net_tx_seeds()
    drv_seeds()
    net_rx_seeds()
    gso_seeds()
