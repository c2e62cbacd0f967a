/* SPDX-License-Identifier: MIT */
/*
 * vhost-user back-end: connection handling and one handler per front-end request.
 *
 * Queue lifecycle. A queue starts (its vhd_vq is created and the data path may use it) once it has a size,
 * ring addresses, a kick (fd or NOFD), guest memory that holds its rings, and is enabled: at the kick when
 * VHOST_USER_F_PROTOCOL_FEATURES was not negotiated, else by SET_VRING_ENABLE. Anything that changes a started
 * queue or the memory it lives in first pauses it: ready is cleared and the control thread waits for the data
 * path's current burst (busy) to end.
 *
 * vIOMMU (VIRTIO_F_ACCESS_PLATFORM negotiated): ring and descriptor addresses are I/O virtual addresses, translated
 * through the device's IOTLB (vhostd/iotlb.h), which IOTLB_MSG UPDATE/INVALIDATE fill and empty. The cache is
 * changed only with every queue paused (the same pause as for the memory table), and after each change the rings
 * of every started queue are translated again if the generation moved. What the IOTLB lacks is asked for with a
 * MISS on the back-end channel, never waited for: a ring that misses leaves its queue waiting (not running, its
 * positions kept); a chain that misses stays in the ring and the data path marks its queue waiting (miss_wait,
 * vhd_vu_queue_acquire() then returns NULL) and wakes the control thread (wake_fd), which sends the MISS. Any
 * IOTLB change lets every waiting queue try again; an outstanding MISS is asked again every VU_MISS_RETRY_MS.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "msg.h"
#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "spec/virtio_ring.h"
#include "vhostd/dlog.h"
#include "vhostd/iotlb.h"
#include "vhostd/log.h"
#include "vhostd/mem.h"
#include "vhostd/net.h"
#include "vhostd/vhost_user.h"
#include "vhostd/virtq.h"

#define VU_MAX_QUEUES (2 * VHD_VU_MAX_QUEUE_PAIRS)
/* Default time a front-end has to finish sending a message it started, and to read what we sent it. */
#define VU_MSG_TIMEOUT_MS 2000
/* Messages handled per dispatch call, so one chatty front-end cannot starve the caller's loop. */
#define VU_DISPATCH_BUDGET 64
/* MISS requests outstanding at once (deduplicated by IOVA page and access), and how long one may go unanswered
 * before the queues waiting on it try again (and ask again, if they still miss). */
#define VU_MISS_MAX 64
/* IOVAs one queue reports per wait: the one its pop stopped at and those of the descriptors after it. */
#define VU_MISS_AHEAD 16
#define VU_MISS_RETRY_MS 250
#define VU_PAGE_MASK (~(uint64_t)4095)
/* Why a queue waits (miss_wait bits): a miss to ask for; buffer translations to forget (iotlb_per_burst). */
#define VU_WAIT_MISS 1
#define VU_WAIT_FORGET 2

struct vu_queue {
	/* Data-path handshake, on its own cache line: see vhd_vu_queue_acquire() and queue_pause(). */
	_Alignas(64) atomic_int ready;
	atomic_int busy;
	/* Set by the data path (release, with miss_iova/miss_perm) when a pop stopped at an IOVA the IOTLB lacks;
	 * cleared by the control thread after each IOTLB change. While set, vhd_vu_queue_acquire() says no. */
	atomic_int miss_wait; /* VU_WAIT_MISS | VU_WAIT_FORGET */
	uint64_t chains_seen; /* data path, iotlb_per_burst: chains popped as of the last release */
	bool iotlb_on; /* the queue translates through the IOTLB (control thread; read by the data path in release) */
	struct vhd_vq *vq;
	int call_fd;
	int kick_fd;
	int err_fd;
	uint32_t num;
	uint16_t base, used_base; /* vhd_vq_base() / vhd_vq_used_base() form */
	bool addr_set, kick_set, enabled;
	uint64_t desc_ua, avail_ua, used_ua;
	bool log_ring;           /* SET_VRING_ADDR asked for VHOST_VRING_F_LOG */
	uint64_t log_guest_addr; /* as sent (only reported: see vhdi_log_rings() for why) */
	/* Written by the data path in vhd_vu_queue_notify(), read by vhd_vu_dev_stats() on any thread (relaxed:
	 * a count, ordered with nothing). notify_warned keeps the log to one line per call fd. */
	_Atomic uint64_t notify_failed;
	atomic_int notify_warned;
	_Atomic uint64_t miss_iova[VU_MISS_AHEAD];
	atomic_uint miss_perm[VU_MISS_AHEAD];
	atomic_uint miss_n;
	_Atomic uint64_t iotlb_waits; /* times the data path began waiting for a miss (relaxed: a count) */
	bool miss_taken;  /* control: miss_wait seen and its MISS requested */
	bool rings_wait;  /* control: the rings are not all in the IOTLB; the queue waits (its vq, if any, kept) */
	uint64_t ring_gen; /* IOTLB generation the rings were last translated at */
};

/* A MISS sent and not yet answered. */
struct vu_miss {
	uint64_t page;
	unsigned perm;
	struct timespec sent;
};

struct vhd_vu_dev {
	struct vhd_vu_config cfg;
	char name[32];
	struct vhu_conn conn;
	unsigned msg_timeout_ms;

	uint64_t offered, features;
	uint64_t proto_offered, proto;
	bool owner;
	bool ready; /* last VHD_VU_READY / VHD_VU_NOT_READY sent */
	uint8_t status;
	uint16_t mtu;
	uint8_t rarp_mac[6];
	bool rarp_pending;
	struct vhd_mem *mem;
	struct vhd_dlog *log; /* SET_LOG_BASE; logging is on while VHOST_F_LOG_ALL is negotiated too */
	/* Testing only (VHOSTD_TEST_DIRTY_LOG_OFF=1 at creation): LOG_ALL and SET_LOG_BASE are accepted as ever but
	 * no queue is ever given the log, so no bit is set: a migration test must see what that breaks. */
	bool log_off;
	/* What SET_LOG_BASE and SET_INFLIGHT_FD carried, kept for vhd_vu_dev_export() (a duplicate of the fd). */
	int log_fd;
	struct vhost_user_log log_msg;
	int infl_fd;
	struct vhost_user_inflight infl_msg;
	/* Replaying an export (vhd_vu_dev_import()): replies go nowhere. */
	bool replay;
	/* Queues vhd_vu_dev_export() or vhd_vu_dev_import() paused, for vhd_vu_dev_resume(). */
	bool held[VU_MAX_QUEUES];
	struct vhu_io breq; /* back-end channel (SET_BACKEND_REQ_FD); fd -1 while there is none */
	struct vhd_iotlb *iotlb; /* when ACCESS_PLATFORM is offered */
	int wake_fd;             /* eventfd: the data path met a miss */
	struct vu_miss miss[VU_MISS_MAX];
	unsigned nmiss;
	bool breq_warned;
	_Atomic uint64_t misses_sent;
	/* SET_INFLIGHT_FD's area (mapping infl_map of infl_len bytes; queue regions from infl_base, infl_per
	 * bytes each, for infl_nq queues of infl_qsz entries). NULL while there is none. */
	void *infl_map;
	size_t infl_len, infl_per;
	uint8_t *infl_base;
	uint16_t infl_nq, infl_qsz;
	unsigned nq;
	struct vu_queue q[VU_MAX_QUEUES];
};

/* A handler's verdict: 0 or -errno (refused; the connection stays), or VU_FATAL (close the connection). */
#define VU_FATAL (-10000)

#define vu_err(dev, ...) vhd_log(VHD_LOG_ERR, __VA_ARGS__)

uint64_t vhd_vu_default_features(void)
{
	/* The device's own features, and what this transport adds: rings, multiqueue, announcements. */
	return vhd_net_device_features() | VHD_BIT(VIRTIO_F_VERSION_1) | VHD_BIT(VIRTIO_F_RING_PACKED) |
	       VHD_BIT(VIRTIO_F_INDIRECT_DESC) | VHD_BIT(VIRTIO_F_EVENT_IDX) | VHD_BIT(VIRTIO_F_IN_ORDER) |
	       VHD_BIT(VIRTIO_NET_F_MQ) | VHD_BIT(VIRTIO_NET_F_GUEST_ANNOUNCE);
}

