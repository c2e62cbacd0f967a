/* SPDX-License-Identifier: MIT */
/*
 * A hand-written vhost-user front-end for in-process back-end tests: real unix sockets, real fds (memfd guest
 * memory, eventfds), every message built byte by byte, and a driver-side virtqueue over the memfd so the test
 * can play the guest. Shared by test_vhost_user.c and test_cve.c; include after harness.h.
 */
#ifndef VHD_TEST_VU_RIG_H
#define VHD_TEST_VU_RIG_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "vhost_user/msg.h"
#include "vu_raw.h"
#include "vhostd/log.h"
#include "vhostd/vhost_user.h"
#include "vhostd/virtq.h"

#define MEM_SIZE (2u << 20)
#define GPA 0x100000000ull /* guest addresses differ from the front-end's virtual addresses */
#define QSZ 64

/* ------------------------------------------------------------------ rig */

struct events {
	int started[8], stopped[8], connected, disconnected, status, ready, not_ready;
};

static inline void on_event(struct vhd_vu_dev *dev, enum vhd_vu_event ev, unsigned q, void *opaque)
{
	struct events *e = opaque;
	(void)dev;
	switch (ev) {
	case VHD_VU_CONNECTED:
		e->connected++;
		break;
	case VHD_VU_DISCONNECTED:
		e->disconnected++;
		break;
	case VHD_VU_QUEUE_STARTED:
		e->started[q & 7]++;
		break;
	case VHD_VU_QUEUE_STOPPED:
		e->stopped[q & 7]++;
		break;
	case VHD_VU_STATUS:
		e->status++;
		break;
	case VHD_VU_READY:
		e->ready++;
		break;
	case VHD_VU_NOT_READY:
		e->not_ready++;
		break;
	}
}

static int log_errors;
/* Every log line since the last log_clear(), newline-separated (what does not fit is dropped). */
static char log_text[16384];
static inline void log_clear(void) { log_text[0] = 0; }
static inline int log_count(const char *needle)
{
	int n = 0;
	for (const char *p = log_text; (p = strstr(p, needle)); p++)
		n++;
	return n;
}
static inline void count_log(enum vhd_log_level l, const char *msg, void *o)
{
	(void)o;
	if (l == VHD_LOG_ERR)
		log_errors++;
	size_t used = strlen(log_text);
	snprintf(log_text + used, sizeof(log_text) - used, "%s\n", msg);
	if (getenv("VHD_TEST_VERBOSE"))
		fprintf(stderr, "log: %s\n", msg);
}

struct rig {
	char path[108];
	struct vhd_vu_dev *dev;
	struct events ev;
	int fe; /* front-end socket */
	int memfd;
	uint8_t *mem; /* the "guest" (and front-end) mapping */
};

/* msg_timeout_ms for the next rig_open() (0: the library's default). */
static unsigned rig_msg_timeout_ms;
/* Whether the next rig_open()'s device offers the config space (the rig reads it; the library's default is off). */
static bool rig_config_space = true;
/* Features the next rig_open() offers (0: the library's default). */
static uint64_t rig_features;
/* vIOMMU tests: when nonzero, the device sees guest memory at this IOVA (ring and buffer addresses the test
 * hands it are rig_iova + offset into the memfd) instead of at the front-end's and guest-physical addresses. */
static uint64_t rig_iova;
/* vhd_vu_config.iotlb_per_burst for the next rig_open(). */
static bool rig_per_burst;

/* A device listening on /tmp/vhd-test-vu-PID[SUFFIX].sock, so one process can hold several. */
static inline void rig_open_suffix(struct rig *r, uint16_t qp, const char *suffix)
{
	memset(r, 0, sizeof(*r));
	vhd_log_set_handler(count_log, NULL);
	snprintf(r->path, sizeof(r->path), "/tmp/vhd-test-vu-%d%s.sock", getpid(), suffix);
	struct vhd_vu_config c = {.path = r->path, .max_queue_pairs = qp, .event = on_event, .opaque = &r->ev,
				  .name = "t", .mtu = 1500, .msg_timeout_ms = rig_msg_timeout_ms,
				  .config_space = rig_config_space, .features = rig_features,
				  .iotlb_per_burst = rig_per_burst};
	CHECK_EQ(vhd_vu_dev_create(&c, &r->dev), 0);
	r->memfd = memfd_create("guest", MFD_CLOEXEC);
	CHECK(r->memfd >= 0);
	CHECK(ftruncate(r->memfd, MEM_SIZE) == 0);
	r->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	CHECK(r->mem != MAP_FAILED);
}

