/* SPDX-License-Identifier: MIT */
/*
 * vhost-user back-end, driven by a hand-written front-end in the same process: real unix sockets, real fds
 * (memfd guest memory, eventfds), every message built byte by byte. The test plays the guest too: it runs a
 * driver-side virtqueue over the memfd and checks what the back-end's queue sees.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "harness.h"
#include "vhostd/iotlb.h"
#include "vu_rig.h"

/* ------------------------------------------------------------------ cases */

static void test_negotiation(void)
{
	struct rig r;
	rig_open(&r, 2);
	rig_connect(&r);
	CHECK_EQ(r.ev.connected, 1);
	negotiate(&r, VHD_BIT(VIRTIO_NET_F_MRG_RXBUF), true);
	CHECK_EQ(get_u64(&r, VHOST_USER_GET_QUEUE_NUM), 2);
	CHECK_EQ(get_u64(&r, VHOST_USER_GET_MAX_MEM_SLOTS), 32);
	/* Features never offered are refused, and the refusal is acknowledged as a failure. */
	struct vhu_msg m = mk(VHOST_USER_SET_FEATURES, 8);
	m.p.u64 = VHD_BIT(VIRTIO_F_VERSION_1) | VHD_BIT(VIRTIO_F_NOTIFICATION_DATA);
	CHECK(acked(&r, &m) != 0);
	m = mk(VHOST_USER_NET_SET_MTU, 8);
	m.p.u64 = 9000;
	CHECK_EQ(acked(&r, &m), 0);
	/* Config space: MAC, link up, queue pairs, the MTU just set. */
	m = mk(VHOST_USER_GET_CONFIG, 12 + sizeof(struct virtio_net_config));
	m.p.config.size = sizeof(struct virtio_net_config);
	send_msg(&r, &m);
	m = get_reply(&r, VHOST_USER_GET_CONFIG);
	struct virtio_net_config nc;
	memcpy(&nc, m.p.config.region, sizeof(nc));
	CHECK_EQ(nc.status, VIRTIO_NET_S_LINK_UP);
	CHECK_EQ(nc.max_virtqueue_pairs, 2);
	CHECK_EQ(nc.mtu, 9000);
	/* Out of range config read: an empty reply. */
	m = mk(VHOST_USER_GET_CONFIG, 12 + 8);
	m.p.config.offset = 20;
	m.p.config.size = 8;
	send_msg(&r, &m);
	m = get_reply(&r, VHOST_USER_GET_CONFIG);
	CHECK_EQ(m.hdr.size, 0);
	/* SEND_RARP is kept for the forwarding code to take once. */
	uint8_t mac[6];
	CHECK(!vhd_vu_dev_take_rarp(r.dev, mac));
	m = mk(VHOST_USER_SEND_RARP, 8);
	memcpy(&m.p.u64, (uint8_t[8]){0x52, 0x54, 0, 0x12, 0x34, 0x56}, 8);
	CHECK_EQ(acked(&r, &m), 0);
	CHECK(vhd_vu_dev_take_rarp(r.dev, mac));
	CHECK(mac[0] == 0x52 && mac[5] == 0x56);
	CHECK(!vhd_vu_dev_take_rarp(r.dev, mac));
	uint8_t fr[60];
	CHECK_EQ(vhd_vu_build_rarp(mac, fr), 60);
	CHECK(fr[0] == 0xff && fr[12] == 0x80 && fr[13] == 0x35 && fr[21] == 3 && fr[22] == 0x52 && fr[37] == 0x56);
	/* Status round trip. */
	m = mk(VHOST_USER_SET_STATUS, 8);
	m.p.u64 = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
	CHECK_EQ(acked(&r, &m), 0);
	CHECK_EQ(get_u64(&r, VHOST_USER_GET_STATUS), 3);
	CHECK_EQ(r.ev.status, 1);
	rig_close(&r);
}

/* A split or packed queue set up message by message, used by the guest, then stopped with GET_VRING_BASE. */
static void queue_lifecycle(bool packed)
{
	struct rig r;
	rig_open(&r, 1);
	rig_connect(&r);
	negotiate(&r, packed ? VHD_BIT(VIRTIO_F_RING_PACKED) : 0, true);
	set_mem_table(&r);
	struct guest_q g;
	setup_queue(&r, 1, &g, 0, packed, false);
	/* PROTOCOL_FEATURES negotiated: disabled until SET_VRING_ENABLE. */
	CHECK_EQ(r.ev.started[1], 0);
	CHECK(vhd_vu_queue_acquire(r.dev, 1) == NULL);
	enable(&r, 1, 1);
	CHECK_EQ(r.ev.started[1], 1);
	for (int i = 0; i < 3; i++)
		pass_one(&r, 1, &g, (uint8_t)(0x40 + i));
	/* QEMU 7.2+ stop order: status 0 first (which must not lose the ring positions), then disable, then
	 * GET_VRING_BASE, which reports where the ring stopped. */
	struct vhu_msg m = mk(VHOST_USER_SET_STATUS, 8);
	m.p.u64 = 0;
	send_msg(&r, &m);
	enable(&r, 1, 0);
	CHECK_EQ(r.ev.stopped[1], 1);
	CHECK(vhd_vu_queue_acquire(r.dev, 1) == NULL);
	m = mk(VHOST_USER_GET_VRING_BASE, 8);
	m.p.state.index = 1;
	send_msg(&r, &m);
	m = get_reply(&r, VHOST_USER_GET_VRING_BASE);
	CHECK_EQ(m.p.state.index, 1);
	/* Packed: the used position and wrap counter ride in bits 16-31, as QEMU reads them. */
	CHECK_EQ(m.p.state.num, packed ? (VHD_VQ_PACKED_BASE_INIT | 3) * 0x10001u : 3);
	free_queue(&g);
	rig_close(&r);
}

/*
 * A migration's hand-over: the source stops the ring (GET_VRING_BASE) after the packed ring wrapped, and the
 * destination starts from what it reported (SET_VRING_BASE: split, the avail index; packed, position and wrap
 * counter in both halves): the guest's next buffers arrive, none lost or seen twice.
 */
static void vring_base_handoff(bool packed)
{
	struct rig r;
	rig_open(&r, 1);
	rig_connect(&r);
	negotiate(&r, packed ? VHD_BIT(VIRTIO_F_RING_PACKED) : 0, true);
	set_mem_table(&r);
	struct guest_q g;
	setup_queue(&r, 1, &g, 0, packed, false);
	enable(&r, 1, 1);
	for (int i = 0; i < QSZ + 5; i++)
		pass_one(&r, 1, &g, (uint8_t)i);
	enable(&r, 1, 0);
	struct vhu_msg m = mk(VHOST_USER_GET_VRING_BASE, 8);
	m.p.state.index = 1;
	send_msg(&r, &m);
	m = get_reply(&r, VHOST_USER_GET_VRING_BASE);
	uint32_t base = m.p.state.num;
	/* Packed: 5 slots into the second lap, whose wrap counter is 0. */
	CHECK_EQ(base, packed ? 5u * 0x10001u : (uint32_t)(QSZ + 5));
	/* The destination: the same rings, the reported base, a new kick. */
	m = mk(VHOST_USER_SET_VRING_BASE, 8);
	m.p.state = (struct vhost_vring_state){1, base};
	send_msg(&r, &m);
	int kick = eventfd(0, EFD_CLOEXEC);
	m = mk(VHOST_USER_SET_VRING_KICK, 8);
	m.p.u64 = 1;
	m.fds[0] = kick;
	m.nfds = 1;
	send_msg(&r, &m);
	enable(&r, 1, 1);
	for (int i = 0; i < 3; i++)
		pass_one(&r, 1, &g, (uint8_t)(0xc0 + i));
	close(kick);
	free_queue(&g);
	rig_close(&r);
}

static void test_vring_base_handoff_split(void) { vring_base_handoff(false); }
static void test_vring_base_handoff_packed(void) { vring_base_handoff(true); }

static void test_queue_split(void) { queue_lifecycle(false); }
static void test_queue_packed(void) { queue_lifecycle(true); }

static void test_no_protocol_features_nofd(void)
{
	struct rig r;
	rig_open(&r, 1);
	rig_connect(&r);
	negotiate(&r, 0, false);
	set_mem_table(&r);
	struct guest_q g;
	/* Without PROTOCOL_FEATURES the ring starts at the kick; NOFD means the back-end polls. */
	setup_queue(&r, 0, &g, 0, false, true);
	CHECK_EQ(r.ev.started[0], 1);
	pass_one(&r, 0, &g, 7);
	/* The memory table replaced under a running queue: it stops, then restarts on the new table. */
	set_mem_table(&r);
	CHECK_EQ(r.ev.stopped[0], 1);
	CHECK_EQ(r.ev.started[0], 2);
	pass_one(&r, 0, &g, 8);
	free_queue(&g);
	rig_close(&r);
}

/* Unless asked for, the config space is not offered (QEMU's vhost-user-net warns when it is), and reading it is
 * refused with the empty reply that means failure. */
static void test_config_space_off_by_default(void)
{
	struct rig r;
	rig_config_space = false;
	rig_open(&r, 1);
	rig_config_space = true;
	rig_connect(&r);
	negotiate(&r, 0, true);
	uint64_t p = get_u64(&r, VHOST_USER_GET_PROTOCOL_FEATURES);
	CHECK(!(p & VHD_BIT(VHOST_USER_PROTOCOL_F_CONFIG)));
	CHECK(p & VHD_BIT(VHOST_USER_PROTOCOL_F_MQ));
	log_clear();
	struct vhu_msg m = mk(VHOST_USER_GET_CONFIG, 12 + sizeof(struct virtio_net_config));
	m.p.config.size = sizeof(struct virtio_net_config);
	send_msg(&r, &m);
	m = get_reply(&r, VHOST_USER_GET_CONFIG);
	CHECK_EQ(m.hdr.size, 0);
	CHECK_EQ(log_count("GET_CONFIG sent without negotiating its protocol feature"), 1);
	/* Still connected: a refused request is not a broken stream. */
	CHECK(vhd_vu_dev_connected(r.dev));
	rig_close(&r);
}

/* READY once both queues of the first pair run (and every other enabled one), NOT_READY when that ends. */
static void test_ready_event(void)
{
	struct rig r;
	rig_open(&r, 2);
	rig_connect(&r);
	negotiate(&r, 0, true);
	set_mem_table(&r);
	struct guest_q g0, g1, g2;
	setup_queue(&r, 0, &g0, 0, false, false);
	setup_queue(&r, 1, &g1, 64 * 1024, false, false);
	setup_queue(&r, 2, &g2, 128 * 1024, false, false);
	enable(&r, 0, 1);
	CHECK_EQ(r.ev.ready, 0);
	enable(&r, 2, 1);
	CHECK_EQ(r.ev.ready, 0);
	enable(&r, 1, 1);
	CHECK_EQ(r.ev.ready, 1);
	enable(&r, 2, 0); /* a disabled extra queue does not matter */
	CHECK_EQ(r.ev.ready, 1);
	CHECK_EQ(r.ev.not_ready, 0);
	enable(&r, 0, 0);
	CHECK_EQ(r.ev.not_ready, 1);
	enable(&r, 0, 1);
	CHECK_EQ(r.ev.ready, 2);
	close(r.fe);
	r.fe = -1;
	CHECK(vhd_vu_dev_dispatch(r.dev) < 0);
	CHECK_EQ(r.ev.not_ready, 2);
	free_queue(&g0);
	free_queue(&g1);
	free_queue(&g2);
	rig_close(&r);
}

