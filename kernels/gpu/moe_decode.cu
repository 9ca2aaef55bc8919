// kernels/gpu/moe_decode.cu: the decode path's MoE block (decode.h, moe_forward_decode): three
// kernels per layer for steps of at most kDecodeMaxRows rows.
//   route: every block stages the rows RMSNorm-ed (block 0 also stores them for the experts),
//     computes its share of the router logits (a wave per two experts: the bf16 dot product of the
//     router in moe_route.cu, bit for bit), and the block that finishes last (a ticket) does the
//     top-k + softmax of every row (wave_topk_softmax, the routing kernels' choice).
//   mlp1 / mlp2: one (row, rank) pair per grid column and a tile of weight rows per block, so all
//     of the chosen experts' bytes stream from every SM. NVIDIA: K is summed in a fixed number of
//     parts added in part order; a warp owns 16 weight rows and one part of K ("wide" one-row
//     launches) or all of them in turn (launch_shapes.h MoeDecodeShape), and streams them through
//     a cp.async ring in shared memory (stage_blocks MXFP4 blocks per stage, `stages` stages);
//     per MXFP4 block, each lane turns its word of rows g and g + 8 into fp16 pairs (the exact
//     placements LUT * 2^-14) and two mma.sync m16n8k16 multiply them with the input as fp16 hi
//     (column 0) and lo (column 1) halves; the block's sums are scaled by the rows' E8M0 scales
//     into fp32 accumulators (fp32-quality, as moe_gemv.cu's tensor-core GEMV).
//     HIP: kMoeDecodeTileM rows per block, no K split, fp32 FMAs over the decoded codes (correct;
//     not tuned).
//   mlp1's epilogue: bias + clamped SwiGLU per (gate, up) row pair -> act[pair]. mlp2's: bias ->
//     y[pair]; the last of the k pairs of a row to finish an output tile (a ticket per (row,
//     tile)) adds w_0 y_0 + w_1 y_1 + ... in rank order into the residual: deterministic.
// Every ticket returns to 0 in the launch that uses it, so graph replays reuse the counters.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "gpu/decode.h"
#include "gpu/decode_device.h"
#include "gpu/moe_kernels.h"

namespace gptoss::gpu {
namespace {

constexpr int kMaxTopKDecode = 8;

using decode_detail::kThreads;

struct RouteArgs {
  const float* x;          // [rows, H] residual
  const uint16_t* norm_w;  // [H]
  float eps;
  const uint16_t* rw;      // [E, H]
  const uint16_t* rb;      // [E]
  float* xn;               // [rows, H] out: normalised rows
  float* logits;           // [rows, E]
  int32_t* experts;        // [rows, k]
  float* weights;          // [rows, k]
  uint32_t* ticket;
  int rows, H, E, k;
};

// ---------------------------------------------------------------------------------- router
// The wave butterfly of moe_kernels.h's / device_utils.h's wave_sum (both visible here), spelled
// out: the routers' logits must come out bit-identical.
__device__ __forceinline__ float route_wave_sum(float v) {
#pragma unroll
  for (int off = kWaveSize / 2; off > 0; off >>= 1) v += gpu_shfl_xor(v, off);
  return v;
}

template <int R>
__global__ __launch_bounds__(kThreads) void moe_route_decode_kernel(RouteArgs a) {
  namespace dd = decode_detail;
  constexpr int kRouteWaves = dd::kWaves;
  extern __shared__ float4 route_smem4[];
  float* xs = reinterpret_cast<float*>(route_smem4);  // [R][H] lo | hi, then [rows][E] logits
  __shared__ double red[kRouteWaves];
  __shared__ int last;
  const int wave = threadIdx.x / kWaveSize, lane = threadIdx.x % kWaveSize;
  const int H = a.H, n_chunks = H / 8;
  const int e0 = (blockIdx.x * kRouteWaves + wave) * 2;
  uint4 wv[2][dd::kSmallNC];
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const bool ok = e0 + j < a.E;
    const uint4* wp = reinterpret_cast<const uint4*>(a.rw + static_cast<size_t>(ok ? e0 + j : 0) * H);
#pragma unroll
    for (int u = 0; u < dd::kSmallNC; ++u) {
      const int c = lane + u * kWaveSize;
      wv[j][u] = ok && c < n_chunks ? wp[c] : make_uint4(0, 0, 0, 0);
    }
  }
  gpu_grid_wait();  // launch overlap (vendor.h): the router's weights above, the rows below
  gpu_grid_trigger();
  dd::stage_rows<R>(a.x, nullptr, a.rows, H, a.norm_w, a.eps, xs, red);
  if (blockIdx.x == 0)  // the normalised rows for the expert matmuls, in plain row order
    for (int r = 0; r < a.rows; ++r)
      for (int i = threadIdx.x; i < H / 4; i += kThreads)
        reinterpret_cast<float4*>(a.xn + static_cast<size_t>(r) * H)[i] =
            ((i & 1) ? dd::xs_hi(xs, r, H) : dd::xs_lo(xs, r, H))[i >> 1];
  float acc[2][R];
#pragma unroll
  for (int j = 0; j < 2; ++j)
#pragma unroll
    for (int r = 0; r < R; ++r) acc[j][r] = 0.0f;
#pragma unroll
  for (int u = 0; u < dd::kSmallNC; ++u) {
    const int c = lane + u * kWaveSize;
    if (c < n_chunks) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float4 xa = dd::xs_lo(xs, r, H)[c], xb = dd::xs_hi(xs, r, H)[c];
        dd::fma8(acc[0][r], wv[0][u], xa, xb);
        dd::fma8(acc[1][r], wv[1][u], xa, xb);
      }
    }
  }
#pragma unroll
  for (int j = 0; j < 2; ++j)
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float s = route_wave_sum(acc[j][r]);
      if (lane == 0 && r < a.rows && e0 + j < a.E)
        a.logits[static_cast<size_t>(r) * a.E + e0 + j] = s + bf16_bits_to_f32(a.rb[e0 + j]);
    }
  // The last block to finish does the top-k: every block's logits are visible to it.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(a.ticket, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  float* lg = xs;  // the staged rows are no longer needed
  const volatile float* src = a.logits;
  for (int i = threadIdx.x; i < a.rows * a.E; i += kThreads) lg[i] = src[i];
  __syncthreads();
  for (int r = wave; r < a.rows; r += kRouteWaves)
    wave_topk_softmax(lg + static_cast<size_t>(r) * a.E, a.E, a.k, lane,
                      a.experts + static_cast<size_t>(r) * a.k, a.weights + static_cast<size_t>(r) * a.k);
  if (threadIdx.x == 0) *a.ticket = 0;
}

// ---------------------------------------------------------------------------------- experts
struct MlpArgs {
  const uint8_t* blocks;   // [E, M, K/32, 16]
  const uint8_t* scales;   // [E, M, K/32]
  const uint16_t* bias;    // [E, M]
  const float* x;          // mlp1: xn [rows, K] (row = pair / k); mlp2: act [pairs, K]
  const int32_t* experts;  // [pairs]
  const float* weights;    // [pairs] (mlp2)
  float* out;              // mlp1: act [pairs, M / 2]; mlp2: y [pairs, M]
  float* residual;         // mlp2: [rows, M]
  uint32_t* tickets;       // mlp2: [rows, M / tile_rows]
  int K, M, k;
  int tile_rows;           // weight rows per block (grid column y = tile)
  float limit;
  int n_experts;
};

