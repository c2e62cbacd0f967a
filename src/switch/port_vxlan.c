/* SPDX-License-Identifier: MIT */
/*
 * VXLAN ports (RFC 7348): the switch's frames carried in UDP to remote VTEPs (other vhostd instances, Linux
 * vxlan devices, hardware switches) over the host's own IPv4 stack, one VNI per port.
 *
 * Receive: one non-blocking UDP socket bound to local:dstport, read with recvmmsg, a burst per call. Datagrams
 * are taken only from the configured remotes (anything else is counted and dropped: the remote list is the
 * port's access list), must carry the I flag and the port's VNI, and an inner Ethernet header. The inner
 * source MAC is learned against the VTEP it came from.
 *
 * Transmit: the inner destination MAC's learned VTEP, or every remote (head-end replication) for broadcast,
 * multicast and unknown unicast. The UDP source port spreads flows over the underlay's ECMP paths (RFC 7348
 * section 5): a socket can only send from its own port, so the port holds src_ports transmit sockets, each
 * bound to a port from the kernel's ephemeral range, and a flow hash of the inner frame picks one; each
 * socket gets one sendmmsg per burst, in which runs of equal-length datagrams to one remote go as single
 * UDP_SEGMENT sends (gso=on). Those sockets never receive (a drop-all socket filter).
 *
 * A receive poll is a syscall even when nothing is there, so after an empty one the port skips the next 1, 2,
 * then at most 4 polls.
 *
 * MTU: by default the port's MTU is the underlay's (the route to the first remote) less 50 bytes, as Linux's
 * vxlan devices do; a larger mtu= is allowed and then the kernel fragments the outer datagrams (DF is never
 * set, like Linux vxlan's default df=unset). Frames arrive as whole frames: TCP GSO frames from guests are
 * segmented and partial checksums completed by the switch before they reach tx_burst (tx_off is empty).
 *
 * The VTEP table (inner MAC -> remote) is written only by the receive thread and read by any transmit thread:
 * fixed-size, set-associative, one 64-bit word per entry (MAC, remote index, valid bit) so that a reader never
 * sees half an entry and needs no lock; a full set replaces its least recently seen entry, entries not seen
 * for VX_AGE_S are ignored. Its memory never grows, whatever a remote sends.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <linux/filter.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/json.h"
#include "spec/vxlan.h"
#include "switch/port.h"
#include "switch/switch.h"
#include "vhostd/log.h"

#define VX_MAX_REMOTES 16u
#define VX_MAX_SRC_PORTS 64u
#define VX_DEFAULT_SRC_PORTS 8u
#define VX_SETS 1024u /* VTEP table: sets of VX_WAYS entries, one cache line each */
#define VX_WAYS 8u
#define VX_AGE_S 300u /* as the switch's default MAC aging and Linux vxlan's ageing */
#define VX_MAX_MSGS (SW_BURST * VX_MAX_REMOTES)
#define VX_ETH_HLEN 14u
#define VX_HLEN ((unsigned)sizeof(struct vxlan_hdr))
#define VX_RCVBUF (4u << 20)
#define VX_FLOOD 0xffu
#define VX_GSO_SEGS 64u       /* UDP_MAX_SEGMENTS of older kernels */
#define VX_GSO_BYTES 65000u   /* UDP payload of one GSO send, under the IPv4 limit */
#define VX_IP_UDP_HLEN 28u
#define VX_RX_BACKOFF_MAX 4u /* polls skipped at most after an empty read: each read is a syscall */

/* A table word: bit 63 valid, bits 48..55 the remote's index, bits 0..47 the MAC. */
#define VX_VALID (1ull << 63)

struct vx_port {
	uint32_t vni;
	uint16_t dstport;
	unsigned n_remotes, n_tx;
	struct sockaddr_in remotes[VX_MAX_REMOTES];
	struct in_addr local; /* INADDR_ANY when not given */
	int rx_fd;
	int tx_fd[VX_MAX_SRC_PORTS];
	uint16_t tx_port[VX_MAX_SRC_PORTS]; /* the source port each sends from (host order) */
	bool gso;                           /* UDP_SEGMENT: runs of equal datagrams to one remote in one send */
	uint32_t gso_max;                   /* largest inner frame such a run may carry (the underlay's MTU) */
	struct vxlan_hdr hdr;               /* what every datagram we send starts with */

	/* Receive scratch: the one thread that owns rx queue 0. */
	_Alignas(64) struct {
		struct mmsghdr msg[SW_BURST];
		struct iovec iov[SW_BURST][2];
		struct sockaddr_in from[SW_BURST];
		struct vxlan_hdr hdr[SW_BURST];
		struct vhd_pkt *pk[SW_BURST];
		unsigned skip, backoff; /* polls to skip after finding the socket empty, and the next such count */
	} rx;
	/* Transmit scratch: whoever holds tx queue 0 (serialised by the switch). */
	_Alignas(64) struct {
		struct mmsghdr msg[VX_MAX_MSGS];
		struct iovec iov[VX_MAX_MSGS][2]; /* back to back: a run of k messages is 2k iovecs from its first */
		struct mmsghdr unit[VX_MAX_MSGS]; /* what sendmmsg gets: single messages or GSO runs */
		uint16_t unit_n[VX_MAX_MSGS];     /* datagrams in each */
		union {
			char buf[CMSG_SPACE(sizeof(uint16_t))];
			struct cmsghdr align;
		} cm[VX_MAX_MSGS];
	} tx;

	_Alignas(64) _Atomic uint64_t rx_runts;    /* shorter than the VXLAN header plus an Ethernet header */
	_Atomic uint64_t rx_bad_flags;             /* I flag clear */
	_Atomic uint64_t rx_wrong_vni;             /* another VNI */
	_Atomic uint64_t rx_unknown_remote;        /* from an address not in remote= */
	_Atomic uint64_t rx_too_big;               /* larger than the pool buffer */
	_Atomic uint64_t rx_errors;                /* recvmmsg failures */
	_Atomic bool refused_logged;               /* the first refused datagram was logged */
	_Alignas(64) _Atomic uint64_t tx_datagrams; /* datagrams sent (flooded frames count once per remote) */
	_Atomic uint64_t tx_sends;                  /* messages sendmmsg took: datagrams, or GSO runs of them */
	_Atomic uint64_t tx_errors;                 /* datagrams the kernel refused (no route, too big) */
	_Atomic uint64_t tx_full;                   /* not sent: socket buffer full */
	_Atomic uint64_t learn_moves;               /* a MAC seen behind another VTEP than before */

