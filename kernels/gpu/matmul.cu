// kernels/gpu/matmul.cu: y = x W^T + b over bf16 weights, fp32 accumulation.
//   GEMV (rows <= 8): memory-bound; each wave owns 4 output rows, lanes stride
//     over K in 16-byte weight chunks (8 bf16), 2-4 chunks per lane in flight per output row;
//     blocks of 2 waves so the waves spread evenly over the SMs (no tail of whole blocks);
//     fp32 activations; per-lane partial sums in chunk order, then a wave butterfly: the order
//     depends only on K, so a row's result is the same for any `rows`.
//   GEMM (rows > 8), precision exact: tensor cores through tile.h; block tile 64 rows x 64
//     outputs x 32 K, 4 waves in 2 x 2, the next K tile prefetched into registers while the
//     current one is multiplied; activations staged as two bf16 tiles hi + lo (two MMAs per K
//     step), so the activation operand keeps ~16 significant bits (fp32-quality products).
//   GEMM, precision fast: x rounded to bf16 once (f32_to_bf16), then on NVIDIA the bf16 GEMM
//     (64 | 128 outputs x 64 | 128 rows per block, K split over up to 4 blocks per output tile,
//     4-stage cp.async pipeline, ldmatrix, one MMA per product), or on Hopper its wgmma twin
//     (gemm_wgmma.cu; ops.h GemmKernel); on HIP the wave-tile GEMM with the hi tile only.
#include <algorithm>
#include <mutex>
#include <set>
#include <utility>
#include <type_traits>

#include "gpu/device_utils.h"
#include "gpu/ops.h"
#include "gpu/tile.h"

namespace gptoss::gpu {

// ============================================================================ GEMV
inline constexpr int kGemvBlock = 2 * kWaveSize;  // small blocks: even spread of waves over SMs

template <int ROWS, int NM>
__global__ void __launch_bounds__(kGemvBlock)
    f32_bf16w_gemv_kernel(const float* __restrict__ x, const uint16_t* __restrict__ w,
                          const uint16_t* __restrict__ bias, float* __restrict__ y, int rows,
                          int K, int M, int accumulate) {
  const int wave = threadIdx.x / kWaveSize, lane = threadIdx.x % kWaveSize;
  const int m0 = (blockIdx.x * (kGemvBlock / kWaveSize) + wave) * NM;
  if (m0 >= M) return;
  const int n_chunks = K / 8;
  const uint4* wp[NM];
#pragma unroll
  for (int j = 0; j < NM; ++j)
    wp[j] = reinterpret_cast<const uint4*>(w + static_cast<size_t>(min(m0 + j, M - 1)) * K);
  const float4* xp = reinterpret_cast<const float4*>(x);
  float acc[NM][ROWS];
#pragma unroll
  for (int j = 0; j < NM; ++j)
#pragma unroll
    for (int r = 0; r < ROWS; ++r) acc[j][r] = 0.0f;

  // UNROLL chunks per output row in flight per lane (fewer for many rows: registers).
  constexpr int UNROLL = ROWS <= 2 ? 4 : 2;
  int c = lane;
  for (; c + (UNROLL - 1) * kWaveSize < n_chunks; c += UNROLL * kWaveSize) {
    uint4 wv[UNROLL][NM];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u)
#pragma unroll
      for (int j = 0; j < NM; ++j) wv[u][j] = wp[j][c + u * kWaveSize];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        if (r < rows) {
          const size_t xi = static_cast<size_t>(r) * (K / 4) + 2 * (c + u * kWaveSize);
          const float4 xa = xp[xi], xb = xp[xi + 1];
#pragma unroll
          for (int j = 0; j < NM; ++j) fma8(acc[j][r], wv[u][j], xa, xb);
        }
      }
    }
  }
  for (; c < n_chunks; c += kWaveSize) {
    uint4 w0[NM];
#pragma unroll
    for (int j = 0; j < NM; ++j) w0[j] = wp[j][c];
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      if (r < rows) {
        const size_t xi = static_cast<size_t>(r) * (K / 4) + 2 * c;
        const float4 xa = xp[xi], xb = xp[xi + 1];
#pragma unroll
        for (int j = 0; j < NM; ++j) fma8(acc[j][r], w0[j], xa, xb);
      }
    }
  }
