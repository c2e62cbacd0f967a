/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: the switch's software TCP segmentation (sw_gso_segment) on frames and offload metadata
 * from the input, what a guest's GSO frame bound for a port without TSO goes through. The input's bytes are the
 * frame; with the template bit set, Ethernet (with VLAN tags), IPv4 or IPv6 and TCP headers are laid over its
 * start from a few input fields, so that most inputs get past the parser. Segments go into a pool whose buffer
 * size and the segment limit also come from the input.
 *
 * Input: template u8 (bit 0 on, bit 1 IPv6, bits 2-3 VLAN tags, bits 4-7 IPv4 IHL extra words), TCP data
 * offset u8, meta: flags u8, gso_type u8, hdr_len u16, gso_size u16, csum_start u16, csum_offset u16; pool u8,
 * max u8, frame length u16, then the frame bytes.
 *
 * Checked beyond the sanitizers: the frame and its meta are not changed; no more than max segments; each
 * segment repeats the frame's headers and carries at most gso_size payload bytes (all but the last exactly
 * gso_size), the payloads in order make up the frame's payload, and the checksum each segment asks for lies
 * inside it and can be completed; every packet goes back to its pool.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "net/net_impl.h"
#include "switch/gso.h"
#include "vhostd/pkt.h"

#define SEG_MAX 64u
#define POOL_COUNT 64u

static const uint32_t pool_sizes[] = {VHD_PKT_MIN_BUF_SIZE, VHD_PKT_DEFAULT_BUF_SIZE, 10240};
#define NPOOLS (sizeof(pool_sizes) / sizeof(pool_sizes[0]))

static struct vhd_pktpool *frame_pool, *pools[NPOOLS];
static uint8_t copy[VHD_PKT_MAX_BUF_SIZE];
int fz_verbose;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fz_init();
	for (unsigned i = 0; i < NPOOLS; i++)
		if (vhd_pktpool_create(POOL_COUNT, pool_sizes[i], &pools[i]) < 0)
			return -1;
	return vhd_pktpool_create(1, VHD_PKT_MAX_BUF_SIZE, &frame_pool);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Lay plausible headers over the frame's start; returns where TCP begins (0 if the frame is too short). */
static uint32_t template(uint8_t *d, uint32_t len, uint8_t t, uint8_t doff)
{
	uint32_t tags = (t >> 2) & 3, ihl = 5 + ((t >> 4) & 7);
	bool v6 = t & 2;
	uint32_t l3 = 14 + 4 * (tags > 2 ? 2 : tags), l4 = l3 + (v6 ? 40 : ihl * 4);
	if (len < l4 + 20)
		return 0;
	for (uint32_t i = 0; i < tags && i < 2; i++)
		put16(d + 12 + 4 * i, i == 0 && tags == 2 ? 0x88a8 : 0x8100);
	put16(d + l3 - 2, v6 ? 0x86dd : 0x0800);
	if (v6) {
		d[l3] = (uint8_t)(0x60 | (d[l3] & 15));
		d[l3 + 6] = 6;
	} else {
		d[l3] = (uint8_t)(0x40 | ihl);
		d[l3 + 9] = 6;
	}
	d[l4 + 12] = (uint8_t)((doff & 0xf0) | (d[l4 + 12] & 15));
	return l4;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint8_t t = fz_u8(&in), doff = fz_u8(&in);
	struct vhd_net_meta m = {.flags = fz_u8(&in), .gso_type = fz_u8(&in), .hdr_len = fz_u16(&in),
				 .gso_size = fz_u16(&in), .csum_start = fz_u16(&in), .csum_offset = fz_u16(&in)};
	struct vhd_pktpool *pool = pools[fz_u8(&in) % NPOOLS];
	unsigned max = fz_u8(&in) % (SEG_MAX + 1);
	uint32_t len = fz_u16(&in);

	struct vhd_pkt *p;
	FZ_ASSERT(vhd_pkt_alloc_bulk(frame_pool, &p, 1) == 1);
	if (len > vhd_pkt_tailroom(p))
		len = vhd_pkt_tailroom(p);
	uint8_t *d = vhd_pkt_data(p);
	fz_bytes(&in, d, len);
	p->len = len;
	if (t & 1) {
		uint32_t l4 = template(d, len, t, doff);
		if (l4 && (t & 0x80)) {
			/* The metadata a conforming guest would send, with the input's MSS. */
			m.flags = VHD_NET_META_F_NEEDS_CSUM;
			m.gso_type = (t & 2) ? VHD_NET_META_GSO_TCPV6 : VHD_NET_META_GSO_TCPV4;
			m.csum_start = (uint16_t)l4;
			m.csum_offset = 16;
		}
	}
	p->meta = m;
	memcpy(copy, d, len);

	struct vhd_pkt *seg[SEG_MAX];
	unsigned n = sw_gso_segment(p, pool, seg, max);
	FZ_SAY("len %u type %u mss %u: %u segments\n", len, m.gso_type, m.gso_size, n);
	FZ_ASSERT(n <= max);
	FZ_ASSERT(p->len == len && !memcmp(d, copy, len) && !memcmp(&p->meta, &m, sizeof(m)));
	if (n) {
		/* Segmentation happened, so the frame had TCP at csum_start of the segments (the headers end doff
		 * words later) and a nonzero MSS. */
		uint32_t l4 = seg[0]->meta.csum_start;
		FZ_ASSERT(l4 + 20 <= len);
		uint32_t hl = l4 + (uint32_t)(d[l4 + 12] >> 4) * 4;
		FZ_ASSERT(hl <= len && m.gso_size > 0);
		uint32_t off = hl;
		for (unsigned i = 0; i < n; i++) {
			const struct vhd_pkt *s = seg[i];
			const uint8_t *o = vhd_pkt_data(s);
			FZ_ASSERT(s->len >= hl);
			uint32_t chunk = s->len - hl;
			FZ_ASSERT(chunk <= m.gso_size && (i + 1 == n || chunk == m.gso_size));
			FZ_ASSERT(off + chunk <= len && !memcmp(o + hl, d + off, chunk));
			/* Outside the fields segmentation rewrites, the headers are the frame's: the Ethernet part. */
			FZ_ASSERT(!memcmp(o, d, 12));
			FZ_ASSERT(s->meta.flags & VHD_NET_META_F_NEEDS_CSUM);
			FZ_ASSERT(s->meta.csum_start == l4 && (uint32_t)s->meta.csum_start + s->meta.csum_offset + 2 <= s->len);
			net_csum_complete(seg[i]);
			off += chunk;
		}
		FZ_ASSERT(off == len);
	}
	vhd_pkt_free_bulk(seg, n);
	vhd_pkt_free(p);
	for (unsigned i = 0; i < NPOOLS; i++)
		FZ_ASSERT(vhd_pktpool_avail(pools[i]) == POOL_COUNT);
	FZ_ASSERT(vhd_pktpool_avail(frame_pool) == 1);
	return 0;
}
