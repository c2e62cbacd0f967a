/* SPDX-License-Identifier: MIT */
/* virtio-net data path internals shared by net_dev.c, net_drv.c and net_cfg.c. */
#ifndef VHD_NET_IMPL_H
#define VHD_NET_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "spec/endian.h"
#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "util/compiler.h"
#include "vhostd/net.h"
#include "vhostd/pkt.h"

#define ETH_HLEN_MIN 14u

/* Why one packet is dropped. */
enum net_verdict {
	NV_OK = 0,
	NV_BAD_HEADER,
	NV_GSO_UNSUPPORTED,
	NV_TOO_SMALL,
	NV_TOO_BIG,
	NV_ERROR,
};

/*
 * A struct vhd_net_stats field has one writer (the thread calling the burst functions with it) and may have
 * readers elsewhere (a control thread's report): relaxed atomic load and store, which compile to the plain ones
 * they replace (no locked instruction), so that those reads are not data races.
 */
static inline void net_stat_add(uint64_t *c, uint64_t v)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

static inline void net_count_drop(struct vhd_net_stats *st, enum net_verdict v)
{
	switch (v) {
	case NV_BAD_HEADER: net_stat_add(&st->bad_header, 1); break;
	case NV_GSO_UNSUPPORTED: net_stat_add(&st->gso_unsupported, 1); break;
	case NV_TOO_SMALL: net_stat_add(&st->too_small, 1); break;
	case NV_TOO_BIG: net_stat_add(&st->too_big, 1); break;
	case NV_ERROR: net_stat_add(&st->errors, 1); break;
	case NV_OK: break;
	}
}

/* What one direction allows: the driver->device half or the device->driver half of vhd_net_cfg. */
struct net_dir {
	bool csum, ecn, exact_hdr_len;
	uint8_t gso;
};

static inline struct net_dir net_dir_tx(const struct vhd_net_cfg *cfg)
{
	return (struct net_dir){cfg->tx_csum, cfg->tx_ecn, cfg->tx_exact_hdr_len, cfg->tx_gso};
}

static inline struct net_dir net_dir_rx(const struct vhd_net_cfg *cfg)
{
	return (struct net_dir){cfg->rx_csum, cfg->rx_ecn, false, cfg->rx_gso};
}

/* Bit in net_dir.gso / vhd_net_cfg.[tr]x_gso for a gso_type without the ECN flag; 0 for unknown types. */
static inline uint8_t net_gso_bit(uint8_t type)
{
	switch (type) {
	case VIRTIO_NET_HDR_GSO_TCPV4:
	case VIRTIO_NET_HDR_GSO_UDP:
	case VIRTIO_NET_HDR_GSO_TCPV6:
	case VIRTIO_NET_HDR_GSO_UDP_L4:
		return (uint8_t)(1u << type);
	default:
		return 0;
	}
}

/*
 * Check offload metadata for a frame of len bytes against what the direction allows (5.1.6.2 for what a driver
 * may send, 5.1.6.4 for what a device may). The checksum feature is checked by the callers: a header from the
 * peer without it is bad, a packet from our own caller gets its checksum done in software instead.
 */
static inline enum net_verdict net_check_meta(const struct vhd_net_meta *m, uint32_t len, const struct net_dir *d)
{
	if (m->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		if ((uint32_t)m->csum_start + m->csum_offset + 2 > len)
			return NV_BAD_HEADER;
	}
	uint8_t type = m->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
	bool ecn = m->gso_type & VIRTIO_NET_HDR_GSO_ECN;
	if (likely(type == VIRTIO_NET_HDR_GSO_NONE))
		return ecn ? NV_BAD_HEADER : NV_OK;
	uint8_t bit = net_gso_bit(type);
	if (!bit)
		return NV_BAD_HEADER;
	/* ECN marks TCP segments only. */
	if (ecn && type != VIRTIO_NET_HDR_GSO_TCPV4 && type != VIRTIO_NET_HDR_GSO_TCPV6)
		return NV_BAD_HEADER;
	if (!(d->gso & bit) || (ecn && !d->ecn))
		return NV_GSO_UNSUPPORTED;
	/* "If gso_type differs from GSO_NONE, then [the sender] MUST also set NEEDS_CSUM and MUST set gso_size". */
	if (!(m->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) || m->gso_size == 0)
		return NV_BAD_HEADER;
	if (m->hdr_len > len)
		return NV_BAD_HEADER;
	/* An exact hdr_len covers the transport header, hence the checksum field in it. */
	if (d->exact_hdr_len && m->hdr_len < (uint32_t)m->csum_start + m->csum_offset + 2)
		return NV_BAD_HEADER;
	return NV_OK;
}

