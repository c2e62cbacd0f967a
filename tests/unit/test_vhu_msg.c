/* SPDX-License-Identifier: MIT */
/* vhost-user message I/O: framing, fd passing, and every way a peer can get a message wrong. */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "vu_raw.h"
#include "util/fdio.h"
#include "vhost_user/msg.h"

static void pair(int sv[2])
{
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
}

static void test_roundtrip_with_fds(void)
{
	int sv[2];
	pair(sv);
	int before = th_count_fds();
	struct vhu_msg m = mk(VHOST_USER_SET_MEM_TABLE, 8 + 2 * 32);
	m.p.memory.nregions = 2;
	m.p.memory.regions[1].memory_size = 0x1000;
	m.fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	m.fds[1] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	m.nfds = 2;
	CHECK_EQ(vhu_msg_send(sv[0], &m), 0);
	vhu_msg_close_fds(&m);
	struct vhu_msg r;
	CHECK_EQ(vhu_msg_recv(sv[1], &r), 0);
	CHECK_EQ(r.hdr.request, VHOST_USER_SET_MEM_TABLE);
	CHECK_EQ(r.hdr.size, 72);
	CHECK_EQ(r.nfds, 2);
	CHECK_EQ(r.p.memory.regions[1].memory_size, 0x1000);
	CHECK(fcntl(r.fds[0], F_GETFD) & FD_CLOEXEC);
	const char *why;
	CHECK_EQ(vhu_msg_validate(&r, &why), 0);
	int fd = vhu_msg_take_fd(&r, 0);
	CHECK(fd >= 0);
	close(fd);
	vhu_msg_close_fds(&r);
	CHECK_EQ(th_count_fds(), before);
	/* Bytes past the payload are zeroed, not left over from an earlier message. */
	struct vhu_msg s = mk(VHOST_USER_GET_FEATURES, 0);
	CHECK_EQ(vhu_msg_send(sv[0], &s), 0);
	CHECK_EQ(vhu_msg_recv(sv[1], &r), 0);
	CHECK_EQ(r.p.memory.regions[1].memory_size, 0);
	close(sv[0]);
	close(sv[1]);
}

