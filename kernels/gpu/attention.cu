// kernels/gpu/attention.cu: attention with sinks and a sliding window over the KV cache (bf16, or
// fp32 with --kv-cache f32),
// split-K (flash-decoding) for every row: decode rows and prompt-chunk rows take the same path
// (a prompt row is one more query at its own position; rows never wait for each other).
//   pass 1 (f32_kv_attention_partial_kernel): block = (kv head, piece, row); the G query heads
//     of the kv head share each staged 64-key tile of K and V (GQA); online softmax per head
//     (one group of 32 threads per head, reductions by shuffles);
//     writes (unnormalised out[64], running max, running sum) per (row, head, piece).
//   pass 2 (f32_attention_combine_kernel): merges the pieces in order with the sink.
#include <algorithm>
#include <cmath>

#include "gpu/device_utils.h"
#include "gpu/ops.h"

namespace gptoss::gpu {

namespace {
constexpr int kHD = kAttnHeadDim;       // 64
constexpr int kKeyTile = 64;            // keys staged per iteration
constexpr int kAttnThreads = 256;       // 8 heads x 32 sub-lanes (sub-lanes are not wave lanes)
constexpr int kPartStride = kHD + 2;    // out[64], m, l
constexpr int kAttnMaxChunk = 1024;     // keys per piece at most
constexpr int kAttnMinBlocks = 2048;    // blocks per split-K launch kept when lengthening pieces
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
                                        const int32_t* __restrict__ skip, int n_heads, int n_kv,
                                        int cap, int window, int kv_chunk, int n_pieces,
                                        float* __restrict__ partial) {
  constexpr int kPer16 = 16 / sizeof(KvT);       // cache elements per 16 bytes
  constexpr int kLd = kHD + kPer16;              // staged row stride (elements)
  constexpr int kRowChunks = kHD / kPer16;       // 16-byte pieces per row
  __shared__ __align__(16) float qs[kAttnMaxGroup][kHD];
  __shared__ __align__(16) KvT ks[kKeyTile * kLd];
  __shared__ __align__(16) KvT vs[kKeyTile * kLd];
  const int kvh = blockIdx.x, piece = blockIdx.y, n = blockIdx.z;
  if (skip && skip[n]) return;  // a row of a prompt tile: the flash-attention kernel owns it
  const int G = n_heads / n_kv;
  const int h = threadIdx.x / 32, l = threadIdx.x % 32;
  const int p = pos[n];
  const int j0 = window > 0 ? max(0, p - window + 1) : 0;
  const int jb = j0 + piece * kv_chunk;
  const int je = min(p + 1, jb + kv_chunk);
  float* part = partial + ((static_cast<size_t>(n) * n_heads + kvh * G + h) * n_pieces + piece) *
                              kPartStride;
  if (jb >= je) {
    if (h < G && l == 0) part[kHD] = -INFINITY;
    return;
  }
  const size_t R = static_cast<size_t>(n_heads + 2 * n_kv) * kHD;
  for (int t = threadIdx.x; t < G * kHD; t += kAttnThreads)
    qs[t / kHD][t % kHD] = qkv[n * R + static_cast<size_t>(kvh * G) * kHD + t];
  const size_t slot_base = static_cast<size_t>(slot[n]) * cap;
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
        const size_t off = ((slot_base + static_cast<size_t>(j % cap)) * n_kv + kvh) * kHD +
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
}

// grid (rows, n_heads), block 64 (one thread per output dimension).
__global__ void f32_attention_combine_kernel(const float* __restrict__ partial,
                                             const uint16_t* __restrict__ sinks,
                                             const int32_t* __restrict__ skip, int n_heads,
                                             int n_pieces, float* __restrict__ out) {
  const int n = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
  if (skip && skip[n]) return;
  const float* part = partial + (static_cast<size_t>(n) * n_heads + h) * n_pieces * kPartStride;
  const float sink = bf16_bits_to_f32(sinks[h]);
  float m = sink;
  for (int s = 0; s < n_pieces; ++s) m = fmaxf(m, part[s * kPartStride + kHD]);
  float den = expf(sink - m), o = 0.0f;
  for (int s = 0; s < n_pieces; ++s) {
    const float ms = part[s * kPartStride + kHD];
    if (ms == -INFINITY) continue;
    const float f = expf(ms - m);
    den += part[s * kPartStride + kHD + 1] * f;
    o = fmaf(part[s * kPartStride + d], f, o);
  }
  out[(static_cast<size_t>(n) * n_heads + h) * kHD + d] = o / den;
}

static int attention_pieces(int max_keys, int kv_chunk) { return ceil_div(max_keys, kv_chunk); }

size_t attention_partial_floats(int n_heads, int max_keys, int kv_chunk) {
  return static_cast<size_t>(kAttnRowsPerLaunch) * n_heads * attention_pieces(max_keys, kv_chunk) *
         kPartStride;
}

template <class KvT>
static void attention_sinks(const float* qkv, const KvT* k_cache, const KvT* v_cache,
                            const bf16_t* sinks, const int32_t* pos, const int32_t* slot,
                            const int32_t* skip, int rows, int n_heads, int n_kv_heads,
                            int head_dim, int cap, int window, int max_keys, int kv_chunk,
                            float* partial, float* out, gpuStream_t stream) {
  if (rows <= 0) return;
  GPTOSS_ASSERT(head_dim == kHD && n_heads % n_kv_heads == 0 &&
                n_heads / n_kv_heads <= kAttnMaxGroup && kv_chunk % kKeyTile == 0);
  // Many rows: longer pieces (fewer blocks, each streaming more tiles; fewer partials to merge)
  // while a launch keeps >= kAttnMinBlocks blocks. The layer's kv_chunk (sized for few rows)
  // sets the partial buffer, which fewer pieces always fit.
  const int launch_rows = std::min(kAttnRowsPerLaunch, rows);
  while (kv_chunk * 2 <= kAttnMaxChunk &&
         n_kv_heads * attention_pieces(max_keys, kv_chunk * 2) * launch_rows >= kAttnMinBlocks)
    kv_chunk *= 2;
  const int pieces = attention_pieces(max_keys, kv_chunk);
  const size_t R = static_cast<size_t>(n_heads + 2 * n_kv_heads) * head_dim;
  for (int r0 = 0; r0 < rows; r0 += kAttnRowsPerLaunch) {
    const int nr = std::min(kAttnRowsPerLaunch, rows - r0);
    dim3 grid1(n_kv_heads, pieces, nr);
    f32_kv_attention_partial_kernel<KvT><<<grid1, kAttnThreads, 0, stream>>>(
        qkv + r0 * R, k_cache, v_cache, pos + r0, slot + r0, skip ? skip + r0 : nullptr, n_heads,
        n_kv_heads, cap, window, kv_chunk, pieces, partial);
    GPU_CHECK_LAUNCH();
    dim3 grid2(nr, n_heads);
    f32_attention_combine_kernel<<<grid2, kHD, 0, stream>>>(
        partial, sinks, skip ? skip + r0 : nullptr, n_heads, pieces,
        out + static_cast<size_t>(r0) * n_heads * head_dim);
    GPU_CHECK_LAUNCH();
  }
}

void f32_bf16kv_attention_sinks(const float* qkv, const bf16_t* k_cache, const bf16_t* v_cache,
                                const bf16_t* sinks, const int32_t* pos, const int32_t* slot,
                                int rows, int n_heads, int n_kv_heads, int head_dim, int cap,
                                int window, int max_keys, int kv_chunk, float* partial,
                                float* out, gpuStream_t stream, const int32_t* skip_rows) {
  attention_sinks<uint16_t>(qkv, k_cache, v_cache, sinks, pos, slot, skip_rows, rows, n_heads,
                            n_kv_heads, head_dim, cap, window, max_keys, kv_chunk, partial, out,
                            stream);
}

void f32_f32kv_attention_sinks(const float* qkv, const float* k_cache, const float* v_cache,
                               const bf16_t* sinks, const int32_t* pos, const int32_t* slot,
                               int rows, int n_heads, int n_kv_heads, int head_dim, int cap,
                               int window, int max_keys, int kv_chunk, float* partial, float* out,
                               gpuStream_t stream, const int32_t* skip_rows) {
  attention_sinks<float>(qkv, k_cache, v_cache, sinks, pos, slot, skip_rows, rows, n_heads,
                         n_kv_heads, head_dim, cap, window, max_keys, kv_chunk, partial, out,
                         stream);
}

}  // namespace gptoss::gpu
