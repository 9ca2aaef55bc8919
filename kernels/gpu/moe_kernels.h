// kernels/gpu/moe_kernels.h: what the MoE translation units share (internal: include from
// kernels/gpu/moe*.cu only). The kernels themselves stay file-local; each file defines launchers
// that take grid, block and dynamic shared memory from the step's MoePlan (moe_plan.h), and lists
// its kernels by the names the plan uses (for the shared-memory opt-in in moe.cu).
//   moe_route.cu         router logits, top-k + softmax, grouping by expert
//   moe_gemv.cu          expert GEMVs: scalar fp32, tensor cores (NVIDIA)
//   moe_grouped_gemm.cu  grouped fp16 tensor-core GEMM for every expert (NVIDIA)
//   moe_ws_gemm.cu       its warp-specialised wgmma twin (NVIDIA sm_90a; MoeOptions::wgmma)
//   moe_tiles.cu         bf16 tile kernel for experts with many rows (HIP; NVIDIA bf16_tiles)
//   moe.cu               scratch, moe_forward (orchestration), combine, test entry points
#pragma once
#include <climits>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gpu/moe.h"
#include "gpu/tile.h"

namespace gptoss::gpu {

// Arguments of one expert matmul (mlp1 or mlp2), shared by the GEMV, grouped GEMM and tile kernels.
struct MoeExpertArgs {
  const uint8_t* blocks;   // [E, M, K/32, 16]
  const uint8_t* scales;   // [E, M, K/32]
  const uint16_t* bias;    // [E, M] bf16
  const float* x;          // mlp1: x_normed [rows, K]; mlp2: act [pairs, K] (grouped)
  float* out;              // mlp1: act [pairs, M/2] (grouped); mlp2: y [pairs, M] (by pair)
  const int32_t* offsets;
  const int32_t* active;
  const int32_t* meta;
  const int32_t* slot_pair;
  const int32_t* tile_expert;
  const int32_t* tile_slot0;
  int K, M, top_k, max_cnt;
  float limit;
  // Grouped tensor-core GEMM (NVIDIA, moe_tc_kernel) only: its B operand, fp16 hi/lo pairs in the
  // staged layout (mlp1: x by token row, mlp2: SwiGLU output by grouped slot), and mlp1's output
  // in that layout for mlp2.
  const uint32_t* xq = nullptr;
  uint16_t* outq = nullptr;
};

// A kernel by the name moe_plan gives its launches (KernelLaunch::kernel), and its host handle.
struct MoeKernelFn {
  const char* name;
  const void* fn;
};
template <class K>
MoeKernelFn moe_kernel_fn(const char* name, K* kernel) {
  return MoeKernelFn{name, reinterpret_cast<const void*>(kernel)};
}
// Each file's kernels, appended to `out` (moe_grouped_gemm.cu: none on HIP).
void moe_route_kernel_fns(std::vector<MoeKernelFn>& out);
void moe_gemv_kernel_fns(std::vector<MoeKernelFn>& out);
void moe_grouped_kernel_fns(std::vector<MoeKernelFn>& out);
void moe_ws_kernel_fns(std::vector<MoeKernelFn>& out);
void moe_tiles_kernel_fns(std::vector<MoeKernelFn>& out);

// Launchers, asynchronous on `stream`. m = 0: mlp1 (K = H, SwiGLU epilogue), m = 1: mlp2.
// Routing (p.route_k, then p.build_k unless the one-block kernel routed): experts, weights and
// the grouping in s for `rows` rows of x [rows, H].
void moe_launch_route(const MoePlan& p, const MoeGpuWeights& w, const float* x, int rows,
                      MoeGpuScratch& s, gpuStream_t stream);
void moe_launch_gemv(const MoePlan& p, int m, const MoeExpertArgs& a, gpuStream_t stream);
void moe_launch_tiles(const MoePlan& p, int m, const MoeExpertArgs& a, gpuStream_t stream);
// NVIDIA only (p.mlp == MoeMlp::grouped): x [rows, H] -> xq (staged fp16 hi/lo pairs), then the
// grouped GEMM.
void moe_launch_stage_x(const MoePlan& p, const float* x, int rows, int H, uint32_t* xq,
                        gpuStream_t stream);
void moe_launch_grouped(const MoePlan& p, int m, const MoeExpertArgs& a, gpuStream_t stream);
// The grouped GEMM on wgmma (p.tc_mode == fast_wgmma; moe_ws_gemm.cu, NVIDIA sm_90a), on the same
// buffers.
void moe_launch_ws(const MoePlan& p, int m, const MoeExpertArgs& a, gpuStream_t stream);

inline dim3 moe_grid(const KernelLaunch& l) { return dim3(l.grid_x, l.grid_y, l.grid_z); }

// Device helpers. In an unnamed namespace on purpose: without relocatable device code each
// translation unit gets its own copy (the __constant__ LUT too).
namespace {

constexpr int kWaves = kMoeThreads / kWaveSize;     // 8 (CUDA) or 4 (HIP)
constexpr float kSwigluAlpha = 1.702f;

__device__ __forceinline__ float bf16_bits_to_f32(uint16_t h) {
  return __uint_as_float(static_cast<uint32_t>(h) << 16);
}
// Round to nearest even (inputs are finite activations).
__device__ __forceinline__ uint32_t f32_to_bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}
// 2^(s - 127) exactly (s = 0: the subnormal 2^-127; s = 255: +inf, as ldexp).
__device__ __forceinline__ float e8m0_to_f32(uint32_t s) {
  return s == 0 ? __uint_as_float(0x00400000u) : __uint_as_float(s << 23);
}
__device__ __forceinline__ float swiglu(float gate, float up, float limit) {
  gate = fminf(gate, limit);
  up = fminf(fmaxf(up, -limit), limit);
  const float z = kSwigluAlpha * gate;
  const float sig = 1.0f / (1.0f + expf(-z));
  return (gate * sig) * (up + 1.0f);
}
__device__ __forceinline__ float wave_sum(float v) {
#pragma unroll
  for (int off = kWaveSize / 2; off > 0; off >>= 1) v += gpu_shfl_xor(v, off);
  return v;
}
__device__ __forceinline__ int wave_sum_int(int v) {
#pragma unroll
  for (int off = kWaveSize / 2; off > 0; off >>= 1) v += gpu_shfl_xor(v, off);
  return v;
}

// ------------------------------------------------------------------------------ router
// Top-k of one row by one wave: k rounds of a wave arg-max (larger logit, ties: lower expert), the
// choice of the CPU twin's serial scan (f32_router_topk_softmax); then lane 0 does the softmax in
// rank order as the CPU twin does. lg: the row's E logits, E <= 32 * kWaveSize. Every routing
// kernel uses it, and the decode path's router (moe_decode.cu) (no per-thread arrays: no scratch memory on either target).
__device__ inline void wave_topk_softmax(const float* lg, int E, int k, int lane, int32_t* ex, float* wt) {
  uint32_t taken = 0;  // bit i: expert lane + i * kWaveSize chosen
  for (int r = 0; r < k; ++r) {
    float bv = -INFINITY;
    int be = INT_MAX;
    for (int i = 0; lane + i * kWaveSize < E; ++i) {
      const int e = lane + i * kWaveSize;
      if ((taken >> i) & 1u) continue;
      const float v = lg[e];
      if (be == INT_MAX || v > bv) bv = v, be = e;
    }
#pragma unroll
    for (int m = kWaveSize / 2; m > 0; m >>= 1) {
      const float ov = gpu_shfl_xor(bv, m);
      const int oe = gpu_shfl_xor(be, m);
      if (oe != INT_MAX && (be == INT_MAX || ov > bv || (ov == bv && oe < be))) bv = ov, be = oe;
    }
    if (be % kWaveSize == lane) taken |= 1u << (be / kWaveSize);
    if (lane == 0) ex[r] = be;
  }
  if (lane == 0) {
    const float mx = lg[ex[0]];
    float sum = 0.0f;
    for (int r = 0; r < k; ++r) {
      wt[r] = expf(lg[ex[r]] - mx);
      sum = sum + wt[r];
    }
    for (int r = 0; r < k; ++r) wt[r] = wt[r] / sum;
  }
}

// ------------------------------------------------------------------------------ MXFP4 decode
// Tensor-core decode: 8 bytes (16 elements) -> 8 words of bf16 pairs, value LUT * 2^(s-127)
// (exact: at most 2 significant bits; the fp32 product is truncated to bf16 without loss).
__device__ __forceinline__ void mxfp4_decode16_bf16(uint2 v, float scale, const float* lut,
                                                    uint32_t (&out)[8]) {
  const uint32_t words[2] = {v.x, v.y};
#pragma unroll
  for (int j = 0; j < 2; ++j) {
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      const uint32_t byte = (words[j] >> (8 * b)) & 0xffu;
      const uint32_t lo = __float_as_uint(lut[byte & 15u] * scale) >> 16;
      const uint32_t hi = __float_as_uint(lut[byte >> 4] * scale) >> 16;
      out[4 * j + b] = lo | (hi << 16);
    }
  }
}
__constant__ float kLut[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                               -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

// GEMV decode: an E2M1 code placed as an fp16 (sign -> bit 15, exponent/mantissa bits -> 9..11)
// is exactly LUT[code] * 2^-14 (code 1 lands on the fp16 subnormal 2^-15). Two codes per shift:
// half2 (element q, element q + 4) of the word's 8 elements; the fp16 -> fp32 conversion is exact.
// 8 MXFP4 codes of one 32-bit word (elements 0..7 in nibble order) -> raw = LUT * 2^-14.
__device__ __forceinline__ void mxfp4_decode8_raw(uint32_t w, float (&raw)[8]) {
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const uint32_t sh = w << (12 - 4 * q);
    const uint32_t h2 = (sh & 0x80008000u) | ((sh >> 3) & 0x0E000E00u);
    raw[q] = tile::half_bits_to_f32(static_cast<uint16_t>(h2 & 0xffffu));
    raw[q + 4] = tile::half_bits_to_f32(static_cast<uint16_t>(h2 >> 16));
  }
}
#if !defined(GPTOSS_HIP)

