/* SPDX-License-Identifier: MIT */
/* The switch's pieces that need no port: the MAC learning table and software TCP segmentation. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "net/net_impl.h"
#include "switch/fdb.h"
#include "switch/gso.h"

/* ------------------------------------------------------------------ fdb */

static struct sw_fdb *fdb_new(void)
{
	struct sw_fdb *f = malloc(sizeof(*f));
	CHECK(f);
	sw_fdb_init(f);
	return f;
}

static void mac_of(unsigned i, uint8_t m[6])
{
	m[0] = 0x02;
	m[1] = 0;
	m[2] = (uint8_t)(i >> 24);
	m[3] = (uint8_t)(i >> 16);
	m[4] = (uint8_t)(i >> 8);
	m[5] = (uint8_t)i;
}

static void test_fdb_learn_lookup_move(void)
{
	struct sw_fdb *f = fdb_new();
	uint8_t a[6], b[6];
	mac_of(1, a);
	mac_of(2, b);
	CHECK_EQ(sw_fdb_lookup(f, a), -1);
	sw_fdb_learn(f, a, 3, 100);
	sw_fdb_learn(f, b, 0, 100);
	CHECK_EQ(sw_fdb_lookup(f, a), 3);
	CHECK_EQ(sw_fdb_lookup(f, b), 0); /* port 0 is a real port, not "empty" */
	sw_fdb_learn(f, a, 5, 101);       /* the MAC moved */
	CHECK_EQ(sw_fdb_lookup(f, a), 5);
	CHECK_EQ(sw_fdb_flush_port(f, 5), 1u);
	CHECK_EQ(sw_fdb_lookup(f, a), -1);
	CHECK_EQ(sw_fdb_lookup(f, b), 0);
	free(f);
}

static void test_fdb_aging(void)
{
	struct sw_fdb *f = fdb_new();
	uint8_t a[6], b[6];
	mac_of(1, a);
	mac_of(2, b);
	sw_fdb_learn(f, a, 1, 100);
	sw_fdb_learn(f, b, 2, 100);
	sw_fdb_learn(f, b, 2, 350); /* b keeps talking */
	CHECK_EQ(sw_fdb_age(f, 401, 300), 1u);
	CHECK_EQ(sw_fdb_lookup(f, a), -1);
	CHECK_EQ(sw_fdb_lookup(f, b), 2);
	CHECK_EQ(sw_fdb_age(f, 401, 0), 0u); /* 0: never */
	free(f);
}

/* Many MACs: every one either learned or counted as refused (a full bucket), none lost silently or wrong. */
static void test_fdb_many(void)
{
	struct sw_fdb *f = fdb_new();
	const unsigned n = 20000;
	for (unsigned i = 0; i < n; i++) {
		uint8_t m[6];
		mac_of(i, m);
		sw_fdb_learn(f, m, (uint16_t)(i % 60), 1);
	}
	unsigned found = 0;
	for (unsigned i = 0; i < n; i++) {
		uint8_t m[6];
		mac_of(i, m);
		int p = sw_fdb_lookup(f, m);
		if (p >= 0) {
			CHECK_EQ(p, (int)(i % 60));
			found++;
		}
	}
	CHECK_EQ(found + atomic_load(&f->full), n);
	CHECK(found >= SW_FDB_BUCKETS * SW_FDB_WAYS / 2);
	free(f);
}

/*
 * The attack on the fixed hash (bucket = bits 32-41 of mac * 0x9e3779b97f4a7c15): those bits ignore the
 * address's top 6 bits, so the 64 unicast addresses that differ only there share a bucket, whatever the rest.
 * A guest sending from 63 of them filled that bucket and kept the 64th, another port's, from being learned.
 */
static unsigned old_bucket(const uint8_t m[6])
{
	uint64_t x = 0;
	for (int i = 0; i < 6; i++)
		x = x << 8 | m[i];
	return (unsigned)((x * 0x9e3779b97f4a7c15ull) >> 32) & (SW_FDB_BUCKETS - 1);
}

static void aimed_mac(unsigned i, uint8_t m[6])
{
	memcpy(m, "\x02\x00\x5e\x10\x20\x30", 6);
	m[0] = (uint8_t)(i << 2 | 0x02); /* bits 2-7 vary; locally administered, unicast */
}

