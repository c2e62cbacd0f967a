/* SPDX-License-Identifier: MIT */
/*
 * vhostd: the poll-mode virtual switch. Ports (vhost-user for VMs, virtio-user towards other vhost-user
 * devices, tap and af_packet towards the host's kernel), an L2 learning bridge between them, N forwarding
 * threads, and a control socket that vhostctl talks to. The configuration file holds the same commands as
 * vhostctl, one per line.
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "ctl/json.h"
#include "switch/switch.h"
#include "vhostd/log.h"
#include "vhostd/mem.h"

#define DEFAULT_SOCKET "/run/vhostd/vhostd.sock"

static const char *const level_names[] = {"err", "warn", "info", "debug"};
static bool use_syslog;

static void log_handler(enum vhd_log_level level, const char *msg, void *opaque)
{
	(void)opaque;
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	unsigned l = level <= VHD_LOG_DEBUG ? level : VHD_LOG_DEBUG;
	fprintf(stderr, "vhostd %s: %s\n", level_names[l], msg);
	if (use_syslog)
		syslog(prio[l], "%s", msg);
}

static int parse_level(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, level_names[i]))
			return i;
	if (!strcmp(s, "error"))
		return VHD_LOG_ERR;
	if (!strcmp(s, "warning"))
		return VHD_LOG_WARN;
	return -1;
}

/* ------------------------------------------------------------------ commands */

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
	return sw_stats(opaque, argc > 1 ? argv[1] : NULL, w, err, errlen);
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
			snprintf(err, errlen, "log level '%s': want err, warn, info or debug", argv[1]);
			return -EINVAL;
		}
		vhd_log_set_level((enum vhd_log_level)l);
	}
	sw_json_str(w, "level", level_names[vhd_log_get_level()]);
	return 0;
}

static const struct sw_ctl_cmd commands[] = {
	{"add-port", "add-port NAME TYPE [KEY=VALUE...]",
	 "add a port: vhost-user path=SOCK [client] [queues=N] [mrg=on|off] [tso=on|off] [borrow=on|off], virtio-user path=SOCK "
	 "[server] [queues=N] [packed] [mrg=on|off], tap ifname=NAME [queues=N] [offloads=on|off], af_packet "
	 "ifname=NAME [frames=N] [offloads=on|off] [qdisc_bypass=on|off]; any type takes mtu=N and max_macs=N",
	 2, 2 + SW_MAX_ARGS, cmd_add_port},
	{"del-port", "del-port NAME", "remove a port while traffic flows", 1, 1, cmd_del_port},
	{"show", "show", "ports, their state and negotiated features, forwarding threads", 0, 0, cmd_show},
	{"stats", "stats [PORT]",
	 "per-port packet, byte, drop and error counters; without PORT also each forwarding thread's busy cycles per "
	 "packet and busy rounds",
	 0, 1, cmd_stats},
	{"fdb", "fdb", "the MAC learning table", 0, 0, cmd_fdb},
	{"log-level", "log-level [err|warn|info|debug]", "show or set the log level", 0, 1, cmd_log_level},
};
#define NCMDS (sizeof(commands) / sizeof(commands[0]))

/* ------------------------------------------------------------------ setup */

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
			const char *r = sw_json_finish(&resp);
			fprintf(stderr, "vhostd: %s:%u: %s\n", path, lineno, r ? r : "out of memory");
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
		"              [--idle-us N] [--log-level LEVEL] [--syslog]\n"
		"\n"
		"  --config FILE    run the commands in FILE at start (one vhostctl command per line, e.g.\n"
		"                   'add-port vm1 vhost-user path=/run/vhostd/vm1.sock'; '#' starts a comment)\n"
		"  --socket PATH    control socket for vhostctl (default %s; $VHOSTD_SOCKET)\n"
		"  --threads N      forwarding threads, 1..%d (default 1)\n"
		"  --cpus LIST      pin forwarding thread i to the i-th CPU of LIST (e.g. 1,2)\n"
		"  --aging SECONDS  MAC table aging (default 300, 0 never)\n"
		"  --idle-us N      a forwarding thread that found nothing for 1000 rounds sleeps N us per round\n"
		"                   (default 20; 0 spins, for dedicated cores)\n"
		"  --log-level L    err, warn, info (default) or debug\n"
		"  --syslog         log to syslog as well as stderr\n"
		"Runs in the foreground until SIGINT or SIGTERM, then removes its sockets and stops every port.\n",
		DEFAULT_SOCKET, SW_MAX_THREADS);
}

int main(int argc, char **argv)
{
	struct sw_config c;
	sw_config_default(&c);
	const char *config = NULL, *sock = getenv("VHOSTD_SOCKET");
	int level = VHD_LOG_INFO;
	static const struct option lo[] = {{"config", 1, 0, 'c'},    {"socket", 1, 0, 's'},    {"threads", 1, 0, 't'},
					   {"cpus", 1, 0, 'p'},      {"aging", 1, 0, 'a'},     {"idle-us", 1, 0, 'i'},
					   {"log-level", 1, 0, 'l'}, {"syslog", 0, 0, 'S'},    {"help", 0, 0, 'h'},
					   {0, 0, 0, 0}};
	int o, ncpus = 0;
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
		case 'l':
			level = parse_level(optarg);
			if (level < 0) {
				fprintf(stderr, "vhostd: --log-level wants err, warn, info or debug\n");
				return 2;
			}
			break;
		case 'S':
			use_syslog = true;
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
	if (use_syslog)
		openlog("vhostd", LOG_PID, LOG_DAEMON);
	vhd_log_set_handler(log_handler, NULL);
	vhd_log_set_level((enum vhd_log_level)level);

	/* Signals arrive through a descriptor, so the control loop sees them like any other event. */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
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
	rc = sw_ctl_listen(sock, commands, NCMDS, sw, &ctl);
	if (rc < 0) {
		fprintf(stderr, "vhostd: control socket %s: %s\n", sock,
			rc == -EADDRINUSE ? "another vhostd answers there" : strerror(-rc));
		sw_destroy(sw);
		return 1;
	}
	if (config && run_config(sw, config) < 0) {
		sw_ctl_destroy(ctl);
		sw_destroy(sw);
		return 1;
	}
	vhd_log(VHD_LOG_INFO, "vhostd: running, %u forwarding thread(s), control socket %s", c.threads, sock);

	bool stop = false;
	while (!stop) {
		struct pollfd fds[1 + SW_CTL_MAX_POLLFDS + 2 * SW_MAX_PORTS];
		unsigned n = 0;
		fds[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
		n += sw_ctl_pollfds(ctl, fds + n, SW_CTL_MAX_POLLFDS);
		n += sw_pollfds(sw, fds + n, (unsigned)(sizeof(fds) / sizeof(fds[0])) - n);
		if (poll(fds, n, sw_timeout_ms(sw)) < 0 && errno != EINTR)
			break;
		if (fds[0].revents) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				vhd_log(VHD_LOG_INFO, "vhostd: %s, stopping", strsignal((int)si.ssi_signo));
				stop = true;
			}
		}
		sw_ctl_dispatch(ctl);
		sw_dispatch(sw);
	}
	sw_ctl_destroy(ctl);
	sw_destroy(sw);
	close(sfd);
	vhd_log(VHD_LOG_INFO, "vhostd: stopped");
	return 0;
}
