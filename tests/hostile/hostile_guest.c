/* SPDX-License-Identifier: MIT */
/*
 * A hostile guest: connects to a vhost-user port as a front-end (raw messages), sets up one queue pair over its
 * own memfd, then corrupts its own rings in a loop for DURATION seconds while the back-end (vhostd) serves other
 * ports: avail index jumps, head and next indexes out of range, buffers outside guest memory or wrapping the
 * address space, looping chains, indirect garbage; between attacks its receive ring holds only 1-byte buffers
 * (refilled as fast as they come back) so that a flood towards it costs the back-end as much as possible.
 * Each attack is followed by a fresh setup of the queue it broke (as a driver reset would).
 *
 * usage: hostile_guest SOCKET DURATION_S
 * Prints one JSON line: {"attacks": N, "tx_attacks": N, "rx_attacks": N, "rx_tiny_returned": N}.
 *
 * usage: hostile_guest SOCKET DURATION_S long-chains
 * Breaks nothing: keeps its transmit ring full of valid frames, each behind an indirect table of QN descriptors
 * of which all but the first are empty (the most walking per frame a queue of QN allows), sent to its own MAC
 * (so the switch drops them as hairpins once it has learnt it), with 1-byte receive buffers as above.
 * Prints {"long_chains_posted": N, "long_chains_returned": N, "rx_tiny_returned": N}.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "spec/endian.h"
#include "spec/virtio_config.h"
#include "spec/virtio_ring.h"
#include "vhost_user/msg.h"
#include "../unit/vu_raw.h"

#define MEM_SIZE (2u << 20)
#define GPA 0x40000000ull
#define QN 256u
#define RING_OFF(q) ((size_t)(q) * 0x10000u) /* desc, then avail at +0x1000, used at +0x2000 */
#define BUF_OFF 0x100000u

static int sock = -1, memfd = -1;
static uint8_t *mem;
static uint16_t avail_idx[2];
static int call_fd[2];
static uint16_t rx_seen; /* used index of the RX ring last looked at */

static void die(const char *what)
{
	fprintf(stderr, "hostile_guest: %s\n", what);
	exit(1);
}

static void send_msg(struct vhu_msg *m)
{
	if (vhu_msg_send(sock, m) < 0)
		die("send failed: the back-end closed the connection");
}

/* Every message goes with NEED_REPLY: the ack keeps us in step with the back-end's handling. */
static uint64_t request(struct vhu_msg *m, bool has_reply)
{
	if (!has_reply)
		m->hdr.flags |= VHOST_USER_NEED_REPLY;
	send_msg(m);
	struct pollfd p = {.fd = sock, .events = POLLIN};
	if (poll(&p, 1, 5000) <= 0)
		die("no reply within 5 s");
	struct vhu_msg r;
	if (vhu_msg_recv(sock, &r) < 0)
		die("connection lost");
	vhu_msg_close_fds(&r);
	return r.p.u64;
}

static struct virtq_desc *desc(unsigned q)
{
	return (struct virtq_desc *)(mem + RING_OFF(q));
}

static struct virtq_avail *avail(unsigned q)
{
	return (struct virtq_avail *)(mem + RING_OFF(q) + 0x1000);
}

static struct virtq_used *used(unsigned q)
{
	return (struct virtq_used *)(mem + RING_OFF(q) + 0x2000);
}

static void publish(unsigned q, uint16_t head)
{
	avail(q)->ring[avail_idx[q] % QN] = vhd_cpu_to_le16(head);
	avail_idx[q]++;
	__atomic_store_n(&avail(q)->idx, vhd_cpu_to_le16(avail_idx[q]), __ATOMIC_RELEASE);
}

static void wdesc(unsigned q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	desc(q)[i] = (struct virtq_desc){vhd_cpu_to_le64(addr), vhd_cpu_to_le32(len), vhd_cpu_to_le16(flags),
					 vhd_cpu_to_le16(next)};
}

/* (Re)start queue q from scratch: rings zeroed, base 0, polled (NOFD kick), enabled. */
static void queue_setup(unsigned q)
{
	struct vhu_msg m = mk(VHOST_USER_GET_VRING_BASE, 8);
	m.p.state.index = q;
	request(&m, true);
	memset(mem + RING_OFF(q), 0, 0x3000);
	avail_idx[q] = 0;
	if (q == 0)
		rx_seen = 0;
	m = mk(VHOST_USER_SET_VRING_NUM, 8);
	m.p.state = (struct vhost_vring_state){q, QN};
	request(&m, false);
	m = mk(VHOST_USER_SET_VRING_BASE, 8);
	m.p.state = (struct vhost_vring_state){q, 0};
	request(&m, false);
	m = mk(VHOST_USER_SET_VRING_ADDR, sizeof(struct vhost_vring_addr));
	uint64_t ua = GPA + RING_OFF(q); /* user addresses equal guest addresses here */
	m.p.addr = (struct vhost_vring_addr){q, 0, ua, ua + 0x2000, ua + 0x1000, 0};
	request(&m, false);
	m = mk(VHOST_USER_SET_VRING_KICK, 8);
	m.p.u64 = q | VHOST_USER_VRING_NOFD;
	request(&m, false);
	m = mk(VHOST_USER_SET_VRING_ENABLE, 8);
	m.p.state = (struct vhost_vring_state){q, 1};
	request(&m, false);
}

