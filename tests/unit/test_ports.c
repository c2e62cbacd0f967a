/* SPDX-License-Identifier: MIT */
/*
 * The tap, af_packet and af_xdp switch ports, driven through their ops tables alone (no switch core), against the
 * kernel's own network stack. Every case runs in a fresh network namespace (unshare(CLONE_NEWNET) in the forked
 * case, so root is needed; without it the cases are skipped), configured with `ip`.
 *
 * tap: frames the kernel sends out of the tap arrive byte for byte as the kernel built them (a packet socket on
 * the same interface sees the same bytes), with or without checksum offload; frames we transmit reach kernel
 * sockets; partial checksums and TSO frames we hand over are completed / segmented by the kernel (seen by
 * routing them out of a second tap); multi-queue; interfaces created vs pre-existing; argument errors.
 * af_packet: a veth pair, the port on one end and raw packet sockets (or the stack) on the other: frames both
 * ways byte-exact (VLAN tags included), 1000 frames of random sizes in order both ways, our own transmissions
 * and the host's outgoing frames never received, partial checksums from the peer's stack, fds/mappings/promisc
 * released on destroy.
 * af_xdp: the same veth rig: argument, permission and missing-program errors word for word, frames both ways
 * byte-exact in native and generic mode (mode shown by describe), the fallback to generic on a bridge (no native
 * XDP) with its log line, 1000 frames each way through 64-frame rings, what a veth peer's checksum offload does to
 * its frames, and no XDP program (ip link), fd or deferred-busy queue left after destroy.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/ethtool.h>
#include <linux/if_ether.h>
#include <linux/sockios.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/un.h>
#include <time.h>

#include "util/json.h"
#include "harness.h"
#include "switch/port.h"
#include "vhostd/log.h"
#include "vhostd/pkt.h"
#include "vhostd/vhost_user.h"
#include "vu_raw.h"

#define BUF 2048u
#define BIG_BUF 16384u

/* ================================================================ rig ================================================================ */

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int rc = system(cmd);
	if (rc != 0) {
		fprintf(stderr, "command failed (status %d): %s\n", rc, cmd);
		fflush(stderr);
		_exit(1);
	}
}

static void write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return; /* e.g. no IPv6 in this kernel: nothing to quieten */
	CHECK(write(fd, val, strlen(val)) == (ssize_t)strlen(val));
	close(fd);
}

/* A namespace of our own: the host's interfaces are untouched, and whatever we create vanishes with the case. */
static void enter_netns(void)
{
	if (unshare(CLONE_NEWNET) < 0)
		th_skip("unshare(CLONE_NEWNET): %s (needs root)", strerror(errno));
	if (system("ip link set lo up >/dev/null 2>&1") != 0)
		th_skip("no working `ip` (iproute2)");
	/* No IPv6 router solicitations or MLD reports: the only frames are the ones a case sends. */
	write_file("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
	write_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
}

/* Create p of type ops from "k=v k=v ..."; p->mtu as given (0: the port picks). */
static int mkport(struct sw_port *p, const struct sw_port_ops *ops, uint32_t mtu, const char *args, char *err,
		  size_t errlen)
{
	static char buf[512];
	struct sw_kv kv[SW_MAX_ARGS];
	unsigned n = 0;
	memset(p, 0, sizeof(*p));
	p->ops = ops;
	snprintf(p->name, sizeof(p->name), "test");
	p->mtu = mtu;
	snprintf(buf, sizeof(buf), "%s", args);
	for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		CHECK(n < SW_MAX_ARGS);
		char *eq = strchr(tok, '=');
		kv[n].key = tok;
		kv[n].value = "";
		if (eq) {
			*eq = 0;
			kv[n].value = eq + 1;
		}
		n++;
	}
	err[0] = 0;
	int rc = ops->create(p, kv, n, err, errlen);
	if (rc == 0) {
		CHECK(p->priv != NULL);
		CHECK(p->n_rxq >= 1 && p->n_txq >= 1);
	} else {
		CHECK(err[0] != 0); /* a failure always says why */
	}
	return rc;
}

static struct sw_json_val *describe(struct sw_port *p)
{
	struct sw_json w;
	sw_json_init(&w);
	sw_json_obj_begin(&w, NULL);
	p->ops->describe(p, &w);
	sw_json_obj_end(&w);
	const char *text = sw_json_finish(&w);
	CHECK(text != NULL);
	struct sw_json_val *v = NULL;
	char err[256];
	if (sw_json_parse(text, strlen(text), &v, err, sizeof(err)) != 0) {
		fprintf(stderr, "describe gave bad JSON (%s): %s\n", err, text);
		CHECK(!"valid JSON");
	}
	sw_json_free(&w);
	return v;
}

static double desc_num(struct sw_port *p, const char *key)
{
	struct sw_json_val *v = describe(p);
	const struct sw_json_val *m = sw_json_get(v, key);
	if (!m || m->type != SW_JSON_NUM) {
		fprintf(stderr, "describe: no number '%s'\n", key);
		CHECK(!"member present");
	}
	double d = m->num;
	sw_json_val_free(v);
	return d;
}

static bool desc_bool(struct sw_port *p, const char *key)
{
	struct sw_json_val *v = describe(p);
	const struct sw_json_val *m = sw_json_get(v, key);
	CHECK(m && m->type == SW_JSON_BOOL);
	bool b = m->b;
	sw_json_val_free(v);
	return b;
}

static void desc_str(struct sw_port *p, const char *key, char *out, size_t len)
{
	struct sw_json_val *v = describe(p);
	const struct sw_json_val *m = sw_json_get(v, key);
	CHECK(m && m->type == SW_JSON_STR);
	snprintf(out, len, "%s", m->str);
	sw_json_val_free(v);
}

static struct vhd_pktpool *mkpool(unsigned count, uint32_t buf)
{
	struct vhd_pktpool *pool;
	CHECK_EQ(vhd_pktpool_create(count, buf, &pool), 0);
	return pool;
}

static struct vhd_pkt *mkpkt(struct vhd_pktpool *pool, const uint8_t *f, size_t len)
{
	struct vhd_pkt *k;
	CHECK_EQ(vhd_pkt_alloc_bulk(pool, &k, 1), 1);
	CHECK(len <= vhd_pkt_tailroom(k));
	memcpy(vhd_pkt_data(k), f, len);
	k->len = (uint32_t)len;
	return k;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Collect up to want frames from any rx queue of p within timeout_ms (returns how many). */
static unsigned rx_wait(struct sw_port *p, struct vhd_pktpool *pool, struct vhd_pkt **out, unsigned want,
			unsigned timeout_ms)
{
	unsigned got = 0;
	uint64_t end = now_ms() + timeout_ms;
	while (got < want) {
		for (unsigned q = 0; q < p->n_rxq && got < want; q++) {
			unsigned n = want - got < 32 ? want - got : 32;
			got += p->ops->rx_burst(p, q, pool, out + got, n);
		}
		if (got >= want || now_ms() > end)
			break;
		usleep(200);
	}
	return got;
}

/* Nothing at all arrives at p within ms. */
static void rx_none(struct sw_port *p, struct vhd_pktpool *pool, unsigned ms)
{
	struct vhd_pkt *k;
	unsigned n = rx_wait(p, pool, &k, 1, ms);
	if (n) {
		fprintf(stderr, "unexpected frame of %u bytes, ethertype %02x%02x\n", k->len, vhd_pkt_data(k)[12],
			vhd_pkt_data(k)[13]);
		CHECK_EQ(n, 0);
	}
}

/* Mappings of sockets (packet rings) in this process; unlike th_count_maps() not moved by the sanitizers. */
static int socket_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	CHECK(f != NULL);
	char line[512];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, "socket:[") != NULL;
	fclose(f);
	return n;
}

static void get_mac(const char *ifname, uint8_t mac[6])
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	CHECK_EQ(ioctl(fd, SIOCGIFHWADDR, &ifr), 0);
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	close(fd);
}

/* The promiscuity count (packet socket memberships do not show in SIOCGIFFLAGS). */
static int promiscuity(const char *ifname)
{
	char cmd[128], line[1024];
	snprintf(cmd, sizeof(cmd), "ip -d link show dev %s", ifname);
	FILE *f = popen(cmd, "r");
	CHECK(f != NULL);
	int n = -1;
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, "promiscuity ");
		if (p)
			n = atoi(p + strlen("promiscuity "));
	}
	CHECK_EQ(pclose(f), 0);
	CHECK(n >= 0);
	return n;
}

/* ---------------------------------------------------------------- kernel sockets */

static int udp_bound(const char *ip, uint16_t port)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	CHECK_EQ(inet_pton(AF_INET, ip, &a.sin_addr), 1);
	CHECK_EQ(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static void udp_send(int fd, const char *ip, uint16_t port, const void *d, size_t len)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	CHECK_EQ(inet_pton(AF_INET, ip, &a.sin_addr), 1);
	CHECK_EQ(sendto(fd, d, len, 0, (struct sockaddr *)&a, sizeof(a)), (ssize_t)len);
}

/* One datagram within ms, or -1. */
static ssize_t udp_recv(int fd, void *buf, size_t len, struct sockaddr_in *from, int ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	if (poll(&pfd, 1, ms) != 1)
		return -1;
	socklen_t sl = sizeof(*from);
	return recvfrom(fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)from, &sl);
}

/* A raw packet socket on ifname that sees frames coming in (not its own, not the host's outgoing ones). */
static int raw_socket(const char *ifname)
{
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	CHECK(fd >= 0);
	int one = 1, big = 32 << 20;
	CHECK_EQ(setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)), 0);
	CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)), 0);
	CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)), 0);
	struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL)};
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	CHECK(sll.sll_ifindex > 0);
	CHECK_EQ(bind(fd, (struct sockaddr *)&sll, sizeof(sll)), 0);
	return fd;
}

/* A packet socket that sees only what the host sends out of ifname (to compare with what the tap hands us). */
static int capture_outgoing(const char *ifname)
{
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	CHECK(fd >= 0);
	struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL)};
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	CHECK(sll.sll_ifindex > 0);
	CHECK_EQ(bind(fd, (struct sockaddr *)&sll, sizeof(sll)), 0);
	return fd;
}

/* Next frame on a packet socket within ms (-1: none); *pkttype gets sll_pkttype. */
static ssize_t raw_recv(int fd, uint8_t *buf, size_t len, int ms, int *pkttype)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	if (poll(&pfd, 1, ms) != 1)
		return -1;
	struct sockaddr_ll sll;
	socklen_t sl = sizeof(sll);
	ssize_t r = recvfrom(fd, buf, len, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&sll, &sl);
	if (pkttype)
		*pkttype = sll.sll_pkttype;
	return r;
}

static void raw_send(int fd, const uint8_t *f, size_t len)
{
	for (;;) {
		ssize_t r = send(fd, f, len, 0);
		if (r == (ssize_t)len)
			return;
		CHECK(r < 0 && (errno == ENOBUFS || errno == EAGAIN));
		usleep(100);
	}
}

/* ---------------------------------------------------------------- frames */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t sum16(uint32_t s, const uint8_t *d, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(d[i] << 8 | d[i + 1]);
	if (n & 1)
		s += (uint32_t)d[n - 1] << 8;
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

static uint32_t pseudo4(const uint8_t *ip, uint8_t proto, uint16_t l4len)
{
	return sum16(0, ip + 12, 8) + proto + l4len;
}

static bool ip_csum_ok(const uint8_t *f)
{
	return fold(sum16(0, f + 14, 20)) == 0xffff;
}

/* The TCP or UDP checksum of an IPv4 frame (no options) is right. */
static bool l4_csum_ok(const uint8_t *f, size_t len)
{
	const uint8_t *ip = f + 14;
	uint16_t l4len = (uint16_t)(get16(ip + 2) - 20);
	CHECK(14u + 20u + l4len <= len);
	return fold(sum16(pseudo4(ip, ip[9], l4len), ip + 20, l4len)) == 0xffff;
}

/* What a device does for NEEDS_CSUM: sum from start to the end, store at start + off. */
static void complete_csum(uint8_t *f, size_t len, uint16_t start, uint16_t off)
{
	uint16_t c = (uint16_t)~fold(sum16(0, f + start, len - start));
	put16(f + start + off, c);
}

struct addrs {
	uint8_t dmac[6], smac[6];
	const char *sip, *dip;
	uint16_t sport, dport;
};

static size_t build_ip(uint8_t *f, const struct addrs *a, uint8_t proto, size_t l4len)
{
	memcpy(f, a->dmac, 6);
	memcpy(f + 6, a->smac, 6);
	put16(f + 12, 0x0800);
	uint8_t *ip = f + 14;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(20 + l4len));
	put16(ip + 4, 0x1234);
	put16(ip + 6, 0x4000);
	ip[8] = 64;
	ip[9] = proto;
	CHECK_EQ(inet_pton(AF_INET, a->sip, ip + 12), 1);
	CHECK_EQ(inet_pton(AF_INET, a->dip, ip + 16), 1);
	put16(ip + 10, (uint16_t)~fold(sum16(0, ip, 20)));
	return 34;
}

/* UDP over IPv4; partial: the checksum field holds only the pseudo-header sum, as with NEEDS_CSUM. */
static size_t build_udp(uint8_t *f, const struct addrs *a, const void *pl, size_t plen, bool partial)
{
	size_t o = build_ip(f, a, 17, 8 + plen);
	uint8_t *u = f + o;
	put16(u, a->sport);
	put16(u + 2, a->dport);
	put16(u + 4, (uint16_t)(8 + plen));
	put16(u + 6, 0);
	memcpy(u + 8, pl, plen);
	uint32_t ps = pseudo4(f + 14, 17, (uint16_t)(8 + plen));
	if (partial) {
		put16(u + 6, fold(ps));
	} else {
		uint16_t c = (uint16_t)~fold(sum16(ps, u, 8 + plen));
		put16(u + 6, c ? c : 0xffff);
	}
	return o + 8 + plen;
}

