/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "switch/capture.h"
#include "switch/fdb.h"
#include "switch/gso.h"
#include "switch/switch.h"
#include "util/compiler.h"
#include "vhostd/net.h"
#include "vhostd/log.h"

#define IDLE_ROUNDS 1000
/* Adaptive idle: after IDLE_ROUNDS empty polls the thread sleeps idle_us per round; after SLEEP_ROUNDS such
 * rounds (about 2 ms of nothing) it arms its queues and sleeps in poll() until one has work or the
 * control thread wakes it, SLEEP_MAX_MS at most (a bound on what a lost notification could cost). */
#define SLEEP_ROUNDS 50
#define SLEEP_MAX_MS 1000
/* The forwarding threads' timer slack. The default, 50 us, stretched every --idle-us sleep of 20 us to about 70:
 * a frame arriving at the start of one waited that long (the low-rate latency's median and p99 with --poll, and
 * with the adaptive idle in its short-sleep phase). 1 us keeps a sleep what was asked; the sleep until notified
 * has no timer to be late. */
#define SLEEP_SLACK_NS 1000

_Static_assert(SW_MAX_PORTS <= SW_FDB_PORTS, "every port id has its learn limit in the MAC table");

/* The receive queues one thread polls: replaced as a whole, never edited in place. pfd: room for the fds the
 * thread sleeps on, one per queue after its wake eventfd (allocated with the list: n + 1 entries). */
struct rxq_list {
	unsigned n;
	struct pollfd *pfd;
	struct {
		struct sw_port *port;
		unsigned q;
	} e[];
};

/* Packets on their way to one output port, flushed when full or at the end of an input burst. */
struct out_batch {
	unsigned n;
	bool listed; /* in touched[] */
	struct vhd_pkt *p[SW_BURST];
};

struct sw_thread {
	struct sw *sw;
	unsigned idx;
	pthread_t tid;
	bool started;
	_Atomic(struct rxq_list *) rxqs;
	struct vhd_pktpool *pool;
	/* The last sw->epoch this thread has seen at the top of a round (release), read by the control thread
	 * (acquire) in synchronize(); UINT64_MAX once the thread has exited. */
	_Alignas(64) _Atomic uint64_t qs;
	/* Cycles spent in rounds that moved packets, and those packets (single writer: this thread): what the
	 * forwarding costs per packet, whatever the offered load, as OVS's pmd-stats-show "processing cycles per
	 * packet" and testpmd's --record-core-cycles report it. On their own line: the control thread reads them. */
	_Alignas(64) _Atomic uint64_t busy_cycles;
	_Atomic uint64_t busy_packets;
	/* Rounds that moved packets: packets per round says whether per-burst costs (index lines, fences,
	 * notifications) or per-packet ones dominate, i.e. whether this thread was fed faster than it polls. */
	_Atomic uint64_t busy_rounds;
	/* Adaptive idle: sleeps in poll(), and those that ended by SLEEP_MAX_MS rather than a wake-up. */
	_Atomic uint64_t sleeps, sleep_timeouts;
	/* 1 while the thread is (about to be) asleep in poll(); wake_fd is what the control thread writes then.
	 * See thread_sleep() for the pairing. */
	_Alignas(64) atomic_int sleeping;
	int wake_fd;
	_Alignas(64) struct out_batch out[SW_MAX_PORTS];
	uint16_t touched[SW_MAX_PORTS];
	unsigned ntouched;
};

struct sw {
	struct sw_config cfg;
	_Atomic(struct sw_port *) ports[SW_MAX_PORTS];
	/* One past the highest slot of ports[] ever used: flooding scans only that far (slots are taken lowest
	 * first), not all SW_MAX_PORTS for every frame to an unknown address. Only grows. */
	_Atomic unsigned ports_hi;
	struct sw_fdb fdb;
	_Atomic uint32_t now_s; /* coarse clock for the MAC table, ticked by the control thread */
	_Atomic bool stop;
	/* Bumped by synchronize() after each change the threads must stop using the old state of; read by every
	 * thread once per round, beside stop, which it reads as often and which is written as rarely. */
	_Atomic uint64_t epoch;
	/* Bumped (seq_cst) by the control thread after anything a sleeping thread must not sleep through: a new
	 * epoch, a stop, a round of port dispatch (queues started or stopped, kick fds replaced, IOTLB answers). */
	_Atomic uint64_t wake_gen;
	uint32_t last_age;
	/* Captures, control thread only: port is NULL once the capture no longer hangs on it (count reached,
	 * reader gone, port deleted) and it only has its last blocks to send. */
	struct {
		struct sw_capture *cap;
		struct sw_port *port;
	} caps[SW_MAX_CAPTURES];
	struct sw_thread th[SW_MAX_THREADS];
};

static uint32_t mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint32_t)ts.tv_sec;
}

/* Single-writer counters: each thread owns its slot, so load + store is enough and never a locked add. */
static inline void stat_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v, memory_order_relaxed);
}

void sw_config_default(struct sw_config *c)
{
	memset(c, 0, sizeof(*c));
	c->threads = 1;
	for (unsigned i = 0; i < SW_MAX_THREADS; i++)
		c->cpu[i] = -1;
	c->aging_s = 300;
	c->pool_bufs = 2048;
	c->buf_size = VHD_PKT_HEADROOM + 65536 + 512;
	c->idle_us = 20;
}

/* ------------------------------------------------------------------ forwarding */

static void flush_port(struct sw_thread *t, uint16_t id)
{
	struct out_batch *b = &t->out[id];
	unsigned n = b->n;
	b->n = 0;
	if (!n)
		return;
	struct sw_port *p = atomic_load_explicit(&t->sw->ports[id], memory_order_acquire);
	unsigned sent = 0;
	uint32_t len[SW_BURST];
	for (unsigned i = 0; i < n; i++) /* tx_burst may free what it takes: lengths first */
		len[i] = b->p[i]->len;
	if (p) {
		unsigned q = t->idx % p->n_txq;
		bool shared = t->sw->cfg.threads > p->n_txq;
		/* Pairs with the release store in sw_capture_start(): the capture's rings are set up. */
		struct sw_capture *cap = atomic_load_explicit(&p->cap, memory_order_acquire);
		unsigned staged = 0;
		if (unlikely(cap != NULL)) { /* copied before: the port may free what it takes */
			if (sw_capture_wants(cap, SW_CAP_TX))
				staged = sw_capture_tx_stage(cap, t->idx, b->p, n);
			else
				cap = NULL;
		}
		if (shared)
			while (atomic_exchange_explicit(&p->tx_lock[q], 1, memory_order_acquire)) /* pairs: release below */
				sched_yield();
		sent = p->ops->tx_burst(p, q, b->p, n);
		if (shared)
			atomic_store_explicit(&p->tx_lock[q], 0, memory_order_release);
		if (unlikely(cap != NULL))
			sw_capture_tx_commit(cap, t->idx, staged, sent);
		struct sw_port_stats *s = &p->stats[t->idx];
		uint64_t bytes = 0;
		for (unsigned i = 0; i < sent; i++)
			bytes += len[i];
		stat_add(&s->tx_packets, sent);
		stat_add(&s->tx_bytes, bytes);
		stat_add(&s->tx_drops, n - sent);
	}
	vhd_pkt_free_bulk(b->p + sent, n - sent);
}

static void enqueue_out(struct sw_thread *t, uint16_t id, struct vhd_pkt *pkt)
{
	struct out_batch *b = &t->out[id];
	if (!b->listed) {
		b->listed = true;
		t->touched[t->ntouched++] = id;
	}
	b->p[b->n++] = pkt;
	if (b->n == SW_BURST)
		flush_port(t, id);
}

