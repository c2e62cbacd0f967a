/* SPDX-License-Identifier: MIT */
/**
 * @file vhostd/iotlb.h
 * Device IOTLB: the I/O virtual addresses (IOVAs) a guest behind a vIOMMU hands the device, and where they live.
 *
 * With VIRTIO_F_ACCESS_PLATFORM the addresses in descriptors and rings are IOVAs. The front-end tells the back-end
 * what each IOVA range maps to with IOTLB UPDATE messages (a front-end virtual address, translated here through the
 * memory table into a host pointer, and the guest-physical address kept beside it for dirty logging), revokes them
 * with INVALIDATE, and answers a MISS the back-end sends for an IOVA it does not know. This module is the cache
 * those messages fill; vhd_iotlb_translate() is the lookup descriptors go through, in the style of
 * vhd_mem_translate().
 *
 * Rules:
 * - Entries never overlap. An update replaces the parts of older entries it overlaps (an update wholly inside an
 *   entry that already maps it the same way, with the same permission, changes nothing). Adjacent entries are
 *   merged only when their host and guest-physical addresses are contiguous too and their permissions equal.
 * - The cache holds at most max_entries entries. When an update needs a slot and none is free, the oldest entry
 *   (the one least recently named by an update, a repeated update included) is evicted. An invalidation that would split
 *   an entry in two when no slot is free drops that entry whole instead (removing more is always safe: it only
 *   causes a miss later).
 * - Every change that removes or alters a translation that was there before (invalidation, replacement, eviction,
 *   flush) bumps the generation (vhd_iotlb_generation()). A caller that keeps a translated pointer (a ring) notes
 *   the generation when it translates and translates again once it differs. Adding new translations or merging
 *   entries does not bump it.
 * - The last byte of the 64-bit space (IOVA 2^64-1) cannot be mapped: ranges are [iova, iova+size) with no wrap.
 * - Host pointers come from the memory table given to vhd_iotlb_update(); when that table changes (SET_MEM_TABLE,
 *   ADD/REM_MEM_REG) the cache must be flushed (vhd_iotlb_flush()), as on reset and disconnect.
 *
 * Threading: the cache is changed by one thread (the control thread) only while no queue that uses it is running
 * (queues paused, as for the memory table); the pause orders those changes before the next lookups. Lookups
 * (vhd_iotlb_translate() and friends) only read the cache, may run on many threads at once, each with its own hint,
 * never block and take no lock. vhd_iotlb_generation() and vhd_iotlb_stats() may be called from any thread.
 */
#ifndef VHOSTD_IOTLB_H
#define VHOSTD_IOTLB_H

#include <stdint.h>
#include <sys/uio.h>

#include "vhostd/mem.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Permissions, with the values of VHOST_ACCESS_RO/WO/RW on the wire. */
#define VHD_IOTLB_RO 1u /**< the device may read the bytes */
#define VHD_IOTLB_WO 2u /**< the device may write the bytes */
#define VHD_IOTLB_RW 3u /**< both */

/** Entries a cache holds when created with max_entries 0. */
#define VHD_IOTLB_DEFAULT_ENTRIES 2048u
/** Largest max_entries accepted. */
#define VHD_IOTLB_MAX_ENTRIES (1u << 20)

struct vhd_iotlb;

/** Counters of one cache; each is read atomically (relaxed), the set is not a snapshot. */
struct vhd_iotlb_stats {
	uint64_t entries;       /**< entries held now */
	uint64_t updates;       /**< updates accepted (including those that changed nothing) */
	uint64_t invalidations; /**< invalidations that removed at least one byte */
	uint64_t evictions;     /**< entries evicted or dropped whole for want of a slot */
	uint64_t refused;       /**< updates and invalidations refused */
};

/**
 * Create an empty cache.
 * @param max_entries most entries held at once; 0 means VHD_IOTLB_DEFAULT_ENTRIES.
 * @param out receives the cache; the caller owns it and frees it with vhd_iotlb_destroy().
 * @return 0; -EINVAL if max_entries exceeds VHD_IOTLB_MAX_ENTRIES; -ENOMEM.
 * Blocking: allocates the entry array once; nothing later allocates.
 */
int vhd_iotlb_create(unsigned max_entries, struct vhd_iotlb **out);

/** Destroy a cache. NULL is accepted. */
void vhd_iotlb_destroy(struct vhd_iotlb *iotlb);

