/* SPDX-License-Identifier: MIT */
/*
 * VDUSE transport for the virtio-net device (vhostd/vduse.h): the kernel device, its request thread, the IOVA
 * mappings and the queue windows the data path enters.
 *
 * Memory: VDUSE hands out IOVA ranges as (file, offset) pairs. Each range we map becomes a region of a
 * vhd_mem table keyed by its IOVA (guest and user address both the IOVA), and an entry of a vhd_iotlb cache
 * with the kernel's permission; queues translate descriptors through the cache (vhd_vq_config.iotlb), so a
 * descriptor naming an IOVA we have not mapped stops the pop, and the request thread maps it.
 *
 * Every change to the queues, the table or the cache happens on the request thread with both windows closed
 * (no burst running), which is what vhostd/iotlb.h and vhostd/mem.h ask.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <limits.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>

#include "spec/endian.h"
#include "spec/vduse.h"
#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "spec/virtio_ring.h"
#include "vhostd/iotlb.h"
#include "vhostd/log.h"
#include "vhostd/mem.h"
#include "vhostd/net.h"
#include "vhostd/vduse.h"
#include "vhostd/virtq.h"

#define VD_NQ 2
#define VD_MAX_MAPS VHD_MEM_MAX_REGIONS
/* Requests handled per wake-up before looking at the other fds again: each is answered at once anyway. */
#define VD_REQ_BUDGET 64

/*
 * NAME.rings, mapped shared: where each queue stands, stored after every burst so that it outlives a killed
 * process (a page of tmpfs or disk cache, no syscall). A position is VD_POS_VALID | vhd_vq_used_base().
 */
#define VD_RINGS_MAGIC 0x76686476647573ULL /* "vhdvdus" */
#define VD_POS_VALID 0x10000u
struct vd_rings {
	uint64_t magic;
	_Atomic uint32_t pos[VD_NQ];
};

struct vd_map {
	uint64_t start, size; /* IOVA range; size 0: slot free */
};

struct vd_queue {
	/* The window (see vhostd/vhost_user.h): the data path sets busy then checks ready; the request thread
	 * clears ready then waits for busy to clear. Own cache line: the data path writes busy every burst. */
	_Alignas(64) atomic_int ready;
	atomic_int busy;
	atomic_int miss_wait; /* a pop missed: acquire says no until the request thread has mapped it */
	_Atomic uint64_t miss_iova;
	struct vhd_vq *vq;
	int kick_fd;
	uint16_t num;
	uint64_t desc, driver, device; /* ring IOVAs */
	bool packed;
	bool parked; /* request thread only: closed because its memory went; reopened when it is back */
	char name[80];
};

struct vhd_vduse_dev {
	struct vd_queue q[VD_NQ];
	char name[VHD_VDUSE_NAME_MAX + 1];
	int ctl_fd, dev_fd, stop_fd, wake_fd;
	bool created, attached, thread_started;
	pthread_t thread;
	uint64_t offered;
	uint8_t refuse_status; /* vhd_vduse_config's test knobs */
	bool refuse_iotlb;
	_Atomic uint64_t features;
	atomic_uchar status;
	atomic_bool ready;
	struct vhd_mem *mem;
	struct vhd_iotlb *iotlb;
	struct vd_map maps[VD_MAX_MAPS];
	/* Restart state (vhd_vduse_config.state_dir); empty paths: none. */
	char state_path[PATH_MAX], rings_path[PATH_MAX];
	struct vd_rings *rings;
	bool resumed; /* reopened a device a dead process left: queues start where it stood */
	pthread_mutex_t state_lock; /* state_save() runs on the request thread and the creating one */
	struct {
		_Atomic uint64_t requests, requests_failed, resets, maps, unmaps, misses, irq_failures, iotlb_updates,
			queues_parked;
	} st;
};

static void rings_reset(struct vhd_vduse_dev *dev);