/* Each hostile message is refused (REPLY_ACK failure), logged, and the device keeps serving. */
static void test_hostile_messages(void)
{
	struct rig r;
	rig_open(&r, 1);
	int fds0 = th_count_fds();
	rig_connect(&r);
	negotiate(&r, 0, true);
	int errs = log_errors;
	struct vhu_msg m;

	m = mk(VHOST_USER_SET_VRING_NUM, 8);
	m.p.state = (struct vhost_vring_state){0xffffffffu, 64};
	CHECK(acked(&r, &m) != 0); /* index not truncated to 8 or 16 bits */
	m.p.state = (struct vhost_vring_state){256, 64};
	CHECK(acked(&r, &m) != 0);
	m.p.state = (struct vhost_vring_state){0, 0};
	CHECK(acked(&r, &m) != 0);
	m.p.state = (struct vhost_vring_state){0, 65536};
	CHECK(acked(&r, &m) != 0);
	m = mk(VHOST_USER_SET_VRING_BASE, 8);
	m.p.state = (struct vhost_vring_state){0, 0x10000};
	CHECK(acked(&r, &m) != 0);
	m = mk(VHOST_USER_SET_VRING_ADDR, 16); /* short payload */
	CHECK(acked(&r, &m) != 0);
	m = mk(VHOST_USER_SET_VRING_ENABLE, 8);
	m.p.state = (struct vhost_vring_state){0, 2};
	CHECK(acked(&r, &m) != 0);
	m = mk(VHOST_USER_SET_VRING_CALL, 8); /* neither fd nor NOFD */
	m.p.u64 = 0;
	CHECK(acked(&r, &m) != 0);
	m = mk(VHOST_USER_SET_VRING_KICK, 8);
	m.p.u64 = 0x10000 | VHOST_USER_VRING_NOFD; /* stray bits */
	CHECK(acked(&r, &m) != 0);

	/* Memory tables: region wrapping the guest address space, a size past the fd's end, fd/region mismatch,
	 * too many regions, overlapping regions. */
	m = mk(VHOST_USER_SET_MEM_TABLE, 8 + 32);
	m.p.memory.nregions = 1;
	m.p.memory.regions[0] = (struct vhost_user_memory_region){UINT64_MAX - 4095, 8192, 0x1000, 0};
	m.fds[0] = r.memfd;
	m.nfds = 1;
	CHECK(acked(&r, &m) != 0);
	m.p.memory.regions[0] = (struct vhost_user_memory_region){0, MEM_SIZE, 0x1000, UINT64_MAX - 10};
	CHECK(acked(&r, &m) != 0);
	m.nfds = 0;
	CHECK(acked(&r, &m) != 0);
	m = mk(VHOST_USER_SET_MEM_TABLE, sizeof(struct vhost_user_memory));
	m.p.memory.nregions = 9;
	CHECK(acked(&r, &m) != 0);
	m = mk(VHOST_USER_SET_MEM_TABLE, 8 + 64);
	m.p.memory.nregions = 2;
	m.p.memory.regions[0] = (struct vhost_user_memory_region){0, MEM_SIZE, 0x1000, 0};
	m.p.memory.regions[1] = (struct vhost_user_memory_region){4096, 4096, 0x1000, 0};
	m.fds[0] = r.memfd;
	m.fds[1] = r.memfd;
	m.nfds = 2;
	CHECK(acked(&r, &m) != 0);

	/* Messages for features not offered, and unknown ones. */
	m = mk(VHOST_USER_IOTLB_MSG, sizeof(struct vhost_iotlb_msg));
	CHECK(acked(&r, &m) != 0);
	m = mk(VHOST_USER_SET_LOG_BASE, 16);
	m.fds[0] = r.memfd;
	m.nfds = 1;
	CHECK(acked(&r, &m) != 0);
	m = mk(200, 0);
	CHECK(acked(&r, &m) != 0);
	/* GET_VRING_BASE on a bad index still gets a reply (empty), so the front-end does not hang. */
	m = mk(VHOST_USER_GET_VRING_BASE, 8);
	m.p.state.index = 99;
	send_msg(&r, &m);
	m = get_reply(&r, VHOST_USER_GET_VRING_BASE);
	CHECK_EQ(m.hdr.size, 0);

	CHECK(log_errors > errs);
	CHECK(vhd_vu_dev_connected(r.dev));
	/* Still serving. */
	CHECK_EQ(get_u64(&r, VHOST_USER_GET_QUEUE_NUM), 1);
	/* No fd we sent stayed open in the back-end: only the connection's two ends are extra, less the listening
	 * socket, closed while a front-end is connected. */
	CHECK_EQ(th_count_fds(), fds0 + 1);

	/* A header promising an oversized payload leaves the stream unusable: the connection is closed... */
	struct vhost_user_header h = {VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, 1u << 20};
	CHECK(send(r.fe, &h, sizeof(h), 0) == sizeof(h));
	CHECK(vhd_vu_dev_dispatch(r.dev) < 0);
	CHECK(!vhd_vu_dev_connected(r.dev));
	CHECK_EQ(r.ev.disconnected, 1);
	close(r.fe);
	/* ...and the next front-end is served. */
	rig_connect(&r);
	CHECK_EQ(get_u64(&r, VHOST_USER_GET_QUEUE_NUM), 1);
	rig_close(&r);
}

/* Front-ends come and go 100 times with full setups: no fd or mapping is left behind. */
static void test_reconnect_no_leak(void)
{
	struct rig r;
	rig_open(&r, 1);
	int fds0 = -1, maps0 = -1;
	for (int i = 0; i < 100; i++) {
		rig_connect(&r);
		negotiate(&r, (i & 1) ? VHD_BIT(VIRTIO_F_RING_PACKED) : 0, true);
		set_mem_table(&r);
		struct guest_q g;
		setup_queue(&r, 0, &g, 0, i & 1, false);
		enable(&r, 0, 1);
		pass_one(&r, 0, &g, (uint8_t)i);
		free_queue(&g);
		close(r.fe);
		r.fe = -1;
		CHECK_EQ(vhd_vu_dev_dispatch(r.dev), -ECONNRESET);
		CHECK(!vhd_vu_dev_connected(r.dev));
		if (i == 1) {
			fds0 = th_count_fds();
			maps0 = th_count_maps();
		} else if (i > 1) {
			CHECK_EQ(th_count_fds(), fds0);
			CHECK_EQ(th_count_maps(), maps0);
		}
	}
	CHECK_EQ(r.ev.disconnected, 100);
	rig_close(&r);
}

