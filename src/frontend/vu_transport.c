/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user transport of the frontend. Each step op queues one front-end message on the connection's
 * non-blocking I/O (vhost_user/msg.h) and, when the message has a reply (a GET, or a SET acknowledged under
 * REPLY_ACK), leaves it awaited: progress() matches the reply when it arrives in a later dispatch, checks it
 * as hostile input (request, reply flag, size, no fds, the acknowledgement's status) and enforces the reply
 * deadline. One request is in flight at a time: the next step starts only once the previous one's reply has
 * arrived and its bytes have left, so the output queue never holds more than one message.
 *
 * Protocol features are negotiated inside get_features (GET_FEATURES, then GET_/SET_PROTOCOL_FEATURES when
 * VHOST_USER_F_PROTOCOL_FEATURES is offered, as QEMU does), and everything they switch on (REPLY_ACK,
 * SET_VRING_ENABLE, GET_QUEUE_NUM, SET_STATUS) is decided here, not by the frontend.
 *
 * With t->iommu (a device IOTLB) BACKEND_REQ is asked for too, and set_backend_channel() hands the back-end one
 * end of a socketpair (SET_BACKEND_REQ_FD) on which it sends IOTLB MISS requests. The other end is polled
 * beside the connection; progress() reads the misses, asks the frontend's miss hook for the mapping and
 * queues the UPDATE on the connection without NEED_REPLY, so that answering never waits on the back-end and
 * never collides with the one setup request in flight (the back-end handles messages in order).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "spec/virtio_config.h"
#include "transport.h"
#include "vhost_user/conn.h"
#include "vhost_user/msg.h"
#include "vhostd/log.h"
#include "vhostd/virtq.h"

/* What we ask for: multi-queue, acknowledged set messages, and device status. */
#define VU_WANTED_PROTOCOL                                                                                    \
	(VHD_BIT(VHOST_USER_PROTOCOL_F_MQ) | VHD_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) |                      \
	 VHD_BIT(VHOST_USER_PROTOCOL_F_STATUS))
/* For rings kept across back-end restarts: inflight tracking. */
#define VU_INFLIGHT_PROTOCOL VHD_BIT(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD)
/* And for a device IOTLB: the channel its misses come on. */
#define VU_IOMMU_PROTOCOL VHD_BIT(VHOST_USER_PROTOCOL_F_BACKEND_REQ)

/* Messages read per progress() call and socket: a back-end that floods us cannot hold the caller. */
#define VU_RECV_BUDGET 16

enum vu_reply {
	R_NONE,     /* nothing awaited */
	R_ACK,      /* REPLY_ACK status: 0 is success */
	R_U64,      /* a value for *out64 */
	R_FEATURES, /* GET_FEATURES, which may go on with the protocol features */
	R_PROTOCOL, /* GET_PROTOCOL_FEATURES */
	R_INFLIGHT, /* GET_INFLIGHT_FD: an inflight description and its fd */
};

struct vu_t {
	struct vhu_conn conn;
	bool opened;
	uint64_t protocol;   /* protocol features agreed on this connection */
	bool proto_offered;  /* VHOST_USER_F_PROTOCOL_FEATURES offered on this connection */
	uint64_t features;   /* GET_FEATURES' answer, while the protocol features are negotiated */
	bool told_unasked;   /* an unasked message was logged on this connection */
	struct vhu_io chan;  /* our end of the back-end channel; fd -1 while there is none */
	bool told_chan;      /* a bad message on the channel was logged on this connection */
	bool told_full;      /* a miss we could not answer (socket error) was logged */
	/* The request whose reply is awaited. */
	uint32_t await;
	enum vu_reply kind;
	uint64_t *out64;
	int *out_fd;             /* R_INFLIGHT */
	unsigned infl_nq, infl_qsize;
	bool infl_packed;
	struct timespec sent;
};

static struct vu_t *V(struct vhd_fe_transport *t)
{
	return t->priv;
}

static long long ms_since(const struct timespec *a)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)(now.tv_sec - a->tv_sec) * 1000 + (now.tv_nsec - a->tv_nsec) / 1000000;
}

static const char *rname(uint32_t req)
{
	return vhu_req_info(req)->name;
}

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

