/* SPDX-License-Identifier: MIT */
/*
 * The switch: a port table, N poll-mode forwarding threads and an L2 learning table.
 *
 * Each receive queue of each port belongs to one forwarding thread, which polls it, learns source MACs,
 * looks destinations up and transmits on the output ports' queues, with no lock, syscall or allocation per
 * packet (a transmit queue shared by more threads than the port has queues is locked per burst). The control
 * thread (the caller of everything in this header) adds and removes ports while traffic flows: it publishes a
 * new assignment of receive queues to threads, waits until every thread has passed a quiescent point (the top
 * of its poll loop) since, and only then frees what the old assignment referenced.
 */
#ifndef VHD_SWITCH_SWITCH_H
#define VHD_SWITCH_SWITCH_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/json.h"
#include "switch/capture.h"
#include "switch/port.h"

#define SW_MAX_PORTS 64


struct sw;

struct sw_config {
	unsigned threads;         /* forwarding threads, 1..SW_MAX_THREADS (default 1) */
	int cpu[SW_MAX_THREADS];  /* CPU to pin each thread to, -1 for none */
	unsigned aging_s;         /* MAC table aging (default 300; 0 never) */
	unsigned pool_bufs;       /* packet buffers per thread (default 2048) */
	uint32_t buf_size;        /* bytes per buffer (default: a 64 KiB GSO frame plus headroom) */
	unsigned idle_us;         /* after 1000 empty polls in a row, sleep this long per round (default 20;
				     0 spins, for dedicated cores) */
	bool poll;                /* never sleep until notified (adaptive idle off): short sleeps at most */
};

/* Fill c with the defaults above. */
void sw_config_default(struct sw_config *c);

/* Create the switch and start its threads. @return 0, -EINVAL for a bad config, -ENOMEM, -errno. */
int sw_create(const struct sw_config *c, struct sw **out);
/* Stop the threads, destroy every port (which removes vhost-user sockets), free everything. */
void sw_destroy(struct sw *sw);

/*
 * Add a port of type (sw_port_type()) with key=value arguments. Common keys handled here: mtu=N, max_macs=N (source
 * MACs the MAC table learns on the port at most; default SW_FDB_MAX_MACS_DEFAULT, 0: no limit).
 * @return 0; -EEXIST name taken; -EINVAL bad name/type/argument; -ENOSPC table full; the type's errors.
 *         err gets a one-line reason on failure.
 */
int sw_port_add(struct sw *sw, const char *name, const char *type, const struct sw_kv *args, unsigned nargs,
		char *err, size_t errlen);
/* Remove a port while traffic flows. @return 0 or -ENOENT. */
int sw_port_del(struct sw *sw, const char *name, char *err, size_t errlen);

/*
 * vhostctl upgrade. sw_handover_export pauses each port in turn (port types without handover ops refuse the
 * whole export: nothing is paused then) and hands fn its name, the add-port arguments after the name (spec,
 * "TYPE\0KEY=VALUE\0..."), its counters (totals, SW_PORT_TOTALS, carried on by the new process), its state (blob) and fds (still the port's). On any failure every port resumes.
 * sw_handover_resume lets the data path into every port again (a failed handover; or the new process, once
 * the old one has stopped). sw_port_import adds a port from what fn was given, taken over instead of set up
 * (imp's fds are taken in every case), its queues held until sw_handover_resume. 0 or -errno with err.
 */
#define SW_HANDOVER_MAX 65536
#define SW_HANDOVER_MAX_FDS 160
typedef int (*sw_handover_fn)(void *arg, const char *name, const char *spec, size_t spec_len, const uint64_t *totals,
			      const void *blob, size_t len, const int *fds, unsigned nfds);
int sw_handover_export(struct sw *sw, sw_handover_fn fn, void *arg, unsigned *nports, char *err, size_t errlen);
void sw_handover_resume(struct sw *sw);
struct sw_port_import;
int sw_port_import(struct sw *sw, const char *name, const char *spec, size_t spec_len, struct sw_port_import *imp,
		   char *err, size_t errlen);
