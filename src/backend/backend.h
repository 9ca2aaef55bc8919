// backend.h: the one interface every backend implements: "run layers [first, last) on these
// rows; head; pick". A backend holds one contiguous block of layers with their KV cache and, on
// the rank that owns them (rank 0), the embedding, the final norm and the LM head. One process is
// a ring of one whose backend holds everything; the ring pipeline (src/pipeline) drives one backend
// per rank and moves hidden states between them; the Engine (engine.h) drives one backend that
// holds the whole model step by step (tests, tools). Backends know nothing of ranks or transports:
// the pipeline chooses each link's transport from payload_memory().
//
// Backends: the CPU (src/backend_cpu, make_cpu_backend; host payloads) and the GPU
// (src/backend_gpu, make_gpu_backend; device payloads, work enqueued on stream()).
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/head_split.h"
#include "backend/sampler.h"
#include "common/types.h"
#include "gpu/moe_plan.h"  // gpu::MoeOptions (plain C++)
#include "model/config.h"

namespace gptoss {

class ModelFile;
struct ModelWeights;

// One row of a step, as the scheduler plans it: one token of one sequence at its position.
//   - A sequence lives in a KV-cache slot in [0, max_slots). Its first row has pos 0 and kNewSeq;
//     its rows in later steps continue at increasing positions. A slot is reused for a new
//     sequence by sending a row with pos 0 again.
//   - Rows of one step may mix prompt chunks (several consecutive positions of one slot, in
//     order) and single decode tokens of other slots.
//   - Rows with kLogits set get logits (or a picked token), in row order.
// SequenceCheck (sequence_check.h) enforces these rules for every backend.
//   - With a paged KV cache (SchedulerOptions::kv_block_tokens > 0) `block` is the pool block
//     that holds `pos` in the full-attention layers (RowPos::block); -1 when it is not paged.
struct Row {
  enum : uint32_t { kNewSeq = 1u, kLogits = 2u };
  int32_t token = 0;
  int32_t slot = 0;
  int32_t pos = 0;
  uint32_t flags = 0;
  int32_t block = -1;
};

// The precision of the GPU's matrix work when BackendOptions::precision is "" (--precision).
// fast, on the evidence of docs/gpu.md "Precision" (teacher-forced logits against the fp32 CPU
// engine closer than transformers' own bf16 forward, tiny and 20b synthetic checkpoints, H200).
inline constexpr const char* kGpuDefaultPrecision = "fast";

// The GPU backend's rows of one sequence per device step (Backend::max_seq_rows_per_pass): its
// sliding layers' rings hold the window plus this many positions per sequence.
inline constexpr int kGpuSeqStepRows = 512;
// The largest GPU device step BackendOptions::step_rows may ask for.
inline constexpr int kGpuMaxStepRows = 4096;

// What a backend is made with (the command line's -c, -b, -t, --kv-cache, the GPU knobs).
struct BackendOptions {
  int ctx = 4096;        // max positions per sequence (-c); <= config.max_context
  int max_slots = 1;     // concurrent sequences (-b); GPU: 0 = as many as free memory holds at
                         // ctx, at most max_auto_slots (max_slots() then says how many)
  int max_auto_slots = 256;
  // Paged KV cache (SchedulerOptions): kv_block_tokens positions per block, kv_blocks blocks in
  // the pool of each full-attention layer; kv_block_tokens 0 = not paged. kv_blocks 0 (GPU): as
  // many as free memory holds, at most max_slots x ceil(ctx / kv_block_tokens)
  // (kv_pool_blocks() says how many). A backend that cannot page ignores them (pages_kv() false)
  // and keeps max_slots x ctx.
  int kv_block_tokens = 0;
  int kv_blocks = 0;
  int threads = 0;       // CPU threads (-t); 0 = OpenMP default
  // KV-cache element type: "" = the backend's default (CPU: f32, its only choice; GPU: bf16),
  // "bf16" or "f32" (--kv-cache).
  std::string kv_cache;
  // Precision of the GPU's matrix work (kernels/gpu/ops.h Precision): "" = the backend's default
  // (GPU: kGpuDefaultPrecision; CPU: exact, its only choice), "exact" or "fast" (--precision).
  std::string precision;
  int device = 0;          // GPU: index of the device among those visible
  // GPU: rows per device step (--step-rows), in [kGpuSeqStepRows, kGpuMaxStepRows]: a larger step reads the
  // weights once for more rows (the grouped MoE GEMM and the dense GEMMs run nearer their peaks)
  // at the cost of activation buffers that grow with it. A sequence still has at most
  // kGpuSeqStepRows rows in one step (max_seq_rows_per_pass), so the sliding layers' KV rings do
  // not grow.
  int step_rows = 512;
  bool gpu_graphs = true;  // GPU: replay small steps as captured graphs (--gpu-graphs)
  bool attn_tiles = true;  // GPU: prompt runs through the flash-attention tile kernel
  // GPU: steps of at most gpu::kDecodeMaxRows rows take the decode kernels (kernels/gpu/decode.h:
  // fused RMSNorm / RoPE / KV write / router top-k / MoE combine); false: the batched kernels.
  bool decode_kernels = true;
  // GPU (NVIDIA): launch overlap (programmatic dependent launch, kernels/gpu/vendor.h gpu_launch):
  // the decode path's and the attention's kernels start while the previous kernel finishes.
  // Process-wide; run --launch-overlap on|off. On by default since the one-row MoE decode shape
  // (launch_shapes.h MoeDecodeShape) made it pay at batch 1 (docs/performance.md, 2026-12-06 late).
  bool launch_overlap = true;
  gpu::MoeOptions moe;  // GPU: the batched MoE's kernel choices (kernels/gpu/moe_plan.h)
  // GPU, precision fast: split K of the qkv and output projections' GEMM over 1-4 blocks per
  // output tile (kernels/gpu/matmul.cu fast_gemm_splits). Off by default: slower at every shape
  // on an H100 (docs/performance.md, 2026-12-05); bench-engine --split-k 1.
  bool gemm_split_k = false;
  // GPU (NVIDIA), precision fast: the dense GEMMs (qkv, output projection, LM head of steps past
  // the decode kernels) on Hopper's wgmma (kernels/gpu/ops.h GemmKernel::wgmma) where the build
  // (sm_90a) and the card (sm_90) have it and gemm_split_k is off; else the mma.sync kernel. On
  // by default since its 128-byte-swizzle layout matched or beat mma.sync at every shape on an
  // H100 (docs/performance.md, 2026-12-07 17:20); bench-engine --gemm-wgmma 0 turns it off.
  bool gemm_wgmma = true;
  // GPU (NVIDIA), precision fast with folded MoE scales: the batched MoE's grouped GEMM on the
  // warp-specialised wgmma kernel (kernels/gpu/moe_ws_gemm.cu; gpu::MoeOptions::wgmma at grouped
  // configuration 0) where the build (sm_90a) and the card (sm_90) have it; else mma.sync.
  // bench-engine --wgmma 0|1.
  bool moe_wgmma = false;
  // GPU (NVIDIA): decode steps (1-4 rows) run both MoE expert matmuls as one launch (kernels/gpu/
  // decode.h MoeDecodeScratch::fused: work items from a queue, mlp2's weights hinted into L2 while
  // mlp1 runs; the same bits): 1; 2 = also the router inside that launch for one-row steps. 0
  // (off) until measured; bench-engine --moe-fused 0|1|2.
  int moe_decode_fused = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const Config& config() const = 0;
  virtual int first_layer() const = 0;  // this backend's layers are [first_layer, last_layer)
  virtual int last_layer() const = 0;
  virtual bool has_ends() const = 0;    // embedding, final norm and LM head live here
  virtual int ctx() const = 0;
  // Sequences its KV cache holds (a GPU backend made with max_slots 0 sizes it from free memory).
  virtual int max_slots() const = 0;
  virtual size_t kv_cache_bytes() const = 0;
  // True when the full-attention layers' cache is the pool of BackendOptions::kv_blocks blocks
  // (rows then carry RowPos::block); false: slots x ctx, RowPos::block ignored.
  virtual bool pages_kv() const { return false; }
  // Blocks in the pool of each full-attention layer when pages_kv() (BackendOptions::kv_blocks, or
  // what free memory holds when that is 0: the pipeline then takes the least over its ranks).
  virtual int kv_pool_blocks() const { return 0; }
  // Where run/head take and leave hidden states: host memory (CPU) or the GPU's memory.
  virtual MemoryKind payload_memory() const { return MemoryKind::Host; }
  // The GPU the payloads live on (payload_memory() == Device), else -1.
  virtual int device() const { return -1; }
  // The GPU stream the backend's work goes to (a gpuStream_t), nullptr for host backends.
  virtual void* stream() { return nullptr; }
  // Micro-seconds a blocking ring wait spins before it sleeps between polls (latency vs a core).
  virtual double link_spin_us() const { return 50; }
  // Rows one run() call takes in one pass (larger calls are split inside run()); the Engine cuts
  // its steps to this when it keeps results in the backend's own buffer (out == nullptr).
  virtual int max_rows_per_pass() const { return 1 << 30; }
  // Rows of one slot one pass may hold (pass_end below cuts a pass before more).
  virtual int max_seq_rows_per_pass() const { return 1 << 30; }