	struct sw_gate gate; /* closed from handover_export until handover_resume */

	/* The VTEP table; writer: the rx thread; readers: tx threads. */
	_Alignas(64) _Atomic uint64_t fdb[VX_SETS * VX_WAYS];
	_Atomic uint32_t seen[VX_SETS * VX_WAYS]; /* CLOCK_MONOTONIC_COARSE seconds of the last frame from it */
};

static void count(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint32_t now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* vDSO: no syscall */
	return (uint32_t)ts.tv_sec;
}

static uint64_t mac48(const uint8_t *m)
{
	return (uint64_t)m[0] << 40 | (uint64_t)m[1] << 32 | (uint64_t)m[2] << 24 | (uint64_t)m[3] << 16 |
	       (uint64_t)m[4] << 8 | m[5];
}

static uint32_t mix32(uint32_t h)
{
	/* murmur3's finaliser: every input bit moves every output bit */
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

static unsigned set_of(uint64_t mac)
{
	return mix32((uint32_t)mac ^ mix32((uint32_t)(mac >> 32))) & (VX_SETS - 1);
}

/* ------------------------------------------------------------------ VTEP table */

/* rx thread only. */
static void learn(struct vx_port *v, const uint8_t *src, unsigned remote, uint32_t now)
{
	if (src[0] & 1)
		return; /* a group address is never a source */
	uint64_t mac = mac48(src);
	if (!mac)
		return;
	uint64_t word = VX_VALID | (uint64_t)remote << 48 | mac;
	unsigned base = set_of(mac) * VX_WAYS, victim = base;
	uint32_t oldest = UINT32_MAX;
	for (unsigned i = base; i < base + VX_WAYS; i++) {
		/* Relaxed: this thread is the only writer. */
		uint64_t w = atomic_load_explicit(&v->fdb[i], memory_order_relaxed);
		uint32_t seen = atomic_load_explicit(&v->seen[i], memory_order_relaxed);
		if ((w & VX_VALID) && (w & 0xffffffffffffull) == mac) {
			if (w != word) {
				atomic_store_explicit(&v->fdb[i], word, memory_order_relaxed);
				count(&v->learn_moves, 1);
			}
			if (seen != now) /* one store per second at most: the line stays shared with readers */
				atomic_store_explicit(&v->seen[i], now, memory_order_relaxed);
			return;
		}
		uint32_t age = (w & VX_VALID) ? seen : 0; /* a free entry is the oldest of all */
		if (age < oldest) {
			oldest = age;
			victim = i;
		}
	}
	/* seen before the word: a reader that finds the new word never judges it by the old entry's age. Pairs
	 * with the acquire load of the word in lookup(). */
	atomic_store_explicit(&v->seen[victim], now, memory_order_relaxed);
	atomic_store_explicit(&v->fdb[victim], word, memory_order_release);
}

/* Any tx thread: the remote dst sits behind, or VX_FLOOD. */
static unsigned lookup(struct vx_port *v, const uint8_t *dst, uint32_t now)
{
	if (dst[0] & 1)
		return VX_FLOOD;
	uint64_t mac = mac48(dst);
	unsigned base = set_of(mac) * VX_WAYS;
	for (unsigned i = base; i < base + VX_WAYS; i++) {
		/* Pairs with the release store in learn(): seen is at least as new as the word. */
		uint64_t w = atomic_load_explicit(&v->fdb[i], memory_order_acquire);
		if ((w & VX_VALID) && (w & 0xffffffffffffull) == mac) {
			uint32_t seen = atomic_load_explicit(&v->seen[i], memory_order_relaxed);
			unsigned r = (unsigned)(w >> 48) & 0xff;
			if (now - seen > VX_AGE_S || r >= v->n_remotes)
				return VX_FLOOD;
			return r;
		}
	}
	return VX_FLOOD;
}

/* Control thread: entries not aged out. */
static unsigned learned(struct vx_port *v)
{
	uint32_t now = now_s();
	unsigned n = 0;
	for (unsigned i = 0; i < VX_SETS * VX_WAYS; i++)
		if ((atomic_load_explicit(&v->fdb[i], memory_order_acquire) & VX_VALID) &&
		    now - atomic_load_explicit(&v->seen[i], memory_order_relaxed) <= VX_AGE_S)
			n++;
	return n;
}

/*
 * The inner frame's flow: IPv4/IPv6 addresses, protocol and (unfragmented TCP/UDP/SCTP) ports, else the MACs and
 * EtherType, one VLAN tag skipped. Only the frame's own bytes up to len are read.
 */
static uint32_t flow_hash(const uint8_t *d, uint32_t len)
{
	uint32_t h = 0x9e3779b9u;
	unsigned l2 = VX_ETH_HLEN;
	uint16_t type = (uint16_t)(d[12] << 8 | d[13]);
	if ((type == 0x8100 || type == 0x88a8) && len >= 18) {
		type = (uint16_t)(d[16] << 8 | d[17]);
		l2 = 18;
	}
	const uint8_t *ip = d + l2;
	uint32_t left = len - l2;
	const uint8_t *addrs = NULL, *l4 = NULL;
	unsigned alen = 0;
	uint8_t proto = 0;
	if (type == 0x0800 && left >= 20 && (ip[0] >> 4) == 4) {
		unsigned ihl = (ip[0] & 15u) * 4;
		addrs = ip + 12;
		alen = 8;
		proto = ip[9];
		bool frag = ((ip[6] & 0x3f) | ip[7]) != 0; /* MF or an offset: ports not in every fragment */
		if (!frag && ihl >= 20 && left >= ihl + 4)
			l4 = ip + ihl;
	} else if (type == 0x86dd && left >= 40) {
		addrs = ip + 8;
		alen = 32;
		proto = ip[6];
		if (left >= 44)
			l4 = ip + 40;
	} else {
		for (unsigned i = 0; i < 12; i += 4)
			h = mix32(h ^ ((uint32_t)d[i] << 24 | (uint32_t)d[i + 1] << 16 | (uint32_t)d[i + 2] << 8 | d[i + 3]));
		return mix32(h ^ type);
	}
	for (unsigned i = 0; i < alen; i += 4)
		h = mix32(h ^ ((uint32_t)addrs[i] << 24 | (uint32_t)addrs[i + 1] << 16 | (uint32_t)addrs[i + 2] << 8 |
			       addrs[i + 3]));
	h = mix32(h ^ proto);
	if (l4 && (proto == 6 || proto == 17 || proto == 132))
		h = mix32(h ^ ((uint32_t)l4[0] << 24 | (uint32_t)l4[1] << 16 | (uint32_t)l4[2] << 8 | l4[3]));
	return h;
}

/* ------------------------------------------------------------------ control */

/*
 * The handover blob (vhostctl upgrade), ours alone (both ends are vhostd, so not in src/spec), with the sockets
 * sent alongside: the receive socket, then the n_tx transmit sockets. Keeping the sockets keeps their ports: the
 * receive socket's datagrams queued while paused are read by the new process, and remotes see the same source
 * ports. The VTEP table follows the blob, its live entries (not aged out) each at its slot with its age, so that
 * no flood to every remote follows an upgrade: the same binary layout (VX_SETS, VX_WAYS, the unkeyed set_of())
 * puts each at the same slot, and the remote list, from the same add-port arguments, gives the same indices.
 * Entries past what fits (VX_HANDOVER_VTEPS) are learned again. VX_BLOB_VERSION changes whenever the layout or
 * a field's meaning does.
 */
#define VX_BLOB_MAGIC 0x3158555844484856ull /* "VHHDXUX1" */
#define VX_BLOB_VERSION 2u /* 2: VTEP entries */
#define VX_BLOB_COUNTERS 11u
struct vx_blob {
	uint64_t magic;
	uint32_t version;
	uint32_t n_tx;
	uint64_t counters[VX_BLOB_COUNTERS]; /* in the order of counter_fields() */
	uint32_t n_vteps;                    /* struct vx_vtep entries after the blob */
	uint32_t pad;
};
_Static_assert(sizeof(struct vx_blob) == 112 && offsetof(struct vx_blob, version) == 8,
	       "vxlan handover blob layout (magic and version where sw_import_blob() reads them)");
struct vx_vtep {
	uint64_t word; /* as in fdb[] */
	uint32_t slot; /* index into fdb[] */
	uint32_t age_s;
};
_Static_assert(sizeof(struct vx_vtep) == 16, "vxlan handover VTEP entry layout");
#define VX_HANDOVER_VTEPS ((SW_HANDOVER_MAX - sizeof(struct vx_blob)) / sizeof(struct vx_vtep))
_Static_assert(sizeof(struct vx_blob) <= SW_HANDOVER_MAX && 1 + VX_MAX_SRC_PORTS <= SW_HANDOVER_MAX_FDS,
	       "a vxlan handover fits the switch's buffers");

static void counter_fields(struct vx_port *v, _Atomic uint64_t *f[VX_BLOB_COUNTERS])
{
	_Atomic uint64_t *all[VX_BLOB_COUNTERS] = {&v->rx_runts,    &v->rx_bad_flags,  &v->rx_wrong_vni,
						    &v->rx_unknown_remote, &v->rx_too_big, &v->rx_errors,
						    &v->tx_datagrams, &v->tx_sends,   &v->tx_errors,
						    &v->tx_full,      &v->learn_moves};
	memcpy(f, all, sizeof(all));
}

/* A UDP/IPv4 socket bound to port (0: any): 0, or -EPROTO. *bound: the port it is bound to. */
static int check_udp(int fd, uint16_t port, uint16_t *bound)
{
	int dom = 0, type = 0, proto = 0;
	socklen_t l1 = sizeof(dom), l2 = sizeof(type), l3 = sizeof(proto);
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l1) < 0 || dom != AF_INET ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l2) < 0 || type != SOCK_DGRAM ||
	    getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &l3) < 0 || proto != IPPROTO_UDP ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0 || sa.sin_family != AF_INET || !sa.sin_port ||
	    (port && ntohs(sa.sin_port) != port))
		return -EPROTO;
	*bound = ntohs(sa.sin_port);
	return 0;
}

