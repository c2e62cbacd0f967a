/* SPDX-License-Identifier: MIT */
/*
 * vhostctl upgrade: a running vhostd hands its ports, live connections included, to a new vhostd binary over a
 * unix seqpacket socket (SCM_RIGHTS), without the guests seeing a disconnect (docs/operations.md, "Restarts and
 * upgrades"). The old process starts the new one with --takeover FD; the new one says HELLO; the old one pauses
 * every port at a burst boundary and sends START (its extra listening sockets: control socket, metrics), one PORT
 * per port (name, add-port arguments, exported state and fds), the MAC table (FDB: each entry with its port's name
 * and age, so learned addresses keep their ports and no flood follows), END; the new one takes every port over with its
 * queues held and says READY (or FAIL with the reason); the old one says GO and exits without touching anything
 * (socket files, taps, peers), and the new one lets its queues go. Every step has a deadline: whatever goes
 * wrong before GO, the old process resumes forwarding and the command fails with the reason.
 */
#ifndef VHD_SWITCH_UPGRADE_H
#define VHD_SWITCH_UPGRADE_H

#include <stdint.h>
#include <sys/types.h>

#include "switch/switch.h"

#define SW_UPGRADE_MAX_EXTRA 4 /* extra listening sockets handed over beside the ports */

struct sw_upgrade_result {
	pid_t pid;          /* the new process */
	unsigned ports;     /* handed over */
	unsigned fds;       /* descriptors sent, extras included */
	unsigned macs;      /* MAC table entries sent */
	uint64_t pause_us;  /* from the first port's pause to GO: no port forwarded meanwhile */
};

/*
 * Old side. Start argv[0] with argv (NULL-terminated; "--takeover N" is appended), hand everything over, and
 * return 0 once GO has gone: the caller must then exit at once, touching nothing. extra: listening sockets the
 * new process gets in START (still the caller's); upgrades: how many this process has seen, passed on.
 * On failure every port forwards again, the new process is gone (killed if needed, reaped), err says why.
 * Blocks the calling (control) thread for at most a few deadlines (SW_UPGRADE_*_MS in upgrade.c).
 */
int sw_upgrade_run(struct sw *sw, char *const argv[], const int *extra, unsigned nextra, uint64_t upgrades,
		   struct sw_upgrade_result *res, char *err, size_t errlen);

/*
 * New side, before anything else listens or forwards: take over from the process at the other end of sock
 * (closed here). On success the ports forward, extra[] holds the handed-over listening sockets (nextra), and
 * upgrades / pause_us what the old process counted. On failure err says why, and the caller must _exit() at
 * once, touching nothing: the old process still owns everything.
 */
int sw_upgrade_takeover(struct sw *sw, int sock, int *extra, unsigned *nextra, uint64_t *upgrades,
			uint64_t *pause_us, char *err, size_t errlen);

#endif