#pragma unroll
  for (int j = 0; j < NM; ++j) {
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const float s = wave_sum(acc[j][r]);
      if (lane == j * ROWS + r && r < rows && m0 + j < M) {
        float v = s + (bias ? bf16_bits_to_f32(bias[m0 + j]) : 0.0f);
        float* dst = y + static_cast<size_t>(r) * M + m0 + j;
        *dst = accumulate ? *dst + v : v;
      }
    }
  }
}

void f32_bf16w_gemv(const float* x, const bf16_t* w, const bf16_t* bias, float* y, int rows,
                    int K, int M, bool accumulate, gpuStream_t stream) {
  if (rows <= 0 || M <= 0) return;
  GPTOSS_ASSERT(rows <= kGemvMaxRows && K % 8 == 0);
  static_assert(4 * kGemvMaxRows <= kWaveSize, "one writer lane per output");
  const int acc = accumulate ? 1 : 0;
  const int bucket = rows == 1 ? 1 : rows == 2 ? 2 : rows <= 4 ? 4 : 8;
  auto launch = [&](auto rows_c, auto nm_c) {
    constexpr int R = decltype(rows_c)::value, NM = decltype(nm_c)::value;
    const int blocks = ceil_div(M, (kGemvBlock / kWaveSize) * NM);
    f32_bf16w_gemv_kernel<R, NM><<<blocks, kGemvBlock, 0, stream>>>(x, w, bias, y, rows, K, M, acc);
  };
  using I1 = std::integral_constant<int, 1>;
  using I2 = std::integral_constant<int, 2>;
  using I4 = std::integral_constant<int, 4>;
  using I8 = std::integral_constant<int, 8>;
  // 4 output rows per wave. (2 per wave for the small qkv / o matrices measured no faster on an
  // H200: 18.4 vs 16.9 us for qkv at 1 row.)
  switch (bucket) {
    case 1: launch(I1{}, I4{}); break;
    case 2: launch(I2{}, I4{}); break;
    case 4: launch(I4{}, I4{}); break;
    default: launch(I8{}, I4{}); break;
  }
  GPU_CHECK_LAUNCH();
}

// ============================================================================ GEMM
// The wave-tile GEMM (both targets): exact precision (kLo: activations as bf16 hi + lo) and, on
// HIP, fast precision (hi only).
inline constexpr int kTileRows = 64, kTileOut = 64, kTileK = 32;
inline constexpr int kSmemLd = kTileK + 8;  // bf16 elements per staged row (pad: banks)
inline constexpr int kGemmWaves = 4;
inline constexpr int kGemmThreads = kGemmWaves * kWaveSize;
// Per thread per K tile: activations 64 x 32 fp32 = 512 float4, weights 64 x 32 bf16 = 256 uint4.
inline constexpr int kXLoads = (kTileRows * kTileK / 4) / kGemmThreads;
inline constexpr int kWLoads = (kTileOut * kTileK / 8 + kGemmThreads - 1) / kGemmThreads;
static_assert(kXLoads * kGemmThreads * 4 == kTileRows * kTileK, "even activation staging");

