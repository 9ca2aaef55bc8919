// moe_bench.cpp: `bench-moe`, timing of gpu::moe_forward for the 20b MoE shape (E 32, top-4,
// H 2880, I 2880) with random weights. One JSON line per row count:
//   rows, path, time_us (median of the reps, device events around graph replays), weight_bytes
//   (distinct experts touched x bytes per expert + router), GB/s of those bytes, fraction of
//   3.0 TB/s (H100 measured copy bandwidth), TFLOP/s (2 x rows x k x 3 H I).
// Inputs rotate over 8 random x sets per row count so routing (and the experts read) changes
// between replays and the L2 cache (50 MB) does not hold the weights of one routing.
// Usage: bench-moe [--reps N] [--rows a,b,c] [--gemv scalar|mma] [--tiles f16|bf16]
//                  [--grouped-config 0..4] [--grouped-from N] [--precision exact|fast]
//                  [--fold 0|1] [--wgmma 0|1] [--ws-probe 0..7]
// The kernel choices are gpu::MoeOptions (moe_plan.h): --gemv mma = the tensor-core GEMV (NVIDIA),
// --tiles bf16 = the bf16 tile kernel (HIP's path) instead of the grouped fp16 GEMM,
// --grouped-config = the grouped GEMM's configuration, --grouped-from N = steps of >= N rows on
// the grouped GEMM, --precision fast = MoeOptions::fast (default exact), --fold 1 = fast with
// the folded scales (MoeOptions::fold_scales: on by default; --fold 0 for the fp16 path), --wgmma 1 =
// fast + folded on Hopper's wgmma (MoeOptions::wgmma, sm_90a builds). Each line says which ("gemv", "tiles", "tc_cfg",
// "tc_from", "precision"). --ws-probe P (with --wgmma 1; MoeOptions::ws_probe): the wgmma kernel
// with a part of its work left out, for timing only (results meaningless; moe_ws_gemm.cu kProbe:
// 1 no decode, 2 no wgmma, 3 stream only, 4 no epilogue stores, 5 no copies, 6 / 7 stream only
// with only x / only the weights copied); the line's
// "ws_probe" says which.
#include <algorithm>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "moe_testutil.h"

using namespace gptoss;
using moetest::DevBuf;

