// mpi_transport.cpp: SendLink / RecvLink over MPI point-to-point, and the MPI ring.
//
// Protocol (full text in docs/transport.md):
//  - Tags on the ring's private communicator: 4*channel + {0: header, 1: payload, 2: credit}.
//  - Receiver: K slots; at open it starts, for slot 0..K-1 in order, a persistent receive for the
//    header (64 + 16*max_rows bytes) and one for the payload (max_payload_bytes). MPI matches
//    messages of one (source, tag, comm) to receives in the order the receives were posted, and
//    the sender sends message s only into slot s mod K, so message s lands in slot s mod K.
//  - release(slot of message s) restarts that slot's two receives (now last in the queue, so they
//    match message s+K: the wraparound) and sends credit = s+1 (messages released so far).
//  - Sender: message s may be sent once s - released < K, i.e. the receiver has a posted receive
//    for it. It then Isends header and payload from its own slot s mod K (a staging copy; with
//    the GPU IPC transport the same slot pointers would point into the peer's memory). K
//    persistent receives for credits are always posted (at most K credits can be outstanding).
//  - No deadlock inside a link: every send has a matching posted receive before it starts, so it
//    completes with progress alone (any MPI_Test on either side); blocking waits are MPI_Test loops
//    that keep the progress engine turning, with a timeout that names the peer.
#include "comm/mpi_transport.h"

#include <sched.h>
#include <time.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "comm/link_common.h"
#include "comm/loopback_transport.h"
#include "comm/mpi_check.h"
#include "comm/world.h"

namespace gptoss::comm {

namespace {

using namespace detail;

constexpr int kTagHeader = 0, kTagPayload = 1, kTagCredit = 2;
constexpr size_t kAlign = 4096;

int tag_of(const LinkSpec& s, int kind) { return 4 * s.channel + kind; }

void check_spec(const LinkSpec& s) {
  check_common_spec(s);
  if (s.max_payload_bytes > static_cast<size_t>(INT_MAX))
    fail("transport: max_payload_bytes %zu exceeds the MPI message limit of %d bytes",
         s.max_payload_bytes, INT_MAX);
  if (header_capacity_bytes(s) > static_cast<size_t>(INT_MAX))
    fail("transport: max_rows too large");
  if (s.payload_memory != MemoryKind::Host)
    fail(
        "transport: the MPI transport stages through host memory; payload_memory must be Host "
        "(device payloads need the GPU IPC transport or a host staging copy)");
}

int my_rank(MPI_Comm comm) {
  int r = 0;
  CHECK_MPI(MPI_Comm_rank(comm, &r));
  return r;
}


// K slots in host memory: headers [K, header_stride] and payloads [K, payload_stride], allocated
// and touched once when the link opens.
struct SlotArena {
  std::vector<Slot> slots;
  void* header_mem = nullptr;
  void* payload_mem = nullptr;
  size_t header_stride = 0, payload_stride = 0;