static uint64_t default_protocol_features(void)
{
	return VHD_BIT(VHOST_USER_PROTOCOL_F_MQ) | VHD_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
	       VHD_BIT(VHOST_USER_PROTOCOL_F_RARP) | VHD_BIT(VHOST_USER_PROTOCOL_F_MTU) |
	       VHD_BIT(VHOST_USER_PROTOCOL_F_LOG_SHMFD) |
	       VHD_BIT(VHOST_USER_PROTOCOL_F_BACKEND_REQ) | VHD_BIT(VHOST_USER_PROTOCOL_F_CONFIG) |
	       VHD_BIT(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) | VHD_BIT(VHOST_USER_PROTOCOL_F_STATUS) |
	       VHD_BIT(VHOST_USER_PROTOCOL_F_RESET_DEVICE) | VHD_BIT(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void emit(struct vhd_vu_dev *dev, enum vhd_vu_event ev, unsigned qidx)
{
	if (dev->cfg.event)
		dev->cfg.event(dev, ev, qidx, dev->cfg.opaque);
}

/* ---------------------------------------------------------------- queues */

/* Stop the data path from entering q, then wait for a burst in progress to end. Returns whether it was ready. */
static bool queue_pause(struct vu_queue *q)
{
	if (!atomic_load(&q->ready))
		return false;
	/* seq_cst store then load: pairs with the data path's store of busy then load of ready in
	 * vhd_vu_queue_acquire(), so either it sees ready == 0 or we see its busy == 1. */
	atomic_store(&q->ready, 0);
	while (atomic_load(&q->busy))
		sched_yield();
	return true;
}

static void queue_resume(struct vu_queue *q)
{
	/* Publishes q->vq and the call fd, set before, to the data path's seq_cst load of ready. */
	atomic_store(&q->ready, 1);
}

/* Tell the application when the device as a whole becomes usable or stops being so. */
static void update_ready(struct vhd_vu_dev *dev)
{
	bool ready = dev->q[0].vq && dev->q[1].vq;
	for (unsigned i = 2; ready && i < dev->nq; i++)
		if (dev->q[i].enabled && !dev->q[i].vq)
			ready = false;
	if (ready != dev->ready) {
		dev->ready = ready;
		emit(dev, ready ? VHD_VU_READY : VHD_VU_NOT_READY, 0);
	}
}

/* Stop a started queue: remember where it stopped, free the vhd_vq. */
static void queue_stop(struct vhd_vu_dev *dev, unsigned qi)
{
	struct vu_queue *q = &dev->q[qi];
	if (!q->vq)
		return;
	queue_pause(q);
	q->base = vhd_vq_base(q->vq);
	q->used_base = vhd_vq_used_base(q->vq);
	if (vhd_vq_error(q->vq))
		vhd_log(VHD_LOG_WARN, "%s: queue %u stopped after breaking: %s", dev->name, qi,
			vhd_vq_error_detail(q->vq));
	vhd_vq_destroy(q->vq);
	q->vq = NULL;
	q->iotlb_on = q->rings_wait = false;
	vhd_log(VHD_LOG_DEBUG, "%s: queue %u stopped at index %u", dev->name, qi, q->base);
	emit(dev, VHD_VU_QUEUE_STOPPED, qi);
	update_ready(dev);
}

/* Split sizes are powers of two (virtio 1.2 2.7), packed ones anything in 1..32768 (2.8). */
static bool size_fits_layout(uint32_t num, bool packed)
{
	return num >= 1 && num <= VIRTQ_MAX_SIZE && (packed || (num & (num - 1)) == 0);
}

/* The three ring areas of a queue: descriptor table, driver area, device area. */
struct ring_area {
	const char *what;
	uint64_t ua;
	size_t size, align;
};

/* Sizes derived from the queue size, event-suppression fields included (the avail ring's used_event and the used
 * ring's avail_event are in virtq_*_size()); alignments from virtio 1.2 2.7 (split) and 2.8 (packed). */
static void ring_areas(const struct vu_queue *q, bool packed, uint64_t desc, uint64_t avail, uint64_t used,
		       struct ring_area a[3])
{
	a[0] = (struct ring_area){"descriptor table", desc, (size_t)q->num * 16,
				  packed ? PVIRTQ_DESC_ALIGN : VIRTQ_DESC_ALIGN};
	a[1] = packed ? (struct ring_area){"driver area", avail, sizeof(struct pvirtq_event_suppress), PVIRTQ_EVENT_ALIGN}
		      : (struct ring_area){"driver area", avail, virtq_avail_size(q->num), VIRTQ_AVAIL_ALIGN};
	a[2] = packed ? (struct ring_area){"device area", used, sizeof(struct pvirtq_event_suppress), PVIRTQ_EVENT_ALIGN}
		      : (struct ring_area){"device area", used, virtq_used_size(q->num), VIRTQ_USED_ALIGN};
}

/*
 * Check a queue's ring addresses: aligned always; wholly inside one region's front-end address range once the
 * memory table and the size are known (with mem NULL or num 0 only alignment is checked). host[] gets the host
 * pointers when given. Logs the first fault, naming the area, its address and size. Returns 0, -EINVAL
 * (misaligned) or -EFAULT (not inside one region: outside all of them, straddling one's end, or an address in
 * another space, such as a guest-physical one).
 *
 * With VIRTIO_F_ACCESS_PLATFORM (iova) the addresses are I/O virtual addresses: only the alignment is checked
 * here, and ring_translate_iotlb() does the rest when the queue starts.
 */
static int ring_check(struct vhd_vu_dev *dev, unsigned qi, const char *what, const struct vu_queue *q, bool packed,
		      bool iova, uint64_t desc, uint64_t avail, uint64_t used, void *host[3])
{
	struct ring_area a[3];
	ring_areas(q, packed, desc, avail, used, a);
	for (unsigned i = 0; i < 3; i++) {
		if (a[i].ua & (a[i].align - 1)) {
			vu_err(dev, "%s: %s: queue %u: %s %s at 0x%llx is not %zu-byte aligned", dev->name, what, qi,
			       packed ? "packed" : "split", a[i].what, (unsigned long long)a[i].ua, a[i].align);
			return -EINVAL;
		}
		if (!dev->mem || !q->num || iova)
			continue;
		void *h = vhd_mem_user_to_host(dev->mem, a[i].ua, a[i].size);
		if (!h) {
			vu_err(dev, "%s: %s: queue %u: %s at 0x%llx (%zu bytes for size %u) is not inside one region of "
			       "the front-end's address space", dev->name, what, qi, a[i].what,
			       (unsigned long long)a[i].ua, a[i].size, q->num);
			return -EFAULT;
		}
		if (host)
			host[i] = h;
	}
	return 0;
}

/* ---------------------------------------------------------------- vIOMMU */

static bool dev_iommu(const struct vhd_vu_dev *dev)
{
	return dev->iotlb && (dev->features & VHD_BIT(VIRTIO_F_ACCESS_PLATFORM));
}

/*
 * Ask the front-end for the translation of iova (a MISS on the back-end channel), unless the same page and access
 * were asked for already and not answered yet, or VU_MISS_MAX requests are outstanding (the waiting queue tries
 * again once one is answered or retried). Never waits: the request is queued on the channel's bounded output.
 */
static void request_miss(struct vhd_vu_dev *dev, uint64_t iova, unsigned perm)
{
	uint64_t page = iova & VU_PAGE_MASK;
	for (unsigned i = 0; i < dev->nmiss; i++)
		if (dev->miss[i].page == page && dev->miss[i].perm == perm)
			return;
	if (dev->nmiss == VU_MISS_MAX)
		return;
	if (dev->breq.fd < 0) {
		if (!dev->breq_warned)
			vu_err(dev, "%s: IOVA 0x%llx is not in the IOTLB and there is no back-end channel "
			       "(SET_BACKEND_REQ_FD) to ask for it: the queue waits for the front-end to send it "
			       "(logged once)", dev->name, (unsigned long long)iova);
		dev->breq_warned = true;
		return;
	}
	struct vhu_msg m;
	memset(&m, 0, sizeof(m));
	m.hdr.request = VHOST_USER_BACKEND_IOTLB_MSG;
	m.hdr.flags = VHOST_USER_VERSION; /* no NEED_REPLY: the answer is an UPDATE on the main socket, if any */
	m.hdr.size = sizeof(struct vhost_iotlb_msg);
	m.p.iotlb = (struct vhost_iotlb_msg){.iova = iova, .perm = (uint8_t)perm, .type = VHOST_IOTLB_MISS};
	int rc = vhu_io_send(&dev->breq, &m);
	if (rc == -ENOBUFS)
		return; /* the front-end is not reading yet: asked again later */
	if (rc < 0) {
		vu_err(dev, "%s: back-end channel: cannot send a MISS for IOVA 0x%llx: %s: closing the channel",
		       dev->name, (unsigned long long)iova, strerror(-rc));
		vhu_io_close(&dev->breq);
		return;
	}
	struct vu_miss *x = &dev->miss[dev->nmiss++];
	x->page = page;
	x->perm = perm;
	vhu_now(&x->sent);
	atomic_fetch_add_explicit(&dev->misses_sent, 1, memory_order_relaxed);
	vhd_log(VHD_LOG_DEBUG, "%s: IOTLB MISS sent for IOVA 0x%llx (%s)", dev->name, (unsigned long long)iova,
		perm == VHD_IOTLB_WO ? "write" : perm == VHD_IOTLB_RO ? "read" : "read/write");
}

/* Forget the requests the cache now answers (any later miss on them is a new one). */
static void misses_answered(struct vhd_vu_dev *dev)
{
	unsigned k = 0;
	for (unsigned i = 0; i < dev->nmiss; i++) {
		const struct vu_miss *x = &dev->miss[i];
		if (!vhd_iotlb_to_host(dev->iotlb, x->page, 1, x->perm))
			dev->miss[k++] = *x;
	}
	dev->nmiss = k;
}

static const unsigned ring_perm_split[3] = {VHD_IOTLB_RO, VHD_IOTLB_RO, VHD_IOTLB_RW};
/* Packed: the device writes used descriptors into the ring itself. */
static const unsigned ring_perm_packed[3] = {VHD_IOTLB_RW, VHD_IOTLB_RO, VHD_IOTLB_RW};

/*
 * Host pointers of a queue's rings, whose addresses are IOVAs, through the IOTLB: each area must lie in one
 * entry with the access the device needs (split: descriptor table and driver area read, device area read and
 * written; packed: ring and device area read and written, driver area read). Returns 0; -EAGAIN when an area is
 * not in the IOTLB (its MISS requested, the queue marked waiting); -EFAULT for anything else (logged, naming
 * the area and value).
 */
static int ring_translate_iotlb(struct vhd_vu_dev *dev, unsigned qi, struct vu_queue *q, bool packed, void *host[3])
{
	struct ring_area a[3];
	ring_areas(q, packed, q->desc_ua, q->avail_ua, q->used_ua, a);
	const unsigned *perm = packed ? ring_perm_packed : ring_perm_split;
	for (unsigned i = 0; i < 3; i++) {
		unsigned hint = 0;
		uint64_t at = a[i].ua;
		struct iovec v;
		int r = vhd_iotlb_translate(dev->iotlb, &hint, a[i].ua, a[i].size, perm[i], &v, 1, &at);
		if (r == 1) {
			host[i] = v.iov_base;
			continue;
		}
		if (r == -EAGAIN) {
			if (!q->rings_wait)
				vhd_log(VHD_LOG_DEBUG, "%s: queue %u: %s at IOVA 0x%llx not in the IOTLB yet: waiting",
					dev->name, qi, a[i].what, (unsigned long long)at);
			q->rings_wait = true;
			request_miss(dev, at, perm[i]);
			return -EAGAIN;
		}
		vu_err(dev, "%s: queue %u: %s at IOVA 0x%llx (%zu bytes): %s", dev->name, qi, a[i].what,
		       (unsigned long long)a[i].ua, a[i].size,
		       r == -EACCES ? (perm[i] == VHD_IOTLB_RO ? "IOVA mapped without read access"
							 : "IOVA mapped without read and write access")
		       : r == -ENOBUFS ? "not one contiguous piece of guest memory in the IOTLB"
				       : strerror(-r));
		return -EFAULT;
	}
	q->rings_wait = false;
	q->ring_gen = vhd_iotlb_generation(dev->iotlb);
	return 0;
}

static bool dev_logging(const struct vhd_vu_dev *dev)
{
	return dev->log && (dev->features & VHD_BIT(VHOST_F_LOG_ALL)) && !dev->log_off;
}

/* Point a started queue, not running (paused or not resumed yet), at the log, or at none. */
static void queue_log(struct vhd_vu_dev *dev, unsigned qi)
{
	struct vu_queue *q = &dev->q[qi];
	if (vhd_vq_set_log(q->vq, dev_logging(dev) ? dev->log : NULL, q->log_ring) < 0)
		vu_err(dev, "%s: queue %u: its rings are not in the memory table: their writes cannot be logged, "
		       "nor the queue's (a migration would lose them)", dev->name, qi);
}

static void queue_try_start(struct vhd_vu_dev *dev, unsigned qi)
{
	struct vu_queue *q = &dev->q[qi];
	if (q->vq || !dev->mem || !q->num || !q->addr_set || !q->kick_set || !q->enabled)
		return;
	bool packed = dev->features & VHD_BIT(VIRTIO_F_RING_PACKED);
	/* SET_VRING_NUM checked the size against the features of its time; these are the final ones. */
	if (!size_fits_layout(q->num, packed)) {
		vu_err(dev, "%s: queue %u: size %u is not a power of two, which a split ring needs: not starting",
		       dev->name, qi, q->num);
		return;
	}
	void *host[3];
	bool iommu = dev_iommu(dev);
	if (ring_check(dev, qi, "cannot start", q, packed, iommu, q->desc_ua, q->avail_ua, q->used_ua, host) < 0)
		return;
	if (iommu && ring_translate_iotlb(dev, qi, q, packed, host) < 0)
		return;
	void *desc = host[0], *avail = host[1], *used = host[2];
	char name[48];
	snprintf(name, sizeof(name), "%s q%u", dev->name, qi);
	struct vhd_vq_config c = {
		.side = VHD_VQ_DEVICE,
		.num = (uint16_t)q->num,
		.features = dev->features,
		.desc = desc,
		.driver = avail,
		.device = used,
		.mem = dev->mem,
		.iotlb = iommu ? dev->iotlb : NULL,
		.base = q->base,
		.name = name,
	};
	int rc = vhd_vq_create(&c, &q->vq);
	if (rc < 0) {
		vu_err(dev, "%s: queue %u: cannot start (size %u%s, base 0x%x): %s", dev->name, qi, q->num,
		       packed ? " packed" : " split", q->base, strerror(-rc));
		q->vq = NULL;
		return;
	}
	if (dev->infl_base && qi < dev->infl_nq) {
		const char *why = "queue size differs from the inflight area's queue_size";
		rc = q->num == dev->infl_qsz ? vhd_vq_set_inflight(q->vq, dev->infl_base + qi * dev->infl_per,
								  dev->infl_per, &why)
					     : -EINVAL;
		if (rc < 0) {
			vu_err(dev, "%s: queue %u: cannot start: inflight region (queue size %u, area's %u): %s",
			       dev->name, qi, q->num, dev->infl_qsz, why);
			vhd_vq_destroy(q->vq);
			q->vq = NULL;
			return;
		}
		if (vhd_vq_resubmit_pending(q->vq))
			vhd_log(VHD_LOG_INFO, "%s: queue %u: %u chains taken before the restart and not used are "
				"resubmitted", dev->name, qi, vhd_vq_resubmit_pending(q->vq));
		q->base = vhd_vq_base(q->vq);
	}
	queue_log(dev, qi);
	/* The data path polls: ask the driver not to kick. */
	vhd_vq_disable_notify(q->vq);
	q->iotlb_on = iommu;
	q->chains_seen = vhd_vq_chains_popped(q->vq);
	q->miss_taken = false;
	atomic_store_explicit(&q->miss_wait, 0, memory_order_relaxed); /* published by the resume */
	queue_resume(q);
	vhd_log(VHD_LOG_DEBUG, "%s: queue %u started: %u entries, %s, base %u", dev->name, qi, q->num,
		packed ? "packed" : "split", q->base);
	emit(dev, VHD_VU_QUEUE_STARTED, qi);
	update_ready(dev);
}

/* Memory table and feature changes stop every queue, then start again whichever can. */
static void queues_stop_all(struct vhd_vu_dev *dev)
{
	for (unsigned i = 0; i < dev->nq; i++)
		queue_stop(dev, i);
}

static void queues_start_all(struct vhd_vu_dev *dev)
{
	for (unsigned i = 0; i < dev->nq; i++)
		queue_try_start(dev, i);
}

/*
 * After an IOTLB change, every queue paused (or waiting): a started queue whose rings may have moved (the
 * generation did) or were missing is translated again and moved onto the new pointers, keeping its positions;
 * one whose rings now fault stops (logged); one whose rings still miss keeps waiting. Queues not started try to
 * start. Every queue the data path left waiting on a miss tries again.
 */
static void queues_iotlb_changed(struct vhd_vu_dev *dev, const bool *paused)
{
	uint64_t gen = vhd_iotlb_generation(dev->iotlb);
	for (unsigned i = 0; i < dev->nq; i++) {
		struct vu_queue *q = &dev->q[i];
		q->miss_taken = false;
		atomic_store_explicit(&q->miss_wait, 0, memory_order_relaxed); /* published by the resume */
		if (!q->vq) {
			queue_try_start(dev, i);
			continue;
		}
		if (q->iotlb_on && (q->rings_wait || q->ring_gen != gen)) {
			bool packed = dev->features & VHD_BIT(VIRTIO_F_RING_PACKED);
			void *host[3];
			int rc = ring_translate_iotlb(dev, i, q, packed, host);
			if (rc == -EAGAIN)
				continue; /* stays paused, its vq and positions kept */
			if (rc < 0 || vhd_vq_set_rings(q->vq, host[0], host[1], host[2]) < 0) {
				if (rc == 0)
					vu_err(dev, "%s: queue %u: rings translated to misaligned host addresses", dev->name, i);
				queue_stop(dev, i);
				continue;
			}
			queue_resume(q);
			continue;
		}
		if (paused[i])
			queue_resume(q);
	}
}

static void iotlb_flush(struct vhd_vu_dev *dev)
{
	if (dev->iotlb)
		vhd_iotlb_flush(dev->iotlb);
	dev->nmiss = 0;
}

static void queue_reset(struct vhd_vu_dev *dev, unsigned qi)
{
	struct vu_queue *q = &dev->q[qi];
	queue_stop(dev, qi);
	close_fd(&q->call_fd);
	close_fd(&q->kick_fd);
	close_fd(&q->err_fd);
	q->num = 0;
	q->base = q->used_base = 0;
	q->addr_set = q->kick_set = q->enabled = false;
}

static void inflight_unmap(struct vhd_vu_dev *dev)
{
	if (dev->infl_map)
		munmap(dev->infl_map, dev->infl_len);
	dev->infl_map = NULL;
	dev->infl_base = NULL;
	dev->infl_nq = 0;
	close_fd(&dev->infl_fd);
}

/* Back to the state of a fresh connection (RESET_OWNER, RESET_DEVICE, disconnect). */
static void device_reset(struct vhd_vu_dev *dev, bool keep_mem)
{
	for (unsigned i = 0; i < dev->nq; i++)
		queue_reset(dev, i);
	inflight_unmap(dev); /* after the queues, which point into it */
	iotlb_flush(dev); /* after the queues: nothing runs on it now */
	vhd_dlog_destroy(dev->log);
	dev->log = NULL;
	close_fd(&dev->log_fd);
	dev->features = 0;
	dev->status = 0;
	if (!keep_mem) {
		vhd_mem_destroy(dev->mem);
		dev->mem = NULL;
	}
}

/* ---------------------------------------------------------------- replies */

static int send_reply(struct vhd_vu_dev *dev, const struct vhu_msg *req, const void *payload, uint32_t size)
{
	struct vhu_msg r;
	memset(&r.hdr, 0, sizeof(r.hdr));
	r.hdr.request = req->hdr.request;
	r.hdr.flags = VHOST_USER_VERSION | VHOST_USER_REPLY_MASK;
	r.hdr.size = size;
	if (size)
		memcpy(&r.p, payload, size);
	r.nfds = 0;
	if (dev->replay)
		return 0; /* the front-end had its answer from the exporter */
	int rc = vhu_io_send(&dev->conn.io, &r);
	if (rc == -ENOBUFS)
		vu_err(dev, "%s: the front-end does not read its replies (%d unread, reply to %s): closing", dev->name,
		       VHU_IO_QUEUE, vhu_req_info(req->hdr.request)->name);
	else if (rc < 0)
		vu_err(dev, "%s: cannot reply to %s: %s", dev->name, vhu_req_info(req->hdr.request)->name,
		       strerror(-rc));
	return rc < 0 ? VU_FATAL : 0;
}

static int reply_u64(struct vhd_vu_dev *dev, const struct vhu_msg *req, uint64_t v)
{
	return send_reply(dev, req, &v, sizeof(v));
}

/* ---------------------------------------------------------------- handlers */

/* Queue index from a message, checked as the 32-bit value it arrived as. */
static int queue_index(struct vhd_vu_dev *dev, const char *what, uint32_t idx)
{
	if (idx >= dev->nq) {
		vu_err(dev, "%s: %s: vring index %u out of range (%u queues)", dev->name, what, idx, dev->nq);
		return -ERANGE;
	}
	return (int)idx;
}

static int h_get_features(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	return reply_u64(dev, m, dev->offered);
}

/* Pause every queue, set the features (f) and point each started queue at the log (or none), resume. */
static void dev_relog(struct vhd_vu_dev *dev, uint64_t f)
{
	bool paused[VU_MAX_QUEUES];
	for (unsigned i = 0; i < dev->nq; i++)
		paused[i] = queue_pause(&dev->q[i]);
	dev->features = f;
	for (unsigned i = 0; i < dev->nq; i++) {
		if (dev->q[i].vq)
			queue_log(dev, i);
		if (paused[i])
			queue_resume(&dev->q[i]);
	}
}

static int h_set_features(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	uint64_t f = m->p.u64;
	if (f & ~dev->offered) {
		vu_err(dev, "%s: SET_FEATURES: front-end accepted features not offered: 0x%llx", dev->name,
		       (unsigned long long)(f & ~dev->offered));
		return -EINVAL;
	}
	if (f == dev->features)
		return 0;
	if ((f ^ dev->features) == VHD_BIT(VHOST_F_LOG_ALL)) {
		/* Migration starting or ending: the rings stay as they are, only where their writes are logged
		 * changes (the queues paused meanwhile, not stopped: the application sees nothing). */
		dev_relog(dev, f);
		return 0;
	}
	queues_stop_all(dev);
	dev->features = f;
	queues_start_all(dev);
	return 0;
}

static int h_set_owner(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	(void)m;
	dev->owner = true;
	return 0;
}

static int h_reset_owner(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	(void)m;
	device_reset(dev, false);
	dev->owner = false;
	return 0;
}

static int h_reset_device(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	(void)m;
	device_reset(dev, true);
	return 0;
}

/* A table for this connection's guest memory. A fault the SIGBUS guard absorbs in it hangs up on the front-end
 * that shrank the file (dispatch says why); the table goes before the connection's fd is closed (disconnect()),
 * so that fd is never stale. */
static int dev_mem_create(struct vhd_vu_dev *dev, struct vhd_mem **out)
{
	int rc = vhd_mem_create(out);
	if (rc == 0)
		vhd_mem_set_wake_fd(*out, dev->conn.io.fd);
	return rc;
}

static int h_set_mem_table(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	const struct vhost_user_memory *t = &m->p.memory;
	/* No conforming front-end sends an empty table; ADD_MEM_REG is the way to start from none. */
	if (t->nregions == 0) {
		vu_err(dev, "%s: SET_MEM_TABLE: 0 regions: a memory table needs at least one", dev->name);
		return -EINVAL;
	}
	struct vhd_mem *mem;
	if (dev_mem_create(dev, &mem) < 0)
		return -ENOMEM;
	for (unsigned i = 0; i < t->nregions; i++) {
		const struct vhost_user_memory_region *r = &t->regions[i];
		int fd = m->fds[i];
		int rc = vhd_mem_map_fd(mem, fd, r->mmap_offset, r->guest_phys_addr, r->memory_size, r->userspace_addr);
		if (rc < 0) {
			vu_err(dev, "%s: SET_MEM_TABLE: region %u (guest 0x%llx size 0x%llx offset 0x%llx): %s", dev->name,
			       i, (unsigned long long)r->guest_phys_addr, (unsigned long long)r->memory_size,
			       (unsigned long long)r->mmap_offset, strerror(-rc));
			vhd_mem_destroy(mem); /* closes the fds it took; the rest stay in m and are closed there */
			return rc;
		}
		m->fds[i] = -1; /* the table owns it now */
	}
	queues_stop_all(dev);
	vhd_mem_destroy(dev->mem);
	dev->mem = mem;
	iotlb_flush(dev); /* its host pointers came from the old table */
	queues_start_all(dev);
	return 0;
}

static int h_add_mem_reg(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	const struct vhost_user_memory_region *r = &m->p.mem_reg.region;
	queues_stop_all(dev);
	int rc = 0;
	if (!dev->mem)
		rc = dev_mem_create(dev, &dev->mem);
	if (rc == 0)
		rc = vhd_mem_map_fd(dev->mem, m->fds[0], r->mmap_offset, r->guest_phys_addr, r->memory_size,
				    r->userspace_addr);
	if (rc == 0)
		m->fds[0] = -1;
	else
		vu_err(dev, "%s: ADD_MEM_REG: region guest 0x%llx size 0x%llx: %s", dev->name,
		       (unsigned long long)r->guest_phys_addr, (unsigned long long)r->memory_size, strerror(-rc));
	iotlb_flush(dev); /* host pointers come from the table, which changed (vhostd/iotlb.h) */
	queues_start_all(dev);
	return rc;
}

static int h_rem_mem_reg(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	const struct vhost_user_memory_region *r = &m->p.mem_reg.region;
	queues_stop_all(dev);
	int rc = dev->mem ? vhd_mem_remove(dev->mem, r->guest_phys_addr, r->memory_size) : -ENOENT;
	if (rc < 0)
		vu_err(dev, "%s: REM_MEM_REG: no region at guest 0x%llx size 0x%llx", dev->name,
		       (unsigned long long)r->guest_phys_addr, (unsigned long long)r->memory_size);
	iotlb_flush(dev); /* entries may point into the region just unmapped */
	queues_start_all(dev);
	return rc;
}

static int h_get_max_mem_slots(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	return reply_u64(dev, m, VHD_MEM_MAX_REGIONS);
}

static int h_set_vring_num(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	int qi = queue_index(dev, "SET_VRING_NUM", m->p.state.index);
	if (qi < 0)
		return qi;
	uint32_t num = m->p.state.num;
	if (num == 0 || num > VIRTQ_MAX_SIZE) {
		vu_err(dev, "%s: SET_VRING_NUM: queue %d size %u out of range 1..%u", dev->name, qi, num,
		       VIRTQ_MAX_SIZE);
		return -EINVAL;
	}
	/* Against the features acked so far; queue_try_start() checks again with the final ones. */
	bool packed = dev->features & VHD_BIT(VIRTIO_F_RING_PACKED);
	if (!size_fits_layout(num, packed)) {
		vu_err(dev, "%s: SET_VRING_NUM: queue %d size %u is not a power of two, which a split ring needs",
		       dev->name, qi, num);
		return -EINVAL;
	}
	queue_stop(dev, (unsigned)qi);
	dev->q[qi].num = num;
	queue_try_start(dev, (unsigned)qi);
	return 0;
}

static int h_set_vring_addr(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	const struct vhost_vring_addr *a = &m->p.addr;
	int qi = queue_index(dev, "SET_VRING_ADDR", a->index);
	if (qi < 0)
		return qi;
	struct vu_queue *q = &dev->q[qi];
	bool log_ring = a->flags & VHD_BIT(VHOST_VRING_F_LOG);
	if (q->vq && q->addr_set && q->desc_ua == a->desc_user_addr && q->avail_ua == a->avail_user_addr &&
	    q->used_ua == a->used_user_addr) {
		/* Only the ring logging changes (QEMU sends this to every queue as a migration starts and ends):
		 * the queue is paused for it, not stopped. */
		bool running = queue_pause(q);
		q->log_ring = log_ring;
		q->log_guest_addr = a->log_guest_addr;
		queue_log(dev, (unsigned)qi);
		if (running)
			queue_resume(q);
		return 0;
	}
	/* Refused before anything changes: a running queue keeps its rings. Without a memory table or a size yet,
	 * only the alignment can be checked here; queue_try_start() checks the rest. */
	bool packed = dev->features & VHD_BIT(VIRTIO_F_RING_PACKED);
	int rc = ring_check(dev, (unsigned)qi, "SET_VRING_ADDR", q, packed, dev_iommu(dev), a->desc_user_addr,
			    a->avail_user_addr, a->used_user_addr, NULL);
	if (rc < 0)
		return rc;
	queue_stop(dev, (unsigned)qi);
	q->desc_ua = a->desc_user_addr;
	q->avail_ua = a->avail_user_addr;
	q->used_ua = a->used_user_addr;
	q->log_ring = log_ring;
	q->log_guest_addr = a->log_guest_addr;
	q->addr_set = true;
	queue_try_start(dev, (unsigned)qi);
	return 0;
}

/*
 * The dirty log, from the fd the message carries (PROTOCOL_F_LOG_SHMFD). Mapped and checked first: a refusal
 * changes nothing. Then every queue is paused, moved onto the new log, and resumed, and the old log unmapped:
 * when the reply goes out (QEMU waits for it before it reads or frees the old log) nothing writes the old one
 * any more. QEMU sends it again, with a bigger log, when guest memory grows.
 */
static int h_set_log_base(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	const struct vhost_user_log *l = &m->p.log;
	const char *why;
	struct vhd_dlog *log;
	int fd = vhu_msg_take_fd(m, 0);
	int keep = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
	int rc = vhd_dlog_map(fd, l->mmap_size, l->mmap_offset, &log, &why);
	if (rc == 0 && keep < 0) {
		vhd_dlog_destroy(log);
		why = "out of file descriptors";
		rc = -EMFILE;
	}
	if (rc < 0) {
		vu_err(dev, "%s: SET_LOG_BASE: size 0x%llx offset 0x%llx: %s", dev->name,
		       (unsigned long long)l->mmap_size, (unsigned long long)l->mmap_offset, why);
		if (keep >= 0)
			close(keep);
		return rc;
	}
	close_fd(&dev->log_fd);
	dev->log_fd = keep;
	dev->log_msg = *l;
	vhd_dlog_set_wake_fd(log, dev->conn.io.fd);
	struct vhd_dlog *old = dev->log;
	dev->log = log;
	dev_relog(dev, dev->features);
	if (old && vhd_dlog_beyond(old))
		vhd_log(VHD_LOG_WARN, "%s: %llu page writes fell beyond the previous dirty log", dev->name,
			(unsigned long long)vhd_dlog_beyond(old));
	vhd_dlog_destroy(old);
	vhd_log(VHD_LOG_INFO, "%s: dirty log: %llu bytes (guest memory up to %llu MiB)%s", dev->name,
		(unsigned long long)l->mmap_size, (unsigned long long)(l->mmap_size * 8 * VHD_DLOG_PAGE >> 20),
		dev_logging(dev) ? ", logging" : "");
	return reply_u64(dev, m, 0);
}

/*
 * Inflight tracking (PROTOCOL_F_INFLIGHT_SHMFD): num_queues and queue_size of either message, checked against
 * this device (CVE-2021-3839: num_queues indexed the queues unchecked elsewhere). Sets *per to one queue's
 * region size.
 */
static int inflight_check(struct vhd_vu_dev *dev, const char *what, const struct vhost_user_inflight *in,
			  size_t *per)
{
	bool packed = dev->features & VHD_BIT(VIRTIO_F_RING_PACKED);
	if (in->num_queues == 0 || in->num_queues > dev->nq) {
		vu_err(dev, "%s: %s: num_queues %u (this device has %u queues)", dev->name, what, in->num_queues,
		       dev->nq);
		return -EINVAL;
	}
	*per = vhd_vq_inflight_size(packed, in->queue_size);
	if (*per == 0) {
		vu_err(dev, "%s: %s: queue_size %u is not a %s", dev->name, what, in->queue_size,
		       packed ? "packed ring size (1 to 32768)" : "split ring size (a power of two up to 32768)");
		return -EINVAL;
	}
	return 0;
}

/* A fresh, zeroed area for the front-end to keep: the queues initialise their regions when they start. */
static int h_get_inflight_fd(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	struct vhost_user_inflight in = m->p.inflight;
	size_t per;
	int rc = inflight_check(dev, "GET_INFLIGHT_FD", &in, &per);
	if (rc < 0)
		return rc;
	uint64_t size = (uint64_t)per * in.num_queues; /* at most 512 * 1 MiB: no overflow */
	int fd = memfd_create("vhd-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0) {
		rc = -errno;
		vu_err(dev, "%s: GET_INFLIGHT_FD: cannot make a %llu-byte area: %s", dev->name,
		       (unsigned long long)size, strerror(-rc));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	struct vhu_msg r;
	memset(&r.hdr, 0, sizeof(r.hdr));
	r.hdr.request = m->hdr.request;
	r.hdr.flags = VHOST_USER_VERSION | VHOST_USER_REPLY_MASK;
	r.hdr.size = sizeof(r.p.inflight);
	r.p.inflight = (struct vhost_user_inflight){.mmap_size = size, .mmap_offset = 0,
						    .num_queues = in.num_queues, .queue_size = in.queue_size};
	r.fds[0] = fd;
	r.nfds = 1;
	rc = vhu_io_send(&dev->conn.io, &r);
	close(fd); /* the I/O layer sends its own duplicate */
	if (rc < 0) {
		vu_err(dev, "%s: cannot reply to GET_INFLIGHT_FD: %s", dev->name, strerror(-rc));
		return VU_FATAL;
	}
	vhd_log(VHD_LOG_INFO, "%s: inflight area of %llu bytes for %u queues of %u", dev->name,
		(unsigned long long)size, in.num_queues, in.queue_size);
	return 0;
}

/*
 * The area the front-end kept (from us or a previous incarnation): mapped and checked first, so a refusal changes
 * nothing. Every queue is then stopped and started again on it; a started queue recovers its region and
 * resubmits what was taken and not used.
 */
static int h_set_inflight_fd(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	struct vhost_user_inflight in = m->p.inflight;
	int fd = vhu_msg_take_fd(m, 0);
	size_t per;
	int rc = inflight_check(dev, "SET_INFLIGHT_FD", &in, &per);
	uint64_t need = (uint64_t)per * in.num_queues;
	uint64_t pg = in.mmap_offset & 4095, end;
	struct stat st;
	if (rc == 0 && in.mmap_size < need) {
		vu_err(dev, "%s: SET_INFLIGHT_FD: mmap_size %llu below the %llu bytes of %u queues of %u", dev->name,
		       (unsigned long long)in.mmap_size, (unsigned long long)need, in.num_queues, in.queue_size);
		rc = -EINVAL;
	}
	if (rc == 0 && (__builtin_add_overflow(in.mmap_offset, need, &end) || end > (uint64_t)INT64_MAX)) {
		vu_err(dev, "%s: SET_INFLIGHT_FD: mmap_offset 0x%llx + size overflows", dev->name,
		       (unsigned long long)in.mmap_offset);
		rc = -EINVAL;
	}
	if (rc == 0 && fstat(fd, &st) < 0)
		rc = -errno;
	if (rc == 0 && (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < end)) {
		vu_err(dev, "%s: SET_INFLIGHT_FD: the fd is %s of %lld bytes, %llu needed (offset 0x%llx)", dev->name,
		       S_ISREG(st.st_mode) ? "a file" : "not a regular file", (long long)st.st_size,
		       (unsigned long long)end, (unsigned long long)in.mmap_offset);
		rc = -EINVAL;
	}
	/* Shrinking the file under our mapping would fault the data path: only a sealed one (as GET_INFLIGHT_FD
	 * makes them, here and in libvhost-user) is mapped. */
	if (rc == 0 && !(fcntl(fd, F_GET_SEALS) > 0 && (fcntl(fd, F_GET_SEALS) & F_SEAL_SHRINK))) {
		vu_err(dev, "%s: SET_INFLIGHT_FD: the file is not sealed against shrinking (F_SEAL_SHRINK)", dev->name);
		rc = -EINVAL;
	}
	void *map = MAP_FAILED;
	if (rc == 0) {
		map = mmap(NULL, need + pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)(in.mmap_offset - pg));
		if (map == MAP_FAILED) {
			rc = -errno;
			vu_err(dev, "%s: SET_INFLIGHT_FD: cannot map %llu bytes: %s", dev->name,
			       (unsigned long long)need, strerror(-rc));
		}
	}
	if (rc < 0) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	queues_stop_all(dev);
	inflight_unmap(dev);
	dev->infl_fd = fd; /* kept for vhd_vu_dev_export() */
	dev->infl_msg = in;
	dev->infl_map = map;
	dev->infl_len = need + pg;
	dev->infl_base = (uint8_t *)map + pg;
	dev->infl_per = per;
	dev->infl_nq = in.num_queues;
	dev->infl_qsz = in.queue_size;
	queues_start_all(dev);
	return 0;
}

static int h_set_vring_base(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	int qi = queue_index(dev, "SET_VRING_BASE", m->p.state.index);
	if (qi < 0)
		return qi;
	uint32_t num = m->p.state.num;
	bool packed = dev->features & VHD_BIT(VIRTIO_F_RING_PACKED);
	/* Split: the avail index. Packed (as QEMU sends it): bits 0-14 avail position, 15 its wrap counter,
	 * 16-30 used position, 31 its wrap counter. Rings are handed over with nothing in flight, so the used
	 * half can only equal the avail half (or be 0 from front-ends that leave it out, like DPDK's). */
	if (!packed && num > UINT16_MAX) {
		vu_err(dev, "%s: SET_VRING_BASE: queue %d base %u does not fit 16 bits", dev->name, qi, num);
		return -EINVAL;
	}
	if (packed && (num >> 16) && (num >> 16) != (num & 0xffff))
		vhd_log(VHD_LOG_WARN, "%s: SET_VRING_BASE: queue %d used position 0x%x differs from avail 0x%x; "
			"resuming both at avail", dev->name, qi, num >> 16, num & 0xffff);
	queue_stop(dev, (unsigned)qi);
	dev->q[qi].base = (uint16_t)num;
	dev->q[qi].used_base = (uint16_t)num;
	queue_try_start(dev, (unsigned)qi);
	return 0;
}

static int h_get_vring_base(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	int qi = queue_index(dev, "GET_VRING_BASE", m->p.state.index);
	if (qi < 0)
		return qi;
	struct vu_queue *q = &dev->q[qi];
	/* Stops the ring (vhost-user.rst); with QEMU 7.2+ SET_VRING_ENABLE(0) may already have. */
	queue_stop(dev, (unsigned)qi);
	q->kick_set = false;
	close_fd(&q->kick_fd);
	struct vhost_vring_state st = {(uint32_t)qi, q->base};
	/* Packed: QEMU reads the used position and wrap counter from the upper half (see h_set_vring_base). */
	if (dev->features & VHD_BIT(VIRTIO_F_RING_PACKED))
		st.num |= (uint32_t)q->used_base << 16;
	return send_reply(dev, m, &st, sizeof(st));
}

/* What kind of file fd is, for a refusal's log line: "anon_inode:[eventfd]" and the like from /proc (which tells
 * anonymous inodes apart), else the type fstat() gives. */
static void fd_kind(int fd, char *buf, size_t len)
{
	char link[32];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, buf, len - 1);
	if (n > 0 && !strncmp(buf, "anon_inode:", 11)) {
		buf[n] = 0;
		return;
	}
	struct stat st;
	const char *k = "unknown";
	if (fstat(fd, &st) == 0)
		k = S_ISFIFO(st.st_mode) ? "pipe" : S_ISSOCK(st.st_mode) ? "socket" : S_ISREG(st.st_mode) ? "regular file"
		  : S_ISCHR(st.st_mode) ? "character device" : S_ISBLK(st.st_mode) ? "block device"
		  : S_ISDIR(st.st_mode) ? "directory" : "unknown";
	snprintf(buf, len, "%s", k);
}

/* Kick, call and error fds must be eventfds: anything else can block its writer (a full pipe stalls the data
 * path, a pipe without reader raises SIGPIPE) or read as nonsense. */
static int eventfd_only(struct vhd_vu_dev *dev, const char *what, int qi, int fd)
{
	char kind[64];
	fd_kind(fd, kind, sizeof(kind));
	if (!strcmp(kind, "anon_inode:[eventfd]"))
		return 0;
	vu_err(dev, "%s: %s: queue %d: fd is a %s, not an eventfd", dev->name, what, qi, kind);
	return -EBADF;
}

/* SET_VRING_KICK/CALL/ERR: fd or NOFD in the u64; an fd that is not an eventfd is closed and refused. Returns
 * the index, or -errno. */
static int vring_fd_msg(struct vhd_vu_dev *dev, struct vhu_msg *m, const char *what, int *fd)
{
	if (m->p.u64 & ~(uint64_t)(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD)) {
		vu_err(dev, "%s: %s: unknown bits in 0x%llx", dev->name, what, (unsigned long long)m->p.u64);
		return -EINVAL;
	}
	int qi = queue_index(dev, what, (uint32_t)(m->p.u64 & VHOST_USER_VRING_IDX_MASK));
	if (qi < 0)
		return qi;
	*fd = (m->p.u64 & VHOST_USER_VRING_NOFD) ? -1 : vhu_msg_take_fd(m, 0);
	if (*fd >= 0 && eventfd_only(dev, what, qi, *fd) < 0) {
		close_fd(fd);
		return -EBADF;
	}
	return qi;
}

static int h_set_vring_kick(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	int fd, qi = vring_fd_msg(dev, m, "SET_VRING_KICK", &fd);
	if (qi < 0)
		return qi;
	struct vu_queue *q = &dev->q[qi];
	queue_stop(dev, (unsigned)qi);
	close_fd(&q->kick_fd);
	q->kick_fd = fd; /* -1: the front-end expects us to poll */
	q->kick_set = true;
	/* Without PROTOCOL_FEATURES a ring is enabled once it is kicked (vhost-user.rst, "Ring states"). */
	if (!(dev->features & VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES)))
		q->enabled = true;
	queue_try_start(dev, (unsigned)qi);
	return 0;
}

