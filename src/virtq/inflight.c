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
#define ST64(p, v) __atomic_store_n((p), (uint64_t)(v), __ATOMIC_RELAXED)
#define LD8(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define LD16(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define LD64(p) __atomic_load_n((p), __ATOMIC_RELAXED)

/* Mark chains[0..n) taken. */
static void mark_taken(struct vhd_vq *vq, const struct vhd_vq_chain *chains, unsigned n)
{
	struct vhost_user_inflight_desc_split *d = vq->infl->desc;
	for (unsigned i = 0; i < n; i++)
		ST64(&d[chains[i].id].counter, vq->infl_counter++);
	/* Release: each head's counter before its inflight flag. Pairs with the acquire fence in recover(), which
	 * reads the flags first and the counters of the marked heads after it. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (unsigned i = 0; i < n; i++)
		ST8(&d[chains[i].id].inflight, 1);
}

int vhdi_infl_pop(struct vhd_vq *vq, struct vhd_vq_chain *chains, unsigned n, struct iovec *iov, unsigned niov)
{
	unsigned got = 0, seg = 0;
	/* Resubmissions first, oldest first: they are already marked, keep their counters, and move no index. */
	while (got < n && vq->resub_pos < vq->resub_n) {
		unsigned segs = 0;
		int r = vhdi_split_pop_head(vq, vq->resub[vq->resub_pos], &chains[got], iov + seg, niov - seg, got,
					    &segs);
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
		int r = vq->ops->pop(vq, chains + got, n - got, iov + seg, niov - seg);
		if (r < 0)
			return got ? (int)got : r;
		mark_taken(vq, chains + got, (unsigned)r);
		vq->last_ring = (uint16_t)r;
		got += (unsigned)r;
	}
	return (int)got;
}

int vhdi_infl_push(struct vhd_vq *vq, const struct vhd_vq_used *used, unsigned n)
{
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
	 * of used->idx in recover() (the push's own store of it is a release too, but the list must not be
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
	for (unsigned i = n - ring; i < n; i++)
		if (chains[i].id < vq->num)
			ST8(&vq->infl->desc[chains[i].id].inflight, 0);
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
static int recover(struct vhd_vq *vq, struct vhost_user_inflight_split *reg, const char **why)
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
	if (vq->is_packed) {
		*why = "inflight tracking of packed rings is not implemented";
		return -ENOTSUP;
	}
	if (len < vhd_vq_inflight_size(false, vq->num)) {
		*why = "region smaller than the queue size needs";
		return -EINVAL;
	}
	struct vhost_user_inflight_split *reg = region;
	uint16_t version = LD16(&reg->version);
	if (version == 0) {
		/* Fresh from GET_INFLIGHT_FD: nothing was taken. The version last, after a release fence: a region
		 * that says it is initialised is (pairs with the acquire fence of recover()). */
		memset(reg->desc, 0, (size_t)vq->num * sizeof(reg->desc[0]));
		ST64(&reg->features, 0);
		ST16(&reg->desc_num, vq->num);
		ST16(&reg->last_batch_head, 0);
		ST16(&reg->used_idx, vq->used_idx);
		__atomic_thread_fence(__ATOMIC_RELEASE);
		ST16(&reg->version, VHOST_USER_INFLIGHT_VERSION);
		free(vq->resub);
		vq->resub = NULL;
		vq->resub_n = vq->resub_pos = 0;
		vq->infl_counter = 1;
		vq->infl_batch_head = 0;
	} else {
		if (version != VHOST_USER_INFLIGHT_VERSION) {
			*why = "region version is not 1";
			return -EINVAL;
		}
		if (LD16(&reg->desc_num) != vq->num) {
			*why = "region desc_num differs from the queue size";
			return -EINVAL;
		}
		int rc = recover(vq, reg, why);
		if (rc < 0)
			return rc;
	}
	vq->last_ring = 0;
	vq->infl = reg;
	return 0;
}

unsigned vhd_vq_resubmit_pending(const struct vhd_vq *vq)
{
	return (unsigned)(vq->resub_n - vq->resub_pos);
}