template <bool kLo>
__global__ void __launch_bounds__(kGemmThreads)
    f32_bf16w_gemm_kernel(const float* __restrict__ x, const uint16_t* __restrict__ w,
                          const uint16_t* __restrict__ bias, float* __restrict__ y, int rows,
                          int K, int M, int accumulate) {
  // Activations as two bf16 tiles, hi = bf16(x) and lo = bf16(x - hi): x = hi + lo to ~2^-17
  // relative (16 significant bits), so the tensor-core products (hi + lo) * w are fp32-quality
  // rather than bf16-rounded (2^-9): the GEMM path stays within ~1e-5 of the GEMV path.
  // !kLo (fast precision): hi only, one MMA per product.
  __shared__ __align__(16) uint16_t xs[kTileRows * kSmemLd];  // [64 rows][32 K + pad] bf16 hi
  __shared__ __align__(16) uint16_t xs_lo[kLo ? kTileRows * kSmemLd : 8];  // bf16 lo
  __shared__ __align__(16) uint16_t ws[kTileOut * kSmemLd];   // [64 outputs][32 K + pad] bf16
  const int row0 = blockIdx.y * kTileRows, out0 = blockIdx.x * kTileOut;
  const int wave = threadIdx.x / kWaveSize;
  const int wm = wave / 2, wn = wave % 2;

  float4 xr[kXLoads];
  uint4 wr[kWLoads];
  auto load = [&](int k0) {
#pragma unroll
    for (int i = 0; i < kXLoads; ++i) {
      const int idx = threadIdx.x + i * kGemmThreads;  // float4 index in the 64 x 32 tile
      const int r = idx / (kTileK / 4), c4 = idx % (kTileK / 4);
      const int gr = row0 + r;
      xr[i] = gr < rows ? *reinterpret_cast<const float4*>(x + static_cast<size_t>(gr) * K + k0 +
                                                           4 * c4)
                        : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int i = 0; i < kWLoads; ++i) {
      const int idx = threadIdx.x + i * kGemmThreads;  // uint4 index in the 64 x 32 tile
      const int r = idx / (kTileK / 8), c8 = idx % (kTileK / 8);
      const int gm = out0 + r;
      wr[i] = (idx < kTileOut * kTileK / 8 && gm < M)
                  ? *reinterpret_cast<const uint4*>(w + static_cast<size_t>(gm) * K + k0 + 8 * c8)
                  : make_uint4(0u, 0u, 0u, 0u);
    }
  };
  auto store = [&]() {
#pragma unroll
    for (int i = 0; i < kXLoads; ++i) {
      const int idx = threadIdx.x + i * kGemmThreads;
      const int r = idx / (kTileK / 4), c4 = idx % (kTileK / 4);
      const uint2 v = make_uint2(pack_bf16x2(xr[i].x, xr[i].y), pack_bf16x2(xr[i].z, xr[i].w));
      *reinterpret_cast<uint2*>(xs + r * kSmemLd + 4 * c4) = v;
      if constexpr (kLo) {
        const uint2 lo = make_uint2(pack_bf16x2(xr[i].x - bf16_lo(v.x), xr[i].y - bf16_hi(v.x)),
                                    pack_bf16x2(xr[i].z - bf16_lo(v.y), xr[i].w - bf16_hi(v.y)));
        *reinterpret_cast<uint2*>(xs_lo + r * kSmemLd + 4 * c4) = lo;
      }
    }
#pragma unroll
    for (int i = 0; i < kWLoads; ++i) {
      const int idx = threadIdx.x + i * kGemmThreads;
      if (idx < kTileOut * kTileK / 8) {
        const int r = idx / (kTileK / 8), c8 = idx % (kTileK / 8);
        *reinterpret_cast<uint4*>(ws + r * kSmemLd + 8 * c8) = wr[i];
      }
    }
  };

  tile::Acc acc;
  tile::zero(acc);
  load(0);
  for (int k0 = 0; k0 < K; k0 += kTileK) {
    __syncthreads();
    store();
    __syncthreads();
    if (k0 + kTileK < K) load(k0 + kTileK);
    const uint16_t* a = xs + (wm * tile::kWaveTileM) * kSmemLd;
    const uint16_t* b = ws + (wn * tile::kWaveTileN) * kSmemLd;
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += 16) {
      if constexpr (kLo)
        tile::mma_k16(acc, xs_lo + (wm * tile::kWaveTileM) * kSmemLd, kSmemLd, b, kSmemLd, kk);
      tile::mma_k16(acc, a, kSmemLd, b, kSmemLd, kk);
    }
  }
  tile::for_each(acc, [&](int i, int j, float v) {
    const int r = row0 + wm * tile::kWaveTileM + i, m = out0 + wn * tile::kWaveTileN + j;
    if (r < rows && m < M) {
      v += bias ? bf16_bits_to_f32(bias[m]) : 0.0f;
      float* dst = y + static_cast<size_t>(r) * M + m;
      *dst = accumulate ? *dst + v : v;
    }
  });
}

