/* SPDX-License-Identifier: MIT */
/*
 * A hostile vhost-user front-end: connects to a back-end's socket again and again and sends one class of
 * malformed message per run, ROUNDS times, each on a fresh connection. After each message it checks what the
 * back-end must do: answer a GET_FEATURES on the same connection (the message was refused, the session goes on)
 * or close the connection (the stream cannot be trusted any more). The caller (test_hostile.py) watches the
 * back-end's fd count and RSS around each class and sends good traffic afterwards.
 *
 * usage: hostile_frontend SOCKET CLASS [ROUNDS]    CLASS "list" prints the classes
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
#include <unistd.h>

#include "spec/virtio_config.h"
#include "vhost_user/msg.h"
#include "../unit/vu_raw.h"

#define MEM_SIZE (1u << 20)
#define REPLY_MS 3000

static const char *sock_path;
static int memfd = -1;

/* What the back-end must do after a class's messages: keep answering on the connection, or hang up; LEAVES:
 * the front-end itself goes away (the back-end must then release what the session held). */
enum outcome { ANSWERS, CLOSES, LEAVES, HANGS };

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
	m.p.inflight = (struct vhost_user_inflight){MEM_SIZE, 0, UINT16_MAX, 1024};
	m.fds[0] = memfd;
	m.nfds = 1;
	send_msg(fd, &m);
	m = mk(VHOST_USER_GET_INFLIGHT_FD, sizeof(struct vhost_user_inflight));
	m.p.inflight = (struct vhost_user_inflight){0, 0, UINT16_MAX, 1024};
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

static const struct {
	const char *name;
	enum outcome (*fn)(int fd);
} classes[] = {
	{"oversized_size", c_oversized_size},
	{"bad_version", c_bad_version},
	{"truncated_header", c_truncated_header},
	{"closed_mid_message", c_closed_mid_message},
	{"bad_request", c_bad_request},
	{"short_payload", c_short_payload},
	{"too_many_fds", c_too_many_fds},
	{"fds_on_fdless", c_fds_on_fdless},
	{"mem_overlap", c_mem_overlap},
	{"mem_overflow", c_mem_overflow},
	{"bad_vring_index", c_bad_vring_index},
	{"huge_num", c_huge_num},
	{"log_base_overflow", c_log_base_overflow},
	{"inflight", c_inflight},
	{"garbage_after_valid", c_garbage_after_valid},
	{"setup_then_vanish", c_setup_then_vanish},
	{"shrink_memory", c_shrink_memory},
	{"many_at_once", c_many_at_once},
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
		if (!ok && unexpected++ < 3)
			fprintf(stderr, "%s round %u: the back-end %s\n", classes[c].name, i,
				want == ANSWERS ? "stopped answering" : "kept the connection open");
		close(fd);
	}
	printf("%s: %u rounds, %u answered, %u closed, %u unexpected\n", classes[c].name, rounds, answered, closed,
	       unexpected);
	close(memfd);
	return unexpected ? 1 : 0;
}
