/* SPDX-License-Identifier: MIT */
/*
 * vhost-user port: we serve a virtio-net device to a VM (QEMU as the front-end), listening on path (the
 * default) or connecting to QEMU's server socket and reconnecting (client), the two modes libvirt's
 * <interface type='vhostuser'> uses.
 *
 *   vhost-user path=PATH [client] [queues=N] [mrg=on|off] [tso=on|off] [borrow=on|off] [config=on|off]
 *              [iommu=on|off] [iotlb_per_burst=on|off] [owner=USER|UID] [group=GROUP|GID] [mode=OCTAL]
 *
 * iommu=on (the default) offers VIRTIO_F_ACCESS_PLATFORM: a guest behind a vIOMMU then hands us IOVAs, which the
 * back-end translates through its IOTLB (vhostd/iotlb.h, docs/viommu.md); a guest without one does not accept
 * the feature and nothing changes for it. iotlb_per_burst=on (default off) makes the back-end translate every
 * buffer afresh (vhd_vu_config.iotlb_per_burst): only a guest in lazy invalidation whose NIC has no ATS needs it,
 * since QEMU then forwards none of the invalidations of its lazy flushes (docs/viommu.md).
 *
 * Frames the guest transmits are its TX queues (odd indices), dequeued as views of its buffers (borrow=on, the
 * default: the switch copies them straight into the outputs, and the buffers go back to the guest once the
 * burst is forwarded) or copied into the switch's packets (borrow=off, and always for frames with offload
 * requests or split over several segments); frames for the guest are copied into its RX queues (even indices).
 * The negotiated features are read after each successful queue acquire: the back-end changes them only while
 * every queue is stopped, so the acquire orders that write before our read, and each queue keeps its own
 * derived vhd_net_cfg.
 */
#include <errno.h>
#include <stddef.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/json.h"
#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "switch/port.h"
#include "switch/switch.h"
#include "vhostd/log.h"
#include "vhostd/net.h"
#include "vhostd/vhost_user.h"
#include "vhostd/virtq.h"

struct vu_queue {
	_Alignas(64) atomic_int tx_lock; /* see vu_tx_burst() */
	struct sw_net_qcfg nc;
	struct vhd_net_stats st;
	/* The guest's transmit queues (odd indices), borrowing: views of its frames, the chains they lie in, and
	 * the queue held from rx_burst until rx_done. */
	struct vhd_pktpool *views;
	struct vhd_vq *held;
	struct vhd_net_borrowed *bor;
};

struct vu_port {
	struct vhd_vu_dev *dev;
	char path[108];
	bool client;
	bool iommu; /* ACCESS_PLATFORM offered: the iotlb_* counters mean something */
	unsigned nqp;
	bool ready; /* VHD_VU_READY seen and not yet undone: the link is up (control thread) */
	/* A RARP to send as if the guest had (SEND_RARP after a live migration): its MAC in the low 48 bits and
	 * VU_RARP_PENDING, or 0. Stored by the control thread, taken by receive queue 0's thread. */
	_Atomic uint64_t rarp;
	_Atomic uint64_t bad_features;
	struct vu_queue q[2 * SW_MAX_QUEUES];
};

#define VU_RARP_PENDING (1ull << 48)

/*
 * The RARP SEND_RARP asked for, as the first frame of receive queue 0's burst: the switch learns the guest's MAC
 * on this port at once (the entry the source port of the migration had moves here) and floods the broadcast to
 * every other port, so that their peers and the switches beyond learn it too.
 */
static __attribute__((noinline, cold)) unsigned vu_rx_rarp(struct vu_port *vp, struct vhd_pktpool *pool,
							    struct vhd_pkt **pkts)
{
	/* Acquire pairs with the release store in vu_dispatch(). */
	uint64_t v = atomic_exchange_explicit(&vp->rarp, 0, memory_order_acquire);
	if (!v || vhd_pkt_alloc_bulk(pool, pkts, 1) != 1)
		return 0;
	uint8_t mac[6];
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)(v >> (40 - 8 * i));
	pkts[0]->len = vhd_vu_build_rarp(mac, vhd_pkt_data(pkts[0]));
	return 1;
}

/* The queue's data-path configuration for the features now negotiated, or NULL. */
static inline const struct vhd_net_cfg *queue_cfg(struct vu_port *vp, unsigned qi)
{
	return sw_net_qcfg(&vp->q[qi].nc, vhd_vu_dev_features(vp->dev), &vp->bad_features);
}

