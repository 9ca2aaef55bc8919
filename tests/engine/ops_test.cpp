// ops_test.cpp: each CPU op (kernels/cpu/ops.h) against small hand-checked cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "common/bf16.h"
#include "cpu/ops.h"

namespace gptoss::cpu {
namespace {

// GPTOSS_NO_AVX512=1 (the engine_avx2_mxfp4_path test sets it) runs these tests, and the engine
// tests linked with them, on the AVX2 MXFP4 path of a CPU that has AVX-512.
const bool kAvx2Only = [] {
  const char* v = std::getenv("GPTOSS_NO_AVX512");
  if (v && v[0] == '1') set_avx512(false);
  return true;
}();

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// ------------------------------------------------------------------------------------ MXFP4
TEST(MXFP4, ScalesAreExactPowersOfTwo) {
  EXPECT_EQ(e8m0_to_f32(127), 1.0f);
  EXPECT_EQ(e8m0_to_f32(128), 2.0f);
  EXPECT_EQ(e8m0_to_f32(126), 0.5f);
  EXPECT_EQ(e8m0_to_f32(254), 0x1.0p127f);
  EXPECT_EQ(e8m0_to_f32(0), 0x1.0p-127f);  // a subnormal, still exact
}

TEST(MXFP4, DecodeNibbleOrderLutAndScale) {
  // Block 0: byte b = low nibble b, high nibble 15 - b -> element 2b = LUT[b], 2b+1 = LUT[15-b].
  // Block 1: every byte 0x7f (elements: 6, -6 alternating), scale 125 (x 1/4) -> 1.5, -1.5.
  const float lut[16] = {0, .5, 1, 1.5, 2, 3, 4, 6, -0.0f, -.5, -1, -1.5, -2, -3, -4, -6};
  uint8_t blocks[32];
  for (int b = 0; b < 16; ++b) blocks[b] = static_cast<uint8_t>(b | ((15 - b) << 4));
  for (int b = 16; b < 32; ++b) blocks[b] = 0x7f;
  const uint8_t scales[2] = {128, 125};
  float out[64];
  mxfp4_decode_row(blocks, scales, 64, out);
  for (int b = 0; b < 16; ++b) {
    EXPECT_EQ(out[2 * b], 2.0f * lut[b]) << "element " << 2 * b;
    EXPECT_EQ(out[2 * b + 1], 2.0f * lut[15 - b]) << "element " << 2 * b + 1;
  }
  // Spot values written out by hand: byte 0 = 0xf0 -> 0 and -6*2; byte 7 = 0x87 -> 6*2, -0.
  EXPECT_EQ(out[1], -12.0f);
  EXPECT_EQ(out[14], 12.0f);
  EXPECT_TRUE(std::signbit(out[15]) && out[15] == 0.0f);  // code 8 = -0
  EXPECT_TRUE(std::signbit(out[16]) && out[16] == 0.0f);  // byte 8 = 0x78: -0, then 6*2
  EXPECT_EQ(out[17], 12.0f);
  for (int i = 32; i < 64; i += 2) {
    EXPECT_EQ(out[i], -1.5f);  // low nibble 0xf = -6, x 1/4
    EXPECT_EQ(out[i + 1], 1.5f);  // high nibble 0x7 = 6, x 1/4
  }
  for (int c = 0; c < 16; ++c) EXPECT_EQ(bits(mxfp4_lut(c)), bits(lut[c]));
}

// ------------------------------------------------------------------------------------ RoPE
TEST(RoPE, YarnTableMatchesHandComputedValues) {
  // gpt-oss: d 64, theta 150000, factor 32, original context 4096, beta_fast 32, beta_slow 1.
  // low = 32 ln(4096 / (64 pi)) / ln(150000) = 8.0928, high = 32 ln(4096 / (2 pi)) / ln(150000)
  // = 17.398. Values below worked from the spec formula (i = 1: 150000^(-1/32) = 0.68904, ramp 0;
  // i = 12: ramp 0.41989, 0.41989 / (32 * 87.30) + 0.58011 / 87.30 = 0.0067950).
  RopeTable t = rope_yarn_table(64, 150000, 32, 4096, 32, 1);
  ASSERT_EQ(t.inv_freq.size(), 32u);
  const struct { int i; double v; } want[] = {
      {0, 1.0},           {1, 0.6890443058881633},     {8, 0.050813274815461475},
      {9, 0.03170569618466377}, {12, 0.006794959489732219}, {17, 0.00012931870124506317},
      {18, 3.8308812373753384e-05}, {31, 3.0235114281192144e-07}};
  for (auto w : want) EXPECT_NEAR(t.inv_freq[w.i], w.v, 2e-7 * w.v) << "i = " << w.i;
  EXPECT_NEAR(t.concentration, 1.3465735902799727, 1e-7);  // 0.1 ln 32 + 1
}

TEST(RoPE, HalfSplitRotationWithConcentration) {
  RopeTable t;
  t.head_dim = 4;
  t.inv_freq = {1.0f, 0.5f};
  t.concentration = 2.0f;
  float cs[4];
  rope_cos_sin(t, 1, cs);
  EXPECT_FLOAT_EQ(cs[0], 2 * std::cos(1.0f));
  EXPECT_FLOAT_EQ(cs[1], 2 * std::cos(0.5f));
  EXPECT_FLOAT_EQ(cs[2], 2 * std::sin(1.0f));
  EXPECT_FLOAT_EQ(cs[3], 2 * std::sin(0.5f));
  float x[4] = {1, 2, 3, 4};  // x1 = [1, 2], x2 = [3, 4]: pairs (0, 2) and (1, 3), not (0, 1)
  f32_rope_apply(t, cs, x, 1);
  const double c1 = 2 * std::cos(1.0), s1 = 2 * std::sin(1.0);
  const double c2 = 2 * std::cos(0.5), s2 = 2 * std::sin(0.5);
  EXPECT_NEAR(x[0], 1 * c1 - 3 * s1, 1e-6);
  EXPECT_NEAR(x[1], 2 * c2 - 4 * s2, 1e-6);
  EXPECT_NEAR(x[2], 3 * c1 + 1 * s1, 1e-6);
  EXPECT_NEAR(x[3], 4 * c2 + 2 * s2, 1e-6);
  // Position 0: identity up to the concentration.
  float y[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  rope_cos_sin(t, 0, cs);
  f32_rope_apply(t, cs, y, 2);
  for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(y[i], 2.0f * (i + 1));
}

// ------------------------------------------------------------------------------------ attention
constexpr int kHd = 32;

// Cache [cap, n_kv, kHd] with v_j = (j + 1) * e_{j} on kv head 0 and a constant 100 + kvh on others.
struct Cache {
  int cap, nkv;
  std::vector<float> k, v;
  Cache(int cap_, int nkv_) : cap(cap_), nkv(nkv_), k(cap_ * nkv_ * kHd, 0.f), v(k.size(), 0.f) {}
  void put(int pos, int kvh, const float* kk, const float* vv) {
    size_t at = (static_cast<size_t>(pos % cap) * nkv + kvh) * kHd;
    std::memcpy(&k[at], kk, kHd * 4);
    std::memcpy(&v[at], vv, kHd * 4);
  }
};

TEST(Attention, SinkTakesMassButAddsNoValue) {
  Cache c(4, 1);
  float zero[kHd] = {}, v0[kHd], v1[kHd];
  for (int d = 0; d < kHd; ++d) v0[d] = 1.0f, v1[d] = 3.0f;
  c.put(0, 0, zero, v0);
  c.put(1, 0, zero, v1);
  float q[kHd] = {}, out[kHd], scratch[8];
  // q = 0: both scores 0. sink = ln 2: weights 1, 1 and 2 for the sink -> out = (v0 + v1) / 4.
  f32_attention_sinks_head(q, c.k.data(), c.v.data(), 4, 1, kHd, 0, 1, 0, std::log(2.0f), out,
                           scratch);
  for (int d = 0; d < kHd; ++d) EXPECT_NEAR(out[d], 1.0f, 1e-6);
  // sink = 0: out = (v0 + v1) / 3.
  f32_attention_sinks_head(q, c.k.data(), c.v.data(), 4, 1, kHd, 0, 1, 0, 0.0f, out, scratch);
  for (int d = 0; d < kHd; ++d) EXPECT_NEAR(out[d], 4.0f / 3.0f, 1e-6);
  // sink = -100: no mass -> plain average 2.
  f32_attention_sinks_head(q, c.k.data(), c.v.data(), 4, 1, kHd, 0, 1, 0, -100.0f, out, scratch);
  for (int d = 0; d < kHd; ++d) EXPECT_NEAR(out[d], 2.0f, 1e-6);
  // Scores: k_1 = 4 sqrt(32) e_0 / 4, q = e_0 -> s_1 = 1, s_0 = 0; sink -100.
  float k1[kHd] = {};
  k1[0] = std::sqrt(32.0f);
  c.put(1, 0, k1, v1);
  q[0] = 1.0f;
  f32_attention_sinks_head(q, c.k.data(), c.v.data(), 4, 1, kHd, 0, 1, 0, -100.0f, out, scratch);
  const double p1 = std::exp(1.0) / (1 + std::exp(1.0));
  for (int d = 0; d < kHd; ++d) EXPECT_NEAR(out[d], 1.0 * (1 - p1) + 3.0 * p1, 1e-6);
}

TEST(Attention, SlidingWindowMaskAndRing) {
  // Values v_j = e_j (dims 0..5), q = 0, sink -100: out = mean of visible v_j.
  for (int cap : {8, 2}) {  // full-size buffer and a ring of exactly `window` positions
    Cache c(cap, 1);
    float zero[kHd] = {}, q[kHd] = {}, out[kHd], scratch[8];
    for (int j = 0; j <= 5; ++j) {
      float v[kHd] = {};
      v[j] = 1.0f;
      c.put(j, 0, zero, v);  // with cap 2 only positions 4 and 5 survive in the ring
    }
    // Query at pos 5, window 2: sees j = 4, 5 only.
    f32_attention_sinks_head(q, c.k.data(), c.v.data(), cap, 1, kHd, 0, 5, 2, -100.0f, out,
                             scratch);
    for (int d = 0; d < kHd; ++d)
      EXPECT_NEAR(out[d], (d == 4 || d == 5) ? 0.5f : 0.0f, 1e-6) << "cap " << cap << " d " << d;
  }
  // Full causal (window 0) at pos 2 with cap 8: sees j = 0, 1, 2 even if later slots hold data.
  Cache c(8, 1);
  float zero[kHd] = {}, q[kHd] = {}, out[kHd], scratch[8];
  for (int j = 0; j < 8; ++j) {
    float v[kHd] = {};
    v[j] = 1.0f;
    c.put(j, 0, zero, v);
  }
  f32_attention_sinks_head(q, c.k.data(), c.v.data(), 8, 1, kHd, 0, 2, 0, -100.0f, out, scratch);
  for (int d = 0; d < kHd; ++d) EXPECT_NEAR(out[d], d <= 2 ? 1.0f / 3 : 0.0f, 1e-6);
}

TEST(Attention, PagedBlocksGiveTheBitsOfAContiguousCache) {
  // 23 positions of random k/v in a contiguous cache, and the same in a pool of 12 blocks of 4
  // handed out in a scrambled order (the sequence's table): every query position, window or not,
  // gives the same bits (the op's arithmetic does not depend on where a position is).
  const int n = 23, B = 4, nkv = 2;
  const int32_t table[6] = {7, 2, 11, 0, 9, 4};
  Cache flat(n, nkv), pool(12 * B, nkv);
  uint32_t st = 12345;
  auto rnd = [&] { st = st * 1664525u + 1013904223u; return static_cast<float>(st >> 8) / 8388608.0f - 1.0f; };
  for (int j = 0; j < n; ++j)
    for (int h = 0; h < nkv; ++h) {
      float k[kHd], v[kHd];
      for (int d = 0; d < kHd; ++d) k[d] = rnd(), v[d] = rnd();
      flat.put(j, h, k, v);
      pool.put(table[j / B] * B + j % B, h, k, v);
    }
  float q[kHd], a[kHd], b[kHd], scratch[n];
  for (int d = 0; d < kHd; ++d) q[d] = rnd();
  for (int window : {0, 5})
    for (int pos = 0; pos < n; ++pos)
      for (int h = 0; h < nkv; ++h) {
        f32_attention_sinks_head(q, flat.k.data(), flat.v.data(), n, nkv, kHd, h, pos, window,
                                 0.3f, a, scratch);
        std::fill(b, b + kHd, -1.0f);
        f32_attention_sinks_head(q, pool.k.data(), pool.v.data(), n, nkv, kHd, h, pos, window,
                                 0.3f, b, scratch, table, B);
        ASSERT_EQ(std::memcmp(a, b, sizeof a), 0) << "pos " << pos << " window " << window;
      }
}

TEST(Attention, GqaMapping) {
  // 8 query heads over 2 kv heads: heads 0..3 -> kv 0, 4..7 -> kv 1.
  for (int h = 0; h < 8; ++h) EXPECT_EQ(gqa_kv_head(h, 8, 2), h < 4 ? 0 : 1);
  for (int h = 0; h < 64; ++h) EXPECT_EQ(gqa_kv_head(h, 64, 8), h / 8);
  // The op reads the kv head it is given: kv head 1 holds value 7, kv head 0 value -1.
  Cache c(2, 2);
  float zero[kHd] = {}, a[kHd], b[kHd], q[kHd] = {}, out[kHd], scratch[4];
  for (int d = 0; d < kHd; ++d) a[d] = -1.0f, b[d] = 7.0f;
  c.put(0, 0, zero, a);
  c.put(0, 1, zero, b);
  f32_attention_sinks_head(q, c.k.data(), c.v.data(), 2, 2, kHd, gqa_kv_head(5, 8, 2), 0, 0,
                           -100.0f, out, scratch);
  for (int d = 0; d < kHd; ++d) EXPECT_NEAR(out[d], 7.0f, 1e-6);
}

// ------------------------------------------------------------------------------------ router
TEST(Router, TopkTiesLowerIndexWinsAndSoftmaxOverK) {
  const float l[5] = {1, 3, 3, 2, 3};
  int32_t e[3];
  float w[3];
  f32_router_topk_softmax(l, 5, 2, e, w);
  EXPECT_EQ(e[0], 1);
  EXPECT_EQ(e[1], 2);
  EXPECT_FLOAT_EQ(w[0], 0.5f);
  EXPECT_FLOAT_EQ(w[1], 0.5f);
  f32_router_topk_softmax(l, 5, 3, e, w);
  EXPECT_EQ(e[2], 4);
  const float l2[4] = {0.0f, std::log(3.0f), -5.0f, -1.0f};
  f32_router_topk_softmax(l2, 4, 2, e, w);
  EXPECT_EQ(e[0], 1);
  EXPECT_EQ(e[1], 0);
  EXPECT_NEAR(w[0], 0.75f, 1e-6);  // softmax over the chosen two only: 3 / (3 + 1)
  EXPECT_NEAR(w[1], 0.25f, 1e-6);
}

// ------------------------------------------------------------------------------------ SwiGLU
TEST(SwiGLU, ClampsAndFormula) {
  auto ref = [](double g, double u) { return g / (1 + std::exp(-1.702 * g)) * (u + 1); };
  // gate above the limit is clamped to 7; up clamped to [-7, 7].
  EXPECT_NEAR(swiglu_clamped(10, 10, 7), ref(7, 7), 1e-5);
  EXPECT_NEAR(swiglu_clamped(10, -10, 7), ref(7, -7), 1e-5);
  EXPECT_NEAR(swiglu_clamped(7.5f, 0.5f, 7), ref(7, 0.5), 1e-5);
  // gate has no lower clamp: -10 stays -10.
  EXPECT_NEAR(swiglu_clamped(-10, 3, 7), ref(-10, 3), 1e-9);
  EXPECT_NE(swiglu_clamped(-10, 3, 7), static_cast<float>(ref(-7, 3)));
  // Inside the limits: gate 1, up 0 -> sigmoid(1.702) = 1 / (1 + e^-1.702) = 1 / 1.182320 = 0.8457958.
  EXPECT_NEAR(swiglu_clamped(1, 0, 7), 0.8457958, 1e-6);
  EXPECT_NEAR(swiglu_clamped(-0.5f, 2, 7), ref(-0.5, 2), 1e-6);
  // Interleaved layout: h = [g0, u0, g1, u1].
  const float h[4] = {1, 0, 10, -10};
  float a[2];
  f32_swiglu_clamped(h, a, 1, 2, 7);
  EXPECT_EQ(a[0], swiglu_clamped(1, 0, 7));
  EXPECT_EQ(a[1], swiglu_clamped(10, -10, 7));
}

// ------------------------------------------------------------------------------------ rmsnorm
TEST(RmsNorm, HandCase) {
  const float x[2] = {3, 4};  // mean square 12.5
  const bf16_t scale[2] = {f32_to_bf16(1.0f), f32_to_bf16(2.0f)};
  float y[2];
  f32_bf16w_rmsnorm(x, scale, y, 1, 2, 1e-5f);
  const double r = 1.0 / std::sqrt(12.5 + 1e-5);
  EXPECT_NEAR(y[0], 3 * r, 1e-6);
  EXPECT_NEAR(y[1], 8 * r, 1e-6);
}

// ------------------------------------------------------------------------------------ matmul
TEST(Matmul, WithBiasHandCase) {
  const int K = 32, M = 3;
  std::vector<bf16_t> w(M * K);
  for (int k = 0; k < K; ++k) {
    w[0 * K + k] = f32_to_bf16(1.0f);                          // row 0: sum
    w[1 * K + k] = f32_to_bf16(k == 5 ? 1.0f : 0.0f);          // row 1: picks x[5]
    w[2 * K + k] = f32_to_bf16(k % 2 ? -0.5f : 2.0f);          // row 2
  }
  const bf16_t b[M] = {f32_to_bf16(0.5f), f32_to_bf16(-1.0f), f32_to_bf16(2.0f)};
  std::vector<float> x(2 * K);
  for (int k = 0; k < K; ++k) x[k] = k, x[K + k] = 1;
  float y[2 * M];
  f32_bf16w_matmul(x.data(), w.data(), b, y, 2, K, M);
  EXPECT_EQ(y[0], 496.5f);           // 0 + ... + 31 = 496
  EXPECT_EQ(y[1], 4.0f);             // x[5] - 1
  EXPECT_EQ(y[2], 2.0f * 240 - 0.5f * 256 + 2);  // evens sum 240, odds 256
  EXPECT_EQ(y[3], 32.5f);
  EXPECT_EQ(y[4], 0.0f);
  EXPECT_EQ(y[5], 16 * 2.0f - 16 * 0.5f + 2);
  f32_bf16w_matmul(x.data(), w.data(), nullptr, y, 1, K, M);
  EXPECT_EQ(y[0], 496.0f);
}

TEST(Matmul, RowResultIndependentOfBatchAndMatchesCanonicalDot) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  const int K = 96, M = 37, rows = 7;
  std::vector<bf16_t> w(M * K);
  std::vector<float> wf(M * K), x(rows * K), y(rows * M), y1(M);
  for (int i = 0; i < M * K; ++i) w[i] = f32_to_bf16(nd(rng)), wf[i] = bf16_to_f32(w[i]);
  for (auto& v : x) v = nd(rng);
  f32_bf16w_matmul(x.data(), w.data(), nullptr, y.data(), rows, K, M);
  for (int n = 0; n < rows; ++n) {
    f32_bf16w_matmul(x.data() + n * K, w.data(), nullptr, y1.data(), 1, K, M);
    for (int m = 0; m < M; ++m) {
      ASSERT_EQ(bits(y[n * M + m]), bits(y1[m])) << n << "," << m;
      ASSERT_EQ(bits(y1[m]), bits(f32_dot_canonical(x.data() + n * K, wf.data() + m * K, K)));
      double ref = 0;
      for (int k = 0; k < K; ++k) ref += static_cast<double>(x[n * K + k]) * wf[m * K + k];
      EXPECT_NEAR(y1[m], ref, 1e-4);
    }
  }
  // MXFP4 matmul of the same shape: same bits for one row alone or within the batch.
  std::vector<uint8_t> blk(M * K / 2), sc(M * K / 32);
  for (auto& b : blk) b = rng() & 0xff;
  for (auto& s : sc) s = 120 + rng() % 8;
  std::vector<float> wrow(4 * K), ym(rows * M), ym1(M), dec(K);
  f32_mf4w_matmul_range(x.data(), blk.data(), sc.data(), nullptr, ym.data(), rows, K, M, 0, M,
                        wrow.data());
  for (int n = 0; n < rows; ++n) {
    f32_mf4w_matmul_range(x.data() + n * K, blk.data(), sc.data(), nullptr, ym1.data(), 1, K, M,
                          0, M, wrow.data());
    for (int m = 0; m < M; ++m) {
      ASSERT_EQ(bits(ym[n * M + m]), bits(ym1[m]));
      mxfp4_decode_row(blk.data() + m * K / 2, sc.data() + m * K / 32, K, dec.data());
      ASSERT_EQ(bits(ym1[m]), bits(f32_dot_canonical(x.data() + n * K, dec.data(), K)));
    }
  }
}

TEST(Argmax, LowestIndexWinsTies) {
  const float x[5] = {1, 4, 2, 4, 4};
  EXPECT_EQ(f32_argmax(x, 5), 1);
  const float y[3] = {NAN, -1, -1};
  EXPECT_EQ(f32_argmax(y, 3), 1);
}

}  // namespace
}  // namespace gptoss::cpu
