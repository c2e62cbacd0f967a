/* SPDX-License-Identifier: MIT */
/*
 * Device IOTLB cache (vhostd/iotlb.h): every hostile update and invalidation with its exact refusal, the overlap,
 * merge and eviction rules, straddling invalidation, the last-hit hint (never stale after a change), the
 * virtqueue's window onto the last entry hit (never stale either), and a randomized check against a byte-map model.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "spec/virtio_config.h"
#include "spec/virtio_ring.h"
#include "vhostd/iotlb.h"
#include "vhostd/mem.h"
#include "vhostd/virtq.h"

#define RSZ 0x10000u /* bytes per region */

/*
 * Three regions over one host block:
 *   A: guest 0x100000, user 0x7f0000100000, host blk[0, RSZ)
 *   B: guest 0x200000, user 0x7f0000110000 (user-adjacent to A), host blk[3*RSZ, 4*RSZ) (not host-adjacent)
 *   C: guest 0x900000, user 0x7f0000900000, host blk[RSZ, 2*RSZ) (host-adjacent to A, guest not)
 */
#define UA 0x7f0000100000ull
#define UB 0x7f0000110000ull
#define UC 0x7f0000900000ull
#define GA 0x100000ull
#define GB 0x200000ull
#define GC 0x900000ull

struct env {
	struct vhd_mem *m;
	struct vhd_iotlb *t;
	uint8_t *blk;
	uint8_t *ha, *hb, *hc;
};

static struct env env_new(unsigned max_entries)
{
	struct env e;
	CHECK_EQ(vhd_mem_create(&e.m), 0);
	e.blk = calloc(4, RSZ);
	CHECK(e.blk != NULL);
	e.ha = e.blk;
	e.hc = e.blk + RSZ;
	e.hb = e.blk + 3 * RSZ;
	struct vhd_mem_region_info a = {.guest_addr = GA, .size = RSZ, .user_addr = UA, .host = e.ha};
	struct vhd_mem_region_info b = {.guest_addr = GB, .size = RSZ, .user_addr = UB, .host = e.hb};
	struct vhd_mem_region_info c = {.guest_addr = GC, .size = RSZ, .user_addr = UC, .host = e.hc};
	CHECK_EQ(vhd_mem_add(e.m, &a), 0);
	CHECK_EQ(vhd_mem_add(e.m, &b), 0);
	CHECK_EQ(vhd_mem_add(e.m, &c), 0);
	e.t = NULL;
	CHECK_EQ(vhd_iotlb_create(max_entries, &e.t), 0);
	CHECK(e.t != NULL);
	return e;
}

static void env_free(struct env *e)
{
	vhd_iotlb_destroy(e->t);
	vhd_mem_destroy(e->m);
	free(e->blk);
}

/* One segment for [iova, iova+len) with perm, or NULL. */
static void *one(struct env *e, uint64_t iova, uint64_t len, unsigned perm)
{
	unsigned hint = 0;
	struct iovec v[4];
	int n = vhd_iotlb_translate(e->t, &hint, iova, len, perm, v, 4, NULL);
	if (n != 1)
		return NULL;
	CHECK_EQ(v[0].iov_len, len);
	return v[0].iov_base;
}

static struct vhd_iotlb_stats stats(struct env *e)
{
	struct vhd_iotlb_stats st;
	vhd_iotlb_stats(e->t, &st);
	return st;
}

/* ---------------------------------------------------------------- create */

static void test_create_bounds(void)
{
	struct vhd_iotlb *t = NULL;
	CHECK_EQ(vhd_iotlb_create(VHD_IOTLB_MAX_ENTRIES + 1, &t), -EINVAL);
	CHECK(t == NULL);
	CHECK_EQ(vhd_iotlb_create(0, &t), 0);
	CHECK_EQ(vhd_iotlb_count(t), 0);
	CHECK_EQ(vhd_iotlb_generation(t), 0);
	CHECK_EQ(strcmp(vhd_iotlb_last_error(t), ""), 0);
	vhd_iotlb_destroy(t);
	vhd_iotlb_destroy(NULL);
}

/* ---------------------------------------------------------------- hostile updates */

static void refused(struct env *e, int want, uint64_t iova, uint64_t size, uint64_t uaddr, unsigned perm,
		    const char *names)
{
	uint64_t gen = vhd_iotlb_generation(e->t);
	uint64_t before = stats(e).refused;
	CHECK_EQ(vhd_iotlb_update(e->t, e->m, iova, size, uaddr, perm), want);
	CHECK_EQ(stats(e).refused, before + 1);
	CHECK_EQ(vhd_iotlb_generation(e->t), gen);
	if (!strstr(vhd_iotlb_last_error(e->t), names)) {
		fprintf(stderr, "error \"%s\" does not name \"%s\"\n", vhd_iotlb_last_error(e->t), names);
		CHECK(0);
	}
}

