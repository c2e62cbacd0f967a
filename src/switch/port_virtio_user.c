/* SPDX-License-Identifier: MIT */
/*
 * virtio-user port: we are the driver of a remote vhost-user device (another switch, DPDK's vhost, a
 * vhost-user NIC of any kind), without a VM.
 *
 *   virtio-user path=PATH [server] [queues=N] [packed] [mrg=on|off] [iommu=on|off] [inflight=on|off]
 *               [msg_timeout_ms=MS]

 * iommu=on puts the device behind an IOMMU (vhd_fe_config.iommu, docs/viommu.md): ACCESS_PLATFORM required,
 * our memory at IOVAs, mapped with IOTLB updates, the device's misses answered on the control thread.
 *
 * inflight=on (split and packed rings) keeps the rings across a back-end killed and restarted (vhd_fe_config.inflight,
 * docs/vhost-user.md): no VHD_FE_DOWN then, and the next VHD_FE_UP finds the rings as they were.
 *
 * Rings and buffers live in the frontend's memfd, which the device maps. Received frames are copied out of
 * that memory into the switch's packets at once, and frames to send are copied into it, so the port's own
 * pools are touched only inside the data-path window below and never by the forwarding code at large.
 *
 * The frontend may go down (the device went away) and come up again at any time; its callbacks run on the
 * control thread. Each direction of each queue pair has its own window, a flag pair (ready, busy) like
 * vhd_vu_queue_acquire()'s: a forwarding thread enters by setting busy then checking ready; the control thread
 * closes by clearing ready then waiting for busy to clear. RX and TX have separate windows because different
 * forwarding threads may drive them at once: with one shared busy flag, the side leaving would clear it while
 * the other is still inside, and the control thread would free the rings under that one.
 */
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/json.h"
#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "switch/port.h"
#include "switch/port_virtio_user.h"
#include "vhostd/frontend.h"
#include "vhostd/log.h"
#include "vhostd/net.h"
#include "vhostd/virtq.h"

#define VUP_BUF_SIZE (VHD_PKT_HEADROOM + 65536 + 512) /* a GSO frame in one buffer */
#define VUP_RX_BUFS 320
#define VUP_TX_BUFS 384

/* One direction's window; each on its own cache line, since the RX and TX sides run on different threads. */
struct vup_win {
	_Alignas(64) atomic_int ready;
	atomic_int busy;
};

struct vup_qp {
	struct vup_win rx_win, tx_win;
	struct vhd_pktpool *rx_pool, *tx_pool;
	struct vhd_net_stats rx_st, tx_st;
};

struct vup_port {
	struct vhd_fe *fe;
	char path[108];
	char tap[IFNAMSIZ]; /* vhost-net: its tap; "" for vhost-user */
	bool server, packed, vdpa;
	unsigned nqp;
	struct vhd_net_cfg cfg; /* written only while every window is closed */
	bool cfg_ok;
	unsigned ups, downs;
	struct vup_qp qp[SW_MAX_QUEUES];
};

/* seq_cst store of busy, then load of ready: pairs with close_window()'s store of ready = 0 then load of busy
 * (store-buffering: with both seq_cst, at least one side sees the other's store). */
static bool enter(struct vup_win *w)
{
	atomic_store(&w->busy, 1);
	if (atomic_load(&w->ready))
		return true;
	atomic_store(&w->busy, 0);
	return false;
}

static void leave(struct vup_win *w)
{
	atomic_store(&w->busy, 0);
}

/* seq_cst store of ready = 0, then load of busy: pairs with enter()'s store of busy then load of ready. */
static void close_window(struct vup_win *w)
{
	atomic_store(&w->ready, 0);
	while (atomic_load(&w->busy))
		sched_yield();
}

