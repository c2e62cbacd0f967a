/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: the vhost-user back-end's message handling, end to end. Each input is a device
 * configuration and a stream of front-end messages. A fresh device (client mode) connects to a socket this
 * harness listens on; every message is sent over that connection with its fds (SCM_RIGHTS) and handled by
 * vhd_vu_dev_dispatch(), i.e. vhu_msg_recv(), vhu_msg_validate() and the real handler table. Replies are read
 * and checked. After each message, every started queue runs one burst of the data path (pop, then push of what
 * was popped), so rings the messages set up in the fds' memory are walked too.
 *
 * Simulated fds are small memfds (their size and first bytes from the input; SET_MEM_TABLE, ADD_MEM_REG and the
 * vring fds map or keep them) or eventfds.
 *
 * Input: queue pairs u8; then per message: request u8, flags u8, payload size u16, fd count u8 (0..9: one more
 * than a message may carry), per fd: kind u8 (bits 0-1: memfd of 1, 4 or 16 pages or an eventfd), fill length
 * u16 and that many bytes written at the start of the memfd; then the payload bytes.
 *
 * Checked beyond the sanitizers: no fd and no mapping of a memfd outlives an input; replies are well-formed; READY / NOT_READY and each
 * queue's STARTED / STOPPED alternate.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz_input.h"
#include "spec/vhost_user.h"
#include "util/fdio.h"
#include "vhostd/vhost_user.h"
#include "vhostd/virtq.h"

#define MAX_MSGS 64u
#define PAGE 4096u
#define MAX_QP 4u

static int listen_fd = -1;
static char sock_path[108];
int fz_verbose;

static void cleanup(void)
{
	if (listen_fd >= 0)
		unlink(sock_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fz_init();
	snprintf(sock_path, sizeof(sock_path), "/tmp/fz-vu-msg-%d.sock", (int)getpid());
	unlink(sock_path);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(listen_fd, 4) < 0)
		return -1;
	atexit(cleanup);
	return 0;
}

/* For the report of a leak: what the open fds from lo on are. */
static void name_fds_from(int lo)
{
	for (int fd = lo; fd < lo + 64; fd++) {
		char path[64], target[256];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		if (n > 0)
			fprintf(stderr, "open fd %d: %.*s\n", fd, (int)n, target);
	}
}

/* Mappings of this harness's memfds still in place (LeakSanitizer does not see mmap). */
static unsigned memfd_mappings(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return 0;
	char line[512];
	unsigned n = 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "/memfd:fz-vu "))
			n++;
	fclose(f);
	return n;
}

struct events {
	bool ready;
	bool started[2 * MAX_QP];
};

static void on_event(struct vhd_vu_dev *dev, enum vhd_vu_event ev, unsigned qidx, void *opaque)
{
	(void)dev;
	struct events *e = opaque;
	switch (ev) {
	case VHD_VU_READY:
	case VHD_VU_NOT_READY:
		FZ_ASSERT(e->ready == (ev == VHD_VU_NOT_READY));
		e->ready = ev == VHD_VU_READY;
		break;
	case VHD_VU_QUEUE_STARTED:
	case VHD_VU_QUEUE_STOPPED:
		FZ_ASSERT(qidx < 2 * MAX_QP && e->started[qidx] == (ev == VHD_VU_QUEUE_STOPPED));
		e->started[qidx] = ev == VHD_VU_QUEUE_STARTED;
		break;
	default:
		break;
	}
}

