/* SPDX-License-Identifier: MIT */
/**
 * @file vhostd/net.h
 * The virtio-net data path (virtio 1.2, section 5.1) on top of vhostd/virtq.h, from either side.
 *
 * Device side (a vhost-user back-end): vhd_net_dev_dequeue() takes the frames the guest transmits and copies
 * them into pool packets; vhd_net_dev_enqueue() copies packets into the guest's receive buffers. Every byte and
 * header field the guest wrote is copied out of shared memory before it is checked, and a bad header only drops
 * that packet (counted); it never breaks the queue.
 *
 * Driver side (our own front-end): packets live in a pool made with vhd_pktpool_create_in() over memory the
 * device can see. vhd_net_drv_xmit() offers them to the device in place (the header goes into the headroom),
 * vhd_net_drv_refill() keeps the receive queue stocked with empty packets, vhd_net_drv_recv() returns the filled
 * ones, copying only to reassemble a frame spread over several mergeable buffers.
 *
 * Notifications are the caller's business: after each burst call, call vhd_vq_need_notify() on that queue and
 * kick/interrupt the peer if it says so; use vhd_vq_enable_notify() / vhd_vq_disable_notify() around sleeping.
 * Do this even when a device-side call returned 0: buffers of dropped frames, and receive buffers given back
 * empty, were still returned to the driver, which may be waiting for them. (vhd_vq_need_notify() is cheap and
 * says no when nothing was published.) Nothing here makes a system call, allocates, or takes a lock.
 *
 * Threading: a queue and the pool its packets come from belong to one thread (see vhostd/pkt.h).
 *
 * Return values: the burst calls return a count or -EIO when the queue is broken (vhd_vq_error() says why); on
 * -EIO no packet changed hands. Counters go to a caller-provided struct vhd_net_stats, which is only ever
 * added to (one per queue is typical), with relaxed atomic stores: another thread may read a field while the
 * owner runs, with a relaxed atomic load (__atomic_load_n(&st->packets, __ATOMIC_RELAXED)), for a report.
 */
#ifndef VHOSTD_NET_H
#define VHOSTD_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "pkt.h" /* same directory, installed or not */
#include "virtq.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vhd_vq;

/** Most packets one burst call handles; a larger n is treated as this. */
#define VHD_NET_BURST_MAX 256u

/**
 * Most receive buffers one vhd_net_dev_enqueue() call returns empty (unusable, or taken by a packet that could
 * not be completed). A driver posting tiny buffers as fast as we consume them would otherwise keep one call,
 * and the thread serving every other port, busy for as long as it likes (CVE-2019-3900).
 */
#define VHD_NET_RX_WASTE_MAX 64u

/**
 * What the data path needs to know about the negotiated features. Fill it with vhd_net_cfg_init(); the derived
 * fields are read-only. Share one between the queues of a device.
 */
struct vhd_net_cfg {
	uint64_t features;  /**< negotiated feature bits (1 << VIRTIO_*_F_* bit numbers) */
	uint16_t hdr_size;  /**< virtio_net_hdr bytes before each frame: 20 with HASH_REPORT, 12 with VERSION_1 or
				 MRG_RXBUF, else 10 (legacy) */
	bool mrg_rxbuf;     /**< VIRTIO_NET_F_MRG_RXBUF: a received frame may span several buffers */
	/**
	 * Driver side, with MRG_RXBUF only: bytes offered per receive buffer (header included), so that big frames
	 * spread over several buffers and vhd_net_drv_recv() gathers them into the first packet. 0 (the default)
	 * offers each packet's whole buffer. Values below hdr_size are raised to hdr_size.
	 */
	uint32_t rx_buf_len;
	/* Derived from features: which offloads each direction may carry. */
	bool tx_csum;        /**< CSUM: the driver may send NEEDS_CSUM */
	bool rx_csum;        /**< GUEST_CSUM: the device may send NEEDS_CSUM / DATA_VALID */
	bool tx_ecn, rx_ecn; /**< HOST_ECN / GUEST_ECN */
	bool tx_exact_hdr_len; /**< GUEST_HDRLEN: hdr_len of a GSO frame is exact, not a hint */
	uint8_t tx_gso;      /**< bit (1 << gso_type) set for each gso_type the driver may send (HOST_TSO4/6, UFO, USO) */
	uint8_t rx_gso;      /**< the same for the device (GUEST_TSO4/6, UFO, USO4/6) */
};

