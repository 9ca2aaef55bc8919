// kernels/gpu/launch_shapes.h: launch shapes of the GPU kernels outside the MoE that take dynamic
// shared memory: prompt-tile attention (attention_prefill.cu), token sampling (sample.cu), the
// decode path (decode.cu, moe_decode.cu) and the NVIDIA-only fast dense GEMMs (matmul.cu,
// gemm_wgmma.cu) and tensor-core split-K attention (attention.cu). The MoE's are in moe_plan.h. Host-only plain C++, like moe_plan.h: the launches take grid, block and
// shared memory from these functions, and the CPU build's gpu_launch_limits test checks the same
// functions against both targets (target.h says how a new kernel joins).
#pragma once
#include <cstddef>
#include <string>

#include "gpu/target.h"

namespace gptoss::gpu {

// ---- prompt-tile attention (f32_kv_attention_tiles_kernel<KvT>, ops.h) -------------------------
inline constexpr int kAttnHeadDim = 64;   // the head_dim supported
inline constexpr int kAttnMaxGroup = 8;   // query heads per kv head at most
inline constexpr int kAttnTileRows = 64;  // rows of one prompt tile at most

// Block shape for wave size W: NVIDIA 4 waves of 32 with 64-key tiles; AMD gfx90a 2 waves of 64
// with 32-key tiles (within its 64 KiB of LDS). A wave owns 32 query vectors (one wave tile).
template <int W>
struct AttnTilesDims {
  static constexpr int waves = W == 64 ? 2 : 4;   // per block
  static constexpr int keys = W == 64 ? 32 : 64;  // keys per staged K/V tile
  static constexpr int m = waves * 32;            // query vectors per block
  static constexpr int threads = waves * W;
  static constexpr int q_ld = kAttnHeadDim + 8;   // bf16 per staged Q / K row ([vector or key][dim])
  static constexpr int vt_ld = keys + 8;          // bf16 per staged V^T row ([dim][key])
  static constexpr int s_ld = keys + 4;           // floats per score row (as bf16: P hi, then lo)
};

// Byte offsets of the kernel's shared-memory regions (all 16-byte aligned). kSplit: fp32 KV cache
// (K in hi + mid + lo parts, V in hi + lo); else bf16 (K, V exact in one part).
template <int W, bool kSplit>
struct AttnTilesSmem {
  using D = AttnTilesDims<W>;
  static constexpr size_t q_hi = 0;
  static constexpr size_t q_mid = q_hi + size_t(D::m) * D::q_ld * 2;
  static constexpr size_t q_lo = q_mid + size_t(D::m) * D::q_ld * 2;
  static constexpr size_t k_hi = q_lo + size_t(D::m) * D::q_ld * 2;
  static constexpr size_t k_mid = k_hi + size_t(D::keys) * D::q_ld * 2;
  static constexpr size_t k_lo = k_mid + (kSplit ? size_t(D::keys) * D::q_ld * 2 : 0);
  static constexpr size_t vt_hi = k_lo + (kSplit ? size_t(D::keys) * D::q_ld * 2 : 0);
  static constexpr size_t vt_lo = vt_hi + size_t(kAttnHeadDim) * D::vt_ld * 2;
  static constexpr size_t sp = vt_lo + (kSplit ? size_t(kAttnHeadDim) * D::vt_ld * 2 : 0);
  static constexpr size_t m_run = sp + size_t(D::m) * D::s_ld * 4;
  static constexpr size_t l_run = m_run + D::m * 4;
  static constexpr size_t alpha = l_run + D::m * 4;
  static constexpr size_t jmin = alpha + D::m * 4;
  static constexpr size_t jmax = jmin + D::m * 4;
  static constexpr size_t bytes = jmax + D::m * 4;
  static_assert(q_mid % 16 == 0 && q_lo % 16 == 0 && k_hi % 16 == 0 && k_mid % 16 == 0 &&
                    k_lo % 16 == 0 && vt_hi % 16 == 0 && vt_lo % 16 == 0 && sp % 16 == 0,
                "aligned regions");
};

// The kernel's dynamic shared memory (it declares no static), and its launch for a grid of
// max_tiles tiles: grid (max_tiles, n_kv_heads, ceil(kAttnTileRows * G / m)), G = n_heads / n_kv.
size_t attn_tiles_smem_bytes(const GpuTarget& t, bool f32_cache);
KernelLaunch attn_tiles_launch(const GpuTarget& t, bool f32_cache, int max_tiles, int n_heads,
                               int n_kv_heads);

// ---- token sampling (pick_sample_kernel, sample.h) ----------------------------------------------
inline constexpr int kPickMaxTopK = 1024;        // largest candidate set handled exactly (sample.h)
inline constexpr int kPickThreads = 512;         // per block, one block per row
inline constexpr int kPickChunkPerLane = 8;      // ids per lane per chunk of the (c) path
inline constexpr int kPickGather = 2 * kPickMaxTopK;  // radix select stops at <= this many
inline constexpr int kPickGreedySplit = 32;      // blocks per greedy row (pick_greedy_kernel)
// Bound on the kernel's static shared memory (sample.cu's SampleShared; static_assert there).
inline constexpr size_t kPickSampleStaticSmemBytes = 2048;
// Dynamic: the larger of (b)/(d)'s keys [kPickGather] u64 + P [kPickMaxTopK] double, and (c)'s
// chunk sums [n_chunks] double + P [chunk] double, chunk = kPickChunkPerLane x wave size.
size_t pick_sample_smem_bytes(const GpuTarget& t, int vocab);
KernelLaunch pick_sample_launch(const GpuTarget& t, int rows, int vocab);

// ---- the decode path (decode.cu, moe_decode.cu; decode.h) --------------------------------------
inline constexpr int kDecodeMaxRows = 4;      // rows of a decode step at most
inline constexpr int kDecodeMaxK = 4096;      // input width of a decode matmul at most
inline constexpr int kDecodeThreads = 256;    // dense matmuls and the router
inline constexpr int kDecodeSmallK = 3072;    // K up to this: two weight rows per wave
inline constexpr size_t kDecodeStaticSmemBytes = 128;  // the kernels' own small __shared__ arrays
inline constexpr int kMoeDecodeTileM = 64;    // HIP: weight rows per block of the expert matmuls
// NVIDIA: the expert matmuls sum K in a fixed number of parts, added in part order (mlp1 2, mlp2
// 4), so a row's bits do not depend on the launch shape. Per block: groups of 16 weight rows, the
// warps per group (1: the group's parts in turn; or a warp per part), MXFP4 blocks per cp.async
// stage (kMoeDecodeStages per warp in flight). "Wide" for one-row steps: ~22 warps per SM instead
// of ~10 (mlp1) and ~5 (mlp2); with launch overlap it measured 5-6% faster at batch 1 on H100 and
// H200, slower at 2 and 4 rows, which keep the "narrow" 4-warp blocks (docs/performance.md,
// 2026-12-06 late).
struct MoeDecodeShape {
  int groups, split, stage_blocks, stages;
};
inline constexpr int kMoeDecodeParts1 = 2, kMoeDecodeParts2 = 4;
inline constexpr MoeDecodeShape kMoeDecodeWide1{4, 2, 4, 4}, kMoeDecodeWide2{2, 4, 4, 4};
inline constexpr MoeDecodeShape kMoeDecodeNarrow1{4, 1, 8, 4}, kMoeDecodeNarrow2{4, 1, 8, 4};
// Shared memory of an expert matmul block of shape s over K inputs: the input's fp16 hi|lo halves,
// each warp's rows' scales, each warp's cp.async ring.
inline size_t moe_decode_smem_bytes(const MoeDecodeShape& s, int K) {
  const size_t warps = size_t(s.groups) * s.split, nb = size_t(K) / 32;
  return nb * 128 + warps * 16 * nb + warps * s.stages * 16 * (size_t(s.stage_blocks) * 16 + 16);
}
inline bool moe_decode_wide(int rows) { return rows == 1; }
// The row bucket a decode kernel is instantiated for (1, 2 or 4 rows).
inline int decode_row_bucket(int rows) { return rows <= 1 ? 1 : rows == 2 ? 2 : 4; }
// Rows one launch of a decode matmul takes: all `rows`, or 2 when their staged inputs (the
// bucket's rows x K fp32) do not fit the target's shared memory (gfx90a: 4 rows of K 4096); the
// launcher then issues the rest as further launches.
int decode_rows_per_launch(const GpuTarget& t, int rows, int K);
// A dense decode matmul of `rows` (<= decode_rows_per_launch) rows, K inputs, M outputs (rope:
// the qkv kernel, whose groups are RoPE pairs), on a grid of the blocks that fit the SMs at once.
KernelLaunch decode_matmul_launch(const GpuTarget& t, int rows, int K, int M, bool rope,
                                  int sm_count);
// The router: ceil(E / (2 waves)) blocks; shared memory the bucket's rows of H, or the logits.
KernelLaunch moe_decode_route_launch(const GpuTarget& t, int rows, int H, int E);
// An expert matmul of a `rows`-row step over `pairs` (row, rank) pairs, K inputs, M weight rows
// per expert.
KernelLaunch moe_decode_mlp_launch(const GpuTarget& t, bool first, int rows, int pairs, int K, int M);
// "" when every launch of the decode MoE (router, both expert matmuls) fits t for every step of
// 1..min(max_rows, kDecodeMaxRows) rows at hidden H, intermediate I, E experts, top-k k; else the
// first that does not ("moe decode: a step of N rows: <launch_limit_error>"). moe_decode_scratch_create
// refuses such a shape at start.
std::string moe_decode_limits_error(const GpuTarget& t, int max_rows, int H, int I, int E, int k);

// ---- the fast dense GEMM, mma.sync (bf16_bf16w_gemm_kernel<BM, BN>, matmul.cu; NVIDIA only) ----
// Block BM (64 | 128) rows x BN (64 | 128) outputs, K in steps of kFastGemmBK through a
// kFastGemmStages-stage cp.async ring, rows padded to kFastGemmLd bf16; K split over `splits`
// blocks per output tile (grid z).
inline constexpr int kFastGemmBK = 32, kFastGemmLd = kFastGemmBK + 8, kFastGemmStages = 4;
inline constexpr int kFastGemmThreads = 256;
struct GemmTile {
  int bm, bn;  // rows, outputs per block
};
// Dynamic shared memory: every stage's x tile and W tile (the kernel declares no static).
constexpr size_t fast_gemm_smem_bytes(int bm, int bn) {
  return static_cast<size_t>(kFastGemmStages) * (bm + bn) * kFastGemmLd * 2;
}
// K splits for (K, M) on a GPU of sm_count SMs: enough blocks at 256 rows for two per SM, at most
// 4, each split >= 16 K steps (matmul.cu fast_gemm_splits; never depends on the step's rows).
int fast_gemm_auto_splits(int K, int M, int sm_count);
// The largest tile (128 x 128, 64 x 128, 64 x 64) whose grid (times the splits) still gives every
// SM two blocks.
GemmTile fast_gemm_tile(int rows, int M, int splits, int sm_count);
// The launch of `rows` x M with tile `tile`: grid (ceil(rows / bm), ceil(M / bn), splits).
KernelLaunch fast_gemm_launch(const GpuTarget& t, GemmTile tile, int rows, int M, int splits);

// ---- the fast dense GEMM on Hopper's wgmma (bf16_wgmma_gemm_kernel<WG, BN, 4>, gemm_wgmma.cu;
// sm_90a only) ---------------------------------------------------------------------------------
// Block: WG warpgroups of 64 rows (bm = 64 WG) x BN (64 | 128 | 256) outputs, K in stages of
// kWgmmaGemmBK through a kWgmmaGemmStages-stage ring; one K split.
inline constexpr int kWgmmaGemmBK = 64, kWgmmaGemmStages = 4;
// Dynamic shared memory: every stage's x and W tiles (bf16, 128-byte swizzle), + 1 KiB to align
// the tiles to 1024 bytes (the kernel declares no static).
constexpr size_t wgmma_gemm_smem_bytes(int bm, int bn) {
  return static_cast<size_t>(kWgmmaGemmStages) * (size_t(bm) + bn) * kWgmmaGemmBK * 2 + 1024;
}
// 64-row blocks for steps of at most 64 rows, else 128; outputs per block: the widest of 256
// (LM-head widths), 128, 64 whose grid still covers every SM (256: four times over).
GemmTile wgmma_gemm_tile(int rows, int M, int sm_count);
// The launch: grid (ceil(rows / bm), ceil(M / bn)), 128 threads per warpgroup.
KernelLaunch wgmma_gemm_launch(const GpuTarget& t, GemmTile tile, int rows, int M);

// ---- split-K attention, pass 1 on tensor cores (bf16kv_attention_partial_mma_kernel,
// attention.cu; NVIDIA, bf16 KV cache) -----------------------------------------------------------
// A row's visible keys (at most max_keys) are cut into pieces of kv_chunk keys, one block per
// (kv head, piece, row). Block: kAttnMmaWarps warps, 64-key tiles of K and V through a
// kAttnMmaStages-stage cp.async ring, rows padded to kAttnMmaLd bf16.
inline constexpr int kAttnMaxChunk = 1024;   // keys per piece at most
inline constexpr int kAttnMinBlocks = 2048;  // blocks per launch kept when lengthening pieces
inline constexpr int kAttnMmaWarps = 4;
inline constexpr int kAttnMmaTile = 16 * kAttnMmaWarps;  // keys per staged tile
inline constexpr int kAttnMmaStages = 3;
inline constexpr int kAttnMmaLd = kAttnHeadDim + 8;      // bf16 per staged row
inline constexpr size_t kAttnMmaSmemBytes =
    size_t(kAttnMmaStages) * 2 * kAttnMmaTile * kAttnMmaLd * 2;  // K then V per stage
// Bound on the kernel's static shared memory (the split-K merge's flag; attention.cu).
inline constexpr size_t kAttnMergeStaticSmemBytes = 16;
inline int attn_split_pieces(int max_keys, int kv_chunk) { return (max_keys + kv_chunk - 1) / kv_chunk; }
// The piece length a launch of launch_rows rows uses: the layer's kv_chunk, doubled (fewer,
// longer pieces) while <= kAttnMaxChunk and the launch keeps >= kAttnMinBlocks blocks.
int attn_split_chunk(int launch_rows, int n_kv_heads, int max_keys, int kv_chunk);
// One launch of launch_rows rows over `pieces` pieces: grid (n_kv_heads, pieces, launch_rows).
KernelLaunch attn_partial_mma_launch(const GpuTarget& t, int launch_rows, int n_kv_heads, int pieces);

}  // namespace gptoss::gpu
