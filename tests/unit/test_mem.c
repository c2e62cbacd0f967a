/* SPDX-License-Identifier: MIT */
/*
 * Guest memory table (vhostd/mem.h): region bookkeeping, vhd_mem_translate() bounds and segmentation, the single-
 * region lookups, and fd-backed regions (mapping at an unaligned offset, ownership of the fd and the mapping).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "harness.h"
#include "vhostd/mem.h"

#define PG 4096u

static struct vhd_mem *mem_new(void)
{
	struct vhd_mem *m = NULL;
	CHECK_EQ(vhd_mem_create(&m), 0);
	CHECK(m != NULL);
	CHECK_EQ(vhd_mem_count(m), 0);
	return m;
}

static int add(struct vhd_mem *m, uint64_t gpa, uint64_t size, uint64_t uva, void *host)
{
	struct vhd_mem_region_info ri = {.guest_addr = gpa, .size = size, .user_addr = uva, .host = host};
	return vhd_mem_add(m, &ri);
}

/* Two 4 KiB host blocks, deliberately far apart, registered as adjacent guest ranges [0x10000, 0x12000). */
struct two {
	struct vhd_mem *m;
	uint8_t *a, *b; /* host of guest 0x10000 and 0x11000 */
	uint8_t *block; /* backing of both, freed by the caller (the test exits anyway) */
};

static struct two two_adjacent(void)
{
	struct two t;
	t.m = mem_new();
	CHECK_EQ(posix_memalign((void **)&t.block, PG, 4 * PG), 0);
	/* b before a in host memory, with a gap: host mappings are neither adjacent nor in guest order. */
	t.b = t.block;
	t.a = t.block + 2 * PG;
	for (unsigned i = 0; i < PG; i++) {
		t.a[i] = (uint8_t)i;
		t.b[i] = (uint8_t)(i ^ 0xa5);
	}
	/* Added out of guest order so the table has to sort them. */
	CHECK_EQ(add(t.m, 0x11000, PG, 0x7f0000011000ull, t.b), 0);
	CHECK_EQ(add(t.m, 0x10000, PG, 0x7f0000010000ull, t.a), 0);
	CHECK_EQ(vhd_mem_count(t.m), 2);
	return t;
}

/* ---------------------------------------------------------------- add / remove ---------------------------------------------------------------- */

static void test_add_and_count(void)
{
	static uint8_t buf[3 * PG];
	struct vhd_mem *m = mem_new();
	CHECK_EQ(add(m, 0x1000, PG, 0x5000, buf), 0);
	CHECK_EQ(vhd_mem_count(m), 1);
	/* Exactly adjacent on both sides is not an overlap. */
	CHECK_EQ(add(m, 0x2000, PG, 0x6000, buf + PG), 0);
	CHECK_EQ(add(m, 0x0, PG, 0x4000, buf + 2 * PG), 0);
	CHECK_EQ(vhd_mem_count(m), 3);
	vhd_mem_destroy(m);
	vhd_mem_destroy(NULL);
}

static void test_add_overlap(void)
{
	static uint8_t buf[PG];
	struct vhd_mem *m = mem_new();
	CHECK_EQ(add(m, 0x10000, 0x1000, 0, buf), 0);
	CHECK_EQ(add(m, 0x20000, 0x1000, 0, buf), 0);
	CHECK_EQ(add(m, 0x10000, 0x1000, 0, buf), -EEXIST);  /* identical */
	CHECK_EQ(add(m, 0x0f800, 0x1000, 0, buf), -EEXIST);  /* overlaps the start */
	CHECK_EQ(add(m, 0x10fff, 0x10, 0, buf), -EEXIST);    /* overlaps the last byte */
	CHECK_EQ(add(m, 0x10800, 0x10, 0, buf), -EEXIST);    /* inside */
	CHECK_EQ(add(m, 0x0f000, 0x3000, 0, buf), -EEXIST);  /* encloses */
	CHECK_EQ(add(m, 0x10800, 0x10000, 0, buf), -EEXIST); /* spans both */
	CHECK_EQ(add(m, 0x1f000, 0x1001, 0, buf), -EEXIST);  /* one byte into the second */
	CHECK_EQ(vhd_mem_count(m), 2);
	CHECK_EQ(add(m, 0x11000, 0xf000, 0, buf), 0); /* fills the hole exactly */
	CHECK_EQ(vhd_mem_count(m), 3);
	vhd_mem_destroy(m);
}

