// transport.h: the interface that moves micro-batches between pipeline stages.
//
// A link carries messages from one rank to one peer (in the ring: rank r -> (r+1) mod N). The
// RECEIVER owns a ring of K pre-registered slot buffers of fixed capacity; the SENDER holds K
// credits, one per free slot. Per message:
//   sender:   Slot& s = link.acquire();   // blocks until a credit is free (back-pressure)
//             fill s.header / s.rows / s.payload in place;
//             link.post(s);               // returns at once, the bytes travel asynchronously
//   receiver: const Slot& s = link.receive();   // next message, strictly in post order
//             read it (it stays valid until released);
//             link.release(s);             // frees the slot: one credit goes back to the sender
// try_acquire() / try_receive() are the non-blocking forms (nullptr = not yet), so a stage can
// overlap its compute with communication; both drive the transport's progress.
//
// Nothing is allocated per message: slots, requests and credit buffers are created when the link
// opens. Implementations: MPI (mpi_transport.h, host memory), GPU IPC (ipc_links.h, GPU builds
// only: slots in device memory exported to the sender, sequence-number flags written with
// system-scope release ordering, credits flowing back the same way), the host-staged wrapper of MPI
// for device payloads (staged_links.h), and the loopback of a one-rank ring (loopback_transport.h:
// the receiver gets the very slot the sender filled, no copy). The interface is the same for all:
// the caller only ever writes into / reads from the Slot it was handed. The protocol (ordering,
// credits, why it cannot deadlock, wraparound) is documented in docs/transport.md.
//
// Stream-ordered forms (device payloads): post_on / try_receive_on / receive_on / release_on take
// the caller's GPU stream as an opaque `void*` (a gpuStream_t; nullptr = the link's own stream).
// They order the payload against the caller's stream instead of the host:
//   sender:   Slot& s = link.acquire();            // header/rows: host; payload: device
//             fill the header on the host, enqueue the kernels writing s.payload on `stream`;
//             link.post_on(s, stream);             // payload leaves after that work, no host wait
//   receiver: const Slot& s = link.receive_on(stream);  // header is readable now; work enqueued
//             on `stream` from here on sees the payload (the link enqueued a device-side wait)
//             enqueue kernels reading s.payload on `stream`;
//             link.release_on(s, stream);          // the sender may overwrite the payload only
//                                                  // after that work has finished
// Host transports (MPI) implement them as the plain forms: their payload is complete when
// receive() returns, and post()/release() need it complete when called.
#pragma once
#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/types.h"

