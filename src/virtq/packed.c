/* SPDX-License-Identifier: MIT */
/* Packed virtqueues (virtio 1.2, 2.8): device side then driver side. */
#include <errno.h>

#include "util/prefetch.h"
#include "virtq_impl.h"

/* A descriptor is available in the lap whose wrap counter is w when AVAIL == w and USED != w (2.8.1). */
static inline bool desc_avail(uint16_t flags, bool w)
{
	return !!(flags & VIRTQ_DESC_F_AVAIL) == w && !!(flags & VIRTQ_DESC_F_USED) != w;
}

/* ... and used when both bits equal the wrap counter. */
static inline bool desc_used(uint16_t flags, bool w)
{
	return !!(flags & VIRTQ_DESC_F_AVAIL) == w && !!(flags & VIRTQ_DESC_F_USED) == w;
}

static inline void advance(const struct vhd_vq *vq, uint16_t *pos, bool *w, unsigned by)
{
	unsigned p = *pos + by;
	if (p >= vq->num) {
		p -= vq->num;
		*w = !*w;
	}
	*pos = (uint16_t)p;
}

/*
 * Event suppression with VIRTQ_EVENT_F_DESC (2.8.10): the peer asked to be told once the descriptor at
 * (off, wrap) is published. We just published the delta slots ending before (pos, w). Positions are
 * unwrapped into one line: the event's lap is ours or, when its wrap differs, the previous one.
 */
static bool event_in_window(const struct vhd_vq *vq, uint16_t off_wrap, uint16_t pos, bool w, uint32_t delta)
{
	if (delta >= vq->num)
		return true;
	int32_t off = off_wrap & 0x7fff;
	bool ew = off_wrap >> VIRTQ_EVENT_WRAP_SHIFT;
	if (ew != w)
		off -= vq->num;
	int32_t new_pos = pos, old_pos = (int32_t)pos - (int32_t)delta;
	return off >= old_pos && off < new_pos;
}

static bool event_wants(const struct vhd_vq *vq, const struct pvirtq_event_suppress *ev, uint16_t pos, bool w,
			uint32_t delta)
{
	if (delta == 0)
		return false;
	uint16_t flags = RD16(&ev->flags) & 0x3;
	if (flags == VIRTQ_EVENT_F_DISABLE)
		return false;
	if (flags == VIRTQ_EVENT_F_DESC && vq->event_idx)
		return event_in_window(vq, RD16(&ev->off_wrap), pos, w, delta);
	return true;
}

/* =============================== device side =============================== */

/* One descriptor of a chain (the n-th, from ring slot slot), plain or indirect, appended to acc: 0,
 * VHDI_WALK_DEFER / VHDI_WALK_MISS as vhd_chain_add(), or -EIO after breaking the queue. */
static int packed_add_desc(struct vhd_vq *vq, uint64_t addr, uint32_t len, uint16_t flags, uint16_t slot, unsigned n,
			   struct vhd_chain_acc *acc)
{
	if (likely(!(flags & VIRTQ_DESC_F_INDIRECT)))
		return vhd_chain_add(vq, acc, addr, len, flags & VIRTQ_DESC_F_WRITE);
	if (!vq->indirect || (flags & VIRTQ_DESC_F_NEXT))
		return vhdi_vq_break(vq, VHD_VQ_E_INDIRECT_FLAGS, "slot %u: INDIRECT %s", slot,
				    vq->indirect ? "combined with NEXT" : "without INDIRECT_DESC negotiated");
	/* Before mapping (or copying) a table the budget would stop in anyway. */
	if (!vhdi_walk_fits(acc, len / sizeof(struct pvirtq_desc)))
		return VHDI_WALK_DEFER;
	const struct pvirtq_desc *t = (const struct pvirtq_desc *)vhdi_vq_map_indirect(vq, addr, len, n - 1);
	if (!t)
		return vhdi_indirect_fail(vq);
	/* Table entries are consecutive; their NEXT flags and ids carry no meaning (2.8.19). */
	unsigned ents = len / sizeof(*t);
	for (unsigned j = 0; j < ents; j++) {
		uint16_t tf = RD16(&t[j].flags);
		if (unlikely(tf & VIRTQ_DESC_F_INDIRECT))
			return vhdi_vq_break(vq, VHD_VQ_E_INDIRECT_NEST, "indirect descriptor inside the table of slot %u",
					    slot);
		int r = vhd_chain_add(vq, acc, RD64(&t[j].addr), RD32(&t[j].len), tf & VIRTQ_DESC_F_WRITE);
		if (unlikely(r))
			return r;
	}
	return 0;
}

