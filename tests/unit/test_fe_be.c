/* SPDX-License-Identifier: MIT */
/*
 * Our frontend against our back-end, in two processes over a real vhost-user socket. The back-end echoes every
 * frame the guest transmits on queue pair p's TX queue into the same pair's RX queue; the frontend checks each
 * echoed frame's length, content and order. Then the peers are killed with SIGKILL mid-stream and restarted,
 * and whichever side survived must recover without leaking fds or mappings.
 *
 * Then the frontend against back-ends that misbehave during setup (a fake one driven by hand in the test:
 * silence, half a reply, wrong request, size, flags or fds, a close, a refusal): every vhd_fe_dispatch() call
 * returns at once, the frontend drops the back-end with the right error and a log line naming what it did,
 * and comes up against a good back-end afterwards; a stalled back-end holds up no other frontend. And the
 * virtio-user switch port's RX and TX windows, with one thread in each while the back-end restarts.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "frontend/transport.h"
#include "harness.h"
#include "spec/vhost_vdpa.h"
#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "switch/port.h"
#include "vhostd/pkt.h"
#include "vhostd/frontend.h"
#include "vhostd/log.h"
#include "vhostd/vhost_user.h"
#include "vhostd/virtq.h"
#include "vu_raw.h"

#define QS 256
#define SLOT 2048
#define BURST 32
#define MIN_LEN 60
#define MAX_LEN 2000

/* Reconnect rounds and frames per round, cut by VHD_TEST_SCALE but never below what exercises the path. */
static int rounds_scaled(int n)
{
	int v = (int)th_scaled((unsigned long long)n);
	return v < 5 ? 5 : v;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x7fb5d329728ea185ull;
	x ^= x >> 27;
	x *= 0x81dadef4bc2dd44dull;
	return x ^ (x >> 33);
}

static uint32_t len_of(uint64_t seq)
{
	return MIN_LEN + (uint32_t)(mix(seq) % (MAX_LEN - MIN_LEN + 1));
}

static void fill(uint8_t *p, uint32_t len, uint64_t seq)
{
	memcpy(p, &seq, 8);
	for (uint32_t i = 8; i < len; i++)
		p[i] = (uint8_t)(mix(seq + (i >> 3)) >> ((i & 7) * 8));
}

static bool same(const uint8_t *p, uint32_t len, uint64_t seq)
{
	uint64_t s;
	memcpy(&s, p, 8);
	if (s != seq)
		return false;
	for (uint32_t i = 8; i < len; i++)
		if (p[i] != (uint8_t)(mix(seq + (i >> 3)) >> ((i & 7) * 8)))
			return false;
	return true;
}

/* ------------------------------------------------------------ back-end: echo TX into RX */

/* Atomic, not volatile sig_atomic_t: the back-end's pair threads read it too (a lock-free atomic is also safe in
 * a signal handler). */
static atomic_int stop_backend;
static void on_term(int s)
{
	(void)s;
	stop_backend = 1;
}

/* Microseconds the back-end holds each burst between taking its chains and using them (restart tests: a
 * SIGKILL then lands with chains in flight, not between bursts). */
static unsigned be_hold_us;

/* Echo what pair p's TX queue holds into its RX queue. Returns frames moved. */
static unsigned echo_pair(struct vhd_vu_dev *dev, unsigned p)
{
	unsigned moved = 0;
	{
		struct vhd_vq *rx = vhd_vu_queue_acquire(dev, 2 * p);
		if (!rx)
			return 0;
		struct vhd_vq *tx = vhd_vu_queue_acquire(dev, 2 * p + 1);
		if (!tx) {
			vhd_vu_queue_release(dev, 2 * p);
			return 0;
		}
		struct vhd_vq_chain rc[BURST], tc[BURST];
		struct iovec riov[BURST * 4], tiov[BURST * 4];
		struct vhd_vq_used ru[BURST], tu[BURST];
		int nr = vhd_vq_pop(rx, rc, BURST, riov, BURST * 4);
		int nt = nr > 0 ? vhd_vq_pop(tx, tc, (unsigned)nr, tiov, BURST * 4) : 0;
		if (nt < 0 || nr < 0) {
			fprintf(stderr, "backend: queue broke: %s / %s\n", vhd_vq_error_detail(rx), vhd_vq_error_detail(tx));
			_exit(3);
		}
		if (be_hold_us && nr > 0)
			usleep(be_hold_us);
		for (int i = 0; i < nt; i++) {
			uint8_t *dst = rc[i].iov[0].iov_base;
			uint32_t off = 0;
			for (unsigned k = 0; k < tc[i].nout; k++) {
				if (off + tc[i].iov[k].iov_len > rc[i].in_len)
					_exit(4);
				memcpy(dst + off, tc[i].iov[k].iov_base, tc[i].iov[k].iov_len);
				off += (uint32_t)tc[i].iov[k].iov_len;
			}
			ru[i] = (struct vhd_vq_used){rc[i].id, rc[i].ndesc, off};
			tu[i] = (struct vhd_vq_used){tc[i].id, tc[i].ndesc, 0};
		}
		/* RX chains we had no frame for go back empty; the guest re-posts them. */
		for (int i = nt; i < nr; i++)
			ru[i] = (struct vhd_vq_used){rc[i].id, rc[i].ndesc, 0};
		if (nt > 0)
			vhd_vq_push(tx, tu, (unsigned)nt);
		if (nr > 0) {
			vhd_vq_push(rx, ru, (unsigned)nr);
			if (vhd_vq_need_notify(rx))
				vhd_vu_queue_notify(dev, 2 * p);
		}
		moved += (unsigned)(nt > 0 ? nt : 0);
		vhd_vu_queue_release(dev, 2 * p + 1);
		vhd_vu_queue_release(dev, 2 * p);
	}
	return moved;
}

static unsigned echo(struct vhd_vu_dev *dev, unsigned pairs)
{
	unsigned moved = 0;
	for (unsigned p = 0; p < pairs; p++)
		moved += echo_pair(dev, p);
	return moved;
}

static void backend_step(struct vhd_vu_dev *dev, unsigned pairs, bool idle)
{
	struct pollfd pfd[2];
	unsigned n = vhd_vu_dev_pollfds(dev, pfd, 2);
	int t = vhd_vu_dev_timeout_ms(dev);
	if (poll(pfd, n, idle ? (t < 0 || t > 1 ? 1 : t) : 0) >= 0)
		vhd_vu_dev_dispatch(dev);
	echo(dev, pairs);
}

/* Set before spawn_backend(): the back-end offers ACCESS_PLATFORM, and on exit checks its IOTLB counters
 * (updates taken, none refused, and misses sent exactly when the frontend maps nothing up front). */
static bool be_iommu, be_expect_misses;

static int run_backend(const char *path, bool client, unsigned pairs)
{
	signal(SIGTERM, on_term);
	vhd_log_set_level(VHD_LOG_WARN);
	struct vhd_vu_config c = {.path = path, .client = client, .max_queue_pairs = (uint16_t)pairs,
				  .reconnect_min_ms = 10, .reconnect_max_ms = 50, .name = "be"};
	if (be_iommu)
		c.features = vhd_vu_default_features() | VHD_BIT(VIRTIO_F_ACCESS_PLATFORM);
	struct vhd_vu_dev *dev;
	if (vhd_vu_dev_create(&c, &dev) < 0)
		return 2;
	while (!stop_backend)
		backend_step(dev, pairs, !vhd_vu_dev_connected(dev));
	int rc = 0;
	if (be_iommu) {
		struct vhd_vu_stats st;
		vhd_vu_dev_stats(dev, &st);
		fprintf(stderr, "backend iotlb: misses %llu updates %llu refused %llu waits %llu\n",
			(unsigned long long)st.iotlb_misses, (unsigned long long)st.iotlb_updates,
			(unsigned long long)st.iotlb_refused, (unsigned long long)st.iotlb_waits);
		if (st.iotlb_updates == 0 || st.iotlb_refused != 0 || (st.iotlb_misses != 0) != be_expect_misses)
			rc = 5;
	}
	vhd_vu_dev_destroy(dev);
	return rc;
}