static inline unsigned vu_rx_queue(struct sw_port *p, struct vu_port *vp, unsigned qi, struct vhd_pktpool *pool,
				   struct vhd_pkt **pkts, unsigned n);

static unsigned vu_rx_burst(struct sw_port *p, unsigned q, struct vhd_pktpool *pool, struct vhd_pkt **pkts,
			    unsigned n)
{
	struct vu_port *vp = p->priv;
	unsigned qi = 2 * q + 1;
	/* Relaxed: a pending RARP seen a burst late costs nothing; vu_rx_rarp() takes it with acquire. */
	if (__builtin_expect(q == 0 && atomic_load_explicit(&vp->rarp, memory_order_relaxed) != 0, 0) && n) {
		unsigned k = vu_rx_rarp(vp, pool, pkts);
		if (k)
			return k + (n > k ? vu_rx_queue(p, vp, qi, pool, pkts + k, n - k) : 0);
	}
	return vu_rx_queue(p, vp, qi, pool, pkts, n);
}

/* Frames the guest sent on its transmit queue qi. */
static inline unsigned vu_rx_queue(struct sw_port *p, struct vu_port *vp, unsigned qi, struct vhd_pktpool *pool,
				   struct vhd_pkt **pkts, unsigned n)
{
	struct vhd_vq *vq = vhd_vu_queue_acquire(vp->dev, qi);
	if (!vq)
		return 0;
	int r = 0;
	/* A broken queue stays broken until the guest sets it up again: skip it, it was counted when it broke. */
	const struct vhd_net_cfg *cfg;
	if (!vhd_vq_error(vq) && (cfg = queue_cfg(vp, qi))) {
		struct vu_queue *qs = &vp->q[qi];
		if (qs->views) {
			/* Frames stay in the guest's buffers and go straight from there into the outputs: one copy per
			 * frame instead of two. The queue stays held (its memory mapped) until rx_done. */
			r = vhd_net_dev_dequeue_borrow(vq, cfg, pool, qs->views, pkts, n, qs->bor, &qs->st);
			if (r > 0) {
				qs->held = vq;
				return (unsigned)r;
			}
			/* Nothing to forward: give back at once whatever was taken (dropped frames). */
			if (r == 0 && vhd_net_dev_dequeue_done(vq, qs->bor) < 0)
				r = -EIO;
		} else {
			r = vhd_net_dev_dequeue(vq, cfg, pool, pkts, n, &qs->st);
		}
		/* Chains of dropped frames were given back even when nothing came out. */
		if (r >= 0 && vhd_vq_need_notify(vq))
			vhd_vu_queue_notify(vp->dev, qi);
		if (r < 0)
			atomic_fetch_add_explicit(&p->queue_breaks, 1, memory_order_relaxed);
	}
	vhd_vu_queue_release(vp->dev, qi);
	return r > 0 ? (unsigned)r : 0;
}

/* Sleep on the guest's kicks of its transmit queue: notifications on (EVENT_IDX or the flags, whichever was
 * negotiated), then the check that nothing slipped in before they were (vhd_vq_enable_notify()). A queue not
 * started, or waiting for an IOTLB answer, has nothing to wait on: the control thread wakes us when that changes. */
static int vu_rx_arm(struct sw_port *p, unsigned q, struct pollfd *pfd)
{
	struct vu_port *vp = p->priv;
	unsigned qi = 2 * q + 1;
	*pfd = (struct pollfd){.fd = -1, .events = POLLIN};
	if (q == 0 && atomic_load_explicit(&vp->rarp, memory_order_relaxed))
		return 1;
	struct vhd_vq *vq = vhd_vu_queue_acquire(vp->dev, qi);
	if (!vq)
		return 0;
	int r = 0, kick = vhd_vu_queue_kick_fd(vp->dev, qi);
	if (kick < 0) {
		r = -1; /* the front-end polls us: it will not kick */
	} else if (!vhd_vq_error(vq)) {
		if (vhd_vq_enable_notify(vq)) {
			vhd_vq_disable_notify(vq);
			r = 1;
		} else {
			pfd->fd = kick;
		}
	}
	vhd_vu_queue_release(vp->dev, qi);
	return r;
}

