// test_shape.cpp: the automatic shape (src/run/shape.h) for the real model shapes on the cards we
// name in docs: 20b on 64 GB MI250 GCDs runs as rings of one, 120b as rings of two; -b and -c
// move the choice; R always divides N; the CPU keeps one ring.
#include <gtest/gtest.h>

#include "model/config.h"
#include "run/shape.h"

namespace gptoss {
namespace {

constexpr uint64_t kGiB = 1ull << 30;

ShapeInput input(const char* model, int ranks, uint64_t free_gib, Mode mode = Mode::Getp,
                 int batch = 0, int ctx = 4096) {
  RunOptions opt;
  opt.mode = mode;
  opt.ctx = ctx;
  if (batch > 0) {
    opt.max_slots = batch;
    opt.batch_given = true;
  }
  ShapeInput in = shape_input(named_config(model), opt);
  in.ranks = ranks;
  in.gpu = true;
  in.free_bytes = free_gib * kGiB;
  return in;
}

TEST(Shape, WeightBytesAreTheCheckpointSizes) {
  // The published checkpoints: 20b 13.8 GB, 120b 65.3 GB (MXFP4 experts, bf16 elsewhere).
  const ShapeInput a = input("20b", 1, 64), b = input("120b", 1, 64);
  EXPECT_NEAR(static_cast<double>(a.layer_bytes + a.ends_bytes), 13.8e9, 0.4e9);
  EXPECT_NEAR(static_cast<double>(b.layer_bytes + b.ends_bytes), 65.3e9, 1.0e9);
  // Embedding + unembedding: 2 x 201088 x 2880 bf16 (+ the norm).
  EXPECT_NEAR(static_cast<double>(a.ends_bytes), 2.0 * 201088 * 2880 * 2, 1e4);
  // KV cache per sequence at 4096 positions, bf16: 20b's 12 full layers hold 4096 positions and
  // its 12 sliding ones window + 512; 8 KV heads x 64.
  EXPECT_EQ(a.kv_slot_bytes, 12ull * 2 * 4096 * 512 * 2 + 12ull * 2 * (128 + 512) * 512 * 2);
  EXPECT_EQ(a.slots, kAutoShapeSlots);
}

TEST(Shape, TwentyBOnGcdsRunsAsReplicas) {
  for (int n : {2, 4, 8}) {
    const ShapePlan p = plan_shape(input("20b", n, 63));
    EXPECT_EQ(p.dp, n) << p.why;
    EXPECT_NE(p.why.find("auto: one GPU holds the weights + KV cache of 64 sequences at -c 4096"),
              std::string::npos) << p.why;
  }
}

TEST(Shape, OneTwentyBNeedsRingsOfTwoGcds) {
  const ShapePlan p = plan_shape(input("120b", 8, 63));
  EXPECT_EQ(p.dp, 4) << p.why;
  EXPECT_NE(p.why.find("auto: 2 GPUs are the fewest that hold"), std::string::npos) << p.why;
  // 6 ranks: rings of 2 divide it; 3 ranks: they do not, so one ring of 3.
  EXPECT_EQ(plan_shape(input("120b", 6, 63)).dp, 3);
  EXPECT_EQ(plan_shape(input("120b", 3, 63)).dp, 1);
  // An 80 GB card holds 120b alone at 64 sequences, but not at 256 of 4096 positions.
  EXPECT_EQ(plan_shape(input("120b", 8, 79)).dp, 8);
  EXPECT_EQ(plan_shape(input("120b", 8, 79, Mode::Getp, 256)).dp, 4);
  // The same 256 sequences at -c 1024 fit one card again.
  EXPECT_EQ(plan_shape(input("120b", 8, 79, Mode::Getp, 256, 1024)).dp, 8);
}

TEST(Shape, BytesShrinkWithTheRingAndNothingFitsIsOneRing) {
  const ShapeInput in = input("120b", 8, 16);
  for (int p = 1; p < 8; ++p)
    EXPECT_GT(shape_bytes_per_rank(in, p), shape_bytes_per_rank(in, p + 1));
  // 16 GiB per GPU: only all 8 together hold it.
  const ShapePlan all = plan_shape(in);
  EXPECT_EQ(all.dp, 1);
  EXPECT_NE(all.why.find("auto: 8 GPUs are the fewest that hold"), std::string::npos) << all.why;
  const ShapePlan plan = plan_shape(input("120b", 8, 8));
  EXPECT_EQ(plan.dp, 1);
  EXPECT_NE(plan.why.find("auto: even 8 GPUs need"), std::string::npos) << plan.why;
}

TEST(Shape, CpuAndOneRankKeepOneRingServeLikeGetp) {
  ShapeInput cpu = input("20b", 4, 0);
  cpu.gpu = false;
  EXPECT_EQ(plan_shape(cpu).dp, 1);
  EXPECT_NE(plan_shape(cpu).why.find("CPU backend"), std::string::npos);
  // The server holds 64 sequences per ring without -b, as getp.
  EXPECT_EQ(plan_shape(input("20b", 8, 63, Mode::Serve)).dp, 8);
  EXPECT_EQ(plan_shape(input("120b", 8, 63, Mode::Serve)).dp, 4);
  EXPECT_EQ(plan_shape(input("20b", 1, 63)).dp, 1);
  // chat and generate hold one sequence: 120b fits an 80 GB card alone.
  EXPECT_EQ(plan_shape(input("120b", 4, 79, Mode::Chat)).dp, 4);
}

}  // namespace
}  // namespace gptoss