  explicit SlotArena(const LinkSpec& s) {
    header_stride = round_up(header_capacity_bytes(s), 64);
    payload_stride = round_up(std::max<size_t>(s.max_payload_bytes, 1), kAlign);
    size_t hb = round_up(header_stride * static_cast<size_t>(s.slots), kAlign);
    size_t pb = payload_stride * static_cast<size_t>(s.slots);
    header_mem = std::aligned_alloc(kAlign, hb);
    payload_mem = std::aligned_alloc(kAlign, pb);
    if (!header_mem || !payload_mem) {
      std::free(header_mem), std::free(payload_mem);
      fail("transport: cannot allocate %d slots of %zu bytes", s.slots, payload_stride);
    }
    std::memset(header_mem, 0, hb);
    std::memset(payload_mem, 0, pb);
    for (int i = 0; i < s.slots; ++i) {
      Slot sl;
      auto* h = static_cast<uint8_t*>(header_mem) + header_stride * static_cast<size_t>(i);
      sl.header = reinterpret_cast<MsgHeader*>(h);
      sl.rows = reinterpret_cast<RowHeader*>(h + sizeof(MsgHeader));
      sl.payload = static_cast<uint8_t*>(payload_mem) + payload_stride * static_cast<size_t>(i);
      sl.row_capacity = s.max_rows;
      sl.payload_capacity_bytes = s.max_payload_bytes;
      sl.payload_memory = MemoryKind::Host;
      sl.index = i;
      slots.push_back(sl);
    }
  }
  ~SlotArena() {
    std::free(header_mem);
    std::free(payload_mem);
  }
  SlotArena(const SlotArena&) = delete;
  SlotArena& operator=(const SlotArena&) = delete;
};

// Frees requests at close without hanging: cancels receives, gives sends a grace period that
// ends at `deadline` (one deadline for all of a link's requests: a link closing with every send to
// a stopped peer still pending waits that long once, not once per request).
void close_requests(std::vector<MPI_Request>& reqs, bool cancel, Clock::time_point deadline) {
  for (auto& r : reqs) {
    if (r == MPI_REQUEST_NULL) continue;
    if (cancel) MPI_Cancel(&r);
    int done = 0;
    for (;;) {
      MPI_Test(&r, &done, MPI_STATUS_IGNORE);
      if (done || Clock::now() >= deadline) break;
      struct timespec ts {
        0, 50000
      };
      nanosleep(&ts, nullptr);
    }
    if (r != MPI_REQUEST_NULL) MPI_Request_free(&r);
  }
}
Clock::time_point close_deadline() { return Clock::now() + std::chrono::seconds(1); }

// ---------------------------------------------------------------------------------------------
class MpiSendLink final : public SendLink {
 public:
  MpiSendLink(MPI_Comm comm, int peer, const LinkSpec& spec)
      : comm_(comm), peer_(peer), spec_(spec), arena_((check_spec(spec), spec)) {
    const size_t k = static_cast<size_t>(spec.slots);
    header_req_.assign(k, MPI_REQUEST_NULL);
    payload_req_.assign(k, MPI_REQUEST_NULL);
    credit_buf_.assign(k, 0);
    credit_req_.assign(k, MPI_REQUEST_NULL);
    for (size_t i = 0; i < k; ++i) {
      CHECK_MPI(MPI_Recv_init(&credit_buf_[i], 1, MPI_UINT64_T, peer_, tag_of(spec_, kTagCredit),
                              comm_, &credit_req_[i]));
      CHECK_MPI(MPI_Start(&credit_req_[i]));
    }
    me_ = my_rank(comm);
  }
  ~MpiSendLink() override {
    const auto deadline = close_deadline();
    close_requests(header_req_, false, deadline);
    close_requests(payload_req_, false, deadline);
    close_requests(credit_req_, true, deadline);
  }

  int peer() const override { return peer_; }
  const LinkSpec& spec() const override { return spec_; }
  int in_flight() const override { return static_cast<int>(posted_ - released_); }
  const LinkStats& stats() const override { return stats_; }

  int poll() override {
    collect_credits();
    return spec_.slots - static_cast<int>(acquired_ - released_);
  }

  Slot* try_acquire() override {
    collect_credits();
    if (acquired_ - released_ >= static_cast<uint64_t>(spec_.slots)) return nullptr;
    const size_t i = acquired_ % static_cast<uint64_t>(spec_.slots);
    // The receiver released this slot's previous message, so its sends have matched; complete
    // them locally before the buffer is reused.
    if (!test(header_req_[i]) || !test(payload_req_[i])) return nullptr;
    ++acquired_;
    Slot& s = arena_.slots[i];
    std::memset(s.header, 0, sizeof(MsgHeader));
    return &s;
  }

  Slot& acquire() override {
    Slot* got = nullptr;
    wait_until(
        spec_, &stats_.wait_us, [&] { return (got = try_acquire()) != nullptr; },
        [&] {
          return strfmt(
              "no credit from rank %d for %.0f s (link %d->%d, %llu messages "
              "posted, %llu released): rank %d is stuck or dead",
              peer_, spec_.timeout_s, me_, peer_, (unsigned long long)posted_,
              (unsigned long long)released_, peer_);
        });
    return *got;
  }

