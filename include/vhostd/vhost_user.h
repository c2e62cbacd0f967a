/* SPDX-License-Identifier: MIT */
/**
 * @file vhostd/vhost_user.h
 * A vhost-user device (the back-end, "device side"): a process that serves a virtio device's data plane to a
 * front-end (QEMU, DPDK virtio-user, vhostd's own frontend) over a unix socket, per QEMU's
 * docs/interop/vhost-user.rst.
 *
 * The library never owns the event loop. The control thread polls the fds vhd_vu_dev_pollfds() reports (and
 * honours vhd_vu_dev_timeout_ms() for reconnecting) and calls vhd_vu_dev_dispatch() when one is ready. Data-path
 * threads, one per queue if they like, bracket each burst with vhd_vu_queue_acquire() / vhd_vu_queue_release();
 * the control thread waits for a queue's burst to end before changing that queue or the memory table, so a
 * data-path thread never sees rings or memory disappear under it.
 *
 * Everything the front-end sends is hostile: sizes, indices, fds, addresses and regions are checked; a bad
 * message is refused with a log line naming it (and a REPLY_ACK failure when one was asked for), and only a
 * message that leaves the stream unusable closes the connection.
 *
 * No call here waits on the front-end. The socket is non-blocking; a message is assembled across dispatch calls
 * and replies wait in a bounded per-connection queue. A front-end that starts a message and does not finish
 * it, or does not read what we send, within vhd_vu_config.msg_timeout_ms is disconnected with a log line naming
 * what it did. Every send uses MSG_NOSIGNAL: a front-end that has gone away never raises SIGPIPE in the
 * embedding program.
 */
#ifndef VHOSTD_VHOST_USER_H
#define VHOSTD_VHOST_USER_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vhd_vu_dev;
struct vhd_vq;

/** Most queue pairs a device offers. */
#define VHD_VU_MAX_QUEUE_PAIRS 16

/** What the control thread is told about (through vhd_vu_config.event). */
enum vhd_vu_event {
	VHD_VU_CONNECTED,      /**< a front-end connected */
	VHD_VU_DISCONNECTED,   /**< it went away; every queue has stopped */
	VHD_VU_QUEUE_STARTED,  /**< qidx is ready for the data path (rings mapped, enabled) */
	VHD_VU_QUEUE_STOPPED,  /**< qidx stopped (disabled, GET_VRING_BASE, reset, disconnect) */
	VHD_VU_STATUS,         /**< the front-end set the device status (VHOST_USER_SET_STATUS) */
	VHD_VU_READY,          /**< the device can carry traffic: queues 0 and 1 started, and every other queue
				    the front-end has enabled too (qidx is 0) */
	VHD_VU_NOT_READY,      /**< it no longer can (qidx is 0); sent once after each VHD_VU_READY */
};

