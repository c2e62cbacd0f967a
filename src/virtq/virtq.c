/* SPDX-License-Identifier: MIT */
/* Entry points shared by both layouts: creation, error reporting, and the per-queue dispatch. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spec/virtio_config.h"
#include "vhostd/log.h"
#include "virtq_impl.h"

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static bool size_ok(bool packed, unsigned num)
{
	if (num == 0 || num > VIRTQ_MAX_SIZE)
		return false;
	return packed || (num & (num - 1)) == 0;
}

int vhd_vq_layout(bool packed, uint16_t num, struct vhd_vq_layout *out)
{
	if (!size_ok(packed, num))
		return -EINVAL;
	/* 64-byte alignment keeps the parts each side writes on separate cache lines. */
	size_t off = 0;
	out->desc_off = 0;
	off = align_up(off + (packed ? sizeof(struct pvirtq_desc) * num : virtq_desc_size(num)), 64);
	out->driver_off = off;
	off = align_up(off + (packed ? sizeof(struct pvirtq_event_suppress) : virtq_avail_size(num)), 64);
	out->device_off = off;
	off = align_up(off + (packed ? sizeof(struct pvirtq_event_suppress) : virtq_used_size(num)), 64);
	out->size = off;
	return 0;
}

static bool aligned(const void *p, size_t a)
{
	return ((uintptr_t)p & (a - 1)) == 0;
}

/* The rings' alignments (virtio 1.2 2.7 split, 2.8 packed). */
static bool rings_aligned(bool packed, const void *desc, const void *driver, const void *device)
{
	return packed ? aligned(desc, PVIRTQ_DESC_ALIGN) && aligned(driver, PVIRTQ_EVENT_ALIGN) &&
				aligned(device, PVIRTQ_EVENT_ALIGN)
		      : aligned(desc, VIRTQ_DESC_ALIGN) && aligned(driver, VIRTQ_AVAIL_ALIGN) &&
				aligned(device, VIRTQ_USED_ALIGN);
}

static int driver_init(struct vhd_vq *vq, const struct vhd_vq_config *cfg)
{
	vq->slots = calloc(vq->num, sizeof(*vq->slots));
	vq->free_next = calloc(vq->num, sizeof(*vq->free_next));
	vq->fifo = calloc(vq->num, sizeof(*vq->fifo));
	if (!vq->slots || !vq->free_next || !vq->fifo)
		return -ENOMEM;
	for (unsigned i = 0; i < vq->num; i++)
		vq->free_next[i] = (uint16_t)(i + 1 < vq->num ? i + 1 : 0);
	vq->free_head = 0;
	vq->num_free = vq->num;
	vq->ids_free = vq->num;
	if (cfg->indirect && cfg->indirect_max > 0 && vq->indirect) {
		if (!aligned(cfg->indirect, VIRTQ_DESC_ALIGN) || (cfg->indirect_addr & (VIRTQ_DESC_ALIGN - 1)))
			return -EINVAL;
		vq->ind_base = cfg->indirect;
		vq->ind_addr = cfg->indirect_addr;
		vq->ind_max = cfg->indirect_max;
	}
	return 0;
}