static size_t build_tcp(uint8_t *f, const struct addrs *a, uint32_t seq, const void *pl, size_t plen, bool partial)
{
	size_t o = build_ip(f, a, 6, 20 + plen);
	uint8_t *t = f + o;
	memset(t, 0, 20);
	put16(t, a->sport);
	put16(t + 2, a->dport);
	put16(t + 4, (uint16_t)(seq >> 16));
	put16(t + 6, (uint16_t)seq);
	put16(t + 8, 0);
	put16(t + 10, 1);
	t[12] = 5 << 4;
	t[13] = 0x18; /* ACK PSH */
	put16(t + 14, 65535);
	memcpy(t + 20, pl, plen);
	uint32_t ps = pseudo4(f + 14, 6, (uint16_t)(20 + plen));
	put16(t + 16, partial ? fold(ps) : (uint16_t)~fold(sum16(ps, t, 20 + plen)));
	return o + 20 + plen;
}

static void fill_random(uint8_t *d, size_t n, unsigned *seed)
{
	for (size_t i = 0; i < n; i++)
		d[i] = (uint8_t)rand_r(seed);
}

static void check_bytes(const uint8_t *got, size_t got_len, const uint8_t *want, size_t want_len, const char *what)
{
	if (got_len != want_len || memcmp(got, want, want_len) != 0) {
		size_t i = 0;
		while (i < got_len && i < want_len && got[i] == want[i])
			i++;
		fprintf(stderr, "%s: %zu bytes where %zu expected, first difference at byte %zu\n", what, got_len,
			want_len, i);
		CHECK(!"frames identical");
	}
}

/* ================================================================ tap ================================================================ */

static const uint8_t PEER_MAC[6] = {0x02, 0, 0, 0, 0, 0x02};

/* vt0 up as 10.0.0.1/24 with 10.0.0.2 a permanent neighbour at PEER_MAC, so the kernel sends to it at once. */
static void tap_addr(const char *ifname, const char *net)
{
	sh("ip link set %s up && ip addr add %s.1/24 dev %s && ip neigh add %s.2 lladdr 02:00:00:00:00:02 dev %s "
	   "nud permanent",
	   ifname, net, ifname, net, ifname);
}

static void test_tap_args(void)
{
	enter_netns();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "ifname"));
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "queues=2", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "ifname"));
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "ifname"));
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=a23456789012345678", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "ifname"));
	const char *bad_queues[] = {"0", "17", "x", "-1", "2x", "", "99999999999999999999"};
	for (unsigned i = 0; i < sizeof(bad_queues) / sizeof(bad_queues[0]); i++) {
		char a[64];
		snprintf(a, sizeof(a), "ifname=vt0 queues=%s", bad_queues[i]);
		CHECK_EQ(mkport(&p, &sw_tap_ops, 0, a, err, sizeof(err)), -EINVAL);
		if (!strstr(err, "queues")) {
			fprintf(stderr, "queues=%s: %s\n", bad_queues[i], err);
			CHECK(strstr(err, "queues"));
		}
	}
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=vt0 offloads=maybe", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "offloads"));
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=vt0 colour=blue", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "colour"));
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=vt0 queues=1 queues=2", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "queues"));
	/* None of those left an interface behind. */
	CHECK_EQ(if_nametoindex("vt0"), 0);
	/* An existing interface that is no tap. */
	sh("ip link add vt0 type veth peer name vt0p");
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=vt0", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "vt0"));
	/* The limits themselves are fine. */
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=vt1 queues=16", err, sizeof(err)), 0);
	CHECK_EQ(p.n_rxq, 16);
	CHECK_EQ(p.n_txq, 16);
	p.ops->destroy(&p);
}

/* The kernel sends a UDP datagram to the neighbour: the port hands over the frame the kernel built. */
static void tap_rx_case(bool offloads)
{
	enter_netns();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, offloads ? "ifname=vt0" : "ifname=vt0 offloads=off", err, sizeof(err)), 0);
	CHECK_EQ(p.n_rxq, 1);
	CHECK_EQ(p.n_txq, 1);
	CHECK_EQ(p.mtu, 1500);
	CHECK_EQ(p.rx_off.csum, offloads);
	CHECK(p.tx_off.csum);
	CHECK(!p.ops->link_up(&p));
	tap_addr("vt0", "10.0.0");
	CHECK(p.ops->link_up(&p));
	struct vhd_pktpool *pool = mkpool(64, BUF);
	rx_none(&p, pool, 50);

	int cap = capture_outgoing("vt0");
	int s = udp_bound("10.0.0.1", 4000);
	uint8_t payload[300];
	unsigned seed = 1;
	fill_random(payload, sizeof(payload), &seed);
	udp_send(s, "10.0.0.2", 5000, payload, sizeof(payload));

	struct vhd_pkt *k;
	CHECK_EQ(rx_wait(&p, pool, &k, 1, 2000), 1);
	uint8_t *f = vhd_pkt_data(k);
	uint8_t mac[6];
	get_mac("vt0", mac);
	CHECK_EQ(k->len, 14 + 20 + 8 + sizeof(payload));
	CHECK(memcmp(f, PEER_MAC, 6) == 0);
	CHECK(memcmp(f + 6, mac, 6) == 0);
	CHECK_EQ(get16(f + 12), 0x0800);
	CHECK_EQ(f[14 + 9], 17);
	CHECK_EQ(get32(f + 26), 0x0a000001);
	CHECK_EQ(get32(f + 30), 0x0a000002);
	CHECK_EQ(get16(f + 34), 4000);
	CHECK_EQ(get16(f + 36), 5000);
	CHECK(memcmp(f + 42, payload, sizeof(payload)) == 0);
	CHECK(ip_csum_ok(f));

	/* Byte for byte what the stack put on the wire (partial checksum included when offloaded). */
	uint8_t want[2048];
	int pkttype;
	ssize_t r = raw_recv(cap, want, sizeof(want), 1000, &pkttype);
	CHECK(r > 0);
	CHECK_EQ(pkttype, PACKET_OUTGOING);
	check_bytes(f, k->len, want, (size_t)r, "tap rx");

	CHECK_EQ(k->meta.gso_type, VHD_NET_META_GSO_NONE);
	if (offloads) {
		/* The kernel left the UDP checksum to us, and says where it goes. */
		CHECK(k->meta.flags & VHD_NET_META_F_NEEDS_CSUM);
		CHECK_EQ(k->meta.csum_start, 34);
		CHECK_EQ(k->meta.csum_offset, 6);
		CHECK(!l4_csum_ok(f, k->len));
		complete_csum(f, k->len, k->meta.csum_start, k->meta.csum_offset);
	} else {
		CHECK(!(k->meta.flags & VHD_NET_META_F_NEEDS_CSUM));
		CHECK_EQ(k->meta.csum_start, 0);
	}
	CHECK(l4_csum_ok(f, k->len));
	vhd_pkt_free(k);
	rx_none(&p, pool, 50);
	CHECK_EQ(desc_num(&p, "rx_errors"), 0);
	CHECK_EQ(desc_num(&p, "rx_too_big"), 0);
	p.ops->destroy(&p);
	CHECK_EQ(vhd_pktpool_avail(pool), 64);
	vhd_pktpool_destroy(pool);
	close(cap);
	close(s);
}

/* The interface's MAC address as text. */
static void iface_mac(const char *ifname, char out[18])
{
	uint8_t m[6];
	get_mac(ifname, m);
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

/* mac= sets the tap's address; without it a tap vhostd creates gets the same address at every creation (a
 * restarted vhostd must not change the MAC guests have cached), locally administered and unicast; a tap that
 * existed keeps its own. */
static void test_tap_mac(void)
{
	enter_netns();
	struct sw_port p;
	char err[256], a[18], b[18], s[32];
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=vt0 mac=01:00:5e:00:00:01", err, sizeof(err)), -EINVAL);
	CHECK(!strcmp(err, "tap: mac=01:00:5e:00:00:01: a multicast or all-zero address cannot be an interface's"));
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=vt0 mac=00:00:00:00:00:00", err, sizeof(err)), -EINVAL);
	CHECK(!strcmp(err, "tap: mac=00:00:00:00:00:00: a multicast or all-zero address cannot be an interface's"));
	const char *bad[] = {"02:00:00:00:00", "02:00:00:00:00:01:03", "02:00:00:00:00:0g", "2:0:0:0:0:1x", ""};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char arg[64], want[96];
		snprintf(arg, sizeof(arg), "ifname=vt0 mac=%s", bad[i]);
		snprintf(want, sizeof(want), "tap: mac=%s: want six hex bytes, e.g. 02:00:00:00:00:01", bad[i]);
		CHECK_EQ(mkport(&p, &sw_tap_ops, 0, arg, err, sizeof(err)), -EINVAL);
		CHECK(!strcmp(err, want));
	}
	CHECK_EQ(if_nametoindex("vt0"), 0);

	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=vt0 mac=02:11:22:33:44:55", err, sizeof(err)), 0);
	iface_mac("vt0", a);
	CHECK(!strcmp(a, "02:11:22:33:44:55"));
	desc_str(&p, "mac", s, sizeof(s));
	CHECK(!strcmp(s, "02:11:22:33:44:55"));
	p.ops->destroy(&p);

	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=vt1", err, sizeof(err)), 0);
	iface_mac("vt1", a);
	p.ops->destroy(&p);
	CHECK_EQ(if_nametoindex("vt1"), 0);
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=vt1", err, sizeof(err)), 0);
	iface_mac("vt1", b);
	CHECK(!strcmp(a, b));
	unsigned first = (unsigned)strtoul(a, NULL, 16);
	CHECK_EQ(first & 3, 2u); /* locally administered, unicast */
	p.ops->destroy(&p);
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=vt2", err, sizeof(err)), 0);
	iface_mac("vt2", b);
	CHECK(strcmp(a, b) != 0); /* another name, another address */
	p.ops->destroy(&p);

	sh("ip tuntap add vt3 mode tap vnet_hdr && ip link set vt3 address 02:aa:bb:cc:dd:ee");
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=vt3", err, sizeof(err)), 0);
	iface_mac("vt3", a);
	CHECK(!strcmp(a, "02:aa:bb:cc:dd:ee"));
	p.ops->destroy(&p);
	sh("ip link del vt3");
}

static void test_tap_rx(void)
{
	tap_rx_case(false);
}

static void test_tap_rx_offload(void)
{
	tap_rx_case(true);
}

/* Frames larger than the pool's buffers are dropped and counted, and the next frame still arrives. */
static void test_tap_rx_too_big(void)
{
	enter_netns();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=vt0", err, sizeof(err)), 0);
	tap_addr("vt0", "10.0.0");
	struct vhd_pktpool *pool = mkpool(8, VHD_PKT_MIN_BUF_SIZE); /* 128 bytes of frame room */
	int s = udp_bound("10.0.0.1", 4000);
	uint8_t payload[200] = {1, 2, 3};
	udp_send(s, "10.0.0.2", 5000, payload, sizeof(payload));
	udp_send(s, "10.0.0.2", 5000, payload, 20);
	struct vhd_pkt *k;
	CHECK_EQ(rx_wait(&p, pool, &k, 1, 2000), 1);
	CHECK_EQ(k->len, 14 + 20 + 8 + 20);
	CHECK(memcmp(vhd_pkt_data(k) + 42, payload, 20) == 0);
	vhd_pkt_free(k);
	CHECK_EQ(desc_num(&p, "rx_too_big"), 1);
	CHECK_EQ(vhd_pktpool_avail(pool), 8);
	p.ops->destroy(&p);
	vhd_pktpool_destroy(pool);
	close(s);
}

/* What we transmit reaches kernel sockets; a bad checksum is refused; NEEDS_CSUM makes a partial one good. */
static void test_tap_tx(void)
{
	enter_netns();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=vt0", err, sizeof(err)), 0);
	tap_addr("vt0", "10.0.0");
	struct vhd_pktpool *pool = mkpool(64, BUF);
	int s = udp_bound("10.0.0.1", 7777);
	struct addrs a = {.sip = "10.0.0.2", .dip = "10.0.0.1", .sport = 5555, .dport = 7777};
	memcpy(a.smac, PEER_MAC, 6);
	get_mac("vt0", a.dmac);

	uint8_t payload[1000], f[2048], got[2048];
	unsigned seed = 2;
	fill_random(payload, sizeof(payload), &seed);
	struct sockaddr_in from;

	/* Plain frame. */
	size_t len = build_udp(f, &a, payload, sizeof(payload), false);
	struct vhd_pkt *k = mkpkt(pool, f, len);
	CHECK_EQ(p.ops->tx_burst(&p, 0, &k, 1), 1);
	CHECK_EQ(vhd_pktpool_avail(pool), 64); /* the port freed it */
	ssize_t r = udp_recv(s, got, sizeof(got), &from, 2000);
	CHECK_EQ(r, (ssize_t)sizeof(payload));
	CHECK(memcmp(got, payload, sizeof(payload)) == 0);
	CHECK_EQ(ntohs(from.sin_port), 5555);
	CHECK_EQ(ntohl(from.sin_addr.s_addr), 0x0a000002);

	/* Partial checksum without NEEDS_CSUM: a bad checksum, which the stack drops. */
	len = build_udp(f, &a, payload, 100, true);
	k = mkpkt(pool, f, len);
	CHECK_EQ(p.ops->tx_burst(&p, 0, &k, 1), 1);
	CHECK_EQ(udp_recv(s, got, sizeof(got), &from, 200), -1);

	/* The same bytes with NEEDS_CSUM: accepted. */
	k = mkpkt(pool, f, len);
	k->meta.flags = VHD_NET_META_F_NEEDS_CSUM;
	k->meta.csum_start = 34;
	k->meta.csum_offset = 6;
	CHECK_EQ(p.ops->tx_burst(&p, 0, &k, 1), 1);
	r = udp_recv(s, got, sizeof(got), &from, 2000);
	CHECK_EQ(r, 100);
	CHECK(memcmp(got, payload, 100) == 0);

	/* A burst of 32, all delivered in order. */
	struct vhd_pkt *b[32];
	for (unsigned i = 0; i < 32; i++) {
		payload[0] = (uint8_t)i;
		len = build_udp(f, &a, payload, 64 + i, false);
		b[i] = mkpkt(pool, f, len);
	}
	CHECK_EQ(p.ops->tx_burst(&p, 0, b, 16), 16);
	CHECK_EQ(p.ops->tx_burst(&p, 0, b + 16, 16), 16);
	for (unsigned i = 0; i < 32; i++) {
		r = udp_recv(s, got, sizeof(got), &from, 2000);
		CHECK_EQ(r, 64 + i);
		CHECK_EQ(got[0], i);
	}
	/* Refused by the kernel (NEEDS_CSUM pointing past the frame): consumed and counted, the rest still go. */
	len = build_udp(f, &a, payload, 10, false);
	b[0] = mkpkt(pool, f, len);
	b[0]->meta.flags = VHD_NET_META_F_NEEDS_CSUM;
	b[0]->meta.csum_start = 3000;
	b[0]->meta.csum_offset = 6;
	b[1] = mkpkt(pool, f, len);
	CHECK_EQ(p.ops->tx_burst(&p, 0, b, 2), 2);
	CHECK_EQ(udp_recv(s, got, sizeof(got), &from, 2000), 10);
	CHECK_EQ(udp_recv(s, got, sizeof(got), &from, 100), -1);
	CHECK_EQ(desc_num(&p, "tx_errors"), 1);
	CHECK_EQ(vhd_pktpool_avail(pool), 64);
	p.ops->destroy(&p);
	vhd_pktpool_destroy(pool);
	close(s);
}

