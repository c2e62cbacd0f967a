/* SPDX-License-Identifier: MIT */
/* Virtqueue internals shared by virtq.c (common entry points), split.c and packed.c. */
#ifndef VHD_VIRTQ_IMPL_H
#define VHD_VIRTQ_IMPL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mem_impl.h"
#include "spec/endian.h"
#include "spec/vhost_user.h"
#include "spec/virtio_ring.h"
#include "vhostd/iotlb.h"
#include "vhostd/virtq.h"

#include "util/compiler.h"

/*
 * Shared-memory accessors. Everything the peer can write is read exactly once through these (no compiler
 * re-fetch after validation) and converted from little-endian on the spot.
 */
#define RD16(p) vhd_le16(__atomic_load_n((p), __ATOMIC_RELAXED))
#define RD32(p) vhd_le32(__atomic_load_n((p), __ATOMIC_RELAXED))
#define RD64(p) vhd_le64(__atomic_load_n((p), __ATOMIC_RELAXED))
#define WR16(p, v) __atomic_store_n((p), vhd_cpu_to_le16(v), __ATOMIC_RELAXED)
#define WR32(p, v) __atomic_store_n((p), vhd_cpu_to_le32(v), __ATOMIC_RELAXED)
#define WR64(p, v) __atomic_store_n((p), vhd_cpu_to_le64(v), __ATOMIC_RELAXED)
#define RD16_ACQ(p) vhd_le16(__atomic_load_n((p), __ATOMIC_ACQUIRE))
#define WR16_REL(p, v) __atomic_store_n((p), vhd_cpu_to_le16(v), __ATOMIC_RELEASE)
/* Store-then-load ordering across the two sides' notification fields; see each use for its pair. */
#define FULL_FENCE() __atomic_thread_fence(__ATOMIC_SEQ_CST)

struct vhd_vq;

/* 64-page words of dirty bits one burst gathers before setting them (more flush early). */
#define VHDI_LOG_CACHE 16

/* The mapped log (dlog.c). */
struct vhd_dlog {
	uint8_t *bits;
	uint64_t size;
	void *map;
	size_t map_len;
	struct vhdi_fault fault;
	_Atomic uint64_t beyond;
	bool warned; /* control thread */
};

/* After a push that moved the used position from (old, old_wrap): log what it wrote, then set every gathered
 * bit. */
void vhdi_log_push(struct vhd_vq *vq, uint16_t old, bool old_wrap);
/* Where the rings are logged (ring: the front-end asked for ring logging): -EFAULT when they are not in the
 * memory table (not logged then). */
int vhdi_log_rings(struct vhd_vq *vq, bool ring);
/* Set the gathered bits. */
void vhdi_log_flush(struct vhd_vq *vq);
/* The device's notification fields were written (enable/disable_notify): log them and set the bits. */
void vhdi_log_notify(struct vhd_vq *vq);

/* Inflight tracking (inflight.c): pop and push with the region kept, and the unpop's bookkeeping (returns how
 * many of the n chains came from the ring rather than the resubmission list). */
int vhdi_infl_pop(struct vhd_vq *vq, struct vhd_vq_chain *chains, unsigned n, struct iovec *iov, unsigned niov);
int vhdi_infl_push(struct vhd_vq *vq, const struct vhd_vq_used *used, unsigned n);
unsigned vhdi_infl_unpop(struct vhd_vq *vq, const struct vhd_vq_used *chains, unsigned n);
/* Split: take the chain at head (a resubmission) as chain i of a burst into iov[niov]: 1 taken (*segs segments),
 * 0 it does not fit what is left of iov[] (or missed in the IOTLB), or -EIO after breaking the queue. */
int vhdi_split_pop_head(struct vhd_vq *vq, uint16_t head, struct vhd_vq_chain *c, struct iovec *iov, unsigned niov,
			unsigned i, unsigned *segs);
/* Packed: take the chain recorded in an inflight region from entry head (a resubmission) as chain i of a burst, as
 * vhdi_split_pop_head() does; *id is the buffer id its last entry names. */
