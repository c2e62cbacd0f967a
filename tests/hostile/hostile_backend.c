/* SPDX-License-Identifier: MIT */
/*
 * A hostile vhost-user back-end, the mirror of hostile_frontend.c: listens on a socket, lets our frontend
 * (vhost-pktgen --frontend, vhostd's virtio-user port) connect, and plays a malicious device, one class of
 * attack per run, ROUNDS times, each on the frontend's next connection (it reconnects by itself).
 *
 * Up to the attack it is an honest device: it answers every request the frontend's setup sends, maps the memory
 * table and keeps the rings' addresses. Control-plane classes then lie in a reply (wrong request code, wrong
 * size, fds attached, REPLY_ACK failure), stall in the middle of one (half a header, then nothing; nothing at
 * all) or close in the middle of setup. Ring classes wait for the setup to finish and for the frontend to post
 * receive buffers on queue 0, then write a lie into the shared rings as a device: a used id out of range, a
 * buffer completed twice, a used length larger than the buffer, a used index jumping past what is in flight,
 * packed flags claiming the wrong lap. The caller (test_hostile_backend.py) watches the frontend process.
 *
 * usage: hostile_backend SOCKET CLASS [ROUNDS [HOLD_MS]]    CLASS "list" prints the classes
 * Each round ends in one of: the frontend closed the connection (closed), it completed setup (up), it was
 * still connected when the class gave up waiting after HOLD_MS (held). Prints
 * "CLASS: N rounds, C closed, U up, H held, M unexpected" and exits 0 when every round ended as the class
 * expects (M == 0) and the frontend came back for each.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "spec/endian.h"
#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "spec/virtio_ring.h"
#include "util/fdio.h"
#include "vhost_user/msg.h"
#include "../unit/vu_raw.h"

#define MAX_Q 8
#define ACCEPT_MS 15000 /* the frontend reconnects with back-off; a frontend that never comes back is a failure */
#define IDLE_MS 5000    /* an honest device waiting for the next setup message */
#define RING_WAIT_MS 3000

enum result { R_CLOSED, R_UP, R_HELD };

struct vq_info {
	uint32_t num;
	uint64_t desc, avail, used; /* frontend addresses */
	int call, kick;
};

struct dev {
	int fd;
	unsigned round;
	uint64_t features, protocol;
	uint8_t *map;
	size_t map_len;
	uint64_t ua, size; /* the (one) region, in the frontend's addresses */
	unsigned nmsg;     /* messages received this round */
	struct vq_info q[MAX_Q];
};

static unsigned hold_ms = 6000;

static uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void send_raw(int fd, const void *buf, size_t len)
{
	if (send(fd, buf, len, MSG_NOSIGNAL) < 0 && errno != EPIPE && errno != ECONNRESET)
		perror("send");
}

static void reply(struct dev *d, const struct vhu_msg *req, uint32_t size, uint64_t v)
{
	struct vhu_msg r = mk(req->hdr.request, size);
	r.hdr.flags = VHOST_USER_VERSION | VHOST_USER_REPLY_MASK;
	if (req->hdr.request == VHOST_USER_GET_VRING_BASE)
		r.p.state = (struct vhost_vring_state){req->p.state.index, 0};
	else
		r.p.u64 = v;
	vhu_msg_send(d->fd, &r);
}

/* Wait for the frontend to close the connection (EOF), reading and dropping whatever it sends meanwhile. */
static bool peer_closes(int fd, unsigned ms)
{
	uint64_t end = now_ms() + ms;
	char b[512];
	for (;;) {
		uint64_t now = now_ms();
		if (now >= end)
			return false;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int pr = poll(&p, 1, (int)(end - now));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return false;
		VHDI_FD_CTL(16) ctl;
		struct iovec iov = {b, sizeof(b)};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
				    .msg_controllen = sizeof(ctl.buf)};
		ssize_t r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
		if (r <= 0)
			return true;
		unsigned none = 0;
		vhdi_fds_take(&mh, NULL, &none, 0); /* closes them all */
	}
}

/* ------------------------------------------------------------------ the honest device */

