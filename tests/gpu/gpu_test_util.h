// gpu_test_util.h (tests/gpu): device buffers, random data, poisoning and the relative L2 error
// used by the GPU-vs-CPU tests. Compiled as GPU code (includes vendor.h).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/bf16.h"
#include "gpu/ops.h"
#include "gpu/vendor.h"

namespace gptoss::gputest {

#define GPU_TEST_REQUIRE_DEVICE()                                                         \
  do {                                                                                    \
    if (!::gptoss::gpu::device_present())                                                 \
      GTEST_SKIP() << "no GPU present (" GPU_RT_NAME " runtime sees no device): skipped";  \
  } while (0)

template <class T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) {
    GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(n, 1) * sizeof(T)));
    poison();
  }
  explicit DevBuf(const std::vector<T>& v) : DevBuf(v.size()) { upload(v); }
  ~DevBuf() { (void)gpuFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  void upload(const std::vector<T>& v) {
    GPU_CHECK(gpuMemcpy(p, v.data(), v.size() * sizeof(T), gpuMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    GPU_CHECK(gpuDeviceSynchronize());
    std::vector<T> v(n);
    GPU_CHECK(gpuMemcpy(v.data(), p, n * sizeof(T), gpuMemcpyDeviceToHost));
    return v;
  }
  // All bytes 0xff: NaN for fp32, -1 for int32, NaN for bf16: an unwritten output shows.
  void poison() { GPU_CHECK(gpuMemset(p, 0xff, std::max<size_t>(n, 1) * sizeof(T))); }
  // All bytes 0 (scratch whose counters must start at 0, e.g. the attention's partials).
  void zero() { GPU_CHECK(gpuMemset(p, 0, std::max<size_t>(n, 1) * sizeof(T))); }
};

struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  float normal(float scale = 1.0f) { return std::normal_distribution<float>(0.0f, scale)(g); }
  std::vector<float> normals(size_t n, float scale = 1.0f) {
    std::vector<float> v(n);
    for (auto& x : v) x = normal(scale);
    return v;
  }
  // bf16 values; never zero (|v| >= 1e-3 scale).
  std::vector<bf16_t> bf16s(size_t n, float scale = 1.0f, float mean = 0.0f) {
    std::vector<bf16_t> v(n);
    for (auto& x : v) {
      float f = mean + normal(scale);
      if (std::fabs(f) < 1e-3f * scale) f = 1e-3f * scale;
      x = f32_to_bf16(f);
    }
    return v;
  }
  int uniform_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g); }
};

// ||a - b|| / ||b||; NaN anywhere gives +inf.
inline double rel_l2(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}
inline double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  return rel_l2(a.data(), b.data(), std::min(a.size(), b.size()));
}

inline std::vector<float> round_bf16(const std::vector<float>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = bf16_to_f32(f32_to_bf16(v[i]));
  return r;
}

// A paged KV layout for tests (kernels/gpu/ops.h KvPages): slot s's positions [i B, (i + 1) B)
// in pool block table[s * stride + i], the blocks a random permutation of [0, blocks) (blocks >=
// slots * stride; the rest belong to no slot), so a kernel that ignored the table, or took a
// neighbour's entry, reads another slot's rows or the poison.
struct PagedLayout {
  int slots = 0, cap = 0, shift = 0, stride = 0, blocks = 0;
  std::vector<int32_t> table;  // [slots, stride]
  PagedLayout(int slots_, int cap_, int shift_, int spare, Rng& r)
      : slots(slots_), cap(cap_), shift(shift_), stride((cap_ + (1 << shift_) - 1) >> shift_),
        blocks(slots_ * stride + spare) {
    std::vector<int32_t> perm(static_cast<size_t>(blocks));
    for (int i = 0; i < blocks; ++i) perm[size_t(i)] = i;
    std::shuffle(perm.begin(), perm.end(), r.g);
    table.assign(perm.begin(), perm.begin() + size_t(slots) * stride);
  }
  int block_tokens() const { return 1 << shift; }
  size_t pool_rows() const { return size_t(blocks) << shift; }
  // The pool row of position j of slot s.
  size_t row(int s, int j) const {
    return (size_t(table[size_t(s) * stride + (j >> shift)]) << shift) + size_t(j & ((1 << shift) - 1));
  }
  // A ring cache [slots, cap, row_elems] moved into the pool [blocks << shift, row_elems]; rows of
  // no position hold `poison`.
  template <class T>
  std::vector<T> to_pool(const std::vector<T>& ring, size_t row_elems, T poison) const {
    std::vector<T> pool(pool_rows() * row_elems, poison);
    for (int s = 0; s < slots; ++s)
      for (int j = 0; j < cap; ++j)
        std::copy_n(ring.begin() + (size_t(s) * cap + j) * row_elems, row_elems,
                    pool.begin() + row(s, j) * row_elems);
    return pool;
  }
  // The kernels' view: the table on the device (d_table, kept by the caller), block = per row.
  gpu::KvPages pages(int32_t* d_table, const int32_t* d_block = nullptr) const {
    return {d_table, d_block, stride, shift};
  }
};

}  // namespace gptoss::gputest
