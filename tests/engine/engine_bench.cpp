// engine_bench.cpp: CPU engine speed on a named config's shape with random in-memory weights
// (no model file needed): memory read bandwidth of the host, prefill, batch-1 decode and batched
// decode tok/s. One JSON object per line on stdout. Not a test (timings are not asserted).
//
//   engine_bench [config=20b] [batch=32] [decode_steps=16] [ctx=1024]
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "backend/engine.h"
#include "backend_cpu/cpu_model.h"
#include "model/config.h"

using namespace gptoss;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Owns all buffers; filled in parallel (first touch spreads pages over the threads' memory).
struct Arena {
  std::vector<std::unique_ptr<uint8_t[]>> bufs;
  uint64_t salt = 1;
  size_t bytes = 0;
  // bf16 values of random sign, magnitude in [2^-7, 2^-3) (finite, nothing special).
  const bf16_t* bf16(size_t n, bool around_one = false) {
    auto* p = new uint8_t[n * 2];
    bufs.emplace_back(p);
    bf16_t* h = reinterpret_cast<bf16_t*>(p);
    const uint64_t s = salt++;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) {
      uint64_t r = mix(s * 0x9e3779b97f4a7c15ull + i);
      uint16_t exp = around_one ? 127 : static_cast<uint16_t>(120 + (r >> 8) % 4);
      h[i] = static_cast<bf16_t>(((r & 1) << 15) | (exp << 7) | ((r >> 16) & 0x7f));
    }
    bytes += n * 2;
    return h;
  }
  const uint8_t* u8(size_t n, int lo, int hi) {
    auto* p = new uint8_t[n];
    bufs.emplace_back(p);
    const uint64_t s = salt++;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) {
      uint64_t r = mix(s * 0x9e3779b97f4a7c15ull + i);
      p[i] = static_cast<uint8_t>(hi > lo ? lo + r % (hi - lo + 1) : r);
    }
    bytes += n;
    return p;
  }
};

