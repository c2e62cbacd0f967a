/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem_impl.h"
#include "spec/vhost_user.h"
#include "vhostd/iotlb.h"

_Static_assert(VHD_IOTLB_RO == VHOST_ACCESS_RO && VHD_IOTLB_WO == VHOST_ACCESS_WO && VHD_IOTLB_RW == VHOST_ACCESS_RW,
	       "public permissions carry the wire values");

struct iotlb_entry {
	uint64_t iova;
	uint64_t size; /* nonzero; iova + size does not wrap */
	uint8_t *host;
	uint64_t gpa;
	uint64_t seq; /* when an update last wrote these bytes: the smallest is evicted first */
	unsigned perm;
};

struct vhd_iotlb {
	/* What lookups read, together in the first cache line. */
	unsigned n, max;
	/* Sorted by iova, non-overlapping: a range that leaves one entry can only continue in the next. */
	struct iotlb_entry *e;
	/* Read by data-path threads (a stored ring pointer is stale once it moved) and by stats readers. */
	_Atomic uint64_t generation;
	_Atomic uint64_t nentries, updates, invalidations, evictions, refused;
	uint64_t next_seq;
	char err[160];
};

static bool perm_valid(unsigned perm)
{
	return perm == VHD_IOTLB_RO || perm == VHD_IOTLB_WO || perm == VHD_IOTLB_RW;
}

int vhd_iotlb_create(unsigned max_entries, struct vhd_iotlb **out)
{
	if (max_entries == 0)
		max_entries = VHD_IOTLB_DEFAULT_ENTRIES;
	if (max_entries > VHD_IOTLB_MAX_ENTRIES)
		return -EINVAL;
	struct vhd_iotlb *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->e = calloc(max_entries, sizeof(t->e[0]));
	if (!t->e) {
		free(t);
		return -ENOMEM;
	}
	t->max = max_entries;
	*out = t;
	return 0;
}

void vhd_iotlb_destroy(struct vhd_iotlb *iotlb)
{
	if (!iotlb)
		return;
	free(iotlb->e);
	free(iotlb);
}

/* Relaxed throughout: the counters are statistics, and the generation's readers are ordered after its writes by
 * the queue pause that surrounds every change (see the header's threading contract). */
