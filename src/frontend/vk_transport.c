/* SPDX-License-Identifier: MIT */
/*
 * The vhost-kernel transport of the frontend: /dev/vhost-net with a tap as its back-end socket. Every step is
 * an ioctl that completes at once (VHD_FE_T_DONE); nothing here talks to a peer that could make us wait.
 *
 * vhost-net is one device per queue pair (it has no MQ and no control queue), so N pairs are N opens of
 * /dev/vhost-net, each given one queue of a multi-queue tap (VHOST_NET_SET_BACKEND): the frontend's queue q
 * is ring q % 2 of device q / 2. The virtio-net device features vhost-net does not know about (checksum and
 * segmentation offloads, MQ) are ours to offer, as QEMU's virtio-net does in front of vhost-net: HOST_* ones
 * because the tap takes offloaded frames from us anyway, GUEST_* ones by telling the tap (TUNSETOFFLOAD) to
 * hand us partially checksummed and unsegmented frames, MQ by pairing tap queues with devices.
 *
 * The tap carries the 12-byte virtio-net header itself (IFF_VNET_HDR, TUNSETVNETHDRSZ), so vhost-net passes
 * headers through untouched and VHOST_NET_F_VIRTIO_NET_HDR is never asked for. Ring and descriptor addresses
 * are our virtual addresses, mapped 1:1 by the memory table (at most the vhost module's max_mem_regions).
 *
 * A tap deleted under us (ip link del) shows as POLLERR on its fd, which pollfds() hands the caller's poll;
 * progress() then reports the device gone, the frontend goes down, and connect() opens everything again after
 * the back-off (creating the tap anew).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "spec/vhost.h"
#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "transport.h"
#include "vhostd/log.h"

#define VK_MAX_QP 16

/* Device features we emulate in front of vhost-net (see the top). */
#define VK_NET_FEATURES                                                                                       \
	(VHD_BIT(VIRTIO_NET_F_CSUM) | VHD_BIT(VIRTIO_NET_F_GUEST_CSUM) | VHD_BIT(VIRTIO_NET_F_GUEST_TSO4) |   \
	 VHD_BIT(VIRTIO_NET_F_GUEST_TSO6) | VHD_BIT(VIRTIO_NET_F_GUEST_ECN) | VHD_BIT(VIRTIO_NET_F_HOST_TSO4) | \
	 VHD_BIT(VIRTIO_NET_F_HOST_TSO6) | VHD_BIT(VIRTIO_NET_F_HOST_ECN) | VHD_BIT(VIRTIO_NET_F_MQ))
/* vhost bits that are not device features: never offered up, never set. */
#define VK_VHOST_PRIVATE (VHD_BIT(VHOST_F_LOG_ALL) | VHD_BIT(VHOST_NET_F_VIRTIO_NET_HDR))

struct vk_t {
	char dev[108];
	char tap[IFNAMSIZ];
	unsigned pairs;
	int vfd[VK_MAX_QP]; /* /dev/vhost-net, one per pair */
	int tfd[VK_MAX_QP]; /* the tap's queues, one per pair */
	bool open;
	uint64_t vhost_offered; /* what vhost-net itself offered on this connection */
	unsigned min_ms, max_ms, backoff_ms;
	struct timespec retry_at;
	bool told_open; /* an open failure was logged since the last success */
};

static struct vk_t *K(struct vhd_fe_transport *t)
{
	return t->priv;
}

static void close_all(struct vk_t *k)
{
	for (unsigned i = 0; i < VK_MAX_QP; i++) {
		if (k->vfd[i] >= 0)
			close(k->vfd[i]);
		if (k->tfd[i] >= 0)
			close(k->tfd[i]);
		k->vfd[i] = k->tfd[i] = -1;
	}
	k->open = false;
}

static long long ms_until(const struct timespec *at)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)(at->tv_sec - now.tv_sec) * 1000 + (at->tv_nsec - now.tv_nsec) / 1000000;
}

