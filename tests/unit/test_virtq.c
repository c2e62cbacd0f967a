/* SPDX-License-Identifier: MIT */
/*
 * Virtqueues in one process: a driver queue and a device queue over the same ring memory, inside one "guest
 * memory" block that the device sees through a vhd_mem table at a guest address unlike its host address.
 *
 * Round trips (split and packed, direct and indirect, many laps, out of order and IN_ORDER), notification
 * suppression from both ends with and without EVENT_IDX, and every hostile-input error code, each provoked by
 * writing raw descriptors and ring fields into the shared memory.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>

#include "harness.h"
#include "spec/endian.h"
#include "spec/vhost_user.h"
#include "spec/virtio_config.h"
#include "spec/virtio_ring.h"
#include "vhostd/log.h"
#include "vhostd/mem.h"
#include "vhostd/net.h"
#include "vhostd/pkt.h"
#include "vhostd/virtq.h"

#define F_PACKED   VHD_BIT(VIRTIO_F_RING_PACKED)
#define F_EVENT    VHD_BIT(VIRTIO_F_EVENT_IDX)
#define F_INDIRECT VHD_BIT(VIRTIO_F_INDIRECT_DESC)
#define F_IN_ORDER VHD_BIT(VIRTIO_F_IN_ORDER)

/* Guest memory block: rings, the driver's indirect area, a scratch area for raw tables, then data slots. */
#define GPA      0x100000ull
#define BLOCK    (256u * 1024u)
#define IND_OFF  (32u * 1024u)
#define IND_MAX  8u
#define TBL_OFF  (48u * 1024u)
#define DATA_OFF (64u * 1024u)
#define SLOT     512u
#define BLOCK2   (64u * 1024u) /* optional second region, guest-adjacent at GPA + BLOCK */

/* Packed descriptor flags for "available in the first lap" (wrap counter 1) and "used in the first lap". */
#define P_AVAIL VIRTQ_DESC_F_AVAIL
#define P_USED  (VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED)

/* ================================================================ log capture ================================================================ */

static struct {
	int n_err, n_other;
	char last[512];
} g_log;

static void log_count(enum vhd_log_level level, const char *msg, void *opaque)
{
	(void)opaque;
	if (level == VHD_LOG_ERR)
		g_log.n_err++;
	else
		g_log.n_other++;
	snprintf(g_log.last, sizeof(g_log.last), "%s", msg);
}

/* ================================================================ rig ================================================================ */

struct rig {
	bool packed;
	uint16_t num;
	uint8_t *mem;  /* BLOCK bytes, guest GPA */
	uint8_t *mem2; /* BLOCK2 bytes, guest GPA + BLOCK, or NULL */
	struct vhd_mem *vm;
	struct vhd_vq_layout lo;
	struct vhd_vq *drv, *dev;
	struct virtq_desc *sd;
	struct virtq_avail *sa;
	struct virtq_used *su;
	struct pvirtq_desc *pd;
	struct pvirtq_event_suppress *pdrv, *pdev;
	uint16_t raw_avail; /* split: next avail index raw writers publish */
};

static uint64_t gpa(size_t off)
{
	return GPA + off;
}

static void *host(const struct rig *r, size_t off)
{
	return r->mem + off;
}

static struct vhd_vq *make_vq(struct rig *r, enum vhd_vq_side side, uint64_t feat, uint16_t base)
{
	struct vhd_vq_config c = {
		.side = side,
		.num = r->num,
		.features = feat,
		.desc = r->mem + r->lo.desc_off,
		.driver = r->mem + r->lo.driver_off,
		.device = r->mem + r->lo.device_off,
		.mem = side == VHD_VQ_DEVICE ? r->vm : NULL,
		.base = base,
		.name = side == VHD_VQ_DEVICE ? "test-dev" : "test-drv",
	};
	if (side == VHD_VQ_DRIVER && (feat & F_INDIRECT)) {
		c.indirect = r->mem + IND_OFF;
		c.indirect_addr = gpa(IND_OFF);
		c.indirect_max = IND_MAX;
	}
	struct vhd_vq *vq = NULL;
	CHECK_EQ(vhd_vq_create(&c, &vq), 0);
	CHECK(vq != NULL);
	return vq;
}

/* drv_feat and dev_feat may differ to provoke feature mismatches; the layout follows drv_feat. */
static void rig_init_ex(struct rig *r, uint64_t drv_feat, uint64_t dev_feat, uint16_t num, bool second_region)
{
	memset(r, 0, sizeof(*r));
	vhd_log_set_handler(log_count, NULL);
	memset(&g_log, 0, sizeof(g_log));
	r->packed = drv_feat & F_PACKED;
	r->num = num;
	CHECK_EQ(vhd_vq_layout(r->packed, num, &r->lo), 0);
	CHECK(r->lo.size <= IND_OFF);
	CHECK(!(drv_feat & F_INDIRECT) || (size_t)num * IND_MAX * 16 <= TBL_OFF - IND_OFF);
	CHECK_EQ(posix_memalign((void **)&r->mem, 4096, BLOCK), 0);
	memset(r->mem, 0, BLOCK);
	CHECK_EQ(vhd_mem_create(&r->vm), 0);
	struct vhd_mem_region_info ri = {.guest_addr = GPA, .size = BLOCK, .user_addr = 0x7f0000000000ull, .host = r->mem};
	CHECK_EQ(vhd_mem_add(r->vm, &ri), 0);
	if (second_region) {
		CHECK_EQ(posix_memalign((void **)&r->mem2, 4096, BLOCK2), 0);
		memset(r->mem2, 0, BLOCK2);
		struct vhd_mem_region_info r2 = {
			.guest_addr = GPA + BLOCK, .size = BLOCK2, .user_addr = 0x7f1000000000ull, .host = r->mem2};
		CHECK_EQ(vhd_mem_add(r->vm, &r2), 0);
		CHECK(r->mem2 != r->mem + BLOCK); /* not adjacent in this process */
	}
	r->sd = (struct virtq_desc *)(r->mem + r->lo.desc_off);
	r->sa = (struct virtq_avail *)(r->mem + r->lo.driver_off);
	r->su = (struct virtq_used *)(r->mem + r->lo.device_off);
	r->pd = (struct pvirtq_desc *)(r->mem + r->lo.desc_off);
	r->pdrv = (struct pvirtq_event_suppress *)(r->mem + r->lo.driver_off);
	r->pdev = (struct pvirtq_event_suppress *)(r->mem + r->lo.device_off);
	uint16_t base = r->packed ? VHD_VQ_PACKED_BASE_INIT : 0;
	r->drv = make_vq(r, VHD_VQ_DRIVER, drv_feat, base);
	r->dev = make_vq(r, VHD_VQ_DEVICE, dev_feat, base);
}

static void rig_init(struct rig *r, uint64_t feat, uint16_t num)
{
	rig_init_ex(r, feat, feat, num, false);
}

static void rig_fini(struct rig *r)
{
	vhd_vq_destroy(r->drv);
	vhd_vq_destroy(r->dev);
	vhd_mem_destroy(r->vm);
	free(r->mem);
	free(r->mem2);
	vhd_log_set_handler(NULL, NULL);
}

/* ---------------- raw ring writers (the "hostile driver/device") ---------------- */

static void wdesc(struct virtq_desc *d, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	d->addr = vhd_cpu_to_le64(addr);
	d->len = vhd_cpu_to_le32(len);
	d->flags = vhd_cpu_to_le16(flags);
	d->next = vhd_cpu_to_le16(next);
}

static void wpdesc(struct pvirtq_desc *d, uint64_t addr, uint32_t len, uint16_t id, uint16_t flags)
{
	d->addr = vhd_cpu_to_le64(addr);
	d->len = vhd_cpu_to_le32(len);
	d->id = vhd_cpu_to_le16(id);
	d->flags = vhd_cpu_to_le16(flags);
}

/* Split: make head available (next avail ring entry, then idx). */
static void s_publish(struct rig *r, uint16_t head)
{
	r->sa->ring[r->raw_avail & (r->num - 1)] = vhd_cpu_to_le16(head);
	r->raw_avail++;
	r->sa->idx = vhd_cpu_to_le16(r->raw_avail);
}

static uint16_t rd16(const uint16_t *p)
{
	return vhd_le16(*p);
}

static uint16_t *avail_event(struct rig *r)
{
	return (uint16_t *)&r->su->ring[r->num];
}

static uint16_t *used_event(struct rig *r)
{
	return &r->sa->ring[r->num];
}

static struct virtq_desc *raw_table(struct rig *r)
{
	return (struct virtq_desc *)host(r, TBL_OFF);
}

/* ---------------- driver/device helpers ---------------- */

static void add1(struct rig *r, const struct vhd_vq_seg *segs, uint16_t nout, uint16_t nin, uint32_t flags,
		 uintptr_t token)
{
	struct vhd_vq_buf b = {.segs = segs, .nout = nout, .nin = nin, .flags = flags, .token = (void *)token};
	CHECK_EQ(vhd_vq_add(r->drv, &b, 1), 1);
}

/* One single-segment writable buffer of 64 bytes in data slot (token - 1). */
static void add_simple(struct rig *r, uintptr_t token)
{
	struct vhd_vq_seg s = {gpa(DATA_OFF + (token - 1) * SLOT), 64};
	add1(r, &s, 0, 1, 0, token);
}

static int pop(struct rig *r, struct vhd_vq_chain *ch, unsigned n)
{
	static struct iovec iov[256];
	return vhd_vq_pop(r->dev, ch, n, iov, 256);
}

static void push1(struct rig *r, const struct vhd_vq_chain *c, uint32_t len)
{
	struct vhd_vq_used u = {.id = c->id, .ndesc = c->ndesc, .len = len};
	CHECK_EQ(vhd_vq_push(r->dev, &u, 1), 1);
}

static void fill(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 13 + (i >> 8));
}

static bool same(const uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != (uint8_t)(seed + i * 13 + (i >> 8)))
			return false;
	return true;
}

/* ---------------- broken-queue checks ---------------- */

static void check_error(struct vhd_vq *vq, enum vhd_vq_error e, int errs_before)
{
	if (vhd_vq_error(vq) != e)
		fprintf(stderr, "expected %s, queue says %s: %s\n", vhd_vq_strerror(e), vhd_vq_strerror(vhd_vq_error(vq)),
			vhd_vq_error_detail(vq));
	CHECK_EQ(vhd_vq_error(vq), e);
	CHECK(vhd_vq_error_detail(vq)[0] != '\0');
	CHECK_EQ(g_log.n_err, errs_before + 1);
	CHECK(strstr(g_log.last, vhd_vq_strerror(e)) != NULL);
}

static void check_healthy(struct vhd_vq *vq)
{
	CHECK_EQ(vhd_vq_error(vq), VHD_VQ_OK);
	CHECK_EQ(strlen(vhd_vq_error_detail(vq)), 0);
}

/* The device's next pop must break the queue with e; everything after it fails quietly with -EIO. */
static void expect_pop_error(struct rig *r, enum vhd_vq_error e)
{
	check_healthy(r->dev);
	int before = g_log.n_err;
	struct vhd_vq_chain ch[4];
	CHECK_EQ(pop(r, ch, 4), -EIO);
	check_error(r->dev, e, before);
	CHECK_EQ(pop(r, ch, 4), -EIO);
	struct vhd_vq_used u = {0, 1, 0};
	CHECK_EQ(vhd_vq_push(r->dev, &u, 1), -EIO);
	CHECK(!vhd_vq_need_notify(r->dev));
	CHECK(!vhd_vq_enable_notify(r->dev));
	vhd_vq_disable_notify(r->dev);
	CHECK_EQ(pop(r, ch, 4), -EIO);
	CHECK_EQ(vhd_vq_error(r->dev), e);
	CHECK_EQ(g_log.n_err, before + 1); /* logged exactly once */
	/* The driver is a different queue and is unaffected. */
	check_healthy(r->drv);
}

/* The driver's next get must break the queue with e. */
static void expect_get_error(struct rig *r, enum vhd_vq_error e)
{
	check_healthy(r->drv);
	int before = g_log.n_err;
	struct vhd_vq_done d[4];
	CHECK_EQ(vhd_vq_get(r->drv, d, 4), -EIO);
	check_error(r->drv, e, before);
	CHECK_EQ(vhd_vq_get(r->drv, d, 4), -EIO);
	struct vhd_vq_seg s = {gpa(DATA_OFF), 8};
	struct vhd_vq_buf b = {.segs = &s, .nout = 1, .nin = 0, .token = (void *)1};
	CHECK_EQ(vhd_vq_add(r->drv, &b, 1), -EIO);
	CHECK(!vhd_vq_need_notify(r->drv));
	CHECK(!vhd_vq_enable_notify(r->drv));
	CHECK_EQ(vhd_vq_get(r->drv, d, 4), -EIO);
	CHECK_EQ(vhd_vq_error(r->drv), e);
	CHECK_EQ(g_log.n_err, before + 1);
}

/* ================================================================ basics ================================================================ */

static void test_layout(void)
{
	struct vhd_vq_layout lo;
	CHECK_EQ(vhd_vq_layout(false, 256, &lo), 0);
	CHECK_EQ(lo.desc_off, 0);
	CHECK_EQ(lo.driver_off, 4096);
	CHECK(lo.device_off >= lo.driver_off + virtq_avail_size(256));
	CHECK_EQ(lo.device_off % 64, 0);
	CHECK(lo.size >= lo.device_off + virtq_used_size(256));
	CHECK_EQ(lo.size % 64, 0);
	CHECK_EQ(vhd_vq_layout(true, 6, &lo), 0);
	CHECK_EQ(lo.driver_off, 128);
	CHECK_EQ(lo.device_off, 192);
	CHECK_EQ(lo.size, 256);
	CHECK_EQ(vhd_vq_layout(false, 6, &lo), -EINVAL);
	CHECK_EQ(vhd_vq_layout(false, 0, &lo), -EINVAL);
	CHECK_EQ(vhd_vq_layout(true, 0, &lo), -EINVAL);
	CHECK_EQ(vhd_vq_layout(true, 32768, &lo), 0);
	CHECK_EQ(vhd_vq_layout(false, 32768, &lo), 0);
	CHECK_EQ(vhd_vq_layout(true, 32769, &lo), -EINVAL);
}

static void test_create_invalid(void)
{
	struct rig r;
	rig_init(&r, 0, 8);
	struct vhd_vq_config c = {
		.side = VHD_VQ_DEVICE, .num = 8, .desc = r.sd, .driver = r.sa, .device = r.su, .mem = r.vm};
	struct vhd_vq *vq = NULL;
	CHECK_EQ(vhd_vq_create(&c, &vq), 0);
	vhd_vq_destroy(vq);
	vhd_vq_destroy(NULL);
	struct vhd_vq_config b = c;
	b.num = 6; /* split needs a power of two */
	CHECK_EQ(vhd_vq_create(&b, &vq), -EINVAL);
	b = c;
	b.num = 0;
	CHECK_EQ(vhd_vq_create(&b, &vq), -EINVAL);
	b = c;
	b.mem = NULL; /* device without memory table */
	CHECK_EQ(vhd_vq_create(&b, &vq), -EINVAL);
	b = c;
	b.desc = NULL;
	CHECK_EQ(vhd_vq_create(&b, &vq), -EINVAL);
	b = c;
	b.desc = (uint8_t *)r.sd + 8; /* misaligned table */
	CHECK_EQ(vhd_vq_create(&b, &vq), -EINVAL);
	b = c;
	b.side = (enum vhd_vq_side)7;
	CHECK_EQ(vhd_vq_create(&b, &vq), -EINVAL);
	b = c;
	b.features = F_PACKED;
	b.num = 6;
	b.base = 6 | 0x8000; /* position beyond the ring */
	CHECK_EQ(vhd_vq_create(&b, &vq), -EINVAL);
	b.base = 5 | 0x8000;
	CHECK_EQ(vhd_vq_create(&b, &vq), 0);
	CHECK_EQ(vhd_vq_base(vq), 5 | 0x8000);
	vhd_vq_destroy(vq);
	rig_fini(&r);
}

static void test_strerror(void)
{
	for (int e = 0; e < VHD_VQ_E__COUNT; e++) {
		const char *s = vhd_vq_strerror((enum vhd_vq_error)e);
		CHECK(s != NULL && s[0] != '\0');
		CHECK(strcmp(s, "unknown") != 0);
		for (int f = 0; f < e; f++)
			CHECK(strcmp(s, vhd_vq_strerror((enum vhd_vq_error)f)) != 0);
	}
	CHECK(strcmp(vhd_vq_strerror(VHD_VQ_E__COUNT), "unknown") == 0);
	CHECK(strcmp(vhd_vq_strerror((enum vhd_vq_error)-1), "unknown") == 0);
}

static void wrong_side(uint64_t feat)
{
	struct rig r;
	rig_init(&r, feat, 8);
	struct vhd_vq_chain ch[1];
	struct iovec iov[1];
	struct vhd_vq_done d[1];
	struct vhd_vq_used u = {0, 1, 0};
	struct vhd_vq_seg s = {gpa(DATA_OFF), 8};
	struct vhd_vq_buf b = {.segs = &s, .nout = 1, .token = (void *)1};
	CHECK_EQ(vhd_vq_pop(r.drv, ch, 1, iov, 1), -EINVAL);
	CHECK_EQ(vhd_vq_push(r.drv, &u, 1), -EINVAL);
	CHECK_EQ(vhd_vq_add(r.dev, &b, 1), -EINVAL);
	CHECK_EQ(vhd_vq_get(r.dev, d, 1), -EINVAL);
	check_healthy(r.drv);
	check_healthy(r.dev);
	CHECK_EQ(g_log.n_err, 0);
	rig_fini(&r);
}

static void test_split_wrong_side(void) { wrong_side(0); }
static void test_packed_wrong_side(void) { wrong_side(F_PACKED); }

/* vhd_vq_add: no segments or more than the queue could ever hold is -EINVAL; a full ring takes what fits. */
static void add_limits(uint64_t feat)
{
	struct rig r;
	rig_init(&r, feat, 8);
	struct vhd_vq_seg segs[9];
	for (unsigned i = 0; i < 9; i++)
		segs[i] = (struct vhd_vq_seg){gpa(DATA_OFF + i * 64), 64};
	struct vhd_vq_buf b = {.segs = segs, .nout = 0, .nin = 0, .token = (void *)1};
	CHECK_EQ(vhd_vq_add(r.drv, &b, 1), -EINVAL);
	b.nout = 5;
	b.nin = 4; /* 9 descriptors in a ring of 8 */
	CHECK_EQ(vhd_vq_add(r.drv, &b, 1), -EINVAL);
	/* 3 + 3 + 3 descriptors: the third does not fit and is left to the caller. */
	struct vhd_vq_buf bb[3];
	for (unsigned i = 0; i < 3; i++)
		bb[i] = (struct vhd_vq_buf){.segs = segs, .nout = 2, .nin = 1, .token = (void *)(uintptr_t)(i + 1)};
	CHECK_EQ(vhd_vq_add(r.drv, bb, 3), 2);
	CHECK_EQ(vhd_vq_inflight(r.drv), 2);
	CHECK_EQ(vhd_vq_add(r.drv, bb, 1), 0);
	/* Two single-descriptor buffers still fit. */
	CHECK_EQ(vhd_vq_add(r.drv, &(struct vhd_vq_buf){.segs = segs, .nout = 1, .token = (void *)9}, 1), 1);
	CHECK_EQ(vhd_vq_add(r.drv, &(struct vhd_vq_buf){.segs = segs, .nout = 1, .token = (void *)9}, 1), 1);
	CHECK_EQ(vhd_vq_add(r.drv, &(struct vhd_vq_buf){.segs = segs, .nout = 1, .token = (void *)9}, 1), 0);
	CHECK_EQ(vhd_vq_inflight(r.drv), 4);
	struct vhd_vq_stats st;
	vhd_vq_get_stats(r.drv, &st);
	CHECK_EQ(st.chains, 4);
	check_healthy(r.drv);
	rig_fini(&r);
}

static void test_split_add_limits(void) { add_limits(0); }
static void test_packed_add_limits(void) { add_limits(F_PACKED); }

/*
 * An indirect table counts towards the chain length, which may not exceed the queue size (virtio 1.2, 2.7.5.3.1):
 * with 2 entries and indirect_max 8, a 3-segment buffer is refused by the driver instead of being published as a
 * chain the device has to reject.
 */
static void indirect_longer_than_queue(uint64_t feat)
{
	struct rig r;
	rig_init(&r, feat | F_INDIRECT, 2);
	struct vhd_vq_seg segs[3] = {{gpa(DATA_OFF), 8}, {gpa(DATA_OFF + 64), 8}, {gpa(DATA_OFF + 128), 8}};
	struct vhd_vq_buf b = {.segs = segs, .nout = 1, .nin = 2, .flags = VHD_VQ_BUF_INDIRECT, .token = (void *)1};
	CHECK_EQ(vhd_vq_add(r.drv, &b, 1), -EINVAL);
	CHECK_EQ(vhd_vq_inflight(r.drv), 0);
	/* Two segments fit, through the table. */
	b.nin = 1;
	CHECK_EQ(vhd_vq_add(r.drv, &b, 1), 1);
	struct vhd_vq_chain ch[2];
	CHECK_EQ(pop(&r, ch, 2), 1);
	CHECK_EQ(ch[0].nout, 1);
	CHECK_EQ(ch[0].nin, 1);
	CHECK_EQ(ch[0].ndesc, 1);
	push1(&r, &ch[0], 8);
	struct vhd_vq_done d[2];
	CHECK_EQ(vhd_vq_get(r.drv, d, 2), 1);
	CHECK(d[0].token == (void *)1 && d[0].len == 8);
	check_healthy(r.drv);
	check_healthy(r.dev);
	rig_fini(&r);
}

