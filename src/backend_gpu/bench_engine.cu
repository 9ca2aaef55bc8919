// bench_engine.cu: the `bench-engine` program: end-to-end GPU engine timings in the spirit of
// llama-bench. Loads MODEL (or first writes a synthetic random-weight model of a named config,
// e.g. --synthetic 20b --out /tmp/20b.bin, for machines without the real weights), then times
//   load  : weight upload (from page cache when the file was just written)
//   pp    : --pp-batch S (1) prompts of --pp tokens at once, each in chunks of --pp-chunk (256)
//           rows: steps of S x chunk rows (prefill tok/s)
//   tg    : --tg decode steps at batch 1 (tok/s)
//   batch : --tg decode steps with B sequences per step for each B in --batch (output tok/s);
//           every sequence first gets a random prompt of --decode-pos tokens (default 8), so
//           --decode-pos 1024 times steps whose attention reads ~1k keys per sequence
// Prints one JSON object per line. Usage:
//   bench-engine MODEL [--ctx N] [--pp N] [--pp-chunk N] [--tg N] [--batch 1,16,64]
//                      [--decode-pos P] [--profile pp|decode] [--no-decode-kernels]
//                      [--precision exact|fast] [--moe-fold 0|1] [--split-k 0|1] [--overlap 0|1]
//                      [--wgmma 0|1] [--moe-fused 0|1|2] [--gemm-wgmma 0|1] [--moe-config N] [--kv-block B]
//                      [--pp-batch S] [--step-rows N]
//   --moe-fold 0: precision fast with the MoE grouped GEMM on fp16 weights and per-block scales
//   instead of bf16 weights with the scales folded in (kernels/gpu/moe_plan.h MoeOptions; default
//   1); --split-k 1: the fast GEMM's K split (BackendOptions::gemm_split_k; default 0: slower on
//   an H100, docs/performance.md); --overlap 0|1: launch overlap (BackendOptions::launch_overlap;
//   default on, as run's);
//   --wgmma 0|1: the MoE grouped GEMM on the warp-specialised wgmma kernel (BackendOptions::moe_wgmma;
//   where the build and the card have wgmma, precision fast with folded scales)
//   --moe-fused 0|1|2: decode steps' MoE expert matmuls as one launch, 2 with the router inside it
//   for one-row steps (BackendOptions::moe_decode_fused; NVIDIA; default 0)
//   --gemm-wgmma 0: the dense GEMMs on mma.sync instead of Hopper's wgmma
//   (BackendOptions::gemm_wgmma; default 1: wgmma where the build and the card have it)
//   --moe-config N: the MoE grouped GEMM's configuration (MoeOptions::grouped_config, 0..4;
//   3 and 4 with precision fast only)
//   --kv-block B: the paged KV cache (BackendOptions::kv_block_tokens, B a power of two; as run
//   uses it) with a pool of every slot at --ctx, slot s's blocks a shuffle of the pool (as a
//   long-running server's would be); default 0: the ring layout
//   --step-rows N: rows per device step (BackendOptions::step_rows, 512..4096; default 512); a
//   sequence still has at most 512 rows in one step, so prefill steps grow past 512 rows only
//   with --pp-batch S > 1, decode steps with batches past 512
//   --profile: only one step inside the profiler's range (run under ncu --profile-from-start off):
//   the last prefill chunk (pp) or the first timed decode step of the last batch size (decode)
//   bench-engine --synthetic 20b --out PATH [--write-only] [...]   (--write-only: stop after writing)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/bf16.h"
#include "common/error.h"
#include "backend/engine.h"
#include "backend_gpu/gpu_backend.h"
#include "gpu/ops.h"
#include "model/config.h"
#include "model/model_file.h"

using namespace gptoss;
using Clock = std::chrono::steady_clock;

