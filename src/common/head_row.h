// head_row.h: one row's candidates in the vocab-parallel LM head (the pipeline's head split; the
// rules are in src/backend/head_split.h). A plain type here, in the base layer, because the host
// (head_row_merge) and the GPU kernels (kernels/gpu/head_slice.h) both read and write it, as the
// same bytes in a payload.
#pragma once
#include <cstddef>
#include <cstdint>

namespace gptoss {

inline constexpr int kHeadSplitMaxK = 64;

struct HeadCand {
  float value;
  int32_t id;
};

enum : uint32_t { kHeadRowNonFinite = 1u };

struct HeadRow {
  int32_t k;        // candidates wanted: 1 (greedy) or the row's top_k
  int32_t count;    // candidates merged so far (<= k)
  uint32_t flags;   // kHeadRowNonFinite
  int32_t reserved;
  HeadCand cand[kHeadSplitMaxK];  // [count], logit desc, ties lower id first (k = 1: the arg-max)
};
static_assert(sizeof(HeadRow) == 16 + 8 * kHeadSplitMaxK);
static_assert(offsetof(HeadRow, k) == 0 && offsetof(HeadRow, cand) == 16);

}  // namespace gptoss
