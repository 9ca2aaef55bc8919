// gpu_forward.cu: one device step of the GPU backend (gpu_backend_impl.h): the row metadata
// (token, position, slot, prompt tiles) uploaded in one copy from pinned memory, then embedding
// and the layers enqueued on the stream with no host synchronisation (replayed as a graph for each
// distinct (rows, embed) with rows <= kGraphMaxRows); and the LM head on the logit rows.
#include <algorithm>

#include "backend_gpu/gpu_backend_impl.h"

namespace gptoss::gpu_backend {

// The whole forward of one step's layers, enqueued on stream_ (no host synchronisation;
// capturable). Reads the metadata already in d_meta_; leaves the result in d_x_.
void GpuBackend::enqueue_step(int rows, bool embed) {
  const Config& c = cfg_;
  const int H = c.hidden, R = c.qkv_rows();
  const int32_t* d_tok = d_meta_ + kMetaToken * step_rows_;
  const int32_t* d_pos = d_meta_ + kMetaPos * step_rows_;
  const int32_t* d_slot = d_meta_ + kMetaSlot * step_rows_;
  const int32_t* d_skip =
      use_tiles_ && rows >= kMinTileRows ? d_meta_ + kMetaInTile * step_rows_ : nullptr;
  if (embed) gpu::bf16_embed(emb_, d_tok, rows, H, d_x_, stream_);
  if (use_decode_ && rows <= gpu::kDecodeMaxRows) {
    enqueue_decode_layers(rows);
    return;
  }
  // Layer L's attention RMSNorm: layer 0 here, later layers fused into the previous layer's MoE
  // combine (MoeNextNorm, bit-identical to f32_bf16w_rmsnorm).
  gpu::f32_bf16w_rmsnorm(d_x_, layers_[0].attn_norm, d_xn_, rows, H, c.rms_eps, nullptr, stream_);
  for (size_t L = 0; L < layers_.size(); ++L) {
    const LayerW& l = layers_[L];
    gpu::f32_bf16w_matmul(d_xn_, l.qkv_w, l.qkv_b, d_qkv_, rows, H, R, false, stream_, precision_,
                          d_x16_, d_gemm_sem_, gemm_kernel_);
    if (kv_f32_)
      gpu::f32_rope_kv_write(d_qkv_, d_rope_, d_pos, d_slot, rows, c.n_heads, c.n_kv_heads,
                             c.head_dim, static_cast<float*>(l.k_cache),
                             static_cast<float*>(l.v_cache), l.cap, kv_pages(l), stream_);
    else
      gpu::f32_rope_kv_write(d_qkv_, d_rope_, d_pos, d_slot, rows, c.n_heads, c.n_kv_heads,
                             c.head_dim, static_cast<bf16_t*>(l.k_cache),
                             static_cast<bf16_t*>(l.v_cache), l.cap, kv_pages(l), stream_);
    enqueue_attention(l, rows, d_skip);
    gpu::f32_bf16w_matmul(d_att_, l.out_w, l.out_b, d_x_, rows, c.q_dim(), H, true, stream_,
                          precision_, d_x16_, d_gemm_sem_, gemm_kernel_);
    gpu::f32_bf16w_rmsnorm(d_x_, l.mlp_norm, d_xn_, rows, H, c.rms_eps, nullptr, stream_);
    gpu::MoeNextNorm next;
    if (L + 1 < layers_.size()) next = {layers_[L + 1].attn_norm, c.rms_eps, d_xn_};
    gpu::moe_forward(l.moe, d_xn_, rows, d_x_, moe_scratch_, stream_,
                     L + 1 < layers_.size() ? &next : nullptr);
  }
}

gpu::KvPages GpuBackend::kv_pages(const LayerW& l) const {
  if (!l.paged) return {};
  return {d_kv_table_, d_meta_ + kMetaBlock * step_rows_, kv_table_stride_, kv_shift_};
}

// Layer l's attention over its KV cache (already holding this step's keys and values) into
// d_att_: the split-K kernel for every row, then, when d_skip marks rows inside prompt tiles
// (enqueue_step with tiles on), the tiled kernel for those rows. Shared by both step paths.
void GpuBackend::enqueue_attention(const LayerW& l, int rows, const int32_t* d_skip) {
  const Config& c = cfg_;
  const int32_t* d_pos = d_meta_ + kMetaPos * step_rows_;
  const int32_t* d_slot = d_meta_ + kMetaSlot * step_rows_;
  const auto* d_tiles =
      reinterpret_cast<const gpu::AttnTile*>(d_meta_ + kMetaTiles * step_rows_);
  const int32_t* d_ntiles = d_meta_ + kMetaTileCount * step_rows_;
  const gpu::KvPages pages = kv_pages(l);
  const auto run = [&](const auto* kc, const auto* vc, auto sinks, auto tiles) {
    sinks(d_qkv_, kc, vc, l.sinks, d_pos, d_slot, rows, c.n_heads, c.n_kv_heads, c.head_dim,
          l.cap, pages, l.window, l.max_keys, l.kv_chunk, d_partial_, d_att_, stream_, d_skip);
    if (d_skip)
      tiles(d_qkv_, kc, vc, l.sinks, d_pos, d_slot, d_tiles, d_ntiles, max_tiles_for(rows),
            c.n_heads, c.n_kv_heads, c.head_dim, l.cap, pages, l.window, d_att_, stream_);
  };
  if (kv_f32_)
    run(static_cast<const float*>(l.k_cache), static_cast<const float*>(l.v_cache),
        gpu::f32_f32kv_attention_sinks, gpu::f32_f32kv_attention_sinks_tiles);
  else
    run(static_cast<const bf16_t*>(l.k_cache), static_cast<const bf16_t*>(l.v_cache),
        [](auto... a) { gpu::f32_bf16kv_attention_sinks(a...); },
        gpu::f32_bf16kv_attention_sinks_tiles);
}

// The decode path (kernels/gpu/decode.h) for steps of <= gpu::kDecodeMaxRows rows: per layer the
// fused RMSNorm + qkv + RoPE + KV write, the split-K attention (no prompt tiles at these sizes),
// the output projection into the residual, and the MoE block in three kernels (router with top-k,
// first expert matmul + SwiGLU, second + the weighted sum into the residual). Each layer's
// RMSNorms live inside the kernels that consume them, so the residual d_x_ is all that passes
// between layers.
void GpuBackend::enqueue_decode_layers(int rows) {
  const Config& c = cfg_;
  const int32_t* d_pos = d_meta_ + kMetaPos * step_rows_;
  const int32_t* d_slot = d_meta_ + kMetaSlot * step_rows_;
  for (const LayerW& l : layers_) {
    gpu::DecodeQkv q;
    q.x = d_x_;
    q.norm_w = l.attn_norm;
    q.eps = c.rms_eps;
    q.w = l.qkv_w;
    q.bias = l.qkv_b;
    q.rope_cs = d_rope_;
    q.pos = d_pos;
    q.slot = d_slot;
    q.qkv = d_qkv_;
    q.k_cache = l.k_cache;
    q.v_cache = l.v_cache;
    q.kv_f32 = kv_f32_;
    q.rows = rows;
    q.H = c.hidden;
    q.n_heads = c.n_heads;
    q.n_kv = c.n_kv_heads;
    q.head_dim = c.head_dim;
    q.cap = l.cap;
    q.pages = kv_pages(l);
    gpu::f32_bf16w_qkv_rope_decode(q, stream_);
    enqueue_attention(l, rows, nullptr);
    gpu::DecodeMatmul o;
    o.x = d_att_;
    o.w = l.out_w;
    o.bias = l.out_b;
    o.y = d_x_;
    o.rows = rows;
    o.K = c.q_dim();
    o.M = c.hidden;
    o.accumulate = true;
    gpu::f32_bf16w_matmul_decode(o, stream_);
    gpu::moe_forward_decode(l.moe, l.mlp_norm, c.rms_eps, d_x_, rows, moe_decode_scratch_, stream_);
  }
}

int32_t* GpuBackend::next_meta() {
  const int i = meta_next_;
  meta_next_ = (meta_next_ + 1) % kMetaBufs;
  GPU_CHECK(gpuEventSynchronize(meta_ev_[i]));  // its last upload has been done
  return h_meta_ + size_t(i) * kMetaSlices * step_rows_;
}

void GpuBackend::run_step(const int32_t* meta, int rows, bool embed) {
  GPU_CHECK(gpuMemcpyAsync(d_meta_, meta, kMetaSlices * step_rows_ * sizeof(int32_t),
                           gpuMemcpyHostToDevice, stream_));
  GPU_CHECK(gpuEventRecord(meta_ev_[(meta - h_meta_) / (kMetaSlices * step_rows_)], stream_));
  if (!use_graphs_ || rows > kGraphMaxRows) {
    enqueue_step(rows, embed);
    return;
  }
  const auto key = std::make_tuple(rows, embed);
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    if (graphs_.size() >= 512) {  // bound the cache: drop everything, recapture on demand
      GPU_CHECK(gpuStreamSynchronize(stream_));
      for (auto& [k, g] : graphs_) GPU_CHECK(gpuGraphExecDestroy(g));
      graphs_.clear();
    }
    gpuGraph_t graph;
    GPU_CHECK(gpuStreamBeginCapture(stream_));
    try {
      enqueue_step(rows, embed);
    } catch (...) {
      (void)gpuStreamEndCapture(stream_, &graph);
      throw;
    }
    GPU_CHECK(gpuStreamEndCapture(stream_, &graph));
    gpuGraphExec_t exec;
    GPU_CHECK(gpuGraphInstantiate(&exec, graph));
    GPU_CHECK(gpuGraphDestroy(graph));
    it = graphs_.emplace(key, exec).first;
  }
  GPU_CHECK(gpuGraphLaunch(it->second, stream_));
}

