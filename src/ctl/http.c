/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ctl/http.h"
#include "vhostd/log.h"

#define ACCEPT_BURST 16

struct http_client {
	int fd;
	uint64_t deadline_ms;
	size_t in_len;
	char in[SW_HTTP_REQ_MAX];
	char *out; /* the whole answer once the request is complete, NULL before */
	size_t out_len, out_off;
};

struct sw_http {
	int lfd;
	char *path, *ctype;
	sw_http_render_fn render;
	void *opaque;
	char addr[64];
	unsigned nclients;
	struct http_client *clients[SW_HTTP_MAX_CLIENTS];
	bool full_logged;
	int spare_fd; /* given up to refuse a connection when out of fds (see accept_clients) */
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* "IPV4:PORT" or "[IPV6]:PORT" into sa; 0 or -EINVAL with err. */
static int parse_addr(const char *addr, struct sockaddr_storage *sa, socklen_t *salen, char *err, size_t errlen)
{
	char host[64];
	const char *port;
	bool v6 = addr[0] == '[';
	if (v6) {
		const char *close = strchr(addr, ']');
		if (!close || close[1] != ':' || (size_t)(close - addr - 1) >= sizeof(host)) {
			snprintf(err, errlen, "metrics address '%s': want IPV4:PORT or [IPV6]:PORT", addr);
			return -EINVAL;
		}
		memcpy(host, addr + 1, (size_t)(close - addr - 1));
		host[close - addr - 1] = '\0';
		port = close + 2;
	} else {
		const char *colon = strrchr(addr, ':');
		if (!colon || (size_t)(colon - addr) >= sizeof(host)) {
			snprintf(err, errlen, "metrics address '%s': want IPV4:PORT or [IPV6]:PORT", addr);
			return -EINVAL;
		}
		memcpy(host, addr, (size_t)(colon - addr));
		host[colon - addr] = '\0';
		port = colon + 1;
	}
	char *end;
	unsigned long p = strtoul(port, &end, 10);
	if (!port[0] || *end || p > 65535 || port[0] == '-' || port[0] == '+') {
		snprintf(err, errlen, "metrics address '%s': port '%s' is not 0..65535", addr, port);
		return -EINVAL;
	}
	memset(sa, 0, sizeof(*sa));
	if (v6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)p);
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
			snprintf(err, errlen, "metrics address '%s': '%s' is not an IPv6 address", addr, host);
			return -EINVAL;
		}
		*salen = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)p);
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
			snprintf(err, errlen, "metrics address '%s': '%s' is not an IPv4 address", addr, host);
			return -EINVAL;
		}
		*salen = sizeof(*s4);
	}
	return 0;
}

static void name_addr(struct sw_http *h, const struct sockaddr_storage *sa);

int sw_http_listen(const char *addr, const char *path, const char *content_type, sw_http_render_fn render,
		   void *opaque, struct sw_http **out, char *err, size_t errlen)
{
	struct sockaddr_storage sa;
	socklen_t salen;
	*out = NULL;
	int rc = parse_addr(addr, &sa, &salen, err, errlen);
	if (rc)
		return rc;
	struct sw_http *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->spare_fd = -1;
	h->render = render;
	h->opaque = opaque;
	h->path = strdup(path);
	h->ctype = strdup(content_type);
	h->lfd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (!h->path || !h->ctype || h->lfd < 0) {
		rc = h->lfd < 0 ? -errno : -ENOMEM;
		goto fail;
	}
	int one = 1;
	setsockopt(h->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa.ss_family == AF_INET6)
		setsockopt(h->lfd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(h->lfd, (struct sockaddr *)&sa, salen) < 0 || listen(h->lfd, 16) < 0 ||
	    getsockname(h->lfd, (struct sockaddr *)&sa, &salen) < 0) {
		rc = -errno;
		snprintf(err, errlen, "metrics address %s: %s", addr, strerror(-rc));
		goto fail;
	}
	name_addr(h, &sa);
	h->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	*out = h;
	return 0;
fail:
	if (h->lfd >= 0)
		close(h->lfd);
	free(h->path);
	free(h->ctype);
	free(h);
	return rc;
}

int sw_http_fd(const struct sw_http *h)
{
	return h->lfd;
}