// The epilogue of one weight row pair (rows m and m + 8 of a warp's 16, values v0, v8) for lane
// (g, t = 0), shared by both implementations. mlp1: (gate, up) rows 2i, 2i + 1 -> act[i] (the up
// value of row m comes from lane + 4, which holds row m + 1).
template <bool kFirst>
__device__ __forceinline__ void mlp_store(const MlpArgs& a, int pair, int e, int m0, int g, float v0,
                                          float v8, float up0, float up8) {
  const uint16_t* bias = a.bias + static_cast<size_t>(e) * a.M + m0;
  if (kFirst) {
    if (g % 2 == 0) {
      float* act = a.out + static_cast<size_t>(pair) * (a.M / 2);
      act[(m0 + g) / 2] =
          swiglu(v0 + bf16_bits_to_f32(bias[g]), up0 + bf16_bits_to_f32(bias[g + 1]), a.limit);
      act[(m0 + g + 8) / 2] =
          swiglu(v8 + bf16_bits_to_f32(bias[g + 8]), up8 + bf16_bits_to_f32(bias[g + 9]), a.limit);
    }
  } else {
    float* y = a.out + static_cast<size_t>(pair) * a.M + m0;
    y[g] = v0 + bf16_bits_to_f32(bias[g]);
    y[g + 8] = v8 + bf16_bits_to_f32(bias[g + 8]);
  }
}