static int h_set_vring_call(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	int fd, qi = vring_fd_msg(dev, m, "SET_VRING_CALL", &fd);
	if (qi < 0)
		return qi;
	/* The data path writes it: a full counter must fail the write, not stall the thread (the flag is on the
	 * open file, which the front-end shares: eventfd users poll, so non-blocking costs them nothing). */
	if (fd >= 0 && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		vu_err(dev, "%s: SET_VRING_CALL: queue %d: cannot make the fd non-blocking: %s", dev->name, qi,
		       strerror(errno));
		close(fd);
		return -EBADF;
	}
	struct vu_queue *q = &dev->q[qi];
	/* The data path writes the call fd inside a burst: swap it only between bursts. */
	bool running = queue_pause(q);
	close_fd(&q->call_fd);
	q->call_fd = fd;
	atomic_store_explicit(&q->notify_warned, 0, memory_order_relaxed); /* a new fd gets its own log line */
	if (running)
		queue_resume(q);
	return 0;
}

static int h_set_vring_err(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	int fd, qi = vring_fd_msg(dev, m, "SET_VRING_ERR", &fd);
	if (qi < 0)
		return qi;
	close_fd(&dev->q[qi].err_fd);
	dev->q[qi].err_fd = fd;
	return 0;
}

static int h_get_protocol_features(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	return reply_u64(dev, m, dev->proto_offered);
}

