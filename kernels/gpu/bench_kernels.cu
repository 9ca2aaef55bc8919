// bench_kernels.cu: the `bench-kernels` program: times each GPU kernel at the gpt-oss-20b shapes
// and prints one JSON object per line (kernel, shape, rows, median microseconds, achieved GB/s
// counting each input byte read once and each output byte written once, TFLOP/s for matmuls).
// Weights are rotated among enough copies (> 2x the L2 cache) so timings come from HBM, not L2.
// Usage: bench-kernels [--reps N] [--overlap 0|1] [--read-bw | --fast-gemm | --decode | --moe-shapes |
//                      --moe-probes]
//   --overlap: launch overlap (vendor.h gpu_launch) for the kernels that use it; default 1, as the
//   engine's default (BackendOptions::launch_overlap), so the decode chains time what a step runs.
//   --fast-gemm: only the fast (bf16 x bf16) GEMM at the qkv, o and LM-head shapes for 64..512
//   rows: the mma.sync kernel without and with its K split and the wgmma kernel where it runs
//   (NVIDIA), one JSON line each (kernel names the kernel and the splits).
//   --decode: only the batch-1 decode matmuls (decode.h) at the 20b qkv (with its RMSNorm) and
//   output-projection shapes, each as a chain of 32 launches over rotating weight copies (as a
//   decode step issues them back to back), next to the read probe over the same bytes per launch
//   (how fast one kernel can stream that many bytes at all): us per launch and GB/s; then the MoE
//   block (moe_forward_decode, 1 row) the same way, and with its expert matmuls as one launch
//   (MoeDecodeScratch::fused; NVIDIA), with and without the router inside it.
//   --moe-shapes: --decode, plus the MoE block with each candidate expert-matmul block shape
//   (decode.h moe_forward_decode_candidate; NVIDIA), one line each, to choose launch_shapes.h's.
//   --moe-probes: --decode, plus the one-row MoE chain with parts left out (the weight streams
//   alone, with the input staging, without the epilogue, without the router's launch;
//   decode.h moe_forward_decode_probe; NVIDIA) and the read probe over the chain's bytes as 3, 2
//   and 1 dependent launches: where the chain's time over the probe's goes.
//   --read-bw: only the read-bandwidth probe (a 4 GiB buffer read once with 16-byte loads from
//   every SM; gpu::read_bandwidth_probe): one JSON line, the ceiling decode steps are measured
//   against.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gpu/decode.h"
#include "gpu/ops.h"
#include "gpu/sample.h"
#include "gpu/vendor.h"

using namespace gptoss;

namespace {

int g_reps = 50;
gpuStream_t g_stream;
size_t g_l2_bytes = 50u << 20;

void* dalloc_random(size_t bytes, uint64_t seed) {
  void* p;
  GPU_CHECK(gpuMalloc(&p, bytes));
  // Random bf16-ish bit patterns with a bounded exponent (no NaN/Inf): fill on the host in chunks.
  std::vector<uint16_t> h(std::min<size_t>(bytes / 2, size_t(1) << 24));
  std::mt19937_64 rng(seed);
  for (auto& v : h) v = uint16_t((rng() & 0x807f) | (0x3c00 + (rng() % 0x300)));
  for (size_t off = 0; off < bytes; off += h.size() * 2)
    GPU_CHECK(gpuMemcpy(static_cast<char*>(p) + off, h.data(), std::min(h.size() * 2, bytes - off),
                        gpuMemcpyHostToDevice));
  return p;
}

float* dalloc_f32(size_t n, uint64_t seed) {
  std::vector<float> h(n);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd;
  for (auto& v : h) v = nd(rng);
  float* p;
  GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&p), n * 4));
  GPU_CHECK(gpuMemcpy(p, h.data(), n * 4, gpuMemcpyHostToDevice));
  return p;
}

