// test_roofline.cpp: the bytes and flops behind `run -m bench`'s limits (src/run/roofline.h),
// against figures worked out by hand from the published shapes.
#include <gtest/gtest.h>

#include "model/config.h"
#include "run/roofline.h"

namespace gptoss {
namespace {

TEST(Roofline, TwentyBDecodeReadsItsActiveWeights) {
  const Config c = named_config("20b");
  // Batch 1 at position 0: 24 layers x (53 MB of bf16 attention + router, 4 experts of 13.2 MB)
  // + the 1.16 GB LM head = 3.70 GB per token (docs/performance.md).
  const Work w = decode_step(c, 1, 0, 2);
  EXPECT_NEAR(w.bytes / 1e9, 3.70, 0.03);
  // Flops per token: 2 x (24 x (26.6 M dense + 4 x 24.9 M expert) + 579 M head) = 7.2 GFLOP.
  EXPECT_NEAR(w.flops / 1e9, 7.2, 0.2);
  // Batch 512: every expert is touched (32 x 13.2 MB x 24 = 10.2 GB) and the weights are read
  // once for all rows; flops scale with the rows.
  const Work b = decode_step(c, 512, 0, 2);
  EXPECT_NEAR(b.bytes / 1e9, 1.28 + 10.15 + 1.16, 0.1);
  EXPECT_NEAR(b.flops / w.flops, 512.0, 1e-9);
}

TEST(Roofline, KvReadsGrowWithPositionUntilTheWindow) {
  const Config c = named_config("20b");
  const double base = decode_step(c, 1, 0, 2).bytes;
  // Position 1000: 12 full layers read 1000 keys, 12 sliding ones 128; K and V, 512 wide, bf16.
  const double kv = (12 * 1000.0 + 12 * 128.0) * 2 * 512 * 2;
  EXPECT_NEAR(decode_step(c, 1, 1000, 2).bytes - base, kv, 1.0);
  EXPECT_NEAR(decode_step(c, 8, 1000, 2).bytes - decode_step(c, 8, 0, 2).bytes, 8 * kv, 8.0);
}

TEST(Roofline, PrefillIsComputeBoundAndLimitsTakeTheSlowerSide) {
  const Config c = named_config("20b");
  // 64 prompts of 1024 tokens in 512-row steps.
  const Work w = prefill(c, 64, 1024, 512);
  const Peak h200{4800, 989};  // HBM3e and dense bf16 of an H200
  const double lim = limit_tok_s(w, 64.0 * 1024, h200);
  EXPECT_NEAR(lim, 64.0 * 1024 / (w.flops / 989e12), 1e-6 * lim);  // flops, not bytes, bind
  EXPECT_GT(lim, 40000);  // the prefill goal fits under the roof
  // Batch-1 decode binds on bytes: 4800 GB/s / 3.70 GB = ~1297 tok/s.
  const Work d = decode_step(c, 1, 0, 2);
  EXPECT_NEAR(limit_tok_s(d, 1, h200), 4800e9 / d.bytes, 1e-6);
  EXPECT_EQ(limit_tok_s(d, 1, Peak{}), 0);
  EXPECT_NEAR(limit_tok_s(d, 1, Peak{0, 989}), 989e12 / d.flops, 1e-6);
}

}  // namespace
}  // namespace gptoss
