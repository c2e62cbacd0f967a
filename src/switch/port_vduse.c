/* SPDX-License-Identifier: MIT */
/*
 * vduse port: we are a virtio-net device the local kernel drives (vhostd/vduse.h). Attached to the vDPA bus, it
 * becomes a netdev of this host when virtio_vdpa binds it (a container's interface with no veth or bridge
 * between it and the switch), or /dev/vhost-vdpa-N for a VM or a userspace driver when vhost_vdpa does.
 *
 *   vduse name=NAME [mac=MAC] [mtu=N] [packed=on|off] [tso=on|off] [size=N] [state=DIR]
 *
 * One queue pair (the kernel refuses the control queue that MQ needs). Frames the driver transmits (queue 1)
 * are copied into the switch's packets, frames for it are copied into its receive buffers (queue 0). The
 * device's own thread answers the kernel, so nothing here waits on it; del-port detaches and destroys it.
 * The device outlives a vhostd that dies; the next one's add-port of the same name resumes it from the state
 * kept in DIR (vhd_vduse_config.state_dir).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/json.h"
#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "switch/port.h"
#include "vhostd/log.h"
#include "vhostd/net.h"
#include "vhostd/vduse.h"
#include "vhostd/virtq.h"

/* Where a vduse port keeps what a restarted vhostd needs to resume the device (docs/switch.md). */
#define VD_STATE_DIR "/run/vhostd/vduse"

struct vd_queue {
	_Alignas(64) struct sw_net_qcfg nc;
	struct vhd_net_stats st;
};

struct vd_port {
	struct vhd_vduse_dev *dev;
	char name[VHD_VDUSE_NAME_MAX + 1];
	_Atomic uint64_t bad_features;
	struct vd_queue q[2];
};

/* The queue's data-path configuration, or NULL. The device changes its features only with the queue's window
 * closed, so the acquire that opened it orders that write before this read. */
static inline const struct vhd_net_cfg *queue_cfg(struct vd_port *vp, unsigned qi)
{
	return sw_net_qcfg(&vp->q[qi].nc, vhd_vduse_dev_features(vp->dev), &vp->bad_features);
}

/* Frames the driver sent on its transmit queue (1). */
static unsigned vd_rx_burst(struct sw_port *p, unsigned q, struct vhd_pktpool *pool, struct vhd_pkt **pkts,
			    unsigned n)
{
	(void)q;
	struct vd_port *vp = p->priv;
	struct vhd_vq *vq = vhd_vduse_queue_acquire(vp->dev, 1);
	if (!vq)
		return 0;
	int r = 0;
	/* A broken queue stays broken until the driver resets the device: skip it, counted when it broke. */
	const struct vhd_net_cfg *cfg;
	if (!vhd_vq_error(vq) && (cfg = queue_cfg(vp, 1))) {
		r = vhd_net_dev_dequeue(vq, cfg, pool, pkts, n, &vp->q[1].st);
		/* Chains of dropped frames were given back even when nothing came out. */
		if (r >= 0 && vhd_vq_need_notify(vq))
			vhd_vduse_queue_notify(vp->dev, 1);
		if (r < 0)
			atomic_fetch_add_explicit(&p->queue_breaks, 1, memory_order_relaxed);
	}
	vhd_vduse_queue_release(vp->dev, 1);
	return r > 0 ? (unsigned)r : 0;
}

/* Adaptive idle: sleep on the driver's kicks of its transmit queue (1). The kick eventfd is the device's own,
 * made when it was created, non-blocking and read by nobody else. A queue not set up, or waiting for a mapping
 * the request thread is making, changes without the control thread knowing: keep polling it then (-1). */
static int vd_rx_arm(struct sw_port *p, unsigned q, struct pollfd *pfd)
{
	(void)q;
	struct vd_port *vp = p->priv;
	struct vhd_vq *vq = vhd_vduse_queue_acquire(vp->dev, 1);
	if (!vq)
		return -1;
	int r = 0;
	if (vhd_vq_error(vq)) {
		r = -1;
	} else if (vhd_vq_enable_notify(vq)) {
		vhd_vq_disable_notify(vq);
		r = 1;
	} else {
		*pfd = (struct pollfd){.fd = vhd_vduse_queue_kick_fd(vp->dev, 1), .events = POLLIN};
	}
	vhd_vduse_queue_release(vp->dev, 1);
	return r;
}

static void vd_rx_disarm(struct sw_port *p, unsigned q, short revents)
{
	(void)q;
	struct vd_port *vp = p->priv;
	struct vhd_vq *vq = vhd_vduse_queue_acquire(vp->dev, 1);
	if (vq) {
		vhd_vq_disable_notify(vq);
		vhd_vduse_queue_release(vp->dev, 1);
	}
	(void)revents;
	uint64_t v;
	(void)!read(vhd_vduse_queue_kick_fd(vp->dev, 1), &v, sizeof(v)); /* non-blocking: empty is EAGAIN */
}

