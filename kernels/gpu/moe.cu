// kernels/gpu/moe.cu: the GPU MoE block's host side (see moe.h for the design): the scratch,
// moe_forward (the kernels of the step's MoePlan, in order), the rank-ordered combine kernels and
// the test entry points. The routing and expert kernels live in moe_route.cu, moe_gemv.cu,
// moe_grouped_gemm.cu and moe_tiles.cu (moe_kernels.h). One source for CUDA (sm_80/sm_90) and
// HIP (gfx90a); runtime names only through vendor.h.
#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "gpu/moe_kernels.h"

namespace gptoss::gpu {
namespace {

// ------------------------------------------------------------------------------ combine
// residual[n, i] += ((w0 y0 + w1 y1) + w2 y2) + ...   (rank order, as the CPU twin)
__global__ __launch_bounds__(kMoeThreads) void moe_combine_kernel(const float* __restrict__ y,
                                                                const float* __restrict__ weights,
                                                                int rows, int k, int H,
                                                                float* __restrict__ residual) {
  const int h4 = H / 4;
  const size_t idx = static_cast<size_t>(blockIdx.x) * kMoeThreads + threadIdx.x;
  if (idx >= static_cast<size_t>(rows) * h4) return;
  const int n = static_cast<int>(idx / h4), i4 = static_cast<int>(idx % h4);
  const float4* yp = reinterpret_cast<const float4*>(y + static_cast<size_t>(n) * k * H) + i4;
  const float w0 = weights[n * k];
  float4 v = yp[0];
  float4 acc = make_float4(w0 * v.x, w0 * v.y, w0 * v.z, w0 * v.w);
  for (int r = 1; r < k; ++r) {
    const float wr = weights[n * k + r];
    v = yp[static_cast<size_t>(r) * h4];
    acc.x = acc.x + wr * v.x;
    acc.y = acc.y + wr * v.y;
    acc.z = acc.z + wr * v.z;
    acc.w = acc.w + wr * v.w;
  }
  float4* rp = reinterpret_cast<float4*>(residual + static_cast<size_t>(n) * H) + i4;
  float4 res = *rp;
  res.x = res.x + acc.x;
  res.y = res.y + acc.y;
  res.z = res.z + acc.z;
  res.w = res.w + acc.w;
  *rp = res;
}

// Combine fused with the next RMSNorm (decode steps: one launch instead of two). grid (rows),
// block kMoeNormThreads: residual[n, i] += ((w0 y0 + w1 y1) + ...) as moe_combine_kernel, then
// out[n, :] = residual[n, :] * rsqrt(mean(residual[n, :]^2) + eps) * scale (mean in fp64), in
// float4 chunks with exactly the element order and reduction of ops.h's f32_bf16w_rmsnorm
// (elementwise.cu, f32_bf16w_rmsnorm4_kernel), so the normalised row has the same bits.
// H % 4 == 0 (checked by check_shape: H % 32 == 0).
__global__ __launch_bounds__(kMoeNormThreads) void moe_combine_norm_kernel(
    const float* __restrict__ y, const float* __restrict__ weights, int k, int H,
    float* __restrict__ residual, const uint16_t* __restrict__ scale, float eps,
    float* __restrict__ out) {
  __shared__ double red[kMoeNormThreads / 16];  // >= waves per block for any kWaveSize >= 16
  const int n = blockIdx.x, tid = threadIdx.x, h4 = H / 4;
  const float4* yr = reinterpret_cast<const float4*>(y + static_cast<size_t>(n) * k * H);
  float4* rr = reinterpret_cast<float4*>(residual + static_cast<size_t>(n) * H);
  const float w0 = weights[n * k];
  double ss = 0.0;
  for (int base = 0; base < h4; base += 4 * kMoeNormThreads) {
    float4 v[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int i = base + c * kMoeNormThreads + tid;
      if (i < h4) {
        float4 yv = yr[i];
        float4 acc = make_float4(w0 * yv.x, w0 * yv.y, w0 * yv.z, w0 * yv.w);
        for (int r = 1; r < k; ++r) {
          const float wr = weights[n * k + r];
          yv = yr[static_cast<size_t>(r) * h4 + i];
          acc.x = acc.x + wr * yv.x;
          acc.y = acc.y + wr * yv.y;
          acc.z = acc.z + wr * yv.z;
          acc.w = acc.w + wr * yv.w;
        }
        float4 res = rr[i];
        res.x = res.x + acc.x;
        res.y = res.y + acc.y;
        res.z = res.z + acc.z;
        res.w = res.w + acc.w;
        rr[i] = res;
        v[c] = res;
      } else {
        v[c] = make_float4(0.f, 0.f, 0.f, 0.f);
      }
    }
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      ss += static_cast<double>(v[c].x) * v[c].x;
      ss += static_cast<double>(v[c].y) * v[c].y;
      ss += static_cast<double>(v[c].z) * v[c].z;
      ss += static_cast<double>(v[c].w) * v[c].w;
    }
  }
  for (int m = kWaveSize / 2; m > 0; m >>= 1) ss += gpu_shfl_xor(ss, m);
  const int wave = tid / kWaveSize, lane = tid % kWaveSize;
  constexpr int n_waves = kMoeNormThreads / kWaveSize;
  __syncthreads();
  if (lane == 0) red[wave] = ss;
  __syncthreads();
  double tot = 0.0;
  for (int w = 0; w < n_waves; ++w) tot += red[w];
  const float mean = static_cast<float>(tot / H);
  const float rs = 1.0f / sqrtf(mean + eps);
  float4* orow = reinterpret_cast<float4*>(out + static_cast<size_t>(n) * H);
  const uint2* sc = reinterpret_cast<const uint2*>(scale);
  for (int i = tid; i < h4; i += kMoeNormThreads) {
    const float4 v = rr[i];
    const uint2 s = sc[i];
    orow[i] = make_float4(__fmul_rn(__fmul_rn(v.x, rs), __uint_as_float(s.x << 16)),
                          __fmul_rn(__fmul_rn(v.y, rs), __uint_as_float(s.x & 0xffff0000u)),
                          __fmul_rn(__fmul_rn(v.z, rs), __uint_as_float(s.y << 16)),
                          __fmul_rn(__fmul_rn(v.w, rs), __uint_as_float(s.y & 0xffff0000u)));
  }
}

__global__ void moe_decode_test_kernel(const uint8_t* blocks, const uint8_t* scales, int n,
                                       float* out_f32, uint16_t* out_bf16, uint16_t* out_fold) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= n) return;
  const uint4 v = reinterpret_cast<const uint4*>(blocks)[b];
  const float sc = e8m0_to_f32(scales[b]);
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
  for (int j = 0; j < 4; ++j) {
    float raw[8];
    mxfp4_decode8_raw(words[j], raw);
    for (int i = 0; i < 8; ++i) out_f32[32 * b + 8 * j + i] = (raw[i] * 16384.0f) * sc;
  }
  float lut[16];
  for (int i = 0; i < 16; ++i) lut[i] = kLut[i];
  uint32_t d[8];
  mxfp4_decode16_bf16(make_uint2(v.x, v.y), sc, lut, d);
  for (int i = 0; i < 8; ++i) {
    out_bf16[32 * b + 2 * i] = static_cast<uint16_t>(d[i] & 0xffffu);
    out_bf16[32 * b + 2 * i + 1] = static_cast<uint16_t>(d[i] >> 16);
  }
  mxfp4_decode16_bf16(make_uint2(v.z, v.w), sc, lut, d);
  for (int i = 0; i < 8; ++i) {
    out_bf16[32 * b + 16 + 2 * i] = static_cast<uint16_t>(d[i] & 0xffffu);
    out_bf16[32 * b + 16 + 2 * i + 1] = static_cast<uint16_t>(d[i] >> 16);
  }