static void test_split_add_indirect_longer_than_queue(void) { indirect_longer_than_queue(0); }
static void test_packed_add_indirect_longer_than_queue(void) { indirect_longer_than_queue(F_PACKED); }

/* ================================================================ round trips ================================================================ */

/* One buffer: readable segment(s) then writable segment(s), checked byte for byte in both directions. */
static void roundtrip(uint64_t feat, uint16_t nout, uint16_t nin, uint32_t bflags)
{
	struct rig r;
	rig_init(&r, feat, 8);
	struct vhd_vq_seg segs[8];
	size_t offs[8];
	uint32_t out_total = 0, in_total = 0;
	for (unsigned j = 0; j < (unsigned)nout + nin; j++) {
		offs[j] = DATA_OFF + j * SLOT + 8 * j; /* distinct, non-contiguous pieces */
		segs[j] = (struct vhd_vq_seg){gpa(offs[j]), 37 + 11 * j};
		if (j < nout) {
			fill(host(&r, offs[j]), segs[j].len, (uint8_t)(0x10 + j));
			out_total += segs[j].len;
		} else {
			memset(host(&r, offs[j]), 0xee, segs[j].len);
			in_total += segs[j].len;
		}
	}
	add1(&r, segs, nout, nin, bflags, 0xabc);
	CHECK_EQ(vhd_vq_inflight(r.drv), 1);
	CHECK(vhd_vq_need_notify(r.drv));

	struct vhd_vq_chain ch[4];
	struct iovec iov[16];
	memset(iov, 0, sizeof(iov));
	CHECK_EQ(vhd_vq_pop(r.dev, ch, 4, iov, 16), 1);
	CHECK_EQ(ch[0].err, 0);
	CHECK_EQ(ch[0].nout, nout);
	CHECK_EQ(ch[0].nin, nin);
	CHECK_EQ(ch[0].out_len, out_total);
	CHECK_EQ(ch[0].in_len, in_total);
	CHECK(ch[0].iov == iov);
	bool indirect = (bflags & VHD_VQ_BUF_INDIRECT) && (feat & F_INDIRECT);
	if (r.packed)
		CHECK_EQ(ch[0].ndesc, indirect ? 1 : nout + nin);
	else
		CHECK_EQ(ch[0].ndesc, 1);
	/* The ring really holds what was asked for. */
	if (r.packed) {
		CHECK_EQ(!!(vhd_le16(r.pd[0].flags) & VIRTQ_DESC_F_INDIRECT), indirect);
		CHECK_EQ(vhd_le16(r.pd[0].id), ch[0].id);
	} else {
		CHECK_EQ(!!(vhd_le16(r.sd[ch[0].id].flags) & VIRTQ_DESC_F_INDIRECT), indirect);
	}
	if (indirect) {
		uint64_t taddr = vhd_le64(r.packed ? r.pd[0].addr : r.sd[ch[0].id].addr);
		CHECK(taddr >= gpa(IND_OFF) && taddr < gpa(IND_OFF) + (uint64_t)r.num * IND_MAX * 16);
	}
	for (unsigned j = 0; j < (unsigned)nout + nin; j++) {
		CHECK(iov[j].iov_base == host(&r, offs[j]));
		CHECK_EQ(iov[j].iov_len, segs[j].len);
		if (j < nout)
			CHECK(same(iov[j].iov_base, iov[j].iov_len, (uint8_t)(0x10 + j)));
	}
	/* Nothing else is available. */
	CHECK_EQ(vhd_vq_pop(r.dev, ch + 1, 3, iov + 8, 8), 0);

	/* Device writes into every writable segment but leaves the last byte of the last one alone. */
	uint32_t wlen = in_total ? in_total - 1 : 0;
	uint32_t left = wlen;
	for (unsigned j = nout; j < (unsigned)nout + nin; j++) {
		uint32_t n = left < iov[j].iov_len ? left : (uint32_t)iov[j].iov_len;
		fill(iov[j].iov_base, n, (uint8_t)(0x80 + j));
		left -= n;
	}
	push1(&r, &ch[0], wlen);
	CHECK(vhd_vq_need_notify(r.dev));

	struct vhd_vq_done d[4];
	CHECK_EQ(vhd_vq_get(r.drv, d, 4), 1);
	CHECK(d[0].token == (void *)0xabc);
	CHECK_EQ(d[0].len, wlen);
	left = wlen;
	for (unsigned j = nout; j < (unsigned)nout + nin; j++) {
		uint32_t n = left < segs[j].len ? left : segs[j].len;
		CHECK(same(host(&r, offs[j]), n, (uint8_t)(0x80 + j)));
		left -= n;
	}
	if (nin)
		CHECK_EQ(((uint8_t *)host(&r, offs[nout + nin - 1]))[segs[nout + nin - 1].len - 1], 0xee);
	CHECK_EQ(vhd_vq_get(r.drv, d, 4), 0);
	CHECK_EQ(vhd_vq_inflight(r.drv), 0);
	CHECK_EQ(vhd_vq_base(r.drv), vhd_vq_base(r.dev));

	struct vhd_vq_stats sd, sv;
	vhd_vq_get_stats(r.drv, &sd);
	vhd_vq_get_stats(r.dev, &sv);
	CHECK_EQ(sd.chains, 1);
	CHECK_EQ(sd.used, 1);
	CHECK_EQ(sv.chains, 1);
	CHECK_EQ(sv.used, 1);
	CHECK_EQ(sv.oversized, 0);
	check_healthy(r.drv);
	check_healthy(r.dev);
	CHECK_EQ(g_log.n_err, 0);
	rig_fini(&r);
}

static void test_split_roundtrip(void) { roundtrip(0, 1, 1, 0); }
static void test_packed_roundtrip(void) { roundtrip(F_PACKED, 1, 1, 0); }
static void test_split_roundtrip_out_only(void) { roundtrip(0, 1, 0, 0); }
static void test_packed_roundtrip_in_only(void) { roundtrip(F_PACKED, 0, 1, 0); }
static void test_split_roundtrip_multiseg(void) { roundtrip(0, 3, 2, 0); }
static void test_packed_roundtrip_multiseg(void) { roundtrip(F_PACKED, 3, 2, 0); }
static void test_split_roundtrip_indirect(void) { roundtrip(F_INDIRECT, 3, 2, VHD_VQ_BUF_INDIRECT); }
static void test_packed_roundtrip_indirect(void) { roundtrip(F_PACKED | F_INDIRECT, 3, 2, VHD_VQ_BUF_INDIRECT); }
/* Eight segments fill the ring (no indirect) and exactly fill one indirect table. */
static void test_split_roundtrip_full_ring_chain(void) { roundtrip(0, 4, 4, 0); }
static void test_packed_roundtrip_full_ring_chain(void) { roundtrip(F_PACKED, 4, 4, 0); }
static void test_split_roundtrip_indirect_max(void) { roundtrip(F_INDIRECT, 4, 4, VHD_VQ_BUF_INDIRECT); }
static void test_packed_roundtrip_indirect_max(void) { roundtrip(F_PACKED | F_INDIRECT, 4, 4, VHD_VQ_BUF_INDIRECT); }
/* INDIRECT asked for without the feature: chained directly instead. */
static void test_split_roundtrip_indirect_unnegotiated(void) { roundtrip(0, 2, 2, VHD_VQ_BUF_INDIRECT); }
static void test_packed_roundtrip_indirect_unnegotiated(void) { roundtrip(F_PACKED, 2, 2, VHD_VQ_BUF_INDIRECT); }

/* ---------------- randomised laps ---------------- */

struct rec {
	bool busy;
	uint64_t seq;
	uint16_t nout, nin;
	uint32_t len[4];
	bool indirect;
	uint32_t wlen;    /* bytes the device wrote */
	uint32_t exp_len; /* length the driver must see */
};

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static size_t seg_off(unsigned slot, unsigned j)
{
	return DATA_OFF + (size_t)slot * SLOT + j * 128u;
}

/*
 * Random shapes and burst sizes until total buffers made the trip. The device completes a random subset in
 * random order (IN_ORDER: a prefix, in order, half the time as a zero-length batch). Every byte, token, length
 * and the order the driver collects in are checked.
 */
static void run_laps(uint64_t feat, uint16_t num, unsigned total, uint64_t seed)
{
	struct rig r;
	rig_init(&r, feat, num);
	CHECK((size_t)DATA_OFF + (size_t)num * SLOT <= BLOCK);
	const bool in_order = feat & F_IN_ORDER, ind_ok = feat & F_INDIRECT;
	struct rec *recs = calloc(num, sizeof(*recs));
	uint16_t *pushq = calloc(num, sizeof(*pushq)); /* slots pushed, in push order, not yet collected */
	unsigned pq_head = 0, pq_count = 0;
	struct {
		uint16_t id, ndesc, slot;
	} popped[256];
	unsigned npopped = 0;
	uint64_t next_seq = 0, next_pop_seq = 0, next_get_seq = 0, done = 0;
	bool saw_wrap[2] = {false, false};
	static struct iovec iov[256];
	CHECK(recs && pushq);

	for (unsigned iter = 0; done < total || vhd_vq_inflight(r.drv) > 0; iter++) {
		CHECK(iter < 100000);
		bool draining = done >= total;
		/* ---- driver adds ---- */
		if (!draining) {
			struct vhd_vq_buf bufs[4];
			struct vhd_vq_seg segs[4][4];
			unsigned slots[4], nb = 0, want = 1 + rnd(&seed) % 4;
			for (unsigned i = 0; i < want; i++) {
				unsigned s = (unsigned)(rnd(&seed) % num), k;
				for (k = 0; k < num && recs[(s + k) % num].busy; k++)
					;
				if (k == num)
					break;
				s = (s + k) % num;
				struct rec *rc = &recs[s];
				memset(rc, 0, sizeof(*rc));
				rc->busy = true;
				rc->seq = next_seq + nb;
				rc->nout = (uint16_t)(1 + rnd(&seed) % 2);
				rc->nin = (uint16_t)(rnd(&seed) % 3);
				rc->indirect = ind_ok && rnd(&seed) % 3 == 0;
				while (rc->nout + rc->nin > num) { /* no chain may be longer than the queue */
					if (rc->nin)
						rc->nin--;
					else
						rc->nout--;
				}
				for (unsigned j = 0; j < (unsigned)rc->nout + rc->nin; j++) {
					bool out = j < rc->nout;
					unsigned pos = out ? j : 2 + (j - rc->nout);
					rc->len[j] = 1 + (uint32_t)(rnd(&seed) % 120);
					segs[nb][j] = (struct vhd_vq_seg){gpa(seg_off(s, pos)), rc->len[j]};
					if (out)
						fill(host(&r, seg_off(s, pos)), rc->len[j], (uint8_t)(rc->seq * 7 + j));
					else
						memset(host(&r, seg_off(s, pos)), 0xee, rc->len[j]);
				}
				bufs[nb] = (struct vhd_vq_buf){.segs = segs[nb], .nout = rc->nout, .nin = rc->nin,
							       .flags = rc->indirect ? VHD_VQ_BUF_INDIRECT : 0,
							       .token = (void *)(uintptr_t)(s + 1)};
				slots[nb++] = s;
			}
			if (nb) {
				int added = vhd_vq_add(r.drv, bufs, nb);
				CHECK(added >= 0 && (unsigned)added <= nb);
				if (added == 0)
					CHECK(vhd_vq_inflight(r.drv) > 0); /* only a full ring refuses everything */
				for (unsigned i = (unsigned)added; i < nb; i++)
					recs[slots[i]].busy = false;
				next_seq += (unsigned)added;
			}
		}
		uint16_t b = vhd_vq_base(r.drv);
		saw_wrap[b >> 15] = true;

		/* ---- device pops, checks and writes ---- */
		struct vhd_vq_chain ch[8];
		unsigned want = draining ? 8 : 1 + rnd(&seed) % 6;
		int got = vhd_vq_pop(r.dev, ch, want, iov, 256);
		if (got < 0)
			fprintf(stderr, "pop: %d %s: %s\n", got, vhd_vq_strerror(vhd_vq_error(r.dev)),
				vhd_vq_error_detail(r.dev));
		CHECK(got >= 0 && (unsigned)got <= want);
		for (int i = 0; i < got; i++) {
			struct vhd_vq_chain *c = &ch[i];
			CHECK_EQ(c->err, 0);
			CHECK(c->nout >= 1);
			size_t off = (size_t)((uint8_t *)c->iov[0].iov_base - r.mem);
			CHECK(off >= DATA_OFF);
			unsigned s = (unsigned)((off - DATA_OFF) / SLOT);
			CHECK(s < num);
			struct rec *rc = &recs[s];
			CHECK(rc->busy);
			CHECK_EQ(rc->seq, next_pop_seq); /* the device sees buffers in the order they were added */
			next_pop_seq++;
			CHECK_EQ(c->nout, rc->nout);
			CHECK_EQ(c->nin, rc->nin);
			if (r.packed)
				CHECK_EQ(c->ndesc, rc->indirect ? 1 : rc->nout + rc->nin);
			else
				CHECK_EQ(!!(vhd_le16(r.sd[c->id].flags) & VIRTQ_DESC_F_INDIRECT), rc->indirect);
			uint32_t ol = 0, il = 0;
			for (unsigned j = 0; j < (unsigned)rc->nout + rc->nin; j++) {
				bool out = j < rc->nout;
				unsigned pos = out ? j : 2 + (j - rc->nout);
				CHECK(c->iov[j].iov_base == host(&r, seg_off(s, pos)));
				CHECK_EQ(c->iov[j].iov_len, rc->len[j]);
				if (out) {
					CHECK(same(c->iov[j].iov_base, rc->len[j], (uint8_t)(rc->seq * 7 + j)));
					ol += rc->len[j];
				} else {
					il += rc->len[j];
				}
			}
			CHECK_EQ(c->out_len, ol);
			CHECK_EQ(c->in_len, il);
			/* Write the reply now: the iovs are only valid until the next pop. */
			rc->wlen = il ? (uint32_t)(rc->seq * 13 % (il + 1)) : 0;
			uint32_t left = rc->wlen;
			for (unsigned j = rc->nout; j < (unsigned)rc->nout + rc->nin; j++) {
				uint32_t n = left < c->iov[j].iov_len ? left : (uint32_t)c->iov[j].iov_len;
				fill(c->iov[j].iov_base, n, (uint8_t)(rc->seq * 3 + 1 + j));
				left -= n;
			}
			CHECK(npopped < 256);
			popped[npopped].id = c->id;
			popped[npopped].ndesc = c->ndesc;
			popped[npopped].slot = (uint16_t)s;
			npopped++;
		}

		/* ---- device pushes ---- */
		if (npopped) {
			unsigned m = draining ? npopped : (unsigned)(rnd(&seed) % (npopped + 1));
			bool batch = in_order && rnd(&seed) % 2;
			struct vhd_vq_used used[256];
			for (unsigned i = 0; i < m; i++) {
				unsigned k = in_order ? 0 : (unsigned)(rnd(&seed) % npopped);
				struct rec *rc = &recs[popped[k].slot];
				rc->exp_len = batch ? 0 : rc->wlen;
				used[i] = (struct vhd_vq_used){popped[k].id, popped[k].ndesc, rc->exp_len};
				CHECK(pq_count < num);
				pushq[(pq_head + pq_count++) % num] = popped[k].slot;
				memmove(&popped[k], &popped[k + 1], (npopped - k - 1) * sizeof(popped[0]));
				npopped--;
			}
			CHECK_EQ(vhd_vq_push(r.dev, used, m), (int)m);
		}

		/* ---- driver collects ---- */
		struct vhd_vq_done d[8];
		want = draining ? 8 : 1 + rnd(&seed) % 6;
		got = vhd_vq_get(r.drv, d, want);
		CHECK(got >= 0 && (unsigned)got <= want);
		for (int i = 0; i < got; i++) {
			uintptr_t t = (uintptr_t)d[i].token;
			CHECK(t >= 1 && t <= num);
			unsigned s = (unsigned)(t - 1);
			CHECK(pq_count > 0);
			CHECK_EQ(s, pushq[pq_head]); /* collected in the order the device pushed */
			pq_head = (pq_head + 1) % num;
			pq_count--;
			struct rec *rc = &recs[s];
			CHECK(rc->busy);
			if (in_order) {
				CHECK_EQ(rc->seq, next_get_seq);
				next_get_seq++;
			}
			CHECK_EQ(d[i].len, rc->exp_len);
			uint32_t left = rc->exp_len;
			for (unsigned j = rc->nout; j < (unsigned)rc->nout + rc->nin; j++) {
				uint32_t n = left < rc->len[j] ? left : rc->len[j];
				CHECK(same(host(&r, seg_off(s, 2 + j - rc->nout)), n, (uint8_t)(rc->seq * 3 + 1 + j)));
				left -= n;
			}
			rc->busy = false;
			done++;
		}
	}
	CHECK_EQ(npopped, 0);
	CHECK_EQ(pq_count, 0);
	CHECK_EQ(vhd_vq_inflight(r.drv), 0);
	CHECK_EQ(vhd_vq_base(r.drv), vhd_vq_base(r.dev));
	CHECK(next_seq >= 20u * num);
	if (r.packed)
		CHECK(saw_wrap[0] && saw_wrap[1]);
	else
		CHECK(vhd_vq_base(r.drv) == (uint16_t)next_seq);
	struct vhd_vq_stats sd, sv;
	vhd_vq_get_stats(r.drv, &sd);
	vhd_vq_get_stats(r.dev, &sv);
	CHECK_EQ(sd.chains, next_seq);
	CHECK_EQ(sd.used, next_seq);
	CHECK_EQ(sv.chains, next_seq);
	CHECK_EQ(sv.used, next_seq);
	check_healthy(r.drv);
	check_healthy(r.dev);
	CHECK_EQ(g_log.n_err, 0);
	free(recs);
	free(pushq);
	rig_fini(&r);
}

static void test_split_laps(void) { run_laps(0, 8, 160, 1); }
static void test_packed_laps(void) { run_laps(F_PACKED, 8, 160, 2); }
static void test_split_laps_indirect(void) { run_laps(F_INDIRECT, 8, 160, 3); }
static void test_packed_laps_indirect(void) { run_laps(F_PACKED | F_INDIRECT, 8, 160, 4); }
static void test_split_laps_in_order(void) { run_laps(F_IN_ORDER, 8, 160, 5); }
static void test_packed_laps_in_order(void) { run_laps(F_PACKED | F_IN_ORDER, 8, 160, 6); }
static void test_split_laps_all_features(void) { run_laps(F_INDIRECT | F_IN_ORDER | F_EVENT, 8, 2000, 7); }
static void test_packed_laps_all_features(void) { run_laps(F_PACKED | F_INDIRECT | F_IN_ORDER | F_EVENT, 8, 2000, 8); }
/* Packed sizes need not be powers of two. */
static void test_packed_laps_odd_size(void) { run_laps(F_PACKED | F_INDIRECT, 5, 500, 9); }
static void test_packed_laps_odd_size_in_order(void) { run_laps(F_PACKED | F_IN_ORDER, 6, 500, 10); }
static void test_split_laps_small(void) { run_laps(F_INDIRECT, 2, 200, 11); }
static void test_packed_laps_small(void) { run_laps(F_PACKED | F_INDIRECT, 1, 100, 12); }

/* ---------------- completion order ---------------- */

/* The device completes a whole ring's worth in reverse; the driver gets them back in that order, with lengths. */
static void reverse_completion(uint64_t feat)
{
	struct rig r;
	rig_init(&r, feat, 8);
	for (unsigned lap = 0; lap < 5; lap++) {
		for (uintptr_t t = 1; t <= 8; t++)
			add_simple(&r, t);
		struct vhd_vq_chain ch[8];
		CHECK_EQ(pop(&r, ch, 8), 8);
		struct vhd_vq_used u[8];
		for (unsigned i = 0; i < 8; i++) {
			CHECK(ch[i].iov[0].iov_base == host(&r, DATA_OFF + i * SLOT));
			u[i] = (struct vhd_vq_used){ch[7 - i].id, ch[7 - i].ndesc, 10 + 7 - i};
		}
		/* Half in one burst, half one at a time. */
		CHECK_EQ(vhd_vq_push(r.dev, u, 4), 4);
		for (unsigned i = 4; i < 8; i++)
			CHECK_EQ(vhd_vq_push(r.dev, &u[i], 1), 1);
		struct vhd_vq_done d[8];
		CHECK_EQ(vhd_vq_get(r.drv, d, 8), 8);
		for (unsigned i = 0; i < 8; i++) {
			CHECK(d[i].token == (void *)(uintptr_t)(8 - i));
			CHECK_EQ(d[i].len, 10 + 7 - i);
		}
		CHECK_EQ(vhd_vq_inflight(r.drv), 0);
	}
	check_healthy(r.drv);
	check_healthy(r.dev);
	rig_fini(&r);
}

