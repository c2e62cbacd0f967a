/* SPDX-License-Identifier: MIT */
/*
 * Switch ports: one ops table per port type (vhost-user, virtio-user, vhost-net, vdpa, tap, af_packet, af_xdp, vxlan), behind which the
 * forwarding threads move bursts of packets without knowing what is on the other side.
 *
 * Threading contract:
 *  - create, destroy, pollfds, timeout_ms, dispatch, describe and link_up run on the control thread only.
 *  - rx_burst(q) runs on the one forwarding thread that owns receive queue q of the port at that moment
 *    (ownership changes only across a quiescent period, see switch.h), so per-rx-queue state needs no lock.
 *  - tx_burst(q) may run on several forwarding threads for the same q when the port has fewer transmit queues
 *    than there are threads: the switch then serialises them with the port's per-queue tx lock before calling,
 *    so a port needs no lock of its own unless it remaps queues (vhost-user: a guest with fewer queue pairs).
 *  - No hot-path call may block, allocate (outside packet pools) or take a lock; syscalls only where the port
 *    type has no other way (tap read/write, one sendto per af_packet or af_xdp tx burst to kick the kernel,
 *    one recvmmsg / sendmmsg per vxlan burst and transmit socket).
 */
#ifndef VHD_SWITCH_PORT_H
#define VHD_SWITCH_PORT_H

#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vhostd/net.h"
#include "vhostd/pkt.h"

#define SW_MAX_THREADS 16
#define SW_MAX_QUEUES 16   /* queue pairs per port */
#define SW_PORT_NAME_MAX 32
#define SW_MAX_ARGS 16
#define SW_BURST 32        /* most packets one rx_burst / tx_burst call is asked for */

struct sw_port;
struct sw_json; /* src/util/json.h: the writer port descriptions go to */

/* One key=value argument from the command line, a config file or the control socket ("client" alone has
 * value ""). */
struct sw_kv {
	const char *key;
	const char *value;
};

/* A device queue's data-path configuration (vhost-user and vduse ports), rebuilt when the negotiated features
 * change: the data path notices at its next burst instead of the control thread reaching into the queue. */
struct sw_net_qcfg {
	uint64_t features; /* what cfg was derived from */
	bool ok;
	struct vhd_net_cfg cfg;
};

/* The configuration for features f, or NULL when they are unusable (each burst that meets them adds 1 to *bad).
 * Called only by the thread that owns the queue's burst. */
static inline const struct vhd_net_cfg *sw_net_qcfg(struct sw_net_qcfg *q, uint64_t f, _Atomic uint64_t *bad)
{
	if (__builtin_expect(f != q->features || !q->ok, 0)) {
		q->features = f;
		q->ok = vhd_net_cfg_init(&q->cfg, f) == 0;
		if (!q->ok)
			atomic_fetch_add_explicit(bad, 1, memory_order_relaxed);
	}
	return q->ok ? &q->cfg : NULL;
}

/* Per-thread counters of one port: each forwarding thread writes only its own slot (relaxed atomics, own
 * cache line), readers sum the slots, so reading never stalls forwarding. */
/* A port's counters summed over the threads, in this order (sw_port_totals()): rx_packets, rx_bytes, tx_packets,
 * tx_bytes, rx_drops, tx_drops, errors, learn_refused. */
#define SW_PORT_TOTALS 8

struct sw_port_stats {
	_Alignas(64) _Atomic uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
	_Atomic uint64_t rx_drops; /* received then dropped by the switch: runt, hairpin, no output took it */
	_Atomic uint64_t tx_drops; /* meant for this port but not taken: its queue was full, over its MTU */
	_Atomic uint64_t errors;   /* malformed or refused frames, port errors */
	_Atomic uint64_t learn_refused; /* source addresses not learned: the port owns its max_macs already */
};

/*
 * Offload metadata (struct vhd_net_meta) one direction of a port carries, like the rx_/tx_ fields of struct
 * vhd_net_cfg. DATA_VALID is advisory and never listed: any port may set it, any port may ignore it.
 */
struct sw_offloads {
	bool csum;   /* VHD_NET_META_F_NEEDS_CSUM (partial checksum, csum_start/csum_offset) */
	bool ecn;    /* VHD_NET_META_GSO_ECN on GSO frames */
	uint8_t gso; /* bit (1 << gso_type) for each VHD_NET_META_GSO_* type */
};

