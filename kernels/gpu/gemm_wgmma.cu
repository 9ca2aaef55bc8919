// kernels/gpu/gemm_wgmma.cu: the fast dense GEMM on Hopper's warpgroup MMA (sm_90a builds on an
// sm_90 device; ops.h GemmKernel): y (=|+=) x W^T + b, x bf16 [rows, K], W bf16 [M, K], bias bf16
// [M] or null, y fp32 [rows, M]: bf16_bf16w_gemm's contract with one K split.
//
// Block: kWg warpgroups, each 64 rows of x, times kBN outputs: per k16 step each warpgroup issues
// one wgmma m64 n(kBN) k16 with both operands read from shared memory (wgmma.h), so the warps only
// copy and wait while the tensor cores multiply. K runs in stages of 64 through a cp.async
// ring of kStages; the slot a stage is copied into was read two iterations back, so one group of
// wgmmas stays in flight across the barrier and the copies of the next iteration.
// Shared memory per stage: the x tile, then the W tile, each in the 128-byte swizzle (wgmma.h
// smem_desc_sw128): row r's 64 k are 128 bytes at 128 r, its 16-byte chunk j at chunk j ^ (r % 8),
// tiles 1024-byte aligned; a k16 step's descriptor starts 32 bytes further along the row. (wgmma's
// no-swizzle core-matrix layout made this kernel ~1.6x slower on an H100: docs/performance.md,
// 2026-12-07.) Copies: the 32 lanes of a warp take 16 rows x 2
// adjacent chunks (whole 32-byte sectors of each row), and each 8-lane store phase writes 8
// consecutive rows of one chunk, i.e. 8 distinct chunk slots (no bank conflict). Rows, outputs
// and k past the ends are zero-filled and never stored.
// Each output is the fp32 sum over K in k16 steps in ascending order: a row's result does not
// depend on the other rows of the call, nor (tested: kernels_test) on the tile's width (it
// differs from the mma.sync kernel's by the order).
#include <algorithm>

#include "gpu/device_utils.h"
#include "gpu/ops.h"
#include "gpu/tile.h"

