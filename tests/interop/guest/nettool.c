/* SPDX-License-Identifier: MIT */
/*
 * nettool: the guest's end of the interop traffic tests (BusyBox has no UDP sender and no stream checker).
 * tests/interop/hostpeer.py is the host's end and speaks the same formats:
 *
 *   UDP datagram i: seq i (8 bytes LE), then bytes (i + j) & 0xff for j = 0.., length 16 + (i * 37) % 1400
 *   TCP stream:     64-bit little-endian words 0, 1, 2, ... (any loss, duplication, reordering or corruption
 *                   of bytes shows up as a word out of place)
 *
 *   nettool udp-send IP PORT COUNT [PPS] send COUNT datagrams, paced (PPS: one every 1/PPS s, never catching
 *                                        up after a stall; SIGUSR1 stops it, with the count sent so far)
 *   nettool udp-recv PORT COUNT MS      receive until COUNT arrived or MS ms of silence; check every one;
 *                                       "VHD-SEQ" sums up what is missing below the highest sequence number
 *                                       received (datagrams, runs, longest run) and what was duplicated (the
 *                                       same), then names the first 16 runs missing
 *   nettool udp-echo PORT MS            send every datagram back to its sender until MS ms of silence
 *   nettool tcp-send IP PORT BYTES      connect and send BYTES of the stream
 *   nettool tcp-recv PORT BYTES         accept one connection, read to EOF, check every byte
 *
 * Each prints one line "VHD-RESULT <what> ok|fail <detail>"; receivers print "VHD-READY <what> <port>" once
 * they listen, which the host waits for before sending. Exit status 0 only for ok.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAXDG 1416

static uint32_t dg_len(uint64_t i) { return 16 + (uint32_t)((i * 37) % 1400); }

static void fill_dg(uint8_t *b, uint64_t i, uint32_t len)
{
	for (int k = 0; k < 8; k++)
		b[k] = (uint8_t)(i >> (8 * k));
	for (uint32_t j = 8; j < len; j++)
		b[j] = (uint8_t)(i + (j - 8));
}

static struct sockaddr_in addr(const char *ip, const char *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
	if (ip)
		inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}

static void pace(unsigned i)
{
	if (i % 16 == 15) {
		struct timespec ts = {0, 2 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

static volatile sig_atomic_t stop_sending;

static void on_usr1(int sig)
{
	(void)sig;
	stop_sending = 1;
}

/* With pps, a blocking send (the socket's buffer full while the path is gone) holds the sequence: what the
 * stack took is what was sent, and pacing goes on from the moment it returns instead of bursting to catch up. */
