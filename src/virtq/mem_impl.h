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

struct vhd_mem {
	unsigned nregions;
	/* Written by the SIGBUS guard (mem.c), from whichever thread faulted. */
	_Atomic bool faulted;
	_Atomic uint64_t fault_guest_addr;
	_Atomic int wake_fd;
	/* Sorted by guest_addr, non-overlapping, so a range that leaves one region can only continue in r[i+1]. */
	struct vhd_mem_region r[VHD_MEM_MAX_REGIONS];
};

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

#endif
