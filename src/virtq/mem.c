/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mem_impl.h"

/* ---------------------------------------------------------------- SIGBUS guard */

/*
 * Every mapping vhd_mem_map_fd() makes, in any table, for the handler to look up. A slot is in use while base is
 * not 0. The handler marks a slot busy before reading it and the remover waits for busy to drop after clearing
 * base, so a mapping is never replaced after it was unmapped (its address range may belong to someone else by
 * then): both sides store then load, seq_cst, so either the handler sees base == 0 or the remover sees busy.
 */
#define GUARD_SLOTS 1024u

struct guard_slot {
	_Atomic uintptr_t base;
	_Atomic size_t len;
	_Atomic uint64_t guest_addr;
	_Atomic(struct vhdi_fault *) owner;
	atomic_uint busy;
};

static struct guard_slot guard_slots[GUARD_SLOTS];
static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER; /* registration and removal only */
static atomic_bool guard_installed;
static _Atomic uint64_t guard_hits;
static struct sigaction guard_prev;

void vhdi_guard_register(struct vhdi_fault *f, void *base, size_t len, uint64_t guest_addr)
{
	pthread_mutex_lock(&guard_lock);
	for (unsigned i = 0; i < GUARD_SLOTS; i++) {
		struct guard_slot *s = &guard_slots[i];
		if (atomic_load(&s->base) == 0) {
			atomic_store(&s->len, len);
			atomic_store(&s->guest_addr, guest_addr);
			atomic_store(&s->owner, f);
			atomic_store(&s->base, (uintptr_t)base); /* last: publishes the others */
			break;
		}
	}
	/* All slots taken (a thousand mappings): that one goes unguarded, as every mapping did before. */
	pthread_mutex_unlock(&guard_lock);
}

void vhdi_guard_unregister(void *base)
{
	pthread_mutex_lock(&guard_lock);
	for (unsigned i = 0; i < GUARD_SLOTS; i++) {
		struct guard_slot *s = &guard_slots[i];
		if (atomic_load(&s->base) == (uintptr_t)base) {
			atomic_store(&s->base, 0);
			while (atomic_load(&s->busy))
				sched_yield();
			break;
		}
	}
	pthread_mutex_unlock(&guard_lock);
}

/* Hand a fault that is not ours to whoever had SIGBUS before. */
static void guard_pass_on(int sig, siginfo_t *si, void *uc)
{
	if ((guard_prev.sa_flags & SA_SIGINFO) && guard_prev.sa_sigaction) {
		guard_prev.sa_sigaction(sig, si, uc);
	} else if (guard_prev.sa_handler != SIG_DFL && guard_prev.sa_handler != SIG_IGN) {
		guard_prev.sa_handler(sig);
	} else {
		/* The default action, as if the guard were not there (an ignored fault could only repeat forever):
		 * raised again, it is delivered once the handler returns and unblocks it, and kills the process. */
		struct sigaction dfl = {.sa_handler = SIG_DFL};
		sigemptyset(&dfl.sa_mask);
		sigaction(SIGBUS, &dfl, NULL);
		raise(SIGBUS);
	}
}

/* Only async-signal-safe work: atomics, mmap, shutdown (plain system calls on Linux), sigaction, raise. */
static void guard_handler(int sig, siginfo_t *si, void *uc)
{
	int saved_errno = errno;
	uintptr_t a = (uintptr_t)si->si_addr;
	bool absorbed = false;
	if (si->si_code > 0) { /* raised by the kernel for an access, not sent by kill() */
		for (unsigned i = 0; i < GUARD_SLOTS && !absorbed; i++) {
			struct guard_slot *s = &guard_slots[i];
			atomic_fetch_add(&s->busy, 1);
			uintptr_t b = atomic_load(&s->base);
			size_t len = atomic_load(&s->len);
			if (b && a - b < len &&
			    mmap((void *)b, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
				 -1, 0) != MAP_FAILED) {
				struct vhdi_fault *m = atomic_load(&s->owner);
				/* The address before the flag that publishes it (two regions faulting at once: either). */
				if (!atomic_load(&m->faulted))
					atomic_store(&m->addr, atomic_load(&s->guest_addr));
				atomic_store(&m->faulted, true);
				int wfd = atomic_load(&m->wake_fd);
				if (wfd >= 0)
					shutdown(wfd, SHUT_RDWR);
				atomic_fetch_add(&guard_hits, 1);
				absorbed = true;
			}
			atomic_fetch_sub(&s->busy, 1);
		}
	}
	if (!absorbed)
		guard_pass_on(sig, si, uc);
	errno = saved_errno;
}

int vhd_mem_guard_sigbus(void)
{
	if (atomic_load(&guard_installed))
		return 0;
	struct sigaction sa = {.sa_sigaction = guard_handler, .sa_flags = SA_SIGINFO};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, &guard_prev) < 0)
		return -errno;
	atomic_store(&guard_installed, true);
	return 0;
}

uint64_t vhd_mem_guard_hits(void)
{
	return atomic_load(&guard_hits);
}

