// kernels/gpu/sample.cu: greedy arg-max and temperature / top-k / top-p token choice on the GPU,
// the device twin of Sampler::pick (see sample.h for the algorithm and the -1 rule).
#include <cfloat>
#include <climits>
#include <cmath>

#include "common/error.h"
#include "gpu/device_utils.h"
#include "gpu/row_select.h"
#include "gpu/sample.h"

namespace gptoss::gpu {
namespace {

constexpr int kThreads = kPickThreads;          // per block (one block per row): 512
constexpr int kWaves = kThreads / kWaveSize;
constexpr int kUnroll = 8;                      // loads in flight per thread in a row pass
constexpr int kGather = kPickGather;            // radix select stops once <= this many remain
constexpr int kChunkPerLane = kPickChunkPerLane;   // (c): ids per lane per chunk
constexpr int kChunk = kChunkPerLane * kWaveSize;  // (c): ids per chunk

// ---------------------------------------------------------------------------- row passes
// f(v, i) for every element of the row (row_select.h).
template <class F>
__device__ __forceinline__ void for_row(const float* __restrict__ x, int n, F&& f) {
  row_select::for_row<kThreads, kUnroll>(x, n, f);
}

// ---------------------------------------------------------------------------- greedy
// (value, index) a beats b: larger value, or equal with lower index; NaN never beats anything.
__device__ __forceinline__ bool argmax_better(float av, int ai, float bv, int bi) {
  if (av != av) return false;
  if (bv != bv) return true;
  return av > bv || (av == bv && ai < bi);
}

__device__ __forceinline__ bool is_greedy(const TokenPick& p) {
  return p.temperature == 0.0f || p.top_k == 1;
}

// Greedy rows: grid (rows, kPickGreedySplit); block b of a row takes a contiguous piece of it and
// leaves its best (value, index) in cand; the block that finishes its row last (a ticket per row)
// merges the pieces' candidates. argmax_better is a total order (ties: lower index; NaN never
// wins), so the choice is the serial scan's whatever the split. The ticket returns to 0.
__global__ void __launch_bounds__(kThreads)
    pick_greedy_kernel(const float* __restrict__ logits, int n, const TokenPick* picks,
                       int32_t* tokens, float2* cand, uint32_t* tickets) {
  __shared__ float sv[kWaves];
  __shared__ int si[kWaves];
  __shared__ int last;
  const int row = blockIdx.x, piece = blockIdx.y, pieces = gridDim.y;
  if (!is_greedy(picks[row])) return;  // uniform per block
  const int per = (n + pieces - 1) / pieces, i0 = min(n, piece * per), i1 = min(n, i0 + per);
  const float* x = logits + static_cast<size_t>(row) * n + i0;
  float bv = __int_as_float(0x7fc00000);  // NaN: loses to everything
  int bi = INT_MAX;
  for_row(x, i1 - i0, [&](float v, int i) {
    if (argmax_better(v, i0 + i, bv, bi)) bv = v, bi = i0 + i;
  });
  for (int m = kWaveSize / 2; m > 0; m >>= 1) {
    const float ov = gpu_shfl_xor(bv, m);
    const int oi = gpu_shfl_xor(bi, m);
    if (argmax_better(ov, oi, bv, bi)) bv = ov, bi = oi;
  }
  const int wave = threadIdx.x / kWaveSize, lane = threadIdx.x % kWaveSize;
  if (lane == 0) sv[wave] = bv, si[wave] = bi;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kWaves; ++w)
      if (argmax_better(sv[w], si[w], bv, bi)) bv = sv[w], bi = si[w];
    cand[static_cast<size_t>(row) * pieces + piece] = make_float2(bv, __int_as_float(bi));
    __threadfence();
    last = atomicAdd(tickets + row, 1u) == static_cast<unsigned>(pieces - 1);
    if (last) {
      __threadfence();
      const volatile float2* c = cand + static_cast<size_t>(row) * pieces;
      for (int p = 0; p < pieces; ++p) {
        const float cv = c[p].x;
        const int ci = __float_as_int(c[p].y);
        if (argmax_better(cv, ci, bv, bi)) bv = cv, bi = ci;
      }
      tokens[row] = bi == INT_MAX ? 0 : bi;
      tickets[row] = 0;
    }
  }
}

// ---------------------------------------------------------------------------- sampling helpers
// The candidate order's keys (row_select.h): larger = earlier (logit desc, then id asc).
using row_select::cand_id;
using row_select::cand_key;
using row_select::cand_logit;

