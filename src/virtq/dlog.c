/* SPDX-License-Identifier: MIT */
/*
 * Dirty page log (vhostd/dlog.h): the mapped bitmap, and the device side's logging of its writes into guest
 * memory. Bits are gathered per burst into a few 64-page words (vq->log_word/log_bits) and set with one atomic OR
 * each when the push ends, after the data and ring writes they stand for.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "virtq_impl.h"
#include "vhostd/dlog.h"

#define PAGE_SHIFT 12
_Static_assert(VHD_DLOG_PAGE == 1u << PAGE_SHIFT, "one bit per 4 KiB page");

int vhd_dlog_map(int fd, uint64_t size, uint64_t offset, struct vhd_dlog **out, const char **why)
{
	uint64_t end;
	struct stat st;
	int rc = 0;
	*why = NULL;
	if (fd < 0) {
		*why = "no fd attached";
		return -EBADF;
	}
	if (size == 0)
		*why = "size 0", rc = -EINVAL;
	else if (size > VHD_DLOG_MAX_SIZE)
		*why = "size over 1 GiB (32 TiB of guest memory)", rc = -EINVAL;
	else if (__builtin_add_overflow(offset, size, &end) || end > (uint64_t)SIZE_MAX)
		*why = "offset + size overflows", rc = -EINVAL;
	else if (fstat(fd, &st) < 0)
		*why = "fstat failed", rc = -errno;
	else if (S_ISREG(st.st_mode) && (st.st_size < 0 || end > (uint64_t)st.st_size))
		/* mmap maps pages past the end without complaint; setting a bit there would raise SIGBUS. */
		*why = "offset + size is past the end of the file", rc = -EINVAL;
	if (rc < 0) {
		close(fd);
		return rc;
	}
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t slack = offset % (uint64_t)pg;
	size_t len = (size_t)(size + slack);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)(offset - slack));
	rc = p == MAP_FAILED ? -errno : 0;
	close(fd); /* the mapping keeps the file */
	if (rc < 0) {
		*why = "the fd cannot be mapped";
		return rc == -ENODEV || rc == -EACCES ? -EBADF : rc;
	}
	struct vhd_dlog *log = calloc(1, sizeof(*log));
	if (!log) {
		munmap(p, len);
		*why = "out of memory";
		return -ENOMEM;
	}
	log->bits = (uint8_t *)p + slack;
	log->size = size;
	log->map = p;
	log->map_len = len;
	atomic_init(&log->fault.wake_fd, -1);
	vhdi_guard_register(&log->fault, p, len, 0);
	*out = log;
	return 0;
}

void vhd_dlog_destroy(struct vhd_dlog *log)
{
	if (!log)
		return;
	vhdi_guard_unregister(log->map); /* first: the handler may not touch the range once it is unmapped */
	munmap(log->map, log->map_len);
	free(log);
}

uint64_t vhd_dlog_size(const struct vhd_dlog *log)
{
	return log->size;
}

uint64_t vhd_dlog_beyond(const struct vhd_dlog *log)
{
	return atomic_load_explicit(&log->beyond, memory_order_relaxed);
}

void vhd_dlog_set_wake_fd(struct vhd_dlog *log, int fd)
{
	atomic_store(&log->fault.wake_fd, fd);
}

bool vhd_dlog_faulted(const struct vhd_dlog *log)
{
	return atomic_load(&log->fault.faulted);
}

/* ---------------------------------------------------------------- device side */

void vhdi_log_flush(struct vhd_vq *vq)
{
	struct vhd_dlog *log = vq->log;
	unsigned n = vq->log_n;
	if (n == 0)
		return;
	/* Release fence: the guest memory writes these bits stand for (buffer bytes, ring entries) are visible
	 * before any bit is. Pairs with the front-end's atomic exchange of a log word (QEMU vhost_dev_sync_region()
	 * qatomic_xchg) before it copies the word's pages: it never clears a bit and then copies a page without the
	 * write the bit stood for. The ORs themselves may then be relaxed: they only need to be atomic, against
	 * that exchange and the other queues sharing the log, not ordered among themselves. */
	atomic_thread_fence(memory_order_release);
	for (unsigned i = 0; i < n; i++) {
		uint64_t off = vq->log_word[i] * 8, bits = vq->log_bits[i];
		uint8_t *at = log->bits + off;
		/* Whole words where the log has them, aligned (QEMU's offset is 0, so always); bytes at a ragged end
		 * or with an unaligned offset. log_range() never gathers a bit beyond the log. */
		if (off + 8 <= log->size && ((uintptr_t)at & 7) == 0) {
			__atomic_fetch_or((uint64_t *)at, vhd_cpu_to_le64(bits), __ATOMIC_RELAXED);
			continue;
		}
		for (unsigned k = 0; k < 8; k++)
			if ((bits >> (8 * k)) & 0xff)
				__atomic_fetch_or(at + k, (uint8_t)(bits >> (8 * k)), __ATOMIC_RELAXED);
	}
	vq->log_n = 0;
}

