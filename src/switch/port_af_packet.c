/* SPDX-License-Identifier: MIT */
/*
 * af_packet ports: an existing interface (a NIC, one end of a veth pair) through a PACKET_MMAP socket, one
 * TPACKET_V3 receive ring and one transmit ring in a single mapping, promiscuous, with our own transmissions
 * never looped back to us.
 *
 * Offloads (offloads=on, the default) use PACKET_VNET_HDR. They are not an optimisation here but a matter of
 * correctness: a veth peer's own stack hands its frames over with partial checksums (and TCP unsegmented), and
 * without the header there is no way to know where the checksum goes, so such frames could only be passed on
 * corrupt. With the header they carry NEEDS_CSUM/GSO metadata that the switch honours; with offloads=off they
 * are dropped and counted (rx_csum_partial). Transmit takes partial checksums but no GSO: the transmit ring's
 * slots are sized for one MTU frame.
 *
 * Receive latency: the kernel hands a V3 block over when it is full or when its retire timer (1 ms here)
 * fires, so under light load a frame may wait up to that long.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/json.h"
#include "spec/virtio_net.h"
#include "switch/port.h"
#include "switch/switch.h"

#define AFP_DEFAULT_FRAMES 1024u
#define AFP_MIN_FRAMES 64u
#define AFP_MAX_FRAMES 65536u
#define AFP_SLOT 2048u                  /* receive ring bytes per frame of the frames= budget */
#define AFP_RX_BLOCK (128u * 1024)      /* holds a 64 KiB GSO frame with its headers */
#define AFP_RETIRE_MS 1u
#define AFP_HDRLEN TPACKET_ALIGN(sizeof(struct tpacket3_hdr)) /* sockaddr_ll (rx), frame bytes (tx) follow */
#define AFP_VNET_LEN ((unsigned)sizeof(struct virtio_net_hdr))
#define AFP_ETH_HLEN 14u
#define AFP_VLAN_HLEN 4u

struct afp_port {
	int fd;
	int ifindex;
	char ifname[IFNAMSIZ];
	bool vnet; /* PACKET_VNET_HDR: offload metadata both ways */
	bool qdisc_bypass;
	uint8_t *map;
	size_t map_len;
	unsigned frames; /* the frames= argument */

	/* Receive ring, used by the one thread that owns rx queue 0. */
	_Alignas(64) struct {
		uint8_t *base;
		unsigned block_size, block_nr;
		unsigned block;     /* current block */
		uint8_t *next;      /* next frame in it, NULL when no block is held */
		unsigned left;      /* frames left in it */
	} rx;
	/* Transmit ring, used by whoever holds tx queue 0 (serialised by the switch). */
	_Alignas(64) struct {
		uint8_t *base;
		unsigned frame_size, frame_nr;
		unsigned head; /* next slot to fill */
	} tx;
	_Alignas(64) _Atomic uint32_t mtu; /* the interface's, refreshed by link_up */
	_Atomic uint64_t rx_too_big;       /* larger than the pool buffer, or cut short by the ring */
	_Atomic uint64_t rx_csum_partial;  /* partial checksum without the vnet header to say where it goes */
	_Atomic uint64_t tx_errors;        /* larger than a ring slot or the MTU, or offloads we cannot carry */
	/* PACKET_STATISTICS resets on read; describe (control thread) accumulates here. */
	uint64_t k_packets, k_drops, k_freezes;
	struct sw_gate gate; /* closed from handover_export until handover_resume */
};

/*
 * The handover blob (vhostctl upgrade), ours alone (both ends are vhostd, so not in src/spec), with the socket
 * sent alongside. The new process maps the socket's rings again where the old one left them: they cannot be
 * set up anew while the old process still maps them (the kernel says EBUSY), and a new socket would lose the
 * frames in the ring and miss those arriving meanwhile. So the blob carries the ring geometry (mmap() checks the
 * total against the socket's rings) and where each cursor stands. AFP_BLOB_VERSION changes whenever the layout
 * or a field's meaning does.
 */