int vhd_vq_create(const struct vhd_vq_config *cfg, struct vhd_vq **out)
{
	bool packed = cfg->features & VHD_BIT(VIRTIO_F_RING_PACKED);
	if (!size_ok(packed, cfg->num) || !cfg->desc || !cfg->driver || !cfg->device)
		return -EINVAL;
	if (cfg->side != VHD_VQ_DEVICE && cfg->side != VHD_VQ_DRIVER)
		return -EINVAL;
	if (cfg->side == VHD_VQ_DEVICE && !cfg->mem)
		return -EINVAL;
	if (!rings_aligned(packed, cfg->desc, cfg->driver, cfg->device))
		return -EINVAL;

	struct vhd_vq *vq = calloc(1, sizeof(*vq));
	if (!vq)
		return -ENOMEM;
	vq->side = cfg->side;
	vq->num = cfg->num;
	vq->mask = (uint16_t)(cfg->num - 1);
	vq->is_packed = packed;
	vq->event_idx = cfg->features & VHD_BIT(VIRTIO_F_EVENT_IDX);
	vq->indirect = cfg->features & VHD_BIT(VIRTIO_F_INDIRECT_DESC);
	vq->in_order = cfg->features & VHD_BIT(VIRTIO_F_IN_ORDER);
	vq->mem = cfg->mem;
	vq->iotlb = cfg->side == VHD_VQ_DEVICE ? cfg->iotlb : NULL;
	vq->xmem = vq->xmem_rw = vq->xmem_dir[0] = vq->xmem_dir[VIRTQ_DESC_F_WRITE] = vq->mem;
	vq->xdeny = VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT;
	/* Addresses are IOVAs then: the memory-table fast paths (vhdi_pop_plain(), split_pop()'s hinted region,
	 * vhd_chain_add()'s hinted lookup) look at the windows instead, the IOTLB entry last hit in the table of
	 * each direction it allows, with no test of their own per packet. A warm IOTLB then costs a call per burst, not per packet (callgrind,
	 * docs/viommu.md "Figures"). */
	if (vq->iotlb) {
		vq->window = calloc(2, sizeof(*vq->window));
		if (!vq->window) {
			free(vq);
			return -ENOMEM;
		}
		vq->xmem = vq->xmem_rw = vq->xmem_dir[0] = &vq->window[0];
		vq->xmem_dir[VIRTQ_DESC_F_WRITE] = &vq->window[1];
	}
	snprintf(vq->name, sizeof(vq->name), "%s", cfg->name ? cfg->name : "vq");

	if (packed) {
		vq->packed.desc = cfg->desc;
		vq->packed.driver = cfg->driver;
		vq->packed.device = cfg->device;
		uint16_t pos = cfg->base & 0x7fff;
		if (pos >= cfg->num) {
			free(vq->window);
			free(vq);
			return -EINVAL;
		}
		vq->last_avail = vq->used_idx = pos;
		vq->avail_wrap = vq->used_wrap = (cfg->base >> 15) & 1;
	} else {
		vq->split.desc = cfg->desc;
		vq->split.avail = cfg->driver;
		vq->split.used = cfg->device;
		vq->last_avail = vq->avail_seen = vq->used_idx = cfg->base;
	}
	vq->notify_old = vq->used_idx;

	int rc = 0;
	if (cfg->side == VHD_VQ_DEVICE) {
		vq->ops = packed ? &vhdi_packed_device_ops : &vhdi_split_device_ops;
		if (vq->indirect) {
			vq->ind_bounce = aligned_alloc(64, align_up(virtq_desc_size(vq->num), 64));
			if (!vq->ind_bounce)
				rc = -ENOMEM;
		}
	} else {
		vq->ops = packed ? &vhdi_packed_driver_ops : &vhdi_split_driver_ops;
		rc = driver_init(vq, cfg);
		vq->next_desc = packed ? 0 : (uint16_t)(cfg->base & vq->mask);
		vq->free_head = vq->next_desc;
		vq->free_tail = (uint16_t)((vq->next_desc + vq->num - 1) & vq->mask); /* the list is circular */
	}
	if (rc < 0) {
		vhd_vq_destroy(vq);
		return rc;
	}
	*out = vq;
	return 0;
}

void vhd_vq_destroy(struct vhd_vq *vq)
{
	if (!vq)
		return;
	free(vq->ind_bounce);
	free(vq->resub);
	free(vq->infl_ent);
	free(vq->slots);
	free(vq->free_next);
	free(vq->fifo);
	free(vq->window);
	free(vq);
}

static const char *const error_names[VHD_VQ_E__COUNT] = {
	[VHD_VQ_OK] = "ok",
	[VHD_VQ_E_AVAIL_IDX] = "avail-idx",
	[VHD_VQ_E_HEAD] = "head-out-of-range",
	[VHD_VQ_E_NEXT] = "next-out-of-range",
	[VHD_VQ_E_LOOP] = "chain-loop",
	[VHD_VQ_E_CHAIN_LEN] = "chain-too-long",
	[VHD_VQ_E_INDIRECT_NEST] = "indirect-nested",
	[VHD_VQ_E_INDIRECT_LEN] = "indirect-len",
	[VHD_VQ_E_INDIRECT_FLAGS] = "indirect-flags",
	[VHD_VQ_E_ADDR] = "addr-outside-memory",
	[VHD_VQ_E_OVERFLOW] = "overflow",
	[VHD_VQ_E_ORDER] = "readable-after-writable",
	[VHD_VQ_E_PACKED_FLAGS] = "packed-flags",
	[VHD_VQ_E_USED_IDX] = "used-idx",
	[VHD_VQ_E_USED_ID] = "used-id",
	[VHD_VQ_E_USED_LEN] = "used-len",
	[VHD_VQ_E_CALLER] = "caller",
	[VHD_VQ_E_IOTLB_PERM] = "iotlb-permission",
};

