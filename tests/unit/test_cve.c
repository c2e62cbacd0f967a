/* SPDX-License-Identifier: MIT */
/*
 * One regression test per known class of vhost-user / virtio-net back-end vulnerability, each named after its
 * CVE or report (docs/hostile.md maps them). Two rigs: the hand-written vhost-user front-end of vu_rig.h for
 * the control plane, and a raw split ring written byte by byte ("the guest") in front of our device-side queue
 * and virtio-net data path. Every case asserts the exact refusal and that no fd or mapping is left behind.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "harness.h"
#include "vu_rig.h"
#include "spec/endian.h"
#include "spec/virtio_ring.h"
#include "vhostd/mem.h"
#include "vhostd/net.h"
#include "vhostd/pkt.h"

/* ================================================================ vhost-user messages */

/* Send m with NEED_REPLY and expect the back-end's failure ack; the connection must survive. */
static void refused(struct rig *r, struct vhu_msg *m)
{
	CHECK_EQ(acked(r, m), 1);
	CHECK(vhd_vu_dev_connected(r->dev));
}

static void open_negotiated(struct rig *r)
{
	rig_open(r, 1);
	rig_connect(r);
	negotiate(r, 0, true);
}

/* Mappings of the guest memfd: the rig's own plus whatever the back-end holds. Counted by name, so that the
 * allocator's own mappings (many under ASan) do not blur the count. */
static int guest_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	CHECK(f != NULL);
	char line[512];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, "/memfd:guest") != NULL;
	fclose(f);
	return n;
}

/* Nothing the back-end was handed is still open or mapped. */
static void check_flat(int fds0, int maps0)
{
	CHECK_EQ(th_count_fds(), fds0);
	CHECK_EQ(guest_maps(), maps0);
}

/* The front-end leaves; the back-end notices at its next dispatch. */
static void leave(struct rig *r)
{
	close(r->fe);
	r->fe = -1;
	CHECK(vhd_vu_dev_dispatch(r->dev) < 0);
}

static uint64_t get_proto_offered(struct rig *r)
{
	return get_u64(r, VHOST_USER_GET_PROTOCOL_FEATURES);
}

/* Drain whatever the back-end answered to one message. */
static void drain_replies(struct rig *r)
{
	while (reply_ready(r)) {
		struct vhu_msg a;
		CHECK_EQ(vhu_msg_recv(r->fe, &a), 0);
		vhu_msg_close_fds(&a);
	}
}

/*
 * CVE-2019-14818, CVE-2022-0669: every request id (known, unknown, past the table, 2^32-1) arrives with the
 * most fds a message may carry and a zeroed payload of each interesting size. Whatever the handler does, the fds
 * it does not keep are closed: three rounds leave the count where one left it, and after the front-end leaves
 * not one fd or mapping of the back-end remains. Then more fds than a message may carry: refused, all closed.
 */
static void cve_2019_14818_fd_leak_every_message(void)
{
	struct rig r;
	rig_open(&r, 1);
	int fds0 = th_count_fds(), maps0 = guest_maps();
	rig_connect(&r);
	negotiate(&r, 0, true);
	int errs = log_errors;
	static const uint32_t extra_ids[] = {VHOST_USER_REQUEST_MAX, 200, 1000, 0x7fffffff, UINT32_MAX};
	static const uint32_t sizes[] = {0, 8, 40, sizeof(union vhost_user_payload)};
	int after_first = -1;
	for (int round = 0; round < 3; round++) {
		for (uint32_t id = 0; id < VHOST_USER_REQUEST_MAX + sizeof(extra_ids) / sizeof(extra_ids[0]); id++) {
			uint32_t req = id < VHOST_USER_REQUEST_MAX ? id : extra_ids[id - VHOST_USER_REQUEST_MAX];
			/* These would legitimately end the session under test or reset what it set up. */
			if (req == VHOST_USER_RESET_OWNER || req == VHOST_USER_RESET_DEVICE)
				continue;
			for (unsigned s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
				struct vhu_msg m = mk(req, sizes[s]);
				m.hdr.flags |= VHOST_USER_NEED_REPLY;
				/* Zero would switch REPLY_ACK off, and with it the answers this loop counts on. */
				if (req == VHOST_USER_SET_PROTOCOL_FEATURES)
					m.p.u64 = get_proto_offered(&r);
				for (unsigned i = 0; i < VHOST_USER_MAX_FDS; i++)
					m.fds[i] = r.memfd;
				m.nfds = VHOST_USER_MAX_FDS;
				send_msg(&r, &m);
				/* Each gets its own reply or, refused or not, the REPLY_ACK. */
				CHECK(reply_ready(&r));
				drain_replies(&r);
				CHECK(vhd_vu_dev_connected(r.dev));
			}
		}
		/* Held fds (kick, call, err, back-end channel, memory) are replaced, never piled up. */
		if (round == 0)
			after_first = th_count_fds();
		else
			CHECK_EQ(th_count_fds(), after_first);
	}
	/* Too many fds: 16 copies where 8 are allowed. */
	struct vhu_msg h = mk(VHOST_USER_GET_QUEUE_NUM, 0);
	int before = th_count_fds();
	CHECK_EQ(send_fds_raw(r.fe, &h, r.memfd, 16), sizeof(h.hdr));
	vhd_vu_dev_dispatch(r.dev);
	CHECK_EQ(th_count_fds(), before);
	CHECK(vhd_vu_dev_connected(r.dev));
	CHECK_EQ(get_u64(&r, VHOST_USER_GET_QUEUE_NUM), 1);
	CHECK(log_errors > errs);
	leave(&r);
	check_flat(fds0, maps0);
	rig_close(&r);
}

/* CVE-2020-10722: SET_LOG_BASE whose mmap_offset + mmap_size wraps (and SET_LOG_FD, not supported). Both are
 * refused before anything is mapped (a u64 1 answers SET_LOG_BASE); the fds they carry are closed. */
