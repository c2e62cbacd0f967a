/* SPDX-License-Identifier: MIT */
/* virtio-net device: feature bits, config space and per-packet header (OASIS virtio 1.2, section 5.1). */
#ifndef VHD_SPEC_VIRTIO_NET_H
#define VHD_SPEC_VIRTIO_NET_H

#include <stddef.h>
#include <stdint.h>

/* Feature bits (5.1.3). Values are bit numbers. */
#define VIRTIO_NET_F_CSUM                0
#define VIRTIO_NET_F_GUEST_CSUM          1
#define VIRTIO_NET_F_CTRL_GUEST_OFFLOADS 2
#define VIRTIO_NET_F_MTU                 3
#define VIRTIO_NET_F_MAC                 5
#define VIRTIO_NET_F_GUEST_TSO4          7
#define VIRTIO_NET_F_GUEST_TSO6          8
#define VIRTIO_NET_F_GUEST_ECN           9
#define VIRTIO_NET_F_GUEST_UFO           10
#define VIRTIO_NET_F_HOST_TSO4           11
#define VIRTIO_NET_F_HOST_TSO6           12
#define VIRTIO_NET_F_HOST_ECN            13
#define VIRTIO_NET_F_HOST_UFO            14
#define VIRTIO_NET_F_MRG_RXBUF           15
#define VIRTIO_NET_F_STATUS              16
#define VIRTIO_NET_F_CTRL_VQ             17
#define VIRTIO_NET_F_CTRL_RX             18
#define VIRTIO_NET_F_CTRL_VLAN           19
#define VIRTIO_NET_F_CTRL_RX_EXTRA       20
#define VIRTIO_NET_F_GUEST_ANNOUNCE      21
#define VIRTIO_NET_F_MQ                  22
#define VIRTIO_NET_F_CTRL_MAC_ADDR       23
#define VIRTIO_NET_F_GUEST_USO4          54
#define VIRTIO_NET_F_GUEST_USO6          55
#define VIRTIO_NET_F_HOST_USO            56
#define VIRTIO_NET_F_HASH_REPORT         57
#define VIRTIO_NET_F_GUEST_HDRLEN        59
#define VIRTIO_NET_F_RSS                 60
#define VIRTIO_NET_F_RSC_EXT             61
#define VIRTIO_NET_F_STANDBY             62
#define VIRTIO_NET_F_SPEED_DUPLEX        63

/* Config space status field (5.1.4). */
#define VIRTIO_NET_S_LINK_UP  1u
#define VIRTIO_NET_S_ANNOUNCE 2u

/* Device configuration layout (5.1.4), the fields up to and including the RSS/hash parameters. */
struct virtio_net_config {
	uint8_t mac[6];
	uint16_t status;
	uint16_t max_virtqueue_pairs;
	uint16_t mtu;
	uint32_t speed;
	uint8_t duplex;
	uint8_t rss_max_key_size;
	uint16_t rss_max_indirection_table_length;
	uint32_t supported_hash_types;
} __attribute__((packed));

/* Per-packet header flags and gso types (5.1.6). */
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1u
#define VIRTIO_NET_HDR_F_DATA_VALID 2u
#define VIRTIO_NET_HDR_F_RSC_INFO   4u
#define VIRTIO_NET_HDR_GSO_NONE     0u
#define VIRTIO_NET_HDR_GSO_TCPV4    1u
#define VIRTIO_NET_HDR_GSO_UDP      3u
#define VIRTIO_NET_HDR_GSO_TCPV6    4u
#define VIRTIO_NET_HDR_GSO_UDP_L4   5u
#define VIRTIO_NET_HDR_GSO_ECN      0x80u

/* Header without num_buffers: legacy drivers that negotiated neither VERSION_1 nor MRG_RXBUF. */
struct virtio_net_hdr {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
};

/* Header used with VERSION_1 or MRG_RXBUF (num_buffers is 1 unless mergeable buffers were used). */
struct virtio_net_hdr_mrg_rxbuf {
	struct virtio_net_hdr hdr;
	uint16_t num_buffers;
};

/* The largest header (virtio 1.3, 5.1.6): virtio_net_hdr_v1_hash, used with HASH_REPORT. hash_report 0 is
 * VIRTIO_NET_HASH_REPORT_NONE. */
struct virtio_net_hdr_v1_hash {
	struct virtio_net_hdr_mrg_rxbuf h;
	uint32_t hash_value;
	uint16_t hash_report;
	uint16_t padding_reserved;
};

/* Control virtqueue command header and ack values (5.1.6.5). */
struct virtio_net_ctrl_hdr {
	uint8_t class;
	uint8_t cmd;
};
#define VIRTIO_NET_OK  0u
#define VIRTIO_NET_ERR 1u
#define VIRTIO_NET_CTRL_MAC                1
#define VIRTIO_NET_CTRL_MAC_ADDR_SET       1
#define VIRTIO_NET_CTRL_MQ                 4
#define VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET    0
#define VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN    1
#define VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX    0x8000
#define VIRTIO_NET_CTRL_ANNOUNCE           3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK       0

_Static_assert(offsetof(struct virtio_net_config, status) == 6, "virtio_net_config.status");
_Static_assert(offsetof(struct virtio_net_config, max_virtqueue_pairs) == 8, "virtio_net_config.max_vq_pairs");
_Static_assert(offsetof(struct virtio_net_config, mtu) == 10, "virtio_net_config.mtu");
_Static_assert(offsetof(struct virtio_net_config, speed) == 12, "virtio_net_config.speed");
_Static_assert(offsetof(struct virtio_net_config, duplex) == 16, "virtio_net_config.duplex");
_Static_assert(offsetof(struct virtio_net_config, rss_max_key_size) == 17, "virtio_net_config.rss_max_key_size");
_Static_assert(offsetof(struct virtio_net_config, supported_hash_types) == 20, "virtio_net_config.hash_types");
_Static_assert(sizeof(struct virtio_net_config) == 24, "virtio_net_config is 24 bytes");
_Static_assert(sizeof(struct virtio_net_hdr) == 10, "virtio_net_hdr is 10 bytes");
_Static_assert(offsetof(struct virtio_net_hdr, hdr_len) == 2, "virtio_net_hdr.hdr_len");
_Static_assert(offsetof(struct virtio_net_hdr, gso_size) == 4, "virtio_net_hdr.gso_size");
_Static_assert(offsetof(struct virtio_net_hdr, csum_start) == 6, "virtio_net_hdr.csum_start");
_Static_assert(offsetof(struct virtio_net_hdr, csum_offset) == 8, "virtio_net_hdr.csum_offset");
_Static_assert(sizeof(struct virtio_net_hdr_mrg_rxbuf) == 12, "virtio_net_hdr_mrg_rxbuf is 12 bytes");
_Static_assert(offsetof(struct virtio_net_hdr_mrg_rxbuf, num_buffers) == 10, "num_buffers at 10");
_Static_assert(sizeof(struct virtio_net_hdr_v1_hash) == 20, "virtio_net_hdr_v1_hash is 20 bytes");
_Static_assert(offsetof(struct virtio_net_hdr_v1_hash, hash_report) == 16, "hash_report at 16");
_Static_assert(sizeof(struct virtio_net_ctrl_hdr) == 2, "virtio_net_ctrl_hdr is 2 bytes");

#endif
