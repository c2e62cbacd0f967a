/* SPDX-License-Identifier: MIT */
/**
 * @file vhostd/virtq.h
 * Virtqueues, split and packed, from either side.
 *
 * A queue is created for one side and one layout; the layout is chosen once, at creation, and every burst call
 * goes straight to that layout's code. The device side takes available descriptor chains and returns used ones;
 * the driver side does the reverse. Neither side ever trusts what the other wrote in shared memory: the device
 * validates every descriptor, index and flag the driver wrote, and the driver validates every used id, length
 * and index the device wrote. A violation marks the queue broken: every later call returns -EIO, and
 * vhd_vq_error() says why. Nothing here asserts or exits on peer data.
 *
 * Threading: a queue belongs to one thread at a time; calls on different queues never share writable state.
 * Memory ordering with the peer is handled inside (acquire/release on ring indices and flags).
 */
#ifndef VHOSTD_VIRTQ_H
#define VHOSTD_VIRTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vhd_iotlb;
struct vhd_mem;
struct vhd_vq;

/** Which end of the queue this process is. */
enum vhd_vq_side {
	VHD_VQ_DEVICE, /**< consumes available buffers, produces used ones */
	VHD_VQ_DRIVER, /**< produces available buffers, consumes used ones */
};

/** Why a queue broke. Each peer misbehaviour has its own code; vhd_vq_strerror() names it. */
enum vhd_vq_error {
	VHD_VQ_OK = 0,
	VHD_VQ_E_AVAIL_IDX,      /**< split: avail->idx moved by more than the queue size */
	VHD_VQ_E_HEAD,           /**< split: avail ring entry names a descriptor beyond the table */
	VHD_VQ_E_NEXT,           /**< descriptor next field beyond the table */
	VHD_VQ_E_LOOP,           /**< descriptor chain loops */
	VHD_VQ_E_CHAIN_LEN,      /**< chain longer than the queue size */
	VHD_VQ_E_INDIRECT_NEST,  /**< indirect descriptor inside an indirect table */
	VHD_VQ_E_INDIRECT_LEN,   /**< indirect table length 0 or not a multiple of 16 */
	VHD_VQ_E_INDIRECT_FLAGS, /**< indirect not negotiated, or INDIRECT combined with NEXT */
	VHD_VQ_E_ADDR,           /**< buffer or table not wholly inside guest memory */
	VHD_VQ_E_OVERFLOW,       /**< address + length wraps, or chain length exceeds 2^32-1 */
	VHD_VQ_E_ORDER,          /**< device-readable descriptor after a device-writable one */
	VHD_VQ_E_PACKED_FLAGS,   /**< packed: inconsistent avail/used flags in a chain, or (driver) a used slot's
				      AVAIL/USED bits that fit neither our wrap counter nor what we posted */
	VHD_VQ_E_USED_IDX,       /**< driver: used index moved by more than the buffers in flight */
	VHD_VQ_E_USED_ID,        /**< driver: used id out of range or not in flight */
	VHD_VQ_E_USED_LEN,       /**< driver: used length larger than the buffer's writable part */
	VHD_VQ_E_CALLER,         /**< this process misused the API (e.g. pushed an id it never popped) */
	VHD_VQ_E_IOTLB_PERM,     /**< device: a buffer's IOVA is mapped without the access the descriptor asks
				      (a device-writable buffer in a read-only mapping, or the reverse) */
	VHD_VQ_E__COUNT
};

/** Layout offsets for a queue the caller lays out in its own memory (the driver side usually). */
struct vhd_vq_layout {
	size_t desc_off;   /**< descriptor table (split) or ring (packed) */
	size_t driver_off; /**< avail ring (split) or driver event suppression (packed) */
	size_t device_off; /**< used ring (split) or device event suppression (packed) */
	size_t size;       /**< total bytes, a multiple of 64 */
};

/** vhd_vq_config.base of a packed queue that has never run: position 0, wrap counter 1. */
#define VHD_VQ_PACKED_BASE_INIT 0x8000u

