// kernels/gpu/attention.cu: attention with sinks and a sliding window over the KV cache (bf16, or
// fp32 with --kv-cache f32),
// split-K (flash-decoding) for every row: decode rows and prompt-chunk rows take the same path
// (a prompt row is one more query at its own position; rows never wait for each other).
//   pass 1 (f32_kv_attention_partial_kernel): block = (kv head, piece, row); the G query heads
//     of the kv head share each staged 64-key tile of K and V (GQA); online softmax per head
//     (one group of 32 threads per head, reductions by shuffles);
//     writes (unnormalised out[64], running max, running sum) per (row, head, piece).
//   pass 1 on NVIDIA with a bf16 cache (bf16kv_attention_partial_mma_kernel): the same pieces and
//     partials on tensor cores (see the kernel); the scalar kernel stays HIP's path, the fp32
//     cache's, and AttnKernel::scalar's.
//   the merge: the last block of a (row, kv head) to finish (a ticket per pair, in the partial
//     scratch's tail, returned to 0 by that block) merges the pieces of its G heads in piece
//     order with the sink and writes the output rows: no second launch.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "gpu/device_utils.h"
#include "gpu/ops.h"
#include "gpu/tile.h"

namespace gptoss::gpu {

namespace {
constexpr int kHD = kAttnHeadDim;       // 64
constexpr int kKeyTile = 64;            // keys staged per iteration
constexpr int kAttnThreads = 256;       // 8 heads x 32 sub-lanes (sub-lanes are not wave lanes)
constexpr int kPartStride = kHD + 2;    // out[64], m, l
// kAttnMaxChunk, kAttnMinBlocks (the pieces' lengths): launch_shapes.h.
}  // namespace

// A 16-byte piece of a cache row -> floats (bf16: 8 values, fp32: 4).
__device__ __forceinline__ void load16_f32(const uint16_t* p, float* d) {
  const uint4 w = *reinterpret_cast<const uint4*>(p);
  d[0] = bf16_lo(w.x), d[1] = bf16_hi(w.x), d[2] = bf16_lo(w.y), d[3] = bf16_hi(w.y);
  d[4] = bf16_lo(w.z), d[5] = bf16_hi(w.z), d[6] = bf16_lo(w.w), d[7] = bf16_hi(w.w);
}
__device__ __forceinline__ void load16_f32(const float* p, float* d) {
  const float4 a = *reinterpret_cast<const float4*>(p);
  d[0] = a.x, d[1] = a.y, d[2] = a.z, d[3] = a.w;
}
// Two consecutive cache elements -> two floats.
__device__ __forceinline__ float2 load2_f32(const uint16_t* p) {
  const uint32_t w = *reinterpret_cast<const uint32_t*>(p);
  return make_float2(bf16_lo(w), bf16_hi(w));
}
__device__ __forceinline__ float2 load2_f32(const float* p) {
  return *reinterpret_cast<const float2*>(p);
}
// Sum / max over the 32 sub-lanes of one head (a CUDA warp; half of a 64-wide AMD wave: the xor
// offsets stay inside the aligned group of 32).
__device__ __forceinline__ float group32_sum(float v) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v += gpu_shfl_xor(v, m);
  return v;
}
__device__ __forceinline__ float group32_max(float v) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, gpu_shfl_xor(v, m));
  return v;
}
// Sub-lane j's value within this thread's group of 32.
__device__ __forceinline__ float group32_get(float v, int j) {
#if defined(GPTOSS_HIP)
  return __shfl(v, j, 32);
#else
  return __shfl_sync(0xffffffffu, v, j, 32);
#endif
}