#if !defined(GPTOSS_HIP)
  if (out_fold) {  // the folded-scale grouped GEMM's decode (MoeTcMode::fast_bf16)
    const uint32_t s2 = mxfp4_fold_scale_bf16x2(scales[b]);
    for (int j = 0; j < 4; ++j)
      for (int q = 0; q < 4; ++q) {
        const uint32_t p = tile::bf16x2_mul(mxfp4_pair_bf16(words[j], q), s2);
        out_fold[32 * b + 8 * j + q] = static_cast<uint16_t>(p & 0xffffu);
        out_fold[32 * b + 8 * j + q + 4] = static_cast<uint16_t>(p >> 16);
      }
  }
#endif
}

// max over n bytes into *out (atomicMax; *out starts at 0).
__global__ void moe_max_byte_kernel(const uint8_t* p, size_t n, int* out) {
  int m = 0;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    m = max(m, static_cast<int>(p[i]));
#pragma unroll
  for (int off = kWaveSize / 2; off > 0; off >>= 1) m = max(m, gpu_shfl_xor(m, off));
  if (threadIdx.x % kWaveSize == 0 && m > 0) atomicMax(out, m);
}

template <class T>
T* dev_alloc(size_t n, size_t& bytes) {
  void* p = nullptr;
  const size_t nb = std::max<size_t>(n, 1) * sizeof(T);
  GPU_CHECK(gpuMalloc(&p, nb));
  bytes += nb;
  return static_cast<T*>(p);
}

