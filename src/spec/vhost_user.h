/* SPDX-License-Identifier: MIT */
/*
 * vhost-user wire protocol (QEMU docs/interop/vhost-user.rst): message header, request ids, protocol feature
 * bits and payload layouts. All fields are in the host's native byte order, as the document specifies.
 */
#ifndef VHD_SPEC_VHOST_USER_H
#define VHD_SPEC_VHOST_USER_H

#include <stddef.h>
#include <stdint.h>

/* Front-end requests ("front-end message types"). */
enum vhost_user_request {
	VHOST_USER_NONE = 0,
	VHOST_USER_GET_FEATURES = 1,
	VHOST_USER_SET_FEATURES = 2,
	VHOST_USER_SET_OWNER = 3,
	VHOST_USER_RESET_OWNER = 4,
	VHOST_USER_SET_MEM_TABLE = 5,
	VHOST_USER_SET_LOG_BASE = 6,
	VHOST_USER_SET_LOG_FD = 7,
	VHOST_USER_SET_VRING_NUM = 8,
	VHOST_USER_SET_VRING_ADDR = 9,
	VHOST_USER_SET_VRING_BASE = 10,
	VHOST_USER_GET_VRING_BASE = 11,
	VHOST_USER_SET_VRING_KICK = 12,
	VHOST_USER_SET_VRING_CALL = 13,
	VHOST_USER_SET_VRING_ERR = 14,
	VHOST_USER_GET_PROTOCOL_FEATURES = 15,
	VHOST_USER_SET_PROTOCOL_FEATURES = 16,
	VHOST_USER_GET_QUEUE_NUM = 17,
	VHOST_USER_SET_VRING_ENABLE = 18,
	VHOST_USER_SEND_RARP = 19,
	VHOST_USER_NET_SET_MTU = 20,
	VHOST_USER_SET_BACKEND_REQ_FD = 21,
	VHOST_USER_IOTLB_MSG = 22,
	VHOST_USER_SET_VRING_ENDIAN = 23,
	VHOST_USER_GET_CONFIG = 24,
	VHOST_USER_SET_CONFIG = 25,
	VHOST_USER_CREATE_CRYPTO_SESSION = 26,
	VHOST_USER_CLOSE_CRYPTO_SESSION = 27,
	VHOST_USER_POSTCOPY_ADVISE = 28,
	VHOST_USER_POSTCOPY_LISTEN = 29,
	VHOST_USER_POSTCOPY_END = 30,
	VHOST_USER_GET_INFLIGHT_FD = 31,
	VHOST_USER_SET_INFLIGHT_FD = 32,
	VHOST_USER_GPU_SET_SOCKET = 33,
	VHOST_USER_RESET_DEVICE = 34,
	VHOST_USER_VRING_KICK = 35,
	VHOST_USER_GET_MAX_MEM_SLOTS = 36,
	VHOST_USER_ADD_MEM_REG = 37,
	VHOST_USER_REM_MEM_REG = 38,
	VHOST_USER_SET_STATUS = 39,
	VHOST_USER_GET_STATUS = 40,
	VHOST_USER_GET_SHARED_OBJECT = 41,
	VHOST_USER_SET_DEVICE_STATE_FD = 42,
	VHOST_USER_CHECK_DEVICE_STATE = 43,
	VHOST_USER_REQUEST_MAX
};

/* Back-end requests, sent on the backend request channel. */
enum vhost_user_backend_request {
	VHOST_USER_BACKEND_NONE = 0,
	VHOST_USER_BACKEND_IOTLB_MSG = 1,
	VHOST_USER_BACKEND_CONFIG_CHANGE_MSG = 2,
	VHOST_USER_BACKEND_VRING_HOST_NOTIFIER_MSG = 3,
	VHOST_USER_BACKEND_VRING_CALL = 4,
	VHOST_USER_BACKEND_VRING_ERR = 5,
	VHOST_USER_BACKEND_REQUEST_MAX
};

/* Protocol feature bits (bit numbers). */
#define VHOST_USER_PROTOCOL_F_MQ                    0
#define VHOST_USER_PROTOCOL_F_LOG_SHMFD             1
#define VHOST_USER_PROTOCOL_F_RARP                  2
#define VHOST_USER_PROTOCOL_F_REPLY_ACK             3
#define VHOST_USER_PROTOCOL_F_MTU                   4
#define VHOST_USER_PROTOCOL_F_BACKEND_REQ           5
#define VHOST_USER_PROTOCOL_F_CROSS_ENDIAN          6
#define VHOST_USER_PROTOCOL_F_CRYPTO_SESSION        7
#define VHOST_USER_PROTOCOL_F_PAGEFAULT             8
#define VHOST_USER_PROTOCOL_F_CONFIG                9
#define VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD       10
#define VHOST_USER_PROTOCOL_F_HOST_NOTIFIER         11
#define VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD        12
#define VHOST_USER_PROTOCOL_F_RESET_DEVICE          13
#define VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS  14
#define VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS   15
#define VHOST_USER_PROTOCOL_F_STATUS                16
#define VHOST_USER_PROTOCOL_F_XEN_MMAP              17
#define VHOST_USER_PROTOCOL_F_SHARED_OBJECT         18
#define VHOST_USER_PROTOCOL_F_DEVICE_STATE          19