static void test_too_many_fds(void)
{
	int sv[2];
	pair(sv);
	int before = th_count_fds();
	/* Hand-build a header carrying 12 fds: more than any message may. */
	struct vhu_msg m = mk(VHOST_USER_SET_VRING_CALL, 8);
	int fds[12];
	for (int i = 0; i < 12; i++)
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	VHDI_FD_CTL(12) ctl;
	struct iovec iov[2] = {{&m.hdr, sizeof(m.hdr)}, {&m.p, 8}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
	vhdi_fds_attach(&mh, ctl.buf, fds, 12);
	CHECK(sendmsg(sv[0], &mh, 0) == (ssize_t)(sizeof(m.hdr) + 8));
	for (int i = 0; i < 12; i++)
		close(fds[i]);
	struct vhu_msg r;
	CHECK_EQ(vhu_msg_recv(sv[1], &r), -EBADMSG);
	CHECK_EQ(r.nfds, 0);
	/* The stream stays in step: the next message reads fine. */
	struct vhu_msg s = mk(VHOST_USER_GET_QUEUE_NUM, 0);
	CHECK_EQ(vhu_msg_send(sv[0], &s), 0);
	CHECK_EQ(vhu_msg_recv(sv[1], &r), 0);
	CHECK_EQ(r.hdr.request, VHOST_USER_GET_QUEUE_NUM);
	CHECK_EQ(th_count_fds(), before);
	close(sv[0]);
	close(sv[1]);
}

static void test_bad_header(void)
{
	int sv[2];
	pair(sv);
	int before = th_count_fds();
	struct vhu_msg m = mk(VHOST_USER_SET_FEATURES, 8);
	m.hdr.flags = 2; /* version 2 does not exist */
	m.fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	m.nfds = 1;
	CHECK_EQ(vhu_msg_send(sv[0], &m), 0);
	vhu_msg_close_fds(&m);
	struct vhu_msg r;
	CHECK_EQ(vhu_msg_recv(sv[1], &r), -EPROTO);
	CHECK_EQ(th_count_fds(), before);
	/* A size larger than any payload: raw header, since vhu_msg_send refuses to build it. */
	struct vhost_user_header h = {VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, 1u << 20};
	CHECK(send(sv[0], &h, sizeof(h), 0) == sizeof(h));
	CHECK_EQ(vhu_msg_recv(sv[1], &r), -EPROTO);
	close(sv[0]);
	close(sv[1]);
}

static void test_peer_gone(void)
{
	int sv[2];
	pair(sv);
	struct vhu_msg r;
	/* Header promising 8 bytes, then the peer leaves. */
	struct vhost_user_header h = {VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, 8};
	CHECK(send(sv[0], &h, sizeof(h), 0) == sizeof(h));
	close(sv[0]);
	CHECK_EQ(vhu_msg_recv(sv[1], &r), -ECONNRESET);
	CHECK_EQ(vhu_msg_recv(sv[1], &r), -ECONNRESET);
	close(sv[1]);
	/* Half a header. */
	pair(sv);
	CHECK(send(sv[0], &h, 5, 0) == 5);
	close(sv[0]);
	CHECK_EQ(vhu_msg_recv(sv[1], &r), -ECONNRESET);
	close(sv[1]);
	/* Sending to a closed peer is an error, not a SIGPIPE. */
	pair(sv);
	close(sv[1]);
	struct vhu_msg s = mk(VHOST_USER_GET_FEATURES, 0);
	CHECK_EQ(vhu_msg_send(sv[0], &s), -EPIPE);
	close(sv[0]);
}

/* Validate m as if received; returns the result and leaves the reason in *why. */
static int check(struct vhu_msg *m, const char **why)
{
	return vhu_msg_validate(m, why);
}

static void test_validate(void)
{
	const char *why;
	int before = th_count_fds();
	struct vhu_msg m = mk(VHOST_USER_SET_FEATURES, 4);
	CHECK_EQ(check(&m, &why), -EINVAL);
	CHECK(why && strstr(why, "shorter"));
	m = mk(VHOST_USER_SET_VRING_ADDR, 40);
	CHECK_EQ(check(&m, &why), 0);
	m = mk(VHOST_USER_SET_VRING_ADDR, 39);
	CHECK_EQ(check(&m, &why), -EINVAL);

	m = mk(VHOST_USER_SET_MEM_TABLE, 8 + 9 * 32 > sizeof(m.p) ? sizeof(m.p) : 8 + 9 * 32);
	m.p.memory.nregions = 9;
	CHECK_EQ(check(&m, &why), -EINVAL);
	m = mk(VHOST_USER_SET_MEM_TABLE, 8 + 32);
	m.p.memory.nregions = 2;
	CHECK_EQ(check(&m, &why), -EINVAL); /* payload shorter than its regions */
	m = mk(VHOST_USER_SET_MEM_TABLE, 8 + 64);
	m.p.memory.nregions = 2;
	m.fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	m.nfds = 1;
	CHECK_EQ(check(&m, &why), -EINVAL); /* one fd for two regions */
	vhu_msg_close_fds(&m);

	/* NOFD with an fd anyway: valid, and the surplus fd is closed. */
	m = mk(VHOST_USER_SET_VRING_KICK, 8);
	m.p.u64 = 1 | VHOST_USER_VRING_NOFD;
	m.fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	m.nfds = 1;
	int fd = m.fds[0];
	CHECK_EQ(check(&m, &why), 0);
	CHECK_EQ(m.nfds, 0);
	CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF);
	/* No NOFD and no fd. */
	m = mk(VHOST_USER_SET_VRING_CALL, 8);
	CHECK_EQ(check(&m, &why), -EINVAL);
	/* Config larger than the payload. */
	m = mk(VHOST_USER_SET_CONFIG, 12 + 8);
	m.p.config.size = 16;
	CHECK_EQ(check(&m, &why), -EINVAL);
	m.p.config.size = 8;
	CHECK_EQ(check(&m, &why), 0);
	m = mk(VHOST_USER_GET_CONFIG, sizeof(m.p));
	m.p.config.size = 257;
	CHECK_EQ(check(&m, &why), -EINVAL);
	/* A request that carries no fd gets its fds closed. */
	m = mk(VHOST_USER_SET_FEATURES, 8);
	m.fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	m.fds[1] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	m.nfds = 2;
	CHECK_EQ(check(&m, &why), 0);
	CHECK_EQ(m.nfds, 0);
	/* A missing fd. */
	m = mk(VHOST_USER_SET_BACKEND_REQ_FD, 0);
	CHECK_EQ(check(&m, &why), -EINVAL);
	CHECK_EQ(th_count_fds(), before);
	/* Unknown requests are named as such. */
	CHECK(!vhu_req_info(9999)->known);
	CHECK(!strcmp(vhu_req_info(VHOST_USER_SET_VRING_ENABLE)->name, "SET_VRING_ENABLE"));
}

