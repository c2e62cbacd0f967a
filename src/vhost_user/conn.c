/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conn.h"

static void now_plus_ms(struct timespec *t, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, t);
	t->tv_sec += ms / 1000;
	t->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t->tv_nsec >= 1000000000L) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000L;
	}
}

static void fill_addr(const struct vhu_conn *c, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, c->path, sizeof(sa->sun_path));
}

static void try_connect(struct vhu_conn *c)
{
	struct sockaddr_un sa;
	fill_addr(c, &sa);
	/* Non-blocking: a unix-socket connect either completes at once or fails (EAGAIN when the listener's
	 * backlog is full), and a listener that never accepts cannot hold us here. */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		vhu_io_init(&c->io, fd);
		c->backoff_ms = c->min_ms;
		return;
	}
	if (fd >= 0)
		close(fd);
	now_plus_ms(&c->next_try, c->backoff_ms);
	unsigned next = c->backoff_ms * 2;
	c->backoff_ms = next > c->max_ms ? c->max_ms : next;
}

int vhu_conn_init(struct vhu_conn *c, const char *path, bool client, unsigned min_ms, unsigned max_ms)
{
	memset(c, 0, sizeof(*c));
	if (!path || !*path)
		return -EINVAL;
	if (strlen(path) >= sizeof(c->path))
		return -ENAMETOOLONG;
	strcpy(c->path, path);
	c->client = client;
	c->listen_fd = c->io.fd = -1;
	c->min_ms = min_ms ? min_ms : 100;
	c->max_ms = max_ms ? max_ms : 5000;
	if (c->max_ms < c->min_ms)
		c->max_ms = c->min_ms;
	c->backoff_ms = c->min_ms;
	if (client) {
		try_connect(c);
		return 0;
	}
	/* A socket file left by an earlier run would make bind fail; anything else at the path is not ours. */
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un sa;
	fill_addr(c, &sa);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	c->listen_fd = fd;
	return 0;
}

void vhu_conn_fini(struct vhu_conn *c)
{
	vhu_io_close(&c->io);
	if (c->listen_fd >= 0) {
		close(c->listen_fd);
		c->listen_fd = -1;
		unlink(c->path);
	}
}

unsigned vhu_conn_pollfds(const struct vhu_conn *c, struct pollfd *fds, unsigned max)
{
	if (max == 0)
		return 0;
	if (c->io.fd >= 0)
		fds[0] = (struct pollfd){.fd = c->io.fd, .events = vhu_io_events(&c->io)};
	else if (c->listen_fd >= 0)
		fds[0] = (struct pollfd){.fd = c->listen_fd, .events = POLLIN};
	else
		return 0;
	return 1;
}

int vhu_conn_timeout_ms(const struct vhu_conn *c)
{
	if (!c->client || c->io.fd >= 0)
		return -1;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long long ms = (long long)(c->next_try.tv_sec - now.tv_sec) * 1000 + (c->next_try.tv_nsec - now.tv_nsec) / 1000000;
	return ms < 0 ? 0 : (int)ms;
}

bool vhu_conn_poll(struct vhu_conn *c)
{
	if (c->io.fd >= 0)
		return false;
	if (!c->client) {
		int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0)
			vhu_io_init(&c->io, fd);
	} else if (vhu_conn_timeout_ms(c) == 0) {
		try_connect(c);
	}
	return c->io.fd >= 0;
}

void vhu_conn_lost(struct vhu_conn *c)
{
	vhu_io_close(&c->io);
	if (c->client)
		now_plus_ms(&c->next_try, c->backoff_ms);
}
