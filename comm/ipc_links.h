// ipc_links.h: the two ends of a GPU IPC link between two processes of one host (library
// gptoss_comm_ipc; the GPU ring in ipc_transport.cpp opens them). Headers and rows travel through
// a POSIX shared-memory segment (the host plane), payloads GPU to GPU through the receiver's slots
// exported with gpuIpcGetMemHandle (the device plane); per message: one copy kernel on the
// sender's stream, one wait kernel and one credit kernel on the receiver's, no host round trip,
// MPI call or allocation. The protocol (ordering, credits, wraparound, why it cannot deadlock or
// hang) is documented at the top of ipc_links.cpp and in docs/transport.md.
//
// Opening, on every rank of the ring: each end is created (device memory, streams, the
// receiver's segment), export_to() fills this rank's Exports, the ring exchanges them, and
// connect() opens the peer's handles (and, on the sender, maps the receiver's segment). A
// connect() that throws makes the ring fall back to MPI for that link on both ends.
#pragma once
#include <string>
#include <vector>

#include "comm/ipc_common.h"
#include "comm/transport.h"
#include "gpu/vendor.h"

namespace gptoss::comm::detail {

class IpcRecvLink final : public RecvLink {
 public:
  // Creates the shm segment `shm_name` (headers), the K payload slots and ready words.
  IpcRecvLink(int me, int peer, const LinkSpec& spec, const std::string& shm_name);
  ~IpcRecvLink() override;

  void export_to(Exports& ex) const;                // slots, ready
  void connect(const gpuIpcMemHandle_t& sync);      // the sender's credit words
  void unlink_shm() { shm_.unlink(); }              // once the sender has mapped it

  int peer() const override { return peer_; }
  const LinkSpec& spec() const override { return spec_; }
  int held() const override { return static_cast<int>(received_ - released_); }
  const LinkStats& stats() const override { return stats_; }
  const Slot* try_receive_on(void* stream) override;
  const Slot* try_receive() override;
  const Slot& receive_on(void* stream) override;
  const Slot& receive() override;
  void release_on(const Slot& slot, void* stream) override;
  void release(const Slot& slot) override { release_on(slot, nullptr); }

  RingProgress progress;

 private:
  const Slot* header_ready();
  void enqueue_wait(gpuStream_t st, size_t i);
  const Slot* commit(size_t i);
  uint64_t timeout_ns() const { return static_cast<uint64_t>(spec_.timeout_s * 1e9); }
  void check_error();
  std::string timeout_message() const;

  int me_, peer_;
  LinkSpec spec_;
  Layout layout_;
  ShmSegment shm_;
  ShmControl* ctrl_ = nullptr;
  void* dev_ = nullptr;        // [K payload slots]: exported
  void* ready_ = nullptr;      // [K ready words, 64 B apart]: exported
  void* peer_sync_ = nullptr;  // the sender's [K credit words]
  gpuStream_t stream_ = nullptr;    // the link's own stream (plain receive/release)
  std::vector<gpuEvent_t> events_;  // [K] plain receive: payload wait done
  ErrorWord err_;
  std::vector<Slot> slots_;
  bool pending_ = false;  // plain try_receive() enqueued the wait for message received_
  uint64_t received_ = 0, released_ = 0;
  LinkStats stats_;
};

class IpcSendLink final : public SendLink {
 public:
  // Creates the K staging slots (Slot::payload on the sender) and the sync block (credit words,
  // block counters).
  IpcSendLink(int me, int peer, const LinkSpec& spec);
  ~IpcSendLink() override;

  void export_to(Exports& ex) const;  // sync
  // The receiver's payload slots and ready words, and its header segment `shm_name`.
  void connect(const std::string& shm_name, const gpuIpcMemHandle_t& slots,
               const gpuIpcMemHandle_t& ready);

  int peer() const override { return peer_; }
  const LinkSpec& spec() const override { return spec_; }
  int in_flight() const override {
    return static_cast<int>(posted_ - ctrl_->released.load(std::memory_order_acquire));
  }
  const LinkStats& stats() const override { return stats_; }
  int poll() override;
  Slot* try_acquire() override;
  Slot& acquire() override;
  void post_on(Slot& slot, void* stream) override;
  void post(Slot& slot) override { post_on(slot, nullptr); }
  void drain() override;

  RingProgress progress;

 private:
  void map_headers(const std::string& name);
  void check_error();

  int me_, peer_;
  LinkSpec spec_;
  Layout layout_;
  ShmSegment shm_;
  ShmControl* ctrl_ = nullptr;
  void* staging_ = nullptr;     // [K payload slots] local: Slot::payload on the sender
  void* sync_ = nullptr;        // [K credit words][K block counters]: exported
  void* peer_slots_ = nullptr;  // the receiver's [K payload slots]
  void* peer_ready_ = nullptr;  // the receiver's [K ready words]
  gpuStream_t stream_ = nullptr;    // the link's own stream (plain post)
  std::vector<gpuEvent_t> events_;  // [K] the slot's last send kernel done
  std::vector<char> recorded_;      // [K] events_[i] was recorded and not yet seen complete
  ErrorWord err_;
  std::vector<Slot> slots_;
  uint64_t acquired_ = 0, posted_ = 0, released_ = 0;
  LinkStats stats_;
};

}  // namespace gptoss::comm::detail