struct vhd_vu_config {
	const char *path;            /**< unix socket path; copied */
	/** Connect to path (reconnecting) instead of listening on it. A listening device serves one front-end at a
	 *  time: while one is connected it does not listen (the socket file stays), so another's connect fails at
	 *  once with ECONNREFUSED; it listens again, on a fresh file with the same owner, group and mode, when the
	 *  front-end goes. (A process forked meanwhile holds a copy of the listening socket, which keeps listening.) */
	bool client;
	uint16_t max_queue_pairs;    /**< 1..VHD_VU_MAX_QUEUE_PAIRS */
	/** virtio features offered; 0 picks vhd_vu_default_features(). VIRTIO_F_ACCESS_PLATFORM (not in the
	 *  default) turns on the device IOTLB: ring and buffer addresses are then IOVAs that IOTLB_MSG maps,
	 *  and misses are asked for on the back-end channel (docs/viommu.md). */
	uint64_t features;
	/** With ACCESS_PLATFORM: forget the translations of buffers after every burst that used them (the rings'
	 *  are kept), so that each buffer is translated afresh when the front-end does not report every unmap
	 *  (QEMU 7.2 with a guest in lazy invalidation, docs/viommu.md). Costs a miss per buffer. */
	bool iotlb_per_burst;
	uint16_t mtu;                /**< advertised with VIRTIO_NET_F_MTU when nonzero */
	uint8_t mac[6];              /**< config-space MAC (VIRTIO_NET_F_MAC offered when not all zero) */
	unsigned reconnect_min_ms;   /**< client: first retry delay (default 100) */
	unsigned reconnect_max_ms;   /**< client: back-off cap (default 5000) */
	/** Called on the control thread from vhd_vu_dev_dispatch(); may be NULL. */
	void (*event)(struct vhd_vu_dev *dev, enum vhd_vu_event ev, unsigned qidx, void *opaque);
	void *opaque;
	const char *name;            /**< for log lines; copied */
	/** A message the front-end has started must arrive whole, and each message we send must be read, within
	 *  this many milliseconds, or the front-end is disconnected (default 2000). */
	unsigned msg_timeout_ms;
	/** Server only: the socket file's owner (when set_owner), group (when set_group) and permission bits
	 *  (mode, 01..0777; 0 leaves what bind() made: 0777 less the umask), applied right after it is bound and
	 *  before the first accept, so that a front-end running as another user (QEMU under libvirt) can
	 *  connect. Setting any of them on a client is -EINVAL. */
	bool set_owner;
	uid_t owner;
	bool set_group;
	gid_t group;
	unsigned mode;
	/** Offer VHOST_USER_PROTOCOL_F_CONFIG, so that the front-end may read the virtio-net config space (MAC,
	 *  status, queue pairs, MTU) with VHOST_USER_GET_CONFIG. Off by default: QEMU's vhost-user-net keeps the
	 *  config space itself and warns ("backend supports VHOST_USER_PROTOCOL_F_CONFIG but QEMU does not") on
	 *  every start when it is offered; turn it on for a front-end that reads it. */
	bool config_space;
};

/** The virtio-net features a device offers by default. */
uint64_t vhd_vu_default_features(void);

/**
 * Create a device and start listening (server) or connecting (client).
 * @return 0; -EINVAL for a bad config; -errno of socket/bind/listen (server), or of chown/chmod when owner,
 *         group or mode were asked for (logged with the path; the socket is removed again). A client that
 *         cannot connect yet is not an error: it retries.
 */
int vhd_vu_dev_create(const struct vhd_vu_config *cfg, struct vhd_vu_dev **out);

/** Disconnect, stop every queue, unmap guest memory, close every fd, remove the socket file (server). */
void vhd_vu_dev_destroy(struct vhd_vu_dev *dev);

/** Most bytes and fds one vhd_vu_dev_export() produces (fds stay below SCM_RIGHTS' 253 per message). */
#define VHD_VU_EXPORT_MAX 65536
#define VHD_VU_EXPORT_MAX_FDS 160

/**
 * Hand a running device to another process (vhostctl upgrade): every queue is paused at a burst boundary (no
 * chain held: the data path's vhd_vu_queue_acquire() says no from now on), and the state the front-end set up
 * (features, memory table, dirty log, inflight area, back-end channel, MTU, status, and per queue its size,
 * rings, position, enable and eventfds) is written into buf as a versioned blob, with the descriptors it names
 * in fds (still dev's: send or dup them before dev goes). fds[0] is the connection, or a server's listening
 * socket when no front-end is connected (the blob says which).
 * @param cap buf's size (VHD_VU_EXPORT_MAX suffices); fds must hold VHD_VU_EXPORT_MAX_FDS.
 * @return 0 (then resume with vhd_vu_dev_resume() if the handover fails, or drop dev with
 *         vhd_vu_dev_release()); -EOPNOTSUPP with VIRTIO_F_ACCESS_PLATFORM negotiated (the IOTLB is not handed
 *         over); -EBUSY while a message from or to the front-end is half transferred (try again after
 *         vhd_vu_dev_dispatch()); -E2BIG when the state does not fit. Queues are left running on failure.
 * Threading: the control thread. Never blocks (the pause waits for one burst).
 */
int vhd_vu_dev_export(struct vhd_vu_dev *dev, void *buf, size_t cap, size_t *len, int *fds, unsigned *nfds);

