// kernels/gpu/moe_plan.cpp: moe_forward's kernel choices and launch shapes per step (moe_plan.h).
#include "gpu/moe_plan.h"

#include <algorithm>
#include <string>
#include <vector>

#include "common/error.h"

namespace gptoss::gpu {
namespace {

int ceil_div(long long a, long long b) { return static_cast<int>((a + b - 1) / b); }

bool router_rows_ok(int H, int E, const GpuTarget& t) {
  return E <= 32 * t.wave_size && moe_router_rows_smem_bytes(H, E) <= moe_router_rows_budget(t);
}

// Shapes the grouped GEMM takes (else the bf16 tile kernel): K in whole stages, M in whole warp
// tiles, shared memory within two blocks per SM on sm_90 / one on sm_80.
bool tc_shape_ok(int K, int M) {
  return K % (32 * kMoeTcKB) == 0 && M % 32 == 0 && moe_tc_smem_bytes(K, 4) <= 160 * 1024;
}

KernelLaunch launch(const char* kernel, int gx, int gy, int threads, size_t dyn,
                    size_t static_bytes = 0) {
  KernelLaunch l;
  l.kernel = kernel;
  l.grid_x = gx;
  l.grid_y = gy;
  l.threads = threads;
  l.dyn_smem_bytes = dyn;
  l.static_smem_bytes = static_bytes;
  return l;
}

}  // namespace

const char* moe_ws_kernel_name(bool mlp1, int probe) {
  static const char* n[2][8] = {
      {"moe_ws_kernel<false>", "moe_ws_kernel<false, 1>", "moe_ws_kernel<false, 2>", "moe_ws_kernel<false, 3>",
       "moe_ws_kernel<false, 4>", "moe_ws_kernel<false, 5>", "moe_ws_kernel<false, 6>", "moe_ws_kernel<false, 7>"},
      {"moe_ws_kernel<true>", "moe_ws_kernel<true, 1>", "moe_ws_kernel<true, 2>", "moe_ws_kernel<true, 3>",
       "moe_ws_kernel<true, 4>", "moe_ws_kernel<true, 5>", "moe_ws_kernel<true, 6>", "moe_ws_kernel<true, 7>"}};
  GPTOSS_ASSERT(probe >= 0 && probe < 8);
  return n[mlp1][probe];
}

namespace {

// Kernel names as the resource report shows them ([mlp2][variant]).
const char* gemv_name(bool mlp1, int rb) {
  static const char* n[2][2] = {{"moe_gemv_kernel<1, false>", "moe_gemv_kernel<4, false>"},
                                {"moe_gemv_kernel<1, true>", "moe_gemv_kernel<4, true>"}};
  return n[mlp1][rb == 4];
}
const char* gemv_mma_name(bool mlp1, int nr) {
  static const char* n[2][2] = {{"moe_gemv_mma_kernel<1, false>", "moe_gemv_mma_kernel<8, false>"},
                                {"moe_gemv_mma_kernel<1, true>", "moe_gemv_mma_kernel<8, true>"}};
  return n[mlp1][nr == 8];
}
const char* tc_name(bool mlp1, int stages, int min_blocks, MoeTcMode mode) {
  // [mlp1][stages, blocks 3, 2 | 4, 1 | 6, 1 | 4, 2 | 5, 2][mode]
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const char* m1 : {"false", "true"})
      for (const char* sb : {"3, 2", "4, 1", "6, 1", "4, 2", "5, 2"})
        for (const char* md : {"0", "1", "2"})
          v.push_back(std::string("moe_tc_kernel<") + m1 + ", " + sb + ", " + md + ">");
    return v;
  }();
  const int si = min_blocks == 2 ? (stages == 3 ? 0 : stages == 4 ? 3 : 4) : stages == 4 ? 1 : 2;
  return names[size_t((mlp1 ? 1 : 0) * 15 + si * 3 + static_cast<int>(mode))].c_str();
}
const char* tiles_name(bool mlp1) { return mlp1 ? "moe_mma_kernel<true>" : "moe_mma_kernel<false>"; }

}  // namespace