static void test_split_reverse_completion(void) { reverse_completion(0); }
static void test_packed_reverse_completion(void) { reverse_completion(F_PACKED); }

/* Chains put back with vhd_vq_unpop() come out of the next pop again, unchanged; the driver sees nothing
 * until they are pushed. Multi-descriptor chains on a small ring, so that packed positions walk back across the
 * wrap. */
static void unpop(uint64_t feat)
{
	struct rig r;
	rig_init(&r, feat, 8);
	for (unsigned lap = 0; lap < 6; lap++) {
		struct vhd_vq_seg s2[2] = {{gpa(DATA_OFF), 16}, {gpa(DATA_OFF + 64), 16}};
		for (uintptr_t t = 1; t <= 3; t++)
			add1(&r, s2, 1, 1, 0, t);
		struct vhd_vq_chain ch[3], again[3];
		CHECK_EQ(pop(&r, ch, 3), 3);
		struct vhd_vq_used back[2] = {{ch[1].id, ch[1].ndesc, 0}, {ch[2].id, ch[2].ndesc, 0}};
		CHECK_EQ(vhd_vq_unpop(r.dev, back, 2), 0);
		CHECK_EQ(vhd_vq_get(r.drv, (struct vhd_vq_done[3]){0}, 3), 0);
		CHECK_EQ(pop(&r, again, 3), 2);
		for (unsigned i = 0; i < 2; i++) {
			CHECK_EQ(again[i].id, ch[i + 1].id);
			CHECK_EQ(again[i].ndesc, ch[i + 1].ndesc);
			CHECK_EQ(again[i].in_len, 16);
		}
		struct vhd_vq_used u[3] = {{ch[0].id, ch[0].ndesc, 1}, {again[0].id, again[0].ndesc, 2},
					   {again[1].id, again[1].ndesc, 3}};
		CHECK_EQ(vhd_vq_push(r.dev, u, 3), 3);
		struct vhd_vq_done d[3];
		CHECK_EQ(vhd_vq_get(r.drv, d, 3), 3);
		for (unsigned i = 0; i < 3; i++) {
			CHECK(d[i].token == (void *)(uintptr_t)(i + 1));
			CHECK_EQ(d[i].len, i + 1);
		}
	}
	check_healthy(r.dev);
	/* Putting back more than is out is the caller's bug. */
	add_simple(&r, 9);
	struct vhd_vq_chain c;
	CHECK_EQ(pop(&r, &c, 1), 1);
	struct vhd_vq_used two[2] = {{c.id, c.ndesc, 0}, {c.id, c.ndesc, 0}};
	CHECK_EQ(vhd_vq_unpop(r.dev, two, 2), -EINVAL);
	CHECK_EQ(vhd_vq_error(r.dev), VHD_VQ_E_CALLER);
	rig_fini(&r);
}

static void test_split_unpop(void) { unpop(0); }
static void test_packed_unpop(void) { unpop(F_PACKED); }

/* IN_ORDER: a burst pushed with all lengths 0 is one used entry, yet the driver gets every token, in order. */
static void in_order_batch(uint64_t feat)
{
	struct rig r;
	rig_init(&r, feat | F_IN_ORDER, 16);
	struct vhd_vq_seg s2[2] = {{gpa(DATA_OFF), 16}, {gpa(DATA_OFF + 64), 16}};
	add_simple(&r, 1);
	add1(&r, s2, 1, 1, 0, 2);
	add_simple(&r, 3);
	add1(&r, s2, 2, 0, 0, 4);
	add_simple(&r, 5);
	struct vhd_vq_chain ch[8];
	CHECK_EQ(pop(&r, ch, 8), 5);
	struct vhd_vq_used u[5];
	unsigned slots = 0;
	for (unsigned i = 0; i < 5; i++) {
		u[i] = (struct vhd_vq_used){ch[i].id, ch[i].ndesc, 0};
		slots += ch[i].ndesc;
	}
	CHECK_EQ(vhd_vq_push(r.dev, u, 5), 5);
	/* One used entry naming the last buffer. */
	if (r.packed) {
		CHECK_EQ(slots, 7);
		CHECK_EQ(vhd_le16(r.pd[0].flags) & P_USED, P_USED);
		CHECK_EQ(vhd_le16(r.pd[0].id), ch[4].id);
		CHECK_EQ(vhd_le16(r.pd[ch[0].ndesc].flags) & P_USED, P_AVAIL); /* untouched */
		CHECK_EQ(vhd_vq_base(r.dev), VHD_VQ_PACKED_BASE_INIT + 7);
	} else {
		CHECK_EQ(rd16(&r.su->idx), 5);
		CHECK_EQ(vhd_le32(r.su->ring[0].id), ch[4].id);
		CHECK_EQ(vhd_le32(r.su->ring[0].len), 0);
	}
	CHECK(vhd_vq_need_notify(r.dev));
	struct vhd_vq_done d[8];
	CHECK_EQ(vhd_vq_get(r.drv, d, 1), 1);
	CHECK(d[0].token == (void *)1);
	CHECK_EQ(d[0].len, 0);
	CHECK_EQ(vhd_vq_inflight(r.drv), 4);
	CHECK(vhd_vq_enable_notify(r.drv)); /* the rest of the batch is still to collect */
	CHECK_EQ(vhd_vq_get(r.drv, d, 2), 2);
	CHECK_EQ(vhd_vq_get(r.drv, d + 2, 8), 2);
	for (unsigned i = 0; i < 4; i++) {
		CHECK(d[i].token == (void *)(uintptr_t)(i + 2));
		CHECK_EQ(d[i].len, 0);
	}
	CHECK_EQ(vhd_vq_inflight(r.drv), 0);
	CHECK(!vhd_vq_enable_notify(r.drv));
	CHECK_EQ(vhd_vq_get(r.drv, d, 8), 0);

	/* With lengths the entries are written one by one and each length arrives. */
	for (uintptr_t t = 1; t <= 3; t++)
		add_simple(&r, t);
	CHECK_EQ(pop(&r, ch, 8), 3);
	struct vhd_vq_used ul[3] = {{ch[0].id, ch[0].ndesc, 10}, {ch[1].id, ch[1].ndesc, 0}, {ch[2].id, ch[2].ndesc, 30}};
	CHECK_EQ(vhd_vq_push(r.dev, ul, 3), 3);
	CHECK_EQ(vhd_vq_get(r.drv, d, 8), 3);
	CHECK(d[0].token == (void *)1 && d[0].len == 10);
	CHECK(d[1].token == (void *)2 && d[1].len == 0);
	CHECK(d[2].token == (void *)3 && d[2].len == 30);

	/* Many laps of zero-length batches of varying size. */
	uintptr_t next = 100, expect = 100;
	for (unsigned lap = 0; lap < 60; lap++) {
		unsigned k = 1 + lap % 7;
		for (unsigned i = 0; i < k; i++)
			add_simple(&r, next++ % 16 + 1);
		CHECK_EQ(pop(&r, ch, 8), (int)k);
		struct vhd_vq_used ub[8];
		for (unsigned i = 0; i < k; i++)
			ub[i] = (struct vhd_vq_used){ch[i].id, ch[i].ndesc, 0};
		CHECK_EQ(vhd_vq_push(r.dev, ub, k), (int)k);
		CHECK_EQ(vhd_vq_get(r.drv, d, 8), (int)k);
		for (unsigned i = 0; i < k; i++) {
			CHECK(d[i].token == (void *)(expect++ % 16 + 1));
			CHECK_EQ(d[i].len, 0);
		}
	}
	CHECK_EQ(vhd_vq_inflight(r.drv), 0);
	CHECK_EQ(vhd_vq_base(r.drv), vhd_vq_base(r.dev));
	check_healthy(r.drv);
	check_healthy(r.dev);
	rig_fini(&r);
}

static void test_split_in_order_batch(void) { in_order_batch(0); }
static void test_packed_in_order_batch(void) { in_order_batch(F_PACKED); }

/* A device queue recreated at vhd_vq_base() of the old one (vhost-user GET/SET_VRING_BASE) carries on. */
static void resume_at_base(uint64_t feat)
{
	struct rig r;
	rig_init(&r, feat, 8);
	struct vhd_vq_chain ch[8];
	struct vhd_vq_done d[8];
	for (unsigned lap = 0; lap < 13; lap++) {
		for (uintptr_t t = 1; t <= 3; t++)
			add_simple(&r, t);
		CHECK_EQ(pop(&r, ch, 8), 3);
		for (unsigned i = 0; i < 3; i++)
			push1(&r, &ch[i], 4);
		CHECK_EQ(vhd_vq_get(r.drv, d, 8), 3);
		if (lap % 4 == 3) {
			uint16_t base = vhd_vq_base(r.dev);
			CHECK_EQ(base, vhd_vq_base(r.drv));
			vhd_vq_destroy(r.dev);
			r.dev = make_vq(&r, VHD_VQ_DEVICE, feat, base);
			CHECK_EQ(vhd_vq_base(r.dev), base);
		}
	}
	/* 39 buffers of one slot each: packed is at 39 % 8 = 7 after four whole laps (wrap counter back to 1). */
	CHECK_EQ(vhd_vq_base(r.drv), r.packed ? (7 | 0x8000) : 39);
	check_healthy(r.drv);
	check_healthy(r.dev);
	rig_fini(&r);
}

static void test_split_resume_at_base(void) { resume_at_base(0); }
static void test_packed_resume_at_base(void) { resume_at_base(F_PACKED); }

/* ---------------- iov limits ---------------- */

/* A chain with more segments than the whole iov array: err -ENOBUFS, no segments, pushed back with len 0. */
static void oversized_chain(uint64_t feat)
{
	struct rig r;
	rig_init(&r, feat, 8);
	struct vhd_vq_seg segs[6];
	for (unsigned j = 0; j < 6; j++)
		segs[j] = (struct vhd_vq_seg){gpa(DATA_OFF + j * 64), 32};
	add1(&r, segs, 3, 3, VHD_VQ_BUF_INDIRECT, 77);
	add_simple(&r, 2);
	struct vhd_vq_chain ch[4];
	struct iovec iov[4];
	CHECK_EQ(vhd_vq_pop(r.dev, ch, 4, iov, 4), 1); /* the oversized chain ends the burst */
	CHECK_EQ(ch[0].err, -ENOBUFS);
	CHECK_EQ(ch[0].nout, 0);
	CHECK_EQ(ch[0].nin, 0);
	CHECK_EQ(ch[0].out_len, 0);
	CHECK_EQ(ch[0].in_len, 0);
	struct vhd_vq_stats st;
	vhd_vq_get_stats(r.dev, &st);
	CHECK_EQ(st.oversized, 1);
	push1(&r, &ch[0], 0);
	struct vhd_vq_done d[4];
	CHECK_EQ(vhd_vq_get(r.drv, d, 4), 1);
	CHECK(d[0].token == (void *)77);
	CHECK_EQ(d[0].len, 0);
	/* The queue carries on. */
	CHECK_EQ(vhd_vq_pop(r.dev, ch, 4, iov, 4), 1);
	CHECK_EQ(ch[0].err, 0);
	CHECK_EQ(ch[0].nin, 1);
	CHECK(iov[0].iov_base == host(&r, DATA_OFF + SLOT));
	push1(&r, &ch[0], 64);
	CHECK_EQ(vhd_vq_get(r.drv, d, 4), 1);
	CHECK(d[0].token == (void *)2 && d[0].len == 64);
	check_healthy(r.drv);
	check_healthy(r.dev);
	rig_fini(&r);
}

static void test_split_oversized_chain(void) { oversized_chain(0); }
static void test_packed_oversized_chain(void) { oversized_chain(F_PACKED); }
static void test_split_oversized_chain_indirect(void) { oversized_chain(F_INDIRECT); }
static void test_packed_oversized_chain_indirect(void) { oversized_chain(F_PACKED | F_INDIRECT); }

/* A later chain that does not fit in what is left of iov[] stays in the ring for the next call. */
static void chain_waits_for_iov(uint64_t feat)
{
	struct rig r;
	rig_init(&r, feat, 8);
	struct vhd_vq_seg segs[3] = {{gpa(DATA_OFF), 8}, {gpa(DATA_OFF + 64), 8}, {gpa(DATA_OFF + 128), 8}};
	add1(&r, segs, 2, 0, 0, 1);
	add1(&r, segs, 1, 2, 0, 2);
	struct vhd_vq_chain ch[4];
	struct iovec iov[4];
	CHECK_EQ(vhd_vq_pop(r.dev, ch, 4, iov, 4), 1);
	CHECK_EQ(ch[0].nout, 2);
	if (r.packed)
		CHECK_EQ(vhd_vq_base(r.dev), VHD_VQ_PACKED_BASE_INIT + 2);
	else
		CHECK_EQ(vhd_vq_base(r.dev), 1);
	struct vhd_vq_chain ch2[4];
	CHECK_EQ(vhd_vq_pop(r.dev, ch2, 4, iov, 3), 1);
	CHECK_EQ(ch2[0].err, 0);
	CHECK_EQ(ch2[0].nout, 1);
	CHECK_EQ(ch2[0].nin, 2);
	CHECK(iov[2].iov_base == host(&r, DATA_OFF + 128));
	struct vhd_vq_used u[2] = {{ch[0].id, ch[0].ndesc, 0}, {ch2[0].id, ch2[0].ndesc, 16}};
	CHECK_EQ(vhd_vq_push(r.dev, u, 2), 2);
	struct vhd_vq_done d[4];
	CHECK_EQ(vhd_vq_get(r.drv, d, 4), 2);
	CHECK(d[0].token == (void *)1 && d[0].len == 0);
	CHECK(d[1].token == (void *)2 && d[1].len == 16);
	struct vhd_vq_stats st;
	vhd_vq_get_stats(r.dev, &st);
	CHECK_EQ(st.oversized, 0);
	rig_fini(&r);
}

static void test_split_chain_waits_for_iov(void) { chain_waits_for_iov(0); }
static void test_packed_chain_waits_for_iov(void) { chain_waits_for_iov(F_PACKED); }

/*
 * The descriptor budget of one pop (VHD_VQ_POP_DESC_BUDGET): a device queue of up to 4096 entries over 4 MiB of
 * guest memory, written by the test as a hostile driver would, with chains of 1-byte descriptors (direct, or
 * indirect tables), each byte numbered so that every chain can be checked whole when it is finally taken.
 */
#define BQ_MEM  (4u << 20)
#define BQ_TBL  (512u << 10)
#define BQ_DATA (2u << 20)
#define BQ_NIOV 8192u

struct bigq {
	bool packed;
	uint16_t num;
	uint8_t *mem;
	struct vhd_mem *vm;
	struct vhd_vq *dev;
	struct vhd_vq_layout lo;
	uint16_t next;  /* next free ring slot (no wrap in these tests) */
	uint16_t avail; /* split: avail idx published */
	size_t tbl, data;
	unsigned added, taken;
	struct {
		size_t data;
		unsigned len;
	} rec[64];
};

static uint8_t bq_byte(unsigned chain, unsigned j)
{
	return (uint8_t)(chain * 37 + j * 11 + 1);
}

static void bq_init(struct bigq *q, uint64_t feat, uint16_t num)
{
	memset(q, 0, sizeof(*q));
	q->packed = feat & F_PACKED;
	q->num = num;
	q->tbl = BQ_TBL;
	q->data = BQ_DATA;
	CHECK_EQ(vhd_vq_layout(q->packed, num, &q->lo), 0);
	CHECK(q->lo.size <= BQ_TBL);
	CHECK_EQ(posix_memalign((void **)&q->mem, 4096, BQ_MEM), 0);
	memset(q->mem, 0, BQ_MEM);
	CHECK_EQ(vhd_mem_create(&q->vm), 0);
	struct vhd_mem_region_info ri = {.guest_addr = GPA, .size = BQ_MEM, .user_addr = 0x7f0000000000ull,
					 .host = q->mem};
	CHECK_EQ(vhd_mem_add(q->vm, &ri), 0);
	struct vhd_vq_config c = {.side = VHD_VQ_DEVICE, .num = num, .features = feat | F_INDIRECT,
				  .desc = q->mem + q->lo.desc_off, .driver = q->mem + q->lo.driver_off,
				  .device = q->mem + q->lo.device_off, .mem = q->vm,
				  .base = q->packed ? VHD_VQ_PACKED_BASE_INIT : 0, .name = "budget"};
	CHECK_EQ(vhd_vq_create(&c, &q->dev), 0);
}

static void bq_fini(struct bigq *q)
{
	vhd_vq_destroy(q->dev);
	vhd_mem_destroy(q->vm);
	free(q->mem);
}

/* Split: head becomes available (avail ring entry, then the index, released). */
static void bq_publish(struct bigq *q, uint16_t head)
{
	if (q->packed)
		return;
	struct virtq_avail *sa = (struct virtq_avail *)(q->mem + q->lo.driver_off);
	sa->ring[q->avail & (q->num - 1)] = vhd_cpu_to_le16(head);
	q->avail++;
	__atomic_store_n(&sa->idx, vhd_cpu_to_le16(q->avail), __ATOMIC_RELEASE);
}

