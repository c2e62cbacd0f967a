/* SPDX-License-Identifier: MIT */
#include <stdbool.h>
#include <string.h>

#include "switch/gso.h"

static uint16_t rd16be(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void wr16be(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* One's complement sum of 16-bit words in memory order (RFC 1071: the byte order takes care of itself as long
 * as the result is stored in memory order too). */
static uint32_t sum16(const uint8_t *p, size_t n, uint32_t sum)
{
	for (; n >= 2; p += 2, n -= 2) {
		uint16_t w;
		memcpy(&w, p, 2);
		sum += w;
	}
	if (n) {
		uint16_t w = 0;
		memcpy(&w, p, 1);
		sum += w;
	}
	return sum;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/* A value as the two bytes it is on the wire, read back as a memory-order word. */
static uint32_t be_word(uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	uint16_t w;
	memcpy(&w, b, 2);
	return w;
}

unsigned sw_gso_segment(const struct vhd_pkt *pkt, struct vhd_pktpool *pool, struct vhd_pkt **out, unsigned max)
{
	const struct vhd_net_meta *m = &pkt->meta;
	uint8_t type = m->gso_type & (uint8_t)~VHD_NET_META_GSO_ECN;
	const uint8_t *d = vhd_pkt_data(pkt);
	uint32_t len = pkt->len, mss = m->gso_size;
	if ((type != VHD_NET_META_GSO_TCPV4 && type != VHD_NET_META_GSO_TCPV6) || mss == 0 || len < 14)
		return 0;
	/* Ethernet, with one or two VLAN tags. */
	uint32_t l3 = 12;
	uint16_t et = rd16be(d + l3);
	for (int tags = 0; tags < 2 && (et == 0x8100 || et == 0x88a8) && l3 + 6 <= len; tags++) {
		l3 += 4;
		et = rd16be(d + l3);
	}
	l3 += 2;
	bool v4 = type == VHD_NET_META_GSO_TCPV4;
	uint32_t l4;
	if (v4) {
		if (et != 0x0800 || l3 + 20 > len || (d[l3] >> 4) != 4 || d[l3 + 9] != 6)
			return 0;
		l4 = l3 + (uint32_t)(d[l3] & 15) * 4;
		if ((d[l3] & 15) < 5)
			return 0;
	} else {
		if (et != 0x86dd || l3 + 40 > len || (d[l3] >> 4) != 6 || d[l3 + 6] != 6)
			return 0; /* extension headers: not parsed here */
		l4 = l3 + 40;
	}
	if (l4 + 20 > len || ((m->flags & VHD_NET_META_F_NEEDS_CSUM) && m->csum_start != l4))
		return 0;
	uint32_t hl = l4 + (uint32_t)(d[l4 + 12] >> 4) * 4;
	if ((d[l4 + 12] >> 4) < 5 || hl > len)
		return 0;
	uint32_t payload = len - hl, nseg = payload ? (payload + mss - 1) / mss : 1;
	if (nseg > max)
		return 0;
	unsigned got = vhd_pkt_alloc_bulk(pool, out, nseg);
	bool fit = got == nseg;
	for (unsigned i = 0; fit && i < got; i++)
		fit = hl + mss <= vhd_pkt_tailroom(out[i]);
	if (!fit) {
		vhd_pkt_free_bulk(out, got);
		return 0;
	}
	uint32_t seq0 = (uint32_t)rd16be(d + l4 + 4) << 16 | rd16be(d + l4 + 6);
	uint16_t id0 = v4 ? rd16be(d + l3 + 4) : 0;
	uint8_t flags0 = d[l4 + 13];
	for (uint32_t i = 0; i < nseg; i++) {
		struct vhd_pkt *s = out[i];
		uint8_t *o = vhd_pkt_data(s);
		uint32_t off = i * mss, chunk = payload - off < mss ? payload - off : mss;
		memcpy(o, d, hl);
		memcpy(o + hl, d + hl + off, chunk);
		s->len = hl + chunk;
		uint32_t tcp_len = s->len - l4;
		if (v4) {
			wr16be(o + l3 + 2, (uint16_t)(s->len - l3));
			wr16be(o + l3 + 4, (uint16_t)(id0 + i));
			wr16be(o + l3 + 10, 0);
			uint16_t c = (uint16_t)~fold(sum16(o + l3, l4 - l3, 0));
			memcpy(o + l3 + 10, &c, 2);
		} else {
			wr16be(o + l3 + 4, (uint16_t)(s->len - l4));
		}
		uint32_t seq = seq0 + off;
		wr16be(o + l4 + 4, (uint16_t)(seq >> 16));
		wr16be(o + l4 + 6, (uint16_t)seq);
		uint8_t f = flags0;
		if (i + 1 < nseg)
			f &= (uint8_t)~(0x01 | 0x08); /* FIN, PSH: last segment only */
		if (i > 0)
			f &= (uint8_t)~0x80; /* CWR: first segment only */
		o[l4 + 13] = f;
		/* Pseudo-header sum, uncomplemented, in the checksum field: a partial checksum to complete. */
		uint32_t ps = v4 ? sum16(o + l3 + 12, 8, 0) : sum16(o + l3 + 8, 32, 0);
		ps += be_word(6) + be_word((uint16_t)tcp_len);
		uint16_t c = fold(ps);
		memcpy(o + l4 + 16, &c, 2);
		s->meta = (struct vhd_net_meta){.flags = VHD_NET_META_F_NEEDS_CSUM, .csum_start = (uint16_t)l4,
						.csum_offset = 16};
	}
	return nseg;
}