static void cve_2020_10722_log_base_overflow(void)
{
	struct rig r;
	rig_open(&r, 1);
	rig_connect(&r);
	negotiate(&r, 0, true);
	int fds0 = th_count_fds(), maps0 = guest_maps();
	struct vhu_msg m = mk(VHOST_USER_SET_LOG_BASE, sizeof(struct vhost_user_log));
	m.p.log = (struct vhost_user_log){.mmap_size = UINT64_MAX - 4095, .mmap_offset = 8192};
	m.fds[0] = r.memfd;
	m.nfds = 1;
	refused(&r, &m);
	m.p.log = (struct vhost_user_log){.mmap_size = 4096, .mmap_offset = UINT64_MAX - 100};
	refused(&r, &m);
	m = mk(VHOST_USER_SET_LOG_FD, 0);
	m.fds[0] = r.memfd;
	m.nfds = 1;
	refused(&r, &m);
	check_flat(fds0, maps0);
	rig_close(&r);
}

/*
 * CVE-2018-1059 (and the mapping half of CVE-2020-10722): memory regions whose offset + size, guest address +
 * size or user address + size wrap, one that runs past the end of its fd (mmap accepts it; the first access
 * raises SIGBUS), overlapping ones; through SET_MEM_TABLE and ADD_MEM_REG. Each is refused with nothing mapped
 * and nothing left open, and the table in force stays usable.
 */
static void cve_2018_1059_mem_region_overflow(void)
{
	struct rig r;
	open_negotiated(&r);
	set_u64(&r, VHOST_USER_SET_PROTOCOL_FEATURES, get_u64(&r, VHOST_USER_GET_PROTOCOL_FEATURES));
	set_mem_table(&r);
	struct guest_q g;
	setup_queue(&r, 0, &g, 0, false, false);
	enable(&r, 0, 1);
	int fds0 = th_count_fds(), maps0 = guest_maps();
	CHECK_EQ(maps0, 2); /* ours and the back-end's */
	const struct vhost_user_memory_region bad[] = {
		{GPA, MEM_SIZE, (uintptr_t)r.mem, UINT64_MAX - 4095},          /* offset + size wraps */
		{UINT64_MAX - 4095, 8192, (uintptr_t)r.mem, 0},                 /* guest address wraps */
		{GPA, 8192, UINT64_MAX - 4095, 0},                              /* user address wraps */
		{GPA, MEM_SIZE, (uintptr_t)r.mem, 4096},                        /* past the fd's end by a page */
		{GPA, 2 * (uint64_t)MEM_SIZE, (uintptr_t)r.mem, 0},            /* twice the fd */
		{GPA, (uint64_t)1 << 62, (uintptr_t)r.mem, 0},                  /* absurd */
		{GPA, 0, (uintptr_t)r.mem, 0},                                  /* empty */
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct vhu_msg m = mk(VHOST_USER_SET_MEM_TABLE, 8 + 32);
		m.p.memory.nregions = 1;
		m.p.memory.regions[0] = bad[i];
		m.fds[0] = r.memfd;
		m.nfds = 1;
		refused(&r, &m);
		m = mk(VHOST_USER_ADD_MEM_REG, sizeof(struct vhost_user_mem_reg));
		m.p.mem_reg.region = bad[i];
		m.p.mem_reg.region.guest_phys_addr += i == 1 ? 0 : 4 * (uint64_t)MEM_SIZE; /* beside the table */
		m.fds[0] = r.memfd;
		m.nfds = 1;
		refused(&r, &m);
		check_flat(fds0, maps0);
	}
	/* Two regions overlapping in guest space, and one overlapping the table in force. */
	struct vhu_msg m = mk(VHOST_USER_SET_MEM_TABLE, 8 + 64);
	m.p.memory.nregions = 2;
	m.p.memory.regions[0] = (struct vhost_user_memory_region){GPA, MEM_SIZE, (uintptr_t)r.mem, 0};
	m.p.memory.regions[1] = (struct vhost_user_memory_region){GPA + MEM_SIZE - 4096, 4096, 0x10000000, 0};
	m.fds[0] = m.fds[1] = r.memfd;
	m.nfds = 2;
	refused(&r, &m);
	m = mk(VHOST_USER_ADD_MEM_REG, sizeof(struct vhost_user_mem_reg));
	m.p.mem_reg.region = (struct vhost_user_memory_region){GPA + 4096, 4096, 0x10000000, 0};
	m.fds[0] = r.memfd;
	m.nfds = 1;
	refused(&r, &m);
	check_flat(fds0, maps0);
	/* The queue restarted over the table in force and still carries buffers. */
	pass_one(&r, 0, &g, 0x5a);
	free_queue(&g);
	rig_close(&r);
}

/* Messages that would hit queue 0 if their index were cut to 8 or 16 bits before the check. */
static void send_truncated_index(struct rig *r, uint32_t idx)
{
	struct vhu_msg m = mk(VHOST_USER_SET_VRING_NUM, 8);
	m.p.state = (struct vhost_vring_state){idx, 32};
	refused(r, &m);
	m = mk(VHOST_USER_SET_VRING_BASE, 8);
	m.p.state = (struct vhost_vring_state){idx, 7};
	refused(r, &m);
	m = mk(VHOST_USER_SET_VRING_ADDR, sizeof(struct vhost_vring_addr));
	m.p.addr = (struct vhost_vring_addr){.index = idx};
	refused(r, &m);
	m = mk(VHOST_USER_SET_VRING_ENABLE, 8);
	m.p.state = (struct vhost_vring_state){idx, 0};
	refused(r, &m);
	m = mk(VHOST_USER_GET_VRING_BASE, 8);
	m.p.state = (struct vhost_vring_state){idx, 0};
	send_msg(r, &m);
	m = get_reply(r, VHOST_USER_GET_VRING_BASE);
	CHECK_EQ(m.hdr.size, 0); /* refused, answered empty, ring untouched */
	/* The fd messages carry the index in the low byte of a u64: any higher bit but NOFD is refused. */
	int fd = eventfd(0, EFD_CLOEXEC);
	for (unsigned k = 0; k < 3; k++) {
		uint32_t req = k == 0 ? VHOST_USER_SET_VRING_KICK : k == 1 ? VHOST_USER_SET_VRING_CALL
									 : VHOST_USER_SET_VRING_ERR;
		m = mk(req, 8);
		/* 0x100 alone is the NOFD bit (queue 0, no fd): add a stray bit to keep it an attack. */
		m.p.u64 = idx == VHOST_USER_VRING_NOFD ? 0x300 : idx;
		m.fds[0] = fd;
		m.nfds = 1;
		refused(r, &m);
	}
	close(fd);
}

