/* SPDX-License-Identifier: MIT */
/*
 * The vhost-vdpa transport of the frontend: the kernel's /dev/vhost-vdpa-N, a vDPA device (hardware, or a
 * software one such as vdpa_sim_net or VDUSE) driven with ioctls. Every step completes at once (VHD_FE_T_DONE).
 *
 * What differs from vhost-user, and why:
 * - Memory is mapped into the device's IOTLB with struct vhost_msg_v2 messages written to the fd (UPDATE,
 *   bracketed by BATCH_BEGIN/END so a device that programs a real IOMMU does it once), never with a memory
 *   table. Ring and buffer addresses are IOVAs: we use our virtual addresses as IOVAs, so the frontend's
 *   descriptors need no translation, and refuse (before the kernel sees it) a map outside the device's
 *   GET_IOVA_RANGE. A VA-based device (vdpa_sim's default) maps only shared file-backed memory and silently
 *   skips anonymous memory: the frontend's memfd is exactly that.
 * - The device has a status, and SET_STATUS does not report a status the device refused (the kernel stores
 *   what the device's set_status did): every write is read back with GET_STATUS and a missing bit fails the
 *   step, naming the bit. FEATURES_OK is set (and checked) right after SET_FEATURES, DRIVER_OK last, after
 *   the rings were enabled (VHOST_VDPA_SET_VRING_ENABLE), as a guest's driver does.
 * - "Losing" the device means resetting it (status 0, which also clears what the device mapped) and closing
 *   the fd, which releases our maps in the kernel; the next connect() reopens the node after a back-off, so a
 *   device deleted and added again (vdpa dev del/add) comes back by itself.
 * Every ioctl runs the device's op synchronously in the kernel. For hardware and vdpa_sim that is immediate; for
 * a VDUSE device, status, config and ring-state requests go to the VDUSE daemon and the ioctl waits for its
 * answer, bounded only by the kernel's VDUSE message timeout: a stalled daemon stalls the control thread that
 * long (the kernel offers no asynchronous form of these ioctls).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "spec/endian.h"
#include "spec/vhost_vdpa.h"
#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "transport.h"
#include "vhostd/log.h"

#define VDPA_RETRY_MIN_MS 100u
#define VDPA_RETRY_MAX_MS 5000u

struct vdpa_t {
	char *path;
	int fd;
	bool fresh; /* opened, setup not started: connect() reports it once */
	uint8_t status;
	uint64_t backend;                   /* backend features agreed */
	struct vhost_vdpa_iova_range range; /* what the device can address */
	uint16_t max_num;                   /* largest ring the device takes */
	uint64_t offered;                   /* GET_FEATURES' answer */
	struct vhd_fe_map mapped;           /* what we mapped (size 0: nothing) */
	struct vhd_fe_map taken;            /* vhd_fe_remap(): what we unmapped on purpose (size 0: nothing) */
	unsigned retry_ms, retry_min, retry_max;
	struct timespec retry_at;
	bool told_open; /* an open failure was logged (once per outage) */
};

static struct vdpa_t *D(struct vhd_fe_transport *t)
{
	return t->priv;
}

int vhdi_vdpa_map_check(const struct vhost_vdpa_iova_range *r, uint64_t iova, uint64_t size)
{
	if (size == 0 || iova < r->first || iova > r->last || size - 1 > r->last - iova)
		return -ERANGE;
	return 0;
}

static int xioctl(struct vhd_fe_transport *t, unsigned long req, void *arg, const char *what)
{
	if (ioctl(D(t)->fd, req, arg) == 0)
		return 0;
	int rc = -errno;
	vhd_log(VHD_LOG_ERR, "%s: %s on %s failed: %s", t->name, what, D(t)->path, strerror(-rc));
	return rc;
}

static int write_msg(struct vhd_fe_transport *t, uint8_t type, const struct vhd_fe_map *m)
{
	struct vhost_msg_v2 msg;
	memset(&msg, 0, sizeof(msg));
	msg.type = VHOST_IOTLB_MSG_V2;
	msg.iotlb.type = type;
	if (m) {
		msg.iotlb.iova = m->iova;
		msg.iotlb.size = m->size;
		msg.iotlb.uaddr = m->uaddr;
		msg.iotlb.perm = m->perm;
	}
	ssize_t n = write(D(t)->fd, &msg, sizeof(msg));
	if (n == (ssize_t)sizeof(msg))
		return 0;
	int rc = n < 0 ? -errno : -EIO;
	vhd_log(VHD_LOG_ERR, "%s: IOTLB message %u (IOVA 0x%llx, %llu bytes) refused by %s: %s", t->name, type,
		m ? (unsigned long long)m->iova : 0ull, m ? (unsigned long long)m->size : 0ull, D(t)->path,
		strerror(-rc));
	return rc;
}

