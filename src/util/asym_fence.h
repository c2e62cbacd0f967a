/* SPDX-License-Identifier: MIT */
/*
 * Asymmetric fences for the data path's "enter a queue" handshake (store busy, then load ready; the control
 * thread stores ready, then loads busy). Either side needs store-then-load ordering. A full fence per burst on
 * the data path waited for every ring store of the burst before it to leave the store buffer (15% of a PVP
 * switch thread in perf, on the load after the fence); the control thread pauses a queue a few times per
 * connection. So the heavy side pays instead: membarrier(2) makes every running thread of the process execute
 * a full barrier before it returns, and the light side is only a compiler barrier. Where the kernel has no
 * private expedited membarrier, both sides are plain seq_cst fences, as before.
 */
#ifndef VHD_UTIL_ASYM_FENCE_H
#define VHD_UTIL_ASYM_FENCE_H

#include <stdatomic.h>
#include <stdbool.h>

extern atomic_bool vhdi_asym_ok;

/* Register the process for expedited membarriers, once. Call before any thread can run a light side (when a
 * device or port is created, on the control thread). Thread-safe. */
void vhdi_asym_init(void);

/* The data path's fence between its store and its load. */
static inline void vhdi_asym_light(void)
{
	if (atomic_load_explicit(&vhdi_asym_ok, memory_order_relaxed))
		atomic_signal_fence(memory_order_seq_cst); /* the heavy side's membarrier stands in for the CPU's */
	else
		atomic_thread_fence(memory_order_seq_cst);
}

/* The control thread's fence between its store and its load: a full barrier in every thread of the process. */
void vhdi_asym_heavy(void);

#endif