static int step_state(struct vu_t *v)
{
	return v->await != VHOST_USER_NONE || vhu_io_out_pending(&v->conn.io) ? VHD_FE_T_PENDING : VHD_FE_T_DONE;
}

/*
 * Queue m; kind says which reply it awaits. R_ACK is asked for only when REPLY_ACK was agreed (a set message
 * without it has no reply). The message's fds stay the caller's (the I/O layer sends duplicates).
 */
static int start(struct vhd_fe_transport *t, struct vhu_msg *m, enum vu_reply kind, uint64_t *out64)
{
	struct vu_t *v = V(t);
	if (v->await != VHOST_USER_NONE)
		return -EBUSY;
	if (kind == R_ACK) {
		if (v->protocol & VHD_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK))
			m->hdr.flags |= VHOST_USER_NEED_REPLY;
		else
			kind = R_NONE;
	}
	int rc = vhu_io_send(&v->conn.io, m);
	if (rc < 0) {
		vhd_log(VHD_LOG_ERR, "%s: cannot send %s to the back-end: %s", t->name, rname(m->hdr.request),
			rc == -ENOBUFS ? "it is not reading what we send" : strerror(-rc));
		return rc;
	}
	if (kind != R_NONE) {
		v->await = m->hdr.request;
		v->kind = kind;
		v->out64 = out64;
		clock_gettime(CLOCK_MONOTONIC, &v->sent);
	}
	return step_state(v);
}

/* GET_INFLIGHT_FD's reply: one fd and an area at least as big as the queues asked for need, which the back-end
 * will map. The fd becomes the caller's. */
static int on_inflight_reply(struct vhd_fe_transport *t, struct vhu_msg *r)
{
	struct vu_t *v = V(t);
	const struct vhost_user_inflight *in = &r->p.inflight;
	uint64_t need = (uint64_t)vhd_vq_inflight_size(v->infl_packed, v->infl_qsize) * v->infl_nq;
	const char *bad = r->hdr.size != sizeof(*in) ? "payload size" : r->nfds != 1 ? "fd count"
			  : in->num_queues != v->infl_nq || in->queue_size != v->infl_qsize ? "queue count or size"
			  : in->mmap_size < need ? "mmap_size" : NULL;
	if (bad) {
		vhd_log(VHD_LOG_ERR, "%s: the back-end's reply to GET_INFLIGHT_FD has the wrong %s (%u bytes, %u fds, "
			"%u queues of %u, mmap_size %llu; %u queues of %u asked, %llu bytes needed)", t->name, bad,
			r->hdr.size, r->nfds, in->num_queues, in->queue_size, (unsigned long long)in->mmap_size,
			v->infl_nq, v->infl_qsize, (unsigned long long)need);
		vhu_msg_close_fds(r);
		return -EPROTO;
	}
	v->await = VHOST_USER_NONE;
	*v->out_fd = vhu_msg_take_fd(r, 0);
	*v->out64 = in->mmap_size;
	return 0;
}

