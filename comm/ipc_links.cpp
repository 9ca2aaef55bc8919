// ipc_links.cpp: SendLink / RecvLink over GPU IPC (CUDA or HIP through gpu/vendor.h), the links
// between two processes of one host that the GPU ring (ipc_transport.cpp) picks when it can.
// This comment is the protocol; the full text with the reasoning is in docs/transport.md.
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
// A link always joins two processes: a one-rank ring is the loopback (loopback_transport.h).
#include "comm/ipc_links.h"

#include <cstring>
#include <new>

#include "comm/ipc_kernels.h"
#include "comm/link_common.h"

namespace gptoss::comm::detail {

namespace {
// Opens a peer's IPC handle; *p stays null if the open fails.
void open_handle(void** p, const gpuIpcMemHandle_t& h) {
  void* q = nullptr;
  GPU_CHECK(gpuIpcOpenMemHandle(&q, h));
  *p = q;
}
}  // namespace

// ---------------------------------------------------------------------------------------------
// Receiver
IpcRecvLink::IpcRecvLink(int me, int peer, const LinkSpec& spec, const std::string& shm_name)
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

IpcRecvLink::~IpcRecvLink() {
  if (stream_) (void)gpuStreamSynchronize(stream_);
  for (auto e : events_)
    if (e) (void)gpuEventDestroy(e);
  if (stream_) (void)gpuStreamDestroy(stream_);
  if (peer_sync_) (void)gpuIpcCloseMemHandle(peer_sync_);
  if (dev_) (void)gpuFree(dev_);
  if (ready_) (void)gpuFree(ready_);
}

void IpcRecvLink::export_to(Exports& ex) const {
  GPU_CHECK(gpuIpcGetMemHandle(&ex.slots, dev_));
  GPU_CHECK(gpuIpcGetMemHandle(&ex.ready, ready_));
}

void IpcRecvLink::connect(const gpuIpcMemHandle_t& sync) { open_handle(&peer_sync_, sync); }

const Slot* IpcRecvLink::try_receive_on(void* stream) {
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

const Slot* IpcRecvLink::try_receive() {
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

const Slot& IpcRecvLink::receive_on(void* stream) {
  const Slot* got = nullptr;
  wait_until(spec_, &stats_.wait_us, [&] { return (got = try_receive_on(stream)) != nullptr; },
             [&] { return timeout_message(); });
  return *got;
}

const Slot& IpcRecvLink::receive() {
  const Slot* got = nullptr;
  wait_until(spec_, &stats_.wait_us, [&] { return (got = try_receive()) != nullptr; },
             [&] { return timeout_message(); });
  return *got;
}

void IpcRecvLink::release_on(const Slot& slot, void* stream) {
  const size_t i = released_ % static_cast<uint64_t>(spec_.slots);
  if (released_ >= received_ || &slot != &slots_[i])
    fail("transport: release() of slot %d out of order (expected slot %zu, %llu received, %llu "
         "released)",
         slot.index, i, (unsigned long long)received_, (unsigned long long)released_);
  check_error();
  // Device credit first (enqueued after the stream's reads of the payload), then the host
  // credit: a host that sees the host credit knows the device credit is already enqueued.
  ipc::launch_signal(stream ? stream : static_cast<void*>(stream_), word_at(peer_sync_, 0, i),
                     released_ + 1);
  ++released_;
  ctrl_->released.store(released_, std::memory_order_release);
}

// The next message's header if it is here and a slot is free to hold it.
const Slot* IpcRecvLink::header_ready() {
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

void IpcRecvLink::enqueue_wait(gpuStream_t st, size_t i) {
  ipc::launch_wait(st, word_at(ready_, 0, i), received_ + 1, timeout_ns(), err_.dev,
                   ipc::kErrPayloadWaitTimedOut);
}

const Slot* IpcRecvLink::commit(size_t i) {
  pending_ = false;
  const MsgHeader& h = *slots_[i].header;
  ++received_;
  ++stats_.messages;
  stats_.payload_bytes += h.payload_bytes;
  stats_.header_bytes += sizeof(MsgHeader) + sizeof(RowHeader) * h.rows;
  return &slots_[i];
}

void IpcRecvLink::check_error() {
  if (uint32_t e = err_.get())
    fail("transport: the device-side wait for a payload from rank %d timed out after %.0f s "
         "(link %d->%d, message %llu, error %u): rank %d is stuck or dead",
         peer_, spec_.timeout_s, peer_, me_, (unsigned long long)received_, e, peer_);
}

std::string IpcRecvLink::timeout_message() const {
  if (received_ - released_ >= static_cast<uint64_t>(spec_.slots))
    return strfmt("receive() with all %d slots held: release slots first (link %d->%d)",
                  spec_.slots, peer_, me_);
  return strfmt("no message from rank %d for %.0f s (link %d->%d, waiting for message %llu): "
                "rank %d is stuck or dead",
                peer_, spec_.timeout_s, peer_, me_, (unsigned long long)received_, peer_);
}

// ---------------------------------------------------------------------------------------------
// Sender
IpcSendLink::IpcSendLink(int me, int peer, const LinkSpec& spec)
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
}

IpcSendLink::~IpcSendLink() {
  for (size_t i = 0; i < events_.size(); ++i)
    if (events_[i] && recorded_[i]) (void)gpuEventSynchronize(events_[i]);
  if (stream_) (void)gpuStreamSynchronize(stream_);
  for (auto e : events_)
    if (e) (void)gpuEventDestroy(e);
  if (stream_) (void)gpuStreamDestroy(stream_);
  if (peer_slots_) (void)gpuIpcCloseMemHandle(peer_slots_);
  if (peer_ready_) (void)gpuIpcCloseMemHandle(peer_ready_);
  if (staging_) (void)gpuFree(staging_);
  if (sync_) (void)gpuFree(sync_);
}

void IpcSendLink::export_to(Exports& ex) const { GPU_CHECK(gpuIpcGetMemHandle(&ex.sync, sync_)); }

void IpcSendLink::connect(const std::string& shm_name, const gpuIpcMemHandle_t& slots,
                          const gpuIpcMemHandle_t& ready) {
  open_handle(&peer_slots_, slots);
  open_handle(&peer_ready_, ready);
  map_headers(shm_name);
}

int IpcSendLink::poll() {
  check_error();
  progress.run();
  released_ = ctrl_->released.load(std::memory_order_acquire);
  return spec_.slots - static_cast<int>(acquired_ - released_);
}

Slot* IpcSendLink::try_acquire() {
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

Slot& IpcSendLink::acquire() {
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

void IpcSendLink::post_on(Slot& slot, void* stream) {
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
  a.max_blocks = spec_.copy_blocks;
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

void IpcSendLink::drain() {
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

void IpcSendLink::map_headers(const std::string& name) {
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

void IpcSendLink::check_error() {
  if (uint32_t e = err_.get())
    fail("transport: the device-side wait for a credit from rank %d timed out after %.0f s "
         "(link %d->%d, %llu messages posted, error %u): rank %d is stuck or dead",
         peer_, spec_.timeout_s, me_, peer_, (unsigned long long)posted_, e, peer_);
}

}  // namespace gptoss::comm::detail
