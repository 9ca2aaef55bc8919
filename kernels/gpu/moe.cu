// moe.cu: GPU MoE block (see moe.h for the design): router, grouping, MXFP4 GEMV and tensor-core
// grouped GEMM expert kernels with fused SwiGLU / bias epilogues, rank-ordered combine.
// One source for CUDA (sm_80/sm_90) and HIP (gfx90a); runtime names only through vendor.h.
#include "moe.h"

#include <algorithm>
#include <climits>
#include <map>
#include <string>
#include <vector>

#include "gpu/tile.h"

namespace gptoss::gpu {
namespace {

constexpr int kWaves = kMoeThreads / kWaveSize;     // 8 (CUDA) or 4 (HIP)
constexpr float kSwigluAlpha = 1.702f;

// bf16 tile kernel (moe_mma_kernel): kMoeTileRows grouped rows x kMoeTileCols outputs, k step
// kMoeTileK (MXFP4 blocks of 32), 64 x 128 x 32 (moe_plan.h). (A 128 x 128 x 64 variant measured
// slower on H200, moe_notes.md run 2.)
constexpr int kWaveGridM = kMoeTileRows / tile::kWaveTileM;    // waves along rows
constexpr int kWaveGridN = kWaves / kWaveGridM;                // waves along columns
constexpr int kWarpRows = tile::kWaveTileM;
constexpr int kWarpCols = kMoeTileCols / kWaveGridN;
constexpr int kWaveTilesN = kWarpCols / tile::kWaveTileN;    // 32x32 wave tiles per wave
// Loaders: A: kMoeThreads / kMoeTileRows threads per row, kAF floats each; B: 2 threads per weight row,
// kMoeTileK / 4 bytes (kMoeTileK / 2 codes) each.
constexpr int kATpr = kMoeThreads / kMoeTileRows, kAF = kMoeTileK / kATpr;
constexpr int kBBytes = kMoeTileK / 4;
static_assert(kWaveGridM * kWaveGridN == kWaves && kWarpCols % tile::kWaveTileN == 0, "tile split");
static_assert(kMoeThreads % kMoeTileRows == 0 && kAF % 8 == 0 && kMoeThreads == kMoeTileCols * 2, "loader mapping");
static_assert(kBBytes % 8 == 0, "B loader works in 8-byte pieces");

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

// ------------------------------------------------------------------------------ router
// Top-k over logits[E] (ties: lower index first), softmax over the k in rank order. Serial.
template <class P>  // const float* or const volatile float* (logits written by other blocks)
__device__ void topk_softmax(P logits, int E, int k, int32_t* experts, float* weights) {
  int chosen[kMoeMaxTopK];
  for (int r = 0; r < k; ++r) {
    int best = -1;
    for (int e = 0; e < E; ++e) {
      bool taken = false;
      for (int q = 0; q < r; ++q) taken |= chosen[q] == e;
      if (taken) continue;
      if (best < 0 || logits[e] > logits[best]) best = e;
    }
    chosen[r] = best;
    experts[r] = best;
  }
  const float mx = logits[chosen[0]];
  float sum = 0.0f;
  float ew[kMoeMaxTopK];
  for (int r = 0; r < k; ++r) {
    ew[r] = expf(logits[chosen[r]] - mx);
    sum = sum + ew[r];
  }
  for (int r = 0; r < k; ++r) weights[r] = ew[r] / sum;
}

// One block per row: logits in shared memory, then top-k + softmax.
__global__ __launch_bounds__(kMoeThreads) void moe_router_kernel(
    const float* __restrict__ x, const uint16_t* __restrict__ rw, const uint16_t* __restrict__ rb,
    int H, int E, int k, int32_t* __restrict__ experts, float* __restrict__ weights) {
  extern __shared__ float router_smem[];
  float* xs = router_smem;      // [H]
  float* logits = xs + H;       // [E]
  const int row = blockIdx.x, tid = threadIdx.x;
  const float4* xr = reinterpret_cast<const float4*>(x + static_cast<size_t>(row) * H);
  for (int i = tid; i < H / 4; i += kMoeThreads) reinterpret_cast<float4*>(xs)[i] = xr[i];
  __syncthreads();
  const int wave = tid / kWaveSize, lane = tid % kWaveSize;
  for (int e = wave; e < E; e += kWaves) {
    const uint16_t* wr = rw + static_cast<size_t>(e) * H;
    float acc = 0.0f;
    for (int c = lane; c < H / 8; c += kWaveSize) {
      const uint4 v = *reinterpret_cast<const uint4*>(wr + 8 * c);
      const uint32_t wd[4] = {v.x, v.y, v.z, v.w};
      const float* xc = xs + 8 * c;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        acc = fmaf(xc[2 * j], __uint_as_float(wd[j] << 16), acc);
        acc = fmaf(xc[2 * j + 1], __uint_as_float(wd[j] & 0xffff0000u), acc);
      }
    }
    acc = wave_sum(acc);
    if (lane == 0) logits[e] = acc + bf16_bits_to_f32(rb[e]);
  }
  __syncthreads();
  if (tid == 0)
    topk_softmax(logits, E, k, experts + static_cast<size_t>(row) * k,
                 weights + static_cast<size_t>(row) * k);
}

__global__ void moe_topk_logits_kernel(const float* logits, int rows, int E, int k,
                                       int32_t* experts, float* weights) {
  const int row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row < rows)
    topk_softmax(logits + static_cast<size_t>(row) * E, E, k, experts + static_cast<size_t>(row) * k,
                 weights + static_cast<size_t>(row) * k);
}

// ------------------------------------------------------------------------------ grouping
// One block of 1024 threads. Pairs p = row * k + rank grouped by expert (rows ascending):
// offsets[E+1], active[n_active], slot_pair[pairs], and tiles of kMoeTileRows slots for experts
// with more than gemv_max rows. meta = {n_active, n_tiles}.
__device__ void build_groups(const int32_t* __restrict__ experts, int pairs, int E, int gemv_max,
                             int32_t* __restrict__ offsets, int32_t* __restrict__ active,
                             int32_t* __restrict__ meta, int32_t* __restrict__ slot_pair,
                             int32_t* __restrict__ tile_expert, int32_t* __restrict__ tile_slot0) {
  __shared__ int cnt_s[kMoeMaxExperts];
  __shared__ int off_s[kMoeMaxExperts];
  constexpr int waves = kMoeBuildThreads / kWaveSize;
  const int tid = threadIdx.x, wave = tid / kWaveSize, lane = tid % kWaveSize;
  for (int e = wave; e < E; e += waves) {
    int c = 0;
    for (int p = lane; p < pairs; p += kWaveSize) c += experts[p] == e;
    c = wave_sum_int(c);
    if (lane == 0) cnt_s[e] = c;
  }
  __syncthreads();
  if (tid == 0) {
    int off = 0, na = 0, nt = 0;
    for (int e = 0; e < E; ++e) {
      const int c = cnt_s[e];
      off_s[e] = off;
      offsets[e] = off;
      if (c > 0) active[na++] = e;
      if (c > gemv_max)
        for (int r0 = 0; r0 < c; r0 += kMoeTileRows) {
          tile_expert[nt] = e;
          tile_slot0[nt] = off + r0;
          ++nt;
        }
      off += c;
    }
    offsets[E] = off;
    meta[0] = na;
    meta[1] = nt;
  }
  __syncthreads();
  for (int e = wave; e < E; e += waves) {
    if (cnt_s[e] == 0) continue;
    int pos = off_s[e];
    for (int base = 0; base < pairs; base += kWaveSize) {
      const int p = base + lane;
      const int f = (p < pairs && experts[p] == e) ? 1 : 0;
      int v = f;  // inclusive scan over the wave
#pragma unroll
      for (int d = 1; d < kWaveSize; d <<= 1) {
        const int t = gpu_shfl(v, lane >= d ? lane - d : lane);
        if (lane >= d) v += t;
      }
      if (f) slot_pair[pos + v - 1] = p;
      pos += gpu_shfl(v, kWaveSize - 1);
    }
  }
}

// The experts array is first copied into shared memory (dynamic, pairs * 4 bytes, when
// stage_smem): build_groups scans it E + E times, and from global memory each of those wave loops
// was a chain of dependent L2 round trips (13.5 us at 256 rows, 114 us at 4096 on H100).
// At most kMoeBuildSmemPairs (48 KB, + build_groups' 8 KB static) so the block also fits
// gfx90a's 64 KB of LDS; dynamic shared memory moe_build_smem_bytes(pairs).
__global__ __launch_bounds__(kMoeBuildThreads) void moe_build_kernel(
    const int32_t* __restrict__ experts, int pairs, int E, int gemv_max,
    int32_t* __restrict__ offsets, int32_t* __restrict__ active, int32_t* __restrict__ meta,
    int32_t* __restrict__ slot_pair, int32_t* __restrict__ tile_expert,
    int32_t* __restrict__ tile_slot0, int stage_smem) {
  extern __shared__ int32_t build_ex_s[];  // [pairs] when stage_smem
  const int32_t* ex = experts;
  if (stage_smem) {
    for (int i = threadIdx.x; i < pairs; i += kMoeBuildThreads) build_ex_s[i] = experts[i];
    __syncthreads();
    ex = build_ex_s;
  }
  build_groups(ex, pairs, E, gemv_max, offsets, active, meta, slot_pair, tile_expert, tile_slot0);
}

