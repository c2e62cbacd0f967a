/* SPDX-License-Identifier: MIT */
/*
 * A hostile vhost-user front-end: connects to a back-end's socket again and again and sends one class of
 * malformed message per run, ROUNDS times, each on a fresh connection. After each message it checks what the
 * back-end must do: answer a GET_FEATURES on the same connection (the message was refused, the session goes on)
 * or close the connection (the stream cannot be trusted any more). The caller (test_hostile.py) watches the
 * back-end's fd count and RSS around each class and sends good traffic afterwards.
 *
 * usage: hostile_frontend SOCKET CLASS [ROUNDS]    CLASS "list" prints the classes
 * Slow classes (stalling attacks that take seconds per round) cap ROUNDS at their own count (the class table).
 * Prints "CLASS: N rounds, A answered, C closed, U unexpected" and exits 0 when U is 0.
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
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "spec/virtio_config.h"
#include "spec/virtio_ring.h"
#include "vhost_user/msg.h"
#include "../unit/vu_raw.h"

#define MEM_SIZE (1u << 20)
#define REPLY_MS 3000

static const char *sock_path;
static int memfd = -1;

/* What the back-end must do after a class's messages: keep answering on the connection, or hang up; LEAVES:
 * the front-end itself goes away (the back-end must then release what the session held). HANGS and WRONG are
 * never what a class expects: a class returns them when the back-end did not answer, or accepted what it must
 * refuse; both count as unexpected. */
enum outcome { ANSWERS, CLOSES, LEAVES, HANGS, WRONG };

static int conn_open(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	for (int i = 0; i < 500; i++) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		usleep(10000);
	}
	perror("connect");
	exit(2);
}

static void send_raw(int fd, const void *buf, size_t len)
{
	/* The back-end may already have closed on us: that is an outcome, not our error. */
	if (send(fd, buf, len, MSG_NOSIGNAL) < 0 && errno != EPIPE && errno != ECONNRESET)
		perror("send");
}

static void send_msg(int fd, struct vhu_msg *m)
{
	int rc = vhu_msg_send(fd, m);
	if (rc < 0 && rc != -EPIPE && rc != -ECONNRESET)
		fprintf(stderr, "send: %s\n", strerror(-rc));
}

static void send_with_fds(int fd, const struct vhu_msg *m, unsigned nfds)
{
	if (send_fds_raw(fd, m, memfd, nfds) < 0 && errno != EPIPE && errno != ECONNRESET)
		perror("sendmsg");
}

/* Skip every reply until one for req; false when the connection closed or nothing came in time. */
static bool wait_reply(int fd, uint32_t req, bool *closed)
{
	*closed = false;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, REPLY_MS) <= 0)
			return false;
		struct vhu_msg r;
		int rc = vhu_msg_recv(fd, &r);
		if (rc < 0) {
			*closed = true;
			return false;
		}
		vhu_msg_close_fds(&r);
		if (r.hdr.request == req && (r.hdr.flags & VHOST_USER_REPLY_MASK))
			return true;
	}
}

/* Does the back-end still answer on fd? */
static enum outcome probe(int fd)
{
	struct vhu_msg m = mk(VHOST_USER_GET_FEATURES, 0);
	send_msg(fd, &m);
	bool closed;
	if (wait_reply(fd, VHOST_USER_GET_FEATURES, &closed))
		return ANSWERS;
	return closed ? CLOSES : HANGS;
}

/* Send m with NEED_REPLY (REPLY_ACK is negotiated) and return the acknowledgement, or -1 without one. */
static int64_t ack_of(int fd, struct vhu_msg *m)
{
	m->hdr.flags |= VHOST_USER_NEED_REPLY;
	send_msg(fd, m);
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, REPLY_MS) <= 0)
			return -1;
		struct vhu_msg r;
		if (vhu_msg_recv(fd, &r) < 0)
			return -1;
		vhu_msg_close_fds(&r);
		if (r.hdr.request == m->hdr.request && (r.hdr.flags & VHOST_USER_REPLY_MASK))
			return r.hdr.size == 8 ? (int64_t)r.p.u64 : -1;
	}
}

/* A refusal the back-end must acknowledge as one (REPLY_ACK 1) on a connection that goes on. */
static enum outcome refused(int fd, struct vhu_msg *m, const char *what)
{
	int64_t a = ack_of(fd, m);
	if (a == 1)
		return ANSWERS;
	fprintf(stderr, "%s: %s\n", what, a < 0 ? "no acknowledgement" : "accepted");
	return a < 0 ? HANGS : WRONG;
}

static void negotiate(int fd)
{
	struct vhu_msg m = mk(VHOST_USER_SET_OWNER, 0);
	send_msg(fd, &m);
	m = mk(VHOST_USER_SET_PROTOCOL_FEATURES, 8);
	m.p.u64 = VHD_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) | VHD_BIT(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS);
	send_msg(fd, &m);
	m = mk(VHOST_USER_SET_FEATURES, 8);
	m.p.u64 = VHD_BIT(VIRTIO_F_VERSION_1) | VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES);
	send_msg(fd, &m);
}

static void mem_table(int fd, const struct vhost_user_memory_region *r, unsigned n)
{
	struct vhu_msg m = mk(VHOST_USER_SET_MEM_TABLE, 8 + 32 * n);
	m.p.memory.nregions = n;
	for (unsigned i = 0; i < n; i++) {
		m.p.memory.regions[i] = r[i];
		m.fds[i] = memfd;
	}
	m.nfds = n;
	send_msg(fd, &m);
}