static inline void log_page(struct vhd_vq *vq, uint64_t page)
{
	uint64_t w = page >> 6, b = 1ull << (page & 63);
	unsigned n = vq->log_n;
	/* The word the last write hit first: consecutive packets land in the same 256 KiB more often than not. */
	if (likely(n && vq->log_word[n - 1] == w)) {
		vq->log_bits[n - 1] |= b;
		return;
	}
	for (unsigned i = 0; i + 1 < n; i++)
		if (vq->log_word[i] == w) {
			vq->log_bits[i] |= b;
			return;
		}
	if (n == VHDI_LOG_CACHE) {
		vhdi_log_flush(vq);
		n = 0;
	}
	vq->log_word[n] = w;
	vq->log_bits[n] = b;
	vq->log_n = n + 1;
}

static __attribute__((noinline)) void log_range_slow(struct vhd_vq *vq, uint64_t gpa, uint64_t len)
{
	uint64_t last;
	if (__builtin_add_overflow(gpa, len - 1, &last))
		last = UINT64_MAX;
	uint64_t first = gpa >> PAGE_SHIFT, end = last >> PAGE_SHIFT;
	/* Pages the log holds bits for: 8 per byte (size <= 1 GiB, so no overflow). */
	uint64_t pages = vq->log->size * 8;
	uint64_t stop = end < pages ? end : pages - 1;
	if (end >= pages) {
		uint64_t from = first > stop ? first : stop + 1;
		atomic_fetch_add_explicit(&vq->log->beyond, end - from + 1, memory_order_relaxed);
	}
	/* Bounded: a range is one segment of a chain (< 4 GiB) or part of a ring, so at most 2^20 pages. */
	for (uint64_t p = first; p <= stop && first < pages; p++)
		log_page(vq, p);
}

/* The usual range (a frame, a few ring entries) lies in one page the log holds. */
static inline void log_range(struct vhd_vq *vq, uint64_t gpa, uint64_t len)
{
	if (len == 0)
		return;
	uint64_t p = gpa >> PAGE_SHIFT;
	if (likely(len <= VHD_DLOG_PAGE - (gpa & (VHD_DLOG_PAGE - 1)) && p < vq->log->size * 8))
		log_page(vq, p);
	else
		log_range_slow(vq, gpa, len);
}

/* cnt entries of esz bytes from entry start on, in a ring of num entries at base (wrapping once at most). */
static void log_entries(struct vhd_vq *vq, uint64_t base, unsigned start, unsigned cnt, unsigned esz)
{
	unsigned first = cnt < vq->num - start ? cnt : vq->num - start;
	log_range(vq, base + (uint64_t)start * esz, (uint64_t)first * esz);
	if (cnt > first)
		log_range(vq, base, (uint64_t)(cnt - first) * esz);
}

void vhdi_log_push(struct vhd_vq *vq, uint16_t old, bool old_wrap)
{
	if (vq->log_ring != UINT64_MAX) {
		if (vq->is_packed) {
			unsigned cnt = vq->used_wrap == old_wrap ? (unsigned)(vq->used_idx - old)
								 : (unsigned)(vq->num - old + vq->used_idx);
			log_entries(vq, vq->log_ring, old, cnt, sizeof(struct pvirtq_desc));
		} else {
			uint16_t cnt = (uint16_t)(vq->used_idx - old);
			if (cnt > vq->num)
				cnt = vq->num;
			/* An IN_ORDER batch writes one entry and skips the rest: logging them all costs nothing. */
			log_entries(vq, vq->log_ring + offsetof(struct virtq_used, ring), old & vq->mask, cnt,
				    sizeof(struct virtq_used_elem));
			log_range(vq, vq->log_ring + offsetof(struct virtq_used, idx), 2);
		}
	}
	vhdi_log_flush(vq);
}