static void stat_inc(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

uint64_t vhd_vduse_default_features(void)
{
	return vhd_net_device_features() | VHD_BIT(VIRTIO_F_VERSION_1) | VHD_BIT(VIRTIO_F_ACCESS_PLATFORM) |
	       VHD_BIT(VIRTIO_F_RING_PACKED) | VHD_BIT(VIRTIO_F_INDIRECT_DESC) | VHD_BIT(VIRTIO_F_EVENT_IDX);
}

/* ------------------------------------------------------------------------------------------------------ */
/* Windows                                                                                                */

struct vhd_vq *vhd_vduse_queue_acquire(struct vhd_vduse_dev *dev, unsigned qidx)
{
	if (qidx >= VD_NQ)
		return NULL;
	struct vd_queue *q = &dev->q[qidx];
	/* seq_cst store of busy then load of ready: pairs with close_window()'s store of ready then load of busy
	 * (store-buffering: with both seq_cst, at least one side sees the other's store). */
	atomic_store(&q->busy, 1);
	/* miss_wait relaxed: a stale 0 costs one pop that misses again, a stale 1 one idle round. */
	if (!atomic_load(&q->ready) || atomic_load_explicit(&q->miss_wait, memory_order_relaxed)) {
		atomic_store_explicit(&q->busy, 0, memory_order_release);
		return NULL;
	}
	return q->vq;
}

void vhd_vduse_queue_release(struct vhd_vduse_dev *dev, unsigned qidx)
{
	struct vd_queue *q = &dev->q[qidx];
	struct vhd_vq_miss m;
	if (__builtin_expect(vhd_vq_take_misses(q->vq, &m, 1) > 0, 0)) {
		atomic_store_explicit(&q->miss_iova, m.iova, memory_order_relaxed);
		/* Release pairs with the request thread's acquire load of miss_wait: it then sees miss_iova. */
		atomic_store_explicit(&q->miss_wait, 1, memory_order_release);
		stat_inc(&dev->st.misses);
		uint64_t one = 1;
		if (write(dev->wake_fd, &one, sizeof(one)) < 0) {
			/* The counter is full: the request thread has a wake-up pending anyway. */
		}
	}
	/* Relaxed: read only by a later process, after this one is gone. */
	if (dev->rings)
		atomic_store_explicit(&dev->rings->pos[qidx], VD_POS_VALID | vhd_vq_used_base(q->vq),
				      memory_order_relaxed);
	/* Release: our ring and memory accesses happen before the request thread sees busy 0 and changes them. */
	atomic_store_explicit(&q->busy, 0, memory_order_release);
}

static void close_window(struct vd_queue *q)
{
	atomic_store(&q->ready, 0);
	/* A burst is bounded (vhostd/net.h): this waits for at most one, never for a peer. */
	while (atomic_load(&q->busy))
		sched_yield();
}

static void close_all(struct vhd_vduse_dev *dev, int was[VD_NQ])
{
	for (unsigned i = 0; i < VD_NQ; i++) {
		was[i] = atomic_load(&dev->q[i].ready);
		close_window(&dev->q[i]);
	}
}

static void open_all(struct vhd_vduse_dev *dev, const int was[VD_NQ])
{
	for (unsigned i = 0; i < VD_NQ; i++)
		if (was[i] && dev->q[i].vq)
			atomic_store(&dev->q[i].ready, 1);
}

int vhd_vduse_queue_notify(struct vhd_vduse_dev *dev, unsigned qidx)
{
	uint32_t idx = qidx;
	if (ioctl(dev->dev_fd, VDUSE_VQ_INJECT_IRQ, &idx) < 0) {
		int e = errno;
		if (atomic_fetch_add_explicit(&dev->st.irq_failures, 1, memory_order_relaxed) == 0)
			vhd_log(VHD_LOG_WARN, "%s: VDUSE_VQ_INJECT_IRQ on queue %u: %s", dev->name, qidx, strerror(e));
		return -e;
	}
	return 0;
}

int vhd_vduse_queue_kick_fd(const struct vhd_vduse_dev *dev, unsigned qidx)
{
	return qidx < VD_NQ ? dev->q[qidx].kick_fd : -1;
}

/* ------------------------------------------------------------------------------------------------------ */
/* IOVA mappings (request thread, windows closed)                                                          */

/* Map the kernel's IOVA region holding iova. @return 0, or -errno (logged; an IOVA the kernel has no map for
 * only when loud: a parked queue asks again at every UPDATE_IOTLB). */
static int map_iova(struct vhd_vduse_dev *dev, uint64_t iova, bool loud)
{
	struct vduse_iotlb_entry e = {.start = iova, .last = iova};
	int fd = ioctl(dev->dev_fd, VDUSE_IOTLB_GET_FD, &e);
	if (fd < 0) {
		int err = errno;
		if (loud)
			vhd_log(VHD_LOG_ERR, "%s: VDUSE_IOTLB_GET_FD for IOVA 0x%llx: %s", dev->name,
				(unsigned long long)iova, strerror(err));
		return -err;
	}
	/* The kernel's answer is checked like any peer's: the region must hold iova and have a sane size. */
	if (e.last < e.start || e.start > iova || e.last < iova || e.last - e.start >= (1ull << 40) ||
	    (e.perm & ~VDUSE_ACCESS_RW) || !e.perm) {
		vhd_log(VHD_LOG_ERR, "%s: VDUSE_IOTLB_GET_FD for IOVA 0x%llx returned [0x%llx, 0x%llx] perm %u", dev->name,
			(unsigned long long)iova, (unsigned long long)e.start, (unsigned long long)e.last, e.perm);
		close(fd);
		return -EPROTO;
	}
	uint64_t size = e.last - e.start + 1;
	unsigned slot = VD_MAX_MAPS;
	for (unsigned i = 0; i < VD_MAX_MAPS; i++)
		if (!dev->maps[i].size) {
			slot = i;
			break;
		}
	if (slot == VD_MAX_MAPS) {
		vhd_log(VHD_LOG_ERR, "%s: IOVA 0x%llx: all %u mapping slots in use", dev->name, (unsigned long long)iova,
			VD_MAX_MAPS);
		close(fd);
		return -ENOSPC;
	}
	int rc = vhd_mem_map_fd(dev->mem, fd, e.offset, e.start, size, e.start);
	if (rc < 0) {
		vhd_log(VHD_LOG_ERR, "%s: mapping IOVA [0x%llx, 0x%llx] at offset 0x%llx: %s", dev->name,
			(unsigned long long)e.start, (unsigned long long)e.last, (unsigned long long)e.offset,
			strerror(-rc));
		close(fd);
		return rc;
	}
	rc = vhd_iotlb_update(dev->iotlb, dev->mem, e.start, size, e.start, e.perm);
	if (rc < 0) {
		vhd_log(VHD_LOG_ERR, "%s: IOTLB update [0x%llx, 0x%llx]: %s", dev->name, (unsigned long long)e.start,
			(unsigned long long)e.last, vhd_iotlb_last_error(dev->iotlb));
		vhd_mem_remove(dev->mem, e.start, size);
		return rc;
	}
	dev->maps[slot] = (struct vd_map){e.start, size};
	stat_inc(&dev->st.maps);
	return 0;
}

/* Unmap every region overlapping [start, last]. */
static void unmap_range(struct vhd_vduse_dev *dev, uint64_t start, uint64_t last)
{
	for (unsigned i = 0; i < VD_MAX_MAPS; i++) {
		struct vd_map *m = &dev->maps[i];
		if (!m->size || m->start > last || m->start + m->size - 1 < start)
			continue;
		vhd_iotlb_invalidate(dev->iotlb, m->start, m->size);
		vhd_mem_remove(dev->mem, m->start, m->size);
		m->size = 0;
		stat_inc(&dev->st.unmaps);
	}
}

/* Host pointer for [iova, iova+len), mapping its region first if need be. */
static void *ring_ptr(struct vhd_vduse_dev *dev, uint64_t iova, uint64_t len, bool loud)
{
	void *p = vhd_iotlb_to_host(dev->iotlb, iova, len, VHD_IOTLB_RO);
	if (!p && map_iova(dev, iova, loud) == 0)
		p = vhd_iotlb_to_host(dev->iotlb, iova, len, VHD_IOTLB_RO);
	return p;
}

/* The rings' host addresses; a failure is logged when loud (not again for a parked queue). */
static int ring_ptrs(struct vhd_vduse_dev *dev, struct vd_queue *q, void **desc, void **drv, void **devp,
		     bool loud)
{
	uint64_t n = q->num;
	uint64_t dl = 16 * n;
	uint64_t al = q->packed ? 4 : 6 + 2 * n;
	uint64_t ul = q->packed ? 4 : 6 + 8 * n;
	*desc = ring_ptr(dev, q->desc, dl, loud);
	*drv = *desc ? ring_ptr(dev, q->driver, al, loud) : NULL;
	*devp = *drv ? ring_ptr(dev, q->device, ul, loud) : NULL;
	if (!*desc || !*drv || !*devp) {
		if (loud)
			vhd_log(VHD_LOG_ERR, "%s: queue rings at IOVA 0x%llx/0x%llx/0x%llx (size %u) are not mapped",
				q->name, (unsigned long long)q->desc, (unsigned long long)q->driver,
				(unsigned long long)q->device, q->num);
		return -EFAULT;
	}
	return 0;
}

/* Stop queue q until its memory is back (request thread, windows closed); counted and logged once per episode. */
static void park(struct vhd_vduse_dev *dev, struct vd_queue *q, const char *why)
{
	if (q->parked)
		return;
	q->parked = true;
	stat_inc(&dev->st.queues_parked);
	vhd_log(VHD_LOG_WARN, "%s: %s: queue parked until the driver maps it again", q->name, why);
}

/* ------------------------------------------------------------------------------------------------------ */
/* Queues (request thread)                                                                                 */

static void stop_queues(struct vhd_vduse_dev *dev)
{
	int was[VD_NQ];
	close_all(dev, was);
	for (unsigned i = 0; i < VD_NQ; i++) {
		vhd_vq_destroy(dev->q[i].vq);
		dev->q[i].vq = NULL;
		dev->q[i].parked = false;
		atomic_store(&dev->q[i].miss_wait, 0);
	}
	atomic_store(&dev->ready, false);
	rings_reset(dev);
	unmap_range(dev, 0, UINT64_MAX);
	vhd_iotlb_flush(dev->iotlb);
}

/*
 * Where queue i resumes after a restart. Our completions are in order and every burst pushes what it popped,
 * so the next chain to pop is the next used slot. Split: the used index in the ring says it exactly. Packed:
 * the position NAME.rings kept; a process killed between a push and its release stored it one burst late, so
 * move past the slots whose USED flag already says this lap (used by us, or made available again for the next
 * lap): the first slot without it is where we stood. That step is one descriptor per chain, which holds for
 * the chains Linux's virtio_net posts with INDIRECT_DESC (one descriptor each).
 */
static int resume_base(struct vhd_vduse_dev *dev, unsigned i, const void *desc, const void *avail,
		       const void *used, uint16_t *base)
{
	struct vd_queue *q = &dev->q[i];
	if (!q->packed) {
		uint16_t u = vhd_le16(__atomic_load_n((const uint16_t *)((const uint8_t *)used + 2), __ATOMIC_ACQUIRE));
		uint16_t a = vhd_le16(__atomic_load_n((const uint16_t *)((const uint8_t *)avail + 2), __ATOMIC_ACQUIRE));
		if ((uint16_t)(a - u) > q->num) {
			vhd_log(VHD_LOG_ERR, "%s: cannot resume: avail index %u is %u ahead of used index %u (size %u)",
				q->name, a, (uint16_t)(a - u), u, q->num);
			return -EPROTO;
		}
		*base = u;
		vhd_log(VHD_LOG_INFO, "%s: resuming at used index %u (%u chains posted meanwhile)", q->name, u,
			(uint16_t)(a - u));
		return 0;
	}
	uint32_t pos = dev->rings ? atomic_load_explicit(&dev->rings->pos[i], memory_order_relaxed) : 0;
	uint16_t idx = pos & 0x7fff;
	unsigned wrap = (pos >> 15) & 1, skipped = 0;
	if (!(pos & VD_POS_VALID) || idx >= q->num) {
		vhd_log(VHD_LOG_ERR, "%s: cannot resume the packed ring: saved position 0x%x (size %u)", q->name, pos,
			q->num);
		return -EPROTO;
	}
	for (; skipped < q->num; skipped++) {
		uint16_t flags;
		memcpy(&flags, (const uint8_t *)desc + (size_t)idx * 16 + 14, 2);
		if (!!(vhd_le16(flags) & VIRTQ_DESC_F_USED) != wrap)
			break;
		if (++idx == q->num) {
			idx = 0;
			wrap ^= 1;
		}
	}
	*base = (uint16_t)(idx | wrap << 15);
	vhd_log(VHD_LOG_INFO, "%s: resuming the packed ring at %u, wrap %u (%u slots past the saved position)",
		q->name, idx, wrap, skipped);
	return 0;
}

static int start_queue(struct vhd_vduse_dev *dev, unsigned i, uint64_t features)
{
	struct vd_queue *q = &dev->q[i];
	struct vduse_vq_info info = {.index = i};
	if (ioctl(dev->dev_fd, VDUSE_VQ_GET_INFO, &info) < 0) {
		int e = errno;
		vhd_log(VHD_LOG_ERR, "%s: VDUSE_VQ_GET_INFO: %s", q->name, strerror(e));
		return -e;
	}
	if (!info.ready)
		return 0; /* the driver does not use it */
	if (info.num == 0 || info.num > 32768) {
		vhd_log(VHD_LOG_ERR, "%s: queue size %u from the kernel", q->name, info.num);
		return -EINVAL;
	}
	q->num = (uint16_t)info.num;
	q->desc = info.desc_addr;
	q->driver = info.driver_addr;
	q->device = info.device_addr;
	q->packed = features & VHD_BIT(VIRTIO_F_RING_PACKED);
	void *d, *a, *u;
	int rc = ring_ptrs(dev, q, &d, &a, &u, true);
	if (rc < 0)
		return rc;
	uint16_t base = q->packed ? (uint16_t)((info.packed.last_avail_idx & 0x7fff) |
					       (info.packed.last_avail_counter ? 0x8000 : 0))
				  : info.split.avail_index;
	/* The kernel's state is what the driver set up (vdpa set_vq_state), not how far we got: resuming, the
	 * position comes from the ring or from NAME.rings. */
	if (dev->resumed && (rc = resume_base(dev, i, d, a, u, &base)) < 0)
		return rc;
	struct vhd_vq_config c = {
		.side = VHD_VQ_DEVICE,
		.num = q->num,
		.features = features,
		.desc = d,
		.driver = a,
		.device = u,
		.mem = dev->mem,
		.iotlb = dev->iotlb,
		.base = base,
		.name = q->name,
	};
	rc = vhd_vq_create(&c, &q->vq);
	if (rc < 0) {
		vhd_log(VHD_LOG_ERR, "%s: cannot create the queue (size %u): %s", q->name, q->num, strerror(-rc));
		return rc;
	}
	/* A queue no burst has released yet still has a position to resume from. */
	if (dev->rings)
		atomic_store_explicit(&dev->rings->pos[i], VD_POS_VALID | vhd_vq_used_base(q->vq), memory_order_relaxed);
	struct vduse_vq_eventfd ev = {.index = i, .fd = q->kick_fd};
	if (ioctl(dev->dev_fd, VDUSE_VQ_SETUP_KICKFD, &ev) < 0) {
		int e = errno;
		vhd_log(VHD_LOG_ERR, "%s: VDUSE_VQ_SETUP_KICKFD: %s", q->name, strerror(e));
		return -e;
	}
	return 0;
}

static int start_queues(struct vhd_vduse_dev *dev)
{
	uint64_t f = 0;
	if (ioctl(dev->dev_fd, VDUSE_DEV_GET_FEATURES, &f) < 0) {
		int e = errno;
		vhd_log(VHD_LOG_ERR, "%s: VDUSE_DEV_GET_FEATURES: %s", dev->name, strerror(e));
		return -e;
	}
	if (f & ~dev->offered) {
		vhd_log(VHD_LOG_ERR, "%s: the driver accepted features 0x%llx we never offered", dev->name,
			(unsigned long long)(f & ~dev->offered));
		return -EPROTO;
	}
	struct vhd_net_cfg nc;
	int rc = vhd_net_cfg_init(&nc, f);
	if (rc < 0) {
		vhd_log(VHD_LOG_ERR, "%s: features 0x%llx break a virtio-net dependency", dev->name, (unsigned long long)f);
		return rc;
	}
	atomic_store(&dev->features, f);
	for (unsigned i = 0; i < VD_NQ; i++) {
		rc = start_queue(dev, i, f);
		if (rc < 0)
			return rc;
	}
	for (unsigned i = 0; i < VD_NQ; i++)
		if (dev->q[i].vq)
			atomic_store(&dev->q[i].ready, 1);
	atomic_store(&dev->ready, dev->q[0].vq && dev->q[1].vq);
	vhd_log(VHD_LOG_INFO, "%s: started, features 0x%llx, %s rings of %u/%u", dev->name, (unsigned long long)f,
		(f & VHD_BIT(VIRTIO_F_RING_PACKED)) ? "packed" : "split", dev->q[0].num, dev->q[1].num);
	return 0;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Restart state (vhd_vduse_config.state_dir)                                                              */

/*
 * NAME.state: what a later process needs and cannot ask the kernel (VDUSE has no GET_STATUS; whether we
 * attached it), in text. Rewritten whole at each change, into NAME.state.tmp then renamed over it, so a process
 * killed meanwhile leaves the old file or the new one, never half of one. No fsync: it must outlive our process,
 * not the machine (the device does not survive a reboot either).
 */
static void state_save(struct vhd_vduse_dev *dev)
{
	if (!dev->state_path[0])
		return;
	pthread_mutex_lock(&dev->state_lock);
	char tmp[PATH_MAX + 8], buf[256];
	snprintf(tmp, sizeof(tmp), "%s.tmp", dev->state_path);
	int n = snprintf(buf, sizeof(buf), "vhostd-vduse-state 1\nname %s\noffered 0x%llx\nfeatures 0x%llx\n"
			 "status %u\nattached %d\n", dev->name, (unsigned long long)dev->offered,
			 (unsigned long long)atomic_load(&dev->features), atomic_load(&dev->status), dev->attached);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	bool ok = fd >= 0 && write(fd, buf, (size_t)n) == n;
	if (fd >= 0)
		close(fd);
	if (!ok || rename(tmp, dev->state_path) < 0) {
		vhd_log(VHD_LOG_ERR, "%s: writing %s: %s (a restart could not resume the device)", dev->name,
			dev->state_path, strerror(errno));
		unlink(tmp);
	}
	pthread_mutex_unlock(&dev->state_lock);
}

struct vd_saved {
	uint64_t offered, features;
	unsigned status;
	int attached;
};

/* Read NAME.state back. It is checked like anything from outside: exact format, our name. @return 0 or -errno. */
static int state_load(struct vhd_vduse_dev *dev, struct vd_saved *sv)
{
	FILE *f = fopen(dev->state_path, "re");
	if (!f)
		return -errno;
	char name[VHD_VDUSE_NAME_MAX + 2] = {0};
	unsigned long long off = 0, feat = 0;
	int ver = 0, got = fscanf(f, "vhostd-vduse-state %d name %64s offered %llx features %llx status %u attached %d",
				  &ver, name, &off, &feat, &sv->status, &sv->attached);
	fclose(f);
	if (got != 6 || ver != 1 || strcmp(name, dev->name) || sv->status > 0xff || (feat & ~off)) {
		vhd_log(VHD_LOG_ERR, "%s: %s is not a state of this device (%d fields, version %d, name %s)", dev->name,
			dev->state_path, got, ver, name);
		return -EINVAL;
	}
	sv->offered = off;
	sv->features = feat;
	return 0;
}

/* mkdir -p: the directory is ours to make (e.g. /run/vhostd/vduse). */
static int make_dirs(const char *dir)
{
	char p[PATH_MAX];
	if (snprintf(p, sizeof(p), "%s", dir) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	for (char *c = p + 1;; c++) {
		if (*c != '/' && *c)
			continue;
		char was = *c;
		*c = 0;
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			return -errno;
		if (!was)
			return 0;
		*c = was;
	}
}

/* The paths and NAME.rings, mapped (its positions kept: a restart reads them before anything writes). */
static int state_open(struct vhd_vduse_dev *dev, const char *dir)
{
	int rc = make_dirs(dir);
	if (rc == 0 && (snprintf(dev->state_path, sizeof(dev->state_path), "%s/%s.state", dir, dev->name) >= PATH_MAX ||
			snprintf(dev->rings_path, sizeof(dev->rings_path), "%s/%s.rings", dir, dev->name) >= PATH_MAX))
		rc = -ENAMETOOLONG;
	int fd = rc == 0 ? open(dev->rings_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
	if (rc == 0 && (fd < 0 || ftruncate(fd, 4096) < 0))
		rc = -errno;
	if (rc == 0) {
		void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED)
			rc = -errno;
		else
			dev->rings = m;
	}
	if (fd >= 0)
		close(fd);
	if (rc < 0) {
		vhd_log(VHD_LOG_WARN, "%s: restart state in %s: %s (a restarted process will not resume the device)",
			dev->name, dir, strerror(-rc));
		dev->state_path[0] = dev->rings_path[0] = 0;
	}
	return rc;
}

/* A new device: nothing of an earlier one's positions may remain. */
static void rings_reset(struct vhd_vduse_dev *dev)
{
	if (!dev->rings)
		return;
	for (unsigned i = 0; i < VD_NQ; i++)
		atomic_store_explicit(&dev->rings->pos[i], 0, memory_order_relaxed);
	dev->rings->magic = VD_RINGS_MAGIC;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Requests (request thread)                                                                               */

static uint32_t req_set_status(struct vhd_vduse_dev *dev, uint8_t s)
{
	uint8_t old = atomic_load(&dev->status);
	if (s & dev->refuse_status & ~old) {
		vhd_log(VHD_LOG_WARN, "%s: refusing status 0x%02x (test knob refuse_status 0x%02x)", dev->name, s,
			dev->refuse_status);
		return VDUSE_REQ_RESULT_FAILED;
	}
	if (s == 0) {
		stop_queues(dev);
		stat_inc(&dev->st.resets);
	} else if ((s & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK)) {
		if (start_queues(dev) < 0) {
			stop_queues(dev);
			return VDUSE_REQ_RESULT_FAILED;
		}
	}
	atomic_store(&dev->status, s);
	state_save(dev);
	return VDUSE_REQ_RESULT_OK;
}

static uint32_t req_vq_state(struct vhd_vduse_dev *dev, struct vduse_vq_state *st)
{
	if (st->index >= VD_NQ) {
		vhd_log(VHD_LOG_ERR, "%s: GET_VQ_STATE for queue %u of %u", dev->name, st->index, VD_NQ);
		return VDUSE_REQ_RESULT_FAILED;
	}
	struct vd_queue *q = &dev->q[st->index];
	int was[VD_NQ];
	close_all(dev, was);
	uint16_t base = q->vq ? vhd_vq_base(q->vq) : 0, used = q->vq ? vhd_vq_used_base(q->vq) : 0;
	open_all(dev, was);
	if (q->packed) {
		st->packed.last_avail_idx = base & 0x7fff;
		st->packed.last_avail_counter = base >> 15;
		st->packed.last_used_idx = used & 0x7fff;
		st->packed.last_used_counter = used >> 15;
	} else {
		st->split.avail_index = base;
	}
	return VDUSE_REQ_RESULT_OK;
}

static uint32_t req_update_iotlb(struct vhd_vduse_dev *dev, uint64_t start, uint64_t last)
{
	if (last < start) {
		vhd_log(VHD_LOG_ERR, "%s: UPDATE_IOTLB for [0x%llx, 0x%llx]", dev->name, (unsigned long long)start,
			(unsigned long long)last);
		return VDUSE_REQ_RESULT_FAILED;
	}
	stat_inc(&dev->st.iotlb_updates);
	int was[VD_NQ];
	close_all(dev, was);
	/* Before the answer: once the kernel has it, the driver may reuse the memory. */
	unmap_range(dev, start, last);
	/* The rings may have lain in what went: translate them again (mapping afresh). A queue whose rings are
	 * gone is parked; one parked earlier whose rings are back resumes where it stood. */
	for (unsigned i = 0; i < VD_NQ; i++) {
		struct vd_queue *q = &dev->q[i];
		void *d, *a, *u;
		if (!q->vq)
			continue;
		/* Refusing, the kernel takes the new map back: nothing of it is ours to reach. */
		if (dev->refuse_iotlb || ring_ptrs(dev, q, &d, &a, &u, !q->parked) < 0 ||
		    vhd_vq_set_rings(q->vq, d, a, u) < 0) {
			park(dev, q, "its rings' memory is gone");
			was[i] = 0;
		} else if (q->parked) {
			q->parked = false;
			was[i] = 1;
			vhd_log(VHD_LOG_INFO, "%s: its memory is mapped again: queue resumed", q->name);
		}
	}
	open_all(dev, was);
	if (dev->refuse_iotlb) {
		vhd_log(VHD_LOG_WARN, "%s: refusing UPDATE_IOTLB [0x%llx, 0x%llx] (test knob refuse_iotlb)", dev->name,
			(unsigned long long)start, (unsigned long long)last);
		return VDUSE_REQ_RESULT_FAILED;
	}
	return VDUSE_REQ_RESULT_OK;
}

static void handle_request(struct vhd_vduse_dev *dev, struct vduse_dev_request *r)
{
	struct vduse_dev_response resp;
	memset(&resp, 0, sizeof(resp));
	resp.request_id = r->request_id;
	switch (r->type) {
	case VDUSE_SET_STATUS:
		resp.result = req_set_status(dev, r->status);
		break;
	case VDUSE_GET_VQ_STATE:
		resp.vq_state.index = r->vq_state.index;
		resp.result = req_vq_state(dev, &resp.vq_state);
		break;
	case VDUSE_UPDATE_IOTLB:
		resp.result = req_update_iotlb(dev, r->iova.start, r->iova.last);
		break;
	default:
		vhd_log(VHD_LOG_WARN, "%s: unknown VDUSE request type %u", dev->name, r->type);
		resp.result = VDUSE_REQ_RESULT_FAILED;
		break;
	}
	stat_inc(&dev->st.requests);
	if (resp.result != VDUSE_REQ_RESULT_OK)
		stat_inc(&dev->st.requests_failed);
	/* The kernel takes the answer at once (it only looks up the waiting request): never blocks. */
	if (write(dev->dev_fd, &resp, sizeof(resp)) != (ssize_t)sizeof(resp))
		vhd_log(VHD_LOG_ERR, "%s: answering request %u (type %u): %s", dev->name, r->request_id, r->type,
			strerror(errno));
}

static void handle_misses(struct vhd_vduse_dev *dev)
{
	uint64_t v;
	if (read(dev->wake_fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: a spurious wake-up; look at the queues anyway. */
	}
	for (unsigned i = 0; i < VD_NQ; i++) {
		struct vd_queue *q = &dev->q[i];
		/* Acquire pairs with the release store in vhd_vduse_queue_release(): miss_iova is the burst's. */
		if (!atomic_load_explicit(&q->miss_wait, memory_order_acquire))
			continue;
		uint64_t iova = atomic_load_explicit(&q->miss_iova, memory_order_relaxed);
		int was[VD_NQ];
		close_all(dev, was);
		if (!vhd_iotlb_to_host(dev->iotlb, iova, 1, VHD_IOTLB_RO) &&
		    !vhd_iotlb_to_host(dev->iotlb, iova, 1, VHD_IOTLB_WO) && map_iova(dev, iova, !q->parked) < 0) {
			park(dev, q, "a buffer's memory is not mapped");
			was[i] = 0;
		}
		atomic_store(&q->miss_wait, 0);
		open_all(dev, was);
	}
}

static void *request_thread(void *arg)
{
	struct vhd_vduse_dev *dev = arg;
	for (;;) {
		struct pollfd p[3] = {{dev->dev_fd, POLLIN, 0}, {dev->wake_fd, POLLIN, 0}, {dev->stop_fd, POLLIN, 0}};
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			vhd_log(VHD_LOG_ERR, "%s: poll: %s", dev->name, strerror(errno));
			return NULL;
		}
		if (p[2].revents)
			return NULL;
		if (p[1].revents)
			handle_misses(dev);
		if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
			vhd_log(VHD_LOG_ERR, "%s: /dev/vduse/%s hung up", dev->name, dev->name);
			return NULL;
		}
		for (unsigned n = 0; n < VD_REQ_BUDGET; n++) {
			struct vduse_dev_request r;
			ssize_t got = read(dev->dev_fd, &r, sizeof(r));
			if (got < 0)
				break; /* EAGAIN: all answered */
			if (got != (ssize_t)sizeof(r)) {
				vhd_log(VHD_LOG_ERR, "%s: short request (%zd bytes)", dev->name, got);
				break;
			}
			handle_request(dev, &r);
		}
	}
}

/* ------------------------------------------------------------------------------------------------------ */
/* vDPA bus over generic netlink                                                                           */

struct nl_msg {
	struct nlmsghdr h;
	struct genlmsghdr g;
	char attrs[512];
};

static void nl_put(struct nl_msg *m, uint16_t type, const void *data, size_t len)
{
	struct nlattr *a = (struct nlattr *)((char *)m + NLMSG_ALIGN(m->h.nlmsg_len));
	a->nla_type = type;
	a->nla_len = (uint16_t)(NLA_HDRLEN + len);
	memcpy((char *)a + NLA_HDRLEN, data, len);
	m->h.nlmsg_len = NLMSG_ALIGN(m->h.nlmsg_len) + NLA_ALIGN(a->nla_len);
}

static void nl_init(struct nl_msg *m, uint16_t family, uint8_t cmd, uint8_t version)
{
	memset(m, 0, sizeof(*m));
	m->h.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN);
	m->h.nlmsg_type = family;
	m->h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	m->h.nlmsg_seq = 1;
	m->g.cmd = cmd;
	m->g.version = version;
}

/* Send m and read replies until the ack; *family, if not NULL, gets CTRL_ATTR_FAMILY_ID from a reply. */
static int nl_talk(int fd, struct nl_msg *m, uint16_t *family)
{
	if (send(fd, m, m->h.nlmsg_len, 0) < 0)
		return -errno;
	char buf[8192];
	for (int rounds = 0; rounds < 16; rounds++) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0)
			return -errno;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
					return -EPROTO;
				return e->error;
			}
			if (!family || h->nlmsg_type != GENL_ID_CTRL)
				continue;
			size_t len = h->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN);
			struct nlattr *a = (struct nlattr *)((char *)NLMSG_DATA(h) + GENL_HDRLEN);
			while (len >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= len) {
				if (a->nla_type == CTRL_ATTR_FAMILY_ID && a->nla_len >= NLA_HDRLEN + 2)
					memcpy(family, (char *)a + NLA_HDRLEN, 2);
				size_t step = NLA_ALIGN(a->nla_len);
				if (step >= len)
					break;
				len -= step;
				a = (struct nlattr *)((char *)a + step);
			}
		}
	}
	return -ETIMEDOUT;
}

