// kernels/gpu/decode.cu: the decode path's dense kernels (decode.h): a matmul with an optional
// RMSNorm of its input (the output projection, the LM head) and the attention block's input
// (RMSNorm, qkv matmul, RoPE, KV-cache write) in one kernel.
//
// Layout of one launch: blocks of kThreads threads; the block stages its (<= kDecodeMaxRows) input
// rows in shared memory, normalised when asked (the fp64 sum of squares in exactly the order of
// elementwise.cu's RMSNorm kernel, so the normalised values have its bits); each wave takes WR
// weight rows at a time ("a group"; the qkv kernel's group is the RoPE pair (i, i + 32) of one
// head), issues ALL of their 16-byte loads (NC per lane per row: the whole row in one round of
// memory latency) before the block stages the input, then runs the dot products (lane-strided
// 8-element chunks, per-lane sums in chunk order, a wave butterfly: an order that depends on K
// only) and the epilogue. Waves loop over groups with the grid's stride, so the LM head's 100k
// groups run on a grid of a few blocks per SM with the input staged once per block.
#include <algorithm>
#include <mutex>

#include "gpu/decode.h"
#include "gpu/decode_device.h"
#include "gpu/ops.h"

namespace gptoss::gpu {
namespace {

using namespace decode_detail;

enum class Epi { kStore, kQkvRope };

// Everything one launch needs, for both epilogues.
struct KernelArgs {
  DecodeMatmul mm;   // x, row_index, norm, w, bias, y, rows, K, M, accumulate
  // kQkvRope only:
  const float* rope_cs;
  const int32_t* pos;
  const int32_t* slot;
  void* k_cache;
  void* v_cache;
  int kv_f32, n_heads, n_kv, head_dim, cap;
  KvPages pages;
};

// Weight row j (< WR) of group g.
template <int WR, Epi E>
__device__ __forceinline__ int group_row(const KernelArgs& a, int g, int j) {
  if constexpr (E == Epi::kQkvRope) {
    const int half = a.head_dim / 2;
    return (g / half) * a.head_dim + g % half + j * half;
  } else {
    return g * WR + j;
  }
}

__device__ __forceinline__ void store_kv(void* cache, bool f32, size_t i, float v) {
  if (f32) static_cast<float*>(cache)[i] = v;
  else static_cast<uint16_t*>(cache)[i] = f32_to_bf16_bits(v);
}

template <int R, int WR, int NC, Epi E>
// NVIDIA, one input row: at most 128 registers, so two blocks (16 warps) share an SM (the weight
// loads of a wave are ~100 of them; the few spills are the epilogue's prefetched values).
#if defined(GPTOSS_HIP)
#define DECODE_MIN_BLOCKS(R) 1
#else
#define DECODE_MIN_BLOCKS(R) ((R) == 1 ? 2 : 1)
#endif
__global__ __launch_bounds__(kThreads, DECODE_MIN_BLOCKS(R)) void matmul_decode_kernel(KernelArgs a, int n_groups) {
  extern __shared__ float4 decode_smem4[];
  float* xs = reinterpret_cast<float*>(decode_smem4);  // [R][K]: lo | hi halves per row
  __shared__ double red[kWaves];
  const DecodeMatmul& m = a.mm;
  const int wave = threadIdx.x / kWaveSize, lane = threadIdx.x % kWaveSize;
  const int K = m.K, n_chunks = K / 8;
  const int stride = gridDim.x * kWaves;
  int g = blockIdx.x * kWaves + wave;

  uint4 wv[WR][NC];
  auto issue = [&](int grp) {
#pragma unroll
    for (int j = 0; j < WR; ++j) {
      const int row = grp < n_groups ? group_row<WR, E>(a, grp, j) : -1;
      const bool row_ok = row >= 0 && row < m.M;
      const uint4* wp = reinterpret_cast<const uint4*>(m.w + static_cast<size_t>(row_ok ? row : 0) * K);
#pragma unroll
      for (int u = 0; u < NC; ++u) {
        const int c = lane + u * kWaveSize;
        wv[j][u] = row_ok && c < n_chunks ? wp[c] : make_uint4(0, 0, 0, 0);
      }
    }
  };
  issue(g);  // in flight while the block stages its input rows (and before the wait: weights only)
  gpu_grid_wait();  // launch overlap (vendor.h): what the previous kernels wrote is visible from here
  gpu_grid_trigger();
  stage_rows<R>(m.x, m.row_index, m.rows, K, m.norm_w, m.eps, xs, red);

  // Per row: its position and KV cache row (kQkvRope), read once before the loop; block 0
  // records a paged row's block in the table (ops.h KvPages).
  int pos_r[R];
  size_t cache_r[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    pos_r[r] = 0, cache_r[r] = 0;
    if constexpr (E == Epi::kQkvRope)
      if (r < m.rows) {
        pos_r[r] = a.pos[r];
        cache_r[r] = kv_cache_row_write(a.pages, r, a.slot[r], a.cap, pos_r[r],
                                        blockIdx.x == 0 && threadIdx.x == 0);
      }
  }

  for (; g < n_groups; g += stride) {
    int rowj[WR];
#pragma unroll
    for (int j = 0; j < WR; ++j) rowj[j] = group_row<WR, E>(a, g, j);
    // What the epilogue reads, loaded now so its latency hides under the dot products: bias, the
    // old outputs (accumulate), the RoPE cos / sin of each row's position.
    float bias_j[WR], old[WR][R], cos_r[R], sin_r[R];
#pragma unroll
    for (int j = 0; j < WR; ++j) {
      bias_j[j] = m.bias && rowj[j] < m.M ? bf16_bits_to_f32(m.bias[rowj[j]]) : 0.0f;
#pragma unroll
      for (int r = 0; r < R; ++r)
        old[j][r] = lane == 0 && m.accumulate && r < m.rows && rowj[j] < m.M
                        ? m.y[static_cast<size_t>(r) * m.M + rowj[j]] : 0.0f;
    }
    const int half = a.head_dim / 2;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      cos_r[r] = 1.0f, sin_r[r] = 0.0f;
      if constexpr (E == Epi::kQkvRope) {
        if (r < m.rows && g / half < a.n_heads + a.n_kv) {
          const float* cs = a.rope_cs + static_cast<size_t>(pos_r[r]) * a.head_dim;
          cos_r[r] = cs[g % half], sin_r[r] = cs[half + g % half];
        }
      }
    }
    float acc[WR][R];
#pragma unroll
    for (int j = 0; j < WR; ++j)
#pragma unroll
      for (int r = 0; r < R; ++r) acc[j][r] = 0.0f;
#pragma unroll
    for (int u = 0; u < NC; ++u) {
      const int c = lane + u * kWaveSize;
      if (c < n_chunks) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const float4 xa = xs_lo(xs, r, K)[c], xb = xs_hi(xs, r, K)[c];
#pragma unroll
          for (int j = 0; j < WR; ++j) fma8(acc[j][r], wv[j][u], xa, xb);
        }
      }
    }
    if (g + stride < n_groups) issue(g + stride);  // the next group's loads before the epilogue
#pragma unroll
    for (int j = 0; j < WR; ++j)
#pragma unroll
      for (int r = 0; r < R; ++r) acc[j][r] = wave_sum(acc[j][r]);
    if (lane != 0) continue;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r >= m.rows) continue;  // (not break: the loop must unroll, its arrays stay registers)
      float v[WR];
