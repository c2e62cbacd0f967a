/* SPDX-License-Identifier: MIT */
/*
 * vhost-pktgen: a testpmd-like traffic generator and sink over libvhostd, as a vhost-user back-end (serving a
 * device, e.g. to QEMU or DPDK's virtio-user) or as a frontend (driving a back-end without a VM).
 *
 * One thread: it polls the control socket between data bursts and runs every queue pair in turn. Frames it
 * generates carry, after an Ethernet/IPv4/UDP header, a per-queue sequence number, the queue and the frame
 * length, then a byte pattern derived from the sequence number, so a receiving vhost-pktgen (--verify) can
 * count lost, duplicated, reordered and corrupted frames.
 *
 * For benchmarks (bench/compare.py): --sink PATH drives a second device in the same process and thread (PVP: the
 * generator on the first port, a counting sink on the second, a switch in between); --latency keeps a window of
 * timestamped frames in flight and measures how long each takes to come back (round trip through an echoing
 * peer, or one way through the switch to the sink); --warmup S discards the first seconds' counts.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "vhostd/frontend.h"
#include "vhostd/log.h"
#include "vhostd/mem.h"
#include "vhostd/net.h"
#include "vhostd/pkt.h"
#include "vhostd/vduse.h"
#include "vhostd/vhost_user.h"
#include "vhostd/virtq.h"

#define MAX_QP 16
#define MAX_BURST 256
#define POOL_BUFS 2048
#define BUF_SIZE 10240 /* 9000-byte frames plus headroom */
#define HDRS (14 + 20 + 8)
#define STAMP 12 /* seq (8), queue (2), length (2) */
#define MIN_FRAME 60
#define MAX_FRAME 9000
/* --mode tap: a 64 KiB GSO frame (plus Ethernet and VLAN headers) in one buffer, in both directions. */
#define TAP_POOL_BUFS 512
#define TAP_BUF_SIZE (VHD_PKT_HEADROOM + 65536 + 512)
/* --latency: send times by sequence number; a frame not back within LAT_TIMEOUT_S counts as a timeout. */
#define LAT_SLOTS 1024
#define LAT_MAX_WINDOW 256
#define LAT_MAX_SAMPLES (4u << 20)
#define LAT_TIMEOUT_S 0.05

enum mode { M_TXONLY, M_RXONLY, M_IO, M_MACSWAP, M_ICMPECHO, M_TAP, M_TXRX, M_NMODES };
static const char *const mode_names[] = {"txonly", "rxonly", "io", "macswap", "icmpecho", "tap", "txrx"};

/* The modes that generate frames: txonly, and txrx, which also counts (and with --verify checks) arrivals. */
static bool generates(enum mode m)
{
	return m == M_TXONLY || m == M_TXRX;
}

struct qstats {
	uint64_t rx, rx_bytes, tx, tx_bytes, drops, errors;
	uint64_t lost, dup, corrupt, next_seq; /* --verify */
	uint64_t gen_seq;                      /* txonly */
};

struct opts {
	const char *path;
	const char *tap;  /* --mode tap: the tap interface */
	const char *vk_tap; /* vhost-kernel: vhost-net's tap (--vhost-tap, or --tap outside --mode tap) */
	enum vhd_fe_transport_kind transport; /* --transport, resolved from the path when not given */
	bool transport_set;
	const char *sink; /* --sink: the second device, the sink of what the first port generates */
	bool backend, vduse, server, client_set, packed, no_mrg, iommu, iommu_lazy, per_burst, in_order, inflight, json,
		verify, latency,
		poll, no_payload;
	bool static_frames; /* --static */
	unsigned flows;     /* --flows: UDP source ports 1024 .. 1024+flows-1, in turn (1: always port 9) */
	bool announce;      /* --announce: the sink sends one broadcast from its MAC when it comes up */
	unsigned src_macs;  /* --src-macs: source MACs --mac + 0 .. src_macs-1 (in the low 3 bytes), in turn */
	unsigned msg_timeout_ms; /* --msg-timeout: the library's per-message deadline (0: its default) */
	enum mode mode;
	uint32_t size_min, size_max;
	unsigned burst, queues;
	uint64_t count;
	double duration;
	double pps; /* txonly: frames per second, 0 for as fast as possible */
	double warmup; /* seconds of traffic not counted */
	unsigned window; /* --latency: frames in flight */
	uint8_t mac[6];
	bool set_dev_mac;     /* --set-mac */
	uint8_t dev_mac[6];
	unsigned refuse_status; /* --vduse: --refuse-status, --refuse-iotlb (vhd_vduse_config's test knobs) */
	bool refuse_iotlb;
};

/* --latency: shared by the generator and, with --sink, the sink that sees the frames arrive. */
struct lat {
	uint64_t t_send[LAT_SLOTS]; /* ns, 0: nothing in flight in this slot */
	uint64_t seq_of[LAT_SLOTS];
	unsigned inflight;
	uint64_t last_event; /* ns of the last send or arrival, for the timeout */
	uint64_t *samples;   /* ns */
	uint64_t nsamples, timeouts;
};

struct gen {
	struct opts o;
	struct vhd_vu_dev *dev;
	struct vhd_vduse_dev *vd; /* --vduse: the device side served to the kernel instead of over vhost-user */
	uint64_t vd_features;     /* --vduse: what cfg was derived from */
	struct vhd_fe *fe;
	struct vhd_net_cfg cfg;
	bool cfg_ok;
	struct vhd_pktpool *pool[MAX_QP];
	struct vhd_net_stats nst[2 * MAX_QP];
	struct qstats qs[MAX_QP];
	/* txonly: packets built but not yet taken by the queue, retried first next time */
	struct vhd_pkt *pending[MAX_QP][MAX_BURST];
	unsigned npending[MAX_QP];
	struct timespec t_first, t_last;
	unsigned traffic_ticks; /* note_traffic() calls */
	bool started;
	int tap_fd[MAX_QP]; /* --mode tap: one tap queue per queue pair */
	unsigned resets;    /* SIGUSR1 resets done */
	bool unmapped;      /* SIGUSR2: our memory is out of the device's IOTLB */
	int mac_state;      /* --set-mac: 0 to send, 1 sent, 2 answered */
	unsigned tap_offloads; /* TUN_F_* last set */
	struct lat *lat;       /* --latency */
	struct gen *sink;      /* --sink: the second port, driven by the same loop */
};

static volatile sig_atomic_t stop_now, reset_now, remap_now;
static void on_signal(int s)
{
	if (s == SIGUSR1)
		reset_now = 1;
	else if (s == SIGUSR2)
		remap_now = 1;
	else
		stop_now = 1;
}

static double secs(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x7fb5d329728ea185ull;
	x ^= x >> 27;
	x *= 0x81dadef4bc2dd44dull;
	return x ^ (x >> 33);
}

/* ------------------------------------------------------------------ frames */

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	return sum;
}

static uint32_t frame_len_for(const struct opts *o, uint64_t seq, unsigned q)
{
	if (o->size_min == o->size_max)
		return o->size_min;
	return o->size_min + (uint32_t)(mix(seq * 31 + q) % (o->size_max - o->size_min + 1));
}

/* pattern(seq, i) is pattern_base[i] + seq * 7 (mod 256): a byte add per byte, which the compiler vectorizes;
 * computing the formula byte by byte made a 1514-byte frame cost microseconds (the generator, not the rings,
 * set the pace of every large-frame benchmark). */
static uint8_t pattern_base[MAX_FRAME];

static void pattern_init(void)
{
	for (uint32_t i = 0; i < MAX_FRAME; i++)
		pattern_base[i] = (uint8_t)(i * 13 + (i >> 8));
}

static uint8_t pattern(uint64_t seq, uint32_t i)
{
	return (uint8_t)(seq * 7 + i * 13 + (i >> 8));
}

/* Ethernet + IPv4 + UDP to 10.0.0.2:9 from 10.0.0.1:9, then the stamp and the pattern. The headers depend on
 * the length only: they are built once per length and copied, as a NIC generator would. */
static void build_frame(const struct opts *o, uint8_t *f, uint32_t len, uint64_t seq, uint16_t q)
{
	static uint8_t tmpl[HDRS];
	static uint32_t tmpl_len;
	if (tmpl_len != len) {
		static const uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x02};
		memcpy(tmpl, dst, 6);
		memcpy(tmpl + 6, o->mac, 6);
		tmpl[12] = 0x08;
		tmpl[13] = 0x00;
		uint16_t iplen = (uint16_t)(len - 14);
		uint8_t iph[20] = {0x45, 0, (uint8_t)(iplen >> 8), (uint8_t)iplen, 0, 0, 0x40, 0, 64, 17, 0, 0,
				   10, 0, 0, 1, 10, 0, 0, 2};
		uint16_t c = csum_fold(csum_add(0, iph, 20));
		iph[10] = (uint8_t)(c >> 8);
		iph[11] = (uint8_t)c;
		memcpy(tmpl + 14, iph, 20);
		uint16_t ulen = (uint16_t)(iplen - 20);
		uint8_t uh[8] = {0, 9, 0, 9, (uint8_t)(ulen >> 8), (uint8_t)ulen, 0, 0}; /* UDP checksum 0: none */
		memcpy(tmpl + 34, uh, 8);
		tmpl_len = len;
	}
	/* --static: sequence 0 in every stamp, and headers and stamp are written only into a buffer that does not
	 * hold them yet: after the first round of the pool no frame is written at all, so the generator does not
	 * take each frame's cache line back from the core that read it (the switch under test). */
	uint8_t stamp[STAMP];
	uint64_t sq = o->static_frames ? 0 : seq;
	uint16_t l16 = (uint16_t)len;
	memcpy(stamp, &sq, 8);
	memcpy(stamp + 8, &q, 2);
	memcpy(stamp + 10, &l16, 2);
	/* --flows: the frames of a burst belong to different flows (what a flow-caching switch must look up),
	 * counted by the generated sequence so the flow count holds whichever buffer a frame goes out in. The
	 * template with that UDP source port instead of 9. */
	const uint8_t *hdrs = tmpl;
	uint8_t flow_hdrs[HDRS];
	if (o->flows > 1 || o->src_macs > 1) {
		memcpy(flow_hdrs, tmpl, HDRS);
		hdrs = flow_hdrs;
	}
	if (o->flows > 1) {
		uint16_t sp = (uint16_t)(1024 + seq % o->flows);
		flow_hdrs[34] = (uint8_t)(sp >> 8);
		flow_hdrs[35] = (uint8_t)sp;
	}
	/* --src-macs: as many guests behind one port (or one guest forging addresses), for a learning switch. */
	if (o->src_macs > 1) {
		uint32_t low = ((uint32_t)o->mac[3] << 16 | (uint32_t)o->mac[4] << 8 | o->mac[5]) +
			       (uint32_t)(seq % o->src_macs);
		flow_hdrs[9] = (uint8_t)(low >> 16);
		flow_hdrs[10] = (uint8_t)(low >> 8);
		flow_hdrs[11] = (uint8_t)low;
	}
	if (o->static_frames) {
		/* The stamp's fields compared where they are, not the array just built: a wide load of bytes
		 * written by narrower stores a moment ago misses store forwarding, every frame. */
		uint64_t c_sq;
		uint16_t c_q, c_l;
		memcpy(&c_sq, f + HDRS, 8);
		memcpy(&c_q, f + HDRS + 8, 2);
		memcpy(&c_l, f + HDRS + 10, 2);
		if (c_sq == sq && c_q == q && c_l == l16 && memcmp(f, hdrs, HDRS) == 0)
			return;
	}
	memcpy(f, hdrs, HDRS);
	memcpy(f + HDRS, stamp, STAMP);
	if (o->no_payload || o->static_frames)
		return;
	uint8_t k = (uint8_t)(seq * 7);
	for (uint32_t i = HDRS + STAMP; i < len; i++)
		f[i] = (uint8_t)(pattern_base[i] + k);
}

