/* SPDX-License-Identifier: MIT */
/**
 * @file vhostd/vduse.h
 * A virtio-net device served to the local kernel through VDUSE (vDPA Device in Userspace, Linux 5.15+).
 *
 * The kernel offers the device on its vDPA bus: bound to virtio_vdpa it becomes an ordinary netdev of this
 * host (a container's interface whose frames go straight through us), bound to vhost_vdpa it becomes
 * /dev/vhost-vdpa-N for a VM or a userspace driver. We are the device: the kernel's driver posts buffers in
 * rings we reach through VDUSE's IOTLB (every descriptor address is an IOVA, mapped on demand from the file
 * VDUSE_IOTLB_GET_FD hands out and cached in a vhostd/iotlb.h cache), and the data path is vhostd/net.h's
 * device side on the queues vhd_vduse_queue_acquire() returns, as for a vhost-user back-end.
 *
 * The kernel asks us things (set the status, report a queue's state, forget an IOVA range) on /dev/vduse/NAME
 * and waits up to its msg_timeout (30 s) for each answer, after which it marks the device broken for good. So
 * each device answers on a thread of its own, which never does anything else: the embedder's threads may then
 * wait on the kernel (attaching, a vhost-vdpa ioctl) without ever holding up an answer. That thread closes a
 * queue's window (waits for a burst in progress to end, never longer) before it changes the queue or the
 * memory the queue uses, as vhostd/vhost_user.h's control thread does.
 *
 * Memory the driver takes away (a vhost-vdpa consumer invalidating its IOTLB range: UPDATE_IOTLB) is unmapped
 * before the request is answered, with the queues' windows closed, so no burst ever reads it afterwards; a queue
 * whose rings went is parked (counted in queues_parked, logged once) and resumes when the memory is mapped again.
 *
 * Known kernel rules (6.12): the device must offer VERSION_1 and ACCESS_PLATFORM and must not offer CTRL_VQ,
 * so one queue pair without MQ; a reset (status 0) drops the kick fds and the mappings without an UPDATE_IOTLB.
 */
#ifndef VHOSTD_VDUSE_H
#define VHOSTD_VDUSE_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vhd_vduse_dev;
struct vhd_vq;

/** Longest device name, NUL excluded (the kernel takes up to 255; vdpa device names are shorter in practice). */
#define VHD_VDUSE_NAME_MAX 63u

struct vhd_vduse_config {
	const char *name;    /**< /dev/vduse/NAME and the vDPA device's name; copied */
	/** virtio features offered; 0 picks vhd_vduse_default_features(). VERSION_1 and ACCESS_PLATFORM are
	 *  always added, CTRL_VQ and MQ always removed (the kernel refuses them). */
	uint64_t features;
	uint16_t queue_size; /**< most descriptors per queue the driver may use; 0 means 256; at most 32768 */
	uint8_t mac[6];      /**< config-space MAC (VIRTIO_NET_F_MAC offered when not all zero) */
	uint16_t mtu;        /**< advertised with VIRTIO_NET_F_MTU when nonzero */
	/** Attach the device to the vDPA bus (generic netlink "vdpa", VDPA_CMD_DEV_NEW, mgmtdev "vduse") once its
	 *  request loop runs, and detach it (VDPA_CMD_DEV_DEL) on destroy. Without it, `vdpa dev add` does that. */
	bool attach;
	/**
	 * Directory for the device's restart state (created if missing; NULL: none, a device of the same name
	 * left by a dead process is then only -EEXIST). With it the device survives its process: NAME.state
	 * (features offered and accepted, status, attached; rewritten with write+rename at each status change)
	 * and NAME.rings (each queue's position, stored by vhd_vduse_queue_release() into a shared mapping, no
	 * syscall) let a later vhd_vduse_dev_create() of the same name reopen /dev/vduse/NAME and resume the
	 * rings where they were. vhd_vduse_dev_destroy() removes both files. A directory that cannot be used is
	 * logged and the device made without restart state. Copied.
	 */
	const char *state_dir;
	/**
	 * Test knobs: a vDPA device that refuses, for proving its driver's error paths (vhost-pktgen
	 * --refuse-status, --refuse-iotlb). refuse_status: SET_STATUS requests that set any of these
	 * VIRTIO_CONFIG_S_* bits for the first time are answered VDUSE_REQ_RESULT_FAILED (the kernel then keeps
	 * the old status: a vhost-vdpa consumer sees it not read back). refuse_iotlb: every UPDATE_IOTLB is
	 * answered FAILED, after our mappings of the range were dropped all the same (the kernel then drops the
	 * consumer's map: its IOTLB write() fails, EFAULT on 6.12). Both 0 in production.
	 */
	uint8_t refuse_status;
	bool refuse_iotlb;
};

/** The features a VDUSE net device offers by default: vhd_net_device_features() with VERSION_1,
 *  ACCESS_PLATFORM, RING_PACKED, INDIRECT_DESC and EVENT_IDX. */
uint64_t vhd_vduse_default_features(void);