/* The same back-end with one data-path thread per queue pair and no locks: the control thread stops and
 * restarts queues (front-ends leaving and coming) while the data threads run. */
struct pair_thread {
	struct vhd_vu_dev *dev;
	unsigned p;
};

static void *pair_loop(void *arg)
{
	struct pair_thread *t = arg;
	while (!stop_backend)
		if (!echo_pair(t->dev, t->p))
			sched_yield();
	return NULL;
}

static int run_backend_threads(const char *path, unsigned pairs)
{
	signal(SIGTERM, on_term);
	struct vhd_vu_config c = {.path = path, .max_queue_pairs = (uint16_t)pairs, .name = "be-mt"};
	struct vhd_vu_dev *dev;
	if (vhd_vu_dev_create(&c, &dev) < 0)
		return 2;
	pthread_t th[4];
	struct pair_thread pt[4];
	for (unsigned p = 0; p < pairs; p++) {
		pt[p] = (struct pair_thread){dev, p};
		pthread_create(&th[p], NULL, pair_loop, &pt[p]);
	}
	while (!stop_backend) {
		struct pollfd pfd[2];
		unsigned n = vhd_vu_dev_pollfds(dev, pfd, 2);
		if (poll(pfd, n, 5) > 0)
			vhd_vu_dev_dispatch(dev);
	}
	for (unsigned p = 0; p < pairs; p++)
		pthread_join(th[p], NULL);
	vhd_vu_dev_destroy(dev);
	return 0;
}

/* ------------------------------------------------------------ frontend: send, receive, check */

struct pair_state {
	uint64_t next_tx, next_rx; /* sequence numbers: seq = p + pairs * k */
	uint16_t tx_free[QS], rx_free[QS];
	unsigned ntx, nrx;
};

struct fe_run {
	struct vhd_fe *fe;
	unsigned pairs;
	struct pair_state ps[4];
	uint64_t received, lost_in_flight;
	bool down_seen;
	/* Restart tests with inflight tracking: frames are matched by the sequence number they carry, and gaps
	 * (lost) and repeats (dups) are counted instead of failing. */
	bool tolerant;
	uint64_t lost, dups;
};

static void reset_pair(struct pair_state *s)
{
	s->ntx = s->nrx = QS;
	for (unsigned i = 0; i < QS; i++) {
		s->tx_free[i] = (uint16_t)i;
		s->rx_free[i] = (uint16_t)(QS + i);
	}
}

static void on_fe_event(struct vhd_fe *fe, enum vhd_fe_event ev, void *opaque)
{
	struct fe_run *r = opaque;
	if (ev != VHD_FE_DOWN)
		return;
	/* The back-end is gone: take every in-flight buffer back; frames it never echoed are lost. */
	r->down_seen = true;
	for (unsigned p = 0; p < r->pairs; p++) {
		struct vhd_vq_done d[QS];
		int n = vhd_vq_reclaim(vhd_fe_vq(fe, 2 * p + 1), d, QS);
		CHECK(n >= 0);
		n = vhd_vq_reclaim(vhd_fe_vq(fe, 2 * p), d, QS);
		CHECK(n >= 0);
		reset_pair(&r->ps[p]);
		/* Sequence numbers restart per connection: the next frame on this pair is expected fresh. */
		r->lost_in_flight += r->ps[p].next_tx - r->ps[p].next_rx;
		r->ps[p].next_rx = r->ps[p].next_tx;
	}
}

static void fe_wait_up(struct fe_run *r)
{
	for (int i = 0; i < 5000 && !vhd_fe_up(r->fe); i++) {
		struct pollfd pfd[2];
		unsigned n = vhd_fe_pollfds(r->fe, pfd, 2);
		int t = vhd_fe_timeout_ms(r->fe);
		poll(pfd, n, t < 0 || t > 2 ? 2 : t);
		vhd_fe_dispatch(r->fe);
	}
	CHECK(vhd_fe_up(r->fe));
}

/* One round of the guest's work on every pair. Returns false if the back-end went away. */
static bool fe_step(struct fe_run *r, uint64_t limit_per_pair)
{
	for (unsigned p = 0; p < r->pairs; p++) {
		struct pair_state *s = &r->ps[p];
		struct vhd_vq *rx = vhd_fe_vq(r->fe, 2 * p), *tx = vhd_fe_vq(r->fe, 2 * p + 1);
		if (!rx || !tx)
			return false;
		size_t alen;
		uint8_t *area = vhd_fe_buf_area(r->fe, p, &alen);
		uint64_t dev_area = vhd_fe_buf_iova(r->fe, p); /* the device's address of area[0] */
		CHECK(alen >= 2 * QS * SLOT);
		struct vhd_vq_seg seg[BURST];
		struct vhd_vq_buf buf[BURST];
		struct vhd_vq_done done[BURST];
		/* Post RX buffers. */
		unsigned n = 0;
		while (n < BURST && n < s->nrx) {
			uint16_t b = s->rx_free[s->nrx - 1 - n];
			seg[n] = (struct vhd_vq_seg){dev_area + (size_t)b * SLOT, SLOT};
			buf[n] = (struct vhd_vq_buf){.segs = &seg[n], .nin = 1, .token = (void *)(uintptr_t)b};
			n++;
		}
		int a = n ? vhd_vq_add(rx, buf, n) : 0;
		CHECK(a >= 0);
		s->nrx -= (unsigned)a;
		/* Transmit. */
		n = 0;
		while (n < BURST && n < s->ntx && s->next_tx + n < limit_per_pair) {
			uint16_t b = s->tx_free[s->ntx - 1 - n];
			uint64_t seq = (s->next_tx + n) * r->pairs + p;
			uint8_t *f = area + (size_t)b * SLOT;
			fill(f, len_of(seq), seq);
			seg[n] = (struct vhd_vq_seg){dev_area + (size_t)b * SLOT, len_of(seq)};
			buf[n] = (struct vhd_vq_buf){.segs = &seg[n], .nout = 1, .token = (void *)(uintptr_t)b};
			n++;
		}
		a = n ? vhd_vq_add(tx, buf, n) : 0;
		CHECK(a >= 0);
		s->ntx -= (unsigned)a;
		s->next_tx += (uint64_t)a;
		int g = vhd_vq_get(tx, done, BURST);
		CHECK(g >= 0);
		for (int i = 0; i < g; i++)
			s->tx_free[s->ntx++] = (uint16_t)(uintptr_t)done[i].token;
		g = vhd_vq_get(rx, done, BURST);
		CHECK(g >= 0);
		for (int i = 0; i < g; i++) {
			uint16_t b = (uint16_t)(uintptr_t)done[i].token;
			s->rx_free[s->nrx++] = b;
			if (done[i].len == 0)
				continue;
			uint64_t seq = s->next_rx * r->pairs + p;
			if (r->tolerant && done[i].len >= 8) {
				uint64_t got;
				memcpy(&got, area + (size_t)b * SLOT, 8);
				if (got % r->pairs == p && got / r->pairs > s->next_rx) {
					r->lost += got / r->pairs - s->next_rx;
					s->next_rx = got / r->pairs;
					seq = got;
				} else if (got % r->pairs == p && got / r->pairs < s->next_rx) {
					r->dups++;
					CHECK(same(area + (size_t)b * SLOT, done[i].len, got));
					continue;
				}
			}
			if (done[i].len != len_of(seq) || !same(area + (size_t)b * SLOT, done[i].len, seq)) {
				fprintf(stderr, "pair %u: frame %llu came back wrong (len %u, want %u)\n", p,
					(unsigned long long)s->next_rx, done[i].len, len_of(seq));
				_exit(1);
			}
			s->next_rx++;
			r->received++;
		}
	}
	struct pollfd pfd[2];
	unsigned n = vhd_fe_pollfds(r->fe, pfd, 2);
	if (poll(pfd, n, 0) > 0 && vhd_fe_dispatch(r->fe) < 0)
		return false;
	return true;
}