/* vhostctl upgrade, new side: the old process's sockets (imp->fds, ours from here), checked to be UDP sockets
 * bound as dstport= and src_ports= say. */
static int vx_adopt(struct vx_port *v, struct sw_port_import *imp, unsigned src_ports, char *err, size_t errlen)
{
	imp->taken = true;
	unsigned n = imp->nfds;
	if (n > 0)
		v->rx_fd = imp->fds[0];
	for (unsigned i = 1; i < n; i++) {
		if (v->n_tx < VX_MAX_SRC_PORTS)
			v->tx_fd[v->n_tx++] = imp->fds[i];
		else
			close(imp->fds[i]);
	}
	struct vx_blob b;
	/* The fixed part is checked as every port type's is; the VTEP entries follow it. */
	struct sw_port_import fixed = *imp;
	if (fixed.len > sizeof(b))
		fixed.len = sizeof(b);
	int rc = sw_import_blob(&fixed, "vxlan", VX_BLOB_MAGIC, VX_BLOB_VERSION, &b, sizeof(b), err, errlen);
	if (rc < 0)
		return rc;
	if (n != 1 + src_ports || b.n_tx != src_ports) {
		snprintf(err, errlen, "vxlan: taking over: %u socket(s) and %u transmit socket(s) in the state for "
			 "src_ports=%u", n, b.n_tx, src_ports);
		return -EPROTO;
	}
	if (b.n_vteps > VX_HANDOVER_VTEPS || imp->len != sizeof(b) + b.n_vteps * sizeof(struct vx_vtep)) {
		snprintf(err, errlen, "vxlan: taking over: %u VTEP entries in a %zu-byte state", b.n_vteps, imp->len);
		return -EPROTO;
	}
	/* Each entry where this binary would have put it, for a remote this port has; anything else is dropped
	 * (learned again from the next frame). Nothing reads the table yet: the port is not published. */
	uint32_t now = now_s();
	for (uint32_t i = 0; i < b.n_vteps; i++) {
		struct vx_vtep e;
		memcpy(&e, (const uint8_t *)imp->blob + sizeof(b) + i * sizeof(e), sizeof(e));
		uint64_t mac = e.word & 0xffffffffffffull;
		unsigned r = (unsigned)(e.word >> 48) & 0xff, base = set_of(mac) * VX_WAYS;
		if (!(e.word & VX_VALID) || !mac || r >= v->n_remotes || e.slot < base || e.slot >= base + VX_WAYS ||
		    e.age_s > VX_AGE_S || (e.word & ~(VX_VALID | 0xffull << 48 | 0xffffffffffffull)))
			continue;
		atomic_store_explicit(&v->seen[e.slot], e.age_s < now ? now - e.age_s : 0, memory_order_relaxed);
		atomic_store_explicit(&v->fdb[e.slot], e.word, memory_order_relaxed);
	}
	uint16_t port;
	if (check_udp(v->rx_fd, v->dstport, &port) < 0) {
		snprintf(err, errlen, "vxlan: taking over: the receive socket is no UDP socket bound to port %u",
			 v->dstport);
		return -EPROTO;
	}
	for (unsigned i = 0; i < v->n_tx; i++)
		if (check_udp(v->tx_fd[i], 0, &v->tx_port[i]) < 0) {
			snprintf(err, errlen, "vxlan: taking over: transmit socket %u is no bound UDP socket", i);
			return -EPROTO;
		}
	_Atomic uint64_t *f[VX_BLOB_COUNTERS];
	counter_fields(v, f);
	for (unsigned i = 0; i < VX_BLOB_COUNTERS; i++)
		atomic_store_explicit(f[i], b.counters[i], memory_order_relaxed);
	return 0;
}