/* Client mode: the back-end connects to the front-end's socket and reconnects with back-off when it goes. */
static void test_client_reconnect(void)
{
	char path[108];
	snprintf(path, sizeof(path), "/tmp/vhd-test-vuc-%d.sock", getpid());
	unlink(path);
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, path);
	CHECK(bind(ls, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(listen(ls, 1) == 0);
	struct events ev = {0};
	struct vhd_vu_config c = {.path = path, .client = true, .max_queue_pairs = 1, .event = on_event,
				  .opaque = &ev, .reconnect_min_ms = 10, .reconnect_max_ms = 40};
	struct vhd_vu_dev *dev;
	CHECK_EQ(vhd_vu_dev_create(&c, &dev), 0);
	for (int round = 0; round < 3; round++) {
		/* Wait (through the library's own timeout) until it has connected. */
		for (int i = 0; i < 200 && !vhd_vu_dev_connected(dev); i++) {
			int t = vhd_vu_dev_timeout_ms(dev);
			CHECK(t >= 0 && t <= 40);
			poll(NULL, 0, t);
			vhd_vu_dev_dispatch(dev);
		}
		CHECK(vhd_vu_dev_connected(dev));
		int fe = accept(ls, NULL, NULL);
		CHECK(fe >= 0);
		struct vhu_msg m = mk(VHOST_USER_GET_FEATURES, 0);
		CHECK_EQ(vhu_msg_send(fe, &m), 0);
		CHECK_EQ(vhd_vu_dev_dispatch(dev), 0);
		CHECK_EQ(vhu_msg_recv(fe, &m), 0);
		CHECK(m.p.u64 & VHD_BIT(VIRTIO_F_VERSION_1));
		close(fe);
		CHECK(vhd_vu_dev_dispatch(dev) < 0);
		CHECK(!vhd_vu_dev_connected(dev));
	}
	CHECK_EQ(ev.connected, 3);
	CHECK_EQ(ev.disconnected, 3);
	vhd_vu_dev_destroy(dev);
	close(ls);
	unlink(path);
}

/* Setup messages repeated on one connection replace state: fds and mappings do not pile up. */
static void test_repeated_setup_no_leak(void)
{
	struct rig r;
	rig_open(&r, 1);
	rig_connect(&r);
	negotiate(&r, 0, true);
	int fds0 = 0, maps0 = 0;
	for (int i = 0; i < 50; i++) {
		set_mem_table(&r);
		struct guest_q g;
		setup_queue(&r, 0, &g, 0, false, false);
		enable(&r, 0, 1);
		struct vhu_msg m = mk(VHOST_USER_SET_BACKEND_REQ_FD, 0);
		m.fds[0] = g.call;
		m.nfds = 1;
		send_msg(&r, &m);
		/* The queue was set up anew: the ring restarts at base 0, as the front-end said. */
		free_queue(&g);
		if (i == 1) {
			fds0 = th_count_fds();
			maps0 = th_count_maps();
		} else if (i > 1) {
			CHECK_EQ(th_count_fds(), fds0);
			CHECK_EQ(th_count_maps(), maps0);
		}
	}
	/* Every message that changes a running ring stops and restarts it; one start is still live. */
	CHECK(r.ev.started[0] >= 50);
	CHECK_EQ(r.ev.started[0], r.ev.stopped[0] + 1);
	rig_close(&r);
}

/* Found by tests/fuzz/fuzz_vu_msg (corpus/vu_msg/crash-region-beyond-file): a memory region longer than the
 * fd behind it was accepted, and the data path died of SIGBUS reading a ring placed past the file's end. Both
 * SET_MEM_TABLE and ADD_MEM_REG now refuse it, close its fd, and the device works on with a good table. */
static void test_fuzz_region_beyond_file(void)
{
	struct rig r;
	rig_open(&r, 1);
	rig_connect(&r);
	negotiate(&r, 0, true);
	int small = memfd_create("short", MFD_CLOEXEC);
	CHECK(small >= 0 && ftruncate(small, 4096) == 0);
	struct vhu_msg m = mk(VHOST_USER_SET_MEM_TABLE, 8 + 32);
	m.p.memory.nregions = 1;
	m.p.memory.regions[0] = (struct vhost_user_memory_region){GPA, MEM_SIZE, (uintptr_t)r.mem, 0};
	m.fds[0] = small;
	m.nfds = 1;
	/* Once before counting: the first table allocated may grow the (sanitizer's) allocator by a mapping. */
	CHECK(acked(&r, &m) != 0);
	int fds0 = th_count_fds(), maps0 = th_count_maps();
	CHECK(acked(&r, &m) != 0);
	m = mk(VHOST_USER_ADD_MEM_REG, sizeof(struct vhost_user_mem_reg));
	m.p.mem_reg.region = (struct vhost_user_memory_region){GPA, 2 * 4096, (uintptr_t)r.mem, 0};
	m.fds[0] = small;
	m.nfds = 1;
	CHECK(acked(&r, &m) != 0);
	m.p.mem_reg.region = (struct vhost_user_memory_region){GPA, 4096, (uintptr_t)r.mem, 1};
	CHECK(acked(&r, &m) != 0);
	CHECK_EQ(th_count_fds(), fds0); /* small is still open, as when counted */
	CHECK_EQ(th_count_maps(), maps0);
	close(small);

	set_mem_table(&r);
	struct guest_q g;
	setup_queue(&r, 0, &g, 0, false, false);
	enable(&r, 0, 1);
	pass_one(&r, 0, &g, 0x3c);
	free_queue(&g);
	rig_close(&r);
}

static bool path_is_socket(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* A peer connecting while the device has a front-end is refused at once (ECONNREFUSED: QEMU reports it and
 * exits, or retries with reconnect=) instead of waiting in the backlog; once the front-end goes, the device
 * listens again, on a socket file with the mode and owner the old one had. */
static int try_connect_to(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, path);
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : -errno;
	close(fd);
	return rc;
}

static void test_second_frontend_refused(void)
{
	struct rig r;
	rig_open(&r, 1);
	CHECK_EQ(chmod(r.path, 0640), 0); /* as owner=/group=/mode= would have set it */
	rig_connect(&r);
	negotiate(&r, 0, true);
	struct stat st;
	CHECK_EQ(stat(r.path, &st), 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK_EQ(try_connect_to(r.path), -ECONNREFUSED);
	CHECK_EQ(try_connect_to(r.path), -ECONNREFUSED);
	/* Not listening, yet not stale: another device of this process given the path is refused, file kept. */
	struct vhd_vu_config c2 = {.path = r.path, .max_queue_pairs = 1, .name = "second"};
	struct vhd_vu_dev *d2 = NULL;
	CHECK_EQ(vhd_vu_dev_create(&c2, &d2), -EADDRINUSE);
	struct stat st2;
	CHECK_EQ(stat(r.path, &st2), 0);
	CHECK(st2.st_ino == st.st_ino);
	/* The first front-end is served on. */
	CHECK(get_u64(&r, VHOST_USER_GET_FEATURES) & VHD_BIT(VIRTIO_F_VERSION_1));
	CHECK(vhd_vu_dev_connected(r.dev));
	/* It goes: the device listens again, same mode, and the next front-end is served. */
	close(r.fe);
	r.fe = -1;
	CHECK(vhd_vu_dev_dispatch(r.dev) < 0);
	CHECK_EQ(stat(r.path, &st), 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK_EQ(st.st_mode & 0777, 0640);
	rig_connect(&r);
	negotiate(&r, 0, true);
	CHECK_EQ(try_connect_to(r.path), -ECONNREFUSED);
	rig_close(&r);
	/* Destroyed while connected: the socket file goes all the same. */
	CHECK(!path_is_socket(r.path));
}

/* The live device answers on its path: a front-end connects and negotiates. */
static void still_serves(struct rig *r)
{
	rig_connect(r);
	negotiate(r, 0, true);
	close(r->fe);
	r->fe = -1;
	CHECK(vhd_vu_dev_dispatch(r->dev) < 0);
}

/*
 * A second device on a path where the first listens is refused (-EADDRINUSE, an error logged) and leaves the
 * first's socket file alone: the first still accepts a front-end, and its own destroy removes the file.
 */
static void test_path_in_use_refused(void)
{
	struct rig r;
	rig_open(&r, 1);
	struct vhd_vu_config c = {.path = r.path, .max_queue_pairs = 1, .name = "second"};
	struct vhd_vu_dev *second = NULL;
	int errs = log_errors;
	CHECK_EQ(vhd_vu_dev_create(&c, &second), -EADDRINUSE);
	CHECK(second == NULL);
	CHECK_EQ(log_errors, errs + 1);
	CHECK(path_is_socket(r.path));
	/* The file is known as this process's own: no probe connection was made to the first device. */
	for (int i = 0; i < 10; i++) {
		vhd_vu_dev_dispatch(r.dev);
		poll(NULL, 0, 1);
	}
	CHECK_EQ(r.ev.connected, 0);
	still_serves(&r);
	rig_close(&r);
	CHECK(!path_is_socket(r.path));
}

/* A socket file nobody listens on (left by a process that died) is replaced. */
static void test_stale_socket_reclaimed(void)
{
	char path[108];
	snprintf(path, sizeof(path), "/tmp/vhd-test-vu-%d.sock", getpid());
	unlink(path);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, path);
	CHECK(bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	close(s);
	CHECK(path_is_socket(path));
	struct rig r;
	rig_open(&r, 1);
	CHECK(!strcmp(r.path, path));
	still_serves(&r);
	rig_close(&r);
	CHECK(!path_is_socket(path));
}

/* A device whose socket file was replaced by another's (removed by hand, path taken again) leaves the new file
 * in place when it goes. */
static void test_fini_keeps_others_socket(void)
{
	struct rig r;
	rig_open(&r, 1);
	CHECK(unlink(r.path) == 0);
	struct events ev = {0};
	struct vhd_vu_config c = {.path = r.path, .max_queue_pairs = 1, .event = on_event, .opaque = &ev,
				  .name = "second"};
	struct vhd_vu_dev *second;
	CHECK_EQ(vhd_vu_dev_create(&c, &second), 0);
	rig_close(&r);
	CHECK(path_is_socket(r.path));
	int fe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, r.path);
	CHECK(connect(fe, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK_EQ(vhd_vu_dev_dispatch(second), 0);
	CHECK(vhd_vu_dev_connected(second));
	close(fe);
	vhd_vu_dev_destroy(second);
	CHECK(!path_is_socket(r.path));
}

/* ------------------------------------------------------------------ notification fds (issue 16) */

/* A vring fd message with fd (or NOFD when fd < 0) for queue qi, acknowledged. */
static uint64_t vring_fd(struct rig *r, uint32_t req, unsigned qi, int fd)
{
	struct vhu_msg m = mk(req, 8);
	m.p.u64 = qi | (fd < 0 ? VHOST_USER_VRING_NOFD : 0);
	if (fd >= 0) {
		m.fds[0] = fd;
		m.nfds = 1;
	}
	return acked(r, &m);
}

/* Kick, call and error fds that are not eventfds are refused, named by type, and not kept: a full pipe as call
 * fd would block the data path's interrupt write (and one without reader raise SIGPIPE). */
static void test_vring_fd_not_eventfd(void)
{
	struct rig r;
	rig_open(&r, 1);
	rig_connect(&r);
	negotiate(&r, 0, true);
	set_mem_table(&r);
	int fds0 = th_count_fds();
	int pfd[2], sv[2];
	CHECK(pipe2(pfd, O_CLOEXEC) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	/* The pipe full, as in the attack. */
	CHECK(fcntl(pfd[1], F_SETFL, O_NONBLOCK) == 0);
	static const uint8_t junk[4096];
	while (write(pfd[1], junk, sizeof(junk)) > 0)
		;
	log_clear();
	CHECK_EQ(vring_fd(&r, VHOST_USER_SET_VRING_CALL, 0, pfd[1]), 1);
	CHECK_EQ(log_count("SET_VRING_CALL: queue 0: fd is a pipe, not an eventfd"), 1);
	CHECK_EQ(vring_fd(&r, VHOST_USER_SET_VRING_KICK, 1, sv[0]), 1);
	CHECK_EQ(log_count("SET_VRING_KICK: queue 1: fd is a socket, not an eventfd"), 1);
	CHECK_EQ(vring_fd(&r, VHOST_USER_SET_VRING_ERR, 0, r.memfd), 1);
	CHECK_EQ(log_count("SET_VRING_ERR: queue 0: fd is a regular file, not an eventfd"), 1);
	int sfd = signalfd(-1, &(sigset_t){0}, SFD_CLOEXEC);
	CHECK(sfd >= 0);
	CHECK_EQ(vring_fd(&r, VHOST_USER_SET_VRING_CALL, 1, sfd), 1);
	CHECK_EQ(log_count("fd is a anon_inode:[signalfd], not an eventfd"), 1);
	/* Nothing kept: our own four fds are the only new ones. */
	CHECK_EQ(th_count_fds(), fds0 + 5);
	/* The refused call fd is not used: a notify has no fd to write and returns at once. */
	CHECK_EQ(vhd_vu_queue_notify(r.dev, 0), 0);
	/* Eventfds and NOFD are taken. */
	int e = eventfd(0, EFD_CLOEXEC);
	CHECK_EQ(vring_fd(&r, VHOST_USER_SET_VRING_CALL, 0, e), 0);
	CHECK_EQ(vring_fd(&r, VHOST_USER_SET_VRING_KICK, 0, e), 0);
	CHECK_EQ(vring_fd(&r, VHOST_USER_SET_VRING_ERR, 0, e), 0);
	CHECK_EQ(vring_fd(&r, VHOST_USER_SET_VRING_KICK, 1, -1), 0);
	CHECK(vhd_vu_dev_connected(r.dev));
	close(e);
	close(sfd);
	close(pfd[0]);
	close(pfd[1]);
	close(sv[0]);
	close(sv[1]);
	rig_close(&r);
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "vhd_vu_queue_notify() blocked on a full call eventfd\n";
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	_exit(3);
}

/* A call eventfd whose counter the front-end never drains: each notify fails at once (the back-end made the fd
 * non-blocking), is counted, and is logged once. */
static void test_call_fd_full(void)
{
	struct rig r;
	rig_open(&r, 1);
	rig_connect(&r);
	negotiate(&r, 0, true);
	set_mem_table(&r);
	struct guest_q g;
	setup_queue(&r, 0, &g, 0, false, false);
	enable(&r, 0, 1);
	pass_one(&r, 0, &g, 1); /* the rig's non-blocking call eventfd works */
	int full = eventfd(0, EFD_CLOEXEC); /* blocking, as a front-end may hand it over */
	uint64_t v = 0xfffffffffffffffeull;  /* the largest value an eventfd holds */
	CHECK(write(full, &v, 8) == 8);
	CHECK_EQ(vring_fd(&r, VHOST_USER_SET_VRING_CALL, 0, full), 0);
	CHECK(fcntl(full, F_GETFL) & O_NONBLOCK); /* shared open file: the back-end set it */
	struct vhd_vu_stats st;
	vhd_vu_dev_stats(r.dev, &st);
	CHECK_EQ(st.notify_failures, 0);
	log_clear();
	signal(SIGALRM, on_alarm);
	alarm(10); /* liveness deadline: a blocked write never returns */
	CHECK(vhd_vu_queue_acquire(r.dev, 0) != NULL);
	CHECK_EQ(vhd_vu_queue_notify(r.dev, 0), -EAGAIN);
	CHECK_EQ(vhd_vu_queue_notify(r.dev, 0), -EAGAIN);
	CHECK_EQ(vhd_vu_queue_notify(r.dev, 0), -EAGAIN);
	vhd_vu_queue_release(r.dev, 0);
	alarm(0);
	vhd_vu_dev_stats(r.dev, &st);
	CHECK_EQ(st.notify_failures, 3);
	CHECK_EQ(log_count("queue 0: interrupt not delivered, call fd write failed: Resource temporarily unavailable"),
		 1);
	/* Drained by the front-end: interrupts flow again, the count stays. */
	CHECK(read(full, &v, 8) == 8 && v == 0xfffffffffffffffeull);
	CHECK_EQ(vhd_vu_queue_notify(r.dev, 0), 0);
	CHECK(read(full, &v, 8) == 8 && v == 1);
	vhd_vu_dev_stats(r.dev, &st);
	CHECK_EQ(st.notify_failures, 3);
	close(full);
	free_queue(&g);
	rig_close(&r);
}


/* ------------------------------------------------------------------ strict setup validation (issue 16) */

/* A connected front-end with features (split or packed) and protocol features negotiated, and the memory table. */
static void rig_ready(struct rig *r, bool packed)
{
	rig_open(r, 1);
	rig_connect(r);
	negotiate(r, packed ? VHD_BIT(VIRTIO_F_RING_PACKED) : 0, true);
	set_mem_table(r);
}

static uint64_t vring_num(struct rig *r, unsigned qi, uint32_t num)
{
	struct vhu_msg m = mk(VHOST_USER_SET_VRING_NUM, 8);
	m.p.state = (struct vhost_vring_state){qi, num};
	return acked(r, &m);
}

static uint64_t vring_addr(struct rig *r, unsigned qi, uint64_t desc, uint64_t avail, uint64_t used)
{
	struct vhu_msg m = mk(VHOST_USER_SET_VRING_ADDR, sizeof(struct vhost_vring_addr));
	m.p.addr = (struct vhost_vring_addr){qi, 0, desc, used, avail, 0};
	return acked(r, &m);
}

/* Split sizes are powers of two up to 32768; packed ones anything up to 32768. */
static void test_vring_num_limits(void)
{
	struct rig r;
	rig_open(&r, 1);
	rig_connect(&r);
	negotiate(&r, 0, true);
	log_clear();
	CHECK_EQ(vring_num(&r, 0, 300), 1);
	CHECK_EQ(log_count("SET_VRING_NUM: queue 0 size 300 is not a power of two, which a split ring needs"), 1);
	CHECK_EQ(vring_num(&r, 0, 65536), 1);
	CHECK_EQ(log_count("SET_VRING_NUM: queue 0 size 65536 out of range 1..32768"), 1);
	CHECK_EQ(vring_num(&r, 0, 32769), 1);
	CHECK_EQ(vring_num(&r, 0, 32768), 0);
	CHECK_EQ(vring_num(&r, 0, 1), 0);
	/* Packed: the same limit, any size below it. */
	set_u64(&r, VHOST_USER_SET_FEATURES,
		VHD_BIT(VIRTIO_F_VERSION_1) | VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES) | VHD_BIT(VIRTIO_F_RING_PACKED));
	CHECK_EQ(vring_num(&r, 0, 300), 0);
	CHECK_EQ(vring_num(&r, 0, 32768), 0);
	CHECK_EQ(vring_num(&r, 0, 32769), 1);
	CHECK_EQ(vring_num(&r, 0, 65536), 1);
	CHECK(vhd_vu_dev_connected(r.dev));
	rig_close(&r);
}

/* Sizes at their limits start: split 32768 (rings 512 KiB + 64 KiB + 256 KiB), packed 300. */
static void test_vring_num_boundaries_start(void)
{
	for (int packed = 0; packed < 2; packed++) {
		struct rig r;
		rig_ready(&r, packed);
		uint32_t num = packed ? 300 : 32768;
		uint64_t b = (uintptr_t)r.mem;
		CHECK_EQ(vring_num(&r, 0, num), 0);
		CHECK_EQ(vring_addr(&r, 0, b, b + 0x80000, b + 0xa0000), 0);
		CHECK_EQ(vring_fd(&r, VHOST_USER_SET_VRING_KICK, 0, -1), 0);
		enable(&r, 0, 1);
		CHECK_EQ(r.ev.started[0], 1);
		struct vhd_vq *vq = vhd_vu_queue_acquire(r.dev, 0);
		CHECK(vq != NULL);
		vhd_vu_queue_release(r.dev, 0);
		rig_close(&r);
	}
}

/* A size SET_VRING_NUM took for a packed ring stops fitting when the final features say split: the queue
 * does not start, and says why. */
static void test_vring_num_rechecked_at_start(void)
{
	struct rig r;
	rig_ready(&r, true);
	uint64_t b = (uintptr_t)r.mem;
	CHECK_EQ(vring_num(&r, 0, 300), 0);
	CHECK_EQ(vring_addr(&r, 0, b, b + 0x80000, b + 0xa0000), 0);
	CHECK_EQ(vring_fd(&r, VHOST_USER_SET_VRING_KICK, 0, -1), 0);
	log_clear();
	set_u64(&r, VHOST_USER_SET_FEATURES, VHD_BIT(VIRTIO_F_VERSION_1) | VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES));
	enable(&r, 0, 1);
	CHECK_EQ(r.ev.started[0], 0);
	CHECK(vhd_vu_queue_acquire(r.dev, 0) == NULL);
	CHECK(log_count("queue 0: size 300 is not a power of two, which a split ring needs: not starting") >= 1);
	/* Packed again: it starts. */
	set_u64(&r, VHOST_USER_SET_FEATURES,
		VHD_BIT(VIRTIO_F_VERSION_1) | VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES) | VHD_BIT(VIRTIO_F_RING_PACKED));
	CHECK_EQ(r.ev.started[0], 1);
	rig_close(&r);
}

static void test_mem_table_no_regions(void)
{
	struct rig r;
	rig_open(&r, 1);
	rig_connect(&r);
	negotiate(&r, 0, true);
	int fds0 = th_count_fds();
	log_clear();
	struct vhu_msg m = mk(VHOST_USER_SET_MEM_TABLE, 8);
	m.p.memory.nregions = 0;
	CHECK_EQ(acked(&r, &m), 1);
	CHECK_EQ(log_count("SET_MEM_TABLE: 0 regions: a memory table needs at least one"), 1);
	CHECK_EQ(th_count_fds(), fds0);
	/* A good table is still taken, and a queue runs on it. */
	set_mem_table(&r);
	struct guest_q g;
	setup_queue(&r, 0, &g, 0, false, false);
	enable(&r, 0, 1);
	pass_one(&r, 0, &g, 9);
	free_queue(&g);
	rig_close(&r);
}

/* Ring areas must lie wholly inside one region of the front-end's address space, aligned: refused at
 * SET_VRING_ADDR with the area, address and size named. */
static void test_vring_addr_outside_memory(void)
{
	for (int packed = 0; packed < 2; packed++) {
		struct rig r;
		rig_ready(&r, packed);
		CHECK_EQ(vring_num(&r, 0, QSZ), 0);
		uint64_t b = (uintptr_t)r.mem, end = b + MEM_SIZE;
		uint64_t da = b + 0x1000, aa = b + 0x2000, ua = b + 0x3000; /* good places */
		size_t asz = packed ? 4 : 4 + 2 * QSZ + 2, usz = packed ? 4 : 4 + 8 * QSZ + 2;
		char want[160];
		log_clear();
		/* Descriptor table straddling the region's end by one entry. */
		CHECK_EQ(vring_addr(&r, 0, end - 16 * QSZ + 16, aa, ua), 1);
		snprintf(want, sizeof(want), "SET_VRING_ADDR: queue 0: descriptor table at 0x%llx (%d bytes for size %d) "
			 "is not inside one region", (unsigned long long)(end - 16 * QSZ + 16), 16 * QSZ, QSZ);
		CHECK_EQ(log_count(want), 1);
		/* Outside every region. */
		CHECK_EQ(vring_addr(&r, 0, da, end + 0x100000, ua), 1);
		snprintf(want, sizeof(want), "driver area at 0x%llx (%zu bytes for size %d) is not inside one region",
			 (unsigned long long)(end + 0x100000), asz, QSZ);
		CHECK_EQ(log_count(want), 1);
		/* Guest-physical addresses where front-end addresses belong. */
		CHECK_EQ(vring_addr(&r, 0, GPA + 0x1000, GPA + 0x2000, GPA + 0x3000), 1);
		CHECK_EQ(vring_addr(&r, 0, da, aa, GPA + 0x3000), 1);
		snprintf(want, sizeof(want), "device area at 0x%llx (%zu bytes for size %d) is not inside one region",
			 (unsigned long long)(GPA + 0x3000), usz, QSZ);
		CHECK_EQ(log_count(want), 1);
		if (!packed) {
			/* The avail ring's used_event field (EVENT_IDX) counts: 2 bytes past the end is outside. */
			CHECK_EQ(vring_addr(&r, 0, da, end - asz + 2, ua), 1);
			/* Exactly at the end, used_event included: taken. */
			CHECK_EQ(vring_addr(&r, 0, da, end - asz, ua), 0);
		} else {
			CHECK_EQ(vring_addr(&r, 0, da, end - 2, ua), 1);
			CHECK_EQ(vring_addr(&r, 0, da, aa, end - 4), 0);
		}
		/* Misaligned areas (virtio 1.2 2.7 / 2.8: descriptors 16, split avail 2 and used 4, packed 4 and 4). */
		CHECK_EQ(vring_addr(&r, 0, da + 8, aa, ua), 1);
		snprintf(want, sizeof(want), "SET_VRING_ADDR: queue 0: %s descriptor table at 0x%llx is not 16-byte aligned",
			 packed ? "packed" : "split", (unsigned long long)(da + 8));
		CHECK_EQ(log_count(want), 1);
		CHECK_EQ(vring_addr(&r, 0, da, aa + 1, ua), 1);
		CHECK_EQ(vring_addr(&r, 0, da, aa, ua + 2), 1);
		snprintf(want, sizeof(want), "device area at 0x%llx is not 4-byte aligned", (unsigned long long)(ua + 2));
		CHECK_EQ(log_count(want), 1);
		if (packed)
			CHECK_EQ(vring_addr(&r, 0, da, aa + 2, ua), 1);
		/* None of that started anything; good rings do. */
		CHECK_EQ(vring_fd(&r, VHOST_USER_SET_VRING_KICK, 0, -1), 0);
		enable(&r, 0, 1);
		CHECK_EQ(r.ev.started[0], 1);
		CHECK(vhd_vu_dev_connected(r.dev));
		rig_close(&r);
	}
}

/* Addresses given before the memory table (or the size) are checked when the queue would start: a ring
 * straddling the region's end keeps the queue stopped, with the log line. */
static void test_vring_addr_checked_at_start(void)
{
	struct rig r;
	rig_open(&r, 1);
	rig_connect(&r);
	negotiate(&r, 0, true);
	uint64_t b = (uintptr_t)r.mem, end = b + MEM_SIZE;
	/* No memory table yet: only the alignment can be judged. */
	CHECK_EQ(vring_num(&r, 0, QSZ), 0);
	CHECK_EQ(vring_addr(&r, 0, end - 16 * QSZ + 16, b + 0x2000, b + 0x3000), 0);
	CHECK_EQ(vring_fd(&r, VHOST_USER_SET_VRING_KICK, 0, -1), 0);
	enable(&r, 0, 1);
	log_clear();
	set_mem_table(&r);
	CHECK_EQ(r.ev.started[0], 0);
	CHECK(vhd_vu_queue_acquire(r.dev, 0) == NULL);
	char want[160];
	snprintf(want, sizeof(want), "cannot start: queue 0: descriptor table at 0x%llx (%d bytes for size %d) is not "
		 "inside one region", (unsigned long long)(end - 16 * QSZ + 16), 16 * QSZ, QSZ);
	CHECK_EQ(log_count(want), 1);
	/* A size that makes good rings too long for the region is caught the same way. */
	CHECK_EQ(vring_addr(&r, 0, end - 16 * QSZ, b + 0x2000, b + 0x3000), 0);
	CHECK_EQ(r.ev.started[0], 1);
	log_clear();
	CHECK_EQ(vring_num(&r, 0, 2 * QSZ), 0);
	CHECK_EQ(r.ev.stopped[0], 1);
	CHECK_EQ(r.ev.started[0], 1);
	CHECK_EQ(log_count("cannot start: queue 0: descriptor table at"), 1);
	rig_close(&r);
}

/* connect() to path from a child running as uid/gid with no supplementary groups: 0 or the errno. */
static int connect_as(const char *path, uid_t uid, gid_t gid)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
			_exit(100);
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
		_exit(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : errno);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st));
	CHECK(WEXITSTATUS(st) != 100);
	return WEXITSTATUS(st);
}