static void vu_rx_disarm(struct sw_port *p, unsigned q, short revents)
{
	struct vu_port *vp = p->priv;
	unsigned qi = 2 * q + 1;
	(void)revents;
	struct vhd_vq *vq = vhd_vu_queue_acquire(vp->dev, qi);
	if (!vq)
		return; /* stopped meanwhile: a restarted queue begins with notifications off */
	vhd_vq_disable_notify(vq);
	/* The fd asked for now, not the one slept on: the control thread may have replaced it meanwhile. */
	sw_eventfd_drain(vhd_vu_queue_kick_fd(vp->dev, qi));
	vhd_vu_queue_release(vp->dev, qi);
}

/* The burst's views are done with: the guest gets its transmit buffers back, and the queue is let go. */
static void vu_rx_done(struct sw_port *p, unsigned q)
{
	struct vu_port *vp = p->priv;
	unsigned qi = 2 * q + 1;
	struct vu_queue *qs = &vp->q[qi];
	struct vhd_vq *vq = qs->held;
	if (!vq)
		return;
	qs->held = NULL;
	if (vhd_net_dev_dequeue_done(vq, qs->bor) < 0)
		atomic_fetch_add_explicit(&p->queue_breaks, 1, memory_order_relaxed);
	else if (vhd_vq_need_notify(vq))
		vhd_vu_queue_notify(vp->dev, qi);
	vhd_vu_queue_release(vp->dev, qi);
}

static void txq_lock(struct vu_queue *q)
{
	/* Acquire pairs with the release in txq_unlock(): the ring state the previous holder wrote is visible. */
	while (atomic_exchange_explicit(&q->tx_lock, 1, memory_order_acquire))
		sched_yield();
}

static void txq_unlock(struct vu_queue *q)
{
	atomic_store_explicit(&q->tx_lock, 0, memory_order_release);
}

/*
 * A guest may enable fewer queue pairs than the port offers (Linux uses as many as it has vCPUs), so a thread
 * whose transmit queue the guest left disabled sends on pair 0 instead, which another thread may be using at
 * the same moment: pair 0 of a multi-queue port is therefore entered under its lock. Any other queue has one
 * thread (or the switch's own lock when threads share it), and a port with one pair never falls back: no lock,
 * since a locked instruction waits for the store buffer, full of the burst's ring stores, to drain.
 */
static unsigned vu_tx_burst(struct sw_port *p, unsigned q, struct vhd_pkt **pkts, unsigned n)
{
	struct vu_port *vp = p->priv;
	unsigned qi = 2 * q;
	bool locked = qi == 0 && vp->nqp > 1;
	if (locked)
		txq_lock(&vp->q[qi]);
	struct vhd_vq *vq = vhd_vu_queue_acquire(vp->dev, qi);
	if (!vq && qi != 0) {
		qi = 0;
		locked = true;
		txq_lock(&vp->q[qi]);
		vq = vhd_vu_queue_acquire(vp->dev, qi);
	}
	if (!vq) {
		if (locked)
			txq_unlock(&vp->q[qi]);
		return 0;
	}
	int r = 0;
	const struct vhd_net_cfg *cfg;
	if (!vhd_vq_error(vq) && (cfg = queue_cfg(vp, qi))) {
		r = vhd_net_dev_enqueue(vq, cfg, pkts, n, &vp->q[qi].st);
		if (r > 0 && vhd_vq_need_notify(vq))
			vhd_vu_queue_notify(vp->dev, qi);
		if (r < 0)
			atomic_fetch_add_explicit(&p->queue_breaks, 1, memory_order_relaxed);
	}
	vhd_vu_queue_release(vp->dev, qi);
	if (locked)
		txq_unlock(&vp->q[qi]);
	if (r <= 0)
		return 0;
	vhd_pkt_free_bulk(pkts, (unsigned)r); /* copied into the guest (or dropped and counted there) */
	return (unsigned)r;
}

static void vu_event(struct vhd_vu_dev *dev, enum vhd_vu_event ev, unsigned qidx, void *opaque)
{
	(void)dev;
	(void)qidx;
	struct vu_port *vp = opaque;
	if (ev == VHD_VU_READY)
		vp->ready = true;
	else if (ev == VHD_VU_NOT_READY || ev == VHD_VU_DISCONNECTED)
		vp->ready = false;
}

static void free_borrowing(struct vu_port *vp)
{
	for (unsigned i = 0; i < 2 * SW_MAX_QUEUES; i++) {
		vhd_pktpool_destroy(vp->q[i].views);
		free(vp->q[i].bor);
	}
}