// mlp2: the last of a row's k pairs to finish tile `tile` adds the weighted sum into the residual.
__device__ void mlp2_combine(const MlpArgs& a, int pair, int tile) {
  __shared__ int last;
  const int row = pair / a.k;
  __threadfence();  // this thread's y writes, before the ticket
  __syncthreads();
  if (threadIdx.x == 0)
    last = atomicAdd(a.tickets + static_cast<size_t>(row) * (a.M / a.tile_rows) + tile, 1u) ==
           static_cast<unsigned>(a.k - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  const int m = tile * a.tile_rows + static_cast<int>(threadIdx.x);
  if (static_cast<int>(threadIdx.x) < a.tile_rows) {
    // The k pairs' y, all loaded at once (ld_coherent: past L1; a volatile load each would be a
    // round trip each), then summed in rank order.
    const size_t p0 = static_cast<size_t>(row) * a.k;
    float y[kMaxTopKDecode];
#pragma unroll
    for (int r = 0; r < kMaxTopKDecode; ++r) y[r] = r < a.k ? ld_coherent(a.out + (p0 + r) * a.M + m) : 0.0f;
    const float* w = a.weights + p0;
    float acc = w[0] * y[0];
#pragma unroll
    for (int r = 1; r < kMaxTopKDecode; ++r)
      if (r < a.k) acc = acc + w[r] * y[r];
    float* res = a.residual + static_cast<size_t>(row) * a.M + m;
    *res = *res + acc;
  }
  if (threadIdx.x == 0) a.tickets[static_cast<size_t>(row) * (a.M / a.tile_rows) + tile] = 0;
}

// One expert matmul kernel as launched: its launcher, shared memory, block size and weight rows per
// block (the grid's tile, grid y = M / tile_rows).
struct MlpKernel {
  const void* fn;
  void (*launch)(dim3, dim3, size_t, gpuStream_t, const MlpArgs&);
  size_t smem;
  int threads, tile_rows;
};

#if !defined(GPTOSS_HIP)
// NVIDIA: kGroups warps' worth of 16 weight rows per block. K is summed in kParts parts (fixed per
// matmul, launch_shapes.h kMoeDecodeParts1 / 2) added in part order, whatever the launch shape:
// kSplit == kParts gives each part its own warp (warp w: rows group w % kGroups, part w /
// kGroups; the one-row "wide" shape, for more warps on the SMs), kSplit == 1 runs a group's parts
// in turn in one warp (the "narrow" shape of 2-4 rows). Both add the same sums in the same order,
// so a row's bits never depend on the step's other rows.
template <int kGroups, int kSplit, int kStageBlocks, int kStageCount>
struct MlpSmem {
  static_assert((16 * kStageBlocks) % kWaveSize == 0, "a stage's 16-byte pieces split evenly over the lanes");
  static_assert(kStageCount >= 2, "a ring");
  static constexpr int kWarps = kGroups * kSplit;
  static constexpr int kStages = kStageCount;              // stages in flight per warp
  static constexpr int kRowPad = kStageBlocks * 16 + 16;  // bytes per staged weight row (conflict-free)
  static constexpr int kWarpStage = 16 * kRowPad;         // bytes of one warp's stage
  __host__ __device__ static size_t x_bytes(int K) { return static_cast<size_t>(K / 32) * 128; }  // hi|lo per block
  __host__ __device__ static size_t scale_bytes(int K) { return static_cast<size_t>(kWarps) * 16 * (K / 32); }
  __host__ __device__ static constexpr size_t ring_bytes() { return static_cast<size_t>(kWarps) * kStages * kWarpStage; }
  __host__ __device__ static size_t bytes(int K) { return x_bytes(K) + scale_bytes(K) + ring_bytes(); }
};

// kSkip: 0 in every launch the engine makes. Nonzero only in the timing probes of
// moe_forward_decode_probe (bench-kernels --moe-probes; results meaningless): bit 0 leaves out the
// arithmetic of every MXFP4 block, bit 1 the input's staging, bit 2 the epilogue (stores and, in
// mlp2, the combine), so the weight stream's own time can be told from the rest.
// One block of an expert matmul: weight-row tile `tile` of (row, rank) pair `pair`. As a kernel
// (moe_mlp_decode_kernel, kFused false) the block is (pair, tile) = (blockIdx.x, blockIdx.y) and
// waits for the previous launch (launch overlap, vendor.h) after mlp2's L2 hints; inside the fused
// kernel (moe_experts_fused_kernel, kFused true) it is one work item, and mlp2 reads its input
// past L1 (written in the same launch by other blocks). stage_hook(s, n_stages, warp, lane) runs
// in every warp after it issued its copies for stage s + stages - 1 (the fused kernel's mlp1 items
// pace their L2 hints of mlp2's weights with it; elsewhere it does nothing).
struct NoStageHook {
  __device__ void operator()(int, int, int, int) const {}
};

template <bool kFirst, int kGroups, int kSplit, int kStageBlocks, int kStageCount, int kSkip, bool kFused,
          class StageHook = NoStageHook>
__device__ __forceinline__ void mlp_decode_block(const MlpArgs& a, const int pair, const int tile,
                                                 const StageHook& stage_hook = StageHook{}) {
  constexpr bool kMath = !(kSkip & 1), kStageX = !(kSkip & 2), kEpilogue = !(kSkip & 4);
  using Smem = MlpSmem<kGroups, kSplit, kStageBlocks, kStageCount>;
  constexpr int kStages = Smem::kStages, kRowPad = Smem::kRowPad, kWarpStage = Smem::kWarpStage;
  constexpr int kParts = kFirst ? kMoeDecodeParts1 : kMoeDecodeParts2;
  static_assert(kSplit == 1 || kSplit == kParts, "a warp per part, or all parts in one warp");
  constexpr int kWarpParts = kParts / kSplit;  // parts a warp sums in turn
  constexpr int kBlockThreads = kGroups * kSplit * kWaveSize;
  extern __shared__ uint4 mlp_smem4[];
  uint8_t* smem = reinterpret_cast<uint8_t*>(mlp_smem4);
  const int K = a.K, nb = K / 32;
  uint8_t* xq = smem;                                // [nb][hi 4 x uint4 | lo 4 x uint4]
  uint8_t* scs = xq + Smem::x_bytes(K);              // [warp][16 rows][nb]
  uint8_t* ring = scs + Smem::scale_bytes(K);        // [warp][stage][16 rows][kRowPad]
  const int warp = threadIdx.x / kWaveSize, lane = threadIdx.x % kWaveSize;
  const int group = warp % kGroups, split = warp / kGroups;
  const int g = lane / 4, t = lane % 4;
  const int m0 = tile * (16 * kGroups) + group * 16;  // this warp's first weight row
  // Part q covers MXFP4 blocks [part_lo(q), part_lo(q + 1)) of each row; this warp sums parts
  // [q_begin, q_begin + kWarpParts), each in stages_per_part stages.
  auto part_lo = [&](int q) { return q * nb / kParts; };
  const int q_begin = split * kWarpParts;
  const int stages_per_part = ((nb + kParts - 1) / kParts + kStageBlocks - 1) / kStageBlocks;
  const int b_begin = part_lo(q_begin), b_end = part_lo(q_begin + kWarpParts);
  if (!kFirst && !kFused) {
    // Before the wait (launch overlap, vendor.h): the experts were chosen two launches back (the
    // router), which has finished when this kernel starts; read through L2 as a hint only, to
    // bring this warp's weight rows and scales into L2 while mlp1 finishes.
    const int eh = __ldcg(a.experts + pair);
    if (eh >= 0 && eh < a.n_experts) {
      const size_t hrow0 = static_cast<size_t>(eh) * a.M + m0;
      const uint8_t* hw = a.blocks + hrow0 * (K / 2);
      if constexpr (kSplit == 1) {  // the 16 rows are contiguous
        for (int off = lane * 128; off < 16 * (K / 2); off += kWaveSize * 128) gpu_prefetch_l2(hw + off);
      } else {  // this warp's columns of each row
        for (int r = 0; r < 16; ++r)
          for (int off = 16 * b_begin + lane * 128; off < 16 * b_end; off += kWaveSize * 128)
            gpu_prefetch_l2(hw + static_cast<size_t>(r) * (K / 2) + off);
      }
      const uint8_t* hs = a.scales + hrow0 * nb;
      if (split == 0)
        for (int off = lane * 128; off < 16 * nb; off += kWaveSize * 128) gpu_prefetch_l2(hs + off);
    }
  }
  if constexpr (!kFused) {
    gpu_grid_wait();
    gpu_grid_trigger();
  }
  const int e = a.experts[pair];
  const size_t row0 = static_cast<size_t>(e) * a.M + m0;
  const uint8_t* wsrc = a.blocks + row0 * (K / 2);
  // The fused kernel's weight copies carry an L2 evict-first policy: each line is read once per
  // step, so the stream displaces nothing useful in L2, and mlp2's lines, hinted evict-last ahead
  // of their use, lose that priority once read.
  [[maybe_unused]] uint64_t policy = 0;
  if constexpr (kFused) policy = tile::l2_policy_evict_first();
  uint8_t* my_ring = ring + static_cast<size_t>(warp) * kStages * kWarpStage;
  const int n_stages = kWarpParts * stages_per_part;

  // Stage s: part q_begin + s / stages_per_part, its blocks from local stage s % stages_per_part
  // on (kStageBlocks of them at most, fewer at the part's end, none past it); 16 rows x those
  // blocks of 16 bytes, lane l copying pieces l, l + 32, ... (row piece / kStageBlocks, block
  // piece % kStageBlocks). The issue side walks (part, local stage) incrementally.
  int iq = q_begin, il = 0;
  auto issue = [&](int s) {
    if (s < n_stages) {
      uint8_t* dst = my_ring + static_cast<size_t>(s % kStages) * kWarpStage;
      const int b0 = part_lo(iq) + il * kStageBlocks, b1 = part_lo(iq + 1);
#pragma unroll
      for (int i = 0; i < 16 * kStageBlocks / kWaveSize; ++i) {
        const int piece = lane + i * kWaveSize, r = piece / kStageBlocks, b = piece % kStageBlocks;
        if (b0 + b < b1) {
          void* d = dst + r * kRowPad + 16 * b;
          const void* g = wsrc + static_cast<size_t>(r) * (K / 2) + 16 * (b0 + b);
          if constexpr (kFused)
            tile::cp_async16_policy(d, g, policy);
          else
            tile::cp_async16(d, g);
        }
      }
      if (++il == stages_per_part) il = 0, ++iq;
    }
    tile::cp_async_commit();
  };
  // This warp's rows' scales (16 rows x nb bytes, contiguous and 16-byte aligned: M and the warp's
  // first row are multiples of 16) ride in the first stage's copy group (every warp copies its
  // own: a warp can only wait for its own copies).
  uint8_t* my_sc = scs + static_cast<size_t>(warp) * 16 * nb;
  const uint8_t* scsrc = a.scales + row0 * nb;
  for (int i = lane; i < nb; i += kWaveSize) tile::cp_async16(my_sc + 16 * i, scsrc + 16 * i);
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) issue(s);

  // The input as fp16 hi / lo pairs in the B-fragment order (f16_hilo8): all of a thread's loads
  // first (one round of latency), then the conversions.
  const float* xsrc = kFirst ? a.x + static_cast<size_t>(pair / a.k) * K : a.x + static_cast<size_t>(pair) * K;
  constexpr int kItems = (kDecodeMaxK / 32 * 4 + kBlockThreads - 1) / kBlockThreads;  // 8-value items per thread, at most
  float4 xv[kItems][2];
#pragma unroll
  for (int u = 0; u < (kStageX ? kItems : 0); ++u) {
    const int it = threadIdx.x + u * kBlockThreads, b = it / 4, tt = it % 4;
    const bool ok = it < nb * 4;
    const float4* xp = reinterpret_cast<const float4*>(xsrc + 32 * b + 8 * tt);
    if constexpr (kFused && !kFirst) {  // act, written by this launch's mlp1 items: from L2
      xv[u][0] = ok ? __ldcg(xp) : make_float4(0.f, 0.f, 0.f, 0.f);
      xv[u][1] = ok ? __ldcg(xp + 1) : make_float4(0.f, 0.f, 0.f, 0.f);
    } else {
      xv[u][0] = ok ? xp[0] : make_float4(0.f, 0.f, 0.f, 0.f);
      xv[u][1] = ok ? xp[1] : make_float4(0.f, 0.f, 0.f, 0.f);
    }
  }
#pragma unroll
  for (int u = 0; u < (kStageX ? kItems : 0); ++u) {
    const int it = threadIdx.x + u * kBlockThreads, b = it / 4, tt = it % 4;
    if (it >= nb * 4) continue;
    uint4 hi, lo;
    f16_hilo8(xv[u][0], xv[u][1], hi, lo);
    reinterpret_cast<uint4*>(xq + static_cast<size_t>(b) * 128)[tt] = hi;
    reinterpret_cast<uint4*>(xq + static_cast<size_t>(b) * 128 + 64)[tt] = lo;
  }
  __syncthreads();

  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // rows g, g + 8 x columns 2t, 2t + 1: this part's sums
  float tot[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // the warp's finished parts, added in part order
  int cq = q_begin, cl = 0;                 // the compute side's (part, local stage)
  for (int s = 0; s < n_stages; ++s) {
    tile::cp_async_wait<kStages - 2>();
    __syncwarp();
    issue(s + kStages - 1);  // into the slot the previous iteration finished reading
    stage_hook(s, n_stages, warp, lane);
    const uint8_t* st = my_ring + static_cast<size_t>(s % kStages) * kWarpStage;
    const int bs = part_lo(cq) + cl * kStageBlocks;
    const int nbs = min(kStageBlocks, part_lo(cq + 1) - bs);
    // One MXFP4 block of the stage: its codes (rows g, g + 8) times the input's hi / lo columns.
    auto block = [&](int bi) {
      const int b = bs + bi;
      const uint32_t w0 = *reinterpret_cast<const uint32_t*>(st + g * kRowPad + 16 * bi + 4 * t);
      const uint32_t w1 = *reinterpret_cast<const uint32_t*>(st + (g + 8) * kRowPad + 16 * bi + 4 * t);
      uint4 bv = make_uint4(0, 0, 0, 0);  // column g: 0 = hi, 1 = lo, others zero
      if (g < 2) bv = *reinterpret_cast<const uint4*>(xq + static_cast<size_t>(b) * 128 + 64 * g + 16 * t);
      float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      tile::mma_f16_m16n8k16(d, mxfp4_pair_f16(w0, 0), mxfp4_pair_f16(w1, 0), mxfp4_pair_f16(w0, 1),
                             mxfp4_pair_f16(w1, 1), bv.x, bv.y);
      tile::mma_f16_m16n8k16(d, mxfp4_pair_f16(w0, 2), mxfp4_pair_f16(w1, 2), mxfp4_pair_f16(w0, 3),
                             mxfp4_pair_f16(w1, 3), bv.z, bv.w);
      const float f0 = e8m0_to_f32(my_sc[g * nb + b]) * 16384.0f;
      const float f8 = e8m0_to_f32(my_sc[(g + 8) * nb + b]) * 16384.0f;
      acc[0] = fmaf(d[0], f0, acc[0]);
      acc[1] = fmaf(d[1], f0, acc[1]);
      acc[2] = fmaf(d[2], f8, acc[2]);
      acc[3] = fmaf(d[3], f8, acc[3]);
    };
    if (!kMath) {
    } else if (nbs == kStageBlocks) {  // a full stage: its blocks' loads and decodes interleave
#pragma unroll
      for (int bi = 0; bi < kStageBlocks; ++bi) block(bi);
    } else {
      for (int bi = 0; bi < nbs; ++bi) block(bi);
    }
    if (++cl == stages_per_part) {  // part cq done: into the warp's total, in part order
#pragma unroll
      for (int i = 0; i < 4; ++i) tot[i] = cq == q_begin ? acc[i] : tot[i] + acc[i], acc[i] = 0.0f;
      cl = 0, ++cq;
    }
  }
  tile::cp_async_wait<0>();
  if constexpr (kSplit > 1) {
    static_assert(sizeof(float) * 4 * kWaveSize * kGroups * (kSplit - 1) <= Smem::ring_bytes(), "ring holds the sums");
    // Warps of parts 1.. hand their sums to part 0's warp through the (finished) ring, which adds
    // them in part order (the narrow shape's order: ((p0 + p1) + p2) + ...).
    __syncthreads();
    float4* red = reinterpret_cast<float4*>(ring);  // [split - 1][group][lane]
    if (split > 0) red[((split - 1) * kGroups + group) * kWaveSize + lane] = make_float4(tot[0], tot[1], tot[2], tot[3]);
    __syncthreads();
    if (split == 0) {
#pragma unroll
      for (int p = 1; p < kSplit; ++p) {
        const float4 o = red[((p - 1) * kGroups + group) * kWaveSize + lane];
        tot[0] = tot[0] + o.x, tot[1] = tot[1] + o.y, tot[2] = tot[2] + o.z, tot[3] = tot[3] + o.w;
      }
    }
  }
  if (split == 0) {
    // Lane (g, 0) holds columns 0 (hi part) and 1 (lo part) of rows g and g + 8.
    const float v0 = tot[0] + tot[1], v8 = tot[2] + tot[3];
    const float up0 = gpu_shfl_down(v0, 4), up8 = gpu_shfl_down(v8, 4);
    if (t == 0 && kEpilogue) mlp_store<kFirst>(a, pair, e, m0, g, v0, v8, up0, up8);
  }
  if (!kFirst && kEpilogue) mlp2_combine(a, pair, tile);
}

template <bool kFirst, int kGroups, int kSplit, int kStageBlocks, int kStageCount, int kSkip = 0>
__global__ __launch_bounds__(kGroups * kSplit * 32) void moe_mlp_decode_kernel(MlpArgs a) {
  mlp_decode_block<kFirst, kGroups, kSplit, kStageBlocks, kStageCount, kSkip, false>(a, blockIdx.x, blockIdx.y);
}

// ---------------------------------------------------------------------------------- fused experts
// Both expert matmuls of a step in one launch (MoeDecodeScratch::fused): the blocks of mlp1 and
// then of mlp2 (the step's shapes, wide or narrow: the same arithmetic, so the same bits as the
// two launches) are work items handed out in that order by an atomic counter to a grid of the blocks
// that fit at once. An mlp2 item of pair p waits until the mlp1 items of p are done (a counter per
// pair); every mlp1 item was handed out before any mlp2 item, to a block that is running, so the
// wait always ends, whatever the grid and whatever else runs on the device. The mlp1 items hint
// the chosen experts' mlp2 weights and scales into L2 (evict-last), a share at each stage of their
// streams, so they come from DRAM while mlp1 runs instead of after it. The last block to find the queue
// empty resets the counters for the next launch (graph replays reuse them).
struct FusedCtl {
  uint32_t* queue;   // next work item
  uint32_t* exited;  // blocks that found the queue empty
  uint32_t* routed;  // kRoute: 1 once the router items chose the experts
  uint32_t* done;    // [pairs] mlp1 items finished per pair
};

// kRoute (one-row steps, MoeDecodeScratch::fused == 2): the router as the queue's first items,
// kWaves experts each (a wave per expert: the router kernel's dot product, sum and bias, so the
// same logits), the first item storing the normalised row for the expert matmuls, the last to
// finish (the router's ticket) doing the top-k + softmax and raising c.routed, which the mlp1
// items wait for. smem: the block's dynamic shared memory: the row (H floats, later the logits),
// then each wave's router row (H bf16), copied with cp.async so that the fused kernel's register
// budget holds (the router kernel keeps its rows in registers).
inline size_t route_item_smem(int H, int E) {
  return static_cast<size_t>(std::max(H, E)) * 4 + static_cast<size_t>(decode_detail::kWaves) * H * 2;
}
__device__ __noinline__ void route_item(const RouteArgs& a, int item, int n_items, uint32_t* routed, uint8_t* smem) {
  namespace dd = decode_detail;
  __shared__ double red[dd::kWaves];
  __shared__ int last;
  float* xs = reinterpret_cast<float*>(smem);
  const int wave = threadIdx.x / kWaveSize, lane = threadIdx.x % kWaveSize;
  const int H = a.H, n_chunks = H / 8;
  const int e = item * dd::kWaves + wave;
  const bool ok = e < a.E;
  uint4* wrow = reinterpret_cast<uint4*>(smem + static_cast<size_t>(max(H, a.E)) * 4 + static_cast<size_t>(wave) * H * 2);
  if (ok) {
    const uint8_t* wp = reinterpret_cast<const uint8_t*>(a.rw + static_cast<size_t>(e) * H);
    for (int c = lane; c < n_chunks; c += kWaveSize) tile::cp_async16(wrow + c, wp + 16 * c);
  }
  tile::cp_async_commit();
  dd::stage_rows<1>(a.x, nullptr, 1, H, a.norm_w, a.eps, xs, red);
  if (item == 0)
    for (int i = threadIdx.x; i < H / 4; i += dd::kThreads)
      reinterpret_cast<float4*>(a.xn)[i] = ((i & 1) ? dd::xs_hi(xs, 0, H) : dd::xs_lo(xs, 0, H))[i >> 1];
  tile::cp_async_wait<0>();
  __syncwarp();
  float acc = 0.0f;
#pragma unroll
  for (int u = 0; u < dd::kSmallNC; ++u) {
    const int c = lane + u * kWaveSize;
    if (ok && c < n_chunks) dd::fma8(acc, wrow[c], dd::xs_lo(xs, 0, H)[c], dd::xs_hi(xs, 0, H)[c]);
  }
  const float sum = route_wave_sum(acc);
  if (lane == 0 && ok) a.logits[e] = sum + bf16_bits_to_f32(a.rb[e]);
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(a.ticket, 1u) == static_cast<unsigned>(n_items - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  float* lg = xs;  // the staged row is no longer needed
  const volatile float* src = a.logits;
  for (int i = threadIdx.x; i < a.E; i += dd::kThreads) lg[i] = src[i];
  __syncthreads();
  if (wave == 0) wave_topk_softmax(lg, a.E, a.k, lane, a.experts, a.weights);
  __threadfence();  // the experts and weights, before the flag
  __syncthreads();
  if (threadIdx.x == 0) {
    *a.ticket = 0;
    atomicExch(routed, 1u);
  }
}

template <int G1, int S1, int B1, int T1, int G2, int S2, int B2, int T2, int kMinBlocks, bool kRoute>
__global__ __launch_bounds__(G1 * S1 * 32, kMinBlocks) void moe_experts_fused_kernel(MlpArgs a1, MlpArgs a2, FusedCtl c,
                                                                                     int pairs, RouteArgs ra) {
  static_assert(G1 * S1 == G2 * S2, "one block size for both matmuls");
  static_assert(!kRoute || G1 * S1 * kWaveSize == decode_detail::kThreads, "router items need the router's block");
  __shared__ int item_s;
  const int nr = kRoute ? (ra.E + decode_detail::kWaves - 1) / decode_detail::kWaves : 0;
  if (kRoute)  // before the wait only hints, at weights (vendor.h): the router's rows into L2
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
         i < static_cast<size_t>(ra.E) * ra.H * 2 / 128; i += static_cast<size_t>(gridDim.x) * blockDim.x)
      gpu_prefetch_l2(reinterpret_cast<const uint8_t*>(ra.rw) + 128 * i);
  gpu_grid_wait();  // the router's (kRoute: the residual's) results are visible from here
  gpu_grid_trigger();
  const int tiles1 = a1.M / (16 * G1), tiles2 = a2.M / (16 * G2);
  const int n1 = pairs * tiles1, n2 = pairs * tiles2;
  // mlp2's weights and scales of the chosen experts into L2 (evict-last), paced: each warp of an
  // mlp1 item hints its share of the lines at every stage of its stream, so the hints ride along
  // with mlp1's copies instead of queueing ahead of them. Line L of [0, pairs x per_pair): pair
  // L / per_pair, weight line or (past wl) scale line L % per_pair of its expert; per_slot lines per
  // (mlp1 item, warp, stage), set once here so the stream's loop only adds and compares (32-bit: at
  // most 32 pairs x hidden 3072 x intermediate 4096 / 256 lines).
  constexpr int kWarps1 = G1 * S1, kParts1 = kMoeDecodeParts1;
  const uint32_t wl = static_cast<uint32_t>(a2.M) * (a2.K / 2) / 128, sl = static_cast<uint32_t>(a2.M) * (a2.K / 32) / 128;
  const uint32_t per_pair = wl + sl, total = static_cast<uint32_t>(pairs) * per_pair;
  const int nb1 = a1.K / 32;  // mlp_decode_block's stages per warp of mlp1, from its formula
  const uint32_t stages1 = (kParts1 / S1) * (((nb1 + kParts1 - 1) / kParts1 + B1 - 1) / B1);
  const uint32_t slots = static_cast<uint32_t>(n1) * kWarps1 * stages1;
  const uint32_t per_slot = (total + slots - 1) / slots;
  for (;;) {
    __syncthreads();  // the previous item is done with the shared memory and item_s
    if (threadIdx.x == 0) item_s = static_cast<int>(atomicAdd(c.queue, 1u));
    __syncthreads();
    const int item = item_s - nr;  // items [-nr, 0): the router's (kRoute)
    if (item >= n1 + n2) break;
    if (kRoute && item < 0) {
      extern __shared__ uint4 mlp_smem4[];
      route_item(ra, item + nr, nr, c.routed, reinterpret_cast<uint8_t*>(mlp_smem4));
    } else if (item < n1) {
      const int pair = item / tiles1;
      if (kRoute) {  // the experts chosen (every router item was handed out before this one)
        if (threadIdx.x == 0) {
          const volatile uint32_t* r = c.routed;
          while (*r == 0u) __nanosleep(64);
          __threadfence();
        }
        __syncthreads();
      }
      int hint_p = -1, hint_e = 0;  // the pair whose expert the hints last looked up
      const auto hint = [&](int st, int n_stages, int warp, int lane) {
        const uint32_t first = ((static_cast<uint32_t>(item) * kWarps1 + warp) * n_stages + st) * per_slot;
        for (uint32_t l = lane; l < per_slot; l += kWaveSize) {
          const uint32_t line = first + l;
          if (line >= total) break;
          const int p = static_cast<int>(line / per_pair);
          const uint32_t j = line - static_cast<uint32_t>(p) * per_pair;
          if (p != hint_p) {  // (kRoute: experts written in this launch, so not through the read-only path)
            hint_p = p;
            hint_e = kRoute ? __ldcg(a2.experts + p) : __ldg(a2.experts + p);
          }
          const int e = hint_e;
          if (e < 0 || e >= a2.n_experts) continue;
          gpu_prefetch_l2_evict_last(j < wl ? a2.blocks + (static_cast<size_t>(e) * a2.M * (a2.K / 2) + 128 * size_t(j))
                                            : a2.scales + (static_cast<size_t>(e) * a2.M * (a2.K / 32) + 128 * size_t(j - wl)));
        }
      };
      mlp_decode_block<true, G1, S1, B1, T1, 0, true>(a1, pair, item % tiles1, hint);
      __threadfence();  // this block's act stores, before the count
      __syncthreads();
      if (threadIdx.x == 0) atomicAdd(c.done + pair, 1u);
    } else {
      const int pair = (item - n1) / tiles2;
      if (threadIdx.x == 0) {
        const volatile uint32_t* d = c.done + pair;
        while (*d < static_cast<uint32_t>(tiles1)) __nanosleep(64);
        __threadfence();
      }
      __syncthreads();
      mlp_decode_block<false, G2, S2, B2, T2, 0, true>(a2, pair, (item - n1) % tiles2);
    }
  }
  if (threadIdx.x == 0) __threadfence();  // this block's last take, before its exit count
  if (threadIdx.x == 0 && atomicAdd(c.exited, 1u) == gridDim.x - 1) {  // every block is past its last take
    __threadfence();  // the resets after every block's last use of the counters
    *c.queue = 0;
    *c.routed = 0;
    for (int p = 0; p < pairs; ++p) c.done[p] = 0;
    *c.exited = 0;
  }
}
// The fused kernel over the wide shapes (one-row steps; 3 blocks of 8 warps per SM on an H100 at
// the 20b shape) or the narrow ones (2-4 rows; 4 blocks of 4 warps).
template <bool kWide, bool kRoute = false>
struct Fused {
  static_assert(kWide || !kRoute, "the router joins one-row steps only");
  static constexpr MoeDecodeShape s1 = kWide ? kMoeDecodeWide1 : kMoeDecodeNarrow1;
  static constexpr MoeDecodeShape s2 = kWide ? kMoeDecodeWide2 : kMoeDecodeNarrow2;
  static constexpr int kThreads = s1.groups * s1.split * kWaveSize, kTile1 = 16 * s1.groups, kTile2 = 16 * s2.groups;
  static constexpr auto* kernel = moe_experts_fused_kernel<s1.groups, s1.split, s1.stage_blocks, s1.stages, s2.groups,
                                                           s2.split, s2.stage_blocks, s2.stages, kWide ? 3 : 4, kRoute>;
  static size_t smem(int H, int I, int E) {
    return std::max({MlpSmem<s1.groups, s1.split, s1.stage_blocks, s1.stages>::bytes(H),
                     MlpSmem<s2.groups, s2.split, s2.stage_blocks, s2.stages>::bytes(I),
                     kRoute ? route_item_smem(H, E) : size_t(0)});
  }
};
// The launch shapes (launch_shapes.h): "wide" for one-row steps, "narrow" for more; and the
// benchmarks' candidates (moe_forward_decode_candidate). The scratch's shape check (H and 2I
// multiples of kMoeDecodeTileM) must cover every tile.
template <bool kFirst, int G, int S, int B, int T, int kSkip = 0>
MlpKernel mlp_kernel_shape(int K) {
  static_assert(kMoeDecodeTileM % (16 * G) == 0, "row tiles divide kMoeDecodeTileM");
  using Smem = MlpSmem<G, S, B, T>;
  constexpr auto* kernel = moe_mlp_decode_kernel<kFirst, G, S, B, T, kSkip>;
  return {reinterpret_cast<const void*>(kernel),
          [](dim3 grid, dim3 block, size_t smem, gpuStream_t st, const MlpArgs& a) {
            gpu_launch(kernel, grid, block, smem, st, a);
          },
          Smem::bytes(K), G * S * kWaveSize, 16 * G};
}
#define MLP_SHAPE(first, sh) mlp_kernel_shape<first, (sh).groups, (sh).split, (sh).stage_blocks, (sh).stages>
template <bool kFirst, bool kWide>
MlpKernel mlp_kernel_of(int K) {
  if constexpr (kFirst) return kWide ? MLP_SHAPE(true, kMoeDecodeWide1)(K) : MLP_SHAPE(true, kMoeDecodeNarrow1)(K);
  else return kWide ? MLP_SHAPE(false, kMoeDecodeWide2)(K) : MLP_SHAPE(false, kMoeDecodeNarrow2)(K);
}
template <bool kFirst>
MlpKernel mlp_kernel(int rows, int K) {
  return moe_decode_wide(rows) ? mlp_kernel_of<kFirst, true>(K) : mlp_kernel_of<kFirst, false>(K);
}
// Benchmark candidates (bench-kernels --moe-shapes): (mlp1, mlp2) shapes; split 1 or the parts.
struct MlpCandidate {
  MlpKernel (*k1)(int);
  MlpKernel (*k2)(int);
};
constexpr MoeDecodeShape kC[][2] = {
    {{4, 1, 8, 4}, {4, 1, 8, 4}},    // narrow (2-4 rows)
    {{4, 2, 4, 4}, {2, 4, 4, 4}},    // wide (1 row)
    {{4, 1, 16, 3}, {4, 1, 16, 3}},  // narrow, 256-byte row pieces
    {{4, 1, 8, 6}, {4, 1, 8, 6}},    // narrow, deeper ring
    {{4, 2, 8, 4}, {2, 4, 8, 4}},    // wide, 128-byte row pieces
    {{2, 2, 8, 6}, {1, 4, 8, 6}},    // wide, fewer groups, deeper ring
    {{2, 1, 16, 4}, {2, 1, 16, 4}},  // narrow, 2 groups, 256-byte pieces
    {{2, 2, 16, 3}, {1, 4, 16, 3}},  // wide, 256-byte pieces
};
#define MLP_CAND(i) \
  MlpCandidate { MLP_SHAPE(true, kC[i][0]), MLP_SHAPE(false, kC[i][1]) }
const MlpCandidate kCandidates[] = {MLP_CAND(0), MLP_CAND(1), MLP_CAND(2), MLP_CAND(3),
                                    MLP_CAND(4), MLP_CAND(5), MLP_CAND(6), MLP_CAND(7)};
#undef MLP_CAND
constexpr int kCandidateCount = sizeof(kCandidates) / sizeof(kCandidates[0]);
static_assert(sizeof(kC) / sizeof(kC[0]) == kCandidateCount, "a kernel pair per candidate");
// Timing probes (bench-kernels --moe-probes): the one-row chain (router, mlp1, mlp2 in the shipped
// wide shapes) with parts of the expert matmuls left out (moe_mlp_decode_kernel's kSkip) or
// without the router's launch (the experts of the last routing stay), to split the chain's time
// between the weight stream, the input staging, the arithmetic, the epilogue and the launches.
// Their results are meaningless; only their times are read.
struct MlpProbe {
  const char* name;
  MlpCandidate k;
  bool route;
};
#define MLP_PROBE(skip)                                                                                   \
  MlpCandidate {                                                                                          \
    mlp_kernel_shape<true, kMoeDecodeWide1.groups, kMoeDecodeWide1.split, kMoeDecodeWide1.stage_blocks,  \
                     kMoeDecodeWide1.stages, skip>,                                                       \
        mlp_kernel_shape<false, kMoeDecodeWide2.groups, kMoeDecodeWide2.split,                            \
                         kMoeDecodeWide2.stage_blocks, kMoeDecodeWide2.stages, skip>                      \
  }
const MlpProbe kProbes[] = {
    {"router + weight streams only (no input staging, arithmetic or epilogue)", MLP_PROBE(7), true},
    {"router + weight streams + input staging (no arithmetic or epilogue)", MLP_PROBE(5), true},
    {"router + expert matmuls without their epilogue and combine", MLP_PROBE(4), true},
    {"expert matmuls as shipped, no router launch", MLP_PROBE(0), false},
    {"weight streams only, no router launch", MLP_PROBE(7), false},
};
#undef MLP_PROBE
constexpr int kProbeCount = sizeof(kProbes) / sizeof(kProbes[0]);
void mlp_opt_in() {
  std::vector<const void*> fns = {mlp_kernel_of<true, true>(0).fn, mlp_kernel_of<true, false>(0).fn,
                                  mlp_kernel_of<false, true>(0).fn, mlp_kernel_of<false, false>(0).fn};
  for (const MlpCandidate& c : kCandidates) fns.push_back(c.k1(0).fn), fns.push_back(c.k2(0).fn);
  for (const MlpProbe& p : kProbes) fns.push_back(p.k.k1(0).fn), fns.push_back(p.k.k2(0).fn);
  for (const void* f : fns)
    GPU_CHECK(gpuFuncSetAttribute(f, gpuFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(decode_detail::kDecodeSmemLimit)));
}

#else  // HIP: fp32 FMAs over the decoded codes; a wave per 16 weight rows, as lanes (g, t) above
// would hold them: here lane l takes row (l % 16) of the wave's 16 and MXFP4 blocks l / 16,
// l / 16 + W / 16, ... (W = 64: 4 lanes per row), then the row's lanes are summed.
constexpr int kTileM = kMoeDecodeTileM;
constexpr int kMlpThreads = (kTileM / 16) * kWaveSize;

template <bool kFirst>
__global__ __launch_bounds__(kMlpThreads) void moe_mlp_decode_kernel(MlpArgs a) {
  extern __shared__ float4 mlp_smem4[];
  float* xs = reinterpret_cast<float*>(mlp_smem4);  // [K]
  const int K = a.K, nb = K / 32;
  const int pair = blockIdx.x, tile = blockIdx.y;
  const int wave = threadIdx.x / kWaveSize, lane = threadIdx.x % kWaveSize;
  constexpr int kLanesPerRow = kWaveSize / 16;
  const int rr = lane % 16, part = lane / 16;
  gpu_grid_wait();  // (no-ops on HIP; the contract of vendor.h's gpu_launch)
  gpu_grid_trigger();
  const int e = a.experts[pair];
  const int m0 = tile * kTileM + wave * 16;
  const float* xsrc = kFirst ? a.x + static_cast<size_t>(pair / a.k) * K : a.x + static_cast<size_t>(pair) * K;
  for (int i = threadIdx.x; i < K; i += kMlpThreads) xs[i] = xsrc[i];
  __syncthreads();
  const size_t row = static_cast<size_t>(e) * a.M + m0 + rr;
  const uint8_t* wb = a.blocks + row * (K / 2);
  const uint8_t* sc = a.scales + row * nb;
  float acc = 0.0f;
  for (int b = part; b < nb; b += kLanesPerRow) {
    const uint4 v = *reinterpret_cast<const uint4*>(wb + 16 * b);
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
    float part_sum = 0.0f;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      float raw[8];
      mxfp4_decode8_raw(words[q], raw);
#pragma unroll
      for (int i = 0; i < 8; ++i) part_sum = fmaf(raw[i], xs[32 * b + 8 * q + i], part_sum);
    }
    acc = fmaf(part_sum * 16384.0f, e8m0_to_f32(sc[b]), acc);
  }
#pragma unroll
  for (int off = 16; off < kWaveSize; off <<= 1) acc += gpu_shfl_xor(acc, off);
  // Lane rr (< 16) now holds row m0 + rr; lanes g = rr < 8 hold rows g and g + 8 as the NVIDIA
  // kernel's lane (g, 0) does, for the shared epilogue.
  const float v8 = gpu_shfl(acc, rr + 8);
  const float up0 = gpu_shfl(acc, rr + 1), up8 = gpu_shfl(acc, rr + 9);
  if (lane < 8) mlp_store<kFirst>(a, pair, e, m0, lane, acc, v8, up0, up8);
  if (!kFirst) mlp2_combine(a, pair, tile);
}
template <bool kFirst>
MlpKernel mlp_kernel(int, int K) {
  return {reinterpret_cast<const void*>(moe_mlp_decode_kernel<kFirst>),
          [](dim3 grid, dim3 block, size_t smem, gpuStream_t st, const MlpArgs& a) {
            gpu_launch(moe_mlp_decode_kernel<kFirst>, grid, block, smem, st, a);
          },
          static_cast<size_t>(K) * sizeof(float), kMlpThreads, kTileM};
}
void mlp_opt_in() {}  // (at most K floats: within the default limit)
#endif

