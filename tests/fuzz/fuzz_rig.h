/* SPDX-License-Identifier: MIT */
/*
 * What the ring harnesses share: one guest memory image (a single region at a guest address unlike its host
 * address), the ring-mode bits of their first input byte, and a driver queue plus a device queue over the same
 * ring at the image's start, the driver with an indirect area.
 */
#ifndef VHD_FUZZ_RIG_H
#define VHD_FUZZ_RIG_H

#include <stdint.h>
#include <stdlib.h>

#include "spec/virtio_config.h"
#include "vhostd/mem.h"
#include "vhostd/virtq.h"

/* An image of size bytes, seen by the device at guest address gpa. Returns 0 or -1. */
static inline int fz_image(size_t size, uint64_t gpa, uint8_t **img, struct vhd_mem **mem)
{
	*img = aligned_alloc(4096, size);
	if (!*img || vhd_mem_create(mem) < 0)
		return -1;
	struct vhd_mem_region_info r = {gpa, size, gpa, *img};
	return vhd_mem_add(*mem, &r) < 0 ? -1 : 0;
}

/* Mode bits 0-3: RING_PACKED, INDIRECT_DESC, EVENT_IDX, IN_ORDER. */
static inline uint64_t fz_ring_features(uint8_t mode)
{
	uint64_t f = 0;
	if (mode & 1)
		f |= VHD_BIT(VIRTIO_F_RING_PACKED);
	if (mode & 2)
		f |= VHD_BIT(VIRTIO_F_INDIRECT_DESC);
	if (mode & 4)
		f |= VHD_BIT(VIRTIO_F_EVENT_IDX);
	if (mode & 8)
		f |= VHD_BIT(VIRTIO_F_IN_ORDER);
	return f;
}

/*
 * Both ends of a queue of num entries laid out at img (lay receives the layout, which must end before ind_off),
 * the driver's indirect tables (ind_max entries each) at img + ind_off. Aborts on failure: the harness asked
 * for something it should not have.
 */
static inline void fz_queue_pair(uint8_t *img, uint64_t gpa, const struct vhd_mem *mem, uint64_t features,
				 unsigned num, size_t ind_off, uint16_t ind_max, struct vhd_vq_layout *lay,
				 struct vhd_vq **drv, struct vhd_vq **dev)
{
	bool packed = features & VHD_BIT(VIRTIO_F_RING_PACKED);
	if (vhd_vq_layout(packed, (uint16_t)num, lay) < 0 || lay->size > ind_off)
		abort();
	struct vhd_vq_config dc = {
		.side = VHD_VQ_DRIVER,
		.num = (uint16_t)num,
		.features = features,
		.desc = img + lay->desc_off,
		.driver = img + lay->driver_off,
		.device = img + lay->device_off,
		.base = packed ? VHD_VQ_PACKED_BASE_INIT : 0,
		.indirect = img + ind_off,
		.indirect_addr = gpa + ind_off,
		.indirect_max = ind_max,
		.name = "fuzz drv",
	};
	if (vhd_vq_create(&dc, drv) < 0)
		abort();
	struct vhd_vq_config vc = dc;
	vc.side = VHD_VQ_DEVICE;
	vc.mem = mem;
	vc.indirect = NULL;
	vc.name = "fuzz dev";
	if (vhd_vq_create(&vc, dev) < 0)
		abort();
}

#endif
