/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "switch/port.h"
#include "switch/upgrade.h"
#include "util/fdio.h"
#include "vhostd/log.h"

extern char **environ;

/* How long the new binary has to start and say HELLO, and each later step its answer. */
#define SW_UPGRADE_HELLO_MS 10000
#define SW_UPGRADE_STEP_MS 5000

/* The messages, ours alone (both ends are vhostd). UPG_VERSION changes with any change to them, or to what a
 * PORT carries (the blob has its own version too, checked by the importer). */
#define UPG_MAGIC 0x44485655u /* "UVHD" */
#define UPG_VERSION 2u /* 2: FDB */
enum { UPG_HELLO = 1, UPG_START, UPG_PORT, UPG_END, UPG_READY, UPG_FAIL, UPG_GO, UPG_FDB };
struct upg_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t len1, len2; /* PORT: counters (SW_PORT_TOTALS u64), name and spec ("NAME\0TYPE\0KEY=VALUE\0..."),
			      * then the blob; FAIL: the text */
	uint64_t val;        /* START: upgrades so far; END: ports; READY: ports taken; GO: pause in us;
			      * FDB: entries (len1 / sizeof(struct upg_fdb)) */
};
_Static_assert(sizeof(struct upg_hdr) == 24, "upgrade message header layout");
/* One MAC table entry in an FDB message (after every PORT, before END): the port by name, since the new
 * process numbers its ports its own way. */
struct upg_fdb {
	uint8_t mac[6];
	uint16_t pad;
	uint32_t age_s;
	char port[SW_PORT_NAME_MAX]; /* NUL-terminated */
};
_Static_assert(sizeof(struct upg_fdb) == 12 + SW_PORT_NAME_MAX, "upgrade FDB entry layout");
#define UPG_FDB_PER_MSG (SW_HANDOVER_MAX / sizeof(struct upg_fdb))
#define UPG_MAX_MSG (sizeof(struct upg_hdr) + 8192 + SW_HANDOVER_MAX)
#define UPG_MAX_FDS SW_HANDOVER_MAX_FDS
_Static_assert(UPG_MAX_FDS <= 253, "SCM_RIGHTS carries at most 253 fds per message");

static int upg_send(int fd, uint16_t type, uint64_t val, const void *b1, uint32_t l1, const void *b2, uint32_t l2,
		    const int *fds, unsigned nfds, long long deadline)
{
	struct upg_hdr h = {UPG_MAGIC, UPG_VERSION, type, l1, l2, val};
	struct iovec iov[3] = {{&h, sizeof(h)}, {(void *)b1, l1}, {(void *)b2, l2}};
	VHDI_FD_CTL(UPG_MAX_FDS) u;
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 3};
	vhdi_fds_attach(&mh, u.buf, fds, nfds);
	long r = vhdi_sendmsg_by(fd, &mh, 0, deadline);
	return r < 0 ? (int)r : 0;
}

/* One message into buf (UPG_MAX_MSG bytes), its fds into fds (UPG_MAX_FDS, the caller's to close). -EPROTO for
 * anything malformed, -EPIPE when the peer went, -ETIMEDOUT. */
static int upg_recv(int fd, struct upg_hdr *h, uint8_t *buf, int *fds, unsigned *nfds, long long deadline,
		    char *err, size_t errlen)
{
	VHDI_FD_CTL(UPG_MAX_FDS) u;
	*nfds = 0;
	struct iovec iov = {buf, UPG_MAX_MSG};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	long n = vhdi_recvmsg_by(fd, &mh, 0, deadline);
	if (n == -ECONNRESET) {
		snprintf(err, errlen, "the other process went away");
		return -EPIPE;
	}
	if (n == -ETIMEDOUT) {
		snprintf(err, errlen, "no answer within the deadline");
		return -ETIMEDOUT;
	}
	if (n < 0) {
		snprintf(err, errlen, "%s", strerror((int)-n));
		return (int)n;
	}
	vhdi_fds_take(&mh, fds, nfds, UPG_MAX_FDS);
	int rc = 0;
	if (n == 0) {
		snprintf(err, errlen, "the other process went away");
		rc = -EPIPE;
	} else if ((size_t)n < sizeof(*h) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		snprintf(err, errlen, "a malformed or truncated message (%ld bytes)", n);
		rc = -EPROTO;
	} else {
		memcpy(h, buf, sizeof(*h));
		if (h->magic != UPG_MAGIC || h->version != UPG_VERSION) {
			snprintf(err, errlen, "the other binary speaks upgrade protocol %s%u, this one %u",
				 h->magic != UPG_MAGIC ? "(bad magic) " : "", h->version, UPG_VERSION);
			rc = -EPROTONOSUPPORT;
		} else if ((uint64_t)h->len1 + h->len2 != (uint64_t)n - sizeof(*h)) {
			snprintf(err, errlen, "message lengths %u + %u for %ld bytes", h->len1, h->len2, n);
			rc = -EPROTO;
		}
	}
	if (rc < 0) {
		for (unsigned i = 0; i < *nfds; i++)
			close(fds[i]);
		*nfds = 0;
	}
	return rc;
}

