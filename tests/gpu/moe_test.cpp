// moe_test.cpp: GPU MoE (kernels/gpu/moe.h) against its CPU twin (kernels/cpu/ops.h).
// Skips (GTEST_SKIP) when no GPU is present at run time.
//
// Tolerances (relative L2 error per row of the MoE update sum_r w_r y_r, against the CPU):
//   - GEMV path (steps of <= 3 rows on NVIDIA; on HIP experts with <= 16 rows): fp32 products of exactly
//     decoded weights and fp32 inputs, fp32 accumulation in another order than the CPU; error
//     ~ 2^-24 * sqrt(K) ~ 1e-5 at K = 2880, through SwiGLU and the second matmul. Bound 1e-4.
//   - tensor-core path (larger steps): NVIDIA's grouped GEMM (every expert) takes x as fp16 hi =
//     f16(x) plus lo = f16(x - hi) (2^-22 relative), weights as exact fp16 placements with the
//     E8M0 scale applied to each block's fp32 partial sums; the bf16 tile kernel (HIP, or
//     MoeOptions::bf16_tiles) takes hi = bf16(x) plus lo = bf16(x - hi) (2^-17 relative), weights
//     exact in bf16. Products exact, fp32 accumulation: ~8e-6 per stage, two stages ~1e-5.
//     Bound 1e-4 (bf16-only activations gave 4.7e-3). MoeOptions::fast: x and the SwiGLU output
//     as one bf16 each (2^-8 relative), the weights exact (scales folded): bound 1e-2
//     (ForwardGroupedFast); with fold_scales off, one fp16 each (2^-11): bound 2e-3.
//   Rows whose top-k set differs from the CPU's are allowed only where the CPU logits at ranks k-1
//   and k are within 1e-4 (a near tie computed in another summation order), and at most 1% of rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <utility>

#include "gpu/ops.h"
#include "moe_testutil.h"

