// transport_test.cpp: the ring for host payloads (open_ring), run as 1, 2, 3 and 4 ranks (CTest
// names comm_transport_mpi_np*): MPI links, and on one rank the loopback (the same tests, plus
// Transport.OneRankIsALoopback). Every message's header, rows and payload are generated from
// (sender, sequence number) by make_message() and checked field by field on receipt, so order,
// content and sizes are checked against an independent oracle.
#include "comm/transport.h"

#include <gtest/gtest.h>
#include <mpi.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "comm/world.h"

using namespace gptoss;
using namespace gptoss::comm;

namespace {

constexpr uint32_t kHidden = 2880;  // gpt-oss hidden size: payload = fp32 [rows, hidden]

int world_rank() { return World::current()->rank(); }
int world_size() { return World::current()->size(); }

LinkSpec spec_for(int slots, uint32_t max_rows, uint32_t hidden = kHidden) {
  LinkSpec s;
  s.slots = slots;
  s.max_rows = max_rows;
  s.max_payload_bytes = size_t(max_rows) * hidden * sizeof(float);
  s.timeout_s = 20;
  return s;
}

// Rows of message `seq` from `sender`: cycles 1 .. max_rows with a stride so consecutive
// messages differ in size, always including 1 and max_rows.
uint32_t rows_of(uint64_t seq, uint32_t max_rows) {
  if (seq % 5 == 0) return max_rows;
  if (seq % 5 == 1) return 1;
  return 1 + static_cast<uint32_t>((seq * 37 + 11) % max_rows);
}

float value_at(int sender, uint64_t seq, size_t i) {
  return static_cast<float>(sender * 1000003 + static_cast<int64_t>(seq) * 7919 +
                            static_cast<int64_t>(i % 100003)) *
         0.5f;
}

void make_message(Slot& s, int sender, uint64_t seq, uint32_t rows, uint32_t hidden) {
  MsgHeader& h = *s.header;
  h.micro_batch_id = static_cast<uint32_t>(seq * 3 + static_cast<uint64_t>(sender));
  h.rows = rows;
  h.flags = 0;
  h.payload_bytes = size_t(rows) * hidden * sizeof(float);
  for (int k = 0; k < 4; ++k) h.user[k] = seq * 100 + static_cast<uint64_t>(k);
  for (uint32_t r = 0; r < rows; ++r) {
    s.rows[r].seq_slot = static_cast<int32_t>((seq + r) % 97);
    s.rows[r].position = static_cast<int32_t>(seq * 5 + r);
    s.rows[r].flags = (r == 0 ? uint32_t{kRowNewSequence} : 0u) |
                      (r + 1 == rows ? uint32_t{kRowLastPromptToken | kRowNeedsLogits} : 0u);
    s.rows[r].user = static_cast<uint32_t>(sender);
  }
  auto* x = static_cast<float*>(s.payload);  // [rows, hidden]
  for (size_t i = 0; i < size_t(rows) * hidden; ++i) x[i] = value_at(sender, seq, i);
}

// Checks every field against make_message (fatal gtest failure on the first difference).
void expect_message(const Slot& s, int sender, uint64_t seq, uint32_t rows, uint32_t hidden) {
  const MsgHeader& h = *s.header;
  ASSERT_EQ(h.seq_no, seq) << "out of order";
  ASSERT_EQ(h.magic, kMsgMagic);
  ASSERT_EQ(h.micro_batch_id, static_cast<uint32_t>(seq * 3 + static_cast<uint64_t>(sender)));
  ASSERT_EQ(h.rows, rows);
  ASSERT_EQ(h.payload_bytes, size_t(rows) * hidden * sizeof(float));
  for (int k = 0; k < 4; ++k) ASSERT_EQ(h.user[k], seq * 100 + static_cast<uint64_t>(k));
  for (uint32_t r = 0; r < rows; ++r) {
    ASSERT_EQ(s.rows[r].seq_slot, static_cast<int32_t>((seq + r) % 97));
    ASSERT_EQ(s.rows[r].position, static_cast<int32_t>(seq * 5 + r));
    ASSERT_EQ(s.rows[r].flags,
              (r == 0 ? uint32_t{kRowNewSequence} : 0u) |
                  (r + 1 == rows ? uint32_t{kRowLastPromptToken | kRowNeedsLogits} : 0u));
    ASSERT_EQ(s.rows[r].user, static_cast<uint32_t>(sender));
  }
  const auto* x = static_cast<const float*>(s.payload);
  size_t bad = 0;
  for (size_t i = 0; i < size_t(rows) * hidden; ++i) bad += x[i] != value_at(sender, seq, i);
  ASSERT_EQ(bad, 0u) << "payload values differ in message " << seq;
}

// Every rank sends `count` messages to its successor and receives `count` from its predecessor,
// with only the non-blocking calls (a stage overlapping both directions). recv_delay_us slows
// the receiver down to exercise back-pressure. Returns the largest in_flight() seen.
struct PumpResult {
  int max_in_flight = 0;
  uint64_t refused_acquires = 0;  // try_acquire() == nullptr while messages remained
};
PumpResult pump(Ring& ring, uint64_t count, uint32_t max_rows, int recv_delay_us) {
  PumpResult res;
  const int me = ring.rank(), from = (ring.rank() + ring.size() - 1) % ring.size();
  uint64_t sent = 0, received = 0;
  auto next_recv = std::chrono::steady_clock::now();
  // A slow receiver (recv_delay_us > 0) also waits until its sender has been refused since its
  // last receive (or has sent everything): on a loaded machine the process can sleep longer than
  // the delay between two loop turns, and a time gate alone would then never let the sender fill
  // its slots.
  bool refused_since_recv = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (sent < count || received < count) {
    sched_yield();  // up to 4 ranks share 2 cores in CI
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "pump stuck at sent " << sent << " received " << received;
      return res;
    }
    if (sent < count) {
      if (Slot* s = ring.next().try_acquire()) {
        make_message(*s, me, sent, rows_of(sent, max_rows), kHidden);
        ring.next().post(*s);
        ++sent;
      } else {
        ++res.refused_acquires;
        refused_since_recv = true;
      }
      res.max_in_flight = std::max(res.max_in_flight, ring.next().in_flight());
    }
    const bool gate_open = recv_delay_us == 0 || refused_since_recv || sent == count;
    if (received < count && gate_open && std::chrono::steady_clock::now() >= next_recv) {
      if (const Slot* s = ring.prev().try_receive()) {
        expect_message(*s, from, received, rows_of(received, max_rows), kHidden);
        if (testing::Test::HasFatalFailure()) return res;
        ring.prev().release(*s);
        ++received;
        refused_since_recv = false;
        next_recv = std::chrono::steady_clock::now() + std::chrono::microseconds(recv_delay_us);
      }
    }
  }
  ring.next().drain();
  EXPECT_EQ(ring.next().in_flight(), 0);
  EXPECT_EQ(ring.prev().held(), 0);
  return res;
}