static void take_fd(int *slot, struct vhu_msg *m)
{
	if (*slot >= 0)
		close(*slot);
	*slot = vhu_msg_take_fd(m, 0);
}

/* Handle one request as a conforming back-end would; returns true once the frontend set DRIVER_OK. */
static bool honest(struct dev *d, struct vhu_msg *m)
{
	uint32_t req = m->hdr.request;
	bool need_ack = (m->hdr.flags & VHOST_USER_NEED_REPLY) &&
			(d->protocol & VHD_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK));
	bool up = false;
	unsigned qi = m->p.state.index;
	switch (req) {
	case VHOST_USER_GET_FEATURES:
		reply(d, m, 8,
		      VHD_BIT(VIRTIO_F_VERSION_1) | VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES) |
			      VHD_BIT(VIRTIO_NET_F_MRG_RXBUF) | VHD_BIT(VIRTIO_F_EVENT_IDX) |
			      VHD_BIT(VIRTIO_F_RING_PACKED) | VHD_BIT(VIRTIO_NET_F_MQ) | VHD_BIT(VIRTIO_NET_F_STATUS));
		return false;
	case VHOST_USER_GET_PROTOCOL_FEATURES:
		reply(d, m, 8,
		      VHD_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) | VHD_BIT(VHOST_USER_PROTOCOL_F_MQ) |
			      VHD_BIT(VHOST_USER_PROTOCOL_F_STATUS));
		return false;
	case VHOST_USER_GET_QUEUE_NUM:
		reply(d, m, 8, MAX_Q / 2);
		return false;
	case VHOST_USER_GET_VRING_BASE:
		reply(d, m, 8, 0);
		return false;
	case VHOST_USER_SET_PROTOCOL_FEATURES:
		d->protocol = m->p.u64;
		break;
	case VHOST_USER_SET_FEATURES:
		d->features = m->p.u64;
		break;
	case VHOST_USER_SET_MEM_TABLE:
		if (m->nfds >= 1 && m->hdr.size >= 8 + sizeof(struct vhost_user_memory_region) && !d->map) {
			const struct vhost_user_memory_region *r = &m->p.memory.regions[0];
			void *p = mmap(NULL, r->memory_size + r->mmap_offset, PROT_READ | PROT_WRITE, MAP_SHARED,
				       m->fds[0], 0);
			if (p != MAP_FAILED) {
				d->map = p;
				d->map_len = r->memory_size + r->mmap_offset;
				d->ua = r->userspace_addr;
				d->size = r->memory_size;
			}
		}
		break;
	case VHOST_USER_SET_VRING_NUM:
		if (qi < MAX_Q)
			d->q[qi].num = m->p.state.num;
		break;
	case VHOST_USER_SET_VRING_ADDR:
		if (m->p.addr.index < MAX_Q) {
			d->q[m->p.addr.index].desc = m->p.addr.desc_user_addr;
			d->q[m->p.addr.index].avail = m->p.addr.avail_user_addr;
			d->q[m->p.addr.index].used = m->p.addr.used_user_addr;
		}
		break;
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_KICK: {
		unsigned i = (unsigned)(m->p.u64 & VHOST_USER_VRING_IDX_MASK);
		if (i < MAX_Q)
			take_fd(req == VHOST_USER_SET_VRING_CALL ? &d->q[i].call : &d->q[i].kick, m);
		break;
	}
	case VHOST_USER_SET_STATUS:
		up = m->p.u64 & VIRTIO_CONFIG_S_DRIVER_OK;
		break;
	default:
		break;
	}
	if (need_ack)
		reply(d, m, 8, 0);
	/* Without STATUS, the last enable (or kick, without PROTOCOL_FEATURES) is where a frontend goes up. */
	if (!(d->protocol & VHD_BIT(VHOST_USER_PROTOCOL_F_STATUS)) &&
	    (req == VHOST_USER_SET_VRING_ENABLE || req == VHOST_USER_SET_VRING_KICK))
		up = true;
	return up;
}

/* Receive the next request; false when the frontend closed or sent nothing for ms. */
static bool next(struct dev *d, struct vhu_msg *m, unsigned ms, bool *closed)
{
	struct pollfd p = {.fd = d->fd, .events = POLLIN};
	*closed = false;
	if (poll(&p, 1, (int)ms) <= 0)
		return false;
	if (vhu_msg_recv(d->fd, m) < 0) {
		*closed = true;
		return false;
	}
	d->nmsg++;
	return true;
}