/*
 * One 64-bit counter inside a struct of counters: its name and help (as `vhostctl stats/show` and the metrics
 * endpoint spell them) and where it lives. The three counter sets (the switch's per-port, per-thread slots; a
 * vhost-user port's per-queue and per-device counters) are tables of these, so a name is written once and every
 * reader sums the same way.
 */
struct sw_field {
	const char *name, *help;
	size_t off;
};

/*
 * Field f summed over n structs starting at base, stride bytes apart (n = 1: one struct). Relaxed loads: the
 * writers (forwarding threads, relaxed stores) never wait, and each value is exact as of some moment; a sum of
 * them is a report, not a snapshot.
 */
static inline uint64_t sw_field_sum(const struct sw_field *f, const void *base, size_t stride, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v += __atomic_load_n((const uint64_t *)((const char *)base + (size_t)i * stride + f->off),
				     __ATOMIC_RELAXED);
	return v;
}

struct sw_port_ops {
	const char *type; /* "vhost-user", "virtio-user", "vhost-net", "tap", "af_packet", "af_xdp", "vxlan", "vduse" */
	/*
	 * Set up p (p->name, p->id, p->mtu already filled in; set p->n_rxq, p->n_txq, p->priv). args are the
	 * type's key=value options; unknown keys are an error. On failure write a one-line reason naming the
	 * argument or resource at fault into err and return -errno; destroy is not called then.
	 */
	int (*create)(struct sw_port *p, const struct sw_kv *args, unsigned nargs, char *err, size_t errlen);
	/* Release everything (fds, mappings, pools, packets held). Called with no forwarding thread using p. */
	void (*destroy)(struct sw_port *p);
	/* Control-plane fds to poll (may be none) and the longest the control thread may sleep (-1: forever). */
	unsigned (*pollfds)(struct sw_port *p, struct pollfd *fds, unsigned max);
	int (*timeout_ms)(struct sw_port *p);
	/* Handle whatever is ready on those fds (vhost-user messages, reconnect timers). */
	void (*dispatch)(struct sw_port *p);
	/* Carrier: the peer is there and the port can move packets. */
	bool (*link_up)(struct sw_port *p);
	/* Type-specific fields for `show` (path, ifname, negotiated features, ring layout...), as JSON members. */
	void (*describe)(struct sw_port *p, struct sw_json *w);
	/* Optional, control thread: the type's own counters for exporters (the metrics endpoint). fn is called once
	 * per value: name (snake_case, without _total), a one-line help, queue (a queue index, -1 for the whole
	 * port) and the value, read with relaxed loads. One name always comes with the same help. */
	void (*counters)(struct sw_port *p,
			 void (*fn)(void *arg, const char *name, const char *help, int queue, uint64_t v), void *arg);
	/*
	 * Receive up to n frames from receive queue q into packets from pool (the calling thread's pool).
	 * Returns the count; the caller owns pkts[0..ret).
	 */
	unsigned (*rx_burst)(struct sw_port *p, unsigned q, struct vhd_pktpool *pool, struct vhd_pkt **pkts,
			     unsigned n);
	/*
	 * Optional. Packets from rx_burst may be views (VHD_PKT_F_VIEW) of frames the port still holds: the
	 * forwarding thread calls rx_done(q) once it has forwarded a burst that returned packets, when every
	 * tx_burst it made is over and no view is referenced any more; the port then lets go of those frames.
	 */
	void (*rx_done)(struct sw_port *p, unsigned q);
	/*
	 * Optional, adaptive idle (docs/switch.md, "Idle"): the forwarding thread that owns receive queue q found
	 * nothing for a while and wants to sleep until the peer has something. rx_arm asks the peer to notify q
	 * again (a guest's kicks, a driver's interrupts) and fills *pfd with what becomes readable when it does
	 * (fd -1: nothing to wait on now, e.g. the queue is not set up; the control thread wakes the thread when
	 * that changes). @return 0 armed; 1 work arrived meanwhile (do not sleep; rx_disarm is not called); -1 the
	 * queue cannot notify (the peer expects to be polled): the thread keeps polling.
	 * rx_disarm: the thread woke up (revents: what poll() said of *pfd): back to polling, and drain what the
	 * wake-up left readable (an eventfd's counter). Never block; same thread rules as rx_burst.
	 */
	int (*rx_arm)(struct sw_port *p, unsigned q, struct pollfd *pfd);
	void (*rx_disarm)(struct sw_port *p, unsigned q, short revents);
	/*
	 * Transmit pkts[0..n) on transmit queue q. Returns how many the port took: those are its own now (it frees
	 * them); pkts[ret..n) stay with the caller, who drops them. A port is done with every frame it took when
	 * it returns (copied into its ring, written to the kernel, or dropped): views are valid only until then.
	 * Views are never written into (they carry no offload request that would make a port complete a
	 * checksum or segment them).
	 */
	unsigned (*tx_burst)(struct sw_port *p, unsigned q, struct vhd_pkt **pkts, unsigned n);
	/*
	 * vhostctl upgrade (both NULL: the type cannot be handed over). handover_export pauses the port's queues at
	 * a burst boundary and writes its state into buf (cap bytes) and fds (SW_HANDOVER_MAX_FDS, still the
	 * port's); handover_resume lets the data path in again, after a failed handover in the old process, or
	 * after create took the port over (p->import) in the new one. Control thread.
	 */
	int (*handover_export)(struct sw_port *p, void *buf, size_t cap, size_t *len, int *fds, unsigned *nfds,
			       char *err, size_t errlen);
	void (*handover_resume)(struct sw_port *p);
};

