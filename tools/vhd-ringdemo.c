/* SPDX-License-Identifier: MIT */
/*
 * vhd-ringdemo: a virtio-net style loopback over vhostd's virtqueues, the demo `make demo` runs until the switch
 * exists.
 *
 * A "guest" thread (driver side) sends Ethernet frames on a TX queue and keeps an RX queue stocked with empty
 * buffers; a "device" thread pops each TX frame, copies it behind a virtio_net_hdr into the next RX buffer and
 * completes both. The guest checks every frame that comes back. The two threads see the shared memory at
 * different addresses (the device maps the memfd a second time and translates guest addresses through a vhd_mem
 * table), as a vhost-user backend sees a VM's memory.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "vhostd/mem.h"
#include "vhostd/virtq.h"

#define QSIZE 256
#define BURST 32
#define BUF_SIZE 2048
#define GPA 0x80000000ull

struct ring {
	struct vhd_vq_layout lay;
	size_t off;
};

struct demo {
	bool packed;
	uint32_t frame_len;
	uint64_t count;
	int cpu_guest, cpu_device;
	int memfd;
	size_t total;
	struct ring tx, rx;
	size_t pool_off; /* 2 * QSIZE buffers: TX then RX */
	atomic_bool stop;
	const char *error;
	char errbuf[256];
	/* results */
	uint64_t sent, received, bytes, tx_kicks_needed, rx_irqs_needed;
	double seconds;
};