/* The next attempt after the back-off, which doubles up to max_ms. */
static void schedule_retry(struct vk_t *k)
{
	clock_gettime(CLOCK_MONOTONIC, &k->retry_at);
	k->retry_at.tv_sec += k->backoff_ms / 1000;
	k->retry_at.tv_nsec += (long)(k->backoff_ms % 1000) * 1000000;
	if (k->retry_at.tv_nsec >= 1000000000) {
		k->retry_at.tv_sec++;
		k->retry_at.tv_nsec -= 1000000000;
	}
	k->backoff_ms = k->backoff_ms * 2 > k->max_ms ? k->max_ms : k->backoff_ms * 2;
}

/* Queue i of the tap (created when missing). 0 or -errno, logged with what failed (once until a success:
 * connect() retries every back-off). */
static int open_tap_queue(struct vhd_fe_transport *t, unsigned i)
{
	struct vk_t *k = K(t);
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;
		if (!k->told_open)
			vhd_log(VHD_LOG_ERR, "%s: cannot open /dev/net/tun: %s", t->name, strerror(-rc));
		return rc;
	}
	k->tfd[i] = fd;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (k->pairs > 1 ? IFF_MULTI_QUEUE : 0);
	memcpy(ifr.ifr_name, k->tap, sizeof(k->tap));
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int rc = -errno;
		if (!k->told_open)
			vhd_log(VHD_LOG_ERR, "%s: tap %s queue %u: TUNSETIFF%s: %s", t->name, k->tap, i,
				k->pairs > 1 ? " (multi-queue: an existing tap must have been made with multi_queue)" : "",
				strerror(-rc));
		return rc;
	}
	return 0;
}

/* ---------------------------------------------------------------- the connection */

static int vk_open(struct vhd_fe_transport *t, const char *path, bool server, unsigned min_ms, unsigned max_ms)
{
	struct vk_t *k = K(t);
	if (server || !path || strlen(path) >= sizeof(k->dev))
		return -EINVAL;
	snprintf(k->dev, sizeof(k->dev), "%s", path);
	k->min_ms = min_ms ? min_ms : 100;
	k->max_ms = max_ms ? max_ms : 5000;
	if (k->max_ms < k->min_ms)
		k->max_ms = k->min_ms;
	k->backoff_ms = k->min_ms;
	clock_gettime(CLOCK_MONOTONIC, &k->retry_at); /* the first attempt at once */
	return 0;
}

static void vk_destroy(struct vhd_fe_transport *t)
{
	struct vk_t *k = K(t);
	if (!k)
		return;
	close_all(k);
	free(k);
	t->priv = NULL;
}

static unsigned vk_pollfds(struct vhd_fe_transport *t, struct pollfd *fds, unsigned max)
{
	struct vk_t *k = K(t);
	if (!k->open || max == 0)
		return 0;
	/* No events asked: only POLLERR, which a deleted tap's fds report (its queues go together). */
	fds[0] = (struct pollfd){.fd = k->tfd[0], .events = 0};
	return 1;
}

static int vk_timeout_ms(struct vhd_fe_transport *t)
{
	struct vk_t *k = K(t);
	if (k->open)
		return -1;
	long long ms = ms_until(&k->retry_at);
	return ms < 0 ? 0 : ms > 60000 ? 60000 : (int)ms + 1;
}

static bool vk_connect(struct vhd_fe_transport *t)
{
	struct vk_t *k = K(t);
	if (k->open)
		return false;
	if (ms_until(&k->retry_at) > 0)
		return false;
	int rc = 0;
	for (unsigned i = 0; rc == 0 && i < k->pairs; i++) {
		k->vfd[i] = open(k->dev, O_RDWR | O_CLOEXEC);
		if (k->vfd[i] < 0) {
			rc = -errno;
			if (!k->told_open)
				vhd_log(VHD_LOG_ERR, "%s: cannot open %s: %s", t->name, k->dev, strerror(-rc));
			break;
		}
		rc = open_tap_queue(t, i);
	}
	if (rc < 0) {
		k->told_open = true;
		close_all(k);
		schedule_retry(k);
		return false;
	}
	k->told_open = false;
	k->backoff_ms = k->min_ms;
	k->open = true;
	return true;
}

