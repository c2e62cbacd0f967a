/* SPDX-License-Identifier: MIT */
/*
 * The control plane: the JSON parser against every class of bad input, the writer through the parser, line
 * splitting, request dispatch, the control socket against misbehaving clients, and the vhostctl binary.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sockios.h>
#include <math.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "ctl/ctl.h"
#include "util/json.h"
#include "harness.h"

/* ------------------------------------------------------------------ parser */

static struct sw_json_val *parse_ok(const char *s)
{
	struct sw_json_val *v = NULL;
	char err[256];
	int rc = sw_json_parse(s, strlen(s), &v, err, sizeof(err));
	if (rc)
		fprintf(stderr, "parse of %s: %s\n", s, err);
	CHECK_EQ(rc, 0);
	CHECK(v);
	return v;
}

/* Refused with rc, and the message starts with "offset <off>:". */
static void parse_bad_n(const char *s, size_t len, int rc, size_t off)
{
	struct sw_json_val *v = (struct sw_json_val *)1;
	char err[256], want[32];
	int r = sw_json_parse(s, len, &v, err, sizeof(err));
	snprintf(want, sizeof(want), "offset %zu:", off);
	if (r != rc || strncmp(err, want, strlen(want)))
		fprintf(stderr, "input \"%.*s\": rc %d, message \"%s\"; wanted %d at %zu\n", (int)(len > 60 ? 60 : len), s,
			r, err, rc, off);
	CHECK_EQ(r, rc);
	CHECK(!strncmp(err, want, strlen(want)));
	CHECK(v == NULL);
}

static void parse_bad(const char *s, int rc, size_t off)
{
	parse_bad_n(s, strlen(s), rc, off);
}

static void test_parse_valid(void)
{
	struct sw_json_val *v =
		parse_ok(" \t\r\n{\"a\" : [1, -2.5e3, true, false, null, \"x\"], \"b\":{}, \"c\":[], \"\":0}\n ");
	CHECK_EQ(v->type, SW_JSON_OBJ);
	CHECK_EQ(v->count, 4);
	const struct sw_json_val *a = sw_json_get(v, "a");
	CHECK(a && a->type == SW_JSON_ARR && a->count == 6);
	const struct sw_json_val *e = a->child;
	CHECK(e->type == SW_JSON_NUM && e->num == 1 && !strcmp(e->str, "1"));
	e = e->next;
	CHECK(e->type == SW_JSON_NUM && e->num == -2500 && !strcmp(e->str, "-2.5e3"));
	e = e->next;
	CHECK(e->type == SW_JSON_BOOL && e->b);
	e = e->next;
	CHECK(e->type == SW_JSON_BOOL && !e->b);
	e = e->next;
	CHECK(e->type == SW_JSON_NULL);
	e = e->next;
	CHECK(e->type == SW_JSON_STR && !strcmp(e->str, "x") && !e->next);
	CHECK(sw_json_get(v, "b")->type == SW_JSON_OBJ && sw_json_get(v, "b")->count == 0);
	CHECK(sw_json_get(v, "c")->type == SW_JSON_ARR && sw_json_get(v, "c")->count == 0);
	CHECK(sw_json_get(v, "") && !sw_json_get(v, "d") && !sw_json_get(a, "a"));
	sw_json_val_free(v);

	/* Every escape, \u to UTF-8 in all lengths, a surrogate pair, and raw UTF-8 passed through. */
	v = parse_ok("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20AC\\ud83d\\ude00|h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f\"");
	CHECK_EQ(v->type, SW_JSON_STR);
	CHECK(!strcmp(v->str, "\"\\/\b\f\n\r\tA\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f"));
	sw_json_val_free(v);

	/* Scalars at the top level, numbers in every form the grammar has. */
	static const struct {
		const char *text;
		double num;
	} nums[] = {{"0", 0}, {"-0", 0}, {"1.5", 1.5}, {"1e10", 1e10}, {"1E+2", 100}, {"1e-2", 0.01},
		    {"-0.25E-0", -0.25}, {"18446744073709551615", 18446744073709551615.0}, {"1e-400", 0}};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		v = parse_ok(nums[i].text);
		CHECK(v->type == SW_JSON_NUM && v->num == nums[i].num && !strcmp(v->str, nums[i].text));
		sw_json_val_free(v);
	}
	v = parse_ok("true");
	CHECK(v->type == SW_JSON_BOOL && v->b);
	sw_json_val_free(v);
	v = parse_ok(" null ");
	CHECK(v->type == SW_JSON_NULL);
	sw_json_val_free(v);

	/* Exactly the depth and length limits. */
	char deep[2 * SW_JSON_MAX_DEPTH + 1];
	memset(deep, '[', SW_JSON_MAX_DEPTH);
	memset(deep + SW_JSON_MAX_DEPTH, ']', SW_JSON_MAX_DEPTH);
	deep[2 * SW_JSON_MAX_DEPTH] = 0;
	v = parse_ok(deep);
	sw_json_val_free(v);
	char *big = malloc(SW_JSON_MAX_LEN);
	memset(big, ' ', SW_JSON_MAX_LEN);
	big[0] = '"';
	memset(big + 1, 'a', SW_JSON_MAX_LEN - 200);
	big[SW_JSON_MAX_LEN - 199] = '"';
	char err[128];
	CHECK_EQ(sw_json_parse(big, SW_JSON_MAX_LEN, &v, err, sizeof(err)), 0);
	CHECK_EQ(strlen(v->str), SW_JSON_MAX_LEN - 200);
	sw_json_val_free(v);
	free(big);

	/* Many members: duplicate detection sorts them; the parse stays fast and finds the one duplicate. */
	size_t cap = 1 << 16, n = 0;
	char *m = malloc(cap);
	n += (size_t)sprintf(m + n, "{");
	for (int i = 0; i < 3000; i++)
		n += (size_t)sprintf(m + n, "%s\"k%d\":%d", i ? "," : "", i, i);
	sprintf(m + n, "}");
	v = parse_ok(m);
	CHECK_EQ(v->count, 3000);
	CHECK_EQ(sw_json_get(v, "k2999")->num, 2999);
	sw_json_val_free(v);
	sprintf(m + n, ",\"k17\":1}");
	parse_bad(m, -EINVAL, 0);
	free(m);
	sw_json_val_free(NULL);
}

