/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conn.h"
#include "vhostd/log.h"

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

/*
 * Is somebody listening on the socket file at c->path? A non-blocking connect answers at once: accepted or
 * queued (0), or a full backlog (EAGAIN), means a live listener; ECONNREFUSED means nobody listens (a file left
 * by a process that died). Returns 0 when the file is stale, -EADDRINUSE when it is live, or another -errno when
 * it cannot tell (then the file is left alone). The probe connection is closed at once: a listening vhost-user
 * back-end sees a peer that hung up before saying anything.
 */
static int probe_listener(const struct vhu_conn *c)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un sa;
	fill_addr(c, &sa);
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : -errno;
	close(fd);
	if (rc == 0 || rc == -EAGAIN || rc == -EINPROGRESS)
		return -EADDRINUSE;
	if (rc == -ECONNREFUSED || rc == -ENOENT)
		return 0;
	return rc;
}

static int start_listening(struct vhu_conn *c, const struct stat *like);

/*
 * The socket files this process's servers have bound. A server serving a peer does not listen, so to the probe
 * its file looks stale; another port of this process given the same path must still be refused, not take it.
 * (Another process cannot tell: see docs/vhost-user.md.) Servers may live on different threads: one lock.
 */
static pthread_mutex_t bound_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vhu_conn *bound_head;

static bool bound_here(const struct stat *st)
{
	bool found = false;
	pthread_mutex_lock(&bound_lock);
	for (const struct vhu_conn *b = bound_head; b && !found; b = b->next_bound)
		found = b->sock_owned && b->sock_dev == st->st_dev && b->sock_ino == st->st_ino;
	pthread_mutex_unlock(&bound_lock);
	return found;
}

static void bound_list(struct vhu_conn *c, bool on)
{
	pthread_mutex_lock(&bound_lock);
	struct vhu_conn **p = &bound_head;
	while (*p && *p != c)
		p = &(*p)->next_bound;
	if (on && !*p) {
		c->next_bound = bound_head;
		bound_head = c;
	} else if (!on && *p) {
		*p = c->next_bound;
	}
	c->listed = on;
	pthread_mutex_unlock(&bound_lock);
}

static int conn_setup(struct vhu_conn *c, const char *path, bool client, unsigned min_ms, unsigned max_ms)
{
	memset(c, 0, sizeof(*c));
	c->listen_fd = c->io.fd = -1;
	if (!path || !*path)
		return -EINVAL;
	if (strlen(path) >= sizeof(c->path))
		return -ENAMETOOLONG;
	strcpy(c->path, path);
	c->client = client;
	c->min_ms = min_ms ? min_ms : 100;
	c->max_ms = max_ms ? max_ms : 5000;
	if (c->max_ms < c->min_ms)
		c->max_ms = c->min_ms;
	c->backoff_ms = c->min_ms;
	return 0;
}

/* Is fd a unix stream socket, listening or not as asked? */
static bool unix_stream(int fd, bool listening)
{
	int type = 0, domain = 0, acc = 0;
	socklen_t l1 = sizeof(type), l2 = sizeof(domain), l3 = sizeof(acc);
	return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l1) == 0 &&
	       getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l2) == 0 &&
	       getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l3) == 0 && type == SOCK_STREAM &&
	       domain == AF_UNIX && (acc != 0) == listening;
}

int vhu_conn_adopt(struct vhu_conn *c, const char *path, bool client, unsigned min_ms, unsigned max_ms, int listen_fd,
		   int conn_fd)
{
	int rc = conn_setup(c, path, client, min_ms, max_ms);
	if (rc == 0 && ((conn_fd >= 0 && !unix_stream(conn_fd, false)) ||
			(listen_fd >= 0 && (client || conn_fd >= 0 || !unix_stream(listen_fd, true)))))
		rc = -EINVAL;
	if (rc < 0) {
		if (conn_fd >= 0)
			close(conn_fd);
		if (listen_fd >= 0)
			close(listen_fd);
		return rc;
	}
	if (conn_fd >= 0)
		vhu_io_init(&c->io, conn_fd);
	c->listen_fd = listen_fd;
	if (client) {
		if (conn_fd < 0)
			clock_gettime(CLOCK_MONOTONIC, &c->next_try); /* connect at the next poll */
		return 0;
	}
	struct stat st;
	if (stat(c->path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		pthread_mutex_lock(&bound_lock); /* bound_here() reads them */
		c->sock_dev = st.st_dev;
		c->sock_ino = st.st_ino;
		c->sock_owned = true;
		pthread_mutex_unlock(&bound_lock);
		bound_list(c, true);
	}
	return 0;
}

int vhu_conn_init(struct vhu_conn *c, const char *path, bool client, unsigned min_ms, unsigned max_ms)
{
	int rc = conn_setup(c, path, client, min_ms, max_ms);
	if (rc < 0)
		return rc;
	if (client) {
		try_connect(c);
		return 0;
	}
	/* A socket file left by an earlier run would make bind fail, so it goes; but one that somebody (another
	 * port, another process) still listens on is theirs: unlinking it would cut them off from new peers. */
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		rc = bound_here(&st) ? -EADDRINUSE : probe_listener(c);
		if (rc < 0) {
			vhd_log(VHD_LOG_ERR, "vhost-user: %s: %s", path,
				rc == -EADDRINUSE ? "a live listener (another port or process) is already there"
						  : strerror(-rc));
			return rc;
		}
		unlink(path);
	}
	rc = start_listening(c, NULL);
	if (rc == 0)
		bound_list(c, true);
	return rc;
}

