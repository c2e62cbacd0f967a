/* SPDX-License-Identifier: MIT */
/*
 * One vhost-user connection end, shared by the back-end and the frontend: either we listen on a path and serve
 * one peer at a time (while it is connected we do not listen, so a second one's connect fails at once with
 * ECONNREFUSED instead of waiting in the backlog for answers that never come; the socket file stays, and we
 * listen again when the peer goes), or we connect to it and, when that fails or the peer goes, retry with capped exponential
 * back-off. The caller's event loop drives it through pollfds / timeout / poll. Nothing here waits on the peer:
 * the listening socket, connection attempts and the connection itself are non-blocking, and the connection's
 * messages go through c->io (msg.h), which owns its fd.
 */
#ifndef VHD_VHOST_USER_CONN_H
#define VHD_VHOST_USER_CONN_H

#include <poll.h>
#include <stdbool.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>

#include "msg.h"

struct vhu_conn {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	bool client;
	int listen_fd;
	struct vhu_io io; /* the connection; io.fd is -1 while there is none */
	unsigned backoff_ms, min_ms, max_ms;
	struct timespec next_try;
	/* Server: the socket file we bound (device and inode), removed by fini only while the path still names it. */
	bool sock_owned;
	dev_t sock_dev;
	ino_t sock_ino;
	/* Server: on this process's list of bound socket files (conn.c), through next_bound. */
	bool listed;
	struct vhu_conn *next_bound;
};

/* Listen (server) or make a first connection attempt (client). Returns 0 or -errno (server only); a server
 * refuses a path where a live listener already is with -EADDRINUSE, and replaces a stale socket file. */
int vhu_conn_init(struct vhu_conn *c, const char *path, bool client, unsigned min_ms, unsigned max_ms);

/*
 * Take over another process's end (vhd_vu_dev_import()): conn_fd, a connected unix stream socket, or -1; a
 * server's listen_fd, listening at path, or -1 (a server with a peer does not listen). Both are taken (closed on
 * failure). A server records the socket file now at path as its own, to remove or replace it as vhu_conn_init()'s.
 * Returns 0, or -EINVAL naming nothing (an fd that is not such a socket).
 */
int vhu_conn_adopt(struct vhu_conn *c, const char *path, bool client, unsigned min_ms, unsigned max_ms, int listen_fd,
		   int conn_fd);

/* Close everything; a server also removes its socket file, unless the path now names another one. */
void vhu_conn_fini(struct vhu_conn *c);

/* Close everything, leaving the socket file in place (another process has taken it over). */
void vhu_conn_drop(struct vhu_conn *c);

/* The fd to poll: the connection (with vhu_io_events()), else the listening socket; 0 or 1 entries. */
unsigned vhu_conn_pollfds(const struct vhu_conn *c, struct pollfd *fds, unsigned max);

/* Milliseconds until vhu_conn_poll() should run without input (client retry), or -1. */
int vhu_conn_timeout_ms(const struct vhu_conn *c);

/* Accept or retry as due. Returns true when a connection was just made (c->io is then set up on it). */
bool vhu_conn_poll(struct vhu_conn *c);

/* The connection ended: close it; a client schedules its next attempt after the current back-off, a server listens
 * again on a fresh socket file with the old one's owner, group and mode. */
void vhu_conn_lost(struct vhu_conn *c);

#endif
