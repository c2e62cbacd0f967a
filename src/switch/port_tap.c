/* SPDX-License-Identifier: MIT */
/*
 * Tap ports: a Linux tap interface with IFF_VNET_HDR, one nonblocking fd per queue (IFF_MULTI_QUEUE when there
 * are several), so that the host's network stack is a peer on the switch. Offload metadata crosses in the
 * 12-byte little-endian virtio-net header both ways, unchanged: the kernel's partial checksums and unsegmented
 * TCP frames reach the switch as they are (offloads=on), and whatever offloads the switch hands us the kernel
 * completes or segments itself.
 *
 * addr=IP/PREFIX gives the interface its host-side address and brings it up whenever the port is added: a tap
 * vhostd created goes away with vhostd and comes back, at the next start, with its address. It comes back with
 * the same MAC address too (mac=, or one derived from /etc/machine-id and the name, as systemd's
 * MACAddressPolicy=persistent does): with the kernel's random one, guests that reconnect within milliseconds
 * never see a link change and keep sending to the old MAC from their ARP caches for minutes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "spec/virtio_net.h"
#include "switch/port.h"
#include "switch/switch.h"
#include "util/json.h"
#include "vhostd/net.h"

#define TAP_ETH_HLEN 14u

/* addr=IP/PREFIX */
struct tap_addr {
	int family; /* AF_INET or AF_INET6; 0: none asked for */
	uint8_t bytes[16];
	unsigned prefix;
	char text[INET6_ADDRSTRLEN + 4];
};

struct tap_port {
	int fds[SW_MAX_QUEUES]; /* queue q's fd serves both rx queue q and tx queue q */
	uint8_t mac[6];         /* set on the interface when set_mac */
	bool set_mac;
	unsigned queues;
	bool offloads;
	bool created; /* the interface did not exist before us (it goes away with the last fd unless persistent) */
	char ifname[IFNAMSIZ];
	int ifindex;
	int ctl_fd; /* a socket for the interface ioctls of the control thread */
	struct tap_addr addr;
	/* Frames lost by this port; written from any forwarding thread, read by describe. */
	_Alignas(64) _Atomic uint64_t rx_too_big; /* larger than the pool buffer (GSO frames in small pools) */
	_Atomic uint64_t rx_errors;               /* short reads, read errors */
	_Atomic uint64_t tx_errors;               /* frames the kernel refused (bad header, interface gone) */
	struct sw_gate gate; /* closed from handover_export until handover_resume */
};

/*
 * The handover blob (vhostctl upgrade), ours alone (both ends are vhostd, so not in src/spec), with one tap fd
 * per queue sent alongside. TAP_BLOB_VERSION changes whenever the layout or a field's meaning does.
 */
#define TAP_BLOB_MAGIC 0x3150415444484856ull /* "VHHDTAP1" */
#define TAP_BLOB_VERSION 1u
struct tap_blob {
	uint64_t magic;
	uint32_t version;
	uint32_t queues;
	int32_t ifindex;
	uint8_t offloads, created, set_mac, reserved;
	char ifname[IFNAMSIZ];
	uint8_t mac[6];
	uint8_t pad[2];
	uint64_t rx_too_big, rx_errors, tx_errors;
};
_Static_assert(sizeof(struct tap_blob) == 72 && IFNAMSIZ == 16 && offsetof(struct tap_blob, version) == 8,
	       "tap handover blob layout (magic and version where sw_import_blob() reads them)");
_Static_assert(sizeof(struct tap_blob) <= SW_HANDOVER_MAX && SW_MAX_QUEUES <= SW_HANDOVER_MAX_FDS,
	       "a tap's handover fits the switch's buffers");