unsigned vup_rx_burst(struct sw_port *p, unsigned qn, struct vhd_pktpool *pool, struct vhd_pkt **pkts,
			     unsigned n)
{
	struct vup_port *vp = p->priv;
	struct vup_qp *q = &vp->qp[qn];
	if (!enter(&q->rx_win))
		return 0;
	struct vhd_vq *rx = vhd_fe_vq(vp->fe, 2 * qn);
	struct vhd_pkt *got[SW_BURST];
	if (n > SW_BURST)
		n = SW_BURST;
	/* A queue the device broke (vhd_vq_error(), logged once) stays so until the back-end sets it up again:
	 * counted in the call where it broke (which may still return the frames before the lie), skipped after. */
	if (rx && vhd_vq_error(rx))
		rx = NULL;
	int r = rx ? vhd_net_drv_recv(rx, &vp->cfg, got, n, &q->rx_st) : 0;
	if (rx && vhd_vq_error(rx))
		atomic_fetch_add_explicit(&p->queue_breaks, 1, memory_order_relaxed);
	unsigned out = 0;
	if (r > 0) {
		unsigned have = vhd_pkt_alloc_bulk(pool, pkts, (unsigned)r);
		for (unsigned i = 0; i < (unsigned)r; i++) {
			if (i < have && got[i]->len <= vhd_pkt_tailroom(pkts[out])) {
				memcpy(vhd_pkt_data(pkts[out]), vhd_pkt_data(got[i]), got[i]->len);
				pkts[out]->len = got[i]->len;
				pkts[out]->meta = got[i]->meta;
				out++;
			}
		}
		vhd_pkt_free_bulk(pkts + out, have - out);
		vhd_pkt_free_bulk(got, (unsigned)r);
	}
	if (rx) {
		int a = vhd_net_drv_refill(rx, &vp->cfg, q->rx_pool, &q->rx_st);
		if (a > 0 && vhd_vq_need_notify(rx))
			vhd_fe_kick(vp->fe, 2 * qn);
	}
	leave(&q->rx_win);
	return out;
}

/* Sleep on the device's interrupts for the receive queue (our call eventfd). */
int vup_rx_arm(struct sw_port *p, unsigned qn, struct pollfd *pfd)
{
	struct vup_port *vp = p->priv;
	struct vup_qp *q = &vp->qp[qn];
	*pfd = (struct pollfd){.fd = -1, .events = POLLIN};
	if (!enter(&q->rx_win))
		return 0; /* down: the control thread wakes us when it comes up */
	struct vhd_vq *rx = vhd_fe_vq(vp->fe, 2 * qn);
	int r = 0;
	if (rx && !vhd_vq_error(rx)) {
		if (vhd_vq_enable_notify(rx)) {
			vhd_vq_disable_notify(rx);
			r = 1;
		} else {
			pfd->fd = vhd_fe_call_fd(vp->fe, 2 * qn);
		}
	}
	leave(&q->rx_win);
	return r;
}

void vup_rx_disarm(struct sw_port *p, unsigned qn, short revents)
{
	struct vup_port *vp = p->priv;
	struct vup_qp *q = &vp->qp[qn];
	(void)revents;
	if (!enter(&q->rx_win))
		return;
	struct vhd_vq *rx = vhd_fe_vq(vp->fe, 2 * qn);
	if (rx) {
		vhd_vq_disable_notify(rx);
		sw_eventfd_drain(vhd_fe_call_fd(vp->fe, 2 * qn));
	}
	leave(&q->rx_win);
}