/* src/util/fdio: fds ride along and land where asked, the surplus closed; a peer that neither reads nor writes
 * makes each call give up at its deadline. */
static void test_fdio(void)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	int before = th_count_fds();
	int fds[3];
	struct stat want[3];
	for (int i = 0; i < 3; i++) {
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		CHECK(fds[i] >= 0 && fstat(fds[i], &want[i]) == 0);
	}
	char out[5] = "hello", in[16];
	VHDI_FD_CTL(3) sctl;
	struct iovec siov = {out, sizeof(out)};
	struct msghdr smh = {.msg_iov = &siov, .msg_iovlen = 1};
	vhdi_fds_attach(&smh, sctl.buf, fds, 3);
	CHECK_EQ(vhdi_sendmsg_by(sv[0], &smh, 0, vhdi_now_us() + 1000000), 5);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	VHDI_FD_CTL(4) rctl;
	struct iovec riov = {in, sizeof(in)};
	struct msghdr rmh = {.msg_iov = &riov, .msg_iovlen = 1, .msg_control = rctl.buf,
			     .msg_controllen = sizeof(rctl.buf)};
	CHECK_EQ(vhdi_recvmsg_by(sv[1], &rmh, 0, vhdi_now_us() + 1000000), 5);
	CHECK(!memcmp(in, "hello", 5));
	int got[2] = {-1, -1};
	unsigned n = 0;
	CHECK(!vhdi_fds_take(&rmh, got, &n, 2)); /* the third is closed */
	CHECK_EQ(n, 2);
	for (int i = 0; i < 2; i++) {
		struct stat st;
		CHECK(fstat(got[i], &st) == 0 && st.st_dev == want[i].st_dev && st.st_ino == want[i].st_ino);
		CHECK(fcntl(got[i], F_GETFD) & FD_CLOEXEC);
		close(got[i]);
	}
	CHECK_EQ(th_count_fds(), before);

	/* Nothing to read: ETIMEDOUT at the deadline, not before. */
	long long t0 = vhdi_now_us();
	rmh.msg_controllen = sizeof(rctl.buf);
	CHECK_EQ(vhdi_recvmsg_by(sv[1], &rmh, 0, t0 + 50000), -ETIMEDOUT);
	CHECK(vhdi_now_us() >= t0 + 50000);
	/* No room: fill the socket, then a send gives up at its deadline. */
	smh.msg_control = NULL; /* its fds are closed */
	smh.msg_controllen = 0;
	while (send(sv[0], out, sizeof(out), MSG_DONTWAIT) > 0)
		;
	CHECK_EQ(errno, EAGAIN);
	CHECK_EQ(vhdi_sendmsg_by(sv[0], &smh, 0, vhdi_now_us() + 50000), -ETIMEDOUT);
	/* The peer gone (with data unread: ECONNRESET, else EPIPE): the send fails at once, without SIGPIPE. */
	close(sv[1]);
	t0 = vhdi_now_us();
	long r = vhdi_sendmsg_by(sv[0], &smh, 0, t0 + 1000000);
	CHECK(r == -ECONNRESET || r == -EPIPE);
	CHECK(vhdi_now_us() < t0 + 1000000);
	close(sv[0]);
}

static const struct th_case cases[] = {
	{"roundtrip_with_fds", test_roundtrip_with_fds, 0},
	{"too_many_fds", test_too_many_fds, 0},
	{"bad_header", test_bad_header, 0},
	{"peer_gone", test_peer_gone, 0},
	{"validate", test_validate, 0},
	{"fdio", test_fdio, 0},
};
TH_MAIN("test_vhu_msg", cases)