/**
 * Derive the data-path configuration from the negotiated features.
 * @return 0; -EINVAL if the features break a dependency of 5.1.3.1 that the data path relies on (e.g. HOST_TSO4
 *         without CSUM, GUEST_ECN without GUEST_TSO4/6); -ENOTSUP for RSC_EXT, whose receive header semantics
 *         this data path does not implement.
 */
int vhd_net_cfg_init(struct vhd_net_cfg *cfg, uint64_t features);

/**
 * Counters, added to by every call. "Dropped" packets were consumed and freed (or, for the device's receive
 * path, not delivered while the caller keeps them); see each call for which counters it uses.
 */
struct vhd_net_stats {
	uint64_t packets;         /**< packets moved: dequeued, delivered, sent or received */
	uint64_t bytes;           /**< their frame bytes (headers excluded) */
	uint64_t no_buffers;      /**< packets not taken because the ring or the pool had no room */
	uint64_t bad_header;      /**< dropped: header malformed or inconsistent with the features */
	uint64_t too_big;         /**< dropped: frame larger than the buffer(s) that had to hold it */
	uint64_t too_small;       /**< dropped: frame shorter than an Ethernet header (14 bytes) */
	uint64_t gso_unsupported; /**< dropped: segmentation type not negotiated for this direction */
	/**
	 * Buffers that carried no packet: the peer's buffers that were unusable (no room for a header, too many
	 * segments) or, on the device's receive path, popped and returned empty; used buffers the driver received
	 * empty or cut short; our own packets the driver could not offer (not device-visible, no headroom).
	 */
	uint64_t errors;
};

/* ------------------------------------------------------------------------------------------------------ */
/* The device, apart from its transport                                                                    */

/*
 * One virtio-net device (features, config space, the data path below) is served by several transports: the
 * vhost-user back-end (vhostd/vhost_user.h) and VDUSE (vhostd/vduse.h). Each adds its own transport bits
 * (VERSION_1, ring layouts, EVENT_IDX, MQ, ACCESS_PLATFORM...) to what the device implements.
 */

/**
 * The virtio-net features the device side of this data path implements whatever the transport: MRG_RXBUF,
 * STATUS, CSUM/GUEST_CSUM and TSO4/6 both ways (1 << VIRTIO_NET_F_* bit numbers).
 * Threading: any. Never blocks.
 */
uint64_t vhd_net_device_features(void);

/** What the config space says (virtio 1.2, 5.1.4). */
struct vhd_net_device_info {
	uint8_t mac[6];           /**< meaningful with VIRTIO_NET_F_MAC */
	uint16_t mtu;             /**< meaningful with VIRTIO_NET_F_MTU */
	uint16_t max_queue_pairs; /**< meaningful with VIRTIO_NET_F_MQ */
	bool link_down;           /**< status without VIRTIO_NET_S_LINK_UP */
};

/** Bytes of config space vhd_net_device_config() writes: mac, status, max_virtqueue_pairs, mtu, speed, duplex,
 *  and the RSS fields (zero: no RSS). */
#define VHD_NET_CONFIG_SIZE 24u

/**
 * Write the device's config space (little-endian, as the driver reads it) into out[0..VHD_NET_CONFIG_SIZE).
 * Speed and duplex say "unknown". Threading: any. Never blocks.
 */
void vhd_net_device_config(const struct vhd_net_device_info *info, uint8_t out[VHD_NET_CONFIG_SIZE]);

/* ------------------------------------------------------------------------------------------------------ */
/* Device side                                                                                             */