/*
 * Two taps and IPv4 forwarding between them: what we transmit on A with offload metadata is routed out of B,
 * whose port (offloads=off) receives it as the kernel finished it, so the completed checksum and the segments
 * can be checked. With B offloads=on the same TSO frame comes out whole, metadata and all.
 */
static void two_taps(struct sw_port *a, struct sw_port *b, const char *b_args)
{
	enter_netns();
	char err[256];
	CHECK_EQ(mkport(a, &sw_tap_ops, 0, "ifname=vta", err, sizeof(err)), 0);
	CHECK_EQ(mkport(b, &sw_tap_ops, 0, b_args, err, sizeof(err)), 0);
	write_file("/proc/sys/net/ipv4/ip_forward", "1");
	tap_addr("vta", "10.0.0");
	tap_addr("vtb", "10.0.1");
}

static struct addrs a_to_b(void)
{
	struct addrs a = {.sip = "10.0.0.2", .dip = "10.0.1.2", .sport = 5555, .dport = 7777};
	memcpy(a.smac, PEER_MAC, 6);
	get_mac("vta", a.dmac);
	return a;
}

static void test_tap_csum_forward(void)
{
	struct sw_port a, b;
	two_taps(&a, &b, "ifname=vtb offloads=off");
	struct vhd_pktpool *pool = mkpool(16, BUF);
	struct addrs ad = a_to_b();
	uint8_t payload[777], f[2048];
	unsigned seed = 3;
	fill_random(payload, sizeof(payload), &seed);
	size_t len = build_udp(f, &ad, payload, sizeof(payload), true);
	CHECK(!l4_csum_ok(f, len));
	struct vhd_pkt *k = mkpkt(pool, f, len);
	k->meta.flags = VHD_NET_META_F_NEEDS_CSUM;
	k->meta.csum_start = 34;
	k->meta.csum_offset = 6;
	CHECK_EQ(a.ops->tx_burst(&a, 0, &k, 1), 1);
	CHECK_EQ(rx_wait(&b, pool, &k, 1, 2000), 1);
	uint8_t *g = vhd_pkt_data(k);
	CHECK_EQ(k->len, len);
	CHECK(memcmp(g, PEER_MAC, 6) == 0);
	CHECK_EQ(g[14 + 8], 63); /* routed */
	CHECK(ip_csum_ok(g));
	CHECK(!(k->meta.flags & VHD_NET_META_F_NEEDS_CSUM));
	CHECK(l4_csum_ok(g, k->len));
	CHECK(memcmp(g + 42, payload, sizeof(payload)) == 0);
	vhd_pkt_free(k);
	a.ops->destroy(&a);
	b.ops->destroy(&b);
	CHECK_EQ(vhd_pktpool_avail(pool), 16);
	vhd_pktpool_destroy(pool);
}

#define GSO_PAYLOAD 4000u
#define GSO_MSS 1000u

static struct vhd_pkt *tso_frame(struct vhd_pktpool *pool, uint8_t *payload)
{
	struct addrs ad = a_to_b();
	static uint8_t f[8192];
	unsigned seed = 4;
	fill_random(payload, GSO_PAYLOAD, &seed);
	size_t len = build_tcp(f, &ad, 1000000, payload, GSO_PAYLOAD, true);
	struct vhd_pkt *k = mkpkt(pool, f, len);
	k->meta.flags = VHD_NET_META_F_NEEDS_CSUM;
	k->meta.csum_start = 34;
	k->meta.csum_offset = 16;
	k->meta.gso_type = VHD_NET_META_GSO_TCPV4;
	k->meta.gso_size = GSO_MSS;
	k->meta.hdr_len = 54;
	return k;
}

static void test_tap_tso_segmented(void)
{
	struct sw_port a, b;
	two_taps(&a, &b, "ifname=vtb offloads=off");
	CHECK(a.tx_off.gso & (1u << VHD_NET_META_GSO_TCPV4));
	struct vhd_pktpool *pool = mkpool(16, BIG_BUF);
	uint8_t payload[GSO_PAYLOAD];
	struct vhd_pkt *k = tso_frame(pool, payload);
	CHECK_EQ(a.ops->tx_burst(&a, 0, &k, 1), 1);
	struct vhd_pkt *seg[8];
	unsigned n = rx_wait(&b, pool, seg, GSO_PAYLOAD / GSO_MSS, 2000);
	CHECK_EQ(n, GSO_PAYLOAD / GSO_MSS);
	rx_none(&b, pool, 50);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *g = vhd_pkt_data(seg[i]);
		CHECK_EQ(seg[i]->len, 54 + GSO_MSS);
		CHECK_EQ(seg[i]->meta.gso_type, VHD_NET_META_GSO_NONE);
		CHECK(ip_csum_ok(g));
		CHECK(l4_csum_ok(g, seg[i]->len));
		CHECK_EQ(get32(g + 38), 1000000 + i * GSO_MSS);
		CHECK(memcmp(g + 54, payload + i * GSO_MSS, GSO_MSS) == 0);
	}
	vhd_pkt_free_bulk(seg, n);
	a.ops->destroy(&a);
	b.ops->destroy(&b);
	CHECK_EQ(vhd_pktpool_avail(pool), 16);
	vhd_pktpool_destroy(pool);
}

static void test_tap_tso_passthrough(void)
{
	struct sw_port a, b;
	two_taps(&a, &b, "ifname=vtb");
	CHECK(b.rx_off.gso & (1u << VHD_NET_META_GSO_TCPV4));
	struct vhd_pktpool *pool = mkpool(16, BIG_BUF);
	uint8_t payload[GSO_PAYLOAD];
	struct vhd_pkt *k = tso_frame(pool, payload);
	size_t len = k->len;
	CHECK_EQ(a.ops->tx_burst(&a, 0, &k, 1), 1);
	CHECK_EQ(rx_wait(&b, pool, &k, 1, 2000), 1);
	rx_none(&b, pool, 50);
	uint8_t *g = vhd_pkt_data(k);
	CHECK_EQ(k->len, len);
	CHECK_EQ(g[14 + 8], 63);
	CHECK(ip_csum_ok(g));
	CHECK_EQ(k->meta.gso_type, VHD_NET_META_GSO_TCPV4);
	CHECK_EQ(k->meta.gso_size, GSO_MSS);
	CHECK(k->meta.hdr_len >= 54 && k->meta.hdr_len <= len);
	CHECK(k->meta.flags & VHD_NET_META_F_NEEDS_CSUM);
	CHECK_EQ(k->meta.csum_start, 34);
	CHECK_EQ(k->meta.csum_offset, 16);
	CHECK(memcmp(g + 54, payload, GSO_PAYLOAD) == 0);
	vhd_pkt_free(k);

	/* With 2 KiB buffers it cannot be taken: dropped and counted. */
	struct vhd_pktpool *small = mkpool(16, BUF);
	k = tso_frame(pool, payload);
	CHECK_EQ(a.ops->tx_burst(&a, 0, &k, 1), 1);
	rx_none(&b, small, 300);
	CHECK_EQ(desc_num(&b, "rx_too_big"), 1);
	a.ops->destroy(&a);
	b.ops->destroy(&b);
	CHECK_EQ(vhd_pktpool_avail(pool), 16);
	CHECK_EQ(vhd_pktpool_avail(small), 16);
	vhd_pktpool_destroy(pool);
	vhd_pktpool_destroy(small);
}

/* queues=4: one fd per queue, each transmits; frames of many flows arrive, spread over the queues. */
static void test_tap_multiqueue(void)
{
	enter_netns();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=vt0 queues=4", err, sizeof(err)), 0);
	CHECK_EQ(p.n_rxq, 4);
	CHECK_EQ(p.n_txq, 4);
	CHECK_EQ(desc_num(&p, "queues"), 4);
	char name[32];
	desc_str(&p, "ifname", name, sizeof(name));
	CHECK(!strcmp(name, "vt0"));
	tap_addr("vt0", "10.0.0");
	struct vhd_pktpool *pool = mkpool(256, BUF);

	int s = udp_bound("10.0.0.1", 7777);
	struct addrs a = {.sip = "10.0.0.2", .dip = "10.0.0.1", .sport = 5555, .dport = 7777};
	memcpy(a.smac, PEER_MAC, 6);
	get_mac("vt0", a.dmac);
	uint8_t f[256], got[256];
	bool seen[4] = {false};
	for (unsigned q = 0; q < 4; q++) {
		uint8_t pl[8] = {(uint8_t)q};
		size_t len = build_udp(f, &a, pl, sizeof(pl), false);
		struct vhd_pkt *k = mkpkt(pool, f, len);
		CHECK_EQ(p.ops->tx_burst(&p, q, &k, 1), 1);
	}
	for (unsigned i = 0; i < 4; i++) {
		struct sockaddr_in from;
		CHECK_EQ(udp_recv(s, got, sizeof(got), &from, 2000), 8);
		CHECK(got[0] < 4 && !seen[got[0]]);
		seen[got[0]] = true;
	}

	/* 64 flows from the kernel: every datagram arrives once, on whichever queue. */
	enum { FLOWS = 64 };
	int c = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	for (unsigned i = 0; i < FLOWS; i++) {
		uint8_t pl[4] = {(uint8_t)i};
		udp_send(c, "10.0.0.2", (uint16_t)(6000 + i), pl, sizeof(pl));
	}
	struct vhd_pkt *k[FLOWS];
	CHECK_EQ(rx_wait(&p, pool, k, FLOWS, 3000), FLOWS);
	bool flow[FLOWS] = {false};
	for (unsigned i = 0; i < FLOWS; i++) {
		const uint8_t *g = vhd_pkt_data(k[i]);
		unsigned id = g[42];
		CHECK(id < FLOWS && !flow[id]);
		CHECK_EQ(get16(g + 36), 6000 + id);
		flow[id] = true;
	}
	vhd_pkt_free_bulk(k, FLOWS);
	rx_none(&p, pool, 50);
	p.ops->destroy(&p);
	CHECK_EQ(vhd_pktpool_avail(pool), 256);
	vhd_pktpool_destroy(pool);
	close(s);
	close(c);
}

/* An interface we create goes with the port; a pre-existing persistent one stays; nothing leaks. */
static void test_tap_lifecycle(void)
{
	enter_netns();
	struct sw_port p;
	char err[256];
	int fds = th_count_fds();
	CHECK_EQ(if_nametoindex("vt0"), 0);
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=vt0 queues=3", err, sizeof(err)), 0);
	CHECK(if_nametoindex("vt0") != 0);
	CHECK(desc_bool(&p, "created"));
	CHECK(desc_bool(&p, "offloads"));
	CHECK(!p.ops->link_up(&p));
	sh("ip link set vt0 up");
	CHECK(p.ops->link_up(&p));
	sh("ip link set vt0 down");
	CHECK(!p.ops->link_up(&p));
	/* Renamed: still our interface. */
	sh("ip link set vt0 name vt0new up");
	CHECK(p.ops->link_up(&p));
	char name[32];
	desc_str(&p, "ifname", name, sizeof(name));
	CHECK(!strcmp(name, "vt0new"));
	p.ops->destroy(&p);
	CHECK_EQ(if_nametoindex("vt0new"), 0);
	CHECK_EQ(th_count_fds(), fds);

	sh("ip tuntap add dev vt9 mode tap && ip link set vt9 mtu 1400");
	CHECK_EQ(mkport(&p, &sw_tap_ops, 0, "ifname=vt9", err, sizeof(err)), 0);
	CHECK(!desc_bool(&p, "created"));
	CHECK_EQ(p.mtu, 1400);
	p.ops->destroy(&p);
	CHECK(if_nametoindex("vt9") != 0);
	/* The caller's MTU wins; a second port on a single-queue tap in use is refused, naming it. */
	CHECK_EQ(mkport(&p, &sw_tap_ops, 9000, "ifname=vt9 offloads=off", err, sizeof(err)), 0);
	CHECK_EQ(p.mtu, 9000);
	CHECK(!desc_bool(&p, "offloads"));
	struct sw_port q;
	CHECK(mkport(&q, &sw_tap_ops, 0, "ifname=vt9", err, sizeof(err)) < 0);
	CHECK(strstr(err, "vt9"));
	/* A single-queue tap cannot be opened multi-queue. */
	CHECK_EQ(mkport(&q, &sw_tap_ops, 0, "ifname=vt9 queues=2", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "vt9"));
	p.ops->destroy(&p);
	CHECK(if_nametoindex("vt9") != 0);
	CHECK_EQ(th_count_fds(), fds);
}