void vhdi_log_notify(struct vhd_vq *vq)
{
	if (vq->log_ring != UINT64_MAX) {
		if (vq->is_packed) {
			log_range(vq, vq->log_dev, sizeof(struct pvirtq_event_suppress));
		} else {
			log_range(vq, vq->log_ring + offsetof(struct virtq_used, flags), 2);
			/* avail_event, after the ring (virtio 1.2 2.7.10). */
			log_range(vq, vq->log_ring + virtq_used_size(vq->num) - 2, 2);
		}
	}
	vhdi_log_flush(vq);
}

void vhd_vq_log_chain(struct vhd_vq *vq, const struct vhd_vq_chain *c, uint32_t len)
{
	if (!vq->log)
		return;
	const struct iovec *v = c->iov + c->nout;
	const struct vhd_mem *mem = vq->mem;
	for (unsigned i = 0; i < c->nin && len; i++) {
		uint64_t take = v[i].iov_len < len ? v[i].iov_len : len, gpa, room;
		len -= (uint32_t)take;
		/* Segments come from one region each (vhd_mem_translate(), the IOTLB): room covers them. The region
		 * of the last one first, inline. */
		const struct vhd_mem_region *r = &mem->r[vq->log_hint]; /* log_hint < VHD_MEM_MAX_REGIONS always */
		uintptr_t off = (uintptr_t)v[i].iov_base - (uintptr_t)r->host;
		if (likely(vq->log_hint < mem->nregions && off < r->size)) {
			gpa = r->guest_addr + off;
			room = r->size - off;
		} else if (vhdi_mem_host_to_guest(mem, &vq->log_hint, v[i].iov_base, &gpa, &room) < 0) {
			atomic_fetch_add_explicit(&vq->log->beyond, 1, memory_order_relaxed);
			continue;
		}
		log_range(vq, gpa, take < room ? take : room);
	}
}

bool vhd_vq_logging(const struct vhd_vq *vq)
{
	return vq->log != NULL;
}

/* Guest address of the host range [p, p+len) in the queue's memory table, or UINT64_MAX. */
static uint64_t ring_gpa(struct vhd_vq *vq, const void *p, uint64_t len)
{
	uint64_t gpa, room;
	if (vhdi_mem_host_to_guest(vq->mem, &vq->log_hint, p, &gpa, &room) < 0 || room < len)
		return UINT64_MAX;
	return gpa;
}

/*
 * Rings are logged at the guest-physical address their host pointers have in the memory table, not at
 * SET_VRING_ADDR's log_guest_addr: that names the used ring (the device area), which a packed queue does not
 * write back into (its used descriptors go into the descriptor ring), and with a vIOMMU QEMU 7.2 fills it with
 * the ring's IOVA rather than its guest-physical address.
 */
int vhdi_log_rings(struct vhd_vq *vq, bool ring)
{
	vq->log_ring = vq->log_dev = UINT64_MAX;
	if (!ring)
		return 0;
	if (vq->is_packed) {
		vq->log_ring = ring_gpa(vq, vq->packed.desc, (uint64_t)vq->num * sizeof(struct pvirtq_desc));
		vq->log_dev = ring_gpa(vq, vq->packed.device, sizeof(struct pvirtq_event_suppress));
		if (vq->log_dev == UINT64_MAX)
			vq->log_ring = UINT64_MAX;
	} else {
		vq->log_ring = ring_gpa(vq, vq->split.used, virtq_used_size(vq->num));
	}
	return vq->log_ring == UINT64_MAX ? -EFAULT : 0;
}

int vhd_vq_set_log(struct vhd_vq *vq, struct vhd_dlog *log, bool ring)
{
	if (vq->side != VHD_VQ_DEVICE)
		return -EINVAL;
	vhdi_log_flush(vq); /* nothing gathered between bursts; kept for a caller that stops mid-way */
	vq->log = NULL;
	if (!log)
		return 0;
	vq->log = log;
	int rc = vhdi_log_rings(vq, ring);
	if (rc < 0)
		vq->log = NULL;
	return rc;
}
