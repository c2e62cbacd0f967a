/* SPDX-License-Identifier: MIT */
/*
 * af_xdp ports: one queue of an existing interface through an AF_XDP socket (libxdp's xsk API), with libxdp's
 * default XDP program (xsk_def_xdp_prog.o) on the interface redirecting every frame of that queue into the
 * socket's receive ring; destroying the port deletes the socket and detaches the program.
 *
 * Mode: native (the driver runs XDP, XDP_FLAGS_DRV_MODE) is tried first; a driver without XDP support falls
 * back to generic mode (the stack runs the program on skbs, XDP_FLAGS_SKB_MODE), with one log line saying so.
 * mode=native|generic forces one. Zero-copy is used when the driver offers it (veth and tun do not); otherwise
 * the kernel copies, and zerocopy=on makes that an error.
 *
 * UMEM: 2 x frames= frames of AXP_FRAME bytes. The first half belongs to the receive side (the fill ring, the
 * kernel, the receive ring: each frame is copied into a packet of the caller's pool and handed straight back
 * to the fill ring in the same burst); the second half to the transmit side (a free stack, the transmit ring,
 * the completion ring). So the receiving thread and whoever holds transmit queue 0 never share a ring or a
 * frame, and need no lock between them.
 *
 * No offloads: AF_XDP carries no checksum or GSO metadata either way. Frames arrive as the XDP program saw
 * them, and neither mode completes a partial checksum first: a veth peer whose own stack sends (checksum offload
 * on by default) hands over frames with unfinished TCP/UDP checksums, which are forwarded as they are, so the
 * peer needs `ethtool -K PEER tx off` (docs/switch.md). Transmit takes whole frames of at most one MTU, the
 * switch completing checksums and segmenting for it; they leave as skbs (copy mode), so a veth peer receives
 * them with no XDP program or GRO of its own (those are for frames redirected into a veth as xdp_frames).
 *
 * libxdp 1.3 leaks fds per port, both when xsk_socket__create loads the program itself (a program and a map
 * fd per create/delete) and through xdp_program__attach/detach (a program fd), and attaches through netlink,
 * which outlives a killed process; so the program is loaded here with libbpf, from libxdp's object file, and
 * attached as a BPF link (kernel 5.9+), which goes when its fd does.
 */
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#include "util/json.h"
#include "switch/port.h"
#include "vhostd/log.h"

#define AXP_FRAME 4096u /* one page: aligned-mode UMEM frames must not cross one */
#define AXP_DEFAULT_FRAMES 1024u
#define AXP_MIN_FRAMES 64u
#define AXP_MAX_FRAMES 16384u
#define AXP_ETH_HLEN 14u
#define AXP_VLAN_HLEN 4u

enum axp_mode { AXP_AUTO, AXP_NATIVE, AXP_GENERIC };

struct axp_port {
	char ifname[IFNAMSIZ];
	int ifindex;
	unsigned queue;
	unsigned frames; /* per direction, a power of two */
	int ioctl_fd;    /* AF_INET datagram socket for interface ioctls (AF_XDP sockets take none) */
	int xsk_fd;
	bool native, zerocopy;
	uint8_t *area;
	size_t area_len;
	struct xsk_umem *umem;
	struct xsk_socket *xsk;
	struct xdp_program *prog; /* libxdp's default program, loaded by us */
	int prog_fd;
	int link_fd; /* the program's XDP link to the interface: it detaches when closed, by us or at our death */

	/* Receive side, used by the one thread that owns rx queue 0: frames [0, frames). */
	_Alignas(64) struct xsk_ring_cons rx;
	struct xsk_ring_prod fill;
	/* Transmit side, used by whoever holds tx queue 0 (serialised by the switch): frames [frames, 2 frames). */
	_Alignas(64) struct xsk_ring_prod tx;
	struct xsk_ring_cons comp;
	uint64_t *tx_free; /* addresses of transmit frames we own */
	unsigned tx_nfree;

