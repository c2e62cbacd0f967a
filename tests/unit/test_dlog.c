/* SPDX-License-Identifier: MIT */
/*
 * Dirty page logging for live migration, driven through the vhost-user back-end by the hand-written front-end
 * of vu_rig.h: SET_LOG_BASE's refusals, and which bits of a real memfd log the device sets for the bytes it
 * writes into a guest receive buffer (through the virtio-net data path), the used ring (split) and the used
 * descriptors (packed); that zero-length writable descriptors, logging switched off and a replaced log get no
 * bits; and that a log file shrunk under the back-end is survived.
 */
#include <errno.h>
#include <sys/stat.h>

#include "harness.h"
#include "vu_rig.h"
#include "vhostd/dlog.h"
#include "vhostd/mem.h"
#include "vhostd/net.h"
#include "vhostd/pkt.h"

/* Enough bits for every page of the rig's guest memory (GPA .. GPA + MEM_SIZE), one page more. */
#define LOG_SIZE ((((GPA + MEM_SIZE) >> 12) + 8) / 8 + 4096)
#define BUF_OFF 0x40000u /* receive buffer: 3 pages */
#define BUF_LEN 12288u
#define FRAME 5000u      /* with the 12-byte header: 5012 bytes, 2 pages of the 3 */

struct tlog {
	int fd;
	uint8_t *bits;
	size_t size;
};

static void tlog_open(struct tlog *l, size_t size)
{
	l->fd = memfd_create("dlog", MFD_CLOEXEC);
	CHECK(l->fd >= 0);
	CHECK(ftruncate(l->fd, (off_t)size) == 0);
	l->bits = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, l->fd, 0);
	CHECK(l->bits != MAP_FAILED);
	l->size = size;
}

static void tlog_close(struct tlog *l)
{
	munmap(l->bits, l->size);
	close(l->fd);
}

static bool tlog_bit(const struct tlog *l, uint64_t page)
{
	return (l->bits[page / 8] >> (page % 8)) & 1;
}

static unsigned tlog_count(const struct tlog *l)
{
	unsigned n = 0;
	for (size_t i = 0; i < l->size; i++)
		n += (unsigned)__builtin_popcount(l->bits[i]);
	return n;
}

/* The page of guest memory at offset off of the rig's memfd. */
static uint64_t page_of(size_t off)
{
	return (GPA + off) >> 12;
}

/* SET_LOG_BASE with fd (-1: none); returns the u64 answer. */
static uint64_t set_log_base(struct rig *r, int fd, uint64_t size, uint64_t offset)
{
	struct vhu_msg m = mk(VHOST_USER_SET_LOG_BASE, sizeof(struct vhost_user_log));
	m.p.log = (struct vhost_user_log){.mmap_size = size, .mmap_offset = offset};
	if (fd >= 0) {
		m.fds[0] = fd;
		m.nfds = 1;
	}
	send_msg(r, &m);
	m = get_reply(r, VHOST_USER_SET_LOG_BASE);
	CHECK_EQ(m.hdr.size, 8);
	return m.p.u64;
}

static void set_features(struct rig *r, uint64_t f)
{
	set_u64(r, VHOST_USER_SET_FEATURES, f);
	CHECK(vhd_vu_dev_features(r->dev) == f);
}

/* SET_VRING_ADDR again for queue qi laid out by setup_queue(), with VHOST_VRING_F_LOG as asked; log_guest_addr as
 * QEMU 7.2 fills it: the used ring's address as the driver gave it, an IOVA behind a vIOMMU. */
static void vring_log(struct rig *r, unsigned qi, const struct guest_q *g, bool on)
{
	struct vhu_msg m = mk(VHOST_USER_SET_VRING_ADDR, 40);
	uint64_t base = rig_iova ? rig_iova + g->off : (uintptr_t)r->mem + g->off;
	m.p.addr = (struct vhost_vring_addr){qi, on ? 1u << VHOST_VRING_F_LOG : 0, base + g->lay.desc_off,
					     base + g->lay.device_off, base + g->lay.driver_off,
					     (rig_iova ? rig_iova : GPA) + g->off + g->lay.device_off};
	send_msg(r, &m);
}

struct lrig {
	struct rig r;
	struct guest_q g;
	bool packed;
	struct vhd_pktpool *pool;
	struct vhd_net_cfg cfg;
};

/* A device with receive queue 0 running, logging features negotiated as asked. With rig_iova set, behind a
 * vIOMMU: all of guest memory mapped read/write at rig_iova in the IOTLB before the queue starts. */
