// kernels/gpu/elementwise.cu: embedding gather, RMSNorm, residual add, RoPE + KV-cache write,
// greedy argmax, and the device presence checks.
#include <algorithm>
#include <cmath>

#include "gpu/device_utils.h"
#include "gpu/ops.h"

namespace gptoss::gpu {

// ============================================================================ embedding
// grid (rows), block 256: one row per block, 16-byte loads of 8 bf16.
__global__ void bf16_embed_kernel(const uint16_t* table, const int32_t* tokens, int H, float* x) {
  const int n = blockIdx.x;
  const uint16_t* src = table + static_cast<size_t>(tokens[n]) * H;
  float* dst = x + static_cast<size_t>(n) * H;
  for (int c = threadIdx.x; c < H / 8; c += blockDim.x) {
    uint4 w = *reinterpret_cast<const uint4*>(src + 8 * c);
    float4 a = make_float4(bf16_lo(w.x), bf16_hi(w.x), bf16_lo(w.y), bf16_hi(w.y));
    float4 b = make_float4(bf16_lo(w.z), bf16_hi(w.z), bf16_lo(w.w), bf16_hi(w.w));
    reinterpret_cast<float4*>(dst)[2 * c] = a;
    reinterpret_cast<float4*>(dst)[2 * c + 1] = b;
  }
}

void bf16_embed(const bf16_t* table, const int32_t* tokens, int rows, int H, float* x,
                gpuStream_t stream) {
  if (rows <= 0) return;
  GPTOSS_ASSERT(H % 8 == 0);
  bf16_embed_kernel<<<rows, 256, 0, stream>>>(table, tokens, H, x);
  GPU_CHECK_LAUNCH();
}

// ============================================================================ RMSNorm
__global__ void f32_bf16w_rmsnorm_kernel(const float* x, const uint16_t* scale, float* y, int dim,
                                         float eps, const int32_t* row_index) {
  __shared__ double red[1024 / 32];
  const int n = blockIdx.x;
  const int src = row_index ? row_index[n] : n;
  const float* xr = x + static_cast<size_t>(src) * dim;
  float* yr = y + static_cast<size_t>(n) * dim;
  double ss = 0.0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += static_cast<double>(xr[i]) * xr[i];
  ss = block_sum_f64(ss, red);
  const float mean = static_cast<float>(ss / dim);
  const float r = 1.0f / sqrtf(mean + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    yr[i] = __fmul_rn(__fmul_rn(xr[i], r), bf16_bits_to_f32(scale[i]));
}

// dim % 4 == 0 (every model here): float4 chunks, up to 4 chunks per thread loaded before they
// are summed (the scalar kernel above was one dependent load after another: ~12 us per row on
// H100 at 2880). Element order of the fp64 sum of squares: per thread, chunks tid + 256 c in c
// order, x y z w; then block_sum_f64. The MoE's fused combine + norm (moe.cu,
// moe_combine_norm_kernel) follows exactly this order, so the two give the same bits.
__global__ void __launch_bounds__(256)
    f32_bf16w_rmsnorm4_kernel(const float* x, const uint16_t* scale, float* y, int dim, float eps,
                              const int32_t* row_index) {
  __shared__ double red[1024 / 32];
  const int n = blockIdx.x;
  const int src = row_index ? row_index[n] : n;
  const float4* xr = reinterpret_cast<const float4*>(x + static_cast<size_t>(src) * dim);
  float4* yr = reinterpret_cast<float4*>(y + static_cast<size_t>(n) * dim);
  const int d4 = dim / 4;
  double ss = 0.0;
  for (int base = 0; base < d4; base += 4 * 256) {
    float4 v[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int i = base + c * 256 + static_cast<int>(threadIdx.x);
      v[c] = i < d4 ? xr[i] : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      ss += static_cast<double>(v[c].x) * v[c].x;
      ss += static_cast<double>(v[c].y) * v[c].y;
      ss += static_cast<double>(v[c].z) * v[c].z;
      ss += static_cast<double>(v[c].w) * v[c].w;
    }
  }
  ss = block_sum_f64(ss, red);
  const float mean = static_cast<float>(ss / dim);
  const float r = 1.0f / sqrtf(mean + eps);
  const uint2* sc = reinterpret_cast<const uint2*>(scale);
  for (int i = threadIdx.x; i < d4; i += 256) {
    const float4 v = xr[i];
    const uint2 s = sc[i];
    yr[i] = make_float4(__fmul_rn(__fmul_rn(v.x, r), bf16_lo(s.x)),
                        __fmul_rn(__fmul_rn(v.y, r), bf16_hi(s.x)),
                        __fmul_rn(__fmul_rn(v.z, r), bf16_lo(s.y)),
                        __fmul_rn(__fmul_rn(v.w, r), bf16_hi(s.y)));
  }
}

void f32_bf16w_rmsnorm(const float* x, const bf16_t* scale, float* y, int rows, int dim,
                       float eps, const int32_t* row_index, gpuStream_t stream) {
  if (rows <= 0) return;
  if (dim % 4 == 0)
    f32_bf16w_rmsnorm4_kernel<<<rows, 256, 0, stream>>>(x, scale, y, dim, eps, row_index);
  else
    f32_bf16w_rmsnorm_kernel<<<rows, 256, 0, stream>>>(x, scale, y, dim, eps, row_index);
  GPU_CHECK_LAUNCH();
}

// ============================================================================ add
__global__ void f32_add_inplace_kernel(float* y, const float* x, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    y[i] += x[i];
}

void f32_add_inplace(float* y, const float* x, size_t n, gpuStream_t stream) {
  if (n == 0) return;
  int blocks = static_cast<int>(std::min<size_t>((n + 255) / 256, 4096));
  f32_add_inplace_kernel<<<blocks, 256, 0, stream>>>(y, x, n);
  GPU_CHECK_LAUNCH();
}

// ============================================================================ RoPE + KV write
// grid (rows), block 256. Work items: (n_heads + n_kv) * half rotation pairs, then n_kv * hd
// value copies.
__device__ __forceinline__ void store_kv(uint16_t* p, float v) { *p = f32_to_bf16_bits(v); }
__device__ __forceinline__ void store_kv(float* p, float v) { *p = v; }

// KvT: uint16_t (bf16 bits, round to nearest even) or float (exact).
template <class KvT>
__global__ void f32_rope_kv_write_kernel(float* qkv, const float* rope_cs, const int32_t* pos,
                                         const int32_t* slot, int n_heads, int n_kv, int hd,
                                         KvT* k_cache, KvT* v_cache, int cap, KvPages pages) {
  const int n = blockIdx.x;
  const int half = hd / 2;
  const int p = pos[n];
  const size_t R = static_cast<size_t>(n_heads + 2 * n_kv) * hd;
  float* row = qkv + n * R;
  const float* cs = rope_cs + static_cast<size_t>(p) * hd;
  const size_t cache_row =
      kv_cache_row_write(pages, n, slot[n], cap, p, threadIdx.x == 0) * n_kv * hd;
  const int n_rot = (n_heads + n_kv) * half;
  for (int t = threadIdx.x; t < n_rot; t += blockDim.x) {
    const int h = t / half, i = t % half;
    float* v = row + static_cast<size_t>(h) * hd;
    const float x1 = v[i], x2 = v[half + i], c = cs[i], s = cs[half + i];
    const float a = __fmul_rn(x1, c), b = __fmul_rn(x2, s), e = __fmul_rn(x2, c),
                f = __fmul_rn(x1, s);
    const float o1 = __fsub_rn(a, b), o2 = __fadd_rn(e, f);
    if (h < n_heads) {
      v[i] = o1;
      v[half + i] = o2;
    } else {
      KvT* k = k_cache + cache_row + static_cast<size_t>(h - n_heads) * hd;
      store_kv(k + i, o1);
      store_kv(k + half + i, o2);
    }
  }
  const float* vsrc = row + static_cast<size_t>(n_heads + n_kv) * hd;
  for (int t = threadIdx.x; t < n_kv * hd; t += blockDim.x)
    store_kv(v_cache + cache_row + t, vsrc[t]);
}

void f32_rope_kv_write(float* qkv, const float* rope_cs, const int32_t* pos, const int32_t* slot,
                       int rows, int n_heads, int n_kv_heads, int head_dim, bf16_t* k_cache,
                       bf16_t* v_cache, int cap, const KvPages& pages, gpuStream_t stream) {
  if (rows <= 0) return;
  f32_rope_kv_write_kernel<uint16_t><<<rows, 512, 0, stream>>>(
      qkv, rope_cs, pos, slot, n_heads, n_kv_heads, head_dim, k_cache, v_cache, cap, pages);
  GPU_CHECK_LAUNCH();
}

void f32_rope_kv_write(float* qkv, const float* rope_cs, const int32_t* pos, const int32_t* slot,
                       int rows, int n_heads, int n_kv_heads, int head_dim, float* k_cache,
                       float* v_cache, int cap, const KvPages& pages, gpuStream_t stream) {
  if (rows <= 0) return;
  f32_rope_kv_write_kernel<float><<<rows, 512, 0, stream>>>(
      qkv, rope_cs, pos, slot, n_heads, n_kv_heads, head_dim, k_cache, v_cache, cap, pages);
  GPU_CHECK_LAUNCH();
}

// ============================================================================ argmax
// grid (rows), block 1024. (value, index) pairs; a beats b when a.v > b.v, or equal with lower
// index; NaN never beats anything.
__device__ __forceinline__ bool argmax_better(float av, int ai, float bv, int bi) {
  if (av != av) return false;
  if (bv != bv) return true;
  return av > bv || (av == bv && ai < bi);
}

__global__ void f32_argmax_kernel(const float* x, int n, int32_t* out) {
  __shared__ float sv[1024 / 32];
  __shared__ int si[1024 / 32];
  const float* xr = x + static_cast<size_t>(blockIdx.x) * n;
  float bv = __int_as_float(0x7fc00000);  // NaN: loses to everything
  int bi = 0x7fffffff;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float v = xr[i];
    if (argmax_better(v, i, bv, bi)) bv = v, bi = i;
  }
  for (int m = kWaveSize / 2; m > 0; m >>= 1) {
    float ov = gpu_shfl_xor(bv, m);
    int oi = gpu_shfl_xor(bi, m);
    if (argmax_better(ov, oi, bv, bi)) bv = ov, bi = oi;
  }
  const int wave = threadIdx.x / kWaveSize, lane = threadIdx.x % kWaveSize;
  if (lane == 0) sv[wave] = bv, si[wave] = bi;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x / kWaveSize); ++w)
      if (argmax_better(sv[w], si[w], bv, bi)) bv = sv[w], bi = si[w];
    out[blockIdx.x] = bi == 0x7fffffff ? 0 : bi;
  }
}