static double since_s(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Random weights with sane magnitudes: bf16 ~ N(0, scale) (norms around 1), MXFP4 codes random,
// scales 2^-6..2^-3. A 64 MiB pattern per dtype is generated once and repeated (fast for 13 GB).
static void write_synthetic(const std::string& name, const std::string& path) {
  Config c = named_config(name);
  auto plan = tensor_plan(c);
  ModelWriter w(path, c, "gpt-oss-" + name + " (synthetic random weights, bench-engine)", plan);
  std::mt19937_64 rng(1);
  std::normal_distribution<float> nd;
  const size_t pat = size_t(32) << 20;
  std::vector<bf16_t> pat_w(pat), pat_norm(pat);
  for (auto& v : pat_w) v = f32_to_bf16(0.02f * nd(rng));
  for (auto& v : pat_norm) v = f32_to_bf16(1.0f + 0.05f * nd(rng));
  std::vector<uint8_t> pat_blocks(pat), pat_scales(pat);
  for (auto& v : pat_blocks) v = uint8_t(rng());
  for (auto& v : pat_scales) v = uint8_t(121 + rng() % 4);
  for (const auto& [tname, spec] : plan) {
    size_t n = 1;
    for (auto d : spec.second) n *= size_t(d);
    const bool u8 = spec.first == DType::U8;
    const size_t bytes = n * (u8 ? 1 : 2);
    const uint8_t* src = u8 ? (tname.find("scales") != std::string::npos ? pat_scales.data()
                                                                          : pat_blocks.data())
                            : reinterpret_cast<const uint8_t*>(
                                  tname.find("norm") != std::string::npos ? pat_norm.data()
                                                                          : pat_w.data());
    const size_t src_bytes = u8 ? pat : 2 * pat;
    for (size_t off = 0; off < bytes; off += src_bytes)
      w.write_part(tname, off, src, std::min(src_bytes, bytes - off));
  }
  w.finish();
}

int main(int argc, char** argv) {
  return guarded_main("bench-engine", [&] {
    std::string model_path, synthetic, out;
    int ctx = 4096, pp = 512, tg = 128, decode_pos = 8, pp_chunk = 256, pp_batch = 1;
    int step_rows = BackendOptions{}.step_rows;
    std::string profile;  // "", "pp" or "decode": the one step inside the profiler range
    std::string precision;  // "" = the GPU default
    bool write_only = false, decode_kernels = true, moe_fold = true, split_k = false;
    bool overlap = BackendOptions{}.launch_overlap;
    bool wgmma = BackendOptions{}.moe_wgmma, gemm_wgmma = BackendOptions{}.gemm_wgmma;
    int moe_fused = BackendOptions{}.moe_decode_fused;
    int kv_block = 0, moe_config = 0;
    std::vector<int> batches = {1, 16, 64};
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) fail("bench-engine: %s needs a value", a.c_str());
        return argv[++i];
      };
      if (a == "--synthetic") synthetic = next();
      else if (a == "--out") out = next();
      else if (a == "--write-only") write_only = true;
      else if (a == "--no-decode-kernels") decode_kernels = false;
      else if (a == "--ctx") ctx = std::atoi(next().c_str());
      else if (a == "--pp") pp = std::atoi(next().c_str());
      else if (a == "--tg") tg = std::atoi(next().c_str());
      else if (a == "--decode-pos") decode_pos = std::atoi(next().c_str());
      else if (a == "--pp-chunk") pp_chunk = std::atoi(next().c_str());
      else if (a == "--pp-batch") pp_batch = std::atoi(next().c_str());
      else if (a == "--step-rows") step_rows = std::atoi(next().c_str());
      else if (a == "--kv-block") kv_block = std::atoi(next().c_str());
      else if (a == "--moe-config") moe_config = std::atoi(next().c_str());
      else if (a == "--profile") profile = next();
      else if (a == "--precision") precision = next();
      else if (a == "--split-k") {  // 1: the fast GEMM's K split (BackendOptions::gemm_split_k)
        const std::string v = next();
        if (v != "0" && v != "1") fail("bench-engine: --split-k %s: expected 0 or 1", v.c_str());
        split_k = v == "1";
      } else if (a == "--wgmma") {  // the MoE grouped GEMM on wgmma (BackendOptions::moe_wgmma)
        const std::string v = next();
        if (v != "0" && v != "1") fail("bench-engine: --wgmma %s: expected 0 or 1", v.c_str());
        wgmma = v == "1";
      } else if (a == "--moe-fused") {  // decode steps' expert matmuls as one launch
        const std::string v = next();
        if (v != "0" && v != "1" && v != "2") fail("bench-engine: --moe-fused %s: expected 0, 1 or 2", v.c_str());
        moe_fused = v[0] - '0';
      } else if (a == "--gemm-wgmma") {  // 0: the dense GEMMs on mma.sync (BackendOptions::gemm_wgmma)
        const std::string v = next();
        if (v != "0" && v != "1") fail("bench-engine: --gemm-wgmma %s: expected 0 or 1", v.c_str());
        gemm_wgmma = v == "1";
      } else if (a == "--overlap") {  // launch overlap (BackendOptions::launch_overlap)
        const std::string v = next();
        if (v != "0" && v != "1") fail("bench-engine: --overlap %s: expected 0 or 1", v.c_str());
        overlap = v == "1";
      } else if (a == "--moe-fold") {  // 0: fast precision's MoE without folded scales (gpu::MoeOptions)
        const std::string v = next();
        if (v != "0" && v != "1") fail("bench-engine: --moe-fold %s: expected 0 or 1", v.c_str());
        moe_fold = v == "1";
      }
      else if (a == "--batch") {
        batches.clear();
        std::stringstream ss(next());
        std::string t;
        while (std::getline(ss, t, ',')) batches.push_back(std::atoi(t.c_str()));
      } else model_path = a;
    }
    if (!synthetic.empty()) {
      if (out.empty()) fail("bench-engine: --synthetic needs --out PATH");
      auto t0 = Clock::now();
      write_synthetic(synthetic, out);
      std::printf("{\"step\": \"write_synthetic\", \"config\": \"%s\", \"s\": %.2f}\n",
                  synthetic.c_str(), since_s(t0));
      model_path = out;
      if (write_only) return 0;
    }
    if (model_path.empty()) fail("usage: bench-engine MODEL | --synthetic NAME --out PATH");
    if (profile != "" && profile != "pp" && profile != "decode")
      fail("bench-engine: --profile %s: expected pp or decode", profile.c_str());
    if (pp_chunk < 1 || pp_chunk > 512) fail("bench-engine: --pp-chunk %d: expected 1..512", pp_chunk);
    if (pp_batch < 1 || pp_batch > 1024) fail("bench-engine: --pp-batch %d: expected 1..1024", pp_batch);
    if (decode_pos < 8 || decode_pos + 3 + tg > ctx)
      fail("bench-engine: --decode-pos %d: the decode steps need 8 <= P and P + 3 + --tg <= --ctx (%d)",
           decode_pos, ctx);
    ModelFile model(model_path);
    int max_b = 1;
    for (int b : batches) max_b = std::max(max_b, b);
    max_b = std::max(max_b, pp_batch);
    BackendOptions opt;
    opt.ctx = ctx;
    opt.max_slots = max_b;
    opt.decode_kernels = decode_kernels;
    opt.precision = precision;
    opt.moe.fold_scales = moe_fold;
    opt.gemm_split_k = split_k;
    opt.launch_overlap = overlap;
    opt.moe_wgmma = wgmma;
    opt.moe_decode_fused = moe_fused;
    opt.gemm_wgmma = gemm_wgmma;
    opt.step_rows = step_rows;
    opt.moe.grouped_config = moe_config;
    // Paged: slot s's positions [i B, (i + 1) B) in block perm[s * per_seq + i].
    const int per_seq = kv_block > 0 ? (ctx + kv_block - 1) / kv_block : 0;
    std::vector<int32_t> perm(static_cast<size_t>(max_b) * per_seq);
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = int32_t(i);
    std::shuffle(perm.begin(), perm.end(), std::mt19937(7));
    if (kv_block > 0) {
      if (kv_block > 4096) fail("bench-engine: --kv-block %d: expected 1..4096", kv_block);
      opt.kv_block_tokens = kv_block;
      opt.kv_blocks = static_cast<int>(perm.size());
    }
    const auto block_of = [&](int slot, int pos) {
      return kv_block > 0 ? perm[size_t(slot) * per_seq + pos / kv_block] : -1;
    };
    auto t0 = Clock::now();
    auto eng = make_gpu_engine(model, opt);
    std::printf("{\"step\": \"load\", \"model\": \"%s\", \"GB\": %.2f, \"s\": %.2f, \"kv_GiB\": %.2f, "
                "\"moe_fold\": %d, \"split_k\": %d, \"overlap\": %d, \"wgmma\": %d, \"moe_config\": %d, "
                "\"kv_block\": %d, \"gemm_wgmma\": %d}\n",
                model.description().c_str(), model.file_bytes() / 1e9, since_s(t0),
                eng->kv_cache_bytes() / double(1u << 30), moe_fold ? 1 : 0, split_k ? 1 : 0,
                overlap ? 1 : 0, wgmma && gpu::gemm_wgmma_available() ? 1 : 0, moe_config, kv_block,
                gemm_wgmma && !split_k && gpu::gemm_wgmma_available() ? 1 : 0);
    const int V = eng->config().vocab;
    std::vector<float> logits;
    std::mt19937 rng(2);
    // pp: --pp-batch prompts (slots 0..S-1) in chunks of --pp-chunk rows each, logits on their
    // last rows.
    auto run_pp = [&](bool profiled) {
      for (int p0 = 0; p0 < pp; p0 += pp_chunk) {
        std::vector<Row> rows;
        for (int sq = 0; sq < pp_batch; ++sq)
          for (int p = p0; p < std::min(pp, p0 + pp_chunk); ++p)
            rows.push_back(Row{int32_t(rng() % V), sq, p,
                               (p == 0 ? Row::kNewSeq : 0u) | (p == pp - 1 ? Row::kLogits : 0u),
                               block_of(sq, p)});
        // The profiled chunk: the last one, whose rows attend to the most keys.
        const bool prof = profiled && p0 + pp_chunk >= pp;
        if (prof) gpu_profiler_range(true);
        eng->forward(rows, logits);
        if (prof) gpu_profiler_range(false);
      }
    };
    run_pp(false);  // warm-up
    t0 = Clock::now();
    run_pp(profile == "pp");
    double s = since_s(t0);
    if (pp > 0)
      std::printf("{\"step\": \"pp%d\", \"chunk\": %d, \"seqs\": %d, \"step_rows\": %d, "
                  "\"tok_per_s\": %.1f, \"s\": %.3f}\n",
                  pp, pp_chunk, pp_batch, step_rows, double(pp) * pp_batch / s, s);
    std::fflush(stdout);
    for (int B : batches) {
      // Each of B slots gets a prompt of --decode-pos tokens (prefilled in forwards of at most
      // 4096 rows), then tg decode steps of B rows.
      std::vector<Row> rows;
      const int P = decode_pos;
      for (int b = 0; b < B; ++b)
        for (int p = 0; p < P; ++p) {
          rows.push_back(Row{int32_t(rng() % V), b, p,
                             (p == 0 ? Row::kNewSeq : 0u) | (p == P - 1 ? Row::kLogits : 0u),
                             block_of(b, p)});
          if (rows.size() >= 4096 || (b == B - 1 && p == P - 1)) {
            eng->forward(rows, logits);
            rows.clear();
          }
        }
      // Decode steps choose greedily on the device (forward_pick): only B token ids come back,
      // as in `run`; the next inputs stay random tokens so every step does the same work.
      const std::vector<TokenPick> greedy(static_cast<size_t>(B));
      std::vector<int32_t> chosen;
      auto decode = [&](int p) {
        rows.clear();
        for (int b = 0; b < B; ++b)
          rows.push_back(Row{int32_t(rng() % V), b, p, Row::kLogits, block_of(b, p)});
        eng->forward_pick(rows, greedy, chosen);
      };
      for (int w = 0; w < 3; ++w) decode(decode_pos + w);  // graph capture + warm-up
      t0 = Clock::now();
      for (int k = 0; k < tg; ++k) {
        // The profiled step: the first timed step of the last batch size.
        const bool prof = profile == "decode" && k == 0 && B == batches.back();
        if (prof) gpu_profiler_range(true);
        decode(decode_pos + 3 + k);
        if (prof) gpu_profiler_range(false);
      }
      s = since_s(t0);
      std::printf("{\"step\": \"tg%d\", \"batch\": %d, \"steps_per_s\": %.1f, \"tok_per_s\": %.1f, "
                  "\"ms_per_step\": %.3f, \"keys\": %d}\n",
                  tg, B, tg / s, double(tg) * B / s, 1e3 * s / tg, decode_pos + 3 + tg / 2);
      std::fflush(stdout);
    }
    return 0;
  });
}
