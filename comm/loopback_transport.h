// loopback_transport.h: the ring of one rank. Its send and receive links are the two ends of one
// set of K slots: acquire() hands out slot s mod K, post() makes that same slot receivable,
// receive() returns it (the same Slot, so the same header, rows and payload pointer: what the
// sender wrote is read in place), release() gives the credit back. Same counting, credits,
// back-pressure and order/capacity errors as the MPI and IPC links (docs/transport.md); no MPI
// call, no copy and no allocation per message.
//
// A wait that nothing can end is an error at once, not after timeout_s (the ring has no other
// process and its calls are made from one thread): acquire() with every credit out, receive()
// with nothing posted, drain() with messages not yet released.
//
// Payload memory comes from a LoopbackPayloads: host memory (host_loopback_payloads: open_ring's
// one-rank ring) or, in GPU builds, device memory (loopback_device.cpp: open_gpu_ring's), which
// also orders the stream-ordered calls; loopback_device.cpp says what that costs (nothing when
// post_on, receive_on and release_on use one stream).
#pragma once
#include <memory>
#include <string>

#include "comm/transport.h"

namespace gptoss::comm {

// The payload slots of a loopback and the ordering between the sender's and the receiver's uses
// of a slot. `stream` is a gpuStream_t as void*; nullptr means the host (the plain calls).
class LoopbackPayloads {
 public:
  virtual ~LoopbackPayloads() = default;
  virtual MemoryKind memory() const = 0;
  virtual void* slot(int i) = 0;  // payload of slot i: [max_payload_bytes], fixed for life
  // Slot i was posted: its payload is complete after the work on `stream` so far.
  virtual void posted(int i, void* stream) {}
  // Slot i is being received for `stream` (nullptr: for the host). True when the payload is
  // there for that reader (after this call ordered the reader's stream, if needed); false: not
  // yet, call again (it never blocks).
  virtual bool readable(int i, void* stream) { return true; }
  // Slot i was released: its payload is still read by the work on `stream` so far.
  virtual void released(int i, void* stream) {}
  // True when slot i may be handed to the sender again (its readers are done). Never blocks.
  virtual bool writable(int i) { return true; }
};

// K slots of max_payload_bytes in host memory (4 KiB aligned, zeroed).
std::unique_ptr<LoopbackPayloads> host_loopback_payloads(const LinkSpec& spec);

// The one-rank ring over `payloads` (its memory() must be spec.payload_memory). `what` names it in
// describe(): "local (one rank<what>), 4 slots x 64 rows x ... payload bytes, channel 0". The
// caller checks the spec as its transport would (so one rank refuses what N ranks refuse).
std::unique_ptr<Ring> open_loopback_ring(const LinkSpec& spec,
                                         std::unique_ptr<LoopbackPayloads> payloads,
                                         const std::string& what = "");

}  // namespace gptoss::comm
