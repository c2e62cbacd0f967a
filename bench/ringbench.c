/* SPDX-License-Identifier: MIT */
/*
 * ringbench: virtqueue micro-benchmark, against a plain single-producer/single-consumer pointer ring as the
 * physical reference.
 *
 * Two threads pinned to two CPUs. For the virtqueues, a driver thread fills TX buffers and adds them with
 * vhd_vq_add() (guest addresses), a device thread pops them with vhd_vq_pop() (translated through a vhd_mem
 * table), copies the readable payload out, checks the sequence number and pushes them back with length 0; the
 * driver reclaims them with vhd_vq_get(). The rings, the indirect tables and the packet buffers all live in one
 * block registered at GPA 0x10000000, so guest and host addresses differ as they would for a VM.
 *
 * The reference does the same per-packet work over two SPSC pointer rings (one forward, one returning buffers
 * for reuse), so the ratio says what the virtqueue machinery costs over moving a pointer between two cores.
 *
 * Both sides poll: notifications are disabled and nobody sleeps. The driver/producer side keeps time: a warm-up,
 * then a measured window (--duration or --count) over the buffers it has had back. Measurements of a virtqueue
 * and of the reference alternate (ABBA), so machine noise lands on both.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h> /* __rdtsc() for --verbose, _mm_pause() for --pause */
#endif

#include "spec/virtio_config.h"
#include "vhostd/mem.h"
#include "vhostd/virtq.h"

#define GPA_BASE 0x10000000ull /* where the block sits in "guest-physical" space */
#define CACHELINE 64
#define MIN_SIZE 8    /* room for the sequence header */
#define MAX_SIZE 9216 /* jumbo frame */
#define MAX_SIZES 8
#define MAX_REPS 1000
#define IND_MAX 4           /* descriptors per indirect table (buffers use 1) */
#define CHECK_EVERY 64      /* producer loop iterations between clock reads (power of two) */
#define STALL_SECONDS 10.0  /* no buffer came back for this long: the run is declared stuck */

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

enum kind { K_SPLIT, K_PACKED, K_SPSC, K__COUNT };
static const char *const kind_name[K__COUNT] = {"split", "packed", "spsc"};

struct opts {
	unsigned kinds; /* bit per enum kind; K_SPSC alone means the reference only */
	uint32_t sizes[MAX_SIZES];
	unsigned nsizes;
	unsigned burst, qsize, reps;
	double duration, warmup;
	uint64_t count; /* nonzero: measure this many packets instead of a duration */
	int cpu[2];     /* driver/producer, device/consumer */
	bool in_order, indirect, event_idx, notify, pause, json, verbose;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Spin-wait hint for --pause: lets the other core keep the cache line it is filling a little longer. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	_mm_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield" ::: "memory");
#endif
}

/* Keep the compiler from treating the copy as dead: the bytes are "used" by something it cannot see. */
static inline void consume(const void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
}

/* ================================ reference: SPSC pointer ring ================================ */

struct spsc_ring {
	/* Producer's line: its index and its cached copy of the consumer's. */
	_Alignas(CACHELINE) _Atomic uint32_t prod;
	uint32_t cons_cache;
	/* Consumer's line. */
	_Alignas(CACHELINE) _Atomic uint32_t cons;
	uint32_t prod_cache;
	/* Read-only after creation. */
	_Alignas(CACHELINE) uint32_t size, mask;
	void **slot;
};

static struct spsc_ring *spsc_create(uint32_t size)
{
	struct spsc_ring *r = aligned_alloc(CACHELINE, sizeof(*r));
	if (!r)
		return NULL;
	memset(r, 0, sizeof(*r));
	r->size = size;
	r->mask = size - 1;
	r->slot = aligned_alloc(CACHELINE, ((size_t)size * sizeof(void *) + CACHELINE - 1) & ~(size_t)(CACHELINE - 1));
	if (!r->slot) {
		free(r);
		return NULL;
	}
	memset(r->slot, 0, (size_t)size * sizeof(void *));
	return r;
}

static void spsc_destroy(struct spsc_ring *r)
{
	if (r) {
		free(r->slot);
		free(r);
	}
}

/* Producer: enqueue up to n pointers; returns how many fit. */
static inline unsigned spsc_enqueue(struct spsc_ring *r, void *const *objs, unsigned n)
{
	uint32_t prod = atomic_load_explicit(&r->prod, memory_order_relaxed);
	uint32_t room = r->size - (prod - r->cons_cache);
	if (room < n) {
		/* Acquire pairs with the consumer's release of cons: it has finished reading the slots it freed. */
		r->cons_cache = atomic_load_explicit(&r->cons, memory_order_acquire);
		room = r->size - (prod - r->cons_cache);
		if (n > room)
			n = room;
	}
	if (n == 0)
		return 0;
	for (unsigned i = 0; i < n; i++)
		r->slot[(prod + i) & r->mask] = objs[i];
	/* Release: the slots (and the buffer bytes written before the call) are visible before the index. */
	atomic_store_explicit(&r->prod, prod + n, memory_order_release);
	return n;
}

/* Consumer: dequeue up to n pointers; returns how many there were. */
static inline unsigned spsc_dequeue(struct spsc_ring *r, void **objs, unsigned n)
{
	uint32_t cons = atomic_load_explicit(&r->cons, memory_order_relaxed);
	uint32_t avail = r->prod_cache - cons;
	if (avail < n) {
		r->prod_cache = atomic_load_explicit(&r->prod, memory_order_acquire);
		avail = r->prod_cache - cons;
		if (n > avail)
			n = avail;
	}
	if (n == 0)
		return 0;
	for (unsigned i = 0; i < n; i++)
		objs[i] = r->slot[(cons + i) & r->mask];
	atomic_store_explicit(&r->cons, cons + n, memory_order_release);
	return n;
}

/* ================================ one measurement ================================ */