/*
 * Walk one chain starting at the head (whose flags were read with acquire), appending its buffers to acc.
 * On success pos and w point past the chain, id is its buffer id (from the last descriptor) and count the slots
 * it took. VHDI_WALK_DEFER: the chain would walk more than acc->walk_max; the caller leaves it in the ring (and
 * drops pos and w, moved part of the way).
 */
static int packed_walk(struct vhd_vq *vq, uint16_t head_flags, uint16_t *pos, bool *w, uint16_t *id,
		       uint16_t *count, struct vhd_chain_acc *acc)
{
	unsigned n = 0;
	uint16_t flags = head_flags;
	for (;;) {
		if (unlikely(++n > vq->num))
			return vhdi_vq_break(vq, VHD_VQ_E_CHAIN_LEN, "chain from slot %u is longer than the queue (%u)",
					    vq->last_avail, vq->num);
		const struct pvirtq_desc *d = &vq->packed.desc[*pos];
		if (n > 1) {
			flags = RD16(&d->flags);
			/* The driver marks every descriptor of a chain available before the head (2.8.6). */
			if (unlikely(!desc_avail(flags, *w)))
				return vhdi_vq_break(vq, VHD_VQ_E_PACKED_FLAGS,
						    "chain from slot %u continues into slot %u, which is not available "
						    "(flags 0x%04x, wrap %d)", vq->last_avail, *pos, flags, *w);
		}
		*id = RD16(&d->id);
		int r = packed_add_desc(vq, RD64(&d->addr), RD32(&d->len), flags, *pos, n, acc);
		if (unlikely(r))
			return r;
		advance(vq, pos, w, 1);
		if (!(flags & VIRTQ_DESC_F_NEXT))
			break;
	}
	*count = (uint16_t)n;
	return 0;
}

int vhdi_packed_pop_saved(struct vhd_vq *vq, const struct vhost_user_inflight_desc_packed *d, uint16_t head,
			  struct vhd_vq_chain *c, struct iovec *iov, unsigned niov, unsigned i, unsigned *segs)
{
	struct vhd_chain_acc acc;
	vhd_chain_begin(&acc, iov, 0, niov, UINT32_MAX);
	/* The region is the front-end's memory too: every field is read once and bounded here. */
	uint16_t n = __atomic_load_n(&d[head].num, __ATOMIC_RELAXED), e = head, id = 0;
	if (n == 0 || n > vq->num)
		return vhdi_vq_break(vq, VHD_VQ_E_CHAIN_LEN, "inflight entry %u: chain of %u descriptors", head, n);
	for (unsigned k = 0; k < n; k++) {
		if (e >= vq->num)
			return vhdi_vq_break(vq, VHD_VQ_E_NEXT, "inflight entry %u: link %u beyond the queue", head, e);
		const struct vhost_user_inflight_desc_packed *x = &d[e];
		id = __atomic_load_n(&x->id, __ATOMIC_RELAXED);
		int r = packed_add_desc(vq, __atomic_load_n(&x->addr, __ATOMIC_RELAXED),
					__atomic_load_n(&x->len, __ATOMIC_RELAXED),
					__atomic_load_n(&x->flags, __ATOMIC_RELAXED), e, k + 1, &acc);
		if (r < 0)
			return r;
		if (r == VHDI_WALK_MISS) {
			vq->stats.iotlb_misses++;
			return 0;
		}
		e = __atomic_load_n(&x->next, __ATOMIC_RELAXED);
	}
	if (!vhd_chain_finish(vq, c, &acc, i))
		return 0;
	c->id = id;
	c->ndesc = n;
	*segs = acc.n;
	vq->inflight++;
	vq->dev_slots += n;
	vq->stats.chains++;
	vq->stats.descs += acc.walked;
	return 1;
}

/*
 * Ask for the lines of the n slots from pos on (the ring wraps) before the loop reads the first. The other side's
 * core wrote them, and read one at a time each line's miss stalled the loop in turn: half of a device's pop, and
 * most of a driver's collection of used slots, sat on the flags loads. Slots the other side has not written yet
 * cost it an invalidation later, which it would pay when we read them anyway. For reading only there: asking
 * for ownership of slots the other side may still be filling took them from under it (device pop and driver
 * get each lost 10-25% of loopback guest TX that way, measured). The driver's add asks for ownership
 * (for_write): it overwrites every slot it fills, which the device finished with a lap ago.
 */