/* ================================================================ af_packet ================================================================ */

/* va (the port's end) and vb (the test's end) of a veth pair, both up. */
static void veth(void)
{
	sh("ip link add va type veth peer name vb && ip link set va up && ip link set vb up");
}

/* The kernel propagates a veth's carrier asynchronously (linkwatch), also just after `ip link set up`: wait for
 * it, up to 10 s (a liveness bound for a loaded machine, not a timing assertion). */
static bool link_becomes(struct sw_port *p, bool up)
{
	for (int i = 0; i < 10000; i++) {
		if (p->ops->link_up(p) == up)
			return true;
		usleep(1000);
	}
	return false;
}

#define ETH_TEST 0x88b5 /* IEEE local experimental: the stack ignores these frames */

/* A frame of len bytes numbered seq, with random contents after its Ethernet header and sequence number. */
static void test_frame(uint8_t *f, size_t len, uint32_t seq, unsigned *seed)
{
	static const uint8_t dst[6] = {0x02, 0xaa, 0, 0, 0, 1}, src[6] = {0x02, 0xbb, 0, 0, 0, 2};
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	put16(f + 12, ETH_TEST);
	f[14] = (uint8_t)(seq >> 24);
	f[15] = (uint8_t)(seq >> 16);
	f[16] = (uint8_t)(seq >> 8);
	f[17] = (uint8_t)seq;
	fill_random(f + 18, len - 18, seed);
}

static void test_afp_args(void)
{
	enter_netns();
	veth();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, "", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "ifname"));
	CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, "frames=128", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "ifname"));
	CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, "ifname=nosuch0", err, sizeof(err)), -ENODEV);
	CHECK(strstr(err, "ifname=nosuch0"));
	const char *bad_frames[] = {"0", "63", "65537", "many", ""};
	for (unsigned i = 0; i < sizeof(bad_frames) / sizeof(bad_frames[0]); i++) {
		char a[64];
		snprintf(a, sizeof(a), "ifname=va frames=%s", bad_frames[i]);
		CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, a, err, sizeof(err)), -EINVAL);
		CHECK(strstr(err, "frames"));
	}
	CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, "ifname=va offloads=yes", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "offloads"));
	CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, "ifname=va qdisc_bypass=2", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "qdisc_bypass"));
	CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, "ifname=va queues=2", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "queues"));
	/* Not Ethernet: a tun device carries bare IP packets. */
	sh("ip tuntap add dev tn0 mode tun");
	CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, "ifname=tn0", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "tn0"));
	/* Both ends of the frames range work. */
	CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, "ifname=va frames=64", err, sizeof(err)), 0);
	p.ops->destroy(&p);
	CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, "ifname=va frames=65536 offloads=off qdisc_bypass=off", err,
			sizeof(err)),
		 0);
	p.ops->destroy(&p);
}

/* Frames sent into vb arrive at the port byte for byte, VLAN tags included; nothing else arrives. */
static void afp_rx_case(const char *args)
{
	enter_netns();
	veth();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, args, err, sizeof(err)), 0);
	CHECK_EQ(p.n_rxq, 1);
	CHECK_EQ(p.n_txq, 1);
	CHECK_EQ(p.mtu, 1500);
	CHECK(link_becomes(&p, true));
	struct vhd_pktpool *pool = mkpool(64, BUF);
	rx_none(&p, pool, 20);
	int raw = raw_socket("vb");
	unsigned seed = 5;
	uint8_t f[4][1600];
	size_t len[4] = {60, 1514, 1518, 200};
	test_frame(f[0], len[0], 0, &seed);
	test_frame(f[1], len[1], 1, &seed);
	/* 802.1Q, VID 100 priority 5, and 802.1ad: the kernel strips both before we see them. */
	test_frame(f[2], len[2], 2, &seed);
	memmove(f[2] + 16, f[2] + 12, len[2] - 16);
	put16(f[2] + 12, 0x8100);
	put16(f[2] + 14, 0xa064);
	test_frame(f[3], len[3], 3, &seed);
	memmove(f[3] + 16, f[3] + 12, len[3] - 16);
	put16(f[3] + 12, 0x88a8);
	put16(f[3] + 14, 0x0007);
	for (unsigned i = 0; i < 4; i++)
		raw_send(raw, f[i], len[i]);
	struct vhd_pkt *k[4];
	CHECK_EQ(rx_wait(&p, pool, k, 4, 2000), 4);
	for (unsigned i = 0; i < 4; i++) {
		check_bytes(vhd_pkt_data(k[i]), k[i]->len, f[i], len[i], "af_packet rx");
		CHECK(!(k[i]->meta.flags & VHD_NET_META_F_NEEDS_CSUM));
		CHECK_EQ(k[i]->meta.gso_type, VHD_NET_META_GSO_NONE);
	}
	vhd_pkt_free_bulk(k, 4);
	rx_none(&p, pool, 20);
	CHECK_EQ(desc_num(&p, "rx_too_big"), 0);
	/* A frame larger than the pool's buffers: dropped, counted, the next one still comes. */
	struct vhd_pktpool *small = mkpool(4, VHD_PKT_MIN_BUF_SIZE);
	raw_send(raw, f[1], len[1]);
	raw_send(raw, f[0], len[0]);
	CHECK_EQ(rx_wait(&p, small, k, 1, 2000), 1);
	check_bytes(vhd_pkt_data(k[0]), k[0]->len, f[0], len[0], "after a drop");
	vhd_pkt_free(k[0]);
	CHECK_EQ(desc_num(&p, "rx_too_big"), 1);
	p.ops->destroy(&p);
	CHECK_EQ(vhd_pktpool_avail(pool), 64);
	CHECK_EQ(vhd_pktpool_avail(small), 4);
	vhd_pktpool_destroy(pool);
	vhd_pktpool_destroy(small);
	close(raw);
}

static void test_afp_rx(void)
{
	afp_rx_case("ifname=va");
}

static void test_afp_rx_plain(void)
{
	afp_rx_case("ifname=va offloads=off qdisc_bypass=off");
}

/*
 * Through p (a port on va): f[0..n) transmitted in one burst come out of vb (raw) byte for byte, in order, and
 * nothing else does nor comes back to the port; then a big_len frame (over the MTU) and f[0]: the first refused
 * and counted in tx_errors, the other still sent. Every packet is back in its pool.
 */
static void tx_and_refusal(struct sw_port *p, struct vhd_pktpool *pool, int raw, uint8_t (*f)[1600], const size_t *len,
			   unsigned n, size_t big_len, unsigned *seed, const char *what)
{
	uint8_t got[2048], big[4096];
	struct vhd_pkt *k[8];
	CHECK(n <= 8 && big_len <= sizeof(big));
	unsigned avail = vhd_pktpool_avail(pool);
	for (unsigned i = 0; i < n; i++)
		k[i] = mkpkt(pool, f[i], len[i]);
	CHECK_EQ(p->ops->tx_burst(p, 0, k, n), n);
	CHECK_EQ(vhd_pktpool_avail(pool), avail);
	for (unsigned i = 0; i < n; i++) {
		ssize_t r = raw_recv(raw, got, sizeof(got), 2000, NULL);
		check_bytes(got, r > 0 ? (size_t)r : 0, f[i], len[i], what);
	}
	CHECK_EQ(raw_recv(raw, got, sizeof(got), 50, NULL), -1);
	rx_none(p, pool, 50);
	test_frame(big, big_len, 9, seed);
	struct vhd_pktpool *jumbo = mkpool(1, 8192);
	k[0] = mkpkt(jumbo, big, big_len);
	k[1] = mkpkt(pool, f[0], len[0]);
	CHECK_EQ(p->ops->tx_burst(p, 0, k, 2), 2);
	ssize_t r = raw_recv(raw, got, sizeof(got), 2000, NULL);
	check_bytes(got, r > 0 ? (size_t)r : 0, f[0], len[0], "after a refusal");
	CHECK_EQ(desc_num(p, "tx_errors"), 1);
	CHECK_EQ(vhd_pktpool_avail(pool), avail);
	CHECK_EQ(vhd_pktpool_avail(jumbo), 1);
	vhd_pktpool_destroy(jumbo);
}

/* What the port transmits comes out of vb byte for byte, and is never received back by the port; over the MTU (no
 * VLAN tag) or over a ring slot is refused. */
static void afp_tx_case(const char *args)
{
	enter_netns();
	veth();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, args, err, sizeof(err)), 0);
	struct vhd_pktpool *pool = mkpool(64, BUF);
	int raw = raw_socket("vb");
	unsigned seed = 6;
	uint8_t f[3][1600];
	size_t len[3] = {60, 1514, 1000};
	for (unsigned i = 0; i < 3; i++)
		test_frame(f[i], len[i], i, &seed);
	tx_and_refusal(&p, pool, raw, f, len, 3, 4096, &seed, "af_packet tx");
	p.ops->destroy(&p);
	close(raw);
	vhd_pktpool_destroy(pool);
}

static void test_afp_tx(void)
{
	afp_tx_case("ifname=va");
}

static void test_afp_tx_plain(void)
{
	afp_tx_case("ifname=va offloads=off qdisc_bypass=off");
}

/*
 * 1000 frames of random sizes 60..1514 through p each way, bursts of 32 from the port to raw (vb's packet socket;
 * whatever the port does not take is offered again, and empty bursts kick what waits), then from raw to the port
 * with at most window frames in flight: all arrive, in order, intact, and the pool is whole again.
 */
static void burst_both_ways(struct sw_port *p, int raw, unsigned window, unsigned seed)
{
	enum { N = 1000 };
	struct vhd_pktpool *pool = mkpool(512, BUF);
	static uint8_t f[N][1514];
	size_t len[N];
	for (unsigned i = 0; i < N; i++) {
		len[i] = 60 + (size_t)rand_r(&seed) % (1514 - 60 + 1);
		test_frame(f[i], len[i], i, &seed);
	}
	uint8_t got[2048];
	unsigned sent = 0, recvd = 0;
	uint64_t end = now_ms() + 20000;
	while (recvd < N) {
		CHECK(now_ms() < end);
		if (sent < N) {
			struct vhd_pkt *k[32];
			unsigned n = N - sent < 32 ? N - sent : 32;
			for (unsigned i = 0; i < n; i++)
				k[i] = mkpkt(pool, f[sent + i], len[sent + i]);
			unsigned took = p->ops->tx_burst(p, 0, k, n);
			vhd_pkt_free_bulk(k + took, n - took);
			sent += took;
		} else {
			CHECK_EQ(p->ops->tx_burst(p, 0, NULL, 0), 0);
		}
		ssize_t r;
		while ((r = raw_recv(raw, got, sizeof(got), sent < N ? 0 : 100, NULL)) > 0) {
			check_bytes(got, (size_t)r, f[recvd], len[recvd], "tx burst");
			recvd++;
		}
	}
	CHECK_EQ(raw_recv(raw, got, sizeof(got), 50, NULL), -1);
	CHECK_EQ(vhd_pktpool_avail(pool), 512);

	sent = recvd = 0;
	end = now_ms() + 20000;
	while (recvd < N) {
		CHECK(now_ms() < end);
		for (unsigned i = 0; i < 64 && sent < N && sent - recvd < window; i++, sent++)
			raw_send(raw, f[sent], len[sent]);
		struct vhd_pkt *k[64];
		unsigned n = rx_wait(p, pool, k, 64, sent < N ? 0 : 100);
		for (unsigned i = 0; i < n; i++) {
			CHECK(recvd < N);
			check_bytes(vhd_pkt_data(k[i]), k[i]->len, f[recvd], len[recvd], "rx burst");
			recvd++;
		}
		vhd_pkt_free_bulk(k, n);
	}
	rx_none(p, pool, 50);
	CHECK_EQ(vhd_pktpool_avail(pool), 512);
	vhd_pktpool_destroy(pool);
}

/* burst_both_ways through af_packet; the kernel dropped nothing. */
static void test_afp_burst(void)
{
	enter_netns();
	veth();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, "ifname=va", err, sizeof(err)), 0);
	int raw = raw_socket("vb");
	burst_both_ways(&p, raw, 256, 7);
	CHECK_EQ(desc_num(&p, "kernel_drops"), 0);
	p.ops->destroy(&p);
	close(raw);
}

/* The host's own traffic out of va reaches vb but is not received by the port (it is outgoing on va). */
static void test_afp_ignores_outgoing(void)
{
	enter_netns();
	veth();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, "ifname=va", err, sizeof(err)), 0);
	struct vhd_pktpool *pool = mkpool(16, BUF);
	sh("ip addr add 10.0.0.1/24 dev va && ip neigh add 10.0.0.2 lladdr 02:00:00:00:00:02 dev va nud permanent");
	int raw = raw_socket("vb");
	int s = udp_bound("10.0.0.1", 4000);
	uint8_t pl[100] = {42};
	udp_send(s, "10.0.0.2", 5000, pl, sizeof(pl));
	uint8_t got[2048];
	ssize_t r = raw_recv(raw, got, sizeof(got), 2000, NULL);
	CHECK_EQ(r, 14 + 20 + 8 + 100);
	CHECK_EQ(got[42], 42);
	rx_none(&p, pool, 100);
	p.ops->destroy(&p);
	vhd_pktpool_destroy(pool);
	close(s);
	close(raw);
}

/*
 * vb's own stack sends through the veth with a partial checksum. With offloads the port says so in the meta
 * (and completing it gives the right checksum); without, such frames are dropped and counted. Transmitting a
 * partial checksum with NEEDS_CSUM reaches vb's UDP socket, without NEEDS_CSUM it does not.
 */
