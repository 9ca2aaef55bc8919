// moe.cu: GPU MoE block (see moe.h for the design): router, grouping, MXFP4 GEMV and tensor-core
// grouped GEMM expert kernels with fused SwiGLU / bias epilogues, rank-ordered combine.
// One source for CUDA (sm_80/sm_90) and HIP (gfx90a); runtime names only through vendor.h.
#include "moe.h"

#include <algorithm>
#include <climits>

#include "moe_tile.h"
#include "tile.h"

namespace gptoss::gpu {
namespace {

constexpr int kThreads = 256;                    // every kernel but build
constexpr int kWaves = kThreads / kWaveSize;     // 8 (CUDA) or 4 (HIP)
constexpr int kMaxTopK = 32;
constexpr int kMaxExperts = 1024;
constexpr float kSwigluAlpha = 1.702f;

// Tensor-core tile: kTileRows grouped rows x kTileCols outputs, k step 32 (one MXFP4 block).
constexpr int kTileRows = 64, kTileCols = 128, kTileK = 32, kLds = kTileK + 8;
constexpr int kWarpRows = kTileRows / 2;                    // waves as 2 (rows) x kWaves/2 (cols)
constexpr int kWarpCols = kTileCols / (kWaves / 2);         // 32 (CUDA) or 64 (HIP)
constexpr int kWaveTilesN = kWarpCols / tile32::kWaveTileN; // 32x32 wave tiles per wave: 1 or 2
static_assert(kWarpRows == tile32::kWaveTileM, "one 32-row wave tile per wave");
constexpr int kAbBytes = 2 * (kTileRows + kTileCols) * kLds * 2;  // two stages of A and B, bf16
constexpr int kCBytes = kTileRows * (kTileCols + 4) * 4;          // fp32 epilogue staging
constexpr int kMmaSmem = kAbBytes > kCBytes ? kAbBytes : kCBytes;
static_assert(kWaves % 2 == 0 && kWarpCols % 32 == 0, "tile split");
static_assert(kThreads == kTileRows * 4 && kThreads == kTileCols * 2, "loader mapping");

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
// GEMV decode: an E2M1 code placed as an fp16 (sign -> bit 15, exponent/mantissa bits -> 9..11)
// is exactly LUT[code] * 2^-14 (code 1 lands on the fp16 subnormal 2^-15). Two codes per 32-bit
// word per step: half2 (element q, element q + 4) of each 8-element word. raw[i] = LUT * 2^-14.
__device__ __forceinline__ void mxfp4_decode_raw(const uint4 v, float (&raw)[32]) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const uint32_t sh = words[j] << (12 - 4 * q);
      const uint32_t h2 = (sh & 0x80008000u) | ((sh >> 3) & 0x0E000E00u);
      raw[8 * j + q] = tile::half_bits_to_f32(static_cast<uint16_t>(h2 & 0xffffu));
      raw[8 * j + q + 4] = tile::half_bits_to_f32(static_cast<uint16_t>(h2 >> 16));
    }
  }
}
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
__device__ void topk_softmax(const float* logits, int E, int k, int32_t* experts, float* weights) {
  int chosen[kMaxTopK];
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
  float ew[kMaxTopK];
  for (int r = 0; r < k; ++r) {
    ew[r] = expf(logits[chosen[r]] - mx);
    sum = sum + ew[r];
  }
  for (int r = 0; r < k; ++r) weights[r] = ew[r] / sum;
}

