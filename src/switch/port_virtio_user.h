/* SPDX-License-Identifier: MIT */
/*
 * The frontend as a switch port, shared by the port types built on it: virtio-user (a vhost-user device),
 * vhost-net (the kernel's vhost-net with a tap: the fast exception path to the host's stack) and vdpa (a vDPA
 * device through the kernel's vhost-vdpa). They differ in
 * what they parse and which transport they ask for; the data path and the control hooks are one.
 */
#ifndef VHD_SWITCH_PORT_VIRTIO_USER_H
#define VHD_SWITCH_PORT_VIRTIO_USER_H

#include <stdbool.h>
#include <stddef.h>

#include "switch/port.h"
#include "vhostd/frontend.h"

struct vup_params {
	enum vhd_fe_transport_kind transport; /* how the frontend reaches the device (never AUTO) */
	const char *path; /* the vhost-user socket, or /dev/vhost-net */
	const char *tap;  /* vhost-net's tap (created if missing, link brought up); NULL for vhost-user */
	unsigned queues;
	bool server, packed, mrg, iommu;
	bool inflight;             /* split rings: inflight tracking across back-end restarts (vhost-user) */
	unsigned reply_timeout_ms; /* per reply and stalled message (vhost-user); 0: the library's default */
};

/* Create the frontend and pools behind p (p->priv). 0, or -errno with err filled. Control thread. */
int vup_open(struct sw_port *p, const struct vup_params *a, char *err, size_t errlen);

void vup_destroy(struct sw_port *p);
unsigned vup_pollfds(struct sw_port *p, struct pollfd *fds, unsigned max);
int vup_timeout_ms(struct sw_port *p);
void vup_dispatch(struct sw_port *p);
bool vup_link_up(struct sw_port *p);
void vup_describe(struct sw_port *p, struct sw_json *w);
unsigned vup_rx_burst(struct sw_port *p, unsigned qn, struct vhd_pktpool *pool, struct vhd_pkt **pkts, unsigned n);
unsigned vup_tx_burst(struct sw_port *p, unsigned qn, struct vhd_pkt **pkts, unsigned n);
int vup_rx_arm(struct sw_port *p, unsigned qn, struct pollfd *pfd);
void vup_rx_disarm(struct sw_port *p, unsigned qn, short revents);

/* The ops table of a port type built on the frontend: only its name and its argument parsing differ. */
#define VUP_PORT_OPS(type_name, create_fn)                                                                     \
	{                                                                                                        \
		.type = (type_name), .create = (create_fn), .destroy = vup_destroy, .pollfds = vup_pollfds,      \
		.timeout_ms = vup_timeout_ms, .dispatch = vup_dispatch, .link_up = vup_link_up,                  \
		.describe = vup_describe, .rx_burst = vup_rx_burst, .rx_arm = vup_rx_arm,                        \
		.rx_disarm = vup_rx_disarm, .tx_burst = vup_tx_burst,                                            \
	}

#endif
