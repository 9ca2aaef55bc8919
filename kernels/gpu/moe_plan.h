// kernels/gpu/moe_plan.h: which kernels moe_forward (moe.h) launches for a step of `rows` rows,
// with which grid, block and shared memory, on a given target. Host-only plain C++ (no GPU
// runtime): the launches in moe.cu take their shapes from moe_plan(), and the CPU build's
// gpu_launch_limits test enumerates the same plans for both targets (target.h). Each kernel's
// dynamic shared memory is computed by exactly one function below.
//
// The kernels (files in kernels/gpu):
//   routing (moe_route.cu):  moe_route_small_kernel (router + top-k + grouping in one block, small
//                            steps), moe_router_rows_kernel (kMoeRouterRows rows per block) or
//                            moe_router_kernel (a block per row, large H), then moe_build_kernel
//   GEMV (moe_gemv.cu):      moe_gemv_kernel<RB, mlp1> (scalar), moe_gemv_mma_kernel<NR, mlp1>
//                            (tensor cores, NVIDIA)
//   grouped GEMM (moe_grouped_gemm.cu, NVIDIA): moe_stage_x_kernel, moe_tc_kernel<mlp1, stages,
//                            min blocks per SM, MoeTcMode>
//   bf16 tiles (moe_tiles.cu): moe_mma_kernel<mlp1>
//   combine (moe.cu):        moe_combine_kernel, or moe_combine_norm_kernel (MoeNextNorm)
#pragma once
#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>

#include "gpu/target.h"