/**
 * Build a device from vhd_vu_dev_export()'s blob and fds, in another process (or the same one), as cfg
 * describes it (cfg.path must be the exporter's). The state is replayed through the same handlers, with the
 * same checks, as the front-end's messages that set it: a value the exporter should never have accepted is
 * refused here too. No reply or other byte goes to the front-end. The queues come up paused: the data path
 * gets none of them until vhd_vu_dev_resume().
 * @param fds taken in every case (closed here on failure, owned by the device on success).
 * @param err receives a one-line reason on failure.
 * @return 0; -EPROTO (not a blob: magic), -EPROTONOSUPPORT (another version), -EINVAL (truncated, sizes that
 *         overflow, an fd index beyond nfds, a record the exporter never writes, a socket that is none),
 *         -EBADF (missing fds) or a handler's refusal (-errno, logged and named in err).
 */
int vhd_vu_dev_import(const struct vhd_vu_config *cfg, const void *buf, size_t len, int *fds, unsigned nfds,
		      struct vhd_vu_dev **out, char *err, size_t errlen);

/** Let the data path into every queue that vhd_vu_dev_export() or vhd_vu_dev_import() paused. Control thread. */
void vhd_vu_dev_resume(struct vhd_vu_dev *dev);

/**
 * Free an exported device whose state another process now owns: its descriptors and mappings are closed in
 * this process only; nothing is sent to the front-end and the socket file stays.
 */
void vhd_vu_dev_release(struct vhd_vu_dev *dev);

/**
 * The fds the control thread should poll, with their events (the listening socket, or the connection: POLLIN,
 * or POLLOUT while replies wait to be written; with ACCESS_PLATFORM offered also an eventfd the data path
 * writes when a queue meets an IOTLB miss, and the back-end channel while MISS requests wait to be written).
 * Fills up to max entries (4 always suffice).
 * @return the number filled.
 */
unsigned vhd_vu_dev_pollfds(struct vhd_vu_dev *dev, struct pollfd *fds, unsigned max);

/**
 * Whether a queue waits for the front-end's IOTLB: a pop stopped at an IOVA it lacks (its MISS to be sent, or
 * sent and unanswered), translations to forget (iotlb_per_burst), or rings not mapped yet. Such a queue moves
 * only after vhd_vu_dev_dispatch() has sent the request and taken the update, so an application that polls its
 * fds only now and then (a busy data path, on the control thread's core) should do it at once while this says
 * so; otherwise the wake_fd in vhd_vu_dev_pollfds() has already said it. A few loads per queue, no syscall.
 * Threading: the control thread (the data path's flags are read relaxed: a stale answer costs a round).
 */
bool vhd_vu_dev_iotlb_waiting(const struct vhd_vu_dev *dev);

/** Milliseconds until vhd_vu_dev_dispatch() must run even without input (a client's reconnect, or a message's
 *  deadline), or -1. */
int vhd_vu_dev_timeout_ms(struct vhd_vu_dev *dev);

/**
 * Do whatever is pending: accept, reconnect, write queued replies, read what has arrived and handle each whole
 * message (up to a budget per call), and disconnect a front-end whose message or reply is past its deadline.
 * Never blocks on the front-end. With vhd_mem_guard_sigbus() installed, a
 * front-end that shrank its memory file under the data path is hung up on here (the guard shuts the socket down
 * so that this runs at once), with an error naming the region.
 * @return 0, or a negative errno describing a connection that was just lost (the device keeps running and
 *         listens or reconnects again).
 */
int vhd_vu_dev_dispatch(struct vhd_vu_dev *dev);

/**
 * After a live migration the front-end asks (VHOST_USER_SEND_RARP) that a RARP announcing the guest's MAC be
 * sent on its behalf, so switches learn where the guest now is. The request is kept until taken here; whoever
 * forwards the guest's traffic sends the frame (vhd_vu_build_rarp() builds it) as if the guest had.
 * @return true and the MAC when a request was pending (it is then cleared), else false.
 */
bool vhd_vu_dev_take_rarp(struct vhd_vu_dev *dev, uint8_t mac[6]);