/* What create takes a port over from (vhostctl upgrade), instead of setting it up anew: another process's
 * handover_export. create sets taken once the fds are its own (or closed). */
struct sw_port_import {
	const void *blob;
	size_t len;
	int *fds;
	unsigned nfds;
	bool taken;
	uint64_t totals[SW_PORT_TOTALS]; /* the old process's counters, carried on (sw_port_totals()) */
};

struct sw_capture;

struct sw_port {
	const struct sw_port_ops *ops;
	/* The capture running on the port, or NULL (switch.c, capture.h): beside ops, on the line every burst
	 * reads anyway, so that no capture costs one load and one predictable branch per burst. */
	_Atomic(struct sw_capture *) cap;
	char name[SW_PORT_NAME_MAX];
	uint16_t id;       /* index in the switch's port table */
	uint32_t mtu;      /* largest frame payload (without Ethernet header) the port takes; GSO frames exempt */
	unsigned n_rxq, n_txq;
	void *priv;        /* the type's state */
	/* The add-port arguments after the name, "TYPE\0KEY=VALUE\0...", handed to a new vhostd on upgrade. */
	char *spec;
	size_t spec_len;
	struct sw_port_import *import; /* during create only: take the port over from this (else NULL) */
	/*
	 * Set by create (all zero: plain frames only). rx_off: what frames from rx_burst may carry; tx_off: what
	 * tx_burst takes as is. The switch completes the checksum of, or drops (GSO), a frame bound for a port whose
	 * tx_off lacks what the frame carries.
	 */
	struct sw_offloads rx_off, tx_off;
	struct sw_port_stats stats[SW_MAX_THREADS];
	/* Rings the peer broke (a queue stops at its first violation until the peer sets it up again): rare, so
	 * one shared counter the port's own burst functions add to. */
	_Atomic uint64_t queue_breaks;
	bool learn_limit_logged; /* control thread only: the first refused learn was logged */
	/* Taken around tx_burst(q) only when more threads than transmit queues share q (see switch.c). */
	_Alignas(64) _Atomic int tx_lock[SW_MAX_QUEUES];
};

/* The port types; sw_port_type() finds one by name. */
extern const struct sw_port_ops sw_vhost_user_ops, sw_virtio_user_ops, sw_tap_ops, sw_af_packet_ops, sw_af_xdp_ops,
	sw_vxlan_ops, sw_vduse_ops, sw_vhost_net_ops, sw_vdpa_ops;
const struct sw_port_ops *sw_port_type(const char *name);

/* Helpers for create(): the value of key, or def when absent; and a strict unsigned parse. */
const char *sw_kv_get(const struct sw_kv *args, unsigned nargs, const char *key, const char *def);
int sw_kv_uint(const struct sw_kv *args, unsigned nargs, const char *key, unsigned def, unsigned min, unsigned max,
	       unsigned *out, char *err, size_t errlen);
/* A required key's value, non-empty and shorter than size, copied into buf; what says what it names, for the
 * message. @return 0 or -EINVAL naming the argument. */
int sw_kv_required(const struct sw_kv *args, unsigned nargs, const char *key, const char *what, char *buf,
		   size_t size, char *err, size_t errlen);
/* An interface's MAC (unicast, not all zero) as six hex bytes: mac= of type. @return 0 or -EINVAL naming it. */
int sw_parse_mac(const char *type, const char *v, uint8_t mac[6], char *err, size_t errlen);
/* key=on|off (def when absent). @return 0 or -EINVAL with err naming the argument. */
int sw_kv_on_off(const struct sw_kv *args, unsigned nargs, const char *key, bool def, bool *out, char *err,
		 size_t errlen);
