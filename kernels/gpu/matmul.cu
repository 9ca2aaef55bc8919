// kernels/gpu/matmul.cu: y = x W^T + b over bf16 weights, fp32 accumulation.
//   GEMV (rows <= 8): memory-bound; each wave owns 4 output rows, lanes stride
//     over K in 16-byte weight chunks (8 bf16), 2-4 chunks per lane in flight per output row;
//     blocks of 2 waves so the waves spread evenly over the SMs (no tail of whole blocks);
//     fp32 activations; per-lane partial sums in chunk order, then a wave butterfly: the order
//     depends only on K, so a row's result is the same for any `rows`.
//   GEMM (rows > 8): tensor cores through tile.h; block tile 64 rows x 64 outputs x 32 K,
//     4 waves in 2 x 2, the next K tile prefetched into registers while the current one is
//     multiplied; activations staged as two bf16 tiles hi + lo (two MMAs per K step), so the
//     activation operand keeps ~16 significant bits (fp32-quality products; see the kernel).
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
inline constexpr int kTileRows = 64, kTileOut = 64, kTileK = 32;
inline constexpr int kSmemLd = kTileK + 8;  // bf16 elements per staged row (pad: banks)
inline constexpr int kGemmWaves = 4;
inline constexpr int kGemmThreads = kGemmWaves * kWaveSize;
// Per thread per K tile: activations 64 x 32 fp32 = 512 float4, weights 64 x 32 bf16 = 256 uint4.
inline constexpr int kXLoads = (kTileRows * kTileK / 4) / kGemmThreads;
inline constexpr int kWLoads = (kTileOut * kTileK / 8 + kGemmThreads - 1) / kGemmThreads;
static_assert(kXLoads * kGemmThreads * 4 == kTileRows * kTileK, "even activation staging");

__global__ void __launch_bounds__(kGemmThreads)
    f32_bf16w_gemm_kernel(const float* __restrict__ x, const uint16_t* __restrict__ w,
                          const uint16_t* __restrict__ bias, float* __restrict__ y, int rows,
                          int K, int M, int accumulate) {
  // Activations as two bf16 tiles, hi = bf16(x) and lo = bf16(x - hi): x = hi + lo to ~2^-17
  // relative (16 significant bits), so the tensor-core products (hi + lo) * w are fp32-quality
  // rather than bf16-rounded (2^-9): the GEMM path stays within ~1e-5 of the GEMV path.
  __shared__ __align__(16) uint16_t xs[kTileRows * kSmemLd];  // [64 rows][32 K + pad] bf16 hi
  __shared__ __align__(16) uint16_t xs_lo[kTileRows * kSmemLd];  // [64 rows][32 K + pad] bf16 lo
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
      const uint2 lo = make_uint2(pack_bf16x2(xr[i].x - bf16_lo(v.x), xr[i].y - bf16_hi(v.x)),
                                  pack_bf16x2(xr[i].z - bf16_lo(v.y), xr[i].w - bf16_hi(v.y)));
      *reinterpret_cast<uint2*>(xs_lo + r * kSmemLd + 4 * c4) = lo;
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
    const uint16_t* a_lo = xs_lo + (wm * tile::kWaveTileM) * kSmemLd;
    const uint16_t* b = ws + (wn * tile::kWaveTileN) * kSmemLd;
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += 16) {
      tile::mma_k16(acc, a_lo, kSmemLd, b, kSmemLd, kk);
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

void f32_bf16w_gemm(const float* x, const bf16_t* w, const bf16_t* bias, float* y, int rows,
                    int K, int M, bool accumulate, gpuStream_t stream) {
  if (rows <= 0 || M <= 0) return;
  GPTOSS_ASSERT(K % kTileK == 0);
  dim3 grid(ceil_div(M, kTileOut), ceil_div(rows, kTileRows));
  f32_bf16w_gemm_kernel<<<grid, kGemmThreads, 0, stream>>>(x, w, bias, y, rows, K, M,
                                                           accumulate ? 1 : 0);
  GPU_CHECK_LAUNCH();
}

void f32_bf16w_matmul(const float* x, const bf16_t* w, const bf16_t* bias, float* y, int rows,
                      int K, int M, bool accumulate, gpuStream_t stream) {
  if (rows <= kGemvMaxRows)
    f32_bf16w_gemv(x, w, bias, y, rows, K, M, accumulate, stream);
  else
    f32_bf16w_gemm(x, w, bias, y, rows, K, M, accumulate, stream);
}

}  // namespace gptoss::gpu