	_Alignas(64) _Atomic uint32_t mtu; /* the interface's, refreshed by link_up */
	_Atomic uint64_t rx_too_big;       /* larger than the pool buffer */
	_Atomic uint64_t rx_bad_desc;      /* a receive descriptor outside the receive half of the UMEM */
	_Atomic uint64_t tx_ring_full;     /* no free transmit frame: the burst's rest went back to the switch */
	_Atomic uint64_t tx_errors;        /* over the MTU or a frame, or offloads we cannot carry */
	_Atomic uint64_t tx_bad_comp;      /* a completion naming a frame that is not a transmit frame */
};

static void count(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static uint32_t xdp_flags(bool native)
{
	return native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
}

static const char *mode_name(bool native)
{
	return native ? "native" : "generic";
}

/* libxdp and libbpf talk on stderr by default, including about the native attempt a fallback follows: their
 * messages go to our log at debug level, and create() reports what matters in its own words. */
static int lib_print(const char *lib, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t l = strlen(msg);
	while (l && msg[l - 1] == '\n')
		msg[--l] = 0;
	vhd_log(VHD_LOG_DEBUG, "%s: %s", lib, msg);
	return (int)l;
}

static int libxdp_print(enum libxdp_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	return lib_print("libxdp", fmt, ap);
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	return lib_print("libbpf", fmt, ap);
}

/* The interface's receive queues, or 0 when its driver does not say (ETHTOOL_GCHANNELS unsupported). */
static unsigned rx_queues(int fd, const char *ifname)
{
	struct ethtool_channels ch = {.cmd = ETHTOOL_GCHANNELS};
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	ifr.ifr_data = (void *)&ch;
	if (ioctl(fd, SIOCETHTOOL, &ifr) < 0)
		return 0;
	return ch.rx_count + ch.combined_count;
}

static void axp_free(struct axp_port *a)
{
	/* The socket before the UMEM (the UMEM is busy while a socket uses it), then the program. */
	if (a->xsk)
		xsk_socket__delete(a->xsk);
	if (a->link_fd >= 0)
		close(a->link_fd);
	if (a->prog)
		xdp_program__close(a->prog);
	if (a->umem)
		xsk_umem__delete(a->umem);
	if (a->area)
		munmap(a->area, a->area_len);
	if (a->ioctl_fd >= 0)
		close(a->ioctl_fd);
	free(a->tx_free);
	free(a);
}

static int parse_choice(const struct sw_kv *args, unsigned nargs, const char *key, const char *const *names,
			unsigned *out, char *err, size_t errlen)
{
	const char *v = sw_kv_get(args, nargs, key, NULL);
	*out = 0;
	if (!v)
		return 0;
	for (unsigned i = 0; names[i]; i++)
		if (!strcmp(v, names[i])) {
			*out = i;
			return 0;
		}
	snprintf(err, errlen, "%s=%s: want %s, %s or %s", key, v, names[0], names[1], names[2]);
	return -EINVAL;
}

/* libxdp's default program (an xskmap redirect of each queue that has a socket), sized for the interface's
 * queues, loaded and attached in one XDP mode; 0 or -errno (err says why). */
static int attach_program(struct axp_port *a, bool native, unsigned nq, char *err, size_t errlen)
{
	a->prog = xdp_program__find_file("xsk_def_xdp_prog.o", NULL, NULL);
	long e = libxdp_get_error(a->prog);
	if (e) {
		a->prog = NULL;
		snprintf(err, errlen, "ifname=%s: libxdp's default program xsk_def_xdp_prog.o: %s (install libxdp1, "
			 "or set LIBXDP_OBJECT_PATH)", a->ifname, strerror((int)-e));
		return (int)e;
	}
	struct bpf_map *map = bpf_object__find_map_by_name(xdp_program__bpf_obj(a->prog), "xsks_map");
	if (!map || bpf_map__set_max_entries(map, nq > a->queue ? nq : a->queue + 1) < 0) {
		snprintf(err, errlen, "ifname=%s: libxdp's default program has no usable xsks_map", a->ifname);
		return -ENOENT;
	}
	/* Loaded and attached through libbpf: libxdp 1.3's own attach leaves a program fd open per detach. As a BPF
	 * link, so that a vhostd that dies (SIGKILL, a crash) leaves nothing on the interface to stop its successor,
	 * and never over a program someone else attached (the kernel refuses with EBUSY). */
	struct bpf_object *obj = xdp_program__bpf_obj(a->prog);
	struct bpf_program *bp = bpf_object__next_program(obj, NULL);
	int rc = bp ? bpf_object__load(obj) : -ENOENT;
	if (rc == 0) {
		a->prog_fd = bpf_program__fd(bp);
		LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = xdp_flags(native));
		a->link_fd = bpf_link_create(a->prog_fd, a->ifindex, BPF_XDP, &lo);
		rc = a->link_fd < 0 ? a->link_fd : 0;
	}
	if (rc > 0)
		rc = -rc;
	if (rc < 0) {
		xdp_program__close(a->prog);
		a->prog = NULL;
		snprintf(err, errlen, "ifname=%s: %s the XDP program in %s mode: %s", a->ifname,
			 a->prog_fd > 0 ? "attaching" : "loading", mode_name(native),
			 rc == -EPERM ? "permission denied (needs CAP_NET_ADMIN and CAP_BPF)"
			 : rc == -EOPNOTSUPP ? "not supported by the driver"
			 : rc == -EEXIST || rc == -EBUSY ? "the interface has an XDP program already"
							 : strerror(-rc));
		a->prog_fd = 0;
		a->link_fd = -1;
		return rc;
	}
	a->native = native;
	return 0;
}

