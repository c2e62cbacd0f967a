/* SPDX-License-Identifier: MIT */
/*
 * pcapng writer fed by per-thread SPSC rings (capture.h). Block layouts from the pcapng specification
 * (draft-ietf-opsawg-pcapng): every block is type, total length, body, total length again, 32-bit aligned, in
 * the writer's byte order (the Section Header Block's byte-order magic tells readers which).
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "switch/capture.h"
#include "switch/port.h"

_Static_assert((SW_CAPTURE_SLOTS & (SW_CAPTURE_SLOTS - 1)) == 0, "ring index masks");
_Static_assert(SW_CAPTURE_SNAPLEN % 4 == 0, "packet data stays 32-bit aligned without padding");

#define BT_SHB 0x0A0D0D0Au
#define BT_IDB 1u
#define BT_ISB 5u
#define BT_EPB 6u
#define LINKTYPE_ETHERNET 1u
/* epb_flags bits 0-1: direction, 01 inbound, 10 outbound. */
#define EPB_FLAGS_INBOUND 1u
#define EPB_FLAGS_OUTBOUND 2u
/* The largest EPB: 28 bytes of header, the data, epb_flags (4 + 4), opt_endofopt (4), trailing length (4). */
#define EPB_MAX (28u + SW_CAPTURE_SNAPLEN + 8u + 4u + 4u)
/* Room kept for the closing Interface Statistics Block. */
#define ISB_ROOM 128u

struct cap_slot {
	uint64_t ts_ns;
	uint32_t caplen, origlen;
	uint32_t dir; /* SW_CAP_RX or SW_CAP_TX */
	uint8_t data[SW_CAPTURE_SNAPLEN];
};

struct cap_ring {
	/* Producer's line: slots filled (the consumer reads it), and frames that found the ring full. */
	_Alignas(64) _Atomic uint32_t head;
	_Atomic uint64_t drops;
	/* Consumer's line: slots done with (the producer reads it). */
	_Alignas(64) _Atomic uint32_t tail;
	struct cap_slot *slots;
};

struct sw_capture {
	unsigned threads, dirs;
	uint64_t count, frames;
	int fd;
	bool stop_asked, reader_gone, closing;
	uint64_t start_ns;
	uint8_t *out;
	size_t out_len, out_off;
	struct cap_ring ring[];
};

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ pcapng blocks */

static void put32(struct sw_capture *c, uint32_t v)
{
	memcpy(c->out + c->out_len, &v, 4);
	c->out_len += 4;
}

static void put_bytes(struct sw_capture *c, const void *p, size_t n)
{
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	while (c->out_len % 4)
		c->out[c->out_len++] = 0;
}

/* An option: code, length, value padded to 32 bits. */
static void put_opt(struct sw_capture *c, uint16_t code, const void *v, uint16_t len)
{
	put32(c, (uint32_t)code | (uint32_t)len << 16);
	put_bytes(c, v, len);
}

/* A timestamp option: high word first, as in the blocks. */
static void put_opt_ts(struct sw_capture *c, uint16_t code, uint64_t v)
{
	uint32_t hl[2] = {(uint32_t)(v >> 32), (uint32_t)v};
	put_opt(c, code, hl, 8);
}

/* Start a block; returns where it starts, for end_block(). */
static size_t begin_block(struct sw_capture *c, uint32_t type)
{
	size_t at = c->out_len;
	put32(c, type);
	put32(c, 0);
	return at;
}

static void end_block(struct sw_capture *c, size_t at)
{
	put32(c, 0); /* opt_endofopt */
	uint32_t total = (uint32_t)(c->out_len - at + 4);
	memcpy(c->out + at + 4, &total, 4);
	put32(c, total);
}

static void put_headers(struct sw_capture *c, const char *port)
{
	size_t b = begin_block(c, BT_SHB);
	put32(c, 0x1A2B3C4Du);                 /* byte-order magic */
	put32(c, 1u);                          /* version 1.0 */
	put32(c, 0xFFFFFFFFu);                 /* section length: not given (-1) */
	put32(c, 0xFFFFFFFFu);
	put_opt(c, 4, "vhostd", 6);            /* shb_userappl */
	end_block(c, b);
	b = begin_block(c, BT_IDB);
	put32(c, LINKTYPE_ETHERNET);           /* link type, reserved 0 */
	put32(c, SW_CAPTURE_SNAPLEN);
	put_opt(c, 2, port, (uint16_t)strlen(port)); /* if_name */
	uint8_t tsresol = 9;                   /* nanoseconds */
	put_opt(c, 9, &tsresol, 1);            /* if_tsresol */
	end_block(c, b);
}