const char* moe_options_error(const MoeOptions& o, const GpuTarget& t) {
  if (o.gemv_tensor_cores && t.vendor != GpuVendor::nvidia)
    return "the tensor-core MoE GEMV is NVIDIA only";
  if (o.grouped_from_rows < 2) return "the grouped GEMM's first step size must be >= 2 rows";
  if (o.grouped_config < 0 || o.grouped_config > 4)
    return "the grouped GEMM configuration must be 0..4";
  if (o.grouped_config >= 3 && (!o.fast || o.wgmma))
    return "grouped GEMM configurations 3 and 4 stage x without its lo halves: precision fast "
           "on mma.sync only";
  if (o.wgmma && t.vendor != GpuVendor::nvidia) return "the wgmma MoE GEMM is NVIDIA (sm_90a) only";
  if (o.wgmma && o.grouped_config != 0)
    return "the wgmma MoE GEMM has one configuration (grouped configuration 0)";
  if (o.ws_probe < 0 || o.ws_probe > 7) return "the wgmma MoE GEMM's timing probes are 1..7";
  if (o.ws_probe != 0 && !(o.wgmma && o.fast && o.fold_scales))
    return "the wgmma MoE GEMM's timing probes need the wgmma MoE GEMM (fast, folded scales)";
  return "";
}

std::string moe_shape_error(const MoeShape& sh) {
  if (sh.hidden <= 0 || sh.hidden % 32 != 0 || sh.intermediate <= 0 || sh.intermediate % 32 != 0 ||
      sh.top_k < 1 || sh.top_k > sh.n_experts || sh.top_k > kMoeMaxTopK ||
      sh.n_experts > kMoeMaxExperts)
    return strfmt("unsupported shape (E %d, k %d, H %d, I %d): need H, I multiples of 32, "
                  "1 <= k <= min(E, %d), E <= %d",
                  sh.n_experts, sh.top_k, sh.hidden, sh.intermediate, kMoeMaxTopK, kMoeMaxExperts);
  return "";
}

const char* moe_mlp_name(MoeMlp m) {
  return m == MoeMlp::gemv ? "gemv" : m == MoeMlp::grouped ? "mma" : "gemv+mma";
}