static inline void prefetch_slots(const struct vhd_vq *vq, uint16_t pos, unsigned n, bool for_write)
{
	if (n > vq->num)
		n = vq->num;
	/* Four 16-byte slots to a line; the extra step covers the last line when pos is not at a line's start. */
	for (unsigned k = 0; k < n + 3; k += 4) {
		unsigned s = pos + k;
		if (s >= vq->num)
			s -= vq->num;
		if (for_write)
			vhd_prefetch_w(&vq->packed.desc[s]);
		else
			__builtin_prefetch(&vq->packed.desc[s]);
	}
}

/* The chain at the avail position: 1 (its head's flags in *f) when one is there, 0 when not, -EIO if the slot is
 * marked used. Acquire pairs with the driver's release store of the head flags (packed_add): the chain's other
 * descriptors and the buffer contents were written before it. */
static inline int packed_head(struct vhd_vq *vq, uint16_t *f)
{
	*f = RD16_ACQ(&vq->packed.desc[vq->last_avail].flags);
	if (likely(desc_avail(*f, vq->avail_wrap)))
		return 1;
	/* Not yet available looks like (!w, !w) or (!w, w). (w, w) at the head means "used in this lap", which only
	 * the device may write and never ahead of the avail position. */
	if (unlikely(desc_used(*f, vq->avail_wrap)))
		return vhdi_vq_break(vq, VHD_VQ_E_PACKED_FLAGS,
				    "slot %u at the avail position is marked used (flags 0x%04x, wrap %d)", vq->last_avail,
				    *f, vq->avail_wrap);
	return 0;
}

/* One plain descriptor in the hinted region (head flags f), what net drivers post, taken as chain c over
 * iov[*used_iov]: mapped directly, each field read once as in the general walk. False, nothing taken: the chain
 * needs that walk. */
static inline bool packed_take_plain(struct vhd_vq *vq, uint16_t f, struct vhd_vq_chain *c, struct iovec *iov,
				     unsigned *used_iov, unsigned niov)
{
	const struct pvirtq_desc *d = &vq->packed.desc[vq->last_avail];
	if (likely(!(f & (VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT)) && *used_iov < niov) &&
	    likely(vhdi_pop_plain(vq, RD64(&d->addr), RD32(&d->len), f, RD16(&d->id), &iov[*used_iov], c))) {
		++*used_iov;
		advance(vq, &vq->last_avail, &vq->avail_wrap, 1);
		vq->dev_slots++;
		return true;
	}
	return false;
}

/*
 * The rest of a pop from chain i on, the first that needs the general walk (head flags f): each chain walked
 * within what is left of the descriptor budget, plain ones taken as in packed_pop(). Returns the chains the pop
 * took in all, or -EIO. Out of line, apart from packed_pop()'s loop: the budget's state there took registers
 * from the fast path, an instruction more for every plain chain (callgrind).
 */
static __attribute__((noinline)) int packed_pop_walks(struct vhd_vq *vq, struct vhd_vq_chain *chains, unsigned i,
						      unsigned n, struct iovec *iov, unsigned used_iov, unsigned niov,
						      uint16_t f)
{
	const unsigned asked = n, first = i; /* chain first is known to need the walk */
	uint32_t extra = 0; /* descriptors walked beyond one per chain taken: with i, what the budget spent */
	for (;;) {
		if (i == first || !packed_take_plain(vq, f, &chains[i], iov, &used_iov, niov)) {
			struct vhd_chain_acc acc;
			uint16_t pos = vq->last_avail, id = 0, count = 0;
			bool w = vq->avail_wrap;
			vhd_chain_begin(&acc, iov, used_iov, niov, vhdi_walk_allowance(i, i + extra));
			int r = packed_walk(vq, f, &pos, &w, &id, &count, &acc);
			if (unlikely(r < 0))
				return r;
			if (!vhdi_walk_done(vq, r, &acc, &chains[i], i, &extra))
				break;
			chains[i].id = id;
			chains[i].ndesc = count;
			used_iov += acc.n;
			vq->last_avail = pos;
			vq->avail_wrap = w;
			vq->dev_slots += count;
			if (unlikely(chains[i].err)) { /* the first chain, too long for iov[]: nothing after it */
				i++;
				break;
			}
			n = vhdi_walk_cap(i, n, extra);
		}
		if (++i == n) {
			/* Ended by the budget before what was asked: a chain was left if one is there. */
			if (n < asked && desc_avail(RD16(&vq->packed.desc[vq->last_avail].flags), vq->avail_wrap))
				vq->stats.budget_stops++;
			break;
		}
		int h = packed_head(vq, &f);
		if (h < 0)
			return h;
		if (!h)
			break;
	}
	vq->stats.descs += extra;
	return (int)i;
}