/* CVE-2020-10723: a 32-bit vring index truncated to 8 or 16 bits before validation lands on queue 0. Queue 0 is
 * running; indexes 0x100, 0x10000, 0x80000000 and 2^32-1 are refused, and queue 0 never stops or changes. */
static void cve_2020_10723_vring_index_truncation(void)
{
	struct rig r;
	open_negotiated(&r);
	set_mem_table(&r);
	struct guest_q g;
	setup_queue(&r, 0, &g, 0, false, false);
	enable(&r, 0, 1);
	CHECK_EQ(r.ev.started[0], 1);
	int fds0 = th_count_fds();
	static const uint32_t idx[] = {0x100, 0x200, 0x10000, 0x80000000u, UINT32_MAX};
	for (unsigned i = 0; i < sizeof(idx) / sizeof(idx[0]); i++)
		send_truncated_index(&r, idx[i]);
	CHECK_EQ(r.ev.stopped[0], 0);
	CHECK_EQ(th_count_fds(), fds0);
	pass_one(&r, 0, &g, 1);
	free_queue(&g);
	rig_close(&r);
}

/* rust-vmm/vhost#211: a vring index at or just past the number of queues (an off-by-one in the bound) on every
 * vring message is refused, and the data path's accessor refuses it too. */
static void rust_vmm_vhost_211_vring_index(void)
{
	struct rig r;
	open_negotiated(&r);
	unsigned nq = vhd_vu_dev_num_queues(r.dev);
	CHECK_EQ(nq, 2);
	int fds0 = th_count_fds();
	for (uint32_t i = nq; i < 256; i += (i < nq + 2 ? 1 : 61))
		send_truncated_index(&r, i);
	CHECK(vhd_vu_queue_acquire(r.dev, nq) == NULL);
	CHECK(vhd_vu_queue_acquire(r.dev, UINT32_MAX) == NULL);
	CHECK_EQ(th_count_fds(), fds0);
	CHECK_EQ(get_u64(&r, VHOST_USER_GET_QUEUE_NUM), 1);
	rig_close(&r);
}

/*
 * CVE-2019-14818, CVE-2020-10726: setup messages re-sent over and over on one connection (memory table, memory
 * slots added and removed, every vring fd, the back-end channel, features) replace what they set up: after the
 * first round neither fds nor mappings grow over 100 more, and closing the connection returns both to where they
 * were before it.
 */
static void cve_2020_10726_resent_setup_no_leak(void)
{
	struct rig r;
	rig_open(&r, 1);
	int fds0 = th_count_fds(), maps0 = guest_maps();
	rig_connect(&r);
	negotiate(&r, 0, true);
	set_u64(&r, VHOST_USER_SET_PROTOCOL_FEATURES, get_u64(&r, VHOST_USER_GET_PROTOCOL_FEATURES));
	int fds1 = 0, maps1 = 0;
	for (int i = 0; i < 101; i++) {
		set_mem_table(&r);
		struct vhu_msg m = mk(VHOST_USER_ADD_MEM_REG, sizeof(struct vhost_user_mem_reg));
		m.p.mem_reg.region = (struct vhost_user_memory_region){GPA + 4 * (uint64_t)MEM_SIZE, MEM_SIZE,
								       0x200000000000ull, 0};
		m.fds[0] = r.memfd;
		m.nfds = 1;
		CHECK_EQ(acked(&r, &m), 0);
		struct guest_q g[2];
		for (unsigned q = 0; q < 2; q++) {
			setup_queue(&r, q, &g[q], q * 64 * 1024, false, false);
			enable(&r, q, 1);
			/* A second kick/call/err on a queue that already has one replaces it. */
			for (uint32_t req = VHOST_USER_SET_VRING_KICK; req <= VHOST_USER_SET_VRING_ERR; req++) {
				m = mk(req, 8);
				m.p.u64 = q;
				m.fds[0] = g[q].call;
				m.nfds = 1;
				CHECK_EQ(acked(&r, &m), 0);
			}
		}
		/* The back-end channel must be a unix stream socket; a second one replaces the first. */
		int sp[2];
		CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
		m = mk(VHOST_USER_SET_BACKEND_REQ_FD, 0);
		m.fds[0] = sp[1];
		m.nfds = 1;
		CHECK_EQ(acked(&r, &m), 0);
		close(sp[0]);
		close(sp[1]);
		m = mk(VHOST_USER_REM_MEM_REG, sizeof(struct vhost_user_mem_reg));
		m.p.mem_reg.region = (struct vhost_user_memory_region){GPA + 4 * (uint64_t)MEM_SIZE, MEM_SIZE,
								       0x200000000000ull, 0};
		CHECK_EQ(acked(&r, &m), 0);
		set_u64(&r, VHOST_USER_SET_FEATURES, VHD_BIT(VIRTIO_F_VERSION_1) |
			VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES) | (i & 1 ? VHD_BIT(VIRTIO_NET_F_MRG_RXBUF) : 0));
		for (unsigned q = 0; q < 2; q++)
			free_queue(&g[q]);
		if (i == 0) {
			fds1 = th_count_fds();
			maps1 = guest_maps();
			CHECK(maps1 > maps0); /* the back-end's mapping of the table is seen: the count means something */
		} else {
			check_flat(fds1, maps1);
		}
	}
	leave(&r);
	check_flat(fds0, maps0);
	rig_close(&r);
}

/*
 * CVE-2021-3839: SET_INFLIGHT_FD's num_queues was used to index the queue array unchecked. Inflight tracking is
 * offered; GET/SET_INFLIGHT_FD with num_queues 0 or beyond the device's queues (an fd attached), a queue size that
 * is no split ring size, an area too small, an offset that overflows, a file shorter than the area or not sealed
 * against shrinking are each refused with the value named, no fd kept and no mapping made. A valid pair is
 * accepted.
 */