/* Serve honestly until DRIVER_OK (R_UP) or the frontend leaves. */
static enum result serve_until_up(struct dev *d)
{
	struct vhu_msg m;
	bool closed;
	while (next(d, &m, IDLE_MS, &closed)) {
		bool up = honest(d, &m);
		vhu_msg_close_fds(&m);
		if (up)
			return R_UP;
	}
	return closed ? R_CLOSED : R_HELD;
}

/* Serve honestly until request req arrives (left in m for the class to answer). */
static enum result serve_until(struct dev *d, uint32_t req, struct vhu_msg *m)
{
	bool closed;
	while (next(d, m, IDLE_MS, &closed)) {
		if (m->hdr.request == req)
			return R_UP; /* "reached", for the caller */
		honest(d, m);
		vhu_msg_close_fds(m);
	}
	return closed ? R_CLOSED : R_HELD;
}

static void *ring_ptr(const struct dev *d, uint64_t ua, size_t len)
{
	if (!d->map || ua < d->ua || ua - d->ua > d->size || len > d->size - (ua - d->ua))
		return NULL;
	return d->map + (ua - d->ua);
}

/* ------------------------------------------------------------------ control-plane classes */

typedef enum result (*class_fn)(struct dev *d, enum result *expect);

/* After a lie the frontend must hang up on us by itself, within hold_ms. */
static enum result must_close(struct dev *d, enum result *expect)
{
	*expect = R_CLOSED;
	return peer_closes(d->fd, hold_ms) ? R_CLOSED : R_HELD;
}

/* The reply to GET_FEATURES names another request. */
static enum result c_wrong_reply_code(struct dev *d, enum result *expect)
{
	struct vhu_msg m;
	enum result r = serve_until(d, VHOST_USER_GET_FEATURES, &m);
	if (r != R_UP)
		return r;
	m.hdr.request = VHOST_USER_GET_PROTOCOL_FEATURES;
	reply(d, &m, 8, VHD_BIT(VIRTIO_F_VERSION_1));
	return must_close(d, expect);
}

/* The reply to GET_FEATURES (later rounds: GET_PROTOCOL_FEATURES) has a payload of 0, 4 or 16 bytes. */
static enum result c_wrong_reply_size(struct dev *d, enum result *expect)
{
	static const uint32_t sizes[] = {0, 4, 16};
	struct vhu_msg m;
	uint32_t req = d->round & 1 ? VHOST_USER_GET_PROTOCOL_FEATURES : VHOST_USER_GET_FEATURES;
	enum result r = serve_until(d, req, &m);
	if (r != R_UP)
		return r;
	reply(d, &m, sizes[d->round % 3], ~0ull);
	return must_close(d, expect);
}

/* The reply to GET_FEATURES carries eventfds nobody asked for: the frontend must close them (the runner counts
 * its fds) and hang up, as on any reply that is not what the protocol says. */
static enum result c_reply_with_fds(struct dev *d, enum result *expect)
{
	struct vhu_msg m;
	enum result r = serve_until(d, VHOST_USER_GET_FEATURES, &m);
	if (r != R_UP)
		return r;
	struct vhu_msg rep = mk(VHOST_USER_GET_FEATURES, 8);
	rep.hdr.flags = VHOST_USER_VERSION | VHOST_USER_REPLY_MASK;
	rep.p.u64 = VHD_BIT(VIRTIO_F_VERSION_1) | VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES) |
		    VHD_BIT(VIRTIO_NET_F_MRG_RXBUF);
	int efd = eventfd(0, EFD_CLOEXEC);
	send_fds_raw(d->fd, &rep, efd, 1 + d->round % 8);
	close(efd);
	return must_close(d, expect);
}