// One block per row: logits in shared memory, then top-k + softmax.
__global__ __launch_bounds__(kThreads) void moe_router_kernel(
    const float* __restrict__ x, const uint16_t* __restrict__ rw, const uint16_t* __restrict__ rb,
    int H, int E, int k, int32_t* __restrict__ experts, float* __restrict__ weights) {
  extern __shared__ float router_smem[];
  float* xs = router_smem;      // [H]
  float* logits = xs + H;       // [E]
  const int row = blockIdx.x, tid = threadIdx.x;
  const float4* xr = reinterpret_cast<const float4*>(x + static_cast<size_t>(row) * H);
  for (int i = tid; i < H / 4; i += kThreads) reinterpret_cast<float4*>(xs)[i] = xr[i];
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
// offsets[E+1], active[n_active], slot_pair[pairs], and tiles of kTileRows slots for experts
// with more than gemv_max rows. meta = {n_active, n_tiles}.
constexpr int kBuildThreads = 1024;
__global__ __launch_bounds__(kBuildThreads) void moe_build_kernel(
    const int32_t* __restrict__ experts, int pairs, int E, int gemv_max,
    int32_t* __restrict__ offsets, int32_t* __restrict__ active, int32_t* __restrict__ meta,
    int32_t* __restrict__ slot_pair, int32_t* __restrict__ tile_expert,
    int32_t* __restrict__ tile_slot0) {
  __shared__ int cnt_s[kMaxExperts];
  __shared__ int off_s[kMaxExperts];
  constexpr int waves = kBuildThreads / kWaveSize;
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
        for (int r0 = 0; r0 < c; r0 += kTileRows) {
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
};

// grid (min(E, pairs), ceil(M/2 / kWaves)); each wave computes weight rows 2q, 2q+1 (mlp1: the
// gate/up pair of output q) for every row of its expert, RB rows at a time.
template <int RB, bool kMlp1>
__global__ __launch_bounds__(kThreads) void moe_gemv_kernel(ExpertArgs a) {
  constexpr int kUnroll = RB == 1 ? 4 : 2;  // loads in flight per lane vs registers
  const int j = blockIdx.x;
  if (j >= a.meta[0]) return;
  const int e = a.active[j];
  const int g0 = a.offsets[e], cnt = a.offsets[e + 1] - g0;
  if (cnt > a.max_cnt) return;
  const int wave = threadIdx.x / kWaveSize, lane = threadIdx.x % kWaveSize;
  const int q = blockIdx.y * kWaves + wave;
  if (q >= a.M / 2) return;
  const int K = a.K, nb = K / 32, items = 2 * nb;
  const size_t wrow = static_cast<size_t>(e) * a.M + 2 * q;
  const uint4* wb = reinterpret_cast<const uint4*>(a.blocks + wrow * nb * 16);
  const uint8_t* ws = a.scales + wrow * nb;
  const float b0 = bf16_bits_to_f32(a.bias[wrow]), b1 = bf16_bits_to_f32(a.bias[wrow + 1]);

  for (int c0 = 0; c0 < cnt; c0 += RB) {
    const float* xr[RB];
#pragma unroll
    for (int r = 0; r < RB; ++r) {
      const int g = g0 + min(c0 + r, cnt - 1);
      const int row = kMlp1 ? a.slot_pair[g] / a.top_k : g;
      xr[r] = a.x + static_cast<size_t>(row) * K;
    }
    float acc0[RB], acc1[RB];
#pragma unroll
    for (int r = 0; r < RB; ++r) acc0[r] = acc1[r] = 0.0f;
    for (int t0 = lane; t0 < items; t0 += kUnroll * kWaveSize) {
      uint4 wv[kUnroll];
      uint32_t sv[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int t = t0 + u * kWaveSize;
        if (t < items) {
          wv[u] = wb[t];
          sv[u] = ws[t];
        } else {
          wv[u] = make_uint4(0, 0, 0, 0);
          sv[u] = 127;
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int t = t0 + u * kWaveSize;
        if (t >= items) continue;
        const int b = t < nb ? t : t - nb;
        float raw[32];
        mxfp4_decode_raw(wv[u], raw);
        const float sc = e8m0_to_f32(sv[u]);
        const float s0 = t < nb ? sc : 0.0f, s1 = t < nb ? 0.0f : sc;
#pragma unroll
        for (int r = 0; r < RB; ++r) {
          const float4* xp = reinterpret_cast<const float4*>(xr[r] + 32 * b);
          float d = 0.0f;
#pragma unroll
          for (int v4 = 0; v4 < 8; ++v4) {
            const float4 xv = xp[v4];
            d = fmaf(raw[4 * v4 + 0], xv.x, d);
            d = fmaf(raw[4 * v4 + 1], xv.y, d);
            d = fmaf(raw[4 * v4 + 2], xv.z, d);
            d = fmaf(raw[4 * v4 + 3], xv.w, d);
          }
          d *= 16384.0f;  // raw = LUT * 2^-14
          acc0[r] = fmaf(d, s0, acc0[r]);
          acc1[r] = fmaf(d, s1, acc1[r]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < RB; ++r) {
      acc0[r] = wave_sum(acc0[r]);
      acc1[r] = wave_sum(acc1[r]);
    }
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < RB; ++r) {
        if (c0 + r >= cnt) continue;
        const int g = g0 + c0 + r;
        if (kMlp1) {
          a.out[static_cast<size_t>(g) * (a.M / 2) + q] = swiglu(acc0[r] + b0, acc1[r] + b1, a.limit);
        } else {
          float* o = a.out + static_cast<size_t>(a.slot_pair[g]) * a.M + 2 * q;
          o[0] = acc0[r] + b0;
          o[1] = acc1[r] + b1;
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------ tensor-core experts
// grid (ceil(pairs / kTileRows) + E, ceil(M / kTileCols)); block t takes tile t of the tile list
// (exits if t >= n_tiles). A = activations rounded to bf16, B = MXFP4 decoded to bf16, two shared
// stages with register prefetch of the next k step.
template <bool kMlp1>
__global__ __launch_bounds__(kThreads) void moe_mma_kernel(ExpertArgs a) {
  __shared__ uint4 smem_v4[(kMmaSmem + 15) / 16];  // 16-byte aligned
  unsigned char* smem = reinterpret_cast<unsigned char*>(smem_v4);
  __shared__ float lut[16];
  const int t = blockIdx.x;
  if (t >= a.meta[1]) return;
  const int tid = threadIdx.x, wave = tid / kWaveSize;
  if (tid < 16) lut[tid] = kLut[tid];
  const int e = a.tile_expert[t], s0 = a.tile_slot0[t];
  const int nrows = min(kTileRows, a.offsets[e + 1] - s0);
  const int n0 = blockIdx.y * kTileCols;
  const int K = a.K, M = a.M, nb = K / 32;
  uint16_t* As = reinterpret_cast<uint16_t*>(smem);          // [2][kTileRows][kLds]
  uint16_t* Bs = As + 2 * kTileRows * kLds;                   // [2][kTileCols][kLds]

  // Loader roles: A row ar, 8 k values at 8 * aseg; B weight row br, half block bh.
  const int ar = tid / 4, aseg = tid % 4, br = tid / 2, bh = tid % 2;
  const float* arow = nullptr;
  if (ar < nrows) {
    const int g = s0 + ar;
    const int row = kMlp1 ? a.slot_pair[g] / a.top_k : g;
    arow = a.x + static_cast<size_t>(row) * K + 8 * aseg;
  }
  const bool bvalid = n0 + br < M;
  const size_t wrow = static_cast<size_t>(e) * M + n0 + br;
  const uint8_t* bblk = a.blocks + wrow * nb * 16 + 8 * bh;
  const uint8_t* bsc = a.scales + wrow * nb;

  float4 ra0 = make_float4(0, 0, 0, 0), ra1 = ra0;
  uint2 rb = make_uint2(0, 0);
  uint32_t rs = 127;
  auto gload = [&](int kt) {
    if (arow) {
      ra0 = *reinterpret_cast<const float4*>(arow + kt * kTileK);
      ra1 = *reinterpret_cast<const float4*>(arow + kt * kTileK + 4);
    }
    if (bvalid) {
      rb = *reinterpret_cast<const uint2*>(bblk + static_cast<size_t>(kt) * 16);
      rs = bsc[kt];
    }
  };
  auto sstore = [&](int buf) {
    uint4 pa;
    pa.x = f32_to_bf16_bits(ra0.x) | (f32_to_bf16_bits(ra0.y) << 16);
    pa.y = f32_to_bf16_bits(ra0.z) | (f32_to_bf16_bits(ra0.w) << 16);
    pa.z = f32_to_bf16_bits(ra1.x) | (f32_to_bf16_bits(ra1.y) << 16);
    pa.w = f32_to_bf16_bits(ra1.z) | (f32_to_bf16_bits(ra1.w) << 16);
    *reinterpret_cast<uint4*>(As + (buf * kTileRows + ar) * kLds + 8 * aseg) = pa;
    uint32_t d[8];
    mxfp4_decode16_bf16(rb, e8m0_to_f32(rs), lut, d);
    uint4* bp = reinterpret_cast<uint4*>(Bs + (buf * kTileCols + br) * kLds + 16 * bh);
    bp[0] = make_uint4(d[0], d[1], d[2], d[3]);
    bp[1] = make_uint4(d[4], d[5], d[6], d[7]);
  };

  const int wm = wave % 2, wn = wave / 2;
  tile32::Acc acc[kWaveTilesN];
#pragma unroll
  for (int j = 0; j < kWaveTilesN; ++j) tile32::zero(acc[j]);

  __syncthreads();  // lut ready
  gload(0);
  sstore(0);
  __syncthreads();
  for (int kt = 0; kt < nb; ++kt) {
    const int buf = kt & 1;
    if (kt + 1 < nb) gload(kt + 1);
    const uint16_t* Ab = As + (buf * kTileRows + wm * kWarpRows) * kLds;
    const uint16_t* Bb = Bs + (buf * kTileCols + wn * kWarpCols) * kLds;
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += 16)
#pragma unroll
      for (int j = 0; j < kWaveTilesN; ++j)
        tile32::mma_k16(acc[j], Ab, kLds, Bb + j * tile32::kWaveTileN * kLds, kLds, kk);
    if (kt + 1 < nb) sstore(buf ^ 1);
    __syncthreads();
  }

  // Epilogue through shared memory (the stage buffers are free after the last barrier).
  float* Cs = reinterpret_cast<float*>(smem);  // [kTileRows][kTileCols + 4]
  constexpr int ldc = kTileCols + 4;
#pragma unroll
  for (int j = 0; j < kWaveTilesN; ++j) {
    float* cb = Cs + (wm * kWarpRows) * ldc + wn * kWarpCols + j * tile32::kWaveTileN;
    tile32::for_each(acc[j], [&](int i, int c, float v) { cb[i * ldc + c] = v; });
  }
  __syncthreads();
  const uint16_t* bias = a.bias + static_cast<size_t>(e) * M;
  if (kMlp1) {
    const int I = M / 2;
    for (int idx = tid; idx < kTileRows * kTileCols / 2; idx += kThreads) {
      const int r = idx / (kTileCols / 2), qq = idx % (kTileCols / 2), n = n0 + 2 * qq;
      if (r >= nrows || n >= M) continue;
      const float gate = Cs[r * ldc + 2 * qq] + bf16_bits_to_f32(bias[n]);
      const float up = Cs[r * ldc + 2 * qq + 1] + bf16_bits_to_f32(bias[n + 1]);
      a.out[static_cast<size_t>(s0 + r) * I + n / 2] = swiglu(gate, up, a.limit);
    }
  } else {
    for (int idx = tid; idx < kTileRows * kTileCols; idx += kThreads) {
      const int r = idx / kTileCols, c = idx % kTileCols, n = n0 + c;
      if (r >= nrows || n >= M) continue;
      a.out[static_cast<size_t>(a.slot_pair[s0 + r]) * M + n] = Cs[r * ldc + c] + bf16_bits_to_f32(bias[n]);
    }
  }
}

// ------------------------------------------------------------------------------ combine
// residual[n, i] += ((w0 y0 + w1 y1) + w2 y2) + ...   (rank order, as the CPU twin)
__global__ __launch_bounds__(kThreads) void moe_combine_kernel(const float* __restrict__ y,
                                                                const float* __restrict__ weights,
                                                                int rows, int k, int H,
                                                                float* __restrict__ residual) {
  const int h4 = H / 4;
  const size_t idx = static_cast<size_t>(blockIdx.x) * kThreads + threadIdx.x;
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

__global__ void moe_decode_test_kernel(const uint8_t* blocks, const uint8_t* scales, int n,
                                       float* out_f32, uint16_t* out_bf16) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= n) return;
  const uint4 v = reinterpret_cast<const uint4*>(blocks)[b];
  float raw[32];
  mxfp4_decode_raw(v, raw);
  const float sc = e8m0_to_f32(scales[b]);
  for (int i = 0; i < 32; ++i) out_f32[32 * b + i] = (raw[i] * 16384.0f) * sc;
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

void check_shape(const MoeGpuWeights& w) {
  if (w.hidden <= 0 || w.hidden % 32 != 0 || w.intermediate <= 0 || w.intermediate % 32 != 0 ||
      w.top_k < 1 || w.top_k > w.n_experts || w.top_k > kMaxTopK || w.n_experts > kMaxExperts)
    fail("moe: unsupported shape (E %d, k %d, H %d, I %d): need H, I multiples of 32, "
         "1 <= k <= min(E, %d), E <= %d",
         w.n_experts, w.top_k, w.hidden, w.intermediate, kMaxTopK, kMaxExperts);
  if ((static_cast<size_t>(w.hidden) + w.n_experts) * 4 > 48 * 1024)
    fail("moe: hidden %d too large for the router's shared memory", w.hidden);
}

}  // namespace

MoeGpuScratch moe_scratch_create(const MoeGpuWeights& w, int max_rows) {
  check_shape(w);
  if (max_rows < 1) fail("moe: max_rows %d must be >= 1", max_rows);
  MoeGpuScratch s;
  s.max_rows = max_rows;
  s.n_experts = w.n_experts;
  s.top_k = w.top_k;
  s.hidden = w.hidden;
  s.intermediate = w.intermediate;
  const size_t pairs = static_cast<size_t>(max_rows) * w.top_k;
  s.max_tiles = static_cast<int>((pairs + kTileRows - 1) / kTileRows) + w.n_experts;
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
  return s;
}

void moe_scratch_destroy(MoeGpuScratch& s) {
  void* ptrs[] = {s.experts, s.weights, s.offsets, s.active, s.meta,
                  s.slot_pair, s.tile_expert, s.tile_slot0, s.act, s.y};
  for (void* p : ptrs)
    if (p) GPU_CHECK(gpuFree(p));
  s = MoeGpuScratch{};
}

const char* moe_path_name(int rows) { return rows <= kMoeGemvMaxRows ? "gemv" : "gemv+mma"; }

void moe_forward(const MoeGpuWeights& w, const float* x_normed, int rows, float* residual,
                 MoeGpuScratch& s, gpuStream_t stream) {
  check_shape(w);
  if (s.n_experts != w.n_experts || s.top_k != w.top_k || s.hidden != w.hidden ||
      s.intermediate != w.intermediate)
    fail("moe: scratch was created for another shape");
  if (rows > s.max_rows) fail("moe: %d rows exceed the scratch's max_rows %d", rows, s.max_rows);
  if (rows <= 0) return;
  const int E = w.n_experts, k = w.top_k, H = w.hidden, I = w.intermediate;
  const int pairs = rows * k;
  const bool use_mma = rows > kMoeGemvMaxRows;

  moe_router_kernel<<<rows, kThreads, (H + E) * sizeof(float), stream>>>(
      x_normed, w.router_w, w.router_b, H, E, k, s.experts, s.weights);
  GPU_CHECK_LAUNCH();
  moe_build_kernel<<<1, kBuildThreads, 0, stream>>>(s.experts, pairs, E,
                                                    use_mma ? kMoeGemvMaxRows : INT_MAX, s.offsets,
                                                    s.active, s.meta, s.slot_pair, s.tile_expert,
                                                    s.tile_slot0);
  GPU_CHECK_LAUNCH();

  ExpertArgs a1{w.mlp1_blocks, w.mlp1_scales, w.mlp1_bias, x_normed, s.act, s.offsets, s.active,
                s.meta, s.slot_pair, s.tile_expert, s.tile_slot0, H, 2 * I, k,
                use_mma ? kMoeGemvMaxRows : INT_MAX, w.swiglu_limit};
  ExpertArgs a2{w.mlp2_blocks, w.mlp2_scales, w.mlp2_bias, s.act, s.y, s.offsets, s.active,
                s.meta, s.slot_pair, s.tile_expert, s.tile_slot0, I, H, k,
                use_mma ? kMoeGemvMaxRows : INT_MAX, w.swiglu_limit};
  const int gx = std::min(E, pairs);
  const dim3 g1(gx, (I + kWaves - 1) / kWaves), g2(gx, (H / 2 + kWaves - 1) / kWaves);
  const int tiles = (pairs + kTileRows - 1) / kTileRows + E;
  const dim3 m1(tiles, (2 * I + kTileCols - 1) / kTileCols), m2(tiles, (H + kTileCols - 1) / kTileCols);

  if (rows == 1) moe_gemv_kernel<1, true><<<g1, kThreads, 0, stream>>>(a1);
  else moe_gemv_kernel<4, true><<<g1, kThreads, 0, stream>>>(a1);
  GPU_CHECK_LAUNCH();
  if (use_mma) {
    moe_mma_kernel<true><<<m1, kThreads, 0, stream>>>(a1);
    GPU_CHECK_LAUNCH();
  }
  if (rows == 1) moe_gemv_kernel<1, false><<<g2, kThreads, 0, stream>>>(a2);
  else moe_gemv_kernel<4, false><<<g2, kThreads, 0, stream>>>(a2);
  GPU_CHECK_LAUNCH();
  if (use_mma) {
    moe_mma_kernel<false><<<m2, kThreads, 0, stream>>>(a2);
    GPU_CHECK_LAUNCH();
  }
  const size_t n4 = static_cast<size_t>(rows) * (H / 4);
  moe_combine_kernel<<<static_cast<unsigned>((n4 + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      s.y, s.weights, rows, k, H, residual);
  GPU_CHECK_LAUNCH();
}

void moe_router_topk_logits(const float* logits, int rows, int E, int k, int32_t* experts,
                            float* weights, gpuStream_t stream) {
  if (k < 1 || k > E || k > kMaxTopK) fail("moe: top-k %d unsupported for %d experts", k, E);
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