/* Entry j of n of an indirect table at q->tbl, over len bytes at data offset off, device-writable or not. */
static void bq_entry(struct bigq *q, unsigned j, unsigned n, size_t off, uint32_t len, bool write)
{
	uint8_t *e = q->mem + q->tbl + (size_t)j * 16;
	uint16_t w = write ? VIRTQ_DESC_F_WRITE : 0;
	if (q->packed)
		wpdesc((struct pvirtq_desc *)e, gpa(off), len, 0, w);
	else
		wdesc((struct virtq_desc *)e, gpa(off), len, (uint16_t)(w | (j + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
		      (uint16_t)(j + 1 < n ? j + 1 : 0));
}

/* The next ring slot, as the head of chain k pointing at the indirect table of n entries at q->tbl; published. */
static void bq_indirect_head(struct bigq *q, unsigned k, unsigned n)
{
	uint16_t head = q->next++;
	if (q->packed)
		wpdesc((struct pvirtq_desc *)(q->mem + q->lo.desc_off) + head, gpa(q->tbl), n * 16, (uint16_t)k,
		       P_AVAIL | VIRTQ_DESC_F_INDIRECT);
	else
		wdesc((struct virtq_desc *)(q->mem + q->lo.desc_off) + head, gpa(q->tbl), n * 16, VIRTQ_DESC_F_INDIRECT,
		      0);
	q->tbl += (size_t)n * 16;
	bq_publish(q, head);
}

/* One chain of n 1-byte readable buffers: n ring descriptors, or one pointing at an indirect table of n. */
static void bq_add(struct bigq *q, unsigned n, bool indirect)
{
	unsigned k = q->added++;
	CHECK(k < 64);
	q->rec[k].data = q->data;
	q->rec[k].len = n;
	for (unsigned j = 0; j < n; j++)
		q->mem[q->data + j] = bq_byte(k, j);
	if (indirect) {
		for (unsigned j = 0; j < n; j++)
			bq_entry(q, j, n, q->data + j, 1, false);
		bq_indirect_head(q, k, n);
	} else {
		uint16_t head = q->next;
		CHECK((unsigned)head + n <= q->num);
		struct virtq_desc *sd = (struct virtq_desc *)(q->mem + q->lo.desc_off);
		struct pvirtq_desc *pd = (struct pvirtq_desc *)(q->mem + q->lo.desc_off);
		/* Packed: the head's flags last, as a driver makes a chain available. */
		for (unsigned j = n; j-- > 0;) {
			uint16_t s = (uint16_t)(head + j), more = j + 1 < n ? VIRTQ_DESC_F_NEXT : 0;
			if (q->packed)
				wpdesc(&pd[s], gpa(q->data + j), 1, (uint16_t)k, (uint16_t)(P_AVAIL | more));
			else
				wdesc(&sd[s], gpa(q->data + j), 1, more, (uint16_t)(s + 1));
		}
		q->next = (uint16_t)(q->next + n);
		bq_publish(q, head);
	}
	q->data += n;
}

/* One pop of up to want chains: each checked byte by byte against what bq_add() wrote, then given back. Returns
 * the chains taken; *walked gets the descriptors the pop walked (stats). */
static unsigned bq_pop(struct bigq *q, unsigned want, uint64_t *walked)
{
	static struct iovec iov[BQ_NIOV];
	struct vhd_vq_chain ch[64];
	struct vhd_vq_stats s0, s1;
	vhd_vq_get_stats(q->dev, &s0);
	int n = vhd_vq_pop(q->dev, ch, want, iov, BQ_NIOV);
	CHECK(n >= 0);
	vhd_vq_get_stats(q->dev, &s1);
	*walked = s1.descs - s0.descs;
	for (int i = 0; i < n; i++) {
		unsigned k = q->taken++;
		CHECK_EQ(ch[i].err, 0);
		CHECK_EQ(ch[i].nin, 0);
		CHECK_EQ(ch[i].out_len, q->rec[k].len);
		CHECK_EQ(ch[i].nout, q->rec[k].len);
		for (unsigned j = 0; j < ch[i].nout; j++) {
			CHECK_EQ(ch[i].iov[j].iov_len, 1);
			CHECK(ch[i].iov[j].iov_base == q->mem + q->rec[k].data + j);
			CHECK_EQ(*(const uint8_t *)ch[i].iov[j].iov_base, bq_byte(k, j));
		}
		struct vhd_vq_used u = {.id = ch[i].id, .ndesc = ch[i].ndesc, .len = 0};
		CHECK_EQ(vhd_vq_push(q->dev, &u, 1), 1);
	}
	check_healthy(q->dev);
	return (unsigned)n;
}

/* Eight chains of 1000 indirect 1-byte descriptors: each pop takes two (2000 descriptors walked, the third
 * chain's table of 1000 is not even mapped with 48 left), and after four pops every byte has arrived. */
static void budget_long_chains(uint64_t feat)
{
	struct bigq q;
	bq_init(&q, feat, 1024);
	for (unsigned k = 0; k < 8; k++)
		bq_add(&q, 1000, true);
	uint64_t walked;
	for (unsigned round = 0; round < 4; round++) {
		CHECK_EQ(bq_pop(&q, 32, &walked), 2u);
		CHECK_EQ(walked, 2000u);
		CHECK(walked <= VHD_VQ_POP_DESC_BUDGET);
	}
	CHECK_EQ(bq_pop(&q, 32, &walked), 0u);
	CHECK_EQ(q.taken, 8u);
	struct vhd_vq_stats st;
	vhd_vq_get_stats(q.dev, &st);
	CHECK_EQ(st.budget_stops, 3u); /* the last pop found nothing more to leave */
	CHECK_EQ(st.descs, 8000u);
	bq_fini(&q);
}

static void test_split_pop_budget_long_chains(void) { budget_long_chains(0); }
static void test_packed_pop_budget_long_chains(void) { budget_long_chains(F_PACKED); }

/* A chain longer than the whole budget is taken when it comes first (every pop makes progress), alone. */
static void budget_first_chain_whole(uint64_t feat)
{
	struct bigq q;
	bq_init(&q, feat, 4096);
	bq_add(&q, 3000, true);
	bq_add(&q, 3000, true);
	uint64_t walked;
	CHECK_EQ(bq_pop(&q, 32, &walked), 1u);
	CHECK_EQ(walked, 3000u);
	CHECK_EQ(bq_pop(&q, 32, &walked), 1u);
	CHECK_EQ(walked, 3000u);
	struct vhd_vq_stats st;
	vhd_vq_get_stats(q.dev, &st);
	CHECK_EQ(st.budget_stops, 1u);
	bq_fini(&q);
}

static void test_split_pop_budget_first_chain_whole(void) { budget_first_chain_whole(0); }
static void test_packed_pop_budget_first_chain_whole(void) { budget_first_chain_whole(F_PACKED); }

/* A direct chain of 2040 descriptors leaves 8 of the budget: of the 32 plain chains behind it the same pop takes
 * 8 (the fast path's chains count too), the next pop the other 24. Then a direct chain of 1500 after one of
 * 1000: its walk stops at the budget and it waits, whole, for the next pop. */
static void budget_direct_chains(uint64_t feat)
{
	struct bigq q;
	bq_init(&q, feat, 4096);
	bq_add(&q, 2040, false);
	for (unsigned k = 0; k < 32; k++)
		bq_add(&q, 1, false);
	uint64_t walked;
	CHECK_EQ(bq_pop(&q, 32, &walked), 9u);
	CHECK_EQ(walked, VHD_VQ_POP_DESC_BUDGET);
	CHECK_EQ(bq_pop(&q, 32, &walked), 24u);
	CHECK_EQ(walked, 24u);
	CHECK_EQ(q.taken, 33u);
	struct vhd_vq_stats st;
	vhd_vq_get_stats(q.dev, &st);
	CHECK_EQ(st.budget_stops, 1u);
	bq_fini(&q);
	bq_init(&q, feat, 4096);
	bq_add(&q, 1000, false);
	bq_add(&q, 1500, false);
	CHECK_EQ(bq_pop(&q, 2, &walked), 1u); /* 1000, then the first 1048 of the 1500: left whole */
	CHECK_EQ(walked, VHD_VQ_POP_DESC_BUDGET);
	CHECK_EQ(bq_pop(&q, 2, &walked), 1u);
	CHECK_EQ(walked, 1500u);
	CHECK_EQ(q.taken, 2u);
	vhd_vq_get_stats(q.dev, &st);
	CHECK_EQ(st.budget_stops, 1u);
	bq_fini(&q);
}

static void test_split_pop_budget_direct_chains(void) { budget_direct_chains(0); }
static void test_packed_pop_budget_direct_chains(void) { budget_direct_chains(F_PACKED); }

/* A chain through an indirect table of n entries: the first holds bytes[0..len) (or, write, is a receive buffer
 * of len bytes), the other n - 1 are empty. The cheapest long chain for a driver (one segment to map, n
 * descriptors to walk). */
static void bq_add_padded(struct bigq *q, unsigned n, const uint8_t *bytes, uint32_t len, bool write)
{
	unsigned k = q->added++;
	CHECK(k < 64);
	q->rec[k].data = q->data;
	q->rec[k].len = len;
	if (bytes)
		memcpy(q->mem + q->data, bytes, len);
	for (unsigned j = 0; j < n; j++)
		bq_entry(q, j, n, q->data, j ? 0 : len, write);
	bq_indirect_head(q, k, n);
	q->data += (len + 63) & ~63u;
}

/*
 * The net device dequeue over such chains: ten frames, each behind 999 empty descriptors. Without the budget one
 * call for 32 frames walked all 10000 descriptors; now each call walks at most VHD_VQ_POP_DESC_BUDGET and
 * returns two frames, and five calls deliver all ten intact.
 */
static void net_dequeue_budget(uint64_t feat)
{
	struct bigq q;
	bq_init(&q, feat, 1024);
	struct vhd_net_cfg cfg;
	CHECK_EQ(vhd_net_cfg_init(&cfg, VHD_BIT(VIRTIO_F_VERSION_1) | feat), 0);
	CHECK_EQ(cfg.hdr_size, 12);
	struct vhd_pktpool *pool;
	CHECK_EQ(vhd_pktpool_create(64, VHD_PKT_DEFAULT_BUF_SIZE, &pool), 0);
	uint8_t buf[12 + 100];
	for (unsigned k = 0; k < 10; k++) {
		memset(buf, 0, 12);
		for (unsigned j = 0; j < 100; j++)
			buf[12 + j] = bq_byte(k, j);
		bq_add_padded(&q, 1000, buf, sizeof(buf), false);
	}
	struct vhd_net_stats st = {0};
	unsigned delivered = 0, calls = 0;
	while (delivered < 10) {
		CHECK(++calls <= 5);
		struct vhd_vq_stats s0, s1;
		vhd_vq_get_stats(q.dev, &s0);
		struct vhd_pkt *pkts[32];
		int n = vhd_net_dev_dequeue(q.dev, &cfg, pool, pkts, 32, &st);
		vhd_vq_get_stats(q.dev, &s1);
		CHECK_EQ(n, 2);
		CHECK(s1.descs - s0.descs <= VHD_VQ_POP_DESC_BUDGET);
		for (int i = 0; i < n; i++, delivered++) {
			CHECK_EQ(pkts[i]->len, 100);
			for (unsigned j = 0; j < 100; j++)
				CHECK_EQ(vhd_pkt_data(pkts[i])[j], bq_byte(delivered, j));
		}
		vhd_pkt_free_bulk(pkts, (unsigned)n);
	}
	CHECK_EQ(st.packets, 10);
	check_healthy(q.dev);
	CHECK_EQ(vhd_pktpool_avail(pool), 64u);
	vhd_pktpool_destroy(pool);
	bq_fini(&q);
}

static void test_split_net_dequeue_budget(void) { net_dequeue_budget(0); }
static void test_packed_net_dequeue_budget(void) { net_dequeue_budget(F_PACKED); }

/*
 * The receive side: ten 2048-byte receive buffers, each behind 999 empty descriptors, and ten frames to deliver.
 * Each pop takes two buffers (2000 descriptors); the enqueue pops again while its call has walked less than the
 * budget, so a call delivers four and leaves the rest as no_buffers (without that stop, one call walked all
 * 10000 descriptors); three calls deliver all ten, each into its own buffer, intact.
 */
static void net_enqueue_budget(uint64_t feat)
{
	struct bigq q;
	bq_init(&q, feat, 1024);
	struct vhd_net_cfg cfg;
	CHECK_EQ(vhd_net_cfg_init(&cfg, VHD_BIT(VIRTIO_F_VERSION_1) | feat), 0);
	for (unsigned k = 0; k < 10; k++)
		bq_add_padded(&q, 1000, NULL, 2048, true);
	struct vhd_pktpool *pool;
	CHECK_EQ(vhd_pktpool_create(16, VHD_PKT_DEFAULT_BUF_SIZE, &pool), 0);
	struct vhd_pkt *pkts[10];
	CHECK_EQ(vhd_pkt_alloc_bulk(pool, pkts, 10), 10u);
	for (unsigned k = 0; k < 10; k++) {
		pkts[k]->len = 100;
		for (unsigned j = 0; j < 100; j++)
			vhd_pkt_data(pkts[k])[j] = bq_byte(k, j);
	}
	struct vhd_net_stats st = {0};
	static const unsigned per_call[] = {4, 4, 2};
	unsigned sent = 0;
	for (unsigned call = 0; call < 3; call++) {
		uint64_t w0 = vhd_vq_descs_walked(q.dev);
		int n = vhd_net_dev_enqueue(q.dev, &cfg, pkts + sent, 10 - sent, &st);
		CHECK_EQ(n, per_call[call]);
		CHECK(vhd_vq_descs_walked(q.dev) - w0 <= 2 * VHD_VQ_POP_DESC_BUDGET);
		sent += (unsigned)n;
	}
	CHECK_EQ(st.packets, 10);
	CHECK_EQ(st.no_buffers, 6 + 2);
	for (unsigned k = 0; k < 10; k++) {
		const uint8_t *b = q.mem + q.rec[k].data;
		for (unsigned j = 0; j < 12; j++)
			CHECK_EQ(b[j], j == 10 ? 1 : 0); /* a plain header, num_buffers 1 */
		for (unsigned j = 0; j < 100; j++)
			CHECK_EQ(b[12 + j], bq_byte(k, j));
	}
	check_healthy(q.dev);
	vhd_pkt_free_bulk(pkts, 10);
	vhd_pktpool_destroy(pool);
	bq_fini(&q);
}

static void test_split_net_enqueue_budget(void) { net_enqueue_budget(0); }
static void test_packed_net_enqueue_budget(void) { net_enqueue_budget(F_PACKED); }

/* ---------------- two regions ---------------- */

/* One descriptor whose buffer crosses from one region into the adjacent one: two iovs, each in its own block. */
static void two_region_buffer(uint64_t feat)
{
	struct rig r;
	rig_init_ex(&r, feat, feat, 8, true);
	uint8_t *lo = r.mem + BLOCK - 100, *hi = r.mem2;
	fill(lo, 100, 0x31);
	fill(hi, 200, 0x32);
	struct vhd_vq_seg out = {GPA + BLOCK - 100, 300};
	add1(&r, &out, 1, 0, 0, 1);
	struct vhd_vq_chain ch[4];
	struct iovec iov[8];
	CHECK_EQ(vhd_vq_pop(r.dev, ch, 4, iov, 8), 1);
	CHECK_EQ(ch[0].nout, 2);
	CHECK_EQ(ch[0].nin, 0);
	CHECK_EQ(ch[0].out_len, 300);
	CHECK(iov[0].iov_base == lo);
	CHECK_EQ(iov[0].iov_len, 100);
	CHECK(iov[1].iov_base == hi);
	CHECK_EQ(iov[1].iov_len, 200);
	CHECK(same(iov[0].iov_base, 100, 0x31));
	CHECK(same(iov[1].iov_base, 200, 0x32));
	push1(&r, &ch[0], 0);

	/* A writable buffer crossing the same boundary: the device's writes land in both blocks. */
	memset(lo, 0, 100);
	memset(hi, 0, 200);
	struct vhd_vq_seg in[2] = {{gpa(DATA_OFF), 16}, {GPA + BLOCK - 100, 300}};
	fill(host(&r, DATA_OFF), 16, 0x44);
	add1(&r, in, 1, 1, 0, 2);
	CHECK_EQ(vhd_vq_pop(r.dev, ch, 4, iov, 8), 1);
	CHECK_EQ(ch[0].nout, 1);
	CHECK_EQ(ch[0].nin, 2);
	CHECK_EQ(ch[0].in_len, 300);
	CHECK(iov[1].iov_base == lo && iov[1].iov_len == 100);
	CHECK(iov[2].iov_base == hi && iov[2].iov_len == 200);
	fill(iov[1].iov_base, 100, 0x51);
	fill(iov[2].iov_base, 150, 0x52);
	push1(&r, &ch[0], 250);
	struct vhd_vq_done d[4];
	CHECK_EQ(vhd_vq_get(r.drv, d, 4), 2);
	CHECK(d[0].token == (void *)1 && d[0].len == 0);
	CHECK(d[1].token == (void *)2 && d[1].len == 250);
	CHECK(same(r.mem + BLOCK - 100, 100, 0x51));
	CHECK(same(r.mem2, 150, 0x52));
	CHECK_EQ(r.mem2[150], 0);

	/* Running past the end of region 2 is still outside memory. */
	struct vhd_vq_seg bad = {GPA + BLOCK + BLOCK2 - 10, 20};
	add1(&r, &bad, 1, 0, 0, 3);
	expect_pop_error(&r, VHD_VQ_E_ADDR);
	rig_fini(&r);
}

static void test_split_buffer_spans_regions(void) { two_region_buffer(0); }
static void test_packed_buffer_spans_regions(void) { two_region_buffer(F_PACKED); }

/* Descriptor table entries for a raw indirect table: split entries chain with NEXT, packed ones are consecutive. */
static void put_entry(struct rig *r, uint8_t *where, unsigned j, unsigned n, uint64_t addr, uint32_t len, bool write)
{
	if (r->packed) {
		struct pvirtq_desc e;
		wpdesc(&e, addr, len, 0, write ? VIRTQ_DESC_F_WRITE : 0);
		memcpy(where + j * 16, &e, 16);
	} else {
		struct virtq_desc e;
		wdesc(&e, addr, len, (uint16_t)((write ? VIRTQ_DESC_F_WRITE : 0) | (j + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
		      (uint16_t)(j + 1 < n ? j + 1 : 0));
		memcpy(where + j * 16, &e, 16);
	}
}

/* Ring descriptor number slot, pointing at an indirect table; published (split) or made available (packed). */
static void put_indirect_head(struct rig *r, unsigned slot, uint64_t taddr, uint32_t tlen, uint16_t id)
{
	if (r->packed) {
		wpdesc(&r->pd[slot], taddr, tlen, id, P_AVAIL | VIRTQ_DESC_F_INDIRECT);
	} else {
		wdesc(&r->sd[slot], taddr, tlen, VIRTQ_DESC_F_INDIRECT, 0);
		s_publish(r, (uint16_t)slot);
	}
}

/*
 * Indirect tables the device cannot use in place: one straddling the two regions (bounce copy), and one that is
 * only 4-byte aligned. Two of them in one burst, so the bounce buffer is reused between chains.
 */
static void indirect_bounce(uint64_t feat)
{
	struct rig r;
	rig_init_ex(&r, feat | F_INDIRECT, feat | F_INDIRECT, 8, true);
	/* Table A: 3 entries at [B-32, B+16): entries 0 and 1 in region 1, entry 2 in region 2. */
	uint8_t tmp[64];
	for (unsigned j = 0; j < 3; j++)
		put_entry(&r, tmp, j, 3, gpa(DATA_OFF + j * 128), 50 + j, j == 2);
	memcpy(r.mem + BLOCK - 32, tmp, 32);
	memcpy(r.mem2, tmp + 32, 16);
	/* Table B: 2 entries at a 4-byte aligned address inside region 1. */
	for (unsigned j = 0; j < 2; j++)
		put_entry(&r, tmp, j, 2, gpa(DATA_OFF + 1024 + j * 128), 20 + j, j == 1);
	memcpy(host(&r, TBL_OFF + 4), tmp, 32);
	put_indirect_head(&r, 0, GPA + BLOCK - 32, 48, 5);
	put_indirect_head(&r, 1, gpa(TBL_OFF + 4), 32, 6);
	for (unsigned j = 0; j < 3; j++)
		fill(host(&r, DATA_OFF + j * 128), 50 + j, (uint8_t)j);

	struct vhd_vq_chain ch[4];
	struct iovec iov[16];
	CHECK_EQ(vhd_vq_pop(r.dev, ch, 4, iov, 16), 2);
	CHECK_EQ(ch[0].nout, 2);
	CHECK_EQ(ch[0].nin, 1);
	CHECK_EQ(ch[0].out_len, 50 + 51);
	CHECK_EQ(ch[0].in_len, 52);
	for (unsigned j = 0; j < 3; j++) {
		CHECK(ch[0].iov[j].iov_base == host(&r, DATA_OFF + j * 128));
		CHECK_EQ(ch[0].iov[j].iov_len, 50 + j);
	}
	CHECK(same(ch[0].iov[1].iov_base, 51, 1));
	CHECK_EQ(ch[1].nout, 1);
	CHECK_EQ(ch[1].nin, 1);
	CHECK(ch[1].iov[0].iov_base == host(&r, DATA_OFF + 1024));
	CHECK_EQ(ch[1].iov[0].iov_len, 20);
	CHECK(ch[1].iov[1].iov_base == host(&r, DATA_OFF + 1024 + 128));
	CHECK_EQ(ch[1].iov[1].iov_len, 21);
	if (r.packed) {
		CHECK_EQ(ch[0].id, 5);
		CHECK_EQ(ch[1].id, 6);
		CHECK_EQ(ch[0].ndesc, 1);
	} else {
		CHECK_EQ(ch[0].id, 0);
		CHECK_EQ(ch[1].id, 1);
	}
	check_healthy(r.dev);
	/* The same straddling table once more, now that the hint points at region 2. */
	CHECK_EQ(vhd_vq_pop(r.dev, ch, 4, iov, 16), 0);
	if (r.packed)
		put_indirect_head(&r, 2, GPA + BLOCK - 32, 48, 7);
	else
		put_indirect_head(&r, 2, GPA + BLOCK - 32, 48, 0);
	CHECK_EQ(vhd_vq_pop(r.dev, ch, 4, iov, 16), 1);
	CHECK_EQ(ch[0].nout + ch[0].nin, 3);
	CHECK(iov[2].iov_base == host(&r, DATA_OFF + 256));
	rig_fini(&r);
}

static void test_split_indirect_straddles_regions(void) { indirect_bounce(0); }
static void test_packed_indirect_straddles_regions(void) { indirect_bounce(F_PACKED); }

/* ================================================================ notifications ================================================================ */

static void test_split_notify_kick(void)
{
	struct rig r;
	rig_init(&r, 0, 8);
	struct vhd_vq_chain ch[8];
	CHECK(!vhd_vq_need_notify(r.drv)); /* nothing added yet */
	add_simple(&r, 1);
	CHECK(vhd_vq_need_notify(r.drv));
	CHECK(!vhd_vq_need_notify(r.drv)); /* nothing new since */
	vhd_vq_disable_notify(r.dev);
	CHECK_EQ(rd16(&r.su->flags), VIRTQ_USED_F_NO_NOTIFY);
	add_simple(&r, 2);
	CHECK(!vhd_vq_need_notify(r.drv));
	CHECK(vhd_vq_enable_notify(r.dev)); /* two buffers already waiting */
	CHECK_EQ(rd16(&r.su->flags), 0);
	CHECK_EQ(pop(&r, ch, 8), 2);
	CHECK(!vhd_vq_enable_notify(r.dev));
	add_simple(&r, 3);
	add_simple(&r, 4);
	CHECK(vhd_vq_need_notify(r.drv));
	struct vhd_vq_stats st;
	vhd_vq_get_stats(r.drv, &st);
	CHECK_EQ(st.notify, 2);
	CHECK_EQ(st.notify_skipped, 3);
	rig_fini(&r);
}

static void test_split_notify_interrupt(void)
{
	struct rig r;
	rig_init(&r, 0, 8);
	struct vhd_vq_chain ch[8];
	struct vhd_vq_done d[8];
	for (uintptr_t t = 1; t <= 5; t++)
		add_simple(&r, t);
	CHECK_EQ(pop(&r, ch, 8), 5);
	CHECK(!vhd_vq_need_notify(r.dev)); /* nothing pushed yet */
	push1(&r, &ch[0], 1);
	CHECK(vhd_vq_need_notify(r.dev));
	CHECK(!vhd_vq_need_notify(r.dev));
	vhd_vq_disable_notify(r.drv);
	CHECK_EQ(rd16(&r.sa->flags), VIRTQ_AVAIL_F_NO_INTERRUPT);
	push1(&r, &ch[1], 1);
	CHECK(!vhd_vq_need_notify(r.dev));
	CHECK(vhd_vq_enable_notify(r.drv)); /* two used buffers not collected */
	CHECK_EQ(rd16(&r.sa->flags), 0);
	CHECK_EQ(vhd_vq_get(r.drv, d, 8), 2);
	CHECK(!vhd_vq_enable_notify(r.drv));
	push1(&r, &ch[2], 1);
	CHECK(vhd_vq_need_notify(r.dev));
	struct vhd_vq_stats st;
	vhd_vq_get_stats(r.dev, &st);
	CHECK_EQ(st.notify, 2);
	CHECK_EQ(st.notify_skipped, 3);
	rig_fini(&r);
}

static void test_split_event_idx_kick(void)
{
	struct rig r;
	rig_init(&r, F_EVENT, 8);
	struct vhd_vq_chain ch[8];
	/* avail_event starts at 0: the first buffer asks for a kick, the second does not. */
	add_simple(&r, 1);
	CHECK(vhd_vq_need_notify(r.drv));
	add_simple(&r, 2);
	CHECK(!vhd_vq_need_notify(r.drv));
	CHECK_EQ(pop(&r, ch, 8), 2);
	CHECK(!vhd_vq_enable_notify(r.dev));
	CHECK_EQ(rd16(avail_event(&r)), 2);
	add_simple(&r, 3);
	CHECK(vhd_vq_need_notify(r.drv));
	add_simple(&r, 4); /* the device did not re-enable */
	CHECK(!vhd_vq_need_notify(r.drv));
	vhd_vq_disable_notify(r.dev);
	add_simple(&r, 5);
	CHECK(!vhd_vq_need_notify(r.drv));
	/* Work already pending: enable says so. */
	CHECK(vhd_vq_enable_notify(r.dev));
	CHECK_EQ(rd16(avail_event(&r)), 2);
	CHECK_EQ(pop(&r, ch, 8), 3);
	CHECK(!vhd_vq_enable_notify(r.dev));
	CHECK_EQ(rd16(avail_event(&r)), 5);
	/* Several buffers, one check: the window covers avail_event. */
	add_simple(&r, 6);
	add_simple(&r, 7);
	add_simple(&r, 8);
	CHECK(vhd_vq_need_notify(r.drv));
	rig_fini(&r);
}

static void test_split_event_idx_interrupt(void)
{
	struct rig r;
	rig_init(&r, F_EVENT, 8);
	struct vhd_vq_chain ch[8];
	struct vhd_vq_done d[8];
	for (uintptr_t t = 1; t <= 8; t++)
		add_simple(&r, t);
	CHECK_EQ(pop(&r, ch, 8), 8);
	/* used_event starts at 0. */
	push1(&r, &ch[0], 1);
	CHECK(vhd_vq_need_notify(r.dev));
	push1(&r, &ch[1], 1);
	CHECK(!vhd_vq_need_notify(r.dev));
	CHECK_EQ(vhd_vq_get(r.drv, d, 8), 2);
	CHECK(!vhd_vq_enable_notify(r.drv));
	CHECK_EQ(rd16(used_event(&r)), 2);
	push1(&r, &ch[2], 1);
	CHECK(vhd_vq_need_notify(r.dev));
	push1(&r, &ch[3], 1);
	CHECK(!vhd_vq_need_notify(r.dev));
	vhd_vq_disable_notify(r.drv);
	push1(&r, &ch[4], 1);
	CHECK(!vhd_vq_need_notify(r.dev));
	/* Used buffers waiting: enable says so and moves used_event to the driver's position. */
	CHECK(vhd_vq_enable_notify(r.drv));
	CHECK_EQ(rd16(used_event(&r)), 2);
	CHECK_EQ(vhd_vq_get(r.drv, d, 8), 3);
	CHECK(!vhd_vq_enable_notify(r.drv));
	CHECK_EQ(rd16(used_event(&r)), 5);
	struct vhd_vq_used u[3] = {{ch[5].id, 1, 0}, {ch[6].id, 1, 0}, {ch[7].id, 1, 0}};
	CHECK_EQ(vhd_vq_push(r.dev, u, 3), 3);
	CHECK(vhd_vq_need_notify(r.dev));
	rig_fini(&r);
}

static void test_packed_notify_kick(void)
{
	struct rig r;
	rig_init(&r, F_PACKED, 8);
	struct vhd_vq_chain ch[8];
	CHECK(!vhd_vq_need_notify(r.drv));
	add_simple(&r, 1);
	CHECK(vhd_vq_need_notify(r.drv));
	CHECK(!vhd_vq_need_notify(r.drv));
	add_simple(&r, 2);
	CHECK(vhd_vq_need_notify(r.drv)); /* no EVENT_IDX: every burst */
	vhd_vq_disable_notify(r.dev);
	CHECK_EQ(rd16(&r.pdev->flags), VIRTQ_EVENT_F_DISABLE);
	add_simple(&r, 3);
	CHECK(!vhd_vq_need_notify(r.drv));
	CHECK(vhd_vq_enable_notify(r.dev));
	CHECK_EQ(rd16(&r.pdev->flags), VIRTQ_EVENT_F_ENABLE);
	CHECK_EQ(pop(&r, ch, 8), 3);
	CHECK(!vhd_vq_enable_notify(r.dev));
	add_simple(&r, 4);
	CHECK(vhd_vq_need_notify(r.drv));
	rig_fini(&r);
}

static void test_packed_notify_interrupt(void)
{
	struct rig r;
	rig_init(&r, F_PACKED, 8);
	struct vhd_vq_chain ch[8];
	struct vhd_vq_done d[8];
	for (uintptr_t t = 1; t <= 5; t++)
		add_simple(&r, t);
	CHECK_EQ(pop(&r, ch, 8), 5);
	CHECK(!vhd_vq_need_notify(r.dev));
	push1(&r, &ch[0], 1);
	CHECK(vhd_vq_need_notify(r.dev));
	CHECK(!vhd_vq_need_notify(r.dev));
	push1(&r, &ch[1], 1);
	CHECK(vhd_vq_need_notify(r.dev));
	vhd_vq_disable_notify(r.drv);
	CHECK_EQ(rd16(&r.pdrv->flags), VIRTQ_EVENT_F_DISABLE);
	push1(&r, &ch[2], 1);
	CHECK(!vhd_vq_need_notify(r.dev));
	CHECK(vhd_vq_enable_notify(r.drv));
	CHECK_EQ(rd16(&r.pdrv->flags), VIRTQ_EVENT_F_ENABLE);
	CHECK_EQ(vhd_vq_get(r.drv, d, 8), 3);
	CHECK(!vhd_vq_enable_notify(r.drv));
	push1(&r, &ch[3], 1);
	CHECK(vhd_vq_need_notify(r.dev));
	rig_fini(&r);
}

static void test_packed_event_idx_kick(void)
{
	struct rig r;
	rig_init(&r, F_PACKED | F_EVENT, 8);
	struct vhd_vq_chain ch[8];
	/* The device area starts as ENABLE (0): every burst kicks until the device asks for a descriptor. */
	add_simple(&r, 1);
	CHECK(vhd_vq_need_notify(r.drv));
	add_simple(&r, 2);
	CHECK(vhd_vq_need_notify(r.drv));
	CHECK_EQ(pop(&r, ch, 8), 2);
	CHECK(!vhd_vq_enable_notify(r.dev));
	CHECK_EQ(rd16(&r.pdev->flags), VIRTQ_EVENT_F_DESC);
	CHECK_EQ(rd16(&r.pdev->off_wrap), 2 | 0x8000);
	add_simple(&r, 3);
	CHECK(vhd_vq_need_notify(r.drv));
	add_simple(&r, 4);
	CHECK(!vhd_vq_need_notify(r.drv));
	vhd_vq_disable_notify(r.dev);
	CHECK_EQ(rd16(&r.pdev->flags), VIRTQ_EVENT_F_DISABLE);
	add_simple(&r, 5);
	CHECK(!vhd_vq_need_notify(r.drv));
	CHECK(vhd_vq_enable_notify(r.dev)); /* three waiting */
	CHECK_EQ(rd16(&r.pdev->off_wrap), 2 | 0x8000);
	add_simple(&r, 6);
	CHECK(!vhd_vq_need_notify(r.drv)); /* slot 5 is past the event slot 2 */
	CHECK_EQ(pop(&r, ch, 8), 4);
	CHECK(!vhd_vq_enable_notify(r.dev));
	CHECK_EQ(rd16(&r.pdev->off_wrap), 6 | 0x8000);
	add_simple(&r, 7);
	CHECK(vhd_vq_need_notify(r.drv));
	rig_fini(&r);
}

/* Packed EVENT_IDX across the wrap: the event slot is at the end of one lap, the chain continues into the next. */
static void test_packed_event_idx_wrap(void)
{
	struct rig r;
	rig_init(&r, F_PACKED | F_EVENT, 8);
	struct vhd_vq_chain ch[8];
	struct vhd_vq_done d[8];
	/* Move both sides to slot 6 of the first lap. */
	for (uintptr_t t = 1; t <= 6; t++)
		add_simple(&r, t);
	CHECK_EQ(pop(&r, ch, 8), 6);
	for (unsigned i = 0; i < 6; i++)
		push1(&r, &ch[i], 0);
	CHECK_EQ(vhd_vq_get(r.drv, d, 8), 6);
	CHECK_EQ(vhd_vq_base(r.dev), 6 | 0x8000);
	CHECK(!vhd_vq_enable_notify(r.dev));
	CHECK_EQ(rd16(&r.pdev->off_wrap), 6 | 0x8000);
	/* A three-slot chain at 6, 7, 0: the kick window wraps and contains the event slot. */
	struct vhd_vq_seg s3[3] = {{gpa(DATA_OFF), 8}, {gpa(DATA_OFF + 64), 8}, {gpa(DATA_OFF + 128), 8}};
	add1(&r, s3, 2, 1, 0, 1);
	CHECK_EQ(vhd_vq_base(r.drv), 1); /* position 1, wrap counter 0 */
	CHECK(vhd_vq_need_notify(r.drv));
	add_simple(&r, 2);
	CHECK(!vhd_vq_need_notify(r.drv));
	CHECK_EQ(pop(&r, ch, 8), 2);
	CHECK_EQ(ch[0].ndesc, 3);
	CHECK_EQ(vhd_vq_base(r.dev), 2);
	CHECK(!vhd_vq_enable_notify(r.dev));
	CHECK_EQ(rd16(&r.pdev->off_wrap), 2); /* slot 2 of the lap with wrap counter 0 */
	/* Event at slot 2 of this lap: a buffer at slot 2 kicks. */
	push1(&r, &ch[0], 0);
	push1(&r, &ch[1], 0);
	CHECK_EQ(vhd_vq_get(r.drv, d, 8), 2);
	add_simple(&r, 3);
	CHECK(vhd_vq_need_notify(r.drv));
	/* The device did not re-enable: no kick for slot 3. */
	add_simple(&r, 4);
	CHECK(!vhd_vq_need_notify(r.drv));
	rig_fini(&r);
}

static void test_packed_event_idx_interrupt(void)
{
	struct rig r;
	rig_init(&r, F_PACKED | F_EVENT, 8);
	struct vhd_vq_chain ch[8];
	struct vhd_vq_done d[8];
	for (uintptr_t t = 1; t <= 8; t++)
		add_simple(&r, t);
	CHECK_EQ(pop(&r, ch, 8), 8);
	/* Driver area starts ENABLE. */
	push1(&r, &ch[0], 1);
	CHECK(vhd_vq_need_notify(r.dev));
	push1(&r, &ch[1], 1);
	CHECK(vhd_vq_need_notify(r.dev));
	CHECK_EQ(vhd_vq_get(r.drv, d, 8), 2);
	CHECK(!vhd_vq_enable_notify(r.drv));
	CHECK_EQ(rd16(&r.pdrv->flags), VIRTQ_EVENT_F_DESC);
	CHECK_EQ(rd16(&r.pdrv->off_wrap), 2 | 0x8000);
	push1(&r, &ch[2], 1);
	CHECK(vhd_vq_need_notify(r.dev));
	push1(&r, &ch[3], 1);
	CHECK(!vhd_vq_need_notify(r.dev)); /* the driver did not re-enable */
	vhd_vq_disable_notify(r.drv);
	CHECK_EQ(rd16(&r.pdrv->flags), VIRTQ_EVENT_F_DISABLE);
	push1(&r, &ch[4], 1);
	CHECK(!vhd_vq_need_notify(r.dev));
	CHECK(vhd_vq_enable_notify(r.drv)); /* three used, not collected */
	CHECK_EQ(rd16(&r.pdrv->off_wrap), 2 | 0x8000);
	CHECK_EQ(vhd_vq_get(r.drv, d, 8), 3);
	CHECK(!vhd_vq_enable_notify(r.drv));
	CHECK_EQ(rd16(&r.pdrv->off_wrap), 5 | 0x8000);
	struct vhd_vq_used u[3] = {{ch[5].id, 1, 0}, {ch[6].id, 1, 0}, {ch[7].id, 1, 0}};
	CHECK_EQ(vhd_vq_push(r.dev, u, 3), 3);
	CHECK(vhd_vq_need_notify(r.dev));
	CHECK_EQ(vhd_vq_get(r.drv, d, 8), 3);
	/* Now at slot 0 of the next lap (wrap 0). */
	CHECK(!vhd_vq_enable_notify(r.drv));
	CHECK_EQ(rd16(&r.pdrv->off_wrap), 0);
	add_simple(&r, 1);
	CHECK_EQ(pop(&r, ch, 8), 1);
	push1(&r, &ch[0], 0);
	CHECK(vhd_vq_need_notify(r.dev));
	rig_fini(&r);
}

/*
 * EVENT_IDX, the peer already caught up: the driver published a buffer but had not asked about a kick yet when the
 * device consumed it and re-armed at the next slot. The event lies just past what was published: no kick. The same
 * holds for interrupts when the driver re-arms past everything the device pushed.
 */
static void event_idx_caught_up(uint64_t feat)
{
	struct rig r;
	rig_init(&r, feat | F_EVENT, 8);
	struct vhd_vq_chain ch[8];
	struct vhd_vq_done d[8];
	/* Arm both sides at slot 0 first so the initial ENABLE state (packed) does not decide the answers. */
	CHECK(!vhd_vq_enable_notify(r.dev));
	CHECK(!vhd_vq_enable_notify(r.drv));
	add_simple(&r, 1);
	CHECK_EQ(pop(&r, ch, 8), 1);
	CHECK(!vhd_vq_enable_notify(r.dev)); /* armed at slot 1 */
	CHECK(!vhd_vq_need_notify(r.drv));   /* published slot 0 only */
	add_simple(&r, 2);
	CHECK(vhd_vq_need_notify(r.drv)); /* slot 1 */

	push1(&r, &ch[0], 0);
	CHECK_EQ(vhd_vq_get(r.drv, d, 8), 1);
	CHECK(!vhd_vq_enable_notify(r.drv)); /* armed at used slot 1 */
	CHECK(!vhd_vq_need_notify(r.dev));   /* pushed used slot 0 only */
	CHECK_EQ(pop(&r, ch, 8), 1);
	push1(&r, &ch[0], 0);
	CHECK(vhd_vq_need_notify(r.dev)); /* used slot 1 */
	rig_fini(&r);
}

static void test_split_event_idx_caught_up(void) { event_idx_caught_up(0); }
static void test_packed_event_idx_caught_up(void) { event_idx_caught_up(F_PACKED); }

/* ================================================================ hostile driver (device side) ================================================================ */

/* A valid data buffer for raw descriptors. */
#define DA gpa(DATA_OFF)

static void test_split_err_avail_idx(void)
{
	struct rig r;
	rig_init(&r, 0, 8);
	wdesc(&r.sd[0], DA, 16, 0, 0);
	r.sa->idx = vhd_cpu_to_le16(9); /* nine new entries in a ring of eight */
	expect_pop_error(&r, VHD_VQ_E_AVAIL_IDX);
	rig_fini(&r);
}

static void test_split_err_head(void)
{
	struct rig r;
	rig_init(&r, 0, 8);
	s_publish(&r, 8);
	expect_pop_error(&r, VHD_VQ_E_HEAD);
	rig_fini(&r);
}

static void test_split_err_next(void)
{
	struct rig r;
	rig_init(&r, 0, 8);
	wdesc(&r.sd[0], DA, 16, VIRTQ_DESC_F_NEXT, 8);
	s_publish(&r, 0);
	expect_pop_error(&r, VHD_VQ_E_NEXT);
	rig_fini(&r);
}

static void test_split_err_next_indirect(void)
{
	struct rig r;
	rig_init(&r, F_INDIRECT, 8);
	struct virtq_desc *t = raw_table(&r);
	wdesc(&t[0], DA, 16, VIRTQ_DESC_F_NEXT, 1);
	wdesc(&t[1], DA, 16, VIRTQ_DESC_F_NEXT, 2); /* table has 2 entries */
	put_indirect_head(&r, 0, gpa(TBL_OFF), 32, 0);
	expect_pop_error(&r, VHD_VQ_E_NEXT);
	rig_fini(&r);
}

static void test_split_err_loop(void)
{
	struct rig r;
	rig_init(&r, 0, 8);
	wdesc(&r.sd[0], DA, 16, VIRTQ_DESC_F_NEXT, 1);
	wdesc(&r.sd[1], DA, 16, VIRTQ_DESC_F_NEXT, 2);
	wdesc(&r.sd[2], DA, 16, VIRTQ_DESC_F_NEXT, 1);
	s_publish(&r, 0);
	expect_pop_error(&r, VHD_VQ_E_LOOP);
	rig_fini(&r);
}

static void test_split_err_loop_self(void)
{
	struct rig r;
	rig_init(&r, 0, 8);
	wdesc(&r.sd[3], DA, 0, VIRTQ_DESC_F_NEXT, 3);
	s_publish(&r, 3);
	expect_pop_error(&r, VHD_VQ_E_LOOP);
	rig_fini(&r);
}

static void test_split_err_loop_indirect(void)
{
	struct rig r;
	rig_init(&r, F_INDIRECT, 8);
	struct virtq_desc *t = raw_table(&r);
	wdesc(&t[0], DA, 16, VIRTQ_DESC_F_NEXT, 1);
	wdesc(&t[1], DA, 16, VIRTQ_DESC_F_NEXT, 2);
	wdesc(&t[2], DA, 16, VIRTQ_DESC_F_NEXT, 0);
	put_indirect_head(&r, 0, gpa(TBL_OFF), 48, 0);
	expect_pop_error(&r, VHD_VQ_E_LOOP);
	rig_fini(&r);
}

static void chain_len_indirect(uint64_t feat)
{
	struct rig r;
	rig_init(&r, feat | F_INDIRECT, 8);
	/* Nine entries in a queue of eight; each one valid on its own. */
	for (unsigned j = 0; j < 9; j++)
		put_entry(&r, host(&r, TBL_OFF), j, 9, DA, 4, false);
	put_indirect_head(&r, 0, gpa(TBL_OFF), 9 * 16, 0);
	expect_pop_error(&r, VHD_VQ_E_CHAIN_LEN);
	rig_fini(&r);
}

static void test_split_err_chain_len_indirect(void) { chain_len_indirect(0); }
static void test_packed_err_chain_len_indirect(void) { chain_len_indirect(F_PACKED); }

/* Direct descriptors before the indirect one count towards the queue-size limit too. */
static void test_split_err_chain_len_direct_plus_indirect(void)
{
	struct rig r;
	rig_init(&r, F_INDIRECT, 8);
	for (unsigned j = 0; j < 6; j++)
		put_entry(&r, host(&r, TBL_OFF), j, 6, DA, 4, false);
	wdesc(&r.sd[0], DA, 4, VIRTQ_DESC_F_NEXT, 1);
	wdesc(&r.sd[1], DA, 4, VIRTQ_DESC_F_NEXT, 2);
	wdesc(&r.sd[2], DA, 4, VIRTQ_DESC_F_NEXT, 3);
	wdesc(&r.sd[3], gpa(TBL_OFF), 6 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	s_publish(&r, 0);
	expect_pop_error(&r, VHD_VQ_E_CHAIN_LEN);
	rig_fini(&r);
}

static void test_packed_err_chain_len_next_everywhere(void)
{
	struct rig r;
	rig_init(&r, F_PACKED, 8);
	for (unsigned i = 0; i < 8; i++)
		wpdesc(&r.pd[i], DA, 4, 0, P_AVAIL | VIRTQ_DESC_F_NEXT);
	expect_pop_error(&r, VHD_VQ_E_CHAIN_LEN);
	rig_fini(&r);
}

static void indirect_nest(uint64_t feat)
{
	struct rig r;
	rig_init(&r, feat | F_INDIRECT, 8);
	put_entry(&r, host(&r, TBL_OFF), 0, 2, DA, 16, false);
	put_entry(&r, host(&r, TBL_OFF), 1, 2, gpa(TBL_OFF + 1024), 32, false);
	uint8_t *e1 = host(&r, TBL_OFF + 16 + 12); /* flags field of entry 1 */
	uint16_t f;
	memcpy(&f, r.packed ? e1 + 2 : e1, 2);
	f = vhd_cpu_to_le16((uint16_t)(vhd_le16(f) | VIRTQ_DESC_F_INDIRECT));
	memcpy(r.packed ? e1 + 2 : e1, &f, 2);
	put_indirect_head(&r, 0, gpa(TBL_OFF), 32, 0);
	expect_pop_error(&r, VHD_VQ_E_INDIRECT_NEST);
	rig_fini(&r);
}

static void test_split_err_indirect_nest(void) { indirect_nest(0); }
static void test_packed_err_indirect_nest(void) { indirect_nest(F_PACKED); }

static void indirect_len(uint64_t feat, uint32_t len)
{
	struct rig r;
	rig_init(&r, feat | F_INDIRECT, 8);
	for (unsigned j = 0; j < 2; j++)
		put_entry(&r, host(&r, TBL_OFF), j, 2, DA, 16, false);
	put_indirect_head(&r, 0, gpa(TBL_OFF), len, 0);
	expect_pop_error(&r, VHD_VQ_E_INDIRECT_LEN);
	rig_fini(&r);
}

static void test_split_err_indirect_len0(void) { indirect_len(0, 0); }
static void test_split_err_indirect_len24(void) { indirect_len(0, 24); }
static void test_packed_err_indirect_len0(void) { indirect_len(F_PACKED, 0); }
static void test_packed_err_indirect_len24(void) { indirect_len(F_PACKED, 24); }

static void test_split_err_indirect_flags_next(void)
{
	struct rig r;
	rig_init(&r, F_INDIRECT, 8);
	put_entry(&r, host(&r, TBL_OFF), 0, 1, DA, 16, false);
	wdesc(&r.sd[0], gpa(TBL_OFF), 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	wdesc(&r.sd[1], DA, 16, 0, 0);
	s_publish(&r, 0);
	expect_pop_error(&r, VHD_VQ_E_INDIRECT_FLAGS);
	rig_fini(&r);
}

static void test_packed_err_indirect_flags_next(void)
{
	struct rig r;
	rig_init(&r, F_PACKED | F_INDIRECT, 8);
	put_entry(&r, host(&r, TBL_OFF), 0, 1, DA, 16, false);
	wpdesc(&r.pd[1], DA, 16, 0, P_AVAIL);
	wpdesc(&r.pd[0], gpa(TBL_OFF), 16, 0, P_AVAIL | VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT);
	expect_pop_error(&r, VHD_VQ_E_INDIRECT_FLAGS);
	rig_fini(&r);
}

/* The driver uses INDIRECT although the device never offered it (driver queue built with it, device without). */
static void indirect_unnegotiated(uint64_t feat)
{
	struct rig r;
	rig_init_ex(&r, feat | F_INDIRECT, feat, 8, false);
	struct vhd_vq_seg segs[2] = {{DA, 16}, {DA + 64, 16}};
	add1(&r, segs, 1, 1, VHD_VQ_BUF_INDIRECT, 1);
	expect_pop_error(&r, VHD_VQ_E_INDIRECT_FLAGS);
	rig_fini(&r);
}

static void test_split_err_indirect_unnegotiated(void) { indirect_unnegotiated(0); }
static void test_packed_err_indirect_unnegotiated(void) { indirect_unnegotiated(F_PACKED); }

/* One raw descriptor with the given buffer, as a one-element chain. */
static void put_single(struct rig *r, uint64_t addr, uint32_t len, uint16_t flags)
{
	if (r->packed) {
		wpdesc(&r->pd[0], addr, len, 0, (uint16_t)(P_AVAIL | flags));
	} else {
		wdesc(&r->sd[0], addr, len, flags, 0);
		s_publish(r, 0);
	}
}

static void addr_case(uint64_t feat, uint64_t addr, uint32_t len, enum vhd_vq_error e)
{
	struct rig r;
	rig_init(&r, feat, 8);
	put_single(&r, addr, len, VIRTQ_DESC_F_WRITE);
	expect_pop_error(&r, e);
	rig_fini(&r);
}

static void test_split_err_addr_outside(void) { addr_case(0, 0x1000, 16, VHD_VQ_E_ADDR); }
static void test_packed_err_addr_outside(void) { addr_case(F_PACKED, GPA + 2 * BLOCK, 16, VHD_VQ_E_ADDR); }
static void test_split_err_addr_past_end(void) { addr_case(0, GPA + BLOCK - 16, 17, VHD_VQ_E_ADDR); }
static void test_packed_err_addr_past_end(void) { addr_case(F_PACKED, GPA + BLOCK - 8, 4096, VHD_VQ_E_ADDR); }
static void test_split_err_addr_before_start(void) { addr_case(0, GPA - 1, 2, VHD_VQ_E_ADDR); }
static void test_split_err_overflow(void) { addr_case(0, UINT64_MAX - 8, 64, VHD_VQ_E_OVERFLOW); }
static void test_packed_err_overflow(void) { addr_case(F_PACKED, UINT64_MAX - 8, 64, VHD_VQ_E_OVERFLOW); }

/* An indirect table that is not wholly in guest memory. */
static void indirect_addr(uint64_t feat, uint64_t taddr, enum vhd_vq_error e)
{
	struct rig r;
	rig_init(&r, feat | F_INDIRECT, 8);
	put_indirect_head(&r, 0, taddr, 32, 0);
	expect_pop_error(&r, e);
	rig_fini(&r);
}

static void test_split_err_addr_indirect_table(void) { indirect_addr(0, GPA + BLOCK - 16, VHD_VQ_E_ADDR); }
static void test_packed_err_addr_indirect_table(void) { indirect_addr(F_PACKED, 0x10, VHD_VQ_E_ADDR); }
static void test_split_err_overflow_indirect_table(void) { indirect_addr(0, UINT64_MAX - 15, VHD_VQ_E_OVERFLOW); }

/* A chain whose lengths add up past 4 GiB, over a region of more than 4 GiB of reserved address space. */
static void chain_over_4g(uint64_t feat)
{
	const size_t big = (1ull << 32) + 4096;
	void *res = mmap(NULL, big, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (res == MAP_FAILED)
		th_skip("cannot reserve 4 GiB of address space");
	struct rig r;
	rig_init(&r, feat, 8);
	struct vhd_mem_region_info ri = {.guest_addr = 0x100000000ull, .size = big, .user_addr = 0, .host = res};
	CHECK_EQ(vhd_mem_add(r.vm, &ri), 0);
	if (r.packed) {
		wpdesc(&r.pd[1], 0x100000000ull, 16, 0, P_AVAIL | VIRTQ_DESC_F_WRITE);
		wpdesc(&r.pd[0], 0x100000000ull, UINT32_MAX, 0, P_AVAIL | VIRTQ_DESC_F_NEXT);
	} else {
		wdesc(&r.sd[0], 0x100000000ull, UINT32_MAX, VIRTQ_DESC_F_NEXT, 1);
		wdesc(&r.sd[1], 0x100000000ull, 16, VIRTQ_DESC_F_WRITE, 0);
		s_publish(&r, 0);
	}
	expect_pop_error(&r, VHD_VQ_E_OVERFLOW);
	rig_fini(&r);
	munmap(res, big);
}

static void test_split_err_overflow_chain_4g(void) { chain_over_4g(0); }
static void test_packed_err_overflow_chain_4g(void) { chain_over_4g(F_PACKED); }

static void test_split_err_order(void)
{
	struct rig r;
	rig_init(&r, 0, 8);
	wdesc(&r.sd[0], DA, 16, VIRTQ_DESC_F_NEXT, 1);
	wdesc(&r.sd[1], DA + 64, 16, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	wdesc(&r.sd[2], DA + 128, 16, 0, 0);
	s_publish(&r, 0);
	expect_pop_error(&r, VHD_VQ_E_ORDER);
	rig_fini(&r);
}

/* Even an empty writable descriptor ends the readable part. */
static void test_split_err_order_after_empty_write(void)
{
	struct rig r;
	rig_init(&r, 0, 8);
	wdesc(&r.sd[0], DA, 0, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	wdesc(&r.sd[1], DA, 16, 0, 0);
	s_publish(&r, 0);
	expect_pop_error(&r, VHD_VQ_E_ORDER);
	rig_fini(&r);
}

static void test_packed_err_order(void)
{
	struct rig r;
	rig_init(&r, F_PACKED, 8);
	wpdesc(&r.pd[1], DA + 64, 16, 0, P_AVAIL);
	wpdesc(&r.pd[0], DA, 16, 0, P_AVAIL | VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE);
	expect_pop_error(&r, VHD_VQ_E_ORDER);
	rig_fini(&r);
}

static void order_indirect(uint64_t feat)
{
	struct rig r;
	rig_init(&r, feat | F_INDIRECT, 8);
	put_entry(&r, host(&r, TBL_OFF), 0, 2, DA, 16, true);
	put_entry(&r, host(&r, TBL_OFF), 1, 2, DA + 64, 16, false);
	put_indirect_head(&r, 0, gpa(TBL_OFF), 32, 0);
	expect_pop_error(&r, VHD_VQ_E_ORDER);
	rig_fini(&r);
}

static void test_split_err_order_indirect(void) { order_indirect(0); }
static void test_packed_err_order_indirect(void) { order_indirect(F_PACKED); }

static void test_packed_err_flags_head_used(void)
{
	struct rig r;
	rig_init(&r, F_PACKED, 8);
	wpdesc(&r.pd[0], DA, 16, 0, P_USED); /* used in the current lap, at the avail position */
	expect_pop_error(&r, VHD_VQ_E_PACKED_FLAGS);
	rig_fini(&r);
}

static void test_packed_err_flags_chain_unavailable(void)
{
	struct rig r;
	rig_init(&r, F_PACKED, 8);
	wpdesc(&r.pd[1], DA + 64, 16, 0, 0); /* not made available */
	wpdesc(&r.pd[0], DA, 16, 0, P_AVAIL | VIRTQ_DESC_F_NEXT);
	expect_pop_error(&r, VHD_VQ_E_PACKED_FLAGS);
	rig_fini(&r);
}

static void test_packed_err_flags_chain_wrong_lap(void)
{
	struct rig r;
	rig_init(&r, F_PACKED, 8);
	wpdesc(&r.pd[1], DA + 64, 16, 0, VIRTQ_DESC_F_USED); /* available for the next lap, not this one */
	wpdesc(&r.pd[0], DA, 16, 0, P_AVAIL | VIRTQ_DESC_F_NEXT);
	expect_pop_error(&r, VHD_VQ_E_PACKED_FLAGS);
	rig_fini(&r);
}

/*
 * The part of a chain that no longer fits in the caller's iov[] is still checked: a bad address there breaks the
 * queue rather than coming back as an -ENOBUFS chain (the same chain breaks it with a larger iov[]).
 */
static void bad_addr_after_iov_full(uint64_t feat, uint64_t bad, enum vhd_vq_error e)
{
	struct rig r;
	rig_init(&r, feat, 8);
	/* Five good descriptors (the fifth finds iov[] full), then one outside memory. */
	for (unsigned i = 0; i < 6; i++) {
		uint64_t addr = i < 5 ? DA + i * 64 : bad;
		uint16_t more = i < 5 ? VIRTQ_DESC_F_NEXT : 0;
		if (r.packed)
			wpdesc(&r.pd[i], addr, 16, 0, (uint16_t)(P_AVAIL | more));
		else
			wdesc(&r.sd[i], addr, 16, more, (uint16_t)(i + 1));
	}
	if (!r.packed)
		s_publish(&r, 0);
	check_healthy(r.dev);
	int before = g_log.n_err;
	struct vhd_vq_chain ch[2];
	struct iovec iov[4];
	CHECK_EQ(vhd_vq_pop(r.dev, ch, 2, iov, 4), -EIO);
	check_error(r.dev, e, before);
	rig_fini(&r);
}

static void test_split_err_addr_after_iov_full(void) { bad_addr_after_iov_full(0, GPA + 2 * BLOCK, VHD_VQ_E_ADDR); }
static void test_packed_err_addr_after_iov_full(void)
{
	bad_addr_after_iov_full(F_PACKED, GPA + 2 * BLOCK, VHD_VQ_E_ADDR);
}
static void test_split_err_overflow_after_iov_full(void)
{
	bad_addr_after_iov_full(0, UINT64_MAX - 8, VHD_VQ_E_OVERFLOW);
}
static void test_packed_err_overflow_after_iov_full(void)
{
	bad_addr_after_iov_full(F_PACKED, UINT64_MAX - 8, VHD_VQ_E_OVERFLOW);
}

/* One descriptor crossing into the second region and on past its end, with room for one segment only. */
static void bad_addr_translate_short(uint64_t feat)
{
	struct rig r;
	rig_init_ex(&r, feat, feat, 8, true);
	put_single(&r, GPA + BLOCK - 16, 16 + BLOCK2 + 16, 0);
	check_healthy(r.dev);
	int before = g_log.n_err;
	struct vhd_vq_chain ch[2];
	struct iovec iov[1];
	CHECK_EQ(vhd_vq_pop(r.dev, ch, 2, iov, 1), -EIO);
	check_error(r.dev, VHD_VQ_E_ADDR, before);
	rig_fini(&r);
}

static void test_split_err_addr_translate_short(void) { bad_addr_translate_short(0); }
static void test_packed_err_addr_translate_short(void) { bad_addr_translate_short(F_PACKED); }

/* A hostile chain in the second chain of a burst still breaks the queue. */
static void test_split_err_in_second_chain(void)
{
	struct rig r;
	rig_init(&r, 0, 8);
	wdesc(&r.sd[0], DA, 16, 0, 0);
	wdesc(&r.sd[1], DA, 16, VIRTQ_DESC_F_NEXT, 9);
	s_publish(&r, 0);
	s_publish(&r, 1);
	expect_pop_error(&r, VHD_VQ_E_NEXT);
	rig_fini(&r);
}

/* ================================================================ hostile device (driver side) ================================================================ */

static void test_split_err_used_idx(void)
{
	struct rig r;
	rig_init(&r, 0, 8);
	add_simple(&r, 1);
	r.su->ring[0].id = vhd_cpu_to_le32(0);
	r.su->idx = vhd_cpu_to_le16(2); /* two used with one in flight */
	expect_get_error(&r, VHD_VQ_E_USED_IDX);
	rig_fini(&r);
}

/* IN_ORDER: one entry naming the third buffer covers three, but the index moved by one. */
static void test_split_err_used_idx_in_order(void)
{
	struct rig r;
	rig_init(&r, F_IN_ORDER, 8);
	for (uintptr_t t = 1; t <= 3; t++)
		add_simple(&r, t);
	r.su->ring[0].id = vhd_cpu_to_le32(2);
	r.su->idx = vhd_cpu_to_le16(1);
	expect_get_error(&r, VHD_VQ_E_USED_IDX);
	rig_fini(&r);
}

static void split_used_id(uint32_t id)
{
	struct rig r;
	rig_init(&r, 0, 8);
	add_simple(&r, 1);
	add_simple(&r, 2);
	r.su->ring[0].id = vhd_cpu_to_le32(id);
	r.su->idx = vhd_cpu_to_le16(1);
	expect_get_error(&r, VHD_VQ_E_USED_ID);
	rig_fini(&r);
}

static void test_split_err_used_id_range(void) { split_used_id(8); }
static void test_split_err_used_id_huge(void) { split_used_id(0x10000); }
static void test_split_err_used_id_not_inflight(void) { split_used_id(5); }

/* The same id twice: the second time it is no longer in flight. */
static void test_split_err_used_id_twice(void)
{
	struct rig r;
	rig_init(&r, 0, 8);
	add_simple(&r, 1);
	add_simple(&r, 2);
	r.su->ring[0].id = vhd_cpu_to_le32(0);
	r.su->ring[1].id = vhd_cpu_to_le32(0);
	r.su->idx = vhd_cpu_to_le16(2);
	struct vhd_vq_done d[1];
	CHECK_EQ(vhd_vq_get(r.drv, d, 1), 1);
	CHECK(d[0].token == (void *)1);
	expect_get_error(&r, VHD_VQ_E_USED_ID);
	rig_fini(&r);
}

static void test_split_err_used_len(void)
{
	struct rig r;
	rig_init(&r, 0, 8);
	add_simple(&r, 1); /* 64 writable bytes */
	r.su->ring[0].id = vhd_cpu_to_le32(0);
	r.su->ring[0].len = vhd_cpu_to_le32(65);
	r.su->idx = vhd_cpu_to_le16(1);
	expect_get_error(&r, VHD_VQ_E_USED_LEN);
	rig_fini(&r);
}

static void test_split_err_used_len_readonly(void)
{
	struct rig r;
	rig_init(&r, 0, 8);
	struct vhd_vq_seg s = {DA, 64};
	add1(&r, &s, 1, 0, 0, 1); /* nothing writable */
	r.su->ring[0].id = vhd_cpu_to_le32(0);
	r.su->ring[0].len = vhd_cpu_to_le32(1);
	r.su->idx = vhd_cpu_to_le16(1);
	expect_get_error(&r, VHD_VQ_E_USED_LEN);
	rig_fini(&r);
}

static void packed_used(uint64_t feat, uint16_t id, uint32_t len, enum vhd_vq_error e)
{
	struct rig r;
	rig_init(&r, F_PACKED | feat, 8);
	add_simple(&r, 1); /* buffer id 0 at slot 0 */
	add_simple(&r, 2); /* buffer id 1 at slot 1 */
	wpdesc(&r.pd[0], 0, len, id, P_USED);
	expect_get_error(&r, e);
	rig_fini(&r);
}

static void test_packed_err_used_id_range(void) { packed_used(0, 8, 0, VHD_VQ_E_USED_ID); }
static void test_packed_err_used_id_not_inflight(void) { packed_used(0, 4, 0, VHD_VQ_E_USED_ID); }
static void test_packed_err_used_id_in_order(void) { packed_used(F_IN_ORDER, 4, 0, VHD_VQ_E_USED_ID); }
static void test_packed_err_used_len(void)
{
	struct rig r;
	rig_init(&r, F_PACKED, 8);
	add_simple(&r, 1);
	add_simple(&r, 2);
	wpdesc(&r.pd[0], 0, 65, 1, P_USED | VIRTQ_DESC_F_WRITE); /* more written than the buffer can take */
	expect_get_error(&r, VHD_VQ_E_USED_LEN);
	rig_fini(&r);
}

/* Without WRITE a used descriptor's len is reserved (2.8.4): DPDK's vhost leaves the driver's own TX length
 * there. It reads as 0 and breaks nothing. */
static void test_packed_used_len_reserved_without_write(void)
{
	struct rig r;
	rig_init(&r, F_PACKED, 8);
	add_simple(&r, 1);
	add_simple(&r, 2);
	wpdesc(&r.pd[0], 0, 72, 1, P_USED);
	struct vhd_vq_done d[2];
	CHECK_EQ(vhd_vq_get(r.drv, d, 2), 1);
	CHECK_EQ(d[0].len, 0u);
	check_healthy(r.drv);
	rig_fini(&r);
}

/*
 * A bad used entry after good ones in the same burst: the buffers collected before it are returned (their slots
 * are free, so nothing else would ever hand them back), the queue is broken, and the rest stay reclaimable.
 */
static void bad_entry_mid_burst(uint64_t feat)
{
	struct rig r;
	rig_init(&r, feat, 8);
	for (uintptr_t t = 1; t <= 3; t++)
		add_simple(&r, t);
	if (r.packed) {
		wpdesc(&r.pd[0], 0, 10, 0, P_USED | VIRTQ_DESC_F_WRITE);
		wpdesc(&r.pd[1], 0, 0, 7, P_USED); /* id 7 was never posted */
	} else {
		r.su->ring[0].id = vhd_cpu_to_le32(0);
		r.su->ring[0].len = vhd_cpu_to_le32(10);
		r.su->ring[1].id = vhd_cpu_to_le32(7);
		r.su->idx = vhd_cpu_to_le16(2);
	}
	int before = g_log.n_err;
	struct vhd_vq_done d[4];
	CHECK_EQ(vhd_vq_get(r.drv, d, 4), 1);
	CHECK(d[0].token == (void *)1);
	CHECK_EQ(d[0].len, 10);
	check_error(r.drv, VHD_VQ_E_USED_ID, before);
	CHECK_EQ(vhd_vq_get(r.drv, d, 4), -EIO);
	CHECK_EQ(vhd_vq_inflight(r.drv), 2);
	CHECK_EQ(vhd_vq_reclaim(r.drv, d, 4), 2);
	CHECK((d[0].token == (void *)2 && d[1].token == (void *)3) || (d[0].token == (void *)3 && d[1].token == (void *)2));
	CHECK_EQ(vhd_vq_inflight(r.drv), 0);
	CHECK_EQ(g_log.n_err, before + 1); /* logged once */
	rig_fini(&r);
}

static void test_split_err_used_mid_burst(void) { bad_entry_mid_burst(0); }
static void test_packed_err_used_mid_burst(void) { bad_entry_mid_burst(F_PACKED); }
static void test_split_err_used_mid_burst_in_order(void) { bad_entry_mid_burst(F_IN_ORDER); }

/*
 * Packed: the slot at the used position was posted in this lap, so it holds AVAIL == wrap, USED != wrap until
 * the device marks it used (both == wrap). The other two combinations are a device lying about the lap; they
 * used to read as "nothing used yet", a queue that stalled silently.
 */
static void packed_flags_lie(uint16_t flags, unsigned laps)
{
	struct rig r;
	rig_init(&r, F_PACKED, 4);
	/* Whole laps through the device first, so that the lie can be tested with wrap counter 0 too. */
	for (unsigned i = 0; i < laps * 4; i++) {
		add_simple(&r, 1);
		struct vhd_vq_chain ch[1];
		CHECK_EQ(pop(&r, ch, 1), 1);
		push1(&r, &ch[0], 0);
		struct vhd_vq_done d[1];
		CHECK_EQ(vhd_vq_get(r.drv, d, 1), 1);
	}
	bool w = (laps & 1) == 0;
	CHECK_EQ(vhd_vq_used_base(r.drv) >> 15, w);
	add_simple(&r, 1);
	add_simple(&r, 2);
	uint16_t avail = w ? VIRTQ_DESC_F_AVAIL : 0, used = w ? VIRTQ_DESC_F_USED : 0;
	/* What we posted reads as "not yet": no error. */
	CHECK_EQ(rd16(&r.pd[0].flags), (uint16_t)(avail | (used ^ VIRTQ_DESC_F_USED) | VIRTQ_DESC_F_WRITE));
	struct vhd_vq_done d[2];
	CHECK_EQ(vhd_vq_get(r.drv, d, 2), 0);
	check_healthy(r.drv);
	r.pd[0].flags = vhd_cpu_to_le16(flags);
	r.pd[0].id = vhd_cpu_to_le16(0);
	expect_get_error(&r, VHD_VQ_E_PACKED_FLAGS);
	CHECK(strstr(vhd_vq_error_detail(r.drv), "wrap counter") != NULL);
	CHECK_EQ(vhd_vq_reclaim(r.drv, d, 2), 2);
	rig_fini(&r);
}

/* Lap 1 (wrap counter 1): used in lap 0 (both bits clear), or USED without AVAIL. */
static void test_packed_err_flags_wrong_lap(void) { packed_flags_lie(0, 0); }
static void test_packed_err_flags_used_only(void) { packed_flags_lie(VIRTQ_DESC_F_USED, 0); }
/* Lap 2 (wrap counter 0): "used" with both bits set is the previous lap's mark. */
static void test_packed_err_flags_wrong_lap_wrap0(void) { packed_flags_lie(P_USED, 1); }
static void test_packed_err_flags_avail_only_wrap0(void) { packed_flags_lie(VIRTQ_DESC_F_AVAIL, 1); }

/*
 * IN_ORDER, both layouts: a used entry naming a buffer further on completes everything before it (a batch, the
 * len going to the last); the batched ones come back with len 0 and no more than were published.
 */
static void in_order_skip_ahead(uint64_t feat)
{
	struct rig r;
	rig_init(&r, F_IN_ORDER | feat, 8);
	for (uintptr_t t = 1; t <= 4; t++)
		add_simple(&r, t);
	if (r.packed) {
		wpdesc(&r.pd[0], 0, 20, 2, P_USED | VIRTQ_DESC_F_WRITE); /* buffer id 2: the third */
	} else {
		r.su->ring[0].id = vhd_cpu_to_le32(2);
		r.su->ring[0].len = vhd_cpu_to_le32(20);
		r.su->idx = vhd_cpu_to_le16(3);
	}
	struct vhd_vq_done d[8];
	CHECK_EQ(vhd_vq_get(r.drv, d, 2), 2);
	CHECK(d[0].token == (void *)1 && d[0].len == 0);
	CHECK(d[1].token == (void *)2 && d[1].len == 0);
	CHECK_EQ(vhd_vq_get(r.drv, d, 8), 1);
	CHECK(d[0].token == (void *)3 && d[0].len == 20);
	check_healthy(r.drv);
	/* Then a lie: an entry naming a buffer that the batch already completed. */
	if (r.packed) {
		wpdesc(&r.pd[3], 0, 0, 1, P_USED);
	} else {
		r.su->ring[3].id = vhd_cpu_to_le32(1);
		r.su->idx = vhd_cpu_to_le16(4);
	}
	expect_get_error(&r, VHD_VQ_E_USED_ID);
	CHECK_EQ(vhd_vq_reclaim(r.drv, d, 8), 1);
	CHECK(d[0].token == (void *)4);
	rig_fini(&r);
}

static void test_split_in_order_skip_ahead(void) { in_order_skip_ahead(0); }
static void test_packed_in_order_skip_ahead(void) { in_order_skip_ahead(F_PACKED); }

/* ================================================================ caller misuse ================================================================ */

static void caller_push_more(uint64_t feat)
{
	struct rig r;
	rig_init(&r, feat, 8);
	add_simple(&r, 1);
	add_simple(&r, 2);
	struct vhd_vq_chain ch[1];
	CHECK_EQ(pop(&r, ch, 1), 1);
	struct vhd_vq_used u[2] = {{ch[0].id, ch[0].ndesc, 0}, {ch[0].id, ch[0].ndesc, 0}};
	int before = g_log.n_err;
	CHECK_EQ(vhd_vq_push(r.dev, u, 2), -EINVAL);
	check_error(r.dev, VHD_VQ_E_CALLER, before);
	CHECK_EQ(vhd_vq_push(r.dev, u, 1), -EIO);
	CHECK_EQ(pop(&r, ch, 1), -EIO);
	CHECK_EQ(g_log.n_err, before + 1);
	/* Nothing was published. */
	struct vhd_vq_done d[2];
	CHECK_EQ(vhd_vq_get(r.drv, d, 2), 0);
	rig_fini(&r);
}

static void test_split_err_caller_push_more(void) { caller_push_more(0); }
static void test_packed_err_caller_push_more(void) { caller_push_more(F_PACKED); }

static void test_split_err_caller_bad_id(void)
{
	struct rig r;
	rig_init(&r, 0, 8);
	add_simple(&r, 1);
	struct vhd_vq_chain ch[1];
	CHECK_EQ(pop(&r, ch, 1), 1);
	struct vhd_vq_used u = {8, 1, 0};
	int before = g_log.n_err;
	CHECK_EQ(vhd_vq_push(r.dev, &u, 1), -EINVAL);
	check_error(r.dev, VHD_VQ_E_CALLER, before);
	CHECK_EQ(vhd_vq_push(r.dev, &u, 1), -EIO);
	CHECK_EQ(g_log.n_err, before + 1);
	rig_fini(&r);
}

static void test_packed_err_caller_bad_ndesc(void)
{
	struct rig r;
	rig_init(&r, F_PACKED, 8);
	add_simple(&r, 1);
	struct vhd_vq_chain ch[1];
	CHECK_EQ(pop(&r, ch, 1), 1);
	struct vhd_vq_used u = {ch[0].id, 0, 0};
	int before = g_log.n_err;
	CHECK_EQ(vhd_vq_push(r.dev, &u, 1), -EINVAL);
	check_error(r.dev, VHD_VQ_E_CALLER, before);
	u.ndesc = 1;
	CHECK_EQ(vhd_vq_push(r.dev, &u, 1), -EIO);
	CHECK_EQ(g_log.n_err, before + 1);
	rig_fini(&r);
}

/* More ring slots than were popped (one single-slot chain pushed back as if it took two). */
static void test_packed_err_caller_too_many_slots(void)
{
	struct rig r;
	rig_init(&r, F_PACKED, 8);
	add_simple(&r, 1);
	struct vhd_vq_chain ch[1];
	CHECK_EQ(pop(&r, ch, 1), 1);
	struct vhd_vq_used u = {ch[0].id, 2, 0};
	int before = g_log.n_err;
	CHECK_EQ(vhd_vq_push(r.dev, &u, 1), -EINVAL);
	check_error(r.dev, VHD_VQ_E_CALLER, before);
	rig_fini(&r);
}

/* ================================================================ table ================================================================ */

/*
 * split_push() leaves a used entry alone when it already holds the id and length to be written (a driver that
 * recycles descriptors first in, first out gets the same head in each slot every lap). Proven by write-protecting
 * the entries' page for the second lap, where a store would fault; a third lap in another order writes again.
 */
static void test_split_used_unchanged_not_written(void)
{
	struct rig r;
	rig_init(&r, 0, 512);
	size_t used_off = r.lo.device_off;
	/* The first page boundary inside the used entries, and the first entry wholly past it. */
	size_t page = (used_off + 4 + 4095) & ~(size_t)4095;
	unsigned first = (unsigned)((page - (used_off + 4) + 7) / 8);
	CHECK(first < 512 && used_off + 4 + 8 * 512 <= page + 4096);
	struct vhd_vq_chain ch[512];
	static struct iovec iov[512];
	struct vhd_vq_used u[512];
	struct vhd_vq_done d[512];
	for (unsigned lap = 0; lap < 3; lap++) {
		for (unsigned i = 0; i < 512; i++) {
			struct vhd_vq_seg sg = {gpa(DATA_OFF + (i % 64) * SLOT), 60};
			add1(&r, &sg, 1, 0, 0, i + 1);
		}
		CHECK_EQ(vhd_vq_pop(r.dev, ch, 512, iov, 512), 512);
		for (unsigned i = 0; i < 512; i++) {
			unsigned k = lap == 2 ? 511 - i : i; /* lap 3 completes in reverse */
			u[i] = (struct vhd_vq_used){.id = ch[k].id, .ndesc = ch[k].ndesc, .len = 0};
		}
		if (lap == 1)
			CHECK_EQ(mprotect(r.mem + page, 4096, PROT_READ), 0);
		CHECK_EQ(vhd_vq_push(r.dev, u, 512), 512);
		if (lap == 1)
			CHECK_EQ(mprotect(r.mem + page, 4096, PROT_READ | PROT_WRITE), 0);
		for (unsigned i = first; i < 512; i++) /* the ring says what was pushed, in the pushed order */
			CHECK_EQ(vhd_le32(r.su->ring[i].id), u[i].id);
		CHECK_EQ(vhd_vq_get(r.drv, d, 512), 512);
		for (unsigned i = 0; i < 512; i++)
			CHECK_EQ((uintptr_t)d[i].token, (lap == 2 ? 511 - i : i) + 1);
	}
	CHECK_EQ(vhd_vq_error(r.dev), VHD_VQ_OK);
	CHECK_EQ(vhd_vq_error(r.drv), VHD_VQ_OK);
	rig_fini(&r);
}

/*
 * The driver's side of the same: split_add() leaves a single descriptor alone when it already holds the buffer
 * to be written (a pool that hands a burst back in the order it was freed puts each buffer back where it was).
 * Lap 1 adds what lap 0 did with the descriptor table write-protected, where a store would fault; lap 2 adds
 * other buffers and lengths and the device must see them.
 */
static void test_split_desc_unchanged_not_written(void)
{
	struct rig r;
	rig_init(&r, 0, 512);
	CHECK_EQ(r.lo.desc_off % 4096, 0);
	struct vhd_vq_chain ch[512];
	static struct iovec iov[512];
	struct vhd_vq_used u[512];
	struct vhd_vq_done d[512];
	for (unsigned lap = 0; lap < 3; lap++) {
		if (lap == 1)
			CHECK_EQ(mprotect(r.mem + r.lo.desc_off, 512 * 16, PROT_READ), 0);
		for (unsigned i = 0; i < 512; i++) {
			unsigned slot = lap == 2 ? 63 - i % 64 : i % 64;
			struct vhd_vq_seg sg = {gpa(DATA_OFF + slot * SLOT), lap == 2 ? 70 : 60};
			/* Receive buffers on the odd ones: the WRITE flag is part of what is compared. */
			add1(&r, &sg, i & 1 ? 0 : 1, i & 1 ? 1 : 0, 0, i + 1);
		}
		if (lap == 1)
			CHECK_EQ(mprotect(r.mem + r.lo.desc_off, 512 * 16, PROT_READ | PROT_WRITE), 0);
		CHECK_EQ(vhd_vq_pop(r.dev, ch, 512, iov, 512), 512);
		for (unsigned i = 0; i < 512; i++) {
			unsigned slot = lap == 2 ? 63 - i % 64 : i % 64;
			CHECK_EQ(ch[i].ndesc, 1);
			CHECK_EQ(ch[i].nin, i & 1);
			CHECK_EQ(ch[i].out_len + ch[i].in_len, lap == 2 ? 70 : 60);
			CHECK(ch[i].iov[0].iov_base == r.mem + DATA_OFF + slot * SLOT);
			u[i] = (struct vhd_vq_used){.id = ch[i].id, .ndesc = 1, .len = 0};
		}
		CHECK_EQ(vhd_vq_push(r.dev, u, 512), 512);
		CHECK_EQ(vhd_vq_get(r.drv, d, 512), 512);
		for (unsigned i = 0; i < 512; i++)
			CHECK_EQ((uintptr_t)d[i].token, i + 1);
	}
	CHECK_EQ(vhd_vq_error(r.dev), VHD_VQ_OK);
	CHECK_EQ(vhd_vq_error(r.drv), VHD_VQ_OK);
	rig_fini(&r);
}


/* ================================================================ inflight tracking ================================================================ */

/* Where the device dies in inflight_crash(). */
enum crash_at {
	CRASH_POPPED,    /* chains taken, none of the last batch used */
	CRASH_PUBLISHED, /* used entries and used->idx written, inflight flags not cleared yet */
	CRASH_DONE,      /* the batch used and cleared */
};

/* The lap before a kill in the inflight_crash tests: a first lap of 4 returned backwards, so that neither the
 * driver's free heads / buffer ids nor the region's entries follow the slots any more (resubmission must follow
 * the order chains were taken in), then 6 chains (buffers 1..6) taken into ch[], and 3 and 5 used, out of
 * order. */
static void inflight_first_laps(struct rig *r, struct vhd_vq_chain ch[8])
{
	struct vhd_vq_done done[16];
	for (uintptr_t t = 11; t <= 14; t++)
		add_simple(r, t);
	CHECK_EQ(pop(r, ch, 8), 4);
	for (int i = 3; i >= 0; i--)
		push1(r, &ch[i], 0);
	CHECK_EQ(vhd_vq_get(r->drv, done, 16), 4);
	for (uintptr_t t = 1; t <= 6; t++)
		add_simple(r, t);
	CHECK_EQ(pop(r, ch, 8), 6);
	push1(r, &ch[4], 10);
	push1(r, &ch[2], 10);
}

/* After the restart (buffer 7 added meanwhile): the chains of buffers 2 and 4 (and, when the last push was
 * undone, 1 and 6) resubmitted in the order they were first taken, then 7 from the ring, nothing else; used, the
 * driver gets each of the 7 buffers exactly once. */
static void inflight_resumed(struct rig *r, const struct vhd_vq_chain ch[8], bool undone)
{
	unsigned expect_resub = undone ? 4 : 2;
	CHECK_EQ(vhd_vq_resubmit_pending(r->dev), expect_resub);
	static const uint16_t order_popped[] = {1, 2, 4, 6, 7}, order_used[] = {2, 4, 7};
	const uint16_t *order = undone ? order_popped : order_used;
	struct vhd_vq_chain c2[8];
	int n = pop(r, c2, 8);
	CHECK_EQ(n, (int)expect_resub + 1);
	for (int i = 0; i < n; i++) {
		if (order[i] != 7) /* chain t carries buffer t (added and taken in order) */
			CHECK_EQ(c2[i].id, ch[order[i] - 1].id);
		struct vhd_vq_used u = {c2[i].id, c2[i].ndesc, 10};
		CHECK_EQ(vhd_vq_push(r->dev, &u, 1), 1);
	}
	CHECK_EQ(pop(r, c2, 8), 0);
	struct vhd_vq_done done[16];
	unsigned seen[8] = {0};
	int got = vhd_vq_get(r->drv, done, 16);
	CHECK_EQ(got, 7);
	for (int i = 0; i < got; i++)
		seen[(uintptr_t)done[i].token]++;
	for (unsigned t = 1; t <= 7; t++)
		CHECK_EQ(seen[t], 1);
	CHECK_EQ(vhd_vq_inflight(r->drv), 0);
}

/*
 * A device with inflight tracking takes 6 chains, uses 2 out of order, is killed at point `at` of a push of 2 more
 * (chains 1 and 6), and a new device is created over the same rings from a wrong base. The new one must
 * resubmit exactly the chains not used, oldest first, then go on with the driver's new chain: the driver gets
 * every buffer back exactly once.
 */
static void inflight_crash(enum crash_at at, uint64_t feat)
{
	struct rig r;
	rig_init(&r, feat, 8);
	size_t isz = vhd_vq_inflight_size(false, 8);
	CHECK_EQ(isz, 192u); /* 16 + 8 * 16, rounded to 64 */
	struct vhost_user_inflight_split *reg = aligned_alloc(64, isz);
	memset(reg, 0, isz);
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, NULL), 0);
	CHECK_EQ(reg->version, 1);
	CHECK_EQ(reg->desc_num, 8);
	struct vhd_vq_chain ch[8];
	inflight_first_laps(&r, ch);
	unsigned marked = 0;
	for (unsigned i = 0; i < 8; i++)
		marked += reg->desc[i].inflight;
	CHECK_EQ(marked, 4);
	struct vhd_vq_used last[2] = {{ch[0].id, 1, 10}, {ch[5].id, 1, 10}};
	if (at != CRASH_POPPED) {
		uint16_t reg_used = reg->used_idx;
		CHECK_EQ(vhd_vq_push(r.dev, last, 2), 2);
		if (at == CRASH_PUBLISHED) {
			/* Undo what follows the publication: the state of a device killed right after used->idx. */
			reg->desc[ch[0].id].inflight = 1;
			reg->desc[ch[5].id].inflight = 1;
			reg->used_idx = reg_used;
		}
	}
	vhd_vq_destroy(r.dev); /* killed: nothing more reaches the region */
	r.dev = make_vq(&r, VHD_VQ_DEVICE, feat, 0);
	add_simple(&r, 7);
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, NULL), 0);
	inflight_resumed(&r, ch, at == CRASH_POPPED);
	/* Nothing left marked: a second restart resubmits nothing. */
	vhd_vq_destroy(r.dev);
	r.dev = make_vq(&r, VHD_VQ_DEVICE, feat, 3);
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, NULL), 0);
	CHECK_EQ(vhd_vq_resubmit_pending(r.dev), 0);
	CHECK_EQ(vhd_vq_base(r.dev), 11);
	rig_fini(&r);
	free(reg);
}

static void test_split_inflight_crash_popped(void) { inflight_crash(CRASH_POPPED, 0); }
static void test_split_inflight_crash_published(void) { inflight_crash(CRASH_PUBLISHED, 0); }
static void test_split_inflight_crash_done(void) { inflight_crash(CRASH_DONE, 0); }
static void test_split_inflight_crash_published_event_idx(void) { inflight_crash(CRASH_PUBLISHED, F_EVENT); }

/* Hostile regions are refused, each with its reason, and leave the queue untracked. */
static void test_split_inflight_refusals(void)
{
	struct rig r;
	rig_init(&r, 0, 8);
	size_t isz = vhd_vq_inflight_size(false, 8);
	struct vhost_user_inflight_split *reg = aligned_alloc(64, isz);
	const char *why = NULL;
	memset(reg, 0, isz);
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz - 1, &why), -EINVAL);
	CHECK(strstr(why, "smaller"));
	reg->version = 2;
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, &why), -EINVAL);
	CHECK(strstr(why, "version"));
	reg->version = 1;
	reg->desc_num = 16;
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, &why), -EINVAL);
	CHECK(strstr(why, "desc_num"));
	reg->desc_num = 8;
	r.su->idx = vhd_cpu_to_le16(9); /* a batch of 9 on a queue of 8 */
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, &why), -EINVAL);
	CHECK(strstr(why, "more than the queue size"));
	r.su->idx = vhd_cpu_to_le16(2);
	reg->last_batch_head = 8;
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, &why), -EINVAL);
	CHECK(strstr(why, "beyond the queue size"));
	r.su->idx = 0;
	reg->desc[3].inflight = 7;
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, &why), -EINVAL);
	CHECK(strstr(why, "neither 0 nor 1"));
	CHECK_EQ(vhd_vq_inflight_size(false, 6), 0);
	CHECK_EQ(vhd_vq_inflight_size(true, 6), 256u); /* 32 + 6 * 32 */
	CHECK_EQ(vhd_vq_inflight_size(false, 65535), 0);
	rig_fini(&r);
	free(reg);
}

