/* SPDX-License-Identifier: MIT */
/**
 * @file vhostd/frontend.h
 * The driver side of a vhost device without a VM ("virtio-user"): this process plays the guest. It connects to
 * (or listens for) a vhost-user back-end, or drives the kernel's vhost-net with a tap as its back-end
 * (vhost-kernel, see VHD_FE_TRANSPORT_VHOST_KERNEL), negotiates, shares one memfd holding every ring plus a
 * packet-buffer area per queue pair, and then drives the queues with the driver-side virtqueue API
 * (vhostd/virtq.h). With vhost-kernel "connecting" is opening /dev/vhost-net and the tap, every setup step
 * is an ioctl that completes at once, and "the back-end went away" is the tap being deleted.
 *
 * Guest addresses are this process's virtual addresses (as with DPDK's virtio-user), so a buffer in the
 * buffer area is handed to vhd_vq_add() at its own address; with iommu (VIRTIO_F_ACCESS_PLATFORM, a device
 * behind an IOMMU) at its I/O virtual address instead, vhd_fe_buf_iova() plus its offset in the area.
 *
 * The library never owns the event loop: poll vhd_fe_pollfds(), honour vhd_fe_timeout_ms() and call
 * vhd_fe_dispatch(). When the back-end goes away the frontend reports VHD_FE_DOWN (reclaim your in-flight
 * buffers with vhd_vq_reclaim() in that callback: the queues are destroyed right after it), reconnects with
 * back-off, sets everything up again and reports VHD_FE_UP. The memfd, and so the buffer areas, survive. With
 * vhd_fe_config.inflight the rings survive too, once a back-end took the inflight area: no VHD_FE_DOWN then.
 *
 * Blocking: no call ever waits on the back-end. The socket is non-blocking; setup is a state machine that
 * vhd_fe_dispatch() moves one step further each time the back-end's reply has arrived (a request whose reply
 * is awaited is simply left in flight until a later dispatch). Each awaited reply has a deadline
 * (reply_timeout_ms): a back-end that does not answer, stalls in the middle of a message, stops reading, or
 * answers wrongly (another request, no reply flag, the wrong size, fds, a REPLY_ACK refusal) is disconnected
 * with a log line naming what it did, and the frontend reconnects with its back-off. Every send uses
 * MSG_NOSIGNAL, so a back-end that goes away never raises SIGPIPE in the calling program.
 *
 * Threading: setup and dispatch on one control thread; each queue used by one data-path thread, only between
 * VHD_FE_UP and VHD_FE_DOWN (the caller stops its data path in the DOWN callback).
 */
#ifndef VHOSTD_FRONTEND_H
#define VHOSTD_FRONTEND_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vhd_fe;
struct vhd_vq;

/** Transport kinds behind the frontend's ops table. */
enum vhd_fe_transport_kind {
	/** Pick from what path is: a character device named vhost-vdpa-N is vhost-vdpa, any other character device
	 * (/dev/vhost-net) vhost-kernel, anything else (a unix socket, or a path a server will create) vhost-user. */
	VHD_FE_TRANSPORT_AUTO = 0,
	VHD_FE_TRANSPORT_VHOST_USER, /**< a vhost-user back-end on the unix socket path */
	/** The kernel's vhost-net (path, normally /dev/vhost-net) with the tap tap as its back-end: one vhost-net
	 * device per queue pair, each given one queue of the tap. Split rings only (vhost-net has no
	 * VIRTIO_F_RING_PACKED: asking for it fails vhd_fe_create() with -EOPNOTSUPP); no server, no iommu. */
	VHD_FE_TRANSPORT_VHOST_KERNEL,
	/** A vDPA device through the kernel's vhost-vdpa (path /dev/vhost-vdpa-N): memory mapped into its IOTLB, ring
	 * addresses IOVAs; no server, no iommu (the device translates everything through the IOTLB we fill). */
	VHD_FE_TRANSPORT_VHOST_VDPA,
};
/** The name given to the first vhost-user kind; kept for callers that set it. */
#define VHD_FE_VHOST_USER VHD_FE_TRANSPORT_VHOST_USER

/** Which kind cfg selects once AUTO is resolved from its path (see VHD_FE_TRANSPORT_AUTO); never AUTO.
 * Looks at the file system (stat), never blocks on a peer. */
enum vhd_fe_transport_kind vhd_fe_transport_of(enum vhd_fe_transport_kind kind, const char *path);

/** The kind's name as the command lines spell it ("vhost-user", "vhost-kernel", "vhost-vdpa", "auto"). */
const char *vhd_fe_transport_name(enum vhd_fe_transport_kind kind);

/** Parse a name as vhd_fe_transport_name() spells it. @return 0, or -EINVAL for an unknown name. */
int vhd_fe_transport_parse(const char *name, enum vhd_fe_transport_kind *kind);

enum vhd_fe_event {
	VHD_FE_UP,   /**< negotiated, rings live: the data path may run */
	VHD_FE_DOWN, /**< the back-end went away or refused setup; queues about to be destroyed */
};

