// kernels/gpu/device_utils.h: device-side helpers shared by the GPU kernels (bf16 bits <-> fp32,
// 16-byte loads, wave and block reductions). Wave size comes from vendor.h (kWaveSize).
#pragma once
#include <cstdint>

#include "gpu/vendor.h"

namespace gptoss::gpu {

__device__ __forceinline__ float bf16_bits_to_f32(uint32_t h) {
  return __uint_as_float(h << 16);
}
// Low / high bf16 of a 32-bit word (element 2i in the low half, as in memory).
__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

// A load of what other blocks of the same launch wrote before a ticket (atomicAdd after
// __threadfence) handed this block the data: past the SM's incoherent L1 (NVIDIA: ld.global.cg,
// L2). AMD: a plain load; __threadfence() is an agent-scope acquire there, which already
// invalidates the CU's L1. Unlike a volatile load it may be issued early and batched.
__device__ __forceinline__ float ld_coherent(const float* p) {
#if defined(GPTOSS_HIP)
  return *p;
#else
  return __ldcg(p);
#endif
}

// The cache row of position j of a slot (ops.h KvPages): the ring's row, or the paged pool's.
template <class Pages>
__device__ __forceinline__ size_t kv_cache_row(const Pages& pg, int slot, int cap, int j) {
  if (pg.table == nullptr) return static_cast<size_t>(slot) * cap + static_cast<size_t>(j % cap);
  const int32_t b = pg.table[static_cast<size_t>(slot) * pg.stride + (j >> pg.shift)];
  return (static_cast<size_t>(b) << pg.shift) + static_cast<size_t>(j & ((1 << pg.shift) - 1));
}
// A writer's row n at position p: its own block (recorded in the table for the readers).
template <class Pages>
__device__ __forceinline__ size_t kv_cache_row_write(const Pages& pg, int n, int slot, int cap,
                                                     int p, bool record) {
  if (pg.table == nullptr) return static_cast<size_t>(slot) * cap + static_cast<size_t>(p % cap);
  const int32_t b = pg.block[n];
  if (record) pg.table[static_cast<size_t>(slot) * pg.stride + (p >> pg.shift)] = b;
  return (static_cast<size_t>(b) << pg.shift) + static_cast<size_t>(p & ((1 << pg.shift) - 1));
}

// Round to nearest even, NaN kept quiet (same as gptoss::f32_to_bf16 on the host).
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  return static_cast<uint32_t>(f32_to_bf16_bits(lo)) |
         (static_cast<uint32_t>(f32_to_bf16_bits(hi)) << 16);
}

// acc += w . x for one 16-byte chunk of bf16 weights (8 elements) and 8 fp32 inputs a | b, in
// element order 0..7 (the per-row order of every bf16 GEMV: matmul.cu, decode.cu, the routers).
__device__ __forceinline__ void fma8(float& acc, const uint4& w, const float4& a, const float4& b) {
  acc = fmaf(bf16_lo(w.x), a.x, acc);
  acc = fmaf(bf16_hi(w.x), a.y, acc);
  acc = fmaf(bf16_lo(w.y), a.z, acc);
  acc = fmaf(bf16_hi(w.y), a.w, acc);
  acc = fmaf(bf16_lo(w.z), b.x, acc);
  acc = fmaf(bf16_hi(w.z), b.y, acc);
  acc = fmaf(bf16_lo(w.w), b.z, acc);
  acc = fmaf(bf16_hi(w.w), b.w, acc);
}

__device__ __forceinline__ float wave_sum(float v) {
  for (int m = kWaveSize / 2; m > 0; m >>= 1) v += gpu_shfl_xor(v, m);
  return v;
}
__device__ __forceinline__ float wave_max(float v) {
  for (int m = kWaveSize / 2; m > 0; m >>= 1) v = fmaxf(v, gpu_shfl_xor(v, m));
  return v;
}

// Sum over the whole block (blockDim.x a multiple of kWaveSize, <= 1024); every thread gets the
// result. smem: >= blockDim.x / kWaveSize floats. Fixed order: wave butterflies, then waves in
// index order.
__device__ __forceinline__ float block_sum(float v, float* smem) {
  v = wave_sum(v);
  const int wave = threadIdx.x / kWaveSize, lane = threadIdx.x % kWaveSize;
  const int n_waves = blockDim.x / kWaveSize;
  __syncthreads();
  if (lane == 0) smem[wave] = v;
  __syncthreads();
  float s = 0.0f;
  for (int w = 0; w < n_waves; ++w) s += smem[w];
  return s;
}
__device__ __forceinline__ double block_sum_f64(double v, double* smem) {
  for (int m = kWaveSize / 2; m > 0; m >>= 1) v += gpu_shfl_xor(v, m);
  const int wave = threadIdx.x / kWaveSize, lane = threadIdx.x % kWaveSize;
  const int n_waves = blockDim.x / kWaveSize;
  __syncthreads();
  if (lane == 0) smem[wave] = v;
  __syncthreads();
  double s = 0.0;
  for (int w = 0; w < n_waves; ++w) s += smem[w];
  return s;
}

inline int ceil_div(long long a, long long b) { return static_cast<int>((a + b - 1) / b); }

}  // namespace gptoss::gpu