/* Map m (replacing what we mapped before), batched when the device takes batches and there are two messages.
 * A lone UPDATE is never batched: the kernel ignores what the device's set_map returns at BATCH_END
 * (vhost_vdpa_process_iotlb_msg), so a device refusing a batched map would go unreported, while a lone UPDATE's
 * write() fails (VDUSE on 6.12: EFAULT when its daemon answered FAILED). */
static int map(struct vhd_fe_transport *t, const struct vhd_fe_map *m)
{
	struct vdpa_t *d = D(t);
	if (vhdi_vdpa_map_check(&d->range, m->iova, m->size) < 0) {
		vhd_log(VHD_LOG_ERR, "%s: IOVA range [0x%llx, +%llu) is outside %s's range [0x%llx, 0x%llx]", t->name,
			(unsigned long long)m->iova, (unsigned long long)m->size, d->path,
			(unsigned long long)d->range.first, (unsigned long long)d->range.last);
		return -ERANGE;
	}
	bool batch = (d->backend & VHD_BIT(VHOST_BACKEND_F_IOTLB_BATCH)) && d->mapped.size;
	int rc = batch ? write_msg(t, VHOST_IOTLB_BATCH_BEGIN, NULL) : 0;
	if (rc == 0 && d->mapped.size)
		rc = write_msg(t, VHOST_IOTLB_INVALIDATE, &d->mapped);
	if (rc == 0) {
		d->mapped.size = 0;
		rc = write_msg(t, VHOST_IOTLB_UPDATE, m);
	}
	if (rc == 0)
		d->mapped = *m;
	/* Closed even after a failure: the device applies what the batch holds so far. */
	int rc2 = batch ? write_msg(t, VHOST_IOTLB_BATCH_END, NULL) : 0;
	return rc < 0 ? rc : rc2;
}

static const char *status_bit_name(uint8_t bit)
{
	switch (bit) {
	case VIRTIO_CONFIG_S_ACKNOWLEDGE: return "ACKNOWLEDGE";
	case VIRTIO_CONFIG_S_DRIVER: return "DRIVER";
	case VIRTIO_CONFIG_S_DRIVER_OK: return "DRIVER_OK";
	case VIRTIO_CONFIG_S_FEATURES_OK: return "FEATURES_OK";
	default: return "?";
	}
}

/* Write status and read it back: the ioctl succeeds even when the device did not take it. */
static int put_status(struct vhd_fe_transport *t, uint8_t status)
{
	struct vdpa_t *d = D(t);
	int rc = xioctl(t, VHOST_VDPA_SET_STATUS, &status, "SET_STATUS");
	if (rc < 0)
		return rc;
	uint8_t got = 0;
	rc = xioctl(t, VHOST_VDPA_GET_STATUS, &got, "GET_STATUS");
	if (rc < 0)
		return rc;
	d->status = got;
	if (status == 0 ? got != 0 : (got & status) != status || (got & VIRTIO_CONFIG_S_FAILED)) {
		uint8_t missing = status & ~got;
		vhd_log(VHD_LOG_ERR, "%s: %s refused status 0x%02x: it reads back 0x%02x (%s%s)", t->name, d->path,
			status, got, missing ? status_bit_name((uint8_t)(missing & -missing)) : "FAILED",
			missing ? " missing" : " set");
		return -EREMOTEIO;
	}
	return 0;
}