// Top-k of one row by one wave: k rounds of a wave arg-max (larger logit, ties: lower expert), the
// same choice as topk_softmax's serial scan; then lane 0 does the softmax in rank order exactly as
// topk_softmax does. lg: the row's E logits (shared memory), E <= 32 * kWaveSize.
__device__ void wave_topk_softmax(const float* lg, int E, int k, int lane, int32_t* ex, float* wt) {
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

// Steps of more rows: kMoeRouterRows rows per block, so each router weight load (16 bytes, from L2)
// serves kMoeRouterRows rows instead of one (moe_router_kernel: one block per row read the whole
// router per row: 38 us at 256 rows, 203 us at 4096 on H100), with all kRouterU loads of a lane
// in flight before the first use (8 rows per block with one load at a time measured 49 us at 256
// rows: 45 dependent L2 round trips per wave). Per logit exactly the arithmetic
// of moe_router_kernel / moe_route_small_kernel (lane partial sums over 8-element chunks
// c = lane, lane + W, ..., 8 FMAs per chunk in element order, then the wave butterfly, + bias),
// and the top-k of moe_route_small_kernel: the same experts and weights for a row at any row
// count. Dynamic shared memory moe_router_rows_smem_bytes(H, E).
constexpr int kRouterU = (384 + kWaveSize - 1) / kWaveSize;  // 16-byte loads per lane per batch (H 2880: one)
__global__ __launch_bounds__(kMoeThreads) void moe_router_rows_kernel(
    const float* __restrict__ x, const uint16_t* __restrict__ rw, const uint16_t* __restrict__ rb,
    int rows, int H, int E, int k, int32_t* __restrict__ experts, float* __restrict__ weights) {
  extern __shared__ float4 router_rows_smem4[];
  float* xs = reinterpret_cast<float*>(router_rows_smem4);  // [kMoeRouterRows][H]
  float* lgs = xs + kMoeRouterRows * H;                          // [kMoeRouterRows][E]
  const int r0 = blockIdx.x * kMoeRouterRows, nr = min(kMoeRouterRows, rows - r0);
  const int tid = threadIdx.x, wave = tid / kWaveSize, lane = tid % kWaveSize;
  const float4* xg = reinterpret_cast<const float4*>(x + static_cast<size_t>(r0) * H);
  for (int i = tid; i < kMoeRouterRows * H / 4; i += kMoeThreads)
    router_rows_smem4[i] = i < nr * H / 4 ? xg[i] : make_float4(0.f, 0.f, 0.f, 0.f);
  __syncthreads();
  for (int e = wave; e < E; e += kWaves) {
    const uint16_t* wr = rw + static_cast<size_t>(e) * H;
    float acc[kMoeRouterRows];
#pragma unroll
    for (int r = 0; r < kMoeRouterRows; ++r) acc[r] = 0.0f;
    for (int c0 = lane; c0 < H / 8; c0 += kRouterU * kWaveSize) {
      uint4 wv[kRouterU];  // all of a lane's weight loads in flight before the first use
#pragma unroll
      for (int u = 0; u < kRouterU; ++u) {
        const int c = c0 + u * kWaveSize;
        wv[u] = c < H / 8 ? *reinterpret_cast<const uint4*>(wr + 8 * c) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < kRouterU; ++u) {
        const int c = c0 + u * kWaveSize;
        if (c >= H / 8) break;
        const uint4 v = wv[u];
        const float w8[8] = {__uint_as_float(v.x << 16), __uint_as_float(v.x & 0xffff0000u),
                             __uint_as_float(v.y << 16), __uint_as_float(v.y & 0xffff0000u),
                             __uint_as_float(v.z << 16), __uint_as_float(v.z & 0xffff0000u),
                             __uint_as_float(v.w << 16), __uint_as_float(v.w & 0xffff0000u)};
#pragma unroll
        for (int r = 0; r < kMoeRouterRows; ++r) {
          const float4 x0 = *reinterpret_cast<const float4*>(xs + r * H + 8 * c);
          const float4 x1 = *reinterpret_cast<const float4*>(xs + r * H + 8 * c + 4);
          float a = acc[r];
          a = fmaf(x0.x, w8[0], a);
          a = fmaf(x0.y, w8[1], a);
          a = fmaf(x0.z, w8[2], a);
          a = fmaf(x0.w, w8[3], a);
          a = fmaf(x1.x, w8[4], a);
          a = fmaf(x1.y, w8[5], a);
          a = fmaf(x1.z, w8[6], a);
          a = fmaf(x1.w, w8[7], a);
          acc[r] = a;
        }
      }
    }
    const float bias = bf16_bits_to_f32(rb[e]);
#pragma unroll
    for (int r = 0; r < kMoeRouterRows; ++r) {
      const float sum = wave_sum(acc[r]);
      if (lane == 0) lgs[r * E + e] = sum + bias;
    }
  }
  __syncthreads();
  for (int n = wave; n < nr; n += kWaves)
    wave_topk_softmax(lgs + n * E, E, k, lane, experts + static_cast<size_t>(r0 + n) * k,
                      weights + static_cast<size_t>(r0 + n) * k);
}

// Decode steps (rows <= kMoeRouteSmallRows whose logits and x fit the shared memory budget, see
// moe_plan): router logits, top-k +
// softmax and the grouping in ONE block (one launch instead of two). A wave per (row, expert)
// dot product, 16-byte weight loads, x read from global (L2); same arithmetic order per logit
// as moe_router_kernel (lane partial sums over 8-element chunks, then the wave butterfly).
// x rows are staged in shared memory and each lane has kRouteU 16-byte weight loads in flight
// (a wave per (row, expert) dot product; one SM reads the whole router, 184 KB at 20b).
// Dynamic shared memory moe_route_small_smem_bytes(rows, E, H).
constexpr int kRouteU = 6;
__global__ __launch_bounds__(kMoeBuildThreads) void moe_route_small_kernel(
    const float* __restrict__ x, const uint16_t* __restrict__ rw, const uint16_t* __restrict__ rb,
    int rows, int H, int E, int k, int gemv_max, int32_t* __restrict__ experts,
    float* __restrict__ weights, int32_t* __restrict__ offsets, int32_t* __restrict__ active,
    int32_t* __restrict__ meta, int32_t* __restrict__ slot_pair, int32_t* __restrict__ tile_expert,
    int32_t* __restrict__ tile_slot0) {
  extern __shared__ float4 route_smem4[];
  float* route_logits = reinterpret_cast<float*>(route_smem4);  // [rows, E]
  float* xs = route_logits + ((rows * E + 3) / 4) * 4;          // [rows, H], 16-byte aligned
  constexpr int waves = kMoeBuildThreads / kWaveSize;
  const int tid = threadIdx.x, wave = tid / kWaveSize, lane = tid % kWaveSize;
  for (int i = tid; i < rows * H / 4; i += kMoeBuildThreads)
    reinterpret_cast<float4*>(xs)[i] = reinterpret_cast<const float4*>(x)[i];
  __syncthreads();
  for (int it = wave; it < rows * E; it += waves) {
    const int n = it / E, e = it % E;
    const uint16_t* wr = rw + static_cast<size_t>(e) * H;
    const float* xr = xs + static_cast<size_t>(n) * H;
    float acc = 0.0f;
    for (int c0 = lane; c0 < H / 8; c0 += kRouteU * kWaveSize) {
      uint4 wv[kRouteU];
#pragma unroll
      for (int u = 0; u < kRouteU; ++u) {
        const int c = c0 + u * kWaveSize;
        wv[u] = c < H / 8 ? *reinterpret_cast<const uint4*>(wr + 8 * c) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < kRouteU; ++u) {
      const int c = c0 + u * kWaveSize;
      if (c >= H / 8) break;
      const uint4 v = wv[u];
      const float4 x0 = *reinterpret_cast<const float4*>(xr + 8 * c);
      const float4 x1 = *reinterpret_cast<const float4*>(xr + 8 * c + 4);
      acc = fmaf(x0.x, __uint_as_float(v.x << 16), acc);
      acc = fmaf(x0.y, __uint_as_float(v.x & 0xffff0000u), acc);
      acc = fmaf(x0.z, __uint_as_float(v.y << 16), acc);
      acc = fmaf(x0.w, __uint_as_float(v.y & 0xffff0000u), acc);
      acc = fmaf(x1.x, __uint_as_float(v.z << 16), acc);
      acc = fmaf(x1.y, __uint_as_float(v.z & 0xffff0000u), acc);
      acc = fmaf(x1.z, __uint_as_float(v.w << 16), acc);
      acc = fmaf(x1.w, __uint_as_float(v.w & 0xffff0000u), acc);
      }
    }
    acc = wave_sum(acc);
    if (lane == 0) route_logits[it] = acc + bf16_bits_to_f32(rb[e]);
  }
  __syncthreads();
  for (int n = wave; n < rows; n += waves)
    wave_topk_softmax(route_logits + static_cast<size_t>(n) * E, E, k, lane,
                      experts + static_cast<size_t>(n) * k, weights + static_cast<size_t>(n) * k);
  __syncthreads();  // experts (global) visible to the whole block
  build_groups(experts, rows * k, E, gemv_max, offsets, active, meta, slot_pair, tile_expert,
               tile_slot0);
}


// ------------------------------------------------------------------------------ GEMV experts
struct ExpertArgs {
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

// grid (min(E, pairs), ceil(M / (kWaves * kMoeGemvRowsW))); each wave computes kMoeGemvRowsW = 4
// consecutive weight rows (mlp1: two gate/up pairs) for every row of its expert, RB rows at a
// time. Lane l takes whole MXFP4 blocks (16-byte loads + their scale byte): blocks l, l + W,
// l + 2W, ... (W = kWaveSize) of each of the 4 weight rows, so a wave reads contiguous 512-byte
// runs per row and all kGemvU x 4 loads of a lane are in flight before the first use (K = 2880:
// 90 blocks, one pass, 12 x 16 B per lane, ~48 KB in flight per block). The weight loads are
// issued before the block stages its x rows into shared memory (fp32, padded to 36 floats per
// 32 so the lanes' float4 reads of different blocks hit different banks); x is read from shared
// memory once per 8 elements and reused for the 4 weight rows. Dynamic shared memory:
// moe_gemv_smem_bytes(RB, K).
constexpr int kGemvU = (96 + kWaveSize - 1) / kWaveSize;  // block slots per lane per pass
template <int RB, bool kMlp1>
__global__ __launch_bounds__(kMoeThreads) void moe_gemv_kernel(ExpertArgs a) {
  extern __shared__ float4 gemv_xs4[];  // [RB][K / 32][kMoeXPad] fp32
  float* xs = reinterpret_cast<float*>(gemv_xs4);
  const int j = blockIdx.x;
  if (j >= a.meta[0]) return;  // uniform per block
  const int e = a.active[j];
  const int g0 = a.offsets[e], cnt = a.offsets[e + 1] - g0;
  if (cnt > a.max_cnt) return;  // uniform per block
  const int wave = threadIdx.x / kWaveSize, lane = threadIdx.x % kWaveSize;
  const int mw = (blockIdx.y * kWaves + wave) * kMoeGemvRowsW;
  const bool wave_ok = mw < a.M;  // M % 4 == 0; no early return: the block synchronises below
  const int m0 = wave_ok ? mw : 0;
  const int K = a.K, nb = K / 32, row_bytes = K / 2, xstride = nb * kMoeXPad;
  const size_t wrow0 = static_cast<size_t>(e) * a.M + m0;
  const uint8_t* wb = a.blocks + wrow0 * row_bytes;
  const uint8_t* wsc = a.scales + wrow0 * nb;

  for (int c0 = 0; c0 < cnt; c0 += RB) {
    float acc[kMoeGemvRowsW][RB];
#pragma unroll
    for (int w = 0; w < kMoeGemvRowsW; ++w)
#pragma unroll
      for (int r = 0; r < RB; ++r) acc[w][r] = 0.0f;

    for (int b0 = 0; b0 < nb; b0 += kGemvU * kWaveSize) {
      uint4 wv[kGemvU][kMoeGemvRowsW];
      uint32_t sv[kGemvU][kMoeGemvRowsW];
#pragma unroll
      for (int u = 0; u < kGemvU; ++u) {
        const int b = b0 + u * kWaveSize + lane;
        const bool ok = wave_ok && b < nb;
#pragma unroll
        for (int w = 0; w < kMoeGemvRowsW; ++w) {
          wv[u][w] = ok ? *reinterpret_cast<const uint4*>(wb + static_cast<size_t>(w) * row_bytes + 16 * b)
                        : make_uint4(0, 0, 0, 0);
          sv[u][w] = ok ? wsc[w * nb + b] : 127u;
        }
      }
      if (b0 == 0) {  // stage x rows c0 .. c0 + RB - 1 (clamped) while the weights are in flight
        __syncthreads();  // the previous chunk's readers are done
        for (int r = 0; r < RB; ++r) {
          const int g = g0 + min(c0 + r, cnt - 1);
          const int row = kMlp1 ? a.slot_pair[g] / a.top_k : g;
          const float4* xr = reinterpret_cast<const float4*>(a.x + static_cast<size_t>(row) * K);
          for (int i = threadIdx.x; i < K / 4; i += kMoeThreads)
            *reinterpret_cast<float4*>(xs + r * xstride + (i / 8) * kMoeXPad + 4 * (i % 8)) = xr[i];
        }
        __syncthreads();
      }
#pragma unroll
      for (int u = 0; u < kGemvU; ++u) {
        const int b = b0 + u * kWaveSize + lane;
        if (!wave_ok || b >= nb) continue;
        float part[kMoeGemvRowsW][RB];
#pragma unroll
        for (int w = 0; w < kMoeGemvRowsW; ++w)
#pragma unroll
          for (int r = 0; r < RB; ++r) part[w][r] = 0.0f;
#pragma unroll
        for (int q = 0; q < 4; ++q) {  // word q of the block: elements 8q .. 8q + 7
          float xv[RB][8];
#pragma unroll
          for (int r = 0; r < RB; ++r) {
            const float* xp = xs + r * xstride + b * kMoeXPad + 8 * q;
            const float4 lo = *reinterpret_cast<const float4*>(xp);
            const float4 hi = *reinterpret_cast<const float4*>(xp + 4);
            xv[r][0] = lo.x; xv[r][1] = lo.y; xv[r][2] = lo.z; xv[r][3] = lo.w;
            xv[r][4] = hi.x; xv[r][5] = hi.y; xv[r][6] = hi.z; xv[r][7] = hi.w;
          }
#pragma unroll
          for (int w = 0; w < kMoeGemvRowsW; ++w) {
            const uint32_t word = q == 0 ? wv[u][w].x : q == 1 ? wv[u][w].y : q == 2 ? wv[u][w].z : wv[u][w].w;
            float raw[8];
            mxfp4_decode8_raw(word, raw);
#pragma unroll
            for (int r = 0; r < RB; ++r) {
              float d = part[w][r];
#pragma unroll
              for (int i = 0; i < 8; ++i) d = fmaf(raw[i], xv[r][i], d);
              part[w][r] = d;
            }
          }
        }
#pragma unroll
        for (int w = 0; w < kMoeGemvRowsW; ++w) {
          const float sc = e8m0_to_f32(sv[u][w]);
#pragma unroll
          for (int r = 0; r < RB; ++r) acc[w][r] = fmaf(part[w][r] * 16384.0f, sc, acc[w][r]);  // raw = LUT * 2^-14
        }
      }
    }
#pragma unroll
    for (int w = 0; w < kMoeGemvRowsW; ++w)
#pragma unroll
      for (int r = 0; r < RB; ++r) acc[w][r] = wave_sum(acc[w][r]);
    if (lane == 0 && wave_ok) {
      const uint16_t* bias = a.bias + wrow0;
#pragma unroll
      for (int r = 0; r < RB; ++r) {
        if (c0 + r >= cnt) continue;
        const int g = g0 + c0 + r;
        if (kMlp1) {
#pragma unroll
          for (int w = 0; w < kMoeGemvRowsW; w += 2)
            a.out[static_cast<size_t>(g) * (a.M / 2) + (m0 + w) / 2] =
                swiglu(acc[w][r] + bf16_bits_to_f32(bias[w]), acc[w + 1][r] + bf16_bits_to_f32(bias[w + 1]), a.limit);
        } else {
          float* o = a.out + static_cast<size_t>(a.slot_pair[g]) * a.M + m0;
#pragma unroll
          for (int w = 0; w < kMoeGemvRowsW; ++w) o[w] = acc[w][r] + bf16_bits_to_f32(bias[w]);
        }
      }
    }
  }
}

#if !defined(GPTOSS_HIP)
// ---- GEMV on tensor cores (NVIDIA; the default decode path there) ----------------------------
// Why: the scalar GEMV above converts every MXFP4 element to fp32 (one cvt + one FMA per element)
// and measured ~0.23 of HBM bandwidth on H100 at 1 row (decode-instruction bound, rows 1 and 8
// alike). Here the codes become fp16 pairs with 2-3 integer ops per 2 elements (the exact fp16
// placement of mxfp4_decode8_raw: LUT * 2^-14) and the tensor cores do the multiply-adds:
// mma.sync m16n8k16 f16 x f16 -> f32, A = 16 weight rows, B = up to 8 activation rows (the
// columns), so 1..8 rows of an expert cost the same instructions.
// x enters as two fp16 halves hi = f16(x), lo = f16(x - hi) (x to ~2^-22 relative; |x| must
// stay below 65504, true for RMSNorm outputs and the SwiGLU outputs, which are bounded by
// limit * (limit + 1)); products are exact in fp32, so the result is fp32-quality like the
// scalar path.
// Layout: a wave owns 16 weight rows (g and g + 8 for lane (g = lane / 4, t = lane % 4)); one
// MXFP4 block (32 codes) is one k32 step = two mma k16 steps; lane t holds word t (codes
// 8t .. 8t+7) of its two rows, as fp16 pairs (8t + q, 8t + q + 4), q = 0..3, which fixes the k
// order (the same for A and B, any order is a valid dot product). The block's partial sums D
// (fp32, rows g, g + 8, columns 2t, 2t + 1) are scaled by the rows' E8M0 scales into fp32
// accumulators, so no cross-lane reduction is needed.
// x staging in shared memory: per activation row n, block b, lane t: uint4 of the 4 fp16 pairs,
// hi and lo, row stride padded to 16 (mod 32) words so the 8 lanes of an LDS.128 phase hit
// distinct banks (moe_gemv_mma_row_words). Dynamic shared memory: moe_gemv_mma_smem_bytes(NR, K).
constexpr int kMmaGemvUnroll = 16;     // MXFP4 blocks loaded ahead per lane

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

// NR: activation rows per chunk (1 for decode at batch 1: only column 0 is staged, the other
// columns are zero registers; else kMoeMmaGemvRows).
template <int NR, bool kMlp1>
__global__ __launch_bounds__(kMoeThreads) void moe_gemv_mma_kernel(ExpertArgs a) {
  extern __shared__ uint4 gemv_mma_xs[];
  uint32_t* xs = reinterpret_cast<uint32_t*>(gemv_mma_xs);  // [2 (hi, lo)][NR rows][row_words]
  const int j = blockIdx.x;
  if (j >= a.meta[0]) return;  // uniform per block
  const int e = a.active[j];
  const int g0 = a.offsets[e], cnt = a.offsets[e + 1] - g0;
  if (cnt > a.max_cnt) return;  // uniform per block
  const int wave = threadIdx.x / kWaveSize, lane = threadIdx.x % kWaveSize;
  const int g = lane / 4, t = lane % 4;
  const int mw = (blockIdx.y * kWaves + wave) * kMoeMmaGemvWaveRows;
  const bool wave_ok = mw < a.M;  // M % 16 == 0 (checked by the launcher)
  const int m0 = wave_ok ? mw : 0;
  const int K = a.K, nb = K / 32, row_bytes = K / 2, rw = moe_gemv_mma_row_words(K);
  const size_t r0 = static_cast<size_t>(e) * a.M + m0 + g, r1 = r0 + 8;
  const uint32_t* wb0 = reinterpret_cast<const uint32_t*>(a.blocks + r0 * row_bytes) + t;
  const uint32_t* wb1 = reinterpret_cast<const uint32_t*>(a.blocks + r1 * row_bytes) + t;
  const uint8_t* sc0 = a.scales + r0 * nb;
  const uint8_t* sc1 = a.scales + r1 * nb;

  for (int c0 = 0; c0 < cnt; c0 += NR) {
    const int nrows = min(NR, cnt - c0);
    __syncthreads();  // the previous chunk's readers are done
    // Stage: item (n, b, t') -> 4 pairs (8t' + q, 8t' + q + 4), hi and lo; rows >= nrows are 0.
    for (int it = threadIdx.x; it < NR * nb * 4; it += kMoeThreads) {
      const int n = it / (nb * 4), rem = it % (nb * 4), b = rem / 4, tt = rem % 4;
      uint4 hi = make_uint4(0, 0, 0, 0), lo = make_uint4(0, 0, 0, 0);
      if (n < nrows) {
        const int gg = g0 + c0 + n;
        const int row = kMlp1 ? a.slot_pair[gg] / a.top_k : gg;
        const float* xp = a.x + static_cast<size_t>(row) * K + 32 * b + 8 * tt;
        const float4 v0 = *reinterpret_cast<const float4*>(xp);
        const float4 v1 = *reinterpret_cast<const float4*>(xp + 4);
        f16_hilo8(v0, v1, hi, lo);
      }
      *reinterpret_cast<uint4*>(xs + n * rw + 16 * b + 4 * tt) = hi;
      *reinterpret_cast<uint4*>(xs + (NR + n) * rw + 16 * b + 4 * tt) = lo;
    }
    __syncthreads();

    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const bool col_ok = g < nrows;  // this lane's B column (activation row) exists
    const uint32_t* xh = xs + min(g, NR - 1) * rw + 4 * t;
    const uint32_t* xl = xs + (NR + min(g, NR - 1)) * rw + 4 * t;
    if (wave_ok) {
      for (int b0 = 0; b0 < nb; b0 += kMmaGemvUnroll) {
        uint32_t w0[kMmaGemvUnroll], w1[kMmaGemvUnroll], s0[kMmaGemvUnroll], s1[kMmaGemvUnroll];
#pragma unroll
        for (int u = 0; u < kMmaGemvUnroll; ++u) {
          const int b = b0 + u;
          const bool ok = b < nb;
          w0[u] = ok ? wb0[4 * b] : 0u;
          w1[u] = ok ? wb1[4 * b] : 0u;
          s0[u] = ok ? sc0[b] : 127u;
          s1[u] = ok ? sc1[b] : 127u;
        }
#pragma unroll
        for (int u = 0; u < kMmaGemvUnroll; ++u) {
          const int b = b0 + u;
          if (b >= nb) break;
          uint4 bh = make_uint4(0, 0, 0, 0), bl = make_uint4(0, 0, 0, 0);
          if (col_ok) {
            bh = *reinterpret_cast<const uint4*>(xh + 16 * b);
            bl = *reinterpret_cast<const uint4*>(xl + 16 * b);
          }
          const uint32_t p00 = mxfp4_pair_f16(w0[u], 0), p01 = mxfp4_pair_f16(w0[u], 1),
                         p02 = mxfp4_pair_f16(w0[u], 2), p03 = mxfp4_pair_f16(w0[u], 3);
          const uint32_t p10 = mxfp4_pair_f16(w1[u], 0), p11 = mxfp4_pair_f16(w1[u], 1),
                         p12 = mxfp4_pair_f16(w1[u], 2), p13 = mxfp4_pair_f16(w1[u], 3);
          float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
          tile::mma_f16_m16n8k16(d, p00, p10, p01, p11, bl.x, bl.y);
          tile::mma_f16_m16n8k16(d, p02, p12, p03, p13, bl.z, bl.w);
          tile::mma_f16_m16n8k16(d, p00, p10, p01, p11, bh.x, bh.y);
          tile::mma_f16_m16n8k16(d, p02, p12, p03, p13, bh.z, bh.w);
          const float f0 = e8m0_to_f32(s0[u]) * 16384.0f, f1 = e8m0_to_f32(s1[u]) * 16384.0f;
          acc[0] = fmaf(d[0], f0, acc[0]);
          acc[1] = fmaf(d[1], f0, acc[1]);
          acc[2] = fmaf(d[2], f1, acc[2]);
          acc[3] = fmaf(d[3], f1, acc[3]);
        }
      }
    }
    // acc: rows m0 + g (acc 0, 1) and m0 + g + 8 (acc 2, 3), activation rows 2t, 2t + 1.
    const uint16_t* bias = a.bias + static_cast<size_t>(e) * a.M + m0;
    if (kMlp1) {
      // gate/up pairs are rows (2i, 2i + 1): the up value comes from lane + 4 (row g + 1).
      float up[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) up[i] = gpu_shfl_down(acc[i], 4);
      if (wave_ok && (g % 2) == 0) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {      // row g (h = 0) or g + 8 (h = 1)
          const int mr = g + 8 * h;
#pragma unroll
          for (int c = 0; c < 2; ++c) {    // activation row 2t + c
            const int n = 2 * t + c;
            if (n >= nrows) continue;
            const float gate = acc[2 * h + c] + bf16_bits_to_f32(bias[mr]);
            const float upv = up[2 * h + c] + bf16_bits_to_f32(bias[mr + 1]);
            a.out[static_cast<size_t>(g0 + c0 + n) * (a.M / 2) + (m0 + mr) / 2] = swiglu(gate, upv, a.limit);
          }
        }
      }
    } else if (wave_ok) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int mr = g + 8 * h;
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int n = 2 * t + c;
          if (n >= nrows) continue;
          a.out[static_cast<size_t>(a.slot_pair[g0 + c0 + n]) * a.M + m0 + mr] =
              acc[2 * h + c] + bf16_bits_to_f32(bias[mr]);
        }
      }
    }
  }
}

