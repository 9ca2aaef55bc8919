// ipc_transport.cpp: SendLink / RecvLink over GPU IPC (CUDA or HIP through gpu/vendor.h) and the
// ring that picks GPU IPC or MPI per link (open_gpu_ring). Full text: docs/transport.md.
//
// Two planes per link, each with its own sequence/credit words, both counting messages s = 0, 1..
// of the link, message s always in slot i = s mod K:
//  HOST plane (POSIX shm segment created by the receiver, mapped by both processes):
//    [ShmControl: posted, released][K x (MsgHeader + RowHeader[max_rows])]
//    - sender post(s): writes header/rows into shm slot i, then posted = s+1 (release store).
//    - receiver: header s is readable once posted > s (acquire load).
//    - receiver release(s): released = s+1 (release store) = the host credit; the sender may
//      rewrite header slot i (message s+K) once released > s: the host never reuses a header
//      that the other host may still read.
//  DEVICE plane (the receiver's payload slots and ready words, exported with gpuIpcGetMemHandle;
//  the sender's small sync block, exported the other way):
//    receiver:    [K payload slots, 4 KiB aligned] and [K ready words, 64 B apart]
//    sender sync: [K credit words, 64 B apart][K block counters, 64 B apart]
//    (the words are polled by kernels while the other GPU writes them: gpuMallocSignal, which is
//    fine-grained memory on AMD)
//    - post_on(s, stream): ONE kernel on the sender's stream: waits until credit[i] >= s-K+1
//      (message s-K, the slot's previous one, was released by the receiver's STREAM: only then
//      may its payload be overwritten; skipped for s < K), copies the payload from the sender's
//      staging slot i into the peer slot i, fences at system scope, and the last block writes
//      ready[i] = s+1 (release). Then the host writes the header and posted = s+1.
//    - try_receive_on(s, stream): enqueues on the receiver's stream a one-thread kernel that waits
//      until ready[i] >= s+1, then fences (acquire): the stream's later kernels see the payload.
//    - release_on(s, stream): enqueues on the receiver's stream a kernel that writes
//      credit[i] = s+1 into the sender's sync block (fence first: the stream's reads are done),
//      then the host credit (released = s+1) as above.
//  No host round trip, MPI call or allocation per message; the hosts only exchange the header
//  through shared memory.
// Ordering: per-slot ready/credit values only grow (message s+K cannot be copied before the
// credit of s, and the receiver cannot release s+K before receiving it), so `>=` waits never see
// a stale value as new. Wraparound: slot i carries s = i, i+K, i+2K, ...; its ready word goes
// i+1, i+K+1, ... and its credit word likewise; the 64-bit counters never wrap.
// Deadlock freedom: the host planes are the MPI transport's credit protocol (a message is only
// posted with a credit; M <= K micro-batches in flight in the ring). Every DEVICE wait is enqueued
// only after its host has seen the matching host word, and each host word is written only after
// the device signal it stands for has been enqueued (post: send kernel, then posted; release:
// credit kernel, then released). So each device wait waits for work that was enqueued earlier in
// real time, and the waits-for relation between enqueued work cannot form a cycle. Device waits
// still time out (spec.timeout_s) into the link's error word, which the host checks on each call.
#include "comm/ipc_transport.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <vector>

#include "comm/ipc_kernels.h"
#include "comm/link_common.h"
#include "comm/mpi_check.h"
#include "comm/mpi_transport.h"
#include "comm/world.h"
#include "gpu/vendor.h"

namespace gptoss::comm {

namespace {

using namespace detail;

constexpr size_t kAlign = 4096;
constexpr size_t kWordStride = 64;  // one flag/credit word per 64-byte line
constexpr uint64_t kShmMagic = 0x6770746f73736970ull;

void check_gpu_spec(const LinkSpec& s) {
  check_common_spec(s);
  if (s.payload_memory != MemoryKind::Device)
    fail("transport: open_gpu_ring is for device payloads (payload_memory Device); host payloads "
         "use open_ring");
}

// Host control words at the start of the shm segment, each on its own cache line.
struct ShmControl {
  uint64_t magic;
  uint64_t slots;
  uint64_t header_stride;
  alignas(64) std::atomic<uint64_t> posted;    // sender host: messages posted
  alignas(64) std::atomic<uint64_t> released;  // receiver host: messages released (host credit)
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);
constexpr size_t kControlBytes = kAlign;
static_assert(sizeof(ShmControl) <= kControlBytes);

// One POSIX shared-memory mapping. The creator unlinks the name once the peer has mapped it
// (after the ring's start-up barrier), so nothing is left in /dev/shm afterwards.
class ShmSegment {
 public:
  ShmSegment() = default;
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;
  ~ShmSegment() {
    if (base_) munmap(base_, bytes_);
    unlink();
  }
  void create(const std::string& name, size_t bytes) {
    name_ = name;
    bytes_ = bytes;
    int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) fail("transport: shm_open(%s) failed: %s", name.c_str(), std::strerror(errno));
    owner_ = true;
    if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
      int e = errno;
      close(fd);
      fail("transport: cannot size shared memory %s to %zu bytes: %s", name.c_str(), bytes,
           std::strerror(e));
    }
    map(fd);
  }
  void open(const std::string& name, size_t bytes) {
    name_ = name;
    bytes_ = bytes;
    int fd = shm_open(name.c_str(), O_RDWR, 0600);
    if (fd < 0)
      fail("transport: cannot open the peer's shared memory %s: %s", name.c_str(),
           std::strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) != bytes) {
      close(fd);
      fail("transport: the peer's shared memory %s has the wrong size", name.c_str());
    }
    map(fd);
  }
  void unlink() {
    if (owner_) shm_unlink(name_.c_str());
    owner_ = false;
  }
  uint8_t* base() const { return static_cast<uint8_t*>(base_); }

 private:
  void map(int fd) {
    base_ = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (base_ == MAP_FAILED) {
      base_ = nullptr;
      fail("transport: mmap of shared memory %s failed: %s", name_.c_str(), std::strerror(errno));
    }
  }
  std::string name_;
  void* base_ = nullptr;
  size_t bytes_ = 0;
  bool owner_ = false;
};