bool vhd_mem_faulted(const struct vhd_mem *mem, uint64_t *guest_addr)
{
	if (!atomic_load(&mem->fault.faulted))
		return false;
	if (guest_addr)
		*guest_addr = atomic_load(&mem->fault.addr);
	return true;
}

void vhd_mem_set_wake_fd(struct vhd_mem *mem, int fd)
{
	atomic_store(&mem->fault.wake_fd, fd);
}

/* ---------------------------------------------------------------- the table */

int vhd_mem_create(struct vhd_mem **out)
{
	struct vhd_mem *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	atomic_init(&m->fault.wake_fd, -1);
	*out = m;
	return 0;
}

static void region_release(struct vhd_mem_region *r)
{
	if (r->mmap_base) {
		vhdi_guard_unregister(r->mmap_base); /* first: the handler may not touch the range once it is unmapped */
		munmap(r->mmap_base, r->mmap_len);
	}
	if (r->fd >= 0)
		close(r->fd);
}

void vhd_mem_destroy(struct vhd_mem *mem)
{
	if (!mem)
		return;
	for (unsigned i = 0; i < mem->nregions; i++)
		region_release(&mem->r[i]);
	free(mem);
}

static bool sum_overflows(uint64_t a, uint64_t b)
{
	uint64_t s;
	return __builtin_add_overflow(a, b, &s);
}

static int insert_region(struct vhd_mem *mem, const struct vhd_mem_region *nr)
{
	if (nr->size == 0 || sum_overflows(nr->guest_addr, nr->size) ||
	    sum_overflows(nr->user_addr, nr->size) || sum_overflows((uintptr_t)nr->host, nr->size))
		return -EINVAL;
	if (mem->nregions >= VHD_MEM_MAX_REGIONS)
		return -ENOSPC;
	unsigned pos = 0;
	while (pos < mem->nregions && mem->r[pos].guest_addr < nr->guest_addr)
		pos++;
	/* Overlap with the neighbour below or above; ends are exclusive and computed without overflow above. */
	if (pos > 0 && mem->r[pos - 1].guest_addr + mem->r[pos - 1].size > nr->guest_addr)
		return -EEXIST;
	if (pos < mem->nregions && nr->guest_addr + nr->size > mem->r[pos].guest_addr)
		return -EEXIST;
	memmove(&mem->r[pos + 1], &mem->r[pos], (mem->nregions - pos) * sizeof(mem->r[0]));
	mem->r[pos] = *nr;
	mem->nregions++;
	return 0;
}

int vhd_mem_add(struct vhd_mem *mem, const struct vhd_mem_region_info *info)
{
	struct vhd_mem_region nr = {
		.guest_addr = info->guest_addr,
		.size = info->size,
		.user_addr = info->user_addr,
		.host = info->host,
		.fd = -1,
		.refs = 1,
	};
	if (!info->host)
		return -EINVAL;
	return insert_region(mem, &nr);
}

/* Same open file: the fds differ (each message brings its own), the inode does not. */
static bool same_file(int a, int b)
{
	struct stat sa, sb;
	return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int vhd_mem_map_fd(struct vhd_mem *mem, int fd, uint64_t mmap_offset, uint64_t guest_addr, uint64_t size,
		   uint64_t user_addr)
{
	uint64_t end;
	if (fd < 0 || size == 0 || __builtin_add_overflow(mmap_offset, size, &end) || end > (uint64_t)SIZE_MAX)
		return -EINVAL;
	/* mmap maps a file's pages past its end without complaint, but touching them raises SIGBUS: a front-end
	 * that describes more bytes than its file has would crash us at the first descriptor pointing there. */
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode) && (st.st_size < 0 || end > (uint64_t)st.st_size))
		return -EINVAL;
	/* QEMU 7.2 with several queue pairs sends each region once per queue pair (one vhost_dev each, all on one
	 * connection), and removes it as many times: the same bytes again are a reference, not an overlap. */
	for (unsigned i = 0; i < mem->nregions; i++) {
		struct vhd_mem_region *r = &mem->r[i];
		if (r->guest_addr == guest_addr && r->size == size && r->user_addr == user_addr && r->fd >= 0 &&
		    r->mmap_offset == mmap_offset && r->refs < UINT32_MAX && same_file(r->fd, fd)) {
			r->refs++;
			close(fd);
			return 0;
		}
	}
	if (mem->nregions >= VHD_MEM_MAX_REGIONS)
		return -ENOSPC;
	/* mmap wants a page-aligned offset; vhost-user front-ends may hand an unaligned one, so map from the page
	 * below and point host past the slack. */
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t slack = mmap_offset % (uint64_t)pg;
	size_t len = (size_t)(size + slack);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)(mmap_offset - slack));
	if (p == MAP_FAILED)
		return -errno;
	struct vhd_mem_region nr = {
		.guest_addr = guest_addr,
		.size = size,
		.user_addr = user_addr,
		.host = (uint8_t *)p + slack,
		.mmap_base = p,
		.mmap_len = len,
		.mmap_offset = mmap_offset,
		.fd = fd,
		.refs = 1,
	};
	int rc = insert_region(mem, &nr);
	if (rc < 0)
		munmap(p, len);
	else
		vhdi_guard_register(&mem->fault, p, len, guest_addr);
	return rc;
}

