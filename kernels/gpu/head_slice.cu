// kernels/gpu/head_slice.cu: the head split's candidates on the device (head_slice.h): fresh
// HeadRows with their hidden states gathered, and the merge of a vocabulary slice's logits into
// them, bit for bit the host's head_row_merge (src/backend/head_split.cpp).
#include <cfloat>
#include <climits>

#include "common/error.h"
#include "gpu/device_utils.h"
#include "gpu/head_slice.h"

namespace gptoss::gpu {
namespace {

constexpr int kThreads = kHeadSliceThreads;
constexpr int kWaves = kThreads / kWaveSize;
constexpr int kUnroll = 4;  // loads in flight per thread in a pass over the slice
constexpr int kGather = kHeadSliceGather;
static_assert(kThreads % kWaveSize == 0 && kGather >= kHeadSplitMaxK);
static_assert((kGather & (kGather - 1)) == 0, "the bitonic sort pads to a power of two <= kGather");

// ---------------------------------------------------------------------------- init + gather
// One block per row: the row's bytes as head_row_init's (HeadRow{} with k set; k is the first
// word, head_row.h asserts it), and its hidden state copied.
__global__ void __launch_bounds__(kHeadInitThreads)
    head_rows_init_kernel(const float* __restrict__ x, const int32_t* __restrict__ x_rows,
                          const int32_t* __restrict__ k, int H, HeadRow* __restrict__ rows,
                          float* __restrict__ xo) {
  const int i = blockIdx.x;
  uint32_t* r = reinterpret_cast<uint32_t*>(rows + i);
  const uint32_t ki = static_cast<uint32_t>(k[i]);
  for (int q = threadIdx.x; q < static_cast<int>(sizeof(HeadRow) / 4); q += blockDim.x)
    r[q] = q == 0 ? ki : 0u;
  const float* src = x + static_cast<size_t>(x_rows[i]) * H;
  float* dst = xo + static_cast<size_t>(i) * H;
  for (int q = threadIdx.x; q < H; q += blockDim.x) dst[q] = src[q];
}

// ---------------------------------------------------------------------------- merge helpers
// f(v, i) for every index of the slice; each thread sees ascending i, kUnroll loads in flight.
template <class F>
__device__ __forceinline__ void for_slice(const float* __restrict__ x, int n, F&& f) {
  const int tid = static_cast<int>(threadIdx.x);
  int base = 0;
  for (; base + kUnroll * kThreads <= n; base += kUnroll * kThreads) {
    float v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = x[base + u * kThreads + tid];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) f(v[u], base + u * kThreads + tid);
  }
  for (int i = base + tid; i < n; i += kThreads) f(x[i], i);
}

// The arg-max's total order: a beats b with a larger value, or an equal one (the two zeros are
// equal) and a lower index; a NaN never beats anything. The largest element under it is the
// host's serial answer (the first index of the largest non-NaN logit).
__device__ __forceinline__ bool argmax_beats(float av, int ai, float bv, int bi) {
  if (av != av) return false;
  if (bv != bv) return true;
  return av > bv || (av == bv && ai < bi);
}

// head_split.cpp's `before` for finite candidates: logit desc, ties lower id first.
__device__ __forceinline__ bool cand_before(const HeadCand& a, const HeadCand& b) {
  return a.value > b.value || (a.value == b.value && a.id < b.id);
}

// Ordered bits of a finite logit: a > b as floats <=> bits(a) > bits(b); -0 is read as +0 so the
// two zeros tie, as in the host's comparisons. (sample.cu orders its candidates the same way.)
__device__ __forceinline__ uint32_t order_bits(float v) {
  const uint32_t b = __float_as_uint(v == 0.0f ? 0.0f : v);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
// 64-bit key of slice index i: larger key = earlier candidate (logit desc, then index asc);
// unique per index, and above 0 (the sort's padding) for every finite logit.
__device__ __forceinline__ uint64_t slice_key(float v, int i) {
  return (static_cast<uint64_t>(order_bits(v)) << 32) |
         static_cast<uint64_t>(~static_cast<uint32_t>(i));
}
__device__ __forceinline__ int key_index(uint64_t key) {
  return static_cast<int>(~static_cast<uint32_t>(key));
}

struct MergeShared {
  uint64_t keys[kGather];             // thread maxima, then the gathered keys (sorted descending)
  uint32_t hist[256];                 // a radix pass's digit counts
  HeadCand top[kHeadSplitMaxK];       // the slice's first min(k, width) candidates, in order
  HeadCand merged[kHeadSplitMaxK];    // the merge's output
  float wave_v[kWaves];               // greedy: each wave's best
  int wave_i[kWaves];
  int sel_bin, sel_cum, count, bad;
};
static_assert(kThreads <= kGather && (kThreads & (kThreads - 1)) == 0,
              "every thread's maximum has a slot; they are sorted as one power-of-two block");

// Sorts keys[0, N) descending (N a power of two); call after a barrier; ends with one (N > 1).
__device__ void block_sort_desc(uint64_t* keys, int N) {
  const int tid = threadIdx.x;
  for (int size = 2; size <= N; size <<= 1)  // bitonic
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int q = tid; q < N / 2; q += kThreads) {
        const int a = (q / stride) * 2 * stride + (q % stride), c = a + stride;
        const uint64_t ka = keys[a], kc = keys[c];
        const bool desc = (a & size) == 0;
        if (desc ? ka < kc : ka > kc) keys[a] = kc, keys[c] = ka;
      }
      __syncthreads();
    }
}

