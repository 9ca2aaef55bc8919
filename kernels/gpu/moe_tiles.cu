// kernels/gpu/moe_tiles.cu: the MoE bf16 tile kernel (both targets; HIP's path for experts with
// > kMoeGemvMaxRows rows of a step, NVIDIA's with MoeOptions::bf16_tiles): a block computes 64
// grouped rows x 128 outputs through tile.h's wave tile (mma.sync bf16 / MFMA 32x32x8 bf16),
// MXFP4 decoded to bf16 in shared memory, activations as bf16 hi + lo, fp32 accumulation.
#include "gpu/moe_kernels.h"

namespace gptoss::gpu {
namespace {

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

// ------------------------------------------------------------------------------ bf16 tile kernel
// grid (ceil(pairs / kMoeTileRows) + E, ceil(M / kMoeTileCols)); block t takes tile t of the tile list
// (exits if t >= n_tiles). A = activations rounded to bf16, B = MXFP4 decoded to bf16, two shared
// stages with register prefetch of the next k step. Dynamic shared memory: moe_tiles_smem_bytes().
template <bool kMlp1>
__global__ __launch_bounds__(kMoeThreads, 2) void moe_mma_kernel(MoeExpertArgs a) {
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

}  // namespace

void moe_tiles_kernel_fns(std::vector<MoeKernelFn>& out) {
  out.push_back(moe_kernel_fn("moe_mma_kernel<true>", moe_mma_kernel<true>));
  out.push_back(moe_kernel_fn("moe_mma_kernel<false>", moe_mma_kernel<false>));
}

void moe_launch_tiles(const MoePlan& p, int m, const MoeExpertArgs& a, gpuStream_t stream) {
  const KernelLaunch& l = p.tiles_k[m];
  if (m == 0)
    moe_mma_kernel<true><<<moe_grid(l), l.threads, l.dyn_smem_bytes, stream>>>(a);
  else
    moe_mma_kernel<false><<<moe_grid(l), l.threads, l.dyn_smem_bytes, stream>>>(a);
  GPU_CHECK_LAUNCH();
}

}  // namespace gptoss::gpu