/* owner/group/mode: the socket file has them right after create, and they decide who may connect (QEMU under
 * libvirt runs as another user). */
static void test_socket_access(void)
{
	struct passwd *pw = getpwnam("nobody");
	if (geteuid() != 0 || !pw)
		th_skip("needs root and a 'nobody' user");
	uid_t nobody = pw->pw_uid;
	gid_t nogroup = pw->pw_gid;
	char path[108];
	snprintf(path, sizeof(path), "/tmp/vhd-test-vua-%d.sock", getpid());
	unlink(path);
	struct vhd_vu_config c = {.path = path, .max_queue_pairs = 1, .set_group = true, .group = nogroup,
				  .mode = 0660};
	struct vhd_vu_dev *dev;
	CHECK_EQ(vhd_vu_dev_create(&c, &dev), 0);
	struct stat st;
	CHECK_EQ(lstat(path, &st), 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK_EQ(st.st_mode & 07777, 0660);
	CHECK_EQ(st.st_gid, nogroup);
	CHECK_EQ(st.st_uid, 0);
	CHECK_EQ(connect_as(path, nobody, nogroup), 0); /* through the group bits */
	vhd_vu_dev_destroy(dev);

	/* Owner only: the same user is now turned away. */
	c = (struct vhd_vu_config){.path = path, .max_queue_pairs = 1, .mode = 0600};
	CHECK_EQ(vhd_vu_dev_create(&c, &dev), 0);
	CHECK_EQ(lstat(path, &st), 0);
	CHECK_EQ(st.st_mode & 07777, 0600);
	CHECK_EQ(connect_as(path, nobody, nogroup), EACCES);
	vhd_vu_dev_destroy(dev);

	/* Owned by that user instead: it may connect again. */
	c = (struct vhd_vu_config){.path = path, .max_queue_pairs = 1, .set_owner = true, .owner = nobody,
				   .mode = 0600};
	CHECK_EQ(vhd_vu_dev_create(&c, &dev), 0);
	CHECK_EQ(lstat(path, &st), 0);
	CHECK_EQ(st.st_uid, nobody);
	CHECK_EQ(connect_as(path, nobody, nogroup), 0);
	vhd_vu_dev_destroy(dev);

	/* Refused: bits beyond 0777, and any of them on a client (no socket file of ours to change). */
	c = (struct vhd_vu_config){.path = path, .max_queue_pairs = 1, .mode = 01777};
	CHECK_EQ(vhd_vu_dev_create(&c, &dev), -EINVAL);
	c = (struct vhd_vu_config){.path = path, .client = true, .max_queue_pairs = 1, .mode = 0660};
	CHECK_EQ(vhd_vu_dev_create(&c, &dev), -EINVAL);
	CHECK(access(path, F_OK) < 0);
}


/* ------------------------------------------------------------------ vIOMMU (issue 17) */

/* Where the tests' vIOMMU maps guest memory: IOVAs that are also guest-physical addresses, of other bytes (the
 * memfd's offset 0 is at IOVA GPA+1M, its offset 1M at GPA+2M), so a translation through the memory table
 * instead of the IOTLB reads the wrong bytes rather than failing. */
#define IOVA (GPA + 0x100000ull)
#define BUF_OFF (32 * 1024) /* pass_one()'s buffer, from the queue's offset */

/*
 * A device offering ACCESS_PLATFORM, negotiated with it (and every protocol feature), the memory table set and a
 * back-end channel whose front-end end (non-blocking) goes to *chan.
 */
static void iommu_rig_qp(struct rig *r, bool packed, int *chan, uint16_t qp)
{
	rig_features = vhd_vu_default_features() | VHD_BIT(VIRTIO_F_ACCESS_PLATFORM);
	rig_iova = IOVA;
	rig_open(r, qp);
	rig_connect(r);
	CHECK(get_u64(r, VHOST_USER_GET_FEATURES) & VHD_BIT(VIRTIO_F_ACCESS_PLATFORM));
	uint64_t p = get_u64(r, VHOST_USER_GET_PROTOCOL_FEATURES);
	CHECK(p & VHD_BIT(VHOST_USER_PROTOCOL_F_BACKEND_REQ));
	CHECK(p & VHD_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK));
	negotiate(r, VHD_BIT(VIRTIO_F_ACCESS_PLATFORM) | (packed ? VHD_BIT(VIRTIO_F_RING_PACKED) : 0), true);
	set_mem_table(r);
	int sp[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp), 0);
	struct vhu_msg m = mk(VHOST_USER_SET_BACKEND_REQ_FD, 0);
	m.fds[0] = sp[1];
	m.nfds = 1;
	CHECK_EQ(acked(r, &m), 0);
	close(sp[1]);
	*chan = sp[0];
}