/* REPLY_ACK failure on one of the acknowledged setup requests (a different one each round). */
static enum result c_reply_ack_failure(struct dev *d, enum result *expect)
{
	static const uint32_t reqs[] = {VHOST_USER_SET_OWNER,	 VHOST_USER_SET_FEATURES,  VHOST_USER_SET_MEM_TABLE,
					VHOST_USER_SET_VRING_NUM, VHOST_USER_SET_VRING_ADDR, VHOST_USER_SET_VRING_KICK,
					VHOST_USER_SET_VRING_ENABLE, VHOST_USER_SET_STATUS};
	uint32_t req = reqs[d->round % (sizeof(reqs) / sizeof(reqs[0]))];
	struct vhu_msg m;
	enum result r = serve_until(d, req, &m);
	if (r != R_UP)
		return r;
	vhu_msg_close_fds(&m);
	reply(d, &m, 8, 1);
	return must_close(d, expect);
}

/* Half a reply header to GET_FEATURES (or, odd rounds, an ack), then nothing: the frontend must give up on
 * us by its own deadline, not wait for us. */
static enum result c_half_reply(struct dev *d, enum result *expect)
{
	struct vhu_msg m;
	uint32_t req = d->round & 1 ? VHOST_USER_SET_MEM_TABLE : VHOST_USER_GET_FEATURES;
	enum result r = serve_until(d, req, &m);
	if (r != R_UP)
		return r;
	vhu_msg_close_fds(&m);
	struct vhost_user_header h = {req, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, 8};
	send_raw(d->fd, &h, 6);
	return must_close(d, expect);
}

/* A header and half the payload, then nothing. */
static enum result c_half_payload(struct dev *d, enum result *expect)
{
	struct vhu_msg m;
	enum result r = serve_until(d, VHOST_USER_GET_PROTOCOL_FEATURES, &m);
	if (r != R_UP)
		return r;
	struct vhost_user_header h = {m.hdr.request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, 8};
	uint8_t buf[sizeof(h) + 4] = {0};
	memcpy(buf, &h, sizeof(h));
	send_raw(d->fd, buf, sizeof(buf));
	return must_close(d, expect);
}

/* No reply at all to GET_FEATURES (odd rounds: to an acknowledged SET_VRING_ADDR). */
static enum result c_no_reply(struct dev *d, enum result *expect)
{
	struct vhu_msg m;
	uint32_t req = d->round & 1 ? VHOST_USER_SET_VRING_ADDR : VHOST_USER_GET_FEATURES;
	enum result r = serve_until(d, req, &m);
	if (r != R_UP)
		return r;
	vhu_msg_close_fds(&m);
	return must_close(d, expect);
}

/* Close the connection after the k-th setup message (k = 1, 2, ... over the rounds). */
static enum result c_close_mid_setup(struct dev *d, enum result *expect)
{
	unsigned k = 1 + d->round % 24;
	struct vhu_msg m;
	bool closed;
	*expect = R_CLOSED;
	while (d->nmsg < k && next(d, &m, IDLE_MS, &closed)) {
		bool up = honest(d, &m);
		vhu_msg_close_fds(&m);
		if (up) {
			*expect = R_UP; /* the setup is shorter than k messages */
			return R_UP;
		}
	}
	return R_CLOSED; /* we close it: the frontend must notice and come back */
}

/* After the setup, a message nobody asked for, with a bad version: the stream cannot be trusted. */
static enum result c_garbage_when_up(struct dev *d, enum result *expect)
{
	enum result r = serve_until_up(d);
	if (r != R_UP)
		return r;
	struct vhost_user_header h = {VHOST_USER_GET_FEATURES, 0x2 | VHOST_USER_REPLY_MASK, 8}; /* version 2 */
	send_raw(d->fd, &h, sizeof(h));
	return must_close(d, expect);
}

/* ------------------------------------------------------------------ ring classes (receive queue 0) */

enum ring_lie { L_ID_RANGE, L_TWICE, L_LEN, L_IDX_JUMP, L_WRAP };

/* Set up, wait for the frontend's receive buffers on queue 0, write the lie as a device, and give the frontend's
 * data path a moment to read it before the class closes the connection (the frontend must then come back). */