/* A user or group given by name or number; numbers need not exist in the user database. */
static int parse_id(const char *key, const char *v, bool group, unsigned *out, char *err, size_t errlen)
{
	char *end;
	errno = 0;
	unsigned long n = *v >= '0' && *v <= '9' ? strtoul(v, &end, 10) : 0;
	if (*v >= '0' && *v <= '9') {
		/* (uid_t)-1 means "no change" to chown: not an id anyone can be given. */
		if (errno || *end || n >= 0xffffffffUL) {
			snprintf(err, errlen, "vhost-user: %s=%s: not a %s name or a number below 4294967295", key, v,
				 group ? "group" : "user");
			return -EINVAL;
		}
		*out = (unsigned)n;
		return 0;
	}
	long sz = sysconf(group ? _SC_GETGR_R_SIZE_MAX : _SC_GETPW_R_SIZE_MAX);
	size_t len = sz > 0 && sz < 1 << 20 ? (size_t)sz : 16384;
	char *buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	int rc;
	if (group) {
		struct group g, *r = NULL;
		rc = getgrnam_r(v, &g, buf, len, &r);
		if (!rc && r)
			*out = (unsigned)g.gr_gid;
		rc = rc ? rc : r ? 0 : ENOENT;
	} else {
		struct passwd pw, *r = NULL;
		rc = getpwnam_r(v, &pw, buf, len, &r);
		if (!rc && r)
			*out = (unsigned)pw.pw_uid;
		rc = rc ? rc : r ? 0 : ENOENT;
	}
	free(buf);
	if (rc) {
		snprintf(err, errlen, "vhost-user: %s=%s: %s", key, v,
			 rc == ENOENT ? (group ? "no such group" : "no such user") : strerror(rc));
		return -EINVAL;
	}
	return 0;
}

/* owner=, group=, mode= into c (server sockets only). */
static int parse_access(const struct sw_kv *args, unsigned nargs, struct vhd_vu_config *c, char *err,
			size_t errlen)
{
	const char *owner = sw_kv_get(args, nargs, "owner", NULL), *group = sw_kv_get(args, nargs, "group", NULL);
	const char *mode = sw_kv_get(args, nargs, "mode", NULL);
	if (!owner && !group && !mode)
		return 0;
	if (c->client) {
		snprintf(err, errlen, "vhost-user: owner=, group= and mode= set up a socket we listen on, not one we "
				      "connect to (client)");
		return -EINVAL;
	}
	unsigned id;
	int rc;
	if (owner) {
		if ((rc = parse_id("owner", owner, false, &id, err, errlen)) < 0)
			return rc;
		c->set_owner = true;
		c->owner = (uid_t)id;
	}
	if (group) {
		if ((rc = parse_id("group", group, true, &id, err, errlen)) < 0)
			return rc;
		c->set_group = true;
		c->group = (gid_t)id;
	}
	if (mode) {
		char *end;
		errno = 0;
		unsigned long m = strtoul(mode, &end, 8);
		if (*mode < '0' || *mode > '7' || *end || errno || m == 0 || m > 0777) {
			snprintf(err, errlen, "vhost-user: mode=%s: want octal permission bits 1..0777, e.g. 0660", mode);
			return -EINVAL;
		}
		c->mode = (unsigned)m;
	}
	return 0;
}

