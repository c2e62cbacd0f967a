/* SPDX-License-Identifier: MIT */
/*
 * virtio-net, device side: guest TX chains -> pool packets (or views of the guest's buffers), packets -> guest
 * RX buffers.
 *
 * Every header the guest wrote is copied into private memory before it is looked at, so a guest changing a
 * header after we checked it cannot change what we act on. Frames are copied too, except by the borrowing
 * dequeue for frames without offloads, whose views its callers only copy onwards or glance at (addresses).
 */
#include <errno.h>

#include "net_impl.h"
#include "vhostd/virtq.h"

/* Chains per pop/push round trip on the transmit side. */
#define DEQ_BURST 64u
/* iovecs per pop: enough for DEQ_BURST chains of 16 segments; longer chains wait for the next pop. */
#define DEQ_NIOV (DEQ_BURST * 16u)

/* ------------------------------------------------------------------------------------------------ */
/* Transmit (guest -> us)                                                                          */

/* A chain's header, copied out and checked, and where its frame is: NV_OK with *m, *flen and *flat (header and
 * frame in the first segment, the usual case) filled in, or why the chain's frame is dropped. max is the
 * largest frame taken. Always inlined: as a call it cost about 25 instructions per packet (callgrind), its
 * prologue and the outputs forced to memory. */
static inline __attribute__((always_inline)) enum net_verdict
dequeue_hdr(const struct vhd_vq_chain *c, const struct vhd_net_cfg *cfg, const struct net_dir *dir, uint32_t max,
	    struct vhd_net_meta *m, uint32_t *flen, bool *flat)
{
	if (unlikely(c->err))
		return NV_ERROR;
	uint32_t hs = cfg->hdr_size;
	if (unlikely(c->out_len < hs))
		return NV_BAD_HEADER;
	*flen = c->out_len - hs;
	if (unlikely(*flen < ETH_HLEN_MIN))
		return NV_TOO_SMALL;
	if (unlikely(*flen > max))
		return NV_TOO_BIG;