int vhdi_packed_pop_saved(struct vhd_vq *vq, const struct vhost_user_inflight_desc_packed *d, uint16_t head,
			  struct vhd_vq_chain *c, struct iovec *iov, unsigned niov, unsigned i, unsigned *segs);
/* The push itself, with dirty logging when on. */
int vhdi_push_logged(struct vhd_vq *vq, const struct vhd_vq_used *used, unsigned n);

/* A descriptor as the look ahead read it: the driver's values, unchecked. */
struct vhd_vq_seg_view {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
};

/* Per-layout, per-side implementation, chosen once in vhd_vq_create(). The dispatch in virtq.c checks the side,
 * so a device's ops leave add/get NULL and a driver's leave pop/push NULL. */
struct vhd_vq_ops {
	int (*pop)(struct vhd_vq *, struct vhd_vq_chain *, unsigned, struct iovec *, unsigned);
	int (*push)(struct vhd_vq *, const struct vhd_vq_used *, unsigned);
	int (*add)(struct vhd_vq *, const struct vhd_vq_buf *, unsigned);
	int (*get)(struct vhd_vq *, struct vhd_vq_done *, unsigned);
	bool (*need_notify)(struct vhd_vq *);
	bool (*enable_notify)(struct vhd_vq *);
	void (*disable_notify)(struct vhd_vq *);
	/* Device: up to max descriptors available from the avail position on, read without consuming anything
	 * (split: each chain's first few; packed: consecutive slots), for vhd_vq_take_misses()' look ahead. */
	unsigned (*ahead)(const struct vhd_vq *, struct vhd_vq_seg_view *, unsigned);
};

/* Driver-side bookkeeping for one buffer in flight, indexed by head (split) or buffer id (packed). */
struct vhd_vq_drv_slot {
	void *token;
	uint32_t in_len; /* writable bytes, bound for the used length */
	uint16_t ndesc;  /* descriptors the buffer took in the ring */
	uint16_t last;   /* split: last descriptor of the chain, to splice it back onto the free list */
	bool busy;
};

struct vhd_vq {
	const struct vhd_vq_ops *ops;
	enum vhd_vq_side side;
	uint16_t num;
	uint16_t mask; /* split only: num - 1 */
	bool is_packed, event_idx, indirect, in_order;
	enum vhd_vq_error err;

	union {
		struct {
			struct virtq_desc *desc;
			struct virtq_avail *avail;
			struct virtq_used *used;
		} split;
		struct {
			struct pvirtq_desc *desc;
			struct pvirtq_event_suppress *driver;
			struct pvirtq_event_suppress *device;
		} packed;
	};

