/* SPDX-License-Identifier: MIT */
/*
 * The switch's counters in the Prometheus text exposition format (version 0.0.4): the same values
 * `vhostctl stats` and `show` report, read the same way (relaxed loads, never waiting on a forwarding thread).
 * Metric names and labels are listed in docs/operations.md ("Metrics").
 */
#ifndef VHD_SWITCH_METRICS_H
#define VHD_SWITCH_METRICS_H

#include <stdio.h>

#include "switch/switch.h"

#define SW_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Write every metric of sw (a struct sw *, opaque for sw_http_render_fn) into f. Control thread only.
 * @return 0, or -EIO if f failed (out of memory). */
int sw_metrics_render(void *sw, FILE *f);

#endif
