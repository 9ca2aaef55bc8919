// cpu_model.cpp: the CPU forward pass (embed / run_layers / head) over ModelWeights, and
// model_weights() which points ModelWeights into a ModelFile.
#include "backend_cpu/cpu_model.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "common/error.h"
#include "model/model_file.h"

namespace gptoss {

// ============================================================================ weights
ModelWeights model_weights(const ModelFile& m) {
  // Dtypes and shapes come from the schema (model/schema.h), checked when the file was loaded.
  using K = TensorKind;
  auto bf = [&](K kind, int layer = -1) { return m.data<bf16_t>(kind, layer); };
  auto u8 = [&](K kind, int layer) { return m.data<uint8_t>(kind, layer); };
  ModelWeights w;
  w.config = m.config();
  w.embedding = bf(K::Embedding);
  w.norm = bf(K::Norm);
  w.unembedding = bf(K::Unembedding);
  w.layers.resize(w.config.n_layers);
  for (int l = 0; l < w.config.n_layers; ++l) {
    LayerWeights& L = w.layers[l];
    L.attn_norm = bf(K::AttnNorm, l);
    L.qkv_w = bf(K::QkvWeight, l);
    L.qkv_b = bf(K::QkvBias, l);
    L.sinks = bf(K::Sinks, l);
    L.out_w = bf(K::OutWeight, l);
    L.out_b = bf(K::OutBias, l);
    L.mlp_norm = bf(K::MlpNorm, l);
    cpu::MoeWeights& e = L.moe;
    moe_shapes(e, w.config);
    e.router_w = bf(K::RouterWeight, l);
    e.router_b = bf(K::RouterBias, l);
    e.mlp1_blocks = u8(K::Mlp1Blocks, l);
    e.mlp1_scales = u8(K::Mlp1Scales, l);
    e.mlp1_bias = bf(K::Mlp1Bias, l);
    e.mlp2_blocks = u8(K::Mlp2Blocks, l);
    e.mlp2_scales = u8(K::Mlp2Scales, l);
    e.mlp2_bias = bf(K::Mlp2Bias, l);
  }
  return w;
}

void moe_shapes(cpu::MoeWeights& m, const Config& c) {
  m.n_experts = c.n_experts;
  m.top_k = c.experts_per_tok;
  m.hidden = c.hidden;
  m.intermediate = c.intermediate;
  m.swiglu_limit = c.swiglu_limit;
}

// ============================================================================ construction
namespace {
bool is_sliding(const Config& c, int layer) {
  return layer < static_cast<int>(c.sliding.size()) && c.sliding[layer] && c.sliding_window > 0;
}
int layer_cap(const Config& c, int layer, int ctx) {
  return is_sliding(c, layer) ? std::min(c.sliding_window, ctx) : ctx;
}
}  // namespace

size_t CpuModel::kv_cache_bytes_for(const Config& c, int ctx, int max_slots, int first, int last,
                                    int block_tokens, int blocks) {
  size_t total = 0;
  for (int l = first; l < last; ++l) {
    const size_t positions = block_tokens > 0 && !is_sliding(c, l)
                                 ? static_cast<size_t>(blocks) * block_tokens
                                 : static_cast<size_t>(max_slots) * layer_cap(c, l, ctx);
    total += 2 * sizeof(float) * positions * c.kv_dim();
  }
  return total;
}

CpuModel::CpuModel(const ModelWeights& w, int ctx, int max_slots, int first_layer, int last_layer,
                   int block_tokens, int blocks)
    : w_(w), ctx_(ctx), max_slots_(max_slots), first_(first_layer), last_(last_layer),
      block_tokens_(block_tokens), blocks_(blocks) {
  const Config& c = w_.config;
  if (block_tokens < 0 || (block_tokens > 0 && blocks < 1))
    fail("paged KV cache of %d blocks of %d positions: both must be at least 1", blocks,
         block_tokens);
  if (block_tokens > 0) tables_.resize(static_cast<size_t>(std::max(max_slots, 0)));
  if (ctx < 1) fail("context length %d: must be at least 1", ctx);
  if (ctx > c.max_context) fail("context length %d exceeds the model's maximum of %d", ctx, c.max_context);
  if (max_slots < 1) fail("max concurrent sequences %d: must be at least 1", max_slots);
  if (first_layer < 0 || last_layer > c.n_layers || first_layer > last_layer)
    fail("layer range [%d, %d) is not within the model's %d layers", first_layer, last_layer,
         c.n_layers);
  if (c.hidden % 32 || c.intermediate % 32 || c.q_dim() % 8 || c.head_dim % 2)
    fail("model shape (hidden %d, intermediate %d, heads x head_dim %d) not supported by the CPU "
         "kernels: hidden and intermediate must be multiples of 32, heads x head_dim of 8, head_dim even",
         c.hidden, c.intermediate, c.q_dim());
  if (c.n_kv_heads < 1 || c.n_heads % c.n_kv_heads)
    fail("model shape: %d heads is not a multiple of %d kv heads", c.n_heads, c.n_kv_heads);
  if (static_cast<int>(w_.layers.size()) != c.n_layers)
    fail("model weights: %zu layers given, config says %d", w_.layers.size(), c.n_layers);
  rope_ = cpu::rope_yarn_table(c.head_dim, c.rope_theta, c.rope_factor, c.initial_context,
                               c.rope_beta_fast, c.rope_beta_slow);
  kv_bytes_ = kv_cache_bytes_for(c, ctx, max_slots, first_layer, last_layer, block_tokens, blocks);
  cache_.resize(last_layer - first_layer);
  for (int l = first_layer; l < last_layer; ++l) {
    LayerCache& lc = cache_[l - first_layer];
    lc.cap = layer_cap(c, l, ctx);
    lc.window = is_sliding(c, l) ? c.sliding_window : 0;
    lc.paged = block_tokens > 0 && !is_sliding(c, l);
    const size_t n = (lc.paged ? static_cast<size_t>(blocks) * block_tokens
                               : static_cast<size_t>(max_slots) * lc.cap) *
                     c.kv_dim();
    try {
      lc.k.reset(new float[n]);  // not value-initialised: pages are committed when first written
      lc.v.reset(new float[n]);
    } catch (const std::bad_alloc&) {
      fail("KV cache of %.2f GiB (ctx %d, %d sequences, fp32) does not fit in host memory; "
           "lower -c, -b or --kv-tokens",
           kv_bytes_ / 1073741824.0, ctx, max_slots);
    }
  }
}

// ============================================================================ stages
void CpuModel::embed(std::span<const int32_t> tokens, float* x) const {
  cpu::bf16_embed(w_.embedding, tokens.data(), static_cast<int>(tokens.size()), w_.config.hidden, x);
}

void CpuModel::attention(int l, std::span<const RowPos> rows, float* x) {
  const Config& c = w_.config;
  const LayerWeights& L = w_.layers[l];
  LayerCache& lc = cache_[l - first_];
  const int n = static_cast<int>(rows.size());
  const int H = c.hidden, R = c.qkv_rows(), Q = c.q_dim(), KV = c.kv_dim(), hd = c.head_dim;
  const int nh = c.n_heads, nkv = c.n_kv_heads;
  xn_.resize(static_cast<size_t>(n) * H);
  qkv_.resize(static_cast<size_t>(n) * R);
  attn_.resize(static_cast<size_t>(n) * Q);
  o_.resize(static_cast<size_t>(n) * H);
  const int threads = omp_get_max_threads();
  scratch_.resize(static_cast<size_t>(threads) * (ctx_ + 2 * hd));

  double t0 = omp_get_wtime();
  cpu::f32_bf16w_rmsnorm(x, L.attn_norm, xn_.data(), n, H, c.rms_eps);
  cpu::f32_bf16w_matmul(xn_.data(), L.qkv_w, L.qkv_b, qkv_.data(), n, H, R);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    float* cs = scratch_.data() + static_cast<size_t>(omp_get_thread_num()) * (ctx_ + 2 * hd);
    cpu::rope_cos_sin(rope_, rows[i].pos, cs);
    float* q = qkv_.data() + static_cast<size_t>(i) * R;
    cpu::f32_rope_apply(rope_, cs, q, nh);
    cpu::f32_rope_apply(rope_, cs, q + Q, nkv);
  }

