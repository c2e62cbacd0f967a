/* SPDX-License-Identifier: MIT */
/*
 * Inflight I/O tracking for split rings (vhost-user.rst, "Inflight I/O tracking"): the heads a device took and has
 * not used yet are kept in a region the front-end holds, so that a device killed at any point and started again
 * gives back exactly those, once each. The protocol:
 *
 *   pop:  desc[head].counter = counter++, then desc[head].inflight = 1.
 *   push: desc[id].next = last_batch_head, last_batch_head = id (for the whole batch); the used entries and
 *         used->idx (the push itself); desc[id].inflight = 0; region used_idx = used->idx.
 *   recovery: used->idx != region used_idx means the device died between publishing a batch and clearing it:
 *         the (used->idx - used_idx) heads listed from last_batch_head are cleared. What is still marked was taken
 *         and not used, and is resubmitted in counter order.
 *
 * Packed rings (the same section's packed algorithm): the ring slots a chain took are overwritten by used
 * descriptors, so the region keeps a copy of each chain's descriptors in entries taken from a free list, and
 * commits or rolls back the last update with the old_* fields:
 *
 *   pop:  the chain's descriptors copied into entries from free_head on (num, last, counter on the first), then
 *         the first's inflight = 1, then old_free_head = free_head (the commit: before it the entries are free).
 *   push: each chain's entries spliced back onto the free list, used_idx and its wrap counter moved; the push
 *         itself; the heads' inflight = 0; old_free_head, old_used_idx, old_used_wrap_counter = the new values.
 *   recovery: used position != old used position means the device died inside a push: if the slot at the old
 *         used position is no longer available in its lap the push was published and is committed, else rolled
 *         back. Entries on the free list are cleared; the heads still marked are resubmitted in counter order.
 *         The device's avail position is the used one plus the slots of the chains in flight.
 *
 * The region is written with relaxed atomic stores (the reader is another process, or the next incarnation of
 * this one, after we are gone) and release fences where the order matters; each names its pair in recovery.
 */
#include <stdlib.h>

#include "virtq_impl.h"

#define INFL_ALIGN 64u

size_t vhd_vq_inflight_size(bool packed, uint32_t num)
{
	if (num == 0 || num > 32768 || (!packed && (num & (num - 1))))
		return 0;
	size_t sz = packed ? sizeof(struct vhost_user_inflight_packed) +
				     (size_t)num * sizeof(struct vhost_user_inflight_desc_packed)
			   : sizeof(struct vhost_user_inflight_split) +
				     (size_t)num * sizeof(struct vhost_user_inflight_desc_split);
	return (sz + INFL_ALIGN - 1) & ~(size_t)(INFL_ALIGN - 1);
}

#define ST8(p, v) __atomic_store_n((p), (uint8_t)(v), __ATOMIC_RELAXED)
#define ST16(p, v) __atomic_store_n((p), (uint16_t)(v), __ATOMIC_RELAXED)
#define ST32(p, v) __atomic_store_n((p), (uint32_t)(v), __ATOMIC_RELAXED)
#define ST64(p, v) __atomic_store_n((p), (uint64_t)(v), __ATOMIC_RELAXED)
#define LD8(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define LD16(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define LD64(p) __atomic_load_n((p), __ATOMIC_RELAXED)

#define INFL_NONE 0xffffu
#define INFL_PUSHING 0x8000u /* on an infl_ent[] entry: named earlier in the push being recorded */