const char *vhd_vq_strerror(enum vhd_vq_error err)
{
	if ((unsigned)err >= VHD_VQ_E__COUNT)
		return "unknown";
	return error_names[err];
}

int vhdi_vq_break(struct vhd_vq *vq, enum vhd_vq_error err, const char *fmt, ...)
{
	if (vq->err != VHD_VQ_OK)
		return -EIO;
	vq->err = err;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(vq->detail, sizeof(vq->detail), fmt, ap);
	va_end(ap);
	vhd_log(VHD_LOG_ERR, "%s: queue broken (%s): %s", vq->name, vhd_vq_strerror(err), vq->detail);
	return -EIO;
}

/* Descriptors the look ahead reads at most. */
#define MISS_AHEAD_DESCS 64

unsigned vhd_vq_take_misses(struct vhd_vq *vq, struct vhd_vq_miss *out, unsigned max)
{
	if (!vq->missed || max == 0)
		return 0;
	vq->missed = false;
	out[0] = (struct vhd_vq_miss){vq->miss_iova, vq->miss_perm};
	unsigned n = 1;
	struct vhd_vq_seg_view v[MISS_AHEAD_DESCS];
	unsigned nv = vq->ops->ahead ? vq->ops->ahead(vq, v, MISS_AHEAD_DESCS) : 0;
	for (unsigned i = 0; i < nv && n < max; i++) {
		unsigned perm = (v[i].flags & VIRTQ_DESC_F_WRITE) && !(v[i].flags & VIRTQ_DESC_F_INDIRECT) ? VHD_IOTLB_WO
													   : VHD_IOTLB_RO;
		struct iovec tmp[4];
		unsigned hint = vq->iotlb_hint;
		uint64_t at;
		if (v[i].len == 0 || vhd_iotlb_translate(vq->iotlb, &hint, v[i].addr, v[i].len, perm, tmp, 4, &at) !=
					     -EAGAIN)
			continue;
		bool seen = false;
		for (unsigned k = 0; k < n && !seen; k++)
			seen = (out[k].iova >> 12) == (at >> 12) && out[k].perm == perm;
		if (!seen)
			out[n++] = (struct vhd_vq_miss){at, perm};
	}
	return n;
}

int vhd_vq_set_rings(struct vhd_vq *vq, void *desc, void *driver, void *device)
{
	if (!desc || !driver || !device || !rings_aligned(vq->is_packed, desc, driver, device))
		return -EINVAL;
	if (vq->is_packed) {
		vq->packed.desc = desc;
		vq->packed.driver = driver;
		vq->packed.device = device;
	} else {
		vq->split.desc = desc;
		vq->split.avail = driver;
		vq->split.used = device;
	}
	/* The rings moved (an IOTLB change): their guest addresses may have too. */
	if (vq->log && vq->log_ring != UINT64_MAX && vhdi_log_rings(vq, true) < 0)
		vq->log = NULL;
	return 0;
}

enum vhd_vq_error vhd_vq_error(const struct vhd_vq *vq)
{
	return vq->err;
}

const char *vhd_vq_error_detail(const struct vhd_vq *vq)
{
	return vq->err ? vq->detail : "";
}

int vhdi_xlate_fail(struct vhd_vq *vq, int r, uint64_t addr, uint32_t len)
{
	if (r == -EOVERFLOW)
		return vhdi_vq_break(vq, VHD_VQ_E_OVERFLOW, "buffer 0x%llx+%u wraps the address space",
				     (unsigned long long)addr, len);
	return vhdi_vq_break(vq, VHD_VQ_E_ADDR, "buffer 0x%llx+%u outside guest memory", (unsigned long long)addr,
			     len);
}

/* Record a miss for vhd_vq_take_miss(): the first IOVA not mapped and the access wanted. */
static void iotlb_note_miss(struct vhd_vq *vq, uint64_t iova, unsigned perm)
{
	vq->missed = true;
	vq->miss_iova = iova;
	vq->miss_perm = (uint8_t)perm;
}