static void iommu_rig(struct rig *r, bool packed, int *chan)
{
	iommu_rig_qp(r, packed, chan, 1);
}

static uint64_t iotlb_msg(struct rig *r, uint8_t type, uint64_t iova, uint64_t size, uint64_t uaddr, uint8_t perm)
{
	struct vhu_msg m = mk(VHOST_USER_IOTLB_MSG, sizeof(struct vhost_iotlb_msg));
	m.p.iotlb = (struct vhost_iotlb_msg){.iova = iova, .size = size, .uaddr = uaddr, .perm = perm, .type = type};
	return acked(r, &m);
}

/* UPDATE: [IOVA+off, +size) onto the memfd at off. */
static uint64_t iotlb_map(struct rig *r, size_t off, uint64_t size, uint8_t perm)
{
	return iotlb_msg(r, VHOST_IOTLB_UPDATE, IOVA + off, size, (uintptr_t)r->mem + off, perm);
}

static uint64_t iotlb_unmap(struct rig *r, size_t off, uint64_t size)
{
	return iotlb_msg(r, VHOST_IOTLB_INVALIDATE, IOVA + off, size, 0, 0);
}

/* iommu_rig() with queue 1 at offset 0, [IOVA, IOVA+map) mapped read/write, enabled and started. */
static void iommu_queue_up(struct rig *r, int *chan, struct guest_q *g, bool packed, uint64_t map)
{
	iommu_rig(r, packed, chan);
	setup_queue(r, 1, g, 0, packed, false);
	CHECK_EQ(iotlb_map(r, 0, map, VHOST_ACCESS_RW), 0);
	enable(r, 1, 1);
	CHECK_EQ(r->ev.started[1], 1);
}

/* The next MISS waiting on the back-end channel: true with its IOVA and access, false if none is there. */
static bool next_miss(int chan, uint64_t *iova, unsigned *perm)
{
	struct pollfd p = {.fd = chan, .events = POLLIN};
	if (poll(&p, 1, 0) <= 0)
		return false;
	struct vhu_msg m;
	CHECK_EQ(vhu_msg_recv(chan, &m), 0);
	CHECK_EQ(m.hdr.request, VHOST_USER_BACKEND_IOTLB_MSG);
	CHECK_EQ(m.hdr.flags, VHOST_USER_VERSION); /* never NEED_REPLY: nothing waits for an answer */
	CHECK_EQ(m.hdr.size, sizeof(struct vhost_iotlb_msg));
	CHECK_EQ(m.p.iotlb.type, VHOST_IOTLB_MISS);
	*iova = m.p.iotlb.iova;
	*perm = m.p.iotlb.perm;
	return true;
}

/* The guest posts one 100-byte buffer (readable, or writable) at the queue's buffer offset, filled with tag. */
static void guest_post(struct rig *r, struct guest_q *g, uint8_t tag, bool writable)
{
	memset(r->mem + g->off + BUF_OFF, tag, 100);
	struct vhd_vq_seg s = {IOVA + g->off + BUF_OFF, 100};
	struct vhd_vq_buf b = {.segs = &s, .nout = !writable, .nin = writable, .token = (void *)1};
	CHECK_EQ(vhd_vq_add(g->vq, &b, 1), 1);
}

/* One burst on queue qi as the data path does it: -1 when acquire says no, else what the pop returned; a chain
 * taken is given back at once (its first byte in *first) and collected by the guest. */
static int burst(struct rig *r, struct guest_q *g, unsigned qi, uint8_t *first)
{
	struct vhd_vq *vq = vhd_vu_queue_acquire(r->dev, qi);
	if (!vq)
		return -1;
	struct vhd_vq_chain ch;
	struct iovec iov[4];
	int n = vhd_vq_pop(vq, &ch, 1, iov, 4);
	if (n == 1) {
		*first = ((const uint8_t *)iov[0].iov_base)[0];
		struct vhd_vq_used u = {ch.id, ch.ndesc, 0};
		CHECK_EQ(vhd_vq_push(vq, &u, 1), 1);
	}
	vhd_vu_queue_release(r->dev, qi);
	struct vhd_vq_done d;
	if (n == 1)
		CHECK_EQ(vhd_vq_get(g->vq, &d, 1), 1);
	return n;
}

static struct vhd_vu_stats dev_stats(struct rig *r)
{
	struct vhd_vu_stats st;
	vhd_vu_dev_stats(r->dev, &st);
	return st;
}

/* Negotiation, the back-end channel's checks, and IOTLB messages refused value by value, each changing nothing. */
static void test_iommu_refusals(void)
{
	/* Without ACCESS_PLATFORM offered (the library's default features) it is not there to negotiate, and an
	 * IOTLB message is refused. */
	struct rig r;
	rig_open(&r, 1);
	rig_connect(&r);
	CHECK(!(get_u64(&r, VHOST_USER_GET_FEATURES) & VHD_BIT(VIRTIO_F_ACCESS_PLATFORM)));
	negotiate(&r, 0, true);
	set_mem_table(&r);
	log_clear();
	CHECK_EQ(iotlb_msg(&r, VHOST_IOTLB_UPDATE, IOVA, 4096, (uintptr_t)r.mem, VHOST_ACCESS_RW), 1);
	CHECK_EQ(log_count("IOTLB_MSG (type 2, IOVA 0x100100000) without VIRTIO_F_ACCESS_PLATFORM negotiated"), 1);
	/* The back-end channel: a unix stream socket, nothing else. */
	int efd = eventfd(0, EFD_CLOEXEC), dg[2], st[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, dg), 0);
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, st), 0);
	struct vhu_msg m = mk(VHOST_USER_SET_BACKEND_REQ_FD, 0);
	m.nfds = 1;
	m.fds[0] = efd;
	CHECK_EQ(acked(&r, &m), 1);
	CHECK_EQ(log_count("SET_BACKEND_REQ_FD: fd is a anon_inode:[eventfd], not a unix stream socket"), 1);
	m.fds[0] = dg[1];
	CHECK_EQ(acked(&r, &m), 1);
	CHECK_EQ(log_count("SET_BACKEND_REQ_FD: fd is a socket of another type, not a unix stream socket"), 1);
	m.fds[0] = st[1];
	CHECK_EQ(acked(&r, &m), 0);
	CHECK(fcntl(st[1], F_GETFL) & O_NONBLOCK); /* the open file we share: the back-end never blocks on it */
	close(efd), close(dg[0]), close(dg[1]), close(st[0]), close(st[1]);
	rig_close(&r);

	int chan;
	iommu_rig(&r, false, &chan);
	uint64_t ua = (uintptr_t)r.mem;
	log_clear();
	CHECK_EQ(iotlb_msg(&r, VHOST_IOTLB_UPDATE, IOVA, 0, ua, VHOST_ACCESS_RW), 1);
	CHECK_EQ(log_count("IOTLB_MSG UPDATE refused: IOTLB update of iova 0x100100000 has size 0"), 1);
	CHECK_EQ(iotlb_msg(&r, VHOST_IOTLB_UPDATE, 0xfffffffffffff000ull, 0x2000, ua, VHOST_ACCESS_RW), 1);
	CHECK_EQ(log_count("IOTLB update iova 0xfffffffffffff000 + size 0x2000 wraps around"), 1);
	CHECK_EQ(iotlb_msg(&r, VHOST_IOTLB_UPDATE, IOVA, 0x2000, 0xfffffffffffff000ull, VHOST_ACCESS_RW), 1);
	CHECK_EQ(log_count("IOTLB update uaddr 0xfffffffffffff000 + size 0x2000 wraps around"), 1);
	CHECK_EQ(iotlb_msg(&r, VHOST_IOTLB_UPDATE, IOVA, 4096, ua, 0), 1);
	CHECK_EQ(log_count("IOTLB update of iova 0x100100000 has perm 0 (not RO 1, WO 2 or RW 3)"), 1);
	CHECK_EQ(iotlb_msg(&r, VHOST_IOTLB_UPDATE, IOVA, 4096, ua, 4), 1);
	CHECK_EQ(log_count("has perm 4 (not RO 1, WO 2 or RW 3)"), 1);
	/* uaddr straddling the end of the only region, and wholly outside it. */
	CHECK_EQ(iotlb_msg(&r, VHOST_IOTLB_UPDATE, IOVA, 0x2000, ua + MEM_SIZE - 0x1000, VHOST_ACCESS_RW), 1);
	CHECK_EQ(iotlb_msg(&r, VHOST_IOTLB_UPDATE, IOVA, 0x1000, ua + MEM_SIZE, VHOST_ACCESS_RW), 1);
	CHECK_EQ(log_count("is not inside one memory region"), 2);
	CHECK_EQ(iotlb_msg(&r, VHOST_IOTLB_INVALIDATE, IOVA, 0, 0, 0), 1);
	/* Types the front-end does not send: MISS is ours, ACCESS_FAIL and the batch markers are not vhost-user. */
	for (uint8_t t = VHOST_IOTLB_MISS; t <= VHOST_IOTLB_BATCH_END + 1; t++)
		if (t != VHOST_IOTLB_UPDATE && t != VHOST_IOTLB_INVALIDATE)
			CHECK_EQ(iotlb_msg(&r, t, IOVA, 4096, ua, VHOST_ACCESS_RW), 1);
	CHECK_EQ(log_count("is neither UPDATE (2) nor INVALIDATE (3)"), 5);
	struct vhd_vu_stats s = dev_stats(&r);
	CHECK_EQ(s.iotlb_refused, 8);
	CHECK_EQ(s.iotlb_updates, 0);
	CHECK_EQ(s.iotlb_misses, 0);
	/* Still connected and serving: a good update is taken. */
	CHECK_EQ(iotlb_map(&r, 0, 4096, VHOST_ACCESS_RW), 0);
	CHECK_EQ(dev_stats(&r).iotlb_updates, 1);
	CHECK(vhd_vu_dev_connected(r.dev));
	close(chan);
	rig_close(&r);
}