/* --verbose phases of a loop iteration; see struct tprof. */
enum { T_IDLE, T_TAKE, T_WORK, T_GIVE, T__COUNT };

struct side_result {
	_Alignas(CACHELINE) bool setup_failed;
	bool failed;
	uint64_t count; /* packets collected back (producer) or checked (consumer), warm-up included */
	double ns[T__COUNT], ns_total; /* --verbose */
	char err[320];
};

struct run {
	const struct opts *o;
	enum kind kind;
	uint32_t size;
	size_t stride;
	uint64_t features;
	/* The shared block: rings, indirect tables, packet pool. */
	uint8_t *host;
	size_t total, ind_off, pool_off;
	struct vhd_vq_layout lay;
	struct vhd_mem *mem;
	struct spsc_ring *fwd, *ret;
	pthread_barrier_t barrier;
	_Alignas(CACHELINE) atomic_bool stop;
	struct side_result res[2]; /* [0] driver/producer, [1] device/consumer; each written by its own thread */
	/* Written by the driver/producer before it sets stop. */
	_Alignas(CACHELINE) uint64_t packets, sent;
	double seconds;
};

static void fail(struct run *r, int side, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(struct run *r, int side, const char *fmt, ...)
{
	struct side_result *res = &r->res[side];
	if (!res->failed) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(res->err, sizeof(res->err), fmt, ap);
		va_end(ap);
		res->failed = true;
	}
	atomic_store(&r->stop, true);
}

static bool pin_self(struct run *r, int side)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(r->o->cpu[side], &set);
	int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (rc != 0) {
		fail(r, side, "cannot pin to CPU %d: %s", r->o->cpu[side], strerror(rc));
		return false;
	}
	return true;
}

/* Both threads set up, then start together. False if either side's setup failed. */
static bool start_together(struct run *r, int side, bool ok)
{
	r->res[side].setup_failed = !ok;
	pthread_barrier_wait(&r->barrier);
	return !r->res[0].setup_failed && !r->res[1].setup_failed;
}

/* Time keeping on the producing side: warm-up, then the measured window over buffers collected back. */
struct meter {
	struct run *r;
	unsigned iter;
	bool measuring;
	double t_end, t0, t_progress;
	uint64_t c0, c_progress;
};

static void meter_init(struct meter *m, struct run *r)
{
	memset(m, 0, sizeof(*m));
	m->r = r;
	m->t_progress = now();
	m->t_end = m->t_progress + r->o->warmup;
}

static void meter_finish(struct meter *m, double t, uint64_t done)
{
	m->r->packets = done - m->c0;
	m->r->seconds = t - m->t0;
	atomic_store(&m->r->stop, true);
}

/* Call once per producer loop iteration with the running total of buffers collected. True: stop now. */
static inline bool meter_tick(struct meter *m, uint64_t done)
{
	const struct opts *o = m->r->o;
	if (m->measuring && o->count && done - m->c0 >= o->count) {
		meter_finish(m, now(), done);
		return true;
	}
	if (likely(++m->iter & (CHECK_EVERY - 1)))
		return false;
	if (atomic_load_explicit(&m->r->stop, memory_order_relaxed))
		return true; /* the other side failed */
	double t = now();
	if (done != m->c_progress) {
		m->c_progress = done;
		m->t_progress = t;
	} else if (t - m->t_progress > STALL_SECONDS) {
		fail(m->r, 0, "no buffer came back for %.0f s (%llu collected so far): stuck", STALL_SECONDS,
		     (unsigned long long)done);
		return true;
	}
	if (!m->measuring) {
		if (t >= m->t_end) {
			m->measuring = true;
			m->t0 = t;
			m->c0 = done;
			m->t_end = t + o->duration;
		}
		return false;
	}
	if (!o->count && t >= m->t_end) {
		meter_finish(m, t, done);
		return true;
	}
	return false;
}

/* ---------------- --verbose: where each thread's time goes ---------------- */

