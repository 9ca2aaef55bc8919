// gpu_setup.cu: the GPU backend's construction (gpu_backend_impl.h): which tensors this backend
// needs, the memory check before any large allocation, the weight upload (one copy per file range
// through two pinned staging buffers), the KV cache, the RoPE table and the step buffers; and the
// destructor.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backend_gpu/gpu_backend_impl.h"
#include "cpu/ops.h"

namespace gptoss::gpu_backend {

namespace {
constexpr size_t kStagingBytes = size_t(64) << 20;

template <class T>
T* dalloc(size_t count) {
  void* p = nullptr;
  GPU_CHECK(gpuMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)));
  return static_cast<T*>(p);
}
}  // namespace

const uint8_t* GpuBackend::dev_ptr(const TensorInfo& t) const {
  for (const WeightRange& r : ranges_)
    if (t.offset >= r.lo && t.offset + t.bytes <= r.hi) return d_weights_ + r.dev + (t.offset - r.lo);
  fail("gpu engine: tensor %s is not on this GPU (layers %d..%d)", t.name.c_str(), first_,
       last_ - 1);
}

GpuBackend::GpuBackend(const ModelFile& model, const BackendOptions& opt, int first, int last,
                     bool ends)
    : cfg_(model.config()), first_(first), last_(last), ends_(ends), device_(opt.device),
      ctx_(opt.ctx), slots_(opt.max_slots) {
  gpu::require_device();
  model_ = &model;  // a rank without the LM head reads its head-split slice from it (gpu_head_slice.cu)
  const Config& c = cfg_;
  if (c.head_dim != gpu::kAttnHeadDim)
    fail("%s: the GPU backend supports head_dim %d only (model has %d)", model.path().c_str(),
         gpu::kAttnHeadDim, c.head_dim);
  if (c.n_heads % c.n_kv_heads != 0 || c.n_heads / c.n_kv_heads > gpu::kAttnMaxGroup)
    fail("%s: the GPU backend supports up to %d query heads per kv head (model: %d / %d)",
         model.path().c_str(), gpu::kAttnMaxGroup, c.n_heads, c.n_kv_heads);
  if (c.hidden % 32 != 0 || c.intermediate % 32 != 0)
    fail("%s: the GPU backend needs hidden and intermediate sizes divisible by 32",
         model.path().c_str());
  if (ctx_ < 1 || ctx_ > c.max_context)
    fail("context %d out of range [1, %d] for %s", ctx_, c.max_context, model.path().c_str());
  if (slots_ < 0) fail("max_slots must be >= 1, or 0 = as many as fit (got %d)", slots_);
  if (opt.step_rows < kHeadRows || opt.step_rows > kMaxStepRows)
    fail("--step-rows %d: expected rows per device step in [%d, %d]", opt.step_rows, kHeadRows,
         kMaxStepRows);
  step_rows_ = opt.step_rows;
  use_graphs_ = opt.gpu_graphs;
  use_tiles_ = opt.attn_tiles;
  use_decode_ = opt.decode_kernels;
  gpu::set_launch_overlap(opt.launch_overlap);
  if (opt.kv_cache != "" && opt.kv_cache != "bf16" && opt.kv_cache != "f32")
    fail("--kv-cache %s: expected bf16 or f32", opt.kv_cache.c_str());
  kv_f32_ = opt.kv_cache == "f32";
  if (opt.precision != "" && opt.precision != "exact" && opt.precision != "fast")
    fail("--precision %s: expected exact or fast", opt.precision.c_str());
  precision_ = (opt.precision.empty() ? std::string(kGpuDefaultPrecision) : opt.precision) == "fast"
                   ? gpu::Precision::fast
                   : gpu::Precision::exact;
  // wgmma where the build and the card have it and K is not split (the split is mma.sync's).
  gemm_kernel_ = opt.gemm_wgmma && !opt.gemm_split_k && gpu::gemm_wgmma_available() ? gpu::GemmKernel::wgmma
                                                                                   : gpu::GemmKernel::mma;

  if (first_ < 0 || last_ > c.n_layers || first_ >= last_)
    fail("gpu engine: layers [%d, %d) out of range for %d layers", first_, last_, c.n_layers);
  int n_dev = 0;
  GPU_CHECK(gpuGetDeviceCount(&n_dev));
  if (device_ < 0 || device_ >= n_dev)
    fail("gpu engine: device %d out of range (%d visible)", device_, n_dev);
  GPU_CHECK(gpuSetDevice(device_));
  gpuDeviceProp prop;
  GPU_CHECK(gpuGetDeviceProperties(&prop, device_));

  // ---- sizes and the memory check (before any large allocation) ----
  // The tensors this engine needs, packed as file ranges (see WeightRange).
  std::vector<const TensorInfo*> needed;
  for (const auto& t : model.tensors()) {
    bool mine = ends_ && (t.name == "embedding" || t.name == "norm" || t.name == "unembedding");
    if (t.name.rfind("layers.", 0) == 0) {
      const int L = std::atoi(t.name.c_str() + 7);
      mine = L >= first_ && L < last_;
    }
    if (mine) needed.push_back(&t);
  }
  std::sort(needed.begin(), needed.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  size_t weight_bytes = 0;
  for (const TensorInfo* t : needed) {
    if (!ranges_.empty() && t->offset <= ranges_.back().hi + kRangeGap) {
      ranges_.back().hi = std::max(ranges_.back().hi, t->offset + t->bytes);
      continue;
    }
    if (!ranges_.empty()) weight_bytes += ranges_.back().hi - ranges_.back().lo;
    weight_bytes = (weight_bytes + 255) / 256 * 256;
    ranges_.push_back({t->offset, t->offset + t->bytes, weight_bytes});
  }
  if (!ranges_.empty()) weight_bytes += ranges_.back().hi - ranges_.back().lo;
  layers_.resize(static_cast<size_t>(last_ - first_));
  const int kv_dim = c.kv_dim();
  // Paged (kv_block_tokens > 0): the full layers' positions live in the pool, in blocks of a
  // power of two positions (the kernels' table lookup is a shift and a mask).
  const int kv_block = opt.kv_block_tokens;
  if (kv_block < 0 || opt.kv_blocks < 0)
    fail("gpu engine: KV blocks of %d positions, %d blocks", kv_block, opt.kv_blocks);
  if (kv_block > 0) {
    if ((kv_block & (kv_block - 1)) != 0)
      fail("--kv-block %d: the GPU backend pages its KV cache in blocks of a power of two "
           "positions (16, 32, 64, ...)", kv_block);
    while ((1 << kv_shift_) < kv_block) ++kv_shift_;
    kv_table_stride_ = (ctx_ + kv_block - 1) / kv_block;
  }
  size_t kv_elems_per_slot = 0, kv_elems_per_block = 0;  // ring layers per slot; pool per block
  for (int L = first_; L < last_; ++L) {
    LayerW& l = layers_[static_cast<size_t>(L - first_)];
    const bool sliding = c.sliding[static_cast<size_t>(L)] != 0 && c.sliding_window > 0;
    l.window = sliding ? c.sliding_window : 0;
    l.cap = sliding ? std::min(ctx_, c.sliding_window + kSeqStepRows) : ctx_;
    l.max_keys = sliding ? std::min(l.cap, c.sliding_window) : l.cap;
    l.kv_chunk = sliding ? 64 : std::max(128, ((ctx_ + 31) / 32 + 63) / 64 * 64);
    l.paged = kv_block > 0 && !sliding;
    if (l.paged)
      kv_elems_per_block += 2ull * kv_block * kv_dim;
    else
      kv_elems_per_slot += 2ull * l.cap * kv_dim;
  }
  const size_t kv_elem_bytes = kv_f32_ ? sizeof(float) : sizeof(bf16_t);
  const size_t kv_slot_bytes = kv_elems_per_slot * kv_elem_bytes;
  const size_t kv_block_bytes = kv_elems_per_block * kv_elem_bytes;
  const size_t seq_blocks = size_t(kv_table_stride_);  // blocks of one sequence at ctx
  const size_t table_slot_bytes = seq_blocks * sizeof(int32_t);
  const int H = c.hidden, R = c.qkv_rows(), Q = c.q_dim(), V = c.vocab;
  const size_t logit_floats = ends_ ? size_t(kHeadRows) * V : 0;
  size_t partial_floats = 0;
  for (const auto& l : layers_)
    partial_floats = std::max(partial_floats,
                              gpu::attention_partial_floats(c.n_heads, l.max_keys, l.kv_chunk));
  const size_t act_bytes =
      sizeof(float) * (size_t(step_rows_) * (2 * H + R + Q) + logit_floats + partial_floats +
                       size_t(ctx_) * c.head_dim) +
      size_t(kMetaSlices) * step_rows_ * sizeof(int32_t) +
      size_t(step_rows_) * c.experts_per_tok * (H + c.intermediate) * sizeof(float) * 2;
  size_t free_b = 0, total_b = 0;
  GPU_CHECK(gpuMemGetInfo(&free_b, &total_b));
  const size_t reserve = size_t(512) << 20;
  const size_t fixed = weight_bytes + act_bytes + reserve;
  const size_t avail = free_b > fixed ? free_b - fixed : 0;
  // Bytes of one sequence at the full context: its ring layers, its table, its blocks.
  const size_t seq_bytes = kv_slot_bytes + table_slot_bytes + seq_blocks * kv_block_bytes;
  if (slots_ == 0) {  // as many sequences as fit, at most opt.max_auto_slots
    // Unpaged: each at the full context. Paged: each holding half of it on average (the
    // scheduler admits a sequence only when the pool has the blocks it can need, so longer ones
    // run fewer at a time rather than failing), or, with the pool given (--kv-tokens), what the
    // memory beside that pool holds of the slots' rings and table.
    const size_t pool_given = kv_block > 0 ? size_t(opt.kv_blocks) * kv_block_bytes : 0;
    const size_t plan = kv_block > 0 && opt.kv_blocks > 0
                            ? kv_slot_bytes + table_slot_bytes
                        : kv_block > 0
                            ? kv_slot_bytes + table_slot_bytes + (seq_blocks + 1) / 2 * kv_block_bytes
                            : kv_slot_bytes;
    const size_t room = avail > pool_given ? avail - pool_given : 0;
    const size_t fit = avail >= seq_bytes && room >= plan ? std::max<size_t>(1, room / std::max<size_t>(plan, 1)) : 0;
    slots_ = static_cast<int>(std::min<size_t>(fit, size_t(opt.max_auto_slots)));
    if (slots_ < 1)
      fail("GPU %s: the model needs %.2f GiB (weights %.2f, KV cache %.2f for one sequence of ctx "
           "%d, buffers %.2f, reserve 0.5), %.2f GiB free; lower -c",
           prop.name, (fixed + seq_bytes) / kGiB, weight_bytes / kGiB, seq_bytes / kGiB, ctx_,
           act_bytes / kGiB, free_b / kGiB);
  }
  if (kv_block > 0) {
    // The pool: the blocks asked for, else what memory holds beyond the slots' ring layers and
    // table, at most every slot at the full context; at least one sequence at ctx (the
    // scheduler's rule).
    const size_t per_slot = kv_slot_bytes + table_slot_bytes;
    const size_t most = size_t(slots_) * seq_blocks;
    size_t blocks = opt.kv_blocks > 0 ? size_t(opt.kv_blocks) : most;
    if (opt.kv_blocks == 0 && kv_block_bytes > 0) {
      const size_t left = avail > size_t(slots_) * per_slot ? avail - size_t(slots_) * per_slot : 0;
      blocks = std::min(most, left / kv_block_bytes);
    }
    blocks = std::min<size_t>(blocks, size_t(INT32_MAX));
    if (blocks < seq_blocks)
      fail("GPU %s: %d slots' KV cache leaves room for %zu blocks of %d positions, fewer than one "
           "sequence of ctx %d needs (%zu); %.2f GiB free (weights %.2f, buffers %.2f, reserve "
           "0.5); lower -c or -b",
           prop.name, slots_, blocks, kv_block, ctx_, seq_blocks, free_b / kGiB,
           weight_bytes / kGiB, act_bytes / kGiB);
    kv_blocks_ = static_cast<int>(blocks);
  }
  kv_bytes_ = (kv_slot_bytes + (kv_block > 0 ? table_slot_bytes : 0)) * size_t(slots_) +
              size_t(kv_blocks_) * kv_block_bytes;
  const size_t need = weight_bytes + kv_bytes_ + act_bytes + reserve;
  if (need > free_b)
    fail("GPU %s: the model needs %.2f GiB (weights %.2f, KV cache %.2f for %s, buffers %.2f, "
         "reserve 0.5), %.2f GiB free; lower -c or -b%s",
         prop.name, need / kGiB, weight_bytes / kGiB, kv_bytes_ / kGiB,
         kv_block > 0 ? strfmt("%d slots and a pool of %d x %d positions", slots_, kv_blocks_,
                               kv_block).c_str()
                      : strfmt("ctx %d x %d slots", ctx_, slots_).c_str(),
         act_bytes / kGiB, free_b / kGiB, kv_block > 0 ? " or --kv-tokens" : "");

  GPU_CHECK(gpuStreamCreateNonBlocking(&stream_));
  const auto t0 = std::chrono::steady_clock::now();
  upload_weights(needed);
  const double upload_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // ---- weight pointers (by schema kind: model/schema.h; dtypes and shapes checked at load) ----
  const int E = c.n_experts, I = c.intermediate;
  auto P = [&](TensorKind kind, int layer = -1) {
    return reinterpret_cast<const bf16_t*>(dev_ptr(model.tensor(kind, layer)));
  };
  auto P8 = [&](TensorKind kind, int layer) {
    return reinterpret_cast<const uint8_t*>(dev_ptr(model.tensor(kind, layer)));
  };
  if (ends_) {
    emb_ = P(TensorKind::Embedding);
    norm_ = P(TensorKind::Norm);
    unemb_ = P(TensorKind::Unembedding);
  }
  d_kv_ = dalloc<uint8_t>(kv_bytes_);
  size_t kv_off = 0;
  for (int L = first_; L < last_; ++L) {
    LayerW& l = layers_[static_cast<size_t>(L - first_)];
    l.attn_norm = P(TensorKind::AttnNorm, L);
    l.qkv_w = P(TensorKind::QkvWeight, L);
    l.qkv_b = P(TensorKind::QkvBias, L);
    l.sinks = P(TensorKind::Sinks, L);
    l.out_w = P(TensorKind::OutWeight, L);
    l.out_b = P(TensorKind::OutBias, L);
    l.mlp_norm = P(TensorKind::MlpNorm, L);
    gpu::MoeGpuWeights& m = l.moe;
    m.n_experts = E, m.top_k = c.experts_per_tok, m.hidden = H, m.intermediate = I;
    m.swiglu_limit = c.swiglu_limit;
    m.router_w = P(TensorKind::RouterWeight, L);
    m.router_b = P(TensorKind::RouterBias, L);
    m.mlp1_blocks = P8(TensorKind::Mlp1Blocks, L);
    m.mlp1_scales = P8(TensorKind::Mlp1Scales, L);
    m.mlp1_bias = P(TensorKind::Mlp1Bias, L);
    m.mlp2_blocks = P8(TensorKind::Mlp2Blocks, L);
    m.mlp2_scales = P8(TensorKind::Mlp2Scales, L);
    m.mlp2_bias = P(TensorKind::Mlp2Bias, L);
    const size_t n = (l.paged ? size_t(kv_blocks_) * kv_block : size_t(slots_) * l.cap) * kv_dim *
                     kv_elem_bytes;
    l.k_cache = d_kv_ + kv_off;
    l.v_cache = d_kv_ + kv_off + n;
    kv_off += 2 * n;
  }
  // Unwritten cache positions and table entries are never read (a row sees only positions its
  // sequence wrote), but zero them once so a bug reads zeros, not garbage from a previous process.
  GPU_CHECK(gpuMemsetAsync(d_kv_, 0, kv_off, stream_));
  if (kv_blocks_ > 0) {
    d_kv_table_ = reinterpret_cast<int32_t*>(d_kv_ + kv_off);  // the tail of the allocation
    GPU_CHECK(gpuMemsetAsync(d_kv_table_, 0, size_t(slots_) * table_slot_bytes, stream_));
  }

  // ---- RoPE table: exactly the CPU twin's cos/sin per position ----
  {
    cpu::RopeTable rt = cpu::rope_yarn_table(c.head_dim, c.rope_theta, c.rope_factor,
                                             c.initial_context, c.rope_beta_fast,
                                             c.rope_beta_slow);
    std::vector<float> cs(size_t(ctx_) * c.head_dim);
    for (int p = 0; p < ctx_; ++p) cpu::rope_cos_sin(rt, p, cs.data() + size_t(p) * c.head_dim);
    d_rope_ = dalloc<float>(cs.size());
    GPU_CHECK(gpuMemcpy(d_rope_, cs.data(), cs.size() * sizeof(float), gpuMemcpyHostToDevice));
  }

  d_x_ = dalloc<float>(size_t(step_rows_) * H);
  d_xn_ = dalloc<float>(size_t(step_rows_) * H);
  d_qkv_ = dalloc<float>(size_t(step_rows_) * R);
  d_att_ = dalloc<float>(size_t(step_rows_) * Q);
  if (precision_ == gpu::Precision::fast) {
    d_x16_ = dalloc<bf16_t>(size_t(step_rows_) * std::max(H, Q));
    if (opt.gemm_split_k) {  // without the semaphores every GEMM runs one split
      d_gemm_sem_ = dalloc<uint32_t>(gpu::kGemmSemSlots);  // zeroed once; each GEMM leaves it so
      GPU_CHECK(gpuMemsetAsync(d_gemm_sem_, 0, gpu::kGemmSemSlots * sizeof(uint32_t), stream_));
    }
  }
  d_partial_ = dalloc<float>(partial_floats);
  GPU_CHECK(gpuMemset(d_partial_, 0, partial_floats * sizeof(float)));  // the merge's tickets
  d_logits_ = dalloc<float>(logit_floats);
  d_meta_ = dalloc<int32_t>(kMetaSlices * step_rows_);
  GPU_CHECK(gpuHostAlloc(reinterpret_cast<void**>(&h_meta_),
                         kMetaBufs * kMetaSlices * step_rows_ * sizeof(int32_t)));
  for (auto& e : meta_ev_) GPU_CHECK(gpuEventCreateNoTiming(&e));
  d_tokens_ = dalloc<int32_t>(kHeadRows);
  GPU_CHECK(gpuHostAlloc(reinterpret_cast<void**>(&h_tokens_), kHeadRows * sizeof(int32_t)));
  d_picks_ = dalloc<TokenPick>(kHeadRows);
  GPU_CHECK(gpuHostAlloc(reinterpret_cast<void**>(&h_picks_), kHeadRows * sizeof(TokenPick)));
  if (ends_) pick_scratch_ = gpu::pick_scratch_create(kHeadRows, V);
  gpu::MoeOptions moe_opt = opt.moe;
  moe_opt.fast = precision_ == gpu::Precision::fast;
  if (moe_opt.fast && moe_opt.fold_scales) {
    // The folded-scale grouped GEMM (kernels/gpu/moe_plan.h MoeOptions::fold_scales) is exact
    // only for E8M0 scales <= kMoeFoldMaxScale; a checkpoint with larger ones takes the fp16 path.
    int most = 0;
    for (const LayerW& l : layers_) most = std::max(most, gpu::moe_max_scale(l.moe, stream_));
    if (most > gpu::kMoeFoldMaxScale) {
      moe_opt.fold_scales = false;
      std::fprintf(stderr, "gpu %d: an MoE weight scale is 2^%d (> 2^%d): the batched MoE keeps "
                   "fp16 weights with per-block scales\n", device_, most - 127, gpu::kMoeFoldMaxScale - 127);
    }
  }
  // The warp-specialised wgmma grouped GEMM where the build and the card have wgmma (the same
  // check as the dense GEMM's) and the arithmetic is the folded-scale one it implements.
  if (opt.moe_wgmma && moe_opt.fast && moe_opt.fold_scales && gpu::gemm_wgmma_available()) moe_opt.wgmma = true;
  moe_scratch_ = gpu::moe_scratch_create(layers_[0].moe, step_rows_, moe_opt);
  if (use_decode_) {
    moe_decode_scratch_ = gpu::moe_decode_scratch_create(layers_[0].moe, gpu::kDecodeMaxRows);
    if (opt.moe_decode_fused != 0) gpu::moe_decode_use_fused(moe_decode_scratch_, opt.moe_decode_fused);
  }
  GPU_CHECK(gpuStreamSynchronize(stream_));

  const std::string what =
      first_ == 0 && last_ == c.n_layers && ends_
          ? std::string("weights")
          : strfmt("layers %d..%d%s", first_, last_ - 1, ends_ ? " + embedding/head" : "");
  std::fprintf(stderr,
               "gpu %d: %s (%s), %s %.2f GiB uploaded in %.2f s (%.1f GB/s), KV cache %.2f GiB "
               "(%s, %s), precision %s, graphs %s\n",
               device_, prop.name, GPU_RT_NAME, what.c_str(), weight_bytes / kGiB, upload_s,
               weight_bytes / 1e9 / std::max(upload_s, 1e-9), kv_bytes_ / kGiB,
               kv_f32_ ? "f32" : "bf16",
               kv_blocks_ > 0 ? strfmt("%d slots, a pool of %d blocks of %d positions, ctx %d",
                                       slots_, kv_blocks_, kv_block, ctx_).c_str()
                              : strfmt("ctx %d x %d slots", ctx_, slots_).c_str(),
               precision_ == gpu::Precision::fast ? "fast" : "exact", use_graphs_ ? "on" : "off");
}

// One copy per weight range: mmap -> pinned staging (host memcpy) -> device (async), two staging
// buffers alternating so the host copy of one overlaps the DMA of the other.
void GpuBackend::upload_weights(const std::vector<const TensorInfo*>& need) {
  size_t bytes = 0;
  for (const WeightRange& r : ranges_) bytes = std::max(bytes, r.dev + (r.hi - r.lo));
  const uint8_t* file_base = need.empty() ? nullptr : need[0]->data - need[0]->offset;
  d_weights_ = dalloc<uint8_t>(bytes);
  uint8_t* staging[2] = {nullptr, nullptr};
  gpuEvent_t done[2];
  for (int i = 0; i < 2; ++i) {
    GPU_CHECK(gpuHostAlloc(reinterpret_cast<void**>(&staging[i]), kStagingBytes));
    GPU_CHECK(gpuEventCreate(&done[i]));
  }
  int b = 0;
  for (const WeightRange& r : ranges_)
    for (uint64_t off = r.lo; off < r.hi; off += kStagingBytes, b ^= 1) {
      const size_t n = std::min<uint64_t>(kStagingBytes, r.hi - off);
      GPU_CHECK(gpuEventSynchronize(done[b]));  // this buffer's previous DMA finished
      std::memcpy(staging[b], file_base + off, n);
      GPU_CHECK(gpuMemcpyAsync(d_weights_ + r.dev + (off - r.lo), staging[b], n,
                               gpuMemcpyHostToDevice, stream_));
      GPU_CHECK(gpuEventRecord(done[b], stream_));
    }
  GPU_CHECK(gpuStreamSynchronize(stream_));
  for (int i = 0; i < 2; ++i) {
    GPU_CHECK(gpuEventDestroy(done[i]));
    GPU_CHECK(gpuFreeHost(staging[i]));
  }
}

GpuBackend::~GpuBackend() {
  if (stream_) (void)gpuStreamSynchronize(stream_);
  for (auto& [k, g] : graphs_) (void)gpuGraphExecDestroy(g);
  if (moe_scratch_.bytes) gpu::moe_scratch_destroy(moe_scratch_);
  if (moe_decode_scratch_.bytes) gpu::moe_decode_scratch_destroy(moe_decode_scratch_);
  for (void* p : {static_cast<void*>(d_weights_), static_cast<void*>(d_kv_),
                  static_cast<void*>(d_rope_), static_cast<void*>(d_x_), static_cast<void*>(d_xn_),
                  static_cast<void*>(d_qkv_), static_cast<void*>(d_att_), static_cast<void*>(d_x16_),
                  static_cast<void*>(d_gemm_sem_),
                  static_cast<void*>(d_partial_), static_cast<void*>(d_logits_),
                  static_cast<void*>(d_meta_), static_cast<void*>(d_tokens_),
                  static_cast<void*>(d_picks_)})
    if (p) (void)gpuFree(p);
  if (h_meta_) (void)gpuFreeHost(h_meta_);
  for (auto& e : meta_ev_)
    if (e) (void)gpuEventDestroy(e);
  for (auto* v : {&busy_ev_, &busy_free_})
    for (auto& e : *v) (void)gpuEventDestroy(e.start), (void)gpuEventDestroy(e.end);
  if (h_tokens_) (void)gpuFreeHost(h_tokens_);
  if (h_picks_) (void)gpuFreeHost(h_picks_);
  if (ends_) gpu::pick_scratch_destroy(pick_scratch_);
  if (stream_) (void)gpuStreamDestroy(stream_);
}

// The whole forward of one step, enqueued on stream_ (no host synchronisation; capturable).
// Reads the metadata already in d_meta_.

}  // namespace gptoss::gpu_backend