/* Header fields -> meta, keeping only what means something (csum fields need NEEDS_CSUM, GSO fields a type). */
static inline void net_hdr_to_meta(const struct virtio_net_hdr *h, uint8_t flag_mask, struct vhd_net_meta *m)
{
	m->flags = h->flags & flag_mask;
	m->gso_type = h->gso_type;
	if (m->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		m->csum_start = vhd_le16(h->csum_start);
		m->csum_offset = vhd_le16(h->csum_offset);
	} else {
		m->csum_start = m->csum_offset = 0;
	}
	if (h->gso_type != VIRTIO_NET_HDR_GSO_NONE) {
		m->hdr_len = vhd_le16(h->hdr_len);
		m->gso_size = vhd_le16(h->gso_size);
	} else {
		m->hdr_len = m->gso_size = 0;
	}
}

/* Meta -> header (all fields after num_buffers zero). flags must already be what may go on the wire. */
static inline void net_meta_to_hdr(const struct vhd_net_meta *m, uint8_t flags, struct virtio_net_hdr_v1_hash *w)
{
	memset(w, 0, sizeof(*w));
	w->h.hdr.flags = flags;
	w->h.hdr.gso_type = m->gso_type;
	if (m->gso_type != VIRTIO_NET_HDR_GSO_NONE) {
		w->h.hdr.hdr_len = vhd_cpu_to_le16(m->hdr_len);
		w->h.hdr.gso_size = vhd_cpu_to_le16(m->gso_size);
	}
	if (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		w->h.hdr.csum_start = vhd_cpu_to_le16(m->csum_start);
		w->h.hdr.csum_offset = vhd_cpu_to_le16(m->csum_offset);
	}
}

/*
 * Complete a partial checksum in place: the ones' complement sum from csum_start to the end of the frame,
 * stored at csum_start + csum_offset (5.1.6.2 item 2). The caller has checked the range. The field already holds
 * the pseudo-header sum, so summing over it is what the spec asks. A result of 0 is stored as 0xffff, which
 * means the same to TCP and is required by UDP (where 0 means "no checksum").
 */
static inline void net_csum_complete(struct vhd_pkt *p)
{
	uint8_t *d = vhd_pkt_data(p);
	uint32_t start = p->meta.csum_start, end = p->len;
	uint8_t *field = d + start + p->meta.csum_offset;
	uint64_t sum = 0;
	const uint8_t *q = d + start;
	uint32_t left = end - start;
	/* Summing 16-bit words in memory order and storing the result in memory order is byte-order
	 * independent (RFC 1071, 2(B)). */
	while (left >= 8) {
		uint32_t a, b;
		memcpy(&a, q, 4);
		memcpy(&b, q + 4, 4);
		sum += (uint64_t)a + b;
		q += 8;
		left -= 8;
	}
	while (left >= 2) {
		uint16_t w;
		memcpy(&w, q, 2);
		sum += w;
		q += 2;
		left -= 2;
	}
	if (left) {
		uint16_t w = 0;
		memcpy(&w, q, 1); /* the odd byte is the first byte of a zero-padded word */
		sum += w;
	}
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	uint16_t c = (uint16_t)~sum;
	if (c == 0)
		c = 0xffff;
	memcpy(field, &c, 2);
	p->meta.flags &= (uint8_t)~VIRTIO_NET_HDR_F_NEEDS_CSUM;
	p->meta.csum_start = p->meta.csum_offset = 0;
}

/*
 * A caller's packet about to go to the peer (device enqueue, driver xmit): at least an Ethernet header, meta
 * allowed in direction d. When the peer takes no NEEDS_CSUM (d->csum false), the checksum is completed here,
 * in place (5.1.6.2.1: without CSUM "the driver MUST set flags to zero"; likewise for the device without
 * GUEST_CSUM).
 */