static int h_set_protocol_features(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	if (m->p.u64 & ~dev->proto_offered) {
		vu_err(dev, "%s: SET_PROTOCOL_FEATURES: bits not offered: 0x%llx", dev->name,
		       (unsigned long long)(m->p.u64 & ~dev->proto_offered));
		return -EINVAL;
	}
	dev->proto = m->p.u64;
	return 0;
}

static int h_get_queue_num(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	/* Queue pairs, as QEMU's vhost-user net client compares it with its queues= (and DPDK answers). */
	return reply_u64(dev, m, dev->nq / 2);
}

static int h_set_vring_enable(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	int qi = queue_index(dev, "SET_VRING_ENABLE", m->p.state.index);
	if (qi < 0)
		return qi;
	if (m->p.state.num > 1) {
		vu_err(dev, "%s: SET_VRING_ENABLE: queue %d: state %u is neither 0 nor 1", dev->name, qi,
		       m->p.state.num);
		return -EINVAL;
	}
	struct vu_queue *q = &dev->q[qi];
	q->enabled = m->p.state.num == 1;
	if (q->enabled)
		queue_try_start(dev, (unsigned)qi);
	else
		queue_stop(dev, (unsigned)qi);
	return 0;
}

static int h_send_rarp(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	memcpy(dev->rarp_mac, &m->p.u64, sizeof(dev->rarp_mac));
	dev->rarp_pending = true;
	vhd_log(VHD_LOG_INFO, "%s: SEND_RARP for %02x:%02x:%02x:%02x:%02x:%02x", dev->name, dev->rarp_mac[0],
		dev->rarp_mac[1], dev->rarp_mac[2], dev->rarp_mac[3], dev->rarp_mac[4], dev->rarp_mac[5]);
	return 0;
}