unsigned vup_tx_burst(struct sw_port *p, unsigned qn, struct vhd_pkt **pkts, unsigned n)
{
	struct vup_port *vp = p->priv;
	struct vup_qp *q = &vp->qp[qn];
	if (!enter(&q->tx_win))
		return 0;
	struct vhd_vq *tx = vhd_fe_vq(vp->fe, 2 * qn + 1);
	if (tx && vhd_vq_error(tx))
		tx = NULL; /* as in vup_rx_burst() */
	unsigned sent = 0;
	if (tx) {
		struct vhd_pkt *c[SW_BURST];
		if (n > SW_BURST)
			n = SW_BURST;
		/* Completed buffers stay in the ring until it needs room (vhd_net_drv_xmit); only when the pool
		 * runs short are they all collected here. */
		unsigned have = vhd_pkt_alloc_bulk(q->tx_pool, c, n), k = 0;
		if (have < n) {
			vhd_net_drv_xmit(tx, &vp->cfg, NULL, 0, &q->tx_st);
			have += vhd_pkt_alloc_bulk(q->tx_pool, c + have, n - have);
		}
		for (; k < have && pkts[k]->len <= vhd_pkt_tailroom(c[k]); k++) {
			memcpy(vhd_pkt_data(c[k]), vhd_pkt_data(pkts[k]), pkts[k]->len);
			c[k]->len = pkts[k]->len;
			c[k]->meta = pkts[k]->meta;
		}
		int r = vhd_net_drv_xmit(tx, &vp->cfg, c, k, &q->tx_st);
		sent = r > 0 ? (unsigned)r : 0;
		if (vhd_vq_error(tx))
			atomic_fetch_add_explicit(&p->queue_breaks, 1, memory_order_relaxed);
		vhd_pkt_free_bulk(c + sent, have - sent);
		if (sent && vhd_vq_need_notify(tx))
			vhd_fe_kick(vp->fe, 2 * qn + 1);
	}
	leave(&q->tx_win);
	vhd_pkt_free_bulk(pkts, sent); /* ours now, and copied */
	return sent;
}

/* vhost-net's tap exists once the frontend is up (made anew after it was deleted): bring its link up, so the
 * host's side only has to give it an address. */
static void tap_link_up(struct sw_port *p, const char *tap)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, tap, IFNAMSIZ);
	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0 ||
	    (!(ifr.ifr_flags & IFF_UP) && (ifr.ifr_flags |= IFF_UP, ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)))
		vhd_log(VHD_LOG_WARN, "%s: cannot bring tap %s up: %s", p->name, tap, strerror(errno));
	if (fd >= 0)
		close(fd);
}

static void fe_event(struct vhd_fe *fe, enum vhd_fe_event ev, void *opaque)
{
	struct sw_port *p = opaque;
	struct vup_port *vp = p->priv;
	if (ev == VHD_FE_UP) {
		/* Rings kept across a back-end restart (inflight=on) had their windows left open: a forwarding
		 * thread may be inside one, using the config rewritten below. */
		for (unsigned i = 0; i < vp->nqp; i++) {
			close_window(&vp->qp[i].rx_win);
			close_window(&vp->qp[i].tx_win);
		}
		vp->ups++;
		if (vp->tap[0])
			tap_link_up(p, vp->tap);
		vp->cfg_ok = vhd_net_cfg_init(&vp->cfg, vhd_fe_features(fe)) == 0;
		if (!vp->cfg_ok) {
			vhd_log(VHD_LOG_ERR, "%s: negotiated features 0x%llx unusable", p->name,
				(unsigned long long)vhd_fe_features(fe));
			return;
		}
		for (unsigned i = 0; i < vp->nqp; i++) {
			vhd_net_drv_refill(vhd_fe_vq(fe, 2 * i), &vp->cfg, vp->qp[i].rx_pool, &vp->qp[i].rx_st);
			vhd_fe_kick(fe, 2 * i);
			atomic_store(&vp->qp[i].rx_win.ready, 1);
			atomic_store(&vp->qp[i].tx_win.ready, 1);
		}
	} else {
		vp->downs++;
		for (unsigned i = 0; i < vp->nqp; i++) {
			close_window(&vp->qp[i].rx_win);
			close_window(&vp->qp[i].tx_win);
		}
		for (unsigned i = 0; i < 2 * vp->nqp; i++)
			vhd_net_drv_release(vhd_fe_vq(fe, i));
	}
}