/* VDPA_CMD_DEV_NEW or _DEL for our device. */
static int vdpa_cmd(struct vhd_vduse_dev *dev, uint8_t cmd)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	if (fd < 0)
		return -errno;
	/* The kernel answers once the driver has probed or released the device, which our request thread
	 * serves; a bound well beyond the kernel's own 30 s per request keeps a wedged kernel from holding us. */
	struct timeval tv = {.tv_sec = 70};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct nl_msg m;
	nl_init(&m, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1);
	nl_put(&m, CTRL_ATTR_FAMILY_NAME, VDPA_GENL_NAME, sizeof(VDPA_GENL_NAME));
	uint16_t family = 0;
	int rc = nl_talk(fd, &m, &family);
	if (rc == 0 && family == 0)
		rc = -ENOENT;
	if (rc < 0) {
		vhd_log(VHD_LOG_ERR, "%s: generic netlink family \"vdpa\": %s (module vdpa not loaded?)", dev->name,
			strerror(-rc));
		close(fd);
		return rc;
	}
	nl_init(&m, family, cmd, VDPA_GENL_VERSION);
	if (cmd == VDPA_CMD_DEV_NEW)
		nl_put(&m, VDPA_ATTR_MGMTDEV_DEV_NAME, "vduse", sizeof("vduse"));
	nl_put(&m, VDPA_ATTR_DEV_NAME, dev->name, strlen(dev->name) + 1);
	rc = nl_talk(fd, &m, NULL);
	close(fd);
	if (rc < 0)
		vhd_log(VHD_LOG_ERR, "%s: vdpa %s: %s", dev->name, cmd == VDPA_CMD_DEV_NEW ? "DEV_NEW" : "DEV_DEL",
			strerror(-rc));
	return rc;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Life cycle                                                                                              */