int main(int argc, char** argv) {
  return guarded_main("bench-moe", [&]() -> int {
    const char* usage =
        "usage: bench-moe [--reps N] [--rows a,b,c] [--gemv scalar|mma] [--tiles f16|bf16] "
        "[--grouped-config 0|1|2] [--grouped-from N] [--precision exact|fast] [--fold 0|1] "
        "[--wgmma 0|1] [--ws-probe 0..7]";
    int reps = 50;
    std::vector<int> rows_list = {1, 8, 64, 256, 512, 4096};
    gpu::MoeOptions opt;
    auto int_arg = [&](const std::string& flag, const std::string& v, int lo, int hi) {
      size_t used = 0;
      int n = 0;
      try {
        n = std::stoi(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != v.size() || v.empty() || n < lo || n > hi)
        fail("%s: expected an integer in [%d, %d], got '%s'", flag.c_str(), lo, hi, v.c_str());
      return n;
    };
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (i + 1 >= argc) fail("%s (got '%s' without a value)", usage, a.c_str());
      const std::string v = argv[++i];
      if (a == "--reps") {
        reps = int_arg(a, v, 1, 100000);
      } else if (a == "--rows") {
        rows_list.clear();
        size_t p = 0;
        while (p <= v.size()) {
          size_t q = v.find(',', p);
          if (q == std::string::npos) q = v.size();
          rows_list.push_back(int_arg(a, v.substr(p, q - p), 1, 1 << 20));
          p = q + 1;
        }
      } else if (a == "--gemv" && (v == "scalar" || v == "mma")) {
        opt.gemv_tensor_cores = v == "mma";
      } else if (a == "--tiles" && (v == "f16" || v == "bf16")) {
        opt.bf16_tiles = v == "bf16";
      } else if (a == "--grouped-config") {
        opt.grouped_config = int_arg(a, v, 0, 4);
      } else if (a == "--grouped-from") {
        opt.grouped_from_rows = int_arg(a, v, 2, 1 << 20);
      } else if (a == "--precision" && (v == "exact" || v == "fast")) {
        opt.fast = v == "fast";
      } else if (a == "--fold" && (v == "0" || v == "1")) {
        opt.fold_scales = v == "1";
      } else if (a == "--wgmma" && (v == "0" || v == "1")) {
        opt.wgmma = v == "1";
      } else if (a == "--ws-probe") {
        opt.ws_probe = int_arg(a, v, 0, 7);
      } else {
        fail("%s (got '%s %s')", usage, a.c_str(), v.c_str());
      }
    }
    if (!moetest::gpu_present()) fail("no GPU device present");
    gpuDeviceProp prop;
    GPU_CHECK(gpuGetDeviceProperties(&prop, 0));
    std::fprintf(stderr, "bench-moe: device %s\n", prop.name);
    const char* gemv_kind = opt.gemv_tensor_cores ? "mma" : "scalar";
    const bool nvidia = gpu::kTarget.vendor == gpu::GpuVendor::nvidia;
    const char* tiles_kind = (!nvidia || opt.bf16_tiles) ? "bf16" : "f16tc";
    const std::string cfg = std::to_string(opt.grouped_config), from = std::to_string(opt.grouped_from_rows);
    const char* prec = !opt.fast ? "exact" : !opt.fold_scales ? "fast" : opt.wgmma ? "fast-wgmma" : "fast-fold";
    const moetest::MoeShape sh{32, 4, 2880, 2880, 7.0f};
    moetest::HostMoe hm(sh, 1);
    moetest::DevMoe dm(hm);
    const int max_rows = *std::max_element(rows_list.begin(), rows_list.end());
    gpu::MoeGpuScratch s = gpu::moe_scratch_create(dm.w, max_rows, opt);
    constexpr int kSets = 8;
    gpuStream_t st;
    GPU_CHECK(gpuStreamCreate(&st));
    gpuEvent_t e0, e1;
    GPU_CHECK(gpuEventCreate(&e0));
    GPU_CHECK(gpuEventCreate(&e1));
    const size_t router_bytes = static_cast<size_t>(sh.E) * sh.H * 2 + sh.E * 2;
    for (int rows : rows_list) {
      const size_t n = static_cast<size_t>(rows) * sh.H;
      std::vector<DevBuf<float>*> xs;
      DevBuf<float> res(n);
      moetest::Rng r(100 + rows);
      double bytes_sum = 0;
      std::vector<float> hx(n);
      std::vector<gpuGraphExec_t> graphs;
      for (int q = 0; q < kSets; ++q) {
        for (auto& v : hx) v = r.normal();
        xs.push_back(new DevBuf<float>(n));
        xs.back()->upload(hx);
        for (auto& v : hx) v = r.normal();
        res.upload(hx);
        // Distinct experts of this routing.
        gpu::moe_forward(dm.w, xs.back()->p, rows, res.p, s, st);
        GPU_CHECK(gpuStreamSynchronize(st));
        std::vector<int32_t> ex(static_cast<size_t>(rows) * sh.k);
        GPU_CHECK(gpuMemcpy(ex.data(), s.experts, ex.size() * 4, gpuMemcpyDeviceToHost));
        std::set<int32_t> distinct(ex.begin(), ex.end());
        bytes_sum += static_cast<double>(distinct.size()) * hm.expert_bytes() + router_bytes;
        gpuGraph_t g;
        gpuGraphExec_t ge;
        GPU_CHECK(gpuStreamBeginCapture(st));
        gpu::moe_forward(dm.w, xs.back()->p, rows, res.p, s, st);
        GPU_CHECK(gpuStreamEndCapture(st, &g));
        GPU_CHECK(gpuGraphInstantiate(&ge, g));
        GPU_CHECK(gpuGraphDestroy(g));
        graphs.push_back(ge);
      }
      for (int w = 0; w < 3 * kSets; ++w) GPU_CHECK(gpuGraphLaunch(graphs[w % kSets], st));
      GPU_CHECK(gpuStreamSynchronize(st));
      std::vector<float> times_us;
      for (int rep = 0; rep < reps; ++rep) {
        GPU_CHECK(gpuEventRecord(e0, st));
        for (int q = 0; q < kSets; ++q) GPU_CHECK(gpuGraphLaunch(graphs[q], st));
        GPU_CHECK(gpuEventRecord(e1, st));
        GPU_CHECK(gpuEventSynchronize(e1));
        float ms = 0;
        GPU_CHECK(gpuEventElapsedTime(&ms, e0, e1));
        times_us.push_back(ms * 1000.0f / kSets);
      }
      std::sort(times_us.begin(), times_us.end());
      const double t_us = times_us[times_us.size() / 2];
      const double bytes = bytes_sum / kSets;
      const double gbps = bytes / (t_us * 1e-6) / 1e9;
      const double flops = 2.0 * rows * sh.k * 3.0 * sh.H * sh.I;
      std::printf("{\"rows\": %d, \"path\": \"%s\", \"gemv\": \"%s\", \"tiles\": \"%s\", "
                  "\"tc_cfg\": \"%s\", \"tc_from\": \"%s\", \"precision\": \"%s\", \"ws_probe\": %d, "
                  "\"time_us\": %.2f, \"time_us_min\": %.2f, "
                  "\"weight_bytes\": %.0f, \"GBps\": %.1f, \"frac_3TBps\": %.3f, \"TFLOPs\": %.2f, "
                  "\"device\": \"%s\"}\n",
                  rows, gpu::moe_path_name(s, rows), gemv_kind, tiles_kind, cfg.c_str(),
                  from.c_str(), prec, opt.ws_probe, t_us, times_us.front(), bytes,
                  gbps, gbps / 3000.0, flops / (t_us * 1e-6) / 1e12, prop.name);
      std::fflush(stdout);
      for (auto ge : graphs) GPU_CHECK(gpuGraphExecDestroy(ge));
      for (auto* x : xs) delete x;
    }
    gpu::moe_scratch_destroy(s);
    GPU_CHECK(gpuStreamDestroy(st));
    return 0;
  });
}
