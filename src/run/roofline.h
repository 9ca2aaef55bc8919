// roofline.h: the bytes and flops of what `run -m bench` times, from the model's shape (the tensor
// schema), and the most tok/s a device with a given read bandwidth and matrix peak could reach on
// it, so every figure reads as a fraction of what is possible (docs/performance.md).
//   weights: a layer's dense part (attention, router, norms: bf16) is read once per step; of its
//            experts (MXFP4 blocks + scales + biases) those the step's rows touch, E (1 - (1 -
//            k/E)^rows) with uniform routing; the LM head once per step that needs logits.
//   KV cache: a decode row reads its keys and values (sliding layers: the window).
//   flops: 2 per weight used per row (the k routed experts of a row), attention 4 x q_dim per
//          key per layer, the LM head for rows that need logits.
// Pure; unit-tested in tests/run/test_roofline.cpp (20b batch-1 decode: the 3.70 GB per token of
// docs/performance.md).
#pragma once
#include "model/config.h"

namespace gptoss {

struct Work {
  double bytes = 0, flops = 0;
};

// One decode step of `batch` sequences, each holding `pos` tokens.
Work decode_step(const Config& c, int batch, double pos, int kv_elem_bytes);
// `batch` prompts of `tokens` tokens each, prefilled in steps of `step_rows` rows, each prompt's
// last row through the LM head.
Work prefill(const Config& c, int batch, int tokens, int step_rows);

struct Peak {
  double gbs = 0;     // read bandwidth, GB/s (0 = unknown)
  double tflops = 0;  // matrix peak, TFLOP/s (0 = unknown)
};
// tokens / max(bytes / bandwidth, flops / peak) over whichever is known; 0 if neither.
double limit_tok_s(const Work& w, double tokens, const Peak& p);

}  // namespace gptoss