static int packed_pop(struct vhd_vq *vq, struct vhd_vq_chain *chains, unsigned n, struct iovec *iov, unsigned niov)
{
	prefetch_slots(vq, vq->last_avail, n, false);
	/* The loop's invariants in locals, as in split_pop(): with the chains and iovecs stored through pointers,
	 * the compiler loaded the position, the ring and the hinted region from vq again for every chain (about
	 * 20 instructions a chain, callgrind). The table cannot change during a pop (the queue is held). */
	const struct pvirtq_desc *desc = vq->packed.desc;
	const uint16_t num = vq->num;
	uint16_t pos = vq->last_avail;
	bool w = vq->avail_wrap;
	const struct vhdi_hint_region hr = vhdi_hint_region(vq);
	const uint64_t r_gpa = hr.gpa, r_size = hr.size;
	uint8_t *const r_host = hr.host;
	const unsigned lim = n < niov ? n : niov; /* a plain chain takes one iovec */
	unsigned i;
	uint16_t f = 0;
	for (i = 0; i < lim; i++) {
		const struct pvirtq_desc *d = &desc[pos];
		/* Acquire pairs with the driver's release store of the head flags (packed_add), as in
		 * packed_head(). */
		f = RD16_ACQ(&d->flags);
		if (!desc_avail(f, w))
			break;
		/* One plain, non-empty descriptor inside the hinted region, what net drivers post: mapped here,
		 * each field read once into a local as the general walk reads it (the bounds as split_pop()'s). */
		uint64_t addr = RD64(&d->addr);
		uint32_t len = RD32(&d->len);
		uint16_t id = RD16(&d->id);
		uint64_t off = addr - r_gpa;
		if (unlikely((f & (VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT)) || off >= r_size ||
			     (uint64_t)len - 1 >= r_size - off))
			break;
		iov[i] = (struct iovec){.iov_base = r_host + off, .iov_len = len};
		vhdi_chain_plain(&chains[i], id, f & VIRTQ_DESC_F_WRITE, len, &iov[i]);
		if (unlikely(++pos == num)) {
			pos = 0;
			w = !w;
		}
	}
	vq->last_avail = pos;
	vq->avail_wrap = w;
	vq->dev_slots += i;
	if (unlikely(i < n)) {
		/* Stopped at a slot that is not available (the usual end) or marked used (a broken driver), at one
		 * that needs the general walk, or at a full iov[] (the walk reports a chain that cannot fit). */
		int h = 1;
		if (i == lim)
			h = packed_head(vq, &f);
		else if (!desc_avail(f, w))
			h = desc_used(f, w) ? vhdi_vq_break(vq, VHD_VQ_E_PACKED_FLAGS,
							    "slot %u at the avail position is marked used (flags 0x%04x, "
							    "wrap %d)", pos, f, w)
					    : 0;
		if (unlikely(h < 0))
			return h;
		if (h) {
			/* It counts the chains and descriptors it takes beyond one per chain. */
			int r = packed_pop_walks(vq, chains, i, n, iov, i, niov, f);
			if (unlikely(r < 0))
				return r;
			i = (unsigned)r;
		}
	}
	vq->inflight = (uint16_t)(vq->inflight + i);
	vq->stats.chains += i;
	vq->stats.descs += i;
	return (int)i;
}

/* The 8 bytes at offset 8 of a descriptor (len, id, flags) as one word: a used descriptor is one store there. */
typedef uint64_t __attribute__((may_alias)) desc_tail_t;
_Static_assert(offsetof(struct pvirtq_desc, len) == 8 && offsetof(struct pvirtq_desc, id) == 12 &&
		       offsetof(struct pvirtq_desc, flags) == 14,
	       "packed_push() writes len, id and flags as one 64-bit word");