// Median of per-launch times (each timed with its own event pair after warm-up).
double time_us(const std::function<void(int)>& f, int reps = g_reps) {
  for (int i = 0; i < 3; ++i) f(i);
  GPU_CHECK(gpuStreamSynchronize(g_stream));
  gpuEvent_t a, b;
  GPU_CHECK(gpuEventCreate(&a));
  GPU_CHECK(gpuEventCreate(&b));
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    GPU_CHECK(gpuEventRecord(a, g_stream));
    f(i);
    GPU_CHECK(gpuEventRecord(b, g_stream));
    GPU_CHECK(gpuEventSynchronize(b));
    float t;
    GPU_CHECK(gpuEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  GPU_CHECK(gpuEventDestroy(a));
  GPU_CHECK(gpuEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2] * 1000.0;
}

void report(const char* kernel, const std::string& shape, int rows, double us, double bytes,
            double flops) {
  std::printf("{\"kernel\": \"%s\", \"shape\": \"%s\", \"rows\": %d, \"us\": %.2f, \"GBps\": %.1f, "
              "\"TFLOPs\": %.2f}\n",
              kernel, shape.c_str(), rows, us, bytes / us / 1e3, flops / us / 1e6);
  std::fflush(stdout);
}

void bench_matmul(const char* name, int K, int M, const std::vector<int>& rows_list) {
  const size_t wbytes = size_t(M) * K * 2;
  const int copies = int(std::max<size_t>(1, (3 * g_l2_bytes + wbytes - 1) / wbytes));
  std::vector<bf16_t*> w(copies);
  for (int i = 0; i < copies; ++i) w[i] = static_cast<bf16_t*>(dalloc_random(wbytes, 100 + i));
  bf16_t* bias = static_cast<bf16_t*>(dalloc_random(size_t(M) * 2, 7));
  const int max_rows = *std::max_element(rows_list.begin(), rows_list.end());
  float* x = dalloc_f32(size_t(max_rows) * K, 1);
  float* y;
  GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&y), size_t(max_rows) * M * 4));
  for (int rows : rows_list) {
    const bool gemm = rows > gpu::kGemvMaxRows;
    double us = time_us([&](int i) {
      gpu::f32_bf16w_matmul(x, w[i % copies], bias, y, rows, K, M, false, g_stream);
    });
    const double bytes = double(wbytes) + double(rows) * K * 4 + double(rows) * M * 4 + M * 2;
    report(gemm ? "f32_bf16w_gemm" : "f32_bf16w_gemv",
           std::string(name) + " " + std::to_string(M) + "x" + std::to_string(K), rows, us, bytes,
           2.0 * rows * double(M) * K);
  }
  for (auto p : w) GPU_CHECK(gpuFree(p));
  GPU_CHECK(gpuFree(bias));
  GPU_CHECK(gpuFree(x));
  GPU_CHECK(gpuFree(y));
}