MoeShape shape_of(const MoeGpuWeights& w) {
  return MoeShape{w.n_experts, w.top_k, w.hidden, w.intermediate};
}

void check_shape(const MoeGpuWeights& w) {
  const std::string err = moe_shape_error(shape_of(w));
  if (!err.empty()) fail("moe: %s", err.c_str());
}

// Every MoE kernel that takes dynamic shared memory, by the name moe_plan gives its launches.
const std::vector<MoeKernelFn>& kernel_fns() {
  static const std::vector<MoeKernelFn> v = [] {
    std::vector<MoeKernelFn> k;
    moe_route_kernel_fns(k);
    moe_gemv_kernel_fns(k);
    moe_grouped_kernel_fns(k);
    moe_ws_kernel_fns(k);
    moe_tiles_kernel_fns(k);
    return k;
  }();
  return v;
}

// Host-side, once, before any graph capture: each kernel a step of 1..max_rows rows can launch
// may use the largest dynamic shared memory its plans give it (moe_plan.h; the launch-limit test
// checks the same plans against the target's limits).
void set_smem_limits(const MoeShape& sh, int max_rows, const MoeOptions& o) {
  std::map<std::string, size_t> most;
  for (int rows = 1; rows <= max_rows; ++rows)
    for (bool norm : {false, true})
      moe_plan(sh, rows, o, kTarget, norm).for_each_launch([&](const KernelLaunch& l) {
        size_t& m = most[l.kernel];
        m = std::max(m, l.dyn_smem_bytes);
      });
  for (const auto& [name, bytes] : most) {
    if (bytes == 0) continue;
    const MoeKernelFn* k = nullptr;
    for (const MoeKernelFn& f : kernel_fns())
      if (name == f.name) k = &f;
    if (!k) fail("moe: internal error: no kernel named %s", name.c_str());
    GPU_CHECK(gpuFuncSetAttribute(k->fn, gpuFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(bytes)));
  }
}

}  // namespace

