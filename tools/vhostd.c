/* SPDX-License-Identifier: MIT */
/*
 * vhostd: the poll-mode virtual switch. Ports (vhost-user for VMs, virtio-user towards other vhost-user
 * devices, tap, af_packet and af_xdp towards the host's kernel, vxlan towards remote hosts), an L2 learning
 * bridge between them, N forwarding threads, and a control socket that vhostctl talks to. The configuration
 * file holds the same commands as vhostctl, one per line.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "ctl/http.h"
#include "util/json.h"
#include "switch/metrics.h"
#include "switch/switch.h"
#include "switch/upgrade.h"
#include "vhostd/log.h"
#include "vhostd/mem.h"

#define DEFAULT_SOCKET "/run/vhostd/vhostd.sock"

/* One spelling everywhere (--log-level, vhostctl log-level, the lines themselves); err and warn, the names
 * vhostd took before, are still accepted. */
static const char *const level_names[] = {"error", "warning", "info", "debug"};
static bool use_syslog;
/* Where lines go: stderr, or the --log-file, reopened in place (dup2) on SIGHUP so that a line is never
 * written to a closed descriptor by a thread that logs meanwhile. */
static int log_fd = STDERR_FILENO;
static const char *log_path;

static void log_handler(enum vhd_log_level level, const char *msg, void *opaque)
{
	(void)opaque;
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	unsigned l = level <= VHD_LOG_DEBUG ? level : VHD_LOG_DEBUG;
	char line[640], ts[32];
	vhd_log_timestamp(ts, sizeof(ts));
	int n = snprintf(line, sizeof(line), "%s vhostd %s: %s\n", ts, level_names[l], msg);
	if (n >= (int)sizeof(line)) {
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	/* One write per line: with O_APPEND, lines from several threads never interleave. */
	if (n > 0 && write(log_fd, line, (size_t)n) < 0) {
		/* nowhere left to say it */
	}
	if (use_syslog)
		syslog(prio[l], "%s", msg);
}

static int parse_level(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, level_names[i]))
			return i;
	if (!strcmp(s, "err"))
		return VHD_LOG_ERR;
	if (!strcmp(s, "warn"))
		return VHD_LOG_WARN;
	return -1;
}

/* Open (first call) or reopen the log file; 0 or -errno. */
static int open_log_file(void)
{
	int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd < 0)
		return -errno;
	if (log_fd == STDERR_FILENO) {
		log_fd = fd;
		return 0;
	}
	int rc = dup2(fd, log_fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/* ------------------------------------------------------------------ commands */

/* The control socket, for the descriptor a capture request carries. */
static struct sw_ctl *ctl_sock;
/* vhostctl upgrade: this process's argv (the new binary gets the same options), its listeners, what it has seen. */
static char **orig_argv;
static struct sw_http *http_srv;
static bool serving; /* the control socket is up: commands come from vhostctl, not the config file */
static uint64_t upgrades, last_pause_us;
static pid_t successor; /* set once the new process has everything: exit after answering */

static int cmd_add_port(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)w;
	struct sw *sw = opaque;
	struct sw_kv kv[SW_MAX_ARGS];
	unsigned n = 0;
	for (unsigned i = 3; i < argc; i++) {
		if (n == SW_MAX_ARGS) {
			snprintf(err, errlen, "more than %d port arguments", SW_MAX_ARGS);
			return -E2BIG;
		}
		char *eq = strchr(argv[i], '=');
		if (eq == argv[i]) {
			snprintf(err, errlen, "argument '%s': want KEY=VALUE or KEY", argv[i]);
			return -EINVAL;
		}
		if (eq)
			*eq = '\0';
		kv[n].key = argv[i];
		kv[n].value = eq ? eq + 1 : "";
		n++;
	}
	return sw_port_add(sw, argv[1], argv[2], kv, n, err, errlen);
}

static int cmd_del_port(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)argc;
	(void)w;
	return sw_port_del(opaque, argv[1], err, errlen);
}

static int cmd_show(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)argc, (void)argv, (void)err, (void)errlen;
	sw_show(opaque, w);
	return 0;
}

static int cmd_stats(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	int rc = sw_stats(opaque, argc > 1 ? argv[1] : NULL, w, err, errlen);
	if (rc == 0 && argc == 1) {
		sw_json_obj_begin(w, "upgrade");
		sw_json_u64(w, "count", upgrades);
		sw_json_u64(w, "last_pause_us", last_pause_us);
		sw_json_obj_end(w);
	}
	return rc;
}