  // Layers [first_layer, last_layer) on rows.size() rows. The owner of the embedding passes the
  // token ids (tokens.size() == rows.size(), in == nullptr) and they are embedded first; other
  // backends pass in = the received hidden states [rows, hidden] fp32 in payload memory (in may
  // equal out). The result, [rows, hidden] fp32, goes to out (payload memory), or stays in the
  // backend's own buffer when out == nullptr (then rows.size() <= max_rows_per_pass() and at most
  // max_seq_rows_per_pass() rows of one slot: one pass, as pass_end cuts them), for a head() with
  // x == nullptr. Rows of one slot come in increasing consecutive positions,
  // continuing what earlier calls stored (the caller checks this: SequenceCheck). A GPU backend
  // enqueues the work on stream() and returns; the result is ordered before later work there.
  virtual void run(std::span<const int32_t> tokens, std::span<const RowPos> rows, const float* in,
                   float* out) = 0;
  // logits[i, :] = LM head of final-norm(x[logit_rows[i]]) (has_ends() only). x: [rows, hidden]
  // in payload memory, or nullptr for the result of the last run() with out == nullptr; logits:
  // host [logit_rows.size(), vocab]. Complete on return.
  virtual void head(const float* x, std::span<const int32_t> logit_rows, float* logits) = 0;
  // True when head_pick chooses tokens on the device (only ids come back to the host).
  virtual bool picks_on_device() const { return false; }
  // tokens[i] = Sampler::pick(head logits of row logit_rows[i], picks[i]). Complete on return.
  // Default: head() to host logits, then Sampler::pick.
  virtual void head_pick(const float* x, std::span<const int32_t> logit_rows,
                         std::span<const TokenPick> picks, std::vector<int32_t>& tokens) {
    const size_t V = static_cast<size_t>(config().vocab);
    logits_.resize(logit_rows.size() * V);
    head(x, logit_rows, logits_.data());
    tokens.resize(logit_rows.size());
    for (size_t i = 0; i < logit_rows.size(); ++i)
      tokens[i] = Sampler::pick(logits_.data() + i * V, static_cast<int>(V), picks[i]);
  }
  // The vocab-parallel LM head (the pipeline's head split, backend/head_split.h; payloads in
  // payload memory, laid out as head_split.h says; the work is complete on return for host
  // backends, ordered on stream() for device ones). Any rank's backend (not only the one with the
  // ends) computes a slice: final norm + rows [vocab_begin, vocab_end) of the LM head.
  virtual bool can_head_slice() const { return false; }
  // Rank 0, after the last layer: out = HeadRow[n] (row i wanting k[i] candidates, merged with
  // ids [vocab_begin, vocab_end)) | x of rows x_rows of x ([rows, hidden], as for head()),
  // n = x_rows.size().
  virtual void head_slice_first(const float* x, std::span<const int32_t> x_rows,
                                std::span<const int32_t> k, int vocab_begin, int vocab_end,
                                void* out);
  // A later rank: out = in with ids [vocab_begin, vocab_end) merged into its n HeadRows (in may
  // equal out).
  virtual void head_slice_next(const void* in, void* out, int n, int vocab_begin, int vocab_end);
  // Rank 0, at the end of the lap: the n HeadRows of payload, copied to host memory.
  virtual void head_rows_read(const void* payload, int n, HeadRow* rows);

