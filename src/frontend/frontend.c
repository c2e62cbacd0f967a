/* SPDX-License-Identifier: MIT */
/*
 * Frontend ("virtio-user"): the guest's side of a vhost device, set up through a transport ops table.
 *
 * Shared memory: one memfd, mapped once for the frontend's lifetime. Each queue owns a page-aligned slot big
 * enough for either ring layout (the layout is only known after negotiation); the buffer areas follow. Guest
 * addresses are our virtual addresses, so the memory table is a single region mapped 1:1.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "transport.h"
#include "vhost_user/conn.h"
#include "vhost_user/msg.h"
#include "vhostd/frontend.h"
#include "vhostd/log.h"
#include "vhostd/virtq.h"

#define FE_MAX_QP 16
#define FE_MAX_Q (2 * FE_MAX_QP)
#define PAGE 4096u

struct fe_queue {
	struct vhd_vq *vq;
	size_t ring_off; /* into the memfd */
	int kick_fd, call_fd;
};

struct vhd_fe {
	struct vhd_fe_config cfg;
	char name[32];
	struct vhu_conn conn;
	struct vhd_fe_transport t;
	bool up;
	uint64_t features;
	int memfd;
	uint8_t *mem;
	size_t mem_len, ring_slot, buf_off;
	unsigned nq;
	struct fe_queue q[FE_MAX_Q];
};

uint64_t vhd_fe_default_features(void)
{
	return VHD_BIT(VIRTIO_F_VERSION_1) | VHD_BIT(VIRTIO_F_EVENT_IDX) | VHD_BIT(VIRTIO_NET_F_MRG_RXBUF) |
	       VHD_BIT(VIRTIO_NET_F_MQ) | VHD_BIT(VIRTIO_NET_F_STATUS);
}

static size_t page_up(size_t v)
{
	return (v + PAGE - 1) & ~(size_t)(PAGE - 1);
}