static int packed_push(struct vhd_vq *vq, const struct vhd_vq_used *used, unsigned n)
{
	if (n == 0)
		return 0;
	uint32_t slots = 0, lens = 0;
	bool bad = false;
	for (unsigned i = 0; i < n; i++) {
		/* ndesc 0 wraps to UINT16_MAX: one compare for both bounds. */
		bad |= (uint16_t)(used[i].ndesc - 1) >= vq->num;
		slots += used[i].ndesc;
		lens |= used[i].len;
	}
	/* Used descriptors overwrite slots the driver filled; only slots we already consumed may be reused. */
	if (unlikely(bad || n > vq->inflight || slots > vq->dev_slots)) {
		for (unsigned i = 0; i < n; i++)
			if (used[i].ndesc == 0 || used[i].ndesc > vq->num)
				return vhdi_vq_break(vq, VHD_VQ_E_CALLER, "pushing id %u with ndesc %u", used[i].id,
						    used[i].ndesc), -EINVAL;
		return vhdi_vq_break(vq, VHD_VQ_E_CALLER, "pushing %u chains / %u slots with %u / %u popped", n,
				    (unsigned)slots, vq->inflight, (unsigned)vq->dev_slots), -EINVAL;
	}

	uint16_t first = vq->used_idx, pos = first;
	bool w = vq->used_wrap;
	uint16_t wbits = w ? (VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED) : 0;
	/* WRITE marks a used descriptor whose len means something (2.8.4: without it len is reserved and
	 * drivers ignore it), so it goes on every element that wrote bytes. */
	uint16_t first_flags = (uint16_t)(wbits | (used[0].len ? VIRTQ_DESC_F_WRITE : 0));
	struct pvirtq_desc *d = &vq->packed.desc[pos];
	if (vq->in_order && n > 1 && lens == 0) {
		/* IN_ORDER: one used descriptor with the last buffer's id stands for the batch; the driver skips
		 * forward by the slots the batch took (2.8.21). */
		WR32(&d->len, 0);
		WR16(&d->id, used[n - 1].id);
		advance(vq, &pos, &w, slots);
	} else {
		WR32(&d->len, used[0].len);
		WR16(&d->id, used[0].id);
		advance(vq, &pos, &w, used[0].ndesc);
		wbits = w ? (VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED) : 0;
		/* The rest, one store each: len, id and flags are the descriptor's second 8 bytes (the flags,
		 * whose store is what the driver looks for, with the others, in a single store). Lines of four
		 * descriptors fill one after another; nothing of the slots is read back. */
		for (unsigned i = 1; i < n; i++) {
			uint32_t len = used[i].len;
			uint64_t f = wbits | (len ? VIRTQ_DESC_F_WRITE : 0);
			uint64_t word = len | (uint64_t)used[i].id << 32 | f << 48;
			__atomic_store_n((desc_tail_t *)&vq->packed.desc[pos].len, vhd_cpu_to_le64(word),
					 __ATOMIC_RELAXED);
			unsigned p = pos + used[i].ndesc;
			if (unlikely(p >= vq->num)) {
				p -= vq->num;
				w = !w;
				wbits ^= VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED;
			}
			pos = (uint16_t)p;
		}
	}
	/* Release pairs with the driver's acquire load of the flags at its used position (packed_get): the
	 * ids, lengths and flags of the later descriptors above, and the buffer contents, are visible first.
	 * The driver reads in ring order, so it cannot reach them before this one. */
	WR16_REL(&vq->packed.desc[first].flags, first_flags);
	vq->used_idx = pos;
	vq->used_wrap = w;
	vq->inflight = (uint16_t)(vq->inflight - n);
	vq->dev_slots -= slots;
	vq->notify_pending += slots;
	vq->stats.used += n;
	return (int)n;
}

static bool packed_dev_need_notify(struct vhd_vq *vq)
{
	/* The used flags must be visible before we read the driver's suppression area. Pairs with the fence in
	 * packed_drv_enable_notify. Nothing published since the last check needs neither the fence nor a call. */
	if (vq->notify_pending == 0)
		return false;
	FULL_FENCE();
	uint32_t delta = vq->notify_pending;
	vq->notify_pending = 0;
	return event_wants(vq, vq->packed.driver, vq->used_idx, vq->used_wrap, delta);
}