static void test_parse_errors(void)
{
	/* Nothing, or only whitespace. */
	parse_bad("", -EINVAL, 0);
	parse_bad(" \n ", -EINVAL, 3);
	parse_bad_n(NULL, 0, -EINVAL, 0);
	/* Trailing garbage. */
	parse_bad("1 2", -EINVAL, 2);
	parse_bad("{}x", -EINVAL, 2);
	parse_bad("[1]]", -EINVAL, 3);
	parse_bad("nulll", -EINVAL, 4);
	parse_bad("0x10", -EINVAL, 1);
	/* NUL bytes inside the length: outside strings, inside strings, after the value. */
	parse_bad_n("[1,\0 2]", 7, -EINVAL, 3);
	parse_bad_n("\"a\0b\"", 5, -EINVAL, 2);
	parse_bad_n("1\0", 2, -EINVAL, 1);
	/* Strings: escapes, control characters, UTF-8. */
	parse_bad("\"\\x\"", -EINVAL, 1);
	parse_bad("\"\\'\"", -EINVAL, 1);
	parse_bad("\"\\u12\"", -EINVAL, 1);
	parse_bad("\"\\u00zz\"", -EINVAL, 1);
	parse_bad("\"ab\\u0000\"", -EINVAL, 3);
	parse_bad("\"\\ud800\"", -EINVAL, 1);
	parse_bad("\"\\ud800\\u0041\"", -EINVAL, 1);
	parse_bad("\"\\ud800\\ud800\"", -EINVAL, 1);
	parse_bad("\"x\\udc00\"", -EINVAL, 2);
	parse_bad("\"a\x01\"", -EINVAL, 2);
	parse_bad("\"a\nb\"", -EINVAL, 2);
	parse_bad("\"\x1f\"", -EINVAL, 1);
	parse_bad("\"\xc0\x80\"", -EINVAL, 1);         /* overlong NUL */
	parse_bad("\"\xe0\x80\xaf\"", -EINVAL, 1);     /* overlong '/' */
	parse_bad("\"\xed\xa0\x80\"", -EINVAL, 1);     /* encoded surrogate */
	parse_bad("\"\xf4\x90\x80\x80\"", -EINVAL, 1); /* above U+10FFFF */
	parse_bad("\"ok\xe2\x82\"", -EINVAL, 3);       /* truncated sequence */
	parse_bad("\"\x80\"", -EINVAL, 1);             /* stray continuation */
	parse_bad("\"\xff\"", -EINVAL, 1);
	parse_bad("\xef\xbb\xbf{}", -EINVAL, 0); /* a byte-order mark is not whitespace */
	parse_bad("\"abc", -EINVAL, 4);
	parse_bad("\"abc\\", -EINVAL, 5);
	parse_bad("\"abc\\\"", -EINVAL, 6);
	/* Numbers. */
	parse_bad("01", -EINVAL, 1);
	parse_bad("-01", -EINVAL, 2);
	parse_bad("1.", -EINVAL, 2);
	parse_bad(".5", -EINVAL, 0);
	parse_bad("-", -EINVAL, 1);
	parse_bad("-a", -EINVAL, 1);
	parse_bad("+1", -EINVAL, 0);
	parse_bad("1e", -EINVAL, 2);
	parse_bad("1e+", -EINVAL, 3);
	parse_bad("1.e5", -EINVAL, 2);
	parse_bad("NaN", -EINVAL, 0);
	parse_bad("Infinity", -EINVAL, 0);
	parse_bad("-Infinity", -EINVAL, 1);
	parse_bad("[1e999]", -EINVAL, 1);
	parse_bad("[-1e999]", -EINVAL, 1);
	char longnum[80];
	memset(longnum, '1', 70);
	longnum[70] = 0;
	parse_bad(longnum, -EINVAL, 0);
	/* Literals. */
	parse_bad("tru", -EINVAL, 3);
	parse_bad("trux", -EINVAL, 3);
	parse_bad("True", -EINVAL, 0);
	parse_bad("nul", -EINVAL, 3);
	parse_bad("fals", -EINVAL, 4);
	/* Structure. */
	parse_bad("{", -EINVAL, 1);
	parse_bad("[", -EINVAL, 1);
	parse_bad("{,}", -EINVAL, 1);
	parse_bad("[1,]", -EINVAL, 3);
	parse_bad("[,1]", -EINVAL, 1);
	parse_bad("[1 2]", -EINVAL, 3);
	parse_bad("{\"a\"}", -EINVAL, 4);
	parse_bad("{\"a\":}", -EINVAL, 5);
	parse_bad("{\"a\":1,}", -EINVAL, 7);
	parse_bad("{\"a\":1 \"b\":2}", -EINVAL, 7);
	parse_bad("{1:2}", -EINVAL, 1);
	parse_bad("{'a':1}", -EINVAL, 1);
	parse_bad("{\"a\":1,\"a\":2}", -EINVAL, 0);
	parse_bad("[{\"x\":[], \"x\":{}}]", -EINVAL, 1);
	parse_bad("]", -EINVAL, 0);

	/* Truncation: every proper prefix of a document is refused, none crashes or leaks. */
	const char *doc = "{\"cmd\":\"add-port\",\"args\":[\"vm1\",\"vhost-user\",\"p\\u00e9\\ud83d\\ude00\"],"
			  "\"n\":[-1.5e-3,0,true,false,null,{}]}";
	struct sw_json_val *v;
	char err[256];
	for (size_t len = 0; len < strlen(doc); len++) {
		CHECK_EQ(sw_json_parse(doc, len, &v, err, sizeof(err)), -EINVAL);
		CHECK(!strncmp(err, "offset ", 7));
	}
	CHECK_EQ(sw_json_parse(doc, strlen(doc), &v, err, sizeof(err)), 0);
	sw_json_val_free(v);

	/* Depth bomb: refused at the first bracket too deep, without recursing into the rest. */
	size_t bomb_len = 1 << 16;
	char *bomb = malloc(bomb_len);
	memset(bomb, '[', bomb_len);
	parse_bad_n(bomb, bomb_len, -E2BIG, SW_JSON_MAX_DEPTH);
	for (size_t i = 0; i + 5 <= bomb_len; i += 5)
		memcpy(bomb + i, "{\"a\":", 5);
	parse_bad_n(bomb, bomb_len - bomb_len % 5, -E2BIG, 5 * SW_JSON_MAX_DEPTH);
	free(bomb);

	/* Length: one byte over is refused before anything is read. */
	char *huge = malloc(SW_JSON_MAX_LEN + 1);
	memset(huge, ' ', SW_JSON_MAX_LEN + 1);
	huge[0] = '1';
	parse_bad_n(huge, SW_JSON_MAX_LEN + 1, -E2BIG, SW_JSON_MAX_LEN);
	CHECK_EQ(sw_json_parse_max(huge, SW_JSON_MAX_LEN + 1, SW_JSON_MAX_LEN + 1, &v, err, sizeof(err)), 0);
	sw_json_val_free(v);
	free(huge);

	/* Tiny or absent error buffers are fine. */
	CHECK_EQ(sw_json_parse("[", 1, &v, err, 4), -EINVAL);
	CHECK(strlen(err) == 3);
	CHECK_EQ(sw_json_parse("[", 1, &v, NULL, 0), -EINVAL);
}

/* ------------------------------------------------------------------ writer */

