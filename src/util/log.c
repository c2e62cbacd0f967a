/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#include "vhostd/log.h"

static void stderr_handler(enum vhd_log_level level, const char *msg, void *opaque)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};
	(void)opaque;
	fprintf(stderr, "vhostd %s: %s\n", names[level <= VHD_LOG_DEBUG ? level : VHD_LOG_DEBUG], msg);
}

static void (*log_fn)(enum vhd_log_level, const char *, void *) = stderr_handler;
static void *log_opaque;
/* Changed at run time (vhostctl log-level) while other threads log: atomic, relaxed, since nothing else is
 * published with it. */
static _Atomic int log_level = VHD_LOG_WARN;

void vhd_log_set_handler(void (*fn)(enum vhd_log_level, const char *, void *), void *opaque)
{
	log_fn = fn ? fn : stderr_handler;
	log_opaque = opaque;
}

void vhd_log_set_level(enum vhd_log_level level)
{
	atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

enum vhd_log_level vhd_log_get_level(void)
{
	return (enum vhd_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

void vhd_log(enum vhd_log_level level, const char *fmt, ...)
{
	if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed))
		return;
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_fn(level, buf, log_opaque);
}
