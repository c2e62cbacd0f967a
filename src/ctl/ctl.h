/* SPDX-License-Identifier: MIT */
/*
 * The control plane: a command table, the dispatcher that runs one request against it (from the socket, or from
 * argv for config files), and the unix control socket vhostd listens on.
 *
 * Wire protocol, one request per line:
 *   {"cmd":"NAME","args":["...",...]}\n        ("args" may be left out; no other member is accepted)
 * and exactly one response line per request line:
 *   {"ok":true,"result":{...}}\n  or  {"ok":false,"error":"reason","errno":N}\n
 * A built-in "help" (unless the table has its own) answers {"commands":[{"name","usage","help"},...]}; with one
 * argument, only that command.
 * A request line may come with one descriptor passed alongside (SCM_RIGHTS, with its first bytes): the command
 * takes it with sw_ctl_take_fd() (capture: the socket to stream pcapng into); otherwise it is closed.
 *
 * Threading: everything here runs on the daemon's control thread; nothing locks.
 */
#ifndef VHD_CTL_CTL_H
#define VHD_CTL_CTL_H

#include <poll.h>
#include <stddef.h>

#include "util/json.h"

#define SW_CTL_MAX_CLIENTS 16
#define SW_CTL_MAX_ARGS 64                       /* arguments after the name, whatever a command's max_args */
#define SW_CTL_MAX_POLLFDS (1 + SW_CTL_MAX_CLIENTS) /* what sw_ctl_pollfds() may need */

/* One command. argv[0] is the command name; argc counts it. */
struct sw_ctl_cmd {
	const char *name;            /* "add-port" */
	const char *usage;           /* "add-port NAME TYPE [KEY=VALUE...]" */
	const char *help;            /* one line */
	unsigned min_args, max_args; /* arguments after the name */
	/*
	 * Write result members into w (an object "result" is already open; leave it open and balanced). On failure
	 * write a one-line reason into err (empty: strerror is used) and return -errno; whatever was written into w
	 * is discarded. argv[argc] is NULL; the strings may be modified, they live until fn returns.
	 */
	int (*fn)(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen);
};

/*
 * Parse, validate and dispatch one request line (without its newline) and append exactly one response object
 * (no newline) to resp, which the caller initialised. A response that ran out of memory leaves resp->oom set.
 * @return the command's rc, or -EINVAL for a bad request (malformed JSON, unknown command, wrong arguments).
 */
int sw_ctl_handle(const struct sw_ctl_cmd *cmds, unsigned ncmds, void *opaque, const char *req, size_t len,
		  struct sw_json *resp);

/* The same from argv (argv[0] the command name, argv[argc] ignored), for config files. */
int sw_ctl_run_argv(const struct sw_ctl_cmd *cmds, unsigned ncmds, void *opaque, unsigned argc, char **argv,
		    struct sw_json *resp);

/*
 * Split line in place into at most max words: blanks separate words; "double quotes" group (and may adjoin
 * other text: a"b c" is one word), with \" and \\ the only escapes inside them; '#' outside quotes starts a
 * comment. argv[*argc] is set to NULL when *argc < max.
 * @return 0; -E2BIG for more than max words; -EINVAL for an unterminated quote or another escape.
 */
int sw_ctl_split(char *line, char **argv, unsigned max, unsigned *argc);

struct sw_ctl;

/*
 * Listen on a unix stream socket for path (mode 0600, nonblocking, close-on-exec). The directory must exist.
 * The socket listens under a temporary name beside path until sw_ctl_publish() moves it there, so a caller
 * can finish starting (apply a config file) before anyone waiting for path sees it.
 * @return 0 and *out; -EADDRINUSE if a live process answers on path; -EEXIST if path is something other than a
 *         socket (it is left alone); a stale socket is removed. Other -errno from socket/bind/listen.
 */
int sw_ctl_listen(const char *path, const struct sw_ctl_cmd *cmds, unsigned ncmds, void *opaque,
		  struct sw_ctl **out);

/*
 * Rename the listening socket from its temporary name to the path given to sw_ctl_listen(). Idempotent.
 * @return 0, or -errno from rename() (the socket keeps listening under the temporary name, which
 *         sw_ctl_destroy() removes).
 */
int sw_ctl_publish(struct sw_ctl *c);

/*
 * vhostctl upgrade: the listening socket (sw_ctl_fd(), still c's), and a control socket made from another
 * process's, listening at path already (fd is taken: closed on failure). @return 0 and *out; -EINVAL when fd is
 * not a listening unix stream socket; -ENOMEM.
 */
int sw_ctl_fd(const struct sw_ctl *c);
int sw_ctl_adopt(const char *path, int fd, const struct sw_ctl_cmd *cmds, unsigned ncmds, void *opaque,
		 struct sw_ctl **out);

/* The fds to poll before the next sw_ctl_dispatch(): the listening socket, then each client (POLLIN, or POLLOUT
 * while its answer is still being written). Fills at most max (pass SW_CTL_MAX_POLLFDS); returns the count. */
unsigned sw_ctl_pollfds(struct sw_ctl *c, struct pollfd *fds, unsigned max);

/*
 * Accept, read, answer every complete line, write what the sockets take. Never blocks and needs no revents:
 * call it whenever any of those fds is ready. A client that has unread answers is not read from (so it cannot
 * make the daemon buffer without bound). Clients are dropped, with an error line where the socket takes one,
 * for a line longer than SW_JSON_MAX_LEN, beyond SW_CTL_MAX_CLIENTS, or on a socket error; a client that
 * closes mid-line loses that line only.
 */
void sw_ctl_dispatch(struct sw_ctl *c);

/*
 * Inside a command's fn, run for a line from a client: the descriptor the client passed (SCM_RIGHTS) with the
 * bytes of that line or just before it, now the caller's to close; -1 if none (or when not run from a client,
 * e.g. a config file). Descriptors nobody takes are closed once the line is answered; beyond the first, those
 * passed together are closed on arrival.
 */
int sw_ctl_take_fd(struct sw_ctl *c);

/* Close every fd, free everything, unlink the socket if it is still the one this sw_ctl created. NULL is ok. */
void sw_ctl_destroy(struct sw_ctl *c);

#endif