/* Frames for the driver, into its receive queue (0). */
static unsigned vd_tx_burst(struct sw_port *p, unsigned q, struct vhd_pkt **pkts, unsigned n)
{
	(void)q;
	struct vd_port *vp = p->priv;
	struct vhd_vq *vq = vhd_vduse_queue_acquire(vp->dev, 0);
	if (!vq)
		return 0;
	int r = 0;
	const struct vhd_net_cfg *cfg;
	if (!vhd_vq_error(vq) && (cfg = queue_cfg(vp, 0))) {
		r = vhd_net_dev_enqueue(vq, cfg, pkts, n, &vp->q[0].st);
		if (r >= 0 && vhd_vq_need_notify(vq))
			vhd_vduse_queue_notify(vp->dev, 0);
		if (r < 0)
			atomic_fetch_add_explicit(&p->queue_breaks, 1, memory_order_relaxed);
	}
	vhd_vduse_queue_release(vp->dev, 0);
	if (r <= 0)
		return 0;
	vhd_pkt_free_bulk(pkts, (unsigned)r); /* copied into the driver's buffers (or dropped and counted there) */
	return (unsigned)r;
}

static int vd_create(struct sw_port *p, const struct sw_kv *args, unsigned nargs, char *err, size_t errlen)
{
	static const char *const known[] = {"name", "mac", "packed", "tso", "size", "state", NULL};
	int rc = sw_kv_check(args, nargs, known, "vduse", err, errlen);
	if (rc < 0)
		return rc;
	struct vd_port *vp = calloc(1, sizeof(*vp));
	if (!vp)
		return -ENOMEM;
	struct vhd_vduse_config c = {.attach = true, .mtu = (uint16_t)p->mtu};
	const char *mac = sw_kv_get(args, nargs, "mac", NULL);
	bool packed, tso;
	unsigned size;
	if ((rc = sw_kv_required(args, nargs, "name", "the VDUSE device name", vp->name, sizeof(vp->name), err,
				 errlen)) < 0 ||
	    (mac && (rc = sw_parse_mac("vduse", mac, c.mac, err, errlen)) < 0) ||
	    (rc = sw_kv_on_off(args, nargs, "packed", true, &packed, err, errlen)) < 0 ||
	    (rc = sw_kv_on_off(args, nargs, "tso", true, &tso, err, errlen)) < 0 ||
	    (rc = sw_kv_uint(args, nargs, "size", 256, 2, 32768, &size, err, errlen)) < 0) {
		free(vp);
		return rc;
	}
	if (strchr(vp->name, '/')) {
		snprintf(err, errlen, "vduse: name=%s: a device name has no '/'", vp->name);
		free(vp);
		return -EINVAL;
	}
	uint64_t f = vhd_vduse_default_features();
	if (!packed)
		f &= ~VHD_BIT(VIRTIO_F_RING_PACKED);
	if (!tso)
		f &= ~(VHD_BIT(VIRTIO_NET_F_HOST_TSO4) | VHD_BIT(VIRTIO_NET_F_HOST_TSO6) |
		       VHD_BIT(VIRTIO_NET_F_GUEST_TSO4) | VHD_BIT(VIRTIO_NET_F_GUEST_TSO6));
	c.features = f;
	c.name = vp->name;
	c.state_dir = sw_kv_get(args, nargs, "state", VD_STATE_DIR);
	c.queue_size = (uint16_t)size;
	rc = vhd_vduse_dev_create(&c, &vp->dev);
	if (rc < 0) {
		snprintf(err, errlen, "vduse: name=%s: %s", vp->name,
			 rc == -EEXIST   ? "a VDUSE device of that name exists already"
			 : rc == -ENOENT ? "no /dev/vduse/control or vdpa netlink family (modules vduse, vdpa loaded?)"
					 : strerror(-rc));
		free(vp);
		return rc;
	}
	p->priv = vp;
	p->n_rxq = p->n_txq = 1;
	/* The data path fits every frame to what the driver negotiated (completing checksums, dropping GSO it
	 * cannot take, counted), so the switch hands it anything. */
	p->rx_off = p->tx_off = (struct sw_offloads){.csum = true, .ecn = true, .gso = 0xff};
	return 0;
}

static void vd_destroy(struct sw_port *p)
{
	struct vd_port *vp = p->priv;
	vhd_vduse_dev_destroy(vp->dev);
	free(vp);
}

static bool vd_link_up(struct sw_port *p)
{
	return vhd_vduse_dev_ready(((struct vd_port *)p->priv)->dev);
}