static void cve_2021_3839_inflight_num_queues(void)
{
	struct rig r;
	open_negotiated(&r);
	CHECK(get_u64(&r, VHOST_USER_GET_PROTOCOL_FEATURES) & VHD_BIT(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD));
	int fds0 = th_count_fds(), maps0 = guest_maps();
	int sealed = memfd_create("infl", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	CHECK(sealed >= 0 && ftruncate(sealed, 4096) == 0 && fcntl(sealed, F_ADD_SEALS, F_SEAL_SHRINK) == 0);
	static const struct {
		uint16_t nq, qsz;
		uint64_t size, off;
		bool use_guest_fd;
		const char *said;
	} bad[] = {
		{0, 64, 4096, 0, false, "num_queues 0 (this device has 2 queues)"},
		{3, 64, 4096, 0, false, "num_queues 3 (this device has 2 queues)"},
		{256, 64, 4096, 0, false, "num_queues 256"},
		{UINT16_MAX, 64, 4096, 0, false, "num_queues 65535"},
		{2, 0, 4096, 0, false, "queue_size 0 is not a split ring size"},
		{2, 6, 4096, 0, false, "queue_size 6 is not"},
		{2, UINT16_MAX, 4096, 0, false, "queue_size 65535 is not"},
		{2, 64, 100, 0, false, "mmap_size 100 below the 2176 bytes"},
		{2, 64, 4096, UINT64_MAX - 100, false, "overflows"},
		{2, 64, 4096, 4096, false, "a file of 4096 bytes, 6272 needed"},
		{1, 64, 4096, 0, true, "not sealed against shrinking"},
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (!bad[i].use_guest_fd) {
			log_clear();
			struct vhu_msg m = mk(VHOST_USER_GET_INFLIGHT_FD, sizeof(struct vhost_user_inflight));
			m.p.inflight = (struct vhost_user_inflight){.num_queues = bad[i].nq, .queue_size = bad[i].qsz};
			send_msg(&r, &m);
			m = get_reply(&r, VHOST_USER_GET_INFLIGHT_FD);
			bool area_fault = strstr(bad[i].said, "mmap_size") || strstr(bad[i].said, "overflows") ||
					  strstr(bad[i].said, "file of");
			if (area_fault) { /* GET itself was fine: its area is dropped */
				CHECK_EQ(m.nfds, 1);
				vhu_msg_close_fds(&m);
			} else {
				CHECK_EQ(m.hdr.size, 0);
				CHECK_EQ(m.nfds, 0);
				CHECK(log_count(bad[i].said) == 1);
			}
		}
		log_clear();
		struct vhu_msg m = mk(VHOST_USER_SET_INFLIGHT_FD, sizeof(struct vhost_user_inflight));
		m.p.inflight = (struct vhost_user_inflight){.mmap_size = bad[i].size, .mmap_offset = bad[i].off,
							    .num_queues = bad[i].nq, .queue_size = bad[i].qsz};
		m.fds[0] = bad[i].use_guest_fd ? r.memfd : sealed;
		m.nfds = 1;
		refused(&r, &m);
		if (log_count(bad[i].said) != 1)
			fprintf(stderr, "case %u: wanted \"%s\" in:\n%s", i, bad[i].said, log_text);
		CHECK_EQ(log_count(bad[i].said), 1);
	}
	/* The real thing: an area from GET, handed back with SET. */
	struct vhu_msg m = mk(VHOST_USER_GET_INFLIGHT_FD, sizeof(struct vhost_user_inflight));
	m.p.inflight = (struct vhost_user_inflight){.num_queues = 2, .queue_size = 64};
	send_msg(&r, &m);
	m = get_reply(&r, VHOST_USER_GET_INFLIGHT_FD);
	CHECK_EQ(m.nfds, 1);
	CHECK_EQ(m.p.inflight.mmap_size, 2 * vhd_vq_inflight_size(false, 64));
	int area = m.fds[0];
	struct vhost_user_inflight got = m.p.inflight;
	m = mk(VHOST_USER_SET_INFLIGHT_FD, sizeof(struct vhost_user_inflight));
	m.p.inflight = got;
	m.fds[0] = area;
	m.nfds = 1;
	CHECK_EQ(acked(&r, &m), 0);
	close(area);
	close(sealed);
	/* The accepted area is mapped and its fd kept (vhd_vu_dev_export() hands it to an upgraded vhostd); nothing
	 * refused is left open. */
	CHECK_EQ(th_count_fds(), fds0 + 1);
	CHECK_EQ(guest_maps(), maps0);
	rig_close(&r);
}

/* ================================================================ raw guest ring + device data path */

#define DGPA 0x300000000ull
#define DQ 256u
#define DMEM (1u << 20)
#define DDATA (64u * 1024u) /* data area offset, after the rings */

struct dev {
	uint8_t *mem;
	struct vhd_mem *vm;
	struct vhd_vq *vq;
	struct virtq_desc *d;
	struct virtq_avail *a;
	struct virtq_used *u;
	uint16_t avail;
	size_t data;
	struct vhd_net_cfg cfg;
	struct vhd_pktpool *pool;
	struct vhd_net_stats st;
	int fds0;
};

static int vq_errors;
static void vq_log(enum vhd_log_level l, const char *msg, void *o)
{
	(void)o;
	vq_errors += l == VHD_LOG_ERR;
	if (getenv("VHD_TEST_VERBOSE"))
		fprintf(stderr, "log: %s\n", msg);
}

static void dev_init(struct dev *v, uint64_t features)
{
	memset(v, 0, sizeof(*v));
	v->fds0 = th_count_fds();
	vq_errors = 0;
	vhd_log_set_handler(vq_log, NULL);
	features |= VHD_BIT(VIRTIO_F_VERSION_1);
	CHECK_EQ(posix_memalign((void **)&v->mem, 4096, DMEM), 0);
	memset(v->mem, 0, DMEM);
	CHECK_EQ(vhd_mem_create(&v->vm), 0);
	struct vhd_mem_region_info ri = {.guest_addr = DGPA, .size = DMEM, .user_addr = DGPA, .host = v->mem};
	CHECK_EQ(vhd_mem_add(v->vm, &ri), 0);
	struct vhd_vq_layout lo;
	CHECK_EQ(vhd_vq_layout(false, DQ, &lo), 0);
	CHECK(lo.size <= DDATA);
	v->d = (struct virtq_desc *)(v->mem + lo.desc_off);
	v->a = (struct virtq_avail *)(v->mem + lo.driver_off);
	v->u = (struct virtq_used *)(v->mem + lo.device_off);
	struct vhd_vq_config c = {.side = VHD_VQ_DEVICE, .num = DQ, .features = features, .desc = v->d,
				  .driver = v->a, .device = v->u, .mem = v->vm, .name = "cve"};
	CHECK_EQ(vhd_vq_create(&c, &v->vq), 0);
	CHECK_EQ(vhd_net_cfg_init(&v->cfg, features), 0);
	CHECK_EQ(vhd_pktpool_create(512, VHD_PKT_DEFAULT_BUF_SIZE, &v->pool), 0);
	v->data = DDATA;
}

static void dev_fini(struct dev *v)
{
	CHECK_EQ(vhd_pktpool_avail(v->pool), 512);
	vhd_pktpool_destroy(v->pool);
	vhd_vq_destroy(v->vq);
	vhd_mem_destroy(v->vm);
	free(v->mem);
	vhd_log_set_handler(NULL, NULL);
	CHECK_EQ(th_count_fds(), v->fds0);
}

/* Copy bytes into the data area; returns their guest address. */
static uint64_t put(struct dev *v, const void *src, size_t len)
{
	if (v->data + len > DMEM)
		v->data = DDATA;
	uint64_t a = DGPA + v->data;
	if (src)
		memcpy(v->mem + v->data, src, len);
	v->data += (len + 15) & ~(size_t)15;
	return a;
}

static void desc(struct dev *v, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	v->d[i] = (struct virtq_desc){vhd_cpu_to_le64(addr), vhd_cpu_to_le32(len), vhd_cpu_to_le16(flags),
				      vhd_cpu_to_le16(next)};
}

/* Make head available (release: descriptors written before are visible to the device's acquire). */
static void post(struct dev *v, uint16_t head)
{
	v->a->ring[v->avail % DQ] = vhd_cpu_to_le16(head);
	v->avail++;
	__atomic_store_n(&v->a->idx, vhd_cpu_to_le16(v->avail), __ATOMIC_RELEASE);
}

static uint16_t used_idx(const struct dev *v)
{
	return vhd_le16(__atomic_load_n(&v->u->idx, __ATOMIC_ACQUIRE));
}

/* A 60-byte frame whose bytes are seed-derived. */
static void frame(uint8_t *f, uint32_t len, uint8_t seed)
{
	for (uint32_t i = 0; i < len; i++)
		f[i] = (uint8_t)(seed + i * 7);
}

static struct virtio_net_hdr_mrg_rxbuf hdr(uint8_t flags, uint16_t cs, uint16_t co)
{
	struct virtio_net_hdr_mrg_rxbuf h;
	memset(&h, 0, sizeof(h));
	h.hdr.flags = flags;
	h.hdr.csum_start = vhd_cpu_to_le16(cs);
	h.hdr.csum_offset = vhd_cpu_to_le16(co);
	return h;
}

/* Dequeue what is available; returns the packets (caller frees). */
static int dequeue(struct dev *v, struct vhd_pkt **pkts, unsigned n)
{
	return vhd_net_dev_dequeue(v->vq, &v->cfg, v->pool, pkts, n, &v->st);
}

/* Frame of len bytes after a header of hs bytes, in one descriptor at slot i. */
static void post_frame(struct dev *v, uint16_t i, const struct virtio_net_hdr_mrg_rxbuf *h, uint32_t len,
		       uint8_t seed)
{
	uint8_t buf[2048];
	uint32_t hs = v->cfg.hdr_size;
	memcpy(buf, h, hs);
	frame(buf + hs, len, seed);
	desc(v, i, put(v, buf, hs + len), hs + len, 0, 0);
	post(v, i);
}

/*
 * CVE-2022-2132: descriptors of length 0, chains shorter than the virtio-net header, and a header split over
 * three descriptors (4 + 4 + 4 bytes) followed by the frame in a fourth. The first two are dropped as bad
 * headers and given back; the third arrives whole with the header's fields; the queue never breaks.
 */
static void cve_2022_2132_short_and_split_headers(void)
{
	struct dev v;
	dev_init(&v, VHD_BIT(VIRTIO_NET_F_CSUM));
	CHECK_EQ(v.cfg.hdr_size, 12);
	/* Chain 0: three zero-length descriptors. */
	desc(&v, 0, put(&v, NULL, 16), 0, VIRTQ_DESC_F_NEXT, 1);
	desc(&v, 1, put(&v, NULL, 16), 0, VIRTQ_DESC_F_NEXT, 2);
	desc(&v, 2, put(&v, NULL, 16), 0, 0, 0);
	post(&v, 0);
	/* Chain 3: 11 bytes, one short of the header. */
	struct virtio_net_hdr_mrg_rxbuf h = hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 14, 16);
	desc(&v, 3, put(&v, &h, 11), 11, 0, 0);
	post(&v, 3);
	/* Chain 4: the header in pieces of 4 over three descriptors, one zero-length descriptor, then 60 bytes. */
	const uint8_t *hb = (const uint8_t *)&h;
	uint8_t f[60];
	frame(f, sizeof(f), 9);
	desc(&v, 4, put(&v, hb, 4), 4, VIRTQ_DESC_F_NEXT, 5);
	desc(&v, 5, put(&v, hb + 4, 4), 4, VIRTQ_DESC_F_NEXT, 6);
	desc(&v, 6, put(&v, hb + 8, 4), 4, VIRTQ_DESC_F_NEXT, 7);
	desc(&v, 7, put(&v, NULL, 16), 0, VIRTQ_DESC_F_NEXT, 8);
	desc(&v, 8, put(&v, f, sizeof(f)), sizeof(f), 0, 0);
	post(&v, 4);
	/* Chain 9: header split 1 + 11, frame split 7 + 53 with a zero-length piece between. */
	desc(&v, 9, put(&v, hb, 1), 1, VIRTQ_DESC_F_NEXT, 10);
	desc(&v, 10, put(&v, hb + 1, 11), 11, VIRTQ_DESC_F_NEXT, 11);
	desc(&v, 11, put(&v, f, 7), 7, VIRTQ_DESC_F_NEXT, 12);
	desc(&v, 12, 0, 0, VIRTQ_DESC_F_NEXT, 13);
	desc(&v, 13, put(&v, f + 7, 53), 53, 0, 0);
	post(&v, 9);
	struct vhd_pkt *p[8];
	CHECK_EQ(dequeue(&v, p, 8), 2);
	for (int k = 0; k < 2; k++) {
		CHECK_EQ(p[k]->len, 60);
		CHECK(memcmp(vhd_pkt_data(p[k]), f, 60) == 0);
		CHECK_EQ(p[k]->meta.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_F_NEEDS_CSUM);
		CHECK_EQ(p[k]->meta.csum_start, 14);
		CHECK_EQ(p[k]->meta.csum_offset, 16);
		vhd_pkt_free(p[k]);
	}
	CHECK_EQ(v.st.bad_header, 2);
	CHECK_EQ(used_idx(&v), 4);
	CHECK_EQ(vhd_vq_error(v.vq), VHD_VQ_OK);
	dev_fini(&v);
}