#if !defined(GPTOSS_HIP)
// The fast GEMM (bf16 x, as precision fast runs it after f32_to_bf16): the mma.sync kernel with
// 1 K split and with fast_gemm_splits(K, M), and the wgmma kernel where it runs.
void bench_fast_gemm(const char* name, int K, int M, const std::vector<int>& rows_list) {
  const size_t wbytes = size_t(M) * K * 2;
  const int copies = int(std::max<size_t>(1, (3 * g_l2_bytes + wbytes - 1) / wbytes));
  std::vector<bf16_t*> w(copies);
  for (int i = 0; i < copies; ++i) w[i] = static_cast<bf16_t*>(dalloc_random(wbytes, 100 + i));
  bf16_t* bias = static_cast<bf16_t*>(dalloc_random(size_t(M) * 2, 7));
  const int max_rows = *std::max_element(rows_list.begin(), rows_list.end());
  bf16_t* x = static_cast<bf16_t*>(dalloc_random(size_t(max_rows) * K * 2, 1));
  float* y;
  uint32_t* sem;
  GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&y), size_t(max_rows) * M * 4));
  GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&sem), gpu::kGemmSemSlots * 4));
  GPU_CHECK(gpuMemset(sem, 0, gpu::kGemmSemSlots * 4));
  const int auto_splits = gpu::fast_gemm_splits(K, M);
  const double flops_per_row = 2.0 * double(M) * K;
  const std::string shape = std::string(name) + " " + std::to_string(M) + "x" + std::to_string(K);
  for (int rows : rows_list) {
    const double bytes = double(wbytes) + double(rows) * K * 2 + double(rows) * M * 4 + M * 2;
    for (int splits : {1, auto_splits}) {
      double us = time_us([&](int i) {
        gpu::bf16_bf16w_gemm(x, w[i % copies], bias, y, rows, K, M, false, g_stream, sem, splits,
                             gpu::GemmKernel::mma);
      });
      const std::string kernel = "bf16_bf16w_gemm mma splits " + std::to_string(splits);
      report(kernel.c_str(), shape, rows, us, bytes, rows * flops_per_row);
      if (auto_splits == 1) break;
    }
    if (gpu::gemm_wgmma_available()) {
      double us = time_us([&](int i) {
        gpu::bf16_bf16w_gemm(x, w[i % copies], bias, y, rows, K, M, false, g_stream, sem, 1,
                             gpu::GemmKernel::wgmma);
      });
      report("bf16_bf16w_gemm wgmma", shape, rows, us, bytes, rows * flops_per_row);
    }
  }
  for (auto p : w) GPU_CHECK(gpuFree(p));
  GPU_CHECK(gpuFree(bias));
  GPU_CHECK(gpuFree(x));
  GPU_CHECK(gpuFree(y));
  GPU_CHECK(gpuFree(sem));
}
#endif

// Median over --reps / 5 (at least 3) chains of n launches, over n: back-to-back launches as a
// decode step makes them.
double chain_us(int n, const std::function<void(int)>& f) {
  return time_us([&](int) {
    for (int i = 0; i < n; ++i) f(i);
  }, std::max(3, g_reps / 5)) / n;
}

void bench_decode(const char* name, int K, int M, bool norm, int blocks_probe) {
  const size_t wbytes = size_t(M) * K * 2;
  const int copies = int(std::max<size_t>(2, (3 * g_l2_bytes + wbytes - 1) / wbytes));
  std::vector<bf16_t*> w(copies);
  for (int i = 0; i < copies; ++i) w[i] = static_cast<bf16_t*>(dalloc_random(wbytes, 200 + i));
  bf16_t* bias = static_cast<bf16_t*>(dalloc_random(size_t(M) * 2, 8));
  bf16_t* nw = static_cast<bf16_t*>(dalloc_random(size_t(K) * 2, 9));
  float* x = dalloc_f32(size_t(K), 2);
  float *y, *partial;
  GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&y), size_t(M) * 4));
  GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&partial), size_t(blocks_probe) * 4));
  constexpr int kChain = 32;
  const std::string shape = std::string(name) + " " + std::to_string(M) + "x" + std::to_string(K);
  const double us = chain_us(kChain, [&](int i) {
    gpu::DecodeMatmul a;
    a.x = x, a.norm_w = norm ? nw : nullptr, a.eps = 1e-5f, a.w = w[i % copies], a.bias = bias;
    a.y = y, a.rows = 1, a.K = K, a.M = M;
    gpu::f32_bf16w_matmul_decode(a, g_stream);
  });
  report("matmul_decode", shape, 1, us, double(wbytes), 2.0 * double(M) * K);
  const double probe = chain_us(kChain, [&](int i) {
    gpu::read_bandwidth_probe(w[i % copies], wbytes, blocks_probe, partial, g_stream);
  });
  report("read_probe (same bytes)", shape, 1, probe, double(wbytes), 0);
  for (auto p : w) GPU_CHECK(gpuFree(p));
  for (void* p : {(void*)bias, (void*)nw, (void*)x, (void*)y, (void*)partial}) GPU_CHECK(gpuFree(p));
}