static enum result ring_attack(struct dev *d, enum result *expect, enum ring_lie lie)
{
	enum result r = serve_until_up(d);
	*expect = R_UP;
	if (r != R_UP)
		return r;
	const struct vq_info *q = &d->q[0];
	bool packed = d->features & VHD_BIT(VIRTIO_F_RING_PACKED);
	uint32_t num = q->num;
	if (num == 0 || num > 32768)
		return R_HELD;
	uint64_t end = now_ms() + RING_WAIT_MS;
	if (packed) {
		struct pvirtq_desc *ring = ring_ptr(d, q->desc, sizeof(*ring) * num);
		if (!ring)
			return R_HELD;
		/* Slot 0 posted in lap 1: AVAIL set, USED clear. */
		while ((vhd_le16(__atomic_load_n(&ring[0].flags, __ATOMIC_ACQUIRE)) & VIRTQ_DESC_F_AVAIL) == 0) {
			if (now_ms() > end)
				return R_HELD;
			usleep(2000);
		}
		uint16_t id = vhd_le16(ring[0].id);
		uint16_t used = VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED | VIRTQ_DESC_F_WRITE;
		uint32_t len = 0;
		switch (lie) {
		case L_ID_RANGE:
			id = (uint16_t)(num + 3);
			break;
		case L_TWICE:
			/* The same id at slot 1 as well (a buffer takes one slot here): completed twice. */
			ring[1].id = vhd_cpu_to_le16(id);
			ring[1].len = 0;
			__atomic_store_n(&ring[1].flags, vhd_cpu_to_le16(used), __ATOMIC_RELEASE);
			break;
		case L_LEN:
			len = 1u << 20;
			break;
		case L_IDX_JUMP: /* packed has no index: "used" in the previous lap */
			used = VIRTQ_DESC_F_WRITE;
			break;
		case L_WRAP:
			used = VIRTQ_DESC_F_USED | VIRTQ_DESC_F_WRITE;
			break;
		}
		ring[0].id = vhd_cpu_to_le16(id);
		ring[0].len = vhd_cpu_to_le32(len);
		__atomic_store_n(&ring[0].flags, vhd_cpu_to_le16(used), __ATOMIC_RELEASE);
	} else {
		struct virtq_avail *avail = ring_ptr(d, q->avail, virtq_avail_size(num));
		struct virtq_used *u = ring_ptr(d, q->used, virtq_used_size(num));
		if (!avail || !u)
			return R_HELD;
		while (vhd_le16(__atomic_load_n(&avail->idx, __ATOMIC_ACQUIRE)) < 2) {
			if (now_ms() > end)
				return R_HELD;
			usleep(2000);
		}
		uint16_t h0 = vhd_le16(avail->ring[0]), h1 = vhd_le16(avail->ring[1]);
		uint16_t idx = 1;
		/* Length 0: a buffer handed back empty (counted, never delivered as a frame), so that only the lie
		 * itself can break anything. */
		u->ring[0] = (struct virtq_used_elem){vhd_cpu_to_le32(h0), 0};
		u->ring[1] = (struct virtq_used_elem){vhd_cpu_to_le32(h1), 0};
		switch (lie) {
		case L_ID_RANGE:
			u->ring[0].id = vhd_cpu_to_le32(num + 3);
			break;
		case L_TWICE:
			u->ring[1].id = vhd_cpu_to_le32(h0);
			idx = 2;
			break;
		case L_LEN:
			u->ring[0].len = vhd_cpu_to_le32(1u << 20);
			break;
		case L_IDX_JUMP:
			idx = (uint16_t)(num + 7);
			break;
		case L_WRAP: /* the index going backwards */
			idx = 0xffff;
			break;
		}
		__atomic_store_n(&u->idx, vhd_cpu_to_le16(idx), __ATOMIC_RELEASE);
	}
	uint64_t one = 1;
	if (q->call >= 0 && write(q->call, &one, sizeof(one)) < 0)
		perror("call");
	/* Keeping the connection with the queue broken (until it sets up again) and resetting the device are both
	 * fine; what the runner checks is that the frontend said why, stays alive, and comes back. */
	enum result res = peer_closes(d->fd, 300) ? R_CLOSED : R_UP;
	*expect = res;
	return res;
}

