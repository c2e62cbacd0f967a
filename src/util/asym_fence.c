/* SPDX-License-Identifier: MIT */
#include "util/asym_fence.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

atomic_bool vhdi_asym_ok;

static pthread_once_t once = PTHREAD_ONCE_INIT;

static int membarrier(int cmd)
{
	return (int)syscall(__NR_membarrier, cmd, 0, 0);
}

static void init_once(void)
{
	/* VHD_NO_MEMBARRIER=1 forces the symmetric fences, so that tests cover both ways. */
	const char *off = getenv("VHD_NO_MEMBARRIER");
	if (off && *off && *off != '0')
		return;
	int cmds = membarrier(MEMBARRIER_CMD_QUERY);
	if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED))
		return;
	if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0)
		return;
	atomic_store(&vhdi_asym_ok, true);
}

void vhdi_asym_init(void)
{
	pthread_once(&once, init_once);
}

void vhdi_asym_heavy(void)
{
	/* The fences around the call order this thread's own store and load; the kernel's IPIs order every other
	 * running thread's (a thread not running gets its barrier from the context switch). Registered once, the
	 * command cannot fail but for a kernel bug; a failure falls back to what a plain fence gives, and the
	 * light side then has no CPU fence, so it is fatal rather than silently wrong. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&vhdi_asym_ok, memory_order_relaxed) && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0)
		abort();
	atomic_thread_fence(memory_order_seq_cst);
}
