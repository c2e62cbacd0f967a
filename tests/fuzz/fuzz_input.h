/* SPDX-License-Identifier: MIT */
/*
 * What the harnesses share: a reader that takes fields off the front of the fuzzer's input (running out reads
 * zeros, so every input is usable and short inputs stay meaningful), a log handler that drops the library's
 * refusals (formatting them still runs), and the libFuzzer entry point declarations.
 */
#ifndef VHD_FUZZ_INPUT_H
#define VHD_FUZZ_INPUT_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "vhostd/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz_in {
	const uint8_t *p;
	size_t left;
};

/* Copy up to n bytes into dst, zero-filling what the input no longer has. Returns the bytes that were real. */
static inline size_t fz_bytes(struct fz_in *in, void *dst, size_t n)
{
	size_t k = n < in->left ? n : in->left;
	memcpy(dst, in->p, k);
	memset((uint8_t *)dst + k, 0, n - k);
	in->p += k;
	in->left -= k;
	return k;
}

static inline uint8_t fz_u8(struct fz_in *in)
{
	uint8_t v;
	fz_bytes(in, &v, 1);
	return v;
}

static inline uint16_t fz_u16(struct fz_in *in)
{
	uint8_t b[2];
	fz_bytes(in, b, 2);
	return (uint16_t)(b[0] | b[1] << 8);
}

static inline uint32_t fz_u32(struct fz_in *in)
{
	return fz_u16(in) | (uint32_t)fz_u16(in) << 16;
}

static inline uint64_t fz_u64(struct fz_in *in)
{
	return fz_u32(in) | (uint64_t)fz_u32(in) << 32;
}

static inline void fz_quiet_log(enum vhd_log_level level, const char *msg, void *opaque)
{
	(void)level, (void)msg, (void)opaque;
}

/* FZ_VERBOSE=1 in the environment: harnesses say what each input did (for checking seeds by hand). */
extern int fz_verbose;
#define FZ_SAY(...)                                                                                           \
	do {                                                                                                  \
		if (fz_verbose)                                                                               \
			fprintf(stderr, __VA_ARGS__);                                                         \
	} while (0)

static inline void fz_init(void)
{
	vhd_log_set_handler(fz_quiet_log, NULL);
	fz_verbose = getenv("FZ_VERBOSE") != NULL;
}

/* Fail the run (libFuzzer saves the input) when a harness's own invariant does not hold. */
#define FZ_ASSERT(cond)                                                                                       \
	do {                                                                                                  \
		if (!(cond)) {                                                                                \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);        \
			abort();                                                                              \
		}                                                                                             \
	} while (0)

#endif