/*
 * vhostctl upgrade: the MAC table goes with the ports, so that no flood follows an upgrade. sw_fdb_export
 * (ports paused: nothing learns) calls fn for each entry with its port's name and age in seconds, stopping at the
 * first negative return (returned). sw_fdb_import learns mac on the port named (imported already), as last seen
 * age_s seconds ago, so that it ages out when it would have in the old process: 0, -ENOENT (no such port),
 * -ENOSPC (its bucket full or its port at its limit).
 */
typedef int (*sw_fdb_fn)(void *arg, const uint8_t mac[6], const char *port, uint32_t age_s);
int sw_fdb_export(struct sw *sw, sw_fdb_fn fn, void *arg);
int sw_fdb_import(struct sw *sw, const uint8_t mac[6], const char *port, uint32_t age_s);

/*
 * Capture frames of port (dirs: SW_CAP_RX and/or SW_CAP_TX, capture.h) as pcapng into fd, a unix stream socket
 * whose peer (vhostctl) writes the file; count frames (0: until stopped). fd is the switch's from here on, even
 * on failure. Result members: port, direction, count, snaplen.
 * @return 0; -ENOENT no such port; -EBUSY already captured; -ENOSPC SW_MAX_CAPTURES run; capture.h's errors.
 */
int sw_capture_start(struct sw *sw, const char *port, unsigned dirs, uint64_t count, int fd, struct sw_json *w,
		     char *err, size_t errlen);
/* How often (ms) the control thread drains the rings while a capture runs. */
#define SW_CAPTURE_DRAIN_MS 10

/* Control plane: fds to poll, longest sleep, and the work to do after poll() returns (or times out). fds, n: what
 * sw_pollfds() filled, with poll()'s revents: when any fired, forwarding threads asleep until notified (adaptive
 * idle) are woken afterwards, since a port's messages may have started, stopped or re-plumbed their queues; a
 * mere timeout wakes nobody. fds NULL: wake them regardless. */
unsigned sw_pollfds(struct sw *sw, struct pollfd *fds, unsigned max);
int sw_timeout_ms(struct sw *sw);
void sw_dispatch(struct sw *sw, const struct pollfd *fds, unsigned n);

/* Reports, as JSON members of the currently open object (shapes in docs/switch.md). */
void sw_show(struct sw *sw, struct sw_json *w);
int sw_stats(struct sw *sw, const char *port, struct sw_json *w, char *err, size_t errlen);
void sw_fdb_show(struct sw *sw, struct sw_json *w);

/* The same counters as values, for other exporters (the metrics endpoint). Control thread only. */
#define SW_PORT_COUNTERS 9
struct sw_counter {
	const char *name; /* as in `vhostctl stats`: "rx_packets", ..., "queue_breaks" */
	const char *help; /* one line, for an exporter's description */
	uint64_t value;
};
/* The port in slot id (0..SW_MAX_PORTS-1), or NULL. Valid until the next sw_port_del(). */
struct sw_port *sw_port_at(struct sw *sw, unsigned id);
/* Every counter of p, each summed over the forwarding threads (relaxed loads), in `stats` order. */
void sw_port_counters(struct sw *sw, const struct sw_port *p, struct sw_counter out[SW_PORT_COUNTERS]);
struct sw_thread_counters {
	uint64_t busy_cycles, packets, busy_rounds;
	uint64_t sleeps, sleep_timeouts; /* adaptive idle: sleeps until notified, and those SLEEP_MAX_MS ended */
};
unsigned sw_thread_count(const struct sw *sw);
void sw_thread_counters(struct sw *sw, unsigned i, struct sw_thread_counters *out);
/* MAC table entries now, and learns refused since start because the table was full. */
void sw_fdb_counters(struct sw *sw, unsigned *entries, uint64_t *full);

#endif
