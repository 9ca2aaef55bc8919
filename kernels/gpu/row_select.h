// kernels/gpu/row_select.h: what the token pickers share (internal: include from
// kernels/gpu/sample.cu and head_slice.cu only): one block's pass over a row of logits, the
// candidate order as 64-bit keys, a block's bitonic sort of keys and the exact radix select.
//
// Candidate order: logit descending, then index ascending; -0 reads as +0 so the two zeros tie,
// as in the host's comparisons (sampler.cpp, head_split.cpp). cand_key is unique per index and
// above 0 for every finite logit (0 can pad a sort).
#pragma once
#include <cstdint>

#include "gpu/device_utils.h"

namespace gptoss::gpu::row_select {

// f(v, i) for every element of x[0, n); each of the block's kThreads threads sees ascending i,
// with kUnroll loads in flight.
template <int kThreads, int kUnroll, class F>
__device__ __forceinline__ void for_row(const float* __restrict__ x, int n, F&& f) {
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

// Ordered bits of a finite logit: a > b as floats <=> bits(a) > bits(b) (-0 read as +0).
__device__ __forceinline__ uint32_t f32_order_key(float v) {
  const uint32_t b = __float_as_uint(v == 0.0f ? 0.0f : v);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float order_key_f32(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}
// The 64-bit key of index i: larger = earlier candidate.
__device__ __forceinline__ uint64_t cand_key(float v, int i) {
  return (static_cast<uint64_t>(f32_order_key(v)) << 32) | static_cast<uint64_t>(~static_cast<uint32_t>(i));
}
__device__ __forceinline__ int cand_id(uint64_t c) { return static_cast<int>(~static_cast<uint32_t>(c)); }
__device__ __forceinline__ float cand_logit(uint64_t c) { return order_key_f32(static_cast<uint32_t>(c >> 32)); }

// Sorts keys[0, N) of shared memory descending (N a power of two, bitonic); every thread of the
// block calls it after a barrier; it ends with one (N > 1).
template <int kThreads>
__device__ void block_sort_desc(uint64_t* keys, int N) {
  const int tid = static_cast<int>(threadIdx.x);
  for (int size = 2; size <= N; size <<= 1)
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

// Exact radix select, 8-bit digits from the top, over the unique keys the block's threads visit:
// returns `low` such that the keys >= low include the `take` largest and number *cnt, with take <=
// *cnt <= limit (it stops at the first digit whose keys at or above the boundary fit `limit`;
// keys are unique, so the last digit leaves exactly `take`). each_key(first_pass, g): every
// thread calls g(key) for each of its keys (first_pass: the callers' hook for a check on the
// first pass). hist: 256 shared counters; sel: 2 shared ints. Shared-memory atomics on the digits:
// slow where most keys share a digit. Every thread of the block calls it; it ends after a barrier.
template <class EachKey>
__device__ uint64_t block_radix_select(EachKey&& each_key, int take, int limit, uint32_t* hist, int* sel,
                                       int* cnt) {
  uint64_t prefix = 0;  // the boundary's digits found so far (lower digits 0)
  int need = take, above = 0;
  for (int shift = 56;; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
    __syncthreads();
    const uint64_t high = shift == 56 ? 0ull : ~0ull << (shift + 8);
    each_key(shift == 56, [&](uint64_t key) {
      if ((key & high) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    });
    __syncthreads();
    if (threadIdx.x == 0) {  // the digit holding the need-th largest key among those still matching
      int cum = 0, b = 255;
      for (; b > 0; --b) {
        const int h = static_cast<int>(hist[b]);
        if (cum + h >= need) break;
        cum += h;
      }
      sel[0] = b;
      sel[1] = cum;
    }
    __syncthreads();
    const int b = sel[0], cum = sel[1], in_bin = static_cast<int>(hist[b]);
    need -= cum;
    above += cum;
    prefix |= static_cast<uint64_t>(b) << shift;
    __syncthreads();  // hist and sel read by every thread before the next pass rewrites them
    // Keys >= prefix are exactly `above` + the selected digit's; the take largest are among them.
    if (above + in_bin <= limit || shift == 0) {
      *cnt = above + in_bin;
      return prefix;
    }
  }
}

}  // namespace gptoss::gpu::row_select