// The split-K merge (flash-decoding's second pass) by the last of a (row n, kv head) pair's
// blocks to finish: every block of the pair calls this after writing its pieces' partials
// (all of its threads: it has barriers). The block that takes the last ticket merges the pieces
// of the kv head's G query heads in piece order with the sink, as the separate combine kernel
// did (same operations, same order): the pieces' (m, l) are staged in shared memory `sm`
// (>= kMergeSmemFloats: the kernel's idle K/V buffers), a thread per head forms the sink's and
// pieces' weights, then a thread per output (head, dim) sums its pieces' values, all loaded at
// once (ld_coherent: past L1; a volatile load per piece would cost a round trip each). The
// ticket goes back to 0 for the next launch.
constexpr int kMergeSmemFloats = kKeyTile * (kHD + 8) * 2 / 4;  // the bf16 K tile's bytes / 4
__device__ void merge_pieces_if_last(const float* partial, const uint16_t* __restrict__ sinks,
                                     uint32_t* tickets, int n, int kvh, int G, int n_heads,
                                     int n_kv, int n_pieces, int n_valid, float* __restrict__ out,
                                     float* sm) {
  __shared__ int last;  // the kernels' only static shared memory (kAttnMergeStaticSmemBytes)
  static_assert(sizeof(int) <= kAttnMergeStaticSmemBytes, "static shared memory within the bound");
  __threadfence();  // this block's partials, before its ticket
  __syncthreads();
  if (threadIdx.x == 0)
    last = atomicAdd(tickets + n * n_kv + kvh, 1u) == static_cast<unsigned>(n_pieces - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  // [h][piece] partials of the kv head's first query head onwards (ops.h's layout)
  const float* base = partial + (static_cast<size_t>(n) * n_heads + kvh * G) * n_pieces * kPartStride;
  // Only the first n_valid pieces can hold keys (the later ones wrote m = -inf, which the merge
  // skips): they alone are read.
  const int V = n_valid;
  float* fm = sm;             // [G][V] m, then the piece's weight (-1: no keys)
  float* fl = sm + G * V;     // [G][V] l
  float* den = fl + G * V;    // [G]
  for (int i = threadIdx.x; i < G * V; i += blockDim.x) {
    const float* pp = base + (static_cast<size_t>(i / V) * n_pieces + i % V) * kPartStride;
    fm[i] = ld_coherent(pp + kHD);
    fl[i] = ld_coherent(pp + kHD + 1);
  }
  __syncthreads();
  for (int h = threadIdx.x; h < G; h += blockDim.x) {
    const float sink = bf16_bits_to_f32(sinks[kvh * G + h]);
    float* f = fm + h * V;
    float m = sink;
    for (int s = 0; s < V; ++s) m = fmaxf(m, f[s]);
    float d = expf(sink - m);
    for (int s = 0; s < V; ++s) {
      const float ms = f[s];
      if (ms == -INFINITY) {
        f[s] = -1.0f;
        continue;
      }
      f[s] = expf(ms - m);
      d += fl[h * V + s] * f[s];
    }
    den[h] = d;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < G * kHD; i += blockDim.x) {
    const int h = i / kHD, d = i % kHD;
    const float* src = base + static_cast<size_t>(h) * n_pieces * kPartStride + d;
    const float* f = fm + h * V;
    float o = 0.0f;
#pragma unroll 8
    for (int s = 0; s < V; ++s) {
      const float v = ld_coherent(src + static_cast<size_t>(s) * kPartStride);  // (unused when empty)
      if (f[s] >= 0.0f) o = fmaf(v, f[s], o);
    }
    out[(static_cast<size_t>(n) * n_heads + kvh * G + h) * kHD + d] = o / den[h];
  }
  if (threadIdx.x == 0) tickets[n * n_kv + kvh] = 0;
}

// KvT: uint16_t (bf16 bits) or float. K and V tiles are staged in shared memory as stored (no
// conversion), rows padded by 16 bytes so that both the 16-byte key reads (sub-lane l reads key
// rows l and l + 32) and the value reads (sub-lane l reads dims 2l, 2l + 1 of a row) are free of
// bank conflicts. Head h is one group of 32 sub-lanes: sub-lane l scores keys l and l + 32
// (query read as broadcast float4s), the tile's max and the probabilities' exchange go through
// shuffles within the group, and sub-lane l accumulates output dims 2l and 2l + 1.
template <class KvT>
__global__ void __launch_bounds__(kAttnThreads)
    f32_kv_attention_partial_kernel(const float* __restrict__ qkv,
                                        const KvT* __restrict__ k_cache,
                                        const KvT* __restrict__ v_cache,
                                        const int32_t* __restrict__ pos,
                                        const int32_t* __restrict__ slot,
                                        const int32_t* __restrict__ skip,
                                        const uint16_t* __restrict__ sinks, int n_heads, int n_kv,
                                        int cap, KvPages pages, int window, int kv_chunk,
                                        int n_pieces,
                                        float* __restrict__ partial, uint32_t* tickets,
                                        float* __restrict__ out) {
  constexpr int kPer16 = 16 / sizeof(KvT);       // cache elements per 16 bytes
  constexpr int kLd = kHD + kPer16;              // staged row stride (elements)
  constexpr int kRowChunks = kHD / kPer16;       // 16-byte pieces per row
  __shared__ __align__(16) float qs[kAttnMaxGroup][kHD];
  __shared__ __align__(16) KvT ks[kKeyTile * kLd];
  __shared__ __align__(16) KvT vs[kKeyTile * kLd];
  const int kvh = blockIdx.x, piece = blockIdx.y, n = blockIdx.z;
  gpu_grid_wait();  // launch overlap (vendor.h): nothing before it
  gpu_grid_trigger();
  if (skip && skip[n]) return;  // a row of a prompt tile: the flash-attention kernel owns it
  const int G = n_heads / n_kv;
  const int h = threadIdx.x / 32, l = threadIdx.x % 32;
  const int p = pos[n];
  const int j0 = window > 0 ? max(0, p - window + 1) : 0;
  const int jb = j0 + piece * kv_chunk;
  const int je = min(p + 1, jb + kv_chunk);
  const int n_valid = min(n_pieces, (p + 1 - j0 + kv_chunk - 1) / kv_chunk);  // pieces with keys
  float* part = partial + ((static_cast<size_t>(n) * n_heads + kvh * G + h) * n_pieces + piece) *
                              kPartStride;
  if (jb >= je) {
    if (h < G && l == 0) part[kHD] = -INFINITY;
    merge_pieces_if_last(partial, sinks, tickets, n, kvh, G, n_heads, n_kv, n_pieces, n_valid, out,
                         reinterpret_cast<float*>(ks));
    return;
  }
  const size_t R = static_cast<size_t>(n_heads + 2 * n_kv) * kHD;
  for (int t = threadIdx.x; t < G * kHD; t += kAttnThreads)
    qs[t / kHD][t % kHD] = qkv[n * R + static_cast<size_t>(kvh * G) * kHD + t];
  const int sl = slot[n];
  const float scale = 1.0f / sqrtf(static_cast<float>(kHD));

  // The next tile's K and V are loaded into registers while the current one is consumed.
  constexpr int kLoads = kKeyTile * kRowChunks / kAttnThreads;
  static_assert(kLoads * kAttnThreads == kKeyTile * kRowChunks, "tile pieces per thread");
  uint4 kr[kLoads], vr[kLoads];
  const auto fetch = [&](int t0) {
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      const int c = threadIdx.x + i * kAttnThreads;
      const int j = t0 + c / kRowChunks;
      kr[i] = vr[i] = make_uint4(0, 0, 0, 0);
      if (j < je) {
        const size_t off = (kv_cache_row(pages, sl, cap, j) * n_kv + kvh) * kHD +
                           kPer16 * (c % kRowChunks);
        kr[i] = *reinterpret_cast<const uint4*>(k_cache + off);
        vr[i] = *reinterpret_cast<const uint4*>(v_cache + off);
      }
    }
  };
  fetch(jb);
  float m_run = -INFINITY, l_run = 0.0f, o0 = 0.0f, o1 = 0.0f;
  for (int t0 = jb; t0 < je; t0 += kKeyTile) {
    __syncthreads();  // previous tile fully consumed (and qs written on the first pass)
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      const int c = threadIdx.x + i * kAttnThreads;
      const int e = (c / kRowChunks) * kLd + kPer16 * (c % kRowChunks);
      *reinterpret_cast<uint4*>(&ks[e]) = kr[i];
      *reinterpret_cast<uint4*>(&vs[e]) = vr[i];
    }
    __syncthreads();
    if (t0 + kKeyTile < je) fetch(t0 + kKeyTile);
    if (h < G) {
      // Scores of keys l and l + 32.
      float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
      for (int c = 0; c < kRowChunks; ++c) {
        float k0[kPer16], k1[kPer16];
        load16_f32(&ks[l * kLd + kPer16 * c], k0);
        load16_f32(&ks[(l + 32) * kLd + kPer16 * c], k1);
#pragma unroll
        for (int e = 0; e < kPer16; e += 4) {
          const float4 q = *reinterpret_cast<const float4*>(&qs[h][kPer16 * c + e]);
          s0 = fmaf(q.x, k0[e], s0), s1 = fmaf(q.x, k1[e], s1);
          s0 = fmaf(q.y, k0[e + 1], s0), s1 = fmaf(q.y, k1[e + 1], s1);
          s0 = fmaf(q.z, k0[e + 2], s0), s1 = fmaf(q.z, k1[e + 2], s1);
          s0 = fmaf(q.w, k0[e + 3], s0), s1 = fmaf(q.w, k1[e + 3], s1);
        }
      }
      s0 = (t0 + l < je) ? s0 * scale : -INFINITY;
      s1 = (t0 + l + 32 < je) ? s1 * scale : -INFINITY;
      const float m_new = fmaxf(m_run, group32_max(fmaxf(s0, s1)));  // finite: key t0 < je
      const float p0 = expf(s0 - m_new), p1 = expf(s1 - m_new);
      const float alpha = expf(m_run - m_new);  // 0 on the first tile (m_run = -inf)
      l_run = l_run * alpha + group32_sum(p0 + p1);
      o0 *= alpha;
      o1 *= alpha;
#pragma unroll 8
      for (int j = 0; j < 32; ++j) {
        const float pa = group32_get(p0, j), pb = group32_get(p1, j);
        const float2 va = load2_f32(&vs[j * kLd + 2 * l]);
        const float2 vb = load2_f32(&vs[(j + 32) * kLd + 2 * l]);
        o0 = fmaf(pa, va.x, o0), o1 = fmaf(pa, va.y, o1);
        o0 = fmaf(pb, vb.x, o0), o1 = fmaf(pb, vb.y, o1);
      }
      m_run = m_new;
    }
  }
  if (h < G) {
    *reinterpret_cast<float2*>(&part[2 * l]) = make_float2(o0, o1);
    if (l == 0) part[kHD] = m_run, part[kHD + 1] = l_run;
  }
  merge_pieces_if_last(partial, sinks, tickets, n, kvh, G, n_heads, n_kv, n_pieces, n_valid, out,
                       reinterpret_cast<float*>(ks));
}