/* vhd_fe_config's tap, path and mode with the port's own settings; see switch/port_virtio_user.h. */
int vup_open(struct sw_port *p, const struct vup_params *a, char *err, size_t errlen)
{
	bool vdpa = a->transport == VHD_FE_TRANSPORT_VHOST_VDPA;
	const char *what = a->tap ? "vhost-net" : vdpa ? "vdpa" : "virtio-user";
	struct vup_port *vp = calloc(1, sizeof(*vp));
	if (!vp)
		return -ENOMEM;
	snprintf(vp->path, sizeof(vp->path), "%s", a->path);
	if (a->tap)
		snprintf(vp->tap, sizeof(vp->tap), "%s", a->tap);
	vp->server = a->server;
	vp->vdpa = vdpa;
	vp->packed = a->packed;
	vp->nqp = a->queues;
	uint64_t f = vhd_fe_default_features() | VHD_BIT(VIRTIO_NET_F_CSUM) | VHD_BIT(VIRTIO_NET_F_GUEST_CSUM) |
		     VHD_BIT(VIRTIO_NET_F_HOST_TSO4) | VHD_BIT(VIRTIO_NET_F_HOST_TSO6) |
		     VHD_BIT(VIRTIO_NET_F_GUEST_TSO4) | VHD_BIT(VIRTIO_NET_F_GUEST_TSO6);
	if (vp->packed)
		f |= VHD_BIT(VIRTIO_F_RING_PACKED);
	if (!a->mrg)
		f &= ~VHD_BIT(VIRTIO_NET_F_MRG_RXBUF);
	size_t area = (size_t)(VUP_RX_BUFS + VUP_TX_BUFS) * VUP_BUF_SIZE;
	struct vhd_fe_config c = {
		.transport = a->transport,
		.path = vp->path,
		.tap = a->tap,
		.server = vp->server,
		.queue_pairs = (uint16_t)vp->nqp,
		.features = f,
		.buf_area_size = area,
		.iommu = a->iommu,
		.inflight = a->inflight,
		.reply_timeout_ms = a->reply_timeout_ms,
		.event = fe_event,
		.opaque = p,
		.name = p->name,
	};
	p->priv = vp; /* for fe_event, which first runs from a later vhd_fe_dispatch() */
	int rc = vhd_fe_create(&c, &vp->fe);
	if (rc < 0) {
		if (a->tap)
			snprintf(err, errlen, "vhost-net: %s with tap %s: %s", vp->path, vp->tap, strerror(-rc));
		else if (vdpa)
			snprintf(err, errlen, "vdpa: opening %s: %s", vp->path, strerror(-rc));
		else
			snprintf(err, errlen, "virtio-user: %s %s: %s", vp->server ? "listening on" : "connecting to",
				 vp->path, strerror(-rc));
		free(vp);
		p->priv = NULL;
		return rc;
	}
	for (unsigned i = 0; i < vp->nqp && rc == 0; i++) {
		size_t len;
		uint8_t *b = vhd_fe_buf_area(vp->fe, i, &len);
		size_t rx_len = (size_t)VUP_RX_BUFS * VUP_BUF_SIZE;
		uint64_t iova = vhd_fe_buf_iova(vp->fe, i); /* the device's address of b[0] */
		rc = vhd_pktpool_create_in(b, rx_len, iova, VUP_RX_BUFS, VUP_BUF_SIZE, &vp->qp[i].rx_pool);
		if (rc == 0)
			rc = vhd_pktpool_create_in(b + rx_len, len - rx_len, iova + rx_len, VUP_TX_BUFS, VUP_BUF_SIZE,
						   &vp->qp[i].tx_pool);
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s: buffer pools: %s", what, strerror(-rc));
		vhd_fe_destroy(vp->fe);
		for (unsigned i = 0; i < vp->nqp; i++) {
			vhd_pktpool_destroy(vp->qp[i].rx_pool);
			vhd_pktpool_destroy(vp->qp[i].tx_pool);
		}
		free(vp);
		p->priv = NULL;
		return rc;
	}
	p->n_rxq = p->n_txq = vp->nqp;
	/* The data path fits every frame to what the peer negotiated (completing checksums, dropping GSO it
	 * cannot take, counted), so the switch hands it anything. */
	p->rx_off = p->tx_off = (struct sw_offloads){.csum = true, .ecn = true, .gso = 0xff};
	return 0;
}

