/* SPDX-License-Identifier: MIT */
/*
 * File descriptors over unix sockets (SCM_RIGHTS), and socket I/O that waits for a peer only until a deadline:
 * what the vhost-user message layer, the control socket, vhostctl and vhostctl upgrade each need. Internal.
 */
#ifndef VHD_UTIL_FDIO_H
#define VHD_UTIL_FDIO_H

#include <stdbool.h>
#include <sys/socket.h>

/* Control-message room for n descriptors, aligned for struct cmsghdr: the ctl of vhdi_fds_attach() (its .buf). */
#define VHDI_FD_CTL(n)                                                                                       \
	union {                                                                                                \
		char buf[CMSG_SPACE(sizeof(int) * (n))];                                                       \
		struct cmsghdr align;                                                                          \
	}

/* Attach fds[0..n) to mh as one SCM_RIGHTS message in ctl, which has room for at least n (a VHDI_FD_CTL(n) or
 * larger); n == 0 attaches nothing. The fds stay the caller's. */
void vhdi_fds_attach(struct msghdr *mh, void *ctl, const int *fds, unsigned n);

/* Move the descriptors a recvmsg() delivered in mh into dst[*n..max), which the caller then owns; any beyond
 * max are closed. @return false if some were. */
bool vhdi_fds_take(struct msghdr *mh, int *dst, unsigned *n, unsigned max);

/* CLOCK_MONOTONIC in microseconds: the clock of the deadlines below. */
long long vhdi_now_us(void);

/* Wait until fd reports one of events (or an error or hangup) or deadline_us passes. @return 0, -ETIMEDOUT or
 * -errno of poll(). */
int vhdi_wait_fd(int fd, short events, long long deadline_us);

/* One sendmsg(mh, flags | MSG_NOSIGNAL | MSG_DONTWAIT) on fd, waiting while the socket has no room until
 * deadline_us. @return the bytes sent (on a stream socket possibly fewer than mh holds), -ETIMEDOUT or -errno. */
long vhdi_sendmsg_by(int fd, const struct msghdr *mh, int flags, long long deadline_us);

/* One recvmsg(mh, flags | MSG_DONTWAIT | MSG_CMSG_CLOEXEC) on fd, waiting for something to read until
 * deadline_us; mh's control length is restored for each try. Descriptors received are the caller's
 * (vhdi_fds_take()). @return the bytes read (0: the peer closed), -ETIMEDOUT or -errno. */
long vhdi_recvmsg_by(int fd, struct msghdr *mh, int flags, long long deadline_us);

#endif
