/* SPDX-License-Identifier: MIT */
/*
 * virtio-net, driver side: packets in device-visible pool memory go out and come in without copies; the header
 * lives in each packet's headroom, right in front of the frame.
 */
#include <errno.h>

#include "net_impl.h"
#include "vhostd/virtq.h"

/* Buffers per add/get round trip. */
#define DRV_BURST 64u

/* Collecting what the burst needs, not more: those buffers go straight back into the descriptors they just left
 * (the pool hands a burst back in the order it was freed), which then need no store (split_add()). */
int vhd_net_drv_reclaim(struct vhd_vq *txq, unsigned n)
{
	struct vhd_vq_done done[DRV_BURST];
	struct vhd_pkt *pk[DRV_BURST];
	unsigned total = 0;
	for (;;) {
		unsigned k = n == 0 || n - total > DRV_BURST ? DRV_BURST : n - total;
		int got = vhd_vq_get(txq, done, k);
		if (unlikely(got < 0))
			return got;
		for (int i = 0; i < got; i++)
			pk[i] = done[i].token;
		vhd_pkt_free_bulk(pk, (unsigned)got);
		total += (unsigned)got;
		if ((unsigned)got < k || total == n)
			return (int)total;
	}
}

/* Can p go out as it is? Completes the checksum in software if the device will not. */
static enum net_verdict xmit_check(struct vhd_pkt *p, const struct vhd_net_cfg *cfg, const struct net_dir *dir)
{
	if (unlikely(p->iova == 0 || p->off < cfg->hdr_size || p->off > p->cap || p->len > p->cap - p->off))
		return NV_ERROR;
	return net_check_outgoing(p, dir);
}

int vhd_net_drv_xmit(struct vhd_vq *txq, const struct vhd_net_cfg *cfg, struct vhd_pkt *const *pkts, unsigned n,
		     struct vhd_net_stats *st)
{
	if (n > VHD_NET_BURST_MAX)
		n = VHD_NET_BURST_MAX;
	/* Completed buffers are collected only when this burst does not fit (or when asked to, n == 0), and then
	 * the oldest n of them. Collecting every call read the used entries the device had just written,
	 * in the cache lines it was still writing: with packed rings, where used entries overwrite the
	 * descriptors, that line ping-pong was a third of a sending core's time. Running with the ring nearly
	 * full reads them long after the device has moved on, as DPDK's virtio PMD does (tx_free_thresh). */
	unsigned room = vhd_vq_room(txq);
	if (n == 0 || room < n) {
		if (unlikely(vhd_net_drv_reclaim(txq, n) < 0))
			return -EIO;
		room = vhd_vq_room(txq);
	}
	/* Each packet takes one descriptor. Those beyond the room stay the caller's, as they would after a
	 * short add; not preparing them spares a sender that outruns the device a burst of wasted work per
	 * call. */
	unsigned want = n < room ? n : room;
	const struct net_dir dir = net_dir_tx(cfg);
	const uint32_t hs = cfg->hdr_size;
	struct vhd_vq_seg segs[VHD_NET_BURST_MAX];
	struct vhd_vq_buf bufs[VHD_NET_BURST_MAX];
	uint16_t idx[VHD_NET_BURST_MAX]; /* pkts index of bufs[k] */
	uint8_t verdict[VHD_NET_BURST_MAX];
	unsigned nb = 0;

	unsigned i;
	for (i = 0; i < n && nb < want; i++) {
		struct vhd_pkt *p = pkts[i];
		verdict[i] = (uint8_t)xmit_check(p, cfg, &dir);
		if (unlikely(verdict[i] != NV_OK))
			continue;
		/* The header goes right in front of the frame: one readable segment, as 5.1.6.2 describes. Only
		 * flags the device may see: DATA_VALID is the device's to set (5.1.6.2.1). num_buffers is 0. */
		net_hdr_put(p->buf + p->off - hs, &p->meta, p->meta.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, hs);
		segs[nb] = (struct vhd_vq_seg){.addr = p->iova + p->off - hs, .len = hs + p->len};
		bufs[nb] = (struct vhd_vq_buf){.segs = &segs[nb], .nout = 1, .nin = 0, .flags = 0, .token = p};
		idx[nb] = (uint16_t)i;
		nb++;
	}