static int vup_create(struct sw_port *p, const struct sw_kv *args, unsigned nargs, char *err, size_t errlen)
{
	static const char *const known[] = {"path", "server", "queues", "packed", "mrg", "iommu", "inflight",
					    "msg_timeout_ms", NULL};
	int rc = sw_kv_check(args, nargs, known, "virtio-user", err, errlen);
	if (rc < 0)
		return rc;
	char path[sizeof(((struct vup_port *)0)->path)];
	if ((rc = sw_kv_required(args, nargs, "path", "the vhost-user device's socket", path, sizeof(path), err,
				 errlen)) < 0)
		return rc;
	struct vup_params a = {.transport = VHD_FE_TRANSPORT_VHOST_USER,
			       .path = path,
			       .server = sw_kv_get(args, nargs, "server", NULL) != NULL,
			       .packed = sw_kv_get(args, nargs, "packed", NULL) != NULL};
	if ((rc = sw_kv_uint(args, nargs, "queues", 1, 1, SW_MAX_QUEUES, &a.queues, err, errlen)) < 0 ||
	    (rc = sw_kv_uint(args, nargs, "msg_timeout_ms", 0, 1, 3600000, &a.reply_timeout_ms, err, errlen)) < 0 ||
	    (rc = sw_kv_on_off(args, nargs, "mrg", true, &a.mrg, err, errlen)) < 0 ||
	    (rc = sw_kv_on_off(args, nargs, "iommu", false, &a.iommu, err, errlen)) < 0 ||
	    (rc = sw_kv_on_off(args, nargs, "inflight", false, &a.inflight, err, errlen)) < 0)
		return rc;
	return vup_open(p, &a, err, errlen);
}

void vup_destroy(struct sw_port *p)
{
	struct vup_port *vp = p->priv;
	/* Destroying the frontend reports DOWN (closing the windows, releasing buffers) if it was up. */
	vhd_fe_destroy(vp->fe);
	for (unsigned i = 0; i < vp->nqp; i++) {
		vhd_pktpool_destroy(vp->qp[i].rx_pool);
		vhd_pktpool_destroy(vp->qp[i].tx_pool);
	}
	free(vp);
}

unsigned vup_pollfds(struct sw_port *p, struct pollfd *fds, unsigned max)
{
	return vhd_fe_pollfds(((struct vup_port *)p->priv)->fe, fds, max);
}

int vup_timeout_ms(struct sw_port *p)
{
	return vhd_fe_timeout_ms(((struct vup_port *)p->priv)->fe);
}

void vup_dispatch(struct sw_port *p)
{
	struct vup_port *vp = p->priv;
	/* Also without input: a fresh connection is set up from here. */
	vhd_fe_dispatch(vp->fe);
}

bool vup_link_up(struct sw_port *p)
{
	struct vup_port *vp = p->priv;
	return vhd_fe_up(vp->fe) && vp->cfg_ok;
}

void vup_describe(struct sw_port *p, struct sw_json *w)
{
	struct vup_port *vp = p->priv;
	uint64_t f = vhd_fe_up(vp->fe) ? vhd_fe_features(vp->fe) : 0;
	sw_json_str(w, "path", vp->path);
	if (vp->tap[0])
		sw_json_str(w, "ifname", vp->tap);
	else if (!vp->vdpa) /* a vdpa device is a node: no socket, no mode */
		sw_json_str(w, "mode", vp->server ? "server" : "client");
	sw_json_bool(w, "up", vhd_fe_up(vp->fe));
	sw_json_strf(w, "features", "0x%llx", (unsigned long long)f);
	sw_json_str(w, "ring", f & VHD_BIT(VIRTIO_F_RING_PACKED) ? "packed" : "split");
	sw_json_u64(w, "queue_pairs", vp->nqp);
	sw_json_u64(w, "ups", vp->ups);
	sw_json_u64(w, "downs", vp->downs);
}

const struct sw_port_ops sw_virtio_user_ops = VUP_PORT_OPS("virtio-user", vup_create);