static int open_socket(struct axp_port *a, uint16_t bind_flags, char *err, size_t errlen)
{
	struct xsk_socket_config cfg = {
		.rx_size = a->frames,
		.tx_size = a->frames,
		.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD, /* ours is attached already */
		.xdp_flags = xdp_flags(a->native),
		.bind_flags = bind_flags,
	};
	int rc;
	/* The kernel lets go of a closed socket's hold on the queue in deferred work, so a port deleted and
	 * created again at once finds the queue busy for a moment: a bounded wait, then the error stands. */
	for (unsigned tries = 0;; tries++) {
		rc = xsk_socket__create(&a->xsk, a->ifname, a->queue, a->umem, &a->rx, &a->tx, &cfg);
		if (rc > 0)
			rc = -rc;
		if (rc != -EBUSY || tries == 50)
			break;
		usleep(2000);
	}
	if (rc < 0) {
		a->xsk = NULL;
		snprintf(err, errlen, "ifname=%s queue=%u: AF_XDP socket in %s mode: %s", a->ifname, a->queue,
			 mode_name(a->native),
			 rc == -EOPNOTSUPP && (bind_flags & XDP_ZEROCOPY) ? "zero-copy not supported by the driver"
			 : rc == -EBUSY ? "the queue has an AF_XDP socket already"
					: strerror(-rc));
		return rc;
	}
	/* The program sends the queue's frames to whichever socket its map holds for it. */
	rc = xsk_socket__update_xskmap(a->xsk, bpf_map__fd(bpf_object__find_map_by_name(
							  xdp_program__bpf_obj(a->prog), "xsks_map")));
	if (rc < 0) {
		snprintf(err, errlen, "ifname=%s queue=%u: adding the socket to the xsks_map: %s", a->ifname,
			 a->queue, strerror(-rc));
		return rc;
	}
	return 0;
}