static void test_writer_roundtrip(void)
{
	struct sw_json w;
	sw_json_init(&w);
	CHECK(!strcmp(sw_json_finish(&w), ""));
	sw_json_obj_begin(&w, NULL);
	sw_json_str(&w, "s", "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	sw_json_str(&w, "bad", "a\xff\xc0\x80z\xed\xa0\x80!\xe2\x82");
	sw_json_str(&w, "k\"ey\n", "v");
	sw_json_str(&w, "null", NULL);
	sw_json_u64(&w, "u", UINT64_MAX);
	sw_json_i64(&w, "i", INT64_MIN);
	sw_json_double(&w, "d", 0.1);
	sw_json_double(&w, "third", 1.0 / 3);
	sw_json_double(&w, "nan", NAN);
	sw_json_double(&w, "inf", -INFINITY);
	sw_json_bool(&w, "t", true);
	sw_json_bool(&w, "f", false);
	sw_json_strf(&w, "fmt", "%s-%d", "x", 42);
	sw_json_arr_begin(&w, "arr");
	for (int i = 0; i < 3; i++) {
		sw_json_obj_begin(&w, NULL);
		sw_json_i64(&w, "i", i);
		sw_json_arr_begin(&w, "e");
		sw_json_arr_end(&w);
		sw_json_obj_end(&w);
	}
	sw_json_arr_end(&w);
	sw_json_obj_begin(&w, "deep");
	for (int i = 0; i < SW_JSON_MAX_DEPTH - 2; i++)
		sw_json_arr_begin(&w, i ? NULL : "x");
	for (int i = 0; i < SW_JSON_MAX_DEPTH - 2; i++)
		sw_json_arr_end(&w);
	sw_json_obj_end(&w);
	sw_json_obj_end(&w);
	const char *t = sw_json_finish(&w);
	CHECK(t && strlen(t) == w.len && !strchr(t, '\n'));

	struct sw_json_val *v;
	char err[256];
	int rc = sw_json_parse(t, w.len, &v, err, sizeof(err));
	if (rc)
		fprintf(stderr, "%s\n%s\n", t, err);
	CHECK_EQ(rc, 0);
	CHECK(!strcmp(sw_json_get(v, "s")->str,
		      "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
	/* Each byte that starts no valid sequence becomes one U+FFFD. */
	CHECK(!strcmp(sw_json_get(v, "bad")->str, "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbd"
						  "\xef\xbf\xbd!\xef\xbf\xbd\xef\xbf\xbd"));
	CHECK(!strcmp(sw_json_get(v, "k\"ey\n")->str, "v"));
	CHECK_EQ(sw_json_get(v, "null")->type, SW_JSON_NULL);
	CHECK(!strcmp(sw_json_get(v, "u")->str, "18446744073709551615"));
	CHECK(!strcmp(sw_json_get(v, "i")->str, "-9223372036854775808"));
	CHECK(sw_json_get(v, "d")->num == 0.1);
	CHECK(sw_json_get(v, "third")->num == 1.0 / 3);
	CHECK_EQ(sw_json_get(v, "nan")->type, SW_JSON_NULL);
	CHECK_EQ(sw_json_get(v, "inf")->type, SW_JSON_NULL);
	CHECK(sw_json_get(v, "t")->b && !sw_json_get(v, "f")->b);
	CHECK(!strcmp(sw_json_get(v, "fmt")->str, "x-42"));
	const struct sw_json_val *arr = sw_json_get(v, "arr");
	CHECK_EQ(arr->count, 3);
	CHECK_EQ(sw_json_get(arr->child->next->next, "i")->num, 2);
	CHECK_EQ(sw_json_get(arr->child, "e")->count, 0);
	sw_json_val_free(v);
	sw_json_free(&w);
}

/* ------------------------------------------------------------------ split */

static void split_ok(const char *in, unsigned want_argc, const char *const *want)
{
	char line[256];
	char *argv[8];
	unsigned argc = 99;
	snprintf(line, sizeof(line), "%s", in);
	CHECK_EQ(sw_ctl_split(line, argv, 8, &argc), 0);
	if (argc != want_argc)
		fprintf(stderr, "split of [%s]: %u words\n", in, argc);
	CHECK_EQ(argc, want_argc);
	for (unsigned i = 0; i < argc; i++) {
		if (strcmp(argv[i], want[i]))
			fprintf(stderr, "split of [%s]: word %u is [%s], wanted [%s]\n", in, i, argv[i], want[i]);
		CHECK(!strcmp(argv[i], want[i]));
	}
	CHECK(argv[argc] == NULL);
}

static void test_split(void)
{
	split_ok("", 0, NULL);
	split_ok("   \t ", 0, NULL);
	split_ok("# only a comment \"x", 0, NULL);
	split_ok("add-port vm1 vhost-user path=/tmp/x.sock  # a comment",
		 4, (const char *const[]){"add-port", "vm1", "vhost-user", "path=/tmp/x.sock"});
	split_ok("\ta\tb\r\n", 2, (const char *const[]){"a", "b"});
	split_ok("a \"b c\" d", 3, (const char *const[]){"a", "b c", "d"});
	split_ok("x\"y z\"w", 1, (const char *const[]){"xy zw"});
	split_ok("\"\" x", 2, (const char *const[]){"", "x"});
	split_ok("\"a\\\"b\\\\c\"", 1, (const char *const[]){"a\"b\\c"});
	split_ok("\"a#b\" c#d e", 2, (const char *const[]){"a#b", "c"});
	split_ok("a#", 1, (const char *const[]){"a"});
	split_ok("path=C:\\x", 1, (const char *const[]){"path=C:\\x"});
	split_ok("\"tail\"", 1, (const char *const[]){"tail"});

	char line[64];
	char *argv[4];
	unsigned argc;
	snprintf(line, sizeof(line), "\"unterminated");
	CHECK_EQ(sw_ctl_split(line, argv, 4, &argc), -EINVAL);
	snprintf(line, sizeof(line), "\"bad \\n escape\"");
	CHECK_EQ(sw_ctl_split(line, argv, 4, &argc), -EINVAL);
	snprintf(line, sizeof(line), "\"ends in backslash\\");
	CHECK_EQ(sw_ctl_split(line, argv, 4, &argc), -EINVAL);
	/* Exactly max words: argv[max] is not touched; one more is refused. */
	snprintf(line, sizeof(line), "a b c # d");
	argv[3] = (char *)line;
	CHECK_EQ(sw_ctl_split(line, argv, 3, &argc), 0);
	CHECK_EQ(argc, 3);
	CHECK(argv[3] == line && !strcmp(argv[2], "c"));
	snprintf(line, sizeof(line), "a b c d");
	CHECK_EQ(sw_ctl_split(line, argv, 3, &argc), -E2BIG);
	snprintf(line, sizeof(line), "a");
	CHECK_EQ(sw_ctl_split(line, argv, 0, &argc), -E2BIG);
}

/* ------------------------------------------------------------------ dispatch */

static int cmd_echo(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	if (opaque)
		(*(int *)opaque)++;
	CHECK(argv[argc] == NULL);
	sw_json_str(w, "cmd", argv[0]);
	sw_json_arr_begin(w, "args");
	for (unsigned i = 1; i < argc; i++)
		sw_json_str(w, NULL, argv[i]);
	sw_json_arr_end(w);
	return 0;
}

static int cmd_fail(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)opaque;
	(void)argc;
	sw_json_u64(w, "partial", 1);
	sw_json_arr_begin(w, "unfinished");
	snprintf(err, errlen, "no port '%s'", argv[1]);
	return -ENODEV;
}

static int cmd_fail_silent(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)opaque, (void)argc, (void)argv, (void)w, (void)err, (void)errlen;
	return -EPERM;
}

static int cmd_unbalanced(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)opaque, (void)argc, (void)argv, (void)err, (void)errlen;
	sw_json_obj_begin(w, "open");
	return 0;
}

/* Entries in that answer: over a MiB even when VHD_TEST_SCALE cuts it (valgrind). */
static unsigned big_entries(void)
{
	unsigned long long n = th_scaled(100000);
	return n < 25000 ? 25000 : (unsigned)n;
}

/* An answer of several MiB, so the socket has to take it in pieces. */
static int cmd_big(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)opaque, (void)argc, (void)argv, (void)err, (void)errlen;
	sw_json_arr_begin(w, "entries");
	for (unsigned i = 0; i < big_entries(); i++) {
		sw_json_obj_begin(w, NULL);
		sw_json_strf(w, "mac", "52:54:00:%02x:%02x:%02x", i >> 16 & 0xff, i >> 8 & 0xff, i & 0xff);
		sw_json_str(w, "port", "vm1");
		sw_json_u64(w, "age_s", i);
		sw_json_obj_end(w);
	}
	sw_json_arr_end(w);
	return 0;
}

static const struct sw_ctl_cmd test_cmds[] = {
	{"echo", "echo [ARG...]", "answers with its arguments", 0, 8, cmd_echo},
	{"add-port", "add-port NAME TYPE [KEY=VALUE...]", "create a port", 2, 18, cmd_echo},
	{"fail", "fail PORT", "fails", 1, 1, cmd_fail},
	{"fail-silent", "fail-silent", "fails without a reason", 0, 0, cmd_fail_silent},
	{"unbalanced", "unbalanced", "a buggy command", 0, 0, cmd_unbalanced},
	{"big", "big", "a large answer", 0, 0, cmd_big},
	{"nofn", "nofn", "a table entry without a function", 0, 0, NULL},
};
#define NCMDS ((unsigned)(sizeof(test_cmds) / sizeof(test_cmds[0])))

/* Run one request; the response must be one valid JSON object. */
static struct sw_json_val *handle(const char *req, int *rc)
{
	struct sw_json w;
	sw_json_init(&w);
	*rc = sw_ctl_handle(test_cmds, NCMDS, NULL, req, strlen(req), &w);
	const char *t = sw_json_finish(&w);
	CHECK(t && !strchr(t, '\n'));
	struct sw_json_val *v;
	char err[256];
	int r = sw_json_parse_max(t, w.len, 1 << 26, &v, err, sizeof(err));
	if (r)
		fprintf(stderr, "response %.200s: %s\n", t, err);
	CHECK_EQ(r, 0);
	CHECK_EQ(v->type, SW_JSON_OBJ);
	sw_json_free(&w);
	return v;
}

/* The request is refused with errno e and a message containing what. */
static void handle_err(const char *req, int e, const char *what)
{
	int rc;
	struct sw_json_val *v = handle(req, &rc);
	const struct sw_json_val *ok = sw_json_get(v, "ok"), *err = sw_json_get(v, "error"),
				 *no = sw_json_get(v, "errno");
	CHECK(ok && ok->type == SW_JSON_BOOL && !ok->b);
	CHECK(err && err->type == SW_JSON_STR);
	if (!strstr(err->str, what) || rc != -e)
		fprintf(stderr, "request %s: rc %d, error \"%s\"; wanted %d, \"%s\"\n", req, rc, err->str, -e, what);
	CHECK(strstr(err->str, what));
	CHECK_EQ(rc, -e);
	CHECK(no && no->type == SW_JSON_NUM && no->num == e);
	CHECK_EQ(v->count, 3);
	sw_json_val_free(v);
}