/*
 * CVE-2020-10725: a descriptor with an address outside guest memory (or at 2^64-1) but length 0 must not be
 * translated or touched; the chain carrying it is served. The same address with length 1 breaks the queue with
 * VHD_VQ_E_ADDR / VHD_VQ_E_OVERFLOW, logged once.
 */
static void cve_2020_10725_zero_len_invalid_addr(void)
{
	static const uint64_t bad_addr[] = {0, 0xdead00000000ull, UINT64_MAX};
	for (unsigned k = 0; k < 3; k++) {
		struct dev v;
		dev_init(&v, 0);
		struct virtio_net_hdr_mrg_rxbuf h = hdr(0, 0, 0);
		uint8_t buf[12 + 60];
		memcpy(buf, &h, 12);
		frame(buf + 12, 60, 3);
		desc(&v, 0, bad_addr[k], 0, VIRTQ_DESC_F_NEXT, 1);
		desc(&v, 1, put(&v, buf, sizeof(buf)), sizeof(buf), VIRTQ_DESC_F_NEXT, 2);
		desc(&v, 2, bad_addr[k], 0, 0, 0);
		post(&v, 0);
		struct vhd_pkt *p;
		CHECK_EQ(dequeue(&v, &p, 1), 1);
		CHECK_EQ(p->len, 60);
		CHECK(memcmp(vhd_pkt_data(p), buf + 12, 60) == 0);
		vhd_pkt_free(p);
		CHECK_EQ(vhd_vq_error(v.vq), VHD_VQ_OK);
		CHECK_EQ(vq_errors, 0);
		/* Length 1 at the same address: the queue breaks, once, naming the fault. */
		desc(&v, 3, put(&v, buf, sizeof(buf)), sizeof(buf), VIRTQ_DESC_F_NEXT, 4);
		desc(&v, 4, bad_addr[k], 1, 0, 0);
		post(&v, 3);
		CHECK_EQ(dequeue(&v, &p, 1), -EIO);
		CHECK_EQ(dequeue(&v, &p, 1), -EIO);
		CHECK_EQ(vhd_vq_error(v.vq), k == 2 ? VHD_VQ_E_OVERFLOW : VHD_VQ_E_ADDR);
		CHECK_EQ(vq_errors, 1);
		dev_fini(&v);
	}
}