/** Queue parameters. Addresses are host pointers in this process; the rings must stay mapped. */
struct vhd_vq_config {
	enum vhd_vq_side side;
	uint16_t num;      /**< queue size: 1..32768; a power of two for split rings */
	uint64_t features; /**< negotiated bits: RING_PACKED, INDIRECT_DESC, EVENT_IDX, IN_ORDER matter here */
	void *desc;        /**< descriptor table / packed ring */
	void *driver;      /**< avail ring / driver event suppression */
	void *device;      /**< used ring / device event suppression */
	/** Device side: translates descriptor addresses. Must outlive the queue. */
	const struct vhd_mem *mem;
	/**
	 * Device side, optional (VIRTIO_F_ACCESS_PLATFORM): descriptor and indirect-table addresses are I/O virtual
	 * addresses, translated through this IOTLB instead of mem, with the access each descriptor asks (device
	 * writes need WO or RW, reads RO or RW). A chain whose translation misses stays in the ring: vhd_vq_pop()
	 * stops before it and vhd_vq_take_miss() says which IOVA to ask for. Must outlive the queue; it is changed
	 * only while no pop runs (vhostd/iotlb.h).
	 */
	const struct vhd_iotlb *iotlb;
	/**
	 * Where processing resumes (vhost-user SET_VRING_BASE). Split: the avail index (0 for a new queue).
	 * Packed: bits 0-14 the ring position, bit 15 the wrap counter; a new queue starts at
	 * VHD_VQ_PACKED_BASE_INIT because both wrap counters start at 1. The used index starts at the same value,
	 * which is what vhost-user assumes when a queue is started with nothing in flight.
	 */
	uint16_t base;
	/**
	 * Driver side, optional: memory for indirect tables, num tables of indirect_max descriptors each, and the
	 * address the device sees for its first byte. Without it, buffers are always chained directly.
	 */
	void *indirect;
	uint64_t indirect_addr;
	uint16_t indirect_max;
	/** Name used in log messages, e.g. "port0 rxq1". Copied. */
	const char *name;
};

/** One available chain, as vhd_vq_pop() returns it. */
struct vhd_vq_chain {
	uint16_t id;      /**< head index (split) or buffer id (packed); give it back in vhd_vq_used.id */
	uint16_t ndesc;   /**< ring slots the chain took; give it back in vhd_vq_used.ndesc */
	uint16_t nout;    /**< device-readable segments, iov[0..nout) */
	uint16_t nin;     /**< device-writable segments, iov[nout..nout+nin) */
	uint32_t out_len; /**< bytes readable */
	uint32_t in_len;  /**< bytes writable */
	struct iovec *iov;
	/**
	 * 0, or -ENOBUFS when the chain needed more segments than the whole iov array passed to vhd_vq_pop().
	 * Such a chain has no segments; return it with length 0 (the driver sees an empty buffer).
	 */
	int err;
};

/** One buffer to return to the driver. */
struct vhd_vq_used {
	uint16_t id;    /**< from vhd_vq_chain.id */
	uint16_t ndesc; /**< from vhd_vq_chain.ndesc */
	uint32_t len;   /**< bytes written into the writable part */
};

/** One segment of a buffer the driver adds, in the device's address space. */
struct vhd_vq_seg {
	uint64_t addr;
	uint32_t len;
};

/** Flags for vhd_vq_buf. */
#define VHD_VQ_BUF_INDIRECT 1u /**< place the segments in an indirect table (needs INDIRECT_DESC and a table) */

/** One buffer the driver adds. */
struct vhd_vq_buf {
	const struct vhd_vq_seg *segs; /**< nout readable segments then nin writable ones */
	uint16_t nout;
	uint16_t nin;
	uint32_t flags; /**< VHD_VQ_BUF_* */
	void *token;    /**< returned with the buffer by vhd_vq_get() */
};

/** A buffer the device has finished with. */
struct vhd_vq_done {
	void *token;
	uint32_t len; /**< bytes the device wrote (0 for buffers the device batched in IN_ORDER mode) */
};

/** Counters a queue keeps. Read them from the owning thread, or accept slightly stale values. */
struct vhd_vq_stats {
	uint64_t chains;         /**< chains popped (device) or buffers added (driver) */
	uint64_t used;           /**< buffers pushed (device) or collected (driver) */
	uint64_t notify;         /**< times vhd_vq_need_notify() said yes */
	uint64_t notify_skipped; /**< times it said no */
	uint64_t oversized;      /**< chains returned with err = -ENOBUFS */
	uint64_t descs;          /**< device: descriptors walked by pops (ring and indirect entries) */
	uint64_t budget_stops;   /**< device: pops that left a chain in the ring for VHD_VQ_POP_DESC_BUDGET */
	uint64_t iotlb_misses;   /**< device, with an IOTLB: pops that left a chain in the ring for an IOVA the
				      IOTLB does not map */
};

