/* SPDX-License-Identifier: MIT */
/*
 * vhost-net port: the kernel's vhost-net moving frames between our rings and a tap, the fast exception path to
 * the host's stack (what DPDK uses virtio-user over vhost-kernel for): the kernel's worker copies, not a
 * forwarding thread's syscalls as with a tap port.
 *
 *   vhost-net ifname=NAME [queues=N]
 *
 * The tap NAME is created if missing (IFF_MULTI_QUEUE with N > 1, one queue per pair, each with its own
 * /dev/vhost-net) and brought up; its address is the host's to give. A tap deleted under traffic takes the
 * port down (logged, counted in downs); it comes back on a fresh tap after the back-off. The data path is the
 * virtio-user port's (switch/port_virtio_user.h): this file only parses and picks the transport.
 */
#include <net/if.h>
#include <stdio.h>

#include "switch/port.h"
#include "switch/port_virtio_user.h"

static int vhn_create(struct sw_port *p, const struct sw_kv *args, unsigned nargs, char *err, size_t errlen)
{
	static const char *const known[] = {"ifname", "queues", NULL};
	int rc = sw_kv_check(args, nargs, known, "vhost-net", err, errlen);
	if (rc < 0)
		return rc;
	char ifname[IFNAMSIZ];
	if ((rc = sw_kv_required(args, nargs, "ifname", "the tap interface", ifname, sizeof(ifname), err, errlen)) <
	    0)
		return rc;
	struct vup_params a = {.transport = VHD_FE_TRANSPORT_VHOST_KERNEL, .path = "/dev/vhost-net", .tap = ifname,
			       .mrg = true};
	if ((rc = sw_kv_uint(args, nargs, "queues", 1, 1, SW_MAX_QUEUES, &a.queues, err, errlen)) < 0)
		return rc;
	return vup_open(p, &a, err, errlen);
}

const struct sw_port_ops sw_vhost_net_ops = VUP_PORT_OPS("vhost-net", vhn_create);