static unsigned fe_reply_timeout_ms; /* 0: the default */
static bool fe_inflight;              /* vhd_fe_config.inflight */
static bool fe_iommu, fe_iommu_lazy;  /* vhd_fe_config.iommu, .iommu_lazy */

static void fe_open(struct fe_run *r, const char *path, bool server, unsigned pairs, uint64_t features)
{
	memset(r, 0, sizeof(*r));
	r->pairs = pairs;
	for (unsigned p = 0; p < pairs; p++)
		reset_pair(&r->ps[p]);
	struct vhd_fe_config c = {.path = path, .server = server, .queue_pairs = (uint16_t)pairs, .queue_size = QS,
				  .features = features, .buf_area_size = 2 * QS * SLOT, .reconnect_min_ms = 10,
				  .reconnect_max_ms = 50, .reply_timeout_ms = fe_reply_timeout_ms,
				  .iommu = fe_iommu, .iommu_lazy = fe_iommu_lazy, .inflight = fe_inflight,
				  .event = on_fe_event, .opaque = r, .name = "fe"};
	CHECK_EQ(vhd_fe_create(&c, &r->fe), 0);
}

static pid_t spawn_backend(const char *path, bool client, unsigned pairs)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(run_backend(path, client, pairs));
	return pid;
}

static void stop(pid_t pid)
{
	int st;
	kill(pid, SIGTERM);
	CHECK(waitpid(pid, &st, 0) == pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fprintf(stderr, "back-end: exit status %d, signal %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
			WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ------------------------------------------------------------ cases */

static void traffic(bool packed, bool in_order, unsigned pairs)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/vhd-febe-%d.sock", getpid());
	pid_t be = spawn_backend(path, false, pairs);
	usleep(50000);
	struct fe_run r;
	uint64_t f = vhd_fe_default_features() | (packed ? VHD_BIT(VIRTIO_F_RING_PACKED) : 0) |
		     (in_order ? VHD_BIT(VIRTIO_F_IN_ORDER) : 0);
	fe_open(&r, path, false, pairs, f);
	fe_wait_up(&r);
	CHECK(!!(vhd_fe_features(r.fe) & VHD_BIT(VIRTIO_F_RING_PACKED)) == packed);
	const char *env = getenv("VHD_FEBE_COUNT");
	uint64_t per_pair = (env ? strtoull(env, NULL, 10) : th_scaled(200000)) / pairs;
	while (r.received < per_pair * pairs)
		CHECK(fe_step(&r, per_pair));
	CHECK(!r.down_seen);
	CHECK(!!(vhd_fe_features(r.fe) & VHD_BIT(VIRTIO_F_ACCESS_PLATFORM)) == fe_iommu);
	struct vhd_fe_iotlb_stats st;
	vhd_fe_iotlb_stats(r.fe, &st);
	CHECK_EQ(st.unmapped, 0);
	if (fe_iommu && fe_iommu_lazy)
		CHECK(st.misses > 0 && st.updates == st.misses);
	else
		CHECK(st.misses == 0 && st.updates == (fe_iommu ? 2u * pairs : 0u)); /* one per queue */
	vhd_fe_destroy(r.fe);
	stop(be);
}

/*
 * Our frontend behind an IOMMU against our back-end with ACCESS_PLATFORM: rings and buffers at IOVAs that are
 * neither our virtual nor the guest-physical addresses, every frame checked byte for byte. Pre-mapped: an
 * UPDATE per queue and no miss on either side. Lazy: nothing mapped up front, so every page the back-end touches is a
 * MISS answered by an UPDATE; the back-end's counters (checked as it exits) must show them.
 */
static void traffic_iommu(bool packed, bool lazy, unsigned pairs)
{
	fe_iommu = be_iommu = true;
	fe_iommu_lazy = be_expect_misses = lazy;
	traffic(packed, false, pairs);
	fe_iommu = be_iommu = fe_iommu_lazy = be_expect_misses = false;
}

static void test_split(void) { traffic(false, false, 1); }
static void test_packed(void) { traffic(true, false, 1); }
static void test_split_4qp_inorder(void) { traffic(false, true, 4); }
static void test_packed_4qp(void) { traffic(true, false, 4); }
static void test_iommu_split(void) { traffic_iommu(false, false, 1); }
static void test_iommu_packed(void) { traffic_iommu(true, false, 1); }
static void test_iommu_lazy_split(void) { traffic_iommu(false, true, 1); }
static void test_iommu_lazy_packed_2qp(void) { traffic_iommu(true, true, 2); }

/* 2000 more frames through the back-end, then it is killed: the frontend sees it go down. */
static void traffic_then_kill(struct fe_run *r, pid_t be)
{
	uint64_t target = r->received + 2000;
	while (r->received < target)
		CHECK(fe_step(r, UINT64_MAX));
	kill(be, SIGKILL);
	waitpid(be, NULL, 0);
	for (int i = 0; i < 1000 && fe_step(r, UINT64_MAX); i++)
		usleep(1000);
	CHECK(r->down_seen);
	CHECK(!vhd_fe_up(r->fe));
	r->down_seen = false;
}

/* The back-end is killed mid-stream and restarted 100 times; the client frontend reconnects each time and
 * traffic resumes. The frontend's fds and mappings stay as they were. */
static void test_backend_killed(void)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/vhd-fekill-%d.sock", getpid());
	pid_t be = spawn_backend(path, false, 2);
	usleep(50000);
	struct fe_run r;
	fe_open(&r, path, false, 2, 0);
	fe_wait_up(&r);
	int fds0 = th_count_fds(), maps0 = th_count_maps();
	for (int round = 0; round < rounds_scaled(100); round++) {
		traffic_then_kill(&r, be);
		be = spawn_backend(path, false, 2);
		fe_wait_up(&r);
		CHECK_EQ(th_count_fds(), fds0);
		CHECK_EQ(th_count_maps(), maps0);
	}
	vhd_fe_destroy(r.fe);
	stop(be);
}

/*
 * Inflight tracking: the back-end is killed with SIGKILL mid-stream and restarted 100 times; the frontend keeps
 * its rings and hands the same area to each new back-end, which resubmits what the dead one had taken and not
 * used. Queue level: no buffer is lost or returned twice (the driver queues would break on a used id not in
 * flight; every TX buffer comes back at the end) and the frontend never goes down. End to end the echo is a
 * little application of its own: a frame whose TX chain was used and whose RX copy was not yet is lost (at most
 * one burst per kill), and none is duplicated (TX is used before RX). Both are counted and printed.
 */
static void backend_killed_inflight(bool packed)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/vhd-feinfl-%d.sock", getpid());
	be_hold_us = 200;
	pid_t be = spawn_backend(path, false, 1);
	usleep(50000);
	struct fe_run r;
	fe_inflight = true;
	fe_open(&r, path, false, 1, packed ? vhd_fe_default_features() | VHD_BIT(VIRTIO_F_RING_PACKED) : 0);
	fe_inflight = false;
	r.tolerant = true;
	fe_wait_up(&r);
	CHECK(!!(vhd_fe_features(r.fe) & VHD_BIT(VIRTIO_F_RING_PACKED)) == packed);
	int fds0 = th_count_fds(), maps0 = th_count_maps();
	/* VHD_FE_RESTARTS: 100 by default, 20 under ASan (tests/meson.build), 1000 in scripts/soak.sh. */
	const char *e = getenv("VHD_FE_RESTARTS");
	int rounds = rounds_scaled(e && *e ? atoi(e) : 100);
	for (int round = 0; round < rounds; round++) {
		uint64_t target = r.received + 2000;
		while (r.received < target)
			CHECK(fe_step(&r, UINT64_MAX));
		kill(be, SIGKILL);
		waitpid(be, NULL, 0);
		for (int i = 0; i < 1000 && vhd_fe_up(r.fe); i++) {
			fe_step(&r, UINT64_MAX);
			usleep(1000);
		}
		CHECK(!vhd_fe_up(r.fe));
		be = spawn_backend(path, false, 1);
		fe_wait_up(&r);
		CHECK_EQ(th_count_fds(), fds0);
		CHECK_EQ(th_count_maps(), maps0);
	}
	/* Stop sending and drain: every TX buffer comes back, every frame still in the rings arrives. */
	uint64_t sent = r.ps[0].next_tx;
	for (int i = 0; i < 3000 && (r.ps[0].ntx < QS || r.received + r.lost < sent); i++) {
		CHECK(fe_step(&r, sent));
		usleep(1000);
	}
	fprintf(stderr, "drained: ntx %u nrx %u next_rx %llu sent %llu lost %llu\n", r.ps[0].ntx, r.ps[0].nrx,
		(unsigned long long)r.ps[0].next_rx, (unsigned long long)sent, (unsigned long long)r.lost);
	CHECK_EQ(r.ps[0].ntx, QS);
	fprintf(stderr, "%s inflight restarts: %d, frames sent %llu, received %llu, lost %llu (%.2f per restart), "
		"duplicated %llu\n", packed ? "packed" : "split", rounds, (unsigned long long)sent, (unsigned long long)r.received,
		(unsigned long long)r.lost, (double)r.lost / rounds, (unsigned long long)r.dups);
	CHECK(!r.down_seen);
	CHECK_EQ(r.dups, 0);
	CHECK(r.lost <= (uint64_t)rounds * BURST);
	CHECK_EQ(r.received + r.lost, sent);
	vhd_fe_destroy(r.fe);
	stop(be);
	be_hold_us = 0;
}

