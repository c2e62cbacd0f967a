/* SPDX-License-Identifier: MIT */
/**
 * @file vhostd/pkt.h
 * Packet buffers and the pools they come from.
 *
 * A pool is a fixed number of fixed-size buffers carved out of one block of memory, with a stack of free
 * buffers; allocation and release move pointers on that stack and never call malloc. The block is either
 * malloc'd by the pool (vhd_pktpool_create()) or given by the caller (vhd_pktpool_create_in()), typically memory
 * the peer can see (a memfd shared with a vhost-user back-end): then each packet knows the address the device
 * uses for its buffer (vhd_pkt.iova), which is what makes zero-copy transmit and receive possible on the driver
 * side. The packet descriptors themselves (struct vhd_pkt and the free stack) always live in private memory, so
 * a peer that scribbles over the shared block can corrupt packet bytes but never the pool's bookkeeping.
 *
 * Each packet keeps VHD_PKT_HEADROOM bytes in front of its data when it comes out of a pool, so a virtio-net
 * header can be prepended in place.
 *
 * Threading: a pool belongs to one thread at a time (no locks, no atomics). Packets may travel to another thread
 * only if they come back to the owning thread to be freed.
 */
#ifndef VHOSTD_PKT_H
#define VHOSTD_PKT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vhd_pktpool;

/** Bytes left in front of the data of a freshly allocated packet: room for any virtio-net header (12 or 20). */
#define VHD_PKT_HEADROOM 128u

/** Smallest buffer size a pool accepts: the headroom plus a minimum-size Ethernet frame with some slack. */
#define VHD_PKT_MIN_BUF_SIZE (VHD_PKT_HEADROOM + 128u)

/** Largest buffer size a pool accepts: enough for a 64 KiB GSO frame plus headroom. */
#define VHD_PKT_MAX_BUF_SIZE (1u << 17)

/** Buffer size that holds a 1514-byte frame plus headroom; use 10240 (or more) for 9000-byte jumbo frames. */
#define VHD_PKT_DEFAULT_BUF_SIZE 2048u

/* vhd_net_meta.flags; the values are those of virtio_net_hdr.flags (virtio 1.2, 5.1.6). */
#define VHD_NET_META_F_NEEDS_CSUM 1u /**< checksum from csum_start to the end, stored at csum_start+csum_offset */
#define VHD_NET_META_F_DATA_VALID 2u /**< checksum already verified */

/* vhd_net_meta.gso_type; the values are those of virtio_net_hdr.gso_type (virtio 1.2, 5.1.6). */
#define VHD_NET_META_GSO_NONE   0u
#define VHD_NET_META_GSO_TCPV4  1u
#define VHD_NET_META_GSO_UDP    3u /**< UDP fragmentation (UFO) */
#define VHD_NET_META_GSO_TCPV6  4u
#define VHD_NET_META_GSO_UDP_L4 5u /**< UDP segmentation (USO) */
#define VHD_NET_META_GSO_ECN    0x80u /**< flag: the TCP segments carry ECN (CWR) */

/**
 * Offload metadata a packet carries, in the terms of the virtio-net header (5.1.6). A packet from a pool starts
 * with everything 0: fully checksummed, no segmentation. csum_start/csum_offset mean something only with
 * VHD_NET_META_F_NEEDS_CSUM; hdr_len and gso_size only when gso_type is not NONE.
 */
struct vhd_net_meta {
	uint8_t flags;        /**< VHD_NET_META_F_* */
	uint8_t gso_type;     /**< VHD_NET_META_GSO_*, possibly with VHD_NET_META_GSO_ECN */
	uint16_t hdr_len;     /**< bytes of headers to replicate in each segment (a hint unless GUEST_HDRLEN) */
	uint16_t gso_size;    /**< payload bytes per segment (MSS) */
	uint16_t csum_start;  /**< frame offset where checksumming starts */
	uint16_t csum_offset; /**< where, after csum_start, the checksum goes */
};

/**
 * One packet: a single contiguous frame inside one pool buffer. The frame is buf[off .. off+len); the caller
 * may move off and len within [0, cap] (e.g. to strip or prepend headers) and edit the bytes and meta freely
 * while it owns the packet.
 */
