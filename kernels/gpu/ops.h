// kernels/gpu/ops.h: host launchers of the GPU kernels. Every op has the same contract as its CPU
// twin in kernels/cpu/ops.h (named alike) unless stated; all pointers are device pointers, every
// launch goes to `stream` and returns without synchronising.
//
// Activations: the residual stream and every activation buffer are fp32 (as on the CPU). The GEMV
// (rows <= kGemvMaxRows) reads fp32 activations; the tensor-core GEMM in precision exact stages
// them as two bf16 halves hi + lo (x kept to 2^-17 relative; exact bf16 x bf16 products, fp32
// accumulation), so both paths are fp32-quality (~1e-5 apart); precision fast rounds them to bf16. The KV cache is bf16 (default) or fp32: every
// cache op has both forms.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/bf16.h"
#include "gpu/launch_shapes.h"
#include "gpu/vendor.h"

namespace gptoss::gpu {

// ---- embedding, norms, elementwise ----------------------------------------------------------
// x[n, :] = table[tokens[n], :] (bf16 -> fp32, exact). table [V, H], tokens [rows], x [rows, H].
void bf16_embed(const bf16_t* table, const int32_t* tokens, int rows, int H, float* x,
                gpuStream_t stream);

// y[n, :] = x[src(n), :] * rsqrt(mean(x[src(n), :]^2) + eps) * scale; src(n) = row_index[n] or n
// when row_index is nullptr. Mean of squares in fp64 (as the CPU twin), the rest fp32.
// x: [*, dim], y: [rows, dim] (may alias x only when row_index is nullptr).
void f32_bf16w_rmsnorm(const float* x, const bf16_t* scale, float* y, int rows, int dim,
                       float eps, const int32_t* row_index, gpuStream_t stream);

// y[i] += x[i].
void f32_add_inplace(float* y, const float* x, size_t n, gpuStream_t stream);

// ---- matmul ---------------------------------------------------------------------------------
// Precision of the tensor-core matrix work (--precision):
//   exact: fp32-quality: the activation operand as bf16 hi + lo (x kept to 2^-17 relative), two
//          MMAs per product, fp32 accumulation. The CPU engine's precision; what tests compare.
//   fast:  the activations rounded to bf16 (2^-9 relative) once, one MMA per product, fp32
//          accumulation: y = bf16(x) W^T exactly up to the fp32 summation order.
enum class Precision { exact, fast };

// y[n, m] (=|+=) sum_k x[n, k] W[m, k] + b[m]. x [rows, K] fp32, W [M, K] bf16, bias [M] bf16 or
// nullptr, y [rows, M] fp32 (row stride M), accumulate: y += instead of y =. K % 32 == 0.
// Dispatch: rows <= kGemvMaxRows -> GEMV (fp32 x, either precision: it is bandwidth-bound), else
// the tensor-core GEMM in `precision`. fast on NVIDIA needs x16: device scratch of rows x K bf16
// (x is rounded into it, then bf16_bf16w_gemm); HIP ignores it (the wave-tile GEMM stages the hi
// half only). gemm_sem (optional, fast on NVIDIA): kGemmSemSlots zeroed words of device scratch
// that let the fast GEMM split K (bf16_bf16w_gemm); the GEMM leaves them zeroed.
// kernel: the fast GEMM's kernel on NVIDIA (GemmKernel below).
inline constexpr int kGemvMaxRows = 8;
inline constexpr int kGemmSemSlots = 16384;
// The fast GEMM's kernel (NVIDIA, precision fast): mma = mma.sync m16n8k16 (sm_80+; the one that
// splits K), wgmma = Hopper's warpgroup MMA (gemm_wgmma.cu; sm_90a builds on an sm_90 GPU, where
// gemm_wgmma_available(); one K split). The two add K in different orders (~1e-6 apart); within
// one kernel a row's bits never depend on the other rows of the call. The engine takes wgmma
// where it can (BackendOptions::gemm_wgmma); the launchers' default argument is mma.
enum class GemmKernel { mma, wgmma };
bool gemm_wgmma_available();
void f32_bf16w_matmul(const float* x, const bf16_t* w, const bf16_t* bias, float* y, int rows,
                      int K, int M, bool accumulate, gpuStream_t stream,
                      Precision precision = Precision::exact, bf16_t* x16 = nullptr,
                      uint32_t* gemm_sem = nullptr, GemmKernel kernel = GemmKernel::mma);
// The two paths, for tests and the benchmark. gemv: rows <= kGemvMaxRows, K % 8 == 0.
// A row's result does not depend on `rows` within a path (fixed reduction order per row).
void f32_bf16w_gemv(const float* x, const bf16_t* w, const bf16_t* bias, float* y, int rows,
                    int K, int M, bool accumulate, gpuStream_t stream);
void f32_bf16w_gemm(const float* x, const bf16_t* w, const bf16_t* bias, float* y, int rows,
                    int K, int M, bool accumulate, gpuStream_t stream,
                    Precision precision = Precision::exact, bf16_t* x16 = nullptr,
                    uint32_t* gemm_sem = nullptr, GemmKernel kernel = GemmKernel::mma);
// NVIDIA: y (=|+=) x W^T + b with x already bf16 [rows, K] (the fast GEMM; any rows >= 1).
// splits: K split over that many blocks per output tile, added into y in split order (needs sem,
// kGemmSemSlots zeroed words); 0 = fast_gemm_splits(K, M) with sem, 1 without.
// kernel wgmma with splits > 1 is an error.
void bf16_bf16w_gemm(const bf16_t* x, const bf16_t* w, const bf16_t* bias, float* y, int rows,
                     int K, int M, bool accumulate, gpuStream_t stream, uint32_t* sem = nullptr,
                     int splits = 0, GemmKernel kernel = GemmKernel::mma);
// The wgmma kernel itself (any rows >= 1, K % 8 == 0; one K split): gemm_wgmma.cu.
void bf16_wgmma_gemm(const bf16_t* x, const bf16_t* w, const bf16_t* bias, float* y, int rows,
                     int K, int M, bool accumulate, gpuStream_t stream);
// The fast GEMM's K splits for an M x K weight (1..4): a function of (K, M) and the device's SM
// count only, so a row's result does not depend on the other rows of its step.
int fast_gemm_splits(int K, int M);
// y[i] = bf16(x[i]) (round to nearest even), n % 4 == 0.
void f32_to_bf16(const float* x, bf16_t* y, size_t n, gpuStream_t stream);

// ---- the KV cache's layout --------------------------------------------------------------------
// Where position j of slot s lives in a layer's cache (rows of n_kv * head_dim elements):
//   ring (table == nullptr): row s * cap + j % cap of [slots, cap, n_kv, head_dim] (every sliding
//     layer; the full layers of an unpaged cache, cap = ctx);
//   paged: row table[s * stride + j / B] * B + j % B of the pool [blocks, B, n_kv, head_dim],
//     B = 1 << shift positions per block (the full layers of a paged cache, B a power of two).
// The writers (RoPE + KV write, its decode twin) take each row's block from block[n] (the
// scheduler's RowPos::block for pos[n]) and record it in the table (table[slot[n] * stride +
// pos[n] / B] = block[n]) before they store; the readers (the attention kernels) look positions
// up in the table, so a kernel of a later launch sees every block the step's earlier rows wrote.
struct KvPages {
  int32_t* table = nullptr;        // [slots, stride] device; nullptr: the ring layout
  const int32_t* block = nullptr;  // [rows] device: each row's block (writers only)
  int stride = 0;                  // table entries per slot: ceil(ctx / B)
  int shift = 0;                   // log2(B)
};

// ---- RoPE + KV cache write ------------------------------------------------------------------
// For each row n (position pos[n], KV slot slot[n]): rotates the q heads of qkv[n] in place
// (half-split, cos/sin from rope_cs[pos] = cpu::rope_cos_sin, fp32, no FMA) and writes the rotated
// k heads and the v heads as bf16 into the caches at pos's row (KvPages: ring index pos % cap of
// [slots, cap, n_kv, head_dim], or the row's pool block).
//   qkv [rows, (n_heads + 2 n_kv) * head_dim] fp32, rope_cs [ctx, head_dim] fp32.
void f32_rope_kv_write(float* qkv, const float* rope_cs, const int32_t* pos, const int32_t* slot,
                       int rows, int n_heads, int n_kv_heads, int head_dim, bf16_t* k_cache,
                       bf16_t* v_cache, int cap, const KvPages& pages,
                       gpuStream_t stream);
// The same into an fp32 cache (stored exactly).
void f32_rope_kv_write(float* qkv, const float* rope_cs, const int32_t* pos, const int32_t* slot,
                       int rows, int n_heads, int n_kv_heads, int head_dim, float* k_cache,
                       float* v_cache, int cap, const KvPages& pages,
                       gpuStream_t stream);

// ---- attention with sinks -------------------------------------------------------------------
// For every row n and query head h: the CPU twin's f32_attention_sinks_head over the bf16 cache
// (keys max(0, pos - window + 1) .. pos, window 0 = causal over everything; the cache laid out as
// pages says: the ring [slots, cap, n_kv, head_dim] or a paged pool), q read from qkv[n]
// (already rotated), out [rows, n_heads * head_dim] fp32. head_dim must be 64;
// n_heads / n_kv_heads <= 8.
// Split-K (flash-decoding): the visible keys of a row are cut into pieces of kv_chunk keys
// (kv_chunk % 64 == 0), each piece reduced by one block with an online softmax, then the pieces
// and the sink are merged in piece order. The pieces depend only on the row's own position, so a
// row's result does not depend on the other rows. max_keys: the most keys any row may see
// (window if > 0, else cap); partial: scratch of attention_partial_floats(...) floats, zero-filled
// once before its first use (its tail holds the merge's tickets; every launch leaves them 0).
// skip_rows (optional, device [rows]): rows with a non-zero flag are left alone (out not written):
// the prompt-tile flash-attention kernel computes them.
// kAttnHeadDim, kAttnMaxGroup: launch_shapes.h.
// kernel (bf16 cache): auto = tensor cores on NVIDIA (q and p as bf16 hi + lo, fp32-quality),
// the scalar fp32 kernel on HIP; scalar = the scalar kernel everywhere (tests).
inline constexpr int kAttnRowsPerLaunch = 64;
enum class AttnKernel { auto_, scalar };
size_t attention_partial_floats(int n_heads, int max_keys, int kv_chunk);
void f32_bf16kv_attention_sinks(const float* qkv, const bf16_t* k_cache, const bf16_t* v_cache,
                                const bf16_t* sinks, const int32_t* pos, const int32_t* slot,
                                int rows, int n_heads, int n_kv_heads, int head_dim, int cap,
                                const KvPages& pages, int window, int max_keys, int kv_chunk,
                                float* partial, float* out, gpuStream_t stream,
                                const int32_t* skip_rows = nullptr,
                                AttnKernel kernel = AttnKernel::auto_);
// The same over an fp32 cache (same reduction order: only the loads differ).
void f32_f32kv_attention_sinks(const float* qkv, const float* k_cache, const float* v_cache,
                               const bf16_t* sinks, const int32_t* pos, const int32_t* slot,
                               int rows, int n_heads, int n_kv_heads, int head_dim, int cap,
                               const KvPages& pages, int window, int max_keys, int kv_chunk,
                               float* partial, float* out, gpuStream_t stream,
                               const int32_t* skip_rows = nullptr);

// ---- attention for prompt tiles (flash attention, kernels/gpu/attention_prefill.cu) ----------
// A query tile: rows row0 .. row0+n_rows-1 of the step are consecutive positions of one sequence
// (same slot, pos[row0 + i] = pos[row0] + i), 1 <= n_rows <= kAttnTileRows.
struct AttnTile {
  int32_t row0, n_rows;
};
// kAttnTileRows (64): launch_shapes.h.
// For every row of every tile (tiles[0 .. *n_tiles), n_tiles a DEVICE int so the launch is
// graph-capturable; the grid is sized by max_tiles, blocks beyond *n_tiles exit): out[row] = the
// same function as f32_bf16kv_attention_sinks (sinks, window, GQA; head_dim 64, G <= 8), computed
// as flash attention: a block per (tile, kv head, 128 query vectors (64 on AMD) of the tile's
// rows x G heads) stages each K/V tile once for those rows and heads; online softmax starting at
// the sink, causal within the tile, window per row; tensor cores with the non-bf16 operands split
// into bf16 parts (Q, and an fp32 cache's K, in three; P and an fp32 cache's V in two), fp32
// accumulation: ~3e-6 rel L2 from the CPU twin (the split-K path ~1e-6). Rows not in any tile are
// not touched. Every key a tile row sees must still be in the ring (the chunk's newest key - the
// oldest visible key < cap).
void f32_bf16kv_attention_sinks_tiles(const float* qkv, const bf16_t* k_cache,
                                      const bf16_t* v_cache, const bf16_t* sinks,
                                      const int32_t* pos, const int32_t* slot,
                                      const AttnTile* tiles, const int32_t* n_tiles, int max_tiles,
                                      int n_heads, int n_kv_heads, int head_dim, int cap,
                                      const KvPages& pages, int window, float* out,
                                      gpuStream_t stream);
// The same over an fp32 cache.
void f32_f32kv_attention_sinks_tiles(const float* qkv, const float* k_cache, const float* v_cache,
                                     const bf16_t* sinks, const int32_t* pos, const int32_t* slot,
                                     const AttnTile* tiles, const int32_t* n_tiles, int max_tiles,
                                     int n_heads, int n_kv_heads, int head_dim, int cap,
                                     const KvPages& pages, int window, float* out,
                                     gpuStream_t stream);

// ---- sampling -------------------------------------------------------------------------------
// out[n] = index of the largest x[n, :] (ties: lowest index; NaN never wins; all NaN -> 0).
void f32_argmax(const float* x, int rows, int n, int32_t* out, gpuStream_t stream);

// ---- read-bandwidth probe (bench-kernels --read-bw) -------------------------------------------
// Reads `bytes` (a multiple of 16) at p once with 16-byte loads from every SM (grid-stride, 4
// loads in flight per thread) and writes one sum per block into partial[blocks] so the loads
// are not dead; the time over bytes is the device's read bandwidth, the ceiling of a decode step.
// blocks: the grid (e.g. 4 x SMs); partial: device [blocks] floats.
void read_bandwidth_probe(const void* p, size_t bytes, int blocks, float* partial, gpuStream_t stream);
// The same read launched as a decode step's kernels are (vendor.h gpu_launch: with launch overlap
// when it is on, waiting for the previous kernel before its first load): a chain of these is the
// floor of a chain of dependent kernels that read those bytes.
void read_bandwidth_probe_chained(const void* p, size_t bytes, int blocks, float* partial,
                                  gpuStream_t stream);

// ---- device facts ---------------------------------------------------------------------------
// Throws a one-line Error when no GPU is usable ("no GPU found (...)").
void require_device();
// Whether a GPU is present (for tests that skip without one).
bool device_present();
// Streaming multiprocessors (compute units) of the current device, queried once per process.
int device_sm_count();
// Lets `kernel` (a __global__ function) take `bytes` of dynamic shared memory on the current
// device (needed above 48 KiB on NVIDIA): set once per (kernel, device) and remembered, so later
// calls, e.g. inside a graph capture, do nothing.
void opt_in_dynamic_smem(const void* kernel, size_t bytes);

}  // namespace gptoss::gpu