static void test_backend_killed_inflight(void) { backend_killed_inflight(false); }
static void test_backend_killed_inflight_packed(void) { backend_killed_inflight(true); }

static int connect_status(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : -errno;
	close(fd);
	return rc;
}

/* A listening (server) frontend serves one back-end at a time: a second one's connect is refused at once
 * (ECONNREFUSED) instead of waiting in the backlog; traffic with the first goes on, and once it has gone the
 * frontend listens again and the next back-end gets it. */
static void test_server_one_backend(void)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/vhd-feone-%d.sock", getpid());
	/* The back-end (a reconnecting client) is forked first: a child forked later would hold a copy of the
	 * listening socket, which would go on listening after ours is closed. */
	pid_t be = spawn_backend(path, true, 1);
	struct fe_run r;
	fe_open(&r, path, true, 1, 0);
	fe_wait_up(&r);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(connect_status(path), -ECONNREFUSED);
	traffic_then_kill(&r, be);
	be = spawn_backend(path, true, 1);
	fe_wait_up(&r);
	uint64_t target = r.received + 2000;
	while (r.received < target)
		CHECK(fe_step(&r, UINT64_MAX));
	vhd_fe_destroy(r.fe);
	stop(be);
}

/* The frontend is killed mid-stream 100 times; the back-end (in this process, client mode: it reconnects to
 * the frontend's socket) recovers each time and keeps no fd or mapping from the dead peer. */
static void test_frontend_killed(void)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/vhd-bekill-%d.sock", getpid());
	vhd_log_set_level(VHD_LOG_ERR);
	struct vhd_vu_config c = {.path = path, .client = true, .max_queue_pairs = 1, .reconnect_min_ms = 5,
				  .reconnect_max_ms = 20, .name = "be"};
	struct vhd_vu_dev *dev;
	CHECK_EQ(vhd_vu_dev_create(&c, &dev), 0);
	int fds0 = -1, maps0 = -1;
	for (int round = 0; round < rounds_scaled(100); round++) {
		int sync[2];
		CHECK(pipe(sync) == 0);
		pid_t fe = fork();
		CHECK(fe >= 0);
		if (fe == 0) {
			close(sync[0]);
			struct fe_run r;
			fe_open(&r, path, true, 1, 0);
			fe_wait_up(&r);
			while (r.received < 500)
				if (!fe_step(&r, UINT64_MAX))
					_exit(5);
			CHECK(write(sync[1], "x", 1) == 1);
			for (;;)
				fe_step(&r, UINT64_MAX); /* mid-stream when the SIGKILL lands */
		}
		close(sync[1]);
		/* Serve until the frontend says it has seen traffic, then kill it. */
		for (;;) {
			struct pollfd p = {.fd = sync[0], .events = POLLIN};
			if (poll(&p, 1, 0) > 0)
				break;
			backend_step(dev, 1, !vhd_vu_dev_connected(dev));
		}
		kill(fe, SIGKILL);
		waitpid(fe, NULL, 0);
		close(sync[0]);
		for (int i = 0; i < 1000 && vhd_vu_dev_connected(dev); i++)
			backend_step(dev, 1, false);
		CHECK(!vhd_vu_dev_connected(dev));
		unlink(path);
		if (round == 1) {
			fds0 = th_count_fds();
			maps0 = th_count_maps();
		} else if (round > 1) {
			CHECK_EQ(th_count_fds(), fds0);
			CHECK_EQ(th_count_maps(), maps0);
		}
	}
	vhd_vu_dev_destroy(dev);
}

static void test_backend_thread_per_pair(void)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/vhd-femt-%d.sock", getpid());
	pid_t be = fork();
	CHECK(be >= 0);
	if (be == 0)
		_exit(run_backend_threads(path, 2));
	usleep(50000);
	for (int round = 0; round < 10; round++) {
		struct fe_run r;
		fe_open(&r, path, false, 2, vhd_fe_default_features() | ((round & 1) ? VHD_BIT(VIRTIO_F_RING_PACKED) : 0));
		fe_wait_up(&r);
		while (r.received < (uint64_t)rounds_scaled(20000))
			CHECK(fe_step(&r, UINT64_MAX));
		/* Leave mid-stream: the back-end's control thread stops the rings under its running data threads. */
		vhd_fe_destroy(r.fe);
	}
	stop(be);
}

/* ------------------------------------------------------------ hostile back-ends during setup */

/* Log lines at ERR, kept so a case can check that the frontend named what the back-end did. */
static char logged[8192];
static void capture_log(enum vhd_log_level level, const char *msg, void *opaque)
{
	(void)opaque;
	fprintf(stderr, "log: %s\n", msg);
	if (level == VHD_LOG_ERR && strlen(logged) + strlen(msg) + 2 < sizeof(logged)) {
		strcat(logged, msg);
		strcat(logged, "\n");
	}
}

static long long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Time limits of these cases, stretched under slow tools (VHD_TEST_TIMEOUT_SCALE). */
static long long scaled_ms(long long ms)
{
	return ms * th_timeout_scale();
}

/* vhd_fe_dispatch() with a liveness bound: it never waits on the back-end, so a call that takes a second
 * is hung on it (the pre-state-machine frontend polled 2 s per reply, or forever in a half-read message). */
static int dispatch_live(struct vhd_fe *fe)
{
	long long t0 = now_ms();
	int rc = vhd_fe_dispatch(fe);
	long long took = now_ms() - t0;
	if (took >= scaled_ms(1000)) {
		fprintf(stderr, "vhd_fe_dispatch() took %lld ms\n", took);
		CHECK(!"vhd_fe_dispatch() returns promptly");
	}
	return rc;
}