static int h_net_set_mtu(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	if (m->p.u64 < 68 || m->p.u64 > 65535) {
		vu_err(dev, "%s: NET_SET_MTU: %llu outside 68..65535", dev->name, (unsigned long long)m->p.u64);
		return -EINVAL;
	}
	dev->mtu = (uint16_t)m->p.u64;
	return 0;
}

/* The back-end channel must be a connected unix stream socket: we write vhost-user messages to it, never
 * waiting (non-blocking, through the bounded output queue of msg.h). */
static int h_set_backend_req_fd(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	int fd = m->fds[0];
	int type = 0, domain = 0;
	socklen_t len = sizeof(type), dlen = sizeof(domain);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) < 0 || type != SOCK_STREAM || domain != AF_UNIX) {
		char kind[64];
		fd_kind(fd, kind, sizeof(kind));
		vu_err(dev, "%s: SET_BACKEND_REQ_FD: fd is a %s%s, not a unix stream socket", dev->name, kind,
		       !strcmp(kind, "socket") ? (domain != AF_UNIX ? " of another family" : " of another type") : "");
		return -EBADF;
	}
	vhu_io_close(&dev->breq);
	vhu_io_init(&dev->breq, vhu_msg_take_fd(m, 0)); /* made non-blocking there */
	dev->breq_warned = false;
	return 0;
}

/*
 * IOTLB UPDATE / INVALIDATE from the front-end, into the cache with every queue paused (vhostd/iotlb.h's
 * threading contract); then rings are translated again where the generation moved, and every queue waiting on a
 * miss tries again. Refusals name the value (vhd_iotlb_last_error()) and change nothing.
 */
static int h_iotlb_msg(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	const struct vhost_iotlb_msg *t = &m->p.iotlb;
	if (!dev_iommu(dev)) {
		vu_err(dev, "%s: IOTLB_MSG (type %u, IOVA 0x%llx) without VIRTIO_F_ACCESS_PLATFORM negotiated", dev->name,
		       t->type, (unsigned long long)t->iova);
		return -ENOTSUP;
	}
	if (t->type != VHOST_IOTLB_UPDATE && t->type != VHOST_IOTLB_INVALIDATE) {
		vu_err(dev, "%s: IOTLB_MSG: type %u is neither UPDATE (%d) nor INVALIDATE (%d)", dev->name, t->type,
		       VHOST_IOTLB_UPDATE, VHOST_IOTLB_INVALIDATE);
		return -EINVAL;
	}
	bool paused[VU_MAX_QUEUES];
	for (unsigned i = 0; i < dev->nq; i++)
		paused[i] = queue_pause(&dev->q[i]);
	int rc;
	if (t->type == VHOST_IOTLB_UPDATE)
		rc = vhd_iotlb_update(dev->iotlb, dev->mem, t->iova, t->size, t->uaddr, t->perm);
	else
		rc = vhd_iotlb_invalidate(dev->iotlb, t->iova, t->size);
	if (rc < 0)
		vu_err(dev, "%s: IOTLB_MSG %s refused: %s", dev->name,
		       t->type == VHOST_IOTLB_UPDATE ? "UPDATE" : "INVALIDATE", vhd_iotlb_last_error(dev->iotlb));
	misses_answered(dev);
	queues_iotlb_changed(dev, paused);
	update_ready(dev);
	return rc < 0 ? rc : 0;
}

static void net_config(const struct vhd_vu_dev *dev, uint8_t c[VHD_NET_CONFIG_SIZE])
{
	struct vhd_net_device_info info = {.mtu = dev->mtu, .max_queue_pairs = (uint16_t)(dev->nq / 2)};
	memcpy(info.mac, dev->cfg.mac, sizeof(info.mac));
	vhd_net_device_config(&info, c);
}

static int h_get_config(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	struct vhost_user_config *c = &m->p.config;
	uint8_t nc[VHD_NET_CONFIG_SIZE];
	net_config(dev, nc);
	if (c->offset > sizeof(nc) || c->size > sizeof(nc) - c->offset) {
		vu_err(dev, "%s: GET_CONFIG: bytes %u+%u beyond the %zu-byte config space", dev->name, c->offset,
		       c->size, sizeof(nc));
		return send_reply(dev, m, NULL, 0); /* an empty reply is the failure answer */
	}
	struct vhost_user_config out = {.offset = c->offset, .size = c->size, .flags = c->flags};
	memcpy(out.region, nc + c->offset, c->size);
	return send_reply(dev, m, &out, 12 + c->size);
}

static int h_set_config(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	vu_err(dev, "%s: SET_CONFIG: the virtio-net config space is read-only here (offset %u size %u)",
	       dev->name, m->p.config.offset, m->p.config.size);
	return -EPERM;
}

static int h_set_status(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	if (m->p.u64 > 0xff) {
		vu_err(dev, "%s: SET_STATUS: 0x%llx does not fit the 8-bit status", dev->name,
		       (unsigned long long)m->p.u64);
		return -EINVAL;
	}
	/* Recorded, never acted on: QEMU (7.2+) writes 0 while stopping, before GET_VRING_BASE, and must then still
	 * get the ring positions back. The front-end owns the virtio device; RESET_DEVICE is the vhost reset. */
	dev->status = (uint8_t)m->p.u64;
	emit(dev, VHD_VU_STATUS, 0);
	return 0;
}

static int h_get_status(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	return reply_u64(dev, m, dev->status);
}

/* One handler per request, indexed by request id; NULL means "not supported by this back-end". */
static int (*const handlers[VHOST_USER_REQUEST_MAX])(struct vhd_vu_dev *, struct vhu_msg *) = {
	[VHOST_USER_GET_FEATURES] = h_get_features,
	[VHOST_USER_SET_FEATURES] = h_set_features,
	[VHOST_USER_SET_OWNER] = h_set_owner,
	[VHOST_USER_RESET_OWNER] = h_reset_owner,
	[VHOST_USER_SET_MEM_TABLE] = h_set_mem_table,
	[VHOST_USER_SET_LOG_BASE] = h_set_log_base,
	[VHOST_USER_SET_VRING_NUM] = h_set_vring_num,
	[VHOST_USER_SET_VRING_ADDR] = h_set_vring_addr,
	[VHOST_USER_SET_VRING_BASE] = h_set_vring_base,
	[VHOST_USER_GET_VRING_BASE] = h_get_vring_base,
	[VHOST_USER_SET_VRING_KICK] = h_set_vring_kick,
	[VHOST_USER_SET_VRING_CALL] = h_set_vring_call,
	[VHOST_USER_SET_VRING_ERR] = h_set_vring_err,
	[VHOST_USER_GET_PROTOCOL_FEATURES] = h_get_protocol_features,
	[VHOST_USER_SET_PROTOCOL_FEATURES] = h_set_protocol_features,
	[VHOST_USER_GET_QUEUE_NUM] = h_get_queue_num,
	[VHOST_USER_SET_VRING_ENABLE] = h_set_vring_enable,
	[VHOST_USER_SEND_RARP] = h_send_rarp,
	[VHOST_USER_NET_SET_MTU] = h_net_set_mtu,
	[VHOST_USER_SET_BACKEND_REQ_FD] = h_set_backend_req_fd,
	[VHOST_USER_IOTLB_MSG] = h_iotlb_msg,
	[VHOST_USER_GET_CONFIG] = h_get_config,
	[VHOST_USER_SET_CONFIG] = h_set_config,
	[VHOST_USER_RESET_DEVICE] = h_reset_device,
	[VHOST_USER_GET_MAX_MEM_SLOTS] = h_get_max_mem_slots,
	[VHOST_USER_ADD_MEM_REG] = h_add_mem_reg,
	[VHOST_USER_REM_MEM_REG] = h_rem_mem_reg,
	[VHOST_USER_SET_STATUS] = h_set_status,
	[VHOST_USER_GET_STATUS] = h_get_status,
	[VHOST_USER_GET_INFLIGHT_FD] = h_get_inflight_fd,
	[VHOST_USER_SET_INFLIGHT_FD] = h_set_inflight_fd,
};

/* Requests whose answer is a reply of its own, so REPLY_ACK adds nothing. */
static bool has_reply(uint32_t req)
{
	switch (req) {
	case VHOST_USER_GET_FEATURES:
	case VHOST_USER_GET_PROTOCOL_FEATURES:
	case VHOST_USER_GET_VRING_BASE:
	case VHOST_USER_GET_QUEUE_NUM:
	case VHOST_USER_GET_CONFIG:
	case VHOST_USER_GET_MAX_MEM_SLOTS:
	case VHOST_USER_GET_STATUS:
	case VHOST_USER_GET_INFLIGHT_FD:
	case VHOST_USER_SET_LOG_BASE: /* QEMU waits for an answer with the same request id (u64 0) */
		return true;
	default:
		return false;
	}
}

/* Messages whose protocol feature we do not offer, and which therefore must not arrive. */
static bool offered_request(const struct vhd_vu_dev *dev, uint32_t req)
{
	switch (req) {
	case VHOST_USER_GET_MAX_MEM_SLOTS:
	case VHOST_USER_ADD_MEM_REG:
	case VHOST_USER_REM_MEM_REG:
		return dev->proto & VHD_BIT(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS);
	case VHOST_USER_SET_STATUS:
	case VHOST_USER_GET_STATUS:
		return dev->proto & VHD_BIT(VHOST_USER_PROTOCOL_F_STATUS);
	case VHOST_USER_GET_CONFIG:
	case VHOST_USER_SET_CONFIG:
		return dev->proto & VHD_BIT(VHOST_USER_PROTOCOL_F_CONFIG);
	case VHOST_USER_RESET_DEVICE:
		return dev->proto & VHD_BIT(VHOST_USER_PROTOCOL_F_RESET_DEVICE);
	case VHOST_USER_SET_BACKEND_REQ_FD:
		return dev->proto & VHD_BIT(VHOST_USER_PROTOCOL_F_BACKEND_REQ);
	case VHOST_USER_SET_LOG_BASE:
		return dev->proto & VHD_BIT(VHOST_USER_PROTOCOL_F_LOG_SHMFD);
	case VHOST_USER_GET_INFLIGHT_FD:
	case VHOST_USER_SET_INFLIGHT_FD:
		return dev->proto & VHD_BIT(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD);
	default:
		return true;
	}
}

static int handle(struct vhd_vu_dev *dev, struct vhu_msg *m)
{
	const struct vhu_req_info *ri = vhu_req_info(m->hdr.request);
	const char *why;
	int rc;
	vhd_log(VHD_LOG_DEBUG, "%s: received %s (%u): %u payload bytes, %u fds%s", dev->name, ri->name,
		m->hdr.request, m->hdr.size, m->nfds, m->hdr.flags & VHOST_USER_NEED_REPLY ? ", reply asked" : "");
	if (vhu_msg_validate(m, &why) < 0) {
		vu_err(dev, "%s: %s (%u): %s (%u payload bytes, %u fds)", dev->name, ri->name, m->hdr.request, why,
		       m->hdr.size, m->nfds);
		rc = -EINVAL;
	} else if (m->hdr.request >= VHOST_USER_REQUEST_MAX || !handlers[m->hdr.request]) {
		vu_err(dev, "%s: %s (%u) is not supported by this back-end", dev->name, ri->name, m->hdr.request);
		rc = -ENOTSUP;
	} else if (!offered_request(dev, m->hdr.request)) {
		vu_err(dev, "%s: %s sent without negotiating its protocol feature", dev->name, ri->name);
		rc = -ENOTSUP;
	} else {
		rc = handlers[m->hdr.request](dev, m);
		if (rc == VU_FATAL)
			return VU_FATAL;
	}
	/* A request that expects a reply gets one even when refused, or the front-end would wait forever. */
	if (has_reply(m->hdr.request) && rc < 0 && rc != VU_FATAL) {
		/* SET_LOG_BASE's answer is a u64 (0: done), so its refusal is one too; the others' is empty. */
		if ((m->hdr.request == VHOST_USER_SET_LOG_BASE ? reply_u64(dev, m, 1) : send_reply(dev, m, NULL, 0)) ==
		    VU_FATAL)
			return VU_FATAL;
	} else if ((m->hdr.flags & VHOST_USER_NEED_REPLY) && (dev->proto & VHD_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK)) &&
		   !has_reply(m->hdr.request)) {
		if (reply_u64(dev, m, rc < 0 ? 1 : 0) == VU_FATAL)
			return VU_FATAL;
	}
	return rc;
}

/* ---------------------------------------------------------------- connection */

static void set_conn(struct vhd_vu_dev *dev)
{
	dev->proto = 0;
	dev->owner = false;
	vhd_log(VHD_LOG_INFO, "%s: front-end connected", dev->name);
	emit(dev, VHD_VU_CONNECTED, 0);
}

