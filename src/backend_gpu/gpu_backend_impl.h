// gpu_backend_impl.h: the GPU backend's class, shared by its three sources:
//   gpu_setup.cu   : sizes, the memory check, the weight upload, KV cache and buffers (constructor,
//                    destructor);
//   gpu_forward.cu : one device step of <= step_rows_ rows enqueued on the stream (row
//                    metadata, prompt tiles, the layers), replayed as a graph when small;
//   gpu_backend.cu : the Backend calls (run, head, head_pick), device-time accounting, factories.
// Weights live on the device exactly as in the model file (ranges of the file packed into one
// allocation), the KV cache is bf16 (or fp32) [slots, cap, kv_heads, head_dim] per layer (cap =
// ctx on full layers, window + kSeqStepRows on sliding layers so a chunk never overwrites a key
// one of its own rows still sees); paged (BackendOptions::kv_block_tokens > 0) the full layers
// instead hold one pool each of [blocks, B, kv_heads, head_dim] shared by every slot, found through
// one block table [slots, ceil(ctx / B)] (kernels/gpu/ops.h KvPages) that the KV writers fill from
// the rows' blocks. The residual stream and activations are fp32.
#pragma once
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "backend/backend.h"
#include "gpu/decode.h"
#include "gpu/moe.h"
#include "gpu/ops.h"
#include "gpu/sample.h"
#include "gpu/vendor.h"
#include "model/model_file.h"

namespace gptoss::gpu_backend {

// Rows per device step: BackendOptions::step_rows in [kHeadRows, kMaxStepRows] (run() splits
// larger calls). One sequence has at most kSeqStepRows rows in a device step (run() and the Engine
// cut a step before more: backend.h pass_end), so the sliding layers' rings hold window +
// kSeqStepRows whatever the step size. The LM head takes at most kHeadRows rows at a time
// (d_logits_, the picks).
inline constexpr int kMaxStepRows = kGpuMaxStepRows;
inline constexpr int kSeqStepRows = kGpuSeqStepRows;
inline constexpr int kHeadRows = 512;
inline constexpr int kGraphMaxRows = 64;   // steps with at most this many rows replay a graph
// Runs of at least this many consecutive positions of one sequence in a step (prompt chunks) go
// to the flash-attention kernel in tiles of gpu::kAttnTileRows; other rows to split-K decoding.
inline constexpr int kMinTileRows = 16;
// Row metadata uploaded per step, kMetaSlices x step_rows_ int32: token, pos, slot, logit row
// index, in-a-tile flag, tiles (row0, n_rows pairs: two slices), tile count (first element), the
// row's KV pool block (paged).
inline constexpr int kMetaSlices = 9;
inline constexpr int kMetaToken = 0, kMetaPos = 1, kMetaSlot = 2, kMetaLogitRow = 3,
                     kMetaInTile = 4, kMetaTiles = 5, kMetaTileCount = 7, kMetaBlock = 8;
constexpr int max_tiles_for(int rows) { return rows / kMinTileRows + 1; }
// Pinned metadata buffers used in turn: the next step is enqueued while the device still runs
// (or has not yet copied) the previous one's.
inline constexpr int kMetaBufs = 4;
inline constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

struct LayerW {
  const bf16_t *attn_norm, *qkv_w, *qkv_b, *sinks, *out_w, *out_b, *mlp_norm;
  gpu::MoeGpuWeights moe;
  void *k_cache, *v_cache;  // [slots, cap, n_kv, head_dim] bf16 or fp32 (kv_f32_), or the pool
  int cap, window, max_keys, kv_chunk;
  bool paged;  // a full layer of a paged cache (the pool; else the ring)
};

// The weights this backend needs (its layers plus, with the ends, the embedding and head), packed
// into one device buffer as ranges of the file: tensors closer than kRangeGap in the file share a
// range (one copy), so the whole model is one range.
struct WeightRange {
  uint64_t lo, hi;  // file offsets [lo, hi)
  size_t dev;       // offset in the device buffer
};
inline constexpr uint64_t kRangeGap = uint64_t(1) << 20;

class GpuBackend final : public Backend {
 public:
  GpuBackend(const ModelFile& model, const BackendOptions& opt, int first, int last, bool ends);
  ~GpuBackend() override;
  const Config& config() const override { return cfg_; }
  int first_layer() const override { return first_; }
  int last_layer() const override { return last_; }
  bool has_ends() const override { return ends_; }
  int ctx() const override { return ctx_; }
  int max_slots() const override { return slots_; }
  size_t kv_cache_bytes() const override { return kv_bytes_; }
  bool pages_kv() const override { return kv_blocks_ > 0; }
  int kv_pool_blocks() const override { return kv_blocks_; }
  MemoryKind payload_memory() const override { return MemoryKind::Device; }
  int device() const override { return device_; }
  void* stream() override { return stream_; }
  // A GPU rank owns its core: spin 100 ms before sleeping between polls (hop latency).
  double link_spin_us() const override { return 1e5; }
  int max_rows_per_pass() const override { return step_rows_; }
  int max_seq_rows_per_pass() const override { return kSeqStepRows; }
  void run(std::span<const int32_t> tokens, std::span<const RowPos> rows, const float* in,
           float* out) override;
  void head(const float* x, std::span<const int32_t> logit_rows, float* logits) override;
  bool picks_on_device() const override { return true; }
  void head_pick(const float* x, std::span<const int32_t> logit_rows,
                 std::span<const TokenPick> picks, std::vector<int32_t>& tokens) override;
  double device_busy_us() override;
  double device_head_busy_us() override {
    harvest_busy(true);
    return head_busy_us_;
  }
  double measure_read_gbs() override;
  double matrix_peak_tflops() const override;
  // The vocab-parallel LM head (the pipeline's head split; gpu_head_slice.cu).
  bool can_head_slice() const override;
  void head_slice_first(const float* x, std::span<const int32_t> x_rows,
                        std::span<const int32_t> k, int vocab_begin, int vocab_end,
                        void* out) override;
  void head_slice_next(const void* in, void* out, int n, int vocab_begin, int vocab_end) override;
  void head_rows_read(const void* payload, int n, HeadRow* rows) override;