/* ---------------------------------------------------------------- classes: send, return what must follow */

static enum outcome c_oversized_size(int fd)
{
	struct vhost_user_header h = {VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, 1u << 20};
	send_raw(fd, &h, sizeof(h));
	return CLOSES;
}

static enum outcome c_bad_version(int fd)
{
	struct vhost_user_header h = {VHOST_USER_GET_FEATURES, 0x7, 0};
	send_raw(fd, &h, sizeof(h));
	return CLOSES;
}

static enum outcome c_truncated_header(int fd)
{
	struct vhost_user_header h = {VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, 0};
	send_raw(fd, &h, 7);
	shutdown(fd, SHUT_WR);
	return CLOSES;
}

static enum outcome c_closed_mid_message(int fd)
{
	negotiate(fd);
	struct vhu_msg m = mk(VHOST_USER_SET_VRING_ADDR, sizeof(struct vhost_vring_addr));
	send_raw(fd, &m.hdr, sizeof(m.hdr));
	send_raw(fd, &m.p, 10);
	shutdown(fd, SHUT_WR);
	return CLOSES;
}

static enum outcome c_bad_request(int fd)
{
	static const uint32_t ids[] = {0, VHOST_USER_REQUEST_MAX, 9999, UINT32_MAX};
	for (unsigned i = 0; i < 4; i++) {
		struct vhu_msg m = mk(ids[i], 16);
		memset(&m.p, 0xa5, 16);
		send_msg(fd, &m);
	}
	return ANSWERS;
}

static enum outcome c_short_payload(int fd)
{
	negotiate(fd);
	static const uint32_t reqs[] = {VHOST_USER_SET_FEATURES, VHOST_USER_SET_VRING_NUM, VHOST_USER_SET_VRING_ADDR,
					VHOST_USER_SET_MEM_TABLE, VHOST_USER_ADD_MEM_REG, VHOST_USER_GET_CONFIG};
	for (unsigned i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		struct vhu_msg m = mk(reqs[i], 4);
		send_msg(fd, &m);
	}
	return ANSWERS;
}

static enum outcome c_too_many_fds(int fd)
{
	struct vhu_msg m = mk(VHOST_USER_SET_OWNER, 0);
	send_with_fds(fd, &m, 20);
	m = mk(VHOST_USER_SET_VRING_CALL, 8);
	send_with_fds(fd, &m, 9);
	return ANSWERS;
}

static enum outcome c_fds_on_fdless(int fd)
{
	static const uint32_t reqs[] = {VHOST_USER_SET_OWNER, VHOST_USER_GET_QUEUE_NUM, VHOST_USER_SET_FEATURES,
					VHOST_USER_SET_VRING_NUM, VHOST_USER_SET_VRING_ENABLE, VHOST_USER_NET_SET_MTU};
	for (unsigned i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		struct vhu_msg m = mk(reqs[i], 8);
		if (reqs[i] == VHOST_USER_GET_QUEUE_NUM)
			m.hdr.size = 0;
		send_with_fds(fd, &m, 8);
	}
	return ANSWERS;
}

static enum outcome c_mem_overlap(int fd)
{
	negotiate(fd);
	struct vhost_user_memory_region r[3] = {
		{0x100000000ull, MEM_SIZE, 0x7f0000000000ull, 0},
		{0x100000000ull + MEM_SIZE / 2, MEM_SIZE / 2, 0x7f1000000000ull, 0},
		{0x100000000ull, 4096, 0x7f2000000000ull, 4096},
	};
	mem_table(fd, r, 3);
	mem_table(fd, r + 1, 2);
	return ANSWERS;
}

static enum outcome c_mem_overflow(int fd)
{
	negotiate(fd);
	const struct vhost_user_memory_region bad[] = {
		{0x100000000ull, MEM_SIZE, 0x7f0000000000ull, UINT64_MAX - 4095},
		{UINT64_MAX - 4095, 8192, 0x7f0000000000ull, 0},
		{0x100000000ull, 8192, UINT64_MAX - 4095, 0},
		{0x100000000ull, MEM_SIZE, 0x7f0000000000ull, 4096}, /* past the fd's end */
		{0x100000000ull, (uint64_t)1 << 62, 0x7f0000000000ull, 0},
		{0x100000000ull, 0, 0x7f0000000000ull, 0},
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		mem_table(fd, &bad[i], 1);
		struct vhu_msg m = mk(VHOST_USER_ADD_MEM_REG, sizeof(struct vhost_user_mem_reg));
		m.p.mem_reg.region = bad[i];
		m.fds[0] = memfd;
		m.nfds = 1;
		send_msg(fd, &m);
	}
	/* Nine regions in a table that holds eight. */
	struct vhu_msg m = mk(VHOST_USER_SET_MEM_TABLE, sizeof(struct vhost_user_memory));
	m.p.memory.nregions = 9;
	send_msg(fd, &m);
	return ANSWERS;
}