static void test_fdb_keyed_hash_spreads_aimed_macs(void)
{
	struct sw_fdb *f = fdb_new();
	uint8_t m[6], first[6];
	aimed_mac(0, first);
	bool used[SW_FDB_BUCKETS] = {false};
	unsigned distinct = 0;
	for (unsigned i = 0; i < 64; i++) {
		aimed_mac(i, m);
		CHECK_EQ(old_bucket(m), old_bucket(first)); /* they are aimed: one bucket under the old hash */
		unsigned b = sw_fdb_bucket(f, m);
		CHECK(b < SW_FDB_BUCKETS);
		distinct += !used[b];
		used[b] = true;
	}
	/* 64 addresses over 1024 buckets at random: about 62 distinct, below 48 with a probability under 1e-20. */
	CHECK(distinct >= 48);
	/* The attack itself: 63 of them from port 1, then the victim's from port 2, which must be learned. */
	for (unsigned i = 1; i < 64; i++) {
		aimed_mac(i, m);
		CHECK_EQ(sw_fdb_learn(f, m, 1, 5), SW_FDB_LEARNED);
	}
	CHECK_EQ(sw_fdb_learn(f, first, 2, 5), SW_FDB_LEARNED);
	CHECK_EQ(sw_fdb_lookup(f, first), 2);
	CHECK_EQ(atomic_load(&f->full), 0u);
	for (unsigned i = 1; i < 64; i++) {
		aimed_mac(i, m);
		CHECK_EQ(sw_fdb_lookup(f, m), 1);
	}
	free(f);
}

/* The key is drawn per table: a second table puts the same addresses in other buckets. */
static void test_fdb_key_is_random(void)
{
	struct sw_fdb *f = fdb_new(), *g = fdb_new();
	unsigned differ = 0;
	for (unsigned i = 0; i < 64; i++) {
		uint8_t m[6];
		mac_of(i, m);
		differ += sw_fdb_bucket(f, m) != sw_fdb_bucket(g, m);
	}
	CHECK(differ > 32); /* about 64 */
	CHECK(memcmp(f->hkey, g->hkey, sizeof(f->hkey)) != 0);
	free(f);
	free(g);
}

/* Entries in the table that belong to port, counted the slow way. */
static void count_entry(const uint8_t mac[6], uint16_t port, uint32_t seen, void *arg)
{
	(void)mac;
	(void)seen;
	CHECK(port < SW_FDB_PORTS);
	((unsigned *)arg)[port]++;
}

static void check_owned(const struct sw_fdb *f)
{
	unsigned n[SW_FDB_PORTS] = {0};
	sw_fdb_walk(f, count_entry, n);
	for (uint16_t p = 0; p < SW_FDB_PORTS; p++)
		CHECK_EQ(sw_fdb_owned(f, p), n[p]);
}