static void disconnect(struct vhd_vu_dev *dev, int why)
{
	if (dev->conn.io.fd < 0)
		return;
	device_reset(dev, false);
	vhu_io_close(&dev->breq);
	vhu_conn_lost(&dev->conn);
	dev->proto = 0;
	vhd_log(VHD_LOG_INFO, "%s: front-end disconnected (%s)", dev->name, strerror(why < 0 ? -why : why));
	emit(dev, VHD_VU_DISCONNECTED, 0);
}

/*
 * The socket file gets the owner, group and mode asked for (server). It was bound a moment ago in a directory
 * someone else may write to, so whatever is at the path now must still be a socket: chmod follows symlinks.
 */
static int set_socket_access(const struct vhd_vu_config *cfg, const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		int e = errno;
		vu_err(NULL, "%s: socket %s: %s", cfg->name ? cfg->name : "vhost-user", path, strerror(e));
		return -e;
	}
	if (!S_ISSOCK(st.st_mode)) {
		vu_err(NULL, "%s: %s is no longer the socket just bound: not changing its owner or mode",
		       cfg->name ? cfg->name : "vhost-user", path);
		return -EEXIST;
	}
	uid_t uid = cfg->set_owner ? cfg->owner : (uid_t)-1;
	gid_t gid = cfg->set_group ? cfg->group : (gid_t)-1;
	if ((cfg->set_owner || cfg->set_group) && fchownat(AT_FDCWD, path, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
		int e = errno;
		vu_err(NULL, "%s: socket %s: owner %lld group %lld: %s", cfg->name ? cfg->name : "vhost-user", path,
		       cfg->set_owner ? (long long)uid : -1LL, cfg->set_group ? (long long)gid : -1LL, strerror(e));
		return -e;
	}
	if (cfg->mode && chmod(path, (mode_t)cfg->mode) < 0) {
		int e = errno;
		vu_err(NULL, "%s: socket %s: mode %04o: %s", cfg->name ? cfg->name : "vhost-user", path, cfg->mode,
		       strerror(e));
		return -e;
	}
	return 0;
}

static void dev_free(struct vhd_vu_dev *dev)
{
	vhd_iotlb_destroy(dev->iotlb);
	close_fd(&dev->wake_fd);
	free(dev);
}

/* A device as cfg describes it, with no connection yet (conn's fds -1); -EINVAL, -ENOMEM or -errno. */
static int dev_alloc(const struct vhd_vu_config *cfg, struct vhd_vu_dev **out)
{
	if (!cfg->path || !*cfg->path || cfg->max_queue_pairs == 0 || cfg->max_queue_pairs > VHD_VU_MAX_QUEUE_PAIRS)
		return -EINVAL;
	bool access = cfg->set_owner || cfg->set_group || cfg->mode;
	if (cfg->mode > 0777 || (access && cfg->client))
		return -EINVAL;
	struct vhd_vu_dev *dev = aligned_alloc(64, (sizeof(*dev) + 63) & ~(size_t)63);
	if (!dev)
		return -ENOMEM;
	memset(dev, 0, sizeof(*dev));
	dev->cfg = *cfg;
	snprintf(dev->name, sizeof(dev->name), "%s", cfg->name ? cfg->name : "vhost-user");
	dev->cfg.name = dev->name;
	dev->breq.fd = -1;
	dev->wake_fd = dev->log_fd = dev->infl_fd = -1;
	dev->msg_timeout_ms = cfg->msg_timeout_ms ? cfg->msg_timeout_ms : VU_MSG_TIMEOUT_MS;
	dev->nq = 2u * cfg->max_queue_pairs;
	/* LOG_ALL: this back-end can log its writes for a live migration (with PROTOCOL_F_LOG_SHMFD). */
	dev->offered = (cfg->features ? cfg->features : vhd_vu_default_features()) |
		       VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES) | VHD_BIT(VHOST_F_LOG_ALL);
	if (cfg->max_queue_pairs == 1)
		dev->offered &= ~VHD_BIT(VIRTIO_NET_F_MQ);
	if (cfg->mtu)
		dev->offered |= VHD_BIT(VIRTIO_NET_F_MTU);
	static const uint8_t zero[6];
	if (memcmp(cfg->mac, zero, 6))
		dev->offered |= VHD_BIT(VIRTIO_NET_F_MAC);
	dev->proto_offered = default_protocol_features();
	if (!cfg->config_space)
		dev->proto_offered &= ~VHD_BIT(VHOST_USER_PROTOCOL_F_CONFIG);
	dev->mtu = cfg->mtu;
	const char *off = getenv("VHOSTD_TEST_DIRTY_LOG_OFF");
	dev->log_off = off && !strcmp(off, "1");
	if (dev->log_off)
		vhd_log(VHD_LOG_WARN, "%s: VHOSTD_TEST_DIRTY_LOG_OFF=1: dirty pages are NOT logged (testing only: "
			"a live migration will corrupt the guest)", dev->name);
	for (unsigned i = 0; i < VU_MAX_QUEUES; i++) {
		dev->q[i].call_fd = dev->q[i].kick_fd = dev->q[i].err_fd = -1;
		atomic_init(&dev->q[i].ready, 0);
		atomic_init(&dev->q[i].busy, 0);
		atomic_init(&dev->q[i].miss_wait, 0);
	}
	int rc = 0;
	/* The data path wakes the control thread through wake_fd when it meets an IOTLB miss. */
	if (dev->offered & VHD_BIT(VIRTIO_F_ACCESS_PLATFORM)) {
		dev->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		rc = dev->wake_fd < 0 ? -errno : vhd_iotlb_create(0, &dev->iotlb);
	}
	dev->conn.listen_fd = dev->conn.io.fd = -1;
	if (rc < 0) {
		dev_free(dev);
		return rc;
	}
	*out = dev;
	return 0;
}

int vhd_vu_dev_create(const struct vhd_vu_config *cfg, struct vhd_vu_dev **out)
{
	struct vhd_vu_dev *dev;
	int rc = dev_alloc(cfg, &dev);
	if (rc < 0)
		return rc;
	bool access = cfg->set_owner || cfg->set_group || cfg->mode;
	rc = vhu_conn_init(&dev->conn, cfg->path, cfg->client, cfg->reconnect_min_ms, cfg->reconnect_max_ms);
	if (rc == 0 && access && (rc = set_socket_access(cfg, dev->conn.path)) < 0)
		vhu_conn_fini(&dev->conn);
	if (rc < 0) {
		dev_free(dev);
		return rc;
	}
	dev->cfg.path = dev->conn.path;
	if (dev->conn.io.fd >= 0)
		set_conn(dev);
	*out = dev;
	return 0;
}

void vhd_vu_dev_destroy(struct vhd_vu_dev *dev)
{
	if (!dev)
		return;
	disconnect(dev, ESHUTDOWN);
	device_reset(dev, false);
	vhu_conn_fini(&dev->conn);
	dev_free(dev);
}

/* ---------------------------------------------------------------- handover to another process */

/*
 * The blob vhd_vu_dev_export() writes and vhd_vu_dev_import() reads, ours alone (both ends are vhostd, so it is
 * not in src/spec): a header, then nrec records, each the vhost-user request that would set the state it carries:
 * a vu_rec, its fd indices (uint32, into the fds sent alongside, padded to 8 bytes), then its payload (padded to
 * 8 bytes). Replaying requests rather than copying fields has the importer check every value with the handlers'
 * own checks. VU_BLOB_VERSION changes whenever this layout, or what a record means, does.
 */
#define VU_BLOB_MAGIC 0x3158455544484856ull /* "VHHDUEX1" */
#define VU_BLOB_VERSION 1u
enum { VU_CONN_NONE, VU_CONN_PEER, VU_CONN_LISTEN }; /* what fds[0] is */

struct vu_blob_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t nrec;
	uint64_t len; /* the whole blob */
	uint32_t nfds;
	uint32_t conn; /* VU_CONN_* */
};
_Static_assert(sizeof(struct vu_blob_hdr) == 32, "blob header layout");

struct vu_rec {
	uint32_t request;
	uint32_t size; /* payload bytes, at most sizeof(union vhost_user_payload) */
	uint32_t nfds; /* at most VHOST_USER_MAX_FDS */
	uint32_t reserved;
};
_Static_assert(sizeof(struct vu_rec) == 16, "blob record layout");

#define VU_PAD8(n) (((size_t)(n) + 7u) & ~(size_t)7u)

struct vu_out {
	uint8_t *buf;
	size_t cap, len;
	int *fds;
	unsigned nfds;
	uint32_t nrec;
	int rc;
};

/* fd's index in the export's fd array, added once however many records name it. */
static int out_fd(struct vu_out *o, int fd)
{
	for (unsigned i = 0; i < o->nfds; i++)
		if (o->fds[i] == fd)
			return (int)i;
	if (o->nfds == VHD_VU_EXPORT_MAX_FDS) {
		o->rc = -E2BIG;
		return -1;
	}
	o->fds[o->nfds] = fd;
	return (int)o->nfds++;
}

static void out_rec(struct vu_out *o, uint32_t req, const void *payload, uint32_t size, const int *fds,
		    unsigned nfds)
{
	uint32_t idx[VHOST_USER_MAX_FDS] = {0};
	for (unsigned i = 0; i < nfds; i++) {
		int k = out_fd(o, fds[i]);
		if (k < 0)
			return;
		idx[i] = (uint32_t)k;
	}
	size_t need = sizeof(struct vu_rec) + VU_PAD8(nfds * 4) + VU_PAD8(size);
	if (o->rc || need > o->cap - o->len) {
		o->rc = o->rc ? o->rc : -E2BIG;
		return;
	}
	struct vu_rec r = {req, size, nfds, 0};
	uint8_t *p = o->buf + o->len;
	memset(p, 0, need);
	memcpy(p, &r, sizeof(r));
	memcpy(p + sizeof(r), idx, nfds * 4);
	if (size)
		memcpy(p + sizeof(r) + VU_PAD8(nfds * 4), payload, size);
	o->len += need;
	o->nrec++;
}

static void out_u64(struct vu_out *o, uint32_t req, uint64_t v, int fd)
{
	out_rec(o, req, &v, sizeof(v), &fd, fd >= 0);
}

static void out_state(struct vu_out *o, uint32_t req, unsigned qi, uint32_t num)
{
	struct vhost_vring_state st = {qi, num};
	out_rec(o, req, &st, sizeof(st), NULL, 0);
}

/* The memory table: one ADD_MEM_REG per mapping (so REM_MEM_REG later finds as many references), or one
 * SET_MEM_TABLE when the front-end did not negotiate memory slots (and so set at most 8 regions). */
static void out_mem(struct vhd_vu_dev *dev, struct vu_out *o)
{
	bool slots = dev->proto & VHD_BIT(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS);
	struct vhost_user_memory t = {0};
	int fds[VHOST_MEMORY_BASELINE_NREGIONS];
	for (unsigned i = 0; i < vhd_mem_count(dev->mem) && !o->rc; i++) {
		struct vhd_mem_region_info ri;
		int fd;
		uint64_t off;
		unsigned refs;
		if (vhd_mem_region_file(dev->mem, i, &ri, &fd, &off, &refs) < 0) {
			o->rc = -EBADF;
			return;
		}
		struct vhost_user_memory_region r = {ri.guest_addr, ri.size, ri.user_addr, off};
		if (slots) {
			struct vhost_user_mem_reg mr = {0, r};
			for (unsigned k = 0; k < refs && !o->rc; k++)
				out_rec(o, VHOST_USER_ADD_MEM_REG, &mr, sizeof(mr), &fd, 1);
		} else if (t.nregions == VHOST_MEMORY_BASELINE_NREGIONS) {
			o->rc = -E2BIG;
		} else {
			fds[t.nregions] = fd;
			t.regions[t.nregions++] = r;
		}
	}
	if (!slots && t.nregions)
		out_rec(o, VHOST_USER_SET_MEM_TABLE, &t, 8 + t.nregions * (uint32_t)sizeof(t.regions[0]), fds,
			t.nregions);
}

static void out_queue(struct vhd_vu_dev *dev, struct vu_out *o, unsigned qi)
{
	struct vu_queue *q = &dev->q[qi];
	bool packed = dev->features & VHD_BIT(VIRTIO_F_RING_PACKED);
	/* Paused between bursts: every chain taken was used, so the positions are where the next burst starts. */
	uint32_t base = q->vq ? vhd_vq_base(q->vq) : q->base;
	uint32_t used = q->vq ? vhd_vq_used_base(q->vq) : q->used_base;
	if (q->num)
		out_state(o, VHOST_USER_SET_VRING_NUM, qi, q->num);
	if (q->addr_set) {
		struct vhost_vring_addr a = {qi, q->log_ring ? VHD_BIT(VHOST_VRING_F_LOG) : 0, q->desc_ua, q->used_ua,
					     q->avail_ua, q->log_guest_addr};
		out_rec(o, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
	}
	if (q->num || q->addr_set || base)
		out_state(o, VHOST_USER_SET_VRING_BASE, qi, packed ? base | used << 16 : base);
	if (q->call_fd >= 0)
		out_u64(o, VHOST_USER_SET_VRING_CALL, qi, q->call_fd);
	if (q->err_fd >= 0)
		out_u64(o, VHOST_USER_SET_VRING_ERR, qi, q->err_fd);
	if (q->kick_set)
		out_u64(o, VHOST_USER_SET_VRING_KICK, qi | (q->kick_fd < 0 ? VHOST_USER_VRING_NOFD : 0), q->kick_fd);
	if (q->enabled && (dev->features & VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES)))
		out_state(o, VHOST_USER_SET_VRING_ENABLE, qi, 1);
}