/* Frames over the output's MTU are dropped there (GSO frames are segmented later, so their size is not). */
static bool fits(const struct sw_port *p, const struct vhd_pkt *pkt)
{
	if (pkt->meta.gso_type != VHD_NET_META_GSO_NONE)
		return true;
	uint32_t l2 = 14;
	const uint8_t *d = vhd_pkt_data(pkt);
	if (pkt->len >= 18 && d[12] == 0x81 && d[13] == 0x00)
		l2 = 18;
	return pkt->len <= p->mtu + l2;
}

/*
 * What the frame carries that the output cannot take as is: a partial checksum is completed here (the range was
 * checked when the frame came in, and again below), a GSO frame the output cannot segment is dropped (software
 * segmentation is not done here).
 */
static bool offloads_fit(const struct sw_port *out, struct vhd_pkt *pkt)
{
	const struct vhd_net_meta *m = &pkt->meta;
	if (m->gso_type != VHD_NET_META_GSO_NONE) {
		uint8_t type = m->gso_type & (uint8_t)~VHD_NET_META_GSO_ECN;
		if (type > 7 || !(out->tx_off.gso & (1u << type)) ||
		    ((m->gso_type & VHD_NET_META_GSO_ECN) && !out->tx_off.ecn))
			return false;
	}
	if ((m->flags & VHD_NET_META_F_NEEDS_CSUM) && !out->tx_off.csum) {
		if (vhd_net_csum_complete(pkt) != 0)
			return false;
	}
	return true;
}

static void to_port(struct sw_thread *t, struct sw_port *out, struct vhd_pkt *pkt);

/* A TCP GSO frame for a port that cannot segment: cut here, each segment sent on its own. */
static bool segment_to(struct sw_thread *t, struct sw_port *out, struct vhd_pkt *pkt)
{
	uint8_t type = pkt->meta.gso_type & (uint8_t)~VHD_NET_META_GSO_ECN;
	if (type == VHD_NET_META_GSO_NONE || (out->tx_off.gso & (1u << (type & 7))))
		return false;
	struct vhd_pkt *seg[64];
	unsigned n = sw_gso_segment(pkt, t->pool, seg, 64);
	if (!n)
		return false;
	vhd_pkt_free(pkt);
	for (unsigned i = 0; i < n; i++)
		to_port(t, out, seg[i]);
	return true;
}

static void to_port(struct sw_thread *t, struct sw_port *out, struct vhd_pkt *pkt)
{
	if (segment_to(t, out, pkt))
		return;
	if (!fits(out, pkt) || !offloads_fit(out, pkt)) {
		stat_add(&out->stats[t->idx].tx_drops, 1);
		vhd_pkt_free(pkt);
		return;
	}
	enqueue_out(t, out->id, pkt);
}

/* to_port() for the frames that need none of its checks, inlined into forward(): no GSO, no partial checksum,
 * within the MTU even untagged. */
static inline void send_to(struct sw_thread *t, struct sw_port *out, struct vhd_pkt *pkt)
{
	const struct vhd_net_meta *m = &pkt->meta;
	if (likely(m->gso_type == VHD_NET_META_GSO_NONE && !(m->flags & VHD_NET_META_F_NEEDS_CSUM) &&
		   pkt->len <= out->mtu + 14u))
		enqueue_out(t, out->id, pkt);
	else
		to_port(t, out, pkt);
}

static struct vhd_pkt *clone_pkt(struct sw_thread *t, const struct vhd_pkt *src)
{
	struct vhd_pkt *c;
	if (vhd_pkt_alloc_bulk(t->pool, &c, 1) != 1)
		return NULL;
	if (src->len > c->cap - c->off) {
		vhd_pkt_free(c);
		return NULL;
	}
	memcpy(vhd_pkt_data(c), vhd_pkt_data(src), src->len);
	c->len = src->len;
	c->meta = src->meta;
	return c;
}

/* The next port after slot *id (below hi) other than in, or NULL; *id moves past it. */
static struct sw_port *next_other_port(struct sw *sw, const struct sw_port *in, unsigned hi, unsigned *id)
{
	while (*id < hi) {
		struct sw_port *p = atomic_load_explicit(&sw->ports[(*id)++], memory_order_acquire);
		if (p && p != in)
			return p;
	}
	return NULL;
}

static void flood(struct sw_thread *t, struct sw_port *in, struct vhd_pkt *pkt)
{
	struct sw *sw = t->sw;
	unsigned hi = atomic_load_explicit(&sw->ports_hi, memory_order_relaxed), id = 0;
	struct sw_port *last = next_other_port(sw, in, hi, &id);
	if (!last) {
		stat_add(&in->stats[t->idx].rx_drops, 1);
		vhd_pkt_free(pkt);
		return;
	}
	/* Copies for all but the last port, which takes the frame itself. */
	for (struct sw_port *p; (p = next_other_port(sw, in, hi, &id)); last = p) {
		struct vhd_pkt *c = clone_pkt(t, pkt);
		if (c)
			to_port(t, last, c);
		else
			stat_add(&last->stats[t->idx].tx_drops, 1);
	}
	to_port(t, last, pkt);
}

/* The only port other than in, or NULL when there are none or several (a flood then goes through flood()). */
static struct sw_port *sole_other_port(struct sw *sw, const struct sw_port *in)
{
	unsigned hi = atomic_load_explicit(&sw->ports_hi, memory_order_relaxed), id = 0;
	struct sw_port *only = next_other_port(sw, in, hi, &id);
	return only && !next_other_port(sw, in, hi, &id) ? only : NULL;
}

/* Two loads combined in registers: copying 6 bytes into a zeroed 8-byte variable made the compiler store 4 + 2
 * bytes and load 8, a store-forwarding stall per address (a third of forward()'s time in perf). */
static inline uint64_t mac_key(const uint8_t *m)
{
	uint32_t lo;
	uint16_t hi;
	memcpy(&lo, m, 4);
	memcpy(&hi, m + 4, 2);
	return lo | (uint64_t)hi << 32;
}

static void forward(struct sw_thread *t, struct sw_port *in, struct vhd_pkt **pkts, unsigned n)
{
	struct sw *sw = t->sw;
	struct sw_port_stats *is = &in->stats[t->idx];
	uint32_t now = atomic_load_explicit(&sw->now_s, memory_order_relaxed);
	uint64_t bytes = 0;
	/* The frames of a burst mostly share their addresses (one guest, a few peers): the MAC learnt last and
	 * the destination looked up last are remembered for the rest of the burst, so the table is read once per
	 * change of address rather than per frame. A remembered answer is a few frames old at most, as good as a
	 * lookup racing a concurrent update. Keys hold the 6 bytes in the low 48 bits, UINT64_MAX: none yet. */
	uint64_t learnt = UINT64_MAX, looked = UINT64_MAX;
	struct sw_port *out = NULL;
	/* Likewise where a flood goes: with one other port (a pair of guests, PVP) it is a plain send. */
	struct sw_port *flood_to = NULL;
	bool flood_known = false;
	for (unsigned i = 0; i < n; i++) {
		struct vhd_pkt *pkt = pkts[i];
		const uint8_t *d = vhd_pkt_data(pkt);
		bytes += pkt->len;
		if (pkt->len < 14) {
			stat_add(&is->errors, 1);
			vhd_pkt_free(pkt);
			continue;
		}
		const uint8_t *dst = d, *src = d + 6;
		uint64_t sk = mac_key(src), dk = mac_key(dst);
		if (!(src[0] & 1) && sk != learnt) {
			if (unlikely(sw_fdb_learn(&sw->fdb, src, in->id, now) == SW_FDB_PORT_LIMIT))
				stat_add(&is->learn_refused, 1);
			learnt = sk;
		}
		bool group = dst[0] & 1;
		if (!group && dk != looked) {
			int o = sw_fdb_lookup(&sw->fdb, dst);
			out = o >= 0 ? atomic_load_explicit(&sw->ports[o], memory_order_acquire) : NULL;
			looked = dk;
		}
		if (group || !out) {
			if (!flood_known) {
				flood_to = sole_other_port(sw, in);
				flood_known = true;
			}
			if (flood_to)
				send_to(t, flood_to, pkt);
			else
				flood(t, in, pkt);
		} else if (out == in) {
			stat_add(&is->rx_drops, 1); /* the destination is behind the port it came from */
			vhd_pkt_free(pkt);
		} else {
			send_to(t, out, pkt);
		}
	}
	stat_add(&is->rx_packets, n);
	stat_add(&is->rx_bytes, bytes);
	for (unsigned i = 0; i < t->ntouched; i++) {
		flush_port(t, t->touched[i]);
		t->out[t->touched[i]].listed = false;
	}
	t->ntouched = 0;
}