ModelWeights random_weights(const Config& c, Arena& a) {
  const size_t H = c.hidden, I = c.intermediate, E = c.n_experts, V = c.vocab;
  const size_t R = c.qkv_rows(), Q = c.q_dim();
  ModelWeights w;
  w.config = c;
  w.embedding = a.bf16(V * H);
  w.unembedding = a.bf16(V * H);
  w.norm = a.bf16(H, true);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights L;
    L.attn_norm = a.bf16(H, true);
    L.qkv_w = a.bf16(R * H);
    L.qkv_b = a.bf16(R);
    L.sinks = a.bf16(c.n_heads);
    L.out_w = a.bf16(H * Q);
    L.out_b = a.bf16(H);
    L.mlp_norm = a.bf16(H, true);
    moe_shapes(L.moe, c);
    L.moe.router_w = a.bf16(E * H);
    L.moe.router_b = a.bf16(E);
    L.moe.mlp1_blocks = a.u8(E * 2 * I * H / 2, 0, 0);
    L.moe.mlp1_scales = a.u8(E * 2 * I * H / 32, 118, 122);
    L.moe.mlp1_bias = a.bf16(E * 2 * I);
    L.moe.mlp2_blocks = a.u8(E * H * I / 2, 0, 0);
    L.moe.mlp2_scales = a.u8(E * H * I / 32, 118, 122);
    L.moe.mlp2_bias = a.bf16(E * H);
    w.layers.push_back(L);
  }
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  return guarded_main("engine_bench", [&] {
    const std::string name = argc > 1 ? argv[1] : "20b";
    const int batch = argc > 2 ? std::atoi(argv[2]) : 32;
    const int steps = argc > 3 ? std::atoi(argv[3]) : 16;
    const int ctx = argc > 4 ? std::atoi(argv[4]) : 1024;
    const Config c = named_config(name);
    Arena arena;
    double t0 = now_s();
    ModelWeights w = random_weights(c, arena);
    std::printf("{\"what\":\"weights\",\"config\":\"%s\",\"bytes\":%zu,\"fill_s\":%.2f,\"threads\":%d}\n",
                name.c_str(), arena.bytes, now_s() - t0, omp_get_max_threads());
    std::fflush(stdout);

    // Host read bandwidth: sum all weight bytes as uint64 lanes, in parallel, best of 3.
    {
      double best_gbs = 0;
      for (int rep = 0; rep < 3; ++rep) {
        double t = now_s();
        uint64_t acc = 0;
        size_t bytes = 0;
        // Use the expert blocks of every layer (the biggest tensors) and the LM head.
        std::vector<std::pair<const uint64_t*, size_t>> spans;
        const size_t e1 = static_cast<size_t>(c.n_experts) * 2 * c.intermediate * c.hidden / 2;
        const size_t e2 = static_cast<size_t>(c.n_experts) * c.hidden * c.intermediate / 2;
        for (const auto& L : w.layers) {
          spans.push_back({reinterpret_cast<const uint64_t*>(L.moe.mlp1_blocks), e1 / 8});
          spans.push_back({reinterpret_cast<const uint64_t*>(L.moe.mlp2_blocks), e2 / 8});
        }
        spans.push_back({reinterpret_cast<const uint64_t*>(w.unembedding),
                         static_cast<size_t>(c.vocab) * c.hidden * 2 / 8});
        for (auto& s : spans) {
          const uint64_t* p = s.first;
          const size_t n = s.second;
#pragma omp parallel for schedule(static) reduction(^ : acc)
          for (size_t i = 0; i < n; ++i) acc ^= p[i];
          bytes += n * 8;
        }
        double dt = now_s() - t;
        best_gbs = std::max(best_gbs, bytes / dt / 1e9);
        if (acc == 42) std::printf("#\n");
      }
      std::printf("{\"what\":\"read_bandwidth\",\"GBps\":%.1f}\n", best_gbs);
      std::fflush(stdout);
    }

    BackendOptions opt;
    opt.ctx = ctx;
    opt.max_slots = batch;
    auto eng = make_cpu_engine(w, opt);
    std::printf("{\"what\":\"kv_cache\",\"bytes\":%zu,\"ctx\":%d,\"slots\":%d}\n", eng->kv_cache_bytes(),
                ctx, batch);
    const int V = c.vocab;
    std::vector<float> logits;
    auto tok = [&](int slot, int pos) { return static_cast<int32_t>(mix(slot * 1000003ull + pos) % 199998); };

    // Prefill: one slot, a 128-token chunk.
    {
      const int P = 128;
      std::vector<Row> rows;
      for (int i = 0; i < P; ++i)
        rows.push_back(Row{tok(0, i), 0, i, (i == 0 ? Row::kNewSeq : 0u) | (i == P - 1 ? Row::kLogits : 0u)});
      double t = now_s();
      eng->forward(rows, logits);
      double dt = now_s() - t;
      std::printf("{\"what\":\"prefill\",\"rows\":%d,\"s\":%.3f,\"tok_per_s\":%.1f}\n", P, dt, P / dt);
      std::fflush(stdout);
      // Batch-1 decode continuing slot 0.
      double best = 1e9, total = 0;
      for (int s = 0; s < steps; ++s) {
        std::vector<Row> one{Row{tok(0, P + s), 0, P + s, Row::kLogits}};
        double t1 = now_s();
        eng->forward(one, logits);
        double d = now_s() - t1;
        best = std::min(best, d);
        total += d;
      }
      std::printf("{\"what\":\"decode_b1\",\"steps\":%d,\"mean_ms\":%.2f,\"best_ms\":%.2f,\"tok_per_s\":%.2f}\n",
                  steps, 1e3 * total / steps, 1e3 * best, steps / total);
      std::fflush(stdout);
    }
    // Batched decode: `batch` slots each given a 16-token prompt (one step), then decode steps.
    {
      std::vector<Row> rows;
      for (int s = 0; s < batch; ++s)
        for (int i = 0; i < 16; ++i)
          rows.push_back(Row{tok(s, i), s, i, (i == 0 ? Row::kNewSeq : 0u) | (i == 15 ? Row::kLogits : 0u)});
      double t = now_s();
      eng->forward(rows, logits);
      double dt = now_s() - t;
      std::printf("{\"what\":\"prefill_batched\",\"rows\":%d,\"s\":%.3f,\"tok_per_s\":%.1f}\n",
                  16 * batch, dt, 16 * batch / dt);
      double total = 0;
      for (int st = 0; st < steps; ++st) {
        rows.clear();
        for (int s = 0; s < batch; ++s) rows.push_back(Row{tok(s, 16 + st), s, 16 + st, Row::kLogits});
        double t1 = now_s();
        eng->forward(rows, logits);
        total += now_s() - t1;
      }
      std::printf("{\"what\":\"decode_batched\",\"batch\":%d,\"steps\":%d,\"mean_step_ms\":%.2f,\"tok_per_s\":%.1f}\n",
                  batch, steps, 1e3 * total / steps, batch * steps / total);
      (void)V;
    }
    // Profile of the stages (CpuModel directly, as a pipeline stage would use it): batch-1 and
    // batched decode steps, seconds per part.
    for (int b : {1, batch}) {
      CpuModel model(w, ctx, b, 0, c.n_layers);
      std::vector<int32_t> tokens(b * 16);
      std::vector<RowPos> pos(b * 16);
      for (int s = 0; s < b; ++s)
        for (int i = 0; i < 16; ++i) tokens[s * 16 + i] = tok(s, i), pos[s * 16 + i] = RowPos{s, i};
      std::vector<float> x(tokens.size() * c.hidden), lg(static_cast<size_t>(b) * c.vocab);
      model.embed(tokens, x.data());
      model.run_layers(0, c.n_layers, pos, x.data());
      model.reset_times();
      for (int st = 0; st < steps; ++st) {
        tokens.resize(b);
        pos.resize(b);
        for (int s = 0; s < b; ++s) tokens[s] = tok(s, 16 + st), pos[s] = RowPos{s, 16 + st};
        model.embed(tokens, x.data());
        model.run_layers(0, c.n_layers, pos, x.data());
        model.head(x.data(), b, lg.data());
      }
      const auto t = model.times();
      std::printf("{\"what\":\"profile\",\"batch\":%d,\"ms_per_step\":{\"norm_qkv_rope\":%.2f,\"attention\":%.2f,"
                  "\"out_proj\":%.2f,\"moe\":%.2f,\"moe_router\":%.2f,\"moe_mlp1\":%.2f,\"moe_mlp2\":%.2f,"
                  "\"head\":%.2f}}\n",
                  b, 1e3 * t.norm_qkv_rope_s / steps, 1e3 * t.attention_s / steps,
                  1e3 * t.out_proj_s / steps, 1e3 * t.moe_s / steps, 1e3 * t.moe_router_s / steps,
                  1e3 * t.moe_mlp1_s / steps, 1e3 * t.moe_mlp2_s / steps, 1e3 * t.head_s / steps);
      std::fflush(stdout);
    }
    return 0;
  });
}
