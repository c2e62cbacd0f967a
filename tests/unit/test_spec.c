/* SPDX-License-Identifier: MIT */
/* The wire headers compile (their _Static_asserts hold) and the helpers agree with the spec's examples. */
#include "harness.h"
#include "spec/endian.h"
#include "spec/vduse.h"
#include "spec/vhost_user.h"
#include "spec/virtio_config.h"
#include "spec/virtio_net.h"
#include "spec/virtio_ring.h"

static void test_need_event(void)
{
	/* 2.7.10: with used_event 0 the first buffer used (idx 0 -> 1) must notify, the next not. */
	CHECK(vring_need_event(0, 1, 0));
	CHECK(!vring_need_event(0, 2, 1));
	/* The entry written at index 0xffff moves idx to 0: that is the one used_event 0xffff waits for. */
	CHECK(vring_need_event(0xffff, 0, 0xffff));
	CHECK(!vring_need_event(0, 0, 0xffff));
	/* Several published at once: notify iff the event index lies in [old, new). */
	CHECK(vring_need_event(5, 10, 3));
	CHECK(!vring_need_event(10, 10, 3));
	CHECK(vring_need_event(3, 10, 3));
	CHECK(!vring_need_event(2, 10, 3));
	/* Across the 16-bit wrap. */
	CHECK(vring_need_event(0xfffe, 2, 0xfff0));
	CHECK(!vring_need_event(3, 2, 0xfff0));
}

static void test_ring_sizes(void)
{
	/* 2.7: avail = 6 + 2*num bytes, used = 6 + 8*num bytes (both with the event-index trailer). */
	CHECK_EQ(virtq_avail_size(256), 6 + 2 * 256);
	CHECK_EQ(virtq_used_size(256), 6 + 8 * 256);
	CHECK_EQ(virtq_desc_size(256), 16 * 256);
}

static void test_endian(void)
{
	uint8_t b[8] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
	uint16_t v16;
	uint32_t v32;
	uint64_t v64;
	memcpy(&v16, b, 2);
	memcpy(&v32, b, 4);
	memcpy(&v64, b, 8);
	CHECK_EQ(vhd_le16(v16), 0x0201);
	CHECK_EQ(vhd_le32(v32), 0x04030201);
	CHECK(vhd_le64(v64) == 0x0807060504030201ull);
	CHECK_EQ(vhd_le16(vhd_cpu_to_le16(0xbeef)), 0xbeef);
}

static void test_vhost_user_ids(void)
{
	/* Spot checks against docs/interop/vhost-user.rst. */
	CHECK_EQ(VHOST_USER_SET_VRING_ENABLE, 18);
	CHECK_EQ(VHOST_USER_SET_BACKEND_REQ_FD, 21);
	CHECK_EQ(VHOST_USER_RESET_DEVICE, 34);
	CHECK_EQ(VHOST_USER_GET_MAX_MEM_SLOTS, 36);
	CHECK_EQ(VHOST_USER_GET_STATUS, 40);
	CHECK_EQ(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS, 15);
	CHECK_EQ(VHOST_USER_PROTOCOL_F_STATUS, 16);
	/* The largest payload is the config message; the union only adds alignment padding. */
	CHECK(sizeof(union vhost_user_payload) >= sizeof(struct vhost_user_config));
	CHECK(sizeof(union vhost_user_payload) < sizeof(struct vhost_user_config) + 8);
}

static const struct th_case cases[] = {
	{"need_event", test_need_event, 0},
	{"ring_sizes", test_ring_sizes, 0},
	{"endian", test_endian, 0},
	{"vhost_user_ids", test_vhost_user_ids, 0},
};
TH_MAIN("test_spec", cases)
