// stage.h: what one pipeline stage computes, behind one small interface so the ring code does not
// care which backend runs it: embed (token ids -> residual stream, rank 0 only), run_layers (this
// rank's contiguous block of layers on a micro-batch, in place, using and updating only those
// layers' KV cache) and head (final norm + LM head -> logits, rank 0 only).
//
// Implemented by the CPU backend now (make_cpu_stage over CpuModel). The GPU stage (a later issue)
// implements the same three calls on device buffers: x then points at a device payload slot
// (Slot::payload_memory == Device) and payload_memory() says so, so the ring is opened with device
// slots; nothing else in src/pipeline changes.
#pragma once
#include <cstdint>
#include <memory>
#include <span>

#include "comm/transport.h"
#include "engine/cpu_model.h"
#include "model/config.h"

namespace gptoss {

class Stage {
 public:
  virtual ~Stage() = default;
  virtual const Config& config() const = 0;
  virtual int first_layer() const = 0;  // this stage's layers are [first_layer, last_layer)
  virtual int last_layer() const = 0;
  virtual size_t kv_cache_bytes() const = 0;
  // Where run_layers/embed/head expect x: host memory for the CPU backend.
  virtual comm::MemoryKind payload_memory() const { return comm::MemoryKind::Host; }
  // x[n, :] = embedding of tokens[n]. x: [rows, hidden] fp32.
  virtual void embed(std::span<const int32_t> tokens, float* x) = 0;
  // Layers [first_layer, last_layer) on x [rows, hidden] fp32, in place. Rows of one slot come in
  // increasing consecutive positions, continuing what earlier micro-batches stored.
  virtual void run_layers(std::span<const RowPos> rows, float* x) = 0;
  // logits[i, :] = LM head of final-norm(x[i]). x: [rows, hidden], logits: [rows, vocab].
  virtual void head(const float* x, int rows, float* logits) = 0;
};

// The CPU stage: a CpuModel owning the KV cache of layers [first, last) only. w's pointers must
// outlive the stage. Throws Error on bad options (e.g. a KV cache that does not fit in memory).
std::unique_ptr<Stage> make_cpu_stage(const ModelWeights& w, int ctx, int max_slots, int first,
                                      int last);

}  // namespace gptoss
