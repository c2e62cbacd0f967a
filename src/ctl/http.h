/* SPDX-License-Identifier: MIT */
/*
 * A minimal HTTP/1.x server for one read-only document (the metrics endpoint), run from the daemon's control
 * poll() loop: nothing here blocks. Each connection gets one answer and Connection: close. A client has
 * SW_HTTP_DEADLINE_MS from its accept to have sent its request and read the whole answer; one that trickles,
 * sends nothing or never reads is dropped then, so no client can stall the control thread or hold a slot.
 *
 * Threading: control thread only; nothing locks.
 */
#ifndef VHD_CTL_HTTP_H
#define VHD_CTL_HTTP_H

#include <poll.h>
#include <stdio.h>

#define SW_HTTP_MAX_CLIENTS 8
#define SW_HTTP_MAX_POLLFDS (1 + SW_HTTP_MAX_CLIENTS)
#define SW_HTTP_REQ_MAX 4096 /* request line and headers, bytes */
#define SW_HTTP_DEADLINE_MS 5000

struct sw_http;

/*
 * Write the document for path into f (a memory stream). @return 0, or -errno (the client gets a 500).
 * Called on the control thread, from sw_http_dispatch().
 */
typedef int (*sw_http_render_fn)(void *opaque, FILE *f);

/*
 * Listen on addr, "IPV4:PORT" or "[IPV6]:PORT" (numeric; port 0 picks a free one), serving GET path with
 * content_type. @return 0 and *out; -EINVAL for an address that does not parse (err says why), or -errno
 * from socket/bind/listen.
 */
int sw_http_listen(const char *addr, const char *path, const char *content_type, sw_http_render_fn render,
		   void *opaque, struct sw_http **out, char *err, size_t errlen);

/* vhostctl upgrade: the listening socket (still h's); and a server made from another process's listening
 * socket fd (taken: closed on failure). @return 0 and *out, or -errno (-EINVAL: not a listening socket). */
int sw_http_fd(const struct sw_http *h);
int sw_http_adopt(int fd, const char *path, const char *content_type, sw_http_render_fn render, void *opaque,
		  struct sw_http **out);

/* The bound address, "IP:PORT" or "[IP]:PORT" (the real port when 0 was asked for). */
const char *sw_http_addr(const struct sw_http *h);

/* Fds to poll (the listener, then each client); fills at most max (pass SW_HTTP_MAX_POLLFDS). */
unsigned sw_http_pollfds(struct sw_http *h, struct pollfd *fds, unsigned max);
/* Longest poll() sleep before the next client deadline, -1 for none. */
int sw_http_timeout_ms(struct sw_http *h);
/* Accept, read, answer, write what the sockets take, drop clients past their deadline. Never blocks. */
void sw_http_dispatch(struct sw_http *h);
/* Close everything. NULL is ok. */
void sw_http_destroy(struct sw_http *h);

#endif