/*
 * CVE-2018-1059: an indirect table was translated as one contiguous range although it may straddle two guest
 * regions that are not adjacent in our address space, and read past the end of the first. Here guest memory is
 * two regions, adjacent in guest space, apart in ours; a table across the boundary is read correctly (its second
 * half from the second region), and a table running past the end of guest memory breaks the queue
 * (VHD_VQ_E_ADDR) instead of being read.
 */
static void cve_2018_1059_indirect_across_regions(void)
{
	struct dev v;
	dev_init(&v, VHD_BIT(VIRTIO_F_INDIRECT_DESC));
	uint8_t *second;
	CHECK_EQ(posix_memalign((void **)&second, 4096, 8192), 0);
	memset(second, 0, 8192);
	struct vhd_mem_region_info ri = {.guest_addr = DGPA + DMEM, .size = 8192, .user_addr = DGPA + DMEM,
					 .host = second};
	CHECK_EQ(vhd_mem_add(v.vm, &ri), 0);
	CHECK(second != v.mem + DMEM);
	/* Indirect table of 4 entries, 2 in each region. */
	struct virtio_net_hdr_mrg_rxbuf h = hdr(0, 0, 0);
	uint8_t f[60];
	frame(f, 60, 77);
	uint64_t ha = put(&v, &h, 12), fa = put(&v, f, 30), fb = put(&v, f + 30, 30);
	struct virtq_desc t[4] = {
		{vhd_cpu_to_le64(ha), vhd_cpu_to_le32(6), vhd_cpu_to_le16(VIRTQ_DESC_F_NEXT), vhd_cpu_to_le16(1)},
		{vhd_cpu_to_le64(ha + 6), vhd_cpu_to_le32(6), vhd_cpu_to_le16(VIRTQ_DESC_F_NEXT), vhd_cpu_to_le16(2)},
		{vhd_cpu_to_le64(fa), vhd_cpu_to_le32(30), vhd_cpu_to_le16(VIRTQ_DESC_F_NEXT), vhd_cpu_to_le16(3)},
		{vhd_cpu_to_le64(fb), vhd_cpu_to_le32(30), 0, 0},
	};
	memcpy(v.mem + DMEM - 32, t, 32);
	memcpy(second, t + 2, 32);
	/* What lies past the first region in our address space must not be what is read. */
	desc(&v, 0, DGPA + DMEM - 32, 64, VIRTQ_DESC_F_INDIRECT, 0);
	post(&v, 0);
	struct vhd_pkt *p;
	CHECK_EQ(dequeue(&v, &p, 1), 1);
	CHECK_EQ(p->len, 60);
	CHECK(memcmp(vhd_pkt_data(p), f, 60) == 0);
	vhd_pkt_free(p);
	CHECK_EQ(vhd_vq_error(v.vq), VHD_VQ_OK);
	/* A table whose last entry is past the end of guest memory. */
	desc(&v, 1, DGPA + DMEM + 8192 - 48, 64, VIRTQ_DESC_F_INDIRECT, 0);
	post(&v, 1);
	CHECK_EQ(dequeue(&v, &p, 1), -EIO);
	CHECK_EQ(vhd_vq_error(v.vq), VHD_VQ_E_ADDR);
	CHECK_EQ(vq_errors, 1);
	dev_fini(&v);
	free(second);
}