int vhd_fe_create(const struct vhd_fe_config *cfg, struct vhd_fe **out)
{
	if (cfg->transport != VHD_FE_VHOST_USER || cfg->queue_pairs == 0 || cfg->queue_pairs > FE_MAX_QP)
		return -EINVAL;
	struct vhd_fe *fe = calloc(1, sizeof(*fe));
	if (!fe)
		return -ENOMEM;
	fe->cfg = *cfg;
	snprintf(fe->name, sizeof(fe->name), "%s", cfg->name ? cfg->name : "frontend");
	fe->cfg.name = fe->name;
	if (!fe->cfg.queue_size)
		fe->cfg.queue_size = 256;
	if (!fe->cfg.features)
		fe->cfg.features = vhd_fe_default_features();
	if (!fe->cfg.buf_area_size)
		fe->cfg.buf_area_size = 4u << 20;
	fe->cfg.buf_area_size = page_up(fe->cfg.buf_area_size);
	fe->nq = 2u * cfg->queue_pairs;
	fe->memfd = -1;
	for (unsigned i = 0; i < FE_MAX_Q; i++)
		fe->q[i].kick_fd = fe->q[i].call_fd = -1;

	struct vhd_vq_layout ls, lp;
	int rc = vhd_vq_layout(false, fe->cfg.queue_size, &ls);
	if (rc == 0)
		rc = vhd_vq_layout(true, fe->cfg.queue_size, &lp);
	if (rc < 0)
		goto fail;
	fe->ring_slot = page_up(ls.size > lp.size ? ls.size : lp.size);
	fe->buf_off = fe->ring_slot * fe->nq;
	fe->mem_len = fe->buf_off + fe->cfg.buf_area_size * cfg->queue_pairs;
	fe->memfd = memfd_create("vhd-frontend", MFD_CLOEXEC);
	if (fe->memfd < 0 || ftruncate(fe->memfd, (off_t)fe->mem_len) < 0) {
		rc = -errno;
		goto fail;
	}
	fe->mem = mmap(NULL, fe->mem_len, PROT_READ | PROT_WRITE, MAP_SHARED, fe->memfd, 0);
	if (fe->mem == MAP_FAILED) {
		fe->mem = NULL;
		rc = -errno;
		goto fail;
	}
	for (unsigned i = 0; i < fe->nq; i++)
		fe->q[i].ring_off = fe->ring_slot * i;
	rc = vhu_conn_init(&fe->conn, cfg->path, !cfg->server, cfg->reconnect_min_ms, cfg->reconnect_max_ms);
	if (rc < 0)
		goto fail;
	fe->cfg.path = fe->conn.path;
	fe->t.fd = -1;
	*out = fe;
	/* A client may already be connected: set up on the first dispatch, from the caller's loop. */
	return 0;
fail:
	if (fe->mem)
		munmap(fe->mem, fe->mem_len);
	if (fe->memfd >= 0)
		close(fe->memfd);
	free(fe);
	return rc;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Tear the queues down after the back-end stopped or left. */
static void go_down(struct vhd_fe *fe)
{
	if (fe->up && fe->cfg.event)
		fe->cfg.event(fe, VHD_FE_DOWN, fe->cfg.opaque);
	fe->up = false;
	for (unsigned i = 0; i < fe->nq; i++) {
		struct fe_queue *q = &fe->q[i];
		vhd_vq_destroy(q->vq);
		q->vq = NULL;
		close_fd(&q->kick_fd);
		close_fd(&q->call_fd);
	}
	fe->features = 0;
}

static void lost(struct vhd_fe *fe, int why)
{
	vhd_log(VHD_LOG_INFO, "%s: back-end connection lost (%s)", fe->name, strerror(why < 0 ? -why : why));
	go_down(fe);
	fe->t.fd = -1; /* owned by conn */
	vhu_conn_lost(&fe->conn);
}

#define TRY(call)                                                                                             \
	do {                                                                                                  \
		rc = (call);                                                                                  \
		if (rc < 0) {                                                                                 \
			what = #call;                                                                         \
			goto out;                                                                             \
		}                                                                                             \
	} while (0)

/* The whole vhost setup sequence, in the order QEMU uses. */
static int setup(struct vhd_fe *fe)
{
	struct vhd_fe_transport *t = &fe->t;
	const struct vhd_fe_transport_ops *o = t->ops;
	const char *what = NULL;
	int rc;
	/* Fresh rings for this back-end. Zeroed here rather than when the last one left: that one may still be
	 * finishing a burst over them until it notices the disconnect. */
	memset(fe->mem, 0, fe->buf_off);
	uint64_t offered, proto = 0;
	TRY(o->get_features(t, &offered));
	if (offered & VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES))
		TRY(o->negotiate_protocol(t,
					  VHD_BIT(VHOST_USER_PROTOCOL_F_MQ) | VHD_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
						  VHD_BIT(VHOST_USER_PROTOCOL_F_STATUS),
					  &proto));
	TRY(o->set_owner(t));
	uint64_t want = fe->cfg.features | VHD_BIT(VIRTIO_F_VERSION_1);
	if (fe->nq > 2)
		want |= VHD_BIT(VIRTIO_NET_F_MQ);
	fe->features = (offered & want) | (offered & VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES));
	if (fe->nq > 2) {
		uint64_t pairs = 1;
		if ((proto & VHD_BIT(VHOST_USER_PROTOCOL_F_MQ)) && (fe->features & VHD_BIT(VIRTIO_NET_F_MQ)))
			TRY(o->get_queue_num(t, &pairs));
		if (pairs < fe->nq / 2) {
			vhd_log(VHD_LOG_ERR, "%s: back-end offers %llu queue pairs, %u wanted", fe->name,
				(unsigned long long)pairs, fe->nq / 2);
			rc = -ERANGE;
			what = "GET_QUEUE_NUM";
			goto out;
		}
	}
	TRY(o->set_features(t, fe->features));
	struct vhd_fe_region reg = {(uintptr_t)fe->mem, fe->mem_len, fe->memfd, 0};
	TRY(o->set_mem_table(t, &reg, 1));

	bool packed = fe->features & VHD_BIT(VIRTIO_F_RING_PACKED);
	for (unsigned i = 0; i < fe->nq; i++) {
		struct fe_queue *q = &fe->q[i];
		struct vhd_vq_layout l;
		vhd_vq_layout(packed, fe->cfg.queue_size, &l);
		uint8_t *base = fe->mem + q->ring_off;
		char name[48];
		snprintf(name, sizeof(name), "%s q%u", fe->name, i);
		struct vhd_vq_config c = {
			.side = VHD_VQ_DRIVER,
			.num = fe->cfg.queue_size,
			.features = fe->features,
			.desc = base + l.desc_off,
			.driver = base + l.driver_off,
			.device = base + l.device_off,
			.base = packed ? VHD_VQ_PACKED_BASE_INIT : 0,
			.name = name,
		};
		TRY(vhd_vq_create(&c, &q->vq));
		/* Polling driver: no interrupts unless the caller asks (vhd_vq_enable_notify). */
		vhd_vq_disable_notify(q->vq);
		q->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		q->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (q->kick_fd < 0 || q->call_fd < 0) {
			rc = -errno;
			what = "eventfd";
			goto out;
		}
		TRY(o->set_vring_num(t, i, fe->cfg.queue_size));
		/* Packed: avail and used position with their wrap counters in the two halves, as QEMU sends it. */
		TRY(o->set_vring_base(t, i, packed ? VHD_VQ_PACKED_BASE_INIT * 0x10001u : 0));
		TRY(o->set_vring_addr(t, i, (uintptr_t)(base + l.desc_off), (uintptr_t)(base + l.driver_off),
				      (uintptr_t)(base + l.device_off)));
		TRY(o->set_vring_call(t, i, q->call_fd));
		TRY(o->set_vring_kick(t, i, q->kick_fd));
	}
	if (fe->features & VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES))
		for (unsigned i = 0; i < fe->nq; i++)
			TRY(o->set_vring_enable(t, i, true));
	TRY(o->set_status(t, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
				     VIRTIO_CONFIG_S_DRIVER_OK));
	fe->up = true;
	vhd_log(VHD_LOG_INFO, "%s: up, features 0x%llx, %u queues", fe->name, (unsigned long long)fe->features,
		fe->nq);
	if (fe->cfg.event)
		fe->cfg.event(fe, VHD_FE_UP, fe->cfg.opaque);
	return 0;