  // Device time spent on this backend's work so far, in us, or < 0 when it computes on the
  // calling thread (the pipeline then times the calls). Waits for work in flight.
  virtual double device_busy_us() { return -1; }
  // The part of device_busy_us() spent in head()/head_pick(); -1 if not measured.
  virtual double device_head_busy_us() { return -1; }
  // The device's ceilings for the bench's limits (src/run/roofline.h): read bandwidth in GB/s,
  // measured now (a read of a large buffer), and the matrix peak in TFLOP/s (the card's dense
  // bf16 figure); 0 = unknown (the CPU).
  virtual double measure_read_gbs() { return 0; }
  virtual double matrix_peak_tflops() const { return 0; }

 private:
  std::vector<float> logits_;  // head_pick's default: [logit rows, vocab]
};

// The CPU backend (OpenMP, fp32 arithmetic over bf16 / MXFP4 weights, KV cache f32) for layers
// [first, last), with the ends when `ends`. w's pointers (or model) must outlive it. Throws a
// one-line Error on bad options: ctx < 1 or > config.max_context, max_slots < 1, threads < 0, a
// --kv-cache other than f32; threads > 0 sets the OpenMP thread count.
std::unique_ptr<Backend> make_cpu_backend(const ModelWeights& w, const BackendOptions& opt,
                                          int first, int last, bool ends);
std::unique_ptr<Backend> make_cpu_backend(const ModelFile& model, const BackendOptions& opt,
                                          int first, int last, bool ends);

// Where the pass that starts at row r0 of rows [0, n) ends: at most max_rows rows, and at most
// max_seq_rows of any one slot (Backend::max_rows_per_pass, max_seq_rows_per_pass); slot(i) is
// row i's slot. At least one row.
template <class SlotOf>
size_t pass_end(size_t r0, size_t n, int max_rows, int max_seq_rows, SlotOf&& slot) {
  const size_t end = std::min(n, r0 + static_cast<size_t>(std::max(1, max_rows)));
  if (max_seq_rows >= max_rows || end - r0 <= static_cast<size_t>(max_seq_rows)) return end;
  std::unordered_map<int32_t, int> count;
  for (size_t i = r0; i < end; ++i)
    if (++count[slot(i)] > max_seq_rows) return std::max(i, r0 + 1);
  return end;
}

}  // namespace gptoss