// Sizes and offsets both ends compute from the spec.
struct Layout {
  size_t header_stride, payload_stride, shm_bytes, slots_bytes, ready_bytes, sync_bytes,
      counter_offset;
  explicit Layout(const LinkSpec& s) {
    const size_t k = static_cast<size_t>(s.slots);
    header_stride = round_up(header_capacity_bytes(s), 64);
    payload_stride = round_up(std::max<size_t>(s.max_payload_bytes, 1), kAlign);
    shm_bytes = kControlBytes + round_up(header_stride * k, kAlign);
    slots_bytes = payload_stride * k;
    ready_bytes = round_up(kWordStride * k, kAlign);
    counter_offset = round_up(kWordStride * k, kAlign);
    sync_bytes = counter_offset + round_up(kWordStride * k, kAlign);
  }
};

uint64_t* word_at(void* base, size_t offset, size_t i) {
  return reinterpret_cast<uint64_t*>(static_cast<uint8_t*>(base) + offset + kWordStride * i);
}

// The error word of one link end: pinned host memory the device can write.
struct ErrorWord {
  uint32_t* host = nullptr;
  uint32_t* dev = nullptr;
  ErrorWord() {
    void* p = nullptr;
    GPU_CHECK(gpuHostAllocMapped(&p, 64));
    host = static_cast<uint32_t*>(p);
    *host = 0;
    void* d = nullptr;
    GPU_CHECK(gpuHostGetDevicePointer(&d, p));
    dev = static_cast<uint32_t*>(d);
  }
  ~ErrorWord() {
    if (host) (void)gpuFreeHost(host);
  }
  uint32_t get() const { return *reinterpret_cast<volatile uint32_t*>(host); }
};

gpuStream_t as_stream(void* s) { return static_cast<gpuStream_t>(s); }

// What one rank exports to the others at open (fixed size, exchanged with MPI_Allgather).
struct Exports {
  char shm_name[64];        // receiver side: its header segment
  gpuIpcMemHandle_t slots;  // receiver side: payload slots
  gpuIpcMemHandle_t ready;  // receiver side: ready words (gpuMallocSignal)
  gpuIpcMemHandle_t sync;   // sender side: credit words (gpuMallocSignal)
};

// Progress shared by the ends of one ring: the host-staged (MPI fallback) ends forward posts and
// releases once their stream work is done, which needs calls on the link. The ring gives every end
// a hook that progresses both of its ends, so that e.g. next().drain() also hands on a release
// still pending on prev(). The hook returns true when nothing is pending anywhere.
struct RingProgress {
  std::function<bool()> hook;
  bool run() const { return hook ? hook() : true; }
};

class IpcSendLink;

// ---------------------------------------------------------------------------------------------
class IpcRecvLink final : public RecvLink {
 public:
  IpcRecvLink(int me, int peer, const LinkSpec& spec, const std::string& shm_name)
      : me_(me), peer_(peer), spec_(spec), layout_(spec) {
    const size_t k = static_cast<size_t>(spec.slots);
    shm_.create(shm_name, layout_.shm_bytes);
    std::memset(shm_.base(), 0, layout_.shm_bytes);
    ctrl_ = new (shm_.base()) ShmControl{};
    ctrl_->magic = kShmMagic;
    ctrl_->slots = k;
    ctrl_->header_stride = layout_.header_stride;
    GPU_CHECK(gpuMalloc(&dev_, layout_.slots_bytes));
    GPU_CHECK(gpuMallocSignal(&ready_, layout_.ready_bytes));
    GPU_CHECK(gpuMemset(dev_, 0, layout_.slots_bytes));
    GPU_CHECK(gpuMemset(ready_, 0, layout_.ready_bytes));
    GPU_CHECK(gpuDeviceSynchronize());
    GPU_CHECK(gpuStreamCreate(&stream_));  // blocking: ordered after the legacy default stream
    events_.assign(k, nullptr);
    for (auto& e : events_) GPU_CHECK(gpuEventCreateNoTiming(&e));
    for (size_t i = 0; i < k; ++i) {
      Slot sl;
      uint8_t* h = shm_.base() + kControlBytes + layout_.header_stride * i;
      sl.header = reinterpret_cast<MsgHeader*>(h);
      sl.rows = reinterpret_cast<RowHeader*>(h + sizeof(MsgHeader));
      sl.payload = static_cast<uint8_t*>(dev_) + layout_.payload_stride * i;
      sl.row_capacity = spec.max_rows;
      sl.payload_capacity_bytes = spec.max_payload_bytes;
      sl.payload_memory = MemoryKind::Device;
      sl.index = static_cast<int>(i);
      slots_.push_back(sl);
    }
  }
  ~IpcRecvLink() override {
    if (stream_) (void)gpuStreamSynchronize(stream_);
    for (auto e : events_)
      if (e) (void)gpuEventDestroy(e);
    if (stream_) (void)gpuStreamDestroy(stream_);
    if (peer_sync_ && peer_sync_opened_) (void)gpuIpcCloseMemHandle(peer_sync_);
    if (dev_) (void)gpuFree(dev_);
    if (ready_) (void)gpuFree(ready_);
  }

  void export_to(Exports& ex) const {
    GPU_CHECK(gpuIpcGetMemHandle(&ex.slots, dev_));
    GPU_CHECK(gpuIpcGetMemHandle(&ex.ready, ready_));
  }
  // The sender's credit words: opened from its handle, or (link to itself) its own pointer.
  void connect(const gpuIpcMemHandle_t& sync) {
    GPU_CHECK(gpuIpcOpenMemHandle(&peer_sync_, sync));
    peer_sync_opened_ = true;
  }
  void connect_local(void* sync) { peer_sync_ = sync; }
  void unlink_shm() { shm_.unlink(); }
  void* device_slots() const { return dev_; }
  void* device_ready() const { return ready_; }

  int peer() const override { return peer_; }
  const LinkSpec& spec() const override { return spec_; }
  int held() const override { return static_cast<int>(received_ - released_); }
  const LinkStats& stats() const override { return stats_; }

  RingProgress progress;

  const Slot* try_receive_on(void* stream) override {
    check_error();
    progress.run();
    if (pending_) {  // a legacy try_receive() already waits for this message: wait on `stream` too
      const size_t i = received_ % static_cast<uint64_t>(spec_.slots);
      enqueue_wait(stream ? as_stream(stream) : stream_, i);
      return commit(i);
    }
    const Slot* s = header_ready();
    if (!s) return nullptr;
    const size_t i = static_cast<size_t>(s->index);
    enqueue_wait(stream ? as_stream(stream) : stream_, i);
    return commit(i);
  }

