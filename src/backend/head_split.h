// head_split.h: the vocab-parallel LM head (the pipeline's head split, docs/pipeline.md). Each rank
// of a ring computes the logits of one contiguous slice of the vocabulary (ascending ids by rank)
// and merges its best candidates into one HeadRow per row; rank 0 then chooses from the merged
// candidates exactly the token Sampler::pick would choose from the whole row of logits:
//   greedy (temperature 0 or top_k 1): k = 1, the slices' arg-max merged in id order with the
//     arg-max's rule (first id of the largest logit, NaN never wins, all NaN -> id 0);
//   top-k with 2 <= top_k <= kHeadSplitMaxK (and < vocab): the slices' top-k lists (logit desc,
//     ties lower id first) merged into the top k of the whole row, then Sampler::pick_sorted,
//     the very arithmetic of Sampler::pick on those candidates. A slice holding a NaN or an
//     infinity marks the row (kHeadRowNonFinite) and rank 0 computes it from the whole head.
// Rows whose choice needs the whole distribution (top_p < 1 or plain temperature sampling without
// top-k, or top_k > kHeadSplitMaxK) are not split: rank 0, which keeps the whole LM head, chooses
// them itself (head_split_k() == 0).
//
// The second lap's payload (one message per micro-batch, rows = the split rows, n of them):
//   HeadRow [n] | x fp32 [n, hidden] (the last layer's output of those rows, before the final norm)
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/head_row.h"  // HeadRow, HeadCand, kHeadSplitMaxK, kHeadRowNonFinite
#include "common/types.h"

namespace gptoss {

// Candidates a split row needs: 1 for greedy, top_k for top-k rows the split can choose exactly,
// 0 for rows rank 0 must choose from the whole head.
int head_split_k(const TokenPick& p, int vocab);

// Second-lap payload layout for n rows.
inline size_t head_payload_bytes(size_t n, size_t hidden) {
  return n * (sizeof(HeadRow) + hidden * sizeof(float));
}
inline HeadRow* head_rows(void* payload) { return static_cast<HeadRow*>(payload); }
inline const HeadRow* head_rows(const void* payload) { return static_cast<const HeadRow*>(payload); }
inline float* head_x(void* payload, size_t n) {
  return reinterpret_cast<float*>(static_cast<char*>(payload) + n * sizeof(HeadRow));
}
inline const float* head_x(const void* payload, size_t n) {
  return reinterpret_cast<const float*>(static_cast<const char*>(payload) + n * sizeof(HeadRow));
}

// A fresh row wanting k candidates.
HeadRow head_row_init(int k);

// Merges the logits of ids [v0, v0 + n) (logits[j] is id v0 + j) into row. Slices must be merged
// in ascending id order (the greedy rule depends on it). scratch: reused between calls.
void head_row_merge(HeadRow& row, const float* logits, int v0, int n, std::vector<int32_t>& scratch);

// The token Sampler::pick would choose from the whole row, from the merged candidates, or -1 when
// the row must be chosen from the whole head (a top-k row with a non-finite logit, or a row that
// did not get k candidates: a vocabulary smaller than k).
int32_t head_row_pick(const HeadRow& row, const TokenPick& p);

}  // namespace gptoss