static void afp_offload_case(bool offloads)
{
	enter_netns();
	veth();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, offloads ? "ifname=va" : "ifname=va offloads=off", err,
			sizeof(err)),
		 0);
	CHECK_EQ(p.rx_off.csum, offloads);
	CHECK_EQ(p.tx_off.csum, offloads);
	CHECK_EQ(p.tx_off.gso, 0);
	struct vhd_pktpool *pool = mkpool(16, BUF);
	sh("ip addr add 10.0.0.2/24 dev vb && ip neigh add 10.0.0.1 lladdr 02:00:00:00:00:01 dev vb nud permanent");
	int s = udp_bound("10.0.0.2", 7777);
	uint8_t pl[500], f[2048];
	unsigned seed = 8;
	fill_random(pl, sizeof(pl), &seed);
	udp_send(s, "10.0.0.1", 5000, pl, sizeof(pl));
	struct vhd_pkt *k;
	if (offloads) {
		CHECK_EQ(rx_wait(&p, pool, &k, 1, 2000), 1);
		uint8_t *g = vhd_pkt_data(k);
		CHECK_EQ(k->len, 14 + 20 + 8 + sizeof(pl));
		CHECK(memcmp(g + 42, pl, sizeof(pl)) == 0);
		CHECK(k->meta.flags & VHD_NET_META_F_NEEDS_CSUM);
		CHECK_EQ(k->meta.csum_start, 34);
		CHECK_EQ(k->meta.csum_offset, 6);
		CHECK(!l4_csum_ok(g, k->len));
		complete_csum(g, k->len, k->meta.csum_start, k->meta.csum_offset);
		CHECK(l4_csum_ok(g, k->len));
		vhd_pkt_free(k);
		CHECK_EQ(desc_num(&p, "rx_csum_partial"), 0);
	} else {
		rx_none(&p, pool, 200);
		CHECK_EQ(desc_num(&p, "rx_csum_partial"), 1);
	}

	struct addrs a = {.sip = "10.0.0.1", .dip = "10.0.0.2", .sport = 5000, .dport = 7777};
	memcpy(a.smac, (uint8_t[6]){0x02, 0, 0, 0, 0, 0x01}, 6);
	get_mac("vb", a.dmac);
	size_t len = build_udp(f, &a, pl, 200, true);
	struct sockaddr_in from;
	uint8_t got[2048];
	k = mkpkt(pool, f, len); /* no NEEDS_CSUM: a bad checksum, dropped by vb's stack */
	CHECK_EQ(p.ops->tx_burst(&p, 0, &k, 1), 1);
	CHECK_EQ(udp_recv(s, got, sizeof(got), &from, 200), -1);
	k = mkpkt(pool, f, len);
	k->meta.flags = VHD_NET_META_F_NEEDS_CSUM;
	k->meta.csum_start = 34;
	k->meta.csum_offset = 6;
	CHECK_EQ(p.ops->tx_burst(&p, 0, &k, 1), 1);
	if (offloads) {
		CHECK_EQ(udp_recv(s, got, sizeof(got), &from, 2000), 200);
		CHECK(memcmp(got, pl, 200) == 0);
		CHECK_EQ(desc_num(&p, "tx_errors"), 0);
	} else {
		/* Without the header it cannot be carried: the switch should have completed it. */
		CHECK_EQ(udp_recv(s, got, sizeof(got), &from, 200), -1);
		CHECK_EQ(desc_num(&p, "tx_errors"), 1);
	}
	CHECK_EQ(vhd_pktpool_avail(pool), 16);
	p.ops->destroy(&p);
	vhd_pktpool_destroy(pool);
	close(s);
}

static void test_afp_offload(void)
{
	afp_offload_case(true);
}

static void test_afp_offload_off(void)
{
	afp_offload_case(false);
}

/*
 * A VLAN-tagged frame with a partial checksum, sent by a packet socket on vb with a vnet header: the kernel
 * strips the tag before the port sees the frame, the port puts it back, and the checksum offset moves with it.
 */
static void test_afp_offload_vlan(void)
{
	enter_netns();
	veth();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, "ifname=va", err, sizeof(err)), 0);
	struct vhd_pktpool *pool = mkpool(16, BUF);
	int raw = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	CHECK(raw >= 0);
	int one = 1;
	CHECK_EQ(setsockopt(raw, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)), 0);
	struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL)};
	sll.sll_ifindex = (int)if_nametoindex("vb");
	CHECK_EQ(bind(raw, (struct sockaddr *)&sll, sizeof(sll)), 0);

	struct addrs a = {.sip = "10.0.5.2", .dip = "10.0.5.1", .sport = 5000, .dport = 7777};
	memcpy(a.dmac, (uint8_t[6]){0x02, 0, 0, 0, 0, 0x01}, 6);
	get_mac("vb", a.smac);
	uint8_t pl[300], f[2048], want[2048];
	unsigned seed = 10;
	fill_random(pl, sizeof(pl), &seed);
	size_t len = build_udp(f, &a, pl, sizeof(pl), true);
	memmove(f + 16, f + 12, len - 12);
	put16(f + 12, 0x8100);
	put16(f + 14, 0x2005); /* priority 1, VID 5 */
	len += 4;
	memcpy(want, f, len);
	struct {
		uint8_t flags, gso_type;
		uint16_t hdr_len, gso_size, csum_start, csum_offset;
	} vh = {.flags = 1 /* NEEDS_CSUM */, .csum_start = 38, .csum_offset = 6};
	struct iovec iov[2] = {{&vh, sizeof(vh)}, {f, len}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
	CHECK_EQ(sendmsg(raw, &mh, 0), (ssize_t)(sizeof(vh) + len));

	struct vhd_pkt *k;
	CHECK_EQ(rx_wait(&p, pool, &k, 1, 2000), 1);
	uint8_t *g = vhd_pkt_data(k);
	check_bytes(g, k->len, want, len, "tagged, partial checksum");
	CHECK(k->meta.flags & VHD_NET_META_F_NEEDS_CSUM);
	CHECK_EQ(k->meta.csum_start, 38);
	CHECK_EQ(k->meta.csum_offset, 6);
	complete_csum(g, k->len, k->meta.csum_start, k->meta.csum_offset);
	/* Checked untagged. */
	memmove(g + 12, g + 16, k->len - 16);
	CHECK(ip_csum_ok(g));
	CHECK(l4_csum_ok(g, k->len - 4));
	vhd_pkt_free(k);
	p.ops->destroy(&p);
	vhd_pktpool_destroy(pool);
	close(raw);
}

/* Carrier, promiscuous mode while the port exists, and fds/mappings back to where they were after destroy. */
static void test_afp_lifecycle(void)
{
	enter_netns();
	veth();
	int fds = th_count_fds();
	CHECK_EQ(socket_maps(), 0);
	CHECK_EQ(promiscuity("va"), 0);
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, "ifname=va", err, sizeof(err)), 0);
	CHECK_EQ(promiscuity("va"), 1);
	CHECK_EQ(socket_maps(), 1); /* both rings in one mapping */
	CHECK(p.ops->link_up(&p));
	sh("ip link set vb down");
	CHECK(link_becomes(&p, false)); /* va is up but has no carrier */
	sh("ip link set vb up");
	CHECK(link_becomes(&p, true));
	sh("ip link set va down");
	CHECK(link_becomes(&p, false));
	sh("ip link set va up");
	char name[32];
	desc_str(&p, "ifname", name, sizeof(name));
	CHECK(!strcmp(name, "va"));
	CHECK_EQ(desc_num(&p, "kernel_drops"), 0);
	/* Transmitting while va is down is no error, and what waited goes out once it is back up. */
	struct vhd_pktpool *pool = mkpool(8, BUF);
	int raw = raw_socket("vb");
	uint8_t f[100], got[2048];
	unsigned seed = 9;
	test_frame(f, sizeof(f), 0, &seed);
	sh("ip link set va down");
	struct vhd_pkt *k = mkpkt(pool, f, sizeof(f));
	CHECK_EQ(p.ops->tx_burst(&p, 0, &k, 1), 1);
	sh("ip link set va up");
	CHECK(link_becomes(&p, true));
	CHECK_EQ(p.ops->tx_burst(&p, 0, NULL, 0), 0); /* kicks what is pending */
	ssize_t r = raw_recv(raw, got, sizeof(got), 2000, NULL);
	check_bytes(got, r > 0 ? (size_t)r : 0, f, sizeof(f), "sent after link up");
	close(raw);
	vhd_pktpool_destroy(pool);
	p.ops->destroy(&p);
	CHECK_EQ(promiscuity("va"), 0);
	CHECK_EQ(th_count_fds(), fds);
	CHECK_EQ(socket_maps(), 0);
}

/* ================================================================ af_xdp ================================================================ */

/* Whether `ip link show` lists an XDP program on ifname (any mode). */
static bool xdp_attached(const char *ifname)
{
	char cmd[128], line[512];
	snprintf(cmd, sizeof(cmd), "ip link show dev %s", ifname);
	FILE *f = popen(cmd, "r");
	CHECK(f != NULL);
	bool found = false;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, " xdp") || strstr(line, "prog/xdp"))
			found = true;
	CHECK_EQ(pclose(f), 0);
	return found;
}

/* Each bad argument refused with -errno and a message naming it; nothing stays attached. */
static void test_axp_args(void)
{
	enter_netns();
	veth();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "ifname: required"));
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=nosuch0", err, sizeof(err)), -ENODEV);
	CHECK(!strcmp(err, "ifname=nosuch0: no such interface"));
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=va queue=1", err, sizeof(err)), -EINVAL);
	CHECK(!strcmp(err, "queue=1: ifname=va has 1 receive queue"));
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=va queue=x", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "queue=x"));
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=va frames=100", err, sizeof(err)), -EINVAL);
	CHECK(!strcmp(err, "frames=100: want a power of two (the rings' sizes)"));
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=va frames=32", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "frames=32"));
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=va mode=fast", err, sizeof(err)), -EINVAL);
	CHECK(!strcmp(err, "mode=fast: want auto, native or generic"));
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=va zerocopy=yes", err, sizeof(err)), -EINVAL);
	CHECK(!strcmp(err, "zerocopy=yes: want auto, on or off"));
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=va offloads=on", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "offloads: unknown argument for a af_xdp port"));
	/* veth copies: zero-copy on demand is refused by the kernel. */
	CHECK(mkport(&p, &sw_af_xdp_ops, 0, "ifname=va zerocopy=on", err, sizeof(err)) < 0);
	CHECK(!strcmp(err, "ifname=va queue=0: AF_XDP socket in native mode: zero-copy not supported by the driver"));
	CHECK(!xdp_attached("va"));
	/* Not Ethernet. */
	sh("ip tuntap add dev tn0 mode tun");
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=tn0", err, sizeof(err)), -EINVAL);
	CHECK(!strcmp(err, "ifname=tn0: not an Ethernet interface"));
	/* Jumbo frames do not fit a UMEM frame. */
	sh("ip link set va mtu 9000");
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=va", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "ifname=va: MTU 9000 is over"));
	sh("ip link set va mtu 1500");
	/* A queue other than 0, on a veth with two in use (created with room for two, it uses one until told). */
	sh("ip link add vq type veth peer name vqp numrxqueues 2 numtxqueues 2 && ip link set vq up && ip link set vqp up");
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=vq queue=1", err, sizeof(err)), -EINVAL);
	CHECK(!strcmp(err, "queue=1: ifname=vq has 1 receive queue"));
	sh("ethtool -L vq rx 2 tx 2");
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=vq queue=2", err, sizeof(err)), -EINVAL);
	CHECK(!strcmp(err, "queue=2: ifname=vq has 2 receive queues"));
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=vq queue=1", err, sizeof(err)), 0);
	CHECK_EQ(desc_num(&p, "queue"), 1);
	p.ops->destroy(&p);
	/* Both ends of the frames range work. */
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=va frames=64", err, sizeof(err)), 0);
	p.ops->destroy(&p);
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=va frames=16384 zerocopy=off", err, sizeof(err)), 0);
	p.ops->destroy(&p);
	CHECK(!xdp_attached("va"));
}

/* Without the capabilities: refused, saying so. */
static void test_axp_no_permission(void)
{
	enter_netns();
	veth();
	if (setresuid(65534, 65534, 65534) < 0)
		th_skip("setresuid: %s", strerror(errno));
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=va", err, sizeof(err)), -EPERM);
	CHECK(strstr(err, "ifname=va: "));
	CHECK(strstr(err, "permission denied"));
}

/* libxdp cannot find its default program: refused, naming it, nothing attached. */
static void test_axp_no_program(void)
{
	enter_netns();
	veth();
	setenv("LIBXDP_OBJECT_PATH", "/nonexistent", 1);
	struct sw_port p;
	char err[512];
	CHECK(mkport(&p, &sw_af_xdp_ops, 0, "ifname=va", err, sizeof(err)) < 0);
	CHECK(strstr(err, "ifname=va: libxdp's default program xsk_def_xdp_prog.o: "));
	CHECK(!xdp_attached("va"));
}

/* Frames sent into vb arrive at the port byte for byte; frames the port sends come out of vb byte for byte and
 * are not received back; over-MTU and oversize frames refused and counted. */