/*
 * The data path through the IOTLB: rings missing at start (asked for, the queue waits), a buffer that misses
 * (the chain stays in the ring, one MISS, the queue waits until the update), the invalidation of a ring in use
 * (the queue pauses with its positions, asks, and resumes where it was).
 */
static void iommu_queue(bool packed)
{
	struct rig r;
	int chan;
	iommu_rig(&r, packed, &chan);
	struct guest_q g;
	setup_queue(&r, 1, &g, 0, packed, false);
	CHECK(!vhd_vu_dev_iotlb_waiting(r.dev));
	enable(&r, 1, 1);
	CHECK_EQ(r.ev.started[1], 0);
	CHECK(vhd_vu_dev_iotlb_waiting(r.dev)); /* for its rings */
	uint64_t iova;
	unsigned perm;
	CHECK(next_miss(chan, &iova, &perm));
	CHECK_EQ(iova, IOVA + g.lay.desc_off);
	CHECK_EQ(perm, packed ? VHOST_ACCESS_RW : VHOST_ACCESS_RO);
	CHECK(!next_miss(chan, &iova, &perm));
	CHECK_EQ(iotlb_map(&r, 0, MEM_SIZE, VHOST_ACCESS_RW), 0);
	CHECK_EQ(r.ev.started[1], 1);
	CHECK(!vhd_vu_dev_iotlb_waiting(r.dev));
	pass_one(&r, 1, &g, 0x41);
	CHECK(!vhd_vu_dev_iotlb_waiting(r.dev));

	/* A buffer whose page was taken back. */
	CHECK_EQ(iotlb_unmap(&r, BUF_OFF, 4096), 0);
	guest_post(&r, &g, 0x42, false);
	uint8_t b = 0;
	CHECK_EQ(burst(&r, &g, 1, &b), 0);
	CHECK(vhd_vu_dev_iotlb_waiting(r.dev)); /* the application is to dispatch at once */
	CHECK_EQ(burst(&r, &g, 1, &b), -1); /* waiting: not polled again until something changes */
	vhd_vu_dev_dispatch(r.dev);
	CHECK(next_miss(chan, &iova, &perm));
	CHECK_EQ(iova, IOVA + BUF_OFF);
	CHECK_EQ(perm, VHOST_ACCESS_RO);
	vhd_vu_dev_dispatch(r.dev);
	CHECK(!next_miss(chan, &iova, &perm)); /* asked once */
	struct vhd_vu_stats st = dev_stats(&r);
	CHECK_EQ(st.iotlb_waits, 1);
	CHECK_EQ(st.iotlb_misses, 2);
	CHECK_EQ(st.iotlb_invalidations, 1);
	/* QEMU's answer: one page. The chain was kept: the same bytes come out. */
	CHECK(vhd_vu_dev_iotlb_waiting(r.dev)); /* asked, not answered */
	CHECK_EQ(iotlb_map(&r, BUF_OFF, 4096, VHOST_ACCESS_RO), 0);
	CHECK(!vhd_vu_dev_iotlb_waiting(r.dev));
	CHECK_EQ(burst(&r, &g, 1, &b), 1);
	CHECK_EQ(b, 0x42);

	/* The device area (used ring / device event suppression) taken back while the queue runs. */
	CHECK_EQ(iotlb_unmap(&r, g.lay.device_off, 64), 0);
	CHECK_EQ(burst(&r, &g, 1, &b), -1);
	CHECK(vhd_vu_dev_iotlb_waiting(r.dev)); /* paused for its rings */
	CHECK(next_miss(chan, &iova, &perm));
	CHECK_EQ(iova, IOVA + g.lay.device_off);
	CHECK_EQ(perm, VHOST_ACCESS_RW);
	CHECK_EQ(r.ev.stopped[1], 0); /* paused, not stopped: nothing in flight is lost */
	CHECK_EQ(iotlb_map(&r, 0, MEM_SIZE, VHOST_ACCESS_RW), 0);
	pass_one(&r, 1, &g, 0x43);
	/* Three chains through in all, in order. */
	struct vhu_msg m = mk(VHOST_USER_GET_VRING_BASE, 8);
	m.p.state.index = 1;
	send_msg(&r, &m);
	m = get_reply(&r, VHOST_USER_GET_VRING_BASE);
	CHECK_EQ(m.p.state.num & 0x7fff, 3);
	st = dev_stats(&r);
	CHECK_EQ(st.iotlb_misses, 3);
	CHECK_EQ(st.iotlb_updates, 3);
	CHECK_EQ(st.iotlb_invalidations, 2);
	free_queue(&g);
	close(chan);
	rig_close(&r);
}

static void test_iommu_queue_split(void) { iommu_queue(false); }
static void test_iommu_queue_packed(void) { iommu_queue(true); }

/* Permissions: rings the device cannot write do not start; a readable buffer in a write-only mapping breaks the
 * queue, naming the IOVA. */
static void test_iommu_permissions(void)
{
	struct rig r;
	int chan;
	iommu_rig(&r, false, &chan);
	struct guest_q g;
	setup_queue(&r, 1, &g, 0, false, false);
	log_clear();
	CHECK_EQ(iotlb_map(&r, 0, MEM_SIZE, VHOST_ACCESS_RO), 0);
	enable(&r, 1, 1);
	CHECK_EQ(r.ev.started[1], 0);
	char want[160];
	snprintf(want, sizeof(want), "queue 1: device area at IOVA 0x%llx (%u bytes): IOVA mapped without read and "
		 "write access", (unsigned long long)(IOVA + g.lay.device_off), (unsigned)(6 + 8 * QSZ));
	CHECK_EQ(log_count(want), 1);
	CHECK_EQ(iotlb_map(&r, 0, MEM_SIZE, VHOST_ACCESS_RW), 0);
	CHECK_EQ(r.ev.started[1], 1);
	CHECK_EQ(iotlb_map(&r, BUF_OFF, 4096, VHOST_ACCESS_WO), 0);
	guest_post(&r, &g, 0x51, false);
	uint8_t b;
	struct vhd_vq *vq = vhd_vu_queue_acquire(r.dev, 1);
	CHECK(vq != NULL);
	vhd_vu_queue_release(r.dev, 1);
	CHECK_EQ(burst(&r, &g, 1, &b), -EIO);
	CHECK_EQ(vhd_vq_error(vq), VHD_VQ_E_IOTLB_PERM);
	snprintf(want, sizeof(want), "buffer at IOVA 0x%llx+100: IOVA 0x%llx is mapped without read access",
		 (unsigned long long)(IOVA + BUF_OFF), (unsigned long long)(IOVA + BUF_OFF));
	CHECK_EQ(log_count(want), 1);
	free_queue(&g);
	close(chan);
	rig_close(&r);
}

/* A miss the front-end never answers: asked again every retry period, the chain kept in the ring meanwhile, and
 * taken once the answer comes. */
static void test_iommu_miss_unanswered(void)
{
	struct rig r;
	int chan;
	struct guest_q g;
	iommu_queue_up(&r, &chan, &g, false, 4096);
	guest_post(&r, &g, 0x61, false);
	uint8_t b;
	uint64_t iova;
	unsigned perm;
	for (int round = 0; round < 3; round++) {
		CHECK_EQ(burst(&r, &g, 1, &b), 0);
		vhd_vu_dev_dispatch(r.dev);
		CHECK(next_miss(chan, &iova, &perm));
		CHECK_EQ(iova, IOVA + BUF_OFF);
		CHECK_EQ(burst(&r, &g, 1, &b), -1);
		/* Nothing more until the retry period has passed; the control thread is told when that is. */
		int t = vhd_vu_dev_timeout_ms(r.dev);
		CHECK(t > 0 && t <= 250);
		vhd_vu_dev_dispatch(r.dev);
		CHECK(!next_miss(chan, &iova, &perm));
		usleep(260 * 1000);
		vhd_vu_dev_dispatch(r.dev);
	}
	struct vhd_vu_stats st = dev_stats(&r);
	CHECK_EQ(st.iotlb_misses, 3);
	CHECK_EQ(st.iotlb_waits, 3);
	CHECK_EQ(vhd_vq_inflight(g.vq), 1); /* the guest's buffer is still out, not returned empty */
	CHECK_EQ(iotlb_map(&r, BUF_OFF, 4096, VHOST_ACCESS_RO), 0);
	CHECK_EQ(burst(&r, &g, 1, &b), 1);
	CHECK_EQ(b, 0x61);
	free_queue(&g);
	close(chan);
	rig_close(&r);
}

/* More updates than the cache holds: all taken, the oldest evicted; here that is the rings' entry, so the queue
 * does not go on with pointers from an entry that is gone: it waits and asks for its rings again. */
static void test_iommu_cache_full(void)
{
	struct rig r;
	int chan;
	struct guest_q g;
	iommu_queue_up(&r, &chan, &g, false, 4096);
	uint8_t b;
	CHECK_EQ(burst(&r, &g, 1, &b), 0);
	/* Pages two IOVA pages apart (never merged), VHD_IOTLB_DEFAULT_ENTRIES + 52 of them. */
	unsigned n = VHD_IOTLB_DEFAULT_ENTRIES + 52;
	for (unsigned i = 0; i < n; i++)
		CHECK_EQ(iotlb_msg(&r, VHOST_IOTLB_UPDATE, IOVA + 0x100000 + 0x2000ull * i, 4096,
				   (uintptr_t)r.mem + 0x10000 + 4096 * (i % 256), VHOST_ACCESS_RO), 0);
	CHECK_EQ(dev_stats(&r).iotlb_updates, n + 1);
	CHECK_EQ(burst(&r, &g, 1, &b), -1);
	uint64_t iova;
	unsigned perm;
	CHECK(next_miss(chan, &iova, &perm));
	CHECK_EQ(iova, IOVA + g.lay.desc_off);
	CHECK(!next_miss(chan, &iova, &perm));
	CHECK_EQ(iotlb_map(&r, 0, 4096, VHOST_ACCESS_RW), 0);
	CHECK_EQ(burst(&r, &g, 1, &b), 0);
	CHECK(vhd_vu_dev_connected(r.dev));
	free_queue(&g);
	close(chan);
	rig_close(&r);
}

/* Five queues each waiting on 16 pages the IOTLB lacks: 64 MISS requests go out and no more (a front-end that
 * never answers cannot make the back-end channel's output grow); an answer frees its requests' slots, and the
 * queue that could not ask asks then. */