// 8 consecutive x values (elements 8t' .. 8t' + 7 of a block) -> the 4 fp16 pairs (q, q + 4),
// q = 0..3, as hi = f16(x) and lo = f16(x - hi) words (the B-fragment order of both tensor-core
// kernels).
__device__ __forceinline__ void f16_hilo8(float4 v0, float4 v1, uint4& hi, uint4& lo) {
  const float xv[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
  uint32_t h[4], l[4];
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const uint16_t h0 = tile::f32_to_f16_bits(xv[q]), h1 = tile::f32_to_f16_bits(xv[q + 4]);
    const uint16_t l0 = tile::f32_to_f16_bits(xv[q] - tile::half_bits_to_f32(h0));
    const uint16_t l1 = tile::f32_to_f16_bits(xv[q + 4] - tile::half_bits_to_f32(h1));
    h[q] = h0 | (static_cast<uint32_t>(h1) << 16);
    l[q] = l0 | (static_cast<uint32_t>(l1) << 16);
  }
  hi = make_uint4(h[0], h[1], h[2], h[3]);
  lo = make_uint4(l[0], l[1], l[2], l[3]);
}

// fp16 pair q of an MXFP4 word: (element q, element q + 4) = LUT * 2^-14 each (exact).
__device__ __forceinline__ uint32_t mxfp4_pair_f16(uint32_t w, int q) {
  const uint32_t sh = w << (12 - 4 * q);
  return (sh & 0x80008000u) | ((sh >> 3) & 0x0E000E00u);
}
// bf16 pair q of an MXFP4 word: the same two codes placed as bf16 (sign -> bit 15, exponent and
// mantissa bits -> 6..8) = LUT * 2^-126 each, exactly (code 1 lands on the subnormal 2^-127).
// Times the bf16 2^(s - 1) of an E8M0 scale s <= kMoeFoldMaxScale (mxfp4_fold_scale_bf16x2) the
// product is exactly LUT * 2^(s - 127): the decoded weight, the scale folded in.
__device__ __forceinline__ uint32_t mxfp4_pair_bf16(uint32_t w, int q) {
  const uint32_t sh = w << (12 - 4 * q);
  return (sh & 0x80008000u) | ((sh >> 6) & 0x01C001C0u);
}
// bf16x2 (2^(s - 1), 2^(s - 1)) of an E8M0 scale s in [0, kMoeFoldMaxScale] (exponent field
// s + 126, always normal).
__device__ __forceinline__ uint32_t mxfp4_fold_scale_bf16x2(uint32_t s) { return (s + 126u) * 0x00800080u; }
// 8 consecutive x values (elements 8t' .. 8t' + 7 of a block) -> the 4 bf16 pairs (q, q + 4),
// rounded to nearest (the B fragments of the folded-scale grouped GEMM).
__device__ __forceinline__ uint4 bf16_pairs8(float4 v0, float4 v1) {
  return make_uint4(f32_to_bf16_bits(v0.x) | (f32_to_bf16_bits(v1.x) << 16),
                    f32_to_bf16_bits(v0.y) | (f32_to_bf16_bits(v1.y) << 16),
                    f32_to_bf16_bits(v0.z) | (f32_to_bf16_bits(v1.z) << 16),
                    f32_to_bf16_bits(v0.w) | (f32_to_bf16_bits(v1.w) << 16));
}
#endif

}  // namespace
}  // namespace gptoss::gpu
