// staged_links.cpp: the host-staged links (staged_links.h): an MPI link with host slots behind
// device slots. Counting: acquired/posted/forwarded (sender) and received/released/forwarded
// (receiver) per link; "forwarded" trails by the messages whose device copies (sender) or device
// readers (receiver) have not finished yet, checked with one event per slot.
#include "comm/staged_links.h"

#include "comm/link_common.h"
#include "comm/world.h"

namespace gptoss::comm::detail {

namespace {
int my_rank() { return World::current() ? World::current()->rank() : 0; }
}  // namespace

// ---------------------------------------------------------------------------------------------
StagedSlots::StagedSlots(const LinkSpec& spec) : layout(spec) {
  const size_t k = static_cast<size_t>(spec.slots);
  GPU_CHECK(gpuMalloc(&dev_, layout.payload_stride * k));
  GPU_CHECK(gpuStreamCreate(&stream));
  events.assign(k, nullptr);
  for (auto& e : events) GPU_CHECK(gpuEventCreateNoTiming(&e));
  host_payload_.assign(k, nullptr);
  registered_.assign(k, 0);
  slots.resize(k);
}

StagedSlots::~StagedSlots() {
  if (stream) (void)gpuStreamSynchronize(stream);
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i]) (void)gpuEventSynchronize(events[i]);
    if (events[i]) (void)gpuEventDestroy(events[i]);
    if (registered_[i] == 1) (void)gpuHostUnregister(host_payload_[i]);
  }
  if (stream) (void)gpuStreamDestroy(stream);
  if (dev_) (void)gpuFree(dev_);
}

Slot& StagedSlots::wrap(const Slot& h) {
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

// ---------------------------------------------------------------------------------------------
StagedSendLink::StagedSendLink(std::unique_ptr<SendLink> inner, const LinkSpec& spec)
    : inner_(std::move(inner)), spec_(spec), dev_(spec) {
  host_.assign(static_cast<size_t>(spec.slots), nullptr);
}

bool StagedSendLink::forward() {
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

const LinkStats& StagedSendLink::stats() const {
  merged_ = inner_->stats();
  merged_.wait_us += wait_us_;
  return merged_;
}

int StagedSendLink::poll() {
  progress.run();
  return inner_->poll();
}

Slot* StagedSendLink::try_acquire() {
  progress.run();
  Slot* h = inner_->try_acquire();
  if (!h) return nullptr;
  host_[static_cast<size_t>(h->index)] = h;
  Slot& s = dev_.wrap(*h);
  ++acquired_;
  return &s;
}

Slot& StagedSendLink::acquire() {
  Slot* got = nullptr;
  wait_until(spec_, &wait_us_, [&] { return (got = try_acquire()) != nullptr; },
             [&] {
               return strfmt("no credit from rank %d for %.0f s (link %d->%d, host-staged): "
                             "rank %d is stuck or dead",
                             peer(), spec_.timeout_s, my_rank(), peer(), peer());
             });
  return *got;
}

void StagedSendLink::post_on(Slot& slot, void* stream) {
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

void StagedSendLink::drain() {
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

// ---------------------------------------------------------------------------------------------
StagedRecvLink::StagedRecvLink(std::unique_ptr<RecvLink> inner, const LinkSpec& spec)
    : inner_(std::move(inner)), spec_(spec), dev_(spec) {
  host_.assign(static_cast<size_t>(spec.slots), nullptr);
}

bool StagedRecvLink::forward() {
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

const LinkStats& StagedRecvLink::stats() const {
  merged_ = inner_->stats();
  merged_.wait_us += wait_us_;
  return merged_;
}

const Slot* StagedRecvLink::try_receive_on(void* stream) {
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

const Slot* StagedRecvLink::try_receive() {
  const Slot* s = try_receive_on(nullptr);
  if (s) GPU_CHECK(gpuStreamSynchronize(dev_.stream));
  return s;
}

const Slot& StagedRecvLink::receive_on(void* stream) {
  const Slot* got = nullptr;
  wait_until(spec_, &wait_us_, [&] { return (got = try_receive_on(stream)) != nullptr; },
             [&] { return timeout_message(); });
  return *got;
}

const Slot& StagedRecvLink::receive() {
  const Slot* got = nullptr;
  wait_until(spec_, &wait_us_, [&] { return (got = try_receive()) != nullptr; },
             [&] { return timeout_message(); });
  return *got;
}

void StagedRecvLink::release_on(const Slot& slot, void* stream) {
  const size_t i = released_ % static_cast<uint64_t>(spec_.slots);
  if (released_ >= received_ || &slot != &dev_.slots[i])
    fail("transport: release() of slot %d out of order (expected slot %zu, %llu received, %llu "
         "released)",
         slot.index, i, (unsigned long long)received_, (unsigned long long)released_);
  GPU_CHECK(gpuEventRecord(dev_.events[i], stream ? as_stream(stream) : dev_.stream));
  ++released_;
  progress.run();
}

std::string StagedRecvLink::timeout_message() const {
  if (received_ - released_ >= static_cast<uint64_t>(spec_.slots))
    return strfmt("receive() with all %d slots held: release slots first (link %d->%d)",
                  spec_.slots, peer(), my_rank());
  return strfmt("no message from rank %d for %.0f s (link %d->%d, host-staged, waiting for "
                "message %llu): rank %d is stuck or dead",
                peer(), spec_.timeout_s, peer(), my_rank(), (unsigned long long)received_,
                peer());
}

}  // namespace gptoss::comm::detail
