/* SPDX-License-Identifier: MIT */
/*
 * vhostctl: send one command to vhostd's control socket and show the answer, as tables or (--json) as the
 * daemon's result object on one line.
 *
 * Exit status: 0 done; 1 the daemon refused the command; 2 usage error; 3 no answer from the daemon (cannot
 * connect, timeout, connection closed, malformed answer).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util/fdio.h"
#include "util/json.h"

#define DEFAULT_SOCKET "/run/vhostd/vhostd.sock"
#define DEFAULT_TIMEOUT_MS 5000
#define UPGRADE_TIMEOUT_MS 30000
#define MAX_RESPONSE (16u * 1024 * 1024) /* a large fdb is a few MiB; past this something is wrong */

enum { EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

/* ------------------------------------------------------------------ tables */

/* Rows of cells, printed with every column as wide as its widest cell. */
struct table {
	unsigned ncols;
	const char *const *heads;
	const bool *right; /* right-aligned columns (numbers) */
	char **cells;      /* nrows * ncols, owned */
	unsigned nrows, cap;
};

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p) {
		fputs("vhostctl: out of memory\n", stderr);
		exit(EXIT_UNREACHABLE);
	}
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xrealloc(NULL, n), s, n);
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		w += ((unsigned char)*s & 0xc0) != 0x80;
	return w;
}