	int added = 0;
	if (nb) {
		added = vhd_vq_add(txq, bufs, nb);
		if (unlikely(added < 0))
			return -EIO;
	}
	/* Everything before the first buffer that did not fit is consumed: sent, or dropped here. */
	unsigned consumed = (unsigned)added == nb ? i : idx[added];
	uint64_t bytes = 0;
	for (int k = 0; k < added; k++)
		bytes += pkts[idx[k]]->len;
	for (unsigned j = 0; j < consumed; j++) {
		if (verdict[j] != NV_OK) {
			net_count_drop(st, (enum net_verdict)verdict[j]);
			vhd_pkt_free(pkts[j]);
		}
	}
	net_stat_add(&st->packets, (unsigned)added);
	net_stat_add(&st->bytes, bytes);
	net_stat_add(&st->no_buffers, n - consumed);
	return (int)consumed;
}

int vhd_net_drv_refill(struct vhd_vq *rxq, const struct vhd_net_cfg *cfg, struct vhd_pktpool *pool,
		       struct vhd_net_stats *st)
{
	(void)st;
	struct vhd_pkt *fresh[DRV_BURST];
	struct vhd_vq_seg segs[DRV_BURST];
	struct vhd_vq_buf bufs[DRV_BURST];
	const uint32_t hs = cfg->hdr_size;
	uint32_t limit = UINT32_MAX;
	if (cfg->mrg_rxbuf && cfg->rx_buf_len)
		limit = cfg->rx_buf_len < hs ? hs : cfg->rx_buf_len;
	int total = 0;

	for (;;) {
		/* Only as many as the ring takes: allocating a burst into a full ring and freeing it again was
		 * most of a receive-only driver's work. */
		unsigned room = vhd_vq_room(rxq);
		unsigned k = vhd_pkt_alloc_bulk(pool, fresh, room < DRV_BURST ? room : DRV_BURST);
		if (k == 0)
			break;
		if (unlikely(fresh[0]->iova == 0)) {
			vhd_pkt_free_bulk(fresh, k);
			return -EINVAL;
		}
		for (unsigned j = 0; j < k; j++) {
			struct vhd_pkt *p = fresh[j];
			/* Posted so that the header lands in the headroom and the frame at p->off. */
			uint32_t len = p->cap - p->off + hs;
			if (len > limit)
				len = limit;
			segs[j] = (struct vhd_vq_seg){.addr = p->iova + p->off - hs, .len = len};
			bufs[j] = (struct vhd_vq_buf){.segs = &segs[j], .nout = 0, .nin = 1, .flags = 0, .token = p};
		}
		int added = vhd_vq_add(rxq, bufs, k);
		if (unlikely(added < 0)) {
			vhd_pkt_free_bulk(fresh, k);
			return -EIO;
		}
		vhd_pkt_free_bulk(fresh + added, k - (unsigned)added);
		total += added;
		if ((unsigned)added < k)
			break;
	}
	return total;
}

/* Copy a received header out of shared memory and check it (5.1.6.4.3); fills meta. */
static enum net_verdict recv_header(const struct vhd_pkt *p, const struct vhd_net_cfg *cfg, const struct net_dir *dir,
				    uint16_t *num_buffers, struct vhd_net_meta *m)
{
	struct virtio_net_hdr_mrg_rxbuf h = {0};
	/* The hash fields of a 20-byte header are not used: 12 bytes at most, at a constant size. */
	if (cfg->hdr_size >= sizeof(h))
		memcpy(&h, p->buf + p->off - cfg->hdr_size, sizeof(h));
	else
		memcpy(&h, p->buf + p->off - cfg->hdr_size, sizeof(h.hdr));
	/* num_buffers is always 1 without MRG_RXBUF (5.1.6.4.2); don't trust a device that says otherwise. */
	*num_buffers = cfg->mrg_rxbuf ? vhd_le16(h.num_buffers) : 1;
	if (unlikely(*num_buffers == 0))
		return NV_BAD_HEADER;
	/* RSC_INFO is never negotiated (vhd_net_cfg_init refuses RSC_EXT); unknown bits are ignored. */
	const uint8_t known = VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID;
	net_hdr_to_meta(&h.hdr, known, m);
	/* "If VIRTIO_NET_F_GUEST_CSUM is not negotiated, the device MUST set flags to zero". */
	if (unlikely(m->flags && !dir->csum))
		return NV_BAD_HEADER;
	return NV_OK;
}

