/* SPDX-License-Identifier: MIT */
/* Guest memory table internals, shared by mem.c and the virtqueue code for its inlined fast path. */
#ifndef VHD_VIRTQ_MEM_IMPL_H
#define VHD_VIRTQ_MEM_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vhostd/mem.h"

struct vhd_mem_region {
	uint64_t guest_addr;
	uint64_t size;
	uint64_t user_addr;
	uint8_t *host;
	/* Set only for regions the table mapped itself. */
	void *mmap_base;
	size_t mmap_len;
	uint64_t mmap_offset;
	int fd;
	/* vhd_mem_map_fd() of an identical region takes another reference; vhd_mem_remove() drops one. */
	unsigned refs;
};

/* What the SIGBUS guard (mem.c) marks when it absorbs a fault in a mapping registered for it, from whichever
 * thread faulted: a memory table's, or a dirty log's (dlog.c). */
struct vhdi_fault {
	_Atomic bool faulted;
	_Atomic uint64_t addr; /* the faulting region's guest address (a log: 0) */
	_Atomic int wake_fd;   /* shut down on a fault, so its owner's event loop hears of it at once; -1: none */
};

/* Have faults in [base, base+len) absorbed (the range becomes zero-filled private memory) and reported in f,
 * with addr as the address to report. Unregister before unmapping; f must outlive the registration. */
void vhdi_guard_register(struct vhdi_fault *f, void *base, size_t len, uint64_t addr);
void vhdi_guard_unregister(void *base);

struct vhd_mem {
	unsigned nregions;
	struct vhdi_fault fault;
	/* Sorted by guest_addr, non-overlapping, so a range that leaves one region can only continue in r[i+1]. */
	struct vhd_mem_region r[VHD_MEM_MAX_REGIONS];
};

/*
 * The guest address of a host pointer into one of the table's regions, and how many bytes of that region follow
 * it (room), for the dirty log: bytes written through a host pointer are logged at their guest-physical address,
 * whichever way the pointer was found (memory table or IOTLB). hint: the region to try first, updated. Returns 0
 * or -EFAULT (in no region).
 */
int vhdi_mem_host_to_guest(const struct vhd_mem *mem, unsigned *hint, const void *host, uint64_t *gpa,
			   uint64_t *room);

/* Offset of [addr, addr+len) inside region r, or false. Written so that no sum can overflow. */
static inline bool vhd_region_contains(const struct vhd_mem_region *r, uint64_t addr, uint64_t len, uint64_t *off)
{
	if (addr < r->guest_addr)
		return false;
	uint64_t o = addr - r->guest_addr;
	if (o >= r->size || len > r->size - o)
		return false;
	*off = o;
	return true;
}

/*
 * Fast path of vhd_mem_translate(): the range lies in the hinted region, the common case for a queue whose
 * buffers come from one guest RAM block. Returns NULL when the slow path must decide.
 */
static inline void *vhd_mem_xlate_hint(const struct vhd_mem *mem, unsigned hint, uint64_t addr, uint64_t len)
{
	uint64_t off;
	if (hint < mem->nregions && vhd_region_contains(&mem->r[hint], addr, len, &off))
		return mem->r[hint].host + off;
	return NULL;
}

struct vhd_iotlb;

/*
 * The IOTLB's entry hint as one region for the memory-table fast paths (guest_addr, size and host set; its IOVA
 * range taken as the "guest" range). Returns that entry's permission (VHD_IOTLB_RO, _WO or _RW), which the
 * caller must enforce, or 0 when there is no such entry: then nothing is written. Called with the IOTLB
 * unchanging (its threading contract: a queue using it is not paused).
 */
unsigned vhdi_iotlb_window(const struct vhd_iotlb *iotlb, unsigned hint, struct vhd_mem_region *w);

/*
 * vhdi_iotlb_window() of the entry holding iova, found beside *hint first (vhd_iotlb_translate()'s search),
 * *hint then naming it. 0, nothing written, when no entry holds iova.
 */
unsigned vhdi_iotlb_window_at(const struct vhd_iotlb *iotlb, unsigned *hint, uint64_t iova,
			      struct vhd_mem_region *w);

#endif
