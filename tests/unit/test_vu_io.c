/* SPDX-License-Identifier: MIT */
/*
 * Non-blocking vhost-user message I/O (vhu_io, msg.h) and the back-end's control plane against peers that stall:
 * a message assembled across reads, fds that arrive with its first byte, a bounded output queue, per-message
 * deadlines, and a front-end that trickles, stops mid-message or never reads its replies being disconnected
 * while another device served from the same thread carries on.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>

#include "harness.h"
#include "vu_rig.h"
#include "vhost_user/msg.h"

static void pair(int sv[2])
{
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
}

static void sleep_ms(unsigned ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&t, NULL);
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The wire bytes of m, as a peer would send them. */
static size_t wire(const struct vhu_msg *m, uint8_t *buf)
{
	memcpy(buf, &m->hdr, sizeof(m->hdr));
	memcpy(buf + sizeof(m->hdr), &m->p, m->hdr.size);
	return sizeof(m->hdr) + m->hdr.size;
}

/* Send len bytes with fds attached to the first of them. */
static void send_with_fds(int sock, const void *buf, size_t len, const int *fds, unsigned nfds)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {(void *)buf, len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	CHECK_EQ(sendmsg(sock, &mh, 0), (ssize_t)len);
}

/* A message trickled a few bytes at a time, its fds on the first byte: every read before the last byte says
 * -EAGAIN without waiting, and the whole message comes out once, fds with it. */
static void test_partial_reads(void)
{
	int sv[2];
	pair(sv);
	struct vhu_io io;
	vhu_io_init(&io, sv[1]);
	CHECK(fcntl(sv[1], F_GETFL) & O_NONBLOCK);
	int fds0 = th_count_fds();
	struct vhu_msg m = mk(VHOST_USER_SET_MEM_TABLE, 8 + 32);
	m.p.memory.nregions = 1;
	m.p.memory.regions[0].memory_size = 0x123000;
	uint8_t buf[512];
	size_t len = wire(&m, buf);
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	struct vhu_msg r;
	CHECK_EQ(vhu_io_recv(&io, &r), -EAGAIN);
	for (size_t off = 0; off < len; off += 5) {
		size_t n = len - off < 5 ? len - off : 5;
		send_with_fds(sv[0], buf + off, n, &fd, off == 0 ? 1 : 0);
		if (off + n < len)
			CHECK_EQ(vhu_io_recv(&io, &r), -EAGAIN);
	}
	close(fd);
	CHECK_EQ(vhu_io_recv(&io, &r), 0);
	CHECK_EQ(r.hdr.request, VHOST_USER_SET_MEM_TABLE);
	CHECK_EQ(r.hdr.size, 40);
	CHECK_EQ(r.p.memory.regions[0].memory_size, 0x123000);
	CHECK_EQ(r.nfds, 1);
	CHECK(fcntl(r.fds[0], F_GETFD) & FD_CLOEXEC);
	vhu_msg_close_fds(&r);
	CHECK_EQ(vhu_io_recv(&io, &r), -EAGAIN);
	CHECK_EQ(th_count_fds(), fds0);
	/* Two messages in one write come out one at a time: reads stop at the message's end. */
	struct vhu_msg a = mk(VHOST_USER_GET_FEATURES, 0), b = mk(VHOST_USER_SET_FEATURES, 8);
	b.p.u64 = 0x77;
	len = wire(&a, buf);
	len += wire(&b, buf + len);
	send_with_fds(sv[0], buf, len, NULL, 0);
	CHECK_EQ(vhu_io_recv(&io, &r), 0);
	CHECK_EQ(r.hdr.request, VHOST_USER_GET_FEATURES);
	CHECK_EQ(vhu_io_recv(&io, &r), 0);
	CHECK_EQ(r.hdr.request, VHOST_USER_SET_FEATURES);
	CHECK_EQ(r.p.u64, 0x77);
	close(sv[0]);
	CHECK_EQ(vhu_io_recv(&io, &r), -ECONNRESET);
	vhu_io_close(&io);
	CHECK_EQ(io.fd, -1);
}