// p = exp((l - mx) / T) in double: the same correctly rounded subtraction and division as the
// CPU (sampler.cpp); only exp itself may differ (see sample.h).
__device__ __forceinline__ double unnorm_prob(float l, float mx, float T) {
  return exp((static_cast<double>(l) - static_cast<double>(mx)) / static_cast<double>(T));
}

__device__ __forceinline__ double wave_sum_f64(double v) {
  for (int m = kWaveSize / 2; m > 0; m >>= 1) v += gpu_shfl_xor(v, m);
  return v;
}

// Conservative interval around a device sum for the CPU's value of the same quantity.
struct Margin {
  double eps;
  __device__ double lo(double x) const { return x * (1.0 - eps) - 0x1p-1000; }
  __device__ double hi(double x) const { return x * (1.0 + eps) + 0x1p-1000; }
};

// The draw, given the device's running sums: P(j) = prefix(j) (candidate order), the kept count
// known (last_kept >= 0: the CPU returns min(first j with S(j) > t, last_kept)) or not
// (last_kept < 0: only the first `avail` sums are known). Returns the candidate index or -1.
template <class Prefix>
__device__ int decide_draw(const Prefix& prefix, int avail, int last_kept, double t,
                           const Margin& mg) {
  const int lim = last_kept >= 0 ? last_kept : avail;  // search [0, lim)
  int j = -1;
  for (int q = 0; q < lim; ++q)
    if (prefix(q) > t) {
      j = q;
      break;
    }
  if (j < 0) {
    if (last_kept < 0) return -1;  // beyond the known candidates
    j = last_kept;
  }
  if (j > 0 && !(mg.hi(prefix(j - 1)) <= mg.lo(t))) return -1;  // S(j-1) <= t not certain
  if (j != last_kept && !(mg.lo(prefix(j)) > mg.hi(t))) return -1;  // S(j) > t not certain
  return j;
}

// Shared state of the sampling kernel besides the dynamic buffers.
struct SampleShared {
  uint32_t hist[256];
  double red[kWaves];
  float redf[kWaves];
  int redi[kWaves];
  int sel[2], count, chunk, bad;  // sel: the radix select's digit and count above it
  double excl, total, t;
};
static_assert(sizeof(SampleShared) <= kPickSampleStaticSmemBytes, "the launch record's static bound");

// Exact radix select over the row's candidate keys (row_select.h): low such that exactly `cnt`
// elements have cand_key >= low, M <= cnt <= limit, the M largest among them. check_finite: the
// first pass sets sh.bad when a logit is NaN or +-inf.
__device__ uint64_t radix_select(const float* __restrict__ x, int n, int M, int limit,
                                 SampleShared& sh, int* cnt_out, bool check_finite) {
  return row_select::block_radix_select(
      [&](bool first, auto&& g) {
        const bool check = check_finite && first;
        for_row(x, n, [&](float v, int i) {
          g(cand_key(v, i));
          if (check && !(fabsf(v) <= FLT_MAX)) sh.bad = 1;
        });
      },
      M, limit, sh.hist, sh.sel, cnt_out);
}

// Block sum of exp over the elements with cand_key >= low (all when low == 0), any order.
__device__ double mass_at_least(const float* __restrict__ x, int n, uint64_t low, float mx,
                                float T, SampleShared& sh) {
  double s = 0.0;
  for_row(x, n, [&](float v, int i) {
    if (low == 0 || cand_key(v, i) >= low) s += unnorm_prob(v, mx, T);
  });
  return block_sum_f64(s, sh.red);
}