/* A cheap cycle counter: the TSC on x86 (what DPDK and OVS count in, so their per-packet figures compare),
 * nanoseconds elsewhere. */
static inline uint64_t cycles_now(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __builtin_ia32_rdtsc();
#else
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

/*
 * Adaptive idle: arm every queue of l, sleep in poll() until one is readable, the control thread wakes us or
 * SLEEP_MAX_MS pass, then disarm them all. @return false without sleeping when a queue had work meanwhile or
 * cannot notify (its peer expects polling), or something changed since gen was read.
 *
 * The control thread changes state, then bumps sw->wake_gen (seq_cst) and reads each thread's sleeping (seq_cst)
 * to decide whether to write its wake_fd (wake_sleepers()); here, sleeping is stored (seq_cst) before wake_gen is
 * read again. Store then load on both sides, all seq_cst: one of the two sees the other's store, so either this
 * thread sees the new generation and does not sleep, or the control thread sees it sleeping and wakes it.
 */
static bool thread_sleep(struct sw_thread *t, struct rxq_list *l, uint64_t gen)
{
	struct sw *sw = t->sw;
	struct pollfd *pfd = l->pfd;
	unsigned armed = 0;
	int r = 0;
	pfd[0] = (struct pollfd){.fd = t->wake_fd, .events = POLLIN};
	for (; armed < l->n; armed++) {
		struct sw_port *p = l->e[armed].port;
		r = p->ops->rx_arm ? p->ops->rx_arm(p, l->e[armed].q, &pfd[1 + armed]) : -1;
		if (r != 0)
			break;
	}
	bool slept = false;
	if (r == 0) {
		atomic_store(&t->sleeping, 1);
		if (atomic_load(&sw->wake_gen) == gen) {
			int n = poll(pfd, 1 + l->n, SLEEP_MAX_MS);
			stat_add(&t->sleeps, 1);
			if (n == 0)
				stat_add(&t->sleep_timeouts, 1);
			slept = true;
		}
		atomic_store_explicit(&t->sleeping, 0, memory_order_relaxed);
		if (pfd[0].revents & POLLIN) {
			uint64_t v;
			(void)!read(t->wake_fd, &v, sizeof(v)); /* ours, non-blocking */
		}
	}
	for (unsigned i = 0; i < armed; i++) {
		struct sw_port *p = l->e[i].port;
		p->ops->rx_disarm(p, l->e[i].q, slept ? pfd[1 + i].revents : 0);
	}
	return slept;
}

static void *thread_main(void *arg)
{
	struct sw_thread *t = arg;
	struct sw *sw = t->sw;
	struct vhd_pkt *pkts[SW_BURST];
	unsigned idle = 0;
	uint64_t seen = 0;
	/* One clock read per round: each round's end is the next one's start (rdtsc was a tenth of this loop's
	 * own cost in perf, read twice per round). */
	uint64_t c0 = cycles_now();
	if (prctl(PR_SET_TIMERSLACK, SLEEP_SLACK_NS, 0, 0, 0) != 0 && t->idx == 0)
		vhd_log(VHD_LOG_WARN, "switch: cannot shorten the forwarding threads' timer slack (%s): their short "
			"sleeps may last 50 us longer", strerror(errno));
	while (!atomic_load_explicit(&sw->stop, memory_order_relaxed)) {
		/* Quiescent point: nothing from an earlier round is held. The acquire load pairs with the release
		 * increment in synchronize(): what the control thread changed before it (lists, ports[]) is what
		 * this round sees. The release store pairs with synchronize()'s acquire load of qs: everything
		 * this thread did with the old state is done before the control thread frees it. Message passing
		 * both ways, so no full fence on either side (see synchronize()). */
		uint64_t e = atomic_load_explicit(&sw->epoch, memory_order_acquire);
		if (e != seen) {
			seen = e;
			atomic_store_explicit(&t->qs, e, memory_order_release);
		}
		/* Pairs with the release exchange that published the list (publish()). */
		struct rxq_list *l = atomic_load_explicit(&t->rxqs, memory_order_acquire);
		unsigned moved = 0;
		for (unsigned i = 0; l && i < l->n; i++) {
			struct sw_port *p = l->e[i].port;
			unsigned got = p->ops->rx_burst(p, l->e[i].q, t->pool, pkts, SW_BURST);
			if (got) {
				/* Pairs with the release store in sw_capture_start(). With no capture, this load (of
				 * the line rx_burst's ops pointer is on) and a predictable branch are all it costs. */
				struct sw_capture *cap = atomic_load_explicit(&p->cap, memory_order_acquire);
				if (unlikely(cap != NULL) && sw_capture_wants(cap, SW_CAP_RX))
					sw_capture_rx(cap, t->idx, pkts, got);
				forward(t, p, pkts, got); /* every output flushed: no view is left */
				if (p->ops->rx_done)
					p->ops->rx_done(p, l->e[i].q);
				moved += got;
			}
		}
		uint64_t c1 = cycles_now();
		if (moved) {
			stat_add(&t->busy_cycles, c1 - c0);
			stat_add(&t->busy_packets, moved);
			stat_add(&t->busy_rounds, 1);
			idle = 0;
		} else if (++idle > IDLE_ROUNDS && sw->cfg.idle_us) {
			/* The generation before arming: a change from here on keeps the thread awake. */
			uint64_t gen = atomic_load(&sw->wake_gen);
			if (idle > IDLE_ROUNDS + SLEEP_ROUNDS && !sw->cfg.poll && l && thread_sleep(t, l, gen))
				idle = IDLE_ROUNDS; /* woken: poll again, and sleep short at once if that was all */
			else
				usleep(sw->cfg.idle_us);
			c1 = cycles_now(); /* the sleep is nobody's busy time */
		}
		c0 = c1;
	}
	atomic_store_explicit(&t->qs, UINT64_MAX, memory_order_release); /* gone: never waited for */
	return NULL;
}

/* ------------------------------------------------------------------ control */

/*
 * Wait until every thread has been through its quiescent point since now, so that nothing replaced or
 * unpublished before this call is still in use by any of them.
 *
 * The earlier form stored the new lists, then read each thread's round counter, while each thread stored its
 * counter, then read its list: the store-buffering pattern, where both loads may miss the other side's store
 * (even on x86, whose store buffer lets a load pass an earlier store) unless both sides fence. A thread could
 * then announce a round that still ran on the old list, and the list was freed under it. Here the control
 * thread instead hands out a new epoch (release increment, paired with thread_main()'s acquire load of it) and
 * waits until each thread reports having seen it (thread_main()'s release store of qs, paired with the acquire
 * load below): a thread that has loaded the new epoch sees every store made before the increment, and all it did
 * with the old state precedes its report. Two message passings, no full fence anywhere, and the forwarding
 * thread pays one load of a read-mostly line per round.
 */
/* Wake every thread asleep in thread_sleep() (see there for the pairing). Control thread. */
static void wake_sleepers(struct sw *sw)
{
	atomic_fetch_add(&sw->wake_gen, 1);
	for (unsigned i = 0; i < sw->cfg.threads; i++) {
		uint64_t one = 1;
		if (sw->th[i].started && atomic_load(&sw->th[i].sleeping))
			(void)!write(sw->th[i].wake_fd, &one, sizeof(one)); /* non-blocking; a full counter wakes too */
	}
}

static void synchronize(struct sw *sw)
{
	uint64_t e = atomic_fetch_add_explicit(&sw->epoch, 1, memory_order_release) + 1;
	wake_sleepers(sw); /* a sleeping thread reports its quiescent point only once awake */
	for (unsigned i = 0; i < sw->cfg.threads; i++) {
		if (!sw->th[i].started)
			continue;
		/* An exited thread stored UINT64_MAX. */
		while (atomic_load_explicit(&sw->th[i].qs, memory_order_acquire) < e)
			usleep(10);
	}
}

/* Deal every receive queue of every port out to the threads, round-robin, and publish the new lists. */
static int publish(struct sw *sw)
{
	unsigned nt = sw->cfg.threads, total = 0;
	for (unsigned id = 0; id < SW_MAX_PORTS; id++) {
		struct sw_port *p = atomic_load_explicit(&sw->ports[id], memory_order_relaxed);
		if (p)
			total += p->n_rxq;
	}
	struct rxq_list *nl[SW_MAX_THREADS] = {0}, *old[SW_MAX_THREADS];
	for (unsigned i = 0; i < nt; i++) {
		size_t es = (total + 1) * sizeof(nl[i]->e[0]);
		nl[i] = calloc(1, sizeof(struct rxq_list) + es + (total + 1) * sizeof(struct pollfd));
		if (nl[i])
			nl[i]->pfd = (struct pollfd *)((char *)nl[i]->e + es);
		if (!nl[i]) {
			for (unsigned j = 0; j < i; j++)
				free(nl[j]);
			return -ENOMEM;
		}
	}
	unsigned k = 0;
	for (unsigned id = 0; id < SW_MAX_PORTS; id++) {
		struct sw_port *p = atomic_load_explicit(&sw->ports[id], memory_order_relaxed);
		for (unsigned q = 0; p && q < p->n_rxq; q++, k++) {
			struct rxq_list *l = nl[k % nt];
			l->e[l->n].port = p;
			l->e[l->n].q = q;
			l->n++;
		}
	}
	for (unsigned i = 0; i < nt; i++) /* pairs with the acquire load in thread_main() */
		old[i] = atomic_exchange_explicit(&sw->th[i].rxqs, nl[i], memory_order_acq_rel);
	synchronize(sw);
	for (unsigned i = 0; i < nt; i++)
		free(old[i]);
	return 0;
}

int sw_create(const struct sw_config *c, struct sw **out)
{
	if (c->threads < 1 || c->threads > SW_MAX_THREADS || c->pool_bufs < SW_BURST * 4)
		return -EINVAL;
	struct sw *sw = calloc(1, sizeof(*sw));
	if (!sw)
		return -ENOMEM;
	sw->cfg = *c;
	sw_fdb_init(&sw->fdb);
	atomic_store(&sw->now_s, mono_s());
	sw->last_age = mono_s();
	int rc = 0;
	for (unsigned i = 0; i < SW_MAX_THREADS; i++)
		sw->th[i].wake_fd = -1;
	for (unsigned i = 0; i < c->threads && rc == 0; i++) {
		struct sw_thread *t = &sw->th[i];
		t->sw = sw;
		t->idx = i;
		t->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		rc = t->wake_fd < 0 ? -errno : vhd_pktpool_create(c->pool_bufs, c->buf_size, &t->pool);
	}
	for (unsigned i = 0; i < c->threads && rc == 0; i++) {
		struct sw_thread *t = &sw->th[i];
		rc = -pthread_create(&t->tid, NULL, thread_main, t);
		if (rc)
			break;
		t->started = true;
		if (c->cpu[i] >= 0) {
			cpu_set_t set;
			CPU_ZERO(&set);
			CPU_SET(c->cpu[i], &set);
			int e = pthread_setaffinity_np(t->tid, sizeof(set), &set);
			if (e)
				vhd_log(VHD_LOG_WARN, "switch: thread %u: cannot pin to CPU %d: %s", i, c->cpu[i],
					strerror(e));
		}
		char name[16];
		snprintf(name, sizeof(name), "vhd-fwd%u", i % 100u);
		pthread_setname_np(t->tid, name);
	}
	if (rc) {
		sw_destroy(sw);
		return rc;
	}
	*out = sw;
	return 0;
}

void sw_destroy(struct sw *sw)
{
	if (!sw)
		return;
	atomic_store(&sw->stop, true);
	wake_sleepers(sw);
	for (unsigned i = 0; i < sw->cfg.threads; i++)
		if (sw->th[i].started)
			pthread_join(sw->th[i].tid, NULL);
	for (unsigned i = 0; i < SW_MAX_CAPTURES; i++) { /* the threads are gone: last blocks, if they fit */
		if (sw->caps[i].cap) {
			sw_capture_close(sw->caps[i].cap);
			sw_capture_destroy(sw->caps[i].cap);
		}
	}
	for (unsigned id = 0; id < SW_MAX_PORTS; id++) {
		struct sw_port *p = atomic_load(&sw->ports[id]);
		if (p) {
			p->ops->destroy(p);
			free(p->spec);
			free(p);
		}
	}
	for (unsigned i = 0; i < sw->cfg.threads; i++) {
		free(atomic_load(&sw->th[i].rxqs));
		vhd_pktpool_destroy(sw->th[i].pool);
		if (sw->th[i].wake_fd >= 0)
			close(sw->th[i].wake_fd);
	}
	free(sw);
}

static struct sw_port *find(struct sw *sw, const char *name)
{
	for (unsigned id = 0; id < SW_MAX_PORTS; id++) {
		struct sw_port *p = atomic_load_explicit(&sw->ports[id], memory_order_relaxed);
		if (p && !strcmp(p->name, name))
			return p;
	}
	return NULL;
}

static bool good_name(const char *n)
{
	size_t l = strlen(n);
	if (l == 0 || l >= SW_PORT_NAME_MAX)
		return false;
	for (size_t i = 0; i < l; i++) {
		char c = n[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
		      c == '_' || c == '.'))
			return false;
	}
	return true;
}

