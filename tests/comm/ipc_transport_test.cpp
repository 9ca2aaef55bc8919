// ipc_transport_test.cpp: the ring for device payloads (comm/ipc_transport.h) under mpirun, 1 rank
// (the loopback) and 2 ranks (two GPUs of one host; CTest names comm_ipc_transport_np*). Every
// message's header, rows and payload are generated from (sender, sequence number) and checked
// field by field after the payload came back from the device, so ordering, content, sizes and
// stream ordering are checked against an independent oracle: a receive whose device-side wait did
// not hold back the read would read the slot's previous message (a different sequence number).
// Without a GPU every test skips ("no GPU present"). --transport=mpi (LinkSpec::allow_ipc = false
// on this rank) runs the same tests over the MPI fallback links (host-staged: device slots copied
// through the MPI link's host slots). The one-rank ring's own tests: ipc_loopback_test.cpp.
#include <gtest/gtest.h>
#include <mpi.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "comm/ipc_transport.h"
#include "comm/world.h"
#include "gpu/vendor.h"
#include "ipc_test_util.h"

using namespace gptoss;
using namespace gptoss::comm;
using namespace gptoss::comm::ipc_test;

namespace {


struct PumpResult {
  int max_in_flight = 0;
  uint64_t refused_acquires = 0;
};

// Every rank sends `count` messages to its successor and receives `count` from its predecessor
// with the non-blocking stream-ordered calls. recv_delay_us slows the receiver (back-pressure).
// prefill: every rank first posts as many messages as its link has slots and checks that the next
// acquire is refused, with a barrier before any rank receives, so each link is full and refuses
// once whatever the machine's load (a starved sender could otherwise post slower than a delayed
// receiver takes: seen on a 2-core machine under a build, 2026-12-07).
PumpResult pump(Ring& ring, uint64_t count, uint32_t max_rows, int recv_delay_us, bool prefill = false) {
  PumpResult res;
  const int me = ring.rank(), from = (ring.rank() + ring.size() - 1) % ring.size();
  const int k = ring.next().spec().slots;
  HostBuffers send_hb(k, size_t(max_rows) * kHidden * 4), recv_hb(k, size_t(max_rows) * kHidden * 4);
  Stream send_st, recv_st;
  uint64_t sent = 0, received = 0;
  auto next_recv = std::chrono::steady_clock::now();
  bool refused_since_recv = false;
  if (prefill) {
    for (int i = 0; i < k && sent < count; ++i, ++sent) {
      Slot& s = ring.next().acquire();
      put_message(s, send_hb, send_st.s, me, sent, rows_of(sent, max_rows));
      ring.next().post_on(s, send_st.ptr());
    }
    res.max_in_flight = ring.next().in_flight();
    if (sent < count) {
      if (ring.next().try_acquire() != nullptr) {
        ADD_FAILURE() << "a link with " << k << " messages in flight handed out another slot";
        return res;
      }
      ++res.refused_acquires;
      refused_since_recv = true;
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (sent < count || received < count) {
    sched_yield();
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "pump stuck at sent " << sent << " received " << received;
      return res;
    }
    if (sent < count) {
      if (Slot* s = ring.next().try_acquire()) {
        put_message(*s, send_hb, send_st.s, me, sent, rows_of(sent, max_rows));
        ring.next().post_on(*s, send_st.ptr());
        ++sent;
      } else {
        ++res.refused_acquires;
        refused_since_recv = true;
      }
      res.max_in_flight = std::max(res.max_in_flight, ring.next().in_flight());
    }
    const bool gate_open = recv_delay_us == 0 || refused_since_recv || sent == count;
    if (received < count && gate_open && std::chrono::steady_clock::now() >= next_recv) {
      if (const Slot* s = ring.prev().try_receive_on(recv_st.ptr())) {
        check_message(*s, recv_hb, recv_st.s, from, received, rows_of(received, max_rows));
        if (testing::Test::HasFatalFailure()) return res;
        ring.prev().release_on(*s, recv_st.ptr());
        ++received;
        refused_since_recv = false;
        next_recv = std::chrono::steady_clock::now() + std::chrono::microseconds(recv_delay_us);
      }
    }
  }
  ring.next().drain();
  GPU_CHECK(gpuStreamSynchronize(recv_st.s));
  EXPECT_EQ(ring.next().in_flight(), 0);
  EXPECT_EQ(ring.prev().held(), 0);
  return res;
}

TEST(IpcTransport, ChoosesIpcOnOneHostAndSaysSo) {
  REQUIRE_GPU();
  auto ring = open_gpu_ring(MPI_COMM_WORLD, spec_for(4, 16));
  const std::string d = ring->describe();
  if (world_rank() == 0) std::printf("ring: %s\n", d.c_str());
  if (world_size() == 1) {
    EXPECT_EQ(d.find("local (one rank, device slots)"), 0u) << d;
  } else {
    const char* want = ipc_disabled() ? "mpi (host-staged: IPC disabled)" : "gpu-ipc";
    EXPECT_NE(d.find(std::string("send ") + std::to_string(world_rank())), std::string::npos) << d;
    // Both links of this rank use the expected transport (the test runs on one host).
    size_t first = d.find(want);
    ASSERT_NE(first, std::string::npos) << d;
    EXPECT_NE(d.find(want, first + 1), std::string::npos) << d;
  }
  // Host-staged MPI links hand out device slots too: the same code runs on either.
  const MemoryKind mk = MemoryKind::Device;
  Slot& s = ring->next().acquire();
  EXPECT_EQ(s.payload_memory, mk);
  s.header->rows = 0;
  s.header->payload_bytes = 0;
  ring->next().post(s);
  const Slot& r = ring->prev().receive();
  EXPECT_EQ(r.payload_memory, mk);
  ring->prev().release(r);
  ring->next().drain();
}

TEST(IpcTransport, OrderAndContent) {
  REQUIRE_GPU();
  auto ring = open_gpu_ring(MPI_COMM_WORLD, spec_for(4, 16));
  pump(*ring, 300, 16, 0);
  EXPECT_EQ(ring->next().stats().messages, 300u);
  EXPECT_EQ(ring->prev().stats().messages, 300u);
  uint64_t bytes = 0;
  for (uint64_t q = 0; q < 300; ++q) bytes += uint64_t(rows_of(q, 16)) * kHidden * 4;
  EXPECT_EQ(ring->next().stats().payload_bytes, bytes);
  EXPECT_EQ(ring->prev().stats().payload_bytes, bytes);
}

TEST(IpcTransport, ManyWraparoundsWithFewSlots) {
  REQUIRE_GPU();
  // 1, 2 and 3 slots; with 3 slots 3000 messages: every slot's flag and credit words wrap 1000
  // times (values i+1, i+K+1, ...).
  for (int slots : {1, 2, 3}) {
    auto ring = open_gpu_ring(MPI_COMM_WORLD, spec_for(slots, 2));
    pump(*ring, slots == 3 ? 3000 : 500, 2, 0);
    if (HasFailure()) return;
  }
}

TEST(IpcTransport, MessageSizesFromOneRowToLargest) {
  REQUIRE_GPU();
  // Rows 1..64 and then up to 512 rows x 2880 fp32 (5.9 MB, larger than any micro-batch the
  // pipeline cuts), every message checked.
  const uint32_t max_rows = 512;
  std::vector<uint32_t> sizes;
  for (uint32_t r = 1; r <= 64; ++r) sizes.push_back(r);
  for (uint32_t r : {65u, 127u, 128u, 255u, 256u, 384u, 511u, 512u, 1u, 512u}) sizes.push_back(r);
  auto ring = open_gpu_ring(MPI_COMM_WORLD, spec_for(3, max_rows));
  const int me = ring->rank(), from = (me + ring->size() - 1) % ring->size();
  HostBuffers shb(3, size_t(max_rows) * kHidden * 4), rhb(3, size_t(max_rows) * kHidden * 4);
  Stream sst, rst;
  uint64_t sent = 0, received = 0;
  const uint64_t total = sizes.size();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (sent < total || received < total) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "stuck at " << sent << "/" << received;
    if (sent < total)
      if (Slot* s = ring->next().try_acquire()) {
        put_message(*s, shb, sst.s, me, sent, sizes[sent]);
        ring->next().post_on(*s, sst.ptr());
        ++sent;
      }
    if (const Slot* s = ring->prev().try_receive_on(rst.ptr())) {
      check_message(*s, rhb, rst.s, from, received, sizes[received]);
      if (HasFatalFailure()) return;
      ring->prev().release_on(*s, rst.ptr());
      ++received;
    }
  }
  ring->next().drain();
}

TEST(IpcTransport, OddByteCountsAndEmptyPayloads) {
  REQUIRE_GPU();
  // Payloads of 0..100 bytes (the copy kernel's 16-byte body and byte tail), plain host-ordered
  // calls: post() after a synchronous copy, receive() returns with the payload there.
  auto ring = open_gpu_ring(MPI_COMM_WORLD, spec_for(2, 1, 100));
  const int me = ring->rank(), from = (me + ring->size() - 1) % ring->size();
  std::vector<uint8_t> out(100), in(100);
  for (uint32_t n = 0; n <= 100; ++n) {
    Slot& s = ring->next().acquire();
    fill_header(s, me, n, 1, n);
    for (uint32_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(me * 31 + n * 7 + i);
    if (s.payload_memory == MemoryKind::Device) {
      if (n) GPU_CHECK(gpuMemcpy(s.payload, out.data(), n, gpuMemcpyHostToDevice));
    } else if (n) {
      std::memcpy(s.payload, out.data(), n);
    }
    ring->next().post(s);
    const Slot& r = ring->prev().receive();
    check_header(r, from, n, 1, n);
    if (HasFatalFailure()) return;
    if (r.payload_memory == MemoryKind::Device) {
      GPU_CHECK(gpuMemcpy(in.data(), r.payload, 100, gpuMemcpyDeviceToHost));
    } else {
      std::memcpy(in.data(), r.payload, n);
    }
    for (uint32_t i = 0; i < n; ++i)
      ASSERT_EQ(in[i], static_cast<uint8_t>(from * 31 + n * 7 + i)) << "byte " << i << " of " << n;
    ring->prev().release(r);
  }
  ring->next().drain();
}

TEST(IpcTransport, BackPressureWithSlowReceiver) {
  REQUIRE_GPU();
  const int slots = 3;
  auto ring = open_gpu_ring(MPI_COMM_WORLD, spec_for(slots, 8));
  PumpResult r = pump(*ring, 60, 8, 3000, /*prefill=*/true);
  EXPECT_EQ(r.max_in_flight, slots);
  EXPECT_GT(r.refused_acquires, 0u);
}

TEST(IpcTransport, BlockingAcquireWaitsForCredit) {
  REQUIRE_GPU();
  const int slots = 2;
  auto ring = open_gpu_ring(MPI_COMM_WORLD, spec_for(slots, 1));
  const int me = ring->rank(), from = (me + ring->size() - 1) % ring->size();
  HostBuffers shb(slots, kHidden * 4), rhb(slots, kHidden * 4);
  Stream st;
  for (int q = 0; q < slots; ++q) {
    Slot& s = ring->next().acquire();
    put_message(s, shb, st.s, me, static_cast<uint64_t>(q), 1);
    ring->next().post_on(s, st.ptr());
  }
  EXPECT_EQ(ring->next().try_acquire(), nullptr);
  EXPECT_EQ(ring->next().in_flight(), slots);
  const Slot& a = ring->prev().receive_on(st.ptr());
  check_message(a, rhb, st.s, from, 0, 1);
  const Slot& b = ring->prev().receive_on(st.ptr());
  check_message(b, rhb, st.s, from, 1, 1);
  EXPECT_EQ(ring->prev().try_receive_on(st.ptr()), nullptr);  // all slots held
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(ring->next().try_acquire(), nullptr);
  MPI_Barrier(MPI_COMM_WORLD);
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(30))
    ASSERT_EQ(ring->next().try_acquire(), nullptr) << "credit before the receiver released";
  // Every rank's 30 ms of polling is over before any rank releases (a barrier, not a sleep: a
  // rank descheduled for a while on a loaded machine must not see its receiver's release inside
  // its own polling window).
  MPI_Barrier(MPI_COMM_WORLD);
  ring->prev().release_on(a, st.ptr());
  Slot& c = ring->next().acquire();
  EXPECT_EQ(c.index, 0);  // slot 0 again: wraparound
  put_message(c, shb, st.s, me, 2, 1);
  ring->next().post_on(c, st.ptr());
  ring->prev().release_on(b, st.ptr());
  const Slot& d = ring->prev().receive_on(st.ptr());
  check_message(d, rhb, st.s, from, 2, 1);
  ring->prev().release_on(d, st.ptr());
  ring->next().drain();
}

TEST(IpcTransport, DeviceOrderedRelayAroundTheRing) {
  REQUIRE_GPU();
  // Rank 0 injects micro-batches (M = K in flight); every other rank forwards each one with no
  // host synchronisation at all: receive_on(stream), a device-to-device copy of the payload into
  // its send slot and a 4-byte stamp (float number `rank` of row 0 set to bytes rank+1), post_on,
  // release_on, all on one stream. Rank 0 checks every returning micro-batch, in order.
  const int slots = 4, n = world_size(), me = world_rank();
  const uint32_t max_rows = 8;
  const uint64_t total = 400;
  auto ring = open_gpu_ring(MPI_COMM_WORLD, spec_for(slots, max_rows));
  HostBuffers shb(slots, max_rows * kHidden * 4), rhb(slots, max_rows * kHidden * 4);
  Stream st;
  if (me == 0) {
    uint64_t injected = 0, returned = 0;
    while (returned < total) {
      while (injected < total && injected - returned < static_cast<uint64_t>(slots)) {
        Slot& s = ring->next().acquire();
        put_message(s, shb, st.s, 0, injected, rows_of(injected, max_rows));
        ring->next().post_on(s, st.ptr());
        ++injected;
      }
      const Slot& r = ring->prev().receive_on(st.ptr());
      const uint32_t rows = rows_of(returned, max_rows);
      ASSERT_EQ(r.header->micro_batch_id, static_cast<uint32_t>(returned * 3)) << "out of order";
      ASSERT_EQ(r.header->rows, rows);
      const float* x = static_cast<const float*>(r.payload);
      if (r.payload_memory == MemoryKind::Device) {
        GPU_CHECK(gpuMemcpyAsync(rhb.at(r.index), r.payload, size_t(rows) * kHidden * 4,
                                 gpuMemcpyDeviceToHost, st.s));
        GPU_CHECK(gpuStreamSynchronize(st.s));
        x = rhb.at(r.index);
      }
      size_t bad = 0;
      for (size_t i = 0; i < size_t(rows) * kHidden; ++i) {
        float want = value_at(0, returned, i);
        if (i >= 1 && i < static_cast<size_t>(n)) {
          uint32_t bits = 0x01010101u * static_cast<uint32_t>(i + 1);
          std::memcpy(&want, &bits, 4);
        }
        uint32_t got_bits, want_bits;
        std::memcpy(&got_bits, &x[i], 4);
        std::memcpy(&want_bits, &want, 4);
        bad += got_bits != want_bits;
      }
      ASSERT_EQ(bad, 0u) << "micro-batch " << returned;
      ring->prev().release_on(r, st.ptr());
      ++returned;
    }
  } else {
    for (uint64_t q = 0; q < total; ++q) {
      const Slot& in = ring->prev().receive_on(st.ptr());
      Slot& out = ring->next().acquire();
      std::memcpy(out.header, in.header, sizeof(MsgHeader));
      std::memcpy(out.rows, in.rows, sizeof(RowHeader) * in.header->rows);
      const size_t bytes = in.header->payload_bytes;
      const bool dev_in = in.payload_memory == MemoryKind::Device,
                 dev_out = out.payload_memory == MemoryKind::Device;
      GPU_CHECK(gpuMemcpyAsync(out.payload, in.payload, bytes,
                               dev_in && dev_out   ? gpuMemcpyDeviceToDevice
                               : dev_in            ? gpuMemcpyDeviceToHost
                               : dev_out           ? gpuMemcpyHostToDevice
                                                   : gpuMemcpyDeviceToDevice,
                               st.s));
      if (!dev_in && !dev_out) std::memcpy(out.payload, in.payload, bytes);
      if (dev_out) {
        GPU_CHECK(gpuMemsetAsync(static_cast<float*>(out.payload) + me, me + 1, 4, st.s));
      } else {
        GPU_CHECK(gpuStreamSynchronize(st.s));
        std::memset(static_cast<float*>(out.payload) + me, me + 1, 4);
      }
      ring->next().post_on(out, st.ptr());
      ring->prev().release_on(in, st.ptr());
    }
  }
  ring->next().drain();
  GPU_CHECK(gpuStreamSynchronize(st.s));
}

TEST(IpcTransport, CapacityAndOrderErrors) {
  REQUIRE_GPU();
  auto ring = open_gpu_ring(MPI_COMM_WORLD, spec_for(2, 4));
  Slot& s = ring->next().acquire();
  s.header->rows = 5;
  s.header->payload_bytes = 0;
  EXPECT_THROW(ring->next().post(s), Error);
  s.header->rows = 1;
  s.header->payload_bytes = s.payload_capacity_bytes + 1;
  EXPECT_THROW(ring->next().post(s), Error);
  s.header->payload_bytes = 4;
  ring->next().post(s);
  EXPECT_THROW(ring->next().post(s), Error);
  const Slot& r = ring->prev().receive();
  Slot copy = r;
  EXPECT_THROW(ring->prev().release(copy), Error);
  ring->prev().release(r);
  EXPECT_THROW(ring->prev().release(r), Error);
  ring->next().drain();
}

TEST(IpcTransport, ReceiveTimesOutNamingThePeer) {
  REQUIRE_GPU();
  LinkSpec spec = spec_for(2, 1);
  spec.timeout_s = 0.3;
  auto ring = open_gpu_ring(MPI_COMM_WORLD, spec);
  const int from = (world_rank() + world_size() - 1) % world_size();
  Stream st;
  try {
    ring->prev().receive_on(st.ptr());
    ADD_FAILURE() << "receive_on() returned without a message";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no message from rank " + std::to_string(from)),
              std::string::npos)
        << e.what();
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(IpcTransport, MismatchedSpecIsRefusedOnEveryRank) {
  REQUIRE_GPU();
  if (world_size() < 2) GTEST_SKIP() << "needs two ranks";
  LinkSpec spec = spec_for(4, 8);
  if (world_rank() == world_size() - 1) spec.slots = 3;
  try {
    open_gpu_ring(MPI_COMM_WORLD, spec);
    ADD_FAILURE() << "open_gpu_ring accepted different specs";
  } catch (const WorldError& e) {
    EXPECT_NE(std::string(e.what()).find("ring transport spec differs between ranks"),
              std::string::npos)
        << e.what();
  }
}

TEST(IpcTransport, HostPayloadSpecIsRefused) {
  REQUIRE_GPU();
  LinkSpec spec = spec_for(2, 1);
  spec.payload_memory = MemoryKind::Host;
  EXPECT_THROW(open_gpu_ring(MPI_COMM_WORLD, spec), Error);
}


}  // namespace

namespace {

// Runs where there is NO GPU (CTest comm_ipc_transport_nogpu_np*, here and in GPU-build CI): the
// ring's start-up (rank info, per-link choice, MPI links) and describe() on the CPU; every link
// is plain MPI with host payloads (one rank: the loopback with host payloads).
TEST(IpcTransportNoGpu, RingWithoutGpusIsPlainMpi) {
  int count = 0;
  if (gpuGetDeviceCount(&count) == gpuSuccess && count > 0) GTEST_SKIP() << "a GPU is present";
  (void)gpuGetLastError();
  auto ring = open_gpu_ring(MPI_COMM_WORLD, spec_for(3, 4));
  const std::string d = ring->describe();
  if (world_size() == 1) {
    EXPECT_EQ(d.find("local (one rank, host payload: no GPU)"), 0u) << d;
  } else {
    const std::string want = "mpi (host payload: no GPU)";
    const size_t first = d.find(want);
    ASSERT_NE(first, std::string::npos) << d;
    EXPECT_NE(d.find(want, first + want.size()), std::string::npos) << d;
  }
  const int me = ring->rank(), from = (me + ring->size() - 1) % ring->size();
  uint64_t sent = 0, received = 0;
  const uint64_t total = 100;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (sent < total || received < total) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "stuck at " << sent << "/" << received;
    if (sent < total)
      if (Slot* s = ring->next().try_acquire()) {
        ASSERT_EQ(s->payload_memory, MemoryKind::Host);
        const uint32_t rows = rows_of(sent, 4);
        fill_header(*s, me, sent, rows, size_t(rows) * kHidden * 4);
        auto* x = static_cast<float*>(s->payload);
        for (size_t i = 0; i < size_t(rows) * kHidden; ++i) x[i] = value_at(me, sent, i);
        ring->next().post_on(*s, nullptr);
        ++sent;
      }
    if (const Slot* s = ring->prev().try_receive_on(nullptr)) {
      const uint32_t rows = rows_of(received, 4);
      check_header(*s, from, received, rows, size_t(rows) * kHidden * 4);
      if (HasFatalFailure()) return;
      const auto* x = static_cast<const float*>(s->payload);
      size_t bad = 0;
      for (size_t i = 0; i < size_t(rows) * kHidden; ++i) bad += x[i] != value_at(from, received, i);
      ASSERT_EQ(bad, 0u);
      ring->prev().release_on(*s, nullptr);
      ++received;
    }
  }
  ring->next().drain();
}

}  // namespace