#if defined(__x86_64__) || defined(__i386__)
static inline uint64_t ticks(void)
{
	return __rdtsc();
}
#else
static inline uint64_t ticks(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
#endif

/*
 * One loop iteration of either side is: poll the other side's ring (T_IDLE when it had nothing, T_TAKE when it
 * had something), per-packet work (T_WORK: writing headers, or copying and checking), handing the burst over
 * (T_GIVE: add, push or enqueue, plus need_notify with --notify). Counted only with --verbose: the loops are
 * compiled twice, and the plain one has no clock reads.
 */
struct tprof {
	uint64_t t[T__COUNT];
	uint64_t last, start;
	double wall;
};

static inline __attribute__((always_inline)) void tp_begin(struct tprof *tp, bool prof)
{
	if (prof) {
		memset(tp, 0, sizeof(*tp));
		tp->wall = now();
		tp->start = tp->last = ticks();
	}
}

/* Charge the time since the previous mark to phase ph. */
static inline __attribute__((always_inline)) void tp_mark(struct tprof *tp, bool prof, int ph)
{
	if (prof) {
		uint64_t t = ticks();
		tp->t[ph] += t - tp->last;
		tp->last = t;
	}
}

static void tp_end(struct tprof *tp, bool prof, struct side_result *res)
{
	if (!prof)
		return;
	uint64_t t = ticks();
	double wall = now() - tp->wall;
	double tick_ns = wall > 0 && t > tp->start ? wall * 1e9 / (double)(t - tp->start) : 0;
	for (int i = 0; i < T__COUNT; i++)
		res->ns[i] = (double)tp->t[i] * tick_ns;
	res->ns_total = wall * 1e9;
}

/* ---------------- virtqueue driver (guest TX) ---------------- */

static struct vhd_vq *make_vq(struct run *r, int side, const char *name)
{
	const struct opts *o = r->o;
	bool packed = r->kind == K_PACKED;
	uint8_t *ring;
	if (side == 0) {
		ring = r->host; /* the guest writes its rings directly */
	} else {
		/* The device finds them through the memory table, as a vhost backend does. */
		ring = vhd_mem_guest_to_host(r->mem, GPA_BASE, r->lay.size);
		if (!ring) {
			fail(r, side, "rings at 0x%llx not in the memory table", (unsigned long long)GPA_BASE);
			return NULL;
		}
	}
	struct vhd_vq_config c = {
		.side = side == 0 ? VHD_VQ_DRIVER : VHD_VQ_DEVICE,
		.num = (uint16_t)o->qsize,
		.features = r->features,
		.desc = ring + r->lay.desc_off,
		.driver = ring + r->lay.driver_off,
		.device = ring + r->lay.device_off,
		.mem = side == 0 ? NULL : r->mem,
		.base = packed ? VHD_VQ_PACKED_BASE_INIT : 0,
		.name = name,
	};
	if (side == 0 && o->indirect) {
		c.indirect = r->host + r->ind_off;
		c.indirect_addr = GPA_BASE + r->ind_off;
		c.indirect_max = IND_MAX;
	}
	struct vhd_vq *vq = NULL;
	int rc = vhd_vq_create(&c, &vq);
	if (rc < 0) {
		fail(r, side, "vhd_vq_create: %s", strerror(-rc));
		return NULL;
	}
	vhd_vq_disable_notify(vq); /* polling */
	return vq;
}

/* A queue call failed: say which, and why the queue broke if it did. */
static void vq_fail(struct run *r, int side, const struct vhd_vq *vq, const char *call, int rc)
{
	if (vhd_vq_error(vq) != VHD_VQ_OK)
		fail(r, side, "%s: %s; queue broken (%s): %s", call, strerror(-rc), vhd_vq_strerror(vhd_vq_error(vq)),
		     vhd_vq_error_detail(vq));
	else
		fail(r, side, "%s: %s", call, strerror(-rc));
}

static void check_broken(struct run *r, int side, const struct vhd_vq *vq)
{
	if (vq && vhd_vq_error(vq) != VHD_VQ_OK)
		fail(r, side, "%s queue broken (%s): %s", side == 0 ? "driver" : "device",
		     vhd_vq_strerror(vhd_vq_error(vq)), vhd_vq_error_detail(vq));
}

struct vq_driver_ctx {
	struct run *r;
	struct vhd_vq *vq;
	void **freel;
	struct vhd_vq_seg *segs;
	struct vhd_vq_buf *bufs;
	struct vhd_vq_done *done;
	uint64_t sent, collected;
};

static inline __attribute__((always_inline)) void vq_driver_loop(struct vq_driver_ctx *x, const bool prof)
{
	struct run *r = x->r;
	const struct opts *o = r->o;
	const unsigned burst = o->burst;
	const uint32_t size = r->size, bflags = o->indirect ? VHD_VQ_BUF_INDIRECT : 0;
	const bool notify = o->notify, pause = o->pause;
	struct vhd_vq *vq = x->vq;
	void **freel = x->freel;
	struct vhd_vq_seg *segs = x->segs;
	struct vhd_vq_buf *bufs = x->bufs;
	struct vhd_vq_done *done = x->done;
	uint8_t *pool = r->host + r->pool_off;
	unsigned nfree = 0;
	for (unsigned i = 0; i < o->qsize; i++)
		freel[nfree++] = pool + (size_t)i * r->stride;
	uint64_t seq = 0, collected = 0;
	struct meter m;
	struct tprof tp;
	meter_init(&m, r);
	tp_begin(&tp, prof);
	for (;;) {
		/* Reclaim what the device has finished with. */
		int g = vhd_vq_get(vq, done, burst);
		if (unlikely(g < 0)) {
			vq_fail(r, 0, vq, "vhd_vq_get", g);
			break;
		}
		tp_mark(&tp, prof, g ? T_TAKE : T_IDLE);
		for (int i = 0; i < g; i++) {
			if (unlikely(done[i].len != 0 || !done[i].token)) {
				fail(r, 0, "buffer came back with len %u, token %p", done[i].len, done[i].token);
				goto end;
			}
			freel[nfree++] = done[i].token;
		}
		collected += (unsigned)g;
		/* Fill and add a burst: the sequence number is the packet's header. */
		unsigned k = nfree < burst ? nfree : burst;
		if (pause && k == 0)
			cpu_relax();
		if (k) {
			for (unsigned j = 0; j < k; j++) {
				uint8_t *p = freel[nfree - 1 - j];
				uint64_t s = seq + j;
				memcpy(p, &s, sizeof(s));
				segs[j].addr = GPA_BASE + (uint64_t)(p - r->host);
				segs[j].len = size;
				bufs[j] = (struct vhd_vq_buf){.segs = &segs[j], .nout = 1, .nin = 0, .flags = bflags, .token = p};
			}
			tp_mark(&tp, prof, T_WORK);
			int a = vhd_vq_add(vq, bufs, k);
			if (unlikely(a < 0)) {
				vq_fail(r, 0, vq, "vhd_vq_add", a);
				break;
			}
			nfree -= (unsigned)a;
			seq += (unsigned)a;
			if (notify && a > 0)
				vhd_vq_need_notify(vq);
			tp_mark(&tp, prof, T_GIVE);
		}
		if (meter_tick(&m, collected))
			break;
	}
end:
	tp_end(&tp, prof, &r->res[0]);
	x->sent = seq;
	x->collected = collected;
}

static void *vq_driver_main(void *arg)
{
	struct run *r = arg;
	const struct opts *o = r->o;
	struct vq_driver_ctx x = {
		.r = r,
		.freel = malloc(o->qsize * sizeof(*x.freel)),
		.segs = malloc(o->burst * sizeof(*x.segs)),
		.bufs = malloc(o->burst * sizeof(*x.bufs)),
		.done = malloc(o->burst * sizeof(*x.done)),
	};
	bool ok = pin_self(r, 0);
	if (ok && (!x.freel || !x.segs || !x.bufs || !x.done)) {
		fail(r, 0, "out of memory");
		ok = false;
	}
	if (ok)
		ok = (x.vq = make_vq(r, 0, "bench driver")) != NULL;
	if (start_together(r, 0, ok)) {
		if (o->verbose)
			vq_driver_loop(&x, true);
		else
			vq_driver_loop(&x, false);
		r->sent = x.sent;
		r->res[0].count = x.collected;
		atomic_store(&r->stop, true);
		check_broken(r, 0, x.vq);
	}
	vhd_vq_destroy(x.vq);
	free(x.freel);
	free(x.segs);
	free(x.bufs);
	free(x.done);
	return NULL;
}

/* ---------------- virtqueue device (vhost TX path) ---------------- */

struct vq_device_ctx {
	struct run *r;
	struct vhd_vq *vq;
	struct vhd_vq_chain *chains;
	struct vhd_vq_used *used;
	struct iovec *iov;
	unsigned niov;
	uint8_t *local;
	uint64_t checked;
};

static inline __attribute__((always_inline)) void vq_device_loop(struct vq_device_ctx *x, const bool prof)
{
	struct run *r = x->r;
	const struct opts *o = r->o;
	const unsigned burst = o->burst, niov = x->niov;
	const uint32_t size = r->size;
	const bool notify = o->notify, pause = o->pause;
	struct vhd_vq *vq = x->vq;
	struct vhd_vq_chain *chains = x->chains;
	struct vhd_vq_used *used = x->used;
	uint8_t *local = x->local;
	uint64_t expect = 0;
	struct tprof tp;
	tp_begin(&tp, prof);
	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		int n = vhd_vq_pop(vq, chains, burst, x->iov, niov);
		if (n <= 0) {
			if (unlikely(n < 0)) {
				vq_fail(r, 1, vq, "vhd_vq_pop", n);
				break;
			}
			if (pause)
				cpu_relax();
			tp_mark(&tp, prof, T_IDLE);
			continue;
		}
		tp_mark(&tp, prof, T_TAKE);
		for (int i = 0; i < n; i++) {
			const struct vhd_vq_chain *c = &chains[i];
			if (unlikely(c->err || c->nin || c->out_len != size)) {
				fail(r, 1, "chain id %u: err %d, %u readable bytes in %u segments, %u writable (expected %u "
					   "readable)", c->id, c->err, c->out_len, c->nout, c->nin, size);
				goto end;
			}
			uint8_t *dst = local;
			for (unsigned k = 0; k < c->nout; k++) {
				memcpy(dst, c->iov[k].iov_base, c->iov[k].iov_len);
				dst += c->iov[k].iov_len;
			}
			consume(local);
			uint64_t s;
			memcpy(&s, local, sizeof(s));
			if (unlikely(s != expect)) {
				fail(r, 1, "sequence check failed: packet %llu carries %llu", (unsigned long long)expect,
				     (unsigned long long)s);
				goto end;
			}
			expect++;
			used[i] = (struct vhd_vq_used){.id = c->id, .ndesc = c->ndesc, .len = 0};
		}
		tp_mark(&tp, prof, T_WORK);
		int p = vhd_vq_push(vq, used, (unsigned)n);
		if (unlikely(p != n)) {
			vq_fail(r, 1, vq, "vhd_vq_push", p < 0 ? p : -EIO);
			break;
		}
		if (notify)
			vhd_vq_need_notify(vq);
		tp_mark(&tp, prof, T_GIVE);
	}
end:
	tp_end(&tp, prof, &r->res[1]);
	x->checked = expect;
}