static enum outcome c_bad_vring_index(int fd)
{
	negotiate(fd);
	static const uint32_t idx[] = {2, 255, 256, 0x10000, 0x80000000u, UINT32_MAX};
	for (unsigned i = 0; i < sizeof(idx) / sizeof(idx[0]); i++) {
		struct vhu_msg m = mk(VHOST_USER_SET_VRING_NUM, 8);
		m.p.state = (struct vhost_vring_state){idx[i], 256};
		send_msg(fd, &m);
		m = mk(VHOST_USER_SET_VRING_ADDR, sizeof(struct vhost_vring_addr));
		m.p.addr.index = idx[i];
		send_msg(fd, &m);
		m = mk(VHOST_USER_SET_VRING_KICK, 8);
		m.p.u64 = idx[i];
		m.fds[0] = memfd;
		m.nfds = 1;
		send_msg(fd, &m);
		m = mk(VHOST_USER_GET_VRING_BASE, 8);
		m.p.state.index = idx[i];
		send_msg(fd, &m);
	}
	return ANSWERS;
}

static enum outcome c_huge_num(int fd)
{
	negotiate(fd);
	static const uint32_t num[] = {0, 32769, 65535, 65536, UINT32_MAX};
	for (unsigned i = 0; i < sizeof(num) / sizeof(num[0]); i++) {
		struct vhu_msg m = mk(VHOST_USER_SET_VRING_NUM, 8);
		m.p.state = (struct vhost_vring_state){0, num[i]};
		send_msg(fd, &m);
		m = mk(VHOST_USER_SET_VRING_BASE, 8);
		m.p.state = (struct vhost_vring_state){1, num[i]};
		send_msg(fd, &m);
	}
	return ANSWERS;
}

static enum outcome c_log_base_overflow(int fd)
{
	negotiate(fd);
	struct vhu_msg m = mk(VHOST_USER_SET_LOG_BASE, sizeof(struct vhost_user_log));
	m.p.log = (struct vhost_user_log){UINT64_MAX - 4095, 8192};
	m.fds[0] = memfd;
	m.nfds = 1;
	send_msg(fd, &m);
	m.p.log = (struct vhost_user_log){MEM_SIZE, UINT64_MAX};
	send_msg(fd, &m);
	m = mk(VHOST_USER_SET_LOG_FD, 0);
	m.fds[0] = memfd;
	m.nfds = 1;
	send_msg(fd, &m);
	return ANSWERS;
}

static enum outcome c_inflight(int fd)
{
	negotiate(fd);
	struct vhu_msg m = mk(VHOST_USER_SET_INFLIGHT_FD, sizeof(struct vhost_user_inflight));
	m.p.inflight = (struct vhost_user_inflight){MEM_SIZE, 0, UINT16_MAX, 1024, 0};
	m.fds[0] = memfd;
	m.nfds = 1;
	send_msg(fd, &m);
	m = mk(VHOST_USER_GET_INFLIGHT_FD, sizeof(struct vhost_user_inflight));
	m.p.inflight = (struct vhost_user_inflight){0, 0, UINT16_MAX, 1024, 0};
	send_msg(fd, &m);
	return ANSWERS;
}

/* A good GET_FEATURES and a garbage header in one write: the first is answered, the rest closes the stream. */
static enum outcome c_garbage_after_valid(int fd)
{
	uint8_t buf[12 + 64];
	struct vhost_user_header h = {VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, 0};
	memcpy(buf, &h, 12);
	for (unsigned i = 12; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 37 + 11);
	send_raw(fd, buf, sizeof(buf));
	bool closed;
	if (!wait_reply(fd, VHOST_USER_GET_FEATURES, &closed))
		return HANGS; /* the good message went unanswered: unexpected */
	return CLOSES;
}

/* A complete setup with live rings: negotiated, the memory table mapped, two queues with kick and call eventfds
 * (efd[2q] kicks queue q, efd[2q+1] is its call) enabled. */
static void live_rings(int fd, int efd[4])
{
	negotiate(fd);
	struct vhost_user_memory_region r = {0x100000000ull, MEM_SIZE, 0x7f0000000000ull, 0};
	mem_table(fd, &r, 1);
	for (unsigned q = 0; q < 2; q++) {
		struct vhu_msg m = mk(VHOST_USER_SET_VRING_NUM, 8);
		m.p.state = (struct vhost_vring_state){q, 256};
		send_msg(fd, &m);
		m = mk(VHOST_USER_SET_VRING_ADDR, sizeof(struct vhost_vring_addr));
		uint64_t base = 0x7f0000000000ull + q * 0x10000;
		m.p.addr = (struct vhost_vring_addr){q, 0, base, base + 0x8000, base + 0x4000, 0};
		send_msg(fd, &m);
		for (unsigned k = 0; k < 2; k++) {
			efd[2 * q + k] = eventfd(0, EFD_CLOEXEC);
			m = mk(k ? VHOST_USER_SET_VRING_CALL : VHOST_USER_SET_VRING_KICK, 8);
			m.p.u64 = q;
			m.fds[0] = efd[2 * q + k];
			m.nfds = 1;
			send_msg(fd, &m);
		}
		m = mk(VHOST_USER_SET_VRING_ENABLE, 8);
		m.p.state = (struct vhost_vring_state){q, 1};
		send_msg(fd, &m);
	}
}

/* A complete setup with live rings (kick and call eventfds, the memory table mapped), then the front-end
 * vanishes without a word: everything it handed over must be released. */
static enum outcome c_setup_then_vanish(int fd)
{
	int efd[4];
	live_rings(fd, efd);
	enum outcome o = probe(fd);
	for (unsigned i = 0; i < 4; i++)
		close(efd[i]);
	return o == ANSWERS ? LEAVES : HANGS; /* HANGS: counted as unexpected */
}

/* Live rings, then the front-end shrinks its memory file to nothing and kicks: the back-end's next look at a
 * ring raises SIGBUS. It must lose this connection (hanging up on it), not the process. */