// ---- grouped GEMM on tensor cores (NVIDIA; every expert of steps of > kMoeStepGemvMaxRows rows) --
// The tensor-core GEMV's arithmetic (weights = A as exact fp16 placements LUT * 2^-14, x = B as
// fp16 hi + lo, mma.sync m16n8k16 f16 -> f32, each MXFP4 block's partial sums scaled by the
// rows' E8M0 scales into fp32 accumulators) on a GEMM tile with a cp.async pipeline:
//   block = kMoeTcBM (256) weight rows x kMoeTcBN (64 = kMoeTileRows, one tile of the tile list) grouped
//   rows; warp w owns weight rows 32w .. 32w + 31 (two m16 tiles) x all 64 columns (8 n8 tiles,
//   only ceil(rows / 8) of them computed: the count is uniform per block).
//   K advances kMoeTcKB (2) MXFP4 blocks per stage, kTcStages (4) stages in flight: per stage the raw
//   MXFP4 bytes (256 rows x 32 B) and the B operand (64 rows x 256 B of pre-staged hi/lo pairs)
//   arrive by cp.async; the scales of the block's rows for all K are copied once at the start.
//   No decode to shared memory: each lane turns its own 2 words per m16 tile into 8 fp16 pairs
//   (2-3 integer ops per pair) and feeds 8 n-tiles x 4 mma with them.
// B comes pre-staged (moe_stage_x_kernel for mlp1; mlp1's epilogue for mlp2) as, per row and
// MXFP4 block b, 128 bytes: [hi: lanes t = 0..3 x 4 words][lo: same], word q of lane t = the fp16
// pair (32b + 8t + q, 32b + 8t + q + 4): the B fragment of lane (g, t) is one 16-byte load.
// Results: a row's outputs depend on that row only (columns of an mma are independent, the K
// order is fixed), so they do not depend on the other rows of the step or on the tiling.
// Shared stage: weights [kMoeTcBM rows][kMoeTcKB blocks x 16 B], block slot b of row r at
// b ^ ((r >> 2) & 1); B [kMoeTcBN rows][16 chunks of 16 B], chunk j of row n at j ^ (4 (n & 1)).
// The XOR swizzles make the fragment reads conflict-free without padding. Two configurations
// (template kStages, kMinBlocks): 3 stages + scales = 95 KB with registers capped at 128 (two
// blocks per SM), or 4 / 6 stages = 119 / 167 KB, uncapped (one block per SM);
// MoeOptions::grouped_config 1 / 2 pick those. Dynamic shared memory moe_tc_smem_bytes(K, stages).
static_assert(kMoeTcKB == 2, "the swizzles assume two MXFP4 blocks per stage");
static_assert(kMoeTcBN == kMoeTileRows, "one block per tile of the tile list");
static_assert(kMoeTcBM == 32 * kWaves && kMoeThreads == 256, "warp w owns weight rows 32w..32w+31");