static int udp_send(const char *ip, const char *port, uint64_t count, unsigned pps)
{
	struct sockaddr_in a = addr(ip, port);
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	uint8_t b[MAXDG];
	uint64_t ok = 0, i;
	struct sigaction sa = {.sa_handler = on_usr1}; /* no SA_RESTART: a blocked sendto returns */
	sigaction(SIGUSR1, &sa, NULL);
	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (i = 0; i < count && !stop_sending; i++) {
		uint32_t len = dg_len(i);
		fill_dg(b, i, len);
		ssize_t n = sendto(s, b, len, 0, (struct sockaddr *)&a, sizeof(a));
		if (n < 0 && errno == EINTR && stop_sending)
			break;
		ok += n == (ssize_t)len;
		if (!pps) {
			pace((unsigned)i);
			continue;
		}
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long long nx = (long long)next.tv_sec * 1000000000LL + next.tv_nsec + 1000000000LL / pps,
			  nw = (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
		if (nx < nw)
			nx = nw;
		next = (struct timespec){(time_t)(nx / 1000000000LL), (long)(nx % 1000000000LL)};
		while (!stop_sending && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
			;
	}
	bool good = ok == i;
	printf("VHD-RESULT udp-send %s sent %llu of %llu%s\n", good ? "ok" : "fail", (unsigned long long)ok,
	       (unsigned long long)count, i < count ? ", stopped" : "");
	return good ? 0 : 1;
}

static int udp_recv(const char *port, uint64_t count, int ms)
{
	struct sockaddr_in a = addr(NULL, port);
	int s = socket(AF_INET, SOCK_DGRAM, 0), big = 8 << 20;
	setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		printf("VHD-RESULT udp-recv fail bind: %s\n", strerror(errno));
		return 1;
	}
	uint8_t *seen = calloc(count ? count : 1, 1);
	uint64_t got = 0, dup = 0, bad = 0, stray = 0, top = 0;
	printf("VHD-READY udp-recv %s\n", port);
	fflush(stdout);
	struct pollfd p = {.fd = s, .events = POLLIN};
	/* The first datagram may take a while (the host starts when it reads READY); after that, silence ends. */
	int wait = 30000;
	while (got < count && poll(&p, 1, wait) > 0) {
		uint8_t b[MAXDG + 64];
		ssize_t n = recv(s, b, sizeof(b), 0);
		if (n < 8) {
			bad++;
			continue;
		}
		wait = ms;
		uint64_t i = 0;
		for (int k = 0; k < 8; k++)
			i |= (uint64_t)b[k] << (8 * k);
		if (i >= count) {
			stray++;
			continue;
		}
		uint8_t want[MAXDG];
		uint32_t len = dg_len(i);
		fill_dg(want, i, len);
		if ((size_t)n != len || memcmp(b, want, len)) {
			bad++;
			continue;
		}
		if (seen[i]) {
			seen[i] += seen[i] < 255;
			dup++;
			continue;
		}
		seen[i] = 1;
		got++;
		top = i + 1 > top ? i + 1 : top;
	}
	/* Runs of datagrams missing (seen 0) and of duplicated ones (seen more than once) below the highest number
	 * received: each is what one interruption cost. */
	uint64_t miss[3] = {0}, dupr[3] = {0}; /* datagrams, runs, longest run */
	char first[16 * 44] = "";
	size_t fl = 0;
	for (uint64_t i = 0; i < top;) {
		bool missing = !seen[i];
		uint64_t j = i;
		while (j < top && (missing ? !seen[j] : seen[j] > 1))
			j++;
		if (j == i) {
			i++;
			continue;
		}
		uint64_t *c = missing ? miss : dupr;
		c[0] += j - i;
		c[1]++;
		c[2] = j - i > c[2] ? j - i : c[2];
		if (missing && miss[1] <= 16)
			fl += (size_t)snprintf(first + fl, sizeof(first) - fl, " %llu-%llu", (unsigned long long)i,
					       (unsigned long long)(j - 1));
		i = j;
	}
	printf("VHD-SEQ top %llu missing %llu runs %llu max %llu dup %llu runs %llu max %llu first%s\n",
	       (unsigned long long)top, (unsigned long long)miss[0], (unsigned long long)miss[1],
	       (unsigned long long)miss[2], (unsigned long long)dup, (unsigned long long)dupr[1],
	       (unsigned long long)dupr[2], first);
	bool ok = got == count && !dup && !bad && !stray;
	printf("VHD-RESULT udp-recv %s received %llu of %llu, lost %llu, dup %llu, corrupt %llu, stray %llu\n",
	       ok ? "ok" : "fail", (unsigned long long)got, (unsigned long long)count,
	       (unsigned long long)(count - got), (unsigned long long)dup, (unsigned long long)bad,
	       (unsigned long long)stray);
	return ok ? 0 : 1;
}

/* Every datagram back to its sender, unchanged, until MS ms of silence after the first (which may take 30 s). */
static int udp_echo(const char *port, int ms)
{
	struct sockaddr_in a = addr(NULL, port);
	int s = socket(AF_INET, SOCK_DGRAM, 0), big = 8 << 20;
	setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		printf("VHD-RESULT udp-echo fail bind: %s\n", strerror(errno));
		return 1;
	}
	printf("VHD-READY udp-echo %s\n", port);
	fflush(stdout);
	uint64_t got = 0, back = 0;
	struct pollfd p = {.fd = s, .events = POLLIN};
	for (int wait = 30000; poll(&p, 1, wait) > 0; wait = ms) {
		uint8_t b[65536];
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(s, b, sizeof(b), 0, (struct sockaddr *)&from, &fl);
		if (n < 0)
			continue;
		got++;
		back += sendto(s, b, (size_t)n, 0, (struct sockaddr *)&from, fl) == n;
	}
	printf("VHD-RESULT udp-echo %s echoed %llu of %llu\n", got && back == got ? "ok" : "fail",
	       (unsigned long long)back, (unsigned long long)got);
	return got && back == got ? 0 : 1;
}