static inline void rig_open(struct rig *r, uint16_t qp)
{
	rig_open_suffix(r, qp, "");
}

static inline void rig_connect(struct rig *r)
{
	r->fe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, r->path);
	CHECK(connect(r->fe, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK_EQ(vhd_vu_dev_dispatch(r->dev), 0); /* accept */
	CHECK(vhd_vu_dev_connected(r->dev));
}

static inline void rig_close(struct rig *r)
{
	if (r->fe >= 0)
		close(r->fe);
	vhd_vu_dev_destroy(r->dev);
	munmap(r->mem, MEM_SIZE);
	close(r->memfd);
}

/* Send m (fds are the caller's and stay open), let the back-end handle it. */
static inline void send_msg(struct rig *r, struct vhu_msg *m)
{
	CHECK_EQ(vhu_msg_send(r->fe, m), 0);
	vhd_vu_dev_dispatch(r->dev);
}

static inline bool reply_ready(struct rig *r)
{
	struct pollfd p = {.fd = r->fe, .events = POLLIN};
	return poll(&p, 1, 0) > 0;
}

static inline struct vhu_msg get_reply(struct rig *r, uint32_t req)
{
	struct vhu_msg m;
	CHECK(reply_ready(r));
	CHECK_EQ(vhu_msg_recv(r->fe, &m), 0);
	CHECK_EQ(m.hdr.request, req);
	CHECK(m.hdr.flags & VHOST_USER_REPLY_MASK);
	return m;
}

static inline uint64_t get_u64(struct rig *r, uint32_t req)
{
	struct vhu_msg m = mk(req, 0);
	send_msg(r, &m);
	m = get_reply(r, req);
	CHECK_EQ(m.hdr.size, 8);
	return m.p.u64;
}

static inline void set_u64(struct rig *r, uint32_t req, uint64_t v)
{
	struct vhu_msg m = mk(req, 8);
	m.p.u64 = v;
	send_msg(r, &m);
}

/* With REPLY_ACK negotiated: send with NEED_REPLY, return the ack (0 success). */
static inline uint64_t acked(struct rig *r, struct vhu_msg *m)
{
	m->hdr.flags |= VHOST_USER_NEED_REPLY;
	send_msg(r, m);
	struct vhu_msg a = get_reply(r, m->hdr.request);
	CHECK_EQ(a.hdr.size, 8);
	return a.p.u64;
}

static inline void negotiate(struct rig *r, uint64_t extra_features, bool protocol)
{
	uint64_t f = get_u64(r, VHOST_USER_GET_FEATURES);
	CHECK(f & VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES));
	CHECK(f & VHD_BIT(VIRTIO_F_VERSION_1));
	struct vhu_msg m = mk(VHOST_USER_SET_OWNER, 0);
	send_msg(r, &m);
	uint64_t want = VHD_BIT(VIRTIO_F_VERSION_1) | extra_features;
	if (protocol) {
		want |= VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES);
		uint64_t p = get_u64(r, VHOST_USER_GET_PROTOCOL_FEATURES);
		CHECK(p & VHD_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK));
		set_u64(r, VHOST_USER_SET_PROTOCOL_FEATURES, p);
	}
	set_u64(r, VHOST_USER_SET_FEATURES, want);
	CHECK(vhd_vu_dev_features(r->dev) == want);
}

static inline void set_mem_table(struct rig *r)
{
	struct vhu_msg m = mk(VHOST_USER_SET_MEM_TABLE, 8 + 32);
	m.p.memory.nregions = 1;
	m.p.memory.regions[0] = (struct vhost_user_memory_region){GPA, MEM_SIZE, (uintptr_t)r->mem, 0};
	m.fds[0] = r->memfd;
	m.nfds = 1;
	send_msg(r, &m);
}

struct guest_q {
	struct vhd_vq *vq;
	struct vhd_vq_layout lay;
	size_t off;
	int kick, call;
};