  void post(Slot& slot) override {
    const size_t i = posted_ % static_cast<uint64_t>(spec_.slots);
    if (posted_ >= acquired_ || &slot != &arena_.slots[i])
      fail(
          "transport: post() of slot %d out of order (expected slot %zu, %llu acquired, %llu "
          "posted)",
          slot.index, i, (unsigned long long)acquired_, (unsigned long long)posted_);
    MsgHeader& h = *slot.header;
    if (h.rows > slot.row_capacity)
      fail("transport: message with %u rows exceeds the slot capacity of %u rows", h.rows,
           slot.row_capacity);
    if (h.payload_bytes > slot.payload_capacity_bytes)
      fail("transport: message with %llu payload bytes exceeds the slot capacity of %zu bytes",
           (unsigned long long)h.payload_bytes, slot.payload_capacity_bytes);
    h.magic = kMsgMagic;
    h.seq_no = posted_;
    const int header_bytes = static_cast<int>(sizeof(MsgHeader) + sizeof(RowHeader) * h.rows);
    CHECK_MPI(MPI_Isend(slot.header, header_bytes, MPI_BYTE, peer_, tag_of(spec_, kTagHeader),
                        comm_, &header_req_[i]));
    CHECK_MPI(MPI_Isend(slot.payload, static_cast<int>(h.payload_bytes), MPI_BYTE, peer_,
                        tag_of(spec_, kTagPayload), comm_, &payload_req_[i]));
    ++posted_;
    ++stats_.messages;
    stats_.payload_bytes += h.payload_bytes;
    stats_.header_bytes += static_cast<uint64_t>(header_bytes);
  }

  void drain() override {
    wait_until(
        spec_, &stats_.wait_us,
        [&] {
          collect_credits();
          return released_ == posted_;
        },
        [&] {
          return strfmt(
              "rank %d did not release %llu messages within %.0f s (link "
              "%d->%d): rank %d is stuck or dead",
              peer_, (unsigned long long)(posted_ - released_), spec_.timeout_s, me_, peer_, peer_);
        });
    for (size_t i = 0; i < header_req_.size(); ++i) {
      wait_until(
          spec_, &stats_.wait_us, [&] { return test(header_req_[i]) && test(payload_req_[i]); },
          [&] {
            return strfmt("sends to rank %d did not complete (link %d->%d)", peer_, me_, peer_);
          });
    }
  }

 private:
  static bool test(MPI_Request& r) {
    if (r == MPI_REQUEST_NULL) return true;
    int done = 0;
    CHECK_MPI(MPI_Test(&r, &done, MPI_STATUS_IGNORE));
    return done != 0;
  }

  // Credits arrive in order into the K persistent receives (posted in ring order, restarted at
  // the back of the queue). Each carries the receiver's count of released messages.
  void collect_credits() {
    for (;;) {
      MPI_Request& r = credit_req_[next_credit_];
      int done = 0;
      CHECK_MPI(MPI_Test(&r, &done, MPI_STATUS_IGNORE));
      if (!done) return;
      const uint64_t released = credit_buf_[next_credit_];
      if (released != released_ + 1 || released > posted_)
        fail("transport: rank %d sent credit %llu, expected %llu (link %d->%d): protocol error",
             peer_, (unsigned long long)released, (unsigned long long)(released_ + 1), me_, peer_);
      released_ = released;
      CHECK_MPI(MPI_Start(&r));
      next_credit_ = (next_credit_ + 1) % credit_req_.size();
    }
  }

  MPI_Comm comm_;
  int peer_, me_ = 0;
  LinkSpec spec_;
  SlotArena arena_;
  std::vector<MPI_Request> header_req_, payload_req_;  // [K] sends in flight per slot
  std::vector<uint64_t> credit_buf_;                   // [K] credit receive buffers
  std::vector<MPI_Request> credit_req_;                // [K] persistent credit receives
  size_t next_credit_ = 0;
  uint64_t acquired_ = 0, posted_ = 0, released_ = 0;  // message counts
  LinkStats stats_;
};

// ---------------------------------------------------------------------------------------------
class MpiRecvLink final : public RecvLink {
 public:
  MpiRecvLink(MPI_Comm comm, int peer, const LinkSpec& spec)
      : comm_(comm), peer_(peer), spec_(spec), arena_((check_spec(spec), spec)) {
    const size_t k = static_cast<size_t>(spec.slots);
    header_req_.assign(k, MPI_REQUEST_NULL);
    payload_req_.assign(k, MPI_REQUEST_NULL);
    header_done_.assign(k, 0);
    header_count_.assign(k, 0);
    credit_buf_.assign(k, 0);
    credit_req_.assign(k, MPI_REQUEST_NULL);
    const int hcap = static_cast<int>(header_capacity_bytes(spec));
    for (size_t i = 0; i < k; ++i) {
      Slot& s = arena_.slots[i];
      CHECK_MPI(MPI_Recv_init(s.header, hcap, MPI_BYTE, peer_, tag_of(spec_, kTagHeader), comm_,
                              &header_req_[i]));
      CHECK_MPI(MPI_Recv_init(s.payload, static_cast<int>(spec.max_payload_bytes), MPI_BYTE, peer_,
                              tag_of(spec_, kTagPayload), comm_, &payload_req_[i]));
      CHECK_MPI(MPI_Start(&header_req_[i]));
      CHECK_MPI(MPI_Start(&payload_req_[i]));
    }
    me_ = my_rank(comm);
  }
  ~MpiRecvLink() override {
    const auto deadline = close_deadline();
    close_requests(header_req_, true, deadline);
    close_requests(payload_req_, true, deadline);
    close_requests(credit_req_, false, deadline);
  }

