// engine.h: the Engine drives one backend that holds the whole model (all layers and the ends)
// step by step on the calling thread: the form the tests and tools use (check-top1, bench-engine,
// the golden and parity tests, the scheduler's run_step). The modes of `run` drive backends
// through the ring pipeline instead (src/pipeline: one process is a ring of one); both go
// through the same Backend calls and the same SequenceCheck.
//
// Contract of forward(): rows follow backend.h's Row rules (checked before any state changes:
// after an Error the engine is unchanged and usable); rows with kLogits get a logits vector
// [vocab] (fp32), in row order. A row's logits do not depend on the other rows of its step on the
// CPU (bit for bit); on the GPU within the bound docs/gpu.md states ("Batch invariance").
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "backend/sequence_check.h"

namespace gptoss {

class Engine {
 public:
  // b must hold every layer and the ends (Error otherwise).
  explicit Engine(std::unique_ptr<Backend> b);
  const Config& config() const { return b_->config(); }
  int ctx() const { return b_->ctx(); }
  int max_slots() const { return b_->max_slots(); }
  size_t kv_cache_bytes() const { return b_->kv_cache_bytes(); }
  Backend& backend() { return *b_; }

  // One step. logits is resized to [rows with kLogits, vocab].
  void forward(std::span<const Row> rows, std::vector<float>& logits);
  // One step that returns, instead of logits, the token chosen for each kLogits row i with
  // picks[i] (picks.size() must equal the number of kLogits rows): the same tokens as forward()
  // followed by Sampler::pick, chosen on the device where the backend can.
  void forward_pick(std::span<const Row> rows, std::span<const TokenPick> picks,
                    std::vector<int32_t>& tokens);
  bool picks_on_device() const { return b_->picks_on_device(); }

 private:
  // Checks rows, then runs them in passes of <= max_rows_per_pass() rows, <= max_seq_rows_per_pass()
  // of one slot (pass_end); after each pass calls
  // done(logit rows of the pass (indices into the pass), logit rows before the pass).
  template <class Done>
  void run_passes(std::span<const Row> rows, Done&& done);

  std::unique_ptr<Backend> b_;
  SequenceCheck check_;
  std::vector<int32_t> tokens_, logit_rows_, picked_;
  std::vector<RowPos> pos_;
};

// The CPU backend for the whole model, as an Engine (tests).
std::unique_ptr<Engine> make_cpu_engine(const ModelFile& model, const BackendOptions& opt);
std::unique_ptr<Engine> make_cpu_engine(const ModelWeights& w, const BackendOptions& opt);

}  // namespace gptoss