static void vx_free(struct vx_port *v)
{
	if (v->rx_fd >= 0)
		close(v->rx_fd);
	for (unsigned i = 0; i < v->n_tx; i++)
		if (v->tx_fd[i] >= 0)
			close(v->tx_fd[i]);
	free(v);
}

static int parse_ip(const char *key, const char *s, size_t n, struct in_addr *out, char *err, size_t errlen)
{
	char buf[INET_ADDRSTRLEN];
	if (n == 0 || n >= sizeof(buf)) {
		snprintf(err, errlen, "%s=%.*s: want an IPv4 address", key, (int)(n < 64 ? n : 64), s);
		return -EINVAL;
	}
	memcpy(buf, s, n);
	buf[n] = 0;
	if (inet_pton(AF_INET, buf, out) != 1) {
		snprintf(err, errlen, "%s=%s: want an IPv4 address", key, buf);
		return -EINVAL;
	}
	return 0;
}

static int parse_remotes(struct vx_port *v, const char *list, char *err, size_t errlen)
{
	for (const char *s = list;;) {
		const char *comma = strchr(s, ',');
		size_t n = comma ? (size_t)(comma - s) : strlen(s);
		struct in_addr a;
		int rc = parse_ip("remote", s, n, &a, err, errlen);
		if (rc < 0)
			return rc;
		uint32_t h = ntohl(a.s_addr);
		if (h == 0 || h == INADDR_BROADCAST || IN_MULTICAST(h)) {
			snprintf(err, errlen, "remote=%s: want unicast VTEP addresses (multicast groups are not supported)",
				 inet_ntoa(a));
			return -EINVAL;
		}
		for (unsigned i = 0; i < v->n_remotes; i++)
			if (v->remotes[i].sin_addr.s_addr == a.s_addr) {
				snprintf(err, errlen, "remote=%s: given twice", inet_ntoa(a));
				return -EINVAL;
			}
		if (v->n_remotes == VX_MAX_REMOTES) {
			snprintf(err, errlen, "remote=%s: more than %u remotes", list, VX_MAX_REMOTES);
			return -EINVAL;
		}
		struct sockaddr_in *sa = &v->remotes[v->n_remotes++];
		sa->sin_family = AF_INET;
		sa->sin_addr = a;
		sa->sin_port = htons(v->dstport);
		if (!comma)
			return 0;
		s = comma + 1;
	}
}

static int udp_socket(struct vx_port *v, uint16_t port, const char *what, char *err, size_t errlen)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int rc = -errno;
		snprintf(err, errlen, "%s: UDP socket: %s", what, strerror(-rc));
		return rc;
	}
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = v->local, .sin_port = htons(port)};
	/* Never DF: a datagram larger than the path is fragmented, not lost (see the top of the file). */
	int pmtu = IP_PMTUDISC_DONT;
	if (setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof(pmtu)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int rc = -errno;
		char a[INET_ADDRSTRLEN];
		snprintf(err, errlen, "%s: bind %s:%u: %s", what, inet_ntop(AF_INET, &v->local, a, sizeof(a)), port,
			 strerror(-rc));
		close(fd);
		return rc;
	}
	return fd;
}

/* The underlay MTU towards the first remote (the route's), or 1500 if the kernel cannot say. */
static unsigned underlay_mtu(const struct vx_port *v)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int mtu = 0;
	socklen_t l = sizeof(mtu);
	if (fd >= 0 && (connect(fd, (const struct sockaddr *)&v->remotes[0], sizeof(v->remotes[0])) < 0 ||
			getsockopt(fd, IPPROTO_IP, IP_MTU, &mtu, &l) < 0))
		mtu = 0;
	if (fd >= 0)
		close(fd);
	return mtu > (int)(68 + VXLAN_OVERHEAD_V4) ? (unsigned)mtu : 1500;
}

