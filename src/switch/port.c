/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "switch/port.h"

const struct sw_port_ops *sw_port_type(const char *name)
{
	static const struct sw_port_ops *const types[] = {&sw_vhost_user_ops, &sw_virtio_user_ops, &sw_tap_ops,
							    &sw_af_packet_ops, &sw_af_xdp_ops, &sw_vxlan_ops,
							    &sw_vduse_ops, &sw_vhost_net_ops, &sw_vdpa_ops};
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (!strcmp(types[i]->type, name))
			return types[i];
	return NULL;
}

const char *sw_kv_get(const struct sw_kv *args, unsigned nargs, const char *key, const char *def)
{
	for (unsigned i = 0; i < nargs; i++)
		if (!strcmp(args[i].key, key))
			return args[i].value;
	return def;
}

int sw_kv_uint(const struct sw_kv *args, unsigned nargs, const char *key, unsigned def, unsigned min, unsigned max,
	       unsigned *out, char *err, size_t errlen)
{
	const char *v = sw_kv_get(args, nargs, key, NULL);
	if (!v) {
		*out = def;
		return 0;
	}
	char *end;
	errno = 0;
	unsigned long x = strtoul(v, &end, 10);
	if (!*v || *end || errno || v[0] == '-' || x < min || x > max) {
		snprintf(err, errlen, "%s=%s: want a number in %u..%u", key, v, min, max);
		return -EINVAL;
	}
	*out = (unsigned)x;
	return 0;
}

int sw_kv_on_off(const struct sw_kv *args, unsigned nargs, const char *key, bool def, bool *out, char *err,
		 size_t errlen)
{
	const char *v = sw_kv_get(args, nargs, key, NULL);
	if (!v)
		*out = def;
	else if (!strcmp(v, "on"))
		*out = true;
	else if (!strcmp(v, "off"))
		*out = false;
	else {
		snprintf(err, errlen, "%s=%s: want on or off", key, v);
		return -EINVAL;
	}
	return 0;
}

int sw_kv_check(const struct sw_kv *args, unsigned nargs, const char *const *known, const char *type, char *err,
		size_t errlen)
{
	for (unsigned i = 0; i < nargs; i++) {
		unsigned k = 0;
		while (known[k] && strcmp(known[k], args[i].key))
			k++;
		if (!known[k]) {
			size_t used = (size_t)snprintf(err, errlen, "%s: unknown argument for a %s port (want", args[i].key,
						       type);
			for (k = 0; known[k] && used < errlen; k++)
				used += (size_t)snprintf(err + used, errlen - used, " %s", known[k]);
			if (used < errlen)
				snprintf(err + used, errlen - used, ")");
			return -EINVAL;
		}
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(args[j].key, args[i].key)) {
				snprintf(err, errlen, "%s: given twice", args[i].key);
				return -EINVAL;
			}
	}
	return 0;
}

int sw_kv_required(const struct sw_kv *args, unsigned nargs, const char *key, const char *what, char *buf,
		   size_t size, char *err, size_t errlen)
{
	const char *v = sw_kv_get(args, nargs, key, NULL);
	if (!v || !*v) {
		snprintf(err, errlen, "%s: required (%s)", key, what);
		return -EINVAL;
	}
	if (strlen(v) >= size) {
		snprintf(err, errlen, "%s=%s: longer than %zu characters", key, v, size - 1);
		return -EINVAL;
	}
	snprintf(buf, size, "%s", v);
	return 0;
}

int sw_import_blob(const struct sw_port_import *imp, const char *type, uint64_t magic, uint32_t version, void *out,
		   size_t size, char *err, size_t errlen)
{
	if (imp->len != size || size < sizeof(uint64_t) + sizeof(uint32_t)) {
		snprintf(err, errlen, "%s: taking over: a %zu-byte state where %zu were due", type, imp->len, size);
		return -EPROTO;
	}
	uint64_t m;
	uint32_t v;
	memcpy(&m, imp->blob, sizeof(m));
	memcpy(&v, (const uint8_t *)imp->blob + sizeof(m), sizeof(v));
	if (m != magic || v != version) {
		snprintf(err, errlen, "%s: taking over: state %sversion %u, this vhostd reads %u", type,
			 m != magic ? "(bad magic) " : "", v, version);
		return -EPROTONOSUPPORT;
	}
	memcpy(out, imp->blob, size);
	return 0;
}