static enum outcome c_shrink_memory(int fd)
{
	if (ftruncate(memfd, MEM_SIZE) < 0) { /* back to full size (and zeros) for this round */
		perror("ftruncate");
		exit(2);
	}
	int efd[4];
	live_rings(fd, efd);
	enum outcome o = probe(fd); /* every message above handled: the rings are live */
	if (ftruncate(memfd, 0) < 0) {
		perror("ftruncate");
		exit(2);
	}
	uint64_t one = 1;
	for (unsigned q = 0; q < 2; q++)
		if (write(efd[2 * q], &one, sizeof(one)) < 0)
			perror("kick");
	for (unsigned i = 0; i < 4; i++)
		close(efd[i]);
	return o == ANSWERS ? CLOSES : HANGS; /* HANGS: counted as unexpected */
}

/* ---------------------------------------------------------------- classes: issue 20 (dirty logging) */

#define LOG_BYTES 0x21000u /* bits for guest memory up to 0x100000000 + MEM_SIZE, as QEMU sizes it */

static int64_t log_base(int fd, int lfd, uint64_t size, uint64_t offset)
{
	struct vhu_msg m = mk(VHOST_USER_SET_LOG_BASE, sizeof(struct vhost_user_log));
	m.p.log = (struct vhost_user_log){size, offset};
	m.fds[0] = lfd;
	m.nfds = lfd >= 0;
	return ack_of(fd, &m); /* answered with a u64 whether NEED_REPLY is set or not */
}

/*
 * Hostile dirty log areas, with logging negotiated: size 0, offset + size wrapping, past the end of the file,
 * no fd; each answered 1. Then a good log, live rings with ring logging, and the front-end shrinks the log's
 * file to nothing and posts a frame on its transmit queue: the back-end's push logs the used ring and raises
 * SIGBUS. It must lose this connection (hanging up on it), not the process.
 */
static enum outcome c_log_hostile(int fd)
{
	int lfd = memfd_create("hostile-log", MFD_CLOEXEC);
	if (lfd < 0 || ftruncate(lfd, LOG_BYTES) < 0 || ftruncate(memfd, 0) < 0 || ftruncate(memfd, MEM_SIZE) < 0) {
		perror("memfd");
		exit(2);
	}
	struct vhu_msg m = mk(VHOST_USER_SET_OWNER, 0);
	send_msg(fd, &m);
	m = mk(VHOST_USER_SET_PROTOCOL_FEATURES, 8);
	m.p.u64 = VHD_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) | VHD_BIT(VHOST_USER_PROTOCOL_F_LOG_SHMFD);
	send_msg(fd, &m);
	m = mk(VHOST_USER_SET_FEATURES, 8);
	m.p.u64 = VHD_BIT(VIRTIO_F_VERSION_1) | VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES) | VHD_BIT(VHOST_F_LOG_ALL);
	if (ack_of(fd, &m) != 0) {
		fprintf(stderr, "log_hostile: VHOST_F_LOG_ALL refused\n");
		close(lfd);
		return WRONG;
	}
	static const struct {
		uint64_t size, offset;
		bool fd;
		const char *what;
	} bad[] = {
		{0, 0, true, "size 0"},
		{4096, UINT64_MAX - 100, true, "offset + size wrapping"},
		{UINT64_MAX - 4095, 8192, true, "size wrapping"},
		{LOG_BYTES + 4096, 0, true, "past the end of the file"},
		{LOG_BYTES, 1, true, "offset past the end of the file"},
		{LOG_BYTES, 0, false, "no fd"},
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t a = log_base(fd, bad[i].fd ? lfd : -1, bad[i].size, bad[i].offset);
		if (a != 1) {
			fprintf(stderr, "log_hostile: %s: %s\n", bad[i].what, a < 0 ? "no answer" : "accepted");
			close(lfd);
			return a < 0 ? HANGS : WRONG;
		}
	}
	if (log_base(fd, lfd, LOG_BYTES, 0) != 0) {
		fprintf(stderr, "log_hostile: a good log refused\n");
		close(lfd);
		return WRONG;
	}
	/* live_rings() negotiates again: the same features, with LOG_ALL kept by the SET_FEATURES below. */
	int efd[4];
	live_rings(fd, efd);
	m = mk(VHOST_USER_SET_FEATURES, 8);
	m.p.u64 = VHD_BIT(VIRTIO_F_VERSION_1) | VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES) | VHD_BIT(VHOST_F_LOG_ALL);
	send_msg(fd, &m);
	m = mk(VHOST_USER_SET_VRING_ADDR, sizeof(struct vhost_vring_addr));
	uint64_t base = 0x7f0000000000ull + 0x10000;
	m.p.addr = (struct vhost_vring_addr){1, 1u << VHOST_VRING_F_LOG, base, base + 0x8000, base + 0x4000,
					     0x100000000ull + 0x18000};
	send_msg(fd, &m);
	enum outcome o = probe(fd); /* every message above handled: logging is on */
	uint8_t *g = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (g == MAP_FAILED || ftruncate(lfd, 0) < 0) {
		perror("mmap/ftruncate");
		exit(2);
	}
	/* Queue 1 (the guest's transmit queue): descriptor 0, published in the avail ring, holding a virtio-net
	 * header and no frame. The back-end refuses it (too small) and still returns it in the used ring, which is
	 * the logged write; no frame reaches the back-end's user (a verifying vhost-pktgen would count a frame of
	 * zeros as corrupt, and the good front-end after the attacks must find it clean). */
	struct virtq_desc d = {0x100000000ull + 0x80000, 12, 0, 0};
	memcpy(g + 0x10000, &d, sizeof(d));
	uint16_t one16 = 1;
	memcpy(g + 0x14000 + 4, (uint16_t[]){0}, 2);
	__atomic_store_n((uint16_t *)(g + 0x14000 + 2), one16, __ATOMIC_RELEASE);
	uint64_t one = 1;
	if (write(efd[2], &one, sizeof(one)) < 0)
		perror("kick");
	munmap(g, MEM_SIZE);
	for (unsigned i = 0; i < 4; i++)
		close(efd[i]);
	close(lfd);
	return o == ANSWERS ? CLOSES : o;
}