static void test_add_invalid(void)
{
	static uint8_t buf[PG];
	struct vhd_mem *m = mem_new();
	CHECK_EQ(add(m, 0x1000, 0, 0, buf), -EINVAL);
	CHECK_EQ(add(m, UINT64_MAX - 0xfff, 0x1000, 0, buf), -EINVAL); /* guest end would be 2^64 */
	CHECK_EQ(add(m, UINT64_MAX - 0x10, 0x1000, 0, buf), -EINVAL);
	CHECK_EQ(add(m, 0x1000, 0x1000, UINT64_MAX - 0x10, buf), -EINVAL); /* user_addr + size wraps */
	CHECK_EQ(add(m, 0x1000, 0x1000, 0, (void *)(UINTPTR_MAX - 0x10)), -EINVAL); /* host + size wraps */
	CHECK_EQ(add(m, 0x1000, 0x1000, 0, NULL), -EINVAL);
	CHECK_EQ(vhd_mem_count(m), 0);
	/* The largest region that still ends at or below 2^64 - 1 is fine. */
	CHECK_EQ(add(m, UINT64_MAX - 0x1000, 0x1000, 0, buf), 0);
	CHECK_EQ(vhd_mem_count(m), 1);
	vhd_mem_destroy(m);
}

static void test_add_full(void)
{
	static uint8_t buf[PG];
	struct vhd_mem *m = mem_new();
	/* Insert in descending order to exercise the sorted insertion on every add. */
	for (unsigned i = 0; i < VHD_MEM_MAX_REGIONS; i++)
		CHECK_EQ(add(m, 0x100000ull * (VHD_MEM_MAX_REGIONS - i), 0x100, 0, buf), 0);
	CHECK_EQ(vhd_mem_count(m), VHD_MEM_MAX_REGIONS);
	CHECK_EQ(add(m, 0x10000000ull, 0x100, 0, buf), -ENOSPC);
	CHECK_EQ(vhd_mem_count(m), VHD_MEM_MAX_REGIONS);
	/* Every one is still found (binary search over the sorted table). */
	for (unsigned i = 1; i <= VHD_MEM_MAX_REGIONS; i++)
		CHECK(vhd_mem_guest_to_host(m, 0x100000ull * i + 0x80, 0x80) == buf + 0x80);
	CHECK(vhd_mem_guest_to_host(m, 0x100000ull * 5 + 0x100, 1) == NULL);
	/* Room again after a remove. */
	CHECK_EQ(vhd_mem_remove(m, 0x100000ull * 7, 0x100), 0);
	CHECK_EQ(add(m, 0x10000000ull, 0x100, 0, buf), 0);
	vhd_mem_destroy(m);
}

static void test_remove(void)
{
	struct two t = two_adjacent();
	CHECK_EQ(vhd_mem_remove(t.m, 0x10000, 0x800), -ENOENT);  /* size must match */
	CHECK_EQ(vhd_mem_remove(t.m, 0x10800, 0x800), -ENOENT);  /* start must match */
	CHECK_EQ(vhd_mem_remove(t.m, 0x30000, PG), -ENOENT);
	CHECK_EQ(vhd_mem_count(t.m), 2);
	unsigned hint = 1;
	struct iovec iov[2];
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x11000, 8, iov, 2), 1);
	CHECK_EQ(vhd_mem_remove(t.m, 0x10000, PG), 0);
	CHECK_EQ(vhd_mem_count(t.m), 1);
	CHECK(vhd_mem_guest_to_host(t.m, 0x10000, 1) == NULL);
	CHECK(vhd_mem_guest_to_host(t.m, 0x11000, 1) == t.b);
	/* hint 1 now points past the table: harmless. */
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x11010, 8, iov, 2), 1);
	CHECK(iov[0].iov_base == t.b + 0x10);
	CHECK_EQ(vhd_mem_remove(t.m, 0x10000, PG), -ENOENT);
	CHECK_EQ(vhd_mem_remove(t.m, 0x11000, PG), 0);
	CHECK_EQ(vhd_mem_count(t.m), 0);
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x11010, 8, iov, 2), -EFAULT);
	vhd_mem_destroy(t.m);
	free(t.block);
}

/* ---------------------------------------------------------------- translate ---------------------------------------------------------------- */

static void test_translate_one_region(void)
{
	struct two t = two_adjacent();
	struct iovec iov[4];
	unsigned hint = 0;
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x10100, 0x200, iov, 4), 1);
	CHECK(iov[0].iov_base == t.a + 0x100);
	CHECK_EQ(iov[0].iov_len, 0x200);
	CHECK_EQ(((uint8_t *)iov[0].iov_base)[5], (uint8_t)0x105);
	/* The whole second region, first and last byte. */
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x11000, PG, iov, 4), 1);
	CHECK(iov[0].iov_base == t.b);
	CHECK_EQ(iov[0].iov_len, PG);
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x11fff, 1, iov, 1), 1);
	CHECK(iov[0].iov_base == t.b + PG - 1);
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x10000, 1, iov, 1), 1);
	CHECK(iov[0].iov_base == t.a);
	vhd_mem_destroy(t.m);
	free(t.block);
}

