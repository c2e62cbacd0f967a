/* SPDX-License-Identifier: MIT */
/*
 * Driver and device in two processes, in the manner of Linux tools/virtio: they share one memfd that each maps
 * at its own address (the device through a memory table that splits it into two regions, so some buffers
 * straddle a region boundary), and talk only through the rings and two eventfds (kick and call).
 *
 * The driver adds buffers of random shape (1-3 readable segments, 0-2 writable ones, random sizes, sometimes
 * through an indirect table); the device checks every readable byte, writes a reply of a length derived from the
 * sequence number, and completes chains out of order when IN_ORDER is off. The driver checks every token, length
 * and reply byte. Both sides poll for a while, then enable notifications and sleep on their eventfd with a
 * timeout, so a lost kick or interrupt fails the case instead of hanging it.
 *
 * One case per combination of split/packed x indirect x EVENT_IDX x IN_ORDER; VHD_TWOPROC_COUNT overrides the
 * 10^6 buffers each case passes (the ASan build's default test setup sets 3*10^5, tests/meson.build).
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include "harness.h"
#include "spec/virtio_config.h"
#include "vhostd/mem.h"
#include "vhostd/virtq.h"

#define QSIZE 256
#define IND_MAX 8
#define SLOT_SIZE 4096
#define OUT_MAX 1500
#define IN_MAX 1500
#define BURST 32
#define GPA_BASE 0x40000000ull
#define WAIT_MS 10000
#define SPIN_BEFORE_SLEEP 64

struct shape {
	size_t rings, ind_off, pool_off, total;
	struct vhd_vq_layout lay;
};

static struct shape shape_of(bool packed)
{
	struct shape s;
	CHECK(vhd_vq_layout(packed, QSIZE, &s.lay) == 0);
	s.rings = s.lay.size;
	s.ind_off = (s.rings + 4095) & ~(size_t)4095;
	s.pool_off = s.ind_off + (size_t)QSIZE * IND_MAX * 16;
	s.pool_off = (s.pool_off + 4095) & ~(size_t)4095;
	s.total = s.pool_off + (size_t)QSIZE * SLOT_SIZE;
	return s;
}

/* Deterministic per-sequence randomness both sides can recompute. */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static uint8_t pattern_byte(uint64_t seq, uint32_t i, uint64_t salt)
{
	uint64_t w = mix(seq * 0x9e3779b97f4a7c15ull ^ salt ^ (i >> 3));
	return (uint8_t)(w >> ((i & 7) * 8));
}

static void fill_pattern(uint8_t *p, uint32_t len, uint64_t seq, uint64_t salt, uint32_t from)
{
	for (uint32_t i = 0; i < len; i++)
		p[i] = pattern_byte(seq, from + i, salt);
}

static bool check_pattern(const uint8_t *p, uint32_t len, uint64_t seq, uint64_t salt, uint32_t from)
{
	for (uint32_t i = 0; i < len; i++)
		if (p[i] != pattern_byte(seq, from + i, salt))
			return false;
	return true;
}

#define SALT_OUT 0x1111u
#define SALT_IN 0x2222u

/* Sizes of buffer seq: readable bytes (>= 16 for the header), writable capacity, and the reply length. */
static uint32_t out_len_of(uint64_t seq) { return 16 + (uint32_t)(mix(seq ^ 0xa) % (OUT_MAX - 16 + 1)); }
static uint32_t in_cap_of(uint64_t seq)
{
	uint64_t r = mix(seq ^ 0xb);
	return (r & 1) ? 0 : 1 + (uint32_t)((r >> 1) % IN_MAX); /* half the buffers are readable-only */
}
static uint32_t reply_len_of(uint64_t seq, uint32_t cap) { return cap ? (uint32_t)(mix(seq ^ 0xc) % (cap + 1)) : 0; }

static int wait_fd(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int r = poll(&p, 1, WAIT_MS);
	if (r <= 0)
		return -ETIMEDOUT;
	uint64_t v;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return -errno;
	return 0;
}

static void signal_fd(int fd)
{
	uint64_t one = 1;
	if (write(fd, &one, sizeof(one)) != sizeof(one))
		_exit(3);
}

struct cfg {
	bool packed, indirect, event_idx, in_order;
	uint64_t count;
};