template <class T>
T* dev_alloc(size_t n, size_t& bytes) {
  void* p = nullptr;
  GPU_CHECK(gpuMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
  bytes += std::max<size_t>(n, 1) * sizeof(T);
  return static_cast<T*>(p);
}

}  // namespace

MoeDecodeScratch moe_decode_scratch_create(const MoeGpuWeights& w, int max_rows) {
  const int H = w.hidden, I = w.intermediate, E = w.n_experts, k = w.top_k;
  // The router keeps a row's share per lane in registers for hidden <= kDecodeSmallK only (its dot
  // product stops there: a larger hidden would be summed in part), so larger ones are refused.
  if (H % kMoeDecodeTileM || (2 * I) % kMoeDecodeTileM || H % 32 || I % 32 || H > kDecodeSmallK || I > kDecodeMaxK ||
      k > kMaxTopKDecode || k > E || E > 32 * kWaveSize)
    fail("moe decode: shape unsupported (hidden %d, intermediate %d, experts %d top %d: hidden and "
         "2 x intermediate multiples of %d, hidden <= %d, intermediate <= %d, top-k <= %d)",
         H, I, E, k, kMoeDecodeTileM, kDecodeSmallK, kDecodeMaxK, kMaxTopKDecode);
  // Every launch of every step size fits this target, or the scratch is refused now (one line
  // naming the kernel, the step size and the limit), as moe_scratch_create does.
  const std::string limits = moe_decode_limits_error(kTarget, max_rows, H, I, E, k);
  if (!limits.empty()) fail("%s", limits.c_str());
  MoeDecodeScratch s;
  s.max_rows = max_rows, s.n_experts = E, s.top_k = k, s.hidden = H, s.intermediate = I;
  const size_t pairs = static_cast<size_t>(max_rows) * k;
  s.xn = dev_alloc<float>(static_cast<size_t>(max_rows) * H, s.bytes);
  s.logits = dev_alloc<float>(static_cast<size_t>(max_rows) * E, s.bytes);
  s.experts = dev_alloc<int32_t>(pairs, s.bytes);
  s.weights = dev_alloc<float>(pairs, s.bytes);
  s.act = dev_alloc<float>(pairs * I, s.bytes);
  s.y = dev_alloc<float>(pairs * H, s.bytes);
  const size_t n_tickets = 1 + static_cast<size_t>(max_rows) * (H / 16);  // tiles of >= 16 rows
  s.counters = dev_alloc<uint32_t>(n_tickets, s.bytes);
  GPU_CHECK(gpuMemset(s.counters, 0, n_tickets * sizeof(uint32_t)));
  s.fused_ctl = dev_alloc<uint32_t>(3 + pairs, s.bytes);
  GPU_CHECK(gpuMemset(s.fused_ctl, 0, (3 + pairs) * sizeof(uint32_t)));
  decode_detail::decode_dense_init();
  // Dynamic shared memory beyond 48 KiB needs the opt-in on NVIDIA (the router: its rows of H; the
  // expert matmuls: input, scales and cp.async rings, up to 64 KB at the 20b shape), to the decode
  // kernels' bound, as the dense decode kernels do (decode_dense_init).
#if !defined(GPTOSS_HIP)
  for (const void* f : {reinterpret_cast<const void*>(moe_route_decode_kernel<1>),
                        reinterpret_cast<const void*>(moe_route_decode_kernel<2>),
                        reinterpret_cast<const void*>(moe_route_decode_kernel<4>)})
    GPU_CHECK(gpuFuncSetAttribute(f, gpuFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(decode_detail::kDecodeSmemLimit)));
#endif
  mlp_opt_in();
  return s;
}

