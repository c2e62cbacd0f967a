/* SPDX-License-Identifier: MIT */
/*
 * The kernel's vhost-vdpa character device (/dev/vhost-vdpa-N): ioctls and the IOTLB messages written to the fd
 * (Linux include/uapi/linux/vhost.h and vhost_types.h), beyond the vhost ioctls it shares with vhost-net
 * (spec/vhost.h). The ring structs and struct vhost_iotlb_msg are the ones vhost-user carries too
 * (spec/vhost_user.h): the same layout on both wires.
 */
#ifndef VHD_SPEC_VHOST_VDPA_H
#define VHD_SPEC_VHOST_VDPA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>

#include "spec/vhost.h"
#include "spec/vhost_user.h"

/* What write() takes once VHOST_BACKEND_F_IOTLB_MSG_V2 is negotiated. */
#define VHOST_IOTLB_MSG_V2 0x2
struct vhost_msg_v2 {
	uint32_t type; /* VHOST_IOTLB_MSG_V2 */
	uint32_t asid; /* address space: 0 unless IOTLB_ASID is negotiated */
	union {
		struct vhost_iotlb_msg iotlb;
		uint8_t padding[64];
	};
};

struct vhost_vdpa_config {
	uint32_t off;
	uint32_t len;
	uint8_t buf[];
};

/* The IOVAs the device can use: [first, last], both inclusive. */
struct vhost_vdpa_iova_range {
	uint64_t first;
	uint64_t last;
};

/* Backend features: bit numbers. */
#define VHOST_BACKEND_F_IOTLB_MSG_V2 0x1
#define VHOST_BACKEND_F_IOTLB_BATCH  0x2

#define VHOST_SET_BACKEND_FEATURES  _IOW(VHOST_VIRTIO, 0x25, uint64_t)
#define VHOST_GET_BACKEND_FEATURES  _IOR(VHOST_VIRTIO, 0x26, uint64_t)
#define VHOST_VDPA_GET_DEVICE_ID    _IOR(VHOST_VIRTIO, 0x70, uint32_t)
#define VHOST_VDPA_GET_STATUS       _IOR(VHOST_VIRTIO, 0x71, uint8_t)
#define VHOST_VDPA_SET_STATUS       _IOW(VHOST_VIRTIO, 0x72, uint8_t)
#define VHOST_VDPA_GET_CONFIG       _IOR(VHOST_VIRTIO, 0x73, struct vhost_vdpa_config)
#define VHOST_VDPA_SET_VRING_ENABLE _IOW(VHOST_VIRTIO, 0x75, struct vhost_vring_state)
#define VHOST_VDPA_GET_VRING_NUM    _IOR(VHOST_VIRTIO, 0x76, uint16_t)
#define VHOST_VDPA_GET_IOVA_RANGE   _IOR(VHOST_VIRTIO, 0x78, struct vhost_vdpa_iova_range)
#define VHOST_VDPA_GET_CONFIG_SIZE  _IOR(VHOST_VIRTIO, 0x79, uint32_t)
#define VHOST_VDPA_GET_VQS_COUNT    _IOR(VHOST_VIRTIO, 0x80, uint32_t)

/* Device ids (virtio 1.2, 5): the one we drive. */
#define VIRTIO_ID_NET 1

_Static_assert(sizeof(struct vhost_iotlb_msg) == 32, "vhost_iotlb_msg is 32 bytes");
_Static_assert(sizeof(struct vhost_msg_v2) == 72, "vhost_msg_v2 is 72 bytes");
_Static_assert(offsetof(struct vhost_msg_v2, iotlb) == 8, "vhost_msg_v2.iotlb");
_Static_assert(offsetof(struct vhost_iotlb_msg, perm) == 24, "vhost_iotlb_msg.perm");
_Static_assert(sizeof(struct vhost_vdpa_config) == 8, "vhost_vdpa_config header is 8 bytes");
_Static_assert(sizeof(struct vhost_vdpa_iova_range) == 16, "vhost_vdpa_iova_range is 16 bytes");
/* The ioctl numbers encode these sizes: Linux's __u64/__u32/__u8 are ours. */
_Static_assert(VHOST_VDPA_GET_STATUS == 0x8001af71, "VHOST_VDPA_GET_STATUS");
_Static_assert(VHOST_SET_VRING_ADDR == 0x4028af11, "VHOST_SET_VRING_ADDR");

#endif