/* A failed IOTLB translation of what (r from vhd_iotlb_translate(), at the first IOVA at fault): a miss is
 * recorded and VHDI_WALK_MISS returned; anything else breaks the queue (-EIO). */
static int iotlb_fail(struct vhd_vq *vq, int r, const char *what, uint64_t addr, uint32_t len, unsigned perm,
		      uint64_t at)
{
	if (r == -EAGAIN) {
		iotlb_note_miss(vq, at, perm);
		return VHDI_WALK_MISS;
	}
	if (r == -EACCES)
		return vhdi_vq_break(vq, VHD_VQ_E_IOTLB_PERM, "%s at IOVA 0x%llx+%u: IOVA 0x%llx is mapped without %s "
				     "access", what, (unsigned long long)addr, len, (unsigned long long)at,
				     perm == VHD_IOTLB_WO ? "write" : "read");
	if (r == -EOVERFLOW)
		return vhdi_vq_break(vq, VHD_VQ_E_OVERFLOW, "%s at IOVA 0x%llx+%u wraps the address space", what,
				     (unsigned long long)addr, len);
	return vhdi_vq_break(vq, VHD_VQ_E_ADDR, "%s at IOVA 0x%llx+%u: %s", what, (unsigned long long)addr, len,
			     r == -ENOBUFS ? "mapped in more pieces than can be gathered" : strerror(-r));
}

int vhdi_chain_add_iotlb(struct vhd_vq *vq, struct vhd_chain_acc *acc, uint64_t addr, uint32_t len, bool write)
{
	unsigned perm = write ? VHD_IOTLB_WO : VHD_IOTLB_RO;
	uint64_t at = addr;
	int r;
	if (!acc->full) {
		r = vhd_iotlb_translate(vq->iotlb, &vq->iotlb_hint, addr, len, perm, acc->iov + acc->n,
					acc->max - acc->n, &at);
		if (r >= 0) {
			acc->n += (unsigned)r;
			if (write)
				acc->nin = (uint16_t)(acc->nin + r);
			else
				acc->nout = (uint16_t)(acc->nout + r);
			/* The hint moved to the entry found: what follows in this pop likely lies there too. */
			vhdi_vq_window(vq);
			return 0;
		}
		if (r != -ENOBUFS)
			return iotlb_fail(vq, r, "buffer", addr, len, perm, at);
		acc->full = true;
	}
	/* Out of iov entries: the rest of the chain is checked, not mapped, a few entries at a time (a miss here
	 * still keeps the chain in the ring: it is taken whole or not at all). */
	struct iovec tmp[16];
	uint64_t off = 0;
	while (off < len) {
		r = vhd_iotlb_translate(vq->iotlb, &vq->iotlb_hint, addr + off, len - off, perm, tmp, 16, &at);
		if (r < 0 && r != -ENOBUFS)
			return iotlb_fail(vq, r, "buffer", addr, len, perm, at);
		if (r >= 0)
			break;
		for (unsigned k = 0; k < 16; k++)
			off += tmp[k].iov_len;
	}
	return 0;
}

/* Gather n segments into the bounce buffer (a table that is misaligned or in several pieces). */
static const struct virtq_desc *gather_indirect(struct vhd_vq *vq, const struct iovec *iov, int n)
{
	uint8_t *dst = (uint8_t *)vq->ind_bounce;
	for (int i = 0; i < n; i++) {
		memcpy(dst, iov[i].iov_base, iov[i].iov_len);
		dst += iov[i].iov_len;
	}
	return vq->ind_bounce;
}

/* vhdi_vq_map_indirect() through the IOTLB: NULL with the miss recorded (not broken) when it misses. */
static const struct virtq_desc *map_indirect_iotlb(struct vhd_vq *vq, uint64_t addr, uint32_t len)
{
	struct iovec iov[VHD_MEM_MAX_REGIONS];
	uint64_t at = addr;
	int n = vhd_iotlb_translate(vq->iotlb, &vq->iotlb_hint, addr, len, VHD_IOTLB_RO, iov, VHD_MEM_MAX_REGIONS,
				    &at);
	if (n < 0) {
		iotlb_fail(vq, n, "indirect table", addr, len, VHD_IOTLB_RO, at);
		return NULL;
	}
	if (n == 1 && aligned(iov[0].iov_base, 8))
		return iov[0].iov_base;
	return gather_indirect(vq, iov, n);
}