namespace gptoss::gpu {

#if !defined(GPTOSS_HIP)
namespace {

// Tile constants, shared memory and the launch (tile choice, grid): launch_shapes.h
// (wgmma_gemm_tile, wgmma_gemm_launch), which gpu_launch_limits checks.
constexpr int kWgBK = kWgmmaGemmBK;    // K per stage
constexpr int kWgChunks = kWgBK / 8;  // 16-byte chunks of a row per stage

template <int kWg, int kBN, int kStages>
struct WgTile {
  static constexpr int kBM = 64 * kWg;
  static constexpr int kThreads = 128 * kWg;
  static constexpr int kABytes = kBM * kWgBK * 2;
  static constexpr int kStageBytes = kABytes + kBN * kWgBK * 2;
};
constexpr int kWgStages = kWgmmaGemmStages;  // 8 (at most 192 KB) measured no faster (H100, 2026-12-07)

// Rows [first, first + R) of src ([limit, K] bf16), k [k0, k0 + 64), into a stage tile (layout
// above); lane groups of 32 take (16-row band, chunk pair).
template <int R, int T>
__device__ __forceinline__ void wg_copy_tile(unsigned char* dst, const uint16_t* src, int first,
                                             int limit, int K, int k0, int tid) {
  static_assert(R % 16 == 0 && (R * kWgChunks) % T == 0 && T % 32 == 0, "copy mapping");
#pragma unroll
  for (int u = 0; u < R * kWgChunks / T; ++u) {
    const int i = tid + u * T, grp = i / 32, l = i % 32;
    const int r = 16 * (grp % (R / 16)) + l % 16;
    const int j = 2 * (grp / (R / 16)) + l / 16;
    const int k = k0 + 8 * j;
    const bool ok = first + r < limit && k < K;
    tile::cp_async16_zfill(dst + r * 128 + ((j ^ (r & 7)) << 4),
                           src + (ok ? static_cast<size_t>(first + r) * K + k : 0), ok);
  }
}

template <int kWg, int kBN, int kStages>
__global__ __launch_bounds__(128 * kWg) void bf16_wgmma_gemm_kernel(
    const uint16_t* __restrict__ x, const uint16_t* __restrict__ w, const uint16_t* __restrict__ bias,
    float* y, int rows, int K, int M, int accumulate) {
#if defined(GPTOSS_WGMMA_DEVICE)
  using G = WgTile<kWg, kBN, kStages>;
  constexpr int kBM = G::kBM, kT = G::kThreads, kND = kBN / 2;  // accumulators per thread
  static_assert(kStages >= 3, "a stage in flight beside the one read");
  extern __shared__ uint4 wg_gemm_smem4[];
  // The swizzled tiles need 1024-byte alignment: the allocation has 1 KB to spare for it.
  unsigned char* smem = reinterpret_cast<unsigned char*>(wg_gemm_smem4);
  smem += (1024u - (static_cast<uint32_t>(__cvta_generic_to_shared(smem)) & 1023u)) & 1023u;
  const int tid = threadIdx.x, warp = tid / kWaveSize, lane = tid % kWaveSize;
  const int wg = warp / 4, wi = warp % 4, g = lane / 4, t = lane % 4;
  const int row0 = blockIdx.x * kBM, out0 = blockIdx.y * kBN;  // rows fastest: a W tile's blocks together
  const int nk = (K + kWgBK - 1) / kWgBK;
  auto load = [&](int kt, int st) {
    unsigned char* base = smem + st * G::kStageBytes;
    wg_copy_tile<kBM, kT>(base, x, row0, rows, K, kt * kWgBK, tid);
    wg_copy_tile<kBN, kT>(base + G::kABytes, w, out0, M, K, kt * kWgBK, tid);
  };
  float acc[kND];  // set by the first k16 step (accumulate 0 there: see wgmma_bf16_ss)
#pragma unroll
  for (int st = 0; st < kStages - 2; ++st) {
    if (st < nk) load(st, st);
    tile::cp_async_commit();
  }
  for (int kt = 0; kt < nk; ++kt) {
    tile::cp_async_wait<kStages - 3>();  // this thread's copies of stage kt
    wg::fence_proxy_async();                // ... visible to the async proxy (the wgmmas)
    __syncthreads();  // every thread's copies of kt in; every warpgroup's wgmmas of kt - 2 done
    {
      const int nx = kt + kStages - 2;  // into the slot stage kt - 2 was read from
      if (nx < nk) load(nx, nx % kStages);
      tile::cp_async_commit();
    }
    const unsigned char* As = smem + (kt % kStages) * G::kStageBytes;
    const unsigned char* Bs = As + G::kABytes;
    wg::wgmma_fence();
#pragma unroll
    for (int s = 0; s < kWgBK / 16; ++s) {
      wg::wgmma_bf16_ss<kBN>(acc, wg::smem_desc_sw128(As + wg * 64 * 128 + 32 * s),
                             wg::smem_desc_sw128(Bs + 32 * s), kt > 0 || s > 0);
    }
    wg::wgmma_commit();
    wg::wgmma_wait<1>();  // the group of kt - 1 done: its slot is free after the next barrier
  }
  wg::wgmma_wait<0>();
  wg::wgmma_fence_acc<kND>(acc);
  tile::cp_async_wait<0>();  // only empty groups remain

  // acc[4 i + 2 hh + c]: row 64 wg + 16 wi + g + 8 hh, output 8 i + 2 t + c of the tile.
#pragma unroll
  for (int i = 0; i < kBN / 8; ++i)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int r = row0 + 64 * wg + 16 * wi + g + 8 * hh;
      const int m = out0 + 8 * i + 2 * t;
      if (r >= rows) continue;
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        if (m + c >= M) continue;
        float* dst = y + static_cast<size_t>(r) * M + m + c;
        const float v = acc[4 * i + 2 * hh + c] + (bias ? bf16_bits_to_f32(bias[m + c]) : 0.0f);
        *dst = accumulate ? *dst + v : v;
      }
    }
#else
  (void)x, (void)w, (void)bias, (void)y, (void)rows, (void)K, (void)M, (void)accumulate;
  __trap();  // never launched: gemm_wgmma_available() is false without the sm_90a device code
#endif
}