int vhd_net_drv_recv(struct vhd_vq *rxq, const struct vhd_net_cfg *cfg, struct vhd_pkt **pkts, unsigned n,
		     struct vhd_net_stats *st)
{
	struct vhd_vq_done done[DRV_BURST];
	const struct net_dir dir = net_dir_rx(cfg);
	const uint32_t hs = cfg->hdr_size;
	/* Without MRG_RXBUF, GUEST_CSUM and GUEST_* GSO the header has nothing this driver may act on: num_buffers
	 * is 1 and the device must leave flags 0 and gso_type NONE (5.1.6.4.1). Not reading it keeps its line
	 * (the frame's first) in the device's cache: reading it was the receiver's one miss per packet. */
	const bool hdr_blind = !cfg->mrg_rxbuf && !dir.csum && !dir.gso;
	unsigned out = 0;
	uint64_t bytes = 0;

	if (n > VHD_NET_BURST_MAX)
		n = VHD_NET_BURST_MAX;
	while (out < n) {
		/* Each buffer starts at most one packet, so this never collects more packets than fit. */
		unsigned want = n - out < DRV_BURST ? n - out : DRV_BURST;
		int got = vhd_vq_get(rxq, done, want);
		if (unlikely(got < 0))
			goto broken;
		for (int j = 0; j < got; j++) {
			struct vhd_pkt *p = done[j].token;
			uint32_t len = done[j].len;
			if (unlikely(len < hs)) {
				/* An empty buffer: what a device hands back when it gave up on a packet. */
				net_stat_add(&st->errors, 1);
				vhd_pkt_free(p);
				continue;
			}
			p->len = len - hs;
			uint16_t nbuf = 1;
			enum net_verdict v = NV_OK;
			if (hdr_blind)
				p->meta = (struct vhd_net_meta){0};
			else
				v = recv_header(p, cfg, &dir, &nbuf, &p->meta);
			/* The rest of a mergeable packet: the device published all of its buffers together
			 * (5.1.6.4.2), so they are in this batch or ready to be collected now. */
			for (unsigned k = 1; k < nbuf; k++) {
				struct vhd_vq_done extra;
				struct vhd_vq_done *d;
				if (j + 1 < got) {
					d = &done[++j];
				} else {
					int r = vhd_vq_get(rxq, &extra, 1);
					if (unlikely(r < 0)) {
						vhd_pkt_free(p);
						goto broken;
					}
					if (r == 0) {
						/* The device announced buffers it has not published. */
						if (v == NV_OK)
							v = NV_ERROR;
						break;
					}
					d = &extra;
				}
				struct vhd_pkt *c = d->token;
				if (v == NV_OK) {
					if (d->len > vhd_pkt_tailroom(p)) {
						v = NV_TOO_BIG;
					} else {
						/* Continuation buffers hold frame bytes from their first byte on. */
						memcpy(vhd_pkt_data(p) + p->len, c->buf + c->off - hs, d->len);
						p->len += d->len;
					}
				}
				vhd_pkt_free(c);
			}
			if (v == NV_OK && unlikely(p->len < ETH_HLEN_MIN))
				v = NV_TOO_SMALL;
			if (v == NV_OK)
				v = net_check_meta(&p->meta, p->len, &dir);
			if (unlikely(v != NV_OK)) {
				net_count_drop(st, v);
				vhd_pkt_free(p);
				continue;
			}
			bytes += p->len;
			pkts[out++] = p;
		}
		if ((unsigned)got < want)
			break;
	}
	net_stat_add(&st->packets, out);
	net_stat_add(&st->bytes, bytes);
	return (int)out;

broken:
	vhd_pkt_free_bulk(pkts, out);
	return -EIO;
}

unsigned vhd_net_drv_release(struct vhd_vq *vq)
{
	struct vhd_vq_done done[DRV_BURST];
	unsigned total = 0;
	for (;;) {
		int got = vhd_vq_reclaim(vq, done, DRV_BURST);
		if (got <= 0)
			break;
		for (int i = 0; i < got; i++)
			vhd_pkt_free(done[i].token);
		total += (unsigned)got;
		if ((unsigned)got < DRV_BURST)
			break;
	}
	return total;
}