enum misbehave {
	BAD_SILENT,   /* never answers GET_FEATURES */
	BAD_HALF,     /* sends 5 bytes of the reply's header, then nothing */
	BAD_REQUEST,  /* answers GET_FEATURES as GET_PROTOCOL_FEATURES */
	BAD_SIZE,     /* a 4-byte payload */
	BAD_FLAGS,    /* no reply flag */
	BAD_FDS,      /* a reply with an fd attached */
	BAD_CLOSE,    /* negotiates REPLY_ACK, acknowledges, closes at SET_MEM_TABLE */
	BAD_NACK,     /* negotiates REPLY_ACK, then refuses SET_OWNER */
	MUTE_WHEN_UP, /* answers GET_FEATURES (no protocol features: nothing else has a reply), then nothing */
};

/* A vhost-user back-end played by hand, one request at a time, in the test's own thread. */
struct fake_be {
	int lfd, fd;
	enum misbehave how;
	int pipe_w; /* BAD_FDS: the write end of the pipe whose read end went in the reply */
};

static void fake_listen(struct fake_be *f, const char *path, enum misbehave how)
{
	memset(f, 0, sizeof(*f));
	f->fd = f->pipe_w = -1;
	f->how = how;
	unlink(path);
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	CHECK(f->lfd >= 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	CHECK(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(listen(f->lfd, 4) == 0);
}

static void fake_close(struct fake_be *f, const char *path)
{
	if (f->fd >= 0)
		close(f->fd);
	close(f->lfd);
	if (f->pipe_w >= 0)
		close(f->pipe_w);
	f->fd = f->lfd = f->pipe_w = -1;
	unlink(path);
}

static void fake_reply(struct fake_be *f, uint32_t req, uint32_t flags, uint32_t size, uint64_t val)
{
	struct vhu_msg r = mk(req, size);
	r.hdr.flags = flags;
	r.p.u64 = val;
	CHECK_EQ(vhu_msg_send(f->fd, &r), 0);
}

/* Serve what has arrived; the first connection only (the frontend's retries queue up unanswered). */
static void fake_step(struct fake_be *f)
{
	if (f->fd < 0) {
		f->fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (f->fd < 0)
			return;
	}
	struct pollfd p = {.fd = f->fd, .events = POLLIN};
	if (poll(&p, 1, 0) <= 0)
		return;
	struct vhu_msg m;
	if (vhu_msg_recv(f->fd, &m) < 0)
		return; /* the frontend hung up */
	vhu_msg_close_fds(&m);
	const uint32_t ok = VHOST_USER_VERSION | VHOST_USER_REPLY_MASK;
	const uint64_t feat = VHD_BIT(VIRTIO_F_VERSION_1);
	switch (m.hdr.request) {
	case VHOST_USER_GET_FEATURES:
		switch (f->how) {
		case BAD_SILENT:
			break;
		case BAD_HALF: {
			struct vhu_msg r = mk(VHOST_USER_GET_FEATURES, 8);
			r.hdr.flags = ok;
			CHECK(send(f->fd, &r.hdr, 5, MSG_NOSIGNAL) == 5);
			break;
		}
		case BAD_REQUEST:
			fake_reply(f, VHOST_USER_GET_PROTOCOL_FEATURES, ok, 8, feat);
			break;
		case BAD_SIZE:
			fake_reply(f, VHOST_USER_GET_FEATURES, ok, 4, feat);
			break;
		case BAD_FLAGS:
			fake_reply(f, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, 8, feat);
			break;
		case BAD_FDS: {
			int pfd[2];
			CHECK(pipe2(pfd, O_CLOEXEC) == 0);
			struct vhu_msg r = mk(VHOST_USER_GET_FEATURES, 8);
			r.hdr.flags = ok;
			r.p.u64 = feat;
			CHECK(send_fds_raw(f->fd, &r, pfd[0], 1) > 0);
			close(pfd[0]);
			f->pipe_w = pfd[1];
			break;
		}
		case MUTE_WHEN_UP:
			fake_reply(f, VHOST_USER_GET_FEATURES, ok, 8, feat);
			break;
		case BAD_CLOSE:
		case BAD_NACK:
			fake_reply(f, VHOST_USER_GET_FEATURES, ok, 8, feat | VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES));
			break;
		}
		break;
	case VHOST_USER_GET_PROTOCOL_FEATURES:
		fake_reply(f, m.hdr.request, ok, 8, VHD_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK));
		break;
	case VHOST_USER_SET_MEM_TABLE:
		if (f->how == BAD_CLOSE) {
			close(f->fd);
			f->fd = -2; /* no further connection is accepted */
			break;
		}
		/* fall through */
	default:
		/* Acknowledged set messages: SET_OWNER refused under BAD_NACK, the rest accepted. */
		if (m.hdr.flags & VHOST_USER_NEED_REPLY)
			fake_reply(f, m.hdr.request, ok, 8, f->how == BAD_NACK && m.hdr.request == VHOST_USER_SET_OWNER);
		break;
	}
}

/* Run an in-process back-end at path and the frontend until the frontend is up, then echo frames through. */
static void good_backend_carries(struct fe_run *r, const char *path)
{
	struct vhd_vu_config c = {.path = path, .max_queue_pairs = 1, .name = "be"};
	struct vhd_vu_dev *dev;
	CHECK_EQ(vhd_vu_dev_create(&c, &dev), 0);
	long long t0 = now_ms();
	while (!vhd_fe_up(r->fe)) {
		CHECK(now_ms() - t0 < scaled_ms(20000)); /* liveness */
		backend_step(dev, 1, true);
		struct pollfd pfd[2];
		unsigned n = vhd_fe_pollfds(r->fe, pfd, 2);
		poll(pfd, n, 0);
		dispatch_live(r->fe);
	}
	while (r->received < 2000) {
		CHECK(fe_step(r, UINT64_MAX));
		backend_step(dev, 1, false);
	}
	vhd_fe_destroy(r->fe);
	vhd_vu_dev_destroy(dev);
}

/* want_log: a printf format; %u is the reply timeout. */
static void hostile_setup(enum misbehave how, int want_rc, const char *want_log)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/vhd-febad-%d.sock", getpid());
	vhd_log_set_handler(capture_log, NULL);
	signal(SIGPIPE, SIG_IGN);
	struct fake_be f;
	fake_listen(&f, path, how);
	struct fe_run r;
	fe_reply_timeout_ms = (unsigned)scaled_ms(200);
	fe_open(&r, path, false, 1, 0);
	/* Every call returns at once; the first error is the back-end's misbehaviour being noticed. */
	int rc = 0;
	long long t0 = now_ms();
	while (rc == 0) {
		CHECK(now_ms() - t0 < scaled_ms(20000)); /* liveness */
		fake_step(&f);
		struct pollfd pfd[2];
		unsigned n = vhd_fe_pollfds(r.fe, pfd, 2);
		int t = vhd_fe_timeout_ms(r.fe);
		poll(pfd, n, t < 0 || t > 5 ? 5 : t);
		rc = dispatch_live(r.fe);
	}
	if (rc != want_rc)
		fprintf(stderr, "dispatch returned %d (%s), %d (%s) expected\n", rc, strerror(-rc), want_rc,
			strerror(-want_rc));
	CHECK_EQ(rc, want_rc);
	CHECK(!r.down_seen); /* it never came up */
	char want[160];
	snprintf(want, sizeof(want), want_log, fe_reply_timeout_ms);
	want_log = want;
	if (!strstr(logged, want_log))
		fprintf(stderr, "no log line with \"%s\"\n", want_log);
	CHECK(strstr(logged, want_log) != NULL);
	if (how == BAD_FDS) {
		/* The fd that came with the reply was closed: its pipe has no reader left. */
		char x = 0;
		CHECK(write(f.pipe_w, &x, 1) < 0 && errno == EPIPE);
	}
	fake_close(&f, path);
	good_backend_carries(&r, path);
}