static void put_epb(struct sw_capture *c, const struct cap_slot *s)
{
	size_t b = begin_block(c, BT_EPB);
	put32(c, 0); /* interface 0 */
	put32(c, (uint32_t)(s->ts_ns >> 32));
	put32(c, (uint32_t)s->ts_ns);
	put32(c, s->caplen);
	put32(c, s->origlen);
	put_bytes(c, s->data, s->caplen);
	uint32_t flags = s->dir == SW_CAP_RX ? EPB_FLAGS_INBOUND : EPB_FLAGS_OUTBOUND;
	put_opt(c, 2, &flags, 4); /* epb_flags */
	end_block(c, b);
}

static void put_isb(struct sw_capture *c)
{
	uint64_t now = realtime_ns(), drops = sw_capture_drops(c);
	size_t b = begin_block(c, BT_ISB);
	put32(c, 0);
	put32(c, (uint32_t)(now >> 32));
	put32(c, (uint32_t)now);
	put_opt_ts(c, 2, c->start_ns);          /* isb_starttime */
	put_opt_ts(c, 3, now);                  /* isb_endtime */
	uint64_t offered = c->frames + drops;
	put_opt(c, 4, &offered, 8);            /* isb_ifrecv: frames the capture was offered */
	put_opt(c, 7, &drops, 8);              /* isb_osdrop: lost by the capture (a full ring) */
	end_block(c, b);
}

/* ------------------------------------------------------------------ control thread */

int sw_capture_create(const char *port, unsigned threads, unsigned dirs, uint64_t count, int fd,
		      struct sw_capture **out, char *err, size_t errlen)
{
	struct stat st;
	int type = 0, domain = 0;
	socklen_t sl = sizeof(type), dl = sizeof(domain);
	int rc = 0;
	if (fd < 0 || fstat(fd, &st) < 0)
		rc = -EBADF;
	else if (!S_ISSOCK(st.st_mode))
		rc = -ENOTSOCK;
	else if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) < 0 ||
		 getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) < 0 || type != SOCK_STREAM || domain != AF_UNIX)
		rc = -EPROTOTYPE;
	if (rc) {
		snprintf(err, errlen, "capture: the request must carry a connected unix stream socket (SCM_RIGHTS) "
			 "for the pcapng stream; vhostctl capture passes one");
		if (fd >= 0)
			close(fd);
		return rc;
	}
	struct sw_capture *c = calloc(1, sizeof(*c) + threads * sizeof(c->ring[0]));
	if (!c || !(c->out = malloc(SW_CAPTURE_OUT)))
		goto nomem;
	c->threads = threads;
	c->dirs = dirs;
	c->count = count;
	c->fd = fd;
	c->start_ns = realtime_ns();
	for (unsigned i = 0; i < threads; i++)
		if (!(c->ring[i].slots = malloc(SW_CAPTURE_SLOTS * sizeof(struct cap_slot))))
			goto nomem;
	put_headers(c, port);
	*out = c;
	return 0;
nomem:
	sw_capture_destroy(c);
	if (!c)
		close(fd);
	snprintf(err, errlen, "capture: out of memory");
	return -ENOMEM;
}

void sw_capture_destroy(struct sw_capture *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->threads; i++)
		free(c->ring[i].slots);
	free(c->out);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

bool sw_capture_wants(const struct sw_capture *c, unsigned dir)
{
	return c->dirs & dir;
}

/* Send what the socket takes, never waiting (MSG_DONTWAIT whatever the socket's own flags). */
static void flush(struct sw_capture *c)
{
	struct pollfd p = {.fd = c->fd, .events = POLLRDHUP};
	if (poll(&p, 1, 0) > 0) {
		if (p.revents & (POLLHUP | POLLERR | POLLNVAL))
			c->reader_gone = true;
		else if (p.revents & POLLRDHUP)
			c->stop_asked = true; /* vhostctl shut its side down: Ctrl-C */
	}
	while (!c->reader_gone && c->out_off < c->out_len) {
		ssize_t r = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				c->reader_gone = true;
			break;
		}
		c->out_off += (size_t)r;
	}
	if (c->reader_gone || c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
}

/* Move frames from the rings to the output, oldest first across the threads, while it has room. */
static void drain(struct sw_capture *c)
{
	uint32_t head[SW_MAX_THREADS], tail[SW_MAX_THREADS];
	for (unsigned i = 0; i < c->threads; i++) {
		/* Pairs with the producer's release store of head: the slots before it are written. */
		head[i] = atomic_load_explicit(&c->ring[i].head, memory_order_acquire);
		tail[i] = atomic_load_explicit(&c->ring[i].tail, memory_order_relaxed); /* ours */
	}
	for (;;) {
		bool full = c->count && c->frames >= c->count;
		if (!full && SW_CAPTURE_OUT - c->out_len < EPB_MAX + ISB_ROOM)
			break; /* the reader is behind: leave the rest in the rings */
		int best = -1;
		for (unsigned i = 0; i < c->threads; i++)
			if (head[i] != tail[i] &&
			    (best < 0 || c->ring[i].slots[tail[i] % SW_CAPTURE_SLOTS].ts_ns <
						 c->ring[best].slots[tail[best] % SW_CAPTURE_SLOTS].ts_ns))
				best = (int)i;
		if (best < 0)
			break;
		if (!full) { /* past count: the rest is discarded, not lost */
			put_epb(c, &c->ring[best].slots[tail[best] % SW_CAPTURE_SLOTS]);
			c->frames++;
		}
		tail[best]++;
	}
	for (unsigned i = 0; i < c->threads; i++) /* pairs with the producer's acquire load of tail */
		atomic_store_explicit(&c->ring[i].tail, tail[i], memory_order_release);
}