static bool vk_connected(const struct vhd_fe_transport *t)
{
	return ((const struct vk_t *)t->priv)->open;
}

static void vk_lost(struct vhd_fe_transport *t)
{
	struct vk_t *k = K(t);
	/* Closing the vhost-net fds stops its workers and drops their hold on our memory and the tap. */
	close_all(k);
	schedule_retry(k);
}

static int vk_progress(struct vhd_fe_transport *t)
{
	struct vk_t *k = K(t);
	if (!k->open)
		return -ENOTCONN;
	struct pollfd p = {.fd = k->tfd[0], .events = 0};
	if (poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP | POLLNVAL))) {
		vhd_log(VHD_LOG_ERR, "%s: tap %s is gone (deleted under us?): poll revents 0x%x", t->name, k->tap,
			(unsigned)p.revents);
		return -ENODEV;
	}
	return VHD_FE_T_DONE;
}

/* ---------------------------------------------------------------- setup steps */

/* ioctl request req with arg on fd; VHD_FE_T_DONE or -errno, logged naming the request and the queue. */
static int kio(struct vhd_fe_transport *t, int fd, unsigned long req, const char *what, int q, void *arg)
{
	if (ioctl(fd, req, arg) == 0)
		return VHD_FE_T_DONE;
	int rc = -errno;
	if (q >= 0)
		vhd_log(VHD_LOG_ERR, "%s: %s on queue %d: %s", t->name, what, q, strerror(-rc));
	else
		vhd_log(VHD_LOG_ERR, "%s: %s: %s", t->name, what, strerror(-rc));
	return rc;
}

static int vk_get_features(struct vhd_fe_transport *t, uint64_t *f)
{
	struct vk_t *k = K(t);
	uint64_t v = 0;
	int rc = kio(t, k->vfd[0], VHOST_GET_FEATURES, "VHOST_GET_FEATURES", -1, &v);
	if (rc < 0)
		return rc;
	k->vhost_offered = v & ~VK_VHOST_PRIVATE;
	/* No IOTLB behind this transport's frontend: ring addresses are our virtual addresses. */
	*f = (k->vhost_offered & ~VHD_BIT(VIRTIO_F_ACCESS_PLATFORM)) | VK_NET_FEATURES;
	return VHD_FE_T_DONE;
}

/* The tap offloads for what the device may hand the driver (the GUEST_* features). */
static unsigned tun_offloads(uint64_t f)
{
	if (!(f & VHD_BIT(VIRTIO_NET_F_GUEST_CSUM)))
		return 0;
	unsigned off = TUN_F_CSUM;
	if (f & VHD_BIT(VIRTIO_NET_F_GUEST_TSO4))
		off |= TUN_F_TSO4;
	if (f & VHD_BIT(VIRTIO_NET_F_GUEST_TSO6))
		off |= TUN_F_TSO6;
	if ((f & VHD_BIT(VIRTIO_NET_F_GUEST_ECN)) && (off & (TUN_F_TSO4 | TUN_F_TSO6)))
		off |= TUN_F_TSO_ECN;
	return off;
}

static int vk_set_features(struct vhd_fe_transport *t, uint64_t f)
{
	struct vk_t *k = K(t);
	uint64_t vf = f & k->vhost_offered;
	/* vhost-net's header length rule: 12 bytes with MRG_RXBUF or VERSION_1, 10 otherwise; the tap carries it. */
	int hlen = (f & (VHD_BIT(VIRTIO_NET_F_MRG_RXBUF) | VHD_BIT(VIRTIO_F_VERSION_1))) ? 12 : 10;
	int le = 1;
	for (unsigned i = 0; i < k->pairs; i++) {
		int rc = kio(t, k->vfd[i], VHOST_SET_FEATURES, "VHOST_SET_FEATURES", (int)(2 * i), &vf);
		if (rc == 0)
			rc = kio(t, k->tfd[i], TUNSETVNETHDRSZ, "tap TUNSETVNETHDRSZ", (int)(2 * i), &hlen);
		/* Virtio 1.x headers are little-endian whatever the host. */
		if (rc == 0 && (f & VHD_BIT(VIRTIO_F_VERSION_1)))
			rc = kio(t, k->tfd[i], TUNSETVNETLE, "tap TUNSETVNETLE", (int)(2 * i), &le);
		if (rc < 0)
			return rc;
	}
	/* One device-wide setting, through any of its queues. */
	unsigned off = tun_offloads(f);
	if (ioctl(k->tfd[0], TUNSETOFFLOAD, (unsigned long)off) < 0) {
		int rc = -errno;
		vhd_log(VHD_LOG_ERR, "%s: tap %s: TUNSETOFFLOAD 0x%x: %s", t->name, k->tap, off, strerror(-rc));
		return rc;
	}
	return VHD_FE_T_DONE;
}