void moe_decode_scratch_destroy(MoeDecodeScratch& s) {
  for (void* p : {static_cast<void*>(s.xn), static_cast<void*>(s.logits), static_cast<void*>(s.experts),
                  static_cast<void*>(s.weights), static_cast<void*>(s.act), static_cast<void*>(s.y),
                  static_cast<void*>(s.counters), static_cast<void*>(s.fused_ctl)})
    if (p) (void)gpuFree(p);
  s = MoeDecodeScratch{};
}

void moe_decode_use_fused(MoeDecodeScratch& s, int level) {
  if (level < 0 || level > 2) fail("moe decode: fused level %d (0 off, 1 the expert matmuls, 2 with the router)", level);
#if defined(GPTOSS_HIP)
  if (level != 0) fail("moe decode: the fused expert matmuls are NVIDIA only");
  s.fused = 0;
#else
  s.fused = level;
  if (level == 0 || s.fused_grid[0] > 0) return;
  int dev = 0, sms = 0;
  GPU_CHECK(cudaGetDevice(&dev));
  GPU_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  auto grid = [&](const void* fn, int threads, size_t smem) {
    // The attribute is the kernel's, process-wide: the largest any scratch may pass, not this one's.
    if (smem > decode_detail::kDecodeSmemLimit) fail("moe decode: the fused expert matmuls need %zu bytes of shared memory", smem);
    GPU_CHECK(gpuFuncSetAttribute(fn, gpuFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(decode_detail::kDecodeSmemLimit)));
    int per_sm = 0;
    GPU_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, threads, smem));
    if (per_sm < 1) fail("moe decode: the fused expert matmuls do not fit an SM (%zu bytes of shared memory)", smem);
    return per_sm * sms;
  };
  s.fused_grid[0] = grid(reinterpret_cast<const void*>(Fused<false>::kernel), Fused<false>::kThreads,
                         Fused<false>::smem(s.hidden, s.intermediate, s.n_experts));
  s.fused_grid[1] = grid(reinterpret_cast<const void*>(Fused<true>::kernel), Fused<true>::kThreads,
                         Fused<true>::smem(s.hidden, s.intermediate, s.n_experts));
  s.fused_grid[2] = grid(reinterpret_cast<const void*>(Fused<true, true>::kernel), Fused<true, true>::kThreads,
                         Fused<true, true>::smem(s.hidden, s.intermediate, s.n_experts));