int vhd_mem_remove(struct vhd_mem *mem, uint64_t guest_addr, uint64_t size)
{
	for (unsigned i = 0; i < mem->nregions; i++) {
		if (mem->r[i].guest_addr == guest_addr && mem->r[i].size == size) {
			if (--mem->r[i].refs > 0)
				return 0;
			region_release(&mem->r[i]);
			memmove(&mem->r[i], &mem->r[i + 1], (mem->nregions - i - 1) * sizeof(mem->r[0]));
			mem->nregions--;
			return 0;
		}
	}
	return -ENOENT;
}

unsigned vhd_mem_count(const struct vhd_mem *mem)
{
	return mem->nregions;
}

int vhd_mem_region_file(const struct vhd_mem *mem, unsigned i, struct vhd_mem_region_info *info, int *fd,
			uint64_t *mmap_offset, unsigned *refs)
{
	if (i >= mem->nregions)
		return -ENOENT;
	const struct vhd_mem_region *r = &mem->r[i];
	if (r->fd < 0)
		return -EBADF;
	*info = (struct vhd_mem_region_info){r->guest_addr, r->size, r->user_addr, r->host};
	*fd = r->fd;
	*mmap_offset = r->mmap_offset;
	*refs = r->refs;
	return 0;
}

/* Index of the region holding addr, or -1. Binary search: the table is sorted and non-overlapping. */
static int find_region(const struct vhd_mem *mem, uint64_t addr)
{
	unsigned lo = 0, hi = mem->nregions;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		const struct vhd_mem_region *r = &mem->r[mid];
		if (addr < r->guest_addr)
			hi = mid;
		else if (addr - r->guest_addr >= r->size)
			lo = mid + 1;
		else
			return (int)mid;
	}
	return -1;
}

int vhd_mem_translate(const struct vhd_mem *mem, unsigned *hint, uint64_t addr, uint64_t len, struct iovec *iov,
		      unsigned max_iov)
{
	uint64_t end;
	if (__builtin_add_overflow(addr, len, &end))
		return -EOVERFLOW;
	if (len == 0)
		return 0;
	void *p = vhd_mem_xlate_hint(mem, *hint, addr, len);
	if (p) {
		if (max_iov < 1)
			return -ENOBUFS;
		iov[0].iov_base = p;
		iov[0].iov_len = (size_t)len;
		return 1;
	}
	int i = find_region(mem, addr);
	if (i < 0)
		return -EFAULT;
	unsigned n = 0;
	/* Each step consumes at least one region, so the loop runs at most nregions times. */
	while (len > 0) {
		if ((unsigned)i >= mem->nregions)
			return -EFAULT;
		const struct vhd_mem_region *r = &mem->r[i];
		if (addr < r->guest_addr)
			return -EFAULT; /* hole between this region and the previous one */
		uint64_t off = addr - r->guest_addr;
		uint64_t chunk = r->size - off;
		if (chunk > len)
			chunk = len;
		if (n >= max_iov)
			return -ENOBUFS;
		iov[n].iov_base = r->host + off;
		iov[n].iov_len = (size_t)chunk;
		n++;
		*hint = (unsigned)i;
		addr += chunk;
		len -= chunk;
		i++;
	}
	return (int)n;
}

void *vhd_mem_guest_to_host(const struct vhd_mem *mem, uint64_t addr, uint64_t len)
{
	uint64_t end, off;
	if (len == 0 || __builtin_add_overflow(addr, len, &end))
		return NULL;
	int i = find_region(mem, addr);
	if (i < 0 || !vhd_region_contains(&mem->r[i], addr, len, &off))
		return NULL;
	return mem->r[i].host + off;
}

void *vhd_mem_user_to_host(const struct vhd_mem *mem, uint64_t user_addr, uint64_t len)
{
	uint64_t end;
	if (len == 0 || __builtin_add_overflow(user_addr, len, &end))
		return NULL;
	/* Not sorted by user address, and only used at ring setup: a linear scan is fine. */
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct vhd_mem_region *r = &mem->r[i];
		if (user_addr < r->user_addr)
			continue;
		uint64_t off = user_addr - r->user_addr;
		if (off < r->size && len <= r->size - off)
			return r->host + off;
	}
	return NULL;
}

int vhdi_mem_host_to_guest(const struct vhd_mem *mem, unsigned *hint, const void *host, uint64_t *gpa,
			   uint64_t *room)
{
	uintptr_t h = (uintptr_t)host;
	unsigned n = mem->nregions, i = *hint < n ? *hint : 0;
	/* Not sorted by host address; tables hold a few regions and the hint is right for a queue's buffers. */
	for (unsigned k = 0; k < n; k++, i = i + 1 == n ? 0 : i + 1) {
		const struct vhd_mem_region *r = &mem->r[i];
		uintptr_t b = (uintptr_t)r->host;
		if (h >= b && h - b < r->size) {
			*hint = i;
			*gpa = r->guest_addr + (h - b);
			*room = r->size - (h - b);
			return 0;
		}
	}
	return -EFAULT;
}
