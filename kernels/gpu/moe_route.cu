// kernels/gpu/moe_route.cu: MoE routing. Router logits (x . router_w + bias), top-k over the
// experts (ties: lower expert first) + softmax in rank order, and the grouping of (row, rank)
// pairs by expert that the expert matmuls read (offsets, active experts, slot -> pair, tiles).
// moe_plan.h picks the kernels: moe_route_small_kernel does all of it in one block for small
// steps; larger steps run moe_router_rows_kernel (or moe_router_kernel for a large H), then
// moe_build_kernel. Same arithmetic per logit and the same top-k on every path (CPU twin:
// f32_router_topk_softmax, kernels/cpu/ops.h).
#include <climits>

#include "gpu/moe_kernels.h"

namespace gptoss::gpu {
namespace {

// One block per row: logits in shared memory, then top-k + softmax.
__global__ __launch_bounds__(kMoeThreads) void moe_router_kernel(
    const float* __restrict__ x, const uint16_t* __restrict__ rw, const uint16_t* __restrict__ rb,
    int H, int E, int k, int32_t* __restrict__ experts, float* __restrict__ weights) {
  extern __shared__ float router_smem[];
  float* xs = router_smem;      // [H]
  float* logits = xs + H;       // [E]
  const int row = blockIdx.x, tid = threadIdx.x;
  const float4* xr = reinterpret_cast<const float4*>(x + static_cast<size_t>(row) * H);
  for (int i = tid; i < H / 4; i += kMoeThreads) reinterpret_cast<float4*>(xs)[i] = xr[i];
  __syncthreads();
  const int wave = tid / kWaveSize, lane = tid % kWaveSize;
  for (int e = wave; e < E; e += kWaves) {
    const uint16_t* wr = rw + static_cast<size_t>(e) * H;
    float acc = 0.0f;
    for (int c = lane; c < H / 8; c += kWaveSize) {
      const uint4 v = *reinterpret_cast<const uint4*>(wr + 8 * c);
      const uint32_t wd[4] = {v.x, v.y, v.z, v.w};
      const float* xc = xs + 8 * c;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        acc = fmaf(xc[2 * j], __uint_as_float(wd[j] << 16), acc);
        acc = fmaf(xc[2 * j + 1], __uint_as_float(wd[j] & 0xffff0000u), acc);
      }
    }
    acc = wave_sum(acc);
    if (lane == 0) logits[e] = acc + bf16_bits_to_f32(rb[e]);
  }
  __syncthreads();
  if (wave == 0)
    wave_topk_softmax(logits, E, k, lane, experts + static_cast<size_t>(row) * k,
                      weights + static_cast<size_t>(row) * k);
}

// Test entry point (moe_router_topk_logits): the routing kernels' top-k + softmax on given logits
// [rows, E], one wave per row (grid rows, block kWaveSize).
__global__ __launch_bounds__(kWaveSize) void moe_topk_logits_kernel(const float* logits, int E,
                                                                    int k, int32_t* experts,
                                                                    float* weights) {
  const size_t row = blockIdx.x;
  wave_topk_softmax(logits + row * E, E, k, static_cast<int>(threadIdx.x), experts + row * k,
                    weights + row * k);
}

// ------------------------------------------------------------------------------ grouping
// One block of 1024 threads. Pairs p = row * k + rank grouped by expert (rows ascending):
// offsets[E+1], active[n_active], slot_pair[pairs], and tiles of tile_rows slots (MoePlan::tile_rows)
// for experts with more than gemv_max rows. meta = {n_active, n_tiles}.
__device__ void build_groups(const int32_t* __restrict__ experts, int pairs, int E, int gemv_max, int tile_rows,
                             int32_t* __restrict__ offsets, int32_t* __restrict__ active,
                             int32_t* __restrict__ meta, int32_t* __restrict__ slot_pair,
                             int32_t* __restrict__ tile_expert, int32_t* __restrict__ tile_slot0) {
  __shared__ int cnt_s[kMoeMaxExperts];
  __shared__ int off_s[kMoeMaxExperts];
  constexpr int waves = kMoeBuildThreads / kWaveSize;
  const int tid = threadIdx.x, wave = tid / kWaveSize, lane = tid % kWaveSize;
  for (int e = wave; e < E; e += waves) {
    int c = 0;
    for (int p = lane; p < pairs; p += kWaveSize) c += experts[p] == e;
    c = wave_sum_int(c);
    if (lane == 0) cnt_s[e] = c;
  }
  __syncthreads();
  if (tid == 0) {
    int off = 0, na = 0, nt = 0;
    for (int e = 0; e < E; ++e) {
      const int c = cnt_s[e];
      off_s[e] = off;
      offsets[e] = off;
      if (c > 0) active[na++] = e;
      if (c > gemv_max)
        for (int r0 = 0; r0 < c; r0 += tile_rows) {
          tile_expert[nt] = e;
          tile_slot0[nt] = off + r0;
          ++nt;
        }
      off += c;
    }
    offsets[E] = off;
    meta[0] = na;
    meta[1] = nt;
  }
  __syncthreads();
  for (int e = wave; e < E; e += waves) {
    if (cnt_s[e] == 0) continue;
    int pos = off_s[e];
    for (int base = 0; base < pairs; base += kWaveSize) {
      const int p = base + lane;
      const int f = (p < pairs && experts[p] == e) ? 1 : 0;
      int v = f;  // inclusive scan over the wave
#pragma unroll
      for (int d = 1; d < kWaveSize; d <<= 1) {
        const int t = gpu_shfl(v, lane >= d ? lane - d : lane);
        if (lane >= d) v += t;
      }
      if (f) slot_pair[pos + v - 1] = p;
      pos += gpu_shfl(v, kWaveSize - 1);
    }
  }
}

// The experts array is first copied into shared memory (dynamic, pairs * 4 bytes, when
// stage_smem): build_groups scans it E + E times, and from global memory each of those wave loops
// was a chain of dependent L2 round trips (13.5 us at 256 rows, 114 us at 4096 on H100).
// At most kMoeBuildSmemPairs (48 KB, + build_groups' 8 KB static) so the block also fits
// gfx90a's 64 KB of LDS; dynamic shared memory moe_build_smem_bytes(pairs).
__global__ __launch_bounds__(kMoeBuildThreads) void moe_build_kernel(
    const int32_t* __restrict__ experts, int pairs, int E, int gemv_max, int tile_rows,
    int32_t* __restrict__ offsets, int32_t* __restrict__ active, int32_t* __restrict__ meta,
    int32_t* __restrict__ slot_pair, int32_t* __restrict__ tile_expert,
    int32_t* __restrict__ tile_slot0, int stage_smem) {
  extern __shared__ int32_t build_ex_s[];  // [pairs] when stage_smem
  const int32_t* ex = experts;
  if (stage_smem) {
    for (int i = threadIdx.x; i < pairs; i += kMoeBuildThreads) build_ex_s[i] = experts[i];
    __syncthreads();
    ex = build_ex_s;
  }
  build_groups(ex, pairs, E, gemv_max, tile_rows, offsets, active, meta, slot_pair, tile_expert, tile_slot0);
}

// Steps of more rows: kMoeRouterRows rows per block, so each router weight load (16 bytes, from L2)
// serves kMoeRouterRows rows instead of one (moe_router_kernel: one block per row read the whole
// router per row: 38 us at 256 rows, 203 us at 4096 on H100), with all kRouterU loads of a lane
// in flight before the first use (8 rows per block with one load at a time measured 49 us at 256
// rows: 45 dependent L2 round trips per wave). Per logit exactly the arithmetic
// of moe_router_kernel / moe_route_small_kernel (lane partial sums over 8-element chunks
// c = lane, lane + W, ..., 8 FMAs per chunk in element order, then the wave butterfly, + bias),
// and the top-k of moe_route_small_kernel: the same experts and weights for a row at any row
// count. Dynamic shared memory moe_router_rows_smem_bytes(H, E).
constexpr int kRouterU = (384 + kWaveSize - 1) / kWaveSize;  // 16-byte loads per lane per batch (H 2880: one)
__global__ __launch_bounds__(kMoeThreads) void moe_router_rows_kernel(
    const float* __restrict__ x, const uint16_t* __restrict__ rw, const uint16_t* __restrict__ rb,
    int rows, int H, int E, int k, int32_t* __restrict__ experts, float* __restrict__ weights) {
  extern __shared__ float4 router_rows_smem4[];
  float* xs = reinterpret_cast<float*>(router_rows_smem4);  // [kMoeRouterRows][H]
  float* lgs = xs + kMoeRouterRows * H;                          // [kMoeRouterRows][E]
  const int r0 = blockIdx.x * kMoeRouterRows, nr = min(kMoeRouterRows, rows - r0);
  const int tid = threadIdx.x, wave = tid / kWaveSize, lane = tid % kWaveSize;
  const float4* xg = reinterpret_cast<const float4*>(x + static_cast<size_t>(r0) * H);
  for (int i = tid; i < kMoeRouterRows * H / 4; i += kMoeThreads)
    router_rows_smem4[i] = i < nr * H / 4 ? xg[i] : make_float4(0.f, 0.f, 0.f, 0.f);
  __syncthreads();
  for (int e = wave; e < E; e += kWaves) {
    const uint16_t* wr = rw + static_cast<size_t>(e) * H;
    float acc[kMoeRouterRows];
#pragma unroll
    for (int r = 0; r < kMoeRouterRows; ++r) acc[r] = 0.0f;
    for (int c0 = lane; c0 < H / 8; c0 += kRouterU * kWaveSize) {
      uint4 wv[kRouterU];  // all of a lane's weight loads in flight before the first use
#pragma unroll
      for (int u = 0; u < kRouterU; ++u) {
        const int c = c0 + u * kWaveSize;
        wv[u] = c < H / 8 ? *reinterpret_cast<const uint4*>(wr + 8 * c) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < kRouterU; ++u) {
        const int c = c0 + u * kWaveSize;
        if (c >= H / 8) break;
        const uint4 v = wv[u];
        const float w8[8] = {__uint_as_float(v.x << 16), __uint_as_float(v.x & 0xffff0000u),
                             __uint_as_float(v.y << 16), __uint_as_float(v.y & 0xffff0000u),
                             __uint_as_float(v.z << 16), __uint_as_float(v.z & 0xffff0000u),
                             __uint_as_float(v.w << 16), __uint_as_float(v.w & 0xffff0000u)};
#pragma unroll
        for (int r = 0; r < kMoeRouterRows; ++r) {
          const float4 x0 = *reinterpret_cast<const float4*>(xs + r * H + 8 * c);
          const float4 x1 = *reinterpret_cast<const float4*>(xs + r * H + 8 * c + 4);
          float a = acc[r];
          a = fmaf(x0.x, w8[0], a);
          a = fmaf(x0.y, w8[1], a);
          a = fmaf(x0.z, w8[2], a);
          a = fmaf(x0.w, w8[3], a);
          a = fmaf(x1.x, w8[4], a);
          a = fmaf(x1.y, w8[5], a);
          a = fmaf(x1.z, w8[6], a);
          a = fmaf(x1.w, w8[7], a);
          acc[r] = a;
        }
      }
    }
    const float bias = bf16_bits_to_f32(rb[e]);
#pragma unroll
    for (int r = 0; r < kMoeRouterRows; ++r) {
      const float sum = wave_sum(acc[r]);
      if (lane == 0) lgs[r * E + e] = sum + bias;
    }
  }
  __syncthreads();
  for (int n = wave; n < nr; n += kWaves)
    wave_topk_softmax(lgs + n * E, E, k, lane, experts + static_cast<size_t>(r0 + n) * k,
                      weights + static_cast<size_t>(r0 + n) * k);
}

// Decode steps (rows <= kMoeRouteSmallRows whose logits and x fit the shared memory budget, see
// moe_plan): router logits, top-k +
// softmax and the grouping in ONE block (one launch instead of two). A wave per (row, expert)
// dot product, 16-byte weight loads, x read from global (L2); same arithmetic order per logit
// as moe_router_kernel (lane partial sums over 8-element chunks, then the wave butterfly).
// x rows are staged in shared memory and each lane has kRouteU 16-byte weight loads in flight
// (a wave per (row, expert) dot product; one SM reads the whole router, 184 KB at 20b).
// Dynamic shared memory moe_route_small_smem_bytes(rows, E, H).
constexpr int kRouteU = 6;
__global__ __launch_bounds__(kMoeBuildThreads) void moe_route_small_kernel(
    const float* __restrict__ x, const uint16_t* __restrict__ rw, const uint16_t* __restrict__ rb,
    int rows, int H, int E, int k, int gemv_max, int tile_rows, int32_t* __restrict__ experts,
    float* __restrict__ weights, int32_t* __restrict__ offsets, int32_t* __restrict__ active,
    int32_t* __restrict__ meta, int32_t* __restrict__ slot_pair, int32_t* __restrict__ tile_expert,
    int32_t* __restrict__ tile_slot0) {
  extern __shared__ float4 route_smem4[];
  float* route_logits = reinterpret_cast<float*>(route_smem4);  // [rows, E]
  float* xs = route_logits + ((rows * E + 3) / 4) * 4;          // [rows, H], 16-byte aligned
  constexpr int waves = kMoeBuildThreads / kWaveSize;
  const int tid = threadIdx.x, wave = tid / kWaveSize, lane = tid % kWaveSize;
  for (int i = tid; i < rows * H / 4; i += kMoeBuildThreads)
    reinterpret_cast<float4*>(xs)[i] = reinterpret_cast<const float4*>(x)[i];
  __syncthreads();
  for (int it = wave; it < rows * E; it += waves) {
    const int n = it / E, e = it % E;
    const uint16_t* wr = rw + static_cast<size_t>(e) * H;
    const float* xr = xs + static_cast<size_t>(n) * H;
    float acc = 0.0f;
    for (int c0 = lane; c0 < H / 8; c0 += kRouteU * kWaveSize) {
      uint4 wv[kRouteU];
#pragma unroll
      for (int u = 0; u < kRouteU; ++u) {
        const int c = c0 + u * kWaveSize;
        wv[u] = c < H / 8 ? *reinterpret_cast<const uint4*>(wr + 8 * c) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < kRouteU; ++u) {
        // A guard, not a `break`: with a break the loop stays rolled on gfx90a and wv[] goes to
        // scratch memory (112 bytes per lane); the chunks c past H / 8 are the last ones anyway.
        const int c = c0 + u * kWaveSize;
        if (c < H / 8) {
          const uint4 v = wv[u];
          const float4 x0 = *reinterpret_cast<const float4*>(xr + 8 * c);
          const float4 x1 = *reinterpret_cast<const float4*>(xr + 8 * c + 4);
          acc = fmaf(x0.x, __uint_as_float(v.x << 16), acc);
          acc = fmaf(x0.y, __uint_as_float(v.x & 0xffff0000u), acc);
          acc = fmaf(x0.z, __uint_as_float(v.y << 16), acc);
          acc = fmaf(x0.w, __uint_as_float(v.y & 0xffff0000u), acc);
          acc = fmaf(x1.x, __uint_as_float(v.z << 16), acc);
          acc = fmaf(x1.y, __uint_as_float(v.z & 0xffff0000u), acc);
          acc = fmaf(x1.z, __uint_as_float(v.w << 16), acc);
          acc = fmaf(x1.w, __uint_as_float(v.w & 0xffff0000u), acc);
        }
      }
    }
    acc = wave_sum(acc);
    if (lane == 0) route_logits[it] = acc + bf16_bits_to_f32(rb[e]);
  }
  __syncthreads();
  for (int n = wave; n < rows; n += waves)
    wave_topk_softmax(route_logits + static_cast<size_t>(n) * E, E, k, lane,
                      experts + static_cast<size_t>(n) * k, weights + static_cast<size_t>(n) * k);
  __syncthreads();  // experts (global) visible to the whole block
  build_groups(experts, rows * k, E, gemv_max, tile_rows, offsets, active, meta, slot_pair, tile_expert,
               tile_slot0);
}

}  // namespace

