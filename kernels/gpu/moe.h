// moe.h: the GPU MoE block (router top-k + softmax, MXFP4 expert matmuls with the clamped SwiGLU
// fused into the first, weighted sum into the fp32 residual after the second). Same function as
// cpu::f32_mf4w_moe (kernels/cpu/ops.h), compared with a tolerance, not bitwise.
//
// Files: moe.h (this API), moe_plan.h (kernel choices and launch shapes per step, MoeOptions;
// host-only), moe_kernels.h (internal), moe.cu (scratch, moe_forward, combine), moe_route.cu,
// moe_gemv.cu, moe_grouped_gemm.cu (NVIDIA), moe_tiles.cu. Tests: tests/gpu/moe_test.cpp (CTest
// gpu_moe, against the CPU twin), tests/gpu/launch_limits_test.cpp (CTest gpu_launch_limits, no
// GPU needed); benchmark: tests/gpu/moe_bench.cpp (bench-moe).
//
// Design:
//   1. routing. Steps of <= 16 rows whose x and logits fit the block's shared memory budget
//      (moe_plan.h moe_route_small_budget: 100 KiB on sm_90, 56 KiB on gfx90a; at 20b 8 rows on
//      NVIDIA, 4 on MI250): ONE block does the router logits (x in shared memory), the
//      top-k (a wave per row) + softmax and the grouping. Larger steps: router kernel with 4 rows
//      per block (each 16-byte router load serves 4 rows, a lane's loads all in flight), then the
//      build kernel (one block). Same arithmetic per logit and the same top-k either way (ties:
//      lower expert index first), as the CPU twin.
//      build: per-expert counts, offsets, active-expert list, (row, rank) pairs grouped by expert
//      with rows ascending (deterministic warp scans, no atomics), and a tile list (64 grouped
//      rows per tile) of the experts the tile kernels take.
//   2. expert matmuls, by step size (kMoeStepGemvMaxRows / kMoeGemvMaxRows, moe_plan.h):
//      GEMV kernels (small steps): one wave per 4 weight rows (mlp1: two gate/up pairs), lane =
//      whole 16-byte MXFP4 blocks, x in padded shared memory, MXFP4 decoded in registers (E2M1 ->
//      fp16 bit placement, exact), fp32 math throughout; or the tensor-core GEMV (option).
//      NVIDIA, larger steps: grouped GEMM on tensor cores for every expert (moe_tc_kernel):
//      x staged once as fp16 hi + lo pairs (moe_stage_x_kernel; MoeOptions::fast, the GPU
//      backend's default precision: one bf16 per element with the E8M0 scales folded into the
//      bf16 weights, MoeTcMode in moe_plan.h, one MMA per product), a block = 256 weight rows x one
//      64-row tile, mma.sync m16n8k16 f16 -> f32 with the weights as A (exact fp16 placements of
//      the E2M1 codes) and the activations as B (so only ceil(rows / 8) n8 tiles are computed),
//      each MXFP4 block's partial sums scaled by the rows' E8M0 scales into fp32 accumulators,
//      3-stage cp.async pipeline, XOR-swizzled shared memory. mlp1's epilogue writes the SwiGLU
//      output directly as mlp2's fp16 hi/lo B operand.
//      HIP (or MoeOptions::bf16_tiles), larger steps: experts with > kMoeGemvMaxRows rows on the bf16
//      tile kernel (tile.h's wave tile: mma.sync m16n8k16 bf16 / MFMA 32x32x8 bf16), 64 rows x 128
//      outputs x 32 k, MXFP4 decoded to bf16 in shared memory, activations as bf16 hi + lo,
//      fp32 accumulation; the other experts on the GEMV.
//      mlp1 epilogues apply bias + clamped SwiGLU -> act (grouped order); mlp2 epilogues add bias
//      -> y [rows, k, H] fp32 indexed by (row, rank).
//   3. combine kernel: residual[n] += ((w0 y0 + w1 y1) + w2 y2) + ... in rank order (optionally
//      fused with the next RMSNorm). No atomics: results are deterministic run to run and
//      independent of the grouping order; a row's result does not depend on the other rows of
//      its step as long as the step stays on the same side of the GEMV / GEMM boundary.
//   All launches have grids fixed by (rows, shape); data-dependent work exits early on device, so
//   moe_forward does no host synchronisation, no allocation, and can be captured into a graph.
#pragma once
#include <cstdint>

#include "gpu/moe_plan.h"
#include "gpu/vendor.h"