static int vu_create(struct sw_port *p, const struct sw_kv *args, unsigned nargs, char *err, size_t errlen)
{
	static const char *const known[] = {"path", "client", "queues", "mrg", "tso", "borrow", "config", "iommu",
					    "iotlb_per_burst", "owner", "group", "mode", "msg_timeout_ms", NULL};
	int rc = sw_kv_check(args, nargs, known, "vhost-user", err, errlen);
	if (rc < 0)
		return rc;
	char path[sizeof(((struct vu_port *)0)->path)];
	if ((rc = sw_kv_required(args, nargs, "path", "the vhost-user socket", path, sizeof(path), err, errlen)) < 0)
		return rc;
	struct vu_port *vp = calloc(1, sizeof(*vp));
	if (!vp)
		return -ENOMEM;
	memcpy(vp->path, path, sizeof(path));
	vp->client = sw_kv_get(args, nargs, "client", NULL) != NULL;
	bool mrg, tso, borrow, config, iommu, per_burst;
	unsigned msg_timeout_ms; /* 0: the library's default */
	if ((rc = sw_kv_uint(args, nargs, "queues", 1, 1, SW_MAX_QUEUES, &vp->nqp, err, errlen)) < 0 ||
	    (rc = sw_kv_uint(args, nargs, "msg_timeout_ms", 0, 1, 3600000, &msg_timeout_ms, err, errlen)) < 0 ||
	    (rc = sw_kv_on_off(args, nargs, "mrg", true, &mrg, err, errlen)) < 0 ||
	    (rc = sw_kv_on_off(args, nargs, "tso", true, &tso, err, errlen)) < 0 ||
	    (rc = sw_kv_on_off(args, nargs, "borrow", true, &borrow, err, errlen)) < 0 ||
	    (rc = sw_kv_on_off(args, nargs, "config", false, &config, err, errlen)) < 0 ||
	    (rc = sw_kv_on_off(args, nargs, "iommu", true, &iommu, err, errlen)) < 0 ||
	    (rc = sw_kv_on_off(args, nargs, "iotlb_per_burst", false, &per_burst, err, errlen)) < 0) {
		free(vp);
		return rc;
	}
	for (unsigned i = 0; borrow && i < vp->nqp; i++) {
		struct vu_queue *q = &vp->q[2 * i + 1];
		/* A burst is at most SW_BURST packets, all given back (rx_done) before the next. */
		if (vhd_pktpool_create_views(SW_BURST, &q->views) < 0 || !(q->bor = calloc(1, sizeof(*q->bor)))) {
			snprintf(err, errlen, "vhost-user: no memory for queue %u's borrowed frames", i);
			free_borrowing(vp);
			free(vp);
			return -ENOMEM;
		}
	}
	uint64_t f = vhd_vu_default_features();
	if (!mrg)
		f &= ~VHD_BIT(VIRTIO_NET_F_MRG_RXBUF);
	if (!tso)
		f &= ~(VHD_BIT(VIRTIO_NET_F_HOST_TSO4) | VHD_BIT(VIRTIO_NET_F_HOST_TSO6) |
		       VHD_BIT(VIRTIO_NET_F_GUEST_TSO4) | VHD_BIT(VIRTIO_NET_F_GUEST_TSO6));
	if (iommu)
		f |= VHD_BIT(VIRTIO_F_ACCESS_PLATFORM);
	vp->iommu = iommu;
	struct vhd_vu_config c = {
		.path = vp->path,
		.client = vp->client,
		.max_queue_pairs = (uint16_t)vp->nqp,
		.features = f,
		.iotlb_per_burst = per_burst,
		.msg_timeout_ms = msg_timeout_ms,
		.mtu = (uint16_t)(p->mtu ? p->mtu : 0),
		.event = vu_event,
		.opaque = vp,
		.name = p->name,
		/* Off unless asked for: QEMU's vhost-user-net reads no config space from us and warns when offered. */
		.config_space = config,
	};
	if ((rc = parse_access(args, nargs, &c, err, errlen)) < 0) {
		free_borrowing(vp);
		free(vp);
		return rc;
	}
	if (p->import) {
		struct sw_port_import *imp = p->import;
		char ierr[160];
		imp->taken = true; /* the import closes the fds, whatever happens */
		rc = vhd_vu_dev_import(&c, imp->blob, imp->len, imp->fds, imp->nfds, &vp->dev, ierr, sizeof(ierr));
		if (rc < 0) {
			snprintf(err, errlen, "vhost-user: taking over %s: %s", vp->path, ierr);
			free_borrowing(vp);
			free(vp);
			return rc;
		}
	} else {
		rc = vhd_vu_dev_create(&c, &vp->dev);
	}
	if (rc < 0) {
		snprintf(err, errlen, "vhost-user: %s %s: %s", vp->client ? "connecting to" : "listening on", vp->path,
			 rc == -EADDRINUSE ? "in use: something (another port or process) listens there"
					   : strerror(-rc));
		free_borrowing(vp);
		free(vp);
		return rc;
	}
	p->priv = vp;
	p->n_rxq = p->n_txq = vp->nqp;
	/* The data path fits every frame to what the peer negotiated (completing checksums, dropping GSO it
	 * cannot take, counted), so the switch hands it anything. */
	p->rx_off = p->tx_off = (struct sw_offloads){.csum = true, .ecn = true, .gso = 0xff};
	return 0;
}

