/* SPDX-License-Identifier: MIT */
/*
 * The tap and af_packet switch ports, driven through their ops tables alone (no switch core), against the
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
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "ctl/json.h"
#include "harness.h"
#include "switch/port.h"
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
	CHECK(p.ops->link_up(&p));
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

/* What the port transmits comes out of vb byte for byte, and is never received back by the port. */
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
	uint8_t f[3][1600], got[2048];
	size_t len[3] = {60, 1514, 1000};
	struct vhd_pkt *k[3];
	for (unsigned i = 0; i < 3; i++) {
		test_frame(f[i], len[i], i, &seed);
		k[i] = mkpkt(pool, f[i], len[i]);
	}
	CHECK_EQ(p.ops->tx_burst(&p, 0, k, 3), 3);
	CHECK_EQ(vhd_pktpool_avail(pool), 64);
	for (unsigned i = 0; i < 3; i++) {
		ssize_t r = raw_recv(raw, got, sizeof(got), 2000, NULL);
		check_bytes(got, r > 0 ? (size_t)r : 0, f[i], len[i], "af_packet tx");
	}
	CHECK_EQ(raw_recv(raw, got, sizeof(got), 50, NULL), -1);
	rx_none(&p, pool, 50);
	/* Over the MTU (no VLAN tag) or over a ring slot: refused and counted, the others still go. */
	uint8_t big[4096];
	test_frame(big, sizeof(big), 9, &seed);
	struct vhd_pktpool *jumbo = mkpool(1, 8192);
	k[0] = mkpkt(jumbo, big, sizeof(big));
	k[1] = mkpkt(pool, f[0], len[0]);
	CHECK_EQ(p.ops->tx_burst(&p, 0, k, 2), 2);
	ssize_t r = raw_recv(raw, got, sizeof(got), 2000, NULL);
	check_bytes(got, r > 0 ? (size_t)r : 0, f[0], len[0], "after a refusal");
	CHECK_EQ(desc_num(&p, "tx_errors"), 1);
	CHECK_EQ(vhd_pktpool_avail(pool), 64);
	CHECK_EQ(vhd_pktpool_avail(jumbo), 1);
	p.ops->destroy(&p);
	close(raw);
	vhd_pktpool_destroy(pool);
	vhd_pktpool_destroy(jumbo);
}

static void test_afp_tx(void)
{
	afp_tx_case("ifname=va");
}

static void test_afp_tx_plain(void)
{
	afp_tx_case("ifname=va offloads=off qdisc_bypass=off");
}

/* 1000 frames of random sizes 60..1514 each way: all arrive, in order, intact. */
static void test_afp_burst(void)
{
	enum { N = 1000 };
	enter_netns();
	veth();
	struct sw_port p;
	char err[256];
	CHECK_EQ(mkport(&p, &sw_af_packet_ops, 0, "ifname=va", err, sizeof(err)), 0);
	struct vhd_pktpool *pool = mkpool(512, BUF);
	int raw = raw_socket("vb");
	static uint8_t f[N][1514];
	size_t len[N];
	unsigned seed = 7;
	for (unsigned i = 0; i < N; i++) {
		len[i] = 60 + (size_t)rand_r(&seed) % (1514 - 60 + 1);
		test_frame(f[i], len[i], i, &seed);
	}

	/* Port to vb, bursts of 32; whatever the ring does not take is offered again. */
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
			unsigned took = p.ops->tx_burst(&p, 0, k, n);
			vhd_pkt_free_bulk(k + took, n - took);
			sent += took;
		}
		ssize_t r;
		while ((r = raw_recv(raw, got, sizeof(got), sent < N ? 0 : 1000, NULL)) > 0) {
			check_bytes(got, (size_t)r, f[recvd], len[recvd], "tx burst");
			recvd++;
		}
	}
	CHECK_EQ(raw_recv(raw, got, sizeof(got), 50, NULL), -1);
	CHECK_EQ(vhd_pktpool_avail(pool), 512);

	/* vb to the port. */
	sent = recvd = 0;
	end = now_ms() + 20000;
	while (recvd < N) {
		CHECK(now_ms() < end);
		for (unsigned i = 0; i < 64 && sent < N && sent - recvd < 256; i++, sent++)
			raw_send(raw, f[sent], len[sent]);
		struct vhd_pkt *k[64];
		unsigned n = rx_wait(&p, pool, k, 64, sent < N ? 0 : 100);
		for (unsigned i = 0; i < n; i++) {
			CHECK(recvd < N);
			if (k[i]->len != len[recvd] || memcmp(vhd_pkt_data(k[i]), f[recvd], len[recvd]))
				fprintf(stderr, "frame %u: kernel_drops %.0f kernel_ring_full %.0f rx_too_big %.0f\n", recvd,
					desc_num(&p, "kernel_drops"), desc_num(&p, "kernel_ring_full"),
					desc_num(&p, "rx_too_big"));
			check_bytes(vhd_pkt_data(k[i]), k[i]->len, f[recvd], len[recvd], "rx burst");
			recvd++;
		}
		vhd_pkt_free_bulk(k, n);
	}
	rx_none(&p, pool, 50);
	CHECK_EQ(desc_num(&p, "kernel_drops"), 0);
	CHECK_EQ(vhd_pktpool_avail(pool), 512);
	p.ops->destroy(&p);
	vhd_pktpool_destroy(pool);
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

/* The kernel propagates a veth peer's carrier asynchronously (linkwatch): give it a second. */
static bool link_becomes(struct sw_port *p, bool up)
{
	for (int i = 0; i < 1000; i++) {
		if (p->ops->link_up(p) == up)
			return true;
		usleep(1000);
	}
	return false;
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
	for (unsigned i = 0; i < 200 && !p.ops->link_up(&p); i++)
		usleep(10000);
	CHECK(p.ops->link_up(&p));
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

static const struct th_case cases[] = {
	{"vu_access_args", test_vu_access_args, 0},
	{"vu_send_rarp", test_vu_send_rarp, 0},
	{"tap_args", test_tap_args, 0},
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
};

TH_MAIN("test_ports", cases)
