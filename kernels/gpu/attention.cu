// kernels/gpu/attention.cu: attention with sinks and a sliding window over the KV cache (bf16, or
// fp32 with --kv-cache f32),
// split-K (flash-decoding) for every row: decode rows and prompt-chunk rows take the same path
// (a prompt row is one more query at its own position; rows never wait for each other).
//   pass 1 (f32_bf16kv_attention_partial_kernel): block = (kv head, piece, row); the G query heads
//     of the kv head share each staged 64-key tile of K and V (GQA); online softmax per head;
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
}  // namespace

// 8 consecutive cache elements -> 8 floats (bf16: one 16-byte load; fp32: two).
__device__ __forceinline__ void load8_f32(const uint16_t* p, float* d) {
  const uint4 w = *reinterpret_cast<const uint4*>(p);
  d[0] = bf16_lo(w.x), d[1] = bf16_hi(w.x), d[2] = bf16_lo(w.y), d[3] = bf16_hi(w.y);
  d[4] = bf16_lo(w.z), d[5] = bf16_hi(w.z), d[6] = bf16_lo(w.w), d[7] = bf16_hi(w.w);
}
__device__ __forceinline__ void load8_f32(const float* p, float* d) {
  const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  d[0] = a.x, d[1] = a.y, d[2] = a.z, d[3] = a.w, d[4] = b.x, d[5] = b.y, d[6] = b.z, d[7] = b.w;
}

// KvT: uint16_t (bf16 bits) or float.
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
  __shared__ float qs[kAttnMaxGroup][kHD];
  __shared__ float ks[kKeyTile][kHD + 1];
  __shared__ float vs[kKeyTile][kHD];
  __shared__ float sp[kAttnMaxGroup][kKeyTile];  // scores, then probabilities
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

  float m_run = -INFINITY, l_run = 0.0f, o0 = 0.0f, o1 = 0.0f;
  for (int t0 = jb; t0 < je; t0 += kKeyTile) {
    __syncthreads();  // previous tile fully consumed (and qs written on the first pass)
    for (int c = threadIdx.x; c < kKeyTile * (kHD / 8); c += kAttnThreads) {
      const int key = c / (kHD / 8), part8 = c % (kHD / 8);
      const int j = t0 + key;
      float kd[8] = {0, 0, 0, 0, 0, 0, 0, 0}, vd[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      if (j < je) {
        const size_t off = ((slot_base + static_cast<size_t>(j % cap)) * n_kv + kvh) * kHD + 8 * part8;
        load8_f32(k_cache + off, kd);
        load8_f32(v_cache + off, vd);
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) ks[key][8 * part8 + e] = kd[e], vs[key][8 * part8 + e] = vd[e];
    }
    __syncthreads();
    if (h < G) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int key = l + 32 * half;
        float s = 0.0f;
#pragma unroll 16
        for (int d = 0; d < kHD; ++d) s = fmaf(qs[h][d], ks[key][d], s);
        sp[h][key] = (t0 + key < je) ? s * scale : -INFINITY;
      }
    }
    __syncthreads();
    float m_new = m_run;
    if (h < G) {
      float tmax = -INFINITY;
      for (int j = 0; j < kKeyTile; ++j) tmax = fmaxf(tmax, sp[h][j]);
      m_new = fmaxf(m_run, tmax);
    }
    __syncthreads();
    if (h < G) {
      sp[h][l] = expf(sp[h][l] - m_new);
      sp[h][l + 32] = expf(sp[h][l + 32] - m_new);
    }
    __syncthreads();
    if (h < G) {
      const float alpha = expf(m_run - m_new);  // 0 on the first tile (m_run = -inf)
      float lsum = 0.0f;
      o0 *= alpha;
      o1 *= alpha;
#pragma unroll 8
      for (int j = 0; j < kKeyTile; ++j) {
        const float pj = sp[h][j];
        lsum += pj;
        o0 = fmaf(pj, vs[j][l], o0);
        o1 = fmaf(pj, vs[j][l + 32], o1);
      }
      l_run = l_run * alpha + lsum;
      m_run = m_new;
    }
  }
  if (h < G) {
    part[l] = o0;
    part[l + 32] = o1;
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