/* A whole message arrived while v->await's reply was due: check it as hostile input and use it. */
static int on_reply(struct vhd_fe_transport *t, struct vhu_msg *r)
{
	struct vu_t *v = V(t);
	uint32_t req = v->await;
	if (v->kind == R_INFLIGHT && r->hdr.request == req && (r->hdr.flags & VHOST_USER_REPLY_MASK))
		return on_inflight_reply(t, r);
	if (r->nfds) {
		vhd_log(VHD_LOG_ERR, "%s: the back-end's reply to %s carried %u fd%s (replies carry none)", t->name,
			rname(req), r->nfds, r->nfds == 1 ? "" : "s");
		vhu_msg_close_fds(r);
		return -EBADMSG;
	}
	if (r->hdr.request != req) {
		vhd_log(VHD_LOG_ERR, "%s: the back-end sent %s (request %u) where the reply to %s was due", t->name,
			rname(r->hdr.request), r->hdr.request, rname(req));
		return -EPROTO;
	}
	if (!(r->hdr.flags & VHOST_USER_REPLY_MASK)) {
		vhd_log(VHD_LOG_ERR, "%s: the back-end's reply to %s lacks the reply flag (flags 0x%x)", t->name,
			rname(req), r->hdr.flags);
		return -EPROTO;
	}
	if (r->hdr.size != sizeof(r->p.u64)) {
		vhd_log(VHD_LOG_ERR, "%s: the back-end's reply to %s has %u payload bytes, %zu expected", t->name,
			rname(req), r->hdr.size, sizeof(r->p.u64));
		return -EMSGSIZE;
	}
	v->await = VHOST_USER_NONE;
	uint64_t val = r->p.u64;
	switch (v->kind) {
	case R_ACK:
		if (val != 0) {
			vhd_log(VHD_LOG_ERR, "%s: the back-end refused %s (status %llu)", t->name, rname(req),
				(unsigned long long)val);
			return -EREMOTEIO;
		}
		return 0;
	case R_U64:
		*v->out64 = val;
		return 0;
	case R_FEATURES:
		v->proto_offered = val & VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES);
		v->features = val & ~VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES);
		if (!v->proto_offered) {
			*v->out64 = v->features;
			return 0;
		}
		struct vhu_msg g = mk(VHOST_USER_GET_PROTOCOL_FEATURES, 0);
		int rc = start(t, &g, R_PROTOCOL, v->out64);
		return rc < 0 ? rc : 0;
	case R_PROTOCOL: {
		uint64_t got = val & (VU_WANTED_PROTOCOL | (t->iommu ? VU_IOMMU_PROTOCOL : 0) |
				      (t->inflight ? VU_INFLIGHT_PROTOCOL : 0));
		/* Sent without REPLY_ACK: this message is what turns REPLY_ACK on. */
		struct vhu_msg s = mk(VHOST_USER_SET_PROTOCOL_FEATURES, 8);
		s.p.u64 = got;
		int rc2 = start(t, &s, R_NONE, NULL);
		if (rc2 < 0)
			return rc2;
		v->protocol = got;
		*v->out64 = v->features;
		return 0;
	}
	case R_INFLIGHT: /* on_inflight_reply() */
	case R_NONE:
		break;
	}
	return 0;
}

/* where: "" for the connection, " on its channel" for the back-end channel. */
static int recv_error(struct vhd_fe_transport *t, int rc, const struct vhu_msg *m, const char *where)
{
	switch (rc) {
	case -ECONNRESET:
		vhd_log(VHD_LOG_INFO, "%s: the back-end closed the connection%s%s%s", t->name, where,
			V(t)->await ? " while we awaited the reply to " : "", V(t)->await ? rname(V(t)->await) : "");
		break;
	case -EPROTO:
		vhd_log(VHD_LOG_ERR,
			"%s: the back-end sent a header we cannot follow%s (request %u, flags 0x%x, size %u)", t->name,
			where, m->hdr.request, m->hdr.flags, m->hdr.size);
		break;
	case -EBADMSG:
		vhd_log(VHD_LOG_ERR, "%s: the back-end sent %s with more than %d fds%s", t->name,
			rname(m->hdr.request), VHOST_USER_MAX_FDS, where);
		break;
	default:
		vhd_log(VHD_LOG_ERR, "%s: reading from the back-end%s: %s", t->name, where, strerror(-rc));
		break;
	}
	return rc;
}

/* A message on the connection: the awaited reply, or one the back-end was not asked for (ignored). */
static int on_conn_msg(struct vhd_fe_transport *t, struct vhu_msg *m)
{
	struct vu_t *v = V(t);
	if (v->await != VHOST_USER_NONE)
		return on_reply(t, m);
	/* The back-end speaks on this socket only when asked. */
	vhu_msg_close_fds(m);
	if (!v->told_unasked)
		vhd_log(VHD_LOG_WARN, "%s: unasked %s (request %u) from the back-end ignored", t->name,
			rname(m->hdr.request), m->hdr.request);
	v->told_unasked = true;
	return 0;
}

/* One message from the back-end channel: a MISS is answered with an UPDATE on the connection (or nothing when
 * the IOVA is unmapped); anything else is logged once and ignored. Never fails the connection: a wrong
 * request on the channel harms nothing of ours. */
