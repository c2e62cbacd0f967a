/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: the driver side of a virtqueue against a lying device. Our driver queue (split or packed,
 * with or without INDIRECT_DESC, EVENT_IDX, IN_ORDER) posts buffers; the "device" is a mix of an honest device
 * queue over the same ring (pop, then push with lengths from the input, which may exceed what was posted) and
 * raw writes from the input into what a device may write (split: the used ring and its index; packed: the
 * descriptor ring). Then vhd_vq_get() collects. In net mode the same ring is a virtio-net receive queue:
 * vhd_net_drv_refill() posts packets from a pool in the shared image, the honest device fills the buffers it
 * pops with input bytes (header and frame) and vhd_net_drv_recv() collects them.
 *
 * Input: mode u8 (bit 0 packed, 1 INDIRECT_DESC, 2 EVENT_IDX, 3 IN_ORDER, 4 net mode, 5 MRG_RXBUF, 6 GUEST_CSUM
 * and GUEST_TSO4/6), size u8, rx_buf_len u16 (net), rounds u8; per round: adds u8 (buffers to post; per buffer
 * in vq mode: shape u8, two lengths u16), honest completions u8 (per completion: len u32, then in net mode a
 * length u16 and that many bytes written into the buffer), raw writes u8 (per write: kind u8, position u16,
 * id u16, len u32, flags/idx u16), gets u8.
 *
 * Checked beyond the sanitizers: every buffer comes back at most once, only while in flight, with a length
 * within its writable bytes; a packet received holds no more than its buffer; a broken queue says why and
 * keeps failing; at the end vhd_vq_reclaim() returns exactly the buffers still in flight, and every packet is
 * back in its pool.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "fuzz_rig.h"
#include "spec/endian.h"
#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "spec/virtio_ring.h"
#include "vhostd/mem.h"
#include "vhostd/net.h"
#include "vhostd/pkt.h"
#include "vhostd/virtq.h"

#define MAX_NUM 64u
#define MAX_ROUNDS 8u
#define IND_MAX 4u
#define IMG_SIZE (512u * 1024)
#define IND_OFF 0x8000u
#define DATA_OFF 0x10000u
#define GUEST_BASE 0x200000u
#define POOL_COUNT 96u
#define POOL_BUF 2048u
#define SLOT 256u /* vq mode: bytes of data area per token */

static uint8_t *img;
static struct vhd_mem *mem;
int fz_verbose;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fz_init();
	return fz_image(IMG_SIZE, GUEST_BASE, &img, &mem);
}

/* vq mode: what the harness knows of each token (index into this table) it posted. */
struct tok {
	bool inflight;
	uint32_t in_len;
};

struct run {
	bool packed, net;
	unsigned num;
	struct vhd_vq *drv, *dev;
	struct vhd_vq_layout lay;
	struct tok toks[MAX_NUM];
	struct vhd_pktpool *pool;
	struct vhd_net_cfg cfg;
	struct vhd_net_stats st;
	bool broken;
};

/* vq mode: post one buffer of 1..3 segments (some writable, maybe through an indirect table). */
static void post_one(struct run *r, struct fz_in *in)
{
	uint8_t shape = fz_u8(in);
	uint16_t l0 = fz_u16(in) % SLOT, l1 = fz_u16(in) % SLOT;
	unsigned t;
	for (t = 0; t < MAX_NUM && r->toks[t].inflight; t++)
		;
	if (t == MAX_NUM)
		return;
	unsigned nseg = shape % 3 + 1, nout = (shape >> 2) % (nseg + 1);
	uint32_t lens[3] = {l0, l1, (uint32_t)(SLOT - l0) / 2};
	struct vhd_vq_seg segs[3];
	uint64_t at = GUEST_BASE + DATA_OFF + (uint64_t)t * SLOT * 3;
	uint32_t in_len = 0;
	for (unsigned i = 0; i < nseg; i++) {
		segs[i] = (struct vhd_vq_seg){at + i * SLOT, lens[i]};
		if (i >= nout)
			in_len += lens[i];
	}
	struct vhd_vq_buf b = {segs, (uint16_t)nout, (uint16_t)(nseg - nout), (shape & 0x20) ? VHD_VQ_BUF_INDIRECT : 0,
			       (void *)(uintptr_t)(t + 1)};
	int rc = vhd_vq_add(r->drv, &b, 1);
	FZ_ASSERT(rc == 1 || rc == 0 || rc == -EIO || (rc == -EINVAL && nseg > r->num));
	if (rc == 1)
		r->toks[t] = (struct tok){true, in_len};
}