/** Build the 60-byte broadcast RARP request announcing mac into frame (at least 60 bytes). @return 60. */
unsigned vhd_vu_build_rarp(const uint8_t mac[6], uint8_t *frame);

/** True while a front-end is connected. */
bool vhd_vu_dev_connected(const struct vhd_vu_dev *dev);

/** Features the front-end acknowledged (VHOST_USER_SET_FEATURES), 0 before. */
uint64_t vhd_vu_dev_features(const struct vhd_vu_dev *dev);

/** Number of queues (2 per queue pair). */
unsigned vhd_vu_dev_num_queues(const struct vhd_vu_dev *dev);

/**
 * Data path: begin a burst on queue qidx (even: the driver's RX, device writes; odd: TX, device reads).
 * @return the queue if it is started, else NULL (then do not call release); NULL too while the queue waits for
 *         an IOTLB translation its last burst missed (until the front-end's next IOTLB message, or a retry).
 *         Cheap: one atomic store and two loads.
 * Threading: at most one thread per queue at a time.
 */
struct vhd_vq *vhd_vu_queue_acquire(struct vhd_vu_dev *dev, unsigned qidx);

/** End the burst begun by a successful vhd_vu_queue_acquire(). With the IOTLB on, a burst whose pops stopped at
 *  a miss marks the queue waiting and wakes the control thread (one eventfd write per wait) to ask for it. */
void vhd_vu_queue_release(struct vhd_vu_dev *dev, unsigned qidx);

/**
 * Interrupt the driver for qidx (write its call eventfd). Call between acquire and release, after
 * vhd_vq_need_notify() said so. Never blocks: call fds are eventfds made non-blocking when they arrive (anything
 * else is refused), so a counter the front-end never drains (-EAGAIN) or a broken fd costs one failed signal,
 * counted in vhd_vu_stats.notify_failures and logged once per call fd. Never raises SIGPIPE.
 * @return 0, or -errno of the failed write (already counted; the caller need not act on it).
 */
int vhd_vu_queue_notify(struct vhd_vu_dev *dev, unsigned qidx);

/**
 * Data path, between a successful vhd_vu_queue_acquire() and the release: the eventfd the driver kicks qidx
 * with, for a data path that sleeps until there is work (vhd_vq_enable_notify() first, then poll() the fd for
 * POLLIN and read its counter empty after waking), or -1 when the front-end sent none (it expects the device
 * to poll: do not sleep on this queue).
 * The fd is the device's: it stays open until the control thread next handles a message for the device, which
 * may close or replace it, so a thread asleep on it must be woken by whoever calls vhd_vu_dev_dispatch() once
 * that returns (the fd it sleeps on may no longer be the one the driver kicks). Never blocks.
 */
int vhd_vu_queue_kick_fd(struct vhd_vu_dev *dev, unsigned qidx);

/** Counters of one device, cumulative over its lifetime (all connections). */
struct vhd_vu_stats {
	uint64_t notify_failures; /**< vhd_vu_queue_notify() writes that failed (call counter full, fd broken) */
	/* vIOMMU (VIRTIO_F_ACCESS_PLATFORM offered in vhd_vu_config.features and negotiated): */
	uint64_t iotlb_misses;        /**< MISS requests sent on the back-end channel */
	uint64_t iotlb_updates;       /**< IOTLB UPDATEs accepted */
	uint64_t iotlb_invalidations; /**< IOTLB INVALIDATEs that removed a translation */
	uint64_t iotlb_refused;       /**< IOTLB UPDATEs and INVALIDATEs refused (logged with the value) */
	uint64_t iotlb_waits;         /**< times a queue stopped at a chain whose IOVA missed, to wait for it */
};

/**
 * Read dev's counters into out. Threading: any thread, any time the device exists; the counters are relaxed
 * atomics, each read on its own (not a snapshot across counters). Never blocks.
 */
void vhd_vu_dev_stats(const struct vhd_vu_dev *dev, struct vhd_vu_stats *out);

#ifdef __cplusplus
}
#endif
#endif