static const struct sw_field q_fields[] = {
	{"packets", "packets the queue moved", offsetof(struct vhd_net_stats, packets)},
	{"bytes", "frame bytes the queue moved (virtio-net headers excluded)", offsetof(struct vhd_net_stats, bytes)},
	{"too_small", "frames shorter than an Ethernet header", offsetof(struct vhd_net_stats, too_small)},
	{"bad_header", "frames refused for their virtio-net header", offsetof(struct vhd_net_stats, bad_header)},
	{"too_big", "frames larger than the buffers or the port allow", offsetof(struct vhd_net_stats, too_big)},
	{"no_buffers", "frames not delivered: the driver had posted no buffers",
	 offsetof(struct vhd_net_stats, no_buffers)},
	{"ring_errors", "ring errors (what the driver wrote was refused)", offsetof(struct vhd_net_stats, errors)},
};
#define NQ_FIELDS (sizeof(q_fields) / sizeof(q_fields[0]))

static const struct sw_field dev_fields[] = {
	{"requests", "kernel requests answered", offsetof(struct vhd_vduse_stats, requests)},
	{"requests_failed", "kernel requests answered with a failure", offsetof(struct vhd_vduse_stats, requests_failed)},
	{"resets", "device resets (status 0)", offsetof(struct vhd_vduse_stats, resets)},
	{"iova_maps", "IOVA regions mapped", offsetof(struct vhd_vduse_stats, maps)},
	{"iova_unmaps", "IOVA regions unmapped", offsetof(struct vhd_vduse_stats, unmaps)},
	{"iova_misses", "bursts that stopped at an IOVA not mapped yet", offsetof(struct vhd_vduse_stats, misses)},
	{"irq_failures", "interrupts the kernel refused", offsetof(struct vhd_vduse_stats, irq_failures)},
	{"iotlb_updates", "UPDATE_IOTLB requests (the driver's memory changed)",
	 offsetof(struct vhd_vduse_stats, iotlb_updates)},
	{"queues_parked", "queues stopped because their memory was unmapped",
	 offsetof(struct vhd_vduse_stats, queues_parked)},
};
#define NDEV_FIELDS (sizeof(dev_fields) / sizeof(dev_fields[0]))

static void vd_describe(struct sw_port *p, struct sw_json *w)
{
	struct vd_port *vp = p->priv;
	uint64_t f = vhd_vduse_dev_features(vp->dev);
	sw_json_str(w, "name", vp->name);
	sw_json_strf(w, "status", "0x%x", vhd_vduse_dev_status(vp->dev));
	sw_json_strf(w, "features", "0x%llx", (unsigned long long)f);
	sw_json_str(w, "ring", f & VHD_BIT(VIRTIO_F_RING_PACKED) ? "packed" : "split");
	for (size_t i = 3; i < NQ_FIELDS; i++)
		sw_json_u64(w, q_fields[i].name, sw_field_sum(&q_fields[i], &vp->q[0].st, sizeof(vp->q[0]), 2));
	struct vhd_vduse_stats vs;
	vhd_vduse_dev_stats(vp->dev, &vs);
	for (size_t i = 0; i < NDEV_FIELDS; i++)
		sw_json_u64(w, dev_fields[i].name, sw_field_sum(&dev_fields[i], &vs, sizeof(vs), 1));
}

static void vd_counters(struct sw_port *p, void (*fn)(void *arg, const char *name, const char *help, int queue,
							 uint64_t v),
			void *arg)
{
	struct vd_port *vp = p->priv;
	for (size_t f = 0; f < NQ_FIELDS; f++)
		for (unsigned i = 0; i < 2; i++)
			fn(arg, q_fields[f].name, q_fields[f].help, (int)i,
			   sw_field_sum(&q_fields[f], &vp->q[i].st, sizeof(vp->q[i]), 1));
	struct vhd_vduse_stats vs;
	vhd_vduse_dev_stats(vp->dev, &vs);
	for (size_t i = 0; i < NDEV_FIELDS; i++)
		fn(arg, dev_fields[i].name, dev_fields[i].help, -1, sw_field_sum(&dev_fields[i], &vs, sizeof(vs), 1));
}

const struct sw_port_ops sw_vduse_ops = {
	.type = "vduse",
	.create = vd_create,
	.destroy = vd_destroy,
	.pollfds = sw_no_pollfds,
	.timeout_ms = sw_no_timeout_ms,
	.dispatch = sw_no_dispatch,
	.link_up = vd_link_up,
	.describe = vd_describe,
	.counters = vd_counters,
	.rx_burst = vd_rx_burst,
	.rx_arm = vd_rx_arm,
	.rx_disarm = vd_rx_disarm,
	.tx_burst = vd_tx_burst,
};
