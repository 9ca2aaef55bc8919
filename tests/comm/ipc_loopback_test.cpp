// ipc_loopback_test.cpp: the one-rank ring of open_gpu_ring (the loopback with device slots,
// comm/loopback_device.cpp), under mpirun -np 1 (the tests skip on more ranks), in the same binaries
// as ipc_transport_test.cpp: the receiver gets the sender's very slot and the payload the stream
// wrote (no copy), nothing is enqueued on the device when one stream is used (counted on the fake
// runtime), credits and order errors are the other links', waits that nothing could end fail at
// once, and a reader on another stream or the host, or a release on another stream, waits for the
// other side (proven on the fake runtime by holding that stream back with a gate).
#include <gtest/gtest.h>
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "comm/ipc_transport.h"
#include "gpu/vendor.h"
#include "ipc_test_util.h"

using namespace gptoss;
using namespace gptoss::comm;
using namespace gptoss::comm::ipc_test;

namespace {

#define REQUIRE_ONE_RANK() \
  if (world_size() != 1) GTEST_SKIP() << "the one-rank ring (loopback)"

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// A stream held back until the test opens it (the fake runtime only; a no-op on a real GPU, where
// the checks that need it are left out). Opens on scope exit so no stream is left blocked.
// The flag lives here while the fake stream's gated op reads it, so the destructor opens the gate
// and then waits for the stream: the op has stopped reading the flag before the flag is gone.
struct Gate {
  std::atomic<bool> open{false};
  gpuStream_t stream;
  explicit Gate(gpuStream_t s) : stream(s) {
#ifdef GPTOSS_FAKE_GPU
    fake_gpu_gate(s, &open);
#endif
  }
  void release() { open.store(true); }
  ~Gate() {
    release();
    (void)gpuStreamSynchronize(stream);
  }
};

uint64_t device_ops() {
#ifdef GPTOSS_FAKE_GPU
  return fake_gpu_device_ops();
#else
  return 0;  // not countable on a real GPU: only the pointer checks run there
#endif
}

TEST(IpcTransportLoopback, ReceiverGetsTheSenderSlotWithNoCopyAndNoDeviceWork) {
  REQUIRE_GPU();
  REQUIRE_ONE_RANK();
  const int slots = 3;
  const uint32_t max_rows = 4;
  for (bool allow_ipc : {true, false}) {  // allow_ipc is about links between ranks: no effect
    LinkSpec spec = spec_for(slots, max_rows);
    spec.allow_ipc = allow_ipc;
    EXPECT_EQ(open_gpu_ring(MPI_COMM_WORLD, spec)->describe().find("local (one rank, device slots)"),
              0u);
  }
  auto ring = open_gpu_ring(MPI_COMM_WORLD, spec_for(slots, max_rows));
  HostBuffers shb(slots, max_rows * kHidden * 4), rhb(slots, max_rows * kHidden * 4);
  Stream st;
  for (uint64_t q = 0; q < 20; ++q) {
    Slot& s = ring->next().acquire();
    EXPECT_EQ(s.index, static_cast<int>(q % slots));
    EXPECT_EQ(s.payload_memory, MemoryKind::Device);
    const uint32_t rows = rows_of(q, max_rows);
    put_message(s, shb, st.s, 0, q, rows);  // the "stage" writes the payload on st
    const uint64_t ops = device_ops();
    ring->next().post_on(s, st.ptr());
    const Slot& r = ring->prev().receive_on(st.ptr());
    EXPECT_EQ(device_ops(), ops) << "post_on + receive_on on one stream enqueued device work";
    ASSERT_EQ(&r, &s) << "the receiver must get the sender's slot";
    EXPECT_EQ(r.payload, s.payload);
    EXPECT_EQ(r.header, s.header);
    check_message(r, rhb, st.s, 0, q, rows);  // read in place, through the stream
    if (HasFatalFailure()) return;
    const uint64_t ops2 = device_ops();
    ring->prev().release_on(r, st.ptr());
    EXPECT_EQ(device_ops(), ops2) << "release_on on the post_on stream enqueued device work";
  }
  ring->next().drain();
  EXPECT_EQ(ring->next().stats().messages, 20u);
  EXPECT_EQ(ring->prev().stats().messages, 20u);
  EXPECT_EQ(ring->next().stats().payload_bytes, ring->prev().stats().payload_bytes);
}

TEST(IpcTransportLoopback, CreditsBackPressureAndErrorsWithoutWaiting) {
  REQUIRE_GPU();
  REQUIRE_ONE_RANK();
  LinkSpec spec = spec_for(2, 4);
  spec.timeout_s = 20;  // every refusal below must come at once, not after this
  auto ring = open_gpu_ring(MPI_COMM_WORLD, spec);
  SendLink& tx = ring->next();
  RecvLink& rx = ring->prev();
  Slot& a = tx.acquire();
  Slot& b = tx.acquire();
  EXPECT_EQ(tx.try_acquire(), nullptr);
  EXPECT_EQ(tx.poll(), 0);
  auto t0 = std::chrono::steady_clock::now();
  try {
    tx.acquire();
    ADD_FAILURE() << "acquire() with every credit out returned";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("all 2 slots acquired"), std::string::npos) << e.what();
  }
  EXPECT_LT(ms_since(t0), 2000.0) << "a wait nothing can end must fail at once";
  EXPECT_EQ(rx.try_receive(), nullptr);
  t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(rx.receive(), Error);  // nothing posted
  EXPECT_LT(ms_since(t0), 2000.0);
  for (Slot* s : {&a, &b}) {
    s->header->rows = 1;
    s->header->payload_bytes = 4;
  }
  tx.post(a);
  tx.post(b);
  EXPECT_EQ(tx.in_flight(), 2);
  EXPECT_THROW(tx.drain(), Error);  // posted, not released: drain could never end
  const Slot& ra = rx.receive();
  const Slot& rb = rx.receive();
  EXPECT_EQ(&ra, &a);
  EXPECT_EQ(&rb, &b);
  EXPECT_EQ(rx.held(), 2);
  EXPECT_EQ(rx.try_receive(), nullptr);
  EXPECT_THROW(rx.receive(), Error);       // all slots held
  EXPECT_THROW(rx.release(rb), Error);     // out of order
  rx.release(ra);
  EXPECT_EQ(tx.in_flight(), 1);
  Slot& c = tx.acquire();
  EXPECT_EQ(&c, &a) << "slot 0 again: wraparound";
  EXPECT_EQ(c.header->magic, 0u) << "acquire() clears the header";
  c.header->rows = 5;  // capacity 4
  EXPECT_THROW(tx.post(c), Error);
  c.header->rows = 0;
  tx.post(c);
  EXPECT_THROW(tx.post(c), Error);  // posted twice
  rx.release(rb);
  const Slot& rc = rx.receive();
  EXPECT_EQ(rc.header->seq_no, 2u);
  rx.release(rc);
  EXPECT_THROW(rx.release(rc), Error);  // released twice
  tx.drain();
  EXPECT_EQ(tx.in_flight(), 0);
  EXPECT_EQ(rx.held(), 0);
  EXPECT_EQ(tx.stats().messages, 3u);
  EXPECT_EQ(rx.stats().messages, 3u);
}