enum pcrash_at {
	PCRASH_POPPED,    /* chains taken, none of the last batch used */
	PCRASH_RECORDED,  /* the batch's region update made, the push not published */
	PCRASH_PUBLISHED, /* the push published, its flags and old_* not updated yet */
	PCRASH_DONE,      /* the batch used and committed */
};

/*
 * Packed: as inflight_crash(), the device killed at point `at` of a push of chains 1 and 6 after 3 and 5 were used
 * out of order, their ring slots overwritten by used descriptors by then. The new device, made from a wrong base,
 * resubmits exactly the chains not used (from the region's copies), oldest first, then takes the driver's new
 * chain from the avail position it recovered: the driver gets every buffer back exactly once.
 */
static void packed_inflight_crash(enum pcrash_at at)
{
	struct rig r;
	rig_init(&r, F_PACKED, 8);
	size_t isz = vhd_vq_inflight_size(true, 8);
	struct vhost_user_inflight_packed *reg = aligned_alloc(64, isz);
	memset(reg, 0, isz);
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, NULL), 0);
	CHECK_EQ(reg->version, 1);
	struct vhd_vq_chain ch[8];
	struct vhd_vq_done done[16];
	inflight_first_laps(&r, ch); /* packed: slots 4..7 and, wrapped, 0..1 */
	unsigned marked = 0;
	for (unsigned i = 0; i < 8; i++)
		marked += reg->desc[i].inflight;
	CHECK_EQ(marked, 4);
	struct vhd_vq_used last[2] = {{ch[0].id, 1, 10}, {ch[5].id, 1, 10}};
	if (at != PCRASH_POPPED) {
		uint16_t ofh = reg->old_free_head, oui = reg->old_used_idx;
		uint8_t ouw = reg->old_used_wrap_counter;
		struct pvirtq_desc before = r.pd[oui];
		CHECK_EQ(vhd_vq_push(r.dev, last, 2), 2);
		if (at != PCRASH_DONE) {
			/* Undo what follows the point of death. */
			for (unsigned i = 0; i < 8; i++)
				if (reg->free_head == i || i == reg->desc[reg->free_head].next)
					reg->desc[i].inflight = 1; /* the batch's two heads head the free list */
			reg->old_free_head = ofh;
			reg->old_used_idx = oui;
			reg->old_used_wrap_counter = ouw;
			if (at == PCRASH_RECORDED)
				r.pd[oui] = before;
		}
	}
	vhd_vq_destroy(r.dev); /* killed: nothing more reaches the region */
	r.dev = make_vq(&r, VHD_VQ_DEVICE, F_PACKED, 0);
	add_simple(&r, 7);
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, NULL), 0);
	inflight_resumed(&r, ch, at == PCRASH_POPPED || at == PCRASH_RECORDED);
	struct vhd_vq_chain c2[8];
	/* Nothing left in flight: a second restart resubmits nothing and resumes at slot 3 of the second lap. */
	vhd_vq_destroy(r.dev);
	r.dev = make_vq(&r, VHD_VQ_DEVICE, F_PACKED, 0);
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, NULL), 0);
	CHECK_EQ(vhd_vq_resubmit_pending(r.dev), 0);
	CHECK_EQ(vhd_vq_base(r.dev), 3);
	CHECK_EQ(vhd_vq_used_base(r.dev), 3);
	add_simple(&r, 5);
	CHECK_EQ(pop(&r, c2, 8), 1);
	push1(&r, &c2[0], 0);
	CHECK_EQ(vhd_vq_get(r.drv, done, 16), 1);
	CHECK_EQ((uintptr_t)done[0].token, 5);
	rig_fini(&r);
	free(reg);
}

