/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "switch/fdb.h"

static inline uint64_t mac48(const uint8_t m[6])
{
	return (uint64_t)m[0] << 40 | (uint64_t)m[1] << 32 | (uint64_t)m[2] << 24 | (uint64_t)m[3] << 16 |
	       (uint64_t)m[4] << 8 | m[5];
}

static inline unsigned bucket_of(uint64_t mac)
{
	uint64_t h = mac * 0x9e3779b97f4a7c15ull;
	return (unsigned)(h >> 32) & (SW_FDB_BUCKETS - 1);
}

void sw_fdb_init(struct sw_fdb *f)
{
	memset(f, 0, sizeof(*f));
}

void sw_fdb_learn(struct sw_fdb *f, const uint8_t mac[6], uint16_t port, uint32_t now)
{
	uint64_t m = mac48(mac), want = m << 16 | (uint64_t)(port + 1u);
	unsigned b = bucket_of(m);
	int free_slot = -1;
	/* Relaxed throughout: an entry is a hint for where to send frames, and a lookup racing a move sends one
	 * frame to the old port at worst, as any learning switch does. */
	for (unsigned w = 0; w < SW_FDB_WAYS; w++) {
		uint64_t k = atomic_load_explicit(&f->key[b][w], memory_order_relaxed);
		if (k >> 16 == m) {
			if (k != want)
				atomic_store_explicit(&f->key[b][w], want, memory_order_relaxed); /* the MAC moved */
			/* Writing the timestamp only when it changes keeps the line shared between threads. */
			if (atomic_load_explicit(&f->seen[b][w], memory_order_relaxed) != now)
				atomic_store_explicit(&f->seen[b][w], now, memory_order_relaxed);
			return;
		}
		if (k == 0 && free_slot < 0)
			free_slot = (int)w;
	}
	if (free_slot < 0) {
		atomic_fetch_add_explicit(&f->full, 1, memory_order_relaxed);
		return;
	}
	uint64_t expect = 0;
	atomic_store_explicit(&f->seen[b][free_slot], now, memory_order_relaxed);
	/* Two threads learning different MACs into the same free slot: one wins, the other learns next frame. */
	atomic_compare_exchange_strong_explicit(&f->key[b][free_slot], &expect, want, memory_order_relaxed,
						memory_order_relaxed);
}

int sw_fdb_lookup(const struct sw_fdb *f, const uint8_t mac[6])
{
	uint64_t m = mac48(mac);
	unsigned b = bucket_of(m);
	for (unsigned w = 0; w < SW_FDB_WAYS; w++) {
		uint64_t k = atomic_load_explicit(&f->key[b][w], memory_order_relaxed);
		if (k && k >> 16 == m)
			return (int)(k & 0xffff) - 1;
	}
	return -1;
}

static unsigned drop_if(struct sw_fdb *f, bool (*pred)(uint64_t k, uint32_t seen, uint32_t a, uint32_t c),
			uint32_t a, uint32_t c)
{
	unsigned n = 0;
	for (unsigned b = 0; b < SW_FDB_BUCKETS; b++)
		for (unsigned w = 0; w < SW_FDB_WAYS; w++) {
			uint64_t k = atomic_load_explicit(&f->key[b][w], memory_order_relaxed);
			if (!k || !pred(k, atomic_load_explicit(&f->seen[b][w], memory_order_relaxed), a, c))
				continue;
			/* CAS so that an entry a thread just refreshed to another port survives. */
			if (atomic_compare_exchange_strong_explicit(&f->key[b][w], &k, 0, memory_order_relaxed,
								    memory_order_relaxed))
				n++;
		}
	return n;
}

static bool too_old(uint64_t k, uint32_t seen, uint32_t now, uint32_t age)
{
	(void)k;
	return now - seen > age;
}

static bool on_port(uint64_t k, uint32_t seen, uint32_t port, uint32_t unused)
{
	(void)seen;
	(void)unused;
	return (k & 0xffff) == port + 1;
}

unsigned sw_fdb_age(struct sw_fdb *f, uint32_t now, uint32_t age)
{
	return age ? drop_if(f, too_old, now, age) : 0;
}

unsigned sw_fdb_flush_port(struct sw_fdb *f, uint16_t port)
{
	return drop_if(f, on_port, port, 0);
}

void sw_fdb_walk(const struct sw_fdb *f, void (*fn)(const uint8_t mac[6], uint16_t port, uint32_t seen, void *arg),
		 void *arg)
{
	for (unsigned b = 0; b < SW_FDB_BUCKETS; b++)
		for (unsigned w = 0; w < SW_FDB_WAYS; w++) {
			uint64_t k = atomic_load_explicit(&f->key[b][w], memory_order_relaxed);
			if (!k)
				continue;
			uint8_t mac[6];
			for (int i = 0; i < 6; i++)
				mac[i] = (uint8_t)(k >> (56 - 8 * i));
			fn(mac, (uint16_t)((k & 0xffff) - 1), atomic_load_explicit(&f->seen[b][w], memory_order_relaxed),
			   arg);
		}
}