static void connect_and_negotiate(const char *path)
{
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	struct vhu_msg m = mk(VHOST_USER_GET_FEATURES, 0);
	uint64_t offered = request(&m, true);
	m = mk(VHOST_USER_SET_OWNER, 0);
	send_msg(&m);
	m = mk(VHOST_USER_SET_PROTOCOL_FEATURES, 8);
	m.p.u64 = VHD_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK);
	send_msg(&m);
	m = mk(VHOST_USER_SET_FEATURES, 8);
	m.p.u64 = VHD_BIT(VIRTIO_F_VERSION_1) | VHD_BIT(VHOST_USER_F_PROTOCOL_FEATURES) |
		  (offered & VHD_BIT(VIRTIO_F_INDIRECT_DESC));
	request(&m, false);
	m = mk(VHOST_USER_SET_MEM_TABLE, 8 + 32);
	m.p.memory.nregions = 1;
	m.p.memory.regions[0] = (struct vhost_user_memory_region){GPA, MEM_SIZE, GPA, 0};
	m.fds[0] = memfd;
	m.nfds = 1;
	request(&m, false);
	for (unsigned q = 0; q < 2; q++) {
		call_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		m = mk(VHOST_USER_SET_VRING_CALL, 8);
		m.p.u64 = q;
		m.fds[0] = call_fd[q];
		m.nfds = 1;
		request(&m, false);
		queue_setup(q);
	}
}

/* RX (queue 0): keep every slot filled with a 1-byte writable buffer; returns how many came back. */
static unsigned rx_tiny_refill(void)
{
	uint16_t u = vhd_le16(__atomic_load_n(&used(0)->idx, __ATOMIC_ACQUIRE));
	unsigned back = (uint16_t)(u - rx_seen);
	rx_seen = u;
	while ((uint16_t)(avail_idx[0] - u) < QN) {
		uint16_t slot = avail_idx[0] % QN;
		wdesc(0, slot, GPA + BUF_OFF + slot * 16u, 1, VIRTQ_DESC_F_WRITE, 0);
		publish(0, slot);
	}
	return back;
}