static void test_hostile_silent(void)
{
	hostile_setup(BAD_SILENT, -ETIMEDOUT, "did not answer GET_FEATURES within %u ms");
}
static void test_hostile_half_reply(void)
{
	hostile_setup(BAD_HALF, -ETIMEDOUT, "sent 5 of a message header's 12 bytes");
}
static void test_hostile_wrong_request(void)
{
	hostile_setup(BAD_REQUEST, -EPROTO, "sent GET_PROTOCOL_FEATURES (request 15) where the reply to GET_FEATURES");
}
static void test_hostile_wrong_size(void)
{
	hostile_setup(BAD_SIZE, -EMSGSIZE, "reply to GET_FEATURES has 4 payload bytes, 8 expected");
}
static void test_hostile_no_reply_flag(void)
{
	hostile_setup(BAD_FLAGS, -EPROTO, "reply to GET_FEATURES lacks the reply flag");
}
static void test_hostile_fds(void)
{
	hostile_setup(BAD_FDS, -EBADMSG, "reply to GET_FEATURES carried 1 fd");
}
static void test_hostile_close(void)
{
	hostile_setup(BAD_CLOSE, -ECONNRESET, "setup failed at SET_MEM_TABLE");
}
static void test_hostile_nack(void)
{
	hostile_setup(BAD_NACK, -EREMOTEIO, "the back-end refused SET_OWNER (status 1)");
}

/* vhd_fe_destroy() of a frontend that is up does not wait on its back-end (which answers nothing more): the
 * frontend that stopped each ring with GET_VRING_BASE first waited 2 s for a reply that never came. */
/*
 * A back-end that lies on its request channel once the frontend (iommu_lazy) is up: a request we do not serve,
 * with NEED_REPLY; an IOTLB_MSG of the wrong size; an IOTLB UPDATE (a front-end's message, not a back-end's);
 * a MISS for an IOVA outside the frontend's memory; then a genuine MISS for queue 0's descriptor table. The
 * frontend must stay up, answer the unserved request with a failure, leave the unmapped miss unanswered, and
 * answer the genuine one with an UPDATE (no NEED_REPLY) covering it, read/write.
 */
static void test_iommu_channel_hostile(void)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/vhd-fechan-%d.sock", getpid());
	signal(SIGPIPE, SIG_IGN);
	struct fake_be f;
	fake_listen(&f, path, BAD_SILENT); /* how is unused: this case serves by hand */
	struct fe_run r;
	fe_iommu = fe_iommu_lazy = true;
	fe_open(&r, path, false, 1, 0);
	fe_iommu = fe_iommu_lazy = false;
	const uint32_t ok = VHOST_USER_VERSION | VHOST_USER_REPLY_MASK;
	int chan = -1;
	uint64_t desc = 0;
	bool lies_sent = false, got_update = false, got_nack = false;
	long long t0 = now_ms();
	while (!(got_update && got_nack)) {
		CHECK(now_ms() - t0 < scaled_ms(20000)); /* liveness */
		if (f.fd < 0)
			f.fd = accept4(f.lfd, NULL, NULL, SOCK_CLOEXEC);
		struct pollfd p[2] = {{.fd = f.fd, .events = POLLIN}, {.fd = chan, .events = POLLIN}};
		if (f.fd >= 0 && poll(p, 2, 0) > 0) {
			struct vhu_msg m;
			if (p[0].revents & POLLIN) {
				CHECK_EQ(vhu_msg_recv(f.fd, &m), 0);
				switch (m.hdr.request) {
				case VHOST_USER_GET_FEATURES:
					fake_reply(&f, m.hdr.request, ok, 8,
						   VHD_BIT(VIRTIO_F_VERSION_1) | VHD_BIT(VIRTIO_F_ACCESS_PLATFORM) |
							   VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES));
					break;
				case VHOST_USER_GET_PROTOCOL_FEATURES:
					fake_reply(&f, m.hdr.request, ok, 8,
						   VHD_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
							   VHD_BIT(VHOST_USER_PROTOCOL_F_BACKEND_REQ));
					break;
				case VHOST_USER_SET_BACKEND_REQ_FD:
					CHECK_EQ(m.nfds, 1u);
					chan = vhu_msg_take_fd(&m, 0);
					break;
				case VHOST_USER_SET_VRING_ADDR:
					if (m.p.addr.index == 0)
						desc = m.p.addr.desc_user_addr;
					break;
				case VHOST_USER_IOTLB_MSG:
					/* The answer to the genuine miss, and nothing else: the unmapped one gets none. */
					CHECK(lies_sent && !got_update);
					CHECK(!(m.hdr.flags & VHOST_USER_NEED_REPLY));
					CHECK_EQ(m.p.iotlb.type, VHOST_IOTLB_UPDATE);
					CHECK(m.p.iotlb.iova <= desc && desc - m.p.iotlb.iova < m.p.iotlb.size);
					CHECK_EQ(m.p.iotlb.perm, VHOST_ACCESS_RW);
					got_update = true;
					break;
				default:
					break;
				}
				if (m.hdr.flags & VHOST_USER_NEED_REPLY)
					fake_reply(&f, m.hdr.request, ok, 8, 0);
				vhu_msg_close_fds(&m);
			}
			if (chan >= 0 && (p[1].revents & POLLIN)) {
				CHECK_EQ(vhu_msg_recv(chan, &m), 0);
				CHECK_EQ(m.hdr.request, 99u); /* the only message that asked for a reply */
				CHECK(m.hdr.flags & VHOST_USER_REPLY_MASK);
				CHECK(m.p.u64 != 0);
				got_nack = true;
			}
		}
		if (vhd_fe_up(r.fe) && !lies_sent) {
			CHECK(chan >= 0 && desc != 0);
			struct vhu_msg l = mk(99, 8);
			l.hdr.flags |= VHOST_USER_NEED_REPLY;
			CHECK_EQ(vhu_msg_send(chan, &l), 0);
			l = mk(VHOST_USER_BACKEND_IOTLB_MSG, 8);
			CHECK_EQ(vhu_msg_send(chan, &l), 0);
			l = mk(VHOST_USER_BACKEND_IOTLB_MSG, sizeof(l.p.iotlb));
			l.p.iotlb = (struct vhost_iotlb_msg){.iova = desc, .size = 4096, .uaddr = 0, .perm = 3,
							     .type = VHOST_IOTLB_UPDATE};
			CHECK_EQ(vhu_msg_send(chan, &l), 0);
			l.p.iotlb = (struct vhost_iotlb_msg){.iova = 0x1000, .perm = VHOST_ACCESS_RO, .type = VHOST_IOTLB_MISS};
			CHECK_EQ(vhu_msg_send(chan, &l), 0);
			l.p.iotlb = (struct vhost_iotlb_msg){.iova = desc, .perm = VHOST_ACCESS_RO, .type = VHOST_IOTLB_MISS};
			CHECK_EQ(vhu_msg_send(chan, &l), 0);
			lies_sent = true;
		}
		struct pollfd pfd[2];
		unsigned n = vhd_fe_pollfds(r.fe, pfd, 2);
		poll(pfd, n, 1);
		CHECK_EQ(dispatch_live(r.fe), 0);
	}
	CHECK(vhd_fe_up(r.fe) && !r.down_seen);
	struct vhd_fe_iotlb_stats st;
	vhd_fe_iotlb_stats(r.fe, &st);
	CHECK(st.misses == 2 && st.unmapped == 1 && st.updates == 1);
	vhd_fe_destroy(r.fe);
	if (chan >= 0)
		close(chan);
	fake_close(&f, path);
}

static void test_destroy_does_not_wait(void)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/vhd-femute-%d.sock", getpid());
	signal(SIGPIPE, SIG_IGN);
	struct fake_be f;
	fake_listen(&f, path, MUTE_WHEN_UP);
	struct fe_run r;
	fe_open(&r, path, false, 1, 0);
	long long t0 = now_ms();
	while (!vhd_fe_up(r.fe)) {
		CHECK(now_ms() - t0 < scaled_ms(20000)); /* liveness */
		fake_step(&f);
		struct pollfd pfd[2];
		unsigned n = vhd_fe_pollfds(r.fe, pfd, 2);
		poll(pfd, n, 1);
		CHECK_EQ(dispatch_live(r.fe), 0);
	}
	t0 = now_ms();
	vhd_fe_destroy(r.fe);
	long long took = now_ms() - t0;
	if (took >= scaled_ms(1000))
		fprintf(stderr, "vhd_fe_destroy() took %lld ms\n", took);
	CHECK(took < scaled_ms(1000)); /* liveness */
	CHECK(r.down_seen);
	fake_close(&f, path);
}