/* Virtio feature bits that only vhost defines. */
#define VHOST_F_LOG_ALL                26
#define VHOST_USER_F_PROTOCOL_FEATURES 30

/* Header flags. */
#define VHOST_USER_VERSION_MASK 0x3u
#define VHOST_USER_VERSION      0x1u
#define VHOST_USER_REPLY_MASK   (1u << 2)
#define VHOST_USER_NEED_REPLY   (1u << 3)

/* u64 payload of SET_VRING_KICK/CALL/ERR: vring index in bits 0-7, bit 8 set when no fd is attached. */
#define VHOST_USER_VRING_IDX_MASK 0xffu
#define VHOST_USER_VRING_NOFD     (1u << 8)

/* vring address flags: log writes to the used ring (dirty logging). */
#define VHOST_VRING_F_LOG 0

/* SET_MEM_TABLE carries at most this many regions and fds; CONFIGURE_MEM_SLOTS raises the slot count. */
#define VHOST_MEMORY_BASELINE_NREGIONS 8
/* Most fds any message carries. */
#define VHOST_USER_MAX_FDS 8
#define VHOST_USER_MAX_CONFIG_SIZE 256

struct vhost_user_header {
	uint32_t request;
	uint32_t flags;
	uint32_t size; /* bytes of payload that follow */
};

struct vhost_vring_state {
	uint32_t index;
	uint32_t num;
};

struct vhost_vring_addr {
	uint32_t index;
	uint32_t flags;
	uint64_t desc_user_addr;
	uint64_t used_user_addr;
	uint64_t avail_user_addr;
	uint64_t log_guest_addr;
};

struct vhost_user_memory_region {
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	uint64_t mmap_offset;
};

struct vhost_user_memory {
	uint32_t nregions;
	uint32_t padding;
	struct vhost_user_memory_region regions[VHOST_MEMORY_BASELINE_NREGIONS];
};

/* ADD_MEM_REG / REM_MEM_REG payload. */
struct vhost_user_mem_reg {
	uint64_t padding;
	struct vhost_user_memory_region region;
};

struct vhost_user_log {
	uint64_t mmap_size;
	uint64_t mmap_offset;
};

#define VHOST_IOTLB_MISS           1
#define VHOST_IOTLB_UPDATE         2
#define VHOST_IOTLB_INVALIDATE     3
#define VHOST_IOTLB_ACCESS_FAIL    4
#define VHOST_IOTLB_BATCH_BEGIN    5 /* vhost-vdpa batching (Linux vhost_types.h); vhost-user never sends them */
#define VHOST_IOTLB_BATCH_END      6
#define VHOST_ACCESS_RO            1
#define VHOST_ACCESS_WO            2
#define VHOST_ACCESS_RW            3

struct vhost_iotlb_msg {
	uint64_t iova;
	uint64_t size;
	uint64_t uaddr;
	uint8_t perm;
	uint8_t type;
};

struct vhost_user_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t region[VHOST_USER_MAX_CONFIG_SIZE];
};

struct vhost_user_inflight {
	uint64_t mmap_size;
	uint64_t mmap_offset;
	uint16_t num_queues;
	uint16_t queue_size;
	uint32_t padding; /* implicit in QEMU's struct; named so that initialisers zero it (it goes on the wire) */
};

struct vhost_user_vring_area {
	uint64_t u64;
	uint64_t size;
	uint64_t offset;
};

/*
 * Inflight I/O tracking (PROTOCOL_F_INFLIGHT_SHMFD, vhost-user.rst "Inflight I/O tracking"): the shared area is one
 * queue region per virtqueue, back to back. These are its split and packed layouts, in native byte order.
 */
#define VHOST_USER_INFLIGHT_VERSION 1

struct vhost_user_inflight_desc_split {
	uint8_t inflight; /* head descriptor: taken by the device, not yet used */
	uint8_t padding[5];
	uint16_t next;    /* link of the last batch of used heads */
	uint64_t counter; /* order in which heads were taken */
};

struct vhost_user_inflight_split {
	uint64_t features;
	uint16_t version; /* 0: not initialised yet */
	uint16_t desc_num;
	uint16_t last_batch_head;
	uint16_t used_idx; /* used->idx once the last batch's inflight flags were cleared */
	struct vhost_user_inflight_desc_split desc[];
};