static void test_packed_inflight_crash_popped(void) { packed_inflight_crash(PCRASH_POPPED); }
static void test_packed_inflight_crash_recorded(void) { packed_inflight_crash(PCRASH_RECORDED); }
static void test_packed_inflight_crash_published(void) { packed_inflight_crash(PCRASH_PUBLISHED); }
static void test_packed_inflight_crash_done(void) { packed_inflight_crash(PCRASH_DONE); }

/* Packed: hostile regions are refused, each with its reason. */
static void test_packed_inflight_refusals(void)
{
	struct rig r;
	rig_init(&r, F_PACKED, 8);
	size_t isz = vhd_vq_inflight_size(true, 8);
	struct vhost_user_inflight_packed *reg = aligned_alloc(64, isz);
	const char *why = NULL;
	memset(reg, 0, isz);
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz - 1, &why), -EINVAL);
	CHECK(strstr(why, "smaller"));
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, NULL), 0);
	add_simple(&r, 1);
	add_simple(&r, 2);
	struct vhd_vq_chain ch[4];
	CHECK_EQ(pop(&r, ch, 4), 2);
	vhd_vq_destroy(r.dev);
	r.dev = make_vq(&r, VHD_VQ_DEVICE, F_PACKED, 0);
	struct vhost_user_inflight_packed *good = aligned_alloc(64, isz);
	memcpy(good, reg, isz);
	reg->free_head = reg->old_free_head = 9;
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, &why), -EINVAL);
	CHECK(strstr(why, "beyond the queue"));
	memcpy(reg, good, isz);
	reg->desc[7].next = 2; /* free list 2..7 loops back to 2 */
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, &why), -EINVAL);
	CHECK(strstr(why, "loops"));
	memcpy(reg, good, isz);
	reg->desc[0].next = 3; /* the first chain runs into the free list */
	reg->desc[0].num = 2;
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, &why), -EINVAL);
	CHECK(strstr(why, "links"));
	memcpy(reg, good, isz);
	reg->desc[1].id = reg->desc[0].id; /* two chains with one buffer id */
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, &why), -EINVAL);
	CHECK(strstr(why, "buffer id"));
	memcpy(reg, good, isz);
	reg->desc[0].num = 9;
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, &why), -EINVAL);
	CHECK(strstr(why, "more slots"));
	memcpy(reg, good, isz);
	reg->desc[1].inflight = 2;
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, &why), -EINVAL);
	CHECK(strstr(why, "neither 0 nor 1"));
	memcpy(reg, good, isz);
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, &why), 0);
	CHECK_EQ(vhd_vq_resubmit_pending(r.dev), 2);
	rig_fini(&r);
	free(reg);
	free(good);
}