  double t1 = omp_get_wtime();
  times_.norm_qkv_rope_s += t1 - t0;
  // Waves: on a ring smaller than the context (sliding layers), a prompt chunk longer than the
  // ring would overwrite keys its earlier rows still need, so the i-th row of every slot goes in
  // wave i: store that wave's k/v, then attend. Full layers never overwrite: one wave.
  std::vector<int32_t> wave(n, 0), per_slot;
  int n_waves = 1;
  if (lc.cap < ctx_) {
    per_slot.assign(max_slots_, 0);
    for (int i = 0; i < n; ++i) {
      wave[i] = per_slot[rows[i].slot]++;
      n_waves = std::max(n_waves, wave[i] + 1);
    }
  }
  const size_t slot_stride = static_cast<size_t>(lc.cap) * KV;
  std::vector<int32_t> members;
  for (int wv = 0; wv < n_waves; ++wv) {
    members.clear();
    for (int i = 0; i < n; ++i)
      if (wave[i] == wv) members.push_back(i);
    for (int i : members) {
      const float* q = qkv_.data() + static_cast<size_t>(i) * R;
      const size_t at =
          lc.paged ? (static_cast<size_t>(rows[i].block) * block_tokens_ + rows[i].pos % block_tokens_) * KV
                   : rows[i].slot * slot_stride + static_cast<size_t>(rows[i].pos % lc.cap) * KV;
      std::memcpy(lc.k.get() + at, q + Q, sizeof(float) * KV);
      std::memcpy(lc.v.get() + at, q + Q + KV, sizeof(float) * KV);
    }
    const int tasks = static_cast<int>(members.size()) * nh;
#pragma omp parallel for schedule(dynamic, 4)
    for (int t = 0; t < tasks; ++t) {
      const int i = members[t / nh], h = t % nh;
      float* sc = scratch_.data() + static_cast<size_t>(omp_get_thread_num()) * (ctx_ + 2 * hd);
      const size_t base = lc.paged ? 0 : rows[i].slot * slot_stride;
      cpu::f32_attention_sinks_head(qkv_.data() + static_cast<size_t>(i) * R + h * hd,
                                    lc.k.get() + base, lc.v.get() + base, lc.cap, nkv, hd,
                                    cpu::gqa_kv_head(h, nh, nkv), rows[i].pos, lc.window,
                                    bf16_to_f32(L.sinks[h]),
                                    attn_.data() + static_cast<size_t>(i) * Q + h * hd, sc,
                                    lc.paged ? tables_[rows[i].slot].data() : nullptr,
                                    block_tokens_);
    }
  }
  double t2 = omp_get_wtime();
  times_.attention_s += t2 - t1;
  cpu::f32_bf16w_matmul(attn_.data(), L.out_w, L.out_b, o_.data(), n, Q, H);
  cpu::f32_add_inplace(x, o_.data(), static_cast<size_t>(n) * H);
  times_.out_proj_s += omp_get_wtime() - t2;
}