TEST(Transport, OrderAndContent) {
  auto ring = open_ring(MPI_COMM_WORLD, spec_for(4, 16));
  pump(*ring, 200, 16, 0);
  EXPECT_EQ(ring->next().stats().messages, 200u);
  EXPECT_EQ(ring->prev().stats().messages, 200u);
  uint64_t bytes = 0;
  for (uint64_t q = 0; q < 200; ++q) bytes += uint64_t(rows_of(q, 16)) * kHidden * 4;
  EXPECT_EQ(ring->next().stats().payload_bytes, bytes);
  EXPECT_EQ(ring->prev().stats().payload_bytes, bytes);
}

TEST(Transport, ManyWraparoundsWithFewSlots) {
  // 3 slots, 600 messages: the slot ring wraps 200 times; one and two slots too.
  for (int slots : {1, 2, 3}) {
    auto ring = open_ring(MPI_COMM_WORLD, spec_for(slots, 2));
    pump(*ring, slots == 3 ? 600 : 200, 2, 0);
    if (HasFailure()) return;
  }
}

TEST(Transport, MessageSizesFromOneRowToLargest) {
  // 64 rows x 2880 fp32 = 737280 bytes per message (MPI rendezvous path); every row count.
  const uint32_t max_rows = 64;
  auto ring = open_ring(MPI_COMM_WORLD, spec_for(3, max_rows));
  const int me = ring->rank(), from = (me + ring->size() - 1) % ring->size();
  uint64_t sent = 0, received = 0;
  const uint32_t total = max_rows;  // message q carries q+1 rows: 1 .. 64
  while (sent < total || received < total) {
    if (sent < total) {
      if (Slot* s = ring->next().try_acquire()) {
        make_message(*s, me, sent, static_cast<uint32_t>(sent + 1), kHidden);
        ring->next().post(*s);
        ++sent;
      }
    }
    if (const Slot* s = ring->prev().try_receive()) {
      expect_message(*s, from, received, static_cast<uint32_t>(received + 1), kHidden);
      if (HasFatalFailure()) return;
      ring->prev().release(*s);
      ++received;
    }
  }
  ring->next().drain();
}