#if !defined(GPTOSS_HIP)
// ---- pass 1 on tensor cores (NVIDIA, bf16 cache) ---------------------------------------------
// Block = (kv head, piece, row) as above, 4 warps; the block stages 64-key tiles of K and V with
// cp.async (3 stages, rows padded to 72 bf16: conflict-free ldmatrix), warp w takes keys
// 16w .. 16w + 15 of every tile with its own online softmax, and the 4 warp states are merged at
// the end into the same partial (out[64], m, l) per head as the scalar kernel's.
// The G <= 8 query heads fill the 16 rows of an m16n8k16 A operand twice: row h = bf16 hi of head
// h's query, row 8 + h = bf16 lo (q - hi): S^T-free scores S = Q K^T come out per head as
// row h + row 8 + h (q kept to 2^-17 relative, products exact, fp32 sums). The probabilities go
// back in as the A operand the same way (row h = bf16 hi of p, row 8 + h = lo; the accumulator
// layout of S is the A layout of P, so no data moves between lanes), and O = P V takes V through
// ldmatrix.trans. Numerics: fp32-quality like the scalar kernel (~1e-6 apart); the MMAs are cheap
// (16 per 16 keys): the kernel is bound by the cache bytes, which the scalar kernel is not (its
// fp32 FMAs, ~8 per cache byte, saturate the SMs first).
// Tile constants, shared memory and the launch: launch_shapes.h (attn_partial_mma_launch), which
// gpu_launch_limits checks.
constexpr int kMmaWarps = kAttnMmaWarps, kMmaThreads = 32 * kMmaWarps;
constexpr int kMmaTile = kAttnMmaTile;    // keys per staged tile
constexpr int kMmaStages = kAttnMmaStages;
constexpr int kMmaLd = kAttnMmaLd;        // bf16 per staged row
constexpr int kMmaStageElems = 2 * kMmaTile * kMmaLd;  // K then V
constexpr size_t kMmaSmemBytes = kAttnMmaSmemBytes;
static_assert(kMmaSmemBytes == size_t(kMmaStages) * kMmaStageElems * sizeof(uint16_t), "the stages");
static_assert(kMmaSmemBytes >= sizeof(float) * kMergeSmemFloats, "the merge's staging reuses the stages");
static_assert(kMmaSmemBytes >= sizeof(float) * kMmaWarps * kAttnMaxGroup * (kHD + 2),
              "the merge area reuses the stages");