struct vhost_user_inflight_desc_packed {
	uint8_t inflight;
	uint8_t padding;
	uint16_t next;
	uint16_t last;
	uint16_t num;
	uint64_t counter;
	uint16_t id;
	uint16_t flags;
	uint32_t len;
	uint64_t addr;
};

struct vhost_user_inflight_packed {
	uint64_t features;
	uint16_t version;
	uint16_t desc_num;
	uint16_t free_head;
	uint16_t old_free_head;
	uint16_t used_idx;
	uint16_t old_used_idx;
	uint8_t used_wrap_counter;
	uint8_t old_used_wrap_counter;
	uint8_t padding[7];
	struct vhost_user_inflight_desc_packed desc[];
};

/* Every payload a message may carry; the largest bounds the receive buffer. */
union vhost_user_payload {
	uint64_t u64;
	struct vhost_vring_state state;
	struct vhost_vring_addr addr;
	struct vhost_user_memory memory;
	struct vhost_user_mem_reg mem_reg;
	struct vhost_user_log log;
	struct vhost_iotlb_msg iotlb;
	struct vhost_user_config config;
	struct vhost_user_inflight inflight;
	struct vhost_user_vring_area area;
};

_Static_assert(sizeof(struct vhost_user_header) == 12, "vhost-user header is 12 bytes");
_Static_assert(sizeof(struct vhost_vring_state) == 8, "vhost_vring_state is 8 bytes");
_Static_assert(sizeof(struct vhost_vring_addr) == 40, "vhost_vring_addr is 40 bytes");
_Static_assert(offsetof(struct vhost_vring_addr, desc_user_addr) == 8, "vring_addr.desc_user_addr");
_Static_assert(offsetof(struct vhost_vring_addr, used_user_addr) == 16, "vring_addr.used_user_addr");
_Static_assert(offsetof(struct vhost_vring_addr, avail_user_addr) == 24, "vring_addr.avail_user_addr");
_Static_assert(offsetof(struct vhost_vring_addr, log_guest_addr) == 32, "vring_addr.log_guest_addr");
_Static_assert(sizeof(struct vhost_user_memory_region) == 32, "memory region is 32 bytes");
_Static_assert(offsetof(struct vhost_user_memory_region, mmap_offset) == 24, "region.mmap_offset");
_Static_assert(sizeof(struct vhost_user_memory) == 8 + 32 * VHOST_MEMORY_BASELINE_NREGIONS, "memory table");
_Static_assert(offsetof(struct vhost_user_memory, regions) == 8, "memory.regions");
_Static_assert(sizeof(struct vhost_user_mem_reg) == 40, "single memory region is 40 bytes");
_Static_assert(sizeof(struct vhost_user_log) == 16, "log payload is 16 bytes");
_Static_assert(sizeof(struct vhost_iotlb_msg) == 32, "iotlb payload is 32 bytes with tail padding");
_Static_assert(offsetof(struct vhost_iotlb_msg, perm) == 24, "iotlb.perm");
_Static_assert(offsetof(struct vhost_iotlb_msg, type) == 25, "iotlb.type");
_Static_assert(sizeof(struct vhost_user_config) == 12 + VHOST_USER_MAX_CONFIG_SIZE, "config payload");
_Static_assert(sizeof(struct vhost_user_inflight) == 24, "inflight payload is 24 bytes with tail padding");
_Static_assert(offsetof(struct vhost_user_inflight, queue_size) == 18, "inflight.queue_size");
_Static_assert(sizeof(struct vhost_user_vring_area) == 24, "vring area payload is 24 bytes");
_Static_assert(sizeof(struct vhost_user_inflight_desc_split) == 16, "DescStateSplit is 16 bytes");
_Static_assert(offsetof(struct vhost_user_inflight_desc_split, next) == 6, "DescStateSplit.next");
_Static_assert(offsetof(struct vhost_user_inflight_desc_split, counter) == 8, "DescStateSplit.counter");
_Static_assert(sizeof(struct vhost_user_inflight_split) == 16, "QueueRegionSplit header is 16 bytes");
_Static_assert(offsetof(struct vhost_user_inflight_split, used_idx) == 14, "QueueRegionSplit.used_idx");
_Static_assert(offsetof(struct vhost_user_inflight_split, desc) == 16, "QueueRegionSplit.desc");
_Static_assert(sizeof(struct vhost_user_inflight_desc_packed) == 32, "DescStatePacked is 32 bytes");
_Static_assert(offsetof(struct vhost_user_inflight_desc_packed, counter) == 8, "DescStatePacked.counter");
_Static_assert(offsetof(struct vhost_user_inflight_desc_packed, addr) == 24, "DescStatePacked.addr");
_Static_assert(offsetof(struct vhost_user_inflight_packed, used_wrap_counter) == 20, "QueueRegionPacked.wrap");
_Static_assert(offsetof(struct vhost_user_inflight_packed, desc) == 32, "QueueRegionPacked.desc");

#endif