#pragma unroll
      for (int j = 0; j < WR; ++j) v[j] = acc[j][r] + bias_j[j];
      float* yr = m.y + static_cast<size_t>(r) * m.M;
      if constexpr (E == Epi::kStore) {
#pragma unroll
        for (int j = 0; j < WR; ++j)
          if (rowj[j] < m.M) yr[rowj[j]] = m.accumulate ? old[j][r] + v[j] : v[j];
      } else {
        // RoPE pair (i, i + half) of head h, as cpu::f32_rope_apply (no FMA); the k and v heads
        // go to the cache at the row's cache row (ring index pos % cap, or its pool block).
        const int hd = a.head_dim, h = g / half, i = g % half;
        float o1 = v[0], o2 = v[1];
        if (h < a.n_heads + a.n_kv) {
          const float c = cos_r[r], sn = sin_r[r];
          o1 = __fsub_rn(__fmul_rn(v[0], c), __fmul_rn(v[1], sn));
          o2 = __fadd_rn(__fmul_rn(v[1], c), __fmul_rn(v[0], sn));
        }
        yr[rowj[0]] = o1;
        yr[rowj[1]] = o2;
        if (h >= a.n_heads) {
          const bool is_k = h < a.n_heads + a.n_kv;
          const int kvh = is_k ? h - a.n_heads : h - a.n_heads - a.n_kv;
          const size_t base = (cache_r[r] * a.n_kv + kvh) * hd;
          void* cache = is_k ? a.k_cache : a.v_cache;
          store_kv(cache, a.kv_f32 != 0, base + i, o1);
          store_kv(cache, a.kv_f32 != 0, base + half + i, o2);
        }
      }
    }
  }
}

template <int R, int WR, int NC, Epi E>
void launch_r(const KernelArgs& a, int n_groups, gpuStream_t stream) {
  // A few blocks per SM: every group of a small matrix in one wave of blocks; the LM head loops.
  const KernelLaunch l =
      decode_matmul_launch(kTarget, a.mm.rows, a.mm.K, a.mm.M, E == Epi::kQkvRope, device_sm_count());
  GPTOSS_ASSERT(l.threads == kThreads && l.dyn_smem_bytes == size_t(R) * a.mm.K * sizeof(float));
  gpu_launch(matmul_decode_kernel<R, WR, NC, E>, dim3(l.grid_x), dim3(l.threads), l.dyn_smem_bytes,
             stream, a, n_groups);
}