// ---------------------------------------------------------------------------- sampling kernel
__global__ void __launch_bounds__(kThreads)
    pick_sample_kernel(const float* __restrict__ logits, int n, const TokenPick* picks,
                       int32_t* tokens) {
  __shared__ SampleShared sh;
  extern __shared__ double dyn[];  // (b)/(d): keys [kGather] u64, then P [kPickMaxTopK] double;
                                   // (c): chunk sums [n_chunks] double, then P [kChunk] double
  const TokenPick pk = picks[blockIdx.x];
  if (is_greedy(pk)) return;
  const float* x = logits + static_cast<size_t>(blockIdx.x) * n;
  const float T = pk.temperature;
  const int tid = threadIdx.x, wave = tid / kWaveSize, lane = tid % kWaveSize;

  if (!(T > 0.0f)) {  // uniform: negative or NaN temperature
    if (tid == 0) tokens[blockIdx.x] = -1;
    return;
  }
  const bool topk_on = pk.top_k > 0 && pk.top_k < n;
  const bool sorted = topk_on || pk.top_p < 1.0f;
  const int K = topk_on ? pk.top_k : n;
  const Margin mg{(2.0 * K + 64.0) * 0x1p-53};

  if (!sorted) {
    // Pass 0: the max and finiteness.
    float mx = -FLT_MAX;
    int bad = 0;
    for_row(x, n, [&](float v, int) {
      if (!(fabsf(v) <= FLT_MAX)) bad = 1;
      mx = fmaxf(mx, v);
    });
    for (int m = kWaveSize / 2; m > 0; m >>= 1) {
      mx = fmaxf(mx, gpu_shfl_xor(mx, m));
      bad |= gpu_shfl_xor(bad, m);
    }
    if (lane == 0) sh.redf[wave] = mx, sh.redi[wave] = bad;
    __syncthreads();
    for (int w = 0; w < kWaves; ++w) mx = fmaxf(mx, sh.redf[w]), bad |= sh.redi[w];
    if (bad) {
      if (tid == 0) tokens[blockIdx.x] = -1;
      return;
    }
    // (c) all ids in id order. Chunk sums (any order inside a chunk: the margin covers it).
    double* csum = dyn;
    const int n_chunks = (n + kChunk - 1) / kChunk;
    double* cP = dyn + n_chunks;
    for (int c = wave; c < n_chunks; c += kWaves) {
      float v[kChunkPerLane];
#pragma unroll
      for (int k = 0; k < kChunkPerLane; ++k) {
        const int i = c * kChunk + k * kWaveSize + lane;
        v[k] = i < n ? x[i] : -INFINITY;
      }
      double s = 0.0;
#pragma unroll
      for (int k = 0; k < kChunkPerLane; ++k) s += unnorm_prob(v[k], mx, T);  // exp(-inf) = 0
      s = wave_sum_f64(s);
      if (lane == 0) csum[c] = s;
    }
    __syncthreads();
    if (tid == 0) {
      double total = 0.0;
      for (int c = 0; c < n_chunks; ++c) total += csum[c];
      const double t = pk.u * total;
      double acc = 0.0, excl = 0.0;
      int chunk = n_chunks - 1;
      for (int c = 0; c < n_chunks; ++c) {
        excl = acc;
        acc += csum[c];
        if (acc > t) {
          chunk = c;
          break;
        }
      }
      sh.chunk = chunk, sh.excl = excl, sh.total = total, sh.t = t;
    }
    __syncthreads();
    const int chunk = sh.chunk;
    const int len = min(kChunk, n - chunk * kChunk);
    if (wave == 0) {  // running sums inside the chunk, in id order
      double carry = sh.excl;
      for (int k = 0; k < kChunkPerLane; ++k) {
        const int q = k * kWaveSize + lane, i = chunk * kChunk + q;
        double s = i < n ? unnorm_prob(x[i], mx, T) : 0.0;
        for (int off = 1; off < kWaveSize; off <<= 1) {  // inclusive wave scan
          const double o = gpu_shfl(s, lane >= off ? lane - off : lane);
          if (lane >= off) s += o;
        }
        cP[q] = carry + s;
        carry += gpu_shfl(s, kWaveSize - 1);
      }
    }
    __syncthreads();
    if (tid == 0) {
      // The device's crossing j (an id): the first id of the chunk whose running sum exceeds t,
      // else the chunk's last id; P(j) = sums of the chunks before + in-chunk running sum. Then
      // the same certainty checks as decide_draw (the last id is the CPU's fallback).
      const int base = chunk * kChunk;
      const double excl = sh.excl;
      auto prefix = [&](int j) { return j < base ? excl : cP[j - base]; };
      const int last = n - 1;
      int j = -1;
      for (int q = 0; q < len; ++q)
        if (cP[q] > sh.t) {
          j = base + q;
          break;
        }
      if (j < 0) j = base + len - 1;
      int r = j;
      if (j > 0 && !(mg.hi(prefix(j - 1)) <= mg.lo(sh.t))) r = -1;
      if (j != last && !(mg.lo(prefix(j)) > mg.hi(sh.t))) r = -1;
      tokens[blockIdx.x] = r;
    }
    return;
  }

  // (b) / (d): the M = min(K, cap) first candidates, sorted. The first radix pass also checks
  // finiteness (a NaN's key sorts above +inf; the select still ends, its result is unused).
  uint64_t* keys = reinterpret_cast<uint64_t*>(dyn);
  double* P = dyn + kGather;
  const int M = min(K, kPickMaxTopK);
  int cnt = 0;
  if (tid == 0) sh.bad = 0;
  const uint64_t low = radix_select(x, n, M, kGather, sh, &cnt, true);
  if (sh.bad) {  // uniform: set in the first pass, read after its barriers
    if (tid == 0) tokens[blockIdx.x] = -1;
    return;
  }
  if (tid == 0) sh.count = 0;
  __syncthreads();
  for_row(x, n, [&](float v, int i) {
    const uint64_t c = cand_key(v, i);
    if (c >= low) keys[atomicAdd(&sh.count, 1)] = c;
  });
  int N = 1;
  while (N < cnt) N <<= 1;
  __syncthreads();
  for (int q = cnt + tid; q < N; q += kThreads) keys[q] = 0;  // below every real key
  __syncthreads();
  row_select::block_sort_desc<kThreads>(keys, N);
  const float mx = cand_logit(keys[0]);  // the row's max (a -0 max reads +0: same p values)
  for (int j = tid; j < M; j += kThreads) P[j] = unnorm_prob(cand_logit(keys[j]), mx, T);
  double total_all = 0.0;
  if (K > M) {  // (d): the total over all K candidates, another summation order
    uint64_t lowK = 0;
    if (K < n) {
      int cntK = 0;
      lowK = radix_select(x, n, K, K, sh, &cntK, false);
    }
    total_all = mass_at_least(x, n, lowK, mx, T, sh);
  }
  __syncthreads();
  if (tid == 0) {
    for (int j = 1; j < M; ++j) P[j] += P[j - 1];  // the CPU's additions, in candidate order
    const double total = K > M ? total_all : P[M - 1];
    auto prefix = [&](int j) { return P[j]; };
    int r = 0;
    int last_kept = K > M ? -1 : K - 1;
    double mass = total;
    if (pk.top_p < 1.0f) {
      const double need = static_cast<double>(pk.top_p) * total;
      int j = -1;
      for (int q = 0; q < M; ++q)
        if (P[q] >= need) {
          j = q;
          break;
        }
      if (j < 0 || !(mg.lo(P[j]) >= mg.hi(need)) || (j > 0 && !(mg.hi(P[j - 1]) < mg.lo(need))))
        r = -1;
      else
        last_kept = j, mass = P[j];
    }
    if (r == 0) {
      const int c = decide_draw(prefix, M, last_kept, pk.u * mass, mg);
      r = c < 0 ? -1 : cand_id(keys[c]);
    }
    tokens[blockIdx.x] = r;
  }
}

}  // namespace

