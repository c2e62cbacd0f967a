/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "util/fdio.h"
#include "vhostd/log.h"

#define ERR_LEN 256
#define IN_CAP (SW_JSON_MAX_LEN + 1) /* the longest line plus its newline */
#define ACCEPT_BURST 64              /* per dispatch, so a connect flood cannot hold the control thread */

/* ------------------------------------------------------------------ dispatch */

static void write_error(struct sw_json *resp, int rc, const char *msg)
{
	sw_json_obj_begin(resp, NULL);
	sw_json_bool(resp, "ok", false);
	sw_json_str(resp, "error", msg && msg[0] ? msg : strerror(-rc));
	sw_json_i64(resp, "errno", -rc);
	sw_json_obj_end(resp);
}

static int bad_request(struct sw_json *resp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad_request(struct sw_json *resp, const char *fmt, ...)
{
	char msg[ERR_LEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	write_error(resp, -EINVAL, msg);
	return -EINVAL;
}

static int builtin_help(const struct sw_ctl_cmd *cmds, unsigned ncmds, unsigned argc, char **argv,
			struct sw_json *w, char *err, size_t errlen)
{
	static const struct sw_ctl_cmd self = {"help", "help [COMMAND]", "list the commands", 0, 1, NULL};
	bool found = false;
	sw_json_arr_begin(w, "commands");
	for (unsigned i = 0; i <= ncmds; i++) {
		const struct sw_ctl_cmd *c = i < ncmds ? &cmds[i] : &self;
		if (argc > 1 && strcmp(argv[1], c->name))
			continue;
		found = true;
		sw_json_obj_begin(w, NULL);
		sw_json_str(w, "name", c->name);
		sw_json_str(w, "usage", c->usage ? c->usage : c->name);
		sw_json_str(w, "help", c->help ? c->help : "");
		sw_json_obj_end(w);
	}
	sw_json_arr_end(w);
	if (!found) {
		snprintf(err, errlen, "no command '%.64s'", argv[1]);
		return -ENOENT;
	}
	return 0;
}

static const struct sw_ctl_cmd *find_cmd(const struct sw_ctl_cmd *cmds, unsigned ncmds, const char *name)
{
	for (unsigned i = 0; i < ncmds; i++)
		if (!strcmp(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

static int run(const struct sw_ctl_cmd *cmds, unsigned ncmds, void *opaque, unsigned argc, char **argv,
	       struct sw_json *resp)
{
	if (argc == 0 || !argv[0])
		return bad_request(resp, "empty command");
	const struct sw_ctl_cmd *cmd = find_cmd(cmds, ncmds, argv[0]);
	bool help = !cmd && !strcmp(argv[0], "help");
	if (!cmd && !help)
		return bad_request(resp, "unknown command '%.64s' (try 'help')", argv[0]);
	unsigned min = help ? 0 : cmd->min_args, max = help ? 1 : cmd->max_args;
	if (argc - 1 < min || argc - 1 > max || argc - 1 > SW_CTL_MAX_ARGS)
		return bad_request(resp, "wrong number of arguments; usage: %s",
				   help ? "help [COMMAND]" : cmd->usage ? cmd->usage : cmd->name);

	/* The command may fail after writing part of its result: remember where the response began so it can be
	 * rolled back to that point and replaced by the error. */
	size_t mark = resp->len;
	unsigned depth = resp->depth;
	bool comma[sizeof(resp->need_comma)];
	memcpy(comma, resp->need_comma, sizeof(comma));

	char err[ERR_LEN] = "";
	sw_json_obj_begin(resp, NULL);
	sw_json_bool(resp, "ok", true);
	sw_json_obj_begin(resp, "result");
	int rc = help	  ? builtin_help(cmds, ncmds, argc, argv, resp, err, sizeof(err))
		 : cmd->fn ? cmd->fn(opaque, argc, argv, resp, err, sizeof(err))
			   : -ENOSYS;
	err[sizeof(err) - 1] = '\0';
	if (rc > 0) {
		snprintf(err, sizeof(err), "command '%s' returned %d (bug)", argv[0], rc);
		rc = -EPROTO;
	}
	if (rc == 0 && resp->depth != depth + 2) {
		snprintf(err, sizeof(err), "command '%s' left its result unbalanced (bug)", argv[0]);
		rc = -EPROTO;
	}
	if (rc == 0 && resp->oom)
		rc = -ENOMEM;
	vhd_log(VHD_LOG_DEBUG, "control: %.64s with %u argument(s): %s", argv[0], argc - 1,
		rc == 0 ? "done" : err[0] ? err : strerror(-rc));
	if (rc == 0) {
		sw_json_obj_end(resp);
		sw_json_obj_end(resp);
		return 0;
	}
	/* put() leaves the buffer untouched once it fails, so the text before mark is intact even after oom. */
	resp->len = mark;
	if (resp->buf)
		resp->buf[mark] = '\0';
	resp->depth = depth;
	memcpy(resp->need_comma, comma, sizeof(comma));
	resp->oom = false;
	write_error(resp, rc, err);
	return rc;
}

int sw_ctl_run_argv(const struct sw_ctl_cmd *cmds, unsigned ncmds, void *opaque, unsigned argc, char **argv,
		    struct sw_json *resp)
{
	return run(cmds, ncmds, opaque, argc, argv, resp);
}

int sw_ctl_handle(const struct sw_ctl_cmd *cmds, unsigned ncmds, void *opaque, const char *req, size_t len,
		  struct sw_json *resp)
{
	struct sw_json_val *root;
	char err[ERR_LEN];
	int rc = sw_json_parse(req, len, &root, err, sizeof(err));
	if (rc == -ENOMEM) {
		write_error(resp, rc, "out of memory");
		return rc;
	}
	if (rc)
		return bad_request(resp, "bad request: %s", err);

	char *argv[SW_CTL_MAX_ARGS + 2];
	unsigned argc = 0;
	const struct sw_json_val *cmd = NULL, *args = NULL;
	if (root->type != SW_JSON_OBJ) {
		rc = bad_request(resp, "bad request: not a JSON object");
		goto out;
	}
	for (const struct sw_json_val *m = root->child; m; m = m->next) {
		if (!strcmp(m->key, "cmd")) {
			cmd = m;
		} else if (!strcmp(m->key, "args")) {
			args = m;
		} else {
			rc = bad_request(resp, "bad request: unknown member \"%.32s\"", m->key);
			goto out;
		}
	}
	if (!cmd || cmd->type != SW_JSON_STR) {
		rc = bad_request(resp, "bad request: \"cmd\" must be a string");
		goto out;
	}
	argv[argc++] = cmd->str;
	if (args) {
		if (args->type != SW_JSON_ARR) {
			rc = bad_request(resp, "bad request: \"args\" must be an array of strings");
			goto out;
		}
		if (args->count > SW_CTL_MAX_ARGS) {
			rc = bad_request(resp, "bad request: more than %d arguments", SW_CTL_MAX_ARGS);
			goto out;
		}
		unsigned i = 0;
		for (const struct sw_json_val *a = args->child; a; a = a->next, i++) {
			if (a->type != SW_JSON_STR) {
				rc = bad_request(resp, "bad request: argument %u is not a string", i);
				goto out;
			}
			argv[argc++] = a->str;
		}
	}
	argv[argc] = NULL;
	rc = run(cmds, ncmds, opaque, argc, argv, resp);
out:
	sw_json_val_free(root);
	return rc;
}

/* ------------------------------------------------------------------ split */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int sw_ctl_split(char *line, char **argv, unsigned max, unsigned *argc)
{
	char *r = line, *w = line;
	unsigned n = 0;
	*argc = 0;
	for (;;) {
		while (is_blank(*r))
			r++;
		if (!*r || *r == '#')
			break;
		if (n == max)
			return -E2BIG;
		/* Words are rewritten in place: w trails r, as quotes and escapes only ever shrink the text. */
		char *word = w;
		bool quoted = false;
		for (; *r; r++) {
			if (quoted) {
				if (*r == '"') {
					quoted = false;
				} else if (*r == '\\') {
					if (r[1] != '"' && r[1] != '\\')
						return -EINVAL;
					*w++ = *++r;
				} else {
					*w++ = *r;
				}
			} else if (*r == '"') {
				quoted = true;
			} else if (is_blank(*r) || *r == '#') {
				break;
			} else {
				*w++ = *r;
			}
		}
		if (quoted)
			return -EINVAL;
		/* Terminating the word may overwrite the blank or '#' that ended it: remember the comment. */
		bool comment = *r == '#';
		if (*r)
			r++;
		*w++ = '\0';
		argv[n++] = word;
		if (comment)
			break;
	}
	if (n < max)
		argv[n] = NULL;
	*argc = n;
	return 0;
}

/* ------------------------------------------------------------------ socket */

struct ctl_client {
	int fd;
	char *in;                     /* IN_CAP bytes: [in_start, in_len) unanswered, [scanned, in_len) unsearched */
	size_t in_start, in_len, scanned;
	char *out;                    /* answers not yet taken by the socket: [out_off, out_len) */
	size_t out_off, out_len, out_cap;
	bool eof;                     /* the peer sent everything: answer complete lines, then close */
	int passed_fd;                /* a descriptor that came with the bytes read (SCM_RIGHTS), or -1 */
};

struct sw_ctl {
	int lfd;
	int spare_fd; /* given up to accept (and refuse) a client when the process is out of fds */
	char *path;
	char *tmp_path; /* where the socket listens until sw_ctl_publish(); NULL once published */
	dev_t dev;
	ino_t ino;
	const struct sw_ctl_cmd *cmds;
	unsigned ncmds;
	void *opaque;
	struct ctl_client clients[SW_CTL_MAX_CLIENTS];
	unsigned nclients;
	struct ctl_client *current; /* whose line a command runs for, for sw_ctl_take_fd() */
};

/* Best effort, for a client about to be dropped: one nonblocking write of an error line. */
static void send_error_line(int fd, int rc, const char *msg)
{
	struct sw_json w;
	sw_json_init(&w);
	write_error(&w, rc, msg);
	const char *t = sw_json_finish(&w);
	if (t) {
		struct iovec iov[2] = {{(void *)t, w.len}, {"\n", 1}};
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
		ssize_t r = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)r;
	}
	sw_json_free(&w);
}

static void drop_client(struct sw_ctl *c, unsigned i)
{
	struct ctl_client *cl = &c->clients[i];
	close(cl->fd);
	if (cl->passed_fd >= 0)
		close(cl->passed_fd);
	free(cl->in);
	free(cl->out);
	c->clients[i] = c->clients[--c->nclients];
}

static bool out_pending(const struct ctl_client *cl)
{
	return cl->out_off < cl->out_len;
}

static int append_out(struct ctl_client *cl, const char *s, size_t n)
{
	if (cl->out_len + n > cl->out_cap) {
		size_t cap = cl->out_cap ? cl->out_cap : 1024;
		while (cap < cl->out_len + n)
			cap *= 2;
		char *b = realloc(cl->out, cap);
		if (!b)
			return -ENOMEM;
		cl->out = b;
		cl->out_cap = cap;
	}
	memcpy(cl->out + cl->out_len, s, n);
	cl->out_len += n;
	return 0;
}

/* Queue one response line. */
static int append_resp(struct ctl_client *cl, struct sw_json *resp)
{
	static const char nomem[] = "{\"ok\":false,\"error\":\"out of memory\",\"errno\":12}";
	const char *t = sw_json_finish(resp);
	int rc = t ? append_out(cl, t, resp->len) : append_out(cl, nomem, sizeof(nomem) - 1);
	return rc ? rc : append_out(cl, "\n", 1);
}

/* Write what the socket takes. 0 (maybe still pending) or -errno: the client is gone. */
static int flush_out(struct ctl_client *cl)
{
	while (out_pending(cl)) {
		ssize_t r = send(cl->fd, cl->out + cl->out_off, cl->out_len - cl->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		}
		cl->out_off += (size_t)r;
	}
	cl->out_off = cl->out_len = 0;
	/* One huge answer (a big fdb) should not stay allocated for the life of the connection. */
	if (cl->out_cap > 65536) {
		free(cl->out);
		cl->out = NULL;
		cl->out_cap = 0;
	}
	return 0;
}

/* Answer complete lines until the socket stops taking answers. 0 or -errno: drop the client. */
static int answer_lines(struct sw_ctl *c, struct ctl_client *cl)
{
	while (!out_pending(cl)) {
		char *nl = memchr(cl->in + cl->scanned, '\n', cl->in_len - cl->scanned);
		if (!nl) {
			cl->scanned = cl->in_len;
			return 0;
		}
		char *line = cl->in + cl->in_start;
		size_t n = (size_t)(nl - line);
		struct sw_json resp;
		sw_json_init(&resp);
		c->current = cl;
		sw_ctl_handle(c->cmds, c->ncmds, c->opaque, line, n, &resp);
		c->current = NULL;
		/* A descriptor goes with the first line answered after it arrived, taken or not. */
		if (cl->passed_fd >= 0) {
			close(cl->passed_fd);
			cl->passed_fd = -1;
		}
		int rc = append_resp(cl, &resp);
		sw_json_free(&resp);
		cl->in_start = cl->scanned = (size_t)(nl - cl->in) + 1;
		if (rc)
			return rc;
		rc = flush_out(cl);
		if (rc)
			return rc;
	}
	return 0;
}

/* recv() that also takes descriptors passed along (SCM_RIGHTS): the client keeps the first, the rest are closed
 * (as are any the control buffer had no room for, by the kernel). */
static ssize_t recv_fds(struct ctl_client *cl, size_t room)
{
	VHDI_FD_CTL(4) ctrl;
	struct iovec iov = {.iov_base = cl->in + cl->in_len, .iov_len = room};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl.buf, .msg_controllen = sizeof(ctrl.buf)};
	ssize_t r = recvmsg(cl->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (r < 0)
		return r;
	int fd;
	unsigned n = 0;
	vhdi_fds_take(&m, &fd, &n, 1);
	if (n && cl->passed_fd < 0)
		cl->passed_fd = fd;
	else if (n)
		close(fd);
	return r;
}

int sw_ctl_take_fd(struct sw_ctl *c)
{
	if (!c || !c->current || c->current->passed_fd < 0)
		return -1;
	int fd = c->current->passed_fd;
	c->current->passed_fd = -1;
	return fd;
}

/* One client's turn. false: drop it. */
static bool serve_client(struct sw_ctl *c, struct ctl_client *cl)
{
	if (flush_out(cl) < 0 || answer_lines(c, cl) < 0)
		return false;
	/* Back-pressure: nothing more is read while answers wait for the client to read them. */
	if (!out_pending(cl) && !cl->eof) {
		if (cl->in_start) {
			memmove(cl->in, cl->in + cl->in_start, cl->in_len - cl->in_start);
			cl->in_len -= cl->in_start;
			cl->scanned -= cl->in_start;
			cl->in_start = 0;
		}
		if (cl->in_len < IN_CAP) {
			ssize_t r = recv_fds(cl, IN_CAP - cl->in_len);
			if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				return false;
			if (r == 0)
				cl->eof = true;
			if (r > 0)
				cl->in_len += (size_t)r;
			if (answer_lines(c, cl) < 0)
				return false;
		}
	}
	if (out_pending(cl))
		return true;
	if (cl->eof)
		return false; /* everything answered; a partial last line goes with the connection */
	/* Every complete line is answered, so a full buffer is one line without its end. */
	if (cl->in_len - cl->in_start == IN_CAP) {
		char msg[64];
		snprintf(msg, sizeof(msg), "request line longer than %u bytes", SW_JSON_MAX_LEN);
		vhd_log(VHD_LOG_INFO, "control socket: dropping a client: %s", msg);
		send_error_line(cl->fd, -E2BIG, msg);
		return false;
	}
	return true;
}

static void serve_clients(struct sw_ctl *c)
{
	for (unsigned i = 0; i < c->nclients;) {
		if (serve_client(c, &c->clients[i]))
			i++;
		else
			drop_client(c, i); /* the last client moved into slot i: served next */
	}
}

static void accept_clients(struct sw_ctl *c)
{
	/* A client that closed just before a new one connected may still hold its slot and fd: look once more
	 * before refusing anyone for want of either. */
	bool reaped = false;
	for (int k = 0; k < ACCEPT_BURST; k++) {
		int fd = accept4(c->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if ((errno == EMFILE || errno == ENFILE) && !reaped) {
				reaped = true;
				serve_clients(c);
				continue;
			}
			if ((errno == EMFILE || errno == ENFILE) && c->spare_fd >= 0) {
				/* Otherwise the pending connection keeps the listening socket readable forever and
				 * the control thread spins: free one fd to take it off the queue and refuse it. */
				close(c->spare_fd);
				fd = accept4(c->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (fd >= 0) {
					send_error_line(fd, -EMFILE, "vhostd is out of file descriptors");
					close(fd);
				}
				c->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				vhd_log(VHD_LOG_WARN, "control socket: out of file descriptors, refused a client");
			}
			return;
		}
		if (c->nclients == SW_CTL_MAX_CLIENTS && !reaped) {
			reaped = true;
			serve_clients(c);
		}
		if (c->nclients == SW_CTL_MAX_CLIENTS) {
			char msg[64];
			snprintf(msg, sizeof(msg), "too many clients (at most %d)", SW_CTL_MAX_CLIENTS);
			vhd_log(VHD_LOG_INFO, "control socket: %s, refused one", msg);
			send_error_line(fd, -EBUSY, msg);
			close(fd);
			continue;
		}
		struct ctl_client *cl = &c->clients[c->nclients];
		memset(cl, 0, sizeof(*cl));
		cl->fd = fd;
		cl->passed_fd = -1;
		cl->in = malloc(IN_CAP);
		if (!cl->in) {
			send_error_line(fd, -ENOMEM, "out of memory");
			close(fd);
			continue;
		}
		c->nclients++;
	}
}

unsigned sw_ctl_pollfds(struct sw_ctl *c, struct pollfd *fds, unsigned max)
{
	unsigned n = 0;
	if (n < max)
		fds[n++] = (struct pollfd){.fd = c->lfd, .events = POLLIN};
	for (unsigned i = 0; i < c->nclients && n < max; i++) {
		const struct ctl_client *cl = &c->clients[i];
		fds[n++] = (struct pollfd){.fd = cl->fd, .events = out_pending(cl) ? POLLOUT : POLLIN};
	}
	return n;
}

void sw_ctl_dispatch(struct sw_ctl *c)
{
	/* Clients first, so a slot freed by one leaving can go to a connection already waiting. */
	serve_clients(c);
	accept_clients(c);
}

/* Is something listening on path? 0: no (stale or absent), -EADDRINUSE, -EEXIST or another -errno. */
static int probe_path(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		vhd_log(VHD_LOG_ERR, "control socket: %s exists and is not a socket; not touching it", path);
		return -EEXIST;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 ? 0 : -errno;
	close(fd);
	if (rc == 0 || rc == -EAGAIN) /* accepted, or a full backlog: either way someone is there */
		return -EADDRINUSE;
	if (rc != -ECONNREFUSED)
		return rc;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	vhd_log(VHD_LOG_INFO, "control socket: removed stale %s", path);
	return 0;
}

int sw_ctl_listen(const char *path, const struct sw_ctl_cmd *cmds, unsigned ncmds, void *opaque,
		  struct sw_ctl **out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	*out = NULL;
	if (!path || !path[0])
		return -EINVAL;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	int rc = probe_path(path, &sa);
	if (rc)
		return rc;

	struct sw_ctl *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->cmds = cmds;
	c->ncmds = ncmds;
	c->opaque = opaque;
	c->spare_fd = -1;
	c->path = strdup(path);
	c->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (!c->path || c->lfd < 0) {
		rc = c->path ? -errno : -ENOMEM;
		goto fail;
	}
	/* Bound, tightened and listening under a temporary name, renamed into place by sw_ctl_publish(): whoever
	 * sees the path (a script waiting for it, a service manager) can connect at once and finds the daemon
	 * configured, never meeting the window between bind() and listen() where a connect is refused, nor a
	 * half-applied config file. Without room for the longer name, bound in place. */
	struct sockaddr_un tmp = sa;
	int n = snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.%d", path, (int)getpid());
	bool renamed = n > 0 && (size_t)n < sizeof(tmp.sun_path);
	if (renamed)
		unlink(tmp.sun_path); /* left by an earlier process with our pid */
	else
		tmp = sa;
	if (bind(c->lfd, (const struct sockaddr *)&tmp, sizeof(tmp)) < 0) {
		rc = -errno;
		goto fail;
	}
	/* Nobody can connect before listen(), so tightening the mode here leaves no window. */
	struct stat st;
	if (chmod(tmp.sun_path, 0600) < 0 || lstat(tmp.sun_path, &st) < 0 || listen(c->lfd, 64) < 0 ||
	    (renamed && !(c->tmp_path = strdup(tmp.sun_path)))) {
		rc = -errno; /* strdup sets ENOMEM */
		unlink(tmp.sun_path);
		goto fail;
	}
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	c->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	*out = c;
	return 0;
fail:
	if (c->lfd >= 0)
		close(c->lfd);
	free(c->path);
	free(c);
	return rc;
}

int sw_ctl_fd(const struct sw_ctl *c)
{
	return c->lfd;
}

int sw_ctl_adopt(const char *path, int fd, const struct sw_ctl_cmd *cmds, unsigned ncmds, void *opaque,
		 struct sw_ctl **out)
{
	int acc = 0, domain = 0;
	socklen_t l1 = sizeof(acc), l2 = sizeof(domain);
	struct sw_ctl *c = NULL;
	struct stat st;
	int rc = getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l1) < 0 ||
			 getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l2) < 0 || !acc || domain != AF_UNIX
		 ? -EINVAL
		 : 0;
	if (rc == 0 && (!(c = calloc(1, sizeof(*c))) || !(c->path = strdup(path))))
		rc = -ENOMEM;
	if (rc < 0) {
		if (c)
			free(c);
		close(fd);
		return rc;
	}
	c->cmds = cmds;
	c->ncmds = ncmds;
	c->opaque = opaque;
	c->lfd = fd;
	/* What destroy may remove: the file at path now, which the process that made it handed over with it. */
	if (lstat(path, &st) == 0) {
		c->dev = st.st_dev;
		c->ino = st.st_ino;
	}
	c->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	*out = c;
	return 0;
}

int sw_ctl_publish(struct sw_ctl *c)
{
	if (!c->tmp_path)
		return 0;
	if (rename(c->tmp_path, c->path) < 0)
		return -errno;
	free(c->tmp_path);
	c->tmp_path = NULL;
	return 0;
}

void sw_ctl_destroy(struct sw_ctl *c)
{
	if (!c)
		return;
	while (c->nclients)
		drop_client(c, c->nclients - 1);
	/* Only our own socket: a newer daemon may have replaced it after we were told to go. */
	struct stat st;
	const char *where = c->tmp_path ? c->tmp_path : c->path;
	if (lstat(where, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
		unlink(where);
	close(c->lfd);
	if (c->spare_fd >= 0)
		close(c->spare_fd);
	free(c->tmp_path);
	free(c->path);
	free(c);
}