static int cmd_upgrade(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)argc;
	if (!serving) {
		snprintf(err, errlen, "upgrade is a vhostctl command, not one for the config file");
		return -EINVAL;
	}
	/* The new binary, then every option this one was started with but a previous --takeover. */
	unsigned n = 0;
	while (orig_argv[n])
		n++;
	char **av = calloc(n + 1, sizeof(*av));
	if (!av)
		return -ENOMEM;
	unsigned k = 0;
	av[k++] = argv[1];
	for (unsigned i = 1; i < n; i++) {
		if (!strcmp(orig_argv[i], "--takeover") && i + 1 < n) {
			i++;
			continue;
		}
		if (!strncmp(orig_argv[i], "--takeover=", 11))
			continue;
		av[k++] = orig_argv[i];
	}
	av[k] = NULL;
	int extra[2] = {sw_ctl_fd(ctl_sock), http_srv ? sw_http_fd(http_srv) : -1};
	struct sw_upgrade_result r;
	vhd_log(VHD_LOG_INFO, "vhostd: upgrading to %s", argv[1]);
	int rc = sw_upgrade_run(opaque, av, extra, http_srv ? 2 : 1, upgrades, &r, err, errlen);
	free(av);
	if (rc < 0) {
		vhd_log(VHD_LOG_ERR, "vhostd: upgrade failed, still forwarding: %s", err);
		return rc;
	}
	successor = r.pid;
	last_pause_us = r.pause_us;
	sw_json_str(w, "binary", argv[1]);
	sw_json_u64(w, "pid", (uint64_t)r.pid);
	sw_json_u64(w, "ports", r.ports);
	sw_json_u64(w, "fds", r.fds);
	sw_json_u64(w, "macs", r.macs);
	sw_json_u64(w, "pause_us", r.pause_us);
	sw_json_u64(w, "upgrades", upgrades + 1);
	return 0;
}

/* Under systemd (NOTIFY_SOCKET, with NotifyAccess=all in the unit), the successor becomes the service's main
 * process before this one exits, so that the service does not end with it. */
static void notify_mainpid(pid_t pid)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (!path || !*path || strlen(path) >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, path, strlen(path));
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace */
	char msg[32];
	int n = snprintf(msg, sizeof(msg), "MAINPID=%d", (int)pid);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path))) < 0)
		vhd_log(VHD_LOG_WARN, "vhostd: telling systemd the new main pid: %s", strerror(errno));
	close(fd);
}

static int cmd_fdb(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)argc, (void)argv, (void)err, (void)errlen;
	sw_fdb_show(opaque, w);
	return 0;
}

static int cmd_log_level(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)opaque;
	if (argc > 1) {
		int l = parse_level(argv[1]);
		if (l < 0) {
			snprintf(err, errlen, "log level '%s': want error, warning, info or debug", argv[1]);
			return -EINVAL;
		}
		enum vhd_log_level old = vhd_log_get_level();
		vhd_log_set_level((enum vhd_log_level)l);
		/* Said at info whatever either level is, so that the change is on record even when it quietens. */
		char msg[96];
		snprintf(msg, sizeof(msg), "vhostd: log level %s -> %s", level_names[old], level_names[l]);
		log_handler(VHD_LOG_INFO, msg, NULL);
	}
	sw_json_str(w, "level", level_names[vhd_log_get_level()]);
	return 0;
}


/* capture PORT rx|tx|both [COUNT], with a unix stream socket passed alongside (vhostctl capture). */
static int cmd_capture(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	int fd = sw_ctl_take_fd(ctl_sock);
	unsigned dirs = !strcmp(argv[2], "rx") ? SW_CAP_RX : !strcmp(argv[2], "tx") ? SW_CAP_TX :
			!strcmp(argv[2], "both") ? SW_CAP_RX | SW_CAP_TX : 0;
	uint64_t count = 0;
	int rc = 0;
	if (!dirs) {
		snprintf(err, errlen, "capture direction '%.40s': want rx, tx or both", argv[2]);
		rc = -EINVAL;
	} else if (argc > 3) {
		const char *s = argv[3];
		size_t i = 0;
		for (; s[i] >= '0' && s[i] <= '9' && i < 10; i++)
			count = count * 10 + (uint64_t)(s[i] - '0');
		if (s[i] || i == 0 || count == 0 || count > UINT32_MAX) {
			snprintf(err, errlen, "capture count '%.40s': want 1..%u", s, UINT32_MAX);
			rc = -EINVAL;
		}
	}
	if (rc) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	return sw_capture_start(opaque, argv[1], dirs, count, fd, w, err, errlen);
}

