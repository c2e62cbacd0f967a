/* SPDX-License-Identifier: MIT */
/* The vhost-user transport of the frontend: each op is one front-end message, acknowledged when it can be. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "spec/virtio_config.h"
#include "transport.h"
#include "vhost_user/msg.h"
#include "vhostd/log.h"

static struct vhu_msg mk(uint32_t req, uint32_t size)
{
	struct vhu_msg m;
	memset(&m.hdr, 0, sizeof(m.hdr));
	memset(&m.p, 0, sizeof(m.p));
	m.hdr.request = req;
	m.hdr.flags = VHOST_USER_VERSION;
	m.hdr.size = size;
	m.nfds = 0;
	return m;
}

/* Wait for and read the reply to req; the back-end is hostile too, so size and flags are checked. */
static int recv_reply(struct vhd_fe_transport *t, uint32_t req, struct vhu_msg *r, uint32_t want_size)
{
	struct pollfd p = {.fd = t->fd, .events = POLLIN};
	int pr = poll(&p, 1, (int)t->timeout_ms);
	if (pr == 0) {
		vhd_log(VHD_LOG_ERR, "%s: no reply to %s within %u ms", t->name, vhu_req_info(req)->name, t->timeout_ms);
		return -ETIMEDOUT;
	}
	if (pr < 0)
		return -errno;
	int rc = vhu_msg_recv(t->fd, r);
	if (rc < 0)
		return rc;
	vhu_msg_close_fds(r); /* no reply we ask for carries fds */
	if (r->hdr.request != req || !(r->hdr.flags & VHOST_USER_REPLY_MASK) || r->hdr.size != want_size) {
		vhd_log(VHD_LOG_ERR, "%s: bad reply to %s (request %u, flags 0x%x, size %u)", t->name,
			vhu_req_info(req)->name, r->hdr.request, r->hdr.flags, r->hdr.size);
		return -EPROTO;
	}
	return 0;
}

/* Send a request that has no reply of its own; with REPLY_ACK, wait for the acknowledgement. */
static int send_set(struct vhd_fe_transport *t, struct vhu_msg *m)
{
	bool ack = t->protocol & VHD_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK);
	if (ack)
		m->hdr.flags |= VHOST_USER_NEED_REPLY;
	int rc = vhu_msg_send(t->fd, m);
	if (rc < 0 || !ack)
		return rc;
	struct vhu_msg r;
	rc = recv_reply(t, m->hdr.request, &r, 8);
	if (rc < 0)
		return rc;
	if (r.p.u64 != 0) {
		vhd_log(VHD_LOG_ERR, "%s: back-end refused %s", t->name, vhu_req_info(m->hdr.request)->name);
		return -EREMOTEIO;
	}
	return 0;
}

static int get_u64(struct vhd_fe_transport *t, uint32_t req, uint64_t *v)
{
	struct vhu_msg m = mk(req, 0), r;
	int rc = vhu_msg_send(t->fd, &m);
	if (rc == 0)
		rc = recv_reply(t, req, &r, 8);
	if (rc == 0)
		*v = r.p.u64;
	return rc;
}

static int set_u64(struct vhd_fe_transport *t, uint32_t req, uint64_t v)
{
	struct vhu_msg m = mk(req, 8);
	m.p.u64 = v;
	return send_set(t, &m);
}

static int vu_get_features(struct vhd_fe_transport *t, uint64_t *f)
{
	return get_u64(t, VHOST_USER_GET_FEATURES, f);
}

static int vu_set_features(struct vhd_fe_transport *t, uint64_t f)
{
	return set_u64(t, VHOST_USER_SET_FEATURES, f);
}

static int vu_negotiate_protocol(struct vhd_fe_transport *t, uint64_t wanted, uint64_t *got)
{
	uint64_t offered;
	int rc = get_u64(t, VHOST_USER_GET_PROTOCOL_FEATURES, &offered);
	if (rc < 0)
		return rc;
	*got = offered & wanted;
	/* This message itself goes without REPLY_ACK: it is what turns REPLY_ACK on. */
	rc = set_u64(t, VHOST_USER_SET_PROTOCOL_FEATURES, *got);
	if (rc == 0)
		t->protocol = *got;
	return rc;
}

static int vu_get_queue_num(struct vhd_fe_transport *t, uint64_t *pairs)
{
	return get_u64(t, VHOST_USER_GET_QUEUE_NUM, pairs);
}

static int vu_set_owner(struct vhd_fe_transport *t)
{
	struct vhu_msg m = mk(VHOST_USER_SET_OWNER, 0);
	return send_set(t, &m);
}

