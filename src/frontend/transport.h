/* SPDX-License-Identifier: MIT */
/*
 * Driver-side transports behind one ops table. Each op mirrors one vhost request (the vhost-user message or
 * the /dev/vhost-* ioctl of the same name), so the frontend's setup sequence is written once and vhost-user,
 * vhost-kernel and vhost-vdpa differ only here.
 */
#ifndef VHD_FRONTEND_TRANSPORT_H
#define VHD_FRONTEND_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

struct vhd_fe_transport;

/* One region of the frontend's memory the device must map. The frontend uses its virtual addresses as guest
 * addresses (as DPDK's virtio-user does), so user_addr == guest_addr. */
struct vhd_fe_region {
	uint64_t addr;
	uint64_t size;
	int fd;
	uint64_t fd_offset;
};

struct vhd_fe_transport_ops {
	const char *name;
	int (*get_features)(struct vhd_fe_transport *t, uint64_t *features);
	int (*set_features)(struct vhd_fe_transport *t, uint64_t features);
	/* vhost-user only; others leave it NULL. */
	int (*negotiate_protocol)(struct vhd_fe_transport *t, uint64_t wanted, uint64_t *got);
	int (*get_queue_num)(struct vhd_fe_transport *t, uint64_t *pairs);
	int (*set_owner)(struct vhd_fe_transport *t);
	int (*set_mem_table)(struct vhd_fe_transport *t, const struct vhd_fe_region *r, unsigned n);
	int (*set_vring_num)(struct vhd_fe_transport *t, unsigned q, unsigned num);
	int (*set_vring_base)(struct vhd_fe_transport *t, unsigned q, unsigned base);
	int (*get_vring_base)(struct vhd_fe_transport *t, unsigned q, unsigned *base);
	int (*set_vring_addr)(struct vhd_fe_transport *t, unsigned q, uint64_t desc, uint64_t avail, uint64_t used);
	int (*set_vring_kick)(struct vhd_fe_transport *t, unsigned q, int fd);
	int (*set_vring_call)(struct vhd_fe_transport *t, unsigned q, int fd);
	int (*set_vring_enable)(struct vhd_fe_transport *t, unsigned q, bool on);
	int (*set_status)(struct vhd_fe_transport *t, uint8_t status);
	void (*close)(struct vhd_fe_transport *t);
};

struct vhd_fe_transport {
	const struct vhd_fe_transport_ops *ops;
	int fd;                /* socket or /dev/vhost-* fd */
	uint64_t protocol;     /* vhost-user protocol features agreed */
	unsigned timeout_ms;   /* per reply */
	const char *name;
};

/* Connected vhost-user transport over an already-connected socket (takes ownership of sock). */
void vhd_fe_vu_transport_init(struct vhd_fe_transport *t, int sock, const char *name);

#endif
