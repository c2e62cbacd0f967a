/* SPDX-License-Identifier: MIT */
/*
 * Packet capture on a port (vhostctl capture): the forwarding threads copy the frames a port receives and/or
 * is given to transmit into one bounded single-producer single-consumer ring per thread; the control thread
 * drains the rings as pcapng (docs/switch.md, "Capture") into a unix stream socket vhostctl passed over the
 * control socket, and vhostctl writes the file.
 *
 * Why vhostctl writes the file, not vhostd: the file is created with the operator's own rights and path (the
 * daemon never opens a path a client names), and the daemon's control thread only ever does nonblocking send()
 * (MSG_DONTWAIT, whatever flags the client set on the socket) on a socket, never a write() to a file system that
 * may stall. A reader that does not keep up fills the socket, then the output buffer, then the rings: the
 * forwarding threads then drop captures (counted, reported in the file's Interface Statistics Block) and never
 * wait.
 *
 * Memory: SW_CAPTURE_SLOTS slots of SW_CAPTURE_SNAPLEN bytes per forwarding thread, and SW_CAPTURE_OUT bytes of
 * output, per capture; at most SW_MAX_CAPTURES captures at once.
 *
 * Threading: sw_capture_rx() and sw_capture_tx_stage()/_commit() run on forwarding thread `thread` (the ring's
 * one producer); everything else on the control thread (the rings' one consumer).
 */
#ifndef VHD_SWITCH_CAPTURE_H
#define VHD_SWITCH_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vhostd/pkt.h"

#define SW_CAPTURE_SNAPLEN 2048u  /* bytes kept of each frame (a GSO frame's first 2 KiB) */
#define SW_CAPTURE_SLOTS 512u     /* per forwarding thread; a power of two */
#define SW_CAPTURE_OUT (256u * 1024) /* pcapng bytes waiting for the reader */
#define SW_MAX_CAPTURES 8

/* Directions, from the port's side: what the switch received from it, what the switch gave it to send. */
#define SW_CAP_RX 1u
#define SW_CAP_TX 2u

struct sw_capture;

/*
 * Start a capture of port (its name goes into the file) for threads forwarding threads, of dirs (SW_CAP_*),
 * ending after count frames (0: no limit). fd: a connected AF_UNIX SOCK_STREAM socket, now owned by the
 * capture (closed on failure too). The file's header blocks are queued at once.
 * @return 0; -EBADF/-ENOTSOCK/-EPROTOTYPE for an fd that is not such a socket; -ENOMEM. err says which.
 */
int sw_capture_create(const char *port, unsigned threads, unsigned dirs, uint64_t count, int fd,
		      struct sw_capture **out, char *err, size_t errlen);
void sw_capture_destroy(struct sw_capture *c);

/* Does the capture take frames of direction dir? (Read by the forwarding threads; constant.) */
bool sw_capture_wants(const struct sw_capture *c, unsigned dir);

/* Forwarding thread: copy pkts[0..n) (received from the port) into the thread's ring; what does not fit is
 * counted as dropped. */
void sw_capture_rx(struct sw_capture *c, unsigned thread, struct vhd_pkt *const *pkts, unsigned n);
/* Forwarding thread, around a tx_burst: copy pkts[0..n) into free slots before (the port may free them), then
 * publish only the first `sent` of them, those the port took. stage returns how many were copied. */
unsigned sw_capture_tx_stage(struct sw_capture *c, unsigned thread, struct vhd_pkt *const *pkts, unsigned n);
void sw_capture_tx_commit(struct sw_capture *c, unsigned thread, unsigned staged, unsigned sent);

/*
 * Control thread: move frames from the rings into the output and send what the socket takes, never waiting.
 * @return true once the capture should stop being fed: count frames written, the reader asked to stop
 *         (shut down its sending side) or went away. The caller then detaches it from the forwarding threads,
 *         waits until none can be inside it, and calls sw_capture_close().
 */
bool sw_capture_pump(struct sw_capture *c);
/* No producer is left: take what the rings still hold (up to count), then the statistics block; the socket is
 * closed once all of it is sent (sw_capture_done()). */
void sw_capture_close(struct sw_capture *c);
bool sw_capture_done(const struct sw_capture *c);

/* For poll(): the socket, and the events that should wake the control thread. */
int sw_capture_fd(const struct sw_capture *c);
short sw_capture_events(const struct sw_capture *c);

/* Frames written, and frames lost because a ring was full (summed over the threads). */
uint64_t sw_capture_frames(const struct sw_capture *c);
uint64_t sw_capture_drops(const struct sw_capture *c);

#endif