#endif
}

namespace {
// The router's arguments for a step of `rows` rows (checked against the scratch).
RouteArgs route_args(const MoeGpuWeights& w, const bf16_t* norm_w, float eps, float* residual, int rows,
                     MoeDecodeScratch& s) {
  if (rows < 1 || rows > s.max_rows || rows > kDecodeMaxRows || s.hidden != w.hidden ||
      s.intermediate != w.intermediate || s.n_experts != w.n_experts || s.top_k != w.top_k)
    fail("moe_forward_decode: %d rows or a scratch of another shape (max %d rows)", rows, s.max_rows);
  return RouteArgs{residual, norm_w, eps, w.router_w, w.router_b, s.xn, s.logits, s.experts, s.weights,
                   s.counters, rows, w.hidden, w.n_experts, w.top_k};
}
// The router's launch: logits, top-k and softmax into s, the normalised rows into s.xn.
void launch_route(const MoeGpuWeights& w, const bf16_t* norm_w, float eps, float* residual, int rows,
                  MoeDecodeScratch& s, gpuStream_t stream) {
  const RouteArgs ra = route_args(w, norm_w, eps, residual, rows, s);
  const int H = w.hidden, E = w.n_experts;
  const KernelLaunch lr = moe_decode_route_launch(kTarget, rows, H, E);
  GPTOSS_ASSERT(lr.threads == kThreads);
  auto* route = rows == 1 ? moe_route_decode_kernel<1> : rows == 2 ? moe_route_decode_kernel<2>
                                                                   : moe_route_decode_kernel<4>;
  gpu_launch(route, dim3(lr.grid_x), dim3(lr.threads), lr.dyn_smem_bytes, stream, ra);
}
// Both expert matmuls of a step with kernels k1, k2 (grid: pairs x M / tile rows).
void launch_experts(const MlpKernel& k1, const MlpKernel& k2, const MoeGpuWeights& w, float* residual,
                    int rows, MoeDecodeScratch& s, gpuStream_t stream) {
  const int H = w.hidden, I = w.intermediate, E = w.n_experts, k = w.top_k;
  const int pairs = rows * k;
  MlpArgs m1{w.mlp1_blocks, w.mlp1_scales, w.mlp1_bias, s.xn, s.experts, s.weights, s.act,
             nullptr, nullptr, H, 2 * I, k, k1.tile_rows, w.swiglu_limit, E};
  k1.launch(dim3(pairs, 2 * I / k1.tile_rows), dim3(k1.threads), k1.smem, stream, m1);
  MlpArgs m2{w.mlp2_blocks, w.mlp2_scales, w.mlp2_bias, s.act, s.experts, s.weights, s.y,
             residual, s.counters + 1, I, H, k, k2.tile_rows, w.swiglu_limit, E};
  k2.launch(dim3(pairs, H / k2.tile_rows), dim3(k2.threads), k2.smem, stream, m2);
}
#if !defined(GPTOSS_HIP)
// Both expert matmuls of a step as one launch (moe_experts_fused_kernel; the wide shapes for one
// row, the narrow ones for 2-4), with kRoute the router's work as its first items (ra).
template <bool kWide, bool kRoute>
void launch_experts_fused(const MoeGpuWeights& w, float* residual, int rows, MoeDecodeScratch& s,
                          const RouteArgs& ra, gpuStream_t stream) {
  using F = Fused<kWide, kRoute>;
  const int H = w.hidden, I = w.intermediate, E = w.n_experts, k = w.top_k, pairs = rows * k;
  MlpArgs m1{w.mlp1_blocks, w.mlp1_scales, w.mlp1_bias, s.xn, s.experts, s.weights, s.act,
             nullptr, nullptr, H, 2 * I, k, F::kTile1, w.swiglu_limit, E};
  MlpArgs m2{w.mlp2_blocks, w.mlp2_scales, w.mlp2_bias, s.act, s.experts, s.weights, s.y,
             residual, s.counters + 1, I, H, k, F::kTile2, w.swiglu_limit, E};
  const FusedCtl c{s.fused_ctl, s.fused_ctl + 1, s.fused_ctl + 2, s.fused_ctl + 3};
  int grid = std::min(s.fused_grid[kRoute ? 2 : kWide ? 1 : 0], pairs * (2 * I / F::kTile1));
  if (s.fused_grid_cap > 0) grid = std::min(grid, s.fused_grid_cap);
  gpu_launch(F::kernel, dim3(grid), dim3(F::kThreads), F::smem(H, I, E), stream, m1, m2, c, pairs, ra);
}
#endif
}  // namespace

