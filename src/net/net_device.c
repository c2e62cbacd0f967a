/* SPDX-License-Identifier: MIT */
/* The virtio-net device as every transport presents it: its features and config space. */
#include <string.h>

#include "net_impl.h"

uint64_t vhd_net_device_features(void)
{
	return VHD_BIT(VIRTIO_NET_F_MRG_RXBUF) | VHD_BIT(VIRTIO_NET_F_STATUS) | VHD_BIT(VIRTIO_NET_F_CSUM) |
	       VHD_BIT(VIRTIO_NET_F_GUEST_CSUM) | VHD_BIT(VIRTIO_NET_F_HOST_TSO4) | VHD_BIT(VIRTIO_NET_F_HOST_TSO6) |
	       VHD_BIT(VIRTIO_NET_F_GUEST_TSO4) | VHD_BIT(VIRTIO_NET_F_GUEST_TSO6);
}

_Static_assert(sizeof(struct virtio_net_config) == VHD_NET_CONFIG_SIZE, "the config space we write");

void vhd_net_device_config(const struct vhd_net_device_info *info, uint8_t out[VHD_NET_CONFIG_SIZE])
{
	struct virtio_net_config c;
	memset(&c, 0, sizeof(c));
	memcpy(c.mac, info->mac, sizeof(c.mac));
	c.status = vhd_cpu_to_le16(info->link_down ? 0 : VIRTIO_NET_S_LINK_UP);
	c.max_virtqueue_pairs = vhd_cpu_to_le16(info->max_queue_pairs);
	c.mtu = vhd_cpu_to_le16(info->mtu);
	c.speed = vhd_cpu_to_le32(UINT32_MAX); /* unknown */
	c.duplex = 0xff;                       /* unknown */
	memcpy(out, &c, sizeof(c));
}