void vhd_vduse_dev_destroy(struct vhd_vduse_dev *dev)
{
	if (!dev)
		return;
	/* Detach first: the driver's goodbye (SET_STATUS 0) still needs our request thread. */
	if (dev->attached)
		vdpa_cmd(dev, VDPA_CMD_DEV_DEL);
	if (dev->thread_started) {
		uint64_t one = 1;
		if (write(dev->stop_fd, &one, sizeof(one)) < 0)
			vhd_log(VHD_LOG_ERR, "%s: stopping the request thread: %s", dev->name, strerror(errno));
		pthread_join(dev->thread, NULL);
	}
	for (unsigned i = 0; i < VD_NQ; i++) {
		vhd_vq_destroy(dev->q[i].vq);
		if (dev->q[i].kick_fd >= 0)
			close(dev->q[i].kick_fd);
	}
	if (dev->iotlb)
		vhd_iotlb_flush(dev->iotlb);
	vhd_mem_destroy(dev->mem); /* unmaps what map_iova() mapped */
	vhd_iotlb_destroy(dev->iotlb);
	if (dev->dev_fd >= 0)
		close(dev->dev_fd);
	if (dev->created) {
		char name[VDUSE_NAME_MAX] = {0};
		memcpy(name, dev->name, strlen(dev->name));
		if (ioctl(dev->ctl_fd, VDUSE_DESTROY_DEV, name) < 0)
			vhd_log(VHD_LOG_ERR, "%s: VDUSE_DESTROY_DEV: %s", dev->name, strerror(errno));
	}
	if (dev->ctl_fd >= 0)
		close(dev->ctl_fd);
	if (dev->rings)
		munmap(dev->rings, 4096);
	/* Ours only if we made or resumed the device: a failed create must not erase the owner's state. */
	if (dev->created && dev->state_path[0]) {
		unlink(dev->state_path);
		unlink(dev->rings_path);
	}
	pthread_mutex_destroy(&dev->state_lock);
	if (dev->stop_fd >= 0)
		close(dev->stop_fd);
	if (dev->wake_fd >= 0)
		close(dev->wake_fd);
	free(dev);
}