TEST(IpcTransportLoopback, OtherStreamsAndTheHostWaitForTheProducer) {
  REQUIRE_GPU();
  REQUIRE_ONE_RANK();
  // One slot, so every acquire is the slot just released. On the fake runtime a gate holds the
  // producer's (or reader's) stream to prove that the other side waits; on a GPU the data checks
  // run without the gates.
  auto ring = open_gpu_ring(MPI_COMM_WORLD, spec_for(1, 1));
  HostBuffers shb(1, kHidden * 4), rhb(1, kHidden * 4);
  Stream a, b;
  const size_t bytes = kHidden * 4;
  auto values_ok = [&](uint64_t seq) {
    size_t bad = 0;
    for (size_t i = 0; i < kHidden; ++i) bad += rhb.at(0)[i] != value_at(0, seq, i);
    return bad == 0;
  };
  // 1. Produced on a, read on b: b waits for a on the device.
  {
    Gate gate(a.s);
    Slot& s = ring->next().acquire();
    put_message(s, shb, a.s, 0, 0, 1);
    ring->next().post_on(s, a.ptr());
    const Slot& r = ring->prev().receive_on(b.ptr());  // the header is here at once
    ASSERT_EQ(&r, &s);
    std::memset(rhb.at(0), 0, bytes);
    GPU_CHECK(gpuMemcpyAsync(rhb.at(0), r.payload, bytes, gpuMemcpyDeviceToHost, b.s));
    gpuEvent_t done;
    GPU_CHECK(gpuEventCreateNoTiming(&done));
    GPU_CHECK(gpuEventRecord(done, b.s));
#ifdef GPTOSS_FAKE_GPU
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(gpuEventQuery(done), gpuErrorNotReady) << "stream b read before stream a wrote";
#endif
    gate.release();
    GPU_CHECK(gpuEventSynchronize(done));
    GPU_CHECK(gpuEventDestroy(done));
    EXPECT_TRUE(values_ok(0));
    // 2. Released on b (not the post_on stream): the slot goes back to the sender only after b's
    //    reads, whoever writes it next.
    Gate reads(b.s);
    GPU_CHECK(gpuMemcpyAsync(rhb.at(0), r.payload, bytes, gpuMemcpyDeviceToHost, b.s));
    ring->prev().release_on(r, b.ptr());
#ifdef GPTOSS_FAKE_GPU
    const auto t0 = std::chrono::steady_clock::now();
    while (ms_since(t0) < 30)
      ASSERT_EQ(ring->next().try_acquire(), nullptr) << "slot handed out before b's reads";
#endif
    reads.release();
  }
  // 3. Produced on a, received by the host (plain receive): it returns with the payload there.
  Gate gate(a.s);
  Slot& s = ring->next().acquire();
  put_message(s, shb, a.s, 0, 1, 1);
  ring->next().post_on(s, a.ptr());
#ifdef GPTOSS_FAKE_GPU
  const auto t0 = std::chrono::steady_clock::now();
  while (ms_since(t0) < 30)
    ASSERT_EQ(ring->prev().try_receive(), nullptr) << "host receive before stream a wrote";
#endif
  gate.release();
  const Slot& r = ring->prev().receive();
  std::memset(rhb.at(0), 0, bytes);
  GPU_CHECK(gpuMemcpy(rhb.at(0), r.payload, bytes, gpuMemcpyDeviceToHost));
  EXPECT_TRUE(values_ok(1));
  ring->prev().release(r);
  ring->next().drain();
}

}  // namespace