out:
	vhd_log(VHD_LOG_ERR, "%s: setup failed at %s: %s", fe->name, what, strerror(-rc));
	return rc;
}

unsigned vhd_fe_pollfds(struct vhd_fe *fe, struct pollfd *fds, unsigned max)
{
	return vhu_conn_pollfds(&fe->conn, fds, max);
}

int vhd_fe_timeout_ms(struct vhd_fe *fe)
{
	return vhu_conn_timeout_ms(&fe->conn);
}

int vhd_fe_dispatch(struct vhd_fe *fe)
{
	if (fe->conn.io.fd < 0 && !vhu_conn_poll(&fe->conn))
		return 0;
	if (!fe->up && fe->t.fd < 0) {
		/* Setup still runs as blocking exchanges with per-reply timeouts: give it the blocking socket it
		 * expects (the connection layer hands out non-blocking ones). */
		int fl = fcntl(fe->conn.io.fd, F_GETFL);
		if (fl >= 0)
			fcntl(fe->conn.io.fd, F_SETFL, fl & ~O_NONBLOCK);
		vhd_fe_vu_transport_init(&fe->t, fe->conn.io.fd, fe->name);
		int rc = setup(fe);
		if (rc < 0) {
			lost(fe, rc);
			return rc;
		}
		return 0;
	}
	/* Up: the back-end sends nothing unasked on this socket, so input means it left (or misbehaves). */
	struct pollfd p = {.fd = fe->conn.io.fd, .events = POLLIN};
	if (poll(&p, 1, 0) <= 0)
		return 0;
	struct vhu_msg m;
	int rc = vhu_msg_recv(fe->conn.io.fd, &m);
	if (rc == 0) {
		vhu_msg_close_fds(&m);
		vhd_log(VHD_LOG_WARN, "%s: unexpected %s from the back-end ignored", fe->name,
			vhu_req_info(m.hdr.request)->name);
		return 0;
	}
	lost(fe, rc);
	return rc;
}

void vhd_fe_destroy(struct vhd_fe *fe)
{
	if (!fe)
		return;
	if (fe->up) {
		/* Stop each ring so the back-end lets go of it before the memory goes. */
		for (unsigned i = 0; i < fe->nq; i++) {
			unsigned base;
			if (fe->t.ops->get_vring_base(&fe->t, i, &base) < 0)
				break;
		}
	}
	go_down(fe);
	vhu_conn_fini(&fe->conn);
	munmap(fe->mem, fe->mem_len);
	close(fe->memfd);
	free(fe);
}

bool vhd_fe_up(const struct vhd_fe *fe)
{
	return fe->up;
}

uint64_t vhd_fe_features(const struct vhd_fe *fe)
{
	return fe->features;
}

struct vhd_vq *vhd_fe_vq(struct vhd_fe *fe, unsigned qidx)
{
	return fe->up && qidx < fe->nq ? fe->q[qidx].vq : NULL;
}

void *vhd_fe_buf_area(struct vhd_fe *fe, unsigned qp, size_t *len)
{
	if (qp >= fe->nq / 2)
		return NULL;
	*len = fe->cfg.buf_area_size;
	return fe->mem + fe->buf_off + qp * fe->cfg.buf_area_size;
}

int vhd_fe_kick(struct vhd_fe *fe, unsigned qidx)
{
	if (qidx >= fe->nq || fe->q[qidx].kick_fd < 0)
		return -ENOTCONN;
	uint64_t one = 1;
	if (write(fe->q[qidx].kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

int vhd_fe_call_fd(struct vhd_fe *fe, unsigned qidx)
{
	return qidx < fe->nq ? fe->q[qidx].call_fd : -1;
}