template <bool kLo>
void launch_wave_tile_gemm(const float* x, const bf16_t* w, const bf16_t* bias, float* y,
                           int rows, int K, int M, bool accumulate, gpuStream_t stream) {
  dim3 grid(ceil_div(M, kTileOut), ceil_div(rows, kTileRows));
  f32_bf16w_gemm_kernel<kLo><<<grid, kGemmThreads, 0, stream>>>(x, w, bias, y, rows, K, M,
                                                                accumulate ? 1 : 0);
  GPU_CHECK_LAUNCH();
}

int device_sm_count() {
  static const int n = [] {
    int dev = 0;
    GPU_CHECK(gpuGetDevice(&dev));
    gpuDeviceProp p;
    GPU_CHECK(gpuGetDeviceProperties(&p, dev));
    return p.multiProcessorCount;
  }();
  return n;
}

void opt_in_dynamic_smem(const void* kernel, size_t bytes) {
  static std::mutex mu;
  static std::set<std::pair<const void*, int>> done;
  int dev = 0;
  GPU_CHECK(gpuGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mu);
  if (!done.insert({kernel, dev}).second) return;
  GPU_CHECK(gpuFuncSetAttribute(kernel, gpuFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(bytes)));
}

// ---- x -> bf16 (round to nearest even), the fast GEMM's operand ----------------------------
__global__ void f32_to_bf16_kernel(const float4* __restrict__ x, uint2* __restrict__ y, size_t n4) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n4;
       i += size_t(gridDim.x) * blockDim.x) {
    const float4 v = x[i];
    y[i] = make_uint2(pack_bf16x2(v.x, v.y), pack_bf16x2(v.z, v.w));
  }
}

void f32_to_bf16(const float* x, bf16_t* y, size_t n, gpuStream_t stream) {
  if (n == 0) return;
  GPTOSS_ASSERT(n % 4 == 0);
  const size_t n4 = n / 4;
  const int blocks = static_cast<int>(std::min<size_t>(ceil_div(n4, size_t{256}), 4096));
  f32_to_bf16_kernel<<<blocks, 256, 0, stream>>>(reinterpret_cast<const float4*>(x),
                                                 reinterpret_cast<uint2*>(y), n4);
  GPU_CHECK_LAUNCH();
}

#if !defined(GPTOSS_HIP)
// ---- the fast GEMM (NVIDIA sm_80+): bf16 x bf16 -> fp32 -------------------------------------
// Block: BM rows (64 or 128) x BN outputs (64 or 128), K in steps of 32 through a 4-stage
// cp.async pipeline (both operands bf16 in global memory, rows padded to 40 elements in shared
// memory: the 8 row addresses of an ldmatrix land in 8 different 16-byte bank groups). 8 warps as
// 2 (rows) x 4 (outputs); a warp owns BM / 2 rows x BN / 4 outputs: BM / 32 m16 tiles x BN / 32
// n8 tiles of mma.sync m16n8k16 bf16 -> fp32, fragments by ldmatrix.x4. The launcher takes the
// largest tile whose grid still gives every SM two blocks. Blocks are ordered rows-fastest
// (blockIdx.x = row block), so the blocks that share a weight tile run together and the weights
// come from DRAM about once. Each output is the fp32 sum over K in a fixed order (k ascending by
// 16, the MMA's internal order within), independent of the other rows.
// Split K (blockIdx.z = split, `splits` > 1; fast_gemm_splits): split s sums K steps
// [s nk / splits, (s + 1) nk / splits) and the splits of an output tile add into y in split order:
// split 0 writes y = acc (+ bias, + y when accumulating) and bumps the tile's semaphore, split s
// waits for it to read s, adds its sums to y and passes it on; the last resets it to 0. A fixed
// order, so the result is deterministic and, with splits a function of (K, M) only, a row's
// result still does not depend on the other rows. No deadlock: a waiting block's predecessors
// have lower linear block indices (z is the slowest index), and blocks start in index order, so
// they are running or done.
// Tile constants, shared memory and the launch (tile choice, grid): launch_shapes.h
// (fast_gemm_tile, fast_gemm_launch), which gpu_launch_limits checks.
inline constexpr int kFastBK = kFastGemmBK, kFastLd = kFastGemmLd, kFastStages = kFastGemmStages;
inline constexpr int kFastThreads = kFastGemmThreads;