/*
 * The device exists: a process of ours that died left it, if NAME.state says so. Reopen it and, if the driver
 * was running it, start the queues where that process stood. Requests the kernel sent meanwhile wait in its
 * queue (it keeps them for the next opener) and are answered once the request thread runs.
 */
static int reopen_kernel_dev(struct vhd_vduse_dev *dev)
{
	struct vd_saved sv;
	if (state_load(dev, &sv) < 0) {
		vhd_log(VHD_LOG_ERR, "%s: a VDUSE device named \"%s\" exists already (and %s holds no state of it)",
			dev->name, dev->name, dev->state_path);
		dev->state_path[0] = 0; /* someone else's: leave their files alone */
		return -EEXIST;
	}
	char path[sizeof("/dev/vduse/") + VHD_VDUSE_NAME_MAX];
	snprintf(path, sizeof(path), "/dev/vduse/%s", dev->name);
	dev->dev_fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (dev->dev_fd < 0) {
		int e = errno;
		vhd_log(VHD_LOG_ERR, "%s: a VDUSE device named \"%s\" exists already%s (%s)", dev->name, dev->name,
			e == EBUSY ? " and is in use by another process" : "", e == EBUSY ? "" : strerror(e));
		dev->state_path[0] = 0;
		return -EEXIST;
	}
	dev->created = true; /* ours again: destroy removes it */
	dev->attached = sv.attached;
	dev->offered = sv.offered;
	dev->resumed = true;
	if (!dev->rings || dev->rings->magic != VD_RINGS_MAGIC) {
		vhd_log(VHD_LOG_WARN, "%s: %s holds no ring positions: packed rings cannot resume", dev->name,
			dev->rings_path);
	}
	vhd_log(VHD_LOG_INFO, "%s: reopened the device a dead process left (status 0x%x, features 0x%llx)", dev->name,
		sv.status, (unsigned long long)sv.features);
	if (sv.status & VIRTIO_CONFIG_S_DRIVER_OK) {
		int rc = start_queues(dev);
		if (rc < 0)
			return rc;
		/* The dead process may have published used entries and died before the interrupt that tells the
		 * driver; with EVENT_IDX none of ours would come until the index wraps. One per queue now: a spurious
		 * one costs the driver a look at its ring. */
		for (unsigned i = 0; i < VD_NQ; i++)
			if (dev->q[i].vq)
				vhd_vduse_queue_notify(dev, i);
	}
	atomic_store(&dev->status, (uint8_t)sv.status);
	return 0;
}