/*
 * CVE-2024-11614: csum_start (and csum_start + csum_offset + 2) past the frame made the back-end read and write
 * outside the packet when completing the checksum. Every such header is dropped as bad_header; the boundary case
 * (checksum field ending exactly at the frame's end) is accepted.
 */
static void cve_2024_11614_csum_start_past_packet(void)
{
	struct dev v;
	dev_init(&v, VHD_BIT(VIRTIO_NET_F_CSUM));
	static const uint16_t bad[][2] = {{60, 0}, {58, 1}, {0xffff, 0}, {0xfff0, 0x20}, {14, 0xffff}, {59, 0}};
	unsigned nbad = sizeof(bad) / sizeof(bad[0]);
	for (unsigned i = 0; i < nbad; i++) {
		struct virtio_net_hdr_mrg_rxbuf h = hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, bad[i][0], bad[i][1]);
		post_frame(&v, (uint16_t)i, &h, 60, (uint8_t)i);
	}
	struct virtio_net_hdr_mrg_rxbuf ok = hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 34, 24); /* 34 + 24 + 2 == 60 */
	post_frame(&v, (uint16_t)nbad, &ok, 60, 1);
	struct vhd_pkt *p[8];
	CHECK_EQ(dequeue(&v, p, 8), 1);
	CHECK_EQ(p[0]->meta.csum_start, 34);
	CHECK_EQ(p[0]->meta.csum_offset, 24);
	vhd_pkt_free(p[0]);
	CHECK_EQ(v.st.bad_header, nbad);
	CHECK_EQ(used_idx(&v), nbad + 1);
	CHECK_EQ(vhd_vq_error(v.vq), VHD_VQ_OK);
	dev_fini(&v);
}

/* ---------------- CVE-2019-3900: tiny receive buffers while flooded */

struct refill {
	struct dev *v;
	atomic_bool stop;
	atomic_uint posted;
};

/* The guest: keeps every ring slot filled with a 1-byte writable buffer, as fast as the device takes them. */
static void *refill_thread(void *arg)
{
	struct refill *r = arg;
	struct dev *v = r->v;
	while (!atomic_load(&r->stop)) {
		uint16_t used = used_idx(v);
		while ((uint16_t)(v->avail - used) < DQ) {
			post(v, v->avail % DQ);
			atomic_fetch_add(&r->posted, 1);
		}
		sched_yield();
	}
	return NULL;
}

static void rx_tiny_buffers(uint64_t features)
{
	struct dev v;
	dev_init(&v, features);
	for (uint16_t i = 0; i < DQ; i++)
		desc(&v, i, put(&v, NULL, 16), 1, VIRTQ_DESC_F_WRITE, 0);
	struct vhd_pkt *pk[32];
	CHECK_EQ(vhd_pkt_alloc_bulk(v.pool, pk, 32), 32);
	for (unsigned i = 0; i < 32; i++) {
		frame(vhd_pkt_data(pk[i]), 1000, (uint8_t)i);
		pk[i]->len = 1000;
	}
	/* Ring full of 1-byte buffers: one call returns at most VHD_NET_RX_WASTE_MAX of them, delivering nothing. */
	for (uint16_t i = 0; i < DQ; i++)
		post(&v, i);
	uint16_t u0 = used_idx(&v);
	int r = vhd_net_dev_enqueue(v.vq, &v.cfg, pk, 32, &v.st);
	CHECK(r >= 0 && r < 32);
	uint16_t took = (uint16_t)(used_idx(&v) - u0);
	CHECK(took > 0 && took <= VHD_NET_RX_WASTE_MAX);
	CHECK_EQ(v.st.errors, took);
	CHECK_EQ(v.st.packets, 0);
	CHECK_EQ(v.st.no_buffers + v.st.too_big, 32);
	/* Now the guest reposts them as fast as they come back: every call stays within the budget. */
	struct refill rf = {.v = &v};
	atomic_init(&rf.stop, false);
	atomic_init(&rf.posted, 0);
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, refill_thread, &rf), 0);
	uint64_t dropped = 0;
	int calls = (int)th_scaled(2000) < 100 ? 100 : (int)th_scaled(2000);
	for (int call = 0; call < calls; call++) {
		u0 = used_idx(&v);
		r = vhd_net_dev_enqueue(v.vq, &v.cfg, pk, 32, &v.st);
		CHECK(r >= 0 && r <= 32);
		took = (uint16_t)(used_idx(&v) - u0);
		CHECK(took <= VHD_NET_RX_WASTE_MAX);
		dropped += 32;
	}
	atomic_store(&rf.stop, true);
	pthread_join(th, NULL);
	CHECK_EQ(v.st.packets, 0);
	CHECK(v.st.no_buffers + v.st.too_big >= dropped);
	CHECK_EQ(vhd_vq_error(v.vq), VHD_VQ_OK);
	for (unsigned i = 0; i < 32; i++)
		vhd_pkt_free(pk[i]);
	dev_fini(&v);
}

