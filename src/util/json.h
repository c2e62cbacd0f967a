/* SPDX-License-Identifier: MIT */
/*
 * The little JSON of the control socket and of the ports' descriptions: a writer (responses, `show` output,
 * port describe()) and a strict, bounded parser (requests, which come from whoever can open the socket and are
 * treated as hostile: depth, length, string escapes and numbers are all checked, and nothing is read past len).
 * Below the switch and ctl so that both can use it; the sw_ prefix is its history.
 */
#ifndef VHD_UTIL_JSON_H
#define VHD_UTIL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ writer */

/* Appends to a growable buffer. Calls after an allocation failure are no-ops and sw_json_finish() reports it. */
struct sw_json {
	char *buf;
	size_t len, cap;
	bool oom;
	unsigned depth;
	bool need_comma[32];
};

void sw_json_init(struct sw_json *w);
/* The text written so far (NUL-terminated, owned by w) or NULL after an allocation failure. */
const char *sw_json_finish(struct sw_json *w);
void sw_json_free(struct sw_json *w);

/* key is the member name inside an object and must be NULL inside an array or at the top level. */
void sw_json_obj_begin(struct sw_json *w, const char *key);
void sw_json_obj_end(struct sw_json *w);
void sw_json_arr_begin(struct sw_json *w, const char *key);
void sw_json_arr_end(struct sw_json *w);
void sw_json_str(struct sw_json *w, const char *key, const char *v); /* escaped; NULL writes null */
void sw_json_strf(struct sw_json *w, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void sw_json_u64(struct sw_json *w, const char *key, uint64_t v);
void sw_json_i64(struct sw_json *w, const char *key, int64_t v);
void sw_json_bool(struct sw_json *w, const char *key, bool v);
void sw_json_double(struct sw_json *w, const char *key, double v);

/* ------------------------------------------------------------------ parser */

enum sw_json_type { SW_JSON_NULL, SW_JSON_BOOL, SW_JSON_NUM, SW_JSON_STR, SW_JSON_ARR, SW_JSON_OBJ };

/* A parsed value. Arrays and objects hold children in a linked list; object members carry their key. */
struct sw_json_val {
	enum sw_json_type type;
	bool b;
	double num;
	char *str;   /* SW_JSON_STR: NUL-terminated, decoded (no embedded NUL accepted); SW_JSON_NUM: the number as
		      * written, so 64-bit counters survive exactly where num (a double) would round them */
	char *key;   /* member name when the parent is an object */
	struct sw_json_val *child, *next;
	unsigned count; /* children */
};

#define SW_JSON_MAX_DEPTH 16
#define SW_JSON_MAX_LEN (64u * 1024)

/*
 * Parse exactly one value from text[0..len) (surrounding whitespace allowed, nothing else).
 * @return 0 and *out (free with sw_json_val_free()); -EINVAL with a message naming the byte offset and the
 *         problem in err; -E2BIG if len exceeds SW_JSON_MAX_LEN or nesting exceeds SW_JSON_MAX_DEPTH; -ENOMEM.
 */
int sw_json_parse(const char *text, size_t len, struct sw_json_val **out, char *err, size_t errlen);
/* The same with another length bound: responses (vhostctl) may be far larger than any request. */
int sw_json_parse_max(const char *text, size_t len, size_t max_len, struct sw_json_val **out, char *err,
		      size_t errlen);
void sw_json_val_free(struct sw_json_val *v);
/* Member of an object by name, or NULL. */
const struct sw_json_val *sw_json_get(const struct sw_json_val *obj, const char *key);

#endif
