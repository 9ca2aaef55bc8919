// ipc_common.h: what the GPU IPC links (ipc_links.h), the host-staged links (staged_links.h) and
// the GPU ring (ipc_transport.cpp) share; internal to the library gptoss_comm_ipc:
//  - the sizes and offsets both ends of an IPC link compute from the spec (Layout);
//  - the host plane's POSIX shared-memory segment and its control words (ShmSegment, ShmControl);
//  - a link end's device-writable error word, what a rank exports at open, the ring's progress
//    hook, the spec check of open_gpu_ring, and the device payloads of a one-rank ring.
// The protocol that uses them: ipc_links.cpp and docs/transport.md.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "comm/link_common.h"
#include "comm/loopback_transport.h"
#include "comm/transport.h"
#include "gpu/vendor.h"

namespace gptoss::comm::detail {

constexpr size_t kIpcAlign = 4096;
constexpr size_t kWordStride = 64;  // one flag/credit word per 64-byte line
constexpr uint64_t kShmMagic = 0x6770746f73736970ull;

// open_gpu_ring's checks: the common ones, device payloads, a copy grid of at least one block.
void check_gpu_spec(const LinkSpec& s);

// The payload slots of a one-rank ring in device memory of the current GPU, with the stream
// ordering of an IPC link (loopback_device.cpp says what it costs: nothing on one stream).
std::unique_ptr<LoopbackPayloads> device_loopback_payloads(const LinkSpec& spec);

// Host control words at the start of the shm segment, each on its own cache line.
struct ShmControl {
  uint64_t magic;
  uint64_t slots;
  uint64_t header_stride;
  alignas(64) std::atomic<uint64_t> posted;    // sender host: messages posted
  alignas(64) std::atomic<uint64_t> released;  // receiver host: messages released (host credit)
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);
constexpr size_t kControlBytes = kIpcAlign;
static_assert(sizeof(ShmControl) <= kControlBytes);

// One POSIX shared-memory mapping. The creator unlinks the name once the peer has mapped it
// (after the ring's start-up barrier), so nothing is left in /dev/shm afterwards.
class ShmSegment {
 public:
  ShmSegment() = default;
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;
  ~ShmSegment();
  void create(const std::string& name, size_t bytes);  // O_EXCL: a new name
  void open(const std::string& name, size_t bytes);    // the peer's; its size must be `bytes`
  void unlink();                                        // creator only; idempotent
  uint8_t* base() const { return static_cast<uint8_t*>(base_); }

 private:
  void map(int fd);
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
    payload_stride = round_up(std::max<size_t>(s.max_payload_bytes, 1), kIpcAlign);
    shm_bytes = kControlBytes + round_up(header_stride * k, kIpcAlign);
    slots_bytes = payload_stride * k;
    ready_bytes = round_up(kWordStride * k, kIpcAlign);
    counter_offset = round_up(kWordStride * k, kIpcAlign);
    sync_bytes = counter_offset + round_up(kWordStride * k, kIpcAlign);
  }
};

inline uint64_t* word_at(void* base, size_t offset, size_t i) {
  return reinterpret_cast<uint64_t*>(static_cast<uint8_t*>(base) + offset + kWordStride * i);
}

// The error word of one link end: pinned host memory the device can write.
struct ErrorWord {
  uint32_t* host = nullptr;
  uint32_t* dev = nullptr;
  ErrorWord();
  ~ErrorWord();
  ErrorWord(const ErrorWord&) = delete;
  ErrorWord& operator=(const ErrorWord&) = delete;
  uint32_t get() const { return *reinterpret_cast<volatile uint32_t*>(host); }
};

inline gpuStream_t as_stream(void* s) { return static_cast<gpuStream_t>(s); }

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

}  // namespace gptoss::comm::detail