  int peer() const override { return peer_; }
  const LinkSpec& spec() const override { return spec_; }
  int held() const override { return static_cast<int>(received_ - released_); }
  const LinkStats& stats() const override { return stats_; }

  const Slot* try_receive() override {
    if (received_ - released_ >= static_cast<uint64_t>(spec_.slots)) {
      progress_credits();
      return nullptr;
    }
    const size_t i = received_ % static_cast<uint64_t>(spec_.slots);
    Slot& s = arena_.slots[i];
    MPI_Status st;
    int done = 0;
    if (!header_done_[i]) {
      CHECK_MPI(MPI_Test(&header_req_[i], &done, &st));
      if (!done) return nullptr;
      CHECK_MPI(MPI_Get_count(&st, MPI_BYTE, &header_count_[i]));
      header_done_[i] = 1;
    }
    CHECK_MPI(MPI_Test(&payload_req_[i], &done, &st));
    if (!done) return nullptr;
    int payload_count = 0;
    CHECK_MPI(MPI_Get_count(&st, MPI_BYTE, &payload_count));
    header_done_[i] = 0;
    const MsgHeader& h = *s.header;
    const size_t want_header = sizeof(MsgHeader) + sizeof(RowHeader) * h.rows;
    if (h.magic != kMsgMagic || h.seq_no != received_ || h.rows > s.row_capacity ||
        static_cast<size_t>(header_count_[i]) != want_header ||
        static_cast<uint64_t>(payload_count) != h.payload_bytes)
      fail(
          "transport: corrupt message from rank %d (link %d->%d): magic %08x seq %llu (expected "
          "%llu), %u rows in %d header bytes, %d payload bytes (header says %llu)",
          peer_, peer_, me_, h.magic, (unsigned long long)h.seq_no, (unsigned long long)received_,
          h.rows, header_count_[i], payload_count, (unsigned long long)h.payload_bytes);
    ++received_;
    ++stats_.messages;
    stats_.payload_bytes += h.payload_bytes;
    stats_.header_bytes += want_header;
    return &s;
  }

  const Slot& receive() override {
    const Slot* got = nullptr;
    wait_until(
        spec_, &stats_.wait_us, [&] { return (got = try_receive()) != nullptr; },
        [&] {
          if (received_ - released_ >= static_cast<uint64_t>(spec_.slots))
            return strfmt(
                "receive() with all %d slots held: release slots first "
                "(link %d->%d)",
                spec_.slots, peer_, me_);
          return strfmt(
              "no message from rank %d for %.0f s (link %d->%d, waiting for "
              "message %llu): rank %d is stuck or dead",
              peer_, spec_.timeout_s, peer_, me_, (unsigned long long)received_, peer_);
        });
    return *got;
  }

  void release(const Slot& slot) override {
    const size_t i = released_ % static_cast<uint64_t>(spec_.slots);
    if (released_ >= received_ || &slot != &arena_.slots[i])
      fail(
          "transport: release() of slot %d out of order (expected slot %zu, %llu received, %llu "
          "released)",
          slot.index, i, (unsigned long long)received_, (unsigned long long)released_);
    // Re-post this slot's receives first (they match message released_ + K), then return the
    // credit that allows the sender to send that message.
    CHECK_MPI(MPI_Start(&header_req_[i]));
    CHECK_MPI(MPI_Start(&payload_req_[i]));
    ++released_;
    // The credit buffer of this slot was last used K credits ago; that tiny send has long
    // completed in practice, but must be completed before the buffer is rewritten.
    wait_until(
        spec_, &stats_.wait_us,
        [&] {
          int done = 1;
          if (credit_req_[i] != MPI_REQUEST_NULL)
            CHECK_MPI(MPI_Test(&credit_req_[i], &done, MPI_STATUS_IGNORE));
          return done != 0;
        },
        [&] {
          return strfmt(
              "credit to rank %d not delivered for %.0f s (link %d->%d): rank %d is "
              "stuck or dead",
              peer_, spec_.timeout_s, peer_, me_, peer_);
        });
    credit_buf_[i] = released_;
    CHECK_MPI(MPI_Isend(&credit_buf_[i], 1, MPI_UINT64_T, peer_, tag_of(spec_, kTagCredit), comm_,
                        &credit_req_[i]));
  }