/**
 * Device: take up to n frames the driver transmitted on txq and copy each into a packet from pool.
 *
 * For each chain, the header (cfg->hdr_size bytes, wherever the segment boundaries fall) is copied out and
 * checked (5.1.6.2): NEEDS_CSUM needs CSUM and csum_start + csum_offset + 2 inside the frame; a gso_type must be
 * known (bad_header otherwise), negotiated (gso_unsupported otherwise), come with NEEDS_CSUM and a nonzero
 * gso_size, and hdr_len must lie inside the frame (and cover the checksum field with GUEST_HDRLEN). Frames under
 * 14 bytes (too_small) or over the pool buffer minus VHD_PKT_HEADROOM (too_big) are dropped too. Unrecognised
 * flag bits are ignored; meta holds only the fields that mean something (e.g. csum_start is 0 without
 * NEEDS_CSUM). Every chain taken is given back (length 0) with one vhd_vq_push() per burst of up to 64.
 * When the pool runs dry the rest of the chains stay in the ring. Each pop of up to 64 chains walks at most
 * VHD_VQ_POP_DESC_BUDGET descriptors (vhd_vq_pop()), and one that stops short ends the call: a call for 64 frames
 * or fewer walks no more than that, and a driver posting long chains of tiny descriptors gets fewer frames per
 * call, none lost.
 * @return packets stored in pkts[0..ret), now owned by the caller; -EIO if the queue is broken.
 */
int vhd_net_dev_dequeue(struct vhd_vq *txq, const struct vhd_net_cfg *cfg, struct vhd_pktpool *pool,
			struct vhd_pkt **pkts, unsigned n, struct vhd_net_stats *st);

/** Most chains a borrowing dequeue keeps from the driver before vhd_net_dev_dequeue_done() gives them back. */
#define VHD_NET_BORROW_MAX 256u

/** The chains a borrowing dequeue took and has not given back yet. Start with n = 0; one per queue. */
struct vhd_net_borrowed {
	unsigned n;
	struct vhd_vq_used used[VHD_NET_BORROW_MAX];
};

/**
 * Device: vhd_net_dev_dequeue() without the copy. A frame that lies in one segment right after its header (what
 * drivers post) and asks for no offload (no NEEDS_CSUM, no GSO: serving those would mean writing into the frame)
 * is not copied: its packet comes from views (vhd_pktpool_create_views()) and points into the driver's buffer
 * (VHD_PKT_F_VIEW), with meta all 0. Other frames are copied into packets from pool, as vhd_net_dev_dequeue()
 * does; pool also sets the largest frame taken (its buffer size minus VHD_PKT_HEADROOM), so the same frames are
 * dropped either way. The chains are not given back: their used entries wait in b until
 * vhd_net_dev_dequeue_done(), which the caller must call (with the queue still held, so the guest memory stays
 * mapped) once no view's frame is used any more, and before borrowing again if b is near full. Views from views
 * run short: the remaining chains stay in the ring. A chain to copy while pool is empty is dropped (no_buffers).
 *
 * The guest still owns a view's bytes and may change them at any time: copy them onwards, look at them to decide
 * where the frame goes, but never check them and then rely on the check, and never write into them (headers,
 * lengths and offload metadata are private copies, checked as for vhd_net_dev_dequeue()).
 * Threading: as vhd_net_dev_dequeue(); b belongs to the queue.
 * @return packets stored in pkts[0..ret), views or pool packets, now owned by the caller; -EINVAL without views
 *         or with a corrupt b; -EIO if the queue is broken (pkts freed, b emptied: nothing to give back).
 */
int vhd_net_dev_dequeue_borrow(struct vhd_vq *txq, const struct vhd_net_cfg *cfg, struct vhd_pktpool *pool,
			       struct vhd_pktpool *views, struct vhd_pkt **pkts, unsigned n,
			       struct vhd_net_borrowed *b, struct vhd_net_stats *st);

/**
 * Device: give back every chain b holds (one push, length 0), after the views of their frames are done with.
 * @return 0; -EIO if the queue is broken (b is emptied either way).
 */
int vhd_net_dev_dequeue_done(struct vhd_vq *txq, struct vhd_net_borrowed *b);

