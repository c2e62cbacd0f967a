/* SPDX-License-Identifier: MIT */
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "switch/fdb.h"

static inline uint64_t mac48(const uint8_t m[6])
{
	return (uint64_t)m[0] << 40 | (uint64_t)m[1] << 32 | (uint64_t)m[2] << 24 | (uint64_t)m[3] << 16 |
	       (uint64_t)m[4] << 8 | m[5];
}

/*
 * Keyed multiply-xorshift-multiply, the bucket from the top bits. The top bits of a product depend on every bit
 * of the multiplicand, so no part of the address is left out (the fixed multiply before took bits 32-41, which
 * ignore the address's top 6 bits); with the multipliers random and odd, two given addresses share a bucket with
 * a probability of about 2 in SW_FDB_BUCKETS whatever they are, and the xorshift between the two multiplies
 * breaks the linearity that would let a guest who found one colliding pair shift it into more. Five instructions
 * more than the fixed multiply (a lookup 73 -> 78 in callgrind), on the forwarding path once per change of
 * address in a burst.
 */
static inline unsigned bucket_of(const struct sw_fdb *f, uint64_t mac)
{
	uint64_t h = (mac ^ f->hkey[0]) * f->hkey[1];
	h ^= h >> 32;
	h *= f->hkey[2];
	return (unsigned)(h >> (64 - SW_FDB_BUCKET_BITS));
}

_Static_assert(SW_FDB_BUCKET_BITS > 0 && SW_FDB_BUCKET_BITS < 32, "bucket index from the top bits");

/* Fresh key material. getrandom() without blocking: early in boot, before the pool is ready, a key from the
 * clock, the pid and where the table lies is still unknown to a guest, which sees none of them. */
static void random_key(uint64_t k[3], const void *salt)
{
	if (getrandom(k, 3 * sizeof(k[0]), GRND_NONBLOCK) == (ssize_t)(3 * sizeof(k[0])))
		return;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t x = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 32 ^ (uint64_t)getpid() << 16 ^ (uintptr_t)salt;
	for (int i = 0; i < 3; i++) { /* splitmix64 steps */
		uint64_t z = (x += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		k[i] = z ^ (z >> 31);
	}
}

void sw_fdb_init(struct sw_fdb *f)
{
	memset(f, 0, sizeof(*f));
	random_key(f->hkey, f);
	f->hkey[1] |= 1; /* odd multipliers: a multiply by them is a bijection, no bits lost */
	f->hkey[2] |= 1;
	for (unsigned p = 0; p < SW_FDB_PORTS; p++)
		atomic_init(&f->max[p], SW_FDB_MAX_MACS_DEFAULT);
}

void sw_fdb_set_max(struct sw_fdb *f, uint16_t port, uint32_t max)
{
	if (port < SW_FDB_PORTS)
		atomic_store_explicit(&f->max[port], max, memory_order_relaxed);
}

unsigned sw_fdb_owned(const struct sw_fdb *f, uint16_t port)
{
	return port < SW_FDB_PORTS ? atomic_load_explicit(&f->owned[port], memory_order_relaxed) : 0;
}

unsigned sw_fdb_bucket(const struct sw_fdb *f, const uint8_t mac[6])
{
	return bucket_of(f, mac48(mac));
}

/*
 * One more entry for port, if its limit allows. Relaxed: the count orders nothing, and the add-then-check makes
 * racing threads agree (the one whose add passes the limit takes it back), so the limit holds exactly; the load
 * first keeps a port at its limit from writing the shared line for every refused address.
 */
static bool take(struct sw_fdb *f, uint16_t port)
{
	if (port >= SW_FDB_PORTS)
		return false;
	uint32_t max = atomic_load_explicit(&f->max[port], memory_order_relaxed);
	if (max && atomic_load_explicit(&f->owned[port], memory_order_relaxed) >= max)
		return false;
	if (atomic_fetch_add_explicit(&f->owned[port], 1, memory_order_relaxed) >= max && max) {
		atomic_fetch_sub_explicit(&f->owned[port], 1, memory_order_relaxed);
		return false;
	}
	return true;
}

/* The entry k (a port's, as the table held it) is gone or no longer that port's. */
static void give_back(struct sw_fdb *f, uint64_t k)
{
	unsigned port = (unsigned)(k & 0xffff) - 1;
	if (port < SW_FDB_PORTS)
		atomic_fetch_sub_explicit(&f->owned[port], 1, memory_order_relaxed);
}

/* The MAC in *slot (entry k) now talks from another port: move it if that port may own one more. The CAS makes
 * the owner change and its counting one step against a racing move, age or flush: whoever changes k counts. */
static __attribute__((noinline)) enum sw_fdb_learn_res move(struct sw_fdb *f, _Atomic uint64_t *slot,
							    uint64_t k, uint64_t want, uint16_t port)
{
	if (!take(f, port))
		return SW_FDB_PORT_LIMIT;
	if (atomic_compare_exchange_strong_explicit(slot, &k, want, memory_order_relaxed, memory_order_relaxed))
		give_back(f, k);
	else
		give_back(f, want); /* changed meanwhile: this learn lost, the next frame tries again */
	return SW_FDB_LEARNED;
}

enum sw_fdb_learn_res sw_fdb_learn(struct sw_fdb *f, const uint8_t mac[6], uint16_t port, uint32_t now)
{
	uint64_t m = mac48(mac), want = m << 16 | (uint64_t)(port + 1u);
	unsigned b = bucket_of(f, m);
	int free_slot = -1;
	/* Relaxed throughout: an entry is a hint for where to send frames, and a lookup racing a move sends one
	 * frame to the old port at worst, as any learning switch does. */
	for (unsigned w = 0; w < SW_FDB_WAYS; w++) {
		uint64_t k = atomic_load_explicit(&f->key[b][w], memory_order_relaxed);
		if (k >> 16 == m && k) { /* k: the all-zero MAC does not match an empty slot */
			if (k != want) {
				enum sw_fdb_learn_res r = move(f, &f->key[b][w], k, want, port);
				if (r != SW_FDB_LEARNED)
					return r;
			}
			/* Writing the timestamp only when it changes keeps the line shared between threads. */
			if (atomic_load_explicit(&f->seen[b][w], memory_order_relaxed) != now)
				atomic_store_explicit(&f->seen[b][w], now, memory_order_relaxed);
			return SW_FDB_LEARNED;
		}
		if (k == 0 && free_slot < 0)
			free_slot = (int)w;
	}
	if (free_slot < 0) {
		atomic_fetch_add_explicit(&f->full, 1, memory_order_relaxed);
		return SW_FDB_FULL;
	}
	if (!take(f, port))
		return SW_FDB_PORT_LIMIT;
	uint64_t expect = 0;
	atomic_store_explicit(&f->seen[b][free_slot], now, memory_order_relaxed);
	/* Two threads learning different MACs into the same free slot: one wins, the other learns next frame. */
	if (!atomic_compare_exchange_strong_explicit(&f->key[b][free_slot], &expect, want, memory_order_relaxed,
						     memory_order_relaxed))
		give_back(f, want);
	return SW_FDB_LEARNED;
}

int sw_fdb_lookup(const struct sw_fdb *f, const uint8_t mac[6])
{
	uint64_t m = mac48(mac);
	unsigned b = bucket_of(f, m);
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
			/* CAS so that an entry a thread just moved to another port survives (and is counted as that
			 * port's). */
			if (atomic_compare_exchange_strong_explicit(&f->key[b][w], &k, 0, memory_order_relaxed,
								    memory_order_relaxed)) {
				give_back(f, k);
				n++;
			}
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
