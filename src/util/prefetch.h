/* SPDX-License-Identifier: MIT */
/* Prefetch for writing, for lines the other side's core holds and this one is about to store to. */
#ifndef VHD_UTIL_PREFETCH_H
#define VHD_UTIL_PREFETCH_H

/*
 * Take the line holding p in exclusive state now, so the stores that follow find it owned instead of each
 * waiting at the head of the store buffer for the line to come over. __builtin_prefetch(p, 1) is no help on
 * x86-64 unless the whole build targets PRFCHW: GCC then emits a read prefetch (prefetcht0), after which the
 * store still has to ask for ownership. PREFETCHW is a no-op on x86 processors without it (0F 0D is a hint
 * NOP there), so the instruction is used as such.
 */
static inline void vhd_prefetch_w(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
	__asm__ volatile("prefetchw %0" ::"m"(*(const char *)p));
#else
	__builtin_prefetch(p, 1);
#endif
}

#endif