	/* ---- device side ---- */
	const struct vhd_mem *mem;
	/* What the inlined fast paths translate through, with mem_hint: mem itself, or with an IOTLB a window, a
	 * table of at most one region holding the IOTLB entry last hit (its IOVA range as the guest range), one
	 * per direction: xmem_dir[0] holds it while the entry may be read, xmem_dir[2] while it may be written,
	 * else none (vhdi_vq_window()). So a fast path picks its table by the descriptor's WRITE flag and never
	 * checks a permission itself. split_pop() keeps one region in locals: xmem (whichever window holds the
	 * entry) with xdeny/xflip, the descriptor flags that send a chain to the general walk (NEXT, INDIRECT,
	 * and WRITE when the entry lacks one of the two permissions) after xflip is applied (WRITE for a
	 * write-only entry, so a readable descriptor is denied). mem_hint is 0 with an IOTLB, and nothing but the
	 * fast paths looks at the windows: every other lookup of such a queue goes through vhd_iotlb_translate(). */
	const struct vhd_mem *xmem;
	const struct vhd_mem *xmem_dir[3]; /* indexed by a descriptor's flags & VIRTQ_DESC_F_WRITE: 0 or 2 */
	const struct vhd_mem *xmem_rw;     /* the window only while its entry is read/write, else an empty one */
	uint16_t xdeny, xflip;
	unsigned mem_hint;
	/* ACCESS_PLATFORM: descriptors translate through this instead of mem (NULL: they do not). */
	const struct vhd_iotlb *iotlb;
	unsigned iotlb_hint;
	struct vhd_mem *window; /* with an IOTLB: the two windows (read, write), owned */
	/* A pop stopped at a chain whose IOVA miss_iova the IOTLB lacks (vhd_vq_take_miss()). */
	bool missed;
	uint8_t miss_perm;
	uint64_t miss_iova;
	/* Split: free-running indices. Packed: ring positions plus wrap counters. */
	uint16_t last_avail;
	/* Split: avail->idx as last read. Entries up to it are published, so a pop that needs no more than that
	 * does not read the index again: the line stays with the driver's core, whose next store to it is then
	 * not a miss either (as Linux vhost keeps avail_idx). */
	uint16_t avail_seen;
	uint16_t used_idx;
	bool avail_wrap;
	bool used_wrap;
	/* Split: the last push found every used entry holding what it had to write (see split_push()). */
	bool used_same;
	/* Split: used index at the last notify check. Packed: ring slots published since then. */
	uint16_t notify_old;
	uint32_t notify_pending;
	/* Dirty logging (dlog.c), NULL when off. log_ring: the guest address of the ring the device writes (split:
	 * used ring; packed: descriptor ring) and log_dev of the device area (packed), or UINT64_MAX when not
	 * logged. Bits to set are gathered in log_word/log_bits (page / 64, bit mask) and set at the push. */
	struct vhd_dlog *log;
	uint64_t log_ring, log_dev;
	unsigned log_hint, log_n;
	uint64_t log_word[VHDI_LOG_CACHE], log_bits[VHDI_LOG_CACHE];
	/* Inflight tracking (inflight.c), NULL when off. resub: heads recovered in flight, in counter order, the
	 * first resub_pos of them returned again; last_ring: chains the last pop took from the ring (the rest of
	 * it came from resub), for vhd_vq_unpop(). Split: infl_batch_head is the region's last_batch_head. Packed:
	 * infl_free is the region's free_head, and infl_ent[id] the region entry of the chain with buffer id id in
	 * flight (INFL_NONE when none is). */
	void *infl;
	uint64_t infl_counter;
	uint16_t infl_batch_head;
	uint16_t infl_free;
	uint16_t *infl_ent;
	uint16_t *resub;
	uint16_t resub_n, resub_pos;
	uint16_t last_ring;
	/* Indirect tables that are misaligned or straddle regions are copied here (num entries). */
	struct virtq_desc *ind_bounce;

	/* ---- driver side ---- */
	struct vhd_vq_drv_slot *slots;
	uint16_t *free_next; /* split: descriptor free list links; packed: free buffer-id stack links */
	uint16_t free_head;
	uint16_t free_tail;  /* split: last descriptor of the free list (valid while num_free > 0) */
	uint16_t num_free;   /* split: free descriptors; packed: free ring slots */
	uint16_t ids_free;   /* packed: free buffer ids */
	uint16_t next_desc;  /* split IN_ORDER: next descriptor to use */
	uint16_t inflight;   /* driver: buffers added, not collected; device: chains popped, not pushed */
	uint32_t dev_slots;  /* device, packed: ring slots popped and not yet pushed back */
	/* Driver, IN_ORDER: buffers a batched used entry completed that the caller has not collected yet. */
	uint16_t ino_pending;
	uint32_t ino_len;
	/* IN_ORDER: ids in the order they were made available, to complete batched used entries. */
	uint16_t *fifo;
	uint16_t fifo_head, fifo_count;
	uint8_t *ind_base;
	uint64_t ind_addr;
	uint16_t ind_max;

	struct vhd_vq_stats stats;
	char name[32];
	char detail[192];
};

/* Mark the queue broken (first reason wins), log it once, and return -EIO for the caller to pass up. */
int vhdi_vq_break(struct vhd_vq *vq, enum vhd_vq_error err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), cold));

/*
 * Driver get, after err (a vhdi_vq_break() result) broke the queue part-way through a burst: the got buffers
 * already collected are the caller's now (their slots are free, vhd_vq_reclaim() would not find them), so they
 * are returned; the next call reports the break. -EIO only when nothing was collected.
 */