static void *vq_device_main(void *arg)
{
	struct run *r = arg;
	const struct opts *o = r->o;
	struct vq_device_ctx x = {
		.r = r,
		.chains = malloc(o->burst * sizeof(*x.chains)),
		.used = malloc(o->burst * sizeof(*x.used)),
		.niov = o->burst * 4,
		.local = aligned_alloc(CACHELINE, MAX_SIZE),
	};
	x.iov = malloc(x.niov * sizeof(*x.iov));
	bool ok = pin_self(r, 1);
	if (ok && (!x.chains || !x.used || !x.iov || !x.local)) {
		fail(r, 1, "out of memory");
		ok = false;
	}
	if (ok)
		ok = (x.vq = make_vq(r, 1, "bench device")) != NULL;
	if (start_together(r, 1, ok)) {
		if (o->verbose)
			vq_device_loop(&x, true);
		else
			vq_device_loop(&x, false);
		r->res[1].count = x.checked;
		check_broken(r, 1, x.vq);
	}
	vhd_vq_destroy(x.vq);
	free(x.chains);
	free(x.used);
	free(x.iov);
	free(x.local);
	return NULL;
}

/* ---------------- reference producer / consumer ---------------- */

struct spsc_ctx {
	struct run *r;
	void **freel, **tmp;
	uint8_t *local;
	uint64_t sent, count;
};