// NVIDIA: more than 48 KiB of dynamic shared memory needs the opt-in, set once per kernel before
// any launch (decode_init: not during a graph capture).
template <int WR, int NC, Epi E>
void opt_in_rows() {
#if !defined(GPTOSS_HIP)
  for (const void* f : {reinterpret_cast<const void*>(matmul_decode_kernel<1, WR, NC, E>),
                        reinterpret_cast<const void*>(matmul_decode_kernel<2, WR, NC, E>),
                        reinterpret_cast<const void*>(matmul_decode_kernel<4, WR, NC, E>)})
    GPU_CHECK(gpuFuncSetAttribute(f, gpuFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(kDecodeSmemLimit)));
#endif
}

template <int WR, int NC, Epi E>
void launch_rows(const KernelArgs& a, int n_groups, gpuStream_t stream) {
  const int rows = a.mm.rows;
  if (rows == 1) launch_r<1, WR, NC, E>(a, n_groups, stream);
  else if (rows == 2) launch_r<2, WR, NC, E>(a, n_groups, stream);
  else launch_r<4, WR, NC, E>(a, n_groups, stream);
}

void check_common(const DecodeMatmul& m, const char* what) {
  if (m.rows < 1 || m.rows > kDecodeMaxRows || m.K % 8 != 0 || m.K > kDecodeMaxK || m.K < 8)
    fail("%s: %d rows x K %d outside the decode kernels' range (rows 1..%d, K %% 8 == 0, K <= %d)",
         what, m.rows, m.K, kDecodeMaxRows, kDecodeMaxK);
}

}  // namespace

void decode_detail::decode_dense_init() {
  static std::once_flag done;
  std::call_once(done, [] {
    opt_in_rows<2, kSmallNC, Epi::kStore>();
    opt_in_rows<1, kBigNC, Epi::kStore>();
    opt_in_rows<2, kSmallNC, Epi::kQkvRope>();
  });
}

void f32_bf16w_matmul_decode(const DecodeMatmul& a, gpuStream_t stream) {
  check_common(a, "f32_bf16w_matmul_decode");
  decode_detail::decode_dense_init();  // once (the backend calls it at set-up, before any capture)
  if (a.M <= 0) return;
  // The staged rows must fit the target's shared memory: on gfx90a (64 KiB) four rows of K 4096
  // do not, so such a call runs as launches of two rows (the weights are read twice).
  const int per = decode_rows_per_launch(kTarget, a.rows, a.K);
  if (per < a.rows) {
    for (int r0 = 0; r0 < a.rows; r0 += per) {
      DecodeMatmul part = a;
      part.rows = std::min(per, a.rows - r0);
      part.y = a.y + size_t(r0) * a.M;
      if (a.row_index) part.row_index = a.row_index + r0;
      else part.x = a.x + size_t(r0) * a.K;
      f32_bf16w_matmul_decode(part, stream);
    }
    return;
  }
  KernelArgs k{};
  k.mm = a;
  if (a.K <= kSmallK) launch_rows<2, kSmallNC, Epi::kStore>(k, ceil_div(a.M, 2), stream);
  else launch_rows<1, kBigNC, Epi::kStore>(k, a.M, stream);
}

void f32_bf16w_qkv_rope_decode(const DecodeQkv& q, gpuStream_t stream) {
  KernelArgs k{};
  k.mm.x = q.x;
  k.mm.norm_w = q.norm_w;
  k.mm.eps = q.eps;
  k.mm.w = q.w;
  k.mm.bias = q.bias;
  k.mm.y = q.qkv;
  k.mm.rows = q.rows;
  k.mm.K = q.H;
  k.mm.M = (q.n_heads + 2 * q.n_kv) * q.head_dim;
  check_common(k.mm, "f32_bf16w_qkv_rope_decode");
  decode_detail::decode_dense_init();
  if (q.head_dim != 64 || q.H > kSmallK)
    fail("f32_bf16w_qkv_rope_decode: head_dim %d / hidden %d unsupported (64, <= %d)", q.head_dim,
         q.H, kSmallK);
  k.rope_cs = q.rope_cs;
  k.pos = q.pos;
  k.slot = q.slot;
  k.k_cache = q.k_cache;
  k.v_cache = q.v_cache;
  k.kv_f32 = q.kv_f32 ? 1 : 0;
  k.n_heads = q.n_heads;
  k.n_kv = q.n_kv;
  k.head_dim = q.head_dim;
  k.cap = q.cap;
  k.pages = q.pages;
  launch_rows<2, kSmallNC, Epi::kQkvRope>(k, k.mm.M / 2, stream);
}

}  // namespace gptoss::gpu