static int on_backend_req(struct vhd_fe_transport *t, struct vhu_msg *m)
{
	struct vu_t *v = V(t);
	const char *bad = NULL;
	vhu_msg_close_fds(m);
	if (m->hdr.request != VHOST_USER_BACKEND_IOTLB_MSG)
		bad = "a request other than IOTLB_MSG (1)";
	else if (m->hdr.size != sizeof(m->p.iotlb))
		bad = "an IOTLB_MSG of the wrong size";
	else if (m->p.iotlb.type != VHOST_IOTLB_MISS)
		bad = "an IOTLB_MSG other than MISS";
	if (!bad && t->miss) {
		struct vhd_fe_map map;
		if (t->miss(t->owner, m->p.iotlb.iova, m->p.iotlb.perm, &map) == 0) {
			struct vhu_msg u = mk(VHOST_USER_IOTLB_MSG, sizeof(u.p.iotlb));
			u.p.iotlb = (struct vhost_iotlb_msg){.iova = map.iova, .size = map.size, .uaddr = map.uaddr,
							     .perm = map.perm, .type = VHOST_IOTLB_UPDATE};
			/* Room was checked before the read (chan_may_read); a failure here is a broken socket,
			 * which the flush after this reports. */
			int rc = vhu_io_send(&v->conn.io, &u);
			if (rc < 0 && !v->told_full)
				vhd_log(VHD_LOG_WARN, "%s: cannot answer the IOTLB miss at IOVA 0x%llx: %s", t->name,
					(unsigned long long)m->p.iotlb.iova, strerror(-rc));
			v->told_full |= rc < 0;
		}
	}
	if (bad && !v->told_chan)
		vhd_log(VHD_LOG_WARN, "%s: the back-end sent %s on its channel (request %u, size %u); ignored", t->name,
			bad, m->hdr.request, m->hdr.size);
	v->told_chan |= bad != NULL;
	if (m->hdr.flags & VHOST_USER_NEED_REPLY) {
		/* The spec wants an answer to NEED_REPLY: 0 for the miss taken, non-zero for what we refuse. */
		struct vhu_msg r = mk(m->hdr.request, 8);
		r.hdr.flags |= VHOST_USER_REPLY_MASK;
		r.p.u64 = bad ? 1 : 0;
		vhu_io_send(&v->chan, &r);
	}
	return 0;
}

/* Whether the connection's output queue has room for the UPDATE answering one more miss. Until it has, the
 * channel is neither read nor polled for input: a MISS left in the socket waits for its answer, where one
 * read and dropped would be lost for good with a back-end that never asks twice (DPDK keeps a miss pending
 * until an update covers it). */
static bool chan_may_read(const struct vu_t *v)
{
	return v->conn.io.out_n < VHU_IO_QUEUE;
}

/* Write io's queued output and read up to VU_RECV_BUDGET messages from it, each to on_msg (a back-end that
 * floods us cannot hold the caller), while may_read (if any) allows. 0, or -errno when io broke or on_msg
 * failed (logged). */