static inline __attribute__((always_inline)) void spsc_producer_loop(struct spsc_ctx *x, const bool prof)
{
	struct run *r = x->r;
	const struct opts *o = r->o;
	const unsigned burst = o->burst;
	const bool pause = o->pause;
	void **freel = x->freel, **tmp = x->tmp;
	uint8_t *pool = r->host + r->pool_off;
	unsigned nfree = 0;
	for (unsigned i = 0; i < o->qsize; i++)
		freel[nfree++] = pool + (size_t)i * r->stride;
	uint64_t seq = 0, collected = 0;
	struct meter m;
	struct tprof tp;
	meter_init(&m, r);
	tp_begin(&tp, prof);
	for (;;) {
		unsigned g = spsc_dequeue(r->ret, tmp, burst);
		tp_mark(&tp, prof, g ? T_TAKE : T_IDLE);
		for (unsigned i = 0; i < g; i++)
			freel[nfree++] = tmp[i];
		collected += g;
		unsigned k = nfree < burst ? nfree : burst;
		if (pause && k == 0)
			cpu_relax();
		if (k) {
			/* Same order as the virtqueue driver: top of the free stack first. */
			for (unsigned j = 0; j < k; j++) {
				uint8_t *p = freel[nfree - 1 - j];
				uint64_t s = seq + j;
				memcpy(p, &s, sizeof(s));
				tmp[j] = p;
			}
			tp_mark(&tp, prof, T_WORK);
			unsigned a = spsc_enqueue(r->fwd, tmp, k);
			nfree -= a;
			seq += a;
			tp_mark(&tp, prof, T_GIVE);
		}
		if (meter_tick(&m, collected))
			break;
	}
	tp_end(&tp, prof, &r->res[0]);
	x->sent = seq;
	x->count = collected;
}

static void *spsc_producer_main(void *arg)
{
	struct run *r = arg;
	const struct opts *o = r->o;
	struct spsc_ctx x = {
		.r = r,
		.freel = malloc(o->qsize * sizeof(*x.freel)),
		.tmp = malloc(o->burst * sizeof(*x.tmp)),
	};
	bool ok = pin_self(r, 0);
	if (ok && (!x.freel || !x.tmp)) {
		fail(r, 0, "out of memory");
		ok = false;
	}
	if (start_together(r, 0, ok)) {
		if (o->verbose)
			spsc_producer_loop(&x, true);
		else
			spsc_producer_loop(&x, false);
		r->sent = x.sent;
		r->res[0].count = x.count;
		atomic_store(&r->stop, true);
	}
	free(x.freel);
	free(x.tmp);
	return NULL;
}

static inline __attribute__((always_inline)) void spsc_consumer_loop(struct spsc_ctx *x, const bool prof)
{
	struct run *r = x->r;
	const unsigned burst = r->o->burst;
	const uint32_t size = r->size;
	const bool pause = r->o->pause;
	void **objs = x->tmp;
	uint8_t *local = x->local;
	uint64_t expect = 0;
	struct tprof tp;
	tp_begin(&tp, prof);
	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		unsigned n = spsc_dequeue(r->fwd, objs, burst);
		if (n == 0) {
			if (pause)
				cpu_relax();
			tp_mark(&tp, prof, T_IDLE);
			continue;
		}
		tp_mark(&tp, prof, T_TAKE);
		for (unsigned i = 0; i < n; i++) {
			memcpy(local, objs[i], size);
			consume(local);
			uint64_t s;
			memcpy(&s, local, sizeof(s));
			if (unlikely(s != expect)) {
				fail(r, 1, "sequence check failed: packet %llu carries %llu", (unsigned long long)expect,
				     (unsigned long long)s);
				goto end;
			}
			expect++;
		}
		tp_mark(&tp, prof, T_WORK);
		/* The return ring holds the whole pool, so this always fits. */
		unsigned a = spsc_enqueue(r->ret, objs, n);
		if (unlikely(a != n)) {
			fail(r, 1, "return ring full (%u of %u)", a, n);
			break;
		}
		tp_mark(&tp, prof, T_GIVE);
	}
end:
	tp_end(&tp, prof, &r->res[1]);
	x->count = expect;
}

static void *spsc_consumer_main(void *arg)
{
	struct run *r = arg;
	const struct opts *o = r->o;
	struct spsc_ctx x = {
		.r = r,
		.tmp = malloc(o->burst * sizeof(*x.tmp)),
		.local = aligned_alloc(CACHELINE, MAX_SIZE),
	};
	bool ok = pin_self(r, 1);
	if (ok && (!x.tmp || !x.local)) {
		fail(r, 1, "out of memory");
		ok = false;
	}
	if (start_together(r, 1, ok)) {
		if (o->verbose)
			spsc_consumer_loop(&x, true);
		else
			spsc_consumer_loop(&x, false);
		r->res[1].count = x.count;
	}
	free(x.tmp);
	free(x.local);
	return NULL;
}

/* ---------------- setup and teardown ---------------- */

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/*
 * One measurement. Returns Mpps, or a negative value after printing why it failed.
 */