namespace gptoss::gpu {

// ---- shapes and options -------------------------------------------------------------------------
struct MoeShape {
  int n_experts = 0, top_k = 0, hidden = 0, intermediate = 0;  // E, k, H, I
};

// Steps of at most kMoeStepGemvMaxRows rows take the GEMV for every expert. Larger steps:
//   NVIDIA (sm_80+): every expert on the grouped tensor-core GEMM (moe_tc_kernel);
//   HIP (and MoeOptions::bf16_tiles): steps of > kMoeGemvMaxRows rows send experts with at most
//     kMoeGemvMaxRows rows to the GEMV and the others to the bf16 tile kernel.
// Why 3: the grouped GEMM measured faster from 4 rows on (H100, bench-moe: 4 / 8 / 16 rows
// 175 / 220 / 273 vs scalar GEMV 247 / 369 / 533 us; 2 rows 139 vs 137).
inline constexpr int kMoeStepGemvMaxRows = 3;
inline constexpr int kMoeGemvMaxRows = 16;

// Kernel choices, fixed for a scratch's lifetime (moe_scratch_create). The defaults are the
// measured best; the others exist for measurements (bench-moe's flags) and comparisons.
struct MoeOptions {
  // GEMV kernel for every row count: false = scalar fp32 FMAs (default; measured faster at 1 row),
  // true = tensor cores (NVIDIA only: mma.sync f16 with x as fp16 hi + lo; faster from 2 rows).
  // One kernel for all row counts keeps a row's result independent of the other rows of its step.
  bool gemv_tensor_cores = false;
  // NVIDIA, steps above the GEMV: false = the grouped fp16 GEMM for every expert (default),
  // true = the bf16 tile kernel for experts with > kMoeGemvMaxRows rows and the GEMV for the
  // others (what HIP always does).
  bool bf16_tiles = false;
  // NVIDIA: steps of >= this many rows take the grouped GEMM (>= 2).
  int grouped_from_rows = kMoeStepGemvMaxRows + 1;
  // NVIDIA grouped GEMM configuration: 0 = 3 stages, two blocks per SM (default); 1 = 4 stages,
  // one block per SM; 2 = 6 stages, one block per SM (167 KB of shared memory: sm_90 only);
  // 3 / 4 = 4 / 5 stages, two blocks per SM, x staged without its (unread) lo halves (87 / 103 KB;
  // precision fast only: with exact they are refused).
  int grouped_config = 0;
  // Precision fast (ops.h Precision): the grouped GEMM takes x as one operand (one MMA per
  // product) instead of fp16 hi + lo. The GEMV kernels (small steps) and HIP's bf16 tiles compute
  // as in exact.
  bool fast = false;
  // With fast: true = the weights enter the MMAs as bf16 with each block's E8M0 scale folded in
  // (exact, see kMoeFoldMaxScale) and x as bf16 (rounded, 2^-8 relative), so the MMAs accumulate
  // straight into the fp32 sums (the default: verified and measured on an H100 on 2026-12-05,
  // docs/performance.md); false = weights as fp16 placements, x as fp16 (2^-11), each block's
  // partial sums scaled into fp32 sums (four FMAs per two MMAs). Folding needs every E8M0 scale of
  // the weights <= kMoeFoldMaxScale: the caller checks (moe.h moe_max_scale) and turns it off
  // otherwise.
  bool fold_scales = true;
  // With fast and folded scales (else ignored): the grouped GEMM on Hopper's warpgroup MMA
  // (moe_ws_kernel: a producer warpgroup, an mbarrier ring, two consumer warpgroups with the
  // weights decoded per lane into wgmma's A registers, x in shared memory as B; 128-row tiles).
  // Needs a build for sm_90a (CMAKE_CUDA_ARCHITECTURES 90a defines GPTOSS_WGMMA) and
  // grouped_config 0. Off by default: bit-identical to mma.sync but within 3% of its speed on an
  // H100 (docs/performance.md, 2026-12-08; its predecessor moe_wgmma_kernel, mma.sync's structure
  // on wgmma, was no faster either, 2026-12-06/07, and was removed).
  bool wgmma = false;
  // With wgmma: 0 in the engine. 1..7 only for timing probes (bench-moe --ws-probe; the results are
  // meaningless): moe_ws_kernel with a part of its work left out (moe_ws_gemm.cu kProbe), to tell
  // where its time goes.
  int ws_probe = 0;
};
// The name moe_plan gives the warp-specialised kernel's launches (and moe_ws_gemm.cu its kernels):
// "moe_ws_kernel<true>" for mlp1, "<false>" for mlp2, probes "moe_ws_kernel<true, P>".
const char* moe_ws_kernel_name(bool mlp1, int probe);
// The largest E8M0 scale the folded-scale grouped GEMM takes: 2^(s - 1) must be a bf16 normal
// (s <= 128, i.e. blocks of |w| below 2^2 * 6 = 24; trained and synthetic checkpoints are far
// below).
inline constexpr int kMoeFoldMaxScale = 128;

// "" when `o` can run on target t, else a one-line reason.
const char* moe_options_error(const MoeOptions& o, const GpuTarget& t);

// ---- kernel constants (shared by the kernels and the plan) ----------------------------------
inline constexpr int kMoeThreads = 256;         // every kernel but the one-block ones
inline constexpr int kMoeBuildThreads = 1024;   // moe_build_kernel, moe_route_small_kernel
inline constexpr int kMoeMaxTopK = 32;
inline constexpr int kMoeMaxExperts = 1024;
// build_groups' __shared__ count and offset arrays (moe_build_kernel, moe_route_small_kernel).
inline constexpr size_t kMoeBuildStaticSmemBytes = 2 * kMoeMaxExperts * sizeof(int);

// Routing.
inline constexpr int kMoeRouteSmallRows = 16;             // moe_route_small_kernel: at most
inline constexpr size_t kMoeRouteSmallSmem = 100 * 1024;  // its dynamic shared memory budget (at
                                                          // most; see moe_route_small_budget)
inline constexpr int kMoeRouterRows = 4;                  // moe_router_rows_kernel: rows per block
inline constexpr int kMoeBuildSmemPairs = 12288;          // moe_build_kernel: pairs staged at most
// bf16 tile kernel (moe_mma_kernel): kMoeTileRows grouped rows x kMoeTileCols outputs, k step
// kMoeTileK; rows of the tile list.
inline constexpr int kMoeTileRows = 64, kMoeTileK = 32, kMoeTileCols = 128;
inline constexpr int kMoeTileLds = kMoeTileK + 8;  // bf16 per staged row
// Scalar GEMV: weight rows per wave; floats per 32 x values staged in shared memory.
inline constexpr int kMoeGemvRowsW = 4, kMoeXPad = 36;
// Tensor-core GEMV (NVIDIA): activation rows per chunk (the mma's N), weight rows per wave (M).
inline constexpr int kMoeMmaGemvRows = 8, kMoeMmaGemvWaveRows = 16;
// Grouped GEMM (NVIDIA): kMoeTcBM weight rows x kMoeTcBN grouped rows per block, kMoeTcKB MXFP4
// blocks per pipeline stage.
inline constexpr int kMoeTcBM = 256, kMoeTcBN = 64, kMoeTcKB = 2;
inline constexpr int kMoeTcWRow = kMoeTcKB * 16;   // bytes per weight row per stage
inline constexpr int kMoeTcXRow = kMoeTcKB * 128;  // bytes per B row per stage
inline constexpr int kMoeTcStageBytes = kMoeTcBM * kMoeTcWRow + kMoeTcBN * kMoeTcXRow;
// Warp-specialised grouped GEMM on wgmma (moe_ws_kernel, MoeOptions::wgmma, sm_90a): a producer
// warpgroup and two consumer warpgroups; kMoeTcBM weight rows x kMoeWsBN grouped rows per block
// (the tile list built with kMoeWsBN-row tiles); a ring of kMoeWsStages stages of the weights (as
// kMoeTcKB blocks above) and x (kMoeWsBN rows x 128 bytes: kMoeTcKB blocks of 64 bf16 bytes).
inline constexpr int kMoeWsThreads = 384, kMoeWsBN = 128, kMoeWsStages = 6;
inline constexpr int kMoeWsStageBytes = kMoeTcBM * kMoeTcWRow + kMoeWsBN * 128;
inline constexpr size_t kMoeWsStaticSmemBytes = 2 * kMoeWsStages * sizeof(uint64_t);  // mbarriers
// moe_combine_norm_kernel's block and its __shared__ double red[kMoeNormThreads / 16].
inline constexpr int kMoeNormThreads = 256;
inline constexpr size_t kMoeNormStaticSmemBytes = kMoeNormThreads / 16 * sizeof(double);
// moe_mma_kernel's __shared__ float lut[16].
inline constexpr size_t kMoeTileStaticSmemBytes = 16 * sizeof(float);

// ---- dynamic shared memory, one function per kernel ---------------------------------------------
// moe_route_small_kernel: logits [rows, E] (padded to 4 floats) + x [rows, H], fp32.
constexpr size_t moe_route_small_smem_bytes(int rows, int E, int H) {
  return (static_cast<size_t>((rows * E + 3) / 4) * 4 + static_cast<size_t>(rows) * H) * sizeof(float);
}
// moe_router_rows_kernel: x [kMoeRouterRows, H] + logits [kMoeRouterRows, E], fp32.
constexpr size_t moe_router_rows_smem_bytes(int H, int E) {
  return static_cast<size_t>(kMoeRouterRows) * (H + E) * sizeof(float);
}
// moe_router_kernel: x [H] + logits [E], fp32.
constexpr size_t moe_router_smem_bytes(int H, int E) {
  return static_cast<size_t>(H + E) * sizeof(float);
}
// moe_build_kernel: the experts array [pairs] int32 when it is staged (pairs <= kMoeBuildSmemPairs).
constexpr size_t moe_build_smem_bytes(int pairs) {
  return pairs <= kMoeBuildSmemPairs ? static_cast<size_t>(pairs) * sizeof(int) : 0;
}
// moe_gemv_kernel<rb, *>: x [rb][K / 32][kMoeXPad] fp32.
constexpr size_t moe_gemv_smem_bytes(int rb, int K) {
  return static_cast<size_t>(rb) * (K / 32) * kMoeXPad * sizeof(float);
}
// moe_gemv_mma_kernel<nr, *>: x as fp16 pairs [2 (hi, lo)][nr][row words], row stride padded to
// 16 (mod 32) words.
constexpr int moe_gemv_mma_row_words(int K) {
  const int w = (K / 32) * 16;
  return (w % 32 == 0) ? w + 16 : w;
}
constexpr size_t moe_gemv_mma_smem_bytes(int nr, int K) {
  return static_cast<size_t>(2) * nr * moe_gemv_mma_row_words(K) * sizeof(uint32_t);
}
// moe_tc_kernel<*, stages, min_blocks, *>: B staged hi chunks only (half of kMoeTcXRow per row)
// when two blocks per SM run more than 3 stages (grouped configurations 3, 4; fast modes only).
constexpr bool moe_tc_hi_b(int stages, int min_blocks) { return min_blocks == 2 && stages > 3; }
// moe_tc_kernel: `stages` pipeline stages + the E8M0 scales of the block's rows.
constexpr size_t moe_tc_smem_bytes(int K, int stages, bool hi_b = false) {
  return static_cast<size_t>(stages) * (kMoeTcBM * kMoeTcWRow + kMoeTcBN * (hi_b ? kMoeTcXRow / 2 : kMoeTcXRow)) +
         ((static_cast<size_t>(kMoeTcBM) * (K / 32) + 15) / 16) * 16;
}
// moe_ws_kernel: the ring + the E8M0 scales of the block's rows + 1 KB to align the swizzled
// tiles to 1024 bytes.
constexpr size_t moe_ws_smem_bytes(int K) {
  return static_cast<size_t>(kMoeWsStages) * kMoeWsStageBytes +
         ((static_cast<size_t>(kMoeTcBM) * (K / 32) + 15) / 16) * 16 + 1024;
}
// moe_mma_kernel: two stages of A (hi and lo bf16 halves) and B, or the fp32 epilogue staging.
constexpr size_t moe_tiles_smem_bytes() {
  const size_t ab = 2 * (2 * kMoeTileRows + kMoeTileCols) * kMoeTileLds * 2;
  const size_t c = static_cast<size_t>(kMoeTileRows) * (kMoeTileCols + 4) * 4;
  return ab > c ? ab : c;
}

// The one-block routing kernel takes a step when its dynamic shared memory fits this: 100 KiB on
// sm_90 (measured choice), and on gfx90a what the 64 KiB LDS leaves next to build_groups' static
// arrays (56 KiB: 4 rows at 20b and 120b). Larger steps take moe_router_rows + moe_build.
constexpr size_t moe_route_small_budget(const GpuTarget& t) {
  const size_t room = t.max_smem_per_block - kMoeBuildStaticSmemBytes;
  return room < kMoeRouteSmallSmem ? room : kMoeRouteSmallSmem;
}
// moe_router_rows_kernel's budget: 160 KiB on sm_90, the whole block's LDS on gfx90a.
constexpr size_t moe_router_rows_budget(const GpuTarget& t) {
  return t.max_smem_per_block < 160 * 1024 ? t.max_smem_per_block : 160 * 1024;
}

// ---- the plan ---------------------------------------------------------------------------------
enum class MoeRoute { small, rows, per_row };
// The grouped GEMM's arithmetic (moe_tc_kernel's last template argument is the value):
//   exact:     weights as exact fp16 placements, x as fp16 hi + lo (two MMAs per product), each
//              MXFP4 block's partial sums times its scale into fp32 sums (precision exact);
//   fast_f16:  the same with x as fp16 hi only (MoeOptions::fast, !fold_scales);
//   fast_bf16: weights as bf16 with the scale folded in, x as bf16, MMAs accumulate directly
//              (MoeOptions::fast + fold_scales);
//   fast_wgmma: the arithmetic of fast_bf16 on wgmma (moe_ws_kernel; + MoeOptions::wgmma);
//              the staged x words of a block are in (q, t) order instead of (t, q).
enum class MoeTcMode : int { exact = 0, fast_f16 = 1, fast_bf16 = 2, fast_wgmma = 3 };
// gemv: every expert on the GEMV; grouped: every expert on the grouped GEMM (NVIDIA);
// gemv_tiles: experts with > kMoeGemvMaxRows rows on the bf16 tiles, the others on the GEMV.
enum class MoeMlp { gemv, grouped, gemv_tiles };

struct MoePlan {
  MoeRoute route = MoeRoute::small;
  MoeMlp mlp = MoeMlp::gemv;
  bool gemv_tensor_cores = false;  // which GEMV kernel runs (when one runs)
  int gemv_rows = 1;               // its template row count: scalar 1 | 4, tensor cores 1 | 8
  int tc_stages = 3, tc_min_blocks = 2;  // grouped GEMM template (mlp == grouped)
  MoeTcMode tc_mode = MoeTcMode::exact;  // grouped GEMM arithmetic
  int ws_probe = 0;                      // fast_wgmma: MoeOptions::ws_probe
  int tile_rows = kMoeTileRows;    // grouped rows per tile of the tile list (build input)
  int gemv_max = INT_MAX;          // experts with more grouped rows go to tiles (build input)
  // Launches in order; inactive ones have threads == 0.
  KernelLaunch route_k;      // moe_route_small / moe_router_rows / moe_router
  KernelLaunch build_k;      // moe_build (route != small)
  KernelLaunch stage_x_k;    // moe_stage_x (grouped)
  KernelLaunch mlp_k[2];     // [0] mlp1, [1] mlp2: the GEMV or the grouped GEMM
  KernelLaunch tiles_k[2];   // bf16 tiles (gemv_tiles)
  KernelLaunch combine_k;    // moe_combine, or moe_combine_norm with next_norm
  template <class F>
  void for_each_launch(F&& f) const {
    for (const KernelLaunch* l : {&route_k, &build_k, &stage_x_k, &mlp_k[0], &tiles_k[0], &mlp_k[1],
                                  &tiles_k[1], &combine_k})
      if (l->active()) f(*l);
  }
};

// The plan of one step. Requires a valid shape (moe_shape_error) and 1 <= rows.
MoePlan moe_plan(const MoeShape& sh, int rows, const MoeOptions& o, const GpuTarget& t,
                 bool next_norm);
// "gemv", "mma" (grouped GEMM for every expert) or "gemv+mma" (GEMV and bf16 tiles by expert rows).
const char* moe_mlp_name(MoeMlp m);

// "" when the shape is supported, else a one-line reason.
std::string moe_shape_error(const MoeShape& sh);
// "" when every launch of every step of 1..max_rows rows fits t, else the first that does not
// ("moe: a step of N rows: <launch_limit_error>").
std::string moe_limits_error(const MoeShape& sh, int max_rows, const MoeOptions& o,
                             const GpuTarget& t);

}  // namespace gptoss::gpu