// The decode path's MoE block (moe_forward_decode: router + both expert matmuls + combine) at the
// 20b shape for one row, as a chain of 24 launches over rotating copies of a layer's 32 experts
// (> 3x the L2 together), next to the read probe over the bytes one launch reads (the 4 chosen
// experts' blocks, scales and biases, the router). The MXFP4 scales are small (2^-10..2^-7) so the
// residual, which each launch adds into, stays put and the router keeps choosing 4 experts.
void bench_moe_decode(int blocks_probe, bool candidates, bool probes) {
  const int E = 32, k = 4, H = 2880, I = 2880;
  const size_t b1 = size_t(E) * 2 * I * H / 2, s1 = size_t(E) * 2 * I * H / 32;
  const size_t b2 = size_t(E) * H * I / 2, s2 = size_t(E) * H * I / 32;
  const int copies = 4;  // 4 x 4 chosen experts x 13 MB: over 4x the L2
  auto scales = [](size_t n, uint64_t seed) {
    std::vector<uint8_t> h(n);
    std::mt19937_64 rng(seed);
    for (auto& v : h) v = uint8_t(117 + rng() % 4);
    void* p;
    GPU_CHECK(gpuMalloc(&p, n));
    GPU_CHECK(gpuMemcpy(p, h.data(), n, gpuMemcpyHostToDevice));
    return static_cast<const uint8_t*>(p);
  };
  std::vector<gpu::MoeGpuWeights> w(copies);
  for (int i = 0; i < copies; ++i) {
    gpu::MoeGpuWeights& l = w[i];
    l.n_experts = E, l.top_k = k, l.hidden = H, l.intermediate = I, l.swiglu_limit = 7.0f;
    l.router_w = static_cast<const uint16_t*>(dalloc_random(size_t(E) * H * 2, 300 + i));
    l.router_b = static_cast<const uint16_t*>(dalloc_random(size_t(E) * 2, 400 + i));
    l.mlp1_blocks = static_cast<const uint8_t*>(dalloc_random(b1, 500 + i));
    l.mlp1_scales = scales(s1, 600 + i);
    l.mlp1_bias = static_cast<const uint16_t*>(dalloc_random(size_t(E) * 2 * I * 2, 700 + i));
    l.mlp2_blocks = static_cast<const uint8_t*>(dalloc_random(b2, 800 + i));
    l.mlp2_scales = scales(s2, 900 + i);
    l.mlp2_bias = static_cast<const uint16_t*>(dalloc_random(size_t(E) * H * 2, 1000 + i));
  }
  bf16_t* nw = static_cast<bf16_t*>(dalloc_random(size_t(H) * 2, 9));
  float* x = dalloc_f32(size_t(H), 3);
  float* partial;
  GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&partial), size_t(blocks_probe) * 4));
  gpu::MoeDecodeScratch s = gpu::moe_decode_scratch_create(w[0], 1);
  const double bytes = double(k) * double(b1 + s1 + b2 + s2) / E + double(k) * (2 * I + H) * 2 +
                       double(E) * H * 2;
  constexpr int kChain = 24;
  const std::string shape = "20b 1 row, " + std::to_string(E) + " experts top " + std::to_string(k);
  const double us = chain_us(kChain, [&](int i) {
    gpu::moe_forward_decode(w[i % copies], nw, 1e-5f, x, 1, s, g_stream);
  });
  report("moe_forward_decode", shape, 1, us, bytes, 2.0 * k * (2.0 * I * H + double(H) * I));