static int create_kernel_dev(struct vhd_vduse_dev *dev, const struct vhd_vduse_config *cfg)
{
	dev->ctl_fd = open("/dev/vduse/control", O_RDWR | O_CLOEXEC);
	if (dev->ctl_fd < 0) {
		int e = errno;
		vhd_log(VHD_LOG_ERR, "%s: /dev/vduse/control: %s (module vduse not loaded?)", dev->name, strerror(e));
		return -e;
	}
	uint64_t ver = VDUSE_API_VERSION;
	if (ioctl(dev->ctl_fd, VDUSE_SET_API_VERSION, &ver) < 0) {
		int e = errno;
		vhd_log(VHD_LOG_ERR, "%s: VDUSE_SET_API_VERSION %llu: %s", dev->name, (unsigned long long)ver, strerror(e));
		return -e;
	}
	union {
		struct vduse_dev_config c;
		uint8_t bytes[sizeof(struct vduse_dev_config) + VHD_NET_CONFIG_SIZE];
	} u;
	memset(&u, 0, sizeof(u));
	memcpy(u.c.name, dev->name, strlen(dev->name));
	u.c.device_id = VIRTIO_ID_NET;
	u.c.features = dev->offered;
	u.c.vq_num = VD_NQ;
	u.c.vq_align = 4096;
	u.c.config_size = VHD_NET_CONFIG_SIZE;
	struct vhd_net_device_info info = {.mtu = cfg->mtu, .max_queue_pairs = 1};
	memcpy(info.mac, cfg->mac, 6);
	vhd_net_device_config(&info, u.c.config);
	if (ioctl(dev->ctl_fd, VDUSE_CREATE_DEV, &u.c) < 0) {
		int e = errno;
		if (e == EEXIST && dev->state_path[0])
			return reopen_kernel_dev(dev);
		if (e == EEXIST)
			vhd_log(VHD_LOG_ERR, "%s: a VDUSE device named \"%s\" exists already", dev->name, dev->name);
		else
			vhd_log(VHD_LOG_ERR, "%s: VDUSE_CREATE_DEV (features 0x%llx): %s", dev->name,
				(unsigned long long)dev->offered, strerror(e));
		return -e;
	}
	dev->created = true;
	rings_reset(dev);
	char path[sizeof("/dev/vduse/") + VHD_VDUSE_NAME_MAX];
	snprintf(path, sizeof(path), "/dev/vduse/%s", dev->name);
	dev->dev_fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (dev->dev_fd < 0) {
		int e = errno;
		vhd_log(VHD_LOG_ERR, "%s: %s: %s", dev->name, path, strerror(e));
		return -e;
	}
	for (unsigned i = 0; i < VD_NQ; i++) {
		struct vduse_vq_config vc = {.index = i, .max_size = cfg->queue_size ? cfg->queue_size : 256};
		if (ioctl(dev->dev_fd, VDUSE_VQ_SETUP, &vc) < 0) {
			int e = errno;
			vhd_log(VHD_LOG_ERR, "%s: VDUSE_VQ_SETUP queue %u size %u: %s", dev->name, i, vc.max_size,
				strerror(e));
			return -e;
		}
	}
	return 0;
}

