/* SPDX-License-Identifier: MIT */
/**
 * @file vhostd/log.h
 * Where the library's messages go. By default, warnings and errors are written to stderr, one line each,
 * starting with a UTC timestamp (vhd_log_timestamp()).
 * Threading: set the handler before other threads use the library; the level may be changed at any time from
 * any thread; logging itself is thread-safe as long as the handler is.
 */
#ifndef VHOSTD_LOG_H
#define VHOSTD_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

enum vhd_log_level {
	VHD_LOG_ERR = 0,
	VHD_LOG_WARN = 1,
	VHD_LOG_INFO = 2,
	VHD_LOG_DEBUG = 3,
};

/**
 * Replace the handler. fn receives the level, a NUL-terminated message without trailing newline, and opaque.
 * Pass fn = NULL to restore the stderr handler.
 */
void vhd_log_set_handler(void (*fn)(enum vhd_log_level level, const char *msg, void *opaque), void *opaque);

/** Drop messages less severe than level. Any thread, any time (a relaxed atomic store; never blocks). */
void vhd_log_set_level(enum vhd_log_level level);

/** Current threshold. */
enum vhd_log_level vhd_log_get_level(void);

/** Log a message through the current handler (printf format). */
void vhd_log(enum vhd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * The time now as ISO 8601 UTC with milliseconds ("2026-12-07T06:21:35.123Z", 24 characters), the stamp log
 * lines start with. Writes at most len bytes including the NUL.
 * @return the length written (without the NUL), or 0 if len is too small. Thread-safe, never blocks.
 */
unsigned vhd_log_timestamp(char *buf, unsigned len);

#ifdef __cplusplus
}
#endif
#endif
