/* SPDX-License-Identifier: MIT */
/*
 * Raw vhost-user messages for tests that play a (possibly hostile) front-end: a message builder, and a sender
 * that attaches any number of fds, which vhu_msg_send() (capped at VHOST_USER_MAX_FDS) will not do.
 */
#ifndef VHD_TEST_VU_RAW_H
#define VHD_TEST_VU_RAW_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "vhost_user/msg.h"

static inline struct vhu_msg mk(uint32_t req, uint32_t size)
{
	struct vhu_msg m;
	memset(&m, 0, sizeof(m));
	m.hdr.request = req;
	m.hdr.flags = VHOST_USER_VERSION;
	m.hdr.size = size;
	return m;
}

/* Send m's header and payload with nfds (at most 32) copies of fd. Returns sendmsg()'s result. */
static inline ssize_t send_fds_raw(int sock, const struct vhu_msg *m, int fd, unsigned nfds)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 32)];
		struct cmsghdr align;
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct iovec iov[2] = {{(void *)&m->hdr, sizeof(m->hdr)}, {(void *)&m->p, m->hdr.size}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = m->hdr.size ? 2 : 1, .msg_control = ctl.b,
			    .msg_controllen = CMSG_SPACE(sizeof(int) * nfds)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
	for (unsigned i = 0; i < nfds; i++)
		memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof(int));
	return sendmsg(sock, &mh, MSG_NOSIGNAL);
}

#endif