void moe_forward_decode(const MoeGpuWeights& w, const bf16_t* norm_w, float eps, float* residual,
                        int rows, MoeDecodeScratch& s, gpuStream_t stream) {
#if !defined(GPTOSS_HIP)
  if (s.fused == 2 && rows == 1) {  // the router inside the fused launch
    launch_experts_fused<true, true>(w, residual, rows, s, route_args(w, norm_w, eps, residual, rows, s), stream);
    return;
  }
#endif
  launch_route(w, norm_w, eps, residual, rows, s, stream);
#if !defined(GPTOSS_HIP)
  if (s.fused != 0) {
    if (moe_decode_wide(rows))
      launch_experts_fused<true, false>(w, residual, rows, s, RouteArgs{}, stream);
    else
      launch_experts_fused<false, false>(w, residual, rows, s, RouteArgs{}, stream);
    return;
  }
#endif
  const int H = w.hidden, I = w.intermediate, pairs = rows * w.top_k;
  const MlpKernel k1 = mlp_kernel<true>(rows, H), k2 = mlp_kernel<false>(rows, I);
  // The launch records (launch_limits_test, the resource report) describe exactly these launches.
  const KernelLaunch l1 = moe_decode_mlp_launch(kTarget, true, rows, pairs, H, 2 * I);
  GPTOSS_ASSERT(l1.threads == k1.threads && l1.dyn_smem_bytes == k1.smem &&
                2 * I == l1.grid_y * k1.tile_rows && l1.grid_x == pairs);
  const KernelLaunch l2 = moe_decode_mlp_launch(kTarget, false, rows, pairs, I, H);
  GPTOSS_ASSERT(l2.threads == k2.threads && l2.dyn_smem_bytes == k2.smem && H == l2.grid_y * k2.tile_rows &&
                l2.grid_x == pairs);
  launch_experts(k1, k2, w, residual, rows, s, stream);
}