static double run_one(const struct opts *o, enum kind kind, uint32_t size)
{
	struct run *r = aligned_alloc(CACHELINE, align_up(sizeof(*r), CACHELINE));
	if (!r) {
		fprintf(stderr, "ringbench: out of memory\n");
		return -1;
	}
	memset(r, 0, sizeof(*r));
	r->o = o;
	r->kind = kind;
	r->size = size;
	/* Buffers 2 KiB apart at least, as packet buffers (mbufs, skbs) usually are. */
	r->stride = align_up(size > 2048 ? size : 2048, CACHELINE);
	r->features = VHD_BIT(VIRTIO_F_VERSION_1) | (kind == K_PACKED ? VHD_BIT(VIRTIO_F_RING_PACKED) : 0) |
		      (o->in_order ? VHD_BIT(VIRTIO_F_IN_ORDER) : 0) |
		      (o->indirect ? VHD_BIT(VIRTIO_F_INDIRECT_DESC) : 0) |
		      (o->event_idx ? VHD_BIT(VIRTIO_F_EVENT_IDX) : 0);
	atomic_init(&r->stop, false);

	double mpps = -1;
	const char *what = NULL;
	if (kind != K_SPSC) {
		int rc = vhd_vq_layout(kind == K_PACKED, (uint16_t)o->qsize, &r->lay);
		if (rc < 0) {
			fprintf(stderr, "ringbench: vhd_vq_layout(%s, %u): %s\n", kind_name[kind], o->qsize, strerror(-rc));
			free(r);
			return -1;
		}
	}
	r->ind_off = align_up(r->lay.size, 4096);
	r->pool_off = align_up(r->ind_off + (size_t)o->qsize * IND_MAX * 16, 4096);
	r->total = align_up(r->pool_off + (size_t)o->qsize * r->stride, 4096);
	r->host = mmap(NULL, r->total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (r->host == MAP_FAILED) {
		fprintf(stderr, "ringbench: mmap %zu bytes: %s\n", r->total, strerror(errno));
		free(r);
		return -1;
	}
	if (kind == K_SPSC) {
		r->fwd = spsc_create(o->qsize);
		r->ret = spsc_create(o->qsize);
		if (!r->fwd || !r->ret)
			what = "out of memory";
	} else {
		struct vhd_mem_region_info ri = {
			.guest_addr = GPA_BASE,
			.size = r->total,
			.user_addr = (uint64_t)(uintptr_t)r->host,
			.host = r->host,
		};
		if (vhd_mem_create(&r->mem) < 0 || vhd_mem_add(r->mem, &ri) < 0)
			what = "cannot build the memory table";
	}
	if (what) {
		fprintf(stderr, "ringbench: %s\n", what);
		goto out;
	}

	pthread_barrier_init(&r->barrier, NULL, 2);
	pthread_t t[2];
	void *(*fn[2])(void *) = {kind == K_SPSC ? spsc_producer_main : vq_driver_main,
				   kind == K_SPSC ? spsc_consumer_main : vq_device_main};
	int started = 0;
	for (int i = 0; i < 2; i++) {
		int rc = pthread_create(&t[i], NULL, fn[i], r);
		if (rc != 0) {
			fprintf(stderr, "ringbench: pthread_create: %s\n", strerror(rc));
			break;
		}
		started++;
	}
	if (started < 2) {
		/* Only possible for the second thread: let the first one past its barrier and out. */
		if (started == 1) {
			r->res[1].setup_failed = true;
			pthread_barrier_wait(&r->barrier);
			pthread_join(t[0], NULL);
		}
		pthread_barrier_destroy(&r->barrier);
		goto out;
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&r->barrier);

	bool bad = false;
	for (int i = 0; i < 2; i++) {
		if (r->res[i].failed) {
			fprintf(stderr, "ringbench: %s %uB: %s: %s\n", kind_name[kind], size,
				i == 0 ? (kind == K_SPSC ? "producer" : "driver") : (kind == K_SPSC ? "consumer" : "device"),
				r->res[i].err);
			bad = true;
		}
	}
	/* Every buffer collected back was checked by the consumer, and nothing was checked that was not sent. */
	if (!bad && (r->res[1].count < r->res[0].count || r->res[1].count > r->sent)) {
		fprintf(stderr, "ringbench: %s %uB: accounting: sent %llu, checked %llu, collected %llu\n",
			kind_name[kind], size, (unsigned long long)r->sent, (unsigned long long)r->res[1].count,
			(unsigned long long)r->res[0].count);
		bad = true;
	}
	if (!bad && (r->seconds <= 0 || r->packets == 0)) {
		fprintf(stderr, "ringbench: %s %uB: empty measurement window\n", kind_name[kind], size);
		bad = true;
	}
	if (!bad)
		mpps = (double)r->packets / r->seconds / 1e6;
	if (!bad && o->verbose) {
		/* Whole-run figures, warm-up included, in ns per packet: where each thread's time went. */
		fprintf(stderr, "ringbench: %-6s %4uB: %.2f Mpps;", kind_name[kind], size, mpps);
		for (int i = 0; i < 2; i++) {
			const struct side_result *s = &r->res[i];
			double n = s->count ? (double)s->count : 1;
			fprintf(stderr, " %s ns/pkt: take %.1f work %.1f give %.1f idle %.1f (%.0f%%)%s",
				i == 0 ? "producer" : "consumer", s->ns[T_TAKE] / n, s->ns[T_WORK] / n, s->ns[T_GIVE] / n,
				s->ns[T_IDLE] / n, s->ns_total > 0 ? 100 * s->ns[T_IDLE] / s->ns_total : 0, i == 0 ? ";" : "\n");
		}
	}
out:
	spsc_destroy(r->fwd);
	spsc_destroy(r->ret);
	vhd_mem_destroy(r->mem);
	munmap(r->host, r->total);
	free(r);
	return mpps;
}

/* ================================ statistics and output ================================ */

struct stats {
	double median, min, max;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static struct stats stats_of(const double *v, unsigned n)
{
	double s[MAX_REPS];
	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_double);
	struct stats st = {.min = s[0], .max = s[n - 1]};
	st.median = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	return st;
}

static const char *flags_text(const struct opts *o, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s%s%s", o->in_order ? " in-order" : "", o->indirect ? " indirect" : "",
		 o->event_idx ? " event-idx" : "", o->notify ? " notify" : "", o->pause ? " pause" : "");
	return buf;
}

static void print_json_runs(const char *key, const double *v, unsigned n)
{
	printf(",\"%s\":[", key);
	for (unsigned i = 0; i < n; i++)
		printf("%s%.4f", i ? "," : "", v[i]);
	printf("]");
}

static void print_json_stats(const char *key, struct stats s)
{
	printf(",\"%s\":{\"median\":%.4f,\"min\":%.4f,\"max\":%.4f}", key, s.median, s.min, s.max);
}