static void test_fdb_port_limit(void)
{
	struct sw_fdb *f = fdb_new();
	CHECK_EQ(atomic_load(&f->max[7]), SW_FDB_MAX_MACS_DEFAULT);
	sw_fdb_set_max(f, 1, 3);
	uint8_t m[6];
	for (unsigned i = 0; i < 5; i++) {
		mac_of(100 + i, m);
		CHECK_EQ(sw_fdb_learn(f, m, 1, 10), i < 3 ? SW_FDB_LEARNED : SW_FDB_PORT_LIMIT);
	}
	CHECK_EQ(sw_fdb_owned(f, 1), 3u);
	mac_of(103, m);
	CHECK_EQ(sw_fdb_lookup(f, m), -1); /* refused: not in the table */
	mac_of(100, m);
	CHECK_EQ(sw_fdb_learn(f, m, 1, 11), SW_FDB_LEARNED); /* refreshing one it owns is no new entry */
	/* Other ports still learn. */
	mac_of(200, m);
	CHECK_EQ(sw_fdb_learn(f, m, 2, 11), SW_FDB_LEARNED);
	CHECK_EQ(sw_fdb_lookup(f, m), 2);
	/* Port 1 at its limit cannot take port 2's address either: the entry stays where it was. */
	CHECK_EQ(sw_fdb_learn(f, m, 1, 12), SW_FDB_PORT_LIMIT);
	CHECK_EQ(sw_fdb_lookup(f, m), 2);
	CHECK_EQ(sw_fdb_owned(f, 2), 1u);
	/* An address moving off port 1 gives its allowance back; the move onto port 2 takes one there. */
	mac_of(101, m);
	CHECK_EQ(sw_fdb_learn(f, m, 2, 12), SW_FDB_LEARNED);
	CHECK_EQ(sw_fdb_lookup(f, m), 2);
	CHECK_EQ(sw_fdb_owned(f, 1), 2u);
	CHECK_EQ(sw_fdb_owned(f, 2), 2u);
	mac_of(103, m);
	CHECK_EQ(sw_fdb_learn(f, m, 1, 12), SW_FDB_LEARNED);
	mac_of(104, m);
	CHECK_EQ(sw_fdb_learn(f, m, 1, 12), SW_FDB_PORT_LIMIT);
	check_owned(f);
	/* Aging gives back what ages out (100 was refreshed at 11, 102 learned at 10). */
	CHECK_EQ(sw_fdb_age(f, 20, 9), 1u);
	CHECK_EQ(sw_fdb_owned(f, 1), 2u);
	CHECK_EQ(sw_fdb_learn(f, m, 1, 20), SW_FDB_LEARNED);
	check_owned(f);
	/* So does the port's removal; the id starts afresh. */
	CHECK_EQ(sw_fdb_flush_port(f, 1), 3u);
	CHECK_EQ(sw_fdb_owned(f, 1), 0u);
	CHECK_EQ(sw_fdb_owned(f, 2), 2u);
	/* 0: no limit. */
	sw_fdb_set_max(f, 3, 0);
	unsigned learned = 0;
	for (unsigned i = 0; i < 3000; i++) {
		mac_of(10000 + i, m);
		learned += sw_fdb_learn(f, m, 3, 30) == SW_FDB_LEARNED;
	}
	CHECK(learned > 2900); /* a full bucket may refuse a few */
	CHECK_EQ(sw_fdb_owned(f, 3), learned);
	check_owned(f);
	free(f);
}

/* Threads learning overlapping addresses on different ports (so addresses move back and forth, and learns race
 * for free slots) while the control thread ages and flushes: the per-port counts still match the table. */
struct learner {
	struct sw_fdb *f;
	uint16_t port;
	unsigned rounds;
	unsigned refused;
};

static void *learner_main(void *arg)
{
	struct learner *l = arg;
	for (unsigned r = 0; r < l->rounds; r++)
		for (unsigned i = 0; i < 400; i++) {
			uint8_t m[6];
			mac_of(i * 7 + (l->port & 1) * 3, m);
			l->refused += sw_fdb_learn(l->f, m, l->port, r) == SW_FDB_PORT_LIMIT;
		}
	return NULL;
}

static void test_fdb_counts_under_races(void)
{
	struct sw_fdb *f = fdb_new();
	struct learner l[4];
	pthread_t t[4];
	for (unsigned i = 0; i < 4; i++) {
		l[i] = (struct learner){.f = f, .port = (uint16_t)(i + 1), .rounds = (unsigned)th_scaled(200)};
		sw_fdb_set_max(f, l[i].port, 150);
		CHECK_EQ(pthread_create(&t[i], NULL, learner_main, &l[i]), 0);
	}
	for (unsigned k = 0; k < 200; k++) {
		sw_fdb_age(f, k, 1);
		if (k % 50 == 49)
			sw_fdb_flush_port(f, (uint16_t)(k / 50 % 4 + 1));
	}
	unsigned refused = 0;
	for (unsigned i = 0; i < 4; i++) {
		CHECK_EQ(pthread_join(t[i], NULL), 0);
		refused += l[i].refused;
	}
	check_owned(f);
	for (uint16_t p = 1; p <= 4; p++)
		CHECK(sw_fdb_owned(f, p) <= 150);
	CHECK(refused > 0);
	free(f);
}

/* ------------------------------------------------------------------ gso */

static uint16_t csum_ok(const uint8_t *p, size_t n, uint32_t seed)
{
	uint32_t s = seed;
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s; /* 0xffff when the checksum inside is right */
}

#define PAYLOAD 5000u
#define MSS 1400u