/**
 * Device: copy packets into the driver's receive buffers on rxq, each preceded by a header built from its meta.
 *
 * The header carries NEEDS_CSUM / DATA_VALID only with GUEST_CSUM; without it a NEEDS_CSUM packet has its
 * checksum completed in place (pkt data and meta are updated) and DATA_VALID is dropped. A GSO packet needs the
 * matching GUEST_TSO4/TSO6/UFO/USO4/USO6 (and GUEST_ECN for the ECN bit), else it is dropped (gso_unsupported);
 * inconsistent meta (GSO without NEEDS_CSUM or gso_size, checksum field outside the frame) is bad_header; a
 * frame under 14 bytes is too_small.
 *
 * Without MRG_RXBUF each packet goes into one buffer (5.1.6.3.2) and a packet larger than the buffer at hand is
 * dropped (too_big; the buffer is kept for the next packet; once a buffer size is known, a packet larger than
 * every buffer seen is dropped without taking another). With MRG_RXBUF a packet fills as many buffers as it
 * needs, all but the last completely, and num_buffers in its header says how many (5.1.6.4.2); a packet needing
 * more than 256 buffers is dropped (too_big). All buffers of one packet are published by the same push.
 *
 * Packets are taken in order. When the ring runs out, the call stops: pkts[ret..n) were not delivered (though
 * their checksums may have been completed already) and count as no_buffers; offer them again or free them.
 * If that happens part-way through a mergeable packet, the buffers it had taken are put back in the ring
 * (vhd_vq_unpop()) for the next call, as are buffers popped ahead and not needed, so none is wasted. Buffers the
 * driver made unusable (writable part shorter than the header, or more segments than one pop maps) are returned
 * empty (errors here, and in vhd_net_drv_recv()): the spec gives them no meaning and drivers drop them. Once a
 * call has returned VHD_NET_RX_WASTE_MAX buffers empty it stops as if the ring had run out; likewise once its
 * pops have walked VHD_VQ_POP_DESC_BUDGET descriptors (each pop walks at most that, or its first chain whole),
 * so buffers of thousands of descriptors each cost a call at most about two pops' worth.
 *
 * The caller keeps ownership of every packet. One vhd_vq_push() per burst (two or more only when a burst
 * takes more than 256 buffers).
 * @return packets consumed from the front of pkts: delivered, or dropped and counted. -EIO if broken.
 */
int vhd_net_dev_enqueue(struct vhd_vq *rxq, const struct vhd_net_cfg *cfg, struct vhd_pkt *const *pkts, unsigned n,
			struct vhd_net_stats *st);

/* ------------------------------------------------------------------------------------------------------ */
/* Driver side                                                                                             */

/**
 * Driver: send packets on txq without copying. When the ring has no room for all n, first collects the oldest
 * n buffers the device has finished with (fewer if fewer are done) and frees their packets; with n = 0 it
 * collects and frees all finished ones and sends nothing. So a sender keeps the ring nearly full and its packets stay in the ring until
 * it needs room: one whose pool runs dry should call with n = 0 to get them back. (Collecting only when needed
 * reads used entries long after the device wrote them, not in the cache lines it is writing.) Then, for each
 * packet, writes the header into the headroom (unless it already holds those bytes) and offers header and frame
 * as one readable buffer (5.1.6.2).
 *
 * Packets must come from a pool made with vhd_pktpool_create_in() and have at least cfg->hdr_size bytes of
 * headroom; others are dropped (errors). A NEEDS_CSUM packet without CSUM negotiated gets its checksum
 * completed in place; GSO without the matching HOST_ feature is dropped (gso_unsupported); inconsistent meta is
 * bad_header; frames under 14 bytes are too_small.
 * @return packets consumed from the front of pkts: sent (owned by the queue until completed) or dropped (freed).
 *         pkts[ret..n) stay with the caller: the ring was full (no_buffers), or n was above VHD_NET_BURST_MAX.
 *         -EIO if broken (nothing taken).
 */
int vhd_net_drv_xmit(struct vhd_vq *txq, const struct vhd_net_cfg *cfg, struct vhd_pkt *const *pkts, unsigned n,
		     struct vhd_net_stats *st);