static void report(const struct opts *o, enum kind kind, uint32_t size, const double *ours, const double *ref)
{
	unsigned n = o->reps;
	struct stats so = stats_of(ours, n);
	char fl[64];
	flags_text(o, fl, sizeof(fl));
	if (o->json) {
		printf("{\"layout\":\"%s\",\"size\":%u,\"burst\":%u,\"qsize\":%u,\"in_order\":%s,\"indirect\":%s,"
		       "\"event_idx\":%s,\"notify\":%s,\"pause\":%s,\"reps\":%u,",
		       kind_name[kind], size, o->burst, o->qsize, o->in_order ? "true" : "false",
		       o->indirect ? "true" : "false", o->event_idx ? "true" : "false", o->notify ? "true" : "false",
		       o->pause ? "true" : "false", n);
		if (o->count)
			printf("\"count\":%llu", (unsigned long long)o->count);
		else
			printf("\"duration\":%.3f", o->duration);
		print_json_stats("mpps", so);
		print_json_runs("runs", ours, n);
		if (ref) {
			struct stats sr = stats_of(ref, n);
			print_json_stats("spsc_mpps", sr);
			print_json_runs("spsc_runs", ref, n);
			printf(",\"ratio\":%.4f", so.median / sr.median);
		}
		printf("}\n");
	} else if (ref) {
		struct stats sr = stats_of(ref, n);
		printf("%-6s %4uB  burst %u%s: %.2f Mpps (spsc %.2f Mpps, ratio %.2f)   min-max %.2f-%.2f, spsc %.2f-%.2f\n",
		       kind_name[kind], size, o->burst, fl, so.median, sr.median, so.median / sr.median, so.min, so.max,
		       sr.min, sr.max);
	} else {
		printf("%-6s %4uB  burst %u: %.2f Mpps   min-max %.2f-%.2f\n", kind_name[kind], size, o->burst, so.median,
		       so.min, so.max);
	}
	fflush(stdout);
}