static void test_translate_two_adjacent(void)
{
	struct two t = two_adjacent();
	struct iovec iov[4];
	memset(iov, 0, sizeof(iov));
	unsigned hint = 0;
	/* 0x40 bytes before the boundary, 0x100 after: two segments at unrelated host addresses. */
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x11000 - 0x40, 0x140, iov, 4), 2);
	CHECK(iov[0].iov_base == t.a + PG - 0x40);
	CHECK_EQ(iov[0].iov_len, 0x40);
	CHECK(iov[1].iov_base == t.b);
	CHECK_EQ(iov[1].iov_len, 0x100);
	CHECK_EQ(((uint8_t *)iov[1].iov_base)[3], 3 ^ 0xa5);
	/* Both regions exactly. */
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x10000, 2 * PG, iov, 2), 2);
	CHECK(iov[0].iov_base == t.a && iov[0].iov_len == PG);
	CHECK(iov[1].iov_base == t.b && iov[1].iov_len == PG);
	/* Whatever the hint says. */
	for (unsigned h = 0; h < 3; h++) {
		hint = h;
		CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x10fff, 2, iov, 2), 2);
		CHECK(iov[0].iov_base == t.a + PG - 1 && iov[0].iov_len == 1);
		CHECK(iov[1].iov_base == t.b && iov[1].iov_len == 1);
	}
	vhd_mem_destroy(t.m);
	free(t.block);
}

static void test_translate_hole(void)
{
	static uint8_t buf[2 * PG];
	struct vhd_mem *m = mem_new();
	CHECK_EQ(add(m, 0x10000, PG, 0, buf), 0);
	CHECK_EQ(add(m, 0x12000, PG, 0, buf + PG), 0); /* hole at [0x11000, 0x12000) */
	struct iovec iov[4];
	for (unsigned h = 0; h < 3; h++) {
		unsigned hint = h;
		CHECK_EQ(vhd_mem_translate(m, &hint, 0x10f00, 0x200, iov, 4), -EFAULT);  /* runs into the hole */
		CHECK_EQ(vhd_mem_translate(m, &hint, 0x10000, 0x3000, iov, 4), -EFAULT); /* crosses it */
		CHECK_EQ(vhd_mem_translate(m, &hint, 0x11800, 0x10, iov, 4), -EFAULT);   /* inside it */
		CHECK_EQ(vhd_mem_translate(m, &hint, 0x11ff0, 0x20, iov, 4), -EFAULT);   /* starts in it */
		CHECK_EQ(vhd_mem_translate(m, &hint, 0x0, 0x10, iov, 4), -EFAULT);       /* below everything */
	}
	vhd_mem_destroy(m);
}

static void test_translate_past_end(void)
{
	struct two t = two_adjacent();
	struct iovec iov[4];
	unsigned hint = 1;
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x11f00, 0x101, iov, 4), -EFAULT);
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x12000, 1, iov, 4), -EFAULT);
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x10000, 2 * PG + 1, iov, 4), -EFAULT);
		CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x7fffffffffffull, 0x10, iov, 4), -EFAULT);
	vhd_mem_destroy(t.m);
	free(t.block);
}

static void test_translate_wrap(void)
{
	static uint8_t buf[PG];
	struct vhd_mem *m = mem_new();
	/* A region at the very top of the address space, so a wrapping range starts inside memory. */
	CHECK_EQ(add(m, UINT64_MAX - PG, PG, 0, buf), 0);
	CHECK_EQ(add(m, 0, PG, 0x100000, buf), 0);
	struct iovec iov[4];
	unsigned hint = 0;
	CHECK_EQ(vhd_mem_translate(m, &hint, UINT64_MAX - 0x10, 0x20, iov, 4), -EOVERFLOW);
	CHECK_EQ(vhd_mem_translate(m, &hint, UINT64_MAX - PG, UINT64_MAX, iov, 4), -EOVERFLOW);
	CHECK_EQ(vhd_mem_translate(m, &hint, 2, UINT64_MAX, iov, 4), -EOVERFLOW);
	hint = 1;
	CHECK_EQ(vhd_mem_translate(m, &hint, UINT64_MAX - 0x10, 0x20, iov, 4), -EOVERFLOW);
	/* The last representable bytes are fine. */
	CHECK_EQ(vhd_mem_translate(m, &hint, UINT64_MAX - 0x10, 0x10, iov, 4), 1);
	CHECK(iov[0].iov_base == buf + PG - 0x10);
	CHECK_EQ(iov[0].iov_len, 0x10);
	vhd_mem_destroy(m);
}