int moe_decode_candidates() {
#if defined(GPTOSS_HIP)
  return 0;
#else
  return kCandidateCount;
#endif
}

std::string moe_decode_candidate_name(int i) {
  if (i < 0 || i >= moe_decode_candidates()) fail("moe_decode_candidate_name: no candidate %d", i);
#if defined(GPTOSS_HIP)
  return "";
#else
  char buf[96];
  std::snprintf(buf, sizeof(buf), "mlp1 %dx%d stage %d x%d, mlp2 %dx%d stage %d x%d", kC[i][0].groups,
                kC[i][0].split, kC[i][0].stage_blocks, kC[i][0].stages, kC[i][1].groups, kC[i][1].split,
                kC[i][1].stage_blocks, kC[i][1].stages);
  return buf;
#endif
}

int moe_decode_probes() {
#if defined(GPTOSS_HIP)
  return 0;
#else
  return kProbeCount;
#endif
}

std::string moe_decode_probe_name(int i) {
  if (i < 0 || i >= moe_decode_probes()) fail("moe_decode_probe_name: no probe %d", i);
#if defined(GPTOSS_HIP)
  return "";
#else
  return kProbes[i].name;
#endif
}

void moe_forward_decode_probe(int i, const MoeGpuWeights& w, const bf16_t* norm_w, float eps,
                              float* residual, MoeDecodeScratch& s, gpuStream_t stream) {
  if (i < 0 || i >= moe_decode_probes()) fail("moe_forward_decode_probe: no probe %d", i);
#if !defined(GPTOSS_HIP)
  if (kProbes[i].route) launch_route(w, norm_w, eps, residual, 1, s, stream);
  launch_experts(kProbes[i].k.k1(w.hidden), kProbes[i].k.k2(w.intermediate), w, residual, 1, s, stream);
#else
  (void)w, (void)norm_w, (void)eps, (void)residual, (void)s, (void)stream;
#endif
}

void moe_forward_decode_candidate(int i, const MoeGpuWeights& w, const bf16_t* norm_w, float eps,
                                  float* residual, int rows, MoeDecodeScratch& s, gpuStream_t stream) {
  if (i < 0 || i >= moe_decode_candidates()) fail("moe_forward_decode_candidate: no candidate %d", i);
  launch_route(w, norm_w, eps, residual, rows, s, stream);
#if !defined(GPTOSS_HIP)
  launch_experts(kCandidates[i].k1(w.hidden), kCandidates[i].k2(w.intermediate), w, residual, rows, s, stream);
#endif
}

}  // namespace gptoss::gpu
