// ipc_test_util.h: what the device-ring tests share (ipc_transport_test.cpp, ipc_loopback_test.cpp,
// linked into comm_ipc_transport_test and its fake-runtime twin): the spec they open, messages
// generated from (sender, sequence number) and checked field by field, pinned host mirrors of
// device slots, and the GPU binding (REQUIRE_GPU skips without one).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "comm/device_pick.h"
#include "comm/ipc_transport.h"
#include "comm/world.h"
#include "gpu/vendor.h"
#include "mpi_gtest_main.h"

namespace gptoss::comm::ipc_test {

constexpr uint32_t kHidden = 2880;  // gpt-oss hidden size: payload = fp32 [rows, hidden]

inline int world_rank() { return World::current()->rank(); }
inline int world_size() { return World::current()->size(); }

// Binds this rank's GPU (local rank modulo the visible GPUs); false without a GPU.
inline bool bind_gpu() {
  int count = 0;
  if (gpuGetDeviceCount(&count) != gpuSuccess || count < 1) {
    (void)gpuGetLastError();
    return false;
  }
  GPU_CHECK(gpuSetDevice(pick_local_device(count)));
  return true;
}
#define REQUIRE_GPU() \
  if (!bind_gpu()) GTEST_SKIP() << "no GPU present"

inline bool ipc_disabled() { return testing_args::has("--transport=mpi"); }

inline LinkSpec spec_for(int slots, uint32_t max_rows, size_t row_bytes = kHidden * sizeof(float)) {
  LinkSpec s;
  s.slots = slots;
  s.max_rows = max_rows;
  s.max_payload_bytes = size_t(max_rows) * row_bytes;
  s.payload_memory = MemoryKind::Device;
  s.timeout_s = 10;
  s.allow_ipc = !ipc_disabled();
  return s;
}

inline uint32_t rows_of(uint64_t seq, uint32_t max_rows) {
  if (seq % 5 == 0) return max_rows;
  if (seq % 5 == 1) return 1;
  return 1 + static_cast<uint32_t>((seq * 37 + 11) % max_rows);
}

inline float value_at(int sender, uint64_t seq, size_t i) {
  return static_cast<float>(sender * 1000003 + static_cast<int64_t>(seq) * 7919 +
                            static_cast<int64_t>(i % 100003)) *
         0.5f;
}

// Host-side mirror of a link's slots: pinned buffers the test fills / reads back through the
// stream (payloads of device slots) or directly (host slots of the MPI fallback).
struct HostBuffers {
  std::vector<void*> bufs;
  HostBuffers(int slots, size_t bytes) {
    for (int i = 0; i < slots; ++i) {
      void* p = nullptr;
      GPU_CHECK(gpuHostAlloc(&p, std::max<size_t>(bytes, 16)));
      bufs.push_back(p);
    }
  }
  ~HostBuffers() {
    for (void* p : bufs) (void)gpuFreeHost(p);
  }
  float* at(int i) { return static_cast<float*>(bufs[static_cast<size_t>(i)]); }
};

struct Stream {
  gpuStream_t s = nullptr;
  Stream() { GPU_CHECK(gpuStreamCreateNonBlocking(&s)); }
  ~Stream() { (void)gpuStreamDestroy(s); }
  void* ptr() const { return static_cast<void*>(s); }
};

inline void fill_header(Slot& s, int sender, uint64_t seq, uint32_t rows, size_t payload_bytes) {
  MsgHeader& h = *s.header;
  h.micro_batch_id = static_cast<uint32_t>(seq * 3 + static_cast<uint64_t>(sender));
  h.rows = rows;
  h.flags = 0;
  h.payload_bytes = payload_bytes;
  for (int k = 0; k < 4; ++k) h.user[k] = seq * 100 + static_cast<uint64_t>(k);
  for (uint32_t r = 0; r < rows; ++r) {
    s.rows[r].seq_slot = static_cast<int32_t>((seq + r) % 97);
    s.rows[r].position = static_cast<int32_t>(seq * 5 + r);
    s.rows[r].flags = (r == 0 ? uint32_t{kRowNewSequence} : 0u) |
                      (r + 1 == rows ? uint32_t{kRowNeedsLogits} : 0u);
    s.rows[r].user = static_cast<uint32_t>(sender);
  }
}

inline void check_header(const Slot& s, int sender, uint64_t seq, uint32_t rows, size_t payload_bytes) {
  const MsgHeader& h = *s.header;
  ASSERT_EQ(h.seq_no, seq) << "out of order";
  ASSERT_EQ(h.magic, kMsgMagic);
  ASSERT_EQ(h.micro_batch_id, static_cast<uint32_t>(seq * 3 + static_cast<uint64_t>(sender)));
  ASSERT_EQ(h.rows, rows);
  ASSERT_EQ(h.payload_bytes, payload_bytes);
  for (int k = 0; k < 4; ++k) ASSERT_EQ(h.user[k], seq * 100 + static_cast<uint64_t>(k));
  for (uint32_t r = 0; r < rows; ++r) {
    ASSERT_EQ(s.rows[r].seq_slot, static_cast<int32_t>((seq + r) % 97));
    ASSERT_EQ(s.rows[r].position, static_cast<int32_t>(seq * 5 + r));
    ASSERT_EQ(s.rows[r].user, static_cast<uint32_t>(sender));
  }
}

// Writes message `seq` (fp32 [rows, hidden]) into the acquired slot: device slots through the
// stream from a pinned host buffer (the H2D copy is ordered before post_on's send kernel).
inline void put_message(Slot& s, HostBuffers& hb, gpuStream_t st, int sender, uint64_t seq,
                 uint32_t rows) {
  const size_t n = size_t(rows) * kHidden, bytes = n * sizeof(float);
  fill_header(s, sender, seq, rows, bytes);
  float* x = s.payload_memory == MemoryKind::Device ? hb.at(s.index) : static_cast<float*>(s.payload);
  for (size_t i = 0; i < n; ++i) x[i] = value_at(sender, seq, i);
  if (s.payload_memory == MemoryKind::Device)
    GPU_CHECK(gpuMemcpyAsync(s.payload, x, bytes, gpuMemcpyHostToDevice, st));
}

// Reads the received slot's payload back through the stream (after receive_on's device wait)
// and checks it.
inline void check_message(const Slot& s, HostBuffers& hb, gpuStream_t st, int sender, uint64_t seq,
                   uint32_t rows) {
  const size_t n = size_t(rows) * kHidden, bytes = n * sizeof(float);
  check_header(s, sender, seq, rows, bytes);
  if (testing::Test::HasFatalFailure()) return;
  const float* x = static_cast<const float*>(s.payload);
  if (s.payload_memory == MemoryKind::Device) {
    GPU_CHECK(gpuMemcpyAsync(hb.at(s.index), s.payload, bytes, gpuMemcpyDeviceToHost, st));
    GPU_CHECK(gpuStreamSynchronize(st));
    x = hb.at(s.index);
  }
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad += x[i] != value_at(sender, seq, i);
  ASSERT_EQ(bad, 0u) << "payload values differ in message " << seq;
}

}  // namespace gptoss::comm::ipc_test