/* Too many fds: the message is consumed and refused, its fds closed, and the next one reads fine. A header
 * that cannot be resynchronised is -EPROTO. A peer gone mid-message closes the fds it had sent. */
static void test_bad_input(void)
{
	int sv[2];
	pair(sv);
	struct vhu_io io;
	vhu_io_init(&io, sv[1]);
	int fds0 = th_count_fds();
	int many[10];
	for (unsigned i = 0; i < 10; i++)
		many[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	struct vhu_msg m = mk(VHOST_USER_SET_FEATURES, 8), r;
	uint8_t buf[64];
	size_t len = wire(&m, buf);
	send_with_fds(sv[0], buf, len, many, 10);
	for (unsigned i = 0; i < 10; i++)
		close(many[i]);
	CHECK_EQ(vhu_io_recv(&io, &r), -EBADMSG);
	CHECK_EQ(r.hdr.request, VHOST_USER_SET_FEATURES);
	CHECK_EQ(th_count_fds(), fds0);
	m = mk(VHOST_USER_GET_QUEUE_NUM, 0);
	len = wire(&m, buf);
	send_with_fds(sv[0], buf, len, NULL, 0);
	CHECK_EQ(vhu_io_recv(&io, &r), 0);
	CHECK_EQ(r.hdr.request, VHOST_USER_GET_QUEUE_NUM);

	struct vhost_user_header h = {VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, 1u << 20};
	send_with_fds(sv[0], &h, sizeof(h), NULL, 0);
	CHECK_EQ(vhu_io_recv(&io, &r), -EPROTO);
	h = (struct vhost_user_header){VHOST_USER_SET_FEATURES, 2, 8};
	send_with_fds(sv[0], &h, sizeof(h), NULL, 0);
	CHECK_EQ(vhu_io_recv(&io, &r), -EPROTO);

	int one = open("/dev/null", O_RDONLY | O_CLOEXEC);
	h = (struct vhost_user_header){VHOST_USER_SET_VRING_CALL, VHOST_USER_VERSION, 8};
	send_with_fds(sv[0], &h, sizeof(h), &one, 1);
	close(one);
	CHECK_EQ(vhu_io_recv(&io, &r), -EAGAIN);
	CHECK_EQ(th_count_fds(), fds0 + 1); /* held by the partial message */
	close(sv[0]);
	CHECK_EQ(vhu_io_recv(&io, &r), -ECONNRESET);
	CHECK_EQ(th_count_fds(), fds0 - 1); /* and sv[0] is gone too */
	vhu_io_close(&io);
}

/* A peer that does not read: sends queue up to VHU_IO_QUEUE messages behind a full socket, then -ENOBUFS, never
 * a wait; the events ask for POLLOUT. Once the peer reads, flush delivers every message in order, each with
 * its fd, although the sender closed its own copies right after queueing. */
static void test_output_queue(void)
{
	int sv[2];
	pair(sv);
	int small = 4096;
	CHECK(setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0);
	CHECK(setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) == 0);
	struct vhu_io io;
	vhu_io_init(&io, sv[1]);
	int fds0 = th_count_fds();
	CHECK_EQ(vhu_io_events(&io), POLLIN);
	unsigned sent = 0;
	int rc = 0;
	/* Bounded: the kernel takes a few hundred KiB at most before the queue has to hold the rest. */
	for (unsigned i = 0; i < 100000 && rc == 0; i++) {
		struct vhu_msg m = mk(VHOST_USER_SET_VRING_CALL, 8);
		m.p.u64 = sent;
		m.fds[0] = eventfd(0, EFD_CLOEXEC);
		m.nfds = 1;
		rc = vhu_io_send(&io, &m);
		close(m.fds[0]);
		if (rc == 0)
			sent++;
	}
	CHECK_EQ(rc, -ENOBUFS);
	CHECK(vhu_io_out_pending(&io));
	CHECK_EQ(vhu_io_events(&io), POLLOUT);
	CHECK_EQ(vhu_io_flush(&io), -EAGAIN);
	char why[256];
	CHECK(vhu_io_expired(&io, 60000, why, sizeof(why)) == NULL);
	CHECK(vhu_io_timeout_ms(&io, 60000) > 0);
	sleep_ms(20);
	CHECK(vhu_io_expired(&io, 10, why, sizeof(why)) != NULL);
	CHECK(strstr(why, "did not read what we sent") != NULL);
	CHECK_EQ(vhu_io_timeout_ms(&io, 10), 0);
	/* Read everything back, flushing as room appears. */
	for (unsigned i = 0; i < sent; i++) {
		struct vhu_msg r;
		struct pollfd p = {.fd = sv[0], .events = POLLIN};
		vhu_io_flush(&io);
		CHECK(poll(&p, 1, 5000) == 1);
		CHECK_EQ(vhu_msg_recv(sv[0], &r), 0);
		CHECK_EQ(r.hdr.request, VHOST_USER_SET_VRING_CALL);
		CHECK_EQ(r.p.u64, i);
		CHECK_EQ(r.nfds, 1);
		uint64_t one = 1;
		CHECK_EQ(write(r.fds[0], &one, 8), 8); /* a live eventfd, not a closed number */
		vhu_msg_close_fds(&r);
	}
	CHECK_EQ(vhu_io_flush(&io), 0);
	CHECK(!vhu_io_out_pending(&io));
	CHECK_EQ(vhu_io_timeout_ms(&io, 10), -1);
	CHECK_EQ(th_count_fds(), fds0);
	vhu_io_close(&io);
	close(sv[0]);
}

