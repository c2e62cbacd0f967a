/* SPDX-License-Identifier: MIT */
/* Branch hints for the hot paths of every layer. */
#ifndef VHD_UTIL_COMPILER_H
#define VHD_UTIL_COMPILER_H

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#endif