/* One corruption of queue q's ring, chosen by kind; every one of them breaks the queue once it is looked at. */
static void corrupt(unsigned q, unsigned kind)
{
	uint16_t w = q == 0 ? VIRTQ_DESC_F_WRITE : 0;
	uint16_t slot = avail_idx[q] % QN;
	switch (kind % 7) {
	case 0: /* avail idx far past what the ring holds */
		__atomic_store_n(&avail(q)->idx, vhd_cpu_to_le16((uint16_t)(avail_idx[q] + 1000)), __ATOMIC_RELEASE);
		return;
	case 1: /* head beyond the table */
		avail(q)->ring[slot] = vhd_cpu_to_le16(QN + 7);
		avail_idx[q]++;
		__atomic_store_n(&avail(q)->idx, vhd_cpu_to_le16(avail_idx[q]), __ATOMIC_RELEASE);
		return;
	case 2: /* buffer outside guest memory */
		wdesc(q, slot, GPA + MEM_SIZE + 4096, 64, w, 0);
		break;
	case 3: /* buffer wrapping the address space */
		wdesc(q, slot, UINT64_MAX - 16, 64, w, 0);
		break;
	case 4: /* chain looping on itself */
		wdesc(q, slot, GPA + BUF_OFF, 64, w | VIRTQ_DESC_F_NEXT, slot);
		break;
	case 5: /* indirect table of 7 bytes */
		wdesc(q, slot, GPA + BUF_OFF, 7, VIRTQ_DESC_F_INDIRECT, 0);
		break;
	case 6: /* next beyond the table */
		wdesc(q, slot, GPA + BUF_OFF, 64, w | VIRTQ_DESC_F_NEXT, 0xffff);
		break;
	}
	publish(q, slot);
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* --- long chains: frame k's table at LC_TBL + slot * LC_TBL_SIZE, its header and frame at LC_FRAME + slot * 128 */
#define LC_SLOTS 96u
#define LC_TBL 0x110000u
#define LC_TBL_SIZE (QN * 16u)
#define LC_FRAME 0x104000u
#define LC_LEN (12u + 60u)
_Static_assert(LC_TBL + LC_SLOTS * LC_TBL_SIZE <= MEM_SIZE && LC_FRAME + LC_SLOTS * 128u <= LC_TBL,
	       "long-chain tables and frames inside guest memory, clear of the rings and RX buffers");

static uint16_t lc_used_seen;

/* Post chain slot: header (all zero: no offloads) and a 60-byte frame to and from 02:00:00:00:00:68, then
 * QN - 1 empty descriptors in its table. */
static void lc_post(uint16_t slot)
{
	uint8_t *f = mem + LC_FRAME + slot * 128u;
	memset(f, 0, LC_LEN);
	static const uint8_t me[6] = {0x02, 0, 0, 0, 0, 0x68};
	memcpy(f + 12, me, 6);
	memcpy(f + 18, me, 6);
	f[24] = 0x88, f[25] = 0xb5; /* local experimental EtherType */
	struct virtq_desc *t = (struct virtq_desc *)(mem + LC_TBL + slot * LC_TBL_SIZE);
	for (unsigned j = 0; j < QN; j++)
		t[j] = (struct virtq_desc){vhd_cpu_to_le64(GPA + LC_FRAME + slot * 128u), vhd_cpu_to_le32(j ? 0 : LC_LEN),
					   vhd_cpu_to_le16(j + 1 < QN ? VIRTQ_DESC_F_NEXT : 0),
					   vhd_cpu_to_le16((uint16_t)(j + 1 < QN ? j + 1 : 0))};
	wdesc(1, slot, GPA + LC_TBL + slot * LC_TBL_SIZE, LC_TBL_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
	publish(1, slot);
}

/* Chains the back-end gave back since the last call, each posted again at once if repost. */
static unsigned lc_refill(bool repost)
{
	struct virtq_used *u = used(1);
	uint16_t idx = vhd_le16(__atomic_load_n(&u->idx, __ATOMIC_ACQUIRE));
	unsigned back = 0;
	for (; lc_used_seen != idx; lc_used_seen++, back++) {
		uint32_t id = vhd_le32(u->ring[lc_used_seen % QN].id);
		if (id >= LC_SLOTS)
			die("the back-end returned a chain id never posted");
		if (repost)
			lc_post((uint16_t)id);
	}
	return back;
}

static int long_chains(double duration)
{
	unsigned long long posted = LC_SLOTS, back = 0, tiny_back = 0;
	for (uint16_t s = 0; s < LC_SLOTS; s++)
		lc_post(s);
	double end = now_s() + duration;
	while (now_s() < end) {
		unsigned b = lc_refill(true);
		back += b;
		posted += b;
		tiny_back += rx_tiny_refill();
		usleep(100);
	}
	usleep(200000);
	back += lc_refill(false); /* the last ones */
	printf("{\"long_chains_posted\": %llu, \"long_chains_returned\": %llu, \"rx_tiny_returned\": %llu}\n", posted,
	       back, tiny_back);
	close(sock);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3 && !(argc == 4 && !strcmp(argv[3], "long-chains"))) {
		fprintf(stderr, "usage: %s SOCKET DURATION_S [long-chains]\n", argv[0]);
		return 2;
	}
	double duration = atof(argv[2]);
	memfd = memfd_create("hostile-guest", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, MEM_SIZE) < 0)
		die("memfd");
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (mem == MAP_FAILED)
		die("mmap");
	connect_and_negotiate(argv[1]);
	if (argc == 4)
		return long_chains(duration);
	unsigned attacks = 0, tx_attacks = 0, rx_attacks = 0;
	unsigned long long tiny_back = 0;
	double end = now_s() + duration;
	for (unsigned k = 0; now_s() < end; k++) {
		/* A while of 1-byte receive buffers under whatever flood comes our way. */
		double calm = now_s() + 0.05;
		while (now_s() < calm) {
			tiny_back += rx_tiny_refill();
			usleep(200);
		}
		/* Transmit attacks break for sure (the switch polls our TX ring); receive attacks break when a frame
		 * comes our way. Two of three attacks go to TX. */
		unsigned q = k % 3 == 2 ? 0 : 1;
		corrupt(q, k / 3);
		attacks++;
		if (q == 1)
			tx_attacks++;
		else
			rx_attacks++;
		usleep(20000);
		queue_setup(q);
	}
	printf("{\"attacks\": %u, \"tx_attacks\": %u, \"rx_attacks\": %u, \"rx_tiny_returned\": %llu}\n", attacks,
	       tx_attacks, rx_attacks, tiny_back);
	close(sock);
	return 0;
}