/* What the daemon sends ends up on a terminal: no control characters (escape sequences) get through. */
static char *sanitize(char *s)
{
	for (unsigned char *p = (unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			*p = '?';
	return s;
}

static void table_add(struct table *t, char **row)
{
	if (t->nrows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->cells = xrealloc(t->cells, (size_t)t->cap * t->ncols * sizeof(char *));
	}
	for (unsigned c = 0; c < t->ncols; c++)
		t->cells[(size_t)t->nrows * t->ncols + c] = sanitize(row[c]);
	t->nrows++;
}

static void print_row(const struct table *t, const size_t *w, const char *const *cells)
{
	for (unsigned c = 0; c < t->ncols; c++) {
		size_t pad = w[c] - width(cells[c]);
		bool last = c + 1 == t->ncols;
		if (t->right[c])
			printf("%*s", (int)pad, "");
		fputs(cells[c], stdout);
		if (!t->right[c] && !last)
			printf("%*s", (int)pad, "");
		fputs(last ? "\n" : "  ", stdout);
	}
}

static void table_print(struct table *t)
{
	size_t w[16] = {0};
	for (unsigned c = 0; c < t->ncols; c++) {
		w[c] = width(t->heads[c]);
		for (unsigned r = 0; r < t->nrows; r++) {
			size_t x = width(t->cells[(size_t)r * t->ncols + c]);
			if (x > w[c])
				w[c] = x;
		}
	}
	print_row(t, w, t->heads);
	for (unsigned r = 0; r < t->nrows; r++)
		print_row(t, w, (const char *const *)&t->cells[(size_t)r * t->ncols]);
	for (size_t i = 0; i < (size_t)t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->nrows = t->cap = 0;
}

/* ------------------------------------------------------------------ values */

static bool is_int_text(const char *s)
{
	if (*s == '-')
		s++;
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Re-serialise a parsed value. Integers go through their text so 64-bit counters come out exact. */
static void put_val(struct sw_json *w, const char *key, const struct sw_json_val *v)
{
	switch (v->type) {
	case SW_JSON_NULL:
		sw_json_str(w, key, NULL);
		break;
	case SW_JSON_BOOL:
		sw_json_bool(w, key, v->b);
		break;
	case SW_JSON_STR:
		sw_json_str(w, key, v->str);
		break;
	case SW_JSON_NUM: {
		if (v->str && is_int_text(v->str)) {
			char *end;
			errno = 0;
			if (v->str[0] == '-') {
				long long x = strtoll(v->str, &end, 10);
				if (!errno && !*end) {
					sw_json_i64(w, key, x);
					break;
				}
			} else {
				unsigned long long x = strtoull(v->str, &end, 10);
				if (!errno && !*end) {
					sw_json_u64(w, key, x);
					break;
				}
			}
		}
		sw_json_double(w, key, v->num);
		break;
	}
	case SW_JSON_ARR:
	case SW_JSON_OBJ:
		if (v->type == SW_JSON_ARR)
			sw_json_arr_begin(w, key);
		else
			sw_json_obj_begin(w, key);
		for (const struct sw_json_val *c = v->child; c; c = c->next)
			put_val(w, v->type == SW_JSON_OBJ ? c->key : NULL, c);
		if (v->type == SW_JSON_ARR)
			sw_json_arr_end(w);
		else
			sw_json_obj_end(w);
		break;
	}
}

static char *to_json(const struct sw_json_val *v)
{
	struct sw_json w;
	sw_json_init(&w);
	put_val(&w, NULL, v);
	const char *t = sw_json_finish(&w);
	char *s = xstrdup(t ? t : "");
	sw_json_free(&w);
	return s;
}

/* A member as a table cell; "-" when absent. Arrays of scalars are joined with sep, other containers are JSON. */
static char *cell(const struct sw_json_val *obj, const char *key, const char *sep)
{
	const struct sw_json_val *v = key ? sw_json_get(obj, key) : obj;
	if (!v || v->type == SW_JSON_NULL)
		return xstrdup("-");
	switch (v->type) {
	case SW_JSON_BOOL:
		return xstrdup(v->b ? "true" : "false");
	case SW_JSON_STR:
		return xstrdup(v->str);
	case SW_JSON_NUM:
		return xstrdup(v->str ? v->str : "?");
	case SW_JSON_ARR: {
		bool flat = true;
		for (const struct sw_json_val *c = v->child; c; c = c->next)
			flat = flat && c->type != SW_JSON_ARR && c->type != SW_JSON_OBJ;
		if (!flat || !sep)
			break;
		char *s = xstrdup("");
		size_t len = 0;
		for (const struct sw_json_val *c = v->child; c; c = c->next) {
			char *x = cell(c, NULL, NULL);
			size_t n = strlen(x);
			s = xrealloc(s, len + n + strlen(sep) + 1);
			if (len) {
				strcpy(s + len, sep);
				len += strlen(sep);
			}
			memcpy(s + len, x, n + 1);
			len += n;
			free(x);
		}
		return len ? s : (free(s), xstrdup("-"));
	}
	default:
		break;
	}
	return to_json(v);
}

/* "key=value key=value" from an object's members. */
static char *kv_cell(const struct sw_json_val *obj)
{
	if (!obj || obj->type != SW_JSON_OBJ || !obj->child)
		return cell(obj, NULL, NULL);
	char *s = NULL;
	size_t len = 0;
	for (const struct sw_json_val *c = obj->child; c; c = c->next) {
		char *x = cell(c, NULL, ",");
		size_t n = strlen(c->key) + 1 + strlen(x);
		s = xrealloc(s, len + n + 2);
		len += (size_t)sprintf(s + len, "%s%s=%s", len ? " " : "", c->key, x);
		free(x);
	}
	return s;
}

/* The array member key of result whose elements are all objects, or NULL. */
static const struct sw_json_val *obj_array(const struct sw_json_val *result, const char *key)
{
	const struct sw_json_val *a = sw_json_get(result, key);
	if (!a || a->type != SW_JSON_ARR)
		return NULL;
	for (const struct sw_json_val *c = a->child; c; c = c->next)
		if (c->type != SW_JSON_OBJ)
			return NULL;
	return a;
}

/* ------------------------------------------------------------------ renderers */

/* Each returns false when the result is not the shape it knows; the raw JSON is printed instead. */

static bool render_empty(const struct sw_json_val *r)
{
	return !r->child;
}

static bool render_show(const struct sw_json_val *r)
{
	const struct sw_json_val *ports = obj_array(r, "ports"), *threads = obj_array(r, "threads");
	const struct sw_json_val *bridge = sw_json_get(r, "bridge");
	if (!ports)
		return false;
	static const char *const ph[] = {"PORT", "TYPE", "ID", "LINK", "MTU", "RXQ", "TXQ", "MACS", "MAX_MACS", "INFO"};
	static const bool pr[] = {false, false, true, false, true, true, true, true, true, false};
	struct table t = {10, ph, pr, NULL, 0, 0};
	for (const struct sw_json_val *p = ports->child; p; p = p->next) {
		char *row[] = {cell(p, "name", NULL), cell(p, "type", NULL), cell(p, "id", NULL), cell(p, "link", NULL),
			       cell(p, "mtu", NULL),  cell(p, "rxq", NULL),  cell(p, "txq", NULL),  cell(p, "macs", NULL),
			       cell(p, "max_macs", NULL), kv_cell(sw_json_get(p, "info"))};
		table_add(&t, row);
	}
	table_print(&t);
	if (threads) {
		static const char *const th[] = {"THREAD", "CPU", "RXQS"};
		static const bool tr[] = {true, true, false};
		struct table u = {3, th, tr, NULL, 0, 0};
		for (const struct sw_json_val *p = threads->child; p; p = p->next) {
			char *row[] = {cell(p, "id", NULL), cell(p, "cpu", NULL), cell(p, "rxqs", " ")};
			table_add(&u, row);
		}
		putchar('\n');
		table_print(&u);
	}
	if (bridge && bridge->type == SW_JSON_OBJ) {
		char *aging = sanitize(cell(bridge, "aging_s", NULL)), *n = sanitize(cell(bridge, "fdb_entries", NULL));
		printf("\nbridge: MAC aging %s s, %s fdb entries\n", aging, n);
		free(aging);
		free(n);
	}
	return true;
}

/* A table whose column c is field keys[c] of each object in arr (at most 16 columns). */
static void print_fields(const struct sw_json_val *arr, unsigned ncols, const char *const *keys,
			 const char *const *heads, const bool *right)
{
	struct table t = {ncols, heads, right, NULL, 0, 0};
	for (const struct sw_json_val *p = arr->child; p; p = p->next) {
		char *row[16];
		for (unsigned i = 0; i < ncols; i++)
			row[i] = cell(p, keys[i], NULL);
		table_add(&t, row);
	}
	table_print(&t);
}

static bool render_stats(const struct sw_json_val *r)
{
	const struct sw_json_val *ports = obj_array(r, "ports");
	if (!ports)
		return false;
	static const char *const keys[] = {"name",     "rx_packets", "rx_bytes",     "tx_packets",   "tx_bytes",
					   "rx_drops", "tx_drops",   "errors",       "queue_breaks", "learn_refused"};
	static const char *const h[] = {"PORT",     "RX_PACKETS", "RX_BYTES",     "TX_PACKETS",   "TX_BYTES",
					"RX_DROPS", "TX_DROPS",   "ERRORS",       "QUEUE_BREAKS", "LEARN_REFUSED"};
	static const bool right[] = {false, true, true, true, true, true, true, true, true, true};
	print_fields(ports, (unsigned)(sizeof(keys) / sizeof(keys[0])), keys, h, right);
	/* vIOMMU counters of the vhost-user ports that offer ACCESS_PLATFORM (iommu=on). */
	static const char *const ik[] = {"iotlb_misses", "iotlb_updates", "iotlb_invalidations", "iotlb_waits"};
	static const char *const ih[] = {"PORT", "IOTLB_MISSES", "IOTLB_UPDATES", "IOTLB_INVALIDATIONS", "IOTLB_WAITS"};
	static const bool ir[] = {false, true, true, true, true};
	struct table it = {5, ih, ir, NULL, 0, 0};
	for (const struct sw_json_val *p = ports->child; p; p = p->next) {
		if (!sw_json_get(p, ik[0]))
			continue;
		char *row[5] = {cell(p, "name", NULL)};
		for (unsigned i = 0; i < 4; i++)
			row[i + 1] = cell(p, ik[i], NULL);
		table_add(&it, row);
	}
	if (it.nrows) {
		putchar('\n');
		table_print(&it);
	}
	/* Forwarding threads (whole-switch stats only): cycles per packet in the rounds that moved packets. */
	const struct sw_json_val *th = obj_array(r, "threads");
	if (th && th->child) {
		static const char *const tk[] = {"thread", "packets", "busy_cycles", "busy_rounds", "cycles_per_packet"};
		static const char *const thh[] = {"THREAD", "PACKETS", "BUSY_CYCLES", "BUSY_ROUNDS", "CYCLES/PACKET"};
		static const bool tr[] = {true, true, true, true, true};
		putchar('\n');
		print_fields(th, 5, tk, thh, tr);
	}
	const struct sw_json_val *u = sw_json_get(r, "upgrade");
	if (u && u->type == SW_JSON_OBJ) {
		char *n = cell(u, "count", NULL), *us = cell(u, "last_pause_us", NULL);
		printf("\nupgrades: %s (last paused forwarding %s us)\n", n, us);
		free(n);
		free(us);
	}
	return true;
}

static bool render_upgrade(const struct sw_json_val *r)
{
	static const char *const k[] = {"binary", "pid", "ports", "fds", "macs", "pause_us"};
	char *v[6];
	for (unsigned i = 0; i < 6; i++)
		v[i] = sanitize(cell(r, k[i], NULL));
	printf("upgraded to %s (pid %s): %s port(s), %s descriptors and %s MAC table entries handed over, forwarding "
	       "paused %s us\n", v[0], v[1], v[2], v[3], v[4], v[5]);
	for (unsigned i = 0; i < 6; i++)
		free(v[i]);
	return true;
}

static bool render_fdb(const struct sw_json_val *r)
{
	const struct sw_json_val *e = obj_array(r, "entries");
	if (!e)
		return false;
	static const char *const keys[] = {"mac", "port", "age_s"};
	static const char *const h[] = {"MAC", "PORT", "AGE_S"};
	static const bool right[] = {false, false, true};
	print_fields(e, 3, keys, h, right);
	return true;
}

static bool render_log_level(const struct sw_json_val *r)
{
	const struct sw_json_val *l = sw_json_get(r, "level");
	if (!l || l->type != SW_JSON_STR)
		return false;
	char *s = sanitize(xstrdup(l->str));
	puts(s);
	free(s);
	return true;
}

static bool render_help(const struct sw_json_val *r)
{
	const struct sw_json_val *c = obj_array(r, "commands");
	if (!c)
		return false;
	static const char *const keys[] = {"usage", "help"};
	static const char *const h[] = {"COMMAND", "DESCRIPTION"};
	static const bool right[] = {false, false};
	print_fields(c, 2, keys, h, right);
	return true;
}

static bool render_capture(const struct sw_json_val *r)
{
	char *port = cell(r, "port", ","), *dir = cell(r, "direction", ",");
	fprintf(stderr, "vhostctl: capturing %s on %s; Ctrl-C stops\n", dir, port);
	free(port);
	free(dir);
	return true;
}

/* ------------------------------------------------------------------ commands */

struct cmd_info {
	const char *name, *usage, *help;
	unsigned min_args, max_args;
	bool (*render)(const struct sw_json_val *result);
};

static const struct cmd_info cmd_table[] = {
	{"add-port", "add-port NAME TYPE [KEY=VALUE...]",
	 "create a port; TYPE is vhost-user, virtio-user, vhost-net, vdpa, tap, af_packet, af_xdp, vxlan or vduse:\n"
	 "  vhost-user  path=SOCK [client] [queues=N] [mrg=on|off] [tso=on|off] [borrow=on|off]\n"
	 "              [config=on|off] [iommu=on|off] [owner=USER|UID] [group=GROUP|GID] [mode=OCTAL]   a VM's NIC (we serve it)\n"
	 "              config: offer the config space to a front-end that reads it (default off: QEMU warns)\n"
	 "              iommu: offer VIRTIO_F_ACCESS_PLATFORM, for a guest behind a vIOMMU (default off)\n"
	 "              [iotlb_per_burst=on|off]: translate each buffer afresh (guests in lazy invalidation)\n"
	 "              owner, group, mode: of the socket we listen on (e.g. group=kvm mode=0660)\n"
	 "              [msg_timeout_ms=MS]: a front-end stalled in a message this long is dropped (default 2000)\n"
	 "  virtio-user path=SOCK [server] [queues=N] [packed] [mrg=on|off]       we drive a vhost-user device\n"
	 "              [iommu=on|off]: the device behind an IOMMU (ACCESS_PLATFORM, IOVAs; default off)\n"
	 "              [msg_timeout_ms=MS]: a device this late with a reply is dropped (default 2000)\n"
	 "  vhost-net   ifname=NAME [queues=N]   the kernel's vhost-net with the tap NAME (created if missing,\n"
	 "              brought up): the fast exception path to the host's stack; needs /dev/vhost-net\n"
	 "  vdpa        path=/dev/vhost-vdpa-N [queues=N] [packed] [mrg=on|off]   we drive a vDPA device (vhost-vdpa)\n"
	 "  tap         ifname=NAME [queues=N] [offloads=on|off] [addr=IP/PREFIX] [mac=MAC] a Linux tap (created if missing)\n"
	 "              addr: the host's address on it, set (and the tap brought up) when the port is added\n"
	 "  af_packet   ifname=NAME [frames=N] [offloads=on|off] [qdisc_bypass=on|off]   any Linux interface\n"
	 "  af_xdp      ifname=NAME [queue=N] [frames=N] [mode=auto|native|generic] [zerocopy=auto|on|off]\n"
	 "              one queue of an interface through AF_XDP (native XDP, else generic with a warning)\n"
	 "  vxlan       vni=N remote=IP[,IP...] [local=IP] [dstport=N] [src_ports=N] [gso=on|off]   VXLAN\n"
	 "              tunnel (RFC 7348) to remote VTEPs over IPv4 UDP (dstport default 4789); MTU default: the\n"
	 "              route's - 50; gso: equal datagrams to one remote in one UDP_SEGMENT send (default on)\n"
	 "  vduse       name=NAME [mac=MAC] [packed=on|off] [tso=on|off] [size=N] [state=DIR]   a virtio-net\n"
	 "              device for this host's kernel (VDUSE, attached to the vDPA bus; del-port destroys it);\n"
	 "              it outlives a vhostd that dies, and the next one resumes it from DIR/NAME.state\n"
	 "              (default /run/vhostd/vduse)\n"
	 "  every type: mtu=N (largest payload forwarded to the port; default 1500, or the interface's)\n"
	 "              max_macs=N (most source MACs learned on the port; default 1024, 0 no limit)",
	 2, UINT_MAX, render_empty},
	{"del-port", "del-port NAME", "remove a port", 1, 1, render_empty},
	{"show", "show", "ports, forwarding threads and bridge settings", 0, 0, render_show},
	{"stats", "stats [PORT]",
	 "packet, byte, drop and error counters of every port or one; without PORT also each forwarding thread's busy "
	 "cycles per packet and busy rounds (packets / busy rounds = mean burst)",
	 0, 1, render_stats},
	{"fdb", "fdb", "the learned MAC address table", 0, 0, render_fdb},
	{"log-level", "log-level [LEVEL]", "show or set the daemon's log level (error, warning, info, debug)", 0, 1,
	 render_log_level},
	{"capture", "capture PORT [--direction rx|tx|both] [--count N] -w FILE",
	 "write what PORT receives (rx) and/or sends (tx; default both) to FILE as pcapng with each frame's "
	 "direction, until N frames, Ctrl-C or the port's removal; frames cut to 2048 bytes; frames vhostd could "
	 "not keep for a slow reader are counted, never waited for",
	 3, 7, render_capture},
	{"upgrade", "upgrade PATH",
	 "hitless upgrade: vhostd starts the vhostd binary PATH with its own options and hands it every port\n"
	 "  (listening sockets, live vhost-user connections, guest memory, ring positions, tap queues,\n"
	 "  sockets), then exits; guests see no disconnect. If PATH fails (cannot start, refuses, times\n"
	 "  out) the running vhostd keeps forwarding and the command fails with the reason. Every port must be\n"
	 "  vhost-user, tap, af_packet or vxlan (default timeout 30000 ms)",
	 1, 1, render_upgrade},
	{"help", "help [COMMAND]", "the commands the daemon itself knows", 0, 1, render_help},
};

static const struct cmd_info *find_cmd(const char *name)
{
	for (size_t i = 0; i < sizeof(cmd_table) / sizeof(cmd_table[0]); i++)
		if (!strcmp(cmd_table[i].name, name))
			return &cmd_table[i];
	return NULL;
}

static void usage(FILE *f)
{
	fputs("usage: vhostctl [OPTIONS] COMMAND [ARGS...]\n"
	      "Send one command to vhostd's control socket and show the answer.\n\n"
	      "Options:\n"
	      "  -s, --socket PATH   control socket (default $VHOSTD_SOCKET, else " DEFAULT_SOCKET ")\n"
	      "  -j, --json          print the daemon's result as one line of JSON\n"
	      "  -t, --timeout MS    give up after MS milliseconds (default 5000)\n"
	      "  -h, --help          this text; 'vhostctl COMMAND --help' describes one command\n\n"
	      "Commands:\n",
	      f);
	for (size_t i = 0; i < sizeof(cmd_table) / sizeof(cmd_table[0]); i++)
		fprintf(f, "  %-36s %s\n", cmd_table[i].usage, cmd_table[i].help);
	fputs("Other command names are sent as given and their result printed as JSON.\n\n"
	      "Exit status: 0 done, 1 refused by the daemon, 2 usage error, 3 no answer from the daemon.\n",
	      f);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("vhostctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(vhostctl --help for usage)\n", stderr);
	return EXIT_USAGE;
}

/* ------------------------------------------------------------------ transport */

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int unreachable(const char *path, const char *what, int err)
{
	const char *hint = err == ENOENT || err == ECONNREFUSED ? " (is vhostd running?)" : "";
	fprintf(stderr, "vhostctl: %s %s: %s%s\n", what, path, strerror(err), hint);
	return EXIT_UNREACHABLE;
}

/*
 * Send req (with its newline) and read one response line into *resp (NUL-terminated, newline stripped).
 * Returns 0 or an exit status after saying what went wrong.
 */
static int exchange(const char *path, int timeout_ms, const char *req, size_t len, int pass_fd, char **resp,
		    size_t *resp_len)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return unreachable(path, "cannot connect to", ENAMETOOLONG);
	strcpy(sa.sun_path, path);
	long long deadline = vhdi_now_us() + timeout_ms * 1000LL;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return unreachable(path, "cannot connect to", errno);
	/* A unix connect does not go "in progress": EAGAIN means the daemon's backlog is full; try again. */
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		if (e != EAGAIN && e != EINTR) {
			close(fd);
			return unreachable(path, "cannot connect to", e);
		}
		if (vhdi_now_us() >= deadline) {
			close(fd);
			return unreachable(path, "cannot connect to", ETIMEDOUT);
		}
		nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
	}
	int rc = 0;
	for (size_t off = 0; off < len && !rc;) {
		/* pass_fd rides with the first byte of the request line (SCM_RIGHTS). */
		VHDI_FD_CTL(1) ctl;
		struct iovec iov = {.iov_base = (char *)req + off, .iov_len = len - off};
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
		if (pass_fd >= 0 && off == 0)
			vhdi_fds_attach(&m, ctl.buf, &pass_fd, 1);
		long r = vhdi_sendmsg_by(fd, &m, 0, deadline);
		if (r >= 0)
			off += (size_t)r;
		else
			rc = (int)r;
	}
	if (rc) {
		close(fd);
		return unreachable(path, "cannot send to", -rc);
	}
	char *buf = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (n == cap) {
			if (cap > MAX_RESPONSE) {
				free(buf);
				close(fd);
				fprintf(stderr, "vhostctl: %s: response longer than %u bytes\n", path, MAX_RESPONSE);
				return EXIT_UNREACHABLE;
			}
			cap = cap ? cap * 2 : 4096;
			buf = xrealloc(buf, cap + 1);
		}
		ssize_t r = recv(fd, buf + n, cap - n, 0);
		if (r > 0) {
			char *nl = memchr(buf + n, '\n', (size_t)r);
			n += (size_t)r;
			if (nl) {
				n = (size_t)(nl - buf);
				break;
			}
			continue;
		}
		rc = r == 0 ? -ECONNRESET : errno == EAGAIN ? vhdi_wait_fd(fd, POLLIN, deadline) : errno == EINTR ? 0 : -errno;
		if (rc) {
			free(buf);
			close(fd);
			if (rc == -ETIMEDOUT)
				fprintf(stderr, "vhostctl: %s: no answer within %d ms\n", path, timeout_ms);
			else if (rc == -ECONNRESET)
				fprintf(stderr, "vhostctl: %s: the daemon closed the connection without answering\n", path);
			else
				fprintf(stderr, "vhostctl: %s: %s\n", path, strerror(-rc));
			return EXIT_UNREACHABLE;
		}
	}
	close(fd);
	buf[n] = '\0';
	*resp = buf;
	*resp_len = n;
	return 0;
}

/*
 * Send command name with its arguments (and pass_fd, unless -1) and parse the answer into *out.
 * Returns 0 or an exit status after saying what went wrong.
 */
static int request(const char *path, int timeout_ms, const char *name, unsigned nargs, const char *const *args,
		   int pass_fd, struct sw_json_val **out)
{
	struct sw_json w;
	sw_json_init(&w);
	sw_json_obj_begin(&w, NULL);
	sw_json_str(&w, "cmd", name);
	sw_json_arr_begin(&w, "args");
	for (unsigned i = 0; i < nargs; i++)
		sw_json_str(&w, NULL, args[i]);
	sw_json_arr_end(&w);
	sw_json_obj_end(&w);
	const char *req = sw_json_finish(&w);
	if (!req) {
		fputs("vhostctl: out of memory\n", stderr);
		return EXIT_UNREACHABLE;
	}
	if (w.len > SW_JSON_MAX_LEN) {
		sw_json_free(&w);
		return usage_error("the request is longer than the daemon takes (%u bytes)", SW_JSON_MAX_LEN);
	}
	char *line = xrealloc(NULL, w.len + 2);
	memcpy(line, req, w.len);
	line[w.len] = '\n';
	size_t line_len = w.len + 1;
	sw_json_free(&w);

	char *resp = NULL;
	size_t resp_len = 0;
	int rc = exchange(path, timeout_ms, line, line_len, pass_fd, &resp, &resp_len);
	free(line);
	if (rc)
		return rc;
	struct sw_json_val *v;
	char err[256];
	*out = NULL;
	if (sw_json_parse_max(resp, resp_len, MAX_RESPONSE, &v, err, sizeof(err)) || v->type != SW_JSON_OBJ) {
		if (!err[0])
			snprintf(err, sizeof(err), "not a JSON object");
		fprintf(stderr, "vhostctl: %s: malformed answer: %s\n", path, err);
		free(resp);
		if (v)
			sw_json_val_free(v);
		return EXIT_UNREACHABLE;
	}
	free(resp);
	*out = v;
	return 0;
}

/* ------------------------------------------------------------------ main */

static int parse_timeout(const char *s, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > 24L * 3600 * 1000)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

/* Prints the answer; returns the exit status. */
static int show_answer(const struct cmd_info *info, const char *path, const struct sw_json_val *resp, bool json)
{
	const struct sw_json_val *ok = sw_json_get(resp, "ok");
	if (!ok || ok->type != SW_JSON_BOOL)
		goto malformed;
	if (!ok->b) {
		const struct sw_json_val *e = sw_json_get(resp, "error");
		if (!e || e->type != SW_JSON_STR)
			goto malformed;
		char *s = sanitize(xstrdup(e->str));
		fprintf(stderr, "vhostctl: %s\n", s);
		free(s);
		return EXIT_REFUSED;
	}
	const struct sw_json_val *result = sw_json_get(resp, "result");
	if (!result || result->type != SW_JSON_OBJ)
		goto malformed;
	if (json || !info || !info->render(result)) {
		char *s = to_json(result);
		puts(s);
		free(s);
	}
	return 0;
malformed:
	fprintf(stderr, "vhostctl: %s: malformed answer (no ok/result/error)\n", path);
	return EXIT_UNREACHABLE;
}

/* ------------------------------------------------------------------ capture */

#define CAP_BUF (1u << 20) /* past any block vhostd writes (an EPB is 2 KiB and a bit) */
#define PCAPNG_SHB 0x0A0D0D0Au
#define PCAPNG_ISB 5u
#define PCAPNG_EPB 6u

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	(void)sig;
	interrupted++;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t r = write(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* The isb_osdrop option (7) of an Interface Statistics Block, or UINT64_MAX. */
static uint64_t isb_drops(const uint8_t *b, uint32_t len)
{
	for (uint32_t off = 20; off + 4 <= len - 4;) {
		uint16_t code, olen;
		memcpy(&code, b + off, 2);
		memcpy(&olen, b + off + 2, 2);
		if (code == 0 || off + 4 + olen > len - 4)
			break;
		if (code == 7 && olen == 8) {
			uint64_t v;
			memcpy(&v, b + off + 4, 8);
			return v;
		}
		off += 4 + ((olen + 3u) & ~3u);
	}
	return UINT64_MAX;
}

/*
 * Whole blocks of buf[0..have) (checked: lengths, trailer, SHB first): returns the bytes they take, counts EPBs
 * into *frames and takes the drops from an ISB; *bad on a malformed block.
 */
static size_t whole_blocks(const uint8_t *buf, size_t have, bool first, uint64_t *frames, uint64_t *drops,
			   bool *bad)
{
	size_t off = 0;
	while (have - off >= 12) {
		uint32_t type, len, trail;
		memcpy(&type, buf + off, 4);
		memcpy(&len, buf + off + 4, 4);
		if (len < 12 || len % 4 || len > CAP_BUF || (first && off == 0 && type != PCAPNG_SHB)) {
			*bad = true;
			break;
		}
		if (have - off < len)
			break;
		memcpy(&trail, buf + off + len - 4, 4);
		if (trail != len) {
			*bad = true;
			break;
		}
		if (type == PCAPNG_EPB)
			(*frames)++;
		else if (type == PCAPNG_ISB)
			*drops = isb_drops(buf + off, len);
		off += len;
	}
	return off;
}

/*
 * vhostctl capture: a socket pair, one end passed to vhostd with the request; vhostd streams pcapng into it and
 * closes it when done; only whole blocks reach FILE, so it is valid pcapng wherever the stream stops. Ctrl-C
 * shuts our sending side down, which asks vhostd to end the capture (its last frames and the statistics
 * block follow); a second Ctrl-C, or 5 s without the end, stops at once.
 */
static int capture(const char *path, int timeout_ms, unsigned nargs, char **args)
{
	const char *port = NULL, *file = NULL, *dir = "both", *count = NULL;
	for (unsigned i = 0; i < nargs; i++) {
		const char *a = args[i];
		if (!strcmp(a, "-w") || !strcmp(a, "--direction") || !strcmp(a, "--count")) {
			if (i + 1 == nargs)
				return usage_error("capture: %s wants a value", a);
			const char *v = args[++i];
			if (a[1] == 'w')
				file = v;
			else if (a[2] == 'd')
				dir = v;
			else
				count = v;
		} else if (a[0] == '-') {
			return usage_error("capture: unknown option '%s'", a);
		} else if (port) {
			return usage_error("capture: one PORT only, not '%s' and '%s'", port, a);
		} else {
			port = a;
		}
	}
	if (!port || !file || !file[0])
		return usage_error("capture: usage: vhostctl %s", find_cmd("capture")->usage);
	if (strcmp(dir, "rx") && strcmp(dir, "tx") && strcmp(dir, "both"))
		return usage_error("capture: --direction wants rx, tx or both, not '%s'", dir);
	if (count) {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(count, &end, 10);
		if (errno || end == count || *end || count[0] < '0' || count[0] > '9' || n < 1 || n > UINT32_MAX)
			return usage_error("capture: --count wants 1..%u, not '%s'", UINT32_MAX, count);
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		fprintf(stderr, "vhostctl: capture: socketpair: %s\n", strerror(errno));
		return EXIT_UNREACHABLE;
	}
	int out = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
	if (out < 0) {
		fprintf(stderr, "vhostctl: capture: %s: %s\n", file, strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return EXIT_REFUSED;
	}
	/* Before the request: a Ctrl-C from the moment the capture may run ends it cleanly. No SA_RESTART: poll()
	 * returns EINTR. */
	struct sigaction sa = {.sa_handler = on_interrupt};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	const char *rargs[] = {port, dir, count};
	struct sw_json_val *v;
	int rc = request(path, timeout_ms, "capture", count ? 3 : 2, rargs, sv[1], &v);
	close(sv[1]); /* vhostd holds its end now: EOF on ours means it is done */
	if (!rc) {
		rc = show_answer(find_cmd("capture"), path, v, false);
		sw_json_val_free(v);
	}
	if (rc) {
		close(out);
		close(sv[0]);
		unlink(file); /* nothing was captured: no empty, invalid file left behind */
		return rc;
	}
	uint8_t *buf = xrealloc(NULL, CAP_BUF);
	size_t have = 0;
	uint64_t frames = 0, drops = UINT64_MAX;
	bool bad = false, shut = false, first = true;
	int werr = 0;
	long long deadline = 0;
	for (;;) {
		if (interrupted && !shut) {
			shutdown(sv[0], SHUT_WR);
			shut = true;
			deadline = now_ms() + 5000;
		}
		if (interrupted > 1 || (shut && now_ms() >= deadline))
			break;
		struct pollfd p = {.fd = sv[0], .events = POLLIN};
		int pr = poll(&p, 1, shut ? (int)(deadline - now_ms()) : -1);
		if (pr <= 0) {
			if (pr < 0 && errno != EINTR)
				break;
			continue;
		}
		ssize_t r = read(sv[0], buf + have, CAP_BUF - have);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0)
			break; /* EOF: vhostd ended the capture */
		have += (size_t)r;
		size_t n = whole_blocks(buf, have, first, &frames, &drops, &bad);
		if (n) {
			first = false;
			if ((werr = write_all(out, buf, n)) < 0)
				break;
			memmove(buf, buf + n, have - n);
			have -= n;
		}
		if (bad)
			break;
	}
	free(buf);
	close(sv[0]);
	if (close(out) < 0 && !werr)
		werr = -errno;
	if (werr) {
		fprintf(stderr, "vhostctl: capture: writing %s: %s\n", file, strerror(-werr));
		return EXIT_REFUSED;
	}
	if (bad) {
		fprintf(stderr, "vhostctl: capture: malformed pcapng from vhostd; %s has the %llu frames before it\n",
			file, (unsigned long long)frames);
		return EXIT_UNREACHABLE;
	}
	if (drops == UINT64_MAX)
		fprintf(stderr, "vhostctl: %llu frames to %s (stopped before vhostd's count of drops)\n",
			(unsigned long long)frames, file);
	else
		fprintf(stderr, "vhostctl: %llu frames to %s, %llu dropped (capture rings full)\n",
			(unsigned long long)frames, file, (unsigned long long)drops);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{"timeout", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = getenv("VHOSTD_SOCKET");
	bool json = false;
	int timeout_ms = -1, o;
	if (!path || !path[0])
		path = DEFAULT_SOCKET;
	opterr = 0;
	/* '+': options end at the command, whose own arguments may start with '-'. */
	while ((o = getopt_long(argc, argv, "+s:jt:h", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			path = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 't':
			if (parse_timeout(optarg, &timeout_ms))
				return usage_error("--timeout takes milliseconds, 1 to 86400000, not '%s'", optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			if (optopt)
				return usage_error("unknown option '-%c' or missing argument", optopt);
			return usage_error("unknown option '%s' or missing argument", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("no command given");
	const char *name = argv[optind];
	unsigned nargs = (unsigned)(argc - optind - 1);
	char **args = argv + optind + 1;
	const struct cmd_info *info = find_cmd(name);
	for (unsigned i = 0; i < nargs; i++) {
		if (strcmp(args[i], "--help"))
			continue;
		if (!info)
			return usage_error("vhostctl has no help for '%s'; 'vhostctl help' asks the daemon", name);
		printf("usage: vhostctl [OPTIONS] %s\n%s\n", info->usage, info->help);
		return 0;
	}
	if (info && (nargs < info->min_args || nargs > info->max_args))
		return usage_error("wrong number of arguments; usage: vhostctl %s", info->usage);
	if (!path[0])
		return usage_error("empty socket path");

	if (timeout_ms < 0) /* an upgrade waits for the new binary to start and take every port */
		timeout_ms = !strcmp(name, "upgrade") ? UPGRADE_TIMEOUT_MS : DEFAULT_TIMEOUT_MS;
	if (!strcmp(name, "capture"))
		return capture(path, timeout_ms, nargs, args);
	char abs[PATH_MAX];
	if (!strcmp(name, "upgrade") && nargs == 1) {
		/* vhostd's working directory is not ours: the binary goes by its absolute path. */
		if (!realpath(args[0], abs)) {
			fprintf(stderr, "vhostctl: upgrade: %s: %s\n", args[0], strerror(errno));
			return EXIT_REFUSED;
		}
		args[0] = abs;
	}
	struct sw_json_val *v;
	int rc = request(path, timeout_ms, name, nargs, (const char *const *)args, -1, &v);
	if (rc)
		return rc;
	rc = show_answer(info, path, v, json);
	sw_json_val_free(v);
	if (fflush(stdout) != 0) {
		fprintf(stderr, "vhostctl: writing the output: %s\n", strerror(errno));
		return rc ? rc : EXIT_REFUSED;
	}
	return rc;
}