static void axp_both_ways(const char *args, const char *mode)
{
	enter_netns();
	veth();
	struct sw_port p;
	char err[256], s[32];
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, args, err, sizeof(err)), 0);
	CHECK_EQ(p.n_rxq, 1);
	CHECK_EQ(p.n_txq, 1);
	CHECK_EQ(p.mtu, 1500);
	CHECK(link_becomes(&p, true));
	desc_str(&p, "mode", s, sizeof(s));
	CHECK(!strcmp(s, mode));
	CHECK(!desc_bool(&p, "zerocopy")); /* veth has no zero-copy */
	desc_str(&p, "ifname", s, sizeof(s));
	CHECK(!strcmp(s, "va"));
	CHECK_EQ(desc_num(&p, "queue"), 0);
	CHECK(xdp_attached("va"));
	struct vhd_pktpool *pool = mkpool(64, BUF);
	rx_none(&p, pool, 20);
	int raw = raw_socket("vb");
	unsigned seed = 15;
	uint8_t f[4][1600];
	size_t len[4] = {60, 1514, 1518, 200};
	for (unsigned i = 0; i < 4; i++)
		test_frame(f[i], len[i], i, &seed);
	put16(f[2] + 12, 0x8100); /* a VLAN tag stays in the frame with XDP */
	for (unsigned i = 0; i < 4; i++)
		raw_send(raw, f[i], len[i]);
	struct vhd_pkt *k[4];
	CHECK_EQ(rx_wait(&p, pool, k, 4, 2000), 4);
	for (unsigned i = 0; i < 4; i++)
		check_bytes(vhd_pkt_data(k[i]), k[i]->len, f[i], len[i], "af_xdp rx");
	vhd_pkt_free_bulk(k, 4);
	rx_none(&p, pool, 20);
	/* Larger than the pool's buffers: dropped, counted, the next one still comes. */
	struct vhd_pktpool *small = mkpool(4, VHD_PKT_MIN_BUF_SIZE);
	raw_send(raw, f[1], len[1]);
	raw_send(raw, f[0], len[0]);
	CHECK_EQ(rx_wait(&p, small, k, 1, 2000), 1);
	check_bytes(vhd_pkt_data(k[0]), k[0]->len, f[0], len[0], "after a drop");
	vhd_pkt_free(k[0]);
	CHECK_EQ(desc_num(&p, "rx_too_big"), 1);

	/* Transmit (untagged: vb's packet socket would see the tag stripped). */
	put16(f[2] + 12, ETH_TEST);
	tx_and_refusal(&p, pool, raw, f, len, 4, 3000, &seed, "af_xdp tx");
	CHECK_EQ(desc_num(&p, "kernel_tx_invalid"), 0);
	p.ops->destroy(&p);
	CHECK(!xdp_attached("va"));
	close(raw);
	vhd_pktpool_destroy(pool);
	vhd_pktpool_destroy(small);
}

static void test_axp_native(void)
{
	axp_both_ways("ifname=va", "native");
}

static void test_axp_generic(void)
{
	axp_both_ways("ifname=va mode=generic", "generic");
}

static char last_log[512];
static void keep_log(enum vhd_log_level level, const char *msg, void *opaque)
{
	(void)opaque;
	if (level <= VHD_LOG_INFO)
		snprintf(last_log, sizeof(last_log), "%s", msg);
}

/* An interface without native XDP (a bridge): auto falls back to generic saying so in one log line,
 * mode=native is refused. */
static void test_axp_fallback(void)
{
	enter_netns();
	sh("ip link add dm0 type bridge && ip link set dm0 up");
	struct sw_port p;
	char err[256], s[32];
	CHECK(mkport(&p, &sw_af_xdp_ops, 0, "ifname=dm0 mode=native", err, sizeof(err)) < 0);
	CHECK(!strcmp(err, "ifname=dm0: attaching the XDP program in native mode: not supported by the driver"));
	CHECK(!xdp_attached("dm0"));
	vhd_log_set_handler(keep_log, NULL);
	last_log[0] = 0;
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=dm0", err, sizeof(err)), 0);
	CHECK(!strcmp(last_log, "port test: af_xdp on dm0 queue 0 in generic mode (native: not supported by the driver)"));
	desc_str(&p, "mode", s, sizeof(s));
	CHECK(!strcmp(s, "generic"));
	CHECK(xdp_attached("dm0"));
	p.ops->destroy(&p);
	CHECK(!xdp_attached("dm0"));
}

/* burst_both_ways through af_xdp with 64-frame rings, so frames go round the fill and completion rings many
 * times; no drops in the kernel, no bad descriptors. */
static void test_axp_burst(void)
{
	enter_netns();
	veth();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=va frames=64", err, sizeof(err)), 0);
	int raw = raw_socket("vb");
	burst_both_ways(&p, raw, 48, 17);
	CHECK_EQ(desc_num(&p, "kernel_rx_ring_full"), 0);
	CHECK_EQ(desc_num(&p, "kernel_fill_ring_empty"), 0);
	CHECK_EQ(desc_num(&p, "rx_bad_desc"), 0);
	CHECK_EQ(desc_num(&p, "tx_bad_comp"), 0);
	p.ops->destroy(&p);
	close(raw);
}

/* Checksum offload of ifname on or off (ETHTOOL_STXCSUM). */
static void tx_csum(const char *ifname, bool on)
{
	struct ethtool_value ev = {.cmd = ETHTOOL_STXCSUM, .data = on};
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	ifr.ifr_data = (void *)&ev;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	CHECK_EQ(ioctl(fd, SIOCETHTOOL, &ifr), 0);
	close(fd);
}

/*
 * vb's stack sends UDP through the veth. XDP frames carry no checksum metadata, and neither mode completes a
 * partial checksum before the program sees the frame: with vb's checksum offload on (veth's default) the port
 * receives the frame with its checksum unfinished, with it off (what docs/switch.md tells users) it is right.
 */
static void axp_stack_csum_case(const char *args)
{
	enter_netns();
	veth();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, args, err, sizeof(err)), 0);
	struct vhd_pktpool *pool = mkpool(16, BUF);
	sh("ip addr add 10.0.0.2/24 dev vb && ip neigh add 10.0.0.1 lladdr 02:00:00:00:00:01 dev vb nud permanent");
	int s = udp_bound("10.0.0.2", 7777);
	uint8_t pl[500];
	unsigned seed = 18;
	fill_random(pl, sizeof(pl), &seed);
	for (int on = 1; on >= 0; on--) {
		tx_csum("vb", on);
		udp_send(s, "10.0.0.1", 5000, pl, sizeof(pl));
		struct vhd_pkt *k;
		CHECK_EQ(rx_wait(&p, pool, &k, 1, 2000), 1);
		uint8_t *g = vhd_pkt_data(k);
		CHECK_EQ(k->len, 14 + 20 + 8 + sizeof(pl));
		CHECK(memcmp(g + 42, pl, sizeof(pl)) == 0);
		CHECK(ip_csum_ok(g));
		CHECK_EQ(l4_csum_ok(g, k->len), !on);
		vhd_pkt_free(k);
	}
	p.ops->destroy(&p);
	vhd_pktpool_destroy(pool);
	close(s);
}

static void test_axp_stack_csum(void)
{
	axp_stack_csum_case("ifname=va");
}

static void test_axp_stack_csum_generic(void)
{
	axp_stack_csum_case("ifname=va mode=generic");
}

/* fds back to where they were after destroy, four times over (the kernel lets go of the queue in deferred work, so
 * at once the next port finds it busy for a moment); carrier follows the peer; a process that dies with the port
 * open (a killed vhostd) leaves no program on the interface, and the next port attaches as usual. */
static void test_axp_lifecycle(void)
{
	enter_netns();
	veth();
	int fds = th_count_fds();
	struct sw_port p;
	char err[256];
	for (unsigned round = 0; round < 4; round++) {
		CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=va", err, sizeof(err)), 0);
		CHECK(link_becomes(&p, true));
		sh("ip link set vb down");
		CHECK(link_becomes(&p, false));
		sh("ip link set vb up");
		CHECK(link_becomes(&p, true));
		p.ops->destroy(&p);
		CHECK(!xdp_attached("va"));
		CHECK_EQ(th_count_fds(), fds);
	}
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		_exit(mkport(&p, &sw_af_xdp_ops, 0, "ifname=va", err, sizeof(err)) == 0 && xdp_attached("va") ? 0 : 1);
	}
	int st;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK(!xdp_attached("va"));
	CHECK_EQ(mkport(&p, &sw_af_xdp_ops, 0, "ifname=va", err, sizeof(err)), 0);
	p.ops->destroy(&p);
}

/* vhost-user owner=/group=/mode=: each bad value is refused naming it, and good ones reach the socket file. */
static void test_vu_access_args(void)
{
	struct sw_port p;
	char err[256], a[256], path[64];
	snprintf(path, sizeof(path), "/tmp/vhd-test-vuargs-%d.sock", getpid());
	unlink(path);
	static const char *const bad[][2] = {
		{"owner=no-such-user-zz", "no such user"}, {"group=no-such-group-zz", "no such group"},
		{"owner=12x", "owner=12x"},                {"group=4294967295", "group=4294967295"},
		{"mode=999", "mode=999"},                  {"mode=0", "mode=0"},
		{"mode=01777", "mode=01777"},              {"mode=", "mode="},
		{"mode=-660", "mode=-660"},                {"mode= 660", "mode= 660"},
		{"client mode=0660", "client"},            {"client owner=0", "client"},
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* mkport splits on spaces: "mode= 660" becomes "mode=" and the bare key "660" (refused too). */
		snprintf(a, sizeof(a), "path=%s %s", path, bad[i][0]);
		CHECK_EQ(mkport(&p, &sw_vhost_user_ops, 0, a, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i][1]) && strcmp(bad[i][0], "mode= 660")) {
			fprintf(stderr, "%s: %s\n", bad[i][0], err);
			CHECK(!"the message names the value");
		}
		CHECK(access(path, F_OK) < 0); /* no socket left behind */
	}
	/* By name and by number. */
	struct passwd *pw = getpwnam("nobody");
	struct group *gr = getgrnam("nogroup");
	if (geteuid() != 0 || !pw || !gr)
		th_skip("needs root, user 'nobody' and group 'nogroup'");
	uid_t uid = pw->pw_uid;
	gid_t gid = gr->gr_gid;
	snprintf(a, sizeof(a), "path=%s owner=nobody group=%u mode=0640", path, (unsigned)gid);
	CHECK_EQ(mkport(&p, &sw_vhost_user_ops, 0, a, err, sizeof(err)), 0);
	struct stat st;
	CHECK_EQ(lstat(path, &st), 0);
	CHECK_EQ(st.st_mode & 07777, 0640);
	CHECK_EQ(st.st_uid, uid);
	CHECK_EQ(st.st_gid, gid);
	p.ops->destroy(&p);
	snprintf(a, sizeof(a), "path=%s group=nogroup", path);
	CHECK_EQ(mkport(&p, &sw_vhost_user_ops, 0, a, err, sizeof(err)), 0);
	CHECK_EQ(lstat(path, &st), 0);
	CHECK_EQ(st.st_uid, 0);
	CHECK_EQ(st.st_gid, gid);
	p.ops->destroy(&p);
	CHECK(access(path, F_OK) < 0);
}

/* ================================================================ vxlan ================================================================ */

#define VX_VNI 5001u

/* A UDP socket bound to ip:port on lo, standing in for a remote VTEP (or a stranger). */
static int udp_peer(const char *ip, uint16_t port)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	CHECK_EQ(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
	CHECK_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* The loopback range is ours: 127.0.0.1 is the port (local=, so that the remotes can bind the same UDP port),
 * 127.0.0.2/.3 the remotes, .9 a stranger. */
static void vx_netns(void)
{
	enter_netns();
}

/* In a namespace of its own: port p (vni 5001 on 127.0.0.1) with remotes 127.0.0.2 and .3, whose sockets are
 * rs[0] and rs[1]. */
static void vx_two_remotes(struct sw_port *p, int rs[2])
{
	vx_netns();
	char err[256];
	CHECK_EQ(mkport(p, &sw_vxlan_ops, 0, "vni=5001 remote=127.0.0.2,127.0.0.3 local=127.0.0.1", err,
			sizeof(err)),
		 0);
	rs[0] = udp_peer("127.0.0.2", 4789);
	rs[1] = udp_peer("127.0.0.3", 4789);
}

static void vx_send(int fd, uint8_t flags, uint32_t vni, const uint8_t *frame, size_t len)
{
	uint8_t d[2048];
	CHECK(len + 8 <= sizeof(d));
	memset(d, 0, 8);
	d[0] = flags;
	d[4] = (uint8_t)(vni >> 16);
	d[5] = (uint8_t)(vni >> 8);
	d[6] = (uint8_t)vni;
	memcpy(d + 8, frame, len);
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(4789)};
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	CHECK_EQ(sendto(fd, d, len + 8, 0, (struct sockaddr *)&to, sizeof(to)), (ssize_t)(len + 8));
}

/* One datagram at fd within ms (its length, source port in *sport), or -1. */
static ssize_t vx_recv(int fd, uint8_t *buf, size_t len, unsigned ms, uint16_t *sport)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	if (poll(&pfd, 1, (int)ms) != 1)
		return -1;
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	ssize_t r = recvfrom(fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
	if (sport)
		*sport = ntohs(from.sin_port);
	return r;
}

/* A datagram carrying frame f with the port's VXLAN header arrives at fd. */
static void vx_expect(int fd, const uint8_t *f, size_t len, uint16_t *sport)
{
	uint8_t d[2048];
	ssize_t r = vx_recv(fd, d, sizeof(d), 2000, sport);
	CHECK_EQ(r, (ssize_t)(len + 8));
	static const uint8_t hdr[8] = {0x08, 0, 0, 0, VX_VNI >> 16, (VX_VNI >> 8) & 0xff, VX_VNI & 0xff, 0};
	check_bytes(d, 8, hdr, 8, "vxlan header");
	check_bytes(d + 8, (size_t)r - 8, f, len, "vxlan inner frame");
}

static void vx_expect_none(int fd)
{
	uint8_t d[2048];
	CHECK_EQ(vx_recv(fd, d, sizeof(d), 50, NULL), -1);
}

static void vx_tx1(struct sw_port *p, struct vhd_pktpool *pool, const uint8_t *f, size_t len)
{
	struct vhd_pkt *k = mkpkt(pool, f, len);
	CHECK_EQ(p->ops->tx_burst(p, 0, &k, 1), 1);
}

