/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: the device side of a virtqueue (the descriptor walker) over a guest memory image the
 * fuzzer writes. Split or packed, with or without INDIRECT_DESC, EVENT_IDX and IN_ORDER, the ring size, start
 * position, ring placement and the image all come from the input; vhd_vq_pop() runs for a few rounds, with the
 * "driver" patching the image between rounds, and everything popped is pushed back (some of it unpopped first).
 *
 * Input: mode u8 (bit 0 packed, 1 INDIRECT_DESC, 2 EVENT_IDX, 3 IN_ORDER, 4 a hole between the two memory
 * regions, 5 ACCESS_PLATFORM), size u8, base u16, desc/driver/device offsets u16 each, iov count u8, burst u8,
 * rounds u8, region split u16, image length u16 and that many image bytes; with ACCESS_PLATFORM then a u64, two
 * permission bits for each of the image's CHUNK-byte chunks (0: unmapped, else VHD_IOTLB_RO/WO/RW), each chunk
 * an IOTLB entry as a guest behind intel-iommu maps its pages (IOVA = guest address); then per round: control
 * u8 (low bits: chains to push, bit 7: unpop the last chain), patch count u8, and that many (offset u16, value
 * u16) writes into the image, and with ACCESS_PLATFORM one u8 (low 5 bits a chunk, the next two its new
 * permission, 0 an invalidation) applied to the IOTLB between rounds.
 *
 * Checked beyond the sanitizers: every segment popped lies inside the image, the lengths a chain reports are
 * the sums of its segments, and with ACCESS_PLATFORM every segment lies in chunks mapped at that moment with
 * the access the device will make (read for driver-readable, write for writable), so no window or hint
 * outlives an update or invalidation.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "fuzz_rig.h"
#include "spec/virtio_config.h"
#include "spec/virtio_ring.h"
#include "vhostd/iotlb.h"
#include "vhostd/mem.h"
#include "vhostd/virtq.h"

#define IMG_SIZE 16384u
#define MAX_NUM 256u
#define MAX_IOV 64u
#define MAX_BURST 16u
#define MAX_ROUNDS 8u
#define GUEST_BASE 0x0u
#define HOLE 0x10000u
#define CHUNK 512u
#define NCHUNK (IMG_SIZE / CHUNK)
#define UBASE 0x7f0000000000ull

static uint8_t *img;

/* With ACCESS_PLATFORM: what the IOTLB allows in each chunk now (VHD_IOTLB_* bits, 0 unmapped). */
static uint8_t chunk_perm[NCHUNK];
static bool iommu;

/* Map (perm nonzero) or invalidate chunk k, keeping chunk_perm[] true to the IOTLB. */
static void set_chunk(struct vhd_iotlb *t, const struct vhd_mem *mem, unsigned k, unsigned perm)
{
	if (perm == 0) {
		FZ_ASSERT(vhd_iotlb_invalidate(t, GUEST_BASE + k * CHUNK, CHUNK) >= 0);
		chunk_perm[k] = 0;
	} else if (vhd_iotlb_update(t, mem, GUEST_BASE + k * CHUNK, CHUNK, UBASE + k * CHUNK, perm) == 0) {
		chunk_perm[k] = (uint8_t)perm;
	} else {
		/* Refused (the chunk straddles the two regions): whatever the chunk held is gone too. */
		FZ_ASSERT(vhd_iotlb_invalidate(t, GUEST_BASE + k * CHUNK, CHUNK) >= 0);
		chunk_perm[k] = 0;
	}
}

/* Every byte of v lies in chunks that allow perm. */
static bool allowed(const struct iovec *v, unsigned perm)
{
	size_t off = (size_t)((const uint8_t *)v->iov_base - img);
	for (size_t k = off / CHUNK; v->iov_len && k <= (off + v->iov_len - 1) / CHUNK; k++)
		if ((chunk_perm[k] & perm) != perm)
			return false;
	return true;
}

int fz_verbose;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fz_init();
	img = aligned_alloc(4096, IMG_SIZE);
	return img ? 0 : -1;
}