 private:
  void progress_credits() {
    for (auto& r : credit_req_) {
      if (r == MPI_REQUEST_NULL) continue;
      int done = 0;
      CHECK_MPI(MPI_Test(&r, &done, MPI_STATUS_IGNORE));
    }
  }

  MPI_Comm comm_;
  int peer_, me_ = 0;
  LinkSpec spec_;
  SlotArena arena_;
  std::vector<MPI_Request> header_req_, payload_req_;  // [K] persistent receives per slot
  std::vector<char> header_done_;                      // [K] header of the pending message arrived
  std::vector<int> header_count_;                      // [K] its byte count
  std::vector<uint64_t> credit_buf_;                   // [K] credit send buffers
  std::vector<MPI_Request> credit_req_;                // [K] credit sends in flight
  uint64_t received_ = 0, released_ = 0;               // message counts
  LinkStats stats_;
};

// ---------------------------------------------------------------------------------------------
class MpiRing final : public Ring {
 public:
  MpiRing(MPI_Comm comm, const LinkSpec& spec) : spec_(spec) {
    check_spec(spec);
    CHECK_MPI(MPI_Comm_rank(comm, &rank_));
    CHECK_MPI(MPI_Comm_size(comm, &size_));
    // Every rank must agree on the spec (the receiver's slots must fit what the sender sends).
    const uint64_t words[6] = {static_cast<uint64_t>(spec.slots),
                               spec.max_rows,
                               spec.max_payload_bytes,
                               static_cast<uint64_t>(spec.payload_memory),
                               static_cast<uint64_t>(spec.channel),
                               0x7269ull};
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t w : words) h = (h ^ w) * 0x100000001b3ull;
    check_same_on_all_ranks("ring transport spec", h, describe_spec(), comm);
    CHECK_MPI(MPI_Comm_dup(comm, &comm_));
    CHECK_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    recv_ = open_mpi_recv_link(comm_, (rank_ + size_ - 1) % size_, spec);
    send_ = open_mpi_send_link(comm_, (rank_ + 1) % size_, spec);
    // Every receive of the first K messages is posted before anyone may send.
    CHECK_MPI(MPI_Barrier(comm_));
  }
  ~MpiRing() override {
    send_.reset();
    recv_.reset();
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  SendLink& next() override { return *send_; }
  RecvLink& prev() override { return *recv_; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override {
    return strfmt("mpi (host-staged) %d->%d, %s", rank_, (rank_ + 1) % size_,
                  describe_spec().c_str());
  }

 private:
  std::string describe_spec() const {
    return strfmt("%d slots x %u rows x %zu payload bytes, channel %d", spec_.slots, spec_.max_rows,
                  spec_.max_payload_bytes, spec_.channel);
  }
  LinkSpec spec_;
  int rank_ = 0, size_ = 1;
  MPI_Comm comm_ = MPI_COMM_NULL;
  std::unique_ptr<SendLink> send_;
  std::unique_ptr<RecvLink> recv_;
};

}  // namespace

std::unique_ptr<SendLink> open_mpi_send_link(MPI_Comm comm, int peer, const LinkSpec& spec) {
  return std::make_unique<MpiSendLink>(comm, peer, spec);
}

std::unique_ptr<RecvLink> open_mpi_recv_link(MPI_Comm comm, int peer, const LinkSpec& spec) {
  return std::make_unique<MpiRecvLink>(comm, peer, spec);
}

std::unique_ptr<Ring> open_mpi_ring(MPI_Comm comm, const LinkSpec& spec) {
  return std::make_unique<MpiRing>(comm, spec);
}

std::unique_ptr<Ring> open_ring(MPI_Comm comm, const LinkSpec& spec) {
  // One rank: the loopback, after the MPI ring's checks (one rank refuses what N ranks refuse).
  check_spec(spec);
  int size = 0;
  CHECK_MPI(MPI_Comm_size(comm, &size));
  if (size == 1) return open_loopback_ring(spec, host_loopback_payloads(spec));
  return open_mpi_ring(comm, spec);
}

}  // namespace gptoss::comm