/* ---------------------------------------------------------------- classes: issue 16 */

#define USER_BASE 0x7f0000000000ull
#define GUEST_BASE 0x100000000ull

/* Negotiated, the memory table mapped (front-end addresses from USER_BASE), queue 0 sized 256. */
static void sized_queue(int fd)
{
	negotiate(fd);
	struct vhost_user_memory_region r = {GUEST_BASE, MEM_SIZE, USER_BASE, 0};
	mem_table(fd, &r, 1);
	struct vhu_msg m = mk(VHOST_USER_SET_VRING_NUM, 8);
	m.p.state = (struct vhost_vring_state){0, 256};
	send_msg(fd, &m);
}

static enum outcome ring_at(int fd, uint64_t desc, uint64_t avail, uint64_t used, const char *what)
{
	sized_queue(fd);
	struct vhu_msg m = mk(VHOST_USER_SET_VRING_ADDR, sizeof(struct vhost_vring_addr));
	m.p.addr = (struct vhost_vring_addr){0, 0, desc, used, avail, 0};
	return refused(fd, &m, what);
}

static enum outcome c_ring_outside_memory(int fd)
{
	uint64_t b = USER_BASE + 4 * MEM_SIZE;
	return ring_at(fd, b, b + 0x4000, b + 0x8000, "rings outside every region");
}

static enum outcome c_ring_straddles_region(int fd)
{
	/* 256 descriptors (4 KiB) starting one entry short of the region's last 4 KiB. */
	uint64_t b = USER_BASE;
	return ring_at(fd, b + MEM_SIZE - 4096 + 16, b + 0x4000, b + 0x8000, "descriptor table past the region's end");
}

static enum outcome c_ring_guest_physical(int fd)
{
	uint64_t b = GUEST_BASE;
	return ring_at(fd, b, b + 0x4000, b + 0x8000, "rings at guest-physical addresses");
}

static enum outcome c_split_size_300(int fd)
{
	negotiate(fd);
	struct vhu_msg m = mk(VHOST_USER_SET_VRING_NUM, 8);
	m.p.state = (struct vhost_vring_state){0, 300};
	return refused(fd, &m, "split ring size 300");
}

static enum outcome c_size_65536(int fd)
{
	negotiate(fd);
	struct vhu_msg m = mk(VHOST_USER_SET_VRING_NUM, 8);
	m.p.state = (struct vhost_vring_state){1, 65536};
	return refused(fd, &m, "ring size 65536");
}

static enum outcome c_mem_no_regions(int fd)
{
	negotiate(fd);
	struct vhu_msg m = mk(VHOST_USER_SET_MEM_TABLE, 8);
	m.p.memory.nregions = 0;
	return refused(fd, &m, "memory table with no regions");
}

/* SET_VRING_KICK/CALL/ERR for queue q with nfd, which must be refused. */
static enum outcome vring_fd_refused(int fd, uint32_t req, unsigned q, int nfd, const char *what)
{
	struct vhu_msg m = mk(req, 8);
	m.p.u64 = q;
	m.fds[0] = nfd;
	m.nfds = 1;
	return refused(fd, &m, what);
}

static enum outcome c_socket_kick_fd(int fd)
{
	negotiate(fd);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("socketpair");
		exit(2);
	}
	enum outcome o = vring_fd_refused(fd, VHOST_USER_SET_VRING_KICK, 1, sv[0], "socket as kick fd");
	close(sv[0]);
	close(sv[1]);
	return o;
}

/*
 * Live rings whose TX queue (1) gets the write end of a full, blocking pipe as call fd, then a frame to
 * forward: a back-end that took the pipe would block its data path in the interrupt write that follows (and,
 * once the read end goes, get EPIPE or die of SIGPIPE). It must refuse the fd; the frame is then consumed
 * without an interrupt. The first round's pipe stays open, full, until we exit, so a back-end that took it
 * stays stuck for the whole class: the probe after each round, and the runner's traffic through the back-end's
 * other ports, see it.
 */