static void test_handle(void)
{
	int rc;
	struct sw_json_val *v = handle("{\"cmd\":\"echo\",\"args\":[\"a\",\"b \\u00e9\"]}", &rc);
	CHECK_EQ(rc, 0);
	CHECK(sw_json_get(v, "ok")->b);
	CHECK_EQ(v->count, 2);
	const struct sw_json_val *r = sw_json_get(v, "result");
	CHECK(r && r->type == SW_JSON_OBJ);
	CHECK(!strcmp(sw_json_get(r, "cmd")->str, "echo"));
	CHECK_EQ(sw_json_get(r, "args")->count, 2);
	CHECK(!strcmp(sw_json_get(r, "args")->child->next->str, "b \xc3\xa9"));
	sw_json_val_free(v);
	v = handle(" {\"args\":[],\"cmd\":\"echo\"}\r", &rc);
	CHECK_EQ(rc, 0);
	sw_json_val_free(v);
	v = handle("{\"cmd\":\"echo\"}", &rc);
	CHECK_EQ(rc, 0);
	CHECK_EQ(sw_json_get(sw_json_get(v, "result"), "args")->count, 0);
	sw_json_val_free(v);

	/* Bad requests. */
	handle_err("{\"cmd\":\"nope\"}", EINVAL, "unknown command 'nope'");
	handle_err("{\"cmd\":\"\"}", EINVAL, "unknown command");
	handle_err("{\"cmd\":\"add-port\",\"args\":[\"x\"]}", EINVAL, "usage: add-port NAME TYPE [KEY=VALUE...]");
	handle_err("{\"cmd\":\"echo\",\"args\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}", EINVAL,
		   "usage: echo");
	handle_err("{\"cmd\":\"echo\",\"args\":[\"a\",1]}", EINVAL, "argument 1 is not a string");
	handle_err("{\"cmd\":\"echo\",\"args\":[[\"a\"]]}", EINVAL, "argument 0 is not a string");
	handle_err("{\"cmd\":\"echo\",\"args\":\"a\"}", EINVAL, "\"args\" must be an array");
	handle_err("{\"cmd\":\"echo\",\"args\":null}", EINVAL, "\"args\" must be an array");
	handle_err("{\"args\":[]}", EINVAL, "\"cmd\" must be a string");
	handle_err("{\"cmd\":1}", EINVAL, "\"cmd\" must be a string");
	handle_err("{\"cmd\":null}", EINVAL, "\"cmd\" must be a string");
	handle_err("{\"cmd\":\"echo\",\"x\":1}", EINVAL, "unknown member \"x\"");
	handle_err("{\"cmd\":\"echo\",\"cmd\":\"fail\"}", EINVAL, "duplicate key");
	handle_err("[\"echo\"]", EINVAL, "not a JSON object");
	handle_err("\"echo\"", EINVAL, "not a JSON object");
	handle_err("{\"cmd\":\"echo\"", EINVAL, "bad request: offset 13:");
	handle_err("", EINVAL, "bad request: offset 0:");
	char many[2048] = "{\"cmd\":\"add-port\",\"args\":[\"a\"";
	for (int i = 0; i < SW_CTL_MAX_ARGS; i++)
		strcat(many, ",\"a\"");
	strcat(many, "]}");
	handle_err(many, EINVAL, "more than 64 arguments");
	/* A command that fails: its partial result is gone, its reason and errno are there. */
	handle_err("{\"cmd\":\"fail\",\"args\":[\"eth9\"]}", ENODEV, "no port 'eth9'");
	handle_err("{\"cmd\":\"fail-silent\"}", EPERM, strerror(EPERM));
	handle_err("{\"cmd\":\"unbalanced\"}", EPROTO, "unbalanced");
	handle_err("{\"cmd\":\"nofn\"}", ENOSYS, strerror(ENOSYS));

	/* Built-in help: the whole table plus itself, or one command. */
	v = handle("{\"cmd\":\"help\"}", &rc);
	CHECK_EQ(rc, 0);
	const struct sw_json_val *cmds = sw_json_get(sw_json_get(v, "result"), "commands");
	CHECK_EQ(cmds->count, NCMDS + 1);
	CHECK(!strcmp(sw_json_get(cmds->child->next, "usage")->str, "add-port NAME TYPE [KEY=VALUE...]"));
	sw_json_val_free(v);
	v = handle("{\"cmd\":\"help\",\"args\":[\"fail\"]}", &rc);
	cmds = sw_json_get(sw_json_get(v, "result"), "commands");
	CHECK(cmds->count == 1 && !strcmp(sw_json_get(cmds->child, "help")->str, "fails"));
	sw_json_val_free(v);
	handle_err("{\"cmd\":\"help\",\"args\":[\"nope\"]}", ENOENT, "no command 'nope'");
	handle_err("{\"cmd\":\"help\",\"args\":[\"a\",\"b\"]}", EINVAL, "usage: help");

	/* From argv, with the opaque pointer passed through; appended after what resp already holds. */
	int calls = 0;
	char a0[] = "echo", a1[] = "x";
	char *argv[] = {a0, a1, NULL};
	struct sw_json w;
	sw_json_init(&w);
	sw_json_arr_begin(&w, NULL);
	CHECK_EQ(sw_ctl_run_argv(test_cmds, NCMDS, &calls, 2, argv, &w), 0);
	CHECK_EQ(calls, 1);
	CHECK_EQ(sw_ctl_run_argv(test_cmds, NCMDS, &calls, 0, argv, &w), -EINVAL);
	char f0[] = "fail";
	argv[0] = f0;
	CHECK_EQ(sw_ctl_run_argv(test_cmds, NCMDS, &calls, 2, argv, &w), -ENODEV);
	sw_json_arr_end(&w);
	const char *t = sw_json_finish(&w);
	CHECK(!strcmp(t, "[{\"ok\":true,\"result\":{\"cmd\":\"echo\",\"args\":[\"x\"]}},"
			 "{\"ok\":false,\"error\":\"empty command\",\"errno\":22},"
			 "{\"ok\":false,\"error\":\"no port 'x'\",\"errno\":19}]"));
	sw_json_free(&w);
}

/* ------------------------------------------------------------------ socket */

static char sock_path[108];

static void set_path(const char *tag)
{
	snprintf(sock_path, sizeof(sock_path), "/tmp/test_ctl.%d.%s.sock", (int)getpid(), tag);
	unlink(sock_path);
}