// Paged: every row names the block of its position; a slot's table grows as its positions do.
// The rows come checked (SequenceCheck: consecutive positions per slot); the blocks are checked
// here, so a bad block is an error, never a write outside the pool.
void CpuModel::update_block_tables(std::span<const RowPos> rows) {
  for (const RowPos& r : rows) {
    if (r.block < 0 || r.block >= blocks_)
      fail("KV cache: the row at slot %d position %d names block %d; the pool has blocks "
           "[0, %d)",
           r.slot, r.pos, r.block, blocks_);
    std::vector<int32_t>& t = tables_[r.slot];
    const size_t b = static_cast<size_t>(r.pos / block_tokens_);
    if (t.size() <= b) t.resize(b + 1, -1);
    t[b] = r.block;
  }
}

void CpuModel::run_layers(int first, int last, std::span<const RowPos> rows, float* x) {
  GPTOSS_ASSERT(first >= first_ && last <= last_ && first <= last);
  const Config& c = w_.config;
  const int n = static_cast<int>(rows.size());
  if (n == 0) return;
  if (paged()) update_block_tables(rows);
  for (int l = first; l < last; ++l) {
    attention(l, rows, x);
    const LayerWeights& L = w_.layers[l];
    const double t0 = omp_get_wtime();
    xn_.resize(static_cast<size_t>(n) * c.hidden);
    cpu::f32_bf16w_rmsnorm(x, L.mlp_norm, xn_.data(), n, c.hidden, c.rms_eps);
    cpu::f32_mf4w_moe(L.moe, xn_.data(), n, x, moe_);
    times_.moe_s += omp_get_wtime() - t0;
  }
}

void CpuModel::head(const float* x, int rows, float* logits) {
  const Config& c = w_.config;
  const double t0 = omp_get_wtime();
  xn_.resize(static_cast<size_t>(rows) * c.hidden);
  cpu::f32_bf16w_rmsnorm(x, w_.norm, xn_.data(), rows, c.hidden, c.rms_eps);
  cpu::f32_bf16w_matmul(xn_.data(), w_.unembedding, nullptr, logits, rows, c.hidden, c.vocab);
  times_.head_s += omp_get_wtime() - t0;
}

void CpuModel::head_slice(const float* x, int rows, int v0, int v1, float* logits) {
  const Config& c = w_.config;
  GPTOSS_ASSERT(0 <= v0 && v0 <= v1 && v1 <= c.vocab);
  if (v0 == v1 || rows == 0) return;
  const double t0 = omp_get_wtime();
  xn_.resize(static_cast<size_t>(rows) * c.hidden);
  cpu::f32_bf16w_rmsnorm(x, w_.norm, xn_.data(), rows, c.hidden, c.rms_eps);
  cpu::f32_bf16w_matmul(xn_.data(), w_.unembedding + static_cast<size_t>(v0) * c.hidden, nullptr,
                        logits, rows, c.hidden, v1 - v0);
  times_.head_s += omp_get_wtime() - t0;
}

}  // namespace gptoss