static int vk_get_queue_num(struct vhd_fe_transport *t, uint64_t *pairs)
{
	*pairs = K(t)->pairs;
	return VHD_FE_T_DONE;
}

static int vk_set_owner(struct vhd_fe_transport *t)
{
	struct vk_t *k = K(t);
	for (unsigned i = 0; i < k->pairs; i++) {
		int rc = kio(t, k->vfd[i], VHOST_SET_OWNER, "VHOST_SET_OWNER", (int)(2 * i), NULL);
		if (rc < 0)
			return rc;
	}
	return VHD_FE_T_DONE;
}

/* The vhost module's limit on regions; 64 (its default) when the parameter cannot be read. */
static unsigned max_mem_regions(void)
{
	unsigned v = 64;
	FILE *f = fopen(VHOST_MAX_MEM_REGIONS_PARAM, "re");
	if (f) {
		if (fscanf(f, "%u", &v) != 1)
			v = 64;
		fclose(f);
	}
	return v;
}

static int vk_set_mem_table(struct vhd_fe_transport *t, const struct vhd_fe_region *r, unsigned n)
{
	struct vk_t *k = K(t);
	unsigned max = max_mem_regions();
	if (n > max || n > 8) {
		vhd_log(VHD_LOG_ERR,
			"%s: our memory needs %u region%s, the vhost module allows %u (max_mem_regions in %s)", t->name,
			n, n == 1 ? "" : "s", max, VHOST_MAX_MEM_REGIONS_PARAM);
		return -E2BIG;
	}
	/* The header and its flexible array of regions, in one buffer (ISO C has no struct holding both). */
	_Alignas(struct vhost_memory) unsigned char
		buf[sizeof(struct vhost_memory) + 8 * sizeof(struct vhost_memory_region)];
	memset(buf, 0, sizeof(buf));
	struct vhost_memory *mem = (struct vhost_memory *)buf;
	mem->nregions = n;
	for (unsigned i = 0; i < n; i++)
		mem->regions[i] = (struct vhost_memory_region){.guest_phys_addr = r[i].guest_addr,
							       .memory_size = r[i].size, .userspace_addr = r[i].addr};
	for (unsigned i = 0; i < k->pairs; i++) {
		int rc = kio(t, k->vfd[i], VHOST_SET_MEM_TABLE, "VHOST_SET_MEM_TABLE", (int)(2 * i), mem);
		if (rc == -E2BIG)
			vhd_log(VHD_LOG_ERR, "%s: the vhost module refused %u region%s (max_mem_regions in %s)", t->name,
				n, n == 1 ? "" : "s", VHOST_MAX_MEM_REGIONS_PARAM);
		if (rc < 0)
			return rc;
	}
	return VHD_FE_T_DONE;
}

static int vring_state(struct vhd_fe_transport *t, unsigned long req, const char *what, unsigned q, unsigned num)
{
	struct vhost_vring_state s = {.index = q % 2, .num = num};
	return kio(t, K(t)->vfd[q / 2], req, what, (int)q, &s);
}

static int vk_set_vring_num(struct vhd_fe_transport *t, unsigned q, unsigned num)
{
	return vring_state(t, VHOST_SET_VRING_NUM, "VHOST_SET_VRING_NUM", q, num);
}