static void test_vxlan_args(void)
{
	vx_netns();
	struct sw_port p;
	char err[256];
	static const char *const bad[][2] = {
		{"remote=127.0.0.2", "vni: required (the VXLAN network identifier, 0..16777215)"},
		{"vni=1", "remote: required (the remote VTEPs' IPv4 addresses, comma-separated)"},
		{"vni=1 remote=", "remote: required (the remote VTEPs' IPv4 addresses, comma-separated)"},
		{"vni=16777216 remote=127.0.0.2", "vni=16777216: want a number in 0..16777215"},
		{"vni=x remote=127.0.0.2", "vni=x: want a number in 0..16777215"},
		{"vni=1 remote=127.0.0.2 dstport=0", "dstport=0: want a number in 1..65535"},
		{"vni=1 remote=127.0.0.2 src_ports=65", "src_ports=65: want a number in 1..64"},
		{"vni=1 remote=nohost", "remote=nohost: want an IPv4 address"},
		{"vni=1 remote=127.0.0.2,", "remote=: want an IPv4 address"},
		{"vni=1 remote=127.0.0.2,,127.0.0.3", "remote=: want an IPv4 address"},
		{"vni=1 remote=239.1.1.1", "remote=239.1.1.1: want unicast VTEP addresses (multicast groups are not "
					   "supported)"},
		{"vni=1 remote=127.0.0.2,127.0.0.2", "remote=127.0.0.2: given twice"},
		{"vni=1 remote=127.0.0.2 local=::1", "local=::1: want an IPv4 address"},
		{"vni=1 remote=127.0.0.2 group=239.1.1.1", "group: unknown argument for a vxlan port (want vni remote "
							   "local dstport src_ports gso)"},
		{"vni=1 remote=127.0.0.2 gso=yes", "gso=yes: want on or off"},
		{"vni=1 remote=127.0.0.2 vni=2", "vni: given twice"},
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_EQ(mkport(&p, &sw_vxlan_ops, 0, bad[i][0], err, sizeof(err)), -EINVAL);
		if (strcmp(err, bad[i][1])) {
			fprintf(stderr, "%s: got '%s', want '%s'\n", bad[i][0], err, bad[i][1]);
			CHECK(!"exact error");
		}
	}
	char many[300] = "vni=1 remote=127.0.1.1";
	for (unsigned i = 2; i <= 17; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), ",127.0.1.%u", i);
	CHECK_EQ(mkport(&p, &sw_vxlan_ops, 0, many, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "more than 16 remotes"));
	/* The port is taken: the error names it. */
	int busy = udp_peer("127.0.0.1", 4789);
	CHECK_EQ(mkport(&p, &sw_vxlan_ops, 0, "vni=1 remote=127.0.0.2 local=127.0.0.1", err, sizeof(err)), -EADDRINUSE);
	CHECK(!strcmp(err, "dstport: bind 127.0.0.1:4789: Address already in use"));
	close(busy);
	/* Both ends of the ranges; the MTU is the route's less 50 unless given (lo: 65536, which IP_MTU reports as
	 * the largest IPv4 datagram, 65535). */
	CHECK_EQ(mkport(&p, &sw_vxlan_ops, 0, "vni=0 remote=127.0.0.2 dstport=1 src_ports=64", err, sizeof(err)), 0);
	CHECK_EQ(p.mtu, 65535 - 50);
	CHECK_EQ(p.n_rxq, 1);
	CHECK_EQ(p.n_txq, 1);
	CHECK(p.ops->link_up(&p));
	p.ops->destroy(&p);
	CHECK_EQ(mkport(&p, &sw_vxlan_ops, 1400, "vni=16777215 remote=127.0.0.2 dstport=65535 src_ports=1", err,
			sizeof(err)),
		 0);
	CHECK_EQ(p.mtu, 1400);
	struct sw_json_val *v = describe(&p);
	CHECK_EQ(sw_json_get(v, "vni")->num, 16777215);
	CHECK_EQ(sw_json_get(v, "dstport")->num, 65535);
	CHECK(!strcmp(sw_json_get(v, "local")->str, "0.0.0.0"));
	const struct sw_json_val *r = sw_json_get(v, "remotes");
	CHECK(r && r->type == SW_JSON_ARR && r->count == 1 && !strcmp(r->child->str, "127.0.0.2"));
	sw_json_val_free(v);
	p.ops->destroy(&p);
}

/* Encapsulation both ways, byte for byte: flooding of unknown and broadcast frames to every remote, learning
 * from what a remote sends, unicast to the learned VTEP only. */
static void test_vxlan_encap(void)
{
	struct sw_port p;
	int rs[2];
	vx_two_remotes(&p, rs);
	int r2 = rs[0], r3 = rs[1];
	struct vhd_pktpool *pool = mkpool(64, BUF);
	unsigned seed = 7;
	uint8_t f[1600], g[1600], b[200];
	test_frame(f, 1464, 1, &seed); /* an MTU-sized frame for a 1500-byte underlay */
	/* Unknown unicast: both remotes get it. */
	vx_tx1(&p, pool, f, 1464);
	vx_expect(r2, f, 1464, NULL);
	vx_expect(r3, f, 1464, NULL);
	/* Broadcast likewise. */
	test_frame(b, sizeof(b), 2, &seed);
	memset(b, 0xff, 6);
	vx_tx1(&p, pool, b, sizeof(b));
	vx_expect(r2, b, sizeof(b), NULL);
	vx_expect(r3, b, sizeof(b), NULL);
	CHECK_EQ(desc_num(&p, "tx_datagrams"), 4);
	CHECK_EQ(desc_num(&p, "learned"), 0);
	/* Remote .3 sends a frame from 02:aa:00:00:00:01 (f's destination): decapsulated exactly, learned. */
	test_frame(g, 60, 3, &seed);
	memcpy(g, f + 6, 6);
	memcpy(g + 6, f, 6);
	vx_send(r3, 0x08, VX_VNI, g, 60);
	struct vhd_pkt *k;
	CHECK_EQ(rx_wait(&p, pool, &k, 1, 2000), 1);
	check_bytes(vhd_pkt_data(k), k->len, g, 60, "vxlan rx");
	CHECK(!k->meta.flags && !k->meta.gso_type);
	vhd_pkt_free(k);
	CHECK_EQ(desc_num(&p, "learned"), 1);
	/* Now f goes to .3 alone; broadcast still to both. */
	vx_tx1(&p, pool, f, 1464);
	vx_expect(r3, f, 1464, NULL);
	vx_expect_none(r2);
	vx_tx1(&p, pool, b, sizeof(b));
	vx_expect(r2, b, sizeof(b), NULL);
	vx_expect(r3, b, sizeof(b), NULL);
	/* The MAC moves behind .2: learned again, f follows it. */
	vx_send(r2, 0x08, VX_VNI, g, 60);
	CHECK_EQ(rx_wait(&p, pool, &k, 1, 2000), 1);
	vhd_pkt_free(k);
	CHECK_EQ(desc_num(&p, "learn_moves"), 1);
	vx_tx1(&p, pool, f, 1464);
	vx_expect(r2, f, 1464, NULL);
	vx_expect_none(r3);
	CHECK_EQ(desc_num(&p, "tx_errors"), 0);
	p.ops->destroy(&p);
	CHECK_EQ(vhd_pktpool_avail(pool), 64);
	vhd_pktpool_destroy(pool);
	close(r2);
	close(r3);
}

/* Flows spread over the transmit sockets' source ports; one flow always leaves from the same port. */
static void test_vxlan_src_ports(void)
{
	vx_netns();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_vxlan_ops, 0, "vni=5001 remote=127.0.0.2 local=127.0.0.1 src_ports=8", err, sizeof(err)), 0);
	int r2 = udp_peer("127.0.0.2", 4789);
	struct vhd_pktpool *pool = mkpool(64, BUF);
	struct sw_json_val *v = describe(&p);
	const struct sw_json_val *ports = sw_json_get(v, "src_ports");
	CHECK(ports && ports->type == SW_JSON_ARR && ports->count == 8);
	uint16_t used[8] = {0};
	unsigned distinct = 0;
	for (unsigned flow = 0; flow < 32; flow++) {
		/* IPv4/UDP 10.0.0.1:flow -> 10.0.0.2:53, sent twice */
		uint8_t f[64] = {0x02, 0xaa, 0, 0, 0, 1, 0x02, 0xbb, 0, 0, 0, 2, 0x08, 0x00, 0x45, 0, 0, 50, 0, 0, 0x40, 0,
				 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, (uint8_t)(flow >> 8), (uint8_t)flow, 0, 53};
		uint16_t s1 = 0, s2 = 0;
		vx_tx1(&p, pool, f, sizeof(f));
		vx_expect(r2, f, sizeof(f), &s1);
		vx_tx1(&p, pool, f, sizeof(f));
		vx_expect(r2, f, sizeof(f), &s2);
		CHECK_EQ(s1, s2);
		bool known = false, listed = false;
		for (unsigned i = 0; i < distinct; i++)
			known |= used[i] == s1;
		for (const struct sw_json_val *e = ports->child; e; e = e->next)
			listed |= e->num == s1;
		CHECK(listed);
		if (!known)
			used[distinct++] = s1;
	}
	/* 32 flows over 8 ports: all in one would be a broken hash */
	CHECK(distinct >= 4);
	sw_json_val_free(v);
	p.ops->destroy(&p);
	vhd_pktpool_destroy(pool);
	close(r2);
}

/* What the receive side refuses, each counted, none passed on; good datagrams still come through; the VTEP
 * table stays within its fixed size whatever a remote sends. */
static void test_vxlan_hostile(void)
{
	vx_netns();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_vxlan_ops, 0, "vni=5001 remote=127.0.0.2 local=127.0.0.1", err, sizeof(err)), 0);
	int r2 = udp_peer("127.0.0.2", 4789), stranger = udp_peer("127.0.0.9", 4789);
	struct vhd_pktpool *pool = mkpool(64, BUF);
	unsigned seed = 9;
	uint8_t f[1600];
	test_frame(f, 1500, 1, &seed);
	vx_send(stranger, 0x08, VX_VNI, f, 100);       /* not a configured remote */
	vx_send(r2, 0x00, VX_VNI, f, 100);             /* I flag clear */
	vx_send(r2, 0x08, VX_VNI + 1, f, 100);         /* another VNI */
	vx_send(r2, 0x08, VX_VNI, f, 13);              /* runt inner frame */
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(4789)};
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	CHECK_EQ(sendto(r2, f, 5, 0, (struct sockaddr *)&to, sizeof(to)), 5); /* shorter than the header */
	CHECK_EQ(sendto(r2, f, 0, 0, (struct sockaddr *)&to, sizeof(to)), 0);  /* empty */
	vx_send(r2, 0x08, VX_VNI, f, 1500);             /* larger than the small pool's buffers below */
	vx_send(r2, 0xff, VX_VNI, f, 100);              /* reserved bits set: ignored on receipt (RFC 7348) */
	struct vhd_pktpool *small = mkpool(8, VHD_PKT_MIN_BUF_SIZE + 200);
	struct vhd_pkt *k;
	CHECK_EQ(rx_wait(&p, small, &k, 1, 2000), 1);
	check_bytes(vhd_pkt_data(k), k->len, f, 100, "after the refused ones");
	vhd_pkt_free(k);
	rx_none(&p, pool, 20);
	CHECK_EQ(desc_num(&p, "rx_unknown_remote"), 1);
	CHECK_EQ(desc_num(&p, "rx_bad_flags"), 1);
	CHECK_EQ(desc_num(&p, "rx_wrong_vni"), 1);
	CHECK_EQ(desc_num(&p, "rx_runts"), 3);
	CHECK_EQ(desc_num(&p, "rx_too_big"), 1);
	CHECK_EQ(desc_num(&p, "learned"), 1);
	CHECK_EQ(vhd_pktpool_avail(small), 8);
	/* 20000 source MACs: the table keeps at most its 8192 entries, and still learns the newest. */
	for (unsigned i = 0; i < 20000; i++) {
		f[6] = 0x02;
		f[7] = 0x77;
		f[8] = (uint8_t)(i >> 24);
		f[9] = (uint8_t)(i >> 16);
		f[10] = (uint8_t)(i >> 8);
		f[11] = (uint8_t)i;
		vx_send(r2, 0x08, VX_VNI, f, 60);
		if (i % 32 == 31) {
			struct vhd_pkt *ks[32];
			CHECK_EQ(rx_wait(&p, pool, ks, 32, 2000), 32);
			vhd_pkt_free_bulk(ks, 32);
		}
	}
	struct vhd_pkt *ks[32];
	CHECK_EQ(rx_wait(&p, pool, ks, 20000 % 32, 2000), 20000 % 32);
	vhd_pkt_free_bulk(ks, 20000 % 32);
	unsigned n = (unsigned)desc_num(&p, "learned");
	CHECK(n > 4096 && n <= 8192);
	p.ops->destroy(&p);
	CHECK_EQ(vhd_pktpool_avail(pool), 64);
	vhd_pktpool_destroy(pool);
	vhd_pktpool_destroy(small);
	close(r2);
	close(stranger);
}

/* The receive thread learns while another thread transmits (the forwarding threads' split): the VTEP table's
 * writer and readers race for real here, which is what the ThreadSanitizer build checks. Each frame sent is
 * one datagram to a remote, or one to each (flooded); all of them arrive, with the right header. */
struct vx_race {
	struct sw_port *p;
	struct vhd_pktpool *pool;
	_Atomic bool stop;
	_Atomic unsigned got;
};

static void *vx_race_rx(void *arg)
{
	struct vx_race *r = arg;
	struct vhd_pkt *k[32];
	while (!atomic_load(&r->stop)) {
		unsigned n = r->p->ops->rx_burst(r->p, 0, r->pool, k, 32);
		vhd_pkt_free_bulk(k, n);
		atomic_fetch_add(&r->got, n);
		if (!n)
			usleep(50);
	}
	return NULL;
}

static unsigned vx_drain(int fd, unsigned *bad)
{
	uint8_t d[2048];
	unsigned n = 0;
	for (;;) {
		ssize_t r = recv(fd, d, sizeof(d), MSG_DONTWAIT);
		if (r < 0)
			return n;
		n++;
		if (r != 8 + 60 || d[0] != 0x08 || d[6] != (VX_VNI & 0xff))
			(*bad)++;
	}
}