#define AFP_BLOB_MAGIC 0x3150464144484856ull /* "VHHDAFP1" */
#define AFP_BLOB_VERSION 1u
struct afp_blob {
	uint64_t magic;
	uint32_t version;
	uint32_t frames;
	int32_t ifindex;
	uint8_t vnet, reserved[3];
	char ifname[IFNAMSIZ];
	uint32_t rx_block_size, rx_block_nr, rx_block;
	uint32_t rx_next; /* offset of the next frame in the held block, 0: none held */
	uint32_t rx_left;
	uint32_t tx_frame_size, tx_frame_nr, tx_head;
	uint64_t rx_too_big, rx_csum_partial, tx_errors, k_packets, k_drops, k_freezes;
};
_Static_assert(sizeof(struct afp_blob) == 120 && IFNAMSIZ == 16 && offsetof(struct afp_blob, version) == 8,
	       "af_packet handover blob layout (magic and version where sw_import_blob() reads them)");
_Static_assert(sizeof(struct afp_blob) <= SW_HANDOVER_MAX, "an af_packet handover fits the switch's buffer");

static void count(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ------------------------------------------------------------------ arguments */

/* ------------------------------------------------------------------ control */

static unsigned pow2_at_least(unsigned v)
{
	unsigned p = 1;
	while (p < v)
		p <<= 1;
	return p;
}

static int setopt(struct afp_port *a, int opt, int val, const char *what, char *err, size_t errlen)
{
	if (setsockopt(a->fd, SOL_PACKET, opt, &val, sizeof(val)) < 0) {
		int rc = -errno;
		snprintf(err, errlen, "ifname=%s: %s: %s", a->ifname, what, strerror(-rc));
		return rc;
	}
	return 0;
}

static int setup_rings(struct afp_port *a, unsigned mtu, char *err, size_t errlen)
{
	unsigned page = (unsigned)sysconf(_SC_PAGESIZE);
	struct tpacket_req3 rx, tx;
	memset(&rx, 0, sizeof(rx));
	rx.tp_block_size = AFP_RX_BLOCK;
	rx.tp_block_nr = (unsigned)(((uint64_t)a->frames * AFP_SLOT + AFP_RX_BLOCK - 1) / AFP_RX_BLOCK);
	if (rx.tp_block_nr < 2)
		rx.tp_block_nr = 2; /* the kernel fills one while we read the other */
	rx.tp_frame_size = AFP_SLOT; /* V3 frames are variable; the kernel only checks the arithmetic */
	rx.tp_frame_nr = rx.tp_block_size / rx.tp_frame_size * rx.tp_block_nr;
	rx.tp_retire_blk_tov = AFP_RETIRE_MS;

	/* Transmit slots are fixed-size: one MTU frame (plus a VLAN tag and the vnet header), at least 2 KiB. */
	memset(&tx, 0, sizeof(tx));
	tx.tp_frame_size = pow2_at_least(AFP_HDRLEN + AFP_VNET_LEN + AFP_ETH_HLEN + AFP_VLAN_HLEN + mtu);
	if (tx.tp_frame_size < 2048)
		tx.tp_frame_size = 2048;
	tx.tp_block_size = tx.tp_frame_size > page ? tx.tp_frame_size : page;
	unsigned per_block = tx.tp_block_size / tx.tp_frame_size;
	tx.tp_block_nr = (a->frames + per_block - 1) / per_block;
	tx.tp_frame_nr = tx.tp_block_nr * per_block;

	if (setsockopt(a->fd, SOL_PACKET, PACKET_RX_RING, &rx, sizeof(rx)) < 0 ||
	    setsockopt(a->fd, SOL_PACKET, PACKET_TX_RING, &tx, sizeof(tx)) < 0) {
		int rc = -errno;
		snprintf(err, errlen, "ifname=%s: setting up the rings (frames=%u): %s", a->ifname, a->frames,
			 strerror(-rc));
		return rc;
	}
	size_t rx_len = (size_t)rx.tp_block_size * rx.tp_block_nr;
	size_t tx_len = (size_t)tx.tp_block_size * tx.tp_block_nr;
	void *m = mmap(NULL, rx_len + tx_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, a->fd, 0);
	if (m == MAP_FAILED) {
		int rc = -errno;
		snprintf(err, errlen, "ifname=%s: mapping the rings (frames=%u): %s", a->ifname, a->frames,
			 strerror(-rc));
		return rc;
	}
	a->map = m;
	a->map_len = rx_len + tx_len;
	a->rx.base = a->map;
	a->rx.block_size = rx.tp_block_size;
	a->rx.block_nr = rx.tp_block_nr;
	a->tx.base = a->map + rx_len;
	a->tx.frame_size = tx.tp_frame_size;
	a->tx.frame_nr = tx.tp_frame_nr;
	return 0;
}

static void afp_free(struct afp_port *a)
{
	if (a->map)
		munmap(a->map, a->map_len);
	if (a->fd >= 0)
		close(a->fd);
	free(a);
}

/*
 * vhostctl upgrade, new side: the old process's socket (imp->fds[0], ours from here), its rings mapped again and
 * the cursors where the blob says. Checked: an AF_PACKET TPACKET_V3 socket bound to the blob's interface, with
 * the vnet header as offloads= says, cursors inside the geometry, and the geometry the socket's (mmap).
 */
static int afp_adopt(struct afp_port *a, struct sw_port_import *imp, unsigned *mtu, char *err, size_t errlen)
{
	imp->taken = true;
	for (unsigned i = 1; i < imp->nfds; i++)
		close(imp->fds[i]);
	a->fd = imp->nfds ? imp->fds[0] : -1;
	if (imp->nfds != 1) {
		snprintf(err, errlen, "af_packet: taking over: %u fd(s) where 1 was due", imp->nfds);
		return -EPROTO;
	}
	struct afp_blob b;
	int rc = sw_import_blob(imp, "af_packet", AFP_BLOB_MAGIC, AFP_BLOB_VERSION, &b, sizeof(b), err, errlen);
	if (rc < 0)
		return rc;
	int dom = 0, ver = -1, vnet = -1;
	socklen_t l1 = sizeof(dom), l2 = sizeof(ver), l3 = sizeof(vnet);
	struct sockaddr_ll sll;
	socklen_t sl = sizeof(sll);
	memset(&sll, 0, sizeof(sll));
	uint64_t rx_len = (uint64_t)b.rx_block_size * b.rx_block_nr, tx_len = (uint64_t)b.tx_frame_size * b.tx_frame_nr;
	if (getsockopt(a->fd, SOL_SOCKET, SO_DOMAIN, &dom, &l1) < 0 || dom != AF_PACKET ||
	    getsockopt(a->fd, SOL_PACKET, PACKET_VERSION, &ver, &l2) < 0 || ver != TPACKET_V3 ||
	    getsockopt(a->fd, SOL_PACKET, PACKET_VNET_HDR, &vnet, &l3) < 0 || !vnet != !a->vnet ||
	    getsockname(a->fd, (struct sockaddr *)&sll, &sl) < 0 || sll.sll_ifindex != b.ifindex ||
	    !memchr(b.ifname, 0, sizeof(b.ifname)) || b.frames != a->frames) {
		snprintf(err, errlen, "af_packet: taking over: not a TPACKET_V3 socket bound to interface %d with "
			 "offloads=%s and frames=%u", b.ifindex, a->vnet ? "on" : "off", a->frames);
		return -EPROTO;
	}
	if (b.rx_block_nr < 2 || b.rx_block_size < AFP_HDRLEN || b.rx_block >= b.rx_block_nr ||
	    b.rx_next >= b.rx_block_size || (b.rx_next == 0) != (b.rx_left == 0) || b.tx_frame_size < 2048 ||
	    b.tx_frame_nr == 0 || b.tx_head >= b.tx_frame_nr || rx_len + tx_len > SIZE_MAX / 2) {
		snprintf(err, errlen, "af_packet: taking over: ring geometry or cursors out of bounds");
		return -EPROTO;
	}
	void *m = mmap(NULL, (size_t)(rx_len + tx_len), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, a->fd, 0);
	if (m == MAP_FAILED) {
		rc = -errno;
		snprintf(err, errlen, "af_packet: taking over: mapping the rings: %s", strerror(-rc));
		return rc;
	}
	a->map = m;
	a->map_len = (size_t)(rx_len + tx_len);
	a->ifindex = b.ifindex;
	memcpy(a->ifname, b.ifname, sizeof(a->ifname));
	a->rx.base = a->map;
	a->rx.block_size = b.rx_block_size;
	a->rx.block_nr = b.rx_block_nr;
	a->rx.block = b.rx_block;
	a->rx.next = b.rx_next ? a->rx.base + (size_t)b.rx_block * b.rx_block_size + b.rx_next : NULL;
	a->rx.left = b.rx_left;
	a->tx.base = a->map + rx_len;
	a->tx.frame_size = b.tx_frame_size;
	a->tx.frame_nr = b.tx_frame_nr;
	a->tx.head = b.tx_head;
	atomic_store_explicit(&a->rx_too_big, b.rx_too_big, memory_order_relaxed);
	atomic_store_explicit(&a->rx_csum_partial, b.rx_csum_partial, memory_order_relaxed);
	atomic_store_explicit(&a->tx_errors, b.tx_errors, memory_order_relaxed);
	a->k_packets = b.k_packets;
	a->k_drops = b.k_drops;
	a->k_freezes = b.k_freezes;
	struct ifreq ifr;
	rc = sw_iface_ioctl(a->fd, a->ifindex, SIOCGIFMTU, &ifr);
	if (rc < 0) {
		snprintf(err, errlen, "af_packet: taking over: interface %d: %s", a->ifindex, strerror(-rc));
		return rc;
	}
	*mtu = (unsigned)ifr.ifr_mtu;
	atomic_store_explicit(&a->mtu, *mtu, memory_order_relaxed);
	return 0;
}

static int afp_create(struct sw_port *p, const struct sw_kv *args, unsigned nargs, char *err, size_t errlen)
{
	static const char *const known[] = {"ifname", "frames", "offloads", "qdisc_bypass", NULL};
	int rc = sw_kv_check(args, nargs, known, "af_packet", err, errlen);
	if (rc < 0)
		return rc;
	char ifname[IFNAMSIZ];
	if ((rc = sw_kv_required(args, nargs, "ifname", "an existing interface", ifname, sizeof(ifname), err,
				 errlen)) < 0)
		return rc;
	unsigned frames;
	bool vnet, bypass;
	if ((rc = sw_kv_uint(args, nargs, "frames", AFP_DEFAULT_FRAMES, AFP_MIN_FRAMES, AFP_MAX_FRAMES, &frames, err,
			     errlen)) < 0 ||
	    (rc = sw_kv_on_off(args, nargs, "offloads", true, &vnet, err, errlen)) < 0 ||
	    (rc = sw_kv_on_off(args, nargs, "qdisc_bypass", true, &bypass, err, errlen)) < 0)
		return rc;

	struct afp_port *a = aligned_alloc(_Alignof(struct afp_port), sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	memset(a, 0, sizeof(*a));
	a->frames = frames;
	a->vnet = vnet;
	a->qdisc_bypass = bypass;
	snprintf(a->ifname, sizeof(a->ifname), "%s", ifname);
	unsigned mtu;
	if (p->import) {
		a->fd = -1;
		if ((rc = afp_adopt(a, p->import, &mtu, err, errlen)) < 0)
			goto fail;
		goto adopted; /* the socket's options, binding and membership go with it */
	}
	/* Protocol 0 until bound: nothing is queued for us before the rings exist. */
	a->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (a->fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "ifname=%s: AF_PACKET socket: %s", ifname, strerror(-rc));
		goto fail;
	}
	if ((rc = sw_iface_ethernet(a->fd, ifname, &a->ifindex, &mtu, err, errlen)) < 0)
		goto fail;
	atomic_store_explicit(&a->mtu, mtu, memory_order_relaxed);

	/* The vnet header must be chosen before the rings; the version too. PACKET_LOSS makes the kernel skip a
	 * transmit frame it refuses instead of stopping the whole ring at it. */
	if ((rc = setopt(a, PACKET_VERSION, TPACKET_V3, "PACKET_VERSION", err, errlen)) < 0 ||
	    (vnet && (rc = setopt(a, PACKET_VNET_HDR, 1, "PACKET_VNET_HDR", err, errlen)) < 0) ||
	    (rc = setopt(a, PACKET_LOSS, 1, "PACKET_LOSS", err, errlen)) < 0 ||
	    (rc = setopt(a, PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING", err, errlen)) < 0 ||
	    (bypass && (rc = setopt(a, PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS", err, errlen)) < 0))
		goto fail;
	if ((rc = setup_rings(a, mtu, err, errlen)) < 0)
		goto fail;

	struct sockaddr_ll sll;
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = a->ifindex;
	if (bind(a->fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		rc = -errno;
		snprintf(err, errlen, "ifname=%s: bind: %s", ifname, strerror(-rc));
		goto fail;
	}
	/* A switch port sees every frame on the wire; the membership goes with the socket. */
	struct packet_mreq mr;
	memset(&mr, 0, sizeof(mr));
	mr.mr_ifindex = a->ifindex;
	mr.mr_type = PACKET_MR_PROMISC;
	if (setsockopt(a->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)) < 0) {
		rc = -errno;
		snprintf(err, errlen, "ifname=%s: promiscuous mode: %s", ifname, strerror(-rc));
		goto fail;
	}
	/* Published with p by the switch; an adopted socket is held until handover_resume. */
	atomic_store_explicit(&a->gate.open, 1, memory_order_relaxed);

adopted:
	if (p->mtu == 0)
		p->mtu = mtu;
	p->n_rxq = p->n_txq = 1;
	memset(&p->rx_off, 0, sizeof(p->rx_off));
	memset(&p->tx_off, 0, sizeof(p->tx_off));
	if (vnet) {
		/* What virtio_net_hdr_from_skb() can describe; anything else the kernel drops itself. */
		p->rx_off.csum = true;
		p->rx_off.ecn = true;
		p->rx_off.gso = 1u << VHD_NET_META_GSO_TCPV4 | 1u << VHD_NET_META_GSO_TCPV6 |
				1u << VHD_NET_META_GSO_UDP_L4;
		p->tx_off.csum = true;
	}
	p->priv = a;
	return 0;
fail:
	afp_free(a);
	return rc;
}

static void afp_destroy(struct sw_port *p)
{
	afp_free(p->priv);
	p->priv = NULL;
}

static bool afp_link_up(struct sw_port *p)
{
	struct afp_port *a = p->priv;
	bool up = sw_iface_up(a->fd, a->ifindex, &a->mtu);
	if (up) {
		/* The interface going down left ENETDOWN pending on the socket, which would fail the next transmit
		 * kick although the link is back; it is stale now. */
		int e;
		socklen_t el = sizeof(e);
		(void)getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &e, &el);
	}
	return up;
}

static void afp_describe(struct sw_port *p, struct sw_json *w)
{
	struct afp_port *a = p->priv;
	struct ifreq ifr;
	bool have_name = sw_iface_ioctl(a->fd, a->ifindex, SIOCGIFNAME, &ifr) == 0;
	struct tpacket_stats_v3 st;
	socklen_t sl = sizeof(st);
	if (getsockopt(a->fd, SOL_PACKET, PACKET_STATISTICS, &st, &sl) == 0) {
		a->k_packets += st.tp_packets;
		a->k_drops += st.tp_drops;
		a->k_freezes += st.tp_freeze_q_cnt;
	}
	sw_json_str(w, "ifname", have_name ? ifr.ifr_name : a->ifname);
	sw_json_bool(w, "offloads", a->vnet);
	sw_json_bool(w, "qdisc_bypass", a->qdisc_bypass);
	sw_json_obj_begin(w, "rx_ring");
	sw_json_u64(w, "blocks", a->rx.block_nr);
	sw_json_u64(w, "block_size", a->rx.block_size);
	sw_json_obj_end(w);
	sw_json_obj_begin(w, "tx_ring");
	sw_json_u64(w, "frames", a->tx.frame_nr);
	sw_json_u64(w, "frame_size", a->tx.frame_size);
	sw_json_obj_end(w);
	sw_json_u64(w, "kernel_packets", a->k_packets);
	sw_json_u64(w, "kernel_drops", a->k_drops);
	sw_json_u64(w, "kernel_ring_full", a->k_freezes);
	sw_json_u64(w, "rx_too_big", atomic_load_explicit(&a->rx_too_big, memory_order_relaxed));
	sw_json_u64(w, "rx_csum_partial", atomic_load_explicit(&a->rx_csum_partial, memory_order_relaxed));
	sw_json_u64(w, "tx_errors", atomic_load_explicit(&a->tx_errors, memory_order_relaxed));
}

/* ------------------------------------------------------------------ data path */

static struct tpacket_block_desc *rx_block(const struct afp_port *a, unsigned i)
{
	return (struct tpacket_block_desc *)(a->rx.base + (size_t)i * a->rx.block_size);
}

static void rx_release_block(struct afp_port *a)
{
	struct tpacket_block_desc *b = rx_block(a, a->rx.block);
	/* Pairs with the kernel's read of block_status: our reads of the block are done before it reuses it. */
	__atomic_store_n(&b->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
	a->rx.block = (a->rx.block + 1) % a->rx.block_nr;
	a->rx.next = NULL;
}

/* Copy one received frame into k; false if it cannot be passed on (counted). */
static bool rx_frame(struct afp_port *a, const struct tpacket3_hdr *h, struct vhd_pkt *k)
{
	const uint8_t *data = (const uint8_t *)h + h->tp_mac;
	uint32_t len = h->tp_snaplen;
	if (len < h->tp_len || len < AFP_ETH_HLEN) {
		count(&a->rx_too_big); /* cut by the ring: the rest of the frame is gone */
		return false;
	}
	if (!a->vnet && (h->tp_status & TP_STATUS_CSUMNOTREADY)) {
		count(&a->rx_csum_partial);
		return false;
	}
	/* The kernel strips the VLAN tag before packet sockets see a frame; put it back where it was. */
	bool tagged = h->tp_status & TP_STATUS_VLAN_VALID;
	uint32_t out_len = len + (tagged ? AFP_VLAN_HLEN : 0);
	if (out_len > vhd_pkt_tailroom(k)) {
		count(&a->rx_too_big);
		return false;
	}
	uint8_t *d = vhd_pkt_data(k);
	if (tagged) {
		uint16_t tpid = (h->tp_status & TP_STATUS_VLAN_TPID_VALID) && h->hv1.tp_vlan_tpid ? h->hv1.tp_vlan_tpid
												    : ETH_P_8021Q;
		memcpy(d, data, 12);
		d[12] = (uint8_t)(tpid >> 8);
		d[13] = (uint8_t)tpid;
		d[14] = (uint8_t)(h->hv1.tp_vlan_tci >> 8);
		d[15] = (uint8_t)h->hv1.tp_vlan_tci;
		memcpy(d + 16, data + 12, len - 12);
	} else {
		memcpy(d, data, len);
	}
	k->len = out_len;
	if (a->vnet) {
		/* PACKET_VNET_HDR's header is the legacy one: native byte order. */
		struct virtio_net_hdr vh;
		memcpy(&vh, data - AFP_VNET_LEN, sizeof(vh));
		struct vhd_net_meta *m = &k->meta;
		uint16_t shift = tagged ? AFP_VLAN_HLEN : 0;
		m->flags = vh.flags & (VHD_NET_META_F_NEEDS_CSUM | VHD_NET_META_F_DATA_VALID);
		m->gso_type = vh.gso_type;
		if (m->flags & VHD_NET_META_F_NEEDS_CSUM) {
			m->csum_start = (uint16_t)(vh.csum_start + shift);
			m->csum_offset = vh.csum_offset;
		}
		if (m->gso_type != VHD_NET_META_GSO_NONE) {
			m->hdr_len = (uint16_t)(vh.hdr_len + shift);
			m->gso_size = vh.gso_size;
		}
	}
	return true;
}

/* The socket polls readable once the kernel retires a block to us (full, or its timeout passed). */
static int afp_rx_arm(struct sw_port *p, unsigned q, struct pollfd *pfd)
{
	(void)q;
	return sw_fd_arm(((struct afp_port *)p->priv)->fd, pfd);
}

static unsigned afp_rx_burst(struct sw_port *p, unsigned q, struct vhd_pktpool *pool, struct vhd_pkt **pkts,
			     unsigned n)
{
	struct afp_port *a = p->priv;
	struct vhd_pkt *spare = NULL;
	unsigned got = 0;
	if (!sw_gate_enter(&a->gate, &a->gate.rx[q].busy))
		return 0; /* the frames wait in the ring, for whichever process owns it next */
	/* Frames looked at, dropped ones included, bound the work of one call. */
	for (unsigned seen = 0; seen < n;) {
		if (!a->rx.next) {
			struct tpacket_block_desc *b = rx_block(a, a->rx.block);
			/* Pairs with the kernel's release when it retires the block to us. */
			if (!(__atomic_load_n(&b->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
				break;
			a->rx.left = b->hdr.bh1.num_pkts;
			if (a->rx.left == 0) {
				rx_release_block(a);
				continue;
			}
			a->rx.next = (uint8_t *)b + b->hdr.bh1.offset_to_first_pkt;
		}
		if (!spare && vhd_pkt_alloc_bulk(pool, &spare, 1) != 1)
			break; /* pool dry: the frame stays in the ring */
		const struct tpacket3_hdr *h = (const struct tpacket3_hdr *)a->rx.next;
		const struct sockaddr_ll *sll = (const struct sockaddr_ll *)((const uint8_t *)h + AFP_HDRLEN);
		seen++;
		/* PACKET_IGNORE_OUTGOING already keeps these away; the check costs nothing. */
		if (sll->sll_pkttype != PACKET_OUTGOING && rx_frame(a, h, spare)) {
			pkts[got++] = spare;
			spare = NULL;
		}
		if (--a->rx.left == 0)
			rx_release_block(a);
		else
			a->rx.next += h->tp_next_offset;
	}
	vhd_pkt_free(spare);
	sw_gate_leave(&a->gate.rx[q].busy);
	return got;
}

static struct tpacket3_hdr *tx_slot(const struct afp_port *a, unsigned i)
{
	return (struct tpacket3_hdr *)(a->tx.base + (size_t)i * a->tx.frame_size);
}

/* False if k cannot go out through the ring as it is (counted; the caller frees it). */
static bool tx_fill(struct afp_port *a, const struct vhd_pkt *k, struct tpacket3_hdr *h)
{
	uint8_t *d = (uint8_t *)h + AFP_HDRLEN;
	uint32_t room = a->tx.frame_size - AFP_HDRLEN;
	const struct vhd_net_meta *m = &k->meta;
	if (a->vnet) {
		if (k->len + AFP_VNET_LEN > room)
			return false;
		struct virtio_net_hdr vh = {
			.flags = m->flags & VHD_NET_META_F_NEEDS_CSUM, /* DATA_VALID means nothing on transmit */
			.gso_type = m->gso_type,
			.hdr_len = m->hdr_len,
			.gso_size = m->gso_size,
			.csum_start = m->csum_start,
			.csum_offset = m->csum_offset,
		};
		memcpy(d, &vh, sizeof(vh));
		memcpy(d + AFP_VNET_LEN, vhd_pkt_data(k), k->len);
		h->tp_len = AFP_VNET_LEN + k->len;
	} else {
		/* The switch completes checksums for us (tx_off is empty), so these would be a broken contract. */
		if ((m->flags & VHD_NET_META_F_NEEDS_CSUM) || m->gso_type != VHD_NET_META_GSO_NONE)
			return false;
		/* Without the vnet header the kernel refuses frames over the MTU and logs each one. */
		uint32_t max = atomic_load_explicit(&a->mtu, memory_order_relaxed) + AFP_ETH_HLEN + AFP_VLAN_HLEN;
		if (k->len > room || k->len > max)
			return false;
		memcpy(d, vhd_pkt_data(k), k->len);
		h->tp_len = k->len;
	}
	h->tp_next_offset = 0; /* the kernel refuses V3 transmit frames that chain */
	return true;
}

static unsigned afp_tx_burst(struct sw_port *p, unsigned q, struct vhd_pkt **pkts, unsigned n)
{
	struct afp_port *a = p->priv;
	unsigned i, added = 0;
	if (!sw_gate_enter(&a->gate, &a->gate.tx[q].busy))
		return 0; /* dropped and counted by the switch, as any frame a full ring refuses */
	for (i = 0; i < n; i++) {
		struct tpacket3_hdr *h = tx_slot(a, a->tx.head);
		/* Pairs with the kernel's release when it is done with the slot (destructor of the skb). Anything
		 * but AVAILABLE (or WRONG_FORMAT, which PACKET_LOSS makes impossible) means the ring is full. */
		uint32_t st = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
		if (st & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING))
			break;
		if (!tx_fill(a, pkts[i], h)) {
			count(&a->tx_errors);
			continue;
		}
		/* Our writes of the frame are visible before the kernel sees the request. */
		__atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
		a->tx.head = (a->tx.head + 1) % a->tx.frame_nr;
		added++;
	}
	/* One kick per burst. Also when nothing new went in but earlier frames are still waiting (the kernel
	 * stopped on an error, or the interface was down): the kernel resumes from them, in order. A failed kick
	 * needs nothing more, since those frames stay requested for the next one. */
	unsigned last = (a->tx.head + a->tx.frame_nr - 1) % a->tx.frame_nr;
	if (added ||
	    (__atomic_load_n(&tx_slot(a, last)->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_SEND_REQUEST))
		(void)sendto(a->fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
	vhd_pkt_free_bulk(pkts, i);
	sw_gate_leave(&a->gate.tx[q].busy);
	return i;
}

/* vhostctl upgrade, old side: pause, then hand over the socket (still ours: this process exits after GO without
 * closing or unmapping anything, or resumes on failure), the ring geometry and cursors, and the counters. */
static int afp_handover_export(struct sw_port *p, void *buf, size_t cap, size_t *len, int *fds, unsigned *nfds,
			       char *err, size_t errlen)
{
	struct afp_port *a = p->priv;
	(void)err, (void)errlen;
	if (cap < sizeof(struct afp_blob))
		return -E2BIG;
	sw_gate_close(&a->gate, 1);
	struct afp_blob b = {
		.magic = AFP_BLOB_MAGIC,
		.version = AFP_BLOB_VERSION,
		.frames = a->frames,
		.ifindex = a->ifindex,
		.vnet = a->vnet,
		.rx_block_size = a->rx.block_size,
		.rx_block_nr = a->rx.block_nr,
		.rx_block = a->rx.block,
		.rx_next = a->rx.next ? (uint32_t)(a->rx.next - (uint8_t *)rx_block(a, a->rx.block)) : 0,
		.rx_left = a->rx.next ? a->rx.left : 0,
		.tx_frame_size = a->tx.frame_size,
		.tx_frame_nr = a->tx.frame_nr,
		.tx_head = a->tx.head,
		.rx_too_big = atomic_load_explicit(&a->rx_too_big, memory_order_relaxed),
		.rx_csum_partial = atomic_load_explicit(&a->rx_csum_partial, memory_order_relaxed),
		.tx_errors = atomic_load_explicit(&a->tx_errors, memory_order_relaxed),
		.k_packets = a->k_packets,
		.k_drops = a->k_drops,
		.k_freezes = a->k_freezes,
	};
	memcpy(b.ifname, a->ifname, sizeof(b.ifname));
	memcpy(buf, &b, sizeof(b));
	*len = sizeof(b);
	fds[0] = a->fd;
	*nfds = 1;
	return 0;
}

static void afp_handover_resume(struct sw_port *p)
{
	sw_gate_open(&((struct afp_port *)p->priv)->gate);
}

const struct sw_port_ops sw_af_packet_ops = {
	.type = "af_packet",
	.create = afp_create,
	.destroy = afp_destroy,
	.pollfds = sw_no_pollfds,
	.timeout_ms = sw_no_timeout_ms,
	.dispatch = sw_no_dispatch,
	.link_up = afp_link_up,
	.describe = afp_describe,
	.rx_burst = afp_rx_burst,
	.rx_arm = afp_rx_arm,
	.rx_disarm = sw_fd_disarm,
	.tx_burst = afp_tx_burst,
	.handover_export = afp_handover_export,
	.handover_resume = afp_handover_resume,
};