static int vu_set_mem_table(struct vhd_fe_transport *t, const struct vhd_fe_region *r, unsigned n)
{
	if (n > VHOST_MEMORY_BASELINE_NREGIONS)
		return -E2BIG;
	struct vhu_msg m = mk(VHOST_USER_SET_MEM_TABLE, 8 + n * (uint32_t)sizeof(struct vhost_user_memory_region));
	m.p.memory.nregions = n;
	for (unsigned i = 0; i < n; i++) {
		m.p.memory.regions[i] = (struct vhost_user_memory_region){r[i].addr, r[i].size, r[i].addr, r[i].fd_offset};
		m.fds[i] = r[i].fd;
	}
	m.nfds = n;
	return send_set(t, &m);
}

static int vring_state(struct vhd_fe_transport *t, uint32_t req, unsigned q, unsigned num)
{
	struct vhu_msg m = mk(req, 8);
	m.p.state = (struct vhost_vring_state){q, num};
	return send_set(t, &m);
}

static int vu_set_vring_num(struct vhd_fe_transport *t, unsigned q, unsigned num)
{
	return vring_state(t, VHOST_USER_SET_VRING_NUM, q, num);
}

static int vu_set_vring_base(struct vhd_fe_transport *t, unsigned q, unsigned base)
{
	return vring_state(t, VHOST_USER_SET_VRING_BASE, q, base);
}

static int vu_set_vring_enable(struct vhd_fe_transport *t, unsigned q, bool on)
{
	return vring_state(t, VHOST_USER_SET_VRING_ENABLE, q, on);
}

static int vu_get_vring_base(struct vhd_fe_transport *t, unsigned q, unsigned *base)
{
	struct vhu_msg m = mk(VHOST_USER_GET_VRING_BASE, 8), r;
	m.p.state.index = q;
	int rc = vhu_msg_send(t->fd, &m);
	if (rc == 0)
		rc = recv_reply(t, VHOST_USER_GET_VRING_BASE, &r, 8);
	if (rc == 0)
		*base = r.p.state.num;
	return rc;
}

static int vu_set_vring_addr(struct vhd_fe_transport *t, unsigned q, uint64_t desc, uint64_t avail, uint64_t used)
{
	struct vhu_msg m = mk(VHOST_USER_SET_VRING_ADDR, sizeof(struct vhost_vring_addr));
	m.p.addr = (struct vhost_vring_addr){.index = q, .desc_user_addr = desc, .avail_user_addr = avail,
					     .used_user_addr = used};
	return send_set(t, &m);
}

static int vring_fd(struct vhd_fe_transport *t, uint32_t req, unsigned q, int fd)
{
	struct vhu_msg m = mk(req, 8);
	m.p.u64 = q & VHOST_USER_VRING_IDX_MASK;
	if (fd < 0) {
		m.p.u64 |= VHOST_USER_VRING_NOFD;
	} else {
		m.fds[0] = fd;
		m.nfds = 1;
	}
	return send_set(t, &m);
}

static int vu_set_vring_kick(struct vhd_fe_transport *t, unsigned q, int fd)
{
	return vring_fd(t, VHOST_USER_SET_VRING_KICK, q, fd);
}

static int vu_set_vring_call(struct vhd_fe_transport *t, unsigned q, int fd)
{
	return vring_fd(t, VHOST_USER_SET_VRING_CALL, q, fd);
}

static int vu_set_status(struct vhd_fe_transport *t, uint8_t status)
{
	if (!(t->protocol & VHD_BIT(VHOST_USER_PROTOCOL_F_STATUS)))
		return 0;
	return set_u64(t, VHOST_USER_SET_STATUS, status);
}

static void vu_close(struct vhd_fe_transport *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
}

static const struct vhd_fe_transport_ops vu_ops = {
	.name = "vhost-user",
	.get_features = vu_get_features,
	.set_features = vu_set_features,
	.negotiate_protocol = vu_negotiate_protocol,
	.get_queue_num = vu_get_queue_num,
	.set_owner = vu_set_owner,
	.set_mem_table = vu_set_mem_table,
	.set_vring_num = vu_set_vring_num,
	.set_vring_base = vu_set_vring_base,
	.get_vring_base = vu_get_vring_base,
	.set_vring_addr = vu_set_vring_addr,
	.set_vring_kick = vu_set_vring_kick,
	.set_vring_call = vu_set_vring_call,
	.set_vring_enable = vu_set_vring_enable,
	.set_status = vu_set_status,
	.close = vu_close,
};

void vhd_fe_vu_transport_init(struct vhd_fe_transport *t, int sock, const char *name)
{
	t->ops = &vu_ops;
	t->fd = sock;
	t->protocol = 0;
	t->timeout_ms = 2000;
	t->name = name;
}