static inline int vhdi_get_broken(unsigned got, int err)
{
	return got ? (int)got : err;
}

/* Segment accumulator for one chain being parsed on the device side. */
struct vhd_chain_acc {
	struct iovec *iov;
	unsigned n, max;
	uint16_t nout, nin;
	uint64_t out_len, in_len;
	/* Ran out of iov entries: the rest of the chain is still walked and checked, but not mapped. */
	bool full;
	/* A writable descriptor was seen (even an empty one): no readable one may follow. */
	bool seen_write;
	/* Descriptors walked into this chain, and how many it may take before it is left for the next pop. */
	uint32_t walked, walk_max;
};

/* vhd_chain_add() and the walks: the chain would pass what is left of the pop's descriptor budget. */
#define VHDI_WALK_DEFER 1
/* ...or an address of the chain misses in the IOTLB (recorded in vq->miss_*): the chain stays in the ring. */
#define VHDI_WALK_MISS 2

/*
 * The pop's descriptor budget (VHD_VQ_POP_DESC_BUDGET) for chain i of the burst, spent descriptors walked
 * already: the first chain of a call may take the queue size (the walk's own limit), the others what is left.
 */
static inline uint32_t vhdi_walk_allowance(unsigned i, uint32_t spent)
{
	if (i == 0)
		return UINT32_MAX;
	return spent < VHD_VQ_POP_DESC_BUDGET ? VHD_VQ_POP_DESC_BUDGET - spent : 0;
}

/* Whether an indirect table of ents entries fits what the chain may still walk (checked before mapping it). */
static inline bool vhdi_walk_fits(const struct vhd_chain_acc *acc, uint32_t ents)
{
	return ents <= acc->walk_max - acc->walked;
}

/* Break the queue for a failed translation of a buffer (r from vhd_mem_translate()). Returns -EIO. */
int vhdi_xlate_fail(struct vhd_vq *vq, int r, uint64_t addr, uint32_t len) __attribute__((cold));

/*
 * Check, without mapping, that a buffer lies wholly in guest memory: for the part of a chain that no longer fits
 * in the caller's iov[], which is not mapped but must be as valid as the rest. A range takes at most one segment
 * per region, so VHD_MEM_MAX_REGIONS entries always suffice. Returns 0, or -EIO after breaking the queue.
 */
static __attribute__((noinline, cold, unused)) int vhd_chain_check(struct vhd_vq *vq, uint64_t addr, uint32_t len)
{
	struct iovec tmp[VHD_MEM_MAX_REGIONS];
	int r = vhd_mem_translate(vq->mem, &vq->mem_hint, addr, len, tmp, VHD_MEM_MAX_REGIONS);
	return r < 0 ? vhdi_xlate_fail(vq, r, addr, len) : 0;
}

/* The descriptor flags a window of an entry with permission perm sends to the general walk, once the flags are
 * xor'ed with vhdi_window_flip(perm): chains, tables, and the direction perm does not allow. */
static inline uint16_t vhdi_window_deny(unsigned perm)
{
	return VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT | (perm == VHD_IOTLB_RW ? 0 : VIRTQ_DESC_F_WRITE);
}

static inline uint16_t vhdi_window_flip(unsigned perm)
{
	return perm == VHD_IOTLB_WO ? VIRTQ_DESC_F_WRITE : 0;
}

/*
 * Point a queue's IOTLB windows at the entry its hint names, each as the entry's permission allows, or at
 * nothing. At the start of every pop, so that a translation never outlives the entry it came from: the IOTLB
 * changes only between bursts (the queue paused), never during a pop. One call per burst; within it the slow
 * path moves the windows along.
 */
static inline void vhdi_vq_window(struct vhd_vq *vq)
{
	struct vhd_mem *w = vq->window;
	unsigned perm = vhdi_iotlb_window(vq->iotlb, vq->iotlb_hint, &w[0].r[0]);
	w[1].r[0] = w[0].r[0];
	w[0].nregions = perm & VHD_IOTLB_RO ? 1 : 0;
	w[1].nregions = perm & VHD_IOTLB_WO ? 1 : 0;
	vq->xmem = perm & VHD_IOTLB_RO ? &w[0] : &w[1];
	vq->xmem_rw = perm == VHD_IOTLB_WO ? &w[0] : &w[1]; /* the other one, empty, unless read/write */
	vq->xdeny = vhdi_window_deny(perm);
	vq->xflip = vhdi_window_flip(perm);
}

