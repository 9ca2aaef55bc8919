// layer_split.h: which contiguous block of layers each rank of the ring owns.
//
// Cost model (docs/pipeline.md, "Layer split"): the time of a stage on one micro-batch is taken as
// proportional to bytes it reads + flops / kFlopsPerByte (a roofline with the balance point of a
// CPU socket or a GPU: ~10 flops per byte of memory traffic), for a micro-batch of `rows` decode
// rows, each needing logits:
//   layer: bf16 attention weights (qkv, out) + router, plus the MXFP4 experts the rows touch
//          (E * (1 - (1 - k/E)^rows) distinct experts with uniform routing); flops 2 x weights
//          used per row. Attention over the KV cache is left out (it depends on the positions).
//   head:  the LM head's bf16 [vocab, hidden] matrix + 2 x vocab x hidden flops per row;
//   embed: one bf16 row per token (negligible).
// Rank 0 runs embed + its layers + head; the others their layers. All layers cost the same, so
// the split minimises the largest stage cost: rank 0 gets n0 layers, the others share the rest
// as evenly as possible (the extra layers go to the last ranks). At gpt-oss-20b batch 1 the head
// costs ~10 layers, so with 4 ranks rank 0 gets 1 layer (split 1,7,8,8); at 8 rows per
// micro-batch ~4 layers (split 3,7,7,7).
#pragma once
#include <string>
#include <vector>

#include "model/config.h"

namespace gptoss {

inline constexpr double kFlopsPerByte = 10.0;

// Cost units: bytes-equivalent, for one micro-batch of `rows` rows.
double layer_cost(const Config& c, double rows);
double head_cost(const Config& c, double rows);   // final norm + LM head, every row needs logits
double embed_cost(const Config& c, double rows);

// Layers per rank (size ranks, each >= 1, sum n_layers) minimising the largest stage cost of a
// micro-batch of `rows` rows through the layers, `logit_rows` of which (default: all) go
// through rank 0's LM head. Throws Error when n_layers < ranks.
std::vector<int> balanced_split(const Config& c, int ranks, double rows, double logit_rows = -1);

// The rows the split is costed at for micro-batches of up to `decode_rows` decode rows and
// `prompt_tokens` prompt tokens: one row (generate, chat) is all decode; a batch is assumed to
// prefill as many prompt tokens as it generates (the 1k-in / 1k-out shape of offline throughput
// runs), so rows = 2 x decode rows (at most decode + prompt_tokens), logit rows = decode rows.
// (On 2 x H100, 20b getp with 145-token prompts and 128 new tokens measured rank 0's LM head at
// 2.2 layers of device time; this model says 2.2 at that mix. docs/pipeline.md.)
struct SplitRows {
  double rows, logit_rows;
};
SplitRows split_rows(int decode_rows, int prompt_tokens);

// The LM head split over the ranks (vocab-parallel, backend/head_split.h): `layers` (or, when
// empty, whole layers as evenly as they go, the extra ones on the last ranks) and for each rank a
// contiguous slice of the vocabulary, in rank order, sized so that the LM head's cost fills the
// stages below the fullest one (water-filling the cost model's stage costs; rank 0 also pays the
// embedding). Slice bounds are multiples of 64 ids (the last bound is vocab); a slice may be empty.
struct HeadSplitPlan {
  std::vector<int> layers;        // per rank
  std::vector<int> vocab_bounds;  // ranks + 1: rank r holds ids [vocab_bounds[r], vocab_bounds[r+1])
};
HeadSplitPlan head_split_plan(const Config& c, int ranks, double rows, double logit_rows,
                              const std::vector<int>& layers = {});

// The cost model's bound on a ring's parallel efficiency, total cost / (ranks x the largest
// stage), for a split with rank 0 holding the whole head (whole_head_efficiency) or with the head
// split as `plan` says.
double whole_head_efficiency(const Config& c, const std::vector<int>& layers, double rows,
                             double logit_rows);
double head_split_efficiency(const Config& c, const HeadSplitPlan& plan, double rows,
                             double logit_rows);

// "4,7,7,6" -> {4,7,7,6}; checks: one block per rank, each >= 1, adding up to n_layers. Throws
// Error with a one-line message naming --layers.
std::vector<int> parse_layer_split(const std::string& text, int n_layers, int ranks);

// "0-1 | 1-4" style description: "rank 0: layers [0, 1) + embedding + LM head; rank 1: [1, 4)".
std::string describe_split(const std::vector<int>& layers);

}  // namespace gptoss