/* One simulated fd as the input describes it, or -1. */
static int make_fd(struct fz_in *in)
{
	static const unsigned pages[] = {1, 4, 16};
	uint8_t kind = fz_u8(in) & 3;
	size_t fill = fz_u16(in);
	if (kind == 3)
		return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	size_t size = (size_t)pages[kind] * PAGE;
	int fd = memfd_create("fz-vu", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	if (ftruncate(fd, (off_t)size) < 0) {
		close(fd);
		return -1;
	}
	if (fill > size)
		fill = size;
	if (fill > in->left)
		fill = in->left;
	if (fill && pwrite(fd, in->p, fill, 0) < 0) {
		close(fd);
		return -1;
	}
	in->p += fill;
	in->left -= fill;
	return fd;
}

static void send_msg(int sock, const struct vhost_user_header *h, const void *payload, const int *fds, unsigned nfds)
{
	VHDI_FD_CTL(VHOST_USER_MAX_FDS + 1) ctl;
	struct iovec iov[2] = {{(void *)h, sizeof(*h)}, {(void *)payload, h->size}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = h->size ? 2 : 1};
	vhdi_fds_attach(&mh, ctl.buf, fds, nfds);
	/* Small enough for the socket buffer in one go; a device that already left makes this EPIPE, which the
	 * dispatch below sees as the disconnect it is. */
	(void)sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Read every reply waiting and check each is a reply of the version we speak. */
static void drain_replies(int sock)
{
	static uint8_t buf[1 << 16];
	size_t have = 0;
	for (;;) {
		ssize_t r = recv(sock, buf + have, sizeof(buf) - have, MSG_DONTWAIT);
		if (r <= 0)
			break;
		have += (size_t)r;
		if (have == sizeof(buf))
			break;
	}
	size_t at = 0;
	while (have - at >= sizeof(struct vhost_user_header)) {
		struct vhost_user_header h;
		memcpy(&h, buf + at, sizeof(h));
		FZ_ASSERT(h.flags == (VHOST_USER_VERSION | VHOST_USER_REPLY_MASK));
		FZ_ASSERT(h.size <= sizeof(union vhost_user_payload));
		at += sizeof(h) + h.size;
	}
}

/* One data-path burst on every started queue: whatever the rings in the memfds say. */
static void run_queues(struct vhd_vu_dev *dev)
{
	struct vhd_vq_chain chains[8];
	struct iovec iov[64];
	struct vhd_vq_used used[8];
	for (unsigned q = 0; q < vhd_vu_dev_num_queues(dev); q++) {
		struct vhd_vq *vq = vhd_vu_queue_acquire(dev, q);
		if (!vq)
			continue;
		int n = vhd_vq_pop(vq, chains, 8, iov, 64);
		FZ_SAY("  queue %u: pop %d\n", q, n);
		for (int i = 0; i < n; i++)
			used[i] = (struct vhd_vq_used){chains[i].id, chains[i].ndesc, 0};
		if (n > 0)
			vhd_vq_push(vq, used, (unsigned)n);
		if (vhd_vq_need_notify(vq))
			vhd_vu_queue_notify(dev, q);
		vhd_vu_queue_release(dev, q);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	struct events ev = {0};
	/* fds are handed out lowest first: one this input leaves open makes the probe at the end come out higher.
	 * (Taken per input: libFuzzer's symbolizer opens pipes of its own between inputs.) */
	int lowest_free_fd = dup(0);
	close(lowest_free_fd);
	struct vhd_vu_config cfg = {
		.path = sock_path,
		.client = true,
		.max_queue_pairs = (uint16_t)(fz_u8(&in) % MAX_QP + 1),
		.mtu = 1500,
		.mac = {0x52, 0x54, 0, 0, 0, 1},
		.event = on_event,
		.opaque = &ev,
		.name = "fuzz",
		.config_space = true, /* GET_CONFIG reachable */
	};
	struct vhd_vu_dev *dev;
	if (vhd_vu_dev_create(&cfg, &dev) < 0)
		abort();
	int peer = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	FZ_ASSERT(peer >= 0 && vhd_vu_dev_connected(dev));

	for (unsigned i = 0; i < MAX_MSGS && in.left && vhd_vu_dev_connected(dev); i++) {
		struct vhost_user_header h = {.request = fz_u8(&in), .flags = fz_u8(&in)};
		/* Up to a little beyond the largest payload, so the oversized-header path is reachable. */
		h.size = fz_u16(&in) % (sizeof(union vhost_user_payload) + 16);
		unsigned nfds = fz_u8(&in) % (VHOST_USER_MAX_FDS + 2);
		int fds[VHOST_USER_MAX_FDS + 1];
		unsigned got = 0;
		for (unsigned k = 0; k < nfds; k++) {
			int fd = make_fd(&in);
			if (fd >= 0)
				fds[got++] = fd;
		}
		uint8_t payload[sizeof(union vhost_user_payload) + 16];
		fz_bytes(&in, payload, h.size);
		FZ_SAY("msg %u: request %u flags 0x%x size %u fds %u\n", i, h.request, h.flags, h.size, got);
		send_msg(peer, &h, payload, fds, got);
		for (unsigned k = 0; k < got; k++)
			close(fds[k]);
		int rc = vhd_vu_dev_dispatch(dev);
		FZ_SAY("  dispatch %d, connected %d, ready %d\n", rc, vhd_vu_dev_connected(dev), ev.ready);
		drain_replies(peer);
		run_queues(dev);
	}
	vhd_vu_dev_destroy(dev);
	close(peer);
	/* The listening socket may hold a connection a reconnecting client made: take it and close it. */
	struct pollfd p = {.fd = listen_fd, .events = POLLIN};
	while (poll(&p, 1, 0) > 0) {
		int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			break;
		close(c);
	}
	int probe = dup(0);
	if (probe != lowest_free_fd)
		name_fds_from(lowest_free_fd);
	FZ_ASSERT(probe == lowest_free_fd);
	close(probe);
	FZ_ASSERT(memfd_mappings() == 0);
	return 0;
}