static void bump(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static void set_count(struct vhd_iotlb *t)
{
	atomic_store_explicit(&t->nentries, t->n, memory_order_relaxed);
}

static void remove_at(struct vhd_iotlb *t, unsigned i)
{
	memmove(&t->e[i], &t->e[i + 1], (t->n - i - 1) * sizeof(t->e[0]));
	t->n--;
}

static void insert_at(struct vhd_iotlb *t, unsigned i, const struct iotlb_entry *ne)
{
	memmove(&t->e[i + 1], &t->e[i], (t->n - i) * sizeof(t->e[0]));
	t->e[i] = *ne;
	t->n++;
}

/* Index of the first entry that ends after addr (t->n if none). */
static unsigned first_ending_after(const struct vhd_iotlb *t, uint64_t addr)
{
	unsigned lo = 0, hi = t->n;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (t->e[mid].iova + t->e[mid].size <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static inline uint64_t entry_end(const struct vhd_iotlb *t, unsigned i)
{
	return t->e[i].iova + t->e[i].size;
}

/*
 * first_ending_after(), looking first beside entry h (the caller's hint, which missed): a guest behind
 * intel-iommu maps each buffer as its own 4 KiB entry, and the buffers a driver posts one after another mostly
 * lie in the page after or before the last one (its IOVA allocator hands out neighbouring ranges), so the
 * answer is usually h + 1 or h - 1, found in two comparisons where the search takes about log2(n) rounds. Each
 * shortcut returns only what the search would: ends ascend with the index.
 */
static unsigned first_ending_after_near(const struct vhd_iotlb *t, uint64_t addr, unsigned h)
{
	if (h < t->n) {
		if (entry_end(t, h) <= addr) {
			if (h + 1 == t->n || entry_end(t, h + 1) > addr)
				return h + 1;
		} else if (h == 0 || entry_end(t, h - 1) <= addr) {
			return h;
		} else if (h == 1 || entry_end(t, h - 2) <= addr) {
			return h - 1;
		}
	}
	return first_ending_after(t, addr);
}

/* Drop the first n bytes of entry x. */
static void trim_front(struct iotlb_entry *x, uint64_t n)
{
	x->iova += n;
	x->size -= n;
	x->host += n;
	x->gpa += n;
}

/* Remove every byte of [s, end) (end exclusive, s < end). Returns whether any was removed. */
static bool cut(struct vhd_iotlb *t, uint64_t s, uint64_t end)
{
	bool touched = false;
	unsigned i = first_ending_after(t, s);
	/* Each step removes, shortens past the range or splits (and stops), so at most n + 1 steps. */
	while (i < t->n && t->e[i].iova < end) {
		struct iotlb_entry *x = &t->e[i];
		uint64_t xend = x->iova + x->size;
		touched = true;
		if (x->iova < s && xend > end) {
			if (t->n == t->max) {
				/* No slot for the right-hand piece: drop the whole entry rather than fail. */
				remove_at(t, i);
				bump(&t->evictions);
				break;
			}
			struct iotlb_entry right = *x;
			trim_front(&right, end - x->iova);
			x->size = s - x->iova;
			insert_at(t, i + 1, &right);
			break;
		} else if (x->iova < s) {
			x->size = s - x->iova;
			i++;
		} else if (xend > end) {
			trim_front(x, end - x->iova);
			break;
		} else {
			remove_at(t, i);
		}
	}
	if (touched)
		atomic_fetch_add_explicit(&t->generation, 1, memory_order_relaxed);
	return touched;
}

/* a followed directly by b, with nothing to tell them apart but where they start. */
static bool mergeable(const struct iotlb_entry *a, const struct iotlb_entry *b)
{
	return a->iova + a->size == b->iova && a->host + a->size == b->host && a->gpa + a->size == b->gpa &&
	       a->perm == b->perm;
}

/* Region of mem holding the user range [uaddr, uaddr+size) wholly, or NULL. Not sorted by user address; the
 * table has at most VHD_MEM_MAX_REGIONS regions. */
static const struct vhd_mem_region *user_region(const struct vhd_mem *mem, uint64_t uaddr, uint64_t size,
						uint64_t *off)
{
	if (!mem) /* no table yet (an update before SET_MEM_TABLE): nothing to map to */
		return NULL;
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct vhd_mem_region *r = &mem->r[i];
		if (uaddr < r->user_addr)
			continue;
		uint64_t o = uaddr - r->user_addr;
		if (o < r->size && size <= r->size - o) {
			*off = o;
			return r;
		}
	}
	return NULL;
}

static int refuse(struct vhd_iotlb *t, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int refuse(struct vhd_iotlb *t, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->err, sizeof(t->err), fmt, ap);
	va_end(ap);
	bump(&t->refused);
	return rc;
}

int vhd_iotlb_update(struct vhd_iotlb *t, const struct vhd_mem *mem, uint64_t iova, uint64_t size, uint64_t uaddr,
		     unsigned perm)
{
	uint64_t end, uend, off;
	if (size == 0)
		return refuse(t, -EINVAL, "IOTLB update of iova 0x%" PRIx64 " has size 0", iova);
	if (__builtin_add_overflow(iova, size, &end))
		return refuse(t, -EOVERFLOW, "IOTLB update iova 0x%" PRIx64 " + size 0x%" PRIx64 " wraps around",
			      iova, size);
	if (__builtin_add_overflow(uaddr, size, &uend))
		return refuse(t, -EOVERFLOW, "IOTLB update uaddr 0x%" PRIx64 " + size 0x%" PRIx64 " wraps around",
			      uaddr, size);
	if (!perm_valid(perm))
		return refuse(t, -EINVAL, "IOTLB update of iova 0x%" PRIx64 " has perm %u (not RO 1, WO 2 or RW 3)",
			      iova, perm);
	const struct vhd_mem_region *r = user_region(mem, uaddr, size, &off);
	if (!r)
		return refuse(t, -EFAULT,
			      "IOTLB update uaddr 0x%" PRIx64 " size 0x%" PRIx64 " is not inside one memory region",
			      uaddr, size);
	struct iotlb_entry ne = {
		.iova = iova, .size = size, .host = r->host + off, .gpa = r->guest_addr + off, .perm = perm,
		.seq = t->next_seq++,
	};
	bump(&t->updates);

	/* QEMU pushes the same page again (ring updates after start, answers to a repeated miss): already there,
	 * the same way, is no change at all. */
	unsigned i = first_ending_after(t, iova);
	if (i < t->n) {
		const struct iotlb_entry *x = &t->e[i];
		if (x->iova <= iova && end - x->iova <= x->size && x->perm == perm &&
		    x->host + (iova - x->iova) == ne.host && x->gpa + (iova - x->iova) == ne.gpa) {
			t->e[i].seq = ne.seq; /* named again: in use, evict it last */
			return 0;
		}
	}

	cut(t, iova, end);
	if (t->n == t->max) {
		unsigned old = 0;
		for (unsigned j = 1; j < t->n; j++)
			if (t->e[j].seq < t->e[old].seq)
				old = j;
		remove_at(t, old);
		bump(&t->evictions);
		atomic_fetch_add_explicit(&t->generation, 1, memory_order_relaxed);
	}
	unsigned p = first_ending_after(t, iova);
	insert_at(t, p, &ne);
	if (p + 1 < t->n && mergeable(&t->e[p], &t->e[p + 1])) {
		t->e[p].size += t->e[p + 1].size;
		remove_at(t, p + 1);
	}
	if (p > 0 && mergeable(&t->e[p - 1], &t->e[p])) {
		t->e[p - 1].size += t->e[p].size;
		t->e[p - 1].seq = ne.seq;
		remove_at(t, p);
	}
	set_count(t);
	return 0;
}

int vhd_iotlb_invalidate(struct vhd_iotlb *t, uint64_t iova, uint64_t size)
{
	uint64_t end;
	if (size == 0)
		return refuse(t, -EINVAL, "IOTLB invalidation of iova 0x%" PRIx64 " has size 0", iova);
	if (__builtin_add_overflow(iova, size, &end))
		end = UINT64_MAX; /* byte 2^64-1 is never mapped */
	if (iova >= end || !cut(t, iova, end))
		return 0;
	bump(&t->invalidations);
	set_count(t);
	return 1;
}

void vhd_iotlb_flush(struct vhd_iotlb *t)
{
	if (t->n == 0)
		return;
	t->n = 0;
	atomic_fetch_add_explicit(&t->generation, 1, memory_order_relaxed);
	set_count(t);
}

int vhd_iotlb_translate(const struct vhd_iotlb *t, unsigned *hint, uint64_t iova, uint64_t len, unsigned perm,
			struct iovec *iov, unsigned max_iov, uint64_t *miss_iova)
{
	uint64_t end;
	if (__builtin_add_overflow(iova, len, &end))
		return -EOVERFLOW;
	if (!perm_valid(perm))
		return -EINVAL;
	if (len == 0)
		return 0;
	unsigned h = *hint;
	if (h < t->n) {
		const struct iotlb_entry *x = &t->e[h];
		/* Subtract then compare: no sum can wrap. */
		if (iova >= x->iova && iova - x->iova < x->size && len <= x->size - (iova - x->iova) &&
		    (x->perm & perm) == perm) {
			if (max_iov < 1)
				return -ENOBUFS;
			iov[0].iov_base = x->host + (iova - x->iova);
			iov[0].iov_len = (size_t)len;
			return 1;
		}
	}
	unsigned i = first_ending_after_near(t, iova, h);
	unsigned n = 0;
	/* Each step consumes one entry, so at most t->n steps. */
	while (len > 0) {
		if (i >= t->n || iova < t->e[i].iova) {
			if (miss_iova)
				*miss_iova = iova;
			return -EAGAIN;
		}
		const struct iotlb_entry *x = &t->e[i];
		if ((x->perm & perm) != perm) {
			if (miss_iova)
				*miss_iova = iova;
			return -EACCES;
		}
		uint64_t off = iova - x->iova;
		uint64_t chunk = x->size - off;
		if (chunk > len)
			chunk = len;
		if (n >= max_iov)
			return -ENOBUFS;
		iov[n].iov_base = x->host + off;
		iov[n].iov_len = (size_t)chunk;
		n++;
		*hint = i;
		iova += chunk;
		len -= chunk;
		i++;
	}
	return (int)n;
}

unsigned vhdi_iotlb_window(const struct vhd_iotlb *t, unsigned hint, struct vhd_mem_region *w)
{
	if (hint >= t->n)
		return 0;
	w->guest_addr = t->e[hint].iova;
	w->size = t->e[hint].size;
	w->host = t->e[hint].host;
	return t->e[hint].perm;
}

unsigned vhdi_iotlb_window_at(const struct vhd_iotlb *t, unsigned *hint, uint64_t iova, struct vhd_mem_region *w)
{
	unsigned i = first_ending_after_near(t, iova, *hint);
	if (i >= t->n || iova < t->e[i].iova)
		return 0;
	*hint = i;
	return vhdi_iotlb_window(t, i, w);
}

void *vhd_iotlb_to_host(const struct vhd_iotlb *t, uint64_t iova, uint64_t len, unsigned perm)
{
	unsigned hint = 0;
	struct iovec v;
	if (len == 0 || vhd_iotlb_translate(t, &hint, iova, len, perm, &v, 1, NULL) != 1)
		return NULL;
	return v.iov_base;
}

int vhd_iotlb_to_gpa(const struct vhd_iotlb *t, uint64_t iova, uint64_t *gpa)
{
	unsigned i = first_ending_after(t, iova);
	if (i >= t->n || iova < t->e[i].iova)
		return -EAGAIN;
	*gpa = t->e[i].gpa + (iova - t->e[i].iova);
	return 0;
}

uint64_t vhd_iotlb_generation(const struct vhd_iotlb *t)
{
	return atomic_load_explicit(&t->generation, memory_order_relaxed);
}

unsigned vhd_iotlb_count(const struct vhd_iotlb *t)
{
	return t->n;
}

void vhd_iotlb_stats(const struct vhd_iotlb *t, struct vhd_iotlb_stats *st)
{
	st->entries = atomic_load_explicit(&t->nentries, memory_order_relaxed);
	st->updates = atomic_load_explicit(&t->updates, memory_order_relaxed);
	st->invalidations = atomic_load_explicit(&t->invalidations, memory_order_relaxed);
	st->evictions = atomic_load_explicit(&t->evictions, memory_order_relaxed);
	st->refused = atomic_load_explicit(&t->refused, memory_order_relaxed);
}

const char *vhd_iotlb_last_error(const struct vhd_iotlb *t)
{
	return t->err;
}