  const Slot* try_receive() override {
    check_error();
    progress.run();
    const size_t i = received_ % static_cast<uint64_t>(spec_.slots);
    if (!pending_) {
      if (!header_ready()) return nullptr;
      enqueue_wait(stream_, i);
      GPU_CHECK(gpuEventRecord(events_[i], stream_));
      pending_ = true;
    }
    gpuError_t e = gpuEventQuery(events_[i]);
    if (e == gpuErrorNotReady) return nullptr;
    GPU_CHECK(e);
    check_error();  // the wait may have ended by timing out
    return commit(i);
  }

  const Slot& receive_on(void* stream) override {
    const Slot* got = nullptr;
    wait_until(spec_, &stats_.wait_us, [&] { return (got = try_receive_on(stream)) != nullptr; },
               [&] { return timeout_message(); });
    return *got;
  }
  const Slot& receive() override {
    const Slot* got = nullptr;
    wait_until(spec_, &stats_.wait_us, [&] { return (got = try_receive()) != nullptr; },
               [&] { return timeout_message(); });
    return *got;
  }

  void release_on(const Slot& slot, void* stream) override {
    const size_t i = released_ % static_cast<uint64_t>(spec_.slots);
    if (released_ >= received_ || &slot != &slots_[i])
      fail("transport: release() of slot %d out of order (expected slot %zu, %llu received, %llu "
           "released)",
           slot.index, i, (unsigned long long)received_, (unsigned long long)released_);
    check_error();
    // Device credit first (enqueued after the stream's reads of the payload), then the host
    // credit: a host that sees the host credit knows the device credit is already enqueued.
    ipc::launch_signal(stream ? stream : static_cast<void*>(stream_),
                       word_at(peer_sync_, 0, i), released_ + 1);
    ++released_;
    ctrl_->released.store(released_, std::memory_order_release);
  }
  void release(const Slot& slot) override { release_on(slot, nullptr); }

 private:
  // The next message's header if it is here and a slot is free to hold it.
  const Slot* header_ready() {
    if (received_ - released_ >= static_cast<uint64_t>(spec_.slots)) return nullptr;
    if (ctrl_->posted.load(std::memory_order_acquire) <= received_) return nullptr;
    const size_t i = received_ % static_cast<uint64_t>(spec_.slots);
    const Slot& s = slots_[i];
    const MsgHeader& h = *s.header;
    if (h.magic != kMsgMagic || h.seq_no != received_ || h.rows > s.row_capacity ||
        h.payload_bytes > s.payload_capacity_bytes)
      fail("transport: corrupt message from rank %d (link %d->%d): magic %08x seq %llu (expected "
           "%llu), %u rows, %llu payload bytes",
           peer_, peer_, me_, h.magic, (unsigned long long)h.seq_no, (unsigned long long)received_,
           h.rows, (unsigned long long)h.payload_bytes);
    return &s;
  }
  void enqueue_wait(gpuStream_t st, size_t i) {
    ipc::launch_wait(st, word_at(ready_, 0, i), received_ + 1, timeout_ns(),
                     err_.dev, ipc::kErrPayloadWaitTimedOut);
  }
  const Slot* commit(size_t i) {
    pending_ = false;
    const MsgHeader& h = *slots_[i].header;
    ++received_;
    ++stats_.messages;
    stats_.payload_bytes += h.payload_bytes;
    stats_.header_bytes += sizeof(MsgHeader) + sizeof(RowHeader) * h.rows;
    return &slots_[i];
  }
  uint64_t timeout_ns() const { return static_cast<uint64_t>(spec_.timeout_s * 1e9); }
  void check_error() {
    if (uint32_t e = err_.get())
      fail("transport: the device-side wait for a payload from rank %d timed out after %.0f s "
           "(link %d->%d, message %llu, error %u): rank %d is stuck or dead",
           peer_, spec_.timeout_s, peer_, me_, (unsigned long long)received_, e, peer_);
  }
  std::string timeout_message() const {
    if (received_ - released_ >= static_cast<uint64_t>(spec_.slots))
      return strfmt("receive() with all %d slots held: release slots first (link %d->%d)",
                    spec_.slots, peer_, me_);
    return strfmt("no message from rank %d for %.0f s (link %d->%d, waiting for message %llu): "
                  "rank %d is stuck or dead",
                  peer_, spec_.timeout_s, peer_, me_, (unsigned long long)received_, peer_);
  }

  int me_, peer_;
  LinkSpec spec_;
  Layout layout_;
  ShmSegment shm_;
  ShmControl* ctrl_ = nullptr;
  void* dev_ = nullptr;        // [K payload slots]: exported
  void* ready_ = nullptr;      // [K ready words, 64 B apart]: exported
  void* peer_sync_ = nullptr;  // the sender's [K credit words]
  bool peer_sync_opened_ = false;
  gpuStream_t stream_ = nullptr;     // the link's own stream (plain receive/release)
  std::vector<gpuEvent_t> events_;  // [K] plain receive: payload wait done
  ErrorWord err_;
  std::vector<Slot> slots_;
  bool pending_ = false;  // plain try_receive() enqueued the wait for message received_
  uint64_t received_ = 0, released_ = 0;
  LinkStats stats_;
};

// ---------------------------------------------------------------------------------------------
class IpcSendLink final : public SendLink {
 public:
  IpcSendLink(int me, int peer, const LinkSpec& spec)
      : me_(me), peer_(peer), spec_(spec), layout_(spec) {
    const size_t k = static_cast<size_t>(spec.slots);
    GPU_CHECK(gpuMalloc(&staging_, layout_.payload_stride * k));
    GPU_CHECK(gpuMallocSignal(&sync_, layout_.sync_bytes));
    GPU_CHECK(gpuMemset(sync_, 0, layout_.sync_bytes));
    GPU_CHECK(gpuDeviceSynchronize());
    GPU_CHECK(gpuStreamCreate(&stream_));
    events_.assign(k, nullptr);
    for (auto& e : events_) GPU_CHECK(gpuEventCreateNoTiming(&e));
    recorded_.assign(k, 0);
    if (const char* b = std::getenv("GPTOSS_IPC_BLOCKS")) max_blocks_ = std::max(1, std::atoi(b));
  }
  ~IpcSendLink() override {
    for (size_t i = 0; i < events_.size(); ++i)
      if (events_[i] && recorded_[i]) (void)gpuEventSynchronize(events_[i]);
    if (stream_) (void)gpuStreamSynchronize(stream_);
    for (auto e : events_)
      if (e) (void)gpuEventDestroy(e);
    if (stream_) (void)gpuStreamDestroy(stream_);
    if (peer_slots_ && peer_slots_opened_) (void)gpuIpcCloseMemHandle(peer_slots_);
    if (peer_ready_ && peer_ready_opened_) (void)gpuIpcCloseMemHandle(peer_ready_);
    if (staging_) (void)gpuFree(staging_);
    if (sync_) (void)gpuFree(sync_);
  }