/*
 * vhd_chain_add() for a queue with an IOTLB (out of line: the hot paths of queues without one never come here).
 * Returns 0, VHDI_WALK_MISS (a miss, recorded), or -EIO after breaking the queue.
 */
int vhdi_chain_add_iotlb(struct vhd_vq *vq, struct vhd_chain_acc *acc, uint64_t addr, uint32_t len, bool write)
	__attribute__((noinline));

/* A walk that met a NULL indirect table: VHDI_WALK_MISS when it missed in the IOTLB, else -EIO (broken). */
static inline int vhdi_indirect_fail(const struct vhd_vq *vq)
{
	return vq->err ? -EIO : VHDI_WALK_MISS;
}

/*
 * Translate one descriptor's buffer and append its segments. Returns 0, or -EIO after breaking the queue
 * (address outside memory, overflow, readable after writable). Running out of iov entries is not the driver's
 * fault: it sets acc->full and returns 0. VHDI_WALK_DEFER, having added nothing: the chain has walked all it may.
 */
static inline int vhd_chain_add(struct vhd_vq *vq, struct vhd_chain_acc *acc, uint64_t addr, uint32_t len,
				bool write)
{
	if (unlikely(acc->walked >= acc->walk_max))
		return VHDI_WALK_DEFER;
	acc->walked++;
	if (unlikely(!write && acc->seen_write))
		return vhdi_vq_break(vq, VHD_VQ_E_ORDER, "device-readable buffer at 0x%llx after a writable one",
				    (unsigned long long)addr);
	if (write) {
		acc->seen_write = true;
		acc->in_len += len;
	} else {
		acc->out_len += len;
	}
	/* 2^32 bytes is the spec's limit for a chain; sums of 16-bit-many 32-bit lengths cannot wrap 64 bits. */
	if (unlikely(acc->in_len + acc->out_len > UINT32_MAX))
		return vhdi_vq_break(vq, VHD_VQ_E_OVERFLOW, "chain longer than 4 GiB");
	if (len == 0)
		return 0;
	if (unlikely(acc->full))
		return unlikely(vq->iotlb != NULL) ? vhdi_chain_add_iotlb(vq, acc, addr, len, write)
						   : vhd_chain_check(vq, addr, len);
	unsigned added;
	/* With an IOTLB, the window of this direction: its entry has the permission needed. */
	void *p = vhd_mem_xlate_hint(vq->xmem_dir[write ? VIRTQ_DESC_F_WRITE : 0], vq->mem_hint, addr, len);
	if (likely(p != NULL)) {
		if (unlikely(acc->n >= acc->max)) {
			acc->full = true;
			return 0;
		}
		acc->iov[acc->n].iov_base = p;
		acc->iov[acc->n].iov_len = len;
		added = 1;
	} else if (unlikely(vq->iotlb != NULL)) {
		return vhdi_chain_add_iotlb(vq, acc, addr, len, write);
	} else {
		int r = vhd_mem_translate(vq->mem, &vq->mem_hint, addr, len, acc->iov + acc->n, acc->max - acc->n);
		if (r == -ENOBUFS) {
			acc->full = true;
			return vhd_chain_check(vq, addr, len);
		}
		if (r < 0)
			return vhdi_xlate_fail(vq, r, addr, len);
		added = (unsigned)r;
	}
	acc->n += added;
	/* Segment counts fit: n never exceeds max, which vhd_vq_pop() caps at UINT16_MAX. */
	if (write)
		acc->nin = (uint16_t)(acc->nin + added);
	else
		acc->nout = (uint16_t)(acc->nout + added);
	return 0;
}

/*
 * Map an indirect table of len bytes at addr for reading. Returns a pointer to entries (in guest memory when
 * it is one aligned contiguous piece, else copied to the bounce buffer), or NULL after breaking the queue.
 */