static void fill_stream(uint8_t *b, uint64_t off, size_t len)
{
	for (size_t j = 0; j < len; j++) {
		uint64_t o = off + j, w = o / 8;
		b[j] = (uint8_t)(w >> (8 * (o % 8)));
	}
}

static int tcp_send(const char *ip, const char *port, uint64_t bytes)
{
	struct sockaddr_in a = addr(ip, port);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		printf("VHD-RESULT tcp-send fail connect: %s\n", strerror(errno));
		return 1;
	}
	struct timeval tv = {30, 0};
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	static uint8_t b[65536];
	uint64_t off = 0;
	while (off < bytes) {
		size_t len = bytes - off < sizeof(b) ? (size_t)(bytes - off) : sizeof(b);
		fill_stream(b, off, len);
		size_t done = 0;
		while (done < len) {
			ssize_t n = send(s, b + done, len - done, 0);
			if (n <= 0) {
				printf("VHD-RESULT tcp-send fail after %llu bytes: %s\n", (unsigned long long)(off + done),
				       strerror(errno));
				return 1;
			}
			done += (size_t)n;
		}
		off += len;
	}
	shutdown(s, SHUT_WR);
	char c;
	while (recv(s, &c, 1, 0) > 0) /* until the peer closes: everything was read */
		;
	close(s);
	printf("VHD-RESULT tcp-send ok sent %llu bytes\n", (unsigned long long)bytes);
	return 0;
}

static int tcp_recv(const char *port, uint64_t bytes)
{
	struct sockaddr_in a = addr(NULL, port);
	int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 1) < 0) {
		printf("VHD-RESULT tcp-recv fail listen: %s\n", strerror(errno));
		return 1;
	}
	printf("VHD-READY tcp-recv %s\n", port);
	fflush(stdout);
	/* Bounded, so that a peer that never connects fails the test instead of hanging the guest. */
	struct pollfd p = {.fd = s, .events = POLLIN};
	int c = poll(&p, 1, 60000) == 1 ? accept(s, NULL, NULL) : (errno = ETIMEDOUT, -1);
	if (c < 0) {
		printf("VHD-RESULT tcp-recv fail accept: %s\n", strerror(errno));
		return 1;
	}
	struct timeval tv = {30, 0}; /* a stalled stream fails rather than hangs */
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	static uint8_t b[65536], want[65536];
	uint64_t off = 0, first_bad = UINT64_MAX;
	for (;;) {
		ssize_t n = recv(c, b, sizeof(b), 0);
		if (n <= 0)
			break;
		if (first_bad == UINT64_MAX) {
			fill_stream(want, off, (size_t)n);
			if (memcmp(b, want, (size_t)n))
				for (ssize_t j = 0; j < n; j++)
					if (b[j] != want[j]) {
						first_bad = off + (uint64_t)j;
						break;
					}
		}
		off += (uint64_t)n;
	}
	close(c);
	bool ok = off == bytes && first_bad == UINT64_MAX;
	printf("VHD-RESULT tcp-recv %s received %llu of %llu bytes, first bad byte %lld\n", ok ? "ok" : "fail",
	       (unsigned long long)off, (unsigned long long)bytes,
	       first_bad == UINT64_MAX ? -1LL : (long long)first_bad);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if ((argc == 5 || argc == 6) && !strcmp(argv[1], "udp-send"))
		return udp_send(argv[2], argv[3], strtoull(argv[4], NULL, 0), argc == 6 ? (unsigned)atoi(argv[5]) : 0);
	if (argc == 5 && !strcmp(argv[1], "udp-recv"))
		return udp_recv(argv[2], strtoull(argv[3], NULL, 0), atoi(argv[4]));
	if (argc == 4 && !strcmp(argv[1], "udp-echo"))
		return udp_echo(argv[2], atoi(argv[3]));
	if (argc == 5 && !strcmp(argv[1], "tcp-send"))
		return tcp_send(argv[2], argv[3], strtoull(argv[4], NULL, 0));
	if (argc == 4 && !strcmp(argv[1], "tcp-recv"))
		return tcp_recv(argv[2], strtoull(argv[3], NULL, 0));
	fprintf(stderr, "usage: nettool udp-send IP PORT COUNT [PPS] | udp-recv PORT COUNT MS | tcp-send IP PORT BYTES | "
			"tcp-recv PORT BYTES\n");
	return 2;
}