// [rows, K] fp32 -> [rows, K / 32, 2 (hi, lo), 4 (t), 4 (q)] fp16-pair words (see above).
__global__ __launch_bounds__(kMoeThreads) void moe_stage_x_kernel(const float* __restrict__ x, int rows,
                                                               int K, uint32_t* __restrict__ xq) {
  const int nb = K / 32;
  const size_t item = static_cast<size_t>(blockIdx.x) * kMoeThreads + threadIdx.x;
  if (item >= static_cast<size_t>(rows) * nb * 4) return;
  const int n = static_cast<int>(item / (nb * 4)), rem = static_cast<int>(item % (nb * 4));
  const int b = rem / 4, tt = rem % 4;
  const float* xp = x + static_cast<size_t>(n) * K + 32 * b + 8 * tt;
  uint4 hi, lo;
  f16_hilo8(*reinterpret_cast<const float4*>(xp), *reinterpret_cast<const float4*>(xp + 4), hi, lo);
  uint32_t* o = xq + static_cast<size_t>(n) * nb * 32 + 32 * b + 4 * tt;
  *reinterpret_cast<uint4*>(o) = hi;
  *reinterpret_cast<uint4*>(o + 16) = lo;
}

template <bool kMlp1, int kTcStages, int kMinBlocks>
__global__ __launch_bounds__(kMoeThreads, kMinBlocks) void moe_tc_kernel(ExpertArgs a) {
  extern __shared__ uint4 tc_smem4[];
  unsigned char* smem = reinterpret_cast<unsigned char*>(tc_smem4);
  const int tile = blockIdx.x;
  if (tile >= a.meta[1]) return;  // uniform per block
  const int tid = threadIdx.x, warp = tid / kWaveSize, lane = tid % kWaveSize;
  const int g = lane / 4, t = lane % 4;
  const int e = a.tile_expert[tile], s0 = a.tile_slot0[tile];
  const int nrows = min(kMoeTcBN, a.offsets[e + 1] - s0);
  const int K = a.K, M = a.M, nb = K / 32, nk = nb / kMoeTcKB;
  const int m0 = blockIdx.y * kMoeTcBM;
  const int mrows = min(kMoeTcBM, M - m0);  // a multiple of 32 (moe_plan's shape check)
  unsigned char* scs = smem + kTcStages * kMoeTcStageBytes;  // [mrows][nb] E8M0 bytes

  // Scales of rows m0 .. m0 + mrows - 1: one contiguous span of the [E, M, nb] array.
  {
    const uint8_t* src = a.scales + (static_cast<size_t>(e) * M + m0) * nb;
    const int nbytes = mrows * nb;
    if ((reinterpret_cast<uintptr_t>(src) & 15u) == 0 && nbytes % 16 == 0) {
      for (int i = tid; i < nbytes / 16; i += kMoeThreads) tile::cp_async16(scs + 16 * i, src + 16 * i);
    } else {
      for (int i = tid; i < nbytes; i += kMoeThreads) scs[i] = src[i];
    }
  }
  // Loader roles. A: kMoeTcBM rows x kMoeTcKB blocks of 16 B = 2 chunks per thread; B: kMoeTcBN rows x
  // 16 chunks of 16 B = 4 chunks per thread. Weight rows past M are not loaded (their warps do
  // not compute); B rows past the tile's rows are not loaded either (only their columns' outputs,
  // which are dropped, read them).
  // Kept compact (registers): thread tid copies weight rows r = tid / 2 + 128 i (block tid % 2)
  // and B rows n = tid / 16 + 16 i (chunk tid % 16); the swizzle bits are the same for all i.
  constexpr int kAChunks = kMoeTcBM * kMoeTcKB / kMoeThreads, kBChunks = kMoeTcBN * kMoeTcKB * 8 / kMoeThreads;
  static_assert(kAChunks == 2 && kBChunks == 4, "loader mapping");
  const int ar = tid / 2, ab = tid % 2;
  const unsigned char* asrc = a.blocks + ((static_cast<size_t>(e) * M + m0 + ar) * nb + ab) * 16;
  const size_t astep = static_cast<size_t>(128) * nb * 16;  // 128 rows further
  const int adst = ar * kMoeTcWRow + ((ab ^ ((ar >> 2) & 1)) << 4);
  const int bn = tid / 16, bj = tid % 16;
  const int bdst = kMoeTcBM * kMoeTcWRow + bn * kMoeTcXRow + ((bj ^ ((bn & 1) << 2)) << 4);
  uint32_t boff[kBChunks];  // byte offset of the chunk's row in xq / 16, or ~0u: not loaded
#pragma unroll
  for (int i = 0; i < kBChunks; ++i) {
    const int n = bn + 16 * i;
    boff[i] = ~0u;
    if (n < nrows) {
      const int gs = s0 + n;
      const int src_row = kMlp1 ? a.slot_pair[gs] / a.top_k : gs;
      boff[i] = static_cast<uint32_t>(src_row) * static_cast<uint32_t>(nb * 8) + bj;
    }
  }
  const uint4* xq = reinterpret_cast<const uint4*>(a.xq);
  auto load_stage = [&](int kt, int st) {
    unsigned char* base = smem + st * kMoeTcStageBytes;
#pragma unroll
    for (int i = 0; i < kAChunks; ++i)
      if (ar + 128 * i < mrows)
        tile::cp_async16(base + adst + i * 128 * kMoeTcWRow, asrc + i * astep + static_cast<size_t>(kt) * kMoeTcKB * 16);
#pragma unroll
    for (int i = 0; i < kBChunks; ++i)
      if (boff[i] != ~0u)
        tile::cp_async16(base + bdst + i * 16 * kMoeTcXRow, xq + boff[i] + static_cast<size_t>(kt) * kMoeTcKB * 8);
  };
#pragma unroll
  for (int st = 0; st < kTcStages - 1; ++st) {
    if (st < nk) load_stage(st, st);
    tile::cp_async_commit();
  }

  const int wm = 32 * warp;  // the warp's first weight row in the block
  const bool wact = wm < mrows;
  const uint16_t* bias = a.bias + static_cast<size_t>(e) * M + m0 + wm;

  // The main loop and epilogue for NT computed n8 tiles (NT = ceil(rows / 8), uniform per block):
  // a compile-time count keeps all 2 x NT accumulator chains in one basic block, so the mma of
  // different tiles interleave (a run-time `break` per tile serialised them: 2 chains in flight).
  auto run = [&]<int NT>() {
    float acc[2][NT][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0.0f;

    for (int kt = 0; kt < nk; ++kt) {
      tile::cp_async_wait<kTcStages - 2>();
      __syncthreads();  // stage kt (and the scales) visible; stage kt - 1 free for reuse
      {
        const int nx = kt + kTcStages - 1;
        if (nx < nk) load_stage(nx, nx % kTcStages);
        tile::cp_async_commit();
      }
      if (!wact) continue;
      const unsigned char* Ws = smem + (kt % kTcStages) * kMoeTcStageBytes;
      const unsigned char* Xs = Ws + kMoeTcBM * kMoeTcWRow;
#pragma unroll
      for (int b = 0; b < kMoeTcKB; ++b) {
        const int bg = kt * kMoeTcKB + b;
        uint32_t ap[2][8];
        float sc[2][2];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          const int r = wm + 16 * mt + g;  // rows r and r + 8 have the same (r >> 2) & 1
          const int wo = ((b ^ ((r >> 2) & 1)) << 4) + 4 * t;
          const uint32_t w0 = *reinterpret_cast<const uint32_t*>(Ws + r * kMoeTcWRow + wo);
          const uint32_t w1 = *reinterpret_cast<const uint32_t*>(Ws + (r + 8) * kMoeTcWRow + wo);
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            ap[mt][q] = mxfp4_pair_f16(w0, q);
            ap[mt][4 + q] = mxfp4_pair_f16(w1, q);
          }
          sc[mt][0] = e8m0_to_f32(scs[r * nb + bg]) * 16384.0f;
          sc[mt][1] = e8m0_to_f32(scs[(r + 8) * nb + bg]) * 16384.0f;
        }
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          const int n = 8 * nt + g;
          const unsigned char* xr = Xs + n * kMoeTcXRow;
          const int sw = (n & 1) << 2;
          const uint4 bh = *reinterpret_cast<const uint4*>(xr + (((8 * b + t) ^ sw) << 4));
          const uint4 bl = *reinterpret_cast<const uint4*>(xr + (((8 * b + 4 + t) ^ sw) << 4));
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            tile::mma_f16_m16n8k16(d, ap[mt][0], ap[mt][4], ap[mt][1], ap[mt][5], bl.x, bl.y);
            tile::mma_f16_m16n8k16(d, ap[mt][2], ap[mt][6], ap[mt][3], ap[mt][7], bl.z, bl.w);
            tile::mma_f16_m16n8k16(d, ap[mt][0], ap[mt][4], ap[mt][1], ap[mt][5], bh.x, bh.y);
            tile::mma_f16_m16n8k16(d, ap[mt][2], ap[mt][6], ap[mt][3], ap[mt][7], bh.z, bh.w);
            acc[mt][nt][0] = fmaf(d[0], sc[mt][0], acc[mt][nt][0]);
            acc[mt][nt][1] = fmaf(d[1], sc[mt][0], acc[mt][nt][1]);
            acc[mt][nt][2] = fmaf(d[2], sc[mt][1], acc[mt][nt][2]);
            acc[mt][nt][3] = fmaf(d[3], sc[mt][1], acc[mt][nt][3]);
          }
        }
      }
    }
    if (!wact) return;

    // acc[mt][nt]: weight rows m0 + wm + 16 mt + g (0, 1) / + 8 (2, 3), grouped rows 8 nt + 2t
    // (0, 2) / + 1 (1, 3).
    if (kMlp1) {
      // gate/up pairs are rows (2i, 2i + 1): the up value comes from lane + 4 (row g + 1). The
      // SwiGLU output goes out as fp16 hi/lo pairs in mlp2's B layout (K = I = M / 2).
      const int I = M / 2;
      uint16_t* outq = a.outq;
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          float up[4];
#pragma unroll
          for (int i = 0; i < 4; ++i) up[i] = gpu_shfl_down(acc[mt][nt][i], 4);
          if (g % 2 != 0) continue;
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int mr = 16 * mt + g + 8 * h;
            const float bgate = bf16_bits_to_f32(bias[mr]), bup = bf16_bits_to_f32(bias[mr + 1]);
            const int io = (m0 + wm + mr) / 2;  // SwiGLU output index = mlp2's k
            const int ob = io / 32, oe = io % 32, ot = oe / 8, oq = oe % 4, ohalf = (oe % 8) / 4;
            const size_t opos = static_cast<size_t>(ob) * 64 + ot * 8 + oq * 2 + ohalf;
#pragma unroll
            for (int c = 0; c < 2; ++c) {
              const int n = 8 * nt + 2 * t + c;
              if (n >= nrows) continue;
              const float v = swiglu(acc[mt][nt][2 * h + c] + bgate, up[2 * h + c] + bup, a.limit);
              const uint16_t vh = tile::f32_to_f16_bits(v);
              const uint16_t vl = tile::f32_to_f16_bits(v - tile::half_bits_to_f32(vh));
              uint16_t* o = outq + static_cast<size_t>(s0 + n) * (2 * I) + opos;
              o[0] = vh;
              o[32] = vl;
            }
          }
        }
    } else {
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int mr = 16 * mt + g + 8 * h;
            const float bv = bf16_bits_to_f32(bias[mr]);
#pragma unroll
            for (int c = 0; c < 2; ++c) {
              const int n = 8 * nt + 2 * t + c;
              if (n >= nrows) continue;
              a.out[static_cast<size_t>(a.slot_pair[s0 + n]) * M + m0 + wm + mr] = acc[mt][nt][2 * h + c] + bv;
            }
          }
    }
  };
  switch ((nrows + 7) / 8) {
    case 1: run.template operator()<1>(); break;
    case 2: run.template operator()<2>(); break;
    case 3: run.template operator()<3>(); break;
    case 4: run.template operator()<4>(); break;
    case 5: run.template operator()<5>(); break;
    case 6: run.template operator()<6>(); break;
    case 7: run.template operator()<7>(); break;
    default: run.template operator()<8>(); break;
  }
  tile::cp_async_wait<0>();
}
#endif  // !GPTOSS_HIP