template <int BM, int BN>
__global__ void __launch_bounds__(kFastThreads)
    bf16_bf16w_gemm_kernel(const uint16_t* __restrict__ x, const uint16_t* __restrict__ w,
                           const uint16_t* __restrict__ bias, float* y, int rows,
                           int K, int M, int accumulate, int splits, uint32_t* sem) {
  extern __shared__ uint4 fast_smem4[];
  uint16_t* smem = reinterpret_cast<uint16_t*>(fast_smem4);
  constexpr int MT = BM / 32;                       // m16 tiles per warp
  constexpr int NT = BN / 32;                  // n8 tiles per warp
  constexpr int kStage = (BM + BN) * kFastLd;  // elements per stage
  constexpr int kAChunks = BM * (kFastBK / 8) / kFastThreads;
  constexpr int kBChunks = BN * (kFastBK / 8) / kFastThreads;
  static_assert(kAChunks >= 1 && kBChunks >= 1, "loader mapping");
  const int row0 = blockIdx.x * BM, out0 = blockIdx.y * BN;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm = warp / 4, wn = warp % 4;
  const int split = blockIdx.z;
  const int kb = static_cast<int>(static_cast<long>(split) * (K / kFastBK) / splits);
  const int ke = static_cast<int>(static_cast<long>(split + 1) * (K / kFastBK) / splits);
  const int nk = ke - kb;  // K steps of this split (>= 1: fast_gemm_splits)

  // Chunk c of a tile (16 bytes = 8 bf16): row c / 4, k 8 (c % 4).
  auto load = [&](int kt, int st) {
    uint16_t* sa = smem + st * kStage;
    uint16_t* sb = sa + BM * kFastLd;
    const int k0 = (kb + kt) * kFastBK;
#pragma unroll
    for (int i = 0; i < kAChunks; ++i) {
      const int c = tid + i * kFastThreads, r = c / 4, kc = 8 * (c % 4);
      const bool ok = row0 + r < rows;
      tile::cp_async16_zfill(sa + r * kFastLd + kc,
                             x + static_cast<size_t>(ok ? row0 + r : 0) * K + k0 + kc, ok);
    }
#pragma unroll
    for (int i = 0; i < kBChunks; ++i) {
      const int c = tid + i * kFastThreads, r = c / 4, kc = 8 * (c % 4);
      const bool ok = out0 + r < M;
      tile::cp_async16_zfill(sb + r * kFastLd + kc,
                             w + static_cast<size_t>(ok ? out0 + r : 0) * K + k0 + kc, ok);
    }
  };

  float acc[MT][NT][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.0f;

#pragma unroll
  for (int st = 0; st < kFastStages - 1; ++st) {
    if (st < nk) load(st, st);
    tile::cp_async_commit();
  }
  // ldmatrix addresses: A matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15) in the a0..a3 order;
  // B matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15).
  const int a_row = wm * (BM / 2) + lane % 16, a_k = 8 * (lane / 16);
  const int b_row = wn * (BN / 4) + 8 * (lane / 16) + lane % 8, b_k = 8 * ((lane / 8) % 2);
  for (int kt = 0; kt < nk; ++kt) {
    tile::cp_async_wait<kFastStages - 2>();
    __syncthreads();  // stage kt visible to all; the slot loaded next was read in kt - 1
    {
      const int nx = kt + kFastStages - 1;
      if (nx < nk) load(nx, nx % kFastStages);
      tile::cp_async_commit();
    }
    const uint16_t* sa = smem + (kt % kFastStages) * kStage;
    const uint16_t* sb = sa + BM * kFastLd;
#pragma unroll
    for (int kk = 0; kk < kFastBK; kk += 16) {
      uint32_t af[MT][4], bfr[NT / 2][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        tile::ldmatrix_x4(af[mt], sa + (a_row + 16 * mt) * kFastLd + kk + a_k);
#pragma unroll
      for (int np = 0; np < NT / 2; ++np)
        tile::ldmatrix_x4(bfr[np], sb + (b_row + 16 * np) * kFastLd + kk + b_k);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
          tile::mma_m16n8k16(acc[mt][nt], af[mt], &bfr[nt / 2][2 * (nt % 2)]);
    }
  }
  tile::cp_async_wait<0>();

  // acc[mt][nt][e]: row 16 mt + g + 8 (e / 2), output 8 nt + 2 t + (e % 2) of the warp's tile.
  const int g = lane / 4, t = lane % 4;
  uint32_t* tile_sem = sem + (blockIdx.y * gridDim.x + blockIdx.x);
  if (split > 0) {  // wait for the splits before this one to have added into y
    if (tid == 0) {
      while (*reinterpret_cast<volatile uint32_t*>(tile_sem) != static_cast<uint32_t>(split)) __nanosleep(64);
      __threadfence();
    }
    __syncthreads();
  }
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = row0 + wm * (BM / 2) + 16 * mt + g + 8 * h;
        const int m = out0 + wn * (BN / 4) + 8 * nt + 2 * t;
        if (r >= rows) continue;
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          if (m + c >= M) continue;
          float* dst = y + static_cast<size_t>(r) * M + m + c;
          if (split > 0) {  // y holds the earlier splits' sums (read from L2: another block wrote it)
            *dst = __ldcg(dst) + acc[mt][nt][2 * h + c];
            continue;
          }
          float v = acc[mt][nt][2 * h + c] + (bias ? bf16_bits_to_f32(bias[m + c]) : 0.0f);
          *dst = accumulate ? *dst + v : v;
        }
      }
  if (splits > 1) {  // hand the tile to the next split (the last one resets the semaphore)
    __threadfence();
    __syncthreads();
    if (tid == 0) atomicExch(tile_sem, split + 1 == splits ? 0u : static_cast<uint32_t>(split + 1));
  }
}