/* Check a received generated frame and account for it in its queue's sequence. */
static void verify_frame(struct gen *g, const uint8_t *f, uint32_t len)
{
	if (len < HDRS + STAMP || f[12] != 0x08 || f[13] != 0x00 || f[23] != 17) {
		g->qs[0].corrupt++;
		return;
	}
	uint64_t seq;
	uint16_t q, l16;
	memcpy(&seq, f + HDRS, 8);
	memcpy(&q, f + HDRS + 8, 2);
	memcpy(&l16, f + HDRS + 10, 2);
	if (q >= MAX_QP || l16 != (uint16_t)len) {
		g->qs[0].corrupt++;
		return;
	}
	struct qstats *s = &g->qs[q];
	for (uint32_t i = HDRS + STAMP; i < len; i++) {
		if (f[i] != pattern(seq, i)) {
			s->corrupt++;
			return;
		}
	}
	if (seq == s->next_seq) {
		s->next_seq++;
	} else if (seq > s->next_seq) {
		s->lost += seq - s->next_seq;
		s->next_seq = seq + 1;
	} else {
		s->dup++;
	}
}

/* ------------------------------------------------------------------ latency */

/* Frames of sequence numbers seqs[0..n) were taken by the port at t. */
static void lat_sent(struct lat *l, const uint64_t *seqs, unsigned n, uint64_t t)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t seq = seqs[i];
		l->t_send[seq % LAT_SLOTS] = t;
		l->seq_of[seq % LAT_SLOTS] = seq;
		l->inflight++;
	}
	if (n)
		l->last_event = t;
}

/* A frame came back (or through): one sample, if it is one we are still waiting for. */
static void lat_arrived(struct lat *l, const uint8_t *f, uint32_t len, uint64_t t)
{
	if (len < HDRS + STAMP || f[12] != 0x08 || f[13] != 0x00 || f[23] != 17)
		return;
	uint64_t seq;
	memcpy(&seq, f + HDRS, 8);
	unsigned s = seq % LAT_SLOTS;
	if (l->seq_of[s] != seq || !l->t_send[s])
		return; /* a late one already counted as a timeout, or a duplicate */
	if (l->nsamples < LAT_MAX_SAMPLES)
		l->samples[l->nsamples++] = t - l->t_send[s];
	l->t_send[s] = 0;
	l->inflight--;
	l->last_event = t;
}