static inline enum net_verdict net_check_outgoing(struct vhd_pkt *p, const struct net_dir *d)
{
	if (unlikely(p->len < ETH_HLEN_MIN))
		return NV_TOO_SMALL;
	enum net_verdict v = net_check_meta(&p->meta, p->len, d);
	if (unlikely(v != NV_OK))
		return v;
	if (unlikely((p->meta.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !d->csum))
		net_csum_complete(p);
	return NV_OK;
}

/* Copy a virtio-net header of hs bytes (10, 12 or 20: vhd_net_cfg.hdr_size). Constant sizes let the compiler
 * inline the copy instead of calling memcpy for a dozen bytes per packet. */
static inline void net_hdr_copy(void *dst, const void *src, uint32_t hs)
{
	if (likely(hs == 12))
		memcpy(dst, src, 12);
	else if (hs == 10)
		memcpy(dst, src, 10);
	else
		memcpy(dst, src, 20);
}

/*
 * Put the header for meta m (with flags and num_buffers) in front of a frame, hs bytes (10, 12 or 20), leaving dst
 * alone when it already holds those bytes, as a reused buffer's header usually does (no offloads: all zero but
 * num_buffers). A header in a cache line of its own that the other side last read is then only read, not
 * written: a store would have to take the line back from the other core's cache first, and those stores were most
 * of a sending core's time (perf, 64-byte frames).
 *
 * The usual 12 bytes are made in registers, as little-endian words of bytes 0-7 and 8-11: built field by field in
 * memory and then compared 8 bytes at a time, the wide load missed store forwarding from the narrow stores (two
 * fifths of vhd_net_dev_enqueue() in perf).
 */
_Static_assert(offsetof(struct virtio_net_hdr, gso_type) == 1 && offsetof(struct virtio_net_hdr, hdr_len) == 2 &&
		       offsetof(struct virtio_net_hdr, gso_size) == 4 &&
		       offsetof(struct virtio_net_hdr, csum_start) == 6 &&
		       offsetof(struct virtio_net_hdr, csum_offset) == 8 &&
		       offsetof(struct virtio_net_hdr_mrg_rxbuf, num_buffers) == 10,
	       "net_hdr_put() packs the header's fields at these offsets");
static inline void net_hdr_put(void *dst, const struct vhd_net_meta *m, uint8_t flags, uint16_t num_buffers,
			       uint32_t hs)
{
	if (unlikely(hs != 12)) {
		struct virtio_net_hdr_v1_hash w; /* hash_report stays 0 (REPORT_NONE): we never hash */
		net_meta_to_hdr(m, flags, &w);
		w.h.num_buffers = vhd_cpu_to_le16(num_buffers);
		if (hs == 10) {
			if (memcmp(dst, &w, 10) != 0)
				memcpy(dst, &w, 10);
		} else if (memcmp(dst, &w, 20) != 0) {
			memcpy(dst, &w, 20);
		}
		return;
	}
	uint64_t lo = flags | (uint64_t)m->gso_type << 8;
	uint32_t hi = (uint32_t)num_buffers << 16;
	if (m->gso_type != VIRTIO_NET_HDR_GSO_NONE)
		lo |= (uint64_t)m->hdr_len << 16 | (uint64_t)m->gso_size << 32;
	if (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		lo |= (uint64_t)m->csum_start << 48;
		hi |= m->csum_offset;
	}
	lo = vhd_cpu_to_le64(lo);
	hi = vhd_cpu_to_le32(hi);
	uint64_t cur_lo;
	uint32_t cur_hi;
	memcpy(&cur_lo, dst, 8);
	memcpy(&cur_hi, (uint8_t *)dst + 8, 4);
	if (cur_lo != lo || cur_hi != hi) {
		memcpy(dst, &lo, 8);
		memcpy((uint8_t *)dst + 8, &hi, 4);
	}
}

/* Copy len bytes starting skip bytes into iov[0..n) to dst. The caller knows the bytes are there. */
static inline void net_iov_gather(const struct iovec *iov, unsigned n, size_t skip, uint8_t *dst, size_t len)
{
	unsigned i = 0;
	while (i < n && skip >= iov[i].iov_len)
		skip -= iov[i++].iov_len;
	for (; i < n && len; i++) {
		size_t take = iov[i].iov_len - skip;
		if (take > len)
			take = len;
		memcpy(dst, (const uint8_t *)iov[i].iov_base + skip, take);
		dst += take;
		len -= take;
		skip = 0;
	}
}

#endif