static void test_update_hostile_values(void)
{
	struct env e = env_new(0);
	/* A valid entry first: refusals must leave it alone. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x5000, 0x1000, UA, VHD_IOTLB_RW), 0);
	refused(&e, -EINVAL, 0x9000, 0, UA, VHD_IOTLB_RW, "size 0");
	refused(&e, -EOVERFLOW, 0xfffffffffffff000ull, 0x1001, UA, VHD_IOTLB_RW, "0xfffffffffffff000");
	refused(&e, -EOVERFLOW, UINT64_MAX, 1, UA, VHD_IOTLB_RW, "0xffffffffffffffff");
	refused(&e, -EOVERFLOW, 0x9000, 0x1000, 0xffffffffffffff00ull, VHD_IOTLB_RW, "uaddr 0xffffffffffffff00");
	refused(&e, -EINVAL, 0x9000, 0x1000, UA, 0, "perm 0");
	refused(&e, -EINVAL, 0x9000, 0x1000, UA, 4, "perm 4");
	refused(&e, -EINVAL, 0x9000, 0x1000, UA, 255, "perm 255");
	/* Outside every region, below one, past one's end, and across two user-adjacent regions. */
	refused(&e, -EFAULT, 0x9000, 0x1000, 0x1000, VHD_IOTLB_RW, "uaddr 0x1000");
	refused(&e, -EFAULT, 0x9000, 0x1000, UA - 1, VHD_IOTLB_RW, "uaddr 0x7f00000fffff");
	refused(&e, -EFAULT, 0x9000, 0x1000, UC + RSZ - 0x800, VHD_IOTLB_RW, "size 0x1000");
	refused(&e, -EFAULT, 0x9000, 0x1000, UA + RSZ - 0x800, VHD_IOTLB_RW, "uaddr 0x7f000010f800");
	/* No memory table yet. */
	CHECK_EQ(vhd_iotlb_update(e.t, NULL, 0x9000, 0x1000, UA, VHD_IOTLB_RW), -EFAULT);
	CHECK_EQ(vhd_iotlb_count(e.t), 1);
	CHECK_EQ(stats(&e).updates, 1);
	CHECK(one(&e, 0x9000, 1, VHD_IOTLB_RO) == NULL);
	CHECK(one(&e, 0x5000, 0x1000, VHD_IOTLB_RW) == e.ha);
	/* The edges that are valid: a whole region, and the top of the space up to (not including) 2^64-1. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x20000, RSZ, UB, VHD_IOTLB_RO), 0);
	CHECK(one(&e, 0x20000, RSZ, VHD_IOTLB_RO) == e.hb);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, UINT64_MAX - 0x1000, 0x1000, UA, VHD_IOTLB_RO), 0);
	CHECK(one(&e, UINT64_MAX - 1, 1, VHD_IOTLB_RO) == e.ha + 0xfff);
	CHECK_EQ(vhd_iotlb_count(e.t), 3);
	env_free(&e);
}

/* ---------------------------------------------------------------- lookup */

static void test_translate_perm_and_errors(void)
{
	struct env e = env_new(0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x1000, 0x1000, UA, VHD_IOTLB_RO), 0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x3000, 0x1000, UA + 0x4000, VHD_IOTLB_WO), 0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x5000, 0x1000, UA + 0x8000, VHD_IOTLB_RW), 0);
	unsigned hint = 0;
	struct iovec v[4];
	uint64_t miss = 0;
	/* RO: read yes, write and read-write no. */
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x1800, 0x10, VHD_IOTLB_RO, v, 4, &miss), 1);
	CHECK(v[0].iov_base == e.ha + 0x800);
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x1800, 0x10, VHD_IOTLB_WO, v, 4, &miss), -EACCES);
	CHECK_EQ(miss, 0x1800);
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x1800, 0x10, VHD_IOTLB_RW, v, 4, &miss), -EACCES);
	/* WO: write yes, read no (also through the hint, which now points at the entry). */
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x3000, 0x1000, VHD_IOTLB_WO, v, 4, &miss), 1);
	CHECK(v[0].iov_base == e.ha + 0x4000);
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x3000, 0x1000, VHD_IOTLB_RO, v, 4, &miss), -EACCES);
	CHECK_EQ(miss, 0x3000);
	/* RW: anything. */
	for (unsigned p = 1; p <= 3; p++)
		CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x5fff, 1, p, v, 4, &miss), 1);
	/* Bad perm asked, len 0, wrap, no room. */
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x5000, 1, 0, v, 4, &miss), -EINVAL);
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x5000, 1, 7, v, 4, &miss), -EINVAL);
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x5000, 0, VHD_IOTLB_RO, v, 4, &miss), 0);
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, UINT64_MAX, 2, VHD_IOTLB_RO, v, 4, &miss), -EOVERFLOW);
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x5000, 1, VHD_IOTLB_RO, v, 0, &miss), -ENOBUFS);
	/* Misses name the first byte not covered: before everything, in a hole, past the end. */
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x500, 0x10, VHD_IOTLB_RO, v, 4, &miss), -EAGAIN);
	CHECK_EQ(miss, 0x500);
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x5800, 0x1000, VHD_IOTLB_RO, v, 4, &miss), -EAGAIN);
	CHECK_EQ(miss, 0x6000);
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x0fff, 2, VHD_IOTLB_RO, v, 4, NULL), -EAGAIN);
	/* The first failing byte decides: a permission fault before a hole is -EACCES, a hole before it -EAGAIN. */
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x1800, 0x2000, VHD_IOTLB_WO, v, 4, &miss), -EACCES);
	CHECK_EQ(miss, 0x1800);
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x5800, 0x1000, VHD_IOTLB_RW, v, 4, &miss), -EAGAIN);
	CHECK_EQ(miss, 0x6000);
	/* to_host and to_gpa. */
	CHECK(vhd_iotlb_to_host(e.t, 0x3010, 0x10, VHD_IOTLB_WO) == e.ha + 0x4010);
	CHECK(vhd_iotlb_to_host(e.t, 0x3010, 0x10, VHD_IOTLB_RO) == NULL);
	CHECK(vhd_iotlb_to_host(e.t, 0x3010, 0, VHD_IOTLB_WO) == NULL);
	CHECK(vhd_iotlb_to_host(e.t, 0x3ff0, 0x20, VHD_IOTLB_WO) == NULL);
	uint64_t gpa = 0;
	CHECK_EQ(vhd_iotlb_to_gpa(e.t, 0x3010, &gpa), 0);
	CHECK_EQ(gpa, GA + 0x4010);
	CHECK_EQ(vhd_iotlb_to_gpa(e.t, 0x2000, &gpa), -EAGAIN);
	env_free(&e);
}

