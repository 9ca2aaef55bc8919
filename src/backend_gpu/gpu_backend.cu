// gpu_engine.cu: the GPU engine. Weights live on the device exactly as in the model file (one
// linear upload of the file's tensor region through pinned staging buffers), the KV cache is bf16
// [slots, cap, kv_heads, head_dim] per layer (cap = ctx on full layers, window + kMaxStepRows on
// sliding layers so a chunk never overwrites a key one of its own rows still sees), the residual
// stream and activations are fp32. A step: per-row metadata (token, pos, slot, logit rows) is
// uploaded in one copy, then the whole forward is enqueued on one stream without host
// synchronisation (replayed as a graph for each distinct (rows, logit rows) with rows <=
// kGraphMaxRows), then the logits come back.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "cpu/ops.h"
#include "backend/sampler.h"
#include "backend_gpu/gpu_backend.h"
#include "gpu/moe.h"
#include "gpu/ops.h"
#include "gpu/sample.h"
#include "gpu/vendor.h"
#include "model/model_file.h"
#include "backend/backend.h"
#include "comm/ipc_transport.h"

namespace gptoss {
namespace {

constexpr int kMaxStepRows = 512;   // rows per device step (forward() splits larger calls)
constexpr int kGraphMaxRows = 64;   // steps with at most this many rows replay a captured graph
// Runs of at least this many consecutive positions of one sequence in a step (prompt chunks) go
// to the flash-attention kernel in tiles of gpu::kAttnTileRows; other rows to split-K decoding.
constexpr int kMinTileRows = 16;
// Row metadata uploaded per step, kMetaSlices x kMaxStepRows int32: token, pos, slot, logit row
// index, in-a-tile flag, tiles (row0, n_rows pairs: two slices), tile count (first element).
constexpr int kMetaSlices = 8;
constexpr int max_tiles_for(int rows) { return rows / kMinTileRows + 1; }
constexpr size_t kStagingBytes = size_t(64) << 20;
// Pinned metadata buffers used in turn: a pipeline stage enqueues the next micro-batch while the
// device still runs (or has not yet copied) the previous one's.
constexpr int kMetaBufs = 4;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

struct LayerW {
  const bf16_t *attn_norm, *qkv_w, *qkv_b, *sinks, *out_w, *out_b, *mlp_norm;
  gpu::MoeGpuWeights moe;
  void *k_cache, *v_cache;  // [slots, cap, n_kv, head_dim] bf16 or fp32 (kv_f32_)
  int cap, window, max_keys, kv_chunk;
};

template <class T>
T* dalloc(size_t count) {
  void* p = nullptr;
  GPU_CHECK(gpuMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)));
  return static_cast<T*>(p);
}

// The weights this engine needs (all of them, or a pipeline stage's layers plus, on rank 0, the
// embedding and head), packed into one device buffer as ranges of the file: tensors closer than
// kRangeGap in the file share a range (one copy), so the whole model is one range.
struct WeightRange {
  uint64_t lo, hi;  // file offsets [lo, hi)
  size_t dev;       // offset in the device buffer
};
constexpr uint64_t kRangeGap = uint64_t(1) << 20;

// One engine serves two uses: the whole model on one GPU (the Engine interface, make_gpu_engine),
// or one stage of the ring pipeline (layers [first, last), with the embedding and head only on
// rank 0: the stage_* calls, make_gpu_stage).
class GpuEngine final : public Engine {
 public:
  GpuEngine(const ModelFile& model, const EngineOptions& opt, int first, int last, bool ends);
  ~GpuEngine() override;
  const Config& config() const override { return cfg_; }
  int ctx() const override { return ctx_; }
  int max_slots() const override { return slots_; }
  size_t kv_cache_bytes() const override { return kv_bytes_; }
  void forward(std::span<const Row> rows, std::vector<float>& logits) override;
  void forward_pick(std::span<const Row> rows, std::span<const TokenPick> picks,
                    std::vector<int32_t>& tokens) override;
  bool picks_on_device() const override { return true; }

  // ---- pipeline stage (stage.h): enqueued on stream_, no host wait unless said ----
  gpuStream_t stream() const { return stream_; }
  int first_layer() const { return first_; }
  int last_layer() const { return last_; }
  // tokens given: embed them (rank 0); else copy in (device) first. Result copied to out.
  void stage_run(std::span<const int32_t> tokens, std::span<const RowPos> rows, const float* in,
                 float* out);
  // Final norm + LM head of x's rows logit_rows into d_logits_ (rank 0), enqueued.
  void stage_enqueue_head(const float* x, std::span<const int32_t> logit_rows);
  void stage_head(const float* x, std::span<const int32_t> logit_rows, float* logits);
  void stage_head_pick(const float* x, std::span<const int32_t> logit_rows,
                       std::span<const TokenPick> picks, std::vector<int32_t>& tokens);
  double device_busy_us();
  double device_head_busy_us() {  // the part of device_busy_us() in the LM head and choice
    harvest_busy(true);
    return head_busy_us_;
  }

