// launch_limits_test.cpp: CTest gpu_launch_limits. Runs in every build, the CPU build too (no GPU,
// no GPU runtime): the launch shapes the GPU kernels would use for the tiny, 20b and 120b configs
// must fit the limits of both targets, sm_90 and gfx90a (target.h): threads per block, whole
// waves, shared memory (LDS) per block, grid. Checked: every kernel with dynamic shared memory,
//   MoE (kernels/gpu/moe_plan.h): every step size a device step can have (1..kMaxStepRows) and
//     every kernel path (each MoeOptions choice valid on the target, with and without the fused
//     next RMSNorm);
//   prompt-tile attention and token sampling (kernels/gpu/launch_shapes.h): both KV-cache types,
//     1..kMaxStepRows tiles / rows;
//   the decode path (launch_shapes.h): its dense matmuls, router and expert matmuls at 1..4 rows;
//   NVIDIA only (launch_shapes.h): the fast dense GEMMs (mma.sync, with one K split and with
//     fast_gemm_auto_splits; wgmma) for the qkv, output projection and LM head at 1..kMaxStepRows
//     rows, and tensor-core split-K attention (sliding and full layers at a 4096-position and
//     the full context) for launches of 1..kMaxStepRows rows.
// Kernels with fixed blocks and only static shared memory are covered by the HIP build's
// resource report (tests/gpu/hip_resource_report.py) and, on CUDA, by nvcc itself.
//
// The oracle is the target's published limits (target.h), not the code under test: a plan that
// asks for more shared memory than a gfx90a workgroup has fails here, before any run on an MI250.
//
//   launch_limits_test [gtest flags]
//   launch_limits_test --dynamic-smem TARGET   one line per kernel: name, threads, the largest
//                                              dynamic shared memory any checked launch passes
//                                              (tests/gpu/hip_resource_report.py reads it)
//   launch_limits_test --limits TARGET         the target's limits, one "key value" per line
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "gpu/launch_shapes.h"
#include "gpu/moe_plan.h"
#include "gpu/target.h"
#include "model/config.h"