static void test_scatter_across_entries(void)
{
	struct env e = env_new(0);
	/* IOVA-adjacent, host apart (regions A and B): two entries, two segments. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x10000, 0x1000, UA + 0x2000, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x11000, 0x1000, UB + 0x3000, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_count(e.t), 2);
	unsigned hint = 0;
	struct iovec v[2];
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x10ff0, 0x20, VHD_IOTLB_RO, v, 2, NULL), 2);
	CHECK(v[0].iov_base == e.ha + 0x2ff0);
	CHECK_EQ(v[0].iov_len, 0x10);
	CHECK(v[1].iov_base == e.hb + 0x3000);
	CHECK_EQ(v[1].iov_len, 0x10);
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x10ff0, 0x20, VHD_IOTLB_RO, v, 1, NULL), -ENOBUFS);
	env_free(&e);
}

/* ---------------------------------------------------------------- overlap and merge */

static void test_overlap_replaces(void)
{
	struct env e = env_new(0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x10000, 0x3000, UA, VHD_IOTLB_RW), 0);
	uint64_t g0 = vhd_iotlb_generation(e.t);
	CHECK_EQ(g0, 0); /* adding is not a change to what was there */
	/* An exact duplicate, and a sub-range mapped the same way: no change, no generation bump. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x10000, 0x3000, UA, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x11000, 0x1000, UA + 0x1000, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_count(e.t), 1);
	CHECK_EQ(vhd_iotlb_generation(e.t), g0);
	/* The middle now elsewhere: three entries, the middle one new, the generation moved. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x11000, 0x1000, UB, VHD_IOTLB_RO), 0);
	CHECK_EQ(vhd_iotlb_count(e.t), 3);
	CHECK(vhd_iotlb_generation(e.t) > g0);
	unsigned hint = 0;
	struct iovec v[4];
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x10000, 0x3000, VHD_IOTLB_RO, v, 4, NULL), 3);
	CHECK(v[0].iov_base == e.ha && v[0].iov_len == 0x1000);
	CHECK(v[1].iov_base == e.hb && v[1].iov_len == 0x1000);
	CHECK(v[2].iov_base == e.ha + 0x2000 && v[2].iov_len == 0x1000);
	CHECK(one(&e, 0x11000, 1, VHD_IOTLB_WO) == NULL);
	/* Same range, same place, other permission: replaced. */
	uint64_t g1 = vhd_iotlb_generation(e.t);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x11000, 0x1000, UB, VHD_IOTLB_WO), 0);
	CHECK(vhd_iotlb_generation(e.t) > g1);
	CHECK(one(&e, 0x11000, 1, VHD_IOTLB_WO) == e.hb);
	CHECK(one(&e, 0x11000, 1, VHD_IOTLB_RO) == NULL);
	/* One update over all three and beyond: one entry again. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x0f000, 0x5000, UC, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_count(e.t), 1);
	CHECK(one(&e, 0x0f000, 0x5000, VHD_IOTLB_RW) == e.hc);
	uint64_t gpa;
	CHECK_EQ(vhd_iotlb_to_gpa(e.t, 0x11000, &gpa), 0);
	CHECK_EQ(gpa, GC + 0x2000);
	env_free(&e);
}

static void test_merge_only_when_contiguous(void)
{
	struct env e = env_new(0);
	/* Contiguous in IOVA, host and guest, same perm: merged, both orders. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x10000, 0x1000, UA, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x12000, 0x1000, UA + 0x2000, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_count(e.t), 2);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x11000, 0x1000, UA + 0x1000, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_count(e.t), 1);
	CHECK(one(&e, 0x10000, 0x3000, VHD_IOTLB_RW) == e.ha);
	/* Different perm: not merged. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x13000, 0x1000, UA + 0x3000, VHD_IOTLB_RO), 0);
	CHECK_EQ(vhd_iotlb_count(e.t), 2);
	/* IOVA-adjacent, host not contiguous: not merged. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x0f000, 0x1000, UA + 0x8000, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_count(e.t), 3);
	/* Host contiguous (end of A, start of C) but guest-physical not: not merged, so each GPA stays right. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x40000, 0x1000, UA + RSZ - 0x1000, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x41000, 0x1000, UC, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_count(e.t), 5);
	uint64_t gpa;
	CHECK_EQ(vhd_iotlb_to_gpa(e.t, 0x41010, &gpa), 0);
	CHECK_EQ(gpa, GC + 0x10);
	CHECK_EQ(vhd_iotlb_to_gpa(e.t, 0x40ff0, &gpa), 0);
	CHECK_EQ(gpa, GA + RSZ - 0x10);
	env_free(&e);
}

/* ---------------------------------------------------------------- invalidation */