const struct virtq_desc *vhdi_vq_map_indirect(struct vhd_vq *vq, uint64_t addr, uint32_t len, unsigned prior);

/* Start accumulating a new chain at iov[start], which may walk walk_max descriptors (vhdi_walk_allowance()). */
static inline void vhd_chain_begin(struct vhd_chain_acc *acc, struct iovec *iov, unsigned start, unsigned niov,
				   uint32_t walk_max)
{
	acc->iov = iov + start;
	acc->n = 0;
	acc->max = niov - start;
	acc->nout = acc->nin = 0;
	acc->out_len = acc->in_len = 0;
	acc->full = false;
	acc->seen_write = false;
	acc->walked = 0;
	acc->walk_max = walk_max;
}

/*
 * Finish a parsed chain. A chain that ran out of iov entries stays in the ring (returns false) unless it is the
 * first of the burst, which no larger call could fit either: it is returned with err = -ENOBUFS.
 */
static inline bool vhd_chain_finish(struct vhd_vq *vq, struct vhd_vq_chain *c, const struct vhd_chain_acc *acc,
				    unsigned index_in_burst)
{
	if (likely(!acc->full)) {
		c->nout = acc->nout;
		c->nin = acc->nin;
		c->out_len = (uint32_t)acc->out_len;
		c->in_len = (uint32_t)acc->in_len;
		c->iov = acc->iov;
		c->err = 0;
		return true;
	}
	if (index_in_burst > 0)
		return false;
	c->nout = c->nin = 0;
	c->out_len = c->in_len = 0;
	c->iov = acc->iov;
	c->err = -ENOBUFS;
	vq->stats.oversized++;
	return true;
}

/*
 * After the general walk (result r) of chain i of a pop into acc: the budget's bookkeeping in *extra (descriptors
 * walked beyond one per chain taken), and the chain finished into c. Returns true when c is taken (the caller
 * fills in id and ndesc), false when the pop stops before it: over the budget (counted) or out of iov entries.
 */
static inline bool vhdi_walk_done(struct vhd_vq *vq, int r, const struct vhd_chain_acc *acc, struct vhd_vq_chain *c,
				  unsigned i, uint32_t *extra)
{
	*extra += acc->walked;
	if (unlikely(r == VHDI_WALK_MISS)) {
		vq->stats.iotlb_misses++;
		return false;
	}
	if (unlikely(r == VHDI_WALK_DEFER)) {
		vq->stats.budget_stops++;
		return false;
	}
	if (!vhd_chain_finish(vq, c, acc, i))
		return false;
	--*extra; /* counted in i */
	return true;
}

/* After chain i was taken: how many chains the pop asking for n may take in all. Every later chain walks one
 * descriptor at least, so no more of them than the budget has left; the fast path needs no test of its own. */
static inline unsigned vhdi_walk_cap(unsigned i, unsigned n, uint32_t extra)
{
	uint32_t left = vhdi_walk_allowance(1, i + 1 + extra);
	return n - i - 1 > left ? i + 1 + left : n;
}

/*
 * Fill c as a chain of one plain descriptor over *iov: two 8-byte stores for id/ndesc/nout/nin and the two
 * lengths instead of six narrow ones and their selects (16 instructions per chain in callgrind).
 */
_Static_assert(offsetof(struct vhd_vq_chain, ndesc) == 2 && offsetof(struct vhd_vq_chain, nout) == 4 &&
		       offsetof(struct vhd_vq_chain, nin) == 6 && offsetof(struct vhd_vq_chain, out_len) == 8 &&
		       offsetof(struct vhd_vq_chain, in_len) == 12,
	       "vhdi_chain_plain() writes these fields as two 64-bit words");
static inline void vhdi_chain_plain(struct vhd_vq_chain *c, uint16_t id, bool w, uint32_t len, struct iovec *iov)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	uint64_t ids = id | (uint64_t)1 << 16 | (w ? (uint64_t)1 << 48 : (uint64_t)1 << 32);
	uint64_t lens = w ? (uint64_t)len << 32 : len;
	memcpy(c, &ids, 8);
	memcpy(&c->out_len, &lens, 8);