/* Nothing moved for LAT_TIMEOUT_S with frames in flight: they are lost; the window opens again. */
static void lat_expire(struct lat *l, uint64_t t)
{
	if (!l->inflight || t - l->last_event < (uint64_t)(LAT_TIMEOUT_S * 1e9))
		return;
	for (unsigned s = 0; s < LAT_SLOTS; s++)
		if (l->t_send[s]) {
			l->t_send[s] = 0;
			l->timeouts++;
		}
	l->inflight = 0;
	l->last_event = t;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The samples' percentiles in microseconds, as a JSON object (sorts the samples). */
static void lat_json(FILE *f, struct lat *l)
{
	qsort(l->samples, l->nsamples, sizeof(l->samples[0]), cmp_u64);
	double sum = 0;
	for (uint64_t i = 0; i < l->nsamples; i++)
		sum += (double)l->samples[i];
#define PCT(p) (l->nsamples ? (double)l->samples[(uint64_t)((double)(l->nsamples - 1) * (p))] / 1e3 : 0)
	fprintf(f,
		"{\"samples\":%llu,\"timeouts\":%llu,\"min_us\":%.3f,\"p50_us\":%.3f,\"p90_us\":%.3f,\"p99_us\":%.3f,"
		"\"p999_us\":%.3f,\"max_us\":%.3f,\"mean_us\":%.3f}",
		(unsigned long long)l->nsamples, (unsigned long long)l->timeouts, PCT(0), PCT(0.5), PCT(0.9), PCT(0.99),
		PCT(0.999), PCT(1), l->nsamples ? sum / (double)l->nsamples / 1e3 : 0);
#undef PCT
}

static void swap_mac(uint8_t *f)
{
	uint8_t t[6];
	memcpy(t, f, 6);
	memcpy(f, f + 6, 6);
	memcpy(f + 6, t, 6);
}

/* Turn an ARP request or ICMP echo request into its reply, in place. Returns false for anything else. */
static bool icmpecho(const struct opts *o, uint8_t *f, uint32_t len)
{
	if (len >= 42 && f[12] == 0x08 && f[13] == 0x06) {
		uint8_t *a = f + 14;
		if (a[6] != 0 || a[7] != 1) /* ARP request only */
			return false;
		uint8_t sha[6], spa[4], tpa[4];
		memcpy(sha, a + 8, 6);
		memcpy(spa, a + 14, 4);
		memcpy(tpa, a + 24, 4);
		a[7] = 2;
		memcpy(a + 8, o->mac, 6);
		memcpy(a + 14, tpa, 4);
		memcpy(a + 18, sha, 6);
		memcpy(a + 24, spa, 4);
		memcpy(f, sha, 6);
		memcpy(f + 6, o->mac, 6);
		return true;
	}
	if (len >= 14 + 20 + 8 && f[12] == 0x08 && f[13] == 0x00 && f[23] == 1) {
		uint8_t *ip = f + 14;
		uint32_t ihl = (uint32_t)(ip[0] & 0xf) * 4;
		uint32_t tot = (uint32_t)(ip[2] << 8 | ip[3]);
		if (ihl < 20 || tot < ihl + 8 || 14 + tot > len)
			return false;
		uint8_t *icmp = ip + ihl;
		if (icmp[0] != 8)
			return false;
		uint8_t t[4];
		memcpy(t, ip + 12, 4);
		memcpy(ip + 12, ip + 16, 4);
		memcpy(ip + 16, t, 4); /* the IP checksum does not change: same words, other order */
		icmp[0] = 0;
		icmp[2] = icmp[3] = 0;
		uint16_t c = csum_fold(csum_add(0, icmp, tot - ihl));
		icmp[2] = (uint8_t)(c >> 8);
		icmp[3] = (uint8_t)c;
		swap_mac(f);
		memcpy(f + 6, o->mac, 6);
		return true;
	}
	return false;
}

/* ------------------------------------------------------------------ ports */

/* The device side's queue qidx (vhost-user or VDUSE): acquire, notify, release. */
static struct vhd_vq *dev_acquire(struct gen *g, unsigned qidx)
{
	return g->vd ? vhd_vduse_queue_acquire(g->vd, qidx) : vhd_vu_queue_acquire(g->dev, qidx);
}

static void dev_notify(struct gen *g, unsigned qidx)
{
	if (g->vd)
		vhd_vduse_queue_notify(g->vd, qidx);
	else
		vhd_vu_queue_notify(g->dev, qidx);
}

static void dev_release(struct gen *g, unsigned qidx)
{
	if (g->vd)
		vhd_vduse_queue_release(g->vd, qidx);
	else
		vhd_vu_queue_release(g->dev, qidx);
}

/* Receive up to n frames on queue pair q. */
static int port_rx(struct gen *g, unsigned q, struct vhd_pkt **pkts, unsigned n)
{
	int r;
	if (g->o.backend) {
		struct vhd_vq *tx = dev_acquire(g, 2 * q + 1);
		if (!tx)
			return 0;
		r = vhd_net_dev_dequeue(tx, &g->cfg, g->pool[q], pkts, n, &g->nst[2 * q + 1]);
		/* Even with no packet produced, dropped frames' chains may have been given back. */
		if (r >= 0 && vhd_vq_need_notify(tx))
			dev_notify(g, 2 * q + 1);
		dev_release(g, 2 * q + 1);
	} else {
		struct vhd_vq *rx = vhd_fe_vq(g->fe, 2 * q);
		if (!rx)
			return 0;
		r = vhd_net_drv_recv(rx, &g->cfg, pkts, n, &g->nst[2 * q]);
	}
	return r < 0 ? 0 : r;
}

/* Frontend: give the receive queue new buffers, after the frames port_rx() returned were freed or passed on:
 * then the pool hands back the buffers just freed, in the same order, and the descriptors they left need no
 * store (vhd_pkt_alloc_bulk()). */
static void port_refill(struct gen *g, unsigned q)
{
	if (g->o.backend)
		return;
	struct vhd_vq *rx = vhd_fe_vq(g->fe, 2 * q);
	if (!rx)
		return;
	int a = vhd_net_drv_refill(rx, &g->cfg, g->pool[q], &g->nst[2 * q]);
	if (a > 0 && vhd_vq_need_notify(rx))
		vhd_fe_kick(g->fe, 2 * q);
}

/* Send pkts; returns how many the port took (now its problem); the rest stay with the caller. */
static unsigned port_tx(struct gen *g, unsigned q, struct vhd_pkt **pkts, unsigned n)
{
	int r;
	if (g->o.backend) {
		struct vhd_vq *rx = dev_acquire(g, 2 * q);
		if (!rx)
			return 0;
		r = vhd_net_dev_enqueue(rx, &g->cfg, pkts, n, &g->nst[2 * q]);
		if (r >= 0 && vhd_vq_need_notify(rx))
			dev_notify(g, 2 * q);
		dev_release(g, 2 * q);
		if (r > 0)
			vhd_pkt_free_bulk(pkts, (unsigned)r); /* enqueue copied them */
	} else {
		struct vhd_vq *tx = vhd_fe_vq(g->fe, 2 * q + 1);
		if (!tx)
			return 0;
		r = vhd_net_drv_xmit(tx, &g->cfg, pkts, n, &g->nst[2 * q + 1]);
		if (r > 0 && vhd_vq_need_notify(tx))
			vhd_fe_kick(g->fe, 2 * q + 1);
	}
	return r < 0 ? 0 : (unsigned)r;
}

static void note_traffic(struct gen *g)
{
	/* t_last only sets the end of the measured interval. Polling flat out (--poll, what benchmarks use), a
	 * clock_gettime() per burst showed in perf, and every 16th burst (microseconds apart at those rates)
	 * is as good. */
	if (g->started && g->o.poll && (++g->traffic_ticks & 15) != 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &g->t_last);
	if (!g->started) {
		g->t_first = g->t_last;
		g->started = true;
	}
}

static uint64_t total(const struct gen *g, bool rx)
{
	uint64_t t = 0;
	for (unsigned q = 0; q < g->o.queues; q++)
		t += rx ? g->qs[q].rx : g->qs[q].tx;
	return t;
}

/* Account for n received frames: counts, --verify, and --latency samples when they arrive at this port. */
static void rx_account(struct gen *g, unsigned q, struct vhd_pkt **pkts, int n)
{
	uint64_t t = g->lat && n > 0 ? now_ns() : 0;
	for (int i = 0; i < n; i++) {
		const uint8_t *f = vhd_pkt_data(pkts[i]);
		if (g->o.verify)
			verify_frame(g, f, pkts[i]->len);
		if (g->lat)
			lat_arrived(g->lat, f, pkts[i]->len, t);
		g->qs[q].rx_bytes += pkts[i]->len;
	}
	g->qs[q].rx += n > 0 ? (uint64_t)n : 0;
}

/* Generating modes: frames coming back (a peer in io or macswap mode, or generating itself for txrx) are
 * counted, checked with --verify, timed with --latency. A frontend in plain txonly reads (counts and drops)
 * them too, keeping its receive ring stocked as a guest's driver does: a device that loops frames back
 * (vdpa_sim_net) stops taking our TX frames once it finds that ring full (it then completes one TX frame per
 * kick). A back-end in plain txonly does not read what its driver sends. */
static unsigned rx_verify(struct gen *g, unsigned q)
{
	if (!g->o.verify && !g->o.latency && g->o.mode != M_TXRX && g->o.backend)
		return 0;
	if (g->sink)
		return 0; /* what comes back arrives at the sink */
	struct vhd_pkt *pkts[MAX_BURST];
	int n = port_rx(g, q, pkts, g->o.burst);
	rx_account(g, q, pkts, n);
	if (n > 0)
		vhd_pkt_free_bulk(pkts, (unsigned)n);
	port_refill(g, q);
	return n > 0 ? (unsigned)n : 0;
}

/* ------------------------------------------------------------------ tap */

/*
 * --mode tap bridges the vhost-user port to a Linux tap interface, so that the host's own network stack (ping,
 * UDP, TCP, with checksum and segmentation offloads carried in the virtio-net header both ways) is the peer of a
 * guest or of a remote device. Syscalls per frame are fine here: this mode is for correctness, not speed.
 */
static int tap_open(struct gen *g)
{
	for (unsigned q = 0; q < g->o.queues; q++) {
		int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		g->tap_fd[q] = fd;
		struct ifreq ifr;
		memset(&ifr, 0, sizeof(ifr));
		ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (g->o.queues > 1 ? IFF_MULTI_QUEUE : 0);
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", g->o.tap);
		if (ioctl(fd, TUNSETIFF, &ifr) < 0)
			return -errno;
		/* The 12-byte header (num_buffers included, always 0 here) whatever the port negotiated; the
		 * fields are little-endian, as virtio 1.x has them. */
		int hs = (int)sizeof(struct virtio_net_hdr_mrg_rxbuf), le = 1;
		if (ioctl(fd, TUNSETVNETHDRSZ, &hs) < 0 || ioctl(fd, TUNSETVNETLE, &le) < 0)
			return -errno;
	}
	return 0;
}

/*
 * Tell the kernel which offloads the port can carry towards its peer, so that it hands us partially
 * checksummed and unsegmented frames only when the peer negotiated them (a backend's peer receives with the
 * GUEST_* features, a frontend's device with the HOST_* ones).
 */
static void tap_set_offloads(struct gen *g)
{
	if (g->o.mode != M_TAP || g->tap_fd[0] < 0 || !g->cfg_ok)
		return;
	bool csum = g->o.backend ? g->cfg.rx_csum : g->cfg.tx_csum;
	unsigned gso = g->o.backend ? g->cfg.rx_gso : g->cfg.tx_gso;
	bool ecn = g->o.backend ? g->cfg.rx_ecn : g->cfg.tx_ecn;
	unsigned off = 0;
	if (csum) {
		off |= TUN_F_CSUM;
		if (gso & (1u << VHD_NET_META_GSO_TCPV4))
			off |= TUN_F_TSO4;
		if (gso & (1u << VHD_NET_META_GSO_TCPV6))
			off |= TUN_F_TSO6;
		if (ecn && (off & (TUN_F_TSO4 | TUN_F_TSO6)))
			off |= TUN_F_TSO_ECN;
	}
	if (off == g->tap_offloads)
		return;
	if (ioctl(g->tap_fd[0], TUNSETOFFLOAD, (unsigned long)off) < 0)
		fprintf(stderr, "vhost-pktgen: tap %s: TUNSETOFFLOAD 0x%x: %s\n", g->o.tap, off, strerror(errno));
	else
		g->tap_offloads = off;
}

static unsigned run_tap(struct gen *g, unsigned q)
{
	struct qstats *s = &g->qs[q];
	struct vhd_pkt *pkts[MAX_BURST];
	uint8_t h[VHD_NET_HDR_SIZE]; /* what the tap reads and writes */
	unsigned moved = 0;
	int fd = g->tap_fd[q];

	/* Port -> tap. */
	int n = port_rx(g, q, pkts, g->o.burst);
	for (int i = 0; i < n; i++) {
		struct vhd_pkt *p = pkts[i];
		vhd_net_meta_to_hdr(&p->meta, h);
		struct iovec iov[2] = {{h, sizeof(h)}, {vhd_pkt_data(p), p->len}};
		s->rx++;
		s->rx_bytes += p->len;
		if (writev(fd, iov, 2) < 0) {
			if (errno == EAGAIN || errno == ENOBUFS)
				s->drops++;
			else
				s->errors++; /* e.g. the kernel refused the header */
		}
	}
	if (n > 0) {
		vhd_pkt_free_bulk(pkts, (unsigned)n);
		moved += (unsigned)n;
	}
	port_refill(g, q);

	/* Tap -> port. Frames the port has no room for wait here, and the tap is not read until they are gone:
	 * the backlog then builds up in the tap's own queue (which drops when full), the way vhost-net pushes
	 * back on a guest that reads slowly. */
	struct vhd_pkt **pend = g->pending[q];
	unsigned have = g->npending[q], got = 0;
	/* Sent frames otherwise stay in the TX ring until it needs room, and the pool is small (big buffers):
	 * collect them first so that the receive ring can be kept stocked. */
	if (!g->o.backend)
		port_tx(g, q, NULL, 0);
	if (have < g->o.burst)
		got = vhd_pkt_alloc_bulk(g->pool[q], pend + have, g->o.burst - have);
	unsigned nread = 0;
	while (nread < got) {
		struct vhd_pkt *p = pend[have + nread];
		struct iovec iov[2] = {{h, sizeof(h)}, {vhd_pkt_data(p), vhd_pkt_tailroom(p)}};
		ssize_t r = readv(fd, iov, 2);
		if (r < (ssize_t)sizeof(h))
			break; /* EAGAIN: nothing more for now */
		p->len = (uint32_t)(r - (ssize_t)sizeof(h));
		vhd_net_hdr_to_meta(h, VHD_NET_META_F_NEEDS_CSUM | VHD_NET_META_F_DATA_VALID, &p->meta);
		nread++;
	}
	vhd_pkt_free_bulk(pend + have + nread, got - nread); /* never read into */
	have += nread;
	unsigned sent = have ? port_tx(g, q, pend, have) : 0;
	memmove(pend, pend + sent, (have - sent) * sizeof(pend[0]));
	g->npending[q] = have - sent;
	s->tx += sent;
	moved += sent;
	if (moved)
		note_traffic(g);
	return moved;
}

/* One burst of the mode's work on queue pair q. Returns frames moved. */
static unsigned run_queue(struct gen *g, unsigned q)
{
	struct qstats *s = &g->qs[q];
	struct vhd_pkt *pkts[MAX_BURST];
	unsigned moved = 0;
	if (g->o.mode == M_TAP)
		return run_tap(g, q);
	if (generates(g->o.mode)) {
		/* --count is split evenly over the queues, so the total comes out exact. */
		uint64_t quota = g->o.count / g->o.queues + (q < g->o.count % g->o.queues);
		unsigned have = g->npending[q];
		if (g->o.count && s->tx + have >= quota && have == 0)
			return 0;
		/* Top the pending burst up with new frames, then offer it. */
		unsigned want = g->o.burst - have;
		if (g->o.pps > 0) {
			/* Rate: no more frames than the elapsed time allows since the first one. */
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			double allowed = g->started ? secs(&g->t_first, &now) * g->o.pps / g->o.queues + 1 : 1;
			double room = allowed - (double)(s->tx + have);
			if (room < want)
				want = room > 0 ? (unsigned)room : 0;
			if (!g->started)
				note_traffic(g);
		}
		if (g->o.count && want > quota - s->tx - have)
			want = (unsigned)(quota - s->tx - have);
		uint64_t t = 0, seqs[MAX_BURST];
		if (g->lat) {
			/* At most --window frames in flight, counting those built but not yet taken. */
			t = now_ns();
			lat_expire(g->lat, t);
			unsigned busy = g->lat->inflight + have;
			if (want > g->o.window - busy)
				want = busy < g->o.window ? g->o.window - busy : 0;
		}
		if (!g->o.backend && want) {
			/* Collect finished buffers before allocating, as many as the burst lacks room for, so
			 * that the pool hands those back (see vhd_net_drv_reclaim()). */
			struct vhd_vq *tx = vhd_fe_vq(g->fe, 2 * q + 1);
			if (tx && vhd_vq_room(tx) < have + want)
				vhd_net_drv_reclaim(tx, have + want);
		}
		unsigned got = vhd_pkt_alloc_bulk(g->pool[q], g->pending[q] + have, want);
		for (unsigned i = 0; i < got; i++) {
			struct vhd_pkt *p = g->pending[q][have + i];
			uint32_t len = frame_len_for(&g->o, s->gen_seq, q);
			build_frame(&g->o, vhd_pkt_data(p), len, s->gen_seq++, (uint16_t)q);
			p->len = len;
		}
		have += got;
		if (g->lat)
			for (unsigned i = 0; i < have; i++)
				memcpy(&seqs[i], (const uint8_t *)vhd_pkt_data(g->pending[q][i]) + HDRS, 8);
		unsigned sent = port_tx(g, q, g->pending[q], have);
		if (g->lat)
			lat_sent(g->lat, seqs, sent, t);
		memmove(g->pending[q], g->pending[q] + sent, (have - sent) * sizeof(pkts[0]));
		g->npending[q] = have - sent;
		s->tx += sent;
		moved = sent + rx_verify(g, q);
	} else {
		int n = port_rx(g, q, pkts, g->o.burst);
		if (n <= 0) {
			port_refill(g, q); /* the first call stocks the ring */
			return 0;
		}
		rx_account(g, q, pkts, n);
		moved = (unsigned)n;
		unsigned keep = 0;
		for (int i = 0; i < n; i++) {
			struct vhd_pkt *p = pkts[i];
			bool send = false;
			switch (g->o.mode) {
			case M_IO:
				send = true;
				break;
			case M_MACSWAP:
				if (p->len >= 14)
					swap_mac(vhd_pkt_data(p));
				send = true;
				break;
			case M_ICMPECHO:
				send = icmpecho(&g->o, vhd_pkt_data(p), p->len);
				break;
			default:
				break;
			}
			if (send)
				pkts[keep++] = p;
			else
				vhd_pkt_free(p);
		}
		if (keep) {
			unsigned sent = port_tx(g, q, pkts, keep);
			s->tx += sent;
			/* Forwarding modes do not wait: what the peer has no room for is dropped, as testpmd does. */
			s->drops += keep - sent;
			vhd_pkt_free_bulk(pkts + sent, keep - sent);
		}
		port_refill(g, q);
	}
	if (moved)
		note_traffic(g);
	return moved;
}

/* ------------------------------------------------------------------ control */

static void fe_event(struct vhd_fe *fe, enum vhd_fe_event ev, void *opaque)
{
	struct gen *g = opaque;
	if (ev == VHD_FE_UP) {
		g->cfg_ok = vhd_net_cfg_init(&g->cfg, vhd_fe_features(fe)) == 0;
		if (!g->cfg_ok)
			fprintf(stderr, "vhost-pktgen: negotiated features 0x%llx unusable\n",
				(unsigned long long)vhd_fe_features(fe));
		for (unsigned q = 0; q < g->o.queues; q++)
			vhd_net_drv_refill(vhd_fe_vq(fe, 2 * q), &g->cfg, g->pool[q], &g->nst[2 * q]);
		tap_set_offloads(g);
		/* The tap exists from here on: what a script waits for before configuring it. */
		if (g->o.transport == VHD_FE_TRANSPORT_VHOST_KERNEL)
			fprintf(stderr, "vhost-pktgen: vhost-kernel up on tap %s, features 0x%llx\n", g->o.vk_tap,
				(unsigned long long)vhd_fe_features(fe));
		/* What a script waits for before signalling us. */
		else if (g->o.transport == VHD_FE_TRANSPORT_VHOST_VDPA && !g->resets)
			fprintf(stderr, "vhost-pktgen: vhost-vdpa up on %s, features 0x%llx\n", g->o.path,
				(unsigned long long)vhd_fe_features(fe));
		if (g->resets)
			fprintf(stderr, "vhost-pktgen: up again after reset %u, %llu frames received before\n",
				g->resets, (unsigned long long)total(g, true));
	} else {
		g->cfg_ok = false;
		for (unsigned q = 0; q < 2 * g->o.queues; q++)
			vhd_net_drv_release(vhd_fe_vq(fe, q));
	}
}

static void be_event(struct vhd_vu_dev *dev, enum vhd_vu_event ev, unsigned qidx, void *opaque)
{
	struct gen *g = opaque;
	(void)qidx;
	if (ev == VHD_VU_QUEUE_STARTED) {
		g->cfg_ok = vhd_net_cfg_init(&g->cfg, vhd_vu_dev_features(dev)) == 0;
		tap_set_offloads(g);
	}
}

/* --set-mac: post MAC ADDR_SET once up (and again after each reset), report the device's answer. */
static void set_dev_mac(struct gen *g)
{
	const uint8_t *m = g->o.dev_mac;
	if (!vhd_fe_up(g->fe)) {
		g->mac_state = 0;
		return;
	}
	if (g->mac_state == 0) {
		int rc = vhd_fe_ctrl(g->fe, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, m, 6);
		if (rc == 0) {
			g->mac_state = 1;
		} else if (rc != -EBUSY) {
			fprintf(stderr, "vhost-pktgen: cannot set the device's MAC: %s\n", strerror(-rc));
			g->mac_state = 2;
		}
	} else if (g->mac_state == 1 && vhd_fe_ctrl_result(g->fe) != -EINPROGRESS) {
		int rc = vhd_fe_ctrl_result(g->fe);
		fprintf(stderr, "vhost-pktgen: device MAC %02x:%02x:%02x:%02x:%02x:%02x: %s\n", m[0], m[1], m[2], m[3],
			m[4], m[5], rc == 0 ? "set" : strerror(-rc));
		g->mac_state = 2;
	}
}

static void control(struct gen *g, int timeout_ms)
{
	struct pollfd p[2];
	unsigned n;
	int t;
	if (g->vd) {
		/* The device answers the kernel on its own thread: nothing to dispatch here, only the features to
		 * follow (the driver may reset and renegotiate at any time). */
		uint64_t f = vhd_vduse_dev_features(g->vd);
		if (vhd_vduse_dev_ready(g->vd) && (f != g->vd_features || !g->cfg_ok)) {
			g->vd_features = f;
			g->cfg_ok = vhd_net_cfg_init(&g->cfg, f) == 0;
			tap_set_offloads(g);
		}
		if (timeout_ms > 0)
			poll(NULL, 0, timeout_ms);
		return;
	}
	if (g->o.backend) {
		n = vhd_vu_dev_pollfds(g->dev, p, 2);
		t = vhd_vu_dev_timeout_ms(g->dev);
	} else {
		n = vhd_fe_pollfds(g->fe, p, 2);
		t = vhd_fe_timeout_ms(g->fe);
	}
	if (t >= 0 && (timeout_ms < 0 || t < timeout_ms))
		timeout_ms = t;
	if (poll(p, n, timeout_ms) < 0 && errno != EINTR)
		return;
	if (g->o.backend)
		vhd_vu_dev_dispatch(g->dev);
	else
		vhd_fe_dispatch(g->fe);
}

/* Zero the counters at the end of --warmup: what follows is what counts. */
static void reset_counts(struct gen *g)
{
	for (unsigned q = 0; q < g->o.queues; q++) {
		struct qstats *s = &g->qs[q];
		s->rx = s->rx_bytes = s->tx = s->tx_bytes = s->drops = s->errors = s->lost = s->dup = s->corrupt = 0;
	}
	memset(g->nst, 0, sizeof(g->nst));
	g->started = false;
	if (g->lat)
		g->lat->nsamples = g->lat->timeouts = 0;
}

/* One port's statistics: a JSON object (no newline) with --json, else a table. */
static void report(struct gen *g, FILE *f)
{
	double dt = g->started ? secs(&g->t_first, &g->t_last) : 0;
	struct qstats tot = {0};
	for (unsigned q = 0; q < g->o.queues; q++) {
		struct qstats *s = &g->qs[q];
		const struct vhd_net_stats *rx = &g->nst[g->o.backend ? 2 * q + 1 : 2 * q];
		const struct vhd_net_stats *tx = &g->nst[g->o.backend ? 2 * q : 2 * q + 1];
		s->tx_bytes = tx->bytes;
		s->errors = rx->bad_header + rx->too_big + rx->too_small + rx->gso_unsupported + rx->errors +
			    tx->bad_header + tx->too_big + tx->too_small + tx->gso_unsupported + tx->errors;
		tot.rx += s->rx, tot.rx_bytes += s->rx_bytes, tot.tx += s->tx, tot.tx_bytes += s->tx_bytes;
		tot.drops += s->drops, tot.errors += s->errors, tot.lost += s->lost, tot.dup += s->dup;
		tot.corrupt += s->corrupt;
	}
	double rx_mpps = dt > 0 ? (double)tot.rx / dt / 1e6 : 0, tx_mpps = dt > 0 ? (double)tot.tx / dt / 1e6 : 0;
	double rx_gbps = dt > 0 ? (double)tot.rx_bytes * 8 / dt / 1e9 : 0;
	double tx_gbps = dt > 0 ? (double)tot.tx_bytes * 8 / dt / 1e9 : 0;
	if (g->o.json) {
		fprintf(f, "{\"mode\":\"%s\",\"role\":\"%s\",\"seconds\":%.6f,\"features\":%llu,\"queues\":[",
			mode_names[g->o.mode], g->o.backend ? "backend" : "frontend", dt,
			(unsigned long long)g->cfg.features);
		for (unsigned q = 0; q < g->o.queues; q++) {
			struct qstats *s = &g->qs[q];
			fprintf(f,
				"%s{\"queue\":%u,\"rx_packets\":%llu,\"rx_bytes\":%llu,\"tx_packets\":%llu,\"tx_bytes\":%llu,"
				"\"drops\":%llu,\"errors\":%llu,\"lost\":%llu,\"dup\":%llu,\"corrupt\":%llu}",
				q ? "," : "", q, (unsigned long long)s->rx, (unsigned long long)s->rx_bytes,
				(unsigned long long)s->tx, (unsigned long long)s->tx_bytes, (unsigned long long)s->drops,
				(unsigned long long)s->errors, (unsigned long long)s->lost, (unsigned long long)s->dup,
				(unsigned long long)s->corrupt);
		}
		fprintf(f,
			"],\"total\":{\"rx_packets\":%llu,\"rx_bytes\":%llu,\"tx_packets\":%llu,\"tx_bytes\":%llu,"
			"\"drops\":%llu,\"errors\":%llu,\"lost\":%llu,\"dup\":%llu,\"corrupt\":%llu},"
			"\"rx_mpps\":%.4f,\"tx_mpps\":%.4f,\"rx_gbps\":%.4f,\"tx_gbps\":%.4f",
			(unsigned long long)tot.rx, (unsigned long long)tot.rx_bytes, (unsigned long long)tot.tx,
			(unsigned long long)tot.tx_bytes, (unsigned long long)tot.drops, (unsigned long long)tot.errors,
			(unsigned long long)tot.lost, (unsigned long long)tot.dup, (unsigned long long)tot.corrupt, rx_mpps,
			tx_mpps, rx_gbps, tx_gbps);
		if (g->lat && generates(g->o.mode) && !g->sink) {
			fprintf(f, ",\"latency\":");
			lat_json(f, g->lat);
		}
		if (g->fe && g->o.iommu) {
			struct vhd_fe_iotlb_stats fs;
			vhd_fe_iotlb_stats(g->fe, &fs);
			fprintf(f, ",\"iotlb\":{\"misses\":%llu,\"updates\":%llu,\"unmapped\":%llu}",
				(unsigned long long)fs.misses, (unsigned long long)fs.updates,
				(unsigned long long)fs.unmapped);
		}
		if (g->vd) {
			struct vhd_vduse_stats vs;
			vhd_vduse_dev_stats(g->vd, &vs);
			fprintf(f, ",\"vduse\":{\"requests\":%llu,\"requests_failed\":%llu,\"resets\":%llu,"
				"\"iotlb_updates\":%llu,\"queues_parked\":%llu,\"maps\":%llu,\"unmaps\":%llu}",
				(unsigned long long)vs.requests, (unsigned long long)vs.requests_failed,
				(unsigned long long)vs.resets, (unsigned long long)vs.iotlb_updates,
				(unsigned long long)vs.queues_parked, (unsigned long long)vs.maps,
				(unsigned long long)vs.unmaps);
		}
		if (g->dev && g->o.iommu) {
			struct vhd_vu_stats vs;
			vhd_vu_dev_stats(g->dev, &vs);
			fprintf(f, ",\"iotlb\":{\"misses\":%llu,\"updates\":%llu,\"invalidations\":%llu,\"refused\":%llu,"
				"\"waits\":%llu}", (unsigned long long)vs.iotlb_misses, (unsigned long long)vs.iotlb_updates,
				(unsigned long long)vs.iotlb_invalidations, (unsigned long long)vs.iotlb_refused,
				(unsigned long long)vs.iotlb_waits);
		}
		fputc('}', f);
		return;
	}
	fprintf(f, "vhost-pktgen %s (%s), %.3f s of traffic\n", mode_names[g->o.mode],
		g->o.backend ? "backend" : "frontend", dt);
	fprintf(f, "%-6s %14s %16s %14s %16s %10s %8s%s\n", "queue", "rx-packets", "rx-bytes", "tx-packets", "tx-bytes",
		"drops", "errors", g->o.verify ? "     lost      dup  corrupt" : "");
	for (unsigned q = 0; q <= g->o.queues; q++) {
		struct qstats *s = q < g->o.queues ? &g->qs[q] : &tot;
		char name[16];
		snprintf(name, sizeof(name), q < g->o.queues ? "%u" : "total", q);
		fprintf(f, "%-6s %14llu %16llu %14llu %16llu %10llu %8llu", name, (unsigned long long)s->rx,
			(unsigned long long)s->rx_bytes, (unsigned long long)s->tx, (unsigned long long)s->tx_bytes,
			(unsigned long long)s->drops, (unsigned long long)s->errors);
		if (g->o.verify)
			fprintf(f, " %8llu %8llu %8llu", (unsigned long long)s->lost, (unsigned long long)s->dup,
				(unsigned long long)s->corrupt);
		fputc('\n', f);
	}
	fprintf(f, "rx %.3f Mpps %.3f Gbit/s, tx %.3f Mpps %.3f Gbit/s\n", rx_mpps, rx_gbps, tx_mpps, tx_gbps);
}

static double mpps(const struct gen *g, bool rx)
{
	double dt = g->started ? secs(&g->t_first, &g->t_last) : 0;
	return dt > 0 ? (double)total(g, rx) / dt / 1e6 : 0;
}

/* The final report: one port's, or with --sink the generator's and the sink's and what crossed. */
static void report_all(struct gen *g)
{
	FILE *f = stdout;
	struct gen *k = g->sink;
	if (!k) {
		report(g, f);
		if (g->o.json)
			fputc('\n', f);
		else if (g->lat) {
			printf("latency (round trip): ");
			lat_json(f, g->lat);
			fputc('\n', f);
		}
		return;
	}
	uint64_t tx = total(g, false), rx = total(k, true);
	if (g->o.json) {
		fprintf(f, "{\"mode\":\"pvp\",\"generator\":");
		report(g, f);
		fprintf(f, ",\"sink\":");
		report(k, f);
		fprintf(f, ",\"tx_packets\":%llu,\"rx_packets\":%llu,\"loss\":%llu,\"tx_mpps\":%.4f,\"rx_mpps\":%.4f",
			(unsigned long long)tx, (unsigned long long)rx, (unsigned long long)(tx > rx ? tx - rx : 0),
			mpps(g, false), mpps(k, true));
		if (g->lat) {
			fprintf(f, ",\"latency\":");
			lat_json(f, g->lat);
		}
		fprintf(f, "}\n");
		return;
	}
	printf("generator (%s):\n", g->o.path);
	report(g, f);
	printf("sink (%s):\n", k->o.path);
	report(k, f);
	printf("pvp: sent %llu, received %llu, lost %llu; tx %.3f Mpps, rx %.3f Mpps\n", (unsigned long long)tx,
	       (unsigned long long)rx, (unsigned long long)(tx > rx ? tx - rx : 0), mpps(g, false), mpps(k, true));
	if (g->lat) {
		printf("latency (one way, generator to sink): ");
		lat_json(f, g->lat);
		fputc('\n', f);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vhost-pktgen (--backend PATH | --frontend PATH | --vduse NAME) [--server | --client]\n"
		"                    [--mode txonly|txrx|rxonly|io|macswap|icmpecho] [--size BYTES | --size MIN-MAX]\n"
		"                    [--burst N] [--queues N] [--count N | --duration S] [--packed] [--no-mrg]\n"
		"                    [--iommu [--iotlb-per-burst] | --iommu-lazy]\n"
		"                    [--in-order] [--verify] [--mac XX:XX:XX:XX:XX:XX] [--json] [--mode tap --tap NAME]\n"
		"                    [--pps N] [--sink PATH [--announce]] [--latency [--window N]] [--warmup S] [--poll]\n"
		"                    [--no-payload | --static] [--flows N] [--src-macs N] [--msg-timeout MS]\n"
		"                    [--transport vhost-user|vhost-kernel|vhost-vdpa] [--vhost-tap NAME] [--set-mac MAC]\n"
		"                    [--refuse-status BITS] [--refuse-iotlb]\n"
		"\n"
		"  --backend PATH   serve a virtio-net device on the vhost-user socket PATH (listening by default)\n"
		"  --frontend PATH  drive the device at PATH without a VM: a vhost-user socket (connecting by default),\n"
		"                   /dev/vhost-net (vhost-kernel: the kernel's vhost-net, whose back-end is the tap\n"
		"                   --tap NAME, created if missing, one tap queue per queue pair; split rings only,\n"
		"                   no --server, no --iommu), or /dev/vhost-vdpa-N (vhost-vdpa: a vDPA device; no\n"
		"                   --server, no --iommu)\n"
		"  --transport T    frontend: force the transport instead of picking it from PATH (vhost-user,\n"
		"                   vhost-kernel, vhost-vdpa)\n"
		"  --vhost-tap NAME vhost-kernel: vhost-net's tap, where --tap names the bridged tap (--mode tap)\n"
		"  --vduse NAME     serve a virtio-net device to this host's kernel through VDUSE, attached to the vDPA\n"
		"                   bus (virtio_vdpa makes a netdev of it); one queue pair; --packed offers packed rings;\n"
		"                   --json adds the device's counters (\"vduse\": requests, iotlb_updates, ...)\n"
		"  --refuse-status BITS  --vduse, a test knob: answer FAILED to the driver's SET_STATUS when it sets any\n"
		"                   of the status bits BITS (1..255: 4 DRIVER_OK, 8 FEATURES_OK), as a vDPA device\n"
		"                   refusing it; the driver sees the status not read back\n"
		"  --refuse-iotlb   --vduse, a test knob: answer FAILED to every UPDATE_IOTLB (a vhost-vdpa consumer's\n"
		"                   memory map then fails: EFAULT on Linux 6.12)\n"
		"  --set-mac MAC    frontend: once up, set the device's MAC through its control queue (CTRL_VQ,\n"
		"                   CTRL_MAC_ADDR), as a guest's driver does; the outcome goes to stderr\n"
		"  --server/--client  listen on PATH, or connect to it (and reconnect)\n"
		"  --mode           txonly: generate UDP frames (a frontend counts and drops what comes back);\n"
		"                   txrx: generate, and count what arrives (both ways);\n"
		"                   rxonly: count and drop; io: send back what arrives;\n"
		"                   macswap: io with MACs swapped; icmpecho: answer ARP and ICMP echo requests;\n"
		"                   tap: bridge every frame to and from the tap interface --tap NAME (created if\n"
		"                   missing; one tap queue per queue pair), offload headers included (default io)\n"
		"  --size           frame bytes without FCS, %d..%d, or a range for random sizes (default 64)\n"
		"  --burst N        frames per burst, 1..%d (default 32)\n"
		"  --queues N       queue pairs, 1..%d (default 1)\n"
		"  --count N        stop after N frames sent (txonly, txrx) or received (other modes)\n"
		"  --duration S     stop after S seconds of traffic; without --count/--duration run until SIGINT\n"
		"  --pps N          txonly: send at most N frames per second (default: as fast as the peer takes them)\n"
		"  --packed         frontend: ask for packed rings (a back-end always offers them; vhost-kernel has none)\n"
		"  --no-mrg         do not negotiate mergeable RX buffers\n"
		"  --iommu          backend: offer VIRTIO_F_ACCESS_PLATFORM (a guest behind a vIOMMU); frontend: require\n"
		"                   it, put our memory at IOVAs (unlike our virtual and guest-physical addresses), map\n"
		"                   it all with an IOTLB UPDATE per queue, answer the device's MISS requests; --json\n"
		"                   then adds the IOTLB counters (iotlb)\n"
		"  --iommu-lazy     frontend: --iommu, mapping nothing up front (every translation by a MISS)\n"
		"  --iotlb-per-burst  with --iommu: forget buffer translations after each burst (needed for guests\n"
		"                   in lazy invalidation, iommu.strict=0, whose NIC has no ATS; a miss per buffer)\n"
		"  --in-order       frontend: ask for VIRTIO_F_IN_ORDER\n"
		"  --inflight       frontend: inflight tracking (INFLIGHT_SHMFD): a back-end killed and\n"
		"                   restarted resumes the rings, resubmitting what it had taken and not used\n"
		"  --verify         check received generated frames: per-queue sequence, length, contents\n"
		"  --mac            our MAC (default 02:00:00:00:00:01)\n"
		"  --json           print the final statistics as one JSON object (rates in rx_mpps, tx_mpps, rx_gbps,\n"
		"                   tx_gbps: frame bytes without FCS)\n"
		"  --sink PATH      PVP: also drive the vhost-user device at PATH (same role and --server/--client as\n"
		"                   the first), in the same thread: the first port generates (txonly), the second\n"
		"                   counts what arrives (and checks it with --verify); the frames go to MAC\n"
		"                   02:00:00:00:00:02, from --mac; the sink is 02:00:00:00:00:02 and never sends\n"
		"                   (but see --announce).\n"
		"                   Generation starts once both ports are up. The JSON has \"generator\", \"sink\",\n"
		"                   tx_packets, rx_packets, loss, tx_mpps, rx_mpps\n"
		"  --announce       --sink: when the sink comes up it sends one broadcast frame from its MAC (EtherType\n"
		"                   0x88b5), so a learning switch forwards the generated frames to it instead of\n"
		"                   flooding them; generation starts 0.1 s after it\n"
		"  --latency        txonly: keep at most --window frames in flight (default 1) and time each one until it\n"
		"                   comes back (round trip through an echoing peer: io/macswap) or, with --sink, until it\n"
		"                   reaches the sink (one way through the switch); CLOCK_MONOTONIC; a frame not seen\n"
		"                   within 50 ms is a timeout. Prints samples, timeouts, min/p50/p90/p99/p99.9/max/mean\n"
		"                   in microseconds (JSON \"latency\": {\"p50_us\", ...}); one queue pair\n"
		"  --window N       --latency: frames in flight, 1..%d\n"
		"  --warmup S       the first S seconds of traffic are not counted (nor timed); --duration and --count\n"
		"                   start after them\n"
		"  --poll           never sleep: poll flat out like a DPDK PMD (by default, after 1000 empty rounds,\n"
		"                   50 us pauses between rounds until traffic comes back; --latency implies --poll)\n"
		"  --no-payload     generating modes: write headers and the 12-byte stamp only, leaving the rest of\n"
		"                   each frame as the buffer holds it (as testpmd txonly does); receivers must not\n"
		"                   --verify. For benchmarks, where filling every payload byte made the generator,\n"
		"                   not the stack, the limit for large frames\n"
		"  --static         generating modes: every frame of a length is the same (sequence 0 in the stamp),\n"
		"                   and a buffer that already holds it is not written again: after the pool's first\n"
		"                   round the generator writes no frame bytes at all. For measuring a switch (PVP)\n"
		"                   with the generator out of the way; receivers must not --verify; not --latency\n"
		"  --flows N        generating modes: frames take UDP source ports 1024..1024+N-1 in turn, N flows\n"
		"                   for a switch that caches flows (1..65536; default 1: source port 9). With\n"
		"                   --static only those two bytes of a frame are written\n"
		"  --src-macs N     generating modes: frames come from N source MACs in turn, --mac plus 0..N-1 in\n"
		"                   its low three bytes (1..65536; default 1), as from many guests behind one port\n"
		"  --msg-timeout MS  how long the vhost-user peer may take over a message before it is disconnected\n"
		"                   (logged) and, as a frontend, reconnected: backend: a message from the front-end\n"
		"                   or our reply it does not read; frontend: each reply it owes us, and a message\n"
		"                   it stalls in (1..3600000; default 2000)\n"
		"SIGUSR1 (frontend): reset the device under traffic and set it up again (vhd_fe_reset()).\n"
		"SIGUSR2 (frontend, vhost-vdpa): take our memory out of the device's IOTLB, and at the next SIGUSR2 map\n"
		"it again (vhd_fe_remap()): a device must stop touching it, then resume.\n"
		"At exit (or on SIGINT/SIGTERM) prints per-queue and total packets, bytes, drops, errors and Mpps.\n"
		"Exit status: 0, or 1 if --verify saw lost/duplicated/corrupted frames, 2 for bad usage.\n",
		MIN_FRAME, MAX_FRAME, MAX_BURST, MAX_QP, LAT_MAX_WINDOW);
}

/* An integer option in lo..hi; false (and a message) otherwise. */
static bool parse_count(const char *name, const char *arg, unsigned lo, unsigned hi, unsigned *out)
{
	*out = (unsigned)atoi(arg);
	if (*out < lo || *out > hi) {
		fprintf(stderr, "vhost-pktgen: --%s wants %u..%u\n", name, lo, hi);
		return false;
	}
	return true;
}

/* A number >= 0 (a rate, seconds); false (and a message) otherwise. */
static bool parse_nonneg(const char *name, const char *arg, double *out)
{
	*out = atof(arg);
	if (*out < 0) {
		fprintf(stderr, "vhost-pktgen: --%s wants a number >= 0\n", name);
		return false;
	}
	return true;
}

static int parse(int argc, char **argv, struct opts *o)
{
	*o = (struct opts){.mode = M_IO, .size_min = 64, .size_max = 64, .burst = 32, .queues = 1, .window = 1, .flows = 1,
			   .src_macs = 1, .mac = {0x02, 0, 0, 0, 0, 0x01}};
	bool mode_set = false;
	bool client = false;
	static const struct option lo[] = {
		{"backend", 1, 0, 'b'}, {"frontend", 1, 0, 'f'}, {"server", 0, 0, 'S'}, {"client", 0, 0, 'C'},
		{"mode", 1, 0, 'm'},    {"size", 1, 0, 's'},     {"burst", 1, 0, 'B'},  {"queues", 1, 0, 'q'},
		{"count", 1, 0, 'n'},   {"duration", 1, 0, 'd'}, {"packed", 0, 0, 'P'}, {"no-mrg", 0, 0, 'M'},
		{"in-order", 0, 0, 'I'}, {"verify", 0, 0, 'V'},  {"mac", 1, 0, 'a'},    {"json", 0, 0, 'j'},
		{"tap", 1, 0, 't'},     {"pps", 1, 0, 'r'},      {"sink", 1, 0, 'k'},   {"latency", 0, 0, 'L'},
		{"window", 1, 0, 'w'},  {"warmup", 1, 0, 'W'},   {"poll", 0, 0, 'p'},
		{"no-payload", 0, 0, 'N'}, {"static", 0, 0, 'Z'}, {"flows", 1, 0, 'F'}, {"announce", 0, 0, 'A'},
		{"src-macs", 1, 0, 'x'}, {"iommu", 0, 0, 'O'}, {"iommu-lazy", 0, 0, 'z'}, {"iotlb-per-burst", 0, 0, 'G'},
		{"vduse", 1, 0, 'U'},   {"inflight", 0, 0, 'T'}, {"msg-timeout", 1, 0, 1000},
		{"transport", 1, 0, 1002}, {"refuse-status", 1, 0, 1003}, {"refuse-iotlb", 0, 0, 1004}, {"vhost-tap", 1, 0, 'K'}, {"set-mac", 1, 0, 'D'}, {"help", 0, 0, 'h'},
		{0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'b':
		case 'f':
		case 'U':
			if (o->path) {
				fprintf(stderr, "vhost-pktgen: give one of --backend, --frontend or --vduse\n");
				return -1;
			}
			o->path = optarg;
			o->backend = c != 'f';
			o->vduse = c == 'U';
			break;
		case 'S':
			o->server = true;
			o->client_set = true;
			break;
		case 'C':
			client = true;
			o->client_set = true;
			break;
		case 'm': {
			int m = -1;
			for (int i = 0; i < M_NMODES; i++)
				if (!strcmp(optarg, mode_names[i]))
					m = i;
			if (m < 0) {
				fprintf(stderr, "vhost-pktgen: unknown mode '%s'\n", optarg);
				return -1;
			}
			o->mode = (enum mode)m;
			mode_set = true;
			break;
		}
		case 's': {
			unsigned a, b;
			int k = sscanf(optarg, "%u-%u", &a, &b);
			if (k == 1)
				b = a;
			if (k < 1 || a < MIN_FRAME || b > MAX_FRAME || a > b) {
				fprintf(stderr, "vhost-pktgen: --size wants %d..%d or MIN-MAX within it\n", MIN_FRAME,
					MAX_FRAME);
				return -1;
			}
			o->size_min = a;
			o->size_max = b;
			break;
		}
		case 'B':
			if (!parse_count("burst", optarg, 1, MAX_BURST, &o->burst))
				return -1;
			break;
		case 'q':
			if (!parse_count("queues", optarg, 1, MAX_QP, &o->queues))
				return -1;
			break;
		case 'n':
			o->count = strtoull(optarg, NULL, 10);
			break;
		case 'd':
			o->duration = atof(optarg);
			break;
		case 'P':
			o->packed = true;
			break;
		case 'M':
			o->no_mrg = true;
			break;
		case 'O':
			o->iommu = true;
			break;
		case 'z':
			o->iommu = o->iommu_lazy = true;
			break;
		case 'T':
			o->inflight = true;
			break;
		case 'G':
			o->per_burst = true;
			break;
		case 'I':
			o->in_order = true;
			break;
		case 'V':
			o->verify = true;
			break;
		case 'a':
		case 'D': {
			uint8_t *m = c == 'a' ? o->mac : o->dev_mac;
			if (sscanf(optarg, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) {
				fprintf(stderr, "vhost-pktgen: bad --%s\n", c == 'a' ? "mac" : "set-mac");
				return -1;
			}
			o->set_dev_mac |= c == 'D';
			break;
		}
		case 'j':
			o->json = true;
			break;
		case 'r':
			if (!parse_nonneg("pps", optarg, &o->pps))
				return -1;
			break;
		case 't':
			if (strlen(optarg) >= IFNAMSIZ) {
				fprintf(stderr, "vhost-pktgen: --tap name longer than %d\n", IFNAMSIZ - 1);
				return -1;
			}
			o->tap = optarg;
			break;
		case 'K':
			if (strlen(optarg) >= IFNAMSIZ) {
				fprintf(stderr, "vhost-pktgen: --vhost-tap name longer than %d\n", IFNAMSIZ - 1);
				return -1;
			}
			o->vk_tap = optarg;
			break;
		case 1002:
			if (vhd_fe_transport_parse(optarg, &o->transport) < 0) {
				fprintf(stderr, "vhost-pktgen: --transport wants vhost-user, vhost-kernel or vhost-vdpa, not %s\n",
					optarg);
				return -1;
			}
			o->transport_set = true;
			break;
		case 'k':
			o->sink = optarg;
			break;
		case 'L':
			o->latency = true;
			o->poll = true;
			break;
		case 'p':
			o->poll = true;
			break;
		case 'N':
			o->no_payload = true;
			break;
		case 'Z':
			o->static_frames = true;
			break;
		case 'A':
			o->announce = true;
			break;
		case 'F':
			if (!parse_count("flows", optarg, 1, 65536, &o->flows))
				return -1;
			break;
		case 'x':
			if (!parse_count("src-macs", optarg, 1, 65536, &o->src_macs))
				return -1;
			break;
		case 'w':
			if (!parse_count("window", optarg, 1, LAT_MAX_WINDOW, &o->window))
				return -1;
			break;
		case 'W':
			if (!parse_nonneg("warmup", optarg, &o->warmup))
				return -1;
			break;
		case 1000:
			if (!parse_count("msg-timeout", optarg, 1, 3600000, &o->msg_timeout_ms))
				return -1;
			break;
		case 1003:
			if (!parse_count("refuse-status", optarg, 1, 255, &o->refuse_status))
				return -1;
			break;
		case 1004:
			o->refuse_iotlb = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return -1;
		}
	}
	if (!o->path || optind != argc) {
		fprintf(stderr, "vhost-pktgen: give --backend PATH, --frontend PATH or --vduse NAME\n");
		return -1;
	}
	if (o->vduse && (o->queues != 1 || o->iommu || o->iommu_lazy || o->client_set || o->sink || o->in_order)) {
		fprintf(stderr, "vhost-pktgen: --vduse serves one queue pair to the kernel: no --queues, --iommu, "
				"--server/--client, --sink or --in-order\n");
		return -1;
	}
	if (!o->vduse && (o->refuse_status || o->refuse_iotlb)) {
		fprintf(stderr, "vhost-pktgen: --refuse-status and --refuse-iotlb are knobs of a --vduse device\n");
		return -1;
	}
	if (o->backend && o->transport_set) {
		fprintf(stderr, "vhost-pktgen: --transport is for a frontend (a back-end serves vhost-user)\n");
		return -1;
	}
	o->transport = o->backend ? VHD_FE_TRANSPORT_VHOST_USER : vhd_fe_transport_of(o->transport, o->path);
	if (o->transport == VHD_FE_TRANSPORT_VHOST_KERNEL) {
		if (o->mode != M_TAP && !o->vk_tap) {
			o->vk_tap = o->tap;
			o->tap = NULL;
		}
		if (!o->vk_tap) {
			fprintf(stderr, "vhost-pktgen: vhost-kernel (%s) needs its tap: --tap NAME (--vhost-tap NAME "
					"with --mode tap)\n", o->path);
			return -1;
		}
		const char *no = o->packed ? "--packed: vhost-net has no packed rings (VIRTIO_F_RING_PACKED)"
				 : o->server ? "--server: vhost-net is a device we open, nothing connects to us"
				 : o->iommu ? "--iommu: this frontend drives vhost-net without an IOTLB"
				 : o->sink ? "--sink" : NULL;
		if (no) {
			fprintf(stderr, "vhost-pktgen: %s; not with vhost-kernel\n", no);
			return -1;
		}
	} else if (o->vk_tap) {
		fprintf(stderr, "vhost-pktgen: --vhost-tap is for vhost-kernel\n");
		return -1;
	}
	if ((o->mode == M_TAP) != (o->tap != NULL)) {
		fprintf(stderr, "vhost-pktgen: --mode tap and --tap NAME go together\n");
		return -1;
	}
	if (o->inflight && o->backend) {
		fprintf(stderr, "vhost-pktgen: --inflight is for a frontend (a back-end always offers it)\n");
		return -1;
	}
	if (o->iommu_lazy && o->backend) {
		fprintf(stderr, "vhost-pktgen: --iommu-lazy is for a frontend (a back-end's IOTLB is the front-end's to fill)\n");
		return -1;
	}
	if (o->sink && !mode_set)
		o->mode = M_TXONLY;
	if (o->announce && !o->sink) {
		fprintf(stderr, "vhost-pktgen: --announce goes with --sink\n");
		return -1;
	}
	if (o->sink && o->mode != M_TXONLY) {
		fprintf(stderr, "vhost-pktgen: --sink goes with --mode txonly (the first port generates)\n");
		return -1;
	}
	if (o->latency && (!generates(o->mode) || o->queues != 1)) {
		fprintf(stderr, "vhost-pktgen: --latency wants --mode txonly or txrx and one queue pair\n");
		return -1;
	}
	if (o->static_frames && (o->latency || o->verify)) {
		fprintf(stderr, "vhost-pktgen: --static frames carry no sequence: not with --latency or --verify\n");
		return -1;
	}
	if (o->server && client) {
		fprintf(stderr, "vhost-pktgen: --server and --client exclude each other\n");
		return -1;
	}
	if (o->set_dev_mac && o->backend) {
		fprintf(stderr, "vhost-pktgen: --set-mac is for a frontend (it drives the device's control queue)\n");
		return -1;
	}
	if (o->transport == VHD_FE_TRANSPORT_VHOST_VDPA && (o->server || o->iommu || o->sink)) {
		fprintf(stderr, "vhost-pktgen: a vhost-vdpa device takes no --server, --iommu or --sink\n");
		return -1;
	}
	/* Defaults: a back-end listens, a frontend connects. */
	if (!o->client_set)
		o->server = o->backend;
	return 0;
}

/* Create g's device or frontend and its packet pools. */
static int open_port(struct gen *g)
{
	unsigned nbufs = g->o.mode == M_TAP ? TAP_POOL_BUFS : POOL_BUFS;
	uint32_t buf_size = g->o.mode == M_TAP ? TAP_BUF_SIZE : BUF_SIZE;
	int rc;
	if (g->o.vduse) {
		uint64_t f = vhd_vduse_default_features();
		if (g->o.no_mrg)
			f &= ~VHD_BIT(VIRTIO_NET_F_MRG_RXBUF);
		if (!g->o.packed)
			f &= ~VHD_BIT(VIRTIO_F_RING_PACKED);
		struct vhd_vduse_config c = {.name = g->o.path, .features = f, .attach = true,
					     .refuse_status = (uint8_t)g->o.refuse_status, .refuse_iotlb = g->o.refuse_iotlb};
		memcpy(c.mac, g->o.mode == M_TAP ? (const uint8_t[6]){0} : g->o.mac, 6);
		rc = vhd_vduse_dev_create(&c, &g->vd);
		for (unsigned q = 0; rc == 0 && q < g->o.queues; q++)
			rc = vhd_pktpool_create(nbufs, buf_size, &g->pool[q]);
	} else if (g->o.backend) {
		uint64_t f = vhd_vu_default_features();
		if (g->o.no_mrg)
			f &= ~VHD_BIT(VIRTIO_NET_F_MRG_RXBUF);
		if (g->o.iommu)
			f |= VHD_BIT(VIRTIO_F_ACCESS_PLATFORM);
		/* A bridge forwards whatever MAC the guest uses and has none of its own to offer. */
		static const uint8_t no_mac[6];
		struct vhd_vu_config c = {.path = g->o.path, .client = !g->o.server,
					  .max_queue_pairs = (uint16_t)g->o.queues, .features = f, .mac = {0},
					  .iotlb_per_burst = g->o.per_burst, .msg_timeout_ms = g->o.msg_timeout_ms,
					  .event = be_event, .opaque = g, .name = "pktgen"};
		memcpy(c.mac, g->o.mode == M_TAP ? no_mac : g->o.mac, 6);
		rc = vhd_vu_dev_create(&c, &g->dev);
		for (unsigned q = 0; rc == 0 && q < g->o.queues; q++)
			rc = vhd_pktpool_create(nbufs, buf_size, &g->pool[q]);
	} else {
		uint64_t f = vhd_fe_default_features();
		if (g->o.no_mrg)
			f &= ~VHD_BIT(VIRTIO_NET_F_MRG_RXBUF);
		if (g->o.packed)
			f |= VHD_BIT(VIRTIO_F_RING_PACKED);
		if (g->o.in_order)
			f |= VHD_BIT(VIRTIO_F_IN_ORDER);
		if (g->o.set_dev_mac)
			f |= VHD_BIT(VIRTIO_NET_F_CTRL_VQ) | VHD_BIT(VIRTIO_NET_F_CTRL_MAC_ADDR);
		/* Bridging a kernel's stack: carry its checksum and segmentation offloads both ways. */
		if (g->o.mode == M_TAP)
			f |= VHD_BIT(VIRTIO_NET_F_CSUM) | VHD_BIT(VIRTIO_NET_F_GUEST_CSUM) |
			     VHD_BIT(VIRTIO_NET_F_HOST_TSO4) | VHD_BIT(VIRTIO_NET_F_HOST_TSO6) |
			     VHD_BIT(VIRTIO_NET_F_GUEST_TSO4) | VHD_BIT(VIRTIO_NET_F_GUEST_TSO6);
		struct vhd_fe_config c = {.transport = g->o.transport, .tap = g->o.vk_tap, .path = g->o.path, .server = g->o.server, .queue_pairs = (uint16_t)g->o.queues,
					  .features = f, .buf_area_size = (size_t)nbufs * buf_size,
					  .iommu = g->o.iommu, .iommu_lazy = g->o.iommu_lazy, .inflight = g->o.inflight,
					  .reply_timeout_ms = g->o.msg_timeout_ms, .event = fe_event, .opaque = g, .name = "pktgen"};
		rc = vhd_fe_create(&c, &g->fe);
		for (unsigned q = 0; rc == 0 && q < g->o.queues; q++) {
			size_t len;
			void *area = vhd_fe_buf_area(g->fe, q, &len);
			rc = vhd_pktpool_create_in(area, len, vhd_fe_buf_iova(g->fe, q), nbufs, buf_size, &g->pool[q]);
		}
	}
	if (rc < 0)
		fprintf(stderr, "vhost-pktgen: cannot set up %s at %s: %s\n",
			g->o.vduse ? "VDUSE device" : g->o.backend ? "back-end" : "frontend",
			g->o.path, strerror(-rc));
	return rc;
}

/* --announce: one broadcast frame from the sink's MAC (local experimental EtherType 0x88b5), so that a
 * learning switch (vhostd, OVS's NORMAL action) knows which port 02:00:00:00:00:02 is behind and forwards the
 * generated frames there instead of flooding them. Returns whether the port took it. */
static bool announce(struct gen *k)
{
	struct vhd_pkt *p;
	if (vhd_pkt_alloc_bulk(k->pool[0], &p, 1) != 1)
		return false;
	uint8_t *f = vhd_pkt_data(p);
	memset(f, 0, MIN_FRAME);
	memset(f, 0xff, 6);
	memcpy(f + 6, k->o.mac, 6);
	f[12] = 0x88;
	f[13] = 0xb5;
	p->len = MIN_FRAME;
	if (port_tx(k, 0, &p, 1) == 1)
		return true;
	vhd_pkt_free(p);
	return false;
}

static bool port_ready(struct gen *g)
{
	if (g->vd)
		control(g, 0); /* derives cfg once the driver is there */
	return g->cfg_ok && (g->vd ? vhd_vduse_dev_ready(g->vd)
			   : g->o.backend ? vhd_vu_dev_connected(g->dev) : vhd_fe_up(g->fe));
}

/* Free g's pending frames, port and pools; returns the frames --verify found lost, duplicated or corrupt. */
static uint64_t close_port(struct gen *g)
{
	uint64_t bad = 0;
	for (unsigned q = 0; q < g->o.queues; q++) {
		bad += g->qs[q].lost + g->qs[q].dup + g->qs[q].corrupt;
		vhd_pkt_free_bulk(g->pending[q], g->npending[q]);
	}
	if (g->o.vduse)
		vhd_vduse_dev_destroy(g->vd);
	else if (g->o.backend)
		vhd_vu_dev_destroy(g->dev);
	else
		vhd_fe_destroy(g->fe);
	for (unsigned q = 0; q < g->o.queues; q++) {
		vhd_pktpool_destroy(g->pool[q]);
		if (g->tap_fd[q] >= 0)
			close(g->tap_fd[q]);
	}
	return bad;
}

int main(int argc, char **argv)
{
	struct gen *g = calloc(1, sizeof(*g)), *k = NULL;
	if (!g || parse(argc, argv, &g->o) < 0) {
		usage(stderr);
		free(g);
		return 2;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGUSR1, on_signal);
	signal(SIGUSR2, on_signal);
	signal(SIGPIPE, SIG_IGN);
	/* A front-end that shrinks its memory file must cost us its device, not the process (vhostd/mem.h). */
	int grc = vhd_mem_guard_sigbus();
	if (grc < 0)
		vhd_log(VHD_LOG_WARN, "SIGBUS guard not installed: %s", strerror(-grc));
	pattern_init();
	int rc = 0;
	for (unsigned q = 0; q < MAX_QP; q++)
		g->tap_fd[q] = -1;
	if (g->o.mode == M_TAP && (rc = tap_open(g)) < 0) {
		fprintf(stderr, "vhost-pktgen: cannot open tap %s: %s\n", g->o.tap, strerror(-rc));
		return 1;
	}
	if (g->o.latency) {
		g->lat = calloc(1, sizeof(*g->lat));
		if (!g->lat || !(g->lat->samples = malloc(LAT_MAX_SAMPLES * sizeof(uint64_t)))) {
			fprintf(stderr, "vhost-pktgen: out of memory\n");
			return 1;
		}
	}
	if (g->o.sink) {
		/* The sink: the same options on the second path, counting (and verifying) what arrives. */
		k = calloc(1, sizeof(*k));
		if (!k) {
			fprintf(stderr, "vhost-pktgen: out of memory\n");
			return 1;
		}
		k->o = g->o;
		k->o.path = g->o.sink;
		k->o.sink = NULL;
		k->o.mode = M_RXONLY;
		k->o.count = 0;
		k->o.duration = 0;
		static const uint8_t sink_mac[6] = {0x02, 0, 0, 0, 0, 0x02};
		memcpy(k->o.mac, sink_mac, 6);
		for (unsigned q = 0; q < MAX_QP; q++)
			k->tap_fd[q] = -1;
		k->lat = g->lat;
		g->sink = k;
	}
	if (open_port(g) < 0 || (k && open_port(k) < 0))
		return 1;

	unsigned idle = 0, rounds = 0, quiet = 0, tick = 0;
	bool warm = g->o.warmup <= 0, announced = !k || !g->o.announce, hold = false;
	struct timespec t_announce;
	while (!stop_now) {
		if (reset_now) {
			reset_now = 0;
			int rc = g->o.backend ? -ENOTSUP : vhd_fe_reset(g->fe);
			fprintf(stderr, "vhost-pktgen: reset (SIGUSR1): %s\n", rc < 0 ? strerror(-rc) : "done");
			g->resets += rc == 0;
		}
		if (remap_now) {
			remap_now = 0;
			int rc = g->o.backend ? -ENOTSUP : vhd_fe_remap(g->fe, g->unmapped);
			if (rc == 0 && g->unmapped)
				fprintf(stderr, "vhost-pktgen: memory mapped again (SIGUSR2), %llu frames received before\n",
					(unsigned long long)total(g, true));
			else
				fprintf(stderr, "vhost-pktgen: %s (SIGUSR2): %s\n",
					g->unmapped ? "mapping memory again" : "memory unmapped", rc < 0 ? strerror(-rc) : "done");
			g->unmapped ^= rc == 0;
		}
		if (g->o.set_dev_mac && !g->o.backend)
			set_dev_mac(g);
		bool ready = port_ready(g), kready = !k || port_ready(k);
		unsigned moved = 0;
		if (!announced && kready && announce(k)) {
			/* Generation waits a tenth of a second more, for the switch to have learnt the sink's MAC. */
			announced = hold = true;
			clock_gettime(CLOCK_MONOTONIC, &t_announce);
		}
		if (hold) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			hold = secs(&t_announce, &now) < 0.1;
		}
		/* With --sink, generation waits for the sink (and its announcement). */
		if (ready && kready && announced && !hold)
			for (unsigned q = 0; q < g->o.queues; q++)
				moved += run_queue(g, q);
		if (k && kready)
			for (unsigned q = 0; q < k->o.queues; q++)
				moved += run_queue(k, q);
		/* The control socket is looked at when idle, and every 256 busy rounds; with --iommu every round
		 * while a queue waits for the IOTLB, since a miss holds its queue until the control side has asked
		 * the front-end and taken its update. With the IOTLB warm nothing waits, and a poll() per round
		 * was the back-end's largest cost beside the frames (docs/viommu.md "Figures"). A lazy frontend
		 * answers misses whenever they come. */
		if (g->o.iommu && (g->o.backend ? vhd_vu_dev_iotlb_waiting(g->dev) : g->o.iommu_lazy))
			control(g, 0);
		if (!moved) {
			/* A poll() syscall every empty round would cost more than the polling itself (a third of
			 * the time in perf), so only every 1024th empty round with --poll, every 64th without.
			 * Counted across busy rounds too: a side whose peer is slower finds the ring empty every
			 * other round, and restarting the count at each busy round made that a syscall per
			 * burst. */
			if (!(ready && kready) || ++quiet >= (g->o.poll ? 1024u : 64u)) {
				quiet = 0;
				if (k)
					control(k, 0);
				control(g, ready && kready ? 0 : 10);
			}
			if (++idle > 1000 && ready && !g->o.poll)
				usleep(50);
		} else {
			idle = 0;
			if (++rounds % 256 == 0) {
				control(g, 0);
				if (k)
					control(k, 0);
			}
		}
		/* The clock every 16th round: a clock_gettime() per burst showed in perf. */
		bool look_at_clock = (++tick & 15) == 0;
		if (!warm && g->started && look_at_clock) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (secs(&g->t_first, &now) >= g->o.warmup) {
				warm = true;
				reset_counts(g);
				if (k)
					reset_counts(k);
				continue;
			}
		}
		if (!warm)
			continue;
		if (g->o.count &&
		    (generates(g->o.mode) ? total(g, false) >= g->o.count : total(g, true) >= g->o.count))
			break;
		if (g->o.duration > 0 && g->started && look_at_clock) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (secs(&g->t_first, &now) >= g->o.duration)
				break;
		}
	}
	/* A frontend: let the last frames sent be consumed (a forwarding mode's too: stopping at --count while the
	 * device still has them would lose them) and, generating with --verify or --latency, the echoes come back
	 * (with --sink: arrive at the sink), until nothing has moved for two seconds. Half a second lost the last
	 * window of echoes once (VDUSE behind vhost_vdpa in a TCG guest on a loaded host); the wait ends at once
	 * when everything is back, so only a run that really lost frames pays for it. */
	bool gen = generates(g->o.mode), expect_back = gen && (k || g->o.verify || g->o.latency);
	if ((gen || !g->o.backend) && !stop_now) {
		unsigned inflight = 0, was = UINT_MAX;
		for (int quiet = 0; quiet < 2000 && !stop_now;) {
			unsigned moved = 0;
			inflight = 0;
			for (unsigned q = 0; q < g->o.queues; q++) {
				moved += gen ? rx_verify(g, q) : 0;
				if (k)
					moved += run_queue(k, q);
				struct vhd_vq *tx = g->o.backend ? NULL : vhd_fe_vq(g->fe, 2 * q + 1);
				if (tx) {
					vhd_net_drv_xmit(tx, &g->cfg, NULL, 0, &g->nst[2 * q + 1]);
					unsigned f = vhd_vq_inflight(tx);
					/* Kicked again: a device may stop short of the end of the ring until
					 * the next kick (vdpa_sim_net after an RX overrun). */
					if (f)
						vhd_fe_kick(g->fe, 2 * q + 1);
					inflight += f;
				}
			}
			if (!(expect_back && total(k ? k : g, true) < total(g, false)) && !inflight)
				break;
			/* Bounded: two seconds without progress (nothing back, nothing more taken) end it. */
			quiet = moved || inflight < was ? 0 : quiet + 1;
			was = inflight;
			control(g, 0);
			if (k)
				control(k, 0);
			usleep(1000);
		}
		if (inflight)
			fprintf(stderr, "vhost-pktgen: %u frames sent were never taken by the device\n", inflight);
	}
	/* A generating back-end: its last frames are published, but the driver collects them from our used ring
	 * only while we are connected (a frontend stops looking at its rings when the device hangs up). Linger
	 * until the driver hangs up first, as one with --count does, or for two seconds. */
	if (generates(g->o.mode) && g->o.backend && !k && !stop_now) {
		for (int i = 0; i < 2000 && !stop_now && (g->vd ? vhd_vduse_dev_ready(g->vd) : vhd_vu_dev_connected(g->dev));
		     i++) {
			control(g, 0);
			usleep(1000);
		}
	}
	report_all(g);
	uint64_t bad = close_port(g) + (k ? close_port(k) : 0);
	bool failed = g->o.verify && bad;
	if (g->lat)
		free(g->lat->samples);
	free(g->lat);
	free(k);
	free(g);
	return failed ? 1 : 0;
}
