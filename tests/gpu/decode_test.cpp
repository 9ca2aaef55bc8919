// decode_test.cpp: the decode path's kernels (kernels/gpu/decode.h) against their CPU twins
// (kernels/cpu/ops.h) on random inputs, outputs poisoned (NaN) first. Skips without a GPU.
// Tolerances (relative L2 over the output), and why:
//   1e-5  f32_bf16w_matmul_decode vs cpu::f32_bf16w_rmsnorm + f32_bf16w_matmul: fp32 products
//         and sums in another order (~2^-24 sqrt(K) ~ 3e-6 at K 4096); the RMSNorm's fp64 mean
//         and its fp32 products are the same operations (at most one rounding apart).
//   1e-5  f32_bf16w_qkv_rope_decode's q / k / v vs the CPU's RMSNorm, matmul and RoPE (RoPE is the
//         same fp32 operations without FMA, so only the matmul's order differs); the KV cache
//         must hold exactly the kernel's own k and v (rounded to bf16 for a bf16 cache).
//   1e-4  moe_forward_decode's residual update vs cpu::f32_mf4w_moe on the RMSNorm-ed rows, as
//         tests/gpu/moe_test.cpp's bound for the batched path: the MXFP4 matmuls take x as fp16
//         hi + lo halves (2^-22 relative) on NVIDIA with exact products and fp32 sums, and fp32
//         FMAs on HIP; routing must equal the CPU's top-k except at a near tie (< 1e-4 apart).
//   exact: a row's outputs do not depend on the other rows of the call (1 row vs 4 rows: the
//         MoE's "wide" and "narrow" expert matmuls), and a graph replay gives the eager launch's
//         bits (the tickets return to zero), with launch overlap on or off.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cpu/ops.h"
#include "gpu/decode.h"
#include "gpu/vendor.h"
#include "moe_testutil.h"