static enum result c_ring_id_range(struct dev *d, enum result *e) { return ring_attack(d, e, L_ID_RANGE); }
static enum result c_ring_twice(struct dev *d, enum result *e) { return ring_attack(d, e, L_TWICE); }
static enum result c_ring_len(struct dev *d, enum result *e) { return ring_attack(d, e, L_LEN); }
static enum result c_ring_idx_jump(struct dev *d, enum result *e) { return ring_attack(d, e, L_IDX_JUMP); }
static enum result c_ring_wrap(struct dev *d, enum result *e) { return ring_attack(d, e, L_WRAP); }

static const struct {
	const char *name;
	class_fn fn;
} classes[] = {
	{"wrong_reply_code", c_wrong_reply_code},
	{"wrong_reply_size", c_wrong_reply_size},
	{"reply_with_fds", c_reply_with_fds},
	{"reply_ack_failure", c_reply_ack_failure},
	{"half_reply", c_half_reply},
	{"half_payload", c_half_payload},
	{"no_reply", c_no_reply},
	{"close_mid_setup", c_close_mid_setup},
	{"garbage_when_up", c_garbage_when_up},
	{"ring_id_range", c_ring_id_range},
	{"ring_twice", c_ring_twice},
	{"ring_len", c_ring_len},
	{"ring_idx_jump", c_ring_idx_jump},
	{"ring_wrap", c_ring_wrap},
};
#define NCLASSES (sizeof(classes) / sizeof(classes[0]))

static void dev_fini(struct dev *d)
{
	if (d->map)
		munmap(d->map, d->map_len);
	for (unsigned i = 0; i < MAX_Q; i++) {
		if (d->q[i].call >= 0)
			close(d->q[i].call);
		if (d->q[i].kick >= 0)
			close(d->q[i].kick);
	}
	close(d->fd);
}

static const char *const result_names[] = {"closed", "up", "held"};

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s SOCKET CLASS|list [ROUNDS [HOLD_MS]]\n", argv[0]);
		return 2;
	}
	if (!strcmp(argv[2], "list")) {
		for (unsigned i = 0; i < NCLASSES; i++)
			printf("%s\n", classes[i].name);
		return 0;
	}
	unsigned rounds = argc > 3 ? (unsigned)atoi(argv[3]) : 5;
	if (argc > 4)
		hold_ms = (unsigned)atoi(argv[4]);
	unsigned c;
	for (c = 0; c < NCLASSES && strcmp(classes[c].name, argv[2]); c++)
		;
	if (c == NCLASSES) {
		fprintf(stderr, "unknown class %s\n", argv[2]);
		return 2;
	}
	struct stat st;
	if (lstat(argv[1], &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(argv[1]);
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[1]);
	if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 4) < 0) {
		perror(argv[1]);
		return 2;
	}
	unsigned count[3] = {0}, unexpected = 0, missing = 0;
	for (unsigned i = 0; i < rounds; i++) {
		struct pollfd p = {.fd = ls, .events = POLLIN};
		if (poll(&p, 1, ACCEPT_MS) <= 0) {
			fprintf(stderr, "%s round %u: the frontend did not come back within %u ms\n", classes[c].name, i,
				ACCEPT_MS);
			missing++;
			break;
		}
		struct dev d = {.fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC), .round = i};
		for (unsigned k = 0; k < MAX_Q; k++)
			d.q[k].call = d.q[k].kick = -1;
		if (d.fd < 0) {
			perror("accept");
			return 2;
		}
		enum result expect = R_CLOSED;
		enum result r = classes[c].fn(&d, &expect);
		count[r]++;
		if (r != expect && unexpected++ < 3)
			fprintf(stderr, "%s round %u: the frontend %s, expected %s\n", classes[c].name, i,
				r == R_HELD ? "was still waiting on us when we gave up" : result_names[r],
				result_names[expect]);
		dev_fini(&d);
	}
	printf("%s: %u rounds, %u closed, %u up, %u held, %u unexpected%s\n", classes[c].name, rounds, count[R_CLOSED],
	       count[R_UP], count[R_HELD], unexpected, missing ? ", the frontend stopped reconnecting" : "");
	close(ls);
	unlink(argv[1]);
	return unexpected || missing ? 1 : 0;
}