static int vx_create(struct sw_port *p, const struct sw_kv *args, unsigned nargs, char *err, size_t errlen)
{
	static const char *const known[] = {"vni", "remote", "local", "dstport", "src_ports", "gso", NULL};
	int rc = sw_kv_check(args, nargs, known, "vxlan", err, errlen);
	if (rc < 0)
		return rc;
	if (!sw_kv_get(args, nargs, "vni", NULL)) {
		snprintf(err, errlen, "vni: required (the VXLAN network identifier, 0..%u)", VXLAN_VNI_MAX);
		return -EINVAL;
	}
	const char *remote = sw_kv_get(args, nargs, "remote", NULL);
	if (!remote || !*remote) {
		snprintf(err, errlen, "remote: required (the remote VTEPs' IPv4 addresses, comma-separated)");
		return -EINVAL;
	}
	unsigned vni, dstport, src_ports;
	bool gso;
	if ((rc = sw_kv_on_off(args, nargs, "gso", true, &gso, err, errlen)) < 0 ||
	    (rc = sw_kv_uint(args, nargs, "vni", 0, 0, VXLAN_VNI_MAX, &vni, err, errlen)) < 0 ||
	    (rc = sw_kv_uint(args, nargs, "dstport", VXLAN_PORT, 1, 65535, &dstport, err, errlen)) < 0 ||
	    (rc = sw_kv_uint(args, nargs, "src_ports", VX_DEFAULT_SRC_PORTS, 1, VX_MAX_SRC_PORTS, &src_ports, err,
			     errlen)) < 0)
		return rc;

	struct vx_port *v = aligned_alloc(_Alignof(struct vx_port), sizeof(*v));
	if (!v) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	memset(v, 0, sizeof(*v));
	v->rx_fd = -1;
	v->vni = vni;
	v->dstport = (uint16_t)dstport;
	v->local.s_addr = htonl(INADDR_ANY);
	const char *local = sw_kv_get(args, nargs, "local", NULL);
	if ((local && (rc = parse_ip("local", local, strlen(local), &v->local, err, errlen)) < 0) ||
	    (rc = parse_remotes(v, remote, err, errlen)) < 0)
		goto fail;
	v->hdr.flags = VXLAN_FLAG_I;
	v->hdr.vni_res = htonl(vni << 8);

	if (p->import) {
		if ((rc = vx_adopt(v, p->import, src_ports, err, errlen)) < 0)
			goto fail;
		goto adopted; /* options, filters and buffer sizes go with the sockets */
	}
	if ((rc = udp_socket(v, v->dstport, "dstport", err, errlen)) < 0)
		goto fail;
	v->rx_fd = rc;
	/* Room for bursts that arrive while the thread is elsewhere; FORCE needs CAP_NET_ADMIN, else the capped
	 * ordinary option. */
	int rcvbuf = VX_RCVBUF;
	if (setsockopt(v->rx_fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
		(void)setsockopt(v->rx_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));

	/* Transmit sockets take nothing in: whatever reaches their ports is dropped by the kernel, not queued. */
	struct sock_filter drop = BPF_STMT(BPF_RET | BPF_K, 0);
	struct sock_fprog prog = {.len = 1, .filter = &drop};
	for (unsigned i = 0; i < src_ports; i++) {
		if ((rc = udp_socket(v, 0, "src_ports", err, errlen)) < 0)
			goto fail;
		v->tx_fd[v->n_tx++] = rc;
		struct sockaddr_in sa;
		socklen_t sl = sizeof(sa);
		if (setsockopt(rc, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0 ||
		    getsockname(rc, (struct sockaddr *)&sa, &sl) < 0) {
			rc = -errno;
			snprintf(err, errlen, "src_ports: setting up a transmit socket: %s", strerror(-rc));
			goto fail;
		}
		v->tx_port[i] = ntohs(sa.sin_port);
	}
	/* Published with p by the switch; adopted sockets are held until handover_resume. */
	atomic_store_explicit(&v->gate.open, 1, memory_order_relaxed);

adopted:
	for (unsigned i = 0; i < SW_BURST; i++) {
		struct msghdr *h = &v->rx.msg[i].msg_hdr;
		v->rx.iov[i][0] = (struct iovec){&v->rx.hdr[i], VX_HLEN};
		h->msg_iov = v->rx.iov[i];
		h->msg_iovlen = 2;
		h->msg_name = &v->rx.from[i];
	}
	for (unsigned i = 0; i < VX_MAX_MSGS; i++) {
		struct msghdr *h = &v->tx.msg[i].msg_hdr;
		v->tx.iov[i][0] = (struct iovec){&v->hdr, VX_HLEN};
		h->msg_iov = v->tx.iov[i];
		h->msg_iovlen = 2;
		h->msg_namelen = sizeof(struct sockaddr_in);
	}

	/* A GSO send must fit each datagram in the device's MTU (the kernel refuses it otherwise, DF or not), so
	 * runs are only made of frames that fit; probing with 0 tells whether the kernel has UDP_SEGMENT. */
	unsigned umtu = underlay_mtu(v);
	int zero = 0;
	v->gso = gso && setsockopt(v->tx_fd[0], SOL_UDP, UDP_SEGMENT, &zero, sizeof(zero)) == 0;
	v->gso_max = umtu - VX_IP_UDP_HLEN - VX_HLEN;
	if (p->mtu == 0)
		p->mtu = umtu - VXLAN_OVERHEAD_V4;
	p->n_rxq = p->n_txq = 1;
	memset(&p->rx_off, 0, sizeof(p->rx_off));
	memset(&p->tx_off, 0, sizeof(p->tx_off));
	p->priv = v;
	return 0;
fail:
	vx_free(v);
	return rc;
}

static void vx_destroy(struct sw_port *p)
{
	vx_free(p->priv);
	p->priv = NULL;
}

static unsigned vx_pollfds(struct sw_port *p, struct pollfd *fds, unsigned max)
{
	(void)p, (void)fds, (void)max;
	return 0;
}

static int vx_timeout_ms(struct sw_port *p)
{
	(void)p;
	return -1;
}

static void vx_dispatch(struct sw_port *p)
{
	(void)p;
}

static bool vx_link_up(struct sw_port *p)
{
	(void)p;
	return true; /* UDP has no carrier; the remotes are configured, not discovered */
}

/* Datagrams the kernel dropped at the receive socket (buffer full), or 0 if it cannot say. */
static uint64_t kernel_drops(const struct vx_port *v)
{
	uint32_t mem[SK_MEMINFO_VARS];
	socklen_t ml = sizeof(mem);
	if (getsockopt(v->rx_fd, SOL_SOCKET, SO_MEMINFO, mem, &ml) == 0 && ml > SK_MEMINFO_DROPS * sizeof(mem[0]))
		return mem[SK_MEMINFO_DROPS];
	return 0;
}

/* For vhostctl stats and the metrics: what was refused or lost, beside the switch's own counters. */
static void vx_counters(struct sw_port *p, void (*fn)(void *arg, const char *name, const char *help, int queue,
						      uint64_t v),
			void *arg)
{
	struct vx_port *v = p->priv;
	static const struct {
		const char *name, *help;
		size_t off;
	} c[] = {
		{"vxlan_rx_runts", "datagrams shorter than the VXLAN header and an Ethernet header",
		 offsetof(struct vx_port, rx_runts)},
		{"vxlan_rx_bad_flags", "datagrams without the VXLAN I flag", offsetof(struct vx_port, rx_bad_flags)},
		{"vxlan_rx_wrong_vni", "datagrams of another VNI", offsetof(struct vx_port, rx_wrong_vni)},
		{"vxlan_rx_unknown_remote", "datagrams from an address not in remote=",
		 offsetof(struct vx_port, rx_unknown_remote)},
		{"vxlan_rx_too_big", "datagrams larger than a packet buffer", offsetof(struct vx_port, rx_too_big)},
		{"vxlan_tx_errors", "datagrams the kernel refused to send", offsetof(struct vx_port, tx_errors)},
		{"vxlan_tx_full", "datagrams not sent: the socket buffer was full", offsetof(struct vx_port, tx_full)},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		fn(arg, c[i].name, c[i].help, -1,
		   atomic_load_explicit((_Atomic uint64_t *)((char *)v + c[i].off), memory_order_relaxed));
	fn(arg, "vxlan_kernel_drops", "datagrams the kernel dropped: the receive socket's buffer was full", -1,
	   kernel_drops(v));
}

static void vx_describe(struct sw_port *p, struct sw_json *w)
{
	struct vx_port *v = p->priv;
	char a[INET_ADDRSTRLEN];
	sw_json_u64(w, "vni", v->vni);
	sw_json_arr_begin(w, "remotes");
	for (unsigned i = 0; i < v->n_remotes; i++)
		sw_json_str(w, NULL, inet_ntop(AF_INET, &v->remotes[i].sin_addr, a, sizeof(a)));
	sw_json_arr_end(w);
	sw_json_str(w, "local", inet_ntop(AF_INET, &v->local, a, sizeof(a)));
	sw_json_u64(w, "dstport", v->dstport);
	sw_json_arr_begin(w, "src_ports");
	for (unsigned i = 0; i < v->n_tx; i++)
		sw_json_u64(w, NULL, v->tx_port[i]);
	sw_json_arr_end(w);
	sw_json_bool(w, "gso", v->gso);
	sw_json_u64(w, "learned", learned(v));
	sw_json_u64(w, "learn_moves", atomic_load_explicit(&v->learn_moves, memory_order_relaxed));
	sw_json_u64(w, "rx_runts", atomic_load_explicit(&v->rx_runts, memory_order_relaxed));
	sw_json_u64(w, "rx_bad_flags", atomic_load_explicit(&v->rx_bad_flags, memory_order_relaxed));
	sw_json_u64(w, "rx_wrong_vni", atomic_load_explicit(&v->rx_wrong_vni, memory_order_relaxed));
	sw_json_u64(w, "rx_unknown_remote", atomic_load_explicit(&v->rx_unknown_remote, memory_order_relaxed));
	sw_json_u64(w, "rx_too_big", atomic_load_explicit(&v->rx_too_big, memory_order_relaxed));
	sw_json_u64(w, "rx_errors", atomic_load_explicit(&v->rx_errors, memory_order_relaxed));
	sw_json_u64(w, "kernel_drops", kernel_drops(v));
	sw_json_u64(w, "tx_datagrams", atomic_load_explicit(&v->tx_datagrams, memory_order_relaxed));
	sw_json_u64(w, "tx_sends", atomic_load_explicit(&v->tx_sends, memory_order_relaxed));
	sw_json_u64(w, "tx_errors", atomic_load_explicit(&v->tx_errors, memory_order_relaxed));
	sw_json_u64(w, "tx_full", atomic_load_explicit(&v->tx_full, memory_order_relaxed));
}

/* ------------------------------------------------------------------ data path */

static void refused(struct vx_port *v, _Atomic uint64_t *c, const struct sockaddr_in *from, const char *why)
{
	count(c, 1);
	if (!atomic_exchange_explicit(&v->refused_logged, true, memory_order_relaxed)) {
		char a[INET_ADDRSTRLEN];
		vhd_log(VHD_LOG_WARN, "vxlan: datagram from %s:%u dropped: %s (counted; logged once)",
			inet_ntop(AF_INET, &from->sin_addr, a, sizeof(a)), ntohs(from->sin_port), why);
	}
}

static int remote_index(const struct vx_port *v, const struct sockaddr_in *from, socklen_t len)
{
	if (len < sizeof(*from) || from->sin_family != AF_INET)
		return -1;
	for (unsigned i = 0; i < v->n_remotes; i++)
		if (v->remotes[i].sin_addr.s_addr == from->sin_addr.s_addr)
			return (int)i;
	return -1;
}

static int vx_rx_arm(struct sw_port *p, unsigned q, struct pollfd *pfd)
{
	(void)q;
	return sw_fd_arm(((struct vx_port *)p->priv)->rx_fd, pfd);
}

/* Woken by a datagram: read it at once rather than after the skips an empty socket earned. */
static void vx_rx_disarm(struct sw_port *p, unsigned q, short revents)
{
	struct vx_port *v = p->priv;
	(void)q, (void)revents;
	v->rx.skip = 0;
	v->rx.backoff = 0;
}

static unsigned rx_burst(struct vx_port *v, struct vhd_pktpool *pool, struct vhd_pkt **pkts, unsigned n)
{
	if (n > SW_BURST)
		n = SW_BURST;
	if (v->rx.skip) {
		v->rx.skip--;
		return 0;
	}
	unsigned have = vhd_pkt_alloc_bulk(pool, v->rx.pk, n);
	if (!have)
		return 0;
	for (unsigned i = 0; i < have; i++) {
		struct vhd_pkt *k = v->rx.pk[i];
		v->rx.iov[i][1] = (struct iovec){vhd_pkt_data(k), vhd_pkt_tailroom(k)};
		v->rx.msg[i].msg_hdr.msg_namelen = sizeof(v->rx.from[i]);
	}
	int r = recvmmsg(v->rx_fd, v->rx.msg, have, MSG_DONTWAIT, NULL);
	if (r <= 0) {
		if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			count(&v->rx_errors, 1);
		/* Nothing there: the next few polls of this queue cost nothing instead of a syscall each. */
		v->rx.backoff = v->rx.backoff ? v->rx.backoff * 2 : 1;
		if (v->rx.backoff > VX_RX_BACKOFF_MAX)
			v->rx.backoff = VX_RX_BACKOFF_MAX;
		v->rx.skip = v->rx.backoff;
		vhd_pkt_free_bulk(v->rx.pk, have);
		return 0;
	}
	v->rx.backoff = 0;
	uint32_t now = now_s();
	unsigned got = 0;
	for (unsigned i = 0; i < (unsigned)r; i++) {
		const struct msghdr *h = &v->rx.msg[i].msg_hdr;
		const struct sockaddr_in *from = &v->rx.from[i];
		const struct vxlan_hdr *x = &v->rx.hdr[i];
		struct vhd_pkt *k = v->rx.pk[i];
		uint32_t len = v->rx.msg[i].msg_len;
		int remote = remote_index(v, from, h->msg_namelen);
		if (remote < 0)
			refused(v, &v->rx_unknown_remote, from, "not from a remote= address");
		else if (h->msg_flags & MSG_TRUNC)
			refused(v, &v->rx_too_big, from, "larger than a packet buffer");
		else if (len < VX_HLEN + VX_ETH_HLEN)
			refused(v, &v->rx_runts, from, "shorter than a VXLAN header and an Ethernet header");
		else if (!(x->flags & VXLAN_FLAG_I))
			refused(v, &v->rx_bad_flags, from, "VXLAN I flag clear");
		else if ((ntohl(x->vni_res) >> 8) != v->vni)
			refused(v, &v->rx_wrong_vni, from, "another VNI");
		else {
			k->len = len - VX_HLEN;
			learn(v, vhd_pkt_data(k) + 6, (unsigned)remote, now);
			pkts[got++] = k;
			v->rx.pk[i] = NULL;
		}
	}
	/* The refused ones (NULL entries skipped) and the buffers no datagram filled. */
	vhd_pkt_free_bulk(v->rx.pk, have);
	return got;
}

/* Datagrams in units [a, b). */
static unsigned units(const struct vx_port *v, unsigned a, unsigned b)
{
	unsigned n = 0;
	for (unsigned u = a; u < b; u++)
		n += v->tx.unit_n[u];
	return n;
}

/*
 * Turn messages [m, end) of one socket into units from index m on: with GSO, a run of messages to the same
 * remote whose frames have one length (the last may be shorter, as UDP_SEGMENT allows) goes as one send the
 * kernel cuts into those datagrams. Units never outnumber messages, so they fit in the same index range.
 * @return the end of the units.
 */
static unsigned group(struct vx_port *v, unsigned m, unsigned end)
{
	unsigned u = m;
	while (m < end) {
		const struct msghdr *h = &v->tx.msg[m].msg_hdr;
		size_t len = v->tx.iov[m][1].iov_len, total = len + VX_HLEN;
		unsigned k = 1;
		if (v->gso && len <= v->gso_max)
			while (m + k < end && k < VX_GSO_SEGS && v->tx.msg[m + k].msg_hdr.msg_name == h->msg_name) {
				size_t l = v->tx.iov[m + k][1].iov_len;
				if (l > len || total + l + VX_HLEN > VX_GSO_BYTES)
					break;
				total += l + VX_HLEN;
				k++;
				if (l < len)
					break; /* a shorter one can only end a run */
			}
		struct msghdr *o = &v->tx.unit[u].msg_hdr;
		memset(o, 0, sizeof(*o));
		o->msg_name = h->msg_name;
		o->msg_namelen = h->msg_namelen;
		o->msg_iov = v->tx.iov[m];
		o->msg_iovlen = 2 * k;
		if (k > 1) {
			o->msg_control = v->tx.cm[u].buf;
			o->msg_controllen = sizeof(v->tx.cm[u].buf);
			struct cmsghdr *c = CMSG_FIRSTHDR(o);
			c->cmsg_level = SOL_UDP;
			c->cmsg_type = UDP_SEGMENT;
			c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
			uint16_t seg = (uint16_t)(len + VX_HLEN);
			memcpy(CMSG_DATA(c), &seg, sizeof(seg));
		}
		v->tx.unit_n[u++] = (uint16_t)k;
		m += k;
	}
	return u;
}

static unsigned tx_burst(struct vx_port *v, struct vhd_pkt **pkts, unsigned n)
{
	if (n > SW_BURST)
		n = SW_BURST;
	uint32_t now = now_s();
	uint8_t dest[SW_BURST], sock[SW_BURST];
	unsigned start[VX_MAX_SRC_PORTS + 1] = {0};
	/* Counting sort by transmit socket: each socket's messages side by side for one sendmmsg. */
	for (unsigned i = 0; i < n; i++) {
		const struct vhd_pkt *k = pkts[i];
		if (k->len < VX_ETH_HLEN) {
			dest[i] = 0;
			sock[i] = VX_MAX_SRC_PORTS; /* none */
			count(&v->tx_errors, 1);
			continue;
		}
		const uint8_t *d = vhd_pkt_data(k);
		dest[i] = (uint8_t)lookup(v, d, now);
		sock[i] = (uint8_t)(flow_hash(d, k->len) % v->n_tx);
		start[sock[i] + 1] += dest[i] == VX_FLOOD ? v->n_remotes : 1;
	}
	for (unsigned s = 0; s < v->n_tx; s++)
		start[s + 1] += start[s];
	unsigned pos[VX_MAX_SRC_PORTS];
	memcpy(pos, start, sizeof(pos[0]) * v->n_tx);
	for (unsigned i = 0; i < n; i++) {
		if (sock[i] == VX_MAX_SRC_PORTS)
			continue;
		unsigned first = dest[i] == VX_FLOOD ? 0 : dest[i];
		unsigned last = dest[i] == VX_FLOOD ? v->n_remotes : first + 1u;
		for (unsigned r = first; r < last; r++) {
			unsigned m = pos[sock[i]]++;
			v->tx.msg[m].msg_hdr.msg_name = &v->remotes[r];
			v->tx.iov[m][1] = (struct iovec){vhd_pkt_data(pkts[i]), pkts[i]->len};
		}
	}
	for (unsigned s = 0; s < v->n_tx; s++) {
		unsigned u0 = start[s], u1 = group(v, start[s], start[s + 1]);
		/* Each round sends at least one unit or gives up on one: bounded by the burst. */
		for (unsigned done = u0; done < u1;) {
			int r = sendmmsg(v->tx_fd[s], &v->tx.unit[done], u1 - done, MSG_DONTWAIT);
			if (r > 0) {
				count(&v->tx_datagrams, units(v, done, done + (unsigned)r));
				count(&v->tx_sends, (unsigned)r);
				done += (unsigned)r;
			} else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
				count(&v->tx_full, units(v, done, u1)); /* no waiting for the kernel: the rest is dropped */
				break;
			} else {
				count(&v->tx_errors, v->tx.unit_n[done]); /* refused (no route, too big): skip it */
				done++;
			}
		}
	}
	vhd_pkt_free_bulk(pkts, n);
	return n;
}

static unsigned vx_rx_burst(struct sw_port *p, unsigned q, struct vhd_pktpool *pool, struct vhd_pkt **pkts,
			    unsigned n)
{
	struct vx_port *v = p->priv;
	if (!sw_gate_enter(&v->gate, &v->gate.rx[q].busy))
		return 0; /* the datagrams wait in the socket, for whichever process owns it next */
	unsigned got = rx_burst(v, pool, pkts, n);
	sw_gate_leave(&v->gate.rx[q].busy);
	return got;
}

static unsigned vx_tx_burst(struct sw_port *p, unsigned q, struct vhd_pkt **pkts, unsigned n)
{
	struct vx_port *v = p->priv;
	if (!sw_gate_enter(&v->gate, &v->gate.tx[q].busy))
		return 0; /* dropped and counted by the switch, as any frame a full socket refuses */
	unsigned sent = tx_burst(v, pkts, n);
	sw_gate_leave(&v->gate.tx[q].busy);
	return sent;
}

/* vhostctl upgrade, old side: pause, then hand over the sockets (still ours: this process exits after GO without
 * closing them, or resumes on failure) and the counters. */
static int vx_handover_export(struct sw_port *p, void *buf, size_t cap, size_t *len, int *fds, unsigned *nfds,
			      char *err, size_t errlen)
{
	struct vx_port *v = p->priv;
	struct vx_blob b = {.magic = VX_BLOB_MAGIC, .version = VX_BLOB_VERSION, .n_tx = v->n_tx};
	(void)err, (void)errlen;
	if (cap < sizeof(b) + VX_HANDOVER_VTEPS * sizeof(struct vx_vtep))
		return -E2BIG;
	sw_gate_close(&v->gate, 1);
	_Atomic uint64_t *f[VX_BLOB_COUNTERS];
	counter_fields(v, f);
	for (unsigned i = 0; i < VX_BLOB_COUNTERS; i++)
		b.counters[i] = atomic_load_explicit(f[i], memory_order_relaxed);
	/* The rx thread, the table's only writer, is held by the gate now. */
	uint32_t now = now_s();
	for (unsigned i = 0; i < VX_SETS * VX_WAYS && b.n_vteps < VX_HANDOVER_VTEPS; i++) {
		uint64_t w = atomic_load_explicit(&v->fdb[i], memory_order_acquire);
		uint32_t age = now - atomic_load_explicit(&v->seen[i], memory_order_relaxed);
		if (!(w & VX_VALID) || age > VX_AGE_S)
			continue;
		struct vx_vtep e = {w, i, age};
		memcpy((uint8_t *)buf + sizeof(b) + b.n_vteps++ * sizeof(e), &e, sizeof(e));
	}
	memcpy(buf, &b, sizeof(b));
	*len = sizeof(b) + b.n_vteps * sizeof(struct vx_vtep);
	fds[0] = v->rx_fd;
	memcpy(fds + 1, v->tx_fd, v->n_tx * sizeof(int));
	*nfds = 1 + v->n_tx;
	return 0;
}

static void vx_handover_resume(struct sw_port *p)
{
	sw_gate_open(&((struct vx_port *)p->priv)->gate);
}

const struct sw_port_ops sw_vxlan_ops = {
	.type = "vxlan",
	.create = vx_create,
	.destroy = vx_destroy,
	.pollfds = vx_pollfds,
	.timeout_ms = vx_timeout_ms,
	.dispatch = vx_dispatch,
	.link_up = vx_link_up,
	.describe = vx_describe,
	.counters = vx_counters,
	.rx_burst = vx_rx_burst,
	.rx_arm = vx_rx_arm,
	.rx_disarm = vx_rx_disarm,
	.tx_burst = vx_tx_burst,
	.handover_export = vx_handover_export,
	.handover_resume = vx_handover_resume,
};