static enum outcome c_pipe_call_fd(int fd)
{
	uint8_t *g = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (g == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	memset(g, 0, 0x40000); /* fresh rings for this round (truncating would fault an old session's mapping) */
	int efd[4];
	live_rings(fd, efd);
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0 || fcntl(pfd[1], F_SETFL, O_NONBLOCK) < 0) {
		perror("pipe");
		exit(2);
	}
	static const uint8_t junk[4096];
	while (write(pfd[1], junk, sizeof(junk)) > 0)
		;
	if (fcntl(pfd[1], F_SETFL, 0) < 0) { /* full and blocking, as the attack hands it over */
		perror("fcntl");
		exit(2);
	}
	enum outcome o = vring_fd_refused(fd, VHOST_USER_SET_VRING_CALL, 1, pfd[1], "full pipe as call fd");
	/* One 60-byte frame behind a virtio_net_hdr_v1 on TX (live_rings: queue 1 at offset 0x10000, its
	 * descriptors there, avail ring +0x4000), then a kick. Its header has an unknown GSO type, so the back-end
	 * consumes the buffer (and would interrupt) but drops the frame as bad_header: nothing reaches the other
	 * ports' verifying receivers. */
	uint8_t *frame = g + 0x30000;
	memset(frame, 0, 12 + 60);
	frame[1] = 0x55;
	struct virtq_desc *d = (struct virtq_desc *)(g + 0x10000);
	d[0] = (struct virtq_desc){GUEST_BASE + 0x30000, 12 + 60, 0, 0};
	struct virtq_avail *av = (struct virtq_avail *)(g + 0x14000);
	av->ring[0] = 0;
	__atomic_store_n(&av->idx, 1, __ATOMIC_RELEASE);
	uint64_t one = 1;
	if (write(efd[2], &one, sizeof(one)) < 0)
		perror("kick");
	/* Wait for it to be used: a data path that is stuck never gets there, nor answers the probe after. */
	struct virtq_used *u = (struct virtq_used *)(g + 0x18000);
	for (int i = 0; i < 300 && __atomic_load_n(&u->idx, __ATOMIC_ACQUIRE) == 0; i++)
		usleep(10000);
	if (__atomic_load_n(&u->idx, __ATOMIC_ACQUIRE) != 1) {
		fprintf(stderr, "pipe_call_fd: the frame on TX was not used in 3 s\n");
		o = HANGS;
	}
	munmap(g, MEM_SIZE);
	static bool held;
	if (held) {
		close(pfd[0]);
		close(pfd[1]);
	}
	held = true;
	for (unsigned i = 0; i < 4; i++)
		close(efd[i]);
	return o;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

#define STALL_S 8.0 /* how long a stalling attack keeps at it before calling the back-end stuck */

/* GET_FEATURES requests for STALL_S seconds, never reading a reply: once its output is full the back-end must
 * hang up on us rather than wait (a blocking reply would freeze its control thread). */
static enum outcome c_no_read(int fd)
{
	struct vhu_msg m = mk(VHOST_USER_GET_FEATURES, 0);
	double end = now_s() + STALL_S;
	while (now_s() < end) {
		ssize_t n = send(fd, &m.hdr, sizeof(m.hdr), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			return CLOSES; /* hung up on us: closes() then sees the end of the stream */
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			poll(&p, 1, 50);
		}
	}
	fprintf(stderr, "no_read: still connected after %.0f s of unread replies\n", STALL_S);
	return HANGS;
}

/* A valid SET_VRING_ADDR whose 40-byte payload trickles in one byte every 300 ms after its header (12 s to the
 * end): the back-end must give up on the message before it completes; a deadline per message must not be reset
 * by each byte that arrives. */
static enum outcome c_trickle(int fd)
{
	struct vhu_msg m = mk(VHOST_USER_SET_VRING_ADDR, sizeof(struct vhost_vring_addr));
	if (send(fd, &m.hdr, sizeof(m.hdr), MSG_NOSIGNAL) < 0)
		return CLOSES;
	const uint8_t *p = (const uint8_t *)&m.p;
	for (size_t i = 0; i < sizeof(struct vhost_vring_addr); i++) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, 300) > 0) {
			char c;
			if (recv(fd, &c, 1, MSG_PEEK) <= 0)
				return CLOSES; /* end of stream: hung up on mid-message */
		}
		if (send(fd, p + i, 1, MSG_NOSIGNAL) < 0)
			return CLOSES;
	}
	fprintf(stderr, "trickle: the whole message went through, one payload byte per 300 ms\n");
	return HANGS;
}

/* 32 connections at once (the back-end serves one; the rest wait in its backlog or are refused), each sent a
 * partial header, all dropped together. */