struct vhd_fe_config {
	enum vhd_fe_transport_kind transport; /**< how to reach the device; AUTO (0) picks from path */
	const char *path;          /**< vhost-user socket, /dev/vhost-net, or /dev/vhost-vdpa-N */
	const char *tap;           /**< vhost-kernel: the tap interface that is vhost-net's back-end (created if
				    missing, removed at close if we created it and it is not persistent); required
				    there, ignored by the other transports. Copied. */
	bool server;               /**< listen on path instead of connecting; one back-end at a time: while one is
				    connected another's connect fails with ECONNREFUSED (see vhd_vu_config.client) */
	uint16_t queue_pairs;      /**< 1..16 */
	uint16_t queue_size;       /**< ring size, a power of two (default 256) */
	uint64_t features;         /**< features wanted; 0 picks vhd_fe_default_features(). Negotiated down. */
	size_t buf_area_size;      /**< bytes of shared buffer memory per queue pair (default 4 MiB) */
	unsigned reconnect_min_ms; /**< default 100 */
	unsigned reconnect_max_ms; /**< default 5000 */
	unsigned reply_timeout_ms; /**< how long each reply (and each message half-sent by either side) may take
	                                before the back-end is dropped; default 2000 */
	/**
	 * Put the device behind an IOMMU: ask for VIRTIO_F_ACCESS_PLATFORM (setup fails with -ENOTSUP, logged, when
	 * the back-end does not offer it) and the BACKEND_REQ and REPLY_ACK protocol features, give the device a
	 * request channel (SET_BACKEND_REQ_FD), and place the shared memory at IOVAs unlike both our virtual and
	 * its guest-physical addresses: ring addresses and buffers are IOVAs then. The whole memory is mapped with
	 * one IOTLB UPDATE per queue (right after its SET_VRING_NUM, for devices with an IOTLB per queue); the
	 * device's MISS requests are answered a page at a time.
	 */
	bool iommu;
	bool iommu_lazy; /**< with iommu: map nothing up front, every translation comes from a MISS */
	/**
	 * Restart without loss (split and packed rings): negotiate PROTOCOL_F_INFLIGHT_SHMFD when the back-end offers it, get
	 * its inflight area (GET_INFLIGHT_FD) after the memory table on the first connection, and keep it. Once a
	 * back-end has it (SET_INFLIGHT_FD), losing that back-end does not take the queues down: no VHD_FE_DOWN,
	 * the rings and every buffer in flight stay as they are (vhd_fe_vq() returns NULL meanwhile), and the next
	 * back-end is handed the same area before its rings start, so it resubmits exactly what the dead one had
	 * taken and not used; VHD_FE_UP follows. Should the next one agree to other features, the rings cannot be
	 * resumed: VHD_FE_DOWN then (vhd_fe_vq() answers in the callback) and a fresh start.
	 */
	bool inflight;
	void (*event)(struct vhd_fe *fe, enum vhd_fe_event ev, void *opaque);
	void *opaque;
	const char *name;
};

/** Features a frontend asks for by default (split ring, EVENT_IDX, MRG_RXBUF, MQ, STATUS, VERSION_1). */
uint64_t vhd_fe_default_features(void);

/**
 * Allocate the shared memory and start connecting (or listening).
 * @return 0; -EINVAL for a bad config; -ENOMEM; -errno of memfd/mmap/socket.
 */
int vhd_fe_create(const struct vhd_fe_config *cfg, struct vhd_fe **out);

/**
 * Report VHD_FE_DOWN if up, disconnect and free everything (fe may be NULL). Does not wait on the back-end:
 * closing the socket is what stops it (it maps the memory file itself, so unmapping ours takes nothing from
 * under it, and it lets go of its mapping when it sees the close). Control thread.
 */
void vhd_fe_destroy(struct vhd_fe *fe);

/**
 * The fds to poll, with the events wanted now: the connection (POLLIN, or POLLOUT while a message waits to
 * be written), else the listening socket, and with iommu the device's request channel once it exists; 0 to 2
 * entries. Pass the events to poll() unchanged.
 * @return entries written to fds (at most max).
 */
unsigned vhd_fe_pollfds(struct vhd_fe *fe, struct pollfd *fds, unsigned max);

/**
 * Milliseconds until vhd_fe_dispatch() must run even without input: the earliest of the next reconnect
 * attempt and the deadline of the awaited reply; -1 when nothing is timed.
 */
int vhd_fe_timeout_ms(struct vhd_fe *fe);

/**
 * Connect/accept when due, move setup along, or notice a lost or misbehaving back-end. Call it after poll()
 * (with or without input). Never blocks.
 * @return 0, or -errno when the connection was dropped (logged; it retries after the back-off):
 *         -ETIMEDOUT no reply within reply_timeout_ms, or a message stalled halfway; -EPROTO a reply to
 *         another request, without the reply flag, or a header we cannot follow; -EMSGSIZE a reply of the
 *         wrong size; -EBADMSG a reply carrying fds; -EREMOTEIO the back-end refused a request (REPLY_ACK);
 *         -ECONNRESET it closed the connection (or its request channel); -ERANGE too few queue pairs; -ENOTSUP
 *         iommu asked for and ACCESS_PLATFORM not offered; other -errno of the socket.
 */