// ------------------------------------------------------------------------------ tensor-core experts
// grid (ceil(pairs / kMoeTileRows) + E, ceil(M / kMoeTileCols)); block t takes tile t of the tile list
// (exits if t >= n_tiles). A = activations rounded to bf16, B = MXFP4 decoded to bf16, two shared
// stages with register prefetch of the next k step. Dynamic shared memory: moe_tiles_smem_bytes().
template <bool kMlp1>
__global__ __launch_bounds__(kMoeThreads, 2) void moe_mma_kernel(ExpertArgs a) {
  extern __shared__ uint4 mma_smem_v4[];  // 16-byte aligned
  unsigned char* smem = reinterpret_cast<unsigned char*>(mma_smem_v4);
  __shared__ float lut[16];
  const int t = blockIdx.x;
  if (t >= a.meta[1]) return;
  const int tid = threadIdx.x, wave = tid / kWaveSize;
  if (tid < 16) lut[tid] = kLut[tid];
  const int e = a.tile_expert[t], s0 = a.tile_slot0[t];
  const int nrows = min(kMoeTileRows, a.offsets[e + 1] - s0);
  const int n0 = blockIdx.y * kMoeTileCols;
  const int K = a.K, M = a.M, nb = K / 32, nk = K / kMoeTileK;
  uint16_t* As = reinterpret_cast<uint16_t*>(smem);          // [2][kMoeTileRows][kMoeTileLds]
  uint16_t* Bs = As + 2 * kMoeTileRows * kMoeTileLds;                   // [2][kMoeTileCols][kMoeTileLds]
  // Activations enter as hi = bf16(x) and lo = bf16(x - hi) (x = hi + lo to ~2^-17 relative) and
  // both are multiplied: fp32-quality products instead of bf16-rounded activations.
  uint16_t* AsLo = Bs + 2 * kMoeTileCols * kMoeTileLds;                 // [2][kMoeTileRows][kMoeTileLds]

  // Loader roles: A row ar, kAF k values from aoff; B weight row br, kBBytes bytes from boff.
  const int ar = tid / kATpr, aoff = (tid % kATpr) * kAF, br = tid / 2, boff = (tid % 2) * kBBytes;
  const float* arow = nullptr;
  if (ar < nrows) {
    const int g = s0 + ar;
    const int row = kMlp1 ? a.slot_pair[g] / a.top_k : g;
    arow = a.x + static_cast<size_t>(row) * K + aoff;
  }
  const bool bvalid = n0 + br < M;
  const size_t wrow = static_cast<size_t>(e) * M + (bvalid ? n0 + br : 0);
  const uint8_t* bblk = a.blocks + wrow * (K / 2) + boff;
  const uint8_t* bsc = a.scales + wrow * nb + boff / 16;

  float4 ra[kAF / 4];
  uint2 rb[kBBytes / 8];
  uint32_t rs[kBBytes / 8];
#pragma unroll
  for (int i = 0; i < kAF / 4; ++i) ra[i] = make_float4(0, 0, 0, 0);
#pragma unroll
  for (int i = 0; i < kBBytes / 8; ++i) {
    rb[i] = make_uint2(0, 0);
    rs[i] = 127;
  }
  auto gload = [&](int kt) {
    if (arow) {
#pragma unroll
      for (int i = 0; i < kAF / 4; ++i) ra[i] = *reinterpret_cast<const float4*>(arow + kt * kMoeTileK + 4 * i);
    }
    if (bvalid) {
#pragma unroll
      for (int i = 0; i < kBBytes / 8; ++i) {
        rb[i] = *reinterpret_cast<const uint2*>(bblk + static_cast<size_t>(kt) * (kMoeTileK / 2) + 8 * i);
        rs[i] = bsc[kt * (kMoeTileK / 32) + i / 2];
      }
    }
  };
  auto sstore = [&](int buf) {
#pragma unroll
    for (int i = 0; i < kAF / 8; ++i) {
      uint4 pa;
      pa.x = f32_to_bf16_bits(ra[2 * i].x) | (f32_to_bf16_bits(ra[2 * i].y) << 16);
      pa.y = f32_to_bf16_bits(ra[2 * i].z) | (f32_to_bf16_bits(ra[2 * i].w) << 16);
      pa.z = f32_to_bf16_bits(ra[2 * i + 1].x) | (f32_to_bf16_bits(ra[2 * i + 1].y) << 16);
      pa.w = f32_to_bf16_bits(ra[2 * i + 1].z) | (f32_to_bf16_bits(ra[2 * i + 1].w) << 16);
      *reinterpret_cast<uint4*>(As + (buf * kMoeTileRows + ar) * kMoeTileLds + aoff + 8 * i) = pa;
      uint4 pl;
      pl.x = f32_to_bf16_bits(ra[2 * i].x - bf16_bits_to_f32(pa.x & 0xffffu)) |
             (f32_to_bf16_bits(ra[2 * i].y - bf16_bits_to_f32(pa.x >> 16)) << 16);
      pl.y = f32_to_bf16_bits(ra[2 * i].z - bf16_bits_to_f32(pa.y & 0xffffu)) |
             (f32_to_bf16_bits(ra[2 * i].w - bf16_bits_to_f32(pa.y >> 16)) << 16);
      pl.z = f32_to_bf16_bits(ra[2 * i + 1].x - bf16_bits_to_f32(pa.z & 0xffffu)) |
             (f32_to_bf16_bits(ra[2 * i + 1].y - bf16_bits_to_f32(pa.z >> 16)) << 16);
      pl.w = f32_to_bf16_bits(ra[2 * i + 1].z - bf16_bits_to_f32(pa.w & 0xffffu)) |
             (f32_to_bf16_bits(ra[2 * i + 1].w - bf16_bits_to_f32(pa.w >> 16)) << 16);
      *reinterpret_cast<uint4*>(AsLo + (buf * kMoeTileRows + ar) * kMoeTileLds + aoff + 8 * i) = pl;
    }
#pragma unroll
    for (int i = 0; i < kBBytes / 8; ++i) {
      uint32_t d[8];
      mxfp4_decode16_bf16(rb[i], e8m0_to_f32(rs[i]), lut, d);
      uint4* bp = reinterpret_cast<uint4*>(Bs + (buf * kMoeTileCols + br) * kMoeTileLds + 2 * boff + 16 * i);
      bp[0] = make_uint4(d[0], d[1], d[2], d[3]);
      bp[1] = make_uint4(d[4], d[5], d[6], d[7]);
    }
  };

  const int wm = wave % kWaveGridM, wn = wave / kWaveGridM;
  tile::Acc acc[kWaveTilesN];
#pragma unroll
  for (int j = 0; j < kWaveTilesN; ++j) tile::zero(acc[j]);

  __syncthreads();  // lut ready
  gload(0);
  sstore(0);
  __syncthreads();
  for (int kt = 0; kt < nk; ++kt) {
    const int buf = kt & 1;
    if (kt + 1 < nk) gload(kt + 1);
    const uint16_t* Ab = As + (buf * kMoeTileRows + wm * kWarpRows) * kMoeTileLds;
    const uint16_t* AbLo = AsLo + (buf * kMoeTileRows + wm * kWarpRows) * kMoeTileLds;
    const uint16_t* Bb = Bs + (buf * kMoeTileCols + wn * kWarpCols) * kMoeTileLds;
#pragma unroll
    for (int kk = 0; kk < kMoeTileK; kk += 16)
#pragma unroll
      for (int j = 0; j < kWaveTilesN; ++j) {
        tile::mma_k16(acc[j], AbLo, kMoeTileLds, Bb + j * tile::kWaveTileN * kMoeTileLds, kMoeTileLds, kk);
        tile::mma_k16(acc[j], Ab, kMoeTileLds, Bb + j * tile::kWaveTileN * kMoeTileLds, kMoeTileLds, kk);
      }
    if (kt + 1 < nk) sstore(buf ^ 1);
    __syncthreads();
  }

  // Epilogue through shared memory (the stage buffers are free after the last barrier).
  float* Cs = reinterpret_cast<float*>(smem);  // [kMoeTileRows][kMoeTileCols + 4]
  constexpr int ldc = kMoeTileCols + 4;
#pragma unroll
  for (int j = 0; j < kWaveTilesN; ++j) {
    float* cb = Cs + (wm * kWarpRows) * ldc + wn * kWarpCols + j * tile::kWaveTileN;
    tile::for_each(acc[j], [&](int i, int c, float v) { cb[i * ldc + c] = v; });
  }
  __syncthreads();
  const uint16_t* bias = a.bias + static_cast<size_t>(e) * M;
  if (kMlp1) {
    const int I = M / 2;
    for (int idx = tid; idx < kMoeTileRows * kMoeTileCols / 2; idx += kMoeThreads) {
      const int r = idx / (kMoeTileCols / 2), qq = idx % (kMoeTileCols / 2), n = n0 + 2 * qq;
      if (r >= nrows || n >= M) continue;
      const float gate = Cs[r * ldc + 2 * qq] + bf16_bits_to_f32(bias[n]);
      const float up = Cs[r * ldc + 2 * qq + 1] + bf16_bits_to_f32(bias[n + 1]);
      a.out[static_cast<size_t>(s0 + r) * I + n / 2] = swiglu(gate, up, a.limit);
    }
  } else {
    for (int idx = tid; idx < kMoeTileRows * kMoeTileCols; idx += kMoeThreads) {
      const int r = idx / kMoeTileCols, c = idx % kMoeTileCols, n = n0 + c;
      if (r >= nrows || n >= M) continue;
      a.out[static_cast<size_t>(a.slot_pair[s0 + r]) * M + n] = Cs[r * ldc + c] + bf16_bits_to_f32(bias[n]);
    }
  }
}

