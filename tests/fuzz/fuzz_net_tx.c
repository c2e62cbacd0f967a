/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: virtio-net transmit on the device side. Our own driver-side queue offers frames whose
 * bytes (virtio_net_hdr then packet) come from the input, each split over 1..3 descriptors (or an indirect
 * table) as the input says; vhd_net_dev_dequeue() takes them under features from the input. Every packet it
 * returns then goes where the switch would send it: header -> meta -> header round trip, the software checksum
 * (net_csum_complete) and, for TCP GSO frames, software segmentation (sw_gso_segment) with each segment's
 * checksum completed.
 *
 * Input: features u32 (bit i turns on feature_bits[i]), packed u8 (bit 0 RING_PACKED), pool u8 (buffer size
 * class), burst u8, frame count u8; per frame: segments u8 (count 1..3 in bits 0-1, bit 2 indirect), two cut
 * points u16, length u16, that many bytes.
 *
 * Checked beyond the sanitizers: a packet holds exactly the frame bytes offered after the header; its meta
 * survives the round trip through a header; a dropped frame is counted; no packet is lost from any pool.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "fuzz_rig.h"
#include "net/net_impl.h"
#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "switch/gso.h"
#include "vhostd/mem.h"
#include "vhostd/net.h"
#include "vhostd/pkt.h"
#include "vhostd/virtq.h"

#define NUM 32u
#define MAX_FRAMES 8u
#define IND_MAX 4u
#define IMG_SIZE (256u * 1024)
#define IND_OFF 0x4000u
#define DATA_OFF 0x8000u
#define GUEST_BASE 0x100000u
#define POOL_COUNT 16u
#define SEG_MAX 64u

static const unsigned feature_bits[] = {
	VIRTIO_F_VERSION_1,	    VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_CSUM,	     VIRTIO_NET_F_GUEST_CSUM,
	VIRTIO_NET_F_HOST_TSO4,	    VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_HOST_UFO,   VIRTIO_NET_F_HOST_USO,
	VIRTIO_NET_F_HOST_ECN,	    VIRTIO_NET_F_GUEST_HDRLEN, VIRTIO_NET_F_HASH_REPORT, VIRTIO_F_INDIRECT_DESC,
	VIRTIO_F_EVENT_IDX,	    VIRTIO_F_IN_ORDER,	    VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
	VIRTIO_NET_F_GUEST_ECN,	    VIRTIO_NET_F_RSC_EXT,
};
#define NFEATURES (sizeof(feature_bits) / sizeof(feature_bits[0]))

static const uint32_t pool_sizes[] = {VHD_PKT_MIN_BUF_SIZE, VHD_PKT_DEFAULT_BUF_SIZE, 10240, VHD_PKT_MAX_BUF_SIZE};
#define NPOOLS (sizeof(pool_sizes) / sizeof(pool_sizes[0]))

static uint8_t *img;
static struct vhd_mem *mem;
static struct vhd_pktpool *pools[NPOOLS], *seg_pool;
int fz_verbose;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fz_init();
	if (fz_image(IMG_SIZE, GUEST_BASE, &img, &mem) < 0)
		return -1;
	for (unsigned i = 0; i < NPOOLS; i++)
		if (vhd_pktpool_create(POOL_COUNT, pool_sizes[i], &pools[i]) < 0)
			return -1;
	return vhd_pktpool_create(SEG_MAX, 10240, &seg_pool);
}

struct frame {
	const uint8_t *bytes; /* in the input */
	size_t len;
};

/* Offer one frame: its bytes are copied into guest memory as 1..3 segments with gaps between them, so a
 * gather that crossed a segment boundary wrongly would show in the packet. */
static int offer(struct vhd_vq *drv, struct fz_in *in, size_t *cursor, struct frame *f, void *token)
{
	uint8_t shape = fz_u8(in);
	unsigned nseg = shape % 4 ? shape % 4 : 1;
	uint16_t cut[2] = {fz_u16(in), fz_u16(in)};
	size_t len = fz_u16(in);
	if (len > in->left)
		len = in->left;
	f->bytes = in->p;
	f->len = len;
	in->p += len;
	in->left -= len;

	size_t at[4] = {0, 0, 0, len};
	for (unsigned i = 1; i < nseg; i++)
		at[i] = len ? cut[i - 1] % (len + 1) : 0;
	if (nseg == 3 && at[2] < at[1]) {
		size_t t = at[1];
		at[1] = at[2];
		at[2] = t;
	}
	at[nseg] = len;
	struct vhd_vq_seg segs[3];
	for (unsigned i = 0; i < nseg; i++) {
		size_t n = at[i + 1] - at[i];
		if (*cursor + n + 64 > IMG_SIZE)
			return -ENOSPC;
		memcpy(img + *cursor, f->bytes + at[i], n);
		segs[i] = (struct vhd_vq_seg){GUEST_BASE + *cursor, (uint32_t)n};
		*cursor = (*cursor + n + 64) & ~(size_t)15;
	}
	struct vhd_vq_buf b = {segs, (uint16_t)nseg, 0, (shape & 4) ? VHD_VQ_BUF_INDIRECT : 0, token};
	return vhd_vq_add(drv, &b, 1);
}

