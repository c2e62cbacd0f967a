/* SPDX-License-Identifier: MIT */
/**
 * @file vhostd/mem.h
 * Guest memory table: where each guest-physical range lives in this process.
 *
 * A device reads descriptor addresses written by the driver; those are guest-physical addresses (or IOVAs once
 * an IOMMU is in play). vhd_mem_translate() is the only function that turns them into host pointers, so every
 * bound check on guest addresses lives in one place.
 *
 * Threading: a table is built and changed by one thread (the control thread) while no queue uses it. Lookups
 * (vhd_mem_translate() and friends) only read the table and may run on many threads at once, each with its own
 * hint.
 */
#ifndef VHOSTD_MEM_H
#define VHOSTD_MEM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Most regions one table holds: the slot count vhostd reports for VHOST_USER_GET_MAX_MEM_SLOTS. */
#define VHD_MEM_MAX_REGIONS 32

struct vhd_mem;

/** One region as the caller describes it. */
struct vhd_mem_region_info {
	uint64_t guest_addr; /**< guest-physical (or IOVA) start */
	uint64_t size;       /**< bytes; nonzero */
	uint64_t user_addr;  /**< the front-end's virtual address of the same bytes (vhost-user ring addresses) */
	void *host;          /**< where the bytes are mapped in this process */
};

/**
 * Create an empty table.
 * @param out receives the table; the caller owns it and frees it with vhd_mem_destroy().
 * @return 0, or -ENOMEM.
 */
int vhd_mem_create(struct vhd_mem **out);

/**
 * Destroy a table, unmapping the regions it mapped itself (vhd_mem_map_fd()) and closing their fds.
 * Regions added with vhd_mem_add() stay mapped: the caller owns those. NULL is accepted.
 */
void vhd_mem_destroy(struct vhd_mem *mem);

/**
 * Add a region the caller has mapped and keeps mapped for the table's lifetime.
 * @return 0; -EINVAL if size is 0 or guest_addr+size, user_addr+size or host+size overflow; -EEXIST if the
 *         guest range overlaps a region already present; -ENOSPC if the table is full.
 */
int vhd_mem_add(struct vhd_mem *mem, const struct vhd_mem_region_info *info);

/**
 * Map size bytes of fd at mmap_offset (read-write, shared) and add them as a region at guest_addr.
 * On success the table owns fd and the mapping; on failure fd is left open and owned by the caller.
 * A region identical to one already present (same guest range, user address, file and offset) is not mapped
 * again: fd is closed and the region gains a reference, which vhd_mem_remove() drops. (QEMU 7.2 sends every
 * region once per queue pair with VHOST_USER_ADD_MEM_REG, and removes it as many times.)
 * @return 0; the errors of vhd_mem_add(); -EINVAL if mmap_offset+size overflows or, for a regular file
 *         (memfd, hugetlbfs, /dev/shm), goes past the file's end (those pages would raise SIGBUS when touched);
 *         -errno of fstat() or mmap().
 */
int vhd_mem_map_fd(struct vhd_mem *mem, int fd, uint64_t mmap_offset, uint64_t guest_addr, uint64_t size,
		   uint64_t user_addr);

/**
 * Remove the region that starts at guest_addr and has exactly size bytes, unmapping it if the table mapped it;
 * a region mapped more than once (see vhd_mem_map_fd()) only loses a reference until the last one goes.
 * @return 0, or -ENOENT if no such region exists.
 */
int vhd_mem_remove(struct vhd_mem *mem, uint64_t guest_addr, uint64_t size);

/** Number of regions in the table. */
unsigned vhd_mem_count(const struct vhd_mem *mem);

/**
 * Region i (in guest-address order) and the file it was mapped from, for handing the table to another process
 * (vhd_vu_dev_export()). info->host is this process's mapping.
 * @param fd receives the table's own descriptor (the table keeps it); mmap_offset where the region starts in it;
 *        refs how many vhd_mem_map_fd() calls mapped these same bytes.
 * @return 0; -ENOENT (no region i); -EBADF (a region vhd_mem_add() added, from no file of the table's).
 */