static void lrig_open(struct lrig *l, bool packed, bool log_all)
{
	memset(l, 0, sizeof(*l));
	l->packed = packed;
	if (rig_iova)
		rig_features = vhd_vu_default_features() | VHD_BIT(VIRTIO_F_ACCESS_PLATFORM);
	rig_open(&l->r, 1);
	rig_connect(&l->r);
	negotiate(&l->r, (packed ? VHD_BIT(VIRTIO_F_RING_PACKED) : 0) | (log_all ? VHD_BIT(VHOST_F_LOG_ALL) : 0) |
				 (rig_iova ? VHD_BIT(VIRTIO_F_ACCESS_PLATFORM) : 0),
		  true);
	set_mem_table(&l->r);
	if (rig_iova) {
		struct vhu_msg m = mk(VHOST_USER_IOTLB_MSG, sizeof(struct vhost_iotlb_msg));
		m.p.iotlb = (struct vhost_iotlb_msg){.iova = rig_iova, .size = MEM_SIZE, .uaddr = (uintptr_t)l->r.mem,
						     .perm = VHOST_ACCESS_RW, .type = VHOST_IOTLB_UPDATE};
		CHECK_EQ(acked(&l->r, &m), 0);
	}
	setup_queue(&l->r, 0, &l->g, 0, packed, false);
	enable(&l->r, 0, 1);
	CHECK_EQ(l->r.ev.started[0], 1);
	CHECK_EQ(vhd_pktpool_create(4, 16384, &l->pool), 0);
}

static void lrig_close(struct lrig *l)
{
	vhd_pktpool_destroy(l->pool);
	free_queue(&l->g);
	rig_close(&l->r);
}

/* The guest posts one writable buffer of segs; the device delivers a FRAME-byte frame into it through the
 * virtio-net receive path; the guest sees it used with the header and frame length. */
static void deliver(struct lrig *l, const struct vhd_vq_seg *segs, uint16_t nin)
{
	struct vhd_vq_buf b = {.segs = segs, .nin = nin, .token = (void *)1};
	CHECK_EQ(vhd_vq_add(l->g.vq, &b, 1), 1);
	CHECK_EQ(vhd_net_cfg_init(&l->cfg, vhd_vu_dev_features(l->r.dev)), 0);
	struct vhd_pkt *p;
	CHECK_EQ(vhd_pkt_alloc_bulk(l->pool, &p, 1), 1);
	memset(vhd_pkt_data(p), 0xab, FRAME);
	p->len = FRAME;
	struct vhd_vq *vq = vhd_vu_queue_acquire(l->r.dev, 0);
	CHECK(vq != NULL);
	struct vhd_net_stats st;
	memset(&st, 0, sizeof(st));
	CHECK_EQ(vhd_net_dev_enqueue(vq, &l->cfg, &p, 1, &st), 1);
	vhd_vu_queue_release(l->r.dev, 0);
	vhd_pkt_free(p);
	struct vhd_vq_done d;
	CHECK_EQ(vhd_vq_get(l->g.vq, &d, 1), 1);
	CHECK_EQ(d.len, l->cfg.hdr_size + FRAME);
}

static void deliver_one(struct lrig *l)
{
	struct vhd_vq_seg s = {(rig_iova ? rig_iova : GPA) + BUF_OFF, BUF_LEN};
	deliver(l, &s, 1);
}

/* The page of the ring the device writes used entries into. */
static uint64_t ring_page(const struct lrig *l)
{
	return page_of(l->g.off + (l->packed ? l->g.lay.desc_off : l->g.lay.device_off));
}

/* ------------------------------------------------------------------ cases */

/* Each hostile log area is refused with the reason named and a u64 1, the fd closed; the log in force stays. */
static void test_log_base_refusals(void)
{
	struct lrig l;
	lrig_open(&l, false, true);
	struct rig *r = &l.r;
	struct tlog good, small;
	tlog_open(&good, LOG_SIZE);
	tlog_open(&small, 4096);
	CHECK_EQ(set_log_base(r, good.fd, LOG_SIZE, 0), 0);
	int fds0 = th_count_fds();
	struct {
		int fd;
		uint64_t size, offset;
		const char *why;
	} bad[] = {
		{small.fd, 0, 0, ": size 0\n"},
		{small.fd, VHD_DLOG_MAX_SIZE + 4096, 0, ": size over 1 GiB ("},
		{small.fd, 4096, UINT64_MAX - 100, ": offset + size overflows\n"},
		{small.fd, UINT64_MAX - 4095, 8192, ": size over 1 GiB ("},
		{small.fd, 8192, 0, "is past the end of the file\n"},
		{small.fd, 4096, 1, "is past the end of the file\n"},
		{-1, 4096, 0, "fd missing ("},
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		log_clear();
		int fd = bad[i].fd >= 0 ? dup(bad[i].fd) : -1;
		CHECK_EQ(set_log_base(r, fd, bad[i].size, bad[i].offset), 1);
		if (fd >= 0)
			close(fd);
		if (!log_count(bad[i].why))
			fprintf(stderr, "case %u: no \"%s\" in: %s\n", i, bad[i].why, log_text);
		CHECK_EQ(log_count(bad[i].why), 1);
		CHECK(vhd_vu_dev_connected(r->dev));
	}
	/* A pipe cannot be mapped. */
	int p[2];
	CHECK(pipe(p) == 0);
	log_clear();
	CHECK_EQ(set_log_base(r, p[0], 4096, 0), 1);
	CHECK_EQ(log_count("cannot be mapped"), 1);
	close(p[0]);
	close(p[1]);
	CHECK_EQ(th_count_fds(), fds0); /* every fd the refusals carried was closed */
	/* The good log is still the one written. */
	deliver_one(&l);
	CHECK(tlog_bit(&good, page_of(BUF_OFF)));
	tlog_close(&good);
	tlog_close(&small);
	lrig_close(&l);
}