static int axp_create(struct sw_port *p, const struct sw_kv *args, unsigned nargs, char *err, size_t errlen)
{
	static const char *const known[] = {"ifname", "queue", "frames", "mode", "zerocopy", NULL};
	static const char *const modes[] = {"auto", "native", "generic", NULL};
	static const char *const zc_names[] = {"auto", "on", "off", NULL};
	int rc = sw_kv_check(args, nargs, known, "af_xdp", err, errlen);
	if (rc < 0)
		return rc;
	char ifname[IFNAMSIZ];
	unsigned queue, frames, mode, zc;
	if ((rc = sw_kv_required(args, nargs, "ifname", "an existing interface", ifname, sizeof(ifname), err,
				 errlen)) < 0 ||
	    (rc = sw_kv_uint(args, nargs, "queue", 0, 0, 65535, &queue, err, errlen)) < 0 ||
	    (rc = sw_kv_uint(args, nargs, "frames", AXP_DEFAULT_FRAMES, AXP_MIN_FRAMES, AXP_MAX_FRAMES, &frames, err,
			     errlen)) < 0 ||
	    (rc = parse_choice(args, nargs, "mode", modes, &mode, err, errlen)) < 0 ||
	    (rc = parse_choice(args, nargs, "zerocopy", zc_names, &zc, err, errlen)) < 0)
		return rc;
	if (frames & (frames - 1)) {
		snprintf(err, errlen, "frames=%u: want a power of two (the rings' sizes)", frames);
		return -EINVAL;
	}

	struct axp_port *a = aligned_alloc(_Alignof(struct axp_port), sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	memset(a, 0, sizeof(*a));
	a->ioctl_fd = -1;
	a->link_fd = -1;
	a->queue = queue;
	a->frames = frames;
	snprintf(a->ifname, sizeof(a->ifname), "%s", ifname);
	a->tx_free = calloc(frames, sizeof(*a->tx_free));
	if (!a->tx_free) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	a->ioctl_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (a->ioctl_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "ifname=%s: socket: %s", ifname, strerror(-rc));
		goto fail;
	}
	unsigned mtu;
	if ((rc = sw_iface_ethernet(a->ioctl_fd, ifname, &a->ifindex, &mtu, err, errlen)) < 0)
		goto fail;
	/* A received frame starts XDP_PACKET_HEADROOM into its UMEM frame. */
	if (mtu + AXP_ETH_HLEN + AXP_VLAN_HLEN > AXP_FRAME - XDP_PACKET_HEADROOM) {
		rc = -EINVAL;
		snprintf(err, errlen, "ifname=%s: MTU %u is over the %u an AF_XDP frame holds", ifname, mtu,
			 AXP_FRAME - XDP_PACKET_HEADROOM - AXP_ETH_HLEN - AXP_VLAN_HLEN);
		goto fail;
	}
	atomic_store_explicit(&a->mtu, mtu, memory_order_relaxed);
	unsigned nq = rx_queues(a->ioctl_fd, ifname);
	if (nq && queue >= nq) {
		rc = -EINVAL;
		snprintf(err, errlen, "queue=%u: ifname=%s has %u receive queue%s", queue, ifname, nq, nq == 1 ? "" : "s");
		goto fail;
	}

	a->area_len = (size_t)2 * frames * AXP_FRAME;
	void *m = mmap(NULL, a->area_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (m == MAP_FAILED) {
		rc = -errno;
		snprintf(err, errlen, "ifname=%s: UMEM of %zu bytes: %s", ifname, a->area_len, strerror(-rc));
		goto fail;
	}
	a->area = m;

	static bool quiet;
	if (!quiet) {
		libxdp_set_print(libxdp_print);
		libbpf_set_print(libbpf_print);
		quiet = true;
	}
	struct xsk_umem_config ucfg = {
		.fill_size = frames,
		.comp_size = frames,
		.frame_size = AXP_FRAME,
		.frame_headroom = 0,
		.flags = 0,
	};
	rc = xsk_umem__create(&a->umem, a->area, a->area_len, &a->fill, &a->comp, &ucfg);
	if (rc > 0)
		rc = -rc;
	if (rc < 0) {
		a->umem = NULL;
		snprintf(err, errlen, "ifname=%s: AF_XDP UMEM: %s", ifname,
			 rc == -EPERM ? "permission denied (needs CAP_NET_RAW and CAP_IPC_LOCK)" : strerror(-rc));
		goto fail;
	}
	/* The receive half goes to the kernel, before the program sends it the first frame; the transmit half is
	 * ours. */
	uint32_t idx;
	if (xsk_ring_prod__reserve(&a->fill, frames, &idx) != frames) {
		rc = -EIO;
		snprintf(err, errlen, "ifname=%s: the fill ring has no room for %u frames", ifname, frames);
		goto fail;
	}
	for (unsigned i = 0; i < frames; i++)
		*xsk_ring_prod__fill_addr(&a->fill, idx + i) = (uint64_t)i * AXP_FRAME;
	xsk_ring_prod__submit(&a->fill, frames);
	for (unsigned i = 0; i < frames; i++)
		a->tx_free[i] = (uint64_t)(frames + i) * AXP_FRAME;
	a->tx_nfree = frames;
	/* Without XDP_COPY or XDP_ZEROCOPY the kernel tries zero-copy and falls back to copying. */
	uint16_t bind_flags = XDP_USE_NEED_WAKEUP | (zc == 1 ? XDP_ZEROCOPY : zc == 2 ? XDP_COPY : 0);
	rc = attach_program(a, mode != AXP_GENERIC, nq, err, errlen);
	if (rc < 0 && mode == AXP_AUTO && rc != -EPERM && rc != -ENOENT && rc != -EEXIST &&
	    rc != -EBUSY) {
		char why[256];
		snprintf(why, sizeof(why), "%s", err);
		rc = attach_program(a, false, nq, err, errlen);
		if (rc == 0)
			vhd_log(VHD_LOG_WARN, "port %s: af_xdp on %s queue %u in generic mode (native: %s)", p->name,
				ifname, queue, strstr(why, "mode: ") ? strstr(why, "mode: ") + 6 : why);
	}
	if (rc < 0 || (rc = open_socket(a, bind_flags, err, errlen)) < 0)
		goto fail;
	a->xsk_fd = xsk_socket__fd(a->xsk);
	struct xdp_options opts;
	socklen_t ol = sizeof(opts);
	a->zerocopy = getsockopt(a->xsk_fd, SOL_XDP, XDP_OPTIONS, &opts, &ol) == 0 &&
		      (opts.flags & XDP_OPTIONS_ZEROCOPY);

	if (p->mtu == 0)
		p->mtu = mtu;
	p->n_rxq = p->n_txq = 1;
	memset(&p->rx_off, 0, sizeof(p->rx_off));
	memset(&p->tx_off, 0, sizeof(p->tx_off));
	p->priv = a;
	return 0;
fail:
	axp_free(a);
	return rc;
}

static void axp_destroy(struct sw_port *p)
{
	axp_free(p->priv);
	p->priv = NULL;
}

static bool axp_link_up(struct sw_port *p)
{
	struct axp_port *a = p->priv;
	return sw_iface_up(a->ioctl_fd, a->ifindex, &a->mtu);
}

static bool kernel_stats(struct axp_port *a, struct xdp_statistics *st)
{
	socklen_t sl = sizeof(*st);
	memset(st, 0, sizeof(*st));
	return getsockopt(a->xsk_fd, SOL_XDP, XDP_STATISTICS, st, &sl) == 0;
}

static void axp_describe(struct sw_port *p, struct sw_json *w)
{
	struct axp_port *a = p->priv;
	struct ifreq ifr;
	bool have_name = sw_iface_ioctl(a->ioctl_fd, a->ifindex, SIOCGIFNAME, &ifr) == 0;
	struct xdp_statistics st;
	kernel_stats(a, &st);
	sw_json_str(w, "ifname", have_name ? ifr.ifr_name : a->ifname);
	sw_json_u64(w, "queue", a->queue);
	sw_json_str(w, "mode", mode_name(a->native));
	sw_json_bool(w, "zerocopy", a->zerocopy);
	sw_json_u64(w, "frames", a->frames);
	sw_json_u64(w, "frame_size", AXP_FRAME);
	sw_json_u64(w, "kernel_rx_dropped", st.rx_dropped);
	sw_json_u64(w, "kernel_rx_ring_full", st.rx_ring_full);
	sw_json_u64(w, "kernel_fill_ring_empty", st.rx_fill_ring_empty_descs);
	sw_json_u64(w, "kernel_rx_invalid", st.rx_invalid_descs);
	sw_json_u64(w, "kernel_tx_invalid", st.tx_invalid_descs);
	sw_json_u64(w, "rx_too_big", atomic_load_explicit(&a->rx_too_big, memory_order_relaxed));
	sw_json_u64(w, "rx_bad_desc", atomic_load_explicit(&a->rx_bad_desc, memory_order_relaxed));
	sw_json_u64(w, "tx_ring_full", atomic_load_explicit(&a->tx_ring_full, memory_order_relaxed));
	sw_json_u64(w, "tx_errors", atomic_load_explicit(&a->tx_errors, memory_order_relaxed));
	sw_json_u64(w, "tx_bad_comp", atomic_load_explicit(&a->tx_bad_comp, memory_order_relaxed));
}

static void axp_counters(struct sw_port *p, void (*fn)(void *arg, const char *name, const char *help, int queue,
						       uint64_t v),
			 void *arg)
{
	struct axp_port *a = p->priv;
	struct xdp_statistics st;
	if (kernel_stats(a, &st)) {
		fn(arg, "af_xdp_rx_ring_full", "frames the kernel dropped because the receive ring was full", -1,
		   st.rx_ring_full);
		fn(arg, "af_xdp_fill_ring_empty", "frames the kernel dropped for want of a fill ring frame", -1,
		   st.rx_fill_ring_empty_descs);
		fn(arg, "af_xdp_rx_dropped", "frames the kernel dropped for other reasons", -1, st.rx_dropped);
	}
	fn(arg, "af_xdp_tx_ring_full", "frames refused because every transmit frame was in flight", -1,
	   atomic_load_explicit(&a->tx_ring_full, memory_order_relaxed));
}

/* ------------------------------------------------------------------ data path */

static int axp_rx_arm(struct sw_port *p, unsigned q, struct pollfd *pfd)
{
	(void)q;
	return sw_fd_arm(((struct axp_port *)p->priv)->xsk_fd, pfd);
}

static unsigned axp_rx_burst(struct sw_port *p, unsigned q, struct vhd_pktpool *pool, struct vhd_pkt **pkts,
			     unsigned n)
{
	struct axp_port *a = p->priv;
	uint32_t idx, fidx;
	(void)q;
	/* xsk_ring_cons__peek's acquire load of the producer pairs with the kernel's release when it publishes
	 * descriptors: the frames' bytes are visible once their descriptors are. */
	unsigned seen = xsk_ring_cons__peek(&a->rx, n, &idx);
	if (seen == 0) {
		/* The driver ran out of fill frames at some point and waits to be told there are more. */
		if (xsk_ring_prod__needs_wakeup(&a->fill))
			(void)recvfrom(a->xsk_fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
		return 0;
	}
	unsigned have = vhd_pkt_alloc_bulk(pool, pkts, seen);
	if (have < seen) {
		/* Pool dry: the rest stay in the ring for the next call. */
		xsk_ring_cons__cancel(&a->rx, seen - have);
		seen = have;
		if (seen == 0)
			return 0;
	}
	/* Every frame we consume goes straight back to the fill ring, which holds all receive frames, so these
	 * slots are free. */
	uint32_t back = xsk_ring_prod__reserve(&a->fill, seen, &fidx);
	unsigned got = 0, refill = 0;
	const uint64_t rx_end = (uint64_t)a->frames * AXP_FRAME;
	for (unsigned i = 0; i < seen; i++) {
		const struct xdp_desc *d = xsk_ring_cons__rx_desc(&a->rx, idx + i);
		uint64_t addr = xsk_umem__extract_addr(d->addr);
		uint32_t len = d->len;
		uint64_t off = addr % AXP_FRAME;
		/* The kernel's word, checked all the same: within the receive half, not across a frame. */
		if (addr >= rx_end || len > AXP_FRAME - off) {
			count(&a->rx_bad_desc); /* the frame is lost to the fill ring: there is no telling which */
			continue;
		}
		if (back)
			*xsk_ring_prod__fill_addr(&a->fill, fidx + refill++) = addr - off;
		struct vhd_pkt *k = pkts[got];
		if (len < AXP_ETH_HLEN || len > vhd_pkt_tailroom(k)) {
			count(&a->rx_too_big);
			continue;
		}
		memcpy(vhd_pkt_data(k), a->area + addr, len);
		k->len = len;
		got++;
	}
	/* Our reads of the frames are done before the kernel reuses them (release of the consumer index), and
	 * the fill entries are written before the kernel sees them (release of the producer index). */
	xsk_ring_cons__release(&a->rx, seen);
	if (back) {
		a->fill.cached_prod -= back - refill; /* unwritten slots of dropped descriptors */
		xsk_ring_prod__submit(&a->fill, refill);
	}
	if (got < have)
		vhd_pkt_free_bulk(pkts + got, have - got);
	return got;
}

/* False if k cannot go out as it is (counted; freed by the caller's accounting as taken). */
static bool tx_ok(struct axp_port *a, const struct vhd_pkt *k)
{
	const struct vhd_net_meta *m = &k->meta;
	/* The switch completes checksums and segments for us (tx_off is empty): these would be a broken contract. */
	if ((m->flags & VHD_NET_META_F_NEEDS_CSUM) || m->gso_type != VHD_NET_META_GSO_NONE)
		return false;
	uint32_t max = atomic_load_explicit(&a->mtu, memory_order_relaxed) + AXP_ETH_HLEN + AXP_VLAN_HLEN;
	return k->len >= AXP_ETH_HLEN && k->len <= max && k->len <= AXP_FRAME;
}

static void reap_completions(struct axp_port *a)
{
	uint32_t idx;
	/* Acquire of the producer pairs with the kernel's release once it is done with the frames. */
	unsigned c = xsk_ring_cons__peek(&a->comp, a->frames, &idx);
	const uint64_t lo = (uint64_t)a->frames * AXP_FRAME, hi = 2 * lo;
	for (unsigned i = 0; i < c; i++) {
		uint64_t addr = xsk_umem__extract_addr(*xsk_ring_cons__comp_addr(&a->comp, idx + i));
		if (addr < lo || addr >= hi || addr % AXP_FRAME || a->tx_nfree >= a->frames) {
			count(&a->tx_bad_comp);
			continue;
		}
		a->tx_free[a->tx_nfree++] = addr;
	}
	if (c)
		xsk_ring_cons__release(&a->comp, c);
}

static unsigned axp_tx_burst(struct sw_port *p, unsigned q, struct vhd_pkt **pkts, unsigned n)
{
	struct axp_port *a = p->priv;
	unsigned i, added = 0;
	uint32_t idx = 0;
	(void)q;
	if (a->tx_nfree < n)
		reap_completions(a);
	for (i = 0; i < n; i++) {
		if (!tx_ok(a, pkts[i])) {
			count(&a->tx_errors);
			continue;
		}
		/* Every transmit frame is either free here, in the transmit ring or in the completion ring, and the
		 * transmit ring holds them all: a free frame always has a slot. */
		if (a->tx_nfree == 0 || xsk_ring_prod__reserve(&a->tx, 1, &idx) != 1) {
			atomic_fetch_add_explicit(&a->tx_ring_full, n - i, memory_order_relaxed);
			break;
		}
		uint64_t addr = a->tx_free[--a->tx_nfree];
		memcpy(a->area + addr, vhd_pkt_data(pkts[i]), pkts[i]->len);
		struct xdp_desc *d = xsk_ring_prod__tx_desc(&a->tx, idx);
		d->addr = addr;
		d->len = pkts[i]->len;
		d->options = 0;
		added++;
	}
	/* Frames and descriptors are written before the kernel sees the producer index (its release). */
	if (added)
		xsk_ring_prod__submit(&a->tx, added);
	/* One kick per burst, when the kernel asks for it (always in copy mode), also for frames an earlier kick
	 * left in the ring (it sends a bounded batch per call). */
	if (xsk_ring_prod__needs_wakeup(&a->tx) &&
	    (added || __atomic_load_n(a->tx.consumer, __ATOMIC_ACQUIRE) != *a->tx.producer))
		(void)sendto(a->xsk_fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
	vhd_pkt_free_bulk(pkts, i);
	return i;
}

const struct sw_port_ops sw_af_xdp_ops = {
	.type = "af_xdp",
	.create = axp_create,
	.destroy = axp_destroy,
	.pollfds = sw_no_pollfds,
	.timeout_ms = sw_no_timeout_ms,
	.dispatch = sw_no_dispatch,
	.link_up = axp_link_up,
	.describe = axp_describe,
	.counters = axp_counters,
	.rx_burst = axp_rx_burst,
	.rx_arm = axp_rx_arm,
	.rx_disarm = sw_fd_disarm,
	.tx_burst = axp_tx_burst,
};