MoePlan moe_plan(const MoeShape& sh, int rows, const MoeOptions& o, const GpuTarget& t,
                 bool next_norm) {
  const int E = sh.n_experts, k = sh.top_k, H = sh.hidden, I = sh.intermediate;
  const int pairs = rows * k;
  const int waves = kMoeThreads / t.wave_size;
  const bool nvidia = t.vendor == GpuVendor::nvidia;
  MoePlan p;

  // Expert matmuls. NVIDIA: steps of >= grouped_from_rows rows put EVERY expert on the grouped
  // fp16 GEMM (it computes only ceil(rows / 8) n8 tiles per expert, so experts with few rows cost
  // little). Elsewhere (HIP, bf16_tiles, shapes the grouped GEMM rejects): steps of
  // > kMoeGemvMaxRows rows send experts with <= kMoeGemvMaxRows rows to the GEMV and the others
  // to the bf16 tile kernel.
  const bool tc_ok = nvidia && !o.bf16_tiles && tc_shape_ok(H, 2 * I) && tc_shape_ok(I, H);
  const bool grouped = tc_ok && rows >= o.grouped_from_rows;
  const bool tiles = !grouped && !tc_ok && rows > kMoeGemvMaxRows;
  p.mlp = grouped ? MoeMlp::grouped : tiles ? MoeMlp::gemv_tiles : MoeMlp::gemv;
  p.gemv_max = p.mlp == MoeMlp::gemv ? INT_MAX : grouped ? 0 : kMoeGemvMaxRows;

  // Routing: small steps in one block when their x and logits fit its shared memory budget.
  const size_t route_smem = moe_route_small_smem_bytes(rows, E, H);
  if (rows <= kMoeRouteSmallRows && route_smem <= moe_route_small_budget(t) && E <= 32 * t.wave_size) {
    p.route = MoeRoute::small;
    p.route_k = launch("moe_route_small_kernel", 1, 1, kMoeBuildThreads, route_smem,
                       kMoeBuildStaticSmemBytes);
  } else {
    if (router_rows_ok(H, E, t)) {
      p.route = MoeRoute::rows;
      p.route_k = launch("moe_router_rows_kernel", ceil_div(rows, kMoeRouterRows), 1, kMoeThreads,
                         moe_router_rows_smem_bytes(H, E));
    } else {
      p.route = MoeRoute::per_row;
      p.route_k = launch("moe_router_kernel", rows, 1, kMoeThreads, moe_router_smem_bytes(H, E));
    }
    p.build_k = launch("moe_build_kernel", 1, 1, kMoeBuildThreads, moe_build_smem_bytes(pairs),
                       kMoeBuildStaticSmemBytes);
  }

  const int gx = std::min(E, pairs);
  const int n_tiles = ceil_div(pairs, kMoeTileRows) + E;  // the tile list's length at most
  const int K[2] = {H, I}, M[2] = {2 * I, H};
  if (grouped) {
    static constexpr int kStages[5] = {3, 4, 6, 4, 5}, kMinBlocks[5] = {2, 1, 1, 2, 2};
    p.tc_stages = kStages[o.grouped_config];
    p.tc_min_blocks = kMinBlocks[o.grouped_config];
    p.tc_mode = !o.fast ? MoeTcMode::exact : o.fold_scales ? MoeTcMode::fast_bf16 : MoeTcMode::fast_f16;
    if (p.tc_mode == MoeTcMode::fast_bf16 && o.wgmma) {
      // wgmma: the warp-specialised kernel (kMoeWsStages, one block per SM, 128-row tiles).
      p.tc_mode = MoeTcMode::fast_wgmma;
      p.tc_stages = kMoeWsStages;
      p.tc_min_blocks = 1;
      p.tile_rows = kMoeWsBN;
      p.ws_probe = o.ws_probe;
    }
    p.stage_x_k = launch("moe_stage_x_kernel", ceil_div(static_cast<long long>(rows) * (H / 32) * 4, kMoeThreads),
                         1, kMoeThreads, 0);
    for (int m = 0; m < 2; ++m)
      p.mlp_k[m] = p.tc_mode == MoeTcMode::fast_wgmma
                       ? launch(moe_ws_kernel_name(m == 0, p.ws_probe),
                                ceil_div(pairs, kMoeWsBN) + E, ceil_div(M[m], kMoeTcBM), kMoeWsThreads,
                                moe_ws_smem_bytes(K[m]), kMoeWsStaticSmemBytes)
                       : launch(tc_name(m == 0, p.tc_stages, p.tc_min_blocks, p.tc_mode), n_tiles,
                                ceil_div(M[m], kMoeTcBM), kMoeThreads,
                                moe_tc_smem_bytes(K[m], p.tc_stages, moe_tc_hi_b(p.tc_stages, p.tc_min_blocks)));
  } else {
    // One GEMV kernel per process (see MoeOptions::gemv_tensor_cores): the tensor-core one needs
    // M in whole 16-row wave tiles.
    p.gemv_tensor_cores = nvidia && o.gemv_tensor_cores && (2 * I) % kMoeMmaGemvWaveRows == 0 &&
                          H % kMoeMmaGemvWaveRows == 0;
    for (int m = 0; m < 2; ++m) {
      if (p.gemv_tensor_cores) {
        p.gemv_rows = rows == 1 ? 1 : kMoeMmaGemvRows;
        p.mlp_k[m] = launch(gemv_mma_name(m == 0, p.gemv_rows), gx,
                            ceil_div(M[m], waves * kMoeMmaGemvWaveRows), kMoeThreads,
                            moe_gemv_mma_smem_bytes(p.gemv_rows, K[m]));
      } else {
        p.gemv_rows = rows == 1 ? 1 : 4;
        p.mlp_k[m] = launch(gemv_name(m == 0, p.gemv_rows), gx, ceil_div(M[m], waves * kMoeGemvRowsW),
                            kMoeThreads, moe_gemv_smem_bytes(p.gemv_rows, K[m]));
      }
      if (tiles)
        p.tiles_k[m] = launch(tiles_name(m == 0), n_tiles, ceil_div(M[m], kMoeTileCols), kMoeThreads,
                              moe_tiles_smem_bytes(), kMoeTileStaticSmemBytes);
    }
  }
  if (next_norm)
    p.combine_k = launch("moe_combine_norm_kernel", rows, 1, kMoeNormThreads, 0, kMoeNormStaticSmemBytes);
  else
    p.combine_k = launch("moe_combine_kernel", ceil_div(static_cast<long long>(rows) * (H / 4), kMoeThreads), 1,
                         kMoeThreads, 0);
  return p;
}

std::string moe_limits_error(const MoeShape& sh, int max_rows, const MoeOptions& o,
                             const GpuTarget& t) {
  for (int rows = 1; rows <= max_rows; ++rows)
    for (bool norm : {false, true}) {
      std::string err;
      moe_plan(sh, rows, o, t, norm).for_each_launch([&](const KernelLaunch& l) {
        if (err.empty()) err = launch_limit_error(l, t);
      });
      if (!err.empty())
        return strfmt("moe: a step of %d row%s: %s", rows, rows == 1 ? "" : "s", err.c_str());
    }
  return "";
}

}  // namespace gptoss::gpu