bool sw_capture_pump(struct sw_capture *c)
{
	flush(c);
	if (!c->reader_gone && !c->closing)
		drain(c);
	flush(c);
	return c->reader_gone || c->stop_asked || (c->count && c->frames >= c->count);
}

void sw_capture_close(struct sw_capture *c)
{
	if (c->closing)
		return;
	flush(c);
	if (!c->reader_gone) {
		/* Whatever does not fit now is lost: the producers are gone, the rings go with the capture. */
		drain(c);
		uint64_t left = 0;
		for (unsigned i = 0; i < c->threads; i++)
			left += atomic_load_explicit(&c->ring[i].head, memory_order_relaxed) -
				atomic_load_explicit(&c->ring[i].tail, memory_order_relaxed);
		if (!(c->count && c->frames >= c->count))
			atomic_fetch_add_explicit(&c->ring[0].drops, left, memory_order_relaxed);
		put_isb(c);
	}
	c->closing = true;
	flush(c);
}

bool sw_capture_done(const struct sw_capture *c)
{
	return c->closing && (c->reader_gone || c->out_len == 0);
}

int sw_capture_fd(const struct sw_capture *c)
{
	return c->fd;
}

short sw_capture_events(const struct sw_capture *c)
{
	/* Once the reader has shut its side, POLLRDHUP would hold for good: asking for it then would spin the
	 * control thread for as long as the reader leaves the last blocks unread. */
	short rdhup = c->stop_asked || c->closing ? 0 : POLLRDHUP;
	return (short)(c->out_len ? POLLOUT | rdhup : rdhup);
}

uint64_t sw_capture_frames(const struct sw_capture *c)
{
	return c->frames;
}

uint64_t sw_capture_drops(const struct sw_capture *c)
{
	uint64_t d = 0;
	for (unsigned i = 0; i < c->threads; i++)
		d += atomic_load_explicit(&c->ring[i].drops, memory_order_relaxed);
	return d;
}

/* ------------------------------------------------------------------ forwarding threads */

/* Copy up to n frames into free slots after head without publishing them; returns how many. */
static unsigned stage(struct cap_ring *r, uint32_t dir, struct vhd_pkt *const *pkts, unsigned n)
{
	uint32_t h = atomic_load_explicit(&r->head, memory_order_relaxed); /* ours */
	/* Pairs with the consumer's release store of tail: it is done reading the slots it freed. */
	uint32_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
	unsigned room = SW_CAPTURE_SLOTS - (h - t);
	unsigned k = n < room ? n : room;
	if (!k)
		return 0;
	uint64_t now = realtime_ns(); /* one clock read (vDSO) per burst */
	for (unsigned i = 0; i < k; i++) {
		struct cap_slot *s = &r->slots[(h + i) % SW_CAPTURE_SLOTS];
		uint32_t len = pkts[i]->len;
		s->ts_ns = now;
		s->origlen = len;
		s->caplen = len < SW_CAPTURE_SNAPLEN ? len : SW_CAPTURE_SNAPLEN;
		s->dir = dir;
		memcpy(s->data, vhd_pkt_data(pkts[i]), s->caplen);
	}
	return k;
}

static void publish(struct cap_ring *r, unsigned staged, unsigned taken)
{
	unsigned k = staged < taken ? staged : taken;
	uint32_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	/* Pairs with the consumer's acquire load of head in drain(): the slots' contents before the index. */
	atomic_store_explicit(&r->head, h + k, memory_order_release);
	if (taken > k) /* single writer: a relaxed load and store, no locked add */
		atomic_store_explicit(&r->drops, atomic_load_explicit(&r->drops, memory_order_relaxed) + (taken - k),
				      memory_order_relaxed);
}

void sw_capture_rx(struct sw_capture *c, unsigned thread, struct vhd_pkt *const *pkts, unsigned n)
{
	struct cap_ring *r = &c->ring[thread];
	publish(r, stage(r, SW_CAP_RX, pkts, n), n);
}

unsigned sw_capture_tx_stage(struct sw_capture *c, unsigned thread, struct vhd_pkt *const *pkts, unsigned n)
{
	return stage(&c->ring[thread], SW_CAP_TX, pkts, n);
}

void sw_capture_tx_commit(struct sw_capture *c, unsigned thread, unsigned staged, unsigned sent)
{
	publish(&c->ring[thread], staged, sent);
}