__global__ void __launch_bounds__(kMmaThreads)
    bf16kv_attention_partial_mma_kernel(const float* __restrict__ qkv,
                                        const uint16_t* __restrict__ k_cache,
                                        const uint16_t* __restrict__ v_cache,
                                        const int32_t* __restrict__ pos,
                                        const int32_t* __restrict__ slot,
                                        const int32_t* __restrict__ skip,
                                        const uint16_t* __restrict__ sinks, int n_heads, int n_kv,
                                        int cap, KvPages pages, int window, int kv_chunk,
                                        int n_pieces,
                                        float* __restrict__ partial, uint32_t* tickets,
                                        float* __restrict__ out) {
  extern __shared__ uint4 attn_mma_smem4[];
  uint16_t* smem = reinterpret_cast<uint16_t*>(attn_mma_smem4);
  const int kvh = blockIdx.x, piece = blockIdx.y, n = blockIdx.z;
  gpu_grid_wait();  // launch overlap (vendor.h): nothing before it
  gpu_grid_trigger();
  if (skip && skip[n]) return;
  const int G = n_heads / n_kv;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int p = pos[n];
  const int j0 = window > 0 ? max(0, p - window + 1) : 0;
  const int jb = j0 + piece * kv_chunk;
  const int je = min(p + 1, jb + kv_chunk);
  const int n_valid = min(n_pieces, (p + 1 - j0 + kv_chunk - 1) / kv_chunk);  // pieces with keys
  const size_t head_stride = static_cast<size_t>(n_pieces) * kPartStride;
  float* part = partial + ((static_cast<size_t>(n) * n_heads + kvh * G) * n_pieces + piece) * kPartStride;
  if (jb >= je) {
    if (tid < G) part[tid * head_stride + kHD] = -INFINITY;
    merge_pieces_if_last(partial, sinks, tickets, n, kvh, G, n_heads, n_kv, n_pieces, n_valid, out,
                         reinterpret_cast<float*>(smem));
    return;
  }
  const int sl = slot[n];
  const int n_tiles = (je - jb + kMmaTile - 1) / kMmaTile;

  // Chunk c (16 bytes) of a tile: key c / 8, dims 8 (c % 8); 4 K and 4 V chunks per thread.
  auto load = [&](int kt, int st) {
    uint16_t* ks = smem + st * kMmaStageElems;
    uint16_t* vs = ks + kMmaTile * kMmaLd;
#pragma unroll
    for (int i = 0; i < kMmaTile * 8 / kMmaThreads; ++i) {
      const int c = tid + i * kMmaThreads, r = c / 8, d = 8 * (c % 8);
      const int j = jb + kt * kMmaTile + r;
      const bool ok = j < je;
      const size_t off = ok ? (kv_cache_row(pages, sl, cap, j) * n_kv + kvh) * kHD + d : 0;
      tile::cp_async16_zfill(ks + r * kMmaLd + d, k_cache + off, ok);
      tile::cp_async16_zfill(vs + r * kMmaLd + d, v_cache + off, ok);
    }
  };
#pragma unroll
  for (int st = 0; st < kMmaStages - 1; ++st) {
    if (st < n_tiles) load(st, st);
    tile::cp_async_commit();
  }

  // Q as the A operand of each 16-dim K step: rows g (hi) and g + 8 (lo) of head g.
  uint32_t qa[kHD / 16][4];
  {
    const size_t R = static_cast<size_t>(n_heads + 2 * n_kv) * kHD;
    const float* q = qkv + n * R + static_cast<size_t>(kvh * G + min(g, G - 1)) * kHD;
#pragma unroll
    for (int ks = 0; ks < kHD / 16; ++ks)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int d = 16 * ks + 8 * half + 2 * t;
        const float x0 = g < G ? q[d] : 0.0f, x1 = g < G ? q[d + 1] : 0.0f;
        const uint32_t hi = pack_bf16x2(x0, x1);
        qa[ks][2 * half] = hi;
        qa[ks][2 * half + 1] = pack_bf16x2(x0 - bf16_lo(hi), x1 - bf16_hi(hi));
      }
  }
  const float scale = 1.0f / sqrtf(static_cast<float>(kHD));
  float m_run = -INFINITY, l_run = 0.0f;
  float o[kHD / 8][4];
