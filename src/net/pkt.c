/* SPDX-License-Identifier: MIT */
/* Packet pools: one block of equal buffers, private descriptors, a free stack. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "spec/virtio_net.h"
#include "vhostd/log.h"
#include "vhostd/pkt.h"

/* The meta values are copied to and from the wire header unchanged. */
_Static_assert(VHD_NET_META_F_NEEDS_CSUM == VIRTIO_NET_HDR_F_NEEDS_CSUM, "NEEDS_CSUM");
_Static_assert(VHD_NET_META_F_DATA_VALID == VIRTIO_NET_HDR_F_DATA_VALID, "DATA_VALID");
_Static_assert(VHD_NET_META_GSO_TCPV4 == VIRTIO_NET_HDR_GSO_TCPV4, "GSO_TCPV4");
_Static_assert(VHD_NET_META_GSO_UDP == VIRTIO_NET_HDR_GSO_UDP, "GSO_UDP");
_Static_assert(VHD_NET_META_GSO_TCPV6 == VIRTIO_NET_HDR_GSO_TCPV6, "GSO_TCPV6");
_Static_assert(VHD_NET_META_GSO_UDP_L4 == VIRTIO_NET_HDR_GSO_UDP_L4, "GSO_UDP_L4");
_Static_assert(VHD_NET_META_GSO_ECN == VIRTIO_NET_HDR_GSO_ECN, "GSO_ECN");

#define POOL_MAX_COUNT (1u << 24)

struct vhd_pktpool {
	struct vhd_pkt *pkts;   /* count descriptors, in buffer order */
	struct vhd_pkt **stack; /* free packets, stack[0..nfree) */
	unsigned count, nfree;
	uint32_t buf_size;
	size_t stride;  /* from one buffer to the next */
	uint16_t flags; /* of every packet: VHD_PKT_F_VIEW for a view pool */
	void *own_mem;  /* the buffer block, when the pool allocated it */
};

_Static_assert(sizeof(void *) != 8 || sizeof(struct vhd_pkt) == 56, "vhd_pkt.flags sits in what was padding");

static size_t stride_of(uint32_t buf_size)
{
	return ((size_t)buf_size + 63) & ~(size_t)63;
}

/*
 * The stride of a pool in its own memory: an odd number of cache lines, so that the same offset in consecutive
 * buffers (the headroom's end, where frames start) falls in consecutive L1 sets. Sizes of whole pages or halves
 * (vhost-pktgen's 10240 bytes, 2.5 pages) put it in two of the 64 sets: a burst of 64 copies then evicted its
 * own lines, one D1 miss per frame written or read back (callgrind --cache-sim, bench/devcost.py).
 */
static size_t coloured_stride(uint32_t buf_size)
{
	size_t s = stride_of(buf_size);
	return (s / 64) % 2 ? s : s + 64;
}

/* buf_size 0: a view pool (no buffers). */
static int pool_new(unsigned count, uint32_t buf_size, bool views, struct vhd_pktpool **out)
{
	if (count == 0 || count > POOL_MAX_COUNT ||
	    (!views && (buf_size < VHD_PKT_MIN_BUF_SIZE || buf_size > VHD_PKT_MAX_BUF_SIZE)))
		return -EINVAL;
	struct vhd_pktpool *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->pkts = calloc(count, sizeof(*p->pkts));
	p->stack = calloc(count, sizeof(*p->stack));
	if (!p->pkts || !p->stack) {
		free(p->pkts);
		free(p->stack);
		free(p);
		return -ENOMEM;
	}
	p->count = count;
	p->buf_size = buf_size;
	*out = p;
	return 0;
}

/* Lay the descriptors over the block and put every packet on the free stack, lowest address on top so that
 * a fresh pool hands buffers out in address order. */
static void pool_fill(struct vhd_pktpool *p, uint8_t *mem, uint64_t iova_base)
{
	size_t stride = p->stride;
	for (unsigned i = 0; i < p->count; i++) {
		struct vhd_pkt *k = &p->pkts[i];
		k->buf = mem ? mem + (size_t)i * stride : NULL;
		k->cap = p->buf_size;
		k->iova = iova_base ? iova_base + (uint64_t)i * stride : 0;
		k->pool = p;
		k->flags = p->flags;
		p->stack[i] = k; /* a burst taken from the top is in address order */
	}
	p->nfree = p->count;
}