  void export_to(Exports& ex) const { GPU_CHECK(gpuIpcGetMemHandle(&ex.sync, sync_)); }
  void connect(const std::string& shm_name, const gpuIpcMemHandle_t& slots,
               const gpuIpcMemHandle_t& ready) {
    GPU_CHECK(gpuIpcOpenMemHandle(&peer_slots_, slots));
    peer_slots_opened_ = true;
    GPU_CHECK(gpuIpcOpenMemHandle(&peer_ready_, ready));
    peer_ready_opened_ = true;
    map_headers(shm_name);
  }
  void connect_local(const std::string& shm_name, void* slots, void* ready) {
    peer_slots_ = slots;
    peer_ready_ = ready;
    map_headers(shm_name);
  }
  void* sync_block() const { return sync_; }

  int peer() const override { return peer_; }
  const LinkSpec& spec() const override { return spec_; }
  int in_flight() const override {
    return static_cast<int>(posted_ - ctrl_->released.load(std::memory_order_acquire));
  }
  const LinkStats& stats() const override { return stats_; }

  RingProgress progress;

  int poll() override {
    check_error();
    progress.run();
    released_ = ctrl_->released.load(std::memory_order_acquire);
    return spec_.slots - static_cast<int>(acquired_ - released_);
  }

  Slot* try_acquire() override {
    check_error();
    progress.run();
    const uint64_t k = static_cast<uint64_t>(spec_.slots);
    if (acquired_ - released_ >= k) {
      released_ = ctrl_->released.load(std::memory_order_acquire);
      if (acquired_ - released_ >= k) return nullptr;
    }
    const size_t i = acquired_ % k;
    // The staging buffer may be rewritten by the host or any stream once the previous message
    // of this slot has left it.
    if (recorded_[i]) {
      gpuError_t e = gpuEventQuery(events_[i]);
      if (e == gpuErrorNotReady) return nullptr;
      GPU_CHECK(e);
      recorded_[i] = 0;
    }
    ++acquired_;
    Slot& s = slots_[i];
    std::memset(s.header, 0, sizeof(MsgHeader));
    return &s;
  }

  Slot& acquire() override {
    Slot* got = nullptr;
    wait_until(spec_, &stats_.wait_us, [&] { return (got = try_acquire()) != nullptr; },
               [&] {
                 return strfmt("no credit from rank %d for %.0f s (link %d->%d, %llu messages "
                               "posted, %llu released): rank %d is stuck or dead",
                               peer_, spec_.timeout_s, me_, peer_, (unsigned long long)posted_,
                               (unsigned long long)released_, peer_);
               });
    return *got;
  }

  void post_on(Slot& slot, void* stream) override {
    const uint64_t k = static_cast<uint64_t>(spec_.slots);
    const size_t i = posted_ % k;
    if (posted_ >= acquired_ || &slot != &slots_[i])
      fail("transport: post() of slot %d out of order (expected slot %zu, %llu acquired, %llu "
           "posted)",
           slot.index, i, (unsigned long long)acquired_, (unsigned long long)posted_);
    MsgHeader& h = *slot.header;
    if (h.rows > slot.row_capacity)
      fail("transport: message with %u rows exceeds the slot capacity of %u rows", h.rows,
           slot.row_capacity);
    if (h.payload_bytes > slot.payload_capacity_bytes)
      fail("transport: message with %llu payload bytes exceeds the slot capacity of %zu bytes",
           (unsigned long long)h.payload_bytes, slot.payload_capacity_bytes);
    check_error();
    const uint64_t s = posted_;
    h.magic = kMsgMagic;
    h.seq_no = s;
    gpuStream_t st = stream ? as_stream(stream) : stream_;
    ipc::SendArgs a;
    a.src = slot.payload;
    a.dst = static_cast<uint8_t*>(peer_slots_) + layout_.payload_stride * i;
    a.bytes = h.payload_bytes;
    a.credit = word_at(sync_, 0, i);
    a.credit_needed = s >= k ? s - k + 1 : 0;
    a.ready = word_at(peer_ready_, 0, i);
    a.ready_value = s + 1;
    a.blocks_done = reinterpret_cast<unsigned int*>(word_at(sync_, layout_.counter_offset, i));
    a.timeout_ns = static_cast<uint64_t>(spec_.timeout_s * 1e9);
    a.error_word = err_.dev;
    a.max_blocks = max_blocks_;
    ipc::launch_send(st, a);
    GPU_CHECK(gpuEventRecord(events_[i], st));
    recorded_[i] = 1;
    // The header becomes visible to the receiver's host only now, after the copy is enqueued.
    ++posted_;
    ctrl_->posted.store(posted_, std::memory_order_release);
    ++stats_.messages;
    stats_.payload_bytes += h.payload_bytes;
    stats_.header_bytes += sizeof(MsgHeader) + sizeof(RowHeader) * h.rows;
  }
  void post(Slot& slot) override { post_on(slot, nullptr); }

  void drain() override {
    wait_until(spec_, &stats_.wait_us,
               [&] {
                 poll();
                 if (released_ != posted_ || !progress.run()) return false;
                 for (size_t i = 0; i < events_.size(); ++i) {
                   if (!recorded_[i]) continue;
                   gpuError_t e = gpuEventQuery(events_[i]);
                   if (e == gpuErrorNotReady) return false;
                   GPU_CHECK(e);
                 }
                 return true;
               },
               [&] {
                 return strfmt("rank %d did not release %llu messages within %.0f s (link "
                               "%d->%d): rank %d is stuck or dead",
                               peer_, (unsigned long long)(posted_ - released_), spec_.timeout_s,
                               me_, peer_, peer_);
               });
    check_error();
  }