// Exact radix select over the slice's keys (finite logits): a boundary `low` such that the keys
// >= low include the `take` largest and number at most kGather (8-bit digits from the top, until
// the keys at or above the boundary digit fit kGather; keys are unique, so the last digit leaves
// exactly take). *cnt: how many keys are >= low. Shared-memory atomics on the digits: slow where
// most keys share a digit, so it is the fallback for rows with thousands of ties at the top.
__device__ uint64_t radix_select(const float* __restrict__ x, int width, int take,
                                 MergeShared& sh, int* cnt) {
  const int tid = threadIdx.x;
  uint64_t prefix = 0;  // the boundary's digits found so far (lower digits 0)
  int need = take, above = 0;
  for (int shift = 56;; shift -= 8) {
    for (int b = tid; b < 256; b += kThreads) sh.hist[b] = 0;
    __syncthreads();
    const uint64_t high = shift == 56 ? 0ull : ~0ull << (shift + 8);
    for_slice(x, width, [&](float v, int i) {
      const uint64_t key = slice_key(v, i);
      if ((key & high) == prefix) atomicAdd(&sh.hist[(key >> shift) & 255u], 1u);
    });
    __syncthreads();
    if (tid == 0) {  // the digit holding the need-th largest key among those still matching
      int cum = 0, b = 255;
      for (; b > 0; --b) {
        const int h = static_cast<int>(sh.hist[b]);
        if (cum + h >= need) break;
        cum += h;
      }
      sh.sel_bin = b;
      sh.sel_cum = cum;
    }
    __syncthreads();
    const int b = sh.sel_bin, in_bin = static_cast<int>(sh.hist[b]);
    need -= sh.sel_cum;
    above += sh.sel_cum;
    prefix |= static_cast<uint64_t>(b) << shift;
    __syncthreads();  // hist and sel_* read by every thread before the next pass rewrites them
    // Keys >= prefix are exactly `above` + the selected digit's; the take largest are among them.
    if (above + in_bin <= kGather || shift == 0) {
      *cnt = above + in_bin;
      return prefix;
    }
  }
}

// keys[0, count) = the slice's keys >= low, in no particular order (at most kGather of them are
// kept; sh.count says how many there were). Returns after a barrier.
__device__ void gather_at_least(const float* __restrict__ x, int width, uint64_t low,
                                MergeShared& sh) {
  if (threadIdx.x == 0) sh.count = 0;
  __syncthreads();
  for_slice(x, width, [&](float v, int i) {
    const uint64_t key = slice_key(v, i);
    if (key >= low) {
      const int p = atomicAdd(&sh.count, 1);
      if (p < kGather) sh.keys[p] = key;
    }
  });
  __syncthreads();
}