int vhd_vu_dev_export(struct vhd_vu_dev *dev, void *buf, size_t cap, size_t *len, int *fds, unsigned *nfds)
{
	if (dev_iommu(dev))
		return -EOPNOTSUPP;
	struct vhu_io *io = &dev->conn.io;
	if ((io->fd >= 0 && (io->in_got || vhu_io_out_pending(io))) ||
	    (dev->breq.fd >= 0 && vhu_io_out_pending(&dev->breq)))
		return -EBUSY;
	struct vu_out o = {.buf = buf, .cap = cap, .fds = fds, .len = sizeof(struct vu_blob_hdr)};
	if (cap < o.len)
		return -E2BIG;
	uint32_t conn = io->fd >= 0 ? VU_CONN_PEER : dev->conn.listen_fd >= 0 ? VU_CONN_LISTEN : VU_CONN_NONE;
	if (conn != VU_CONN_NONE)
		out_fd(&o, conn == VU_CONN_PEER ? io->fd : dev->conn.listen_fd);
	for (unsigned i = 0; i < dev->nq; i++)
		dev->held[i] = queue_pause(&dev->q[i]);
	if (conn == VU_CONN_PEER) {
		if (dev->owner)
			out_rec(&o, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0);
		if (dev->proto)
			out_u64(&o, VHOST_USER_SET_PROTOCOL_FEATURES, dev->proto, -1);
		if (dev->features)
			out_u64(&o, VHOST_USER_SET_FEATURES, dev->features, -1);
		if (dev->mtu != dev->cfg.mtu)
			out_u64(&o, VHOST_USER_NET_SET_MTU, dev->mtu, -1);
		if (dev->breq.fd >= 0)
			out_rec(&o, VHOST_USER_SET_BACKEND_REQ_FD, NULL, 0, &dev->breq.fd, 1);
		if (dev->mem)
			out_mem(dev, &o);
		if (dev->log)
			out_rec(&o, VHOST_USER_SET_LOG_BASE, &dev->log_msg, sizeof(dev->log_msg), &dev->log_fd, 1);
		if (dev->infl_map)
			out_rec(&o, VHOST_USER_SET_INFLIGHT_FD, &dev->infl_msg, sizeof(dev->infl_msg), &dev->infl_fd, 1);
		for (unsigned i = 0; i < dev->nq; i++)
			out_queue(dev, &o, i);
		if (dev->status)
			out_u64(&o, VHOST_USER_SET_STATUS, dev->status, -1);
	}
	if (o.rc) {
		vhd_vu_dev_resume(dev);
		return o.rc;
	}
	struct vu_blob_hdr h = {VU_BLOB_MAGIC, VU_BLOB_VERSION, o.nrec, o.len, o.nfds, conn};
	memcpy(buf, &h, sizeof(h));
	*len = o.len;
	*nfds = o.nfds;
	vhd_log(VHD_LOG_DEBUG, "%s: exported: %u records, %zu bytes, %u fds", dev->name, o.nrec, o.len, o.nfds);
	return 0;
}

void vhd_vu_dev_resume(struct vhd_vu_dev *dev)
{
	for (unsigned i = 0; i < dev->nq; i++) {
		if (dev->held[i] && dev->q[i].vq)
			queue_resume(&dev->q[i]);
		dev->held[i] = false;
	}
}

/* Free dev in this process only: nothing to the front-end, the socket file left in place. */
static void dev_forget(struct vhd_vu_dev *dev)
{
	dev->replay = true; /* whatever a reset would say goes nowhere */
	device_reset(dev, false);
	vhu_io_close(&dev->breq);
	vhu_conn_drop(&dev->conn);
	dev_free(dev);
}

void vhd_vu_dev_release(struct vhd_vu_dev *dev)
{
	if (dev)
		dev_forget(dev);
}

/* The requests an export writes, and so the only ones an import replays. */
static bool replayable(uint32_t req)
{
	switch (req) {
	case VHOST_USER_SET_OWNER:
	case VHOST_USER_SET_PROTOCOL_FEATURES:
	case VHOST_USER_SET_FEATURES:
	case VHOST_USER_NET_SET_MTU:
	case VHOST_USER_SET_BACKEND_REQ_FD:
	case VHOST_USER_ADD_MEM_REG:
	case VHOST_USER_SET_MEM_TABLE:
	case VHOST_USER_SET_LOG_BASE:
	case VHOST_USER_SET_INFLIGHT_FD:
	case VHOST_USER_SET_VRING_NUM:
	case VHOST_USER_SET_VRING_ADDR:
	case VHOST_USER_SET_VRING_BASE:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_ENABLE:
	case VHOST_USER_SET_STATUS:
		return true;
	default:
		return false;
	}
}

/* Replay the blob's records on dev (connection adopted already). 0, or -errno with err saying which and why. */
static int replay(struct vhd_vu_dev *dev, const uint8_t *b, size_t len, const struct vu_blob_hdr *h, const int *fds,
		  unsigned nfds, char *err, size_t errlen)
{
	size_t off = sizeof(*h);
	for (uint32_t k = 0; k < h->nrec; k++) {
		struct vu_rec r;
		if (len - off < sizeof(r)) {
			snprintf(err, errlen, "record %u of %u: truncated", k, h->nrec);
			return -EINVAL;
		}
		memcpy(&r, b + off, sizeof(r));
		off += sizeof(r);
		const char *name = vhu_req_info(r.request)->name;
		if (!replayable(r.request)) {
			snprintf(err, errlen, "record %u: request %u (%s) is not one an export writes", k, r.request, name);
			return -EINVAL;
		}
		if (r.nfds > VHOST_USER_MAX_FDS || r.size > sizeof(union vhost_user_payload) ||
		    VU_PAD8(r.nfds * 4) + VU_PAD8(r.size) > len - off) {
			snprintf(err, errlen, "record %u (%s): %u payload bytes and %u fds overflow the blob", k, name,
				 r.size, r.nfds);
			return -EINVAL;
		}
		struct vhu_msg m;
		memset(&m, 0, sizeof(m));
		m.hdr = (struct vhost_user_header){r.request, VHOST_USER_VERSION, r.size};
		int rc = 0;
		for (unsigned i = 0; i < r.nfds && rc == 0; i++) {
			uint32_t ix;
			memcpy(&ix, b + off + 4 * i, 4);
			if (ix >= nfds || fds[ix] < 0) {
				snprintf(err, errlen, "record %u (%s): fd %u missing (%u received)", k, name, ix, nfds);
				rc = -EBADF;
			} else if ((m.fds[i] = fcntl(fds[ix], F_DUPFD_CLOEXEC, 0)) < 0) {
				rc = -errno;
				snprintf(err, errlen, "record %u (%s): %s", k, name, strerror(-rc));
			} else {
				m.nfds++;
			}
		}
		off += VU_PAD8(r.nfds * 4);
		memcpy(&m.p, b + off, r.size);
		off += VU_PAD8(r.size);
		if (rc == 0) {
			rc = handle(dev, &m);
			if (rc < 0)
				snprintf(err, errlen, "record %u (%s) refused: %s", k, name,
					 rc == VU_FATAL ? "fatal" : strerror(-rc));
		}
		vhu_msg_close_fds(&m);
		if (rc < 0)
			return rc == VU_FATAL ? -EIO : rc;
	}
	if (off != len) {
		snprintf(err, errlen, "%zu bytes after the last record", len - off);
		return -EINVAL;
	}
	return 0;
}

