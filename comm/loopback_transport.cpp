// loopback_transport.cpp: the one-rank ring (loopback_transport.h). One set of K slots shared by
// both ends; four message counters (acquired >= posted >= received >= released, acquired -
// released <= K) do what credits and sequence words do on the other links: message s lives in
// slot s mod K, is handed to the sender while acquired - released < K, to the receiver once
// posted > s, and its slot goes back to the sender when released > s (the wraparound). The
// payload ordering (host or device streams) is the LoopbackPayloads' job.
#include "comm/loopback_transport.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "comm/link_common.h"

namespace gptoss::comm {

namespace {

using namespace detail;

constexpr size_t kAlign = 4096;

class HostPayloads final : public LoopbackPayloads {
 public:
  explicit HostPayloads(const LinkSpec& s)
      : stride_(round_up(std::max<size_t>(s.max_payload_bytes, 1), kAlign)) {
    const size_t bytes = stride_ * static_cast<size_t>(s.slots);
    mem_ = std::aligned_alloc(kAlign, bytes);
    if (!mem_) fail("transport: cannot allocate %d slots of %zu bytes", s.slots, stride_);
    std::memset(mem_, 0, bytes);
  }
  ~HostPayloads() override { std::free(mem_); }
  MemoryKind memory() const override { return MemoryKind::Host; }
  void* slot(int i) override { return static_cast<uint8_t*>(mem_) + stride_ * static_cast<size_t>(i); }

 private:
  size_t stride_;
  void* mem_ = nullptr;  // [K, stride_]
};

// Both ends' state: slots (headers in host memory, payloads from `payloads`) and the counters.
struct Loop {
  LinkSpec spec;
  std::unique_ptr<LoopbackPayloads> payloads;
  void* header_mem = nullptr;  // [K, header_stride]
  std::vector<Slot> slots;     // [K]
  uint64_t acquired = 0, posted = 0, received = 0, released = 0;
  LinkStats sent, got;

  Loop(const LinkSpec& s, std::unique_ptr<LoopbackPayloads> p) : spec(s), payloads(std::move(p)) {
    if (payloads->memory() != spec.payload_memory)
      fail("transport: loopback payload memory does not match the spec");
    const size_t k = static_cast<size_t>(spec.slots);
    const size_t stride = round_up(header_capacity_bytes(spec), 64);
    const size_t bytes = round_up(stride * k, kAlign);
    header_mem = std::aligned_alloc(kAlign, bytes);
    if (!header_mem) fail("transport: cannot allocate %d slot headers", spec.slots);
    std::memset(header_mem, 0, bytes);
    for (size_t i = 0; i < k; ++i) {
      Slot sl;
      auto* h = static_cast<uint8_t*>(header_mem) + stride * i;
      sl.header = reinterpret_cast<MsgHeader*>(h);
      sl.rows = reinterpret_cast<RowHeader*>(h + sizeof(MsgHeader));
      sl.payload = payloads->slot(static_cast<int>(i));
      sl.row_capacity = spec.max_rows;
      sl.payload_capacity_bytes = spec.max_payload_bytes;
      sl.payload_memory = spec.payload_memory;
      sl.index = static_cast<int>(i);
      slots.push_back(sl);
    }
  }
  ~Loop() {
    payloads.reset();  // device payloads wait for their readers first
    std::free(header_mem);
  }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  uint64_t k() const { return static_cast<uint64_t>(spec.slots); }
  static uint64_t header_bytes(const MsgHeader& h) {
    return sizeof(MsgHeader) + sizeof(RowHeader) * static_cast<uint64_t>(h.rows);
  }
};

class LoopSend final : public SendLink {
 public:
  explicit LoopSend(Loop& l) : l_(l) {}
  int peer() const override { return 0; }
  const LinkSpec& spec() const override { return l_.spec; }
  int in_flight() const override { return static_cast<int>(l_.posted - l_.released); }
  const LinkStats& stats() const override { return l_.sent; }
  int poll() override { return l_.spec.slots - static_cast<int>(l_.acquired - l_.released); }

  Slot* try_acquire() override {
    if (l_.acquired - l_.released >= l_.k()) return nullptr;
    const size_t i = l_.acquired % l_.k();
    if (!l_.payloads->writable(static_cast<int>(i))) return nullptr;
    ++l_.acquired;
    Slot& s = l_.slots[i];
    std::memset(s.header, 0, sizeof(MsgHeader));
    return &s;
  }
  Slot& acquire() override {
    if (l_.acquired - l_.released >= l_.k())
      fail("transport: acquire() with all %d slots acquired and not released (link 0->0, one "
           "rank): only this rank's own release() gives a credit back; receive and release first",
           l_.spec.slots);
    Slot* got = nullptr;
    wait_until(l_.spec, &l_.sent.wait_us, [&] { return (got = try_acquire()) != nullptr; },
               [&] {
                 return strfmt("the device reads of slot %llu did not finish within %.0f s "
                               "(link 0->0, one rank)",
                               (unsigned long long)(l_.acquired % l_.k()), l_.spec.timeout_s);
               });
    return *got;
  }

