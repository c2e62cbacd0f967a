/* SPDX-License-Identifier: MIT */
/*
 * Driver-side transports behind one ops table. The frontend's setup sequence is written once, as a series of
 * steps; each step op starts one vhost request (the vhost-user message or the /dev/vhost-* ioctl of the same
 * name) and says whether it completed at once (an ioctl: VHD_FE_T_DONE, outputs written) or is on its way
 * (VHD_FE_T_PENDING: a message whose reply, or whose sending, is still awaited). The frontend then calls
 * progress() from its dispatch until the step completes, so a transport that talks to a peer over a socket
 * never makes the frontend wait: nothing in here blocks.
 *
 * Outputs (the uint64_t / unsigned pointers) are written when the step completes, so they must stay valid
 * until then (the frontend passes fields of its own state).
 *
 * Transport-specific negotiation (vhost-user's protocol features and what they turn on) stays behind the ops:
 * the frontend sees virtio features only.
 */
#ifndef VHD_FRONTEND_TRANSPORT_H
#define VHD_FRONTEND_TRANSPORT_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

struct vhd_fe_transport;

/* One region of the frontend's memory the device must map: at our virtual address addr, and at guest_addr in
 * the guest-physical space (equal to addr unless the device sits behind an IOMMU, see frontend.c). */
struct vhd_fe_region {
	uint64_t addr;
	uint64_t guest_addr;
	uint64_t size;
	int fd;
	uint64_t fd_offset;
};

/* One IOTLB mapping for the device: IOVA range [iova, iova+size) at our virtual address uaddr, with perm one
 * of VHOST_ACCESS_RO/WO/RW (1, 2, 3). */
struct vhd_fe_map {
	uint64_t iova;
	uint64_t size;
	uint64_t uaddr;
	uint8_t perm;
};

/* What a step op returns when it did not fail. */
enum {
	VHD_FE_T_DONE = 0,    /* completed; outputs written */
	VHD_FE_T_PENDING = 1, /* started; progress() says when it completes */
};

struct vhd_fe_transport_ops {
	const char *name;

	/* ---- the connection (control thread) ---- */
	/* Start listening or connecting (the first attempt may connect at once). 0 or -errno. */
	int (*open)(struct vhd_fe_transport *t, const char *path, bool server, unsigned reconnect_min_ms,
		    unsigned reconnect_max_ms);
	/* Close everything for good (a server also removes its socket file). Never waits on the peer. */
	void (*destroy)(struct vhd_fe_transport *t);
	/* fds to poll, with the events wanted now (POLLOUT while output waits): the connection, else the listening
	 * socket, and the device's request channel while there is one; 0 to 2 entries. */
	unsigned (*pollfds)(struct vhd_fe_transport *t, struct pollfd *fds, unsigned max);
	/* Milliseconds until a reconnect attempt or a reply deadline is due, or -1. */
	int (*timeout_ms)(struct vhd_fe_transport *t);
	/* Accept or reconnect as due. Returns true when a fresh connection is there to set up. */
	bool (*connect)(struct vhd_fe_transport *t);
	/* Whether a connection exists (set up or not). */
	bool (*connected)(const struct vhd_fe_transport *t);
	/* The connection failed or was refused: drop it, and retry after the back-off. */
	void (*lost)(struct vhd_fe_transport *t);
	/*
	 * Move the connection along: write queued output, read and match replies, enforce the reply deadline.
	 * Returns VHD_FE_T_DONE when no step is in flight (the last one has completed: its outputs are written),
	 * VHD_FE_T_PENDING while one is, or -errno when the peer misbehaved or left (logged, naming what it did):
	 * -ETIMEDOUT no reply in time or a message stalled halfway, -EPROTO a reply to another request or without
	 * the reply flag, -EMSGSIZE a reply of the wrong size, -EBADMSG a reply carrying fds, -EREMOTEIO a refusal
	 * (REPLY_ACK), -ECONNRESET the peer closed, other -errno of the socket.
	 */
	int (*progress)(struct vhd_fe_transport *t);