namespace gptoss {
namespace {
using moetest::DevBuf;
using moetest::Rng;

#define REQUIRE_GPU()                                                               \
  do {                                                                              \
    if (!moetest::gpu_present()) GTEST_SKIP() << "no GPU present: decode test skipped"; \
  } while (0)

double rel_l2(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return std::numeric_limits<double>::infinity();
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

std::vector<float> normals(Rng& r, size_t n, float scale = 1.0f) {
  std::vector<float> v(n);
  for (auto& x : v) x = scale * r.normal();
  return v;
}
std::vector<bf16_t> bf16s(Rng& r, size_t n, float scale, float mean = 0.0f) {
  std::vector<bf16_t> v(n);
  for (auto& x : v) x = f32_to_bf16(mean + scale * r.normal());
  return v;
}
template <class T>
void poison(DevBuf<T>& b) {
  GPU_CHECK(gpuMemset(b.p, 0xff, b.n * sizeof(T)));
}

// CPU twin of the decode matmul: y[n] (=|+=) W . in[n] + b, in = x[src(n)] or its RMSNorm.
std::vector<float> cpu_matmul(const std::vector<float>& x, const std::vector<int32_t>& idx,
                              const std::vector<bf16_t>* norm, float eps, const std::vector<bf16_t>& w,
                              const std::vector<bf16_t>* bias, const std::vector<float>& y0,
                              bool accumulate, int rows, int K, int M) {
  std::vector<float> in(size_t(rows) * K), y(size_t(rows) * M);
  for (int n = 0; n < rows; ++n) {
    const int src = idx.empty() ? n : idx[size_t(n)];
    std::copy_n(x.data() + size_t(src) * K, K, in.data() + size_t(n) * K);
  }
  if (norm) cpu::f32_bf16w_rmsnorm(in.data(), norm->data(), in.data(), rows, K, eps);
  cpu::f32_bf16w_matmul(in.data(), w.data(), bias ? bias->data() : nullptr, y.data(), rows, K, M);
  if (accumulate)
    for (size_t i = 0; i < y.size(); ++i) y[i] = y0[i] + y[i];
  return y;
}

TEST(GpuDecode, matmul_vs_cpu_and_row_independent) {
  REQUIRE_GPU();
  Rng r(1);
  struct Shape { int K, M; };
  for (Shape s : {Shape{192, 77}, Shape{2880, 1000}, Shape{4096, 333}}) {
    const int K = s.K, M = s.M, X = 6;  // X input rows to gather from
    auto x = normals(r, size_t(X) * K, 2.0f);
    auto w = bf16s(r, size_t(M) * K, 0.05f);
    auto b = bf16s(r, M, 0.5f);
    auto nw = bf16s(r, K, 0.2f, 1.0f);
    DevBuf<float> dx(x.size());
    dx.upload(x);
    DevBuf<uint16_t> dw(w.size()), db(b.size()), dn(nw.size());
    dw.upload(w), db.upload(b), dn.upload(nw);
    for (int rows = 1; rows <= gpu::kDecodeMaxRows; ++rows)
      for (int variant = 0; variant < 4; ++variant) {
        const bool norm = variant & 1, gather = variant & 2;
        std::vector<int32_t> idx;
        if (gather)
          for (int n = 0; n < rows; ++n) idx.push_back((5 * n + 3) % X);
        DevBuf<int32_t> di(std::max<size_t>(idx.size(), 1));
        if (gather) di.upload(idx);
        auto y0 = normals(r, size_t(rows) * M);
        for (int acc = 0; acc < 2; ++acc) {
          DevBuf<float> dy(y0.size());
          if (acc) dy.upload(y0);
          else poison(dy);
          gpu::DecodeMatmul a;
          a.x = dx.p;
          a.row_index = gather ? di.p : nullptr;
          a.norm_w = norm ? dn.p : nullptr;
          a.eps = 1e-5f;
          a.w = dw.p;
          a.bias = db.p;
          a.y = dy.p;
          a.rows = rows, a.K = K, a.M = M, a.accumulate = acc;
          gpu::f32_bf16w_matmul_decode(a, nullptr);
          GPU_CHECK(gpuDeviceSynchronize());
          auto got = dy.download();
          auto want = cpu_matmul(x, idx, norm ? &nw : nullptr, 1e-5f, w, &b, y0, acc, rows, K, M);
          const double e = rel_l2(got.data(), want.data(), got.size());
          EXPECT_LE(e, 1e-5) << "K " << K << " M " << M << " rows " << rows << " norm " << norm
                             << " gather " << gather << " acc " << acc;
          if (rows == gpu::kDecodeMaxRows && !acc) {
            // Row 0 alone gives the same bits as row 0 among four.
            DevBuf<float> d1{static_cast<size_t>(M)};
            a.rows = 1;
            a.y = d1.p;
            a.accumulate = false;
            gpu::f32_bf16w_matmul_decode(a, nullptr);
            GPU_CHECK(gpuDeviceSynchronize());
            auto one = d1.download();
            EXPECT_EQ(0, std::memcmp(one.data(), got.data(), size_t(M) * 4)) << "K " << K;
          }
        }
      }
  }
}

TEST(GpuDecode, qkv_rope_kv_write_vs_cpu) {
  REQUIRE_GPU();
  Rng r(2);
  struct Shape { int H, nh, nkv; };
  for (Shape s : {Shape{192, 8, 2}, Shape{2880, 64, 8}}) {
    const int H = s.H, nh = s.nh, nkv = s.nkv, hd = 64, R = (nh + 2 * nkv) * hd, kvd = nkv * hd;
    const int ctx = 40, cap = 24, slots = 3;
    auto w = bf16s(r, size_t(R) * H, 0.05f);
    auto b = bf16s(r, R, 0.5f);
    auto nw = bf16s(r, H, 0.2f, 1.0f);
    cpu::RopeTable rt = cpu::rope_yarn_table(hd, 150000.0f, 32.0f, 4096, 32.0f, 1.0f);
    std::vector<float> cs(size_t(ctx) * hd);
    for (int p = 0; p < ctx; ++p) cpu::rope_cos_sin(rt, p, cs.data() + size_t(p) * hd);
    DevBuf<uint16_t> dw(w.size()), db(b.size()), dn(nw.size());
    dw.upload(w), db.upload(b), dn.upload(nw);
    DevBuf<float> dcs(cs.size());
    dcs.upload(cs);
    // Paged (the full layers of a paged cache): blocks of 8 positions, slot s's block i at
    // table[s * 5 + i], a shuffle of 17 pool blocks (2 of no slot); the kernel takes each row's
    // block from the rows and records it in the table (all -1 before).
    const int B = 8, stride = ctx / B, n_blocks = slots * stride + 2;
    std::vector<int32_t> table(static_cast<size_t>(n_blocks));
    for (int i = 0; i < n_blocks; ++i) table[size_t(i)] = i;
    std::shuffle(table.begin(), table.end(), std::mt19937(5));
    table.resize(size_t(slots) * stride);
    for (int paged = 0; paged < 2; ++paged)
    for (int kv_f32 = 0; kv_f32 < 2; ++kv_f32)
      for (int rows = 1; rows <= gpu::kDecodeMaxRows; ++rows) {
        auto x = normals(r, size_t(rows) * H, 2.0f);
        std::vector<int32_t> pos, slot, block;
        for (int n = 0; n < rows; ++n) pos.push_back((7 * n + 30) % ctx), slot.push_back(n % slots);
        for (int n = 0; n < rows; ++n) block.push_back(table[size_t(slot[n]) * stride + pos[n] / B]);
        const auto cache_row = [&](int n) {
          return paged ? size_t(block[n]) * B + size_t(pos[n] % B) : size_t(slot[n]) * cap + pos[n] % cap;
        };
        DevBuf<float> dx(x.size()), dq(size_t(rows) * R);
        dx.upload(x);
        poison(dq);
        DevBuf<int32_t> dp(pos.size()), dsl(slot.size()), dblk(block.size()), dtab(table.size());
        dp.upload(pos), dsl.upload(slot), dblk.upload(block);
        GPU_CHECK(gpuMemset(dtab.p, 0xff, dtab.n * sizeof(int32_t)));  // all -1
        const size_t cache_n = (paged ? size_t(n_blocks) * B : size_t(slots) * cap) * kvd,
                     esz = kv_f32 ? 4 : 2;
        DevBuf<uint8_t> dk(cache_n * esz), dv(cache_n * esz);
        GPU_CHECK(gpuMemset(dk.p, 0x5a, dk.n));
        GPU_CHECK(gpuMemset(dv.p, 0x5a, dv.n));
        gpu::DecodeQkv q;
        q.x = dx.p, q.norm_w = dn.p, q.eps = 1e-5f, q.w = dw.p, q.bias = db.p, q.rope_cs = dcs.p;
        q.pos = dp.p, q.slot = dsl.p, q.qkv = dq.p, q.k_cache = dk.p, q.v_cache = dv.p;
        q.kv_f32 = kv_f32, q.rows = rows, q.H = H, q.n_heads = nh, q.n_kv = nkv, q.head_dim = hd;
        q.cap = paged ? ctx : cap;
        if (paged) q.pages = {dtab.p, dblk.p, stride, 3};
        gpu::f32_bf16w_qkv_rope_decode(q, nullptr);
        GPU_CHECK(gpuDeviceSynchronize());
        auto got = dq.download();
        // CPU: RMSNorm, matmul, RoPE of the q and k heads.
        auto want = cpu_matmul(x, {}, &nw, 1e-5f, w, &b, {}, false, rows, H, R);
        for (int n = 0; n < rows; ++n)
          cpu::f32_rope_apply(rt, cs.data() + size_t(pos[n]) * hd, want.data() + size_t(n) * R, nh + nkv);
        EXPECT_LE(rel_l2(got.data(), want.data(), got.size()), 1e-5)
            << "H " << H << " rows " << rows << " f32 cache " << kv_f32 << " paged " << paged;
        // The cache holds exactly the kernel's k and v at (slot, pos % cap), or (paged) at the row's
        // block; nothing else changed. Paged: the table holds the rows' blocks, other entries -1.
        auto kc = dk.download(), vc = dv.download();
        if (paged) {
          auto tab = dtab.download();
          for (size_t i = 0; i < tab.size(); ++i) {
            bool used = false;
            for (int n = 0; n < rows; ++n) used |= size_t(slot[n]) * stride + pos[n] / B == i;
            ASSERT_EQ(tab[i], used ? table[i] : -1) << "table entry " << i << " rows " << rows;
          }
        }
        std::vector<uint8_t> untouched(cache_n * esz, 0x5a);
        std::vector<bool> written(cache_n, false);
        for (int n = 0; n < rows; ++n) {
          const size_t base = cache_row(n) * kvd;
          for (int i = 0; i < kvd; ++i) {
            const float kq = got[size_t(n) * R + size_t(nh) * hd + i];
            const float vq = got[size_t(n) * R + size_t(nh + nkv) * hd + i];
            float kg, vg;
            if (kv_f32) {
              std::memcpy(&kg, kc.data() + 4 * (base + i), 4);
              std::memcpy(&vg, vc.data() + 4 * (base + i), 4);
              ASSERT_EQ(kg, kq) << "k row " << n << " elem " << i;
              ASSERT_EQ(vg, vq) << "v row " << n << " elem " << i;
            } else {
              bf16_t kb, vb;
              std::memcpy(&kb, kc.data() + 2 * (base + i), 2);
              std::memcpy(&vb, vc.data() + 2 * (base + i), 2);
              ASSERT_EQ(kb, f32_to_bf16(kq)) << "k row " << n << " elem " << i;
              ASSERT_EQ(vb, f32_to_bf16(vq)) << "v row " << n << " elem " << i;
            }
            written[base + i] = true;
          }
        }
        for (size_t i = 0; i < cache_n; ++i)
          if (!written[i])
            ASSERT_EQ(0, std::memcmp(kc.data() + esz * i, untouched.data(), esz)) << "k element " << i;
      }
  }
}

// CPU twin of moe_forward_decode: residual += f32_mf4w_moe(RMSNorm(residual) * norm_w).
struct MoeCase {
  std::vector<float> res0, res_cpu, res_gpu;
  std::vector<int32_t> experts_gpu;
};

MoeCase run_moe_decode(const moetest::HostMoe& hm, const moetest::DevMoe& dm,
                       gpu::MoeDecodeScratch& s, const std::vector<bf16_t>& nw,
                       const DevBuf<uint16_t>& dn, int rows, uint64_t seed) {
  const int H = hm.sh.H;
  Rng r(seed);
  MoeCase c;
  c.res0 = normals(r, size_t(rows) * H, 1.5f);
  std::vector<float> xn(c.res0.size());
  cpu::f32_bf16w_rmsnorm(c.res0.data(), nw.data(), xn.data(), rows, H, 1e-5f);
  c.res_cpu = c.res0;
  cpu::MoeScratch cs;
  cpu::f32_mf4w_moe(hm.cpu(), xn.data(), rows, c.res_cpu.data(), cs);
  DevBuf<float> dres(c.res0.size());
  dres.upload(c.res0);
  GPU_CHECK(gpuMemset(s.act, 0xff, size_t(rows) * hm.sh.k * hm.sh.I * sizeof(float)));
  GPU_CHECK(gpuMemset(s.y, 0xff, size_t(rows) * hm.sh.k * H * sizeof(float)));
  gpu::moe_forward_decode(dm.w, dn.p, 1e-5f, dres.p, rows, s, nullptr);
  GPU_CHECK(gpuDeviceSynchronize());
  c.res_gpu = dres.download();
  c.experts_gpu.resize(size_t(rows) * hm.sh.k);
  GPU_CHECK(gpuMemcpy(c.experts_gpu.data(), s.experts, c.experts_gpu.size() * 4, gpuMemcpyDeviceToHost));
  // The routing the CPU chose (its logits of the normalised rows).
  return c;
}

// A layer's random MoE weights on host and device, its RMSNorm weight (drawn from Rng(norm_seed),
// which the caller may keep drawing from) and a decode scratch of kDecodeMaxRows rows.
struct MoeDecodeSetup {
  moetest::HostMoe hm;
  moetest::DevMoe dm;
  Rng r;
  std::vector<bf16_t> nw;
  DevBuf<uint16_t> dn;
  gpu::MoeDecodeScratch s;
  MoeDecodeSetup(const moetest::MoeShape& sh, uint64_t seed, uint64_t norm_seed)
      : hm(sh, seed), dm(hm), r(norm_seed), nw(bf16s(r, sh.H, 0.2f, 1.0f)), dn(nw.size()) {
    dn.upload(nw);
    s = gpu::moe_decode_scratch_create(dm.w, gpu::kDecodeMaxRows);
  }
  ~MoeDecodeSetup() { gpu::moe_decode_scratch_destroy(s); }
};

void check_moe_decode(const moetest::MoeShape& sh, uint64_t seed) {
  MoeDecodeSetup m(sh, seed, seed + 7);
  const moetest::HostMoe& hm = m.hm;
  const moetest::DevMoe& dm = m.dm;
  const std::vector<bf16_t>& nw = m.nw;
  const DevBuf<uint16_t>& dn = m.dn;
  gpu::MoeDecodeScratch& s = m.s;
  for (int rows = 1; rows <= gpu::kDecodeMaxRows; ++rows) {
    MoeCase c = run_moe_decode(hm, dm, s, nw, dn, rows, seed * 100 + rows);
    std::vector<float> xn(c.res0.size()), logits(size_t(rows) * sh.E);
    cpu::f32_bf16w_rmsnorm(c.res0.data(), nw.data(), xn.data(), rows, sh.H, 1e-5f);
    cpu::f32_bf16w_matmul(xn.data(), hm.router_w.data(), hm.router_b.data(), logits.data(), rows,
                          sh.H, sh.E);
    double worst = 0;
    for (int n = 0; n < rows; ++n) {
      std::vector<int32_t> ce(sh.k);
      std::vector<float> cw(sh.k);
      cpu::f32_router_topk_softmax(logits.data() + size_t(n) * sh.E, sh.E, sh.k, ce.data(), cw.data());
      if (!std::equal(ce.begin(), ce.end(), c.experts_gpu.begin() + size_t(n) * sh.k)) {
        std::vector<float> sorted(logits.begin() + size_t(n) * sh.E, logits.begin() + size_t(n + 1) * sh.E);
        std::sort(sorted.begin(), sorted.end(), std::greater<float>());
        float gap = std::numeric_limits<float>::infinity();
        for (int q = 0; q + 1 < std::min(sh.E, sh.k + 1); ++q) gap = std::min(gap, sorted[q] - sorted[q + 1]);
        EXPECT_LT(gap, 1e-4f) << "row " << n << ": routing differs from the CPU without a near tie";
        continue;
      }
      double num = 0, den = 0;
      for (int i = 0; i < sh.H; ++i) {
        const size_t o = size_t(n) * sh.H + i;
        ASSERT_TRUE(std::isfinite(c.res_gpu[o])) << "row " << n << " elem " << i;
        const double d = double(c.res_gpu[o]) - c.res_cpu[o], u = double(c.res_cpu[o]) - c.res0[o];
        num += d * d;
        den += u * u;
      }
      worst = std::max(worst, std::sqrt(num / std::max(den, 1e-30)));
    }
    std::printf("[ moe decode ] E %d k %d H %d I %d rows %d: worst rel %.3g (tol 1e-4)\n", sh.E, sh.k,
                sh.H, sh.I, rows, worst);
    EXPECT_LE(worst, 1e-4) << "rows " << rows;
    if (rows == gpu::kDecodeMaxRows) {
      // Row 0 alone: the same bits as among four rows (same residual row, same weights).
      DevBuf<float> d1{static_cast<size_t>(sh.H)};
      d1.upload(c.res0.data());
      gpu::moe_forward_decode(dm.w, dn.p, 1e-5f, d1.p, 1, s, nullptr);
      GPU_CHECK(gpuDeviceSynchronize());
      auto one = d1.download();
      EXPECT_EQ(0, std::memcmp(one.data(), c.res_gpu.data(), size_t(sh.H) * 4));
    }
  }
  // Graph capture and replay: the same bits as eager launches, twice (the tickets reset); with
  // and without launch overlap (the engine's default is on), for a one-row step (the "wide"
  // expert matmuls) and a three-row one ("narrow").
  for (const int rows : {1, 3})
    for (const bool overlap : {false, true}) {
      Rng rr(seed + 99 + rows);
      auto res0 = normals(rr, size_t(rows) * sh.H, 1.5f);
      DevBuf<float> de(res0.size()), dg(res0.size());
      de.upload(res0);
      gpu::set_launch_overlap(false);
      gpu::moe_forward_decode(dm.w, dn.p, 1e-5f, de.p, rows, s, nullptr);
      GPU_CHECK(gpuDeviceSynchronize());
      auto eager = de.download();
      gpu::set_launch_overlap(overlap);
      gpuStream_t st;
      GPU_CHECK(gpuStreamCreateNonBlocking(&st));
      gpuGraph_t graph;
      GPU_CHECK(gpuStreamBeginCapture(st));
      gpu::moe_forward_decode(dm.w, dn.p, 1e-5f, dg.p, rows, s, st);
      GPU_CHECK(gpuStreamEndCapture(st, &graph));
      gpuGraphExec_t exec;
      GPU_CHECK(gpuGraphInstantiate(&exec, graph));
      for (int rep = 0; rep < 2; ++rep) {
        dg.upload(res0);
        GPU_CHECK(gpuGraphLaunch(exec, st));
        GPU_CHECK(gpuStreamSynchronize(st));
        auto g = dg.download();
        EXPECT_EQ(0, std::memcmp(g.data(), eager.data(), g.size() * 4))
            << "rows " << rows << " overlap " << overlap << " replay " << rep;
      }
      GPU_CHECK(gpuGraphExecDestroy(exec));
      GPU_CHECK(gpuGraphDestroy(graph));
      GPU_CHECK(gpuStreamDestroy(st));
      gpu::set_launch_overlap(false);
    }
}

// bench-kernels --moe-shapes' candidate block shapes (NVIDIA) sum K in the same parts as the
// launch shapes, so each must give moe_forward_decode's bits exactly, for 1 and 4 rows.
void check_moe_candidates(const moetest::MoeShape& sh, uint64_t seed) {
  MoeDecodeSetup m(sh, seed, seed + 5);
  const moetest::DevMoe& dm = m.dm;
  const DevBuf<uint16_t>& dn = m.dn;
  gpu::MoeDecodeScratch& s = m.s;
  Rng& r = m.r;
  for (int rows : {1, gpu::kDecodeMaxRows}) {
    auto res0 = normals(r, size_t(rows) * sh.H, 1.5f);
    DevBuf<float> d(res0.size());
    d.upload(res0);
    gpu::moe_forward_decode(dm.w, dn.p, 1e-5f, d.p, rows, s, nullptr);
    GPU_CHECK(gpuDeviceSynchronize());
    const auto want = d.download();
    ASSERT_NE(0, std::memcmp(want.data(), res0.data(), want.size() * 4)) << "the block changed nothing";
    for (int c = 0; c < gpu::moe_decode_candidates(); ++c) {
      d.upload(res0);
      gpu::moe_forward_decode_candidate(c, dm.w, dn.p, 1e-5f, d.p, rows, s, nullptr);
      GPU_CHECK(gpuDeviceSynchronize());
      const auto got = d.download();
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * 4))
          << "rows " << rows << " candidate " << c << " (" << gpu::moe_decode_candidate_name(c) << ")";
    }
  }
}

TEST(GpuDecode, moe_shape_candidates_same_bits) {
  REQUIRE_GPU();
  check_moe_candidates({8, 4, 192, 192, 7.0f}, 31);
  check_moe_candidates({32, 4, 2880, 2880, 7.0f}, 32);
}

// The fused expert matmuls (MoeDecodeScratch::fused, NVIDIA; the wide shapes at one row, the
// narrow ones at 2-4; level 2 with the router's work inside the launch at one row) give the
// separate launches' bits: eagerly, and as a graph of three MoE blocks in
// a row (the same residual through each, so every block's routing differs) replayed three times
// with launch overlap on and off, so the work queue and the per-pair counters must come back to 0
// after every launch, also when the next launch starts early; and eagerly with the grid capped at
// 1 and 3 blocks (MoeDecodeScratch::fused_grid_cap), so that blocks take many items each and an
// item's wait can only end through items its own block or a few others ran.
void check_moe_fused(const moetest::MoeShape& sh, uint64_t seed, int level) {
  MoeDecodeSetup m(sh, seed, seed + 9);
  gpu::MoeDecodeScratch& s = m.s;
  auto chain = [&](float* res, int rows, int blocks, gpuStream_t st) {
    for (int i = 0; i < blocks; ++i) gpu::moe_forward_decode(m.dm.w, m.dn.p, 1e-5f, res, rows, s, st);
  };
  for (int rows : {1, 2, gpu::kDecodeMaxRows}) {
    const auto res0 = normals(m.r, size_t(rows) * sh.H, 1.5f);
    DevBuf<float> d(res0.size());
    gpu::moe_decode_use_fused(s, 0);
    d.upload(res0);
    chain(d.p, rows, 3, nullptr);
    GPU_CHECK(gpuDeviceSynchronize());
    const auto want = d.download();
    ASSERT_NE(0, std::memcmp(want.data(), res0.data(), want.size() * 4)) << "the blocks changed nothing";
    gpu::moe_decode_use_fused(s, level);
    std::vector<float> got;
    for (int cap : {0, 1, 3}) {
      s.fused_grid_cap = cap;
      d.upload(res0);
      chain(d.p, rows, 3, nullptr);
      GPU_CHECK(gpuDeviceSynchronize());
      got = d.download();
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * 4))
          << "level " << level << " rows " << rows << " eager, grid cap " << cap;
    }
    s.fused_grid_cap = 0;
    for (bool overlap : {true, false}) {
      gpu::set_launch_overlap(overlap);
      gpuStream_t st;
      GPU_CHECK(gpuStreamCreateNonBlocking(&st));
      gpuGraph_t graph;
      GPU_CHECK(gpuStreamBeginCapture(st));
      chain(d.p, rows, 3, st);
      GPU_CHECK(gpuStreamEndCapture(st, &graph));
      gpuGraphExec_t exec;
      GPU_CHECK(gpuGraphInstantiate(&exec, graph));
      for (int rep = 0; rep < 3; ++rep) {
        d.upload(res0);
        GPU_CHECK(gpuDeviceSynchronize());  // the upload landed before the graph (another stream)
        GPU_CHECK(gpuGraphLaunch(exec, st));
        GPU_CHECK(gpuStreamSynchronize(st));
        got = d.download();
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * 4))
            << "level " << level << " rows " << rows << " overlap " << overlap << " replay " << rep;
      }
      GPU_CHECK(gpuGraphExecDestroy(exec));
      GPU_CHECK(gpuGraphDestroy(graph));
      GPU_CHECK(gpuStreamDestroy(st));
    }
    gpu::set_launch_overlap(false);
    gpu::moe_decode_use_fused(s, 0);
  }
}

TEST(GpuDecode, moe_fused_experts_same_bits) {
  REQUIRE_GPU();
  if (gpu::kTarget.vendor != gpu::GpuVendor::nvidia) GTEST_SKIP() << "the fused expert matmuls are NVIDIA only";
  for (int level : {1, 2}) {
    check_moe_fused({8, 4, 192, 192, 7.0f}, 41, level);
    check_moe_fused({32, 4, 2880, 2880, 7.0f}, 42, level);
    check_moe_fused({128, 4, 2880, 2880, 7.0f}, 43, level);
  }
}

TEST(GpuDecode, moe_tiny_shape) {
  REQUIRE_GPU();
  check_moe_decode({8, 4, 192, 192, 7.0f}, 3);
}
TEST(GpuDecode, moe_20b_shape) {
  REQUIRE_GPU();
  check_moe_decode({32, 4, 2880, 2880, 7.0f}, 4);
}
TEST(GpuDecode, moe_120b_router) {
  REQUIRE_GPU();
  check_moe_decode({128, 4, 2880, 2880, 7.0f}, 5);
}

}  // namespace
}  // namespace gptoss