static void test_translate_enobufs(void)
{
	struct two t = two_adjacent();
	struct iovec iov[2];
	memset(iov, 0, sizeof(iov));
	unsigned hint = 0;
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x10f00, 0x200, iov, 1), -ENOBUFS);
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x10f00, 0x200, iov, 0), -ENOBUFS);
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x10000, 0x10, iov, 0), -ENOBUFS); /* even one segment */
	hint = 0;
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x10000, 0x10, iov, 0), -ENOBUFS); /* via the hint */
	/* Exactly enough. */
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x10f00, 0x200, iov, 2), 2);
	vhd_mem_destroy(t.m);
	free(t.block);
}

static void test_translate_len0(void)
{
	struct two t = two_adjacent();
	struct iovec iov[1] = {{(void *)0x1234, 99}};
	unsigned hint = 0;
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x10000, 0, iov, 1), 0);
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x90000, 0, iov, 1), 0); /* even outside memory */
	CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x10000, 0, iov, 0), 0);
	CHECK(iov[0].iov_base == (void *)0x1234 && iov[0].iov_len == 99); /* untouched */
	vhd_mem_destroy(t.m);
	free(t.block);
}

static void test_translate_stale_hint(void)
{
	struct two t = two_adjacent();
	struct iovec iov[2];
	const unsigned hints[] = {0, 1, 2, 31, 32, 1000, UINT32_MAX};
	for (size_t i = 0; i < sizeof(hints) / sizeof(hints[0]); i++) {
		unsigned hint = hints[i];
		CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x11008, 8, iov, 2), 1);
		CHECK(iov[0].iov_base == t.b + 8);
		CHECK_EQ(iov[0].iov_len, 8);
		hint = hints[i];
		CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x10008, 8, iov, 2), 1);
		CHECK(iov[0].iov_base == t.a + 8);
		hint = hints[i];
		CHECK_EQ(vhd_mem_translate(t.m, &hint, 0x20000, 8, iov, 2), -EFAULT);
	}
	vhd_mem_destroy(t.m);
	free(t.block);
}

/* ---------------------------------------------------------------- single-region lookups ---------------------------------------------------------------- */

static void test_guest_to_host(void)
{
	struct two t = two_adjacent();
	CHECK(vhd_mem_guest_to_host(t.m, 0x10000, PG) == t.a);
	CHECK(vhd_mem_guest_to_host(t.m, 0x10ff0, 0x10) == t.a + PG - 0x10);
	CHECK(vhd_mem_guest_to_host(t.m, 0x11000, 1) == t.b);
	CHECK(vhd_mem_guest_to_host(t.m, 0x11fff, 1) == t.b + PG - 1);
	CHECK(vhd_mem_guest_to_host(t.m, 0x10ff0, 0x11) == NULL); /* spans two regions: not contiguous */
	CHECK(vhd_mem_guest_to_host(t.m, 0x11fff, 2) == NULL);    /* past the end */
	CHECK(vhd_mem_guest_to_host(t.m, 0x12000, 1) == NULL);
	CHECK(vhd_mem_guest_to_host(t.m, 0xffff, 1) == NULL);    /* below */
	CHECK(vhd_mem_guest_to_host(t.m, 0xffff, 2) == NULL);
	CHECK(vhd_mem_guest_to_host(t.m, 0x10000, 0) == NULL);   /* len 0 */
	CHECK(vhd_mem_guest_to_host(t.m, 0x10000, UINT64_MAX) == NULL);
	CHECK(vhd_mem_guest_to_host(t.m, UINT64_MAX, 2) == NULL); /* wraps */
	vhd_mem_destroy(t.m);
	free(t.block);
}

static void test_user_to_host(void)
{
	struct two t = two_adjacent();
	/* user 0x7f0000010000 -> a, 0x7f0000011000 -> b */
	CHECK(vhd_mem_user_to_host(t.m, 0x7f0000010000ull, PG) == t.a);
	CHECK(vhd_mem_user_to_host(t.m, 0x7f0000010010ull, 0x10) == t.a + 0x10);
	CHECK(vhd_mem_user_to_host(t.m, 0x7f0000011ff8ull, 8) == t.b + PG - 8);
	CHECK(vhd_mem_user_to_host(t.m, 0x7f0000011ff8ull, 9) == NULL);
	CHECK(vhd_mem_user_to_host(t.m, 0x7f0000010ff8ull, 0x10) == NULL); /* two regions */
	CHECK(vhd_mem_user_to_host(t.m, 0x7f000000fff0ull, 0x10) == NULL);
	CHECK(vhd_mem_user_to_host(t.m, 0x7f0000010000ull, 0) == NULL);
	CHECK(vhd_mem_user_to_host(t.m, UINT64_MAX - 4, 0x10) == NULL);
	/* Guest addresses are not user addresses. */
	CHECK(vhd_mem_user_to_host(t.m, 0x10000, 1) == NULL);
	vhd_mem_destroy(t.m);
	free(t.block);
}