/* The add-port arguments after the name as "TYPE\0KEY=VALUE\0...", into p->spec; 0 or -ENOMEM. */
static int port_spec(struct sw_port *p, const char *type, const struct sw_kv *args, unsigned nargs)
{
	size_t n = strlen(type) + 1;
	for (unsigned i = 0; i < nargs; i++)
		n += strlen(args[i].key) + 1 + strlen(args[i].value) + 1;
	char *s = malloc(n), *o = s;
	if (!s)
		return -ENOMEM;
	o += sprintf(o, "%s", type) + 1;
	for (unsigned i = 0; i < nargs; i++)
		o += sprintf(o, "%s=%s", args[i].key, args[i].value) + 1;
	p->spec = s;
	p->spec_len = n;
	return 0;
}

static int port_add(struct sw *sw, const char *name, const char *type, const struct sw_kv *args, unsigned nargs,
		    struct sw_port_import *imp, char *err, size_t errlen)
{
	if (!good_name(name)) {
		snprintf(err, errlen, "port name '%s': want 1..%d of [A-Za-z0-9._-]", name, SW_PORT_NAME_MAX - 1);
		return -EINVAL;
	}
	if (find(sw, name)) {
		snprintf(err, errlen, "port %s exists already", name);
		return -EEXIST;
	}
	const struct sw_port_ops *ops = sw_port_type(type);
	if (!ops) {
		snprintf(err, errlen, "port type '%s': want vhost-user, virtio-user, vhost-net, vdpa, tap, af_packet, af_xdp "
			 "or vxlan",
			 type);
		return -EINVAL;
	}
	int id = -1;
	for (unsigned i = 0; i < SW_MAX_PORTS && id < 0; i++)
		if (!atomic_load_explicit(&sw->ports[i], memory_order_relaxed))
			id = (int)i;
	if (id < 0) {
		snprintf(err, errlen, "the switch has %d ports already", SW_MAX_PORTS);
		return -ENOSPC;
	}
	/* mtu and max_macs are the switch's; the rest go to the port type. */
	unsigned mtu, max_macs;
	int rc = sw_kv_uint(args, nargs, "mtu", 0, 68, 65535, &mtu, err, errlen);
	if (rc < 0)
		return rc;
	rc = sw_kv_uint(args, nargs, "max_macs", SW_FDB_MAX_MACS_DEFAULT, 0, SW_FDB_BUCKETS * SW_FDB_WAYS, &max_macs,
			err, errlen);
	if (rc < 0)
		return rc;
	struct sw_kv rest[SW_MAX_ARGS];
	unsigned nrest = 0;
	for (unsigned i = 0; i < nargs && nrest < SW_MAX_ARGS; i++)
		if (strcmp(args[i].key, "mtu") && strcmp(args[i].key, "max_macs"))
			rest[nrest++] = args[i];
	if (imp && !ops->handover_export) {
		snprintf(err, errlen, "a %s port cannot be taken over", type);
		return -EOPNOTSUPP;
	}
	struct sw_port *p = calloc(1, sizeof(*p));
	if (!p || port_spec(p, type, args, nargs) < 0) {
		free(p);
		return -ENOMEM;
	}
	p->ops = ops;
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->id = (uint16_t)id;
	p->mtu = mtu;
	err[0] = '\0';
	p->import = imp;
	rc = ops->create(p, rest, nrest, err, errlen);
	p->import = NULL;
	if (rc < 0) {
		if (!err[0])
			snprintf(err, errlen, "%s: %s", type, strerror(-rc));
		free(p->spec);
		free(p);
		return rc;
	}
	if (!p->mtu)
		p->mtu = 1500;
	if (p->n_rxq > SW_MAX_QUEUES || p->n_txq < 1 || p->n_txq > SW_MAX_QUEUES) {
		snprintf(err, errlen, "%s: port type reported %u rx / %u tx queues", type, p->n_rxq, p->n_txq);
		p->ops->destroy(p);
		free(p->spec);
		free(p);
		return -EINVAL;
	}
	if (imp) {
		/* The counters go on from where the old process left them (published by the release store below). */
		struct sw_port_stats *s = &p->stats[0];
		_Atomic uint64_t *f[SW_PORT_TOTALS] = {&s->rx_packets, &s->rx_bytes, &s->tx_packets, &s->tx_bytes,
						       &s->rx_drops,   &s->tx_drops, &s->errors,     &s->learn_refused};
		for (unsigned k = 0; k < SW_PORT_TOTALS; k++)
			atomic_store_explicit(f[k], imp->totals[k], memory_order_relaxed);
	}
	/* The limit before any thread can learn for the id (the release store below publishes it). */
	sw_fdb_set_max(&sw->fdb, p->id, max_macs);
	/* Visible as an output first (release pairs with forward()'s acquire loads), then polled. ports_hi
	 * before the slot: a thread that sees the port in the table (through a learned address) and floods
	 * may still miss it in that one frame's flood, which is harmless. */
	if ((unsigned)id >= atomic_load_explicit(&sw->ports_hi, memory_order_relaxed))
		atomic_store_explicit(&sw->ports_hi, (unsigned)id + 1, memory_order_relaxed);
	atomic_store_explicit(&sw->ports[id], p, memory_order_release);
	rc = publish(sw);
	if (rc < 0) {
		atomic_store_explicit(&sw->ports[id], NULL, memory_order_release);
		synchronize(sw);
		p->ops->destroy(p);
		free(p->spec);
		free(p);
		snprintf(err, errlen, "out of memory");
		return rc;
	}
	vhd_log(VHD_LOG_INFO, "switch: port %s (%s) added as %d, %u rx / %u tx queues, mtu %u", name, type, id,
		p->n_rxq, p->n_txq, p->mtu);
	return 0;
}