/*
 * CVE-2019-3900: a guest posting 1-byte receive buffers while a flood arrives kept the kernel's vhost thread
 * copying forever. One vhd_net_dev_enqueue() call now gives back at most VHD_NET_RX_WASTE_MAX unusable buffers
 * (counted in errors) and then returns, the undelivered packets counted as no_buffers, even while the guest
 * refills as fast as it can; with and without mergeable buffers.
 */
static void cve_2019_3900_rx_tiny_buffers_budget(void)
{
	rx_tiny_buffers(0);
}

static void cve_2019_3900_rx_tiny_buffers_budget_mrg(void)
{
	rx_tiny_buffers(VHD_BIT(VIRTIO_NET_F_MRG_RXBUF));
}

/* ---------------- CVE-2020-14375: the header read twice */

struct flipper {
	struct virtio_net_hdr *h[64];
	atomic_bool stop;
};

/*
 * The guest rewrites csum_start between a valid and an out-of-frame value, as fast as it can. A guest is another
 * process (or a VM): its writes race with the device's plain reads of guest memory by design, which is what this
 * case attacks, so ThreadSanitizer is kept out of this thread's stores (it would report the attack, not a bug).
 */
__attribute__((no_sanitize("thread"))) static void *flip_thread(void *arg)
{
	struct flipper *fl = arg;
	uint16_t vals[2] = {vhd_cpu_to_le16(14), vhd_cpu_to_le16(0xfff0)};
	for (unsigned k = 0; !atomic_load_explicit(&fl->stop, memory_order_relaxed); k++)
		for (unsigned i = 0; i < 64; i++)
			__atomic_store_n(&fl->h[i]->csum_start, vals[(k + i) & 1], __ATOMIC_RELAXED);
	return NULL;
}

/*
 * CVE-2020-14375: the back-end validated the virtio-net header in guest memory and then read it again to use it,
 * so a guest changing it in between got an unchecked value used. dequeue_one() copies the header into a local
 * before any check (src/net/net_dev.c); here a guest thread flips csum_start between valid and past-the-frame
 * while 64 headers (half split over two descriptors) are dequeued again and again: every packet that comes out
 * carries the valid value, every other one is a counted bad_header, nothing else.
 */
static void cve_2020_14375_header_double_fetch(void)
{
	struct dev v;
	dev_init(&v, VHD_BIT(VIRTIO_NET_F_CSUM));
	struct flipper fl;
	atomic_init(&fl.stop, false);
	uint8_t f[60];
	frame(f, 60, 5);
	for (uint16_t i = 0; i < 64; i++) {
		struct virtio_net_hdr_mrg_rxbuf h = hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 14, 16);
		uint64_t ha = put(&v, &h, 12);
		fl.h[i] = (struct virtio_net_hdr *)(v.mem + (ha - DGPA));
		if (i & 1) {
			desc(&v, (uint16_t)(2 * i), ha, 7, VIRTQ_DESC_F_NEXT, (uint16_t)(2 * i + 1));
			desc(&v, (uint16_t)(2 * i + 1), ha + 7, 5, VIRTQ_DESC_F_NEXT, (uint16_t)(128 + i));
		} else {
			desc(&v, (uint16_t)(2 * i), ha, 12, VIRTQ_DESC_F_NEXT, (uint16_t)(128 + i));
		}
		desc(&v, (uint16_t)(128 + i), put(&v, f, 60), 60, 0, 0);
	}
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, flip_thread, &fl), 0);
	unsigned rounds = th_scaled(2000) < 100 ? 100 : (unsigned)th_scaled(2000), got = 0;
	for (unsigned r = 0; r < rounds; r++) {
		for (uint16_t i = 0; i < 64; i++)
			post(&v, (uint16_t)(2 * i));
		struct vhd_pkt *p[64];
		int n = dequeue(&v, p, 64);
		CHECK(n >= 0);
		for (int k = 0; k < n; k++) {
			CHECK_EQ(p[k]->meta.csum_start, 14);
			CHECK((uint32_t)p[k]->meta.csum_start + p[k]->meta.csum_offset + 2 <= p[k]->len);
			vhd_pkt_free(p[k]);
		}
		got += (unsigned)n;
	}
	atomic_store(&fl.stop, true);
	pthread_join(th, NULL);
	CHECK_EQ(got + v.st.bad_header, rounds * 64);
	CHECK_EQ(vhd_vq_error(v.vq), VHD_VQ_OK);
	dev_fini(&v);
}

static const struct th_case cases[] = {
	{"cve_2019_14818_fd_leak_every_message", cve_2019_14818_fd_leak_every_message, 120},
	{"cve_2020_10722_log_base_overflow", cve_2020_10722_log_base_overflow, 0},
	{"cve_2018_1059_mem_region_overflow", cve_2018_1059_mem_region_overflow, 0},
	{"cve_2020_10723_vring_index_truncation", cve_2020_10723_vring_index_truncation, 0},
	{"rust_vmm_vhost_211_vring_index", rust_vmm_vhost_211_vring_index, 0},
	{"cve_2020_10726_resent_setup_no_leak", cve_2020_10726_resent_setup_no_leak, 120},
	{"cve_2021_3839_inflight_num_queues", cve_2021_3839_inflight_num_queues, 0},
	{"cve_2022_2132_short_and_split_headers", cve_2022_2132_short_and_split_headers, 0},
	{"cve_2020_10725_zero_len_invalid_addr", cve_2020_10725_zero_len_invalid_addr, 0},
	{"cve_2018_1059_indirect_across_regions", cve_2018_1059_indirect_across_regions, 0},
	{"cve_2024_11614_csum_start_past_packet", cve_2024_11614_csum_start_past_packet, 0},
	{"cve_2019_3900_rx_tiny_buffers_budget", cve_2019_3900_rx_tiny_buffers_budget, 120},
	{"cve_2019_3900_rx_tiny_buffers_budget_mrg", cve_2019_3900_rx_tiny_buffers_budget_mrg, 120},
	{"cve_2020_14375_header_double_fetch", cve_2020_14375_header_double_fetch, 120},
};
TH_MAIN("test_cve", cases)