  void post_on(Slot& slot, void* stream) override {
    const size_t i = l_.posted % l_.k();
    if (l_.posted >= l_.acquired || &slot != &l_.slots[i])
      fail("transport: post() of slot %d out of order (expected slot %zu, %llu acquired, %llu "
           "posted)",
           slot.index, i, (unsigned long long)l_.acquired, (unsigned long long)l_.posted);
    MsgHeader& h = *slot.header;
    if (h.rows > slot.row_capacity)
      fail("transport: message with %u rows exceeds the slot capacity of %u rows", h.rows,
           slot.row_capacity);
    if (h.payload_bytes > slot.payload_capacity_bytes)
      fail("transport: message with %llu payload bytes exceeds the slot capacity of %zu bytes",
           (unsigned long long)h.payload_bytes, slot.payload_capacity_bytes);
    h.magic = kMsgMagic;
    h.seq_no = l_.posted;
    l_.payloads->posted(static_cast<int>(i), stream);
    ++l_.posted;
    ++l_.sent.messages;
    l_.sent.payload_bytes += h.payload_bytes;
    l_.sent.header_bytes += Loop::header_bytes(h);
  }
  void post(Slot& slot) override { post_on(slot, nullptr); }

  void drain() override {
    if (l_.posted != l_.released)
      fail("transport: drain() with %llu messages posted and not released (link 0->0, one "
           "rank): receive and release them first",
           (unsigned long long)(l_.posted - l_.released));
    wait_until(l_.spec, &l_.sent.wait_us,
               [&] {
                 for (int i = 0; i < l_.spec.slots; ++i)
                   if (!l_.payloads->writable(i)) return false;
                 return true;
               },
               [&] {
                 return strfmt("the device reads of released slots did not finish within %.0f s "
                               "(link 0->0, one rank)",
                               l_.spec.timeout_s);
               });
  }

 private:
  Loop& l_;
};

class LoopRecv final : public RecvLink {
 public:
  explicit LoopRecv(Loop& l) : l_(l) {}
  int peer() const override { return 0; }
  const LinkSpec& spec() const override { return l_.spec; }
  int held() const override { return static_cast<int>(l_.received - l_.released); }
  const LinkStats& stats() const override { return l_.got; }

  const Slot* try_receive_on(void* stream) override {
    if (l_.received >= l_.posted) return nullptr;  // also covers "all slots held"
    const size_t i = l_.received % l_.k();
    const Slot& s = l_.slots[i];
    const MsgHeader& h = *s.header;
    if (h.magic != kMsgMagic || h.seq_no != l_.received || h.rows > s.row_capacity ||
        h.payload_bytes > s.payload_capacity_bytes)
      fail("transport: corrupt message (link 0->0, one rank; its header was changed after "
           "post()): magic %08x seq %llu (expected %llu), %u rows, %llu payload bytes",
           h.magic, (unsigned long long)h.seq_no, (unsigned long long)l_.received, h.rows,
           (unsigned long long)h.payload_bytes);
    if (!l_.payloads->readable(static_cast<int>(i), stream)) return nullptr;
    ++l_.received;
    ++l_.got.messages;
    l_.got.payload_bytes += h.payload_bytes;
    l_.got.header_bytes += Loop::header_bytes(h);
    return &s;
  }
  const Slot* try_receive() override { return try_receive_on(nullptr); }
  const Slot& receive_on(void* stream) override {
    if (l_.received >= l_.posted) {
      if (l_.received - l_.released >= l_.k())
        fail("transport: receive() with all %d slots held: release slots first (link 0->0)",
             l_.spec.slots);
      fail("transport: no message from rank 0 to receive: none was posted (link 0->0, one "
           "rank: message %llu can only come from this rank's own post())",
           (unsigned long long)l_.received);
    }
    const Slot* got = nullptr;
    wait_until(l_.spec, &l_.got.wait_us, [&] { return (got = try_receive_on(stream)) != nullptr; },
               [&] {
                 return strfmt("the device work before message %llu's post did not finish "
                               "within %.0f s (link 0->0, one rank)",
                               (unsigned long long)l_.received, l_.spec.timeout_s);
               });
    return *got;
  }
  const Slot& receive() override { return receive_on(nullptr); }

  void release_on(const Slot& slot, void* stream) override {
    const size_t i = l_.released % l_.k();
    if (l_.released >= l_.received || &slot != &l_.slots[i])
      fail("transport: release() of slot %d out of order (expected slot %zu, %llu received, %llu "
           "released)",
           slot.index, i, (unsigned long long)l_.received, (unsigned long long)l_.released);
    l_.payloads->released(static_cast<int>(i), stream);
    ++l_.released;
  }
  void release(const Slot& slot) override { release_on(slot, nullptr); }

 private:
  Loop& l_;
};

class LoopRing final : public Ring {
 public:
  LoopRing(const LinkSpec& spec, std::unique_ptr<LoopbackPayloads> p, const std::string& what)
      : loop_(spec, std::move(p)), send_(loop_), recv_(loop_), what_(what) {}
  SendLink& next() override { return send_; }
  RecvLink& prev() override { return recv_; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string describe() const override {
    const LinkSpec& s = loop_.spec;
    return strfmt("local (one rank%s), %d slots x %u rows x %zu payload bytes, channel %d",
                  what_.c_str(), s.slots, s.max_rows, s.max_payload_bytes, s.channel);
  }

 private:
  Loop loop_;
  LoopSend send_;
  LoopRecv recv_;
  std::string what_;
};

}  // namespace

std::unique_ptr<LoopbackPayloads> host_loopback_payloads(const LinkSpec& spec) {
  return std::make_unique<HostPayloads>(spec);
}

std::unique_ptr<Ring> open_loopback_ring(const LinkSpec& spec,
                                         std::unique_ptr<LoopbackPayloads> payloads,
                                         const std::string& what) {
  check_common_spec(spec);
  return std::make_unique<LoopRing>(spec, std::move(payloads), what);
}

}  // namespace gptoss::comm