static enum outcome c_many_at_once(int fd)
{
	int extra[32];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	struct vhost_user_header h = {VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, 8};
	for (unsigned i = 0; i < 32; i++) {
		extra[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (connect(extra[i], (struct sockaddr *)&sa, sizeof(sa)) == 0)
			send_raw(extra[i], &h, 5);
	}
	send_raw(fd, &h, 5);
	for (unsigned i = 0; i < 32; i++)
		close(extra[i]);
	return LEAVES;
}

/* IOTLB messages with every hostile value, on a device with rings running at IOVAs (when the back-end offers
 * ACCESS_PLATFORM: vhostd's iommu=on default) and a back-end channel this front-end never reads: each refusal
 * acknowledged as one, the valid updates taken, 2100 of them (more than the cache holds), the rings'
 * invalidation, and MISS requests piling up unread, none of which may stall the back-end. Without
 * ACCESS_PLATFORM offered every IOTLB message is refused (and the 2100 pages are left out). */
static enum outcome iotlb_ack(int fd, uint8_t type, uint64_t iova, uint64_t size, uint64_t uaddr, uint8_t perm,
			      int64_t want, const char *what)
{
	struct vhu_msg m = mk(VHOST_USER_IOTLB_MSG, sizeof(struct vhost_iotlb_msg));
	m.p.iotlb = (struct vhost_iotlb_msg){.iova = iova, .size = size, .uaddr = uaddr, .perm = perm, .type = type};
	int64_t a = ack_of(fd, &m);
	if (a == want)
		return ANSWERS;
	fprintf(stderr, "iotlb %s: acknowledged %lld, want %lld\n", what, (long long)a, (long long)want);
	return a < 0 ? HANGS : WRONG;
}

static enum outcome c_iotlb_hostile(int fd)
{
	struct vhu_msg m = mk(VHOST_USER_GET_FEATURES, 0);
	send_msg(fd, &m);
	struct vhu_msg r;
	uint64_t offered = 0;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, REPLY_MS) <= 0 || vhu_msg_recv(fd, &r) < 0)
			return HANGS;
		vhu_msg_close_fds(&r);
		if (r.hdr.request == VHOST_USER_GET_FEATURES) {
			offered = r.p.u64;
			break;
		}
	}
	bool ap = offered & VHD_BIT(VIRTIO_F_ACCESS_PLATFORM);
	m = mk(VHOST_USER_SET_OWNER, 0);
	send_msg(fd, &m);
	m = mk(VHOST_USER_SET_PROTOCOL_FEATURES, 8);
	m.p.u64 = VHD_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) | VHD_BIT(VHOST_USER_PROTOCOL_F_BACKEND_REQ);
	send_msg(fd, &m);
	m = mk(VHOST_USER_SET_FEATURES, 8);
	m.p.u64 = VHD_BIT(VIRTIO_F_VERSION_1) | VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES) |
		  (ap ? VHD_BIT(VIRTIO_F_ACCESS_PLATFORM) : 0);
	send_msg(fd, &m);
	uint64_t ua = 0x7f0000000000ull, iova = 0x80000000ull;
	struct vhost_user_memory_region reg = {0x100000000ull, MEM_SIZE, ua, 0};
	mem_table(fd, &reg, 1);
	int sp[2], efd[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return WRONG;
	m = mk(VHOST_USER_SET_BACKEND_REQ_FD, 0);
	m.fds[0] = sp[1];
	m.nfds = 1;
	send_msg(fd, &m);
	close(sp[1]);
	/* Queue 0 at IOVAs: its rings miss until mapped, and MISS requests go to sp[0], never read. */
	m = mk(VHOST_USER_SET_VRING_NUM, 8);
	m.p.state = (struct vhost_vring_state){0, 256};
	send_msg(fd, &m);
	m = mk(VHOST_USER_SET_VRING_ADDR, sizeof(struct vhost_vring_addr));
	m.p.addr = (struct vhost_vring_addr){0, 0, iova, iova + 0x2000, iova + 0x1000, 0};
	send_msg(fd, &m);
	for (unsigned k = 0; k < 2; k++) {
		efd[k] = eventfd(0, EFD_CLOEXEC);
		m = mk(k ? VHOST_USER_SET_VRING_CALL : VHOST_USER_SET_VRING_KICK, 8);
		m.p.u64 = 0;
		m.fds[0] = efd[k];
		m.nfds = 1;
		send_msg(fd, &m);
	}
	m = mk(VHOST_USER_SET_VRING_ENABLE, 8);
	m.p.state = (struct vhost_vring_state){0, 1};
	send_msg(fd, &m);
	int64_t ok = ap ? 0 : 1;
	enum outcome o = ANSWERS;
	static const struct {
		uint8_t type;
		uint64_t iova, size, uaddr;
		uint8_t perm;
		const char *what;
	} bad[] = {
		{VHOST_IOTLB_UPDATE, 0x80000000ull, 0, 0x7f0000000000ull, VHOST_ACCESS_RW, "size 0"},
		{VHOST_IOTLB_UPDATE, UINT64_MAX - 0xfff, 0x2000, 0x7f0000000000ull, VHOST_ACCESS_RW, "iova wraps"},
		{VHOST_IOTLB_UPDATE, 0x80000000ull, 0x2000, UINT64_MAX - 0xfff, VHOST_ACCESS_RW, "uaddr wraps"},
		{VHOST_IOTLB_UPDATE, 0x80000000ull, 0x1000, 0x7f0000000000ull, 0, "perm 0"},
		{VHOST_IOTLB_UPDATE, 0x80000000ull, 0x1000, 0x7f0000000000ull, 0xff, "perm 255"},
		{VHOST_IOTLB_UPDATE, 0x80000000ull, 0x2000, 0x7f0000000000ull + MEM_SIZE - 0x1000, VHOST_ACCESS_RW,
		 "uaddr straddles the region"},
		{VHOST_IOTLB_UPDATE, 0x80000000ull, 0x1000, 0x100000000ull, VHOST_ACCESS_RW, "uaddr a GPA"},
		{VHOST_IOTLB_INVALIDATE, 0x80000000ull, 0, 0, 0, "invalidate size 0"},
		{VHOST_IOTLB_MISS, 0x80000000ull, 0x1000, 0x7f0000000000ull, VHOST_ACCESS_RW, "type MISS"},
		{0xee, 0x80000000ull, 0x1000, 0x7f0000000000ull, VHOST_ACCESS_RW, "type 0xee"},
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]) && o == ANSWERS; i++)
		o = iotlb_ack(fd, bad[i].type, bad[i].iova, bad[i].size, bad[i].uaddr, bad[i].perm, 1, bad[i].what);
	/* The rings mapped (the queue starts), then more non-mergeable pages than the cache holds (the rings'
	 * entry evicted: the queue waits again), an invalidation running off the end of the space, and the rings
	 * mapped again. */
	if (o == ANSWERS)
		o = iotlb_ack(fd, VHOST_IOTLB_UPDATE, iova, 0x4000, ua, VHOST_ACCESS_RW, ok, "rings");
	/* Without ACCESS_PLATFORM each would be the same refusal: not worth 2100 round trips. */
	for (unsigned i = 0; ap && i < 2100 && o == ANSWERS; i++)
		o = iotlb_ack(fd, VHOST_IOTLB_UPDATE, iova + 0x100000 + 0x2000ull * i, 0x1000,
			      ua + 0x10000 + 0x1000 * (i % 128), VHOST_ACCESS_RO, ok, "one of 2100 pages");
	if (o == ANSWERS)
		o = iotlb_ack(fd, VHOST_IOTLB_INVALIDATE, 0x1000, UINT64_MAX, 0, 0, ok, "invalidate to the end");
	if (o == ANSWERS)
		o = iotlb_ack(fd, VHOST_IOTLB_UPDATE, iova, 0x4000, ua, VHOST_ACCESS_RW, ok, "rings again");
	close(sp[0]);
	close(efd[0]);
	close(efd[1]);
	return o == ANSWERS ? probe(fd) : o;
}