int vhd_pktpool_create(unsigned count, uint32_t buf_size, struct vhd_pktpool **out)
{
	struct vhd_pktpool *p;
	int rc = pool_new(count, buf_size, false, &p);
	if (rc < 0)
		return rc;
	p->stride = coloured_stride(buf_size);
	p->own_mem = aligned_alloc(64, p->stride * count);
	if (!p->own_mem) {
		vhd_pktpool_destroy(p);
		return -ENOMEM;
	}
	pool_fill(p, p->own_mem, 0);
	*out = p;
	return 0;
}

int vhd_pktpool_create_in(void *mem, size_t mem_len, uint64_t iova_base, unsigned count, uint32_t buf_size,
			  struct vhd_pktpool **out)
{
	if (!mem || iova_base == 0 || count == 0 || count > POOL_MAX_COUNT)
		return -EINVAL;
	size_t need = stride_of(buf_size) * count;
	if (need > mem_len || iova_base + need < iova_base)
		return -EINVAL;
	struct vhd_pktpool *p;
	int rc = pool_new(count, buf_size, false, &p);
	if (rc < 0)
		return rc;
	p->stride = stride_of(buf_size);
	pool_fill(p, mem, iova_base);
	*out = p;
	return 0;
}

int vhd_pktpool_create_views(unsigned count, struct vhd_pktpool **out)
{
	struct vhd_pktpool *p;
	int rc = pool_new(count, 0, true, &p);
	if (rc < 0)
		return rc;
	p->flags = VHD_PKT_F_VIEW;
	pool_fill(p, NULL, 0);
	*out = p;
	return 0;
}

void vhd_pktpool_destroy(struct vhd_pktpool *pool)
{
	if (!pool)
		return;
	free(pool->own_mem);
	free(pool->pkts);
	free(pool->stack);
	free(pool);
}

unsigned vhd_pktpool_count(const struct vhd_pktpool *pool)
{
	return pool->count;
}

unsigned vhd_pktpool_avail(const struct vhd_pktpool *pool)
{
	return pool->nfree;
}

uint32_t vhd_pktpool_buf_size(const struct vhd_pktpool *pool)
{
	return pool->buf_size;
}

unsigned vhd_pkt_alloc_bulk(struct vhd_pktpool *pool, struct vhd_pkt **pkts, unsigned n)
{
	if (n > pool->nfree)
		n = pool->nfree;
	/* The top n in stack order, not popped one by one: a burst freed and allocated again comes back in the
	 * order it was freed, so a driver that refills its ring with it puts each buffer in the descriptor it
	 * had the lap before (split_add() then has nothing to write). */
	struct vhd_pkt **base = pool->stack + pool->nfree - n;
	for (unsigned i = 0; i < n; i++) {
		struct vhd_pkt *k = base[i];
		k->off = VHD_PKT_HEADROOM;
		k->len = 0;
		memset(&k->meta, 0, sizeof(k->meta));
		pkts[i] = k;
	}
	pool->nfree -= n;
	return n;
}

/* Inlined into both entry points: as a call per packet it was a visible share of a burst's cost. */
static inline void pkt_free_one(struct vhd_pkt *pkt)
{
	if (!pkt)
		return;
	struct vhd_pktpool *p = pkt->pool;
	/* A foreign pointer, or a double free into a full pool, would write past the stack; refusing them costs
	 * three compares and turns memory corruption into a log line. (A double free into a pool that is not full
	 * is not caught: that would need a per-packet flag.) */
	if (__builtin_expect(p->nfree >= p->count || pkt < p->pkts || pkt >= p->pkts + p->count, 0)) {
		vhd_log(VHD_LOG_ERR, "pkt: free of %p refused (double free or not from this pool)", (void *)pkt);
		return;
	}
	p->stack[p->nfree++] = pkt;
}

void vhd_pkt_free(struct vhd_pkt *pkt)
{
	pkt_free_one(pkt);
}

void vhd_pkt_free_bulk(struct vhd_pkt *const *pkts, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		pkt_free_one(pkts[i]);
}