static bool packed_dev_enable_notify(struct vhd_vq *vq)
{
	struct pvirtq_event_suppress *ev = vq->packed.device;
	if (vq->event_idx) {
		WR16(&ev->off_wrap, (uint16_t)(vq->last_avail | (vq->avail_wrap << VIRTQ_EVENT_WRAP_SHIFT)));
		WR16(&ev->flags, VIRTQ_EVENT_F_DESC);
	} else {
		WR16(&ev->flags, VIRTQ_EVENT_F_ENABLE);
	}
	/* Pairs with the fence in packed_drv_need_notify. */
	FULL_FENCE();
	return desc_avail(RD16(&vq->packed.desc[vq->last_avail].flags), vq->avail_wrap);
}

static void packed_dev_disable_notify(struct vhd_vq *vq)
{
	WR16(&vq->packed.device->flags, VIRTQ_EVENT_F_DISABLE);
}

static unsigned packed_ahead(const struct vhd_vq *vq, struct vhd_vq_seg_view *v, unsigned max)
{
	uint16_t pos = vq->last_avail;
	bool w = vq->avail_wrap;
	unsigned n = 0;
	while (n < max && n < vq->num) {
		const struct pvirtq_desc *d = &vq->packed.desc[pos];
		/* Acquire pairs with the driver's release store of the flags (packed_add), as in packed_head(). */
		uint16_t f = RD16_ACQ(&d->flags);
		if (!desc_avail(f, w))
			break;
		v[n++] = (struct vhd_vq_seg_view){RD64(&d->addr), RD32(&d->len), f};
		advance(vq, &pos, &w, 1);
	}
	return n;
}

const struct vhd_vq_ops vhdi_packed_device_ops = {
	.ahead = packed_ahead,
	.pop = packed_pop,
	.push = packed_push,
	.need_notify = packed_dev_need_notify,
	.enable_notify = packed_dev_enable_notify,
	.disable_notify = packed_dev_disable_notify,
};

/* =============================== driver side =============================== */

static void fill_pdesc(struct pvirtq_desc *d, uint64_t addr, uint32_t len, uint16_t id)
{
	WR64(&d->addr, addr);
	WR32(&d->len, len);
	WR16(&d->id, id);
}

static uint16_t avail_bits(bool w)
{
	return w ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED;
}