// One launch of the record l (wgmma_gemm_launch for the tile 64 kWg x kBN).
template <int kWg, int kBN>
void launch_wgmma_gemm(const KernelLaunch& l, const bf16_t* x, const bf16_t* w, const bf16_t* bias,
                       float* y, int rows, int K, int M, bool accumulate, gpuStream_t stream) {
  using G = WgTile<kWg, kBN, kWgStages>;
  constexpr auto* kernel = bf16_wgmma_gemm_kernel<kWg, kBN, kWgStages>;
  // The stages, + 1 KiB to align them to 1024 bytes.
  static_assert(wgmma_gemm_smem_bytes(G::kBM, kBN) == size_t(kWgStages) * G::kStageBytes + 1024,
                "launch_shapes.h's size is this kernel's");
  GPTOSS_ASSERT(l.threads == G::kThreads && l.dyn_smem_bytes == wgmma_gemm_smem_bytes(G::kBM, kBN) &&
                l.grid_z == 1);
  opt_in_dynamic_smem(reinterpret_cast<const void*>(kernel), l.dyn_smem_bytes);
  kernel<<<dim3(l.grid_x, l.grid_y), l.threads, l.dyn_smem_bytes, stream>>>(
      reinterpret_cast<const uint16_t*>(x), reinterpret_cast<const uint16_t*>(w),
      reinterpret_cast<const uint16_t*>(bias), y, rows, K, M, accumulate ? 1 : 0);
  GPU_CHECK_LAUNCH();
}

}  // namespace

bool gemm_wgmma_available() {
#if defined(GPTOSS_WGMMA)
  static const bool ok = [] {
    int dev = 0;
    GPU_CHECK(gpuGetDevice(&dev));
    gpuDeviceProp p;
    GPU_CHECK(gpuGetDeviceProperties(&p, dev));
    return p.major == 9;
  }();
  return ok;
#else
  return false;
#endif
}

void bf16_wgmma_gemm(const bf16_t* x, const bf16_t* w, const bf16_t* bias, float* y, int rows,
                     int K, int M, bool accumulate, gpuStream_t stream) {
  if (rows <= 0 || M <= 0) return;
  if (K % 8 != 0) fail("bf16_wgmma_gemm: K %d is not a multiple of 8", K);
  if (!gemm_wgmma_available())
    fail("bf16_wgmma_gemm: needs a build for sm_90a (CMAKE_CUDA_ARCHITECTURES=90a) and an sm_90 GPU");
  // 64-row blocks for steps of at most 64 rows, else 128; outputs per block: the widest of 256
  // (LM-head widths), 128, 64 whose grid still covers every SM (256: four times over).
  // (launch_shapes.h wgmma_gemm_tile.)
  const GemmTile tile = wgmma_gemm_tile(rows, M, device_sm_count());
  const KernelLaunch l = wgmma_gemm_launch(kTarget, tile, rows, M);
  if (tile.bm == 64) {
    if (tile.bn == 128)
      launch_wgmma_gemm<1, 128>(l, x, w, bias, y, rows, K, M, accumulate, stream);
    else
      launch_wgmma_gemm<1, 64>(l, x, w, bias, y, rows, K, M, accumulate, stream);
  } else if (tile.bn == 256) {
    launch_wgmma_gemm<2, 256>(l, x, w, bias, y, rows, K, M, accumulate, stream);
  } else if (tile.bn == 128) {
    launch_wgmma_gemm<2, 128>(l, x, w, bias, y, rows, K, M, accumulate, stream);
  } else {
    launch_wgmma_gemm<2, 64>(l, x, w, bias, y, rows, K, M, accumulate, stream);
  }
}

#else  // HIP: no wgmma

bool gemm_wgmma_available() { return false; }
void bf16_wgmma_gemm(const bf16_t*, const bf16_t*, const bf16_t*, float*, int, int, int, bool,
                     gpuStream_t) {
  fail("bf16_wgmma_gemm: NVIDIA Hopper only");
}

#endif

}  // namespace gptoss::gpu