static const struct sw_ctl_cmd commands[] = {
	{"add-port", "add-port NAME TYPE [KEY=VALUE...]",
	 "add a port: vhost-user path=SOCK [client] [queues=N] [mrg=on|off] [tso=on|off] [borrow=on|off] "
	 "[config=on|off] [iommu=on|off] [iotlb_per_burst=on|off] [owner=USER|UID] [group=GROUP|GID] [mode=OCTAL] [msg_timeout_ms=MS], virtio-user path=SOCK "
	 "[server] [queues=N] [packed] [mrg=on|off] [iommu=on|off] [msg_timeout_ms=MS], tap ifname=NAME [queues=N] [offloads=on|off] [addr=IP/PREFIX] [mac=MAC], af_packet "
	 "ifname=NAME [frames=N] [offloads=on|off] [qdisc_bypass=on|off], af_xdp ifname=NAME [queue=N] [frames=N] "
	 "[mode=auto|native|generic] [zerocopy=auto|on|off], vxlan vni=N remote=IP[,IP...] [local=IP] [dstport=N] "
	 "[src_ports=N] [gso=on|off], vduse name=NAME [mac=MAC] [packed=on|off] [tso=on|off] [size=N] [state=DIR], "
	 "vdpa path=/dev/vhost-vdpa-N [queues=N] [packed] [mrg=on|off]; any type takes mtu=N and max_macs=N",
	 2, 2 + SW_MAX_ARGS, cmd_add_port},
	{"del-port", "del-port NAME", "remove a port while traffic flows", 1, 1, cmd_del_port},
	{"show", "show", "ports, their state and negotiated features, forwarding threads", 0, 0, cmd_show},
	{"stats", "stats [PORT]",
	 "per-port packet, byte, drop and error counters; without PORT also each forwarding thread's busy cycles per "
	 "packet and busy rounds",
	 0, 1, cmd_stats},
	{"fdb", "fdb", "the MAC learning table", 0, 0, cmd_fdb},
	{"log-level", "log-level [error|warning|info|debug]", "show or set the log level", 0, 1, cmd_log_level},
	{"capture", "capture PORT rx|tx|both [COUNT]",
	 "stream the port's frames as pcapng into the unix stream socket passed with the request (SCM_RIGHTS), "
	 "until COUNT frames, the port's removal, or the socket's peer shuts it down; vhostctl capture -w FILE does "
	 "this",
	 2, 3, cmd_capture},
	{"upgrade", "upgrade PATH",
	 "hitless upgrade: start the vhostd binary PATH with this one's options and hand it every port, live "
	 "vhost-user connections, tap queues and sockets included, then exit; if PATH fails, this one keeps forwarding",
	 1, 1, cmd_upgrade},
};
#define NCMDS (sizeof(commands) / sizeof(commands[0]))

/* ------------------------------------------------------------------ setup */

/* The reason in a refusal ({"ok":false,"error":"..."}), for a FILE:LINE: reason line. */
static const char *refusal(struct sw_json *resp)
{
	static char why[512];
	const char *r = sw_json_finish(resp);
	struct sw_json_val *v = NULL;
	char perr[64];
	snprintf(why, sizeof(why), "%s", r ? r : "out of memory");
	if (r && sw_json_parse(r, strlen(r), &v, perr, sizeof(perr)) == 0) {
		const struct sw_json_val *e = sw_json_get(v, "error");
		if (e && e->type == SW_JSON_STR)
			snprintf(why, sizeof(why), "%s", e->str);
	}
	if (v)
		sw_json_val_free(v);
	return why;
}