/* Tracking survives an unpop: a put-back ring chain is unmarked (packed: its entries back on the free list), a
 * put-back resubmission stays on its list; both come again, once each, also across another restart. */
static void inflight_unpop(uint64_t feat)
{
	bool packed = feat & F_PACKED;
	struct rig r;
	rig_init(&r, feat, 8);
	size_t isz = vhd_vq_inflight_size(packed, 8);
	struct vhost_user_inflight_split *reg = aligned_alloc(64, isz);
	memset(reg, 0, isz);
	CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, NULL), 0);
	add_simple(&r, 1);
	add_simple(&r, 2);
	struct vhd_vq_chain ch[4];
	CHECK_EQ(pop(&r, ch, 1), 1);
	for (int restart = 0; restart < 2; restart++) {
		vhd_vq_destroy(r.dev);
		r.dev = make_vq(&r, VHD_VQ_DEVICE, feat, 0);
		CHECK_EQ(vhd_vq_set_inflight(r.dev, reg, isz, NULL), 0);
		CHECK_EQ(vhd_vq_resubmit_pending(r.dev), 1);
		CHECK_EQ(pop(&r, ch, 4), 2); /* the resubmitted 1, then 2 from the ring */
		struct vhd_vq_used back[2] = {{ch[0].id, ch[0].ndesc, 0}, {ch[1].id, ch[1].ndesc, 0}};
		CHECK_EQ(vhd_vq_unpop(r.dev, back, 2), 0);
		if (!packed) {
			CHECK_EQ(reg->desc[ch[1].id].inflight, 0);
			CHECK_EQ(reg->desc[ch[0].id].inflight, 1);
		}
		CHECK_EQ(vhd_vq_resubmit_pending(r.dev), 1);
	}
	struct vhd_vq_chain c2[4];
	CHECK_EQ(pop(&r, c2, 4), 2);
	CHECK_EQ(c2[0].id, ch[0].id);
	CHECK_EQ(c2[1].id, ch[1].id);
	push1(&r, &c2[0], 0);
	push1(&r, &c2[1], 0);
	struct vhd_vq_done done[4];
	CHECK_EQ(vhd_vq_get(r.drv, done, 4), 2);
	CHECK_EQ(pop(&r, c2, 4), 0);
	rig_fini(&r);
	free(reg);
}

