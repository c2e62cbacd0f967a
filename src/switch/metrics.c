/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switch/metrics.h"

/* A label value as the format wants it: backslash, double quote and newline escaped. */
static void label_value(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '"')
			fputs("\\\"", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* {port="NAME",type="TYPE"}, with queue="N" as well when queue >= 0. */
static void port_labels(FILE *f, const struct sw_port *p, int queue)
{
	fputs("{port=\"", f);
	label_value(f, p->name);
	fputs("\",type=\"", f);
	label_value(f, p->ops->type);
	if (queue >= 0)
		fprintf(f, "\",queue=\"%d", queue);
	fputs("\"}", f);
}

/* The port types' own counters (sw_port_ops.counters), gathered for all ports, then written family by family. */
struct extra {
	const char *name, *help;
	unsigned family, seq;
	const struct sw_port *port;
	int queue;
	uint64_t v;
};

struct extras {
	struct extra *e;
	size_t n, cap;
	const struct sw_port *port;
	const char *fam_name[64];
	bool fam_queue[64];
	unsigned nfam;
	bool failed;
};

static void extra_cb(void *arg, const char *name, const char *help, int queue, uint64_t v)
{
	struct extras *x = arg;
	unsigned fam = 0;
	while (fam < x->nfam && (strcmp(x->fam_name[fam], name) || x->fam_queue[fam] != (queue >= 0)))
		fam++;
	if (fam == x->nfam) {
		if (x->nfam == sizeof(x->fam_name) / sizeof(x->fam_name[0])) {
			x->failed = true;
			return;
		}
		x->fam_name[x->nfam] = name;
		x->fam_queue[x->nfam++] = queue >= 0;
	}
	if (x->n == x->cap) {
		size_t cap = x->cap ? 2 * x->cap : 256;
		struct extra *e = realloc(x->e, cap * sizeof(*e));
		if (!e) {
			x->failed = true;
			return;
		}
		x->e = e;
		x->cap = cap;
	}
	x->e[x->n] = (struct extra){name, help, fam, (unsigned)x->n, x->port, queue, v};
	x->n++;
}

static int extra_cmp(const void *a, const void *b)
{
	const struct extra *x = a, *y = b;
	if (x->family != y->family)
		return x->family < y->family ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* vhostd_port_NAME_total{port,type} for a port's own, vhostd_queue_NAME_total{port,type,queue} per queue. */
static int write_extras(FILE *f, struct sw_port *const *ports, unsigned n)
{
	struct extras x = {0};
	for (unsigned i = 0; i < n; i++) {
		x.port = ports[i];
		if (ports[i]->ops->counters)
			ports[i]->ops->counters(ports[i], extra_cb, &x);
	}
	if (x.failed) {
		free(x.e);
		return -ENOMEM;
	}
	if (x.n)
		qsort(x.e, x.n, sizeof(x.e[0]), extra_cmp);
	char name[96];
	for (size_t i = 0; i < x.n; i++) {
		const struct extra *e = &x.e[i];
		snprintf(name, sizeof(name), "vhostd_%s_%s_total", e->queue >= 0 ? "queue" : "port", e->name);
		if (i == 0 || e->family != x.e[i - 1].family)
			family(f, name, "counter", e->help);
		fputs(name, f);
		port_labels(f, e->port, e->queue);
		fprintf(f, " %llu\n", (unsigned long long)e->v);
	}
	free(x.e);
	return 0;
}

int sw_metrics_render(void *opaque, FILE *f)
{
	struct sw *sw = opaque;
	/* Samples of one metric must be together, so the ports' counters are read once, then written field by
	 * field. */
	static struct sw_counter c[SW_MAX_PORTS][SW_PORT_COUNTERS]; /* control thread only */
	struct sw_port *ports[SW_MAX_PORTS];
	unsigned n = 0;
	for (unsigned id = 0; id < SW_MAX_PORTS; id++) {
		struct sw_port *p = sw_port_at(sw, id);
		if (p) {
			sw_port_counters(sw, p, c[n]);
			ports[n++] = p;
		}
	}
	family(f, "vhostd_up", "gauge", "1 while vhostd answers");
	fputs("vhostd_up 1\n", f);
	family(f, "vhostd_port_link_up", "gauge", "1 while the port's link is up (its peer connected and ready)");
	for (unsigned i = 0; i < n; i++) {
		fputs("vhostd_port_link_up", f);
		port_labels(f, ports[i], -1);
		fprintf(f, " %d\n", ports[i]->ops->link_up(ports[i]) ? 1 : 0);
	}
	for (unsigned k = 0; n && k < SW_PORT_COUNTERS; k++) {
		char name[80];
		snprintf(name, sizeof(name), "vhostd_port_%s_total", c[0][k].name);
		family(f, name, "counter", c[0][k].help);
		for (unsigned i = 0; i < n; i++) {
			fputs(name, f);
			port_labels(f, ports[i], -1);
			fprintf(f, " %llu\n", (unsigned long long)c[i][k].value);
		}
	}
	if (write_extras(f, ports, n) < 0)
		return -ENOMEM;
	static const struct {
		const char *name, *help;
		size_t off;
	} tf[] = {
		{"vhostd_thread_busy_cycles_total", "cycles (TSC on x86, else ns) in rounds that moved packets",
		 offsetof(struct sw_thread_counters, busy_cycles)},
		{"vhostd_thread_packets_total", "packets the thread received and forwarded",
		 offsetof(struct sw_thread_counters, packets)},
		{"vhostd_thread_busy_rounds_total", "poll rounds that moved packets",
		 offsetof(struct sw_thread_counters, busy_rounds)},
		{"vhostd_thread_sleeps_total", "times the idle thread slept until its queues were notified",
		 offsetof(struct sw_thread_counters, sleeps)},
		{"vhostd_thread_sleep_timeouts_total", "such sleeps that ended by their 1 s bound, not a notification",
		 offsetof(struct sw_thread_counters, sleep_timeouts)},
	};
	unsigned nt = sw_thread_count(sw);
	struct sw_thread_counters tc[SW_MAX_THREADS];
	for (unsigned t = 0; t < nt; t++)
		sw_thread_counters(sw, t, &tc[t]);
	for (size_t k = 0; k < sizeof(tf) / sizeof(tf[0]); k++) {
		family(f, tf[k].name, "counter", tf[k].help);
		for (unsigned t = 0; t < nt; t++)
			fprintf(f, "%s{thread=\"%u\"} %llu\n", tf[k].name, t,
				(unsigned long long)*(const uint64_t *)((const char *)&tc[t] + tf[k].off));
	}
	unsigned entries;
	uint64_t full;
	sw_fdb_counters(sw, &entries, &full);
	family(f, "vhostd_fdb_entries", "gauge", "MAC addresses in the learning table");
	fprintf(f, "vhostd_fdb_entries %u\n", entries);
	family(f, "vhostd_fdb_full_total", "counter", "source MACs not learned because their table bucket was full");
	fprintf(f, "vhostd_fdb_full_total %llu\n", (unsigned long long)full);
	return ferror(f) ? -EIO : 0;
}