static int run_config(struct sw *sw, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "vhostd: config %s: %s\n", path, strerror(errno));
		return -1;
	}
	char line[4096];
	unsigned lineno = 0;
	int rc = 0;
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		lineno++;
		char *argv[SW_CTL_MAX_ARGS + 2];
		unsigned argc;
		line[strcspn(line, "\r\n")] = '\0';
		int s = sw_ctl_split(line, argv, SW_CTL_MAX_ARGS + 1, &argc);
		if (s < 0) {
			fprintf(stderr, "vhostd: %s:%u: %s\n", path, lineno,
				s == -E2BIG ? "too many words" : "unterminated quote or bad escape");
			rc = -1;
			break;
		}
		if (argc == 0)
			continue;
		struct sw_json resp;
		sw_json_init(&resp);
		if (sw_ctl_run_argv(commands, NCMDS, sw, argc, argv, &resp) < 0) {
			fprintf(stderr, "vhostd: %s:%u: %s\n", path, lineno, refusal(&resp));
			rc = -1;
		}
		sw_json_free(&resp);
	}
	fclose(f);
	return rc;
}

static int parse_cpus(const char *s, struct sw_config *c)
{
	unsigned n = 0;
	char *copy = strdup(s), *save = NULL;
	if (!copy)
		return -1;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *end;
		long v = strtol(t, &end, 10);
		if (*end || v < 0 || v >= CPU_SETSIZE || n >= SW_MAX_THREADS) {
			free(copy);
			return -1;
		}
		c->cpu[n++] = (int)v;
	}
	free(copy);
	return (int)n;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vhostd [--config FILE] [--socket PATH] [--threads N] [--cpus LIST] [--aging SECONDS]\n"
		"              [--idle-us N] [--poll] [--log-level LEVEL] [--log-file PATH] [--syslog]\n"
		"              [--metrics ADDR:PORT]\n"
		"\n"
		"  --config FILE    run the commands in FILE at start (one vhostctl command per line, e.g.\n"
		"                   'add-port vm1 vhost-user path=/run/vhostd/vm1.sock'; '#' starts a comment)\n"
		"  --socket PATH    control socket for vhostctl (default %s; $VHOSTD_SOCKET)\n"
		"  --threads N      forwarding threads, 1..%d (default 1)\n"
		"  --cpus LIST      pin forwarding thread i to the i-th CPU of LIST (e.g. 1,2)\n"
		"  --aging SECONDS  MAC table aging (default 300, 0 never)\n"
		"  --idle-us N      a forwarding thread that found nothing for 1000 rounds sleeps N us per round\n"
		"                   (default 20; 0 spins, for dedicated cores); after 50 such rounds it sleeps\n"
		"                   until a queue has work (guests' kicks, drivers' interrupts, readable sockets)\n"
		"  --poll           never sleep until notified: keep polling (with the --idle-us sleeps)\n"
		"  --log-level L    error, warning, info (default) or debug (err and warn are accepted too)\n"
		"  --log-file PATH  append log lines to PATH instead of stderr; SIGHUP reopens it (logrotate)\n"
		"  --syslog         log to syslog as well\n"
		"  --metrics ADDR:PORT  serve Prometheus metrics over HTTP at http://ADDR:PORT/metrics (IPV4:PORT or\n"
		"                   [IPV6]:PORT; port 0 picks a free port, logged; default off)\n"
		"Log lines start with the time, ISO 8601 UTC with milliseconds.\n"
		"Runs in the foreground until SIGINT or SIGTERM, then removes its sockets and stops every port.\n"
		"Exit status: 0 stopped by a signal, 1 could not start (control socket, config file, metrics listener), 2 usage error.\n",
		DEFAULT_SOCKET, SW_MAX_THREADS);
}