 private:
  // Checks rows, runs them in device steps of <= kMaxStepRows; after each step calls
  // done(first row of the step, rows, logit rows of the step, logit rows before it).
  template <class Done>
  void run_rows(std::span<const Row> rows, Done&& done);
  void upload_weights(const std::vector<const TensorInfo*>& need);
  const uint8_t* dev_ptr(const TensorInfo& t) const;
  // The next pinned metadata buffer (waits until its previous upload has been done).
  int32_t* next_meta();
  // Fills token/pos/slot and the prompt-tile slices of meta for n rows; returns the tile count.
  template <class SlotOf, class PosOf>
  int fill_tiles(int32_t* meta, int n, SlotOf&& slot_of, PosOf&& pos_of) const;
  void enqueue_step(int rows, int n_logit_rows, bool embed);
  // Uploads meta (from next_meta()) and runs one step (graph when small enough).
  void run_step(const int32_t* meta, int rows, int n_logit_rows, bool embed);
  void pick_into(int nl, std::span<const TokenPick> picks, size_t before,
                 std::vector<int32_t>& tokens, bool timed = false);
  void harvest_busy(bool wait);
  // Brackets a stage call's device work with timing events (device_busy_us).
  void begin_busy(bool head = false);
  void end_busy();

  Config cfg_;
  int first_ = 0, last_ = 0;  // layers [first_, last_) live here
  bool ends_ = true;          // embedding, final norm and LM head live here
  int device_ = 0;
  int ctx_ = 0, slots_ = 0;
  size_t kv_bytes_ = 0;
  bool kv_f32_ = false;  // KV cache element: fp32 (--kv-cache f32) or bf16 (default)
  gpuStream_t stream_ = nullptr;
  bool use_graphs_ = true;

  uint8_t* d_weights_ = nullptr;  // the ranges_ of the file, packed
  std::vector<WeightRange> ranges_;
  const ModelFile* model_ = nullptr;
  const bf16_t *emb_ = nullptr, *norm_ = nullptr, *unemb_ = nullptr;
  std::vector<LayerW> layers_;
  uint8_t* d_kv_ = nullptr;
  float* d_rope_ = nullptr;  // [ctx, head_dim] cos | sin

  // Activations for kMaxStepRows rows.
  float *d_x_ = nullptr;       // [rows, H] residual stream
  float *d_xn_ = nullptr;      // [rows, H] normalised
  float *d_qkv_ = nullptr;     // [rows, R]
  float *d_att_ = nullptr;     // [rows, Q]
  float *d_partial_ = nullptr; // attention split-K scratch
  float *d_logits_ = nullptr;  // [rows, V]
  int32_t* d_meta_ = nullptr;  // [kMetaSlices, kMaxStepRows], see kMetaSlices
  bool use_tiles_ = true;      // GPTOSS_ATTN_TILES=0: every row through split-K
  int32_t* h_meta_ = nullptr;  // kMetaBufs pinned twins, used in turn
  gpuEvent_t meta_ev_[kMetaBufs] = {};
  int meta_next_ = 0;
  // Stage timing: (start, end) event pairs of enqueued work, summed once complete.
  struct BusyEvents {
    gpuEvent_t start, end;
    bool head;  // LM head and token choice (else: layers)
  };
  std::vector<BusyEvents> busy_ev_, busy_free_;
  double busy_us_ = 0, head_busy_us_ = 0;
  int32_t* d_tokens_ = nullptr;  // [kMaxStepRows] chosen tokens (forward_pick)
  int32_t* h_tokens_ = nullptr;  // pinned twin
  TokenPick* d_picks_ = nullptr;  // [kMaxStepRows] (forward_pick)
  TokenPick* h_picks_ = nullptr;  // pinned twin
  gpu::PickScratch pick_scratch_{};
  uint64_t host_picks_ = 0;  // rows forward_pick() handed to the host (device result -1)
  gpu::MoeGpuScratch moe_scratch_{};
  std::map<std::tuple<int, int, bool>, gpuGraphExec_t> graphs_;
};

const uint8_t* GpuEngine::dev_ptr(const TensorInfo& t) const {
  for (const WeightRange& r : ranges_)
    if (t.offset >= r.lo && t.offset + t.bytes <= r.hi) return d_weights_ + r.dev + (t.offset - r.lo);
  fail("gpu engine: tensor %s is not on this GPU (layers %d..%d)", t.name.c_str(), first_,
       last_ - 1);
}