#pragma unroll
  for (int j = 0; j < kHD / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[j][e] = 0.0f;

  for (int kt = 0; kt < n_tiles; ++kt) {
    tile::cp_async_wait<kMmaStages - 2>();
    __syncthreads();  // tile kt visible; the stage refilled next was consumed in kt - 1
    {
      const int nx = kt + kMmaStages - 1;
      if (nx < n_tiles) load(nx, nx % kMmaStages);
      tile::cp_async_commit();
    }
    const int key0 = jb + kt * kMmaTile + 16 * warp;  // this warp's first key
    if (key0 >= je) continue;
    const uint16_t* ks = smem + (kt % kMmaStages) * kMmaStageElems + 16 * warp * kMmaLd;
    const uint16_t* vs = ks + kMmaTile * kMmaLd;
    // S: two n8 tiles of keys; K fragments by ldmatrix (matrices: keys 0-7 | 8-15 x dims lo | hi).
    float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
    for (int kk = 0; kk < kHD / 16; ++kk) {
      uint32_t kb[4];
      tile::ldmatrix_x4(kb, ks + (8 * (lane / 16) + lane % 8) * kMmaLd + 16 * kk + 8 * ((lane / 8) % 2));
      tile::mma_m16n8k16(s[0], qa[kk], &kb[0]);
      tile::mma_m16n8k16(s[1], qa[kk], &kb[2]);
    }
    // Head g, keys key0 + 8 nt + 2 t + e: score = (row g + row g + 8) / 8, masked past je.
    float sc[2][2], mx = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const bool ok = key0 + 8 * nt + 2 * t + e < je;
        sc[nt][e] = ok ? (s[nt][e] + s[nt][2 + e]) * scale : -INFINITY;
        mx = fmaxf(mx, sc[nt][e]);
      }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m_run, mx);
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;
    const float alpha = expf(m_run - m_use);  // 0 while nothing was seen (m_run = -inf)
    float pv[2][2], psum = 0.0f;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        pv[nt][e] = expf(sc[nt][e] - m_use);
        psum += pv[nt][e];
      }
    l_run = l_run * alpha + psum;  // this lane's keys; summed over the 4 lanes of head g at the end
    m_run = m_new;
