/* SPDX-License-Identifier: MIT */
/* Negotiated features -> what the virtio-net data path does. */
#include <errno.h>

#include "net_impl.h"

static bool has(uint64_t f, unsigned bit)
{
	return f & VHD_BIT(bit);
}

int vhd_net_cfg_init(struct vhd_net_cfg *cfg, uint64_t f)
{
	/* Dependencies of 5.1.3.1 the checks below rely on: a GSO frame always carries NEEDS_CSUM, so any GSO
	 * feature needs the checksum feature of its direction; ECN qualifies TSO. */
	bool host_gso = has(f, VIRTIO_NET_F_HOST_TSO4) || has(f, VIRTIO_NET_F_HOST_TSO6) ||
			has(f, VIRTIO_NET_F_HOST_UFO) || has(f, VIRTIO_NET_F_HOST_USO);
	bool guest_gso = has(f, VIRTIO_NET_F_GUEST_TSO4) || has(f, VIRTIO_NET_F_GUEST_TSO6) ||
			 has(f, VIRTIO_NET_F_GUEST_UFO) || has(f, VIRTIO_NET_F_GUEST_USO4) ||
			 has(f, VIRTIO_NET_F_GUEST_USO6);
	if (host_gso && !has(f, VIRTIO_NET_F_CSUM))
		return -EINVAL;
	if (guest_gso && !has(f, VIRTIO_NET_F_GUEST_CSUM))
		return -EINVAL;
	if (has(f, VIRTIO_NET_F_HOST_ECN) && !has(f, VIRTIO_NET_F_HOST_TSO4) && !has(f, VIRTIO_NET_F_HOST_TSO6))
		return -EINVAL;
	if (has(f, VIRTIO_NET_F_GUEST_ECN) && !has(f, VIRTIO_NET_F_GUEST_TSO4) && !has(f, VIRTIO_NET_F_GUEST_TSO6))
		return -EINVAL;
	/* RSC_EXT changes what csum_start/csum_offset mean on receive (coalesced segment counts); we never
	 * coalesce and would have to set RSC_INFO on every GSO frame, so it must not be offered. */
	if (has(f, VIRTIO_NET_F_RSC_EXT))
		return -ENOTSUP;

	*cfg = (struct vhd_net_cfg){.features = f};
	/* 5.1.6: num_buffers is part of the header with VERSION_1, and legacy drivers present it only with
	 * MRG_RXBUF (5.1.6.1); HASH_REPORT appends hash_value, hash_report and padding_reserved. */
	if (has(f, VIRTIO_NET_F_HASH_REPORT))
		cfg->hdr_size = sizeof(struct virtio_net_hdr_v1_hash);
	else if (has(f, VIRTIO_F_VERSION_1) || has(f, VIRTIO_NET_F_MRG_RXBUF))
		cfg->hdr_size = sizeof(struct virtio_net_hdr_mrg_rxbuf);
	else
		cfg->hdr_size = sizeof(struct virtio_net_hdr);
	cfg->mrg_rxbuf = has(f, VIRTIO_NET_F_MRG_RXBUF);
	cfg->tx_csum = has(f, VIRTIO_NET_F_CSUM);
	cfg->rx_csum = has(f, VIRTIO_NET_F_GUEST_CSUM);
	cfg->tx_ecn = has(f, VIRTIO_NET_F_HOST_ECN);
	cfg->rx_ecn = has(f, VIRTIO_NET_F_GUEST_ECN);
	cfg->tx_exact_hdr_len = has(f, VIRTIO_NET_F_GUEST_HDRLEN);
	if (has(f, VIRTIO_NET_F_HOST_TSO4))
		cfg->tx_gso |= net_gso_bit(VIRTIO_NET_HDR_GSO_TCPV4);
	if (has(f, VIRTIO_NET_F_HOST_TSO6))
		cfg->tx_gso |= net_gso_bit(VIRTIO_NET_HDR_GSO_TCPV6);
	if (has(f, VIRTIO_NET_F_HOST_UFO))
		cfg->tx_gso |= net_gso_bit(VIRTIO_NET_HDR_GSO_UDP);
	if (has(f, VIRTIO_NET_F_HOST_USO))
		cfg->tx_gso |= net_gso_bit(VIRTIO_NET_HDR_GSO_UDP_L4);
	if (has(f, VIRTIO_NET_F_GUEST_TSO4))
		cfg->rx_gso |= net_gso_bit(VIRTIO_NET_HDR_GSO_TCPV4);
	if (has(f, VIRTIO_NET_F_GUEST_TSO6))
		cfg->rx_gso |= net_gso_bit(VIRTIO_NET_HDR_GSO_TCPV6);
	if (has(f, VIRTIO_NET_F_GUEST_UFO))
		cfg->rx_gso |= net_gso_bit(VIRTIO_NET_HDR_GSO_UDP);
	/* GSO_UDP_L4 goes to the driver if it takes USO for either IP version (5.1.6.4.2). */
	if (has(f, VIRTIO_NET_F_GUEST_USO4) || has(f, VIRTIO_NET_F_GUEST_USO6))
		cfg->rx_gso |= net_gso_bit(VIRTIO_NET_HDR_GSO_UDP_L4);
	return 0;
}

/* The header as a tap (IFF_VNET_HDR) and the kernel's other virtio-net users carry it: the shared helpers of the
 * data path, behind functions, so that code outside src/net needs none of its internals. */
_Static_assert(VHD_NET_HDR_SIZE == sizeof(struct virtio_net_hdr_mrg_rxbuf), "VHD_NET_HDR_SIZE");

void vhd_net_hdr_to_meta(const void *hdr, uint8_t flag_mask, struct vhd_net_meta *m)
{
	struct virtio_net_hdr h;
	memcpy(&h, hdr, sizeof(h));
	net_hdr_to_meta(&h, flag_mask, m);
}

void vhd_net_meta_to_hdr(const struct vhd_net_meta *m, void *hdr)
{
	struct virtio_net_hdr_v1_hash w;
	net_meta_to_hdr(m, m->flags, &w);
	memcpy(hdr, &w.h, VHD_NET_HDR_SIZE);
}

int vhd_net_csum_complete(struct vhd_pkt *p)
{
	if (!(p->meta.flags & VHD_NET_META_F_NEEDS_CSUM))
		return 0;
	if ((uint32_t)p->meta.csum_start + p->meta.csum_offset + 2 > p->len)
		return -EINVAL;
	net_csum_complete(p);
	return 0;
}