	/* Only the fields up to csum_offset matter on transmit: num_buffers is unused there (5.1.6.2) and the
	 * hash fields are receive-only. */
	/* The header is copied out before it is looked at: one read of guest memory, then checks and use of
	 * the private copy (a guest rewriting it meanwhile changes nothing). */
	struct virtio_net_hdr h;
	*flat = c->iov[0].iov_len >= c->out_len;
	if (*flat)
		memcpy(&h, c->iov[0].iov_base, sizeof(h));
	else
		net_iov_gather(c->iov, c->nout, 0, (uint8_t *)&h, sizeof(h));
	/* The driver MUST NOT set DATA_VALID or RSC_INFO, and the device ignores what it does not use (5.1.6.2.2). */
	net_hdr_to_meta(&h, VIRTIO_NET_HDR_F_NEEDS_CSUM, m);
	if ((m->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !dir->csum)
		return NV_BAD_HEADER;
	return net_check_meta(m, *flen, dir);
}

/* The frame of a chain whose header dequeue_hdr() passed, copied into p (which has room: same bound). */
static void dequeue_copy(const struct vhd_vq_chain *c, uint32_t hs, const struct vhd_net_meta *m, uint32_t flen,
			 bool flat, struct vhd_pkt *p)
{
	p->off = VHD_PKT_HEADROOM;
	if (flat)
		memcpy(vhd_pkt_data(p), (const uint8_t *)c->iov[0].iov_base + hs, flen);
	else
		net_iov_gather(c->iov, c->nout, hs, vhd_pkt_data(p), flen);
	p->len = flen;
	p->meta = *m;
}

/* One chain -> one packet in p (from a pool whose packets take frames up to max bytes), copied. Returns NV_OK or
 * why the chain's frame is dropped; p is untouched on drops. */
static enum net_verdict dequeue_one(const struct vhd_vq_chain *c, const struct vhd_net_cfg *cfg,
				    const struct net_dir *dir, uint32_t max, struct vhd_pkt *p)
{
	struct vhd_net_meta m;
	uint32_t flen;
	bool flat;
	enum net_verdict v = dequeue_hdr(c, cfg, dir, max, &m, &flen, &flat);
	if (likely(v == NV_OK))
		dequeue_copy(c, cfg->hdr_size, &m, flen, flat, p);
	return v;
}

/*
 * Borrowing: one chain -> the view *pp (its frame left where the driver put it) when header and frame are in one
 * segment and the frame asks for no offload; otherwise a packet from pool, copied, in *pp instead. Offloads stay
 * on copies because serving them means parsing and writing the frame (completing a checksum, segmenting), which
 * must not happen in memory the guest can change meanwhile, nor in its transmit buffer. Frames over max bytes are
 * dropped either way. NV_OK or why the frame is dropped; *pp is NULL when a chain to copy found the pool empty
 * (counted as no_buffers).
 */
static enum net_verdict dequeue_view(const struct vhd_vq_chain *c, const struct vhd_net_cfg *cfg,
				     const struct net_dir *dir, uint32_t max, struct vhd_pktpool *pool,
				     struct vhd_pkt **pp, struct vhd_net_stats *st)
{
	struct vhd_net_meta m;
	uint32_t flen;
	bool flat;
	enum net_verdict v = dequeue_hdr(c, cfg, dir, max, &m, &flen, &flat);
	if (unlikely(v != NV_OK))
		return v;
	if (likely(flat && m.flags == 0 && m.gso_type == VHD_NET_META_GSO_NONE)) {
		struct vhd_pkt *p = *pp;
		p->buf = (uint8_t *)c->iov[0].iov_base + cfg->hdr_size;
		p->off = 0;
		p->len = p->cap = flen;
		/* No flags and no GSO leave every field 0. Stored as constants rather than copied from m, which
		 * was built in byte and half-word stores: its 8-byte reload missed store forwarding, a stall that
		 * was half of dequeue() in perf. */
		memset(&p->meta, 0, sizeof(p->meta));
		return NV_OK;
	}
	if (vhd_pkt_alloc_bulk(pool, pp, 1) != 1) {
		net_stat_add(&st->no_buffers, 1);
		*pp = NULL;
		return NV_OK;
	}
	dequeue_copy(c, cfg->hdr_size, &m, flen, flat, *pp);
	return NV_OK;
}

/* Both dequeues: copying every frame (views NULL: chains given back at once), or borrowing them (chains given
 * back by vhd_net_dev_dequeue_done(), their used entries kept in b meanwhile). */
static int dequeue(struct vhd_vq *txq, const struct vhd_net_cfg *cfg, struct vhd_pktpool *pool,
		   struct vhd_pktpool *views, struct vhd_pkt **pkts, unsigned n, struct vhd_net_borrowed *b,
		   struct vhd_net_stats *st)
{
	struct vhd_vq_chain chains[DEQ_BURST];
	struct iovec iov[DEQ_NIOV];
	struct vhd_vq_used used_here[DEQ_BURST];
	struct vhd_pkt *fresh[DEQ_BURST];
	const struct net_dir dir = net_dir_tx(cfg);
	struct vhd_pktpool *from = views ? views : pool;
	/* The largest frame a pool packet holds: views take no bigger ones, so the same frames are dropped. */
	const uint32_t max = vhd_pktpool_buf_size(pool) - VHD_PKT_HEADROOM;
	unsigned out = 0;
	uint64_t bytes = 0;

