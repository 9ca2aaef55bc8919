// sampler.h: token sampling on rank 0: greedy at temperature 0, else temperature, top-k, top-p,
// seeded and reproducible (the same seed and logits give the same tokens on any machine).
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/types.h"

namespace gptoss {

struct SamplerParams {
  float temperature = 0.0f;  // 0 = greedy (argmax, lowest id wins ties)
  int top_k = 0;             // 0 = off
  float top_p = 1.0f;        // 1 = off
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams& p);
  // logits: [vocab] fp32, not modified. Equals pick(logits, vocab, next_pick()).
  int32_t sample(const float* logits, int vocab);
  // This token's parameters and uniform draw: advances the stream exactly as sample() would
  // (one draw unless greedy), so host and device choices stay in step.
  TokenPick next_pick();
  // The sampling algorithm (sampler.cpp's comment) with the draw given: what every engine's
  // forward_pick must reproduce.
  static int32_t pick(const float* logits, int vocab, const TokenPick& p);
  // Steps 2-4 of that algorithm (sampling, not greedy) on candidates already chosen and ordered
  // (vals[i] the logit of id ids[i]): pick() ends here, and so does the pipeline's head split
  // (backend/head_split.h), whose merged top-k candidates are the very list pick() would build.
  static int32_t pick_sorted(const float* vals, const int32_t* ids, size_t n, const TokenPick& p);
  // Greedy: the first id with the largest logit; NaN never wins over a number.
  static int32_t argmax(const float* logits, int vocab);
  const SamplerParams& params() const { return p_; }

 private:
  SamplerParams p_;
  uint64_t rng_state_;
};

}  // namespace gptoss