/* The honest device: pop one chain, write into it (net mode: input bytes), push it with a length from the
 * input, which may be a lie about how much it wrote. */
static void complete_one(struct run *r, struct fz_in *in)
{
	uint32_t len = fz_u32(in);
	struct vhd_vq_chain c;
	struct iovec iov[8];
	int n = vhd_vq_pop(r->dev, &c, 1, iov, 8);
	uint16_t blen = r->net ? fz_u16(in) : 0;
	const uint8_t *bytes = in->p;
	if (blen > in->left)
		blen = (uint16_t)in->left;
	in->p += blen, in->left -= blen;
	if (n != 1)
		return;
	uint32_t wrote = 0;
	for (unsigned i = c.nout; i < (unsigned)c.nout + c.nin && !c.err; i++) {
		size_t k = iov[i].iov_len;
		if (k > (size_t)blen - wrote)
			k = (size_t)blen - wrote;
		memcpy(iov[i].iov_base, bytes + wrote, k);
		wrote += (uint32_t)k;
	}
	/* Mostly the truth (len 0 asks for it), sometimes more than the chain holds. */
	struct vhd_vq_used u = {c.id, c.ndesc, len == 0 ? (r->net ? wrote : c.in_len) : len % (c.in_len + 64)};
	vhd_vq_push(r->dev, &u, 1);
}

/* A raw lie written where a device writes. */
static void raw_write(struct run *r, struct fz_in *in)
{
	uint8_t kind = fz_u8(in);
	uint16_t pos = fz_u16(in), id = fz_u16(in);
	uint32_t len = fz_u32(in);
	uint16_t v = fz_u16(in);
	if (r->packed) {
		struct pvirtq_desc *d = (struct pvirtq_desc *)(img + r->lay.desc_off) + pos % r->num;
		d->id = vhd_cpu_to_le16(kind & 1 ? id % r->num : id);
		d->len = vhd_cpu_to_le32(len);
		/* kind bit 1: flags as given; else "used" in the lap the low bit of v names. */
		uint16_t f = (kind & 2) ? v : (uint16_t)((v & 1) ? VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED : 0);
		if (kind & 4)
			f |= VIRTQ_DESC_F_WRITE;
		d->flags = vhd_cpu_to_le16(f);
	} else {
		struct virtq_used *u = (struct virtq_used *)(img + r->lay.device_off);
		if (kind & 2) {
			/* Move the used index: by a small step (v's low bits) or anywhere. */
			uint16_t idx = vhd_le16(u->idx);
			u->idx = vhd_cpu_to_le16((kind & 4) ? v : (uint16_t)(idx + (v & 7)));
		} else {
			u->ring[pos % r->num].id = vhd_cpu_to_le32(kind & 1 ? id % r->num : (uint32_t)id << (kind & 8 ? 16 : 0));
			u->ring[pos % r->num].len = vhd_cpu_to_le32(len);
		}
	}
}

