/* SPDX-License-Identifier: MIT */
/*
 * Minimal test harness in the libuv style: every case runs in its own forked child, so a crash, a sanitizer
 * abort or a hang in one case is reported against that case and the rest still run.
 *
 * Each case prints one line the suite runner counts:
 *   PASS: <binary>/<case>
 *   FAIL: <binary>/<case>: <why>
 *   SKIP: <binary>/<case>: <why>
 * Usage: <binary> [case-name-substring]
 */
#ifndef VHD_TEST_HARNESS_H
#define VHD_TEST_HARNESS_H

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct th_case {
	const char *name;
	void (*fn)(void);
	unsigned timeout_s; /* 0: 60 s */
};

#define TH_SKIP_CODE 77

#define CHECK(cond)                                                                                           \
	do {                                                                                                  \
		if (!(cond)) {                                                                                \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);           \
			fflush(stderr);                                                                       \
			_exit(1);                                                                             \
		}                                                                                             \
	} while (0)

#define CHECK_EQ(a, b)                                                                                        \
	do {                                                                                                  \
		long long _a = (long long)(a), _b = (long long)(b);                                           \
		if (_a != _b) {                                                                               \
			fprintf(stderr, "%s:%d: check failed: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, \
				#a, #b, _a, _b);                                                              \
			fflush(stderr);                                                                       \
			_exit(1);                                                                             \
		}                                                                                             \
	} while (0)

static inline void th_skip(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static inline void th_skip(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	_exit(TH_SKIP_CODE);
}

/*
 * Iteration counts of long cases, scaled by VHD_TEST_SCALE (a factor, default 1; scripts/valgrind.sh sets a small
 * one). Never below 1.
 */
static inline unsigned long long th_scaled(unsigned long long n)
{
	const char *e = getenv("VHD_TEST_SCALE");
	double f = e && *e ? strtod(e, NULL) : 1.0;
	if (!(f > 0))
		f = 1.0;
	unsigned long long v = (unsigned long long)((double)n * f);
	return v ? v : 1;
}

/* VHD_TEST_TIMEOUT_SCALE: a factor (default 1) on every case's timeout, for runs under a slow tool. */
static inline unsigned th_timeout_scale(void)
{
	const char *e = getenv("VHD_TEST_TIMEOUT_SCALE");
	int f = e ? atoi(e) : 1;
	return f > 0 ? (unsigned)f : 1;
}

/*
 * VHD_TEST_EXCLUDE="suite/case:why;suite/case:why": cases a runner cannot run meaningfully (scripts/valgrind.sh),
 * reported as SKIP with the reason. Returns the reason's length, or -1 when the case is not excluded.
 */
static inline int th_excluded(const char *suite, const char *name, const char **why)
{
	const char *e = getenv("VHD_TEST_EXCLUDE");
	char key[256];
	snprintf(key, sizeof(key), "%s/%s:", suite, name);
	const char *p = e ? strstr(e, key) : NULL;
	if (!p || (p != e && p[-1] != ';'))
		return -1;
	*why = p + strlen(key);
	return (int)strcspn(*why, ";");
}

static inline int th_main(const char *suite, const struct th_case *cases, size_t ncases, int argc, char **argv)
{
	const char *filter = argc > 1 ? argv[1] : NULL;
	int failed = 0;
	for (size_t i = 0; i < ncases; i++) {
		const struct th_case *c = &cases[i];
		if (filter && !strstr(c->name, filter))
			continue;
		const char *why;
		int wl = th_excluded(suite, c->name, &why);
		if (wl >= 0) {
			printf("SKIP: %s/%s: excluded: %.*s\n", suite, c->name, wl, why);
			continue;
		}
		fflush(stdout);
		int pipefd[2];
		if (pipe(pipefd) < 0) {
			perror("pipe");
			return 2;
		}
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 2;
		}
		if (pid == 0) {
			close(pipefd[0]);
			dup2(pipefd[1], 2);
			close(pipefd[1]);
			setpgid(0, 0); /* so a timeout can kill the case and any process it started */
			alarm((c->timeout_s ? c->timeout_s : 60) * th_timeout_scale());
			c->fn();
			/* exit, not _exit: LeakSanitizer checks for leaks in atexit. */
			exit(0);
		}
		close(pipefd[1]);
		/* Collect the child's stderr while waiting for it; the tail is kept. Grandchildren share the pipe, so
		 * the child's exit (not end-of-file) ends the case, and its process group is then killed. */
		static char err[65536];
		size_t len = 0;
		int st = 0;
		bool done = false;
		for (;;) {
			struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
			int pr = poll(&pfd, 1, 100);
			if (pr > 0) {
				ssize_t r = read(pipefd[0], err + len, sizeof(err) - 1 - len);
				if (r > 0) {
					len += (size_t)r;
					if (len >= sizeof(err) - 1) {
						memmove(err, err + len / 2, len - len / 2);
						len -= len / 2;
					}
				} else if (r == 0 && done) {
					break;
				}
			}
			if (!done && waitpid(pid, &st, WNOHANG) == pid) {
				done = true;
				kill(-pid, SIGKILL);
			}
			if (done && pr == 0)
				break;
		}
		close(pipefd[0]);
		err[len] = 0;
		char *last = err;
		for (char *p = err; *p; p++)
			if (*p == '\n' && p[1])
				last = p + 1;
		static char lastline[512];
		snprintf(lastline, sizeof(lastline), "%.*s", (int)strcspn(last, "\n"), last);
		last = lastline;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
			printf("PASS: %s/%s\n", suite, c->name);
		} else if (WIFEXITED(st) && WEXITSTATUS(st) == TH_SKIP_CODE) {
			printf("SKIP: %s/%s: %s\n", suite, c->name, last);
		} else {
			failed++;
			if (len)
				fprintf(stdout, "---- %s/%s output ----\n%s", suite, c->name, err);
			if (WIFSIGNALED(st))
				printf("FAIL: %s/%s: killed by signal %d%s (%s)\n", suite, c->name, WTERMSIG(st),
				       WTERMSIG(st) == SIGALRM ? " (timeout)" : "", last);
			else
				printf("FAIL: %s/%s: %s\n", suite, c->name, last[0] ? last : "exit status nonzero");
		}
		fflush(stdout);
	}
	return failed ? 1 : 0;
}

/* Open fds of this process, for leak checks. */
static inline int th_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/*
 * Mappings of this process, for leak checks. Under a sanitizer only those of files (guest memory is a memfd):
 * its runtime maps anonymous shadow and allocator memory as the process runs, so that the count moved with the
 * size of a struct (a new allocator region). The release build, and valgrind, count every mapping.
 */
static inline int th_count_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return -1;
	int n = 0;
	char line[4096];
	while (fgets(line, sizeof(line), f)) {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
		n += strchr(line, '/') != NULL;
#else
		n++;
#endif
	}
	fclose(f);
	return n;
}

#define TH_MAIN(suite, cases)                                                                                 \
	int main(int argc, char **argv)                                                                       \
	{                                                                                                     \
		return th_main(suite, cases, sizeof(cases) / sizeof(cases[0]), argc, argv);                   \
	}

#endif