static void test_invalidate_straddling(void)
{
	struct env e = env_new(0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x10000, 0x10000, UA, VHD_IOTLB_RW), 0);
	uint64_t g = vhd_iotlb_generation(e.t);
	/* A hole in the middle: two entries, both sides intact, the hole misses. */
	CHECK_EQ(vhd_iotlb_invalidate(e.t, 0x14000, 0x1000), 1);
	CHECK_EQ(vhd_iotlb_count(e.t), 2);
	CHECK(vhd_iotlb_generation(e.t) > g);
	CHECK(one(&e, 0x13fff, 1, VHD_IOTLB_RW) == e.ha + 0x3fff);
	CHECK(one(&e, 0x15000, 0xb000, VHD_IOTLB_RW) == e.ha + 0x5000);
	unsigned hint = 0;
	struct iovec v[2];
	uint64_t miss = 0;
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x13000, 0x2000, VHD_IOTLB_RO, v, 2, &miss), -EAGAIN);
	CHECK_EQ(miss, 0x14000);
	uint64_t gpa;
	CHECK_EQ(vhd_iotlb_to_gpa(e.t, 0x15000, &gpa), 0);
	CHECK_EQ(gpa, GA + 0x5000);
	/* The same again touches nothing: 0, generation still. */
	g = vhd_iotlb_generation(e.t);
	CHECK_EQ(vhd_iotlb_invalidate(e.t, 0x14000, 0x1000), 0);
	CHECK_EQ(vhd_iotlb_invalidate(e.t, 0x900000, 0x1000), 0);
	CHECK_EQ(vhd_iotlb_generation(e.t), g);
	/* Across both: trims the first's tail and the second's head. */
	CHECK_EQ(vhd_iotlb_invalidate(e.t, 0x13000, 0x3000), 1);
	CHECK_EQ(vhd_iotlb_count(e.t), 2);
	CHECK(one(&e, 0x12fff, 1, VHD_IOTLB_RO) == e.ha + 0x2fff);
	CHECK(one(&e, 0x13000, 1, VHD_IOTLB_RO) == NULL);
	CHECK(one(&e, 0x15fff, 1, VHD_IOTLB_RO) == NULL);
	CHECK(one(&e, 0x16000, 1, VHD_IOTLB_RO) == e.ha + 0x6000);
	/* One covering several whole entries and half of another. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x30000, 0x1000, UB, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x32000, 0x2000, UB + 0x4000, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_count(e.t), 4);
	CHECK_EQ(vhd_iotlb_invalidate(e.t, 0x17000, 0x1c000), 1);
	CHECK_EQ(vhd_iotlb_count(e.t), 3);
	CHECK(one(&e, 0x33000, 0x1000, VHD_IOTLB_RO) == e.hb + 0x5000);
	CHECK(one(&e, 0x32fff, 1, VHD_IOTLB_RO) == NULL);
	CHECK(one(&e, 0x16000, 0x1000, VHD_IOTLB_RO) == e.ha + 0x6000);
	CHECK(one(&e, 0x17000, 1, VHD_IOTLB_RO) == NULL);
	/* Hostile sizes: 0 refused and named; one that wraps runs to the end of the space. */
	CHECK_EQ(vhd_iotlb_invalidate(e.t, 0x10000, 0), -EINVAL);
	CHECK(strstr(vhd_iotlb_last_error(e.t), "0x10000") != NULL);
	CHECK_EQ(vhd_iotlb_count(e.t), 3);
	CHECK_EQ(vhd_iotlb_invalidate(e.t, 0x16800, UINT64_MAX), 1);
	CHECK_EQ(vhd_iotlb_count(e.t), 2);
	CHECK(one(&e, 0x16000, 0x800, VHD_IOTLB_RO) == e.ha + 0x6000);
	CHECK(one(&e, 0x33000, 1, VHD_IOTLB_RO) == NULL);
	CHECK_EQ(vhd_iotlb_invalidate(e.t, UINT64_MAX, UINT64_MAX), 0);
	CHECK_EQ(stats(&e).invalidations, 4);
	env_free(&e);
}

/*
 * A guest in lazy mode whose NIC has ATS flushes the device IOTLB for the whole address space at each lazy flush;
 * QEMU 7.2 forwards it as these two INVALIDATEs (the interrupt window 0xfee00000-0xfeefffff is not part of the
 * IOMMU region), the second ending exactly at 2^64 (docs/viommu.md "Lazy invalidation"). Both sides go, the
 * window's entry stays.
 */
static void test_invalidate_qemu_devtlb_flush(void)
{
	struct env e = env_new(0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x10000, 0x1000, UA, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0xffffd000, 0x1000, UA + 0x2000, VHD_IOTLB_RO), 0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0xfee00000, 0x1000, UB, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x100000000ull, 0x1000, UC, VHD_IOTLB_WO), 0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0xfffffffffffff000ull, 0xfff, UC + 0x2000, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_count(e.t), 5);
	uint64_t g = vhd_iotlb_generation(e.t);
	CHECK_EQ(vhd_iotlb_invalidate(e.t, 0xfef00000, 0xffffffff01100000ull), 1);
	CHECK_EQ(vhd_iotlb_invalidate(e.t, 0, 0xfee00000), 1);
	CHECK(vhd_iotlb_generation(e.t) > g);
	CHECK_EQ(vhd_iotlb_count(e.t), 1);
	CHECK(one(&e, 0xfee00000, 0x1000, VHD_IOTLB_RW) == e.hb);
	CHECK(one(&e, 0x10000, 1, VHD_IOTLB_RO) == NULL);
	CHECK(one(&e, 0xffffd000, 1, VHD_IOTLB_RO) == NULL);
	CHECK(one(&e, 0x100000000ull, 1, VHD_IOTLB_WO) == NULL);
	CHECK(one(&e, 0xfffffffffffff000ull, 1, VHD_IOTLB_RO) == NULL);
	CHECK_EQ(stats(&e).invalidations, 2);
	env_free(&e);
}

/* ---------------------------------------------------------------- bound and eviction */

