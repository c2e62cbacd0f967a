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
#include <time.h>

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
 * Blocking single-message I/O, for tests and tools that drive a socket by hand. Library code uses the
 * connection I/O below, which never waits on the peer.
 *
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

/*
 * One connection's non-blocking message I/O. A message is assembled across calls in the connection's own buffer
 * (never in a blocking read), messages to send go through a bounded output queue, and both directions carry a
 * per-message deadline that the caller enforces with vhu_io_timeout_ms() / vhu_io_expired(): a peer that
 * trickles a message, stalls in the middle of one, or stops reading what we send is disconnected rather than
 * waited for. The socket is O_NONBLOCK and every send uses MSG_NOSIGNAL, so a peer that has gone away costs
 * an -EPIPE, never a SIGPIPE.
 *
 * Reads never go past the message being assembled (header first, then exactly its payload), so the fds a
 * message carries, which the kernel attaches to its first byte, always arrive with that message.
 */
#define VHU_IO_QUEUE 16 /* messages the output queue holds */

/* The monotonic clock the deadlines below use, and milliseconds since t on it. */
void vhu_now(struct timespec *t);
long long vhu_ms_since(const struct timespec *t);

struct vhu_io_out {
	struct vhost_user_header hdr;
	union vhost_user_payload p;
	int fds[VHOST_USER_MAX_FDS]; /* our duplicates, sent with the first byte, then closed */
	unsigned nfds;
	size_t off; /* bytes of header + payload already written */
	struct timespec queued;
};

struct vhu_io {
	int fd;
	struct vhu_msg in; /* the message being assembled; its fds are ours until handed out */
	size_t in_got;     /* bytes of header + payload received so far */
	bool in_fds_cut;   /* more fds than a message may carry arrived with it */
	struct timespec in_since;
	struct vhu_io_out out[VHU_IO_QUEUE];
	unsigned out_head, out_n;
};

/* Take ownership of the connected socket fd and make it non-blocking. */
void vhu_io_init(struct vhu_io *io, int fd);

/* Close the socket and every fd held by a partial input message or queued output; io->fd becomes -1. */
void vhu_io_close(struct vhu_io *io);

/*
 * Read what has arrived of the next message without waiting.
 * @return 0: a whole message is in *m (the caller owns m->fds: vhu_msg_close_fds() closes what it did not take;
 *         payload bytes past hdr.size are zero); -EAGAIN: no whole message yet (a partial one stays in io);
 *         -ECONNRESET: the peer closed, also in the middle of a message; -EPROTO: a header with a bad version
 *         or a size larger than any message has (the stream cannot be resynchronised: close the connection);
 *         -EBADMSG: the message carried more fds than VHOST_USER_MAX_FDS (it was consumed and its fds closed,
 *         the stream is still in step; its header is in m->hdr for the log line); other -errno of recvmsg.
 */
int vhu_io_recv(struct vhu_io *io, struct vhu_msg *m);

/*
 * Queue m (its fds are duplicated: the caller keeps its own) and write as much as the socket takes now.
 * Never blocks. @return 0: sent or queued; -EINVAL: m is malformed; -ENOBUFS: VHU_IO_QUEUE messages are already
 * queued (the peer is not reading); -EPIPE or another -errno: the connection is broken.
 */
int vhu_io_send(struct vhu_io *io, const struct vhu_msg *m);

/* Write queued output. @return 0: nothing left; -EAGAIN: some left (poll for POLLOUT); -errno: broken. */
int vhu_io_flush(struct vhu_io *io);

/* Whether output is queued. */
bool vhu_io_out_pending(const struct vhu_io *io);

/*
 * Poll events for the socket: POLLOUT while output is queued, else POLLIN. Input is left unread while our own
 * output waits, so a peer that sends but does not read cannot make us buffer without bound; it meets the
 * output deadline instead.
 */
short vhu_io_events(const struct vhu_io *io);

/* Milliseconds until the oldest partial input message or oldest queued output message has waited limit_ms
 * (0 if one already has), or -1 when nothing is pending. */
int vhu_io_timeout_ms(const struct vhu_io *io, unsigned limit_ms);

/* NULL while every pending message is within limit_ms; else writes what the peer did into buf (len bytes) and
 * returns buf, e.g. "sent 5 of a message header's 12 bytes, then nothing for 2000 ms". */
const char *vhu_io_expired(const struct vhu_io *io, unsigned limit_ms, char *buf, size_t len);

#endif