static void close_all(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
}

/* ------------------------------------------------------------------ old side */

struct send_ctx {
	int sock;
	long long deadline;
	unsigned fds;
};

static int send_port(void *arg, const char *name, const char *spec, size_t spec_len, const uint64_t *totals,
		     const void *blob, size_t len, const int *fds, unsigned nfds)
{
	struct send_ctx *s = arg;
	char head[8192];
	size_t tl = SW_PORT_TOTALS * sizeof(uint64_t), nl = strlen(name) + 1;
	if (tl + nl + spec_len > sizeof(head))
		return -E2BIG;
	memcpy(head, totals, tl);
	memcpy(head + tl, name, nl);
	memcpy(head + tl + nl, spec, spec_len);
	s->fds += nfds;
	return upg_send(s->sock, UPG_PORT, 0, head, (uint32_t)(tl + nl + spec_len), blob, (uint32_t)len, fds, nfds,
			s->deadline);
}

struct fdb_ctx {
	int sock;
	long long deadline;
	unsigned n, total;
	struct upg_fdb e[UPG_FDB_PER_MSG];
};

static int send_fdb(struct fdb_ctx *c)
{
	int rc = c->n ? upg_send(c->sock, UPG_FDB, c->n, c->e, (uint32_t)(c->n * sizeof(c->e[0])), NULL, 0, NULL, 0,
				 c->deadline) : 0;
	c->total += c->n;
	c->n = 0;
	return rc;
}

static int fdb_entry(void *arg, const uint8_t mac[6], const char *port, uint32_t age_s)
{
	struct fdb_ctx *c = arg;
	struct upg_fdb *e = &c->e[c->n++];
	memset(e, 0, sizeof(*e));
	memcpy(e->mac, mac, 6);
	e->age_s = age_s;
	snprintf(e->port, sizeof(e->port), "%s", port);
	return c->n == UPG_FDB_PER_MSG ? send_fdb(c) : 0;
}

static pid_t spawn(char *const argv[], int child_fd, char *err, size_t errlen)
{
	unsigned n = 0;
	while (argv[n])
		n++;
	char **av = calloc(n + 3, sizeof(*av));
	char num[16];
	snprintf(num, sizeof(num), "%d", child_fd);
	if (!av) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(av, argv, n * sizeof(*av));
	av[n] = "--takeover";
	av[n + 1] = num;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	/* dup2 onto itself clears close-on-exec: the only one of our descriptors the new binary inherits. */
	posix_spawn_file_actions_adddup2(&fa, child_fd, child_fd);
	pid_t pid;
	int rc = posix_spawn(&pid, argv[0], &fa, NULL, av, environ);
	posix_spawn_file_actions_destroy(&fa);
	free(av);
	if (rc) {
		snprintf(err, errlen, "cannot start %s: %s", argv[0], strerror(rc));
		return -1;
	}
	return pid;
}