namespace gptoss::gpu {
namespace {

// Step sizes a device step can have: the GPU backend's steps are <= BackendOptions::step_rows
// rows, at most 4096 (gpu_backend_impl.h kMaxStepRows); bench-moe's default list goes to 4096 too.
// Checked: every size up to 4096.
constexpr int kMaxStepRows = 4096;

struct Case {
  std::string config;
  Config c;
  MoeShape shape;
};

std::vector<Case> cases() {
  std::vector<Case> v;
  for (const char* name : {"tiny", "20b", "120b"}) {
    const Config c = named_config(name);
    v.push_back({name, c, MoeShape{c.n_experts, c.experts_per_tok, c.hidden, c.intermediate}});
  }
  return v;
}

// Every option set the target accepts (moe_options_error), over the choices each option has.
std::vector<MoeOptions> option_sets(const GpuTarget& t) {
  std::vector<MoeOptions> v;
  for (bool tc_gemv : {false, true})
    for (bool bf16 : {false, true})
      for (int from : {2, kMoeStepGemvMaxRows + 1, kMoeGemvMaxRows + 1})
        for (int cfg : {0, 1, 2, 3, 4})
          for (int prec : {0, 1, 2}) {  // exact, fast, fast on wgmma (NVIDIA only)
            MoeOptions o;
            o.gemv_tensor_cores = tc_gemv;
            o.bf16_tiles = bf16;
            o.grouped_from_rows = from;
            o.grouped_config = cfg;
            o.fast = prec > 0;
            o.wgmma = prec == 2;
            if (!*moe_options_error(o, t)) v.push_back(o);
          }
  return v;
}

std::string describe(const MoeOptions& o) {
  return strfmt("gemv %s, tiles %s, grouped from %d rows, grouped config %d%s%s",
                o.gemv_tensor_cores ? "mma" : "scalar", o.bf16_tiles ? "bf16" : "f16",
                o.grouped_from_rows, o.grouped_config, o.fast ? ", fast" : "",
                o.wgmma ? ", wgmma" : "");
}

// Where a launch comes from, for the failure messages.
struct Where {
  const Case* c;
  int rows;                    // step rows (MoE, sampling) or prompt tiles (attention)
  const MoeOptions* moe;       // MoE only
  const char* what;            // other kernels
};
std::string describe(const Where& w) {
  if (w.moe)
    return strfmt("%s, a step of %d rows (%s)", w.c->config.c_str(), w.rows, describe(*w.moe).c_str());
  return strfmt("%s, %s, %d", w.c->config.c_str(), w.what, w.rows);
}

// Calls f(where, launch) for every launch checked here. A new kernel with dynamic shared memory
// adds its launch function's records below.
template <class F>
void for_each_checked_launch(const GpuTarget& t, F&& f) {
  for (const Case& c : cases()) {
    for (const MoeOptions& o : option_sets(t))
      for (int rows = 1; rows <= kMaxStepRows; ++rows)
        for (bool norm : {false, true})
          moe_plan(c.shape, rows, o, t, norm).for_each_launch([&](const KernelLaunch& l) {
            f(Where{&c, rows, &o, nullptr}, l);
          });
    for (int n = 1; n <= kMaxStepRows; ++n) {
      for (bool f32 : {false, true})
        f(Where{&c, n, nullptr, f32 ? "prompt tiles (f32 KV cache)" : "prompt tiles (bf16 KV cache)"},
          attn_tiles_launch(t, f32, n, c.c.n_heads, c.c.n_kv_heads));
      f(Where{&c, n, nullptr, "rows sampled"}, pick_sample_launch(t, n, c.c.vocab));
    }
    // The decode path (steps of 1..kDecodeMaxRows rows): every matmul of a layer and the head
    // (launches of decode_rows_per_launch rows each), the router, both expert matmuls.
    const Config& k = c.c;
    const int sms = t.vendor == GpuVendor::nvidia ? 132 : 104;
    if (t.vendor == GpuVendor::nvidia) {
      // The fast dense GEMMs (precision fast; HIP stages fp32 x in the wave-tile GEMM instead):
      // every dense matmul of a layer and the head, any row count.
      struct Mm {
        const char* mma;
        const char* wgmma;
        int K, M;
      };
      const Mm mms[] = {{"fast GEMM qkv", "wgmma GEMM qkv", k.hidden, k.qkv_rows()},
                        {"fast GEMM output projection", "wgmma GEMM output projection", k.q_dim(), k.hidden},
                        {"fast GEMM LM head", "wgmma GEMM LM head", k.hidden, k.vocab}};
      for (const Mm& m : mms) {
        const int auto_splits = fast_gemm_auto_splits(m.K, m.M, sms);
        for (int rows = 1; rows <= kMaxStepRows; ++rows) {
          for (int splits : {1, auto_splits})
            f(Where{&c, rows, nullptr, m.mma},
              fast_gemm_launch(t, fast_gemm_tile(rows, m.M, splits, sms), rows, m.M, splits));
          f(Where{&c, rows, nullptr, m.wgmma}, wgmma_gemm_launch(t, wgmma_gemm_tile(rows, m.M, sms), rows, m.M));
        }
      }
      // Split-K attention on tensor cores (bf16 KV cache): each layer's max_keys and kv_chunk as
      // src/backend_gpu/gpu_setup.cu sets them for a context of ctx positions (sliding layers:
      // the window, pieces of 64 keys; full layers: the context in >= 128-key pieces, about 32),
      // then the pieces a launch of launch_rows rows takes (attn_split_chunk).
      for (int ctx : {4096, k.max_context}) {
        const int full_chunk = std::max(128, ((ctx + 31) / 32 + 63) / 64 * 64);
        const int window_keys = std::min(std::min(ctx, k.sliding_window + 512), k.sliding_window);
        for (const auto& [max_keys, chunk] : {std::pair{window_keys, 64}, std::pair{ctx, full_chunk}})
          for (int launch_rows = 1; launch_rows <= kMaxStepRows; ++launch_rows) {
            const int pieces =
                attn_split_pieces(max_keys, attn_split_chunk(launch_rows, k.n_kv_heads, max_keys, chunk));
            f(Where{&c, launch_rows, nullptr,
                    max_keys == ctx ? "split-K attention rows (full layer)" : "split-K attention rows (sliding layer)"},
              attn_partial_mma_launch(t, launch_rows, k.n_kv_heads, pieces));
          }
      }
    }
    for (int rows = 1; rows <= kDecodeMaxRows; ++rows) {
      auto dense = [&](const char* what, int K, int M, bool rope) {
        const int per = decode_rows_per_launch(t, rows, K);
        f(Where{&c, per, nullptr, what}, decode_matmul_launch(t, per, K, M, rope, sms));
      };
      dense("decode qkv", k.hidden, k.qkv_rows(), true);
      dense("decode output projection", k.q_dim(), k.hidden, false);
      dense("decode LM head", k.hidden, k.vocab, false);
      f(Where{&c, rows, nullptr, "decode router"}, moe_decode_route_launch(t, rows, k.hidden, k.n_experts));
      const int pairs = rows * k.experts_per_tok;
      f(Where{&c, rows, nullptr, "decode mlp1"},
        moe_decode_mlp_launch(t, true, rows, pairs, k.hidden, 2 * k.intermediate));
      f(Where{&c, rows, nullptr, "decode mlp2"},
        moe_decode_mlp_launch(t, false, rows, pairs, k.intermediate, k.hidden));
    }
  }
}

void check_target(const GpuTarget& t) {
  // Per (kernel, config): the first failing launch in full, and how many fail.
  struct Fail {
    std::string first;
    int count = 0;
  };
  std::map<std::string, Fail> fails;
  long launches = 0, failures = 0;
  for_each_checked_launch(t, [&](const Where& w, const KernelLaunch& l) {
    ++launches;
    const std::string err = launch_limit_error(l, t);
    if (err.empty()) return;
    ++failures;
    Fail& f = fails[std::string(l.kernel) + " at " + w.c->config];
    if (f.count++ == 0) f.first = strfmt("%s, %s: %s", t.name, describe(w).c_str(), err.c_str());
  });
  for (const auto& [key, f] : fails) ADD_FAILURE() << f.first << " (and " << f.count - 1 << " more launches of " << key << ")";
  std::printf("[ limits ] %s: %ld launches checked, %ld over a limit\n", t.name, launches, failures);
  EXPECT_EQ(failures, 0);
}

TEST(LaunchLimits, FitsSm90) { check_target(kSm90); }
TEST(LaunchLimits, FitsGfx90a) { check_target(kGfx90a); }

// The default options are accepted everywhere, and the tensor-core GEMV only on NVIDIA.
TEST(LaunchLimits, OptionsPerTarget) {
  for (const GpuTarget* t : kAllTargets) EXPECT_STREQ(moe_options_error(MoeOptions{}, *t), "") << t->name;
  MoeOptions o;
  o.gemv_tensor_cores = true;
  EXPECT_STREQ(moe_options_error(o, kSm90), "");
  EXPECT_STRNE(moe_options_error(o, kGfx90a), "");
  MoeOptions w;
  w.fast = w.wgmma = true;
  EXPECT_STREQ(moe_options_error(w, kSm90), "");
  EXPECT_STRNE(moe_options_error(w, kGfx90a), "");
  // The plan takes the wgmma kernel only for precision fast with folded scales.
  const MoeShape s20{32, 4, 2880, 2880};
  EXPECT_EQ(moe_plan(s20, 256, w, kSm90, false).tc_mode, MoeTcMode::fast_wgmma);
  // The warp-specialised kernel on 128-row tiles; its one configuration is 0.
  const MoePlan pw = moe_plan(s20, 256, w, kSm90, false);
  EXPECT_STREQ(pw.mlp_k[0].kernel, "moe_ws_kernel<true>");
  EXPECT_STREQ(pw.mlp_k[1].kernel, "moe_ws_kernel<false>");
  EXPECT_EQ(pw.tile_rows, kMoeWsBN);
  EXPECT_EQ(pw.mlp_k[1].threads, kMoeWsThreads);
  EXPECT_EQ(moe_plan(s20, 256, MoeOptions{}, kSm90, false).tile_rows, kMoeTileRows);
  w.grouped_config = 1;
  EXPECT_STRNE(moe_options_error(w, kSm90), "");
  w.grouped_config = 0;
  // The ws kernel's timing probes (bench-moe --ws-probe): 1..7, only on the ws kernel, named
  // apart so the shared-memory opt-in finds them; the same launch shape as the kernel's.
  for (int p = 1; p <= 7; ++p) {
    MoeOptions q = w;
    q.ws_probe = p;
    EXPECT_STREQ(moe_options_error(q, kSm90), "") << p;
    const MoePlan pp = moe_plan(s20, 256, q, kSm90, false);
    EXPECT_EQ(pp.ws_probe, p);
    EXPECT_STREQ(pp.mlp_k[0].kernel, strfmt("moe_ws_kernel<true, %d>", p).c_str());
    EXPECT_STREQ(pp.mlp_k[1].kernel, strfmt("moe_ws_kernel<false, %d>", p).c_str());
    EXPECT_EQ(pp.mlp_k[0].dyn_smem_bytes, pw.mlp_k[0].dyn_smem_bytes);
    q.wgmma = false;
    EXPECT_STRNE(moe_options_error(q, kSm90), "") << "a probe without the ws kernel";
  }
  for (int p : {-1, 8}) {
    MoeOptions q = w;
    q.ws_probe = p;
    EXPECT_STRNE(moe_options_error(q, kSm90), "") << p;
  }
  w.fold_scales = false;
  EXPECT_EQ(moe_plan(s20, 256, w, kSm90, false).tc_mode, MoeTcMode::fast_f16);
}

// The checker itself catches each kind of violation (so a pass above means something).
TEST(LaunchLimits, CheckerCatchesViolations) {
  KernelLaunch ok;
  ok.kernel = "k";
  ok.grid_x = 1;
  ok.threads = 256;
  ok.dyn_smem_bytes = 60 * 1024;
  ok.static_smem_bytes = 4 * 1024;
  EXPECT_EQ(launch_limit_error(ok, kGfx90a), "");
  KernelLaunch l = ok;
  l.static_smem_bytes = 4 * 1024 + 1;  // one byte over gfx90a's 64 KiB
  EXPECT_NE(launch_limit_error(l, kGfx90a), "");
  EXPECT_EQ(launch_limit_error(l, kSm90), "");
  l = ok;
  l.threads = 1056;
  EXPECT_NE(launch_limit_error(l, kSm90), "");
  l = ok;
  l.threads = 96;  // three 32-lane warps, one and a half 64-lane waves
  EXPECT_EQ(launch_limit_error(l, kSm90), "");
  EXPECT_NE(launch_limit_error(l, kGfx90a), "");
  l = ok;
  l.grid_y = 65536;
  EXPECT_NE(launch_limit_error(l, kSm90), "");
}

// A plan is what moe_forward launches: spot checks of its choices against the documented paths.
TEST(LaunchLimits, MoePlanPaths) {
  const MoeShape s20{32, 4, 2880, 2880};
  const MoeOptions def;
  EXPECT_EQ(moe_plan(s20, 1, def, kSm90, false).mlp, MoeMlp::gemv);
  EXPECT_EQ(moe_plan(s20, kMoeStepGemvMaxRows, def, kSm90, false).mlp, MoeMlp::gemv);
  EXPECT_EQ(moe_plan(s20, kMoeStepGemvMaxRows + 1, def, kSm90, false).mlp, MoeMlp::grouped);
  EXPECT_EQ(moe_plan(s20, kMoeGemvMaxRows, def, kGfx90a, false).mlp, MoeMlp::gemv);
  EXPECT_EQ(moe_plan(s20, kMoeGemvMaxRows + 1, def, kGfx90a, false).mlp, MoeMlp::gemv_tiles);
  EXPECT_EQ(moe_plan(s20, 1, def, kSm90, false).route, MoeRoute::small);
  EXPECT_EQ(moe_plan(s20, 1, def, kGfx90a, false).route, MoeRoute::small);
  EXPECT_EQ(moe_plan(s20, kMoeRouteSmallRows + 1, def, kSm90, false).route, MoeRoute::rows);
  // The one-block routing kernel takes steps whose x and logits fit: on gfx90a (64 KiB of LDS,
  // 8 KiB of it static) 4 rows at 20b, on sm_90 (100 KiB budget) 8 rows.
  EXPECT_EQ(moe_plan(s20, 4, def, kGfx90a, false).route, MoeRoute::small);
  EXPECT_EQ(moe_plan(s20, 5, def, kGfx90a, false).route, MoeRoute::rows);
  EXPECT_EQ(moe_plan(s20, 8, def, kSm90, false).route, MoeRoute::small);
  EXPECT_EQ(moe_plan(s20, 9, def, kSm90, false).route, MoeRoute::rows);
  // The one-block routing kernel's launch carries what moe_route_small_smem_bytes says.
  const MoePlan p = moe_plan(s20, 3, def, kSm90, false);
  EXPECT_EQ(p.route_k.dyn_smem_bytes, moe_route_small_smem_bytes(3, 32, 2880));
  EXPECT_EQ(p.route_k.static_smem_bytes, kMoeBuildStaticSmemBytes);
}

// moe_scratch_create refuses a shape whose launches do not fit, naming the kernel and step size
// (moe_limits_error). H = 16384: on gfx90a the per-row router's x alone is 64 KiB; on sm_90 the
// GEMV's x staging at 2+ rows needs 288 KiB.
TEST(LaunchLimits, TooLargeShapeRefusedAtStart) {
  const MoeShape big{8, 4, 16384, 128};
  const std::string amd = moe_limits_error(big, 16, MoeOptions{}, kGfx90a);
  EXPECT_EQ(amd.find("moe: a step of 1 row: moe_router_kernel: 65568 bytes of shared memory"), 0u) << amd;
  const std::string nv = moe_limits_error(big, 16, MoeOptions{}, kSm90);
  EXPECT_EQ(nv.find("moe: a step of 2 rows: moe_gemv_kernel<4, true>: 294912 bytes"), 0u) << nv;
  EXPECT_EQ(moe_limits_error({32, 4, 2880, 2880}, 4096, MoeOptions{}, kGfx90a), "");
}

// moe_decode_scratch_create refuses a decode MoE shape whose launches do not fit
// (moe_decode_limits_error): hidden 4096 on gfx90a, a step of 3 rows (bucket 4): the router's
// 4 rows of H are 64 KiB + its static arrays.
TEST(LaunchLimits, DecodeMoeTooLargeRefusedAtStart) {
  for (const char* name : {"tiny", "20b", "120b"}) {
    const Config c = named_config(name);
    for (const GpuTarget* t : kAllTargets)
      EXPECT_EQ(moe_decode_limits_error(*t, kDecodeMaxRows, c.hidden, c.intermediate, c.n_experts,
                                        c.experts_per_tok), "")
          << name << " " << t->name;
  }
  const std::string amd = moe_decode_limits_error(kGfx90a, kDecodeMaxRows, 4096, 2048, 32, 4);
  EXPECT_EQ(amd.find("moe decode: a step of 3 rows: moe_route_decode_kernel<4>: 65664 bytes"), 0u) << amd;
  EXPECT_EQ(moe_decode_limits_error(kGfx90a, 2, 4096, 2048, 32, 4), "");
  EXPECT_EQ(moe_decode_limits_error(kSm90, kDecodeMaxRows, 4096, 2048, 32, 4), "");
}

// The NVIDIA-only kernels' shared memory (the numbers their sources state: the fast GEMM 40 / 60 /
// 80 KiB by tile; the wgmma GEMM up to 193 KiB at 128 x 256; split-K attention 54 KiB).
TEST(LaunchLimits, NvidiaOnlySharedMemory) {
  EXPECT_EQ(fast_gemm_smem_bytes(64, 64), 40960u);
  EXPECT_EQ(fast_gemm_smem_bytes(128, 128), 81920u);
  EXPECT_EQ(wgmma_gemm_smem_bytes(128, 256), 197632u);
  EXPECT_EQ(kAttnMmaSmemBytes, 55296u);
  // The 20b LM head at 256 rows: 128 x 128 tiles, one split (the tiles fill the GPU).
  const GemmTile tl = fast_gemm_tile(256, 201088, 1, 132);
  EXPECT_EQ(tl.bm, 128);
  EXPECT_EQ(tl.bn, 128);
  EXPECT_EQ(fast_gemm_auto_splits(2880, 201088, 132), 1);
  EXPECT_EQ(wgmma_gemm_launch(kSm90, wgmma_gemm_tile(256, 201088, 132), 256, 201088).threads, 256);
}

// Prompt attention's shared memory per target (the numbers attention_prefill.cu's comment states:
// NVIDIA 108.5 / 135.5 KiB, gfx90a 46.75 / 60.75 KiB for bf16 / fp32 KV caches).
TEST(LaunchLimits, AttentionTilesSharedMemory) {
  EXPECT_EQ(attn_tiles_smem_bytes(kSm90, false), 111104u);
  EXPECT_EQ(attn_tiles_smem_bytes(kSm90, true), 138752u);
  EXPECT_EQ(attn_tiles_smem_bytes(kGfx90a, false), 47872u);
  EXPECT_EQ(attn_tiles_smem_bytes(kGfx90a, true), 62208u);
}

// --dynamic-smem TARGET: per kernel, the largest dynamic shared memory of any launch checked above.
int print_dynamic_smem(const GpuTarget& t) {
  struct Max {
    int threads = 0;
    size_t dyn = 0, stat = 0;
  };
  std::map<std::string, Max> m;
  for_each_checked_launch(t, [&](const Where&, const KernelLaunch& l) {
    Max& x = m[l.kernel];
    x.threads = std::max(x.threads, l.threads);
    x.dyn = std::max(x.dyn, l.dyn_smem_bytes);
    x.stat = std::max(x.stat, l.static_smem_bytes);
  });
  std::printf("# kernel\tthreads\tmax_dynamic_smem_bytes\tstatic_smem_bytes (%s; configs tiny, 20b, "
              "120b; steps of 1..%d rows; every MoE option)\n",
              t.name, kMaxStepRows);
  for (const auto& [k, x] : m) std::printf("%s\t%d\t%zu\t%zu\n", k.c_str(), x.threads, x.dyn, x.stat);
  return 0;
}

int print_limits(const GpuTarget& t) {
  std::printf("name %s\nwave_size %d\nmax_threads_per_block %d\nmax_smem_per_block %zu\n"
              "smem_per_cu %zu\nmax_waves_per_simd %d\nsimds_per_cu %d\nvgprs_per_simd_lane %d\n"
              "vgpr_granule %d\n",
              t.name, t.wave_size, t.max_threads_per_block, t.max_smem_per_block, t.smem_per_cu,
              t.max_waves_per_simd, t.simds_per_cu, t.vgprs_per_simd_lane, t.vgpr_granule);
  return 0;
}

}  // namespace
}  // namespace gptoss::gpu

int main(int argc, char** argv) {
  using namespace gptoss::gpu;
  if (argc == 3 && (!std::strcmp(argv[1], "--dynamic-smem") || !std::strcmp(argv[1], "--limits"))) {
    return gptoss::guarded_main("launch_limits_test", [&] {
      const GpuTarget* t = find_target(argv[2]);
      if (!t) gptoss::fail("%s: unknown target '%s' (known: sm_90, gfx90a)", argv[1], argv[2]);
      return !std::strcmp(argv[1], "--limits") ? print_limits(*t) : print_dynamic_smem(*t);
    });
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
