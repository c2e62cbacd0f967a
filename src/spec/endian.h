/* SPDX-License-Identifier: MIT */
/* Little-endian accessors for virtio wire fields (virtio 1.x is little-endian on every transport). */
#ifndef VHD_SPEC_ENDIAN_H
#define VHD_SPEC_ENDIAN_H

#include <endian.h>
#include <stdint.h>

static inline uint16_t vhd_le16(uint16_t v) { return le16toh(v); }
static inline uint32_t vhd_le32(uint32_t v) { return le32toh(v); }
static inline uint64_t vhd_le64(uint64_t v) { return le64toh(v); }
static inline uint16_t vhd_cpu_to_le16(uint16_t v) { return htole16(v); }
static inline uint32_t vhd_cpu_to_le32(uint32_t v) { return htole32(v); }
static inline uint64_t vhd_cpu_to_le64(uint64_t v) { return htole64(v); }

#endif