static void vu_destroy(struct sw_port *p)
{
	struct vu_port *vp = p->priv;
	vhd_vu_dev_destroy(vp->dev);
	free_borrowing(vp);
	free(vp);
}

static unsigned vu_pollfds(struct sw_port *p, struct pollfd *fds, unsigned max)
{
	return vhd_vu_dev_pollfds(((struct vu_port *)p->priv)->dev, fds, max);
}

static int vu_timeout_ms(struct sw_port *p)
{
	return vhd_vu_dev_timeout_ms(((struct vu_port *)p->priv)->dev);
}

static void vu_dispatch(struct sw_port *p)
{
	struct vu_port *vp = p->priv;
	/* One message per call; a front-end setting up sends dozens back to back, so take what is there. */
	vhd_vu_dev_dispatch(vp->dev);
	for (int i = 0; i < 64; i++) {
		struct pollfd fds[4];
		unsigned n = vhd_vu_dev_pollfds(vp->dev, fds, 4);
		if (poll(fds, n, 0) <= 0)
			break;
		vhd_vu_dev_dispatch(vp->dev);
	}
	uint8_t mac[6];
	if (vhd_vu_dev_take_rarp(vp->dev, mac)) {
		uint64_t v = VU_RARP_PENDING;
		for (int i = 0; i < 6; i++)
			v |= (uint64_t)mac[i] << (40 - 8 * i);
		/* Release pairs with the acquire exchange in vu_rx_rarp(). */
		atomic_store_explicit(&vp->rarp, v, memory_order_release);
	}
}

static bool vu_link_up(struct sw_port *p)
{
	return ((struct vu_port *)p->priv)->ready;
}

/* The data path's per-queue counters, as the metrics (per queue) and, from SHOWN on, show's info (summed) name
 * them. */
static const struct sw_field q_fields[] = {
	{"packets", "packets the queue moved", offsetof(struct vhd_net_stats, packets)},
	{"bytes", "frame bytes the queue moved (virtio-net headers excluded)", offsetof(struct vhd_net_stats, bytes)},
	{"too_small", "frames shorter than an Ethernet header", offsetof(struct vhd_net_stats, too_small)},
#define SHOWN 3
	{"bad_header", "frames refused for their virtio-net header", offsetof(struct vhd_net_stats, bad_header)},
	{"too_big", "frames larger than the buffers or the port allow", offsetof(struct vhd_net_stats, too_big)},
	{"no_buffers", "frames not delivered: the guest had posted no buffers", offsetof(struct vhd_net_stats, no_buffers)},
	{"gso_unsupported", "GSO frames the peer did not negotiate", offsetof(struct vhd_net_stats, gso_unsupported)},
	{"ring_errors", "ring errors (what the guest wrote was refused)", offsetof(struct vhd_net_stats, errors)},
};
#define NQ_FIELDS (sizeof(q_fields) / sizeof(q_fields[0]))

/* Field f of the queues' counters, written by the forwarding threads with relaxed atomic stores (vhostd/net.h),
 * summed over n queues from q. */
static uint64_t q_counter(const struct vu_queue *q, size_t f, unsigned n)
{
	return sw_field_sum(&q_fields[f], &q->st, sizeof(*q), n);
}

/* The device's vIOMMU counters (struct vhd_vu_stats), as info and the metrics name them. */
static const struct sw_field dev_fields[] = {
	{"iotlb_misses", "IOTLB MISS requests sent to the front-end", offsetof(struct vhd_vu_stats, iotlb_misses)},
	{"iotlb_updates", "IOTLB updates accepted", offsetof(struct vhd_vu_stats, iotlb_updates)},
	{"iotlb_invalidations", "IOTLB invalidations that removed a translation",
	 offsetof(struct vhd_vu_stats, iotlb_invalidations)},
	{"iotlb_waits", "times a queue stopped at a chain whose address missed in the IOTLB, to wait for it",
	 offsetof(struct vhd_vu_stats, iotlb_waits)},
};
#define NDEV_FIELDS (sizeof(dev_fields) / sizeof(dev_fields[0]))