/* Poll and dispatch until child pid exits; its exit status. */
static int serve_until_exit(struct sw_ctl *c, pid_t pid)
{
	for (;;) {
		struct pollfd fds[SW_CTL_MAX_POLLFDS];
		unsigned n = sw_ctl_pollfds(c, fds, SW_CTL_MAX_POLLFDS);
		CHECK(n >= 1 && n <= SW_CTL_MAX_POLLFDS);
		poll(fds, n, 10);
		sw_ctl_dispatch(c);
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
}

/* Dispatch until this process is back to want open fds (the server noticed its clients left). */
static void settle_fds(struct sw_ctl *c, int want)
{
	for (int i = 0; i < 500 && th_count_fds() != want; i++) {
		struct pollfd fds[SW_CTL_MAX_POLLFDS];
		poll(fds, sw_ctl_pollfds(c, fds, SW_CTL_MAX_POLLFDS), 10);
		sw_ctl_dispatch(c);
	}
	CHECK_EQ(th_count_fds(), want);
}

static int client_connect(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, sock_path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	CHECK_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void client_send(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t r = send(fd, s, n, MSG_NOSIGNAL);
		CHECK(r > 0);
		s += r;
		n -= (size_t)r;
	}
}

/* A line reader over one connection. */
struct reader {
	int fd;
	char *buf;
	size_t len, cap;
};

/* The next line without its newline (owned by r until the next call), or NULL at end of stream. */
static char *read_line(struct reader *r)
{
	static char *line;
	free(line);
	line = NULL;
	for (;;) {
		char *nl = r->len ? memchr(r->buf, '\n', r->len) : NULL;
		if (nl) {
			size_t n = (size_t)(nl - r->buf);
			line = malloc(n + 1);
			memcpy(line, r->buf, n);
			line[n] = 0;
			memmove(r->buf, nl + 1, r->len - n - 1);
			r->len -= n + 1;
			return line;
		}
		if (r->cap - r->len < 65536) {
			r->cap = r->cap ? r->cap * 2 : 1 << 17;
			r->buf = realloc(r->buf, r->cap);
		}
		ssize_t k = recv(r->fd, r->buf + r->len, r->cap - r->len, 0);
		if (k <= 0) {
			CHECK(k == 0 || errno == ECONNRESET);
			CHECK_EQ(r->len, 0);
			return NULL;
		}
		r->len += (size_t)k;
	}
}

/* Send one request and read its answer; 0 if ok:true, else the errno the answer carries. */
static int request(struct reader *r, const char *req)
{
	client_send(r->fd, req, strlen(req));
	char *line = read_line(r);
	CHECK(line);
	struct sw_json_val *v;
	char err[256];
	CHECK_EQ(sw_json_parse_max(line, strlen(line), 1 << 26, &v, err, sizeof(err)), 0);
	int e = sw_json_get(v, "ok")->b ? 0 : (int)sw_json_get(v, "errno")->num;
	sw_json_val_free(v);
	return e;
}

static void test_listen(void)
{
	int base = th_count_fds();
	struct sw_ctl *c, *c2;
	set_path("listen");
	/* Before publish the path is absent (a waiter sees nothing until the caller finished starting), and
	 * destroy then removes the temporary socket. */
	struct stat st;
	char tmp_path[sizeof(sock_path) + 16];
	snprintf(tmp_path, sizeof(tmp_path), "%s.%d", sock_path, (int)getpid());
	CHECK_EQ(sw_ctl_listen(sock_path, test_cmds, NCMDS, NULL, &c), 0);
	CHECK(lstat(sock_path, &st) < 0 && errno == ENOENT);
	CHECK_EQ(lstat(tmp_path, &st), 0);
	sw_ctl_destroy(c);
	CHECK(lstat(tmp_path, &st) < 0 && errno == ENOENT);
	CHECK_EQ(sw_ctl_listen(sock_path, test_cmds, NCMDS, NULL, &c), 0);
	CHECK_EQ(sw_ctl_publish(c), 0);
	CHECK_EQ(sw_ctl_publish(c), 0);
	CHECK(lstat(tmp_path, &st) < 0 && errno == ENOENT);
	CHECK_EQ(lstat(sock_path, &st), 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK_EQ(st.st_mode & 0777, 0600);
	/* Someone answers there: refused, and the socket stays. */
	CHECK_EQ(sw_ctl_listen(sock_path, test_cmds, NCMDS, NULL, &c2), -EADDRINUSE);
	CHECK(c2 == NULL);
	CHECK_EQ(lstat(sock_path, &st), 0);
	sw_ctl_destroy(c);
	CHECK(lstat(sock_path, &st) < 0 && errno == ENOENT);
	CHECK_EQ(th_count_fds(), base);

	/* A stale socket (its process died without unlinking) is replaced. */
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, sock_path);
	CHECK_EQ(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(s);
	CHECK_EQ(sw_ctl_listen(sock_path, test_cmds, NCMDS, NULL, &c), 0);
	CHECK_EQ(sw_ctl_publish(c), 0);
	/* Ours was replaced behind our back (a newer daemon): destroy leaves the new one alone. */
	CHECK_EQ(unlink(sock_path), 0);
	CHECK_EQ(sw_ctl_listen(sock_path, test_cmds, NCMDS, NULL, &c2), 0);
	CHECK_EQ(sw_ctl_publish(c2), 0);
	sw_ctl_destroy(c);
	CHECK_EQ(lstat(sock_path, &st), 0);
	sw_ctl_destroy(c2);
	CHECK(lstat(sock_path, &st) < 0);

	/* Not a socket: left alone. */
	int f = open(sock_path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	CHECK(f >= 0);
	close(f);
	CHECK_EQ(sw_ctl_listen(sock_path, test_cmds, NCMDS, NULL, &c), -EEXIST);
	CHECK_EQ(lstat(sock_path, &st), 0);
	CHECK(S_ISREG(st.st_mode));
	unlink(sock_path);

	char longp[200];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = 0;
	CHECK_EQ(sw_ctl_listen(longp, test_cmds, NCMDS, NULL, &c), -ENAMETOOLONG);
	CHECK_EQ(sw_ctl_listen("/nonexistent-dir/x.sock", test_cmds, NCMDS, NULL, &c), -ENOENT);
	CHECK_EQ(th_count_fds(), base);
	sw_ctl_destroy(NULL);
}

/* Requests in one piece, pipelined, byte by byte, malformed, with CRLF; a big answer in pieces. */
static void client_protocol(void)
{
	struct reader r = {.fd = client_connect()};
	CHECK_EQ(request(&r, "{\"cmd\":\"echo\",\"args\":[\"1\"]}\n"), 0);
	client_send(r.fd, "{\"cmd\":\"echo\",\"args\":[\"a\"]}\n{\"cmd\":\"fail\",\"args\":[\"p\"]}\n{\"cmd\":\"help\"}\n",
		    strlen("{\"cmd\":\"echo\",\"args\":[\"a\"]}\n{\"cmd\":\"fail\",\"args\":[\"p\"]}\n{\"cmd\":\"help\"}\n"));
	CHECK(!strcmp(read_line(&r), "{\"ok\":true,\"result\":{\"cmd\":\"echo\",\"args\":[\"a\"]}}"));
	CHECK(!strcmp(read_line(&r), "{\"ok\":false,\"error\":\"no port 'p'\",\"errno\":19}"));
	CHECK(!strncmp(read_line(&r), "{\"ok\":true,\"result\":{\"commands\":[", 33));
	const char *slow = "{\"cmd\":\"echo\",\"args\":[\"slow\"]}\n";
	for (const char *p = slow; *p; p++) {
		client_send(r.fd, p, 1);
		nanosleep(&(struct timespec){0, 200000}, NULL);
	}
	CHECK(!strcmp(read_line(&r), "{\"ok\":true,\"result\":{\"cmd\":\"echo\",\"args\":[\"slow\"]}}"));
	CHECK_EQ(request(&r, "not json\n"), EINVAL);
	CHECK_EQ(request(&r, "\n"), EINVAL);
	CHECK_EQ(request(&r, "{\"cmd\":\"echo\"}\r\n"), 0);
	/* Invalid UTF-8 and a NUL inside the line. */
	client_send(r.fd, "{\"cmd\":\"\xff\"}\n{\"cmd\":\"a\0\"}\n", 25);
	CHECK(strstr(read_line(&r), "invalid UTF-8"));
	CHECK(strstr(read_line(&r), "control character"));
	/* Several MiB: the server writes it across many dispatches while we read slowly. */
	client_send(r.fd, "{\"cmd\":\"big\"}\n", 14);
	nanosleep(&(struct timespec){0, 50 * 1000000}, NULL);
	char *line = read_line(&r);
	CHECK(line && strlen(line) > 1000000);
	struct sw_json_val *v;
	CHECK_EQ(sw_json_parse_max(line, strlen(line), 1 << 26, &v, NULL, 0), 0);
	CHECK_EQ(sw_json_get(sw_json_get(v, "result"), "entries")->count, big_entries());
	sw_json_val_free(v);
	CHECK_EQ(request(&r, "{\"cmd\":\"echo\"}\n"), 0);
	/* Half-closed: the answer still comes, then the server closes. */
	client_send(r.fd, "{\"cmd\":\"echo\"}\n{\"cmd\":\"ec", 25);
	shutdown(r.fd, SHUT_WR);
	CHECK(!strncmp(read_line(&r), "{\"ok\":true", 10));
	CHECK(read_line(&r) == NULL);
	close(r.fd);
	free(r.buf);
	_exit(0);
}

static void run_with_client(const char *tag, void (*client)(void))
{
	int base = th_count_fds();
	struct sw_ctl *c;
	set_path(tag);
	CHECK_EQ(sw_ctl_listen(sock_path, test_cmds, NCMDS, NULL, &c), 0);
	CHECK_EQ(sw_ctl_publish(c), 0);
	int listening = th_count_fds();
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		client();
	CHECK_EQ(serve_until_exit(c, pid), 0);
	settle_fds(c, listening);
	sw_ctl_destroy(c);
	CHECK_EQ(th_count_fds(), base);
}

static void test_socket_protocol(void)
{
	run_with_client("proto", client_protocol);
}

/* A 100 KiB line: an error line, then the connection is closed; others are not affected. */
static void client_long_line(void)
{
	struct reader other = {.fd = client_connect()};
	int fd = client_connect();
	size_t n = 100 * 1024;
	char *junk = malloc(n);
	memset(junk, 'x', n);
	for (size_t off = 0; off < n;) {
		ssize_t k = send(fd, junk + off, n - off, MSG_NOSIGNAL);
		if (k < 0) {
			CHECK(errno == EPIPE || errno == ECONNRESET);
			break;
		}
		off += (size_t)k;
	}
	free(junk);
	struct reader r = {.fd = fd};
	char *line = read_line(&r);
	CHECK(line);
	CHECK(strstr(line, "\"errno\":7"));
	CHECK(strstr(line, "longer than 65536"));
	CHECK(read_line(&r) == NULL);
	close(fd);
	free(r.buf);
	/* Exactly the longest line allowed is answered. */
	fd = client_connect();
	struct reader r2 = {.fd = fd};
	junk = malloc(SW_JSON_MAX_LEN + 1);
	memset(junk, ' ', SW_JSON_MAX_LEN);
	memcpy(junk, "{\"cmd\":\"echo\"}", 14);
	junk[SW_JSON_MAX_LEN] = '\n';
	client_send(fd, junk, SW_JSON_MAX_LEN + 1);
	free(junk);
	line = read_line(&r2);
	CHECK(line && !strncmp(line, "{\"ok\":true", 10));
	close(fd);
	free(r2.buf);
	CHECK_EQ(request(&other, "{\"cmd\":\"echo\"}\n"), 0);
	close(other.fd);
	free(other.buf);
	_exit(0);
}

static void test_socket_long_line(void)
{
	run_with_client("long", client_long_line);
}

/* Clients that leave mid-line, or before reading their answer. */
static void client_disconnects(void)
{
	for (int i = 0; i < 5; i++) {
		int fd = client_connect();
		client_send(fd, "{\"cmd\":\"ec", 10);
		close(fd);
		fd = client_connect();
		client_send(fd, "{\"cmd\":\"big\"}\n", 14);
		close(fd);
		fd = client_connect();
		close(fd);
	}
	struct reader r = {.fd = client_connect()};
	CHECK_EQ(request(&r, "{\"cmd\":\"echo\"}\n"), 0);
	close(r.fd);
	free(r.buf);
	_exit(0);
}

static void test_socket_disconnect(void)
{
	run_with_client("disc", client_disconnects);
}

/* 20 at once: 16 are served, 4 told why and closed; after they leave, there is room again. */
static void client_many(void)
{
	enum { N = 20 };
	struct reader r[N];
	for (int i = 0; i < N; i++)
		r[i] = (struct reader){.fd = client_connect()};
	int ok = 0, busy = 0;
	for (int i = 0; i < N; i++) {
		send(r[i].fd, "{\"cmd\":\"echo\"}\n", 15, MSG_NOSIGNAL);
		char *line = read_line(&r[i]);
		CHECK(line);
		if (!strncmp(line, "{\"ok\":true", 10)) {
			ok++;
		} else {
			CHECK(strstr(line, "too many clients"));
			CHECK(strstr(line, "\"errno\":16"));
			CHECK(read_line(&r[i]) == NULL);
			busy++;
		}
	}
	CHECK_EQ(ok, SW_CTL_MAX_CLIENTS);
	CHECK_EQ(busy, N - SW_CTL_MAX_CLIENTS);
	for (int i = 0; i < N; i++) {
		close(r[i].fd);
		free(r[i].buf);
	}
	struct reader again = {.fd = client_connect()};
	CHECK_EQ(request(&again, "{\"cmd\":\"echo\"}\n"), 0);
	close(again.fd);
	free(again.buf);
	_exit(0);
}

static void test_socket_many_clients(void)
{
	run_with_client("many", client_many);
}

/* A client that pipelines requests and never reads: the server stops reading it (so its memory stays bounded)
 * and keeps serving others; when it finally reads, every answer is there, in order. */
static void client_backpressure(void)
{
	int fd = client_connect();
	CHECK_EQ(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	/* Answers about as long as requests: without back-pressure the server would read all 8 MiB. */
	const char *req = "{\"cmd\":\"echo\"}\n";
	size_t len = strlen(req), sent = 0, limit = 8u << 20;
	char *block = malloc(len * 4096);
	for (size_t i = 0; i < 4096; i++)
		memcpy(block + i * len, req, len);
	for (;;) {
		ssize_t k = send(fd, block + sent % (len * 4096), len * 4096 - sent % (len * 4096), MSG_NOSIGNAL);
		if (k < 0) {
			CHECK(errno == EAGAIN);
			/* The server may still be draining its side: it stalls for good when no byte fits for a while. */
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			if (poll(&p, 1, 300) == 0)
				break;
			continue;
		}
		sent += (size_t)k;
		CHECK(sent < limit);
	}
	free(block);
	/* Stalled because the server stopped reading (not because it is slow): what is queued stays queued. */
	int q1, q2;
	CHECK_EQ(ioctl(fd, SIOCOUTQ, &q1), 0);
	nanosleep(&(struct timespec){0, 300 * 1000000}, NULL);
	CHECK_EQ(ioctl(fd, SIOCOUTQ, &q2), 0);
	CHECK(q1 > 0);
	CHECK_EQ(q1, q2);
	struct reader other = {.fd = client_connect()};
	CHECK_EQ(request(&other, "{\"cmd\":\"echo\"}\n"), 0);
	close(other.fd);
	free(other.buf);
	CHECK_EQ(fcntl(fd, F_SETFL, 0), 0);
	struct reader r = {.fd = fd};
	for (size_t i = 0; i < sent / len; i++) {
		char *line = read_line(&r);
		CHECK(line && !strcmp(line, "{\"ok\":true,\"result\":{\"cmd\":\"echo\",\"args\":[]}}"));
	}
	close(fd);
	free(r.buf);
	_exit(0);
}

static void test_socket_backpressure(void)
{
	run_with_client("bp", client_backpressure);
}

/* The server can open one more fd: A gets it; B is accepted on the spare fd, told why, closed; A still works;
 * once A leaves, C gets in. */
static void client_nofd(void)
{
	struct reader a = {.fd = client_connect()};
	CHECK_EQ(request(&a, "{\"cmd\":\"echo\"}\n"), 0);
	struct reader b = {.fd = client_connect()};
	char *line = read_line(&b);
	CHECK(line && strstr(line, "out of file descriptors") && strstr(line, "\"errno\":24"));
	CHECK(read_line(&b) == NULL);
	close(b.fd);
	free(b.buf);
	CHECK_EQ(request(&a, "{\"cmd\":\"echo\"}\n"), 0);
	close(a.fd);
	free(a.buf);
	struct reader c = {.fd = client_connect()};
	CHECK_EQ(request(&c, "{\"cmd\":\"echo\"}\n"), 0);
	close(c.fd);
	free(c.buf);
	_exit(0);
}

static void test_socket_out_of_fds(void)
{
	int base = th_count_fds();
	struct sw_ctl *c;
	set_path("nofd");
	CHECK_EQ(sw_ctl_listen(sock_path, test_cmds, NCMDS, NULL, &c), 0);
	CHECK_EQ(sw_ctl_publish(c), 0);
	int listening = th_count_fds();
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		client_nofd();
	/* New fds take the lowest free number, and the limit bounds the number: room for exactly one. */
	int lowest = dup(0);
	CHECK(lowest >= 0);
	close(lowest);
	struct rlimit old, tight;
	CHECK_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
	tight = old;
	tight.rlim_cur = (rlim_t)lowest + 1;
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &tight), 0);
	int st = serve_until_exit(c, pid);
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
	CHECK_EQ(st, 0);
	settle_fds(c, listening);
	sw_ctl_destroy(c);
	CHECK_EQ(th_count_fds(), base);
}

/* ------------------------------------------------------------------ vhostctl */

static int vc_show(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)opaque, (void)argc, (void)argv, (void)err, (void)errlen;
	sw_json_arr_begin(w, "ports");
	sw_json_obj_begin(w, NULL);
	sw_json_str(w, "name", "vm1");
	sw_json_str(w, "type", "vhost-user");
	sw_json_u64(w, "id", 0);
	sw_json_str(w, "link", "up");
	sw_json_u64(w, "mtu", 1500);
	sw_json_u64(w, "rxq", 1);
	sw_json_u64(w, "txq", 1);
	sw_json_u64(w, "macs", 2);
	sw_json_u64(w, "max_macs", 1024);
	sw_json_obj_begin(w, "info");
	sw_json_str(w, "path", "/tmp/vm1.sock");
	sw_json_str(w, "mode", "server");
	sw_json_str(w, "features", "0x140008000");
	sw_json_obj_end(w);
	sw_json_obj_end(w);
	sw_json_obj_begin(w, NULL);
	sw_json_str(w, "name", "tap0\x1b[31m");
	sw_json_str(w, "type", "tap");
	sw_json_u64(w, "id", 1);
	sw_json_str(w, "link", "down");
	sw_json_u64(w, "mtu", 9000);
	sw_json_u64(w, "rxq", 2);
	sw_json_u64(w, "txq", 2);
	sw_json_u64(w, "macs", 1);
	sw_json_u64(w, "max_macs", 0);
	sw_json_obj_begin(w, "info");
	sw_json_str(w, "ifname", "tap0");
	sw_json_obj_end(w);
	sw_json_obj_end(w);
	sw_json_arr_end(w);
	sw_json_arr_begin(w, "threads");
	sw_json_obj_begin(w, NULL);
	sw_json_u64(w, "id", 0);
	sw_json_u64(w, "cpu", 1);
	sw_json_arr_begin(w, "rxqs");
	sw_json_str(w, NULL, "vm1:0");
	sw_json_str(w, NULL, "tap0:0");
	sw_json_arr_end(w);
	sw_json_obj_end(w);
	sw_json_arr_end(w);
	sw_json_obj_begin(w, "bridge");
	sw_json_u64(w, "aging_s", 300);
	sw_json_u64(w, "fdb_entries", 3);
	sw_json_obj_end(w);
	return 0;
}

static int vc_stats(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)opaque, (void)argc, (void)argv, (void)err, (void)errlen;
	sw_json_arr_begin(w, "ports");
	sw_json_obj_begin(w, NULL);
	sw_json_str(w, "name", "vm1");
	sw_json_u64(w, "rx_packets", 12);
	sw_json_u64(w, "rx_bytes", UINT64_MAX);
	sw_json_u64(w, "tx_packets", 3);
	sw_json_u64(w, "tx_bytes", 180);
	sw_json_u64(w, "rx_drops", 0);
	sw_json_u64(w, "tx_drops", 1);
	sw_json_u64(w, "errors", 0);
	sw_json_u64(w, "queue_breaks", 2);
	sw_json_u64(w, "learn_refused", 5);
	sw_json_obj_end(w);
	sw_json_arr_end(w);
	return 0;
}

