/* SPDX-License-Identifier: MIT */
/*
 * netcost: what the virtio-net data path costs per packet, both sides in one thread.
 *
 * The cross-core benchmarks (vhost-pktgen, bench/compare.py) measure what users see, but on a 2-core machine
 * shared with anything else their figures move by tens of percent. This one takes the other core and the cache
 * line handoffs out: a driver-side and a device-side queue over the same rings in one process, driven in turn
 * by one thread, so the work per packet is the library's alone. Run it under
 *   valgrind --tool=callgrind bench/netcost --count N ...
 * and divide the instruction total by the packets: that figure repeats exactly from run to run, whatever else
 * the machine does, which is what an optimisation needs to be judged by. Natively it prints ns per packet.
 *
 *   tx: vhd_net_drv_xmit -> vhd_net_dev_dequeue -> free    (guest transmit, what a back-end receives)
 *   rx: vhd_net_dev_enqueue -> vhd_net_drv_recv -> free -> vhd_net_drv_refill   (guest receive)
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "vhostd/dlog.h"
#include "vhostd/iotlb.h"
#include "vhostd/mem.h"
#include "vhostd/net.h"
#include "vhostd/pkt.h"
#include "vhostd/virtq.h"

#define GPA_BASE 0x10000000ull
#define IOMMU_GPA 0x40000000ull /* --iommu: where guest-physical addresses start (IOVAs at GPA_BASE) */
#define BUF_SIZE 2048u
#define POOL_COUNT 1024u
#define PAGE 4096u
#define BURST 32u

struct side_pair {
	struct vhd_vq *drv, *dev;
};

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "netcost: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
	exit(1);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: netcost [--dir tx|rx] [--size BYTES] [--count N] [--packed] [--no-mrg] [--in-order]\n"
		   "               [--qsize N] [--log] [--inflight] [--iommu] [--iommu-pages] [--iommu-pages-rw]\n"
		   "  One thread drives both the driver and the device side of a virtio-net queue pair over shared\n"
		   "  rings and prints ns per packet; under callgrind, instructions / N is the exact cost per packet.\n"
		   "  --dir     tx: driver xmit -> device dequeue; rx: device enqueue -> driver recv + refill (rx)\n"
		   "  --size    frame bytes, 60..1514 (default 64)\n"
		   "  --count   packets (default 10000000)\n"
		   "  --qsize   ring size (default 256)\n"
		   "  --log     the device logs its writes in a dirty log (live migration), rings included\n"
		   "  --inflight the device tracks the chains it takes in a vhost-user inflight region\n"
		   "  --iommu   ACCESS_PLATFORM: descriptors carry IOVAs the device translates through an IOTLB\n"
		   "            holding all of the memory in one read/write entry (warm, as vhost-pktgen --iommu)\n"
		   "  --iommu-pages    as --iommu, but the buffers are mapped as a Linux guest behind intel-iommu\n"
		   "            maps them and QEMU answers its misses: one 4 KiB entry per page, read-only when the\n"
		   "            device reads them (tx), write-only when it writes them (rx); neighbouring pages lie\n"
		   "            apart in host memory, so no two entries merge (the rings: one read/write entry)\n"
		   "  --iommu-pages-rw the same with every page read/write\n");
}