PickScratch pick_scratch_create(int max_rows, int vocab) {
  if (max_rows < 1 || vocab < 1)
    fail("pick_scratch_create: max_rows %d and vocab %d must be >= 1", max_rows, vocab);
  PickScratch s;
  s.max_rows = max_rows;
  s.vocab = vocab;
  GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&s.cand),
                      size_t(max_rows) * kPickGreedySplit * sizeof(float2)));
  GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&s.tickets), size_t(max_rows) * sizeof(uint32_t)));
  GPU_CHECK(gpuMemset(s.tickets, 0, size_t(max_rows) * sizeof(uint32_t)));
  s.bytes = size_t(max_rows) * (kPickGreedySplit * sizeof(float2) + sizeof(uint32_t));
  s.smem_bytes = static_cast<int>(pick_sample_launch(kTarget, max_rows, vocab).dyn_smem_bytes);
  if (s.smem_bytes > 48 * 1024)
    GPU_CHECK(gpuFuncSetAttribute(pick_sample_kernel, gpuFuncAttributeMaxDynamicSharedMemorySize,
                                  s.smem_bytes));
  return s;
}

void pick_scratch_destroy(PickScratch& s) {
  if (s.cand) (void)gpuFree(s.cand);
  if (s.tickets) (void)gpuFree(s.tickets);
  s = PickScratch{};
}

void pick_tokens(const float* logits, int rows, int vocab, const TokenPick* picks,
                 int32_t* tokens, PickScratch& s, gpuStream_t stream) {
  if (rows <= 0) return;
  if (rows > s.max_rows || vocab != s.vocab)
    fail("pick_tokens: %d rows of vocab %d, but the scratch was made for %d rows of vocab %d",
         rows, vocab, s.max_rows, s.vocab);
  pick_greedy_kernel<<<dim3(rows, kPickGreedySplit), kThreads, 0, stream>>>(logits, vocab, picks,
                                                                             tokens, s.cand, s.tickets);
  GPU_CHECK_LAUNCH();
  pick_sample_kernel<<<rows, kThreads, s.smem_bytes, stream>>>(logits, vocab, picks, tokens);
  GPU_CHECK_LAUNCH();
}

}  // namespace gptoss::gpu
