/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/fdio.h"

void vhdi_fds_attach(struct msghdr *mh, void *ctl, const int *fds, unsigned n)
{
	if (!n)
		return;
	/* Zeroed: the padding CMSG_SPACE adds goes to the kernel too. */
	memset(ctl, 0, CMSG_SPACE(sizeof(int) * n));
	mh->msg_control = ctl;
	mh->msg_controllen = CMSG_SPACE(sizeof(int) * n);
	struct cmsghdr *c = CMSG_FIRSTHDR(mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
}

bool vhdi_fds_take(struct msghdr *mh, int *dst, unsigned *n, unsigned max)
{
	bool all = true;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0))
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*n < max) {
				dst[(*n)++] = fd;
			} else {
				close(fd);
				all = false;
			}
		}
	}
	return all;
}

long long vhdi_now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

int vhdi_wait_fd(int fd, short events, long long deadline_us)
{
	for (;;) {
		long long left = deadline_us - vhdi_now_us();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = {.fd = fd, .events = events};
		/* Rounded up, so that a wake-up at the deadline finds it passed rather than polls again for 0 ms. */
		long long ms = (left + 999) / 1000;
		int r = poll(&p, 1, ms > 1000000 ? 1000000 : (int)ms);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

/* sendmsg() (out) or recvmsg() until it does something or fails otherwise than for want of room or data. */
static long msg_by(int fd, struct msghdr *mh, int flags, long long deadline_us, bool out)
{
	size_t controllen = mh->msg_controllen;
	for (;;) {
		ssize_t r;
		if (out) {
			r = sendmsg(fd, mh, flags | MSG_NOSIGNAL | MSG_DONTWAIT);
		} else {
			mh->msg_controllen = controllen; /* recvmsg() set it to what came */
			r = recvmsg(fd, mh, flags | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		}
		if (r >= 0)
			return (long)r;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		int rc = vhdi_wait_fd(fd, out ? POLLOUT : POLLIN, deadline_us);
		if (rc < 0)
			return rc;
	}
}

long vhdi_sendmsg_by(int fd, const struct msghdr *mh, int flags, long long deadline_us)
{
	return msg_by(fd, (struct msghdr *)mh, flags, deadline_us, true);
}

long vhdi_recvmsg_by(int fd, struct msghdr *mh, int flags, long long deadline_us)
{
	return msg_by(fd, mh, flags, deadline_us, false);
}