/**
 * Compute where the parts of a queue go in one contiguous block, each 64-byte aligned.
 * @return 0, or -EINVAL for a bad size (0, above 32768, or not a power of two for split).
 */
int vhd_vq_layout(bool packed, uint16_t num, struct vhd_vq_layout *out);

/**
 * Create a queue. The ring memory must be laid out per cfg and, for a driver, zeroed beforehand.
 * @param out receives the queue; the caller frees it with vhd_vq_destroy().
 * @return 0; -EINVAL for a bad size or a missing pointer (mem for a device, rings for either); -ENOMEM.
 */
int vhd_vq_create(const struct vhd_vq_config *cfg, struct vhd_vq **out);

/** Free a queue. The rings are not touched. NULL is accepted. */
void vhd_vq_destroy(struct vhd_vq *vq);

/**
 * Most descriptors one vhd_vq_pop() walks (descriptors in the ring and entries of indirect tables, one each), so
 * that a driver posting chains of thousands of tiny descriptors costs the thread that polls it, and the other
 * queues that thread serves, a bounded amount per call: 64 chains of 32 descriptors fit, far more than network
 * drivers post (Linux: up to 19 per packet).
 */
#define VHD_VQ_POP_DESC_BUDGET 2048u

/**
 * Device: take up to n available chains.
 *
 * Each chain's segments are placed in iov[] (nout readable then nin writable). A chain that does not fit in
 * what is left of iov[] stays in the ring for the next call, unless it is the first, in which case it is returned
 * with err = -ENOBUFS. Likewise a chain that would take the call past VHD_VQ_POP_DESC_BUDGET descriptors stays in
 * the ring (counted in budget_stops), unless it is the first, which is walked whole (up to the queue size): every
 * call makes progress. Every chain returned must eventually be given back with vhd_vq_push().
 * @return chains taken (0 when none are available); -EIO if the queue is or becomes broken.
 */
int vhd_vq_pop(struct vhd_vq *vq, struct vhd_vq_chain *chains, unsigned n, struct iovec *iov, unsigned niov);

/**
 * Device: give n chains back to the driver, in the order given. With IN_ORDER negotiated the chains must be
 * given back in the order they were popped; a burst whose lengths are all 0 is then published as one used entry.
 * The ids are not matched against what was popped (that would cost a lookup per chain); what is checked is
 * that a split id is inside the queue, a packed ndesc is 1..num, and no more chains (and, packed, ring slots)
 * are given back than are out.
 * @return n; -EIO if the queue is broken; -EINVAL (and the queue broken with VHD_VQ_E_CALLER) when one of those
 *         checks fails.
 */
int vhd_vq_push(struct vhd_vq *vq, const struct vhd_vq_used *used, unsigned n);

/**
 * Device: put back the n chains popped last (and not pushed), as if they had never been popped: the next
 * vhd_vq_pop() returns them again and the driver sees nothing. For a packet that turned out not to fit in what
 * the ring had left, so its buffers need not be returned empty. Only id and ndesc of each entry are used.
 * @return 0; -EIO if broken; -EINVAL (and the queue broken with VHD_VQ_E_CALLER) for more chains or ring slots
 *         than are out.
 */
int vhd_vq_unpop(struct vhd_vq *vq, const struct vhd_vq_used *chains, unsigned n);

/**
 * Device: does the driver want an interrupt for what was pushed since the last call? Honours
 * VIRTQ_AVAIL_F_NO_INTERRUPT, used_event (EVENT_IDX) and the packed driver event suppression area.
 * Call once per burst, after vhd_vq_push(). Driver: the same question for a kick after vhd_vq_add().
 */
bool vhd_vq_need_notify(struct vhd_vq *vq);

/**
 * Ask the peer to notify us again (driver: device interrupts; device: driver kicks) before going to sleep.
 * @return true if work arrived meanwhile: process it instead of sleeping.
 */
bool vhd_vq_enable_notify(struct vhd_vq *vq);

/** Tell the peer not to notify us: we are polling. */
void vhd_vq_disable_notify(struct vhd_vq *vq);