/* Lay out a queue at off in guest memory and describe it to the back-end (everything but the enable). */
static inline void setup_queue(struct rig *r, unsigned qi, struct guest_q *g, size_t off, bool packed, bool nofd_kick)
{
	memset(r->mem + off, 0, 64 * 1024);
	CHECK_EQ(vhd_vq_layout(packed, QSZ, &g->lay), 0);
	g->off = off;
	struct vhd_vq_config c = {
		.side = VHD_VQ_DRIVER, .num = QSZ,
		.features = VHD_BIT(VIRTIO_F_VERSION_1) | (packed ? VHD_BIT(VIRTIO_F_RING_PACKED) : 0),
		.desc = r->mem + off + g->lay.desc_off, .driver = r->mem + off + g->lay.driver_off,
		.device = r->mem + off + g->lay.device_off, .base = packed ? VHD_VQ_PACKED_BASE_INIT : 0,
	};
	CHECK_EQ(vhd_vq_create(&c, &g->vq), 0);
	struct vhu_msg m = mk(VHOST_USER_SET_VRING_NUM, 8);
	m.p.state = (struct vhost_vring_state){qi, QSZ};
	send_msg(r, &m);
	m = mk(VHOST_USER_SET_VRING_BASE, 8);
	m.p.state = (struct vhost_vring_state){qi, packed ? VHD_VQ_PACKED_BASE_INIT * 0x10001u : 0};
	send_msg(r, &m);
	m = mk(VHOST_USER_SET_VRING_ADDR, 40);
	uint64_t base = rig_iova ? rig_iova + off : (uintptr_t)r->mem + off;
	m.p.addr = (struct vhost_vring_addr){qi, 0, base + g->lay.desc_off, base + g->lay.device_off,
					     base + g->lay.driver_off, 0};
	send_msg(r, &m);
	g->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	m = mk(VHOST_USER_SET_VRING_CALL, 8);
	m.p.u64 = qi;
	m.fds[0] = g->call;
	m.nfds = 1;
	send_msg(r, &m);
	g->kick = nofd_kick ? -1 : eventfd(0, EFD_CLOEXEC);
	m = mk(VHOST_USER_SET_VRING_KICK, 8);
	m.p.u64 = qi | (nofd_kick ? VHOST_USER_VRING_NOFD : 0);
	if (!nofd_kick) {
		m.fds[0] = g->kick;
		m.nfds = 1;
	}
	send_msg(r, &m);
}

static inline void free_queue(struct guest_q *g)
{
	vhd_vq_destroy(g->vq);
	close(g->call);
	if (g->kick >= 0)
		close(g->kick);
}

static inline void enable(struct rig *r, unsigned qi, unsigned on)
{
	struct vhu_msg m = mk(VHOST_USER_SET_VRING_ENABLE, 8);
	m.p.state = (struct vhost_vring_state){qi, on};
	send_msg(r, &m);
}

/* Guest adds one readable buffer with bytes; the back-end's queue must deliver exactly those bytes. */
static inline void pass_one(struct rig *r, unsigned qi, struct guest_q *g, uint8_t tag)
{
	size_t boff = g->off + 32 * 1024;
	memset(r->mem + boff, tag, 100);
	struct vhd_vq_seg s = {(rig_iova ? rig_iova : GPA) + boff, 100};
	struct vhd_vq_buf b = {.segs = &s, .nout = 1, .token = (void *)1};
	CHECK_EQ(vhd_vq_add(g->vq, &b, 1), 1);
	struct vhd_vq *vq = vhd_vu_queue_acquire(r->dev, qi);
	CHECK(vq != NULL);
	struct vhd_vq_chain ch;
	struct iovec iov[4];
	CHECK_EQ(vhd_vq_pop(vq, &ch, 1, iov, 4), 1);
	CHECK_EQ(ch.out_len, 100);
	CHECK(((uint8_t *)iov[0].iov_base)[99] == tag);
	CHECK(iov[0].iov_base != r->mem + boff); /* the back-end's own mapping */
	struct vhd_vq_used u = {ch.id, ch.ndesc, 0};
	CHECK_EQ(vhd_vq_push(vq, &u, 1), 1);
	CHECK_EQ(vhd_vu_queue_notify(r->dev, qi), 0);
	vhd_vu_queue_release(r->dev, qi);
	struct vhd_vq_done d;
	CHECK_EQ(vhd_vq_get(g->vq, &d, 1), 1);
	uint64_t v;
	CHECK(read(g->call, &v, 8) == 8 && v >= 1);
}


#endif
