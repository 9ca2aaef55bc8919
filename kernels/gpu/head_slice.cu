// kernels/gpu/head_slice.cu: the head split's candidates on the device (head_slice.h): fresh
// HeadRows with their hidden states gathered, and the merge of a vocabulary slice's logits into
// them, bit for bit the host's head_row_merge (src/backend/head_split.cpp).
#include <cfloat>
#include <climits>

#include "common/error.h"
#include "gpu/device_utils.h"
#include "gpu/head_slice.h"
#include "gpu/row_select.h"

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
// f(v, i) for every index of the slice (row_select.h).
template <class F>
__device__ __forceinline__ void for_slice(const float* __restrict__ x, int n, F&& f) {
  row_select::for_row<kThreads, kUnroll>(x, n, f);
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

// The candidate order's keys (row_select.h): larger = earlier (logit desc, then index asc).
using row_select::cand_id;
using row_select::cand_key;

struct MergeShared {
  uint64_t keys[kGather];             // thread maxima, then the gathered keys (sorted descending)
  uint32_t hist[256];                 // a radix pass's digit counts
  HeadCand top[kHeadSplitMaxK];       // the slice's first min(k, width) candidates, in order
  HeadCand merged[kHeadSplitMaxK];    // the merge's output
  float wave_v[kWaves];               // greedy: each wave's best
  int wave_i[kWaves];
  int sel[2], count, bad;  // sel: the radix select's digit and count above it
};
static_assert(kThreads <= kGather && (kThreads & (kThreads - 1)) == 0,
              "every thread's maximum has a slot; they are sorted as one power-of-two block");

__device__ __forceinline__ void block_sort_desc(uint64_t* keys, int N) {
  row_select::block_sort_desc<kThreads>(keys, N);
}

// keys[0, count) = the slice's keys >= low, in no particular order (at most kGather of them are
// kept; sh.count says how many there were). Returns after a barrier.
__device__ void gather_at_least(const float* __restrict__ x, int width, uint64_t low,
                                MergeShared& sh) {
  if (threadIdx.x == 0) sh.count = 0;
  __syncthreads();
  for_slice(x, width, [&](float v, int i) {
    const uint64_t key = cand_key(v, i);
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
    const uint64_t key = cand_key(v, i);
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
    // Exact radix select (row_select.h): a boundary whose keys at or above number <= kGather.
    const uint64_t low = row_select::block_radix_select(
        [&](bool, auto&& g) { for_slice(x, width, [&](float v, int i) { g(cand_key(v, i)); }); }, take,
        kGather, sh.hist, sh.sel, &cnt);
    gather_at_least(x, width, low, sh);
  }
  int N = 1;
  while (N < cnt) N <<= 1;
  for (int q = cnt + tid; q < N; q += kThreads) sh.keys[q] = 0;  // below every finite key
  __syncthreads();
  block_sort_desc(sh.keys, N);
  for (int j = tid; j < take; j += kThreads) {  // values re-read: a -0 stays -0
    const int i = cand_id(sh.keys[j]);
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