static int vc_fdb(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)opaque, (void)argc, (void)argv, (void)err, (void)errlen;
	sw_json_arr_begin(w, "entries");
	sw_json_obj_begin(w, NULL);
	sw_json_str(w, "mac", "52:54:00:12:34:56");
	sw_json_str(w, "port", "vm1");
	sw_json_u64(w, "age_s", 3);
	sw_json_obj_end(w);
	sw_json_obj_begin(w, NULL);
	sw_json_str(w, "mac", "52:54:00:ab:cd:ef");
	sw_json_str(w, "port", "tap0");
	sw_json_u64(w, "age_s", 120);
	sw_json_obj_end(w);
	sw_json_arr_end(w);
	return 0;
}

static int vc_log_level(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)opaque, (void)err, (void)errlen;
	sw_json_str(w, "level", argc > 1 ? argv[1] : "info");
	return 0;
}

static int vc_empty(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)opaque, (void)argc, (void)argv, (void)w, (void)err, (void)errlen;
	return 0;
}

static int vc_custom(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)opaque, (void)argc, (void)argv, (void)err, (void)errlen;
	sw_json_arr_begin(w, "x");
	sw_json_u64(w, NULL, 1);
	sw_json_str(w, NULL, "two");
	sw_json_arr_end(w);
	return 0;
}