// One launch of the record l (fast_gemm_launch for the tile BM x BN).
template <int BM, int BN>
void launch_fast_gemm(const KernelLaunch& l, const bf16_t* x, const bf16_t* w, const bf16_t* bias,
                      float* y, int rows, int K, int M, bool accumulate, int splits, uint32_t* sem,
                      gpuStream_t stream) {
  GPTOSS_ASSERT(l.threads == kFastThreads && l.dyn_smem_bytes == fast_gemm_smem_bytes(BM, BN) &&
                l.grid_z == splits);
  // > 48 KiB: the opt-in, once per device
  opt_in_dynamic_smem(reinterpret_cast<const void*>(bf16_bf16w_gemm_kernel<BM, BN>), l.dyn_smem_bytes);
  if (splits > 1 && long(l.grid_x) * l.grid_y > kGemmSemSlots)
    fail("bf16_bf16w_gemm: %d x %d output tiles exceed the %d split-K semaphores", l.grid_x,
         l.grid_y, kGemmSemSlots);
  bf16_bf16w_gemm_kernel<BM, BN><<<dim3(l.grid_x, l.grid_y, l.grid_z), l.threads, l.dyn_smem_bytes, stream>>>(
      reinterpret_cast<const uint16_t*>(x), reinterpret_cast<const uint16_t*>(w),
      reinterpret_cast<const uint16_t*>(bias), y, rows, K, M, accumulate ? 1 : 0, splits, sem);
  GPU_CHECK_LAUNCH();
}
#endif

int fast_gemm_splits(int K, int M) {
  // Enough blocks at 256 rows (the batched decode step: 2 x ceil(M / 128) tiles of 128 x 128) for
  // two per SM, at most 4, each split >= 16 K steps; 1 where the tiles alone fill the GPU (the LM
  // head). Depends on (K, M) and the device only, never on the rows of a step.
  static_assert(kFastGemmBK == kTileK, "split sizes in K steps of the GEMMs' 32");
  return fast_gemm_auto_splits(K, M, device_sm_count());
}