#pragma unroll
    for (int j = 0; j < kHD / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[j][e] *= alpha;
    // P as the A operand: a0 / a2 = hi of keys 2t.. / 2t + 8.. (rows g), a1 / a3 = lo (rows g + 8).
    uint32_t pa[4];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      const uint32_t hi = pack_bf16x2(pv[nt][0], pv[nt][1]);
      pa[2 * nt] = hi;
      pa[2 * nt + 1] = pack_bf16x2(pv[nt][0] - bf16_lo(hi), pv[nt][1] - bf16_hi(hi));
    }
    // O += P V: V fragments by ldmatrix.trans (matrices: keys 0-7 | 8-15 x dims 8j | 8j + 8).
#pragma unroll
    for (int j = 0; j < kHD / 8; j += 2) {
      uint32_t vb[4];
      tile::ldmatrix_x4_trans(vb, vs + (8 * ((lane / 8) % 2) + lane % 8) * kMmaLd + 8 * j + 8 * (lane / 16));
      tile::mma_m16n8k16(o[j], pa, &vb[0]);
      tile::mma_m16n8k16(o[j + 1], pa, &vb[2]);
    }
  }
  tile::cp_async_wait<0>();
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 1);
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 2);

  // Merge the warps: [warp][head] m, l and out[64], in the (now idle) stage buffers.
  __syncthreads();
  float* mrg = reinterpret_cast<float*>(smem);
  float* wm = mrg + (warp * kAttnMaxGroup + g) * (kHD + 2);
  if (t == 0) wm[kHD] = m_run, wm[kHD + 1] = l_run;
