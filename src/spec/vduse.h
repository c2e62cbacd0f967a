/* SPDX-License-Identifier: MIT */
/*
 * VDUSE (vDPA Device in Userspace) and the vDPA generic-netlink family: the ioctls on /dev/vduse/control and
 * /dev/vduse/NAME, the request/response messages read and written on /dev/vduse/NAME, and the netlink command
 * and attribute numbers that attach a device to the vDPA bus. From Linux include/uapi/linux/vduse.h (API
 * version 0, the one Linux 5.15 to 6.12 all accept) and include/uapi/linux/vdpa.h.
 */
#ifndef VHD_SPEC_VDUSE_H
#define VHD_SPEC_VDUSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>

#define VDUSE_API_VERSION 0u
#define VDUSE_NAME_MAX    256
#define VDUSE_BASE        0x81

/* VDUSE_CREATE_DEV argument; the config space bytes follow it. */
struct vduse_dev_config {
	char name[VDUSE_NAME_MAX];
	uint32_t vendor_id;
	uint32_t device_id;
	uint64_t features;
	uint32_t vq_num;
	uint32_t vq_align;
	uint32_t reserved[13]; /* ngroups and nas (API version 1) are the first two: zero for version 0 */
	uint32_t config_size;
	uint8_t config[];
};
_Static_assert(sizeof(struct vduse_dev_config) == 336, "struct vduse_dev_config is 336 bytes");
_Static_assert(offsetof(struct vduse_dev_config, config_size) == 332, "config_size at 332");

/* An IOVA region [start, last] and where it lies in the file VDUSE_IOTLB_GET_FD returns. */
#define VDUSE_ACCESS_RO 1u
#define VDUSE_ACCESS_WO 2u
#define VDUSE_ACCESS_RW 3u
struct vduse_iotlb_entry {
	uint64_t offset;
	uint64_t start;
	uint64_t last;
	uint8_t perm;
};
_Static_assert(sizeof(struct vduse_iotlb_entry) == 32, "struct vduse_iotlb_entry is 32 bytes");

struct vduse_vq_config {
	uint32_t index;
	uint16_t max_size;
	uint16_t reserved1;
	uint32_t group; /* API version 1; zero here */
	uint16_t reserved2[10];
};
_Static_assert(sizeof(struct vduse_vq_config) == 32, "struct vduse_vq_config is 32 bytes");

struct vduse_vq_state_split {
	uint16_t avail_index;
};

struct vduse_vq_state_packed {
	uint16_t last_avail_counter;
	uint16_t last_avail_idx;
	uint16_t last_used_counter;
	uint16_t last_used_idx;
};

struct vduse_vq_info {
	uint32_t index;
	uint32_t num;
	uint64_t desc_addr;
	uint64_t driver_addr;
	uint64_t device_addr;
	union {
		struct vduse_vq_state_split split;
		struct vduse_vq_state_packed packed;
	};
	uint8_t ready;
};
_Static_assert(sizeof(struct vduse_vq_info) == 48, "struct vduse_vq_info is 48 bytes");
_Static_assert(offsetof(struct vduse_vq_info, ready) == 40, "vduse_vq_info.ready at 40");

struct vduse_vq_eventfd {
	uint32_t index;
	int32_t fd; /* -1: deassign */
};
_Static_assert(sizeof(struct vduse_vq_eventfd) == 8, "struct vduse_vq_eventfd is 8 bytes");

#define VDUSE_GET_API_VERSION   _IOR(VDUSE_BASE, 0x00, uint64_t)
#define VDUSE_SET_API_VERSION   _IOW(VDUSE_BASE, 0x01, uint64_t)
#define VDUSE_CREATE_DEV        _IOW(VDUSE_BASE, 0x02, struct vduse_dev_config)
#define VDUSE_DESTROY_DEV       _IOW(VDUSE_BASE, 0x03, char[VDUSE_NAME_MAX])
#define VDUSE_IOTLB_GET_FD      _IOWR(VDUSE_BASE, 0x10, struct vduse_iotlb_entry)
#define VDUSE_DEV_GET_FEATURES  _IOR(VDUSE_BASE, 0x11, uint64_t)
#define VDUSE_VQ_SETUP          _IOW(VDUSE_BASE, 0x14, struct vduse_vq_config)
#define VDUSE_VQ_GET_INFO       _IOWR(VDUSE_BASE, 0x15, struct vduse_vq_info)
#define VDUSE_VQ_SETUP_KICKFD   _IOW(VDUSE_BASE, 0x16, struct vduse_vq_eventfd)
#define VDUSE_VQ_INJECT_IRQ     _IOW(VDUSE_BASE, 0x17, uint32_t)

/* Messages on /dev/vduse/NAME: read a request, write the response with the same request_id. */
enum vduse_req_type {
	VDUSE_GET_VQ_STATE = 0,
	VDUSE_SET_STATUS = 1,
	VDUSE_UPDATE_IOTLB = 2,
};

struct vduse_vq_state {
	uint32_t index;
	union {
		struct vduse_vq_state_split split;
		struct vduse_vq_state_packed packed;
	};
};

struct vduse_iova_range {
	uint64_t start;
	uint64_t last;
};

struct vduse_dev_request {
	uint32_t type;
	uint32_t request_id;
	uint32_t reserved[4];
	union {
		struct vduse_vq_state vq_state;
		uint8_t status; /* struct vduse_dev_status */
		struct vduse_iova_range iova;
		uint32_t padding[32];
	};
};
_Static_assert(sizeof(struct vduse_dev_request) == 152, "struct vduse_dev_request is 152 bytes");

#define VDUSE_REQ_RESULT_OK     0u
#define VDUSE_REQ_RESULT_FAILED 1u
struct vduse_dev_response {
	uint32_t request_id;
	uint32_t result;
	uint32_t reserved[4];
	union {
		struct vduse_vq_state vq_state;
		uint32_t padding[32];
	};
};
_Static_assert(sizeof(struct vduse_dev_response) == 152, "struct vduse_dev_response is 152 bytes");

/* vDPA management over generic netlink (include/uapi/linux/vdpa.h). */
#define VDPA_GENL_NAME    "vdpa"
#define VDPA_GENL_VERSION 1
#define VDPA_CMD_DEV_NEW  3
#define VDPA_CMD_DEV_DEL  4
#define VDPA_ATTR_MGMTDEV_BUS_NAME 1 /* string */
#define VDPA_ATTR_MGMTDEV_DEV_NAME 2 /* string: "vduse" for VDUSE devices */
#define VDPA_ATTR_DEV_NAME         4 /* string */

/* virtio device id of a network card (virtio 1.2, 5). */
#define VIRTIO_ID_NET 1u

#endif