TEST(Transport, ZeroPayloadHeaderOnlyMessage) {
  auto ring = open_ring(MPI_COMM_WORLD, spec_for(2, 4));
  Slot& s = ring->next().acquire();
  s.header->rows = 0;
  s.header->payload_bytes = 0;
  s.header->flags = kMsgShutdown;
  s.header->micro_batch_id = 77;
  ring->next().post(s);
  const Slot& r = ring->prev().receive();
  EXPECT_EQ(r.header->flags, kMsgShutdown);
  EXPECT_EQ(r.header->micro_batch_id, 77u);
  EXPECT_EQ(r.header->rows, 0u);
  ring->prev().release(r);
  ring->next().drain();
}

// Posts one message per credit (ids 0 .. slots-1, from this rank), then checks that the sender
// is out of credits: try_acquire() refuses and every slot is in flight.
void fill_every_credit(Ring& ring, int slots) {
  for (int q = 0; q < slots; ++q) {
    Slot& s = ring.next().acquire();
    make_message(s, ring.rank(), static_cast<uint64_t>(q), 1, kHidden);
    ring.next().post(s);
  }
  EXPECT_EQ(ring.next().try_acquire(), nullptr);
  EXPECT_EQ(ring.next().in_flight(), slots);
}

TEST(Transport, BackPressureWithSlowReceiver) {
  const int slots = 3;
  {
    // Deterministic refusal (no timing): every rank fills all its credits before any rank
    // receives, so the next try_acquire() must refuse (BlockingAcquireWaitsForCredit checks that
    // acquire() then waits for the release). On one rank nothing but this rank's own release
    // could return a credit: a blocking acquire() is refused at once.
    auto ring = open_ring(MPI_COMM_WORLD, spec_for(slots, 8));
    const int me = ring->rank(), from = (me + ring->size() - 1) % ring->size();
    fill_every_credit(*ring, slots);
    EXPECT_EQ(ring->next().poll(), 0);
    if (ring->size() == 1) {
      EXPECT_THROW(ring->next().acquire(), Error);
    }
    MPI_Barrier(MPI_COMM_WORLD);  // nobody receives before every rank has checked the refusal
    for (int q = 0; q < slots; ++q) {
      const Slot& r = ring->prev().receive();
      expect_message(r, from, static_cast<uint64_t>(q), 1, kHidden);
      ring->prev().release(r);
    }
    ring->next().drain();
  }
  // The receiver takes one message per 3 ms, and only after its sender was refused since its
  // last receive (pump's gate). Until the first receive nothing is released, so the sender's
  // first refusal comes with every credit out: max_in_flight reaches the slot count exactly, and
  // never exceeds it.
  auto ring = open_ring(MPI_COMM_WORLD, spec_for(slots, 8));
  PumpResult r = pump(*ring, 40, 8, 3000);
  EXPECT_EQ(r.max_in_flight, slots);
  EXPECT_GT(r.refused_acquires, 0u);
}

TEST(Transport, BlockingAcquireWaitsForCredit) {
  // Fill every slot, then a blocking acquire() must wait until the receiver releases one.
  const int slots = 2;
  auto ring = open_ring(MPI_COMM_WORLD, spec_for(slots, 1));
  const int me = ring->rank(), from = (me + ring->size() - 1) % ring->size();
  fill_every_credit(*ring, slots);
  // Everyone has posted both; wait until each rank has received both, then release one with a
  // delay: the sender's acquire() blocks until then.
  const Slot& a = ring->prev().receive();
  expect_message(a, from, 0, 1, kHidden);
  const Slot& b = ring->prev().receive();
  expect_message(b, from, 1, 1, kHidden);
  EXPECT_EQ(ring->prev().try_receive(), nullptr);  // all slots held
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_EQ(ring->next().try_acquire(), nullptr);  // nobody released yet
  MPI_Barrier(MPI_COMM_WORLD);
  // Every rank releases 200 ms after leaving the barrier. For the first 30 ms no credit may
  // arrive (my successor has not released), then the blocking acquire() gets the credit as soon
  // as it does.
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t polls = 0;
  while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(30)) {
    ASSERT_EQ(ring->next().try_acquire(), nullptr) << "credit before the receiver released";
    ++polls;
  }
  EXPECT_GT(polls, 0u);
  std::this_thread::sleep_until(t0 + std::chrono::milliseconds(200));
  ring->prev().release(a);
  Slot& c = ring->next().acquire();
  EXPECT_EQ(c.index, 0);  // slot 0 again: wraparound
  make_message(c, me, 2, 1, kHidden);
  ring->next().post(c);
  ring->prev().release(b);
  const Slot& d = ring->prev().receive();
  expect_message(d, from, 2, 1, kHidden);
  ring->prev().release(d);
  ring->next().drain();
}