namespace gptoss::comm {

using MemoryKind = ::gptoss::MemoryKind;  // common/types.h

// Per-row flags of a micro-batch (RowHeader::flags).
enum RowFlags : uint32_t {
  kRowNewSequence = 1u << 0,  // first row of a new sequence in this seq_slot: reset its KV cache
  kRowLastPromptToken = 1u << 1,  // last token of the prompt (prefill ends here)
  kRowNeedsLogits = 1u << 2,      // rank 0 must compute logits and sample for this row
  kRowEndSequence = 1u << 3,      // the sequence ends after this row: its slot's cache may be freed
};

// Per-message flags (MsgHeader::flags).
enum MsgFlags : uint32_t {
  kMsgShutdown = 1u << 0,  // no more messages on this link: the stage forwards it and stops
  kMsgHeadSplit = 1u << 1,  // the pipeline's head split: a micro-batch's second lap (head_split.h)
};

// One row of a micro-batch: which sequence, at which position. 16 bytes.
struct RowHeader {
  int32_t seq_slot;  // sequence slot (0 .. max sequences-1) whose KV cache this row reads/writes
  int32_t position;  // token position within that sequence
  uint32_t flags;    // RowFlags
  uint32_t user;     // free for the pipeline; carried unchanged
};
static_assert(sizeof(RowHeader) == 16);

// Message header, always in host memory. 64 bytes.
struct MsgHeader {
  uint32_t magic;           // kMsgMagic; written by post(), checked on receipt
  uint32_t flags;           // MsgFlags
  uint64_t seq_no;          // per-link message number 0, 1, 2, ...; written by post()
  uint32_t micro_batch_id;  // set by the caller
  uint32_t rows;            // set by the caller: rows used, <= Slot::row_capacity
  uint64_t payload_bytes;  // set by the caller: payload bytes used, <= Slot::payload_capacity_bytes
  uint64_t user[4];        // free for the pipeline (e.g. step number); carried unchanged
};
static_assert(sizeof(MsgHeader) == 64);
inline constexpr uint32_t kMsgMagic = 0x6d627467;  // "gtbm"

// One pre-registered slot. Pointers stay valid for the life of the link. On the sender the slot
// is writable between acquire() and post(); on the receiver readable between receive() and
// release(). Payload on the CPU backend: hidden states, fp32 [rows, hidden].
struct Slot {
  MsgHeader* header = nullptr;  // host memory
  RowHeader* rows = nullptr;    // [row_capacity], host memory
  void* payload = nullptr;      // [payload_capacity_bytes] in payload_memory
  uint32_t row_capacity = 0;
  size_t payload_capacity_bytes = 0;
  MemoryKind payload_memory = MemoryKind::Host;
  int index = 0;  // 0 .. slots-1 within the ring of slots
};

// The first five fields must be the same on every rank (checked when a ring opens); the others
// are this rank's own choices and may differ between ranks.
struct LinkSpec {
  int slots = 4;                 // K: receiver slot buffers = sender credits (1 .. 64)
  uint32_t max_rows = 64;        // row capacity of each slot
  size_t max_payload_bytes = 0;  // payload capacity of each slot, e.g. max_rows * hidden * 4
  MemoryKind payload_memory = MemoryKind::Host;
  int channel = 0;         // separates several rings over one communicator (0 .. 63)
  // ---- per rank ----
  double timeout_s = 300;  // a blocking acquire/receive/drain waiting longer fails, naming
                           // the peer (dead or stuck peers end the job, never a hang)
  double spin_us = 50;     // blocking waits spin this long, then poll with short sleeps
  // Device payloads only (open_gpu_ring, comm/ipc_transport.h):
  int device = -1;         // the GPU this rank's links use: open_gpu_ring calls gpuSetDevice with
                           // it first; -1: the current device
  bool allow_ipc = true;   // false: this rank's links never use GPU IPC (host-staged MPI instead;
                           // a link is IPC only if both of its ranks allow it)
  int copy_blocks = 64;    // grid-size cap of the IPC copy kernel (>= 1)
};

// Counters for the pipeline's per-rank timing report.
struct LinkStats {
  uint64_t messages = 0;       // posted (sender) / received (receiver)
  uint64_t payload_bytes = 0;  // sum of payload_bytes
  uint64_t header_bytes = 0;   // sum of header + row bytes
  double wait_us = 0;          // time blocked in acquire()/receive()/drain() (idle time)
};

class SendLink {
 public:
  virtual ~SendLink() = default;
  virtual int peer() const = 0;
  virtual const LinkSpec& spec() const = 0;
  // Next slot to fill, or nullptr when every slot is still held by the receiver. Never blocks.
  // Several slots may be acquired before posting; they must be posted in acquire order.
  virtual Slot* try_acquire() = 0;
  // Blocks until a credit comes back; throws Error naming the peer after spec().timeout_s.
  virtual Slot& acquire() = 0;
  // Sends the oldest acquired slot: header (64 + 16 x rows bytes) and header->payload_bytes of
  // payload. Returns at once. The slot is the transport's until the receiver releases it.
  // Throws Error if rows or payload_bytes exceed the slot's capacity.
  virtual void post(Slot& slot) = 0;
  // Drives progress without blocking; returns the number of free credits now.
  virtual int poll() = 0;
  // Blocks until every posted message has been released by the receiver.
  virtual void drain() = 0;
  // Messages posted and not yet released by the receiver (0 .. slots).
  virtual int in_flight() const = 0;
  virtual const LinkStats& stats() const = 0;
  // post() ordered after the work enqueued on `stream` (a gpuStream_t; nullptr: the link's own
  // stream, so the payload must be complete when called): the payload copy and its completion
  // flag are enqueued on `stream`; returns at once. The slot's payload may be rewritten only by
  // work ordered after this call's (same stream) once the slot is acquired again. Host links:
  // same as post().
  virtual void post_on(Slot& slot, void* stream) { post(slot); }
};

class RecvLink {
 public:
  virtual ~RecvLink() = default;
  virtual int peer() const = 0;
  virtual const LinkSpec& spec() const = 0;
  // The next message in post order if it has fully arrived, else nullptr. Never blocks.
  // Returns nullptr too while all slots are held (received, not released).
  virtual const Slot* try_receive() = 0;
  // Blocks for the next message; throws Error naming the peer after spec().timeout_s.
  virtual const Slot& receive() = 0;
  // Gives the slot back (one credit to the sender). Slots are released in receive order: the
  // argument must be the oldest received, unreleased slot.
  virtual void release(const Slot& slot) = 0;
  // Messages received and not yet released (0 .. slots).
  virtual int held() const = 0;
  virtual const LinkStats& stats() const = 0;
  // try_receive() that returns as soon as the header and rows are here: the payload is
  // guaranteed only to work enqueued on `stream` (a gpuStream_t) after this call, the link having
  // enqueued a device-side wait for it there. Host links: same as try_receive().
  virtual const Slot* try_receive_on(void* stream) { return try_receive(); }
  // Blocking form of try_receive_on (same timeout as receive()).
  virtual const Slot& receive_on(void* stream) { return receive(); }
  // release() for a payload still being read by work on `stream`: the sender may overwrite it
  // only after the work enqueued on `stream` so far has finished (the credit is enqueued there).
  // The header and rows may be reused by the sender at once. Host links: same as release().
  virtual void release_on(const Slot& slot, void* stream) { release(slot); }
};

}  // namespace gptoss::comm

// ---- rings ----
namespace gptoss::comm {

// This rank's two links in the ring 0 -> 1 -> ... -> N-1 -> 0. With one rank, next() and prev()
// are the two ends of a loopback (loopback_transport.h): the same calls, the same credits and
// errors, but receive() returns the very slot that was posted (no copy, no device work).
class Ring {
 public:
  virtual ~Ring() = default;
  virtual SendLink& next() = 0;  // to (rank + 1) mod N
  virtual RecvLink& prev() = 0;  // from (rank - 1) mod N
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // e.g. "mpi (host-staged) 2->3, 4 slots x 64 rows x 737280 payload bytes, channel 0", or for
  // one rank "local (one rank), 4 slots x ..."
  virtual std::string describe() const = 0;
};

// Opens the ring for HOST payloads (spec.payload_memory Host; the payload slots are plain host
// memory) over comm (usually MPI_COMM_WORLD). COLLECTIVE: every rank of comm calls it with the
// same spec; a rank whose spec differs makes every rank throw WorldError naming it. The ring works
// on its own duplicate of comm, so its messages never mix with the program's.
//  - one rank: the loopback ("local (one rank)"): no MPI call after open, no copy;
//  - otherwise every link is MPI ("mpi (host-staged) r->r+1").
// The device-only fields of spec (device, allow_ipc, copy_blocks) are ignored. Device payloads:
// open_gpu_ring (comm/ipc_transport.h, GPU builds).
std::unique_ptr<Ring> open_ring(MPI_Comm comm, const LinkSpec& spec);

}  // namespace gptoss::comm