#if !defined(GPTOSS_HIP)
  for (int level : {1, 2}) {  // both expert matmuls as one launch (MoeDecodeScratch::fused), 2: with the router
    gpu::moe_decode_use_fused(s, level);
    const double uf = chain_us(kChain, [&](int i) {
      gpu::moe_forward_decode(w[i % copies], nw, 1e-5f, x, 1, s, g_stream);
    });
    gpu::moe_decode_use_fused(s, 0);
    report(level == 1 ? "moe_forward_decode fused experts" : "moe_forward_decode fused router + experts", shape, 1,
           uf, bytes, 2.0 * k * (2.0 * I * H + double(H) * I));
  }
#endif
  for (int c = 0; candidates && c < gpu::moe_decode_candidates(); ++c) {  // --moe-shapes
    const double uc = chain_us(kChain, [&](int i) {
      gpu::moe_forward_decode_candidate(c, w[i % copies], nw, 1e-5f, x, 1, s, g_stream);
    });
    const std::string name = "moe_forward_decode shape " + std::to_string(c) + " (" + gpu::moe_decode_candidate_name(c) + ")";
    report(name.c_str(), shape, 1, uc, bytes, 2.0 * k * (2.0 * I * H + double(H) * I));
  }
  const double probe = chain_us(kChain, [&](int i) {
    gpu::read_bandwidth_probe(w[i % copies].mlp1_blocks, size_t(bytes) & ~size_t(15), blocks_probe,
                              partial, g_stream);
  });
  report("read_probe (same bytes)", shape, 1, probe, bytes, 0);
  if (probes) {  // --moe-probes: where the chain's time goes (moe_decode.cu kProbes)
    // The chain with parts of its expert matmuls left out (results meaningless; times only).
    gpu::moe_forward_decode(w[0], nw, 1e-5f, x, 1, s, g_stream);  // experts for the router-less probes
    for (int c = 0; c < gpu::moe_decode_probes(); ++c) {
      const double up = chain_us(kChain, [&](int i) {
        gpu::moe_forward_decode_probe(c, w[i % copies], nw, 1e-5f, x, s, g_stream);
      });
      const std::string name = "moe_decode probe " + std::to_string(c) + " (" + gpu::moe_decode_probe_name(c) + ")";
      report(name.c_str(), shape, 1, up, bytes, 0);
    }
    // The read probe launched as the chain's kernels are (waiting for the previous launch before
    // its first load): the router's, mlp1's and mlp2's bytes as three dependent launches, mlp1's
    // and mlp2's as two, all of them as one. Disjoint ranges of a copy's mlp1 blocks (265 MB).
    const size_t br = size_t(E) * H * 2;
    const size_t bm1 = (size_t(k) * (b1 + s1) / E + size_t(k) * 2 * I * 2) & ~size_t(15);
    const size_t bm2 = (size_t(k) * (b2 + s2) / E + size_t(k) * H * 2) & ~size_t(15);
    const size_t off1 = (br + 4095) & ~size_t(4095), off2 = (off1 + bm1 + 4095) & ~size_t(4095);
    struct Piece {
      size_t off, n;
    };
    const std::vector<std::pair<const char*, std::vector<Piece>>> splits = {
        {"read_probe chained x3 (router, mlp1, mlp2 bytes)", {{0, br}, {off1, bm1}, {off2, bm2}}},
        {"read_probe chained x2 (mlp1, mlp2 bytes)", {{off1, bm1}, {off2, bm2}}},
        {"read_probe chained x1 (all bytes)", {{0, size_t(bytes) & ~size_t(15)}}}};
    for (const auto& [name, pieces] : splits) {
      double total = 0;
      for (const Piece& pc : pieces) total += double(pc.n);
      const double uc = chain_us(kChain, [&](int i) {
        for (const Piece& pc : pieces)
          gpu::read_bandwidth_probe_chained(w[i % copies].mlp1_blocks + pc.off, pc.n, blocks_probe, partial,
                                            g_stream);
      });
      report(name, shape, 1, uc, total, 0);
    }
  }
  gpu::moe_decode_scratch_destroy(s);
  for (auto& l : w)
    for (const void* p : {(const void*)l.router_w, (const void*)l.router_b, (const void*)l.mlp1_blocks,
                          (const void*)l.mlp1_scales, (const void*)l.mlp1_bias, (const void*)l.mlp2_blocks,
                          (const void*)l.mlp2_scales, (const void*)l.mlp2_bias})
      GPU_CHECK(gpuFree(const_cast<void*>(p)));
  for (void* p : {(void*)nw, (void*)x, (void*)partial}) GPU_CHECK(gpuFree(p));
}