	/* ---- setup steps: VHD_FE_T_DONE, VHD_FE_T_PENDING or -errno ---- */
	/* Device features offered (transport-private bits such as VHOST_USER_F_PROTOCOL_FEATURES stripped). */
	int (*get_features)(struct vhd_fe_transport *t, uint64_t *features);
	int (*set_features)(struct vhd_fe_transport *t, uint64_t features);
	/* Queue pairs the device has; 1 when the transport cannot ask. */
	int (*get_queue_num)(struct vhd_fe_transport *t, uint64_t *pairs);
	int (*set_owner)(struct vhd_fe_transport *t);
	int (*set_mem_table)(struct vhd_fe_transport *t, const struct vhd_fe_region *r, unsigned n);
	int (*set_vring_num)(struct vhd_fe_transport *t, unsigned q, unsigned num);
	int (*set_vring_base)(struct vhd_fe_transport *t, unsigned q, unsigned base);
	int (*set_vring_addr)(struct vhd_fe_transport *t, unsigned q, uint64_t desc, uint64_t avail, uint64_t used);
	int (*set_vring_kick)(struct vhd_fe_transport *t, unsigned q, int fd);
	int (*set_vring_call)(struct vhd_fe_transport *t, unsigned q, int fd);
	/* Done at once where rings need no enabling (vhost-user without protocol features). */
	int (*set_vring_enable)(struct vhd_fe_transport *t, unsigned q, bool on);
	/* Done at once where the device has no status to set. */
	int (*set_status)(struct vhd_fe_transport *t, uint8_t status);
	/* Give the device a channel for its requests (IOTLB misses) when t->iommu asked for one and the device
	 * agreed; done at once otherwise. */
	int (*set_backend_channel)(struct vhd_fe_transport *t);
	/* Map one IOVA range in the device's IOTLB (a device with ACCESS_PLATFORM negotiated). */
	int (*iotlb_update)(struct vhd_fe_transport *t, const struct vhd_fe_map *map);
	/* vhd_fe_remap(): take the memory table out of the device's IOTLB (map false) or put it back (true),
	 * while up; NULL for a transport that cannot (-ENOTSUP). Completes at once. */
	int (*remap)(struct vhd_fe_transport *t, bool map);
	/* Inflight tracking, when t->inflight asked for it and the device agreed (else done at once, *fd left -1):
	 * get an area for nq queues of qsize entries of the layout packed says (*fd, ours to close, and its *size),
	 * or hand one back. */
	int (*get_inflight)(struct vhd_fe_transport *t, unsigned nq, unsigned qsize, bool packed, int *fd,
			    uint64_t *size);
	int (*set_inflight)(struct vhd_fe_transport *t, int fd, uint64_t size, unsigned nq, unsigned qsize);
};

/*
 * The device asked for the translation of iova (a MISS, perm the access it needs): fill *map with a mapping
 * that covers iova and return 0, or return -ENOENT when iova is not mapped (the device gets no answer, as an
 * IOMMU gives none for an unmapped address). Called from progress(), control thread.
 */
typedef int (*vhd_fe_miss_fn)(void *owner, uint64_t iova, uint8_t perm, struct vhd_fe_map *map);

struct vhd_fe_transport {
	const struct vhd_fe_transport_ops *ops;
	const char *name;        /* for log lines */
	unsigned reply_timeout_ms; /* per awaited reply, and per message stalled halfway */
	void *priv;              /* the transport's own state */
	bool iommu;              /* the frontend wants a device IOTLB: ask for a request channel */
	bool inflight;           /* the frontend keeps its rings across back-end restarts: ask for INFLIGHT_SHMFD */
	vhd_fe_miss_fn miss;     /* answers the device's IOTLB misses (with iommu) */
	void *owner;             /* passed to miss */
};

/* A vhost-user transport (not yet connected: ops->open()). 0 or -ENOMEM. */
int vhd_fe_vu_transport_init(struct vhd_fe_transport *t, const char *name, unsigned reply_timeout_ms);

/* A vhost-kernel transport: /dev/vhost-net (the path given to open()), one device per queue pair, each with a
 * queue of the tap named tap (created when missing, multi-queue with pairs > 1). Nothing is opened before
 * connect(). 0, -EINVAL for a bad tap name or pair count, -ENOMEM. */
int vhd_fe_vk_transport_init(struct vhd_fe_transport *t, const char *name, const char *tap, unsigned pairs);

/* A vhost-vdpa transport (/dev/vhost-vdpa-N, opened by ops->open()). 0 or -ENOMEM. */
int vhd_fe_vdpa_transport_init(struct vhd_fe_transport *t, const char *name);

struct vhost_vdpa_iova_range;
/* Whether [iova, iova + size) lies in the device's range r: 0, or -ERANGE (also for size 0). */
int vhdi_vdpa_map_check(const struct vhost_vdpa_iova_range *r, uint64_t iova, uint64_t size);

#endif