static void test_eviction_at_bound(void)
{
	struct env e = env_new(4);
	/* Four entries that cannot merge (IOVA gaps). */
	for (unsigned i = 0; i < 4; i++)
		CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x10000 * (i + 1), 0x1000, UA + 0x1000 * i, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_count(e.t), 4);
	uint64_t g = vhd_iotlb_generation(e.t);
	/* Entry 1 named again: now the youngest. The fifth evicts the oldest, entry 2. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x10000, 0x1000, UA, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x90000, 0x1000, UB, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_count(e.t), 4);
	CHECK_EQ(stats(&e).evictions, 1);
	CHECK(vhd_iotlb_generation(e.t) > g); /* a caller holding entry 2's pointer hears of it */
	CHECK(one(&e, 0x20000, 1, VHD_IOTLB_RO) == NULL);
	CHECK(one(&e, 0x10000, 1, VHD_IOTLB_RO) == e.ha);
	CHECK(one(&e, 0x30000, 1, VHD_IOTLB_RO) == e.ha + 0x2000);
	CHECK(one(&e, 0x40000, 1, VHD_IOTLB_RO) == e.ha + 0x3000);
	CHECK(one(&e, 0x90000, 1, VHD_IOTLB_RO) == e.hb);
	/* Next to go: entry 3. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0xa0000, 0x1000, UB + 0x2000, VHD_IOTLB_RW), 0);
	CHECK(one(&e, 0x30000, 1, VHD_IOTLB_RO) == NULL);
	CHECK_EQ(stats(&e).evictions, 2);
	/* Full, and an invalidation would split one: that entry goes whole, the others stay. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x40000, 0x3000, UA + 0x3000, VHD_IOTLB_RW), 0); /* replaces entry 4 */
	CHECK_EQ(vhd_iotlb_count(e.t), 4);
	CHECK_EQ(vhd_iotlb_invalidate(e.t, 0x41000, 0x1000), 1);
	CHECK_EQ(vhd_iotlb_count(e.t), 3);
	CHECK(one(&e, 0x40000, 1, VHD_IOTLB_RO) == NULL);
	CHECK(one(&e, 0x42000, 1, VHD_IOTLB_RO) == NULL);
	CHECK(one(&e, 0x10000, 1, VHD_IOTLB_RO) == e.ha);
	CHECK(one(&e, 0xa0000, 1, VHD_IOTLB_RO) == e.hb + 0x2000);
	CHECK_EQ(stats(&e).evictions, 3);
	/* Many more updates than the cache holds: the bound holds. */
	for (unsigned i = 0; i < 1000; i++)
		CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x100000 + 0x2000ull * i, 0x1000, UA + (i % 16) * 0x1000,
					  VHD_IOTLB_RO),
			 0);
	CHECK_EQ(vhd_iotlb_count(e.t), 4);
	CHECK_EQ(stats(&e).entries, 4);
	CHECK(one(&e, 0x100000 + 0x2000ull * 999, 0x1000, VHD_IOTLB_RO) == e.ha + (999 % 16) * 0x1000);
	env_free(&e);
}

/* ---------------------------------------------------------------- hint and flush */

static void test_hint_never_stale(void)
{
	struct env e = env_new(0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x10000, 0x1000, UA, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x20000, 0x1000, UB, VHD_IOTLB_RW), 0);
	unsigned hint = 0;
	struct iovec v[2];
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x20010, 0x10, VHD_IOTLB_RW, v, 2, NULL), 1);
	CHECK_EQ(hint, 1);
	/* Invalidated: the hint still names slot 1, which must not give the old pointer. */
	CHECK_EQ(vhd_iotlb_invalidate(e.t, 0x20000, 0x1000), 1);
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x20010, 0x10, VHD_IOTLB_RW, v, 2, NULL), -EAGAIN);
	/* Mapped again elsewhere: the new place, through the same hint. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x20000, 0x1000, UC, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x20010, 0x10, VHD_IOTLB_RW, v, 2, NULL), 1);
	CHECK(v[0].iov_base == e.hc + 0x10);
	/* Slot 1 now holds another range after a change below it: the hint must not hand out its bytes. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x8000, 0x1000, UA + 0x8000, VHD_IOTLB_RO), 0);
	hint = 1;
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x20010, 0x10, VHD_IOTLB_RW, v, 2, NULL), 1);
	CHECK(v[0].iov_base == e.hc + 0x10);
	CHECK_EQ(hint, 2);
	/* Made read-only in place: the hinted entry no longer allows writes. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x20000, 0x1000, UC, VHD_IOTLB_RO), 0);
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x20010, 0x10, VHD_IOTLB_WO, v, 2, NULL), -EACCES);
	/* Any hint value is safe. */
	unsigned bad[] = {3, 1000, UINT32_MAX};
	for (unsigned i = 0; i < 3; i++) {
		hint = bad[i];
		CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x10000, 0x1000, VHD_IOTLB_RO, v, 2, NULL), 1);
		CHECK(v[0].iov_base == e.ha);
	}
	/* Flushed: everything misses, the generation moved; flushing an empty cache moves nothing. */
	uint64_t g = vhd_iotlb_generation(e.t);
	vhd_iotlb_flush(e.t);
	CHECK_EQ(vhd_iotlb_count(e.t), 0);
	CHECK(vhd_iotlb_generation(e.t) > g);
	CHECK_EQ(vhd_iotlb_translate(e.t, &hint, 0x10000, 0x1000, VHD_IOTLB_RO, v, 2, NULL), -EAGAIN);
	g = vhd_iotlb_generation(e.t);
	vhd_iotlb_flush(e.t);
	CHECK_EQ(vhd_iotlb_generation(e.t), g);
	env_free(&e);
}

/* ---------------------------------------------------------------- model check */

#define SPACE 512u /* IOVAs 0..SPACE-1, byte granularity */

struct model {
	uint8_t *host[SPACE]; /* NULL: unmapped */
	unsigned perm[SPACE];
};

static uint64_t rng_state;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/*
 * exact: the cache must match the model byte for byte (no eviction possible). Otherwise (a small bound) it may
 * miss bytes the model has, but every byte it translates must be where, and with the permission, the model says.
 */