/* One frontend held in setup by a back-end stalled halfway through a reply; a second one, in the same thread,
 * comes up and carries frames meanwhile: nothing waits on the stalled peer. */
static void test_stalled_backend_holds_no_other(void)
{
	char p1[64], p2[64];
	snprintf(p1, sizeof(p1), "/tmp/vhd-festall-%d.sock", getpid());
	snprintf(p2, sizeof(p2), "/tmp/vhd-fegood-%d.sock", getpid());
	signal(SIGPIPE, SIG_IGN);
	struct fake_be f;
	fake_listen(&f, p1, BAD_HALF);
	struct fe_run stalled, good;
	fe_reply_timeout_ms = 600000; /* the stall outlasts the case: only the other frontend can progress */
	fe_open(&stalled, p1, false, 1, 0);
	fe_reply_timeout_ms = 0;
	struct vhd_vu_config c = {.path = p2, .max_queue_pairs = 1, .name = "be"};
	struct vhd_vu_dev *dev;
	CHECK_EQ(vhd_vu_dev_create(&c, &dev), 0);
	fe_open(&good, p2, false, 1, 0);
	long long t0 = now_ms();
	while (good.received < 5000) {
		CHECK(now_ms() - t0 < scaled_ms(30000)); /* liveness */
		fake_step(&f);
		CHECK_EQ(dispatch_live(stalled.fe), 0);
		backend_step(dev, 1, !vhd_fe_up(good.fe));
		if (vhd_fe_up(good.fe)) {
			CHECK(fe_step(&good, UINT64_MAX));
		} else {
			struct pollfd pfd[2];
			unsigned n = vhd_fe_pollfds(good.fe, pfd, 2);
			poll(pfd, n, 0);
			dispatch_live(good.fe);
		}
	}
	CHECK(f.fd >= 0); /* the stalled back-end did get the frontend's request */
	CHECK(!vhd_fe_up(stalled.fe));
	vhd_fe_destroy(good.fe);
	vhd_fe_destroy(stalled.fe);
	vhd_vu_dev_destroy(dev);
	fake_close(&f, p1);
}

/* ------------------------------------------------------------ the virtio-user port's windows */

/* vhostd's virtio-user port with one forwarding thread in rx_burst and another in tx_burst of the same queue
 * pair, while the control thread takes the port down (the back-end is killed) and up again, round after
 * round. The control thread frees the rings when the port goes down, so it must wait for both threads to
 * leave; with one busy flag for both directions, the side leaving cleared it under the other (ASan then
 * reports the ring used after free). */
struct port_thread {
	struct sw_port *p;
	struct vhd_pktpool *pool;
	atomic_bool stop;
	atomic_ullong bursts, frames;
};

static void *port_rx_loop(void *arg)
{
	struct port_thread *t = arg;
	while (!atomic_load(&t->stop)) {
		struct vhd_pkt *pk[SW_BURST];
		unsigned n = t->p->ops->rx_burst(t->p, 0, t->pool, pk, SW_BURST);
		vhd_pkt_free_bulk(pk, n);
		atomic_fetch_add(&t->frames, n);
		atomic_fetch_add(&t->bursts, 1);
	}
	return NULL;
}

static void *port_tx_loop(void *arg)
{
	struct port_thread *t = arg;
	uint64_t seq = 0;
	while (!atomic_load(&t->stop)) {
		struct vhd_pkt *pk[SW_BURST];
		unsigned n = vhd_pkt_alloc_bulk(t->pool, pk, SW_BURST);
		for (unsigned i = 0; i < n; i++) {
			uint32_t len = len_of(seq);
			fill(vhd_pkt_data(pk[i]), len, seq++);
			pk[i]->len = len;
		}
		unsigned sent = t->p->ops->tx_burst(t->p, 0, pk, n);
		vhd_pkt_free_bulk(pk + sent, n - sent);
		atomic_fetch_add(&t->frames, sent);
		atomic_fetch_add(&t->bursts, 1);
	}
	return NULL;
}

static void port_pump(struct sw_port *p, bool want_up)
{
	long long t0 = now_ms();
	while (p->ops->link_up(p) != want_up) {
		CHECK(now_ms() - t0 < scaled_ms(20000)); /* liveness */
		struct pollfd pfd[2];
		unsigned n = p->ops->pollfds(p, pfd, 2);
		int t = p->ops->timeout_ms(p);
		poll(pfd, n, t < 0 || t > 2 ? 2 : t);
		p->ops->dispatch(p);
	}
}

static void virtio_user_port_windows(bool inflight, int rounds)
{
	char path[64], args[128], err[256];
	snprintf(path, sizeof(path), "/tmp/vhd-fevup-%d.sock", getpid());
	snprintf(args, sizeof(args), "path=%s", path);
	vhd_log_set_level(VHD_LOG_ERR);
	pid_t be = spawn_backend(path, false, 1);
	usleep(50000);
	static struct sw_port port;
	struct sw_port *p = &port;
	p->ops = &sw_virtio_user_ops;
	snprintf(p->name, sizeof(p->name), "vup");
	struct sw_kv kv[3] = {{"path", path}, {"mrg", "off"}, {"inflight", inflight ? "on" : "off"}};
	(void)args;
	CHECK_EQ(p->ops->create(p, kv, 3, err, sizeof(err)), 0);
	struct port_thread rx = {.p = p}, tx = {.p = p};
	CHECK_EQ(vhd_pktpool_create(4 * SW_BURST, 4096, &rx.pool), 0);
	CHECK_EQ(vhd_pktpool_create(4 * SW_BURST, 4096, &tx.pool), 0);
	pthread_t th[2];
	CHECK(pthread_create(&th[0], NULL, port_rx_loop, &rx) == 0);
	CHECK(pthread_create(&th[1], NULL, port_tx_loop, &tx) == 0);
	for (int round = 0; round < rounds; round++) {
		port_pump(p, true);
		/* Both threads inside their windows, frames flowing both ways, before the back-end goes (a sum alone
		 * let a fast TX side reach it before the first echo came back). */
		unsigned long long r0 = atomic_load(&rx.frames), x0 = atomic_load(&tx.frames);
		long long t0 = now_ms();
		while (atomic_load(&rx.frames) < r0 + 64 || atomic_load(&tx.frames) < x0 + 64) {
			CHECK(now_ms() - t0 < scaled_ms(20000)); /* liveness */
			struct pollfd pfd[2];
			unsigned n = p->ops->pollfds(p, pfd, 2);
			poll(pfd, n, 1);
			p->ops->dispatch(p);
		}
		kill(be, SIGKILL);
		waitpid(be, NULL, 0);
		port_pump(p, false);
		be = spawn_backend(path, false, 1);
	}
	/* Up on the last back-end: it has set its SIGTERM handler (a SIGTERM before that killed it, a flake). */
	port_pump(p, true);
	CHECK(atomic_load(&rx.frames) > 0 && atomic_load(&tx.frames) > 0);
	atomic_store(&rx.stop, true);
	atomic_store(&tx.stop, true);
	pthread_join(th[0], NULL);
	pthread_join(th[1], NULL);
	p->ops->destroy(p);
	vhd_pktpool_destroy(rx.pool);
	vhd_pktpool_destroy(tx.pool);
	stop(be);
}

static void test_virtio_user_port_rx_tx_windows(void) { virtio_user_port_windows(false, rounds_scaled(40)); }
/* The same with inflight=on: the rings outlive each back-end, the windows stay open across the restart, and
 * the port comes back up on the kept rings with both threads still running. */
