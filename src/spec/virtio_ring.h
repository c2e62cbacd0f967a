/* SPDX-License-Identifier: MIT */
/*
 * Virtqueue wire layouts: split ring (OASIS virtio 1.2, section 2.7) and packed ring (section 2.8).
 *
 * This header and its siblings in src/spec/ are the only places in vhostd that define virtio or vhost wire
 * structures. Every field is little-endian on the wire (VIRTIO_F_VERSION_1); use vhd_le*() from
 * spec/endian.h to read and vhd_cpu_to_le*() to write them.
 */
#ifndef VHD_SPEC_VIRTIO_RING_H
#define VHD_SPEC_VIRTIO_RING_H

#include <stddef.h>
#include <stdint.h>

/* Descriptor flags, shared by both layouts (2.7.5, 2.8.2). */
#define VIRTQ_DESC_F_NEXT     1u
#define VIRTQ_DESC_F_WRITE    2u
#define VIRTQ_DESC_F_INDIRECT 4u
/* Packed-ring availability bits (2.8.1). */
#define VIRTQ_DESC_F_AVAIL (1u << 7)
#define VIRTQ_DESC_F_USED  (1u << 15)

/* Split ring suppression flags (2.7.7, 2.7.10). */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1u
#define VIRTQ_USED_F_NO_NOTIFY     1u

/* Packed ring event suppression flags (2.8.10). */
#define VIRTQ_EVENT_F_ENABLE  0x0u
#define VIRTQ_EVENT_F_DISABLE 0x1u
#define VIRTQ_EVENT_F_DESC    0x2u
/* off_wrap: bits 0-14 hold the ring offset, bit 15 the wrap counter. */
#define VIRTQ_EVENT_WRAP_SHIFT 15

/* Largest queue size either layout allows (2.7: 32768 for split; 2.8: 2^15 for packed). */
#define VIRTQ_MAX_SIZE 32768u

/* Split ring: descriptor table entry (2.7.5). */
struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* Split ring: driver area. ring[] has queue-size entries followed by used_event (EVENT_IDX). */
struct virtq_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[];
};

struct virtq_used_elem {
	uint32_t id; /* 32 bits on the wire although descriptor indices fit in 16 */
	uint32_t len;
};

/* Split ring: device area. ring[] has queue-size entries followed by avail_event (EVENT_IDX). */
struct virtq_used {
	uint16_t flags;
	uint16_t idx;
	struct virtq_used_elem ring[];
};

/* Packed ring descriptor (2.8.13). */
struct pvirtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t id;
	uint16_t flags;
};

/* Packed ring event suppression structure, used for both the driver and device areas (2.8.14). */
struct pvirtq_event_suppress {
	uint16_t off_wrap;
	uint16_t flags;
};

_Static_assert(sizeof(struct virtq_desc) == 16, "virtq_desc is 16 bytes");
_Static_assert(offsetof(struct virtq_desc, addr) == 0, "virtq_desc.addr");
_Static_assert(offsetof(struct virtq_desc, len) == 8, "virtq_desc.len");
_Static_assert(offsetof(struct virtq_desc, flags) == 12, "virtq_desc.flags");
_Static_assert(offsetof(struct virtq_desc, next) == 14, "virtq_desc.next");
_Static_assert(sizeof(struct virtq_avail) == 4, "virtq_avail header is 4 bytes");
_Static_assert(offsetof(struct virtq_avail, idx) == 2, "virtq_avail.idx");
_Static_assert(offsetof(struct virtq_avail, ring) == 4, "virtq_avail.ring");
_Static_assert(sizeof(struct virtq_used_elem) == 8, "virtq_used_elem is 8 bytes");
_Static_assert(offsetof(struct virtq_used_elem, len) == 4, "virtq_used_elem.len");
_Static_assert(sizeof(struct virtq_used) == 4, "virtq_used header is 4 bytes");
_Static_assert(offsetof(struct virtq_used, idx) == 2, "virtq_used.idx");
_Static_assert(offsetof(struct virtq_used, ring) == 4, "virtq_used.ring");
_Static_assert(sizeof(struct pvirtq_desc) == 16, "pvirtq_desc is 16 bytes");
_Static_assert(offsetof(struct pvirtq_desc, len) == 8, "pvirtq_desc.len");
_Static_assert(offsetof(struct pvirtq_desc, id) == 12, "pvirtq_desc.id");
_Static_assert(offsetof(struct pvirtq_desc, flags) == 14, "pvirtq_desc.flags");
_Static_assert(sizeof(struct pvirtq_event_suppress) == 4, "pvirtq_event_suppress is 4 bytes");
_Static_assert(offsetof(struct pvirtq_event_suppress, flags) == 2, "pvirtq_event_suppress.flags");

/* Alignment each part needs (2.7, table "Virtqueue Part Alignment"; 2.8.10 for packed). */
#define VIRTQ_DESC_ALIGN  16u
#define VIRTQ_AVAIL_ALIGN 2u
#define VIRTQ_USED_ALIGN  4u
#define PVIRTQ_DESC_ALIGN  16u
#define PVIRTQ_EVENT_ALIGN 4u

/* Sizes of the split ring parts for a queue of num entries, including the event-index trailers. */
static inline size_t virtq_desc_size(unsigned num) { return (size_t)num * sizeof(struct virtq_desc); }
static inline size_t virtq_avail_size(unsigned num) { return sizeof(struct virtq_avail) + 2u * num + 2u; }
static inline size_t virtq_used_size(unsigned num)
{
	return sizeof(struct virtq_used) + sizeof(struct virtq_used_elem) * (size_t)num + 2u;
}

/*
 * EVENT_IDX test (2.7.7.2, 2.7.10.2): true when event_idx lies in [old, new), the window of indices just
 * published, i.e. the other side asked to be told once the index passes event_idx.
 */
static inline int vring_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old_idx);
}

#endif