static void model_run(unsigned max_entries, bool exact, uint64_t seed)
{
	struct env e = env_new(max_entries);
	static struct model md;
	memset(&md, 0, sizeof(md));
	rng_state = seed;
	unsigned hint = 0;
	unsigned long long iters = th_scaled(20000);
	for (unsigned long long it = 0; it < iters; it++) {
		unsigned op = (unsigned)(rnd() % 100);
		uint64_t a = rnd() % SPACE, len = 1 + rnd() % 48;
		if (a + len > SPACE)
			len = SPACE - a;
		if (op < 45) {
			/* Runs of consecutive small updates into one place make merges likely. */
			uint64_t uoff = (rnd() % 4 == 0) ? a : rnd() % 1024;
			unsigned perm = (unsigned)(rnd() % 16 == 0 ? 0 : 1 + rnd() % 3);
			int rc = vhd_iotlb_update(e.t, e.m, a, len, UA + uoff, perm);
			if (perm == 0) {
				CHECK_EQ(rc, -EINVAL);
				continue;
			}
			CHECK_EQ(rc, 0);
			for (uint64_t k = 0; k < len; k++) {
				md.host[a + k] = e.ha + uoff + k;
				md.perm[a + k] = perm;
			}
		} else if (op < 60) {
			CHECK(vhd_iotlb_invalidate(e.t, a, len) >= 0);
			for (uint64_t k = 0; k < len; k++)
				md.host[a + k] = NULL;
		} else if (op == 60) {
			vhd_iotlb_flush(e.t);
			memset(&md, 0, sizeof(md));
		} else {
			unsigned perm = (unsigned)(1 + rnd() % 3);
			struct iovec v[64];
			uint64_t miss = UINT64_MAX;
			int n = vhd_iotlb_translate(e.t, &hint, a, len, perm, v, 64, &miss);
			/* What the model says: the first byte unmapped or lacking perm, if any. */
			uint64_t bad = UINT64_MAX;
			int want = 0;
			for (uint64_t k = 0; k < len && bad == UINT64_MAX; k++) {
				if (!md.host[a + k]) {
					bad = a + k;
					want = -EAGAIN;
				} else if ((md.perm[a + k] & perm) != perm) {
					bad = a + k;
					want = -EACCES;
				}
			}
			if (n > 0) {
				uint64_t k = a;
				for (int s = 0; s < n; s++) {
					for (size_t j = 0; j < v[s].iov_len; j++, k++) {
						CHECK(md.host[k] == (uint8_t *)v[s].iov_base + j);
						CHECK_EQ(md.perm[k] & perm, perm);
					}
				}
				CHECK_EQ(k, a + len);
				CHECK_EQ(want, 0);
			} else if (exact) {
				CHECK_EQ(n, want);
				CHECK_EQ(miss, bad);
			} else if (n == -EACCES) {
				/* A permission fault is always real: the byte is mapped without perm in the model. */
				CHECK(md.host[miss] != NULL);
				CHECK((md.perm[miss] & perm) != perm);
			} else {
				CHECK_EQ(n, -EAGAIN);
				CHECK(miss >= a && miss < a + len);
			}
		}
		CHECK(vhd_iotlb_count(e.t) <= (max_entries ? max_entries : VHD_IOTLB_DEFAULT_ENTRIES));
	}
	/* Every entry the model knows is still there when nothing can be evicted. */
	if (exact)
		for (uint64_t k = 0; k < SPACE; k++)
			if (md.host[k])
				CHECK(vhd_iotlb_to_host(e.t, k, 1, md.perm[k]) == md.host[k]);
	env_free(&e);
}

static void test_model_exact(void)
{
	for (uint64_t s = 1; s <= 4; s++)
		model_run(0, true, 0x9e3779b97f4a7c15ull * s);
}

static void test_model_bounded(void)
{
	for (uint64_t s = 1; s <= 4; s++)
		model_run(8, false, 0x2545f4914f6cdd1dull * s);
}

/* ---------------------------------------------------------------- the virtqueue's window */

/* A driver and a device queue over rings of their own; the device translates through e->t. */
struct wq {
	struct vhd_vq *drv, *dev;
	void *ring;
};

static struct wq wq_new(struct env *e, bool packed)
{
	struct wq q;
	struct vhd_vq_layout lo;
	CHECK_EQ(vhd_vq_layout(packed, 8, &lo), 0);
	q.ring = aligned_alloc(64, lo.size);
	CHECK(q.ring != NULL);
	memset(q.ring, 0, lo.size);
	uint8_t *b = q.ring;
	for (int side = 0; side < 2; side++) {
		struct vhd_vq_config c = {
			.side = side ? VHD_VQ_DEVICE : VHD_VQ_DRIVER,
			.num = 8,
			.features = VHD_BIT(VIRTIO_F_VERSION_1) | (packed ? VHD_BIT(VIRTIO_F_RING_PACKED) : 0),
			.desc = b + lo.desc_off,
			.driver = b + lo.driver_off,
			.device = b + lo.device_off,
			.mem = side ? e->m : NULL,
			.iotlb = side ? e->t : NULL,
			.base = packed ? VHD_VQ_PACKED_BASE_INIT : 0,
		};
		CHECK_EQ(vhd_vq_create(&c, side ? &q.dev : &q.drv), 0);
	}
	return q;
}

static void wq_free(struct wq *q)
{
	vhd_vq_destroy(q->drv);
	vhd_vq_destroy(q->dev);
	free(q->ring);
}

/* The driver posts one 16-byte buffer at iova. */
static void wq_post(struct wq *q, uint64_t iova, bool writable)
{
	struct vhd_vq_seg s = {iova, 16};
	struct vhd_vq_buf b = {.segs = &s, .nout = !writable, .nin = writable, .token = (void *)1};
	CHECK_EQ(vhd_vq_add(q->drv, &b, 1), 1);
}

/* One pop of up to n chains into out[] (their host pointers); what was taken is given back and collected. */
static int wq_pop(struct wq *q, unsigned n, void **out)
{
	struct vhd_vq_chain ch[4];
	struct iovec iov[4];
	int got = vhd_vq_pop(q->dev, ch, n, iov, 4);
	for (int i = 0; i < got; i++) {
		CHECK_EQ(ch[i].nout + ch[i].nin, 1);
		out[i] = ch[i].iov[0].iov_base;
		struct vhd_vq_used u = {ch[i].id, ch[i].ndesc, 0};
		CHECK_EQ(vhd_vq_push(q->dev, &u, 1), 1);
		struct vhd_vq_done d;
		CHECK_EQ(vhd_vq_get(q->drv, &d, 1), 1);
	}
	return got;
}

/*
 * A queue with an IOTLB maps plain buffers through its window, the read/write entry last hit, without asking
 * the IOTLB. The IOTLB changes between pops (the queue paused): a replaced, narrowed or invalidated entry must
 * never be reached through the window after the change.
 */