static void test_virtio_user_port_inflight(void) { virtio_user_port_windows(true, rounds_scaled(10)); }
/* vhost-vdpa: a map is checked against the device's GET_IOVA_RANGE before the kernel sees it (the kernel would
 * refuse it too, but with a bare EINVAL naming nothing), overflow-safely at the top of the space. */
static void test_vdpa_iova_range(void)
{
	struct vhost_vdpa_iova_range r = {0x1000, 0xffffffffull};
	CHECK_EQ(vhdi_vdpa_map_check(&r, 0x1000, 0x1000), 0);
	CHECK_EQ(vhdi_vdpa_map_check(&r, 0xfffff000ull, 0x1000), 0);       /* ends exactly at last */
	CHECK_EQ(vhdi_vdpa_map_check(&r, 0xfffff000ull, 0x1001), -ERANGE); /* one byte past */
	CHECK_EQ(vhdi_vdpa_map_check(&r, 0, 0x2000), -ERANGE);             /* starts below first */
	CHECK_EQ(vhdi_vdpa_map_check(&r, 0x1000, 0), -ERANGE);             /* empty */
	CHECK_EQ(vhdi_vdpa_map_check(&r, 0x100000000ull, 1), -ERANGE);     /* above */
	struct vhost_vdpa_iova_range all = {0, ~0ull};
	CHECK_EQ(vhdi_vdpa_map_check(&all, ~0ull, 1), 0);
	CHECK_EQ(vhdi_vdpa_map_check(&all, ~0ull, 2), -ERANGE); /* iova + size wraps */
	CHECK_EQ(vhdi_vdpa_map_check(&all, 1, ~0ull), 0);
}

/* A node that is not a vhost-vdpa device: the frontend refuses it at create, naming the ioctl, and leaks
 * nothing; server and iommu do not apply to vhost-vdpa. */
static void test_vdpa_not_a_device(void)
{
	struct vhd_fe *fe = NULL;
	struct vhd_fe_config c = {.transport = VHD_FE_TRANSPORT_VHOST_VDPA, .path = "/dev/null", .queue_pairs = 1};
	CHECK_EQ(vhd_fe_create(&c, &fe), -ENOTTY);
	c.path = "/nonexistent/vhost-vdpa-9";
	CHECK_EQ(vhd_fe_create(&c, &fe), -ENOENT);
	c.server = true;
	CHECK_EQ(vhd_fe_create(&c, &fe), -EINVAL);
	c.server = false;
	c.iommu = true;
	CHECK_EQ(vhd_fe_create(&c, &fe), -EINVAL);
	CHECK(fe == NULL);
}

/* Which transport a config selects, and what vhost-kernel refuses up front (the host has no vhost-net: its
 * traffic is tested in the guest, tests/interop/test_vhost_kernel.py). */
static void test_transport_select(void)
{
	CHECK_EQ(vhd_fe_transport_of(VHD_FE_TRANSPORT_AUTO, "/nonexistent/vm.sock"), VHD_FE_TRANSPORT_VHOST_USER);
	CHECK_EQ(vhd_fe_transport_of(VHD_FE_TRANSPORT_AUTO, "/dev/null"), VHD_FE_TRANSPORT_VHOST_KERNEL);
	CHECK_EQ(vhd_fe_transport_of(VHD_FE_TRANSPORT_VHOST_KERNEL, "/x.sock"), VHD_FE_TRANSPORT_VHOST_KERNEL);
	enum vhd_fe_transport_kind k;
	CHECK_EQ(vhd_fe_transport_parse("vhost-kernel", &k), 0);
	CHECK_EQ(k, VHD_FE_TRANSPORT_VHOST_KERNEL);
	CHECK_EQ(vhd_fe_transport_parse(vhd_fe_transport_name(VHD_FE_TRANSPORT_VHOST_USER), &k), 0);
	CHECK_EQ(k, VHD_FE_TRANSPORT_VHOST_USER);
	CHECK_EQ(vhd_fe_transport_parse("vhost-net", &k), -EINVAL);

	struct vhd_fe *fe = NULL;
	struct vhd_fe_config c = {.transport = VHD_FE_TRANSPORT_VHOST_KERNEL, .path = "/nonexistent/vhost-net",
				  .tap = "vhdt0", .queue_pairs = 2, .reconnect_min_ms = 10, .name = "vk"};
	c.features = vhd_fe_default_features() | VHD_BIT(VIRTIO_F_RING_PACKED);
	CHECK_EQ(vhd_fe_create(&c, &fe), -EOPNOTSUPP);
	c.features = 0;
	c.tap = NULL;
	CHECK_EQ(vhd_fe_create(&c, &fe), -EINVAL);
	c.tap = "vhdt0";
	c.server = true;
	CHECK_EQ(vhd_fe_create(&c, &fe), -EINVAL);
	c.server = false;
	c.transport = VHD_FE_TRANSPORT_VHOST_VDPA; /* no such node: vhost-vdpa opens at create */
	CHECK_EQ(vhd_fe_create(&c, &fe), -ENOENT);
	/* Nothing is opened before the first dispatch; a device that cannot be opened is retried after the
	 * back-off, never waited for. */
	c.transport = VHD_FE_TRANSPORT_VHOST_KERNEL;
	CHECK_EQ(vhd_fe_create(&c, &fe), 0);
	CHECK_EQ(vhd_fe_dispatch(fe), 0);
	CHECK(!vhd_fe_up(fe));
	int t = vhd_fe_timeout_ms(fe);
	CHECK(t > 0 && t <= 11);
	struct pollfd p[2];
	CHECK_EQ(vhd_fe_pollfds(fe, p, 2), 0u);
	vhd_fe_destroy(fe);
}

static const struct th_case cases[] = {
	{"vdpa_iova_range", test_vdpa_iova_range, 10},
	{"vdpa_not_a_device", test_vdpa_not_a_device, 10},
	{"backend_thread_per_pair", test_backend_thread_per_pair, 120},
	{"split", test_split, 120},
	{"packed", test_packed, 120},
	{"split_4qp_inorder", test_split_4qp_inorder, 120},
	{"packed_4qp", test_packed_4qp, 120},
	{"iommu_split", test_iommu_split, 120},
	{"iommu_packed", test_iommu_packed, 120},
	{"iommu_lazy_split", test_iommu_lazy_split, 120},
	{"iommu_lazy_packed_2qp", test_iommu_lazy_packed_2qp, 120},
	{"backend_killed", test_backend_killed, 180},
	{"backend_killed_inflight", test_backend_killed_inflight, 60},
	{"backend_killed_inflight_packed", test_backend_killed_inflight_packed, 60},
	{"virtio_user_port_inflight", test_virtio_user_port_inflight, 60},
	{"server_one_backend", test_server_one_backend, 60},
	{"frontend_killed", test_frontend_killed, 300},
	{"hostile_silent", test_hostile_silent, 60},
	{"hostile_half_reply", test_hostile_half_reply, 60},
	{"hostile_wrong_request", test_hostile_wrong_request, 60},
	{"hostile_wrong_size", test_hostile_wrong_size, 60},
	{"hostile_no_reply_flag", test_hostile_no_reply_flag, 60},
	{"hostile_fds", test_hostile_fds, 60},
	{"hostile_close", test_hostile_close, 60},
	{"hostile_nack", test_hostile_nack, 60},
	{"stalled_backend_holds_no_other", test_stalled_backend_holds_no_other, 60},
	{"destroy_does_not_wait", test_destroy_does_not_wait, 60},
	{"iommu_channel_hostile", test_iommu_channel_hostile, 60},
	{"virtio_user_port_rx_tx_windows", test_virtio_user_port_rx_tx_windows, 120},
	{"transport_select", test_transport_select, 30},
};
TH_MAIN("test_fe_be", cases)
