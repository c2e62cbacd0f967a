/* SPDX-License-Identifier: MIT */
/*
 * The kernel's vhost character devices (/dev/vhost-net, /dev/vhost-vdpa-N): ioctl numbers and the structs
 * that only they use, from Linux include/uapi/linux/vhost.h and vhost_types.h. vhost_vring_state and
 * vhost_vring_addr are shared with vhost-user, which took them from the kernel unchanged (spec/vhost_user.h).
 */
#ifndef VHD_SPEC_VHOST_H
#define VHD_SPEC_VHOST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>

#include "spec/vhost_user.h"

struct vhost_vring_file {
	uint32_t index;
	int32_t fd; /* -1 unbinds */
};

struct vhost_memory_region {
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	uint64_t flags_padding;
};

struct vhost_memory {
	uint32_t nregions;
	uint32_t padding;
	struct vhost_memory_region regions[];
};

#define VHOST_VIRTIO 0xAF
#define VHOST_GET_FEATURES _IOR(VHOST_VIRTIO, 0x00, uint64_t)
#define VHOST_SET_FEATURES _IOW(VHOST_VIRTIO, 0x00, uint64_t)
#define VHOST_SET_OWNER _IO(VHOST_VIRTIO, 0x01)
#define VHOST_RESET_OWNER _IO(VHOST_VIRTIO, 0x02)
#define VHOST_SET_MEM_TABLE _IOW(VHOST_VIRTIO, 0x03, struct vhost_memory)
#define VHOST_SET_VRING_NUM _IOW(VHOST_VIRTIO, 0x10, struct vhost_vring_state)
#define VHOST_SET_VRING_ADDR _IOW(VHOST_VIRTIO, 0x11, struct vhost_vring_addr)
#define VHOST_SET_VRING_BASE _IOW(VHOST_VIRTIO, 0x12, struct vhost_vring_state)
#define VHOST_GET_VRING_BASE _IOWR(VHOST_VIRTIO, 0x12, struct vhost_vring_state)
#define VHOST_SET_VRING_KICK _IOW(VHOST_VIRTIO, 0x20, struct vhost_vring_file)
#define VHOST_SET_VRING_CALL _IOW(VHOST_VIRTIO, 0x21, struct vhost_vring_file)
#define VHOST_NET_SET_BACKEND _IOW(VHOST_VIRTIO, 0x30, struct vhost_vring_file)

/* vhost feature bits that are not the device's: dirty logging, and vhost-net adding the virtio-net header
 * itself (for a back-end socket without one; our tap has IFF_VNET_HDR, so we never ask for it). */
#define VHOST_F_LOG_ALL 26
#define VHOST_NET_F_VIRTIO_NET_HDR 27

/* Where the vhost module says how many memory regions a device may have (ushort; 64 by default). */
#define VHOST_MAX_MEM_REGIONS_PARAM "/sys/module/vhost/parameters/max_mem_regions"

_Static_assert(sizeof(struct vhost_vring_file) == 8, "vhost_vring_file is 8 bytes");
_Static_assert(sizeof(struct vhost_memory_region) == 32, "vhost_memory_region is 32 bytes");
_Static_assert(sizeof(struct vhost_memory) == 8, "vhost_memory header is 8 bytes");
_Static_assert(offsetof(struct vhost_memory, regions) == 8, "vhost_memory.regions");
_Static_assert(VHOST_SET_MEM_TABLE == 0x4008af03, "VHOST_SET_MEM_TABLE");
_Static_assert(VHOST_NET_SET_BACKEND == 0x4008af30, "VHOST_NET_SET_BACKEND");
_Static_assert(VHOST_SET_VRING_ADDR == 0x4028af11, "VHOST_SET_VRING_ADDR");
_Static_assert(VHOST_GET_FEATURES == 0x8008af00, "VHOST_GET_FEATURES");

#endif