namespace gptoss::gpu {

// Device pointers, layouts exactly as in the model file.
struct MoeGpuWeights {
  int n_experts = 0, top_k = 0, hidden = 0, intermediate = 0;
  float swiglu_limit = 0;
  const uint16_t* router_w = nullptr;    // [E, H] bf16
  const uint16_t* router_b = nullptr;    // [E] bf16
  const uint8_t* mlp1_blocks = nullptr;  // [E, 2I, H/32, 16]
  const uint8_t* mlp1_scales = nullptr;  // [E, 2I, H/32]
  const uint16_t* mlp1_bias = nullptr;   // [E, 2I] bf16
  const uint8_t* mlp2_blocks = nullptr;  // [E, H, I/32, 16]
  const uint8_t* mlp2_scales = nullptr;  // [E, H, I/32]
  const uint16_t* mlp2_bias = nullptr;   // [E, H] bf16
};

// Paths by step size: moe_plan.h (kMoeStepGemvMaxRows, kMoeGemvMaxRows, MoeOptions). A row's
// result can differ (~1e-6 relative, both fp32-quality) between a step of <= 3 rows and one of
// >= 4 rows on NVIDIA (GEMV vs grouped GEMM; the dense GEMV/GEMM boundary of ops.h is 8 | 9), and
// on HIP for an expert with <= 16 vs > 16 rows of a step (GEMV vs bf16 tiles).

// Device scratch for up to max_rows rows (one stream at a time).
struct MoeGpuScratch {
  int max_rows = 0, n_experts = 0, top_k = 0, hidden = 0, intermediate = 0;
  int max_tiles = 0;             // ceil(max_rows * k / kMoeTileRows) + E
  int32_t* experts = nullptr;    // [max_rows, k] chosen experts, rank order
  float* weights = nullptr;      // [max_rows, k] softmax weights
  int32_t* offsets = nullptr;    // [E + 1] grouped slot offsets per expert
  int32_t* active = nullptr;     // [E] experts with rows, ascending
  int32_t* meta = nullptr;       // [2] n_active, n_tiles
  int32_t* slot_pair = nullptr;  // [max_rows * k] grouped slot -> pair index (row * k + rank)
  int32_t* tile_expert = nullptr;  // [max_tiles]
  int32_t* tile_slot0 = nullptr;   // [max_tiles] first grouped slot of the tile
  float* act = nullptr;          // [max_rows * k, I] SwiGLU output, grouped order
  float* y = nullptr;            // [max_rows, k, H] expert outputs incl. mlp2 bias, per (row, rank)
  // NVIDIA grouped tensor-core GEMM only (nullptr on HIP): its B operands as fp16 hi/lo pairs.
  uint32_t* xq = nullptr;        // [max_rows, H] x_normed staged (4 bytes per element)
  uint32_t* actq = nullptr;      // [max_rows * k, I] SwiGLU output staged, grouped order
  size_t bytes = 0;              // device bytes held
  MoeOptions options;            // kernel choices (moe_plan.h), fixed at creation
};

// Allocates (gpuMalloc) the scratch for up to max_rows rows of this weights' shape, with the
// kernel choices `options` (MoeOptions{} = the defaults). Sets the kernels' dynamic shared memory
// limits. Throws a one-line gptoss::Error on an unsupported shape or options.
MoeGpuScratch moe_scratch_create(const MoeGpuWeights& w, int max_rows, const MoeOptions& options);
void moe_scratch_destroy(MoeGpuScratch& s);

// residual[n, :] += sum_r w_r * expert_r(x_normed[n, :]) for n < rows (see file comment).
//   x_normed: [rows, H] fp32 device; residual: [rows, H] fp32 device (may not alias x_normed).
//   Requires H % 32 == 0, I % 32 == 0, 1 <= k <= E <= 1024, rows <= s.max_rows and s created for
//   the same shape (throws gptoss::Error otherwise). Asynchronous on `stream`, graph-capturable.
// next_norm (optional): also out[n, :] = RMSNorm(residual[n, :]) * scale after the update, fused
// into the combine kernel (bit-identical to f32_bf16w_rmsnorm of ops.h; out must not alias residual;
// it may alias x_normed, which is dead by then).
struct MoeNextNorm {
  const uint16_t* scale = nullptr;  // [H] bf16
  float eps = 0;
  float* out = nullptr;             // [rows, H] fp32
};
void moe_forward(const MoeGpuWeights& w, const float* x_normed, int rows, float* residual,
                 MoeGpuScratch& s, gpuStream_t stream, const MoeNextNorm* next_norm = nullptr);

// The largest E8M0 scale of w's expert weights (mlp1 and mlp2 scales; a read of all of them,
// synchronous on `stream`): MoeOptions::fold_scales needs it <= kMoeFoldMaxScale.
int moe_max_scale(const MoeGpuWeights& w, gpuStream_t stream);

// ---- entry points for tests (same device code as moe_forward) --------------------------------
// Top-k + softmax over given logits [rows, E] (device) -> experts [rows, k], weights [rows, k]:
// the routing kernels' wave top-k (E <= 32 * kWaveSize).
void moe_router_topk_logits(const float* logits, int rows, int E, int k, int32_t* experts,
                            float* weights, gpuStream_t stream);
// Decodes n_blocks MXFP4 blocks (blocks [n, 16], scales [n]) twice: out_f32 [n, 32] with the
// GEMV path's decode, out_bf16 [n, 32] (bf16 bits) with the tensor-core path's decode.
// out_fold (NVIDIA only; optional): the folded-scale grouped GEMM's bf16 decode (MoeTcMode::fast_bf16),
// exact for scales <= kMoeFoldMaxScale.
void moe_mxfp4_decode(const uint8_t* blocks, const uint8_t* scales, int n_blocks, float* out_f32,
                      uint16_t* out_bf16, gpuStream_t stream, uint16_t* out_fold = nullptr);
// The mlp path moe_forward takes for a step of `rows` rows with scratch s: "gemv", "mma" (NVIDIA
// grouped GEMM for every expert) or "gemv+mma" (HIP / bf16_tiles: GEMV and bf16 tiles by expert
// row count).
const char* moe_path_name(const MoeGpuScratch& s, int rows);

}  // namespace gptoss::gpu
