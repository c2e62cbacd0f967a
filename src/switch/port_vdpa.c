/* SPDX-License-Identifier: MIT */
/*
 * vdpa port: a vDPA device as a switch port, through the kernel's vhost-vdpa: a SmartNIC's virtio data path,
 * or a software device (vdpa_sim_net, VDUSE).
 *
 *   vdpa path=/dev/vhost-vdpa-N [queues=N] [packed] [mrg=on|off]
 *
 * Our memory is mapped into the device's IOTLB, every status write is read back, and a device that goes away
 * is reopened after the back-off (src/frontend/vdpa_transport.c). `vdpa dev del` waits in the kernel until the
 * port lets go of the device: delete the port first. The data path is the virtio-user port's
 * (switch/port_virtio_user.h): this file only parses and picks the transport.
 */
#include "switch/port.h"
#include "switch/port_virtio_user.h"

static int vdpa_create(struct sw_port *p, const struct sw_kv *args, unsigned nargs, char *err, size_t errlen)
{
	static const char *const known[] = {"path", "queues", "packed", "mrg", NULL};
	int rc = sw_kv_check(args, nargs, known, "vdpa", err, errlen);
	if (rc < 0)
		return rc;
	char path[108];
	if ((rc = sw_kv_required(args, nargs, "path", "the /dev/vhost-vdpa-N device", path, sizeof(path), err,
				 errlen)) < 0)
		return rc;
	struct vup_params a = {
		.transport = VHD_FE_TRANSPORT_VHOST_VDPA,
		.path = path,
		.packed = sw_kv_get(args, nargs, "packed", NULL) != NULL,
	};
	if ((rc = sw_kv_uint(args, nargs, "queues", 1, 1, SW_MAX_QUEUES, &a.queues, err, errlen)) < 0 ||
	    (rc = sw_kv_on_off(args, nargs, "mrg", true, &a.mrg, err, errlen)) < 0)
		return rc;
	return vup_open(p, &a, err, errlen);
}

const struct sw_port_ops sw_vdpa_ops = VUP_PORT_OPS("vdpa", vdpa_create);