void sw_gate_close(struct sw_gate *g, unsigned queues)
{
	atomic_store(&g->open, 0); /* seq_cst: pairs with sw_gate_enter() */
	for (unsigned q = 0; q < queues && q < SW_MAX_QUEUES; q++)
		while (atomic_load(&g->rx[q].busy) || atomic_load(&g->tx[q].busy))
			sched_yield();
}

void sw_gate_open(struct sw_gate *g)
{
	atomic_store(&g->open, 1); /* seq_cst like the close: what was set before is seen by the bursts let in */
}

int sw_fd_arm(int fd, struct pollfd *pfd)
{
	*pfd = (struct pollfd){.fd = fd, .events = POLLIN};
	return 0;
}

void sw_fd_disarm(struct sw_port *p, unsigned q, short revents)
{
	(void)p, (void)q, (void)revents; /* the socket stays readable until the next rx_burst reads it */
}

void sw_eventfd_drain(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	uint64_t v;
	if (fd >= 0 && poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN))
		(void)!read(fd, &v, sizeof(v));
}

unsigned sw_no_pollfds(struct sw_port *p, struct pollfd *fds, unsigned max)
{
	(void)p;
	(void)fds;
	(void)max;
	return 0;
}

int sw_no_timeout_ms(struct sw_port *p)
{
	(void)p;
	return -1;
}

void sw_no_dispatch(struct sw_port *p)
{
	(void)p;
}

int sw_iface_ioctl(int fd, int ifindex, unsigned long req, struct ifreq *ifr)
{
	memset(ifr, 0, sizeof(*ifr));
	ifr->ifr_ifindex = ifindex;
	if (ioctl(fd, SIOCGIFNAME, ifr) < 0)
		return -errno;
	return ioctl(fd, req, ifr) < 0 ? -errno : 0;
}

int sw_iface_ethernet(int fd, const char *ifname, int *ifindex, unsigned *mtu, char *err, size_t errlen)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) {
		int rc = -errno;
		snprintf(err, errlen, "ifname=%s: %s", ifname, rc == -ENODEV ? "no such interface" : strerror(-rc));
		return rc;
	}
	*ifindex = ifr.ifr_ifindex;
	int rc = sw_iface_ioctl(fd, *ifindex, SIOCGIFHWADDR, &ifr);
	if (rc < 0) {
		snprintf(err, errlen, "ifname=%s: SIOCGIFHWADDR: %s", ifname, strerror(-rc));
		return rc;
	}
	if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
		snprintf(err, errlen, "ifname=%s: not an Ethernet interface", ifname);
		return -EINVAL;
	}
	if ((rc = sw_iface_ioctl(fd, *ifindex, SIOCGIFMTU, &ifr)) < 0) {
		snprintf(err, errlen, "ifname=%s: SIOCGIFMTU: %s", ifname, strerror(-rc));
		return rc;
	}
	*mtu = (unsigned)ifr.ifr_mtu;
	return 0;
}

bool sw_iface_up(int fd, int ifindex, _Atomic uint32_t *mtu)
{
	struct ifreq ifr;
	if (sw_iface_ioctl(fd, ifindex, SIOCGIFMTU, &ifr) == 0)
		atomic_store_explicit(mtu, (uint32_t)ifr.ifr_mtu, memory_order_relaxed);
	if (sw_iface_ioctl(fd, ifindex, SIOCGIFFLAGS, &ifr) < 0)
		return false;
	return (ifr.ifr_flags & (IFF_UP | IFF_RUNNING)) == (IFF_UP | IFF_RUNNING);
}

int sw_parse_mac(const char *type, const char *v, uint8_t mac[6], char *err, size_t errlen)
{
	unsigned b[6];
	char tail;
	if (sscanf(v, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6 ||
	    strlen(v) != 17) {
		snprintf(err, errlen, "%s: mac=%s: want six hex bytes, e.g. 02:00:00:00:00:01", type, v);
		return -EINVAL;
	}
	for (unsigned i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
	if (mac[0] & 1 || !(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5])) {
		snprintf(err, errlen, "%s: mac=%s: a multicast or all-zero address cannot be an interface's", type, v);
		return -EINVAL;
	}
	return 0;
}
