/* SPDX-License-Identifier: MIT */
/*
 * vhost-user message I/O over a unix stream socket: a 12-byte header, a payload of header.size bytes, and up to
 * VHOST_USER_MAX_FDS file descriptors passed with SCM_RIGHTS alongside the header.
 *
 * Everything received is hostile: sizes are checked against the request's payload type before any field is
 * read, fds beyond what a request may carry are closed, and no error leaves an fd open.
 */
#ifndef VHD_VHOST_USER_MSG_H
#define VHD_VHOST_USER_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spec/vhost_user.h"

struct vhu_msg {
	struct vhost_user_header hdr;
	union vhost_user_payload p;
	int fds[VHOST_USER_MAX_FDS];
	unsigned nfds;
};

/* What a front-end request may carry, from docs/interop/vhost-user.rst. */
struct vhu_req_info {
	const char *name;
	uint32_t min_size; /* payload bytes the handler reads; fewer is an error */
	uint8_t min_fds, max_fds;
	bool known;
};

/* Table entry for a request id; ids beyond the table get a static "unknown" entry. */
const struct vhu_req_info *vhu_req_info(uint32_t request);

/*
 * Receive one message. On success the caller owns m->fds[0..nfds) (vhu_msg_close_fds() closes what it did not
 * take). Returns 0; -ECONNRESET when the peer closed the connection; -EPROTO for a header with a bad version or
 * a payload larger than any message has (the stream cannot be resynchronised: close the connection);
 * -EBADMSG when fds were cut off by the kernel (more than VHOST_USER_MAX_FDS sent); -errno of recvmsg.
 * No fd is left open on error.
 */
int vhu_msg_recv(int sock, struct vhu_msg *m);

/*
 * Check a received message against its request's payload type and fd count: returns 0, or -EINVAL with a
 * reason in why (a static string). Surplus fds are closed and dropped from m.
 */
int vhu_msg_validate(struct vhu_msg *m, const char **why);

/* Send hdr + hdr.size payload bytes and m->fds (not closed). Returns 0 or -errno (-EPIPE when the peer left). */
int vhu_msg_send(int sock, const struct vhu_msg *m);

/* Close every fd still held by m. */
void vhu_msg_close_fds(struct vhu_msg *m);

/* Take fd i out of m (the caller now owns it); -1 if there is none. */
int vhu_msg_take_fd(struct vhu_msg *m, unsigned i);

#endif
