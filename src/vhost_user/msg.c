/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "msg.h"
#include "util/fdio.h"

#define SZ(field) (uint32_t)sizeof(((union vhost_user_payload *)0)->field)

static const struct vhu_req_info infos[VHOST_USER_REQUEST_MAX] = {
	[VHOST_USER_GET_FEATURES] = {"GET_FEATURES", 0, 0, 0, true},
	[VHOST_USER_SET_FEATURES] = {"SET_FEATURES", SZ(u64), 0, 0, true},
	[VHOST_USER_SET_OWNER] = {"SET_OWNER", 0, 0, 0, true},
	[VHOST_USER_RESET_OWNER] = {"RESET_OWNER", 0, 0, 0, true},
	/* nregions decides the real size and fd count; vhu_msg_validate() checks those. */
	[VHOST_USER_SET_MEM_TABLE] = {"SET_MEM_TABLE", 8, 0, VHOST_MEMORY_BASELINE_NREGIONS, true},
	[VHOST_USER_SET_LOG_BASE] = {"SET_LOG_BASE", SZ(log), 1, 1, true},
	[VHOST_USER_SET_LOG_FD] = {"SET_LOG_FD", 0, 1, 1, true},
	[VHOST_USER_SET_VRING_NUM] = {"SET_VRING_NUM", SZ(state), 0, 0, true},
	[VHOST_USER_SET_VRING_ADDR] = {"SET_VRING_ADDR", SZ(addr), 0, 0, true},
	[VHOST_USER_SET_VRING_BASE] = {"SET_VRING_BASE", SZ(state), 0, 0, true},
	[VHOST_USER_GET_VRING_BASE] = {"GET_VRING_BASE", SZ(state), 0, 0, true},
	/* The NOFD bit decides whether the fd is there; vhu_msg_validate() checks it. */
	[VHOST_USER_SET_VRING_KICK] = {"SET_VRING_KICK", SZ(u64), 0, 1, true},
	[VHOST_USER_SET_VRING_CALL] = {"SET_VRING_CALL", SZ(u64), 0, 1, true},
	[VHOST_USER_SET_VRING_ERR] = {"SET_VRING_ERR", SZ(u64), 0, 1, true},
	[VHOST_USER_GET_PROTOCOL_FEATURES] = {"GET_PROTOCOL_FEATURES", 0, 0, 0, true},
	[VHOST_USER_SET_PROTOCOL_FEATURES] = {"SET_PROTOCOL_FEATURES", SZ(u64), 0, 0, true},
	[VHOST_USER_GET_QUEUE_NUM] = {"GET_QUEUE_NUM", 0, 0, 0, true},
	[VHOST_USER_SET_VRING_ENABLE] = {"SET_VRING_ENABLE", SZ(state), 0, 0, true},
	[VHOST_USER_SEND_RARP] = {"SEND_RARP", SZ(u64), 0, 0, true},
	[VHOST_USER_NET_SET_MTU] = {"NET_SET_MTU", SZ(u64), 0, 0, true},
	[VHOST_USER_SET_BACKEND_REQ_FD] = {"SET_BACKEND_REQ_FD", 0, 1, 1, true},
	[VHOST_USER_IOTLB_MSG] = {"IOTLB_MSG", SZ(iotlb), 0, 0, true},
	[VHOST_USER_SET_VRING_ENDIAN] = {"SET_VRING_ENDIAN", SZ(state), 0, 0, true},
	/* config.size decides the real size; vhu_msg_validate() checks it. */
	[VHOST_USER_GET_CONFIG] = {"GET_CONFIG", 12, 0, 0, true},
	[VHOST_USER_SET_CONFIG] = {"SET_CONFIG", 12, 0, 0, true},
	[VHOST_USER_CREATE_CRYPTO_SESSION] = {"CREATE_CRYPTO_SESSION", 0, 0, 0, true},
	[VHOST_USER_CLOSE_CRYPTO_SESSION] = {"CLOSE_CRYPTO_SESSION", SZ(u64), 0, 0, true},
	[VHOST_USER_POSTCOPY_ADVISE] = {"POSTCOPY_ADVISE", 0, 0, 0, true},
	[VHOST_USER_POSTCOPY_LISTEN] = {"POSTCOPY_LISTEN", 0, 0, 0, true},
	[VHOST_USER_POSTCOPY_END] = {"POSTCOPY_END", 0, 0, 0, true},
	[VHOST_USER_GET_INFLIGHT_FD] = {"GET_INFLIGHT_FD", SZ(inflight), 0, 0, true},
	[VHOST_USER_SET_INFLIGHT_FD] = {"SET_INFLIGHT_FD", SZ(inflight), 1, 1, true},
	[VHOST_USER_GPU_SET_SOCKET] = {"GPU_SET_SOCKET", 0, 1, 1, true},
	[VHOST_USER_RESET_DEVICE] = {"RESET_DEVICE", 0, 0, 0, true},
	[VHOST_USER_VRING_KICK] = {"VRING_KICK", SZ(state), 0, 0, true},
	[VHOST_USER_GET_MAX_MEM_SLOTS] = {"GET_MAX_MEM_SLOTS", 0, 0, 0, true},
	[VHOST_USER_ADD_MEM_REG] = {"ADD_MEM_REG", SZ(mem_reg), 1, 1, true},
	/* QEMU attaches the region's fd to REM_MEM_REG too; it is not needed and gets closed. */
	[VHOST_USER_REM_MEM_REG] = {"REM_MEM_REG", SZ(mem_reg), 0, 1, true},
	[VHOST_USER_SET_STATUS] = {"SET_STATUS", SZ(u64), 0, 0, true},
	[VHOST_USER_GET_STATUS] = {"GET_STATUS", 0, 0, 0, true},
	[VHOST_USER_GET_SHARED_OBJECT] = {"GET_SHARED_OBJECT", 0, 0, 0, true},
	[VHOST_USER_SET_DEVICE_STATE_FD] = {"SET_DEVICE_STATE_FD", 8, 1, 1, true},
	[VHOST_USER_CHECK_DEVICE_STATE] = {"CHECK_DEVICE_STATE", 0, 0, 0, true},
};