 private:
  void map_headers(const std::string& name) {
    shm_.open(name, layout_.shm_bytes);
    ctrl_ = reinterpret_cast<ShmControl*>(shm_.base());
    if (ctrl_->magic != kShmMagic || ctrl_->slots != static_cast<uint64_t>(spec_.slots) ||
        ctrl_->header_stride != layout_.header_stride)
      fail("transport: shared memory %s of rank %d does not match this link", name.c_str(), peer_);
    for (size_t i = 0; i < static_cast<size_t>(spec_.slots); ++i) {
      Slot sl;
      uint8_t* h = shm_.base() + kControlBytes + layout_.header_stride * i;
      sl.header = reinterpret_cast<MsgHeader*>(h);
      sl.rows = reinterpret_cast<RowHeader*>(h + sizeof(MsgHeader));
      sl.payload = static_cast<uint8_t*>(staging_) + layout_.payload_stride * i;
      sl.row_capacity = spec_.max_rows;
      sl.payload_capacity_bytes = spec_.max_payload_bytes;
      sl.payload_memory = MemoryKind::Device;
      sl.index = static_cast<int>(i);
      slots_.push_back(sl);
    }
  }
  void check_error() {
    if (uint32_t e = err_.get())
      fail("transport: the device-side wait for a credit from rank %d timed out after %.0f s "
           "(link %d->%d, %llu messages posted, error %u): rank %d is stuck or dead",
           peer_, spec_.timeout_s, me_, peer_, (unsigned long long)posted_, e, peer_);
  }

  int me_, peer_;
  LinkSpec spec_;
  Layout layout_;
  ShmSegment shm_;
  ShmControl* ctrl_ = nullptr;
  void* staging_ = nullptr;     // [K payload slots] local: Slot::payload on the sender
  void* sync_ = nullptr;        // [K credit words][K block counters]: exported
  void* peer_slots_ = nullptr;  // the receiver's [K payload slots]
  void* peer_ready_ = nullptr;  // the receiver's [K ready words]
  bool peer_slots_opened_ = false, peer_ready_opened_ = false;
  gpuStream_t stream_ = nullptr;     // the link's own stream (plain post)
  std::vector<gpuEvent_t> events_;  // [K] the slot's last send kernel done
  std::vector<char> recorded_;      // [K] events_[i] was recorded and not yet seen complete
  ErrorWord err_;
  std::vector<Slot> slots_;
  int max_blocks_ = 64;
  uint64_t acquired_ = 0, posted_ = 0, released_ = 0;
  LinkStats stats_;
};

// ---------------------------------------------------------------------------------------------
// The MPI fallback for device payloads ("host-staged"): an MPI link with host slots, wrapped so
// that the caller sees device slots like on an IPC link. Sender: post_on enqueues the copy of the
// payload from the device slot into the MPI host slot on the stream and records an event; the MPI
// send starts once the event has completed (progress). Receiver: try_receive_on enqueues the copy
// from the MPI host slot into the device slot on the stream; release_on records an event and the
// MPI slot is released (its credit sent) once the event has completed. The host slots are
// page-locked (gpuHostRegister) when first used so the copies are asynchronous.
// The device side of a host-staged link, either direction: K device payload slots, a copy
// stream, one event per slot, and the MPI slots' host payloads page-locked on first use. Declare
// it after the MPI link it wraps: it unregisters that link's host memory when destroyed.
class StagedSlots {
 public:
  explicit StagedSlots(const LinkSpec& spec) : layout(spec) {
    const size_t k = static_cast<size_t>(spec.slots);
    GPU_CHECK(gpuMalloc(&dev_, layout.payload_stride * k));
    GPU_CHECK(gpuStreamCreate(&stream));
    events.assign(k, nullptr);
    for (auto& e : events) GPU_CHECK(gpuEventCreateNoTiming(&e));
    host_payload_.assign(k, nullptr);
    registered_.assign(k, 0);
    slots.resize(k);
  }
  ~StagedSlots() {
    if (stream) (void)gpuStreamSynchronize(stream);
    for (size_t i = 0; i < events.size(); ++i) {
      if (events[i]) (void)gpuEventSynchronize(events[i]);
      if (events[i]) (void)gpuEventDestroy(events[i]);
      if (registered_[i] == 1) (void)gpuHostUnregister(host_payload_[i]);
    }
    if (stream) (void)gpuStreamDestroy(stream);
    if (dev_) (void)gpuFree(dev_);
  }
  StagedSlots(const StagedSlots&) = delete;
  StagedSlots& operator=(const StagedSlots&) = delete;

  // The MPI slot h as the caller sees it: the same header and rows, its payload in device slot
  // h.index. Page-locks h's payload the first time its index comes by.
  Slot& wrap(const Slot& h) {
    const size_t i = static_cast<size_t>(h.index);
    if (!registered_[i]) {
      host_payload_[i] = h.payload;
      registered_[i] = 1;
      if (gpuHostRegister(h.payload, layout.payload_stride) != gpuSuccess) {
        (void)gpuGetLastError();  // still correct unregistered, only synchronous
        registered_[i] = 2;
      }
    }
    Slot& s = slots[i];
    s = h;
    s.payload = static_cast<uint8_t*>(dev_) + layout.payload_stride * i;
    s.payload_memory = MemoryKind::Device;
    return s;
  }

  const Layout layout;
  gpuStream_t stream = nullptr;     // the link's own stream (the plain, stream-less calls)
  std::vector<gpuEvent_t> events;   // [K] send: device-to-host copy done; receive: readers done
  std::vector<Slot> slots;          // [K] what the caller holds (wrap)

 private:
  void* dev_ = nullptr;             // [K payload slots] device: Slot::payload
  std::vector<void*> host_payload_; // [K] the MPI slots' payloads, as registered
  std::vector<char> registered_;    // [K] 0 not yet seen, 1 page-locked, 2 left pageable
};

class StagedSendLink final : public SendLink {
 public:
  StagedSendLink(std::unique_ptr<SendLink> inner, const LinkSpec& spec)
      : inner_(std::move(inner)), spec_(spec), dev_(spec) {
    host_.assign(static_cast<size_t>(spec.slots), nullptr);
  }
  RingProgress progress;

  // Starts the MPI sends whose device-to-host copies have finished, in post order.
  bool forward() {
    const uint64_t k = static_cast<uint64_t>(spec_.slots);
    while (forwarded_ < posted_) {
      const size_t i = forwarded_ % k;
      gpuError_t e = gpuEventQuery(dev_.events[i]);
      if (e == gpuErrorNotReady) break;
      GPU_CHECK(e);
      inner_->post(*host_[i]);
      ++forwarded_;
    }
    inner_->poll();
    return forwarded_ == posted_;
  }

