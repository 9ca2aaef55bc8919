// kernels/gpu/decode.h: the decode path's kernels, for device steps of at most kDecodeMaxRows rows
// (batch-1 decode, chat, small server batches). There every weight byte is read once per step, so
// a step costs its weight bytes over the memory bandwidth plus its kernel boundaries: these
// kernels fuse what the batched path runs separately (the RMSNorm into the matmul that consumes
// it, RoPE and the KV-cache write into the qkv matmul's epilogue, the router's top-k into the
// router, the MoE combine into the second expert matmul) and stream the weights from every SM.
//
// Numerics: fp32 activations, fp32 accumulation, the same functions as the CPU twins named per
// kernel (compared in tests/gpu/decode_test.cu). A row's result does not depend on the other rows
// of its step (fixed per-row reduction order), so within the decode path a row is bit-identical
// whatever else runs with it; against the batched path it differs by summation order
// (docs/gpu.md, "Batch invariance").
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/bf16.h"
#include "gpu/launch_shapes.h"  // kDecodeMaxRows, kDecodeMaxK and the launch shapes
#include "gpu/moe.h"
#include "gpu/ops.h"  // KvPages
#include "gpu/vendor.h"

namespace gptoss::gpu {

// ---- dense matmul with an optional RMSNorm of its input ----------------------------------------
// y[n, m] (= | +=) sum_k W[m, k] * in[n, k] + bias[m] for n < rows, m < M, where
//   in[n, :] = x[src(n), :] (src(n) = row_index ? row_index[n] : n), or with norm_w given
//   RMSNorm(x[src(n), :]) * norm_w exactly as cpu::f32_bf16w_rmsnorm (mean of squares in fp64);
// then the dot product as cpu::f32_bf16w_matmul's function (fp32, another summation order).
// x [*, K] fp32, W [M, K] bf16, bias [M] bf16 or nullptr, y [rows, M] fp32.
// Requires rows <= kDecodeMaxRows, K % 8 == 0, K <= kDecodeMaxK.
struct DecodeMatmul {
  const float* x = nullptr;
  const int32_t* row_index = nullptr;
  const bf16_t* norm_w = nullptr;
  float eps = 0.0f;
  const bf16_t* w = nullptr;
  const bf16_t* bias = nullptr;
  float* y = nullptr;
  int rows = 0, K = 0, M = 0;
  bool accumulate = false;
};
void f32_bf16w_matmul_decode(const DecodeMatmul& a, gpuStream_t stream);

// ---- the attention block's input: RMSNorm, qkv matmul, RoPE, KV-cache write ------------------
// For each row n (position pos[n], KV slot slot[n]):
//   qkv[n, :] = f32_bf16w_matmul(RMSNorm(x[n, :]) * norm_w, qkv_w, qkv_b)   (as above)
//   q and k heads rotated as cpu::f32_rope_apply with rope_cs[pos[n]] (no FMA), k and v heads
//   written into the cache at pos's row (ops.h KvPages: ring index pos % cap, or the row's pool
//   block; bf16 rounded to nearest even, or fp32), as f32_rope_kv_write (ops.h). qkv [rows, (n_heads + 2 n_kv) head_dim] holds the rotated q and k
//   and the v heads afterwards (the attention kernels read q from it).
// Requires head_dim 64, rows <= kDecodeMaxRows, H % 8 == 0, H <= kDecodeMaxK.
struct DecodeQkv {
  const float* x = nullptr;            // [rows, H] residual stream
  const bf16_t* norm_w = nullptr;      // [H]
  float eps = 0.0f;
  const bf16_t* w = nullptr;           // [(n_heads + 2 n_kv) head_dim, H]
  const bf16_t* bias = nullptr;        // [(n_heads + 2 n_kv) head_dim]
  const float* rope_cs = nullptr;      // [ctx, head_dim] cos | sin
  const int32_t* pos = nullptr;        // [rows]
  const int32_t* slot = nullptr;       // [rows]
  float* qkv = nullptr;                // [rows, (n_heads + 2 n_kv) head_dim]
  void* k_cache = nullptr;             // [slots, cap, n_kv, head_dim] bf16 or fp32 (kv_f32),
  void* v_cache = nullptr;             // or a pool of blocks (pages)
  KvPages pages;                       // table nullptr: the ring
  bool kv_f32 = false;
  int rows = 0, H = 0, n_heads = 0, n_kv = 0, head_dim = 0, cap = 0;
};
void f32_bf16w_qkv_rope_decode(const DecodeQkv& a, gpuStream_t stream);

// ---- the MoE block (moe_decode.cu) ----------------------------------------------------------------
// residual[n, :] += sum_r w_r * expert_r(RMSNorm(residual[n, :]) * norm_w) for n < rows: the same
// function as cpu::f32_mf4w_moe on the normalised rows (router logits, top-k with ties to the lower
// expert, softmax over the k, MXFP4 experts with the clamped SwiGLU, the weighted sum in rank
// order). Three kernels: the router (RMSNorm, logits, the last block's top-k + softmax), the first
// expert matmul + SwiGLU per (row, rank) pair, the second per pair with the weighted sum into the
// residual done by the pair that finishes each tile last (in rank order: deterministic).
// Requires rows <= kDecodeMaxRows, H % 32 == 0, I % 32 == 0, H <= kDecodeSmallK (the router keeps a
// row per lane in registers), I <= kDecodeMaxK, k <= 8.
struct MoeDecodeScratch {
  int max_rows = 0, n_experts = 0, top_k = 0, hidden = 0, intermediate = 0;
  float* xn = nullptr;          // [max_rows, H] normalised rows
  float* logits = nullptr;      // [max_rows, E]
  int32_t* experts = nullptr;   // [max_rows, k]
  float* weights = nullptr;     // [max_rows, k]
  float* act = nullptr;         // [max_rows * k, I] SwiGLU outputs per pair
  float* y = nullptr;           // [max_rows * k, H] second matmul outputs per pair
  uint32_t* counters = nullptr; // [1 + max_rows * tiles of H]: the router's blocks-done ticket,
                                // then one ticket per (row, output tile) of the second matmul;
                                // all return to 0 after each launch (graph replays reuse them)
  // Both expert matmuls of a step in one launch (moe_decode.cu moe_experts_fused_kernel; the same
  // bits; NVIDIA; 0 = off unless moe_decode_use_fused sets it): 1 = the expert matmuls, 2 = with
  // the router's work inside the same launch for one-row steps. Its work queue, exit count, routed
  // flag and per-pair counters ([3 + max_rows * k], back to 0 after each launch) and its grids (the
  // blocks that fit at once; [0] the narrow shapes of 2-4 rows, [1] the wide one-row shapes, [2]
  // those with the router).
  int fused = 0;
  uint32_t* fused_ctl = nullptr;
  int fused_grid[3] = {0, 0, 0};
  int fused_grid_cap = 0;  // tests: > 0 caps the fused grid (every block then takes many items)
  size_t bytes = 0;
};
MoeDecodeScratch moe_decode_scratch_create(const MoeGpuWeights& w, int max_rows);
// The fused expert matmuls: level 0 off, 1 on, 2 on with the router inside for one-row steps
// (fails on HIP unless 0).
void moe_decode_use_fused(MoeDecodeScratch& s, int level);
void moe_decode_scratch_destroy(MoeDecodeScratch& s);
void moe_forward_decode(const MoeGpuWeights& w, const bf16_t* norm_w, float eps, float* residual,
                        int rows, MoeDecodeScratch& s, gpuStream_t stream);
// Benchmarks only (bench-kernels --moe-shapes): moe_forward_decode with candidate expert-matmul
// block shape i (< moe_decode_candidates(); NVIDIA: a list in moe_decode.cu; HIP: none) instead of
// the launch shapes' choice. K is summed in the same parts, so every candidate gives the same bits.
int moe_decode_candidates();
std::string moe_decode_candidate_name(int i);
void moe_forward_decode_candidate(int i, const MoeGpuWeights& w, const bf16_t* norm_w, float eps,
                                  float* residual, int rows, MoeDecodeScratch& s, gpuStream_t stream);
// Benchmarks only (bench-kernels --moe-probes): the one-row MoE chain with parts left out, to tell
// where its time goes (moe_decode.cu kProbes; NVIDIA; HIP: none). Their results are meaningless. A
// probe without the router's launch uses the experts of s's last routing: route once first.
int moe_decode_probes();
std::string moe_decode_probe_name(int i);
void moe_forward_decode_probe(int i, const MoeGpuWeights& w, const bf16_t* norm_w, float eps,
                              float* residual, MoeDecodeScratch& s, gpuStream_t stream);

}  // namespace gptoss::gpu