/**
 * Map [iova, iova+size) to the front-end's virtual addresses [uaddr, uaddr+size) with permission perm (an IOTLB
 * UPDATE). uaddr is translated through mem, by user address, and must lie wholly inside one of its regions; mem
 * may be NULL (no table yet), which refuses every update.
 * @return 0; -EINVAL if size is 0 or perm is not VHD_IOTLB_RO, _WO or _RW; -EOVERFLOW if iova+size or
 *         uaddr+size wraps around 2^64; -EFAULT if [uaddr, uaddr+size) is not wholly inside one region of mem.
 *         A refused update changes nothing; vhd_iotlb_last_error() names the value.
 * Threading: control thread, queues using the cache paused.
 */
int vhd_iotlb_update(struct vhd_iotlb *iotlb, const struct vhd_mem *mem, uint64_t iova, uint64_t size, uint64_t uaddr,
		     unsigned perm);

/**
 * Remove every translation of [iova, iova+size) (an IOTLB INVALIDATE), splitting entries that straddle its ends.
 * A range whose end would wrap around 2^64 is taken to run to the end of the space (an invalidation is never
 * refused for being too large: revoking too little would leave the device a mapping the guest took back).
 * @return 1 if some byte was removed (the generation was bumped), 0 if the range held none; -EINVAL if size is 0.
 * Threading: control thread, queues using the cache paused.
 */
int vhd_iotlb_invalidate(struct vhd_iotlb *iotlb, uint64_t iova, uint64_t size);

/**
 * Drop every entry (SET_MEM_TABLE, reset, disconnect). Bumps the generation if the cache held any entry.
 * Threading: control thread, queues using the cache paused.
 */
void vhd_iotlb_flush(struct vhd_iotlb *iotlb);

/**
 * Translate the IOVA range [iova, iova+len) into host segments, one per entry it crosses.
 * @param hint per-caller index of the entry that last matched (any value is safe; start with 0); a range inside
 *        that entry costs one range compare. Each thread keeps its own so lookups never write shared memory.
 * @param perm what the device will do: VHD_IOTLB_RO to read the bytes, VHD_IOTLB_WO to write them, VHD_IOTLB_RW
 *        both. Each entry crossed must allow all of it.
 * @param iov receives up to max_iov segments.
 * @param miss_iova if not NULL, receives on -EAGAIN the first IOVA that no entry covers (to send in a MISS) and on
 *        -EACCES the first IOVA whose entry lacks the permission.
 * @return the number of segments (len 0 yields 0); -EINVAL if perm is not RO, WO or RW; -EOVERFLOW if iova+len
 *         wraps around 2^64; -EAGAIN if some byte is in no entry (a miss); -EACCES if an entry lacks the
 *         permission; -ENOBUFS if more than max_iov segments would be needed. The first byte that fails decides
 *         between -EAGAIN and -EACCES.
 * Threading: any thread, concurrently with other lookups; lock-free, never blocks.
 */
int vhd_iotlb_translate(const struct vhd_iotlb *iotlb, unsigned *hint, uint64_t iova, uint64_t len, unsigned perm,
			struct iovec *iov, unsigned max_iov, uint64_t *miss_iova);

/**
 * Host pointer for an IOVA range that one entry must cover wholly (ring parts, indirect tables).
 * @return the pointer, or NULL if len is 0, the range wraps, is not inside one entry, or that entry lacks perm.
 * Threading: as vhd_iotlb_translate().
 */
void *vhd_iotlb_to_host(const struct vhd_iotlb *iotlb, uint64_t iova, uint64_t len, unsigned perm);

/**
 * Guest-physical address of the byte at iova (for dirty logging: IOVA -> host -> GPA).
 * @return 0 and *gpa set; -EAGAIN if no entry covers iova.
 * Threading: as vhd_iotlb_translate().
 */
int vhd_iotlb_to_gpa(const struct vhd_iotlb *iotlb, uint64_t iova, uint64_t *gpa);

/** Generation: bumped by each change that removes or alters a translation. Threading: any thread. */
uint64_t vhd_iotlb_generation(const struct vhd_iotlb *iotlb);

/** Number of entries held. Threading: control thread, or any thread while the cache is not changing. */
unsigned vhd_iotlb_count(const struct vhd_iotlb *iotlb);

/** Counters (see struct vhd_iotlb_stats). Threading: any thread. */
void vhd_iotlb_stats(const struct vhd_iotlb *iotlb, struct vhd_iotlb_stats *st);

/**
 * Why the most recent refused update or invalidation was refused, naming the value; "" if none ever was.
 * @return a string owned by the cache, valid until the next change. Threading: control thread.
 */
const char *vhd_iotlb_last_error(const struct vhd_iotlb *iotlb);

#ifdef __cplusplus
}
#endif
#endif