struct vhd_pkt {
	uint8_t *buf;              /**< start of the buffer (fixed) */
	uint32_t off;              /**< where the frame starts in buf; VHD_PKT_HEADROOM after allocation */
	uint32_t len;              /**< frame bytes; 0 after allocation */
	uint32_t cap;              /**< buffer bytes (fixed) */
	uint64_t iova;             /**< device-visible address of buf[0], or 0 if the pool is not shared (fixed) */
	struct vhd_net_meta meta;  /**< offload metadata */
	uint16_t flags;            /**< VHD_PKT_F_*, set by the pool (fixed) */
	struct vhd_pktpool *pool;  /**< the pool it returns to (fixed) */
};

/**
 * vhd_pkt.flags: the packet comes from a view pool (vhd_pktpool_create_views()): buf points at a frame in memory
 * the packet does not own (typically a guest's transmit buffer, see vhd_net_dev_dequeue_borrow()), valid only
 * for as long as its lender says. Read it, copy it; never write into it or keep it.
 */
#define VHD_PKT_F_VIEW 1u

/** The frame's first byte. */
static inline uint8_t *vhd_pkt_data(const struct vhd_pkt *pkt)
{
	return pkt->buf + pkt->off;
}

/** Bytes the frame can still grow at its end. */
static inline uint32_t vhd_pkt_tailroom(const struct vhd_pkt *pkt)
{
	return pkt->cap - pkt->off - pkt->len;
}

/**
 * Create a pool of count buffers of buf_size bytes each, in memory the pool allocates (cache-line aligned;
 * buffers an odd number of cache lines apart, so the same offset in consecutive buffers uses different cache sets).
 * @param out receives the pool; free it with vhd_pktpool_destroy().
 * @return 0; -EINVAL if count is 0 or above 2^24, or buf_size is outside
 *         [VHD_PKT_MIN_BUF_SIZE, VHD_PKT_MAX_BUF_SIZE]; -ENOMEM.
 */
int vhd_pktpool_create(unsigned count, uint32_t buf_size, struct vhd_pktpool **out);

/**
 * Create a pool whose buffers live in caller memory [mem, mem+mem_len), which the device sees at iova_base.
 * Buffers are laid out back to back from mem, each buf_size rounded up to a multiple of 64, so mem should be
 * 64-byte aligned for the buffers to be. The memory must outlive the pool and is never freed by it.
 * @return 0; -EINVAL for the cases of vhd_pktpool_create(), a NULL mem, iova_base 0, a block too small for
 *         count buffers, or an iova range that wraps; -ENOMEM.
 */
int vhd_pktpool_create_in(void *mem, size_t mem_len, uint64_t iova_base, unsigned count, uint32_t buf_size,
			  struct vhd_pktpool **out);

/**
 * Create a pool of count packet descriptors without buffers ("views"): whoever allocates one points buf, off,
 * len and cap at a frame held elsewhere; every packet has VHD_PKT_F_VIEW in flags. Freeing one returns only
 * the descriptor. vhd_pktpool_buf_size() is 0.
 * @return 0; -EINVAL if count is 0 or above 2^24; -ENOMEM.
 */
int vhd_pktpool_create_views(unsigned count, struct vhd_pktpool **out);

/**
 * Destroy a pool. Packets still allocated become invalid; check vhd_pktpool_avail() == vhd_pktpool_count()
 * first if leaks matter. NULL is accepted.
 */
void vhd_pktpool_destroy(struct vhd_pktpool *pool);

/** Buffers in the pool. */
unsigned vhd_pktpool_count(const struct vhd_pktpool *pool);

/** Buffers free right now. */
unsigned vhd_pktpool_avail(const struct vhd_pktpool *pool);

/** Bytes per buffer (vhd_pkt.cap of every packet). */
uint32_t vhd_pktpool_buf_size(const struct vhd_pktpool *pool);

/**
 * Take up to n packets, each reset: off = VHD_PKT_HEADROOM, len = 0, meta all 0. The last n freed come back
 * in the order they were freed (so a driver refilling a ring puts buffers back where they were).
 * @return packets stored in pkts[0..ret), fewer than n only when the pool runs out.
 */
unsigned vhd_pkt_alloc_bulk(struct vhd_pktpool *pool, struct vhd_pkt **pkts, unsigned n);

/** Return n packets to their pools (they may come from different pools). NULL entries are skipped. */
void vhd_pkt_free_bulk(struct vhd_pkt *const *pkts, unsigned n);

/** Return one packet to its pool. NULL is accepted. */
void vhd_pkt_free(struct vhd_pkt *pkt);

#ifdef __cplusplus
}
#endif
#endif