/* Every key is one of known (NULL-terminated) and none is given twice. @return 0 or -EINVAL naming it. */
int sw_kv_check(const struct sw_kv *args, unsigned nargs, const char *const *known, const char *type, char *err,
		size_t errlen);

/*
 * The start of a takeover (vhostctl upgrade): imp's blob, which must be exactly size bytes beginning with the
 * type's uint64_t magic and uint32_t version (offsets 0 and 8), copied into out. type names the port type in err.
 * @return 0, -EPROTO (another size) or -EPROTONOSUPPORT (another magic or version), with err saying which.
 */
int sw_import_blob(const struct sw_port_import *imp, const char *type, uint64_t magic, uint32_t version, void *out,
		   size_t size, char *err, size_t errlen);

/* rx_arm/rx_disarm of ports whose receive side is a file descriptor the kernel makes readable (tap, af_packet,
 * af_xdp, vxlan): they need not ask anybody to notify them. sw_fd_arm fills pfd with fd, POLLIN. */
int sw_fd_arm(int fd, struct pollfd *pfd);
void sw_fd_disarm(struct sw_port *p, unsigned q, short revents);
/* Empty the counter of eventfd fd (a kick or call fd a thread slept on) if it is readable. The fd may be a peer's,
 * in blocking mode: it is read only after poll() says it is readable, and nothing else reads it. */
void sw_eventfd_drain(int fd);

/*
 * vhostctl upgrade's pause for ports whose data path is their own (tap, af_packet): bursts enter queue q only
 * while the gate is open, marking rx[q] or tx[q] busy meanwhile (one writer at a time: the queue's owner, a
 * transmit queue under the switch's tx_lock). sw_gate_close (control thread) closes it and waits for the
 * bursts in progress to end (a burst is bounded); sw_gate_open lets them in again, publishing what the
 * control thread set before. The port's struct holds the gate (it is aligned to cache lines).
 */
struct sw_gate {
	_Alignas(64) atomic_int open;
	struct {
		_Alignas(64) atomic_int busy;
	} rx[SW_MAX_QUEUES], tx[SW_MAX_QUEUES];
};

/* Enter a burst on busy (&g->rx[q].busy or &g->tx[q].busy); false while the gate is closed. */
static inline bool sw_gate_enter(struct sw_gate *g, atomic_int *busy)
{
	/* seq_cst store then load: pairs with sw_gate_close()'s store of open then loads of busy, so either the
	 * burst sees the gate closed or the close sees busy == 1 and waits. Not acquire/release: each side's load
	 * could then pass its own store and both miss the other (docs/performance.md, "The upgrade gate's cost"). */
	atomic_store(busy, 1);
	if (__builtin_expect(!atomic_load(&g->open), 0)) {
		atomic_store_explicit(busy, 0, memory_order_relaxed); /* nothing was touched */
		return false;
	}
	return true;
}

static inline void sw_gate_leave(atomic_int *busy)
{
	/* Release: the burst's work is over before sw_gate_close() sees busy == 0. */
	atomic_store_explicit(busy, 0, memory_order_release);
}

void sw_gate_close(struct sw_gate *g, unsigned queues);
void sw_gate_open(struct sw_gate *g);

/* Ports with no control-plane fds of their own (af_packet, af_xdp): pollfds, timeout_ms and dispatch. */
unsigned sw_no_pollfds(struct sw_port *p, struct pollfd *fds, unsigned max);
int sw_no_timeout_ms(struct sw_port *p);
void sw_no_dispatch(struct sw_port *p);

/*
 * Existing host interfaces (af_packet, af_xdp), through any socket fd that takes interface ioctls, and by
 * index, since an interface may be renamed under a port. sw_iface_ioctl: req on the interface now called by
 * that index (ifr filled in with its name first); 0 or -errno. sw_iface_ethernet: ifname's index and MTU, or
 * -errno with err naming it (no such interface, not Ethernet). sw_iface_up: UP and RUNNING (carrier), and
 * refreshes *mtu (relaxed store: forwarding threads read it).
 */
struct ifreq;
int sw_iface_ioctl(int fd, int ifindex, unsigned long req, struct ifreq *ifr);
int sw_iface_ethernet(int fd, const char *ifname, int *ifindex, unsigned *mtu, char *err, size_t errlen);
bool sw_iface_up(int fd, int ifindex, _Atomic uint32_t *mtu);

#endif
