/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: the control socket's request path on arbitrary bytes. Each input goes, as is, through
 *   - sw_json_parse() (the strict parser),
 *   - sw_ctl_handle() (parse, cmd/args checks, dispatch against a command table shaped like vhostd's), and
 *   - sw_ctl_split() then sw_ctl_run_argv() (the config-file path), on a NUL-terminated copy.
 * Beyond the sanitizers, one invariant is checked: every response is itself valid JSON, an object with "ok".
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "util/json.h"
#include "switch/port.h"
#include "fuzz_input.h"
#include "vhostd/log.h"

/* add-port as vhostd parses it (KEY=VALUE split, then the port helpers), without creating anything. */
static int cmd_add_port(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)opaque;
	static const char *const known[] = {"path",   "client", "server", "queues", "mrg",	    "tso",
					    "packed", "ifname", "offloads", "frames", "qdisc_bypass", "mtu", NULL};
	struct sw_kv kv[SW_MAX_ARGS];
	unsigned n = 0;
	for (unsigned i = 3; i < argc; i++) {
		if (n == SW_MAX_ARGS)
			return -E2BIG;
		char *eq = strchr(argv[i], '=');
		if (eq == argv[i])
			return -EINVAL;
		if (eq)
			*eq = '\0';
		kv[n].key = argv[i];
		kv[n].value = eq ? eq + 1 : "";
		n++;
	}
	int rc = sw_kv_check(kv, n, known, argv[2], err, errlen);
	unsigned queues = 0, mtu = 0;
	bool mrg = false;
	char path[108];
	if (rc == 0)
		rc = sw_kv_uint(kv, n, "queues", 1, 1, SW_MAX_QUEUES, &queues, err, errlen);
	if (rc == 0)
		rc = sw_kv_uint(kv, n, "mtu", 1500, 68, 65535, &mtu, err, errlen);
	if (rc == 0)
		rc = sw_kv_on_off(kv, n, "mrg", true, &mrg, err, errlen);
	if (rc == 0)
		rc = sw_kv_required(kv, n, "path", "socket path", path, sizeof(path), err, errlen);
	if (rc < 0)
		return rc;
	sw_json_str(w, "name", argv[1]);
	sw_json_str(w, "type", argv[2]);
	sw_json_str(w, "path", path);
	sw_json_u64(w, "queues", queues);
	sw_json_u64(w, "mtu", mtu);
	sw_json_bool(w, "mrg", mrg);
	return 0;
}

/* Echoes its arguments: every byte the parser let through goes through the writer's escaping. */
static int cmd_echo(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)opaque, (void)err, (void)errlen;
	sw_json_arr_begin(w, "args");
	for (unsigned i = 1; i < argc; i++)
		sw_json_str(w, NULL, argv[i]);
	sw_json_arr_end(w);
	sw_json_strf(w, "first", "%s", argc > 1 ? argv[1] : "");
	return 0;
}

/* Fails after writing part of a result, with the caller's text as the reason: the rollback path. */
static int cmd_fail(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)opaque;
	sw_json_obj_begin(w, "partial");
	sw_json_str(w, "x", argc > 1 ? argv[1] : NULL);
	if (argc > 1)
		snprintf(err, errlen, "%s", argv[1]);
	return -EINVAL;
}

/* The two command bugs run() guards against: an unbalanced result and a positive return. */
static int cmd_unbalanced(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)opaque, (void)argc, (void)argv, (void)err, (void)errlen;
	sw_json_arr_begin(w, "open");
	return 0;
}

static int cmd_positive(void *opaque, unsigned argc, char **argv, struct sw_json *w, char *err, size_t errlen)
{
	(void)opaque, (void)argc, (void)argv, (void)w, (void)err, (void)errlen;
	return 1;
}

static const struct sw_ctl_cmd cmds[] = {
	{"add-port", "add-port NAME TYPE [KEY=VALUE...]", "add a port", 2, 2 + SW_MAX_ARGS, cmd_add_port},
	{"del-port", "del-port NAME", "remove a port", 1, 1, cmd_echo},
	{"show", "show", "ports", 0, 0, cmd_echo},
	{"stats", "stats [PORT]", "counters", 0, 1, cmd_echo},
	{"fdb", "fdb", "the MAC table", 0, 0, NULL},
	{"log-level", "log-level [LEVEL]", "log level", 0, 1, cmd_fail},
	{"echo", NULL, NULL, 0, SW_CTL_MAX_ARGS, cmd_echo},
	{"unbalanced", "unbalanced", "", 0, 2, cmd_unbalanced},
	{"positive", "positive", "", 0, 2, cmd_positive},
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void check_response(struct sw_json *resp)
{
	const char *text = sw_json_finish(resp);
	if (!text)
		return; /* out of memory: nothing to check */
	struct sw_json_val *v;
	char err[256];
	if (sw_json_parse_max(text, strlen(text), SIZE_MAX, &v, err, sizeof(err)) != 0) {
		fprintf(stderr, "response is not valid JSON (%s): %s\n", err, text);
		abort();
	}
	const struct sw_json_val *ok = sw_json_get(v, "ok");
	if (v->type != SW_JSON_OBJ || !ok || ok->type != SW_JSON_BOOL) {
		fprintf(stderr, "response is not an object with \"ok\": %s\n", text);
		abort();
	}
	sw_json_val_free(v);
}

int fz_verbose;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fz_init();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sw_json_val *v;
	char err[256];
	if (sw_json_parse((const char *)data, size, &v, err, sizeof(err)) == 0) {
		(void)sw_json_get(v, "cmd");
		sw_json_val_free(v);
	}

	struct sw_json resp;
	sw_json_init(&resp);
	sw_ctl_handle(cmds, NCMDS, NULL, (const char *)data, size, &resp);
	check_response(&resp);
	sw_json_free(&resp);

	/* The config-file path: the first byte picks the word limit, the rest is the line. */
	if (size == 0)
		return 0;
	char *line = malloc(size);
	if (!line)
		return 0;
	memcpy(line, data + 1, size - 1);
	line[size - 1] = '\0';
	unsigned max = data[0] % (SW_CTL_MAX_ARGS + 2) + 1, argc;
	char **argv = calloc(max + 1, sizeof(*argv));
	if (argv && sw_ctl_split(line, argv, max, &argc) == 0) {
		FZ_ASSERT(argc <= max && (argc == max || argv[argc] == NULL));
		sw_json_init(&resp);
		sw_ctl_run_argv(cmds, NCMDS, NULL, argc, argv, &resp);
		check_response(&resp);
		sw_json_free(&resp);
	}
	free(argv);
	free(line);
	return 0;
}