static int vk_set_vring_base(struct vhd_fe_transport *t, unsigned q, unsigned base)
{
	return vring_state(t, VHOST_SET_VRING_BASE, "VHOST_SET_VRING_BASE", q, base);
}

static int vk_set_vring_addr(struct vhd_fe_transport *t, unsigned q, uint64_t desc, uint64_t avail, uint64_t used)
{
	struct vhost_vring_addr a = {.index = q % 2, .desc_user_addr = desc, .avail_user_addr = avail,
				     .used_user_addr = used};
	return kio(t, K(t)->vfd[q / 2], VHOST_SET_VRING_ADDR, "VHOST_SET_VRING_ADDR", (int)q, &a);
}

static int vring_file(struct vhd_fe_transport *t, unsigned long req, const char *what, unsigned q, int fd)
{
	struct vhost_vring_file f = {.index = q % 2, .fd = fd};
	return kio(t, K(t)->vfd[q / 2], req, what, (int)q, &f);
}

static int vk_set_vring_kick(struct vhd_fe_transport *t, unsigned q, int fd)
{
	return vring_file(t, VHOST_SET_VRING_KICK, "VHOST_SET_VRING_KICK", q, fd);
}

static int vk_set_vring_call(struct vhd_fe_transport *t, unsigned q, int fd)
{
	return vring_file(t, VHOST_SET_VRING_CALL, "VHOST_SET_VRING_CALL", q, fd);
}

/* A ring starts moving when vhost-net has its back-end: the tap queue of its pair. */
static int vk_set_vring_enable(struct vhd_fe_transport *t, unsigned q, bool on)
{
	struct vk_t *k = K(t);
	return vring_file(t, VHOST_NET_SET_BACKEND, "VHOST_NET_SET_BACKEND", q, on ? k->tfd[q / 2] : -1);
}

static int vk_set_status(struct vhd_fe_transport *t, uint8_t status)
{
	(void)t;
	(void)status;
	return VHD_FE_T_DONE;
}

static int vk_set_backend_channel(struct vhd_fe_transport *t)
{
	(void)t;
	return VHD_FE_T_DONE;
}

static int vk_iotlb_update(struct vhd_fe_transport *t, const struct vhd_fe_map *map)
{
	(void)t;
	(void)map;
	return -EOPNOTSUPP;
}

static const struct vhd_fe_transport_ops vk_ops = {
	.name = "vhost-kernel",
	.open = vk_open,
	.destroy = vk_destroy,
	.pollfds = vk_pollfds,
	.timeout_ms = vk_timeout_ms,
	.connect = vk_connect,
	.connected = vk_connected,
	.lost = vk_lost,
	.progress = vk_progress,
	.get_features = vk_get_features,
	.set_features = vk_set_features,
	.get_queue_num = vk_get_queue_num,
	.set_owner = vk_set_owner,
	.set_mem_table = vk_set_mem_table,
	.set_vring_num = vk_set_vring_num,
	.set_vring_base = vk_set_vring_base,
	.set_vring_addr = vk_set_vring_addr,
	.set_vring_kick = vk_set_vring_kick,
	.set_vring_call = vk_set_vring_call,
	.set_vring_enable = vk_set_vring_enable,
	.set_status = vk_set_status,
	.set_backend_channel = vk_set_backend_channel,
	.iotlb_update = vk_iotlb_update,
};

int vhd_fe_vk_transport_init(struct vhd_fe_transport *t, const char *name, const char *tap, unsigned pairs)
{
	if (!tap || !*tap || strlen(tap) >= IFNAMSIZ || pairs == 0 || pairs > VK_MAX_QP)
		return -EINVAL;
	struct vk_t *k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	for (unsigned i = 0; i < VK_MAX_QP; i++)
		k->vfd[i] = k->tfd[i] = -1;
	memcpy(k->tap, tap, strlen(tap) + 1);
	k->pairs = pairs;
	t->ops = &vk_ops;
	t->name = name;
	t->priv = k;
	return 0;
}