/* ---------------------------------------------------------------- fd-backed regions ---------------------------------------------------------------- */

static int make_memfd(const char *name, size_t size)
{
	int fd = memfd_create(name, MFD_CLOEXEC);
	if (fd < 0)
		th_skip("memfd_create: %s", strerror(errno));
	CHECK_EQ(ftruncate(fd, (off_t)size), 0);
	return fd;
}

static bool fd_open(int fd)
{
	errno = 0;
	int r = fcntl(fd, F_GETFD);
	return !(r == -1 && errno == EBADF);
}

/* Lines of /proc/self/maps that name the memfd. */
static int maps_with(const char *name)
{
	FILE *f = fopen("/proc/self/maps", "r");
	CHECK(f != NULL);
	char line[1024];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, name))
			n++;
	fclose(f);
	return n;
}

static bool page_mapped(const void *p)
{
	unsigned char v;
	void *pg = (void *)((uintptr_t)p & ~(uintptr_t)(PG - 1));
	return mincore(pg, PG, &v) == 0;
}

static void test_map_fd_unaligned(void)
{
	const size_t fsize = 4 * PG;
	int fd = make_memfd("vhd-test-mapfd", fsize);
	/* Our own view of the file, separate from the table's mapping. */
	uint8_t *view = mmap(NULL, fsize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(view != MAP_FAILED);
	struct vhd_mem *m = mem_new();
	const uint64_t off = PG + 0x123, size = 2 * PG;
	CHECK_EQ(vhd_mem_map_fd(m, fd, off, 0x40000000ull, size, 0x7f0000000000ull), 0);
	CHECK_EQ(vhd_mem_count(m), 1);

	for (size_t i = 0; i < fsize; i++)
		view[i] = (uint8_t)(i * 7 + 3);
	struct iovec iov[2];
	unsigned hint = 0;
	CHECK_EQ(vhd_mem_translate(m, &hint, 0x40000000ull, size, iov, 2), 1);
	uint8_t *h = iov[0].iov_base;
	CHECK(h != view + off); /* a different mapping of the same bytes */
	CHECK_EQ(iov[0].iov_len, size);
	CHECK_EQ(memcmp(h, view + off, size), 0);
	CHECK_EQ(h[0], (uint8_t)(off * 7 + 3));
	/* And the other way round. */
	h[size - 1] = 0x5a;
	CHECK_EQ(view[off + size - 1], 0x5a);
	CHECK(vhd_mem_guest_to_host(m, 0x40000000ull + 0x10, 4) == h + 0x10);
	CHECK(vhd_mem_user_to_host(m, 0x7f0000000000ull + 0x20, 4) == h + 0x20);
	CHECK(vhd_mem_guest_to_host(m, 0x40000000ull + size - 1, 2) == NULL);
	/* The table owns fd now; our mapping stays usable after remove. */
	CHECK(fd_open(fd));
	CHECK(page_mapped(h));
	CHECK_EQ(vhd_mem_remove(m, 0x40000000ull, size), 0);
	CHECK(!fd_open(fd));
	CHECK(!page_mapped(h));
	CHECK_EQ(maps_with("vhd-test-mapfd"), 1); /* only our own view is left */
	CHECK_EQ(view[off + size - 1], 0x5a);
	munmap(view, fsize);
	vhd_mem_destroy(m);
}

static void test_map_fd_destroy_closes(void)
{
	int fd1 = make_memfd("vhd-test-destroy", 2 * PG);
	int fd2 = make_memfd("vhd-test-destroy", 2 * PG);
	static uint8_t buf[PG];
	struct vhd_mem *m = mem_new();
	CHECK_EQ(vhd_mem_map_fd(m, fd1, 0, 0x100000, 2 * PG, 0), 0);
	CHECK_EQ(vhd_mem_map_fd(m, fd2, 0x10, 0x200000, PG, 0), 0);
	CHECK_EQ(add(m, 0x300000, PG, 0, buf), 0); /* caller-owned: must survive */
	CHECK_EQ(maps_with("vhd-test-destroy"), 2);
	uint8_t *h1 = vhd_mem_guest_to_host(m, 0x100000, 1);
	uint8_t *h2 = vhd_mem_guest_to_host(m, 0x200000, 1);
	CHECK(h1 && h2);
	h1[0] = 1;
	h2[0] = 2;
	vhd_mem_destroy(m);
	CHECK(!fd_open(fd1));
	CHECK(!fd_open(fd2));
	CHECK_EQ(maps_with("vhd-test-destroy"), 0);
	CHECK(!page_mapped(h1));
	CHECK(!page_mapped(h2));
	buf[0] = 3; /* still ours */
	CHECK(page_mapped(buf));
}

/* QEMU 7.2 with two queue pairs: every region arrives twice (ADD_MEM_REG per vhost_dev) and leaves twice. */
static void test_map_fd_same_region_twice(void)
{
	int fd = make_memfd("vhd-test-twice", 4 * PG);
	int fd2 = dup(fd), fd3 = dup(fd), fd4 = dup(fd);
	int other = make_memfd("vhd-test-twice", 4 * PG);
	struct vhd_mem *m = mem_new();
	CHECK_EQ(vhd_mem_map_fd(m, fd, 0, 0x100000, 2 * PG, 0x7000000), 0);
	uint8_t *h = vhd_mem_guest_to_host(m, 0x100000, 1);
	CHECK(h);
	CHECK_EQ(vhd_mem_map_fd(m, fd2, 0, 0x100000, 2 * PG, 0x7000000), 0); /* a reference, not a second map */
	CHECK(!fd_open(fd2));
	CHECK_EQ(vhd_mem_count(m), 1u);
	CHECK_EQ(maps_with("vhd-test-twice"), 1);
	/* Anything not identical still overlaps: another offset, another user address, another file. */
	CHECK_EQ(vhd_mem_map_fd(m, fd3, PG, 0x100000, 2 * PG, 0x7000000), -EEXIST);
	CHECK_EQ(vhd_mem_map_fd(m, fd3, 0, 0x100000, 2 * PG, 0x8000000), -EEXIST);
	CHECK_EQ(vhd_mem_map_fd(m, other, 0, 0x100000, 2 * PG, 0x7000000), -EEXIST);
	CHECK(fd_open(fd3));
	CHECK(fd_open(other));
	CHECK_EQ(vhd_mem_remove(m, 0x100000, 2 * PG), 0); /* first removal: still mapped */
	CHECK(page_mapped(h));
	CHECK_EQ(vhd_mem_guest_to_host(m, 0x100000, 1), h);
	CHECK_EQ(vhd_mem_remove(m, 0x100000, 2 * PG), 0); /* last: gone */
	CHECK(!fd_open(fd));
	CHECK_EQ(vhd_mem_count(m), 0u);
	CHECK_EQ(vhd_mem_remove(m, 0x100000, 2 * PG), -ENOENT);
	CHECK_EQ(vhd_mem_map_fd(m, fd4, 0, 0x100000, 2 * PG, 0x7000000), 0); /* and back */
	vhd_mem_destroy(m);
	CHECK(!fd_open(fd4));
	CHECK_EQ(maps_with("vhd-test-twice"), 0);
	close(fd3);
	close(other);
}

static void test_map_fd_errors(void)
{
	int fd = make_memfd("vhd-test-maperr", 2 * PG);
	static uint8_t buf[PG];
	struct vhd_mem *m = mem_new();
	CHECK_EQ(add(m, 0x100000, PG, 0, buf), 0);
	/* Overlap: fd stays the caller's and nothing stays mapped. */
	CHECK_EQ(vhd_mem_map_fd(m, fd, 0, 0x100800, PG, 0), -EEXIST);
	CHECK(fd_open(fd));
	CHECK_EQ(maps_with("vhd-test-maperr"), 0);
	CHECK_EQ(vhd_mem_map_fd(m, fd, 0, 0x200000, 0, 0), -EINVAL);
	CHECK_EQ(vhd_mem_map_fd(m, fd, UINT64_MAX - 0x10, 0x200000, PG, 0), -EINVAL);
	CHECK_EQ(vhd_mem_map_fd(m, -1, 0, 0x200000, PG, 0), -EINVAL);
	CHECK_EQ(vhd_mem_map_fd(m, fd, 0, UINT64_MAX - 0x10, PG, 0), -EINVAL); /* guest range wraps */
	CHECK(fd_open(fd));
	CHECK_EQ(maps_with("vhd-test-maperr"), 0);
	/* mmap itself failing: an fd that cannot be mapped read-write shared. */
	int rofd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (rofd >= 0) {
		int r = vhd_mem_map_fd(m, rofd, 0, 0x400000, PG, 0);
		CHECK(r < 0);
		CHECK(fd_open(rofd));
		close(rofd);
	}
	CHECK_EQ(vhd_mem_count(m), 1);
	/* Full table. */
	for (unsigned i = 1; i < VHD_MEM_MAX_REGIONS; i++)
		CHECK_EQ(add(m, 0x1000000ull * i, PG, 0, buf), 0);
	CHECK_EQ(vhd_mem_map_fd(m, fd, 0, 0x200000, PG, 0), -ENOSPC);
	CHECK(fd_open(fd));
	CHECK_EQ(maps_with("vhd-test-maperr"), 0);
	vhd_mem_destroy(m);
	CHECK(fd_open(fd));
	close(fd);
}

/* Found by tests/fuzz/fuzz_vu_msg: a region longer than its file mapped fine, and the first descriptor that
 * pointed past the file's end killed the process with SIGBUS. Such a region is refused, fd left to the caller. */
static void test_map_fd_past_file_end(void)
{
	int fd = make_memfd("vhd-test-short", PG);
	struct vhd_mem *m = mem_new();
	CHECK_EQ(vhd_mem_map_fd(m, fd, 0, 0x100000, 16 * PG, 0), -EINVAL);
	CHECK_EQ(vhd_mem_map_fd(m, fd, PG, 0x100000, PG, 0), -EINVAL);        /* offset at the end */
	CHECK_EQ(vhd_mem_map_fd(m, fd, 0x10, 0x100000, PG, 0), -EINVAL);      /* one page, 16 bytes over */
	CHECK_EQ(vhd_mem_map_fd(m, fd, UINT64_MAX - 1, 0x100000, PG, 0), -EINVAL);
	CHECK(fd_open(fd));
	CHECK_EQ(vhd_mem_count(m), 0u);
	CHECK_EQ(maps_with("vhd-test-short"), 0);
	CHECK_EQ(vhd_mem_map_fd(m, fd, 0x10, 0x100000, PG - 0x10, 0), 0); /* exactly to the end is fine */
	CHECK_EQ(vhd_mem_count(m), 1u);
	vhd_mem_destroy(m);
}

/*
 * The SIGBUS guard (vhd_mem_guard_sigbus()): a front-end that shrinks its memory file after the region was
 * accepted. Without the guard the read below kills the process (tried: the case then fails as a crash).
 */
static void test_guard_absorbs_shrunk_file(void)
{
	int fd = make_memfd("vhd-test-shrink", 4 * PG);
	int other = make_memfd("vhd-test-other", PG);
	struct vhd_mem *m = mem_new(), *m2 = mem_new();
	CHECK_EQ(vhd_mem_map_fd(m, dup(fd), 0, 0x100000, 4 * PG, 0), 0);
	CHECK_EQ(vhd_mem_map_fd(m2, other, 0, 0x100000, PG, 0), 0);
	int sv[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	vhd_mem_set_wake_fd(m, sv[0]);
	CHECK_EQ(vhd_mem_guard_sigbus(), 0);
	CHECK_EQ(vhd_mem_guard_sigbus(), 0); /* again: nothing changes */
	volatile uint8_t *h = vhd_mem_guest_to_host(m, 0x100000, 4 * PG);
	volatile uint8_t *h2 = vhd_mem_guest_to_host(m2, 0x100000, PG);
	CHECK(h != NULL && h2 != NULL);
	h[PG] = 7;
	h2[0] = 9;
	CHECK_EQ(h[PG], 7);
	uint64_t hits = vhd_mem_guard_hits(), gpa = 0;
	CHECK(!vhd_mem_faulted(m, &gpa));

	CHECK_EQ(ftruncate(fd, 0), 0); /* what a hostile front-end does to its memfd */
	CHECK_EQ(h[PG], 0);            /* SIGBUS absorbed: the region reads zeros now */
	CHECK_EQ(vhd_mem_guard_hits(), hits + 1);
	CHECK(vhd_mem_faulted(m, &gpa));
	CHECK_EQ(gpa, 0x100000);
	h[3 * PG] = 5; /* the replacement is writable, and the whole region was replaced: no second fault */
	CHECK_EQ(h[3 * PG], 5);
	CHECK_EQ(vhd_mem_guard_hits(), hits + 1);
	/* The owner's socket was shut down, so its event loop sees the end of the connection at once. */
	struct pollfd p = {.fd = sv[1], .events = POLLIN};
	CHECK_EQ(poll(&p, 1, 5000), 1);
	char b;
	CHECK_EQ(recv(sv[1], &b, 1, 0), 0);
	/* Another table, another file: untouched. */
	CHECK(!vhd_mem_faulted(m2, NULL));
	CHECK_EQ(h2[0], 9);
	vhd_mem_destroy(m);
	vhd_mem_destroy(m2);
	CHECK_EQ(maps_with("vhd-test-shrink"), 0);
	close(sv[0]);
	close(sv[1]);
	close(fd);
}

/* Run fn in a child that reports on a pipe just before the fault it provokes; returns the child's wait status,
 * after checking that it got that far. */
static int child_status(void (*fn)(int report_fd))
{
	int pfd[2];
	CHECK_EQ(pipe(pfd), 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(pfd[0]);
		fn(pfd[1]);
		_exit(0); /* survived the fault: the parent fails the case */
	}
	close(pfd[1]);
	char c = 0;
	CHECK_EQ(read(pfd[0], &c, 1), 1);
	CHECK_EQ(c, 'x');
	close(pfd[0]);
	int st;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	return st;
}

/* A SIGBUS outside every table's mappings is not the guard's: the process dies as it would without it. */
static void fault_elsewhere(int report_fd)
{
	CHECK_EQ(vhd_mem_guard_sigbus(), 0);
	int fd = make_memfd("vhd-test-unrelated", PG);
	volatile uint8_t *p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED);
	CHECK_EQ(ftruncate(fd, 0), 0);
	CHECK_EQ(write(report_fd, "x", 1), 1);
	(void)p[0];
}

/* ... nor is one in the address range of a region whose table is gone, now mapped by someone else. */
static void fault_after_destroy(int report_fd)
{
	CHECK_EQ(vhd_mem_guard_sigbus(), 0);
	struct vhd_mem *m = mem_new();
	CHECK_EQ(vhd_mem_map_fd(m, make_memfd("vhd-test-gone", PG), 0, 0x100000, PG, 0), 0);
	void *was = vhd_mem_guest_to_host(m, 0x100000, PG);
	vhd_mem_destroy(m);
	int fd = make_memfd("vhd-test-reused", PG);
	volatile uint8_t *p = mmap(was, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	CHECK(p == was);
	CHECK_EQ(ftruncate(fd, 0), 0);
	CHECK_EQ(write(report_fd, "x", 1), 1);
	(void)p[0];
}

static void test_guard_passes_other_faults_on(void)
{
	void (*fns[])(int) = {fault_elsewhere, fault_after_destroy};
	for (unsigned i = 0; i < 2; i++) {
		int st = child_status(fns[i]);
		/* Killed by SIGBUS; under AddressSanitizer its own handler (which the guard passes the fault to)
		 * reports it and exits non-zero, or aborts (abort_on_error=1, as make check runs it). Never a
		 * clean exit: that would mean the guard took the fault. */
		CHECK(!(WIFEXITED(st) && WEXITSTATUS(st) == 0));
		if (WIFSIGNALED(st))
			CHECK(WTERMSIG(st) == SIGBUS || WTERMSIG(st) == SIGABRT);
	}
}

static const struct th_case cases[] = {
	{"add_and_count", test_add_and_count, 0},
	{"add_overlap_eexist", test_add_overlap, 0},
	{"add_invalid_einval", test_add_invalid, 0},
	{"add_full_enospc", test_add_full, 0},
	{"remove", test_remove, 0},
	{"translate_one_region", test_translate_one_region, 0},
	{"translate_two_adjacent_regions", test_translate_two_adjacent, 0},
	{"translate_hole_efault", test_translate_hole, 0},
	{"translate_past_end_efault", test_translate_past_end, 0},
	{"translate_wrap_eoverflow", test_translate_wrap, 0},
	{"translate_few_iov_enobufs", test_translate_enobufs, 0},
	{"translate_len0", test_translate_len0, 0},
	{"translate_stale_hint", test_translate_stale_hint, 0},
	{"guest_to_host_bounds", test_guest_to_host, 0},
	{"user_to_host_bounds", test_user_to_host, 0},
	{"map_fd_unaligned_offset", test_map_fd_unaligned, 0},
	{"map_fd_destroy_closes_and_unmaps", test_map_fd_destroy_closes, 0},
	{"map_fd_errors_keep_fd", test_map_fd_errors, 0},
	{"map_fd_same_region_twice_is_a_reference", test_map_fd_same_region_twice, 0},
	{"fuzz_mem_map_fd_past_file_end", test_map_fd_past_file_end, 0},
	{"guard_absorbs_shrunk_file", test_guard_absorbs_shrunk_file, 0},
	{"guard_passes_other_faults_on", test_guard_passes_other_faults_on, 0},
};
TH_MAIN("test_mem", cases)