void bench_attention(int ctx_pos, int window, int rows, int slots) {
  const int nh = 64, nkv = 8, hd = 64, R = (nh + 2 * nkv) * hd;
  const int cap = window ? window + 256 : ctx_pos + 1;
  const int max_keys = window ? window : cap;
  const int kv_chunk = window ? 64 : std::max(128, ((cap + 31) / 32 + 63) / 64 * 64);
  const size_t cache = size_t(slots) * cap * nkv * hd;
  bf16_t* k = static_cast<bf16_t*>(dalloc_random(cache * 2, 3));
  bf16_t* v = static_cast<bf16_t*>(dalloc_random(cache * 2, 4));
  bf16_t* sinks = static_cast<bf16_t*>(dalloc_random(nh * 2, 5));
  float* qkv = dalloc_f32(size_t(rows) * R, 6);
  float *out, *part;
  GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&out), size_t(rows) * nh * hd * 4));
  GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&part),
                      gpu::attention_partial_floats(nh, max_keys, kv_chunk) * 4));
  GPU_CHECK(gpuMemset(part, 0, gpu::attention_partial_floats(nh, max_keys, kv_chunk) * 4));
  std::vector<int32_t> pos(rows, ctx_pos), slot(rows);
  for (int i = 0; i < rows; ++i) slot[i] = i % slots;
  int32_t *dpos, *dslot;
  GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&dpos), rows * 4));
  GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&dslot), rows * 4));
  GPU_CHECK(gpuMemcpy(dpos, pos.data(), rows * 4, gpuMemcpyHostToDevice));
  GPU_CHECK(gpuMemcpy(dslot, slot.data(), rows * 4, gpuMemcpyHostToDevice));
  double us = time_us([&](int) {
    gpu::f32_bf16kv_attention_sinks(qkv, k, v, sinks, dpos, dslot, rows, nh, nkv, hd, cap, {},
                                    window, max_keys, kv_chunk, part, out, g_stream);
  });
  const int keys = window ? std::min(window, ctx_pos + 1) : ctx_pos + 1;
  const double bytes = double(std::min(rows, slots)) * keys * nkv * hd * 2 * 2;
  report("f32_bf16kv_attention_sinks",
         "keys " + std::to_string(keys) + (window ? " sliding" : " full") + " slots " +
             std::to_string(slots),
         rows, us, bytes, 4.0 * rows * nh * double(keys) * hd);
  for (void* p : {(void*)k, (void*)v, (void*)sinks, (void*)qkv, (void*)out, (void*)part,
                  (void*)dpos, (void*)dslot})
    GPU_CHECK(gpuFree(p));
}

}  // namespace