static uint64_t features_of(const struct cfg *c)
{
	uint64_t f = VHD_BIT(VIRTIO_F_VERSION_1);
	if (c->packed)
		f |= VHD_BIT(VIRTIO_F_RING_PACKED);
	if (c->indirect)
		f |= VHD_BIT(VIRTIO_F_INDIRECT_DESC);
	if (c->event_idx)
		f |= VHD_BIT(VIRTIO_F_EVENT_IDX);
	if (c->in_order)
		f |= VHD_BIT(VIRTIO_F_IN_ORDER);
	return f;
}

#define FAILX(...)                                                                                            \
	do {                                                                                                  \
		fprintf(stderr, __VA_ARGS__);                                                                 \
		fputc('\n', stderr);                                                                          \
		_exit(1);                                                                                     \
	} while (0)

/* ------------------------------- device process ------------------------------- */

static int run_device(const struct cfg *c, int memfd, int kick, int call, int addr_pipe)
{
	struct shape s = shape_of(c->packed);
	/* Push our mappings away from wherever the driver's landed. */
	void *spacer = mmap(NULL, s.total + (2u << 20), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	(void)spacer;
	struct vhd_mem *mem;
	CHECK(vhd_mem_create(&mem) == 0);
	/* Two regions with a boundary inside the pool at an odd offset: buffers across it get two segments. */
	uint64_t split_at = s.pool_off + 37 * SLOT_SIZE + 1000;
	uint64_t split_pg = split_at & ~(uint64_t)4095;
	int fd2 = dup(memfd);
	CHECK(vhd_mem_map_fd(mem, memfd, 0, GPA_BASE, split_pg, 0) == 0);
	CHECK(vhd_mem_map_fd(mem, fd2, split_pg, GPA_BASE + split_pg, s.total - split_pg, 0) == 0);
	uint8_t *base = vhd_mem_guest_to_host(mem, GPA_BASE, s.rings);
	CHECK(base != NULL);
	uintptr_t a = (uintptr_t)base;
	CHECK(write(addr_pipe, &a, sizeof(a)) == sizeof(a));

	struct vhd_vq_config vc = {
		.side = VHD_VQ_DEVICE,
		.num = QSIZE,
		.features = features_of(c),
		.desc = base + s.lay.desc_off,
		.driver = base + s.lay.driver_off,
		.device = base + s.lay.device_off,
		.mem = mem,
		.base = c->packed ? VHD_VQ_PACKED_BASE_INIT : 0,
		.name = "twoproc-dev",
	};
	struct vhd_vq *vq;
	CHECK(vhd_vq_create(&vc, &vq) == 0);
	vhd_vq_disable_notify(vq);

	static struct vhd_vq_chain chains[BURST];
	static struct iovec iov[BURST * 16];
	static struct vhd_vq_used used[BURST];
	static uint8_t scratch[OUT_MAX + IN_MAX];
	uint64_t expect = 0, rng = 12345, sleeps = 0, calls = 0;
	unsigned spin = 0;
	while (expect < c->count) {
		int n = vhd_vq_pop(vq, chains, BURST, iov, BURST * 16);
		if (n < 0)
			FAILX("device: pop failed: %s: %s", vhd_vq_strerror(vhd_vq_error(vq)), vhd_vq_error_detail(vq));
		if (n == 0) {
			if (++spin < SPIN_BEFORE_SLEEP)
				continue;
			spin = 0;
			if (!vhd_vq_enable_notify(vq)) {
				sleeps++;
				if (wait_fd(kick) < 0)
					FAILX("device: no kick for %d ms after %llu chains (lost notification)", WAIT_MS,
					      (unsigned long long)expect);
			}
			vhd_vq_disable_notify(vq);
			continue;
		}
		for (int i = 0; i < n; i++) {
			struct vhd_vq_chain *ch = &chains[i];
			if (ch->err)
				FAILX("device: chain %llu has err %d", (unsigned long long)expect, ch->err);
			/* Gather the readable part and check it all. */
			uint32_t got = 0;
			for (unsigned k = 0; k < ch->nout; k++) {
				if (got + ch->iov[k].iov_len > sizeof(scratch))
					FAILX("device: readable part too long");
				memcpy(scratch + got, ch->iov[k].iov_base, ch->iov[k].iov_len);
				got += (uint32_t)ch->iov[k].iov_len;
			}
			uint64_t seq;
			memcpy(&seq, scratch, sizeof(seq));
			if (got != ch->out_len || seq != expect || got != out_len_of(seq))
				FAILX("device: chain %llu: seq %llu, %u readable bytes (want %u)", (unsigned long long)expect,
				      (unsigned long long)seq, got, out_len_of(expect));
			if (!check_pattern(scratch + 8, got - 8, seq, SALT_OUT, 8))
				FAILX("device: chain %llu: readable bytes corrupted", (unsigned long long)seq);
			if (ch->in_len != in_cap_of(seq))
				FAILX("device: chain %llu: %u writable bytes, want %u", (unsigned long long)seq, ch->in_len,
				      in_cap_of(seq));
			/* Reply, scattered over the writable segments. */
			uint32_t reply = reply_len_of(seq, ch->in_len), off = 0;
			for (unsigned k = ch->nout; k < (unsigned)ch->nout + ch->nin && off < reply; k++) {
				uint32_t take = (uint32_t)ch->iov[k].iov_len;
				if (take > reply - off)
					take = reply - off;
				fill_pattern(ch->iov[k].iov_base, take, seq, SALT_IN, off);
				off += take;
			}
			used[i] = (struct vhd_vq_used){.id = ch->id, .ndesc = ch->ndesc, .len = reply};
			expect++;
		}
		if (!c->in_order) {
			/* Complete out of order. */
			for (int i = n - 1; i > 0; i--) {
				rng = mix(rng);
				int j = (int)(rng % (uint64_t)(i + 1));
				struct vhd_vq_used t = used[i];
				used[i] = used[j];
				used[j] = t;
			}
			if (vhd_vq_push(vq, used, (unsigned)n) != n)
				FAILX("device: push failed: %s", vhd_vq_error_detail(vq));
		} else {
			/* Push runs of equal "zero length"-ness separately so that runs of zero-length completions
			 * take the batched IN_ORDER path. */
			int start = 0;
			for (int i = 1; i <= n; i++) {
				if (i == n || (used[i].len == 0) != (used[start].len == 0)) {
					if (vhd_vq_push(vq, used + start, (unsigned)(i - start)) != i - start)
						FAILX("device: push failed: %s", vhd_vq_error_detail(vq));
					start = i;
				}
			}
		}
		if (vhd_vq_need_notify(vq)) {
			calls++;
			signal_fd(call);
		}
	}
	struct vhd_vq_stats st;
	vhd_vq_get_stats(vq, &st);
	printf("device: %llu chains, %llu sleeps, %llu interrupts sent, %llu suppressed\n",
	       (unsigned long long)st.chains, (unsigned long long)sleeps, (unsigned long long)calls,
	       (unsigned long long)st.notify_skipped);
	fflush(stdout);
	vhd_vq_destroy(vq);
	vhd_mem_destroy(mem);
	return 0;
}

/* ------------------------------- driver process ------------------------------- */

struct slot {
	uint64_t seq;
	uint32_t in_cap;
	uint16_t index;
};

static int run_driver(const struct cfg *c, int memfd, int kick, int call, int addr_pipe)
{
	struct shape s = shape_of(c->packed);
	uint8_t *base = mmap(NULL, s.total, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	CHECK(base != MAP_FAILED);
	uintptr_t a = (uintptr_t)base;
	CHECK(write(addr_pipe, &a, sizeof(a)) == sizeof(a));

	struct vhd_vq_config vc = {
		.side = VHD_VQ_DRIVER,
		.num = QSIZE,
		.features = features_of(c),
		.desc = base + s.lay.desc_off,
		.driver = base + s.lay.driver_off,
		.device = base + s.lay.device_off,
		.base = c->packed ? VHD_VQ_PACKED_BASE_INIT : 0,
		.indirect = base + s.ind_off,
		.indirect_addr = GPA_BASE + s.ind_off,
		.indirect_max = IND_MAX,
		.name = "twoproc-drv",
	};
	struct vhd_vq *vq;
	CHECK(vhd_vq_create(&vc, &vq) == 0);
	vhd_vq_disable_notify(vq);

	static struct slot slots[QSIZE];
	static uint16_t free_slots[QSIZE];
	unsigned nfree = QSIZE;
	for (unsigned i = 0; i < QSIZE; i++) {
		slots[i].index = (uint16_t)i;
		free_slots[i] = (uint16_t)(QSIZE - 1 - i);
	}
	static struct vhd_vq_seg segs[BURST][6];
	static struct vhd_vq_buf bufs[BURST];
	static struct vhd_vq_done done[BURST];
	uint64_t next_seq = 0, completed = 0, next_done = 0, kicks = 0, sleeps = 0, indirect_bufs = 0;
	unsigned spin = 0;
	uint64_t rng = 777;

	while (completed < c->count) {
		/* Prepare a burst of new buffers. */
		unsigned nb = 0;
		while (nb < BURST && nb < nfree && next_seq + nb < c->count) {
			uint64_t seq = next_seq + nb;
			struct slot *sl = &slots[free_slots[nfree - 1 - nb]];
			sl->seq = seq;
			uint32_t out = out_len_of(seq), cap = in_cap_of(seq);
			sl->in_cap = cap;
			size_t slot_off = s.pool_off + (size_t)sl->index * SLOT_SIZE;
			uint8_t *p = base + slot_off;
			memcpy(p, &seq, sizeof(seq));
			fill_pattern(p + 8, out - 8, seq, SALT_OUT, 8);
			memset(p + OUT_MAX, 0, cap); /* stale bytes from an earlier use must not pass the check */
			/* Split readable bytes into 1-3 segments and writable into 0-2. */
			rng = mix(rng + seq);
			unsigned nout = 1 + (unsigned)(rng % 3), nin = cap ? 1 + (unsigned)((rng >> 8) % 2) : 0;
			if (nout > out)
				nout = 1;
			if (nin > cap)
				nin = cap ? 1 : 0;
			unsigned k = 0;
			uint32_t done_b = 0;
			for (unsigned j = 0; j < nout; j++, k++) {
				uint32_t len = j + 1 == nout ? out - done_b : (out - done_b) / 2;
				segs[nb][k] = (struct vhd_vq_seg){GPA_BASE + slot_off + done_b, len};
				done_b += len;
			}
			done_b = 0;
			for (unsigned j = 0; j < nin; j++, k++) {
				uint32_t len = j + 1 == nin ? cap - done_b : (cap - done_b) / 3;
				segs[nb][k] = (struct vhd_vq_seg){GPA_BASE + slot_off + OUT_MAX + done_b, len};
				done_b += len;
			}
			bool ind = c->indirect && ((rng >> 16) & 1);
			indirect_bufs += ind;
			bufs[nb] = (struct vhd_vq_buf){.segs = segs[nb], .nout = (uint16_t)nout, .nin = (uint16_t)nin,
						       .flags = ind ? VHD_VQ_BUF_INDIRECT : 0, .token = sl};
			nb++;
		}
		int added = 0;
		if (nb) {
			added = vhd_vq_add(vq, bufs, nb);
			if (added < 0)
				FAILX("driver: add failed (%d): %s", added, vhd_vq_error_detail(vq));
			nfree -= (unsigned)added;
			next_seq += (uint64_t)added;
			if (added && vhd_vq_need_notify(vq)) {
				kicks++;
				signal_fd(kick);
			}
		}
		int got = vhd_vq_get(vq, done, BURST);
		if (got < 0)
			FAILX("driver: get failed: %s: %s", vhd_vq_strerror(vhd_vq_error(vq)), vhd_vq_error_detail(vq));
		for (int i = 0; i < got; i++) {
			struct slot *sl = done[i].token;
			if (sl < slots || sl >= slots + QSIZE)
				FAILX("driver: bad token");
			if (c->in_order && sl->seq != next_done)
				FAILX("driver: IN_ORDER completion of %llu, expected %llu", (unsigned long long)sl->seq,
				      (unsigned long long)next_done);
			next_done++;
			uint32_t want = reply_len_of(sl->seq, sl->in_cap);
			/* A batched IN_ORDER entry reports 0 for the buffers it covers; the device only batches
			 * zero-length completions, so the length is exact either way. */
			if (done[i].len != want)
				FAILX("driver: buffer %llu: used len %u, want %u", (unsigned long long)sl->seq, done[i].len,
				      want);
			const uint8_t *r = base + s.pool_off + (size_t)sl->index * SLOT_SIZE + OUT_MAX;
			if (!check_pattern(r, want, sl->seq, SALT_IN, 0))
				FAILX("driver: buffer %llu: reply corrupted", (unsigned long long)sl->seq);
			free_slots[nfree++] = sl->index;
			completed++;
		}
		if (added == 0 && got == 0) {
			if (++spin < SPIN_BEFORE_SLEEP)
				continue;
			spin = 0;
			if (!vhd_vq_enable_notify(vq)) {
				sleeps++;
				if (wait_fd(call) < 0)
					FAILX("driver: no interrupt for %d ms, %llu of %llu done, %u in flight (lost "
					      "notification)", WAIT_MS, (unsigned long long)completed,
					      (unsigned long long)c->count, vhd_vq_inflight(vq));
			}
			vhd_vq_disable_notify(vq);
		} else {
			spin = 0;
		}
	}
	if (c->indirect && indirect_bufs == 0)
		FAILX("driver: no buffer went through an indirect table");
	printf("driver: %llu buffers, %llu indirect, %llu kicks sent, %llu sleeps\n", (unsigned long long)completed,
	       (unsigned long long)indirect_bufs, (unsigned long long)kicks, (unsigned long long)sleeps);
	fflush(stdout);
	vhd_vq_destroy(vq);
	munmap(base, s.total);
	return 0;
}

/* ------------------------------- the case ------------------------------- */

static void run_case(bool packed, bool indirect, bool event_idx, bool in_order)
{
	struct cfg c = {packed, indirect, event_idx, in_order, th_scaled(1000000)};
	const char *env = getenv("VHD_TWOPROC_COUNT");
	if (env && *env)
		c.count = strtoull(env, NULL, 10);
	struct shape s = shape_of(packed);
	int memfd = memfd_create("vhd-twoproc", MFD_CLOEXEC);
	CHECK(memfd >= 0);
	CHECK(ftruncate(memfd, (off_t)s.total) == 0);
	int kick = eventfd(0, EFD_CLOEXEC), call = eventfd(0, EFD_CLOEXEC);
	CHECK(kick >= 0 && call >= 0);
	int ap[2];
	CHECK(pipe(ap) == 0);

	pid_t drv = fork();
	CHECK(drv >= 0);
	if (drv == 0)
		_exit(run_driver(&c, memfd, kick, call, ap[1]));
	pid_t dev = fork();
	CHECK(dev >= 0);
	if (dev == 0)
		_exit(run_device(&c, memfd, kick, call, ap[1]));

	uintptr_t addrs[2];
	CHECK(read(ap[0], &addrs[0], sizeof(addrs[0])) == sizeof(addrs[0]));
	CHECK(read(ap[0], &addrs[1], sizeof(addrs[1])) == sizeof(addrs[1]));
	CHECK(addrs[0] != addrs[1]);

	int st_drv, st_dev;
	CHECK(waitpid(drv, &st_drv, 0) == drv);
	if (!WIFEXITED(st_drv) || WEXITSTATUS(st_drv) != 0)
		kill(dev, SIGKILL);
	CHECK(waitpid(dev, &st_dev, 0) == dev);
	if (!WIFEXITED(st_drv) || WEXITSTATUS(st_drv) != 0)
		FAILX("driver process failed (status 0x%x)", st_drv);
	if (!WIFEXITED(st_dev) || WEXITSTATUS(st_dev) != 0)
		FAILX("device process failed (status 0x%x)", st_dev);
}

#define CASE(name, p, i, e, o)                                                                                \
	static void name(void) { run_case(p, i, e, o); }
CASE(split_plain, false, false, false, false)
CASE(split_inorder, false, false, false, true)
CASE(split_evidx, false, false, true, false)
CASE(split_evidx_inorder, false, false, true, true)
CASE(split_ind, false, true, false, false)
CASE(split_ind_inorder, false, true, false, true)
CASE(split_ind_evidx, false, true, true, false)
CASE(split_ind_evidx_inorder, false, true, true, true)
CASE(packed_plain, true, false, false, false)
CASE(packed_inorder, true, false, false, true)
CASE(packed_evidx, true, false, true, false)
CASE(packed_evidx_inorder, true, false, true, true)
CASE(packed_ind, true, true, false, false)
CASE(packed_ind_inorder, true, true, false, true)
CASE(packed_ind_evidx, true, true, true, false)
CASE(packed_ind_evidx_inorder, true, true, true, true)

static const struct th_case cases[] = {
	{"split_plain", split_plain, 300},
	{"split_inorder", split_inorder, 300},
	{"split_evidx", split_evidx, 300},
	{"split_evidx_inorder", split_evidx_inorder, 300},
	{"split_ind", split_ind, 300},
	{"split_ind_inorder", split_ind_inorder, 300},
	{"split_ind_evidx", split_ind_evidx, 300},
	{"split_ind_evidx_inorder", split_ind_evidx_inorder, 300},
	{"packed_plain", packed_plain, 300},
	{"packed_inorder", packed_inorder, 300},
	{"packed_evidx", packed_evidx, 300},
	{"packed_evidx_inorder", packed_evidx_inorder, 300},
	{"packed_ind", packed_ind, 300},
	{"packed_ind_inorder", packed_ind_inorder, 300},
	{"packed_ind_evidx", packed_ind_evidx, 300},
	{"packed_ind_evidx_inorder", packed_ind_evidx_inorder, 300},
};
TH_MAIN("test_twoproc", cases)