static void collect(struct run *r, unsigned n)
{
	if (r->net) {
		struct vhd_pkt *pkts[64];
		int got = vhd_net_drv_recv(r->drv, &r->cfg, pkts, n, &r->st);
		FZ_ASSERT(got == -EIO || (got >= 0 && (unsigned)got <= n));
		for (int i = 0; i < got; i++) {
			FZ_ASSERT(pkts[i]->off <= pkts[i]->cap && pkts[i]->len <= pkts[i]->cap - pkts[i]->off);
			FZ_ASSERT(pkts[i]->len >= 14);
		}
		if (got > 0)
			vhd_pkt_free_bulk(pkts, (unsigned)got);
		FZ_ASSERT(got >= 0 || vhd_vq_error(r->drv) != VHD_VQ_OK);
		/* A break part-way through still hands over the packets before it. */
		r->broken = vhd_vq_error(r->drv) != VHD_VQ_OK;
		return;
	}
	struct vhd_vq_done done[MAX_NUM];
	int got = vhd_vq_get(r->drv, done, n);
	if (got < 0) {
		FZ_ASSERT(got == -EIO && vhd_vq_error(r->drv) != VHD_VQ_OK && vhd_vq_error_detail(r->drv)[0]);
		FZ_ASSERT(vhd_vq_get(r->drv, done, n) == -EIO);
		r->broken = true;
		return;
	}
	FZ_ASSERT((unsigned)got <= n);
	for (int i = 0; i < got; i++) {
		uintptr_t t = (uintptr_t)done[i].token;
		FZ_ASSERT(t >= 1 && t <= MAX_NUM);
		struct tok *k = &r->toks[t - 1];
		FZ_ASSERT(k->inflight);
		FZ_ASSERT(done[i].len <= k->in_len);
		k->inflight = false;
	}
	if (vhd_vq_error(r->drv) != VHD_VQ_OK) {
		FZ_SAY("broken: %s\n", vhd_vq_error_detail(r->drv));
		r->broken = true;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	uint8_t mode = fz_u8(&in);
	struct run r = {.packed = mode & 1, .net = mode & 16};
	uint64_t features = VHD_BIT(VIRTIO_F_VERSION_1) | fz_ring_features(mode);
	if (mode & 32)
		features |= VHD_BIT(VIRTIO_NET_F_MRG_RXBUF);
	if (mode & 64)
		features |= VHD_BIT(VIRTIO_NET_F_GUEST_CSUM) | VHD_BIT(VIRTIO_NET_F_GUEST_TSO4) |
			    VHD_BIT(VIRTIO_NET_F_GUEST_TSO6);
	uint8_t sz = fz_u8(&in);
	r.num = r.packed ? sz % MAX_NUM + 1 : 1u << (sz % 7);
	uint16_t rx_buf_len = fz_u16(&in);
	unsigned rounds = fz_u8(&in) % MAX_ROUNDS + 1;
	memset(img, 0, DATA_OFF);
	fz_queue_pair(img, GUEST_BASE, mem, features, r.num, IND_OFF, IND_MAX, &r.lay, &r.drv, &r.dev);
	if (r.net) {
		if (vhd_net_cfg_init(&r.cfg, features) < 0 ||
		    vhd_pktpool_create_in(img + DATA_OFF, IMG_SIZE - DATA_OFF, GUEST_BASE + DATA_OFF, POOL_COUNT,
					  POOL_BUF, &r.pool) < 0)
			abort();
		r.cfg.rx_buf_len = rx_buf_len % POOL_BUF;
	}

	for (unsigned round = 0; round < rounds; round++) {
		unsigned adds = fz_u8(&in) % (r.num + 1);
		if (r.net) {
			int a = vhd_net_drv_refill(r.drv, &r.cfg, r.pool, &r.st);
			FZ_ASSERT(a >= 0 || (a == -EIO && r.broken));
		} else {
			for (unsigned i = 0; i < adds; i++)
				post_one(&r, &in);
		}
		unsigned honest = fz_u8(&in) % 16;
		for (unsigned i = 0; i < honest; i++)
			complete_one(&r, &in);
		unsigned lies = fz_u8(&in) % 8;
		for (unsigned i = 0; i < lies; i++)
			raw_write(&r, &in);
		unsigned gets = fz_u8(&in) % 64 + 1;
		collect(&r, gets);
		FZ_SAY("round %u: inflight %u%s\n", round, vhd_vq_inflight(r.drv), r.broken ? " (broken)" : "");
		if (r.broken)
			FZ_ASSERT(vhd_vq_error(r.drv) != VHD_VQ_OK);
	}

	/* Teardown: whatever is still in flight comes back through reclaim, each exactly once. */
	if (r.net) {
		vhd_net_drv_release(r.drv);
		FZ_ASSERT(vhd_vq_inflight(r.drv) == 0);
		FZ_ASSERT(vhd_pktpool_avail(r.pool) == POOL_COUNT);
		vhd_pktpool_destroy(r.pool);
	} else {
		unsigned expect = 0;
		for (unsigned t = 0; t < MAX_NUM; t++)
			expect += r.toks[t].inflight;
		FZ_ASSERT(vhd_vq_inflight(r.drv) == expect);
		struct vhd_vq_done done[MAX_NUM];
		int got = vhd_vq_reclaim(r.drv, done, MAX_NUM);
		FZ_ASSERT(got == (int)expect);
		for (int i = 0; i < got; i++) {
			uintptr_t t = (uintptr_t)done[i].token;
			FZ_ASSERT(t >= 1 && t <= MAX_NUM && r.toks[t - 1].inflight);
			r.toks[t - 1].inflight = false;
		}
	}
	vhd_vq_destroy(r.dev);
	vhd_vq_destroy(r.drv);
	return 0;
}