/* Sending to a peer that has gone: -EPIPE, and no SIGPIPE (its default action would kill this child). */
static void test_no_sigpipe(void)
{
	signal(SIGPIPE, SIG_DFL);
	int sv[2];
	pair(sv);
	struct vhu_io io;
	vhu_io_init(&io, sv[1]);
	close(sv[0]);
	struct vhu_msg m = mk(VHOST_USER_GET_FEATURES, 0);
	CHECK_EQ(vhu_io_send(&io, &m), -EPIPE);
	vhu_io_close(&io);
}

/* A partial message past its deadline is named: how much of what arrived. */
static void test_input_deadline(void)
{
	int sv[2];
	pair(sv);
	struct vhu_io io;
	vhu_io_init(&io, sv[1]);
	char why[256];
	struct vhu_msg r;
	CHECK_EQ(vhu_io_timeout_ms(&io, 10), -1);
	struct vhost_user_header h = {VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, 8};
	send_with_fds(sv[0], &h, 5, NULL, 0);
	CHECK_EQ(vhu_io_recv(&io, &r), -EAGAIN);
	CHECK(vhu_io_expired(&io, 60000, why, sizeof(why)) == NULL);
	sleep_ms(20);
	CHECK(vhu_io_expired(&io, 10, why, sizeof(why)) != NULL);
	CHECK(strstr(why, "sent 5 of a message header's 12 bytes") != NULL);
	send_with_fds(sv[0], (char *)&h + 5, sizeof(h) - 5, NULL, 0);
	CHECK_EQ(vhu_io_recv(&io, &r), -EAGAIN);
	CHECK(vhu_io_expired(&io, 10, why, sizeof(why)) != NULL);
	CHECK(strstr(why, "SET_FEATURES (2) with 0 of its 8 payload bytes") != NULL);
	vhu_io_close(&io);
	close(sv[0]);
}

/* ------------------------------------------------------------------ the back-end against stalling peers */

/* Poll both devices as a control thread would, for at most limit_s seconds or until dev a disconnects; every
 * dispatch must come back (the harness's per-case timeout catches one that does not). */
static void run_two(struct rig *a, struct rig *b, double limit_s, void (*step)(struct rig *a, void *arg), void *arg)
{
	double end = now_s() + limit_s;
	while (a->ev.disconnected == 0 && now_s() < end) {
		if (step)
			step(a, arg);
		struct pollfd p[2];
		unsigned n = vhd_vu_dev_pollfds(a->dev, p, 1);
		n += vhd_vu_dev_pollfds(b->dev, p + n, 1);
		int t = vhd_vu_dev_timeout_ms(a->dev);
		poll(p, n, t < 0 || t > 50 ? 50 : t);
		vhd_vu_dev_dispatch(a->dev);
		vhd_vu_dev_dispatch(b->dev);
		/* The other device answers at once throughout. */
		CHECK_EQ(get_u64(b, VHOST_USER_GET_QUEUE_NUM), 1);
	}
}