static void window_never_stale(bool packed)
{
	struct env e = env_new(0);
	struct wq q = wq_new(&e, packed);
	void *p[4];
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x10000, 0x1000, UA, VHD_IOTLB_RW), 0);
	wq_post(&q, 0x10010, false);
	CHECK_EQ(wq_pop(&q, 4, p), 1);
	CHECK(p[0] == e.ha + 0x10);
	/* Mapped elsewhere, in place: the new bytes. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x10000, 0x1000, UC, VHD_IOTLB_RW), 0);
	wq_post(&q, 0x10020, true);
	CHECK_EQ(wq_pop(&q, 4, p), 1);
	CHECK(p[0] == e.hc + 0x20);
	/* Invalidated: a miss, the chain left in the ring. */
	CHECK_EQ(vhd_iotlb_invalidate(e.t, 0x10000, 0x1000), 1);
	wq_post(&q, 0x10030, false);
	CHECK_EQ(wq_pop(&q, 4, p), 0);
	struct vhd_vq_miss m[2];
	CHECK_EQ(vhd_vq_take_misses(q.dev, m, 2), 1);
	CHECK_EQ(m[0].iova, 0x10030);
	/* Two entries, not mergeable: one pop takes buffers in each, the window following the slow path. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x10000, 0x1000, UA, VHD_IOTLB_RW), 0);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x30000, 0x1000, UB, VHD_IOTLB_RW), 0);
	wq_post(&q, 0x30040, false);
	wq_post(&q, 0x10050, true);
	wq_post(&q, 0x30060, false);
	CHECK_EQ(wq_pop(&q, 4, p), 4);
	CHECK(p[0] == e.ha + 0x30);
	CHECK(p[1] == e.hb + 0x40);
	CHECK(p[2] == e.ha + 0x50);
	CHECK(p[3] == e.hb + 0x60);
	/* Narrowed to read-only: readable buffers still map, a writable one is a permission fault. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x30000, 0x1000, UB, VHD_IOTLB_RO), 0);
	wq_post(&q, 0x30070, false);
	CHECK_EQ(wq_pop(&q, 4, p), 1);
	CHECK(p[0] == e.hb + 0x70);
	wq_post(&q, 0x30080, true);
	CHECK_EQ(wq_pop(&q, 4, p), -EIO);
	CHECK_EQ(vhd_vq_error(q.dev), VHD_VQ_E_IOTLB_PERM);
	wq_free(&q);
	env_free(&e);
}

/*
 * Read-only and write-only entries, as a Linux guest behind intel-iommu maps TX and RX buffers: the window of
 * each direction holds the entry only when it allows that direction, so a buffer of the other direction in the
 * entry a previous pop warmed is a permission fault, never mapped; and a replaced or invalidated read-only
 * entry is never reached through the window after the change.
 */
static void window_ro_wo(bool packed, bool wo)
{
	struct env e = env_new(0);
	struct wq q = wq_new(&e, packed);
	void *p[4];
	unsigned perm = wo ? VHD_IOTLB_WO : VHD_IOTLB_RO;
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x10000, 0x1000, UA, perm), 0);
	/* Two pops in the entry, the second through the window the first left. */
	wq_post(&q, 0x10010, wo);
	CHECK_EQ(wq_pop(&q, 4, p), 1);
	CHECK(p[0] == e.ha + 0x10);
	wq_post(&q, 0x10020, wo);
	wq_post(&q, 0x10030, wo);
	CHECK_EQ(wq_pop(&q, 4, p), 2);
	CHECK(p[0] == e.ha + 0x20);
	CHECK(p[1] == e.ha + 0x30);
	/* Replaced in place: the new bytes. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x10000, 0x1000, UC, perm), 0);
	wq_post(&q, 0x10040, wo);
	CHECK_EQ(wq_pop(&q, 4, p), 1);
	CHECK(p[0] == e.hc + 0x40);
	/* Invalidated: a miss, the chain left in the ring. */
	CHECK_EQ(vhd_iotlb_invalidate(e.t, 0x10000, 0x1000), 1);
	wq_post(&q, 0x10050, wo);
	CHECK_EQ(wq_pop(&q, 4, p), 0);
	struct vhd_vq_miss m[2];
	CHECK_EQ(vhd_vq_take_misses(q.dev, m, 2), 1);
	CHECK_EQ(m[0].iova, 0x10050);
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x10000, 0x1000, UA, perm), 0);
	CHECK_EQ(wq_pop(&q, 4, p), 1);
	CHECK(p[0] == e.ha + 0x50);
	/* The other direction in the warm entry: a permission fault. */
	wq_post(&q, 0x10060, !wo);
	CHECK_EQ(wq_pop(&q, 4, p), -EIO);
	CHECK_EQ(vhd_vq_error(q.dev), VHD_VQ_E_IOTLB_PERM);
	wq_free(&q);
	env_free(&e);
}

/*
 * One 4 KiB entry a page, as a guest behind intel-iommu maps its buffers (neighbouring pages apart in host
 * memory, so nothing merges): a pop walking up and down the pages finds each beside the last (split moves its
 * window there within the pop), and an invalidated or replaced page is never reached through a window.
 */
