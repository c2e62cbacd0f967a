/* SPDX-License-Identifier: MIT */
/* VXLAN (RFC 7348, section 5): the 8-byte header after the outer UDP header, and the IANA port. */
#ifndef VHD_SPEC_VXLAN_H
#define VHD_SPEC_VXLAN_H

#include <stddef.h>
#include <stdint.h>

#define VXLAN_PORT 4789u       /* IANA-assigned UDP destination port */
#define VXLAN_FLAG_I 0x08u     /* flags: the VNI is valid; must be set, the other 7 bits are reserved (0) */
#define VXLAN_VNI_MAX 0xffffffu /* 24 bits */
/* Outer bytes an encapsulated frame carries beyond its own Ethernet frame over IPv4: IPv4 20 + UDP 8 + VXLAN 8
 * + the inner Ethernet header 14 counted against the underlay's MTU (the port's MTU is underlay MTU - 50). */
#define VXLAN_OVERHEAD_V4 50u

/* All fields in network byte order; vni_res holds the VNI in its top 24 bits, the low 8 bits reserved (0). */
struct vxlan_hdr {
	uint8_t flags;
	uint8_t reserved1[3];
	uint32_t vni_res;
};
_Static_assert(sizeof(struct vxlan_hdr) == 8, "RFC 7348 VXLAN header is 8 bytes");
_Static_assert(offsetof(struct vxlan_hdr, vni_res) == 4, "VNI in the second word");

#endif