  int peer() const override { return inner_->peer(); }
  const LinkSpec& spec() const override { return spec_; }
  int in_flight() const override {
    return inner_->in_flight() + static_cast<int>(posted_ - forwarded_);
  }
  const LinkStats& stats() const override {  // the MPI link's counters + this link's waits
    merged_ = inner_->stats();
    merged_.wait_us += wait_us_;
    return merged_;
  }
  int poll() override {
    progress.run();
    return inner_->poll();
  }
  Slot* try_acquire() override {
    progress.run();
    Slot* h = inner_->try_acquire();
    if (!h) return nullptr;
    host_[static_cast<size_t>(h->index)] = h;
    Slot& s = dev_.wrap(*h);
    ++acquired_;
    return &s;
  }
  Slot& acquire() override {
    Slot* got = nullptr;
    wait_until(spec_, &wait_us_, [&] { return (got = try_acquire()) != nullptr; },
               [&] {
                 return strfmt("no credit from rank %d for %.0f s (link %d->%d, host-staged): "
                               "rank %d is stuck or dead",
                               peer(), spec_.timeout_s, World::current() ? World::current()->rank() : 0,
                               peer(), peer());
               });
    return *got;
  }
  void post_on(Slot& slot, void* stream) override {
    const uint64_t k = static_cast<uint64_t>(spec_.slots);
    const size_t i = posted_ % k;
    if (posted_ >= acquired_ || &slot != &dev_.slots[i])
      fail("transport: post() of slot %d out of order (expected slot %zu, %llu acquired, %llu "
           "posted)",
           slot.index, i, (unsigned long long)acquired_, (unsigned long long)posted_);
    if (slot.header->rows > slot.row_capacity)
      fail("transport: message with %u rows exceeds the slot capacity of %u rows",
           slot.header->rows, slot.row_capacity);
    if (slot.header->payload_bytes > slot.payload_capacity_bytes)
      fail("transport: message with %llu payload bytes exceeds the slot capacity of %zu bytes",
           (unsigned long long)slot.header->payload_bytes, slot.payload_capacity_bytes);
    gpuStream_t st = stream ? as_stream(stream) : dev_.stream;
    if (slot.header->payload_bytes)
      GPU_CHECK(gpuMemcpyAsync(host_[i]->payload, slot.payload, slot.header->payload_bytes,
                               gpuMemcpyDeviceToHost, st));
    GPU_CHECK(gpuEventRecord(dev_.events[i], st));
    ++posted_;
    progress.run();
  }
  void post(Slot& slot) override { post_on(slot, nullptr); }
  void drain() override {
    wait_until(spec_, &wait_us_, [&] { return progress.run() && forwarded_ == posted_; },
               [&] {
                 return strfmt("device copies of the host-staged links (send to rank %d) did not "
                               "finish within %.0f s",
                               peer(), spec_.timeout_s);
               });
    // Both ends of this rank are flushed (sends started, releases handed on) before the MPI
    // drain, which makes no progress calls of its own: a peer draining at the same time gets
    // its credits.
    inner_->drain();
  }

 private:
  std::unique_ptr<SendLink> inner_;  // MPI, host slots
  LinkSpec spec_;
  StagedSlots dev_;                  // after inner_: its host memory is unregistered first
  std::vector<Slot*> host_;          // [K] the MPI slots
  uint64_t acquired_ = 0, posted_ = 0, forwarded_ = 0;
  double wait_us_ = 0;
  mutable LinkStats merged_;
};

class StagedRecvLink final : public RecvLink {
 public:
  StagedRecvLink(std::unique_ptr<RecvLink> inner, const LinkSpec& spec)
      : inner_(std::move(inner)), spec_(spec), dev_(spec) {
    host_.assign(static_cast<size_t>(spec.slots), nullptr);
  }
  RingProgress progress;

  // Releases the MPI slots whose readers have finished, in release order.
  bool forward() {
    const uint64_t k = static_cast<uint64_t>(spec_.slots);
    while (forwarded_ < released_) {
      const size_t i = forwarded_ % k;
      gpuError_t e = gpuEventQuery(dev_.events[i]);
      if (e == gpuErrorNotReady) break;
      GPU_CHECK(e);
      inner_->release(*host_[i]);
      ++forwarded_;
    }
    return forwarded_ == released_;
  }

  int peer() const override { return inner_->peer(); }
  const LinkSpec& spec() const override { return spec_; }
  int held() const override { return static_cast<int>(received_ - released_); }
  const LinkStats& stats() const override {  // the MPI link's counters + this link's waits
    merged_ = inner_->stats();
    merged_.wait_us += wait_us_;
    return merged_;
  }

  const Slot* try_receive_on(void* stream) override {
    progress.run();
    if (received_ - released_ >= static_cast<uint64_t>(spec_.slots)) return nullptr;
    const Slot* h = inner_->try_receive();
    if (!h) return nullptr;
    host_[static_cast<size_t>(h->index)] = h;
    Slot& s = dev_.wrap(*h);
    if (h->header->payload_bytes)
      GPU_CHECK(gpuMemcpyAsync(s.payload, h->payload, h->header->payload_bytes,
                               gpuMemcpyHostToDevice, stream ? as_stream(stream) : dev_.stream));
    ++received_;
    return &s;
  }
  const Slot* try_receive() override {
    const Slot* s = try_receive_on(nullptr);
    if (s) GPU_CHECK(gpuStreamSynchronize(dev_.stream));
    return s;
  }
  const Slot& receive_on(void* stream) override {
    const Slot* got = nullptr;
    wait_until(spec_, &wait_us_, [&] { return (got = try_receive_on(stream)) != nullptr; },
               [&] { return timeout_message(); });
    return *got;
  }
  const Slot& receive() override {
    const Slot* got = nullptr;
    wait_until(spec_, &wait_us_, [&] { return (got = try_receive()) != nullptr; },
               [&] { return timeout_message(); });
    return *got;
  }
  void release_on(const Slot& slot, void* stream) override {
    const size_t i = released_ % static_cast<uint64_t>(spec_.slots);
    if (released_ >= received_ || &slot != &dev_.slots[i])
      fail("transport: release() of slot %d out of order (expected slot %zu, %llu received, %llu "
           "released)",
           slot.index, i, (unsigned long long)received_, (unsigned long long)released_);
    GPU_CHECK(gpuEventRecord(dev_.events[i], stream ? as_stream(stream) : dev_.stream));
    ++released_;
    progress.run();
  }
  void release(const Slot& slot) override { release_on(slot, nullptr); }