/**
 * Driver: collect the oldest n transmit buffers the device has finished with (0: all that are finished) and free
 * their packets, what vhd_net_drv_xmit() does itself when the ring lacks room. A sender that calls it before
 * allocating its next burst (when vhd_vq_room() is below the burst) gets those same buffers back from the pool
 * in the same order, so that each goes into the descriptor it just left, which then is not written again.
 * @return buffers collected; -EIO if broken.
 */
int vhd_net_drv_reclaim(struct vhd_vq *txq, unsigned n);

/**
 * Driver: fill rxq with empty packets from pool (a vhd_pktpool_create_in() pool), each offered as one writable
 * buffer starting cfg->hdr_size bytes before its data, so that the frame lands at the usual headroom. Stops when
 * the ring or the pool is full/empty.
 * @return buffers added; -EINVAL if the pool is not device-visible; -EIO if broken.
 */
int vhd_net_drv_refill(struct vhd_vq *rxq, const struct vhd_net_cfg *cfg, struct vhd_pktpool *pool,
		       struct vhd_net_stats *st);

/**
 * Driver: collect up to n received packets from rxq. The header is copied out and checked as in 5.1.6.4.3
 * (flags and gso_type must be ones the negotiated GUEST_ features allow); with MRG_RXBUF, num_buffers buffers
 * make one packet and the later ones are copied into the first (too_big if they do not fit; that packet is
 * dropped). Without MRG_RXBUF, GUEST_CSUM and any GUEST_ GSO feature the header can carry nothing the driver
 * may act on, and it is not read at all: meta is zero. Used buffers shorter than the header are dropped
 * (errors), frames under 14 bytes too (too_small). Call vhd_net_drv_refill() afterwards.
 * @return packets stored in pkts[0..ret), now owned by the caller; -EIO if broken (nothing returned).
 */
int vhd_net_drv_recv(struct vhd_vq *rxq, const struct vhd_net_cfg *cfg, struct vhd_pkt **pkts, unsigned n,
		     struct vhd_net_stats *st);

/**
 * Driver, at teardown (device gone or reset): free every packet still offered on vq (a TX or RX queue of this
 * API). Afterwards the queue must only be destroyed (see vhd_vq_reclaim()).
 * @return packets freed.
 */
unsigned vhd_net_drv_release(struct vhd_vq *vq);

/** Bytes of the virtio-net header with num_buffers (virtio 1.2, 5.1.6), the one a tap with IFF_VNET_HDR and
 * TUNSETVNETHDRSZ 12 reads and writes. */
#define VHD_NET_HDR_SIZE 12

/**
 * Metadata from a virtio-net header written by someone else (a tap, a socket): its first 10 bytes
 * (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, little-endian). Fields that mean nothing without
 * their flag or gso type become 0. Nothing is checked: the packet's consumer checks meta against what it allows.
 * @param hdr at least 10 bytes, any alignment
 * @param flag_mask the VHD_NET_META_F_* flags to keep (a peer's other flag bits are dropped)
 * @param m written. Thread-safe, never blocks.
 */
void vhd_net_hdr_to_meta(const void *hdr, uint8_t flag_mask, struct vhd_net_meta *m);

/**
 * The VHD_NET_HDR_SIZE-byte header for metadata m (flags as they are in m, num_buffers 0).
 * @param hdr VHD_NET_HDR_SIZE bytes written, any alignment. Thread-safe, never blocks.
 */
void vhd_net_meta_to_hdr(const struct vhd_net_meta *m, void *hdr);

/**
 * Complete a packet's partial checksum in software (for a port that takes no NEEDS_CSUM): the ones' complement
 * sum from csum_start to the end of the frame stored at csum_start + csum_offset; NEEDS_CSUM is then cleared.
 * @return 0 (also when the packet had no NEEDS_CSUM); -EINVAL when the checksum field lies past the frame
 *         (the packet is left alone). The caller owns p. Thread-safe, never blocks.
 */
int vhd_net_csum_complete(struct vhd_pkt *p);

#ifdef __cplusplus
}
#endif
#endif