 private:
  // ---- gpu_setup.cu ----
  void upload_weights(const std::vector<const TensorInfo*>& need);
  const uint8_t* dev_ptr(const TensorInfo& t) const;
  // ---- gpu_forward.cu ----
  // The next pinned metadata buffer (waits until its previous upload has been done).
  int32_t* next_meta();
  // Fills the pos/slot slices and the prompt-tile slices of meta for n rows.
  void fill_tiles(int32_t* meta, std::span<const RowPos> rows) const;
  // Uploads meta (from next_meta()) and runs one step's layers (a graph when small enough).
  void run_step(const int32_t* meta, int rows, bool embed);
  void enqueue_step(int rows, bool embed);
  // The layers of a step of <= gpu::kDecodeMaxRows rows on the decode kernels.
  void enqueue_decode_layers(int rows);
  // Where layer l's cache rows are (the ring, or the pool through the block table).
  gpu::KvPages kv_pages(const LayerW& l) const;
  // Layer l's attention into d_att_ (split-K for all rows, prompt tiles where d_skip is set).
  void enqueue_attention(const LayerW& l, int rows, const int32_t* d_skip);
  // Final norm + LM head of x's rows logit_rows into d_logits_, enqueued.
  void enqueue_head(const float* x, std::span<const int32_t> logit_rows);
  void enqueue_norm_head(const float* x, const int32_t* d_rows, int n, const bf16_t* norm,
                         const bf16_t* w, int width, float* logits);
  // ---- gpu_backend.cu ----
  // Chooses tokens[before + i] for the nl rows of logits in d_logits_ (enqueued before), with
  // picks[before + i]. Ends the busy interval begun by the caller. Complete on return.
  void pick_into(int nl, std::span<const TokenPick> picks, size_t before,
                 std::vector<int32_t>& tokens);
  void harvest_busy(bool wait);
  // Brackets a call's device work with timing events (device_busy_us).
  void begin_busy(bool head = false);
  void end_busy();
  // ---- gpu_head_slice.cu ----
  // The head split's device state beyond the step buffers (index uploads; on a rank without the
  // ends its rows of the LM head, the final norm and a logits scratch), made on first use and
  // freed with the backend (free_head_slice, the unique_ptr's deleter: no destructor code).
  struct HeadSliceState;
  static void free_head_slice(HeadSliceState* s);
  HeadSliceState& head_slice_state();
  // Final norm + LM head rows [v0, v1) of the n rows of x ([n, H], consecutive), merged into
  // rows[n] on the stream, in steps of <= kHeadRows rows through enqueue_norm_head (the whole
  // head's kernels).
  void merge_head_slice(HeadRow* rows, const float* x, int n, int v0, int v1);