/* ================================ command line ================================ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ringbench [options]\n"
		"Virtqueue micro-benchmark: a driver thread adds packet buffers (a sequence number in the first 8\n"
		"bytes) to a virtqueue, a device thread pops them, copies the payload out, checks the sequence and\n"
		"pushes them back with length 0, the driver reclaims them. Both poll. The reference ('spsc') does the\n"
		"same work over a plain single-producer/single-consumer pointer ring with a return ring. Each\n"
		"measurement is repeated; virtqueue and reference runs alternate. Prints, per layout and size, the\n"
		"median Mpps, the reference's, their ratio, and min-max of each.\n"
		"\n"
		"  --layout L     split, packed, spsc (reference only) or all (split and packed; default)\n"
		"  --size N[,N]   packet bytes, %d..%d (default 64,1518)\n"
		"  --burst N      buffers per add/pop/push/get call (default 32; at most the queue size)\n"
		"  --qsize N      queue size, a power of two up to 32768 (default 256); also the buffer pool\n"
		"  --in-order     negotiate VIRTIO_F_IN_ORDER (batched used entries)\n"
		"  --indirect     negotiate VIRTIO_F_INDIRECT_DESC and add every buffer through an indirect table\n"
		"  --event-idx    negotiate VIRTIO_F_EVENT_IDX\n"
		"  --notify       call vhd_vq_need_notify() after every add and push burst, as a real backend would\n"
		"  --pause        execute a spin-wait hint (x86 PAUSE) after every poll that found nothing; the\n"
		"                 default is to spin flat out\n"
		"  --duration S   measured seconds per run (default 2), after the warm-up\n"
		"  --count N      measure N packets per run instead of a duration\n"
		"  --warmup S     warm-up seconds before each measured window (default 0.2)\n"
		"  --reps N       runs per measurement (default 3, at most %d)\n"
		"  --cpus A,B     CPUs for the driver/producer and device/consumer threads (default 0,1)\n"
		"  --json         one JSON object per line instead of text\n"
		"  --verbose      per run, on stderr: each side's ns per packet polling the other side's ring with\n"
		"                 success (take) and without (idle), doing the per-packet work, and handing over (give)\n"
		"  --help         this text\n"
		"Exits 1 if a queue breaks, a sequence check fails or a run stalls; 2 for bad options.\n",
		MIN_SIZE, MAX_SIZE, MAX_REPS);
}

static bool parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;
	errno = 0;
	if (*s == '-' || *s == '\0')
		return false;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || *end || v > max)
		return false;
	*out = v;
	return true;
}

static bool parse_seconds(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || end == s || !(v >= 0) || v > 86400)
		return false;
	*out = v;
	return true;
}

static int bad_option(const char *opt, const char *arg)
{
	fprintf(stderr, "ringbench: bad value for %s: '%s' (see --help)\n", opt, arg);
	return 2;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	enum { O_LAYOUT = 256, O_SIZE, O_BURST, O_QSIZE, O_IN_ORDER, O_INDIRECT, O_EVENT_IDX, O_NOTIFY, O_PAUSE, O_DURATION,
	       O_COUNT, O_WARMUP, O_REPS, O_CPUS, O_JSON, O_VERBOSE, O_HELP };
	static const struct option longopts[] = {
		{"layout", required_argument, NULL, O_LAYOUT},   {"size", required_argument, NULL, O_SIZE},
		{"burst", required_argument, NULL, O_BURST},     {"qsize", required_argument, NULL, O_QSIZE},
		{"in-order", no_argument, NULL, O_IN_ORDER},     {"indirect", no_argument, NULL, O_INDIRECT},
		{"event-idx", no_argument, NULL, O_EVENT_IDX},   {"notify", no_argument, NULL, O_NOTIFY},
		{"pause", no_argument, NULL, O_PAUSE},
		{"duration", required_argument, NULL, O_DURATION}, {"count", required_argument, NULL, O_COUNT},
		{"warmup", required_argument, NULL, O_WARMUP},   {"reps", required_argument, NULL, O_REPS},
		{"cpus", required_argument, NULL, O_CPUS},       {"json", no_argument, NULL, O_JSON},
		{"verbose", no_argument, NULL, O_VERBOSE}, {"help", no_argument, NULL, O_HELP},             {NULL, 0, NULL, 0},
	};
	*o = (struct opts){
		.kinds = (1u << K_SPLIT) | (1u << K_PACKED),
		.sizes = {64, 1518},
		.nsizes = 2,
		.burst = 32,
		.qsize = 256,
		.reps = 3,
		.duration = 2.0,
		.warmup = 0.2,
		.cpu = {0, 1},
	};
	int c;
	unsigned long long v;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_LAYOUT:
			if (!strcmp(optarg, "split"))
				o->kinds = 1u << K_SPLIT;
			else if (!strcmp(optarg, "packed"))
				o->kinds = 1u << K_PACKED;
			else if (!strcmp(optarg, "spsc"))
				o->kinds = 1u << K_SPSC;
			else if (!strcmp(optarg, "all"))
				o->kinds = (1u << K_SPLIT) | (1u << K_PACKED);
			else
				return bad_option("--layout", optarg);
			break;
		case O_SIZE: {
			char buf[128];
			snprintf(buf, sizeof(buf), "%s", optarg);
			o->nsizes = 0;
			char *save = NULL;
			for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				if (o->nsizes == MAX_SIZES || !parse_uint(tok, MAX_SIZE, &v) || v < MIN_SIZE)
					return bad_option("--size", optarg);
				o->sizes[o->nsizes++] = (uint32_t)v;
			}
			if (o->nsizes == 0)
				return bad_option("--size", optarg);
			break;
		}
		case O_BURST:
			if (!parse_uint(optarg, 32768, &v) || v == 0)
				return bad_option("--burst", optarg);
			o->burst = (unsigned)v;
			break;
		case O_QSIZE:
			if (!parse_uint(optarg, 32768, &v) || v == 0 || (v & (v - 1)))
				return bad_option("--qsize", optarg);
			o->qsize = (unsigned)v;
			break;
		case O_IN_ORDER:
			o->in_order = true;
			break;
		case O_INDIRECT:
			o->indirect = true;
			break;
		case O_EVENT_IDX:
			o->event_idx = true;
			break;
		case O_NOTIFY:
			o->notify = true;
			break;
		case O_PAUSE:
			o->pause = true;
			break;
		case O_DURATION:
			if (!parse_seconds(optarg, &o->duration) || o->duration <= 0)
				return bad_option("--duration", optarg);
			break;
		case O_COUNT:
			if (!parse_uint(optarg, UINT64_MAX / 2, &v) || v == 0)
				return bad_option("--count", optarg);
			o->count = v;
			break;
		case O_WARMUP:
			if (!parse_seconds(optarg, &o->warmup))
				return bad_option("--warmup", optarg);
			break;
		case O_REPS:
			if (!parse_uint(optarg, MAX_REPS, &v) || v == 0)
				return bad_option("--reps", optarg);
			o->reps = (unsigned)v;
			break;
		case O_CPUS: {
			int a, b, n = -1;
			if (sscanf(optarg, "%d,%d%n", &a, &b, &n) != 2 || n < 0 || optarg[n] || a < 0 || b < 0 ||
			    a >= CPU_SETSIZE || b >= CPU_SETSIZE)
				return bad_option("--cpus", optarg);
			o->cpu[0] = a;
			o->cpu[1] = b;
			break;
		}
		case O_JSON:
			o->json = true;
			break;
		case O_VERBOSE:
			o->verbose = true;
			break;
		case O_HELP:
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ringbench: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (o->burst > o->qsize) {
		fprintf(stderr, "ringbench: --burst %u is larger than --qsize %u\n", o->burst, o->qsize);
		return 2;
	}
	cpu_set_t allowed;
	if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) {
		for (int i = 0; i < 2; i++) {
			if (!CPU_ISSET(o->cpu[i], &allowed)) {
				fprintf(stderr, "ringbench: CPU %d is not available to this process (see --cpus)\n", o->cpu[i]);
				return 2;
			}
		}
	}
	if (o->cpu[0] == o->cpu[1])
		fprintf(stderr, "ringbench: warning: both threads on CPU %d; two polling threads will time-share it\n",
			o->cpu[0]);
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	int rc = parse_args(argc, argv, &o);
	if (rc)
		return rc;

	if (!o.json) {
		char fl[64];
		printf("# ringbench: qsize %u, burst %u%s, CPUs %d,%d; %u runs each of ", o.qsize, o.burst,
		       flags_text(&o, fl, sizeof(fl)), o.cpu[0], o.cpu[1], o.reps);
		if (o.count)
			printf("%llu packets", (unsigned long long)o.count);
		else
			printf("%.2f s", o.duration);
		printf(" after %.2f s warm-up; median Mpps, then min-max\n", o.warmup);
		fflush(stdout);
	}

	bool failed = false;
	static double ours[MAX_REPS], ref[MAX_REPS];
	for (int k = 0; k < K__COUNT; k++) {
		if (!(o.kinds & (1u << k)))
			continue;
		bool with_ref = k != K_SPSC;
		for (unsigned s = 0; s < o.nsizes; s++) {
			bool ok = true;
			for (unsigned i = 0; i < o.reps && ok; i++) {
				/* ABBA: alternate which goes first, so drift in either direction lands on both. */
				bool ref_first = with_ref && (i & 1);
				if (ref_first)
					ok = (ref[i] = run_one(&o, K_SPSC, o.sizes[s])) >= 0;
				if (ok)
					ok = (ours[i] = run_one(&o, (enum kind)k, o.sizes[s])) >= 0;
				if (ok && with_ref && !ref_first)
					ok = (ref[i] = run_one(&o, K_SPSC, o.sizes[s])) >= 0;
			}
			if (!ok) {
				failed = true;
				if (o.json)
					printf("{\"layout\":\"%s\",\"size\":%u,\"burst\":%u,\"error\":true}\n", kind_name[k],
					       o.sizes[s], o.burst);
				else
					printf("%-6s %4uB  burst %u: FAILED (see stderr)\n", kind_name[k], o.sizes[s], o.burst);
				fflush(stdout);
				continue;
			}
			report(&o, (enum kind)k, o.sizes[s], ours, with_ref ? ref : NULL);
		}
	}
	return failed ? 1 : 0;
}