// ------------------------------------------------------------------------------ combine
// residual[n, i] += ((w0 y0 + w1 y1) + w2 y2) + ...   (rank order, as the CPU twin)
__global__ __launch_bounds__(kMoeThreads) void moe_combine_kernel(const float* __restrict__ y,
                                                                const float* __restrict__ weights,
                                                                int rows, int k, int H,
                                                                float* __restrict__ residual) {
  const int h4 = H / 4;
  const size_t idx = static_cast<size_t>(blockIdx.x) * kMoeThreads + threadIdx.x;
  if (idx >= static_cast<size_t>(rows) * h4) return;
  const int n = static_cast<int>(idx / h4), i4 = static_cast<int>(idx % h4);
  const float4* yp = reinterpret_cast<const float4*>(y + static_cast<size_t>(n) * k * H) + i4;
  const float w0 = weights[n * k];
  float4 v = yp[0];
  float4 acc = make_float4(w0 * v.x, w0 * v.y, w0 * v.z, w0 * v.w);
  for (int r = 1; r < k; ++r) {
    const float wr = weights[n * k + r];
    v = yp[static_cast<size_t>(r) * h4];
    acc.x = acc.x + wr * v.x;
    acc.y = acc.y + wr * v.y;
    acc.z = acc.z + wr * v.z;
    acc.w = acc.w + wr * v.w;
  }
  float4* rp = reinterpret_cast<float4*>(residual + static_cast<size_t>(n) * H) + i4;
  float4 res = *rp;
  res.x = res.x + acc.x;
  res.y = res.y + acc.y;
  res.z = res.z + acc.z;
  res.w = res.w + acc.w;
  *rp = res;
}

