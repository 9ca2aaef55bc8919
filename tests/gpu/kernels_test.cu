// kernels_test.cu: every GPU kernel of kernels/gpu/ops.h against its CPU twin (kernels/cpu/ops.h)
// on random inputs (never zeros), outputs poisoned (0xff bytes = NaN) before each run.
// Tolerances (relative L2 over the whole output), and why:
//   exact (== bits)   embedding gather, residual add, RoPE (same fp32 operations, no FMA, same
//                     cos/sin table), KV-cache bf16 stores, argmax.
//   1e-6  RMSNorm     fp64 mean of squares in another order; one rounding of the fp32 products.
//   1e-5  GEMV        fp32 products and fp32 accumulation in another order than the canonical
//                     CPU dot: error ~ 2^-24 sqrt(K) ~ 3e-6 at K = 4096.
//   2e-5  GEMM vs CPU on the fp32 activations: the GEMM stages x as hi = bf16(x) plus
//                     lo = bf16(x - hi) (x kept to 2^-17 relative, products hi*w and lo*w exact in
//                     fp32), so the error is 2^-17 per element (random signs: ~8e-6 / sqrt-ish
//                     on a dot, ~4e-6 measured scale) plus fp32 accumulation order (~3e-6 at K
//                     4096). The old bf16-only staging gave ~1e-3 and fails this bound.
//   1e-5  GEMM, precision fast, vs CPU on bf16(x): the same products exactly (bf16 x bf16 in
//                     fp32), fp32 accumulation order only; vs CPU on x: <= 2^-9 (the rounding).
//                     Both NVIDIA kernels (mma.sync, Hopper's wgmma) to the same bound.
//   1e-5  attention   same bf16 K/V values on both sides (CPU gets them widened to fp32); fp32
//                     scores, exp and sums in another order (split-K pieces merged with rescaling).
//                     NVIDIA's default tensor-core kernel takes q and p as bf16 hi + lo (2^-17
//                     relative, products exact): held to the same bound, as is the scalar one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "cpu/ops.h"
#include "gpu_test_util.h"