int vhd_vduse_dev_create(const struct vhd_vduse_config *cfg, struct vhd_vduse_dev **out)
{
	if (!cfg->name || !*cfg->name || strlen(cfg->name) > VHD_VDUSE_NAME_MAX || strchr(cfg->name, '/') ||
	    cfg->queue_size > 32768)
		return -EINVAL;
	struct vhd_vduse_dev *dev = aligned_alloc(64, (sizeof(*dev) + 63) & ~(size_t)63);
	if (!dev)
		return -ENOMEM;
	memset(dev, 0, sizeof(*dev));
	snprintf(dev->name, sizeof(dev->name), "%s", cfg->name);
	dev->ctl_fd = dev->dev_fd = -1;
	pthread_mutex_init(&dev->state_lock, NULL);
	dev->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	dev->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	dev->refuse_status = cfg->refuse_status;
	dev->refuse_iotlb = cfg->refuse_iotlb;
	dev->offered = (cfg->features ? cfg->features : vhd_vduse_default_features()) | VHD_BIT(VIRTIO_F_VERSION_1) |
		       VHD_BIT(VIRTIO_F_ACCESS_PLATFORM);
	dev->offered &= ~(VHD_BIT(VIRTIO_NET_F_CTRL_VQ) | VHD_BIT(VIRTIO_NET_F_MQ) | VHD_BIT(VIRTIO_NET_F_CTRL_RX) |
			  VHD_BIT(VIRTIO_NET_F_CTRL_MAC_ADDR) | VHD_BIT(VIRTIO_NET_F_GUEST_ANNOUNCE) |
			  VHD_BIT(VIRTIO_NET_F_CTRL_VLAN) | VHD_BIT(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS));
	static const uint8_t zero[6];
	if (memcmp(cfg->mac, zero, 6))
		dev->offered |= VHD_BIT(VIRTIO_NET_F_MAC);
	if (cfg->mtu)
		dev->offered |= VHD_BIT(VIRTIO_NET_F_MTU);
	for (unsigned i = 0; i < VD_NQ; i++) {
		struct vd_queue *q = &dev->q[i];
		snprintf(q->name, sizeof(q->name), "%s %cxq0", dev->name, i ? 't' : 'r');
		q->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	}
	int rc = (dev->stop_fd < 0 || dev->wake_fd < 0 || dev->q[0].kick_fd < 0 || dev->q[1].kick_fd < 0) ? -EMFILE : 0;
	if (rc == 0)
		rc = vhd_mem_create(&dev->mem);
	if (rc == 0)
		rc = vhd_iotlb_create(0, &dev->iotlb);
	/* Without its state the device still works; only a restart could not resume it (logged). */
	if (rc == 0 && cfg->state_dir)
		state_open(dev, cfg->state_dir);
	if (rc == 0)
		rc = create_kernel_dev(dev, cfg);
	if (rc == 0)
		state_save(dev);
	if (rc == 0) {
		/* The request thread runs before the attach: the driver's probe waits for its answers. */
		rc = -pthread_create(&dev->thread, NULL, request_thread, dev);
		dev->thread_started = rc == 0;
	}
	if (rc == 0 && cfg->attach && !dev->resumed) {
		rc = vdpa_cmd(dev, VDPA_CMD_DEV_NEW);
		pthread_mutex_lock(&dev->state_lock);
		dev->attached = rc == 0;
		pthread_mutex_unlock(&dev->state_lock);
		state_save(dev);
	}
	if (rc < 0) {
		vhd_vduse_dev_destroy(dev);
		return rc;
	}
	vhd_log(VHD_LOG_INFO, "%s: VDUSE device %s%s, features 0x%llx", dev->name, dev->resumed ? "resumed" : "created",
		cfg->attach && !dev->resumed ? " and attached to the vDPA bus" : "", (unsigned long long)dev->offered);
	*out = dev;
	return 0;
}