static const struct vhu_req_info unknown = {"unknown", 0, 0, 0, false};

const struct vhu_req_info *vhu_req_info(uint32_t request)
{
	if (request >= VHOST_USER_REQUEST_MAX || !infos[request].known)
		return &unknown;
	return &infos[request];
}

static void close_all(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* Control-message room for one fd more than a message may carry, so an over-long list shows up. */
typedef VHDI_FD_CTL(VHOST_USER_MAX_FDS + 1) fd_ctl;

void vhu_msg_close_fds(struct vhu_msg *m)
{
	close_all(m->fds, m->nfds);
	m->nfds = 0;
}

int vhu_msg_take_fd(struct vhu_msg *m, unsigned i)
{
	if (i >= m->nfds)
		return -1;
	int fd = m->fds[i];
	m->fds[i] = -1;
	return fd;
}

/* Read exactly len bytes (the payload follows the header in the stream). */
static int read_full(int sock, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t r = recv(sock, (char *)buf + got, len - got, MSG_WAITALL);
		if (r == 0)
			return -ECONNRESET;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)r;
	}
	return 0;
}

int vhu_msg_recv(int sock, struct vhu_msg *m)
{
	/* Room for one more fd than allowed, so an over-long fd list shows up as MSG_CTRUNC or a count we reject. */
	fd_ctl ctl;
	struct iovec iov = {.iov_base = &m->hdr, .iov_len = sizeof(m->hdr)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
	m->nfds = 0;
	ssize_t r;
	do {
		r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
	} while (r < 0 && errno == EINTR);
	if (r == 0)
		return -ECONNRESET;
	if (r < 0)
		return -errno;

	/* Collect every fd first so that each error path below can close them all. */
	int got[VHOST_USER_MAX_FDS + 1];
	unsigned ngot = 0;
	vhdi_fds_take(&mh, got, &ngot, VHOST_USER_MAX_FDS + 1);
	if ((size_t)r < sizeof(m->hdr)) {
		close_all(got, ngot);
		return -ECONNRESET;
	}
	if ((mh.msg_flags & MSG_CTRUNC) || ngot > VHOST_USER_MAX_FDS) {
		close_all(got, ngot);
		/* The payload is still in the stream: drain it so the connection stays in step. */
		if (m->hdr.size <= sizeof(m->p))
			read_full(sock, &m->p, m->hdr.size);
		return -EBADMSG;
	}
	if ((m->hdr.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION || m->hdr.size > sizeof(m->p)) {
		close_all(got, ngot);
		return -EPROTO;
	}
	int rc = read_full(sock, &m->p, m->hdr.size);
	if (rc < 0) {
		close_all(got, ngot);
		return rc;
	}
	/* Bytes past what the peer sent must not look like data from an earlier message. */
	memset((char *)&m->p + m->hdr.size, 0, sizeof(m->p) - m->hdr.size);
	memcpy(m->fds, got, ngot * sizeof(int));
	m->nfds = ngot;
	return 0;
}

int vhu_msg_validate(struct vhu_msg *m, const char **why)
{
	const struct vhu_req_info *ri = vhu_req_info(m->hdr.request);
	unsigned max_fds = ri->max_fds;
	*why = NULL;
	if (m->hdr.size < ri->min_size)
		*why = "payload shorter than the request's type";
	switch (m->hdr.request) {
	case VHOST_USER_SET_MEM_TABLE:
		if (*why)
			break;
		if (m->p.memory.nregions > VHOST_MEMORY_BASELINE_NREGIONS)
			*why = "more memory regions than the message can hold";
		else if (m->hdr.size < 8 + m->p.memory.nregions * sizeof(struct vhost_user_memory_region))
			*why = "payload shorter than its regions";
		else if (m->nfds != m->p.memory.nregions)
			*why = "fd count differs from the region count";
		break;
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
		if (*why)
			break;
		if (m->p.u64 & VHOST_USER_VRING_NOFD)
			max_fds = 0; /* an fd sent anyway is surplus and closed below */
		else if (m->nfds < 1)
			*why = "no fd and no NOFD flag";
		break;
	case VHOST_USER_GET_CONFIG:
	case VHOST_USER_SET_CONFIG:
		if (*why)
			break;
		if (m->p.config.size > VHOST_USER_MAX_CONFIG_SIZE ||
		    m->hdr.size < 12 + m->p.config.size)
			*why = "config size beyond the payload";
		break;
	default:
		if (!*why && m->nfds < ri->min_fds)
			*why = "fd missing";
		break;
	}
	/* Surplus fds: close them so no path can leak them. */
	if (m->nfds > max_fds) {
		close_all(m->fds + max_fds, m->nfds - max_fds);
		m->nfds = max_fds;
	}
	return *why ? -EINVAL : 0;
}

int vhu_msg_send(int sock, const struct vhu_msg *m)
{
	if (m->hdr.size > sizeof(m->p) || m->nfds > VHOST_USER_MAX_FDS)
		return -EINVAL;
	fd_ctl ctl;
	struct iovec iov[2] = {{(void *)&m->hdr, sizeof(m->hdr)}, {(void *)&m->p, m->hdr.size}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = m->hdr.size ? 2 : 1};
	vhdi_fds_attach(&mh, ctl.buf, m->fds, m->nfds);
	size_t total = sizeof(m->hdr) + m->hdr.size, sent = 0;
	while (sent < total) {
		ssize_t r = sendmsg(sock, &mh, MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		sent += (size_t)r;
		if (sent >= total)
			break;
		/* Short write: continue with the rest, without the fds (already sent). */
		mh.msg_control = NULL;
		mh.msg_controllen = 0;
		size_t skip = (size_t)r;
		while (skip && mh.msg_iovlen) {
			if (skip >= mh.msg_iov[0].iov_len) {
				skip -= mh.msg_iov[0].iov_len;
				mh.msg_iov++;
				mh.msg_iovlen--;
			} else {
				mh.msg_iov[0].iov_base = (char *)mh.msg_iov[0].iov_base + skip;
				mh.msg_iov[0].iov_len -= skip;
				skip = 0;
			}
		}
	}
	return 0;
}

/* ---------------------------------------------------------------- non-blocking connection I/O */

void vhu_now(struct timespec *t)
{
	clock_gettime(CLOCK_MONOTONIC, t);
}

long long vhu_ms_since(const struct timespec *t)
{
	struct timespec now;
	vhu_now(&now);
	return (long long)(now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

void vhu_io_init(struct vhu_io *io, int fd)
{
	memset(io, 0, sizeof(*io));
	io->fd = fd;
	io->in.nfds = 0;
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void out_drop_head(struct vhu_io *io)
{
	struct vhu_io_out *o = &io->out[io->out_head];
	close_all(o->fds, o->nfds);
	o->nfds = 0;
	io->out_head = (io->out_head + 1) % VHU_IO_QUEUE;
	io->out_n--;
}

static void in_reset(struct vhu_io *io)
{
	vhu_msg_close_fds(&io->in);
	io->in_got = 0;
	io->in_fds_cut = false;
}

void vhu_io_close(struct vhu_io *io)
{
	in_reset(io);
	while (io->out_n)
		out_drop_head(io);
	if (io->fd >= 0)
		close(io->fd);
	io->fd = -1;
}

bool vhu_io_out_pending(const struct vhu_io *io)
{
	return io->out_n != 0;
}

short vhu_io_events(const struct vhu_io *io)
{
	return io->out_n ? POLLOUT : POLLIN;
}

int vhu_io_recv(struct vhu_io *io, struct vhu_msg *m)
{
	const size_t hsz = sizeof(io->in.hdr);
	/* Each pass reads at most the rest of the header or of the payload; the loop ends at EAGAIN, at the end
	 * of the message, or on an error, and a message is at most hsz + sizeof(payload) bytes long. */
	for (;;) {
		if (io->in_got >= hsz && io->in_got - hsz == io->in.hdr.size) {
			bool cut = io->in_fds_cut;
			m->hdr = io->in.hdr;
			memcpy(&m->p, &io->in.p, io->in.hdr.size);
			/* Bytes past what the peer sent must not look like data from an earlier message. */
			memset((char *)&m->p + io->in.hdr.size, 0, sizeof(m->p) - io->in.hdr.size);
			memcpy(m->fds, io->in.fds, io->in.nfds * sizeof(int));
			m->nfds = io->in.nfds;
			io->in.nfds = 0;
			io->in_got = 0;
			io->in_fds_cut = false;
			if (cut) {
				vhu_msg_close_fds(m);
				return -EBADMSG;
			}
			return 0;
		}
		void *dst;
		size_t want;
		if (io->in_got < hsz) {
			dst = (char *)&io->in.hdr + io->in_got;
			want = hsz - io->in_got;
		} else {
			size_t off = io->in_got - hsz;
			dst = (char *)&io->in.p + off;
			want = io->in.hdr.size - off;
		}
		fd_ctl ctl;
		struct iovec iov = {.iov_base = dst, .iov_len = want};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
				    .msg_controllen = sizeof(ctl.buf)};
		ssize_t r = recvmsg(io->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (r < 0 && errno == EINTR)
			continue;
		/* Fds first, so that no return below can leave one open. */
		if (r > 0 && (!vhdi_fds_take(&mh, io->in.fds, &io->in.nfds, VHOST_USER_MAX_FDS) ||
			      (mh.msg_flags & MSG_CTRUNC)))
			io->in_fds_cut = true;
		if (r == 0) {
			in_reset(io);
			return -ECONNRESET;
		}
		if (r < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
		if (io->in_got == 0)
			vhu_now(&io->in_since);
		io->in_got += (size_t)r;
		if (io->in_got == hsz &&
		    ((io->in.hdr.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION || io->in.hdr.size > sizeof(io->in.p))) {
			m->hdr = io->in.hdr;
			m->nfds = 0;
			in_reset(io);
			return -EPROTO;
		}
	}
}

int vhu_io_flush(struct vhu_io *io)
{
	/* Each pass writes part of the head message or the rest of it; the loop ends at EAGAIN or an empty queue. */
	while (io->out_n) {
		struct vhu_io_out *o = &io->out[io->out_head];
		size_t total = sizeof(o->hdr) + o->hdr.size, hsz = sizeof(o->hdr);
		struct iovec iov[2];
		int niov = 0;
		if (o->off < hsz)
			iov[niov++] = (struct iovec){(char *)&o->hdr + o->off, hsz - o->off};
		if (o->hdr.size) {
			size_t poff = o->off > hsz ? o->off - hsz : 0;
			iov[niov++] = (struct iovec){(char *)&o->p + poff, o->hdr.size - poff};
		}
		fd_ctl ctl;
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)niov};
		vhdi_fds_attach(&mh, ctl.buf, o->fds, o->nfds);
		ssize_t r = sendmsg(io->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
		}
		/* The fds went with the first byte written: the peer has its own copies now. */
		close_all(o->fds, o->nfds);
		o->nfds = 0;
		o->off += (size_t)r;
		if (o->off >= total)
			out_drop_head(io);
	}
	return 0;
}

int vhu_io_send(struct vhu_io *io, const struct vhu_msg *m)
{
	if (m->hdr.size > sizeof(m->p) || m->nfds > VHOST_USER_MAX_FDS)
		return -EINVAL;
	if (io->fd < 0)
		return -ENOTCONN;
	if (io->out_n == VHU_IO_QUEUE)
		return -ENOBUFS;
	struct vhu_io_out *o = &io->out[(io->out_head + io->out_n) % VHU_IO_QUEUE];
	o->nfds = 0;
	for (unsigned i = 0; i < m->nfds; i++) {
		int fd = fcntl(m->fds[i], F_DUPFD_CLOEXEC, 0);
		if (fd < 0) {
			int rc = -errno;
			close_all(o->fds, o->nfds);
			o->nfds = 0;
			return rc;
		}
		o->fds[o->nfds++] = fd;
	}
	o->hdr = m->hdr;
	memcpy(&o->p, &m->p, m->hdr.size);
	o->off = 0;
	vhu_now(&o->queued);
	io->out_n++;
	int rc = vhu_io_flush(io);
	return rc == -EAGAIN ? 0 : rc;
}

int vhu_io_timeout_ms(const struct vhu_io *io, unsigned limit_ms)
{
	long long waited = -1;
	if (io->in_got)
		waited = vhu_ms_since(&io->in_since);
	if (io->out_n) {
		long long w = vhu_ms_since(&io->out[io->out_head].queued);
		if (w > waited)
			waited = w;
	}
	if (waited < 0)
		return -1;
	/* Rounded up by one so that a poll() that wakes at the deadline finds it passed, not 0 ms short. */
	return waited >= limit_ms ? 0 : (int)(limit_ms - waited + 1);
}

const char *vhu_io_expired(const struct vhu_io *io, unsigned limit_ms, char *buf, size_t len)
{
	const size_t hsz = sizeof(io->in.hdr);
	if (io->in_got && vhu_ms_since(&io->in_since) >= limit_ms) {
		if (io->in_got < hsz)
			snprintf(buf, len, "sent %zu of a message header's %zu bytes, then nothing more for %u ms",
				 io->in_got, hsz, limit_ms);
		else
			snprintf(buf, len, "sent %s (%u) with %zu of its %u payload bytes, then nothing more for %u ms",
				 vhu_req_info(io->in.hdr.request)->name, io->in.hdr.request, io->in_got - hsz,
				 io->in.hdr.size, limit_ms);
		return buf;
	}
	if (io->out_n && vhu_ms_since(&io->out[io->out_head].queued) >= limit_ms) {
		const struct vhu_io_out *o = &io->out[io->out_head];
		snprintf(buf, len, "did not read what we sent for %u ms (%u message%s queued, the oldest %s with %zu of "
			 "%zu bytes written)", limit_ms, io->out_n, io->out_n == 1 ? "" : "s",
			 vhu_req_info(o->hdr.request)->name, o->off, sizeof(o->hdr) + o->hdr.size);
		return buf;
	}
	return NULL;
}