TEST(Transport, RelayAroundTheRingLikeThePipeline) {
  // Rank 0 injects micro-batches, keeping `in_flight` of them circulating (in_flight == slots:
  // the most the deadlock rule allows); every other rank receives, adds (rank) to every value and
  // forwards with the blocking calls in the pipeline's order: receive, acquire, fill, post,
  // release. Rank 0 checks each returning micro-batch, in order.
  const int slots = 4, n = world_size(), me = world_rank();
  const uint32_t max_rows = 8;
  const uint64_t total = 300;
  auto ring = open_ring(MPI_COMM_WORLD, spec_for(slots, max_rows));
  const float added = static_cast<float>(n * (n - 1) / 2);  // sum of ranks 1 .. n-1
  if (me == 0) {
    uint64_t injected = 0, returned = 0;
    while (returned < total) {
      while (injected < total && injected - returned < static_cast<uint64_t>(slots)) {
        Slot& s = ring->next().acquire();
        make_message(s, 0, injected, rows_of(injected, max_rows), kHidden);
        ring->next().post(s);
        ++injected;
      }
      const Slot& r = ring->prev().receive();
      const uint32_t rows = rows_of(returned, max_rows);
      ASSERT_EQ(r.header->micro_batch_id, static_cast<uint32_t>(returned * 3)) << "out of order";
      ASSERT_EQ(r.header->rows, rows);
      const auto* x = static_cast<const float*>(r.payload);
      size_t bad = 0;
      for (size_t i = 0; i < size_t(rows) * kHidden; ++i)
        bad += x[i] != value_at(0, returned, i) + added;
      ASSERT_EQ(bad, 0u);
      ring->prev().release(r);
      ++returned;
    }
  } else {
    for (uint64_t q = 0; q < total; ++q) {
      const Slot& in = ring->prev().receive();
      Slot& out = ring->next().acquire();
      std::memcpy(out.header, in.header, sizeof(MsgHeader));
      std::memcpy(out.rows, in.rows, sizeof(RowHeader) * in.header->rows);
      const auto* x = static_cast<const float*>(in.payload);
      auto* y = static_cast<float*>(out.payload);
      for (size_t i = 0; i < size_t(in.header->rows) * kHidden; ++i)
        y[i] = x[i] + static_cast<float>(me);
      ring->next().post(out);
      ring->prev().release(in);
    }
  }
  ring->next().drain();
}

TEST(Transport, CapacityAndOrderErrors) {
  auto ring = open_ring(MPI_COMM_WORLD, spec_for(2, 4));
  Slot& s = ring->next().acquire();
  s.header->rows = 5;  // capacity 4
  s.header->payload_bytes = 0;
  EXPECT_THROW(ring->next().post(s), Error);
  s.header->rows = 1;
  s.header->payload_bytes = s.payload_capacity_bytes + 1;
  EXPECT_THROW(ring->next().post(s), Error);
  s.header->payload_bytes = 4;
  ring->next().post(s);
  EXPECT_THROW(ring->next().post(s), Error);  // posted twice
  const Slot& r = ring->prev().receive();
  Slot copy = r;  // not the slot the link handed out
  EXPECT_THROW(ring->prev().release(copy), Error);
  ring->prev().release(r);
  EXPECT_THROW(ring->prev().release(r), Error);  // released twice
  ring->next().drain();
}