 private:
  std::string timeout_message() const {
    if (received_ - released_ >= static_cast<uint64_t>(spec_.slots))
      return strfmt("receive() with all %d slots held: release slots first (link %d->%d)",
                    spec_.slots, peer(), World::current() ? World::current()->rank() : 0);
    return strfmt("no message from rank %d for %.0f s (link %d->%d, host-staged, waiting for "
                  "message %llu): rank %d is stuck or dead",
                  peer(), spec_.timeout_s, peer(), World::current() ? World::current()->rank() : 0,
                  (unsigned long long)received_, peer());
  }
  std::unique_ptr<RecvLink> inner_;  // MPI, host slots
  LinkSpec spec_;
  StagedSlots dev_;                  // after inner_: its host memory is unregistered first
  std::vector<const Slot*> host_;    // [K] the MPI slots
  uint64_t received_ = 0, released_ = 0, forwarded_ = 0;
  double wait_us_ = 0;
  mutable LinkStats merged_;
};

// ---------------------------------------------------------------------------------------------
// What every rank tells the others before the per-link choice.
struct RankInfo {
  char host[128];
  char boot_id[48];
  char bus_id[32];  // PCI bus id of this rank's GPU ("" without one)
  int32_t has_gpu;
  int32_t ipc_disabled;
};

void read_boot_id(char* out, size_t n) {
  std::memset(out, 0, n);
  if (FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r")) {
    if (!std::fgets(out, static_cast<int>(n), f)) out[0] = 0;
    std::fclose(f);
  }
}

bool env_true(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::strcmp(v, "0") != 0;
}

class GpuRing final : public Ring {
 public:
  GpuRing(MPI_Comm comm, const LinkSpec& spec) : spec_(spec) {
    check_gpu_spec(spec);
    CHECK_MPI(MPI_Comm_rank(comm, &rank_));
    CHECK_MPI(MPI_Comm_size(comm, &size_));
    const uint64_t words[6] = {static_cast<uint64_t>(spec.slots),
                               spec.max_rows,
                               spec.max_payload_bytes,
                               static_cast<uint64_t>(spec.payload_memory),
                               static_cast<uint64_t>(spec.channel),
                               0x6970636eull};
    uint64_t hsh = 0xcbf29ce484222325ull;
    for (uint64_t w : words) hsh = (hsh ^ w) * 0x100000001b3ull;
    check_same_on_all_ranks("ring transport spec", hsh, describe_spec(), comm);
    CHECK_MPI(MPI_Comm_dup(comm, &comm_));
    CHECK_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    const int n = size_, me = rank_, next = (me + 1) % n, prev = (me + n - 1) % n;

    // 1. Who is where, and which GPU can reach which.
    RankInfo mine{};
    gethostname(mine.host, sizeof mine.host - 1);
    read_boot_id(mine.boot_id, sizeof mine.boot_id);
    mine.ipc_disabled = env_true("GPTOSS_IPC_DISABLE");
    int count = 0, dev = -1;
    if (gpuGetDeviceCount(&count) == gpuSuccess && count > 0 && gpuGetDevice(&dev) == gpuSuccess) {
      mine.has_gpu = 1;
      GPU_CHECK(gpuDeviceGetPCIBusId(mine.bus_id, sizeof mine.bus_id - 1, dev));
    } else {
      (void)gpuGetLastError();  // clear the no-device error
    }
    std::vector<RankInfo> all(static_cast<size_t>(n));
    CHECK_MPI(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, comm_));
    // can[a*n+b]: 0 rank a's GPU cannot reach rank b's, 1 it can (same GPU, or peer access),
    // 2 unknown (b's GPU is not visible to a, e.g. narrowed CUDA_VISIBLE_DEVICES: IPC may still
    // work, so it is tried).
    std::vector<uint8_t> row(static_cast<size_t>(n), 0), can(static_cast<size_t>(n) * n, 0);
    for (int j = 0; j < n; ++j) {
      const RankInfo& o = all[static_cast<size_t>(j)];
      if (!mine.has_gpu || !o.has_gpu || std::strcmp(o.host, mine.host) != 0 ||
          std::strcmp(o.boot_id, mine.boot_id) != 0)
        continue;
      if (std::strcmp(o.bus_id, mine.bus_id) == 0) {
        row[static_cast<size_t>(j)] = 1;  // the same GPU (or this rank itself)
        continue;
      }
      int other = -1, ok = 0;
      if (gpuDeviceGetByPCIBusId(&other, o.bus_id) != gpuSuccess) {
        (void)gpuGetLastError();
        row[static_cast<size_t>(j)] = 2;
        continue;
      }
      if (gpuDeviceCanAccessPeer(&ok, dev, other) != gpuSuccess) {
        (void)gpuGetLastError();
        ok = 0;
      }
      row[static_cast<size_t>(j)] = ok ? 1 : 0;
    }
    CHECK_MPI(MPI_Allgather(row.data(), n, MPI_BYTE, can.data(), n, MPI_BYTE, comm_));
    // Why link a -> a+1 cannot use IPC ("" = it can try); the same answer on every rank.
    auto no_ipc_reason = [&](int a) -> std::string {
      const int b = (a + 1) % n;
      const RankInfo &ra = all[static_cast<size_t>(a)], &rb = all[static_cast<size_t>(b)];
      if (ra.ipc_disabled || rb.ipc_disabled) return "GPTOSS_IPC_DISABLE";
      if (!ra.has_gpu || !rb.has_gpu) return "no GPU";
      if (std::strcmp(ra.host, rb.host) != 0 || std::strcmp(ra.boot_id, rb.boot_id) != 0)
        return "different hosts";
      if (!can[static_cast<size_t>(a) * n + b] || !can[static_cast<size_t>(b) * n + a])
        return "no peer access";
      return "";
    };
    send_why_ = no_ipc_reason(me);
    recv_why_ = no_ipc_reason(prev);
    has_gpu_ = mine.has_gpu != 0;

