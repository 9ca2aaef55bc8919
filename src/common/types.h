// types.h: small plain types that every layer shares (kernels/, comm/, src/). The base layer
// (src/common) includes nothing above it; everything may include it.
#pragma once
#include <cstdint>

namespace gptoss {

// How to choose the next token from one row of logits, so a backend can choose on its own device
// exactly as the host sampler would: the sampler's parameters plus the uniform draw u in [0, 1)
// that Sampler::sample would use for this token (Sampler::next_pick). temperature 0 or top_k 1 is
// greedy (u unused). The algorithm is Sampler::pick (src/backend/sampler.cpp). 24 bytes, no
// padding surprises: the GPU copies an array of these as is.
struct TokenPick {
  float temperature = 0.0f;
  int32_t top_k = 0;     // 0 = off
  float top_p = 1.0f;    // 1 = off
  int32_t reserved = 0;  // 0
  double u = 0.0;
};
static_assert(sizeof(TokenPick) == 24);

// Where one row of a micro-batch sits: its KV-cache slot and position, and, when the KV cache is
// paged (src/sched/kv_blocks.h), the block of the pool that holds this position in the layers
// that keep every position (full attention); -1 when it is not paged.
struct RowPos {
  int32_t slot = 0;
  int32_t pos = 0;
  int32_t block = -1;
};

// Where a buffer lives: host memory, or the memory of the rank's GPU.
enum class MemoryKind : uint8_t { Host = 0, Device = 1 };

}  // namespace gptoss