static void pin(int cpu)
{
	if (cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void fail(struct demo *d, const char *fmt, const char *detail)
{
	snprintf(d->errbuf, sizeof(d->errbuf), fmt, detail);
	d->error = d->errbuf;
	atomic_store(&d->stop, true);
}

static struct vhd_vq *make_vq(struct demo *d, enum vhd_vq_side side, uint8_t *base, const struct ring *r,
			      const struct vhd_mem *mem, const char *name)
{
	struct vhd_vq_config c = {
		.side = side,
		.num = QSIZE,
		.features = VHD_BIT(VIRTIO_F_VERSION_1) | (d->packed ? VHD_BIT(VIRTIO_F_RING_PACKED) : 0),
		.desc = base + r->off + r->lay.desc_off,
		.driver = base + r->off + r->lay.driver_off,
		.device = base + r->off + r->lay.device_off,
		.mem = mem,
		.base = d->packed ? VHD_VQ_PACKED_BASE_INIT : 0,
		.name = name,
	};
	struct vhd_vq *vq = NULL;
	if (vhd_vq_create(&c, &vq) < 0)
		return NULL;
	vhd_vq_disable_notify(vq); /* both sides poll */
	return vq;
}

/* Frame seq: broadcast destination, a locally administered source, EtherType 0x88b5 (local experimental),
 * then the sequence number and a byte pattern. */
static void make_frame(uint8_t *p, uint32_t len, uint64_t seq)
{
	static const uint8_t hdr[14] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5};
	memcpy(p, hdr, sizeof(hdr));
	memcpy(p + 14, &seq, sizeof(seq));
	for (uint32_t i = 22; i < len; i++)
		p[i] = (uint8_t)(seq + i);
}

static bool frame_ok(const uint8_t *p, uint32_t len, uint64_t seq)
{
	uint64_t s;
	memcpy(&s, p + 14, sizeof(s));
	if (s != seq || p[12] != 0x88 || p[13] != 0xb5)
		return false;
	for (uint32_t i = 22; i < len; i++)
		if (p[i] != (uint8_t)(seq + i))
			return false;
	return true;
}

static void *device_thread(void *arg)
{
	struct demo *d = arg;
	pin(d->cpu_device);
	struct vhd_mem *mem;
	if (vhd_mem_create(&mem) < 0 || vhd_mem_map_fd(mem, dup(d->memfd), 0, GPA, d->total, 0) < 0) {
		fail(d, "device: cannot map guest memory%s", "");
		return NULL;
	}
	uint8_t *base = vhd_mem_guest_to_host(mem, GPA, d->total);
	struct vhd_vq *tx = make_vq(d, VHD_VQ_DEVICE, base, &d->tx, mem, "demo txq");
	struct vhd_vq *rx = make_vq(d, VHD_VQ_DEVICE, base, &d->rx, mem, "demo rxq");
	if (!tx || !rx) {
		fail(d, "device: cannot create queues%s", "");
		return NULL;
	}
	struct vhd_vq_chain tch[BURST], rch[BURST];
	struct iovec tiov[BURST * 4], riov[BURST * 4];
	struct vhd_vq_used tu[BURST], ru[BURST];
	while (!atomic_load_explicit(&d->stop, memory_order_relaxed)) {
		/* Take only as many TX frames as there are RX buffers to put them in. */
		int nr = vhd_vq_pop(rx, rch, BURST, riov, BURST * 4);
		if (nr <= 0) {
			if (nr < 0)
				fail(d, "device: rx queue broken: %s", vhd_vq_error_detail(rx));
			continue;
		}
		int nt = 0;
		while (nt == 0 && !atomic_load_explicit(&d->stop, memory_order_relaxed)) {
			nt = vhd_vq_pop(tx, tch, (unsigned)nr, tiov, BURST * 4);
			if (nt < 0) {
				fail(d, "device: tx queue broken: %s", vhd_vq_error_detail(tx));
				break;
			}
		}
		if (nt <= 0)
			break;
		for (int i = 0; i < nt; i++) {
			/* RX layout: virtio_net_hdr_mrg_rxbuf then the frame, scattered over the writable segments. */
			struct virtio_net_hdr_mrg_rxbuf h = {.hdr.gso_type = VIRTIO_NET_HDR_GSO_NONE, .num_buffers = 1};
			uint8_t *dst = rch[i].iov[0].iov_base;
			uint32_t room = rch[i].in_len, len = sizeof(h) + tch[i].out_len;
			if (rch[i].nin != 1 || len > room) {
				fail(d, "device: rx buffer too small%s", "");
				break;
			}
			memcpy(dst, &h, sizeof(h));
			uint32_t off = sizeof(h);
			for (unsigned k = 0; k < tch[i].nout; k++) {
				memcpy(dst + off, tch[i].iov[k].iov_base, tch[i].iov[k].iov_len);
				off += (uint32_t)tch[i].iov[k].iov_len;
			}
			tu[i] = (struct vhd_vq_used){tch[i].id, tch[i].ndesc, 0};
			ru[i] = (struct vhd_vq_used){rch[i].id, rch[i].ndesc, len};
		}
		vhd_vq_push(tx, tu, (unsigned)nt);
		vhd_vq_push(rx, ru, (unsigned)nt);
		/* Unused RX chains go back empty: a real device would keep them, but the demo stays simple. */
		for (int i = nt; i < nr; i++)
			ru[i - nt] = (struct vhd_vq_used){rch[i].id, rch[i].ndesc, 0};
		if (nr > nt)
			vhd_vq_push(rx, ru, (unsigned)(nr - nt));
		d->rx_irqs_needed += vhd_vq_need_notify(rx);
		vhd_vq_need_notify(tx);
	}
	vhd_vq_destroy(tx);
	vhd_vq_destroy(rx);
	vhd_mem_destroy(mem);
	return NULL;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *guest_thread(void *arg)
{
	struct demo *d = arg;
	pin(d->cpu_guest);
	uint8_t *base = mmap(NULL, d->total, PROT_READ | PROT_WRITE, MAP_SHARED, d->memfd, 0);
	if (base == MAP_FAILED) {
		fail(d, "guest: mmap failed%s", "");
		return NULL;
	}
	struct vhd_vq *tx = make_vq(d, VHD_VQ_DRIVER, base, &d->tx, NULL, "demo guest txq");
	struct vhd_vq *rx = make_vq(d, VHD_VQ_DRIVER, base, &d->rx, NULL, "demo guest rxq");
	if (!tx || !rx) {
		fail(d, "guest: cannot create queues%s", "");
		return NULL;
	}
	/* Buffers: index i < QSIZE are TX, the rest RX; a free stack each. */
	uint16_t txfree[QSIZE], rxfree[QSIZE];
	unsigned ntx = QSIZE, nrx = QSIZE;
	for (unsigned i = 0; i < QSIZE; i++) {
		txfree[i] = (uint16_t)i;
		rxfree[i] = (uint16_t)(QSIZE + i);
	}
	struct vhd_vq_seg seg[BURST];
	struct vhd_vq_buf buf[BURST];
	struct vhd_vq_done done[BURST];
	uint64_t next_seq = 0, expect = 0;
	double t0 = now();
	while (expect < d->count && !atomic_load_explicit(&d->stop, memory_order_relaxed)) {
		/* Keep RX stocked. */
		unsigned n = 0;
		while (n < BURST && n < nrx) {
			uint16_t b = rxfree[nrx - 1 - n];
			seg[n] = (struct vhd_vq_seg){GPA + d->pool_off + (uint64_t)b * BUF_SIZE, BUF_SIZE};
			buf[n] = (struct vhd_vq_buf){.segs = &seg[n], .nout = 0, .nin = 1, .token = (void *)(uintptr_t)b};
			n++;
		}
		int r = n ? vhd_vq_add(rx, buf, n) : 0;
		if (r > 0)
			nrx -= (unsigned)r;
		/* Send a burst. */
		n = 0;
		while (n < BURST && n < ntx && next_seq + n < d->count) {
			uint16_t b = txfree[ntx - 1 - n];
			make_frame(base + d->pool_off + (size_t)b * BUF_SIZE, d->frame_len, next_seq + n);
			seg[n] = (struct vhd_vq_seg){GPA + d->pool_off + (uint64_t)b * BUF_SIZE, d->frame_len};
			buf[n] = (struct vhd_vq_buf){.segs = &seg[n], .nout = 1, .nin = 0, .token = (void *)(uintptr_t)b};
			n++;
		}
		r = n ? vhd_vq_add(tx, buf, n) : 0;
		if (r < 0) {
			fail(d, "guest: tx add failed: %s", vhd_vq_error_detail(tx));
			break;
		}
		ntx -= (unsigned)r;
		next_seq += (uint64_t)r;
		d->tx_kicks_needed += r > 0 && vhd_vq_need_notify(tx);
		/* Reclaim sent frames. */
		int g = vhd_vq_get(tx, done, BURST);
		for (int i = 0; i < g; i++)
			txfree[ntx++] = (uint16_t)(uintptr_t)done[i].token;
		/* Receive. */
		g = vhd_vq_get(rx, done, BURST);
		if (g < 0) {
			fail(d, "guest: rx get failed: %s", vhd_vq_error_detail(rx));
			break;
		}
		for (int i = 0; i < g; i++) {
			uint16_t b = (uint16_t)(uintptr_t)done[i].token;
			rxfree[nrx++] = b;
			if (done[i].len == 0)
				continue; /* returned unused */
			const uint8_t *p = base + d->pool_off + (size_t)b * BUF_SIZE;
			uint32_t flen = done[i].len - (uint32_t)sizeof(struct virtio_net_hdr_mrg_rxbuf);
			if (flen != d->frame_len || !frame_ok(p + sizeof(struct virtio_net_hdr_mrg_rxbuf), flen, expect)) {
				fail(d, "guest: frame %s came back wrong", "");
				break;
			}
			expect++;
			d->bytes += flen;
		}
	}
	d->seconds = now() - t0;
	d->sent = next_seq;
	d->received = expect;
	atomic_store(&d->stop, true);
	vhd_vq_destroy(tx);
	vhd_vq_destroy(rx);
	munmap(base, d->total);
	return NULL;
}

static int run(bool packed, uint32_t frame_len, uint64_t count, int cpu_g, int cpu_d)
{
	struct demo d = {.packed = packed, .frame_len = frame_len, .count = count, .cpu_guest = cpu_g,
			 .cpu_device = cpu_d};
	atomic_init(&d.stop, false);
	if (vhd_vq_layout(packed, QSIZE, &d.tx.lay) < 0 || vhd_vq_layout(packed, QSIZE, &d.rx.lay) < 0)
		return 1;
	d.tx.off = 0;
	d.rx.off = (d.tx.lay.size + 4095) & ~(size_t)4095;
	d.pool_off = (d.rx.off + d.rx.lay.size + 4095) & ~(size_t)4095;
	d.total = d.pool_off + 2 * QSIZE * (size_t)BUF_SIZE;
	d.memfd = memfd_create("vhd-ringdemo", MFD_CLOEXEC);
	if (d.memfd < 0 || ftruncate(d.memfd, (off_t)d.total) < 0) {
		perror("memfd");
		return 1;
	}
	pthread_t g, dv;
	pthread_create(&dv, NULL, device_thread, &d);
	pthread_create(&g, NULL, guest_thread, &d);
	pthread_join(g, NULL);
	pthread_join(dv, NULL);
	close(d.memfd);
	printf("%-6s %4u-byte frames: sent %llu, looped back %llu intact, %.1f MB in %.3f s = %.2f Mpps, "
	       "%.2f Gbit/s%s%s\n",
	       packed ? "packed" : "split", frame_len, (unsigned long long)d.sent, (unsigned long long)d.received,
	       (double)d.bytes / 1e6, d.seconds, (double)d.received / d.seconds / 1e6,
	       (double)d.bytes * 8 / d.seconds / 1e9, d.error ? " ERROR: " : "", d.error ? d.error : "");
	return d.error || d.received != count ? 1 : 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: vhd-ringdemo [--count N] [--size BYTES] [--layout split|packed|both] [--cpus G,D]\n"
		   "Loops Ethernet frames from a guest TX virtqueue back to its RX virtqueue through a device\n"
		   "thread, checking each frame, and prints what moved. Defaults: 1000000 frames, sizes 64 and\n"
		   "1518, both layouts, no CPU pinning.\n");
}

int main(int argc, char **argv)
{
	uint64_t count = 1000000;
	uint32_t size = 0;
	int layouts = 3, cpu_g = -1, cpu_d = -1;
	static const struct option opts[] = {{"count", 1, 0, 'c'}, {"size", 1, 0, 's'}, {"layout", 1, 0, 'l'},
					     {"cpus", 1, 0, 'p'},  {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "c:s:l:p:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			count = strtoull(optarg, NULL, 10);
			break;
		case 's':
			size = (uint32_t)strtoul(optarg, NULL, 10);
			if (size < 60 || size > BUF_SIZE - 64) {
				fprintf(stderr, "vhd-ringdemo: --size must be 60..%d\n", BUF_SIZE - 64);
				return 2;
			}
			break;
		case 'l':
			layouts = !strcmp(optarg, "split") ? 1 : !strcmp(optarg, "packed") ? 2 : !strcmp(optarg, "both") ? 3 : 0;
			if (!layouts) {
				usage(stderr);
				return 2;
			}
			break;
		case 'p':
			if (sscanf(optarg, "%d,%d", &cpu_g, &cpu_d) != 2) {
				usage(stderr);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	uint32_t sizes[2] = {size ? size : 64, size ? 0 : 1518};
	int rc = 0;
	for (int l = 0; l < 2; l++) {
		if (!(layouts & (1 << l)))
			continue;
		for (int s = 0; s < 2 && sizes[s]; s++)
			rc |= run(l == 1, sizes[s], count, cpu_g, cpu_d);
	}
	return rc;
}