/* Mark chains[0..n) taken. */
static void split_mark_taken(struct vhd_vq *vq, const struct vhd_vq_chain *chains, unsigned n)
{
	struct vhost_user_inflight_desc_split *d = ((struct vhost_user_inflight_split *)vq->infl)->desc;
	for (unsigned i = 0; i < n; i++)
		ST64(&d[chains[i].id].counter, vq->infl_counter++);
	/* Release: each head's counter before its inflight flag. Pairs with the acquire fence in split_recover(), which
	 * reads the flags first and the counters of the marked heads after it. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (unsigned i = 0; i < n; i++)
		ST8(&d[chains[i].id].inflight, 1);
}

/* Packed: record chains[0..n), which the ring's pop took from slot pos on. */
static int packed_mark_taken(struct vhd_vq *vq, const struct vhd_vq_chain *chains, unsigned n, uint16_t pos)
{
	struct vhost_user_inflight_packed *reg = vq->infl;
	struct vhost_user_inflight_desc_packed *d = reg->desc;
	uint16_t num = vq->num, fh = vq->infl_free;
	for (unsigned k = 0; k < n; k++) {
		uint16_t id = chains[k].id, head = fh, last = fh;
		if (id >= num || vq->infl_ent[id] != INFL_NONE)
			return vhdi_vq_break(vq, VHD_VQ_E_PACKED_FLAGS, "buffer id %u is %s", id,
					    id >= num ? "beyond the queue size (inflight tracking needs ids below it)"
						      : "already in flight");
		/* The slots still hold the driver's descriptors: nothing is written over them before the push. */
		for (unsigned j = 0; j < chains[k].ndesc; j++) {
			if (fh >= num)
				return vhdi_vq_break(vq, VHD_VQ_E_NEXT, "inflight region: free list ends (entry %u)", fh);
			const struct pvirtq_desc *s = &vq->packed.desc[pos];
			struct vhost_user_inflight_desc_packed *x = &d[fh];
			ST64(&x->addr, RD64(&s->addr));
			ST32(&x->len, RD32(&s->len));
			ST16(&x->flags, RD16(&s->flags));
			ST16(&x->id, RD16(&s->id));
			last = fh;
			fh = LD16(&x->next);
			pos = (uint16_t)(pos + 1 == num ? 0 : pos + 1);
		}
		ST16(&d[head].num, chains[k].ndesc);
		ST16(&d[head].last, last);
		ST64(&d[head].counter, vq->infl_counter++);
		vq->infl_ent[id] = head;
	}
	/* Release: the copies, num, last and counter before the inflight flags. Pairs with the acquire fence in
	 * packed_recover(), which walks a chain only for a head it saw marked. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (unsigned k = 0; k < n; k++)
		ST8(&d[vq->infl_ent[chains[k].id]].inflight, 1);
	/* Release: the flags before old_free_head, which takes the entries off the free list for recovery (until
	 * then it finds them free, clears them, and the ring gives the chains again). Same pair. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	ST16(&reg->free_head, fh);
	ST16(&reg->old_free_head, fh);
	vq->infl_free = fh;
	return 0;
}

/* Packed: a resubmission, checked to be the chain recovery mapped its buffer id to. */
static int packed_pop_resub(struct vhd_vq *vq, uint16_t head, struct vhd_vq_chain *c, struct iovec *iov,
			    unsigned niov, unsigned i, unsigned *segs)
{
	struct vhost_user_inflight_packed *reg = vq->infl;
	int r = vhdi_packed_pop_saved(vq, reg->desc, head, c, iov, niov, i, segs);
	if (r == 1 && (c->id >= vq->num || vq->infl_ent[c->id] != head))
		return vhdi_vq_break(vq, VHD_VQ_E_NEXT, "inflight entry %u changed under the device (buffer id %u)",
				    head, c->id);
	return r;
}

int vhdi_infl_pop(struct vhd_vq *vq, struct vhd_vq_chain *chains, unsigned n, struct iovec *iov, unsigned niov)
{
	unsigned got = 0, seg = 0;
	/* Resubmissions first, oldest first: they are already marked, keep their counters, and move no index. */
	while (got < n && vq->resub_pos < vq->resub_n) {
		unsigned segs = 0;
		int r = vq->is_packed ? packed_pop_resub(vq, vq->resub[vq->resub_pos], &chains[got], iov + seg,
							 niov - seg, got, &segs)
				      : vhdi_split_pop_head(vq, vq->resub[vq->resub_pos], &chains[got], iov + seg,
							    niov - seg, got, &segs);
		if (r < 0)
			return got ? (int)got : r;
		if (r == 0)
			break;
		vq->resub_pos++;
		seg += segs;
		got++;
		if (chains[got - 1].err)
			break;
	}
	vq->last_ring = 0;
	if (got < n && vq->resub_pos == vq->resub_n && (got == 0 || !chains[got - 1].err)) {
		uint16_t pos = vq->last_avail;
		int r = vq->ops->pop(vq, chains + got, n - got, iov + seg, niov - seg);
		if (r < 0)
			return got ? (int)got : r;
		if (!vq->is_packed)
			split_mark_taken(vq, chains + got, (unsigned)r);
		else if (packed_mark_taken(vq, chains + got, (unsigned)r, pos) < 0)
			return -EIO;
		vq->last_ring = (uint16_t)r;
		got += (unsigned)r;
	}
	return (int)got;
}

/* Packed: entry e (the chain of buffer id id) back on the free list headed by *fh, its id no longer in flight. */
static int packed_free_entry(struct vhd_vq *vq, uint16_t id, uint16_t e, uint16_t *fh)
{
	struct vhost_user_inflight_desc_packed *d = ((struct vhost_user_inflight_packed *)vq->infl)->desc;
	uint16_t last = LD16(&d[e].last);
	if (last >= vq->num)
		return vhdi_vq_break(vq, VHD_VQ_E_NEXT, "inflight entry %u: last %u beyond the queue", e, last);
	ST16(&d[last].next, *fh);
	*fh = e;
	vq->infl_ent[id] = INFL_NONE;
	return 0;
}

static int packed_push(struct vhd_vq *vq, const struct vhd_vq_used *used, unsigned n)
{
	struct vhost_user_inflight_packed *reg = vq->infl;
	uint16_t fh = vq->infl_free, heads[64];
	unsigned done = 0;
	/* In bursts of what heads[] holds: each is a push of its own, committed before the next. */
	while (done < n) {
		unsigned m = n - done < 64 ? n - done : 64;
		const struct vhd_vq_used *u = used + done;
		uint32_t slots = 0;
		for (unsigned i = 0; i < m; i++) {
			uint16_t e = u[i].id < vq->num ? vq->infl_ent[u[i].id] : INFL_NONE;
			if (e == INFL_NONE)
				return vhdi_vq_break(vq, VHD_VQ_E_CALLER, "pushing buffer id %u, which is not in flight",
						    u[i].id), -EINVAL;
			if (packed_free_entry(vq, u[i].id, e, &fh) < 0)
				return -EIO;
			heads[i] = e;
			slots += u[i].ndesc;
		}
		/* The push refuses more slots than are out, before writing anything; the region is then left to
		 * roll back. */
		unsigned p = vq->used_idx + (slots <= vq->num ? slots : 0);
		bool w = vq->used_wrap;
		if (p >= vq->num) {
			p -= vq->num;
			w = !w;
		}
		ST16(&reg->free_head, fh);
		ST16(&reg->used_idx, p);
		ST8(&reg->used_wrap_counter, w);
		/* Release: the new free list and used position before the push publishes the batch. Pairs with the
		 * acquire load of the slot's flags in packed_recover(): a batch seen published has them. */
		__atomic_thread_fence(__ATOMIC_RELEASE);
		int r = vhdi_push_logged(vq, u, m);
		if (r < 0)
			return r;
		for (unsigned i = 0; i < m; i++)
			ST8(&reg->desc[heads[i]].inflight, 0);
		/* Release: the cleared flags before the commit. Pairs with the acquire fence of packed_recover(). */
		__atomic_thread_fence(__ATOMIC_RELEASE);
		ST16(&reg->old_free_head, fh);
		ST16(&reg->old_used_idx, vq->used_idx);
		ST8(&reg->old_used_wrap_counter, vq->used_wrap);
		vq->infl_free = fh;
		done += m;
	}
	return (int)n;
}

int vhdi_infl_push(struct vhd_vq *vq, const struct vhd_vq_used *used, unsigned n)
{
	if (vq->is_packed)
		return packed_push(vq, used, n);
	struct vhost_user_inflight_split *reg = vq->infl;
	struct vhost_user_inflight_desc_split *d = reg->desc;
	/* Out-of-range ids are the push's to refuse (it breaks the queue before writing anything). */
	for (unsigned i = 0; i < n; i++)
		if (unlikely(used[i].id >= vq->num))
			return vhdi_push_logged(vq, used, n);
	uint16_t head = vq->infl_batch_head;
	for (unsigned i = 0; i < n; i++) {
		ST16(&d[used[i].id].next, head);
		head = used[i].id;
	}
	ST16(&reg->last_batch_head, head);
	vq->infl_batch_head = head;
	/* Release: the batch list before the used index that makes recovery walk it. Pairs with the acquire load
	 * of used->idx in split_recover() (the push's own store of it is a release too, but the list must not be
	 * reordered after the entries either). */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	int r = vhdi_push_logged(vq, used, n);
	if (r < 0)
		return r;
	/* The push's release store of used->idx orders it before these: a head is cleared only once its used entry
	 * is published, so no death between the two loses it. */
	for (unsigned i = 0; i < n; i++)
		ST8(&d[used[i].id].inflight, 0);
	/* Release: the cleared flags before used_idx, which says they are right. Pairs with the acquire fence in
	 * recover() after it compares used_idx with used->idx and before it trusts the flags. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	ST16(&reg->used_idx, vq->used_idx);
	return r;
}

unsigned vhdi_infl_unpop(struct vhd_vq *vq, const struct vhd_vq_used *chains, unsigned n)
{
	/* The n chains popped last: the ring's part of the last pop comes last, the resubmitted ones before it. */
	unsigned ring = n < vq->last_ring ? n : vq->last_ring;
	if (vq->is_packed) {
		/* Their entries back on the free list, committed before their flags are cleared: a death in
		 * between finds them free, or in flight and counted in the avail position; never neither. */
		struct vhost_user_inflight_packed *reg = vq->infl;
		uint16_t fh = vq->infl_free;
		unsigned freed = 0;
		for (unsigned i = n - ring; i < n; i++) {
			uint16_t id = chains[i].id, e = id < vq->num ? vq->infl_ent[id] : INFL_NONE;
			if (e != INFL_NONE && packed_free_entry(vq, id, e, &fh) == 0)
				freed++;
		}
		/* Release: the links before the commit. Pairs with the acquire fence of packed_recover(). */
		__atomic_thread_fence(__ATOMIC_RELEASE);
		ST16(&reg->free_head, fh);
		ST16(&reg->old_free_head, fh);
		vq->infl_free = fh;
		/* The freed chains head the list now, newest first: walk them to clear their flags. */
		for (uint16_t e = fh; freed-- > 0 && e < vq->num;) {
			ST8(&reg->desc[e].inflight, 0);
			uint16_t last = LD16(&reg->desc[e].last);
			e = last < vq->num ? LD16(&reg->desc[last].next) : INFL_NONE;
		}
	}
	for (unsigned i = n - ring; i < n && !vq->is_packed; i++)
		if (chains[i].id < vq->num)
			ST8(&((struct vhost_user_inflight_split *)vq->infl)->desc[chains[i].id].inflight, 0);
	vq->last_ring = (uint16_t)(vq->last_ring - ring);
	unsigned back = n - ring; /* resubmitted ones stay marked and go back on their list */
	vq->resub_pos = (uint16_t)(back < vq->resub_pos ? vq->resub_pos - back : 0);
	return ring;
}

struct infl_ord {
	uint64_t counter;
	uint16_t head;
};

static int by_counter(const void *a, const void *b)
{
	const struct infl_ord *x = a, *y = b;
	if (x->counter != y->counter)
		return x->counter < y->counter ? -1 : 1;
	return x->head < y->head ? -1 : x->head > y->head;
}

/* A region written before: finish or roll back the last batch, collect what is in flight. */
static int split_recover(struct vhd_vq *vq, struct vhost_user_inflight_split *reg, const char **why)
{
	struct vhost_user_inflight_desc_split *d = reg->desc;
	uint16_t num = vq->num;
	/* Acquire pairs with the release store of used->idx in split_push() (and the fence before it in
	 * vhdi_infl_push()): the batch list of the entries it published is complete. */
	uint16_t ring_used = RD16_ACQ(&vq->split.used->idx);
	uint16_t reg_used = LD16(&reg->used_idx);
	uint16_t batch = (uint16_t)(ring_used - reg_used);
	if (batch > num) {
		*why = "used index of the ring is more than the queue size past the region's used_idx";
		return -EINVAL;
	}
	uint16_t h = LD16(&reg->last_batch_head);
	for (unsigned k = 0; k < batch; k++) {
		if (h >= num) {
			*why = "last batch list names a head beyond the queue size";
			return -EINVAL;
		}
		ST8(&d[h].inflight, 0);
		h = LD16(&d[h].next);
	}
	ST16(&reg->used_idx, ring_used);
	/* Acquire pairs with the release fences of mark_taken() and vhdi_infl_push(): a flag seen set has its
	 * counter, one seen clear after used_idx matched was cleared for a published entry. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	struct infl_ord *ord = malloc(sizeof(*ord) * num);
	uint16_t *resub = malloc(sizeof(*resub) * num);
	if (!ord || !resub) {
		free(ord);
		free(resub);
		*why = "out of memory";
		return -ENOMEM;
	}
	unsigned cnt = 0;
	uint64_t max = 0;
	for (unsigned i = 0; i < num; i++) {
		uint8_t f = LD8(&d[i].inflight);
		if (f > 1) {
			free(ord);
			free(resub);
			*why = "a descriptor's inflight flag is neither 0 nor 1";
			return -EINVAL;
		}
		if (!f)
			continue;
		ord[cnt].counter = LD64(&d[i].counter);
		ord[cnt].head = (uint16_t)i;
		if (ord[cnt].counter > max)
			max = ord[cnt].counter;
		cnt++;
	}
	qsort(ord, cnt, sizeof(*ord), by_counter);
	for (unsigned i = 0; i < cnt; i++)
		resub[i] = ord[i].head;
	free(ord);
	free(vq->resub);
	vq->resub = resub;
	vq->resub_n = (uint16_t)cnt;
	vq->resub_pos = 0;
	vq->infl_counter = max + 1;
	vq->infl_batch_head = h;
	/* Every head taken and not used is in flight, and one used entry (or one step of an in-order batch) was
	 * written per head used: the driver's next chain is that many past the used index. */
	vq->used_idx = ring_used;
	vq->last_avail = (uint16_t)(ring_used + cnt);
	vq->avail_seen = vq->last_avail;
	vq->notify_old = ring_used;
	return 0;
}

/* Packed: commit or roll back the last update, collect what is in flight (see the top of the file). */
static int packed_recover(struct vhd_vq *vq, struct vhost_user_inflight_packed *reg, const char **why)
{
	struct vhost_user_inflight_desc_packed *d = reg->desc;
	uint16_t num = vq->num;
	uint16_t ui = LD16(&reg->used_idx), oui = LD16(&reg->old_used_idx);
	uint8_t uw = LD8(&reg->used_wrap_counter), ouw = LD8(&reg->old_used_wrap_counter);
	uint16_t fh = LD16(&reg->free_head), ofh = LD16(&reg->old_free_head);
	if (ui >= num || oui >= num || uw > 1 || ouw > 1 || fh > num || ofh > num) {
		*why = "used index, wrap counter or free head beyond the queue";
		return -EINVAL;
	}
	if (ui != oui || uw != ouw) {
		/* Acquire pairs with the push's release store of the flags (and the fence before it in packed_push()).
		 * The slot at the old used position was taken, so it is available in that lap (2.8.1) until the push
		 * that died published it. */
		uint16_t f = RD16_ACQ(&vq->packed.desc[oui].flags);
		bool avail = !!(f & VIRTQ_DESC_F_AVAIL) == !!ouw && !!(f & VIRTQ_DESC_F_USED) != !!ouw;
		if (!avail) {
			oui = ui;
			ouw = uw;
			ofh = fh;
		}
	}
	ST16(&reg->free_head, ofh);
	ST16(&reg->used_idx, oui);
	ST8(&reg->used_wrap_counter, ouw);
	/* Acquire pairs with the release fences of packed_mark_taken(), packed_push() and the unpop: links and flags
	 * are read after the committed positions. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	uint8_t *state = calloc(num, 1); /* 1: on the free list, 2: in a chain in flight */
	struct infl_ord *ord = malloc(sizeof(*ord) * num);
	uint16_t *resub = malloc(sizeof(*resub) * num);
	uint16_t *ent = malloc(sizeof(*ent) * num);
	int rc = -EINVAL;
	if (!state || !ord || !resub || !ent) {
		*why = "out of memory";
		rc = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < num; i++)
		ent[i] = INFL_NONE;
	for (uint16_t e = ofh; e < num; e = LD16(&d[e].next)) {
		if (state[e]) {
			*why = "the free list loops";
			goto out;
		}
		state[e] = 1;
		ST8(&d[e].inflight, 0);
	}
	unsigned cnt = 0;
	uint32_t slots = 0;
	uint64_t max = 0;
	for (uint16_t i = 0; i < num; i++) {
		uint8_t f = LD8(&d[i].inflight);
		if (f > 1) {
			*why = "a descriptor's inflight flag is neither 0 nor 1";
			goto out;
		}
		if (!f)
			continue;
		uint16_t n = LD16(&d[i].num), e = i, last = i;
		if (n == 0 || n > num || (slots += n) > num) {
			*why = "chains in flight take more slots than the queue has";
			goto out;
		}
		for (unsigned k = 0; k < n; k++) {
			if (e >= num || state[e]) {
				*why = "a chain in flight links beyond the queue, into the free list or into another chain";
				goto out;
			}
			state[e] = 2;
			last = e;
			e = LD16(&d[e].next);
		}
		uint16_t id = LD16(&d[last].id);
		if (LD16(&d[i].last) != last || id >= num || ent[id] != INFL_NONE) {
			*why = "a chain in flight has a wrong last entry, or a buffer id beyond the queue or in flight twice";
			goto out;
		}
		ent[id] = i;
		ord[cnt].counter = LD64(&d[i].counter);
		ord[cnt].head = i;
		if (ord[cnt].counter > max)
			max = ord[cnt].counter;
		cnt++;
	}
	ST16(&reg->old_free_head, ofh);
	ST16(&reg->old_used_idx, oui);
	ST8(&reg->old_used_wrap_counter, ouw);
	qsort(ord, cnt, sizeof(*ord), by_counter);
	for (unsigned i = 0; i < cnt; i++)
		resub[i] = ord[i].head;
	free(vq->resub);
	vq->resub = resub;
	resub = NULL;
	free(vq->infl_ent);
	vq->infl_ent = ent;
	ent = NULL;
	vq->resub_n = (uint16_t)cnt;
	vq->resub_pos = 0;
	vq->infl_counter = max + 1;
	vq->infl_free = ofh;
	/* Every slot taken is used or in a chain in flight: the avail position is that many past the used one. */
	vq->used_idx = oui;
	vq->used_wrap = ouw;
	unsigned p = oui + slots;
	vq->avail_wrap = ouw;
	if (p >= num) {
		p -= num;
		vq->avail_wrap = !ouw;
	}
	vq->last_avail = (uint16_t)p;
	vq->notify_pending = 0;
	rc = 0;
out:
	free(state);
	free(ord);
	free(resub);
	free(ent);
	return rc;
}

/* A fresh region (version 0): nothing taken, every entry free, the positions the queue starts from. */
static int packed_init(struct vhd_vq *vq, struct vhost_user_inflight_packed *reg)
{
	uint16_t *ent = malloc(sizeof(*ent) * vq->num);
	if (!ent)
		return -ENOMEM;
	for (unsigned i = 0; i < vq->num; i++)
		ent[i] = INFL_NONE;
	memset(reg->desc, 0, (size_t)vq->num * sizeof(reg->desc[0]));
	for (unsigned i = 0; i < vq->num; i++)
		ST16(&reg->desc[i].next, i + 1);
	ST64(&reg->features, 0);
	ST16(&reg->desc_num, vq->num);
	ST16(&reg->free_head, 0);
	ST16(&reg->old_free_head, 0);
	ST16(&reg->used_idx, vq->used_idx);
	ST16(&reg->old_used_idx, vq->used_idx);
	ST8(&reg->used_wrap_counter, vq->used_wrap);
	ST8(&reg->old_used_wrap_counter, vq->used_wrap);
	/* Release: pairs with the acquire fence of packed_recover(), as for split below. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	ST16(&reg->version, VHOST_USER_INFLIGHT_VERSION);
	free(vq->infl_ent);
	vq->infl_ent = ent;
	vq->infl_free = 0;
	return 0;
}

int vhd_vq_set_inflight(struct vhd_vq *vq, void *region, size_t len, const char **why)
{
	const char *dummy;
	if (!why)
		why = &dummy;
	if (vq->side != VHD_VQ_DEVICE) {
		*why = "not a device-side queue";
		return -EINVAL;
	}
	if (!region) {
		vq->infl = NULL;
		vq->resub_n = vq->resub_pos = vq->last_ring = 0;
		return 0;
	}
	if (len < vhd_vq_inflight_size(vq->is_packed, vq->num)) {
		*why = "region smaller than the queue size needs";
		return -EINVAL;
	}
	/* version and desc_num sit at the same offsets in both layouts. */
	struct vhost_user_inflight_split *reg = region;
	uint16_t version = LD16(&reg->version);
	if (version != 0 && version != VHOST_USER_INFLIGHT_VERSION) {
		*why = "region version is not 1";
		return -EINVAL;
	}
	if (version != 0 && LD16(&reg->desc_num) != vq->num) {
		*why = "region desc_num differs from the queue size";
		return -EINVAL;
	}
	int rc = 0;
	if (version == 0) {
		free(vq->resub);
		vq->resub = NULL;
		vq->resub_n = vq->resub_pos = 0;
		vq->infl_counter = 1;
		vq->infl_batch_head = 0;
	}
	if (vq->is_packed) {
		rc = version == 0 ? packed_init(vq, region) : packed_recover(vq, region, why);
		if (rc == -ENOMEM)
			*why = "out of memory";
	} else if (version == 0) {
		/* Fresh from GET_INFLIGHT_FD: nothing was taken. The version last, after a release fence: a region
		 * that says it is initialised is (pairs with the acquire fence of split_recover()). */
		memset(reg->desc, 0, (size_t)vq->num * sizeof(reg->desc[0]));
		ST64(&reg->features, 0);
		ST16(&reg->desc_num, vq->num);
		ST16(&reg->last_batch_head, 0);
		ST16(&reg->used_idx, vq->used_idx);
		__atomic_thread_fence(__ATOMIC_RELEASE);
		ST16(&reg->version, VHOST_USER_INFLIGHT_VERSION);
	} else {
		rc = split_recover(vq, reg, why);
	}
	if (rc < 0)
		return rc;
	vq->last_ring = 0;
	vq->infl = region;
	return 0;
}

unsigned vhd_vq_resubmit_pending(const struct vhd_vq *vq)
{
	return (unsigned)(vq->resub_n - vq->resub_pos);
}