static void test_split_inflight_unpop(void) { inflight_unpop(0); }
static void test_packed_inflight_unpop(void) { inflight_unpop(F_PACKED); }

static const struct th_case cases[] = {
	{"split_used_unchanged_not_written", test_split_used_unchanged_not_written, 0},
	{"split_desc_unchanged_not_written", test_split_desc_unchanged_not_written, 0},
	{"split_unpop", test_split_unpop, 0},
	{"packed_unpop", test_packed_unpop, 0},
	{"layout", test_layout, 0},
	{"create_invalid", test_create_invalid, 0},
	{"strerror", test_strerror, 0},
	{"split_wrong_side", test_split_wrong_side, 0},
	{"packed_wrong_side", test_packed_wrong_side, 0},
	{"split_add_limits", test_split_add_limits, 0},
	{"packed_add_limits", test_packed_add_limits, 0},
	{"split_add_indirect_longer_than_queue", test_split_add_indirect_longer_than_queue, 0},
	{"packed_add_indirect_longer_than_queue", test_packed_add_indirect_longer_than_queue, 0},
	/* round trips */
	{"split_roundtrip", test_split_roundtrip, 0},
	{"packed_roundtrip", test_packed_roundtrip, 0},
	{"split_roundtrip_out_only", test_split_roundtrip_out_only, 0},
	{"packed_roundtrip_in_only", test_packed_roundtrip_in_only, 0},
	{"split_roundtrip_multiseg", test_split_roundtrip_multiseg, 0},
	{"packed_roundtrip_multiseg", test_packed_roundtrip_multiseg, 0},
	{"split_roundtrip_indirect", test_split_roundtrip_indirect, 0},
	{"packed_roundtrip_indirect", test_packed_roundtrip_indirect, 0},
	{"split_roundtrip_full_ring_chain", test_split_roundtrip_full_ring_chain, 0},
	{"packed_roundtrip_full_ring_chain", test_packed_roundtrip_full_ring_chain, 0},
	{"split_roundtrip_indirect_max", test_split_roundtrip_indirect_max, 0},
	{"packed_roundtrip_indirect_max", test_packed_roundtrip_indirect_max, 0},
	{"split_roundtrip_indirect_unnegotiated", test_split_roundtrip_indirect_unnegotiated, 0},
	{"packed_roundtrip_indirect_unnegotiated", test_packed_roundtrip_indirect_unnegotiated, 0},
	{"split_laps", test_split_laps, 0},
	{"packed_laps", test_packed_laps, 0},
	{"split_laps_indirect", test_split_laps_indirect, 0},
	{"packed_laps_indirect", test_packed_laps_indirect, 0},
	{"split_laps_in_order", test_split_laps_in_order, 0},
	{"packed_laps_in_order", test_packed_laps_in_order, 0},
	{"split_laps_all_features", test_split_laps_all_features, 0},
	{"packed_laps_all_features", test_packed_laps_all_features, 0},
	{"packed_laps_odd_size", test_packed_laps_odd_size, 0},
	{"packed_laps_odd_size_in_order", test_packed_laps_odd_size_in_order, 0},
	{"split_laps_small", test_split_laps_small, 0},
	{"packed_laps_small", test_packed_laps_small, 0},
	{"split_reverse_completion", test_split_reverse_completion, 0},
	{"packed_reverse_completion", test_packed_reverse_completion, 0},
	{"split_in_order_batch", test_split_in_order_batch, 0},
	{"packed_in_order_batch", test_packed_in_order_batch, 0},
	{"split_resume_at_base", test_split_resume_at_base, 0},
	{"packed_resume_at_base", test_packed_resume_at_base, 0},
	{"split_oversized_chain", test_split_oversized_chain, 0},
	{"packed_oversized_chain", test_packed_oversized_chain, 0},
	{"split_oversized_chain_indirect", test_split_oversized_chain_indirect, 0},
	{"packed_oversized_chain_indirect", test_packed_oversized_chain_indirect, 0},
	{"split_chain_waits_for_iov", test_split_chain_waits_for_iov, 0},
	{"packed_chain_waits_for_iov", test_packed_chain_waits_for_iov, 0},
	{"split_pop_budget_long_chains", test_split_pop_budget_long_chains, 0},
	{"packed_pop_budget_long_chains", test_packed_pop_budget_long_chains, 0},
	{"split_pop_budget_first_chain_whole", test_split_pop_budget_first_chain_whole, 0},
	{"packed_pop_budget_first_chain_whole", test_packed_pop_budget_first_chain_whole, 0},
	{"split_pop_budget_direct_chains", test_split_pop_budget_direct_chains, 0},
	{"packed_pop_budget_direct_chains", test_packed_pop_budget_direct_chains, 0},
	{"split_net_dequeue_budget", test_split_net_dequeue_budget, 0},
	{"packed_net_dequeue_budget", test_packed_net_dequeue_budget, 0},
	{"split_net_enqueue_budget", test_split_net_enqueue_budget, 0},
	{"packed_net_enqueue_budget", test_packed_net_enqueue_budget, 0},
	{"split_buffer_spans_regions", test_split_buffer_spans_regions, 0},
	{"packed_buffer_spans_regions", test_packed_buffer_spans_regions, 0},
	{"split_indirect_straddles_regions", test_split_indirect_straddles_regions, 0},
	{"packed_indirect_straddles_regions", test_packed_indirect_straddles_regions, 0},
	/* notifications */
	{"split_notify_kick", test_split_notify_kick, 0},
	{"split_notify_interrupt", test_split_notify_interrupt, 0},
	{"split_event_idx_kick", test_split_event_idx_kick, 0},
	{"split_event_idx_interrupt", test_split_event_idx_interrupt, 0},
	{"packed_notify_kick", test_packed_notify_kick, 0},
	{"packed_notify_interrupt", test_packed_notify_interrupt, 0},
	{"packed_event_idx_kick", test_packed_event_idx_kick, 0},
	{"packed_event_idx_wrap", test_packed_event_idx_wrap, 0},
	{"packed_event_idx_interrupt", test_packed_event_idx_interrupt, 0},
	{"split_event_idx_caught_up", test_split_event_idx_caught_up, 0},
	{"packed_event_idx_caught_up", test_packed_event_idx_caught_up, 0},
	/* hostile driver */
	{"split_err_avail_idx", test_split_err_avail_idx, 0},
	{"split_err_head", test_split_err_head, 0},
	{"split_err_next", test_split_err_next, 0},
	{"split_err_next_indirect", test_split_err_next_indirect, 0},
	{"split_err_loop", test_split_err_loop, 0},
	{"split_err_loop_self", test_split_err_loop_self, 0},
	{"split_err_loop_indirect", test_split_err_loop_indirect, 0},
	{"split_err_chain_len_indirect", test_split_err_chain_len_indirect, 0},
	{"packed_err_chain_len_indirect", test_packed_err_chain_len_indirect, 0},
	{"split_err_chain_len_direct_plus_indirect", test_split_err_chain_len_direct_plus_indirect, 0},
	{"packed_err_chain_len_next_everywhere", test_packed_err_chain_len_next_everywhere, 0},
	{"split_err_indirect_nest", test_split_err_indirect_nest, 0},
	{"packed_err_indirect_nest", test_packed_err_indirect_nest, 0},
	{"split_err_indirect_len0", test_split_err_indirect_len0, 0},
	{"split_err_indirect_len24", test_split_err_indirect_len24, 0},
	{"packed_err_indirect_len0", test_packed_err_indirect_len0, 0},
	{"packed_err_indirect_len24", test_packed_err_indirect_len24, 0},
	{"split_err_indirect_flags_next", test_split_err_indirect_flags_next, 0},
	{"packed_err_indirect_flags_next", test_packed_err_indirect_flags_next, 0},
	{"split_err_indirect_unnegotiated", test_split_err_indirect_unnegotiated, 0},
	{"packed_err_indirect_unnegotiated", test_packed_err_indirect_unnegotiated, 0},
	{"split_err_addr_outside", test_split_err_addr_outside, 0},
	{"packed_err_addr_outside", test_packed_err_addr_outside, 0},
	{"split_err_addr_past_end", test_split_err_addr_past_end, 0},
	{"packed_err_addr_past_end", test_packed_err_addr_past_end, 0},
	{"split_err_addr_before_start", test_split_err_addr_before_start, 0},
	{"split_err_addr_indirect_table", test_split_err_addr_indirect_table, 0},
	{"packed_err_addr_indirect_table", test_packed_err_addr_indirect_table, 0},
	{"split_err_overflow", test_split_err_overflow, 0},
	{"packed_err_overflow", test_packed_err_overflow, 0},
	{"split_err_overflow_indirect_table", test_split_err_overflow_indirect_table, 0},
	{"split_err_overflow_chain_4g", test_split_err_overflow_chain_4g, 0},
	{"packed_err_overflow_chain_4g", test_packed_err_overflow_chain_4g, 0},
	{"split_err_order", test_split_err_order, 0},
	{"split_err_order_after_empty_write", test_split_err_order_after_empty_write, 0},
	{"packed_err_order", test_packed_err_order, 0},
	{"split_err_order_indirect", test_split_err_order_indirect, 0},
	{"packed_err_order_indirect", test_packed_err_order_indirect, 0},
	{"packed_err_flags_head_used", test_packed_err_flags_head_used, 0},
	{"packed_err_flags_chain_unavailable", test_packed_err_flags_chain_unavailable, 0},
	{"packed_err_flags_chain_wrong_lap", test_packed_err_flags_chain_wrong_lap, 0},
	{"split_err_addr_after_iov_full", test_split_err_addr_after_iov_full, 0},
	{"packed_err_addr_after_iov_full", test_packed_err_addr_after_iov_full, 0},
	{"split_err_overflow_after_iov_full", test_split_err_overflow_after_iov_full, 0},
	{"packed_err_overflow_after_iov_full", test_packed_err_overflow_after_iov_full, 0},
	{"split_err_addr_translate_short", test_split_err_addr_translate_short, 0},
	{"packed_err_addr_translate_short", test_packed_err_addr_translate_short, 0},
	{"split_err_in_second_chain", test_split_err_in_second_chain, 0},
	/* hostile device */
	{"split_err_used_idx", test_split_err_used_idx, 0},
	{"split_err_used_idx_in_order", test_split_err_used_idx_in_order, 0},
	{"split_err_used_id_range", test_split_err_used_id_range, 0},
	{"split_err_used_id_huge", test_split_err_used_id_huge, 0},
	{"split_err_used_id_not_inflight", test_split_err_used_id_not_inflight, 0},
	{"split_err_used_id_twice", test_split_err_used_id_twice, 0},
	{"split_err_used_len", test_split_err_used_len, 0},
	{"split_err_used_len_readonly", test_split_err_used_len_readonly, 0},
	{"packed_err_used_id_range", test_packed_err_used_id_range, 0},
	{"packed_err_used_id_not_inflight", test_packed_err_used_id_not_inflight, 0},
	{"packed_err_used_id_in_order", test_packed_err_used_id_in_order, 0},
	{"packed_err_used_len", test_packed_err_used_len, 0},
	{"packed_used_len_reserved_without_write", test_packed_used_len_reserved_without_write, 0},
	{"split_err_used_mid_burst", test_split_err_used_mid_burst, 0},
	{"packed_err_used_mid_burst", test_packed_err_used_mid_burst, 0},
	{"split_err_used_mid_burst_in_order", test_split_err_used_mid_burst_in_order, 0},
	{"packed_err_flags_wrong_lap", test_packed_err_flags_wrong_lap, 0},
	{"packed_err_flags_used_only", test_packed_err_flags_used_only, 0},
	{"packed_err_flags_wrong_lap_wrap0", test_packed_err_flags_wrong_lap_wrap0, 0},
	{"packed_err_flags_avail_only_wrap0", test_packed_err_flags_avail_only_wrap0, 0},
	{"split_in_order_skip_ahead", test_split_in_order_skip_ahead, 0},
	{"packed_in_order_skip_ahead", test_packed_in_order_skip_ahead, 0},
	/* caller */
	{"split_err_caller_push_more", test_split_err_caller_push_more, 0},
	{"packed_err_caller_push_more", test_packed_err_caller_push_more, 0},
	{"split_err_caller_bad_id", test_split_err_caller_bad_id, 0},
	{"packed_err_caller_bad_ndesc", test_packed_err_caller_bad_ndesc, 0},
	{"packed_err_caller_too_many_slots", test_packed_err_caller_too_many_slots, 0},
	/* inflight tracking */
	{"split_inflight_crash_popped", test_split_inflight_crash_popped, 0},
	{"packed_inflight_crash_popped", test_packed_inflight_crash_popped, 0},
	{"packed_inflight_crash_recorded", test_packed_inflight_crash_recorded, 0},
	{"packed_inflight_crash_published", test_packed_inflight_crash_published, 0},
	{"packed_inflight_crash_done", test_packed_inflight_crash_done, 0},
	{"packed_inflight_refusals", test_packed_inflight_refusals, 0},
	{"packed_inflight_unpop", test_packed_inflight_unpop, 0},
	{"split_inflight_crash_published", test_split_inflight_crash_published, 0},
	{"split_inflight_crash_done", test_split_inflight_crash_done, 0},
	{"split_inflight_crash_published_event_idx", test_split_inflight_crash_published_event_idx, 0},
	{"split_inflight_refusals", test_split_inflight_refusals, 0},
	{"split_inflight_unpop", test_split_inflight_unpop, 0},
};
TH_MAIN("test_virtq", cases)