static void open_two(struct rig *a, struct rig *b)
{
	rig_msg_timeout_ms = 300;
	rig_open(a, 1);
	rig_connect(a);
	rig_open_suffix(b, 1, "-b");
	rig_connect(b);
}

/* The header of a message whose payload never comes: the first dispatch returns at once with the front-end
 * still connected; once the deadline passes it is disconnected, and the next front-end is served. */
static void test_stalled_payload(void)
{
	struct rig a, b;
	open_two(&a, &b);
	struct vhost_user_header h = {VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, 8};
	CHECK(send(a.fe, &h, sizeof(h), 0) == sizeof(h));
	CHECK_EQ(vhd_vu_dev_dispatch(a.dev), 0);
	CHECK(vhd_vu_dev_connected(a.dev));
	int t = vhd_vu_dev_timeout_ms(a.dev);
	CHECK(t > 0 && t <= 301);
	run_two(&a, &b, 20, NULL, NULL);
	CHECK_EQ(a.ev.disconnected, 1);
	CHECK(!vhd_vu_dev_connected(a.dev));
	close(a.fe);
	rig_connect(&a);
	CHECK_EQ(get_u64(&a, VHOST_USER_GET_QUEUE_NUM), 1);
	rig_close(&a);
	rig_close(&b);
}

/* One byte every 100 ms: each byte is progress, but the message as a whole is late, so it is cut off before it
 * completes (12 bytes take 1.2 s against a 300 ms deadline). */
static void trickle_step(struct rig *a, void *arg)
{
	double *next = arg;
	static const struct vhost_user_header h = {VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, 0};
	static unsigned off;
	if (now_s() >= *next && off < sizeof(h)) {
		CHECK(send(a->fe, (const char *)&h + off, 1, MSG_NOSIGNAL) == 1);
		off++;
		*next = now_s() + 0.1;
	}
}

static void test_trickle(void)
{
	struct rig a, b;
	open_two(&a, &b);
	double next = 0;
	run_two(&a, &b, 20, trickle_step, &next);
	CHECK_EQ(a.ev.disconnected, 1);
	/* Cut off before the message was whole: no reply was ever sent. */
	struct vhu_msg r;
	CHECK(vhu_msg_recv(a.fe, &r) < 0);
	rig_close(&a);
	rig_close(&b);
}

/* GET_FEATURES over and over, replies never read: the replies fill the socket, the back-end stops reading
 * requests while its own are queued, and the front-end is disconnected at the deadline. */
static void flood_step(struct rig *a, void *arg)
{
	(void)arg;
	struct vhu_msg m = mk(VHOST_USER_GET_FEATURES, 0);
	uint8_t buf[16];
	size_t len = wire(&m, buf);
	for (int i = 0; i < 64; i++)
		if (send(a->fe, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)len)
			break;
}

static void test_no_read(void)
{
	struct rig a, b;
	open_two(&a, &b);
	int fl = fcntl(a.fe, F_GETFL);
	CHECK(fcntl(a.fe, F_SETFL, fl | O_NONBLOCK) == 0);
	run_two(&a, &b, 30, flood_step, NULL);
	CHECK_EQ(a.ev.disconnected, 1);
	rig_close(&a);
	rig_close(&b);
}

static const struct th_case cases[] = {
	{"partial_reads", test_partial_reads, 0},
	{"bad_input", test_bad_input, 0},
	{"output_queue", test_output_queue, 0},
	{"no_sigpipe", test_no_sigpipe, 0},
	{"input_deadline", test_input_deadline, 0},
	{"backend_stalled_payload", test_stalled_payload, 0},
	{"backend_trickle", test_trickle, 0},
	{"backend_no_read", test_no_read, 0},
};

TH_MAIN("test_vu_io", cases)