int sw_http_adopt(int fd, const char *path, const char *content_type, sw_http_render_fn render, void *opaque,
		  struct sw_http **out)
{
	struct sockaddr_storage sa;
	socklen_t salen = sizeof(sa);
	int acc = 0;
	socklen_t alen = sizeof(acc);
	struct sw_http *h = NULL;
	int rc = getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen) < 0 || !acc ||
			 getsockname(fd, (struct sockaddr *)&sa, &salen) < 0 ||
			 (sa.ss_family != AF_INET && sa.ss_family != AF_INET6)
		 ? -EINVAL
		 : 0;
	if (rc == 0 && !(h = calloc(1, sizeof(*h))))
		rc = -ENOMEM;
	if (rc == 0) {
		h->path = strdup(path);
		h->ctype = strdup(content_type);
		if (!h->path || !h->ctype) {
			free(h->path);
			free(h->ctype);
			free(h);
			rc = -ENOMEM;
		}
	}
	if (rc < 0) {
		close(fd);
		return rc;
	}
	h->lfd = fd;
	h->render = render;
	h->opaque = opaque;
	name_addr(h, &sa);
	h->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	*out = h;
	return 0;
}

/* "IP:PORT" or "[IP]:PORT" of sa into h->addr. */
static void name_addr(struct sw_http *h, const struct sockaddr_storage *sa_)
{
	const struct sockaddr_storage sa = *sa_;
	char ip[INET6_ADDRSTRLEN];
	if (sa.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(h->addr, sizeof(h->addr), "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&sa;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(h->addr, sizeof(h->addr), "%s:%u", ip, ntohs(s4->sin_port));
	}
}

const char *sw_http_addr(const struct sw_http *h)
{
	return h->addr;
}

static void drop_client(struct sw_http *h, unsigned i)
{
	struct http_client *cl = h->clients[i];
	close(cl->fd);
	free(cl->out);
	free(cl);
	h->clients[i] = h->clients[--h->nclients];
}

/* The answer: status line, headers, body. false: out of memory. */
static bool set_answer(struct sw_http *h, struct http_client *cl, const char *status, const char *ctype,
		       const char *extra, const char *body, size_t body_len)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return false;
	fprintf(f, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n", status,
		ctype, body_len, extra);
	fwrite(body, 1, body_len, f);
	bool ok = !ferror(f);
	if (fclose(f) != 0)
		ok = false;
	if (!ok) {
		free(buf);
		return false;
	}
	(void)h;
	cl->out = buf;
	cl->out_len = len;
	cl->out_off = 0;
	return true;
}

static bool answer_text(struct sw_http *h, struct http_client *cl, const char *status, const char *extra)
{
	char body[96];
	int n = snprintf(body, sizeof(body), "%s\n", status);
	return set_answer(h, cl, status, "text/plain; charset=utf-8", extra, body, (size_t)n);
}

static bool is_tchar(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c)); /* strchr finds the terminator for NUL */
}

/* A complete request is in cl->in (up to its blank line): decide the answer. false: out of memory. */
static bool answer_request(struct sw_http *h, struct http_client *cl)
{
	/* Request line: METHOD SP TARGET SP HTTP/1.x CRLF (a bare LF accepted). */
	char *eol = memchr(cl->in, '\n', cl->in_len);
	size_t ll = (size_t)(eol - cl->in);
	if (ll && cl->in[ll - 1] == '\r')
		ll--;
	const char *line = cl->in;
	const char *sp1 = memchr(line, ' ', ll);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', ll - (size_t)(sp1 + 1 - line)) : NULL;
	bool ok = sp1 && sp2 && sp1 > line && sp2 > sp1 + 1;
	for (const char *p = line; ok && p < sp1; p++)
		ok = is_tchar(*p);
	for (const char *p = sp1 + 1; ok && p < sp2; p++)
		ok = (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f;
	size_t vl = ok ? ll - (size_t)(sp2 + 1 - line) : 0;
	ok = ok && vl == 8 && !memcmp(sp2 + 1, "HTTP/1.", 7) && (sp2[8] == '0' || sp2[8] == '1');
	if (!ok)
		return answer_text(h, cl, "400 Bad Request", "");
	size_t ml = (size_t)(sp1 - line), tl = (size_t)(sp2 - sp1 - 1), pl = strlen(h->path);
	if (ml != 3 || memcmp(line, "GET", 3))
		return answer_text(h, cl, "405 Method Not Allowed", "Allow: GET\r\n");
	if (tl < pl || memcmp(sp1 + 1, h->path, pl) || (tl > pl && sp1[1 + pl] != '?'))
		return answer_text(h, cl, "404 Not Found", "");
	char *body = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&body, &len);
	if (!f)
		return false;
	int rc = h->render(h->opaque, f);
	if (fclose(f) != 0 && rc == 0)
		rc = -ENOMEM;
	bool r = rc == 0 ? set_answer(h, cl, "200 OK", h->ctype, "", body, len)
			 : answer_text(h, cl, "500 Internal Server Error", "");
	free(body);
	return r;
}

