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
 *
 * Each port may own at most a set number of entries (sw_fdb_set_max()), so that one guest sending from many
 * addresses cannot fill the table: a learn that would pass the limit, new address or one moving to the port,
 * is refused and leaves the table as it was. The count per port is an atomic adjusted on every change of an
 * entry's owner (learn, move, age, flush), never per frame.
 */
#ifndef VHD_SWITCH_FDB_H
#define VHD_SWITCH_FDB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define SW_FDB_BUCKET_BITS 10
#define SW_FDB_BUCKETS (1u << SW_FDB_BUCKET_BITS)
#define SW_FDB_WAYS 8
/* Port ids sw_fdb_learn() takes: 0 .. SW_FDB_PORTS - 1. */
#define SW_FDB_PORTS 64
/* Entries a port may own unless told otherwise (sw_fdb_set_max()); the table has 8192 slots. */
#define SW_FDB_MAX_MACS_DEFAULT 1024u

/* What sw_fdb_learn() did. */
enum sw_fdb_learn_res {
	SW_FDB_LEARNED = 0,  /* the MAC is (now) on the port, or a racing thread's learn won the slot */
	SW_FDB_FULL,         /* not learned: its bucket is full (counted in sw_fdb.full) */
	SW_FDB_PORT_LIMIT,   /* not learned, not moved: the port owns as many entries as it may */
};

struct sw_fdb {
	_Alignas(64) _Atomic uint64_t key[SW_FDB_BUCKETS][SW_FDB_WAYS];
	_Atomic uint32_t seen[SW_FDB_BUCKETS][SW_FDB_WAYS]; /* coarse seconds of the last frame from the MAC */
	/* The hash key (fixed at init) and the limits (written by the control thread before the port is
	 * published, 0: none): read on every learn and lookup, written almost never, so on lines of their own. */
	_Alignas(64) uint64_t hkey[3];
	_Atomic uint32_t max[SW_FDB_PORTS];
	/* Entries each port owns: changed by learns of new addresses, moves, aging and flushes only. */
	_Alignas(64) _Atomic uint32_t owned[SW_FDB_PORTS];
	_Alignas(64) _Atomic uint64_t full; /* MACs not learned because their bucket was full */
};

/* Empty table with a fresh random hash key (getrandom()) and every port's limit at SW_FDB_MAX_MACS_DEFAULT. */
void sw_fdb_init(struct sw_fdb *f);
/* Control thread: port may own at most max entries (0: no limit). Entries it owns beyond a lowered limit stay
 * until they age out. */
void sw_fdb_set_max(struct sw_fdb *f, uint16_t port, uint32_t max);
/* Entries port owns now (relaxed: a forwarding thread may be changing it). */
unsigned sw_fdb_owned(const struct sw_fdb *f, uint16_t port);
/* Forwarding threads. now is the switch's coarse clock (seconds); port < SW_FDB_PORTS. */
enum sw_fdb_learn_res sw_fdb_learn(struct sw_fdb *f, const uint8_t mac[6], uint16_t port, uint32_t now);
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