int sw_port_add(struct sw *sw, const char *name, const char *type, const struct sw_kv *args, unsigned nargs,
		char *err, size_t errlen)
{
	return port_add(sw, name, type, args, nargs, NULL, err, errlen);
}

int sw_port_import(struct sw *sw, const char *name, const char *spec, size_t spec_len, struct sw_port_import *imp,
		   char *err, size_t errlen)
{
	struct sw_kv kv[SW_MAX_ARGS];
	char *copy = malloc(spec_len + 1), *type = copy;
	unsigned n = 0;
	int rc = copy ? 0 : -ENOMEM;
	if (copy) {
		memcpy(copy, spec, spec_len);
		copy[spec_len] = '\0'; /* the last string ends here even when the sender's did not */
	}
	for (size_t o = copy ? strlen(type) + 1 : 0, l; rc == 0 && o < spec_len; o += l + 1) {
		l = strlen(copy + o);
		char *eq = strchr(copy + o, '=');
		if (!eq || n == SW_MAX_ARGS) {
			snprintf(err, errlen, "port %s: argument '%.40s' is not KEY=VALUE, or one too many", name, copy + o);
			rc = -EINVAL;
			break;
		}
		*eq = '\0';
		kv[n++] = (struct sw_kv){copy + o, eq + 1};
	}
	if (rc == 0)
		rc = port_add(sw, name, type, kv, n, imp, err, errlen);
	else if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	free(copy);
	if (!imp->taken)
		for (unsigned i = 0; i < imp->nfds; i++)
			close(imp->fds[i]);
	imp->taken = true;
	return rc;
}