/**
 * Driver: make up to n buffers available. Buffers are taken in order until one does not fit (not enough free
 * descriptors); the rest are left to the caller.
 * @return buffers added; -EIO if broken; -EINVAL if bufs[0] could never fit (more segments than the queue has,
 *         or no segments at all).
 */
int vhd_vq_add(struct vhd_vq *vq, const struct vhd_vq_buf *bufs, unsigned n);

/**
 * Driver: collect up to n buffers the device has used. Every used id, length and index is checked against what
 * is in flight (id in range and in flight, length within the buffer's writable bytes, index or packed flags
 * moving by no more than was posted); a violation breaks the queue (vhd_vq_error(), logged once). Buffers still
 * in flight then stay with the queue for vhd_vq_reclaim().
 * @return buffers collected, now the caller's (when the queue breaks part-way through the burst, those collected
 *         before the bad entry: the next call returns -EIO); -EIO if the queue is or becomes broken before any
 *         was collected.
 */
int vhd_vq_get(struct vhd_vq *vq, struct vhd_vq_done *done, unsigned n);

/**
 * Driver: take back the buffers still in flight once the device is gone (disconnect, reset), so their owner
 * can free them. Tokens come back with len 0. Works on a broken queue too; afterwards the queue must only be
 * destroyed.
 * @return buffers returned; call again while it returns n.
 */
int vhd_vq_reclaim(struct vhd_vq *vq, struct vhd_vq_done *done, unsigned n);

/** Driver: buffers added and not yet collected. */
unsigned vhd_vq_inflight(const struct vhd_vq *vq);

/**
 * Driver: how many one-segment buffers vhd_vq_add() would take right now (0 on a device-side queue; a
 * broken queue still reports its free slots, and vhd_vq_add() reports the breakage). Lets a caller size its allocation to the ring instead of allocating a burst and freeing what did
 * not fit. Same thread as vhd_vq_add().
 */
unsigned vhd_vq_room(const struct vhd_vq *vq);

/**
 * Where the next available chain will be read from (device) or written to (driver), in the form of
 * vhd_vq_config.base: what vhost-user GET_VRING_BASE reports.
 */
uint16_t vhd_vq_base(const struct vhd_vq *vq);

/**
 * Where the next used entry will be written (device) or read (driver), in the same form as vhd_vq_base().
 * Equal to vhd_vq_base() on a device with nothing popped and not pushed.
 */
uint16_t vhd_vq_used_base(const struct vhd_vq *vq);

/** An IOVA the IOTLB lacks and the access wanted (VHD_IOTLB_RO or _WO), for a MISS request. */
struct vhd_vq_miss {
	uint64_t iova;
	unsigned perm;
};

/**
 * Device with an IOTLB: did a pop since the last call stop at a chain whose translation missed? If so, out[0] is
 * the first unmapped IOVA of that chain, followed by those of the available descriptors after it that would miss
 * too (a read-only look ahead at most max-1 of them, one entry per IOVA page, nothing consumed or validated: so
 * that one round trip to the front-end fetches a burst's translations, not one chain's), and the record is
 * cleared. The chain is still in the ring; the next pop tries it again.
 * @return entries written to out (0 if no pop missed). Same thread as vhd_vq_pop(); never blocks.
 */
unsigned vhd_vq_take_misses(struct vhd_vq *vq, struct vhd_vq_miss *out, unsigned max);

/**
 * Device: move the queue onto new host pointers for the same rings (their IOVAs were translated again after an
 * IOTLB change). Positions, counters and the chains in flight are kept. Alignment is checked as at creation.
 * @return 0; -EINVAL for a NULL or misaligned pointer (nothing changed).
 * Threading: while no other call on the queue runs (the owner, or the control thread with the queue paused).
 */
int vhd_vq_set_rings(struct vhd_vq *vq, void *desc, void *driver, void *device);

struct vhd_dlog;

/**
 * Device: log this queue's writes into guest memory in log (vhostd/dlog.h), or stop logging (log NULL).
 * While logging, each vhd_vq_push() sets the bits of the used ring entries and index it wrote (split) or the
 * descriptors it wrote back (packed) when ring is true, and of the buffer bytes given to vhd_vq_log_chain() since
 * the last push; enabling or disabling notifications logs the fields that writes. Bits are gathered per burst
 * and set once, after the data, when the push returns. Off costs one predictable branch per push.
 * @return 0; -EFAULT when the device-written ring is not in the memory table (its writes could not be logged:
 *         logging stays off); -EINVAL for a driver-side queue.
 * Threading: while no other call on the queue runs (the owner, or the control thread with the queue paused).
 */