/* Without PROTOCOL_F_LOG_SHMFD negotiated SET_LOG_BASE is refused. */
static void test_log_base_not_negotiated(void)
{
	struct rig r;
	rig_open(&r, 1);
	rig_connect(&r);
	CHECK(get_u64(&r, VHOST_USER_GET_FEATURES) & VHD_BIT(VHOST_F_LOG_ALL));
	uint64_t p = get_u64(&r, VHOST_USER_GET_PROTOCOL_FEATURES);
	CHECK(p & VHD_BIT(VHOST_USER_PROTOCOL_F_LOG_SHMFD));
	set_u64(&r, VHOST_USER_SET_PROTOCOL_FEATURES, p & ~VHD_BIT(VHOST_USER_PROTOCOL_F_LOG_SHMFD));
	struct tlog t;
	tlog_open(&t, 4096);
	log_clear();
	CHECK_EQ(set_log_base(&r, t.fd, 4096, 0), 1);
	CHECK_EQ(log_count("without negotiating"), 1);
	tlog_close(&t);
	rig_close(&r);
}

/*
 * The frame's bytes are logged (the two pages written of the buffer's three) and so is the ring the device
 * writes back into, and nothing else; zero-length writable descriptors in front of the buffer log nothing.
 * Logging is turned on the way QEMU does it on a running queue (SET_FEATURES with LOG_ALL, SET_VRING_ADDR with
 * VHOST_VRING_F_LOG), which pauses the queue without stopping it.
 */
static void rx_logged(bool packed)
{
	struct lrig l;
	lrig_open(&l, packed, false);
	struct tlog t;
	tlog_open(&t, LOG_SIZE);
	CHECK_EQ(set_log_base(&l.r, t.fd, LOG_SIZE, 0), 0);
	/* Log mapped, LOG_ALL not negotiated: nothing is written to it. */
	deliver_one(&l);
	CHECK_EQ(tlog_count(&t), 0);
	uint64_t f = vhd_vu_dev_features(l.r.dev);
	set_features(&l.r, f | VHD_BIT(VHOST_F_LOG_ALL));
	vring_log(&l.r, 0, &l.g, true);
	CHECK_EQ(l.r.ev.stopped[0], 0);
	deliver_one(&l);
	CHECK(tlog_bit(&t, page_of(BUF_OFF)));
	CHECK(tlog_bit(&t, page_of(BUF_OFF + 4096)));
	CHECK(!tlog_bit(&t, page_of(BUF_OFF + 8192)));
	CHECK(tlog_bit(&t, ring_page(&l)));
	CHECK_EQ(tlog_count(&t), 3);
	/* CVE-2019-14835's shape: writable descriptors of length 0 (pointing at pages nothing writes) before the
	 * buffer. Only the buffer's and the ring's pages are logged. */
	memset(t.bits, 0, t.size);
	struct vhd_vq_seg segs[3] = {{GPA + 0x80000, 0}, {GPA + 0x90000, 0}, {GPA + BUF_OFF, BUF_LEN}};
	deliver(&l, segs, 3);
	CHECK(!tlog_bit(&t, page_of(0x80000)));
	CHECK(!tlog_bit(&t, page_of(0x90000)));
	CHECK(tlog_bit(&t, page_of(BUF_OFF)));
	CHECK_EQ(tlog_count(&t), 3);
	/* Ring logging off again (VHOST_VRING_F_LOG clear): the bytes only. */
	memset(t.bits, 0, t.size);
	vring_log(&l.r, 0, &l.g, false);
	deliver_one(&l);
	CHECK(!tlog_bit(&t, ring_page(&l)));
	CHECK_EQ(tlog_count(&t), 2);
	/* LOG_ALL off (migration cancelled): nothing. */
	memset(t.bits, 0, t.size);
	set_features(&l.r, f);
	deliver_one(&l);
	CHECK_EQ(tlog_count(&t), 0);
	CHECK_EQ(l.r.ev.stopped[0], 0);
	tlog_close(&t);
	lrig_close(&l);
}

