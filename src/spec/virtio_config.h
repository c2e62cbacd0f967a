/* SPDX-License-Identifier: MIT */
/* Device-independent feature bits and device status bits (OASIS virtio 1.2, sections 2.1 and 6). */
#ifndef VHD_SPEC_VIRTIO_CONFIG_H
#define VHD_SPEC_VIRTIO_CONFIG_H

/* Device status field (2.1). */
#define VIRTIO_CONFIG_S_ACKNOWLEDGE        1u
#define VIRTIO_CONFIG_S_DRIVER             2u
#define VIRTIO_CONFIG_S_DRIVER_OK          4u
#define VIRTIO_CONFIG_S_FEATURES_OK        8u
#define VIRTIO_CONFIG_S_DEVICE_NEEDS_RESET 64u
#define VIRTIO_CONFIG_S_FAILED             128u

/* Reserved feature bits (6). Values are bit numbers, not masks. */
#define VIRTIO_F_NOTIFY_ON_EMPTY    24 /* legacy */
#define VIRTIO_F_ANY_LAYOUT         27 /* legacy */
#define VIRTIO_F_INDIRECT_DESC      28
#define VIRTIO_F_EVENT_IDX          29
#define VIRTIO_F_VERSION_1          32
#define VIRTIO_F_ACCESS_PLATFORM    33
#define VIRTIO_F_RING_PACKED        34
#define VIRTIO_F_IN_ORDER           35
#define VIRTIO_F_ORDER_PLATFORM     36
#define VIRTIO_F_SR_IOV             37
#define VIRTIO_F_NOTIFICATION_DATA  38
#define VIRTIO_F_NOTIF_CONFIG_DATA  39
#define VIRTIO_F_RING_RESET         40

#define VHD_BIT(n) (1ull << (n))

#endif