static void test_vxlan_learn_race(void)
{
	struct sw_port p;
	int rs[2];
	vx_two_remotes(&p, rs);
	struct vx_race race = {.p = &p, .pool = mkpool(256, BUF)};
	struct vhd_pktpool *txpool = mkpool(64, BUF);
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, vx_race_rx, &race), 0);
	/* at least 4 rounds of the 64 MACs, so that each moves */
	unsigned seed = 11, got = 0, bad = 0, rounds = (unsigned)th_scaled(4000);
	if (rounds < 256)
		rounds = 256;
	unsigned patience = 200 * th_timeout_scale(); /* 5 ms waits */
	uint8_t f[60];
	test_frame(f, sizeof(f), 0, &seed);
	for (unsigned i = 0; i < rounds; i++) {
		/* MAC i % 64 announced by remote (i / 64) % 2, so every MAC keeps moving between the two */
		uint8_t g[60];
		memcpy(g, f, sizeof(g));
		g[6] = 0x02, g[7] = 0x55, g[11] = (uint8_t)(i % 64);
		vx_send(rs[(i / 64) % 2], 0x08, VX_VNI, g, sizeof(g));
		memcpy(f, g + 6, 6); /* to that MAC */
		vx_tx1(&p, txpool, f, sizeof(f));
		got += vx_drain(rs[0], &bad) + vx_drain(rs[1], &bad);
	}
	for (unsigned t = 0; t < patience && (unsigned)desc_num(&p, "tx_datagrams") > got; t++) {
		usleep(5000);
		got += vx_drain(rs[0], &bad) + vx_drain(rs[1], &bad);
	}
	for (unsigned t = 0; t < 2 * patience && atomic_load(&race.got) < rounds; t++)
		usleep(5000);
	atomic_store(&race.stop, true);
	pthread_join(th, NULL);
	unsigned sent = (unsigned)desc_num(&p, "tx_datagrams");
	CHECK_EQ(bad, 0);
	CHECK_EQ(got, sent);
	CHECK(sent >= rounds && sent <= 2 * rounds);
	CHECK_EQ(desc_num(&p, "tx_errors") + desc_num(&p, "tx_full"), 0);
	CHECK_EQ(atomic_load(&race.got), rounds);
	CHECK_EQ(desc_num(&p, "learned"), 64);
	CHECK(desc_num(&p, "learn_moves") > 0);
	CHECK_EQ(desc_num(&p, "kernel_drops"), 0);
	p.ops->destroy(&p);
	CHECK_EQ(vhd_pktpool_avail(race.pool), 256);
	vhd_pktpool_destroy(race.pool);
	vhd_pktpool_destroy(txpool);
	close(rs[0]);
	close(rs[1]);
}

/* Datagrams the kernel drops for want of receive buffer while the port is not read are in kernel_drops: with
 * what the port then reads, every one sent is accounted for. */
static void test_vxlan_kernel_drops(void)
{
	struct sw_port p;
	int rs[2];
	vx_two_remotes(&p, rs);
	struct vhd_pktpool *pool = mkpool(64, BUF);
	unsigned seed = 13, sent = 20000, got = 0;
	uint8_t f[1400];
	test_frame(f, sizeof(f), 0, &seed);
	for (unsigned i = 0; i < sent; i++)
		vx_send(rs[0], 0x08, VX_VNI, f, sizeof(f));
	unsigned drops = (unsigned)desc_num(&p, "kernel_drops");
	CHECK(drops > 0);
	for (;;) {
		struct vhd_pkt *k[32];
		unsigned n = rx_wait(&p, pool, k, 32, 100);
		vhd_pkt_free_bulk(k, n);
		got += n;
		if (n < 32)
			break;
	}
	CHECK_EQ(got + drops, sent);
	p.ops->destroy(&p);
	vhd_pktpool_destroy(pool);
	close(rs[0]);
	close(rs[1]);
}

/* An empty socket makes the port skip a few polls (each read is a syscall), never more than 4 in a row: a
 * datagram waiting is read by the fifth poll at the latest, however long the socket was empty. */
static void test_vxlan_rx_backoff(void)
{
	struct sw_port p;
	int rs[2];
	vx_two_remotes(&p, rs);
	struct vhd_pktpool *pool = mkpool(64, BUF);
	struct vhd_pkt *k[32];
	for (unsigned i = 0; i < 100; i++)
		CHECK_EQ(p.ops->rx_burst(&p, 0, pool, k, 32), 0);
	uint8_t f[60];
	unsigned seed = 17;
	test_frame(f, sizeof(f), 0, &seed);
	for (unsigned round = 0; round < 3; round++) {
		vx_send(rs[1], 0x08, VX_VNI, f, sizeof(f));
		usleep(20000); /* on lo the datagram is queued before sendto returns; margin only */
		unsigned polls = 0, got = 0;
		while (!got && polls < 5) {
			got = p.ops->rx_burst(&p, 0, pool, k, 32);
			polls++;
		}
		CHECK_EQ(got, 1);
		check_bytes(vhd_pkt_data(k[0]), k[0]->len, f, sizeof(f), "after empty polls");
		vhd_pkt_free(k[0]);
		for (unsigned i = 0; i < 50; i++)
			CHECK_EQ(p.ops->rx_burst(&p, 0, pool, k, 32), 0);
	}
	p.ops->destroy(&p);
	CHECK_EQ(vhd_pktpool_avail(pool), 64);
	vhd_pktpool_destroy(pool);
	close(rs[0]);
	close(rs[1]);
}

/* A burst to one remote: with gso=on runs of equal frames leave in fewer sends (UDP_SEGMENT), the remote still
 * gets every datagram, in order and byte for byte, a shorter frame ending a run; gso=off sends one by one. */
static void vx_gso_case(const char *gso)
{
	enter_netns();
	struct sw_port p;
	char err[256], args[128];
	snprintf(args, sizeof(args), "vni=5001 remote=127.0.0.2 local=127.0.0.1 src_ports=1 gso=%s", gso);
	CHECK_EQ(mkport(&p, &sw_vxlan_ops, 0, args, err, sizeof(err)), 0);
	bool on = !strcmp(gso, "on");
	CHECK(desc_bool(&p, "gso") == on);
	int r2 = udp_peer("127.0.0.2", 4789);
	struct vhd_pktpool *pool = mkpool(64, BUF);
	unsigned seed = 19;
	enum { N = 32 };
	static const unsigned lens[N] = {1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 500, 1000,
					 1000, 1000, 1200, 1200, 60, 60, 60, 60, 60, 60, 60, 60, 1464, 1464, 1464,
					 1464, 1464, 1464, 1464, 100};
	uint8_t f[N][1600];
	struct vhd_pkt *k[N];
	for (unsigned i = 0; i < N; i++) {
		test_frame(f[i], lens[i], i, &seed);
		k[i] = mkpkt(pool, f[i], lens[i]);
	}
	CHECK_EQ(p.ops->tx_burst(&p, 0, k, N), N);
	for (unsigned i = 0; i < N; i++)
		vx_expect(r2, f[i], lens[i], NULL);
	vx_expect_none(r2);
	CHECK_EQ(desc_num(&p, "tx_datagrams"), N);
	CHECK_EQ(desc_num(&p, "tx_errors"), 0);
	/* runs: 10x1000+500, 3x1000+(1200 longer: new run) 2x1200+60, 7x60+(1464) 7x1464+100 */
	CHECK_EQ(desc_num(&p, "tx_sends"), on ? 5 : N);
	p.ops->destroy(&p);
	CHECK_EQ(vhd_pktpool_avail(pool), 64);
	vhd_pktpool_destroy(pool);
	close(r2);
}

static void test_vxlan_gso(void)
{
	vx_gso_case("on");
}

static void test_vxlan_gso_off(void)
{
	vx_gso_case("off");
}

/*
 * SEND_RARP (after a live migration): the port's next receive burst on queue 0 starts with the RARP from the MAC
 * asked for, before any ring is set up (so that the switch learns the MAC on this port and floods the broadcast),
 * and only once.
 */
static void test_vu_send_rarp(void)
{
	struct sw_port p;
	char err[256], a[128];
	snprintf(a, sizeof(a), "path=/tmp/vhd-test-rarp-%d.sock", getpid());
	CHECK_EQ(mkport(&p, &sw_vhost_user_ops, 1500, a, err, sizeof(err)), 0);
	int fe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/vhd-test-rarp-%d.sock", getpid());
	CHECK(connect(fe, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	p.ops->dispatch(&p); /* accepts */
	struct vhd_pktpool *pool;
	CHECK_EQ(vhd_pktpool_create(64, 2048, &pool), 0);
	struct vhd_pkt *pkts[SW_BURST];
	CHECK_EQ(p.ops->rx_burst(&p, 0, pool, pkts, SW_BURST), 0);
	static const uint8_t mac[6] = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};
	struct vhu_msg m = mk(VHOST_USER_SEND_RARP, 8);
	memcpy(&m.p.u64, mac, 6);
	CHECK_EQ(vhu_msg_send(fe, &m), 0);
	p.ops->dispatch(&p);
	CHECK_EQ(p.ops->rx_burst(&p, 1, pool, pkts, SW_BURST), 0); /* queue 0 only */
	CHECK_EQ(p.ops->rx_burst(&p, 0, pool, pkts, 1), 1);
	uint8_t want[60];
	CHECK_EQ(vhd_vu_build_rarp(mac, want), 60);
	CHECK_EQ(pkts[0]->len, 60);
	CHECK(!memcmp(vhd_pkt_data(pkts[0]), want, 60));
	CHECK(!memcmp(vhd_pkt_data(pkts[0]) + 6, mac, 6)); /* from the guest's MAC */
	vhd_pkt_free(pkts[0]);
	CHECK_EQ(p.ops->rx_burst(&p, 0, pool, pkts, SW_BURST), 0); /* once */
	close(fe);
	p.ops->destroy(&p);
	vhd_pktpool_destroy(pool);
}

/* sw_import_blob(): the checks every takeover starts with, each failure named. */
static void test_import_blob(void)
{
	struct {
		uint64_t magic;
		uint32_t version, x;
	} b = {0x1122334455667788ull, 3, 42}, out = {0};
	struct sw_port_import imp = {.blob = &b, .len = sizeof(b)};
	char err[256] = "";
	CHECK_EQ(sw_import_blob(&imp, "t", b.magic, 3, &out, sizeof(out), err, sizeof(err)), 0);
	CHECK(!memcmp(&out, &b, sizeof(b)));
	imp.len = sizeof(b) - 1;
	CHECK_EQ(sw_import_blob(&imp, "t", b.magic, 3, &out, sizeof(out), err, sizeof(err)), -EPROTO);
	CHECK(strstr(err, "t: taking over: a 15-byte state where 16 were due"));
	imp.len = sizeof(b);
	CHECK_EQ(sw_import_blob(&imp, "t", b.magic, 4, &out, sizeof(out), err, sizeof(err)), -EPROTONOSUPPORT);
	CHECK(strstr(err, "state version 3, this vhostd reads 4"));
	CHECK_EQ(sw_import_blob(&imp, "t", b.magic + 1, 3, &out, sizeof(out), err, sizeof(err)), -EPROTONOSUPPORT);
	CHECK(strstr(err, "bad magic"));
}

static const struct th_case cases[] = {
	{"vu_access_args", test_vu_access_args, 0},
	{"vu_send_rarp", test_vu_send_rarp, 0},
	{"import_blob", test_import_blob, 0},
	{"tap_args", test_tap_args, 0},
	{"tap_mac", test_tap_mac, 0},
	{"tap_rx", test_tap_rx, 0},
	{"tap_rx_offload", test_tap_rx_offload, 0},
	{"tap_rx_too_big", test_tap_rx_too_big, 0},
	{"tap_tx", test_tap_tx, 0},
	{"tap_csum_forward", test_tap_csum_forward, 0},
	{"tap_tso_segmented", test_tap_tso_segmented, 0},
	{"tap_tso_passthrough", test_tap_tso_passthrough, 0},
	{"tap_multiqueue", test_tap_multiqueue, 0},
	{"tap_lifecycle", test_tap_lifecycle, 0},
	{"afp_args", test_afp_args, 0},
	{"afp_rx", test_afp_rx, 0},
	{"afp_rx_plain", test_afp_rx_plain, 0},
	{"afp_tx", test_afp_tx, 0},
	{"afp_tx_plain", test_afp_tx_plain, 0},
	{"afp_burst", test_afp_burst, 0},
	{"afp_ignores_outgoing", test_afp_ignores_outgoing, 0},
	{"afp_offload", test_afp_offload, 0},
	{"afp_offload_off", test_afp_offload_off, 0},
	{"afp_offload_vlan", test_afp_offload_vlan, 0},
	{"afp_lifecycle", test_afp_lifecycle, 0},
	{"axp_args", test_axp_args, 0},
	{"axp_no_permission", test_axp_no_permission, 0},
	{"axp_no_program", test_axp_no_program, 0},
	{"axp_native", test_axp_native, 0},
	{"axp_generic", test_axp_generic, 0},
	{"axp_fallback", test_axp_fallback, 0},
	{"axp_burst", test_axp_burst, 0},
	{"axp_stack_csum", test_axp_stack_csum, 0},
	{"axp_stack_csum_generic", test_axp_stack_csum_generic, 0},
	{"axp_lifecycle", test_axp_lifecycle, 0},
	{"vxlan_args", test_vxlan_args, 0},
	{"vxlan_encap", test_vxlan_encap, 0},
	{"vxlan_src_ports", test_vxlan_src_ports, 0},
	{"vxlan_hostile", test_vxlan_hostile, 0},
	{"vxlan_learn_race", test_vxlan_learn_race, 0},
	{"vxlan_kernel_drops", test_vxlan_kernel_drops, 0},
	{"vxlan_rx_backoff", test_vxlan_rx_backoff, 0},
	{"vxlan_gso", test_vxlan_gso, 0},
	{"vxlan_gso_off", test_vxlan_gso_off, 0},
};

TH_MAIN("test_ports", cases)