MoeGpuScratch moe_scratch_create(const MoeGpuWeights& w, int max_rows, const MoeOptions& options) {
  check_shape(w);
  if (max_rows < 1) fail("moe: max_rows %d must be >= 1", max_rows);
  const char* opt_err = moe_options_error(options, kTarget);
  if (*opt_err) fail("moe: %s (%s build)", opt_err, GPU_RT_NAME);
#if !defined(GPTOSS_WGMMA)
  if (options.wgmma)
    fail("moe: the wgmma MoE GEMM needs a build for sm_90a (CMAKE_CUDA_ARCHITECTURES=90a); this "
         "build has none");
#endif
  // Every launch of every step size fits this target, or the scratch is refused now (one line
  // naming the kernel, the step size and the limit) rather than a launch failing at some step.
  const std::string limits = moe_limits_error(shape_of(w), max_rows, options, kTarget);
  if (!limits.empty()) fail("%s", limits.c_str());
  set_smem_limits(shape_of(w), max_rows, options);
  MoeGpuScratch s;
  s.max_rows = max_rows;
  s.n_experts = w.n_experts;
  s.top_k = w.top_k;
  s.hidden = w.hidden;
  s.intermediate = w.intermediate;
  s.options = options;
  const size_t pairs = static_cast<size_t>(max_rows) * w.top_k;
  s.max_tiles = static_cast<int>((pairs + kMoeTileRows - 1) / kMoeTileRows) + w.n_experts;
  s.experts = dev_alloc<int32_t>(pairs, s.bytes);
  s.weights = dev_alloc<float>(pairs, s.bytes);
  s.offsets = dev_alloc<int32_t>(w.n_experts + 1, s.bytes);
  s.active = dev_alloc<int32_t>(w.n_experts, s.bytes);
  s.meta = dev_alloc<int32_t>(2, s.bytes);
  s.slot_pair = dev_alloc<int32_t>(pairs, s.bytes);
  s.tile_expert = dev_alloc<int32_t>(s.max_tiles, s.bytes);
  s.tile_slot0 = dev_alloc<int32_t>(s.max_tiles, s.bytes);
  s.act = dev_alloc<float>(pairs * w.intermediate, s.bytes);
  s.y = dev_alloc<float>(pairs * w.hidden, s.bytes);
  if (kTarget.vendor == GpuVendor::nvidia) {  // the grouped GEMM's staged operands
    s.xq = dev_alloc<uint32_t>(static_cast<size_t>(max_rows) * w.hidden, s.bytes);
    s.actq = dev_alloc<uint32_t>(pairs * w.intermediate, s.bytes);
  }
  return s;
}

void moe_scratch_destroy(MoeGpuScratch& s) {
  void* ptrs[] = {s.experts, s.weights, s.offsets, s.active, s.meta, s.slot_pair, s.tile_expert,
                  s.tile_slot0, s.act, s.y, s.xq, s.actq};
  for (void* p : ptrs)
    if (p) GPU_CHECK(gpuFree(p));
  s = MoeGpuScratch{};
}

const char* moe_path_name(const MoeGpuScratch& s, int rows) {
  const MoeShape sh{s.n_experts, s.top_k, s.hidden, s.intermediate};
  return moe_mlp_name(moe_plan(sh, std::max(rows, 1), s.options, kTarget, false).mlp);
}

