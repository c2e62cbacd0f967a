/* SPDX-License-Identifier: MIT */
/* Split virtqueues (virtio 1.2, 2.7): device side then driver side. */
#include <errno.h>

#include "util/prefetch.h"
#include "virtq_impl.h"

/* used_event lives after the avail ring entries, avail_event after the used ring entries (2.7.7, 2.7.10). */
static inline uint16_t *used_event_ptr(struct vhd_vq *vq)
{
	return &vq->split.avail->ring[vq->num];
}

static inline uint16_t *avail_event_ptr(struct vhd_vq *vq)
{
	return (uint16_t *)&vq->split.used->ring[vq->num];
}

/* =============================== device side =============================== */

/*
 * Walk the chain that starts at head, appending its buffers to acc. Every value read from the table is the
 * driver's and is checked before use; the walk is bounded by the table size, so a loop cannot spin, and by
 * acc->walk_max (VHDI_WALK_DEFER: the chain stays for the next pop).
 */
static int split_walk(struct vhd_vq *vq, uint16_t head, struct vhd_chain_acc *acc)
{
	const struct virtq_desc *tbl = vq->split.desc;
	unsigned tbl_num = vq->num;
	unsigned idx = head;
	unsigned count = 0;
	bool indirect = false;

	for (;;) {
		if (unlikely(++count > tbl_num))
			return vhdi_vq_break(vq, VHD_VQ_E_LOOP, "%s chain from head %u loops (more than %u descriptors)",
					    indirect ? "indirect" : "descriptor", head, tbl_num);
		const struct virtq_desc *d = &tbl[idx];
		uint64_t addr = RD64(&d->addr);
		uint32_t len = RD32(&d->len);
		uint16_t flags = RD16(&d->flags);
		uint16_t next = RD16(&d->next);

		if (unlikely(flags & VIRTQ_DESC_F_INDIRECT)) {
			if (indirect)
				return vhdi_vq_break(vq, VHD_VQ_E_INDIRECT_NEST,
						    "indirect descriptor inside the indirect table of head %u", head);
			if (!vq->indirect || (flags & VIRTQ_DESC_F_NEXT))
				return vhdi_vq_break(vq, VHD_VQ_E_INDIRECT_FLAGS,
						    "descriptor %u: INDIRECT %s", idx,
						    vq->indirect ? "combined with NEXT" : "without INDIRECT_DESC negotiated");
			/* Before mapping (or copying) a table the budget would stop in anyway. */
			if (!vhdi_walk_fits(acc, len / sizeof(struct virtq_desc)))
				return VHDI_WALK_DEFER;
			tbl = vhdi_vq_map_indirect(vq, addr, len, count - 1);
			if (!tbl)
				return vhdi_indirect_fail(vq);
			tbl_num = len / sizeof(struct virtq_desc);
			idx = 0;
			count = 0;
			indirect = true;
			continue;
		}
		int r = vhd_chain_add(vq, acc, addr, len, flags & VIRTQ_DESC_F_WRITE);
		if (unlikely(r))
			return r;
		if (!(flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (unlikely(next >= tbl_num))
			return vhdi_vq_break(vq, VHD_VQ_E_NEXT, "%s descriptor %u: next %u beyond %u entries",
					    indirect ? "indirect" : "", idx, next, tbl_num);
		idx = next;
	}
}

/* checked: the queue has an IOTLB, so the fast path's window may lack a direction (vq->xdeny, xflip). Without
 * one the flags it denies are constants, as before windows had permissions: two copies of the loop keep that
 * path's instructions unchanged (an xor and a register test per chain otherwise, callgrind). */
static inline __attribute__((always_inline)) int split_pop_t(struct vhd_vq *vq, struct vhd_vq_chain *chains,
							     unsigned n, struct iovec *iov, unsigned niov,
							     const bool checked)
{
	uint16_t pending = (uint16_t)(vq->avail_seen - vq->last_avail);
	if (pending < n) {
		/* Acquire pairs with the driver's release store of avail->idx (split_add): the ring entries and
		 * descriptors it published are visible from here on, and stay so for later pops up to it. */
		uint16_t avail_idx = RD16_ACQ(&vq->split.avail->idx);
		pending = (uint16_t)(avail_idx - vq->last_avail);
		if (unlikely(pending > vq->num))
			return vhdi_vq_break(vq, VHD_VQ_E_AVAIL_IDX,
					    "avail idx %u is %u entries past %u (queue size %u)", avail_idx, pending,
					    vq->last_avail, vq->num);
		vq->avail_seen = avail_idx;
	}
	if (n > pending)
		n = pending;
	unsigned i;

	/* The burst's descriptors sit in lines the driver's core just wrote: ask for all of them before reading
	 * the first, so that their misses overlap instead of stalling the loop below one after another. The
	 * heads are only hints here (masked into the table); the loop reads and checks them again. */
	for (i = 0; i < n; i++) {
		uint16_t hint = RD16(&vq->split.avail->ring[(uint16_t)(vq->last_avail + i) & vq->mask]);
		__builtin_prefetch(&vq->split.desc[hint & vq->mask]);
	}
	/* Likewise the used entries these chains will be given back in (8 to a line), which the driver's core
	 * last read. For writing: owned by the time split_push() stores to them, they no longer hold up the store
	 * buffer that the notification check's full fence waits for. Only for reading when the last push found
	 * its entries already right (a first-in-first-out driver): taking them would cost the driver a miss. */
	for (i = 0; i < n; i += 8) {
		const void *e = &vq->split.used->ring[(uint16_t)(vq->used_idx + vq->inflight + i) & vq->mask];
		if (vq->used_same)
			__builtin_prefetch(e, 0);
		else
			vhd_prefetch_w(e);
	}

	/* The loop's invariants in locals: with the chains and iovecs stored through pointers, the compiler
	 * would otherwise load them from vq again for every chain (a third of this function's instructions). The
	 * hinted memory region is copied too; the table cannot change during a pop (the queue is held). */
	const uint16_t *ring = vq->split.avail->ring;
	const struct virtq_desc *desc = vq->split.desc;
	const uint16_t mask = vq->mask, num = vq->num;
	uint16_t last = vq->last_avail;
	uint64_t r_gpa = 0, r_size = 0;
	uint8_t *r_host = NULL;
	/* With an IOTLB the hinted region is the window (vhdi_vq_window()), or empty (r_size 0): then every chain
	 * takes the general walk. A descriptor whose direction the window's entry does not allow has a flag in
	 * deny once flip is applied (NEXT and INDIRECT otherwise, as without an IOTLB). */
	uint16_t deny = checked ? vq->xdeny : VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT;
	uint16_t flip = checked ? vq->xflip : 0;
	if (vq->mem_hint < vq->xmem->nregions) {
		const struct vhd_mem_region *hr = &vq->xmem->r[vq->mem_hint];
		r_gpa = hr->guest_addr;
		r_size = hr->size;
		r_host = hr->host;
	}
	struct vhd_chain_acc acc;
	unsigned used_iov = 0;
	/* Descriptors walked beyond one per chain taken (the general walk's): with i, what the budget spent. */
	uint32_t extra = 0;
	bool capped = false;
	for (i = 0; i < n; i++) {
		uint16_t head = RD16(&ring[last & mask]);
		if (unlikely(head >= num)) {
			vq->last_avail = last;
			return vhdi_vq_break(vq, VHD_VQ_E_HEAD, "avail ring entry %u names descriptor %u of %u", last,
					    head, num);
		}
		/* A chain of one plain, non-empty descriptor inside the hinted region, what net drivers post:
		 * mapped here directly (the bounds as vhd_region_contains() checks them, no sum can overflow). The
		 * descriptor is read once, into locals, like the general walk does; anything else (chains, tables,
		 * empty or unmapped buffers, a full iov[]) takes that walk. */
		const struct virtq_desc *d = &desc[head];
		uint16_t flags = RD16(&d->flags);
		uint64_t addr = RD64(&d->addr);
		uint32_t len = RD32(&d->len);
		/* Below the region, off wraps past r_size (a region ends inside the address space); len 0 wraps
		 * len - 1 past any room; no region leaves r_size 0. */
		uint64_t off = addr - r_gpa;
		if (likely(!((flags ^ flip) & deny) && used_iov < niov && off < r_size && (uint64_t)len - 1 < r_size - off)) {
take_plain:
			iov[used_iov] = (struct iovec){.iov_base = r_host + off, .iov_len = len};
			vhdi_chain_plain(&chains[i], head, flags & VIRTQ_DESC_F_WRITE, len, &iov[used_iov]);
			used_iov++;
			last++;
			continue;
		}
		if (checked && !(flags & (VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT))) {
			/* With an IOTLB of one 4 KiB entry a buffer, as guests map them, the next buffer mostly
			 * lies in a neighbouring entry: the window moves there, found beside the last entry (no
			 * general walk). The IOTLB cannot change during a pop, so the copy stays true to it. */
			struct vhd_mem_region w;
			unsigned perm = vhdi_iotlb_window_at(vq->iotlb, &vq->iotlb_hint, addr, &w);
			if (perm) {
				r_gpa = w.guest_addr;
				r_size = w.size;
				r_host = w.host;
				deny = vhdi_window_deny(perm);
				flip = vhdi_window_flip(perm);
				off = addr - r_gpa;
				if (!((flags ^ flip) & deny) && used_iov < niov && off < r_size &&
				    (uint64_t)len - 1 < r_size - off)
					goto take_plain;
			}
		}
		vq->last_avail = last;
		vhd_chain_begin(&acc, iov, used_iov, niov, vhdi_walk_allowance(i, i + extra));
		int r = split_walk(vq, head, &acc);
		if (unlikely(r < 0))
			return r;
		if (!vhdi_walk_done(vq, r, &acc, &chains[i], i, &extra))
			break;
		chains[i].id = head;
		chains[i].ndesc = 1;
		used_iov += acc.n;
		last++;
		if (unlikely(chains[i].err)) {
			i++;
			break;
		}
		unsigned cap = vhdi_walk_cap(i, n, extra);
		if (cap < n) {
			n = cap;
			capped = true;
		}
	}
	/* n was at most the chains published: stopping at a smaller n left some for the budget. */
	if (unlikely(capped) && i == n)
		vq->stats.budget_stops++;
	vq->last_avail = last;
	vq->inflight = (uint16_t)(vq->inflight + i);
	vq->stats.chains += i;
	vq->stats.descs += i + extra;
	return (int)i;
}

static int split_pop(struct vhd_vq *vq, struct vhd_vq_chain *chains, unsigned n, struct iovec *iov, unsigned niov)
{
	if (unlikely(vq->iotlb != NULL))
		return split_pop_t(vq, chains, n, iov, niov, true);
	return split_pop_t(vq, chains, n, iov, niov, false);
}

int vhdi_split_pop_head(struct vhd_vq *vq, uint16_t head, struct vhd_vq_chain *c, struct iovec *iov, unsigned niov,
			unsigned i, unsigned *segs)
{
	struct vhd_chain_acc acc;
	vhd_chain_begin(&acc, iov, 0, niov, UINT32_MAX);
	int r = split_walk(vq, head, &acc);
	if (r < 0)
		return r;
	if (r == VHDI_WALK_MISS) {
		vq->stats.iotlb_misses++;
		return 0;
	}
	if (!vhd_chain_finish(vq, c, &acc, i))
		return 0;
	c->id = head;
	c->ndesc = 1;
	*segs = acc.n;
	vq->inflight++;
	vq->stats.chains++;
	vq->stats.descs += acc.walked;
	return 1;
}

static int split_push(struct vhd_vq *vq, const struct vhd_vq_used *used, unsigned n)
{
	if (unlikely(n > vq->inflight))
		return vhdi_vq_break(vq, VHD_VQ_E_CALLER, "pushing %u chains with %u popped", n, vq->inflight), -EINVAL;
	struct virtq_used *u = vq->split.used;
	uint16_t idx = vq->used_idx;
	bool batch = vq->in_order && n > 1;
	for (unsigned i = 0; i < n; i++) {
		if (unlikely(used[i].id >= vq->num))
			return vhdi_vq_break(vq, VHD_VQ_E_CALLER, "pushing id %u of %u", used[i].id, vq->num), -EINVAL;
		batch = batch && used[i].len == 0;
	}
	if (batch) {
		/* IN_ORDER (2.7.9-ish "in-order use"): one entry naming the last buffer stands for the whole batch;
		 * the driver completes everything up to it and skips idx forward by n. */
		WR32(&u->ring[idx & vq->mask].id, used[n - 1].id);
		WR32(&u->ring[idx & vq->mask].len, 0);
		idx = (uint16_t)(idx + n);
	} else {
		/* A driver that recycles descriptors first in, first out (DPDK's virtio PMD, our own) gets the same
		 * head back in each used slot every lap, and for frames of one size the same length: an entry that
		 * already holds what it should is left alone, so its line stays shared with the driver's core (which
		 * then reads it from its own cache) instead of being taken back and forth. */
		unsigned same = 0;
		const uint16_t mask = vq->mask; /* not reloaded after each store below */
		for (unsigned i = 0; i < n; i++, idx++) {
			struct virtq_used_elem *e = &u->ring[idx & mask];
			if (RD32(&e->id) == used[i].id && RD32(&e->len) == used[i].len) {
				same++;
				continue;
			}
			WR32(&e->id, used[i].id);
			WR32(&e->len, used[i].len);
		}
		vq->used_same = same == n;
	}
	/* Release pairs with the driver's acquire load of used->idx (split_get): the entries above, and the data
	 * the caller wrote into the buffers before calling us, are visible before the index that publishes them. */
	WR16_REL(&u->idx, idx);
	vq->used_idx = idx;
	vq->inflight = (uint16_t)(vq->inflight - n);
	vq->stats.used += n;
	return (int)n;
}

static bool split_dev_need_notify(struct vhd_vq *vq)
{
	/* The used->idx store must be visible before we read used_event/flags. Pairs with the fence in
	 * split_drv_enable_notify: the driver writes used_event then re-reads used->idx, so either it sees our new
	 * index or we see its new used_event, and no interrupt is lost. Nothing published since the last check
	 * needs no notification and no fence: a poll of an idle queue stays free of the serialising instruction. */
	if (vq->notify_old == vq->used_idx)
		return false;
	FULL_FENCE();
	uint16_t old = vq->notify_old, new_idx = vq->used_idx;
	vq->notify_old = new_idx;
	if (old == new_idx)
		return false;
	if (vq->event_idx)
		return vring_need_event(RD16(used_event_ptr(vq)), new_idx, old);
	return !(RD16(&vq->split.avail->flags) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

static bool split_dev_enable_notify(struct vhd_vq *vq)
{
	if (vq->event_idx)
		WR16(avail_event_ptr(vq), vq->last_avail);
	else
		WR16(&vq->split.used->flags, 0);
	/* Publish avail_event/flags before re-checking avail->idx. Pairs with the fence in split_drv_need_notify
	 * between the driver's avail->idx store and its read of avail_event/flags. */
	FULL_FENCE();
	return RD16(&vq->split.avail->idx) != vq->last_avail;
}

static void split_dev_disable_notify(struct vhd_vq *vq)
{
	/* With EVENT_IDX a stale avail_event already stops kicks once the driver passes it. */
	if (!vq->event_idx)
		WR16(&vq->split.used->flags, VIRTQ_USED_F_NO_NOTIFY);
}

static unsigned split_ahead(const struct vhd_vq *vq, struct vhd_vq_seg_view *v, unsigned max)
{
	/* Acquire pairs with the driver's release store of avail->idx (split_add), as in split_pop(). */
	uint16_t pending = (uint16_t)(RD16_ACQ(&vq->split.avail->idx) - vq->last_avail);
	if (pending > vq->num)
		return 0; /* the pop breaks the queue for it */
	unsigned n = 0;
	for (uint16_t k = 0; k < pending && n < max; k++) {
		uint16_t idx = RD16(&vq->split.avail->ring[(uint16_t)(vq->last_avail + k) & vq->mask]);
		for (unsigned j = 0; j < 4 && idx < vq->num && n < max; j++) {
			const struct virtq_desc *d = &vq->split.desc[idx];
			v[n] = (struct vhd_vq_seg_view){RD64(&d->addr), RD32(&d->len), RD16(&d->flags)};
			if (!(v[n++].flags & VIRTQ_DESC_F_NEXT))
				break;
			idx = RD16(&d->next);
		}
	}
	return n;
}

const struct vhd_vq_ops vhdi_split_device_ops = {
	.ahead = split_ahead,
	.pop = split_pop,
	.push = split_push,
	.need_notify = split_dev_need_notify,
	.enable_notify = split_dev_enable_notify,
	.disable_notify = split_dev_disable_notify,
};

/* =============================== driver side =============================== */

static uint32_t in_bytes(const struct vhd_vq_buf *b)
{
	uint64_t sum = 0;
	for (unsigned j = b->nout; j < (unsigned)b->nout + b->nin; j++)
		sum += b->segs[j].len;
	return sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
}

/* Plain stores, even where the descriptor may already hold the values: comparing first (to keep the line
 * shared) never found them equal, since a recycled buffer comes back to a different descriptor (the pool hands
 * out buffers freed one collection earlier than the descriptors), and load-then-store took the line twice
 * (guest TX/RX 64 B loopback 11-13% faster without the compares, alternating runs). */
static inline void fill_desc(struct virtq_desc *d, const struct vhd_vq_seg *s, uint16_t flags, uint16_t next)
{
	WR64(&d->addr, s->addr);
	WR32(&d->len, s->len);
	WR16(&d->flags, flags);
	WR16(&d->next, next);
}

/* fill_desc() for a last descriptor, storing only if it changes: a driver whose pool hands each descriptor
 * the buffer it had the lap before (vhd_pkt_alloc_bulk()) writes nothing, and the line stays shared with the
 * device's core, which read it, instead of being taken back (the stores were two fifths of a sender). */
static inline void fill_desc_same(struct virtq_desc *d, const struct vhd_vq_seg *s, uint16_t flags)
{
	uint64_t tail = vhd_cpu_to_le64((uint64_t)s->len | (uint64_t)flags << 32);
	uint64_t *w = (uint64_t *)d;
	_Static_assert(offsetof(struct virtq_desc, len) == 8 && offsetof(struct virtq_desc, flags) == 12 &&
			       offsetof(struct virtq_desc, next) == 14,
		       "virtq_desc: addr, then len, flags, next in the second 8 bytes");
	if (__atomic_load_n(&w[0], __ATOMIC_RELAXED) != vhd_cpu_to_le64(s->addr))
		__atomic_store_n(&w[0], vhd_cpu_to_le64(s->addr), __ATOMIC_RELAXED);
	if (__atomic_load_n(&w[1], __ATOMIC_RELAXED) != tail)
		__atomic_store_n(&w[1], tail, __ATOMIC_RELAXED);
}

static int split_add(struct vhd_vq *vq, const struct vhd_vq_buf *bufs, unsigned n)
{
	uint16_t avail = vq->last_avail;
	unsigned i;
	for (i = 0; i < n; i++) {
		const struct vhd_vq_buf *b = &bufs[i];
		unsigned nseg = (unsigned)b->nout + b->nin;
		if (likely(nseg == 1 && !(b->flags & VHD_VQ_BUF_INDIRECT))) {
			/* One descriptor, no table: what a net driver adds for every packet. */
			if (unlikely(vq->num_free == 0))
				break;
			uint16_t head = vq->in_order ? vq->next_desc : vq->free_head;
			fill_desc_same(&vq->split.desc[head], &b->segs[0], b->nin ? VIRTQ_DESC_F_WRITE : 0);
			if (vq->in_order) {
				vq->next_desc = (uint16_t)((head + 1) & vq->mask);
				vhdi_fifo_push(vq, head);
			} else {
				vq->free_head = vq->free_next[head];
			}
			vq->num_free--;
			vq->slots[head] = (struct vhd_vq_drv_slot){
				.token = b->token, .in_len = b->nin ? b->segs[0].len : 0, .ndesc = 1, .last = head,
				.busy = true};
			/* With the free list in rotation (split_complete()) the slot mostly holds this head already from
			 * the last lap: not storing it leaves the line shared with the device's core instead of taking
			 * it back (the avail ring entries were a third of the device's split_pop() in perf). */
			uint16_t *slot = &vq->split.avail->ring[avail & vq->mask];
			if (__atomic_load_n(slot, __ATOMIC_RELAXED) != vhd_cpu_to_le16(head))
				WR16(slot, head);
			avail++;
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
		if (need > vq->num_free)
			break;
		/* IN_ORDER drivers use descriptors in ring order (2.7.5); others take them from the free list. */
		uint16_t head = vq->in_order ? vq->next_desc : vq->free_head;
		uint16_t last;
		if (ind) {
			size_t off = (size_t)head * vq->ind_max * sizeof(struct virtq_desc);
			struct virtq_desc *t = (struct virtq_desc *)(vq->ind_base + off);
			for (unsigned j = 0; j < nseg; j++)
				fill_desc(&t[j], &b->segs[j],
					  (uint16_t)((j >= b->nout ? VIRTQ_DESC_F_WRITE : 0) |
						     (j + 1 < nseg ? VIRTQ_DESC_F_NEXT : 0)),
					  (uint16_t)(j + 1 < nseg ? j + 1 : 0));
			struct vhd_vq_seg tseg = {vq->ind_addr + off, (uint32_t)(nseg * sizeof(struct virtq_desc))};
			fill_desc(&vq->split.desc[head], &tseg, VIRTQ_DESC_F_INDIRECT, 0);
			last = head;
		} else {
			uint16_t idx = head;
			for (unsigned j = 0;; j++) {
				uint16_t next = vq->in_order ? (uint16_t)((idx + 1) & vq->mask) : vq->free_next[idx];
				bool more = j + 1 < nseg;
				fill_desc(&vq->split.desc[idx], &b->segs[j],
					  (uint16_t)((j >= b->nout ? VIRTQ_DESC_F_WRITE : 0) | (more ? VIRTQ_DESC_F_NEXT : 0)),
					  more ? next : 0);
				if (!more) {
					last = idx;
					break;
				}
				idx = next;
			}
		}
		if (vq->in_order)
			vq->next_desc = (uint16_t)((last + 1) & vq->mask);
		else
			vq->free_head = vq->free_next[last];
		vq->num_free = (uint16_t)(vq->num_free - need);
		struct vhd_vq_drv_slot *s = &vq->slots[head];
		s->token = b->token;
		s->in_len = in_bytes(b);
		s->ndesc = (uint16_t)need;
		s->last = last;
		s->busy = true;
		if (vq->in_order)
			vhdi_fifo_push(vq, head);
		WR16(&vq->split.avail->ring[avail & vq->mask], head);
		avail++;
	}
	if (i) {
		/* Release pairs with the device's acquire load of avail->idx (split_pop): descriptors, indirect
		 * tables, ring entries and buffer contents written above are visible before the index is. */
		WR16_REL(&vq->split.avail->idx, avail);
		vq->last_avail = avail;
		vq->inflight = (uint16_t)(vq->inflight + i);
		vq->stats.chains += i;
	}
	return (int)i;
}

/* Return head's descriptors to the free pool and hand its token back. */
static void split_complete(struct vhd_vq *vq, uint16_t head, uint32_t len, struct vhd_vq_done *d)
{
	struct vhd_vq_drv_slot *s = &vq->slots[head];
	d->token = s->token;
	d->len = len;
	s->busy = false;
	if (!vq->in_order) {
		/* First in, first out, as DPDK's virtio PMD does: the device completes in the order buffers were
		 * made available, so descriptors then come round in a fixed rotation and each avail slot gets the
		 * same head every lap, which split_add() then need not store (see there). */
		if (vq->num_free == 0)
			vq->free_head = head;
		else
			vq->free_next[vq->free_tail] = head;
		vq->free_tail = s->last;
	}
	vq->num_free = (uint16_t)(vq->num_free + s->ndesc);
	vq->inflight--;
	vq->stats.used++;
}

/* IN_ORDER: hand out buffers a batched used entry already completed. */
static unsigned drain_in_order(struct vhd_vq *vq, struct vhd_vq_done *done, unsigned n)
{
	unsigned got = 0;
	while (vq->ino_pending && got < n) {
		uint16_t head = vhdi_fifo_pop(vq);
		vq->ino_pending--;
		split_complete(vq, head, vq->ino_pending ? 0 : vq->ino_len, &done[got++]);
	}
	return got;
}

static int split_get(struct vhd_vq *vq, struct vhd_vq_done *done, unsigned n)
{
	unsigned got = drain_in_order(vq, done, n);
	/* Acquire pairs with the device's release store of used->idx (split_push). */
	uint16_t used_idx = RD16_ACQ(&vq->split.used->idx);
	uint16_t ready = (uint16_t)(used_idx - vq->used_idx);
	if (unlikely(ready > vq->inflight - vq->ino_pending))
		return vhdi_get_broken(got, vhdi_vq_break(vq, VHD_VQ_E_USED_IDX,
							 "used idx %u is %u past %u with %u buffers in flight",
							 used_idx, ready, vq->used_idx, vq->inflight - vq->ino_pending));
	while (got < n && vq->used_idx != used_idx) {
		struct virtq_used_elem *e = &vq->split.used->ring[vq->used_idx & vq->mask];
		uint32_t id = RD32(&e->id);
		uint32_t len = RD32(&e->len);
		if (unlikely(id >= vq->num || !vq->slots[id].busy))
			return vhdi_get_broken(got, vhdi_vq_break(vq, VHD_VQ_E_USED_ID,
								 "used entry %u names id %u, not in flight",
								 vq->used_idx, id));
		if (unlikely(len > vq->slots[id].in_len))
			return vhdi_get_broken(got, vhdi_vq_break(vq, VHD_VQ_E_USED_LEN,
								 "used entry %u: len %u exceeds the %u writable bytes",
								 vq->used_idx, len, vq->slots[id].in_len));
		if (vq->in_order) {
			unsigned span = vhdi_fifo_span(vq, (uint16_t)id);
			if (unlikely(span == 0 || span > (uint16_t)(used_idx - vq->used_idx)))
				return vhdi_get_broken(
					got, vhdi_vq_break(vq, VHD_VQ_E_USED_IDX,
							   "in-order used entry %u (id %u) covers %u buffers, only %u published",
							   vq->used_idx, id, span, (uint16_t)(used_idx - vq->used_idx)));
			vq->used_idx = (uint16_t)(vq->used_idx + span);
			vq->ino_pending = (uint16_t)span;
			vq->ino_len = len;
			got += drain_in_order(vq, done + got, n - got);
		} else {
			vq->used_idx++;
			split_complete(vq, (uint16_t)id, len, &done[got++]);
		}
	}
	return (int)got;
}

static bool split_drv_need_notify(struct vhd_vq *vq)
{
	/* The avail->idx store must be visible before we read avail_event/flags. Pairs with the fence in
	 * split_dev_enable_notify. As on the device side, nothing new to announce needs neither. */
	if (vq->notify_old == vq->last_avail)
		return false;
	FULL_FENCE();
	uint16_t old = vq->notify_old, new_idx = vq->last_avail;
	vq->notify_old = new_idx;
	if (old == new_idx)
		return false;
	if (vq->event_idx)
		return vring_need_event(RD16(avail_event_ptr(vq)), new_idx, old);
	return !(RD16(&vq->split.used->flags) & VIRTQ_USED_F_NO_NOTIFY);
}

static bool split_drv_enable_notify(struct vhd_vq *vq)
{
	if (vq->event_idx)
		WR16(used_event_ptr(vq), vq->used_idx);
	else
		WR16(&vq->split.avail->flags, 0);
	/* Pairs with the fence in split_dev_need_notify. */
	FULL_FENCE();
	return vq->ino_pending || RD16(&vq->split.used->idx) != vq->used_idx;
}

static void split_drv_disable_notify(struct vhd_vq *vq)
{
	if (!vq->event_idx)
		WR16(&vq->split.avail->flags, VIRTQ_AVAIL_F_NO_INTERRUPT);
}

const struct vhd_vq_ops vhdi_split_driver_ops = {
	.add = split_add,
	.get = split_get,
	.need_notify = split_drv_need_notify,
	.enable_notify = split_drv_enable_notify,
	.disable_notify = split_drv_disable_notify,
};
