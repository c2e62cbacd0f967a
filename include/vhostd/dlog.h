/* SPDX-License-Identifier: MIT */
/**
 * @file vhostd/dlog.h
 * Dirty page log for live migration (vhost-user VHOST_F_LOG_ALL with PROTOCOL_F_LOG_SHMFD).
 *
 * The front-end shares a bitmap, one bit per 4 KiB page of guest-physical memory (bit p % 8 of byte p / 8 for
 * page p), and copies again every page whose bit it finds set while the guest runs on. A device that writes
 * guest memory while logging is on sets the bits of every page it wrote, after writing it: received bytes,
 * used ring entries and index (split), used descriptors (packed). vhd_vq_set_log() turns a queue's logging on;
 * its pushes then set the bits, batched per burst (see vhostd/virtq.h).
 *
 * Threading: a log is mapped, attached to queues and destroyed by one (control) thread, while no queue using it
 * is in a burst; the data path only sets bits (atomic ORs, so several queues may share one log).
 */
#ifndef VHOSTD_DLOG_H
#define VHOSTD_DLOG_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Bytes of guest memory one bit of the log stands for (vhost-user.rst, "Dirty page logging"). */
#define VHD_DLOG_PAGE 4096u
/** Largest log mapped: 1 GiB of bits covers 32 TiB of guest memory. */
#define VHD_DLOG_MAX_SIZE (1ull << 30)

struct vhd_dlog;

/**
 * Map size bytes of fd from offset as a dirty log (read-write, shared).
 * @param fd the log's file (QEMU: a memfd); always taken: closed here, mapped or not.
 * @param why on failure, a sentence naming what was wrong, for the caller's log line.
 * @param out receives the log; the caller owns it (vhd_dlog_destroy()).
 * @return 0; -EBADF (fd < 0 or not mappable), -EINVAL (size 0, offset + size overflows, more than
 *         VHD_DLOG_MAX_SIZE, or beyond the end of a regular file: touching those pages would raise SIGBUS),
 *         -ENOMEM, or -errno of fstat() or mmap().
 */
int vhd_dlog_map(int fd, uint64_t size, uint64_t offset, struct vhd_dlog **out, const char **why);

/** Unmap and free. No queue may still use it (vhd_vq_set_log(vq, NULL, ...) first). NULL is accepted. */
void vhd_dlog_destroy(struct vhd_dlog *log);

/** Bytes of bits: pages [0, 8 * size) can be logged; writes to pages beyond are counted (vhd_dlog_beyond()). */
uint64_t vhd_dlog_size(const struct vhd_dlog *log);

/** Pages written while logging that the log was too small to hold (relaxed: a count). Any thread. */
uint64_t vhd_dlog_beyond(const struct vhd_dlog *log);

/**
 * When the front-end shrinks the log's file after handing it over, setting a bit would raise SIGBUS. With
 * vhd_mem_guard_sigbus() installed, the fault is absorbed like one in guest memory (the log then reads zeros and
 * nothing set in it reaches the front-end), the log is marked (vhd_dlog_faulted()) and fd, if not -1, is shut
 * down so that the owner's event loop hears of it.
 */
void vhd_dlog_set_wake_fd(struct vhd_dlog *log, int fd);
bool vhd_dlog_faulted(const struct vhd_dlog *log);

#ifdef __cplusplus
}
#endif

#endif
