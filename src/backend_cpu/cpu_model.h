// cpu_model.h: the CPU forward pass as stages the pipeline can split across ranks:
//   embed (token ids -> residual stream), run_layers [first, last) (attention + MoE, using and
//   updating the KV cache of those layers only), head (final norm + LM head -> logits).
// Weights are plain pointers (ModelWeights), filled from a ModelFile in production and from
// in-memory buffers in tests. The residual stream is fp32 [rows, hidden].
//
// KV cache: fp32 (this is the reference backend), per layer and slot k, v: [cap, kv_heads,
// head_dim]; cap = sliding_window on sliding layers (a ring: position j at index j % window),
// cap = ctx on full layers. Paged (block_tokens > 0): the full layers keep one pool each,
// [blocks, block_tokens, kv_heads, head_dim], shared by every slot; a row's RowPos::block says
// where its position goes, and each slot's block table is kept from the rows seen (the sliding
// layers keep their per-slot rings). Only layers [first_layer, last_layer) have a cache.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/bf16.h"
#include "cpu/ops.h"
#include "common/types.h"
#include "model/config.h"

namespace gptoss {

class ModelFile;

struct LayerWeights {
  const bf16_t* attn_norm = nullptr;     // [H]
  const bf16_t* qkv_w = nullptr;         // [R, H], rows [Q | K | V]
  const bf16_t* qkv_b = nullptr;         // [R]
  const bf16_t* sinks = nullptr;         // [heads]
  const bf16_t* out_w = nullptr;         // [H, Q]
  const bf16_t* out_b = nullptr;         // [H]
  const bf16_t* mlp_norm = nullptr;      // [H]
  cpu::MoeWeights moe;                   // router + experts (its shapes: moe_shapes)
};

// The MoE block's shape fields from the config (the weight pointers are left alone).
void moe_shapes(cpu::MoeWeights& m, const Config& c);

struct ModelWeights {
  Config config;
  const bf16_t* embedding = nullptr;    // [V, H]
  std::vector<LayerWeights> layers;     // [n_layers]
  const bf16_t* norm = nullptr;         // [H]
  const bf16_t* unembedding = nullptr;  // [V, H]
};

// Pointers into the mapped file, by schema kind (model/schema.h; dtypes and shapes checked at
// load). model must outlive the result.
ModelWeights model_weights(const ModelFile& model);

class CpuModel {
 public:
  // Layers [first_layer, last_layer) get a KV cache of `ctx` positions x `max_slots` slots, or,
  // with block_tokens > 0, the full layers a pool of `blocks` blocks of block_tokens positions.
  // Throws Error on bad options. The cache memory is reserved, not touched, until used.
  CpuModel(const ModelWeights& w, int ctx, int max_slots, int first_layer, int last_layer,
           int block_tokens = 0, int blocks = 0);

  const Config& config() const { return w_.config; }
  int ctx() const { return ctx_; }
  int max_slots() const { return max_slots_; }
  size_t kv_cache_bytes() const { return kv_bytes_; }
  // Bytes a cache of these options would take for layers [first, last) (for printing / planning).
  static size_t kv_cache_bytes_for(const Config& c, int ctx, int max_slots, int first, int last,
                                   int block_tokens = 0, int blocks = 0);
  bool paged() const { return block_tokens_ > 0; }
  int blocks() const { return blocks_; }  // in each full layer's pool (paged)

  // x[n, :] = embedding[tokens[n]]. x: [rows, H].
  void embed(std::span<const int32_t> tokens, float* x) const;

  // Runs layers [first, last) (within the constructed range) on x [rows, H] in place. Rows of one
  // slot must come in increasing consecutive positions (prompt chunk order); each row attends to
  // its slot's positions <= its own. Positions/slots are NOT validated here (the engine does it);
  // preconditions: 0 <= slot < max_slots, 0 <= pos < ctx.
  void run_layers(int first, int last, std::span<const RowPos> rows, float* x);

  // logits[i, :] = unembedding . rmsnorm(x[i]) for the rows given (x: [rows, H], logits:
  // [rows, V]).
  void head(const float* x, int rows, float* logits);
  // The same for ids [v0, v1) only (the pipeline's head split): logits [rows, v1 - v0]. Equal,
  // bit for bit, to those columns of head()'s logits.
  void head_slice(const float* x, int rows, int v0, int v1, float* logits);

  // Wall seconds spent per part since construction (or reset_times()), for profiling.
  struct Times {
    double norm_qkv_rope_s = 0, attention_s = 0, out_proj_s = 0, moe_s = 0, head_s = 0;
    double moe_router_s = 0, moe_mlp1_s = 0, moe_mlp2_s = 0;  // parts of moe_s
  };
  Times times() const {
    Times t = times_;
    t.moe_router_s = moe_.router_s;
    t.moe_mlp1_s = moe_.mlp1_s;
    t.moe_mlp2_s = moe_.mlp2_s;
    return t;
  }
  void reset_times() {
    times_ = Times{};
    moe_.router_s = moe_.mlp1_s = moe_.mlp2_s = moe_.total_s = 0;
  }

 private:
  void attention(int layer, std::span<const RowPos> rows, float* x);
  void update_block_tables(std::span<const RowPos> rows);

  ModelWeights w_;
  int ctx_, max_slots_, first_, last_;
  int block_tokens_ = 0, blocks_ = 0;  // paged full layers (0: not paged)
  std::vector<std::vector<int32_t>> tables_;  // paged: [slot] -> block of positions [iB, (i+1)B)
  size_t kv_bytes_ = 0;
  cpu::RopeTable rope_;
  // Per layer in [first_, last_): k and v caches [max_slots, cap, kv_heads, head_dim].
  struct LayerCache {
    int cap = 0;
    int window = 0;  // 0 = full attention
    bool paged = false;  // a pool of blocks (full layers of a paged cache)
    std::unique_ptr<float[]> k, v;
  };
  std::vector<LayerCache> cache_;
  // Scratch (grown as needed).
  std::vector<float> xn_, qkv_, attn_, o_, scratch_;
  cpu::MoeScratch moe_;
  Times times_;
};

}  // namespace gptoss
