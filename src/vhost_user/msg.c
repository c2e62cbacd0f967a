/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "msg.h"

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
	union {
		char buf[CMSG_SPACE(sizeof(int) * (VHOST_USER_MAX_FDS + 1))];
		struct cmsghdr align;
	} ctl;
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
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0))
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (ngot < VHOST_USER_MAX_FDS + 1)
				got[ngot++] = fd;
			else
				close(fd);
		}
	}
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
	union {
		char buf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov[2] = {{(void *)&m->hdr, sizeof(m->hdr)}, {(void *)&m->p, m->hdr.size}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = m->hdr.size ? 2 : 1};
	if (m->nfds) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * m->nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * m->nfds);
		memcpy(CMSG_DATA(c), m->fds, sizeof(int) * m->nfds);
	}
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