static void test_iommu_miss_limit(void)
{
	struct rig r;
	int chan;
	enum { NQ = 5, PER_Q = 16 };
	struct guest_q g[NQ];
	iommu_rig_qp(&r, false, &chan, 3);
	for (unsigned q = 0; q < NQ; q++)
		setup_queue(&r, q, &g[q], q * 64 * 1024, false, false);
	CHECK_EQ(iotlb_map(&r, 0, NQ * 64 * 1024, VHOST_ACCESS_RW), 0);
	/* Buffers in pages from 1 MiB on, none mapped: queue q's i-th in page 256 + 16q + i. */
	for (unsigned q = 0; q < NQ; q++) {
		enable(&r, q, 1);
		for (unsigned i = 0; i < PER_Q; i++) {
			struct vhd_vq_seg sg = {IOVA + (256 + PER_Q * q + i) * 4096ull, 100};
			struct vhd_vq_buf b = {.segs = &sg, .nout = 1, .token = (void *)1};
			CHECK_EQ(vhd_vq_add(g[q].vq, &b, 1), 1);
		}
	}
	uint8_t b;
	for (unsigned q = 0; q < NQ; q++)
		CHECK_EQ(burst(&r, &g[q], q, &b), 0);
	vhd_vu_dev_dispatch(r.dev);
	uint64_t iova;
	unsigned perm, n = 0;
	bool asked[NQ * PER_Q] = {0};
	while (next_miss(chan, &iova, &perm)) {
		unsigned page = (unsigned)((iova - IOVA) >> 12) - 256;
		CHECK(page < NQ * PER_Q && !asked[page]);
		asked[page < NQ * PER_Q ? page : 0] = true;
		n++;
	}
	CHECK_EQ(n, 64);
	CHECK_EQ(dev_stats(&r).iotlb_misses, 64);
	CHECK_EQ(dev_stats(&r).iotlb_waits, NQ);
	/* The answer for queue 0's pages: its 16 requests are done, queue 0 goes on, and the waiting queues try
	 * again: what was left unasked (16 pages) is asked now, within the 64. */
	CHECK_EQ(iotlb_map(&r, 256 * 4096, PER_Q * 4096, VHOST_ACCESS_RO), 0);
	for (unsigned i = 0; i < PER_Q; i++)
		CHECK_EQ(burst(&r, &g[0], 0, &b), 1);
	for (unsigned q = 1; q < NQ; q++)
		burst(&r, &g[q], q, &b);
	vhd_vu_dev_dispatch(r.dev);
	unsigned later = 0;
	while (next_miss(chan, &iova, &perm)) {
		unsigned page = (unsigned)((iova - IOVA) >> 12) - 256;
		CHECK(page >= PER_Q && page < NQ * PER_Q && !asked[page < NQ * PER_Q ? page : 0]);
		asked[page < NQ * PER_Q ? page : 0] = true;
		later++;
	}
	CHECK_EQ(later, PER_Q);
	for (unsigned page = 0; page < NQ * PER_Q; page++)
		CHECK(asked[page]);
	CHECK(vhd_vu_dev_connected(r.dev));
	for (unsigned q = 0; q < NQ; q++)
		free_queue(&g[q]);
	close(chan);
	rig_close(&r);
}

/* A new memory table empties the IOTLB (its host pointers came from the old one): the queue restarts and
 * asks for its rings again. */
static void test_iommu_flush_on_mem_table(void)
{
	struct rig r;
	int chan;
	struct guest_q g;
	iommu_queue_up(&r, &chan, &g, false, MEM_SIZE);
	pass_one(&r, 1, &g, 0x71);
	uint64_t iova;
	unsigned perm;
	CHECK(!next_miss(chan, &iova, &perm));
	set_mem_table(&r);
	CHECK_EQ(r.ev.stopped[1], 1);
	CHECK_EQ(r.ev.started[1], 1);
	CHECK(next_miss(chan, &iova, &perm));
	CHECK_EQ(iova, IOVA + g.lay.desc_off);
	CHECK_EQ(iotlb_map(&r, 0, MEM_SIZE, VHOST_ACCESS_RW), 0);
	CHECK_EQ(r.ev.started[1], 2);
	pass_one(&r, 1, &g, 0x72);
	free_queue(&g);
	close(chan);
	rig_close(&r);
}


/* A burst of buffers in pages the IOTLB lacks: one wait asks for all of them (the look ahead), not one per round
 * trip; each page once. */
static void iommu_miss_ahead(bool packed)
{
	struct rig r;
	int chan;
	struct guest_q g;
	iommu_queue_up(&r, &chan, &g, packed, 4096);
	/* Five buffers: pages 8, 10, 12, 12 (again) and 14 of the memfd, device-writable (a guest's RX). */
	static const unsigned page[5] = {8, 10, 12, 12, 14};
	for (unsigned i = 0; i < 5; i++) {
		struct vhd_vq_seg sg = {IOVA + page[i] * 4096 + 256 * i, 100};
		struct vhd_vq_buf b = {.segs = &sg, .nin = 1, .token = (void *)1};
		CHECK_EQ(vhd_vq_add(g.vq, &b, 1), 1);
	}
	uint8_t b;
	CHECK_EQ(burst(&r, &g, 1, &b), 0);
	vhd_vu_dev_dispatch(r.dev);
	uint64_t iova;
	unsigned perm;
	static const unsigned want[4] = {8, 10, 12, 14};
	for (unsigned i = 0; i < 4; i++) {
		CHECK(next_miss(chan, &iova, &perm));
		CHECK_EQ(iova >> 12, (IOVA >> 12) + want[i]);
		CHECK_EQ(perm, VHOST_ACCESS_WO);
	}
	CHECK(!next_miss(chan, &iova, &perm));
	CHECK_EQ(dev_stats(&r).iotlb_misses, 4);
	CHECK_EQ(dev_stats(&r).iotlb_waits, 1);
	CHECK_EQ(iotlb_map(&r, 8 * 4096, 8 * 4096, VHOST_ACCESS_RW), 0);
	for (unsigned i = 0; i < 5; i++)
		CHECK_EQ(burst(&r, &g, 1, &b), 1);
	free_queue(&g);
	close(chan);
	rig_close(&r);
}

static void test_iommu_miss_ahead_split(void) { iommu_miss_ahead(false); }
static void test_iommu_miss_ahead_packed(void) { iommu_miss_ahead(true); }


/* iotlb_per_burst: after a burst that took chains, every translation but the rings' is forgotten, so the next
 * buffer in the same page is asked for again; the rings keep theirs (the queue never waits for them). */
static void test_iommu_per_burst(void)
{
	rig_per_burst = true;
	struct rig r;
	int chan;
	struct guest_q g;
	iommu_queue_up(&r, &chan, &g, false, MEM_SIZE);
	uint8_t b;
	guest_post(&r, &g, 0x81, false);
	CHECK_EQ(burst(&r, &g, 1, &b), 1);
	CHECK_EQ(b, 0x81);
	CHECK_EQ(burst(&r, &g, 1, &b), -1); /* waits until the control side has forgotten */
	vhd_vu_dev_dispatch(r.dev);
	uint64_t iova;
	unsigned perm;
	CHECK(!next_miss(chan, &iova, &perm)); /* the rings are still there */
	guest_post(&r, &g, 0x82, false);
	CHECK_EQ(burst(&r, &g, 1, &b), 0);
	vhd_vu_dev_dispatch(r.dev);
	CHECK(next_miss(chan, &iova, &perm));
	CHECK_EQ(iova, IOVA + BUF_OFF);
	CHECK(!next_miss(chan, &iova, &perm));
	CHECK_EQ(iotlb_map(&r, BUF_OFF, 4096, VHOST_ACCESS_RO), 0);
	CHECK_EQ(burst(&r, &g, 1, &b), 1);
	CHECK_EQ(b, 0x82);
	free_queue(&g);
	close(chan);
	rig_close(&r);
}


/* GET_INFLIGHT_FD / SET_INFLIGHT_FD through the socket: an area for another queue size keeps the queue from
 * starting (logged); the right one starts it, and the region the queue writes is the spec's (version 1, the
 * queue size, used_idx following the used ring, no head left marked once a chain is used). Packed: the packed layout's size. */
static void test_inflight_area(void)
{
	struct rig r;
	rig_open(&r, 1);
	rig_connect(&r);
	negotiate(&r, 0, true);
	set_mem_table(&r);
	int fd[2];
	uint64_t size[2];
	for (int k = 0; k < 2; k++) {
		struct vhu_msg m = mk(VHOST_USER_GET_INFLIGHT_FD, sizeof(struct vhost_user_inflight));
		m.p.inflight = (struct vhost_user_inflight){.num_queues = 2, .queue_size = k ? QSZ : QSZ / 2};
		send_msg(&r, &m);
		m = get_reply(&r, VHOST_USER_GET_INFLIGHT_FD);
		CHECK_EQ(m.nfds, 1);
		fd[k] = m.fds[0];
		size[k] = m.p.inflight.mmap_size;
	}
	struct vhu_msg m = mk(VHOST_USER_SET_INFLIGHT_FD, sizeof(struct vhost_user_inflight));
	m.p.inflight = (struct vhost_user_inflight){.mmap_size = size[0], .num_queues = 2, .queue_size = QSZ / 2};
	m.fds[0] = fd[0];
	m.nfds = 1;
	CHECK_EQ(acked(&r, &m), 0);
	struct guest_q g;
	setup_queue(&r, 1, &g, 0, false, false);
	log_clear();
	enable(&r, 1, 1);
	CHECK_EQ(r.ev.started[1], 0);
	CHECK_EQ(log_count("queue size differs from the inflight area's queue_size"), 1);
	m.p.inflight = (struct vhost_user_inflight){.mmap_size = size[1], .num_queues = 2, .queue_size = QSZ};
	m.fds[0] = fd[1];
	CHECK_EQ(acked(&r, &m), 0);
	CHECK_EQ(r.ev.started[1], 1);
	for (int i = 0; i < 3; i++)
		pass_one(&r, 1, &g, (uint8_t)i);
	uint8_t *area = mmap(NULL, size[1], PROT_READ, MAP_SHARED, fd[1], 0);
	CHECK(area != MAP_FAILED);
	const struct vhost_user_inflight_split *q1 =
		(const void *)(area + vhd_vq_inflight_size(false, QSZ));
	CHECK_EQ(q1->version, 1);
	CHECK_EQ(q1->desc_num, QSZ);
	CHECK_EQ(q1->used_idx, 3);
	for (unsigned i = 0; i < QSZ; i++)
		CHECK_EQ(q1->desc[i].inflight, 0);
	munmap(area, size[1]);
	close(fd[0]);
	close(fd[1]);
	free_queue(&g);
	rig_close(&r);
	/* Packed rings: regions of the packed layout, whose sizes need not be powers of two; 0 is refused. */
	rig_open(&r, 1);
	rig_connect(&r);
	negotiate(&r, VHD_BIT(VIRTIO_F_RING_PACKED), true);
	log_clear();
	m = mk(VHOST_USER_GET_INFLIGHT_FD, sizeof(struct vhost_user_inflight));
	m.p.inflight = (struct vhost_user_inflight){.num_queues = 2, .queue_size = 6};
	send_msg(&r, &m);
	m = get_reply(&r, VHOST_USER_GET_INFLIGHT_FD);
	CHECK_EQ(m.nfds, 1);
	CHECK_EQ(m.p.inflight.mmap_size, 2 * vhd_vq_inflight_size(true, 6));
	close(m.fds[0]);
	m = mk(VHOST_USER_GET_INFLIGHT_FD, sizeof(struct vhost_user_inflight));
	m.p.inflight = (struct vhost_user_inflight){.num_queues = 2, .queue_size = 0};
	send_msg(&r, &m);
	m = get_reply(&r, VHOST_USER_GET_INFLIGHT_FD);
	CHECK_EQ(m.hdr.size, 0);
	CHECK_EQ(m.nfds, 0);
	CHECK_EQ(log_count("queue_size 0 is not a packed ring size"), 1);
	rig_close(&r);
}

