/* SPDX-License-Identifier: MIT */
/*
 * Frontend ("virtio-user"): the guest's side of a vhost device, set up through a transport ops table.
 *
 * Shared memory: one memfd, mapped once for the frontend's lifetime. Each queue owns a page-aligned slot big
 * enough for either ring layout (the layout is only known after negotiation); the buffer areas follow. Guest
 * addresses are our virtual addresses, so the memory table is a single region mapped 1:1.
 *
 * Behind an IOMMU (cfg.iommu, VIRTIO_F_ACCESS_PLATFORM) the device sees I/O virtual addresses instead: the
 * region sits at guest-physical FE_GPA and at IOVA FE_GPA + FE_IOVA_OFF, both unlike our virtual addresses,
 * so a device that used any address but the IOVA through its IOTLB would fault or read the wrong bytes. The
 * whole region is mapped with one UPDATE per queue right after its SET_VRING_NUM (see ring_step()), or
 * (iommu_lazy) nothing is, and every translation the device needs comes from its MISS requests, answered a
 * page at a time.
 *
 * Setup is a state machine driven by vhd_fe_dispatch(): each step starts one transport op, and a step whose
 * reply is awaited resumes in a later dispatch, when the transport's progress() says it completed. Nothing
 * here waits on the back-end; the transport enforces the reply deadline.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spec/endian.h"
#include "spec/virtio_config.h"
#include "spec/vhost_user.h"
#include "spec/virtio_net.h"
#include "spec/virtio_ring.h"
#include "transport.h"
#include "vhostd/frontend.h"
#include "vhostd/log.h"
#include "vhostd/virtq.h"

#define FE_MAX_QP 16
#define FE_MAX_Q (2 * FE_MAX_QP)
#define PAGE 4096u
#define FE_GPA 0x40000000ull           /* 1 GiB: where the region sits in "guest-physical" space */
#define FE_IOVA_OFF 0x100000000000ull  /* 16 TiB: IOVA = GPA + this */

/* The setup steps, in the order QEMU uses; S_RING is NUM, (IOTLB), BASE, ADDR, CALL, KICK for each queue in turn,
 * S_ENABLE one SET_VRING_ENABLE per queue. */
enum fe_step {
	S_IDLE,
	S_GET_FEATURES,
	S_SET_OWNER,
	S_QUEUE_NUM,
	S_SET_FEATURES,
	S_CHANNEL,
	S_MEM_TABLE,
	S_INFL_GET,
	S_INFL_SET,
	S_RING,
	S_ENABLE,
	S_STATUS,
	S_UP,
};
#define RING_OPS 6

struct fe_queue {
	struct vhd_vq *vq;
	size_t ring_off; /* into the memfd */
	int kick_fd, call_fd;
};

struct vhd_fe {
	struct vhd_fe_config cfg;
	char name[32];
	struct vhd_fe_transport t;
	/* Written by the control thread, read by data-path threads through vhd_fe_vq(): while rings are kept
	 * across a back-end restart nothing else stops them (set_up()). */
	bool up;
	enum fe_step step;
	unsigned sub; /* within S_RING (queue * RING_OPS + op) and S_ENABLE (queue) */
	uint64_t offered, pairs;
	uint64_t features;
	int memfd;
	uint8_t *mem;
	size_t mem_len, ring_slot, buf_off;
	uint64_t dev_base; /* the device's address of mem[0]: our virtual address, or its IOVA */
	struct vhd_fe_iotlb_stats iotlb;
	/* Inflight tracking (cfg.inflight): the area the first back-end made, kept for the ones after it, and
	 * whether the rings (vqs and their memory) outlived the last back-end (kept), to hand to the next one. */
	int infl_fd;
	uint64_t infl_size;
	bool infl_set; /* SET_INFLIGHT_FD went to the current back-end */
	bool kept;
	uint64_t kept_features;
	unsigned nq;
	struct fe_queue q[FE_MAX_Q + 1]; /* q[nq]: the control queue, when negotiated */
	unsigned nring;                  /* queues set up: nq, plus the control queue */
	size_t cmd_off;                  /* the control queue's command page, in the memfd */
	bool ctrl_pending;
	int ctrl_result; /* of the last command: 0, -EREMOTEIO (VIRTIO_NET_ERR), -EIO, -ENODATA (none yet) */
};

/* Release: the queues (kept or new) and their eventfds before a data-path thread sees up. Pairs with the
 * acquire load in vhd_fe_vq(). */