namespace gptoss {
namespace {
using gputest::DevBuf;
using gputest::rel_l2;
using gputest::Rng;

std::vector<float> widen(const std::vector<bf16_t>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = bf16_to_f32(v[i]);
  return r;
}

TEST(GpuKernels, embed_exact) {
  GPU_TEST_REQUIRE_DEVICE();
  Rng r(1);
  const int V = 1000, H = 2880, rows = 7;
  auto table = r.bf16s(size_t(V) * H);
  std::vector<int32_t> tok = {5, 999, 0, 5, 123, 777, 998};
  DevBuf<bf16_t> dt(table);
  DevBuf<int32_t> dk(tok);
  DevBuf<float> dx(size_t(rows) * H);
  gpu::bf16_embed(dt.p, dk.p, rows, H, dx.p, nullptr);
  std::vector<float> ref(size_t(rows) * H);
  cpu::bf16_embed(table.data(), tok.data(), rows, H, ref.data());
  EXPECT_EQ(0, std::memcmp(ref.data(), dx.download().data(), ref.size() * 4));
}

TEST(GpuKernels, rmsnorm_and_gather) {
  GPU_TEST_REQUIRE_DEVICE();
  Rng r(2);
  for (int dim : {192, 2880}) {
    const int rows = 5;
    auto x = r.normals(size_t(rows) * dim, 3.0f);
    auto scale = r.bf16s(dim, 0.2f, 1.0f);
    DevBuf<float> dx(x), dy(x.size());
    DevBuf<bf16_t> ds(scale);
    gpu::f32_bf16w_rmsnorm(dx.p, ds.p, dy.p, rows, dim, 1e-5f, nullptr, nullptr);
    std::vector<float> ref(x.size());
    cpu::f32_bf16w_rmsnorm(x.data(), scale.data(), ref.data(), rows, dim, 1e-5f);
    EXPECT_LE(rel_l2(dy.download(), ref), 1e-6) << "dim " << dim;
    // Gather variant: rows 4, 1 of x.
    std::vector<int32_t> idx = {4, 1};
    DevBuf<int32_t> di(idx);
    DevBuf<float> dg(size_t(2) * dim);
    gpu::f32_bf16w_rmsnorm(dx.p, ds.p, dg.p, 2, dim, 1e-5f, di.p, nullptr);
    auto g = dg.download();
    EXPECT_LE(rel_l2(g.data(), ref.data() + 4 * dim, dim), 1e-6);
    EXPECT_LE(rel_l2(g.data() + dim, ref.data() + 1 * dim, dim), 1e-6);
  }
}

TEST(GpuKernels, add_inplace_exact) {
  GPU_TEST_REQUIRE_DEVICE();
  Rng r(3);
  auto y = r.normals(100003), x = r.normals(100003);
  DevBuf<float> dy(y), dx(x);
  gpu::f32_add_inplace(dy.p, dx.p, y.size(), nullptr);
  cpu::f32_add_inplace(y.data(), x.data(), y.size());
  EXPECT_EQ(0, std::memcmp(y.data(), dy.download().data(), y.size() * 4));
}

// Runs one matmul path on the GPU and returns y. accumulate: y starts as y0.
// gemm with precision fast: x rounded to bf16 into a scratch, then the fast GEMM.
std::vector<float> gpu_matmul(bool gemm, const std::vector<float>& x, const std::vector<bf16_t>& w,
                              const std::vector<bf16_t>* bias, int rows, int K, int M,
                              const std::vector<float>* y0,
                              gpu::Precision precision = gpu::Precision::exact) {
  DevBuf<float> dx(x), dy(size_t(rows) * M);
  DevBuf<bf16_t> dw(w), dx16(x.size());
  DevBuf<bf16_t> db(bias ? bias->size() : 1);
  DevBuf<uint32_t> sem(gpu::kGemmSemSlots);  // the fast GEMM's split-K semaphores, zeroed
  GPU_CHECK(gpuMemset(sem.p, 0, gpu::kGemmSemSlots * sizeof(uint32_t)));
  if (bias) db.upload(*bias);
  if (y0) dy.upload(*y0);
  if (gemm)
    gpu::f32_bf16w_gemm(dx.p, dw.p, bias ? db.p : nullptr, dy.p, rows, K, M, y0 != nullptr,
                        nullptr, precision, dx16.p, sem.p);
  else
    gpu::f32_bf16w_gemv(dx.p, dw.p, bias ? db.p : nullptr, dy.p, rows, K, M, y0 != nullptr,
                        nullptr);
  return dy.download();
}

// One case of the bf16-x GEMMs: random weights, bias, x rounded to bf16 (nearest even: x16 the
// GEMM's operand, xr its values in fp32 for the CPU oracle), a y0 to accumulate onto (drawn in
// that order), and their device copies with an output buffer.
struct Bf16GemmCase {
  std::vector<bf16_t> w, bias, x16;
  std::vector<float> xr, y0;
  DevBuf<bf16_t> dx, dw, db;
  DevBuf<float> dy;
  static std::vector<float> draw_x(Rng& r, int rows, int K, std::vector<bf16_t>& x16) {
    auto x = r.normals(size_t(rows) * K);
    x16.resize(x.size());
    std::vector<float> xr(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      x16[i] = f32_to_bf16(x[i]);
      xr[i] = bf16_to_f32(x16[i]);
    }
    return xr;
  }
  Bf16GemmCase(Rng& r, int rows, int K, int M)
      : w(r.bf16s(size_t(M) * K, 0.05f)), bias(r.bf16s(M, 0.5f)), xr(draw_x(r, rows, K, x16)),
        y0(r.normals(size_t(rows) * M)), dx(x16), dw(w), db(bias), dy(size_t(rows) * M) {}
};

std::vector<float> cpu_matmul(const std::vector<float>& x, const std::vector<bf16_t>& w,
                              const std::vector<bf16_t>* bias, int rows, int K, int M,
                              const std::vector<float>* y0) {
  std::vector<float> y(size_t(rows) * M);
  cpu::f32_bf16w_matmul(x.data(), w.data(), bias ? bias->data() : nullptr, y.data(), rows, K, M);
  if (y0) cpu::f32_add_inplace(y.data(), y0->data(), y.size());
  return y;
}

TEST(GpuKernels, gemv_vs_cpu_and_batch_invariant) {
  GPU_TEST_REQUIRE_DEVICE();
  Rng r(4);
  struct S { int K, M; };
  for (S s : {S{2880, 1037}, S{4096, 203}, S{192, 61}, S{2880, 20011}}) {
    auto w = r.bf16s(size_t(s.M) * s.K, 0.05f);
    auto bias = r.bf16s(s.M, 0.5f);
    std::vector<float> ref8;
    std::vector<float> x8 = r.normals(size_t(8) * s.K);
    for (int rows : {1, 2, 3, 5, 8}) {
      std::vector<float> x(x8.begin(), x8.begin() + size_t(rows) * s.K);
      auto y0 = r.normals(size_t(rows) * s.M);
      for (bool acc : {false, true}) {
        auto g = gpu_matmul(false, x, w, &bias, rows, s.K, s.M, acc ? &y0 : nullptr);
        auto c = cpu_matmul(x, w, &bias, rows, s.K, s.M, acc ? &y0 : nullptr);
        EXPECT_LE(rel_l2(g, c), 1e-5) << "K " << s.K << " M " << s.M << " rows " << rows;
      }
      // Row 0 gives the same bits whatever the number of rows in the call.
      auto g = gpu_matmul(false, x, w, nullptr, rows, s.K, s.M, nullptr);
      if (rows == 1) ref8 = g;
      EXPECT_EQ(0, std::memcmp(ref8.data(), g.data(), size_t(s.M) * 4)) << "rows " << rows;
    }
  }
}

TEST(GpuKernels, gemm_vs_cpu_partial_tiles) {
  GPU_TEST_REQUIRE_DEVICE();
  Rng r(5);
  struct S { int rows, K, M; };
  for (S s : {S{9, 2880, 333}, S{64, 192, 64}, S{130, 4096, 200}, S{77, 2880, 1000}}) {
    auto w = r.bf16s(size_t(s.M) * s.K, 0.05f);
    auto bias = r.bf16s(s.M, 0.5f);
    auto x = r.normals(size_t(s.rows) * s.K);
    auto y0 = r.normals(size_t(s.rows) * s.M);
    for (bool acc : {false, true}) {
      auto g = gpu_matmul(true, x, w, &bias, s.rows, s.K, s.M, acc ? &y0 : nullptr);
      auto c = cpu_matmul(x, w, &bias, s.rows, s.K, s.M, acc ? &y0 : nullptr);
      const double e = rel_l2(g, c);
      std::printf("[ gemm ] rows %d K %d M %d acc %d: rel L2 vs CPU (fp32 x) %.3g\n", s.rows, s.K,
                  s.M, int(acc), e);
      EXPECT_LE(e, 2e-5) << "rows " << s.rows << " K " << s.K << " M " << s.M;
    }
  }
}

// Precision fast: y = bf16(x) W^T + b exactly up to the fp32 summation order, so the oracle is
// the CPU twin on x rounded to bf16 (round to nearest even), at the GEMV's 1e-5. Against the
// unrounded x the error is that of the rounding, at most 2^-9 relative per element of x: checked
// <= 2^-9 in rel L2 (random signs keep it well below). Shapes: partial row / output / K tiles,
// both block heights (64 rows; 128 when the grid still has two blocks per SM: 300 x 20011).
// Row 0's bits do not depend on the number of rows (nor on the block height).
TEST(GpuKernels, gemm_fast_vs_cpu_on_bf16_x) {
  GPU_TEST_REQUIRE_DEVICE();
  Rng r(6);
  struct S { int rows, K, M; };
  std::vector<float> row0;
  for (S s : {S{9, 2880, 333}, S{64, 192, 64}, S{130, 4096, 200}, S{77, 2880, 1000},
              S{300, 2880, 20011}, S{512, 2880, 5120}}) {
    auto w = r.bf16s(size_t(s.M) * s.K, 0.05f);
    auto bias = r.bf16s(s.M, 0.5f);
    auto x = r.normals(size_t(s.rows) * s.K);
    std::vector<float> xr(x.size());
    for (size_t i = 0; i < x.size(); ++i) xr[i] = bf16_to_f32(f32_to_bf16(x[i]));
    auto y0 = r.normals(size_t(s.rows) * s.M);
    for (bool acc : {false, true}) {
      auto g = gpu_matmul(true, x, w, &bias, s.rows, s.K, s.M, acc ? &y0 : nullptr,
                          gpu::Precision::fast);
      const double e_r = rel_l2(g, cpu_matmul(xr, w, &bias, s.rows, s.K, s.M, acc ? &y0 : nullptr));
      const double e_x = rel_l2(g, cpu_matmul(x, w, &bias, s.rows, s.K, s.M, acc ? &y0 : nullptr));
      std::printf("[ gemm fast ] rows %d K %d M %d acc %d: rel L2 vs CPU on bf16(x) %.3g, on x %.3g\n",
                  s.rows, s.K, s.M, int(acc), e_r, e_x);
      EXPECT_LE(e_r, 1e-5) << "rows " << s.rows << " K " << s.K << " M " << s.M;
      EXPECT_LE(e_x, 1.0 / 512) << "rows " << s.rows << " K " << s.K << " M " << s.M;
    }
  }
  // Row independence: one x row, with 9 and with 300 rows around it (64- and 128-row blocks).
  const int K = 2880, M = 20011;
  auto w = r.bf16s(size_t(M) * K, 0.05f);
  auto x = r.normals(size_t(300) * K);
  auto g9 = gpu_matmul(true, std::vector<float>(x.begin(), x.begin() + 9 * K), w, nullptr, 9, K, M,
                       nullptr, gpu::Precision::fast);
  auto g300 = gpu_matmul(true, x, w, nullptr, 300, K, M, nullptr, gpu::Precision::fast);
  EXPECT_EQ(0, std::memcmp(g9.data(), g300.data(), size_t(M) * sizeof(float)));
}

// The fast GEMM's split K (bf16_bf16w_gemm, splits > 1: the splits of an output tile add into y
// in split order through a semaphore): every split count against the CPU on bf16(x) at the same
// 1e-5, with and without accumulation, partial tiles; the semaphores are left zeroed (so the next
// GEMM and a graph replay start clean); a row's bits do not depend on the rows around it at the
// automatic split count of the qkv shape (fast_gemm_splits, > 1 on an H100/H200).
TEST(GpuKernels, gemm_fast_split_k) {
  GPU_TEST_REQUIRE_DEVICE();
  Rng r(9);
  struct S { int rows, K, M; };
  DevBuf<uint32_t> sem(gpu::kGemmSemSlots);
  GPU_CHECK(gpuMemset(sem.p, 0, gpu::kGemmSemSlots * sizeof(uint32_t)));
  for (S s : {S{256, 2880, 5120}, S{130, 4096, 200}, S{9, 2880, 333}}) {
    Bf16GemmCase c(r, s.rows, s.K, s.M);
    for (int splits : {1, 2, 3, 4}) {
      for (bool acc : {false, true}) {
        c.dy.upload(c.y0);
        gpu::bf16_bf16w_gemm(c.dx.p, c.dw.p, c.db.p, c.dy.p, s.rows, s.K, s.M, acc, nullptr, sem.p, splits);
        auto g = c.dy.download();
        const double e = rel_l2(g, cpu_matmul(c.xr, c.w, &c.bias, s.rows, s.K, s.M, acc ? &c.y0 : nullptr));
        std::printf("[ gemm split ] rows %d K %d M %d splits %d acc %d: rel L2 vs CPU on bf16(x) %.3g\n",
                    s.rows, s.K, s.M, splits, int(acc), e);
        EXPECT_LE(e, 1e-5) << "rows " << s.rows << " M " << s.M << " splits " << splits;
      }
    }
    auto left = sem.download();
    EXPECT_EQ(std::count(left.begin(), left.end(), 0u), long(left.size())) << "semaphores not reset";
  }
  const int K = 2880, M = 5120;
  std::printf("[ gemm split ] fast_gemm_splits(%d, %d) = %d on this device\n", K, M,
              gpu::fast_gemm_splits(K, M));
  auto w = r.bf16s(size_t(M) * K, 0.05f);
  auto x = r.normals(size_t(300) * K);
  auto g9 = gpu_matmul(true, std::vector<float>(x.begin(), x.begin() + 9 * K), w, nullptr, 9, K, M,
                       nullptr, gpu::Precision::fast);
  auto g300 = gpu_matmul(true, x, w, nullptr, 300, K, M, nullptr, gpu::Precision::fast);
  EXPECT_EQ(0, std::memcmp(g9.data(), g300.data(), size_t(9) * M * sizeof(float)));
}

// The fast GEMM on Hopper's wgmma (gemm_wgmma.cu; the engine's dense GEMMs with
// BackendOptions::gemm_wgmma): against the CPU on bf16(x) at the mma.sync kernel's 1e-5, with and
// without accumulation and bias, over every tile shape it picks (64 or 128 rows x 64, 128 or 256
// outputs per block: the shapes below, chosen by the grid on this device), partial row / output
// tiles, and K not a multiple of its 64-wide stages (104: a zero-filled tail). Row independence:
// the first rows' bits with 9, 64, 130 and 300 rows in the call (both block heights).
TEST(GpuKernels, gemm_wgmma_vs_cpu_on_bf16_x) {
  GPU_TEST_REQUIRE_DEVICE();
  if (!gpu::gemm_wgmma_available()) GTEST_SKIP() << "no wgmma here (needs an sm_90a build on an sm_90 GPU)";
  Rng r(12);
  struct S { int rows, K, M; bool bias; };
  for (S s : {S{9, 2880, 333, true}, S{64, 2880, 20011, false}, S{130, 4096, 200, true},
              S{300, 2880, 20011, true}, S{300, 192, 65536, false}, S{77, 104, 1000, true},
              S{256, 2880, 5120, true}, S{256, 4096, 2880, true}}) {
    Bf16GemmCase c(r, s.rows, s.K, s.M);
    for (bool acc : {false, true}) {
      if (acc) c.dy.upload(c.y0);
      else GPU_CHECK(gpuMemset(c.dy.p, 0xff, size_t(s.rows) * s.M * sizeof(float)));  // NaN poison
      gpu::bf16_wgmma_gemm(c.dx.p, c.dw.p, s.bias ? c.db.p : nullptr, c.dy.p, s.rows, s.K, s.M, acc, nullptr);
      auto g = c.dy.download();
      const double e = rel_l2(g, cpu_matmul(c.xr, c.w, s.bias ? &c.bias : nullptr, s.rows, s.K, s.M,
                                            acc ? &c.y0 : nullptr));
      std::printf("[ gemm wgmma ] rows %d K %d M %d bias %d acc %d: rel L2 vs CPU on bf16(x) %.3g\n",
                  s.rows, s.K, s.M, int(s.bias), int(acc), e);
      EXPECT_LE(e, 1e-5) << "rows " << s.rows << " K " << s.K << " M " << s.M << " acc " << acc;
    }
  }
  for (int M : {200, 20011}) {
    const int K = 2880;
    auto w = r.bf16s(size_t(M) * K, 0.05f);
    std::vector<bf16_t> x16(size_t(300) * K);
    for (auto& v : x16) v = f32_to_bf16(r.normal());
    DevBuf<bf16_t> dx(x16), dw(w);
    DevBuf<float> dy(size_t(300) * M);
    std::vector<float> first;
    for (int rows : {9, 64, 130, 300}) {
      gpu::bf16_wgmma_gemm(dx.p, dw.p, nullptr, dy.p, rows, K, M, false, nullptr);
      auto g = dy.download();
      if (first.empty()) first.assign(g.begin(), g.begin() + size_t(9) * M);
      EXPECT_EQ(0, std::memcmp(first.data(), g.data(), size_t(9) * M * sizeof(float)))
          << "M " << M << ": rows 0..8 differ with " << rows << " rows in the call";
    }
  }
  // The engine's dispatch (BackendOptions::gemm_wgmma): f32_bf16w_gemm in precision fast with
  // GemmKernel::wgmma gives the wgmma kernel's bits.
  {
    const int rows = 130, K = 2880, M = 1000;
    auto w = r.bf16s(size_t(M) * K, 0.05f);
    auto x = r.normals(size_t(rows) * K);
    std::vector<bf16_t> x16(x.size());
    for (size_t i = 0; i < x.size(); ++i) x16[i] = f32_to_bf16(x[i]);
    DevBuf<float> dxf(x), dy1(size_t(rows) * M), dy2(size_t(rows) * M);
    DevBuf<bf16_t> dx(x16), dw(w), scratch(x.size());
    gpu::f32_bf16w_gemm(dxf.p, dw.p, nullptr, dy1.p, rows, K, M, false, nullptr, gpu::Precision::fast,
                        scratch.p, nullptr, gpu::GemmKernel::wgmma);
    gpu::bf16_wgmma_gemm(dx.p, dw.p, nullptr, dy2.p, rows, K, M, false, nullptr);
    auto a = dy1.download(), b = dy2.download();
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  }
}

// Cache layout [slots, cap, n_kv, hd]; CPU twin wants [cap, n_kv, hd] fp32 per slot.
TEST(GpuKernels, rope_kv_write_exact) {
  GPU_TEST_REQUIRE_DEVICE();
  Rng r(6);
  const int nh = 8, nkv = 2, hd = 64, R = (nh + 2 * nkv) * hd, slots = 3, cap = 40, ctx = 300;
  auto rt = cpu::rope_yarn_table(hd, 150000, 32, 4096, 32, 1);
  std::vector<float> cs(size_t(ctx) * hd);
  for (int p = 0; p < ctx; ++p) cpu::rope_cos_sin(rt, p, cs.data() + size_t(p) * hd);
  std::vector<int32_t> pos = {0, 17, 299, 45, 46}, slot = {0, 2, 1, 0, 2};
  const int rows = int(pos.size());
  auto qkv = r.normals(size_t(rows) * R, 2.0f);
  DevBuf<float> dq(qkv), dcs(cs);
  DevBuf<int32_t> dp(pos), dsl(slot);
  DevBuf<bf16_t> dk(size_t(slots) * cap * nkv * hd), dv(size_t(slots) * cap * nkv * hd);
  gpu::f32_rope_kv_write(dq.p, dcs.p, dp.p, dsl.p, rows, nh, nkv, hd, dk.p, dv.p, cap, {},
                         nullptr);
  auto gq = dq.download();
  auto gk = dk.download(), gv = dv.download();
  // The fp32-cache form (--kv-cache f32): the same rotation, K and V stored exactly.
  DevBuf<float> dq32(qkv);
  DevBuf<float> dk32(size_t(slots) * cap * nkv * hd), dv32(size_t(slots) * cap * nkv * hd);
  gpu::f32_rope_kv_write(dq32.p, dcs.p, dp.p, dsl.p, rows, nh, nkv, hd, dk32.p, dv32.p, cap, {},
                         nullptr);
  auto gq32 = dq32.download();
  auto gk32 = dk32.download(), gv32 = dv32.download();
  for (int n = 0; n < rows; ++n) {
    std::vector<float> row(qkv.begin() + size_t(n) * R, qkv.begin() + size_t(n + 1) * R);
    cpu::f32_rope_apply(rt, cs.data() + size_t(pos[n]) * hd, row.data(), nh + nkv);
    EXPECT_EQ(0, std::memcmp(row.data(), gq.data() + size_t(n) * R, size_t(nh) * hd * 4)) << n;
    EXPECT_EQ(0, std::memcmp(row.data(), gq32.data() + size_t(n) * R, size_t(nh) * hd * 4)) << n;
    const size_t c0 = (size_t(slot[n]) * cap + pos[n] % cap) * nkv * hd;
    for (int i = 0; i < nkv * hd; ++i) {
      ASSERT_EQ(f32_to_bf16(row[size_t(nh) * hd + i]), gk[c0 + i]) << "k row " << n << " i " << i;
      ASSERT_EQ(f32_to_bf16(row[size_t(nh + nkv) * hd + i]), gv[c0 + i]) << "v row " << n;
    }
    EXPECT_EQ(0, std::memcmp(row.data() + size_t(nh) * hd, gk32.data() + c0, size_t(nkv) * hd * 4))
        << "f32 k row " << n;
    EXPECT_EQ(0, std::memcmp(row.data() + size_t(nh + nkv) * hd, gv32.data() + c0,
                             size_t(nkv) * hd * 4))
        << "f32 v row " << n;
  }

  // Paged (the full layers of a paged cache): each row's block from the rows, recorded in the
  // table (all -1 before: the writer must fill it), K and V at the block's row; both element types.
  gputest::PagedLayout pl(slots, ctx, 4, 3, r);
  std::vector<int32_t> block(size_t(rows), 0);
  for (int n = 0; n < rows; ++n) block[size_t(n)] = pl.table[size_t(slot[n]) * pl.stride + (pos[n] >> 4)];
  DevBuf<int32_t> dblock(block), dtab(pl.table.size()), dtab32(pl.table.size());  // -1 (poison)
  DevBuf<float> dqp(qkv), dqp32(qkv);
  DevBuf<bf16_t> dkp(pl.pool_rows() * nkv * hd), dvp(pl.pool_rows() * nkv * hd);
  DevBuf<float> dkp32(pl.pool_rows() * nkv * hd), dvp32(pl.pool_rows() * nkv * hd);
  gpu::f32_rope_kv_write(dqp.p, dcs.p, dp.p, dsl.p, rows, nh, nkv, hd, dkp.p, dvp.p, ctx,
                         pl.pages(dtab.p, dblock.p), nullptr);
  gpu::f32_rope_kv_write(dqp32.p, dcs.p, dp.p, dsl.p, rows, nh, nkv, hd, dkp32.p, dvp32.p, ctx,
                         pl.pages(dtab32.p, dblock.p), nullptr);
  auto gqp = dqp.download();
  auto gkp = dkp.download(), gvp = dvp.download();
  auto gkp32 = dkp32.download(), gvp32 = dvp32.download();
  for (const auto& t : {dtab.download(), dtab32.download()})
    for (size_t i = 0; i < t.size(); ++i) {
      bool written = false;
      for (int n = 0; n < rows; ++n)
        written |= size_t(slot[n]) * pl.stride + (pos[n] >> 4) == i;
      EXPECT_EQ(t[i], written ? pl.table[i] : -1) << "table entry " << i;
    }
  EXPECT_EQ(0, std::memcmp(gq.data(), gqp.data(), gq.size() * sizeof(float)));  // q rotated alike
  EXPECT_EQ(0, std::memcmp(gq32.data(), dqp32.download().data(), gq32.size() * sizeof(float)));
  for (int n = 0; n < rows; ++n) {
    const size_t c0 = (size_t(slot[n]) * cap + pos[n] % cap) * nkv * hd;  // the ring's row
    const size_t p0 = pl.row(slot[n], pos[n]) * nkv * hd;
    EXPECT_EQ(0, std::memcmp(gk.data() + c0, gkp.data() + p0, size_t(nkv) * hd * 2)) << "k " << n;
    EXPECT_EQ(0, std::memcmp(gv.data() + c0, gvp.data() + p0, size_t(nkv) * hd * 2)) << "v " << n;
    EXPECT_EQ(0, std::memcmp(gk32.data() + c0, gkp32.data() + p0, size_t(nkv) * hd * 4)) << n;
    EXPECT_EQ(0, std::memcmp(gv32.data() + c0, gvp32.data() + p0, size_t(nkv) * hd * 4)) << n;
  }
}

TEST(GpuKernels, attention_sinks_window_splitk) {
  GPU_TEST_REQUIRE_DEVICE();
  Rng r(7);
  const int hd = 64;
  struct S { int nh, nkv, cap, window, kv_chunk; };
  for (S s : {S{64, 8, 700, 0, 128}, S{8, 2, 700, 0, 64}, S{64, 8, 160, 128, 64},
              S{8, 2, 24, 16, 64}}) {
    const int slots = 3, R = (s.nh + 2 * s.nkv) * hd;
    auto kc = r.bf16s(size_t(slots) * s.cap * s.nkv * hd, 1.0f);
    auto vc = r.bf16s(size_t(slots) * s.cap * s.nkv * hd, 1.0f);
    auto sinks = r.bf16s(s.nh, 1.0f);
    const int pmax = s.window ? 650 : s.cap - 1;
    std::vector<int32_t> pos = {0, 1, 63, 64, 65, std::min(200, pmax), pmax, 5};
    std::vector<int32_t> slot = {0, 1, 2, 0, 1, 2, 0, 2};
    const int rows = int(pos.size());
    auto qkv = r.normals(size_t(rows) * R, 0.5f);
    DevBuf<float> dq(qkv), dout(size_t(rows) * s.nh * hd);
    DevBuf<bf16_t> dk(kc), dv(vc), ds(sinks);
    DevBuf<int32_t> dp(pos), dsl(slot);
    const int max_keys = s.window ? std::min(s.window, s.cap) : s.cap;
    DevBuf<float> dpart(gpu::attention_partial_floats(s.nh, max_keys, s.kv_chunk));
    dpart.zero();  // the merge's tickets start at 0 (ops.h)
    // bf16 cache: the default kernel (NVIDIA: tensor cores) and the scalar one (HIP's), same bound.
    gpu::f32_bf16kv_attention_sinks(dq.p, dk.p, dv.p, ds.p, dp.p, dsl.p, rows, s.nh, s.nkv, hd,
                                    s.cap, {}, s.window, max_keys, s.kv_chunk, dpart.p, dout.p,
                                    nullptr);
    auto g = dout.download();
    DevBuf<float> dout_s(g.size());
    gpu::f32_bf16kv_attention_sinks(dq.p, dk.p, dv.p, ds.p, dp.p, dsl.p, rows, s.nh, s.nkv, hd,
                                    s.cap, {}, s.window, max_keys, s.kv_chunk, dpart.p, dout_s.p,
                                    nullptr, nullptr, gpu::AttnKernel::scalar);
    auto g_scalar = dout_s.download();
    auto kf = widen(kc), vf = widen(vc);
    std::vector<float> ref(g.size()), scratch(2000);
    for (int n = 0; n < rows; ++n)
      for (int h = 0; h < s.nh; ++h) {
        const size_t so = size_t(slot[n]) * s.cap * s.nkv * hd;
        cpu::f32_attention_sinks_head(qkv.data() + size_t(n) * R + size_t(h) * hd,
                                      kf.data() + so, vf.data() + so, s.cap, s.nkv, hd,
                                      cpu::gqa_kv_head(h, s.nh, s.nkv), pos[n], s.window,
                                      bf16_to_f32(sinks[h]), ref.data() + (size_t(n) * s.nh + h) * hd,
                                      scratch.data());
      }
    double worst = 0, worst_s = 0;
    for (int n = 0; n < rows; ++n) {
      const size_t o = size_t(n) * s.nh * hd, len = size_t(s.nh) * hd;
      const double e = rel_l2(g.data() + o, ref.data() + o, len);
      const double e_s = rel_l2(g_scalar.data() + o, ref.data() + o, len);
      worst = std::max(worst, e), worst_s = std::max(worst_s, e_s);
      EXPECT_LE(e, 1e-5) << "default kernel: nh " << s.nh << " cap " << s.cap << " window "
                         << s.window << " row " << n << " pos " << pos[n];
      EXPECT_LE(e_s, 1e-5) << "scalar kernel: nh " << s.nh << " cap " << s.cap << " window "
                           << s.window << " row " << n << " pos " << pos[n];
    }
    std::printf("[ attention split-K ] %d/%d heads cap %d window %d: bf16 KV worst rel L2 default "
                "kernel %.3g, scalar %.3g\n", s.nh, s.nkv, s.cap, s.window, worst, worst_s);
    // fp32 cache (values not bf16-representable, so a bf16 load would show): same bound.
    auto kc32 = r.normals(kf.size(), 1.0f), vc32 = r.normals(vf.size(), 1.0f);
    DevBuf<float> dk32(kc32), dv32(vc32), dout32(g.size());
    gpu::f32_f32kv_attention_sinks(dq.p, dk32.p, dv32.p, ds.p, dp.p, dsl.p, rows, s.nh, s.nkv, hd,
                                   s.cap, {}, s.window, max_keys, s.kv_chunk, dpart.p, dout32.p,
                                   nullptr);
    auto g32 = dout32.download();
    if (s.window == 0) {
      // Paged (a full layer of a paged cache, cap = ctx): the same keys moved into a pool of
      // blocks of 16 positions through a shuffled table (the other rows NaN): every kernel's
      // result equals the ring's bit for bit (only the addresses differ).
      gputest::PagedLayout pl(slots, s.cap, 4, 5, r);
      DevBuf<int32_t> dtab(pl.table);
      const gpu::KvPages pg = pl.pages(dtab.p);
      const size_t re = size_t(s.nkv) * hd;
      DevBuf<bf16_t> pk(pl.to_pool(kc, re, bf16_t(0xffff))), pv(pl.to_pool(vc, re, bf16_t(0xffff)));
      DevBuf<float> pk32(pl.to_pool(kc32, re, NAN)), pv32(pl.to_pool(vc32, re, NAN));
      DevBuf<float> o1(g.size()), o2(g.size()), o3(g.size());
      gpu::f32_bf16kv_attention_sinks(dq.p, pk.p, pv.p, ds.p, dp.p, dsl.p, rows, s.nh, s.nkv, hd,
                                      s.cap, pg, 0, max_keys, s.kv_chunk, dpart.p, o1.p, nullptr);
      gpu::f32_bf16kv_attention_sinks(dq.p, pk.p, pv.p, ds.p, dp.p, dsl.p, rows, s.nh, s.nkv, hd,
                                      s.cap, pg, 0, max_keys, s.kv_chunk, dpart.p, o2.p, nullptr,
                                      nullptr, gpu::AttnKernel::scalar);
      gpu::f32_f32kv_attention_sinks(dq.p, pk32.p, pv32.p, ds.p, dp.p, dsl.p, rows, s.nh, s.nkv,
                                     hd, s.cap, pg, 0, max_keys, s.kv_chunk, dpart.p, o3.p, nullptr);
      EXPECT_EQ(0, std::memcmp(o1.download().data(), g.data(), g.size() * 4)) << "paged default";
      EXPECT_EQ(0, std::memcmp(o2.download().data(), g_scalar.data(), g.size() * 4)) << "paged scalar";
      EXPECT_EQ(0, std::memcmp(o3.download().data(), g32.data(), g.size() * 4)) << "paged f32 KV";
    }
    for (int n = 0; n < rows; ++n)
      for (int h = 0; h < s.nh; ++h) {
        const size_t so = size_t(slot[n]) * s.cap * s.nkv * hd;
        cpu::f32_attention_sinks_head(qkv.data() + size_t(n) * R + size_t(h) * hd,
                                      kc32.data() + so, vc32.data() + so, s.cap, s.nkv, hd,
                                      cpu::gqa_kv_head(h, s.nh, s.nkv), pos[n], s.window,
                                      bf16_to_f32(sinks[h]), ref.data() + (size_t(n) * s.nh + h) * hd,
                                      scratch.data());
      }
    for (int n = 0; n < rows; ++n)
      EXPECT_LE(rel_l2(g32.data() + size_t(n) * s.nh * hd, ref.data() + size_t(n) * s.nh * hd,
                       size_t(s.nh) * hd),
                1e-5)
          << "f32 KV: nh " << s.nh << " cap " << s.cap << " window " << s.window << " row " << n;
  }
}

// The read-bandwidth probe (bench-kernels --read-bw) must touch every 16-byte word once, or the
// ceiling it reports is inflated. Its per-block output is the sum over threads of the low byte
// of each thread's XOR of the words it read (thread g of the grid reads words g, g + stride, ...):
// exact in fp32 (<= 256 * 255), so recomputed here and compared for equality. The word count
// leaves a tail that is not a multiple of 4 * stride, so both of the kernel's loops run.
TEST(GpuKernels, read_probe_reads_every_word) {
  GPU_TEST_REQUIRE_DEVICE();
  const int blocks = 3, threads = 256;
  const size_t stride = size_t(blocks) * threads, n16 = 4 * stride * 2 + 777;
  std::vector<int32_t> words(n16 * 4);
  std::mt19937 g(21);
  for (auto& w : words) w = static_cast<int32_t>(g());
  DevBuf<int32_t> dw(words);
  DevBuf<float> dp(blocks);
  gpu::read_bandwidth_probe(dw.p, n16 * 16, blocks, dp.p, nullptr);
  const auto got = dp.download();
  for (int b = 0; b < blocks; ++b) {
    float want = 0;
    for (int t = 0; t < threads; ++t) {
      uint32_t acc = 0;
      for (size_t i = size_t(b) * threads + t; i < n16; i += stride)
        for (int k = 0; k < 4; ++k) acc ^= static_cast<uint32_t>(words[i * 4 + k]);
      want += static_cast<float>(acc & 0xffu);
    }
    EXPECT_EQ(want, got[b]) << "block " << b;
  }
}

TEST(GpuKernels, argmax_ties_nan) {
  GPU_TEST_REQUIRE_DEVICE();
  Rng r(8);
  const int n = 201088, rows = 4;
  auto x = r.normals(size_t(rows) * n);
  x[size_t(1) * n + 777] = 50.0f;  // row 1: tie at 777 and 90000: lower index wins
  x[size_t(1) * n + 90000] = 50.0f;
  x[size_t(2) * n + 5] = NAN;      // row 2: NaN never wins
  x[size_t(2) * n + 200000] = 60.0f;
  for (int i = 0; i < n; ++i) x[size_t(3) * n + i] = 1.0f;  // row 3: all equal -> 0
  DevBuf<float> dx(x);
  DevBuf<int32_t> dout(rows);
  gpu::f32_argmax(dx.p, rows, n, dout.p, nullptr);
  auto g = dout.download();
  for (int k = 0; k < rows; ++k) EXPECT_EQ(cpu::f32_argmax(x.data() + size_t(k) * n, n), g[k]) << k;
  EXPECT_EQ(g[1], 777);
  EXPECT_EQ(g[2], 200000);
  EXPECT_EQ(g[3], 0);
}

}  // namespace
}  // namespace gptoss