int main(int argc, char **argv)
{
	struct sw_config c;
	sw_config_default(&c);
	const char *config = NULL, *sock = getenv("VHOSTD_SOCKET"), *metrics = NULL;
	int level = VHD_LOG_INFO;
	static const struct option lo[] = {{"config", 1, 0, 'c'},    {"socket", 1, 0, 's'},    {"threads", 1, 0, 't'},
					   {"cpus", 1, 0, 'p'},      {"aging", 1, 0, 'a'},     {"idle-us", 1, 0, 'i'},
					   {"poll", 0, 0, 'P'},
					   {"log-level", 1, 0, 'l'}, {"syslog", 0, 0, 'S'},    {"help", 0, 0, 'h'},
					   {"log-file", 1, 0, 'L'},  {"metrics", 1, 0, 'm'},    {"takeover", 1, 0, 'T'},
					   {0, 0, 0, 0}};
	int o, ncpus = 0, takeover_fd = -1;
	orig_argv = argv;
	while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (o) {
		case 'c':
			config = optarg;
			break;
		case 's':
			sock = optarg;
			break;
		case 't':
			c.threads = (unsigned)atoi(optarg);
			if (c.threads < 1 || c.threads > SW_MAX_THREADS) {
				fprintf(stderr, "vhostd: --threads wants 1..%d\n", SW_MAX_THREADS);
				return 2;
			}
			break;
		case 'p':
			ncpus = parse_cpus(optarg, &c);
			if (ncpus < 0) {
				fprintf(stderr, "vhostd: --cpus wants a comma-separated list of CPU numbers\n");
				return 2;
			}
			break;
		case 'a':
			c.aging_s = (unsigned)atoi(optarg);
			break;
		case 'i':
			c.idle_us = (unsigned)atoi(optarg);
			break;
		case 'P':
			c.poll = true;
			break;
		case 'l':
			level = parse_level(optarg);
			if (level < 0) {
				fprintf(stderr, "vhostd: --log-level wants error, warning, info or debug, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'L':
			log_path = optarg;
			break;
		case 'm':
			metrics = optarg;
			break;
		case 'S':
			use_syslog = true;
			break;
		case 'T': /* internal: started by vhostctl upgrade (upgrade.h), not for people */
			takeover_fd = atoi(optarg);
			if (takeover_fd < 3) {
				fprintf(stderr, "vhostd: --takeover wants the descriptor its predecessor passed\n");
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!sock)
		sock = DEFAULT_SOCKET;
	if (log_path) {
		int lrc = open_log_file();
		if (lrc < 0) {
			fprintf(stderr, "vhostd: --log-file %s: %s\n", log_path, strerror(-lrc));
			return 1;
		}
	}
	if (use_syslog)
		openlog("vhostd", LOG_PID, LOG_DAEMON);
	vhd_log_set_handler(log_handler, NULL);
	vhd_log_set_level((enum vhd_log_level)level);

	/* Signals arrive through a descriptor, so the control loop sees them like any other event. */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* A front-end that shrinks its memory file must cost us its device, not the process (vhostd/mem.h). */
	int grc = vhd_mem_guard_sigbus();
	if (grc < 0)
		vhd_log(VHD_LOG_WARN, "SIGBUS guard not installed: %s", strerror(-grc));
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

	/* The socket's directory, if it is ours to make (the default one is). */
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", sock);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdir(dir, 0755);
	}

	struct sw *sw;
	int rc = sw_create(&c, &sw);
	if (rc < 0) {
		fprintf(stderr, "vhostd: cannot start the switch: %s\n", strerror(-rc));
		return 1;
	}
	struct sw_ctl *ctl;
	int mfd = -1;
	if (takeover_fd >= 0) {
		/* Everything comes from the predecessor, which keeps it all until we say READY; on any failure it
		 * forwards on, and we must leave at once without touching a socket file, a tap or a peer. */
		int extra[SW_UPGRADE_MAX_EXTRA];
		unsigned nextra;
		char terr[320];
		rc = sw_upgrade_takeover(sw, takeover_fd, extra, &nextra, &upgrades, &last_pause_us, terr, sizeof(terr));
		if (rc < 0) {
			vhd_log(VHD_LOG_ERR, "vhostd: taking over: %s; the previous vhostd carries on", terr);
			_exit(1);
		}
		upgrades++;
		for (unsigned i = 2; i < nextra; i++)
			close(extra[i]);
		mfd = nextra > 1 ? extra[1] : -1;
		if (mfd >= 0 && !metrics) {
			close(mfd);
			mfd = -1;
		}
		rc = nextra ? sw_ctl_adopt(sock, extra[0], commands, NCMDS, sw, &ctl) : -EBADF;
	} else {
		rc = sw_ctl_listen(sock, commands, NCMDS, sw, &ctl);
	}
	ctl_sock = ctl;
	if (rc < 0 && takeover_fd >= 0) {
		/* The ports forward already: keep them, without a control socket rather than without guests. */
		vhd_log(VHD_LOG_ERR, "vhostd: control socket %s not taken over: %s", sock, strerror(-rc));
		ctl = ctl_sock = NULL;
	} else if (rc < 0) {
		fprintf(stderr, "vhostd: control socket %s: %s\n", sock,
			rc == -EADDRINUSE ? "another vhostd answers there" : strerror(-rc));
		sw_destroy(sw);
		return 1;
	}
	struct sw_http *http = NULL;
	if (mfd >= 0) {
		rc = sw_http_adopt(mfd, "/metrics", SW_METRICS_CONTENT_TYPE, sw_metrics_render, sw, &http);
		if (rc < 0)
			vhd_log(VHD_LOG_ERR, "vhostd: metrics listener not taken over: %s", strerror(-rc));
	} else if (metrics) {
		char merr[160];
		rc = sw_http_listen(metrics, "/metrics", SW_METRICS_CONTENT_TYPE, sw_metrics_render, sw, &http, merr,
				    sizeof(merr));
		if (rc < 0) {
			fprintf(stderr, "vhostd: --metrics: %s\n", merr);
			sw_ctl_destroy(ctl);
			sw_destroy(sw);
			return rc == -EINVAL ? 2 : 1;
		}
		vhd_log(VHD_LOG_INFO, "vhostd: metrics on http://%s/metrics", sw_http_addr(http));
	}
	/* The control socket appears only now: whoever waits for it (a service manager, libvirt, a script)
	 * finds the config file applied, or finds the daemon gone with its reason. */
	http_srv = http;
	if (takeover_fd < 0 && ((config && run_config(sw, config) < 0) || (rc = sw_ctl_publish(ctl)) < 0)) {
		if (rc < 0)
			fprintf(stderr, "vhostd: control socket %s: %s\n", sock, strerror(-rc));
		sw_http_destroy(http);
		sw_ctl_destroy(ctl);
		sw_destroy(sw);
		return 1;
	}
	serving = true;
	vhd_log(VHD_LOG_INFO, "vhostd: running, %u forwarding thread(s), control socket %s", c.threads, sock);

	bool stop = false;
	while (!stop) {
		struct pollfd fds[1 + SW_CTL_MAX_POLLFDS + SW_HTTP_MAX_POLLFDS + 2 * SW_MAX_PORTS + SW_MAX_CAPTURES];
		unsigned n = 0;
		fds[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
		if (ctl)
			n += sw_ctl_pollfds(ctl, fds + n, SW_CTL_MAX_POLLFDS);
		if (http)
			n += sw_http_pollfds(http, fds + n, SW_HTTP_MAX_POLLFDS);
		unsigned swfd = n;
		n += sw_pollfds(sw, fds + n, (unsigned)(sizeof(fds) / sizeof(fds[0])) - n);
		int timeout = sw_timeout_ms(sw);
		int ht = http ? sw_http_timeout_ms(http) : -1;
		if (ht >= 0 && (timeout < 0 || ht < timeout))
			timeout = ht;
		if (poll(fds, n, timeout) < 0 && errno != EINTR)
			break;
		if (fds[0].revents) {
			struct signalfd_siginfo si = {0};
			if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si) && si.ssi_signo == SIGHUP) {
				int lrc = log_path ? open_log_file() : 0;
				if (lrc < 0)
					vhd_log(VHD_LOG_ERR, "vhostd: SIGHUP: reopening %s: %s (still writing to the old file)",
						log_path, strerror(-lrc));
				else
					vhd_log(VHD_LOG_INFO, "vhostd: SIGHUP: %s", log_path ? "log file reopened" :
						"no --log-file to reopen");
			} else if (si.ssi_signo) {
				vhd_log(VHD_LOG_INFO, "vhostd: %s, stopping", strsignal((int)si.ssi_signo));
				stop = true;
			}
		}
		if (ctl)
			sw_ctl_dispatch(ctl);
		if (successor) {
			/* The answer is out; the new process owns every port, socket file and listener now: leave
			 * without removing, closing down or telling anything (the kernel drops only our references). */
			notify_mainpid(successor);
			vhd_log(VHD_LOG_INFO, "vhostd: handed over to pid %d, exiting", (int)successor);
			_exit(0);
		}
		if (http)
			sw_http_dispatch(http);
		sw_dispatch(sw, fds + swfd, n - swfd);
	}
	sw_http_destroy(http);
	sw_ctl_destroy(ctl);
	sw_destroy(sw);
	close(sfd);
	vhd_log(VHD_LOG_INFO, "vhostd: stopped");
	return 0;
}