static void test_rx_logged_split(void) { rx_logged(false); }
static void test_rx_logged_packed(void) { rx_logged(true); }

/* Behind a vIOMMU the device sees IOVAs; the log holds guest-physical pages: the buffer's and the ring's at their
 * guest addresses, nothing at their IOVAs (which the log covers too, so a wrong bit would show). */
static void test_rx_logged_iommu(void)
{
	rig_iova = 0x40000000ull;
	struct lrig l;
	lrig_open(&l, false, true);
	vring_log(&l.r, 0, &l.g, true);
	struct tlog t;
	tlog_open(&t, LOG_SIZE);
	CHECK_EQ(set_log_base(&l.r, t.fd, LOG_SIZE, 0), 0);
	deliver_one(&l);
	CHECK(tlog_bit(&t, page_of(BUF_OFF)));
	CHECK(tlog_bit(&t, page_of(BUF_OFF + 4096)));
	CHECK(tlog_bit(&t, ring_page(&l)));
	CHECK(!tlog_bit(&t, (rig_iova + BUF_OFF) >> 12));
	CHECK_EQ(tlog_count(&t), 3);
	tlog_close(&t);
	lrig_close(&l);
}

/* QEMU resizes the log by sending SET_LOG_BASE again: once answered, only the new log is written. */
static void test_log_resize(void)
{
	struct lrig l;
	lrig_open(&l, false, true);
	vring_log(&l.r, 0, &l.g, true);
	struct tlog a, b;
	tlog_open(&a, LOG_SIZE);
	tlog_open(&b, 2 * LOG_SIZE);
	CHECK_EQ(set_log_base(&l.r, a.fd, LOG_SIZE, 0), 0);
	deliver_one(&l);
	CHECK_EQ(tlog_count(&a), 3);
	memset(a.bits, 0, a.size);
	/* The new one at an offset into its file, as the protocol allows. */
	CHECK_EQ(set_log_base(&l.r, b.fd, LOG_SIZE, LOG_SIZE), 0);
	deliver_one(&l);
	CHECK_EQ(tlog_count(&a), 0);
	CHECK_EQ(tlog_count(&b), 3);
	struct tlog view = {.bits = b.bits + LOG_SIZE, .size = LOG_SIZE};
	CHECK(tlog_bit(&view, page_of(BUF_OFF)));
	tlog_close(&a);
	tlog_close(&b);
	lrig_close(&l);
}

/* A log too small for the guest's memory: the pages beyond it are counted, nothing is written past its end. */
static void test_log_too_small(void)
{
	struct lrig l;
	lrig_open(&l, false, true);
	struct tlog t;
	tlog_open(&t, 8192);
	memset(t.bits, 0, t.size);
	CHECK_EQ(set_log_base(&l.r, t.fd, 4096, 0), 0); /* pages 0 .. 32767: the rig's memory is at 4 GiB */
	deliver_one(&l);
	CHECK_EQ(tlog_count(&t), 0);
	tlog_close(&t);
	lrig_close(&l);
}

/* The front-end shrinks the log's file after handing it over: the SIGBUS of the next bit set is absorbed, and
 * the connection closed with the reason. */
static void test_log_shrunk(void)
{
	CHECK_EQ(vhd_mem_guard_sigbus(), 0);
	struct lrig l;
	lrig_open(&l, false, true);
	struct tlog t;
	tlog_open(&t, LOG_SIZE);
	CHECK_EQ(set_log_base(&l.r, t.fd, LOG_SIZE, 0), 0);
	CHECK(ftruncate(t.fd, 0) == 0);
	uint64_t hits = vhd_mem_guard_hits();
	deliver_one(&l);
	CHECK_EQ(vhd_mem_guard_hits(), hits + 1);
	log_clear();
	CHECK_EQ(vhd_vu_dev_dispatch(l.r.dev), -EFAULT);
	CHECK(!vhd_vu_dev_connected(l.r.dev));
	CHECK_EQ(log_count("shrank the dirty log"), 1);
	tlog_close(&t);
	lrig_close(&l);
}

static const struct th_case cases[] = {
	{"log_base_refusals", test_log_base_refusals, 0},
	{"log_base_not_negotiated", test_log_base_not_negotiated, 0},
	{"rx_logged_split", test_rx_logged_split, 0},
	{"rx_logged_packed", test_rx_logged_packed, 0},
	{"rx_logged_iommu", test_rx_logged_iommu, 0},
	{"log_resize", test_log_resize, 0},
	{"log_too_small", test_log_too_small, 0},
	{"log_shrunk", test_log_shrunk, 0},
};
TH_MAIN("test_dlog", cases)
