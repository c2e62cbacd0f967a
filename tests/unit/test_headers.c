/* SPDX-License-Identifier: MIT */
/* The installed headers stand alone: this file sees only include/ (not src/) and is built with -pedantic. */
#include <vhostd/dlog.h>
#include <vhostd/iotlb.h>
#include <vhostd/log.h>
#include <vhostd/mem.h>
#include <vhostd/vduse.h>
#include <vhostd/virtq.h>

#include <errno.h>
#include <stdio.h>

int main(void)
{
	/* Reference one symbol from each header so the link proves they are exported. */
	struct vhd_vq_layout l;
	struct vhd_mem *m = NULL;
	struct vhd_iotlb *t = NULL;
	int ok = vhd_vq_layout(false, 256, &l) == 0 && vhd_mem_create(&m) == 0 && vhd_log_get_level() >= VHD_LOG_ERR &&
		 vhd_iotlb_create(0, &t) == 0;
	/* A dirty log refuses a missing fd, naming it. */
	struct vhd_dlog *dl = NULL;
	const char *why = NULL;
	ok = ok && vhd_dlog_map(-1, 4096, 0, &dl, &why) == -EBADF && why != NULL;
	vhd_iotlb_destroy(t);
	vhd_mem_destroy(m);
	printf("%s: test_headers/standalone\n", ok ? "PASS" : "FAIL");
	return ok ? 0 : 1;
}