static void now_plus(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

/* Reset the device (status 0: it stops and forgets its maps) and let go of it. */
static void close_dev(struct vdpa_t *d)
{
	if (d->fd >= 0) {
		uint8_t zero = 0;
		(void)ioctl(d->fd, VHOST_VDPA_SET_STATUS, &zero);
		close(d->fd);
	}
	d->fd = -1;
	d->fresh = false;
	d->mapped.size = 0;
	d->taken.size = 0;
	d->status = 0;
}

/* Open the node and take the device: owner, backend features, and what it is. 0 or -errno (logged). */
static int open_dev(struct vhd_fe_transport *t)
{
	struct vdpa_t *d = D(t);
	d->fd = open(d->path, O_RDWR | O_CLOEXEC);
	if (d->fd < 0) {
		int rc = -errno;
		if (!d->told_open)
			vhd_log(VHD_LOG_ERR, "%s: cannot open %s: %s", t->name, d->path, strerror(-rc));
		d->told_open = true;
		return rc;
	}
	uint32_t id = 0;
	uint64_t bf = 0;
	uint16_t num = 0;
	int rc = xioctl(t, VHOST_VDPA_GET_DEVICE_ID, &id, "GET_DEVICE_ID");
	if (rc == 0 && id != VIRTIO_ID_NET) {
		vhd_log(VHD_LOG_ERR, "%s: %s is virtio device %u, not a network device (1)", t->name, d->path, id);
		rc = -ENODEV;
	}
	if (rc == 0)
		rc = xioctl(t, VHOST_SET_OWNER, NULL, "SET_OWNER");
	if (rc == 0)
		rc = xioctl(t, VHOST_GET_BACKEND_FEATURES, &bf, "GET_BACKEND_FEATURES");
	if (rc == 0 && !(bf & VHD_BIT(VHOST_BACKEND_F_IOTLB_MSG_V2))) {
		vhd_log(VHD_LOG_ERR, "%s: %s lacks backend feature IOTLB_MSG_V2 (offers 0x%llx)", t->name, d->path,
			(unsigned long long)bf);
		rc = -ENOTSUP;
	}
	if (rc == 0) {
		d->backend = bf & (VHD_BIT(VHOST_BACKEND_F_IOTLB_MSG_V2) | VHD_BIT(VHOST_BACKEND_F_IOTLB_BATCH));
		rc = xioctl(t, VHOST_SET_BACKEND_FEATURES, &d->backend, "SET_BACKEND_FEATURES");
	}
	if (rc == 0)
		rc = xioctl(t, VHOST_VDPA_GET_IOVA_RANGE, &d->range, "GET_IOVA_RANGE");
	if (rc == 0 && d->range.first > d->range.last) {
		vhd_log(VHD_LOG_ERR, "%s: %s reports an empty IOVA range [0x%llx, 0x%llx]", t->name, d->path,
			(unsigned long long)d->range.first, (unsigned long long)d->range.last);
		rc = -EINVAL;
	}
	if (rc == 0)
		rc = xioctl(t, VHOST_VDPA_GET_VRING_NUM, &num, "GET_VRING_NUM");
	d->max_num = num;
	/* From whatever state a previous user left it in: reset, then tell it a driver is here. */
	if (rc == 0)
		rc = put_status(t, 0);
	if (rc == 0)
		rc = put_status(t, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	if (rc < 0) {
		close_dev(d);
		return rc;
	}
	d->told_open = false;
	d->fresh = true;
	return 0;
}

static int vdpa_open(struct vhd_fe_transport *t, const char *path, bool server, unsigned rmin, unsigned rmax)
{
	struct vdpa_t *d = D(t);
	if (server) {
		vhd_log(VHD_LOG_ERR, "%s: a vhost-vdpa device cannot be served (server mode is vhost-user's)", t->name);
		return -EINVAL;
	}
	d->path = strdup(path);
	if (!d->path)
		return -ENOMEM;
	d->retry_min = rmin ? rmin : VDPA_RETRY_MIN_MS;
	d->retry_max = rmax ? rmax : VDPA_RETRY_MAX_MS;
	d->retry_ms = d->retry_min;
	/* The first open decides: a wrong path is the caller's mistake, reported now. */
	return open_dev(t);
}

static void vdpa_destroy(struct vhd_fe_transport *t)
{
	struct vdpa_t *d = D(t);
	close_dev(d);
	free(d->path);
	free(d);
	t->priv = NULL;
}

static unsigned vdpa_pollfds(struct vhd_fe_transport *t, struct pollfd *fds, unsigned max)
{
	(void)t, (void)fds, (void)max;
	return 0; /* nothing arrives: every request completes inside its ioctl */
}

static int vdpa_timeout_ms(struct vhd_fe_transport *t)
{
	struct vdpa_t *d = D(t);
	if (d->fd >= 0)
		return -1;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long long ms = (long long)(d->retry_at.tv_sec - now.tv_sec) * 1000 + (d->retry_at.tv_nsec - now.tv_nsec) / 1000000;
	return ms < 0 ? 0 : (int)ms + 1;
}

static bool vdpa_connect(struct vhd_fe_transport *t)
{
	struct vdpa_t *d = D(t);
	if (d->fd < 0) {
		if (vdpa_timeout_ms(t) > 0)
			return false;
		if (open_dev(t) < 0) {
			now_plus(&d->retry_at, d->retry_ms);
			d->retry_ms = d->retry_ms * 2 > d->retry_max ? d->retry_max : d->retry_ms * 2;
			return false;
		}
	}
	bool fresh = d->fresh;
	d->fresh = false;
	return fresh;
}

static bool vdpa_connected(const struct vhd_fe_transport *t)
{
	const struct vdpa_t *d = t->priv;
	return d->fd >= 0 && !d->fresh;
}

static void vdpa_lost(struct vhd_fe_transport *t)
{
	struct vdpa_t *d = D(t);
	close_dev(d);
	d->retry_ms = d->retry_min;
	now_plus(&d->retry_at, d->retry_ms);
}

static int vdpa_progress(struct vhd_fe_transport *t)
{
	(void)t;
	return VHD_FE_T_DONE;
}

/* ---------------------------------------------------------------- setup steps */

static int vdpa_get_features(struct vhd_fe_transport *t, uint64_t *f)
{
	int rc = xioctl(t, VHOST_GET_FEATURES, &D(t)->offered, "GET_FEATURES");
	if (rc == 0)
		*f = D(t)->offered & ~VHD_BIT(VIRTIO_F_ACCESS_PLATFORM);
	return rc;
}

/* ACCESS_PLATFORM is the transport's: every address the device sees goes through the IOTLB we fill, which is
 * what the bit says, and a vDPA device may refuse a driver that declines it (vdpa_sim does, with EINVAL). */
static int vdpa_set_features(struct vhd_fe_transport *t, uint64_t f)
{
	f |= D(t)->offered & VHD_BIT(VIRTIO_F_ACCESS_PLATFORM);
	int rc = xioctl(t, VHOST_SET_FEATURES, &f, "SET_FEATURES");
	if (rc == 0)
		rc = put_status(t, D(t)->status | VIRTIO_CONFIG_S_FEATURES_OK);
	return rc;
}

/* max_virtqueue_pairs from the config space (the frontend asks only with MQ negotiated). */
static int vdpa_get_queue_num(struct vhd_fe_transport *t, uint64_t *pairs)
{
	/* The header and its flexible buffer, in one buffer (ISO C has no struct holding both). */
	_Alignas(struct vhost_vdpa_config) unsigned char buf[sizeof(struct vhost_vdpa_config) + sizeof(uint16_t)];
	struct vhost_vdpa_config *c = (struct vhost_vdpa_config *)buf;
	c->off = offsetof(struct virtio_net_config, max_virtqueue_pairs);
	c->len = sizeof(uint16_t);
	int rc = xioctl(t, VHOST_VDPA_GET_CONFIG, c, "GET_CONFIG");
	if (rc == 0) {
		uint16_t v;
		memcpy(&v, c->buf, sizeof(v));
		*pairs = vhd_le16(v); /* VERSION_1: little-endian config space */
	}
	return rc;
}

static int vdpa_set_owner(struct vhd_fe_transport *t)
{
	(void)t;
	return VHD_FE_T_DONE; /* taken in open_dev(): vhost-vdpa answers nothing else before it */
}

static int vdpa_set_mem_table(struct vhd_fe_transport *t, const struct vhd_fe_region *r, unsigned n)
{
	/* One region 1:1 (the frontend's memfd): IOVA = guest address, which the frontend put in its rings. */
	if (n != 1) {
		vhd_log(VHD_LOG_ERR, "%s: %u memory regions; the vhost-vdpa transport maps one", t->name, n);
		return -EINVAL;
	}
	struct vhd_fe_map m = {.iova = r->guest_addr, .size = r->size, .uaddr = r->addr, .perm = VHOST_ACCESS_RW};
	return map(t, &m);
}

static int vring_state(struct vhd_fe_transport *t, unsigned long req, unsigned q, unsigned num, const char *what)
{
	struct vhost_vring_state s = {.index = q, .num = num};
	return xioctl(t, req, &s, what);
}

static int vdpa_set_vring_num(struct vhd_fe_transport *t, unsigned q, unsigned num)
{
	if (D(t)->max_num && num > D(t)->max_num) {
		vhd_log(VHD_LOG_ERR, "%s: ring size %u is more than %s takes (%u)", t->name, num, D(t)->path,
			D(t)->max_num);
		return -ERANGE;
	}
	return vring_state(t, VHOST_SET_VRING_NUM, q, num, "SET_VRING_NUM");
}

static int vdpa_set_vring_base(struct vhd_fe_transport *t, unsigned q, unsigned base)
{
	return vring_state(t, VHOST_SET_VRING_BASE, q, base, "SET_VRING_BASE");
}

static int vdpa_set_vring_addr(struct vhd_fe_transport *t, unsigned q, uint64_t desc, uint64_t avail, uint64_t used)
{
	struct vhost_vring_addr a = {.index = q, .desc_user_addr = desc, .avail_user_addr = avail,
				     .used_user_addr = used};
	return xioctl(t, VHOST_SET_VRING_ADDR, &a, "SET_VRING_ADDR");
}

static int vring_file(struct vhd_fe_transport *t, unsigned long req, unsigned q, int fd, const char *what)
{
	struct vhost_vring_file f = {.index = q, .fd = fd};
	return xioctl(t, req, &f, what);
}

static int vdpa_set_vring_kick(struct vhd_fe_transport *t, unsigned q, int fd)
{
	return vring_file(t, VHOST_SET_VRING_KICK, q, fd, "SET_VRING_KICK");
}

static int vdpa_set_vring_call(struct vhd_fe_transport *t, unsigned q, int fd)
{
	return vring_file(t, VHOST_SET_VRING_CALL, q, fd, "SET_VRING_CALL");
}

static int vdpa_set_vring_enable(struct vhd_fe_transport *t, unsigned q, bool on)
{
	return vring_state(t, VHOST_VDPA_SET_VRING_ENABLE, q, on, "SET_VRING_ENABLE");
}

static int vdpa_set_status(struct vhd_fe_transport *t, uint8_t status)
{
	return put_status(t, status);
}

static int vdpa_set_backend_channel(struct vhd_fe_transport *t)
{
	(void)t;
	return VHD_FE_T_DONE; /* the kernel's IOTLB is filled up front: nothing misses */
}

static int vdpa_iotlb_update(struct vhd_fe_transport *t, const struct vhd_fe_map *m)
{
	return map(t, m);
}

static int vdpa_remap(struct vhd_fe_transport *t, bool on)
{
	struct vdpa_t *d = D(t);
	if (on) {
		if (!d->taken.size)
			return -EALREADY;
		struct vhd_fe_map m = d->taken;
		d->taken.size = 0;
		return map(t, &m);
	}
	if (!d->mapped.size)
		return -EALREADY;
	int rc = write_msg(t, VHOST_IOTLB_INVALIDATE, &d->mapped);
	if (rc == 0) {
		d->taken = d->mapped;
		d->mapped.size = 0;
	}
	return rc;
}

static const struct vhd_fe_transport_ops vdpa_ops = {
	.name = "vhost-vdpa",
	.open = vdpa_open,
	.destroy = vdpa_destroy,
	.pollfds = vdpa_pollfds,
	.timeout_ms = vdpa_timeout_ms,
	.connect = vdpa_connect,
	.connected = vdpa_connected,
	.lost = vdpa_lost,
	.progress = vdpa_progress,
	.get_features = vdpa_get_features,
	.set_features = vdpa_set_features,
	.get_queue_num = vdpa_get_queue_num,
	.set_owner = vdpa_set_owner,
	.set_mem_table = vdpa_set_mem_table,
	.set_vring_num = vdpa_set_vring_num,
	.set_vring_base = vdpa_set_vring_base,
	.set_vring_addr = vdpa_set_vring_addr,
	.set_vring_kick = vdpa_set_vring_kick,
	.set_vring_call = vdpa_set_vring_call,
	.set_vring_enable = vdpa_set_vring_enable,
	.set_status = vdpa_set_status,
	.set_backend_channel = vdpa_set_backend_channel,
	.iotlb_update = vdpa_iotlb_update,
	.remap = vdpa_remap,
};

int vhd_fe_vdpa_transport_init(struct vhd_fe_transport *t, const char *name)
{
	struct vdpa_t *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->fd = -1;
	*t = (struct vhd_fe_transport){.ops = &vdpa_ops, .name = name, .priv = d};
	return 0;
}