static int pump(struct vhd_fe_transport *t, struct vhu_io *io, const char *where,
		int (*on_msg)(struct vhd_fe_transport *t, struct vhu_msg *m), bool (*may_read)(const struct vu_t *v))
{
	int rc = vhu_io_flush(io);
	if (rc < 0 && rc != -EAGAIN) {
		vhd_log(VHD_LOG_ERR, "%s: writing to the back-end%s: %s", t->name, where, strerror(-rc));
		return rc;
	}
	for (unsigned n = 0; n < VU_RECV_BUDGET && (!may_read || may_read(V(t))); n++) {
		struct vhu_msg m;
		rc = vhu_io_recv(io, &m);
		if (rc == -EAGAIN)
			break;
		if (rc < 0)
			return recv_error(t, rc, &m, where);
		rc = on_msg(t, &m);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Read the back-end channel. 0, or -errno when it broke (the connection goes with it). */
static int chan_progress(struct vhd_fe_transport *t)
{
	struct vhu_io *io = &V(t)->chan;
	if (io->fd < 0)
		return 0;
	int rc = pump(t, io, " on its channel", on_backend_req, chan_may_read);
	if (rc < 0)
		return rc;
	char why[160];
	if (vhu_io_expired(io, t->reply_timeout_ms, why, sizeof(why))) {
		vhd_log(VHD_LOG_ERR, "%s: the back-end %s on its channel", t->name, why);
		return -ETIMEDOUT;
	}
	return 0;
}

static int vu_progress(struct vhd_fe_transport *t)
{
	struct vu_t *v = V(t);
	struct vhu_io *io = &v->conn.io;
	if (io->fd < 0)
		return -ENOTCONN;
	/* The channel first: the UPDATEs answering its misses then leave with the flush below. */
	int rc = chan_progress(t);
	if (rc < 0)
		return rc;
	rc = pump(t, io, "", on_conn_msg, NULL);
	if (rc < 0)
		return rc;
	/* A reply that has begun to arrive gets the message deadline below, from its first byte, so the log line
	 * says how far the back-end got; at most one more reply_timeout_ms in all. */
	if (v->await != VHOST_USER_NONE && ms_since(&v->sent) >= t->reply_timeout_ms &&
	    vhu_io_timeout_ms(io, t->reply_timeout_ms) < 0) {
		vhd_log(VHD_LOG_ERR, "%s: the back-end did not answer %s within %u ms", t->name, rname(v->await),
			t->reply_timeout_ms);
		return -ETIMEDOUT;
	}
	char why[160];
	if (vhu_io_expired(io, t->reply_timeout_ms, why, sizeof(why))) {
		vhd_log(VHD_LOG_ERR, "%s: the back-end %s", t->name, why);
		return -ETIMEDOUT;
	}
	return step_state(v);
}

/* ---------------------------------------------------------------- the connection */

static int vu_open(struct vhd_fe_transport *t, const char *path, bool server, unsigned min_ms, unsigned max_ms)
{
	struct vu_t *v = V(t);
	int rc = vhu_conn_init(&v->conn, path, !server, min_ms, max_ms);
	v->opened = rc == 0;
	return rc;
}

static void reset_conn_state(struct vu_t *v)
{
	v->protocol = 0;
	v->proto_offered = false;
	v->told_unasked = false;
	v->await = VHOST_USER_NONE;
	v->kind = R_NONE;
	v->told_chan = v->told_full = false;
	vhu_io_close(&v->chan);
}

static void vu_destroy(struct vhd_fe_transport *t)
{
	struct vu_t *v = V(t);
	if (!v)
		return;
	/* Closing is all: the back-end maps our memory file itself and lets go of it when it sees the close. */
	if (v->opened)
		vhu_conn_fini(&v->conn);
	vhu_io_close(&v->chan);
	free(v);
	t->priv = NULL;
}

static unsigned vu_pollfds(struct vhd_fe_transport *t, struct pollfd *fds, unsigned max)
{
	struct vu_t *v = V(t);
	unsigned n = vhu_conn_pollfds(&v->conn, fds, max);
	if (n < max && v->chan.fd >= 0) {
		short ev = vhu_io_events(&v->chan);
		if (!chan_may_read(v))
			ev &= (short)~POLLIN; /* the connection's POLLOUT wakes us when there is room again */
		fds[n++] = (struct pollfd){.fd = v->chan.fd, .events = ev};
	}
	return n;
}

static int vu_timeout_ms(struct vhd_fe_transport *t)
{
	struct vu_t *v = V(t);
	if (v->conn.io.fd < 0)
		return vhu_conn_timeout_ms(&v->conn);
	int ms = vhu_io_timeout_ms(&v->conn.io, t->reply_timeout_ms);
	int cm = v->chan.fd >= 0 ? vhu_io_timeout_ms(&v->chan, t->reply_timeout_ms) : -1;
	if (cm >= 0 && (ms < 0 || cm < ms))
		ms = cm;
	if (v->await != VHOST_USER_NONE) {
		long long left = (long long)t->reply_timeout_ms - ms_since(&v->sent);
		/* One more so that the poll() waking at the deadline finds it passed. */
		int r = left < 0 ? 0 : (int)left + 1;
		/* Past the reply deadline with a message under way, the message deadline decides (vu_progress). */
		if (ms < 0 || (r < ms && r > 0))
			ms = r;
	}
	return ms;
}

static bool vu_connect(struct vhd_fe_transport *t)
{
	struct vu_t *v = V(t);
	if (!vhu_conn_poll(&v->conn))
		return false;
	reset_conn_state(v);
	return true;
}

static bool vu_connected(const struct vhd_fe_transport *t)
{
	return ((const struct vu_t *)t->priv)->conn.io.fd >= 0;
}

static void vu_lost(struct vhd_fe_transport *t)
{
	struct vu_t *v = V(t);
	reset_conn_state(v);
	vhu_conn_lost(&v->conn);
}

/* ---------------------------------------------------------------- setup steps */

static int vu_get_features(struct vhd_fe_transport *t, uint64_t *f)
{
	struct vhu_msg m = mk(VHOST_USER_GET_FEATURES, 0);
	return start(t, &m, R_FEATURES, f);
}

static int set_u64(struct vhd_fe_transport *t, uint32_t req, uint64_t val)
{
	struct vhu_msg m = mk(req, 8);
	m.p.u64 = val;
	return start(t, &m, R_ACK, NULL);
}

static int vu_set_features(struct vhd_fe_transport *t, uint64_t f)
{
	if (V(t)->proto_offered)
		f |= VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES);
	return set_u64(t, VHOST_USER_SET_FEATURES, f);
}

static int vu_get_queue_num(struct vhd_fe_transport *t, uint64_t *pairs)
{
	if (!(V(t)->protocol & VHD_BIT(VHOST_USER_PROTOCOL_F_MQ))) {
		*pairs = 1;
		return VHD_FE_T_DONE;
	}
	struct vhu_msg m = mk(VHOST_USER_GET_QUEUE_NUM, 0);
	return start(t, &m, R_U64, pairs);
}

static int vu_set_owner(struct vhd_fe_transport *t)
{
	struct vhu_msg m = mk(VHOST_USER_SET_OWNER, 0);
	return start(t, &m, R_ACK, NULL);
}

static int vu_set_mem_table(struct vhd_fe_transport *t, const struct vhd_fe_region *r, unsigned n)
{
	if (n > VHOST_MEMORY_BASELINE_NREGIONS)
		return -E2BIG;
	struct vhu_msg m = mk(VHOST_USER_SET_MEM_TABLE, 8 + n * (uint32_t)sizeof(struct vhost_user_memory_region));
	m.p.memory.nregions = n;
	for (unsigned i = 0; i < n; i++) {
		m.p.memory.regions[i] =
			(struct vhost_user_memory_region){r[i].guest_addr, r[i].size, r[i].addr, r[i].fd_offset};
		m.fds[i] = r[i].fd;
	}
	m.nfds = n;
	return start(t, &m, R_ACK, NULL);
}

static int vring_state(struct vhd_fe_transport *t, uint32_t req, unsigned q, unsigned num)
{
	struct vhu_msg m = mk(req, 8);
	m.p.state = (struct vhost_vring_state){q, num};
	return start(t, &m, R_ACK, NULL);
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
	/* Without protocol features a ring is enabled by its kick (vhost-user.rst, "Ring states"). */
	if (!V(t)->proto_offered)
		return VHD_FE_T_DONE;
	return vring_state(t, VHOST_USER_SET_VRING_ENABLE, q, on);
}

static int vu_set_vring_addr(struct vhd_fe_transport *t, unsigned q, uint64_t desc, uint64_t avail, uint64_t used)
{
	struct vhu_msg m = mk(VHOST_USER_SET_VRING_ADDR, sizeof(struct vhost_vring_addr));
	m.p.addr = (struct vhost_vring_addr){.index = q, .desc_user_addr = desc, .avail_user_addr = avail,
					     .used_user_addr = used};
	return start(t, &m, R_ACK, NULL);
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
	return start(t, &m, R_ACK, NULL);
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
	if (!(V(t)->protocol & VHD_BIT(VHOST_USER_PROTOCOL_F_STATUS)))
		return VHD_FE_T_DONE;
	return set_u64(t, VHOST_USER_SET_STATUS, status);
}

static int vu_set_backend_channel(struct vhd_fe_transport *t)
{
	struct vu_t *v = V(t);
	if (!t->iommu)
		return VHD_FE_T_DONE;
	if (!(v->protocol & VU_IOMMU_PROTOCOL)) {
		vhd_log(VHD_LOG_WARN, "%s: the back-end lacks BACKEND_REQ: it cannot ask for what its IOTLB misses",
			t->name);
		return VHD_FE_T_DONE;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	vhu_io_close(&v->chan);
	vhu_io_init(&v->chan, sv[0]); /* made non-blocking there */
	struct vhu_msg m = mk(VHOST_USER_SET_BACKEND_REQ_FD, 0);
	m.fds[0] = sv[1];
	m.nfds = 1;
	int rc = start(t, &m, R_ACK, NULL);
	close(sv[1]); /* the I/O layer sends its own duplicate */
	return rc;
}

static int vu_iotlb_update(struct vhd_fe_transport *t, const struct vhd_fe_map *map)
{
	struct vhu_msg m = mk(VHOST_USER_IOTLB_MSG, sizeof(m.p.iotlb));
	m.p.iotlb = (struct vhost_iotlb_msg){.iova = map->iova, .size = map->size, .uaddr = map->uaddr,
					     .perm = map->perm, .type = VHOST_IOTLB_UPDATE};
	return start(t, &m, R_ACK, NULL);
}

static int vu_get_inflight(struct vhd_fe_transport *t, unsigned nq, unsigned qsize, bool packed, int *fd,
			   uint64_t *size)
{
	struct vu_t *v = V(t);
	*fd = -1;
	if (!(v->protocol & VU_INFLIGHT_PROTOCOL))
		return VHD_FE_T_DONE;
	struct vhu_msg m = mk(VHOST_USER_GET_INFLIGHT_FD, sizeof(m.p.inflight));
	m.p.inflight = (struct vhost_user_inflight){.num_queues = (uint16_t)nq, .queue_size = (uint16_t)qsize};
	v->out_fd = fd;
	v->infl_nq = nq;
	v->infl_qsize = qsize;
	v->infl_packed = packed;
	return start(t, &m, R_INFLIGHT, size);
}

static int vu_set_inflight(struct vhd_fe_transport *t, int fd, uint64_t size, unsigned nq, unsigned qsize)
{
	if (!(V(t)->protocol & VU_INFLIGHT_PROTOCOL) || fd < 0)
		return VHD_FE_T_DONE;
	struct vhu_msg m = mk(VHOST_USER_SET_INFLIGHT_FD, sizeof(m.p.inflight));
	m.p.inflight = (struct vhost_user_inflight){.mmap_size = size, .mmap_offset = 0, .num_queues = (uint16_t)nq,
						    .queue_size = (uint16_t)qsize};
	m.fds[0] = fd;
	m.nfds = 1;
	return start(t, &m, R_ACK, NULL);
}

static const struct vhd_fe_transport_ops vu_ops = {
	.name = "vhost-user",
	.open = vu_open,
	.destroy = vu_destroy,
	.pollfds = vu_pollfds,
	.timeout_ms = vu_timeout_ms,
	.connect = vu_connect,
	.connected = vu_connected,
	.lost = vu_lost,
	.progress = vu_progress,
	.get_features = vu_get_features,
	.set_features = vu_set_features,
	.get_queue_num = vu_get_queue_num,
	.set_owner = vu_set_owner,
	.set_mem_table = vu_set_mem_table,
	.set_vring_num = vu_set_vring_num,
	.set_vring_base = vu_set_vring_base,
	.set_vring_addr = vu_set_vring_addr,
	.set_vring_kick = vu_set_vring_kick,
	.set_vring_call = vu_set_vring_call,
	.set_vring_enable = vu_set_vring_enable,
	.set_status = vu_set_status,
	.set_backend_channel = vu_set_backend_channel,
	.iotlb_update = vu_iotlb_update,
	.get_inflight = vu_get_inflight,
	.set_inflight = vu_set_inflight,
};

int vhd_fe_vu_transport_init(struct vhd_fe_transport *t, const char *name, unsigned reply_timeout_ms)
{
	struct vu_t *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->conn.listen_fd = v->conn.io.fd = v->chan.fd = -1;
	t->ops = &vu_ops;
	t->name = name;
	t->reply_timeout_ms = reply_timeout_ms;
	t->priv = v;
	return 0;
}