#pragma unroll
  for (int j = 0; j < kHD / 8; ++j)
#pragma unroll
    for (int e = 0; e < 2; ++e) wm[8 * j + 2 * t + e] = o[j][e] + o[j][2 + e];
  __syncthreads();
  for (int i = tid; i < G * kHD; i += kMmaThreads) {
    const int h = i / kHD, d = i % kHD;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kMmaWarps; ++w) M = fmaxf(M, mrg[(w * kAttnMaxGroup + h) * (kHD + 2) + kHD]);
    float O = 0.0f, L = 0.0f;
#pragma unroll
    for (int w = 0; w < kMmaWarps; ++w) {
      const float* s = mrg + (w * kAttnMaxGroup + h) * (kHD + 2);
      if (s[kHD] == -INFINITY) continue;  // a warp that saw no key of this piece
      const float f = expf(s[kHD] - M);
      O = fmaf(s[d], f, O);
      L = fmaf(s[kHD + 1], f, L);
    }
    float* dst = part + h * head_stride;
    dst[d] = O;
    if (d == 0) dst[kHD] = M, dst[kHD + 1] = L;
  }
  merge_pieces_if_last(partial, sinks, tickets, n, kvh, G, n_heads, n_kv, n_pieces, n_valid, out,
                       reinterpret_cast<float*>(smem));
}
#endif

static int attention_pieces(int max_keys, int kv_chunk) { return attn_split_pieces(max_keys, kv_chunk); }

// The partials of a launch, then its tickets (one uint32 per (row, kv head) <= n_heads per row).
static size_t attention_partial_part(int n_heads, int max_keys, int kv_chunk) {
  return static_cast<size_t>(kAttnRowsPerLaunch) * n_heads * attention_pieces(max_keys, kv_chunk) *
         kPartStride;
}
size_t attention_partial_floats(int n_heads, int max_keys, int kv_chunk) {
  return attention_partial_part(n_heads, max_keys, kv_chunk) +
         static_cast<size_t>(kAttnRowsPerLaunch) * n_heads;
}