static const struct {
	const char *name;
	enum outcome (*fn)(int fd);
	unsigned max_rounds; /* 0: as many as asked; slow classes take seconds per round */
} classes[] = {
	{"oversized_size", c_oversized_size, 0},
	{"bad_version", c_bad_version, 0},
	{"truncated_header", c_truncated_header, 0},
	{"closed_mid_message", c_closed_mid_message, 0},
	{"bad_request", c_bad_request, 0},
	{"short_payload", c_short_payload, 0},
	{"too_many_fds", c_too_many_fds, 0},
	{"fds_on_fdless", c_fds_on_fdless, 0},
	{"mem_overlap", c_mem_overlap, 0},
	{"mem_overflow", c_mem_overflow, 0},
	{"bad_vring_index", c_bad_vring_index, 0},
	{"huge_num", c_huge_num, 0},
	{"log_base_overflow", c_log_base_overflow, 0},
	{"inflight", c_inflight, 0},
	{"garbage_after_valid", c_garbage_after_valid, 0},
	{"setup_then_vanish", c_setup_then_vanish, 0},
	{"shrink_memory", c_shrink_memory, 0},
	{"log_hostile", c_log_hostile, 0},
	{"many_at_once", c_many_at_once, 0},
	{"pipe_call_fd", c_pipe_call_fd, 0},
	{"socket_kick_fd", c_socket_kick_fd, 0},
	{"split_size_300", c_split_size_300, 0},
	{"size_65536", c_size_65536, 0},
	{"mem_no_regions", c_mem_no_regions, 0},
	{"ring_outside_memory", c_ring_outside_memory, 0},
	{"ring_straddles_region", c_ring_straddles_region, 0},
	{"ring_guest_physical", c_ring_guest_physical, 0},
	{"iotlb_hostile", c_iotlb_hostile, 10},
	{"no_read", c_no_read, 2},
	{"trickle", c_trickle, 2},
};
#define NCLASSES (sizeof(classes) / sizeof(classes[0]))

/* Wait for the back-end to close fd (EOF), up to REPLY_MS. */
static bool closes(int fd)
{
	char b[256];
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, REPLY_MS) <= 0)
			return false;
		ssize_t r = recv(fd, b, sizeof(b), 0);
		if (r <= 0)
			return true; /* EOF or reset */
	}
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s SOCKET CLASS|list [ROUNDS]\n", argv[0]);
		return 2;
	}
	if (!strcmp(argv[2], "list")) {
		for (unsigned i = 0; i < NCLASSES; i++)
			printf("%s\n", classes[i].name);
		return 0;
	}
	sock_path = argv[1];
	unsigned rounds = argc > 3 ? (unsigned)atoi(argv[3]) : 200;
	unsigned c;
	for (c = 0; c < NCLASSES && strcmp(classes[c].name, argv[2]); c++)
		;
	if (c == NCLASSES) {
		fprintf(stderr, "unknown class %s\n", argv[2]);
		return 2;
	}
	if (classes[c].max_rounds && rounds > classes[c].max_rounds)
		rounds = classes[c].max_rounds;
	memfd = memfd_create("hostile", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, MEM_SIZE) < 0) {
		perror("memfd");
		return 2;
	}
	unsigned answered = 0, closed = 0, unexpected = 0;
	for (unsigned i = 0; i < rounds; i++) {
		int fd = conn_open();
		enum outcome want = classes[c].fn(fd);
		bool ok = want == LEAVES;
		if (want == ANSWERS) {
			ok = probe(fd) == ANSWERS;
			answered += ok;
		} else if (want == CLOSES) {
			ok = closes(fd);
			closed += ok;
		}
		if (!ok)
			fprintf(stderr, "%s round %u: the back-end %s\n", classes[c].name, i,
				want == ANSWERS ? "stopped answering" : want == CLOSES ? "kept the connection open"
				: want == WRONG ? "accepted what it must refuse" : "did not answer");
		close(fd);
		/* The verdict is in; a stuck back-end would make every further round wait out its timeouts. */
		if (!ok && ++unexpected == 3) {
			rounds = i + 1;
			break;
		}
	}
	printf("%s: %u rounds, %u answered, %u closed, %u unexpected\n", classes[c].name, rounds, answered, closed,
	       unexpected);
	close(memfd);
	return unexpected ? 1 : 0;
}