int main(int argc, char** argv) {
  return guarded_main("bench-kernels", [&] {
    bool read_bw_only = false, fast_gemm_only = false, decode_only = false, overlap = true, shapes = false,
         probes = false;
    for (int i = 1; i < argc; ++i) {
      if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) g_reps = std::atoi(argv[++i]);
      else if (!std::strcmp(argv[i], "--overlap") && i + 1 < argc) {
        const std::string v = argv[++i];
        if (v != "0" && v != "1") fail("bench-kernels: --overlap %s: expected 0 or 1", v.c_str());
        overlap = v == "1";
      }
      else if (!std::strcmp(argv[i], "--read-bw")) read_bw_only = true;
      else if (!std::strcmp(argv[i], "--fast-gemm")) fast_gemm_only = true;
      else if (!std::strcmp(argv[i], "--decode")) decode_only = true;
      else if (!std::strcmp(argv[i], "--moe-shapes")) decode_only = shapes = true;
      else if (!std::strcmp(argv[i], "--moe-probes")) decode_only = probes = true;
      else fail("bench-kernels: unknown argument '%s' (usage: bench-kernels [--reps N] [--overlap 0|1] "
                "[--read-bw | --fast-gemm | --decode | --moe-shapes | --moe-probes])", argv[i]);
    }
    gpu::require_device();
    gpu::set_launch_overlap(overlap);
    gpuDeviceProp prop;
    GPU_CHECK(gpuGetDeviceProperties(&prop, 0));
    g_l2_bytes = size_t(prop.l2CacheSize);
    std::fprintf(stderr, "bench-kernels: %s, %d SMs/CUs, L2 %zu MiB, %s, launch overlap %s\n", prop.name,
                 prop.multiProcessorCount, g_l2_bytes >> 20, GPU_RT_NAME, overlap ? "on" : "off");
    GPU_CHECK(gpuStreamCreateNonBlocking(&g_stream));
    if (decode_only) {
      bench_decode("qkv+norm", 2880, 5120, true, 4 * prop.multiProcessorCount);
      bench_decode("o", 4096, 2880, false, 4 * prop.multiProcessorCount);
      bench_moe_decode(4 * prop.multiProcessorCount, shapes, probes);
      return 0;
    }
    if (fast_gemm_only) {
#if defined(GPTOSS_HIP)
      fail("bench-kernels: --fast-gemm: the fast GEMM is NVIDIA only");
#else
      bench_fast_gemm("qkv", 2880, 5120, {64, 256, 512});
      bench_fast_gemm("o", 4096, 2880, {64, 256, 512});
      bench_fast_gemm("lm_head", 2880, 201088, {256});
      return 0;
#endif
    }

    {  // Read bandwidth: 4 GiB read once per launch (16x the L2), the decode steps' ceiling.
      const size_t n = size_t(4) << 30;
      const int blocks = 4 * prop.multiProcessorCount;
      void* a;
      float* partial;
      GPU_CHECK(gpuMalloc(&a, n));
      GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&partial), blocks * sizeof(float)));
      GPU_CHECK(gpuMemset(a, 1, n));
      double us = time_us([&](int) { gpu::read_bandwidth_probe(a, n, blocks, partial, g_stream); });
      report("read_bandwidth", "4 GiB", 0, us, double(n), 0);
      GPU_CHECK(gpuFree(a));
      GPU_CHECK(gpuFree(partial));
    }
    if (read_bw_only) return 0;

    {  // Copy bandwidth ceiling: 1 GiB device-to-device, bytes read + written.
      const size_t n = size_t(1) << 30;
      void *a, *b;
      GPU_CHECK(gpuMalloc(&a, n));
      GPU_CHECK(gpuMalloc(&b, n));
      GPU_CHECK(gpuMemset(a, 1, n));
      double us = time_us([&](int) {
        GPU_CHECK(gpuMemcpyAsync(b, a, n, gpuMemcpyDeviceToDevice, g_stream));
      });
      report("memcpy_d2d", "1 GiB", 0, us, 2.0 * n, 0);
      GPU_CHECK(gpuFree(a));
      GPU_CHECK(gpuFree(b));
    }
    const std::vector<int> rows_list = {1, 2, 4, 8, 64, 512};
    bench_matmul("qkv", 2880, 5120, rows_list);
    bench_matmul("o", 4096, 2880, rows_list);
    bench_matmul("router", 2880, 32, {1, 8, 512});
    bench_matmul("lm_head", 2880, 201088, {1, 4, 8, 64, 512});
    for (int rows : {1, 8, 64}) {
      bench_attention(4095, 0, rows, rows);
      bench_attention(4095, 128, rows, rows);
    }
    bench_attention(511, 0, 512, 1);  // a 512-token prompt chunk, last position
    {  // RMSNorm, embedding, argmax.
      const int H = 2880, V = 201088;
      float* x = dalloc_f32(size_t(512) * H, 9);
      float* y;
      GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&y), size_t(512) * H * 4));
      bf16_t* scale = static_cast<bf16_t*>(dalloc_random(H * 2, 10));
      for (int rows : {1, 512}) {
        double us = time_us([&](int) {
          gpu::f32_bf16w_rmsnorm(x, scale, y, rows, H, 1e-5f, nullptr, g_stream);
        });
        report("f32_bf16w_rmsnorm", "2880", rows, us, 8.0 * rows * H, 0);
      }
      bf16_t* emb = static_cast<bf16_t*>(dalloc_random(size_t(V) * H * 2, 11));
      std::vector<int32_t> tok(512);
      for (int i = 0; i < 512; ++i) tok[i] = (i * 7919) % V;
      int32_t* dtok;
      GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&dtok), 512 * 4));
      GPU_CHECK(gpuMemcpy(dtok, tok.data(), 512 * 4, gpuMemcpyHostToDevice));
      for (int rows : {1, 512}) {
        double us = time_us([&](int) { gpu::bf16_embed(emb, dtok, rows, H, y, g_stream); });
        report("bf16_embed", "201088x2880", rows, us, 6.0 * rows * H, 0);
      }
      float* logits = dalloc_f32(size_t(8) * V, 12);
      for (int rows : {1, 8}) {
        double us = time_us([&](int) { gpu::f32_argmax(logits, rows, V, dtok, g_stream); });
        report("f32_argmax", "201088", rows, us, 4.0 * rows * V, 0);
      }
      for (void* p : {(void*)x, (void*)y, (void*)scale, (void*)emb, (void*)dtok, (void*)logits})
        GPU_CHECK(gpuFree(p));
    }
    {  // Token choice on the device (sample.h): logits N(0, 1), every row with the same pick.
      const int V = 201088, max_rows = 256;
      float* logits = dalloc_f32(size_t(max_rows) * V, 13);
      int32_t* dtok;
      TokenPick* dpick;
      GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&dtok), max_rows * 4));
      GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&dpick), max_rows * sizeof(TokenPick)));
      gpu::PickScratch ps = gpu::pick_scratch_create(max_rows, V);
      struct Mode {
        const char* name;
        TokenPick p;
      };
      const Mode modes[] = {{"greedy", {0.0f, 0, 1.0f, 0, 0.0}},
                            {"T=1", {1.0f, 0, 1.0f, 0, 0.5}},
                            {"top_k=40", {1.0f, 40, 1.0f, 0, 0.5}},
                            {"top_p=0.9", {1.0f, 0, 0.9f, 0, 0.5}}};
      for (const Mode& m : modes)
        for (int rows : {1, 64, 256}) {
          std::vector<TokenPick> hp(rows, m.p);
          GPU_CHECK(gpuMemcpy(dpick, hp.data(), rows * sizeof(TokenPick), gpuMemcpyHostToDevice));
          double us = time_us(
              [&](int) { gpu::pick_tokens(logits, rows, V, dpick, dtok, ps, g_stream); });
          report((std::string("pick_tokens ") + m.name).c_str(), "201088", rows, us,
                 4.0 * rows * V, 0);
        }
      gpu::pick_scratch_destroy(ps);
      for (void* p : {(void*)logits, (void*)dtok, (void*)dpick}) GPU_CHECK(gpuFree(p));
    }
    GPU_CHECK(gpuStreamDestroy(g_stream));
    return 0;
  });
}