int sw_handover_export(struct sw *sw, sw_handover_fn fn, void *arg, unsigned *nports, char *err, size_t errlen)
{
	*nports = 0;
	/* Every port that cannot go, named with its type, so that one attempt says all that is in the way. */
	size_t o = 0;
	unsigned refused = 0;
	for (unsigned id = 0; id < SW_MAX_PORTS; id++) {
		struct sw_port *p = atomic_load_explicit(&sw->ports[id], memory_order_relaxed);
		if (p && !p->ops->handover_export) {
			int w = snprintf(err + o, errlen - o, "%s%s (%s)", refused++ ? ", " : "port ", p->name,
					 p->ops->type);
			if (w > 0 && (size_t)w < errlen - o)
				o += (size_t)w;
		}
	}
	if (refused) {
		snprintf(err + o, errlen - o, ": %s type cannot be handed over (yet): remove %s first",
			 refused > 1 ? "each one's" : "its", refused > 1 ? "them" : "it");
		return -EOPNOTSUPP;
	}
	/* Every port paused first, then the counters read: a frame a burst was carrying toward a port paused
	 * before its own is dropped and counted there, and that count goes over too. */
	struct exported {
		struct sw_port *p;
		uint8_t *buf;
		size_t len;
		int fds[SW_HANDOVER_MAX_FDS];
		unsigned nfds;
	} *e = calloc(SW_MAX_PORTS, sizeof(*e));
	if (!e) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	unsigned n = 0;
	int rc = 0;
	for (unsigned id = 0; id < SW_MAX_PORTS && rc == 0; id++) {
		struct sw_port *p = atomic_load_explicit(&sw->ports[id], memory_order_relaxed);
		if (!p)
			continue;
		char perr[160];
		perr[0] = '\0';
		e[n].p = p;
		if (!(e[n].buf = malloc(SW_HANDOVER_MAX))) {
			snprintf(err, errlen, "out of memory");
			rc = -ENOMEM;
			break;
		}
		rc = p->ops->handover_export(p, e[n].buf, SW_HANDOVER_MAX, &e[n].len, e[n].fds, &e[n].nfds, perr,
					     sizeof(perr));
		if (rc < 0)
			snprintf(err, errlen, "port %s: %s", p->name, perr[0] ? perr : strerror(-rc));
		else
			n++;
	}
	/* A burst that got past a port's gate before it closed still has its counting to do once rx_burst returns
	 * (the switch counts, not the port): wait for every thread's next round, so the totals sent include it. */
	if (rc == 0)
		synchronize(sw);
	for (unsigned i = 0; i < n && rc == 0; i++) {
		struct sw_port *p = e[i].p;
		uint64_t tot[SW_PORT_TOTALS] = {0};
		for (unsigned t = 0; t < SW_MAX_THREADS; t++) {
			const struct sw_port_stats *s = &p->stats[t];
			const _Atomic uint64_t *f[SW_PORT_TOTALS] = {&s->rx_packets, &s->rx_bytes, &s->tx_packets,
								      &s->tx_bytes, &s->rx_drops, &s->tx_drops,
								      &s->errors, &s->learn_refused};
			for (unsigned k = 0; k < SW_PORT_TOTALS; k++)
				tot[k] += atomic_load_explicit(f[k], memory_order_relaxed);
		}
		if ((rc = fn(arg, p->name, p->spec, p->spec_len, tot, e[i].buf, e[i].len, e[i].fds, e[i].nfds)) < 0)
			snprintf(err, errlen, "port %s: sending it: %s", p->name, strerror(-rc));
	}
	*nports = n;
	for (unsigned i = 0; i < SW_MAX_PORTS; i++)
		free(e[i].buf);
	free(e);
	if (rc < 0)
		sw_handover_resume(sw);
	return rc;
}

void sw_handover_resume(struct sw *sw)
{
	for (unsigned id = 0; id < SW_MAX_PORTS; id++) {
		struct sw_port *p = atomic_load_explicit(&sw->ports[id], memory_order_relaxed);
		if (p && p->ops->handover_resume)
			p->ops->handover_resume(p);
	}
	wake_sleepers(sw);
}

int sw_port_del(struct sw *sw, const char *name, char *err, size_t errlen)
{
	struct sw_port *p = find(sw, name);
	if (!p) {
		snprintf(err, errlen, "no port %s", name);
		return -ENOENT;
	}
	/* No new output to it, no more polling of it; then wait until no thread can still be inside it. */
	atomic_store_explicit(&sw->ports[p->id], NULL, memory_order_release);
	struct sw_capture *cap = atomic_exchange_explicit(&p->cap, NULL, memory_order_relaxed);
	int rc = publish(sw);
	if (rc < 0) {
		/* Could not build the smaller lists: keep polling it, but it is already gone as an output. Put it
		 * back so that the table stays consistent. */
		atomic_store_explicit(&sw->ports[p->id], p, memory_order_release);
		atomic_store_explicit(&p->cap, cap, memory_order_release);
		snprintf(err, errlen, "out of memory");
		return rc;
	}
	/* publish() waited for every thread's quiescent point after the store above, so none is inside p now,
	 * nor inside its capture, which ends here with the frames it has. */
	for (unsigned i = 0; i < SW_MAX_CAPTURES; i++) {
		if (sw->caps[i].port == p) {
			sw->caps[i].port = NULL;
			sw_capture_close(sw->caps[i].cap);
			vhd_log(VHD_LOG_INFO, "switch: capture on %s ended with the port: %llu frames, %llu dropped", name,
				(unsigned long long)sw_capture_frames(sw->caps[i].cap),
				(unsigned long long)sw_capture_drops(sw->caps[i].cap));
		}
	}
	sw_fdb_flush_port(&sw->fdb, p->id);
	p->ops->destroy(p);
	vhd_log(VHD_LOG_INFO, "switch: port %s removed", name);
	free(p->spec);
	free(p);
	return 0;
}

unsigned sw_pollfds(struct sw *sw, struct pollfd *fds, unsigned max)
{
	unsigned n = 0;
	for (unsigned id = 0; id < SW_MAX_PORTS && n < max; id++) {
		struct sw_port *p = atomic_load_explicit(&sw->ports[id], memory_order_relaxed);
		if (p && p->ops->pollfds)
			n += p->ops->pollfds(p, fds + n, max - n);
	}
	for (unsigned i = 0; i < SW_MAX_CAPTURES && n < max; i++)
		if (sw->caps[i].cap)
			fds[n++] = (struct pollfd){.fd = sw_capture_fd(sw->caps[i].cap),
						   .events = sw_capture_events(sw->caps[i].cap)};
	return n;
}

int sw_timeout_ms(struct sw *sw)
{
	int t = 1000; /* the MAC table's clock and aging */
	for (unsigned i = 0; i < SW_MAX_CAPTURES; i++)
		if (sw->caps[i].port)
			t = SW_CAPTURE_DRAIN_MS; /* rings drained often enough not to fill at moderate rates */
	for (unsigned id = 0; id < SW_MAX_PORTS; id++) {
		struct sw_port *p = atomic_load_explicit(&sw->ports[id], memory_order_relaxed);
		if (p && p->ops->timeout_ms) {
			int pt = p->ops->timeout_ms(p);
			if (pt >= 0 && pt < t)
				t = pt;
		}
	}
	return t;
}

/* A port's first refused learn is logged here, once a second at most, rather than by the forwarding thread. */
static void log_learn_limits(struct sw *sw)
{
	for (unsigned id = 0; id < SW_MAX_PORTS; id++) {
		struct sw_port *p = atomic_load_explicit(&sw->ports[id], memory_order_relaxed);
		if (!p || p->learn_limit_logged)
			continue;
		uint64_t refused = 0;
		for (unsigned i = 0; i < sw->cfg.threads; i++)
			refused += atomic_load_explicit(&p->stats[i].learn_refused, memory_order_relaxed);
		if (!refused)
			continue;
		p->learn_limit_logged = true;
		vhd_log(VHD_LOG_WARN,
			"switch: port %s sends from more source MACs than its max_macs=%u: the others are not learned "
			"(frames to them are flooded; counted in learn_refused, logged once)",
			p->name, atomic_load_explicit(&sw->fdb.max[id], memory_order_relaxed));
	}
}