static int packed_add(struct vhd_vq *vq, const struct vhd_vq_buf *bufs, unsigned n)
{
	uint16_t first = vq->last_avail, first_flags = 0;
	uint32_t slots = 0;
	unsigned i;
	/* The burst's slots (one each for plain buffers), owned before the first store: each store below would
	 * otherwise wait for its line's ownership in turn, the device's core having read it last. Free slots only:
	 * the device may still be reading the others. Loopback guest TX 64 B packed, run by run: +3-29% in the
	 * slower vCPU placement, about even (0.95-1.0) in the close one. */
	prefetch_slots(vq, vq->last_avail, n < vq->num_free ? n : vq->num_free, true);
	for (i = 0; i < n; i++) {
		const struct vhd_vq_buf *b = &bufs[i];
		unsigned nseg = (unsigned)b->nout + b->nin;
		if (likely(nseg == 1 && !(b->flags & VHD_VQ_BUF_INDIRECT))) {
			/* One descriptor, no table: what a net driver adds for every packet. */
			if (unlikely(vq->num_free == 0 || vq->ids_free == 0))
				break;
			uint16_t id = vq->free_head, pos = vq->last_avail;
			vq->free_head = vq->free_next[id];
			vq->ids_free--;
			struct pvirtq_desc *d = &vq->packed.desc[pos];
			fill_pdesc(d, b->segs[0].addr, b->segs[0].len, id);
			uint16_t f = (uint16_t)(avail_bits(vq->avail_wrap) | (b->nin ? VIRTQ_DESC_F_WRITE : 0));
			if (i == 0)
				first_flags = f;
			else
				WR16(&d->flags, f);
			advance(vq, &vq->last_avail, &vq->avail_wrap, 1);
			vq->num_free--;
			slots++;
			vq->slots[id] = (struct vhd_vq_drv_slot){
				.token = b->token, .in_len = b->nin ? b->segs[0].len : 0, .ndesc = 1, .busy = true};
			if (vq->in_order)
				vhdi_fifo_push(vq, id);
			continue;
		}
		/* A table counts towards the chain length, which may not exceed the queue size (2.7.5.3.1). */
		bool ind = (b->flags & VHD_VQ_BUF_INDIRECT) && vq->ind_base && nseg <= vq->ind_max && nseg <= vq->num;
		unsigned need = ind ? 1 : nseg;
		if (nseg == 0 || need > vq->num) {
			if (i == 0)
				return -EINVAL;
			break;
		}
		if (need > vq->num_free || vq->ids_free == 0)
			break;
		uint16_t id = vq->free_head;
		vq->free_head = vq->free_next[id];
		vq->ids_free--;

		uint16_t pos = vq->last_avail;
		bool w = vq->avail_wrap;
		if (ind) {
			size_t off = (size_t)id * vq->ind_max * sizeof(struct pvirtq_desc);
			struct pvirtq_desc *t = (struct pvirtq_desc *)(vq->ind_base + off);
			for (unsigned j = 0; j < nseg; j++) {
				fill_pdesc(&t[j], b->segs[j].addr, b->segs[j].len, 0);
				WR16(&t[j].flags, j >= b->nout ? VIRTQ_DESC_F_WRITE : 0);
			}
			fill_pdesc(&vq->packed.desc[pos], vq->ind_addr + off, (uint32_t)(nseg * sizeof(*t)), id);
			uint16_t f = (uint16_t)(avail_bits(w) | VIRTQ_DESC_F_INDIRECT);
			if (i == 0)
				first_flags = f;
			else
				WR16(&vq->packed.desc[pos].flags, f);
			advance(vq, &pos, &w, 1);
		} else {
			for (unsigned j = 0; j < nseg; j++) {
				fill_pdesc(&vq->packed.desc[pos], b->segs[j].addr, b->segs[j].len, id);
				uint16_t f = (uint16_t)(avail_bits(w) | (j >= b->nout ? VIRTQ_DESC_F_WRITE : 0) |
							(j + 1 < nseg ? VIRTQ_DESC_F_NEXT : 0));
				if (i == 0 && j == 0)
					first_flags = f;
				else
					WR16(&vq->packed.desc[pos].flags, f);
				advance(vq, &pos, &w, 1);
			}
		}
		vq->last_avail = pos;
		vq->avail_wrap = w;
		vq->num_free = (uint16_t)(vq->num_free - need);
		slots += need;
		struct vhd_vq_drv_slot *s = &vq->slots[id];
		s->token = b->token;
		uint64_t in = 0;
		for (unsigned j = b->nout; j < nseg; j++)
			in += b->segs[j].len;
		s->in_len = in > UINT32_MAX ? UINT32_MAX : (uint32_t)in;
		s->ndesc = (uint16_t)need;
		s->busy = true;
		if (vq->in_order)
			vhdi_fifo_push(vq, id);
	}
	if (i) {
		/* Release pairs with the device's acquire load of the head flags (packed_pop): every other descriptor
		 * of the burst, the indirect tables and the buffer contents are visible once this one is. */
		WR16_REL(&vq->packed.desc[first].flags, first_flags);
		vq->inflight = (uint16_t)(vq->inflight + i);
		vq->notify_pending += slots;
		vq->stats.chains += i;
	}
	return (int)i;
}

static void packed_complete(struct vhd_vq *vq, uint16_t id, uint32_t len, struct vhd_vq_done *d)
{
	struct vhd_vq_drv_slot *s = &vq->slots[id];
	d->token = s->token;
	d->len = len;
	s->busy = false;
	advance(vq, &vq->used_idx, &vq->used_wrap, s->ndesc);
	vq->num_free = (uint16_t)(vq->num_free + s->ndesc);
	vq->free_next[id] = vq->free_head;
	vq->free_head = id;
	vq->ids_free++;
	vq->inflight--;
	vq->stats.used++;
}

static unsigned packed_drain_in_order(struct vhd_vq *vq, struct vhd_vq_done *done, unsigned n)
{
	unsigned got = 0;
	while (vq->ino_pending && got < n) {
		uint16_t id = vhdi_fifo_pop(vq);
		vq->ino_pending--;
		packed_complete(vq, id, vq->ino_pending ? 0 : vq->ino_len, &done[got++]);
	}
	return got;
}

