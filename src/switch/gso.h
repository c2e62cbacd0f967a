/* SPDX-License-Identifier: MIT */
/* Software TCP segmentation, for GSO frames bound for a port that cannot take them (af_packet, a tap with
 * offloads off). */
#ifndef VHD_SWITCH_GSO_H
#define VHD_SWITCH_GSO_H

#include "vhostd/pkt.h"

/*
 * Cut the TCP GSO frame pkt (gso_type TCPV4 or TCPV6, gso_size the MSS) into frames of at most gso_size
 * payload bytes each, in packets from pool: headers copied, IPv4 total length, id and header checksum, IPv6
 * payload length, TCP sequence numbers and flags (FIN and PSH on the last segment only, CWR on the first only)
 * fixed up. Each segment leaves with NEEDS_CSUM and the pseudo-header sum in the TCP checksum field, as a
 * partially checksummed frame does; pkt itself is not changed.
 * @return segments stored in out[0..ret) (ret <= max); 0 when pkt is not a TCP GSO frame this can parse (IPv6
 *         extension headers, a header length that disagrees with csum_start, a frame that does not hold its own
 *         headers), when more than max segments would be needed, or when the pool runs dry (nothing is kept).
 */
unsigned sw_gso_segment(const struct vhd_pkt *pkt, struct vhd_pktpool *pool, struct vhd_pkt **out, unsigned max);

#endif
