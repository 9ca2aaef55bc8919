// sampler.h: token sampling on rank 0: greedy at temperature 0, else temperature, top-k, top-p,
// seeded and reproducible (the same seed and logits give the same tokens on any machine).
#pragma once
#include <cstdint>

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
  // logits: [vocab] fp32, not modified.
  int32_t sample(const float* logits, int vocab);
  const SamplerParams& params() const { return p_; }

 private:
  SamplerParams p_;
  uint64_t rng_state_;
};

}  // namespace gptoss