static void count(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ------------------------------------------------------------------ arguments */

static int parse_addr(const char *v, struct tap_addr *a, char *err, size_t errlen)
{
	char ip[INET6_ADDRSTRLEN];
	const char *slash = strchr(v, '/');
	size_t n = slash ? (size_t)(slash - v) : 0;
	unsigned long prefix = 0;
	char *end = NULL;
	if (slash && n > 0 && n < sizeof(ip) && slash[1] >= '0' && slash[1] <= '9') {
		memcpy(ip, v, n);
		ip[n] = 0;
		a->family = strchr(ip, ':') ? AF_INET6 : AF_INET;
		errno = 0;
		prefix = strtoul(slash + 1, &end, 10);
	}
	if (!end || *end || errno || prefix > (a->family == AF_INET ? 32u : 128u) ||
	    inet_pton(a->family, ip, a->bytes) != 1) {
		a->family = 0;
		snprintf(err, errlen, "tap: addr=%s: want IPV4/PREFIX or IPV6/PREFIX, e.g. 10.0.0.1/24", v);
		return -EINVAL;
	}
	a->prefix = (unsigned)prefix;
	snprintf(a->text, sizeof(a->text), "%s/%u", ip, a->prefix);
	return 0;
}

/*
 * The MAC a tap we create gets when mac= is not given: a hash (FNV-1a, 64 bits) of the machine id, the network
 * namespace (its inode: the initial one's is a constant, another's stays while the namespace lives) and the name,
 * locally administered and unicast. So it is the same at every start in this namespace of this host, and taps
 * named alike on two hosts of one VXLAN segment, or in two namespaces of one host (containers, test hosts), do
 * not collide. false without a machine id: the kernel's random address stays.
 */
static bool stable_mac(const char *ifname, uint8_t mac[6])
{
	char id[64] = "";
	FILE *f = fopen("/etc/machine-id", "re");
	if (!f)
		return false;
	bool ok = fgets(id, sizeof(id), f) != NULL && strlen(id) >= 32;
	fclose(f);
	if (!ok)
		return false;
	struct stat ns;
	if (stat("/proc/self/ns/net", &ns) == 0)
		snprintf(id + strcspn(id, "\n"), sizeof(id) - strcspn(id, "\n"), "/%llu", (unsigned long long)ns.st_ino);
	uint64_t h = 0xcbf29ce484222325ull;
	for (const char *s = id; *s && *s != '\n'; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	h = (h ^ '/') * 0x100000001b3ull;
	for (const char *s = ifname; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	for (unsigned i = 0; i < 6; i++)
		mac[i] = (uint8_t)(h >> (8 * i));
	mac[0] = (uint8_t)((mac[0] & 0xfe) | 0x02);
	return true;
}

/* ------------------------------------------------------------------ control */

static int iface_ioctl(int fd, const char *ifname, unsigned long req, struct ifreq *ifr)
{
	memset(ifr, 0, sizeof(*ifr));
	snprintf(ifr->ifr_name, sizeof(ifr->ifr_name), "%s", ifname);
	return ioctl(fd, req, ifr) < 0 ? -errno : 0;
}

static void nl_attr(struct nlmsghdr *n, unsigned short type, const void *data, size_t len)
{
	struct rtattr *rta = (struct rtattr *)((char *)n + NLMSG_ALIGN(n->nlmsg_len));
	rta->rta_type = type;
	rta->rta_len = (unsigned short)RTA_LENGTH(len);
	memcpy(RTA_DATA(rta), data, len);
	n->nlmsg_len = NLMSG_ALIGN(n->nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

/*
 * Give the interface its address (RTM_NEWADDR with NLM_F_REPLACE: the same address already there is no error, so
 * adding the port again or restarting vhostd over a persistent tap is the same) and bring it up. The kernel
 * answers a route netlink request before sendmsg() returns; no peer is waited for.
 */
static int set_addr(struct tap_port *t, char *err, size_t errlen)
{
	const struct tap_addr *a = &t->addr;
	struct {
		struct nlmsghdr n;
		struct ifaddrmsg i;
		char attrs[2 * RTA_SPACE(16)];
	} req;
	memset(&req, 0, sizeof(req));
	req.n.nlmsg_len = NLMSG_LENGTH(sizeof(req.i));
	req.n.nlmsg_type = RTM_NEWADDR;
	req.n.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
	req.n.nlmsg_seq = 1;
	req.i.ifa_family = (unsigned char)a->family;
	req.i.ifa_prefixlen = (unsigned char)a->prefix;
	req.i.ifa_scope = RT_SCOPE_UNIVERSE;
	req.i.ifa_index = (unsigned)t->ifindex;
	size_t alen = a->family == AF_INET ? 4 : 16;
	nl_attr(&req.n, IFA_LOCAL, a->bytes, alen);
	nl_attr(&req.n, IFA_ADDRESS, a->bytes, alen);
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	int rc = fd < 0 ? -errno : 0;
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	if (!rc && sendto(fd, &req, req.n.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
		rc = -errno;
	if (!rc) {
		union {
			struct nlmsghdr n;
			char buf[1024];
		} ans;
		ssize_t got = recv(fd, &ans, sizeof(ans), MSG_DONTWAIT);
		if (got < 0)
			rc = -errno;
		else if ((size_t)got < NLMSG_LENGTH(sizeof(struct nlmsgerr)) || ans.n.nlmsg_type != NLMSG_ERROR)
			rc = -EPROTO;
		else
			rc = ((struct nlmsgerr *)NLMSG_DATA(&ans.n))->error;
	}
	if (fd >= 0)
		close(fd);
	if (rc < 0) {
		snprintf(err, errlen, "ifname=%s: addr=%s: %s", t->ifname, a->text, strerror(-rc));
		return rc;
	}
	struct ifreq ifr;
	if ((rc = iface_ioctl(t->ctl_fd, t->ifname, SIOCGIFFLAGS, &ifr)) == 0) {
		ifr.ifr_flags |= IFF_UP;
		rc = ioctl(t->ctl_fd, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
	}
	if (rc < 0)
		snprintf(err, errlen, "ifname=%s: bringing it up: %s", t->ifname, strerror(-rc));
	return rc;
}

/* Attach queue fd q to the interface; the first call also creates it if missing. */
static int open_queue(struct tap_port *t, unsigned q, char *err, size_t errlen)
{
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;
		snprintf(err, errlen, "ifname=%s: /dev/net/tun: %s", t->ifname, strerror(-rc));
		return rc;
	}
	t->fds[q] = fd;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (t->queues > 1 ? IFF_MULTI_QUEUE : 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", t->ifname);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int rc = -errno;
		if (rc == -EINVAL)
			snprintf(err, errlen, "ifname=%s: exists but is not a tap, or is not %s-queue", t->ifname,
				 t->queues > 1 ? "multi" : "single");
		else if (rc == -EBUSY)
			snprintf(err, errlen, "ifname=%s: tap already in use by another process", t->ifname);
		else
			snprintf(err, errlen, "ifname=%s: TUNSETIFF: %s", t->ifname, strerror(-rc));
		return rc;
	}
	/* A name pattern ("vt%d") comes back filled in; the other queues attach to that name. */
	snprintf(t->ifname, sizeof(t->ifname), "%s", ifr.ifr_name);
	if (q > 0)
		return 0;

	/* The header size, byte order and offloads belong to the interface, not the queue. The 12-byte header
	 * (num_buffers included, unused) is the one virtio 1.x and vhost-user peers use, so frames can be moved
	 * between ports without reshaping their headers. */
	int hs = (int)sizeof(struct virtio_net_hdr_mrg_rxbuf), le = 1;
	if (ioctl(fd, TUNSETVNETHDRSZ, &hs) < 0 || ioctl(fd, TUNSETVNETLE, &le) < 0) {
		int rc = -errno;
		snprintf(err, errlen, "ifname=%s: setting the vnet header: %s", t->ifname, strerror(-rc));
		return rc;
	}
	/* Without TUN_F_CSUM the kernel completes checksums and segments before handing frames over; set 0
	 * explicitly since a persistent tap keeps whatever its previous user asked for. */
	unsigned long off = t->offloads ? TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 : 0;
	if (ioctl(fd, TUNSETOFFLOAD, off) < 0) {
		int rc = -errno;
		snprintf(err, errlen, "ifname=%s: TUNSETOFFLOAD: %s", t->ifname, strerror(-rc));
		return rc;
	}
	return 0;
}

/*
 * vhostctl upgrade, new side: take the old process's queue fds (imp->fds, one per queue, ours from here) instead
 * of opening the tap, which would create another interface, or find the old one busy. The interface keeps its
 * MAC address, address, offloads and the frames in its queues: nothing of it is set again. Each fd must be a tap
 * queue of the interface the blob names, with the header this port reads and writes.
 */
static int tap_adopt(struct tap_port *t, struct sw_port_import *imp, char *err, size_t errlen)
{
	imp->taken = true;
	for (unsigned i = 0; i < imp->nfds && i < SW_MAX_QUEUES; i++)
		t->fds[i] = imp->fds[i];
	for (unsigned i = SW_MAX_QUEUES; i < imp->nfds; i++)
		close(imp->fds[i]);
	struct tap_blob b;
	int rc = sw_import_blob(imp, "tap", TAP_BLOB_MAGIC, TAP_BLOB_VERSION, &b, sizeof(b), err, errlen);
	if (rc < 0)
		return rc;
	if (b.queues != t->queues || imp->nfds != t->queues || !memchr(b.ifname, 0, sizeof(b.ifname))) {
		snprintf(err, errlen, "tap: taking over: %u queue(s) and %u fd(s) for queues=%u", b.queues, imp->nfds,
			 t->queues);
		return -EPROTO;
	}
	memcpy(t->ifname, b.ifname, sizeof(t->ifname));
	for (unsigned q = 0; q < t->queues; q++) {
		struct ifreq ifr;
		memset(&ifr, 0, sizeof(ifr));
		int hs = 0;
		if (ioctl(t->fds[q], TUNGETIFF, &ifr) < 0 || ioctl(t->fds[q], TUNGETVNETHDRSZ, &hs) < 0 ||
		    strncmp(ifr.ifr_name, t->ifname, IFNAMSIZ) || !(ifr.ifr_flags & IFF_TAP) ||
		    !(ifr.ifr_flags & IFF_VNET_HDR) || hs != (int)sizeof(struct virtio_net_hdr_mrg_rxbuf)) {
			snprintf(err, errlen, "tap: taking over: fd of queue %u is not a queue of tap %s", q, t->ifname);
			return -EPROTO;
		}
	}
	t->ifindex = b.ifindex;
	t->offloads = b.offloads;
	t->created = b.created;
	t->set_mac = b.set_mac;
	memcpy(t->mac, b.mac, 6);
	atomic_store_explicit(&t->rx_too_big, b.rx_too_big, memory_order_relaxed);
	atomic_store_explicit(&t->rx_errors, b.rx_errors, memory_order_relaxed);
	atomic_store_explicit(&t->tx_errors, b.tx_errors, memory_order_relaxed);
	return 0;
}

static void tap_free(struct tap_port *t)
{
	for (unsigned q = 0; q < SW_MAX_QUEUES; q++)
		if (t->fds[q] >= 0)
			close(t->fds[q]);
	if (t->ctl_fd >= 0)
		close(t->ctl_fd);
	free(t);
}

static int tap_create(struct sw_port *p, const struct sw_kv *args, unsigned nargs, char *err, size_t errlen)
{
	static const char *const known[] = {"ifname", "queues", "offloads", "addr", "mac", NULL};
	int rc = sw_kv_check(args, nargs, known, "tap", err, errlen);
	if (rc < 0)
		return rc;
	char ifname[IFNAMSIZ];
	if ((rc = sw_kv_required(args, nargs, "ifname", "the tap interface, created if missing", ifname,
				 sizeof(ifname), err, errlen)) < 0)
		return rc;
	unsigned queues;
	bool offloads;
	if ((rc = sw_kv_uint(args, nargs, "queues", 1, 1, SW_MAX_QUEUES, &queues, err, errlen)) < 0 ||
	    (rc = sw_kv_on_off(args, nargs, "offloads", true, &offloads, err, errlen)) < 0)
		return rc;
	struct tap_addr addr = {0};
	const char *addr_arg = sw_kv_get(args, nargs, "addr", NULL);
	if (addr_arg && (rc = parse_addr(addr_arg, &addr, err, errlen)) < 0)
		return rc;
	uint8_t mac[6];
	const char *mac_arg = sw_kv_get(args, nargs, "mac", NULL);
	if (mac_arg && (rc = sw_parse_mac("tap", mac_arg, mac, err, errlen)) < 0)
		return rc;

	struct tap_port *t = aligned_alloc(_Alignof(struct tap_port), sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	memset(t, 0, sizeof(*t));
	for (unsigned q = 0; q < SW_MAX_QUEUES; q++)
		t->fds[q] = -1;
	t->queues = queues;
	t->offloads = offloads;
	t->addr = addr;
	snprintf(t->ifname, sizeof(t->ifname), "%s", ifname);
	/* Only informative (describe): a race with someone else creating it changes nothing we do. */
	t->created = strchr(ifname, '%') || if_nametoindex(ifname) == 0;
	t->ctl_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (t->ctl_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "socket: %s", strerror(-rc));
		goto fail;
	}
	struct ifreq ifr;
	if (p->import) {
		if ((rc = tap_adopt(t, p->import, err, errlen)) < 0)
			goto fail;
		goto adopted;
	}
	for (unsigned q = 0; q < queues; q++)
		if ((rc = open_queue(t, q, err, errlen)) < 0)
			goto fail;

	if ((rc = iface_ioctl(t->ctl_fd, t->ifname, SIOCGIFINDEX, &ifr)) < 0) {
		snprintf(err, errlen, "ifname=%s: SIOCGIFINDEX: %s", t->ifname, strerror(-rc));
		goto fail;
	}
	t->ifindex = ifr.ifr_ifindex;
	if (mac_arg)
		memcpy(t->mac, mac, 6);
	t->set_mac = mac_arg || (t->created && stable_mac(t->ifname, t->mac));
	if (t->set_mac) {
		iface_ioctl(t->ctl_fd, t->ifname, SIOCGIFHWADDR, &ifr);
		memcpy(ifr.ifr_hwaddr.sa_data, t->mac, 6);
		ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
		if (ioctl(t->ctl_fd, SIOCSIFHWADDR, &ifr) < 0) {
			rc = -errno;
			snprintf(err, errlen, "ifname=%s: setting its MAC address: %s", t->ifname, strerror(-rc));
			goto fail;
		}
	}
adopted:
	if (p->mtu == 0) {
		if ((rc = iface_ioctl(t->ctl_fd, t->ifname, SIOCGIFMTU, &ifr)) < 0) {
			snprintf(err, errlen, "ifname=%s: SIOCGIFMTU: %s", t->ifname, strerror(-rc));
			goto fail;
		}
		p->mtu = (uint32_t)ifr.ifr_mtu;
	}
	if (!p->import && t->addr.family && (rc = set_addr(t, err, errlen)) < 0)
		goto fail;
	/* Published with p by the switch; an adopted tap is held until handover_resume. */
	atomic_store_explicit(&t->gate.open, !p->import, memory_order_relaxed);

	p->n_rxq = p->n_txq = queues;
	/* What TUNSETOFFLOAD allows the kernel to hand us (no TSO_ECN: it segments those itself). */
	memset(&p->rx_off, 0, sizeof(p->rx_off));
	if (offloads) {
		p->rx_off.csum = true;
		p->rx_off.gso = 1u << VHD_NET_META_GSO_TCPV4 | 1u << VHD_NET_META_GSO_TCPV6;
	}
	/* A tap takes every offload the header can express whatever TUNSETOFFLOAD says (that only governs the other
	 * direction): the kernel completes or segments as the frame's destination needs. */
	p->tx_off.csum = true;
	p->tx_off.ecn = true;
	p->tx_off.gso = 1u << VHD_NET_META_GSO_TCPV4 | 1u << VHD_NET_META_GSO_TCPV6 | 1u << VHD_NET_META_GSO_UDP |
			1u << VHD_NET_META_GSO_UDP_L4;
	p->priv = t;
	return 0;
fail:
	tap_free(t);
	return rc;
}

static void tap_destroy(struct sw_port *p)
{
	/* Closing is all: a tap we created goes with its last fd, a persistent one stays, as it should. */
	tap_free(p->priv);
	p->priv = NULL;
}

static unsigned tap_pollfds(struct sw_port *p, struct pollfd *fds, unsigned max)
{
	(void)p;
	(void)fds;
	(void)max;
	return 0;
}

static int tap_timeout_ms(struct sw_port *p)
{
	(void)p;
	return -1;
}

static void tap_dispatch(struct sw_port *p)
{
	(void)p;
}

static bool tap_link_up(struct sw_port *p)
{
	struct tap_port *t = p->priv;
	struct ifreq ifr;
	/* By index: the interface may have been renamed since. */
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_ifindex = t->ifindex;
	if (ioctl(t->ctl_fd, SIOCGIFNAME, &ifr) < 0)
		return false;
	if (ioctl(t->ctl_fd, SIOCGIFFLAGS, &ifr) < 0)
		return false;
	return (ifr.ifr_flags & IFF_UP) != 0;
}

static void tap_describe(struct sw_port *p, struct sw_json *w)
{
	struct tap_port *t = p->priv;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_ifindex = t->ifindex;
	bool have_name = ioctl(t->ctl_fd, SIOCGIFNAME, &ifr) == 0;
	sw_json_str(w, "ifname", have_name ? ifr.ifr_name : t->ifname);
	sw_json_u64(w, "queues", t->queues);
	sw_json_bool(w, "offloads", t->offloads);
	sw_json_bool(w, "created", t->created);
	if (t->set_mac)
		sw_json_strf(w, "mac", "%02x:%02x:%02x:%02x:%02x:%02x", t->mac[0], t->mac[1], t->mac[2], t->mac[3],
			     t->mac[4], t->mac[5]);
	if (t->addr.family)
		sw_json_str(w, "addr", t->addr.text);
	sw_json_u64(w, "rx_too_big", atomic_load_explicit(&t->rx_too_big, memory_order_relaxed));
	sw_json_u64(w, "rx_errors", atomic_load_explicit(&t->rx_errors, memory_order_relaxed));
	sw_json_u64(w, "tx_errors", atomic_load_explicit(&t->tx_errors, memory_order_relaxed));
}

/* ------------------------------------------------------------------ data path */

static int tap_rx_arm(struct sw_port *p, unsigned q, struct pollfd *pfd)
{
	return sw_fd_arm(((struct tap_port *)p->priv)->fds[q], pfd);
}

static unsigned tap_rx_burst(struct sw_port *p, unsigned q, struct vhd_pktpool *pool, struct vhd_pkt **pkts,
			     unsigned n)
{
	struct tap_port *t = p->priv;
	if (!sw_gate_enter(&t->gate, &t->gate.rx[q].busy))
		return 0; /* the frames wait in the tap's queue, for whichever process owns it next */
	int fd = t->fds[q];
	struct vhd_pkt *spare = NULL; /* allocated, not yet filled */
	unsigned got = 0;
	/* Every read counts against n, dropped frames included, so that one call does bounded work. */
	for (unsigned reads = 0; reads < n; reads++) {
		if (!spare && vhd_pkt_alloc_bulk(pool, &spare, 1) != 1)
			break; /* pool dry: the frames wait in the tap's queue */
		struct virtio_net_hdr_mrg_rxbuf h;
		uint8_t spill; /* a byte past the buffer: reaching it means the frame did not fit */
		uint32_t room = vhd_pkt_tailroom(spare);
		struct iovec iov[3] = {{&h, sizeof(h)}, {vhd_pkt_data(spare), room}, {&spill, 1}};
		ssize_t r = readv(fd, iov, 3);
		if (r < 0) {
			if (errno != EAGAIN && errno != EINTR)
				count(&t->rx_errors);
			break;
		}
		if ((size_t)r < sizeof(h) + TAP_ETH_HLEN) {
			count(&t->rx_errors);
			continue;
		}
		/* The kernel silently cuts what does not fit, hence the spill byte. */
		size_t len = (size_t)r - sizeof(h);
		if (len > room) {
			count(&t->rx_too_big);
			continue;
		}
		spare->len = (uint32_t)len;
		vhd_net_hdr_to_meta(&h.hdr, VHD_NET_META_F_NEEDS_CSUM | VHD_NET_META_F_DATA_VALID, &spare->meta);
		pkts[got++] = spare;
		spare = NULL;
	}
	vhd_pkt_free(spare);
	sw_gate_leave(&t->gate.rx[q].busy);
	return got;
}

static unsigned tap_tx_burst(struct sw_port *p, unsigned q, struct vhd_pkt **pkts, unsigned n)
{
	struct tap_port *t = p->priv;
	if (!sw_gate_enter(&t->gate, &t->gate.tx[q].busy))
		return 0; /* dropped and counted by the switch, as any frame a full queue refuses */
	int fd = t->fds[q];
	unsigned i;
	for (i = 0; i < n; i++) {
		const struct vhd_pkt *k = pkts[i];
		uint8_t h[VHD_NET_HDR_SIZE];
		vhd_net_meta_to_hdr(&k->meta, h);
		struct iovec iov[2] = {{h, sizeof(h)}, {vhd_pkt_data(k), k->len}};
		if (writev(fd, iov, 2) < 0) {
			if (errno == EAGAIN || errno == ENOBUFS || errno == EINTR)
				break; /* full: the rest stay with the caller */
			count(&t->tx_errors); /* refused: consumed all the same, or it would come back forever */
		}
	}
	vhd_pkt_free_bulk(pkts, i);
	sw_gate_leave(&t->gate.tx[q].busy);
	return i;
}

/* vhostctl upgrade, old side: pause, then hand over the queue fds (still ours: this process exits after GO
 * without closing them, or resumes on failure) and what create cannot learn again from the interface. */
static int tap_handover_export(struct sw_port *p, void *buf, size_t cap, size_t *len, int *fds, unsigned *nfds,
			       char *err, size_t errlen)
{
	struct tap_port *t = p->priv;
	struct tap_blob b = {
		.magic = TAP_BLOB_MAGIC,
		.version = TAP_BLOB_VERSION,
		.queues = t->queues,
		.ifindex = t->ifindex,
		.offloads = t->offloads,
		.created = t->created,
		.set_mac = t->set_mac,
	};
	(void)err, (void)errlen;
	if (cap < sizeof(b))
		return -E2BIG;
	sw_gate_close(&t->gate, t->queues);
	memcpy(b.ifname, t->ifname, sizeof(b.ifname));
	memcpy(b.mac, t->mac, 6);
	b.rx_too_big = atomic_load_explicit(&t->rx_too_big, memory_order_relaxed);
	b.rx_errors = atomic_load_explicit(&t->rx_errors, memory_order_relaxed);
	b.tx_errors = atomic_load_explicit(&t->tx_errors, memory_order_relaxed);
	memcpy(buf, &b, sizeof(b));
	*len = sizeof(b);
	for (unsigned q = 0; q < t->queues; q++)
		fds[q] = t->fds[q];
	*nfds = t->queues;
	return 0;
}

static void tap_handover_resume(struct sw_port *p)
{
	sw_gate_open(&((struct tap_port *)p->priv)->gate);
}

const struct sw_port_ops sw_tap_ops = {
	.type = "tap",
	.create = tap_create,
	.destroy = tap_destroy,
	.pollfds = tap_pollfds,
	.timeout_ms = tap_timeout_ms,
	.dispatch = tap_dispatch,
	.link_up = tap_link_up,
	.describe = tap_describe,
	.rx_burst = tap_rx_burst,
	.rx_arm = tap_rx_arm,
	.rx_disarm = sw_fd_disarm,
	.tx_burst = tap_tx_burst,
	.handover_export = tap_handover_export,
	.handover_resume = tap_handover_resume,
};