/* Ethernet + IPv4 or IPv6 + 32-byte TCP header (with options) + PAYLOAD bytes, as a TSO frame. */
static struct vhd_pkt *tso_frame(struct vhd_pktpool *pool, bool v6, uint8_t tcp_flags)
{
	struct vhd_pkt *p;
	CHECK_EQ(vhd_pkt_alloc_bulk(pool, &p, 1), 1u);
	uint8_t *d = vhd_pkt_data(p);
	memset(d, 0, 200);
	memcpy(d, "\x02\0\0\0\0\x02\x02\0\0\0\0\x01", 12);
	uint32_t l3 = 14, l4 = v6 ? l3 + 40 : l3 + 20, hl = l4 + 32;
	if (v6) {
		d[12] = 0x86, d[13] = 0xdd;
		d[l3] = 0x60;
		d[l3 + 6] = 6;
		d[l3 + 7] = 64;
		d[l3 + 8 + 15] = 1;  /* ::1 -> ::2 */
		d[l3 + 24 + 15] = 2;
	} else {
		d[12] = 0x08, d[13] = 0x00;
		d[l3] = 0x45;
		d[l3 + 4] = 0x12, d[l3 + 5] = 0x34; /* id */
		d[l3 + 6] = 0x40;                   /* DF */
		d[l3 + 8] = 64;
		d[l3 + 9] = 6;
		memcpy(d + l3 + 12, "\x0a\0\0\x01\x0a\0\0\x02", 8);
	}
	d[l4] = 0x30, d[l4 + 1] = 0x39;           /* ports */
	d[l4 + 2] = 0x1f, d[l4 + 3] = 0x90;
	d[l4 + 4] = 0xff, d[l4 + 5] = 0xff, d[l4 + 6] = 0xfa, d[l4 + 7] = 0x00; /* seq wraps during the frame */
	d[l4 + 12] = 8 << 4;                      /* 32-byte header */
	d[l4 + 13] = tcp_flags;
	d[l4 + 20] = 1, d[l4 + 21] = 1, d[l4 + 22] = 8, d[l4 + 23] = 10; /* NOP NOP timestamp */
	for (uint32_t i = 0; i < PAYLOAD; i++)
		d[hl + i] = (uint8_t)(i * 7 + 3);
	p->len = hl + PAYLOAD;
	p->meta = (struct vhd_net_meta){.flags = VHD_NET_META_F_NEEDS_CSUM,
					.gso_type = v6 ? VHD_NET_META_GSO_TCPV6 : VHD_NET_META_GSO_TCPV4,
					.hdr_len = (uint16_t)hl, .gso_size = MSS, .csum_start = (uint16_t)l4,
					.csum_offset = 16};
	return p;
}

static void check_segments(bool v6)
{
	struct vhd_pktpool *pool;
	CHECK_EQ(vhd_pktpool_create(64, 8192, &pool), 0);
	struct vhd_pkt *big = tso_frame(pool, v6, 0x18 | 0x01 | 0x80); /* PSH ACK FIN CWR */
	struct vhd_pkt *seg[8];
	unsigned n = sw_gso_segment(big, pool, seg, 8);
	CHECK_EQ(n, (PAYLOAD + MSS - 1) / MSS);
	uint32_t l3 = 14, l4 = v6 ? 54 : 34, hl = l4 + 32, got = 0;
	for (unsigned i = 0; i < n; i++) {
		struct vhd_pkt *s = seg[i];
		uint8_t *d = vhd_pkt_data(s);
		uint32_t chunk = i + 1 < n ? MSS : PAYLOAD - (n - 1) * MSS;
		CHECK_EQ(s->len, hl + chunk);
		CHECK(!memcmp(d + hl, vhd_pkt_data(big) + hl + i * MSS, chunk));
		got += chunk;
		uint32_t seq = (uint32_t)d[l4 + 4] << 24 | (uint32_t)d[l4 + 5] << 16 | (uint32_t)d[l4 + 6] << 8 | d[l4 + 7];
		CHECK_EQ(seq, 0xfffffa00u + i * MSS);
		uint8_t f = d[l4 + 13];
		CHECK_EQ(!!(f & 0x01), i + 1 == n); /* FIN last */
		CHECK_EQ(!!(f & 0x08), i + 1 == n); /* PSH last */
		CHECK_EQ(!!(f & 0x80), i == 0);     /* CWR first */
		CHECK(f & 0x10);                    /* ACK always */
		if (v6) {
			CHECK_EQ((uint32_t)(d[l3 + 4] << 8 | d[l3 + 5]), s->len - l4);
		} else {
			CHECK_EQ((uint32_t)(d[l3 + 2] << 8 | d[l3 + 3]), s->len - l3);
			CHECK_EQ((unsigned)(d[l3 + 4] << 8 | d[l3 + 5]), 0x1234u + i);
			CHECK_EQ(csum_ok(d + l3, 20, 0), 0xffff);
		}
		/* Complete the partial checksum the way an output would, then verify it independently. */
		CHECK(s->meta.flags & VHD_NET_META_F_NEEDS_CSUM);
		CHECK_EQ(s->meta.csum_start, l4);
		CHECK_EQ(s->meta.gso_type, VHD_NET_META_GSO_NONE);
		net_csum_complete(s);
		uint32_t tl = s->len - l4, ps = 6 + tl;
		const uint8_t *src = v6 ? d + l3 + 8 : d + l3 + 12;
		unsigned alen = v6 ? 32 : 8;
		for (unsigned k = 0; k < alen; k += 2)
			ps += (uint32_t)(src[k] << 8 | src[k + 1]);
		CHECK_EQ(csum_ok(d + l4, tl, ps), 0xffff);
	}
	CHECK_EQ(got, PAYLOAD);
	vhd_pkt_free_bulk(seg, n);
	vhd_pkt_free(big);
	CHECK_EQ(vhd_pktpool_avail(pool), 64u);
	vhd_pktpool_destroy(pool);
}