  Config cfg_;
  int first_ = 0, last_ = 0;  // layers [first_, last_) live here
  bool ends_ = true;          // embedding, final norm and LM head live here
  int device_ = 0;
  int ctx_ = 0, slots_ = 0;
  int step_rows_ = kHeadRows;  // rows per device step (BackendOptions::step_rows)
  size_t kv_bytes_ = 0;
  bool kv_f32_ = false;  // KV cache element: fp32 (--kv-cache f32) or bf16 (default)
  // Paged full layers (kv_blocks_ > 0): blocks of 1 << kv_shift_ positions, the table's entries
  // per slot; 0 blocks: not paged.
  int kv_blocks_ = 0, kv_shift_ = 0, kv_table_stride_ = 0;
  int32_t* d_kv_table_ = nullptr;  // [slots_, kv_table_stride_]
  gpu::Precision precision_ = gpu::Precision::exact;  // the matrix work's (--precision)
  gpu::GemmKernel gemm_kernel_ = gpu::GemmKernel::mma;  // the fast GEMM's (gemm_wgmma)
  gpuStream_t stream_ = nullptr;
  bool use_graphs_ = true;
  bool use_tiles_ = true;  // prompt runs through the flash-attention tile kernel
  bool use_decode_ = true;  // steps of <= gpu::kDecodeMaxRows rows take the decode kernels

  uint8_t* d_weights_ = nullptr;  // the ranges_ of the file, packed
  std::vector<WeightRange> ranges_;
  const bf16_t *emb_ = nullptr, *norm_ = nullptr, *unemb_ = nullptr;
  std::vector<LayerW> layers_;
  uint8_t* d_kv_ = nullptr;
  float* d_rope_ = nullptr;  // [ctx, head_dim] cos | sin

  // Activations for step_rows_ rows.
  float* d_x_ = nullptr;        // [rows, H] residual stream
  float* d_xn_ = nullptr;       // [rows, H] normalised
  float* d_qkv_ = nullptr;      // [rows, R]
  float* d_att_ = nullptr;      // [rows, Q]
  bf16_t* d_x16_ = nullptr;     // [rows, max(H, Q)] a GEMM's activations as bf16 (precision fast)
  uint32_t* d_gemm_sem_ = nullptr;  // [gpu::kGemmSemSlots] the fast GEMM's split-K semaphores
  float* d_partial_ = nullptr;  // attention split-K scratch
  float* d_logits_ = nullptr;   // [kHeadRows, V]
  int32_t* d_meta_ = nullptr;   // [kMetaSlices, step_rows_], see kMetaSlices
  int32_t* h_meta_ = nullptr;   // kMetaBufs pinned twins, used in turn
  gpuEvent_t meta_ev_[kMetaBufs] = {};
  int meta_next_ = 0;
  // Device time: (start, end) event pairs of enqueued work, summed once complete.
  struct BusyEvents {
    gpuEvent_t start, end;
    bool head;  // LM head and token choice (else: layers)
  };
  std::vector<BusyEvents> busy_ev_, busy_free_;
  double busy_us_ = 0, head_busy_us_ = 0;
  int32_t* d_tokens_ = nullptr;   // [kHeadRows] chosen tokens (head_pick)
  int32_t* h_tokens_ = nullptr;   // pinned twin
  TokenPick* d_picks_ = nullptr;  // [kHeadRows] (head_pick)
  TokenPick* h_picks_ = nullptr;  // pinned twin
  gpu::PickScratch pick_scratch_{};
  uint64_t host_picks_ = 0;  // rows head_pick() handed to the host (device result -1)
  gpu::MoeGpuScratch moe_scratch_{};
  gpu::MoeDecodeScratch moe_decode_scratch_{};
  std::map<std::tuple<int, bool>, gpuGraphExec_t> graphs_;  // (rows, embed) -> graph
  std::vector<float> row_logits_;  // [V]: a row's logits for a host pick
  // The model file (gpu_backend.h: it outlives the backend), set by the constructor: a rank
  // without the ends reads its slice of the LM head from it on the head split's first use.
  const ModelFile* model_ = nullptr;
  std::unique_ptr<HeadSliceState, void (*)(HeadSliceState*)> head_slice_{nullptr, nullptr};
};

}  // namespace gptoss::gpu_backend
