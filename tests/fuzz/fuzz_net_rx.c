/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: virtio-net receive on the device side, vhd_net_dev_enqueue(), into receive buffers a
 * guest shaped from the input: 1..3 segments each (readable ones among them, which a device must never write),
 * lengths from 0 up, through an indirect table or not, then raw writes over descriptors and ring indices.
 * Packets (frame bytes and offload metadata from the input) are enqueued under features from the input,
 * mergeable buffers included. The driver then collects the used buffers and the harness puts each packet back
 * together from them as a driver would (header, num_buffers, the buffers' writable bytes).
 *
 * Input: features u16 (bit i turns on feature_bits[i]), buffers u8, per buffer: shape u8 (bits 0-1 segments
 * 1..3, bits 2-3 readable ones in front, bit 4 indirect) and three lengths u16; raw writes u8 and per write
 * (offset u16, value u16) into the ring; bursts u8; frames u8, per frame: meta (flags u8, gso_type u8,
 * gso_size u16, csum_start u16, csum_offset u16), length u16, that many bytes.
 *
 * Checked beyond the sanitizers: without raw writes nothing breaks either queue, the readable buffers stay as
 * the driver wrote them, every used buffer is reassembled into exactly the bytes of the next packet delivered
 * (as the call left them: it may have completed a checksum) and the delivered count matches; with raw writes,
 * a break says why; every packet goes back to its pool either way.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "fuzz_rig.h"
#include "net/net_impl.h"
#include "spec/endian.h"
#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "vhostd/mem.h"
#include "vhostd/net.h"
#include "vhostd/pkt.h"
#include "vhostd/virtq.h"

#define NUM 64u
#define IND_MAX 4u
#define IMG_SIZE (512u * 1024)
#define IND_OFF 0x4000u
#define DATA_OFF 0x8000u
#define GUEST_BASE 0x400000u
#define SEG_ROOM 2048u /* bytes between segment starts */
#define MAX_FRAMES 16u
#define POOL_COUNT 32u
#define CANARY 0x5a

static const unsigned feature_bits[] = {
	VIRTIO_F_VERSION_1,	     VIRTIO_NET_F_MRG_RXBUF,  VIRTIO_NET_F_GUEST_CSUM,  VIRTIO_NET_F_GUEST_TSO4,
	VIRTIO_NET_F_GUEST_TSO6,     VIRTIO_NET_F_GUEST_UFO,  VIRTIO_NET_F_GUEST_ECN,	VIRTIO_NET_F_HASH_REPORT,
	VIRTIO_F_RING_PACKED,	     VIRTIO_F_INDIRECT_DESC,  VIRTIO_F_EVENT_IDX,	VIRTIO_F_IN_ORDER,
	VIRTIO_NET_F_GUEST_USO4,        VIRTIO_NET_F_GUEST_USO6,
};
#define NFEATURES (sizeof(feature_bits) / sizeof(feature_bits[0]))

static uint8_t *img;
static struct vhd_mem *mem;
static struct vhd_pktpool *pool;
static uint8_t joined[VHD_PKT_MAX_BUF_SIZE];
int fz_verbose;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fz_init();
	if (fz_image(IMG_SIZE, GUEST_BASE, &img, &mem) < 0)
		return -1;
	return vhd_pktpool_create(POOL_COUNT, 16384, &pool);
}

/* A posted buffer: where its segments are in the image. */
struct rxbuf {
	unsigned nseg, nout;
	uint32_t off[3], len[3];
};

static struct rxbuf bufs[NUM];

