// engine.h: what the modes (generate, chat, getp, bench) see of the model: a batched forward
// step over rows of many sequences, each row one token of one sequence at its own position.
//
// Contract:
//   - A sequence lives in a KV-cache slot in [0, max_slots). The first row of a new sequence has
//     pos 0; its rows in later steps continue at increasing positions. A slot is reused for a new
//     sequence by sending a row with pos 0 again (that row has Row::kNewSeq set).
//   - Rows of one step may mix prompt chunks (several consecutive positions of one slot, in
//     order) and single decode tokens of other slots.
//   - Output does not depend on batch composition: a row gets bit-identical logits whatever
//     other rows share its step.
//   - Rows with kLogits set get a logits vector [vocab] (fp32), in row order.
//   - forward() checks every row before touching any state and throws Error (one line naming the
//     row, slot and what is wrong) for: slot outside [0, max_slots), pos outside [0, ctx), token
//     outside [0, vocab), kNewSeq with pos != 0, a pos that neither is 0 (restart) nor continues the
//     slot's sequence (next position = last position + 1), or a restart after other rows of the
//     same slot in the same step. After an Error the engine is unchanged and usable.
//   - CPU engine: KV cache in fp32; kv_cache_bytes() = sum over layers of 2 * 4 * max_slots *
//     cap * kv_heads * head_dim, cap = min(sliding_window, ctx) on sliding layers, ctx on full
//     ones. make_cpu_engine throws Error for ctx < 1, ctx > config.max_context, max_slots < 1,
//     threads < 0; threads > 0 sets the OpenMP thread count (omp_set_num_threads).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/types.h"
#include "model/config.h"

namespace gptoss {

class ModelFile;

struct Row {
  enum : uint32_t { kNewSeq = 1u, kLogits = 2u };
  int32_t token = 0;
  int32_t slot = 0;
  int32_t pos = 0;
  uint32_t flags = 0;
};

struct EngineOptions {
  int ctx = 4096;        // max positions per sequence (-c); <= config.max_context
  int max_slots = 1;     // concurrent sequences (-b); GPU engine: 0 = as many as free memory holds
                         // at ctx (at most 256); max_slots() then says how many
  int threads = 0;       // CPU threads (-t); 0 = OpenMP default
  std::string backend = "cpu";  // "cpu" | "gpu"
  // KV-cache element type: "" = the backend's default (CPU: f32, its only choice; GPU: bf16),
  // "bf16" or "f32" (--kv-cache).
  std::string kv_cache;
  int device = 0;  // GPU engine: index of the device to use among those visible
  // GPU engine with max_slots 0: at most this many slots (256 decoding sequences fill a 512-row
  // device step together with 256 prompt rows; a ring of M micro-batches takes 256 x M).
  int max_auto_slots = 256;
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const Config& config() const = 0;
  virtual int ctx() const = 0;
  virtual int max_slots() const = 0;
  // Bytes the KV cache takes (printed at start by the modes).
  virtual size_t kv_cache_bytes() const = 0;
  // One forward step. logits is resized to [rows with kLogits, vocab].
  virtual void forward(std::span<const Row> rows, std::vector<float>& logits) = 0;
  // One forward step that returns, instead of logits, the token chosen for each kLogits row i
  // with picks[i] (picks.size() must equal the number of kLogits rows). Same result as forward()
  // followed by Sampler::pick on each row. The default does exactly that on the host; the GPU
  // engine chooses on the device and copies back only the tokens.
  virtual void forward_pick(std::span<const Row> rows, std::span<const TokenPick> picks,
                            std::vector<int32_t>& tokens);
  // True when forward_pick() is cheaper than forward() + a host pick (the logits stay on the
  // device). The scheduler then asks its choosers for TokenPicks.
  virtual bool picks_on_device() const { return false; }
};

// The CPU engine (OpenMP, fp32 arithmetic over bf16 / MXFP4 weights). model must outlive it.
std::unique_ptr<Engine> make_cpu_engine(const ModelFile& model, const EngineOptions& opt);

}  // namespace gptoss