/* Feed each capture's output; end those that are done with (count, reader gone or stopping). */
static void pump_captures(struct sw *sw)
{
	for (unsigned i = 0; i < SW_MAX_CAPTURES; i++) {
		struct sw_capture *c = sw->caps[i].cap;
		if (!c)
			continue;
		if (sw_capture_pump(c) && sw->caps[i].port) {
			struct sw_port *p = sw->caps[i].port;
			atomic_store_explicit(&p->cap, NULL, memory_order_relaxed);
			synchronize(sw); /* no forwarding thread is inside c past this */
			sw->caps[i].port = NULL;
			sw_capture_close(c);
			vhd_log(VHD_LOG_INFO, "switch: capture on %s ended: %llu frames, %llu dropped", p->name,
				(unsigned long long)sw_capture_frames(c), (unsigned long long)sw_capture_drops(c));
		}
		if (!sw->caps[i].port && sw_capture_done(c)) {
			sw_capture_destroy(c);
			sw->caps[i].cap = NULL;
		}
	}
}

int sw_capture_start(struct sw *sw, const char *port, unsigned dirs, uint64_t count, int fd, struct sw_json *w,
		     char *err, size_t errlen)
{
	struct sw_port *p = find(sw, port);
	int slot = -1;
	for (unsigned i = 0; i < SW_MAX_CAPTURES && slot < 0; i++)
		if (!sw->caps[i].cap)
			slot = (int)i;
	int rc = 0;
	if (!p) {
		snprintf(err, errlen, "no port %s", port);
		rc = -ENOENT;
	} else if (atomic_load_explicit(&p->cap, memory_order_relaxed)) {
		snprintf(err, errlen, "port %s is being captured already", port);
		rc = -EBUSY;
	} else if (slot < 0) {
		snprintf(err, errlen, "%d captures run already (the most at once)", SW_MAX_CAPTURES);
		rc = -ENOSPC;
	}
	if (rc) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	struct sw_capture *c;
	rc = sw_capture_create(p->name, sw->cfg.threads, dirs, count, fd, &c, err, errlen);
	if (rc < 0)
		return rc;
	sw->caps[slot].cap = c;
	sw->caps[slot].port = p;
	/* Pairs with the acquire loads in thread_main() and flush_port(): the rings are ready before the threads
	 * see the capture. */
	atomic_store_explicit(&p->cap, c, memory_order_release);
	sw_capture_pump(c); /* the header blocks go now */
	vhd_log(VHD_LOG_INFO, "switch: capture on %s started (%s%s%s)", p->name, dirs & SW_CAP_RX ? "rx" : "",
		dirs == (SW_CAP_RX | SW_CAP_TX) ? "+" : "", dirs & SW_CAP_TX ? "tx" : "");
	sw_json_str(w, "port", p->name);
	sw_json_str(w, "direction", dirs == SW_CAP_RX ? "rx" : dirs == SW_CAP_TX ? "tx" : "both");
	sw_json_u64(w, "count", count);
	sw_json_u64(w, "snaplen", SW_CAPTURE_SNAPLEN);
	return 0;
}

void sw_dispatch(struct sw *sw, const struct pollfd *fds, unsigned n)
{
	bool events = !fds;
	for (unsigned i = 0; i < n && !events; i++)
		events = fds[i].revents != 0;
	pump_captures(sw);
	for (unsigned id = 0; id < SW_MAX_PORTS; id++) {
		struct sw_port *p = atomic_load_explicit(&sw->ports[id], memory_order_relaxed);
		if (p && p->ops->dispatch)
			p->ops->dispatch(p);
	}
	if (events)
		wake_sleepers(sw); /* a queue may have started, stopped or changed its kick fd */
	uint32_t now = mono_s();
	atomic_store_explicit(&sw->now_s, now, memory_order_relaxed);
	if (now != sw->last_age) {
		sw->last_age = now;
		sw_fdb_age(&sw->fdb, now, sw->cfg.aging_s);
		log_learn_limits(sw);
	}
}

/* ------------------------------------------------------------------ reports */

static unsigned fdb_count(struct sw *sw);

void sw_show(struct sw *sw, struct sw_json *w)
{
	sw_json_arr_begin(w, "ports");
	for (unsigned id = 0; id < SW_MAX_PORTS; id++) {
		struct sw_port *p = atomic_load_explicit(&sw->ports[id], memory_order_relaxed);
		if (!p)
			continue;
		sw_json_obj_begin(w, NULL);
		sw_json_str(w, "name", p->name);
		sw_json_str(w, "type", p->ops->type);
		sw_json_u64(w, "id", p->id);
		sw_json_str(w, "link", p->ops->link_up(p) ? "up" : "down");
		sw_json_u64(w, "mtu", p->mtu);
		sw_json_u64(w, "rxq", p->n_rxq);
		sw_json_u64(w, "txq", p->n_txq);
		sw_json_u64(w, "macs", sw_fdb_owned(&sw->fdb, p->id));
		sw_json_u64(w, "max_macs", atomic_load_explicit(&sw->fdb.max[p->id], memory_order_relaxed));
		sw_json_obj_begin(w, "info");
		if (p->ops->describe)
			p->ops->describe(p, w);
		sw_json_obj_end(w);
		sw_json_obj_end(w);
	}
	sw_json_arr_end(w);
	sw_json_arr_begin(w, "threads");
	for (unsigned i = 0; i < sw->cfg.threads; i++) {
		sw_json_obj_begin(w, NULL);
		sw_json_u64(w, "id", i);
		sw_json_i64(w, "cpu", sw->cfg.cpu[i]);
		sw_json_arr_begin(w, "rxqs");
		/* The control thread is the only writer of these lists, so reading them here is safe. */
		struct rxq_list *l = atomic_load_explicit(&sw->th[i].rxqs, memory_order_relaxed);
		for (unsigned k = 0; l && k < l->n; k++)
			sw_json_strf(w, NULL, "%s:%u", l->e[k].port->name, l->e[k].q);
		sw_json_arr_end(w);
		sw_json_obj_end(w);
	}
	sw_json_arr_end(w);
	sw_json_obj_begin(w, "bridge");
	sw_json_u64(w, "aging_s", sw->cfg.aging_s);
	sw_json_u64(w, "fdb_entries", fdb_count(sw));
	sw_json_u64(w, "fdb_full", atomic_load_explicit(&sw->fdb.full, memory_order_relaxed));
	sw_json_obj_end(w);
}

/* The one list of per-port counters: vhostctl stats (JSON) and the metrics exposition both walk it. */
static const struct sw_field stat_fields[] = {
	{"rx_packets", "frames received from the port", offsetof(struct sw_port_stats, rx_packets)},
	{"rx_bytes", "bytes received from the port", offsetof(struct sw_port_stats, rx_bytes)},
	{"tx_packets", "frames the port took for transmission", offsetof(struct sw_port_stats, tx_packets)},
	{"tx_bytes", "bytes the port took for transmission", offsetof(struct sw_port_stats, tx_bytes)},
	{"rx_drops", "received frames the switch dropped (runt, hairpin, no output)",
	 offsetof(struct sw_port_stats, rx_drops)},
	{"tx_drops", "frames for the port it did not take (queue full, over its MTU, offloads)",
	 offsetof(struct sw_port_stats, tx_drops)},
	{"errors", "malformed or refused frames, port errors", offsetof(struct sw_port_stats, errors)},
	{"learn_refused", "source MACs not learned: the port owns its max_macs already",
	 offsetof(struct sw_port_stats, learn_refused)},
};
#define N_STAT_FIELDS (sizeof(stat_fields) / sizeof(stat_fields[0]))
_Static_assert(N_STAT_FIELDS + 1 == SW_PORT_COUNTERS, "stat_fields and queue_breaks are the port's counters");