/* Append up to want writable bytes of buffer b to joined[at..]; returns the bytes appended. */
static uint32_t gather(const struct rxbuf *b, uint32_t want, uint32_t at)
{
	uint32_t got = 0;
	for (unsigned i = b->nout; i < b->nseg && got < want; i++) {
		uint32_t k = b->len[i] < want - got ? b->len[i] : want - got;
		FZ_ASSERT(at + got + k <= sizeof(joined));
		memcpy(joined + at + got, img + b->off[i], k);
		got += k;
	}
	return got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint16_t fsel = fz_u16(&in);
	uint64_t features = 0;
	for (unsigned i = 0; i < NFEATURES; i++)
		if (fsel & (1u << i))
			features |= VHD_BIT(feature_bits[i]);
	struct vhd_net_cfg cfg;
	if (vhd_net_cfg_init(&cfg, features) < 0)
		return 0;
	struct vhd_vq_layout lay;
	struct vhd_vq *drv, *dev;
	memset(img, 0, DATA_OFF);
	fz_queue_pair(img, GUEST_BASE, mem, features, NUM, IND_OFF, IND_MAX, &lay, &drv, &dev);

	/* The guest's receive buffers: readable segments hold a canary, writable ones a filler. */
	unsigned nbuf = fz_u8(&in) % (NUM + 1), posted = 0;
	for (unsigned t = 0; t < nbuf; t++) {
		uint8_t shape = fz_u8(&in);
		struct rxbuf *b = &bufs[t];
		b->nseg = shape % 4 ? shape % 4 : 1;
		b->nout = ((shape >> 2) & 3) % b->nseg; /* at least one writable */
		struct vhd_vq_seg segs[3];
		for (unsigned i = 0; i < 3; i++) {
			uint16_t l = fz_u16(&in);
			if (i >= b->nseg)
				continue;
			b->off[i] = DATA_OFF + (t * 3 + i) * SEG_ROOM;
			b->len[i] = l % (SEG_ROOM + 1);
			memset(img + b->off[i], i < b->nout ? CANARY : 0xee, b->len[i]);
			segs[i] = (struct vhd_vq_seg){GUEST_BASE + b->off[i], b->len[i]};
		}
		struct vhd_vq_buf vb = {segs, (uint16_t)b->nout, (uint16_t)(b->nseg - b->nout),
					(shape & 16) ? VHD_VQ_BUF_INDIRECT : 0, (void *)(uintptr_t)(t + 1)};
		if (vhd_vq_add(drv, &vb, 1) != 1)
			break;
		posted++;
	}
	unsigned nraw = fz_u8(&in) % 4;
	for (unsigned i = 0; i < nraw; i++) {
		uint16_t off = fz_u16(&in) % (lay.size - 1), v = fz_u16(&in);
		memcpy(img + off, &v, 2);
	}
	bool lied = nraw > 0;

	unsigned bursts = fz_u8(&in) % 3 + 1;
	unsigned nframes = fz_u8(&in) % MAX_FRAMES + 1;
	struct vhd_pkt *pkts[MAX_FRAMES];
	nframes = vhd_pkt_alloc_bulk(pool, pkts, nframes);
	for (unsigned i = 0; i < nframes; i++) {
		struct vhd_pkt *p = pkts[i];
		p->meta = (struct vhd_net_meta){.flags = fz_u8(&in), .gso_type = fz_u8(&in), .gso_size = fz_u16(&in),
						.csum_start = fz_u16(&in), .csum_offset = fz_u16(&in)};
		uint32_t len = fz_u16(&in);
		if (len > vhd_pkt_tailroom(p))
			len = vhd_pkt_tailroom(p);
		p->len = (uint32_t)fz_bytes(&in, vhd_pkt_data(p), len);
	}

	/* Enqueue in a few bursts; what is not taken is offered again in the next. */
	struct vhd_net_stats st = {0};
	unsigned done = 0;
	for (unsigned b = 0; b < bursts && done < nframes; b++) {
		unsigned n = b + 1 == bursts ? nframes - done : (nframes - done + 1) / 2;
		int r = vhd_net_dev_enqueue(dev, &cfg, pkts + done, n, &st);
		FZ_SAY("enqueue %u: %d (packets %llu errors %llu too_big %llu)\n", n, r, (unsigned long long)st.packets,
		       (unsigned long long)st.errors, (unsigned long long)st.too_big);
		if (r < 0) {
			FZ_ASSERT(lied && r == -EIO && vhd_vq_error(dev) != VHD_VQ_OK && vhd_vq_error_detail(dev)[0]);
			break;
		}
		FZ_ASSERT((unsigned)r <= n);
		done += (unsigned)r;
		if ((unsigned)r < n)
			break;
	}
	if (!lied) {
		for (unsigned t = 0; t < posted; t++)
			for (unsigned i = 0; i < bufs[t].nout; i++)
				for (uint32_t k = 0; k < bufs[t].len[i]; k++)
					FZ_ASSERT(img[bufs[t].off[i] + k] == CANARY);
	}

	/* The driver's view: reassemble each packet and match it with the next one delivered. */
	struct vhd_vq_done used[NUM];
	int got = vhd_vq_get(drv, used, NUM);
	FZ_ASSERT(got >= 0 || lied);
	unsigned fi = 0, seen = 0;
	for (int u = 0; u < got && !lied; u++) {
		const struct rxbuf *b = &bufs[(uintptr_t)used[u].token - 1];
		if (used[u].len < cfg.hdr_size)
			continue; /* returned empty */
		uint32_t at = gather(b, used[u].len, 0);
		FZ_ASSERT(at == used[u].len);
		uint16_t nb = 1;
		if (cfg.mrg_rxbuf)
			nb = (uint16_t)(joined[10] | joined[11] << 8);
		FZ_ASSERT(nb >= 1);
		for (unsigned k = 1; k < nb; k++) {
			FZ_ASSERT(u + 1 < got);
			u++;
			const struct rxbuf *c = &bufs[(uintptr_t)used[u].token - 1];
			at += gather(c, used[u].len, at);
		}
		uint32_t flen = at - cfg.hdr_size;
		while (fi < done && (pkts[fi]->len != flen || memcmp(vhd_pkt_data(pkts[fi]), joined + cfg.hdr_size, flen)))
			fi++;
		FZ_ASSERT(fi < done);
		fi++;
		seen++;
	}
	if (!lied)
		FZ_ASSERT(seen == st.packets && vhd_vq_error(drv) == VHD_VQ_OK && vhd_vq_error(dev) == VHD_VQ_OK);

	vhd_pkt_free_bulk(pkts, nframes);
	FZ_ASSERT(vhd_pktpool_avail(pool) == POOL_COUNT);
	struct vhd_vq_done rest[NUM];
	while (vhd_vq_reclaim(drv, rest, NUM) > 0)
		;
	FZ_ASSERT(vhd_vq_inflight(drv) == 0);
	vhd_vq_destroy(dev);
	vhd_vq_destroy(drv);
	return 0;
}