const struct virtq_desc *vhdi_vq_map_indirect(struct vhd_vq *vq, uint64_t addr, uint32_t len, unsigned prior)
{
	if (len == 0 || len % sizeof(struct virtq_desc)) {
		vhdi_vq_break(vq, VHD_VQ_E_INDIRECT_LEN, "indirect table length %u is not a nonzero multiple of 16", len);
		return NULL;
	}
	if (len / sizeof(struct virtq_desc) + prior > vq->num) {
		vhdi_vq_break(vq, VHD_VQ_E_CHAIN_LEN, "indirect table of %u entries after %u descriptors exceeds queue size %u",
			     (unsigned)(len / sizeof(struct virtq_desc)), prior, vq->num);
		return NULL;
	}
	if (vq->iotlb)
		return map_indirect_iotlb(vq, addr, len);
	void *p = vhd_mem_xlate_hint(vq->mem, vq->mem_hint, addr, len);
	if (p && aligned(p, 8))
		return p;
	/* Rare: straddles regions or is misaligned. Gather it into the bounce buffer. */
	struct iovec iov[VHD_MEM_MAX_REGIONS];
	int n = vhd_mem_translate(vq->mem, &vq->mem_hint, addr, len, iov, VHD_MEM_MAX_REGIONS);
	if (n == -EOVERFLOW) {
		vhdi_vq_break(vq, VHD_VQ_E_OVERFLOW, "indirect table 0x%llx+%u wraps", (unsigned long long)addr, len);
		return NULL;
	}
	if (n < 0) {
		vhdi_vq_break(vq, VHD_VQ_E_ADDR, "indirect table 0x%llx+%u outside guest memory",
			     (unsigned long long)addr, len);
		return NULL;
	}
	return gather_indirect(vq, iov, n);
}

/* ---- public dispatch: the layout was chosen at creation, so each call is one indirect jump ---- */

int vhd_vq_pop(struct vhd_vq *vq, struct vhd_vq_chain *chains, unsigned n, struct iovec *iov, unsigned niov)
{
	if (unlikely(vq->err))
		return -EIO;
	if (unlikely(vq->side != VHD_VQ_DEVICE))
		return -EINVAL;
	if (niov > UINT16_MAX)
		niov = UINT16_MAX;
	if (unlikely(vq->iotlb != NULL))
		vhdi_vq_window(vq);
	if (unlikely(vq->infl != NULL))
		return vhdi_infl_pop(vq, chains, n, iov, niov);
	return vq->ops->pop(vq, chains, n, iov, niov);
}

int vhd_vq_push(struct vhd_vq *vq, const struct vhd_vq_used *used, unsigned n)
{
	if (unlikely(vq->err))
		return -EIO;
	if (unlikely(vq->side != VHD_VQ_DEVICE))
		return -EINVAL;
	if (likely(vq->log == NULL && vq->infl == NULL))
		return vq->ops->push(vq, used, n);
	if (vq->infl)
		return vhdi_infl_push(vq, used, n);
	return vhdi_push_logged(vq, used, n);
}

int vhdi_push_logged(struct vhd_vq *vq, const struct vhd_vq_used *used, unsigned n)
{
	if (likely(vq->log == NULL))
		return vq->ops->push(vq, used, n);
	uint16_t old = vq->used_idx;
	bool old_wrap = vq->used_wrap;
	int r = vq->ops->push(vq, used, n);
	/* Logged even when the push failed: the buffer bytes gathered before were written all the same. */
	vhdi_log_push(vq, old, old_wrap);
	return r;
}