GpuEngine::GpuEngine(const ModelFile& model, const EngineOptions& opt, int first, int last,
                     bool ends)
    : cfg_(model.config()), first_(first), last_(last), ends_(ends), device_(opt.device),
      ctx_(opt.ctx), slots_(opt.max_slots), model_(&model) {
  gpu::require_device();
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
  if (const char* g = std::getenv("GPTOSS_GPU_GRAPHS")) use_graphs_ = std::string(g) != "0";
  if (const char* g = std::getenv("GPTOSS_ATTN_TILES")) use_tiles_ = std::string(g) != "0";
  if (opt.kv_cache != "" && opt.kv_cache != "bf16" && opt.kv_cache != "f32")
    fail("--kv-cache %s: expected bf16 or f32", opt.kv_cache.c_str());
  kv_f32_ = opt.kv_cache == "f32";

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
  size_t kv_elems_per_slot = 0;
  for (int L = first_; L < last_; ++L) {
    LayerW& l = layers_[static_cast<size_t>(L - first_)];
    const bool sliding = c.sliding[static_cast<size_t>(L)] != 0 && c.sliding_window > 0;
    l.window = sliding ? c.sliding_window : 0;
    l.cap = sliding ? std::min(ctx_, c.sliding_window + kMaxStepRows) : ctx_;
    l.max_keys = sliding ? std::min(l.cap, c.sliding_window) : l.cap;
    l.kv_chunk = sliding ? 64 : std::max(128, ((ctx_ + 31) / 32 + 63) / 64 * 64);
    kv_elems_per_slot += 2ull * l.cap * kv_dim;
  }
  const size_t kv_elem_bytes = kv_f32_ ? sizeof(float) : sizeof(bf16_t);
  const size_t kv_slot_bytes = kv_elems_per_slot * kv_elem_bytes;
  const int H = c.hidden, R = c.qkv_rows(), Q = c.q_dim(), V = c.vocab;
  const size_t logit_floats = ends_ ? size_t(kMaxStepRows) * V : 0;
  size_t partial_floats = 0;
  for (const auto& l : layers_)
    partial_floats = std::max(partial_floats,
                              gpu::attention_partial_floats(c.n_heads, l.max_keys, l.kv_chunk));
  const size_t act_bytes =
      sizeof(float) * (size_t(kMaxStepRows) * (2 * H + R + Q) + logit_floats + partial_floats +
                       size_t(ctx_) * c.head_dim) +
      5 * kMaxStepRows * sizeof(int32_t) +
      size_t(kMaxStepRows) * c.experts_per_tok * (H + c.intermediate) * sizeof(float) * 2;
  size_t free_b = 0, total_b = 0;
  GPU_CHECK(gpuMemGetInfo(&free_b, &total_b));
  const size_t reserve = size_t(512) << 20;
  if (slots_ == 0) {  // as many sequences as fit at this context, at most opt.max_auto_slots
    const size_t fixed = weight_bytes + act_bytes + reserve;
    const size_t fit = free_b > fixed ? (free_b - fixed) / kv_slot_bytes : 0;
    slots_ = static_cast<int>(std::min<size_t>(fit, size_t(opt.max_auto_slots)));
    if (slots_ < 1)
      fail("GPU %s: the model needs %.2f GiB (weights %.2f, KV cache %.2f for one sequence of ctx "
           "%d, buffers %.2f, reserve 0.5), %.2f GiB free; lower -c",
           prop.name, (fixed + kv_slot_bytes) / kGiB, weight_bytes / kGiB, kv_slot_bytes / kGiB,
           ctx_, act_bytes / kGiB, free_b / kGiB);
  }
  kv_bytes_ = kv_slot_bytes * size_t(slots_);
  const size_t need = weight_bytes + kv_bytes_ + act_bytes + reserve;
  if (need > free_b)
    fail("GPU %s: the model needs %.2f GiB (weights %.2f, KV cache %.2f for ctx %d x %d slots, "
         "buffers %.2f, reserve 0.5), %.2f GiB free; lower -c or -b",
         prop.name, need / kGiB, weight_bytes / kGiB, kv_bytes_ / kGiB, ctx_, slots_,
         act_bytes / kGiB, free_b / kGiB);

  GPU_CHECK(gpuStreamCreateNonBlocking(&stream_));
  const auto t0 = std::chrono::steady_clock::now();
  upload_weights(needed);
  const double upload_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // ---- weight pointers ----
  const int E = c.n_experts, I = c.intermediate;
  auto P = [&](const std::string& name, DType dt, const std::vector<int64_t>& shape) {
    return reinterpret_cast<const bf16_t*>(dev_ptr(model.get(name, dt, shape)));
  };
  if (ends_) {
    emb_ = P("embedding", DType::BF16, {V, H});
    norm_ = P("norm", DType::BF16, {H});
    unemb_ = P("unembedding", DType::BF16, {V, H});
  }
  d_kv_ = dalloc<uint8_t>(kv_bytes_);
  size_t kv_off = 0;
  for (int L = first_; L < last_; ++L) {
    LayerW& l = layers_[static_cast<size_t>(L - first_)];
    const std::string p = "layers." + std::to_string(L) + ".";
    l.attn_norm = P(p + "attn_norm", DType::BF16, {H});
    l.qkv_w = P(p + "qkv.weight", DType::BF16, {R, H});
    l.qkv_b = P(p + "qkv.bias", DType::BF16, {R});
    l.sinks = P(p + "sinks", DType::BF16, {c.n_heads});
    l.out_w = P(p + "out.weight", DType::BF16, {H, Q});
    l.out_b = P(p + "out.bias", DType::BF16, {H});
    l.mlp_norm = P(p + "mlp_norm", DType::BF16, {H});
    gpu::MoeGpuWeights& m = l.moe;
    m.n_experts = E, m.top_k = c.experts_per_tok, m.hidden = H, m.intermediate = I;
    m.swiglu_limit = c.swiglu_limit;
    m.router_w = P(p + "router.weight", DType::BF16, {E, H});
    m.router_b = P(p + "router.bias", DType::BF16, {E});
    m.mlp1_blocks = reinterpret_cast<const uint8_t*>(
        P(p + "mlp1.blocks", DType::U8, {E, 2 * I, H / 32, 16}));
    m.mlp1_scales =
        reinterpret_cast<const uint8_t*>(P(p + "mlp1.scales", DType::U8, {E, 2 * I, H / 32}));
    m.mlp1_bias = P(p + "mlp1.bias", DType::BF16, {E, 2 * I});
    m.mlp2_blocks =
        reinterpret_cast<const uint8_t*>(P(p + "mlp2.blocks", DType::U8, {E, H, I / 32, 16}));
    m.mlp2_scales =
        reinterpret_cast<const uint8_t*>(P(p + "mlp2.scales", DType::U8, {E, H, I / 32}));
    m.mlp2_bias = P(p + "mlp2.bias", DType::BF16, {E, H});
    const size_t n = size_t(slots_) * l.cap * kv_dim * kv_elem_bytes;
    l.k_cache = d_kv_ + kv_off;
    l.v_cache = d_kv_ + kv_off + n;
    kv_off += 2 * n;
  }
  // Unwritten cache positions are never read (a row sees only positions its sequence wrote),
  // but zero them once so a bug reads zeros, not garbage from a previous process.
  GPU_CHECK(gpuMemsetAsync(d_kv_, 0, kv_bytes_, stream_));

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

  d_x_ = dalloc<float>(size_t(kMaxStepRows) * H);
  d_xn_ = dalloc<float>(size_t(kMaxStepRows) * H);
  d_qkv_ = dalloc<float>(size_t(kMaxStepRows) * R);
  d_att_ = dalloc<float>(size_t(kMaxStepRows) * Q);
  d_partial_ = dalloc<float>(partial_floats);
  d_logits_ = dalloc<float>(logit_floats);
  d_meta_ = dalloc<int32_t>(kMetaSlices * kMaxStepRows);
  GPU_CHECK(gpuHostAlloc(reinterpret_cast<void**>(&h_meta_),
                         kMetaBufs * kMetaSlices * kMaxStepRows * sizeof(int32_t)));
  for (auto& e : meta_ev_) GPU_CHECK(gpuEventCreateNoTiming(&e));
  d_tokens_ = dalloc<int32_t>(kMaxStepRows);
  GPU_CHECK(gpuHostAlloc(reinterpret_cast<void**>(&h_tokens_), kMaxStepRows * sizeof(int32_t)));
  d_picks_ = dalloc<TokenPick>(kMaxStepRows);
  GPU_CHECK(gpuHostAlloc(reinterpret_cast<void**>(&h_picks_), kMaxStepRows * sizeof(TokenPick)));
  if (ends_) pick_scratch_ = gpu::pick_scratch_create(kMaxStepRows, V);
  moe_scratch_ = gpu::moe_scratch_create(layers_[0].moe, kMaxStepRows);
  GPU_CHECK(gpuStreamSynchronize(stream_));

  const std::string what =
      first_ == 0 && last_ == c.n_layers && ends_
          ? std::string("weights")
          : strfmt("layers %d..%d%s", first_, last_ - 1, ends_ ? " + embedding/head" : "");
  std::fprintf(stderr,
               "gpu %d: %s (%s), %s %.2f GiB uploaded in %.2f s (%.1f GB/s), KV cache %.2f GiB "
               "(%s, ctx %d x %d slots), graphs %s\n",
               device_, prop.name, GPU_RT_NAME, what.c_str(), weight_bytes / kGiB, upload_s,
               weight_bytes / 1e9 / std::max(upload_s, 1e-9), kv_bytes_ / kGiB,
               kv_f32_ ? "f32" : "bf16", ctx_, slots_,
               use_graphs_ ? "on" : "off");
}