void f32_argmax(const float* x, int rows, int n, int32_t* out, gpuStream_t stream) {
  if (rows <= 0) return;
  f32_argmax_kernel<<<rows, 1024, 0, stream>>>(x, n, out);
  GPU_CHECK_LAUNCH();
}

// ============================================================================ device
bool device_present() {
  int n = 0;
  if (gpuGetDeviceCount(&n) != gpuSuccess) {
    (void)gpuGetLastError();
    return false;
  }
  return n > 0;
}

void require_device() {
  int n = 0;
  gpuError_t e = gpuGetDeviceCount(&n);
  if (e != gpuSuccess) {
    (void)gpuGetLastError();
    fail("no GPU found (%s runtime: %s); use --backend cpu", GPU_RT_NAME, gpuGetErrorString(e));
  }
  if (n == 0) fail("no GPU found (%s runtime sees 0 devices); use --backend cpu", GPU_RT_NAME);
}

// ============================================================================ read bandwidth
template <bool kChained>
__global__ void __launch_bounds__(256) read_probe_kernel(const uint4* __restrict__ p, size_t n16,
                                                         float* partial) {
  __shared__ float red[256 / 16];
  if (kChained) {  // as a kernel of a decode step that reads nothing before the wait (vendor.h)
    gpu_grid_wait();
    gpu_grid_trigger();
  }
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  uint32_t acc = 0;
  size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n16; i += 4 * stride) {
    const uint4 a = p[i], b = p[i + stride], c = p[i + 2 * stride], d = p[i + 3 * stride];
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
  }
  for (; i < n16; i += stride) {
    const uint4 a = p[i];
    acc ^= a.x ^ a.y ^ a.z ^ a.w;
  }
  const float s = block_sum(static_cast<float>(acc & 0xffu), red);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

void read_bandwidth_probe(const void* p, size_t bytes, int blocks, float* partial,
                          gpuStream_t stream) {
  GPTOSS_ASSERT(bytes % 16 == 0 && blocks > 0);
  read_probe_kernel<false><<<blocks, 256, 0, stream>>>(static_cast<const uint4*>(p), bytes / 16, partial);
  GPU_CHECK_LAUNCH();
}

void read_bandwidth_probe_chained(const void* p, size_t bytes, int blocks, float* partial,
                                  gpuStream_t stream) {
  GPTOSS_ASSERT(bytes % 16 == 0 && blocks > 0);
  gpu_launch(read_probe_kernel<true>, dim3(blocks), dim3(256), 0, stream, static_cast<const uint4*>(p),
             bytes / 16, partial);
}

}  // namespace gptoss::gpu