/* The switch's way with a packet bound for a port without offloads: segment TCP GSO, complete checksums. */
static void like_the_switch(struct vhd_pkt *p)
{
	struct vhd_pkt *seg[SEG_MAX];
	unsigned n = sw_gso_segment(p, seg_pool, seg, SEG_MAX);
	FZ_SAY("gso: %u segments\n", n);
	for (unsigned i = 0; i < n; i++) {
		FZ_ASSERT(seg[i]->len <= p->len);
		FZ_ASSERT(seg[i]->meta.flags & VHD_NET_META_F_NEEDS_CSUM);
		FZ_ASSERT((uint32_t)seg[i]->meta.csum_start + seg[i]->meta.csum_offset + 2 <= seg[i]->len);
		net_csum_complete(seg[i]);
	}
	vhd_pkt_free_bulk(seg, n);
	if (p->meta.flags & VHD_NET_META_F_NEEDS_CSUM)
		net_csum_complete(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint32_t fsel = fz_u32(&in);
	uint64_t features = 0;
	for (unsigned i = 0; i < NFEATURES; i++)
		if (fsel & (1u << i))
			features |= VHD_BIT(feature_bits[i]);
	if (fz_u8(&in) & 1)
		features |= VHD_BIT(VIRTIO_F_RING_PACKED);
	struct vhd_pktpool *pool = pools[fz_u8(&in) % NPOOLS];
	unsigned burst = fz_u8(&in) % (MAX_FRAMES + 2);
	unsigned nframes = fz_u8(&in) % MAX_FRAMES + 1;
	struct vhd_net_cfg cfg;
	if (vhd_net_cfg_init(&cfg, features) < 0)
		return 0;

	struct vhd_vq_layout lay;
	struct vhd_vq *drv, *dev;
	memset(img, 0, DATA_OFF);
	fz_queue_pair(img, GUEST_BASE, mem, features, NUM, IND_OFF, IND_MAX, &lay, &drv, &dev);

	struct frame frames[MAX_FRAMES];
	unsigned offered = 0;
	size_t cursor = DATA_OFF;
	while (offered < nframes && offer(drv, &in, &cursor, &frames[offered], &frames[offered]) == 1)
		offered++;
	FZ_SAY("features 0x%llx hdr %u: %u frames offered\n", (unsigned long long)features, cfg.hdr_size, offered);

	struct vhd_pkt *pkts[MAX_FRAMES + 2];
	struct vhd_net_stats st = {0};
	int n = vhd_net_dev_dequeue(dev, &cfg, pool, pkts, burst, &st);
	FZ_SAY("dequeue: %d (bad_header %llu gso_unsupported %llu too_small %llu too_big %llu errors %llu)\n", n,
	       (unsigned long long)st.bad_header, (unsigned long long)st.gso_unsupported,
	       (unsigned long long)st.too_small, (unsigned long long)st.too_big, (unsigned long long)st.errors);
	/* Our own driver wrote a well-formed ring: nothing here may break the queue. */
	FZ_ASSERT(n >= 0);
	uint64_t dropped = st.bad_header + st.gso_unsupported + st.too_small + st.too_big + st.errors;
	FZ_ASSERT((unsigned)n + dropped <= offered && (unsigned)n <= burst);

	/* The frames came out in order; match each packet to its frame, skipping the dropped ones. */
	unsigned fi = 0;
	for (int i = 0; i < n; i++) {
		struct vhd_pkt *p = pkts[i];
		while (fi < offered && (frames[fi].len < cfg.hdr_size || frames[fi].len - cfg.hdr_size != p->len ||
					memcmp(frames[fi].bytes + cfg.hdr_size, vhd_pkt_data(p), p->len)))
			fi++;
		FZ_ASSERT(fi < offered);
		fi++;
		const struct vhd_net_meta *m = &p->meta;
		if (m->flags & VHD_NET_META_F_NEEDS_CSUM)
			FZ_ASSERT((uint32_t)m->csum_start + m->csum_offset + 2 <= p->len);
		struct virtio_net_hdr_v1_hash w;
		struct vhd_net_meta back;
		net_meta_to_hdr(m, m->flags, &w);
		net_hdr_to_meta(&w.h.hdr, 0xff, &back);
		FZ_ASSERT(!memcmp(&back, m, sizeof(back)));
		like_the_switch(p);
	}
	vhd_pkt_free_bulk(pkts, (unsigned)n);
	for (unsigned i = 0; i < NPOOLS; i++)
		FZ_ASSERT(vhd_pktpool_avail(pools[i]) == POOL_COUNT);
	FZ_ASSERT(vhd_pktpool_avail(seg_pool) == SEG_MAX);

	/* The driver collects what the device gave back: every chain taken, with length 0. */
	struct vhd_vq_done done[MAX_FRAMES];
	int got = vhd_vq_get(drv, done, MAX_FRAMES);
	FZ_ASSERT(got >= 0 && (unsigned)got <= offered);
	vhd_vq_destroy(dev);
	vhd_vq_destroy(drv);
	return 0;
}