/* The end of the headers: a blank line (CRLF CRLF, or bare LFs). */
static bool have_request(const struct http_client *cl)
{
	for (size_t i = 0; i + 1 < cl->in_len; i++)
		if (cl->in[i] == '\n' && (cl->in[i + 1] == '\n' ||
					  (cl->in[i + 1] == '\r' && i + 2 < cl->in_len && cl->in[i + 2] == '\n')))
			return true;
	return false;
}

/* One client's turn. false: drop it (done, gone, or past its deadline). */
static bool serve_client(struct sw_http *h, struct http_client *cl, uint64_t now)
{
	if (now >= cl->deadline_ms)
		return false;
	if (!cl->out) {
		ssize_t r = recv(cl->fd, cl->in + cl->in_len, sizeof(cl->in) - cl->in_len, MSG_DONTWAIT);
		if (r == 0)
			return false; /* closed before a whole request */
		if (r < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
		cl->in_len += (size_t)r;
		if (have_request(cl)) {
			if (!answer_request(h, cl))
				return false;
		} else if (cl->in_len == sizeof(cl->in)) {
			if (!answer_text(h, cl, "431 Request Header Fields Too Large", ""))
				return false;
		} else {
			return true;
		}
	}
	while (cl->out_off < cl->out_len) {
		ssize_t r = send(cl->fd, cl->out + cl->out_off, cl->out_len - cl->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
		cl->out_off += (size_t)r;
	}
	shutdown(cl->fd, SHUT_WR);
	return false; /* all sent: Connection: close */
}

static void accept_clients(struct sw_http *h, uint64_t now)
{
	for (int k = 0; k < ACCEPT_BURST; k++) {
		int fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0 && (errno == EMFILE || errno == ENFILE) && h->spare_fd >= 0) {
			/* Otherwise the pending connection keeps the listener readable and the control loop spins:
			 * free one fd to take it off the queue and close it. */
			close(h->spare_fd);
			fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd >= 0)
				close(fd);
			h->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			vhd_log(VHD_LOG_WARN, "metrics: out of file descriptors, refused a client");
			return;
		}
		if (fd < 0)
			return;
		struct http_client *cl = h->nclients < SW_HTTP_MAX_CLIENTS ? malloc(sizeof(*cl)) : NULL;
		if (!cl) {
			/* Full (or out of memory): refused at once rather than queued behind slow clients. */
			if (!h->full_logged)
				vhd_log(VHD_LOG_WARN, "metrics: more than %d clients at once, refusing (logged once)",
					SW_HTTP_MAX_CLIENTS);
			h->full_logged = true;
			close(fd);
			continue;
		}
		cl->fd = fd;
		cl->deadline_ms = now + SW_HTTP_DEADLINE_MS;
		cl->in_len = 0;
		cl->out = NULL;
		cl->out_len = cl->out_off = 0;
		h->clients[h->nclients++] = cl;
	}
}

unsigned sw_http_pollfds(struct sw_http *h, struct pollfd *fds, unsigned max)
{
	unsigned n = 0;
	if (n < max)
		fds[n++] = (struct pollfd){.fd = h->lfd, .events = POLLIN};
	for (unsigned i = 0; i < h->nclients && n < max; i++)
		fds[n++] = (struct pollfd){.fd = h->clients[i]->fd, .events = h->clients[i]->out ? POLLOUT : POLLIN};
	return n;
}

int sw_http_timeout_ms(struct sw_http *h)
{
	if (!h->nclients)
		return -1;
	uint64_t now = now_ms(), first = UINT64_MAX;
	for (unsigned i = 0; i < h->nclients; i++)
		if (h->clients[i]->deadline_ms < first)
			first = h->clients[i]->deadline_ms;
	return first <= now ? 0 : (int)(first - now);
}

void sw_http_dispatch(struct sw_http *h)
{
	uint64_t now = now_ms();
	for (unsigned i = 0; i < h->nclients;) {
		if (serve_client(h, h->clients[i], now))
			i++;
		else
			drop_client(h, i); /* the last client moved into slot i: served next */
	}
	accept_clients(h, now);
}

void sw_http_destroy(struct sw_http *h)
{
	if (!h)
		return;
	while (h->nclients)
		drop_client(h, h->nclients - 1);
	close(h->lfd);
	if (h->spare_fd >= 0)
		close(h->spare_fd);
	free(h->path);
	free(h->ctype);
	free(h);
}