int sw_upgrade_run(struct sw *sw, char *const argv[], const int *extra, unsigned nextra, uint64_t upgrades,
		   struct sw_upgrade_result *res, char *err, size_t errlen)
{
	memset(res, 0, sizeof(*res));
	if (access(argv[0], X_OK) < 0) {
		snprintf(err, errlen, "%s: %s", argv[0], strerror(errno));
		return -errno;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) {
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
		return -errno;
	}
	pid_t pid = spawn(argv, sv[1], err, errlen);
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return -ENOEXEC;
	}
	static uint8_t buf[UPG_MAX_MSG];
	int fds[UPG_MAX_FDS];
	unsigned nfds;
	struct upg_hdr h;
	char why[256] = "";
	bool paused = false;
	long long t0 = 0;
	int rc = upg_recv(sv[0], &h, buf, fds, &nfds, vhdi_now_us() + SW_UPGRADE_HELLO_MS * 1000LL, why, sizeof(why));
	close_all(fds, nfds);
	if (rc == 0 && h.type != UPG_HELLO) {
		snprintf(why, sizeof(why), "message %u where HELLO was due", h.type);
		rc = -EPROTO;
	}
	if (rc == 0) {
		long long deadline = vhdi_now_us() + SW_UPGRADE_STEP_MS * 1000LL;
		t0 = vhdi_now_us();
		paused = true;
		rc = upg_send(sv[0], UPG_START, upgrades, NULL, 0, NULL, 0, extra, nextra, deadline);
		if (rc < 0)
			snprintf(why, sizeof(why), "sending START: %s", strerror(-rc));
		struct send_ctx sc = {sv[0], deadline, nextra};
		if (rc == 0) {
			rc = sw_handover_export(sw, send_port, &sc, &res->ports, why, sizeof(why));
			paused = rc == 0; /* on failure the export resumed every port */
		}
		if (rc == 0) {
			/* Learned while the ports forwarded; with every one paused now, nothing changes it. */
			static struct fdb_ctx fc;
			fc = (struct fdb_ctx){.sock = sv[0], .deadline = deadline};
			rc = sw_fdb_export(sw, fdb_entry, &fc);
			if (rc == 0)
				rc = send_fdb(&fc);
			if (rc < 0)
				snprintf(why, sizeof(why), "sending the MAC table: %s", strerror(-rc));
			res->macs = fc.total;
		}
		if (rc == 0 && (rc = upg_send(sv[0], UPG_END, res->ports, NULL, 0, NULL, 0, NULL, 0, deadline)) < 0)
			snprintf(why, sizeof(why), "sending END: %s", strerror(-rc));
		res->fds = sc.fds;
	}
	if (rc == 0) {
		rc = upg_recv(sv[0], &h, buf, fds, &nfds, vhdi_now_us() + SW_UPGRADE_STEP_MS * 1000LL, why, sizeof(why));
		close_all(fds, nfds);
		if (rc == 0 && h.type == UPG_FAIL) {
			snprintf(why, sizeof(why), "it refused: %.*s", (int)(h.len1 < 200 ? h.len1 : 200),
				 (const char *)buf + sizeof(h));
			rc = -ECANCELED;
		} else if (rc == 0 && (h.type != UPG_READY || h.val != res->ports)) {
			snprintf(why, sizeof(why), "message %u (%llu) where READY (%u) was due", h.type,
				 (unsigned long long)h.val, res->ports);
			rc = -EPROTO;
		}
	}
	if (rc == 0) {
		res->pause_us = (uint64_t)(vhdi_now_us() - t0);
		/* From here the new process owns everything: once GO is out, this one must only exit. */
		rc = upg_send(sv[0], UPG_GO, res->pause_us, NULL, 0, NULL, 0, NULL, 0,
			      vhdi_now_us() + SW_UPGRADE_STEP_MS * 1000LL);
		if (rc < 0)
			snprintf(why, sizeof(why), "sending GO: %s", strerror(-rc));
	}
	if (rc == -EPIPE || rc == -ECONNRESET) {
		/* The new process hung up: most likely after saying why. */
		if (upg_recv(sv[0], &h, buf, fds, &nfds, vhdi_now_us() + 200 * 1000LL, why + strlen(why), 0) == 0 &&
		    h.type == UPG_FAIL)
			snprintf(why, sizeof(why), "it refused: %.*s", (int)(h.len1 < 200 ? h.len1 : 200),
				 (const char *)buf + sizeof(h));
		else
			snprintf(why, sizeof(why), "the other process went away");
		close_all(fds, nfds);
	}
	close(sv[0]);
	if (rc == 0) {
		res->pid = pid;
		return 0;
	}
	/* Nothing forwarded in the new process yet (its queues stay held until GO): stop it, forward again. */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	if (paused)
		sw_handover_resume(sw);
	snprintf(err, errlen, "new vhostd %s: %s", argv[0], why);
	return rc;
}

/* ------------------------------------------------------------------ new side */