void moe_route_kernel_fns(std::vector<MoeKernelFn>& out) {
  out.push_back(moe_kernel_fn("moe_route_small_kernel", moe_route_small_kernel));
  out.push_back(moe_kernel_fn("moe_router_rows_kernel", moe_router_rows_kernel));
  out.push_back(moe_kernel_fn("moe_router_kernel", moe_router_kernel));
  out.push_back(moe_kernel_fn("moe_build_kernel", moe_build_kernel));
}

void moe_launch_route(const MoePlan& p, const MoeGpuWeights& w, const float* x, int rows,
                      MoeGpuScratch& s, gpuStream_t stream) {
  const int E = w.n_experts, k = w.top_k, H = w.hidden;
  const KernelLaunch& r = p.route_k;
  if (p.route == MoeRoute::small) {
    moe_route_small_kernel<<<moe_grid(r), r.threads, r.dyn_smem_bytes, stream>>>(
        x, w.router_w, w.router_b, rows, H, E, k, p.gemv_max, p.tile_rows, s.experts, s.weights, s.offsets,
        s.active, s.meta, s.slot_pair, s.tile_expert, s.tile_slot0);
    GPU_CHECK_LAUNCH();
    return;
  }
  if (p.route == MoeRoute::rows)
    moe_router_rows_kernel<<<moe_grid(r), r.threads, r.dyn_smem_bytes, stream>>>(
        x, w.router_w, w.router_b, rows, H, E, k, s.experts, s.weights);
  else
    moe_router_kernel<<<moe_grid(r), r.threads, r.dyn_smem_bytes, stream>>>(
        x, w.router_w, w.router_b, H, E, k, s.experts, s.weights);
  GPU_CHECK_LAUNCH();
  const KernelLaunch& b = p.build_k;
  moe_build_kernel<<<moe_grid(b), b.threads, b.dyn_smem_bytes, stream>>>(
      s.experts, rows * k, E, p.gemv_max, p.tile_rows, s.offsets, s.active, s.meta, s.slot_pair, s.tile_expert,
      s.tile_slot0, b.dyn_smem_bytes > 0 ? 1 : 0);
  GPU_CHECK_LAUNCH();
}

void moe_router_topk_logits(const float* logits, int rows, int E, int k, int32_t* experts,
                            float* weights, gpuStream_t stream) {
  if (k < 1 || k > E || k > kMoeMaxTopK || E > 32 * kWaveSize)
    fail("moe: top-k %d unsupported for %d experts", k, E);
  if (rows <= 0) return;
  moe_topk_logits_kernel<<<rows, kWaveSize, 0, stream>>>(logits, E, k, experts, weights);
  GPU_CHECK_LAUNCH();
}

}  // namespace gptoss::gpu