int vhd_mem_region_file(const struct vhd_mem *mem, unsigned i, struct vhd_mem_region_info *info, int *fd,
			uint64_t *mmap_offset, unsigned *refs);

/**
 * Translate the guest range [addr, addr+len) into host segments.
 *
 * The range must lie wholly inside the table; it may cross from one region into the next adjacent one, in which
 * case one segment per region is returned. len 0 yields 0 segments.
 * @param hint per-caller cache of the region that last matched (any value is safe; start with 0). Each thread
 *        keeps its own so lookups never write shared memory.
 * @param iov receives up to max_iov segments.
 * @return the number of segments; -EOVERFLOW if addr+len wraps around 2^64; -EFAULT if some byte of the range
 *         is in no region; -ENOBUFS if more than max_iov segments would be needed.
 */
int vhd_mem_translate(const struct vhd_mem *mem, unsigned *hint, uint64_t addr, uint64_t len, struct iovec *iov,
		      unsigned max_iov);

/**
 * Host pointer for a guest range that must be contiguous in one region (ring parts, indirect tables).
 * @return the pointer, or NULL if the range wraps, is not wholly inside one region, or len is 0.
 */
void *vhd_mem_guest_to_host(const struct vhd_mem *mem, uint64_t addr, uint64_t len);

/**
 * Host pointer for a range given in the front-end's virtual addresses (vhost-user SET_VRING_ADDR).
 * @return the pointer, or NULL as for vhd_mem_guest_to_host().
 */
void *vhd_mem_user_to_host(const struct vhd_mem *mem, uint64_t user_addr, uint64_t len);

/*
 * A front-end that shrinks a memory file after handing it over (ftruncate on its memfd) turns every later access
 * to the lost pages into SIGBUS, which kills the process: vhd_mem_map_fd() checks the size only when it maps.
 * File seals (F_SEAL_SHRINK) would rule that out, but QEMU's memfds and DPDK's hugetlbfs files carry none. The
 * guard below lets a back-end survive it instead, losing only the device whose front-end did it.
 */

/**
 * Install a process-wide SIGBUS handler that absorbs faults in regions mapped by vhd_mem_map_fd() (any table).
 * On such a fault the region's whole mapping is replaced by zero-filled private memory, so the faulting access
 * completes (the rings then read as zeros: a split queue sees its avail index jump back, and breaks, or nothing
 * new; a packed one sees nothing available); the table is marked (vhd_mem_faulted()), and the socket given to vhd_mem_set_wake_fd() is shut
 * down so that its owner's event loop hears of it at once. Any other SIGBUS goes to the disposition in place
 * before the call (by default the process dies, as it would have). The library never calls this itself: signal
 * dispositions belong to the application.
 * @return 0 (also when already installed), or -errno from sigaction().
 * Threading: call once from the main thread at start-up, before the threads that touch guest memory exist.
 */
int vhd_mem_guard_sigbus(void);

/** Faults absorbed by the guard so far, in all tables. Threading: any thread. */
uint64_t vhd_mem_guard_hits(void);

/**
 * Whether the guard absorbed a fault in one of mem's regions (its mapping now reads zeros).
 * @param guest_addr if not NULL and the result is true, receives the guest address of the first such region.
 * Threading: any thread.
 */
bool vhd_mem_faulted(const struct vhd_mem *mem, uint64_t *guest_addr);

/**
 * The socket to shut down (SHUT_RDWR) when the guard absorbs a fault in mem, or -1 (the default) for none.
 * The caller keeps fd open for as long as mem exists or until it sets -1 again. Threading: the table's owner.
 */
void vhd_mem_set_wake_fd(struct vhd_mem *mem, int fd);

#ifdef __cplusplus
}
#endif
#endif