static int takeover(struct sw *sw, int sock, int *extra, unsigned *nextra, uint64_t *upgrades, uint64_t *pause_us,
		    char *why, size_t wlen)
{
	static uint8_t buf[UPG_MAX_MSG];
	int fds[UPG_MAX_FDS];
	unsigned nfds, ports = 0, macs = 0, refused = 0;
	struct upg_hdr h;
	int rc = upg_send(sock, UPG_HELLO, 0, NULL, 0, NULL, 0, NULL, 0, vhdi_now_us() + SW_UPGRADE_STEP_MS * 1000LL);
	if (rc < 0) {
		snprintf(why, wlen, "sending HELLO: %s", strerror(-rc));
		return rc;
	}
	rc = upg_recv(sock, &h, buf, fds, &nfds, vhdi_now_us() + SW_UPGRADE_STEP_MS * 1000LL, why, wlen);
	if (rc == 0 && (h.type != UPG_START || nfds > SW_UPGRADE_MAX_EXTRA)) {
		snprintf(why, wlen, "message %u with %u fds where START was due", h.type, nfds);
		close_all(fds, nfds);
		rc = -EPROTO;
	}
	if (rc < 0)
		return rc;
	memcpy(extra, fds, nfds * sizeof(int));
	*nextra = nfds;
	*upgrades = h.val;
	for (;;) {
		rc = upg_recv(sock, &h, buf, fds, &nfds, vhdi_now_us() + SW_UPGRADE_STEP_MS * 1000LL, why, wlen);
		if (rc < 0)
			return rc;
		if (h.type == UPG_END)
			break;
		if (h.type == UPG_FDB) {
			size_t k = h.len1 / sizeof(struct upg_fdb);
			if (nfds || h.len2 || h.len1 % sizeof(struct upg_fdb) || h.val != k) {
				snprintf(why, wlen, "an FDB message of %u + %u bytes, %u fds, for %llu entries", h.len1,
					 h.len2, nfds, (unsigned long long)h.val);
				close_all(fds, nfds);
				return -EPROTO;
			}
			for (size_t i = 0; i < k; i++) {
				struct upg_fdb e;
				memcpy(&e, buf + sizeof(h) + i * sizeof(e), sizeof(e));
				/* A name without its NUL names no port: refused like an unknown one. */
				if (memchr(e.port, '\0', sizeof(e.port)) && sw_fdb_import(sw, e.mac, e.port, e.age_s) == 0)
					macs++;
				else
					refused++;
			}
			continue;
		}
		const size_t tl = SW_PORT_TOTALS * sizeof(uint64_t);
		const char *head = (const char *)buf + sizeof(h) + tl;
		size_t left = h.len1 > tl ? h.len1 - tl : 0, nl = left ? strnlen(head, left) + 1 : 0;
		if (h.type != UPG_PORT || nl == 0 || nl >= left) {
			snprintf(why, wlen, "message %u (%u bytes of name and arguments) where PORT or END was due",
				 h.type, h.len1);
			close_all(fds, nfds);
			return -EPROTO;
		}
		struct sw_port_import imp = {head + left, h.len2, fds, nfds, false, {0}};
		memcpy(imp.totals, buf + sizeof(h), tl);
		char perr[200];
		rc = sw_port_import(sw, head, head + nl, left - nl, &imp, perr, sizeof(perr));
		if (rc < 0) {
			snprintf(why, wlen, "%s", perr);
			return rc;
		}
		ports++;
	}
	if (h.val != ports) {
		snprintf(why, wlen, "END says %llu ports, %u came", (unsigned long long)h.val, ports);
		return -EPROTO;
	}
	rc = upg_send(sock, UPG_READY, ports, NULL, 0, NULL, 0, NULL, 0, vhdi_now_us() + SW_UPGRADE_STEP_MS * 1000LL);
	if (rc < 0) {
		snprintf(why, wlen, "sending READY: %s", strerror(-rc));
		return rc;
	}
	rc = upg_recv(sock, &h, buf, fds, &nfds, vhdi_now_us() + SW_UPGRADE_STEP_MS * 1000LL, why, wlen);
	close_all(fds, nfds);
	if (rc == 0 && h.type != UPG_GO) {
		snprintf(why, wlen, "message %u where GO was due", h.type);
		rc = -EPROTO;
	}
	if (rc < 0)
		return rc;
	*pause_us = h.val;
	sw_handover_resume(sw);
	vhd_log(VHD_LOG_INFO, "vhostd: took over %u port(s) and %u MAC table entries (%u refused); forwarding paused "
		"%llu us", ports, macs, refused, (unsigned long long)h.val);
	return 0;
}

int sw_upgrade_takeover(struct sw *sw, int sock, int *extra, unsigned *nextra, uint64_t *upgrades,
			uint64_t *pause_us, char *err, size_t errlen)
{
	*nextra = 0;
	int fl = fcntl(sock, F_GETFL);
	fcntl(sock, F_SETFD, FD_CLOEXEC);
	if (fl < 0 || fcntl(sock, F_SETFL, fl | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "--takeover %d: %s", sock, strerror(errno));
		return -EBADF;
	}
	int rc = takeover(sw, sock, extra, nextra, upgrades, pause_us, err, errlen);
	if (rc < 0 && rc != -EPIPE) {
		/* Best effort: the old process then resumes at once instead of at its deadline. */
		upg_send(sock, UPG_FAIL, 0, err, (uint32_t)strlen(err), NULL, 0, NULL, 0,
			 vhdi_now_us() + 100 * 1000LL);
	}
	close(sock);
	return rc;
}