// Combine fused with the next RMSNorm (decode steps: one launch instead of two). grid (rows),
// block kMoeNormThreads: residual[n, i] += ((w0 y0 + w1 y1) + ...) as moe_combine_kernel, then
// out[n, :] = residual[n, :] * rsqrt(mean(residual[n, :]^2) + eps) * scale (mean in fp64), in
// float4 chunks with exactly the element order and reduction of ops.h's f32_bf16w_rmsnorm
// (elementwise.cu, f32_bf16w_rmsnorm4_kernel), so the normalised row has the same bits.
// H % 4 == 0 (checked by check_shape: H % 32 == 0).
__global__ __launch_bounds__(kMoeNormThreads) void moe_combine_norm_kernel(
    const float* __restrict__ y, const float* __restrict__ weights, int k, int H,
    float* __restrict__ residual, const uint16_t* __restrict__ scale, float eps,
    float* __restrict__ out) {
  __shared__ double red[kMoeNormThreads / 16];  // >= waves per block for any kWaveSize >= 16
  const int n = blockIdx.x, tid = threadIdx.x, h4 = H / 4;
  const float4* yr = reinterpret_cast<const float4*>(y + static_cast<size_t>(n) * k * H);
  float4* rr = reinterpret_cast<float4*>(residual + static_cast<size_t>(n) * H);
  const float w0 = weights[n * k];
  double ss = 0.0;
  for (int base = 0; base < h4; base += 4 * kMoeNormThreads) {
    float4 v[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int i = base + c * kMoeNormThreads + tid;
      if (i < h4) {
        float4 yv = yr[i];
        float4 acc = make_float4(w0 * yv.x, w0 * yv.y, w0 * yv.z, w0 * yv.w);
        for (int r = 1; r < k; ++r) {
          const float wr = weights[n * k + r];
          yv = yr[static_cast<size_t>(r) * h4 + i];
          acc.x = acc.x + wr * yv.x;
          acc.y = acc.y + wr * yv.y;
          acc.z = acc.z + wr * yv.z;
          acc.w = acc.w + wr * yv.w;
        }
        float4 res = rr[i];
        res.x = res.x + acc.x;
        res.y = res.y + acc.y;
        res.z = res.z + acc.z;
        res.w = res.w + acc.w;
        rr[i] = res;
        v[c] = res;
      } else {
        v[c] = make_float4(0.f, 0.f, 0.f, 0.f);
      }
    }
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      ss += static_cast<double>(v[c].x) * v[c].x;
      ss += static_cast<double>(v[c].y) * v[c].y;
      ss += static_cast<double>(v[c].z) * v[c].z;
      ss += static_cast<double>(v[c].w) * v[c].w;
    }
  }
  for (int m = kWaveSize / 2; m > 0; m >>= 1) ss += gpu_shfl_xor(ss, m);
  const int wave = tid / kWaveSize, lane = tid % kWaveSize;
  constexpr int n_waves = kMoeNormThreads / kWaveSize;
  __syncthreads();
  if (lane == 0) red[wave] = ss;
  __syncthreads();
  double tot = 0.0;
  for (int w = 0; w < n_waves; ++w) tot += red[w];
  const float mean = static_cast<float>(tot / H);
  const float rs = 1.0f / sqrtf(mean + eps);
  float4* orow = reinterpret_cast<float4*>(out + static_cast<size_t>(n) * H);
  const uint2* sc = reinterpret_cast<const uint2*>(scale);
  for (int i = tid; i < h4; i += kMoeNormThreads) {
    const float4 v = rr[i];
    const uint2 s = sc[i];
    orow[i] = make_float4(__fmul_rn(__fmul_rn(v.x, rs), __uint_as_float(s.x << 16)),
                          __fmul_rn(__fmul_rn(v.y, rs), __uint_as_float(s.x & 0xffff0000u)),
                          __fmul_rn(__fmul_rn(v.z, rs), __uint_as_float(s.y << 16)),
                          __fmul_rn(__fmul_rn(v.w, rs), __uint_as_float(s.y & 0xffff0000u)));
  }
}

__global__ void moe_decode_test_kernel(const uint8_t* blocks, const uint8_t* scales, int n,
                                       float* out_f32, uint16_t* out_bf16) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= n) return;
  const uint4 v = reinterpret_cast<const uint4*>(blocks)[b];
  const float sc = e8m0_to_f32(scales[b]);
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
  for (int j = 0; j < 4; ++j) {
    float raw[8];
    mxfp4_decode8_raw(words[j], raw);
    for (int i = 0; i < 8; ++i) out_f32[32 * b + 8 * j + i] = (raw[i] * 16384.0f) * sc;
  }
  float lut[16];
  for (int i = 0; i < 16; ++i) lut[i] = kLut[i];
  uint32_t d[8];
  mxfp4_decode16_bf16(make_uint2(v.x, v.y), sc, lut, d);
  for (int i = 0; i < 8; ++i) {
    out_bf16[32 * b + 2 * i] = static_cast<uint16_t>(d[i] & 0xffffu);
    out_bf16[32 * b + 2 * i + 1] = static_cast<uint16_t>(d[i] >> 16);
  }
  mxfp4_decode16_bf16(make_uint2(v.z, v.w), sc, lut, d);
  for (int i = 0; i < 8; ++i) {
    out_bf16[32 * b + 16 + 2 * i] = static_cast<uint16_t>(d[i] & 0xffffu);
    out_bf16[32 * b + 16 + 2 * i + 1] = static_cast<uint16_t>(d[i] >> 16);
  }
}

template <class T>
T* dev_alloc(size_t n, size_t& bytes) {
  void* p = nullptr;
  const size_t nb = std::max<size_t>(n, 1) * sizeof(T);
  GPU_CHECK(gpuMalloc(&p, nb));
  bytes += nb;
  return static_cast<T*>(p);
}

MoeShape shape_of(const MoeGpuWeights& w) {
  return MoeShape{w.n_experts, w.top_k, w.hidden, w.intermediate};
}

void check_shape(const MoeGpuWeights& w) {
  const std::string err = moe_shape_error(shape_of(w));
  if (!err.empty()) fail("moe: %s", err.c_str());
}

// Every MoE kernel by the name moe_plan's launches give it, and its host handle.
struct KernelFn {
  const char* name;
  const void* fn;
};
template <class K>
KernelFn kfn(const char* name, K* kernel) {
  return KernelFn{name, reinterpret_cast<const void*>(kernel)};
}
const std::vector<KernelFn>& kernel_fns() {
  static const std::vector<KernelFn> v = {
      kfn("moe_route_small_kernel", moe_route_small_kernel),
      kfn("moe_router_rows_kernel", moe_router_rows_kernel),
      kfn("moe_router_kernel", moe_router_kernel),
      kfn("moe_build_kernel", moe_build_kernel),
      kfn("moe_gemv_kernel<1, true>", moe_gemv_kernel<1, true>),
      kfn("moe_gemv_kernel<1, false>", moe_gemv_kernel<1, false>),
      kfn("moe_gemv_kernel<4, true>", moe_gemv_kernel<4, true>),
      kfn("moe_gemv_kernel<4, false>", moe_gemv_kernel<4, false>),
      kfn("moe_mma_kernel<true>", moe_mma_kernel<true>),
      kfn("moe_mma_kernel<false>", moe_mma_kernel<false>),
#if !defined(GPTOSS_HIP)
      kfn("moe_gemv_mma_kernel<1, true>", moe_gemv_mma_kernel<1, true>),
      kfn("moe_gemv_mma_kernel<1, false>", moe_gemv_mma_kernel<1, false>),
      kfn("moe_gemv_mma_kernel<8, true>", moe_gemv_mma_kernel<kMoeMmaGemvRows, true>),
      kfn("moe_gemv_mma_kernel<8, false>", moe_gemv_mma_kernel<kMoeMmaGemvRows, false>),
      kfn("moe_tc_kernel<true, 3, 2>", moe_tc_kernel<true, 3, 2>),
      kfn("moe_tc_kernel<false, 3, 2>", moe_tc_kernel<false, 3, 2>),
      kfn("moe_tc_kernel<true, 4, 1>", moe_tc_kernel<true, 4, 1>),
      kfn("moe_tc_kernel<false, 4, 1>", moe_tc_kernel<false, 4, 1>),
      kfn("moe_tc_kernel<true, 6, 1>", moe_tc_kernel<true, 6, 1>),
      kfn("moe_tc_kernel<false, 6, 1>", moe_tc_kernel<false, 6, 1>),
#endif
  };
  return v;
}

// Host-side, once, before any graph capture: each kernel a step of 1..max_rows rows can launch
// may use the largest dynamic shared memory its plans give it (moe_plan.h; the launch-limit test
// checks the same plans against the target's limits).
void set_smem_limits(const MoeShape& sh, int max_rows, const MoeOptions& o) {
  std::map<std::string, size_t> most;
  for (int rows = 1; rows <= max_rows; ++rows)
    for (bool norm : {false, true})
      moe_plan(sh, rows, o, kTarget, norm).for_each_launch([&](const KernelLaunch& l) {
        size_t& m = most[l.kernel];
        m = std::max(m, l.dyn_smem_bytes);
      });
  for (const auto& [name, bytes] : most) {
    if (bytes == 0) continue;
    const KernelFn* k = nullptr;
    for (const KernelFn& f : kernel_fns())
      if (name == f.name) k = &f;
    if (!k) fail("moe: internal error: no kernel named %s", name.c_str());
    GPU_CHECK(gpuFuncSetAttribute(k->fn, gpuFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(bytes)));
  }
}

}  // namespace