/* Place a ring part of len bytes at off, moved into the image and aligned down to align. */
static void *place(uint16_t off, size_t len, size_t align)
{
	size_t room = IMG_SIZE - len + 1;
	return img + (((size_t)off % room) & ~(align - 1));
}

static bool in_image(const struct iovec *v)
{
	const uint8_t *b = v->iov_base;
	return v->iov_len == 0 || (b >= img && v->iov_len <= IMG_SIZE && b - img <= (ptrdiff_t)(IMG_SIZE - v->iov_len));
}

/* Check a popped chain against the image, read what the driver offered and write what it may receive. */
static uint32_t use_chain(const struct vhd_vq_chain *c, unsigned niov_left)
{
	if (c->err) {
		FZ_ASSERT(c->err == -ENOBUFS && c->nout == 0 && c->nin == 0);
		return 0;
	}
	FZ_ASSERT((unsigned)c->nout + c->nin <= niov_left);
	uint64_t out = 0, in = 0;
	volatile uint8_t sink = 0;
	for (unsigned i = 0; i < (unsigned)c->nout + c->nin; i++) {
		const struct iovec *v = &c->iov[i];
		FZ_ASSERT(in_image(v));
		FZ_ASSERT(!iommu || allowed(v, i < c->nout ? VHD_IOTLB_RO : VHD_IOTLB_WO));
		if (i < c->nout) {
			out += v->iov_len;
			for (size_t k = 0; k < v->iov_len; k++)
				sink ^= ((const uint8_t *)v->iov_base)[k];
		} else {
			in += v->iov_len;
			memset(v->iov_base, 0xa5, v->iov_len);
		}
	}
	(void)sink;
	FZ_ASSERT(out == c->out_len && in == c->in_len);
	return c->in_len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint8_t mode = fz_u8(&in);
	bool packed = mode & 1;
	uint64_t features = VHD_BIT(VIRTIO_F_VERSION_1) | fz_ring_features(mode);
	uint8_t sz = fz_u8(&in);
	unsigned num = packed ? sz % MAX_NUM + 1 : 1u << (sz % 9);
	uint16_t base = fz_u16(&in);
	uint16_t desc_off = fz_u16(&in), driver_off = fz_u16(&in), device_off = fz_u16(&in);
	unsigned niov = fz_u8(&in) % MAX_IOV + 1;
	unsigned burst = fz_u8(&in) % MAX_BURST + 1;
	unsigned rounds = fz_u8(&in) % MAX_ROUNDS + 1;
	size_t split = fz_u16(&in) % IMG_SIZE;
	size_t len = fz_u16(&in);
	memset(img, 0, IMG_SIZE);
	fz_bytes(&in, img, len < IMG_SIZE ? len : IMG_SIZE);
	iommu = mode & 32;
	uint64_t perms = iommu ? fz_u64(&in) : 0;

	/* Two regions over the one image, adjacent in guest memory (a chain may cross them) or apart. */
	struct vhd_mem *mem;
	if (vhd_mem_create(&mem) < 0)
		return 0;
	struct vhd_mem_region_info a = {GUEST_BASE, split ? split : IMG_SIZE, UBASE, img};
	vhd_mem_add(mem, &a);
	if (split) {
		uint64_t gap = (mode & 16) ? HOLE : 0;
		struct vhd_mem_region_info b = {GUEST_BASE + split + gap, IMG_SIZE - split, UBASE + split, img + split};
		vhd_mem_add(mem, &b);
	}
	struct vhd_iotlb *iotlb = NULL;
	if (iommu) {
		if (vhd_iotlb_create(0, &iotlb) < 0) {
			vhd_mem_destroy(mem);
			return 0;
		}
		for (unsigned k = 0; k < NCHUNK; k++)
			set_chunk(iotlb, mem, k, (unsigned)(perms >> (2 * k)) & 3);
	}

	size_t dsz = packed ? sizeof(struct pvirtq_desc) * num : virtq_desc_size(num);
	size_t asz = packed ? sizeof(struct pvirtq_event_suppress) : virtq_avail_size(num);
	size_t usz = packed ? sizeof(struct pvirtq_event_suppress) : virtq_used_size(num);
	struct vhd_vq_config cfg = {
		.side = VHD_VQ_DEVICE,
		.num = (uint16_t)num,
		.features = features,
		.desc = place(desc_off, dsz, 16),
		.driver = place(driver_off, asz, 4),
		.device = place(device_off, usz, 4),
		.mem = mem,
		.iotlb = iotlb,
		.base = base,
		.name = "fuzz",
	};
	struct vhd_vq *vq;
	if (vhd_vq_create(&cfg, &vq) < 0) {
		FZ_SAY("vhd_vq_create refused\n");
		vhd_iotlb_destroy(iotlb);
		vhd_mem_destroy(mem);
		return 0;
	}

	/* Chains popped and not yet pushed, in pop order (IN_ORDER needs them back in that order). */
	struct vhd_vq_used pending[MAX_BURST * MAX_ROUNDS];
	unsigned npending = 0;
	struct vhd_vq_chain chains[MAX_BURST];
	struct iovec iov[MAX_IOV];
	bool broken = false;
	for (unsigned r = 0; r < rounds && !broken; r++) {
		uint8_t ctl = fz_u8(&in);
		int n = vhd_vq_pop(vq, chains, burst, iov, niov);
		if (n < 0) {
			FZ_SAY("broken: %s\n", vhd_vq_error_detail(vq));
			FZ_ASSERT(n == -EIO && vhd_vq_error(vq) != VHD_VQ_OK && vhd_vq_error_detail(vq)[0]);
			broken = true;
			break;
		}
		FZ_ASSERT((unsigned)n <= burst);
		FZ_SAY("round %u: %d chains\n", r, n);
		unsigned used_iov = 0;
		for (int i = 0; i < n; i++) {
			uint32_t wlen = use_chain(&chains[i], niov - used_iov);
			used_iov += chains[i].nout + chains[i].nin;
			pending[npending++] = (struct vhd_vq_used){chains[i].id, chains[i].ndesc, wlen};
		}
		if ((ctl & 0x80) && n > 0) {
			if (vhd_vq_unpop(vq, &pending[npending - 1], 1) < 0)
				broken = true;
			npending--;
		}
		unsigned k = (ctl & 0x7f) % (npending + 1);
		if (!broken && k) {
			int rc = vhd_vq_push(vq, pending, k);
			FZ_ASSERT(rc == (int)k || rc == -EIO);
			broken = rc < 0;
			memmove(pending, pending + k, (npending - k) * sizeof(pending[0]));
			npending -= k;
		}
		(void)vhd_vq_need_notify(vq);
		if (ctl & 0x40)
			(void)vhd_vq_enable_notify(vq);
		else
			vhd_vq_disable_notify(vq);
		/* The driver moves on: indices, flags and descriptors change between bursts. */
		unsigned npatch = fz_u8(&in) % 16;
		for (unsigned i = 0; i < npatch; i++) {
			uint16_t off = fz_u16(&in) % (IMG_SIZE - 1), v = fz_u16(&in);
			memcpy(img + off, &v, 2);
		}
		if (iommu) {
			/* The front-end's UPDATE or INVALIDATE, between bursts as the back-end applies them; a miss
			 * recorded is forgotten (the chain stays in the ring and is tried again). */
			uint8_t u = fz_u8(&in);
			set_chunk(iotlb, mem, u % NCHUNK, (u >> 5) & 3);
			struct vhd_vq_miss m[4];
			(void)vhd_vq_take_misses(vq, m, 4);
		}
	}
	if (!broken && npending)
		FZ_ASSERT(vhd_vq_push(vq, pending, npending) == (int)npending || vhd_vq_error(vq) != VHD_VQ_OK);
	(void)vhd_vq_base(vq);
	(void)vhd_vq_used_base(vq);
	vhd_vq_destroy(vq);
	vhd_iotlb_destroy(iotlb);
	vhd_mem_destroy(mem);
	return 0;
}