int vhd_vu_dev_import(const struct vhd_vu_config *cfg, const void *buf, size_t len, int *fds, unsigned nfds,
		      struct vhd_vu_dev **out, char *err, size_t errlen)
{
	struct vu_blob_hdr h = {0};
	struct vhd_vu_dev *dev = NULL;
	int rc = 0;
	err[0] = '\0';
	if (len < sizeof(h)) {
		snprintf(err, errlen, "%zu bytes: shorter than the %zu-byte header", len, sizeof(h));
		rc = -EINVAL;
	} else {
		memcpy(&h, buf, sizeof(h));
		if (h.magic != VU_BLOB_MAGIC) {
			snprintf(err, errlen, "not a vhost-user device export (magic 0x%llx)", (unsigned long long)h.magic);
			rc = -EPROTO;
		} else if (h.version != VU_BLOB_VERSION) {
			snprintf(err, errlen, "export version %u; this build reads version %u", h.version, VU_BLOB_VERSION);
			rc = -EPROTONOSUPPORT;
		} else if (h.len != len) {
			snprintf(err, errlen, "the header says %llu bytes, %zu came", (unsigned long long)h.len, len);
			rc = -EINVAL;
		} else if (h.nfds != nfds || nfds > VHD_VU_EXPORT_MAX_FDS) {
			snprintf(err, errlen, "the header names %u fds, %u came", h.nfds, nfds);
			rc = -EBADF;
		} else if (h.conn > VU_CONN_LISTEN || (h.conn != VU_CONN_NONE && nfds == 0)) {
			snprintf(err, errlen, "connection kind %u without its fd", h.conn);
			rc = -EINVAL;
		}
	}
	if (rc == 0 && (rc = dev_alloc(cfg, &dev)) < 0)
		snprintf(err, errlen, "cannot create the device: %s", strerror(-rc));
	if (rc == 0) {
		int cfd = h.conn == VU_CONN_PEER ? fds[0] : -1, lfd = h.conn == VU_CONN_LISTEN ? fds[0] : -1;
		if (h.conn != VU_CONN_NONE)
			fds[0] = -1; /* taken, whatever happens */
		rc = vhu_conn_adopt(&dev->conn, cfg->path, cfg->client, cfg->reconnect_min_ms, cfg->reconnect_max_ms,
				    lfd, cfd);
		if (rc < 0)
			snprintf(err, errlen, "fd 0 is not the %s unix stream socket the export says",
				 cfd >= 0 ? "connected" : "listening");
		dev->cfg.path = dev->conn.path;
	}
	if (rc == 0) {
		if (dev->conn.io.fd >= 0)
			emit(dev, VHD_VU_CONNECTED, 0);
		dev->replay = true;
		rc = replay(dev, buf, len, &h, fds, nfds, err, errlen);
		dev->replay = false;
	}
	for (unsigned i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (rc < 0) {
		if (dev)
			dev_forget(dev);
		return rc;
	}
	for (unsigned i = 0; i < dev->nq; i++)
		dev->held[i] = queue_pause(&dev->q[i]);
	vhd_log(VHD_LOG_INFO, "%s: taken over (%s, %u records)", dev->name,
		h.conn == VU_CONN_PEER ? "front-end connected" : h.conn == VU_CONN_LISTEN ? "listening" : "connecting",
		h.nrec);
	*out = dev;
	return 0;
}

unsigned vhd_vu_dev_pollfds(struct vhd_vu_dev *dev, struct pollfd *fds, unsigned max)
{
	unsigned n = vhu_conn_pollfds(&dev->conn, fds, max);
	if (n < max && dev->wake_fd >= 0)
		fds[n++] = (struct pollfd){.fd = dev->wake_fd, .events = POLLIN};
	if (n < max && dev->breq.fd >= 0 && vhu_io_out_pending(&dev->breq))
		fds[n++] = (struct pollfd){.fd = dev->breq.fd, .events = POLLOUT};
	return n;
}

bool vhd_vu_dev_iotlb_waiting(const struct vhd_vu_dev *dev)
{
	if (!dev->iotlb)
		return false;
	for (unsigned i = 0; i < dev->nq; i++) {
		const struct vu_queue *q = &dev->q[i];
		/* Relaxed: only whether to look at the fds this round; the flag's data is taken with acquire in
		 * iotlb_work(). */
		if (q->rings_wait || atomic_load_explicit(&q->miss_wait, memory_order_relaxed))
			return true;
	}
	return false;
}

static int min_timeout(int a, int b)
{
	return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

int vhd_vu_dev_timeout_ms(struct vhd_vu_dev *dev)
{
	if (dev->conn.io.fd < 0)
		return vhu_conn_timeout_ms(&dev->conn);
	int t = vhu_io_timeout_ms(&dev->conn.io, dev->msg_timeout_ms);
	if (dev->breq.fd >= 0)
		t = min_timeout(t, vhu_io_timeout_ms(&dev->breq, dev->msg_timeout_ms));
	for (unsigned i = 0; i < dev->nmiss; i++) {
		long long left = VU_MISS_RETRY_MS - vhu_ms_since(&dev->miss[i].sent);
		t = min_timeout(t, left < 0 ? 0 : (int)left);
	}
	return t;
}

/* The rings' IOVA ranges of the queues translating through the IOTLB, sorted, into keep[]; returns how many. */
struct iova_range {
	uint64_t a, b;
};

static unsigned ring_ranges(const struct vhd_vu_dev *dev, struct iova_range *keep)
{
	unsigned n = 0;
	bool packed = dev->features & VHD_BIT(VIRTIO_F_RING_PACKED);
	for (unsigned i = 0; i < dev->nq; i++) {
		const struct vu_queue *q = &dev->q[i];
		if (!q->vq || !q->iotlb_on)
			continue;
		struct ring_area ra[3];
		ring_areas(q, packed, q->desc_ua, q->avail_ua, q->used_ua, ra);
		for (unsigned k = 0; k < 3; k++) {
			struct iova_range r = {ra[k].ua, ra[k].ua + ra[k].size}; /* checked not to wrap at start */
			unsigned j = n++;
			while (j > 0 && keep[j - 1].a > r.a) { /* insertion sort: at most 3 x 32 ranges */
				keep[j] = keep[j - 1];
				j--;
			}
			keep[j] = r;
		}
	}
	return n;
}

/*
 * iotlb_per_burst: a queue used buffer translations in its last burst. Every translation but the rings' is
 * dropped (all queues paused, the gaps between ring ranges invalidated), so the next burst asks QEMU afresh for
 * each buffer: QEMU 7.2 does not report the unmaps of a guest in lazy invalidation, and an IOVA it reuses would
 * otherwise still point at the old page here. Then every queue goes on (queues_iotlb_changed()).
 */
static void iotlb_forget_buffers(struct vhd_vu_dev *dev)
{
	bool paused[VU_MAX_QUEUES];
	for (unsigned i = 0; i < dev->nq; i++)
		paused[i] = queue_pause(&dev->q[i]);
	struct iova_range keep[3 * VU_MAX_QUEUES];
	unsigned n = ring_ranges(dev, keep);
	uint64_t at = 0;
	for (unsigned k = 0; k < n; k++) {
		if (keep[k].a > at)
			vhd_iotlb_invalidate(dev->iotlb, at, keep[k].a - at);
		if (keep[k].b > at)
			at = keep[k].b;
	}
	if (at < UINT64_MAX)
		vhd_iotlb_invalidate(dev->iotlb, at, UINT64_MAX - at);
	queues_iotlb_changed(dev, paused);
}

/*
 * The control thread's side of IOTLB misses: take what the data path reported (wake_fd, miss_wait) and ask for
 * it; flush the back-end channel; and when a MISS has gone unanswered for VU_MISS_RETRY_MS, forget it and let
 * every waiting queue try again (asking again if it still misses): a front-end that never answers costs a
 * request per page every VU_MISS_RETRY_MS, never a wait here.
 */
static void iotlb_work(struct vhd_vu_dev *dev)
{
	uint64_t v;
	if (dev->wake_fd >= 0 && read(dev->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		vu_err(dev, "%s: wake eventfd: %s", dev->name, strerror(errno));
	if (!dev->iotlb)
		return;
	bool forget = false;
	for (unsigned i = 0; i < dev->nq; i++) {
		struct vu_queue *q = &dev->q[i];
		/* Acquire pairs with the release store of miss_wait in vhd_vu_queue_release(): iova and perm, stored
		 * before it, are the ones that go with it. */
		int w = atomic_load_explicit(&q->miss_wait, memory_order_acquire);
		forget = forget || (w & VU_WAIT_FORGET);
		if (q->miss_taken || !(w & VU_WAIT_MISS))
			continue;
		q->miss_taken = true;
		unsigned n = atomic_load_explicit(&q->miss_n, memory_order_relaxed);
		for (unsigned k = 0; k < n && k < VU_MISS_AHEAD; k++)
			request_miss(dev, atomic_load_explicit(&q->miss_iova[k], memory_order_relaxed),
				     atomic_load_explicit(&q->miss_perm[k], memory_order_relaxed));
	}
	if (forget)
		iotlb_forget_buffers(dev);
	bool retry = false;
	for (unsigned i = 0; i < dev->nmiss; i++)
		if (vhu_ms_since(&dev->miss[i].sent) >= VU_MISS_RETRY_MS) {
			vhd_log(VHD_LOG_DEBUG, "%s: IOTLB MISS for IOVA page 0x%llx unanswered after %d ms: trying again",
				dev->name, (unsigned long long)dev->miss[i].page, VU_MISS_RETRY_MS);
			retry = true;
		}
	if (retry) {
		dev->nmiss = 0;
		bool rings = false;
		for (unsigned i = 0; i < dev->nq; i++) {
			struct vu_queue *q = &dev->q[i];
			q->miss_taken = false;
			/* Relaxed: only lets the data path try the pop again; it reports a new miss with release. A
			 * forget still pending stays. */
			atomic_fetch_and_explicit(&q->miss_wait, ~VU_WAIT_MISS, memory_order_relaxed);
			rings = rings || q->rings_wait;
		}
		/* Queues waiting for their rings are not running: nothing to pause. */
		bool paused[VU_MAX_QUEUES] = {false};
		if (rings)
			queues_iotlb_changed(dev, paused);
	}
	if (dev->breq.fd < 0)
		return;
	int rc = vhu_io_flush(&dev->breq);
	char why[192];
	if (rc < 0 && rc != -EAGAIN) {
		vu_err(dev, "%s: back-end channel: %s: closing it", dev->name, strerror(-rc));
		vhu_io_close(&dev->breq);
	} else if (vhu_io_expired(&dev->breq, dev->msg_timeout_ms, why, sizeof(why))) {
		vu_err(dev, "%s: back-end channel: the front-end %s: closing it", dev->name, why);
		vhu_io_close(&dev->breq);
	}
}

int vhd_vu_dev_dispatch(struct vhd_vu_dev *dev)
{
	struct vhu_io *io = &dev->conn.io;
	if (io->fd < 0) {
		if (!vhu_conn_poll(&dev->conn))
			return 0;
		set_conn(dev);
	}
	iotlb_work(dev);
	uint64_t gpa;
	if (dev->mem && vhd_mem_faulted(dev->mem, &gpa)) {
		vu_err(dev, "%s: the front-end shrank the file behind guest memory at 0x%llx after handing it over "
		       "(SIGBUS absorbed, the region now reads zeros): closing", dev->name, (unsigned long long)gpa);
		disconnect(dev, EFAULT);
		return -EFAULT;
	}
	if (dev->log && vhd_dlog_faulted(dev->log)) {
		vu_err(dev, "%s: the front-end shrank the dirty log's file after handing it over (SIGBUS absorbed, "
		       "the log now goes nowhere): closing", dev->name);
		disconnect(dev, EFAULT);
		return -EFAULT;
	}
	int rc = vhu_io_flush(io);
	if (rc < 0 && rc != -EAGAIN) {
		disconnect(dev, rc);
		return rc;
	}
	/* Requests are read only while every reply so far is out: a front-end that does not read is not
	 * buffered for, it meets the deadline below. */
	for (unsigned n = 0; n < VU_DISPATCH_BUDGET && !vhu_io_out_pending(io); n++) {
		struct vhu_msg m;
		rc = vhu_io_recv(io, &m);
		if (rc == -EAGAIN)
			break;
		if (rc == -EBADMSG) {
			vu_err(dev, "%s: %s with more than %d fds refused", dev->name, vhu_req_info(m.hdr.request)->name,
			       VHOST_USER_MAX_FDS);
			continue;
		}
		if (rc < 0) {
			if (rc == -EPROTO)
				vu_err(dev, "%s: malformed message header (request %u, flags 0x%x, size %u): closing",
				       dev->name, m.hdr.request, m.hdr.flags, m.hdr.size);
			disconnect(dev, rc);
			return rc;
		}
		rc = handle(dev, &m);
		vhu_msg_close_fds(&m);
		if (rc == VU_FATAL) {
			disconnect(dev, EPIPE);
			return -EPIPE;
		}
	}
	char why[192];
	if (vhu_io_expired(io, dev->msg_timeout_ms, why, sizeof(why))) {
		vu_err(dev, "%s: the front-end %s: closing", dev->name, why);
		disconnect(dev, ETIMEDOUT);
		return -ETIMEDOUT;
	}
	return 0;
}

bool vhd_vu_dev_take_rarp(struct vhd_vu_dev *dev, uint8_t mac[6])
{
	if (!dev->rarp_pending)
		return false;
	memcpy(mac, dev->rarp_mac, 6);
	dev->rarp_pending = false;
	return true;
}

unsigned vhd_vu_build_rarp(const uint8_t mac[6], uint8_t *frame)
{
	/* RFC 903 request: Ethernet broadcast, EtherType 0x8035, hardware Ethernet, protocol IPv4, opcode 3
	 * (request reverse), sender and target hardware address both the guest's, addresses 0, padded to 60. */
	static const uint8_t head[] = {0x80, 0x35, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x03};
	memset(frame, 0, 60);
	memset(frame, 0xff, 6);
	memcpy(frame + 6, mac, 6);
	memcpy(frame + 12, head, sizeof(head));
	memcpy(frame + 22, mac, 6);
	memcpy(frame + 32, mac, 6);
	return 60;
}

bool vhd_vu_dev_connected(const struct vhd_vu_dev *dev)
{
	return dev->conn.io.fd >= 0;
}

uint64_t vhd_vu_dev_features(const struct vhd_vu_dev *dev)
{
	return dev->features;
}

unsigned vhd_vu_dev_num_queues(const struct vhd_vu_dev *dev)
{
	return dev->nq;
}

struct vhd_vq *vhd_vu_queue_acquire(struct vhd_vu_dev *dev, unsigned qidx)
{
	if (qidx >= dev->nq)
		return NULL;
	struct vu_queue *q = &dev->q[qidx];
	/* seq_cst store then load: pairs with queue_pause() (see there). */
	atomic_store(&q->busy, 1);
	/* miss_wait relaxed: a stale 0 costs one more pop that misses again, a stale 1 one idle round. */
	if (!atomic_load(&q->ready) || atomic_load_explicit(&q->miss_wait, memory_order_relaxed)) {
		atomic_store_explicit(&q->busy, 0, memory_order_release);
		return NULL;
	}
	return q->vq;
}

int vhd_vu_queue_kick_fd(struct vhd_vu_dev *dev, unsigned qidx)
{
	/* Stable here: the control thread changes it only with the queue paused (queue_stop()), which waits for
	 * the burst holding the queue (busy) to release it. */
	return qidx < dev->nq ? dev->q[qidx].kick_fd : -1;
}

/* The burst's pops met an IOTLB miss: mark the queue waiting and wake the control thread to ask for it (one
 * eventfd write per wait, not per poll: acquire says no until the control thread lets the queue try again). */
static __attribute__((noinline, cold)) void queue_note_miss(struct vhd_vu_dev *dev, struct vu_queue *q)
{
	if (dev->cfg.iotlb_per_burst) {
		uint64_t c = vhd_vq_chains_popped(q->vq);
		if (c != q->chains_seen) {
			q->chains_seen = c;
			/* Release pairs with the acquire load in iotlb_work(). */
			atomic_fetch_or_explicit(&q->miss_wait, VU_WAIT_FORGET, memory_order_release);
			uint64_t one = 1;
			if (write(dev->wake_fd, &one, sizeof(one)) < 0) {
				/* as below */
			}
		}
	}
	struct vhd_vq_miss m[VU_MISS_AHEAD];
	unsigned n = vhd_vq_take_misses(q->vq, m, VU_MISS_AHEAD);
	if (!n || (atomic_load_explicit(&q->miss_wait, memory_order_relaxed) & VU_WAIT_MISS))
		return;
	for (unsigned i = 0; i < n; i++) {
		atomic_store_explicit(&q->miss_iova[i], m[i].iova, memory_order_relaxed);
		atomic_store_explicit(&q->miss_perm[i], m[i].perm, memory_order_relaxed);
	}
	atomic_store_explicit(&q->miss_n, n, memory_order_relaxed);
	/* Release pairs with the acquire load in iotlb_work(): the IOVAs are visible with the flag. */
	atomic_fetch_or_explicit(&q->miss_wait, VU_WAIT_MISS, memory_order_release);
	atomic_fetch_add_explicit(&q->iotlb_waits, 1, memory_order_relaxed);
	uint64_t one = 1;
	if (write(dev->wake_fd, &one, sizeof(one)) < 0) {
		/* Non-blocking eventfd: only a full counter fails, and then a wake-up is pending anyway. */
	}
}

void vhd_vu_queue_release(struct vhd_vu_dev *dev, unsigned qidx)
{
	struct vu_queue *q = &dev->q[qidx];
	if (__builtin_expect(q->iotlb_on, 0))
		queue_note_miss(dev, q);
	/* Release: the burst's ring accesses finish before queue_pause() sees busy == 0 and changes the queue. */
	atomic_store_explicit(&q->busy, 0, memory_order_release);
}

int vhd_vu_queue_notify(struct vhd_vu_dev *dev, unsigned qidx)
{
	struct vu_queue *q = &dev->q[qidx];
	int fd = q->call_fd;
	if (fd < 0)
		return 0;
	uint64_t one = 1;
	ssize_t n = write(fd, &one, sizeof(one)); /* non-blocking eventfd (h_set_vring_call) */
	if (n == (ssize_t)sizeof(one))
		return 0;
	int err = n < 0 ? errno : EIO;
	atomic_fetch_add_explicit(&q->notify_failed, 1, memory_order_relaxed);
	if (!atomic_exchange_explicit(&q->notify_warned, 1, memory_order_relaxed))
		vhd_log(VHD_LOG_WARN, "%s: queue %u: interrupt not delivered, call fd write failed: %s (counted; "
			"logged once per call fd)", dev->name, qidx, strerror(err));
	return -err;
}

void vhd_vu_dev_stats(const struct vhd_vu_dev *dev, struct vhd_vu_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < dev->nq; i++) {
		out->notify_failures += atomic_load_explicit(&dev->q[i].notify_failed, memory_order_relaxed);
		out->iotlb_waits += atomic_load_explicit(&dev->q[i].iotlb_waits, memory_order_relaxed);
	}
	out->iotlb_misses = atomic_load_explicit(&dev->misses_sent, memory_order_relaxed);
	if (dev->iotlb) {
		struct vhd_iotlb_stats st;
		vhd_iotlb_stats(dev->iotlb, &st);
		out->iotlb_updates = st.updates;
		out->iotlb_invalidations = st.invalidations;
		out->iotlb_refused = st.refused;
	}
}