struct sw_port *sw_port_at(struct sw *sw, unsigned id)
{
	return id < SW_MAX_PORTS ? atomic_load_explicit(&sw->ports[id], memory_order_relaxed) : NULL;
}

/* Each counter summed over the threads' slots (sw_field_sum: relaxed loads, the forwarding threads never wait). */
void sw_port_counters(struct sw *sw, const struct sw_port *p, struct sw_counter out[SW_PORT_COUNTERS])
{
	for (size_t f = 0; f < N_STAT_FIELDS; f++)
		out[f] = (struct sw_counter){stat_fields[f].name, stat_fields[f].help,
					     sw_field_sum(&stat_fields[f], p->stats, sizeof(p->stats[0]), sw->cfg.threads)};
	out[N_STAT_FIELDS] = (struct sw_counter){"queue_breaks", "queues marked broken for what the peer did",
						 atomic_load_explicit(&p->queue_breaks, memory_order_relaxed)};
}

unsigned sw_thread_count(const struct sw *sw)
{
	return sw->cfg.threads;
}

void sw_thread_counters(struct sw *sw, unsigned i, struct sw_thread_counters *out)
{
	*out = (struct sw_thread_counters){
		.busy_cycles = atomic_load_explicit(&sw->th[i].busy_cycles, memory_order_relaxed),
		.packets = atomic_load_explicit(&sw->th[i].busy_packets, memory_order_relaxed),
		.busy_rounds = atomic_load_explicit(&sw->th[i].busy_rounds, memory_order_relaxed),
		.sleeps = atomic_load_explicit(&sw->th[i].sleeps, memory_order_relaxed),
		.sleep_timeouts = atomic_load_explicit(&sw->th[i].sleep_timeouts, memory_order_relaxed),
	};
}

void sw_fdb_counters(struct sw *sw, unsigned *entries, uint64_t *full)
{
	*entries = fdb_count(sw);
	*full = atomic_load_explicit(&sw->fdb.full, memory_order_relaxed);
}

/* A port type's own whole-port counters (queue -1 in sw_port_ops.counters), beside the switch's: vhost-user's
 * notify_failures and iotlb_*, the same names the metrics give them. */
static void type_counter(void *arg, const char *name, const char *help, int queue, uint64_t v)
{
	(void)help;
	if (queue < 0)
		sw_json_u64(arg, name, v);
}

static void stats_obj(struct sw *sw, struct sw_port *p, struct sw_json *w)
{
	struct sw_counter c[SW_PORT_COUNTERS];
	sw_port_counters(sw, p, c);
	sw_json_obj_begin(w, NULL);
	sw_json_str(w, "name", p->name);
	for (size_t f = 0; f < SW_PORT_COUNTERS; f++)
		sw_json_u64(w, c[f].name, c[f].value);
	if (p->ops->counters)
		p->ops->counters(p, type_counter, w);
	sw_json_obj_end(w);
}

int sw_stats(struct sw *sw, const char *port, struct sw_json *w, char *err, size_t errlen)
{
	struct sw_port *one = NULL;
	if (port && !(one = find(sw, port))) {
		snprintf(err, errlen, "no port %s", port);
		return -ENOENT;
	}
	sw_json_arr_begin(w, "ports");
	for (unsigned id = 0; id < SW_MAX_PORTS; id++) {
		struct sw_port *p = atomic_load_explicit(&sw->ports[id], memory_order_relaxed);
		if (p && (!one || p == one))
			stats_obj(sw, p, w);
	}
	sw_json_arr_end(w);
	if (one)
		return 0;
	sw_json_arr_begin(w, "threads");
	for (unsigned i = 0; i < sw->cfg.threads; i++) {
		struct sw_thread_counters tc;
		sw_thread_counters(sw, i, &tc);
		uint64_t c = tc.busy_cycles, n = tc.packets, r = tc.busy_rounds;
		sw_json_obj_begin(w, NULL);
		sw_json_u64(w, "thread", i);
		sw_json_u64(w, "busy_cycles", c);
		sw_json_u64(w, "packets", n);
		sw_json_u64(w, "busy_rounds", r);
		sw_json_u64(w, "cycles_per_packet", n ? (c + n / 2) / n : 0);
		sw_json_u64(w, "sleeps", tc.sleeps);
		sw_json_u64(w, "sleep_timeouts", tc.sleep_timeouts);
		sw_json_obj_end(w);
	}
	sw_json_arr_end(w);
	return 0;
}

struct fdb_walk {
	struct sw *sw;
	struct sw_json *w;
	uint32_t now;
	unsigned n;
};

static void fdb_entry(const uint8_t mac[6], uint16_t port, uint32_t seen, void *arg)
{
	struct fdb_walk *fw = arg;
	fw->n++;
	if (!fw->w)
		return;
	struct sw_port *p = port < SW_MAX_PORTS ? atomic_load_explicit(&fw->sw->ports[port], memory_order_relaxed) : NULL;
	sw_json_obj_begin(fw->w, NULL);
	sw_json_strf(fw->w, "mac", "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
	sw_json_str(fw->w, "port", p ? p->name : "?");
	sw_json_u64(fw->w, "age_s", fw->now - seen);
	sw_json_obj_end(fw->w);
}

static unsigned fdb_count(struct sw *sw)
{
	struct fdb_walk fw = {.sw = sw};
	sw_fdb_walk(&sw->fdb, fdb_entry, &fw);
	return fw.n;
}

struct fdb_export {
	struct sw *sw;
	sw_fdb_fn fn;
	void *arg;
	uint32_t now;
	int rc;
};

static void fdb_export_entry(const uint8_t mac[6], uint16_t port, uint32_t seen, void *arg)
{
	struct fdb_export *x = arg;
	struct sw_port *p = port < SW_MAX_PORTS ? atomic_load_explicit(&x->sw->ports[port], memory_order_relaxed) : NULL;
	if (x->rc < 0 || !p)
		return; /* an entry of a port being removed: the flush takes it anyway */
	/* seen may be a tick ahead of now (a thread read the clock after this walk did): age 0 then. */
	x->rc = x->fn(x->arg, mac, p->name, x->now - seen > x->now ? 0 : x->now - seen);
}

int sw_fdb_export(struct sw *sw, sw_fdb_fn fn, void *arg)
{
	struct fdb_export x = {sw, fn, arg, atomic_load(&sw->now_s), 0};
	sw_fdb_walk(&sw->fdb, fdb_export_entry, &x);
	return x.rc;
}

int sw_fdb_import(struct sw *sw, const uint8_t mac[6], const char *port, uint32_t age_s)
{
	struct sw_port *p = find(sw, port);
	if (!p)
		return -ENOENT;
	uint32_t now = atomic_load(&sw->now_s);
	/* Both processes read CLOCK_MONOTONIC, so the age carries over as is; one older than the clock (it cannot
	 * be, but it comes from another process) is seen at 0, the oldest there is. */
	return sw_fdb_learn(&sw->fdb, mac, p->id, age_s < now ? now - age_s : 0) == SW_FDB_LEARNED ? 0 : -ENOSPC;
}

void sw_fdb_show(struct sw *sw, struct sw_json *w)
{
	struct fdb_walk fw = {.sw = sw, .w = w, .now = atomic_load(&sw->now_s)};
	sw_json_arr_begin(w, "entries");
	sw_fdb_walk(&sw->fdb, fdb_entry, &fw);
	sw_json_arr_end(w);
}