// pos, slot and (paged) block slices, and the prompt tiles: runs of >= kMinTileRows consecutive
// positions of one slot, cut into tiles of at most gpu::kAttnTileRows rows; their rows are flagged
// so split-K leaves them alone.
void GpuBackend::fill_tiles(int32_t* meta, std::span<const RowPos> rows) const {
  const int n = static_cast<int>(rows.size());
  for (int i = 0; i < n; ++i) {
    const RowPos& r = rows[size_t(i)];
    if (kv_blocks_ > 0 && (r.block < 0 || r.block >= kv_blocks_))
      fail("KV cache: the row at slot %d position %d names block %d; the pool has blocks [0, %d)",
           r.slot, r.pos, r.block, kv_blocks_);
    meta[kMetaPos * step_rows_ + i] = r.pos;
    meta[kMetaSlot * step_rows_ + i] = r.slot;
    meta[kMetaBlock * step_rows_ + i] = r.block;
  }
  int32_t* skip = meta + kMetaInTile * step_rows_;
  int32_t* tiles = meta + kMetaTiles * step_rows_;
  int n_tiles = 0;
  for (int i = 0; i < n;) {
    int j = i + 1;
    while (j < n && rows[size_t(j)].slot == rows[size_t(i)].slot &&
           rows[size_t(j)].pos == rows[size_t(j - 1)].pos + 1)
      ++j;
    const bool tiled = use_tiles_ && n >= kMinTileRows && j - i >= kMinTileRows;
    for (int k = i; k < j; ++k) skip[k] = tiled ? 1 : 0;
    if (tiled)
      for (int t0 = i; t0 < j; t0 += gpu::kAttnTileRows) {
        tiles[2 * n_tiles] = t0;
        tiles[2 * n_tiles + 1] = std::min(gpu::kAttnTileRows, j - t0);
        ++n_tiles;
      }
    i = j;
  }
  GPTOSS_ASSERT(n_tiles <= max_tiles_for(n));
  meta[kMetaTileCount * step_rows_] = n_tiles;
}

