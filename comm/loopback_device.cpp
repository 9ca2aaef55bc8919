// loopback_device.cpp: device payloads for the one-rank ring (device_loopback_payloads, used by
// open_gpu_ring with one rank; library gptoss_comm_ipc). K payload slots in device memory of the
// current GPU; the stream-ordered calls are ordered as on an IPC link, at no cost in the one case
// that matters (post_on, receive_on, release_on on ONE stream: the pipeline's single rank):
//  - reader on the producer's stream (or the payload was complete at post()): nothing to do,
//    stream order already puts the reads after the writes;
//  - reader on another stream: an event recorded on the producer's stream and a
//    gpuStreamWaitEvent on the reader's (no host wait);
//  - host reader (plain receive()/try_receive()) of a post_on'd payload: an event on the
//    producer's stream, polled (try_receive returns nullptr until it completed);
//  - release_on(stream) on another stream than the slot's post_on (or after a plain post()): an
//    event on the reader's stream, and acquire() hands the slot out again only once it completed
//    (the next writer may be the host or any stream). On the post_on stream itself the next
//    writer is ordered after the reads by post_on's contract (the slot is rewritten only by work
//    ordered after it on that stream), so nothing is recorded.
// Nothing is copied, and nothing is allocated per message (one pair of events per slot at open).
#include <vector>

#include "comm/ipc_common.h"
#include "comm/loopback_transport.h"

namespace gptoss::comm::detail {

namespace {

class DevicePayloads final : public LoopbackPayloads {
 public:
  explicit DevicePayloads(const LinkSpec& s)
      : stride_(round_up(std::max<size_t>(s.max_payload_bytes, 1), kIpcAlign)) {
    const size_t k = static_cast<size_t>(s.slots);
    GPU_CHECK(gpuMalloc(&mem_, stride_ * k));
    GPU_CHECK(gpuMemset(mem_, 0, stride_ * k));
    GPU_CHECK(gpuDeviceSynchronize());
    post_ev_.assign(k, nullptr);
    read_ev_.assign(k, nullptr);
    for (auto& e : post_ev_) GPU_CHECK(gpuEventCreateNoTiming(&e));
    for (auto& e : read_ev_) GPU_CHECK(gpuEventCreateNoTiming(&e));
    post_stream_.assign(k, nullptr);
    host_wait_.assign(k, 0);
    read_pending_.assign(k, 0);
  }
  ~DevicePayloads() override {
    for (size_t i = 0; i < post_ev_.size(); ++i) {
      if (read_pending_[i]) (void)gpuEventSynchronize(read_ev_[i]);
      if (host_wait_[i]) (void)gpuEventSynchronize(post_ev_[i]);
    }
    for (auto e : post_ev_)
      if (e) (void)gpuEventDestroy(e);
    for (auto e : read_ev_)
      if (e) (void)gpuEventDestroy(e);
    if (mem_) (void)gpuFree(mem_);  // synchronises the device: no reader is left
  }
  MemoryKind memory() const override { return MemoryKind::Device; }
  void* slot(int i) override { return static_cast<uint8_t*>(mem_) + stride_ * static_cast<size_t>(i); }

  void posted(int i, void* stream) override {
    post_stream_[idx(i)] = stream;
    host_wait_[idx(i)] = 0;
  }
  bool readable(int i, void* stream) override {
    const size_t j = idx(i);
    void* producer = post_stream_[j];
    if (!producer || producer == stream) return true;
    if (stream) {  // another stream: a device-side wait
      GPU_CHECK(gpuEventRecord(post_ev_[j], as_stream(producer)));
      GPU_CHECK(gpuStreamWaitEvent(as_stream(stream), post_ev_[j], 0));
      return true;
    }
    if (!host_wait_[j]) {  // the host: poll an event
      GPU_CHECK(gpuEventRecord(post_ev_[j], as_stream(producer)));
      host_wait_[j] = 1;
    }
    gpuError_t e = gpuEventQuery(post_ev_[j]);
    if (e == gpuErrorNotReady) return false;
    GPU_CHECK(e);
    host_wait_[j] = 0;
    return true;
  }
  void released(int i, void* stream) override {
    const size_t j = idx(i);
    if (!stream || stream == post_stream_[j]) return;
    GPU_CHECK(gpuEventRecord(read_ev_[j], as_stream(stream)));
    read_pending_[j] = 1;
  }
  bool writable(int i) override {
    const size_t j = idx(i);
    if (!read_pending_[j]) return true;
    gpuError_t e = gpuEventQuery(read_ev_[j]);
    if (e == gpuErrorNotReady) return false;
    GPU_CHECK(e);
    read_pending_[j] = 0;
    return true;
  }

 private:
  static size_t idx(int i) { return static_cast<size_t>(i); }
  size_t stride_;
  void* mem_ = nullptr;              // [K, stride_] device: Slot::payload
  std::vector<void*> post_stream_;   // [K] the stream of the slot's post_on (nullptr: post())
  std::vector<gpuEvent_t> post_ev_;  // [K] recorded on post_stream_ when a reader needs it
  std::vector<char> host_wait_;      // [K] post_ev_ recorded for a host reader, not yet seen done
  std::vector<gpuEvent_t> read_ev_;  // [K] the readers of release_on on another stream
  std::vector<char> read_pending_;   // [K] read_ev_ recorded and not yet seen complete
};

}  // namespace

std::unique_ptr<LoopbackPayloads> device_loopback_payloads(const LinkSpec& spec) {
  return std::make_unique<DevicePayloads>(spec);
}

}  // namespace gptoss::comm::detail