// ---------------------------------------------------------------------------- merge kernel
// One block per row (head_slice.h). Every branch below is uniform over the block: k is read from
// the row, and every shared value is read after the barrier that follows its write.
__global__ void __launch_bounds__(kThreads)
    f32_head_rows_merge_kernel(const float* __restrict__ logits, int width, int v0,
                               HeadRow* __restrict__ rows) {
  __shared__ MergeShared sh;
  HeadRow& row = rows[blockIdx.x];
  const float* __restrict__ x = logits + static_cast<size_t>(blockIdx.x) * width;
  const int tid = threadIdx.x, wave = tid / kWaveSize, lane = tid % kWaveSize;
  const int k = row.k;
  if (k < 1 || k > kHeadSplitMaxK) return;

  if (k == 1) {
    float bv = __int_as_float(0x7fc00000);  // a NaN with no index: loses to every number
    int bi = INT_MAX;
    for_slice(x, width, [&](float v, int i) {
      if (argmax_beats(v, i, bv, bi)) bv = v, bi = i;
    });
    for (int m = kWaveSize / 2; m > 0; m >>= 1) {
      const float ov = gpu_shfl_xor(bv, m);
      const int oi = gpu_shfl_xor(bi, m);
      if (argmax_beats(ov, oi, bv, bi)) bv = ov, bi = oi;
    }
    if (lane == 0) sh.wave_v[wave] = bv, sh.wave_i[wave] = bi;
    __syncthreads();
    if (tid == 0) {
      for (int w = 1; w < kWaves; ++w)
        if (argmax_beats(sh.wave_v[w], sh.wave_i[w], bv, bi)) bv = sh.wave_v[w], bi = sh.wave_i[w];
      if (bi == INT_MAX) bi = 0, bv = x[0];  // all NaN: the slice's first id, with its own bits
      // The host's cross-slice rule (ascending ids): a later slice wins only with a larger value,
      // or a number over a NaN.
      const HeadCand c{bv, v0 + bi};
      const HeadCand b = row.cand[0];
      if (row.count == 0 || c.value > b.value || (b.value != b.value && c.value == c.value))
        row.cand[0] = c;
      row.count = 1;
    }
    return;
  }

  // k >= 2. Pass 1: finiteness, and each thread's largest key. The take-th largest of those
  // maxima, T, bounds the answer from below: `take` distinct keys (the largest maxima) are >= T,
  // so a key below T has take keys above it. For ordinary logits only slightly more than take
  // keys are >= T (~70 of 100544 for take 64), so pass 2 gathers them without contended atomics.
  const int take = min(k, width);
  if (tid == 0) sh.bad = 0;
  __syncthreads();
  uint64_t mine = 0;  // below every finite key: a thread without ids sorts last
  int bad = 0;
  for_slice(x, width, [&](float v, int i) {
    if (!(fabsf(v) <= FLT_MAX)) bad = 1;
    const uint64_t key = slice_key(v, i);
    if (key > mine) mine = key;
  });
  if (bad) sh.bad = 1;
  sh.keys[tid] = mine;
  __syncthreads();
  if (sh.bad) {  // a NaN or an infinity: rank 0 chooses this row from its whole head
    if (tid == 0) row.flags |= kHeadRowNonFinite;
    return;
  }
  block_sort_desc(sh.keys, kThreads);
  const uint64_t bound = sh.keys[take - 1];  // > 0: at least take threads have ids
  __syncthreads();  // every thread has read it before the gather overwrites keys
  gather_at_least(x, width, bound, sh);
  int cnt = sh.count;
  if (cnt > kGather) {  // thousands of ties at the top: select exactly, then gather again
    const uint64_t low = radix_select(x, width, take, sh, &cnt);
    gather_at_least(x, width, low, sh);
  }
  int N = 1;
  while (N < cnt) N <<= 1;
  for (int q = cnt + tid; q < N; q += kThreads) sh.keys[q] = 0;  // below every finite key
  __syncthreads();
  block_sort_desc(sh.keys, N);
  for (int j = tid; j < take; j += kThreads) {  // values re-read: a -0 stays -0
    const int i = key_index(sh.keys[j]);
    sh.top[j] = HeadCand{x[i], v0 + i};
  }
  __syncthreads();
  if (tid == 0) {  // head_row_merge's merge, step for step
    const int count = row.count;
    int m = 0, i = 0, j = 0;
    while (m < k && (i < count || j < take)) {
      if (j == take) {
        sh.merged[m++] = row.cand[i++];
        continue;
      }
      if (i < count && cand_before(row.cand[i], sh.top[j])) sh.merged[m++] = row.cand[i++];
      else sh.merged[m++] = sh.top[j++];
    }
    for (int q = 0; q < m; ++q) row.cand[q] = sh.merged[q];
    row.count = m;
  }
}

}  // namespace

void head_rows_init(const float* x, const int32_t* x_rows, const int32_t* k, int n, int H,
                    HeadRow* rows, float* xo, gpuStream_t stream) {
  if (n <= 0) return;
  head_rows_init_kernel<<<n, kHeadInitThreads, 0, stream>>>(x, x_rows, k, H, rows, xo);
  GPU_CHECK_LAUNCH();
}

void f32_head_rows_merge(const float* logits, int n, int width, int v0, HeadRow* rows,
                         gpuStream_t stream) {
  if (n <= 0 || width <= 0) return;
  f32_head_rows_merge_kernel<<<n, kThreads, 0, stream>>>(logits, width, v0, rows);
  GPU_CHECK_LAUNCH();
}

}  // namespace gptoss::gpu
