// kernels/gpu/decode_device.h: device helpers the decode path's kernels share (internal: include
// from kernels/gpu/decode.cu and moe_decode.cu only): the block shape, staging of the input rows
// (optionally RMSNorm-ed) in shared memory, and the 8-element bf16 dot-product step.
#pragma once
#include <cstdint>

#include "gpu/decode.h"
#include "gpu/device_utils.h"

namespace gptoss::gpu::decode_detail {

// Host: the dense decode kernels' launch attributes (once per process; before any capture).
void decode_dense_init();

constexpr int kThreads = kDecodeThreads;
constexpr int kWaves = kThreads / kWaveSize;
// Chunks (16 bytes = 8 bf16) per lane per weight row: the whole row for K up to kSmallK / kBigK.
constexpr int kSmallK = kDecodeSmallK, kBigK = kDecodeMaxK;
constexpr int kSmallNC = kSmallK / 8 / kWaveSize, kBigNC = kBigK / 8 / kWaveSize;
static_assert(kSmallK % (8 * kWaveSize) == 0 && kBigK % (8 * kWaveSize) == 0, "whole chunks");
// Dynamic shared memory a decode kernel may take (the target's per-block limit less the kernels'
// small static arrays; NVIDIA needs the opt-in above 48 KiB).
inline constexpr size_t kDecodeSmemLimit = kTarget.max_smem_per_block - kDecodeStaticSmemBytes;
static_assert(kWaves * sizeof(double) + 16 <= kDecodeStaticSmemBytes, "static arrays within the bound");

// Shared input rows: row r at floats [r * K, (r + 1) * K): first K / 2 floats = lo[c] (elements
// 8c .. 8c + 3, float4), then K / 2 floats = hi[c] (8c + 4 .. 8c + 7), so a wave's lane-strided
// float4 reads are consecutive (no bank conflicts).
__device__ __forceinline__ const float4* xs_lo(const float* xs, int r, int K) {
  return reinterpret_cast<const float4*>(xs + static_cast<size_t>(r) * K);
}
__device__ __forceinline__ const float4* xs_hi(const float* xs, int r, int K) {
  return reinterpret_cast<const float4*>(xs + static_cast<size_t>(r) * K + K / 2);
}

// Stages rows 0 .. R-1 of the input (rows >= `rows` as zeros), normalised when norm_w: per row the
// fp64 sum of squares as f32_bf16w_rmsnorm4_kernel (thread t sums float4s t, t + 256, ... in
// order, then block_sum_f64), mean = float(ss / K), r = 1 / sqrt(mean + eps), value =
// (x * r) * w. A thread loads all of its float4s of a row (and of norm_w) before using any, so a
// row costs one round of memory latency, not one per element. (Row by row, so no register
// array is indexed by the row: gfx90a would put it in scratch memory.) Ends with __syncthreads().
constexpr int kStageVecs = kDecodeMaxK / 4 / kThreads;  // float4s of one row per thread, at most
template <int R>
__device__ void stage_rows(const float* __restrict__ x, const int32_t* __restrict__ row_index,
                           int rows, int K, const uint16_t* __restrict__ norm_w, float eps,
                           float* xs, double* red) {
  const int k4 = K / 4;
  uint2 nw[kStageVecs];
  if (norm_w) {
#pragma unroll
    for (int u = 0; u < kStageVecs; ++u) {
      const int i = threadIdx.x + u * kThreads;
      nw[u] = i < k4 ? reinterpret_cast<const uint2*>(norm_w)[i] : make_uint2(0u, 0u);
    }
  }
  for (int r = 0; r < R; ++r) {
    float* lo = xs + static_cast<size_t>(r) * K;
    float* hi = lo + K / 2;
    const int src = r < rows ? (row_index ? row_index[r] : r) : -1;
    const float4* xr = reinterpret_cast<const float4*>(x + static_cast<size_t>(src < 0 ? 0 : src) * K);
    float4 v[kStageVecs];
#pragma unroll
    for (int u = 0; u < kStageVecs; ++u) {
      const int i = threadIdx.x + u * kThreads;
      v[u] = src >= 0 && i < k4 ? xr[i] : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    if (norm_w && src >= 0) {  // uniform over the block
      double ss = 0.0;
#pragma unroll
      for (int u = 0; u < kStageVecs; ++u) {
        ss += static_cast<double>(v[u].x) * v[u].x;
        ss += static_cast<double>(v[u].y) * v[u].y;
        ss += static_cast<double>(v[u].z) * v[u].z;
        ss += static_cast<double>(v[u].w) * v[u].w;
      }
      ss = block_sum_f64(ss, red);
      const float mean = static_cast<float>(ss / K);
      const float scale_r = 1.0f / sqrtf(mean + eps);
#pragma unroll
      for (int u = 0; u < kStageVecs; ++u) {
        const uint2 s = nw[u];
        v[u] = make_float4(__fmul_rn(__fmul_rn(v[u].x, scale_r), bf16_lo(s.x)),
                           __fmul_rn(__fmul_rn(v[u].y, scale_r), bf16_hi(s.x)),
                           __fmul_rn(__fmul_rn(v[u].z, scale_r), bf16_lo(s.y)),
                           __fmul_rn(__fmul_rn(v[u].w, scale_r), bf16_hi(s.y)));
      }
    }
#pragma unroll
    for (int u = 0; u < kStageVecs; ++u) {
      const int i = threadIdx.x + u * kThreads;
      if (i < k4) reinterpret_cast<float4*>((i & 1) ? hi : lo)[i >> 1] = v[u];
    }
  }
  __syncthreads();
}

using gpu::fma8;  // device_utils.h

}  // namespace gptoss::gpu::decode_detail
