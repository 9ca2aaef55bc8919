// ipc_kernels.h: the device side of the GPU IPC transport (ipc_transport.cpp): the fused
// "wait for credit, copy payload into the peer slot, publish its sequence number" kernel, the
// device-side wait for a sequence number, and the single release-store used for credits.
// Launchers take the stream as void* (a gpuStream_t) so that no runtime header leaks out of
// kernels/gpu/vendor.h. Protocol: docs/transport.md ("GPU IPC transport").
#pragma once
#include <cstdint>

namespace gptoss::comm::ipc {

// Error codes written to a link's error word (pinned host memory mapped into the device) when a
// device-side wait gives up after timeout_ns: the host checks the word on every call.
inline constexpr uint32_t kErrPayloadWaitTimedOut = 1;  // receiver: ready flag never came
inline constexpr uint32_t kErrCreditWaitTimedOut = 2;   // sender: device credit never came

struct SendArgs {
  const void* src;                 // [bytes] the sender's staging slot (local device memory)
  void* dst;                       // [bytes] the receiver's slot (peer device memory, IPC-mapped)
  uint64_t bytes;                  // payload bytes (0: only the flag is published)
  const uint64_t* credit;          // local device word: messages of this slot released (device)
  uint64_t credit_needed;          // wait until *credit >= credit_needed (0: no wait)
  uint64_t* ready;                 // peer device word: sequence number + 1 of this slot's message
  uint64_t ready_value;            // value to publish (message number + 1)
  unsigned int* blocks_done;       // local device counter for this slot (0 between messages)
  uint64_t timeout_ns;             // device-side wait limit
  uint32_t* error_word;            // mapped host word (device pointer)
  int max_blocks;                  // grid size cap
};

// Enqueues on stream: every block waits for the credit, copies its share of src -> dst (16-byte
// stores), fences at system scope; the last block to finish writes *ready = ready_value
// (system-scope release). One launch per message.
void launch_send(void* stream, const SendArgs& a);

// Enqueues on stream: one thread waits until *flag >= value, then a system-scope fence
// (acquire); later work on stream sees everything written before the flag. On timeout it writes
// `error_code` to *error_word and returns.
void launch_wait(void* stream, const uint64_t* flag, uint64_t value, uint64_t timeout_ns,
                 uint32_t* error_word, uint32_t error_code);

// Enqueues on stream: a system-scope fence after the work before it on stream, then *flag = value
// (one 64-bit store, possibly into peer memory).
void launch_signal(void* stream, uint64_t* flag, uint64_t value);

}  // namespace gptoss::comm::ipc