#else
	*c = (struct vhd_vq_chain){.id = id, .ndesc = 1, .nout = !w, .nin = w, .out_len = w ? 0 : len,
				   .in_len = w ? len : 0};
#endif
	c->iov = iov;
	c->err = 0;
}

/* The hinted memory region, copied for a pop's fast loop: chains of one plain descriptor inside it are mapped
 * there directly. With an IOTLB it is the read/write window (vhdi_vq_window(), refreshed at the start of the
 * pop), which may be empty (size 0): then, as with no hint, every chain takes the general walk. */
struct vhdi_hint_region {
	uint64_t gpa, size;
	uint8_t *host;
};

static inline struct vhdi_hint_region vhdi_hint_region(const struct vhd_vq *vq)
{
	/* xmem_rw: the fast loops using this map either direction without looking at permissions, so an IOTLB
	 * window serves them only while its entry is read/write (else it is empty). */
	if (vq->xmem_rw && vq->mem_hint < vq->xmem_rw->nregions) {
		const struct vhd_mem_region *hr = &vq->xmem_rw->r[vq->mem_hint];
		return (struct vhdi_hint_region){hr->guest_addr, hr->size, hr->host};
	}
	return (struct vhdi_hint_region){0, 0, NULL};
}

/*
 * packed_pop_walks()' fast path (the pops' own loops map with vhdi_hint_region()): a chain of one plain
 * descriptor (no NEXT, no INDIRECT; the caller checked flags) whose buffer lies in the hinted memory region, what
 * net drivers post, becomes chain c over *iov directly. addr, len and flags were read once from the ring by the
 * caller, as the general walk reads them. Returns false, having written nothing, for an empty or unmapped
 * buffer: that takes the general walk.
 */
static inline bool vhdi_pop_plain(const struct vhd_vq *vq, uint64_t addr, uint32_t len, uint16_t flags, uint16_t id,
				  struct iovec *iov, struct vhd_vq_chain *c)
{
	/* xmem_rw, not the window of the descriptor's direction: choosing that cost queues without an IOTLB 2-3
	 * instructions a chain (callgrind); a read-only or write-only entry's chains take the general walk, whose
	 * vhd_chain_add() does look at the windows. */
	void *p = len ? vhd_mem_xlate_hint(vq->xmem_rw, vq->mem_hint, addr, len) : NULL;
	if (unlikely(p == NULL))
		return false;
	*iov = (struct iovec){.iov_base = p, .iov_len = len};
	vhdi_chain_plain(c, id, flags & VIRTQ_DESC_F_WRITE, len, iov);
	return true;
}

/*
 * Driver, IN_ORDER: FIFO of buffer ids in submission order. Positions wrap with a compare, not a division:
 * packed queue sizes need not be powers of two.
 */
static inline unsigned vhdi_fifo_pos(const struct vhd_vq *vq, unsigned k)
{
	unsigned p = vq->fifo_head + k;
	return p >= vq->num ? p - vq->num : p;
}

static inline void vhdi_fifo_push(struct vhd_vq *vq, uint16_t id)
{
	vq->fifo[vhdi_fifo_pos(vq, vq->fifo_count++)] = id;
}

static inline uint16_t vhdi_fifo_pop(struct vhd_vq *vq)
{
	uint16_t id = vq->fifo[vq->fifo_head];
	vq->fifo_head = (uint16_t)vhdi_fifo_pos(vq, 1);
	vq->fifo_count--;
	return id;
}

/* How many in-flight buffers, oldest first, end with id; 0 if id is not in flight. */
static inline unsigned vhdi_fifo_span(const struct vhd_vq *vq, uint16_t id)
{
	for (unsigned k = 0; k < vq->fifo_count; k++)
		if (vq->fifo[vhdi_fifo_pos(vq, k)] == id)
			return k + 1;
	return 0;
}

extern const struct vhd_vq_ops vhdi_split_device_ops, vhdi_split_driver_ops;
extern const struct vhd_vq_ops vhdi_packed_device_ops, vhdi_packed_driver_ops;

#endif