static void set_up(struct vhd_fe *fe, bool up)
{
	__atomic_store_n(&fe->up, up, __ATOMIC_RELEASE);
}
/* Control command layout in its page: header and data, then the device's ack at CMD_ACK. */
#define CMD_ACK 128u
#define CMD_MAX_DATA (CMD_ACK - sizeof(struct virtio_net_ctrl_hdr))

/* The transport's miss hook: the page holding iova, if iova is in our region. */
static int fe_miss(void *owner, uint64_t iova, uint8_t perm, struct vhd_fe_map *map)
{
	struct vhd_fe *fe = owner;
	(void)perm; /* all of our memory is read/write */
	fe->iotlb.misses++;
	if (iova < fe->dev_base || iova - fe->dev_base >= fe->mem_len) {
		fe->iotlb.unmapped++;
		vhd_log(VHD_LOG_DEBUG, "%s: IOTLB miss at unmapped IOVA 0x%llx left unanswered", fe->name,
			(unsigned long long)iova);
		return -ENOENT;
	}
	uint64_t off = (iova - fe->dev_base) & ~(uint64_t)(PAGE - 1);
	*map = (struct vhd_fe_map){.iova = fe->dev_base + off, .size = PAGE, .uaddr = (uintptr_t)fe->mem + off,
				   .perm = VHOST_ACCESS_RW};
	fe->iotlb.updates++;
	return 0;
}

uint64_t vhd_fe_default_features(void)
{
	return VHD_BIT(VIRTIO_F_VERSION_1) | VHD_BIT(VIRTIO_F_EVENT_IDX) | VHD_BIT(VIRTIO_NET_F_MRG_RXBUF) |
	       VHD_BIT(VIRTIO_NET_F_MQ) | VHD_BIT(VIRTIO_NET_F_STATUS);
}

static size_t page_up(size_t v)
{
	return (v + PAGE - 1) & ~(size_t)(PAGE - 1);
}

enum vhd_fe_transport_kind vhd_fe_transport_of(enum vhd_fe_transport_kind kind, const char *path)
{
	if (kind != VHD_FE_TRANSPORT_AUTO)
		return kind;
	struct stat st;
	if (!path || stat(path, &st) < 0 || !S_ISCHR(st.st_mode))
		return VHD_FE_TRANSPORT_VHOST_USER;
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	if (strncmp(base, "vhost-vdpa-", 11) == 0)
		return VHD_FE_TRANSPORT_VHOST_VDPA;
	return VHD_FE_TRANSPORT_VHOST_KERNEL;
}

static const char *const transport_names[] = {"auto", "vhost-user", "vhost-kernel", "vhost-vdpa"};

const char *vhd_fe_transport_name(enum vhd_fe_transport_kind kind)
{
	return (unsigned)kind < sizeof(transport_names) / sizeof(transport_names[0]) ? transport_names[kind] : "?";
}