template <class KvT>
static void attention_sinks(const float* qkv, const KvT* k_cache, const KvT* v_cache,
                            const bf16_t* sinks, const int32_t* pos, const int32_t* slot,
                            const int32_t* skip, int rows, int n_heads, int n_kv_heads,
                            int head_dim, int cap, const KvPages& pages, int window,
                            int max_keys, int kv_chunk, float* partial, float* out,
                            gpuStream_t stream, AttnKernel kernel) {
  if (rows <= 0) return;
  GPTOSS_ASSERT(head_dim == kHD && n_heads % n_kv_heads == 0 &&
                n_heads / n_kv_heads <= kAttnMaxGroup && kv_chunk % kKeyTile == 0);
  // Many rows: longer pieces (fewer blocks, each streaming more tiles; fewer partials to merge)
  // while a launch keeps >= kAttnMinBlocks blocks (attn_split_chunk, launch_shapes.h). The
  // layer's kv_chunk (sized for few rows) sets the partial buffer, which fewer pieces always fit.
  uint32_t* tickets = reinterpret_cast<uint32_t*>(partial + attention_partial_part(n_heads, max_keys, kv_chunk));
  kv_chunk = attn_split_chunk(std::min(kAttnRowsPerLaunch, rows), n_kv_heads, max_keys, kv_chunk);
  const int pieces = attention_pieces(max_keys, kv_chunk);
  const int G = n_heads / n_kv_heads;
  GPTOSS_ASSERT(2 * G * pieces + G <= kMergeSmemFloats);  // the merge's staging (~140 pieces)
  const size_t R = static_cast<size_t>(n_heads + 2 * n_kv_heads) * head_dim;
  for (int r0 = 0; r0 < rows; r0 += kAttnRowsPerLaunch) {
    const int nr = std::min(kAttnRowsPerLaunch, rows - r0);
    dim3 grid1(n_kv_heads, pieces, nr);
    float* rows_out = out + static_cast<size_t>(r0) * n_heads * head_dim;
    bool mma = false;
    (void)kernel;
#if !defined(GPTOSS_HIP)
    if constexpr (std::is_same_v<KvT, uint16_t>) {
      if (kernel != AttnKernel::scalar) {
        const KernelLaunch l = attn_partial_mma_launch(kTarget, nr, n_kv_heads, pieces);
        GPTOSS_ASSERT(l.threads == kMmaThreads && l.grid_y == pieces);
        opt_in_dynamic_smem(reinterpret_cast<const void*>(bf16kv_attention_partial_mma_kernel),
                            l.dyn_smem_bytes);  // > 48 KiB
        gpu_launch(bf16kv_attention_partial_mma_kernel, dim3(l.grid_x, l.grid_y, l.grid_z),
                   dim3(l.threads), l.dyn_smem_bytes, stream, qkv + r0 * R, k_cache, v_cache,
                   pos + r0, slot + r0, skip ? skip + r0 : nullptr,
                   reinterpret_cast<const uint16_t*>(sinks), n_heads, n_kv_heads, cap, pages,
                   window, kv_chunk, pieces, partial, tickets, rows_out);
        mma = true;
      }
    }
#endif
    if (!mma) {
      gpu_launch(f32_kv_attention_partial_kernel<KvT>, grid1, dim3(kAttnThreads), 0, stream,
                 qkv + r0 * R, k_cache, v_cache, pos + r0, slot + r0, skip ? skip + r0 : nullptr,
                 reinterpret_cast<const uint16_t*>(sinks), n_heads, n_kv_heads, cap, pages,
                 window, kv_chunk, pieces, partial, tickets, rows_out);
    }
  }
}

void f32_bf16kv_attention_sinks(const float* qkv, const bf16_t* k_cache, const bf16_t* v_cache,
                                const bf16_t* sinks, const int32_t* pos, const int32_t* slot,
                                int rows, int n_heads, int n_kv_heads, int head_dim, int cap,
                                const KvPages& pages, int window, int max_keys, int kv_chunk,
                                float* partial, float* out, gpuStream_t stream,
                                const int32_t* skip_rows, AttnKernel kernel) {
  attention_sinks<uint16_t>(qkv, k_cache, v_cache, sinks, pos, slot, skip_rows, rows, n_heads,
                            n_kv_heads, head_dim, cap, pages, window, max_keys, kv_chunk, partial, out,
                            stream, kernel);
}

void f32_f32kv_attention_sinks(const float* qkv, const float* k_cache, const float* v_cache,
                               const bf16_t* sinks, const int32_t* pos, const int32_t* slot,
                               int rows, int n_heads, int n_kv_heads, int head_dim, int cap,
                               const KvPages& pages, int window, int max_keys, int kv_chunk,
                               float* partial, float* out, gpuStream_t stream,
                               const int32_t* skip_rows) {
  attention_sinks<float>(qkv, k_cache, v_cache, sinks, pos, slot, skip_rows, rows, n_heads,
                         n_kv_heads, head_dim, cap, pages, window, max_keys, kv_chunk, partial, out,
                         stream, AttnKernel::scalar);
}

}  // namespace gptoss::gpu