static const struct sw_ctl_cmd vc_cmds[] = {
	{"show", "show", "everything", 0, 0, vc_show},
	{"stats", "stats [PORT]", "counters", 0, 1, vc_stats},
	{"fdb", "fdb", "MAC table", 0, 0, vc_fdb},
	{"log-level", "log-level [LEVEL]", "log level", 0, 1, vc_log_level},
	{"add-port", "add-port NAME TYPE [KEY=VALUE...]", "add", 2, 18, vc_empty},
	{"del-port", "del-port NAME", "delete", 1, 1, cmd_fail},
	{"custom", "custom", "unknown to vhostctl", 0, 0, vc_custom},
};

static char vhostctl_bin[PATH_MAX];

static void find_vhostctl(void)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	CHECK(n > 0);
	self[n] = 0;
	char *slash = strrchr(self, '/');
	*slash = 0;
	if (strlen(self) + 20 > sizeof(vhostctl_bin))
		th_skip("path too long");
	strcpy(vhostctl_bin, self);
	strcat(vhostctl_bin, "/../tools/vhostctl");
	if (access(vhostctl_bin, X_OK) < 0)
		th_skip("no vhostctl binary at %s", vhostctl_bin);
}

struct run {
	int status;
	char out[16384], err[4096];
};

static void drain(int fd, char *buf, size_t size, size_t *len, bool *open_)
{
	ssize_t k = read(fd, buf + *len, size - 1 - *len);
	if (k > 0)
		*len += (size_t)k;
	else if (k == 0 || errno != EAGAIN)
		*open_ = false;
	buf[*len] = 0;
}