    // 2. Create this rank's IPC ends and export them.
    static std::atomic<unsigned> opened{0};
    Exports ex{};
    std::unique_ptr<IpcRecvLink> ipc_recv;
    std::unique_ptr<IpcSendLink> ipc_send;
    if (recv_why_.empty()) {
      std::snprintf(ex.shm_name, sizeof ex.shm_name, "/gptoss-ipc-%d-%d-%d-%u", (int)getpid(), me,
                    spec.channel, opened.fetch_add(1));
      ipc_recv = std::make_unique<IpcRecvLink>(me, prev, spec, ex.shm_name);
      ipc_recv->export_to(ex);
    }
    if (send_why_.empty()) {
      ipc_send = std::make_unique<IpcSendLink>(me, next, spec);
      ipc_send->export_to(ex);
    }
    std::vector<Exports> exs(static_cast<size_t>(n));
    CHECK_MPI(MPI_Allgather(&ex, sizeof ex, MPI_BYTE, exs.data(), sizeof ex, MPI_BYTE, comm_));

    // 3. Open the peers' ends (a link to itself uses its own pointers: a process cannot open its
    //    own IPC handle). An open that fails turns that link into an MPI link on both ends.
    struct Opened {
      int32_t send_ok, recv_ok;  // this rank opened its send link's / receive link's peer end
      char why[96];
    };
    Opened op{};
    if (ipc_recv) {
      try {
        if (prev == me)
          ipc_recv->connect_local(ipc_send->sync_block());
        else
          ipc_recv->connect(exs[static_cast<size_t>(prev)].sync);
        op.recv_ok = 1;
      } catch (const Error& e) {
        (void)gpuGetLastError();
        std::snprintf(op.why, sizeof op.why, "%s", e.what());
      }
    }
    if (ipc_send) {
      const Exports& theirs = exs[static_cast<size_t>(next)];
      try {
        if (next == me)
          ipc_send->connect_local(theirs.shm_name, ipc_recv->device_slots(),
                                  ipc_recv->device_ready());
        else
          ipc_send->connect(theirs.shm_name, theirs.slots, theirs.ready);
        op.send_ok = 1;
      } catch (const Error& e) {
        (void)gpuGetLastError();
        std::snprintf(op.why, sizeof op.why, "%s", e.what());
      }
    }
    std::vector<Opened> ops(static_cast<size_t>(n));
    CHECK_MPI(MPI_Allgather(&op, sizeof op, MPI_BYTE, ops.data(), sizeof op, MPI_BYTE, comm_));
    auto open_failed = [&](int a) -> std::string {  // link a -> a+1 after the attempt
      const int b = (a + 1) % n;
      const Opened &oa = ops[static_cast<size_t>(a)], &ob = ops[static_cast<size_t>(b)];
      if (oa.send_ok && ob.recv_ok) return "";
      return strfmt("IPC open failed on rank %d: %s", oa.send_ok ? b : a,
                    oa.send_ok ? ob.why : oa.why);
    };
    if (send_why_.empty()) send_why_ = open_failed(me);
    if (recv_why_.empty()) recv_why_ = open_failed(prev);

    // MPI links: host slots, wrapped into device slots (host-staged) when this rank has a GPU.
    LinkSpec host_spec = spec;
    host_spec.payload_memory = MemoryKind::Host;
    StagedRecvLink* staged_recv = nullptr;
    StagedSendLink* staged_send = nullptr;
    if (recv_why_.empty()) {
      recv_ = std::move(ipc_recv);
    } else if (mine.has_gpu) {
      auto r = std::make_unique<StagedRecvLink>(open_mpi_recv_link(comm_, prev, host_spec), spec);
      staged_recv = r.get();
      recv_ = std::move(r);
    } else {
      recv_ = open_mpi_recv_link(comm_, prev, host_spec);
    }
    if (send_why_.empty()) {
      send_ = std::move(ipc_send);
    } else if (mine.has_gpu) {
      auto t = std::make_unique<StagedSendLink>(open_mpi_send_link(comm_, next, host_spec), spec);
      staged_send = t.get();
      send_ = std::move(t);
    } else {
      send_ = open_mpi_send_link(comm_, next, host_spec);
    }
    if (staged_recv || staged_send) {
      std::function<bool()> hook = [staged_send, staged_recv] {
        const bool a = staged_send ? staged_send->forward() : true;
        const bool b = staged_recv ? staged_recv->forward() : true;
        return a && b;
      };
      if (auto* l = dynamic_cast<IpcSendLink*>(send_.get())) l->progress.hook = hook;
      if (auto* l = dynamic_cast<IpcRecvLink*>(recv_.get())) l->progress.hook = hook;
      if (staged_send) staged_send->progress.hook = hook;
      if (staged_recv) staged_recv->progress.hook = hook;
    }
    // Every mapping is open and every MPI receive of the first K messages posted.
    CHECK_MPI(MPI_Barrier(comm_));
    ipc_send.reset();  // ends of links that fell back to MPI
    ipc_recv.reset();
    if (auto* r = dynamic_cast<IpcRecvLink*>(recv_.get())) r->unlink_shm();
  }
  ~GpuRing() override {
    send_.reset();
    recv_.reset();
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  SendLink& next() override { return *send_; }
  RecvLink& prev() override { return *recv_; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override {
    const int next = (rank_ + 1) % size_, prev = (rank_ + size_ - 1) % size_;
    return strfmt("send %d->%d %s, receive %d->%d %s; %s", rank_, next, kind(send_why_).c_str(),
                  prev, rank_, kind(recv_why_).c_str(), describe_spec().c_str());
  }

 private:
  std::string kind(const std::string& why) const {
    if (why.empty()) return "gpu-ipc (device slots, peer copy)";
    return (has_gpu_ ? "mpi (host-staged: " : "mpi (host payload: ") + why + ")";
  }
  std::string describe_spec() const {
    return strfmt("%d slots x %u rows x %zu payload bytes, channel %d", spec_.slots, spec_.max_rows,
                  spec_.max_payload_bytes, spec_.channel);
  }
  LinkSpec spec_;
  int rank_ = 0, size_ = 1;
  std::string send_why_, recv_why_;  // why a link is not IPC ("" = it is)
  bool has_gpu_ = false;
  MPI_Comm comm_ = MPI_COMM_NULL;
  std::unique_ptr<SendLink> send_;
  std::unique_ptr<RecvLink> recv_;
};

}  // namespace

std::unique_ptr<Ring> open_gpu_ring(MPI_Comm comm, const LinkSpec& spec) {
  return std::make_unique<GpuRing>(comm, spec);
}

}  // namespace gptoss::comm