namespace gptoss {
namespace {

using moetest::DevBuf;
using moetest::DevMoe;
using moetest::HostMoe;
using moetest::MoeShape;
using moetest::Rng;

#define REQUIRE_GPU()                                                                  \
  do {                                                                                 \
    if (!moetest::gpu_present()) GTEST_SKIP() << "no GPU device present: GPU MoE test skipped"; \
  } while (0)

// ---------------------------------------------------------------------------- router
void check_router(int E, int k, int rows, bool with_ties, uint64_t seed) {
  Rng r(seed);
  std::vector<float> logits(static_cast<size_t>(rows) * E);
  for (int n = 0; n < rows; ++n) {
    if (with_ties) {
      // Few distinct values: many exact ties; the lower expert index must rank first.
      for (int e = 0; e < E; ++e) logits[n * E + e] = static_cast<float>(r.next() % 4) * 0.5f;
    } else {
      // Distinct values: a random permutation scaled, plus noise that keeps them distinct.
      std::vector<int> perm(E);
      std::iota(perm.begin(), perm.end(), 0);
      for (int i = E - 1; i > 0; --i) std::swap(perm[i], perm[r.next() % (i + 1)]);
      for (int e = 0; e < E; ++e) logits[n * E + e] = 0.37f * perm[e] - 5.0f + 0.1f * r.uniform();
    }
  }
  DevBuf<float> dl(logits.size()), dw(static_cast<size_t>(rows) * k);
  DevBuf<int32_t> de(static_cast<size_t>(rows) * k);
  dl.upload(logits);
  GPU_CHECK(gpuMemset(de.p, 0xff, de.n * sizeof(int32_t)));
  GPU_CHECK(gpuMemset(dw.p, 0xff, dw.n * sizeof(float)));
  gpu::moe_router_topk_logits(dl.p, rows, E, k, de.p, dw.p, nullptr);
  GPU_CHECK(gpuDeviceSynchronize());
  auto ge = de.download();
  auto gw = dw.download();
  std::vector<int32_t> ce(k);
  std::vector<float> cw(k);
  for (int n = 0; n < rows; ++n) {
    cpu::f32_router_topk_softmax(logits.data() + n * E, E, k, ce.data(), cw.data());
    for (int q = 0; q < k; ++q) {
      ASSERT_EQ(ge[n * k + q], ce[q]) << "row " << n << " rank " << q;
      ASSERT_NEAR(gw[n * k + q], cw[q], 1e-6f * std::max(1.0f, cw[q])) << "row " << n << " rank " << q;
    }
    float sum = 0;
    for (int q = 0; q < k; ++q) sum += gw[n * k + q];
    ASSERT_NEAR(sum, 1.0f, 1e-5f);
  }
}

TEST(GpuMoe, RouterTopkExactSet) {
  REQUIRE_GPU();
  check_router(32, 4, 257, false, 1);
  check_router(128, 4, 100, false, 2);
  check_router(8, 8, 50, false, 3);
  check_router(5, 1, 50, false, 4);
}

TEST(GpuMoe, RouterTiesLowerIndexFirst) {
  REQUIRE_GPU();
  check_router(32, 4, 300, true, 5);
  check_router(8, 3, 100, true, 6);
}

// ---------------------------------------------------------------------------- MXFP4 decode
TEST(GpuMoe, Mxfp4DecodeMatchesCpu) {
  REQUIRE_GPU();
  // Every scale value 0..255 appears; codes random (all 16 codes appear in every few blocks).
  const int n = 256 * 8;
  Rng r(7);
  std::vector<uint8_t> blocks(static_cast<size_t>(n) * 16), scales(n);
  r.bytes(blocks.data(), blocks.size());
  for (int b = 0; b < n; ++b) scales[b] = static_cast<uint8_t>(b % 256);
  DevBuf<uint8_t> db(blocks.size()), ds(scales.size());
  db.upload(blocks);
  ds.upload(scales);
  DevBuf<float> df(static_cast<size_t>(n) * 32);
  DevBuf<uint16_t> dh(static_cast<size_t>(n) * 32), dfold(static_cast<size_t>(n) * 32);
  GPU_CHECK(gpuMemset(df.p, 0xff, df.n * sizeof(float)));
  GPU_CHECK(gpuMemset(dh.p, 0xff, dh.n * sizeof(uint16_t)));
  GPU_CHECK(gpuMemset(dfold.p, 0xff, dfold.n * sizeof(uint16_t)));
  // The folded-scale decode (the fast grouped GEMM's, NVIDIA only).
  const bool fold = gpu::kTarget.vendor == gpu::GpuVendor::nvidia;
  gpu::moe_mxfp4_decode(db.p, ds.p, n, df.p, dh.p, nullptr, fold ? dfold.p : nullptr);
  GPU_CHECK(gpuDeviceSynchronize());
  auto gf = df.download();
  auto gh = dh.download();
  auto gfold = dfold.download();
  std::vector<float> ref(32);
  for (int b = 0; b < n; ++b) {
    cpu::mxfp4_decode_row(blocks.data() + 16 * b, scales.data() + b, 32, ref.data());
    for (int i = 0; i < 32; ++i) {
      const float want = ref[i], got = gf[32 * b + i];
      // fp32 path: exact for every scale (NaN where the CPU has 0 * inf too).
      if (std::isnan(want)) {
        ASSERT_TRUE(std::isnan(got)) << "block " << b << " elem " << i;
      } else {
        ASSERT_EQ(got, want) << "block " << b << " elem " << i << " scale " << int(scales[b]);
      }
      // bf16 path: exact wherever the value is a normal bf16/fp32 (scales 1..254).
      if (scales[b] >= 1 && scales[b] <= 254) {
        const float gb = bf16_to_f32(gh[32 * b + i]);
        ASSERT_EQ(gb, want) << "bf16 block " << b << " elem " << i << " scale " << int(scales[b]);
      }
      // folded: the code placed at 2^-126 times the bf16 2^(s - 1), exact for scales 0..128
      // (down to the bf16 subnormal 0.5 * 2^-127 at scale 0).
      if (fold && scales[b] <= gpu::kMoeFoldMaxScale) {
        const float gb = bf16_to_f32(gfold[32 * b + i]);
        ASSERT_EQ(gb, want) << "folded block " << b << " elem " << i << " scale " << int(scales[b]);
        ASSERT_EQ(std::signbit(gb), std::signbit(want)) << "folded block " << b << " elem " << i;
      }
    }
  }
}

// ---------------------------------------------------------------------------- whole MoE
struct MoeErr {
  double max_rel = 0, mean_rel = 0;
  int route_mismatch = 0;
};

MoeErr run_moe_case(const HostMoe& hm, const DevMoe& dm, gpu::MoeGpuScratch& s, int rows,
                    uint64_t seed) {
  const int H = hm.sh.H, E = hm.sh.E, k = hm.sh.k;
  Rng r(seed);
  std::vector<float> x(static_cast<size_t>(rows) * H), res0(x.size());
  for (auto& v : x) v = r.normal();
  for (auto& v : res0) v = r.normal();
  // CPU reference.
  std::vector<float> cres = res0;
  cpu::MoeScratch cs;
  cpu::f32_mf4w_moe(hm.cpu(), x.data(), rows, cres.data(), cs);
  std::vector<float> logits(static_cast<size_t>(rows) * E);
  cpu::f32_bf16w_matmul(x.data(), hm.router_w.data(), hm.router_b.data(), logits.data(), rows, H, E);
  // GPU, with the scratch outputs poisoned (NaN) so unwritten elements show.
  DevBuf<float> dx(x.size()), dres(x.size());
  dx.upload(x);
  dres.upload(res0);
  GPU_CHECK(gpuMemset(s.act, 0xff, static_cast<size_t>(rows) * k * hm.sh.I * sizeof(float)));
  GPU_CHECK(gpuMemset(s.y, 0xff, static_cast<size_t>(rows) * k * H * sizeof(float)));
  GPU_CHECK(gpuMemset(s.experts, 0xff, static_cast<size_t>(rows) * k * sizeof(int32_t)));
  gpu::moe_forward(dm.w, dx.p, rows, dres.p, s, nullptr);
  GPU_CHECK(gpuDeviceSynchronize());
  auto gres = dres.download();
  std::vector<int32_t> gexp(static_cast<size_t>(rows) * k);
  GPU_CHECK(gpuMemcpy(gexp.data(), s.experts, gexp.size() * sizeof(int32_t), gpuMemcpyDeviceToHost));

  MoeErr err;
  std::vector<int32_t> ce(k);
  std::vector<float> cw(k);
  for (int n = 0; n < rows; ++n) {
    const float* l = logits.data() + static_cast<size_t>(n) * E;
    cpu::f32_router_topk_softmax(l, E, k, ce.data(), cw.data());
    bool same = true;
    for (int q = 0; q < k; ++q) same &= gexp[n * k + q] == ce[q];
    if (!same) {
      // Allowed only at a near tie between ranks k-1 and k of the CPU logits (any order).
      std::vector<float> sorted(l, l + E);
      std::sort(sorted.begin(), sorted.end(), std::greater<float>());
      float min_gap = std::numeric_limits<float>::infinity();
      for (int q = 0; q + 1 < std::min(E, k + 1); ++q) min_gap = std::min(min_gap, sorted[q] - sorted[q + 1]);
      EXPECT_LT(min_gap, 1e-4f) << "row " << n << ": GPU routing differs from the CPU without a near tie";
      ++err.route_mismatch;
      continue;
    }
    double num = 0, den = 0;
    for (int i = 0; i < H; ++i) {
      const size_t o = static_cast<size_t>(n) * H + i;
      const double g = gres[o], c = cres[o], d = cres[o] - res0[o];
      EXPECT_TRUE(std::isfinite(gres[o])) << "row " << n << " elem " << i << " not written/finite";
      if (!std::isfinite(gres[o])) return err;
      num += (g - c) * (g - c);
      den += d * d;
    }
    const double rel = std::sqrt(num / std::max(den, 1e-30));
    err.max_rel = std::max(err.max_rel, rel);
    err.mean_rel += rel / rows;
  }
  return err;
}

void check_moe(const MoeShape& sh, const std::vector<int>& rows_list, uint64_t seed,
               const gpu::MoeOptions& opt = {}, double tol = 1e-4) {
  HostMoe hm(sh, seed);
  DevMoe dm(hm);
  const int max_rows = *std::max_element(rows_list.begin(), rows_list.end());
  gpu::MoeGpuScratch s = gpu::moe_scratch_create(dm.w, max_rows, opt);
  for (int rows : rows_list) {
    MoeErr err = run_moe_case(hm, dm, s, rows, seed * 1000 + rows);
    // Both paths: fp32-quality activations (GEMV fp32; tensor cores on hi + lo bf16 halves of
    // x, 2^-17 relative), so the same bound; the old bf16-rounded tensor-core path gave 4.7e-3.
    // (MoeOptions::fast passes its own bound.)
    std::printf("[ moe ] E %d k %d H %d I %d rows %4d path %-8s max rel %.3g mean rel %.3g "
                "route mismatches %d (tol %.0e)\n",
                sh.E, sh.k, sh.H, sh.I, rows, gpu::moe_path_name(s, rows), err.max_rel, err.mean_rel,
                err.route_mismatch, tol);
    EXPECT_LE(err.max_rel, tol) << "rows " << rows;
    EXPECT_LE(err.route_mismatch, std::max(1, rows / 100)) << "rows " << rows;
  }
  gpu::moe_scratch_destroy(s);
}

TEST(GpuMoe, ForwardTinyShape) {
  REQUIRE_GPU();
  check_moe({8, 4, 192, 128, 7.0f}, {1, 3, 16, 64, 300}, 11);
}

TEST(GpuMoe, Forward20bShape) {
  REQUIRE_GPU();
  // 600 rows: ~75 rows per expert, so experts span two 64-row tiles (the second partial).
  check_moe({32, 4, 2880, 2880, 7.0f}, {1, 3, 8, 16, 64, 300, 600}, 12);
}

// The tensor-core GEMV (MoeOptions::gemv_tensor_cores; NVIDIA only) against the CPU with the
// same bound: its x is fp16 hi + lo (2^-22 relative), products exact, fp32 sums.
TEST(GpuMoe, ForwardTensorCoreGemv) {
  REQUIRE_GPU();
  gpu::MoeOptions opt;
  opt.gemv_tensor_cores = true;
  if (*gpu::moe_options_error(opt, gpu::kTarget)) GTEST_SKIP() << "no tensor-core GEMV on this target";
  check_moe({8, 4, 192, 128, 7.0f}, {1, 3, 16, 64}, 13, opt);
  check_moe({32, 4, 2880, 2880, 7.0f}, {1, 3, 16, 64}, 14, opt);
}

// HIP's path on any GPU (MoeOptions::bf16_tiles: experts with > 16 rows of a step on the bf16 tile
// kernel, the others on the GEMV): on NVIDIA this runs the kernels MI250 runs, with the same bound.
// 300 rows put experts on both sides of 16 rows; 17 is the first step that can use the tiles.
TEST(GpuMoe, ForwardBf16TilesPath) {
  REQUIRE_GPU();
  gpu::MoeOptions opt;
  opt.bf16_tiles = true;
  check_moe({8, 4, 192, 128, 7.0f}, {1, 16, 17, 64, 300}, 15, opt);
  check_moe({32, 4, 2880, 2880, 7.0f}, {5, 16, 17, 300}, 16, opt);
}

// The grouped GEMM's other configurations (4 and 6 stages, one block per SM) and an earlier
// boundary (steps of >= 2 rows), NVIDIA only (elsewhere the options change nothing).
TEST(GpuMoe, ForwardGroupedConfigs) {
  REQUIRE_GPU();
  if (gpu::kTarget.vendor != gpu::GpuVendor::nvidia) GTEST_SKIP() << "no grouped GEMM on this target";
  for (int cfg : {1, 2}) {
    gpu::MoeOptions opt;
    opt.grouped_config = cfg;
    opt.grouped_from_rows = 2;
    check_moe({32, 4, 2880, 2880, 7.0f}, {2, 4, 64, 300}, 17 + cfg, opt);
  }
}

// Precision fast (MoeOptions::fast, NVIDIA): the grouped GEMM takes x, and mlp2 the SwiGLU
// output, as one operand each instead of fp16 hi + lo. The GEMV steps (1, 3 rows) are unchanged
// (exact). Every grouped configuration.
//   fold_scales (the default): bf16 operands (rounded: at most 2^-8 relative per element,
//   ~1.6e-3 RMS), weights exact with the scales folded in. Two roundings through matmuls of
//   random signs and SwiGLU: ~2.5e-3 typical; bound 1e-2 (the fp16 bound below scaled by the
//   formats' unit roundoffs would be 1.6e-2; a wrong fragment, a lost subnormal code (+-0.5) or
//   a wrong scale would be O(0.1-1)).
//   !fold_scales: fp16 operands (2^-11 relative, ~4.9e-4): ~1e-3 at most; bound 2e-3.
// The MoE update of one set of inputs under two scratches (two kernel choices): x ~ N(0, 1) of
// `rows` rows from Rng(seed), the residual zero or (random_residual) drawn after x; returns both
// residuals after moe_forward.
std::pair<std::vector<float>, std::vector<float>> forward_twice(const DevMoe& dm, int H, int rows,
                                                                uint64_t seed, bool random_residual,
                                                                gpu::MoeGpuScratch& sa,
                                                                gpu::MoeGpuScratch& sb) {
  Rng r(seed);
  std::vector<float> x(static_cast<size_t>(rows) * H), res0(x.size(), 0.0f);
  for (auto& v : x) v = r.normal();
  if (random_residual)
    for (auto& v : res0) v = r.normal();
  DevBuf<float> dx(x.size()), da(x.size()), db(x.size());
  dx.upload(x);
  da.upload(res0);
  db.upload(res0);
  gpu::moe_forward(dm.w, dx.p, rows, da.p, sa, nullptr);
  gpu::moe_forward(dm.w, dx.p, rows, db.p, sb, nullptr);
  GPU_CHECK(gpuDeviceSynchronize());
  return {da.download(), db.download()};
}

TEST(GpuMoe, ForwardGroupedFast) {
  REQUIRE_GPU();
  if (gpu::kTarget.vendor != gpu::GpuVendor::nvidia) GTEST_SKIP() << "no grouped GEMM on this target";
  for (bool fold : {true, false})
    for (int cfg : {0, 1, 2, 3, 4}) {
      gpu::MoeOptions opt;
      opt.fast = true;
      opt.fold_scales = fold;
      opt.grouped_config = cfg;
      const double tol = fold ? 1e-2 : 2e-3;
      check_moe({8, 4, 192, 128, 7.0f}, {1, 3, 4, 64, 300}, 21 + cfg, opt, tol);
      check_moe({32, 4, 2880, 2880, 7.0f}, {3, 4, 64, 600}, 24 + cfg, opt, tol);
    }
}

// Configurations 3 and 4 stage only x's hi chunks (the fast modes read no others), 4 / 5 stages
// at two blocks per SM: the same products summed in the same order as configuration 0, so the
// same bits, for both fast modes, at row counts giving tiles of 1..64 rows and experts over
// several tiles.
TEST(GpuMoe, GroupedHiOnlyStagingSameBits) {
  REQUIRE_GPU();
  if (gpu::kTarget.vendor != gpu::GpuVendor::nvidia) GTEST_SKIP() << "no grouped GEMM on this target";
  for (const MoeShape& sh : {MoeShape{8, 4, 192, 128, 7.0f}, MoeShape{32, 4, 2880, 2880, 7.0f}}) {
    HostMoe hm(sh, 53);
    DevMoe dm(hm);
    for (bool fold : {true, false}) {
      gpu::MoeOptions o0;
      o0.fast = true;
      o0.fold_scales = fold;
      gpu::MoeGpuScratch s0 = gpu::moe_scratch_create(dm.w, 600, o0);
      for (int cfg : {3, 4}) {
        gpu::MoeOptions oc = o0;
        oc.grouped_config = cfg;
        gpu::MoeGpuScratch sc = gpu::moe_scratch_create(dm.w, 600, oc);
        for (int rows : {4, 13, 37, 600}) {
          const auto [y0, yc] = forward_twice(dm, sh.H, rows, 5300 + rows, true, s0, sc);
          size_t diff = 0;
          for (size_t i = 0; i < y0.size(); ++i) diff += std::memcmp(&y0[i], &yc[i], sizeof(float)) != 0;
          EXPECT_EQ(diff, 0u) << "H " << sh.H << " fold " << fold << " config " << cfg << " rows " << rows;
        }
        gpu::moe_scratch_destroy(sc);
      }
      gpu::moe_scratch_destroy(s0);
    }
  }
}

// The folded-scale arithmetic on Hopper's wgmma (MoeOptions::wgmma, sm_90a builds: the
// warp-specialised moe_ws_kernel, 128-row tiles): the same bound as the mma.sync kernel's (same
// roundings; only the MMA instruction and the B layout differ); row counts that give tiles of
// 1..128 rows (every N, experts over several tiles, e.g. 600 rows of the tiny shape: ~300 per
// expert), steps of fewer MXFP4 blocks than the ring's stages (K = 128: 4 blocks, 2 stages) and
// of more (K = 2880: 45 stages through a ring of 6), and shapes whose last 256-row block has 64 /
// 128 / 192 rows (warpgroups and halves without rows). On the same inputs the result equals
// moe_tc_kernel's fast_bf16 up to fp32 summation order (measured: bit for bit, H100 2026-12-08).
TEST(GpuMoe, ForwardGroupedWgmma) {
  REQUIRE_GPU();
#if !defined(GPTOSS_WGMMA)
  GTEST_SKIP() << "this build has no sm_90a code (CMAKE_CUDA_ARCHITECTURES=90a)";
#else
  int dev = 0, major = 0, minor = 0;
  GPU_CHECK(gpuGetDevice(&dev));
  GPU_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  GPU_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  if (major != 9 || minor != 0) GTEST_SKIP() << "wgmma needs an sm_90 device";
  {
    gpu::MoeOptions opt;
    opt.fast = true;
    opt.fold_scales = true;
    opt.wgmma = true;
    check_moe({8, 4, 192, 128, 7.0f}, {4, 5, 13, 64, 300, 600}, 41, opt, 1e-2);
    check_moe({32, 4, 2880, 2880, 7.0f}, {4, 64, 600, 1100}, 44, opt, 1e-2);
  }
  // Against the mma.sync kernel on the same inputs: the same bf16 products, fp32 sums in another
  // order, so the MoE updates agree to ~1e-6 (rel L2; a wrong fragment or B layout is O(1)).
  for (const MoeShape& sh : {MoeShape{8, 4, 192, 128, 7.0f}, MoeShape{32, 4, 2880, 2880, 7.0f}}) {
    HostMoe hm(sh, 47);
    DevMoe dm(hm);
    gpu::MoeOptions om;
    om.fast = true;
    gpu::MoeGpuScratch sm = gpu::moe_scratch_create(dm.w, 1100, om);
    gpu::MoeOptions ow = om;
    ow.wgmma = true;
    gpu::MoeGpuScratch sw = gpu::moe_scratch_create(dm.w, 1100, ow);
    for (int rows : {4, 37, 600, 1100}) {
      const auto [yw, ym] = forward_twice(dm, sh.H, rows, 4700 + rows, false, sw, sm);
      double num = 0, den = 0;
      for (size_t i = 0; i < yw.size(); ++i) {
        num += double(yw[i] - ym[i]) * (yw[i] - ym[i]);
        den += double(ym[i]) * ym[i];
      }
      const double rel = std::sqrt(num / den);
      std::printf("[ moe ] wgmma vs mma.sync, H %d rows %d: rel L2 %.3g\n", sh.H, rows, rel);
      EXPECT_LE(rel, 1e-5) << "H " << sh.H << " rows " << rows;
    }
    gpu::moe_scratch_destroy(sw);
    gpu::moe_scratch_destroy(sm);
  }
#endif
}

// moe_max_scale: the largest E8M0 scale of both matmuls' scales (the fold check of the GPU
// backend), here 124 from the random weights, then 200 after one mlp2 scale is raised.
TEST(GpuMoe, MaxScale) {
  REQUIRE_GPU();
  const MoeShape sh{8, 4, 192, 128, 7.0f};
  HostMoe hm(sh, 31);
  DevMoe dm(hm);
  const int want = *std::max_element(hm.mlp1_scales.begin(), hm.mlp1_scales.end());
  EXPECT_EQ(gpu::moe_max_scale(dm.w, nullptr),
            std::max<int>(want, *std::max_element(hm.mlp2_scales.begin(), hm.mlp2_scales.end())));
  const uint8_t big = 200;
  GPU_CHECK(gpuMemcpy(dm.mlp2_scales.p + dm.mlp2_scales.n - 1, &big, 1, gpuMemcpyHostToDevice));
  EXPECT_EQ(gpu::moe_max_scale(dm.w, nullptr), 200);
}

// A hidden size too large for the 4-row router's shared memory: steps beyond the one-block
// routing kernel take the per-row router (moe_router_kernel), which no model shape reaches.
// H = 10496: 1 row routes in one block, 3 rows per row (GEMV), 20 rows per row + bf16 tiles (the
// grouped GEMM's stages would not fit). Needs 185 KiB for the GEMV's x: NVIDIA only.
TEST(GpuMoe, ForwardPerRowRouterLargeHidden) {
  REQUIRE_GPU();
  const MoeShape sh{8, 2, 10496, 64, 7.0f};
  const gpu::MoeShape gs{sh.E, sh.k, sh.H, sh.I};
  if (!gpu::moe_limits_error(gs, 20, gpu::MoeOptions{}, gpu::kTarget).empty())
    GTEST_SKIP() << "shape over this target's shared memory: " << gpu::moe_limits_error(gs, 20, gpu::MoeOptions{}, gpu::kTarget);
  ASSERT_EQ(gpu::moe_plan(gs, 3, gpu::MoeOptions{}, gpu::kTarget, false).route, gpu::MoeRoute::per_row);
  check_moe(sh, {1, 3, 20}, 19);
}

// Same inputs twice, directly and replayed from a captured graph: bitwise equal results
// (no atomics, no host synchronisation inside moe_forward).
TEST(GpuMoe, DeterministicAndGraphCapturable) {
  REQUIRE_GPU();
  const MoeShape sh{8, 4, 192, 128, 7.0f};
  HostMoe hm(sh, 21);
  DevMoe dm(hm);
  for (int rows : {3, 100}) {
    gpu::MoeGpuScratch s = gpu::moe_scratch_create(dm.w, rows, gpu::MoeOptions{});
    Rng r(22 + rows);
    std::vector<float> x(static_cast<size_t>(rows) * sh.H), res0(x.size());
    for (auto& v : x) v = r.normal();
    for (auto& v : res0) v = r.normal();
    DevBuf<float> dx(x.size()), dres(x.size());
    dx.upload(x);
    gpuStream_t st;
    GPU_CHECK(gpuStreamCreate(&st));
    dres.upload(res0);
    gpu::moe_forward(dm.w, dx.p, rows, dres.p, s, st);
    GPU_CHECK(gpuStreamSynchronize(st));
    auto direct = dres.download();

    gpuGraph_t g;
    gpuGraphExec_t ge;
    GPU_CHECK(gpuStreamBeginCapture(st));
    gpu::moe_forward(dm.w, dx.p, rows, dres.p, s, st);
    GPU_CHECK(gpuStreamEndCapture(st, &g));
    GPU_CHECK(gpuGraphInstantiate(&ge, g));
    // Two replays, each with the routing state and outputs poisoned first: every replay must
    // recompute the routing (e.g. the routing kernel's ticket counter is reset between launches).
    for (int rep = 0; rep < 2; ++rep) {
      dres.upload(res0);
      GPU_CHECK(gpuMemset(s.y, 0xff, static_cast<size_t>(rows) * sh.k * sh.H * sizeof(float)));
      GPU_CHECK(gpuMemset(s.experts, 0xff, static_cast<size_t>(rows) * sh.k * sizeof(int32_t)));
      GPU_CHECK(gpuMemset(s.offsets, 0xff, (sh.E + 1) * sizeof(int32_t)));
      GPU_CHECK(gpuMemset(s.meta, 0xff, 2 * sizeof(int32_t)));
      GPU_CHECK(gpuGraphLaunch(ge, st));
      GPU_CHECK(gpuStreamSynchronize(st));
      auto replay = dres.download();
      EXPECT_EQ(0, std::memcmp(direct.data(), replay.data(), direct.size() * sizeof(float)))
          << "rows " << rows << " replay " << rep << ": graph replay differs from the direct run";
    }
    GPU_CHECK(gpuGraphExecDestroy(ge));
    GPU_CHECK(gpuGraphDestroy(g));
    GPU_CHECK(gpuStreamDestroy(st));
    gpu::moe_scratch_destroy(s);
  }
}

// The combine fused with the next RMSNorm (MoeNextNorm, used by the engine between layers) gives
// bit-identical residual and normalised rows to the plain combine followed by f32_bf16w_rmsnorm
// (same arithmetic in the same order, so the bound is exact equality), for a decode-sized and a
// chunk-sized step.
TEST(GpuMoe, FusedNextNormBitExact) {
  REQUIRE_GPU();
  const MoeShape sh{8, 4, 192, 128, 7.0f};
  HostMoe hm(sh, 41);
  DevMoe dm(hm);
  for (int rows : {1, 5, 40}) {
    gpu::MoeGpuScratch s = gpu::moe_scratch_create(dm.w, rows, gpu::MoeOptions{});
    Rng r(42 + rows);
    std::vector<float> x(static_cast<size_t>(rows) * sh.H), res0(x.size());
    std::vector<uint16_t> scale(sh.H);
    for (auto& v : x) v = r.normal();
    for (auto& v : res0) v = r.normal();
    for (auto& v : scale) v = f32_to_bf16(1.0f + 0.1f * r.normal());
    DevBuf<float> dx(x.size()), dres(x.size()), dout(x.size());
    DevBuf<uint16_t> dscale(scale.size());
    dx.upload(x);
    dscale.upload(scale);
    dres.upload(res0);
    gpu::moe_forward(dm.w, dx.p, rows, dres.p, s, nullptr);
    gpu::f32_bf16w_rmsnorm(dres.p, dscale.p, dout.p, rows, sh.H, 1e-5f, nullptr, nullptr);
    GPU_CHECK(gpuDeviceSynchronize());
    const auto res_ref = dres.download(), out_ref = dout.download();
    dres.upload(res0);
    GPU_CHECK(gpuMemset(dout.p, 0xff, dout.n * sizeof(float)));
    const gpu::MoeNextNorm nn{dscale.p, 1e-5f, dout.p};
    gpu::moe_forward(dm.w, dx.p, rows, dres.p, s, nullptr, &nn);
    GPU_CHECK(gpuDeviceSynchronize());
    const auto res_got = dres.download(), out_got = dout.download();
    EXPECT_EQ(0, std::memcmp(res_ref.data(), res_got.data(), res_ref.size() * sizeof(float))) << "rows " << rows;
    EXPECT_EQ(0, std::memcmp(out_ref.data(), out_got.data(), out_ref.size() * sizeof(float))) << "rows " << rows;
    gpu::moe_scratch_destroy(s);
  }
}

TEST(GpuMoe, RejectsBadArguments) {
  REQUIRE_GPU();
  const MoeShape sh{8, 4, 192, 128, 7.0f};
  HostMoe hm(sh, 31);
  DevMoe dm(hm);
  gpu::MoeGpuScratch s = gpu::moe_scratch_create(dm.w, 4, gpu::MoeOptions{});
  EXPECT_THROW(gpu::moe_forward(dm.w, nullptr, 5, nullptr, s, nullptr), Error);
  gpu::MoeGpuWeights bad = dm.w;
  bad.hidden = 200;  // not a multiple of 32
  EXPECT_THROW(gpu::moe_scratch_create(bad, 4, gpu::MoeOptions{}), Error);
  bad.hidden = 16384;  // the GEMV's x staging would exceed the target's shared memory: refused
  EXPECT_THROW(gpu::moe_scratch_create(bad, 4, gpu::MoeOptions{}), Error);  // at creation
  gpu::MoeOptions bad_opt;
  bad_opt.grouped_from_rows = 1;
  EXPECT_THROW(gpu::moe_scratch_create(dm.w, 4, bad_opt), Error);
  bad_opt = gpu::MoeOptions{};
  bad_opt.grouped_config = 3;  // hi-only staging: precision fast only
  EXPECT_THROW(gpu::moe_scratch_create(dm.w, 4, bad_opt), Error);
  bad_opt.grouped_config = 5;
  bad_opt.fast = true;
  EXPECT_THROW(gpu::moe_scratch_create(dm.w, 4, bad_opt), Error);
  if (gpu::kTarget.vendor == gpu::GpuVendor::amd) {  // the tensor-core GEMV is NVIDIA only
    bad_opt = gpu::MoeOptions{};
    bad_opt.gemv_tensor_cores = true;
    EXPECT_THROW(gpu::moe_scratch_create(dm.w, 4, bad_opt), Error);
  }
  gpu::moe_scratch_destroy(s);
}

}  // namespace
}  // namespace gptoss