static void vu_describe(struct sw_port *p, struct sw_json *w)
{
	struct vu_port *vp = p->priv;
	uint64_t f = vhd_vu_dev_features(vp->dev);
	sw_json_str(w, "path", vp->path);
	sw_json_str(w, "mode", vp->client ? "client" : "server");
	sw_json_bool(w, "connected", vhd_vu_dev_connected(vp->dev));
	sw_json_strf(w, "features", "0x%llx", (unsigned long long)f);
	sw_json_str(w, "ring", f & VHD_BIT(VIRTIO_F_RING_PACKED) ? "packed" : "split");
	sw_json_bool(w, "mrg_rxbuf", f & VHD_BIT(VIRTIO_NET_F_MRG_RXBUF));
	sw_json_bool(w, "iommu", f & VHD_BIT(VIRTIO_F_ACCESS_PLATFORM));
	sw_json_u64(w, "queue_pairs", vp->nqp);
	for (size_t f = SHOWN; f < NQ_FIELDS; f++)
		sw_json_u64(w, q_fields[f].name, q_counter(vp->q, f, 2 * vp->nqp));
	struct vhd_vu_stats vs;
	vhd_vu_dev_stats(vp->dev, &vs);
	sw_json_u64(w, "notify_failures", vs.notify_failures);
	for (size_t i = 0; vp->iommu && i < NDEV_FIELDS; i++)
		sw_json_u64(w, dev_fields[i].name, sw_field_sum(&dev_fields[i], &vs, sizeof(vs), 1));
}

/* Per virtqueue (its index: even the guest's receive queues, odd its transmit queues), what describe sums. */
static void vu_counters(struct sw_port *p, void (*fn)(void *arg, const char *name, const char *help, int queue,
							 uint64_t v),
			void *arg)
{
	struct vu_port *vp = p->priv;
	for (size_t f = 0; f < NQ_FIELDS; f++)
		for (unsigned i = 0; i < 2 * vp->nqp; i++)
			fn(arg, q_fields[f].name, q_fields[f].help, (int)i, q_counter(&vp->q[i], f, 1));
	struct vhd_vu_stats vs;
	vhd_vu_dev_stats(vp->dev, &vs);
	fn(arg, "notify_failures", "guest notifications (call eventfd writes) that failed", -1, vs.notify_failures);
	for (size_t i = 0; vp->iommu && i < NDEV_FIELDS; i++)
		fn(arg, dev_fields[i].name, dev_fields[i].help, -1, sw_field_sum(&dev_fields[i], &vs, sizeof(vs), 1));
}

_Static_assert(SW_HANDOVER_MAX >= VHD_VU_EXPORT_MAX && SW_HANDOVER_MAX_FDS >= VHD_VU_EXPORT_MAX_FDS,
	       "a vhost-user device's export fits the switch's handover buffers");

static int vu_handover_export(struct sw_port *p, void *buf, size_t cap, size_t *len, int *fds, unsigned *nfds,
			      char *err, size_t errlen)
{
	struct vu_port *vp = p->priv;
	int rc = vhd_vu_dev_export(vp->dev, buf, cap, len, fds, nfds);
	/* A message half read or written: let it finish (bounded by the message deadline), then try again. */
	for (int i = 0; rc == -EBUSY && i < 100; i++) {
		struct pollfd fds_[4];
		unsigned n = vhd_vu_dev_pollfds(vp->dev, fds_, 4);
		poll(fds_, n, 10);
		vu_dispatch(p);
		rc = vhd_vu_dev_export(vp->dev, buf, cap, len, fds, nfds);
	}
	if (rc == -EOPNOTSUPP)
		snprintf(err, errlen, "the guest negotiated a vIOMMU (ACCESS_PLATFORM), whose IOTLB is not handed over");
	else if (rc == -EBUSY)
		snprintf(err, errlen, "the front-end keeps a message half sent or a reply unread");
	return rc;
}

static void vu_handover_resume(struct sw_port *p)
{
	vhd_vu_dev_resume(((struct vu_port *)p->priv)->dev);
}

const struct sw_port_ops sw_vhost_user_ops = {
	.type = "vhost-user",
	.create = vu_create,
	.destroy = vu_destroy,
	.pollfds = vu_pollfds,
	.timeout_ms = vu_timeout_ms,
	.dispatch = vu_dispatch,
	.link_up = vu_link_up,
	.describe = vu_describe,
	.counters = vu_counters,
	.rx_burst = vu_rx_burst,
	.rx_done = vu_rx_done,
	.rx_arm = vu_rx_arm,
	.rx_disarm = vu_rx_disarm,
	.tx_burst = vu_tx_burst,
	.handover_export = vu_handover_export,
	.handover_resume = vu_handover_resume,
};