int vhd_fe_dispatch(struct vhd_fe *fe);

/**
 * Reset the device under its traffic, as a driver recovering from an error does: report VHD_FE_DOWN if up,
 * let go of the device (vhost-vdpa: status 0, which also drops its maps, and the fd closed; vhost-user: the
 * connection closed), then reopen or reconnect after the back-off and set everything up again (VHD_FE_UP).
 * Buffers in flight are lost (reclaim them in the DOWN callback). Never waits on the device. Control thread.
 * @return 0, or -ENOTCONN when there is no device to reset right now.
 */
int vhd_fe_reset(struct vhd_fe *fe);

/**
 * Take our memory (rings and buffers) out of the device's reach, or give it back, while up: a hostile driver's
 * move, for proving a device (a VDUSE device, for one) never touches memory it no longer has mapped and
 * resumes once the memory is back. vhost-vdpa only: map false writes a VHOST_IOTLB_INVALIDATE for the whole
 * region (the device's queues stop), map true the UPDATE that maps it again. Nothing else changes on our side:
 * the data path keeps posting buffers, which the device takes once the memory is back. A reset or a lost
 * device maps everything afresh anyway. Never waits on the device beyond the IOTLB write (for VDUSE: until
 * its daemon answered the kernel's UPDATE_IOTLB). Control thread.
 * @return 0; -ENOTCONN down; -ENOTSUP the transport is not vhost-vdpa; -EALREADY already in that state;
 *         -errno of the IOTLB write (logged).
 */
int vhd_fe_remap(struct vhd_fe *fe, bool map);

/**
 * Send a command on the device's control queue (VIRTIO_NET_F_CTRL_VQ negotiated: ask for it in features, with
 * the command classes wanted, e.g. VIRTIO_NET_F_CTRL_MAC_ADDR), as a guest's driver does: class and command
 * numbers and data as in the virtio spec (5.1.6.5), e.g. class 1 (MAC) command 1 (ADDR_SET) with 6 bytes. One
 * command at a time; the answer is collected by vhd_fe_dispatch() (vhd_fe_timeout_ms() asks for it soon) and
 * read with vhd_fe_ctrl_result(). When MQ is negotiated too, the frontend itself sets the number of queue
 * pairs (MQ VQ_PAIRS_SET) right after VHD_FE_UP. Never waits on the device. Control thread.
 * @return 0 posted; -ENOTCONN down; -ENOTSUP no control queue; -EBUSY a command is pending; -EMSGSIZE data over
 *         126 bytes; -EIO the queue is broken.
 */
int vhd_fe_ctrl(struct vhd_fe *fe, uint8_t cls, uint8_t cmd, const void *data, size_t len);

/**
 * The outcome of the last control command: -EINPROGRESS while pending, 0 acknowledged (VIRTIO_NET_OK),
 * -EREMOTEIO refused (VIRTIO_NET_ERR), -EIO the device broke the queue or wrote no valid ack (logged),
 * -ENODATA none sent yet.
 */
int vhd_fe_ctrl_result(const struct vhd_fe *fe);

/** True between VHD_FE_UP and VHD_FE_DOWN. */
bool vhd_fe_up(const struct vhd_fe *fe);

/** Negotiated virtio features (valid while up). */
uint64_t vhd_fe_features(const struct vhd_fe *fe);

/** Driver-side queue qidx (even: RX, odd: TX), or NULL while down. */
struct vhd_vq *vhd_fe_vq(struct vhd_fe *fe, unsigned qidx);

/** The buffer area of queue pair qp: its address (also its guest address, unless iommu: vhd_fe_buf_iova()) and
 * length. */
void *vhd_fe_buf_area(struct vhd_fe *fe, unsigned qp, size_t *len);

/** The device's address of queue pair qp's buffer area: its virtual address, or with iommu its IOVA (0 for a
 * bad qp). Valid from vhd_fe_create() on; it does not change across reconnections. */
uint64_t vhd_fe_buf_iova(const struct vhd_fe *fe, unsigned qp);

/** What the frontend did for the device's IOTLB (control thread; plain counters, not for other threads). */
struct vhd_fe_iotlb_stats {
	uint64_t misses;   /**< MISS requests received */
	uint64_t updates;  /**< UPDATEs sent (answers to misses and the up-front mapping) */
	uint64_t unmapped; /**< misses for IOVAs we do not map, left unanswered */
};

/** Copy the IOTLB counters into *st (all 0 without iommu). Control thread. */
void vhd_fe_iotlb_stats(const struct vhd_fe *fe, struct vhd_fe_iotlb_stats *st);

/** Kick the device for qidx (after vhd_vq_need_notify() said so). @return 0 or -errno. */
int vhd_fe_kick(struct vhd_fe *fe, unsigned qidx);

/** The eventfd the device signals for qidx (poll it when sleeping on interrupts), or -1 while down. */
int vhd_fe_call_fd(struct vhd_fe *fe, unsigned qidx);

#ifdef __cplusplus
}
#endif
#endif