MoeGpuScratch moe_scratch_create(const MoeGpuWeights& w, int max_rows, const MoeOptions& options) {
  check_shape(w);
  if (max_rows < 1) fail("moe: max_rows %d must be >= 1", max_rows);
  const char* opt_err = moe_options_error(options, kTarget);
  if (*opt_err) fail("moe: %s (%s build)", opt_err, GPU_RT_NAME);
  MoeGpuScratch s;
  s.max_rows = max_rows;
  s.n_experts = w.n_experts;
  s.top_k = w.top_k;
  s.hidden = w.hidden;
  s.intermediate = w.intermediate;
  s.options = options;
  const size_t pairs = static_cast<size_t>(max_rows) * w.top_k;
  s.max_tiles = static_cast<int>((pairs + kMoeTileRows - 1) / kMoeTileRows) + w.n_experts;
  // Every launch of every step size fits this target, or the scratch is refused now (one line
  // naming the kernel, the step size and the limit) rather than a launch failing at some step.
  const std::string limits = moe_limits_error(shape_of(w), max_rows, options, kTarget);
  if (!limits.empty()) fail("%s", limits.c_str());
  set_smem_limits(shape_of(w), max_rows, options);
  s.experts = dev_alloc<int32_t>(pairs, s.bytes);
  s.weights = dev_alloc<float>(pairs, s.bytes);
  s.offsets = dev_alloc<int32_t>(w.n_experts + 1, s.bytes);
  s.active = dev_alloc<int32_t>(w.n_experts, s.bytes);
  s.meta = dev_alloc<int32_t>(2, s.bytes);
  s.slot_pair = dev_alloc<int32_t>(pairs, s.bytes);
  s.tile_expert = dev_alloc<int32_t>(s.max_tiles, s.bytes);
  s.tile_slot0 = dev_alloc<int32_t>(s.max_tiles, s.bytes);
  s.act = dev_alloc<float>(pairs * w.intermediate, s.bytes);
  s.y = dev_alloc<float>(pairs * w.hidden, s.bytes);
#if !defined(GPTOSS_HIP)
  s.xq = dev_alloc<uint32_t>(static_cast<size_t>(max_rows) * w.hidden, s.bytes);
  s.actq = dev_alloc<uint32_t>(pairs * w.intermediate, s.bytes);
#endif
  return s;
}

void moe_scratch_destroy(MoeGpuScratch& s) {
  void* ptrs[] = {s.experts, s.weights,   s.offsets, s.active, s.meta, s.slot_pair, s.tile_expert,
                  s.tile_slot0, s.act, s.y, s.xq, s.actq};
  for (void* p : ptrs)
    if (p) GPU_CHECK(gpuFree(p));
  s = MoeGpuScratch{};
}

const char* moe_path_name(const MoeGpuScratch& s, int rows) {
  const MoeShape sh{s.n_experts, s.top_k, s.hidden, s.intermediate};
  return moe_mlp_name(moe_plan(sh, std::max(rows, 1), s.options, kTarget, false).mlp);
}

namespace {
dim3 grid_of(const KernelLaunch& l) { return dim3(l.grid_x, l.grid_y, l.grid_z); }
}  // namespace

void moe_forward(const MoeGpuWeights& w, const float* x_normed, int rows, float* residual,
                 MoeGpuScratch& s, gpuStream_t stream, const MoeNextNorm* next_norm) {
  check_shape(w);
  if (s.n_experts != w.n_experts || s.top_k != w.top_k || s.hidden != w.hidden ||
      s.intermediate != w.intermediate)
    fail("moe: scratch was created for another shape");
  if (rows > s.max_rows) fail("moe: %d rows exceed the scratch's max_rows %d", rows, s.max_rows);
  if (rows <= 0) return;
  const int E = w.n_experts, k = w.top_k, H = w.hidden, I = w.intermediate;
  const int pairs = rows * k;
  // Kernels, grids and shared memory of this step: moe_plan (moe_plan.h), the same function the
  // launch-limit test checks.
  const MoePlan p = moe_plan(shape_of(w), rows, s.options, kTarget, next_norm != nullptr);

  const KernelLaunch& r = p.route_k;
  if (p.route == MoeRoute::small) {
    moe_route_small_kernel<<<grid_of(r), r.threads, r.dyn_smem_bytes, stream>>>(
        x_normed, w.router_w, w.router_b, rows, H, E, k, p.gemv_max, s.experts, s.weights,
        s.offsets, s.active, s.meta, s.slot_pair, s.tile_expert, s.tile_slot0);
    GPU_CHECK_LAUNCH();
  } else {
    if (p.route == MoeRoute::rows)
      moe_router_rows_kernel<<<grid_of(r), r.threads, r.dyn_smem_bytes, stream>>>(
          x_normed, w.router_w, w.router_b, rows, H, E, k, s.experts, s.weights);
    else
      moe_router_kernel<<<grid_of(r), r.threads, r.dyn_smem_bytes, stream>>>(
          x_normed, w.router_w, w.router_b, H, E, k, s.experts, s.weights);
    GPU_CHECK_LAUNCH();
    const KernelLaunch& b = p.build_k;
    moe_build_kernel<<<grid_of(b), b.threads, b.dyn_smem_bytes, stream>>>(
        s.experts, pairs, E, p.gemv_max, s.offsets, s.active, s.meta, s.slot_pair, s.tile_expert,
        s.tile_slot0, b.dyn_smem_bytes > 0 ? 1 : 0);
    GPU_CHECK_LAUNCH();
  }

  ExpertArgs a1{w.mlp1_blocks, w.mlp1_scales, w.mlp1_bias, x_normed, s.act, s.offsets, s.active,
                s.meta, s.slot_pair, s.tile_expert, s.tile_slot0, H, 2 * I, k, p.gemv_max,
                w.swiglu_limit};
  ExpertArgs a2{w.mlp2_blocks, w.mlp2_scales, w.mlp2_bias, s.act, s.y, s.offsets, s.active,
                s.meta, s.slot_pair, s.tile_expert, s.tile_slot0, I, H, k, p.gemv_max,
                w.swiglu_limit};
#if !defined(GPTOSS_HIP)
  if (p.mlp == MoeMlp::grouped) {
    a1.xq = s.xq;
    a1.outq = reinterpret_cast<uint16_t*>(s.actq);
    a2.xq = s.actq;
    const KernelLaunch& l = p.stage_x_k;
    moe_stage_x_kernel<<<grid_of(l), l.threads, l.dyn_smem_bytes, stream>>>(x_normed, rows, H, s.xq);
    GPU_CHECK_LAUNCH();
  }
#endif
  // One expert matmul: mlp1 (kFirst: SwiGLU epilogue, K = H) or mlp2 (K = I), by the plan's path.
  auto expert_matmul = [&]<bool kFirst>(const ExpertArgs& a) {
    const KernelLaunch& l = p.mlp_k[kFirst ? 0 : 1];
    const dim3 g = grid_of(l);
    const size_t sm = l.dyn_smem_bytes;
#if !defined(GPTOSS_HIP)
    if (p.mlp == MoeMlp::grouped) {  // every expert
      if (p.tc_stages == 4)
        moe_tc_kernel<kFirst, 4, 1><<<g, l.threads, sm, stream>>>(a);
      else if (p.tc_stages == 6)
        moe_tc_kernel<kFirst, 6, 1><<<g, l.threads, sm, stream>>>(a);
      else
        moe_tc_kernel<kFirst, 3, 2><<<g, l.threads, sm, stream>>>(a);
      GPU_CHECK_LAUNCH();
      return;
    }
    if (p.gemv_tensor_cores) {
      if (p.gemv_rows == 1)
        moe_gemv_mma_kernel<1, kFirst><<<g, l.threads, sm, stream>>>(a);
      else
        moe_gemv_mma_kernel<kMoeMmaGemvRows, kFirst><<<g, l.threads, sm, stream>>>(a);
    } else
#endif
    if (p.gemv_rows == 1) {
      moe_gemv_kernel<1, kFirst><<<g, l.threads, sm, stream>>>(a);
    } else {
      moe_gemv_kernel<4, kFirst><<<g, l.threads, sm, stream>>>(a);
    }
    GPU_CHECK_LAUNCH();
    if (p.mlp == MoeMlp::gemv_tiles) {
      const KernelLaunch& t = p.tiles_k[kFirst ? 0 : 1];
      moe_mma_kernel<kFirst><<<grid_of(t), t.threads, t.dyn_smem_bytes, stream>>>(a);
      GPU_CHECK_LAUNCH();
    }
  };
  expert_matmul.template operator()<true>(a1);
  expert_matmul.template operator()<false>(a2);
  const KernelLaunch& c = p.combine_k;
  if (next_norm) {
    moe_combine_norm_kernel<<<grid_of(c), c.threads, c.dyn_smem_bytes, stream>>>(
        s.y, s.weights, k, H, residual, next_norm->scale, next_norm->eps, next_norm->out);
  } else {
    moe_combine_kernel<<<grid_of(c), c.threads, c.dyn_smem_bytes, stream>>>(s.y, s.weights, rows,
                                                                             k, H, residual);
  }
  GPU_CHECK_LAUNCH();
}

void moe_router_topk_logits(const float* logits, int rows, int E, int k, int32_t* experts,
                            float* weights, gpuStream_t stream) {
  if (k < 1 || k > E || k > kMoeMaxTopK) fail("moe: top-k %d unsupported for %d experts", k, E);
  if (rows <= 0) return;
  moe_topk_logits_kernel<<<(rows + 127) / 128, 128, 0, stream>>>(logits, rows, E, k, experts, weights);
  GPU_CHECK_LAUNCH();
}

void moe_mxfp4_decode(const uint8_t* blocks, const uint8_t* scales, int n_blocks, float* out_f32,
                      uint16_t* out_bf16, gpuStream_t stream) {
  if (n_blocks <= 0) return;
  moe_decode_test_kernel<<<(n_blocks + 127) / 128, 128, 0, stream>>>(blocks, scales, n_blocks,
                                                                      out_f32, out_bf16);
  GPU_CHECK_LAUNCH();
}

}  // namespace gptoss::gpu