/* Does the path still name the socket file we bound? */
static bool still_ours(const struct vhu_conn *c, struct stat *st)
{
	return c->sock_owned && stat(c->path, st) == 0 && st->st_dev == c->sock_dev && st->st_ino == c->sock_ino;
}

/*
 * Bind and listen on c->path (already free of any file). With like, the new socket file first gets like's owner,
 * group and permission bits (those of the file it replaces), before listen(): nobody can connect in between.
 */
static int start_listening(struct vhu_conn *c, const struct stat *like)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un sa;
	fill_addr(c, &sa);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	/* What we bound, so that fini removes the file only while it is still ours (not one that replaced it). */
	struct stat st;
	bool bound = stat(c->path, &st) == 0;
	pthread_mutex_lock(&bound_lock); /* bound_here() reads them */
	if (bound) {
		c->sock_dev = st.st_dev;
		c->sock_ino = st.st_ino;
		c->sock_owned = true;
	}
	pthread_mutex_unlock(&bound_lock);
	like = bound ? like : NULL;
	if (like && ((st.st_uid != like->st_uid || st.st_gid != like->st_gid) &&
		     chown(c->path, like->st_uid, like->st_gid) < 0))
		vhd_log(VHD_LOG_WARN, "vhost-user: %s: keeping owner %u:%u: %s", c->path, (unsigned)like->st_uid,
			(unsigned)like->st_gid, strerror(errno));
	if (like && chmod(c->path, like->st_mode & 07777) < 0)
		vhd_log(VHD_LOG_WARN, "vhost-user: %s: keeping mode %04o: %s", c->path,
			(unsigned)(like->st_mode & 07777), strerror(errno));
	if (listen(fd, 1) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	c->listen_fd = fd;
	return 0;
}

/*
 * The front-end has gone: listen again, on a fresh socket file in place of ours (same owner, group and mode, which
 * may have been set since). A path that now names another file (somebody took it while we were not listening) is
 * left to them, and the port stays deaf, with an error.
 */
static void listen_again(struct vhu_conn *c)
{
	struct stat st;
	bool ours = still_ours(c, &st);
	if (!ours && lstat(c->path, &st) == 0) {
		vhd_log(VHD_LOG_ERR, "vhost-user: %s: replaced by another file while a front-end was connected: no longer "
				     "listening there (remove the port and add it again)", c->path);
		bound_list(c, false);
		c->sock_owned = false;
		return;
	}
	if (ours)
		unlink(c->path);
	int rc = start_listening(c, ours ? &st : NULL);
	if (rc < 0)
		vhd_log(VHD_LOG_ERR, "vhost-user: %s: cannot listen again: %s", c->path, strerror(-rc));
}

void vhu_conn_fini(struct vhu_conn *c)
{
	vhu_io_close(&c->io);
	if (c->listen_fd >= 0)
		close(c->listen_fd);
	c->listen_fd = -1;
	struct stat st;
	if (!c->client && still_ours(c, &st))
		unlink(c->path);
	if (c->listed)
		bound_list(c, false);
	c->sock_owned = false;
}

void vhu_conn_drop(struct vhu_conn *c)
{
	pthread_mutex_lock(&bound_lock);
	c->sock_owned = false;
	pthread_mutex_unlock(&bound_lock);
	vhu_conn_fini(c);
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
		if (fd >= 0) {
			vhu_io_init(&c->io, fd);
			/* One front-end at a time. A second one left in the backlog would send its first request and
			 * wait for an answer forever, and one accepted and closed at once makes QEMU retry in a tight
			 * loop (vhost-user-net reconnects until it starts, reconnect= or not): not listening while
			 * this one lasts makes its connect fail at once with ECONNREFUSED, which QEMU reports and
			 * exits on ("Failed to connect to ...: Connection refused"), or retries every reconnect=
			 * seconds until this one goes. The file stays; vhu_conn_lost() listens again. */
			close(c->listen_fd);
			c->listen_fd = -1;
		}
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
	else if (c->listen_fd < 0)
		listen_again(c);
}