uint8_t vhd_vduse_dev_status(const struct vhd_vduse_dev *dev)
{
	return atomic_load(&((struct vhd_vduse_dev *)dev)->status);
}

uint64_t vhd_vduse_dev_features(const struct vhd_vduse_dev *dev)
{
	return atomic_load(&((struct vhd_vduse_dev *)dev)->features);
}

bool vhd_vduse_dev_ready(const struct vhd_vduse_dev *dev)
{
	return atomic_load(&((struct vhd_vduse_dev *)dev)->ready);
}

void vhd_vduse_dev_stats(const struct vhd_vduse_dev *dev, struct vhd_vduse_stats *out)
{
	struct vhd_vduse_dev *d = (struct vhd_vduse_dev *)dev;
	out->requests = atomic_load_explicit(&d->st.requests, memory_order_relaxed);
	out->requests_failed = atomic_load_explicit(&d->st.requests_failed, memory_order_relaxed);
	out->resets = atomic_load_explicit(&d->st.resets, memory_order_relaxed);
	out->maps = atomic_load_explicit(&d->st.maps, memory_order_relaxed);
	out->unmaps = atomic_load_explicit(&d->st.unmaps, memory_order_relaxed);
	out->misses = atomic_load_explicit(&d->st.misses, memory_order_relaxed);
	out->irq_failures = atomic_load_explicit(&d->st.irq_failures, memory_order_relaxed);
	out->iotlb_updates = atomic_load_explicit(&d->st.iotlb_updates, memory_order_relaxed);
	out->queues_parked = atomic_load_explicit(&d->st.queues_parked, memory_order_relaxed);
}