static void test_gso_tcp4(void) { check_segments(false); }
static void test_gso_tcp6(void) { check_segments(true); }

static void test_gso_refusals(void)
{
	struct vhd_pktpool *pool;
	CHECK_EQ(vhd_pktpool_create(8, 8192, &pool), 0);
	struct vhd_pkt *seg[8];
	struct vhd_pkt *p = tso_frame(pool, false, 0x10);
	CHECK_EQ(sw_gso_segment(p, pool, seg, 3), 0u); /* needs 4 */
	p->meta.csum_start = 30;                        /* disagrees with the headers */
	CHECK_EQ(sw_gso_segment(p, pool, seg, 8), 0u);
	p->meta.csum_start = 34;
	p->len = 60; /* shorter than its own headers */
	CHECK_EQ(sw_gso_segment(p, pool, seg, 8), 0u);
	p->len = 34 + 32 + PAYLOAD;
	vhd_pkt_data(p)[23] = 17; /* not TCP */
	CHECK_EQ(sw_gso_segment(p, pool, seg, 8), 0u);
	vhd_pkt_data(p)[23] = 6;
	p->meta.gso_size = 0;
	CHECK_EQ(sw_gso_segment(p, pool, seg, 8), 0u);
	p->meta.gso_size = MSS;
	CHECK_EQ(sw_gso_segment(p, pool, seg, 8), 4u); /* and fine again */
	vhd_pkt_free_bulk(seg, 4);
	/* The pool running dry gives everything back. */
	struct vhd_pkt *hold[8];
	unsigned h = vhd_pkt_alloc_bulk(pool, hold, 5);
	CHECK_EQ(h, 5u);
	CHECK_EQ(sw_gso_segment(p, pool, seg, 8), 0u);
	CHECK_EQ(vhd_pktpool_avail(pool), 2u);
	vhd_pkt_free_bulk(hold, h);
	vhd_pkt_free(p);
	vhd_pktpool_destroy(pool);
}

static const struct th_case cases[] = {
	{"fdb_learn_lookup_move_flush", test_fdb_learn_lookup_move, 0},
	{"fdb_aging", test_fdb_aging, 0},
	{"fdb_many_macs_learned_or_counted", test_fdb_many, 0},
	{"fdb_keyed_hash_spreads_aimed_macs", test_fdb_keyed_hash_spreads_aimed_macs, 0},
	{"fdb_key_is_random", test_fdb_key_is_random, 0},
	{"fdb_port_limit_refuses_and_gives_back", test_fdb_port_limit, 0},
	{"fdb_port_counts_under_races", test_fdb_counts_under_races, 0},
	{"gso_tcp4_segments", test_gso_tcp4, 0},
	{"gso_tcp6_segments", test_gso_tcp6, 0},
	{"gso_refusals_keep_nothing", test_gso_refusals, 0},
};
TH_MAIN("test_l2", cases)
