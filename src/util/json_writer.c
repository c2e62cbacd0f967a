/* SPDX-License-Identifier: MIT */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"

void sw_json_init(struct sw_json *w)
{
	memset(w, 0, sizeof(*w));
}

void sw_json_free(struct sw_json *w)
{
	free(w->buf);
	memset(w, 0, sizeof(*w));
}

const char *sw_json_finish(struct sw_json *w)
{
	if (w->oom)
		return NULL;
	if (!w->buf) {
		w->buf = calloc(1, 1);
		if (!w->buf)
			return NULL;
	}
	return w->buf;
}

static void put(struct sw_json *w, const char *s, size_t n)
{
	if (w->oom)
		return;
	if (w->len + n + 1 > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		while (cap < w->len + n + 1)
			cap *= 2;
		char *b = realloc(w->buf, cap);
		if (!b) {
			w->oom = true;
			return;
		}
		w->buf = b;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

static void puts_(struct sw_json *w, const char *s)
{
	put(w, s, strlen(s));
}

/* Length of the well-formed UTF-8 sequence at p (lead byte >= 0x80), or 0: no overlongs, no surrogates, nothing
 * above U+10FFFF. Stops at the terminating NUL since it is not a continuation byte. */
static size_t utf8_len(const unsigned char *p)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

static void quoted(struct sw_json *w, const char *s)
{
	put(w, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char e[8];
		switch (*p) {
		case '"':
			puts_(w, "\\\"");
			break;
		case '\\':
			puts_(w, "\\\\");
			break;
		case '\n':
			puts_(w, "\\n");
			break;
		case '\t':
			puts_(w, "\\t");
			break;
		case '\r':
			puts_(w, "\\r");
			break;
		default:
			if (*p < 0x20) {
				snprintf(e, sizeof(e), "\\u%04x", *p);
				puts_(w, e);
			} else if (*p < 0x80) {
				put(w, (const char *)p, 1);
			} else {
				/* JSON text is UTF-8 and the parser on the other end refuses anything else; bytes from
				 * config files or truncated by strf may not be, so a bad sequence becomes U+FFFD. */
				size_t n = utf8_len(p);
				if (n) {
					put(w, (const char *)p, n);
					p += n - 1;
				} else {
					puts_(w, "\xef\xbf\xbd");
				}
			}
		}
	}
	put(w, "\"", 1);
}

/* Comma and member name before a value. */
static void member(struct sw_json *w, const char *key)
{
	unsigned d = w->depth < 32 ? w->depth : 31;
	if (w->need_comma[d])
		put(w, ",", 1);
	w->need_comma[d] = true;
	if (key) {
		quoted(w, key);
		put(w, ":", 1);
	}
}

static void open_(struct sw_json *w, const char *key, const char *c)
{
	member(w, key);
	puts_(w, c);
	w->depth++;
	if (w->depth < 32)
		w->need_comma[w->depth] = false;
}

static void close_(struct sw_json *w, const char *c)
{
	if (w->depth)
		w->depth--;
	puts_(w, c);
}

void sw_json_obj_begin(struct sw_json *w, const char *key) { open_(w, key, "{"); }
void sw_json_obj_end(struct sw_json *w) { close_(w, "}"); }
void sw_json_arr_begin(struct sw_json *w, const char *key) { open_(w, key, "["); }
void sw_json_arr_end(struct sw_json *w) { close_(w, "]"); }

void sw_json_str(struct sw_json *w, const char *key, const char *v)
{
	member(w, key);
	if (v)
		quoted(w, v);
	else
		puts_(w, "null");
}

void sw_json_strf(struct sw_json *w, const char *key, const char *fmt, ...)
{
	char b[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b, sizeof(b), fmt, ap);
	va_end(ap);
	sw_json_str(w, key, b);
}

void sw_json_u64(struct sw_json *w, const char *key, uint64_t v)
{
	char b[24];
	member(w, key);
	snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
	puts_(w, b);
}

void sw_json_i64(struct sw_json *w, const char *key, int64_t v)
{
	char b[24];
	member(w, key);
	snprintf(b, sizeof(b), "%lld", (long long)v);
	puts_(w, b);
}

void sw_json_bool(struct sw_json *w, const char *key, bool v)
{
	member(w, key);
	puts_(w, v ? "true" : "false");
}

void sw_json_double(struct sw_json *w, const char *key, double v)
{
	char b[40];
	member(w, key);
	/* NaN and infinities have no JSON spelling. */
	if (!isfinite(v)) {
		puts_(w, "null");
		return;
	}
	/* Shortest of the usual precisions that reads back as the same double. */
	snprintf(b, sizeof(b), "%.15g", v);
	if (strtod(b, NULL) != v)
		snprintf(b, sizeof(b), "%.17g", v);
	puts_(w, b);
}
