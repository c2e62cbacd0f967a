/* SPDX-License-Identifier: MIT */
/*
 * Strict RFC 8259 parser for control-socket requests. The text comes from whoever can connect, so: nothing is
 * read past len, nesting is bounded (the recursion is too, by SW_JSON_MAX_DEPTH), strings must be well-formed
 * UTF-8 without NUL, and the limits RFC 8259 section 9 allows are taken: number length and range, and duplicate
 * object keys (which would let two readers of one request disagree on what it says).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"

/* Longer numbers are valid JSON but only ever an attack or a mistake here. */
#define MAX_NUMBER_CHARS 64

struct parser {
	const unsigned char *s;
	size_t len, pos;
	char *err;
	size_t errlen;
};

static int fail(struct parser *p, size_t off, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(struct parser *p, size_t off, int rc, const char *fmt, ...)
{
	if (p->err && p->errlen) {
		int n = snprintf(p->err, p->errlen, "offset %zu: ", off);
		if (n >= 0 && (size_t)n < p->errlen) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	return rc;
}

static int oom(struct parser *p)
{
	return fail(p, p->pos, -ENOMEM, "out of memory");
}

/* A byte as it can be shown in a message. */
static const char *show_byte(unsigned char c, char buf[8])
{
	if (c > 0x20 && c < 0x7f)
		snprintf(buf, 8, "'%c'", c);
	else
		snprintf(buf, 8, "0x%02x", c);
	return buf;
}

static int unexpected(struct parser *p, const char *what)
{
	char b[8];
	if (p->pos >= p->len)
		return fail(p, p->pos, -EINVAL, "unexpected end of input, expected %s", what);
	return fail(p, p->pos, -EINVAL, "unexpected byte %s, expected %s", show_byte(p->s[p->pos], b), what);
}

static void skip_ws(struct parser *p)
{
	while (p->pos < p->len) {
		unsigned char c = p->s[p->pos];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		p->pos++;
	}
}

void sw_json_val_free(struct sw_json_val *v)
{
	/* Siblings iteratively; children recurse, which parse depth bounds. */
	while (v) {
		struct sw_json_val *next = v->next;
		sw_json_val_free(v->child);
		free(v->str);
		free(v->key);
		free(v);
		v = next;
	}
}

static struct sw_json_val *new_val(enum sw_json_type type)
{
	struct sw_json_val *v = calloc(1, sizeof(*v));
	if (v)
		v->type = type;
	return v;
}

static int hex4(const unsigned char *s, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned char c = s[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t put_utf8(unsigned char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (unsigned char)(0xc0 | cp >> 6);
		o[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (unsigned char)(0xe0 | cp >> 12);
		o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		o[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (unsigned char)(0xf0 | cp >> 18);
	o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
	o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	o[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Length of the well-formed UTF-8 sequence at s[0..avail) (s[0] >= 0x80), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t avail)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (n > avail)
		return 0;
	/* Overlong forms, UTF-16 surrogates and code points above U+10FFFF are all excluded by the second byte. */
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* p->pos at the opening quote. *out is a new NUL-terminated decoded string. */
static int parse_string(struct parser *p, char **out)
{
	size_t open = p->pos, i = p->pos + 1, end;
	char b[8];
	/* Find the closing quote first so the buffer is sized by this string, not by the rest of the text. */
	for (end = i; end < p->len && p->s[end] != '"'; end++)
		if (p->s[end] == '\\')
			end++;
	if (end >= p->len)
		return fail(p, p->len, -EINVAL, "unexpected end of input in the string starting at offset %zu", open);
	/* Escapes only shrink: \uXXXX (6) gives at most 3 bytes, a surrogate pair (12) gives 4. */
	unsigned char *o = malloc(end - i + 1);
	if (!o)
		return oom(p);
	size_t n = 0;
	int rc = 0;
	while (i < end) {
		unsigned char c = p->s[i];
		if (c < 0x20) {
			rc = fail(p, i, -EINVAL, "control character 0x%02x in string (must be escaped)", c);
			break;
		}
		if (c >= 0x80) {
			size_t k = utf8_seq(p->s + i, end - i);
			if (!k) {
				rc = fail(p, i, -EINVAL, "invalid UTF-8 in string (byte 0x%02x)", c);
				break;
			}
			memcpy(o + n, p->s + i, k);
			n += k;
			i += k;
			continue;
		}
		if (c != '\\') {
			o[n++] = c;
			i++;
			continue;
		}
		unsigned char e = p->s[i + 1]; /* i + 1 < end: the scan above skipped the escaped byte */
		switch (e) {
		case '"':
		case '\\':
		case '/':
			o[n++] = e;
			break;
		case 'b':
			o[n++] = '\b';
			break;
		case 'f':
			o[n++] = '\f';
			break;
		case 'n':
			o[n++] = '\n';
			break;
		case 'r':
			o[n++] = '\r';
			break;
		case 't':
			o[n++] = '\t';
			break;
		case 'u': {
			unsigned cp, lo;
			if (end - i < 6 || hex4(p->s + i + 2, &cp) < 0) {
				rc = fail(p, i, -EINVAL, "\\u must be followed by four hex digits");
				break;
			}
			if (cp == 0) {
				rc = fail(p, i, -EINVAL, "\\u0000 is not allowed (strings are NUL-terminated)");
				break;
			}
			if (cp >= 0xdc00 && cp <= 0xdfff) {
				rc = fail(p, i, -EINVAL, "unpaired low surrogate \\u%04x", cp);
				break;
			}
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (end - i < 12 || p->s[i + 6] != '\\' || p->s[i + 7] != 'u' ||
				    hex4(p->s + i + 8, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff) {
					rc = fail(p, i, -EINVAL, "high surrogate \\u%04x not followed by a low one", cp);
					break;
				}
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				i += 6;
			}
			n += put_utf8(o + n, cp);
			i += 4; /* the hex digits; the two escape bytes below */
			break;
		}
		default:
			rc = fail(p, i, -EINVAL, "invalid escape \\%s", show_byte(e, b));
		}
		if (rc)
			break;
		i += 2;
	}
	if (rc) {
		free(o);
		return rc;
	}
	o[n] = '\0';
	*out = (char *)o;
	p->pos = end + 1;
	return 0;
}

static bool is_digit(struct parser *p, size_t i)
{
	return i < p->len && p->s[i] >= '0' && p->s[i] <= '9';
}

static int parse_number(struct parser *p, struct sw_json_val *v)
{
	size_t start = p->pos, i = p->pos;
	if (i < p->len && p->s[i] == '-')
		i++;
	if (!is_digit(p, i)) {
		p->pos = i;
		return unexpected(p, "a digit");
	}
	if (p->s[i] == '0') {
		i++;
		if (is_digit(p, i))
			return fail(p, i, -EINVAL, "leading zeros are not allowed in numbers");
	} else {
		while (is_digit(p, i))
			i++;
	}
	if (i < p->len && p->s[i] == '.') {
		i++;
		if (!is_digit(p, i)) {
			p->pos = i;
			return unexpected(p, "a digit after the decimal point");
		}
		while (is_digit(p, i))
			i++;
	}
	if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
		i++;
		if (i < p->len && (p->s[i] == '+' || p->s[i] == '-'))
			i++;
		if (!is_digit(p, i)) {
			p->pos = i;
			return unexpected(p, "a digit in the exponent");
		}
		while (is_digit(p, i))
			i++;
	}
	size_t n = i - start;
	if (n > MAX_NUMBER_CHARS)
		return fail(p, start, -EINVAL, "number longer than %d characters", MAX_NUMBER_CHARS);
	char buf[MAX_NUMBER_CHARS + 1], *endp;
	memcpy(buf, p->s + start, n);
	buf[n] = '\0';
	v->num = strtod(buf, &endp);
	/* The grammar is checked above; strtod stopping early means a locale with another decimal point. */
	if (endp != buf + n)
		return fail(p, start, -EINVAL, "number not convertible in this locale");
	if (isinf(v->num))
		return fail(p, start, -EINVAL, "number out of range");
	v->str = strdup(buf);
	if (!v->str)
		return oom(p);
	p->pos = i;
	return 0;
}

static int parse_literal(struct parser *p, const char *word)
{
	size_t n = strlen(word);
	for (size_t k = 0; k < n; k++) {
		if (p->pos + k >= p->len || p->s[p->pos + k] != (unsigned char)word[k]) {
			p->pos += k;
			char what[16];
			snprintf(what, sizeof(what), "'%s'", word);
			return unexpected(p, what);
		}
	}
	p->pos += n;
	return 0;
}

static int cmp_key(const void *a, const void *b)
{
	const struct sw_json_val *x = *(const struct sw_json_val *const *)a, *y = *(const struct sw_json_val *const *)b;
	return strcmp(x->key, y->key);
}

/* A key as it can be shown in a message: bounded, printable. */
static void show_key(const char *key, char *buf, size_t size)
{
	size_t n = 0;
	for (const unsigned char *k = (const unsigned char *)key; *k && n + 1 < size; k++)
		buf[n++] = *k >= 0x20 && *k < 0x7f ? (char)*k : '?';
	buf[n] = '\0';
}

static int check_duplicates(struct parser *p, struct sw_json_val *obj, size_t open)
{
	if (obj->count < 2)
		return 0;
	struct sw_json_val **a = malloc(obj->count * sizeof(*a));
	if (!a)
		return oom(p);
	unsigned n = 0;
	for (struct sw_json_val *c = obj->child; c; c = c->next)
		a[n++] = c;
	qsort(a, n, sizeof(*a), cmp_key);
	int rc = 0;
	for (unsigned k = 1; k < n; k++) {
		if (!strcmp(a[k - 1]->key, a[k]->key)) {
			char b[40];
			show_key(a[k]->key, b, sizeof(b));
			rc = fail(p, open, -EINVAL, "duplicate key \"%s\" in the object starting here", b);
			break;
		}
	}
	free(a);
	return rc;
}

static int parse_value(struct parser *p, unsigned depth, struct sw_json_val **out);

/* Arrays and objects: p->pos at the opening bracket, depth counts the containers already open. */
static int parse_container(struct parser *p, unsigned depth, bool is_obj, struct sw_json_val *v)
{
	size_t open = p->pos;
	char close = is_obj ? '}' : ']';
	struct sw_json_val **tail = &v->child;
	if (depth + 1 > SW_JSON_MAX_DEPTH)
		return fail(p, open, -E2BIG, "nesting deeper than %d", SW_JSON_MAX_DEPTH);
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == (unsigned char)close) {
		p->pos++;
		return 0;
	}
	for (;;) {
		char *key = NULL;
		int rc;
		if (is_obj) {
			if (p->pos >= p->len || p->s[p->pos] != '"')
				return unexpected(p, "a string (object key)");
			rc = parse_string(p, &key);
			if (rc)
				return rc;
			skip_ws(p);
			if (p->pos >= p->len || p->s[p->pos] != ':') {
				free(key);
				return unexpected(p, "':' after the object key");
			}
			p->pos++;
			skip_ws(p);
		}
		struct sw_json_val *c = NULL;
		rc = parse_value(p, depth + 1, &c);
		if (rc) {
			free(key);
			return rc;
		}
		c->key = key;
		*tail = c;
		tail = &c->next;
		v->count++;
		skip_ws(p);
		if (p->pos < p->len && p->s[p->pos] == ',') {
			p->pos++;
			skip_ws(p);
			continue;
		}
		if (p->pos < p->len && p->s[p->pos] == (unsigned char)close) {
			p->pos++;
			break;
		}
		return unexpected(p, is_obj ? "',' or '}'" : "',' or ']'");
	}
	return is_obj ? check_duplicates(p, v, open) : 0;
}

static int parse_value(struct parser *p, unsigned depth, struct sw_json_val **out)
{
	if (p->pos >= p->len)
		return unexpected(p, "a value");
	unsigned char c = p->s[p->pos];
	enum sw_json_type t;
	switch (c) {
	case '{':
		t = SW_JSON_OBJ;
		break;
	case '[':
		t = SW_JSON_ARR;
		break;
	case '"':
		t = SW_JSON_STR;
		break;
	case 't':
	case 'f':
		t = SW_JSON_BOOL;
		break;
	case 'n':
		t = SW_JSON_NULL;
		break;
	default:
		if (c != '-' && (c < '0' || c > '9'))
			return unexpected(p, "a value");
		t = SW_JSON_NUM;
	}
	struct sw_json_val *v = new_val(t);
	if (!v)
		return oom(p);
	int rc;
	switch (t) {
	case SW_JSON_OBJ:
	case SW_JSON_ARR:
		rc = parse_container(p, depth, t == SW_JSON_OBJ, v);
		break;
	case SW_JSON_STR:
		rc = parse_string(p, &v->str);
		break;
	case SW_JSON_BOOL:
		v->b = c == 't';
		rc = parse_literal(p, v->b ? "true" : "false");
		break;
	case SW_JSON_NULL:
		rc = parse_literal(p, "null");
		break;
	default:
		rc = parse_number(p, v);
	}
	if (rc) {
		sw_json_val_free(v);
		return rc;
	}
	*out = v;
	return 0;
}

int sw_json_parse_max(const char *text, size_t len, size_t max_len, struct sw_json_val **out, char *err,
		      size_t errlen)
{
	struct parser p = {.s = (const unsigned char *)text, .len = len, .err = err, .errlen = errlen};
	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (len > max_len)
		return fail(&p, max_len, -E2BIG, "text longer than %zu bytes", max_len);
	if (!text)
		p.len = 0;
	skip_ws(&p);
	struct sw_json_val *v = NULL;
	int rc = parse_value(&p, 0, &v);
	if (rc)
		return rc;
	skip_ws(&p);
	if (p.pos < p.len) {
		char b[8];
		sw_json_val_free(v);
		return fail(&p, p.pos, -EINVAL, "unexpected byte %s after the value", show_byte(p.s[p.pos], b));
	}
	*out = v;
	return 0;
}

int sw_json_parse(const char *text, size_t len, struct sw_json_val **out, char *err, size_t errlen)
{
	return sw_json_parse_max(text, len, SW_JSON_MAX_LEN, out, err, errlen);
}

const struct sw_json_val *sw_json_get(const struct sw_json_val *obj, const char *key)
{
	if (!obj || obj->type != SW_JSON_OBJ || !key)
		return NULL;
	for (const struct sw_json_val *c = obj->child; c; c = c->next)
		if (c->key && !strcmp(c->key, key))
			return c;
	return NULL;
}