/**
 * Create the device (VDUSE_CREATE_DEV with the virtio-net config space, VDUSE_VQ_SETUP for its two queues), open
 * /dev/vduse/NAME, start its request thread and, with cfg->attach, attach it to the vDPA bus.
 * Restart: when the device exists and cfg->state_dir holds its state, left by a process that died, the device
 * is reopened instead (not attached again) and, if the driver had set DRIVER_OK, its queues resume: a split
 * ring at the used index the ring itself holds, a packed ring at the position NAME.rings kept (moved past
 * entries already marked used, for a process killed between its push and its release). Frames in flight in
 * the dead process are lost; none is duplicated.
 * @return 0; -EINVAL for a bad config (name empty, too long or with '/', queue_size over 32768); -EEXIST when
 *         a VDUSE device of that name exists already and is not ours to resume, or is open in another process
 *         (logged naming it); -ENOENT without /dev/vduse/control
 *         (module vduse not loaded); -errno of the ioctls, of pthread_create or of the netlink attach (logged;
 *         everything done so far is undone).
 * Blocking: the attach waits for the kernel to probe the device (our own thread answers it meanwhile).
 */
int vhd_vduse_dev_create(const struct vhd_vduse_config *cfg, struct vhd_vduse_dev **out);

/**
 * Detach (when create attached), stop the request thread, close everything, unmap every IOVA mapping and
 * destroy the kernel device (VDUSE_DESTROY_DEV). NULL is accepted.
 * Blocking: the detach waits for the kernel's driver to let go (the request thread answers it meanwhile).
 */
void vhd_vduse_dev_destroy(struct vhd_vduse_dev *dev);

/** The device status the driver last set (VIRTIO_CONFIG_S_* bits). Threading: any. */
uint8_t vhd_vduse_dev_status(const struct vhd_vduse_dev *dev);

/** Features the driver accepted, valid once vhd_vduse_dev_status() has DRIVER_OK. Threading: any. */
uint64_t vhd_vduse_dev_features(const struct vhd_vduse_dev *dev);

/** True while both queues are started (the driver set DRIVER_OK and the rings are mapped). Threading: any. */
bool vhd_vduse_dev_ready(const struct vhd_vduse_dev *dev);

/**
 * Data path: begin a burst on queue qidx (0: the driver's receive queue, device writes; 1: its transmit queue).
 * @return the queue if started, else NULL (then do not call release). Cheap: one atomic store and two loads.
 * Threading: at most one thread per queue at a time.
 */
struct vhd_vq *vhd_vduse_queue_acquire(struct vhd_vduse_dev *dev, unsigned qidx);

/** End the burst begun by a successful vhd_vduse_queue_acquire(). A burst whose pop stopped at an IOVA not
 *  mapped yet wakes the request thread (one eventfd write) to map it; the queue goes on once it is. */
void vhd_vduse_queue_release(struct vhd_vduse_dev *dev, unsigned qidx);

/**
 * Interrupt the driver for qidx (VDUSE_VQ_INJECT_IRQ: the kernel queues it, the call does not wait for the
 * driver). Call between acquire and release, after vhd_vq_need_notify() said so.
 * @return 0, or -errno of the ioctl (counted in vhd_vduse_stats.irq_failures).
 */
int vhd_vduse_queue_notify(struct vhd_vduse_dev *dev, unsigned qidx);

/** The eventfd the kernel signals when the driver kicks qidx (for an embedder that sleeps), or -1. The fd
 *  belongs to the device. Threading: any. */
int vhd_vduse_queue_kick_fd(const struct vhd_vduse_dev *dev, unsigned qidx);

/** Counters of one device (relaxed atomics, each read on its own). */
struct vhd_vduse_stats {
	uint64_t requests;       /**< requests answered */
	uint64_t requests_failed;/**< answered VDUSE_REQ_RESULT_FAILED (logged with the reason) */
	uint64_t resets;         /**< SET_STATUS 0 */
	uint64_t maps;           /**< IOVA regions mapped (VDUSE_IOTLB_GET_FD + mmap) */
	uint64_t unmaps;         /**< IOVA regions unmapped (UPDATE_IOTLB, reset) */
	uint64_t misses;         /**< bursts that stopped at an IOVA not mapped yet */
	uint64_t irq_failures;   /**< VDUSE_VQ_INJECT_IRQ calls that failed */
	uint64_t iotlb_updates;  /**< UPDATE_IOTLB requests (the driver's memory changed: mappings dropped) */
	/** Times a queue stopped because memory it uses was unmapped (its rings by an UPDATE_IOTLB, or a buffer
	 *  the kernel would not hand out): logged once per episode; the queue resumes at the next UPDATE_IOTLB
	 *  that makes its rings reachable again (the driver mapping its memory back), or at the next reset. */
	uint64_t queues_parked;
};

/** Read dev's counters. Threading: any. */
void vhd_vduse_dev_stats(const struct vhd_vduse_dev *dev, struct vhd_vduse_stats *out);

#ifdef __cplusplus
}
#endif
#endif