int vhd_vq_set_log(struct vhd_vq *vq, struct vhd_dlog *log, bool ring);

/** Device: whether vhd_vq_set_log() turned logging on (same thread as the data path calls; once per burst). */
bool vhd_vq_logging(const struct vhd_vq *vq);

/**
 * Device, while logging: the first len bytes of chain c's writable segments were written (received bytes), to
 * be logged by the next vhd_vq_push(). Pages are logged at their guest-physical addresses, with or without an
 * IOTLB; zero-length descriptors have no segments and log nothing. Call it before c's iov[] is reused.
 */
void vhd_vq_log_chain(struct vhd_vq *vq, const struct vhd_vq_chain *c, uint32_t len);

/**
 * Bytes one queue's region of a vhost-user inflight area takes (PROTOCOL_F_INFLIGHT_SHMFD, vhost-user.rst "Inflight
 * I/O tracking"): the region header and one entry per descriptor, rounded up to 64 bytes so that regions stay on
 * their own cache lines. 0 when num is not a valid size for the layout. Pure; any thread.
 */
size_t vhd_vq_inflight_size(bool packed, uint32_t num);

/**
 * Device: track the chains this queue takes in region (len bytes, shared with the front-end, which keeps it across
 * back-end restarts), in the queue's layout. Each vhd_vq_pop() records the chains it takes and each vhd_vq_push()
 * clears them, in the order the protocol needs to survive being killed between any two stores.
 * A region whose version is 0 is initialised for this queue. One written before (a restarted back-end) is
 * recovered first. Split: a used batch that reached the ring before its heads were cleared is cleared now, the ring
 * positions are taken from the used ring (used index, and avail position = used index + heads still in flight).
 * Packed: the last update is committed if its used descriptors were published, else rolled back; the used
 * position is the region's, the avail position that plus the slots of the chains in flight, and each chain is
 * taken again from the region's copy of its descriptors. Either way the positions override the base the queue was
 * created with, and the chains in flight are resubmitted: the next pops return them, oldest first, before any new
 * chain. The region is hostile (the front-end writes it): every head, link, id and count is checked. Packed
 * buffer ids must be below the queue size while tracked (a pop of another breaks the queue).
 * @param why receives, on failure, a static string naming what was wrong with the region.
 * @return 0; -EINVAL for a driver-side queue or a bad region (len below vhd_vq_inflight_size(), version,
 *         desc_num other than the queue size, batch longer than the queue, a link, head, position or id out of
 *         range, a loop: nothing the queue uses changed); -ENOMEM.
 * Threading: while no other call on the queue runs (before the data path uses it). The region must stay mapped
 * until the queue is destroyed or vhd_vq_set_inflight(vq, NULL, 0, NULL) detaches it.
 */
int vhd_vq_set_inflight(struct vhd_vq *vq, void *region, size_t len, const char **why);

/** Device: chains the last vhd_vq_set_inflight() found in flight that no pop has returned yet. Same thread as
 * vhd_vq_pop(). */
unsigned vhd_vq_resubmit_pending(const struct vhd_vq *vq);

/** Why the queue broke, or VHD_VQ_OK. */
enum vhd_vq_error vhd_vq_error(const struct vhd_vq *vq);

/** Human-readable detail of the break, naming the index and value at fault ("" if not broken). */
const char *vhd_vq_error_detail(const struct vhd_vq *vq);

/** Short constant name for an error code. */
const char *vhd_vq_strerror(enum vhd_vq_error err);

/** Counters; see struct vhd_vq_stats. */
void vhd_vq_get_stats(const struct vhd_vq *vq, struct vhd_vq_stats *out);

/**
 * Device: descriptors the pops of this queue have walked so far (vhd_vq_stats.descs), without copying the rest:
 * for a caller that pops several times per call of its own and bounds the whole (vhd_net_dev_enqueue()).
 * Same thread as vhd_vq_pop(); does not block.
 */
uint64_t vhd_vq_descs_walked(const struct vhd_vq *vq);

/** Device: chains popped so far (vhd_vq_stats.chains) without copying the rest. Same thread as vhd_vq_pop(). */
uint64_t vhd_vq_chains_popped(const struct vhd_vq *vq);

#ifdef __cplusplus
}
#endif
#endif
