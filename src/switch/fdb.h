/* SPDX-License-Identifier: MIT */
/*
 * The L2 learning table: MAC -> port. Forwarding threads look up and learn concurrently without locks; the
 * control thread ages entries out and flushes a removed port's entries.
 *
 * Each entry is one 64-bit word, MAC in the high 48 bits and port id + 1 in the low 16 (0 = empty), so a reader
 * sees either the old or the new mapping, never half of each. A MAC hashes to a bucket of 8 slots and lives
 * in any slot of it; entries never move, so no probe chain can break when one is removed. A full bucket
 * refuses the new MAC (it is flooded instead, and counted).
 *
 * The bucket comes from a hash keyed with random bits drawn at sw_fdb_init(): a guest that knows the code but not
 * the key cannot pick addresses that share a bucket, so it cannot fill the bucket of another port's address
 * (with a fixed hash, 64 addresses differing in their first byte were enough to keep any one address out).
 */
#ifndef VHD_SWITCH_FDB_H
#define VHD_SWITCH_FDB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define SW_FDB_BUCKET_BITS 10
#define SW_FDB_BUCKETS (1u << SW_FDB_BUCKET_BITS)
#define SW_FDB_WAYS 8

struct sw_fdb {
	_Alignas(64) _Atomic uint64_t key[SW_FDB_BUCKETS][SW_FDB_WAYS];
	_Atomic uint32_t seen[SW_FDB_BUCKETS][SW_FDB_WAYS]; /* coarse seconds of the last frame from the MAC */
	/* The hash key: fixed at init, read on every learn and lookup, so on a line of its own. */
	_Alignas(64) uint64_t hkey[3];
	_Alignas(64) _Atomic uint64_t full; /* MACs not learned because their bucket was full */
};

/* Empty table with a fresh random hash key (getrandom()). */
void sw_fdb_init(struct sw_fdb *f);
/* Forwarding threads. now is the switch's coarse clock (seconds). */
void sw_fdb_learn(struct sw_fdb *f, const uint8_t mac[6], uint16_t port, uint32_t now);
/* Port id, or -1 when the MAC is unknown. */
int sw_fdb_lookup(const struct sw_fdb *f, const uint8_t mac[6]);
/* The bucket mac hashes to (for tests). */
unsigned sw_fdb_bucket(const struct sw_fdb *f, const uint8_t mac[6]);
/* Control thread: drop entries older than age seconds (0: never), or pointing at port (port >= 0). Returns
 * entries dropped. */
unsigned sw_fdb_age(struct sw_fdb *f, uint32_t now, uint32_t age);
unsigned sw_fdb_flush_port(struct sw_fdb *f, uint16_t port);
/* Control thread: visit every entry. */
void sw_fdb_walk(const struct sw_fdb *f, void (*fn)(const uint8_t mac[6], uint16_t port, uint32_t seen, void *arg),
		 void *arg);

#endif