void bf16_bf16w_gemm(const bf16_t* x, const bf16_t* w, const bf16_t* bias, float* y, int rows,
                     int K, int M, bool accumulate, gpuStream_t stream, uint32_t* sem, int splits,
                     GemmKernel kernel) {
  if (rows <= 0 || M <= 0) return;
  GPTOSS_ASSERT(K % 32 == 0);
#if defined(GPTOSS_HIP)
  (void)x, (void)w, (void)bias, (void)y, (void)accumulate, (void)stream, (void)sem, (void)splits;
  (void)kernel;
  fail("bf16_bf16w_gemm: NVIDIA only (HIP's fast precision stages fp32 activations directly)");
#else
  if (splits <= 0) splits = sem ? fast_gemm_splits(K, M) : 1;
  if (kernel == GemmKernel::wgmma) {
    if (splits > 1) fail("bf16_bf16w_gemm: the wgmma kernel runs one K split (%d asked)", splits);
    bf16_wgmma_gemm(x, w, bias, y, rows, K, M, accumulate, stream);
    return;
  }
  if (splits > K / kTileK) fail("bf16_bf16w_gemm: %d K splits of %d K steps", splits, K / kTileK);
  if (splits > 1 && !sem) fail("bf16_bf16w_gemm: %d K splits need the semaphore scratch", splits);
  // The largest tile (128 x 128, 64 x 128, 64 x 64) whose grid (times the splits) still gives
  // every SM two blocks (launch_shapes.h).
  const GemmTile tile = fast_gemm_tile(rows, M, splits, device_sm_count());
  const KernelLaunch l = fast_gemm_launch(kTarget, tile, rows, M, splits);
  if (tile.bm == 128)
    launch_fast_gemm<128, 128>(l, x, w, bias, y, rows, K, M, accumulate, splits, sem, stream);
  else if (tile.bn == 128)
    launch_fast_gemm<64, 128>(l, x, w, bias, y, rows, K, M, accumulate, splits, sem, stream);
  else
    launch_fast_gemm<64, 64>(l, x, w, bias, y, rows, K, M, accumulate, splits, sem, stream);
#endif
}

void f32_bf16w_gemm(const float* x, const bf16_t* w, const bf16_t* bias, float* y, int rows,
                    int K, int M, bool accumulate, gpuStream_t stream, Precision precision,
                    bf16_t* x16, uint32_t* gemm_sem, GemmKernel kernel) {
  if (rows <= 0 || M <= 0) return;
  GPTOSS_ASSERT(K % kTileK == 0);
  if (precision == Precision::exact) {
    launch_wave_tile_gemm<true>(x, w, bias, y, rows, K, M, accumulate, stream);
    return;
  }
#if defined(GPTOSS_HIP)
  (void)x16, (void)gemm_sem, (void)kernel;
  launch_wave_tile_gemm<false>(x, w, bias, y, rows, K, M, accumulate, stream);
#else
  GPTOSS_ASSERT(x16 != nullptr);
  f32_to_bf16(x, x16, static_cast<size_t>(rows) * K, stream);
  bf16_bf16w_gemm(x16, w, bias, y, rows, K, M, accumulate, stream, gemm_sem, 0, kernel);
#endif
}

void f32_bf16w_matmul(const float* x, const bf16_t* w, const bf16_t* bias, float* y, int rows,
                      int K, int M, bool accumulate, gpuStream_t stream, Precision precision,
                      bf16_t* x16, uint32_t* gemm_sem, GemmKernel kernel) {
  if (rows <= kGemvMaxRows)
    f32_bf16w_gemv(x, w, bias, y, rows, K, M, accumulate, stream);
  else
    f32_bf16w_gemm(x, w, bias, y, rows, K, M, accumulate, stream, precision, x16, gemm_sem, kernel);
}

}  // namespace gptoss::gpu