int main(int argc, char **argv)
{
	bool rx = true, packed = false, mrg = true, in_order = false, dlog = false, infl = false, iommu = false;
	unsigned pages = 0; /* --iommu-pages: the buffers' permission per 4 KiB entry, 0 for one entry */
	unsigned size = 64, qsize = 256;
	unsigned long long count = 10000000ull;
	static const struct option lo[] = {
		{"dir", required_argument, 0, 'd'}, {"size", required_argument, 0, 's'},
		{"count", required_argument, 0, 'c'}, {"packed", no_argument, 0, 'p'},
		{"no-mrg", no_argument, 0, 'm'},      {"in-order", no_argument, 0, 'i'},
		{"qsize", required_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},
		{"log", no_argument, 0, 'l'},         {"inflight", no_argument, 0, 'f'},
		{"iommu", no_argument, 0, 'o'},       {"iommu-pages", no_argument, 0, 'P'},
		{"iommu-pages-rw", no_argument, 0, 'R'},
		{0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'd':
			if (strcmp(optarg, "tx") && strcmp(optarg, "rx")) {
				usage(stderr);
				return 2;
			}
			rx = !strcmp(optarg, "rx");
			break;
		case 's':
			size = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'c':
			count = strtoull(optarg, NULL, 0);
			break;
		case 'p':
			packed = true;
			break;
		case 'm':
			mrg = false;
			break;
		case 'i':
			in_order = true;
			break;
		case 'q':
			qsize = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'l':
			dlog = true;
			break;
		case 'f':
			infl = true;
			break;
		case 'o':
			iommu = true;
			break;
		case 'P':
			iommu = true;
			pages = 1; /* set to RO or WO once the direction is known */
			break;
		case 'R':
			iommu = true;
			pages = VHD_IOTLB_RW;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (size < 60 || size > 1514 || qsize < 2 || qsize > 4096 || (qsize & (qsize - 1)) || count == 0) {
		usage(stderr);
		return 2;
	}

	uint64_t features = 1ull << VIRTIO_F_VERSION_1;
	if (mrg)
		features |= 1ull << VIRTIO_NET_F_MRG_RXBUF;
	if (packed)
		features |= 1ull << VIRTIO_F_RING_PACKED;
	if (in_order)
		features |= 1ull << VIRTIO_F_IN_ORDER;
	struct vhd_net_cfg cfg;
	int rc = vhd_net_cfg_init(&cfg, features);
	if (rc < 0)
		die("vhd_net_cfg_init", rc);

	struct vhd_vq_layout lay;
	if ((rc = vhd_vq_layout(packed, (uint16_t)qsize, &lay)) < 0)
		die("vhd_vq_layout", rc);
	if (pages == 1)
		pages = rx ? VHD_IOTLB_WO : VHD_IOTLB_RO;
	/* Page-aligned buffers, so that each 4 KiB entry holds whole buffers (BUF_SIZE divides the page). */
	size_t pool_off = (2 * lay.size + PAGE - 1) & ~(size_t)(PAGE - 1), len = pool_off + (size_t)POOL_COUNT * BUF_SIZE;
	/* --iommu-pages: the memory twice, at two host addresses (a memfd mapped twice), the odd pages mapped
	 * through the second: a guest's pages are scattered in host memory, and contiguous ones would merge. */
	uint8_t *block, *alias = NULL;
	if (pages) {
		int fd = memfd_create("netcost", MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (off_t)len) < 0)
			die("memfd", errno);
		block = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		alias = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (block == MAP_FAILED || alias == MAP_FAILED)
			die("mmap", errno);
		close(fd);
	} else {
		block = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (block == MAP_FAILED)
			die("mmap", errno);
	}
	struct vhd_mem *mem;
	if ((rc = vhd_mem_create(&mem)) < 0)
		die("vhd_mem_create", rc);
	/* With --iommu the driver's addresses are IOVAs (GPA_BASE up), and guest-physical addresses lie elsewhere,
	 * so that only a translation through the IOTLB finds the bytes (as with vhost-pktgen --iommu). */
	struct vhd_mem_region_info ri = {.guest_addr = iommu ? IOMMU_GPA : GPA_BASE, .size = len, .user_addr = (uintptr_t)block,
					 .host = block};
	if ((rc = vhd_mem_add(mem, &ri)) < 0)
		die("vhd_mem_add", rc);
	struct vhd_mem_region_info ai = {.guest_addr = IOMMU_GPA + len, .size = len, .user_addr = (uintptr_t)alias,
					 .host = alias};
	if (pages && (rc = vhd_mem_add(mem, &ai)) < 0)
		die("vhd_mem_add", rc);
	struct vhd_iotlb *iotlb = NULL;
	if (iommu && (rc = vhd_iotlb_create(0, &iotlb)) < 0)
		die("IOTLB", rc);
	if (iommu && !pages && (rc = vhd_iotlb_update(iotlb, mem, GPA_BASE, len, (uintptr_t)block, VHD_IOTLB_RW)) < 0)
		die("IOTLB", rc);
	if (pages && (rc = vhd_iotlb_update(iotlb, mem, GPA_BASE, pool_off, (uintptr_t)block, VHD_IOTLB_RW)) < 0)
		die("IOTLB rings", rc);
	for (size_t off = pool_off; pages && off < len; off += PAGE) {
		uint8_t *ua = ((off / PAGE) & 1 ? alias : block) + off;
		if ((rc = vhd_iotlb_update(iotlb, mem, GPA_BASE + off, PAGE, (uintptr_t)ua, pages)) < 0)
			die("IOTLB page", rc);
	}

	/* Queue 0 carries the direction measured; both sides see the same bytes, the device through the table. */
	struct side_pair q;
	for (int side = 0; side < 2; side++) {
		struct vhd_vq_config vc = {
			.side = side == 0 ? VHD_VQ_DRIVER : VHD_VQ_DEVICE,
			.num = (uint16_t)qsize,
			.features = features,
			.desc = block + lay.desc_off,
			.driver = block + lay.driver_off,
			.device = block + lay.device_off,
			.mem = side == 0 ? NULL : mem,
			.iotlb = side == 0 ? NULL : iotlb,
			.base = packed ? VHD_VQ_PACKED_BASE_INIT : 0,
			.name = side == 0 ? "driver" : "device",
		};
		if ((rc = vhd_vq_create(&vc, side == 0 ? &q.drv : &q.dev)) < 0)
			die("vhd_vq_create", rc);
		vhd_vq_disable_notify(side == 0 ? q.drv : q.dev);
	}
	struct vhd_dlog *log = NULL;
	if (dlog) {
		/* Bits for every page up to the block's end, as QEMU sizes its log for all of guest memory. */
		uint64_t lsize = ((GPA_BASE + len) / VHD_DLOG_PAGE + 7) / 8;
		int fd = memfd_create("dlog", MFD_CLOEXEC);
		const char *why;
		if (fd < 0 || ftruncate(fd, (off_t)lsize) < 0)
			die("memfd", errno);
		if ((rc = vhd_dlog_map(fd, lsize, 0, &log, &why)) < 0 || (rc = vhd_vq_set_log(q.dev, log, true)) < 0)
			die("dirty log", rc);
	}
	void *infl_region = NULL;
	if (infl) {
		size_t isz = vhd_vq_inflight_size(packed, qsize);
		const char *why = "";
		infl_region = aligned_alloc(64, isz);
		if (!infl_region)
			die("inflight region", ENOMEM);
		memset(infl_region, 0, isz);
		if ((rc = vhd_vq_set_inflight(q.dev, infl_region, isz, &why)) < 0) {
			fprintf(stderr, "netcost: inflight: %s\n", why);
			die("vhd_vq_set_inflight", rc);
		}
	}
	struct vhd_pktpool *gpool, *hpool;
	if ((rc = vhd_pktpool_create_in(block + pool_off, len - pool_off, GPA_BASE + pool_off, POOL_COUNT, BUF_SIZE,
					&gpool)) < 0)
		die("vhd_pktpool_create_in", rc);
	if ((rc = vhd_pktpool_create(POOL_COUNT, BUF_SIZE, &hpool)) < 0)
		die("vhd_pktpool_create", rc);

	struct vhd_net_stats dst = {0}, hst = {0};
	struct vhd_pkt *pk[BURST], *got[BURST];
	unsigned long long done = 0;
	double t0 = now();
	if (rx && vhd_net_drv_refill(q.drv, &cfg, gpool, &dst) < 0)
		die("refill", EIO);
	while (done < count) {
		if (rx) {
			unsigned n = vhd_pkt_alloc_bulk(hpool, pk, BURST);
			for (unsigned i = 0; i < n; i++)
				pk[i]->len = size;
			int r = vhd_net_dev_enqueue(q.dev, &cfg, pk, n, &hst);
			vhd_pkt_free_bulk(pk, n); /* enqueue copies */
			if (r < 0)
				die("vhd_net_dev_enqueue", EIO);
			int g = vhd_net_drv_recv(q.drv, &cfg, got, BURST, &dst);
			if (g < 0)
				die("vhd_net_drv_recv", EIO);
			vhd_pkt_free_bulk(got, (unsigned)g);
			if (vhd_net_drv_refill(q.drv, &cfg, gpool, &dst) < 0)
				die("vhd_net_drv_refill", EIO);
			done += (unsigned)g;
		} else {
			unsigned n = vhd_pkt_alloc_bulk(gpool, pk, BURST);
			for (unsigned i = 0; i < n; i++)
				pk[i]->len = size;
			int s = vhd_net_drv_xmit(q.drv, &cfg, pk, n, &dst);
			if (s < 0)
				die("vhd_net_drv_xmit", EIO);
			vhd_pkt_free_bulk(pk + s, n - (unsigned)s);
			int g = vhd_net_dev_dequeue(q.dev, &cfg, hpool, got, BURST, &hst);
			if (g < 0)
				die("vhd_net_dev_dequeue", EIO);
			vhd_pkt_free_bulk(got, (unsigned)g);
			done += (unsigned)g;
		}
	}
	double dt = now() - t0;
	printf("netcost dir=%s size=%u %s%s%s%s qsize=%u: %llu packets, %.1f ns/packet, %.2f Mpps\n", rx ? "rx" : "tx",
	       size, packed ? "packed" : "split", mrg ? " mrg" : "", in_order ? " in_order" : "", pages == VHD_IOTLB_RW ? " iommu-pages-rw" : pages ? " iommu-pages" : iommu ? " iommu" : "", qsize, done,
	       dt * 1e9 / (double)done, (double)done / dt / 1e6);
	vhd_pktpool_destroy(hpool);
	vhd_net_drv_release(q.drv);
	vhd_pktpool_destroy(gpool);
	vhd_vq_destroy(q.drv);
	vhd_vq_destroy(q.dev);
	vhd_iotlb_destroy(iotlb);
	vhd_mem_destroy(mem);
	vhd_dlog_destroy(log); /* after the queue that used it */
	free(infl_region);
	munmap(block, len);
	if (alias)
		munmap(alias, len);
	return 0;
}