// Final norm (on the logit rows only, gathered) + LM head into d_logits_ [nl, V], enqueued.
void GpuBackend::enqueue_head(const float* x, std::span<const int32_t> logit_rows) {
  GPTOSS_ASSERT(ends_ && logit_rows.size() <= size_t(kHeadRows));
  const int nl = static_cast<int>(logit_rows.size());
  int32_t* meta = next_meta();
  int32_t* lrows = meta + kMetaLogitRow * step_rows_;
  std::copy(logit_rows.begin(), logit_rows.end(), lrows);
  int32_t* d_lrows = d_meta_ + kMetaLogitRow * step_rows_;
  GPU_CHECK(gpuMemcpyAsync(d_lrows, lrows, size_t(nl) * sizeof(int32_t), gpuMemcpyHostToDevice,
                           stream_));
  GPU_CHECK(gpuEventRecord(meta_ev_[(meta - h_meta_) / (kMetaSlices * step_rows_)], stream_));
  enqueue_norm_head(x, d_lrows, nl, norm_, unemb_, cfg_.vocab, d_logits_);
}

// Final RMSNorm of n rows of x (rows d_rows[i], or the first n when null) + `width` rows of an LM
// head w, into logits [n, width]: the decode kernel with the norm fused for <= kDecodeMaxRows rows,
// else RMSNorm + the dense matmul in the backend's precision. enqueue_head and the head split's
// slices (gpu_head_slice.cu) share it, so a slice's logits are the whole head's bit for bit.
void GpuBackend::enqueue_norm_head(const float* x, const int32_t* d_rows, int n, const bf16_t* norm,
                                   const bf16_t* w, int width, float* logits) {
  const Config& c = cfg_;
  if (use_decode_ && n <= gpu::kDecodeMaxRows) {  // RMSNorm fused into the LM head's matmul
    gpu::DecodeMatmul h;
    h.x = x;
    h.row_index = d_rows;
    h.norm_w = norm;
    h.eps = c.rms_eps;
    h.w = w;
    h.y = logits;
    h.rows = n;
    h.K = c.hidden;
    h.M = width;
    gpu::f32_bf16w_matmul_decode(h, stream_);
    return;
  }
  gpu::f32_bf16w_rmsnorm(x, norm, d_xn_, n, c.hidden, c.rms_eps, d_rows, stream_);
  gpu::f32_bf16w_matmul(d_xn_, w, nullptr, logits, n, c.hidden, width, false, stream_, precision_,
                        d_x16_, d_gemm_sem_, gemm_kernel_);
}

}  // namespace gptoss::gpu_backend
