/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "vhostd/log.h"

static void stderr_handler(enum vhd_log_level level, const char *msg, void *opaque)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};
	(void)opaque;
	char ts[32];
	vhd_log_timestamp(ts, sizeof(ts));
	fprintf(stderr, "%s vhostd %s: %s\n", ts, names[level <= VHD_LOG_DEBUG ? level : VHD_LOG_DEBUG], msg);
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

unsigned vhd_log_timestamp(char *buf, unsigned len)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
			 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
	if (n <= 0 || (unsigned)n >= len) {
		if (len)
			buf[0] = '\0';
		return 0;
	}
	return (unsigned)n;
}