// One copy per weight range: mmap -> pinned staging (host memcpy) -> device (async), two staging
// buffers alternating so the host copy of one overlaps the DMA of the other.
void GpuEngine::upload_weights(const std::vector<const TensorInfo*>& need) {
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

GpuEngine::~GpuEngine() {
  if (stream_) (void)gpuStreamSynchronize(stream_);
  for (auto& [k, g] : graphs_) (void)gpuGraphExecDestroy(g);
  if (moe_scratch_.bytes) gpu::moe_scratch_destroy(moe_scratch_);
  for (void* p : {static_cast<void*>(d_weights_), static_cast<void*>(d_kv_),
                  static_cast<void*>(d_rope_), static_cast<void*>(d_x_), static_cast<void*>(d_xn_),
                  static_cast<void*>(d_qkv_), static_cast<void*>(d_att_),
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
void GpuEngine::enqueue_step(int rows, int n_logit_rows, bool embed) {
  const Config& c = cfg_;
  const int H = c.hidden, R = c.qkv_rows(), V = c.vocab;
  const int32_t* d_tok = d_meta_;
  const int32_t* d_pos = d_meta_ + kMaxStepRows;
  const int32_t* d_slot = d_meta_ + 2 * kMaxStepRows;
  const int32_t* d_lrows = d_meta_ + 3 * kMaxStepRows;
  const int32_t* d_skip = use_tiles_ && rows >= kMinTileRows ? d_meta_ + 4 * kMaxStepRows : nullptr;
  const auto* d_tiles = reinterpret_cast<const gpu::AttnTile*>(d_meta_ + 5 * kMaxStepRows);
  const int32_t* d_ntiles = d_meta_ + 7 * kMaxStepRows;
  const int max_tiles = max_tiles_for(rows);
  if (embed) gpu::bf16_embed(emb_, d_tok, rows, H, d_x_, stream_);
  // Layer L's attention RMSNorm: layer 0 here, later layers fused into the previous layer's MoE
  // combine (MoeNextNorm, bit-identical to f32_bf16w_rmsnorm).
  gpu::f32_bf16w_rmsnorm(d_x_, layers_[0].attn_norm, d_xn_, rows, H, c.rms_eps, nullptr, stream_);
  for (size_t L = 0; L < layers_.size(); ++L) {
    const LayerW& l = layers_[L];
    gpu::f32_bf16w_matmul(d_xn_, l.qkv_w, l.qkv_b, d_qkv_, rows, H, R, false, stream_);
    if (kv_f32_) {
      float* kc = static_cast<float*>(l.k_cache);
      float* vc = static_cast<float*>(l.v_cache);
      gpu::f32_rope_kv_write(d_qkv_, d_rope_, d_pos, d_slot, rows, c.n_heads, c.n_kv_heads,
                             c.head_dim, kc, vc, l.cap, stream_);
      gpu::f32_f32kv_attention_sinks(d_qkv_, kc, vc, l.sinks, d_pos, d_slot, rows, c.n_heads,
                                     c.n_kv_heads, c.head_dim, l.cap, l.window, l.max_keys,
                                     l.kv_chunk, d_partial_, d_att_, stream_, d_skip);
      if (d_skip)
        gpu::f32_f32kv_attention_sinks_tiles(d_qkv_, kc, vc, l.sinks, d_pos, d_slot, d_tiles,
                                             d_ntiles, max_tiles, c.n_heads, c.n_kv_heads,
                                             c.head_dim, l.cap, l.window, d_att_, stream_);
    } else {
      bf16_t* kc = static_cast<bf16_t*>(l.k_cache);
      bf16_t* vc = static_cast<bf16_t*>(l.v_cache);
      gpu::f32_rope_kv_write(d_qkv_, d_rope_, d_pos, d_slot, rows, c.n_heads, c.n_kv_heads,
                             c.head_dim, kc, vc, l.cap, stream_);
      gpu::f32_bf16kv_attention_sinks(d_qkv_, kc, vc, l.sinks, d_pos, d_slot, rows, c.n_heads,
                                      c.n_kv_heads, c.head_dim, l.cap, l.window, l.max_keys,
                                      l.kv_chunk, d_partial_, d_att_, stream_, d_skip);
      if (d_skip)
        gpu::f32_bf16kv_attention_sinks_tiles(d_qkv_, kc, vc, l.sinks, d_pos, d_slot, d_tiles,
                                              d_ntiles, max_tiles, c.n_heads, c.n_kv_heads,
                                              c.head_dim, l.cap, l.window, d_att_, stream_);
    }
    gpu::f32_bf16w_matmul(d_att_, l.out_w, l.out_b, d_x_, rows, c.q_dim(), H, true, stream_);
    gpu::f32_bf16w_rmsnorm(d_x_, l.mlp_norm, d_xn_, rows, H, c.rms_eps, nullptr, stream_);
    gpu::MoeNextNorm next;
    if (L + 1 < layers_.size()) next = {layers_[L + 1].attn_norm, c.rms_eps, d_xn_};
    gpu::moe_forward(l.moe, d_xn_, rows, d_x_, moe_scratch_, stream_,
                     L + 1 < layers_.size() ? &next : nullptr);
  }
  if (n_logit_rows > 0) {
    gpu::f32_bf16w_rmsnorm(d_x_, norm_, d_xn_, n_logit_rows, H, c.rms_eps, d_lrows, stream_);
    gpu::f32_bf16w_matmul(d_xn_, unemb_, nullptr, d_logits_, n_logit_rows, H, V, false, stream_);
  }
}

int32_t* GpuEngine::next_meta() {
  const int i = meta_next_;
  meta_next_ = (meta_next_ + 1) % kMetaBufs;
  GPU_CHECK(gpuEventSynchronize(meta_ev_[i]));  // its last upload has been done
  return h_meta_ + size_t(i) * kMetaSlices * kMaxStepRows;
}

void GpuEngine::run_step(const int32_t* meta, int rows, int n_logit_rows, bool embed) {
  GPTOSS_ASSERT(n_logit_rows == 0 || ends_);
  GPU_CHECK(gpuMemcpyAsync(d_meta_, meta, kMetaSlices * kMaxStepRows * sizeof(int32_t),
                           gpuMemcpyHostToDevice, stream_));
  GPU_CHECK(gpuEventRecord(meta_ev_[(meta - h_meta_) / (kMetaSlices * kMaxStepRows)], stream_));
  if (!use_graphs_ || rows > kGraphMaxRows) {
    enqueue_step(rows, n_logit_rows, embed);
    return;
  }
  const auto key = std::make_tuple(rows, n_logit_rows, embed);
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
      enqueue_step(rows, n_logit_rows, embed);
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

template <class Done>
void GpuEngine::run_rows(std::span<const Row> rows, Done&& done) {
  const Config& c = cfg_;
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    if (r.token < 0 || r.token >= c.vocab)
      fail("forward: row %zu: token %d out of range [0, %d)", i, r.token, c.vocab);
    if (r.slot < 0 || r.slot >= slots_)
      fail("forward: row %zu: slot %d out of range [0, %d)", i, r.slot, slots_);
    if (r.pos < 0 || r.pos >= ctx_)
      fail("forward: row %zu: position %d out of range [0, %d) (context full)", i, r.pos, ctx_);
  }
  size_t logits_before = 0;
  for (size_t r0 = 0; r0 < rows.size(); r0 += kMaxStepRows) {
    const int n = static_cast<int>(std::min<size_t>(kMaxStepRows, rows.size() - r0));
    int32_t* meta = next_meta();
    int nl = 0;
    for (int i = 0; i < n; ++i) {
      const Row& r = rows[r0 + i];
      meta[i] = r.token;
      if (r.flags & Row::kLogits) meta[3 * kMaxStepRows + nl++] = i;
    }
    fill_tiles(meta, n, [&](int i) { return rows[r0 + i].slot; },
               [&](int i) { return rows[r0 + i].pos; });
    run_step(meta, n, nl, true);
    done(nl, logits_before);
    // Results must be complete on return.
    GPU_CHECK(gpuStreamSynchronize(stream_));
    logits_before += nl;
  }
}

// pos and slot slices, and the prompt tiles: runs of >= kMinTileRows consecutive positions of one
// slot, cut into tiles of at most gpu::kAttnTileRows rows; their rows are flagged so split-K
// leaves them alone.
template <class SlotOf, class PosOf>
int GpuEngine::fill_tiles(int32_t* meta, int n, SlotOf&& slot_of, PosOf&& pos_of) const {
  for (int i = 0; i < n; ++i) {
    meta[kMaxStepRows + i] = pos_of(i);
    meta[2 * kMaxStepRows + i] = slot_of(i);
  }
  int32_t* skip = meta + 4 * kMaxStepRows;
  int32_t* tiles = meta + 5 * kMaxStepRows;
  int n_tiles = 0;
  for (int i = 0; i < n;) {
    int j = i + 1;
    while (j < n && slot_of(j) == slot_of(i) && pos_of(j) == pos_of(j - 1) + 1) ++j;
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
  meta[7 * kMaxStepRows] = n_tiles;
  return n_tiles;
}

void GpuEngine::forward(std::span<const Row> rows, std::vector<float>& logits) {
  const size_t V = static_cast<size_t>(cfg_.vocab);
  size_t n_logits = 0;
  for (const Row& r : rows) n_logits += (r.flags & Row::kLogits) ? 1 : 0;
  logits.resize(n_logits * V);
  run_rows(rows, [&](int nl, size_t before) {
    if (nl > 0)
      GPU_CHECK(gpuMemcpyAsync(logits.data() + before * V, d_logits_, size_t(nl) * V * sizeof(float),
                               gpuMemcpyDeviceToHost, stream_));
  });
}

// Tokens are chosen on the device (gpu::pick_tokens = Sampler::pick) and only their ids come
// back. A row the device leaves undecided (-1: a draw within rounding of a boundary, or a nucleus
// beyond the device's candidate cap; see sample.h) has its logits copied to the host for
// Sampler::pick, so the result is always Sampler::pick's.
void GpuEngine::forward_pick(std::span<const Row> rows, std::span<const TokenPick> picks,
                             std::vector<int32_t>& tokens) {
  size_t n_logits = 0;
  for (const Row& r : rows) n_logits += (r.flags & Row::kLogits) ? 1 : 0;
  if (picks.size() != n_logits)
    fail("forward_pick: %zu picks for %zu rows with logits", picks.size(), n_logits);
  tokens.resize(n_logits);
  run_rows(rows, [&](int nl, size_t before) { pick_into(nl, picks, before, tokens); });
}

// Chooses tokens[before + i] for the nl rows of logits in d_logits_ (enqueued before), with
// picks[before + i]. Complete on return.
void GpuEngine::pick_into(int nl, std::span<const TokenPick> picks, size_t before,
                          std::vector<int32_t>& tokens, bool timed) {
  if (nl == 0) {
    if (timed) end_busy();
    return;
  }
  const size_t V = static_cast<size_t>(cfg_.vocab);
  std::memcpy(h_picks_, picks.data() + before, size_t(nl) * sizeof(TokenPick));
  GPU_CHECK(gpuMemcpyAsync(d_picks_, h_picks_, size_t(nl) * sizeof(TokenPick),
                           gpuMemcpyHostToDevice, stream_));
  gpu::pick_tokens(d_logits_, nl, cfg_.vocab, d_picks_, d_tokens_, pick_scratch_, stream_);
  if (timed) end_busy();
  GPU_CHECK(gpuMemcpyAsync(h_tokens_, d_tokens_, size_t(nl) * sizeof(int32_t),
                           gpuMemcpyDeviceToHost, stream_));
  GPU_CHECK(gpuStreamSynchronize(stream_));
  std::vector<float> row_logits;
  for (int i = 0; i < nl; ++i) {
    int32_t t = h_tokens_[i];
    if (t < 0) {
      ++host_picks_;
      row_logits.resize(V);
      GPU_CHECK(gpuMemcpy(row_logits.data(), d_logits_ + size_t(i) * V, V * sizeof(float),
                          gpuMemcpyDeviceToHost));
      t = Sampler::pick(row_logits.data(), static_cast<int>(V), picks[before + i]);
    }
    tokens[before + i] = t;
  }
}

// ---- pipeline stage ----

// Sums the device time of completed (start, end) pairs; wait: all of them.
void GpuEngine::harvest_busy(bool wait) {
  size_t done = 0;
  for (; done < busy_ev_.size(); ++done) {
    const BusyEvents& e = busy_ev_[done];
    if (wait) GPU_CHECK(gpuEventSynchronize(e.end));
    else if (gpuEventQuery(e.end) == gpuErrorNotReady) break;
    float ms = 0;
    GPU_CHECK(gpuEventElapsedTime(&ms, e.start, e.end));
    busy_us_ += 1e3 * ms;
    if (e.head) head_busy_us_ += 1e3 * ms;
    busy_free_.push_back(busy_ev_[done]);
  }
  busy_ev_.erase(busy_ev_.begin(), busy_ev_.begin() + static_cast<std::ptrdiff_t>(done));
}

void GpuEngine::begin_busy(bool head) {
  harvest_busy(false);
  BusyEvents ev;
  if (busy_free_.empty()) {
    GPU_CHECK(gpuEventCreate(&ev.start));
    GPU_CHECK(gpuEventCreate(&ev.end));
  } else {
    ev = busy_free_.back();
    busy_free_.pop_back();
  }
  ev.head = head;
  GPU_CHECK(gpuEventRecord(ev.start, stream_));
  busy_ev_.push_back(ev);
}

void GpuEngine::end_busy() { GPU_CHECK(gpuEventRecord(busy_ev_.back().end, stream_)); }

double GpuEngine::device_busy_us() {
  harvest_busy(true);
  return busy_us_;
}

void GpuEngine::stage_run(std::span<const int32_t> tokens, std::span<const RowPos> rows,
                          const float* in, float* out) {
  const Config& c = cfg_;
  const size_t H = static_cast<size_t>(c.hidden);
  const bool embed = !tokens.empty();
  GPTOSS_ASSERT(embed ? ends_ && tokens.size() == rows.size() && !in : in != nullptr);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (embed && (tokens[i] < 0 || tokens[i] >= c.vocab))
      fail("stage: row %zu: token %d out of range [0, %d)", i, tokens[i], c.vocab);
    if (rows[i].slot < 0 || rows[i].slot >= slots_ || rows[i].pos < 0 || rows[i].pos >= ctx_)
      fail("stage: row %zu: slot %d / position %d out of range (%d slots, ctx %d)", i,
           rows[i].slot, rows[i].pos, slots_, ctx_);
  }
  begin_busy();
  for (size_t r0 = 0; r0 < rows.size(); r0 += kMaxStepRows) {
    const int n = static_cast<int>(std::min<size_t>(kMaxStepRows, rows.size() - r0));
    int32_t* meta = next_meta();
    if (embed)
      for (int i = 0; i < n; ++i) meta[i] = tokens[r0 + i];
    fill_tiles(meta, n, [&](int i) { return rows[r0 + i].slot; },
               [&](int i) { return rows[r0 + i].pos; });
    if (!embed)
      GPU_CHECK(gpuMemcpyAsync(d_x_, in + r0 * H, size_t(n) * H * sizeof(float),
                               gpuMemcpyDeviceToDevice, stream_));
    run_step(meta, n, 0, embed);
    GPU_CHECK(gpuMemcpyAsync(out + r0 * H, d_x_, size_t(n) * H * sizeof(float),
                             gpuMemcpyDeviceToDevice, stream_));
  }
  end_busy();
}

void GpuEngine::stage_enqueue_head(const float* x, std::span<const int32_t> logit_rows) {
  GPTOSS_ASSERT(ends_ && logit_rows.size() <= size_t(kMaxStepRows));
  const int nl = static_cast<int>(logit_rows.size());
  int32_t* meta = next_meta();
  std::copy(logit_rows.begin(), logit_rows.end(), meta + 3 * kMaxStepRows);
  GPU_CHECK(gpuMemcpyAsync(d_meta_ + 3 * kMaxStepRows, meta + 3 * kMaxStepRows,
                           size_t(nl) * sizeof(int32_t), gpuMemcpyHostToDevice, stream_));
  GPU_CHECK(gpuEventRecord(meta_ev_[(meta - h_meta_) / (kMetaSlices * kMaxStepRows)], stream_));
  const Config& c = cfg_;
  gpu::f32_bf16w_rmsnorm(x, norm_, d_xn_, nl, c.hidden, c.rms_eps, d_meta_ + 3 * kMaxStepRows,
                         stream_);
  gpu::f32_bf16w_matmul(d_xn_, unemb_, nullptr, d_logits_, nl, c.hidden, c.vocab, false, stream_);
}

void GpuEngine::stage_head(const float* x, std::span<const int32_t> logit_rows, float* logits) {
  const size_t V = static_cast<size_t>(cfg_.vocab);
  begin_busy(true);
  for (size_t i0 = 0; i0 < logit_rows.size(); i0 += kMaxStepRows) {
    const size_t nl = std::min<size_t>(kMaxStepRows, logit_rows.size() - i0);
    stage_enqueue_head(x, logit_rows.subspan(i0, nl));
    GPU_CHECK(gpuMemcpyAsync(logits + i0 * V, d_logits_, nl * V * sizeof(float),
                             gpuMemcpyDeviceToHost, stream_));
  }
  end_busy();
  GPU_CHECK(gpuStreamSynchronize(stream_));
}

void GpuEngine::stage_head_pick(const float* x, std::span<const int32_t> logit_rows,
                                std::span<const TokenPick> picks, std::vector<int32_t>& tokens) {
  GPTOSS_ASSERT(picks.size() == logit_rows.size());
  tokens.resize(logit_rows.size());
  for (size_t i0 = 0; i0 < logit_rows.size(); i0 += kMaxStepRows) {
    const size_t nl = std::min<size_t>(kMaxStepRows, logit_rows.size() - i0);
    begin_busy(true);  // ended by pick_into after the pick kernel, before its sync
    stage_enqueue_head(x, logit_rows.subspan(i0, nl));
    pick_into(static_cast<int>(nl), picks, i0, tokens, true);
  }
}

// The pipeline stage over a GpuEngine holding layers [first, last) (and on rank 0 the ends).
class GpuStage final : public Stage {
 public:
  GpuStage(const ModelFile& model, const EngineOptions& opt, int first, int last, bool rank0)
      : e_(model, opt, first, last, rank0), device_(opt.device) {}
  const Config& config() const override { return e_.config(); }
  int first_layer() const override { return e_.first_layer(); }
  int last_layer() const override { return e_.last_layer(); }
  size_t kv_cache_bytes() const override { return e_.kv_cache_bytes(); }
  int max_slots() const override { return e_.max_slots(); }
  comm::MemoryKind payload_memory() const override { return comm::MemoryKind::Device; }
  std::unique_ptr<comm::Ring> open_ring(MPI_Comm comm, const comm::LinkSpec& spec) override {
    GPU_CHECK(gpuSetDevice(device_));  // the links use the current device
    return comm::open_gpu_ring(comm, spec);
  }
  void* stream() override { return e_.stream(); }
  // A GPU rank owns its core: spin 100 ms before sleeping between polls (hop latency).
  double link_spin_us() const override { return 1e5; }
  void run(std::span<const int32_t> tokens, std::span<const RowPos> rows, const float* in,
           float* out) override {
    e_.stage_run(tokens, rows, in, out);
  }
  void head(const float* x, std::span<const int32_t> logit_rows, float* logits) override {
    e_.stage_head(x, logit_rows, logits);
  }
  bool picks_on_device() const override { return true; }
  void head_pick(const float* x, std::span<const int32_t> logit_rows,
                 std::span<const TokenPick> picks, std::vector<int32_t>& tokens) override {
    e_.stage_head_pick(x, logit_rows, picks, tokens);
  }
  double device_busy_us() override { return e_.device_busy_us(); }
  double device_head_busy_us() override { return e_.device_head_busy_us(); }

 private:
  GpuEngine e_;
  int device_;
};

}  // namespace

std::unique_ptr<Engine> make_gpu_engine(const ModelFile& model, const EngineOptions& opt) {
  return std::make_unique<GpuEngine>(model, opt, 0, model.config().n_layers, true);
}

std::unique_ptr<Stage> make_gpu_stage(const ModelFile& model, const EngineOptions& opt, int first,
                                      int last, bool rank0) {
  return std::make_unique<GpuStage>(model, opt, first, last, rank0);
}

bool gpu_device_present() { return gpu::device_present(); }

int gpu_device_count() {
  int n = 0;
  if (!gpu::device_present()) return 0;
  GPU_CHECK(gpuGetDeviceCount(&n));
  return n;
}

}  // namespace gptoss