void moe_forward(const MoeGpuWeights& w, const float* x_normed, int rows, float* residual,
                 MoeGpuScratch& s, gpuStream_t stream, const MoeNextNorm* next_norm) {
  check_shape(w);
  if (s.n_experts != w.n_experts || s.top_k != w.top_k || s.hidden != w.hidden ||
      s.intermediate != w.intermediate)
    fail("moe: scratch was created for another shape");
  if (rows > s.max_rows) fail("moe: %d rows exceed the scratch's max_rows %d", rows, s.max_rows);
  if (rows <= 0) return;
  const int k = w.top_k, H = w.hidden, I = w.intermediate;
  // Kernels, grids and shared memory of this step: moe_plan (moe_plan.h), the same function the
  // launch-limit test checks.
  const MoePlan p = moe_plan(shape_of(w), rows, s.options, kTarget, next_norm != nullptr);
  moe_launch_route(p, w, x_normed, rows, s, stream);

  MoeExpertArgs a1{w.mlp1_blocks, w.mlp1_scales, w.mlp1_bias, x_normed, s.act, s.offsets,
                   s.active, s.meta, s.slot_pair, s.tile_expert, s.tile_slot0, H, 2 * I, k,
                   p.gemv_max, w.swiglu_limit};
  MoeExpertArgs a2{w.mlp2_blocks, w.mlp2_scales, w.mlp2_bias, s.act, s.y, s.offsets, s.active,
                   s.meta, s.slot_pair, s.tile_expert, s.tile_slot0, I, H, k, p.gemv_max,
                   w.swiglu_limit};
  if (p.mlp == MoeMlp::grouped) {  // every expert on the grouped GEMM (NVIDIA)
    a1.xq = s.xq;
    a1.outq = reinterpret_cast<uint16_t*>(s.actq);
    a2.xq = s.actq;
    moe_launch_stage_x(p, x_normed, rows, H, s.xq, stream);
    for (int m = 0; m < 2; ++m) {
      const MoeExpertArgs& a = m == 0 ? a1 : a2;
      if (p.tc_mode == MoeTcMode::fast_wgmma)
        moe_launch_ws(p, m, a, stream);
      else
        moe_launch_grouped(p, m, a, stream);
    }
  } else {  // the GEMV for every expert, or for those the bf16 tiles do not take
    const MoeExpertArgs* a[2] = {&a1, &a2};
    for (int m = 0; m < 2; ++m) {
      moe_launch_gemv(p, m, *a[m], stream);
      if (p.mlp == MoeMlp::gemv_tiles) moe_launch_tiles(p, m, *a[m], stream);
    }
  }
  const KernelLaunch& c = p.combine_k;
  if (next_norm) {
    moe_combine_norm_kernel<<<moe_grid(c), c.threads, c.dyn_smem_bytes, stream>>>(
        s.y, s.weights, k, H, residual, next_norm->scale, next_norm->eps, next_norm->out);
  } else {
    moe_combine_kernel<<<moe_grid(c), c.threads, c.dyn_smem_bytes, stream>>>(s.y, s.weights, rows,
                                                                              k, H, residual);
  }
  GPU_CHECK_LAUNCH();
}

void moe_mxfp4_decode(const uint8_t* blocks, const uint8_t* scales, int n_blocks, float* out_f32,
                      uint16_t* out_bf16, gpuStream_t stream, uint16_t* out_fold) {
  if (n_blocks <= 0) return;
  if (out_fold && kTarget.vendor != GpuVendor::nvidia)
    fail("moe: the folded-scale decode is NVIDIA only (%s build)", GPU_RT_NAME);
  moe_decode_test_kernel<<<(n_blocks + 127) / 128, 128, 0, stream>>>(blocks, scales, n_blocks,
                                                                      out_f32, out_bf16, out_fold);
  GPU_CHECK_LAUNCH();
}

int moe_max_scale(const MoeGpuWeights& w, gpuStream_t stream) {
  check_shape(w);
  const size_t E = w.n_experts, H = w.hidden, I = w.intermediate;
  int* d = nullptr;
  GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&d), sizeof(int)));
  GPU_CHECK(gpuMemsetAsync(d, 0, sizeof(int), stream));
  const std::pair<const uint8_t*, size_t> arrays[2] = {{w.mlp1_scales, E * 2 * I * (H / 32)},
                                                       {w.mlp2_scales, E * H * (I / 32)}};
  for (const auto& [p, n] : arrays) {
    moe_max_byte_kernel<<<static_cast<int>(std::min<size_t>((n + 255) / 256, 1024)), 256, 0, stream>>>(p, n, d);
    GPU_CHECK_LAUNCH();
  }
  int m = 0;
  GPU_CHECK(gpuMemcpyAsync(&m, d, sizeof(int), gpuMemcpyDeviceToHost, stream));
  GPU_CHECK(gpuStreamSynchronize(stream));
  GPU_CHECK(gpuFree(d));
  return m;
}

}  // namespace gptoss::gpu