/* Run vhostctl with args (NULL-terminated) while serving c (may be NULL); env VHOSTD_SOCKET=envsock if set. */
static void run_vhostctl(struct sw_ctl *c, const char *envsock, struct run *res, const char *const *args)
{
	int po[2], pe[2];
	CHECK_EQ(pipe2(po, O_CLOEXEC), 0);
	CHECK_EQ(pipe2(pe, O_CLOEXEC), 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		dup2(po[1], 1);
		dup2(pe[1], 2);
		if (envsock)
			setenv("VHOSTD_SOCKET", envsock, 1);
		else
			unsetenv("VHOSTD_SOCKET");
		char *argv[16] = {vhostctl_bin};
		for (int i = 0; args[i]; i++)
			argv[i + 1] = (char *)args[i];
		execv(vhostctl_bin, argv);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	fcntl(po[0], F_SETFL, O_NONBLOCK);
	fcntl(pe[0], F_SETFL, O_NONBLOCK);
	size_t olen = 0, elen = 0;
	bool oopen = true, eopen = true, exited = false;
	res->out[0] = res->err[0] = 0;
	while (!exited || oopen || eopen) {
		struct pollfd fds[SW_CTL_MAX_POLLFDS + 2];
		unsigned n = c ? sw_ctl_pollfds(c, fds, SW_CTL_MAX_POLLFDS) : 0;
		fds[n++] = (struct pollfd){.fd = oopen ? po[0] : -1, .events = POLLIN};
		fds[n++] = (struct pollfd){.fd = eopen ? pe[0] : -1, .events = POLLIN};
		poll(fds, n, 10);
		if (c)
			sw_ctl_dispatch(c);
		if (oopen)
			drain(po[0], res->out, sizeof(res->out), &olen, &oopen);
		if (eopen)
			drain(pe[0], res->err, sizeof(res->err), &elen, &eopen);
		int st;
		if (!exited && waitpid(pid, &st, WNOHANG) == pid) {
			exited = true;
			res->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
	}
	close(po[0]);
	close(pe[0]);
}

#define VHOSTCTL(c, res, ...) run_vhostctl(c, NULL, res, (const char *const[]){__VA_ARGS__, NULL})

static void expect(const struct run *r, int status, const char *out, const char *err)
{
	bool good = r->status == status && (!out || strstr(r->out, out)) && (!err || strstr(r->err, err));
	if (!good)
		fprintf(stderr, "vhostctl: status %d, stdout:\n%s\nstderr:\n%s\nwanted %d, [%s], [%s]\n", r->status,
			r->out, r->err, status, out ? out : "", err ? err : "");
	CHECK(good);
}

static void test_vhostctl_offline(void)
{
	find_vhostctl();
	static struct run r;
	set_path("vcoff");
	VHOSTCTL(NULL, &r, "--help");
	expect(&r, 0, "usage: vhostctl", NULL);
	CHECK(strstr(r.out, "add-port NAME TYPE [KEY=VALUE...]") && strstr(r.out, "log-level [LEVEL]"));
	VHOSTCTL(NULL, &r, "--socket", sock_path, "add-port", "--help");
	expect(&r, 0, "usage: vhostctl [OPTIONS] add-port NAME TYPE [KEY=VALUE...]", NULL);
	VHOSTCTL(NULL, &r, "stats", "vm1", "--help");
	expect(&r, 0, "stats [PORT]", NULL);
	VHOSTCTL(NULL, &r, "frobnicate", "--help");
	expect(&r, 2, NULL, "no help for 'frobnicate'");
	VHOSTCTL(NULL, &r, "--json");
	expect(&r, 2, NULL, "no command");
	VHOSTCTL(NULL, &r, "--bogus", "show");
	expect(&r, 2, NULL, "unknown option");
	VHOSTCTL(NULL, &r, "--timeout", "1x", "show");
	expect(&r, 2, NULL, "--timeout");
	VHOSTCTL(NULL, &r, "--socket");
	expect(&r, 2, NULL, "missing argument");
	VHOSTCTL(NULL, &r, "--socket", sock_path, "del-port");
	expect(&r, 2, NULL, "usage: vhostctl del-port NAME");
	VHOSTCTL(NULL, &r, "--socket", sock_path, "show", "extra");
	expect(&r, 2, NULL, "wrong number of arguments");
	/* No daemon: says where it looked and why. */
	VHOSTCTL(NULL, &r, "--socket", sock_path, "show");
	expect(&r, 3, NULL, sock_path);
	CHECK(strstr(r.err, "No such file or directory"));
	run_vhostctl(NULL, sock_path, &r, (const char *const[]){"show", NULL});
	expect(&r, 3, NULL, sock_path);

	/* A socket that accepts but never answers: the timeout holds. */
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, sock_path);
	CHECK_EQ(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ(listen(s, 4), 0);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	VHOSTCTL(NULL, &r, "--socket", sock_path, "--timeout", "300", "show");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	expect(&r, 3, NULL, "no answer within 300 ms");
	double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	CHECK(took >= 0.29 && took < 10);
	/* One that closes without answering. */
	int a = accept(s, NULL, NULL);
	CHECK(a >= 0);
	close(a);
	pid_t pid = fork();
	if (pid == 0) {
		int k = accept(s, NULL, NULL);
		char buf[256];
		CHECK(read(k, buf, sizeof(buf)) > 0);
		_exit(0);
	}
	VHOSTCTL(NULL, &r, "--socket", sock_path, "show");
	expect(&r, 3, NULL, "closed the connection");
	waitpid(pid, NULL, 0);
	/* One that answers garbage. */
	pid = fork();
	if (pid == 0) {
		int k = accept(s, NULL, NULL);
		char buf[256];
		CHECK(read(k, buf, sizeof(buf)) > 0);
		CHECK(write(k, "{\"ok\":tru}\n", 11) == 11);
		_exit(0);
	}
	VHOSTCTL(NULL, &r, "--socket", sock_path, "show");
	expect(&r, 3, NULL, "malformed answer");
	waitpid(pid, NULL, 0);
	close(s);
	unlink(sock_path);
}

static void test_vhostctl_server(void)
{
	find_vhostctl();
	static struct run r;
	struct sw_ctl *c;
	int base = th_count_fds();
	set_path("vc");
	CHECK_EQ(sw_ctl_listen(sock_path, vc_cmds, sizeof(vc_cmds) / sizeof(vc_cmds[0]), NULL, &c), 0);
	CHECK_EQ(sw_ctl_publish(c), 0);

	VHOSTCTL(c, &r, "--socket", sock_path, "show");
	expect(&r, 0, NULL, NULL);
	CHECK(!strcmp(r.err, ""));
	const char *show =
		"PORT       TYPE        ID  LINK   MTU  RXQ  TXQ  MACS  MAX_MACS  INFO\n"
		"vm1        vhost-user   0  up    1500    1    1     2      1024  path=/tmp/vm1.sock mode=server "
		"features=0x140008000\n"
		"tap0?[31m  tap          1  down  9000    2    2     1         0  ifname=tap0\n"
		"\n"
		"THREAD  CPU  RXQS\n"
		"     0    1  vm1:0 tap0:0\n"
		"\n"
		"bridge: MAC aging 300 s, 3 fdb entries\n";
	if (strcmp(r.out, show))
		fprintf(stderr, "show:\n%s\nwanted:\n%s", r.out, show);
	CHECK(!strcmp(r.out, show));

	run_vhostctl(c, sock_path, &r, (const char *const[]){"fdb", NULL});
	expect(&r, 0, NULL, NULL);
	CHECK(!strcmp(r.out, "MAC                PORT  AGE_S\n"
			     "52:54:00:12:34:56  vm1       3\n"
			     "52:54:00:ab:cd:ef  tap0    120\n"));

	VHOSTCTL(c, &r, "-s", sock_path, "stats", "vm1");
	expect(&r, 0, "18446744073709551615", NULL);
	CHECK(strstr(r.out, "PORT  RX_PACKETS") && strstr(r.out, "vm1           12"));
	CHECK(strstr(r.out, "ERRORS  QUEUE_BREAKS  LEARN_REFUSED\n") &&
	      strstr(r.out, "      0             2              5\n"));
	VHOSTCTL(c, &r, "-s", sock_path, "--json", "stats");
	expect(&r, 0, NULL, NULL);
	CHECK(!strcmp(r.out, "{\"ports\":[{\"name\":\"vm1\",\"rx_packets\":12,\"rx_bytes\":18446744073709551615,"
			     "\"tx_packets\":3,\"tx_bytes\":180,\"rx_drops\":0,\"tx_drops\":1,\"errors\":0,"
			     "\"queue_breaks\":2,\"learn_refused\":5}]}\n"));
	VHOSTCTL(c, &r, "--socket=", "show");
	expect(&r, 2, NULL, "empty socket path");
	VHOSTCTL(c, &r, "--socket", sock_path, "log-level");
	expect(&r, 0, NULL, NULL);
	CHECK(!strcmp(r.out, "info\n"));
	VHOSTCTL(c, &r, "--socket", sock_path, "log-level", "debug");
	CHECK(!strcmp(r.out, "debug\n"));
	VHOSTCTL(c, &r, "--socket", sock_path, "add-port", "p1", "tap", "ifname=tap9");
	expect(&r, 0, NULL, NULL);
	CHECK(!strcmp(r.out, "") && !strcmp(r.err, ""));
	VHOSTCTL(c, &r, "--socket", sock_path, "del-port", "nope");
	expect(&r, 1, NULL, NULL);
	CHECK(!strcmp(r.err, "vhostctl: no port 'nope'\n") && !strcmp(r.out, ""));
	VHOSTCTL(c, &r, "--socket", sock_path, "custom");
	expect(&r, 0, NULL, NULL);
	CHECK(!strcmp(r.out, "{\"x\":[1,\"two\"]}\n"));
	VHOSTCTL(c, &r, "--socket", sock_path, "frobnicate", "-x", "--y");
	expect(&r, 1, NULL, "vhostctl: unknown command 'frobnicate'");
	VHOSTCTL(c, &r, "--socket", sock_path, "help");
	expect(&r, 0, "COMMAND", NULL);
	CHECK(strstr(r.out, "add-port NAME TYPE [KEY=VALUE...]  add\n"));
	VHOSTCTL(c, &r, "--socket", sock_path, "--json", "help", "fdb");
	expect(&r, 0, "{\"commands\":[{\"name\":\"fdb\",\"usage\":\"fdb\",\"help\":\"MAC table\"}]}\n", NULL);

	sw_ctl_destroy(c);
	CHECK_EQ(th_count_fds(), base);
}

static const struct th_case cases[] = {
	{"parse_valid", test_parse_valid, 0},
	{"parse_errors", test_parse_errors, 0},
	{"writer_roundtrip", test_writer_roundtrip, 0},
	{"split", test_split, 0},
	{"handle", test_handle, 0},
	{"listen", test_listen, 0},
	{"socket_protocol", test_socket_protocol, 0},
	{"socket_long_line", test_socket_long_line, 0},
	{"socket_disconnect", test_socket_disconnect, 0},
	{"socket_many_clients", test_socket_many_clients, 0},
	{"socket_backpressure", test_socket_backpressure, 0},
	{"socket_out_of_fds", test_socket_out_of_fds, 0},
	{"vhostctl_offline", test_vhostctl_offline, 0},
	{"vhostctl_server", test_vhostctl_server, 0},
};
TH_MAIN("test_ctl", cases)