int vhd_fe_transport_parse(const char *name, enum vhd_fe_transport_kind *kind)
{
	for (unsigned i = 0; i < sizeof(transport_names) / sizeof(transport_names[0]); i++) {
		if (strcmp(name, transport_names[i]) == 0) {
			*kind = (enum vhd_fe_transport_kind)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* The transport cfg asks for, checked against what it can do. 0 or -errno (logged). */
static int transport_init(struct vhd_fe *fe, const struct vhd_fe_config *cfg)
{
	enum vhd_fe_transport_kind kind = vhd_fe_transport_of(cfg->transport, cfg->path);
	switch (kind) {
	case VHD_FE_TRANSPORT_VHOST_USER:
		return vhd_fe_vu_transport_init(&fe->t, fe->name, fe->cfg.reply_timeout_ms);
	case VHD_FE_TRANSPORT_VHOST_KERNEL:
		if (fe->cfg.features & VHD_BIT(VIRTIO_F_RING_PACKED)) {
			vhd_log(VHD_LOG_ERR, "%s: vhost-net has no packed rings (VIRTIO_F_RING_PACKED): use split rings",
				fe->name);
			return -EOPNOTSUPP;
		}
		if (cfg->server || cfg->iommu) {
			vhd_log(VHD_LOG_ERR, "%s: vhost-kernel has no %s", fe->name, cfg->server ? "server mode" : "iommu");
			return -EINVAL;
		}
		if (!cfg->tap || !*cfg->tap) {
			vhd_log(VHD_LOG_ERR, "%s: vhost-kernel needs a tap interface name", fe->name);
			return -EINVAL;
		}
		return vhd_fe_vk_transport_init(&fe->t, fe->name, cfg->tap, cfg->queue_pairs);
	case VHD_FE_TRANSPORT_VHOST_VDPA:
		/* The device maps our memory through the kernel's IOTLB, filled up front: no IOMMU emulation, and
		 * nothing to listen on. */
		if (cfg->server || cfg->iommu) {
			vhd_log(VHD_LOG_ERR, "%s: vhost-vdpa has no %s", fe->name, cfg->server ? "server mode" : "iommu");
			return -EINVAL;
		}
		return vhd_fe_vdpa_transport_init(&fe->t, fe->name);
	default:
		vhd_log(VHD_LOG_ERR, "%s: transport %s is not available", fe->name, vhd_fe_transport_name(kind));
		return -EOPNOTSUPP;
	}
}

int vhd_fe_create(const struct vhd_fe_config *cfg, struct vhd_fe **out)
{
	if ((unsigned)cfg->transport > VHD_FE_TRANSPORT_VHOST_VDPA || cfg->queue_pairs == 0 ||
	    cfg->queue_pairs > FE_MAX_QP)
		return -EINVAL;
	struct vhd_fe *fe = calloc(1, sizeof(*fe));
	if (!fe)
		return -ENOMEM;
	fe->cfg = *cfg;
	snprintf(fe->name, sizeof(fe->name), "%s", cfg->name ? cfg->name : "frontend");
	fe->cfg.name = fe->name;
	if (!fe->cfg.queue_size)
		fe->cfg.queue_size = 256;
	if (!fe->cfg.features)
		fe->cfg.features = vhd_fe_default_features();
	if (!fe->cfg.buf_area_size)
		fe->cfg.buf_area_size = 4u << 20;
	if (!fe->cfg.reply_timeout_ms)
		fe->cfg.reply_timeout_ms = 2000;
	fe->cfg.buf_area_size = page_up(fe->cfg.buf_area_size);
	fe->nq = 2u * cfg->queue_pairs;
	fe->cfg.iommu_lazy = cfg->iommu && cfg->iommu_lazy;
	fe->memfd = -1;
	fe->infl_fd = -1;
	for (unsigned i = 0; i <= FE_MAX_Q; i++)
		fe->q[i].kick_fd = fe->q[i].call_fd = -1;
	fe->ctrl_result = -ENODATA;

	struct vhd_vq_layout ls, lp;
	int rc = vhd_vq_layout(false, fe->cfg.queue_size, &ls);
	if (rc == 0)
		rc = vhd_vq_layout(true, fe->cfg.queue_size, &lp);
	if (rc < 0)
		goto fail;
	fe->ring_slot = page_up(ls.size > lp.size ? ls.size : lp.size);
	/* A slot for the control queue too, and its command page: only used when the device has one. */
	fe->cmd_off = fe->ring_slot * (fe->nq + 1);
	fe->buf_off = fe->cmd_off + PAGE;
	fe->mem_len = fe->buf_off + fe->cfg.buf_area_size * cfg->queue_pairs;
	fe->memfd = memfd_create("vhd-frontend", MFD_CLOEXEC);
	if (fe->memfd < 0 || ftruncate(fe->memfd, (off_t)fe->mem_len) < 0) {
		rc = -errno;
		goto fail;
	}
	fe->mem = mmap(NULL, fe->mem_len, PROT_READ | PROT_WRITE, MAP_SHARED, fe->memfd, 0);
	if (fe->mem == MAP_FAILED) {
		fe->mem = NULL;
		rc = -errno;
		goto fail;
	}
	for (unsigned i = 0; i <= fe->nq; i++)
		fe->q[i].ring_off = fe->ring_slot * i;
	fe->dev_base = cfg->iommu ? FE_GPA + FE_IOVA_OFF : (uintptr_t)fe->mem;
	rc = transport_init(fe, cfg);
	fe->t.iommu = cfg->iommu;
	fe->t.inflight = cfg->inflight;
	fe->t.miss = fe_miss;
	fe->t.owner = fe;
	if (rc == 0) {
		rc = fe->t.ops->open(&fe->t, cfg->path, cfg->server, cfg->reconnect_min_ms, cfg->reconnect_max_ms);
		if (rc < 0)
			fe->t.ops->destroy(&fe->t);
	}
	if (rc < 0)
		goto fail;
	fe->cfg.path = fe->cfg.tap = NULL; /* the caller's strings; the transport keeps its own copies */
	*out = fe;
	/* A client may already be connected: set up on the first dispatch, from the caller's loop. */
	return 0;
fail:
	if (fe->mem)
		munmap(fe->mem, fe->mem_len);
	if (fe->memfd >= 0)
		close(fe->memfd);
	free(fe);
	return rc;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/*
 * Tear the queues down after the back-end stopped or left. With keep (inflight tracking handed to this back-end)
 * the rings stay as they are, buffers in flight included, for the next back-end to resume: no VHD_FE_DOWN then,
 * the data path only sees vhd_fe_vq() return NULL until VHD_FE_UP.
 */
static void go_down(struct vhd_fe *fe, bool keep)
{
	if (fe->up && fe->cfg.event && !keep)
		fe->cfg.event(fe, VHD_FE_DOWN, fe->cfg.opaque);
	set_up(fe, false);
	fe->step = S_IDLE;
	fe->kept = keep;
	fe->kept_features = fe->features;
	fe->infl_set = false;
	/* Kept rings keep their eventfds too: the data path, which nothing stopped, may still kick them, and a
	 * closed number could be reused by the next connection's socket. */
	for (unsigned i = 0; i <= fe->nq && !keep; i++) {
		struct fe_queue *q = &fe->q[i];
		vhd_vq_destroy(q->vq);
		q->vq = NULL;
		close_fd(&q->kick_fd);
		close_fd(&q->call_fd);
	}
	if (!keep) {
		fe->features = 0;
		fe->nring = 0;
	}
	fe->ctrl_pending = false;
}

/* Kept rings that cannot be resumed: the data path takes its buffers back (vhd_fe_vq() answers during the
 * VHD_FE_DOWN callback, as it does for any DOWN), and the area that described them goes too. */
static void drop_kept(struct vhd_fe *fe)
{
	set_up(fe, true);
	if (fe->cfg.event)
		fe->cfg.event(fe, VHD_FE_DOWN, fe->cfg.opaque);
	set_up(fe, false);
	for (unsigned i = 0; i <= fe->nq; i++) {
		vhd_vq_destroy(fe->q[i].vq);
		fe->q[i].vq = NULL;
		close_fd(&fe->q[i].kick_fd);
		close_fd(&fe->q[i].call_fd);
	}
	fe->kept = false;
	close_fd(&fe->infl_fd);
}

static void lost(struct vhd_fe *fe, int why)
{
	/* The rings outlive the back-end only if it tracked them: then the next one resumes them. */
	bool keep = (fe->kept || fe->infl_set) && fe->q[0].vq;
	vhd_log(VHD_LOG_INFO, "%s: back-end connection lost (%s)%s", fe->name, strerror(why < 0 ? -why : why),
		keep ? "; rings kept for the next one (inflight tracking)" : "");
	go_down(fe, keep);
	fe->t.ops->lost(&fe->t);
}

static const char *step_name(const struct vhd_fe *fe)
{
	static const char *const ring_ops[RING_OPS] = {"SET_VRING_NUM", "IOTLB_MSG", "SET_VRING_BASE", "SET_VRING_ADDR",
						       "SET_VRING_CALL", "SET_VRING_KICK"};
	switch (fe->step) {
	case S_GET_FEATURES: return "GET_FEATURES";
	case S_SET_OWNER: return "SET_OWNER";
	case S_QUEUE_NUM: return "GET_QUEUE_NUM";
	case S_SET_FEATURES: return "SET_FEATURES";
	case S_CHANNEL: return "SET_BACKEND_REQ_FD";
	case S_MEM_TABLE: return "SET_MEM_TABLE";
	case S_INFL_GET: return "GET_INFLIGHT_FD";
	case S_INFL_SET: return "SET_INFLIGHT_FD";
	case S_RING: return ring_ops[fe->sub % RING_OPS];
	case S_ENABLE: return "SET_VRING_ENABLE";
	case S_STATUS: return "SET_STATUS";
	default: return "setup";
	}
}

/* The virtqueues and their eventfds, once the features (and so the layout) are agreed. */
static int make_queues(struct vhd_fe *fe)
{
	bool packed = fe->features & VHD_BIT(VIRTIO_F_RING_PACKED);
	for (unsigned i = 0; i < fe->nring; i++) {
		struct fe_queue *q = &fe->q[i];
		if (q->vq)
			continue; /* kept from the last back-end, with its eventfds */
		q->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		q->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (q->kick_fd < 0 || q->call_fd < 0)
			return -errno;
		struct vhd_vq_layout l;
		vhd_vq_layout(packed, fe->cfg.queue_size, &l);
		uint8_t *base = fe->mem + q->ring_off;
		char name[48];
		snprintf(name, sizeof(name), "%s q%u", fe->name, i);
		struct vhd_vq_config c = {
			.side = VHD_VQ_DRIVER,
			.num = fe->cfg.queue_size,
			.features = fe->features,
			.desc = base + l.desc_off,
			.driver = base + l.driver_off,
			.device = base + l.device_off,
			.base = packed ? VHD_VQ_PACKED_BASE_INIT : 0,
			.name = name,
		};
		int rc = vhd_vq_create(&c, &q->vq);
		if (rc < 0)
			return rc;
		/* Polling driver: no interrupts unless the caller asks (vhd_vq_enable_notify). */
		vhd_vq_disable_notify(q->vq);
	}
	return 0;
}

/* One ring message for queue i: op is the index into NUM, IOTLB, BASE, ADDR, CALL, KICK. */
/* The device's index of our queue i: the control queue comes after all the device's queue pairs. */
static unsigned dev_q(const struct vhd_fe *fe, unsigned i)
{
	if (i < fe->nq)
		return i;
	return fe->features & VHD_BIT(VIRTIO_NET_F_MQ) ? 2u * (unsigned)fe->pairs : 2u;
}

static int ring_step(struct vhd_fe *fe, unsigned i, unsigned op)
{
	struct vhd_fe_transport *t = &fe->t;
	bool packed = fe->features & VHD_BIT(VIRTIO_F_RING_PACKED);
	struct vhd_vq_layout l;
	vhd_vq_layout(packed, fe->cfg.queue_size, &l);
	uint64_t base = fe->dev_base + fe->q[i].ring_off;
	unsigned d = dev_q(fe, i);
	switch (op) {
	case 0:
		return t->ops->set_vring_num(t, d, fe->cfg.queue_size);
	case 1: {
		/* Behind an IOMMU, all of our memory, mapped for each queue in turn as soon as the device has it:
		 * DPDK's vhost keeps an IOTLB per queue, made at the queue's first message, and an update that
		 * comes before it is lost to it (a single update after SET_MEM_TABLE left DPDK missing). SET_MEM_TABLE
		 * has emptied the device's IOTLB before. The repeats are no-ops for a device with one IOTLB. */
		if (!fe->cfg.iommu || fe->cfg.iommu_lazy)
			return VHD_FE_T_DONE;
		struct vhd_fe_map all = {fe->dev_base, fe->mem_len, (uintptr_t)fe->mem, VHOST_ACCESS_RW};
		fe->iotlb.updates++;
		return t->ops->iotlb_update(t, &all);
	}
	case 2: {
		/* Packed: avail and used position with their wrap counters in the two halves, as QEMU sends it.
		 * Split rings kept for a restarted back-end: the used index the last one reached, as QEMU sends it
		 * to a back-end with inflight tracking (which resubmits the rest and finds its avail position). Kept
		 * packed rings: the initial positions, which the back-end's inflight region overrides with both. */
		if (fe->kept && !packed) {
			const struct virtq_used *u = (const void *)(fe->mem + fe->q[i].ring_off + l.device_off);
			return t->ops->set_vring_base(t, d, vhd_le16(__atomic_load_n(&u->idx, __ATOMIC_RELAXED)));
		}
		return t->ops->set_vring_base(t, d, packed ? VHD_VQ_PACKED_BASE_INIT * 0x10001u : 0);
	}
	case 3:
		return t->ops->set_vring_addr(t, d, base + l.desc_off, base + l.driver_off, base + l.device_off);
	case 4:
		return t->ops->set_vring_call(t, d, fe->q[i].call_fd);
	default:
		return t->ops->set_vring_kick(t, d, fe->q[i].kick_fd);
	}
}

/* Start the current step: VHD_FE_T_DONE, VHD_FE_T_PENDING or -errno. */
static int start_step(struct vhd_fe *fe)
{
	struct vhd_fe_transport *t = &fe->t;
	switch (fe->step) {
	case S_GET_FEATURES:
		/* Fresh rings for this back-end, unless the last one's are kept for it to resume. Zeroed here
		 * rather than when the last one left: that one may still be finishing a burst over them until it
		 * notices the disconnect. */
		if (!fe->kept)
			memset(fe->mem, 0, fe->buf_off);
		return t->ops->get_features(t, &fe->offered);
	case S_SET_OWNER:
		return t->ops->set_owner(t);
	case S_QUEUE_NUM:
		fe->pairs = 1;
		/* Asked also for one pair when there is a control queue: it sits after the device's last pair. */
		if ((fe->nq > 2 || (fe->features & VHD_BIT(VIRTIO_NET_F_CTRL_VQ))) &&
		    (fe->features & VHD_BIT(VIRTIO_NET_F_MQ)))
			return t->ops->get_queue_num(t, &fe->pairs);
		return VHD_FE_T_DONE;
	case S_SET_FEATURES:
		return t->ops->set_features(t, fe->features);
	case S_CHANNEL:
		return t->ops->set_backend_channel(t);
	case S_MEM_TABLE: {
		int rc = make_queues(fe);
		if (rc < 0)
			return rc;
		uint64_t gpa = fe->cfg.iommu ? FE_GPA : (uintptr_t)fe->mem;
		struct vhd_fe_region reg = {(uintptr_t)fe->mem, gpa, fe->mem_len, fe->memfd, 0};
		return t->ops->set_mem_table(t, &reg, 1);
	}
	case S_INFL_GET:
		/* The first back-end makes the area; the ones after it get the same one back. */
		if (!fe->cfg.inflight || fe->infl_fd >= 0)
			return VHD_FE_T_DONE;
		return t->ops->get_inflight(t, fe->nq, fe->cfg.queue_size, fe->features & VHD_BIT(VIRTIO_F_RING_PACKED),
					    &fe->infl_fd, &fe->infl_size);
	case S_INFL_SET:
		if (fe->infl_fd < 0)
			return VHD_FE_T_DONE;
		fe->infl_set = true;
		return t->ops->set_inflight(t, fe->infl_fd, fe->infl_size, fe->nq, fe->cfg.queue_size);
	case S_RING:
		return ring_step(fe, fe->sub / RING_OPS, fe->sub % RING_OPS);
	case S_ENABLE:
		return t->ops->set_vring_enable(t, dev_q(fe, fe->sub), true);
	case S_STATUS:
		return t->ops->set_status(t, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
						     VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	default:
		return -EINVAL;
	}
}

/* The current step completed: use its outputs and move to the next. 0 or -errno. */
static int finish_step(struct vhd_fe *fe)
{
	switch (fe->step) {
	case S_GET_FEATURES: {
		uint64_t want = fe->cfg.features | VHD_BIT(VIRTIO_F_VERSION_1);
		if (fe->nq > 2)
			want |= VHD_BIT(VIRTIO_NET_F_MQ);
		if (fe->cfg.iommu)
			want |= VHD_BIT(VIRTIO_F_ACCESS_PLATFORM);
		else
			want &= ~VHD_BIT(VIRTIO_F_ACCESS_PLATFORM);
		fe->features = fe->offered & want;
		if (fe->kept && fe->features != fe->kept_features) {
			/* The rings were laid out for other features: they cannot be resumed. */
			vhd_log(VHD_LOG_WARN, "%s: the back-end agreed to features 0x%llx, not the kept rings' 0x%llx: "
				"starting afresh", fe->name, (unsigned long long)fe->features,
				(unsigned long long)fe->kept_features);
			drop_kept(fe);
			memset(fe->mem, 0, fe->buf_off);
		}
		/* Our descriptors carry IOVAs: a device that would read them as guest-physical addresses is no
		 * use (QEMU refuses such a back-end for an iommu_platform=on NIC the same way). */
		if (fe->cfg.iommu && !(fe->features & VHD_BIT(VIRTIO_F_ACCESS_PLATFORM))) {
			vhd_log(VHD_LOG_ERR, "%s: the back-end does not offer ACCESS_PLATFORM (bit 33), which iommu needs",
				fe->name);
			return -ENOTSUP;
		}
		fe->nring = fe->nq + ((fe->features & VHD_BIT(VIRTIO_NET_F_CTRL_VQ)) ? 1u : 0u);
		fe->step = S_SET_OWNER;
		return 0;
	}
	case S_QUEUE_NUM:
		if (fe->pairs < fe->nq / 2 || fe->pairs > 0x8000) {
			vhd_log(VHD_LOG_ERR, "%s: back-end offers %llu queue pairs, %u wanted", fe->name,
				(unsigned long long)fe->pairs, fe->nq / 2);
			return -ERANGE;
		}
		fe->step = S_SET_FEATURES;
		return 0;
	case S_RING:
		if (++fe->sub == fe->nring * RING_OPS) {
			fe->step = S_ENABLE;
			fe->sub = 0;
		}
		return 0;
	case S_ENABLE:
		if (++fe->sub == fe->nring)
			fe->step = S_STATUS;
		return 0;
	case S_MEM_TABLE:
		fe->step = S_INFL_GET;
		return 0;
	case S_INFL_SET:
		fe->step = S_RING;
		fe->sub = 0;
		return 0;
	default:
		fe->step++;
		return 0;
	}
}

/* Post one command on the control queue (the caller checked there is one and nothing is pending). */
static int ctrl_post(struct vhd_fe *fe, uint8_t cls, uint8_t cmd, const void *data, size_t len)
{
	struct vhd_vq *cvq = fe->q[fe->nq].vq;
	uint8_t *page = fe->mem + fe->cmd_off;
	struct virtio_net_ctrl_hdr h = {cls, cmd};
	memcpy(page, &h, sizeof(h));
	if (len)
		memcpy(page + sizeof(h), data, len);
	page[CMD_ACK] = 0xff; /* neither OK nor ERR until the device writes it */
	uint64_t at = fe->dev_base + fe->cmd_off;
	struct vhd_vq_seg segs[2] = {{at, (uint32_t)(sizeof(h) + len)}, {at + CMD_ACK, 1}};
	struct vhd_vq_buf b = {.segs = segs, .nout = 1, .nin = 1, .token = page};
	int rc = vhd_vq_add(cvq, &b, 1);
	if (rc != 1)
		return rc < 0 ? rc : -ENOSPC;
	fe->ctrl_pending = true;
	fe->ctrl_result = -EINPROGRESS;
	/* The control queue is the one the device may not poll: kick unless it said not to. */
	uint64_t one = 1;
	if (vhd_vq_need_notify(cvq) && write(fe->q[fe->nq].kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

/* The device answered the pending command? Its ack, checked: anything but OK or ERR is the device lying. */
static void ctrl_collect(struct vhd_fe *fe)
{
	struct vhd_vq_done d;
	int n = vhd_vq_get(fe->q[fe->nq].vq, &d, 1);
	if (n == 0)
		return;
	fe->ctrl_pending = false;
	uint8_t ack = fe->mem[fe->cmd_off + CMD_ACK];
	if (n < 0 || d.len < 1 || (ack != VIRTIO_NET_OK && ack != VIRTIO_NET_ERR)) {
		vhd_log(VHD_LOG_ERR, "%s: control queue: the device %s (ack 0x%02x, %u bytes written)", fe->name,
			n < 0 ? "broke the queue" : "returned no valid ack", ack, n < 0 ? 0 : d.len);
		fe->ctrl_result = -EIO;
		return;
	}
	struct virtio_net_ctrl_hdr h;
	memcpy(&h, fe->mem + fe->cmd_off, sizeof(h));
	if (ack != VIRTIO_NET_OK)
		vhd_log(VHD_LOG_ERR, "%s: the device refused control command class %u cmd %u", fe->name, h.class, h.cmd);
	fe->ctrl_result = ack == VIRTIO_NET_OK ? 0 : -EREMOTEIO;
}

/* Run setup steps until one awaits the back-end, setup is complete, or a step fails. 0 or -errno. */
static int advance(struct vhd_fe *fe, int rc)
{
	/* Bounded: each pass completes one step, and there are a fixed number of them. */
	while (rc == VHD_FE_T_DONE) {
		rc = finish_step(fe);
		if (rc < 0)
			break;
		if (fe->step == S_UP) {
			set_up(fe, true);
			vhd_log(VHD_LOG_INFO, "%s: up, features 0x%llx, %u queues%s", fe->name,
				(unsigned long long)fe->features, fe->nq, fe->nring > fe->nq ? " and a control queue" : "");
			/* As a guest's driver does: a multi-queue device uses one pair until told how many. */
			if (fe->nring > fe->nq && (fe->features & VHD_BIT(VIRTIO_NET_F_MQ))) {
				uint16_t pairs = vhd_cpu_to_le16((uint16_t)(fe->nq / 2));
				if (ctrl_post(fe, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2) < 0)
					return -EIO;
			}
			if (fe->cfg.event)
				fe->cfg.event(fe, VHD_FE_UP, fe->cfg.opaque);
			return 0;
		}
		rc = start_step(fe);
	}
	return rc == VHD_FE_T_PENDING ? 0 : rc;
}

unsigned vhd_fe_pollfds(struct vhd_fe *fe, struct pollfd *fds, unsigned max)
{
	return fe->t.ops->pollfds(&fe->t, fds, max);
}

int vhd_fe_timeout_ms(struct vhd_fe *fe)
{
	int ms = fe->t.ops->timeout_ms(&fe->t);
	/* A control command's answer comes on its ring, which nothing polls: look again soon. */
	if (fe->up && fe->ctrl_pending && (ms < 0 || ms > 1))
		ms = 1;
	return ms;
}

int vhd_fe_ctrl(struct vhd_fe *fe, uint8_t cls, uint8_t cmd, const void *data, size_t len)
{
	if (!fe->up)
		return -ENOTCONN;
	if (fe->nring == fe->nq)
		return -ENOTSUP;
	if (len > CMD_MAX_DATA)
		return -EMSGSIZE;
	if (fe->ctrl_pending)
		return -EBUSY;
	return ctrl_post(fe, cls, cmd, data, len);
}

int vhd_fe_ctrl_result(const struct vhd_fe *fe)
{
	return fe->ctrl_result;
}

int vhd_fe_dispatch(struct vhd_fe *fe)
{
	const struct vhd_fe_transport_ops *o = fe->t.ops;
	int rc;
	if (!o->connected(&fe->t) && !o->connect(&fe->t))
		return 0;
	if (fe->step == S_IDLE) {
		/* A fresh connection (a client's first one may exist since vhd_fe_create()). */
		fe->step = S_GET_FEATURES;
		rc = advance(fe, start_step(fe));
	} else {
		rc = o->progress(&fe->t);
		if (rc >= 0 && !fe->up)
			rc = advance(fe, rc);
		else if (rc > 0)
			rc = 0; /* up: nothing of ours in flight */
		if (rc == 0 && fe->up && fe->ctrl_pending)
			ctrl_collect(fe);
	}
	if (rc < 0) {
		if (!fe->up)
			vhd_log(VHD_LOG_ERR, "%s: setup failed at %s: %s", fe->name, step_name(fe), strerror(-rc));
		lost(fe, rc);
	}
	return rc < 0 ? rc : 0;
}

int vhd_fe_reset(struct vhd_fe *fe)
{
	if (!fe->t.ops->connected(&fe->t))
		return -ENOTCONN;
	vhd_log(VHD_LOG_INFO, "%s: reset: the device is set up again from scratch", fe->name);
	if (fe->kept)
		drop_kept(fe);
	go_down(fe, false);
	close_fd(&fe->infl_fd); /* it described the rings just dropped: the next back-end gets a fresh area */
	fe->t.ops->lost(&fe->t);
	return 0;
}

int vhd_fe_remap(struct vhd_fe *fe, bool map)
{
	if (!fe->up)
		return -ENOTCONN;
	if (!fe->t.ops->remap)
		return -ENOTSUP;
	return fe->t.ops->remap(&fe->t, map);
}

void vhd_fe_destroy(struct vhd_fe *fe)
{
	if (!fe)
		return;
	/* No GET_VRING_BASE round trips: they would wait on the back-end. Closing the socket is what stops it;
	 * it maps our memory file itself, so unmapping ours cannot pull memory from under it. */
	if (fe->kept)
		drop_kept(fe);
	go_down(fe, false);
	close_fd(&fe->infl_fd);
	fe->t.ops->destroy(&fe->t);
	munmap(fe->mem, fe->mem_len);
	close(fe->memfd);
	free(fe);
}

bool vhd_fe_up(const struct vhd_fe *fe)
{
	return __atomic_load_n(&fe->up, __ATOMIC_ACQUIRE);
}

uint64_t vhd_fe_features(const struct vhd_fe *fe)
{
	return fe->features;
}

struct vhd_vq *vhd_fe_vq(struct vhd_fe *fe, unsigned qidx)
{
	return __atomic_load_n(&fe->up, __ATOMIC_ACQUIRE) && qidx < fe->nq ? fe->q[qidx].vq : NULL;
}

void *vhd_fe_buf_area(struct vhd_fe *fe, unsigned qp, size_t *len)
{
	if (qp >= fe->nq / 2)
		return NULL;
	*len = fe->cfg.buf_area_size;
	return fe->mem + fe->buf_off + qp * fe->cfg.buf_area_size;
}

uint64_t vhd_fe_buf_iova(const struct vhd_fe *fe, unsigned qp)
{
	if (qp >= fe->nq / 2)
		return 0;
	return fe->dev_base + fe->buf_off + qp * fe->cfg.buf_area_size;
}

void vhd_fe_iotlb_stats(const struct vhd_fe *fe, struct vhd_fe_iotlb_stats *st)
{
	*st = fe->iotlb;
}

int vhd_fe_kick(struct vhd_fe *fe, unsigned qidx)
{
	if (qidx >= fe->nq || fe->q[qidx].kick_fd < 0)
		return -ENOTCONN;
	uint64_t one = 1;
	if (write(fe->q[qidx].kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

int vhd_fe_call_fd(struct vhd_fe *fe, unsigned qidx)
{
	return qidx < fe->nq ? fe->q[qidx].call_fd : -1;
}