static void window_pages(bool packed, bool wo)
{
	struct env e = env_new(0);
	struct wq q = wq_new(&e, packed);
	void *p[4];
	unsigned perm = wo ? VHD_IOTLB_WO : VHD_IOTLB_RO;
	const uint64_t base = 0x40000;
	for (uint64_t k = 0; k < 6; k++)
		CHECK_EQ(vhd_iotlb_update(e.t, e.m, base + k * 0x1000, 0x1000, (k & 1 ? UC : UA) + k * 0x1000, perm), 0);
	CHECK_EQ(vhd_iotlb_count(e.t), 6);
#define PAGE_HOST(k) ((k) & 1 ? e.hc : e.ha) + (k) * 0x1000
	/* Up: pages 0-3 in one pop. */
	for (uint64_t k = 0; k < 4; k++)
		wq_post(&q, base + k * 0x1000 + 0x10 * k, wo);
	CHECK_EQ(wq_pop(&q, 4, p), 4);
	for (unsigned k = 0; k < 4; k++)
		CHECK(p[k] == PAGE_HOST(k) + 0x10 * k);
	/* Down: 5, 4, 3, 2. */
	for (uint64_t k = 5; k >= 2; k--)
		wq_post(&q, base + k * 0x1000 + 0x20, wo);
	CHECK_EQ(wq_pop(&q, 4, p), 4);
	for (unsigned i = 0; i < 4; i++)
		CHECK(p[i] == PAGE_HOST(5 - i) + 0x20);
	/* Page 4 invalidated: page 3 is taken, the pop stops at page 4 with a miss. */
	CHECK_EQ(vhd_iotlb_invalidate(e.t, base + 4 * 0x1000, 0x1000), 1);
	wq_post(&q, base + 3 * 0x1000 + 0x30, wo);
	wq_post(&q, base + 4 * 0x1000 + 0x30, wo);
	CHECK_EQ(wq_pop(&q, 4, p), 1);
	CHECK(p[0] == PAGE_HOST(3) + 0x30);
	struct vhd_vq_miss m[2];
	CHECK_EQ(vhd_vq_take_misses(q.dev, m, 2), 1);
	CHECK_EQ(m[0].iova, base + 4 * 0x1000 + 0x30);
	/* Mapped again elsewhere: the new bytes. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, base + 4 * 0x1000, 0x1000, UB, perm), 0);
	CHECK_EQ(wq_pop(&q, 4, p), 1);
	CHECK(p[0] == e.hb + 0x30);
	/* Page 2 replaced while page 3 is warm: the new bytes, not the old. */
	CHECK_EQ(vhd_iotlb_update(e.t, e.m, base + 2 * 0x1000, 0x1000, UB + 0x2000, perm), 0);
	wq_post(&q, base + 3 * 0x1000 + 0x40, wo);
	wq_post(&q, base + 2 * 0x1000 + 0x40, wo);
	CHECK_EQ(wq_pop(&q, 4, p), 2);
	CHECK(p[0] == PAGE_HOST(3) + 0x40);
	CHECK(p[1] == e.hb + 0x2000 + 0x40);
#undef PAGE_HOST
	/* The other direction in the neighbouring page: a permission fault. */
	wq_post(&q, base + 1 * 0x1000 + 0x50, !wo);
	CHECK_EQ(wq_pop(&q, 4, p), -EIO);
	CHECK_EQ(vhd_vq_error(q.dev), VHD_VQ_E_IOTLB_PERM);
	wq_free(&q);
	env_free(&e);
}

static void test_window_pages_ro_split(void) { window_pages(false, false); }
static void test_window_pages_wo_split(void) { window_pages(false, true); }
static void test_window_pages_ro_packed(void) { window_pages(true, false); }
static void test_window_pages_wo_packed(void) { window_pages(true, true); }

static void test_window_ro_split(void) { window_ro_wo(false, false); }
static void test_window_wo_split(void) { window_ro_wo(false, true); }
static void test_window_ro_packed(void) { window_ro_wo(true, false); }
static void test_window_wo_packed(void) { window_ro_wo(true, true); }

static void test_window_never_stale_split(void) { window_never_stale(false); }
static void test_window_never_stale_packed(void) { window_never_stale(true); }

/* ---------------------------------------------------------------- cost of a hinted hit */

/* Not an assertion on time: a loop that callgrind counts (scripts or by hand, --toggle-collect). */
static void test_hint_hit_loop(void)
{
	struct env e = env_new(0);
	for (unsigned i = 0; i < 64; i++)
		CHECK_EQ(vhd_iotlb_update(e.t, e.m, 0x100000ull * i, 0x1000, UA + 0x1000 * (i % 16), VHD_IOTLB_RW), 0);
	unsigned hint = 0;
	struct iovec v[1];
	uintptr_t sum = 0;
	for (unsigned i = 0; i < 100000; i++) {
		int n = vhd_iotlb_translate(e.t, &hint, 0x100000ull * 37 + (i & 0x7ff), 64, VHD_IOTLB_RO, v, 1, NULL);
		CHECK_EQ(n, 1);
		sum += (uintptr_t)v[0].iov_base;
	}
	CHECK_EQ(hint, 37);
	CHECK(sum != 0);
	env_free(&e);
}

int main(int argc, char **argv)
{
	static const struct th_case cases[] = {
		{"create_bounds", test_create_bounds, 0},
		{"update_hostile_values", test_update_hostile_values, 0},
		{"translate_perm_and_errors", test_translate_perm_and_errors, 0},
		{"scatter_across_entries", test_scatter_across_entries, 0},
		{"overlap_replaces", test_overlap_replaces, 0},
		{"merge_only_when_contiguous", test_merge_only_when_contiguous, 0},
		{"invalidate_straddling", test_invalidate_straddling, 0},
		{"invalidate_qemu_devtlb_flush", test_invalidate_qemu_devtlb_flush, 0},
		{"eviction_at_bound", test_eviction_at_bound, 0},
		{"hint_never_stale", test_hint_never_stale, 0},
		{"window_never_stale_split", test_window_never_stale_split, 0},
		{"window_never_stale_packed", test_window_never_stale_packed, 0},
		{"window_ro_split", test_window_ro_split, 0},
		{"window_wo_split", test_window_wo_split, 0},
		{"window_ro_packed", test_window_ro_packed, 0},
		{"window_wo_packed", test_window_wo_packed, 0},
		{"window_pages_ro_split", test_window_pages_ro_split, 0},
		{"window_pages_wo_split", test_window_pages_wo_split, 0},
		{"window_pages_ro_packed", test_window_pages_ro_packed, 0},
		{"window_pages_wo_packed", test_window_pages_wo_packed, 0},
		{"model_exact", test_model_exact, 0},
		{"model_bounded", test_model_bounded, 0},
		{"hint_hit_loop", test_hint_hit_loop, 0},
	};
	return th_main("test_iotlb", cases, sizeof(cases) / sizeof(cases[0]), argc, argv);
}