TEST(Transport, ReceiveTimesOutNamingThePeer) {
  LinkSpec spec = spec_for(2, 1);
  spec.timeout_s = 0.3;
  auto ring = open_ring(MPI_COMM_WORLD, spec);
  const int from = (world_rank() + world_size() - 1) % world_size();
  try {
    ring->prev().receive();
    ADD_FAILURE() << "receive() returned without a message";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no message from rank " + std::to_string(from)),
              std::string::npos)
        << e.what();
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(Transport, MismatchedSpecIsRefusedOnEveryRank) {
  if (world_size() < 2) GTEST_SKIP() << "needs two ranks";
  LinkSpec spec = spec_for(4, 8);
  if (world_rank() == world_size() - 1) spec.slots = 3;
  try {
    open_ring(MPI_COMM_WORLD, spec);
    ADD_FAILURE() << "open_ring accepted different specs";
  } catch (const WorldError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("ring transport spec differs between ranks"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rank " + std::to_string(world_size() - 1) + " has 3 slots"),
              std::string::npos)
        << msg;
  }
}

TEST(Transport, OneRankIsALoopback) {
  if (world_size() != 1) GTEST_SKIP() << "the one-rank ring";
  // The receiver gets the very slot the sender filled: same header, rows and payload pointer (no
  // copy), in post order, with the same credits as a link between ranks; a wait nothing can end
  // (every credit out, nothing posted, drain with messages held) fails at once.
  LinkSpec spec = spec_for(2, 4);
  spec.timeout_s = 20;
  auto ring = open_ring(MPI_COMM_WORLD, spec);
  EXPECT_EQ(ring->describe().find("local (one rank), 2 slots x 4 rows"), 0u) << ring->describe();
  EXPECT_EQ(ring->rank(), 0);
  EXPECT_EQ(ring->size(), 1);
  SendLink& tx = ring->next();
  RecvLink& rx = ring->prev();
  EXPECT_EQ(tx.peer(), 0);
  EXPECT_EQ(rx.peer(), 0);
  for (uint64_t q = 0; q < 7; ++q) {  // one at a time: slots 0, 1, 0, ...
    Slot& s = tx.acquire();
    EXPECT_EQ(s.index, static_cast<int>(q % 2));
    EXPECT_EQ(s.payload_memory, MemoryKind::Host);
    make_message(s, 0, q, rows_of(q, 4), kHidden);
    tx.post(s);
    const Slot& r = rx.receive();
    ASSERT_EQ(&r, &s);
    EXPECT_EQ(r.payload, s.payload);
    expect_message(r, 0, q, rows_of(q, 4), kHidden);
    if (HasFatalFailure()) return;
    static_cast<float*>(s.payload)[0] = -1.0f;  // the receiver reads the sender's memory itself
    EXPECT_EQ(static_cast<const float*>(r.payload)[0], -1.0f);
    rx.release(r);
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto fast = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 2;
  };
  Slot& a = tx.acquire();
  Slot& b = tx.acquire();
  EXPECT_EQ(tx.try_acquire(), nullptr);
  EXPECT_EQ(tx.poll(), 0);
  EXPECT_THROW(tx.acquire(), Error);
  EXPECT_EQ(rx.try_receive(), nullptr);
  try {
    rx.receive();
    ADD_FAILURE() << "receive() with nothing posted returned";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no message from rank 0"), std::string::npos) << e.what();
  }
  make_message(a, 0, 7, 1, kHidden);
  make_message(b, 0, 8, 4, kHidden);
  tx.post(a);
  tx.post(b);
  EXPECT_EQ(tx.in_flight(), 2);
  EXPECT_THROW(tx.drain(), Error);
  const Slot& ra = rx.receive();
  const Slot& rb = rx.receive();
  EXPECT_EQ(rx.held(), 2);
  EXPECT_EQ(rx.try_receive(), nullptr);
  EXPECT_THROW(rx.receive(), Error);  // all slots held
  EXPECT_TRUE(fast()) << "a wait nothing can end must fail at once, not after timeout_s";
  expect_message(ra, 0, 7, 1, kHidden);
  expect_message(rb, 0, 8, 4, kHidden);
  rx.release(ra);
  rx.release(rb);
  tx.drain();
  EXPECT_EQ(tx.in_flight(), 0);
  EXPECT_EQ(tx.stats().messages, 9u);
  EXPECT_EQ(rx.stats().messages, 9u);
  EXPECT_EQ(tx.stats().payload_bytes, rx.stats().payload_bytes);
  EXPECT_EQ(tx.stats().header_bytes, rx.stats().header_bytes);
}

TEST(Transport, DeviceMemoryIsRefusedByMpi) {
  LinkSpec spec = spec_for(2, 1);
  spec.payload_memory = MemoryKind::Device;
  EXPECT_THROW(open_ring(MPI_COMM_WORLD, spec), Error);
}

}  // namespace
