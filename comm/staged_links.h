// staged_links.h: the MPI fallback for device payloads ("host-staged"; library gptoss_comm_ipc):
// an MPI link with host slots (mpi_transport.h), wrapped so that the caller sees device slots as on
// an IPC link. The GPU ring (ipc_transport.cpp) uses it for links that cannot be GPU IPC.
//  - Sender: acquire() hands out a device slot whose header and rows are the MPI slot's; post_on
//    enqueues the copy of the payload from the device slot into the MPI host slot on the stream
//    and records an event; the MPI send starts once the event has completed (forward()).
//  - Receiver: try_receive_on takes the MPI message and enqueues the copy from the MPI host slot
//    into the device slot on the stream; release_on records an event, and the MPI slot is
//    released (its credit sent) once the event has completed (forward()).
// The host slots are page-locked (gpuHostRegister) when first used so the copies are
// asynchronous. forward() runs from every call on either end of the ring (RingProgress), and
// drain() flushes both ends of this rank before the MPI drain, so two ranks draining at once still
// get each other's credits. The counting, credits and order are the MPI link's (docs/transport.md).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "comm/ipc_common.h"
#include "comm/transport.h"
#include "gpu/vendor.h"

namespace gptoss::comm::detail {

// The device side of a host-staged link, either direction: K device payload slots, a copy
// stream, one event per slot, and the MPI slots' host payloads page-locked on first use. Declare
// it after the MPI link it wraps: it unregisters that link's host memory when destroyed.
class StagedSlots {
 public:
  explicit StagedSlots(const LinkSpec& spec);
  ~StagedSlots();
  StagedSlots(const StagedSlots&) = delete;
  StagedSlots& operator=(const StagedSlots&) = delete;

  // The MPI slot h as the caller sees it: the same header and rows, its payload in device slot
  // h.index. Page-locks h's payload the first time its index comes by.
  Slot& wrap(const Slot& h);

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
  StagedSendLink(std::unique_ptr<SendLink> inner, const LinkSpec& spec);
  RingProgress progress;

  // Starts the MPI sends whose device-to-host copies have finished, in post order. True when
  // every posted message has been handed to MPI.
  bool forward();

  int peer() const override { return inner_->peer(); }
  const LinkSpec& spec() const override { return spec_; }
  int in_flight() const override {
    return inner_->in_flight() + static_cast<int>(posted_ - forwarded_);
  }
  const LinkStats& stats() const override;  // the MPI link's counters + this link's waits
  int poll() override;
  Slot* try_acquire() override;
  Slot& acquire() override;
  void post_on(Slot& slot, void* stream) override;
  void post(Slot& slot) override { post_on(slot, nullptr); }
  void drain() override;

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
  StagedRecvLink(std::unique_ptr<RecvLink> inner, const LinkSpec& spec);
  RingProgress progress;

  // Releases the MPI slots whose readers have finished, in release order. True when every
  // released message has been handed back to MPI.
  bool forward();

  int peer() const override { return inner_->peer(); }
  const LinkSpec& spec() const override { return spec_; }
  int held() const override { return static_cast<int>(received_ - released_); }
  const LinkStats& stats() const override;  // the MPI link's counters + this link's waits
  const Slot* try_receive_on(void* stream) override;
  const Slot* try_receive() override;
  const Slot& receive_on(void* stream) override;
  const Slot& receive() override;
  void release_on(const Slot& slot, void* stream) override;
  void release(const Slot& slot) override { release_on(slot, nullptr); }

 private:
  std::string timeout_message() const;
  std::unique_ptr<RecvLink> inner_;  // MPI, host slots
  LinkSpec spec_;
  StagedSlots dev_;                  // after inner_: its host memory is unregistered first
  std::vector<const Slot*> host_;    // [K] the MPI slots
  uint64_t received_ = 0, released_ = 0, forwarded_ = 0;
  double wait_us_ = 0;
  mutable LinkStats merged_;
};

}  // namespace gptoss::comm::detail