/* ------------------------------------------------------------------ hand-over (vhostctl upgrade) */

static uint8_t xblob[VHD_VU_EXPORT_MAX];

/* The config rig_open() gave its device, with events counted in ev. */
static struct vhd_vu_config rig_config(struct rig *r, uint16_t qp, struct events *ev)
{
	return (struct vhd_vu_config){.path = r->path, .max_queue_pairs = qp, .event = on_event, .opaque = ev,
				      .name = "t", .mtu = 1500, .config_space = rig_config_space};
}

/* Import xblob[0, len) with duplicates of fds (as SCM_RIGHTS makes them), fd k replaced by a duplicate of with
 * when k >= 0; every duplicate must be closed afterwards, whatever the outcome. */
static int import_dups(struct rig *r, size_t len, const int *fds, unsigned nfds, int k, int with,
		       struct events *ev, struct vhd_vu_dev **nd, char *err, size_t errlen)
{
	int d[VHD_VU_EXPORT_MAX_FDS];
	for (unsigned i = 0; i < nfds; i++)
		d[i] = dup((int)i == k ? with : fds[i]);
	struct vhd_vu_config c = rig_config(r, 2, ev);
	int rc = vhd_vu_dev_import(&c, xblob, len, d, nfds, nd, err, errlen);
	for (unsigned i = 0; i < nfds; i++)
		CHECK(fcntl(d[i], F_GETFD) < 0 || rc == 0); /* taken: closed on failure */
	return rc;
}

/*
 * One device handed over as vhostctl upgrade does: traffic, export (the queues pause), import from the blob and
 * duplicates of the fds (the queues come up held), the old device released (nothing sent, the socket file
 * kept), resume: the guest's next buffers, across a packed ring's wrap, arrive at the new device, none lost or
 * seen twice, and the front-end's next request is answered by it.
 */
static void export_import(bool packed)
{
	struct rig r;
	rig_open(&r, 2);
	rig_connect(&r);
	negotiate(&r, packed ? VHD_BIT(VIRTIO_F_RING_PACKED) : 0, true);
	set_mem_table(&r);
	struct guest_q g0, g1;
	setup_queue(&r, 0, &g0, 0, packed, false);
	setup_queue(&r, 1, &g1, 64 * 1024, packed, false);
	enable(&r, 0, 1);
	enable(&r, 1, 1);
	CHECK_EQ(r.ev.ready, 1);
	for (int i = 0; i < QSZ - 3; i++)
		pass_one(&r, 1, &g1, (uint8_t)i);
	size_t len;
	unsigned nfds;
	int fds[VHD_VU_EXPORT_MAX_FDS];
	CHECK_EQ(vhd_vu_dev_export(r.dev, xblob, sizeof(xblob), &len, fds, &nfds), 0);
	CHECK(vhd_vu_queue_acquire(r.dev, 1) == NULL); /* paused */
	CHECK_EQ(nfds, 6); /* connection, memory, a kick and a call per queue */
	struct events ev = {0};
	struct vhd_vu_dev *nd;
	char err[200];
	int rc = import_dups(&r, len, fds, nfds, -1, -1, &ev, &nd, err, sizeof(err));
	if (rc)
		fprintf(stderr, "import: %s\n", err);
	CHECK_EQ(rc, 0);
	CHECK_EQ(ev.connected, 1);
	CHECK_EQ(ev.ready, 1);
	CHECK(vhd_vu_queue_acquire(nd, 1) == NULL); /* held until resumed */
	CHECK_EQ(vhd_vu_dev_features(nd), vhd_vu_dev_features(r.dev));
	vhd_vu_dev_release(r.dev);
	CHECK_EQ(r.ev.disconnected, 0);
	CHECK(access(r.path, F_OK) == 0); /* the socket file stays for the new device */
	r.dev = nd;
	CHECK(!reply_ready(&r)); /* no byte went to the front-end */
	vhd_vu_dev_resume(nd);
	for (int i = 0; i < 8; i++)
		pass_one(&r, 1, &g1, (uint8_t)(0x80 + i));
	CHECK_EQ(get_u64(&r, VHOST_USER_GET_QUEUE_NUM), 2);
	free_queue(&g0);
	free_queue(&g1);
	rig_close(&r);
	CHECK(access(r.path, F_OK) < 0); /* the new device owns the file now: removed with it */
}

static void test_export_import_split(void) { export_import(false); }
static void test_export_import_packed(void) { export_import(true); }

/* Hostile blobs and fds: each refused with an error naming what was wrong, every fd closed, the socket file left,
 * and the exporter resumes as if nothing happened. */
static void test_import_hostile(void)
{
	struct rig r;
	rig_open(&r, 2);
	rig_connect(&r);
	negotiate(&r, 0, true);
	set_mem_table(&r);
	struct guest_q g0, g1;
	setup_queue(&r, 0, &g0, 0, false, false);
	setup_queue(&r, 1, &g1, 64 * 1024, false, false);
	enable(&r, 0, 1);
	enable(&r, 1, 1);
	pass_one(&r, 1, &g1, 1);
	size_t len;
	unsigned nfds;
	int fds[VHD_VU_EXPORT_MAX_FDS];
	CHECK_EQ(vhd_vu_dev_export(r.dev, xblob, sizeof(xblob), &len, fds, &nfds), 0);
	int memk = -1;
	struct stat ms, st;
	CHECK(fstat(r.memfd, &ms) == 0);
	for (unsigned i = 0; i < nfds; i++)
		if (fstat(fds[i], &st) == 0 && st.st_ino == ms.st_ino && st.st_dev == ms.st_dev)
			memk = (int)i;
	CHECK(memk > 0);
	struct events ev = {0};
	struct vhd_vu_dev *nd = NULL;
	char err[200];
	static uint8_t orig[VHD_VU_EXPORT_MAX];
	memcpy(orig, xblob, len);
	/* Truncated below the header, and by one record's tail. */
	CHECK_EQ(import_dups(&r, 20, fds, nfds, -1, -1, &ev, &nd, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "shorter than the 32-byte header"));
	uint64_t l = len - 8;
	memcpy(xblob + 16, &l, 8);
	CHECK_EQ(import_dups(&r, len - 8, fds, nfds, -1, -1, &ev, &nd, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "overflow the blob") || strstr(err, "truncated"));
	memcpy(xblob, orig, len);
	/* Not an export; another version. */
	xblob[0] ^= 1;
	CHECK_EQ(import_dups(&r, len, fds, nfds, -1, -1, &ev, &nd, err, sizeof(err)), -EPROTO);
	CHECK(strstr(err, "not a vhost-user device export"));
	xblob[0] ^= 1;
	xblob[8]++;
	CHECK_EQ(import_dups(&r, len, fds, nfds, -1, -1, &ev, &nd, err, sizeof(err)), -EPROTONOSUPPORT);
	CHECK(strstr(err, "export version 2; this build reads version 1"));
	xblob[8]--;
	/* An fd fewer than the header names; the memory region's fd closed (missing). */
	CHECK_EQ(import_dups(&r, len, fds, nfds - 1, -1, -1, &ev, &nd, err, sizeof(err)), -EBADF);
	CHECK(strstr(err, "fds, 5 came"));
	int d[VHD_VU_EXPORT_MAX_FDS];
	for (unsigned i = 0; i < nfds; i++)
		d[i] = dup(fds[i]);
	close(d[memk]);
	d[memk] = -1;
	struct vhd_vu_config c = rig_config(&r, 2, &ev);
	CHECK_EQ(vhd_vu_dev_import(&c, xblob, len, d, nfds, &nd, err, sizeof(err)), -EBADF);
	CHECK(strstr(err, "record 3 (ADD_MEM_REG): fd 1 missing (6 received)"));
	/* A record's size overflowing what is left. */
	uint32_t huge = 0xfffffff0u;
	memcpy(xblob + 32 + 4, &huge, 4);
	CHECK_EQ(import_dups(&r, len, fds, nfds, -1, -1, &ev, &nd, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "record 0 (SET_OWNER): 4294967280 payload bytes and 0 fds overflow the blob"));
	memcpy(xblob, orig, len);
	/* A region beyond its file: the handler's own check refuses it. */
	int small = memfd_create("small", MFD_CLOEXEC);
	CHECK(ftruncate(small, 4096) == 0);
	CHECK_EQ(import_dups(&r, len, fds, nfds, memk, small, &ev, &nd, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "record 3 (ADD_MEM_REG) refused: Invalid argument"));
	/* The connection that is not a socket. */
	CHECK_EQ(import_dups(&r, len, fds, nfds, 0, small, &ev, &nd, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "fd 0 is not the connected unix stream socket"));
	close(small);
	CHECK(access(r.path, F_OK) == 0);
	/* The exporter carries on. */
	vhd_vu_dev_resume(r.dev);
	pass_one(&r, 1, &g1, 2);
	free_queue(&g0);
	free_queue(&g1);
	rig_close(&r);
}

static const struct th_case cases[] = {
	{"inflight_area", test_inflight_area, 0},
	{"export_import_split", test_export_import_split, 0},
	{"export_import_packed", test_export_import_packed, 0},
	{"import_hostile", test_import_hostile, 0},
	{"socket_access", test_socket_access, 0},
	{"negotiation", test_negotiation, 0},
	{"config_space_off_by_default", test_config_space_off_by_default, 0},
	{"second_frontend_refused", test_second_frontend_refused, 0},
	{"queue_split", test_queue_split, 0},
	{"queue_packed", test_queue_packed, 0},
	{"vring_base_handoff_split", test_vring_base_handoff_split, 0},
	{"vring_base_handoff_packed", test_vring_base_handoff_packed, 0},
	{"no_protocol_features_nofd", test_no_protocol_features_nofd, 0},
	{"ready_event", test_ready_event, 0},
	{"hostile_messages", test_hostile_messages, 0},
	{"reconnect_no_leak", test_reconnect_no_leak, 120},
	{"repeated_setup_no_leak", test_repeated_setup_no_leak, 60},
	{"client_reconnect", test_client_reconnect, 0},
	{"fuzz_vu_msg_region_beyond_file", test_fuzz_region_beyond_file, 0},
	{"path_in_use_refused", test_path_in_use_refused, 0},
	{"stale_socket_reclaimed", test_stale_socket_reclaimed, 0},
	{"fini_keeps_others_socket", test_fini_keeps_others_socket, 0},
	{"vring_fd_not_eventfd", test_vring_fd_not_eventfd, 0},
	{"call_fd_full", test_call_fd_full, 0},
	{"vring_num_limits", test_vring_num_limits, 0},
	{"vring_num_boundaries_start", test_vring_num_boundaries_start, 0},
	{"vring_num_rechecked_at_start", test_vring_num_rechecked_at_start, 0},
	{"mem_table_no_regions", test_mem_table_no_regions, 0},
	{"vring_addr_outside_memory", test_vring_addr_outside_memory, 0},
	{"vring_addr_checked_at_start", test_vring_addr_checked_at_start, 0},
	{"iommu_refusals", test_iommu_refusals, 0},
	{"iommu_queue_split", test_iommu_queue_split, 0},
	{"iommu_queue_packed", test_iommu_queue_packed, 0},
	{"iommu_permissions", test_iommu_permissions, 0},
	{"iommu_miss_unanswered", test_iommu_miss_unanswered, 0},
	{"iommu_cache_full", test_iommu_cache_full, 0},
	{"iommu_miss_limit", test_iommu_miss_limit, 0},
	{"iommu_flush_on_mem_table", test_iommu_flush_on_mem_table, 0},
	{"iommu_miss_ahead_split", test_iommu_miss_ahead_split, 0},
	{"iommu_miss_ahead_packed", test_iommu_miss_ahead_packed, 0},
	{"iommu_per_burst", test_iommu_per_burst, 0},
};
TH_MAIN("test_vhost_user", cases)