	if (n > VHD_NET_BURST_MAX)
		n = VHD_NET_BURST_MAX;
	while (out < n) {
		unsigned want = n - out < DEQ_BURST ? n - out : DEQ_BURST;
		if (b && want > VHD_NET_BORROW_MAX - b->n)
			want = VHD_NET_BORROW_MAX - b->n; /* every chain popped waits in b until done */
		if (want == 0)
			break;
		struct vhd_vq_used *used = b ? b->used + b->n : used_here;
		int nc = vhd_vq_pop(txq, chains, want, iov, DEQ_NIOV);
		if (unlikely(nc < 0))
			goto broken;
		if (nc == 0)
			break;
		/* Chains first, then packets for exactly those: allocating a burst for an empty ring and freeing
		 * it again was most of a polling device's work. Without packets to put frames in, the chains go
		 * back to the ring (they were the last popped) rather than being dropped. */
		unsigned have = vhd_pkt_alloc_bulk(from, fresh, (unsigned)nc);
		if (unlikely(have < (unsigned)nc)) {
			for (unsigned i = have; i < (unsigned)nc; i++)
				used[i - have] = (struct vhd_vq_used){.id = chains[i].id, .ndesc = chains[i].ndesc};
			if (vhd_vq_unpop(txq, used, (unsigned)nc - have) < 0) {
				vhd_pkt_free_bulk(fresh, have);
				goto broken;
			}
			nc = (int)have;
			if (nc == 0)
				break;
		}
		unsigned k = 0;
		for (int i = 0; i < nc; i++) {
			const struct vhd_vq_chain *c = &chains[i];
			used[i] = (struct vhd_vq_used){.id = c->id, .ndesc = c->ndesc, .len = 0};
			struct vhd_pkt *p = fresh[k];
			enum net_verdict v = views ? dequeue_view(c, cfg, &dir, max, pool, &p, st)
						   : dequeue_one(c, cfg, &dir, max, p);
			if (unlikely(v != NV_OK)) {
				net_count_drop(st, v);
				continue; /* fresh[k] takes the next frame */
			}
			if (unlikely(!p))
				continue;
			if (p == fresh[k])
				k++;
			bytes += p->len;
			pkts[out++] = p;
		}
		vhd_pkt_free_bulk(fresh + k, (unsigned)nc - k);
		if (b)
			b->n += (unsigned)nc;
		else if (unlikely(vhd_vq_push(txq, used, (unsigned)nc) < 0))
			goto broken;
		if ((unsigned)nc < want)
			break;
	}
	net_stat_add(&st->packets, out);
	net_stat_add(&st->bytes, bytes);
	return (int)out;

broken:
	/* The queue is dead: hand nothing over, so the caller has one outcome to handle (and nothing to give
	 * back: the ring is not touched again until the driver sets it up anew). */
	vhd_pkt_free_bulk(pkts, out);
	if (b)
		b->n = 0;
	return -EIO;
}

int vhd_net_dev_dequeue(struct vhd_vq *txq, const struct vhd_net_cfg *cfg, struct vhd_pktpool *pool,
			struct vhd_pkt **pkts, unsigned n, struct vhd_net_stats *st)
{
	return dequeue(txq, cfg, pool, NULL, pkts, n, NULL, st);
}

int vhd_net_dev_dequeue_borrow(struct vhd_vq *txq, const struct vhd_net_cfg *cfg, struct vhd_pktpool *pool,
			       struct vhd_pktpool *views, struct vhd_pkt **pkts, unsigned n,
			       struct vhd_net_borrowed *b, struct vhd_net_stats *st)
{
	if (!views || b->n > VHD_NET_BORROW_MAX)
		return -EINVAL;
	return dequeue(txq, cfg, pool, views, pkts, n, b, st);
}

int vhd_net_dev_dequeue_done(struct vhd_vq *txq, struct vhd_net_borrowed *b)
{
	unsigned n = b->n;
	b->n = 0;
	if (n == 0)
		return 0;
	return vhd_vq_push(txq, b->used, n) < 0 ? -EIO : 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* Receive (us -> guest)                                                                           */

/* Chains per pop. */
#define ENQ_WIN 64u
#define ENQ_NIOV (ENQ_WIN * 8u)
/* Used entries collected before a push. */
#define ENQ_USED_MAX 512u
/* Most buffers one mergeable packet may take (a 64 KiB frame in 256-byte buffers). */
#define ENQ_PKT_MAX_CHAINS 256u

struct enq {
	struct vhd_vq *vq;
	struct vhd_vq_chain win[ENQ_WIN]; /* popped chains, win[wpos..nwin) not used yet */
	unsigned nwin, wpos;
	uint32_t max_in; /* largest usable writable length seen, for sizing pops; 0 before the first */
	uint32_t hs;
	struct iovec iov[ENQ_NIOV];
	struct vhd_vq_used used[ENQ_USED_MAX];
	unsigned nused;
	unsigned wasted; /* buffers this call gives back empty, against VHD_NET_RX_WASTE_MAX */
	bool popped;     /* this call has popped: walk0 is the queue's descriptor count before its first pop */
	bool log;        /* dirty logging is on (read once per burst): each used chain's written bytes are logged */
	uint64_t walk0;
};

/* Publish what is collected. Only called between packets: a mergeable packet's buffers go out together. */
static int enq_flush(struct enq *s)
{
	if (s->nused == 0)
		return 0;
	int r = vhd_vq_push(s->vq, s->used, s->nused);
	s->nused = 0;
	return r < 0 ? r : 0;
}

/*
 * Next unused chain, popping about `want` more when the window is empty (the window is only refilled when
 * empty, so iov[] is never shared between old and new chains). NULL when the ring is empty; *err < 0 if broken.
 */
static struct vhd_vq_chain *enq_next(struct enq *s, uint64_t want, int *err)
{
	if (s->wpos == s->nwin) {
		/* Each pop walks at most VHD_VQ_POP_DESC_BUDGET descriptors (or one chain, its first); a call
		 * pops again only while it has walked less than that, so a guest posting receive buffers of
		 * thousands of descriptors costs each call little more than two pops' worth. */
		uint64_t walked = vhd_vq_descs_walked(s->vq);
		if (!s->popped) {
			s->popped = true;
			s->walk0 = walked;
		} else if (unlikely(walked - s->walk0 >= VHD_VQ_POP_DESC_BUDGET)) {
			return NULL; /* as if the ring had run out */
		}
		unsigned k = want > ENQ_WIN ? ENQ_WIN : want == 0 ? 1 : (unsigned)want;
		int r = vhd_vq_pop(s->vq, s->win, k, s->iov, ENQ_NIOV);
		if (unlikely(r < 0)) {
			*err = r;
			return NULL;
		}
		s->nwin = (unsigned)r;
		s->wpos = 0;
		if (r == 0)
			return NULL;
		/* Unusable chains say nothing about the size of the driver's buffers. */
		for (int i = 0; i < r; i++)
			if (!s->win[i].err && s->win[i].in_len >= s->hs && s->win[i].in_len > s->max_in)
				s->max_in = s->win[i].in_len;
	}
	return &s->win[s->wpos++];
}

/* Buffers of bsz bytes that bytes take; the division only for packets bigger than one buffer. */
static inline uint64_t enq_chains_for(uint64_t bytes, uint32_t bsz)
{
	return bytes <= bsz ? 1 : (bytes + bsz - 1) / bsz;
}

static void enq_used(struct enq *s, const struct vhd_vq_chain *c, uint32_t len)
{
	s->used[s->nused++] = (struct vhd_vq_used){.id = c->id, .ndesc = c->ndesc, .len = len};
	/* Before c's iov[] is reused by the next pop; the bits are set by the push that publishes it. */
	if (unlikely(s->log))
		vhd_vq_log_chain(s->vq, c, len);
}

/* Writes a byte stream into one chain's writable segments. */
struct wcur {
	const struct iovec *iov;
	unsigned i;
	size_t off;
};

static void wcur_init(struct wcur *w, const struct vhd_vq_chain *c)
{
	w->iov = c->iov + c->nout;
	w->i = 0;
	w->off = 0;
}

/* Write len bytes (the caller checked they fit); returns where the first of them went. */
static uint8_t *wcur_put(struct wcur *w, const uint8_t *src, size_t len)
{
	uint8_t *first = NULL;
	while (len) {
		const struct iovec *v = &w->iov[w->i];
		size_t room = v->iov_len - w->off, take = len < room ? len : room;
		uint8_t *dst = (uint8_t *)v->iov_base + w->off;
		if (!first)
			first = dst;
		memcpy(dst, src, take);
		src += take;
		len -= take;
		w->off += take;
		if (w->off == v->iov_len) {
			w->i++;
			w->off = 0;
		}
	}
	return first;
}

/* Is this chain of any use as a receive buffer? It must hold at least a header (5.1.6.3.1: "each buffer MUST be
 * at least size of struct virtio_net_hdr" with MRG_RXBUF; and without it a header plus nothing is useless too). */
static bool enq_chain_ok(const struct vhd_vq_chain *c, uint32_t hs)
{
	return likely(!c->err && c->in_len >= hs);
}

/*
 * The usual case, with or without MRG_RXBUF: header and frame fit the chain's first writable segment, so they go
 * there with two copies and num_buffers is 1. Returns false, having written nothing, when they do not fit.
 * Always inlined: as a call it cost 18 instructions per packet (bench/netcost), with hdr forced to memory.
 */
static inline __attribute__((always_inline)) bool enq_put_flat(struct enq *s, const struct vhd_vq_chain *c,
								const struct vhd_net_meta *m, uint8_t flags,
								const uint8_t *data, uint32_t len)
{
	uint32_t total = s->hs + len;
	if (!c->nin || c->iov[c->nout].iov_len < total)
		return false;
	uint8_t *dst = c->iov[c->nout].iov_base;
	/* A reused receive buffer usually holds this very header already: the write is skipped then, and with
	 * it taking the line back from the driver's core (the bytes in guest memory are the same either way;
	 * the dirty log still covers them, from the used length). */
	net_hdr_put(dst, m, flags, 1, s->hs);
	memcpy(dst + s->hs, data, len);
	enq_used(s, c, total);
	return true;
}

int vhd_net_dev_enqueue(struct vhd_vq *rxq, const struct vhd_net_cfg *cfg, struct vhd_pkt *const *pkts, unsigned n,
			struct vhd_net_stats *st)
{
	struct enq s;
	s.vq = rxq;
	s.nwin = s.wpos = 0;
	s.nused = 0;
	s.max_in = 0;
	s.wasted = 0;
	s.popped = false;
	s.log = vhd_vq_logging(rxq);
	s.hs = cfg->hdr_size;
	const struct net_dir dir = net_dir_rx(cfg);
	const uint32_t hs = cfg->hdr_size;
	const uint8_t flag_mask = cfg->rx_csum ? (VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID) : 0;
	int err = 0;

	if (n > VHD_NET_BURST_MAX)
		n = VHD_NET_BURST_MAX;

	/* Verdicts first: pops ask for about as many chains as the rest of the burst will use (a chain popped and
	 * not filled can only be returned empty), which needs to know which packets will go. */
	uint8_t verdict[VHD_NET_BURST_MAX];
	for (unsigned j = 0; j < n; j++)
		verdict[j] = (uint8_t)net_check_outgoing(pkts[j], &dir);

	unsigned i, delivered = 0;
	uint64_t bytes = 0;
	for (i = 0; i < n; i++) {
		struct vhd_pkt *p = pkts[i];
		if (verdict[i] != NV_OK) {
			net_count_drop(st, (enum net_verdict)verdict[i]);
			continue;
		}
		const uint8_t flags = p->meta.flags & flag_mask;
		const uint8_t *data = vhd_pkt_data(p);
		const uint32_t total = hs + p->len;

		/* A chain already popped that takes the packet whole: no pop, no per-mode bookkeeping. */
		if (likely(s.wpos < s.nwin && s.nused < ENQ_USED_MAX) && enq_chain_ok(&s.win[s.wpos], hs) &&
		    enq_put_flat(&s, &s.win[s.wpos], &p->meta, flags, data, p->len)) {
			s.wpos++;
			delivered++;
			bytes += p->len;
			continue;
		}
		struct virtio_net_hdr_v1_hash hdr;
		net_meta_to_hdr(&p->meta, flags, &hdr);
		const uint8_t *hb = (const uint8_t *)&hdr;

		if (!cfg->mrg_rxbuf) {
			/* One buffer per packet (5.1.6.3.2); num_buffers is 1 where the header has it. */
			hdr.h.num_buffers = vhd_cpu_to_le16(1);
			if (s.wpos == s.nwin && s.max_in && total > s.max_in) {
				/* Bigger than every buffer seen: drivers without MRG_RXBUF offer buffers of
				 * one size, so popping another would only waste it. */
				net_stat_add(&st->too_big, 1);
				continue;
			}
			struct vhd_vq_chain *c;
			for (;;) {
				if (s.nused == ENQ_USED_MAX && (err = enq_flush(&s)) < 0)
					goto broken;
				/* Pop one chain to learn the buffer size, then one per packet that fits it. */
				unsigned want = 1;
				if (s.wpos == s.nwin) {
					/* One chain per packet that fits (all of them until a pop has shown the
					 * buffer size; chains no packet takes go back to the ring at the end). */
					want = 0;
					for (unsigned j = i; j < n && want < ENQ_WIN; j++)
						want += verdict[j] == NV_OK &&
							(!s.max_in || hs + pkts[j]->len <= s.max_in);
					if (want == 0)
						want = 1;
				}
				c = enq_next(&s, want, &err);
				if (!c || enq_chain_ok(c, hs))
					break;
				enq_used(&s, c, 0);
				net_stat_add(&st->errors, 1);
				if (++s.wasted >= VHD_NET_RX_WASTE_MAX) {
					c = NULL;
					break;
				}
			}
			if (err < 0)
				goto broken;
			if (!c)
				break;
			if (c->in_len < total) {
				/* Give the buffer to the next packet instead. */
				s.wpos--;
				net_stat_add(&st->too_big, 1);
				continue;
			}
			struct wcur w;
			wcur_init(&w, c);
			wcur_put(&w, hb, hs);
			wcur_put(&w, data, p->len);
			enq_used(&s, c, total);
			delivered++;
			bytes += p->len;
			continue;
		}

		/* Mergeable: fill buffers completely, in ring order, until the packet is in (5.1.6.4.2). */
		bool ring_out = false, gave_up = false, starved = false;
		for (;;) {
			if (s.nused + ENQ_PKT_MAX_CHAINS + 1 > ENQ_USED_MAX && (err = enq_flush(&s)) < 0)
				goto broken;
			unsigned start = s.nused, nb = 0;
			uint32_t pos = 0; /* bytes of header + frame written */
			uint8_t *nb_lo = NULL, *nb_hi = NULL;
			bool restart = false;
			while (pos < total) {
				uint64_t want = 1;
				if (s.wpos == s.nwin) {
					/* Buffers are never shared between packets: each needs its own
					 * ceil(bytes / buffer size), so count them one by one (one each until a
					 * pop has shown the buffer size). */
					if (!s.max_in) {
						want = n - i;
					} else {
						want = enq_chains_for(total - pos, s.max_in);
						for (unsigned j = i + 1; j < n && want < ENQ_WIN; j++)
							if (verdict[j] == NV_OK)
								want += enq_chains_for(hs + pkts[j]->len, s.max_in);
					}
				}
				struct vhd_vq_chain *c = enq_next(&s, want, &err);
				if (!c) {
					ring_out = true;
					break;
				}
				/* The first buffer must hold the header; later ones need only be non-empty. */
				if (unlikely(c->err || c->in_len == 0 || (nb == 0 && c->in_len < hs))) {
					/* Buffers already holding part of this packet cannot be followed by an
					 * empty one: they go back empty too and the packet starts over. */
					enq_used(&s, c, 0);
					net_stat_add(&st->errors, 1);
					restart = true;
					break;
				}
				if (nb == ENQ_PKT_MAX_CHAINS) {
					s.wpos--;
					gave_up = true;
					break;
				}
				if (nb == 0 && enq_put_flat(&s, c, &p->meta, flags, data, p->len)) {
					pos = total;
					nb = 1;
					nb_lo = nb_hi = NULL;
					break;
				}
				struct wcur w;
				wcur_init(&w, c);
				uint32_t put = 0;
				if (nb == 0) {
					/* The whole header goes in the first buffer (it holds >= hs bytes).
					 * num_buffers (bytes 10-11) is known only at the end: remember where
					 * its bytes land, which may be two different segments. */
					wcur_put(&w, hb, 10);
					nb_lo = wcur_put(&w, hb + 10, 1);
					nb_hi = wcur_put(&w, hb + 11, 1);
					wcur_put(&w, hb + 12, hs - 12);
					put = hs;
				}
				uint32_t fpos = pos + put - hs, take = c->in_len - put;
				if (take > p->len - fpos)
					take = p->len - fpos;
				wcur_put(&w, data + fpos, take);
				put += take;
				enq_used(&s, c, put);
				pos += put;
				nb++;
			}
			if (ring_out && err == 0) {
				/* The ring ran out mid-packet. This packet's buffers are the last ones popped:
				 * put them back for the next call instead of returning them empty. */
				if (s.nused > start && (err = vhd_vq_unpop(s.vq, s.used + start, s.nused - start)) < 0)
					goto broken;
				s.nused = start;
				break;
			}
			if (restart || gave_up || err < 0) {
				for (unsigned k = start; k < s.nused; k++) {
					net_stat_add(&st->errors, s.used[k].len != 0);
					s.used[k].len = 0;
				}
				if (err < 0)
					goto broken;
				s.wasted += s.nused - start;
				if (restart && s.wasted < VHD_NET_RX_WASTE_MAX)
					continue;
				starved = restart;
				break;
			}
			if (nb_lo) {
				uint16_t nbl = vhd_cpu_to_le16((uint16_t)nb);
				memcpy(nb_lo, &nbl, 1);
				memcpy(nb_hi, (uint8_t *)&nbl + 1, 1);
			}
			break;
		}
		if (ring_out || starved)
			break;
		if (gave_up) {
			net_stat_add(&st->too_big, 1);
			if (s.wasted >= VHD_NET_RX_WASTE_MAX) {
				i++; /* this one is dropped and counted: consumed */
				break;
			}
			continue;
		}
		delivered++;
		bytes += p->len;
	}

	/* Chains popped beyond what the burst used are the last ones popped: they go back to the ring unused. */
	if (s.wpos < s.nwin) {
		struct vhd_vq_used back[ENQ_WIN];
		unsigned nb = 0;
		while (s.wpos < s.nwin) {
			const struct vhd_vq_chain *c = &s.win[s.wpos++];
			back[nb++] = (struct vhd_vq_used){.id = c->id, .ndesc = c->ndesc};
		}
		if ((err = vhd_vq_unpop(s.vq, back, nb)) < 0)
			goto broken;
	}
	if ((err = enq_flush(&s)) < 0)
		goto broken;
	net_stat_add(&st->packets, delivered);
	net_stat_add(&st->bytes, bytes);
	net_stat_add(&st->no_buffers, n - i);
	return (int)i;

broken:
	return -EIO;
}