static int packed_get(struct vhd_vq *vq, struct vhd_vq_done *done, unsigned n)
{
	unsigned got = packed_drain_in_order(vq, done, n);
	if (got < n && vq->inflight > vq->ino_pending)
		prefetch_slots(vq, vq->used_idx, n - got < vq->inflight ? n - got : vq->inflight, false);
	while (got < n && vq->inflight > vq->ino_pending) {
		struct pvirtq_desc *d = &vq->packed.desc[vq->used_idx];
		/* Acquire pairs with the device's release store of these flags (packed_push). */
		uint16_t f = RD16_ACQ(&d->flags);
		if (!desc_used(f, vq->used_wrap)) {
			/* This slot is in flight, so it was made available in the used lap (in-flight slots span less
			 * than a lap) and holds our AVAIL/USED pair unless the device wrote it. Used with the other
			 * wrap counter, or AVAIL != wrap, is a device lying about the lap: one compare on the path that
			 * ends every collection. */
			if (likely(desc_avail(f, vq->used_wrap)))
				break;
			return vhdi_get_broken(
				got, vhdi_vq_break(vq, VHD_VQ_E_PACKED_FLAGS,
						   "used slot %u: flags 0x%x (AVAIL %u USED %u) with wrap counter %u",
						   vq->used_idx, f, !!(f & VIRTQ_DESC_F_AVAIL), !!(f & VIRTQ_DESC_F_USED),
						   vq->used_wrap));
		}
		uint16_t id = RD16(&d->id);
		/* Without WRITE the length is reserved (2.8.4): DPDK's vhost leaves our own TX length there. */
		uint32_t len = (f & VIRTQ_DESC_F_WRITE) ? RD32(&d->len) : 0;
		if (unlikely(id >= vq->num || !vq->slots[id].busy))
			return vhdi_get_broken(got, vhdi_vq_break(vq, VHD_VQ_E_USED_ID,
								 "used slot %u names buffer id %u, not in flight",
								 vq->used_idx, id));
		if (unlikely(len > vq->slots[id].in_len))
			return vhdi_get_broken(got, vhdi_vq_break(vq, VHD_VQ_E_USED_LEN,
								 "used slot %u: len %u exceeds the %u writable bytes",
								 vq->used_idx, len, vq->slots[id].in_len));
		if (vq->in_order) {
			unsigned span = vhdi_fifo_span(vq, id);
			if (unlikely(span == 0))
				return vhdi_get_broken(got, vhdi_vq_break(vq, VHD_VQ_E_USED_ID,
									 "in-order used slot %u names id %u, not in flight",
									 vq->used_idx, id));
			vq->ino_pending = (uint16_t)span;
			vq->ino_len = len;
			got += packed_drain_in_order(vq, done + got, n - got);
		} else {
			packed_complete(vq, id, len, &done[got++]);
		}
	}
	return (int)got;
}

static bool packed_drv_need_notify(struct vhd_vq *vq)
{
	/* The head flags store must be visible before we read the device's suppression area. Pairs with the
	 * fence in packed_dev_enable_notify. Nothing published since the last check needs neither. */
	if (vq->notify_pending == 0)
		return false;
	FULL_FENCE();
	uint32_t delta = vq->notify_pending;
	vq->notify_pending = 0;
	return event_wants(vq, vq->packed.device, vq->last_avail, vq->avail_wrap, delta);
}

static bool packed_drv_enable_notify(struct vhd_vq *vq)
{
	struct pvirtq_event_suppress *ev = vq->packed.driver;
	if (vq->event_idx) {
		WR16(&ev->off_wrap, (uint16_t)(vq->used_idx | (vq->used_wrap << VIRTQ_EVENT_WRAP_SHIFT)));
		WR16(&ev->flags, VIRTQ_EVENT_F_DESC);
	} else {
		WR16(&ev->flags, VIRTQ_EVENT_F_ENABLE);
	}
	/* Pairs with the fence in packed_dev_need_notify. */
	FULL_FENCE();
	return vq->ino_pending || desc_used(RD16(&vq->packed.desc[vq->used_idx].flags), vq->used_wrap);
}

static void packed_drv_disable_notify(struct vhd_vq *vq)
{
	WR16(&vq->packed.driver->flags, VIRTQ_EVENT_F_DISABLE);
}

const struct vhd_vq_ops vhdi_packed_driver_ops = {
	.add = packed_add,
	.get = packed_get,
	.need_notify = packed_drv_need_notify,
	.enable_notify = packed_drv_enable_notify,
	.disable_notify = packed_drv_disable_notify,
};