int vhd_vq_unpop(struct vhd_vq *vq, const struct vhd_vq_used *chains, unsigned n)
{
	if (unlikely(vq->err))
		return -EIO;
	if (unlikely(vq->side != VHD_VQ_DEVICE))
		return -EINVAL;
	/* Split: one avail entry per chain. Packed: the chains' slots, which the walk back crosses at most once. */
	uint32_t slots = 0;
	for (unsigned i = 0; i < n; i++)
		slots += vq->is_packed ? chains[i].ndesc : 1;
	if (n > vq->inflight || (vq->is_packed && slots > vq->dev_slots))
		return vhdi_vq_break(vq, VHD_VQ_E_CALLER, "putting back %u chains / %u slots with %u / %u popped", n,
				     (unsigned)slots, vq->inflight, (unsigned)vq->dev_slots),
		       -EINVAL;
	/* Resubmitted chains go back on their list, not into the ring: the last `ring` chains came from it. */
	unsigned ring = vq->infl ? vhdi_infl_unpop(vq, chains, n) : n;
	if (vq->is_packed) {
		uint32_t back = 0;
		for (unsigned i = n - ring; i < n; i++)
			back += chains[i].ndesc;
		if (back > vq->last_avail) {
			vq->last_avail = (uint16_t)(vq->last_avail + vq->num - back);
			vq->avail_wrap = !vq->avail_wrap;
		} else {
			vq->last_avail = (uint16_t)(vq->last_avail - back);
		}
		vq->dev_slots -= slots;
	} else {
		vq->last_avail = (uint16_t)(vq->last_avail - ring);
	}
	vq->inflight = (uint16_t)(vq->inflight - n);
	vq->stats.chains -= n;
	return 0;
}

int vhd_vq_add(struct vhd_vq *vq, const struct vhd_vq_buf *bufs, unsigned n)
{
	if (unlikely(vq->err))
		return -EIO;
	if (unlikely(vq->side != VHD_VQ_DRIVER))
		return -EINVAL;
	return vq->ops->add(vq, bufs, n);
}

int vhd_vq_get(struct vhd_vq *vq, struct vhd_vq_done *done, unsigned n)
{
	if (unlikely(vq->err))
		return -EIO;
	if (unlikely(vq->side != VHD_VQ_DRIVER))
		return -EINVAL;
	return vq->ops->get(vq, done, n);
}

bool vhd_vq_need_notify(struct vhd_vq *vq)
{
	if (unlikely(vq->err))
		return false;
	bool r = vq->ops->need_notify(vq);
	if (r)
		vq->stats.notify++;
	else
		vq->stats.notify_skipped++;
	return r;
}

bool vhd_vq_enable_notify(struct vhd_vq *vq)
{
	if (unlikely(vq->err))
		return false;
	bool r = vq->ops->enable_notify(vq);
	if (unlikely(vq->log != NULL))
		vhdi_log_notify(vq);
	return r;
}

void vhd_vq_disable_notify(struct vhd_vq *vq)
{
	if (unlikely(vq->err))
		return;
	vq->ops->disable_notify(vq);
	if (unlikely(vq->log != NULL))
		vhdi_log_notify(vq);
}

int vhd_vq_reclaim(struct vhd_vq *vq, struct vhd_vq_done *done, unsigned n)
{
	if (vq->side != VHD_VQ_DRIVER)
		return -EINVAL;
	unsigned got = 0;
	for (unsigned i = 0; i < vq->num && got < n; i++) {
		if (!vq->slots[i].busy)
			continue;
		vq->slots[i].busy = false;
		done[got++] = (struct vhd_vq_done){vq->slots[i].token, 0};
		vq->inflight--;
	}
	return (int)got;
}

unsigned vhd_vq_inflight(const struct vhd_vq *vq)
{
	return vq->inflight;
}

unsigned vhd_vq_room(const struct vhd_vq *vq)
{
	if (vq->side != VHD_VQ_DRIVER)
		return 0;
	/* Packed rings also run out of buffer ids, which out-of-order completion can hold longer than slots. */
	if (vq->is_packed && vq->ids_free < vq->num_free)
		return vq->ids_free;
	return vq->num_free;
}

uint16_t vhd_vq_base(const struct vhd_vq *vq)
{
	if (vq->is_packed)
		return (uint16_t)(vq->last_avail | (vq->avail_wrap ? 0x8000u : 0));
	return vq->last_avail;
}

uint16_t vhd_vq_used_base(const struct vhd_vq *vq)
{
	if (vq->is_packed)
		return (uint16_t)(vq->used_idx | (vq->used_wrap ? 0x8000u : 0));
	return vq->used_idx;
}

void vhd_vq_get_stats(const struct vhd_vq *vq, struct vhd_vq_stats *out)
{
	*out = vq->stats;
}

uint64_t vhd_vq_chains_popped(const struct vhd_vq *vq)
{
	return vq->stats.chains;
}

uint64_t vhd_vq_descs_walked(const struct vhd_vq *vq)
{
	return vq->stats.descs;
}
